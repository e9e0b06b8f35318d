/* bench_generate.c — align_generate throughput: new tokens/s for a 32-token
 * prompt and ALIGN_BENCH_GEN_TOKENS (default 128) new tokens, greedy, at
 * batch 1 and 8, for GPT-2 124M and "tiny" (L4 H4 C256 V50304), randomly
 * initialised. For batch 1, decoding is bound by reading the weights: we
 * also report the fraction of the copy bandwidth it reaches
 *   (fp32 weight bytes read per token x tokens/s) / memcpy bandwidth,
 * with the memcpy bandwidth (read + write bytes per second, STREAM "copy"
 * convention) measured in the same run.
 * Prints one JSON object per measurement on stdout (bench/run.sh collects
 * them and pairs them with bench/torch_generate.py's by name).
 *   bench_generate            every config, each in its own process
 *   bench_generate <config>   one ("124M" or "tiny")
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_GEN_TOKENS (128),
 *      ALIGN_BENCH_GEN_ITERS (timed runs, best kept; default 1). */
#define _GNU_SOURCE
#include "align.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int L, H, C, V, maxT;
} bench_cfg;

static const bench_cfg cfgs[] = {
    {"124M", 12, 12, 768, 50257, 1024},
    {"tiny", 4, 4, 256, 50304, 1024},
};

enum { PROMPT_TOKENS = 32 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && atoi(s) > 0 ? atoi(s) : def;
}

static void emit(const char *name, double v, const char *unit)
{
    printf("{\"name\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", \"kernel\": \"%s\"}\n", name, v, unit,
           align_blas_info());
    fflush(stdout);
}

/* Bytes per second of memcpy over 256 MiB (read + write), best of 5. */
static double copy_bandwidth(void)
{
    size_t n = (size_t)256 << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) {
        free(a);
        free(b);
        return 0.0;
    }
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        memcpy(r & 1 ? a : b, r & 1 ? b : a, n);
        double dt = now() - t0;
        if (dt < best)
            best = dt;
    }
    volatile char sink = a[n / 2] + b[n / 3];
    (void)sink;
    free(a);
    free(b);
    return 2.0 * (double)n / best;
}

static int run(const bench_cfg *c)
{
    const int new_tokens = env_int("ALIGN_BENCH_GEN_TOKENS", 128);
    const int iters = env_int("ALIGN_BENCH_GEN_ITERS", 1);
    align_threads_set(env_int("ALIGN_BENCH_THREADS", 2));

    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = c->L;
    mp.n_head = c->H;
    mp.n_embd = c->C;
    mp.vocab_size = c->V;
    mp.max_seq_len = c->maxT;
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    if (align_model_create(&m, &mp) != ALIGN_OK || align_tokenizer_bytes(&t) != ALIGN_OK) {
        fprintf(stderr, "bench_generate: %s\n", align_last_errmsg());
        return 1;
    }
    /* 32 bytes = 32 tokens with the byte tokenizer; the LM head still spans
     * the model's whole vocabulary. */
    static char prompt[8][PROMPT_TOKENS + 1];
    const char *prompts[8];
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < PROMPT_TOKENS; j++)
            prompt[i][j] = (char)('a' + (i * 7 + j * 3) % 26);
        prompt[i][PROMPT_TOKENS] = 0;
        prompts[i] = prompt[i];
    }
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.flags = ALIGN_GENERATE_IGNORE_EOT;

    const double bw = copy_bandwidth();
    /* weights read per decoded token: all parameters but the position table
     * (one row of it is read); the tied head is counted once, as it is read once */
    const double weight_bytes = 4.0 * (double)(align_model_num_params(m) - (int64_t)c->maxT * c->C);
    const int batches[2] = {1, 8};
    for (int bi = 0; bi < 2; bi++) {
        int B = batches[bi];
        align_generation *g = NULL;
        gp.max_new_tokens = 4; /* warm-up: arenas, caches, BLAS threads */
        if (align_generate(m, t, prompts, B, &gp, &g) != ALIGN_OK) {
            fprintf(stderr, "bench_generate: %s\n", align_model_errmsg(m));
            return 1;
        }
        align_generation_free(g);
        gp.max_new_tokens = new_tokens;
        double best = 1e30;
        for (int it = 0; it < iters; it++) {
            double t0 = now();
            int rc = align_generate(m, t, prompts, B, &gp, &g);
            double dt = now() - t0;
            if (rc != ALIGN_OK) {
                fprintf(stderr, "bench_generate: %s\n", align_model_errmsg(m));
                return 1;
            }
            int32_t n = 0;
            align_generation_tokens(g, 0, &n);
            align_generation_free(g);
            if (n != new_tokens) {
                fprintf(stderr, "bench_generate: %d tokens generated, %d expected\n", (int)n, new_tokens);
                return 1;
            }
            if (dt < best)
                best = dt;
        }
        double tps = (double)B * new_tokens / best;
        char name[96];
        snprintf(name, sizeof name, "generate_%s_b%d_p%d_n%d_tokens_per_s", c->name, B, PROMPT_TOKENS,
                 new_tokens);
        emit(name, tps, "tokens/s");
        if (B == 1 && bw > 0.0) {
            snprintf(name, sizeof name, "generate_%s_b1_copy_bandwidth_fraction", c->name);
            emit(name, weight_bytes * tps / bw, "fraction");
        }
    }
    if (c == &cfgs[0] && bw > 0.0)
        emit("memcpy_bandwidth_gb_per_s", bw / 1e9, "GB/s");
    align_tokenizer_free(t);
    align_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
            if (strcmp(argv[1], cfgs[i].name) == 0)
                return run(&cfgs[i]);
        fprintf(stderr, "bench_generate: unknown config %s (124M, tiny)\n", argv[1]);
        return 2;
    }
    /* each config in its own process, so one's arenas do not crowd the other */
    int status = 0;
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], cfgs[i].name, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            status = 1;
    }
    return status;
}
