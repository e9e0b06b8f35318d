/* model.c — align_model: configuration, the flat parameter / gradient
 * arrays, the activation arena, and the public forward / backward / decode
 * entry points (argument checks live here). An architecture is a table of
 * operations (align__arch_ops): GPT-2's tensor table, initialisation and
 * activation layout are below, its maths in gpt2.c; the Llama family's are
 * all in llama.c. */
#include "model/model_impl.h"
#include "model/lora.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ARENA_MAX_THREADS 256 /* attention scratch rows: align_threads_set's limit */

static const align_model_params model_defaults = {
    .struct_size = sizeof(align_model_params),
    .flags = 0,
    .arch = ALIGN_ARCH_GPT2,
    .n_layer = 4,
    .n_head = 4,
    .n_embd = 128,
    .vocab_size = 50257,
    .max_seq_len = 1024,
    .seed = 1234,
    .n_threads = 0,
};

ALIGN_API int align_model_default_params(align_model_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &model_defaults, sizeof model_defaults,
                                  "align_model_default_params");
}

static int gpt2_check_config(const align_model_params *c, align__errbuf *eb)
{
    if (c->flags & ~ALIGN_MODEL_SCALAR_HEAD)
        return align__error(eb, ALIGN_EINVAL, "model: unknown flags 0x%x%s", c->flags,
                            c->flags & (ALIGN_MODEL_UNTIED_HEAD | ALIGN_MODEL_QKV_BIAS)
                                ? " (UNTIED_HEAD and QKV_BIAS are Llama options)"
                                : "");
    double total = (double)c->vocab_size * c->n_embd + (double)c->max_seq_len * c->n_embd +
                   (double)c->n_layer * 12.0 * c->n_embd * c->n_embd;
    if (total > 1e11)
        return align__error(eb, ALIGN_EINVAL, "model: %.3g parameters is too many", total);
    return ALIGN_OK;
}

int align__model_check_config(const align_model_params *c, align__errbuf *eb)
{
    const align__arch_ops *ops = align__arch(c->arch);
    if (!ops)
        return align__error(eb, ALIGN_EINVAL,
                            "model: unknown arch %d (ALIGN_ARCH_GPT2 or ALIGN_ARCH_LLAMA)", c->arch);
    if (c->n_layer < 1 || c->n_layer > 1024)
        return align__error(eb, ALIGN_EINVAL, "model: n_layer %d out of range 1..1024", c->n_layer);
    if (c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head != 0)
        return align__error(eb, ALIGN_EINVAL,
                            "model: n_embd %d must be a positive multiple of n_head %d", c->n_embd,
                            c->n_head);
    if (c->n_embd > 65536)
        return align__error(eb, ALIGN_EINVAL, "model: n_embd %d too large", c->n_embd);
    if (c->vocab_size < 2 || c->vocab_size > (1 << 24))
        return align__error(eb, ALIGN_EINVAL, "model: vocab_size %d out of range 2..16777216",
                            c->vocab_size);
    if (c->max_seq_len < 1 || c->max_seq_len > (1 << 20))
        return align__error(eb, ALIGN_EINVAL, "model: max_seq_len %d out of range 1..1048576",
                            c->max_seq_len);
    if (c->n_threads < 0)
        return align__error(eb, ALIGN_EINVAL, "model: n_threads %d is negative", c->n_threads);
    return ops->check_config(c, eb);
}

/* ---- tensor table ------------------------------------------------------------ */
static void add_tensor(align_model *m, size_t *off, const char *name, int64_t d0, int64_t d1)
{
    align__tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = *off;
    /* nanoGPT's choice: every 2-D tensor (matrices and embeddings) decays,
     * biases and LayerNorm gains do not. */
    t->decay = t->ndim == 2;
    *off += t->numel;
}

static int gpt2_max_tensors(const align_model_params *c) { return 2 + 12 * c->n_layer + 4; }

static void gpt2_build_tensors(align_model *m)
{
    const align_model_params *c = &m->cfg;
    int64_t C = c->n_embd;
    size_t off = 0;
    char nm[ALIGN__TENSOR_NAME_CAP];
    m->n_tensors = 0;
    add_tensor(m, &off, "wte.weight", c->vocab_size, C);
    add_tensor(m, &off, "wpe.weight", c->max_seq_len, C);
    for (int l = 0; l < c->n_layer; l++) {
#define T_(suffix, d0, d1)                                       \
    do {                                                         \
        snprintf(nm, sizeof nm, "h.%d.%s", l, suffix);           \
        add_tensor(m, &off, nm, d0, d1);                         \
    } while (0)
        T_("ln_1.weight", C, 0);
        T_("ln_1.bias", C, 0);
        T_("attn.c_attn.weight", C, 3 * C);
        T_("attn.c_attn.bias", 3 * C, 0);
        T_("attn.c_proj.weight", C, C);
        T_("attn.c_proj.bias", C, 0);
        T_("ln_2.weight", C, 0);
        T_("ln_2.bias", C, 0);
        T_("mlp.c_fc.weight", C, 4 * C);
        T_("mlp.c_fc.bias", 4 * C, 0);
        T_("mlp.c_proj.weight", 4 * C, C);
        T_("mlp.c_proj.bias", C, 0);
#undef T_
    }
    add_tensor(m, &off, "ln_f.weight", C, 0);
    add_tensor(m, &off, "ln_f.bias", C, 0);
    if (c->flags & ALIGN_MODEL_SCALAR_HEAD) {
        add_tensor(m, &off, "score.weight", 1, C);
        add_tensor(m, &off, "score.bias", 1, 0);
    }
    m->n_params = off;
}

/* Points w's fields into base, in the tensor table's order. */
static void point_weights(const align_model *m, align__gpt2_weights *w, float *base);

static void gpt2_point(align_model *m)
{
    point_weights(m, &m->w, m->params);
    if (m->grads)
        point_weights(m, &m->g, m->grads);
}

static void point_weights(const align_model *m, align__gpt2_weights *w, float *base)
{
    const align__tensor *t = m->tensors;
    int i = 0;
#define NEXT() (base + t[i++].offset)
    w->wte = NEXT();
    w->wpe = NEXT();
    for (int l = 0; l < m->cfg.n_layer; l++) {
        align__gpt2_layer *L = &w->layer[l];
        L->ln1w = NEXT();
        L->ln1b = NEXT();
        L->qkvw = NEXT();
        L->qkvb = NEXT();
        L->attprojw = NEXT();
        L->attprojb = NEXT();
        L->ln2w = NEXT();
        L->ln2b = NEXT();
        L->fcw = NEXT();
        L->fcb = NEXT();
        L->fcprojw = NEXT();
        L->fcprojb = NEXT();
    }
    w->lnfw = NEXT();
    w->lnfb = NEXT();
    if (m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD) {
        w->scorew = NEXT();
        w->scoreb = NEXT();
    } else {
        w->scorew = w->scoreb = NULL;
    }
#undef NEXT
}

const align__tensor *align__model_find_tensor(const align_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

/* ---- weights (refcounted) ------------------------------------------------------ */
static align__weights *weights_new(size_t n)
{
    align__weights *w = align__calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->data = align__alloc_aligned(n * sizeof(float));
    if (!w->data) {
        align__free(w);
        return NULL;
    }
    w->n = n;
    atomic_init(&w->refs, 1);
    return w;
}

static void weights_release(align__weights *w)
{
    /* acq_rel: the last owner sees every other owner's reads done */
    if (w && atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) {
        align__free_aligned(w->data);
        align__free(w);
    }
}

/* ---- workspaces (frozen models) ------------------------------------------------- */
static void workspace_free(align__workspace *ws)
{
    align__model_acts_free(&ws->acts);
    align__free(ws->acts.layer);
    align__free(ws);
}

/* Pops a workspace from m's free list, or makes an empty one (NULL: out of memory). */
static align__workspace *workspace_acquire(align_model *m)
{
    pthread_mutex_lock(&m->ws_mu);
    align__workspace *ws = m->ws_free;
    if (ws)
        m->ws_free = ws->next;
    pthread_mutex_unlock(&m->ws_mu);
    if (!ws)
        ws = align__calloc(1, sizeof *ws);
    return ws;
}

static void workspace_release(align_model *m, align__workspace *ws)
{
    pthread_mutex_lock(&m->ws_mu);
    ws->next = m->ws_free;
    m->ws_free = ws;
    pthread_mutex_unlock(&m->ws_mu);
}

static void model_destroy(align_model *m)
{
    if (!m)
        return;
    align__model_acts_free(&m->acts);
    align__free(m->acts.layer);
    if (m->frozen) {
        while (m->ws_free) {
            align__workspace *ws = m->ws_free;
            m->ws_free = ws->next;
            workspace_free(ws);
        }
        pthread_mutex_destroy(&m->ws_mu);
    }
    align__lora_free(m->lora);
    weights_release(m->wts);
    align__free_aligned(m->grads);
    align__free(m->w.layer);
    align__free(m->g.layer);
    align__free(m->tensors);
    align__free(m);
}

/* A model over shared weights (frozen only; a reference is taken) or new ones. */
static int model_alloc(align_model **out, const align_model_params *cfg, int frozen,
                       align__weights *shared, align__errbuf *eb)
{
    *out = NULL;
    align_model *m = align__calloc(1, sizeof *m);
    if (!m)
        return align__error(eb, ALIGN_ENOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->cfg.struct_size = sizeof m->cfg;
    m->frozen = frozen;
    if (frozen && pthread_mutex_init(&m->ws_mu, NULL) != 0) {
        align__free(m);
        return align__error(eb, ALIGN_ENOMEM, "model: cannot make a mutex");
    }
    int L = cfg->n_layer;
    m->ops = align__arch(cfg->arch);
    m->tensors = align__calloc((size_t)m->ops->max_tensors(cfg), sizeof *m->tensors);
    m->w.layer = align__calloc((size_t)L, sizeof *m->w.layer);
    m->g.layer = align__calloc((size_t)L, sizeof *m->g.layer);
    if (!frozen)
        m->acts.layer = align__calloc((size_t)L, sizeof *m->acts.layer);
    if (!m->tensors || !m->w.layer || !m->g.layer || (!frozen && !m->acts.layer))
        goto oom;
    m->ops->build_tensors(m);
    if (shared) {
        atomic_fetch_add_explicit(&shared->refs, 1, memory_order_relaxed);
        m->wts = shared;
    } else if (!(m->wts = weights_new(m->n_params))) {
        goto oom;
    }
    m->params = m->wts->data;
    if (!frozen) {
        m->grads = align__alloc_aligned(m->n_params * sizeof(float));
        if (!m->grads)
            goto oom;
    }
    m->ops->point(m);
    *out = m;
    return ALIGN_OK;
oom:
    model_destroy(m);
    return align__error(eb, ALIGN_ENOMEM, "model: out of memory for %d layers x %d wide",
                        cfg->n_layer, cfg->n_embd);
}

int align__model_alloc(align_model **out, const align_model_params *cfg, int frozen,
                       align__errbuf *eb)
{
    return model_alloc(out, cfg, frozen, NULL, eb);
}

/* GPT-2 initialisation (Radford et al. 2019): N(0, 0.02) weights, residual
 * projections scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorm
 * gains. Each tensor draws from its own Philox stream (its table index), so
 * any tensor's init depends only on (seed, name order), not on the others. */
static void gpt2_init_weights(align_model *m)
{
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        const char *nm = t->name;
        size_t n = strlen(nm);
        int is_ln = strstr(nm, "ln_") != NULL;
        int is_bias = n > 5 && strcmp(nm + n - 5, ".bias") == 0;
        if (is_bias) {
            memset(p, 0, t->numel * sizeof(float));
        } else if (is_ln) {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = 1.0f;
        } else {
            int resid = strstr(nm, "c_proj.weight") != NULL;
            align__rng r;
            align__rng_init(&r, m->cfg.seed, (uint64_t)i);
            align__rng_fill_normal(&r, p, t->numel, 0.0f, resid ? resid_std : 0.02f);
        }
    }
}

/* ---- activation arena ------------------------------------------------------------ */
static size_t rnd(size_t n) { return (n + 15) & ~(size_t)15; }

/* Lays out the arena for (B, T) over base (NULL: only count). */
static size_t gpt2_acts_layout(const align_model *m, align__acts *a, int64_t B, int64_t T, float *base)
{
    size_t off = 0;
    int64_t C = m->cfg.n_embd, NH = m->cfg.n_head, V = m->cfg.vocab_size, N = B * T;
    int slots = m->frozen ? 1 : m->cfg.n_layer;
#define TAKE(ptr, n)                                 \
    do {                                             \
        if (base)                                    \
            (ptr) = base + off;                      \
        off += rnd((size_t)(n));                     \
    } while (0)
    float *dummy;
    TAKE(a->encoded, N * C);
    for (int l = 0; l < slots; l++) {
        align__gpt2_layer_acts *la = base ? &a->layer[l] : NULL;
#define LT(field, n) TAKE(*(la ? &la->field : &dummy), n)
        LT(ln1, N * C);
        LT(ln1_mean, N);
        LT(ln1_rstd, N);
        LT(qkv, N * 3 * C);
        LT(atty, N * C);
        LT(att, B * NH * T * T);
        LT(res2, N * C);
        LT(ln2, N * C);
        LT(ln2_mean, N);
        LT(ln2_rstd, N);
        LT(fch, N * 4 * C);
        LT(fchg, N * 4 * C);
        LT(res3, N * C);
#undef LT
    }
    TAKE(a->lnf, N * C);
    TAKE(a->lnf_mean, N);
    TAKE(a->lnf_rstd, N);
    TAKE(a->probs, N * V);
    TAKE(a->logprob, N);
    if (!m->frozen) {
        TAKE(a->dres, N * C);
        TAKE(a->dC, N * C);
        TAKE(a->dqkv, N * 3 * C);
        TAKE(a->dfch, N * 4 * C);
        TAKE(a->att_scratch, (int64_t)ARENA_MAX_THREADS * T);
    }
#undef TAKE
    (void)dummy;
    return off;
}

void align__model_init_weights(align_model *m) { m->ops->init_weights(m); }

void align__model_acts_free(align__acts *a)
{
    align__free_aligned(a->mem);
    align__free(a->imem);
    a->mem = NULL;
    a->imem = NULL;
    a->cap = a->icap = 0;
    a->B = a->T = 0;
}

int align__model_acts_reserve(const align_model *m, align__acts *a, int64_t B, int64_t T)
{
    align__acts probe = {0};
    size_t need = m->ops->acts_layout(m, &probe, B, T, NULL);
    size_t ineed = (size_t)(2 * B * T + B + B * T);
    if (!a->layer && !(a->layer = align__calloc(1, sizeof *a->layer))) /* a workspace's slot */
        return ALIGN_ENOMEM;
    if (need > a->cap) {
        align__free_aligned(a->mem);
        a->mem = align__alloc_aligned(need * sizeof(float));
        a->cap = a->mem ? need : 0;
        if (!a->mem)
            return ALIGN_ENOMEM;
    }
    if (ineed > a->icap) {
        align__free(a->imem);
        a->imem = align__malloc(ineed * sizeof(int32_t));
        a->icap = a->imem ? ineed : 0;
        if (!a->imem)
            return ALIGN_ENOMEM;
    }
    m->ops->acts_layout(m, a, B, T, a->mem);
    a->tokens = a->imem;
    a->targets = a->imem + B * T;
    a->lengths = a->imem + 2 * B * T;
    a->argmax = a->imem + 2 * B * T + B;
    a->B = B;
    a->T = T;
    return ALIGN_OK;
}

/* ---- public lifecycle ------------------------------------------------------------ */
ALIGN_API int align_model_create(align_model **out, const align_model_params *p)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_model_create: out is NULL");
    *out = NULL;
    align_model_params cfg = model_defaults;
    int rc = align__params_copy(&cfg, sizeof cfg, p, "align_model_create");
    if (rc)
        return rc;
    if ((rc = align__model_check_config(&cfg, NULL)))
        return rc;
    if (cfg.n_threads > 0 && (rc = align_threads_set(cfg.n_threads)))
        return rc;
    align_model *m;
    if ((rc = align__model_alloc(&m, &cfg, 0, NULL)))
        return rc;
    align__model_init_weights(m);
    (void)align_blas_info(); /* warns once about slow BLAS kernels */
    *out = m;
    return ALIGN_OK;
}

ALIGN_API int align_model_clone(align_model **out, const align_model *m, uint32_t flags)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_model_clone: out is NULL");
    *out = NULL;
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_clone: model is NULL");
    if (flags & ~(ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS))
        return align__error(NULL, ALIGN_EINVAL, "align_model_clone: unknown flags 0x%x", flags);
    /* A frozen model's weights never change, so a frozen clone of it shares
     * them; so does a frozen clone of a model with LoRA adapters (its base is
     * frozen; whatever writes it later copies it first). Any other clone gets
     * a copy (one side may train). */
    int frozen = (flags & ALIGN_FROZEN) != 0, share = frozen && (m->frozen || m->lora);
    align_model *c;
    int rc = model_alloc(&c, &m->cfg, frozen, share ? m->wts : NULL, NULL);
    if (rc)
        return rc;
    if (!share)
        memcpy(c->params, m->params, m->n_params * sizeof(float));
    c->reward_norm = m->reward_norm;
    if (m->lora && !(flags & ALIGN_CLONE_NO_ADAPTERS) && (rc = align__lora_clone(c, m))) {
        model_destroy(c);
        return align__error(NULL, rc, "align_model_clone: out of memory for the adapters");
    }
    *out = c;
    return ALIGN_OK;
}

ALIGN_API void align_model_free(align_model *m) { model_destroy(m); }

/* A frozen model may be shared between threads, so its calls keep the detail
 * only in the calling thread's last-error buffer (docs/conventions.md). */
ALIGN_API const char *align_model_errmsg(const align_model *m)
{
    return !m ? "model is NULL" : m->frozen ? align_last_errmsg() : align__errmsg(&m->err);
}

align__errbuf *align__model_err(align_model *m) { return m && !m->frozen ? &m->err : NULL; }

ALIGN_API int align_model_config(const align_model *m, align_model_params *out)
{
    if (!m || !out)
        return align__error(NULL, ALIGN_EINVAL, "align_model_config: NULL argument");
    size_t n = align__out_size(out, sizeof m->cfg);
    if (n == 0)
        return align__error(NULL, ALIGN_EINVAL, "align_model_config: out->struct_size is invalid");
    uint32_t theirs = out->struct_size;
    memcpy(out, &m->cfg, n);
    out->struct_size = theirs;
    return ALIGN_OK;
}

ALIGN_API int64_t align_model_num_params(const align_model *m)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_num_params: model is NULL");
    return (int64_t)m->n_params;
}

ALIGN_API int32_t align_model_num_tensors(const align_model *m)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_num_tensors: model is NULL");
    return (int32_t)m->n_tensors;
}

ALIGN_API int align_model_tensor(const align_model *m, int32_t i, const char **name_out,
                                 int32_t *ndim_out, int64_t shape_out[2])
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_tensor: model is NULL");
    align__errbuf *eb = (align__errbuf *)&m->err; /* the message is not model state */
    if (i < 0 || i >= m->n_tensors)
        return align__error(eb, ALIGN_ERANGE, "align_model_tensor: index %d not in [0, %d)",
                            (int)i, m->n_tensors);
    const align__tensor *t = &m->tensors[i];
    if (name_out)
        *name_out = t->name;
    if (ndim_out)
        *ndim_out = (int32_t)t->ndim;
    if (shape_out) {
        shape_out[0] = t->shape[0];
        shape_out[1] = t->ndim > 1 ? t->shape[1] : 0;
    }
    return ALIGN_OK;
}

/* ---- forward / backward ------------------------------------------------------------ */
int align__model_forward_ex(align_model *m, const int32_t *tokens, const int32_t *lengths,
                            int32_t n_seq, int32_t max_len, float *token_logprobs, float *scalar,
                            float *logits, int32_t *argmax)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_forward: model is NULL");
    align__errbuf *eb = align__model_err(m); /* NULL when frozen: nothing written to m */
    align__error_clear(eb);
    if (!m->frozen)
        m->fwd_ready = 0;
    if (!tokens || !lengths)
        return align__error(eb, ALIGN_EINVAL, "align_model_forward: tokens or lengths is NULL");
    if (n_seq < 1 || max_len < 1)
        return align__error(eb, ALIGN_EINVAL,
                            "align_model_forward: n_seq %d and max_len %d must be >= 1", n_seq,
                            max_len);
    if (max_len > m->cfg.max_seq_len)
        return align__error(eb, ALIGN_EINVAL,
                            "align_model_forward: max_len %d exceeds the model's max_seq_len %d",
                            max_len, m->cfg.max_seq_len);
    if (scalar && !(m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD))
        return align__error(eb, ALIGN_EMISUSE,
                            "align_model_forward: scalar output asked of a model without a scalar head");
    int64_t T = max_len, V = m->cfg.vocab_size;
    for (int32_t b = 0; b < n_seq; b++) {
        if (lengths[b] < 1 || lengths[b] > max_len)
            return align__error(eb, ALIGN_EINVAL,
                                "align_model_forward: lengths[%d] = %d is outside 1..%d", b,
                                lengths[b], max_len);
        for (int32_t t = 0; t < lengths[b]; t++) {
            int32_t tok = tokens[(int64_t)b * T + t];
            if (tok < 0 || tok >= V)
                return align__error(eb, ALIGN_EINVAL,
                                    "align_model_forward: token %d at [%d][%d] is outside the "
                                    "vocabulary 0..%lld",
                                    tok, b, t, (long long)V - 1);
        }
    }
    align__workspace *ws = NULL;
    align__acts *a = &m->acts;
    if (m->frozen) {
        if (!(ws = workspace_acquire(m)))
            return align__error(eb, ALIGN_ENOMEM, "model: out of memory");
        a = &ws->acts;
    }
    if (align__model_acts_reserve(m, a, n_seq, T)) {
        if (ws)
            workspace_release(m, ws);
        return align__error(eb, ALIGN_ENOMEM, "model: out of memory for activations at %d x %d",
                            n_seq, max_len);
    }
    memcpy(a->lengths, lengths, (size_t)n_seq * sizeof(int32_t));
    for (int64_t b = 0; b < n_seq; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t r = b * T + t;
            int valid = t < lengths[b];
            a->tokens[r] = valid ? tokens[r] : 0;
            a->targets[r] = !valid ? -2 : t + 1 < lengths[b] ? tokens[r + 1] : -1;
        }
    if (!m->frozen && align__lora_reserve(m, (int64_t)n_seq * T))
        return align__error(eb, ALIGN_ENOMEM, "model: out of memory for LoRA activations at %d x %d", n_seq,
                            max_len);
    m->ops->forward(m, a, token_logprobs, scalar, logits, argmax);
    if (ws)
        workspace_release(m, ws);
    else
        m->fwd_ready = 1;
    return ALIGN_OK;
}

ALIGN_API int align_model_forward(align_model *m, const int32_t *tokens, const int32_t *lengths,
                                  int32_t n_seq, int32_t max_len, float *token_logprobs,
                                  float *scalar, float *logits)
{
    return align__model_forward_ex(m, tokens, lengths, n_seq, max_len, token_logprobs, scalar,
                                   logits, NULL);
}

ALIGN_API int align_model_backward(align_model *m, const float *d_token_logprobs,
                                   const float *d_scalar)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_backward: model is NULL");
    if (m->frozen)
        return align__error(NULL, ALIGN_EMISUSE,
                            "align_model_backward: the model is frozen (forward only)");
    align__error_clear(&m->err);
    if (!m->fwd_ready)
        return align__error(&m->err, ALIGN_EMISUSE,
                            "align_model_backward: no forward to go back through (call "
                            "align_model_forward first; each forward allows one backward)");
    if (d_scalar && !(m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD))
        return align__error(&m->err, ALIGN_EMISUSE,
                            "align_model_backward: d_scalar given to a model without a scalar head");
    m->ops->backward(m, d_token_logprobs, d_scalar);
    m->fwd_ready = 0;
    return ALIGN_OK;
}

ALIGN_API int align_model_zero_grad(align_model *m)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_zero_grad: model is NULL");
    if (m->frozen)
        return align__error(NULL, ALIGN_EMISUSE, "align_model_zero_grad: the model is frozen");
    align__train_view v;
    align__model_train_view(m, &v);
    memset(v.grads, 0, v.n * sizeof(float));
    return ALIGN_OK;
}

typedef struct {
    const float *g;
    double part[ARENA_MAX_THREADS];
} norm_ctx;

static void norm_chunk(void *vctx, int64_t b, int64_t e, int chunk)
{
    norm_ctx *c = vctx;
    c->part[chunk] = align__nn_sumsq(c->g + b, e - b); /* vectorised; fixed order */
}

float align__model_grad_norm(const align_model *m)
{
    align__train_view v;
    if (!m)
        return 0.0f;
    align__model_train_view(m, &v);
    if (!v.grads)
        return 0.0f;
    norm_ctx c;
    memset(c.part, 0, sizeof c.part);
    c.g = v.grads;
    align__parallel_for((int64_t)v.n, norm_chunk, &c);
    double s = 0;
    for (int i = 0; i < ARENA_MAX_THREADS; i++) /* fixed order */
        s += c.part[i];
    return (float)sqrt(s);
}

int align__model_copy_weights(align_model *dst, const align_model *src)
{
    if (!dst || !src)
        return align__error(align__model_err(dst), ALIGN_EINVAL, "copy_weights: NULL model");
    const align_model_params *a = &dst->cfg, *b = &src->cfg;
    if (dst->n_params != src->n_params || dst->n_tensors != src->n_tensors || a->arch != b->arch ||
        a->n_layer != b->n_layer || a->n_head != b->n_head || a->n_embd != b->n_embd ||
        a->vocab_size != b->vocab_size || a->max_seq_len != b->max_seq_len || a->flags != b->flags ||
        (a->arch == ALIGN_ARCH_LLAMA &&
         (a->n_kv_head != b->n_kv_head || a->intermediate_size != b->intermediate_size ||
          a->rope_theta != b->rope_theta || a->norm_eps != b->norm_eps)))
        return align__error(align__model_err(dst), ALIGN_EINVAL,
                            "copy_weights: configurations differ (%zu vs %zu parameters)", src->n_params,
                            dst->n_params);
    int rc = align__lora_copy(dst, src, align__model_err(dst));
    if (rc)
        return rc;
    /* the same base (LoRA: a shared frozen base stays shared) */
    if (dst->wts == src->wts || !memcmp(dst->params, src->params, dst->n_params * sizeof(float))) {
        dst->reward_norm = src->reward_norm;
        dst->fwd_ready = 0;
        return ALIGN_OK;
    }
    if (align__model_own_weights(dst))
        return align__error(align__model_err(dst), ALIGN_ENOMEM, "copy_weights: out of memory");
    memcpy(dst->params, src->params, dst->n_params * sizeof(float));
    dst->reward_norm = src->reward_norm;
    dst->fwd_ready = 0;
    return ALIGN_OK;
}

/* ---- architectures ------------------------------------------------------------------ */
static const align__arch_ops gpt2_ops = {
    .name = "gpt2",
    .check_config = gpt2_check_config,
    .max_tensors = gpt2_max_tensors,
    .build_tensors = gpt2_build_tensors,
    .point = gpt2_point,
    .init_weights = gpt2_init_weights,
    .acts_layout = gpt2_acts_layout,
    .forward = align__gpt2_forward,
    .backward = align__gpt2_backward,
    .kv_create = align__gpt2_kv_create,
    .kv_free = align__gpt2_kv_free,
    .kv_len = align__gpt2_kv_len,
    .decode = align__gpt2_decode,
};

const align__arch_ops *align__arch(int32_t arch)
{
    switch (arch) {
    case ALIGN_ARCH_GPT2:
        return &gpt2_ops;
    case ALIGN_ARCH_LLAMA:
        return &align__llama_ops;
    default:
        return NULL;
    }
}

/* ---- decoding: dispatch on the model, or on the cache's first member ------------------ */
static int kv_is_llama(const align__kv_cache *c) { return *(const int32_t *)c == ALIGN__LLAMA_KV_TAG; }

int align__kv_create(align__kv_cache **out, const align_model *m, int32_t n_seq, int32_t max_len)
{
    if (!m) {
        if (out)
            *out = NULL;
        return align__error(NULL, ALIGN_EINVAL, "kv cache: model is NULL");
    }
    return m->ops->kv_create(out, m, n_seq, max_len);
}

void align__kv_free(align__kv_cache *c)
{
    if (c)
        (kv_is_llama(c) ? align__llama_ops.kv_free : align__gpt2_kv_free)(c);
}

int32_t align__kv_len(const align__kv_cache *c, int32_t i)
{
    if (!c)
        return ALIGN_EINVAL;
    return (kv_is_llama(c) ? align__llama_ops.kv_len : align__gpt2_kv_len)(c, i);
}

int align__model_decode(align_model *m, align__kv_cache *c, const int32_t *tokens, int32_t stride,
                        const int32_t *n_new, float *logits_last)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "decode: model is NULL");
    if (c && kv_is_llama(c) != (m->ops == &align__llama_ops))
        return align__error(align__model_err(m), ALIGN_EINVAL,
                            "decode: the cache was made for another architecture");
    return m->ops->decode(m, c, tokens, stride, n_new, logits_last);
}

int align__model_own_weights(align_model *m)
{
    if (atomic_load(&m->wts->refs) > 1) { /* shared: copy on write */
        align__weights *own = weights_new(m->n_params);
        if (!own)
            return ALIGN_ENOMEM;
        memcpy(own->data, m->params, m->n_params * sizeof(float));
        weights_release(m->wts);
        m->wts = own;
        m->params = own->data;
        m->ops->point(m);
        align__lora_repoint(m); /* a LoRA head copy stays in use */
    }
    return ALIGN_OK;
}

int align__model_base_grads(align_model *m, int on)
{
    if (m->frozen)
        return ALIGN_OK;
    if (!on) {
        align__free_aligned(m->grads);
        m->grads = NULL;
        align__gpt2_layer *gl = m->g.layer;
        memset(&m->g, 0, sizeof m->g);
        if (gl)
            memset(gl, 0, sizeof *gl * (size_t)m->cfg.n_layer);
        m->g.layer = gl;
        return ALIGN_OK;
    }
    if (m->grads)
        return ALIGN_OK;
    if (!(m->grads = align__alloc_aligned(m->n_params * sizeof(float))))
        return ALIGN_ENOMEM;
    m->ops->point(m);
    return ALIGN_OK;
}
