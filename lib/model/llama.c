/* llama.c — the Llama family (Touvron et al. 2023) as an architecture table:
 * token embedding without positions, pre-norm blocks of RMSNorm, causal
 * grouped-query attention with rotary positions (Hugging Face's rotate_half
 * layout) and a SwiGLU MLP, a final RMSNorm, an LM head tied to the
 * embedding or apart (lm_head.weight), and the optional scalar head on the
 * final norm's output. No biases, except q/k/v biases with
 * ALIGN_MODEL_QKV_BIAS (Qwen2). Tensor names and shapes are Hugging Face's
 * (LlamaForCausalLM: nn.Linear weights [out][in]), so a published folder
 * loads by name. Forward, backward, and decoding with a KV cache.
 *
 * Every linear layer goes through linear_fwd / linear_bwd, which call the
 * LoRA hooks (lora.c) for the adaptable ones. While adapters are attached
 * the base holds no gradients (m->grads NULL): G() is NULL and the
 * backward skips the base's weight gradients. */
#include "model/lora.h"
#include "model/model_impl.h"
#include "nn/nn.h"
#include "nn/nn_llama.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ARENA_MAX_THREADS 256 /* as model.c: attention scratch rows */

/* Per-layer tensor slots, in the table's order; -1 when absent. */
enum { T_LN1, T_Q, T_QB, T_K, T_KB, T_V, T_VB, T_O, T_LN2, T_GATE, T_UP, T_DOWN, T_NSLOT };

typedef struct {
    int ti[T_NSLOT];  /* tensor index per slot */
} llama_layer;

typedef struct {
    int64_t C, NH, KVH, hs, KVD, I, V;
    int per_layer;   /* tensors per layer */
    int embed, norm, head, score_w, score_b; /* tensor indices (head: embed when tied) */
} llama_dims;

static void dims_of(const align_model *m, llama_dims *d)
{
    const align_model_params *c = &m->cfg;
    d->C = c->n_embd;
    d->NH = c->n_head;
    d->KVH = c->n_kv_head;
    d->hs = d->C / d->NH;
    d->KVD = d->KVH * d->hs;
    d->I = c->intermediate_size;
    d->V = c->vocab_size;
    d->per_layer = (c->flags & ALIGN_MODEL_QKV_BIAS) ? 12 : 9;
    d->embed = 0;
    d->norm = 1 + c->n_layer * d->per_layer;
    int next = d->norm + 1;
    d->head = (c->flags & ALIGN_MODEL_UNTIED_HEAD) ? next++ : d->embed;
    d->score_w = d->score_b = -1;
    if (c->flags & ALIGN_MODEL_SCALAR_HEAD) {
        d->score_w = next++;
        d->score_b = next++;
    }
}

static void layer_of(const align_model *m, int l, llama_layer *L)
{
    int bias = (m->cfg.flags & ALIGN_MODEL_QKV_BIAS) != 0;
    int i = 1 + l * (bias ? 12 : 9);
    L->ti[T_LN1] = i++;
    L->ti[T_Q] = i++;
    L->ti[T_QB] = bias ? i++ : -1;
    L->ti[T_K] = i++;
    L->ti[T_KB] = bias ? i++ : -1;
    L->ti[T_V] = i++;
    L->ti[T_VB] = bias ? i++ : -1;
    L->ti[T_O] = i++;
    L->ti[T_LN2] = i++;
    L->ti[T_GATE] = i++;
    L->ti[T_UP] = i++;
    L->ti[T_DOWN] = i++;
}

static const float *P(const align_model *m, int ti) { return ti < 0 ? NULL : m->params + m->tensors[ti].offset; }
static float *G(const align_model *m, int ti)
{
    return ti < 0 || !m->grads ? NULL : m->grads + m->tensors[ti].offset;
}

/* ---- configuration ------------------------------------------------------------- */

/* The defaults a 0 stands for (see align.h). */
static void resolve(align_model_params *c)
{
    if (c->n_kv_head == 0)
        c->n_kv_head = c->n_head;
    if (c->intermediate_size == 0)
        c->intermediate_size = 4 * c->n_embd;
    if (c->rope_theta == 0.0f)
        c->rope_theta = 10000.0f;
    if (c->norm_eps == 0.0f)
        c->norm_eps = 1e-6f;
}

static int llama_check_config(const align_model_params *in, align__errbuf *eb)
{
    align_model_params c = *in;
    resolve(&c);
    uint32_t known = ALIGN_MODEL_SCALAR_HEAD | ALIGN_MODEL_UNTIED_HEAD | ALIGN_MODEL_QKV_BIAS;
    if (c.flags & ~known)
        return align__error(eb, ALIGN_EINVAL, "model: unknown flags 0x%x", c.flags);
    int64_t hs = c.n_embd / c.n_head;
    if (hs % 2 != 0 || hs > 1024)
        return align__error(eb, ALIGN_EINVAL,
                            "model: head size %lld (n_embd / n_head) must be even and at most 1024 "
                            "for rotary embeddings", (long long)hs);
    if (c.n_kv_head < 1 || c.n_kv_head > c.n_head || c.n_head % c.n_kv_head != 0)
        return align__error(eb, ALIGN_EINVAL, "model: n_kv_head %d must divide n_head %d",
                            c.n_kv_head, c.n_head);
    if (c.intermediate_size < 1 || c.intermediate_size > (1 << 20))
        return align__error(eb, ALIGN_EINVAL, "model: intermediate_size %d out of range 1..1048576",
                            c.intermediate_size);
    if (!(c.rope_theta > 1.0f) || !isfinite(c.rope_theta))
        return align__error(eb, ALIGN_EINVAL, "model: rope_theta %g must be a finite number > 1",
                            (double)c.rope_theta);
    if (!(c.norm_eps > 0.0f) || !(c.norm_eps < 1.0f))
        return align__error(eb, ALIGN_EINVAL, "model: norm_eps %g must be in (0, 1)", (double)c.norm_eps);
    double C = c.n_embd, KVD = (double)c.n_kv_head * (double)hs;
    double total = (double)c.vocab_size * C * ((c.flags & ALIGN_MODEL_UNTIED_HEAD) ? 2 : 1) +
                   (double)c.n_layer * (2 * C * C + 2 * C * KVD + 3 * C * c.intermediate_size);
    if (total > 1e11)
        return align__error(eb, ALIGN_EINVAL, "model: %.3g parameters is too many", total);
    return ALIGN_OK;
}

static int llama_max_tensors(const align_model_params *c) { return 1 + 12 * c->n_layer + 4; }

static void add_tensor(align_model *m, size_t *off, const char *name, int64_t d0, int64_t d1)
{
    align__tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = *off;
    t->decay = t->ndim == 2; /* as GPT-2: matrices and embeddings, not norms or biases */
    *off += t->numel;
}

/* Also settles the configuration's defaults (0 = the default) in m->cfg,
 * which align_model_config then reports. */
static void llama_build_tensors(align_model *m)
{
    resolve(&m->cfg);
    const align_model_params *c = &m->cfg;
    llama_dims d;
    dims_of(m, &d);
    size_t off = 0;
    char nm[ALIGN__TENSOR_NAME_CAP];
    m->n_tensors = 0;
    add_tensor(m, &off, "model.embed_tokens.weight", d.V, d.C);
    int bias = (c->flags & ALIGN_MODEL_QKV_BIAS) != 0;
    for (int l = 0; l < c->n_layer; l++) {
#define T_(suffix, d0, d1)                                                  \
    do {                                                                    \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);           \
        add_tensor(m, &off, nm, d0, d1);                                    \
    } while (0)
        T_("input_layernorm.weight", d.C, 0);
        T_("self_attn.q_proj.weight", d.C, d.C);
        if (bias)
            T_("self_attn.q_proj.bias", d.C, 0);
        T_("self_attn.k_proj.weight", d.KVD, d.C);
        if (bias)
            T_("self_attn.k_proj.bias", d.KVD, 0);
        T_("self_attn.v_proj.weight", d.KVD, d.C);
        if (bias)
            T_("self_attn.v_proj.bias", d.KVD, 0);
        T_("self_attn.o_proj.weight", d.C, d.C);
        T_("post_attention_layernorm.weight", d.C, 0);
        T_("mlp.gate_proj.weight", d.I, d.C);
        T_("mlp.up_proj.weight", d.I, d.C);
        T_("mlp.down_proj.weight", d.C, d.I);
#undef T_
    }
    add_tensor(m, &off, "model.norm.weight", d.C, 0);
    if (c->flags & ALIGN_MODEL_UNTIED_HEAD)
        add_tensor(m, &off, "lm_head.weight", d.V, d.C);
    if (c->flags & ALIGN_MODEL_SCALAR_HEAD) {
        add_tensor(m, &off, "score.weight", 1, d.C);
        add_tensor(m, &off, "score.bias", 1, 0);
    }
    m->n_params = off;
}

/* Views are computed from the table, except the scalar head's, which LoRA
 * re-points at its trainable copy (align__lora_repoint, as for GPT-2). */
static void llama_point(align_model *m)
{
    llama_dims d;
    dims_of(m, &d);
    m->w.scorew = m->g.scorew = m->w.scoreb = m->g.scoreb = NULL;
    if (d.score_w >= 0) {
        m->w.scorew = m->params + m->tensors[d.score_w].offset;
        m->w.scoreb = m->params + m->tensors[d.score_b].offset;
        m->g.scorew = G(m, d.score_w);
        m->g.scoreb = G(m, d.score_b);
    }
}

/* transformers' Llama initialisation: N(0, 0.02) matrices and embeddings,
 * zero biases, unit norm gains; each tensor from its own Philox stream. */
static void llama_init_weights(align_model *m)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        const char *nm = t->name;
        size_t n = strlen(nm);
        if (n > 5 && !strcmp(nm + n - 5, ".bias")) {
            memset(p, 0, t->numel * sizeof(float));
        } else if (strstr(nm, "norm.weight")) {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = 1.0f;
        } else {
            align__rng r;
            align__rng_init(&r, m->cfg.seed, (uint64_t)i);
            align__rng_fill_normal(&r, p, t->numel, 0.0f, 0.02f);
        }
    }
}

/* ---- activations ------------------------------------------------------------------ */
typedef struct {
    float *rstd1, *ln1, *q, *k, *v, *atty, *att, *res2, *rstd2, *ln2, *gate, *up, *h, *res3;
} llama_acts;

static size_t rnd(size_t n) { return (n + 15) & ~(size_t)15; }

/* One layer's slot over base (NULL: count). */
static size_t slot_layout(const llama_dims *d, int64_t B, int64_t T, float *base, llama_acts *la)
{
    int64_t N = B * T;
    size_t off = 0;
    float *dummy;
#define TAKE(field, n)                                                  \
    do {                                                                \
        *(base ? &la->field : &dummy) = base ? base + off : NULL;       \
        off += rnd((size_t)(n));                                        \
    } while (0)
    TAKE(rstd1, N);
    TAKE(ln1, N * d->C);
    TAKE(q, N * d->C);
    TAKE(k, N * d->KVD);
    TAKE(v, N * d->KVD);
    TAKE(atty, N * d->C);
    TAKE(att, B * d->NH * T * T);
    TAKE(res2, N * d->C);
    TAKE(rstd2, N);
    TAKE(ln2, N * d->C);
    TAKE(gate, N * d->I);
    TAKE(up, N * d->I);
    TAKE(h, N * d->I);
    TAKE(res3, N * d->C);
#undef TAKE
    (void)dummy;
    return off;
}

static void slot(const align_model *m, const align__acts *a, int l, llama_acts *la)
{
    llama_dims d;
    dims_of(m, &d);
    slot_layout(&d, a->B, a->T, a->xl + (size_t)(m->frozen ? 0 : l) * a->xl_stride, la);
}

static size_t llama_acts_layout(const align_model *m, align__acts *a, int64_t B, int64_t T, float *base)
{
    llama_dims d;
    dims_of(m, &d);
    size_t off = 0;
    int64_t N = B * T;
    int slots = m->frozen ? 1 : m->cfg.n_layer;
#define TAKE(ptr, n)                                 \
    do {                                             \
        if (base)                                    \
            (ptr) = base + off;                      \
        off += rnd((size_t)(n));                     \
    } while (0)
    TAKE(a->encoded, N * d.C);
    size_t stride = slot_layout(&d, B, T, NULL, NULL);
    TAKE(a->xl, stride * (size_t)slots);
    if (base)
        a->xl_stride = stride;
    TAKE(a->lnf, N * d.C);
    TAKE(a->lnf_rstd, N);
    TAKE(a->probs, N * d.V);
    TAKE(a->logprob, N);
    TAKE(a->rope_cos, T * d.hs / 2);
    TAKE(a->rope_sin, T * d.hs / 2);
    if (!m->frozen) {
        TAKE(a->dres, N * d.C);
        TAKE(a->dC, N * d.C);
        TAKE(a->dqkv, N * (2 * d.C + 2 * d.KVD)); /* dq | dk | dv | a [N][C] temporary */
        TAKE(a->dfch, N * 3 * d.I);                /* dgate | dup | dh */
        TAKE(a->att_scratch, (int64_t)ARENA_MAX_THREADS * T);
    }
#undef TAKE
    return off;
}

/* ---- linear layers: the one place every projection goes through ------------------ */

/* out[N][OC] = beta * out + inp[N][IC] @ W^T (+ bias), W = tensor wi [OC][IC]
 * (nn.Linear's layout), plus the LoRA adapter of (layer l, site) if any
 * (site -1: the heads, never adapted). a: the forward's arena (NULL when
 * decoding). decode: the few-row product of decoding. */
static void linear_fwd(const align_model *m, const align__acts *a, int l, int site, int wi, int bi, float *out,
                       const float *inp, int64_t N, float beta, int decode)
{
    const align__tensor *t = &m->tensors[wi];
    (decode ? align__nn_matmul_decode : align__nn_matmul_forward)(out, inp, P(m, wi), P(m, bi), N,
                                                                  t->shape[1], t->shape[0],
                                                                  ALIGN__W_OUT_IN, beta);
    if (site >= 0)
        align__lora_fwd(m, a, l, site, out, inp, N);
}

/* dinp[N][IC] = dout @ W (overwritten), dW += dout^T inp, dbias += column sums
 * (skipped without base gradients), then the adapter's part of dinp and its
 * dA, dB. */
static void linear_bwd(align_model *m, int l, int site, int wi, int bi, float *dinp, const float *dout,
                       const float *inp, int64_t N)
{
    const align__tensor *t = &m->tensors[wi];
    align__nn_matmul_backward(dinp, G(m, wi), G(m, bi), dout, inp, P(m, wi), N, t->shape[1],
                              t->shape[0], ALIGN__W_OUT_IN);
    if (site >= 0)
        align__lora_bwd(m, l, site, dinp, dout, inp, N);
}

static void add_into(float *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* ---- forward ---------------------------------------------------------------------- */
static void llama_forward(const align_model *m, align__acts *a, float *token_logprobs,
                          float *scalar, float *logits, int32_t *argmax)
{
    llama_dims d;
    dims_of(m, &d);
    int64_t B = a->B, T = a->T, N = B * T, C = d.C;
    float eps = m->cfg.norm_eps;
    align__nn_rope_table(a->rope_cos, a->rope_sin, T, d.hs, m->cfg.rope_theta);
    align__nn_embed_forward(a->encoded, a->tokens, P(m, d.embed), a->lengths, B, T, C);
    const float *resid = a->encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        llama_acts la;
        llama_layer L;
        slot(m, a, l, &la);
        layer_of(m, l, &L);
        align__nn_rmsnorm_forward(la.ln1, la.rstd1, resid, P(m, L.ti[T_LN1]), eps, N, C);
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_Q, L.ti[T_Q], L.ti[T_QB], la.q, la.ln1, N, 0.0f, 0);
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_K, L.ti[T_K], L.ti[T_KB], la.k, la.ln1, N, 0.0f, 0);
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_V, L.ti[T_V], L.ti[T_VB], la.v, la.ln1, N, 0.0f, 0);
        align__nn_rope(la.q, a->rope_cos, a->rope_sin, B, T, d.NH, d.hs, C, 0);
        align__nn_rope(la.k, a->rope_cos, a->rope_sin, B, T, d.KVH, d.hs, d.KVD, 0);
        align__nn_gqa_forward(la.atty, la.att, la.q, la.k, la.v, a->lengths, B, T, d.NH, d.KVH, d.hs);
        memcpy(la.res2, resid, (size_t)(N * C) * sizeof(float));
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_O, L.ti[T_O], -1, la.res2, la.atty, N, 1.0f, 0);
        align__nn_rmsnorm_forward(la.ln2, la.rstd2, la.res2, P(m, L.ti[T_LN2]), eps, N, C);
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_GATE, L.ti[T_GATE], -1, la.gate, la.ln2, N, 0.0f, 0);
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_UP, L.ti[T_UP], -1, la.up, la.ln2, N, 0.0f, 0);
        align__nn_swiglu_forward(la.h, la.gate, la.up, N * d.I);
        memcpy(la.res3, la.res2, (size_t)(N * C) * sizeof(float));
        linear_fwd(m, a, l, ALIGN__LORA_LLAMA_DOWN, L.ti[T_DOWN], -1, la.res3, la.h, N, 1.0f, 0);
        resid = la.res3;
    }
    align__nn_rmsnorm_forward(a->lnf, a->lnf_rstd, resid, P(m, d.norm), eps, N, C);

    a->head_done = 0;
    if (token_logprobs || logits || argmax) {
        linear_fwd(m, a, -1, -1, d.head, -1, a->probs, a->lnf, N, 0.0f, 0);
        align__nn_logsoftmax_forward(a->logprob, a->argmax, logits, a->probs, a->targets, N, d.V);
        a->head_done = 1;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t + 1 < T; t++) {
                if (token_logprobs)
                    token_logprobs[b * (T - 1) + t] = a->logprob[b * T + t];
                if (argmax)
                    argmax[b * (T - 1) + t] = a->argmax[b * T + t];
            }
    }
    if (scalar) {
        const float *sw = m->w.scorew, *sb = m->w.scoreb; /* sw: LoRA's copy while attached */
        for (int64_t r = 0; r < N; r++) {
            if (a->targets[r] == -2) {
                scalar[r] = 0.0f;
                continue;
            }
            const float *x = a->lnf + r * C;
            float s = sb[0];
            for (int64_t i = 0; i < C; i++)
                s += x[i] * sw[i];
            scalar[r] = s;
        }
    }
}

/* ---- backward --------------------------------------------------------------------- */
static void llama_backward(align_model *m, const float *dlp, const float *ds)
{
    align__acts *a = &m->acts;
    llama_dims d;
    dims_of(m, &d);
    int64_t B = a->B, T = a->T, N = B * T, C = d.C, I = d.I;
    int L = m->cfg.n_layer;
    float *dq = a->dqkv, *dk = dq + N * C, *dv = dk + N * d.KVD, *dtmp = dv + N * d.KVD;
    float *dgate = a->dfch, *dup = dgate + N * I, *dh = dup + N * I;

    memset(a->dC, 0, (size_t)(N * C) * sizeof(float));
    int any = 0;
    if (dlp && a->head_done) {
        for (int64_t b = 0; b < B; b++) {
            for (int64_t t = 0; t + 1 < T; t++) {
                float g = dlp[b * (T - 1) + t];
                a->logprob[b * T + t] = g;
                any |= g != 0.0f && a->targets[b * T + t] >= 0;
            }
            a->logprob[b * T + T - 1] = 0.0f;
        }
    }
    if (any) {
        align__nn_logsoftmax_backward(a->probs, a->logprob, a->targets, N, d.V);
        linear_bwd(m, -1, -1, d.head, -1, a->dC, a->probs, a->lnf, N);
    }
    a->head_done = 0;
    if (ds && d.score_w >= 0) {
        const float *sw = m->w.scorew;
        float *gsw = m->g.scorew, *gsb = m->g.scoreb; /* gsb NULL, gsw LoRA's copy while attached */
        for (int64_t r = 0; r < N; r++) {
            if (a->targets[r] == -2 || ds[r] == 0.0f)
                continue;
            float g = ds[r];
            const float *x = a->lnf + r * C;
            float *dx = a->dC + r * C;
            for (int64_t i = 0; i < C; i++) {
                dx[i] += g * sw[i];
                if (gsw)
                    gsw[i] += g * x[i];
            }
            if (gsb)
                gsb[0] += g;
        }
    }
    llama_acts la;
    slot(m, a, L - 1, &la);
    memset(a->dres, 0, (size_t)(N * C) * sizeof(float));
    align__nn_rmsnorm_backward(a->dres, G(m, d.norm), a->dC, la.res3, P(m, d.norm), a->lnf_rstd, N, C);

    for (int l = L - 1; l >= 0; l--) {
        llama_layer Lw;
        llama_acts prev;
        slot(m, a, l, &la);
        layer_of(m, l, &Lw);
        const float *resid = a->encoded;
        if (l > 0) {
            slot(m, a, l - 1, &prev);
            resid = prev.res3;
        }
        /* MLP: dres holds d(res3), which is also d(res2) through the identity path */
        linear_bwd(m, l, ALIGN__LORA_LLAMA_DOWN, Lw.ti[T_DOWN], -1, dh, a->dres, la.h, N);
        align__nn_swiglu_backward(dgate, dup, dh, la.gate, la.up, N * I);
        linear_bwd(m, l, ALIGN__LORA_LLAMA_GATE, Lw.ti[T_GATE], -1, a->dC, dgate, la.ln2, N);
        linear_bwd(m, l, ALIGN__LORA_LLAMA_UP, Lw.ti[T_UP], -1, dtmp, dup, la.ln2, N);
        add_into(a->dC, dtmp, N * C);
        align__nn_rmsnorm_backward(a->dres, G(m, Lw.ti[T_LN2]), a->dC, la.res2, P(m, Lw.ti[T_LN2]), la.rstd2, N, C);
        /* attention */
        linear_bwd(m, l, ALIGN__LORA_LLAMA_O, Lw.ti[T_O], -1, a->dC, a->dres, la.atty, N);
        align__nn_gqa_backward(dq, dk, dv, a->att_scratch, a->dC, la.q, la.k, la.v, la.att, a->lengths,
                               B, T, d.NH, d.KVH, d.hs);
        /* the rotation is orthogonal: its transpose carries the gradient back */
        align__nn_rope(dq, a->rope_cos, a->rope_sin, B, T, d.NH, d.hs, C, 1);
        align__nn_rope(dk, a->rope_cos, a->rope_sin, B, T, d.KVH, d.hs, d.KVD, 1);
        linear_bwd(m, l, ALIGN__LORA_LLAMA_Q, Lw.ti[T_Q], Lw.ti[T_QB], a->dC, dq, la.ln1, N);
        linear_bwd(m, l, ALIGN__LORA_LLAMA_K, Lw.ti[T_K], Lw.ti[T_KB], dtmp, dk, la.ln1, N);
        add_into(a->dC, dtmp, N * C);
        linear_bwd(m, l, ALIGN__LORA_LLAMA_V, Lw.ti[T_V], Lw.ti[T_VB], dtmp, dv, la.ln1, N);
        add_into(a->dC, dtmp, N * C);
        align__nn_rmsnorm_backward(a->dres, G(m, Lw.ti[T_LN1]), a->dC, resid, P(m, Lw.ti[T_LN1]), la.rstd1, N, C);
    }
    if (m->grads) /* NULL: frozen base (LoRA) */
        align__nn_embed_backward(G(m, d.embed), a->dres, a->tokens, a->lengths, B, T, C);
}

/* ---- KV cache and decoding ----------------------------------------------------------- */
struct llama_kv {
    int32_t tag;             /* ALIGN__LLAMA_KV_TAG (model_impl.h) */
    int32_t n_seq, max_len;
    int64_t L, C, KVD, V;
    float  *k, *v;           /* [L][n_seq][max_len][KVD], keys after rotation */
    int32_t *len;            /* [n_seq] */
    int64_t rows_cap, score_cap;
    float  *x, *ln, *q, *kn, *vn, *atty, *gate, *up, *h, *scores;
    float  *head_in, *head_out; /* [n_seq][C], [n_seq][V] */
    int32_t *row_seq, *row_pos;
};

static void llama_kv_free(align__kv_cache *kc);

static int llama_kv_create(align__kv_cache **out, const align_model *m, int32_t n_seq, int32_t max_len)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "kv cache: out is NULL");
    *out = NULL;
    if (n_seq < 1 || max_len < 1 || max_len > m->cfg.max_seq_len)
        return align__error(NULL, ALIGN_EINVAL,
                            "kv cache: n_seq %d must be >= 1 and max_len %d within 1..%d", n_seq,
                            max_len, m->cfg.max_seq_len);
    llama_dims d;
    dims_of(m, &d);
    struct llama_kv *c = align__calloc(1, sizeof *c);
    if (!c)
        return align__error(NULL, ALIGN_ENOMEM, "kv cache: out of memory");
    c->tag = ALIGN__LLAMA_KV_TAG;
    c->n_seq = n_seq;
    c->max_len = max_len;
    c->L = m->cfg.n_layer;
    c->C = d.C;
    c->KVD = d.KVD;
    c->V = d.V;
    size_t kvn = (size_t)c->L * (size_t)n_seq * (size_t)max_len * (size_t)c->KVD;
    c->k = align__alloc_aligned(kvn * sizeof(float));
    c->v = align__alloc_aligned(kvn * sizeof(float));
    c->len = align__calloc((size_t)n_seq, sizeof(int32_t));
    c->head_in = align__alloc_aligned((size_t)n_seq * (size_t)c->C * sizeof(float));
    c->head_out = align__alloc_aligned((size_t)n_seq * (size_t)c->V * sizeof(float));
    if (!c->k || !c->v || !c->len || !c->head_in || !c->head_out) {
        llama_kv_free((align__kv_cache *)c);
        return align__error(NULL, ALIGN_ENOMEM, "kv cache: out of memory for %d x %d positions",
                            n_seq, max_len);
    }
    *out = (align__kv_cache *)c;
    return ALIGN_OK;
}

static void kv_free_rows(struct llama_kv *c)
{
    float **f[] = {&c->x, &c->ln, &c->q, &c->kn, &c->vn, &c->atty, &c->gate, &c->up, &c->h};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        align__free_aligned(*f[i]);
        *f[i] = NULL;
    }
    align__free(c->row_seq);
    align__free(c->row_pos);
    c->row_seq = c->row_pos = NULL;
    c->rows_cap = 0;
}

static void llama_kv_free(align__kv_cache *kc)
{
    struct llama_kv *c = (struct llama_kv *)kc;
    if (!c)
        return;
    kv_free_rows(c);
    align__free_aligned(c->scores);
    align__free_aligned(c->k);
    align__free_aligned(c->v);
    align__free_aligned(c->head_in);
    align__free_aligned(c->head_out);
    align__free(c->len);
    align__free(c);
}

static int32_t llama_kv_len(const align__kv_cache *kc, int32_t i)
{
    const struct llama_kv *c = (const struct llama_kv *)kc;
    if (!c || i < 0 || i >= c->n_seq)
        return ALIGN_EINVAL;
    return c->len[i];
}

static int kv_reserve(struct llama_kv *c, int64_t R, int64_t I)
{
    int64_t threads = align__threads();
    if (threads * c->max_len > c->score_cap) {
        align__free_aligned(c->scores);
        c->scores = align__alloc_aligned((size_t)(threads * c->max_len) * sizeof(float));
        c->score_cap = c->scores ? threads * c->max_len : 0;
        if (!c->scores)
            return ALIGN_ENOMEM;
    }
    if (R <= c->rows_cap)
        return ALIGN_OK;
    kv_free_rows(c);
    int64_t C = c->C;
    c->x = align__alloc_aligned((size_t)(R * C) * sizeof(float));
    c->ln = align__alloc_aligned((size_t)(R * C) * sizeof(float));
    c->q = align__alloc_aligned((size_t)(R * C) * sizeof(float));
    c->kn = align__alloc_aligned((size_t)(R * c->KVD) * sizeof(float));
    c->vn = align__alloc_aligned((size_t)(R * c->KVD) * sizeof(float));
    c->atty = align__alloc_aligned((size_t)(R * C) * sizeof(float));
    c->gate = align__alloc_aligned((size_t)(R * I) * sizeof(float));
    c->up = align__alloc_aligned((size_t)(R * I) * sizeof(float));
    c->h = align__alloc_aligned((size_t)(R * I) * sizeof(float));
    c->row_seq = align__malloc((size_t)R * sizeof(int32_t));
    c->row_pos = align__malloc((size_t)R * sizeof(int32_t));
    if (!c->x || !c->ln || !c->q || !c->kn || !c->vn || !c->atty || !c->gate || !c->up || !c->h ||
        !c->row_seq || !c->row_pos) {
        kv_free_rows(c);
        return ALIGN_ENOMEM;
    }
    c->rows_cap = R;
    return ALIGN_OK;
}

typedef struct {
    struct llama_kv *c;
    int64_t l, NH, KVH, hs;
} kvatt_ctx;

/* One (new row, query head) per unit: attend over the cache up to the row's position. */
static void kv_attention(void *vctx, int64_t b, int64_t e, int chunk)
{
    kvatt_ctx *k = vctx;
    struct llama_kv *c = k->c;
    int64_t NH = k->NH, hs = k->hs, G = NH / k->KVH, KVD = c->KVD;
    float scale = 1.0f / sqrtf((float)hs);
    float *sc = c->scores + (int64_t)chunk * c->max_len;
    for (int64_t u = b; u < e; u++) {
        int64_t r = u / NH, h = u % NH, kh = h / G;
        int64_t s = c->row_seq[r], pos = c->row_pos[r];
        size_t base = ((size_t)(k->l * c->n_seq + s) * (size_t)c->max_len) * (size_t)KVD;
        const float *q = c->q + r * c->C + h * hs;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= pos; j++) {
            const float *kk = c->k + base + (size_t)j * KVD + kh * hs;
            float dd = 0.0f;
            for (int64_t i = 0; i < hs; i++)
                dd += q[i] * kk[i];
            dd *= scale;
            sc[j] = dd;
            if (dd > mx)
                mx = dd;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j <= pos; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float inv = 1.0f / sum;
        float *o = c->atty + r * c->C + h * hs;
        memset(o, 0, (size_t)hs * sizeof(float));
        for (int64_t j = 0; j <= pos; j++) {
            const float *vv = c->v + base + (size_t)j * KVD + kh * hs;
            float p = sc[j] * inv;
            for (int64_t i = 0; i < hs; i++)
                o[i] += p * vv[i];
        }
    }
}

static int llama_decode(align_model *m, align__kv_cache *kc, const int32_t *tokens, int32_t stride,
                        const int32_t *n_new, float *logits_last)
{
    struct llama_kv *c = (struct llama_kv *)kc;
    align__errbuf *eb = align__model_err(m);
    align__error_clear(eb);
    if (!c || !tokens || !n_new)
        return align__error(eb, ALIGN_EINVAL, "decode: cache, tokens or n_new is NULL");
    llama_dims d;
    dims_of(m, &d);
    if (c->C != d.C || c->L != m->cfg.n_layer || c->V != d.V || c->KVD != d.KVD)
        return align__error(eb, ALIGN_EINVAL, "decode: the cache was made for another model");
    int64_t R = 0, C = c->C, V = c->V, KVD = c->KVD;
    for (int32_t i = 0; i < c->n_seq; i++) {
        if (n_new[i] < 0 || n_new[i] > stride)
            return align__error(eb, ALIGN_EINVAL, "decode: n_new[%d] = %d outside 0..%d", i,
                                n_new[i], stride);
        if ((int64_t)c->len[i] + n_new[i] > c->max_len)
            return align__error(eb, ALIGN_ERANGE,
                                "decode: sequence %d would reach %lld positions, the cache holds %d",
                                i, (long long)c->len[i] + n_new[i], c->max_len);
        for (int32_t j = 0; j < n_new[i]; j++) {
            int32_t t = tokens[(int64_t)i * stride + j];
            if (t < 0 || t >= V)
                return align__error(eb, ALIGN_EINVAL, "decode: token %d outside the vocabulary", t);
        }
        R += n_new[i];
    }
    if (R == 0)
        return ALIGN_OK;
    if (kv_reserve(c, R, d.I))
        return align__error(eb, ALIGN_ENOMEM, "decode: out of memory for %lld rows", (long long)R);
    float eps = m->cfg.norm_eps, theta = m->cfg.rope_theta;
    const float *wte = P(m, d.embed);
    int64_t r = 0;
    for (int32_t i = 0; i < c->n_seq; i++)
        for (int32_t j = 0; j < n_new[i]; j++, r++) {
            c->row_seq[r] = i;
            c->row_pos[r] = c->len[i] + j;
            memcpy(c->x + r * C, wte + (int64_t)tokens[(int64_t)i * stride + j] * C, (size_t)C * sizeof(float));
        }
    for (int64_t l = 0; l < c->L; l++) {
        llama_layer Lw;
        layer_of(m, (int)l, &Lw);
        align__nn_rmsnorm_forward(c->ln, NULL, c->x, P(m, Lw.ti[T_LN1]), eps, R, C);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_Q, Lw.ti[T_Q], Lw.ti[T_QB], c->q, c->ln, R, 0.0f, 1);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_K, Lw.ti[T_K], Lw.ti[T_KB], c->kn, c->ln, R, 0.0f, 1);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_V, Lw.ti[T_V], Lw.ti[T_VB], c->vn, c->ln, R, 0.0f, 1);
        for (r = 0; r < R; r++) { /* rotate, then append k, v to the cache before attending */
            align__nn_rope_row(c->q + r * C, c->row_pos[r], d.NH, d.hs, theta);
            align__nn_rope_row(c->kn + r * KVD, c->row_pos[r], d.KVH, d.hs, theta);
            size_t at = ((size_t)(l * c->n_seq + c->row_seq[r]) * (size_t)c->max_len + (size_t)c->row_pos[r]) * (size_t)KVD;
            memcpy(c->k + at, c->kn + r * KVD, (size_t)KVD * sizeof(float));
            memcpy(c->v + at, c->vn + r * KVD, (size_t)KVD * sizeof(float));
        }
        kvatt_ctx kx = {c, l, d.NH, d.KVH, d.hs};
        align__parallel_for(R * d.NH, kv_attention, &kx);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_O, Lw.ti[T_O], -1, c->x, c->atty, R, 1.0f, 1);
        align__nn_rmsnorm_forward(c->ln, NULL, c->x, P(m, Lw.ti[T_LN2]), eps, R, C);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_GATE, Lw.ti[T_GATE], -1, c->gate, c->ln, R, 0.0f, 1);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_UP, Lw.ti[T_UP], -1, c->up, c->ln, R, 0.0f, 1);
        align__nn_swiglu_forward(c->h, c->gate, c->up, R * d.I);
        linear_fwd(m, NULL, (int)l, ALIGN__LORA_LLAMA_DOWN, Lw.ti[T_DOWN], -1, c->x, c->h, R, 1.0f, 1);
    }
    int64_t n_adv = 0;
    r = 0;
    for (int32_t i = 0; i < c->n_seq; i++) {
        if (n_new[i] == 0)
            continue;
        r += n_new[i];
        memcpy(c->head_in + n_adv * C, c->x + (r - 1) * C, (size_t)C * sizeof(float));
        n_adv++;
    }
    align__nn_rmsnorm_forward(c->head_in, NULL, c->head_in, P(m, d.norm), eps, n_adv, C);
    if (logits_last) {
        linear_fwd(m, NULL, -1, -1, d.head, -1, c->head_out, c->head_in, n_adv, 0.0f, 1);
        n_adv = 0;
        for (int32_t i = 0; i < c->n_seq; i++)
            if (n_new[i] > 0)
                memcpy(logits_last + (int64_t)i * V, c->head_out + (n_adv++) * V, (size_t)V * sizeof(float));
    }
    for (int32_t i = 0; i < c->n_seq; i++)
        c->len[i] += n_new[i];
    return ALIGN_OK;
}

const align__arch_ops align__llama_ops = {
    .name = "llama",
    .check_config = llama_check_config,
    .max_tensors = llama_max_tensors,
    .build_tensors = llama_build_tensors,
    .point = llama_point,
    .init_weights = llama_init_weights,
    .acts_layout = llama_acts_layout,
    .forward = llama_forward,
    .backward = llama_backward,
    .kv_create = llama_kv_create,
    .kv_free = llama_kv_free,
    .kv_len = llama_kv_len,
    .decode = llama_decode,
};
