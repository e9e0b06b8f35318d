/* bench_dpo.c — one DPO step (policy forward + backward of chosen and
 * rejected in one batch, the reference's log-probs, the loss, AdamW) through
 * align_trainer_create_dpo, in the first epoch (the reference runs) and in
 * the second (its log-probs come from the cache). Prints JSON lines:
 *   dpo_<cfg>_<pairs>x<T>_ms_per_step         first epoch (as torch_dpo.py does every step)
 *   dpo_<cfg>_<pairs>x<T>_pairs_per_s
 *   dpo_<cfg>_<pairs>x<T>_ms_per_step_cached  later epochs
 *   dpo_<cfg>_<pairs>x<T>_cache_speedup       first / later
 *   bench_dpo            every config, each in its own process
 *   bench_dpo <config>   one ("124M" or "tiny")
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_ITERS (default 3). */
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
    int L, H, C, V, maxT, pairs, T;
} bench_cfg;

/* T = tokens of prompt + response + end-of-turn: a 32-byte prompt and a
 * 31-byte response (byte tokenizer) */
static const bench_cfg cfgs[] = {
    {"124M", 12, 12, 768, 50257, 1024, 2, 64},
    {"tiny", 4, 4, 256, 50304, 1024, 8, 64},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void emit(const char *name, double v, const char *unit, const char *kernel)
{
    printf("{\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"kernel\":\"%s\"}\n", name, v, unit, kernel);
    fflush(stdout);
}

static void rand_text(char *s, int n, unsigned *st)
{
    for (int i = 0; i < n; i++) {
        *st = *st * 1664525u + 1013904223u;
        s[i] = (char)('a' + (*st >> 16) % 26);
    }
    s[n] = 0;
}

#define DIE(...) do { fprintf(stderr, "bench_dpo: " __VA_ARGS__); fprintf(stderr, ": %s\n", align_last_errmsg()); return 1; } while (0)

static int run(const bench_cfg *c)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    align_threads_set(threads);
    const char *kernel = align_blas_info();
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = c->L;
    p.n_head = c->H;
    p.n_embd = c->C;
    p.vocab_size = c->V;
    p.max_seq_len = c->maxT;
    align_model *m, *ref;
    align_optimizer *o;
    align_tokenizer *t;
    align_dataset *d;
    if (align_model_create(&m, &p) || align_model_clone(&ref, m, ALIGN_FROZEN))
        DIE("model");
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 1e-6f;
    if (align_optimizer_create(&o, m, &op) || align_tokenizer_bytes(&t) || align_dataset_create(&d))
        DIE("setup");
    /* one epoch = iters + 1 steps */
    const int steps = iters + 1, n = c->pairs * steps;
    unsigned st = 12345;
    for (int i = 0; i < n; i++) {
        char pr[64], ch[64], rj[64];
        rand_text(pr, 32, &st);
        rand_text(ch, c->T - 33, &st);
        rand_text(rj, c->T - 33, &st);
        if (align_dataset_add_preference(d, pr, ch, rj, NULL))
            DIE("data");
    }
    align_dpo_params dp;
    ALIGN_DPO_DEFAULT_PARAMS(&dp);
    dp.micro_batch = c->pairs;
    dp.max_steps = 2 * steps;
    align_trainer *tr;
    if (align_trainer_create_dpo(&tr, m, ref, t, d, o, &dp))
        DIE("trainer");
    double first = 0, cached = 0;
    for (int s = 0; s < 2 * steps; s++) {
        double t0 = now();
        if (align_trainer_step(tr, NULL) != ALIGN_OK) {
            fprintf(stderr, "bench_dpo: step failed: %s\n", align_trainer_errmsg(tr));
            return 1;
        }
        double dt = now() - t0;
        if (s >= 1 && s < steps) /* the first step warms up */
            first += dt;
        else if (s >= steps)
            cached += dt;
    }
    double ms = first / iters * 1e3, msc = cached / steps * 1e3;
    char nm[128];
#define E(suffix, v, unit) (snprintf(nm, sizeof nm, "dpo_%s_%dx%d_%s", c->name, c->pairs, c->T, suffix), emit(nm, v, unit, kernel))
    E("ms_per_step", ms, "ms");
    E("pairs_per_s", c->pairs / (ms * 1e-3), "pairs/s");
    E("ms_per_step_cached", msc, "ms");
    E("cache_speedup", ms / msc, "ratio");
    align_trainer_free(tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_optimizer_free(o);
    align_model_free(ref);
    align_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    int n = (int)(sizeof cfgs / sizeof cfgs[0]);
    if (argc > 1) {
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], cfgs[i].name))
                return run(&cfgs[i]);
        fprintf(stderr, "bench_dpo: unknown config '%s'\n", argv[1]);
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
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
