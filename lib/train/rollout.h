/*
 * rollout.h — the rollout buffer of online RL (private to libalign).
 *
 * N sampled responses with everything PPO/GRPO/RLOO compute about them, in
 * the response-major layout of rl_math.h: per-token arrays are [n][max_resp],
 * response token t of sample i at [i][t], valid for t < resp_len[i] and 0
 * beyond. The trainer writes the arrays directly (they are plain members).
 *
 * The buffer also carries a deterministic minibatch x epoch iterator: epoch
 * e visits the n samples in a Fisher-Yates order drawn from Philox
 * (seed, stream) at counter e * 2^32, so an epoch's order is a pure function
 * of (seed, stream, e) and the iterator's whole state is a few integers.
 *
 * align__rollout_save writes a versioned little-endian blob (header, the
 * valid prefix of every row, an FNV-1a 64 checksum); align__rollout_load
 * rebuilds a buffer from it bit for bit, iterator position included, and
 * rejects anything inconsistent with ALIGN_EFORMAT (ALIGN_EVERSION for a
 * well-formed blob of an unknown version).
 */
#ifndef ALIGN_TRAIN_ROLLOUT_H
#define ALIGN_TRAIN_ROLLOUT_H

#include "core/core.h"

typedef struct align__rollout_iter {
    uint64_t seed, stream;
    int32_t  mb_size;    /* 0: not started */
    int32_t  n_epochs;
    int32_t  epoch;      /* current epoch; n_epochs when finished */
    int32_t  pos;        /* next position in the epoch's order */
} align__rollout_iter;

typedef struct align__rollout {
    int32_t  n, max_prompt, max_resp;
    int32_t *prompt_len;   /* [n], >= 1 once set */
    int32_t *prompt;       /* [n][max_prompt] */
    int32_t *resp_len;     /* [n] */
    int32_t *resp;         /* [n][max_resp] */
    uint8_t *mask;         /* [n][max_resp]: 1 = token in the loss */
    float   *logp_old;     /* [n][max_resp] policy log-probs at sampling time */
    float   *logp_ref;     /* [n][max_resp] reference log-probs */
    float   *values;       /* [n][max_resp] V(s_t) at sampling time */
    float   *rewards;      /* [n][max_resp] shaped per-token rewards */
    float   *adv;          /* [n][max_resp] advantages */
    float   *ret;          /* [n][max_resp] returns */
    float   *scores;       /* [n] sequence scores */
    int32_t *group;        /* [n] prompt group (GRPO/RLOO) */
    uint8_t *ended;        /* [n] 1 = the response ended with end-of-turn */
    align__rollout_iter iter;
    int32_t *order;        /* [n] the current epoch's order (derived from iter) */
} align__rollout;

/* All arrays zeroed. ALIGN_EINVAL for n, max_prompt, max_resp < 1 or too large
 * (n * (max_prompt + max_resp) above 2^28). */
int  align__rollout_create(align__rollout **out, int32_t n, int32_t max_prompt, int32_t max_resp,
                           align__errbuf *eb);
void align__rollout_free(align__rollout *r);
/* Zeroes every sample and stops the iterator. */
void align__rollout_clear(align__rollout *r);

/* Copies sample i's tokens (prompt_len 1..max_prompt, resp_len 0..max_resp,
 * ids >= 0), sets its group and ended flag, the mask to 1 on the response
 * and zeroes the row's padding. Per-token values are left to the caller. */
int  align__rollout_set_sample(align__rollout *r, int32_t i, const int32_t *prompt, int32_t prompt_len,
                               const int32_t *resp, int32_t resp_len, int32_t group, int ended,
                               align__errbuf *eb);

/* ---- minibatch x epoch iterator ----------------------------------------------------- */
int  align__rollout_iter_start(align__rollout *r, int32_t mb_size, int32_t n_epochs, uint64_t seed,
                               uint64_t stream);
/* Next minibatch: idx[0..*count) (mb_size entries room; the last one of an
 * epoch may be short when mb_size does not divide n). ALIGN_DONE after the
 * last epoch; ALIGN_EMISUSE before iter_start. Each epoch covers every sample
 * exactly once. */
int  align__rollout_iter_next(align__rollout *r, int32_t *idx, int32_t *count);
void align__rollout_iter_get(const align__rollout *r, align__rollout_iter *out);
/* All-or-nothing; ALIGN_EINVAL if the state does not fit this buffer. */
int  align__rollout_iter_set(align__rollout *r, const align__rollout_iter *s);

/* ---- minibatch views -------------------------------------------------------------------
 * Model rows for samples idx[0..count): tokens [count][max_len] = prompt then
 * response then 0, lengths [count]. ALIGN_EINVAL if a sample does not fit. */
int  align__rollout_batch(const align__rollout *r, const int32_t *idx, int32_t count, int32_t max_len,
                          int32_t *tokens, int32_t *lengths);
/* Rows of a per-token array: dst[k][t] = src[idx[k]][t] ([count][max_resp]). */
void align__rollout_rows_f(const align__rollout *r, float *dst, const float *src, const int32_t *idx,
                           int32_t count);
void align__rollout_rows_u8(const align__rollout *r, uint8_t *dst, const uint8_t *src, const int32_t *idx,
                            int32_t count);
/* Between the model's layout and the minibatch response layout [count][max_resp].
 * In the model's outputs for row k (sample idx[k]), response token t sits at
 * position prompt_len + t - 1: token_logprobs predict it there, and the scalar
 * (value) head at that position is V(s_t), the state before y_t. stride is the
 * model row length: max_len - 1 for token_logprobs, max_len for the scalar
 * head. Entries with no counterpart are written 0. ALIGN_EINVAL if a sample
 * does not fit max_len or stride < max_len - 1. */
int  align__rollout_model_to_resp(const align__rollout *r, float *dst_resp, const float *src_model,
                                  const int32_t *idx, int32_t count, int32_t max_len, int32_t stride);
int  align__rollout_resp_to_model(const align__rollout *r, float *dst_model, const float *src_resp,
                                  const int32_t *idx, int32_t count, int32_t max_len, int32_t stride);

/* ---- serialisation ------------------------------------------------------------------------ */
size_t align__rollout_blob_size(const align__rollout *r);
/* ALIGN_ERANGE if cap < align__rollout_blob_size(r). */
int  align__rollout_save(const align__rollout *r, void *buf, size_t cap);
/* A new buffer from a blob; *out = NULL and a message in eb on failure. */
int  align__rollout_load(align__rollout **out, const void *blob, size_t len, align__errbuf *eb);

#endif
