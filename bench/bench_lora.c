/* bench_lora.c — a LoRA DPO step against a full DPO step, both through
 * align_trainer_create_dpo on the same data:
 *   full: the policy trains every weight; the reference is a frozen copy
 *         (align_model_clone(ALIGN_FROZEN): a second copy of the weights);
 *   lora: adapters r=16, alpha=32 (GPT-2: c_attn and attn.c_proj; Llama:
 *         q_proj and v_proj); the reference is the policy with adapters off
 *         (ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS: the base weights shared,
 *         no copy), moments for the adapters only.
 * Configs with an SFT comparison (smollm2: a SmolLM2-135M-shaped Llama with
 * random weights) also time a plain training step (forward over `pairs`
 * sequences of T tokens, backward, AdamW) with every weight training
 * (sft_full) against the same step with the adapters (sft_lora).
 * Each variant runs in its own process (peak memory = its VmHWM from
 * /proc/self/status after the steps; the step peak = VmHWM after resetting it
 * once the models, optimizer and trainer exist); the variants alternate (full, lora,
 * full, lora, ...) over ALIGN_BENCH_ROUNDS rounds and the medians are
 * reported, so load from other processes hits both sides alike. JSON lines:
 *   lora_dpo_<cfg>_peak_mb_full / _peak_mb_lora / _peak_ratio (lora / full)
 *   lora_dpo_<cfg>_step_peak_mb_full / _step_peak_mb_lora / _step_peak_ratio
 *   lora_dpo_<cfg>_ms_per_step_full / _ms_per_step_lora / _step_time_ratio (lora / full)
 *   lora_sft_<cfg>_... the same names for the SFT step (configs with sft set)
 *   lora_<cfg>_loadavg_start / _end: the 1-minute load average around the runs
 *   bench_lora                    every config
 *   bench_lora <config>           one ("124M", "tiny" or "smollm2")
 *   bench_lora <config> <variant> one child run (full, lora, sft_full or
 *                                 sft_lora; prints "peak_kb ms step_peak_kb")
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
    int arch, L, H, KVH, C, I, V, maxT, pairs, T, sft;
} bench_cfg;

static const bench_cfg cfgs[] = {
    {"124M", ALIGN_ARCH_GPT2, 12, 12, 0, 768, 0, 50257, 1024, 2, 64, 0},
    {"tiny", ALIGN_ARCH_GPT2, 4, 4, 0, 256, 0, 50304, 1024, 8, 64, 0},
    /* SmolLM2-135M's shape (tied head, rope_theta 100000, RMSNorm eps 1e-5) */
    {"smollm2", ALIGN_ARCH_LLAMA, 30, 9, 3, 576, 1536, 49152, 2048, 2, 64, 1},
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

/* Resets VmHWM to the current RSS (Linux >= 4.0: "5" > clear_refs), so that a
 * later vm_hwm_kb() gives the peak of the training steps alone, without the
 * setup's transient (a trainable model allocates and zeroes its gradients
 * before align_model_lora_attach releases them). 0 on success. */
static int reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static double loadavg1(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* A plain training step (SFT-shaped: forward over c->pairs sequences of c->T
 * tokens, backward of the mean log-likelihood, AdamW), timed after a warm-up. */
static int sft_steps(align_model *m, align_optimizer *o, const bench_cfg *c, int iters, double *ms)
{
    const int B = c->pairs, T = c->T;
    int32_t *tok = malloc(sizeof *tok * (size_t)(B * T)), *len = malloc(sizeof *len * (size_t)B);
    float *lp = malloc(sizeof *lp * (size_t)(B * (T - 1))), *d = malloc(sizeof *d * (size_t)(B * (T - 1)));
    int rc = !tok || !len || !lp || !d;
    for (int i = 0; !rc && i < B * T; i++)
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)c->V);
    for (int b = 0; !rc && b < B; b++)
        len[b] = T;
    for (int i = 0; !rc && i < B * (T - 1); i++)
        d[i] = -1.0f / (B * (T - 1));
    double timed = 0;
    for (int it = 0; !rc && it < iters + 1; it++) {
        double t0 = now();
        if (align_model_forward(m, tok, len, B, T, lp, NULL, NULL) || align_model_backward(m, d, NULL) ||
            align_optimizer_step(o, NULL) < 0) {
            fprintf(stderr, "bench_lora: step failed: %s\n", align_model_errmsg(m));
            rc = 1;
        }
        if (it > 0) /* the first step warms up (arena, page faults) */
            timed += now() - t0;
    }
    *ms = timed / iters * 1e3;
    free(tok);
    free(len);
    free(lp);
    free(d);
    return rc;
}

/* One variant in this process: prints "peak_kb ms_per_step". */
static int child(const bench_cfg *c, const char *variant)
{
    int threads = getenv("ALIGN_BENCH_THREADS") ? atoi(getenv("ALIGN_BENCH_THREADS")) : 2;
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    if (iters < 1)
        iters = 1;
    int sft = !strncmp(variant, "sft_", 4);
    int lora = !strcmp(variant + (sft ? 4 : 0), "lora");
    align_threads_set(threads);
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.arch = c->arch;
    p.n_layer = c->L;
    p.n_head = c->H;
    p.n_embd = c->C;
    p.vocab_size = c->V;
    p.max_seq_len = c->maxT;
    if (c->arch == ALIGN_ARCH_LLAMA) {
        p.n_kv_head = c->KVH;
        p.intermediate_size = c->I;
        p.rope_theta = 100000.0f;
        p.norm_eps = 1e-5f;
    }
    align_model *m, *ref = NULL;
    if (align_model_create(&m, &p))
        DIE("model");
    if (lora) {
        align_lora_params lp;
        ALIGN_LORA_DEFAULT_PARAMS(&lp);
        lp.r = 16;
        lp.alpha = 32;
        lp.targets = c->arch == ALIGN_ARCH_LLAMA ? "q_proj,v_proj" : "c_attn,attn.c_proj";
        if (align_model_lora_attach(m, &lp))
            DIE("lora");
    }
    if (!sft && align_model_clone(&ref, m, ALIGN_FROZEN | (lora ? ALIGN_CLONE_NO_ADAPTERS : 0)))
        DIE("reference");
    align_optimizer *o;
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 1e-6f;
    if (align_optimizer_create(&o, m, &op))
        DIE("optimizer");
    if (sft) {
        long setup_kb = vm_hwm_kb();
        int reset = reset_hwm() == 0;
        double ms;
        if (sft_steps(m, o, c, iters, &ms))
            return 1;
        long step_kb = reset ? vm_hwm_kb() : -1;
        printf("%ld %.6f %ld\n", setup_kb > step_kb ? setup_kb : step_kb, ms, step_kb);
        align_optimizer_free(o);
        align_model_free(m);
        return 0;
    }
    align_tokenizer *t;
    align_dataset *d;
    if (align_tokenizer_bytes(&t) || align_dataset_create(&d))
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
    long setup_kb = vm_hwm_kb();
    int reset = reset_hwm() == 0;
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
    long step_kb = reset ? vm_hwm_kb() : -1;
    printf("%ld %.6f %ld\n", setup_kb > step_kb ? setup_kb : step_kb, timed / iters * 1e3, step_kb);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_optimizer_free(o);
    align_model_free(ref);
    align_model_free(m);
    return 0;
}

static int spawn(const char *self, const char *cfg, const char *variant, long *kb, double *ms, long *step_kb)
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
    int got = f && fscanf(f, "%ld %lf %ld", kb, ms, step_kb) == 3;
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
    /* variants alternate within each round so that a load change hits all alike */
    static const char *const variants[4] = {"full", "lora", "sft_full", "sft_lora"};
    const int nv = c->sft ? 4 : 2;
    double ms[4][64], kb[4][64], skb[4][64];
    int have_step = 1;
    const char *kernel = align_blas_info();
    char nm[128];
#define E(kind, suffix, v, unit) \
    (snprintf(nm, sizeof nm, "lora_%s%s%s_%s", kind, *kind ? "_" : "", c->name, suffix), emit(nm, v, unit, kernel))
    E("", "loadavg_start", loadavg1(), "load");
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < nv; v++) {
            long k, sk;
            if (spawn(self, c->name, variants[v], &k, &ms[v][r], &sk)) {
                fprintf(stderr, "bench_lora: %s %s failed\n", c->name, variants[v]);
                return 1;
            }
            kb[v][r] = (double)k;
            skb[v][r] = (double)sk;
            have_step &= sk > 0;
        }
    E("", "loadavg_end", loadavg1(), "load");
    for (int v = 0; v < nv; v += 2) {
        const char *kind = v ? "sft" : "dpo";
        double mf = median(ms[v], rounds), ml = median(ms[v + 1], rounds);
        double kf = median(kb[v], rounds), kl = median(kb[v + 1], rounds);
        E(kind, "peak_mb_full", kf / 1024, "MB");
        E(kind, "peak_mb_lora", kl / 1024, "MB");
        E(kind, "peak_ratio", kl / kf, "ratio");
        if (have_step) { /* the steps' own peak (VmHWM reset after the setup) */
            double sf = median(skb[v], rounds), sl = median(skb[v + 1], rounds);
            E(kind, "step_peak_mb_full", sf / 1024, "MB");
            E(kind, "step_peak_mb_lora", sl / 1024, "MB");
            E(kind, "step_peak_ratio", sl / sf, "ratio");
        }
        E(kind, "ms_per_step_full", mf, "ms");
        E(kind, "ms_per_step_lora", ml, "ms");
        E(kind, "step_time_ratio", ml / mf, "ratio");
    }
#undef E
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
        return child(c, argv[2]);
    if (c)
        return compare(argv[0], c);
    int rc = 0;
    for (int i = 0; i < n; i++)
        rc |= compare(argv[0], &cfgs[i]);
    return rc;
}
