/* reward_loss.c — see reward_loss.h. */
#include "train/reward_loss.h"

#include <math.h>

double align__rm_sigmoid(double x)
{
    if (x >= 0) {
        double e = exp(-x);
        return 1.0 / (1.0 + e);
    }
    double e = exp(x);
    return e / (1.0 + e);
}

/* −log σ(x) = log(1 + e^{−x}) = max(−x, 0) + log1p(e^{−|x|}): no overflow
 * for any finite x, and exact to rounding for large |x|. */
double align__rm_neg_log_sigmoid(double x)
{
    double z = -x;
    return (z > 0 ? z : 0.0) + log1p(exp(-fabs(z)));
}

int align__rm_loss_ranking(double *loss, float *grad, int32_t *n_pairs, const float *r,
                           const int32_t *rank, const float *margin, int32_t k, float center)
{
    if (n_pairs)
        *n_pairs = 0;
    if (!loss || !grad || !r || !rank)
        return align__error(NULL, ALIGN_EINVAL, "reward loss: NULL argument");
    if (k < 1)
        return align__error(NULL, ALIGN_EINVAL, "reward loss: k = %d must be >= 1", k);
    if (!isfinite(center))
        return align__error(NULL, ALIGN_EINVAL, "reward loss: the centering coefficient is not finite");
    for (int32_t i = 0; i < k; i++) {
        if (rank[i] < 0 || rank[i] >= k)
            return align__error(NULL, ALIGN_EINVAL, "reward loss: rank[%d] = %d is outside 0..%d", i,
                                rank[i], k - 1);
        if (!isfinite(r[i]))
            return align__error(NULL, ALIGN_ENONFINITE, "reward loss: score %d is not finite", i);
    }
    int64_t P = 0;
    for (int32_t w = 0; w < k; w++)
        for (int32_t l = 0; l < k; l++)
            if (rank[w] < rank[l]) {
                P++;
                if (margin && !isfinite(margin[(int64_t)w * k + l]))
                    return align__error(NULL, ALIGN_EINVAL, "reward loss: margin[%d][%d] is not finite",
                                        w, l);
            }
    double L = 0.0;
    double *g = align__calloc((size_t)k, sizeof *g);
    if (!g)
        return align__error(NULL, ALIGN_ENOMEM, "reward loss: out of memory for %d scores", k);
    if (P > 0) {
        double inv = 1.0 / (double)P;
        for (int32_t w = 0; w < k; w++)
            for (int32_t l = 0; l < k; l++) {
                if (rank[w] >= rank[l])
                    continue;
                double m = margin ? (double)margin[(int64_t)w * k + l] : 0.0;
                double x = (double)r[w] - (double)r[l] - m;
                L += inv * align__rm_neg_log_sigmoid(x);
                /* d/dx −log σ(x) = −σ(−x) */
                double d = -inv * align__rm_sigmoid(-x);
                g[w] += d;
                g[l] -= d;
            }
    }
    if (center != 0.0f) {
        double c = (double)center / (double)k;
        for (int32_t i = 0; i < k; i++) {
            L += c * (double)r[i] * (double)r[i];
            g[i] += 2.0 * c * (double)r[i];
        }
    }
    for (int32_t i = 0; i < k; i++)
        grad[i] = (float)g[i];
    align__free(g);
    *loss = L;
    if (n_pairs)
        *n_pairs = (int32_t)P;
    return ALIGN_OK;
}

int align__rm_loss_label(double *loss, float *grad, float r, int32_t good, float weight)
{
    if (!loss || !grad)
        return align__error(NULL, ALIGN_EINVAL, "reward loss: NULL argument");
    if (!isfinite(r) || !isfinite(weight))
        return align__error(NULL, ALIGN_ENONFINITE, "reward loss: score or weight is not finite");
    double y = good ? 1.0 : -1.0, x = y * (double)r;
    *loss = (double)weight * align__rm_neg_log_sigmoid(x);
    *grad = (float)(-(double)weight * y * align__rm_sigmoid(-x));
    return ALIGN_OK;
}

int align__rm_loss_score(double *loss, float *grad, float r, float target, float weight)
{
    if (!loss || !grad)
        return align__error(NULL, ALIGN_EINVAL, "reward loss: NULL argument");
    if (!isfinite(r) || !isfinite(target) || !isfinite(weight))
        return align__error(NULL, ALIGN_ENONFINITE, "reward loss: score, target or weight is not finite");
    double d = (double)r - (double)target;
    *loss = 0.5 * (double)weight * d * d;
    *grad = (float)((double)weight * d);
    return ALIGN_OK;
}
