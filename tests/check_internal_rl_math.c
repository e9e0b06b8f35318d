/* check_internal_rl_math.c — the online-RL mathematics (lib/train/rl_math.h).
 * Every objective is recomputed here in double from its formula, and its
 * per-token gradient checked against central finite differences of that
 * double reference; GAE against the direct sum over future TD errors;
 * whitening against a direct mean/variance; the KL controller against its
 * update rule; GRPO/RLOO advantages against values worked out by hand. */
#include "train/rl_math.h"

#include <math.h>

#include "testutil.h"

#define FD_H 1e-5

static double urand(align__rng *g, double lo, double hi)
{
    return lo + (hi - lo) * (double)align__rng_uniform(g);
}

static void close_to(double got, double want, double tol, const char *what, int k)
{
    ck_assert_msg(fabs(got - want) <= tol * (1.0 + fabs(want)), "%s[%d]: got %.9g want %.9g", what, k, got, want);
}

/* ---- KL estimators ------------------------------------------------------------------- */

static double ref_kl(int kind, double l)
{
    switch (kind) {
    case ALIGN__KL_K1: return l;
    case ALIGN__KL_K2: return 0.5 * l * l;
    default: return exp(-l) - 1.0 + l;
    }
}

START_TEST(kl_estimators)
{
    const double ls[] = { -2.5, -0.3, -1e-3, 0.0, 2e-4, 0.7, 3.1 };
    for (int kind = ALIGN__KL_K1; kind <= ALIGN__KL_K3; kind++)
        for (size_t j = 0; j < sizeof ls / sizeof ls[0]; j++) {
            double lp = -1.25 + ls[j], lr = -1.25, d;
            double v = align__kl_token(kind, lp, lr, 0.0, &d);
            close_to(v, ref_kl(kind, lp - lr), 1e-12, "kl", kind);
            double fd = (ref_kl(kind, lp + FD_H - lr) - ref_kl(kind, lp - FD_H - lr)) / (2 * FD_H);
            close_to(d, fd, 1e-7, "dkl", kind);
        }
    /* k2 and k3 are never negative; k1 is the raw log-ratio */
    ck_assert(align__kl_token(ALIGN__KL_K3, -3.0, 0.0, 0.0, NULL) > 0);
    ck_assert(align__kl_token(ALIGN__KL_K3, 0.0, -3.0, 0.0, NULL) > 0);
    ck_assert(align__kl_token(ALIGN__KL_K1, -3.0, 0.0, 0.0, NULL) < 0);
    /* k3 keeps its precision for tiny l (l^2/2) */
    close_to(align__kl_token(ALIGN__KL_K3, 1e-6, 0.0, 0.0, NULL), 0.5e-12, 1e-5, "k3 small", 0);
    /* clamp: value bounded, derivative 0 where active */
    double d;
    ck_assert(align__kl_token(ALIGN__KL_K3, -20.0, 0.0, 10.0, &d) == 10.0);
    ck_assert(d == 0.0);
    ck_assert(align__kl_token(ALIGN__KL_K1, -20.0, 0.0, 10.0, &d) == -10.0);
    ck_assert(d == 0.0);
    ck_assert(align__kl_token(ALIGN__KL_K1, -2.0, 0.0, 10.0, &d) == -2.0);
    ck_assert(d == 1.0);
    ck_assert(isnan(align__kl_token(7, 0.0, 0.0, 0.0, NULL)));

    /* the array form: masked entries are 0 even when their inputs are NaN */
    float lp[6] = { -1.0f, -2.0f, NAN, -0.5f, NAN, NAN }, lr[6] = { -1.5f, -1.0f, NAN, -0.7f, NAN, NAN };
    uint8_t mask[6] = { 1, 1, 0, 1, 0, 0 };
    float kl[6], dkl[6];
    double mean;
    ck_assert_int_eq(align__kl_tokens(kl, dkl, &mean, lp, lr, mask, 2, 3, ALIGN__KL_K1, 0.0f), ALIGN_OK);
    ck_assert(kl[2] == 0.0f && dkl[2] == 0.0f && kl[4] == 0.0f && kl[5] == 0.0f);
    close_to(kl[0], 0.5, 1e-6, "k1", 0);
    close_to(kl[1], -1.0, 1e-6, "k1", 1);
    close_to(mean, ((0.5 - 1.0) + 0.2) / 2.0, 1e-6, "mean seq kl", 0);
    ck_assert_int_eq(align__kl_tokens(kl, dkl, &mean, lp, lr, mask, 2, 3, 0, 0.0f), ALIGN_EINVAL);
}
END_TEST

/* ---- reward shaping ------------------------------------------------------------------- */

START_TEST(ppo_rewards)
{
    /* 3 rows, T = 4: lengths 3, 0, 4; the last row did not end */
    float kl[12] = { 0.1f, -0.2f, 0.3f, 9.0f, 9.0f, 9.0f, 9.0f, 9.0f, 0.5f, 0.5f, 0.5f, 0.5f };
    float scores[3] = { 2.0f, 1.0f, 7.0f };
    uint8_t ended[3] = { 1, 1, 0 };
    int32_t len[3] = { 3, 0, 4 };
    float rew[12], sc[3];
    align__reward_stats st;
    align__reward_params p = { 0.5f, 0.0f, 1.0f };
    ck_assert_int_eq(align__ppo_rewards(rew, sc, &st, kl, scores, ended, len, 3, 4, &p), ALIGN_OK);
    const float want[12] = { -0.05f, 0.1f, -0.15f + 2.0f, 0.0f, 0, 0, 0, 0, -0.25f, -0.25f, -0.25f, -0.25f + 6.0f };
    for (int k = 0; k < 12; k++)
        close_to(rew[k], want[k], 1e-6, "reward", k);
    ck_assert(sc[0] == 2.0f && sc[1] == 1.0f && sc[2] == 6.0f);
    close_to(st.scores, 3.0, 1e-12, "scores", 0);
    close_to(st.kl, (0.2 + 0.0 + 2.0) / 3.0, 1e-6, "kl", 0);
    close_to(st.non_score_reward, -0.5 * (0.2 + 2.0) / 3.0, 1e-6, "nsr", 0);
    close_to(st.rlhf_reward, st.scores + st.non_score_reward, 1e-12, "rlhf", 0);
    /* score clipping happens before the missing-EOS penalty */
    p.score_clip = 5.0f;
    ck_assert_int_eq(align__ppo_rewards(rew, sc, NULL, kl, scores, NULL, len, 3, 4, &p), ALIGN_OK);
    ck_assert(sc[2] == 5.0f);                   /* ended NULL: all ended */
    ck_assert_int_eq(align__ppo_rewards(rew, sc, NULL, kl, scores, ended, len, 3, 4, &p), ALIGN_OK);
    ck_assert(sc[2] == 4.0f);
    close_to(rew[11], -0.25 + 4.0, 1e-6, "clipped", 11);
    int32_t bad[3] = { 3, 5, 1 };
    ck_assert_int_eq(align__ppo_rewards(rew, sc, NULL, kl, scores, ended, bad, 3, 4, &p), ALIGN_EINVAL);
}
END_TEST

/* ---- GAE ------------------------------------------------------------------------------------- */

START_TEST(gae_matches_direct_sum)
{
    enum { N = 5, T = 7 };
    int32_t len[N] = { 7, 3, 0, 1, 5 };
    float r[N * T], v[N * T], adv[N * T], ret[N * T];
    align__rng g;
    align__rng_init(&g, 11, 0);
    for (int k = 0; k < N * T; k++) {
        int t = k % T, i = k / T;
        r[k] = t < len[i] ? (float)urand(&g, -1, 1) : NAN;   /* padding must never be read */
        v[k] = t < len[i] ? (float)urand(&g, -2, 2) : NAN;
    }
    const float params[3][2] = { { 1.0f, 0.95f }, { 0.9f, 0.8f }, { 0.99f, 1.0f } };
    for (int pi = 0; pi < 3; pi++) {
        double gm = params[pi][0], lm = params[pi][1];
        ck_assert_int_eq(align__gae(adv, ret, r, v, len, N, T, params[pi][0], params[pi][1]), ALIGN_OK);
        for (int i = 0; i < N; i++)
            for (int t = 0; t < T; t++) {
                int k = i * T + t;
                if (t >= len[i]) {
                    ck_assert(adv[k] == 0.0f && ret[k] == 0.0f);
                    continue;
                }
                /* A_t = sum_l (gamma lambda)^l delta_{t+l}, delta_s = r_s + gamma V_{s+1} - V_s, V_len = 0 */
                double a = 0.0;
                for (int s = t; s < len[i]; s++) {
                    double vn = s + 1 < len[i] ? v[i * T + s + 1] : 0.0;
                    double delta = r[i * T + s] + gm * vn - v[i * T + s];
                    a += pow(gm * lm, s - t) * delta;
                }
                close_to(adv[k], a, 2e-6, "adv", k);
                close_to(ret[k], a + v[k], 2e-6, "ret", k);
            }
    }
    /* gamma = lambda = 1: A_0 + V_0 = sum of the row's rewards */
    ck_assert_int_eq(align__gae(adv, ret, r, v, len, N, T, 1.0f, 1.0f), ALIGN_OK);
    double s = 0;
    for (int t = 0; t < len[0]; t++)
        s += r[t];
    close_to(ret[0], s, 1e-6, "mc return", 0);
    int32_t bad[N] = { 8, 0, 0, 0, 0 };
    ck_assert_int_eq(align__gae(adv, ret, r, v, bad, N, T, 1.0f, 0.95f), ALIGN_EINVAL);
}
END_TEST

/* ---- whitening and explained variance --------------------------------------------------- */

START_TEST(whiten_matches_direct)
{
    enum { N = 23 };
    float x[N], out[N];
    uint8_t mask[N];
    align__rng g;
    align__rng_init(&g, 5, 0);
    for (int k = 0; k < N; k++) {
        mask[k] = (k % 4) != 1;
        x[k] = mask[k] ? (float)urand(&g, -3, 5) : NAN;
    }
    double s = 0, c = 0;
    for (int k = 0; k < N; k++)
        if (mask[k]) {
            s += x[k];
            c++;
        }
    double m = s / c, ss = 0;
    for (int k = 0; k < N; k++)
        if (mask[k])
            ss += (x[k] - m) * (x[k] - m);
    double var = ss / (c - 1);   /* unbiased, as TRL's masked_var */
    double mm, vv;
    int64_t cc;
    align__masked_mean_var(&mm, &vv, &cc, x, mask, N, 1);
    close_to(mm, m, 1e-12, "mean", 0);
    close_to(vv, var, 1e-12, "var", 0);
    ck_assert_int_eq(cc, (int64_t)c);
    for (int shift = 0; shift <= 1; shift++) {
        align__masked_whiten(out, x, mask, N, shift, 1e-8f);
        for (int k = 0; k < N; k++) {
            double want = mask[k] ? (x[k] - m) / sqrt(var + 1e-8) + (shift ? 0.0 : m) : 0.0;
            close_to(out[k], want, 1e-6, "whiten", k);
        }
    }
    /* in place; the whitened values have mean 0 and unbiased variance ~1 */
    align__masked_whiten(x, x, mask, N, 1, 1e-8f);
    align__masked_mean_var(&mm, &vv, NULL, x, mask, N, 1);
    ck_assert(fabs(mm) < 1e-6 && fabs(vv - 1.0) < 1e-5);
    /* degenerate: one entry -> variance 0, whitened 0; no entry -> 0, no NaN */
    float one[3] = { 4.0f, NAN, NAN };
    uint8_t m1[3] = { 1, 0, 0 }, m0[3] = { 0, 0, 0 };
    align__masked_whiten(out, one, m1, 3, 1, 1e-8f);
    ck_assert(out[0] == 0.0f && out[1] == 0.0f);
    align__masked_whiten(out, one, m0, 3, 1, 1e-8f);
    ck_assert(out[0] == 0.0f && out[2] == 0.0f);
}
END_TEST

START_TEST(explained_variance)
{
    float ret[6] = { 1, 2, 3, 4, 9, 9 }, val[6] = { 1, 2, 3, 4, NAN, 0 };
    uint8_t mask[6] = { 1, 1, 1, 1, 0, 0 };
    close_to(align__explained_variance(val, ret, mask, 6), 1.0, 1e-12, "perfect", 0);
    float cst[6] = { 7, 7, 7, 7, 7, 7 };
    close_to(align__explained_variance(cst, ret, mask, 6), 0.0, 1e-12, "constant", 0);
    float half[6] = { 0.5f, 1, 1.5f, 2, 0, 0 };
    /* R - V = R/2: Var(R/2)/Var(R) = 1/4 */
    close_to(align__explained_variance(half, ret, mask, 6), 0.75, 1e-12, "half", 0);
    ck_assert(align__explained_variance(val, cst, mask, 6) == 0.0);   /* Var(R) = 0 */
}
END_TEST

/* ---- PPO policy loss ------------------------------------------------------------------------ */

static double ref_ppo(double lpn, double lpo, double lref, double A, const align__ppo_params *p)
{
    double rho = exp(lpn - lpo);
    double rc = fmin(fmax(rho, 1.0 - p->eps_low), 1.0 + p->eps_high);
    double L = fmax(-A * rho, -A * rc);
    if (p->dual_clip > 1 && A < 0)
        L = fmin(L, -(double)p->dual_clip * A);
    if (p->kl_beta > 0)
        L += p->kl_beta * (exp(lref - lpn) - (lref - lpn) - 1.0);
    return L;
}

/* Random tokens kept away from the kinks (clip edges, dual-clip cap), so the
 * central difference is meaningful; checks loss and dL/dlogp_new. */
static void ppo_fd_case(const align__ppo_params *p, uint64_t seed, int want_clip, int want_dual)
{
    enum { N = 400 };
    float lpn[N], lpo[N], lref[N], A[N], loss[N], dl[N];
    uint8_t mask[N];
    align__rng g;
    align__rng_init(&g, seed, 0);
    for (int k = 0; k < N; k++) {
        for (;;) {
            lpo[k] = (float)urand(&g, -4, -0.1);
            lpn[k] = lpo[k] + (float)urand(&g, -0.6, 0.6);
            lref[k] = lpo[k] + (float)urand(&g, -0.5, 0.5);
            A[k] = (float)urand(&g, -2, 2);
            double rho = exp((double)lpn[k] - lpo[k]);
            int ok = fabs(rho - (1 - p->eps_low)) > 1e-3 && fabs(rho - (1 + p->eps_high)) > 1e-3 &&
                     fabs(A[k]) > 1e-3;
            if (p->dual_clip > 1 && A[k] < 0)
                ok = ok && fabs(rho - p->dual_clip) > 1e-3 && fabs(1 - p->eps_low - p->dual_clip) > 1e-3;
            if (ok)
                break;
        }
        mask[k] = (k % 7) != 3;
    }
    align__ppo_stats st;
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, &st, lpn, lpo, lref, A, mask, N, p), ALIGN_OK);
    int64_t nclip = 0, ntok = 0, ndual = 0;
    double akl = 0;
    for (int k = 0; k < N; k++) {
        if (!mask[k]) {
            ck_assert(loss[k] == 0.0f && dl[k] == 0.0f);
            continue;
        }
        ntok++;
        double L = ref_ppo(lpn[k], lpo[k], lref[k], A[k], p);
        close_to(loss[k], L, 1e-5, "ppo loss", k);
        double fd = (ref_ppo((double)lpn[k] + FD_H, lpo[k], lref[k], A[k], p) -
                     ref_ppo((double)lpn[k] - FD_H, lpo[k], lref[k], A[k], p)) / (2 * FD_H);
        close_to(dl[k], fd, 1e-5, "ppo grad", k);
        double rho = exp((double)lpn[k] - lpo[k]);
        double rc = fmin(fmax(rho, 1.0 - p->eps_low), 1.0 + p->eps_high);
        if (-A[k] * rc > -A[k] * rho)
            nclip++;
        if (p->dual_clip > 1 && A[k] < 0 && fmax(-A[k] * rho, -A[k] * rc) > -(double)p->dual_clip * A[k])
            ndual++;
        akl += (rho - 1) - log(rho);
    }
    ck_assert_int_eq(st.tokens, ntok);
    close_to(st.clipfrac, (double)nclip / ntok, 1e-12, "clipfrac", 0);
    close_to(st.dual_clipfrac, (double)ndual / ntok, 1e-12, "dualfrac", 0);
    close_to(st.approxkl, akl / ntok, 1e-9, "approxkl", 0);
    ck_assert(st.approxkl >= 0 && st.approxkl_sq >= 0);
    ck_assert_msg(want_clip ? nclip > 10 : 1, "too few clipped tokens to test (%lld)", (long long)nclip);
    ck_assert_msg(want_dual ? ndual > 5 : 1, "too few dual-clipped tokens to test (%lld)", (long long)ndual);
}

START_TEST(ppo_policy_grad_fd)
{
    align__ppo_params p = { 0.2f, 0.2f, 0.0f, 0.0f };
    ppo_fd_case(&p, 1, 1, 0);
    p.eps_high = 0.28f;                                   /* clip-higher */
    ppo_fd_case(&p, 2, 1, 0);
    p.dual_clip = 1.05f;                                  /* small c so the cap is reached */
    p.eps_low = 0.02f;
    ppo_fd_case(&p, 3, 1, 1);
    align__ppo_params grpo = { 0.2f, 0.28f, 0.0f, 0.04f }; /* GRPO: k3 in the loss */
    ppo_fd_case(&grpo, 4, 1, 0);
    grpo.kl_beta = 1.5f;
    ppo_fd_case(&grpo, 5, 1, 0);
}
END_TEST

START_TEST(ppo_clip_boundary)
{
    align__ppo_params p = { 0.2f, 0.2f, 0.0f, 0.0f };
    /* rho just inside / outside 1 + eps and 1 - eps, both signs of A, and A = 0 */
    const double d_in_hi = log(1.2) - 1e-4, d_out_hi = log(1.2) + 1e-4;
    const double d_in_lo = log(0.8) + 1e-4, d_out_lo = log(0.8) - 1e-4;
    float lpo[9] = { -1, -1, -1, -1, -1, -1, -1, -1, -1 };
    float lpn[9] = { (float)(-1 + d_in_hi), (float)(-1 + d_out_hi), (float)(-1 + d_out_hi),
                     (float)(-1 + d_in_lo), (float)(-1 + d_out_lo), (float)(-1 + d_out_lo),
                     -1.0f, (float)(-1 + d_out_hi), -1.0f };
    float A[9] = { 1, 1, -1, -1, -1, 1, 0.5f, 0, -2 };
    uint8_t mask[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    float loss[9], dl[9];
    align__ppo_stats st;
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, &st, lpn, lpo, NULL, A, mask, 9, &p), ALIGN_OK);
    double rho[9];
    for (int k = 0; k < 9; k++)
        rho[k] = exp((double)lpn[k] - lpo[k]);
    /* A > 0, rho < 1 + eps: unclipped, gradient -A rho */
    close_to(dl[0], -rho[0], 1e-6, "in hi", 0);
    /* A > 0, rho > 1 + eps: clipped at the top, loss -A(1+eps), no gradient */
    ck_assert(dl[1] == 0.0f);
    close_to(loss[1], -1.2, 1e-6, "out hi", 1);
    /* A < 0, rho > 1 + eps: the pessimistic bound keeps the unclipped term */
    close_to(dl[2], rho[2], 1e-6, "A<0 hi", 2);
    close_to(dl[3], rho[3], 1e-6, "in lo", 3);
    /* A < 0, rho < 1 - eps: clipped at the bottom */
    ck_assert(dl[4] == 0.0f);
    close_to(loss[4], 0.8, 1e-6, "out lo", 4);
    /* A > 0, rho < 1 - eps: unclipped */
    close_to(dl[5], -rho[5], 1e-6, "A>0 lo", 5);
    /* rho = 1 exactly (first epoch): L = -A, dL = -A */
    ck_assert(loss[6] == -0.5f && dl[6] == -0.5f);
    ck_assert(dl[7] == 0.0f && loss[7] == 0.0f);
    ck_assert(loss[8] == 2.0f && dl[8] == 2.0f);
    close_to(st.clipfrac, 2.0 / 9.0, 1e-12, "clipfrac", 0);
    close_to(st.clip_high, 1.0 / 9.0, 1e-12, "clip_high", 0);
    close_to(st.clip_low, 1.0 / 9.0, 1e-12, "clip_low", 0);
    /* dual clip: A < 0 and rho far above 1 + eps: loss capped at -c A */
    p.dual_clip = 3.0f;
    float lpn2[2] = { (float)(-1 + log(5.0)), (float)(-1 + log(2.0)) }, A2[2] = { -1, -1 };
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, &st, lpn2, lpo, NULL, A2, mask, 2, &p), ALIGN_OK);
    close_to(loss[0], 3.0, 1e-6, "dual cap", 0);
    ck_assert(dl[0] == 0.0f);
    close_to(loss[1], 2.0, 1e-6, "below cap", 1);
    close_to(st.dual_clipfrac, 0.5, 1e-12, "dualfrac", 0);
    /* bad parameters */
    align__ppo_params bad = { 1.0f, 0.2f, 0.0f, 0.0f };
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, NULL, lpn, lpo, NULL, A, mask, 9, &bad), ALIGN_EINVAL);
    bad.eps_low = 0.2f;
    bad.kl_beta = 0.1f;   /* needs ref log-probs */
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, NULL, lpn, lpo, NULL, A, mask, 9, &bad), ALIGN_EINVAL);
}
END_TEST

/* ---- value loss -------------------------------------------------------------------------------- */

static double ref_vloss(double V, double vo, double R, double e)
{
    double l1 = (V - R) * (V - R);
    if (e <= 0)
        return 0.5 * l1;
    double vc = fmin(fmax(V, vo - e), vo + e);
    return 0.5 * fmax(l1, (vc - R) * (vc - R));
}

START_TEST(value_loss_fd)
{
    enum { N = 300 };
    float V[N], vo[N], R[N], loss[N], dl[N];
    uint8_t mask[N];
    align__rng g;
    align__rng_init(&g, 9, 0);
    const float eps = 0.2f;
    for (int k = 0; k < N; k++) {
        do {
            vo[k] = (float)urand(&g, -1, 1);
            V[k] = vo[k] + (float)urand(&g, -0.6, 0.6);
            R[k] = (float)urand(&g, -1.5, 1.5);
        } while (fabs(fabs((double)V[k] - vo[k]) - eps) < 1e-3 ||
                 fabs(fabs((double)V[k] - R[k]) - fabs(fmin(fmax((double)V[k], vo[k] - eps), vo[k] + eps) - R[k])) < 1e-3);
        mask[k] = (k % 5) != 0;
    }
    for (int pass = 0; pass < 2; pass++) {
        float e = pass ? eps : 0.0f;
        double cf, ml;
        ck_assert_int_eq(align__ppo_value_loss(loss, dl, &cf, &ml, V, vo, R, mask, N, e), ALIGN_OK);
        int64_t c = 0, nclip = 0;
        double s = 0;
        for (int k = 0; k < N; k++) {
            if (!mask[k]) {
                ck_assert(loss[k] == 0.0f && dl[k] == 0.0f);
                continue;
            }
            double L = ref_vloss(V[k], vo[k], R[k], e);
            close_to(loss[k], L, 1e-6, "vloss", k);
            double fd = (ref_vloss((double)V[k] + FD_H, vo[k], R[k], e) - ref_vloss((double)V[k] - FD_H, vo[k], R[k], e)) /
                        (2 * FD_H);
            close_to(dl[k], fd, 1e-5, "vgrad", k);
            double vc = e > 0 ? fmin(fmax((double)V[k], vo[k] - e), vo[k] + e) : V[k];
            if ((vc - R[k]) * (vc - R[k]) > ((double)V[k] - R[k]) * ((double)V[k] - R[k]))
                nclip++;
            s += L;
            c++;
        }
        close_to(cf, (double)nclip / c, 1e-12, "vclipfrac", pass);
        close_to(ml, s / c, 1e-6, "vmean", pass);
        if (pass)
            ck_assert_msg(nclip > 20, "only %lld clipped", (long long)nclip);
        else
            ck_assert(nclip == 0);
    }
}
END_TEST

/* ---- aggregation, and the whole chain (loss -> aggregate) against FD ---------------------------- */

static double ref_aggregate(const double *L, const uint8_t *mask, int n, int T, int mode, int const_len)
{
    double total = 0, cnt = 0;
    if (mode == ALIGN__AGG_SEQ_MEAN) {
        for (int i = 0; i < n; i++) {
            double s = 0, c = 0;
            for (int t = 0; t < T; t++)
                if (mask[i * T + t]) {
                    s += L[i * T + t];
                    c++;
                }
            total += s / (c > 0 ? c : 1);
        }
        return total / n;
    }
    for (int k = 0; k < n * T; k++)
        if (mask[k]) {
            total += L[k];
            cnt++;
        }
    return mode == ALIGN__AGG_TOKEN_MEAN ? total / cnt : total / (n * (double)const_len);
}

/* GRPO objective: aggregate_mode( clipped surrogate + beta k3 ) as one scalar in double. */
static double ref_objective(const double *lpn, const float *lpo, const float *lref, const float *A,
                            const uint8_t *mask, int n, int T, const align__ppo_params *p, int mode, int cl)
{
    double L[64];
    for (int k = 0; k < n * T; k++)
        L[k] = mask[k] ? ref_ppo(lpn[k], lpo[k], lref[k], A[k], p) : 0.0;
    return ref_aggregate(L, mask, n, T, mode, cl);
}

START_TEST(aggregate_modes_fd)
{
    enum { N = 4, T = 6 };
    /* row lengths 6, 2, 0, 4 */
    uint8_t mask[N * T] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0 };
    float lpn[N * T], lpo[N * T], lref[N * T], A[N * T], loss[N * T], dl[N * T], grad[N * T];
    align__rng g;
    align__rng_init(&g, 21, 0);
    for (int k = 0; k < N * T; k++) {
        lpo[k] = (float)urand(&g, -3, -0.2);
        lpn[k] = lpo[k] + (float)urand(&g, -0.15, 0.15);   /* some clipped, none at an edge (checked below) */
        lref[k] = lpo[k] + (float)urand(&g, -0.3, 0.3);
        A[k] = (float)urand(&g, -1, 1);
        if (!mask[k]) {
            lpn[k] = NAN;   /* padding must not leak */
            A[k] = NAN;
        }
    }
    align__ppo_params p = { 0.1f, 0.1f, 0.0f, 0.04f };
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, NULL, lpn, lpo, lref, A, mask, N * T, &p), ALIGN_OK);
    for (int mode = ALIGN__AGG_TOKEN_MEAN; mode <= ALIGN__AGG_CONSTANT; mode++) {
        align__agg_params ap = { mode, 8, 0, 0 };
        double agg;
        const float coef = 0.7f;
        ck_assert_int_eq(align__rl_aggregate(grad, &agg, loss, dl, mask, N, T, coef, &ap), ALIGN_OK);
        double x[N * T];
        for (int k = 0; k < N * T; k++)
            x[k] = lpn[k];
        double want = coef * ref_objective(x, lpo, lref, A, mask, N, T, &p, mode, 8);
        close_to(agg, want, 1e-6, "aggregate", mode);
        for (int k = 0; k < N * T; k++) {
            if (!mask[k]) {
                ck_assert(grad[k] == 0.0f);
                continue;
            }
            double rho = exp((double)lpn[k] - lpo[k]);
            ck_assert(fabs(rho - 0.9) > 1e-4 && fabs(rho - 1.1) > 1e-4);
            x[k] = (double)lpn[k] + FD_H;
            double up = ref_objective(x, lpo, lref, A, mask, N, T, &p, mode, 8);
            x[k] = (double)lpn[k] - FD_H;
            double dn = ref_objective(x, lpo, lref, A, mask, N, T, &p, mode, 8);
            x[k] = lpn[k];
            close_to(grad[k], coef * (up - dn) / (2 * FD_H), 1e-5, "agg grad", k);
        }
        /* the step split in two micro-batches (rows 0-1, rows 2-3) with the step's totals
         * gives the same gradients and the losses add up */
        double tok = 0;
        for (int k = 0; k < N * T; k++)
            tok += mask[k];
        align__agg_params half = { mode, 8, tok, N };
        float g2[N * T];
        double a1, a2;
        ck_assert_int_eq(align__rl_aggregate(g2, &a1, loss, dl, mask, 2, T, coef, &half), ALIGN_OK);
        ck_assert_int_eq(align__rl_aggregate(g2 + 2 * T, &a2, loss + 2 * T, dl + 2 * T, mask + 2 * T, 2, T, coef,
                                             &half), ALIGN_OK);
        close_to(a1 + a2, agg, 1e-9, "micro-batch sum", mode);
        for (int k = 0; k < N * T; k++)
            close_to(g2[k], grad[k], 1e-7, "micro-batch grad", k);
    }
    /* in place, and the token-mean value by hand */
    float l3[4] = { 1, 2, 3, 100 }, d3[4] = { 4, 4, 4, 4 };
    uint8_t m3[4] = { 1, 1, 1, 0 };
    align__agg_params tm = { ALIGN__AGG_TOKEN_MEAN, 0, 0, 0 };
    double a3;
    ck_assert_int_eq(align__rl_aggregate(d3, &a3, l3, d3, m3, 1, 4, 1.0f, &tm), ALIGN_OK);
    ck_assert(a3 == 2.0);
    ck_assert(d3[0] == 4.0f / 3.0f && d3[3] == 0.0f);
    align__agg_params bad = { 3, 0, 0, 0 };
    ck_assert_int_eq(align__rl_aggregate(d3, &a3, l3, d3, m3, 1, 4, 1.0f, &bad), ALIGN_EINVAL);
}
END_TEST

/* ---- adaptive KL controller ----------------------------------------------------------------- */

START_TEST(kl_controller)
{
    align__kl_ctl c;
    ck_assert_int_eq(align__kl_ctl_init(&c, 0.2, 1, 6.0, 10000.0), ALIGN_OK);
    const double obs[] = { 0.0, 3.0, 6.0, 6.9, 7.5, 50.0, 5.5, 1e9 };
    const int64_t steps[] = { 256, 256, 512, 64, 256, 256, 128, 1 };
    double beta = 0.2;
    for (size_t j = 0; j < sizeof obs / sizeof obs[0]; j++) {
        ck_assert_int_eq(align__kl_ctl_update(&c, obs[j], steps[j]), ALIGN_OK);
        double e = fmin(fmax(obs[j] / 6.0 - 1.0, -0.2), 0.2);
        beta *= 1.0 + e * (double)steps[j] / 10000.0;
        ck_assert_msg(c.beta == beta, "step %zu: %.17g vs %.17g", j, c.beta, beta);
    }
    ck_assert(c.beta != 0.2);
    /* KL above target raises beta, below lowers it; the error is clipped at +-0.2 */
    align__kl_ctl up = c, down = c;
    ck_assert_int_eq(align__kl_ctl_update(&up, 100.0, 1000), ALIGN_OK);
    ck_assert(up.beta == c.beta * (1.0 + 0.2 * 0.1));
    ck_assert_int_eq(align__kl_ctl_update(&down, 0.0, 1000), ALIGN_OK);
    ck_assert(down.beta == c.beta * (1.0 - 0.2 * 0.1));
    ck_assert_int_eq(align__kl_ctl_update(&c, NAN, 1), ALIGN_EINVAL);
    /* fixed controller */
    align__kl_ctl f;
    ck_assert_int_eq(align__kl_ctl_init(&f, 0.05, 0, 0, 0), ALIGN_OK);
    ck_assert_int_eq(align__kl_ctl_update(&f, 100.0, 1000), ALIGN_OK);
    ck_assert(f.beta == 0.05);
    ck_assert_int_eq(align__kl_ctl_init(&f, 0.05, 1, 0, 10000), ALIGN_EINVAL);
    ck_assert_int_eq(align__kl_ctl_init(&f, -1, 0, 0, 0), ALIGN_EINVAL);
    /* state as bytes: exact round trip; corrupted bytes rejected, state untouched */
    uint8_t buf[ALIGN__KL_CTL_BYTES];
    align__kl_ctl_save(&c, buf);
    align__kl_ctl back;
    memset(&back, 0, sizeof back);
    ck_assert_int_eq(align__kl_ctl_load(&back, buf, sizeof buf), ALIGN_OK);
    ck_assert(back.beta == c.beta && back.target == c.target && back.horizon == c.horizon && back.adaptive == 1);
    ck_assert_int_eq(align__kl_ctl_load(&back, buf, sizeof buf - 1), ALIGN_EFORMAT);
    uint8_t bad[ALIGN__KL_CTL_BYTES];
    memcpy(bad, buf, sizeof bad);
    bad[0] = 'X';
    ck_assert_int_eq(align__kl_ctl_load(&back, bad, sizeof bad), ALIGN_EFORMAT);
    memcpy(bad, buf, sizeof bad);
    bad[4] = 9;
    ck_assert_int_eq(align__kl_ctl_load(&back, bad, sizeof bad), ALIGN_EVERSION);
    memcpy(bad, buf, sizeof bad);
    bad[8] = 2;
    ck_assert_int_eq(align__kl_ctl_load(&back, bad, sizeof bad), ALIGN_EFORMAT);
    memcpy(bad, buf, sizeof bad);
    memset(bad + 16, 0xff, 8);   /* beta = NaN */
    ck_assert_int_eq(align__kl_ctl_load(&back, bad, sizeof bad), ALIGN_EFORMAT);
    ck_assert(back.beta == c.beta);
}
END_TEST

/* ---- GRPO and RLOO advantages ---------------------------------------------------------------- */

START_TEST(grpo_advantages)
{
    /* two groups of 4: {1,0,0,1} and ties {2,2,2,2} */
    float r[8] = { 1, 0, 0, 1, 2, 2, 2, 2 }, a[8];
    int32_t grp[8] = { 0, 0, 0, 0, 1, 1, 1, 1 };
    double fz;
    ck_assert_int_eq(align__grpo_advantages(a, &fz, r, grp, 8, 0, 1e-4f), ALIGN_OK);
    const double sd = sqrt(1.0 / 3.0);   /* unbiased std of {1,0,0,1}: sqrt(4 * 0.25 / 3) */
    for (int k = 0; k < 4; k++)
        close_to(a[k], (r[k] - 0.5) / (sd + 1e-4), 1e-6, "grpo", k);
    for (int k = 4; k < 8; k++)
        ck_assert(a[k] == 0.0f);
    ck_assert(fz == 0.5);
    /* eps = 0 with a zero-std group: 0, not NaN */
    ck_assert_int_eq(align__grpo_advantages(a, &fz, r, grp, 8, 0, 0.0f), ALIGN_OK);
    for (int k = 4; k < 8; k++)
        ck_assert(a[k] == 0.0f);
    close_to(a[0], 0.5 / sd, 1e-6, "grpo eps0", 0);
    /* Dr. GRPO: no std scaling */
    ck_assert_int_eq(align__grpo_advantages(a, NULL, r, grp, 8, ALIGN__GRPO_NO_STD, 1e-4f), ALIGN_OK);
    ck_assert(a[0] == 0.5f && a[1] == -0.5f && a[4] == 0.0f);
    /* batch std: std of all 8 rewards (mean 1.25) */
    double m = 10.0 / 8, ss = 0;
    for (int k = 0; k < 8; k++)
        ss += (r[k] - m) * (r[k] - m);
    double bsd = sqrt(ss / 7);
    ck_assert_int_eq(align__grpo_advantages(a, &fz, r, grp, 8, ALIGN__GRPO_BATCH_STD, 1e-4f), ALIGN_OK);
    close_to(a[1], -0.5 / (bsd + 1e-4), 1e-6, "batch std", 1);
    ck_assert(a[5] == 0.0f && fz == 0.5);
    /* interleaved group ids, a group of one sample, and a third group of 3 */
    float r2[6] = { 3, 1, 5, 7, 4, 2 };
    int32_t g2[6] = { 9, 4, 9, 8, 4, 4 };
    ck_assert_int_eq(align__grpo_advantages(a, &fz, r2, g2, 6, ALIGN__GRPO_NO_STD, 0.0f), ALIGN_OK);
    ck_assert(a[0] == -1.0f && a[2] == 1.0f && a[3] == 0.0f);
    close_to(a[1], 1 - 7.0 / 3, 1e-6, "g4", 1);
    close_to(a[4], 4 - 7.0 / 3, 1e-6, "g4", 4);
    close_to(a[5], 2 - 7.0 / 3, 1e-6, "g4", 5);
    close_to(fz, 1.0 / 6.0, 1e-12, "frac zero std", 0);   /* the single sample's group */
    ck_assert_int_eq(align__grpo_advantages(a, &fz, r2, g2, 6, ALIGN__GRPO_NO_STD | ALIGN__GRPO_BATCH_STD, 0.0f),
                     ALIGN_EINVAL);
}
END_TEST

START_TEST(rloo_advantages)
{
    float s[8] = { 1, 2, 3, 6, 0, 0, 1, 1 }, kl[8] = { 0.5f, 0, 1, 2, 0, 0, 0, 0 }, a[8], rw[8];
    int32_t grp[8] = { 0, 0, 0, 0, 1, 1, 1, 1 };
    ck_assert_int_eq(align__rloo_advantages(a, rw, s, kl, 0.5f, grp, 8), ALIGN_OK);
    /* r = s - 0.5 kl = {0.75, 2, 2.5, 5}; b_i = (10.25 - r_i) / 3 */
    const double rr[4] = { 0.75, 2, 2.5, 5 };
    for (int k = 0; k < 4; k++) {
        close_to(rw[k], rr[k], 1e-7, "rloo r", k);
        close_to(a[k], rr[k] - (10.25 - rr[k]) / 3, 1e-6, "rloo", k);
    }
    /* equivalently A = G/(G-1) (r - mean r) */
    close_to(a[3], 4.0 / 3.0 * (5 - 10.25 / 4), 1e-6, "rloo scaled", 3);
    ck_assert(a[4] == -a[6] && a[4] == -2.0f / 3.0f);
    /* ties give zero advantages */
    float t[2] = { 4, 4 };
    ck_assert_int_eq(align__rloo_advantages(a, NULL, t, NULL, 0.1f, NULL, 2), ALIGN_OK);
    ck_assert(a[0] == 0.0f && a[1] == 0.0f);
    int32_t lone[3] = { 0, 0, 1 };
    ck_assert_int_eq(align__rloo_advantages(a, NULL, s, NULL, 0.1f, lone, 3), ALIGN_EINVAL);
}
END_TEST

static double ref_rloo(const double *lpn, const float *lpo, const float *A, const uint8_t *mask, int n, int T,
                       double eps)
{
    double total = 0;
    for (int i = 0; i < n; i++) {
        double s = 0, d = 0;
        for (int t = 0; t < T; t++)
            if (mask[i * T + t]) {
                s += lpn[i * T + t];
                d += lpn[i * T + t] - lpo[i * T + t];
            }
        if (eps <= 0)
            total += -A[i] * s;
        else {
            double rho = exp(d), rc = fmin(fmax(rho, 1 - eps), 1 + eps);
            total += fmax(-A[i] * rho, -A[i] * rc);
        }
    }
    return total / n;
}

START_TEST(rloo_loss_fd)
{
    enum { N = 6, T = 5 };
    uint8_t mask[N * T];
    const int len[N] = { 5, 3, 0, 1, 4, 2 };
    float lpn[N * T], lpo[N * T], A[N] = { 1.5f, -0.7f, 2.0f, -1.2f, 0.4f, 0.9f }, grad[N * T];
    align__rng g;
    align__rng_init(&g, 33, 0);
    for (int k = 0; k < N * T; k++) {
        mask[k] = (k % T) < len[k / T];
        lpo[k] = (float)urand(&g, -3, -0.2);
        lpn[k] = lpo[k] + (float)urand(&g, -0.12, 0.12);
    }
    for (int t = 0; t < T; t++)   /* row 0 (A > 0): rho ~ e^0.5, clipped at the top */
        lpn[t] = lpo[t] + 0.1f;
    for (int i = 0; i < N; i++) {  /* no row on a clip edge */
        double d = 0;
        for (int t = 0; t < len[i]; t++)
            d += (double)lpn[i * T + t] - lpo[i * T + t];
        ck_assert(fabs(exp(d) - 0.8) > 1e-3 && fabs(exp(d) - 1.2) > 1e-3);
    }
    for (int form = 0; form < 2; form++) {
        double eps = form ? 0.2 : 0.0, loss, cf;
        ck_assert_int_eq(align__rloo_loss(grad, &loss, &cf, lpn, lpo, A, mask, N, T, (float)eps, 0), ALIGN_OK);
        double x[N * T];
        for (int k = 0; k < N * T; k++)
            x[k] = lpn[k];
        close_to(loss, ref_rloo(x, lpo, A, mask, N, T, eps), 1e-6, "rloo loss", form);
        for (int k = 0; k < N * T; k++) {
            if (!mask[k]) {
                ck_assert(grad[k] == 0.0f);
                continue;
            }
            x[k] = (double)lpn[k] + FD_H;
            double up = ref_rloo(x, lpo, A, mask, N, T, eps);
            x[k] = (double)lpn[k] - FD_H;
            double dn = ref_rloo(x, lpo, A, mask, N, T, eps);
            x[k] = lpn[k];
            close_to(grad[k], (up - dn) / (2 * FD_H), 1e-5, "rloo grad", k);
        }
        if (!form)   /* REINFORCE: every token of row i gets -A_i / n */
            ck_assert(grad[0] == (float)(-1.5 / N));
        else
            ck_assert_msg(cf > 0, "no clipped row in the clipped form");
    }
}
END_TEST

/* ---- cross-check against PyTorch ------------------------------------------------------------
 * The expected numbers below were printed by this script (python3-torch 1.13 from Debian,
 * float64 autograd, written from TRL's formulas: the GAE loop of PPOTrainer, masked_whiten,
 * the clipped policy/value losses with masked_mean, GRPO's per-token loss with k3 and the
 * per-sequence mean):
 *
 *   import torch
 *   torch.set_printoptions(precision=9)
 *   f = lambda v: torch.tensor(v, dtype=torch.float32).double()
 *   L = [4, 2]; T = 4
 *   mask = torch.tensor([[t < l for t in range(T)] for l in L])
 *   r   = f([[0.1, -0.2, 0.05, 1.5], [0.3, -0.7, 0, 0]])
 *   v   = f([[0.5, 0.4, -0.1, 0.9], [0.2, 0.6, 0, 0]])
 *   lpo = f([[-1.0, -2.0, -0.5, -1.5], [-0.3, -2.2, 0, 0]])
 *   lpn = f([[-0.9, -2.3, -0.45, -1.2], [-0.35, -2.0, 0, 0]])
 *   lref= f([[-1.1, -1.8, -0.6, -1.4], [-0.2, -2.5, 0, 0]])
 *   vp  = f([[0.7, 0.1, -0.4, 1.0], [0.25, 0.3, 0, 0]])
 *   gamma, lam = 1.0, 0.95
 *   last = torch.zeros(2); advs = []
 *   for t in reversed(range(T)):
 *       nv = v[:, t + 1] if t < T - 1 else torch.zeros(2)
 *       delta = r[:, t] + gamma * nv - v[:, t]
 *       last = delta + gamma * lam * last
 *       advs.append(last)
 *   adv = torch.stack(advs[::-1], 1); ret = adv + v
 *   def masked_mean(x, m): return (x * m).sum() / m.sum()
 *   def masked_whiten(x, m, shift_mean=True):
 *       mean = masked_mean(x, m); var = masked_mean((x - mean) ** 2, m) * m.sum() / (m.sum() - 1)
 *       w = (x - mean) * torch.rsqrt(var + 1e-8)
 *       return w if shift_mean else w + mean
 *   wadv = torch.where(mask, masked_whiten(adv, mask), torch.zeros(()))
 *   m = mask.double()
 *   x = lpn.clone().requires_grad_(True)
 *   ratio = torch.exp(x - lpo)
 *   pg = torch.max(-wadv * ratio, -wadv * torch.clamp(ratio, 0.8, 1.2))
 *   pg_loss = masked_mean(pg, m); pg_loss.backward()
 *   y = vp.clone().requires_grad_(True)
 *   vc = torch.clamp(y, v - 0.2, v + 0.2)
 *   vf = 0.5 * masked_mean(torch.max((y - ret) ** 2, (vc - ret) ** 2), m); vf.backward()
 *   # GRPO: per-sequence advantage, k3 in the loss (beta 0.04), clip 0.2/0.28, per-sequence mean
 *   A = f([[1.2] * 4, [-0.8] * 4])
 *   z = lpn.clone().requires_grad_(True)
 *   rho = torch.exp(z - lpo)
 *   k3 = torch.exp(lref - z) - (lref - z) - 1
 *   tl = -torch.min(rho * A, torch.clamp(rho, 0.8, 1.28) * A) + 0.04 * k3
 *   g_loss = ((tl * m).sum(1) / m.sum(1)).mean(); g_loss.backward()
 *   P = lambda name, t: print(name, ", ".join("%.9g" % e for e in t.flatten().tolist()))
 *   P("adv", adv); P("ret", ret); P("wadv", wadv)
 *   P("pg_loss", pg_loss.detach().view(1)); P("pg_grad", x.grad)
 *   P("vf_loss", vf.detach().view(1)); P("vf_grad", y.grad)
 *   P("grpo_loss", g_loss.detach().view(1)); P("grpo_grad", z.grad)
 */
START_TEST(torch_cross_check)
{
    enum { N = 2, T = 4 };
    int32_t len[N] = { 4, 2 };
    uint8_t mask[N * T] = { 1, 1, 1, 1, 1, 1, 0, 0 };
    float r[N * T] = { 0.1f, -0.2f, 0.05f, 1.5f, 0.3f, -0.7f, 0, 0 };
    float v[N * T] = { 0.5f, 0.4f, -0.1f, 0.9f, 0.2f, 0.6f, 0, 0 };
    float lpo[N * T] = { -1.0f, -2.0f, -0.5f, -1.5f, -0.3f, -2.2f, 0, 0 };
    float lpn[N * T] = { -0.9f, -2.3f, -0.45f, -1.2f, -0.35f, -2.0f, 0, 0 };
    float lref[N * T] = { -1.1f, -1.8f, -0.6f, -1.4f, -0.2f, -2.5f, 0, 0 };
    float vp[N * T] = { 0.7f, 0.1f, -0.4f, 1.0f, 0.25f, 0.3f, 0, 0 };
    const double adv_w[] = { 0.797049998, 0.838999991, 1.62, 0.600000024, -0.534999979, -1.30000001, 0, 0 };
    const double ret_w[] = { 1.29705, 1.239, 1.52, 1.5, -0.334999976, -0.699999988, 0, 0 };
    const double wadv_w[] = { 0.434117812, 0.47368954, 1.21041244, 0.24823916, -0.822414473, -1.54404448, 0, 0 };
    const double pg_grad_w[] = { -0.0799623988, -0.0584863099, -0.212078605, 0, 0.130384143, 0.314316714, 0, 0 };
    const double vf_grad_w[] = { -0.0995083351, -0.189833333, -0.320000001, -0.0833333333, 0.0974999959, 0, 0, 0 };
    const double grpo_grad_w[] = { -0.164869302, -0.114366349, -0.156994212, 0.000906345942, 0.188627549,
                                   0.24821526, 0, 0 };
    float adv[N * T], ret[N * T], wadv[N * T], loss[N * T], dl[N * T], grad[N * T];
    ck_assert_int_eq(align__gae(adv, ret, r, v, len, N, T, 1.0f, 0.95f), ALIGN_OK);
    align__masked_whiten(wadv, adv, mask, N * T, 1, 1e-8f);
    for (int k = 0; k < N * T; k++) {
        close_to(adv[k], adv_w[k], 1e-6, "torch adv", k);
        close_to(ret[k], ret_w[k], 1e-6, "torch ret", k);
        close_to(wadv[k], wadv_w[k], 1e-6, "torch wadv", k);
    }
    align__ppo_params p = { 0.2f, 0.2f, 0.0f, 0.0f };
    align__agg_params tm = { ALIGN__AGG_TOKEN_MEAN, 0, 0, 0 };
    double agg;
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, NULL, lpn, lpo, NULL, wadv, mask, N * T, &p), ALIGN_OK);
    ck_assert_int_eq(align__rl_aggregate(grad, &agg, loss, dl, mask, N, T, 1.0f, &tm), ALIGN_OK);
    close_to(agg, 0.0445257108, 1e-5, "torch pg_loss", 0);
    for (int k = 0; k < N * T; k++)
        close_to(grad[k], pg_grad_w[k], 1e-5, "torch pg_grad", k);
    ck_assert_int_eq(align__ppo_value_loss(loss, dl, NULL, NULL, vp, v, ret, mask, N * T, 0.2f), ALIGN_OK);
    ck_assert_int_eq(align__rl_aggregate(grad, &agg, loss, dl, mask, N, T, 1.0f, &tm), ALIGN_OK);
    close_to(agg, 0.595201227, 1e-5, "torch vf_loss", 0);
    for (int k = 0; k < N * T; k++)
        close_to(grad[k], vf_grad_w[k], 1e-5, "torch vf_grad", k);
    float A[N * T] = { 1.2f, 1.2f, 1.2f, 1.2f, -0.8f, -0.8f, -0.8f, -0.8f };
    align__ppo_params gp = { 0.2f, 0.28f, 0.0f, 0.04f };
    align__agg_params sm = { ALIGN__AGG_SEQ_MEAN, 0, 0, 0 };
    ck_assert_int_eq(align__ppo_policy_loss(loss, dl, NULL, lpn, lpo, lref, A, mask, N * T, &gp), ALIGN_OK);
    ck_assert_int_eq(align__rl_aggregate(grad, &agg, loss, dl, mask, N, T, 1.0f, &sm), ALIGN_OK);
    close_to(agg, -0.18989451, 1e-5, "torch grpo_loss", 0);
    for (int k = 0; k < N * T; k++)
        close_to(grad[k], grpo_grad_w[k], 1e-5, "torch grpo_grad", k);
}
END_TEST

Suite *internal_rl_math_suite(void)
{
    Suite *s = suite_create("internal_rl_math");
    TCase *tc = test_tcase(s, "rl_math", 60);
    tcase_add_test(tc, kl_estimators);
    tcase_add_test(tc, ppo_rewards);
    tcase_add_test(tc, gae_matches_direct_sum);
    tcase_add_test(tc, whiten_matches_direct);
    tcase_add_test(tc, explained_variance);
    tcase_add_test(tc, ppo_policy_grad_fd);
    tcase_add_test(tc, ppo_clip_boundary);
    tcase_add_test(tc, value_loss_fd);
    tcase_add_test(tc, aggregate_modes_fd);
    tcase_add_test(tc, kl_controller);
    tcase_add_test(tc, grpo_advantages);
    tcase_add_test(tc, rloo_advantages);
    tcase_add_test(tc, rloo_loss_fd);
    tcase_add_test(tc, torch_cross_check);
    return s;
}
