/* bench_bf16.c — the training step (forward + backward + AdamW) in the bf16
 * compute mode (align_compute_set) against the fp32 step, on bench_train's
 * shapes. Per config, two processes:
 *   - steps alternate fp32, bf16, fp32, bf16, ... in one process (after one
 *     warm-up step of each), so both sides see the same machine load; the
 *     medians and their ratio are reported;
 *   - a process that runs bf16 steps only, for the peak RSS of the mode.
 * The bf16 step's records carry "compare_as": bench_train's name for the
 * same step, so that bench/run.sh sets them against PyTorch's fp32 and bf16
 * autocast steps (bench/torch_train.py) of the same run.
 *   bench_bf16                  every config
 *   bench_bf16 <config> [rss]   one ("124M" or "tiny")
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_ITERS (default 3: pairs). */
#define _GNU_SOURCE
#include "align.h"

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

static void emit(const char *name, double v, const char *unit, const char *kernel, const char *as)
{
    printf("{\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"kernel\":\"%s\"", name, v, unit, kernel);
    if (as)
        printf(",\"compare_as\":\"%s\"", as);
    printf("}\n");
    fflush(stdout);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int run(const bench_cfg *c, int rss_only)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    if (iters < 1)
        iters = 1;
    align_threads_set(threads);
    if (align_compute_set(ALIGN_COMPUTE_BF16)) {
        fprintf(stderr, "bench_bf16: %s (nothing to measure)\n", align_last_errmsg());
        return 0;
    }
    char kernel[512];
    snprintf(kernel, sizeof kernel, "%s", align_compute_info());
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = c->L;
    p.n_head = c->H;
    p.n_embd = c->C;
    p.vocab_size = c->V;
    p.max_seq_len = c->maxT;
    align_model *m;
    align_optimizer *o;
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.weight_decay = 0.1f;
    if (align_model_create(&m, &p) || align_optimizer_create(&o, m, &op)) {
        fprintf(stderr, "bench_bf16: %s\n", align_last_errmsg());
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
    double *t16 = malloc(sizeof(double) * (size_t)iters), *t32 = malloc(sizeof(double) * (size_t)iters);
    for (int it = 0; it < iters + 1; it++)
        for (int mode = rss_only ? ALIGN_COMPUTE_BF16 : ALIGN_COMPUTE_FP32; mode <= ALIGN_COMPUTE_BF16; mode++) {
            align_compute_set(mode);
            double t0 = now();
            if (align_model_forward(m, tok, len, B, T, lp, NULL, NULL) || align_model_backward(m, d, NULL) ||
                align_optimizer_step(o, NULL) < 0) {
                fprintf(stderr, "bench_bf16: step failed: %s\n", align_model_errmsg(m));
                return 1;
            }
            double dt = (now() - t0) * 1e3;
            if (it > 0) /* the first step of each mode warms up */
                (mode == ALIGN_COMPUTE_BF16 ? t16 : t32)[it - 1] = dt;
            if (rss_only && it >= 1)
                goto done;
        }
done:;
    char nm[128], as[128];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
#define NAME(buf, suffix) snprintf(buf, sizeof buf, "train_%s_%dx%d%s", c->name, B, T, suffix)
    if (rss_only) {
        NAME(nm, "_bf16_peak_rss_mb");
        NAME(as, "_peak_rss_mb");
        emit(nm, ru.ru_maxrss / 1024.0, "MB", kernel, as);
    } else {
        double ms16 = median(t16, iters), ms32 = median(t32, iters);
        NAME(nm, "_bf16_ms_per_step");
        NAME(as, "_ms_per_step");
        emit(nm, ms16, "ms", kernel, as);
        NAME(nm, "_bf16_tokens_per_s");
        NAME(as, "_tokens_per_s");
        emit(nm, B * T / (ms16 * 1e-3), "tokens/s", kernel, as);
        NAME(nm, "_fp32_interleaved_ms_per_step");
        emit(nm, ms32, "ms", align_blas_info(), NULL);
        NAME(nm, "_bf16_speedup_vs_fp32");
        emit(nm, ms32 / ms16, "ratio", kernel, NULL);
    }
    align_optimizer_free(o);
    align_model_free(m);
    free(tok);
    free(len);
    free(lp);
    free(d);
    free(t16);
    free(t32);
    return 0;
}

int main(int argc, char **argv)
{
    int n = (int)(sizeof cfgs / sizeof cfgs[0]);
    if (argc > 1) {
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], cfgs[i].name))
                return run(&cfgs[i], argc > 2 && !strcmp(argv[2], "rss"));
        fprintf(stderr, "bench_bf16: unknown config '%s'\n", argv[1]);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < n; i++)
        for (int rss = 0; rss < 2; rss++) { /* own process each: honest peak RSS */
            pid_t pid = fork();
            if (pid == 0) {
                execl("/proc/self/exe", argv[0], cfgs[i].name, rss ? "rss" : "pair", (char *)NULL);
                _exit(127);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                rc = 1;
        }
    return rc;
}
