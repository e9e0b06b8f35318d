/* check_reward_train.c — the reward-model trainer through the public API:
 * learning a preference rule from K = 4 rankings, from labels alone and from
 * scores alone (held-out pairwise accuracy), the same tokens as the scorer,
 * per-prompt averaging against a hand computation, exact resume, save → load
 * → score, and bad input. */
#include "testutil.h"

#include "align.h"

#include <math.h>
#include <stdint.h>

/* ---- the rule ---------------------------------------------------------------
 * Prompt "count X:" names a letter X of a..d; a response is 6 letters of
 * a..d; the more X it holds, the better. A reward model must read the prompt
 * and count in the response. */
static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static int make_item(uint64_t *s, char *prompt, char resp[4][8], int32_t k)
{
    char x = (char)('a' + rng_next(s) % 4);
    sprintf(prompt, "count %c:", x);
    for (int32_t j = 0; j < k; j++) {
        int want = (int)(rng_next(s) % 7); /* occurrences of x */
        for (int i = 0; i < 6; i++) {
            char c = (char)('a' + rng_next(s) % 4);
            if (i < want)
                c = x;
            else
                while (c == x)
                    c = (char)('a' + rng_next(s) % 4);
            resp[j][i] = c;
        }
        for (int i = 5; i > 0; i--) { /* shuffle the letters */
            int q = (int)(rng_next(s) % (uint64_t)(i + 1));
            char t = resp[j][i];
            resp[j][i] = resp[j][q];
            resp[j][q] = t;
        }
        resp[j][6] = 0;
    }
    return x;
}

static int count_of(const char *r, char x)
{
    int n = 0;
    for (; *r; r++)
        n += *r == x;
    return n;
}

/* Dense places by descending count (ties share a place). */
static void rank_of(char resp[4][8], char x, int32_t k, int32_t *rank)
{
    for (int32_t j = 0; j < k; j++) {
        int c = count_of(resp[j], x);
        int32_t better = 0;
        for (int v = 6; v > c; v--)
            for (int32_t q = 0; q < k; q++)
                if (count_of(resp[q], x) == v) {
                    better++;
                    break;
                }
        rank[j] = better;
    }
}

enum { D_RANK = 0, D_LABEL = 1, D_SCORE = 2 };

static align_dataset *rule_data(uint64_t seed, int n, int kind)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        char prompt[16], resp[4][8];
        int32_t rank[4];
        char x = (char)make_item(&s, prompt, resp, 4);
        if (kind == D_RANK) {
            rank_of(resp, x, 4, rank);
            const char *rs[4] = {resp[0], resp[1], resp[2], resp[3]};
            int rc = align_dataset_add_ranking(d, prompt, rs, rank, 4, NULL);
            if (rc == ALIGN_EINVAL) /* all tied: dense places need two */
                continue;
            ck_assert_int_eq(rc, ALIGN_OK);
        } else {
            for (int j = 0; j < 4; j++) {
                int c = count_of(resp[j], x);
                if (kind == D_LABEL)
                    ck_assert_int_eq(align_dataset_add_label(d, prompt, resp[j], c >= 3, NULL), ALIGN_OK);
                else
                    ck_assert_int_eq(align_dataset_add_score(d, prompt, resp[j], (float)c - 3.0f, NULL), ALIGN_OK);
            }
        }
    }
    return d;
}

static align_model *rm_model(uint64_t seed, uint32_t flags)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = flags;
    mp.n_layer = 2;
    mp.n_head = 4;
    mp.n_embd = 48;
    mp.vocab_size = 257;
    mp.max_seq_len = 24;
    mp.seed = seed;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

static align_optimizer *rm_opt(align_model *m, float lr, int32_t steps)
{
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    op.schedule = ALIGN_SCHEDULE_COSINE;
    op.total_steps = steps;
    op.warmup_steps = 10;
    op.weight_decay = 0.0f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    return o;
}

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    return t;
}

static align_reward_train_params rm_params(int32_t micro, int32_t steps)
{
    align_reward_train_params p;
    ck_assert_int_eq(ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(&p), ALIGN_OK);
    p.micro_batch = micro;
    p.max_steps = steps;
    p.seed = 7;
    return p;
}

/* Held-out pairwise accuracy through align_reward_model_score. */
static double heldout_accuracy(align_model *m, const align_tokenizer *t, uint64_t seed, int n)
{
    align_reward_model *rm = NULL;
    ck_assert_int_eq(align_reward_model_from_model(&rm, m, t, NULL), ALIGN_OK);
    uint64_t s = seed;
    int64_t pairs = 0, right = 0;
    for (int i = 0; i < n; i++) {
        char prompt[16], resp[4][8];
        char x = (char)make_item(&s, prompt, resp, 4);
        const char *ps[4] = {prompt, prompt, prompt, prompt};
        const char *rs[4] = {resp[0], resp[1], resp[2], resp[3]};
        float sc[4];
        ck_assert_int_eq(align_reward_model_score(rm, ps, rs, 4, sc), ALIGN_OK);
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                if (count_of(resp[a], x) > count_of(resp[b], x)) {
                    pairs++;
                    right += sc[a] > sc[b];
                }
    }
    align_reward_model_free(rm);
    return (double)right / (double)pairs;
}

static double train_on(int kind, int32_t steps, float lr, double *eval_acc)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = rm_model(11, ALIGN_MODEL_SCALAR_HEAD);
    align_optimizer *o = rm_opt(m, lr, steps);
    align_dataset *d = rule_data(1, kind == D_RANK ? 2000 : 1000, kind);
    align_reward_train_params p = rm_params(kind == D_RANK ? 16 : 32, steps);
    align_trainer *tr = NULL;
    ck_assert_msg(align_trainer_create_reward(&tr, m, t, d, o, &p) == ALIGN_OK, "%s", align_last_errmsg());
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    int rc;
    float first = -1.0f;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK)
        if (first < 0.0f)
            first = st.loss;
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert_msg(st.loss < first, "loss did not fall: %g -> %g", (double)first, (double)st.loss);
    if (eval_acc) {
        align_dataset *held = rule_data(99, 100, D_RANK);
        ck_assert_int_eq(align_trainer_evaluate(tr, held, &st), ALIGN_OK);
        double v = 0.0;
        ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_EVAL, "accuracy", &v), ALIGN_OK);
        *eval_acc = v;
        ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_EVAL, "pairs", &v), ALIGN_OK);
        ck_assert(v > 300);
        align_dataset_free(held);
    }
    double acc = heldout_accuracy(m, t, 99, 100);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_optimizer_free(o);
    align_model_free(m);
    align_tokenizer_free(t);
    return acc;
}

START_TEST(learns_rankings)
{
    double eval_acc = 0.0;
    double acc = train_on(D_RANK, 300, 3e-3f, &eval_acc);
    fprintf(stderr, "reward_train: K=4 rankings: held-out pairwise accuracy %.3f (evaluate %.3f)\n", acc, eval_acc);
    ck_assert_msg(acc >= 0.90, "held-out accuracy %.3f < 0.90", acc);
    ck_assert_msg(fabs(acc - eval_acc) < 1e-6, "evaluate says %.4f, the scorer %.4f", eval_acc, acc);
}
END_TEST

START_TEST(learns_labels_and_scores)
{
    double a1 = train_on(D_LABEL, 300, 3e-3f, NULL);
    double a2 = train_on(D_SCORE, 300, 3e-3f, NULL);
    fprintf(stderr, "reward_train: labels alone %.3f, scores alone %.3f held-out pairwise accuracy\n", a1, a2);
    ck_assert_msg(a1 >= 0.80, "labels alone: %.3f < 0.80", a1);
    ck_assert_msg(a2 >= 0.80, "scores alone: %.3f < 0.80", a2);
}
END_TEST

/* The trainer's step loss on a fixed batch equals −(1/P) Σ log σ(r_w − r_l)
 * averaged over prompts (plus labels and scores), computed here by hand from
 * align_model_forward's scalars on the tokens built by hand. */
static double nls(double x) /* −log σ(x) */
{
    return x > 0 ? log1p(exp(-x)) : -x + log1p(exp(x));
}

static float score_by_hand(align_model *m, const align_tokenizer *t, const char *prompt, const char *resp)
{
    int32_t ids[64];
    size_t n1 = 0, n2 = 0;
    ck_assert_int_eq(align_tokenize(t, prompt, strlen(prompt), 0, ids, 64, &n1), ALIGN_OK);
    ck_assert_int_eq(align_tokenize(t, resp, strlen(resp), 0, ids + n1, 64 - n1, &n2), ALIGN_OK);
    ids[n1 + n2] = align_tokenizer_eot(t);
    int32_t len = (int32_t)(n1 + n2 + 1);
    float sc[64];
    ck_assert_int_eq(align_model_forward(m, ids, &len, 1, len, NULL, sc, NULL), ALIGN_OK);
    return sc[len - 1];
}

START_TEST(per_prompt_average)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = rm_model(3, ALIGN_MODEL_SCALAR_HEAD);
    align_optimizer *o = rm_opt(m, 1e-3f, 10);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    const char *r4[4] = {"aabbc", "abcd", "dd", "ca"}, *r3[3] = {"xy", "z", "yyy"};
    int32_t k4[4] = {0, 1, 1, 2}, k3[3] = {1, 0, 1};
    ck_assert_int_eq(align_dataset_add_ranking(d, "p1:", r4, k4, 4, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_ranking(d, "q:", r3, k3, 3, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_label(d, "l:", "good", 1, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_score(d, "s:", "sc", 0.5f, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "demo", "ignored", NULL), ALIGN_OK);

    double want = 0.0;
    { /* by hand, before the step changes the weights */
        float r[4];
        for (int j = 0; j < 4; j++)
            r[j] = score_by_hand(m, t, "p1:", r4[j]);
        double l = 0.0;
        int P = 0;
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                if (k4[a] < k4[b]) {
                    l += nls((double)r[a] - r[b]);
                    P++;
                }
        ck_assert_int_eq(P, 5);
        want += l / P;
        for (int j = 0; j < 3; j++)
            r[j] = score_by_hand(m, t, "q:", r3[j]);
        want += (nls((double)r[1] - r[0]) + nls((double)r[1] - r[2])) / 2.0;
        want += nls(score_by_hand(m, t, "l:", "good"));
        double e = score_by_hand(m, t, "s:", "sc") - 0.5;
        want += 0.5 * e * e;
        want /= 4.0;
    }
    align_reward_train_params p = rm_params(2, 1);
    p.grad_accum = 2;
    p.flags = ALIGN_REWARD_TRAIN_SEQUENTIAL;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, o, &p), ALIGN_OK);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_OK);
    double got = 0.0, pairs = 0.0;
    ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_STEP, "loss", &got), ALIGN_OK);
    ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_STEP, "pairs", &pairs), ALIGN_OK);
    ck_assert_msg(fabs(got - want) < 1e-5 * (1.0 + fabs(want)), "trainer loss %.7f, by hand %.7f", got, want);
    ck_assert_int_eq((int)pairs, 7);
    ck_assert_int_eq(st.sequences, 9);
    double v;
    ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_STEP, "loss/label", &v), ALIGN_OK);
    ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_STEP, "loss/score", &v), ALIGN_OK);
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_DONE);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_optimizer_free(o);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

/* Training reads the scalar exactly where the scorer does, on the same tokens:
 * evaluate's rewards/mean of one label record == align_reward_model_score. */
START_TEST(same_tokens_as_scorer)
{
    align_tokenizer *t = bytes_tok();
    for (int chat = 0; chat < 2; chat++) {
        align_model *m = rm_model(5, ALIGN_MODEL_SCALAR_HEAD);
        align_dataset *d = NULL;
        ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
        ck_assert_int_eq(align_dataset_add_label(d, "what is 2+2?", "four", 1, NULL), ALIGN_OK);
        align_reward_train_params p = rm_params(1, 1);
        p.flags = chat ? ALIGN_REWARD_CHAT : 0u;
        p.user_prefix = "U:";
        align_trainer *tr = NULL;
        ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, NULL, &p), ALIGN_OK);
        ck_assert_int_eq(align_trainer_evaluate(tr, d, NULL), ALIGN_OK);
        double mean = 0.0;
        ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/mean", &mean), ALIGN_OK);
        align_reward_params rp;
        ALIGN_REWARD_DEFAULT_PARAMS(&rp);
        rp.flags = p.flags;
        rp.user_prefix = "U:";
        align_reward_model *rm = NULL;
        ck_assert_int_eq(align_reward_model_from_model(&rm, m, t, &rp), ALIGN_OK);
        const char *pr = "what is 2+2?", *re = "four";
        float sc = 0.0f;
        ck_assert_int_eq(align_reward_model_score(rm, &pr, &re, 1, &sc), ALIGN_OK);
        ck_assert_msg((float)mean == sc, "chat %d: trainer %.9g, scorer %.9g", chat, mean, (double)sc);
        align_reward_model_free(rm);
        align_trainer_free(tr);
        align_dataset_free(d);
        align_model_free(m);
    }
    align_tokenizer_free(t);
}
END_TEST

static void run_steps(align_trainer *tr, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(align_trainer_step(tr, NULL) == ALIGN_OK, "%s", align_trainer_errmsg(tr));
}

START_TEST(resume_is_exact)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = rule_data(5, 40, D_RANK);
    align_reward_train_params p = rm_params(4, 0);
    p.epochs = 3; /* 10 steps an epoch: the resume crosses an epoch boundary */
    p.margin_scale = 0.5f;
    p.center_coef = 0.01f;
    char *dir = test_tmpdir("rmresume");
    char ck[4200], fa[4200], fb[4200];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    snprintf(fa, sizeof fa, "%s/a.safetensors", dir);
    snprintf(fb, sizeof fb, "%s/b.safetensors", dir);

    align_model *m1 = rm_model(2, ALIGN_MODEL_SCALAR_HEAD);
    align_optimizer *o1 = rm_opt(m1, 2e-3f, 30);
    align_trainer *t1 = NULL;
    ck_assert_int_eq(align_trainer_create_reward(&t1, m1, t, d, o1, &p), ALIGN_OK);
    run_steps(t1, 13);
    ck_assert_int_eq(align_trainer_save(t1, ck), ALIGN_OK);
    int rc;
    while ((rc = align_trainer_step(t1, NULL)) == ALIGN_OK) {
    }
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert_int_eq(align_model_save(m1, fa), ALIGN_OK);

    align_model *m2 = rm_model(77, ALIGN_MODEL_SCALAR_HEAD);
    align_optimizer *o2 = rm_opt(m2, 2e-3f, 30);
    align_trainer *t2 = NULL;
    ck_assert_int_eq(align_trainer_create_reward(&t2, m2, t, d, o2, &p), ALIGN_OK);
    ck_assert_msg(align_trainer_resume(t2, ck) == ALIGN_OK, "%s", align_trainer_errmsg(t2));
    int n2 = 0;
    while ((rc = align_trainer_step(t2, NULL)) == ALIGN_OK)
        n2++;
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert_int_eq(n2, 30 - 13);
    ck_assert_int_eq(align_model_save(m2, fb), ALIGN_OK);
    /* bitwise: the two files are identical */
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", fa, fb);
    ck_assert_msg(system(cmd) == 0, "resumed weights differ from the uninterrupted run");

    /* save -> load -> score bitwise */
    align_model *m3 = NULL;
    ck_assert_int_eq(align_model_load(&m3, fa, NULL), ALIGN_OK);
    align_reward_model *r1 = NULL, *r3 = NULL;
    ck_assert_int_eq(align_reward_model_from_model(&r1, m1, t, NULL), ALIGN_OK);
    ck_assert_int_eq(align_reward_model_from_model(&r3, m3, t, NULL), ALIGN_OK);
    const char *ps[3] = {"count a:", "count b:", "x"}, *rs[3] = {"aabbcc", "bbbbbb", ""};
    float s1[3], s3[3];
    ck_assert_int_eq(align_reward_model_score(r1, ps, rs, 3, s1), ALIGN_OK);
    ck_assert_int_eq(align_reward_model_score(r3, ps, rs, 3, s3), ALIGN_OK);
    ck_assert(memcmp(s1, s3, sizeof s1) == 0);

    align_reward_model_free(r1);
    align_reward_model_free(r3);
    align_model_free(m3);
    align_trainer_free(t1);
    align_trainer_free(t2);
    align_optimizer_free(o1);
    align_optimizer_free(o2);
    align_model_free(m1);
    align_model_free(m2);
    align_dataset_free(d);
    align_tokenizer_free(t);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}
END_TEST

START_TEST(bad_input)
{
    align_tokenizer *t = bytes_tok();
    align_trainer *tr = (align_trainer *)&tr;
    /* a model without a scalar head */
    align_model *plain = rm_model(1, 0);
    align_dataset *d = rule_data(3, 5, D_RANK);
    ck_assert_int_eq(align_trainer_create_reward(&tr, plain, t, d, NULL, NULL), ALIGN_EINVAL);
    ck_assert_ptr_null(tr);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "scalar head"));
    align_model_free(plain);

    /* no usable feedback record: demos and prompts only, or all tied */
    align_model *m = rm_model(1, ALIGN_MODEL_SCALAR_HEAD);
    align_dataset *e = NULL;
    ck_assert_int_eq(align_dataset_create(&e), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(e, "p", "c", NULL), ALIGN_OK);
    const char *rs[2] = {"a", "b"};
    int32_t tie[2] = {0, 0};
    (void)align_dataset_add_ranking(e, "p", rs, tie, 2, NULL); /* refused or kept: neither teaches */
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, e, NULL, NULL), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "no ranking"));
    /* labels present but their weight is 0 */
    ck_assert_int_eq(align_dataset_add_label(e, "p", "r", 1, NULL), ALIGN_OK);
    align_reward_train_params p = rm_params(2, 1);
    p.label_weight = 0.0f;
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, e, NULL, &p), ALIGN_EINVAL);
    p = rm_params(2, 1);
    p.truncation = ALIGN_TRUNCATE_DROP;
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, NULL, &p), ALIGN_EINVAL);
    p = rm_params(0, 1);
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, NULL, &p), ALIGN_EINVAL);
    p = rm_params(2, 1);
    p.center_coef = -1.0f;
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, NULL, &p), ALIGN_EINVAL);

    /* evaluation-only: step refuses, evaluate of a dataset without feedback fails clearly */
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, NULL, NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_step(tr, NULL), ALIGN_EMISUSE);
    align_dataset *demos = NULL;
    ck_assert_int_eq(align_dataset_create(&demos), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(demos, "p", "c", NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_evaluate(tr, demos, NULL), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_trainer_errmsg(tr), "no ranking"));
    align_trainer_free(tr);

    /* a ranking record whose responses and places disagree in length */
    char *dir = test_tmpdir("rmbad");
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"prompt\":\"p\",\"responses\":[\"a\",\"b\",\"c\"],\"ranking\":[0,1]}\n", f);
    fclose(f);
    align_dataset *bad = NULL;
    ck_assert_int_eq(align_dataset_create(&bad), ALIGN_OK);
    ck_assert_int_lt(align_dataset_load_jsonl(bad, path, 0), 0);
    ck_assert_msg(strstr(align_dataset_errmsg(bad), "rank") != NULL, "message: %s", align_dataset_errmsg(bad));
    align_dataset_free(bad);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);

    align_dataset_free(demos);
    align_dataset_free(e);
    align_dataset_free(d);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

Suite *reward_train_suite(void)
{
    Suite *s = suite_create("reward_train");
    TCase *tc = test_tcase(s, "core", 600);
    tcase_add_test(tc, per_prompt_average);
    tcase_add_test(tc, same_tokens_as_scorer);
    tcase_add_test(tc, resume_is_exact);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, learns_rankings);
    tcase_add_test(tc, learns_labels_and_scores);
    return s;
}
