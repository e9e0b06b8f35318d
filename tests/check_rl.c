/* check_rl.c — the online RL trainers (GRPO, RLOO, PPO) through the public
 * API: learning a programmatic reward on a tiny policy from scratch, no
 * movement without a learning signal, bitwise resume after a stop in the
 * middle of a rollout and between PPO epochs, and scorers that fail. */
#include "testutil.h"

#include "align.h"

#include <math.h>
#include <stdint.h>

/* ---- fixtures ----------------------------------------------------------------- */

enum { MODE_LETTERS = 0, MODE_CONST = 1, MODE_FAIL = 2, MODE_NAN = 3 };

typedef struct scorer {
    int mode;
    int calls;
    int stop_at;             /* request a stop during this call (1-based); 0 = never */
    align_trainer *tr;
} scorer;

/* Score = share of the 8 response bytes that are lowercase letters. */
static int score_fn(const char *const *prompts, const char *const *responses, int32_t n, float *scores, void *ud)
{
    (void)prompts;
    scorer *sc = ud;
    sc->calls++;
    if (sc->stop_at && sc->calls == sc->stop_at && sc->tr)
        align_trainer_request_stop(sc->tr);
    if (sc->mode == MODE_FAIL)
        return -42;
    for (int32_t i = 0; i < n; i++) {
        int c = 0;
        for (const char *q = responses[i]; *q; q++)
            c += *q >= 'a' && *q <= 'z';
        scores[i] = sc->mode == MODE_CONST ? 0.5f : sc->mode == MODE_NAN && i == 3 ? NAN : (float)c / 8.0f;
    }
    return 0;
}

typedef struct rig {
    align_model *pol, *ref, *val;
    align_optimizer *opt, *vopt;
    align_dataset *demos;
    align_tokenizer *tok;
    align_reward_model *rm;
    align_dataset *data;
    align_trainer *tr;
    scorer sc;
} rig;

static void rig_init(rig *r, int head, float lr, int mode)
{
    memset(r, 0, sizeof *r);
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = 32;
    mp.seed = 7;
    mp.flags = head ? ALIGN_MODEL_SCALAR_HEAD : 0u;
    ck_assert_int_eq(align_model_create(&r->pol, &mp), ALIGN_OK);
    ck_assert_int_eq(align_model_clone(&r->ref, r->pol, ALIGN_FROZEN), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    ck_assert_int_eq(align_optimizer_create(&r->opt, r->pol, &op), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_bytes(&r->tok), ALIGN_OK);
    r->sc.mode = mode;
    ck_assert_int_eq(align_reward_model_from_callback(&r->rm, score_fn, &r->sc), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&r->data), ALIGN_OK);
    const char *ps[] = {"Q:", "A:", "X:", "hi", "yo", "go", "ab", "zz"};
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(align_dataset_add_prompt(r->data, ps[i], NULL), ALIGN_OK);
}

static align_rl_roles rig_roles(rig *r, int with_ref)
{
    align_rl_roles ro;
    ALIGN_RL_ROLES_INIT(&ro);
    ro.policy = r->pol;
    ro.policy_opt = r->opt;
    ro.reference = with_ref ? r->ref : NULL;
    ro.reward = r->rm;
    ro.tokenizer = r->tok;
    return ro;
}

/* A separate value model (scalar head) and demonstrations for PPO-ptx. */
static void rig_add_value_and_demos(rig *r)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 1;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = 32;
    mp.seed = 9;
    mp.flags = ALIGN_MODEL_SCALAR_HEAD;
    ck_assert_int_eq(align_model_create(&r->val, &mp), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-3f;
    ck_assert_int_eq(align_optimizer_create(&r->vopt, r->val, &op), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&r->demos), ALIGN_OK);
    const char *ps[] = {"Q:", "A:", "X:", "hi", "yo", "go", "ab", "zz"};
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(align_dataset_add_demo(r->demos, ps[i], "abcd", NULL), ALIGN_OK);
}

static void rig_free(rig *r)
{
    align_trainer_free(r->tr);
    align_dataset_free(r->demos);
    align_optimizer_free(r->vopt);
    align_model_free(r->val);
    align_dataset_free(r->data);
    align_reward_model_free(r->rm);
    align_tokenizer_free(r->tok);
    align_optimizer_free(r->opt);
    align_model_free(r->ref);
    align_model_free(r->pol);
}

static align_grpo_params group_params(int rloo, int32_t steps)
{
    align_grpo_params p;
    if (rloo) {
        ALIGN_RLOO_DEFAULT_PARAMS(&p);
        p.group_size = 4;
    } else {
        ALIGN_GRPO_DEFAULT_PARAMS(&p);
    }
    p.flags = ALIGN_RL_RAW_PROMPT;
    p.max_new_tokens = 8;
    p.max_steps = steps;
    p.micro_batch = 16;
    return p;
}

static align_ppo_params ppo_params(int32_t steps)
{
    align_ppo_params p;
    ALIGN_PPO_DEFAULT_PARAMS(&p);
    p.flags = ALIGN_RL_RAW_PROMPT;
    p.max_new_tokens = 8;
    p.max_steps = steps;
    p.micro_batch = 16;
    return p;
}

static double metric(const align_trainer *tr, const char *name)
{
    double v = NAN;
    ck_assert_msg(align_trainer_metric(tr, ALIGN_METRICS_STEP, name, &v) == ALIGN_OK, "no metric %s", name);
    return v;
}

/* Log-probs of a fixed batch: a fingerprint of the policy's weights. */
static void fingerprint(align_model *m, float out[2 * 15])
{
    int32_t toks[2 * 16], lens[2] = {16, 16};
    for (int i = 0; i < 32; i++)
        toks[i] = (i * 37 + 11) % 257;
    ck_assert_int_eq(align_model_forward(m, toks, lens, 2, 16, out, NULL, NULL), ALIGN_OK);
}

/* Runs steps and returns the mean score of the first and last `w` steps,
 * and the last KL. */
static void run_learning(rig *r, int32_t steps, int32_t w, double *first, double *last, double *kl_last)
{
    *first = *last = 0.0;
    for (int32_t s = 0; s < steps; s++) {
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        int rc = align_trainer_step(r->tr, &st);
        ck_assert_msg(rc == ALIGN_OK, "step %d: %s", (int)s, align_trainer_errmsg(r->tr));
        double sc = metric(r->tr, "objective/scores");
        if (s < w)
            *first += sc / w;
        if (s >= steps - w)
            *last += sc / w;
        *kl_last = metric(r->tr, "objective/kl");
    }
    ck_assert_int_eq(align_trainer_step(r->tr, NULL), ALIGN_DONE);
}

/* ---- learning -------------------------------------------------------------------- */

START_TEST(test_grpo_learns)
{
    rig r;
    rig_init(&r, 0, 5e-3f, MODE_LETTERS);
    align_rl_roles ro = rig_roles(&r, 1);
    align_grpo_params p = group_params(0, 40);
    ck_assert_int_eq(align_trainer_create_grpo(&r.tr, &ro, r.data, &p), ALIGN_OK);
    double a, b, kl;
    run_learning(&r, 40, 5, &a, &b, &kl);
    fprintf(stderr, "grpo: score %.3f -> %.3f, kl %.2f, ended %.2f, gen %.1f ms update %.1f ms\n", a, b, kl,
            metric(r.tr, "ended_frac"), metric(r.tr, "time/generate_ms"), metric(r.tr, "time/update_ms"));
    ck_assert_msg(b > a + 0.3, "GRPO score %.3f -> %.3f", a, b);
    ck_assert_msg(kl >= 0.0 && kl < 40.0, "KL %.3f", kl);
    ck_assert(isfinite(metric(r.tr, "frac_reward_zero_std")));
    rig_free(&r);
}
END_TEST

START_TEST(test_rloo_learns)
{
    rig r;
    rig_init(&r, 0, 5e-3f, MODE_LETTERS);
    align_rl_roles ro = rig_roles(&r, 1);
    align_grpo_params p = group_params(1, 40);
    ck_assert_int_eq(align_trainer_create_rloo(&r.tr, &ro, r.data, &p), ALIGN_OK);
    double a, b, kl;
    run_learning(&r, 40, 5, &a, &b, &kl);
    fprintf(stderr, "rloo: score %.3f -> %.3f, kl %.2f\n", a, b, kl);
    ck_assert_msg(b > a + 0.25, "RLOO score %.3f -> %.3f", a, b);
    ck_assert_msg(kl < 40.0, "KL %.3f", kl);
    rig_free(&r);
}
END_TEST

START_TEST(test_ppo_learns)
{
    rig r;
    rig_init(&r, 1, 5e-3f, MODE_LETTERS);
    align_rl_roles ro = rig_roles(&r, 1);
    align_ppo_params p = ppo_params(100);
    ck_assert_int_eq(align_trainer_create_ppo(&r.tr, &ro, r.data, &p), ALIGN_OK);
    double a, b, kl;
    run_learning(&r, 100, 8, &a, &b, &kl);
    fprintf(stderr, "ppo: score %.3f -> %.3f, kl %.2f, value loss %.4f, explained var %.3f\n", a, b, kl,
            metric(r.tr, "loss/value_avg"), metric(r.tr, "val/vf_explained_var"));
    ck_assert_msg(b > a + 0.1, "PPO score %.3f -> %.3f", a, b);
    ck_assert_msg(kl < 40.0, "KL %.3f", kl);
    rig_free(&r);
}
END_TEST

/* PPO with a separate value model and PPO-ptx: the demonstrations' NLL falls
 * (the SFT gradient is accumulated with PPO's) and the value model trains. */
START_TEST(test_ppo_ptx_value_model)
{
    rig r;
    rig_init(&r, 0, 5e-3f, MODE_CONST);
    rig_add_value_and_demos(&r);
    align_rl_roles ro = rig_roles(&r, 1);
    ro.value = r.val;
    ro.value_opt = r.vopt;
    align_ppo_params p = ppo_params(24);
    p.ptx_data = r.demos;
    p.ptx_coef = 1.0f;
    p.ptx_batch = 8;
    ck_assert_int_eq(align_trainer_create_ppo(&r.tr, &ro, r.data, &p), ALIGN_OK);
    double first = 0, last = 0, vfirst = 0, vlast = 0;
    for (int s = 0; s < 24; s++) {
        ck_assert_msg(align_trainer_step(r.tr, NULL) == ALIGN_OK, "%s", align_trainer_errmsg(r.tr));
        double nll = metric(r.tr, "loss/ptx"), vl = metric(r.tr, "loss/value_avg");
        if (s < 4) {
            first += nll / 4;
            vfirst += vl / 4;
        }
        if (s >= 20) {
            last += nll / 4;
            vlast += vl / 4;
        }
        ck_assert(isfinite(metric(r.tr, "value/grad_norm")));
    }
    fprintf(stderr, "ppo-ptx: demo NLL %.3f -> %.3f, value loss %.4f -> %.4f\n", first, last, vfirst, vlast);
    ck_assert_msg(last < 0.5 * first, "ptx NLL %.3f -> %.3f", first, last);
    ck_assert_msg(vlast < vfirst, "value loss %.4f -> %.4f", vfirst, vlast);
    rig_free(&r);
}
END_TEST

/* ---- no learning signal: weights bitwise unchanged --------------------------------- */

START_TEST(test_constant_reward_no_move)
{
    for (int rloo = 0; rloo < 2; rloo++) {
        rig r;
        rig_init(&r, 0, 5e-3f, MODE_CONST);
        align_rl_roles ro = rig_roles(&r, 0);
        align_grpo_params p = group_params(rloo, 3);
        p.beta = 0.0f;
        ck_assert_int_eq((rloo ? align_trainer_create_rloo : align_trainer_create_grpo)(&r.tr, &ro, r.data, &p),
                         ALIGN_OK);
        float before[30], after[30];
        fingerprint(r.pol, before);
        for (int s = 0; s < 3; s++)
            ck_assert_int_eq(align_trainer_step(r.tr, NULL), ALIGN_OK);
        fingerprint(r.pol, after);
        ck_assert_msg(memcmp(before, after, sizeof before) == 0, "%s moved with a constant reward",
                      rloo ? "RLOO" : "GRPO");
        ck_assert(metric(r.tr, "grad_norm") == 0.0);
        if (!rloo)
            ck_assert(metric(r.tr, "frac_reward_zero_std") == 1.0);
        rig_free(&r);
    }
}
END_TEST

/* ---- exact resume ---------------------------------------------------------------- */

/* algo 0 GRPO (2 iterations x 2 minibatches: buffers span steps), 1 RLOO, 2 PPO
 * (value head on the trunk, adaptive KL), 3 PPO with a value model and PPO-ptx.
 * Reference run: 8 steps. Interrupted run: a stop requested during scoring of
 * its second rollout, checkpoint, a fresh trainer resumes and finishes. */
static align_trainer *make_tr(rig *r, int algo)
{
    align_rl_roles ro = rig_roles(r, 1);
    align_trainer *tr = NULL;
    if (algo < 2) {
        align_grpo_params p = group_params(algo, 8);
        p.iterations = 2;
        p.minibatches = 2;
        p.prompts_per_step = 4;
        ck_assert_int_eq((algo ? align_trainer_create_rloo : align_trainer_create_grpo)(&tr, &ro, r->data, &p),
                         ALIGN_OK);
    } else {
        align_ppo_params p = ppo_params(8);
        if (algo == 3) { /* separate value model, PPO-ptx */
            ro.value = r->val;
            ro.value_opt = r->vopt;
            p.ptx_data = r->demos;
            p.ptx_batch = 4;
        }
        p.ppo_epochs = 2;
        p.minibatches = 2;
        p.rollouts_per_step = 8;
        p.flags |= ALIGN_PPO_ADAPTIVE_KL;
        p.kl_target = 0.5f;
        p.kl_horizon = 100.0f;
        ck_assert_int_eq(align_trainer_create_ppo(&tr, &ro, r->data, &p), ALIGN_OK);
    }
    return tr;
}

START_TEST(test_resume_bitwise)
{
    const int algo = _i;
    float want[30], got[30], vwant[30], vgot[30];
    double want_sc, got_sc;
    {
        rig r;
        rig_init(&r, algo == 2, 5e-3f, MODE_LETTERS);
        if (algo == 3)
            rig_add_value_and_demos(&r);
        r.tr = make_tr(&r, algo);
        for (int s = 0; s < 8; s++)
            ck_assert_msg(align_trainer_step(r.tr, NULL) == ALIGN_OK, "%s", align_trainer_errmsg(r.tr));
        fingerprint(r.pol, want);
        if (algo == 3)
            fingerprint(r.val, vwant);
        want_sc = metric(r.tr, "objective/scores");
        rig_free(&r);
    }
    char *dir = test_tmpdir("rl-resume");
    char ck1[4200], ck2[4200];
    snprintf(ck1, sizeof ck1, "%s/mid-rollout", dir);
    snprintf(ck2, sizeof ck2, "%s/mid-buffer", dir);
    {
        rig r;
        rig_init(&r, algo == 2, 5e-3f, MODE_LETTERS);
        if (algo == 3)
            rig_add_value_and_demos(&r);
        r.tr = make_tr(&r, algo);
        r.sc.tr = r.tr;
        r.sc.stop_at = 2; /* the second rollout's scoring: the stop lands mid-rollout */
        int done = 0;
        for (;;) {
            int rc = align_trainer_step(r.tr, NULL);
            if (rc == ALIGN_ECANCELED)
                break;
            ck_assert_msg(rc == ALIGN_OK, "%s", align_trainer_errmsg(r.tr));
            done++;
        }
        ck_assert_int_eq(done, 4); /* 2 x 2 steps per buffer */
        ck_assert_int_eq(align_trainer_save(r.tr, ck1), ALIGN_OK);
        rig_free(&r);
    }
    {
        /* resume mid-rollout, run one pass over the new buffer, save between
         * its epochs (the buffer is pending), resume again */
        rig r;
        rig_init(&r, algo == 2, 5e-3f, MODE_LETTERS);
        if (algo == 3)
            rig_add_value_and_demos(&r);
        r.tr = make_tr(&r, algo);
        ck_assert_msg(align_trainer_resume(r.tr, ck1) == ALIGN_OK, "%s", align_trainer_errmsg(r.tr));
        for (int s = 0; s < 2; s++) /* one epoch over the buffer: the next is pending */
            ck_assert_int_eq(align_trainer_step(r.tr, NULL), ALIGN_OK);
        ck_assert_int_eq(align_trainer_save(r.tr, ck2), ALIGN_OK);
        rig_free(&r);
    }
    {
        rig r;
        rig_init(&r, algo == 2, 5e-3f, MODE_LETTERS);
        if (algo == 3)
            rig_add_value_and_demos(&r);
        r.tr = make_tr(&r, algo);
        ck_assert_msg(align_trainer_resume(r.tr, ck2) == ALIGN_OK, "%s", align_trainer_errmsg(r.tr));
        for (int s = 0; s < 2; s++)
            ck_assert_int_eq(align_trainer_step(r.tr, NULL), ALIGN_OK);
        ck_assert_int_eq(align_trainer_step(r.tr, NULL), ALIGN_DONE);
        fingerprint(r.pol, got);
        if (algo == 3)
            fingerprint(r.val, vgot);
        got_sc = metric(r.tr, "objective/scores");
        rig_free(&r);
    }
    ck_assert_msg(memcmp(want, got, sizeof want) == 0, "algo %d: resumed run differs", algo);
    ck_assert(want_sc == got_sc);
    if (algo == 3)
        ck_assert_msg(memcmp(vwant, vgot, sizeof vwant) == 0, "the value model differs after resume");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}
END_TEST

/* ---- failing scorers ---------------------------------------------------------------- */

START_TEST(test_bad_scorer)
{
    for (int mode = MODE_FAIL; mode <= MODE_NAN; mode++) {
        rig r;
        rig_init(&r, 0, 5e-3f, mode);
        align_rl_roles ro = rig_roles(&r, 1);
        align_grpo_params p = group_params(0, 3);
        ck_assert_int_eq(align_trainer_create_grpo(&r.tr, &ro, r.data, &p), ALIGN_OK);
        float before[30], after[30];
        fingerprint(r.pol, before);
        int rc = align_trainer_step(r.tr, NULL);
        ck_assert_int_eq(rc, mode == MODE_FAIL ? ALIGN_ECALLBACK : ALIGN_ENONFINITE);
        ck_assert(strstr(align_trainer_errmsg(r.tr), "scor") != NULL);
        fingerprint(r.pol, after);
        ck_assert(memcmp(before, after, sizeof before) == 0);
        /* the scorer recovers: the same step runs */
        r.sc.mode = MODE_LETTERS;
        ck_assert_int_eq(align_trainer_step(r.tr, NULL), ALIGN_OK);
        rig_free(&r);
    }
}
END_TEST

/* ---- prompts from a pull source ---------------------------------------------------------- */

static int source_calls;
static int prompt_source(align_text_sink *sink, void *ud)
{
    (void)ud;
    if (source_calls == 3)
        return ALIGN_DONE;
    source_calls++;
    const char *ps[] = {"hi", "yo", "go", "ab"};
    for (int i = 0; i < 4; i++)
        if (align_text_sink_add(sink, ps[i], 2) < 0)
            return -1;
    return 0;
}

START_TEST(test_prompt_source)
{
    rig r;
    rig_init(&r, 0, 5e-3f, MODE_LETTERS);
    align_dataset_free(r.data);
    ck_assert_int_eq(align_dataset_create(&r.data), ALIGN_OK);
    source_calls = 0;
    ck_assert_int_eq(align_dataset_set_source(r.data, prompt_source, NULL), ALIGN_OK);
    align_rl_roles ro = rig_roles(&r, 1);
    align_grpo_params p = group_params(0, 0);
    p.prompts_per_step = 4;
    ck_assert_int_eq(align_trainer_create_grpo(&r.tr, &ro, r.data, &p), ALIGN_OK);
    int steps = 0, rc;
    while ((rc = align_trainer_step(r.tr, NULL)) == ALIGN_OK)
        steps++;
    ck_assert_msg(rc == ALIGN_DONE, "%s", align_trainer_errmsg(r.tr));
    ck_assert_int_eq(steps, 3); /* 12 prompts pulled, 4 a step */
    ck_assert_int_eq(align_dataset_size(r.data), 12);
    rig_free(&r);
}
END_TEST

/* ---- arguments ------------------------------------------------------------------------- */

START_TEST(test_args)
{
    rig r;
    rig_init(&r, 0, 5e-3f, MODE_LETTERS);
    align_rl_roles ro = rig_roles(&r, 0);
    align_grpo_params p = group_params(0, 3);
    align_trainer *tr = (align_trainer *)&r; /* must be reset to NULL */
    /* beta > 0 without a reference */
    ck_assert_int_eq(align_trainer_create_grpo(&tr, &ro, r.data, &p), ALIGN_EINVAL);
    ck_assert_ptr_null(tr);
    p.beta = 0.0f;
    p.group_size = 1;
    ck_assert_int_eq(align_trainer_create_grpo(&tr, &ro, r.data, &p), ALIGN_EINVAL);
    p.group_size = 4;
    /* PPO without a value head */
    align_ppo_params pp = ppo_params(3);
    pp.kl_coef = 0.0f;
    ck_assert_int_eq(align_trainer_create_ppo(&tr, &ro, r.data, &pp), ALIGN_EINVAL);
    ck_assert(strstr(align_last_errmsg(), "scalar head") != NULL);
    ro.policy_opt = NULL;
    ck_assert_int_eq(align_trainer_create_grpo(&tr, &ro, r.data, &p), ALIGN_EINVAL);
    ro = rig_roles(&r, 0);
    ck_assert_int_eq(align_trainer_create_grpo(&tr, &ro, r.data, &p), ALIGN_OK);
    align_trainer_free(tr);
    rig_free(&r);
}
END_TEST

Suite *rl_suite(void)
{
    Suite *s = suite_create("rl");
    TCase *tc = test_tcase(s, "learn", 300);
    tcase_add_test(tc, test_grpo_learns);
    tcase_add_test(tc, test_rloo_learns);
    tcase_add_test(tc, test_ppo_learns);
    tcase_add_test(tc, test_ppo_ptx_value_model);
    tc = test_tcase(s, "signal", 120);
    tcase_add_test(tc, test_constant_reward_no_move);
    tcase_add_test(tc, test_bad_scorer);
    tcase_add_test(tc, test_args);
    tcase_add_test(tc, test_prompt_source);
    tc = test_tcase(s, "resume", 300);
    tcase_add_loop_test(tc, test_resume_bitwise, 0, 4);
    return s;
}
