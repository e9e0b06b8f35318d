/* check_rl_prompt.c — online RL conditions on the prompt. The rewards in
 * check_rl.c ignore the prompt, so a slip in how prompts and responses are
 * laid out (an off-by-one at the boundary, prompts of different lengths in
 * one batch, old/reference log-probs at the wrong positions, responses paired
 * with the wrong prompt) would pass them. Here the reward pays 1 only when
 * the response's first byte is the letter the prompt is made of ("a:",
 * "bb:", "ccc:", ... mixed in every batch), so a policy that does not read
 * its prompt earns 1/4 at best. Public API only. */
#include "testutil.h"

#include "align.h"

#include <math.h>
#include <stdint.h>

#define N_LETTERS 4
#define N_LENS    3
#define MAX_NEW   2
#define CAP       (N_LETTERS * N_LENS * 16)

/* Prompt styles: the letter repeated then ':' ("a:", "bb:", "ccc:": the
 * answer must be read through attention), or dashes then the letter ("-a",
 * "--b": the letter is the prompt's last token, right at the boundary). */
enum { STYLE_REPEAT = 0, STYLE_LAST = 1 };

static char prompt_letter(const char *p, int style)
{
    return style == STYLE_LAST ? p[strlen(p) - 1] : p[0];
}

/* The scorer: 1 when the response starts with the prompt's letter. It keeps
 * the first rollout's texts for the log-prob check. */
typedef struct scorer {
    int style;
    int calls;
    int n;
    char prompt[CAP][8], response[CAP][MAX_NEW + 1];
} scorer;

static int letter_score(const char *const *prompts, const char *const *responses, int32_t n, float *scores,
                        void *ud)
{
    scorer *sc = ud;
    if (sc->calls++ == 0 && n <= CAP) {
        sc->n = n;
        for (int32_t i = 0; i < n; i++) {
            snprintf(sc->prompt[i], sizeof sc->prompt[i], "%s", prompts[i]);
            snprintf(sc->response[i], sizeof sc->response[i], "%s", responses[i]);
        }
    }
    for (int32_t i = 0; i < n; i++)
        scores[i] = responses[i][0] != '\0' && responses[i][0] == prompt_letter(prompts[i], sc->style) ? 1.0f : 0.0f;
    return 0;
}

typedef struct prig {
    align_model *pol, *ref;
    align_optimizer *opt;
    align_tokenizer *tok;
    align_reward_model *rm;
    align_dataset *prompts, *demos;
    align_trainer *tr;
    scorer sc;
} prig;

static void prompt_text(char *buf, int style, int letter, int len)
{
    for (int k = 0; k < len; k++)
        buf[k] = style == STYLE_LAST ? '-' : (char)('a' + letter);
    buf[len] = style == STYLE_LAST ? (char)('a' + letter) : ':';
    buf[len + 1] = '\0';
}

/* A tiny policy given a few SFT steps on the right answers: it learns to
 * answer with one letter and EOT, and stops well before it reads its prompt
 * (its first rollouts score below the prompt-blind bound; asserted). */
static void prig_init(prig *r, int style, int head)
{
    memset(r, 0, sizeof *r);
    r->sc.style = style;
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 48;
    mp.vocab_size = 257;
    mp.max_seq_len = 16;
    mp.seed = 11;
    mp.flags = head ? ALIGN_MODEL_SCALAR_HEAD : 0u;
    ck_assert_int_eq(align_model_create(&r->pol, &mp), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-2f;
    ck_assert_int_eq(align_optimizer_create(&r->opt, r->pol, &op), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_bytes(&r->tok), ALIGN_OK);
    ck_assert_int_eq(align_reward_model_from_callback(&r->rm, letter_score, &r->sc), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&r->prompts), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&r->demos), ALIGN_OK);
    for (int len = 1; len <= N_LENS; len++)
        for (int l = 0; l < N_LETTERS; l++) {
            char p[8], resp[2] = { (char)('a' + l), '\0' };
            prompt_text(p, style, l, len);
            ck_assert_int_eq(align_dataset_add_prompt(r->prompts, p, NULL), ALIGN_OK);
            for (int k = 0; k < 4; k++)
                ck_assert_int_eq(align_dataset_add_demo(r->demos, p, resp, NULL), ALIGN_OK);
        }
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 16;
    sp.epochs = 3;
    align_trainer *sft = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&sft, r->pol, r->tok, r->demos, r->opt, &sp), ALIGN_OK);
    int rc;
    while ((rc = align_trainer_step(sft, NULL)) == ALIGN_OK)
        ;
    ck_assert_msg(rc == ALIGN_DONE, "SFT: %s", align_trainer_errmsg(sft));
    align_trainer_free(sft);
    ck_assert_int_eq(align_model_clone(&r->ref, r->pol, ALIGN_FROZEN), ALIGN_OK);
    align_optimizer_free(r->opt); /* RL starts with fresh moments */
    r->opt = NULL;
    ck_assert_int_eq(align_optimizer_create(&r->opt, r->pol, &op), ALIGN_OK);
}

static void prig_free(prig *r)
{
    align_trainer_free(r->tr);
    align_dataset_free(r->demos);
    align_dataset_free(r->prompts);
    align_reward_model_free(r->rm);
    align_tokenizer_free(r->tok);
    align_optimizer_free(r->opt);
    align_model_free(r->ref);
    align_model_free(r->pol);
}

static align_rl_roles prig_roles(prig *r)
{
    align_rl_roles ro;
    ALIGN_RL_ROLES_INIT(&ro);
    ro.policy = r->pol;
    ro.policy_opt = r->opt;
    ro.reference = r->ref;
    ro.reward = r->rm;
    ro.tokenizer = r->tok;
    return ro;
}

static double metric(const align_trainer *tr, const char *name)
{
    double v = NAN;
    ck_assert_msg(align_trainer_metric(tr, ALIGN_METRICS_STEP, name, &v) == ALIGN_OK, "no metric %s", name);
    return v;
}

/* The first rollout's old log-probs, seen through objective/entropy (minus
 * their sum over response tokens, per sample), against a forward pass of the
 * policy as it was (frozen copy) over each prompt + response alone. A
 * response shorter than MAX_NEW ended with EOT (the byte tokenizer has one
 * token per byte), which is a response token too. */
static void check_old_logprobs(prig *r, align_model *before)
{
    ck_assert_int_eq(r->sc.calls, 1);
    double sum = 0.0;
    int32_t eot = align_tokenizer_eot(r->tok);
    for (int i = 0; i < r->sc.n; i++) {
        int32_t seq[16], pl = (int32_t)strlen(r->sc.prompt[i]), rl = (int32_t)strlen(r->sc.response[i]), L = 0;
        for (int32_t t = 0; t < pl; t++)
            seq[L++] = (uint8_t)r->sc.prompt[i][t];
        for (int32_t t = 0; t < rl; t++)
            seq[L++] = (uint8_t)r->sc.response[i][t];
        if (rl < MAX_NEW)
            seq[L++] = eot;
        float lp[15];
        ck_assert_int_eq(align_model_forward(before, seq, &L, 1, L, lp, NULL, NULL), ALIGN_OK);
        for (int32_t t = pl; t < L; t++)
            sum -= lp[t - 1];
    }
    double got = metric(r->tr, "objective/entropy"), want = sum / r->sc.n;
    ck_assert_msg(fabs(got - want) < 1e-4 * (1.0 + fabs(want)), "old log-probs: trainer %.6f, forward %.6f", got,
                  want);
}

/* Mean rollout score over the first and the last w rollouts (steps that
 * reuse a rollout report its score again: each rollout counts once). */
static void run(prig *r, int32_t steps, int32_t per_rollout, int32_t w, double *first, double *last, double *kl)
{
    *first = *last = 0.0;
    const int32_t n_roll = steps / per_rollout;
    align_model *before = NULL;
    ck_assert_int_eq(align_model_clone(&before, r->pol, ALIGN_FROZEN), ALIGN_OK);
    for (int32_t s = 0; s < steps; s++) {
        int rc = align_trainer_step(r->tr, NULL);
        ck_assert_msg(rc == ALIGN_OK, "step %d: %s", (int)s, align_trainer_errmsg(r->tr));
        if (s == 0)
            check_old_logprobs(r, before);
        if (s % per_rollout)
            continue;
        int32_t k = s / per_rollout;
        double sc = metric(r->tr, "objective/scores");
        if (k < w)
            *first += sc / w;
        if (k >= n_roll - w)
            *last += sc / w;
        *kl = metric(r->tr, "objective/kl");
    }
    align_model_free(before);
}

/* A prompt-blind policy earns at most 1/N_LETTERS in expectation (every
 * letter is asked equally often); the bars are far above what sampling noise
 * gives one (96 samples a rollout, averaged over several rollouts). */
#define BLIND_MAX (1.0 / N_LETTERS)

static align_grpo_params group_params(int rloo, int32_t steps)
{
    align_grpo_params p;
    if (rloo)
        ALIGN_RLOO_DEFAULT_PARAMS(&p);
    else
        ALIGN_GRPO_DEFAULT_PARAMS(&p);
    p.flags = ALIGN_RL_RAW_PROMPT; /* as the SFT demonstrations have them */
    p.group_size = 8;
    p.prompts_per_step = N_LETTERS * N_LENS; /* every prompt length in every batch */
    p.max_new_tokens = MAX_NEW;
    p.max_steps = steps;
    p.micro_batch = 32;
    return p;
}

/* _i: 0 GRPO on "a:" prompts, 1 GRPO on "-a" prompts, 2 RLOO on "-a". */
START_TEST(test_group_reads_prompt)
{
    const int rloo = _i == 2, style = _i == 0 ? STYLE_REPEAT : STYLE_LAST;
    prig r;
    prig_init(&r, style, 0);
    align_rl_roles ro = prig_roles(&r);
    const int32_t steps = 30;
    align_grpo_params p = group_params(rloo, steps);
    if (rloo) /* RLOO's unscaled advantages: with 8 a group it sometimes collapses onto one letter (at 4 threads) */
        p.group_size = 16;
    ck_assert_int_eq((rloo ? align_trainer_create_rloo : align_trainer_create_grpo)(&r.tr, &ro, r.prompts, &p),
                     ALIGN_OK);
    double a, b, kl = 0;
    run(&r, steps, 1, 3, &a, &b, &kl);
    fprintf(stderr, "%s, %s prompts: score %.3f -> %.3f (%d steps), kl %.3f\n", rloo ? "rloo" : "grpo",
            style == STYLE_LAST ? "\"-a\"" : "\"a:\"", a, b, (int)steps, kl);
    ck_assert_msg(a < BLIND_MAX + 0.05, "the SFT start already reads the prompt (%.3f)", a);
    ck_assert_msg(b > 2.0 * BLIND_MAX && b > a + 0.3, "%s did not learn to read the prompt: %.3f -> %.3f",
                  rloo ? "RLOO" : "GRPO", a, b);
    ck_assert(isfinite(kl) && kl < 10.0);
    prig_free(&r);
}
END_TEST

START_TEST(test_ppo_reads_prompt)
{
    prig r;
    prig_init(&r, STYLE_LAST, 1);
    align_rl_roles ro = prig_roles(&r);
    align_ppo_params p;
    ALIGN_PPO_DEFAULT_PARAMS(&p);
    p.flags = ALIGN_RL_RAW_PROMPT;
    p.rollouts_per_step = 48;
    p.ppo_epochs = 2;
    p.max_new_tokens = MAX_NEW;
    p.max_steps = 60;
    p.micro_batch = 24;
    ck_assert_int_eq(align_trainer_create_ppo(&r.tr, &ro, r.prompts, &p), ALIGN_OK);
    double a, b, kl = 0;
    run(&r, 60, 2, 4, &a, &b, &kl);
    fprintf(stderr, "ppo, \"-a\" prompts: score %.3f -> %.3f (60 steps), kl %.3f\n", a, b, kl);
    ck_assert_msg(a < BLIND_MAX + 0.05, "the SFT start already reads the prompt (%.3f)", a);
    ck_assert_msg(b > 2.0 * BLIND_MAX && b > a + 0.3, "PPO did not learn to read the prompt: %.3f -> %.3f", a, b);
    ck_assert(isfinite(kl) && kl < 10.0);
    prig_free(&r);
}
END_TEST

/* The sampled tokens' log-probs of a batch mixing prompt lengths equal a
 * forward pass over each prompt + response alone, at the response positions:
 * what the trainers' old log-probs are meant to be. */
START_TEST(test_mixed_lengths_logprobs)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = 24;
    mp.seed = 5;
    align_model *m = NULL;
    align_tokenizer *tok = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_bytes(&tok), ALIGN_OK);
    enum { N = 5 };
    const int32_t lens[N] = { 1, 4, 2, 7, 3 };
    int32_t toks[1 + 4 + 2 + 7 + 3];
    for (int i = 0; i < (int)(sizeof toks / sizeof toks[0]); i++)
        toks[i] = 'a' + (i * 7) % 26;
    align_generate_params gp;
    align_generate_default_params(&gp, sizeof gp);
    gp.max_new_tokens = 6;
    gp.temperature = 1.0f;
    gp.seed = 3;
    align_generation *g = NULL;
    ck_assert_int_eq(align_generate_tokens(m, tok, toks, lens, N, &gp, &g), ALIGN_OK);
    int32_t off = 0, checked = 0;
    for (int i = 0; i < N; i++) {
        int32_t k = 0, kl = 0;
        const int32_t *rt = align_generation_tokens(g, i, &k);
        const float *lp = align_generation_logprobs(g, i, &kl);
        ck_assert_int_eq(k, kl);
        int32_t seq[24], L = lens[i] + k;
        memcpy(seq, toks + off, (size_t)lens[i] * sizeof(int32_t));
        memcpy(seq + lens[i], rt, (size_t)k * sizeof(int32_t));
        float out[23];
        if (L >= 2) {
            ck_assert_int_eq(align_model_forward(m, seq, &L, 1, L, out, NULL, NULL), ALIGN_OK);
            for (int32_t t = 0; t < k; t++) {
                ck_assert_msg(fabsf(out[lens[i] - 1 + t] - lp[t]) < 1e-4f, "seq %d tok %d: %g vs %g", i, (int)t,
                              (double)out[lens[i] - 1 + t], (double)lp[t]);
                checked++;
            }
        }
        off += lens[i];
    }
    ck_assert_int_gt(checked, 10);
    align_generation_free(g);
    align_tokenizer_free(tok);
    align_model_free(m);
}
END_TEST

Suite *rl_prompt_suite(void)
{
    Suite *s = suite_create("rl_prompt");
    TCase *tc = test_tcase(s, "learn", 300);
    tcase_add_loop_test(tc, test_group_reads_prompt, 0, 3);
    tcase_add_test(tc, test_ppo_reads_prompt);
    tcase_add_test(tc, test_mixed_lengths_logprobs);
    return s;
}
