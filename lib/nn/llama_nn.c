/* llama_nn.c — kernels of Llama-style blocks (nn_llama.h): RMSNorm, RoPE,
 * SwiGLU, grouped-query attention, the position-free token embedding.
 * Written as plain loops over rows (the matmuls around them dominate). */
#include "nn/nn_llama.h"

#include <math.h>
#include <string.h>

/* ---- RMSNorm ------------------------------------------------------------------ */
typedef struct {
    float *out, *rstd, *dinp;
    const float *inp, *w, *dout, *crstd;
    float eps;
    int64_t C;
} rms_ctx;

static void rms_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    rms_ctx *c = vctx;
    int64_t C = c->C;
    for (int64_t r = b; r < e; r++) {
        const float *x = c->inp + r * C;
        double ss = 0.0; /* double: the mean of squares does not depend on C's size */
        for (int64_t i = 0; i < C; i++)
            ss += (double)x[i] * x[i];
        float rs = (float)(1.0 / sqrt(ss / (double)C + (double)c->eps));
        if (c->rstd)
            c->rstd[r] = rs;
        float *o = c->out + r * C;
        for (int64_t i = 0; i < C; i++)
            o[i] = x[i] * rs * c->w[i];
    }
}

void align__nn_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                               float eps, int64_t N, int64_t C)
{
    rms_ctx c = {.out = out, .rstd = rstd, .inp = inp, .w = w, .eps = eps, .C = C};
    align__parallel_for(N, rms_fwd, &c);
}

static void rms_bwd_inp(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    rms_ctx *c = vctx;
    int64_t C = c->C;
    for (int64_t r = b; r < e; r++) {
        const float *x = c->inp + r * C, *dy = c->dout + r * C;
        float rs = c->crstd[r];
        double dot = 0.0;
        for (int64_t i = 0; i < C; i++)
            dot += (double)c->w[i] * dy[i] * x[i];
        float k = (float)(dot / (double)C) * rs * rs;
        float *dx = c->dinp + r * C;
        for (int64_t i = 0; i < C; i++)
            dx[i] += rs * (c->w[i] * dy[i] - x[i] * k);
    }
}

void align__nn_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, const float *rstd, int64_t N, int64_t C)
{
    rms_ctx c = {.dinp = dinp, .dout = dout, .inp = inp, .w = w, .crstd = rstd, .C = C};
    align__parallel_for(N, rms_bwd_inp, &c);
    if (dw) /* rows in order for each channel: fixed summation order */
        for (int64_t r = 0; r < N; r++) {
            const float *x = inp + r * C, *dy = dout + r * C;
            float rs = rstd[r];
            for (int64_t i = 0; i < C; i++)
                dw[i] += dy[i] * x[i] * rs;
        }
}

/* ---- RoPE ------------------------------------------------------------------------- */
void align__nn_rope_table(float *cosv, float *sinv, int64_t n_pos, int64_t hs, float theta)
{
    int64_t half = hs / 2;
    for (int64_t i = 0; i < half; i++) {
        /* as transformers: inv_freq in float32, angle = pos * inv_freq */
        float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)hs));
        for (int64_t p = 0; p < n_pos; p++) {
            float a = (float)p * inv;
            cosv[p * half + i] = cosf(a);
            sinv[p * half + i] = sinf(a);
        }
    }
}

static void rope_vec(float *x, const float *cs, const float *sn, int64_t H, int64_t hs, int inverse)
{
    int64_t half = hs / 2;
    for (int64_t h = 0; h < H; h++) {
        float *x1 = x + h * hs, *x2 = x1 + half;
        for (int64_t i = 0; i < half; i++) {
            float a = x1[i], b = x2[i], co = cs[i], si = inverse ? -sn[i] : sn[i];
            x1[i] = a * co - b * si;
            x2[i] = b * co + a * si;
        }
    }
}

void align__nn_rope(float *x, const float *cosv, const float *sinv, int64_t B, int64_t T,
                    int64_t H, int64_t hs, int64_t ld, int inverse)
{
    int64_t half = hs / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            rope_vec(x + (b * T + t) * ld, cosv + t * half, sinv + t * half, H, hs, inverse);
}

void align__nn_rope_row(float *x, int64_t pos, int64_t H, int64_t hs, float theta)
{
    int64_t half = hs / 2;
    float cs[512], sn[512]; /* hs <= 1024 (checked with the configuration) */
    /* the same float operations as align__nn_rope_table: decoding matches the forward */
    for (int64_t i = 0; i < half; i++) {
        float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)hs));
        float a = (float)pos * inv;
        cs[i] = cosf(a);
        sn[i] = sinf(a);
    }
    rope_vec(x, cs, sn, H, hs, 0);
}

/* ---- SwiGLU --------------------------------------------------------------------- */
void align__nn_swiglu_forward(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void align__nn_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                               const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g)), d = dout[i];
        float u = up[i];
        dup[i] = d * g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}

/* ---- grouped-query attention ------------------------------------------------------ */
typedef struct {
    float *out, *att, *dq, *dk, *dv, *scratch;
    const float *q, *k, *v, *dout, *catt;
    const int32_t *lengths;
    int64_t T, NH, KVH, hs;
} gqa_ctx;

/* One (sequence, query head) per unit. */
static void gqa_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gqa_ctx *c = vctx;
    int64_t T = c->T, NH = c->NH, KVH = c->KVH, hs = c->hs, QD = NH * hs, KD = KVH * hs;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t u = b; u < e; u++) {
        int64_t s = u / NH, h = u % NH, kh = h / (NH / KVH), len = c->lengths[s];
        for (int64_t t = 0; t < T; t++) {
            float *arow = c->att + ((s * NH + h) * T + t) * T;
            float *o = c->out + (s * T + t) * QD + h * hs;
            memset(arow, 0, (size_t)T * sizeof(float));
            memset(o, 0, (size_t)hs * sizeof(float));
            if (t >= len)
                continue;
            const float *q = c->q + (s * T + t) * QD + h * hs;
            float mx = -INFINITY;
            for (int64_t j = 0; j <= t; j++) {
                const float *kk = c->k + (s * T + j) * KD + kh * hs;
                float d = 0.0f;
                for (int64_t i = 0; i < hs; i++)
                    d += q[i] * kk[i];
                d *= scale;
                arow[j] = d;
                if (d > mx)
                    mx = d;
            }
            float sum = 0.0f;
            for (int64_t j = 0; j <= t; j++) {
                arow[j] = expf(arow[j] - mx);
                sum += arow[j];
            }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j <= t; j++) {
                arow[j] *= inv;
                const float *vv = c->v + (s * T + j) * KD + kh * hs;
                float p = arow[j];
                for (int64_t i = 0; i < hs; i++)
                    o[i] += p * vv[i];
            }
        }
    }
}

void align__nn_gqa_forward(float *out, float *att, const float *q, const float *k, const float *v,
                           const int32_t *lengths, int64_t B, int64_t T, int64_t NH, int64_t KVH,
                           int64_t hs)
{
    gqa_ctx c = {.out = out, .att = att, .q = q, .k = k, .v = v, .lengths = lengths, .T = T,
                 .NH = NH, .KVH = KVH, .hs = hs};
    align__parallel_for(B * NH, gqa_fwd, &c);
}

/* One (sequence, key/value head) per unit: the query heads of its group add
 * into its dk / dv, so no two units write the same element. */
static void gqa_bwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    gqa_ctx *c = vctx;
    int64_t T = c->T, NH = c->NH, KVH = c->KVH, hs = c->hs, QD = NH * hs, KD = KVH * hs;
    int64_t G = NH / KVH;
    float scale = 1.0f / sqrtf((float)hs);
    float *datt = c->scratch + (int64_t)chunk * T;
    for (int64_t u = b; u < e; u++) {
        int64_t s = u / KVH, kh = u % KVH, len = c->lengths[s];
        for (int64_t t = 0; t < T; t++) {
            memset(c->dk + (s * T + t) * KD + kh * hs, 0, (size_t)hs * sizeof(float));
            memset(c->dv + (s * T + t) * KD + kh * hs, 0, (size_t)hs * sizeof(float));
            for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                memset(c->dq + (s * T + t) * QD + h * hs, 0, (size_t)hs * sizeof(float));
        }
        for (int64_t h = kh * G; h < (kh + 1) * G; h++)
            for (int64_t t = 0; t < len; t++) {
                const float *arow = c->catt + ((s * NH + h) * T + t) * T;
                const float *dO = c->dout + (s * T + t) * QD + h * hs;
                const float *q = c->q + (s * T + t) * QD + h * hs;
                float *dq = c->dq + (s * T + t) * QD + h * hs;
                float dot = 0.0f;
                for (int64_t j = 0; j <= t; j++) {
                    const float *vv = c->v + (s * T + j) * KD + kh * hs;
                    float *dvv = c->dv + (s * T + j) * KD + kh * hs;
                    float d = 0.0f, p = arow[j];
                    for (int64_t i = 0; i < hs; i++) {
                        d += dO[i] * vv[i];
                        dvv[i] += p * dO[i];
                    }
                    datt[j] = d;
                    dot += p * d;
                }
                for (int64_t j = 0; j <= t; j++) {
                    float dpre = arow[j] * (datt[j] - dot) * scale;
                    const float *kk = c->k + (s * T + j) * KD + kh * hs;
                    float *dkk = c->dk + (s * T + j) * KD + kh * hs;
                    for (int64_t i = 0; i < hs; i++) {
                        dq[i] += dpre * kk[i];
                        dkk[i] += dpre * q[i];
                    }
                }
            }
    }
}

void align__nn_gqa_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                            const float *q, const float *k, const float *v, const float *att,
                            const int32_t *lengths, int64_t B, int64_t T, int64_t NH, int64_t KVH,
                            int64_t hs)
{
    gqa_ctx c = {.dq = dq, .dk = dk, .dv = dv, .scratch = scratch, .dout = dout, .q = q, .k = k,
                 .v = v, .catt = att, .lengths = lengths, .T = T, .NH = NH, .KVH = KVH, .hs = hs};
    align__parallel_for(B * KVH, gqa_bwd, &c);
}

/* ---- token embedding ---------------------------------------------------------- */
void align__nn_embed_forward(float *out, const int32_t *tokens, const float *wte,
                             const int32_t *lengths, int64_t B, int64_t T, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            float *o = out + (b * T + t) * C;
            if (t < lengths[b])
                memcpy(o, wte + (int64_t)tokens[b * T + t] * C, (size_t)C * sizeof(float));
            else
                memset(o, 0, (size_t)C * sizeof(float));
        }
}

void align__nn_embed_backward(float *dwte, const float *dout, const int32_t *tokens,
                              const int32_t *lengths, int64_t B, int64_t T, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < lengths[b]; t++) {
            const float *d = dout + (b * T + t) * C;
            float *we = dwte + (int64_t)tokens[b * T + t] * C;
            for (int64_t i = 0; i < C; i++)
                we[i] += d[i];
        }
}
