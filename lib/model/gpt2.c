/* gpt2.c — the GPT-2 architecture (Radford et al. 2019): learned positions,
 * pre-LN blocks of causal multi-head attention and a tanh-GELU MLP, a final
 * LayerNorm, the LM head tied to the token embedding, and an optional scalar
 * head on the final LayerNorm's output. Forward, backward, and incremental
 * decoding with a KV cache. model.c's GPT-2 table (align__arch_ops) points
 * here; the Llama family is the sibling llama.c. */
#include "model/model_impl.h"
#include "model/lora.h"
#include "nn/nn.h"

#include <math.h>
#include <string.h>

/* ---- forward ----------------------------------------------------------------- */
void align__gpt2_forward(const align_model *m, align__acts *a, float *token_logprobs,
                         float *scalar, float *logits, int32_t *argmax)
{
    const align__gpt2_weights *w = &m->w;
    int64_t B = a->B, T = a->T, N = B * T, C = m->cfg.n_embd, NH = m->cfg.n_head;
    int64_t V = m->cfg.vocab_size;
    align__nn_encoder_forward(a->encoded, a->tokens, w->wte, w->wpe, a->lengths, B, T, C);
    const float *resid = a->encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        align__gpt2_layer_acts *la = &a->layer[m->frozen ? 0 : l];
        const align__gpt2_layer *lw = &w->layer[l];
        align__nn_layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, resid, lw->ln1w, lw->ln1b, N, C);
        align__nn_matmul_forward(la->qkv, la->ln1, lw->qkvw, lw->qkvb, N, C, 3 * C, ALIGN__W_IN_OUT, 0.0f);
        align__lora_fwd(m, a, l, ALIGN__LORA_QKV, la->qkv, la->ln1, N);
        align__nn_attention_forward(la->atty, la->att, la->qkv, a->lengths, B, T, C, NH);
        /* res2 = resid + atty @ Wproj + b: the residual add rides on sgemm's beta */
        memcpy(la->res2, resid, (size_t)(N * C) * sizeof(float));
        align__nn_matmul_forward(la->res2, la->atty, lw->attprojw, lw->attprojb, N, C, C, ALIGN__W_IN_OUT, 1.0f);
        align__lora_fwd(m, a, l, ALIGN__LORA_ATTPROJ, la->res2, la->atty, N);
        align__nn_layernorm_forward(la->ln2, la->ln2_mean, la->ln2_rstd, la->res2, lw->ln2w, lw->ln2b, N, C);
        align__nn_matmul_forward(la->fch, la->ln2, lw->fcw, lw->fcb, N, C, 4 * C, ALIGN__W_IN_OUT, 0.0f);
        align__lora_fwd(m, a, l, ALIGN__LORA_FC, la->fch, la->ln2, N);
        align__nn_gelu_forward(la->fchg, la->fch, N * 4 * C);
        memcpy(la->res3, la->res2, (size_t)(N * C) * sizeof(float));
        align__nn_matmul_forward(la->res3, la->fchg, lw->fcprojw, lw->fcprojb, N, 4 * C, C, ALIGN__W_IN_OUT, 1.0f);
        align__lora_fwd(m, a, l, ALIGN__LORA_FCPROJ, la->res3, la->fchg, N);
        resid = la->res3;
    }
    align__nn_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, resid, w->lnfw, w->lnfb, N, C);

    /* The LM head is the step's largest GEMM: skip it when no one wants its
     * outputs (e.g. reward-model training reads only the scalar head). */
    a->head_done = 0;
    if (token_logprobs || logits || argmax) {
        align__nn_matmul_forward(a->probs, a->lnf, w->wte, NULL, N, C, V, ALIGN__W_OUT_IN, 0.0f);
        align__nn_logsoftmax_forward(a->logprob, a->argmax, logits, a->probs, a->targets, N, V);
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
        for (int64_t r = 0; r < N; r++) {
            if (a->targets[r] == -2) {
                scalar[r] = 0.0f;
                continue;
            }
            const float *x = a->lnf + r * C;
            float s = w->scoreb[0];
            for (int64_t i = 0; i < C; i++)
                s += x[i] * w->scorew[i];
            scalar[r] = s;
        }
    }
}

/* ---- backward ------------------------------------------------------------------ */
void align__gpt2_backward(align_model *m, const float *dlp, const float *ds)
{
    align__acts *a = &m->acts;
    const align__gpt2_weights *w = &m->w;
    const align__gpt2_weights *g = &m->g;
    int64_t B = a->B, T = a->T, N = B * T, C = m->cfg.n_embd, NH = m->cfg.n_head;
    int64_t V = m->cfg.vocab_size;
    int L = m->cfg.n_layer;

    /* d(lnf) into dC */
    memset(a->dC, 0, (size_t)(N * C) * sizeof(float));
    int any = 0;
    if (dlp && a->head_done) {
        /* logprob is free now: reuse it for d(logprob) in [B][T] rows */
        for (int64_t b = 0; b < B; b++) {
            for (int64_t t = 0; t + 1 < T; t++) {
                float d = dlp[b * (T - 1) + t];
                a->logprob[b * T + t] = d;
                any |= d != 0.0f && a->targets[b * T + t] >= 0;
            }
            a->logprob[b * T + T - 1] = 0.0f;
        }
    }
    if (any) {
        align__nn_logsoftmax_backward(a->probs, a->logprob, a->targets, N, V);
        align__nn_matmul_backward(a->dC, g->wte, NULL, a->probs, a->lnf, w->wte, N, C, V, ALIGN__W_OUT_IN);
    }
    a->head_done = 0;
    if (ds && w->scorew) {
        for (int64_t r = 0; r < N; r++) {
            if (a->targets[r] == -2 || ds[r] == 0.0f)
                continue;
            float d = ds[r];
            const float *x = a->lnf + r * C;
            float *dx = a->dC + r * C;
            for (int64_t i = 0; i < C; i++) {
                dx[i] += d * w->scorew[i];
                if (g->scorew) /* NULL: frozen base (LoRA) */
                    g->scorew[i] += d * x[i];
            }
            if (g->scoreb)
                g->scoreb[0] += d;
        }
    }
    const float *last = a->layer[L - 1].res3;
    memset(a->dres, 0, (size_t)(N * C) * sizeof(float));
    align__nn_layernorm_backward(a->dres, g->lnfw, g->lnfb, a->dC, last, w->lnfw, a->lnf_mean, a->lnf_rstd, N, C);

    for (int l = L - 1; l >= 0; l--) {
        const align__gpt2_layer_acts *la = &a->layer[l];
        const align__gpt2_layer *lw = &w->layer[l];
        const align__gpt2_layer *lg = &g->layer[l];
        const float *resid = l == 0 ? a->encoded : a->layer[l - 1].res3;
        /* MLP: dres holds d(res3) = d(res2) through the identity path */
        align__nn_matmul_backward(a->dfch, lg->fcprojw, lg->fcprojb, a->dres, la->fchg, lw->fcprojw, N, 4 * C, C, ALIGN__W_IN_OUT);
        align__lora_bwd(m, l, ALIGN__LORA_FCPROJ, a->dfch, a->dres, la->fchg, N);
        align__nn_gelu_backward(a->dfch, la->fch, a->dfch, N * 4 * C);
        align__nn_matmul_backward(a->dC, lg->fcw, lg->fcb, a->dfch, la->ln2, lw->fcw, N, C, 4 * C, ALIGN__W_IN_OUT);
        align__lora_bwd(m, l, ALIGN__LORA_FC, a->dC, a->dfch, la->ln2, N);
        align__nn_layernorm_backward(a->dres, lg->ln2w, lg->ln2b, a->dC, la->res2, lw->ln2w, la->ln2_mean, la->ln2_rstd, N, C);
        /* attention */
        align__nn_matmul_backward(a->dC, lg->attprojw, lg->attprojb, a->dres, la->atty, lw->attprojw, N, C, C, ALIGN__W_IN_OUT);
        align__lora_bwd(m, l, ALIGN__LORA_ATTPROJ, a->dC, a->dres, la->atty, N);
        align__nn_attention_backward(a->dqkv, a->att_scratch, a->dC, la->qkv, la->att, a->lengths, B, T, C, NH);
        align__nn_matmul_backward(a->dC, lg->qkvw, lg->qkvb, a->dqkv, la->ln1, lw->qkvw, N, C, 3 * C, ALIGN__W_IN_OUT);
        align__lora_bwd(m, l, ALIGN__LORA_QKV, a->dC, a->dqkv, la->ln1, N);
        align__nn_layernorm_backward(a->dres, lg->ln1w, lg->ln1b, a->dC, resid, lw->ln1w, la->ln1_mean, la->ln1_rstd, N, C);
    }
    if (g->wte) /* NULL: frozen base (LoRA) */
        align__nn_encoder_backward(g->wte, g->wpe, a->dres, a->tokens, a->lengths, B, T, C);
}

/* ---- KV cache ----------------------------------------------------------------------- */
struct align__kv_cache {
    int32_t n_seq, max_len;
    int64_t L, C, NH, V;
    float  *k, *v;           /* [L][n_seq][max_len][C] */
    int32_t *len;            /* [n_seq] */
    /* scratch for R new rows, grown on demand (decoding is not the training path) */
    int64_t rows_cap, score_cap;
    float  *x, *ln, *qkv, *atty, *fch, *fchg, *mean, *rstd, *scores;
    float  *head_in, *head_out; /* [n_seq][C], [n_seq][V] */
    int32_t *row_seq, *row_pos, *row_tok;
};

int align__gpt2_kv_create(align__kv_cache **out, const align_model *m, int32_t n_seq, int32_t max_len)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "kv cache: out is NULL");
    *out = NULL;
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "kv cache: model is NULL");
    if (n_seq < 1 || max_len < 1 || max_len > m->cfg.max_seq_len)
        return align__error(NULL, ALIGN_EINVAL,
                            "kv cache: n_seq %d must be >= 1 and max_len %d within 1..%d", n_seq,
                            max_len, m->cfg.max_seq_len);
    align__kv_cache *c = align__calloc(1, sizeof *c);
    if (!c)
        return align__error(NULL, ALIGN_ENOMEM, "kv cache: out of memory");
    c->n_seq = n_seq;
    c->max_len = max_len;
    c->L = m->cfg.n_layer;
    c->C = m->cfg.n_embd;
    c->NH = m->cfg.n_head;
    c->V = m->cfg.vocab_size;
    size_t kvn = (size_t)c->L * (size_t)n_seq * (size_t)max_len * (size_t)c->C;
    c->k = align__alloc_aligned(kvn * sizeof(float));
    c->v = align__alloc_aligned(kvn * sizeof(float));
    c->len = align__calloc((size_t)n_seq, sizeof(int32_t));
    c->head_in = align__alloc_aligned((size_t)n_seq * (size_t)c->C * sizeof(float));
    c->head_out = align__alloc_aligned((size_t)n_seq * (size_t)c->V * sizeof(float));
    if (!c->k || !c->v || !c->len || !c->head_in || !c->head_out) {
        align__kv_free(c);
        return align__error(NULL, ALIGN_ENOMEM, "kv cache: out of memory for %d x %d positions",
                            n_seq, max_len);
    }
    *out = c;
    return ALIGN_OK;
}

static void kv_free_rows(align__kv_cache *c)
{
    float **f[] = {&c->x, &c->ln, &c->qkv, &c->atty, &c->fch, &c->fchg, &c->mean, &c->rstd};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        align__free_aligned(*f[i]);
        *f[i] = NULL;
    }
    align__free(c->row_seq);
    align__free(c->row_pos);
    align__free(c->row_tok);
    c->row_seq = c->row_pos = c->row_tok = NULL;
    c->rows_cap = 0;
}

void align__gpt2_kv_free(align__kv_cache *c)
{
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

int32_t align__gpt2_kv_len(const align__kv_cache *c, int32_t i)
{
    if (!c || i < 0 || i >= c->n_seq)
        return ALIGN_EINVAL;
    return c->len[i];
}

static int kv_reserve(align__kv_cache *c, int64_t R)
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
    c->qkv = align__alloc_aligned((size_t)(R * 3 * C) * sizeof(float));
    c->atty = align__alloc_aligned((size_t)(R * C) * sizeof(float));
    c->fch = align__alloc_aligned((size_t)(R * 4 * C) * sizeof(float));
    c->fchg = align__alloc_aligned((size_t)(R * 4 * C) * sizeof(float));
    c->mean = align__alloc_aligned((size_t)R * sizeof(float));
    c->rstd = align__alloc_aligned((size_t)R * sizeof(float));
    c->row_seq = align__malloc((size_t)R * sizeof(int32_t));
    c->row_pos = align__malloc((size_t)R * sizeof(int32_t));
    c->row_tok = align__malloc((size_t)R * sizeof(int32_t));
    if (!c->x || !c->ln || !c->qkv || !c->atty || !c->fch || !c->fchg || !c->mean || !c->rstd ||
        !c->row_seq || !c->row_pos || !c->row_tok) {
        kv_free_rows(c);
        return ALIGN_ENOMEM;
    }
    c->rows_cap = R;
    return ALIGN_OK;
}

typedef struct {
    align__kv_cache *c;
    int64_t l;
} kvatt_ctx;

/* One (new row, head) per unit: attend over the cache up to the row's position. */
static void kv_attention(void *vctx, int64_t b, int64_t e, int chunk)
{
    kvatt_ctx *k = vctx;
    align__kv_cache *c = k->c;
    int64_t C = c->C, NH = c->NH, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float *sc = c->scores + (int64_t)chunk * c->max_len;
    for (int64_t u = b; u < e; u++) {
        int64_t r = u / NH, h = u % NH;
        int64_t s = c->row_seq[r], pos = c->row_pos[r];
        size_t base = ((size_t)(k->l * c->n_seq + s) * (size_t)c->max_len) * (size_t)C;
        const float *q = c->qkv + r * 3 * C + h * hs;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= pos; j++) {
            const float *kk = c->k + base + (size_t)j * C + h * hs;
            float d = 0.0f;
            for (int64_t i = 0; i < hs; i++)
                d += q[i] * kk[i];
            d *= scale;
            sc[j] = d;
            if (d > mx)
                mx = d;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j <= pos; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float inv = 1.0f / sum;
        float *o = c->atty + r * C + h * hs;
        memset(o, 0, (size_t)hs * sizeof(float));
        for (int64_t j = 0; j <= pos; j++) {
            const float *vv = c->v + base + (size_t)j * C + h * hs;
            float p = sc[j] * inv;
            for (int64_t i = 0; i < hs; i++)
                o[i] += p * vv[i];
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* kv_attention with AVX-512: the same loops, the dot products and the
 * weighted sum of values 16 lanes at a time (lane sums in a fixed order). */
__attribute__((target("avx512f"))) static void kv_attention_avx512(void *vctx, int64_t b, int64_t e, int chunk)
{
    kvatt_ctx *k = vctx;
    align__kv_cache *c = k->c;
    int64_t C = c->C, NH = c->NH, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float *sc = c->scores + (int64_t)chunk * c->max_len;
    const int64_t full = hs & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (hs - full)) - 1u);
    for (int64_t u = b; u < e; u++) {
        int64_t r = u / NH, h = u % NH;
        int64_t s = c->row_seq[r], pos = c->row_pos[r];
        size_t base = ((size_t)(k->l * c->n_seq + s) * (size_t)c->max_len) * (size_t)C;
        const float *q = c->qkv + r * 3 * C + h * hs;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= pos; j++) {
            const float *kk = c->k + base + (size_t)j * C + h * hs;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t i = 0; i < full; i += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kk + i), acc);
            if (tail)
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q + full), _mm512_maskz_loadu_ps(tail, kk + full), acc);
            float d = _mm512_reduce_add_ps(acc) * scale;
            sc[j] = d;
            if (d > mx)
                mx = d;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j <= pos; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float inv = 1.0f / sum;
        float *o = c->atty + r * C + h * hs;
        for (int64_t i = 0; i < hs; i += 16) {
            const __mmask16 m = i + 16 <= hs ? (__mmask16)0xffff : tail;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t j = 0; j <= pos; j++) {
                const float *vv = c->v + base + (size_t)j * C + h * hs;
                acc = _mm512_fmadd_ps(_mm512_set1_ps(sc[j] * inv), _mm512_maskz_loadu_ps(m, vv + i), acc);
            }
            _mm512_mask_storeu_ps(o + i, m, acc);
        }
    }
}

static align__range_fn kv_attention_fn(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? kv_attention_avx512 : kv_attention;
}
#else
static align__range_fn kv_attention_fn(void)
{
    return kv_attention;
}
#endif

int align__gpt2_decode(align_model *m, align__kv_cache *c, const int32_t *tokens, int32_t stride,
                        const int32_t *n_new, float *logits_last)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "decode: model is NULL");
    /* NULL for a frozen model: several threads may decode on it at once */
    align__errbuf *eb = align__model_err(m);
    align__error_clear(eb);
    if (!c || !tokens || !n_new)
        return align__error(eb, ALIGN_EINVAL, "decode: cache, tokens or n_new is NULL");
    if (c->C != m->cfg.n_embd || c->L != m->cfg.n_layer || c->V != m->cfg.vocab_size)
        return align__error(eb, ALIGN_EINVAL, "decode: the cache was made for another model");
    int64_t R = 0, C = c->C, V = c->V;
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
    if (kv_reserve(c, R))
        return align__error(eb, ALIGN_ENOMEM, "decode: out of memory for %lld rows", (long long)R);
    const align__gpt2_weights *w = &m->w;
    int64_t r = 0;
    for (int32_t i = 0; i < c->n_seq; i++)
        for (int32_t j = 0; j < n_new[i]; j++, r++) {
            c->row_seq[r] = i;
            c->row_pos[r] = c->len[i] + j;
            c->row_tok[r] = tokens[(int64_t)i * stride + j];
            const float *we = w->wte + (int64_t)c->row_tok[r] * C, *pe = w->wpe + (int64_t)c->row_pos[r] * C;
            for (int64_t k = 0; k < C; k++)
                c->x[r * C + k] = we[k] + pe[k];
        }
    for (int64_t l = 0; l < c->L; l++) {
        const align__gpt2_layer *lw = &w->layer[l];
        align__nn_layernorm_forward(c->ln, c->mean, c->rstd, c->x, lw->ln1w, lw->ln1b, R, C);
        align__nn_matmul_decode(c->qkv, c->ln, lw->qkvw, lw->qkvb, R, C, 3 * C, ALIGN__W_IN_OUT, 0.0f);
        align__lora_fwd(m, NULL, (int)l, ALIGN__LORA_QKV, c->qkv, c->ln, R);
        for (r = 0; r < R; r++) { /* append k, v to the cache before attending */
            size_t at = ((size_t)(l * c->n_seq + c->row_seq[r]) * (size_t)c->max_len + (size_t)c->row_pos[r]) * (size_t)C;
            memcpy(c->k + at, c->qkv + r * 3 * C + C, (size_t)C * sizeof(float));
            memcpy(c->v + at, c->qkv + r * 3 * C + 2 * C, (size_t)C * sizeof(float));
        }
        kvatt_ctx kc = {c, l};
        align__parallel_for(R * c->NH, kv_attention_fn(), &kc);
        align__nn_matmul_decode(c->x, c->atty, lw->attprojw, lw->attprojb, R, C, C, ALIGN__W_IN_OUT, 1.0f);
        align__lora_fwd(m, NULL, (int)l, ALIGN__LORA_ATTPROJ, c->x, c->atty, R);
        align__nn_layernorm_forward(c->ln, c->mean, c->rstd, c->x, lw->ln2w, lw->ln2b, R, C);
        align__nn_matmul_decode(c->fch, c->ln, lw->fcw, lw->fcb, R, C, 4 * C, ALIGN__W_IN_OUT, 0.0f);
        align__lora_fwd(m, NULL, (int)l, ALIGN__LORA_FC, c->fch, c->ln, R);
        align__nn_gelu_forward(c->fchg, c->fch, R * 4 * C);
        align__nn_matmul_decode(c->x, c->fchg, lw->fcprojw, lw->fcprojb, R, 4 * C, C, ALIGN__W_IN_OUT, 1.0f);
        align__lora_fwd(m, NULL, (int)l, ALIGN__LORA_FCPROJ, c->x, c->fchg, R);
    }
    /* final LayerNorm and head on each advanced sequence's last new row */
    int64_t n_adv = 0;
    r = 0;
    for (int32_t i = 0; i < c->n_seq; i++) {
        if (n_new[i] == 0)
            continue;
        r += n_new[i];
        memcpy(c->head_in + n_adv * C, c->x + (r - 1) * C, (size_t)C * sizeof(float));
        n_adv++;
    }
    align__nn_layernorm_forward(c->head_in, c->mean, c->rstd, c->head_in, w->lnfw, w->lnfb, n_adv, C);
    if (logits_last) {
        align__nn_matmul_decode(c->head_out, c->head_in, w->wte, NULL, n_adv, C, V, ALIGN__W_OUT_IN, 0.0f);
        n_adv = 0;
        for (int32_t i = 0; i < c->n_seq; i++)
            if (n_new[i] > 0)
                memcpy(logits_last + (int64_t)i * V, c->head_out + (n_adv++) * V, (size_t)V * sizeof(float));
    }
    for (int32_t i = 0; i < c->n_seq; i++)
        c->len[i] += n_new[i];
    return ALIGN_OK;
}
