/*
 * pref_loss.c — preference-optimisation objectives (see pref_loss.h and
 * docs/preference.md). Pure functions of per-sequence log-probabilities, in
 * double precision; every gradient is d loss / d (sum of the response's
 * token log-probs).
 *
 * Papers:
 *   DPO           Rafailov et al. 2023, arXiv 2305.18290 (eq. 7; Plackett-Luce: appendix A.3)
 *   cDPO          Mitchell 2023, "A note on DPO with noisy preferences" (label smoothing)
 *   robust DPO    Chowdhury et al. 2024, arXiv 2403.00409 (eq. 6, unbiased loss)
 *   IPO           Azar et al. 2023, arXiv 2310.12036 (eq. 17)
 *   hinge / SLiC  Zhao et al. 2023, arXiv 2305.10425; Liu et al. 2023 (RSO), arXiv 2309.06657
 *   SimPO         Meng et al. 2024, arXiv 2405.14734 (eq. 6)
 *   ORPO          Hong et al. 2024, arXiv 2403.07691 (eq. 6-7)
 *   RPO (NLL)     Pang et al. 2024, arXiv 2404.19733 (DPO + NLL on the chosen response)
 *   KTO           Ethayarajh et al. 2024, arXiv 2402.01306 (eq. 8)
 *   ties (PL)     Breslow 1974, the tie approximation of the Cox partial likelihood
 */
#include "train/pref_loss.h"

#include <math.h>
#include <string.h>

/* ---- stable scalar helpers --------------------------------------------- */

/* log(1 + e^x) without overflow. */
static double softplus(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double sigmoid(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* log(1 - e^a) for a < 0 (Maechler 2012, "Accurately computing log(1 - exp(-|a|))"). */
static double log1mexp(double a)
{
    return a > -0.6931471805599453 ? log(-expm1(a)) : log1p(-exp(a));
}

/* ---- parameters ------------------------------------------------------------ */

void align__pref_default_params(align__pref_params *p)
{
    memset(p, 0, sizeof *p);
    p->loss = ALIGN__PREF_SIGMOID;
    p->beta = 0.1;
    p->label_smoothing = 0.0;
    p->simpo_gamma = 0.5;
    p->sft_alpha = 0.0;
}

int align__pref_check_params(align__errbuf *eb, const align__pref_params *p)
{
    if (!p)
        return align__error(eb, ALIGN_EINVAL, "preference loss: NULL params");
    if (p->loss < 0 || p->loss >= ALIGN__PREF_N_LOSSES)
        return align__error(eb, ALIGN_EINVAL, "preference loss: unknown loss type %d", (int)p->loss);
    if (p->flags & ~ALIGN__PREF_LENGTH_NORM)
        return align__error(eb, ALIGN_EINVAL, "preference loss: unknown flags 0x%x", (unsigned)p->flags);
    if (!(p->beta > 0) || !isfinite(p->beta))
        return align__error(eb, ALIGN_EINVAL, "preference loss: beta must be > 0 (got %g)", p->beta);
    double ls = p->label_smoothing;
    if (!(ls >= 0) || ls > 0.5 || (p->loss == ALIGN__PREF_ROBUST && ls >= 0.5))
        return align__error(eb, ALIGN_EINVAL, "preference loss: label_smoothing must be in [0, 0.5%s (got %g)",
                            p->loss == ALIGN__PREF_ROBUST ? ")" : "]", ls);
    if (ls > 0 && p->loss != ALIGN__PREF_SIGMOID && p->loss != ALIGN__PREF_ROBUST &&
        p->loss != ALIGN__PREF_SIMPO)
        return align__error(eb, ALIGN_EINVAL,
                            "preference loss: label_smoothing applies to sigmoid, robust and simpo only");
    if (!isfinite(p->simpo_gamma))
        return align__error(eb, ALIGN_EINVAL, "preference loss: simpo_gamma must be finite");
    if (!(p->sft_alpha >= 0) || !isfinite(p->sft_alpha))
        return align__error(eb, ALIGN_EINVAL, "preference loss: sft_alpha must be >= 0 (got %g)", p->sft_alpha);
    return ALIGN_OK;
}

int align__pref_needs_ref(int32_t loss)
{
    return loss == ALIGN__PREF_SIGMOID || loss == ALIGN__PREF_ROBUST || loss == ALIGN__PREF_IPO ||
           loss == ALIGN__PREF_HINGE;
}

int align__pref_length_normalised(const align__pref_params *p)
{
    return p->loss == ALIGN__PREF_IPO || p->loss == ALIGN__PREF_SIMPO || p->loss == ALIGN__PREF_ORPO ||
           (p->flags & ALIGN__PREF_LENGTH_NORM) != 0;
}

/* ---- one pair -------------------------------------------------------------- */

/* ORPO's mean log-prob is clamped below 0: at ell = 0 (probability 1) the
 * odds are infinite. Above the clamp the odds term has no gradient. */
#define ORPO_MAX_MEAN_LOGP (-1e-6)

static int check_finite(align__errbuf *eb, const char *what, double v)
{
    if (!isfinite(v))
        return align__error(eb, ALIGN_ENONFINITE, "preference loss: %s log-prob is not finite (%g)", what, v);
    return ALIGN_OK;
}

/* The pair loss without validating p (callers did). */
static int pair(align__errbuf *eb, const align__pref_params *p, double pi_w, double pi_l, double ref_w,
                double ref_l, int32_t n_w, int32_t n_l, align__pref_out *out)
{
    const int uses_ref = align__pref_needs_ref(p->loss);
    const int norm = align__pref_length_normalised(p);
    int rc;
    if ((rc = check_finite(eb, "chosen", pi_w)) || (rc = check_finite(eb, "rejected", pi_l)))
        return rc;
    if (uses_ref && ((rc = check_finite(eb, "reference chosen", ref_w)) ||
                     (rc = check_finite(eb, "reference rejected", ref_l))))
        return rc;
    if (n_w < 0 || n_l < 0)
        return align__error(eb, ALIGN_EINVAL, "preference loss: negative response length");
    if (norm && (n_w < 1 || n_l < 1))
        return align__error(eb, ALIGN_EINVAL,
                            "preference loss: a length-normalised loss needs responses of >= 1 token "
                            "(chosen %d, rejected %d)", (int)n_w, (int)n_l);
    if (p->sft_alpha > 0 && n_w < 1)
        return align__error(eb, ALIGN_EINVAL, "preference loss: the NLL term needs a chosen response of >= 1 token");

    /* x = the log-prob in the form the loss uses; c = dx/dS. */
    const double c_w = norm ? 1.0 / n_w : 1.0, c_l = norm ? 1.0 / n_l : 1.0;
    const double x_w = pi_w * c_w, x_l = pi_l * c_l;
    const double rx_w = uses_ref ? ref_w * c_w : 0.0, rx_l = uses_ref ? ref_l * c_l : 0.0;
    const double beta = p->beta, eps = p->label_smoothing;
    align__pref_out o;
    memset(&o, 0, sizeof o);
    o.logp_chosen = x_w;
    o.logp_rejected = x_l;
    o.reward_chosen = beta * (x_w - rx_w);
    o.reward_rejected = beta * (x_l - rx_l);
    o.margin = o.reward_chosen - o.reward_rejected;
    o.accuracy = o.margin > 0 ? 1.0 : 0.0;
    o.nll = n_w > 0 ? -pi_w / n_w : 0.0;

    /* dL/dx_w and dL/dx_l */
    double g_w = 0, g_l = 0;
    const double h = (x_w - rx_w) - (x_l - rx_l);
    switch (p->loss) {
    case ALIGN__PREF_SIGMOID: { /* DPO eq. 7; cDPO: (1-eps)(-log s(bh)) + eps(-log s(-bh)) */
        const double z = beta * h;
        o.loss = (1 - eps) * softplus(-z) + eps * softplus(z);
        double dz = -(1 - eps) * sigmoid(-z) + eps * sigmoid(z);
        g_w = beta * dz;
        g_l = -beta * dz;
        break;
    }
    case ALIGN__PREF_ROBUST: { /* Chowdhury et al. eq. 6: unbiased under flip rate eps */
        const double z = beta * h;
        o.loss = ((1 - eps) * softplus(-z) - eps * softplus(z)) / (1 - 2 * eps);
        double dz = (-(1 - eps) * sigmoid(-z) - eps * sigmoid(z)) / (1 - 2 * eps);
        g_w = beta * dz;
        g_l = -beta * dz;
        break;
    }
    case ALIGN__PREF_IPO: { /* Azar et al. eq. 17, tau = beta: (h - 1/(2 tau))^2 */
        const double d = h - 1.0 / (2.0 * beta);
        o.loss = d * d;
        g_w = 2 * d;
        g_l = -2 * d;
        break;
    }
    case ALIGN__PREF_HINGE: { /* max(0, 1 - beta h) */
        const double m = 1.0 - beta * h;
        o.loss = m > 0 ? m : 0.0;
        g_w = m > 0 ? -beta : 0.0;
        g_l = -g_w;
        break;
    }
    case ALIGN__PREF_SIMPO: { /* Meng et al. eq. 6: -log s(beta (x_w - x_l) - gamma) */
        const double z = beta * (x_w - x_l) - p->simpo_gamma;
        o.loss = (1 - eps) * softplus(-z) + eps * softplus(z);
        double dz = -(1 - eps) * sigmoid(-z) + eps * sigmoid(z);
        g_w = beta * dz;
        g_l = -beta * dz;
        break;
    }
    case ALIGN__PREF_ORPO: { /* Hong et al. eq. 6-7: NLL + lambda * (-log s(log odds_w - log odds_l)) */
        double lw = x_w, ll = x_l, dw = 1, dl = 1; /* d(clamped)/dx */
        if (lw > ORPO_MAX_MEAN_LOGP) { lw = ORPO_MAX_MEAN_LOGP; dw = 0; }
        if (ll > ORPO_MAX_MEAN_LOGP) { ll = ORPO_MAX_MEAN_LOGP; dl = 0; }
        /* log odds(l) = l - log(1 - e^l); its derivative is 1 / (1 - e^l) = -1/expm1(l) */
        const double z = (lw - log1mexp(lw)) - (ll - log1mexp(ll));
        o.log_odds = z;
        o.loss = -x_w + beta * softplus(-z);
        const double dz = -beta * sigmoid(-z);
        g_w = -1.0 + dz * dw * (-1.0 / expm1(lw));
        g_l = -dz * dl * (-1.0 / expm1(ll));
        break;
    }
    default:
        return align__error(eb, ALIGN_EINVAL, "preference loss: unknown loss type %d", (int)p->loss);
    }
    o.d_chosen = g_w * c_w;
    o.d_rejected = g_l * c_l;
    if (p->sft_alpha > 0) { /* RPO: + alpha * mean NLL of the chosen response */
        o.loss += p->sft_alpha * o.nll;
        o.d_chosen += -p->sft_alpha / n_w;
    }
    if (!isfinite(o.loss) || !isfinite(o.d_chosen) || !isfinite(o.d_rejected))
        return align__error(eb, ALIGN_ENONFINITE, "preference loss: non-finite result (loss %g)", o.loss);
    *out = o;
    return ALIGN_OK;
}

int align__pref_pair(align__errbuf *eb, const align__pref_params *p, double pi_w, double pi_l, double ref_w,
                     double ref_l, int32_t n_w, int32_t n_l, align__pref_out *out)
{
    int rc = align__pref_check_params(eb, p);
    if (rc)
        return rc;
    if (!out)
        return align__error(eb, ALIGN_EINVAL, "preference loss: NULL output");
    return pair(eb, p, pi_w, pi_l, ref_w, ref_l, n_w, n_l, out);
}

int align__pref_pairs(align__errbuf *eb, const align__pref_params *p, int32_t n, const double *pi_w,
                      const double *pi_l, const double *ref_w, const double *ref_l, const int32_t *n_w,
                      const int32_t *n_l, double *d_w, double *d_l, align__pref_out *out)
{
    int rc = align__pref_check_params(eb, p);
    if (rc)
        return rc;
    if (n < 1 || !pi_w || !pi_l || !n_w || !n_l || !out)
        return align__error(eb, ALIGN_EINVAL, "preference loss: empty batch or NULL array");
    if (align__pref_needs_ref(p->loss) && (!ref_w || !ref_l))
        return align__error(eb, ALIGN_EINVAL, "preference loss: this loss needs reference log-probs");
    /* Validate everything before writing any output. */
    align__pref_out sum, one;
    memset(&sum, 0, sizeof sum);
    for (int32_t i = 0; i < n; i++) {
        rc = pair(eb, p, pi_w[i], pi_l[i], ref_w ? ref_w[i] : 0, ref_l ? ref_l[i] : 0, n_w[i], n_l[i], &one);
        if (rc)
            return rc;
    }
    const double inv = 1.0 / n;
    for (int32_t i = 0; i < n; i++) {
        pair(eb, p, pi_w[i], pi_l[i], ref_w ? ref_w[i] : 0, ref_l ? ref_l[i] : 0, n_w[i], n_l[i], &one);
        sum.loss += one.loss;
        sum.reward_chosen += one.reward_chosen;
        sum.reward_rejected += one.reward_rejected;
        sum.margin += one.margin;
        sum.accuracy += one.accuracy;
        sum.logp_chosen += one.logp_chosen;
        sum.logp_rejected += one.logp_rejected;
        sum.nll += one.nll;
        sum.log_odds += one.log_odds;
        if (d_w)
            d_w[i] = one.d_chosen * inv;
        if (d_l)
            d_l[i] = one.d_rejected * inv;
    }
    out->loss = sum.loss * inv;
    out->d_chosen = out->d_rejected = 0; /* per-pair values are in d_w / d_l */
    out->reward_chosen = sum.reward_chosen * inv;
    out->reward_rejected = sum.reward_rejected * inv;
    out->margin = sum.margin * inv;
    out->accuracy = sum.accuracy * inv;
    out->logp_chosen = sum.logp_chosen * inv;
    out->logp_rejected = sum.logp_rejected * inv;
    out->nll = sum.nll * inv;
    out->log_odds = sum.log_odds * inv;
    return ALIGN_OK;
}

/* ---- rankings -------------------------------------------------------------- */

static int plackett_luce(align__errbuf *eb, const align__pref_params *p, int32_t k, const int32_t *rank,
                         const double *pi, const double *ref, const int32_t *len, double *d_pi,
                         align__rank_out *out)
{
    const int norm = (p->flags & ALIGN__PREF_LENGTH_NORM) != 0;
    double s_stack[64], *s = k <= 64 ? s_stack : align__malloc((size_t)k * 2 * sizeof(double));
    double g_stack[64], *g = k <= 64 ? g_stack : s + k;
    if (!s)
        return align__error(eb, ALIGN_ENOMEM, "preference loss: out of memory (K = %d)", (int)k);
    for (int32_t i = 0; i < k; i++) {
        double c = norm ? 1.0 / len[i] : 1.0;
        s[i] = p->beta * (pi[i] - ref[i]) * c;
        g[i] = 0;
    }
    /* Loss = sum_m [ lse_{j: rank_j >= rank_m} s_j - s_m ]  (DPO appendix A.3, eq. 20;
     * a tie group's members each face the same risk set: Breslow's approximation).
     * With distinct ranks the worst response's term is 0 and K = 2 is DPO. */
    double loss = 0;
    int32_t pairs = 0, agree = 0;
    for (int32_t m = 0; m < k; m++) {
        double mx = -INFINITY;
        for (int32_t j = 0; j < k; j++)
            if (rank[j] >= rank[m] && s[j] > mx)
                mx = s[j];
        double z = 0;
        for (int32_t j = 0; j < k; j++)
            if (rank[j] >= rank[m])
                z += exp(s[j] - mx);
        const double lse = mx + log(z);
        loss += lse - s[m];
        g[m] -= 1.0;
        for (int32_t j = 0; j < k; j++)
            if (rank[j] >= rank[m])
                g[j] += exp(s[j] - lse);
        for (int32_t j = 0; j < k; j++)
            if (rank[m] < rank[j]) {
                pairs++;
                agree += s[m] > s[j];
            }
    }
    if (!isfinite(loss)) {
        if (s != s_stack)
            align__free(s);
        return align__error(eb, ALIGN_ENONFINITE, "preference loss: non-finite Plackett-Luce loss");
    }
    if (d_pi)
        for (int32_t i = 0; i < k; i++)
            d_pi[i] = g[i] * p->beta * (norm ? 1.0 / len[i] : 1.0);
    out->loss = loss;
    out->n_pairs = pairs;
    out->accuracy = pairs ? (double)agree / pairs : 0.0;
    if (s != s_stack)
        align__free(s);
    return ALIGN_OK;
}

int align__pref_ranking(align__errbuf *eb, const align__pref_params *p, int32_t mode, int32_t k,
                        const int32_t *rank, const double *pi, const double *ref, const int32_t *len,
                        double *d_pi, align__rank_out *out)
{
    int rc = align__pref_check_params(eb, p);
    if (rc)
        return rc;
    if (k < 2 || !rank || !pi || !len || !out)
        return align__error(eb, ALIGN_EINVAL, "preference loss: a ranking needs K >= 2 responses (got %d) and arrays",
                            (int)k);
    if (mode != ALIGN__RANK_ALL_PAIRS && mode != ALIGN__RANK_BEST_VS_REST && mode != ALIGN__RANK_PLACKETT_LUCE)
        return align__error(eb, ALIGN_EINVAL, "preference loss: unknown ranking mode %d", (int)mode);
    const int need_ref = mode == ALIGN__RANK_PLACKETT_LUCE || align__pref_needs_ref(p->loss);
    if (need_ref && !ref)
        return align__error(eb, ALIGN_EINVAL, "preference loss: this ranking loss needs reference log-probs");
    int32_t best = rank[0];
    for (int32_t i = 0; i < k; i++) {
        if ((rc = check_finite(eb, "response", pi[i])) || (need_ref && (rc = check_finite(eb, "reference", ref[i]))))
            return rc;
        if (len[i] < 0)
            return align__error(eb, ALIGN_EINVAL, "preference loss: negative response length");
        best = ALIGN__MIN(best, rank[i]);
    }
    if (mode == ALIGN__RANK_PLACKETT_LUCE) {
        if (p->flags & ALIGN__PREF_LENGTH_NORM)
            for (int32_t i = 0; i < k; i++)
                if (len[i] < 1)
                    return align__error(eb, ALIGN_EINVAL, "preference loss: a length-normalised loss needs "
                                                          "responses of >= 1 token");
        return plackett_luce(eb, p, k, rank, pi, ref, len, d_pi, out);
    }
    /* Pair modes: validate all pairs first, then accumulate. */
    align__pref_out o;
    int32_t pairs = 0;
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j < k; j++) {
            if (!(rank[i] < rank[j]) || (mode == ALIGN__RANK_BEST_VS_REST && rank[i] != best))
                continue;
            rc = pair(eb, p, pi[i], pi[j], ref ? ref[i] : 0, ref ? ref[j] : 0, len[i], len[j], &o);
            if (rc)
                return rc;
            pairs++;
        }
    if (d_pi)
        for (int32_t i = 0; i < k; i++)
            d_pi[i] = 0;
    double loss = 0, agree = 0;
    const double inv = pairs ? 1.0 / pairs : 0.0;
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j < k; j++) {
            if (!(rank[i] < rank[j]) || (mode == ALIGN__RANK_BEST_VS_REST && rank[i] != best))
                continue;
            pair(eb, p, pi[i], pi[j], ref ? ref[i] : 0, ref ? ref[j] : 0, len[i], len[j], &o);
            loss += o.loss;
            agree += o.accuracy;
            if (d_pi) {
                d_pi[i] += o.d_chosen * inv;
                d_pi[j] += o.d_rejected * inv;
            }
        }
    out->loss = loss * inv;
    out->accuracy = agree * inv;
    out->n_pairs = pairs;
    return ALIGN_OK;
}

/* ---- KTO --------------------------------------------------------------------- */

void align__kto_default_params(align__kto_params *p)
{
    p->beta = 0.1;
    p->desirable_weight = 1.0;
    p->undesirable_weight = 1.0;
}

int align__kto_kl_plan(align__errbuf *eb, int32_t n, int32_t *completion_of)
{
    if (n < 1 || !completion_of)
        return align__error(eb, ALIGN_EINVAL, "KTO: the KL plan needs a batch of >= 1 examples");
    for (int32_t i = 0; i < n; i++)
        completion_of[i] = (i + n - 1) % n;
    return ALIGN_OK;
}

int align__kto_kl_estimate(align__errbuf *eb, int32_t n, const double *pi_kl, const double *ref_kl,
                           double *z0_out)
{
    if (n < 1 || !pi_kl || !ref_kl || !z0_out)
        return align__error(eb, ALIGN_EINVAL, "KTO: the KL estimate needs >= 1 mismatched pair");
    double s = 0;
    for (int32_t i = 0; i < n; i++) {
        int rc;
        if ((rc = check_finite(eb, "KL policy", pi_kl[i])) || (rc = check_finite(eb, "KL reference", ref_kl[i])))
            return rc;
        s += pi_kl[i] - ref_kl[i];
    }
    s /= n;
    /* KTO paper section 4.1: the reference point is max(0, KL estimate). */
    *z0_out = s > 0 ? s : 0.0;
    return ALIGN_OK;
}

int align__kto_loss(align__errbuf *eb, const align__kto_params *p, int32_t n, const double *pi, const double *ref,
                    const uint8_t *desirable, double z0, double *d_pi, align__kto_out *out)
{
    if (!p || !(p->beta > 0) || !isfinite(p->beta))
        return align__error(eb, ALIGN_EINVAL, "KTO: beta must be > 0");
    if (!(p->desirable_weight >= 0) || !(p->undesirable_weight >= 0) || !isfinite(p->desirable_weight) ||
        !isfinite(p->undesirable_weight))
        return align__error(eb, ALIGN_EINVAL, "KTO: class weights must be finite and >= 0");
    if (n < 1 || !pi || !ref || !desirable || !out)
        return align__error(eb, ALIGN_EINVAL, "KTO: empty batch or NULL array");
    if (!isfinite(z0))
        return align__error(eb, ALIGN_ENONFINITE, "KTO: KL reference point is not finite (%g)", z0);
    for (int32_t i = 0; i < n; i++) {
        int rc;
        if ((rc = check_finite(eb, "KTO policy", pi[i])) || (rc = check_finite(eb, "KTO reference", ref[i])))
            return rc;
    }
    align__kto_out o;
    memset(&o, 0, sizeof o);
    o.kl = z0;
    const double beta = p->beta, inv = 1.0 / n;
    for (int32_t i = 0; i < n; i++) {
        const double r = pi[i] - ref[i];
        double a, w, sign;
        if (desirable[i]) {
            a = beta * (r - z0), w = p->desirable_weight, sign = -1.0;
            o.n_chosen++;
            o.reward_chosen += beta * r;
            o.logp_chosen += pi[i];
        } else {
            a = beta * (z0 - r), w = p->undesirable_weight, sign = 1.0;
            o.n_rejected++;
            o.reward_rejected += beta * r;
            o.logp_rejected += pi[i];
        }
        /* 1 - sigma(a) = sigma(-a); d/da = -sigma(a) sigma(-a); da/dr = +-beta. */
        const double v = sigmoid(a), nv = sigmoid(-a);
        o.loss += w * nv;
        if (d_pi)
            d_pi[i] = sign * w * beta * v * nv * inv;
    }
    o.loss *= inv;
    if (o.n_chosen) {
        o.reward_chosen /= o.n_chosen;
        o.logp_chosen /= o.n_chosen;
    }
    if (o.n_rejected) {
        o.reward_rejected /= o.n_rejected;
        o.logp_rejected /= o.n_rejected;
    }
    *out = o;
    return ALIGN_OK;
}

/* ---- model layout helpers ------------------------------------------------------- */

static int check_spans(align__errbuf *eb, const int32_t *start, const int32_t *end, int32_t n_seq,
                       int32_t max_len, int form)
{
    if (n_seq < 1 || max_len < 2 || !start || !end)
        return align__error(eb, ALIGN_EINVAL, "preference loss: bad layout (n_seq %d, max_len %d)", (int)n_seq,
                            (int)max_len);
    if (form != ALIGN__PREF_SUM && form != ALIGN__PREF_MEAN)
        return align__error(eb, ALIGN_EINVAL, "preference loss: unknown reduction %d", form);
    for (int32_t i = 0; i < n_seq; i++) {
        if (start[i] < 0 || start[i] > end[i] || end[i] > max_len - 1)
            return align__error(eb, ALIGN_EINVAL, "preference loss: span %d [%d, %d) outside [0, %d)", (int)i,
                                (int)start[i], (int)end[i], (int)(max_len - 1));
        if (form == ALIGN__PREF_MEAN && start[i] == end[i])
            return align__error(eb, ALIGN_EINVAL, "preference loss: empty span %d cannot be averaged", (int)i);
    }
    return ALIGN_OK;
}

int align__pref_reduce(align__errbuf *eb, double *out, const float *token_logprobs, const int32_t *start,
                       const int32_t *end, int32_t n_seq, int32_t max_len, int form)
{
    int rc = check_spans(eb, start, end, n_seq, max_len, form);
    if (rc)
        return rc;
    if (!out || !token_logprobs)
        return align__error(eb, ALIGN_EINVAL, "preference loss: NULL array");
    const size_t stride = (size_t)max_len - 1;
    for (int32_t i = 0; i < n_seq; i++) {
        const float *row = token_logprobs + (size_t)i * stride;
        for (int32_t t = start[i]; t < end[i]; t++)
            if (!isfinite(row[t]))
                return align__error(eb, ALIGN_ENONFINITE, "preference loss: log-prob [%d][%d] is not finite (%g)",
                                    (int)i, (int)t, (double)row[t]);
    }
    for (int32_t i = 0; i < n_seq; i++) {
        const float *row = token_logprobs + (size_t)i * stride;
        double s = 0;
        for (int32_t t = start[i]; t < end[i]; t++)
            s += row[t];
        out[i] = form == ALIGN__PREF_MEAN ? s / (end[i] - start[i]) : s;
    }
    return ALIGN_OK;
}

int align__pref_spread(align__errbuf *eb, float *d_token_logprobs, const double *d_seq, const int32_t *start,
                       const int32_t *end, int32_t n_seq, int32_t max_len, int form)
{
    int rc = check_spans(eb, start, end, n_seq, max_len, form);
    if (rc)
        return rc;
    if (!d_token_logprobs || !d_seq)
        return align__error(eb, ALIGN_EINVAL, "preference loss: NULL array");
    for (int32_t i = 0; i < n_seq; i++)
        if (!isfinite(d_seq[i]))
            return align__error(eb, ALIGN_ENONFINITE, "preference loss: gradient %d is not finite", (int)i);
    const size_t stride = (size_t)max_len - 1;
    for (int32_t i = 0; i < n_seq; i++) {
        float *row = d_token_logprobs + (size_t)i * stride;
        const double g = form == ALIGN__PREF_MEAN ? d_seq[i] / (end[i] - start[i]) : d_seq[i];
        for (int32_t t = start[i]; t < end[i]; t++)
            row[t] += (float)g;
    }
    return ALIGN_OK;
}
