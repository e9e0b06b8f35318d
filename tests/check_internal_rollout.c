/* check_internal_rollout.c — the rollout buffer (lib/train/rollout.h): blob
 * round trip bit for bit, rejection of corrupted or inconsistent blobs, the
 * minibatch x epoch iterator (coverage, reproducibility, exact resume) and
 * the views between the response layout and the model's layout. */
#include "train/rollout.h"

#include <math.h>

#include "testutil.h"

enum { N = 7, MP = 5, MR = 6 };

static align__rollout *filled(uint64_t seed)
{
    align__errbuf eb = { { 0 } };
    align__rollout *r = NULL;
    ck_assert_int_eq(align__rollout_create(&r, N, MP, MR, &eb), ALIGN_OK);
    align__rng g;
    align__rng_init(&g, seed, 0);
    const int32_t plen[N] = { 1, 5, 3, 2, 4, 1, 5 }, rlen[N] = { 6, 0, 3, 1, 6, 2, 4 };
    for (int32_t i = 0; i < N; i++) {
        int32_t p[MP], s[MR];
        for (int t = 0; t < MP; t++)
            p[t] = (int32_t)align__rng_below(&g, 300);
        for (int t = 0; t < MR; t++)
            s[t] = (int32_t)align__rng_below(&g, 300);
        ck_assert_int_eq(align__rollout_set_sample(r, i, p, plen[i], s, rlen[i], i / 2, i % 3 != 0, &eb), ALIGN_OK);
        r->scores[i] = align__rng_normal(&g);
        for (int t = 0; t < rlen[i]; t++) {
            size_t k = (size_t)i * MR + t;
            r->logp_old[k] = -align__rng_uniform(&g) * 5;
            r->logp_ref[k] = -align__rng_uniform(&g) * 5;
            r->values[k] = align__rng_normal(&g);
            r->rewards[k] = align__rng_normal(&g);
            r->adv[k] = align__rng_normal(&g);
            r->ret[k] = align__rng_normal(&g);
        }
        if (rlen[i] > 1)
            r->mask[(size_t)i * MR + 1] = 0;   /* a token outside the loss (e.g. a tool output) */
    }
    return r;
}

static void same(const align__rollout *a, const align__rollout *b)
{
    ck_assert(a->n == b->n && a->max_prompt == b->max_prompt && a->max_resp == b->max_resp);
    size_t n = (size_t)a->n, P = n * (size_t)a->max_prompt, R = n * (size_t)a->max_resp;
    ck_assert(!memcmp(a->prompt_len, b->prompt_len, n * 4) && !memcmp(a->prompt, b->prompt, P * 4));
    ck_assert(!memcmp(a->resp_len, b->resp_len, n * 4) && !memcmp(a->resp, b->resp, R * 4));
    ck_assert(!memcmp(a->mask, b->mask, R));
    ck_assert(!memcmp(a->logp_old, b->logp_old, R * 4) && !memcmp(a->logp_ref, b->logp_ref, R * 4));
    ck_assert(!memcmp(a->values, b->values, R * 4) && !memcmp(a->rewards, b->rewards, R * 4));
    ck_assert(!memcmp(a->adv, b->adv, R * 4) && !memcmp(a->ret, b->ret, R * 4));
    ck_assert(!memcmp(a->scores, b->scores, n * 4) && !memcmp(a->group, b->group, n * 4));
    ck_assert(!memcmp(a->ended, b->ended, n));
    ck_assert(!memcmp(&a->iter, &b->iter, sizeof a->iter));
    ck_assert(!memcmp(a->order, b->order, n * 4));
}

static uint8_t *save(const align__rollout *r, size_t *len)
{
    *len = align__rollout_blob_size(r);
    uint8_t *b = malloc(*len);
    ck_assert_int_eq(align__rollout_save(r, b, *len - 1), ALIGN_ERANGE);
    ck_assert_int_eq(align__rollout_save(r, b, *len), ALIGN_OK);
    return b;
}

START_TEST(create_and_set)
{
    align__errbuf eb = { { 0 } };
    align__rollout *r = NULL;
    ck_assert_int_eq(align__rollout_create(&r, 0, 4, 4, &eb), ALIGN_EINVAL);
    ck_assert(r == NULL && strstr(eb.msg, "out of range"));
    ck_assert_int_eq(align__rollout_create(&r, 1 << 18, 1 << 10, 1 << 10, &eb), ALIGN_EINVAL);   /* 2^29 entries */
    ck_assert_int_eq(align__rollout_create(&r, 2, 4, 4, &eb), ALIGN_OK);
    int32_t p[4] = { 1, 2, 3, 4 }, s[4] = { 5, 6, 7, 8 }, neg[1] = { -1 };
    ck_assert_int_eq(align__rollout_set_sample(r, 2, p, 1, s, 1, 0, 1, &eb), ALIGN_EINVAL);
    ck_assert_int_eq(align__rollout_set_sample(r, 0, p, 0, s, 1, 0, 1, &eb), ALIGN_EINVAL);
    ck_assert_int_eq(align__rollout_set_sample(r, 0, p, 1, s, 5, 0, 1, &eb), ALIGN_EINVAL);
    ck_assert_int_eq(align__rollout_set_sample(r, 0, neg, 1, s, 1, 0, 1, &eb), ALIGN_EINVAL);
    ck_assert_int_eq(align__rollout_set_sample(r, 0, p, 2, s, 3, 7, 1, &eb), ALIGN_OK);
    ck_assert(r->mask[0] == 1 && r->mask[2] == 1 && r->mask[3] == 0 && r->group[0] == 7 && r->ended[0] == 1);
    /* rewriting a sample zeroes its old padding */
    r->values[3] = 5.0f;
    ck_assert_int_eq(align__rollout_set_sample(r, 0, p, 1, s, 1, 7, 0, &eb), ALIGN_OK);
    ck_assert(r->values[3] == 0.0f && r->mask[1] == 0 && r->resp[2] == 0 && r->prompt[1] == 0);
    align__rollout_free(r);
    align__rollout_free(NULL);
}
END_TEST

START_TEST(blob_round_trip)
{
    align__rollout *r = filled(3);
    ck_assert_int_eq(align__rollout_iter_start(r, 3, 2, 77, 5), ALIGN_OK);
    int32_t idx[3], c;
    ck_assert_int_eq(align__rollout_iter_next(r, idx, &c), ALIGN_OK);
    size_t len;
    uint8_t *b = save(r, &len);
    align__errbuf eb = { { 0 } };
    align__rollout *back = NULL;
    ck_assert_int_eq(align__rollout_load(&back, b, len, &eb), ALIGN_OK);
    same(r, back);
    /* saving the loaded buffer gives the same bytes */
    size_t len2;
    uint8_t *b2 = save(back, &len2);
    ck_assert(len2 == len && !memcmp(b, b2, len));
    /* a fresh (never iterated) buffer too */
    align__rollout *f = filled(4), *fb = NULL;
    free(b2);
    b2 = save(f, &len2);
    ck_assert_int_eq(align__rollout_load(&fb, b2, len2, &eb), ALIGN_OK);
    same(f, fb);
    free(b);
    free(b2);
    align__rollout_free(r);
    align__rollout_free(back);
    align__rollout_free(f);
    align__rollout_free(fb);
}
END_TEST

/* FNV-1a 64, as the blob's trailer, to forge blobs whose checksum is right
 * but whose content is not. */
static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
static void reseal(uint8_t *b, size_t len)
{
    uint64_t h = fnv(b, len - 8);
    for (int i = 0; i < 8; i++)
        b[len - 8 + i] = (uint8_t)(h >> (8 * i));
}
static void put32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static int load_rc(const uint8_t *b, size_t len)
{
    align__errbuf eb = { { 0 } };
    align__rollout *r = (align__rollout *)1;
    int rc = align__rollout_load(&r, b, len, &eb);
    ck_assert(rc == ALIGN_OK ? r != NULL : r == NULL);
    if (rc != ALIGN_OK)
        ck_assert(eb.msg[0] != '\0');
    align__rollout_free(r);
    return rc;
}

START_TEST(blob_rejected)
{
    align__rollout *r = filled(8);
    ck_assert_int_eq(align__rollout_iter_start(r, 2, 3, 1, 0), ALIGN_OK);
    size_t len;
    uint8_t *b = save(r, &len), *c = malloc(len + 16);
    /* every single-bit flip, in every byte, is caught */
    for (size_t k = 0; k < len; k++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(c, b, len);
            c[k] ^= (uint8_t)(1u << bit);
            ck_assert_msg(load_rc(c, len) == ALIGN_EFORMAT, "flip at byte %zu bit %d accepted", k, bit);
        }
    /* every truncation */
    for (size_t l = 0; l < len; l++)
        ck_assert_int_eq(load_rc(b, l), ALIGN_EFORMAT);
    /* well-sealed but inconsistent content. Header layout: magic 0, version 4,
     * n 8, max_prompt 12, max_resp 16, flags 20, seed 24, stream 32, mb 40,
     * epochs 44, epoch 48, pos 52; sample 0 at 56: plen, rlen, group, ended, score, tokens... */
    memcpy(c, b, len);
    put32(c + 4, 2);
    reseal(c, len);
    ck_assert_int_eq(load_rc(c, len), ALIGN_EVERSION);
    const struct { size_t off; uint32_t v; } bad[] = {
        { 8, 0 },               /* n = 0 */
        { 8, 6 },               /* n disagrees with the samples */
        { 16, 5 },              /* max_resp smaller than a response */
        { 20, 1 },              /* unknown flag */
        { 40, 9 },              /* minibatch larger than n */
        { 52, 7 },              /* position past the end */
        { 56, 0 },              /* prompt length 0 */
        { 60, 7 },              /* response length > max_resp */
        { 68, 2 },              /* ended flag */
        { 72, 0x7fc00000u },    /* score NaN */
        { 76, 0xffffffffu },    /* negative prompt token */
    };
    for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
        memcpy(c, b, len);
        put32(c + bad[j].off, bad[j].v);
        reseal(c, len);
        ck_assert_msg(load_rc(c, len) == ALIGN_EFORMAT, "forged field at %zu accepted", bad[j].off);
    }
    /* sample 0: plen 1, rlen 6 -> prompt token at 76, response 80..103, mask 104..109,
     * logp_old 110.. : a mask value 2 and an infinite log-prob */
    memcpy(c, b, len);
    c[105] = 2;
    reseal(c, len);
    ck_assert_int_eq(load_rc(c, len), ALIGN_EFORMAT);
    memcpy(c, b, len);
    put32(c + 110, 0xff800000u);
    reseal(c, len);
    ck_assert_int_eq(load_rc(c, len), ALIGN_EFORMAT);
    /* trailing bytes (resealed) */
    memcpy(c, b, len - 8);
    memset(c + len - 8, 0, 4);
    reseal(c, len + 4);
    ck_assert_int_eq(load_rc(c, len + 4), ALIGN_EFORMAT);
    ck_assert_int_eq(load_rc(b, len), ALIGN_OK);
    free(b);
    free(c);
    align__rollout_free(r);
}
END_TEST

/* Runs the iterator to the end, appending every index to seq; returns the count. */
static int drain(align__rollout *r, int32_t *seq, int32_t *mb_sizes, int *n_mb)
{
    int32_t idx[N], c;
    int total = 0, rc;
    while ((rc = align__rollout_iter_next(r, idx, &c)) == ALIGN_OK) {
        memcpy(seq + total, idx, (size_t)c * 4);
        total += c;
        mb_sizes[(*n_mb)++] = c;
    }
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert_int_eq(align__rollout_iter_next(r, idx, &c), ALIGN_DONE);
    return total;
}

START_TEST(iterator)
{
    align__rollout *r = filled(1);
    int32_t idx[N], c;
    ck_assert_int_eq(align__rollout_iter_next(r, idx, &c), ALIGN_EMISUSE);
    ck_assert_int_eq(align__rollout_iter_start(r, 0, 1, 1, 0), ALIGN_EINVAL);
    ck_assert_int_eq(align__rollout_iter_start(r, N + 1, 1, 1, 0), ALIGN_EINVAL);
    const int E = 4;
    int32_t seq[N * 4], sizes[64];
    int n_mb = 0;
    ck_assert_int_eq(align__rollout_iter_start(r, 3, E, 42, 7), ALIGN_OK);
    ck_assert_int_eq(drain(r, seq, sizes, &n_mb), N * E);
    ck_assert_int_eq(n_mb, 3 * E);   /* 3 + 3 + 1 per epoch */
    for (int m = 0; m < n_mb; m++)
        ck_assert_int_eq(sizes[m], m % 3 == 2 ? 1 : 3);
    int differs = 0;
    for (int e = 0; e < E; e++) {
        int seen[N] = { 0 };
        for (int k = 0; k < N; k++) {
            int32_t i = seq[e * N + k];
            ck_assert(i >= 0 && i < N);
            seen[i]++;
        }
        for (int i = 0; i < N; i++)
            ck_assert_msg(seen[i] == 1, "epoch %d: sample %d seen %d times", e, i, seen[i]);
        if (e > 0 && memcmp(seq + e * N, seq, N * 4))
            differs = 1;
    }
    ck_assert_msg(differs, "every epoch has the same order");
    /* same (seed, stream): same sequence; another seed or stream: another one */
    int32_t seq2[N * 4];
    n_mb = 0;
    ck_assert_int_eq(align__rollout_iter_start(r, 3, E, 42, 7), ALIGN_OK);
    drain(r, seq2, sizes, &n_mb);
    ck_assert(!memcmp(seq, seq2, sizeof seq));
    n_mb = 0;
    ck_assert_int_eq(align__rollout_iter_start(r, 3, E, 43, 7), ALIGN_OK);
    drain(r, seq2, sizes, &n_mb);
    ck_assert(memcmp(seq, seq2, sizeof seq));
    n_mb = 0;
    ck_assert_int_eq(align__rollout_iter_start(r, 3, E, 42, 8), ALIGN_OK);
    drain(r, seq2, sizes, &n_mb);
    ck_assert(memcmp(seq, seq2, sizeof seq));
    /* interrupted after every possible number of minibatches and resumed from the
     * blob (and from iter_get/iter_set): the sequence continues exactly */
    for (int stop = 0; stop <= 3 * E; stop++) {
        ck_assert_int_eq(align__rollout_iter_start(r, 3, E, 42, 7), ALIGN_OK);
        int got = 0;
        for (int m = 0; m < stop; m++) {
            ck_assert_int_eq(align__rollout_iter_next(r, seq2 + got, &c), ALIGN_OK);
            got += c;
        }
        size_t len;
        uint8_t *b = save(r, &len);
        align__errbuf eb = { { 0 } };
        align__rollout *back = NULL;
        ck_assert_int_eq(align__rollout_load(&back, b, len, &eb), ALIGN_OK);
        align__rollout_iter st;
        align__rollout_iter_get(r, &st);
        align__rollout *other = filled(2);
        ck_assert_int_eq(align__rollout_iter_set(other, &st), ALIGN_OK);
        int32_t rest_a[N * 4], rest_b[N * 4];
        int na = 0, nb = 0;
        n_mb = 0;
        na = drain(back, rest_a, sizes, &n_mb);
        n_mb = 0;
        nb = drain(other, rest_b, sizes, &n_mb);
        ck_assert_int_eq(got + na, N * E);
        ck_assert(na == nb && !memcmp(rest_a, rest_b, (size_t)na * 4));
        memcpy(seq2 + got, rest_a, (size_t)na * 4);
        ck_assert_msg(!memcmp(seq, seq2, sizeof seq), "resume after %d minibatches diverged", stop);
        free(b);
        align__rollout_free(back);
        align__rollout_free(other);
    }
    /* invalid states are refused and leave the iterator alone */
    align__rollout_iter st;
    align__rollout_iter_get(r, &st);
    align__rollout_iter badst = st;
    badst.pos = N;
    ck_assert_int_eq(align__rollout_iter_set(r, &badst), ALIGN_EINVAL);
    badst = st;
    badst.epoch = badst.n_epochs + 1;
    ck_assert_int_eq(align__rollout_iter_set(r, &badst), ALIGN_EINVAL);
    align__rollout_iter now;
    align__rollout_iter_get(r, &now);
    ck_assert(!memcmp(&now, &st, sizeof st));
    align__rollout_free(r);
}
END_TEST

START_TEST(model_layout)
{
    align__rollout *r = filled(5);
    const int32_t idx[3] = { 4, 1, 0 };
    enum { L = 12 };
    int32_t tok[3 * L], len[3];
    ck_assert_int_eq(align__rollout_batch(r, idx, 3, L, tok, len), ALIGN_OK);
    for (int k = 0; k < 3; k++) {
        int32_t i = idx[k], pl = r->prompt_len[i], rl = r->resp_len[i];
        ck_assert_int_eq(len[k], pl + rl);
        for (int t = 0; t < L; t++) {
            int32_t want = t < pl ? r->prompt[i * MP + t] : t < pl + rl ? r->resp[i * MR + t - pl] : 0;
            ck_assert_int_eq(tok[k * L + t], want);
        }
    }
    ck_assert_int_eq(align__rollout_batch(r, idx, 3, 9, tok, len), ALIGN_EINVAL);   /* 4 + 6 > 9 */
    /* token_logprobs position of response token t = prompt_len + t - 1 */
    float model[3 * (L - 1)], resp[3 * MR], back[3 * (L - 1)];
    for (int k = 0; k < 3 * (L - 1); k++)
        model[k] = (float)k;
    ck_assert_int_eq(align__rollout_model_to_resp(r, resp, model, idx, 3, L, L - 1), ALIGN_OK);
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < MR; t++) {
            int32_t i = idx[k];
            float want = t < r->resp_len[i] ? (float)(k * (L - 1) + r->prompt_len[i] + t - 1) : 0.0f;
            ck_assert(resp[k * MR + t] == want);
        }
    ck_assert_int_eq(align__rollout_resp_to_model(r, back, resp, idx, 3, L, L - 1), ALIGN_OK);
    for (int k = 0; k < 3; k++)
        for (int p = 0; p < L - 1; p++) {
            int32_t i = idx[k], t = p - (r->prompt_len[i] - 1);
            float want = t >= 0 && t < r->resp_len[i] ? model[k * (L - 1) + p] : 0.0f;
            ck_assert(back[k * (L - 1) + p] == want);
        }
    /* the scalar (value) head layout: stride max_len, same positions */
    float scal[3 * L], vres[3 * MR], vback[3 * L];
    for (int k = 0; k < 3 * L; k++)
        scal[k] = (float)(1000 + k);
    ck_assert_int_eq(align__rollout_model_to_resp(r, vres, scal, idx, 3, L, L), ALIGN_OK);
    ck_assert_int_eq(align__rollout_resp_to_model(r, vback, vres, idx, 3, L, L), ALIGN_OK);
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < MR; t++) {
            int32_t i = idx[k];
            int in = t < r->resp_len[i];
            ck_assert(vres[k * MR + t] == (in ? (float)(1000 + k * L + r->prompt_len[i] + t - 1) : 0.0f));
            if (in)
                ck_assert(vback[k * L + r->prompt_len[i] + t - 1] == vres[k * MR + t]);
        }
    ck_assert(vback[L - 1] == 0.0f && vback[2 * L + L - 1] == 0.0f);
    ck_assert_int_eq(align__rollout_model_to_resp(r, vres, scal, idx, 3, L, L - 2), ALIGN_EINVAL);
    float rows[3 * MR];
    uint8_t mrows[3 * MR];
    align__rollout_rows_f(r, rows, r->adv, idx, 3);
    align__rollout_rows_u8(r, mrows, r->mask, idx, 3);
    ck_assert(!memcmp(rows + MR, r->adv + 1 * MR, MR * 4) && !memcmp(mrows, r->mask + 4 * MR, MR));
    align__rollout_clear(r);
    ck_assert(r->resp_len[4] == 0 && r->adv[4 * MR] == 0.0f && r->iter.mb_size == 0);
    align__rollout_free(r);
}
END_TEST

Suite *internal_rollout_suite(void)
{
    Suite *s = suite_create("internal_rollout");
    TCase *tc = test_tcase(s, "rollout", 120);
    tcase_add_test(tc, create_and_set);
    tcase_add_test(tc, blob_round_trip);
    tcase_add_test(tc, blob_rejected);
    tcase_add_test(tc, iterator);
    tcase_add_test(tc, model_layout);
    return s;
}
