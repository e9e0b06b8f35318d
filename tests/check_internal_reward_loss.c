/* check_internal_reward_loss.c — the reward-model losses (lib/train/reward_loss.h):
 * hand-computed values, gradients against central finite differences, ties,
 * margins, centering, and the per-prompt averaging. */
#include "train/reward_loss.h"

#include <math.h>

#include "testutil.h"

static double ranking_loss(const float *r, const int32_t *rank, const float *margin, int32_t k, float c)
{
    double L;
    float g[16];
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, NULL, r, rank, margin, k, c), ALIGN_OK);
    return L;
}

/* dL/dr_i against (L(r + h e_i) − L(r − h e_i)) / 2h, in double via float
 * inputs: h = 1e-2 keeps float rounding of r small against the step. */
static void check_grad(const float *r0, const int32_t *rank, const float *margin, int32_t k, float c)
{
    float r[16], g[16];
    double L;
    int32_t P;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r0, rank, margin, k, c), ALIGN_OK);
    for (int32_t i = 0; i < k; i++) {
        const float h = 1e-2f;
        memcpy(r, r0, sizeof(float) * (size_t)k);
        r[i] = r0[i] + h;
        double lp = ranking_loss(r, rank, margin, k, c);
        r[i] = r0[i] - h;
        double lm = ranking_loss(r, rank, margin, k, c);
        double fd = (lp - lm) / ((double)(r0[i] + h) - (double)(r0[i] - h));
        ck_assert_msg(fabs(fd - g[i]) < 2e-5 + 1e-3 * fabs(fd), "k=%d i=%d analytic %g fd %g", k, i,
                      (double)g[i], fd);
    }
}

START_TEST(test_hand_values)
{
    /* K = 2, r = (1, 0), 0 best: L = −log σ(1) = log(1 + e^−1) */
    float r[2] = {1.0f, 0.0f}, g[16];
    int32_t rank[2] = {0, 1}, P;
    double L;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 2, 0.0f), 0);
    ck_assert_int_eq(P, 1);
    ck_assert(fabs(L - log(1.0 + exp(-1.0))) < 1e-12);
    double s = 1.0 / (1.0 + exp(1.0)); /* σ(−1) */
    ck_assert(fabs(g[0] + s) < 1e-7 && fabs(g[1] - s) < 1e-7);
    /* equal scores: log 2, gradients ∓½ */
    r[0] = r[1] = 3.0f;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 2, 0.0f), 0);
    ck_assert(fabs(L - log(2.0)) < 1e-12);
    ck_assert(g[0] == -0.5f && g[1] == 0.5f);
    /* the reversed ranking: −log σ(−1) = log(1 + e) */
    r[0] = 1.0f;
    r[1] = 0.0f;
    rank[0] = 1;
    rank[1] = 0;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 2, 0.0f), 0);
    ck_assert(fabs(L - log(1.0 + exp(1.0))) < 1e-12);
    /* margin 1 on the pair: −log σ(1 − 1) = log 2 */
    rank[0] = 0;
    rank[1] = 1;
    float m[4] = {0, 1.0f, 0, 0};
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, m, 2, 0.0f), 0);
    ck_assert(fabs(L - log(2.0)) < 1e-12);
    /* centering c = 0.5 on r = (1, 0): + 0.5 · (1 + 0)/2 */
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 2, 0.5f), 0);
    ck_assert(fabs(L - (log(1.0 + exp(-1.0)) + 0.25)) < 1e-12);
    ck_assert(fabs(g[0] - (-s + 0.5)) < 1e-7 && fabs(g[1] - s) < 1e-7);
    /* K = 3 strict, r = (2, 1, 0): three pairs with margins 1, 2, 1 */
    float r3[3] = {2.0f, 1.0f, 0.0f};
    int32_t k3[3] = {0, 1, 2};
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r3, k3, NULL, 3, 0.0f), 0);
    ck_assert_int_eq(P, 3);
    double want = (2 * log(1.0 + exp(-1.0)) + log(1.0 + exp(-2.0))) / 3.0;
    ck_assert(fabs(L - want) < 1e-12);
    /* huge differences stay finite and exact: −log σ(−200) = 200 */
    float rb[2] = {-100.0f, 100.0f};
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, rb, rank, NULL, 2, 0.0f), 0);
    ck_assert(fabs(L - 200.0) < 1e-9);
    ck_assert(g[0] == -1.0f && g[1] == 1.0f);
    rb[0] = 100.0f;
    rb[1] = -100.0f;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, rb, rank, NULL, 2, 0.0f), 0);
    ck_assert(L > 0 && L < 1e-80);
}
END_TEST

START_TEST(test_ties_and_averaging)
{
    /* ties give no pair: ranks (0, 1, 1, 2) -> pairs 0>1, 0>2, 0>3, 1>3, 2>3 = 5 */
    float r[4] = {0.3f, -0.2f, 0.7f, -1.1f}, g[4];
    int32_t rank[4] = {0, 1, 1, 2}, P;
    double L;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 4, 0.0f), 0);
    ck_assert_int_eq(P, 5);
    double sum = 0;
    int pairs[5][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 3}, {2, 3}};
    for (int i = 0; i < 5; i++)
        sum += log(1.0 + exp(-((double)r[pairs[i][0]] - r[pairs[i][1]])));
    ck_assert(fabs(L - sum / 5.0) < 1e-12);
    /* all tied: no pair, zero loss and gradient */
    int32_t tied[4] = {0, 0, 0, 0};
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, tied, NULL, 4, 0.0f), 0);
    ck_assert_int_eq(P, 0);
    ck_assert(L == 0.0 && g[0] == 0.0f && g[3] == 0.0f);
    /* per-prompt averaging: K = 9 with every pair at the same margin has the
     * same loss as one pair at that margin (not 36 times as much) */
    float r9[9], g9[9];
    int32_t k9[9];
    for (int i = 0; i < 9; i++) {
        r9[i] = (float)(8 - i); /* neighbours differ by 1, but pairs by 1..8 */
        k9[i] = i;
    }
    float m9[81];
    for (int w = 0; w < 9; w++)
        for (int l = 0; l < 9; l++)
            m9[w * 9 + l] = r9[w] - r9[l] - 0.5f; /* every pair's x = 0.5 */
    ck_assert_int_eq(align__rm_loss_ranking(&L, g9, &P, r9, k9, m9, 9, 0.0f), 0);
    ck_assert_int_eq(P, 36);
    ck_assert(fabs(L - log(1.0 + exp(-0.5))) < 1e-9);
    /* bad input */
    rank[0] = 4;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 4, 0.0f), ALIGN_EINVAL);
    rank[0] = 0;
    r[1] = NAN;
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 4, 0.0f), ALIGN_ENONFINITE);
    ck_assert_int_eq(align__rm_loss_ranking(&L, g, &P, r, rank, NULL, 0, 0.0f), ALIGN_EINVAL);
    ck_assert_int_eq(align__rm_loss_ranking(NULL, g, &P, r, rank, NULL, 4, 0.0f), ALIGN_EINVAL);
}
END_TEST

START_TEST(test_gradients_finite_differences)
{
    align__rng rng;
    align__rng_init(&rng, 99, 0);
    int32_t ks[3] = {2, 4, 9};
    for (int t = 0; t < 3; t++) {
        int32_t k = ks[t];
        for (int trial = 0; trial < 4; trial++) {
            float r[16], m[256];
            int32_t rank[16];
            for (int i = 0; i < k; i++) {
                r[i] = 2.0f * align__rng_normal(&rng);
                /* trials 0, 1: a permutation (5 is prime to 2, 4, 9); 2, 3: ties */
                rank[i] = trial < 2 ? (i * 5 + trial) % k : i % ((k + 1) / 2);
            }
            for (int i = 0; i < k * k; i++)
                m[i] = 0.5f * align__rng_uniform(&rng);
            check_grad(r, rank, NULL, k, 0.0f);
            check_grad(r, rank, m, k, 0.0f);
            check_grad(r, rank, trial & 1 ? m : NULL, k, 0.01f);
        }
    }
}
END_TEST

START_TEST(test_label_and_score)
{
    double L;
    float g;
    /* good, r = 0: log 2, gradient −½ */
    ck_assert_int_eq(align__rm_loss_label(&L, &g, 0.0f, 1, 1.0f), 0);
    ck_assert(fabs(L - log(2.0)) < 1e-12 && g == -0.5f);
    /* bad, r = 2, weight 3: 3·log(1 + e^2), gradient 3·σ(2) */
    ck_assert_int_eq(align__rm_loss_label(&L, &g, 2.0f, 0, 3.0f), 0);
    ck_assert(fabs(L - 3.0 * log(1.0 + exp(2.0))) < 1e-12);
    ck_assert(fabs(g - 3.0 / (1.0 + exp(-2.0))) < 1e-6);
    /* finite differences */
    for (int good = 0; good < 2; good++)
        for (float r = -3.0f; r <= 3.0f; r += 1.5f) {
            double lp, lm;
            float gd;
            ck_assert_int_eq(align__rm_loss_label(&L, &g, r, good, 0.7f), 0);
            align__rm_loss_label(&lp, &gd, r + 1e-2f, good, 0.7f);
            align__rm_loss_label(&lm, &gd, r - 1e-2f, good, 0.7f);
            double fd = (lp - lm) / ((double)(r + 1e-2f) - (double)(r - 1e-2f));
            ck_assert_msg(fabs(fd - g) < 1e-5, "label r=%g analytic %g fd %g", (double)r, (double)g, fd);
        }
    /* regression: ½·2·(1.5 − (−0.5))² = 4, gradient 2·2 = 4 */
    ck_assert_int_eq(align__rm_loss_score(&L, &g, 1.5f, -0.5f, 2.0f), 0);
    ck_assert(L == 4.0 && g == 4.0f);
    ck_assert_int_eq(align__rm_loss_score(&L, &g, NAN, 0.0f, 1.0f), ALIGN_ENONFINITE);
    ck_assert_int_eq(align__rm_loss_label(&L, &g, INFINITY, 1, 1.0f), ALIGN_ENONFINITE);
    /* a huge score does not overflow */
    ck_assert_int_eq(align__rm_loss_label(&L, &g, -1e30f, 1, 1.0f), 0);
    ck_assert(isfinite(L) && L > 9e29 && g == -1.0f);
}
END_TEST

Suite *internal_reward_loss_suite(void)
{
    Suite *s = suite_create("reward_loss");
    TCase *tc = test_tcase(s, "reward_loss", 60);
    tcase_add_test(tc, test_hand_values);
    tcase_add_test(tc, test_ties_and_averaging);
    tcase_add_test(tc, test_gradients_finite_differences);
    tcase_add_test(tc, test_label_and_score);
    return s;
}
