/* check_internal_bf16.c — the bf16 compute mode (lib/nn/bf16.c, dnnl.c).
 *
 * Where this build and CPU can run it: every matmul layout, forward (bias,
 * residual beta) and backward (dinp, dw accumulated, dbias), against
 *  (a) the exact product of the bf16-rounded operands (double accumulation):
 *      only fp32 accumulation error is allowed, so this catches a wrong
 *      stride, block or transposition anywhere;
 *  (b) the fp32 product, within the bf16 bound: each operand is rounded to
 *      8 significant bits (relative error <= 2^-8, the unit roundoff), so a
 *      product term errs by at most ~2^-7 of its size and a sum of K terms
 *      by 2^-7 * sum_k |a_k b_k| (plus fp32 accumulation);
 * with blocks small enough to exercise the blocking over K and over the
 * split dimension; bitwise the same on a repeat and per thread count; and the
 * gradients of a whole tiny GPT-2 in bf16 within 2% (relative L2) of fp32.
 * Everywhere: the mode is refused with a message, and stays fp32, where the
 * CPU (here: pretended) lacks bf16 instructions. */
#include "nn/bf16.h"
#include "nn/nn.h"
#include "model/model_impl.h"
#include "testutil.h"

#include "align.h"

#include <math.h>

static float *randv(align__rng *r, size_t n, float scale)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = scale * align__rng_normal(r);
    return v;
}

static float *roundv(const float *x, size_t n)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = align__bf16_to_f32(align__bf16_from_f32(x[i]));
    return v;
}

static float *absv(const float *x, size_t n)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(x[i]);
    return v;
}

static float *copyv(const float *x, size_t n)
{
    float *v = malloc(n * sizeof(float));
    memcpy(v, x, n * sizeof(float));
    return v;
}

/* got vs the product of rounded operands (tight), and vs fp32 within
 * 2^-7 * |A||B| (+ fp32 slack); mag = the product of absolute values. */
static void check_close(const char *what, const float *got, const float *exact_r, const float *exact32,
                        const float *mag, int64_t n, int64_t K)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float tight = 1e-6f * (float)K * (1.0f + mag[i]);
        ck_assert_msg(fabsf(got[i] - exact_r[i]) <= tight, "%s [%lld]: %.9g, rounded-operand product %.9g",
                      what, (long long)i, got[i], exact_r[i]);
        float bound = 0.0079f * mag[i] + tight; /* 2^-7 + 2^-16 = 0.00783 */
        ck_assert_msg(fabsf(got[i] - exact32[i]) <= bound, "%s [%lld]: %.9g, fp32 %.9g, bound %.3g", what,
                      (long long)i, got[i], exact32[i], bound);
        if (mag[i] > 0 && fabsf(got[i] - exact32[i]) / mag[i] > worst)
            worst = fabsf(got[i] - exact32[i]) / mag[i];
    }
    ck_assert_msg(worst > 0, "%s: bf16 result equals fp32 exactly: was bf16 used at all?", what);
}

static void layouts_case(int64_t N, int64_t C, int64_t OC, int64_t block)
{
    align__rng r;
    align__rng_init(&r, (uint64_t)(N * 1000 + C * 10 + OC), 0);
    align__dnnl_test_block(block);
    for (int layout = 0; layout < 2; layout++) {
        float *x = randv(&r, (size_t)(N * C), 1.0f), *w = randv(&r, (size_t)(C * OC), 0.1f);
        float *b = randv(&r, (size_t)OC, 1.0f), *dout = randv(&r, (size_t)(N * OC), 1.0f);
        float *o0 = randv(&r, (size_t)(N * OC), 1.0f), *dw0 = randv(&r, (size_t)(C * OC), 1.0f);
        float *xr = roundv(x, (size_t)(N * C)), *wr = roundv(w, (size_t)(C * OC));
        float *dr = roundv(dout, (size_t)(N * OC));
        float *xa = absv(x, (size_t)(N * C)), *wa = absv(w, (size_t)(C * OC)), *da = absv(dout, (size_t)(N * OC));
        float *zero = calloc((size_t)(C * OC > N * OC ? C * OC : N * OC), sizeof(float));
        for (int beta = 0; beta < 2; beta++)
            for (int bias = 0; bias < 2; bias++) {
                float *got = copyv(o0, (size_t)(N * OC)), *er = copyv(o0, (size_t)(N * OC));
                float *e32 = copyv(o0, (size_t)(N * OC)), *mag = calloc((size_t)(N * OC), sizeof(float));
                ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_BF16), ALIGN_OK);
                align__nn_matmul_forward(got, x, w, bias ? b : NULL, N, C, OC, layout, (float)beta);
                ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
                align__nn_matmul_forward_ref(er, xr, wr, bias ? b : NULL, N, C, OC, layout, (float)beta);
                align__nn_matmul_forward_ref(e32, x, w, bias ? b : NULL, N, C, OC, layout, (float)beta);
                align__nn_matmul_forward_ref(mag, xa, wa, NULL, N, C, OC, layout, 0.0f);
                char what[96];
                snprintf(what, sizeof what, "forward N%lld C%lld OC%lld layout %d beta %d bias %d", (long long)N,
                         (long long)C, (long long)OC, layout, beta, bias);
                check_close(what, got, er, e32, mag, N * OC, C);
                /* the same bits on a repeat */
                float *again = copyv(o0, (size_t)(N * OC));
                ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_BF16), ALIGN_OK);
                align__nn_matmul_forward(again, x, w, bias ? b : NULL, N, C, OC, layout, (float)beta);
                ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
                ck_assert_msg(!memcmp(again, got, (size_t)(N * OC) * sizeof(float)), "%s: repeat differs", what);
                free(got); free(er); free(e32); free(mag); free(again);
            }
        /* backward: dinp overwritten, dw accumulated onto dw0, dbias */
        float *dinp = randv(&r, (size_t)(N * C), 1.0f), *dw = copyv(dw0, (size_t)(C * OC));
        float *db = calloc((size_t)OC, sizeof(float)), *db32 = calloc((size_t)OC, sizeof(float));
        ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_BF16), ALIGN_OK);
        align__nn_matmul_backward(dinp, dw, db, dout, x, w, N, C, OC, layout);
        ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
        float *er = malloc((size_t)(N * C) * sizeof(float)), *e32 = malloc((size_t)(N * C) * sizeof(float));
        float *mag = malloc((size_t)(N * C) * sizeof(float));
        float *dwr = copyv(dw0, (size_t)(C * OC)), *dw32 = copyv(dw0, (size_t)(C * OC));
        float *dwm = calloc((size_t)(C * OC), sizeof(float));
        align__nn_matmul_backward_ref(er, dwr, NULL, dr, xr, wr, N, C, OC, layout);
        align__nn_matmul_backward_ref(e32, dw32, db32, dout, x, w, N, C, OC, layout);
        align__nn_matmul_backward_ref(mag, dwm, NULL, da, xa, wa, N, C, OC, layout);
        char what[96];
        snprintf(what, sizeof what, "dinp N%lld C%lld OC%lld layout %d", (long long)N, (long long)C,
                 (long long)OC, layout);
        check_close(what, dinp, er, e32, mag, N * C, OC);
        /* dw0 was added to the exact sums: compare the accumulated part */
        for (int64_t i = 0; i < C * OC; i++) {
            dw[i] -= dw0[i], dwr[i] -= dw0[i], dw32[i] -= dw0[i];
        }
        snprintf(what, sizeof what, "dw N%lld C%lld OC%lld layout %d", (long long)N, (long long)C, (long long)OC,
                 layout);
        /* the subtraction of dw0 (|dw0| ~ 1) costs up to an ulp of it: slack 1e-6 */
        for (int64_t i = 0; i < C * OC; i++)
            dwm[i] += 1.0f;
        check_close(what, dw, dwr, dw32, dwm, C * OC, N);
        for (int64_t o = 0; o < OC; o++) /* dbias stays fp32 */
            ck_assert_float_eq_tol(db[o], db32[o], 1e-4f * (1.0f + fabsf(db32[o])));
        free(dinp); free(dw); free(db); free(db32); free(er); free(e32); free(mag); free(dwr); free(dw32);
        free(dwm);
        free(x); free(w); free(b); free(dout); free(o0); free(dw0); free(xr); free(wr); free(dr);
        free(xa); free(wa); free(da); free(zero);
    }
    align__dnnl_test_block(0);
}

START_TEST(test_layouts_against_fp32)
{
    if (!align__bf16_available(NULL))
        return; /* test_refused_without_bf16 covers such machines */
    align_threads_set(2);
    /* odd shapes (not multiples of the vector width / split unit), a row
     * count of 1, K longer than the split dimension */
    layouts_case(7, 13, 9, 0);
    layouts_case(1, 40, 70, 0);
    layouts_case(33, 70, 131, 0);
    layouts_case(65, 300, 40, 0);
    /* tiny blocks: several K blocks (accumulated) and split blocks */
    layouts_case(33, 70, 131, 1000);
    layouts_case(65, 300, 40, 700);
    align_threads_set(1);
    layouts_case(33, 70, 131, 1000);
    align_threads_set(2);
}
END_TEST

/* Two thread counts: each is reproducible; both are within bf16 of fp32
 * (checked above), they may differ from each other by accumulation order. */
START_TEST(test_reproducible_per_thread_count)
{
    if (!align__bf16_available(NULL))
        return;
    align__rng r;
    align__rng_init(&r, 5, 0);
    const int64_t N = 64, C = 96, OC = 300;
    float *x = randv(&r, (size_t)(N * C), 1.0f), *w = randv(&r, (size_t)(C * OC), 0.1f);
    float *o[4];
    ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_BF16), ALIGN_OK);
    for (int t = 0; t < 4; t++) {
        align_threads_set(t < 2 ? 1 : 2);
        o[t] = calloc((size_t)(N * OC), sizeof(float));
        align__nn_matmul_forward(o[t], x, w, NULL, N, C, OC, ALIGN__W_IN_OUT, 0.0f);
    }
    ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
    ck_assert(!memcmp(o[0], o[1], (size_t)(N * OC) * sizeof(float)));
    ck_assert(!memcmp(o[2], o[3], (size_t)(N * OC) * sizeof(float)));
    for (int t = 0; t < 4; t++)
        free(o[t]);
    free(x);
    free(w);
}
END_TEST

/* Where bf16 cannot run the mode is refused with a message, the setting
 * stays fp32 and products are fp32 to the bit. Pretended here on CPUs that
 * have the instructions; real on those that do not. */
START_TEST(test_refused_without_bf16)
{
    align__bf16_test_hide_cpu(1);
    ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_BF16), ALIGN_EMISUSE);
    ck_assert_msg(strstr(align_last_errmsg(), "bf16") != NULL, "message: %s", align_last_errmsg());
    ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_FP32);
    ck_assert(strstr(align_compute_info(), "bf16 unavailable") != NULL);
    ck_assert_int_eq(align_compute_set(7), ALIGN_EINVAL);
    align__rng r;
    align__rng_init(&r, 9, 0);
    const int64_t N = 16, C = 32, OC = 48;
    float *x = randv(&r, (size_t)(N * C), 1.0f), *w = randv(&r, (size_t)(C * OC), 0.1f);
    float *o1 = calloc((size_t)(N * OC), sizeof(float)), *o2 = calloc((size_t)(N * OC), sizeof(float));
    align__nn_matmul_forward(o1, x, w, NULL, N, C, OC, ALIGN__W_IN_OUT, 0.0f);
    align__bf16_test_hide_cpu(0);
    align__nn_matmul_forward(o2, x, w, NULL, N, C, OC, ALIGN__W_IN_OUT, 0.0f); /* mode still fp32 */
    ck_assert(!memcmp(o1, o2, (size_t)(N * OC) * sizeof(float)));
    if (align__bf16_available(NULL)) {
        ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_BF16), ALIGN_OK);
        ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_BF16);
        ck_assert_msg(strncmp(align_compute_info(), "bf16; bf16 available through oneDNN", 35) == 0, "%s",
                      align_compute_info());
        align__bf16_test_hide_cpu(1); /* turns the mode off */
        ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_FP32);
        align__bf16_test_hide_cpu(0);
    }
    free(x); free(w); free(o1); free(o2);
}
END_TEST

/* Gradients of a whole tiny GPT-2 (SFT loss on random tokens) in bf16 within
 * 2% relative L2 of fp32, tensor by tensor (measured 0.3-0.5%); the loss
 * within 1%. */
START_TEST(test_model_gradients_track_fp32)
{
    if (!align__bf16_available(NULL))
        return;
    align_threads_set(2);
    align_model_params mp;
    align_model_default_params(&mp, sizeof mp);
    mp.n_layer = 2, mp.n_head = 2, mp.n_embd = 64, mp.vocab_size = 300, mp.max_seq_len = 32;
    align_model *m;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    const int B = 4, T = 32;
    int32_t tok[4 * 32], len[4] = {32, 20, 32, 9};
    align__rng r;
    align__rng_init(&r, 3, 0);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)align__rng_below(&r, 300);
    float *lp = malloc((size_t)(B * (T - 1)) * sizeof(float)), *dlp = malloc((size_t)(B * (T - 1)) * sizeof(float));
    for (int i = 0; i < B * (T - 1); i++)
        dlp[i] = -1.0f / (B * (T - 1));
    float *g[2];
    double loss[2];
    for (int mode = 0; mode < 2; mode++) {
        ck_assert_int_eq(align_compute_set(mode), ALIGN_OK);
        ck_assert_int_eq(align_model_zero_grad(m), ALIGN_OK);
        ck_assert_int_eq(align_model_forward(m, tok, len, B, T, lp, NULL, NULL), ALIGN_OK);
        ck_assert_int_eq(align_model_backward(m, dlp, NULL), ALIGN_OK);
        loss[mode] = 0;
        for (int i = 0; i < B * (T - 1); i++)
            loss[mode] += lp[i] * dlp[i];
        g[mode] = copyv(m->grads, m->n_params);
    }
    ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
    ck_assert_msg(fabs(loss[1] - loss[0]) <= 0.01 * fabs(loss[0]), "loss bf16 %g fp32 %g", loss[1], loss[0]);
    if (getenv("BF16_TRACE"))
        fprintf(stderr, "loss bf16 %.6f fp32 %.6f\n", loss[1], loss[0]);
    for (int t = 0; t < m->n_tensors; t++) {
        const align__tensor *te = &m->tensors[t];
        double num = 0, den = 0;
        for (size_t i = 0; i < te->numel; i++) {
            double d = (double)g[1][te->offset + i] - g[0][te->offset + i];
            num += d * d;
            den += (double)g[0][te->offset + i] * g[0][te->offset + i];
        }
        if (den == 0)
            continue;
        if (getenv("BF16_TRACE"))
            fprintf(stderr, "%s: relative L2 error %.5f\n", te->name, sqrt(num / den));
        ck_assert_msg(sqrt(num / den) <= 0.02, "%s: relative L2 error %.4f of the bf16 gradient", te->name,
                      sqrt(num / den));
    }
    free(g[0]); free(g[1]); free(lp); free(dlp);
    align_model_free(m);
}
END_TEST

Suite *internal_bf16_suite(void)
{
    Suite *s = suite_create("internal_bf16");
    TCase *tc = test_tcase(s, "bf16", 120);
    tcase_add_test(tc, test_layouts_against_fp32);
    tcase_add_test(tc, test_reproducible_per_thread_count);
    tcase_add_test(tc, test_refused_without_bf16);
    tcase_add_test(tc, test_model_gradients_track_fp32);
    return s;
}
