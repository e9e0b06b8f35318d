/* check_internal_generate.c — align_generate against a full forward pass at
 * every step, reproducibility, batch independence, stop strings, arguments. */
#include "testutil.h"

#include "align.h"

#include <math.h>

static align_model *tiny_model(uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = 64;
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

static int32_t encode(const align_tokenizer *t, const char *s, int32_t *ids, size_t cap)
{
    size_t n = 0;
    ck_assert_int_eq(align_tokenize(t, s, strlen(s), 0, ids, cap, &n), ALIGN_OK);
    return (int32_t)n;
}

/* log-softmax of row[v] in double */
static double logprob_of(const float *row, int32_t V, int32_t v)
{
    double mx = row[0];
    for (int32_t i = 1; i < V; i++)
        if (row[i] > mx)
            mx = row[i];
    double z = 0.0;
    for (int32_t i = 0; i < V; i++)
        z += exp((double)row[i] - mx);
    return (double)row[v] - mx - log(z);
}

static const char *const PROMPTS[] = {"Hello", "a much longer prompt, with commas", "xy"};

/* Greedy decoding with the cache equals re-running the whole forward pass at
 * every step: same tokens, same log-probs (to rounding). */
START_TEST(test_kv_matches_full_forward)
{
    align_model *m = tiny_model(7);
    align_tokenizer *t = bytes_tok();
    const int32_t V = 257, eot = align_tokenizer_eot(t);
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.max_new_tokens = 16;
    align_generation *g = NULL;
    ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &g), ALIGN_OK);
    ck_assert_int_eq(align_generation_count(g), 3);

    float *logits = malloc(sizeof(float) * 64 * V);
    for (int32_t i = 0; i < 3; i++) {
        int32_t seq[64];
        int32_t len = encode(t, PROMPTS[i], seq, 64);
        int32_t n = 0;
        const int32_t *toks = align_generation_tokens(g, i, &n);
        const float *lps = align_generation_logprobs(g, i, &n);
        ck_assert_int_gt(n, 0);
        int expect_done = 0;
        for (int32_t j = 0; j < gp.max_new_tokens && !expect_done; j++) {
            ck_assert_int_eq(align_model_forward(m, seq, &len, 1, len, NULL, NULL, logits), ALIGN_OK);
            const float *row = logits + (size_t)(len - 1) * V;
            int32_t best = 0;
            for (int32_t v = 1; v < V; v++)
                if (row[v] > row[best])
                    best = v;
            ck_assert_int_lt(j, n);
            ck_assert_int_eq(toks[j], best);
            ck_assert_msg(fabs(lps[j] - logprob_of(row, V, best)) < 1e-4, "seq %d token %d: logprob %g vs %g",
                          i, j, (double)lps[j], logprob_of(row, V, best));
            seq[len++] = best;
            if (best == eot)
                expect_done = 1;
        }
        ck_assert_int_eq(n, expect_done ? n : gp.max_new_tokens);
        ck_assert_int_eq(align_generation_finish_reason(g, i), expect_done ? ALIGN_FINISH_EOT : ALIGN_FINISH_LENGTH);
    }
    free(logits);
    align_generation_free(g);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

/* Sampled responses: the reported log-probs equal a forward pass over
 * prompt + response (what RL objectives recompute), for every sampler. */
START_TEST(test_sampled_logprobs_match_forward)
{
    align_model *m = tiny_model(11);
    align_tokenizer *t = bytes_tok();
    const struct { float temp; int32_t k; float p; } cfgs[] = {{1.0f, 0, 1.0f}, {0.7f, 20, 1.0f}, {1.3f, 0, 0.9f},
                                                              {0.9f, 50, 0.8f}};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        align_generate_params gp;
        ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
        gp.temperature = cfgs[c].temp;
        gp.top_k = cfgs[c].k;
        gp.top_p = cfgs[c].p;
        gp.max_new_tokens = 20;
        gp.seed = 99 + c;
        align_generation *g = NULL;
        ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &g), ALIGN_OK);
        for (int32_t i = 0; i < 3; i++) {
            int32_t seq[64], n = 0;
            int32_t len = encode(t, PROMPTS[i], seq, 64);
            const int32_t *toks = align_generation_tokens(g, i, &n);
            const float *lps = align_generation_logprobs(g, i, &n);
            int32_t plen = len;
            for (int32_t j = 0; j < n; j++)
                seq[len++] = toks[j];
            float tlp[64];
            ck_assert_int_eq(align_model_forward(m, seq, &len, 1, len, tlp, NULL, NULL), ALIGN_OK);
            for (int32_t j = 0; j < n; j++)
                ck_assert_msg(fabsf(tlp[plen - 1 + j] - lps[j]) < 1e-4f, "cfg %zu seq %d tok %d: %g vs %g", c, i,
                              j, (double)tlp[plen - 1 + j], (double)lps[j]);
        }
        align_generation_free(g);
    }
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

static int same_tokens(const align_generation *a, int32_t ia, const align_generation *b, int32_t ib)
{
    int32_t na = 0, nb = 0;
    const int32_t *ta = align_generation_tokens(a, ia, &na);
    const int32_t *tb = align_generation_tokens(b, ib, &nb);
    return na == nb && memcmp(ta, tb, sizeof(int32_t) * (size_t)na) == 0;
}

/* Same seed, same result; sequence i's sample does not depend on the other
 * prompts of the batch; another seed changes the samples. */
START_TEST(test_reproducible_and_batch_independent)
{
    align_model *m = tiny_model(3);
    align_tokenizer *t = bytes_tok();
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 24;
    gp.seed = 5;
    const char *ab[] = {"shared prompt", "other one"};
    const char *ac[] = {"shared prompt", "a completely different and longer prompt"};
    align_generation *g1 = NULL, *g2 = NULL, *g3 = NULL, *g4 = NULL;
    ck_assert_int_eq(align_generate(m, t, ab, 2, &gp, &g1), ALIGN_OK);
    ck_assert_int_eq(align_generate(m, t, ab, 2, &gp, &g2), ALIGN_OK);
    ck_assert_int_eq(align_generate(m, t, ac, 2, &gp, &g3), ALIGN_OK);
    ck_assert(same_tokens(g1, 0, g2, 0) && same_tokens(g1, 1, g2, 1));
    int32_t n = 0;
    const float *l1 = align_generation_logprobs(g1, 0, &n);
    const float *l2 = align_generation_logprobs(g2, 0, &n);
    ck_assert(memcmp(l1, l2, sizeof(float) * (size_t)n) == 0);
    ck_assert(same_tokens(g1, 0, g3, 0));
    /* one prompt alone, index 0 in both */
    ck_assert_int_eq(align_generate(m, t, ab, 1, &gp, &g4), ALIGN_OK);
    ck_assert(same_tokens(g1, 0, g4, 0));
    align_generation_free(g4);
    gp.seed = 6;
    ck_assert_int_eq(align_generate(m, t, ab, 2, &gp, &g4), ALIGN_OK);
    ck_assert(!same_tokens(g1, 0, g4, 0));
    align_generation_free(g1);
    align_generation_free(g2);
    align_generation_free(g3);
    align_generation_free(g4);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

/* top_k = 1 and a nucleus smaller than any probability both reduce to greedy. */
START_TEST(test_degenerate_samplers_are_greedy)
{
    align_model *m = tiny_model(21);
    align_tokenizer *t = bytes_tok();
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 16;
    gp.temperature = 0.0f;
    align_generation *greedy = NULL, *k1 = NULL, *p0 = NULL;
    ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &greedy), ALIGN_OK);
    gp.temperature = 1.0f;
    gp.top_k = 1;
    ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &k1), ALIGN_OK);
    gp.top_k = 0;
    gp.top_p = 0.001f; /* < 1/257: only the most likely token */
    ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &p0), ALIGN_OK);
    for (int32_t i = 0; i < 3; i++) {
        ck_assert(same_tokens(greedy, i, k1, i));
        ck_assert(same_tokens(greedy, i, p0, i));
    }
    align_generation_free(greedy);
    align_generation_free(k1);
    align_generation_free(p0);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

/* A stop string ends the sequence and is cut from the text with what follows. */
START_TEST(test_stop_strings)
{
    align_model *m = tiny_model(5);
    align_tokenizer *t = bytes_tok();
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 24;
    gp.seed = 77;
    const char *pr[] = {"stop test"};
    align_generation *g = NULL;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_OK);
    size_t len = 0;
    const char *text = align_generation_text(g, 0, &len);
    ck_assert_msg(len >= 6, "need a few bytes of text, got %zu", len);
    char full[64];
    memcpy(full, text, len + 1);
    /* stop at the two bytes at offset 3 (the first place they occur) */
    char stop[3] = {full[3], full[4], 0};
    if (stop[0] == 0 || stop[1] == 0) {
        align_generation_free(g);
        ck_abort_msg("generated text has a NUL byte");
    }
    size_t at = (size_t)(strstr(full, stop) - full);
    const char *stops[] = {"never-appears-in-text", stop};
    gp.stop = stops;
    gp.n_stop = 2;
    align_generation *gs = NULL;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &gs), ALIGN_OK);
    size_t slen = 0;
    const char *stext = align_generation_text(gs, 0, &slen);
    ck_assert_uint_eq(slen, at);
    ck_assert(memcmp(stext, full, at) == 0);
    ck_assert_int_eq(stext[slen], '\0');
    ck_assert_int_eq(align_generation_finish_reason(gs, 0), ALIGN_FINISH_STOP);
    int32_t n = 0;
    align_generation_tokens(gs, 0, &n);
    ck_assert_int_eq(n, (int32_t)at + 2); /* byte tokenizer: the tokens that spelled the stop string */
    align_generation_free(g);
    align_generation_free(gs);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

/* A model vocabulary padded past the tokenizer's: only real ids are sampled,
 * log-probs still normalise over every logit (as the forward pass does).
 * ALIGN_GENERATE_IGNORE_EOT always produces max_new_tokens. */
START_TEST(test_padded_vocab_and_ignore_eot)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 1;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 320;
    mp.max_seq_len = 64;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    align_tokenizer *t = bytes_tok();
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 2.0f;
    gp.max_new_tokens = 30; /* the longest prompt has 33 tokens: 63 of 64 */
    gp.flags = ALIGN_GENERATE_IGNORE_EOT;
    align_generation *g = NULL;
    ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &g), ALIGN_OK);
    for (int32_t i = 0; i < 3; i++) {
        int32_t n = 0, seq[128];
        const int32_t *toks = align_generation_tokens(g, i, &n);
        const float *lps = align_generation_logprobs(g, i, &n);
        ck_assert_int_eq(n, 30);
        ck_assert_int_eq(align_generation_finish_reason(g, i), ALIGN_FINISH_LENGTH);
        int32_t len = encode(t, PROMPTS[i], seq, 64), plen = len;
        for (int32_t j = 0; j < n; j++) {
            ck_assert_int_lt(toks[j], 257);
            seq[len++] = toks[j];
        }
        float tlp[128];
        ck_assert_int_eq(align_model_forward(m, seq, &len, 1, len, tlp, NULL, NULL), ALIGN_OK);
        for (int32_t j = 0; j < n; j++)
            ck_assert(fabsf(tlp[plen - 1 + j] - lps[j]) < 1e-4f);
    }
    align_generation_free(g);
    gp.flags = 0x8;
    ck_assert_int_eq(align_generate(m, t, PROMPTS, 3, &gp, &g), ALIGN_EINVAL);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

START_TEST(test_bad_arguments)
{
    align_model *m = tiny_model(1);
    align_tokenizer *t = bytes_tok();
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    align_generation *g = (align_generation *)&gp; /* must be reset to NULL */
    const char *pr[] = {"x", NULL};
    ck_assert_int_eq(align_generate(NULL, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(align_generate(m, NULL, pr, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_int_eq(align_generate(m, t, NULL, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_int_eq(align_generate(m, t, pr, 0, &gp, &g), ALIGN_EINVAL);
    ck_assert_int_eq(align_generate(m, t, pr, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "prompts[1]"));
    gp.top_p = 0.0f;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "top_p"));
    gp.top_p = 1.0f;
    gp.temperature = -1.0f;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    gp.temperature = NAN;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    gp.temperature = 1.0f;
    gp.n_stop = 1;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    const char *empty[] = {""};
    gp.stop = empty;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    gp.n_stop = 0;
    gp.stop = NULL;
    gp.max_new_tokens = -1;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    gp.max_new_tokens = 4;
    gp.struct_size = 0;
    ck_assert_int_eq(align_generate(m, t, pr, 1, &gp, &g), ALIGN_EINVAL);
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    /* a prompt as long as the context leaves no room */
    char longp[80];
    memset(longp, 'a', 79);
    longp[79] = 0;
    const char *lp[] = {longp};
    ck_assert_int_eq(align_generate(m, t, lp, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "context"));
    /* accessors are safe out of range */
    ck_assert_int_eq(align_generation_count(NULL), 0);
    ck_assert_ptr_null(align_generation_text(NULL, 0, NULL));
    ck_assert_int_eq(align_generation_finish_reason(NULL, 0), ALIGN_EINVAL);
    align_generation_free(NULL);
    /* an empty prompt starts from end-of-text; max_new_tokens 0 is empty;
     * near the end of the context generation stops at the context length */
    const char *pe[] = {"", "y"};
    gp.max_new_tokens = 0;
    ck_assert_int_eq(align_generate(m, t, pe, 2, &gp, &g), ALIGN_OK);
    int32_t n = -1;
    align_generation_tokens(g, 0, &n);
    ck_assert_int_eq(n, 0);
    ck_assert_str_eq(align_generation_text(g, 1, NULL), "");
    align_generation_free(g);
    memset(longp, 'b', 60);
    longp[60] = 0;
    gp.max_new_tokens = 20;
    gp.temperature = 0.0f;
    ck_assert_int_eq(align_generate(m, t, lp, 1, &gp, &g), ALIGN_OK);
    align_generation_tokens(g, 0, &n);
    ck_assert_int_le(n, 4);
    if (n == 4)
        ck_assert_int_eq(align_generation_finish_reason(g, 0), ALIGN_FINISH_LENGTH);
    align_generation_free(g);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

Suite *internal_generate_suite(void)
{
    Suite *s = suite_create("internal_generate");
    TCase *tc = test_tcase(s, "generate", 120);
    tcase_add_test(tc, test_kv_matches_full_forward);
    tcase_add_test(tc, test_sampled_logprobs_match_forward);
    tcase_add_test(tc, test_reproducible_and_batch_independent);
    tcase_add_test(tc, test_degenerate_samplers_are_greedy);
    tcase_add_test(tc, test_stop_strings);
    tcase_add_test(tc, test_padded_vocab_and_ignore_eot);
    tcase_add_test(tc, test_bad_arguments);
    return s;
}
