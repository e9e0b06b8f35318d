/*
 * reward_loss.h — the reward-model losses as pure functions (private).
 *
 * No model calls: each function takes the scores r the reward model gave
 * one prompt's responses and returns the loss and dL/dr, so the RM trainer
 * only runs forward, calls one of these, and feeds dL/dr to the scalar
 * head's backward. Arithmetic is in double, log σ through a stable softplus.
 */
#ifndef ALIGN_TRAIN_REWARD_LOSS_H
#define ALIGN_TRAIN_REWARD_LOSS_H

#include "core/core.h"

/* One prompt ranked with K responses (InstructGPT, Ouyang et al. 2022,
 * arXiv 2203.02155, §3.5): rank[i] is the place of response i (0 = best,
 * equal = tie; a tie gives no pair). Over the P ordered pairs w ≻ l
 * (rank[w] < rank[l]):
 *
 *   L = −(1/P) Σ_{w≻l} log σ(r_w − r_l − m_wl)  +  c · (1/K) Σ_i r_i²
 *
 * The 1/P makes each prompt count once, whatever its K (the paper's
 * averaging over C(K,2) comparisons of one prompt). margin, if not NULL, is
 * [K][K] with margin[w*K + l] the margin m_wl of the pair w ≻ l (Llama 2,
 * Touvron et al. 2023, §3.2.2); only the entries of ordered pairs are read.
 * center is c (the centering term of TRL's center_rewards_coefficient,
 * Eisenstein et al. 2023), 0 = off. With P == 0 (all tied) only the
 * centering term remains.
 *
 * Writes *loss and grad[i] = dL/dr_i (grad [K], overwritten); *n_pairs (may
 * be NULL) receives P. ALIGN_EINVAL for k < 1, NULL arrays, a rank outside
 * 0..k-1, or a non-finite score, margin or centre. */
int align__rm_loss_ranking(double *loss, float *grad, int32_t *n_pairs, const float *r,
                           const int32_t *rank, const float *margin, int32_t k, float center);

/* A binary label: L = −w · log σ(y·r) with y = +1 for good, −1 for bad
 * (logistic regression of the label on the score). grad = dL/dr. */
int align__rm_loss_label(double *loss, float *grad, float r, int32_t good, float weight);

/* A scalar target s: L = ½ · w · (r − s)² (regression). grad = dL/dr. */
int align__rm_loss_score(double *loss, float *grad, float r, float target, float weight);

/* Numerically stable −log σ(x) = softplus(−x), and σ(x). */
double align__rm_neg_log_sigmoid(double x);
double align__rm_sigmoid(double x);

#endif
