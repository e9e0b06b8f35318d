/* softmax.c — the fused LM-head log-softmax. The only place the softmax over
 * the vocabulary and its Jacobian live: forward turns the logits into
 * probabilities in place (read again by backward), backward turns them into
 * dlogits = d * (onehot(target) - p) in place, so the head needs one
 * [N][V] buffer. */
#include "nn/nn.h"

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

void align__nn_logsoftmax_forward(float *logprob, int32_t *argmax, float *logits_out, float *io,
                                  const int32_t *targets, int64_t N, int64_t V)
{
    sm_ctx c = {.logprob = logprob, .argmax = argmax, .logits_out = logits_out, .io = io,
                .targets = targets, .V = V};
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
