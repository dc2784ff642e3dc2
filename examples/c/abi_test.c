/*
 * Calls every function of the C API with NULL pointers and bad arguments and checks that each
 * returns the status its documentation promises, with a message in llm_last_error(), and never
 * crashes; then checks the documented behaviour of buffers, logits, stop strings and
 * cancellation on a real model.
 *
 *   usage: abi_test [MODEL.gguf]     (without a model only the model-independent checks run)
 *
 *   gcc -O2 -Wall -Wextra examples/c/abi_test.c -Iinclude -Ltarget/release -lllmrt \
 *       -Wl,-rpath,$PWD/target/release -o abi_test
 */
/* mkstemp, ftruncate, fileno, unlink for the saved-session checks. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmrt.h"

static int checks, failures;

static void fail(int line, const char *what) {
    failures++;
    fprintf(stderr, "abi_test.c:%d: check failed: %s (last status %d, last error \"%s\")\n", line,
            what, (int)llm_last_status(), llm_last_error());
}

#define CHECK(cond)                   \
    do {                              \
        checks++;                     \
        if (!(cond)) fail(__LINE__, #cond); \
    } while (0)

/* A failure must come with its status in llm_last_status() and a message in llm_last_error(). */
static void expect_status(int line, const char *expr, llm_status got, llm_status want) {
    checks++;
    if (got != want) {
        char what[512];
        snprintf(what, sizeof what, "%s returned %d (%s), expected %d (%s)", expr, (int)got,
                 llm_status_str((int)got), (int)want, llm_status_str((int)want));
        fail(line, what);
    } else if (llm_last_status() != want) {
        fail(line, "llm_last_status() disagrees with the returned status");
    } else if ((want == LLM_OK) != (llm_last_error()[0] == '\0')) {
        fail(line, want == LLM_OK ? "a message after success" : "no message for the failure");
    }
}
#define EXPECT(expr, want) expect_status(__LINE__, #expr, (expr), (want))
/* For functions returning NULL or LLM_FAILED on failure: the status is in llm_last_status(). */
#define EXPECT_NULL(expr, want) \
    do { checks++; if ((expr) != NULL) fail(__LINE__, #expr " is not NULL"); \
         EXPECT(llm_last_status(), want); } while (0)
#define EXPECT_FAILED(expr, want) \
    do { checks++; if ((expr) != LLM_FAILED) fail(__LINE__, #expr " is not LLM_FAILED"); \
         EXPECT(llm_last_status(), want); } while (0)

static const char BAD_UTF8[] = "caf\xc3\x28 \xff";

static void without_a_model(const char *self_path) {
    CHECK(strlen(llm_version()) > 0);
    CHECK(strstr(llm_system_info(), "simd") != NULL);
    for (int s = LLM_OK; s <= LLM_ERR_NOT_FOUND; s++) {
        CHECK(strcmp(llm_status_str(s), "unknown status") != 0);
    }
    CHECK(strcmp(llm_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(llm_status_str(1000), "unknown status") == 0);

    llm_model_params mp = llm_model_default_params();
    CHECK(mp.n_threads == 0);
    llm_session_params sp = llm_session_default_params();
    CHECK(sp.n_ctx == 0 && sp.n_threads == 0 && sp.n_batch == 0 && sp.kv_type == LLM_KV_F16 &&
          !sp.logits_all);
    llm_generate_params gp = llm_generate_default_params();
    CHECK(gp.max_tokens == 128 && gp.temperature == 0.8f && gp.top_k == 40 &&
          gp.top_p == 0.95f && gp.min_p == 0.05f && gp.repeat_penalty == 1.0f &&
          gp.stop == NULL && gp.n_stop == 0 && gp.add_special && !gp.parse_special);

    /* Loading. */
    EXPECT_NULL(llm_load(NULL, NULL), LLM_ERR_NULL);
    EXPECT_NULL(llm_load(NULL, &mp), LLM_ERR_NULL);
    EXPECT_NULL(llm_load("/nonexistent/model.gguf", NULL), LLM_ERR_IO);
    CHECK(strstr(llm_last_error(), "/nonexistent/model.gguf") != NULL);
    EXPECT_NULL(llm_load(BAD_UTF8, NULL), LLM_ERR_INVALID_UTF8);
    EXPECT_NULL(llm_load(self_path, NULL), LLM_ERR_INVALID_GGUF); /* an ELF file */

    /* Freeing NULL is a no-op and a success. */
    llm_model_free(NULL);
    EXPECT(llm_last_status(), LLM_OK);
    llm_session_free(NULL);
    EXPECT(llm_last_status(), LLM_OK);

    /* Every function with a NULL model or session. */
    char buf[64];
    llm_token tokens[8] = {1, 2, 3};
    llm_model_info_t info;
    EXPECT(llm_model_info(NULL, &info), LLM_ERR_NULL);
    EXPECT_FAILED(llm_model_meta(NULL, "general.name", buf, sizeof buf), LLM_ERR_NULL);
    EXPECT_FAILED(llm_model_meta_count(NULL), LLM_ERR_NULL);
    EXPECT_FAILED(llm_model_meta_key(NULL, 0, buf, sizeof buf), LLM_ERR_NULL);
    EXPECT_FAILED(llm_n_vocab(NULL), LLM_ERR_NULL);
    EXPECT_FAILED(llm_tokenize(NULL, "hi", 2, true, false, tokens, 8), LLM_ERR_NULL);
    EXPECT_FAILED(llm_detokenize(NULL, tokens, 3, buf, sizeof buf), LLM_ERR_NULL);
    EXPECT_FAILED(llm_token_to_piece(NULL, 1, buf, sizeof buf), LLM_ERR_NULL);
    EXPECT_NULL(llm_session_new(NULL, NULL), LLM_ERR_NULL);
    EXPECT_NULL(llm_session_new(NULL, &sp), LLM_ERR_NULL);
    EXPECT(llm_session_reset(NULL), LLM_ERR_NULL);
    EXPECT(llm_session_save(NULL, "x.session"), LLM_ERR_NULL);
    EXPECT_NULL(llm_lora_load(NULL, "adapter.gguf"), LLM_ERR_NULL);
    EXPECT(llm_session_set_loras(NULL, NULL, NULL, 0), LLM_ERR_NULL);
    EXPECT(llm_engine_set_sequence_loras(NULL, 0, NULL, NULL, 0), LLM_ERR_NULL);
    llm_lora_free(NULL);
    EXPECT(llm_session_load(NULL, "x.session"), LLM_ERR_NULL);
    EXPECT_FAILED(llm_session_n_ctx(NULL), LLM_ERR_NULL);
    EXPECT_FAILED(llm_session_n_past(NULL), LLM_ERR_NULL);
    EXPECT(llm_eval(NULL, tokens, 3), LLM_ERR_NULL);
    EXPECT_NULL(llm_get_logits(NULL, -1), LLM_ERR_NULL);
    llm_generate_stats stats;
    memset(&stats, 0xAB, sizeof stats);
    EXPECT(llm_generate(NULL, "hi", NULL, NULL, NULL, buf, sizeof buf, &stats), LLM_ERR_NULL);
    CHECK(stats.stop_reason == LLM_STOP_NONE && stats.generated_tokens == 0); /* zeroed */
    llm_chat_message msg = {"user", "hi"};
    EXPECT(llm_chat(NULL, &msg, 1, NULL, NULL, NULL, NULL, 0, NULL), LLM_ERR_NULL);
    EXPECT_FAILED(llm_chat_apply_template(NULL, &msg, 1, true, buf, sizeof buf), LLM_ERR_NULL);

    /* The engine, batcher and sampler with NULLs. */
    llm_batcher_free(NULL);
    llm_engine_free(NULL);
    llm_sampler_free(NULL);
    EXPECT(llm_last_status(), LLM_OK);
    llm_engine_params ep = llm_engine_default_params();
    uint64_t seq = 0;
    llm_step_report report;
    llm_pool_stats pool;
    float logits[4] = {0.0f, 1.0f, 3.0f, 2.0f};
    EXPECT_NULL(llm_batcher_new(NULL, &ep), LLM_ERR_NULL);
    EXPECT_FAILED(llm_batcher_n_ctx(NULL), LLM_ERR_NULL);
    EXPECT(llm_batcher_generate(NULL, "hi", NULL, NULL, NULL, buf, sizeof buf, &stats),
           LLM_ERR_NULL);
    EXPECT(llm_batcher_chat(NULL, &msg, 1, NULL, NULL, NULL, NULL, 0, NULL), LLM_ERR_NULL);
    EXPECT_NULL(llm_engine_new(NULL, NULL), LLM_ERR_NULL);
    EXPECT(llm_engine_add(NULL, &seq), LLM_ERR_NULL);
    EXPECT(llm_engine_feed(NULL, 0, tokens, 3), LLM_ERR_NULL);
    EXPECT(llm_engine_step(NULL, &report), LLM_ERR_NULL);
    EXPECT_FAILED(llm_engine_has_work(NULL), LLM_ERR_NULL);
    EXPECT_NULL(llm_engine_logits(NULL, 0), LLM_ERR_NULL);
    EXPECT_FAILED(llm_engine_n_past(NULL, 0), LLM_ERR_NULL);
    EXPECT(llm_engine_remove(NULL, 0), LLM_ERR_NULL);
    EXPECT(llm_engine_fork(NULL, 0, &seq), LLM_ERR_NULL);
    EXPECT(llm_engine_pool_stats(NULL, &pool), LLM_ERR_NULL);
    llm_generate_params bad_sampling = llm_generate_default_params();
    bad_sampling.top_p = -1.0f;
    EXPECT_NULL(llm_sampler_new(&bad_sampling), LLM_ERR_INVALID_ARGUMENT);
    llm_sampler *greedy_sampler = NULL;
    {
        llm_generate_params gp = llm_generate_default_params();
        gp.temperature = 0.0f;
        greedy_sampler = llm_sampler_new(&gp);
    }
    CHECK(greedy_sampler != NULL);
    EXPECT_FAILED(llm_sampler_sample(NULL, logits, 4, NULL, 0), LLM_ERR_NULL);
    EXPECT_FAILED(llm_sampler_sample(greedy_sampler, NULL, 4, NULL, 0), LLM_ERR_NULL);
    EXPECT_FAILED(llm_sampler_sample(greedy_sampler, logits, 0, NULL, 0), LLM_ERR_INVALID_ARGUMENT);
    EXPECT_FAILED(llm_sampler_sample(greedy_sampler, logits, 4, NULL, 2), LLM_ERR_NULL);
    CHECK(llm_sampler_sample(greedy_sampler, logits, 4, NULL, 0) == 2); /* the argmax */
    llm_sampler_free(greedy_sampler);

    /* A success clears the last error. */
    llm_engine_has_work(NULL);
    CHECK(llm_last_error()[0] != '\0');
    llm_model_free(NULL);
    CHECK(llm_last_error()[0] == '\0');
}

typedef struct collected {
    char text[4096];
    size_t len;
    int calls;
    int stop_after; /* cancel after this many calls; 0 = never */
} collected;

static bool collect(const char *piece, size_t len, void *user_data) {
    collected *c = user_data;
    c->calls++;
    if (strlen(piece) != len) fail(__LINE__, "piece is not NUL-terminated at len");
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    return c->stop_after == 0 || c->calls < c->stop_after;
}

static void with_a_model(const char *path) {
    llm_model_params mp = llm_model_default_params();
    mp.n_threads = 2;
    llm_model *model = llm_load(path, &mp);
    if (!model) {
        fprintf(stderr, "cannot load %s: %s\n", path, llm_last_error());
        failures++;
        return;
    }
    EXPECT(llm_last_status(), LLM_OK);

    /* Facts and metadata. */
    llm_model_info_t info;
    EXPECT(llm_model_info(model, NULL), LLM_ERR_NULL);
    EXPECT(llm_model_info(model, &info), LLM_OK);
    int32_t n_vocab = llm_n_vocab(model);
    CHECK(n_vocab > 0 && (size_t)n_vocab == info.n_vocab);
    CHECK(info.n_params > 0 && info.file_size > 0 && info.n_layer > 0 && info.n_embd > 0 &&
          info.n_head >= info.n_head_kv && info.n_head_kv > 0 && info.n_ctx_train > 0);

    char buf[256];
    char arch[64];
    int32_t n = llm_model_meta(model, "general.architecture", arch, sizeof arch);
    EXPECT(llm_last_status(), LLM_OK);
    CHECK(n == (int32_t)strlen(info.architecture) && strcmp(arch, info.architecture) == 0);
    CHECK(llm_model_meta(model, "general.architecture", NULL, 0) == -(n + 1));
    EXPECT(llm_last_status(), LLM_ERR_BUFFER_TOO_SMALL);
    memcpy(buf, "untouched", 10);
    CHECK(llm_model_meta(model, "general.architecture", buf, (size_t)n) == -(n + 1));
    CHECK(strcmp(buf, "untouched") == 0);
    CHECK(llm_model_meta(model, "general.architecture", buf, (size_t)n + 1) == n);
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", arch);
    CHECK(llm_model_meta(model, key, buf, sizeof buf) > 0 && (size_t)atoi(buf) == info.n_layer);
    EXPECT_FAILED(llm_model_meta(model, "no.such.key", buf, sizeof buf), LLM_ERR_NOT_FOUND);
    EXPECT_FAILED(llm_model_meta(model, NULL, buf, sizeof buf), LLM_ERR_NULL);
    EXPECT_FAILED(llm_model_meta(model, BAD_UTF8, buf, sizeof buf), LLM_ERR_INVALID_UTF8);
    EXPECT_FAILED(llm_model_meta(model, "general.architecture", NULL, 10), LLM_ERR_NULL);
    int32_t n_meta = llm_model_meta_count(model);
    CHECK(n_meta > 0);
    int found_arch = 0;
    for (int32_t i = 0; i < n_meta; i++) {
        CHECK(llm_model_meta_key(model, i, key, sizeof key) > 0);
        found_arch |= strcmp(key, "general.architecture") == 0;
    }
    CHECK(found_arch);
    EXPECT_FAILED(llm_model_meta_key(model, -1, key, sizeof key), LLM_ERR_INVALID_ARGUMENT);
    EXPECT_FAILED(llm_model_meta_key(model, n_meta, key, sizeof key), LLM_ERR_INVALID_ARGUMENT);

    /* Tokenizer. */
    const char *text = "Hello world, h\xc3\xa9llo!";
    llm_token tokens[64];
    int32_t n_tok = llm_tokenize(model, text, strlen(text), false, false, tokens, 64);
    CHECK(n_tok > 0);
    CHECK(llm_tokenize(model, text, strlen(text), false, false, NULL, 0) == -n_tok);
    EXPECT(llm_last_status(), LLM_ERR_BUFFER_TOO_SMALL);
    CHECK(llm_tokenize(model, text, strlen(text), false, false, tokens, (size_t)n_tok - 1) ==
          -n_tok);
    EXPECT_FAILED(llm_tokenize(model, NULL, 3, false, false, tokens, 64), LLM_ERR_NULL);
    EXPECT_FAILED(llm_tokenize(model, text, strlen(text), false, false, NULL, 64), LLM_ERR_NULL);
    EXPECT_FAILED(llm_tokenize(model, BAD_UTF8, strlen(BAD_UTF8), false, false, tokens, 64),
                  LLM_ERR_INVALID_UTF8);
    /* Only `len` bytes count: a cut inside "é" is invalid UTF-8. */
    const char *e_acute = strstr(text, "\xc3");
    EXPECT_FAILED(llm_tokenize(model, text, (size_t)(e_acute - text) + 1, false, false, tokens, 64),
                  LLM_ERR_INVALID_UTF8);
    CHECK(llm_detokenize(model, tokens, (size_t)n_tok, buf, sizeof buf) == (int32_t)strlen(text));
    CHECK(strcmp(buf, text) == 0);
    CHECK(llm_detokenize(model, tokens, (size_t)n_tok, NULL, 0) == -(int32_t)(strlen(text) + 1));
    CHECK(llm_detokenize(model, NULL, 0, buf, sizeof buf) == 0 && buf[0] == '\0');
    EXPECT_FAILED(llm_detokenize(model, NULL, 2, buf, sizeof buf), LLM_ERR_NULL);
    llm_token bad_tokens[2] = {tokens[0], n_vocab};
    EXPECT_FAILED(llm_detokenize(model, bad_tokens, 2, buf, sizeof buf), LLM_ERR_INVALID_ARGUMENT);
    bad_tokens[1] = -1;
    EXPECT_FAILED(llm_detokenize(model, bad_tokens, 2, buf, sizeof buf), LLM_ERR_INVALID_ARGUMENT);
    int32_t piece_len = llm_token_to_piece(model, tokens[0], buf, sizeof buf);
    CHECK(piece_len > 0 && strncmp(buf, text, (size_t)piece_len) == 0);
    CHECK(llm_token_to_piece(model, tokens[0], NULL, 0) == -(piece_len + 1));
    EXPECT_FAILED(llm_token_to_piece(model, -5, buf, sizeof buf), LLM_ERR_INVALID_ARGUMENT);
    EXPECT_FAILED(llm_token_to_piece(model, n_vocab, buf, sizeof buf), LLM_ERR_INVALID_ARGUMENT);

    /* Sessions. */
    llm_session_params sp = llm_session_default_params();
    sp.kv_type = 7;
    EXPECT_NULL(llm_session_new(model, &sp), LLM_ERR_INVALID_ARGUMENT);
    sp = llm_session_default_params();
    sp.n_ctx = 64;
    llm_session *session = llm_session_new(model, &sp);
    CHECK(session != NULL);
    if (!session) {
        llm_model_free(model);
        return;
    }
    CHECK(llm_session_n_ctx(session) == 64);
    CHECK(llm_session_n_past(session) == 0);

    /* Evaluation and logits. */
    EXPECT_NULL(llm_get_logits(session, -1), LLM_ERR_INVALID_ARGUMENT); /* nothing evaluated */
    EXPECT(llm_eval(session, NULL, 3), LLM_ERR_NULL);
    EXPECT(llm_eval(session, tokens, 0), LLM_ERR_INVALID_ARGUMENT);
    EXPECT(llm_eval(session, bad_tokens, 2), LLM_ERR_INVALID_ARGUMENT);
    llm_token many[65] = {0};
    for (int i = 0; i < 65; i++) many[i] = tokens[0];
    EXPECT(llm_eval(session, many, 65), LLM_ERR_CONTEXT_FULL);
    CHECK(llm_session_n_past(session) == 0); /* nothing evaluated */
    EXPECT(llm_eval(session, tokens, 3), LLM_OK);
    CHECK(llm_session_n_past(session) == 3);
    const float *last = llm_get_logits(session, 2);
    CHECK(last != NULL && last == llm_get_logits(session, -1));
    if (last) CHECK(isfinite(last[0]) && isfinite(last[n_vocab - 1]));
    EXPECT_NULL(llm_get_logits(session, 0), LLM_ERR_INVALID_ARGUMENT); /* not logits_all */
    EXPECT_NULL(llm_get_logits(session, 3), LLM_ERR_INVALID_ARGUMENT);
    EXPECT_NULL(llm_get_logits(session, -2), LLM_ERR_INVALID_ARGUMENT);

    sp.logits_all = true;
    llm_session *scorer = llm_session_new(model, &sp);
    CHECK(scorer != NULL);
    if (scorer) {
        EXPECT(llm_eval(scorer, tokens, 3), LLM_OK);
        const float *l0 = llm_get_logits(scorer, 0), *l2 = llm_get_logits(scorer, 2);
        CHECK(l0 != NULL && l2 != NULL && l0 != l2);
        /* The last position's logits agree with the session that kept only the last (the
         * output projection runs over 3 rows instead of 1 there, so float sums may be ordered
         * differently: equal to float rounding, not bit for bit). */
        if (l2 && last) {
            float worst = 0.0f;
            for (int32_t i = 0; i < n_vocab; i++) {
                float d = fabsf(l2[i] - last[i]) / (1.0f + fabsf(last[i]));
                if (d > worst) worst = d;
            }
            CHECK(worst < 1e-4f);
        }
        if (l0 && l2) CHECK(memcmp(l0, l2, (size_t)n_vocab * sizeof(float)) != 0);
        EXPECT_NULL(llm_get_logits(scorer, 3), LLM_ERR_INVALID_ARGUMENT);
        llm_session_free(scorer);
    }
    EXPECT(llm_session_reset(session), LLM_OK);
    CHECK(llm_session_n_past(session) == 0);
    EXPECT_NULL(llm_get_logits(session, -1), LLM_ERR_INVALID_ARGUMENT);

    /* Generation: bad arguments. */
    const char *prompt = "the first president of US is";
    llm_generate_params gp = llm_generate_default_params();
    gp.max_tokens = 8;
    gp.temperature = 0.0f;
    llm_generate_stats stats;
    char out[1024];
    EXPECT(llm_generate(session, NULL, &gp, NULL, NULL, out, sizeof out, &stats), LLM_ERR_NULL);
    EXPECT(llm_generate(session, BAD_UTF8, &gp, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_UTF8);
    EXPECT(llm_generate(session, "", &gp, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    EXPECT(llm_generate(session, prompt, &gp, NULL, NULL, NULL, 16, &stats), LLM_ERR_NULL);
    llm_generate_params bad = gp;
    bad.temperature = -1.0f;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    bad.temperature = NAN;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    bad = gp;
    bad.top_p = 2.0f;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    bad = gp;
    bad.n_stop = 1; /* stop is NULL */
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats), LLM_ERR_NULL);
    const char *null_stop[1] = {NULL};
    bad.stop = null_stop;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats), LLM_ERR_NULL);
    const char *bad_stop[1] = {BAD_UTF8};
    bad.stop = bad_stop;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_UTF8);
    /* Constraints: unknown types and constraints that do not compile are refused; a regex is
     * followed. */
    bad = gp;
    bad.constraint_type = 99;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    bad.constraint_type = LLM_CONSTRAINT_REGEX;
    bad.constraint = NULL;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats), LLM_ERR_NULL);
    bad.constraint = "(unclosed";
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(llm_last_error(), "constraint") != NULL);
    bad.constraint_type = LLM_CONSTRAINT_JSON_SCHEMA;
    bad.constraint = "{not json";
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    bad.constraint_type = LLM_CONSTRAINT_REGEX;
    bad.constraint = "[0-9]{4}";
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats), LLM_OK);
    CHECK(strlen(out) == 4 && strspn(out, "0123456789") == 4);
    bad.constraint_type = LLM_CONSTRAINT_GBNF;
    bad.constraint = "root ::= (\"yes\" | \"no\") \".\"";
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats), LLM_OK);
    CHECK(strcmp(out, "yes.") == 0 || strcmp(out, "no.") == 0);
    bad.constraint = "root ::= (";
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    EXPECT(llm_session_reset(session), LLM_OK);
    /* A budget beyond the context (it holds 64): generation runs until the context is full. */
    bad = gp;
    bad.max_tokens = 100;
    EXPECT(llm_generate(session, prompt, &bad, NULL, NULL, out, sizeof out, &stats), LLM_OK);
    CHECK(stats.stop_reason == LLM_STOP_CONTEXT_FULL || stats.stop_reason == LLM_STOP_END_OF_GENERATION);
    if (stats.stop_reason == LLM_STOP_CONTEXT_FULL) CHECK(llm_session_n_past(session) == 64);
    /* A prompt that leaves no room for one token is refused. */
    char long_prompt[64 * 6 + 1] = {0};
    for (int i = 0; i < 64; i++) strcat(long_prompt, "word ");
    EXPECT(llm_generate(session, long_prompt, &gp, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_CONTEXT_FULL);
    EXPECT(llm_session_reset(session), LLM_OK);

    /* Generation: streamed pieces, the buffer and the stats agree. */
    collected c = {0};
    EXPECT(llm_generate(session, prompt, &gp, collect, &c, out, sizeof out, &stats), LLM_OK);
    char full[1024];
    snprintf(full, sizeof full, "%s", out);
    CHECK(strlen(full) > 0 && strcmp(c.text, full) == 0 && c.calls > 0);
    CHECK(stats.text_len == strlen(full));
    CHECK(stats.generated_tokens > 0 && stats.generated_tokens <= gp.max_tokens);
    CHECK(stats.stop_reason == LLM_STOP_MAX_TOKENS ||
          stats.stop_reason == LLM_STOP_END_OF_GENERATION);
    CHECK(stats.prompt_tokens > 0 && stats.prompt_tokens_per_second > 0);

    /* The same prompt again reuses the cached prefix and gives the same greedy text. */
    EXPECT(llm_generate(session, prompt, &gp, NULL, NULL, out, sizeof out, &stats), LLM_OK);
    CHECK(strcmp(out, full) == 0 && stats.reused_tokens > 0);

    /* A too-small buffer: the status, the size needed, and the text that fits. */
    char small[6];
    EXPECT(llm_generate(session, prompt, &gp, NULL, NULL, small, sizeof small, &stats),
           LLM_ERR_BUFFER_TOO_SMALL);
    CHECK(stats.text_len == strlen(full));
    CHECK(strlen(small) < sizeof small && strncmp(small, full, strlen(small)) == 0);

    /* Cancelling from the callback is not an error. */
    collected first = {.stop_after = 1};
    EXPECT(llm_generate(session, prompt, &gp, collect, &first, out, sizeof out, &stats), LLM_OK);
    CHECK(first.calls == 1 && stats.stop_reason == LLM_STOP_CANCELLED);
    CHECK(strcmp(out, first.text) == 0);

    /* A stop string taken from the middle of the text ends it just before. */
    size_t half = strlen(full) / 2;
    char stop_text[4] = {0};
    memcpy(stop_text, full + half, 3);
    if (strlen(stop_text) == 3 && ((unsigned char)stop_text[0] & 0xC0) != 0x80) {
        const char *stops[2] = {"\x01never", stop_text};
        llm_generate_params with_stop = gp;
        with_stop.stop = stops;
        with_stop.n_stop = 2;
        EXPECT(llm_generate(session, prompt, &with_stop, NULL, NULL, out, sizeof out, &stats),
               LLM_OK);
        size_t expected_len = (size_t)(strstr(full, stop_text) - full);
        CHECK(stats.stop_reason == LLM_STOP_STRING && strlen(out) == expected_len &&
              strncmp(out, full, expected_len) == 0);
    }

    /* Chat. */
    llm_chat_message msgs[2] = {{"user", "What is the capital of France?"}, {"assistant", "Paris"}};
    int32_t rendered = llm_chat_apply_template(model, msgs, 1, true, NULL, 0);
    CHECK(rendered < -1);
    EXPECT(llm_last_status(), LLM_ERR_BUFFER_TOO_SMALL);
    char *rendered_text = malloc((size_t)-rendered);
    if (rendered_text) {
        CHECK(llm_chat_apply_template(model, msgs, 1, true, rendered_text, (size_t)-rendered) ==
              -rendered - 1);
        CHECK(strstr(rendered_text, msgs[0].content) != NULL);
        free(rendered_text);
    }
    int32_t without_prompt = llm_chat_apply_template(model, msgs, 1, false, NULL, 0);
    CHECK(without_prompt < 0 && without_prompt > rendered); /* shorter */
    EXPECT_FAILED(llm_chat_apply_template(model, NULL, 1, true, buf, sizeof buf), LLM_ERR_NULL);
    llm_chat_message null_role[1] = {{NULL, "hi"}};
    EXPECT_FAILED(llm_chat_apply_template(model, null_role, 1, true, buf, sizeof buf),
                  LLM_ERR_NULL);
    llm_chat_message bad_content[1] = {{"user", BAD_UTF8}};
    EXPECT_FAILED(llm_chat_apply_template(model, bad_content, 1, true, buf, sizeof buf),
                  LLM_ERR_INVALID_UTF8);
    EXPECT(llm_chat(session, NULL, 1, &gp, NULL, NULL, out, sizeof out, &stats), LLM_ERR_NULL);
    EXPECT(llm_chat(session, msgs, 0, &gp, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_ARGUMENT);
    EXPECT(llm_chat(session, null_role, 1, &gp, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_NULL);
    EXPECT(llm_chat(session, bad_content, 1, &gp, NULL, NULL, out, sizeof out, &stats),
           LLM_ERR_INVALID_UTF8);
    gp.max_tokens = 4;
    EXPECT(llm_chat(session, msgs, 1, &gp, NULL, NULL, out, sizeof out, &stats), LLM_OK);
    CHECK(stats.generated_tokens > 0 && stats.generated_tokens <= 4);

    /* A JSON chat request: NULL, not JSON, bad fields, and the reply message's JSON. */
    {
        const char *hello = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}";
        EXPECT(llm_chat_request(NULL, hello, NULL, NULL, NULL, NULL, 0, NULL), LLM_ERR_NULL);
        EXPECT(llm_chat_request(session, NULL, &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_NULL);
        EXPECT(llm_chat_request(session, BAD_UTF8, &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_INVALID_UTF8);
        const char *bad[] = {
            "{\"messages\": [",
            "{\"messages\": []}",
            "{\"messages\": [{\"role\": 1, \"content\": \"hi\"}]}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tool_choice\": \"required\"}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"type\": \"function\"}]}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            EXPECT(llm_chat_request(session, bad[i], &gp, NULL, NULL, out, sizeof out, &stats),
                   LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_chat_request(session, hello, &gp, NULL, NULL, out, sizeof out, &stats), LLM_OK);
        CHECK(strncmp(out, "{\"role\":\"assistant\",\"content\":", 30) == 0);
        CHECK(stats.text_len == strlen(out) && stats.generated_tokens <= 4);
    }

    /* An engine and a batcher: bad arguments, and what they hold. */
    {
        llm_engine_params ep = llm_engine_default_params();
        ep.kv_type = 7;
        EXPECT_NULL(llm_engine_new(model, &ep), LLM_ERR_INVALID_ARGUMENT);
        EXPECT_NULL(llm_batcher_new(model, &ep), LLM_ERR_INVALID_ARGUMENT);
        ep = llm_engine_default_params();
        ep.n_ctx = 64;
        ep.pool_positions = 64;
        llm_engine *engine = llm_engine_new(model, &ep);
        CHECK(engine != NULL);
        uint64_t a = 0, b = 0;
        llm_pool_stats before, after;
        EXPECT(llm_engine_pool_stats(engine, &before), LLM_OK);
        CHECK(before.block_positions == 16 && before.total == 4 && before.free == 4);
        EXPECT(llm_engine_add(engine, NULL), LLM_ERR_NULL);
        EXPECT(llm_engine_add(engine, &a), LLM_OK);
        EXPECT(llm_engine_add(engine, &b), LLM_OK);
        CHECK(a != b);
        /* No adapters on a fresh sequence is fine; an unknown sequence is not. */
        EXPECT(llm_engine_set_sequence_loras(engine, a, NULL, NULL, 0), LLM_OK);
        EXPECT(llm_engine_set_sequence_loras(engine, 999, NULL, NULL, 0),
               LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_feed(engine, a, NULL, 3), LLM_ERR_NULL);
        EXPECT(llm_engine_feed(engine, a, tokens, 0), LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_feed(engine, a, bad_tokens, 2), LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_feed(engine, 999, tokens, 3), LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_feed(engine, a, many, 65), LLM_ERR_CONTEXT_FULL);
        CHECK(llm_engine_has_work(engine) == 0);
        EXPECT(llm_engine_feed(engine, a, tokens, 3), LLM_OK);
        /* b's 60 tokens need 4 blocks, a holds 1 of the 4: b fails alone, a goes on. */
        EXPECT(llm_engine_feed(engine, b, many, 60), LLM_OK);
        CHECK(llm_engine_has_work(engine) == 1);
        EXPECT_NULL(llm_engine_logits(engine, a), LLM_ERR_INVALID_ARGUMENT); /* not yet */
        EXPECT(llm_engine_step(engine, NULL), LLM_OK);
        while (llm_engine_has_work(engine) == 1) EXPECT(llm_engine_step(engine, NULL), LLM_OK);
        CHECK(llm_engine_logits(engine, a) != NULL);
        CHECK(llm_engine_n_past(engine, a) == 3);
        /* Adapters are set before a sequence evaluates anything. */
        EXPECT(llm_engine_set_sequence_loras(engine, a, NULL, NULL, 0), LLM_ERR_INVALID_ARGUMENT);
        EXPECT_NULL(llm_engine_logits(engine, b), LLM_ERR_CONTEXT_FULL);
        EXPECT_NULL(llm_engine_logits(engine, 999), LLM_ERR_INVALID_ARGUMENT);
        EXPECT_FAILED(llm_engine_n_past(engine, 999), LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_remove(engine, 999), LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_fork(engine, a, NULL), LLM_ERR_NULL);
        uint64_t c = 0;
        EXPECT(llm_engine_fork(engine, a, &c), LLM_OK);
        CHECK(llm_engine_n_past(engine, c) == 3 && llm_engine_logits(engine, c) != NULL);
        EXPECT(llm_engine_pool_stats(engine, NULL), LLM_ERR_NULL);
        EXPECT(llm_engine_pool_stats(engine, &after), LLM_OK);
        CHECK(after.shared == 1);
        EXPECT(llm_engine_remove(engine, a), LLM_OK);
        EXPECT(llm_engine_remove(engine, b), LLM_OK);
        EXPECT(llm_engine_remove(engine, c), LLM_OK);
        EXPECT(llm_engine_remove(engine, c), LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_engine_pool_stats(engine, &after), LLM_OK);
        CHECK(after.free == before.free && after.shared == 0);
        llm_engine_free(engine);

        ep = llm_engine_default_params();
        ep.n_ctx = 64;
        llm_batcher *batcher = llm_batcher_new(model, &ep);
        CHECK(batcher != NULL);
        CHECK(llm_batcher_n_ctx(batcher) == 64);
        EXPECT(llm_batcher_generate(batcher, NULL, &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_NULL);
        EXPECT(llm_batcher_generate(batcher, BAD_UTF8, &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_INVALID_UTF8);
        EXPECT(llm_batcher_generate(batcher, "", &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_batcher_generate(batcher, long_prompt, &gp, NULL, NULL, out, sizeof out,
                                    &stats),
               LLM_ERR_CONTEXT_FULL);
        bad = gp;
        bad.temperature = -1.0f;
        EXPECT(llm_batcher_generate(batcher, prompt, &bad, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_INVALID_ARGUMENT);
        EXPECT(llm_batcher_chat(batcher, msgs, 0, &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_ERR_INVALID_ARGUMENT);
        /* The same greedy text as the session's, streamed and in the buffer. */
        collected c2 = {0};
        EXPECT(llm_batcher_generate(batcher, prompt, &gp, collect, &c2, out, sizeof out, &stats),
               LLM_OK);
        CHECK(strcmp(out, c2.text) == 0 && strncmp(out, full, strlen(out)) == 0);
        CHECK(stats.prompt_tokens > 0 && stats.generated_tokens > 0 && stats.generated_tokens <= 4);
        EXPECT(llm_batcher_chat(batcher, msgs, 1, &gp, NULL, NULL, out, sizeof out, &stats),
               LLM_OK);
        CHECK(stats.generated_tokens > 0 && stats.generated_tokens <= 4);
        llm_batcher_free(batcher);
    }

    /* LoRA adapters: files that are not adapters are refused; attaching none is detaching. */
    {
        EXPECT_NULL(llm_lora_load(model, NULL), LLM_ERR_NULL);
        EXPECT_NULL(llm_lora_load(model, "/nonexistent-dir/adapter.gguf"), LLM_ERR_IO);
        EXPECT_NULL(llm_lora_load(model, path), LLM_ERR_INVALID_ARGUMENT);
        CHECK(strstr(llm_last_error(), "adapter") != NULL);
        EXPECT(llm_session_set_loras(session, NULL, NULL, 0), LLM_OK);
        float one = 1.0f;
        EXPECT(llm_session_set_loras(session, NULL, &one, 1), LLM_ERR_NULL);
        const llm_lora *none[1] = {NULL};
        EXPECT(llm_session_set_loras(session, none, &one, 1), LLM_ERR_NULL);
    }

    /* A saved session: restored into a new session it continues as the original does; bad
       files are refused and leave the session usable. */
    {
        char path[] = "/tmp/llmrt-abi-test-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd >= 0) close(fd);
        EXPECT(llm_session_reset(session), LLM_OK);
        gp.max_tokens = 6;
        EXPECT(llm_generate(session, prompt, &gp, NULL, NULL, buf, sizeof buf, &stats), LLM_OK);
        EXPECT(llm_session_save(session, NULL), LLM_ERR_NULL);
        EXPECT(llm_session_save(session, BAD_UTF8), LLM_ERR_INVALID_UTF8);
        EXPECT(llm_session_save(session, "/nonexistent-dir/x.session"), LLM_ERR_IO);
        EXPECT(llm_session_save(session, path), LLM_OK);
        llm_session *restored = llm_session_new(model, &sp);
        CHECK(restored != NULL);
        EXPECT(llm_session_load(restored, NULL), LLM_ERR_NULL);
        EXPECT(llm_session_load(restored, "/nonexistent-dir/x.session"), LLM_ERR_IO);
        EXPECT(llm_session_load(restored, path), LLM_OK);
        CHECK(llm_session_n_past(restored) == llm_session_n_past(session));
        char again[4096];
        EXPECT(llm_generate(session, prompt, &gp, NULL, NULL, out, sizeof out, &stats), LLM_OK);
        EXPECT(llm_generate(restored, prompt, &gp, NULL, NULL, again, sizeof again, &stats),
               LLM_OK);
        CHECK(strcmp(out, again) == 0);
        /* Cut the file short: refused, and the session still generates. */
        FILE *f = fopen(path, "r+b");
        CHECK(f != NULL);
        if (f) {
            CHECK(ftruncate(fileno(f), 100) == 0);
            fclose(f);
        }
        int32_t n_past = llm_session_n_past(restored);
        EXPECT(llm_session_load(restored, path), LLM_ERR_INVALID_SESSION_FILE);
        CHECK(llm_session_n_past(restored) == n_past);
        EXPECT(llm_generate(restored, prompt, &gp, NULL, NULL, again, sizeof again, &stats),
               LLM_OK);
        CHECK(strcmp(out, again) == 0);
        llm_session_free(restored);
        unlink(path);
    }

    /* A session keeps its model alive. */
    llm_model_free(model);
    EXPECT(llm_session_reset(session), LLM_OK);
    EXPECT(llm_generate(session, prompt, &gp, NULL, NULL, out, sizeof out, &stats), LLM_OK);
    CHECK(strncmp(out, full, strlen(out)) == 0);
    llm_session_free(session);
    EXPECT(llm_last_status(), LLM_OK);
}

int main(int argc, char **argv) {
    without_a_model(argv[0]);
    if (argc > 1) {
        with_a_model(argv[1]);
    }
    printf("abi_test: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
