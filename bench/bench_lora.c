/* bench_lora.c — a LoRA DPO step against a full DPO step, both through
 * align_trainer_create_dpo on the same data:
 *   full: the policy trains every weight; the reference is a frozen copy
 *         (align_model_clone(ALIGN_FROZEN): a second copy of the weights);
 *   lora: adapters r=16, alpha=32 on c_attn and c_proj; the reference is the
 *         policy with adapters off (ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS:
 *         the base weights shared, no copy), moments for the adapters only.
 * Each variant runs in its own process (peak memory = its VmHWM from
 * /proc/self/status after the steps); the variants alternate (full, lora,
 * full, lora, ...) over ALIGN_BENCH_ROUNDS rounds and the medians are
 * reported, so load from other processes hits both sides alike. JSON lines:
 *   lora_dpo_<cfg>_peak_mb_full / _peak_mb_lora / _peak_ratio (lora / full)
 *   lora_dpo_<cfg>_ms_per_step_full / _ms_per_step_lora / _step_time_ratio (lora / full)
 *   bench_lora                    every config
 *   bench_lora <config>           one ("124M" or "tiny")
 *   bench_lora <config> <variant> one child run (prints "peak_kb ms")
 * Env: ALIGN_BENCH_THREADS (default 2), ALIGN_BENCH_ITERS (timed steps, default 3),
 *      ALIGN_BENCH_ROUNDS (default 3). */
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

static long vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

#define DIE(...) do { fprintf(stderr, "bench_lora: " __VA_ARGS__); fprintf(stderr, ": %s\n", align_last_errmsg()); return 1; } while (0)

/* One variant in this process: prints "peak_kb ms_per_step". */
static int child(const bench_cfg *c, int lora)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    align_threads_set(threads);
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = c->L;
    p.n_head = c->H;
    p.n_embd = c->C;
    p.vocab_size = c->V;
    p.max_seq_len = c->maxT;
    align_model *m, *ref;
    if (align_model_create(&m, &p))
        DIE("model");
    if (lora) {
        align_lora_params lp;
        ALIGN_LORA_DEFAULT_PARAMS(&lp);
        lp.r = 16;
        lp.alpha = 32;
        lp.targets = "c_attn,attn.c_proj";
        if (align_model_lora_attach(m, &lp))
            DIE("lora");
    }
    if (align_model_clone(&ref, m, ALIGN_FROZEN | (lora ? ALIGN_CLONE_NO_ADAPTERS : 0)))
        DIE("reference");
    align_optimizer *o;
    align_tokenizer *t;
    align_dataset *d;
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 1e-6f;
    if (align_optimizer_create(&o, m, &op) || align_tokenizer_bytes(&t) || align_dataset_create(&d))
        DIE("setup");
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
    dp.max_steps = steps;
    align_trainer *tr;
    if (align_trainer_create_dpo(&tr, m, ref, t, d, o, &dp))
        DIE("trainer");
    double timed = 0;
    for (int s = 0; s < steps; s++) { /* the first epoch: the reference runs every step */
        double t0 = now();
        if (align_trainer_step(tr, NULL) != ALIGN_OK) {
            fprintf(stderr, "bench_lora: step failed: %s\n", align_trainer_errmsg(tr));
            return 1;
        }
        if (s >= 1) /* the first step warms up */
            timed += now() - t0;
    }
    printf("%ld %.6f\n", vm_hwm_kb(), timed / iters * 1e3);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_optimizer_free(o);
    align_model_free(ref);
    align_model_free(m);
    return 0;
}

static int spawn(const char *self, const char *cfg, const char *variant, long *kb, double *ms)
{
    int fd[2];
    if (pipe(fd))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl("/proc/self/exe", self, cfg, variant, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    int got = f && fscanf(f, "%ld %lf", kb, ms) == 2;
    if (f)
        fclose(f);
    int st = 0;
    waitpid(pid, &st, 0);
    return got && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int compare(const char *self, const bench_cfg *c)
{
    int rounds = getenv("ALIGN_BENCH_ROUNDS") ? atoi(getenv("ALIGN_BENCH_ROUNDS")) : 3;
    if (rounds < 1 || rounds > 64)
        rounds = 3;
    double ms[2][64], kb[2][64];
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < 2; v++) {
            long k;
            if (spawn(self, c->name, v ? "lora" : "full", &k, &ms[v][r])) {
                fprintf(stderr, "bench_lora: %s %s failed\n", c->name, v ? "lora" : "full");
                return 1;
            }
            kb[v][r] = (double)k;
        }
    const char *kernel = align_blas_info();
    double mf = median(ms[0], rounds), ml = median(ms[1], rounds);
    double kf = median(kb[0], rounds), kl = median(kb[1], rounds);
    char nm[128];
#define E(suffix, v, unit) (snprintf(nm, sizeof nm, "lora_dpo_%s_%s", c->name, suffix), emit(nm, v, unit, kernel))
    E("peak_mb_full", kf / 1024, "MB");
    E("peak_mb_lora", kl / 1024, "MB");
    E("peak_ratio", kl / kf, "ratio");
    E("ms_per_step_full", mf, "ms");
    E("ms_per_step_lora", ml, "ms");
    E("step_time_ratio", ml / mf, "ratio");
    return 0;
}

int main(int argc, char **argv)
{
    int n = (int)(sizeof cfgs / sizeof cfgs[0]);
    const bench_cfg *c = NULL;
    if (argc > 1) {
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], cfgs[i].name))
                c = &cfgs[i];
        if (!c) {
            fprintf(stderr, "bench_lora: unknown config '%s'\n", argv[1]);
            return 2;
        }
    }
    if (argc > 2)
        return child(c, !strcmp(argv[2], "lora"));
    if (c)
        return compare(argv[0], c);
    int rc = 0;
    for (int i = 0; i < n; i++)
        rc |= compare(argv[0], &cfgs[i]);
    return rc;
}
