/* layers.c — LayerNorm, GELU and the token/position encoder. */
#include "nn/nn.h"
#include "nn/vmath.h"

#include <math.h>
#include <string.h>

#define LN_EPS 1e-5f

/* ---- LayerNorm --------------------------------------------------------------- */
typedef struct {
    float *out, *mean, *rstd, *dinp, *dw, *db;
    const float *inp, *w, *b, *dout, *cmean, *crstd;
    int64_t N, C;
} ln_ctx;

static void ln_row_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                           const float *b, int64_t C)
{
    float m = 0.0f;
    for (int64_t i = 0; i < C; i++)
        m += x[i];
    m /= (float)C;
    float v = 0.0f;
    for (int64_t i = 0; i < C; i++) {
        float d = x[i] - m;
        v += d * d;
    }
    v /= (float)C;
    float s = 1.0f / sqrtf(v + LN_EPS);
    for (int64_t i = 0; i < C; i++)
        out[i] = (x[i] - m) * s * w[i] + b[i];
    *mean = m;
    *rstd = s;
}

static void ln_fwd_rows(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    ln_ctx *c = vctx;
    for (int64_t r = b; r < e; r++)
        ln_row_forward(c->out + r * c->C, c->mean + r, c->rstd + r, c->inp + r * c->C, c->w, c->b,
                       c->C);
}

void align__nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *w, const float *b, int64_t N, int64_t C)
{
    ln_ctx c = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b, .N = N, .C = C};
    align__parallel_for(N, ln_fwd_rows, &c);
}

void align__nn_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                                     const float *w, const float *b, int64_t N, int64_t C)
{
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        double m = 0, v = 0;
        for (int64_t i = 0; i < C; i++)
            m += x[i];
        m /= (double)C;
        for (int64_t i = 0; i < C; i++)
            v += (x[i] - m) * (x[i] - m);
        v /= (double)C;
        double s = 1.0 / sqrt(v + LN_EPS);
        for (int64_t i = 0; i < C; i++)
            out[r * C + i] = (float)((x[i] - m) * s * w[i] + b[i]);
        mean[r] = (float)m;
        rstd[r] = (float)s;
    }
}

/* dinp: with n = (x - mean) * rstd and g = dout * w,
 * dx = rstd * (g - mean(g) - n * mean(g * n)). Rows in parallel. */
static void ln_bwd_rows(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    ln_ctx *c = vctx;
    int64_t C = c->C;
    for (int64_t r = b; r < e; r++) {
        const float *x = c->inp + r * C, *d = c->dout + r * C;
        float m = c->cmean[r], s = c->crstd[r];
        float gm = 0.0f, gnm = 0.0f;
        for (int64_t i = 0; i < C; i++) {
            float g = d[i] * c->w[i];
            gm += g;
            gnm += g * (x[i] - m) * s;
        }
        gm /= (float)C;
        gnm /= (float)C;
        float *dx = c->dinp + r * C;
        for (int64_t i = 0; i < C; i++) {
            float n = (x[i] - m) * s;
            dx[i] += s * (d[i] * c->w[i] - gm - n * gnm);
        }
    }
}

/* dw, db: parallel over columns, each summing over rows in order. */
static void ln_bwd_cols(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    ln_ctx *c = vctx;
    int64_t C = c->C;
    for (int64_t r = 0; r < c->N; r++) {
        const float *x = c->inp + r * C, *d = c->dout + r * C;
        float m = c->cmean[r], s = c->crstd[r];
        for (int64_t i = b; i < e; i++) {
            if (c->dw)
                c->dw[i] += d[i] * (x[i] - m) * s;
            if (c->db)
                c->db[i] += d[i];
        }
    }
}

void align__nn_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, const float *w, const float *mean,
                                  const float *rstd, int64_t N, int64_t C)
{
    ln_ctx c = {.dinp = dinp, .dw = dw, .db = db, .dout = dout, .inp = inp, .w = w, .cmean = mean,
                .crstd = rstd, .N = N, .C = C};
    if (dinp)
        align__parallel_for(N, ln_bwd_rows, &c);
    if (dw || db)
        align__parallel_for(C, ln_bwd_cols, &c);
}

void align__nn_layernorm_backward_ref(float *dinp, float *dw, float *db, const float *dout,
                                      const float *inp, const float *w, const float *mean,
                                      const float *rstd, int64_t N, int64_t C)
{
    for (int64_t r = 0; r < N; r++) {
        const float *x = inp + r * C, *d = dout + r * C;
        double gm = 0, gnm = 0;
        for (int64_t i = 0; i < C; i++) {
            double n = (x[i] - mean[r]) * (double)rstd[r];
            gm += d[i] * w[i];
            gnm += d[i] * w[i] * n;
            if (dw)
                dw[i] += (float)(d[i] * n);
            if (db)
                db[i] += d[i];
        }
        gm /= (double)C;
        gnm /= (double)C;
        if (dinp)
            for (int64_t i = 0; i < C; i++) {
                double n = (x[i] - mean[r]) * (double)rstd[r];
                dinp[r * C + i] += (float)(rstd[r] * (d[i] * w[i] - gm - n * gnm));
            }
    }
}

/* ---- GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -------
 * computed as x * s with s = 0.5 (1 + tanh u) = 1 / (1 + e), e = exp(-2u):
 * one exp (vmath.h, 8 lanes) instead of a libm tanhf call per element (GELU
 * through tanhf was ~10% of a 124M training step). The derivative is
 * s + 2 x u' s (1 - s), with 1 - s = e s kept exact for s near 1. The
 * vector body and the scalar remainder do the same operations (FMA only in
 * exp), so an element's bits do not depend on where the chunks split. */
#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

typedef struct {
    float *out;
    const float *inp, *dout;
} gelu_ctx;

#define GELU_U(x) (GELU_K * ((x) + GELU_C * (x) * (x) * (x)))
#define GELU_DU(x) (GELU_K * (1.0f + (3.0f * GELU_C) * (x) * (x)))

static void gelu_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gelu_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        float x = c->inp[i];
        c->out[i] = x * (1.0f / (1.0f + align__exp1_nofma(-2.0f * GELU_U(x))));
    }
}

static void gelu_bwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gelu_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        float x = c->inp[i];
        float ex = align__exp1_nofma(-2.0f * GELU_U(x));
        float sg = 1.0f / (1.0f + ex);
        float g = sg + (2.0f * x * GELU_DU(x)) * (sg * sg * ex);
        c->out[i] = g * c->dout[i];
    }
}

#ifdef ALIGN__VMATH_X86
__attribute__((target("avx2,fma"))) static void gelu_fwd_avx2(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gelu_ctx *c = vctx;
    const __m256 k = _mm256_set1_ps(GELU_K), cc = _mm256_set1_ps(GELU_C), one = _mm256_set1_ps(1.0f),
                 m2 = _mm256_set1_ps(-2.0f);
    int64_t i = b;
    for (; i + 8 <= e; i += 8) {
        __m256 x = _mm256_loadu_ps(c->inp + i);
        __m256 cube = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(cc, x), x), x);
        __m256 u = _mm256_mul_ps(k, _mm256_add_ps(x, cube));
        __m256 ex = align__exp8(_mm256_mul_ps(m2, u));
        _mm256_storeu_ps(c->out + i, _mm256_mul_ps(x, _mm256_div_ps(one, _mm256_add_ps(one, ex))));
    }
    for (; i < e; i++) {
        float x = c->inp[i];
        c->out[i] = x * (1.0f / (1.0f + align__exp1(-2.0f * GELU_U(x))));
    }
}

__attribute__((target("avx2,fma"))) static void gelu_bwd_avx2(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gelu_ctx *c = vctx;
    const __m256 k = _mm256_set1_ps(GELU_K), cc = _mm256_set1_ps(GELU_C), c3 = _mm256_set1_ps(3.0f * GELU_C),
                 one = _mm256_set1_ps(1.0f), m2 = _mm256_set1_ps(-2.0f), two = _mm256_set1_ps(2.0f);
    int64_t i = b;
    for (; i + 8 <= e; i += 8) {
        __m256 x = _mm256_loadu_ps(c->inp + i);
        __m256 cube = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(cc, x), x), x);
        __m256 u = _mm256_mul_ps(k, _mm256_add_ps(x, cube));
        __m256 ex = align__exp8(_mm256_mul_ps(m2, u));
        __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, ex));
        __m256 du = _mm256_mul_ps(k, _mm256_add_ps(one, _mm256_mul_ps(_mm256_mul_ps(c3, x), x)));
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(sg, sg), ex);
        __m256 g = _mm256_add_ps(sg, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(two, x), du), t));
        _mm256_storeu_ps(c->out + i, _mm256_mul_ps(g, _mm256_loadu_ps(c->dout + i)));
    }
    for (; i < e; i++) {
        float x = c->inp[i];
        float ex = align__exp1(-2.0f * GELU_U(x));
        float sg = 1.0f / (1.0f + ex);
        float g = sg + (2.0f * x * GELU_DU(x)) * (sg * sg * ex);
        c->out[i] = g * c->dout[i];
    }
}
#endif

void align__nn_gelu_forward(float *out, const float *inp, int64_t n)
{
    gelu_ctx c = {out, inp, NULL};
#ifdef ALIGN__VMATH_X86
    if (align__have_avx2_fma()) {
        align__parallel_for(n, gelu_fwd_avx2, &c);
        return;
    }
#endif
    align__parallel_for(n, gelu_fwd, &c);
}

void align__nn_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n)
{
    gelu_ctx c = {dinp, inp, dout};
#ifdef ALIGN__VMATH_X86
    if (align__have_avx2_fma()) {
        align__parallel_for(n, gelu_bwd_avx2, &c);
        return;
    }
#endif
    align__parallel_for(n, gelu_bwd, &c);
}

/* ---- encoder: token + position embeddings ------------------------------------ */
typedef struct {
    float *out, *dwte, *dwpe;
    const float *wte, *wpe, *dout;
    const int32_t *tokens, *lengths;
    int64_t B, T, C;
} enc_ctx;

static void enc_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    enc_ctx *c = vctx;
    for (int64_t r = b; r < e; r++) {
        int64_t s = r / c->T, t = r % c->T;
        float *o = c->out + r * c->C;
        if (t >= c->lengths[s]) {
            memset(o, 0, (size_t)c->C * sizeof(float));
            continue;
        }
        const float *we = c->wte + (int64_t)c->tokens[r] * c->C, *pe = c->wpe + t * c->C;
        for (int64_t i = 0; i < c->C; i++)
            o[i] = we[i] + pe[i];
    }
}

void align__nn_encoder_forward(float *out, const int32_t *tokens, const float *wte,
                               const float *wpe, const int32_t *lengths, int64_t B, int64_t T,
                               int64_t C)
{
    enc_ctx c = {.out = out, .tokens = tokens, .wte = wte, .wpe = wpe, .lengths = lengths,
                 .B = B, .T = T, .C = C};
    align__parallel_for(B * T, enc_fwd, &c);
}

/* Parallel over channels: a token repeated in the batch adds into the same
 * row of dwte, so rows cannot be split between threads; columns can. */
static void enc_bwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    enc_ctx *c = vctx;
    for (int64_t s = 0; s < c->B; s++)
        for (int64_t t = 0; t < c->lengths[s]; t++) {
            int64_t r = s * c->T + t;
            const float *d = c->dout + r * c->C;
            float *we = c->dwte + (int64_t)c->tokens[r] * c->C, *pe = c->dwpe + t * c->C;
            for (int64_t i = b; i < e; i++) {
                we[i] += d[i];
                pe[i] += d[i];
            }
        }
}

void align__nn_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                const int32_t *lengths, int64_t B, int64_t T, int64_t C)
{
    enc_ctx c = {.dwte = dwte, .dwpe = dwpe, .dout = dout, .tokens = tokens, .lengths = lengths,
                 .B = B, .T = T, .C = C};
    align__parallel_for(C, enc_bwd, &c);
}

/* ---- sum of squares (the gradient norm) ---------------------------------------
 * In double. A plain loop is one dependent add per element (~80 ms over
 * 124M gradients on one core); with AVX2 eight running sums (two registers
 * of four doubles: elements i mod 8), folded in a fixed order at the end.
 * Products of two floats are exact in double, so only the order of the
 * additions differs from the plain loop. */
static double sumsq_plain(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

#ifdef ALIGN__VMATH_X86
__attribute__((target("avx2,fma"))) static double sumsq_avx2(const float *x, int64_t n)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_extractf128_pd(a, 1), _mm256_castpd256_pd128(a));
    double s = _mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
    return s + sumsq_plain(x + i, n - i);
}
#endif

double align__nn_sumsq(const float *x, int64_t n)
{
#ifdef ALIGN__VMATH_X86
    if (align__have_avx2_fma())
        return sumsq_avx2(x, n);
#endif
    return sumsq_plain(x, n);
}
