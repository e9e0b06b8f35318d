/* check_internal_batch.c — the SFT batcher (lib/data/batch.h) and the
 * dataset pull source (lib/data/dataset.h), with the byte tokenizer so
 * every expected token is a character. */
#include "data/batch.h"
#include "data/dataset.h"

#include "testutil.h"

#define EOT 256

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    return t;
}

static align__batch_params params(int32_t max_len, uint32_t flags)
{
    align__batch_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    p.max_len = max_len;
    p.truncation = ALIGN_TRUNCATE_RIGHT;
    p.seed = 1234;
    return p;
}

static align__batcher *make(align_dataset *d, const align_tokenizer *t, const align__batch_params *p)
{
    align__errbuf eb = { { 0 } };
    align__batcher *b = NULL;
    int rc = align__batcher_create(&b, d, t, p, &eb);
    ck_assert_msg(rc == ALIGN_OK, "%s", eb.msg);
    return b;
}

/* One call's output, big enough for every test here. */
typedef struct rows {
    int32_t tok[16 * 64];
    int32_t len[16];
    uint8_t mask[16 * 63];
    int32_t n;
} rows;

static void next(align__batcher *b, int32_t n, int wrap, int32_t L, rows *r)
{
    memset(r, 0xAB, sizeof *r);
    ck_assert_int_le(n, 16);
    ck_assert_int_le(L, 64);
    ck_assert_int_eq(align__batcher_next(b, n, wrap, r->tok, r->len, r->mask, &r->n), ALIGN_OK);
    (void)L;
}

static void expect_row(const rows *r, int i, int32_t L, const int32_t *tok, const uint8_t *mask, int32_t len)
{
    ck_assert_int_eq(r->len[i], len);
    for (int32_t t = 0; t < L; t++)
        ck_assert_msg(r->tok[i * L + t] == (t < len ? tok[t] : 0), "row %d token %d: %d", i, t, r->tok[i * L + t]);
    for (int32_t t = 0; t < L - 1; t++)
        ck_assert_msg(r->mask[i * (L - 1) + t] == (t < len - 1 ? mask[t] : 0), "row %d mask %d: %d", i, t,
                      r->mask[i * (L - 1) + t]);
}

START_TEST(test_demo_template_and_mask)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "ab", "cd", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_prompt(d, "ignored", NULL), ALIGN_OK);
    align__batch_params p = params(8, 0);
    align__batcher *b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_examples(b), 1);
    ck_assert_int_eq(align__batcher_skipped(b), 1);
    rows r;
    next(b, 2, 0, 8, &r);
    ck_assert_int_eq(r.n, 1); /* the epoch ends after one row */
    ck_assert_int_eq(align__batcher_epoch(b), 1);
    int32_t tok[5] = { 'a', 'b', 'c', 'd', EOT };
    /* mask[t] means tokens[t+1] is a target: c, d and the end-of-turn */
    uint8_t mask[4] = { 0, 1, 1, 1 };
    expect_row(&r, 0, 8, tok, mask, 5);
    next(b, 2, 0, 8, &r);
    ck_assert_int_eq(r.n, 0);
    align__batcher_free(b);

    p = params(8, ALIGN__BATCH_FULL_LOSS);
    b = make(d, t, &p);
    next(b, 1, 0, 8, &r);
    uint8_t full[4] = { 1, 1, 1, 1 };
    expect_row(&r, 0, 8, tok, full, 5);
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_chat_template)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    const char *roles[4] = { "system", "user", "assistant", "tool" };
    const char *contents[4] = { "s", "u", "a", "t" };
    ck_assert_int_eq(align_dataset_add_chat(d, roles, contents, 4, NULL), ALIGN_OK);
    align__batch_params p = params(32, 0);
    p.system_prefix = "S";
    p.user_prefix = "U";
    p.assistant_prefix = "A";
    align__batcher *b = make(d, t, &p);
    rows r;
    next(b, 1, 0, 32, &r);
    ck_assert_int_eq(r.n, 1);
    /* S s eot U u eot A a eot <|tool|>\n t eot */
    int32_t tok[20] = { 'S', 's', EOT, 'U', 'u', EOT, 'A', 'a', EOT, '<', '|', 't', 'o', 'o', 'l', '|', '>', '\n', 't', EOT };
    uint8_t mask[19] = { 0 };
    mask[6] = 1; /* predicts 'a' */
    mask[7] = 1; /* predicts the assistant's eot */
    expect_row(&r, 0, 32, tok, mask, 20);
    align__batcher_free(b);

    /* default prefixes */
    p = params(64, 0);
    b = make(d, t, &p);
    next(b, 1, 0, 64, &r);
    const char *want = "<|system|>\ns";
    for (size_t i = 0; i < strlen(want); i++)
        ck_assert_int_eq(r.tok[i], want[i]);
    ck_assert_int_eq(r.tok[strlen(want)], EOT);
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_truncation)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "pq", "abcdef", NULL), ALIGN_OK); /* 9 tokens */
    ck_assert_int_eq(align_dataset_add_demo(d, "x", "y", NULL), ALIGN_OK);       /* 3 tokens */
    ck_assert_int_eq(align_dataset_add_demo(d, "longprompt", "z", NULL), ALIGN_OK); /* no target left at 5 */
    rows r;
    align__batch_params p = params(5, 0);
    align__batcher *b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_examples(b), 2);
    ck_assert_int_eq(align__batcher_skipped(b), 1);
    next(b, 4, 0, 5, &r);
    ck_assert_int_eq(r.n, 2);
    int32_t right[5] = { 'p', 'q', 'a', 'b', 'c' };
    uint8_t mr[4] = { 0, 1, 1, 1 };
    expect_row(&r, 0, 5, right, mr, 5);
    int32_t small[3] = { 'x', 'y', EOT };
    uint8_t ms[2] = { 1, 1 };
    expect_row(&r, 1, 5, small, ms, 3);
    align__batcher_free(b);

    p.truncation = ALIGN_TRUNCATE_LEFT;
    b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_examples(b), 3);
    next(b, 4, 0, 5, &r);
    ck_assert_int_eq(r.n, 3);
    int32_t left[5] = { 'c', 'd', 'e', 'f', EOT };
    uint8_t ml[4] = { 1, 1, 1, 1 };
    expect_row(&r, 0, 5, left, ml, 5);
    int32_t left3[5] = { 'm', 'p', 't', 'z', EOT }; /* the tail of "longprompt" "z" */
    uint8_t ml3[4] = { 0, 0, 1, 1 };
    expect_row(&r, 2, 5, left3, ml3, 5);
    align__batcher_free(b);

    p.truncation = ALIGN_TRUNCATE_DROP;
    b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_examples(b), 1);
    ck_assert_int_eq(align__batcher_skipped(b), 2);
    align__batcher_free(b);

    p.truncation = 7;
    align__errbuf eb = { { 0 } };
    ck_assert_int_eq(align__batcher_create(&b, d, t, &p, &eb), ALIGN_EINVAL);
    ck_assert_ptr_eq(b, NULL);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_packing)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "a", "bc", NULL), ALIGN_OK);       /* a b c E */
    ck_assert_int_eq(align_dataset_add_demo(d, "d", "efghij", NULL), ALIGN_OK);   /* d e f g h i j E */
    ck_assert_int_eq(align_dataset_add_demo(d, "k", "l", NULL), ALIGN_OK);        /* k l E */
    align__batch_params p = params(6, ALIGN__BATCH_PACK);
    align__batcher *b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_examples(b), 3); /* the 8-token example is split, not truncated */
    rows r;
    next(b, 8, 0, 6, &r);
    ck_assert_int_eq(r.n, 3);
    int32_t r0[6] = { 'a', 'b', 'c', EOT, 'd', 'e' };
    uint8_t m0[5] = { 1, 1, 1, 0, 1 };
    expect_row(&r, 0, 6, r0, m0, 6);
    int32_t r1[6] = { 'f', 'g', 'h', 'i', 'j', EOT };
    uint8_t m1[5] = { 1, 1, 1, 1, 1 };
    expect_row(&r, 1, 6, r1, m1, 6);
    int32_t r2[3] = { 'k', 'l', EOT };
    uint8_t m2[2] = { 1, 1 };
    expect_row(&r, 2, 6, r2, m2, 3);
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* First token of every row of a non-packed batcher over demos "<i>"/"x". */
static void epoch_firsts(align__batcher *b, int n, int32_t *out)
{
    rows r;
    int got = 0;
    while (got < n) {
        next(b, ALIGN__MIN(16, n - got), 1, 4, &r);
        for (int i = 0; i < r.n; i++)
            out[got + i] = r.tok[i * 4];
        got += r.n;
    }
}

START_TEST(test_shuffle_epochs_and_state)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    const int N = 40;
    for (int i = 0; i < N; i++) {
        char pr[2] = { (char)('0' + i), 0 };
        ck_assert_int_eq(align_dataset_add_demo(d, pr, "x", NULL), ALIGN_OK);
    }
    align__batch_params p = params(4, ALIGN__BATCH_SHUFFLE);
    align__batcher *a = make(d, t, &p), *b = make(d, t, &p);
    int32_t fa[3 * 40], fb[3 * 40];
    epoch_firsts(a, 3 * N, fa);
    epoch_firsts(b, 3 * N, fb);
    ck_assert(memcmp(fa, fb, sizeof fa) == 0); /* same seed, same order */
    ck_assert_int_eq(align__batcher_epoch(a), 3);
    for (int e = 0; e < 3; e++) { /* each epoch is a permutation */
        int seen[40] = { 0 };
        for (int i = 0; i < N; i++)
            seen[fa[e * N + i] - '0']++;
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(seen[i], 1);
    }
    ck_assert(memcmp(fa, fa + N, N * sizeof *fa) != 0);   /* reshuffled */
    int identity = 1;
    for (int i = 0; i < N; i++)
        identity &= fa[i] == '0' + i;
    ck_assert(!identity);
    /* another seed, another order */
    align__batcher_free(b);
    p.seed = 99;
    b = make(d, t, &p);
    epoch_firsts(b, N, fb);
    ck_assert(memcmp(fa, fb, N * sizeof *fa) != 0);
    align__batcher_free(b);

    /* state: mid-epoch, restored into a fresh batcher, continues identically
     * (across the next epoch boundary) */
    p.seed = 1234;
    align__batcher_rewind(a);
    ck_assert_int_eq(align__batcher_epoch(a), 0);
    epoch_firsts(a, N + 7, fa);
    align__batcher_state st;
    align__batcher_get_state(a, &st);
    ck_assert_int_eq(st.epoch, 2);
    ck_assert_int_eq(st.position, 7);
    b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_set_state(b, &st), ALIGN_OK);
    epoch_firsts(a, 2 * N, fa);
    epoch_firsts(b, 2 * N, fb);
    ck_assert(memcmp(fa, fb, 2 * N * sizeof *fa) == 0);
    ck_assert_int_eq(align__batcher_epoch(b), align__batcher_epoch(a));
    /* bad states */
    st.position = N + 1;
    ck_assert_int_eq(align__batcher_set_state(b, &st), ALIGN_EINVAL);
    st.position = 3;
    st.carry = 1; /* no carry without packing */
    ck_assert_int_eq(align__batcher_set_state(b, &st), ALIGN_EINVAL);
    st.carry = 0;
    st.rng.seed = 5;
    ck_assert_int_eq(align__batcher_set_state(b, &st), ALIGN_EINVAL);
    align__batcher_free(a);
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_packed_state_with_carry)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (int i = 0; i < 23; i++) {
        char pr[16], co[32];
        snprintf(pr, sizeof pr, "p%d", i);
        snprintf(co, sizeof co, "%.*s", 1 + (i * 7) % 13, "abcdefghijklmnop");
        ck_assert_int_eq(align_dataset_add_demo(d, pr, co, NULL), ALIGN_OK);
    }
    align__batch_params p = params(8, ALIGN__BATCH_PACK | ALIGN__BATCH_SHUFFLE);
    align__batcher *a = make(d, t, &p);
    rows r, s;
    align__batcher_state st;
    int found = 0;
    for (int k = 0; k < 50 && !found; k++) { /* stop where an example is split */
        next(a, 1, 1, 8, &r);
        align__batcher_get_state(a, &st);
        found = st.carry > 0;
    }
    ck_assert(found);
    align__batcher *b = make(d, t, &p);
    ck_assert_int_eq(align__batcher_set_state(b, &st), ALIGN_OK);
    for (int k = 0; k < 20; k++) {
        next(a, 3, 1, 8, &r);
        next(b, 3, 1, 8, &s);
        ck_assert(memcmp(r.tok, s.tok, sizeof(int32_t) * 3 * 8) == 0);
        ck_assert(memcmp(r.len, s.len, sizeof(int32_t) * 3) == 0);
        ck_assert(memcmp(r.mask, s.mask, 3 * 7) == 0);
    }
    align__batcher_free(a);
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_no_usable_record)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_prompt(d, "p", NULL), ALIGN_OK);
    align__batch_params p = params(8, 0);
    align__errbuf eb = { { 0 } };
    align__batcher *b = (align__batcher *)1;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &p, &eb), ALIGN_EINVAL);
    ck_assert_ptr_eq(b, NULL);
    ck_assert_ptr_ne(strstr(eb.msg, "no usable record"), NULL);
    p.max_len = 1;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &p, &eb), ALIGN_EINVAL);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* ---- pull source ------------------------------------------------------------ */

typedef struct src_state {
    int calls, limit, fail;
    align_text_sink *kept;
} src_state;

static int prompt_source(align_text_sink *sink, void *ud)
{
    src_state *s = ud;
    s->kept = sink;
    if (s->fail)
        return -42;
    if (s->calls >= s->limit)
        return ALIGN_DONE;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "prompt %d", s->calls++);
    ck_assert_int_eq(align_text_sink_add(sink, buf, (size_t)n), ALIGN_OK);
    ck_assert_int_eq(align_text_sink_add(sink, "bad \xff", 5), ALIGN_EINVAL);
    return s->calls == 2 ? 7 : ALIGN_OK; /* an unexpected status on the 2nd call */
}

START_TEST(test_pull_source)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    align__errbuf eb = { { 0 } };
    ck_assert_int_eq(align__dataset_pull(d, 1, &eb), ALIGN_DONE); /* no source */
    src_state s = { 0, 3, 0, NULL };
    ck_assert_int_eq(align_dataset_set_source(d, prompt_source, &s), ALIGN_OK);
    ck_assert_int_eq(align__dataset_pull(d, 1, &eb), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(d), 1);
    ck_assert_int_eq(align_dataset_record_kind(d, 0), ALIGN_RECORD_PROMPT);
    align__record_view v;
    ck_assert_int_eq(align__dataset_get(d, 0, &v), ALIGN_OK);
    ck_assert_str_eq(v.prompt, "prompt 0");
    /* the sink is dead after the callback */
    ck_assert_int_eq(align_text_sink_add(s.kept, "late", 4), ALIGN_EMISUSE);
    ck_assert_int_eq(align__dataset_pull(d, 1, &eb), ALIGN_ECALLBACK); /* returned 7 */
    ck_assert_ptr_ne(strstr(eb.msg, "returned 7"), NULL);
    ck_assert_int_eq(align_dataset_size(d), 2); /* what it added stays */
    ck_assert_int_eq(align__dataset_pull(d, 5, &eb), ALIGN_DONE); /* one more, then done */
    ck_assert_int_eq(align_dataset_size(d), 3);
    s.fail = 1;
    ck_assert_int_eq(align__dataset_pull(d, 1, &eb), ALIGN_ECALLBACK);
    ck_assert_ptr_ne(strstr(align_dataset_errmsg(d), "-42"), NULL);
    ck_assert_int_eq(align_dataset_set_source(d, NULL, NULL), ALIGN_OK);
    ck_assert_int_eq(align__dataset_pull(d, 1, &eb), ALIGN_DONE);
    align_dataset_free(d);
}
END_TEST

Suite *internal_batch_suite(void)
{
    Suite *s = suite_create("internal_batch");
    TCase *tc = test_tcase(s, "batch", 60);
    tcase_add_test(tc, test_demo_template_and_mask);
    tcase_add_test(tc, test_chat_template);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_packing);
    tcase_add_test(tc, test_shuffle_epochs_and_state);
    tcase_add_test(tc, test_packed_state_with_carry);
    tcase_add_test(tc, test_no_usable_record);
    tcase_add_test(tc, test_pull_source);
    return s;
}
