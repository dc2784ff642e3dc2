/*
 * Streams a completion of a prompt to stdout and prints statistics to stderr.
 *
 *   usage: generate MODEL.gguf PROMPT [N_TOKENS=32] [TEMPERATURE=0.8]
 *
 * Build against the shared library:
 *   gcc -O2 examples/c/generate.c -Iinclude -Ltarget/release -lllmrt \
 *       -Wl,-rpath,$PWD/target/release -o generate
 * or the static one:
 *   gcc -O2 examples/c/generate.c -Iinclude target/release/libllmrt.a -lpthread -ldl -lm \
 *       -o generate-static
 */
#include <stdio.h>
#include <stdlib.h>

#include "llmrt.h"

/* Called with each piece of text as soon as it is complete. */
static bool print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true; /* false would stop generating */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N_TOKENS=32] [TEMPERATURE=0.8]\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    const char *prompt = argv[2];
    size_t n_tokens = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 32;
    float temperature = argc > 4 ? strtof(argv[4], NULL) : 0.8f;

    llm_model *model = llm_load(model_path, NULL);
    if (!model) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        return 1;
    }
    llm_session *session = llm_session_new(model, NULL);
    if (!session) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        llm_model_free(model);
        return 1;
    }

    llm_generate_params params = llm_generate_default_params();
    params.max_tokens = n_tokens;
    params.temperature = temperature;

    llm_generate_stats stats;
    llm_status status =
        llm_generate(session, prompt, &params, print_piece, NULL, NULL, 0, &stats);
    if (status != LLM_OK) {
        fprintf(stderr, "\nerror: %s: %s\n", llm_status_str(status), llm_last_error());
    } else {
        fprintf(stderr,
                "\n[%s]\nprompt: %zu tokens, %.1f tokens/s; generated: %zu tokens, %.1f tokens/s\n",
                llm_system_info(), stats.prompt_tokens, stats.prompt_tokens_per_second,
                stats.generated_tokens, stats.generate_tokens_per_second);
    }

    llm_session_free(session);
    llm_model_free(model);
    return status == LLM_OK ? 0 : 1;
}
