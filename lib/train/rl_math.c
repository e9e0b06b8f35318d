/* rl_math.c — per-token mathematics of PPO, GRPO and RLOO (see rl_math.h and
 * docs/rl.md). Pure functions: no allocation, double accumulation in index
 * order, padding selected away rather than multiplied by 0. */
#include "train/rl_math.h"

#include <math.h>
#include <string.h>

static int bad_dims(int64_t n, int64_t T)
{
    return n < 0 || T < 0 || (T > 0 && n > INT64_MAX / T);
}

/* ---- KL estimators (Schulman 2020, "Approximating KL divergence") ---------- */

double align__kl_token(int kind, double logp_policy, double logp_ref, double clamp, double *dk)
{
    double l = logp_policy - logp_ref, v, d;
    switch (kind) {
    case ALIGN__KL_K1: v = l; d = 1.0; break;
    case ALIGN__KL_K2: v = 0.5 * l * l; d = l; break;
    case ALIGN__KL_K3: {
        /* exp(-l) - 1 + l, with expm1 so that small l keeps its precision */
        double em = expm1(-l);
        v = em + l;
        d = -em;              /* 1 - exp(-l) */
        break;
    }
    default: v = NAN; d = NAN; break;
    }
    if (clamp > 0 && (v > clamp || v < -clamp)) {
        v = v > clamp ? clamp : -clamp;
        d = 0.0;
    }
    if (dk)
        *dk = d;
    return v;
}

int align__kl_tokens(float *kl, float *dkl, double *mean_seq_sum, const float *logp, const float *ref_logp,
                     const uint8_t *mask, int32_t n, int32_t T, int kind, float clamp)
{
    if (kind < ALIGN__KL_K1 || kind > ALIGN__KL_K3 || bad_dims(n, T) || !kl || !logp || !ref_logp || !mask)
        return ALIGN_EINVAL;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double row = 0.0;
        for (int32_t t = 0; t < T; t++) {
            size_t k = (size_t)i * (size_t)T + (size_t)t;
            if (!mask[k]) {
                kl[k] = 0.0f;
                if (dkl)
                    dkl[k] = 0.0f;
                continue;
            }
            double d;
            double v = align__kl_token(kind, logp[k], ref_logp[k], clamp, &d);
            kl[k] = (float)v;
            if (dkl)
                dkl[k] = (float)d;
            row += v;
        }
        total += row;
    }
    if (mean_seq_sum)
        *mean_seq_sum = n > 0 ? total / n : 0.0;
    return ALIGN_OK;
}

/* ---- reward shaping (Ziegler et al. 2019; Ouyang et al. 2022 §3.5) --------- */

int align__ppo_rewards(float *rewards, float *scores_out, align__reward_stats *stats, const float *kl,
                       const float *scores, const uint8_t *ended, const int32_t *len, int32_t n,
                       int32_t T, const align__reward_params *p)
{
    if (bad_dims(n, T) || !rewards || !kl || !scores || !len || !p || !(p->beta >= 0) ||
        !isfinite(p->beta) || !isfinite(p->score_clip) || !isfinite(p->missing_eos_penalty))
        return ALIGN_EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (len[i] < 0 || len[i] > T)
            return ALIGN_EINVAL;
    double sum_score = 0.0, sum_nonscore = 0.0, sum_kl = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float *r = rewards + (size_t)i * (size_t)T;
        const float *k = kl + (size_t)i * (size_t)T;
        double s = scores[i];
        if (p->score_clip > 0)
            s = s > p->score_clip ? p->score_clip : (s < -p->score_clip ? -p->score_clip : s);
        if (ended && !ended[i])
            s -= p->missing_eos_penalty;
        double row_kl = 0.0, row_ns = 0.0;
        for (int32_t t = 0; t < T; t++) {
            if (t >= len[i]) {
                r[t] = 0.0f;
                continue;
            }
            double ns = -(double)p->beta * k[t];
            row_kl += k[t];
            row_ns += ns;
            r[t] = (float)(t == len[i] - 1 ? ns + s : ns);
        }
        if (scores_out)
            scores_out[i] = (float)s;
        sum_score += s;
        sum_nonscore += row_ns;
        sum_kl += row_kl;
    }
    if (stats) {
        double inv = n > 0 ? 1.0 / n : 0.0;
        stats->scores = sum_score * inv;
        stats->non_score_reward = sum_nonscore * inv;
        stats->rlhf_reward = stats->scores + stats->non_score_reward;
        stats->kl = sum_kl * inv;
    }
    return ALIGN_OK;
}

/* ---- GAE (Schulman et al. 2016, arXiv 1506.02438) ----------------------------- */

int align__gae(float *adv, float *ret, const float *rewards, const float *values, const int32_t *len,
               int32_t n, int32_t T, float gamma, float lambda)
{
    if (bad_dims(n, T) || !adv || !ret || !rewards || !values || !len || !isfinite(gamma) ||
        !isfinite(lambda) || gamma < 0 || lambda < 0)
        return ALIGN_EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (len[i] < 0 || len[i] > T)
            return ALIGN_EINVAL;
    const double gl = (double)gamma * (double)lambda;
    for (int32_t i = 0; i < n; i++) {
        size_t o = (size_t)i * (size_t)T;
        for (int32_t t = len[i]; t < T; t++) {
            adv[o + t] = 0.0f;
            ret[o + t] = 0.0f;
        }
        double last = 0.0;
        for (int32_t t = len[i] - 1; t >= 0; t--) {
            double next_v = t + 1 < len[i] ? (double)values[o + t + 1] : 0.0;
            double delta = (double)rewards[o + t] + (double)gamma * next_v - (double)values[o + t];
            last = delta + gl * last;
            adv[o + t] = (float)last;
            ret[o + t] = (float)(last + (double)values[o + t]);
        }
    }
    return ALIGN_OK;
}

/* ---- masked statistics --------------------------------------------------------- */

void align__masked_mean_var(double *mean, double *var, int64_t *count_out, const float *x,
                            const uint8_t *mask, int64_t n, int unbiased)
{
    double s = 0.0;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            s += x[i];
            c++;
        }
    double m = c > 0 ? s / (double)c : 0.0;
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            double d = x[i] - m;
            ss += d * d;
        }
    double v = 0.0;
    if (c > 1)
        v = unbiased ? ss / (double)(c - 1) : ss / (double)c;
    if (mean)
        *mean = m;
    if (var)
        *var = v;
    if (count_out)
        *count_out = c;
}

void align__masked_whiten(float *out, const float *x, const uint8_t *mask, int64_t n, int shift_mean,
                          float eps)
{
    double m, v;
    int64_t c;
    align__masked_mean_var(&m, &v, &c, x, mask, n, 1);
    double scale = 1.0 / sqrt(v + (double)eps);
    for (int64_t i = 0; i < n; i++) {
        if (c == 0 || (mask && !mask[i])) {
            out[i] = 0.0f;
            continue;
        }
        double w = ((double)x[i] - m) * scale;
        out[i] = (float)(shift_mean ? w : w + m);
    }
}

double align__explained_variance(const float *val, const float *ret, const uint8_t *mask, int64_t n)
{
    double s_r = 0.0, s_d = 0.0;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            s_r += ret[i];
            s_d += (double)ret[i] - (double)val[i];
            c++;
        }
    if (c < 2)
        return 0.0;
    double m_r = s_r / (double)c, m_d = s_d / (double)c, v_r = 0.0, v_d = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            double a = ret[i] - m_r, b = ((double)ret[i] - (double)val[i]) - m_d;
            v_r += a * a;
            v_d += b * b;
        }
    return v_r > 0 ? 1.0 - v_d / v_r : 0.0;
}

/* ---- PPO clipped surrogate (Schulman et al. 2017), clip-higher (DAPO),
 *      dual clip (Ye et al. 2020), GRPO's k3 term (Shao et al. 2024) ---------- */

int align__ppo_policy_loss(float *loss, float *dloss, align__ppo_stats *stats, const float *logp_new,
                           const float *logp_old, const float *ref_logp, const float *adv,
                           const uint8_t *mask, int64_t n, const align__ppo_params *p)
{
    if (n < 0 || !loss || !dloss || !logp_new || !logp_old || !adv || !mask || !p)
        return ALIGN_EINVAL;
    if (!(p->eps_low >= 0 && p->eps_low < 1) || !(p->eps_high >= 0) || !isfinite(p->eps_high) ||
        !isfinite(p->dual_clip) || !(p->kl_beta >= 0) || !isfinite(p->kl_beta) ||
        (p->kl_beta > 0 && !ref_logp))
        return ALIGN_EINVAL;
    const double lo = 1.0 - (double)p->eps_low, hi = 1.0 + (double)p->eps_high;
    const int dual = p->dual_clip > 1.0f;
    int64_t c = 0, n_clip = 0, n_low = 0, n_high = 0, n_dual = 0;
    double s_akl = 0, s_akl2 = 0, s_ratio = 0, s_ratio2 = 0, s_loss = 0, s_kl = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!mask[i]) {
            loss[i] = 0.0f;
            dloss[i] = 0.0f;
            continue;
        }
        double d = (double)logp_new[i] - (double)logp_old[i];
        double rho = exp(d), A = adv[i];
        double rc = rho < lo ? lo : (rho > hi ? hi : rho);
        double a = -A * rho, b = -A * rc, L, g;
        if (b > a) {          /* the clipped term is active: constant in logp_new */
            L = b;
            g = 0.0;
            n_clip++;
            if (rho < lo)
                n_low++;
            else
                n_high++;
        } else {
            L = a;
            g = -A * rho;
        }
        if (dual && A < 0) {
            double cap = -(double)p->dual_clip * A;
            if (L > cap) {
                L = cap;
                g = 0.0;
                n_dual++;
            }
        }
        s_loss += L;
        if (p->kl_beta > 0) {
            double dk;
            double k3 = align__kl_token(ALIGN__KL_K3, logp_new[i], ref_logp[i], 0.0, &dk);
            L += (double)p->kl_beta * k3;
            g += (double)p->kl_beta * dk;
            s_kl += k3;
        }
        loss[i] = (float)L;
        dloss[i] = (float)g;
        c++;
        s_akl += (rho - 1.0) - d;
        s_akl2 += 0.5 * d * d;
        s_ratio += rho;
        s_ratio2 += rho * rho;
    }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->tokens = c;
        if (c > 0) {
            double inv = 1.0 / (double)c;
            stats->clipfrac = (double)n_clip * inv;
            stats->clip_low = (double)n_low * inv;
            stats->clip_high = (double)n_high * inv;
            stats->dual_clipfrac = (double)n_dual * inv;
            stats->approxkl = s_akl * inv;
            stats->approxkl_sq = s_akl2 * inv;
            stats->ratio = s_ratio * inv;
            double rv = s_ratio2 * inv - stats->ratio * stats->ratio;
            stats->ratio_var = rv > 0 ? rv : 0.0;
            stats->loss = s_loss * inv;
            stats->kl = s_kl * inv;
        }
    }
    return ALIGN_OK;
}

int align__ppo_value_loss(float *loss, float *dloss, double *clipfrac, double *mean_loss, const float *v,
                          const float *v_old, const float *ret, const uint8_t *mask, int64_t n,
                          float eps_v)
{
    if (n < 0 || !loss || !dloss || !v || !ret || !mask || !isfinite(eps_v) || (eps_v > 0 && !v_old))
        return ALIGN_EINVAL;
    int64_t c = 0, n_clip = 0;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!mask[i]) {
            loss[i] = 0.0f;
            dloss[i] = 0.0f;
            continue;
        }
        double V = v[i], R = ret[i], vc = V;
        if (eps_v > 0) {
            double vo = v_old[i];
            vc = V < vo - eps_v ? vo - eps_v : (V > vo + eps_v ? vo + eps_v : V);
        }
        double l1 = (V - R) * (V - R), l2 = (vc - R) * (vc - R), L, g;
        if (l2 > l1) {        /* clipped, so vc is constant in V */
            L = 0.5 * l2;
            g = 0.0;
            n_clip++;
        } else {
            L = 0.5 * l1;
            g = V - R;
        }
        loss[i] = (float)L;
        dloss[i] = (float)g;
        s += L;
        c++;
    }
    if (clipfrac)
        *clipfrac = c > 0 ? (double)n_clip / (double)c : 0.0;
    if (mean_loss)
        *mean_loss = c > 0 ? s / (double)c : 0.0;
    return ALIGN_OK;
}

/* ---- aggregation ------------------------------------------------------------------ */

int align__rl_aggregate(float *grad_out, double *loss_out, const float *loss, const float *dloss,
                        const uint8_t *mask, int32_t n, int32_t T, float coef, const align__agg_params *p)
{
    if (bad_dims(n, T) || !grad_out || !loss || !dloss || !mask || !p || !isfinite(coef) ||
        p->mode < ALIGN__AGG_TOKEN_MEAN || p->mode > ALIGN__AGG_CONSTANT || p->const_len < 0 ||
        !(p->tokens_total >= 0) || !(p->rows_total >= 0))
        return ALIGN_EINVAL;
    double rows = p->rows_total > 0 ? p->rows_total : (double)n;
    double total = 0.0;
    if (p->mode == ALIGN__AGG_SEQ_MEAN) {
        for (int32_t i = 0; i < n; i++) {
            size_t o = (size_t)i * (size_t)T;
            int64_t cnt = 0;
            double row = 0.0;
            for (int32_t t = 0; t < T; t++)
                if (mask[o + t]) {
                    cnt++;
                    row += loss[o + t];
                }
            double scale = (double)coef / ((double)(cnt > 0 ? cnt : 1) * rows);
            for (int32_t t = 0; t < T; t++)
                grad_out[o + t] = mask[o + t] ? (float)(dloss[o + t] * scale) : 0.0f;
            total += row * scale;
        }
        if (loss_out)
            *loss_out = total;
        return ALIGN_OK;
    }
    int64_t N = (int64_t)n * T, cnt = 0;
    double sum = 0.0;
    for (int64_t k = 0; k < N; k++)
        if (mask[k]) {
            cnt++;
            sum += loss[k];
        }
    double denom;
    if (p->mode == ALIGN__AGG_TOKEN_MEAN)
        denom = p->tokens_total > 0 ? p->tokens_total : (double)cnt;
    else
        denom = rows * (double)(p->const_len > 0 ? p->const_len : T);
    double scale = denom > 0 ? (double)coef / denom : 0.0;
    for (int64_t k = 0; k < N; k++)
        grad_out[k] = mask[k] ? (float)(dloss[k] * scale) : 0.0f;
    if (loss_out)
        *loss_out = sum * scale;
    return ALIGN_OK;
}

/* ---- adaptive KL controller (Ziegler et al. 2019, arXiv 1909.08593) ----------- */

int align__kl_ctl_init(align__kl_ctl *c, double beta, int adaptive, double target, double horizon)
{
    if (!c || !(beta >= 0) || !isfinite(beta) || !isfinite(target) || !isfinite(horizon) ||
        (adaptive && (!(target > 0) || !(horizon > 0))))
        return ALIGN_EINVAL;
    c->beta = beta;
    c->target = target;
    c->horizon = horizon;
    c->adaptive = adaptive ? 1 : 0;
    return ALIGN_OK;
}

int align__kl_ctl_update(align__kl_ctl *c, double kl, int64_t n_steps)
{
    if (!c || !isfinite(kl) || n_steps < 0)
        return ALIGN_EINVAL;
    if (!c->adaptive)
        return ALIGN_OK;
    double e = kl / c->target - 1.0;
    e = e < -0.2 ? -0.2 : (e > 0.2 ? 0.2 : e);
    c->beta *= 1.0 + e * (double)n_steps / c->horizon;
    return ALIGN_OK;
}

static void put_u32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *b)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}
static void put_f64(uint8_t *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}
static double get_f64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

#define KL_CTL_VERSION 1u

void align__kl_ctl_save(const align__kl_ctl *c, uint8_t out[ALIGN__KL_CTL_BYTES])
{
    memcpy(out, "AKLC", 4);
    put_u32(out + 4, KL_CTL_VERSION);
    put_u32(out + 8, (uint32_t)(c->adaptive ? 1 : 0));
    put_u32(out + 12, 0);
    put_f64(out + 16, c->beta);
    put_f64(out + 24, c->target);
    put_f64(out + 32, c->horizon);
}

int align__kl_ctl_load(align__kl_ctl *c, const uint8_t *in, size_t len)
{
    if (!c || !in)
        return ALIGN_EINVAL;
    if (len != ALIGN__KL_CTL_BYTES || memcmp(in, "AKLC", 4) != 0)
        return ALIGN_EFORMAT;
    if (get_u32(in + 4) != KL_CTL_VERSION)
        return ALIGN_EVERSION;
    uint32_t adaptive = get_u32(in + 8);
    if (adaptive > 1 || get_u32(in + 12) != 0)
        return ALIGN_EFORMAT;
    align__kl_ctl t;
    if (align__kl_ctl_init(&t, get_f64(in + 16), (int)adaptive, get_f64(in + 24), get_f64(in + 32)) != ALIGN_OK)
        return ALIGN_EFORMAT;
    *c = t;
    return ALIGN_OK;
}

/* ---- GRPO group advantages (Shao et al. 2024, arXiv 2402.03300; Dr. GRPO,
 *      Liu et al. 2025, arXiv 2503.20783, for the unscaled variant) --------------- */

#define ZERO_STD 1e-8

static int same_group(const int32_t *group, int32_t i, int32_t j)
{
    return !group || group[i] == group[j];
}

/* Whether i is the first sample of its group (the group was not seen before). */
static int first_of_group(const int32_t *group, int32_t i)
{
    if (!group)
        return i == 0;
    for (int32_t j = 0; j < i; j++)
        if (group[j] == group[i])
            return 0;
    return 1;
}

int align__grpo_advantages(float *adv, double *frac_zero_std, const float *rewards, const int32_t *group,
                           int32_t n, uint32_t flags, float eps)
{
    if (n < 0 || !adv || !rewards || !(eps >= 0) || !isfinite(eps) ||
        (flags & ~(ALIGN__GRPO_NO_STD | ALIGN__GRPO_BATCH_STD)) != 0 ||
        (flags & ALIGN__GRPO_NO_STD && flags & ALIGN__GRPO_BATCH_STD))
        return ALIGN_EINVAL;
    double batch_std = 0.0;
    if (flags & ALIGN__GRPO_BATCH_STD) {
        double v;
        align__masked_mean_var(NULL, &v, NULL, rewards, NULL, n, 1);
        batch_std = sqrt(v);
    }
    int64_t zero = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!first_of_group(group, i))
            continue;
        double s = 0.0;
        int64_t c = 0;
        for (int32_t j = i; j < n; j++)
            if (same_group(group, i, j)) {
                s += rewards[j];
                c++;
            }
        double m = s / (double)c, ss = 0.0;
        for (int32_t j = i; j < n; j++)
            if (same_group(group, i, j)) {
                double d = rewards[j] - m;
                ss += d * d;
            }
        double std = c > 1 ? sqrt(ss / (double)(c - 1)) : 0.0;
        if (std <= ZERO_STD)
            zero += c;
        double den = 1.0;
        if (!(flags & ALIGN__GRPO_NO_STD))
            den = (flags & ALIGN__GRPO_BATCH_STD ? batch_std : std) + (double)eps;
        for (int32_t j = i; j < n; j++)
            if (same_group(group, i, j)) {
                double d = (double)rewards[j] - m;
                /* d == 0 whenever den == 0 (all equal, eps 0): 0, never 0/0 */
                adv[j] = den > 0 ? (float)(d / den) : 0.0f;
            }
    }
    if (frac_zero_std)
        *frac_zero_std = n > 0 ? (double)zero / (double)n : 0.0;
    return ALIGN_OK;
}

/* ---- RLOO (Ahmadian et al. 2024, arXiv 2402.14740; Kool et al. 2019) ------------ */

int align__rloo_advantages(float *adv, float *reward_out, const float *scores, const float *kl_sum, float beta,
                           const int32_t *group, int32_t n)
{
    if (n < 0 || !adv || !scores || !isfinite(beta))
        return ALIGN_EINVAL;
    for (int32_t i = 0; i < n; i++) {
        if (!first_of_group(group, i))
            continue;
        double s = 0.0;
        int64_t c = 0;
        for (int32_t j = i; j < n; j++)
            if (same_group(group, i, j)) {
                s += (double)scores[j] - (kl_sum ? (double)beta * kl_sum[j] : 0.0);
                c++;
            }
        if (c < 2)
            return ALIGN_EINVAL;
        for (int32_t j = i; j < n; j++)
            if (same_group(group, i, j)) {
                double r = (double)scores[j] - (kl_sum ? (double)beta * kl_sum[j] : 0.0);
                double b = (s - r) / (double)(c - 1);
                adv[j] = (float)(r - b);
                if (reward_out)
                    reward_out[j] = (float)r;
            }
    }
    return ALIGN_OK;
}

int align__rloo_loss(float *grad, double *loss_out, double *clipfrac, const float *logp_new,
                     const float *logp_old, const float *adv, const uint8_t *mask, int32_t n, int32_t T,
                     float eps, double rows_total)
{
    if (bad_dims(n, T) || !grad || !logp_new || !adv || !mask || !isfinite(eps) || !(rows_total >= 0) ||
        (eps > 0 && (!logp_old || eps >= 1)))
        return ALIGN_EINVAL;
    double rows = rows_total > 0 ? rows_total : (double)n, total = 0.0;
    int64_t n_clip = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t o = (size_t)i * (size_t)T;
        double A = adv[i], L, g;
        if (eps <= 0) {
            double s = 0.0;
            for (int32_t t = 0; t < T; t++)
                if (mask[o + t])
                    s += logp_new[o + t];
            L = -A * s;
            g = -A;
        } else {
            double d = 0.0;
            for (int32_t t = 0; t < T; t++)
                if (mask[o + t])
                    d += (double)logp_new[o + t] - (double)logp_old[o + t];
            double rho = exp(d), rc = rho < 1.0 - eps ? 1.0 - eps : (rho > 1.0 + eps ? 1.0 + eps : rho);
            double a = -A * rho, b = -A * rc;
            if (b > a) {
                L = b;
                g = 0.0;
                n_clip++;
            } else {
                L = a;
                g = -A * rho;
            }
        }
        total += L;
        for (int32_t t = 0; t < T; t++)
            grad[o + t] = mask[o + t] ? (float)(g / rows) : 0.0f;
    }
    if (loss_out)
        *loss_out = rows > 0 ? total / rows : 0.0;
    if (clipfrac)
        *clipfrac = n > 0 ? (double)n_clip / (double)n : 0.0;
    return ALIGN_OK;
}
