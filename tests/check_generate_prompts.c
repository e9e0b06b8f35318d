/* check_generate_prompts.c — the ways of giving generation its prompts
 * (text, token ids, conversations, special tokens in text) and the
 * regressions: ids the tokenizer cannot decode are never sampled,
 * an empty prompt without an end-of-text token is a clear error. Public
 * API only. */
#include "testutil.h"

#include "align.h"

#include <math.h>

static align_model *tiny_model(int32_t vocab, uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = vocab;
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

/* Writes a tokenizer.json into a scratch folder and loads it. */
static align_tokenizer *json_tok(const char *json)
{
    char *dir = test_tmpdir("gen-tok");
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(json, f);
    fclose(f);
    align_tokenizer *t = NULL;
    ck_assert_msg(align_tokenizer_load(&t, path) == ALIGN_OK, "%s", align_last_errmsg());
    remove(path);
    rmdir(dir);
    free(dir);
    return t;
}

/* Byte-level BPE over a b c d and space, with holes at ids 6 and 7 and
 * end-of-text at 9: vocabulary size 10, 8 decodable ids. */
static const char HOLEY_JSON[] =
    "{\"added_tokens\": [{\"id\": 9, \"content\": \"<|endoftext|>\", \"special\": true}],"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"\\u0120\": 4,"
    " \"ab\": 5, \"cd\": 8}, \"merges\": [\"a b\", \"c d\"]}}";

static int decodable(const align_tokenizer *t, int32_t id)
{
    char buf[64];
    size_t len = 0;
    int rc = align_detokenize(t, &id, 1, buf, sizeof buf, &len);
    return rc == ALIGN_OK;
}

/* (a) a model vocabulary (64) larger than the tokenizer's (10, with
 * two holes). Greedy decoding picks the best id the tokenizer can decode
 * (checked against a full forward pass), log-probs stay those of the
 * forward pass over all 64 logits, and sampling with temperature, top-k and
 * top-p never leaves the decodable ids. */
START_TEST(test_only_decodable_ids_are_sampled)
{
    align_tokenizer *t = json_tok(HOLEY_JSON);
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 10);
    ck_assert(!decodable(t, 6) && !decodable(t, 7) && decodable(t, 8));
    enum { V = 64 };
    align_model *m = tiny_model(V, 11);
    const char *prompts[] = { "abcd", "ab cd a", "d" };
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.max_new_tokens = 16;
    gp.flags = ALIGN_GENERATE_IGNORE_EOT;
    align_generation *g = NULL;
    ck_assert_msg(align_generate(m, t, prompts, 3, &gp, &g) == ALIGN_OK, "%s", align_model_errmsg(m));
    int outside = 0; /* steps where the unrestricted argmax was not decodable */
    static float logits[64 * V];
    for (int32_t i = 0; i < 3; i++) {
        int32_t n = 0, seq[64];
        const int32_t *toks = align_generation_tokens(g, i, &n);
        const float *lps = align_generation_logprobs(g, i, &n);
        ck_assert_int_eq(n, 16);
        size_t np = 0;
        ck_assert_int_eq(align_tokenize(t, prompts[i], strlen(prompts[i]), 0, seq, 64, &np), ALIGN_OK);
        int32_t len = (int32_t)np;
        for (int32_t j = 0; j < n; j++)
            seq[len++] = toks[j];
        float tlp[63];
        ck_assert_int_eq(align_model_forward(m, seq, &len, 1, len, tlp, NULL, logits), ALIGN_OK);
        for (int32_t j = 0; j < n; j++) {
            const float *row = logits + (size_t)((int32_t)np - 1 + j) * V;
            int32_t best = -1, any = 0;
            for (int32_t v = 0; v < V; v++) {
                if (row[v] > row[any])
                    any = v;
                if (v < 10 && decodable(t, v) && (best < 0 || row[v] > row[best]))
                    best = v;
            }
            outside += any != best;
            ck_assert_int_eq(toks[j], best);
            ck_assert(fabsf(tlp[np - 1 + j] - lps[j]) < 1e-4f);
        }
    }
    ck_assert_int_gt(outside, 0); /* the case the fix is about did happen */
    align_generation_free(g);
    const float temps[3] = { 3.0f, 3.0f, 3.0f };
    const int32_t ks[3] = { 0, 9, 0 };
    const float ps[3] = { 1.0f, 1.0f, 0.99f };
    for (int c = 0; c < 3; c++) {
        gp.temperature = temps[c];
        gp.top_k = ks[c];
        gp.top_p = ps[c];
        ck_assert_msg(align_generate(m, t, prompts, 3, &gp, &g) == ALIGN_OK, "%s", align_model_errmsg(m));
        for (int32_t i = 0; i < 3; i++) {
            int32_t n = 0;
            const int32_t *toks = align_generation_tokens(g, i, &n);
            for (int32_t j = 0; j < n; j++)
                ck_assert_msg(toks[j] < 10 && decodable(t, toks[j]), "case %d: token %d", c, toks[j]);
        }
        align_generation_free(g);
    }
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

/* (b) an empty prompt starts from end-of-text; a tokenizer
 * without one gets a clear ALIGN_EINVAL (no "token -1" from the model). */
START_TEST(test_empty_prompt)
{
    align_tokenizer *t = json_tok("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
                                  " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}");
    ck_assert_int_lt(align_tokenizer_eot(t), 0);
    align_model *m = tiny_model(8, 2);
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 4;
    align_generation *g = NULL;
    const char *pe[] = { "ab", "" };
    ck_assert_int_eq(align_generate(m, t, pe, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(align_model_errmsg(m), "prompt 1 is empty") && strstr(align_model_errmsg(m), "end-of-text"),
                  "%s", align_model_errmsg(m));
    const int32_t lens[2] = { 0, 0 };
    ck_assert_int_eq(align_generate_tokens(m, t, NULL, lens, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "prompt 0 is empty"));
    /* a non-empty prompt works, and never produces end-of-text */
    ck_assert_int_eq(align_generate(m, t, pe, 1, &gp, &g), ALIGN_OK);
    int32_t n = 0;
    const int32_t *toks = align_generation_tokens(g, 0, &n);
    ck_assert_int_eq(n, 4);
    for (int32_t j = 0; j < n; j++)
        ck_assert_int_lt(toks[j], 2);
    align_generation_free(g);
    /* conversations need an end-of-turn token */
    const char *roles[] = { "user" }, *contents[] = { "ab" };
    const int32_t nm[] = { 1 };
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, contents, nm, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "end-of-text"));
    align_model_free(m);
    align_tokenizer_free(t);

    /* with end-of-text: "" and a length-0 token prompt are the same prompt */
    t = bytes_tok();
    m = tiny_model(257, 2);
    gp.flags = ALIGN_GENERATE_IGNORE_EOT;
    align_generation *g2 = NULL;
    ck_assert_int_eq(align_generate(m, t, pe + 1, 1, &gp, &g), ALIGN_OK);
    ck_assert_int_eq(align_generate_tokens(m, t, NULL, lens, 1, &gp, &g2), ALIGN_OK);
    int32_t n2 = 0;
    const int32_t *t1 = align_generation_tokens(g, 0, &n), *t2 = align_generation_tokens(g2, 0, &n2);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(n, n2);
    ck_assert_int_eq(memcmp(t1, t2, (size_t)n * sizeof *t1), 0);
    align_generation_free(g);
    align_generation_free(g2);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

static void expect_same(const align_generation *a, const align_generation *b)
{
    ck_assert_int_eq(align_generation_count(a), align_generation_count(b));
    for (int32_t i = 0; i < align_generation_count(a); i++) {
        int32_t na = 0, nb = 0;
        const int32_t *ta = align_generation_tokens(a, i, &na), *tb = align_generation_tokens(b, i, &nb);
        const float *la = align_generation_logprobs(a, i, &na), *lb = align_generation_logprobs(b, i, &nb);
        ck_assert_int_eq(na, nb);
        ck_assert_int_eq(memcmp(ta, tb, (size_t)na * sizeof *ta), 0);
        ck_assert_int_eq(memcmp(la, lb, (size_t)na * sizeof *la), 0);
        ck_assert_str_eq(align_generation_text(a, i, NULL), align_generation_text(b, i, NULL));
        ck_assert_int_eq(align_generation_finish_reason(a, i), align_generation_finish_reason(b, i));
    }
}

/* Text prompts are the token prompts of their tokenization; with
 * ALIGN_GENERATE_SPECIAL "<|endoftext|>" in the text is the end-of-text id. */
START_TEST(test_text_tokens_and_special)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = tiny_model(257, 5);
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 8;
    gp.seed = 99;
    gp.flags = ALIGN_GENERATE_IGNORE_EOT;
    const char *prompts[] = { "ab<|endoftext|>c", "x" };
    /* without the flag: bytes */
    int32_t flat[32], lens[2];
    lens[0] = (int32_t)strlen(prompts[0]);
    for (int32_t k = 0; k < lens[0]; k++)
        flat[k] = (unsigned char)prompts[0][k];
    flat[lens[0]] = 'x';
    lens[1] = 1;
    align_generation *a = NULL, *b = NULL;
    ck_assert_int_eq(align_generate(m, t, prompts, 2, &gp, &a), ALIGN_OK);
    ck_assert_int_eq(align_generate_tokens(m, t, flat, lens, 2, &gp, &b), ALIGN_OK);
    expect_same(a, b);
    align_generation_free(a);
    align_generation_free(b);
    /* with it: a, b, end-of-text, c */
    const int32_t special[5] = { 'a', 'b', 256, 'c', 'x' };
    const int32_t slens[2] = { 4, 1 };
    gp.flags |= ALIGN_GENERATE_SPECIAL;
    ck_assert_int_eq(align_generate(m, t, prompts, 2, &gp, &a), ALIGN_OK);
    ck_assert_int_eq(align_generate_tokens(m, t, special, slens, 2, &gp, &b), ALIGN_OK);
    expect_same(a, b);
    align_generation_free(a);
    align_generation_free(b);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

/* A conversation is the token prompt align_chat_tokenize renders, in a
 * batch of conversations with different numbers of messages. */
START_TEST(test_chat_is_its_tokens)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = tiny_model(257, 8);
    const char *roles[] = { "user", "system", "user", "assistant", "user" };
    const char *contents[] = { "hi", "sys", "q1", "a1", "q2" };
    const int32_t nm[2] = { 1, 4 };
    align_chat_template ct;
    ALIGN_CHAT_TEMPLATE_DEFAULT_PARAMS(&ct);
    ct.assistant_prefix = "Bot: ";
    int32_t flat[128], lens[2];
    size_t n0 = 0, n1 = 0;
    ck_assert_int_eq(align_chat_tokenize(t, &ct, roles, contents, 1, ALIGN_CHAT_GENERATION_PROMPT, flat, NULL, 128,
                                         &n0), ALIGN_OK);
    ck_assert_int_eq(align_chat_tokenize(t, &ct, roles + 1, contents + 1, 4, ALIGN_CHAT_GENERATION_PROMPT, flat + n0,
                                         NULL, 128 - n0, &n1), ALIGN_OK);
    lens[0] = (int32_t)n0;
    lens[1] = (int32_t)n1;
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 6;
    gp.top_k = 20;
    align_generation *a = NULL, *b = NULL;
    ck_assert_msg(align_generate_chat(m, t, &ct, roles, contents, nm, 2, &gp, &a) == ALIGN_OK, "%s",
                  align_model_errmsg(m));
    ck_assert_int_eq(align_generate_tokens(m, t, flat, lens, 2, &gp, &b), ALIGN_OK);
    expect_same(a, b);
    align_generation_free(a);
    align_generation_free(b);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_bad_prompt_arguments)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = tiny_model(257, 1);
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 2;
    align_generation *g = (align_generation *)&gp;
    const int32_t ids[3] = { 1, 2, 3 };
    int32_t lens[2] = { 2, 1 };
    ck_assert_int_eq(align_generate_tokens(m, t, ids, NULL, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "lengths is NULL"));
    ck_assert_int_eq(align_generate_tokens(m, t, NULL, lens, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_int_eq(align_generate_tokens(m, t, ids, lens, 0, &gp, &g), ALIGN_EINVAL);
    ck_assert_int_eq(align_generate_tokens(NULL, t, ids, lens, 2, &gp, &g), ALIGN_EINVAL);
    lens[1] = -1;
    ck_assert_int_eq(align_generate_tokens(m, t, ids, lens, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "lengths[1]"));
    lens[1] = 1;
    const int32_t bad[3] = { 1, 257, 3 };
    ck_assert_int_eq(align_generate_tokens(m, t, bad, lens, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "id 257"));
    const int32_t neg[3] = { 1, 2, -1 };
    ck_assert_int_eq(align_generate_tokens(m, t, neg, lens, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "prompt 1"));
    static int32_t longp[64];
    int32_t ll = 64;
    ck_assert_int_eq(align_generate_tokens(m, t, longp, &ll, 1, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "context"));
    ck_assert_int_eq(align_generate_tokens(m, t, ids, lens, 2, &gp, &g), ALIGN_OK);
    align_generation_free(g);

    const char *roles[] = { "user", "user" }, *contents[] = { "a", "b" };
    int32_t nm[2] = { 1, 1 };
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, contents, NULL, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "n_messages is NULL"));
    ck_assert_int_eq(align_generate_chat(m, t, NULL, NULL, contents, nm, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, NULL, nm, 2, &gp, &g), ALIGN_EINVAL);
    nm[1] = 0;
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, contents, nm, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "conversation 1 has 0 messages"));
    nm[1] = 1;
    const char *null_content[] = { "a", NULL };
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, null_content, nm, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "conversation 1"));
    align_chat_template ct;
    ALIGN_CHAT_TEMPLATE_DEFAULT_PARAMS(&ct);
    ct.flags = 0x80;
    ck_assert_int_eq(align_generate_chat(m, t, &ct, roles, contents, nm, 2, &gp, &g), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(m), "flags"));
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, contents, nm, 2, &gp, &g), ALIGN_OK);
    ck_assert_int_eq(align_generation_count(g), 2);
    align_generation_free(g);
    gp.flags = 0x4;
    ck_assert_int_eq(align_generate_chat(m, t, NULL, roles, contents, nm, 2, &gp, &g), ALIGN_EINVAL);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

Suite *generate_prompts_suite(void)
{
    Suite *s = suite_create("generate_prompts");
    TCase *tc = test_tcase(s, "prompts", 120);
    tcase_add_test(tc, test_only_decodable_ids_are_sampled);
    tcase_add_test(tc, test_empty_prompt);
    tcase_add_test(tc, test_text_tokens_and_special);
    tcase_add_test(tc, test_chat_is_its_tokens);
    tcase_add_test(tc, test_bad_prompt_arguments);
    return s;
}
