/* grpo.c — GRPO with a reward written in C: a tiny byte-level policy learns
 * to answer with lowercase letters (score = share of the 8 response bytes
 * that are a..z). Prints the mean score, the KL to the reference and the
 * time per phase every 10 steps, then samples before and after.
 *
 *   grpo [--steps 60] [--lr 5e-3] [--seed 1] [--threads 0]
 */
#include "align.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int letters(const char *const *prompts, const char *const *responses, int32_t n, float *scores,
                   void *user_data)
{
    (void)prompts;
    (void)user_data;
    for (int32_t i = 0; i < n; i++) {
        int c = 0;
        for (const char *q = responses[i]; *q; q++)
            c += *q >= 'a' && *q <= 'z';
        scores[i] = (float)c / 8.0f;
    }
    return 0;
}

#define CHECK(call)                                                                               \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_ < 0) {                                                                            \
            fprintf(stderr, "grpo: %s: %s (%s)\n", #call, align_last_errmsg(), align_err_name(rc_)); \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)

static void show(align_model *m, const align_tokenizer *t, const char *when)
{
    const char *prompts[] = {"hi", "Q:"};
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 8;
    align_generation *g = NULL;
    if (align_generate(m, t, prompts, 2, &gp, &g) < 0)
        return;
    for (int i = 0; i < 2; i++) {
        printf("%s: %-3s -> \"", when, prompts[i]);
        for (const char *q = align_generation_text(g, i, NULL); *q; q++)
            putchar(*q >= 32 && *q < 127 ? *q : '.');
        printf("\"\n");
    }
    align_generation_free(g);
}

int main(int argc, char **argv)
{
    int steps = 60, threads = 0;
    float lr = 5e-3f;
    uint64_t seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lr"))
            lr = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: grpo [--steps N] [--lr LR] [--seed S] [--threads N]\n");
            return 2;
        }
    }
    align_threads_set(threads);

    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = 32;
    mp.seed = seed;
    align_model *policy = NULL, *ref = NULL;
    CHECK(align_model_create(&policy, &mp));
    CHECK(align_model_clone(&ref, policy, ALIGN_FROZEN)); /* the reference: frozen, shared weights */
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    align_optimizer *opt = NULL;
    CHECK(align_optimizer_create(&opt, policy, &op));
    align_tokenizer *tok = NULL;
    CHECK(align_tokenizer_bytes(&tok));
    align_reward_model *rm = NULL;
    CHECK(align_reward_model_from_callback(&rm, letters, NULL));
    align_dataset *prompts = NULL;
    CHECK(align_dataset_create(&prompts));
    const char *ps[] = {"Q:", "A:", "X:", "hi", "yo", "go", "ab", "zz"};
    for (int i = 0; i < 8; i++)
        CHECK(align_dataset_add_prompt(prompts, ps[i], NULL));

    align_rl_roles roles;
    ALIGN_RL_ROLES_INIT(&roles);
    roles.policy = policy;
    roles.policy_opt = opt;
    roles.reference = ref;
    roles.reward = rm;
    roles.tokenizer = tok;
    align_grpo_params p;
    ALIGN_GRPO_DEFAULT_PARAMS(&p);   /* G 4, 8 prompts a step, beta 0.04, clip 0.2 */
    p.flags = ALIGN_RL_RAW_PROMPT;   /* a model from scratch knows no chat template */
    p.max_new_tokens = 8;
    p.max_steps = steps;
    p.micro_batch = 16;
    p.seed = seed;
    align_trainer *tr = NULL;
    CHECK(align_trainer_create_grpo(&tr, &roles, prompts, &p));

    show(policy, tok, "before");
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    int rc;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        if (st.step % 10 && st.step != steps)
            continue;
        double sc = 0, kl = 0, zs = 0, tg = 0, tu = 0;
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "objective/scores", &sc);
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "objective/kl", &kl);
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "frac_reward_zero_std", &zs);
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "time/generate_ms", &tg);
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "time/update_ms", &tu);
        printf("step %3lld  score %.3f  kl %6.3f  zero-std %.2f  generate %.1f ms  update %.1f ms\n",
               (long long)st.step, sc, kl, zs, tg, tu);
    }
    if (rc < 0)
        fprintf(stderr, "grpo: %s\n", align_trainer_errmsg(tr));
    show(policy, tok, "after");

    align_trainer_free(tr);
    align_dataset_free(prompts);
    align_reward_model_free(rm);
    align_tokenizer_free(tok);
    align_optimizer_free(opt);
    align_model_free(ref);
    align_model_free(policy);
    return rc < 0;
}
