/*
 * pref_loss.h — preference-optimisation objectives as pure functions
 * (private: align__ names). docs/preference.md has the formulas, defaults
 * and the advice on which loss to use.
 *
 * Every objective works on per-sequence log-probabilities of a response:
 * S = sum of the response tokens' log p(y_t | x, y_<t) under the policy
 * (and R the same under the frozen reference), with n the response length.
 * Losses that are length-normalised use S/n internally; whatever the form,
 * every gradient returned here is d loss / d S — PER SUM — so the trainer
 * spreads it onto the response tokens with align__pref_spread(..., sum form):
 * every token of the response receives the same value.
 *
 * Pipeline for one step (the trainer's part):
 *   align_model_forward(policy) -> token_logprobs  -> align__pref_reduce -> S
 *   align_model_forward(ref)    -> token_logprobs  -> align__pref_reduce -> R
 *   align__pref_pairs / _ranking / align__kto_loss -> loss, dL/dS
 *   align__pref_spread(dL/dS) -> d_token_logprobs  -> align_model_backward
 *
 * Errors: ALIGN_EINVAL (bad parameter, zero length where a loss divides by
 * it, bad span), ALIGN_ENONFINITE (a NaN or infinite log-prob). The detail
 * goes to eb (may be NULL) and to align_last_errmsg(). Outputs are written
 * only on success.
 */
#ifndef ALIGN_TRAIN_PREF_LOSS_H
#define ALIGN_TRAIN_PREF_LOSS_H

#include "core/core.h"

/* ---- pairwise losses ---------------------------------------------------- */

enum {
    ALIGN__PREF_SIGMOID = 0, /* DPO; with label_smoothing: cDPO (TRL "sigmoid") */
    ALIGN__PREF_ROBUST = 1,  /* robust DPO (Chowdhury et al. 2024), needs label_smoothing < 0.5 */
    ALIGN__PREF_IPO = 2,     /* IPO (Azar et al. 2023), on mean per-token log-probs */
    ALIGN__PREF_HINGE = 3,   /* SLiC-style hinge on the DPO margin */
    ALIGN__PREF_SIMPO = 4,   /* SimPO (Meng et al. 2024), reference-free, mean log-probs */
    ALIGN__PREF_ORPO = 5,    /* ORPO (Hong et al. 2024), reference-free, mean log-probs */
    ALIGN__PREF_N_LOSSES = 6
};

/* align__pref_params.flags */
#define ALIGN__PREF_LENGTH_NORM 0x1u /* sigmoid/robust/hinge on mean (S/n) instead of sum */

typedef struct align__pref_params {
    int32_t  loss;            /* ALIGN__PREF_* (default SIGMOID) */
    uint32_t flags;           /* ALIGN__PREF_LENGTH_NORM */
    double   beta;            /* > 0 (default 0.1); IPO's tau; ORPO's lambda */
    double   label_smoothing; /* sigmoid: [0, 0.5]; robust: [0, 0.5) (default 0) */
    double   simpo_gamma;     /* SimPO target margin gamma (default 0.5) */
    double   sft_alpha;       /* >= 0: adds alpha * NLL(chosen) (RPO; CPO's alpha) (default 0) */
} align__pref_params;

void align__pref_default_params(align__pref_params *p);
/* ALIGN_EINVAL with a message if p is out of range. */
int align__pref_check_params(align__errbuf *eb, const align__pref_params *p);
/* 1 if the loss uses a reference model (sigmoid, robust, ipo, hinge). */
int align__pref_needs_ref(int32_t loss);
/* 1 if the loss reduces log-probs by the mean (ipo, simpo, orpo, or the
 * LENGTH_NORM flag): the lengths must then be >= 1. */
int align__pref_length_normalised(const align__pref_params *p);

/* One pair's result. logp_* and rewards are in the form the loss uses (sum
 * or mean). Reference-free losses (simpo, orpo) report reward = beta*logp,
 * as TRL does. */
typedef struct align__pref_out {
    double loss;
    double d_chosen, d_rejected;   /* d loss / d S_w, d loss / d S_l (per sum) */
    double reward_chosen;          /* beta * (pi_w - ref_w) */
    double reward_rejected;        /* beta * (pi_l - ref_l) */
    double margin;                 /* reward_chosen - reward_rejected */
    double accuracy;               /* 1 if margin > 0 else 0 (means over a batch) */
    double logp_chosen, logp_rejected;
    double nll;                    /* -S_w / n_w (0 when n_w == 0) */
    double log_odds;               /* ORPO: log odds(y_w) - log odds(y_l); else 0 */
} align__pref_out;

/* One pair. pi_* / ref_* are per-sequence SUMS of response-token log-probs;
 * ref_* are ignored by reference-free losses. n_w, n_l are the response
 * lengths in tokens. */
int align__pref_pair(align__errbuf *eb, const align__pref_params *p, double pi_w, double pi_l,
                     double ref_w, double ref_l, int32_t n_w, int32_t n_l, align__pref_out *out);

/* A batch of n pairs: out gets the MEAN loss and metrics over pairs, and
 * d_w[i], d_l[i] = d (mean loss) / d S (i.e. already divided by n). ref_w
 * and ref_l may be NULL for reference-free losses. d_w / d_l may be NULL
 * (evaluation). */
int align__pref_pairs(align__errbuf *eb, const align__pref_params *p, int32_t n, const double *pi_w,
                      const double *pi_l, const double *ref_w, const double *ref_l, const int32_t *n_w,
                      const int32_t *n_l, double *d_w, double *d_l, align__pref_out *out);

/* ---- rankings of K >= 2 responses to one prompt --------------------------- */

enum {
    ALIGN__RANK_ALL_PAIRS = 0,      /* every strictly ordered pair, pairwise loss, mean */
    ALIGN__RANK_BEST_VS_REST = 1,   /* each best-ranked response against each worse one */
    ALIGN__RANK_PLACKETT_LUCE = 2   /* listwise (DPO paper, appendix A.3); ties: Breslow */
};

typedef struct align__rank_out {
    double loss;
    double accuracy;       /* pair modes: share of the pairs used whose margin > 0;
                              PL: share of strictly ordered pairs with beta*u agreeing */
    int32_t n_pairs;       /* strictly ordered pairs used (pair modes) / compared (PL) */
} align__rank_out;

/* rank[k] is response k's place (0 = best, equal values are ties). pi, ref,
 * len: per-response sums and lengths (ref NULL for reference-free pairwise
 * losses; Plackett-Luce needs ref). d_pi[k] = d loss / d S_k (may be NULL).
 * Pair modes: loss = mean of the pairwise loss (params p, including its
 * sft_alpha term on each pair's winner) over the pairs; a ranking with no
 * strictly ordered pair (all tied) has loss 0 and zero gradient. Plackett-
 * Luce: loss = -sum over responses of log softmax of beta*u over the
 * responses ranked at or below it, u = pi - ref (means with LENGTH_NORM);
 * p->loss is not used there. */
int align__pref_ranking(align__errbuf *eb, const align__pref_params *p, int32_t mode, int32_t k,
                        const int32_t *rank, const double *pi, const double *ref, const int32_t *len,
                        double *d_pi, align__rank_out *out);

/* ---- KTO (Ethayarajh et al. 2024, arXiv 2402.01306) ----------------------- */

typedef struct align__kto_params {
    double beta;               /* > 0 (default 0.1) */
    double desirable_weight;   /* lambda_D >= 0 (default 1) */
    double undesirable_weight; /* lambda_U >= 0 (default 1) */
} align__kto_params;

void align__kto_default_params(align__kto_params *p);

/* The mismatched pairing for the KL estimate of a batch of n examples:
 * prompt i is scored with completion_of[i] = (i - 1) mod n, the previous
 * example's completion (TRL's one-place rotation of the completions). With
 * n == 1 the only pairing is the matched one. */
int align__kto_kl_plan(align__errbuf *eb, int32_t n, int32_t *completion_of);

/* z0 = max(0, mean_i (pi_kl[i] - ref_kl[i])) over the mismatched pairs'
 * per-sequence sums. z0 is a constant for the loss (no gradient). */
int align__kto_kl_estimate(align__errbuf *eb, int32_t n, const double *pi_kl, const double *ref_kl,
                           double *z0_out);

typedef struct align__kto_out {
    double loss;                    /* mean over the n examples */
    double kl;                      /* z0 used */
    double reward_chosen, reward_rejected;  /* means of beta*(pi-ref) per class (0 if none) */
    double logp_chosen, logp_rejected;      /* means of pi per class (0 if none) */
    int32_t n_chosen, n_rejected;
} align__kto_out;

/* n unpaired examples: pi, ref per-sequence sums, desirable[i] 1/0. Loss
 * = mean_i w_i * (1 - v_i), v_i = sigma(beta*(r_i - z0)) for desirable and
 * sigma(beta*(z0 - r_i)) for undesirable, r_i = pi_i - ref_i. d_pi[i] =
 * d loss / d S_i (divided by n; may be NULL). */
int align__kto_loss(align__errbuf *eb, const align__kto_params *p, int32_t n, const double *pi,
                    const double *ref, const uint8_t *desirable, double z0, double *d_pi,
                    align__kto_out *out);

/* ---- between the model and the objectives --------------------------------
 * token_logprobs / d_token_logprobs are align_model_forward's layout
 * [n_seq][max_len-1], where entry t of a row is log p(tokens[t+1] | ..t).
 * A response occupying tokens [a, b) of its row therefore has the span
 * [start, end) = [a-1, b-1) here. Spans must satisfy 0 <= start <= end <=
 * max_len-1 (an empty span is allowed for sums, not for means). */
enum { ALIGN__PREF_SUM = 0, ALIGN__PREF_MEAN = 1 };

/* out[i] = sum (or mean) of token_logprobs[i][start[i]..end[i]) in double.
 * ALIGN_ENONFINITE if a log-prob in a span is not finite. */
int align__pref_reduce(align__errbuf *eb, double *out, const float *token_logprobs,
                       const int32_t *start, const int32_t *end, int32_t n_seq, int32_t max_len,
                       int form);

/* d_token_logprobs[i][t] += d_seq[i] (sum form) or d_seq[i] / len (mean
 * form) for t in the span; entries outside the spans are not touched. */
int align__pref_spread(align__errbuf *eb, float *d_token_logprobs, const double *d_seq,
                       const int32_t *start, const int32_t *end, int32_t n_seq, int32_t max_len,
                       int form);

#endif
