/* attention.c — causal multi-head self-attention (Vaswani et al. 2017),
 * scaled dot products, with per-sequence lengths (padding attends to
 * nothing and is attended by nothing). Parallel over (sequence, head)
 * pairs: each pair owns its slices of the outputs, so results do not depend
 * on the split. */
#include "nn/nn.h"

#include <math.h>
#include <string.h>

typedef struct {
    float *out, *att, *dqkv, *scratch;
    const float *qkv, *dout, *catt;
    const int32_t *lengths;
    int64_t B, T, C, NH;
} att_ctx;

static void att_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    att_ctx *c = vctx;
    int64_t T = c->T, C = c->C, NH = c->NH, hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t u = b; u < e; u++) {
        int64_t s = u / NH, h = u % NH, len = c->lengths[s];
        const float *base = c->qkv + s * T * C3;
        for (int64_t t = 0; t < T; t++) {
            float *arow = c->att + ((s * NH + h) * T + t) * T;
            float *o = c->out + (s * T + t) * C + h * hs;
            memset(arow, 0, (size_t)T * sizeof(float));
            memset(o, 0, (size_t)hs * sizeof(float));
            if (t >= len)
                continue;
            const float *q = base + t * C3 + h * hs;
            float mx = -INFINITY;
            for (int64_t j = 0; j <= t; j++) {
                const float *k = base + j * C3 + C + h * hs;
                float d = 0.0f;
                for (int64_t i = 0; i < hs; i++)
                    d += q[i] * k[i];
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
                const float *v = base + j * C3 + 2 * C + h * hs;
                float p = arow[j];
                for (int64_t i = 0; i < hs; i++)
                    o[i] += p * v[i];
            }
        }
    }
}

void align__nn_attention_forward(float *out, float *att, const float *qkv, const int32_t *lengths,
                                 int64_t B, int64_t T, int64_t C, int64_t NH)
{
    att_ctx c = {.out = out, .att = att, .qkv = qkv, .lengths = lengths, .B = B, .T = T, .C = C,
                 .NH = NH};
    align__parallel_for(B * NH, att_fwd, &c);
}

/* Softmax backward per row: dpre = p * (datt - sum_j p_j datt_j). */
static void att_bwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    att_ctx *c = vctx;
    int64_t T = c->T, C = c->C, NH = c->NH, hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    float *datt = c->scratch + (int64_t)chunk * T;
    for (int64_t u = b; u < e; u++) {
        int64_t s = u / NH, h = u % NH, len = c->lengths[s];
        const float *base = c->qkv + s * T * C3;
        float *dbase = c->dqkv + s * T * C3;
        for (int64_t t = 0; t < T; t++)
            for (int part = 0; part < 3; part++)
                memset(dbase + t * C3 + part * C + h * hs, 0, (size_t)hs * sizeof(float));
        for (int64_t t = 0; t < len; t++) {
            const float *arow = c->catt + ((s * NH + h) * T + t) * T;
            const float *d = c->dout + (s * T + t) * C + h * hs;
            const float *q = base + t * C3 + h * hs;
            float *dq = dbase + t * C3 + h * hs;
            float dot = 0.0f;
            for (int64_t j = 0; j <= t; j++) {
                const float *v = base + j * C3 + 2 * C + h * hs;
                float *dv = dbase + j * C3 + 2 * C + h * hs;
                float a = 0.0f, p = arow[j];
                for (int64_t i = 0; i < hs; i++) {
                    a += d[i] * v[i];
                    dv[i] += p * d[i];
                }
                datt[j] = a;
                dot += p * a;
            }
            for (int64_t j = 0; j <= t; j++) {
                float g = arow[j] * (datt[j] - dot) * scale;
                const float *k = base + j * C3 + C + h * hs;
                float *dk = dbase + j * C3 + C + h * hs;
                for (int64_t i = 0; i < hs; i++) {
                    dq[i] += g * k[i];
                    dk[i] += g * q[i];
                }
            }
        }
    }
}

void align__nn_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                  const float *att, const int32_t *lengths, int64_t B, int64_t T,
                                  int64_t C, int64_t NH)
{
    att_ctx c = {.dqkv = dqkv, .scratch = scratch, .dout = dout, .qkv = qkv, .catt = att,
                 .lengths = lengths, .B = B, .T = T, .C = C, .NH = NH};
    align__parallel_for(B * NH, att_bwd, &c);
}

/* ---- reference: full T x T with an explicit mask, double accumulation ---- */
void align__nn_attention_forward_ref(float *out, float *att, const float *qkv,
                                     const int32_t *lengths, int64_t B, int64_t T, int64_t C,
                                     int64_t NH)
{
    int64_t hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    for (int64_t s = 0; s < B; s++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < T; t++) {
                float *arow = att + ((s * NH + h) * T + t) * T;
                int valid = t < lengths[s];
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    double d = 0;
                    for (int64_t i = 0; i < hs; i++)
                        d += (double)qkv[(s * T + t) * C3 + h * hs + i] *
                             qkv[(s * T + j) * C3 + C + h * hs + i];
                    d *= scale;
                    int allowed = valid && j <= t;
                    arow[j] = allowed ? (float)d : 0.0f;
                    if (allowed && d > mx)
                        mx = d;
                }
                for (int64_t j = 0; j < T; j++)
                    if (valid && j <= t)
                        sum += exp(arow[j] - mx);
                for (int64_t j = 0; j < T; j++)
                    arow[j] = (valid && j <= t) ? (float)(exp(arow[j] - mx) / sum) : 0.0f;
                for (int64_t i = 0; i < hs; i++) {
                    double o = 0;
                    for (int64_t j = 0; j < T; j++)
                        o += (double)arow[j] * qkv[(s * T + j) * C3 + 2 * C + h * hs + i];
                    out[(s * T + t) * C + h * hs + i] = (float)o;
                }
            }
}

void align__nn_attention_backward_ref(float *dqkv, const float *dout, const float *qkv,
                                      const float *att, const int32_t *lengths, int64_t B,
                                      int64_t T, int64_t C, int64_t NH)
{
    int64_t hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    memset(dqkv, 0, (size_t)(B * T * C3) * sizeof(float));
    for (int64_t s = 0; s < B; s++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < lengths[s]; t++) {
                const float *arow = att + ((s * NH + h) * T + t) * T;
                const float *d = dout + (s * T + t) * C + h * hs;
                double dot = 0;
                double datt[4096];
                for (int64_t j = 0; j <= t; j++) {
                    double a = 0;
                    for (int64_t i = 0; i < hs; i++) {
                        a += (double)d[i] * qkv[(s * T + j) * C3 + 2 * C + h * hs + i];
                        dqkv[(s * T + j) * C3 + 2 * C + h * hs + i] += arow[j] * d[i];
                    }
                    datt[j] = a;
                    dot += arow[j] * a;
                }
                for (int64_t j = 0; j <= t; j++) {
                    double g = arow[j] * (datt[j] - dot) * scale;
                    for (int64_t i = 0; i < hs; i++) {
                        dqkv[(s * T + t) * C3 + h * hs + i] +=
                            (float)(g * qkv[(s * T + j) * C3 + C + h * hs + i]);
                        dqkv[(s * T + j) * C3 + C + h * hs + i] +=
                            (float)(g * qkv[(s * T + t) * C3 + h * hs + i]);
                    }
                }
            }
}
