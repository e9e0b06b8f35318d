/*
 * model.h — private model interface used by trainers and generation
 * (the lib/model sources implements it, together with align.h's align_model_*).
 * The model layer owns this file; it may add to it.
 */
#ifndef ALIGN_MODEL_MODEL_H
#define ALIGN_MODEL_MODEL_H

#include "core/core.h"

/* align_model_forward plus argmax [n_seq][max_len-1]: the most likely next
 * token at each position (for next-token accuracy). Any output may be NULL. */
int align__model_forward_ex(align_model *m, const int32_t *tokens, const int32_t *lengths,
                            int32_t n_seq, int32_t max_len, float *token_logprobs, float *scalar,
                            float *logits, int32_t *argmax);

/* Global L2 norm of the gradients accumulated so far (no side effects). */
float align__model_grad_norm(const align_model *m);

/* ---- incremental decoding with a KV cache ---------------------------------
 * A cache for n_seq sequences of up to max_len positions each (max_len <=
 * the model's max_seq_len). Sequences start empty. */
typedef struct align__kv_cache align__kv_cache;
int  align__kv_create(align__kv_cache **out, const align_model *m, int32_t n_seq, int32_t max_len);
void align__kv_free(align__kv_cache *c);
/* Current length of sequence i. */
int32_t align__kv_len(const align__kv_cache *c, int32_t i);

/* Appends n_new[i] tokens to sequence i (tokens [n_seq][stride], the first
 * n_new[i] of row i used; n_new[i] == 0 leaves i as it is) and writes the
 * logits of each advanced sequence's last new position to
 * logits_last [n_seq][vocab_size] (rows of sequences not advanced are left
 * untouched). The logits equal align_model_forward's over the whole sequence
 * up to rounding. Fails with ALIGN_ERANGE if a sequence would exceed max_len. */
int  align__model_decode(align_model *m, align__kv_cache *c, const int32_t *tokens, int32_t stride,
                         const int32_t *n_new, float *logits_last);

/* Copies src's weights into dst in place (same configuration required:
 * ALIGN_EINVAL otherwise, dst unchanged). dst's pending forward is dropped.
 * Used to restore weights loaded into a temporary model (trainer resume). */
int align__model_copy_weights(align_model *dst, const align_model *src);

/* The model's errbuf, for layers above that report through it. */
align__errbuf *align__model_err(align_model *m);

#endif
