/*
 * One model shared by several threads: generates a text per prompt concurrently, first each
 * thread with its own session, then all threads through one shared batcher (their sequences
 * decoded together in one forward pass per step), and checks that every text equals the one a
 * single thread generates alone.
 *
 *   usage: threads MODEL.gguf [N_TOKENS=24]
 *
 *   gcc -O2 examples/c/threads.c -Iinclude -Ltarget/release -lllmrt -lpthread \
 *       -Wl,-rpath,$PWD/target/release -o threads
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmrt.h"

#define N_THREADS 4
#define TEXT_SIZE 4096

static const char *const PROMPTS[N_THREADS] = {
    "the first president of US is",
    "Once upon a time,",
    "def fibonacci(n):",
    "The three primary colors are",
};

typedef struct job {
    const llm_model *model; /* shared, read-only */
    const char *prompt;
    uint64_t seed;
    size_t n_tokens;
    llm_session *session; /* NULL: create one for this job */
    const llm_batcher *batcher; /* set: generate through it instead of a session */
    char text[TEXT_SIZE];
    llm_status status;
    char error[256];
} job;

static void run_job(job *j) {
    llm_generate_params gp = llm_generate_default_params();
    gp.max_tokens = j->n_tokens;
    gp.temperature = 0.7f; /* sampled, not greedy: each sequence's sampler state must be its own */
    gp.seed = j->seed;
    if (j->batcher) {
        j->status = llm_batcher_generate(j->batcher, j->prompt, &gp, NULL, NULL, j->text,
                                         sizeof j->text, NULL);
        snprintf(j->error, sizeof j->error, "%s", llm_last_error());
        return;
    }
    llm_session *session = j->session;
    if (!session) {
        llm_session_params sp = llm_session_default_params();
        sp.n_ctx = 256;
        sp.n_threads = 1; /* the parallelism is across sessions here */
        session = llm_session_new(j->model, &sp);
        if (!session) {
            j->status = llm_last_status();
            snprintf(j->error, sizeof j->error, "%s", llm_last_error());
            return;
        }
    }
    j->status = llm_generate(session, j->prompt, &gp, NULL, NULL, j->text, sizeof j->text, NULL);
    /* llm_last_error is per thread: this thread's message, whatever the others do. */
    snprintf(j->error, sizeof j->error, "%s", llm_last_error());
    if (!j->session) {
        llm_session_free(session);
    }
}

static void *thread_main(void *arg) {
    run_job((job *)arg);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [N_TOKENS=24]\n", argv[0]);
        return 2;
    }
    size_t n_tokens = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 24;
    llm_model *model = llm_load(argv[1], NULL);
    if (!model) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        return 1;
    }

    /* One thread, one session, one prompt after another. */
    static job alone[N_THREADS], together[N_THREADS];
    llm_session_params sp = llm_session_default_params();
    sp.n_ctx = 256;
    sp.n_threads = 1;
    llm_session *session = llm_session_new(model, &sp);
    if (!session) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        llm_model_free(model);
        return 1;
    }
    for (int i = 0; i < N_THREADS; i++) {
        alone[i] = (job){.model = model, .prompt = PROMPTS[i], .seed = 1000 + (uint64_t)i,
                         .n_tokens = n_tokens, .session = session};
        llm_session_reset(session);
        run_job(&alone[i]);
    }
    llm_session_free(session);

    /* The same jobs on concurrent threads: each with its own session, then all through one
     * batcher. */
    llm_engine_params ep = llm_engine_default_params();
    ep.n_ctx = 256;
    ep.n_threads = 2;
    llm_batcher *batcher = llm_batcher_new(model, &ep);
    if (!batcher) {
        fprintf(stderr, "error: %s\n", llm_last_error());
        llm_model_free(model);
        return 1;
    }
    static const char *const MODES[2] = {"own session", "shared batcher"};
    int failures = 0;
    for (int mode = 0; mode < 2; mode++) {
        pthread_t threads[N_THREADS];
        for (int i = 0; i < N_THREADS; i++) {
            together[i] = alone[i];
            together[i].session = NULL;
            together[i].batcher = mode == 1 ? batcher : NULL;
            together[i].text[0] = '\0';
            if (pthread_create(&threads[i], NULL, thread_main, &together[i]) != 0) {
                fprintf(stderr, "error: cannot start thread %d\n", i);
                return 1;
            }
        }
        for (int i = 0; i < N_THREADS; i++) {
            pthread_join(threads[i], NULL);
        }
        for (int i = 0; i < N_THREADS; i++) {
            if (alone[i].status != LLM_OK || together[i].status != LLM_OK) {
                fprintf(stderr, "%s, prompt %d failed: alone %d (%s), threaded %d (%s)\n",
                        MODES[mode], i, alone[i].status, alone[i].error, together[i].status,
                        together[i].error);
                failures++;
            } else if (strcmp(alone[i].text, together[i].text) != 0 || alone[i].text[0] == '\0') {
                fprintf(stderr, "%s, prompt %d differs:\n  alone:    %s\n  threaded: %s\n",
                        MODES[mode], i, alone[i].text, together[i].text);
                failures++;
            } else {
                printf("%s\t%d\t%s\n", MODES[mode], i, together[i].text);
            }
        }
    }
    llm_batcher_free(batcher);
    llm_model_free(model);
    if (failures) {
        fprintf(stderr, "%d of %d threaded generations differ\n", failures, 2 * N_THREADS);
        return 1;
    }
    fprintf(stderr,
            "%d threads with one shared model, with sessions and with one batcher: same texts as "
            "one thread\n",
            N_THREADS);
    return 0;
}
