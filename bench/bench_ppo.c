/* bench_ppo.c — one PPO iteration (a rollout, then ppo_epochs passes over
 * its buffer) with its time split by phase, and the rollout speed in new
 * tokens per second, for "tiny" (L4 H4 C256 V50304) and GPT-2 124M (fewer
 * rollouts), randomly initialised, value head on the policy's trunk, a frozen
 * reference and a C reward (the share of 'a' in the response). The phase
 * times are the trainer's own metrics (time/generate_ms, time/score_ms,
 * time/reference_ms, time/value_ms, time/update_ms; docs/rl.md).
 * Prints one JSON object per measurement on stdout (bench/run.sh).
 *   bench_ppo            every config, each in its own process
 *   bench_ppo <config>   one ("tiny" or "124M")
 * Env: ALIGN_BENCH_THREADS (default 2). */
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
    int rollouts, new_tokens;
} bench_cfg;

static const bench_cfg cfgs[] = {
    {"tiny", 4, 4, 256, 50304, 1024, 16, 32},
    {"124M", 12, 12, 768, 50257, 1024, 8, 16},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int share_of_a(const char *const *prompts, const char *const *responses, int32_t n,
                      float *scores, void *ud)
{
    (void)prompts;
    (void)ud;
    for (int32_t i = 0; i < n; i++) {
        size_t len = strlen(responses[i]), a = 0;
        for (size_t k = 0; k < len; k++)
            a += responses[i][k] == 'a';
        scores[i] = len ? (float)a / (float)len : 0.0f;
    }
    return 0;
}

#define CHECK(call)                                                                      \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ < 0) {                                                                   \
            fprintf(stderr, "bench_ppo: %s failed: %s (%s)\n", #call, align_err_name(rc_), \
                    align_last_errmsg());                                                \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double metric(const align_trainer *tr, const char *name)
{
    double v = 0;
    return align_trainer_metric(tr, ALIGN_METRICS_STEP, name, &v) == 0 ? v : 0;
}

static void run(const bench_cfg *c)
{
    const char *t_env = getenv("ALIGN_BENCH_THREADS");
    align_threads_set(t_env ? atoi(t_env) : 2);
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = ALIGN_MODEL_SCALAR_HEAD;
    mp.n_layer = c->L;
    mp.n_head = c->H;
    mp.n_embd = c->C;
    mp.vocab_size = c->V;
    mp.max_seq_len = c->maxT;
    align_model *policy, *ref;
    align_tokenizer *tok;
    align_dataset *prompts;
    align_optimizer *opt;
    align_reward_model *rm;
    CHECK(align_model_create(&policy, &mp));
    CHECK(align_model_clone(&ref, policy, ALIGN_FROZEN));
    CHECK(align_tokenizer_bytes(&tok));
    CHECK(align_dataset_create(&prompts));
    for (int i = 0; i < 256; i++) {
        char p[64];
        snprintf(p, sizeof p, "request %d: write a word", i);
        CHECK(align_dataset_add_prompt(prompts, p, NULL));
    }
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-5f;
    CHECK(align_optimizer_create(&opt, policy, &op));
    CHECK(align_reward_model_from_callback(&rm, share_of_a, NULL));
    align_rl_roles roles;
    ALIGN_RL_ROLES_INIT(&roles);
    roles.policy = policy;
    roles.policy_opt = opt;
    roles.reference = ref;
    roles.reward = rm;
    roles.tokenizer = tok;
    align_ppo_params pp;
    ALIGN_PPO_DEFAULT_PARAMS(&pp);
    pp.flags |= ALIGN_RL_RAW_PROMPT;
    pp.rollouts_per_step = c->rollouts;
    pp.max_new_tokens = c->new_tokens;
    pp.max_steps = 1 << 20;
    align_trainer *tr;
    CHECK(align_trainer_create_ppo(&tr, &roles, prompts, &pp));
    const int steps_per_iter = pp.ppo_epochs * pp.minibatches;
    /* warm-up iteration (arenas, caches), then one timed iteration */
    for (int s = 0; s < steps_per_iter; s++)
        CHECK(align_trainer_step(tr, NULL));
    double gen = 0, score = 0, refms = 0, value = 0, update = 0, resp_len = 0;
    double t0 = now();
    for (int s = 0; s < steps_per_iter; s++) {
        CHECK(align_trainer_step(tr, NULL));
        update += metric(tr, "time/update_ms");
        if (s == 0) { /* the step that ran the rollout; later steps repeat its metrics */
            gen = metric(tr, "time/generate_ms");
            score = metric(tr, "time/score_ms");
            refms = metric(tr, "time/reference_ms");
            value = metric(tr, "time/value_ms");
            resp_len = metric(tr, "response_length");
        }
    }
    double total_ms = (now() - t0) * 1e3;
    const char *kernel = align_blas_info();
    char pre[96];
    snprintf(pre, sizeof pre, "ppo_%s_%dx%d_", c->name, c->rollouts, c->new_tokens);
    struct { const char *suffix; double v; const char *unit; } out[] = {
        {"iteration_ms", total_ms, "ms"},
        {"generate_ms", gen, "ms"},
        {"score_ms", score, "ms"},
        {"reference_ms", refms, "ms"},
        {"value_ms", value, "ms"},
        {"update_ms", update, "ms"},
        {"rollout_tokens_per_s", gen > 0 ? c->rollouts * resp_len / (gen / 1e3) : 0, "tokens/s"},
    };
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        printf("{\"name\": \"%s%s\", \"value\": %.6g, \"unit\": \"%s\", \"kernel\": \"%s\"}\n", pre,
               out[i].suffix, out[i].v, out[i].unit, kernel);
    fflush(stdout);
    align_trainer_free(tr);
    align_reward_model_free(rm);
    align_optimizer_free(opt);
    align_dataset_free(prompts);
    align_tokenizer_free(tok);
    align_model_free(ref);
    align_model_free(policy);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
            if (strcmp(argv[1], cfgs[i].name) == 0) {
                run(&cfgs[i]);
                return 0;
            }
        fprintf(stderr, "bench_ppo: unknown config '%s' (tiny, 124M)\n", argv[1]);
        return 2;
    }
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], cfgs[i].name, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fprintf(stderr, "bench_ppo: config %s failed\n", cfgs[i].name);
    }
    return 0;
}
