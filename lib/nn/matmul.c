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
            out[r * OC + j] += _mm512_reduce_add_ps(acc[r][j]);
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

/* W[C][OC] (GPT-2's Conv1D): for the 64-column tiles [b, e), out[n][tile]
 * += sum over i of inp[n][i] * W[i][tile], i ascending, the input rows in
 * groups of 4, 2, 1 (the tile is read from memory once, then from cache). */
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

static int skinny_ok(void)
{
    static int ok = -1; /* benign race: every thread computes the same value */
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return ok;
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
    if (N <= SKINNY_MAX_ROWS && skinny_ok()) {
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
            align__parallel_for((OC + 63) / 64, skinny_in_out, &k);
        else
            align__parallel_for((OC + 3) / 4, skinny_out_in, &k);
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
