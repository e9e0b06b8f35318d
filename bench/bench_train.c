/* bench_train.c — ms per training step (forward + backward + AdamW),
 * tokens/s, achieved GFLOP/s against an sgemm peak measured in the same run,
 * and peak memory. Prints one JSON object per measurement on stdout.
 *   bench_train            runs every config, each in its own process
 *   bench_train <config>   runs one ("124M" or "tiny")
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_ITERS (default 3). */
#define _GNU_SOURCE
#include "align.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int L, H, C, V, maxT, B, T;
} bench_cfg;

static const bench_cfg cfgs[] = {
    {"124M", 12, 12, 768, 50257, 1024, 4, 64},
    {"tiny", 4, 4, 256, 50304, 1024, 8, 128},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Peak of the BLAS on this machine: best of a few 1024^3 sgemms. */
static double sgemm_peak(void)
{
    int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 1e9;
    for (int r = 0; r < 6; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / best / 1e9;
}

static void emit(const char *name, double v, const char *unit, const char *kernel)
{
    printf("{\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"kernel\":\"%s\"}\n", name, v, unit, kernel);
    fflush(stdout);
}

static int run(const bench_cfg *c)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    align_threads_set(threads);
    const char *kernel = align_blas_info();
    double peak = sgemm_peak();
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = c->L;
    p.n_head = c->H;
    p.n_embd = c->C;
    p.vocab_size = c->V;
    p.max_seq_len = c->maxT;
    align_model *m;
    if (align_model_create(&m, &p)) {
        fprintf(stderr, "bench_train: %s\n", align_last_errmsg());
        return 1;
    }
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.weight_decay = 0.1f;
    align_optimizer *o;
    if (align_optimizer_create(&o, m, &op)) {
        fprintf(stderr, "bench_train: %s\n", align_last_errmsg());
        return 1;
    }
    int B = c->B, T = c->T;
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *len = malloc(sizeof(int32_t) * B);
    float *lp = malloc(sizeof(float) * B * (T - 1)), *d = malloc(sizeof(float) * B * (T - 1));
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)c->V);
    for (int b = 0; b < B; b++)
        len[b] = T;
    for (int i = 0; i < B * (T - 1); i++)
        d[i] = -1.0f / (B * (T - 1));
    double best = 1e9, total = 0;
    for (int it = 0; it < iters + 1; it++) {
        double t0 = now();
        if (align_model_forward(m, tok, len, B, T, lp, NULL, NULL) || align_model_backward(m, d, NULL) ||
            align_optimizer_step(o, NULL) < 0) {
            fprintf(stderr, "bench_train: step failed: %s\n", align_model_errmsg(m));
            return 1;
        }
        double dt = now() - t0;
        if (it > 0) { /* first step warms up (arena, page faults) */
            total += dt;
            if (dt < best)
                best = dt;
        }
    }
    double ms = total / iters * 1e3;
    /* FLOPs = (6 N + 12 L T C) B T, N without the position table */
    double N = (double)align_model_num_params(m) - (double)c->maxT * c->C;
    double flops = (6.0 * N + 12.0 * c->L * T * c->C) * B * T;
    double gf = flops / (ms * 1e-3) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char nm[128];
#define E(suffix, v, unit) (snprintf(nm, sizeof nm, "train_%s_%dx%d_%s", c->name, B, T, suffix), emit(nm, v, unit, kernel))
    E("ms_per_step", ms, "ms");
    E("tokens_per_s", B * T / (ms * 1e-3), "tokens/s");
    E("gflops", gf, "GFLOP/s");
    E("sgemm_peak_gflops", peak, "GFLOP/s");
    E("frac_of_sgemm_peak", gf / peak, "ratio");
    E("peak_rss_mb", ru.ru_maxrss / 1024.0, "MB");
    align_optimizer_free(o);
    align_model_free(m);
    free(tok);
    free(len);
    free(lp);
    free(d);
    return 0;
}

int main(int argc, char **argv)
{
    int n = (int)(sizeof cfgs / sizeof cfgs[0]);
    if (argc > 1) {
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], cfgs[i].name))
                return run(&cfgs[i]);
        fprintf(stderr, "bench_train: unknown config '%s'\n", argv[1]);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) { /* own process each: honest peak RSS */
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], cfgs[i].name, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 1;
    }
    return rc;
}
