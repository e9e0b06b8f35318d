/* bench_reward.c — reward-model training throughput: pairs/s and ms per step
 * of align_trainer_create_reward on K = 4 rankings (all C(4,2) = 6 pairs of a
 * prompt from one forward pass), B prompts per step, every sequence T tokens
 * (prompt + response + end-of-turn). The whole trainer step is timed:
 * building the sequences, forward (scalar head only), loss, backward, AdamW.
 * Prints one JSON object per measurement on stdout (names match
 * bench/torch_reward.py).
 *   bench_reward            runs every config, each in its own process
 *   bench_reward <config>   runs one ("tiny" or "124M")
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_ITERS (default 3). */
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
    int L, H, C, V, B, K, T;
} bench_cfg;

static const bench_cfg cfgs[] = {
    {"tiny", 4, 4, 256, 50304, 8, 4, 64},
    {"124M", 12, 12, 768, 50257, 4, 4, 64},
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

static int fail(const char *what)
{
    fprintf(stderr, "bench_reward: %s: %s\n", what, align_last_errmsg());
    return 1;
}

static int run(const bench_cfg *c)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    align_threads_set(threads);
    const char *kernel = align_blas_info();
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.flags = ALIGN_MODEL_SCALAR_HEAD;
    p.n_layer = c->L;
    p.n_head = c->H;
    p.n_embd = c->C;
    p.vocab_size = c->V;
    p.max_seq_len = 1024;
    align_model *m;
    align_optimizer *o;
    align_tokenizer *t;
    align_dataset *d;
    align_trainer *tr;
    if (align_model_create(&m, &p))
        return fail("model");
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.weight_decay = 0.1f;
    if (align_optimizer_create(&o, m, &op) || align_tokenizer_bytes(&t) || align_dataset_create(&d))
        return fail("setup");
    /* byte tokens: a prompt of T/2 - 1 characters and responses of T/2
     * give T tokens with the end-of-turn */
    int np = c->T / 2 - 1, nr = c->T / 2;
    char prompt[1024], resp[8][1024];
    const char *rs[8];
    int32_t rank[8];
    for (int i = 0; i < c->B * (iters + 1); i++) {
        for (int j = 0; j < np; j++)
            prompt[j] = (char)('a' + (i * 7 + j * 3) % 26);
        prompt[np] = 0;
        for (int k = 0; k < c->K; k++) {
            for (int j = 0; j < nr; j++)
                resp[k][j] = (char)('a' + (i * 5 + j * 11 + k * 13) % 26);
            resp[k][nr] = 0;
            rs[k] = resp[k];
            rank[k] = k;
        }
        if (align_dataset_add_ranking(d, prompt, rs, rank, c->K, NULL))
            return fail("data");
    }
    align_reward_train_params rp;
    align_reward_train_default_params(&rp, sizeof rp);
    rp.micro_batch = c->B;
    rp.max_steps = iters + 1;
    rp.flags = ALIGN_REWARD_TRAIN_SEQUENTIAL;
    if (align_trainer_create_reward(&tr, m, t, d, o, &rp))
        return fail("trainer");
    double total = 0;
    for (int it = 0; it < iters + 1; it++) {
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        double t0 = now();
        if (align_trainer_step(tr, &st) != ALIGN_OK) {
            fprintf(stderr, "bench_reward: step: %s\n", align_trainer_errmsg(tr));
            return 1;
        }
        double dt = now() - t0;
        if (st.tokens != (int64_t)c->B * c->K * c->T) {
            fprintf(stderr, "bench_reward: %lld tokens a step, expected %d\n", (long long)st.tokens,
                    c->B * c->K * c->T);
            return 1;
        }
        if (it > 0) /* the first step warms up */
            total += dt;
    }
    double ms = total / iters * 1e3;
    int pairs = c->B * c->K * (c->K - 1) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char nm[128];
#define E(suffix, v, unit) \
    (snprintf(nm, sizeof nm, "reward_%s_%dx%dx%d_%s", c->name, c->B, c->K, c->T, suffix), emit(nm, v, unit, kernel))
    E("ms_per_step", ms, "ms");
    E("pairs_per_s", pairs / (ms * 1e-3), "pairs/s");
    E("peak_rss_mb", ru.ru_maxrss / 1024.0, "MB");
    align_trainer_free(tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_optimizer_free(o);
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
        fprintf(stderr, "bench_reward: unknown config '%s'\n", argv[1]);
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
