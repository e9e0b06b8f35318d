/* layers.c — LayerNorm, GELU and the token/position encoder. */
#include "nn/nn.h"

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

/* ---- GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ------- */
#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

typedef struct {
    float *out;
    const float *inp, *dout;
} gelu_ctx;

static void gelu_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gelu_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        float x = c->inp[i];
        c->out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_bwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gelu_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        float x = c->inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float sech2 = 1.0f - t * t;
        float g = 0.5f * (1.0f + t) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        c->out[i] = g * c->dout[i];
    }
}

void align__nn_gelu_forward(float *out, const float *inp, int64_t n)
{
    gelu_ctx c = {out, inp, NULL};
    align__parallel_for(n, gelu_fwd, &c);
}

void align__nn_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n)
{
    gelu_ctx c = {dinp, inp, dout};
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
