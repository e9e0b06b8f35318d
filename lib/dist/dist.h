/*
 * dist.h — data-parallel training over a host communicator (align_dist in
 * align.h; docs/distributed.md). Private: what trainer.c and the algorithms
 * call. Without align_trainer_set_dist (or with one rank) every function
 * here is the identity: rank 0 of 1, the share is everything, no message.
 *
 * Every function that communicates is collective: all ranks call it in the
 * same order. Control decisions (a failed micro-batch, a stop request, a
 * non-finite loss, the host's on_step verdict) are AGREED before anything is
 * applied, so the ranks never diverge and never wait for a rank that gave up.
 */
#ifndef ALIGN_DIST_DIST_H
#define ALIGN_DIST_DIST_H

#include "train/trainer.h"

static inline int32_t align__dist_rank(const align_trainer *tr) { return tr->dist_on ? tr->dist.rank : 0; }
static inline int32_t align__dist_size(const align_trainer *tr) { return tr->dist_on ? tr->dist.size : 1; }

/* Rank r's contiguous share [*lo, *hi) of n items: the first n % size ranks
 * get one more. Deterministic, the same on every rank. */
void align__dist_share(const align_trainer *tr, int64_t n, int64_t *lo, int64_t *hi);

/* After accumulate (rc its result, a stop already polled into it): agrees
 * on the outcome and sums ctx->sums and ctx->tokens_processed over the
 * ranks (rank order). Returns ALIGN_OK, ALIGN_DONE when every rank ran out
 * of data, or a negative code on every rank when any rank failed (the
 * first failing rank's code; its message names the rank). nonfinite is
 * or-ed, empty and-ed. */
int align__dist_after_accumulate(align_trainer *tr, int rc, align__step_ctx *ctx);

/* Sums every trainable role's gradients over the ranks (in buckets). */
int align__dist_reduce_grads(align_trainer *tr);

/* Agrees on a host verdict (on_step's result): the lowest over the ranks
 * (negative = discard everywhere; ALIGN_DONE anywhere = finish). */
int align__dist_agree_verdict(align_trainer *tr, int verdict, int *agreed);

/* v[0..n) := the sum over the ranks, in rank order (identical everywhere). */
int align__dist_sum_f64(align_trainer *tr, double *v, int32_t n);

/* Every rank's n doubles into all[size][n] (rank order). */
int align__dist_allgather_f64(align_trainer *tr, const double *v, double *all, int32_t n);

/* v[0..n) := the sum over the ranks (allreduce_sum_f32, in buckets). With
 * every rank filling only its own entries and zeros elsewhere, this is an
 * exact all-gather of float rows. */
int align__dist_sum_f32(align_trainer *tr, float *v, size_t n);

/* Every rank's `bytes` bytes into recv[size][bytes] (rank order). */
int align__dist_allgather(align_trainer *tr, const void *send, void *recv, size_t bytes);

/* lib/gen/generate.c: align_generate_tokens for samples [stream0, stream0+n)
 * of a larger batch — sequence i samples from Philox stream stream0 + i, so
 * a rank generating its share draws what one process generating the whole
 * batch draws (decoding is batch independent). */
int align__generate_tokens_from(align_model *m, const align_tokenizer *t, const int32_t *tokens,
                                const int32_t *lengths, int32_t n, const align_generate_params *p, uint64_t stream0,
                                align_generation **out);

/* Broadcast of bytes from rank 0. */
int align__dist_bcast(align_trainer *tr, void *buf, size_t bytes);

/* Agrees on the result of a call every rank made (resume): ALIGN_OK when
 * every rank succeeded, else the own code or the first failing rank's. */
int align__dist_agree_rc(align_trainer *tr, int rc, const char *what);

#endif
