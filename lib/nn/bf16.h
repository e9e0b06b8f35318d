/*
 * bf16.h — the bf16 compute mode (align_compute_set): the matrix products of
 * training and of the forward pass in bf16 through oneDNN's matmul primitive,
 * with fp32 accumulation, fp32 outputs and fp32 master weights. The mode is
 * one global setting; align__nn_matmul_forward / _backward dispatch here when
 * it is on. Decoding (align__nn_matmul_decode with few rows) stays fp32.
 *
 * bf16 copies are made per product, in blocks, into bounded per-thread
 * scratch (never a kept copy of the weights: it would cost 2 bytes per
 * parameter and stale copies could never be read). Operands are rounded to
 * nearest even.
 */
#ifndef ALIGN_NN_BF16_H
#define ALIGN_NN_BF16_H

#include "core/core.h"

/* 1 when the bf16 mode is on (align_compute_set(ALIGN_COMPUTE_BF16) succeeded). */
int align__bf16_on(void);

/* 1 when this build and this CPU can run the mode; otherwise 0 and *why (if
 * not NULL) says what is missing (static storage). */
int align__bf16_available(const char **why);

/* CPU features from cpuid (and the OS's saved register state): AVX512_BF16,
 * AMX-BF16. */
int align__cpu_has_avx512_bf16(void);
int align__cpu_has_amx_bf16(void);

/* Tests: pretend the CPU lacks bf16 instructions (1) or look again (0).
 * Turning it on also turns the mode off. */
void align__bf16_test_hide_cpu(int hide);

/* oneDNN side (dnnl.c). Both return 0 when done, nonzero when the caller
 * should compute in fp32 instead (no oneDNN in this build, or scratch or a
 * primitive could not be had; logged once). Same contracts as
 * align__nn_matmul_forward and the dinp / dw parts of align__nn_matmul_backward. */
int align__dnnl_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                               int64_t N, int64_t C, int64_t OC, int layout, float beta);
int align__dnnl_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, int64_t N, int64_t C, int64_t OC, int layout);
/* 1 when oneDNN is built in; its version and the ISA it runs ("avx512_core_bf16",
 * "avx512_core_amx", ...), static storage. */
int align__dnnl_built(void);
/* Tests: the largest bf16 operand block in elements (0 restores the default),
 * so that small products exercise the blocking over K and the split dimension. */
void align__dnnl_test_block(int64_t elems);
const char *align__dnnl_info(void);

/* f32 -> bf16 (round to nearest even, NaN kept NaN), the rounding the mode uses;
 * and back. */
uint16_t align__bf16_from_f32(float x);
float align__bf16_to_f32(uint16_t h);

#endif
