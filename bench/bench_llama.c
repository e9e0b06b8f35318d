/* bench_llama.c — a training step (forward + backward + AdamW) of a
 * SmolLM2-135M-shaped Llama model with random weights (30 layers, 9 heads,
 * 3 key/value heads, width 576, SwiGLU 1536, vocabulary 49152, tied head):
 * ms per step, tokens/s, achieved GFLOP/s and peak memory, one JSON object
 * per measurement on stdout (PyTorch baseline: bench/torch_llama.py).
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_ITERS (default 3). */
#define _GNU_SOURCE
#include "align.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

enum { L = 30, H = 9, KVH = 3, C = 576, I = 1536, V = 49152, MAXT = 2048, B = 4, T = 128 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void emit(const char *name, double v, const char *unit, const char *kernel)
{
    printf("{\"name\":\"llama_smollm2_135M_%dx%d_%s\",\"value\":%.6g,\"unit\":\"%s\",\"kernel\":\"%s\"}\n", B, T,
           name, v, unit, kernel);
    fflush(stdout);
}

int main(void)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    align_threads_set(threads);
    const char *kernel = align_blas_info();
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.arch = ALIGN_ARCH_LLAMA;
    p.n_layer = L;
    p.n_head = H;
    p.n_kv_head = KVH;
    p.n_embd = C;
    p.intermediate_size = I;
    p.vocab_size = V;
    p.max_seq_len = MAXT;
    p.rope_theta = 100000.0f;
    p.norm_eps = 1e-5f;
    align_model *m;
    align_optimizer *o;
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.weight_decay = 0.1f;
    if (align_model_create(&m, &p) || align_optimizer_create(&o, m, &op)) {
        fprintf(stderr, "bench_llama: %s\n", align_last_errmsg());
        return 1;
    }
    static int32_t tok[B * T], len[B];
    static float lp[B * (T - 1)], d[B * (T - 1)];
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)V);
    for (int b = 0; b < B; b++)
        len[b] = T;
    for (int i = 0; i < B * (T - 1); i++)
        d[i] = -1.0f / (B * (T - 1));
    double total = 0;
    for (int it = 0; it < iters + 1; it++) {
        double t0 = now();
        if (align_model_forward(m, tok, len, B, T, lp, NULL, NULL) || align_model_backward(m, d, NULL) ||
            align_optimizer_step(o, NULL) < 0) {
            fprintf(stderr, "bench_llama: step failed: %s\n", align_model_errmsg(m));
            return 1;
        }
        if (it > 0) /* the first step warms up (arena, page faults) */
            total += now() - t0;
    }
    double ms = total / iters * 1e3;
    /* FLOPs = (6 N + 12 L T C) B T: N counts the tied head once (it is a GEMM; the lookup is not) */
    double N = (double)align_model_num_params(m);
    double gf = (6.0 * N + 12.0 * L * T * C) * B * T / (ms * 1e-3) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    emit("ms_per_step", ms, "ms", kernel);
    emit("tokens_per_s", B * T / (ms * 1e-3), "tokens/s", kernel);
    emit("gflops", gf, "GFLOP/s", kernel);
    emit("peak_rss_mb", ru.ru_maxrss / 1024.0, "MB", kernel);
    align_optimizer_free(o);
    align_model_free(m);
    return 0;
}
