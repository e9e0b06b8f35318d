/* check_judge.c — judge models (RL from AI feedback) and the collection of
 * rankings, through the public API: a judge trained from scratch on a
 * preference rule agrees with it on held-out pairs; the order of the
 * responses does not matter; rankings, scores, principles; align_collect with
 * a C ranker and with the judge; failing and misbehaving rankers. */
#include "testutil.h"

#include "align.h"

#include <math.h>
#include <stdint.h>

/* ---- fixtures ----------------------------------------------------------------- */

static align_model *make_model(int32_t layers, int32_t embd, int32_t max_len, uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = layers;
    mp.n_head = 2;
    mp.n_embd = embd;
    mp.vocab_size = 257;
    mp.max_seq_len = max_len;
    mp.seed = seed;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    return t;
}

/* The rule: the better response has more items ("*" marks, 1..5 of them).
 * A comparison is (prompt letter, the two counts, whether the better one is
 * shown as A); 640 comparisons numbered by a seeded permutation so that the
 * test trains on one part and holds out the rest. */
#define N_CMP 640
#define N_TRAIN 512
static const char judge_template[] = "Q:{prompt} A:{a} B:{b} ?";

static void comparison(uint32_t idx, char *prompt, char *good, char *bad, int *good_first)
{
    uint32_t k = (idx * 271u) % N_CMP; /* 271 is prime to 640: a bijection */
    *good_first = (int)(k & 1u);
    k >>= 1;
    uint32_t pair = k % 20, letter = k / 20;
    uint32_t g = pair / 4 + 1, w = pair % 4 + 1;
    if (w >= g)
        w++; /* w in 1..5, w != g */
    if (w > g) {
        uint32_t tmp = g;
        g = w;
        w = tmp;
    }
    sprintf(prompt, "%c", (char)('a' + letter % 16));
    memset(good, '*', g);
    good[g] = 0;
    memset(bad, '*', w);
    bad[w] = 0;
}

static void render(char *out, const char *prompt, const char *a, const char *b)
{
    sprintf(out, "Q:%s A:%s B:%s ?", prompt, a, b);
}

/* A judge trained by SFT on the rule: prompt = the rendered judge template,
 * completion = "A" or "B". Unchecked fixture: trained once per process. */
static align_model *g_judge_model;
static align_tokenizer *g_tok;

static void judge_setup(void)
{
    g_tok = bytes_tok();
    g_judge_model = make_model(2, 64, 32, 7);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-3f;
    op.schedule = ALIGN_SCHEDULE_COSINE;
    op.total_steps = 300;
    op.warmup_steps = 10;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, g_judge_model, &op), ALIGN_OK);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (uint32_t i = 0; i < N_TRAIN; i++) {
        char p[8], g[8], b[8], text[64];
        int gf;
        comparison(i, p, g, b, &gf);
        render(text, p, gf ? g : b, gf ? b : g);
        ck_assert_int_eq(align_dataset_add_demo(d, text, gf ? "A" : "B", NULL), ALIGN_OK);
    }
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 32;
    sp.max_steps = 300;
    sp.max_seq_len = 32;
    sp.seed = 3;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, g_judge_model, g_tok, d, o, &sp), ALIGN_OK);
    int rc;
    while ((rc = align_trainer_step(tr, NULL)) == ALIGN_OK)
        ;
    ck_assert_int_eq(rc, ALIGN_DONE);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_optimizer_free(o);
}

static void judge_teardown(void)
{
    align_model_free(g_judge_model);
    align_tokenizer_free(g_tok);
    g_judge_model = NULL;
    g_tok = NULL;
}

static align_judge *make_judge(align_model *m, align_tokenizer *t)
{
    align_judge_params jp;
    ALIGN_JUDGE_DEFAULT_PARAMS(&jp);
    jp.template_text = judge_template;
    jp.name = "arith-judge";
    align_judge *j = NULL;
    ck_assert_msg(align_judge_create(&j, m, t, &jp) == ALIGN_OK, "%s", align_last_errmsg());
    return j;
}

/* ---- the trained judge ---------------------------------------------------------- */

static void test_judge_agrees_with_rule(void)
{
    align_judge *j = make_judge(g_judge_model, g_tok);
    int agree = 0, n = 0;
    double max_swap = 0.0;
    for (uint32_t i = N_TRAIN; i < N_CMP; i++) {
        char p[8], g[8], b[8];
        int gf;
        comparison(i, p, g, b, &gf);
        float pgb = -1.0f, pbg = -1.0f;
        ck_assert_int_eq(align_judge_prefer(j, p, g, b, &pgb), ALIGN_OK);
        ck_assert_int_eq(align_judge_prefer(j, p, b, g, &pbg), ALIGN_OK);
        ck_assert(pgb >= 0.0f && pgb <= 1.0f);
        double swap = fabs((double)pgb - (1.0 - (double)pbg));
        max_swap = swap > max_swap ? swap : max_swap;
        agree += pgb > 0.5f;
        n++;
    }
    double pct = 100.0 * agree / n;
    fprintf(stderr, "judge: agreement %.1f%% on %d held-out pairs, largest swap difference %.3g\n", pct, n,
            max_swap);
    ck_assert_msg(pct >= 90.0, "the judge agrees with the rule on %.1f%% of %d held-out pairs", pct, n);
    ck_assert_msg(max_swap < 1e-6, "swapping A and B changed the preference by %g", max_swap);
    align_judge_free(j);
}

/* K = 4 responses with 1..4 items in a shuffled order: the judge ranks them
 * by their number of items; its win probabilities average to 1/2. */
static void test_judge_rank(void)
{
    align_judge *j = make_judge(g_judge_model, g_tok);
    int right = 0, n = 0;
    for (int shift = 0; shift < 8; shift++) {
        char p[4], r[4][8];
        sprintf(p, "%c", 'a' + shift);
        int count[4];
        for (int i = 0; i < 4; i++) {
            count[i] = 1 + (i * 3 + shift) % 4;
            memset(r[i], '*', (size_t)count[i]);
            r[i][count[i]] = 0;
        }
        const char *resp[4] = { r[0], r[1], r[2], r[3] };
        int32_t rank[4];
        float win[4];
        ck_assert_int_eq(align_judge_rank(j, p, resp, 4, rank, win), ALIGN_OK);
        double sum = 0;
        int ok = 1;
        for (int i = 0; i < 4; i++) {
            ck_assert(rank[i] >= 0 && rank[i] < 4);
            sum += win[i];
            ok &= rank[i] == 4 - count[i];
        }
        ck_assert_double_eq_tol(sum / 4.0, 0.5, 1e-5);
        right += ok;
        n++;
    }
    ck_assert_msg(right >= n - 1, "the judge ranked %d of %d lists by their items", right, n);
    /* identical responses tie */
    const char *same[3] = { "**", "**", "**" };
    int32_t rank[3];
    ck_assert_int_eq(align_judge_rank(j, "c", same, 3, rank, NULL), ALIGN_OK);
    ck_assert_int_eq(rank[0], 0);
    ck_assert_int_eq(rank[1], 0);
    ck_assert_int_eq(rank[2], 0);
    align_judge_free(j);
}

/* ---- collection ------------------------------------------------------------------ */

static align_dataset *prompt_set(int n)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (int i = 0; i < n; i++) {
        char p[16];
        sprintf(p, "%d+%d", i % 5, (i * 3) % 5);
        if (i % 2)
            ck_assert_int_eq(align_dataset_add_prompt(d, p, NULL), ALIGN_OK);
        else
            ck_assert_int_eq(align_dataset_add_demo(d, p, "x", NULL), ALIGN_OK);
    }
    return d;
}

/* A program ranker: shorter is better; equal lengths tie (competition
 * places, with gaps, to exercise the closing of gaps). */
typedef struct rank_ctx {
    int calls, fail_at, bad_at;
    int32_t last_k;
} rank_ctx;

static int length_ranker(const char *prompt, const char *const *responses, int32_t k, int32_t *rank_out, void *ud)
{
    rank_ctx *c = ud;
    ck_assert_ptr_nonnull(prompt);
    c->last_k = k;
    if (++c->calls == c->fail_at)
        return -5;
    for (int32_t i = 0; i < k; i++) {
        int32_t better = 0;
        for (int32_t o = 0; o < k; o++)
            better += strlen(responses[o]) < strlen(responses[i]);
        rank_out[i] = better;
    }
    if (c->calls == c->bad_at)
        rank_out[k - 1] = k; /* out of range */
    return 0;
}

static align_collect_params collect_params(align_generate_params *gp, int32_t k)
{
    ALIGN_GENERATE_DEFAULT_PARAMS(gp);
    gp->max_new_tokens = 6;
    gp->temperature = 1.0f;
    gp->seed = 99;
    align_collect_params cp;
    ALIGN_COLLECT_DEFAULT_PARAMS(&cp);
    cp.k = k;
    cp.generate = gp;
    cp.source = ALIGN_SOURCE_PROGRAM;
    cp.annotator = "length-rule";
    return cp;
}

START_TEST(test_collect_program_ranker)
{
    align_model *policy = make_model(1, 32, 32, 11);
    align_tokenizer *t = bytes_tok();
    align_dataset *prompts = prompt_set(5), *out = NULL, *out2 = NULL, *back = NULL;
    ck_assert_int_eq(align_dataset_create(&out), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&out2), ALIGN_OK);
    align_generate_params gp;
    align_collect_params cp = collect_params(&gp, 4);
    rank_ctx c = { 0, 0, 0, 0 };
    ck_assert_msg(align_collect(policy, t, prompts, out, length_ranker, &c, &cp) == ALIGN_OK, "%s",
                  align_last_errmsg());
    ck_assert_int_eq(c.calls, 5);
    ck_assert_int_eq(c.last_k, 4);
    ck_assert_int_eq(align_dataset_size(out), 5);
    for (int64_t i = 0; i < 5; i++)
        ck_assert_int_eq(align_dataset_record_kind(out, i), ALIGN_RECORD_RANKING);

    /* deterministic for a seed: the same records again (fixed timestamp) */
    cp.timestamp = 1700000000;
    rank_ctx c2 = { 0, 0, 0, 0 };
    align_dataset *o3 = NULL;
    ck_assert_int_eq(align_dataset_create(&o3), ALIGN_OK);
    ck_assert_int_eq(align_collect(policy, t, prompts, out2, length_ranker, &c2, &cp), ALIGN_OK);
    ck_assert_int_eq(align_collect(policy, t, prompts, o3, length_ranker, &c2, &cp), ALIGN_OK);
    for (int64_t i = 0; i < 5; i++) {
        char *a = NULL, *b = NULL;
        ck_assert_int_eq(align_dataset_record_json(out2, i, &a), ALIGN_OK);
        ck_assert_int_eq(align_dataset_record_json(o3, i, &b), ALIGN_OK);
        ck_assert_str_eq(a, b);
        ck_assert_ptr_nonnull(strstr(a, "\"source\""));
        ck_assert_ptr_nonnull(strstr(a, "\"program\""));
        ck_assert_ptr_nonnull(strstr(a, "length-rule"));
        ck_assert_ptr_nonnull(strstr(a, "1700000000"));
        ck_assert_ptr_nonnull(strstr(a, "\"ranking\""));
        align_free(a);
        align_free(b);
    }
    /* a part of the prompts (first/count) gives the same samples as the whole */
    align_dataset *part = NULL;
    ck_assert_int_eq(align_dataset_create(&part), ALIGN_OK);
    cp.first = 3;
    cp.count = 2;
    ck_assert_int_eq(align_collect(policy, t, prompts, part, length_ranker, &c2, &cp), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(part), 2);
    for (int64_t i = 0; i < 2; i++) {
        char *a = NULL, *b = NULL;
        ck_assert_int_eq(align_dataset_record_json(part, i, &a), ALIGN_OK);
        ck_assert_int_eq(align_dataset_record_json(o3, 3 + i, &b), ALIGN_OK);
        ck_assert_str_eq(a, b);
        align_free(a);
        align_free(b);
    }

    /* the records load back through JSONL */
    char *dir = test_tmpdir("collect");
    char path[4200];
    snprintf(path, sizeof path, "%s/rankings.jsonl", dir);
    ck_assert_int_eq(align_dataset_save_jsonl(out2, path), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&back), ALIGN_OK);
    ck_assert_msg(align_dataset_load_jsonl(back, path, 0) == ALIGN_OK, "%s", align_dataset_errmsg(back));
    ck_assert_int_eq(align_dataset_size(back), 5);
    for (int64_t i = 0; i < 5; i++) {
        char *a = NULL, *b = NULL;
        ck_assert_int_eq(align_dataset_record_json(out2, i, &a), ALIGN_OK);
        ck_assert_int_eq(align_dataset_record_json(back, i, &b), ALIGN_OK);
        ck_assert_str_eq(a, b);
        align_free(a);
        align_free(b);
    }
    /* a chat policy: prompts as user turns */
    align_dataset *chat = NULL;
    ck_assert_int_eq(align_dataset_create(&chat), ALIGN_OK);
    cp.first = 0;
    cp.count = 0;
    cp.flags = ALIGN_COLLECT_CHAT;
    ck_assert_msg(align_collect(policy, t, prompts, chat, length_ranker, &c2, &cp) == ALIGN_OK, "%s",
                  align_last_errmsg());
    ck_assert_int_eq(align_dataset_size(chat), 5);
    cp.flags = 0x40;
    ck_assert_int_eq(align_collect(policy, t, prompts, chat, length_ranker, &c2, &cp), ALIGN_EINVAL);
    align_dataset_free(chat);
    free(dir);
    align_dataset_free(part);
    align_dataset_free(o3);
    align_dataset_free(back);
    align_dataset_free(out2);
    align_dataset_free(out);
    align_dataset_free(prompts);
    align_tokenizer_free(t);
    align_model_free(policy);
}
END_TEST

START_TEST(test_collect_ranker_failures)
{
    align_model *policy = make_model(1, 32, 32, 11);
    align_tokenizer *t = bytes_tok();
    align_dataset *prompts = prompt_set(4), *out = NULL;
    ck_assert_int_eq(align_dataset_create(&out), ALIGN_OK);
    align_generate_params gp;
    align_collect_params cp = collect_params(&gp, 3);

    /* the callback fails on the third prompt: two records stay, nothing of the third */
    rank_ctx c = { 0, 3, 0, 0 };
    ck_assert_int_eq(align_collect(policy, t, prompts, out, length_ranker, &c, &cp), ALIGN_ECALLBACK);
    ck_assert_int_eq(align_dataset_size(out), 2);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "returned -5"));
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "record 2"));

    /* out-of-range places: a clear error, nothing added for that prompt */
    rank_ctx b = { 0, 0, 2, 0 };
    ck_assert_int_eq(align_collect(policy, t, prompts, out, length_ranker, &b, &cp), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_size(out), 3);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "outside 0..2"));

    /* misuse */
    ck_assert_int_eq(align_collect(policy, t, prompts, prompts, length_ranker, &c, &cp), ALIGN_EINVAL);
    ck_assert_int_eq(align_collect(policy, t, prompts, out, NULL, NULL, &cp), ALIGN_EINVAL);
    cp.k = 1;
    ck_assert_int_eq(align_collect(policy, t, prompts, out, length_ranker, &c, &cp), ALIGN_EINVAL);
    cp.k = 3;
    cp.source = 9;
    ck_assert_int_eq(align_collect(policy, t, prompts, out, length_ranker, &c, &cp), ALIGN_EINVAL);
    cp.source = ALIGN_SOURCE_HUMAN;
    cp.count = 100;
    ck_assert_int_eq(align_collect(policy, t, prompts, out, length_ranker, &c, &cp), ALIGN_EINVAL);
    cp.count = 0;
    /* a chat record has no prompt: refused before sampling */
    const char *roles[1] = { "user" }, *contents[1] = { "hi" };
    ck_assert_int_eq(align_dataset_add_chat(prompts, roles, contents, 1, NULL), ALIGN_OK);
    int calls = c.calls;
    ck_assert_int_eq(align_collect(policy, t, prompts, out, length_ranker, &c, &cp), ALIGN_EINVAL);
    ck_assert_int_eq(c.calls, calls);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "chat"));
    ck_assert_int_eq(align_dataset_size(out), 3);

    align_dataset_free(out);
    align_dataset_free(prompts);
    align_tokenizer_free(t);
    align_model_free(policy);
}
END_TEST

/* Collection with the trained judge as ranker: source AI, annotator = the
 * judge's name. */
static void test_collect_with_judge(void)
{
    align_judge *j = make_judge(g_judge_model, g_tok);
    align_model *policy = make_model(1, 32, 32, 5);
    align_dataset *prompts = prompt_set(3), *out = NULL;
    ck_assert_int_eq(align_dataset_create(&out), ALIGN_OK);
    align_generate_params gp;
    align_collect_params cp = collect_params(&gp, 3);
    gp.max_new_tokens = 2;
    ck_assert_msg(align_collect_judge(policy, g_tok, prompts, out, j, &cp) == ALIGN_OK, "%s",
                  align_last_errmsg());
    ck_assert_int_eq(align_dataset_size(out), 3);
    char *js = NULL;
    ck_assert_int_eq(align_dataset_record_json(out, 0, &js), ALIGN_OK);
    ck_assert_ptr_nonnull(strstr(js, "\"ai\""));
    ck_assert_ptr_nonnull(strstr(js, "arith-judge"));
    align_free(js);
    align_dataset_free(out);
    align_dataset_free(prompts);
    align_model_free(policy);
    align_judge_free(j);
}

/* ---- scores, principles, templates ------------------------------------------------- */

/* A scorer trained to answer 2 x the number of items (2..10) reads the
 * expected score back on the scale 1..10, the two-token "10" included. */
START_TEST(test_judge_score)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = make_model(2, 64, 32, 9);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-3f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (int letter = 0; letter < 12; letter++)
        for (int items = 1; items <= 5; items++) {
            char text[32], score[4];
            sprintf(text, "%c=", 'a' + letter);
            memset(text + 2, '*', (size_t)items);
            strcpy(text + 2 + items, " ?");
            sprintf(score, "%d", 2 * items);
            ck_assert_int_eq(align_dataset_add_demo(d, text, score, NULL), ALIGN_OK);
        }
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 30;
    sp.max_steps = 200;
    sp.max_seq_len = 32;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    while (align_trainer_step(tr, NULL) == ALIGN_OK)
        ;
    align_judge_params jp;
    ALIGN_JUDGE_DEFAULT_PARAMS(&jp);
    jp.score_template = "{prompt}={response} ?";
    align_judge *j = NULL;
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_OK);
    const char *prompts[5] = { "m", "n", "o", "p", "m" };
    const char *resp[5] = { "*", "**", "***", "****", "*****" };
    float s[5];
    ck_assert_msg(align_judge_score(j, prompts, resp, 5, s) == ALIGN_OK, "%s", align_judge_errmsg(j));
    fprintf(stderr, "judge scores for 1..5 items (want 2, 4, 6, 8, 10): %.2f %.2f %.2f %.2f %.2f\n",
            (double)s[0], (double)s[1], (double)s[2], (double)s[3], (double)s[4]);
    for (int i = 0; i < 5; i++) {
        ck_assert(s[i] >= 1.0f && s[i] <= 10.0f);
        ck_assert_msg(fabs((double)s[i] - 2.0 * (i + 1)) < 1.0, "%d items score %g", i + 1, (double)s[i]);
    }
    ck_assert_int_eq(align_judge_score(j, prompts, resp, 0, s), ALIGN_OK);
    /* the same scores through a reward-model handle */
    align_reward_model *rm = NULL;
    ck_assert_int_eq(align_reward_model_from_judge(&rm, j), ALIGN_OK);
    float r[5];
    ck_assert_int_eq(align_reward_model_score(rm, prompts, resp, 5, r), ALIGN_OK);
    for (int i = 0; i < 5; i++)
        ck_assert(r[i] == s[i]);
    const char *long_prompt[1] = { "a prompt much too long for the judge's 32 positions" };
    ck_assert_int_eq(align_reward_model_score(rm, long_prompt, resp, 1, r), ALIGN_ECALLBACK);
    ck_assert_ptr_nonnull(strstr(align_judge_errmsg(j), "max_seq_len"));
    align_reward_model_free(rm);
    ck_assert_int_eq(align_reward_model_from_judge(&rm, NULL), ALIGN_EINVAL);
    ck_assert_ptr_null(rm);
    const char *nul[1] = { NULL };
    ck_assert_int_eq(align_judge_score(j, prompts, nul, 1, s), ALIGN_EINVAL);
    align_judge_free(j);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_optimizer_free(o);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

/* Principles: a file of several, one drawn per comparison, keyed by the
 * comparison (same in both orders, reproducible, and all used). With the
 * principle in the template, a principle changes what the judge sees. */
START_TEST(test_judge_principles)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = make_model(1, 32, 128, 4);
    char *dir = test_tmpdir("judge");
    char path[4200];
    snprintf(path, sizeof path, "%s/constitution.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("# a constitution\nBe brief.\n\n  Be kind.  \nBe exact.\n", f);
    fclose(f);
    align_judge_params jp;
    ALIGN_JUDGE_DEFAULT_PARAMS(&jp);
    jp.template_text = "{principle}|{prompt}|{a}|{b}|";
    jp.principles_file = path;
    jp.seed = 5;
    align_judge *j = NULL, *j2 = NULL;
    ck_assert_msg(align_judge_create(&j, m, t, &jp) == ALIGN_OK, "%s", align_last_errmsg());
    ck_assert_int_eq(align_judge_create(&j2, m, t, &jp), ALIGN_OK);
    ck_assert_str_eq(align_judge_name(j), "judge");
    /* the three principles give different preferences for some comparisons;
     * the same comparison always gets the same value, in either order */
    float seen[64];
    int n_distinct = 0;
    for (int i = 0; i < 24; i++) {
        char a[16], b[16];
        sprintf(a, "r%d", i);
        sprintf(b, "s%d", i);
        float p1, p2, p3;
        ck_assert_int_eq(align_judge_prefer(j, "q", a, b, &p1), ALIGN_OK);
        ck_assert_int_eq(align_judge_prefer(j2, "q", b, a, &p2), ALIGN_OK);
        ck_assert_int_eq(align_judge_prefer(j, "q", a, b, &p3), ALIGN_OK);
        ck_assert(fabs((double)p1 + (double)p2 - 1.0) < 1e-6);
        ck_assert(p1 == p3);
        int dup = 0;
        for (int s = 0; s < n_distinct; s++)
            dup |= seen[s] == p1;
        if (!dup)
            seen[n_distinct++] = p1;
    }
    ck_assert_int_gt(n_distinct, 1);
    float same;
    ck_assert_int_eq(align_judge_prefer(j, "q", "x", "x", &same), ALIGN_OK);
    ck_assert(same == 0.5f);
    /* a chat judge sees the template as a user turn: other values, same symmetry */
    align_judge *jc = NULL;
    jp.flags = ALIGN_JUDGE_CHAT;
    ck_assert_int_eq(align_judge_create(&jc, m, t, &jp), ALIGN_OK);
    float c1, c2, plain;
    ck_assert_int_eq(align_judge_prefer(jc, "q", "r1", "s1", &c1), ALIGN_OK);
    ck_assert_int_eq(align_judge_prefer(jc, "q", "s1", "r1", &c2), ALIGN_OK);
    ck_assert_int_eq(align_judge_prefer(j, "q", "r1", "s1", &plain), ALIGN_OK);
    ck_assert(fabs((double)c1 + (double)c2 - 1.0) < 1e-6);
    ck_assert(c1 != plain);
    align_judge_free(jc);
    jp.flags = 0;
    align_judge_free(j);
    align_judge_free(j2);

    /* an empty file, a missing file */
    snprintf(path, sizeof path, "%s/empty.txt", dir);
    f = fopen(path, "w");
    fputs("# nothing\n\n", f);
    fclose(f);
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    ck_assert_ptr_null(j);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "no principle"));
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_ENOENT);
    free(dir);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_judge_bad_arguments)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = make_model(1, 32, 24, 4);
    align_judge_params jp;
    ALIGN_JUDGE_DEFAULT_PARAMS(&jp);
    align_judge *j = (align_judge *)&jp;
    jp.template_text = "{prompt} {a}";
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    ck_assert_ptr_null(j);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "{a} and {b}"));
    jp.template_text = "{prompt} {a} {b} {oops}";
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "{oops}"));
    jp.template_text = "{prompt {a} {b}";
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    jp.template_text = "{{literal}} {prompt} {a} {b}";
    jp.answer_a = "Yes";
    jp.answer_b = "Yes!";
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "prefix"));
    jp.flags = ALIGN_JUDGE_ANSWER_EOT;
    ck_assert_msg(align_judge_create(&j, m, t, &jp) == ALIGN_OK, "%s", align_last_errmsg());
    float p;
    ck_assert_int_eq(align_judge_prefer(j, "q", "a", "b", &p), ALIGN_OK);
    ck_assert(p > 0.0f && p < 1.0f);
    /* too long for the model: ALIGN_ERANGE, with the sizes */
    ck_assert_int_eq(align_judge_prefer(j, "a long prompt that does not fit", "a", "b", &p), ALIGN_ERANGE);
    ck_assert_ptr_nonnull(strstr(align_judge_errmsg(j), "max_seq_len"));
    ck_assert_int_eq(align_judge_prefer(j, NULL, "a", "b", &p), ALIGN_EINVAL);
    ck_assert_int_eq(align_judge_prefer(j, "q", "a", "b", NULL), ALIGN_EINVAL);
    int32_t rank[2];
    const char *one[1] = { "a" };
    ck_assert_int_eq(align_judge_rank(j, "q", one, 1, rank, NULL), ALIGN_EINVAL);
    align_judge_free(j);
    jp.flags = 0x80;
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    jp.flags = 0;
    jp.answer_a = jp.answer_b = NULL;
    jp.score_min = 5;
    jp.score_max = 5;
    ck_assert_int_eq(align_judge_create(&j, m, t, &jp), ALIGN_EINVAL);
    ck_assert_int_eq(align_judge_create(NULL, m, t, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_judge_create(&j, NULL, t, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_judge_prefer(NULL, "q", "a", "b", &p), ALIGN_EINVAL);
    align_judge_free(NULL);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

/* The trained judge's checks share one training (forked tests cannot start
 * from a process that has run the library's thread pool). */
START_TEST(test_trained_judge)
{
    judge_setup();
    test_judge_agrees_with_rule();
    test_judge_rank();
    test_collect_with_judge();
    judge_teardown();
}
END_TEST

Suite *judge_suite(void)
{
    Suite *s = suite_create("judge");
    TCase *tc = test_tcase(s, "trained", 600);
    tcase_add_test(tc, test_trained_judge);
    tc = test_tcase(s, "collect", 120);
    tcase_add_test(tc, test_collect_program_ranker);
    tcase_add_test(tc, test_collect_ranker_failures);
    tc = test_tcase(s, "api", 300);
    tcase_add_test(tc, test_judge_score);
    tcase_add_test(tc, test_judge_principles);
    tcase_add_test(tc, test_judge_bad_arguments);
    return s;
}
