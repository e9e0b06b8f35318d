/*
 * nn_llama.h — the kernels of Llama-style blocks (lib/nn/llama_nn.c):
 * RMSNorm, rotary position embeddings, the SwiGLU gate, grouped-query
 * causal attention over separate q / k / v, and a token embedding without
 * positions. Same conventions as nn.h (outputs first; each parallel loop
 * gives every output element to one chunk, summing in a fixed order).
 */
#ifndef ALIGN_NN_NN_LLAMA_H
#define ALIGN_NN_NN_LLAMA_H

#include "core/core.h"

/* RMSNorm (Zhang & Sennrich 2019): out = inp * rstd * w, rstd = 1/sqrt(mean(inp^2) + eps).
 * out[N][C], rstd[N] (may be NULL) from inp[N][C], w[C]. out may alias inp. */
void align__nn_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                               float eps, int64_t N, int64_t C);
/* dinp += , dw += (dw may be NULL). */
void align__nn_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, const float *rstd, int64_t N, int64_t C);

/* Rotary embeddings (Su et al. 2021) in Hugging Face's rotate_half layout:
 * inside each head of hs dims, pairs (i, i + hs/2) rotate by pos * theta^(-2i/hs).
 * Table: cos/sin [n_pos][hs/2] for positions 0..n_pos-1. */
void align__nn_rope_table(float *cosv, float *sinv, int64_t n_pos, int64_t hs, float theta);
/* x [B][T][H * hs] rotated in place by position t (row stride ld floats);
 * inverse = 1 applies the transposed rotation (the backward). */
void align__nn_rope(float *x, const float *cosv, const float *sinv, int64_t B, int64_t T,
                    int64_t H, int64_t hs, int64_t ld, int inverse);
/* One row (decoding): x [H * hs] at position pos. */
void align__nn_rope_row(float *x, int64_t pos, int64_t H, int64_t hs, float theta);

/* SwiGLU (Shazeer 2020): out = silu(gate) * up, all [n]. */
void align__nn_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
/* dgate, dup overwritten. */
void align__nn_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int64_t n);

/* Causal grouped-query attention: q [B][T][NH*hs], k, v [B][T][KVH*hs];
 * query head h reads key/value head h / (NH/KVH). Sequence b has lengths[b]
 * valid positions (rows past it give 0). out [B][T][NH*hs];
 * att [B][NH][T][T] probabilities (kept for backward). */
void align__nn_gqa_forward(float *out, float *att, const float *q, const float *k, const float *v,
                           const int32_t *lengths, int64_t B, int64_t T, int64_t NH, int64_t KVH,
                           int64_t hs);
/* dq, dk, dv overwritten. scratch: align__threads() * T floats. */
void align__nn_gqa_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                            const float *q, const float *k, const float *v, const float *att,
                            const int32_t *lengths, int64_t B, int64_t T, int64_t NH, int64_t KVH,
                            int64_t hs);

/* out[b][t] = wte[tok] for t < lengths[b], else 0 (no position table). */
void align__nn_embed_forward(float *out, const int32_t *tokens, const float *wte,
                             const int32_t *lengths, int64_t B, int64_t T, int64_t C);
/* dwte[tok] += dout over valid positions. */
void align__nn_embed_backward(float *dwte, const float *dout, const int32_t *tokens,
                              const int32_t *lengths, int64_t B, int64_t T, int64_t C);

#endif
