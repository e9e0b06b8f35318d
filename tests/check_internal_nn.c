/* check_internal_nn.c — the cblas / parallel kernels against the naive
 * reference kernels beside them. */
#include "nn/nn.h"
#include "testutil.h"

#include <math.h>

static float *randv(align__rng *r, size_t n)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = align__rng_normal(r);
    return v;
}

static void close_all(const float *a, const float *b, size_t n, float tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= tol * (1.0f + fabsf(b[i])), "%s[%zu]: %g vs %g", what, i,
                      a[i], b[i]);
}

START_TEST(test_matmul)
{
    align_threads_set(2);
    align__rng r;
    align__rng_init(&r, 1, 0);
    for (int layout = 0; layout < 2; layout++)
        for (int N = 1; N <= 7; N += 6) {
            int C = 13, OC = 9;
            float *x = randv(&r, N * C), *w = randv(&r, C * OC), *b = randv(&r, OC), *d = randv(&r, N * OC);
            float *o1 = randv(&r, N * OC), *o2 = malloc(N * OC * sizeof(float));
            memcpy(o2, o1, N * OC * sizeof(float));
            for (int beta = 0; beta < 2; beta++) {
                align__nn_matmul_forward(o1, x, w, b, N, C, OC, layout, (float)beta);
                align__nn_matmul_forward_ref(o2, x, w, b, N, C, OC, layout, (float)beta);
                close_all(o1, o2, N * OC, 1e-5f, "matmul forward");
            }
            float *di1 = calloc(N * C, 4), *di2 = calloc(N * C, 4), *dw1 = calloc(C * OC, 4),
                  *dw2 = calloc(C * OC, 4), *db1 = calloc(OC, 4), *db2 = calloc(OC, 4);
            for (int rep = 0; rep < 2; rep++) { /* weight grads accumulate */
                align__nn_matmul_backward(di1, dw1, db1, d, x, w, N, C, OC, layout);
                align__nn_matmul_backward_ref(di2, dw2, db2, d, x, w, N, C, OC, layout);
            }
            close_all(di1, di2, N * C, 1e-5f, "dinp");
            close_all(dw1, dw2, C * OC, 1e-5f, "dw");
            close_all(db1, db2, OC, 1e-5f, "dbias");
            free(x); free(w); free(b); free(d); free(o1); free(o2);
            free(di1); free(di2); free(dw1); free(dw2); free(db1); free(db2);
        }
}
END_TEST

START_TEST(test_layernorm)
{
    align_threads_set(2);
    align__rng r;
    align__rng_init(&r, 2, 0);
    int N = 9, C = 24;
    float *x = randv(&r, N * C), *w = randv(&r, C), *b = randv(&r, C), *d = randv(&r, N * C);
    float o1[9 * 24], o2[9 * 24], m1[9], m2[9], s1[9], s2[9];
    align__nn_layernorm_forward(o1, m1, s1, x, w, b, N, C);
    align__nn_layernorm_forward_ref(o2, m2, s2, x, w, b, N, C);
    close_all(o1, o2, N * C, 1e-5f, "ln out");
    close_all(s1, s2, N, 1e-5f, "ln rstd");
    float di1[9 * 24] = {0}, di2[9 * 24] = {0}, dw1[24] = {0}, dw2[24] = {0}, db1[24] = {0}, db2[24] = {0};
    align__nn_layernorm_backward(di1, dw1, db1, d, x, w, m1, s1, N, C);
    align__nn_layernorm_backward_ref(di2, dw2, db2, d, x, w, m2, s2, N, C);
    close_all(di1, di2, N * C, 1e-4f, "ln dinp");
    close_all(dw1, dw2, C, 1e-4f, "ln dw");
    close_all(db1, db2, C, 1e-5f, "ln db");
    free(x); free(w); free(b); free(d);
}
END_TEST

/* Head sizes 4 (below one 8-lane vector) and 69 (8 vectors and a tail of 5). */
START_TEST(test_attention)
{
    align_threads_set(2);
    align__rng r;
    align__rng_init(&r, 3, 0);
    static const int cfg[2][3] = {{7, 12, 3}, {9, 138, 2}}; /* T, C, NH */
    for (int ci = 0; ci < 2; ci++) {
        int B = 3, T = cfg[ci][0], C = cfg[ci][1], NH = cfg[ci][2];
        int32_t lens[3] = {T, 2, 5};
        float *qkv = randv(&r, B * T * 3 * C), *d = randv(&r, B * T * C);
        size_t na = (size_t)B * NH * T * T;
        float *o1 = calloc(B * T * C, 4), *o2 = calloc(B * T * C, 4), *a1 = calloc(na, 4), *a2 = calloc(na, 4);
        align__nn_attention_forward(o1, a1, qkv, lens, B, T, C, NH);
        align__nn_attention_forward_ref(o2, a2, qkv, lens, B, T, C, NH);
        close_all(o1, o2, B * T * C, 1e-5f, "att out");
        close_all(a1, a2, na, 1e-5f, "att probs");
        float *g1 = calloc(B * T * 3 * C, 4), *g2 = calloc(B * T * 3 * C, 4), *scr = calloc(256 * T, 4);
        align__nn_attention_backward(g1, scr, d, qkv, a1, lens, B, T, C, NH);
        align__nn_attention_backward_ref(g2, d, qkv, a2, lens, B, T, C, NH);
        close_all(g1, g2, B * T * 3 * C, 1e-4f, "dqkv");
        /* padding rows of sequence 1 are zero */
        for (int t = 2; t < T; t++)
            for (int i = 0; i < C; i++)
                ck_assert(o1[(T + t) * C + i] == 0.0f);
        free(qkv); free(d); free(o1); free(o2); free(a1); free(a2); free(g1); free(g2); free(scr);
    }
}
END_TEST

START_TEST(test_logsoftmax_gelu)
{
    align_threads_set(2);
    align__rng r;
    align__rng_init(&r, 4, 0);
    int N = 4, V = 10;
    float *x = randv(&r, N * V), *io = malloc(N * V * 4), lo[40], lp[4];
    int32_t tg[4] = {3, -1, -2, 9}, am[4];
    memcpy(io, x, N * V * 4);
    align__nn_logsoftmax_forward(lp, am, lo, io, tg, N, V);
    for (int i = 0; i < N; i++) {
        if (tg[i] == -2) {
            ck_assert(lp[i] == 0.0f && am[i] == -1 && lo[i * V] == 0.0f);
            continue;
        }
        double mx = -1e30, z = 0;
        int best = 0;
        for (int v = 0; v < V; v++)
            if (x[i * V + v] > mx) { mx = x[i * V + v]; best = v; }
        for (int v = 0; v < V; v++)
            z += exp(x[i * V + v] - mx);
        ck_assert_int_eq(am[i], best);
        ck_assert(lo[i * V + 2] == x[i * V + 2]);
        double want = tg[i] >= 0 ? x[i * V + tg[i]] - mx - log(z) : 0.0;
        ck_assert(fabs(lp[i] - want) < 1e-5);
    }
    float dl[4] = {0.5f, 1.0f, 1.0f, -2.0f};
    float p3 = io[3 * V + 9];
    align__nn_logsoftmax_backward(io, dl, tg, N, V);
    ck_assert(fabsf(io[3 * V + 9] - (-2.0f) * (1.0f - p3)) < 1e-6f);
    for (int v = 0; v < V; v++)
        ck_assert(io[1 * V + v] == 0.0f);
    /* GELU derivative against a central difference */
    float xs[5] = {-3.0f, -0.5f, 0.0f, 0.7f, 2.5f}, ys[5], g[5], one[5] = {1, 1, 1, 1, 1};
    align__nn_gelu_forward(ys, xs, 5);
    align__nn_gelu_backward(g, xs, one, 5);
    for (int i = 0; i < 5; i++) {
        double h = 1e-3, x0 = xs[i];
        double f1 = 0.5 * (x0 + h) * (1 + tanh(0.7978845608 * ((x0 + h) + 0.044715 * pow(x0 + h, 3))));
        double f0 = 0.5 * (x0 - h) * (1 + tanh(0.7978845608 * ((x0 - h) + 0.044715 * pow(x0 - h, 3))));
        ck_assert(fabs(g[i] - (f1 - f0) / (2 * h)) < 1e-3);
    }
    free(x); free(io);
}
END_TEST

/* GELU and its derivative on a grid over [-12, 12] against the formula in
 * double (the vectorised exp is ~2 ulp; tanh is computed through exp),
 * values exact at the far ends, and each element's bits independent of where
 * it falls in the 8-lane body or the scalar remainder (shifted arrays, 1 and
 * 2 threads). */
START_TEST(test_gelu_accuracy)
{
    enum { G = 24001 };
    float *x = malloc(G * 4), *y = malloc(G * 4), *g = malloc(G * 4), *one = malloc(G * 4);
    float *y2 = malloc(G * 4), *g2 = malloc(G * 4);
    for (int i = 0; i < G; i++) {
        x[i] = -12.0f + 24.0f * (float)i / (float)(G - 1);
        one[i] = 1.0f;
    }
    align_threads_set(2);
    align__nn_gelu_forward(y, x, G);
    align__nn_gelu_backward(g, x, one, G);
    double worst_y = 0, worst_g = 0;
    for (int i = 0; i < G; i++) {
        /* 0.5 (1 + tanh u) = 1 / (1 + exp(-2u)) and 1 - tanh^2 u = 4 s (1 - s): in double without the
         * cancellation of 1 + tanh u for very negative x */
        double xd = x[i], u = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd), e = exp(-2 * u);
        double sg = 1 / (1 + e), fy = xd * sg;
        double fg = sg + 2 * xd * sg * (e * sg) * 0.7978845608028654 * (1 + 3 * 0.044715 * xd * xd);
        double ey = fabs(y[i] - fy) / (fabs(fy) + 1e-30), eg = fabs(g[i] - fg);
        /* relative for the value (absolute 1e-9 far left, where float rounding of u dominates), absolute for the slope */
        if (fabs(fy) > 1e-30 && ey > worst_y)
            worst_y = ey;
        if (eg > worst_g)
            worst_g = eg;
        ck_assert_msg(fabs(y[i] - fy) <= 1e-6 * fabs(fy) + 1e-9, "gelu(%g) = %.9g vs %.9g", x[i], y[i], fy);
        ck_assert_msg(eg <= 1e-6, "gelu'(%g) = %.9g vs %.9g", x[i], g[i], fg);
    }
    ck_assert(y[G - 1] == 12.0f && g[G - 1] == 1.0f && fabsf(g[0]) < 1e-30f);
    ck_assert(!isnan(y[0]) && fabsf(y[0]) <= 1e-30f);
    for (int off = 1; off < 8; off++) {
        align_threads_set(off & 1 ? 1 : 2);
        align__nn_gelu_forward(y2, x + off, G - off);
        align__nn_gelu_backward(g2, x + off, one, G - off);
        ck_assert(memcmp(y2, y + off, (size_t)(G - off) * 4) == 0);
        ck_assert(memcmp(g2, g + off, (size_t)(G - off) * 4) == 0);
    }
    align_threads_set(2);
    free(x); free(y); free(g); free(one); free(y2); free(g2);
}
END_TEST

Suite *internal_nn_suite(void)
{
    Suite *s = suite_create("internal_nn");
    TCase *tc = test_tcase(s, "kernels", 60);
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_attention);
    tcase_add_test(tc, test_logsoftmax_gelu);
    tcase_add_test(tc, test_gelu_accuracy);
    return s;
}
