/*
 * nn.h — the kernels the model layer is built from (llm.c style: one
 * forward/backward pair per op, outputs first, then inputs, then dims;
 * shapes in comments). Fast kernels use cblas_sgemm and align__parallel_for;
 * *_ref kernels are naive loops kept beside them for tests.
 *
 * Reproducibility: every parallel loop splits its work so that each output
 * element is produced by exactly one chunk, summing in a fixed order, so a
 * result depends only on the inputs and the thread count.
 */
#ifndef ALIGN_NN_NN_H
#define ALIGN_NN_NN_H

#include "core/core.h"

/* Weight layouts. GPT-2 (HF Conv1D) stores [in][out]; nn.Linear, the tied
 * LM head and a future Llama block store [out][in]. */
enum { ALIGN__W_IN_OUT = 0, ALIGN__W_OUT_IN = 1 };

/* out[N][OC] = beta * out + inp[N][C] @ W + bias[OC] (bias may be NULL).
 * beta = 1 fuses a residual add (out pre-filled with the residual). */
void align__nn_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                              int64_t N, int64_t C, int64_t OC, int layout, float beta);
/* dinp[N][C] = dout @ W^T (overwritten; may be NULL), dw += inp^T @ dout,
 * dbias[OC] += column sums of dout (dw, dbias may be NULL). */
void align__nn_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int64_t N, int64_t C, int64_t OC,
                               int layout);
/* The same product for decoding (a few rows: one new token per sequence).
 * With AVX-512, or AVX2 + FMA, and N <= 16 it reads the weights once for all
 * rows, and each row's result depends neither on the other rows nor on the
 * thread count (nor on which of the two instruction sets ran: the AVX2
 * kernels sum in the same order); otherwise it is align__nn_matmul_forward.
 * The forward pass of training keeps align__nn_matmul_forward (its bits do
 * not change with this path). */
void align__nn_matmul_decode(float *out, const float *inp, const float *w, const float *bias,
                             int64_t N, int64_t C, int64_t OC, int layout, float beta);
/* The few-row kernels align__nn_matmul_decode uses: 2 AVX-512, 1 AVX2 + FMA,
 * 0 none (sgemm / sgemv), detected once by cpuid. _cap(level) lowers it for
 * tests (process-wide, not thread-safe; a negative level restores it). */
int align__nn_decode_isa(void);
void align__nn_decode_isa_cap(int level);
void align__nn_matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias,
                                  int64_t N, int64_t C, int64_t OC, int layout, float beta);
void align__nn_matmul_backward_ref(float *dinp, float *dw, float *dbias, const float *dout,
                                   const float *inp, const float *w, int64_t N, int64_t C,
                                   int64_t OC, int layout);

/* LayerNorm (Ba et al. 2016), eps 1e-5 as GPT-2.
 * out[N][C], mean[N], rstd[N] from inp[N][C], w[C], b[C]. */
void align__nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *w, const float *b, int64_t N, int64_t C);
/* dinp += , dw += , db += (dw/db may be NULL). */
void align__nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, const float *w, const float *mean,
                                  const float *rstd, int64_t N, int64_t C);
void align__nn_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                                     const float *w, const float *b, int64_t N, int64_t C);
void align__nn_layernorm_backward_ref(float *dinp, float *dw, float *db, const float *dout,
                                      const float *inp, const float *w, const float *mean,
                                      const float *rstd, int64_t N, int64_t C);

/* sum of x[i]^2 in double (one thread; eight running sums with AVX2 + FMA,
 * folded in a fixed order, else one). */
double align__nn_sumsq(const float *x, int64_t n);

/* tanh-approximated GELU (Hendrycks & Gimpel 2016), as GPT-2. */
void align__nn_gelu_forward(float *out, const float *inp, int64_t n);
/* dinp = gelu'(inp) * dout (overwritten; dinp may alias dout). */
void align__nn_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);

/* Causal multi-head attention over packed qkv [B][T][3C] (q | k | v, heads
 * split inside each). Sequence b has lengths[b] valid positions: query rows
 * past it produce 0 and no query attends past its own position.
 * out [B][T][C]; att [B][NH][T][T] softmax probabilities (kept for backward). */
void align__nn_attention_forward(float *out, float *att, const float *qkv, const int32_t *lengths,
                                 int64_t B, int64_t T, int64_t C, int64_t NH);
/* dqkv [B][T][3C] overwritten. scratch: n_chunks * T floats, where n_chunks
 * is align__threads() at the call. */
void align__nn_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                  const float *att, const int32_t *lengths, int64_t B, int64_t T,
                                  int64_t C, int64_t NH);
void align__nn_attention_forward_ref(float *out, float *att, const float *qkv,
                                     const int32_t *lengths, int64_t B, int64_t T, int64_t C,
                                     int64_t NH);
void align__nn_attention_backward_ref(float *dqkv, const float *dout, const float *qkv,
                                      const float *att, const int32_t *lengths, int64_t B,
                                      int64_t T, int64_t C, int64_t NH);

/* Fused log-softmax over the vocabulary, the one place the softmax lives.
 * io [N][V]: logits in, probabilities out (kept for backward).
 * targets[N]: >= 0 the next token, -1 no target (logprob 0), -2 row unused
 * (probabilities zeroed, logits_out row zeroed, argmax -1).
 * logprob[N], argmax[N], logits_out [N][V] may each be NULL. */
void align__nn_logsoftmax_forward(float *logprob, int32_t *argmax, float *logits_out, float *io,
                                  const int32_t *targets, int64_t N, int64_t V);
/* io [N][V]: probabilities in, dlogits out:
 * dlogits = dlogprob[i] * (onehot(target) - softmax)  (rows without target: 0). */
void align__nn_logsoftmax_backward(float *io, const float *dlogprob, const int32_t *targets,
                                   int64_t N, int64_t V);

/* out[b][t][:] = wte[tok] + wpe[t] for t < lengths[b], else 0. */
void align__nn_encoder_forward(float *out, const int32_t *tokens, const float *wte,
                               const float *wpe, const int32_t *lengths, int64_t B, int64_t T,
                               int64_t C);
/* dwte[tok] += dout, dwpe[t] += dout over valid positions. */
void align__nn_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                const int32_t *lengths, int64_t B, int64_t T, int64_t C);

/* BLAS thread count (also called by align_threads_set). */
void align__blas_set_threads(int n);
/* Name of the kernel set OpenBLAS runs, or NULL for another BLAS. */
const char *align__blas_corename(void);

#endif
