#define _GNU_SOURCE /* memmem */
/* check_model.c — the model's public API: arguments, checkpoints, frozen
 * clones, reproducibility, and overfitting one batch. */
#include "align.h"
#include "testutil.h"

#include <math.h>

static align_model_params small_params(uint32_t flags)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 2;
    p.n_head = 2;
    p.n_embd = 16;
    p.vocab_size = 23;
    p.max_seq_len = 12;
    p.flags = flags;
    return p;
}

enum { B = 3, T = 10 };
static const int32_t lens[B] = {10, 6, 8};
static int32_t toks[B * T];

static void fill_tokens(void)
{
    for (int i = 0; i < B * T; i++)
        toks[i] = (i * 5 + i / 7) % 23;
}

START_TEST(test_params_and_errors)
{
    align_model_params p;
    ck_assert_int_eq(align_model_default_params(NULL, sizeof p), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_default_params(&p, 0), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_default_params(&p, sizeof p), 0);
    ck_assert_int_eq(p.n_layer, 4);
    align_model *m = (align_model *)1;
    ck_assert_int_eq(align_model_create(NULL, &p), ALIGN_EINVAL);
    p.struct_size = 0;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    ck_assert_ptr_null(m);
    p = small_params(0);
    p.n_embd = 15; /* not a multiple of n_head */
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    ck_assert(strstr(align_last_errmsg(), "n_head") != NULL);
    p = small_params(0);
    p.arch = 7;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    /* a larger struct with a nonzero unknown tail: EVERSION */
    struct { align_model_params p; uint32_t extra; } big;
    memset(&big, 0, sizeof big);
    big.p = small_params(0);
    big.p.struct_size = sizeof big;
    big.extra = 1;
    ck_assert_int_eq(align_model_create(&m, &big.p), ALIGN_EVERSION);
    big.extra = 0;
    ck_assert_int_eq(align_model_create(&m, &big.p), 0);
    ck_assert_int_eq(align_model_num_params(m), 23 * 16 + 12 * 16 + 2 * (12 * 16 * 16 + 13 * 16) + 2 * 16);
    align_model_params got;
    got.struct_size = sizeof got;
    ck_assert_int_eq(align_model_config(m, &got), 0);
    ck_assert_int_eq(got.n_embd, 16);
    ck_assert_int_eq(got.max_seq_len, 12);

    fill_tokens();
    float lp[B * (T - 1)];
    ck_assert_int_eq(align_model_forward(m, NULL, lens, B, T, lp, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_forward(m, toks, NULL, B, T, lp, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_forward(m, toks, lens, 0, T, lp, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_forward(m, toks, lens, B, 13, lp, NULL, NULL), ALIGN_EINVAL);
    int32_t badlen[B] = {10, 0, 3};
    ck_assert_int_eq(align_model_forward(m, toks, badlen, B, T, lp, NULL, NULL), ALIGN_EINVAL);
    ck_assert(strstr(align_model_errmsg(m), "lengths[1]") != NULL);
    int32_t badtok[B * T];
    memcpy(badtok, toks, sizeof badtok);
    badtok[T + 2] = 23;
    ck_assert_int_eq(align_model_forward(m, badtok, lens, B, T, lp, NULL, NULL), ALIGN_EINVAL);
    badtok[T + 2] = 1;
    badtok[T + 8] = 999; /* past sequence 1's length: ignored */
    ck_assert_int_eq(align_model_forward(m, badtok, lens, B, T, lp, NULL, NULL), 0);
    float sc[B * T];
    ck_assert_int_eq(align_model_forward(m, toks, lens, B, T, lp, sc, NULL), ALIGN_EMISUSE);
    ck_assert_int_eq(align_model_backward(m, lp, NULL), ALIGN_EMISUSE); /* failed forward */
    ck_assert_int_eq(align_model_forward(m, toks, lens, B, T, lp, NULL, NULL), 0);
    ck_assert_int_eq(align_model_backward(m, lp, NULL), 0);
    ck_assert_int_eq(align_model_backward(m, lp, NULL), ALIGN_EMISUSE); /* one per forward */
    ck_assert_int_eq(align_model_backward(NULL, lp, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_num_params(NULL), ALIGN_EINVAL);
    align_model_free(m);
    align_model_free(NULL);
    ck_assert(strlen(align_blas_info()) > 0);
}
END_TEST

static int files_equal_model(align_model *a, align_model *b, int with_scalar)
{
    float la[B * (T - 1)], lb[B * (T - 1)], sa[B * T], sb[B * T];
    ck_assert_int_eq(align_model_forward(a, toks, lens, B, T, la, with_scalar ? sa : NULL, NULL), 0);
    ck_assert_int_eq(align_model_forward(b, toks, lens, B, T, lb, with_scalar ? sb : NULL, NULL), 0);
    return memcmp(la, lb, sizeof la) == 0 && (!with_scalar || memcmp(sa, sb, sizeof sa) == 0);
}

static void write_bytes(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc(*n);
    ck_assert_uint_eq(fread(d, 1, *n, f), *n);
    fclose(f);
    return d;
}

START_TEST(test_save_load_roundtrip_and_corruption)
{
    fill_tokens();
    char *dir = test_tmpdir("model");
    char path[4200], bad[4200];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    align_model_params p = small_params(ALIGN_MODEL_SCALAR_HEAD);
    align_model *m, *l, *keep = NULL;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    ck_assert_int_eq(align_model_save(m, path), 0);
    ck_assert_int_eq(align_model_load(&l, path, NULL), 0);
    ck_assert_int_eq(align_model_num_params(l), align_model_num_params(m));
    ck_assert(files_equal_model(m, l, 1)); /* bitwise */
    keep = l;

    size_t n;
    char *data = read_bytes(path, &n);
    ck_assert(memmem(data, n, "\"h.1.mlp.c_proj.weight\"", 23) != NULL);
    ck_assert(memmem(data, n, "\"score.weight\"", 14) != NULL);
    align_model *x = (align_model *)1;
    /* truncated */
    write_bytes(bad, data, n - 100);
    ck_assert_int_eq(align_model_load(&x, bad, NULL), ALIGN_EFORMAT);
    ck_assert_ptr_null(x);
    write_bytes(bad, data, 5);
    ck_assert_int_eq(align_model_load(&x, bad, NULL), ALIGN_EFORMAT);
    /* a flipped byte in the data */
    data[n - 7] ^= 0x40;
    write_bytes(bad, data, n);
    ck_assert_int_eq(align_model_load(&x, bad, NULL), ALIGN_EFORMAT);
    ck_assert(strstr(align_last_errmsg(), "checksum") != NULL);
    data[n - 7] ^= 0x40;
    /* broken JSON header */
    data[9] = '#';
    write_bytes(bad, data, n);
    ck_assert_int_eq(align_model_load(&x, bad, NULL), ALIGN_EFORMAT);
    free(data);
    /* missing file */
    snprintf(bad, sizeof bad, "%s/none.safetensors", dir);
    ck_assert_int_eq(align_model_load(&x, bad, NULL), ALIGN_ENOENT);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    /* mismatched: the same tensors with one shape different */
    align_model_params q = small_params(0);
    q.max_seq_len = 11;
    align_model *other;
    ck_assert_int_eq(align_model_create(&other, &q), 0);
    ck_assert_int_eq(align_model_save(other, bad), 0);
    data = read_bytes(bad, &n);
    char *hit = memmem(data, n, "\"n_positions\":\"11\"", 18);
    ck_assert_ptr_nonnull(hit);
    hit[16] = '2'; /* metadata now says 12 positions, wpe holds 11 */
    write_bytes(bad, data, n);
    free(data);
    ck_assert_int_eq(align_model_load(&x, bad, NULL), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "wpe.weight") != NULL, "%s", align_last_errmsg());
    align_model_free(other);
    /* the loaded model is untouched by the failures */
    ck_assert(files_equal_model(m, keep, 1));
    /* the scalar head can be added on load */
    snprintf(bad, sizeof bad, "%s/nohead.safetensors", dir);
    ck_assert_int_eq(align_model_create(&other, &q), 0);
    ck_assert_int_eq(align_model_save(other, bad), 0);
    align_model_params hp;
    align_model_default_params(&hp, sizeof hp);
    hp.flags = ALIGN_MODEL_SCALAR_HEAD;
    ck_assert_int_eq(align_model_load(&x, bad, &hp), 0);
    ck_assert_int_eq(align_model_num_params(x), align_model_num_params(other) + 17);
    align_model_free(x);
    align_model_free(other);
    align_model_free(keep);
    align_model_free(m);
    free(dir);
}
END_TEST

START_TEST(test_frozen_clone)
{
    fill_tokens();
    align_model_params p = small_params(ALIGN_MODEL_SCALAR_HEAD);
    align_model *m, *f;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    ck_assert_int_eq(align_model_clone(&f, m, ALIGN_FROZEN), 0);
    ck_assert(files_equal_model(m, f, 1));
    float lp[B * (T - 1)];
    memset(lp, 0, sizeof lp);
    ck_assert_int_eq(align_model_backward(f, lp, NULL), ALIGN_EMISUSE);
    ck_assert_int_eq(align_model_forward(f, toks, lens, B, T, lp, NULL, NULL), 0);
    ck_assert_int_eq(align_model_backward(f, lp, NULL), ALIGN_EMISUSE);
    align_optimizer *o = (align_optimizer *)1;
    ck_assert_int_eq(align_optimizer_create(&o, f, NULL), ALIGN_EMISUSE);
    ck_assert_ptr_null(o);
    align_model *none;
    ck_assert_int_eq(align_model_clone(&none, NULL, 0), ALIGN_EINVAL);
    ck_assert_ptr_null(none);
    align_model_free(f);
    align_model_free(m);
}
END_TEST

/* SFT-style loss on every next token: trains a tiny model for n steps. */
static float train(align_model *m, align_optimizer *o, int steps)
{
    float lp[B * (T - 1)], d[B * (T - 1)];
    int n_tok = 0;
    for (int b = 0; b < B; b++)
        n_tok += lens[b] - 1;
    float loss = 0;
    for (int s = 0; s < steps; s++) {
        ck_assert_int_eq(align_model_forward(m, toks, lens, B, T, lp, NULL, NULL), 0);
        loss = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T - 1; t++) {
                int on = t + 1 < lens[b];
                d[b * (T - 1) + t] = on ? -1.0f / n_tok : 0.0f;
                if (on)
                    loss -= lp[b * (T - 1) + t] / n_tok;
            }
        ck_assert_int_eq(align_model_backward(m, d, NULL), 0);
        ck_assert_int_eq(align_optimizer_step(o, NULL), 0);
    }
    return loss;
}

START_TEST(test_overfit_and_reproducible)
{
    fill_tokens();
    align_model_params p = small_params(0);
    p.n_embd = 32;
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 1e-2f;
    op.weight_decay = 0.0f;
    align_model *m[2];
    align_optimizer *o[2];
    float loss[2];
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(align_model_create(&m[k], &p), 0);
        ck_assert_int_eq(align_optimizer_create(&o[k], m[k], &op), 0);
        loss[k] = train(m[k], o[k], 150);
    }
    ck_assert_msg(loss[0] < 0.05f, "loss after 150 steps: %f", loss[0]);
    ck_assert(loss[0] == loss[1]);
    char *dir = test_tmpdir("repro");
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    ck_assert_int_eq(align_model_save(m[0], a), 0);
    ck_assert_int_eq(align_model_save(m[1], b), 0);
    size_t na, nb;
    char *da = read_bytes(a, &na), *db = read_bytes(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(da, db, na) == 0); /* bitwise identical weights */
    free(da);
    free(db);
    free(dir);
    for (int k = 0; k < 2; k++) {
        align_optimizer_free(o[k]);
        align_model_free(m[k]);
    }
}
END_TEST

Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = test_tcase(s, "model", 120);
    tcase_add_test(tc, test_params_and_errors);
    tcase_add_test(tc, test_save_load_roundtrip_and_corruption);
    tcase_add_test(tc, test_frozen_clone);
    tcase_add_test(tc, test_overfit_and_reproducible);
    return s;
}
