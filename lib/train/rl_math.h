/*
 * rl_math.h — the per-token mathematics of online RL (PPO, GRPO, RLOO) as
 * pure functions (private to libalign; documented in docs/rl.md).
 *
 * Layout. Every per-token array is response-major [n][T]: row i holds the
 * response tokens of sample i at t = 0 .. len[i]-1 (T = row stride, the
 * longest response). Either a length per row (int32_t len[n], GAE and the
 * reward shaping, which need "the last token") or a mask (uint8_t mask[n][T],
 * 1 = the token counts) says which entries are real. Entries outside are
 * never read for arithmetic (masking selects, it never multiplies, so a NaN
 * in padding cannot leak) and are written as 0.
 *
 * Token log-probs are the model's log p(y_t | x, y_<t) (align_model_forward's
 * token_logprobs, moved to the response layout by the trainer). Each loss is
 * given per token together with d(loss)/d(logp_new) (and d(loss)/d(V) for the
 * value loss); align__rl_aggregate turns those into the step's loss and the
 * gradients handed to align_model_backward.
 *
 * Sums are accumulated in double in index order: results are deterministic
 * and independent of the thread count. No function allocates.
 */
#ifndef ALIGN_TRAIN_RL_MATH_H
#define ALIGN_TRAIN_RL_MATH_H

#include "core/core.h"

/* ---- KL estimators (Schulman 2020, "Approximating KL divergence") ----------
 * With l = logp_policy - logp_ref (samples from the policy):
 *   k1 = l                     unbiased, may be negative
 *   k2 = l^2 / 2               biased, >= 0
 *   k3 = exp(-l) - 1 + l       unbiased, >= 0 (GRPO's loss term)
 * clamp > 0 clamps the estimate to [-clamp, clamp] (OpenRLHF uses 10); where
 * the clamp is active the derivative is 0. */
enum { ALIGN__KL_K1 = 1, ALIGN__KL_K2 = 2, ALIGN__KL_K3 = 3 };

/* The estimate for one token; *dk (may be NULL) = d(estimate)/d(logp_policy):
 * 1, l, 1 - exp(-l) for k1, k2, k3. Unknown kind -> NaN. */
double align__kl_token(int kind, double logp_policy, double logp_ref, double clamp, double *dk);

/* kl[n][T] (and dkl, may be NULL) for the tokens with mask set, 0 elsewhere.
 * *mean_seq_sum (may be NULL) = mean over the n rows of sum_t kl (TRL's
 * objective/kl). ALIGN_EINVAL on a bad kind or size. */
int align__kl_tokens(float *kl, float *dkl, double *mean_seq_sum, const float *logp, const float *ref_logp,
                     const uint8_t *mask, int32_t n, int32_t T, int kind, float clamp);

/* ---- PPO reward shaping (Ziegler et al. 2019; Ouyang et al. 2022 §3.5) -----
 *   r_t = -beta * kl_t              for t < len[i]
 *   r_{len-1} += score'_i           (the last real token; nothing if len = 0)
 * score'_i = clip(score_i, -score_clip, score_clip) (score_clip > 0), then
 * minus missing_eos_penalty when ended[i] == 0 (TRL's missing_eos_penalty;
 * ended may be NULL = every response ended). kl comes from align__kl_tokens. */
typedef struct align__reward_params {
    float beta;                 /* KL coefficient (TRL PPO 0.05, InstructGPT 0.02) */
    float score_clip;           /* <= 0: no clipping */
    float missing_eos_penalty;  /* subtracted from the score of unended responses; 0 = off */
} align__reward_params;

typedef struct align__reward_stats {
    double scores;              /* mean adjusted score: objective/scores */
    double non_score_reward;    /* mean over rows of sum_t -beta*kl_t: objective/non_score_reward */
    double rlhf_reward;         /* scores + non_score_reward: objective/rlhf_reward */
    double kl;                  /* mean over rows of sum_t kl_t: objective/kl */
} align__reward_stats;

/* rewards[n][T]; scores_out[n] (may be NULL) receives score'. stats may be NULL.
 * ALIGN_EINVAL on bad sizes/lengths. */
int align__ppo_rewards(float *rewards, float *scores_out, align__reward_stats *stats, const float *kl,
                       const float *scores, const uint8_t *ended, const int32_t *len, int32_t n,
                       int32_t T, const align__reward_params *p);

/* ---- GAE (Schulman et al. 2016, arXiv 1506.02438) ---------------------------
 * delta_t = r_t + gamma*V_{t+1} - V_t, with V_{len} = 0 (nothing is read past
 * a row's end); A_t = sum_{l>=0} (gamma*lambda)^l delta_{t+l} (by the backward
 * recursion A_t = delta_t + gamma*lambda*A_{t+1}); R_t = A_t + V_t. adv and
 * ret are [n][T], 0 past len. */
int align__gae(float *adv, float *ret, const float *rewards, const float *values, const int32_t *len,
               int32_t n, int32_t T, float gamma, float lambda);

/* ---- masked statistics ------------------------------------------------------
 * Mean and variance over the entries with mask set (mask NULL = all n*T).
 * unbiased != 0 applies Bessel's correction count/(count-1) as TRL's
 * masked_var; with count <= 1 the variance is 0. *count_out may be NULL. */
void align__masked_mean_var(double *mean, double *var, int64_t *count_out, const float *x,
                            const uint8_t *mask, int64_t n, int unbiased);

/* TRL's masked_whiten: out = (x - mean) / sqrt(var + eps) (unbiased var over
 * the masked entries, eps 1e-8), plus mean again when shift_mean == 0; out
 * is 0 where mask is 0. out may equal x. No masked entry: out = 0. */
void align__masked_whiten(float *out, const float *x, const uint8_t *mask, int64_t n, int shift_mean,
                          float eps);

/* 1 - Var(ret - val) / Var(ret) over the masked entries (value-function
 * quality: 1 perfect, 0 no better than a constant, < 0 worse). 0 when
 * Var(ret) == 0 or fewer than 2 entries. */
double align__explained_variance(const float *val, const float *ret, const uint8_t *mask, int64_t n);

/* ---- PPO clipped surrogate (Schulman et al. 2017, arXiv 1707.06347) ---------
 * rho = exp(logp_new - logp_old);
 *   L = max(-A*rho, -A*clip(rho, 1 - eps_low, 1 + eps_high))
 * eps_high > eps_low is DAPO's clip-higher (Yu et al. 2025, arXiv 2503.14476).
 * dual_clip c > 1 (Ye et al. 2020, arXiv 1912.09729) bounds the loss of
 * negative advantages: for A < 0, L = min(L, -c*A). dL/dlogp_new = -A*rho
 * where the unclipped branch is the active one, else 0.
 * GRPO (Shao et al. 2024, arXiv 2402.03300) adds beta*k3(logp_new - logp_ref)
 * per token (in the loss, not the reward); its derivative is
 * beta*(1 - exp(logp_ref - logp_new)). */
typedef struct align__ppo_params {
    float eps_low;     /* 0.2 */
    float eps_high;    /* 0.2 (DAPO: 0.28) */
    float dual_clip;   /* <= 1: off (typical 3) */
    float kl_beta;     /* GRPO's k3 coefficient in the loss; 0 = none (ref_logp unused) */
} align__ppo_params;

/* Means over the masked tokens of one call (sums would be token-weighted). */
typedef struct align__ppo_stats {
    int64_t tokens;
    double clipfrac;        /* share where the clipped term is strictly larger (active): policy/clipfrac_avg */
    double clip_low;        /* share with rho < 1 - eps_low and A < 0 (clipped at the bottom) */
    double clip_high;       /* share with rho > 1 + eps_high and A > 0 (clipped at the top) */
    double dual_clipfrac;   /* share where the dual clip is active */
    double approxkl;        /* mean (rho - 1) - log rho  (k3 of old vs new) */
    double approxkl_sq;     /* mean 1/2 (logp_new - logp_old)^2 (what TRL logs as policy/approxkl_avg) */
    double ratio;           /* mean rho: val/ratio */
    double ratio_var;       /* population variance of rho: val/ratio_var */
    double loss;            /* token mean of the surrogate alone: loss/policy_avg */
    double kl;              /* token mean of k3 (only with kl_beta != 0) */
} align__ppo_stats;

/* loss[n*T] and dloss[n*T] per token (0 where mask is 0); ref_logp may be
 * NULL when kl_beta == 0; stats may be NULL. ALIGN_EINVAL on bad params. */
int align__ppo_policy_loss(float *loss, float *dloss, align__ppo_stats *stats, const float *logp_new,
                           const float *logp_old, const float *ref_logp, const float *adv,
                           const uint8_t *mask, int64_t n, const align__ppo_params *p);

/* Clipped value loss (as TRL/OpenAI baselines):
 *   L = 1/2 max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2)
 * eps_v <= 0 disables clipping (L = 1/2 (V - R)^2). dloss = dL/dV. *clipfrac
 * (may be NULL) = share of masked tokens where the clipped term is strictly
 * larger (val/clipfrac_avg); *mean_loss (may be NULL) the token mean. */
int align__ppo_value_loss(float *loss, float *dloss, double *clipfrac, double *mean_loss, const float *v,
                          const float *v_old, const float *ret, const uint8_t *mask, int64_t n,
                          float eps_v);

/* ---- loss aggregation -----------------------------------------------------------
 *   TOKEN_MEAN  sum over masked tokens / tokens         (TRL PPO, DAPO, GRPO "bnpo"/"dapo")
 *   SEQ_MEAN    mean over rows of (row sum / max(row tokens, 1))  (GRPO paper)
 *   CONSTANT    sum / (rows * const_len)                (Dr. GRPO, Liu et al. 2025, arXiv 2503.20783)
 * For a step split into micro-batches, give the step's totals: tokens_total
 * (TOKEN_MEAN) and rows_total (SEQ_MEAN, CONSTANT); 0 = this call's. */
enum { ALIGN__AGG_TOKEN_MEAN = 0, ALIGN__AGG_SEQ_MEAN = 1, ALIGN__AGG_CONSTANT = 2 };
typedef struct align__agg_params {
    int32_t mode;          /* ALIGN__AGG_* */
    int32_t const_len;     /* CONSTANT: the normaliser per row (max completion length); 0 = T */
    double  tokens_total;  /* 0 = masked tokens of this call */
    double  rows_total;    /* 0 = n */
} align__agg_params;

/* grad_out[n][T] = coef * d(aggregate)/d(token) (grad_out may equal dloss,
 * 0 where mask is 0); *loss_out = coef * aggregate (computed in double).
 * ALIGN_EINVAL on a bad mode or size. */
int align__rl_aggregate(float *grad_out, double *loss_out, const float *loss, const float *dloss,
                        const uint8_t *mask, int32_t n, int32_t T, float coef, const align__agg_params *p);

/* ---- adaptive KL controller (Ziegler et al. 2019, arXiv 1909.08593) ----------
 *   e = clip(kl / target - 1, -0.2, 0.2);  beta <- beta * (1 + e * n_steps / horizon)
 * A fixed controller (adaptive = 0) keeps beta. */
typedef struct align__kl_ctl {
    double  beta;
    double  target;     /* e.g. 6 (old TRL) */
    double  horizon;    /* e.g. 10000 */
    int32_t adaptive;
} align__kl_ctl;

int  align__kl_ctl_init(align__kl_ctl *c, double beta, int adaptive, double target, double horizon);
/* kl: observed KL (per sequence); n_steps: samples it was measured on. */
int  align__kl_ctl_update(align__kl_ctl *c, double kl, int64_t n_steps);
#define ALIGN__KL_CTL_BYTES 40
/* Little-endian, versioned: magic "AKLC", version, adaptive, beta, target, horizon. */
void align__kl_ctl_save(const align__kl_ctl *c, uint8_t out[ALIGN__KL_CTL_BYTES]);
/* ALIGN_EFORMAT on a bad size/magic/value, ALIGN_EVERSION on an unknown
 * version (c unchanged either way). */
int  align__kl_ctl_load(align__kl_ctl *c, const uint8_t *in, size_t len);

/* ---- GRPO group advantages (Shao et al. 2024) ---------------------------------
 * A_i = (r_i - mean_g) / (std_g + eps), the mean and the unbiased std over the
 * samples with group id g = group[i] (TRL: torch.std, eps 1e-4). Flags:
 * NO_STD (Dr. GRPO / TRL scale_rewards "none"): A_i = r_i - mean_g;
 * BATCH_STD (TRL scale_rewards "batch"): std over all n rewards.
 * A group of one sample has std 0 and advantage 0. *frac_zero_std (may be
 * NULL) = share of samples whose group std is <= 1e-8 (frac_reward_zero_std).
 * Groups need not be contiguous; O(n^2) in the worst case, no allocation. */
#define ALIGN__GRPO_NO_STD    0x1u
#define ALIGN__GRPO_BATCH_STD 0x2u
int align__grpo_advantages(float *adv, double *frac_zero_std, const float *rewards, const int32_t *group,
                           int32_t n, uint32_t flags, float eps);

/* ---- RLOO (Ahmadian et al. 2024, arXiv 2402.14740) ------------------------------
 * r_i = score_i - beta * kl_sum_i (kl_sum = sum_t k1, NULL = 0; no gradient
 * through it); b_i = mean of the other rewards of its group; A_i = r_i - b_i.
 * Every group needs >= 2 samples (ALIGN_EINVAL otherwise). reward_out (may be
 * NULL) receives r_i. */
int align__rloo_advantages(float *adv, float *reward_out, const float *scores, const float *kl_sum, float beta,
                           const int32_t *group, int32_t n);

/* Sequence-level policy gradient for RLOO, averaged over rows_total rows
 * (0 = n): with eps <= 0 REINFORCE, L_i = -A_i * sum_t logp_new (every masked
 * token's gradient -A_i); with eps > 0 the clipped sequence-ratio form
 * rho_i = exp(sum_t (logp_new - logp_old)), L_i = max(-A_i rho_i,
 * -A_i clip(rho_i, 1 - eps, 1 + eps)) (gradient -A_i rho_i per token when the
 * unclipped branch is active). grad[n][T] is the final gradient (0 outside
 * mask); *loss_out the mean; *clipfrac (may be NULL) the share of clipped rows. */
int align__rloo_loss(float *grad, double *loss_out, double *clipfrac, const float *logp_new,
                     const float *logp_old, const float *adv, const uint8_t *mask, int32_t n, int32_t T,
                     float eps, double rows_total);

#endif
