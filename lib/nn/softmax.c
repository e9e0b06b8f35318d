/* softmax.c — the fused LM-head log-softmax. The only place the softmax over
 * the vocabulary and its Jacobian live: forward turns the logits into
 * probabilities in place (read again by backward), backward turns them into
 * dlogits = d * (onehot(target) - p) in place, so the head needs one
 * [N][V] buffer. */
#include "nn/nn.h"
#include "nn/vmath.h"

#include <math.h>
#include <string.h>

typedef struct {
    float *logprob, *logits_out, *io;
    const float *dlogprob;
    int32_t *argmax;
    const int32_t *targets;
    int64_t V;
} sm_ctx;

static void sm_fwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    sm_ctx *c = vctx;
    int64_t V = c->V;
    for (int64_t r = b; r < e; r++) {
        float *x = c->io + r * V;
        int32_t tgt = c->targets[r];
        if (tgt == -2) {
            memset(x, 0, (size_t)V * sizeof(float));
            if (c->logits_out)
                memset(c->logits_out + r * V, 0, (size_t)V * sizeof(float));
            if (c->logprob)
                c->logprob[r] = 0.0f;
            if (c->argmax)
                c->argmax[r] = -1;
            continue;
        }
        if (c->logits_out)
            memcpy(c->logits_out + r * V, x, (size_t)V * sizeof(float));
        float mx = -INFINITY;
        int32_t am = 0;
        for (int64_t v = 0; v < V; v++)
            if (x[v] > mx) {
                mx = x[v];
                am = (int32_t)v;
            }
        float sum = 0.0f;
        float xt = tgt >= 0 ? x[tgt] : 0.0f;
        for (int64_t v = 0; v < V; v++) {
            float p = expf(x[v] - mx);
            x[v] = p;
            sum += p;
        }
        float inv = 1.0f / sum;
        for (int64_t v = 0; v < V; v++)
            x[v] *= inv;
        if (c->logprob)
            c->logprob[r] = tgt >= 0 ? xt - mx - logf(sum) : 0.0f;
        if (c->argmax)
            c->argmax[r] = am;
    }
}

#ifdef ALIGN__VMATH_X86
/* One row of sm_fwd with 8 lanes: the maximum (exact in any order), the
 * first index holding it, then exp (vmath.h) stored and summed in 8 running
 * sums folded in a fixed order, then the scaling. The sum's order is fixed
 * by V alone, so a row's result does not depend on the split. */
__attribute__((target("avx2,fma"))) static void sm_row_avx2(float *x, int64_t V, int32_t tgt, float *logprob,
                                                              int32_t *argmax)
{
    int64_t full = V & ~(int64_t)7;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int64_t v = 0; v < full; v += 8)
        mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + v));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mv, 1), _mm256_castps256_ps128(mv));
    m4 = _mm_max_ps(m4, _mm_shuffle_ps(m4, m4, 0x4e));
    float mx = fmaxf(_mm_cvtss_f32(m4), _mm_cvtss_f32(_mm_shuffle_ps(m4, m4, 0x55)));
    for (int64_t v = full; v < V; v++)
        mx = x[v] > mx ? x[v] : mx;
    int32_t am = 0;
    const __m256 mxv = _mm256_set1_ps(mx);
    int64_t v = 0;
    for (; v < full; v += 8) {
        int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + v), mxv, _CMP_EQ_OQ));
        if (bits) {
            am = (int32_t)(v + __builtin_ctz((unsigned)bits));
            break;
        }
    }
    if (v >= full)
        for (v = full; v < V; v++)
            if (x[v] == mx) {
                am = (int32_t)v;
                break;
            }
    float xt = tgt >= 0 ? x[tgt] : 0.0f;
    __m256 acc = _mm256_setzero_ps();
    for (v = 0; v < full; v += 8) {
        __m256 p = align__exp8(_mm256_sub_ps(_mm256_loadu_ps(x + v), mxv));
        _mm256_storeu_ps(x + v, p);
        acc = _mm256_add_ps(acc, p);
    }
    float sum = align__hsum8(acc);
    for (v = full; v < V; v++) {
        x[v] = align__exp1(x[v] - mx);
        sum += x[v];
    }
    const float inv = 1.0f / sum;
    const __m256 iv = _mm256_set1_ps(inv);
    for (v = 0; v < full; v += 8)
        _mm256_storeu_ps(x + v, _mm256_mul_ps(_mm256_loadu_ps(x + v), iv));
    for (v = full; v < V; v++)
        x[v] *= inv;
    if (logprob)
        *logprob = tgt >= 0 ? xt - mx - logf(sum) : 0.0f;
    if (argmax)
        *argmax = am;
}

__attribute__((target("avx2,fma"))) static void sm_fwd_avx2(void *vctx, int64_t b, int64_t e, int chunk)
{
    sm_ctx *c = vctx;
    for (int64_t r = b; r < e; r++) {
        if (c->targets[r] == -2) {
            sm_fwd(vctx, r, r + 1, chunk);
            continue;
        }
        if (c->logits_out)
            memcpy(c->logits_out + r * c->V, c->io + r * c->V, (size_t)c->V * sizeof(float));
        sm_row_avx2(c->io + r * c->V, c->V, c->targets[r], c->logprob ? c->logprob + r : NULL,
                    c->argmax ? c->argmax + r : NULL);
    }
}
#endif

void align__nn_logsoftmax_forward(float *logprob, int32_t *argmax, float *logits_out, float *io,
                                  const int32_t *targets, int64_t N, int64_t V)
{
    sm_ctx c = {.logprob = logprob, .argmax = argmax, .logits_out = logits_out, .io = io,
                .targets = targets, .V = V};
#ifdef ALIGN__VMATH_X86
    if (align__have_avx2_fma()) {
        align__parallel_for(N, sm_fwd_avx2, &c);
        return;
    }
#endif
    align__parallel_for(N, sm_fwd, &c);
}

static void sm_bwd(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    sm_ctx *c = vctx;
    int64_t V = c->V;
    for (int64_t r = b; r < e; r++) {
        float *x = c->io + r * V;
        int32_t tgt = c->targets[r];
        float d = c->dlogprob ? c->dlogprob[r] : 0.0f;
        if (tgt < 0 || d == 0.0f) {
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        /* d log p_tgt / d logit_v = [v == tgt] - p_v */
        for (int64_t v = 0; v < V; v++)
            x[v] *= -d;
        x[tgt] += d;
    }
}

void align__nn_logsoftmax_backward(float *io, const float *dlogprob, const int32_t *targets,
                                   int64_t N, int64_t V)
{
    sm_ctx c = {.io = io, .dlogprob = dlogprob, .targets = targets, .V = V};
    align__parallel_for(N, sm_bwd, &c);
}
