/* check_internal_pref_loss.c — the preference objectives (lib/train/pref_loss.c):
 * values against PyTorch (a committed table) and against hand computation,
 * gradients against finite differences (in double, and through a real tiny
 * model's align_model_forward / align_model_backward), limits at extreme
 * margins, and bad input. */
#include "model/model_impl.h"
#include "train/pref_loss.h"
#include "testutil.h"

#include <math.h>

/* ---- PyTorch reference values ------------------------------------------------
 * Produced once by `/usr/bin/python3 tests/pref_loss_torch.py` (python3-torch
 * 1.13.1 from Debian 12, float64 autograd: an independent implementation of
 * every loss written with torch.nn.functional.logsigmoid / relu / log1p, its
 * gradient taken by autograd w.r.t. the per-sequence sums) and pasted here.
 * Re-run the script after changing a formula on purpose. */
struct torch_case {
    int32_t loss;
    double beta, eps, gamma, alpha;
    int lnorm;
    double pi_w, pi_l, ref_w, ref_l;
    int32_t n_w, n_l;
    double want_loss, want_dw, want_dl;
};
static const struct torch_case TORCH_CASES[] = {
    {ALIGN__PREF_SIGMOID, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 0.60947043066304685, -0.045636131276292118, 0.045636131276292118},
    {ALIGN__PREF_SIGMOID, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 0.9432489459974549, -0.061063923394922198, 0.061063923394922198},
    {ALIGN__PREF_SIGMOID, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 0.82593941987884356, -0.056217650088579818, 0.056217650088579818},
    {ALIGN__PREF_SIGMOID, 0.5, 0.10000000000000001, 0.5, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 0.43594458100505573, -0.09710748608149436, 0.09710748608149436},
    {ALIGN__PREF_SIGMOID, 0.5, 0.10000000000000001, 0.5, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 2.125206558916747, -0.40232526755044523, 0.40232526755044523},
    {ALIGN__PREF_SIGMOID, 0.5, 0.10000000000000001, 0.5, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 1.376929081345373, -0.3386499305873456, 0.3386499305873456},
    {ALIGN__PREF_ROBUST, 0.29999999999999999, 0.20000000000000001, 0.5, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 0.28971175467299348, -0.21150514351139016, 0.21150514351139016},
    {ALIGN__PREF_ROBUST, 0.29999999999999999, 0.20000000000000001, 0.5, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 2.0305085713638755, -0.33823888845971584, 0.33823888845971584},
    {ALIGN__PREF_ROBUST, 0.29999999999999999, 0.20000000000000001, 0.5, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 1.3868710061149001, -0.30375360975261789, 0.30375360975261789},
    {ALIGN__PREF_IPO, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 22.291887755102042, -1.8885714285714286, 1.3489795918367347},
    {ALIGN__PREF_IPO, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 29.453233506944443, -0.67838541666666663, 1.2060185185185184},
    {ALIGN__PREF_IPO, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 36, -6, 4},
    {ALIGN__PREF_HINGE, 0.5, 0, 0.5, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 0.125, -0.5, 0.5},
    {ALIGN__PREF_HINGE, 0.5, 0, 0.5, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 3.25, -0.5, 0.5},
    {ALIGN__PREF_HINGE, 0.5, 0, 0.5, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 2.25, -0.5, 0.5},
    {ALIGN__PREF_SIMPO, 2, 0, 1, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 1.8196858118269454, -0.33516933379739444, 0.2394066669981389},
    {ALIGN__PREF_SIMPO, 2, 0, 1, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 1.3956830930973825, -0.094042024857616036, 0.16718582196909518},
    {ALIGN__PREF_SIMPO, 2, 0, 1, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 2.1269280110429727, -0.88079707797788243, 0.58719805198525499},
    {ALIGN__PREF_ORPO, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 2.5886857663903973, -0.21281277238920118, 0.0094731277376349909},
    {ALIGN__PREF_ORPO, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 2.5723945990221844, -0.066007709580403362, 0.006267949067408512},
    {ALIGN__PREF_ORPO, 0.10000000000000001, 0, 0.5, 0, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 1.6107328174573632, -0.54309340530516048, 0.03530757586297565},
    {ALIGN__PREF_SIGMOID, 0.10000000000000001, 0, 0.5, 1, 0, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 3.109470430663047, -0.24563613127629214, 0.045636131276292118},
    {ALIGN__PREF_SIGMOID, 0.10000000000000001, 0, 0.5, 1, 0, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 3.4432489459974551, -0.1235639233949222, 0.061063923394922198},
    {ALIGN__PREF_SIGMOID, 0.10000000000000001, 0, 0.5, 1, 0, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 2.3259394198788437, -0.55621765008857982, 0.056217650088579818},
    {ALIGN__PREF_SIGMOID, 1, 0, 0.5, 0, 1, /* rec */ -12.5, -15.25, -13, -14, 5, 7,
     /* loss, dS_w, dS_l */ 0.56353051770935303, -0.086160808823827928, 0.061543434874162806},
    {ALIGN__PREF_SIGMOID, 1, 0, 0.5, 0, 1, /* rec */ -40, -22, -38.5, -25, 16, 9,
     /* loss, dS_w, dS_l */ 0.9293176669454204, -0.037823561295079342, 0.067241886746807714},
    {ALIGN__PREF_SIGMOID, 1, 0, 0.5, 0, 1, /* rec */ -3, -3, -2, -4.5, 2, 3,
     /* loss, dS_w, dS_l */ 1.3132616875182228, -0.36552928931500245, 0.24368619287666829},
};
/* Plackett-Luce, beta 0.5: pi, ref, rank, loss, d_pi */
static const double TORCH_PL_PI[] = {-10, -12, -9.5, -14, -11};
static const double TORCH_PL_REF[] = {-10.5, -11, -10, -13, -11.5};
static const int32_t TORCH_PL_RANK[] = {1, 0, 2, 2, 3};
static const double TORCH_PL_LOSS = 5.9275692842225922;
static const double TORCH_PL_D[] = {-0.22925469791728106, -0.44012693126379537, 0.17521607074416184, -0.18105051230724717, 0.6752160707441619};
/* KTO, beta 0.1, desirable_weight 1, undesirable_weight 1.33 */
static const double TORCH_KTO_PI[] = {-20, -31, -12, -18.5, -25};
static const double TORCH_KTO_REF[] = {-21, -29.5, -12.5, -19, -26.5};
static const uint8_t TORCH_KTO_GOOD[] = {1, 0, 1, 0, 1};
static const double TORCH_KTO_PI_KL[] = {-24, -30, -15, -19, -22};
static const double TORCH_KTO_REF_KL[] = {-25.5, -30.5, -14, -20, -23};
static const double TORCH_KTO_Z0 = 0.59999999999999998;
static const double TORCH_KTO_LOSS = 0.54542439909386253;
static const double TORCH_KTO_D[] = {-0.0049980005332124705, 0.0065772192770526487, -0.004999875002083304, 0.0066498337527707944, -0.0049898886530816422};

static align__pref_params params(int32_t loss, double beta)
{
    align__pref_params p;
    align__pref_default_params(&p);
    p.loss = loss;
    p.beta = beta;
    return p;
}

static int close_rel(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= abs_tol + rel * fmax(fabs(a), fabs(b));
}

START_TEST(test_against_torch)
{
    size_t n = sizeof TORCH_CASES / sizeof TORCH_CASES[0];
    ck_assert_int_ge((int)n, 27);
    for (size_t i = 0; i < n; i++) {
        const struct torch_case *c = &TORCH_CASES[i];
        align__pref_params p = params(c->loss, c->beta);
        p.label_smoothing = c->eps;
        p.simpo_gamma = c->gamma;
        p.sft_alpha = c->alpha;
        p.flags = c->lnorm ? ALIGN__PREF_LENGTH_NORM : 0;
        align__pref_out o;
        ck_assert_int_eq(align__pref_pair(NULL, &p, c->pi_w, c->pi_l, c->ref_w, c->ref_l, c->n_w, c->n_l, &o), 0);
        ck_assert_msg(close_rel(o.loss, c->want_loss, 1e-12, 1e-14), "case %zu loss %.17g vs torch %.17g", i, o.loss,
                      c->want_loss);
        ck_assert_msg(close_rel(o.d_chosen, c->want_dw, 1e-12, 1e-14), "case %zu dS_w %.17g vs torch %.17g", i,
                      o.d_chosen, c->want_dw);
        ck_assert_msg(close_rel(o.d_rejected, c->want_dl, 1e-12, 1e-14), "case %zu dS_l %.17g vs torch %.17g", i,
                      o.d_rejected, c->want_dl);
    }
    /* Plackett-Luce with a tie */
    align__pref_params p = params(ALIGN__PREF_SIGMOID, 0.5);
    int32_t len[5] = {3, 3, 3, 3, 3};
    double d[5];
    align__rank_out ro;
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_PLACKETT_LUCE, 5, TORCH_PL_RANK, TORCH_PL_PI,
                                         TORCH_PL_REF, len, d, &ro), 0);
    ck_assert_msg(close_rel(ro.loss, TORCH_PL_LOSS, 1e-12, 1e-14), "PL loss %.17g vs %.17g", ro.loss, TORCH_PL_LOSS);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(close_rel(d[i], TORCH_PL_D[i], 1e-12, 1e-14), "PL d[%d] %.17g vs %.17g", i, d[i], TORCH_PL_D[i]);
    /* KTO: plan, estimate, loss */
    align__kto_params kp;
    align__kto_default_params(&kp);
    kp.undesirable_weight = 1.33;
    double z0, dk[5];
    ck_assert_int_eq(align__kto_kl_estimate(NULL, 5, TORCH_KTO_PI_KL, TORCH_KTO_REF_KL, &z0), 0);
    ck_assert(close_rel(z0, TORCH_KTO_Z0, 1e-14, 1e-15));
    align__kto_out ko;
    ck_assert_int_eq(align__kto_loss(NULL, &kp, 5, TORCH_KTO_PI, TORCH_KTO_REF, TORCH_KTO_GOOD, z0, dk, &ko), 0);
    ck_assert_msg(close_rel(ko.loss, TORCH_KTO_LOSS, 1e-12, 1e-14), "KTO loss %.17g vs %.17g", ko.loss, TORCH_KTO_LOSS);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(close_rel(dk[i], TORCH_KTO_D[i], 1e-12, 1e-14), "KTO d[%d] %.17g vs %.17g", i, dk[i],
                      TORCH_KTO_D[i]);
}
END_TEST

/* Values worked out by hand (the arithmetic is in the comments). */
START_TEST(test_hand_values)
{
    align__pref_out o;
    /* DPO, beta 0.1: h = (-10+11) - (-12+11) = 2, loss = log(1 + e^-0.2) = 0.5981388693,
     * dS_w = -beta*sigma(-0.2) = -0.1*0.4501660027 */
    align__pref_params p = params(ALIGN__PREF_SIGMOID, 0.1);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -10, -12, -11, -11, 4, 4, &o), 0);
    ck_assert(fabs(o.loss - 0.5981388693) < 1e-9);
    ck_assert(fabs(o.d_chosen + 0.04501660027) < 1e-10);
    ck_assert(fabs(o.d_rejected - 0.04501660027) < 1e-10);
    ck_assert(fabs(o.reward_chosen - 0.1) < 1e-12 && fabs(o.reward_rejected + 0.1) < 1e-12);
    ck_assert(fabs(o.margin - 0.2) < 1e-12 && o.accuracy == 1.0);
    ck_assert(o.logp_chosen == -10 && o.logp_rejected == -12);
    /* + RPO NLL, alpha 2: loss += 2 * 10/4 = 5, dS_w += -2/4 */
    p.sft_alpha = 2;
    ck_assert_int_eq(align__pref_pair(NULL, &p, -10, -12, -11, -11, 4, 4, &o), 0);
    ck_assert(fabs(o.loss - 5.5981388693) < 1e-9);
    ck_assert(fabs(o.d_chosen + 0.54501660027) < 1e-10);
    ck_assert(fabs(o.nll - 2.5) < 1e-12);
    /* IPO, tau 1, lengths 2 and 4: means w -2 (ref -2.5), l -2 (ref -1.5): h = 1,
     * loss = (1 - 1/2)^2 = 0.25; dL/dh = 1, dS_w = 1/2, dS_l = -1/4 */
    p = params(ALIGN__PREF_IPO, 1.0);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -4, -8, -5, -6, 2, 4, &o), 0);
    ck_assert(fabs(o.loss - 0.25) < 1e-12);
    ck_assert(fabs(o.d_chosen - 0.5) < 1e-12 && fabs(o.d_rejected + 0.25) < 1e-12);
    ck_assert(fabs(o.logp_chosen + 2) < 1e-12 && fabs(o.reward_chosen - 0.5) < 1e-12);
    /* hinge, beta 1: h = 0.5 -> loss 0.5, grads -1/+1; h = 2 -> 0, no gradient */
    p = params(ALIGN__PREF_HINGE, 1.0);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -10, -10.5, -10, -10, 3, 3, &o), 0);
    ck_assert(fabs(o.loss - 0.5) < 1e-12 && o.d_chosen == -1.0 && o.d_rejected == 1.0);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -10, -12, -10, -10, 3, 3, &o), 0);
    ck_assert(o.loss == 0.0 && o.d_chosen == 0.0 && o.d_rejected == 0.0);
    /* SimPO, beta 2, gamma 1: means -1 and -2, z = 2*1 - 1 = 1, loss = log(1+e^-1) = 0.3132616875,
     * dS_w = -2*sigma(-1)/3 = -0.1792942807; reward = beta * mean */
    p = params(ALIGN__PREF_SIMPO, 2.0);
    p.simpo_gamma = 1.0;
    ck_assert_int_eq(align__pref_pair(NULL, &p, -3, -6, NAN, NAN, 3, 3, &o), 0); /* reference ignored */
    ck_assert(fabs(o.loss - 0.3132616875) < 1e-9);
    ck_assert(fabs(o.d_chosen + 0.1792942807) < 1e-9 && fabs(o.d_rejected - 0.1792942807) < 1e-9);
    ck_assert(fabs(o.reward_chosen + 2) < 1e-12 && fabs(o.reward_rejected + 4) < 1e-12);
    /* ORPO, lambda 0.1, one token each: p_w = 0.5 (odds 1, log odds 0), p_l = 0.2 (odds 1/4):
     * z = ln 4, L_or = log(1 + 1/4) = 0.2231435513, loss = ln 2 + 0.1*L_or = 0.7154615357;
     * sigma(-z) = 0.2, d log odds / d ell = 1/(1-p): dS_w = -1 - 0.1*0.2*2 = -1.04,
     * dS_l = 0.1*0.2*1.25 = 0.025 */
    p = params(ALIGN__PREF_ORPO, 0.1);
    ck_assert_int_eq(align__pref_pair(NULL, &p, log(0.5), log(0.2), 0, 0, 1, 1, &o), 0);
    ck_assert(fabs(o.loss - 0.7154615357) < 1e-9);
    ck_assert(fabs(o.log_odds - log(4.0)) < 1e-12);
    ck_assert(fabs(o.d_chosen + 1.04) < 1e-12 && fabs(o.d_rejected - 0.025) < 1e-12);
    /* cDPO eps 0.25 at h = 0: loss = log 2 whatever eps; dL/dh = beta*(-(0.75)/2 + 0.25/2) = -beta/4 */
    p = params(ALIGN__PREF_SIGMOID, 0.4);
    p.label_smoothing = 0.25;
    ck_assert_int_eq(align__pref_pair(NULL, &p, -5, -6, -5, -6, 2, 2, &o), 0);
    ck_assert(fabs(o.loss - log(2.0)) < 1e-12 && fabs(o.d_chosen + 0.1) < 1e-12);
    /* robust eps 0.25 at h = 0: (0.75 - 0.25) log 2 / 0.5 = log 2; dL/dh = beta*(-0.375-0.125)/0.5 = -beta */
    p.loss = ALIGN__PREF_ROBUST;
    ck_assert_int_eq(align__pref_pair(NULL, &p, -5, -6, -5, -6, 2, 2, &o), 0);
    ck_assert(fabs(o.loss - log(2.0)) < 1e-12 && fabs(o.d_chosen + 0.4) < 1e-12);
    /* Plackett-Luce, 3 distinct ranks, equal u: loss = log 3 + log 2 + 0;
     * d/ds = (-2/3, -1/6, 5/6), times beta */
    p = params(ALIGN__PREF_SIGMOID, 0.5);
    double pi[3] = {-7, -7, -7}, ref[3] = {-7, -7, -7}, d[3];
    int32_t rank[3] = {2, 0, 1}, len[3] = {1, 1, 1};
    align__rank_out ro;
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_PLACKETT_LUCE, 3, rank, pi, ref, len, d, &ro), 0);
    ck_assert(fabs(ro.loss - log(6.0)) < 1e-12);
    ck_assert(fabs(d[1] + 0.5 * 2.0 / 3) < 1e-12 && fabs(d[2] + 0.5 / 6) < 1e-12 && fabs(d[0] - 0.5 * 5.0 / 6) < 1e-12);
    ck_assert_int_eq(ro.n_pairs, 3);
    ck_assert(ro.accuracy == 0.0); /* equal rewards agree with no strict order */
    /* KTO, beta 1, z0 = max(0, -0.5) = 0; desirable r = 0: loss = 1 - 1/2, d = -1/4;
     * undesirable r = 0 too: same loss, d = +1/4; batch mean halves the gradients */
    align__kto_params kp;
    align__kto_default_params(&kp);
    kp.beta = 1;
    double kpi[2] = {-3, -4}, kref[2] = {-3, -4}, kd[2], z0;
    uint8_t good[2] = {1, 0};
    double klp[2] = {-5, -6}, klr[2] = {-4.5, -5.5};
    ck_assert_int_eq(align__kto_kl_estimate(NULL, 2, klp, klr, &z0), 0);
    ck_assert(z0 == 0.0);
    align__kto_out ko;
    ck_assert_int_eq(align__kto_loss(NULL, &kp, 2, kpi, kref, good, z0, kd, &ko), 0);
    ck_assert(fabs(ko.loss - 0.5) < 1e-12 && fabs(kd[0] + 0.125) < 1e-12 && fabs(kd[1] - 0.125) < 1e-12);
    ck_assert(ko.n_chosen == 1 && ko.n_rejected == 1 && ko.logp_chosen == -3 && ko.logp_rejected == -4);
    /* KL plan: the one-place rotation of the completions */
    int32_t plan[4];
    ck_assert_int_eq(align__kto_kl_plan(NULL, 4, plan), 0);
    ck_assert(plan[0] == 3 && plan[1] == 0 && plan[2] == 1 && plan[3] == 2);
    ck_assert_int_eq(align__kto_kl_plan(NULL, 1, plan), 0);
    ck_assert_int_eq(plan[0], 0);
}
END_TEST

/* ---- finite differences in double ------------------------------------------------ */

static double pair_loss_at(const align__pref_params *p, const double *x, const int32_t *n)
{
    align__pref_out o;
    ck_assert_int_eq(align__pref_pair(NULL, p, x[0], x[1], x[2], x[3], n[0], n[1], &o), 0);
    return o.loss;
}

START_TEST(test_pair_gradients_fd)
{
    align__rng r;
    align__rng_init(&r, 11, 0);
    int checked = 0;
    for (int32_t loss = 0; loss < ALIGN__PREF_N_LOSSES; loss++)
        for (int variant = 0; variant < 3; variant++)
            for (int rep = 0; rep < 20; rep++) {
                align__pref_params p = params(loss, 0.05 + 0.6 * align__rng_uniform(&r));
                if (variant == 1 && (loss == ALIGN__PREF_SIGMOID || loss == ALIGN__PREF_ROBUST ||
                                     loss == ALIGN__PREF_SIMPO))
                    p.label_smoothing = 0.4 * align__rng_uniform(&r);
                if (variant == 2)
                    p.sft_alpha = 0.5 + align__rng_uniform(&r);
                if (variant == 1 && loss == ALIGN__PREF_HINGE)
                    p.flags = ALIGN__PREF_LENGTH_NORM;
                int32_t n[2] = {1 + (int32_t)align__rng_below(&r, 20), 1 + (int32_t)align__rng_below(&r, 20)};
                double x[4];
                for (int i = 0; i < 4; i++) /* mean log-prob per token in (-3, -0.05) */
                    x[i] = -(0.05 + 2.95 * align__rng_uniform(&r)) * n[i % 2];
                align__pref_out o;
                ck_assert_int_eq(align__pref_pair(NULL, &p, x[0], x[1], x[2], x[3], n[0], n[1], &o), 0);
                if (loss == ALIGN__PREF_HINGE && fabs(1 - o.margin) < 1e-3)
                    continue; /* the kink */
                double ana[2] = {o.d_chosen, o.d_rejected};
                for (int k = 0; k < 2; k++) {
                    const double h = 1e-5;
                    double xp[4], xm[4];
                    memcpy(xp, x, sizeof x);
                    memcpy(xm, x, sizeof x);
                    xp[k] += h;
                    xm[k] -= h;
                    double num = (pair_loss_at(&p, xp, n) - pair_loss_at(&p, xm, n)) / (2 * h);
                    ck_assert_msg(close_rel(num, ana[k], 1e-6, 1e-8), "loss %d variant %d: d%d analytic %.12g numeric %.12g",
                                  (int)loss, variant, k, ana[k], num);
                    checked++;
                }
            }
    ck_assert_int_gt(checked, 600);
}
END_TEST

static double rank_loss_at(const align__pref_params *p, int mode, int k, const int32_t *rank, const double *pi,
                           const double *ref, const int32_t *len)
{
    align__rank_out o;
    ck_assert_int_eq(align__pref_ranking(NULL, p, mode, k, rank, pi, ref, len, NULL, &o), 0);
    return o.loss;
}

START_TEST(test_ranking_gradients_fd)
{
    align__rng r;
    align__rng_init(&r, 12, 0);
    enum { K = 6 };
    for (int mode = 0; mode < 3; mode++)
        for (int32_t loss = 0; loss < ALIGN__PREF_N_LOSSES; loss++) {
            if (loss == ALIGN__PREF_HINGE)
                continue; /* piecewise linear: covered by the pair test away from its kink */
            for (int rep = 0; rep < 10; rep++) {
                align__pref_params p = params(loss, 0.1 + 0.5 * align__rng_uniform(&r));
                if (rep & 1)
                    p.flags = ALIGN__PREF_LENGTH_NORM;
                double pi[K], ref[K], d[K];
                int32_t rank[K], len[K];
                for (int i = 0; i < K; i++) {
                    len[i] = 1 + (int32_t)align__rng_below(&r, 12);
                    pi[i] = -(0.05 + 2.0 * align__rng_uniform(&r)) * len[i];
                    ref[i] = -(0.05 + 2.0 * align__rng_uniform(&r)) * len[i];
                    rank[i] = (int32_t)align__rng_below(&r, 4); /* ties likely */
                }
                align__rank_out o;
                ck_assert_int_eq(align__pref_ranking(NULL, &p, mode, K, rank, pi, ref, len, d, &o), 0);
                for (int i = 0; i < K; i++) {
                    const double h = 1e-5;
                    double sv = pi[i];
                    pi[i] = sv + h;
                    double lp = rank_loss_at(&p, mode, K, rank, pi, ref, len);
                    pi[i] = sv - h;
                    double lm = rank_loss_at(&p, mode, K, rank, pi, ref, len);
                    pi[i] = sv;
                    double num = (lp - lm) / (2 * h);
                    ck_assert_msg(close_rel(num, d[i], 1e-6, 1e-8), "mode %d loss %d: d[%d] analytic %.12g numeric %.12g",
                                  mode, (int)loss, i, d[i], num);
                }
            }
        }
}
END_TEST

/* K = 2 reduces every ranking mode to the pair loss; all-pairs is the mean
 * of the pairs; a tie-only ranking has no pairs. */
START_TEST(test_ranking_consistency)
{
    align__pref_params p = params(ALIGN__PREF_SIGMOID, 0.3);
    double pi[2] = {-8, -9.5}, ref[2] = {-8.2, -9}, d[2];
    int32_t rank[2] = {0, 1}, len[2] = {4, 5};
    align__pref_out po;
    ck_assert_int_eq(align__pref_pair(NULL, &p, pi[0], pi[1], ref[0], ref[1], len[0], len[1], &po), 0);
    for (int mode = 0; mode < 3; mode++) {
        align__rank_out ro;
        ck_assert_int_eq(align__pref_ranking(NULL, &p, mode, 2, rank, pi, ref, len, d, &ro), 0);
        ck_assert_msg(fabs(ro.loss - po.loss) < 1e-13, "mode %d", mode);
        ck_assert(fabs(d[0] - po.d_chosen) < 1e-13 && fabs(d[1] - po.d_rejected) < 1e-13);
        ck_assert_int_eq(ro.n_pairs, 1);
    }
    /* reversed ranks: the PL loss is the pair loss of the swapped pair */
    int32_t rev[2] = {1, 0};
    align__rank_out ro;
    ck_assert_int_eq(align__pref_pair(NULL, &p, pi[1], pi[0], ref[1], ref[0], len[1], len[0], &po), 0);
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_PLACKETT_LUCE, 2, rev, pi, ref, len, d, &ro), 0);
    ck_assert(fabs(ro.loss - po.loss) < 1e-13);
    /* K = 4, ranks {0, 1, 1, 2}: all pairs = mean of 5 strict pairs; best-vs-rest = mean of 3 */
    double pi4[4] = {-5, -6, -7, -4}, ref4[4] = {-5.5, -6, -6.5, -5}, d4[4];
    int32_t rank4[4] = {0, 1, 1, 2}, len4[4] = {3, 3, 3, 3};
    double all = 0, best = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            if (rank4[i] < rank4[j]) {
                ck_assert_int_eq(align__pref_pair(NULL, &p, pi4[i], pi4[j], ref4[i], ref4[j], 3, 3, &po), 0);
                all += po.loss / 5;
                if (i == 0)
                    best += po.loss / 3;
            }
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_ALL_PAIRS, 4, rank4, pi4, ref4, len4, d4, &ro), 0);
    ck_assert(fabs(ro.loss - all) < 1e-13 && ro.n_pairs == 5);
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_BEST_VS_REST, 4, rank4, pi4, ref4, len4, d4, &ro), 0);
    ck_assert(fabs(ro.loss - best) < 1e-13 && ro.n_pairs == 3);
    /* all tied: no pair, loss 0, zero gradient (pair modes); PL pushes towards equal rewards */
    int32_t tied[4] = {1, 1, 1, 1};
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_ALL_PAIRS, 4, tied, pi4, ref4, len4, d4, &ro), 0);
    ck_assert(ro.loss == 0.0 && ro.n_pairs == 0 && d4[0] == 0.0 && d4[3] == 0.0);
    ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_PLACKETT_LUCE, 4, tied, pi4, ref4, len4, d4, &ro), 0);
    ck_assert(ro.n_pairs == 0 && ro.loss > 0);
    /* the highest reward (index 3: beta*1) is pushed down, the lowest (index 2: beta*-0.5) up */
    ck_assert(d4[3] > 0 && d4[2] < 0);
}
END_TEST

START_TEST(test_kto_gradients_fd)
{
    align__rng r;
    align__rng_init(&r, 13, 0);
    enum { N = 7 };
    for (int rep = 0; rep < 30; rep++) {
        align__kto_params kp = {0.05 + 0.5 * align__rng_uniform(&r), 0.5 + align__rng_uniform(&r),
                                0.5 + align__rng_uniform(&r)};
        double pi[N], ref[N], d[N];
        uint8_t good[N];
        for (int i = 0; i < N; i++) {
            pi[i] = -30 * align__rng_uniform(&r);
            ref[i] = pi[i] + 6 * (align__rng_uniform(&r) - 0.5);
            good[i] = align__rng_uniform(&r) < 0.6f;
        }
        double z0 = 3 * align__rng_uniform(&r);
        align__kto_out o;
        ck_assert_int_eq(align__kto_loss(NULL, &kp, N, pi, ref, good, z0, d, &o), 0);
        for (int i = 0; i < N; i++) {
            const double h = 1e-5;
            double sv = pi[i], lp, lm;
            pi[i] = sv + h;
            ck_assert_int_eq(align__kto_loss(NULL, &kp, N, pi, ref, good, z0, NULL, &o), 0);
            lp = o.loss;
            pi[i] = sv - h;
            ck_assert_int_eq(align__kto_loss(NULL, &kp, N, pi, ref, good, z0, NULL, &o), 0);
            lm = o.loss;
            pi[i] = sv;
            ck_assert_msg(close_rel((lp - lm) / (2 * h), d[i], 1e-6, 1e-9), "KTO d[%d] %.12g vs %.12g", i, d[i],
                          (lp - lm) / (2 * h));
        }
    }
}
END_TEST

/* ---- extreme margins ----------------------------------------------------------- */

START_TEST(test_extreme_margins)
{
    /* beta 1, h = +-1000 (sums) */
    for (int32_t loss = 0; loss < ALIGN__PREF_N_LOSSES; loss++)
        for (int sign = -1; sign <= 1; sign += 2) {
            align__pref_params p = params(loss, 1.0);
            if (loss == ALIGN__PREF_SIGMOID || loss == ALIGN__PREF_ROBUST)
                p.label_smoothing = 0.1;
            double pi_w = -1000.5 + sign * 500, pi_l = -1000.5 - sign * 500; /* h = 1000 sign */
            align__pref_out o;
            int32_t n = loss == ALIGN__PREF_SIMPO || loss == ALIGN__PREF_IPO || loss == ALIGN__PREF_ORPO ? 1 : 7;
            ck_assert_int_eq(align__pref_pair(NULL, &p, pi_w, pi_l, 0, 0, n, n, &o), 0);
            ck_assert_msg(isfinite(o.loss) && isfinite(o.d_chosen) && isfinite(o.d_rejected), "loss %d sign %d",
                          (int)loss, sign);
            ck_assert(o.d_chosen <= 0 || loss == ALIGN__PREF_IPO || loss == ALIGN__PREF_ROBUST ||
                      (loss == ALIGN__PREF_SIGMOID && p.label_smoothing > 0));
        }
    align__pref_out o;
    /* DPO: -log sigma(1000) = 0 with zero gradient; -log sigma(-1000) = 1000 with gradient -beta */
    align__pref_params p = params(ALIGN__PREF_SIGMOID, 1.0);
    ck_assert_int_eq(align__pref_pair(NULL, &p, 0, -1000, 0, 0, 1, 1, &o), 0);
    ck_assert(o.loss == 0.0 && o.d_chosen == 0.0 && o.d_rejected == 0.0);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -1000, 0, 0, 0, 1, 1, &o), 0);
    ck_assert(o.loss == 1000.0 && o.d_chosen == -1.0 && o.d_rejected == 1.0);
    /* cDPO eps 0.1: large positive margin costs eps * 1000, the gradient points back (+beta*eps) */
    p.label_smoothing = 0.1;
    ck_assert_int_eq(align__pref_pair(NULL, &p, 0, -1000, 0, 0, 1, 1, &o), 0);
    ck_assert(fabs(o.loss - 100.0) < 1e-9 && fabs(o.d_chosen - 0.1) < 1e-12);
    /* robust eps 0.1: (-(0.9)*0 ... ) -> -(0.1*1000)/0.8 = -125 at +1000; at -1000: 0.9*1000/0.8 */
    p.loss = ALIGN__PREF_ROBUST;
    ck_assert_int_eq(align__pref_pair(NULL, &p, 0, -1000, 0, 0, 1, 1, &o), 0);
    ck_assert(fabs(o.loss + 125.0) < 1e-9 && fabs(o.d_chosen + 0.125) < 1e-12);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -1000, 0, 0, 0, 1, 1, &o), 0);
    ck_assert(fabs(o.loss - 1125.0) < 1e-9 && fabs(o.d_chosen + 1.125) < 1e-12);
    /* SimPO at z = -1000: loss 1000, d = -beta / n */
    p = params(ALIGN__PREF_SIMPO, 1.0);
    p.simpo_gamma = 0;
    ck_assert_int_eq(align__pref_pair(NULL, &p, -2000, 0, 0, 0, 2, 1, &o), 0); /* means -1000, 0 */
    ck_assert(fabs(o.loss - 1000) < 1e-9 && fabs(o.d_chosen + 0.5) < 1e-12 && fabs(o.d_rejected - 1) < 1e-12);
    /* ORPO: chosen nearly certain (mean logp -1e-9: clamped, odds term without gradient),
     * rejected at mean logp -1000: log odds margin ~ 1000 + log(1e6); the loss is the NLL */
    p = params(ALIGN__PREF_ORPO, 0.1);
    ck_assert_int_eq(align__pref_pair(NULL, &p, -1e-9, -1000, 0, 0, 1, 1, &o), 0);
    ck_assert(isfinite(o.loss) && fabs(o.loss - 1e-9) < 1e-12 && o.d_chosen == -1.0 && fabs(o.d_rejected) < 1e-300);
    /* and the reverse: rejected certain, chosen at -1000: L_or ~ 1000 + log(1e6) */
    ck_assert_int_eq(align__pref_pair(NULL, &p, -1000, 0.0, 0, 0, 1, 1, &o), 0);
    ck_assert(isfinite(o.loss) && fabs(o.loss - (1000 + 0.1 * (1000 + log(1e6)))) < 1e-6);
    ck_assert(fabs(o.d_chosen - (-1 - 0.1)) < 1e-9 && o.d_rejected == 0.0);
    /* KTO at beta*(r - z0) = +-1000 */
    align__kto_params kp;
    align__kto_default_params(&kp);
    kp.beta = 1;
    double pi[4] = {1000, -1000, 1000, -1000}, ref[4] = {0, 0, 0, 0}, d[4];
    uint8_t good[4] = {1, 1, 0, 0};
    align__kto_out ko;
    ck_assert_int_eq(align__kto_loss(NULL, &kp, 4, pi, ref, good, 0, d, &ko), 0);
    ck_assert(fabs(ko.loss - 0.5) < 1e-12); /* (0 + 1 + 1 + 0) / 4 */
    for (int i = 0; i < 4; i++)
        ck_assert(d[i] == 0.0);
    /* Plackett-Luce with rewards 1000 apart, in and against order */
    align__pref_params pl = params(ALIGN__PREF_SIGMOID, 1.0);
    double ppi[3] = {0, -1000, -2000}, pref[3] = {0, 0, 0}, pd[3];
    int32_t rk[3] = {0, 1, 2}, rrev[3] = {2, 1, 0}, len[3] = {1, 1, 1};
    align__rank_out ro;
    ck_assert_int_eq(align__pref_ranking(NULL, &pl, ALIGN__RANK_PLACKETT_LUCE, 3, rk, ppi, pref, len, pd, &ro), 0);
    ck_assert(ro.loss == 0.0 && pd[0] == 0.0 && ro.accuracy == 1.0);
    ck_assert_int_eq(align__pref_ranking(NULL, &pl, ALIGN__RANK_PLACKETT_LUCE, 3, rrev, ppi, pref, len, pd, &ro), 0);
    /* worst-placed response 0 (highest reward) appears in 3 risk sets: d = -1 + 1 + 1 + 1 */
    ck_assert(fabs(ro.loss - 3000) < 1e-9 && pd[0] == 2.0 && pd[1] == -1.0 && pd[2] == -1.0 && ro.accuracy == 0.0);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------ */

START_TEST(test_bad_input)
{
    align__errbuf eb;
    align__pref_out o;
    align__pref_params p = params(ALIGN__PREF_SIGMOID, 0.1);
    align__error_clear(&eb);
    ck_assert_int_eq(align__pref_pair(&eb, &p, NAN, -1, -1, -1, 1, 1, &o), ALIGN_ENONFINITE);
    ck_assert(strstr(align__errmsg(&eb), "not finite") != NULL);
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -INFINITY, -1, 1, 1, &o), ALIGN_ENONFINITE);
    /* zero lengths are fine for sums, not for length-normalised losses */
    ck_assert_int_eq(align__pref_pair(&eb, &p, 0, 0, 0, 0, 0, 0, &o), 0);
    for (int32_t loss = ALIGN__PREF_IPO; loss <= ALIGN__PREF_ORPO; loss++) {
        if (loss == ALIGN__PREF_HINGE)
            continue;
        p = params(loss, 0.1);
        ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 0, 3, &o), ALIGN_EINVAL);
        ck_assert(strstr(align__errmsg(&eb), ">= 1 token") != NULL);
        ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 3, 0, &o), ALIGN_EINVAL);
    }
    p = params(ALIGN__PREF_SIGMOID, 0.1);
    p.flags = ALIGN__PREF_LENGTH_NORM;
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 0, 3, &o), ALIGN_EINVAL);
    p.flags = 0;
    p.sft_alpha = 1;
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 0, 3, &o), ALIGN_EINVAL);
    /* parameters */
    p = params(ALIGN__PREF_SIGMOID, 0.0);
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    ck_assert(strstr(align__errmsg(&eb), "beta") != NULL);
    p = params(ALIGN__PREF_SIGMOID, NAN);
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    p = params(ALIGN__PREF_ROBUST, 0.1);
    p.label_smoothing = 0.5;
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    p.loss = ALIGN__PREF_SIGMOID; /* 0.5 is allowed for cDPO */
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), 0);
    p.loss = ALIGN__PREF_IPO;     /* but means nothing for IPO */
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    p = params(99, 0.1);
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    p = params(ALIGN__PREF_SIGMOID, 0.1);
    p.sft_alpha = -1;
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    p = params(ALIGN__PREF_SIGMOID, 0.1);
    p.flags = 0x80;
    ck_assert_int_eq(align__pref_pair(&eb, &p, -1, -1, -1, -1, 1, 1, &o), ALIGN_EINVAL);
    /* batches: a bad pair anywhere fails the batch without writing gradients */
    p = params(ALIGN__PREF_SIGMOID, 0.1);
    double pw[2] = {-1, NAN}, pl[2] = {-2, -2}, rw[2] = {-1, -1}, rl[2] = {-1, -1}, dw[2] = {7, 7}, dl[2] = {7, 7};
    int32_t nw[2] = {1, 1}, nl[2] = {1, 1};
    ck_assert_int_eq(align__pref_pairs(&eb, &p, 2, pw, pl, rw, rl, nw, nl, dw, dl, &o), ALIGN_ENONFINITE);
    ck_assert(dw[0] == 7 && dl[0] == 7);
    ck_assert_int_eq(align__pref_pairs(&eb, &p, 2, pw, pl, NULL, NULL, nw, nl, dw, dl, &o), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_pairs(&eb, &p, 0, pw, pl, rw, rl, nw, nl, dw, dl, &o), ALIGN_EINVAL);
    /* rankings */
    double pi[3] = {-1, -2, NAN}, ref[3] = {-1, -1, -1}, d[3];
    int32_t rank[3] = {0, 1, 2}, len[3] = {1, 1, 0};
    align__rank_out ro;
    ck_assert_int_eq(align__pref_ranking(&eb, &p, ALIGN__RANK_PLACKETT_LUCE, 3, rank, pi, ref, len, d, &ro),
                     ALIGN_ENONFINITE);
    pi[2] = -3;
    ck_assert_int_eq(align__pref_ranking(&eb, &p, ALIGN__RANK_PLACKETT_LUCE, 1, rank, pi, ref, len, d, &ro), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_ranking(&eb, &p, 7, 3, rank, pi, ref, len, d, &ro), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_ranking(&eb, &p, ALIGN__RANK_PLACKETT_LUCE, 3, rank, pi, NULL, len, d, &ro), ALIGN_EINVAL);
    p.flags = ALIGN__PREF_LENGTH_NORM; /* len[2] == 0 */
    ck_assert_int_eq(align__pref_ranking(&eb, &p, ALIGN__RANK_PLACKETT_LUCE, 3, rank, pi, ref, len, d, &ro), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_ranking(&eb, &p, ALIGN__RANK_ALL_PAIRS, 3, rank, pi, ref, len, d, &ro), ALIGN_EINVAL);
    /* KTO */
    align__kto_params kp;
    align__kto_default_params(&kp);
    double kpi[2] = {-1, NAN}, kref[2] = {-1, -1}, z0;
    uint8_t good[2] = {1, 0};
    align__kto_out ko;
    ck_assert_int_eq(align__kto_loss(&eb, &kp, 2, kpi, kref, good, 0, NULL, &ko), ALIGN_ENONFINITE);
    kpi[1] = -1;
    ck_assert_int_eq(align__kto_loss(&eb, &kp, 2, kpi, kref, good, NAN, NULL, &ko), ALIGN_ENONFINITE);
    ck_assert_int_eq(align__kto_loss(&eb, &kp, 0, kpi, kref, good, 0, NULL, &ko), ALIGN_EINVAL);
    kp.beta = -1;
    ck_assert_int_eq(align__kto_loss(&eb, &kp, 2, kpi, kref, good, 0, NULL, &ko), ALIGN_EINVAL);
    align__kto_default_params(&kp);
    kp.undesirable_weight = -0.5;
    ck_assert_int_eq(align__kto_loss(&eb, &kp, 2, kpi, kref, good, 0, NULL, &ko), ALIGN_EINVAL);
    kref[0] = NAN;
    ck_assert_int_eq(align__kto_kl_estimate(&eb, 2, kpi, kref, &z0), ALIGN_ENONFINITE);
    ck_assert_int_eq(align__kto_kl_estimate(&eb, 0, kpi, kref, &z0), ALIGN_EINVAL);
    int32_t plan[2];
    ck_assert_int_eq(align__kto_kl_plan(&eb, 0, plan), ALIGN_EINVAL);
    /* spans */
    float lp[2 * 4] = {-1, -2, -3, -4, -1, NAN, -1, -1}, dl4[2 * 4] = {0};
    double s[2], g[2] = {1, 1};
    int32_t st[2] = {0, 2}, en[2] = {4, 4};
    ck_assert_int_eq(align__pref_reduce(&eb, s, lp, st, en, 2, 5, ALIGN__PREF_SUM), 0); /* NaN outside span 1 */
    ck_assert(s[0] == -10 && s[1] == -2);
    st[1] = 1;
    ck_assert_int_eq(align__pref_reduce(&eb, s, lp, st, en, 2, 5, ALIGN__PREF_SUM), ALIGN_ENONFINITE);
    st[1] = 3;
    en[1] = 5; /* past max_len - 1 */
    ck_assert_int_eq(align__pref_reduce(&eb, s, lp, st, en, 2, 5, ALIGN__PREF_SUM), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_spread(&eb, dl4, g, st, en, 2, 5, ALIGN__PREF_SUM), ALIGN_EINVAL);
    en[1] = 2; /* start > end */
    ck_assert_int_eq(align__pref_spread(&eb, dl4, g, st, en, 2, 5, ALIGN__PREF_SUM), ALIGN_EINVAL);
    en[1] = 3; /* empty: fine for sums, not for means */
    ck_assert_int_eq(align__pref_reduce(&eb, s, lp, st, en, 2, 5, ALIGN__PREF_SUM), 0);
    ck_assert(s[1] == 0.0);
    ck_assert_int_eq(align__pref_reduce(&eb, s, lp, st, en, 2, 5, ALIGN__PREF_MEAN), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_spread(&eb, dl4, g, st, en, 2, 5, ALIGN__PREF_MEAN), ALIGN_EINVAL);
    ck_assert_int_eq(align__pref_reduce(&eb, s, lp, st, en, 2, 5, 9), ALIGN_EINVAL);
    g[0] = INFINITY;
    ck_assert_int_eq(align__pref_spread(&eb, dl4, g, st, en, 2, 5, ALIGN__PREF_SUM), ALIGN_ENONFINITE);
    for (int i = 0; i < 8; i++)
        ck_assert(dl4[i] == 0.0f); /* failures write nothing */
}
END_TEST

/* reduce and spread: sums, means, accumulation (+=) */
START_TEST(test_reduce_spread)
{
    float lp[3 * 5];
    for (int i = 0; i < 15; i++)
        lp[i] = -0.25f * (float)(i + 1);
    int32_t st[3] = {1, 0, 4}, en[3] = {4, 5, 5};
    double s[3], m[3];
    ck_assert_int_eq(align__pref_reduce(NULL, s, lp, st, en, 3, 6, ALIGN__PREF_SUM), 0);
    ck_assert_int_eq(align__pref_reduce(NULL, m, lp, st, en, 3, 6, ALIGN__PREF_MEAN), 0);
    ck_assert(fabs(s[0] - (-0.5 - 0.75 - 1.0)) < 1e-12 && fabs(m[0] - s[0] / 3) < 1e-12);
    ck_assert(fabs(s[2] + 3.75) < 1e-12 && fabs(m[2] + 3.75) < 1e-12);
    float d[15];
    for (int i = 0; i < 15; i++)
        d[i] = 1.0f;
    double g[3] = {0.5, -2, 3};
    ck_assert_int_eq(align__pref_spread(NULL, d, g, st, en, 3, 6, ALIGN__PREF_SUM), 0);
    ck_assert(d[0] == 1.0f && d[1] == 1.5f && d[3] == 1.5f && d[4] == 1.0f);
    ck_assert(d[5] == -1.0f && d[9] == -1.0f && d[14] == 4.0f && d[13] == 1.0f);
    ck_assert_int_eq(align__pref_spread(NULL, d, g, st, en, 3, 6, ALIGN__PREF_MEAN), 0);
    ck_assert(fabsf(d[1] - (1.5f + 0.5f / 3)) < 1e-6f && fabsf(d[5] - (-1.0f - 0.4f)) < 1e-6f);
}
END_TEST

/* ---- through a real tiny model ----------------------------------------------------
 * The full objective as the trainer will compute it: align_model_forward ->
 * align__pref_reduce -> loss, and its gradient: loss's d/dS ->
 * align__pref_spread -> align_model_backward. Checked against central
 * differences of the whole pipeline with respect to sampled weights.
 *
 * Tolerance: the model runs in float32. A central difference with step h on a
 * weight has truncation error ~ h^2 |f'''| / 6 and rounding error ~ u |L| / h
 * (u = 6e-8 for the float log-probs, |L| ~ 1-10). h = 1e-2 on weights of
 * scale ~0.15 balances them at ~1e-4 absolute; we accept 2e-3 absolute plus
 * 2 % relative (as the model's own gradient check does). The checks below
 * include a negative control: spreading IPO's gradient with the wrong
 * reduction form (dividing by the length twice) must fail this tolerance. */
enum { NS = 4, ML = 14, PROMPT = 4 };
static const int32_t M_LENS[NS] = {14, 11, 12, 9};
static const int32_t M_RANK[NS] = {1, 0, 3, 2};
static const uint8_t M_GOOD[NS] = {1, 0, 0, 1};

struct mctx {
    align_model *pol;
    int32_t tokens[NS * ML];
    int32_t st[NS], en[NS], lens[NS];
    double ref[NS];
    double z0;
    int cfg;
};

/* The objective of configuration cfg on per-sequence sums S; fills d. */
static double objective(struct mctx *c, const double *S, double *d)
{
    int32_t n[NS];
    for (int i = 0; i < NS; i++)
        n[i] = c->en[i] - c->st[i];
    const double pw[2] = {S[0], S[2]}, pl[2] = {S[1], S[3]};
    const double rw[2] = {c->ref[0], c->ref[2]}, rl[2] = {c->ref[1], c->ref[3]};
    const int32_t nw[2] = {n[0], n[2]}, nl[2] = {n[1], n[3]};
    double dw[2], dl[2];
    align__pref_params p = params(ALIGN__PREF_SIGMOID, 0.5);
    align__pref_out o;
    switch (c->cfg) {
    case 0: p.sft_alpha = 0.3; break;                 /* DPO + RPO term (sums) */
    case 1: p.loss = ALIGN__PREF_IPO; break;          /* means */
    case 2: p.loss = ALIGN__PREF_ORPO; break;         /* means + NLL */
    case 3: p.loss = ALIGN__PREF_SIMPO; p.beta = 2; break;
    case 4: {
        align__rank_out ro;
        ck_assert_int_eq(align__pref_ranking(NULL, &p, ALIGN__RANK_PLACKETT_LUCE, NS, M_RANK, S, c->ref, n, d, &ro), 0);
        return ro.loss;
    }
    case 5: {
        align__kto_params kp;
        align__kto_default_params(&kp);
        kp.beta = 0.5;
        align__kto_out ko;
        ck_assert_int_eq(align__kto_loss(NULL, &kp, NS, S, c->ref, M_GOOD, c->z0, d, &ko), 0);
        return ko.loss;
    }
    }
    ck_assert_int_eq(align__pref_pairs(NULL, &p, 2, pw, pl, rw, rl, nw, nl, dw, dl, &o), 0);
    d[0] = dw[0], d[1] = dl[0], d[2] = dw[1], d[3] = dl[1];
    return o.loss;
}

static double model_loss(struct mctx *c, double *d)
{
    float lp[NS * (ML - 1)];
    double S[NS], dd[NS];
    ck_assert_int_eq(align_model_forward(c->pol, c->tokens, c->lens, NS, ML, lp, NULL, NULL), 0);
    ck_assert_int_eq(align__pref_reduce(NULL, S, lp, c->st, c->en, NS, ML, ALIGN__PREF_SUM), 0);
    return objective(c, S, d ? d : dd);
}

/* Runs the check for c->cfg; returns the number of mismatches, counts the
 * samples with a non-negligible gradient in *n_signal. form: the reduction
 * form handed to align__pref_spread (SUM is right; MEAN is the deliberate bug). */
static int model_gradcheck(struct mctx *c, int form, int *n_checked, int *n_signal, double *max_rel)
{
    align_model *m = c->pol;
    float dtok[NS * (ML - 1)] = {0};
    double d[NS];
    ck_assert_int_eq(align_model_zero_grad(m), 0);
    model_loss(c, d);
    ck_assert_int_eq(align__pref_spread(NULL, dtok, d, c->st, c->en, NS, ML, form), 0);
    ck_assert_int_eq(align_model_backward(m, dtok, NULL), 0);
    float *ana = malloc(m->n_params * sizeof(float));
    memcpy(ana, m->grads, m->n_params * sizeof(float));
    align__rng r;
    align__rng_init(&r, 77, (uint64_t)c->cfg);
    int bad = 0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const align__tensor *t = &m->tensors[ti];
        if (!strcmp(t->name, "score.weight") || !strcmp(t->name, "score.bias"))
            continue;
        int samples = t->numel < 3 ? (int)t->numel : 3;
        for (int s = 0; s < samples; s++) {
            size_t j = t->offset + align__rng_below(&r, (uint32_t)t->numel);
            if (!strcmp(t->name, "wpe.weight")) /* only positions < ML carry gradient */
                j = t->offset + align__rng_below(&r, (uint32_t)(ML * m->cfg.n_embd));
            const float old = m->params[j], h = 1e-2f;
            m->params[j] = old + h;
            double lp = model_loss(c, NULL);
            m->params[j] = old - h;
            double lm = model_loss(c, NULL);
            m->params[j] = old;
            double num = (lp - lm) / (2.0 * h), a = ana[j];
            double err = fabs(num - a), mx = fmax(fabs(num), fabs(a));
            if (err > 2e-3 + 2e-2 * mx)
                bad++;
            if (mx > 1e-2) {
                (*n_signal)++;
                *max_rel = fmax(*max_rel, err / mx);
            }
            (*n_checked)++;
        }
    }
    free(ana);
    return bad;
}

START_TEST(test_model_gradients_fd)
{
    align_threads_set(1);
    align_model_params mp;
    align_model_default_params(&mp, sizeof mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 16;
    mp.vocab_size = 257;
    mp.max_seq_len = 16;
    mp.seed = 5;
    struct mctx c;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(align_model_create(&c.pol, &mp), 0);
    /* the reference is the initial model; the policy moves away from it, with
     * weights larger than GPT-2's initialisation so every path carries signal */
    align_model *ref = NULL;
    ck_assert_int_eq(align_model_clone(&ref, c.pol, ALIGN_FROZEN), 0);
    align__rng r;
    align__rng_init(&r, 31, 0);
    for (size_t i = 0; i < c.pol->n_params; i++)
        c.pol->params[i] += 0.15f * align__rng_normal(&r);
    for (int i = 0; i < NS; i++) {
        c.lens[i] = M_LENS[i];
        for (int t = 0; t < ML; t++)
            c.tokens[i * ML + t] = t < M_LENS[i] ? (int32_t)align__rng_below(&r, 257) : 0;
        /* response = tokens [PROMPT, len): log-prob span [PROMPT-1, len-1) */
        c.st[i] = PROMPT - 1;
        c.en[i] = M_LENS[i] - 1;
    }
    float lp[NS * (ML - 1)];
    ck_assert_int_eq(align_model_forward(ref, c.tokens, c.lens, NS, ML, lp, NULL, NULL), 0);
    ck_assert_int_eq(align__pref_reduce(NULL, c.ref, lp, c.st, c.en, NS, ML, ALIGN__PREF_SUM), 0);
    /* KTO's reference point from the mismatched pairs: prompt i + completion of plan[i] */
    int32_t plan[NS], kl_tok[NS * ML] = {0}, kl_len[NS], kl_st[NS], kl_en[NS];
    ck_assert_int_eq(align__kto_kl_plan(NULL, NS, plan), 0);
    for (int i = 0; i < NS; i++) {
        int j = plan[i];
        ck_assert_int_ne(i, j);
        memcpy(kl_tok + i * ML, c.tokens + i * ML, PROMPT * sizeof(int32_t));
        memcpy(kl_tok + i * ML + PROMPT, c.tokens + j * ML + PROMPT, (size_t)(M_LENS[j] - PROMPT) * sizeof(int32_t));
        kl_len[i] = M_LENS[j];
        kl_st[i] = PROMPT - 1;
        kl_en[i] = M_LENS[j] - 1;
    }
    double kl_pol[NS], kl_ref[NS];
    ck_assert_int_eq(align_model_forward(ref, kl_tok, kl_len, NS, ML, lp, NULL, NULL), 0);
    ck_assert_int_eq(align__pref_reduce(NULL, kl_ref, lp, kl_st, kl_en, NS, ML, ALIGN__PREF_SUM), 0);
    ck_assert_int_eq(align_model_forward(c.pol, kl_tok, kl_len, NS, ML, lp, NULL, NULL), 0);
    ck_assert_int_eq(align__pref_reduce(NULL, kl_pol, lp, kl_st, kl_en, NS, ML, ALIGN__PREF_SUM), 0);
    ck_assert_int_eq(align__kto_kl_estimate(NULL, NS, kl_pol, kl_ref, &c.z0), 0);
    /* z0 is held fixed (detached) in the differences too, as in the loss's definition */
    for (c.cfg = 0; c.cfg < 6; c.cfg++) {
        int checked = 0, signal = 0;
        double max_rel = 0;
        int bad = model_gradcheck(&c, ALIGN__PREF_SUM, &checked, &signal, &max_rel);
        fprintf(stderr, "pref model gradcheck cfg %d: %d samples, %d with |grad| > 1e-2, max rel err %.2e, %d bad\n",
                c.cfg, checked, signal, max_rel, bad);
        ck_assert_int_eq(bad, 0);
        ck_assert_int_gt(signal, checked / 3);
    }
    /* negative control: IPO's per-sum gradient spread as if it were per-mean */
    c.cfg = 1;
    int checked = 0, signal = 0;
    double max_rel = 0;
    int bad = model_gradcheck(&c, ALIGN__PREF_MEAN, &checked, &signal, &max_rel);
    fprintf(stderr, "pref model gradcheck, wrong reduction form: %d of %d samples flagged\n", bad, checked);
    ck_assert_int_gt(bad, checked / 3);
    align_model_free(ref);
    align_model_free(c.pol);
}
END_TEST

Suite *internal_pref_loss_suite(void)
{
    Suite *s = suite_create("internal_pref_loss");
    TCase *tc = test_tcase(s, "pref_loss", 300);
    tcase_add_test(tc, test_against_torch);
    tcase_add_test(tc, test_hand_values);
    tcase_add_test(tc, test_pair_gradients_fd);
    tcase_add_test(tc, test_ranking_gradients_fd);
    tcase_add_test(tc, test_ranking_consistency);
    tcase_add_test(tc, test_kto_gradients_fd);
    tcase_add_test(tc, test_extreme_margins);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_reduce_spread);
    tcase_add_test(tc, test_model_gradients_fd);
    return s;
}
