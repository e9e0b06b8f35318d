/* matmul.c — linear layers on cblas_sgemm, with naive reference kernels.
 * The sgemm calls use the weights where they lie (transpose flags, no
 * copies): HF Conv1D weights [C][OC] are used as-is, [OC][C] ones as W^T.
 *
 * Decoding (few rows: one new token per sequence of a batch) is bound by
 * reading the weights. sgemm packs the weight matrix on every call (a copy
 * of all of it) and its M = 1 case is slow; on CPUs with AVX-512 the
 * "skinny" kernels below read each weight once for all rows instead, split
 * by output columns across the pool (measured on a 2-core Zen 4 at the 124M
 * decode shapes, 8 rows: 1.7-2x sgemm; 1 row: level with sgemv). Each output
 * element is summed by one thread in a fixed order, and each row alone: the
 * result depends neither on the thread count nor on the other rows, so a
 * sequence decodes to the same bits in any batch. Elsewhere sgemv / sgemm. */
#include "nn/nn.h"
#include "nn/bf16.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ALIGN__SKINNY 1
#endif

typedef struct {
    float *out;
    const float *bias;
    int64_t OC;
    float beta;
} bias_ctx;

/* out rows = beta * out + bias (or 0) — prepares the sgemm's C operand. */
static void bias_rows(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    bias_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        float *o = c->out + i * c->OC;
        if (c->beta == 0.0f) {
            memcpy(o, c->bias, (size_t)c->OC * sizeof(float));
        } else {
            for (int64_t j = 0; j < c->OC; j++)
                o[j] += c->bias[j];
        }
    }
}

#ifdef ALIGN__SKINNY
/* Rows handled by the skinny kernels (decoding batches up to this size). */
enum { SKINNY_MAX_ROWS = 16 };

typedef struct {
    float *out;
    const float *inp, *w;
    int64_t N, C, OC;
} skinny_ctx;

/* The sum of 16 lanes in a fixed tree, written out (gcc 12's
 * _mm512_reduce_add_ps order) so that the AVX2 kernels, holding the 16 lanes
 * in two halves, reproduce it bit for bit: (hi8 + lo8), then its halves,
 * then lanes {0,2} and {1,3}, then those two. */
__attribute__((target("avx512f"), always_inline)) static inline float red16_512(__m512 a)
{
    __m256 t3 = _mm256_add_ps(_mm512_castps512_ps256(_mm512_shuffle_f32x4(a, a, 0xee)), _mm512_castps512_ps256(a));
    __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
    __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, 0x4e)); /* lanes 2,3,0,1 */
    return _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps(t8, t8, 0x55));
}

/* R (1, 2 or 4, a constant after inlining) input rows against four weight
 * rows: 4R accumulators, one weight load per R FMAs. */
__attribute__((target("avx512f"), always_inline)) static inline void
oi_block(float *out, const float *const *xr, const float *const *wr, int64_t C, int64_t OC, int64_t no,
         const int R)
{
    const int64_t full = C & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (C - full)) - 1u);
    __m512 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) {
        __m512 wv[4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            wv[j] = _mm512_loadu_ps(wr[j] + i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(xr[r] + i);
            #pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
        }
    }
    if (tail) {
        __m512 wv[4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            wv[j] = _mm512_maskz_loadu_ps(tail, wr[j] + full);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(tail, xr[r] + full);
            #pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        for (int64_t j = 0; j < no; j++)
            out[r * OC + j] += red16_512(acc[r][j]);
}

/* W[OC][C] (the tied LM head): out[n][o] += dot(inp[n], W[o]) for weight
 * rows o in [4b, 4e), four at a time against the input rows in groups of
 * 4, 2, 1 (the weight rows are read from memory once, then from L1). */
__attribute__((target("avx512f"))) static void skinny_out_in(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const skinny_ctx *k = vctx;
    const int64_t C = k->C, OC = k->OC, N = k->N;
    const int64_t o_end = e * 4 < OC ? e * 4 : OC;
    for (int64_t o = b * 4; o < o_end; o += 4) {
        const int64_t no = o_end - o < 4 ? o_end - o : 4;
        const float *wr[4];
        for (int64_t j = 0; j < 4; j++)
            wr[j] = k->w + (o + (j < no ? j : 0)) * C;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4) {
            const float *xr[4] = {k->inp + n * C, k->inp + (n + 1) * C, k->inp + (n + 2) * C, k->inp + (n + 3) * C};
            oi_block(k->out + n * OC + o, xr, wr, C, OC, no, 4);
        }
        if (n + 2 <= N) {
            const float *xr[2] = {k->inp + n * C, k->inp + (n + 1) * C};
            oi_block(k->out + n * OC + o, xr, wr, C, OC, no, 2);
            n += 2;
        }
        if (n < N) {
            const float *xr[1] = {k->inp + n * C};
            oi_block(k->out + n * OC + o, xr, wr, C, OC, no, 1);
        }
    }
}

/* R (1, 2 or 4) input rows against a 64-column tile of W[C][OC]: 4R
 * accumulators over i ascending, each weight vector loaded once for R FMAs. */
__attribute__((target("avx512f"), always_inline)) static inline void
io_block(float *out, const float *x, const float *w, const __mmask16 *m, int64_t C, int64_t OC, const int R)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_maskz_loadu_ps(m[v], out + r * OC + 16 * v);
    for (int64_t i = 0; i < C; i++) {
        const float *wr = w + i * OC;
        /* the tile's rows are OC apart: too far for the hardware prefetchers
         * (they stop at page boundaries), so ask for row i + 8 now */
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            _mm_prefetch((const char *)((uintptr_t)wr + (uintptr_t)(8 * OC + 16 * v) * sizeof(float)), _MM_HINT_T0);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            wv[v] = _mm512_maskz_loadu_ps(m[v], wr + 16 * v);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_set1_ps(x[r * C + i]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                acc[r][v] = _mm512_fmadd_ps(xv, wv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            _mm512_mask_storeu_ps(out + r * OC + 16 * v, m[v], acc[r][v]);
}

/* Eight input rows against 32 columns (two vectors): 16 accumulators, each
 * weight vector loaded once for 8 FMAs. A batch of 8 thus reads each tile
 * once (in groups of 4 the second group re-read it from L2, or, for the
 * 3072-row MLP projection whose 786 KB tile does not stay there, from
 * memory). Each output is the same FMA chain as in io_block. */
__attribute__((target("avx512f"), always_inline)) static inline void
io_block8(float *out, const float *x, const float *w, const __mmask16 *m, int64_t C, int64_t OC)
{
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++)
            acc[r][v] = _mm512_maskz_loadu_ps(m[v], out + r * OC + 16 * v);
    for (int64_t i = 0; i < C; i++) {
        const float *wr = w + i * OC;
        _mm_prefetch((const char *)((uintptr_t)wr + (uintptr_t)(8 * OC) * sizeof(float)), _MM_HINT_T0);
        _mm_prefetch((const char *)((uintptr_t)wr + (uintptr_t)(8 * OC + 16) * sizeof(float)), _MM_HINT_T0);
        __m512 w0 = _mm512_maskz_loadu_ps(m[0], wr), w1 = _mm512_maskz_loadu_ps(m[1], wr + 16);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 xv = _mm512_set1_ps(x[r * C + i]);
            acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++)
            _mm512_mask_storeu_ps(out + r * OC + 16 * v, m[v], acc[r][v]);
}

/* W[C][OC] (GPT-2's Conv1D): for the 64-column tiles [b, e), out[n][tile]
 * += sum over i of inp[n][i] * W[i][tile], i ascending, the input rows in
 * groups of 8 (as two 32-column halves), then 4, 2, 1 (the tile is read from
 * memory once, then from cache). */
__attribute__((target("avx512f"))) static void skinny_in_out(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const skinny_ctx *k = vctx;
    const int64_t C = k->C, OC = k->OC, N = k->N;
    const int64_t c_end = e * 64 < OC ? e * 64 : OC;
    for (int64_t c0 = b * 64; c0 < c_end; c0 += 64) {
        const int64_t nc = c_end - c0 < 64 ? c_end - c0 : 64;
        __mmask16 m[4];
        for (int v = 0; v < 4; v++) {
            int64_t left = nc - 16 * v;
            m[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
        }
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            io_block8(k->out + n * OC + c0, k->inp + n * C, k->w + c0, m, C, OC);
            if (nc > 32)
                io_block8(k->out + n * OC + c0 + 32, k->inp + n * C, k->w + c0 + 32, m + 2, C, OC);
        }
        for (; n + 4 <= N; n += 4)
            io_block(k->out + n * OC + c0, k->inp + n * C, k->w + c0, m, C, OC, 4);
        if (n + 2 <= N) {
            io_block(k->out + n * OC + c0, k->inp + n * C, k->w + c0, m, C, OC, 2);
            n += 2;
        }
        if (n < N)
            io_block(k->out + n * OC + c0, k->inp + n * C, k->w + c0, m, C, OC, 1);
    }
}

/* ---- AVX2 + FMA: the same sums, bit for bit --------------------------------- */

/* red16_512 on 16 lanes held as lo (0..7) and hi (8..15). */
__attribute__((target("avx2,fma"), always_inline)) static inline float red16_256(__m256 lo, __m256 hi)
{
    __m256 t3 = _mm256_add_ps(hi, lo);
    __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
    __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, 0x4e));
    return _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps(t8, t8, 0x55));
}

/* Lanes [0, n) of 8 on, the rest off (n clamped to 0..8). */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256i mask8(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int32_t k = n < 0 ? 0 : n > 8 ? 8 : (int32_t)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), idx);
}

/* oi_block for AVX2: R (1 or 2) input rows against two weight rows; each
 * dot product keeps 16 lanes (two registers) stepping 16 elements, the
 * tail loaded masked with zeros, exactly as the AVX-512 kernel does. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
oi_block2(float *out, const float *const *xr, const float *const *wr, int64_t C, int64_t OC, int64_t no,
          const int R)
{
    const int64_t full = C & ~(int64_t)15;
    __m256 acc[2][2][2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            acc[r][j][0] = acc[r][j][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) {
        __m256 wv[2][2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            wv[j][0] = _mm256_loadu_ps(wr[j] + i);
            wv[j][1] = _mm256_loadu_ps(wr[j] + i + 8);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256 x0 = _mm256_loadu_ps(xr[r] + i), x1 = _mm256_loadu_ps(xr[r] + i + 8);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                acc[r][j][0] = _mm256_fmadd_ps(x0, wv[j][0], acc[r][j][0]);
                acc[r][j][1] = _mm256_fmadd_ps(x1, wv[j][1], acc[r][j][1]);
            }
        }
    }
    if (full < C) {
        const __m256i m0 = mask8(C - full), m1 = mask8(C - full - 8);
        __m256 wv[2][2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            wv[j][0] = _mm256_maskload_ps(wr[j] + full, m0);
            wv[j][1] = _mm256_maskload_ps(wr[j] + full + 8, m1);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256 x0 = _mm256_maskload_ps(xr[r] + full, m0), x1 = _mm256_maskload_ps(xr[r] + full + 8, m1);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                acc[r][j][0] = _mm256_fmadd_ps(x0, wv[j][0], acc[r][j][0]);
                acc[r][j][1] = _mm256_fmadd_ps(x1, wv[j][1], acc[r][j][1]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
        for (int64_t j = 0; j < no; j++)
            out[r * OC + j] += red16_256(acc[r][j][0], acc[r][j][1]);
}

/* skinny_out_in for AVX2: weight rows two at a time, input rows in pairs. */
__attribute__((target("avx2,fma"))) static void skinny_out_in_avx2(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const skinny_ctx *k = vctx;
    const int64_t C = k->C, OC = k->OC, N = k->N;
    const int64_t o_end = e * 4 < OC ? e * 4 : OC;
    for (int64_t o = b * 4; o < o_end; o += 2) {
        const int64_t no = o_end - o < 2 ? o_end - o : 2;
        const float *wr[2] = {k->w + o * C, k->w + (o + (no > 1 ? 1 : 0)) * C};
        int64_t n = 0;
        for (; n + 2 <= N; n += 2) {
            const float *xr[2] = {k->inp + n * C, k->inp + (n + 1) * C};
            oi_block2(k->out + n * OC + o, xr, wr, C, OC, no, 2);
        }
        if (n < N) {
            const float *xr[1] = {k->inp + n * C};
            oi_block2(k->out + n * OC + o, xr, wr, C, OC, no, 1);
        }
    }
}

/* io_block for AVX2: R (1 or 2) input rows against a 32-column tile; each
 * output is the same FMA chain over i ascending as in the AVX-512 kernel. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
io_block2(float *out, const float *x, const float *w, const __m256i *m, int64_t C, int64_t OC, const int R)
{
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm256_maskload_ps(out + r * OC + 8 * v, m[v]);
    for (int64_t i = 0; i < C; i++) {
        const float *wr = w + i * OC;
        /* as in io_block (addresses as integers: row i + 8 may lie past the matrix) */
        _mm_prefetch((const char *)((uintptr_t)wr + (uintptr_t)(8 * OC) * sizeof(float)), _MM_HINT_T0);
        _mm_prefetch((const char *)((uintptr_t)wr + (uintptr_t)(8 * OC + 16) * sizeof(float)), _MM_HINT_T0);
        __m256 wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            wv[v] = _mm256_maskload_ps(wr + 8 * v, m[v]);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256 xv = _mm256_broadcast_ss(x + r * C + i);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                acc[r][v] = _mm256_fmadd_ps(xv, wv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            _mm256_maskstore_ps(out + r * OC + 8 * v, m[v], acc[r][v]);
}

/* skinny_in_out for AVX2 over the 32-column tiles [b, e). */
__attribute__((target("avx2,fma"))) static void skinny_in_out_avx2(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const skinny_ctx *k = vctx;
    const int64_t C = k->C, OC = k->OC, N = k->N;
    const int64_t c_end = e * 32 < OC ? e * 32 : OC;
    for (int64_t c0 = b * 32; c0 < c_end; c0 += 32) {
        __m256i m[4];
        for (int v = 0; v < 4; v++)
            m[v] = mask8(c_end - c0 - 8 * v);
        int64_t n = 0;
        for (; n + 2 <= N; n += 2)
            io_block2(k->out + n * OC + c0, k->inp + n * C, k->w + c0, m, C, OC, 2);
        if (n < N)
            io_block2(k->out + n * OC + c0, k->inp + n * C, k->w + c0, m, C, OC, 1);
    }
}

static _Atomic int isa_cap = 2; /* tests lower it to reach the AVX2 kernels */

int align__nn_decode_isa(void)
{
    static _Atomic int det = -1; /* threads may race to set it: each stores the same value */
    int d = atomic_load_explicit(&det, memory_order_relaxed);
    if (d < 0) {
        __builtin_cpu_init();
        d = __builtin_cpu_supports("avx512f") ? 2
            : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
        atomic_store_explicit(&det, d, memory_order_relaxed);
    }
    int cap = atomic_load_explicit(&isa_cap, memory_order_relaxed);
    return d < cap ? d : cap;
}

void align__nn_decode_isa_cap(int cap)
{
    atomic_store_explicit(&isa_cap, cap < 0 ? 2 : cap, memory_order_relaxed);
}
#else
int align__nn_decode_isa(void)
{
    return 0;
}

void align__nn_decode_isa_cap(int cap)
{
    (void)cap;
}
#endif

static void matmul_blas(float *out, const float *inp, const float *w, int64_t N, int64_t C, int64_t OC,
                        int layout, float sbeta);

void align__nn_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                              int64_t N, int64_t C, int64_t OC, int layout, float beta)
{
    if (align__bf16_on() && !align__dnnl_matmul_forward(out, inp, w, bias, N, C, OC, layout, beta))
        return; /* bf16 compute mode (bf16.h) */
    float sbeta = beta;
    if (bias) { /* out = beta * out + bias first, then sgemm accumulates */
        bias_ctx c = {out, bias, OC, beta};
        align__parallel_for(N, bias_rows, &c);
        sbeta = 1.0f;
    }
    matmul_blas(out, inp, w, N, C, OC, layout, sbeta);
}

void align__nn_matmul_decode(float *out, const float *inp, const float *w, const float *bias,
                             int64_t N, int64_t C, int64_t OC, int layout, float beta)
{
#ifdef ALIGN__SKINNY
    const int isa = N <= SKINNY_MAX_ROWS ? align__nn_decode_isa() : 0;
    if (isa > 0) {
        float sbeta = beta;
        if (bias) {
            bias_ctx c = {out, bias, OC, beta};
            align__parallel_for(N, bias_rows, &c);
            sbeta = 1.0f;
        }
        if (sbeta == 0.0f)
            memset(out, 0, (size_t)(N * OC) * sizeof(float));
        else if (sbeta != 1.0f)
            for (int64_t i = 0; i < N * OC; i++)
                out[i] *= sbeta;
        skinny_ctx k = {out, inp, w, N, C, OC};
        if (layout == ALIGN__W_IN_OUT)
            align__parallel_for(isa == 2 ? (OC + 63) / 64 : (OC + 31) / 32,
                                isa == 2 ? skinny_in_out : skinny_in_out_avx2, &k);
        else
            align__parallel_for((OC + 3) / 4, isa == 2 ? skinny_out_in : skinny_out_in_avx2, &k);
        return;
    }
#endif
    align__nn_matmul_forward(out, inp, w, bias, N, C, OC, layout, beta);
}

static void matmul_blas(float *out, const float *inp, const float *w, int64_t N, int64_t C, int64_t OC,
                        int layout, float sbeta)
{
    if (N == 1) {
        /* batch-1 decoding: sgemv is ~3x faster than an M=1 sgemm (measured: ~20 against 5-7 GFLOP/s) */
        if (layout == ALIGN__W_IN_OUT)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)C, (int)OC, 1.0f, w, (int)OC, inp, 1, sbeta, out, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)OC, (int)C, 1.0f, w, (int)C, inp, 1, sbeta, out, 1);
        return;
    }
    if (layout == ALIGN__W_IN_OUT)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)OC, (int)C, 1.0f, inp,
                    (int)C, w, (int)OC, sbeta, out, (int)OC);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, inp,
                    (int)C, w, (int)C, sbeta, out, (int)OC);
}

typedef struct {
    float *dbias;
    const float *dout;
    int64_t N, OC;
} dbias_ctx;

/* Column sums, parallel over columns so each sum runs over rows in order. */
static void dbias_cols(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    dbias_ctx *c = vctx;
    for (int64_t i = 0; i < c->N; i++) {
        const float *d = c->dout + i * c->OC;
        for (int64_t j = b; j < e; j++)
            c->dbias[j] += d[j];
    }
}

void align__nn_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int64_t N, int64_t C, int64_t OC,
                               int layout)
{
    if (align__bf16_on() && !align__dnnl_matmul_backward(dinp, dw, dout, inp, w, N, C, OC, layout))
        dinp = dw = NULL; /* done in the bf16 compute mode (bf16.h); dbias below */
    if (dinp) {
        if (layout == ALIGN__W_IN_OUT) /* dinp[N][C] = dout[N][OC] @ W[C][OC]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)C, (int)OC, 1.0f,
                        dout, (int)OC, w, (int)OC, 0.0f, dinp, (int)C);
        else /* W[OC][C] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC, 1.0f,
                        dout, (int)OC, w, (int)C, 0.0f, dinp, (int)C);
    }
    if (dw) {
        if (layout == ALIGN__W_IN_OUT) /* dW[C][OC] += inp^T @ dout */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)OC, (int)N, 1.0f, inp,
                        (int)C, dout, (int)OC, 1.0f, dw, (int)OC);
        else /* dW[OC][C] += dout^T @ inp */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N, 1.0f,
                        dout, (int)OC, inp, (int)C, 1.0f, dw, (int)C);
    }
    if (dbias) {
        dbias_ctx c = {dbias, dout, N, OC};
        align__parallel_for(OC, dbias_cols, &c);
    }
}

/* ---- reference kernels (plain loops, double accumulation) ---------------- */
static float wat(const float *w, int64_t i, int64_t o, int64_t C, int64_t OC, int layout)
{
    return layout == ALIGN__W_IN_OUT ? w[i * OC + o] : w[o * C + i];
}

void align__nn_matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias,
                                  int64_t N, int64_t C, int64_t OC, int layout, float beta)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int64_t i = 0; i < C; i++)
                s += (double)inp[n * C + i] * wat(w, i, o, C, OC, layout);
            out[n * OC + o] = (beta != 0.0f ? beta * out[n * OC + o] : 0.0f) + (float)s;
        }
}

void align__nn_matmul_backward_ref(float *dinp, float *dw, float *dbias, const float *dout,
                                   const float *inp, const float *w, int64_t N, int64_t C,
                                   int64_t OC, int layout)
{
    if (dinp)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < C; i++) {
                double s = 0;
                for (int64_t o = 0; o < OC; o++)
                    s += (double)dout[n * OC + o] * wat(w, i, o, C, OC, layout);
                dinp[n * C + i] = (float)s;
            }
    if (dw)
        for (int64_t i = 0; i < C; i++)
            for (int64_t o = 0; o < OC; o++) {
                double s = 0;
                for (int64_t n = 0; n < N; n++)
                    s += (double)inp[n * C + i] * dout[n * OC + o];
                if (layout == ALIGN__W_IN_OUT)
                    dw[i * OC + o] += (float)s;
                else
                    dw[o * C + i] += (float)s;
            }
    if (dbias)
        for (int64_t o = 0; o < OC; o++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++)
                s += dout[n * OC + o];
            dbias[o] += (float)s;
        }
}
