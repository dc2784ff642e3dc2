/*
 * Several prompts decoded together by an engine that this program steps itself: each sequence
 * has its own sampler (greedy or seeded), one sequence joins after the others have started, and
 * one is forked from another's prompt. Checks that every sequence's tokens equal those a session
 * gives alone with the same sampler, and that the KV pool is whole again at the end.
 *
 *   usage: engine MODEL.gguf [N_TOKENS=16]
 *
 *   gcc -O2 examples/c/engine.c -Iinclude -Ltarget/release -lllmrt \
 *       -Wl,-rpath,$PWD/target/release -o engine
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmrt.h"

#define N_SEQ 5
#define MAX_TOKENS 512

static const char *const PROMPTS[N_SEQ] = {
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "1, 1, 2, 3, 5, 8,",
    "The capital of France is", /* forked from sequence 0 once its prompt is evaluated */
};
#define FORKED 4    /* this sequence is forked from sequence 0 */
#define LATE 3      /* this sequence joins at step JOIN_STEP */
#define JOIN_STEP 3

typedef struct sequence {
    llm_token tokens[MAX_TOKENS]; /* prompt, then generated */
    size_t n_prompt, n;
    llm_sampler *sampler;
    uint64_t id;
    int started, done;
} sequence;

static llm_sampler *sampler_for(int i) {
    llm_generate_params gp = llm_generate_default_params();
    if (i == 0 || i == 2) {
        gp.temperature = 0.0f; /* greedy */
    } else {
        gp.temperature = 0.9f;
        gp.seed = 1000 + (uint64_t)i;
    }
    return llm_sampler_new(&gp);
}

/* The tokens a session generates alone for prompt i, into s. */
static int alone(const llm_model *model, int i, size_t n_gen, sequence *s) {
    llm_session_params sp = llm_session_default_params();
    sp.n_ctx = 256;
    llm_session *session = llm_session_new(model, &sp);
    llm_sampler *sampler = sampler_for(i);
    if (!session || !sampler) {
        return 0;
    }
    int n = llm_tokenize(model, PROMPTS[i], strlen(PROMPTS[i]), true, false, s->tokens, 64);
    if (n <= 0 || llm_eval(session, s->tokens, (size_t)n) != LLM_OK) {
        return 0;
    }
    s->n_prompt = s->n = (size_t)n;
    int n_vocab = llm_n_vocab(model);
    while (s->n < s->n_prompt + n_gen) {
        const float *logits = llm_get_logits(session, -1);
        int32_t next = llm_sampler_sample(sampler, logits, (size_t)n_vocab, s->tokens, s->n);
        if (next < 0) {
            return 0;
        }
        s->tokens[s->n++] = next;
        if (llm_eval(session, &s->tokens[s->n - 1], 1) != LLM_OK) {
            return 0;
        }
    }
    llm_sampler_free(sampler);
    llm_session_free(session);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [N_TOKENS=16]\n", argv[0]);
        return 2;
    }
    size_t n_gen = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 16;
    llm_model *model = llm_load(argv[1], NULL);
    if (!model) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        return 1;
    }
    int n_vocab = llm_n_vocab(model);
    static sequence want[N_SEQ], got[N_SEQ];
    for (int i = 0; i < N_SEQ; i++) {
        if (!alone(model, i, n_gen, &want[i])) {
            fprintf(stderr, "alone %d: %s\n", i, llm_last_error());
            return 1;
        }
    }

    llm_engine_params ep = llm_engine_default_params();
    ep.n_ctx = 256;
    ep.pool_positions = N_SEQ * 256;
    llm_engine *engine = llm_engine_new(model, &ep);
    if (!engine) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        return 1;
    }
    llm_pool_stats before, after;
    llm_engine_pool_stats(engine, &before);

    int remaining = N_SEQ;
    for (int step = 0; remaining > 0 && step < 10000; step++) {
        for (int i = 0; i < N_SEQ; i++) {
            sequence *s = &got[i];
            if (s->started || i == FORKED || (i == LATE && step < JOIN_STEP)) {
                continue;
            }
            int n = llm_tokenize(model, PROMPTS[i], strlen(PROMPTS[i]), true, false, s->tokens, 64);
            s->n_prompt = s->n = (size_t)n;
            s->sampler = sampler_for(i);
            if (n <= 0 || llm_engine_add(engine, &s->id) != LLM_OK ||
                llm_engine_feed(engine, s->id, s->tokens, (size_t)n) != LLM_OK) {
                fprintf(stderr, "start %d: %s\n", i, llm_last_error());
                return 1;
            }
            s->started = 1;
        }
        llm_step_report report;
        if (llm_engine_step(engine, &report) != LLM_OK) {
            fprintf(stderr, "step: %s\n", llm_last_error());
            return 1;
        }
        for (int i = 0; i < N_SEQ; i++) {
            sequence *s = &got[i];
            if (!s->started || s->done) {
                continue;
            }
            const float *logits = llm_engine_logits(engine, s->id);
            if (!logits) {
                if (llm_last_status() == LLM_ERR_INVALID_ARGUMENT) {
                    continue; /* tokens still to evaluate */
                }
                fprintf(stderr, "sequence %d failed: %s\n", i, llm_last_error());
                return 1;
            }
            if (i == 0 && !got[FORKED].started) {
                /* Sequence 0's prompt is evaluated: the fork shares its blocks and logits. */
                sequence *f = &got[FORKED];
                memcpy(f->tokens, s->tokens, s->n * sizeof s->tokens[0]);
                f->n_prompt = f->n = s->n;
                f->sampler = sampler_for(FORKED);
                if (llm_engine_fork(engine, s->id, &f->id) != LLM_OK) {
                    fprintf(stderr, "fork: %s\n", llm_last_error());
                    return 1;
                }
                f->started = 1;
            }
            int32_t next = llm_sampler_sample(s->sampler, logits, (size_t)n_vocab, s->tokens, s->n);
            s->tokens[s->n++] = next;
            if (s->n == s->n_prompt + n_gen) {
                s->done = 1;
                remaining--;
                llm_engine_remove(engine, s->id);
            } else if (llm_engine_feed(engine, s->id, &s->tokens[s->n - 1], 1) != LLM_OK) {
                fprintf(stderr, "feed %d: %s\n", i, llm_last_error());
                return 1;
            }
        }
    }
    llm_engine_pool_stats(engine, &after);

    int failures = 0;
    for (int i = 0; i < N_SEQ; i++) {
        char text[4096];
        int same = got[i].n == want[i].n &&
                   memcmp(got[i].tokens, want[i].tokens, got[i].n * sizeof(llm_token)) == 0;
        int len = llm_detokenize(model, got[i].tokens + got[i].n_prompt,
                                 got[i].n - got[i].n_prompt, text, sizeof text);
        printf("%d\t%s\t%s\n", i, same ? "same" : "DIFFERENT", len >= 0 ? text : "?");
        failures += !same;
        llm_sampler_free(got[i].sampler);
    }
    if (after.free != before.free || after.total != before.total) {
        fprintf(stderr, "the pool has %zu of %zu blocks free, %zu before\n", after.free,
                after.total, before.free);
        failures++;
    }
    llm_engine_free(engine);
    llm_model_free(model);
    if (failures) {
        fprintf(stderr, "%d sequences differ from alone\n", failures);
        return 1;
    }
    fprintf(stderr, "%d sequences stepped together: same tokens as alone, pool whole again\n",
            N_SEQ);
    return 0;
}
