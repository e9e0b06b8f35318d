/*
 * lora.c — LoRA adapters (Hu et al. 2021) on a model's linear layers.
 *
 * An adapter on a linear of width in -> out holds A [r][in] and B [out][r]
 * (PEFT's lora_A.weight / lora_B.weight) and adds (alpha/r) (x A^T) B^T to
 * the linear's output. A starts Kaiming-uniform with a = sqrt(5) (as PEFT:
 * U(-1/sqrt(in), 1/sqrt(in))), B at zero, so a fresh adapter changes nothing.
 *
 * While adapters are attached the base weights are frozen: the model keeps
 * no base gradients (model.c frees them), the backward skips the weight
 * GEMMs of the base, and the optimizer binds to the adapters' own flat
 * parameter / gradient arrays (align__model_train_view). Because the base
 * never changes, a frozen clone made with ALIGN_CLONE_NO_ADAPTERS shares it
 * (the "adapters off" reference of DPO / PPO / GRPO costs no second copy);
 * whatever writes the base later (merge, copy_weights) copies it first when
 * it is shared. A model with a scalar head (reward model, PPO's value head)
 * also trains a copy of score.weight, as PEFT's modules_to_save ["score"]
 * (its sequence-classification default): the model's w.scorew / g.scorew
 * point at the copy while adapters are attached (align__lora_repoint).
 *
 * Sites are the adaptable linears of one layer, per architecture: a table
 * of their PEFT module names and shapes, and where the base weight lives
 * (for merging). The forward / backward of the architecture call
 * align__lora_fwd / _bwd after each of them.
 */
#include "model/lora.h"
#include "model/safetensors.h"
#include "nn/nn.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define PEFT_PREFIX "base_model.model."

typedef struct site_desc {
    const char *peft;   /* module name under the layer, e.g. "attn.c_attn" */
    int64_t in, out;
    int w_layout;       /* the base weight's layout: ALIGN__W_IN_OUT (GPT-2 Conv1D) or _OUT_IN */
} site_desc;

struct align__lora {
    int32_t  r;
    float    alpha, scale;
    uint64_t seed;
    uint32_t mask;             /* sites adapted (bit = site) */
    const struct lora_arch *arch;
    int      n_sites;
    site_desc site[ALIGN__LORA_MAX_SITES];
    int      L;
    int      enabled;          /* forwards use the adapters */
    int      fwd_on;           /* the last trainable forward used them (backward follows it) */
    char     base_name[512];   /* base_model_name_or_path for adapter_config.json */
    int      n_tensors;        /* 2 per adapted (layer, site): A then B; + score.weight last */
    int      n_adapters;
    int      score;            /* the model has a scalar head: a trainable copy of score.weight
                                  (PEFT's modules_to_save ["score"]) is the last tensor */
    align__tensor *tensors;    /* names without PEFT_PREFIX */
    size_t   n;                /* floats */
    float   *params, *grads;   /* grads NULL on a frozen model */
    int     *kidx;             /* [L][MAX_SITES]: adapter number, -1 none */
    /* trainable forward: u = scale * x A^T per adapter, kept for backward */
    int64_t  rows, rows_cap;
    float   *u, *tmp_r, *tmp_in;
    int64_t  max_in;
};

/* ---- sites per architecture ----------------------------------------------------
 * One table entry per architecture: its adaptable linears (PEFT module names,
 * shapes, weight layout), where their base weights live, the target names
 * and aliases it accepts, and how a site set is written as PEFT
 * target_modules. The architecture calls align__lora_fwd / _bwd after each
 * of its linears with its site numbers (lora.h); nothing else in this file
 * depends on the architecture. Neither LM head (GPT-2's tied one, Llama's
 * tied or untied lm_head) is adapted, as PEFT's "all-linear" leaves out the
 * output layer; a scalar head trains a full copy (see above). */
typedef struct lora_name {
    const char *name;
    uint32_t bits;     /* sites */
} lora_name;

typedef struct lora_arch {
    int32_t arch;                   /* ALIGN_ARCH_* */
    const char *layer_prefix;       /* PEFT module path of layer N = prefix + N */
    int fan_in_fan_out;             /* adapter_config.json (the base weights are [in][out]) */
    int (*sites)(const align_model_params *c, site_desc *s); /* fills s, returns the count */
    float *(*base_weight)(align_model *m, int l, int site);
    const lora_name *names;         /* accepted targets and aliases */
    size_t n_names;
    const lora_name *peft;          /* site sets -> target_modules, the widest first */
    size_t n_peft;
    int (*refuse)(const char *t, align__errbuf *eb); /* a message for names that do not map */
} lora_arch;

/* GPT-2: Conv1D weights [in][out] (PEFT: fan_in_fan_out = true). */
static int gpt2_sites(const align_model_params *c, site_desc *s)
{
    int64_t C = c->n_embd;
    s[ALIGN__LORA_QKV] = (site_desc){"attn.c_attn", C, 3 * C, ALIGN__W_IN_OUT};
    s[ALIGN__LORA_ATTPROJ] = (site_desc){"attn.c_proj", C, C, ALIGN__W_IN_OUT};
    s[ALIGN__LORA_FC] = (site_desc){"mlp.c_fc", C, 4 * C, ALIGN__W_IN_OUT};
    s[ALIGN__LORA_FCPROJ] = (site_desc){"mlp.c_proj", 4 * C, C, ALIGN__W_IN_OUT};
    return 4;
}

static float *gpt2_base_weight(align_model *m, int l, int site)
{
    align__gpt2_layer *lw = &m->w.layer[l];
    switch (site) {
    case ALIGN__LORA_QKV: return lw->qkvw;
    case ALIGN__LORA_ATTPROJ: return lw->attprojw;
    case ALIGN__LORA_FC: return lw->fcw;
    case ALIGN__LORA_FCPROJ: return lw->fcprojw;
    default: return NULL;
    }
}

#define B_(s) (1u << ALIGN__LORA_##s)
static const lora_name gpt2_names[] = {
    {"c_attn", B_(QKV)},           {"attn.c_attn", B_(QKV)},
    {"c_proj", B_(ATTPROJ) | B_(FCPROJ)},
    {"attn.c_proj", B_(ATTPROJ)},  {"o", B_(ATTPROJ)},      {"o_proj", B_(ATTPROJ)},
    {"c_fc", B_(FC)},              {"mlp.c_fc", B_(FC)},    {"up", B_(FC)}, {"up_proj", B_(FC)},
    {"mlp.c_proj", B_(FCPROJ)},    {"down", B_(FCPROJ)},    {"down_proj", B_(FCPROJ)},
    {"all-linear", B_(QKV) | B_(ATTPROJ) | B_(FC) | B_(FCPROJ)},
};
static const lora_name gpt2_peft[] = {
    {"c_attn", B_(QKV)}, {"c_proj", B_(ATTPROJ) | B_(FCPROJ)}, {"attn.c_proj", B_(ATTPROJ)},
    {"mlp.c_proj", B_(FCPROJ)}, {"c_fc", B_(FC)},
};
#undef B_

static int gpt2_refuse(const char *t, align__errbuf *eb)
{
    if (!strcmp(t, "q") || !strcmp(t, "k") || !strcmp(t, "v") || !strcmp(t, "q_proj") || !strcmp(t, "k_proj") ||
        !strcmp(t, "v_proj"))
        return align__error(eb, ALIGN_EINVAL,
                            "lora: GPT-2 computes q, k and v in one fused linear: target 'c_attn' (one adapter "
                            "over q, k and v, as PEFT does for GPT-2) instead of '%s'", t);
    if (!strcmp(t, "gate") || !strcmp(t, "gate_proj"))
        return align__error(eb, ALIGN_EINVAL, "lora: GPT-2 has no gate projection ('%s')", t);
    return align__error(eb, ALIGN_EINVAL,
                        "lora: unknown target '%s' (GPT-2: c_attn, c_proj, attn.c_proj, mlp.c_proj, c_fc, "
                        "all-linear, or the aliases o, up, down)", t);
}

/* Llama: nn.Linear weights [out][in] (PEFT: fan_in_fan_out = false); k_proj
 * and v_proj are n_kv_head * head_size wide (grouped-query attention). */
static int llama_sites(const align_model_params *c, site_desc *s)
{
    int64_t C = c->n_embd, KVD = (int64_t)(c->n_kv_head ? c->n_kv_head : c->n_head) * (C / c->n_head);
    int64_t I = c->intermediate_size ? c->intermediate_size : 4 * C;
    s[ALIGN__LORA_LLAMA_Q] = (site_desc){"self_attn.q_proj", C, C, ALIGN__W_OUT_IN};
    s[ALIGN__LORA_LLAMA_K] = (site_desc){"self_attn.k_proj", C, KVD, ALIGN__W_OUT_IN};
    s[ALIGN__LORA_LLAMA_V] = (site_desc){"self_attn.v_proj", C, KVD, ALIGN__W_OUT_IN};
    s[ALIGN__LORA_LLAMA_O] = (site_desc){"self_attn.o_proj", C, C, ALIGN__W_OUT_IN};
    s[ALIGN__LORA_LLAMA_GATE] = (site_desc){"mlp.gate_proj", C, I, ALIGN__W_OUT_IN};
    s[ALIGN__LORA_LLAMA_UP] = (site_desc){"mlp.up_proj", C, I, ALIGN__W_OUT_IN};
    s[ALIGN__LORA_LLAMA_DOWN] = (site_desc){"mlp.down_proj", I, C, ALIGN__W_OUT_IN};
    return 7;
}

/* The base weight by its Hugging Face name (llama.c's layout is its own). */
static float *llama_base_weight(align_model *m, int l, int site)
{
    site_desc s[ALIGN__LORA_MAX_SITES];
    if (site < 0 || site >= llama_sites(&m->cfg, s))
        return NULL;
    char nm[ALIGN__TENSOR_NAME_CAP];
    snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, s[site].peft);
    const align__tensor *t = align__model_find_tensor(m, nm);
    return t ? m->params + t->offset : NULL;
}

#define B_(s) (1u << ALIGN__LORA_LLAMA_##s)
static const lora_name llama_names[] = {
    {"q_proj", B_(Q)},       {"self_attn.q_proj", B_(Q)},  {"q", B_(Q)},
    {"k_proj", B_(K)},       {"self_attn.k_proj", B_(K)},  {"k", B_(K)},
    {"v_proj", B_(V)},       {"self_attn.v_proj", B_(V)},  {"v", B_(V)},
    {"o_proj", B_(O)},       {"self_attn.o_proj", B_(O)},  {"o", B_(O)},
    {"gate_proj", B_(GATE)}, {"mlp.gate_proj", B_(GATE)},  {"gate", B_(GATE)},
    {"up_proj", B_(UP)},     {"mlp.up_proj", B_(UP)},      {"up", B_(UP)},
    {"down_proj", B_(DOWN)}, {"mlp.down_proj", B_(DOWN)},  {"down", B_(DOWN)},
    {"all-linear", B_(Q) | B_(K) | B_(V) | B_(O) | B_(GATE) | B_(UP) | B_(DOWN)},
};
static const lora_name llama_peft[] = {
    {"q_proj", B_(Q)},         {"k_proj", B_(K)},   {"v_proj", B_(V)},       {"o_proj", B_(O)},
    {"gate_proj", B_(GATE)},   {"up_proj", B_(UP)}, {"down_proj", B_(DOWN)},
};
#undef B_

static int llama_refuse(const char *t, align__errbuf *eb)
{
    if (!strcmp(t, "c_attn") || !strcmp(t, "attn.c_attn"))
        return align__error(eb, ALIGN_EINVAL,
                            "lora: Llama has separate q, k and v projections: target q_proj,v_proj (PEFT's "
                            "Llama default) or q, k, v instead of '%s'", t);
    return align__error(eb, ALIGN_EINVAL,
                        "lora: unknown target '%s' (Llama: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                        "down_proj, all-linear, or the aliases q, k, v, o, gate, up, down)", t);
}

static const lora_arch archs[] = {
    {ALIGN_ARCH_GPT2, "transformer.h.", 1, gpt2_sites, gpt2_base_weight, gpt2_names,
     sizeof gpt2_names / sizeof gpt2_names[0], gpt2_peft, sizeof gpt2_peft / sizeof gpt2_peft[0], gpt2_refuse},
    {ALIGN_ARCH_LLAMA, "model.layers.", 0, llama_sites, llama_base_weight, llama_names,
     sizeof llama_names / sizeof llama_names[0], llama_peft, sizeof llama_peft / sizeof llama_peft[0],
     llama_refuse},
};

static const lora_arch *arch_of(const align_model_params *c)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (archs[i].arch == c->arch)
            return &archs[i];
    return NULL;
}

/* One target name (PEFT module name or a generic alias) -> site bits. */
static int parse_target(const lora_arch *A, const char *t, uint32_t *bits, align__errbuf *eb)
{
    for (size_t i = 0; i < A->n_names; i++)
        if (!strcmp(t, A->names[i].name)) {
            *bits |= A->names[i].bits;
            return ALIGN_OK;
        }
    return A->refuse(t, eb);
}

/* A comma-separated list -> site bits (at least one). */
static int parse_targets(const align_model_params *c, const char *list, uint32_t *mask, align__errbuf *eb)
{
    *mask = 0;
    const lora_arch *A = arch_of(c);
    if (!A)
        return align__error(eb, ALIGN_EINVAL, "lora: not available for architecture %d", (int)c->arch);
    if (!list) /* the architecture's default, as PEFT's: GPT-2 c_attn, Llama q_proj and v_proj */
        list = c->arch == ALIGN_ARCH_LLAMA ? "q_proj,v_proj" : "c_attn";
    if (!*list)
        return align__error(eb, ALIGN_EINVAL, "lora: no target modules given");
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - p);
        while (n && p[n - 1] == ' ')
            n--;
        if (n) {
            char t[64];
            if (n >= sizeof t)
                return align__error(eb, ALIGN_EINVAL, "lora: target name too long in '%s'", list);
            memcpy(t, p, n);
            t[n] = '\0';
            int rc = parse_target(A, t, mask, eb);
            if (rc)
                return rc;
        }
        p = e;
    }
    if (!*mask)
        return align__error(eb, ALIGN_EINVAL, "lora: no target modules in '%s'", list);
    return ALIGN_OK;
}

/* PEFT target_modules for a site set (names PEFT matches as module-name suffixes). */
static json_t *targets_json(const align__lora *lo)
{
    json_t *a = json_array();
    uint32_t left = lo->mask;
    for (size_t i = 0; i < lo->arch->n_peft; i++) {
        uint32_t b = lo->arch->peft[i].bits;
        if ((left & b) == b) {
            json_array_append_new(a, json_string(lo->arch->peft[i].name));
            left &= ~b;
        }
    }
    return a;
}

/* ---- lifecycle ------------------------------------------------------------------- */
void align__lora_free(align__lora *lo)
{
    if (!lo)
        return;
    align__free(lo->tensors);
    align__free(lo->kidx);
    align__free_aligned(lo->params);
    align__free_aligned(lo->grads);
    align__free_aligned(lo->u);
    align__free_aligned(lo->tmp_r);
    align__free_aligned(lo->tmp_in);
    align__free(lo);
}

/* A zeroed adapter set of rank r on mask for m's configuration (no values yet). */
static align__lora *lora_new(const align_model *m, int32_t r, float alpha, uint32_t mask, int grads)
{
    align__lora *lo = align__calloc(1, sizeof *lo);
    if (!lo)
        return NULL;
    lo->r = r;
    lo->alpha = alpha;
    lo->scale = alpha / (float)r;
    lo->mask = mask;
    lo->enabled = 1;
    lo->L = m->cfg.n_layer;
    lo->arch = arch_of(&m->cfg); /* known: the targets were parsed for it */
    lo->n_sites = lo->arch->sites(&m->cfg, lo->site);
    int n_ad = 0;
    for (int s = 0; s < lo->n_sites; s++)
        if (mask & (1u << s)) {
            n_ad++;
            lo->max_in = ALIGN__MAX(lo->max_in, lo->site[s].in);
        }
    n_ad *= lo->L;
    lo->tensors = align__calloc((size_t)(2 * n_ad + 1), sizeof *lo->tensors);
    lo->kidx = align__malloc(sizeof *lo->kidx * (size_t)lo->L * ALIGN__LORA_MAX_SITES);
    if (!lo->tensors || !lo->kidx)
        goto oom;
    size_t off = 0;
    int k = 0;
    for (int l = 0; l < lo->L; l++)
        for (int s = 0; s < ALIGN__LORA_MAX_SITES; s++) {
            lo->kidx[l * ALIGN__LORA_MAX_SITES + s] = -1;
            if (s >= lo->n_sites || !(mask & (1u << s)))
                continue;
            lo->kidx[l * ALIGN__LORA_MAX_SITES + s] = k;
            for (int ab = 0; ab < 2; ab++) {
                align__tensor *t = &lo->tensors[lo->n_tensors++];
                snprintf(t->name, sizeof t->name, "%s%d.%s.lora_%c.weight", lo->arch->layer_prefix, l,
                         lo->site[s].peft, ab ? 'B' : 'A');
                t->ndim = 2;
                t->shape[0] = ab ? lo->site[s].out : r;
                t->shape[1] = ab ? r : lo->site[s].in;
                t->numel = (size_t)t->shape[0] * (size_t)t->shape[1];
                t->offset = off;
                t->decay = 1;
                off += t->numel;
            }
            k++;
        }
    lo->n_adapters = k;
    if (m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD) {
        align__tensor *t = &lo->tensors[lo->n_tensors++];
        snprintf(t->name, sizeof t->name, "score.weight");
        t->ndim = 2;
        t->shape[0] = 1;
        t->shape[1] = m->cfg.n_embd;
        t->numel = (size_t)m->cfg.n_embd;
        t->offset = off;
        t->decay = 1; /* as in the base (a matrix) */
        off += t->numel;
        lo->score = 1;
    }
    lo->n = off;
    lo->params = align__alloc_aligned(off * sizeof(float));
    if (!lo->params || (grads && !(lo->grads = align__alloc_aligned(off * sizeof(float)))))
        goto oom;
    return lo;
oom:
    align__lora_free(lo);
    return NULL;
}

static float *score_copy(align__lora *lo)
{
    return lo->score ? lo->params + lo->tensors[lo->n_tensors - 1].offset : NULL;
}

/* The base's score.weight (not the copy). */
static float *base_score(align_model *m)
{
    const align__tensor *t = align__model_find_tensor(m, "score.weight");
    return t ? m->params + t->offset : NULL;
}

void align__lora_repoint(align_model *m)
{
    align__lora *lo = m->lora;
    if (!lo || !lo->score)
        return;
    m->w.scorew = score_copy(lo);
    m->g.scorew = lo->grads ? lo->grads + lo->tensors[lo->n_tensors - 1].offset : NULL;
}

static void lora_init(align_model *m, align__lora *lo)
{
    if (lo->score)
        memcpy(score_copy(lo), base_score(m), (size_t)m->cfg.n_embd * sizeof(float));
    for (int i = 0; i < 2 * lo->n_adapters; i += 2) {
        const align__tensor *t = &lo->tensors[i];
        float *a = lo->params + t->offset;
        float bound = 1.0f / sqrtf((float)t->shape[1]);
        align__rng g;
        /* streams past the base model's (one per tensor there) */
        align__rng_init(&g, lo->seed, (1ull << 40) + (uint64_t)i);
        for (size_t j = 0; j < t->numel; j++)
            a[j] = (2.0f * align__rng_uniform(&g) - 1.0f) * bound;
        memset(lo->params + lo->tensors[i + 1].offset, 0, lo->tensors[i + 1].numel * sizeof(float));
    }
}

/* Installs lo on m (which has none); a trainable m drops its base gradients. */
static int install(align_model *m, align__lora *lo, align__errbuf *eb)
{
    if (!m->frozen) {
        int rc = align__model_base_grads(m, 0);
        if (rc)
            return align__error(eb, rc, "lora: out of memory");
    }
    m->lora = lo;
    align__lora_repoint(m);
    m->fwd_ready = 0;
    return ALIGN_OK;
}

int align__lora_clone(align_model *dst, const align_model *src)
{
    const align__lora *s = src->lora;
    align__lora *lo = lora_new(dst, s->r, s->alpha, s->mask, !dst->frozen);
    if (!lo)
        return ALIGN_ENOMEM;
    lo->seed = s->seed;
    lo->enabled = s->enabled;
    memcpy(lo->base_name, s->base_name, sizeof lo->base_name);
    memcpy(lo->params, s->params, s->n * sizeof(float));
    int rc = install(dst, lo, NULL);
    if (rc)
        align__lora_free(lo);
    return rc;
}

int align__lora_copy(align_model *dst, const align_model *src, align__errbuf *eb)
{
    const align__lora *a = dst->lora, *b = src->lora;
    if (!a && !b)
        return ALIGN_OK;
    if (!a || !b || a->r != b->r || a->mask != b->mask || a->n != b->n)
        return align__error(eb, ALIGN_EINVAL, "copy_weights: the LoRA adapters differ (%s)",
                            !a || !b ? "one model has none" : "rank or targets");
    memcpy(a->params, b->params, a->n * sizeof(float));
    dst->lora->alpha = b->alpha;
    dst->lora->scale = b->scale;
    dst->lora->enabled = b->enabled;
    return ALIGN_OK;
}

float *align__lora_params(const align__lora *lo, size_t *n, float **grads, const align__tensor **tensors,
                          int *n_tensors)
{
    *n = lo->n;
    *grads = lo->grads;
    *tensors = lo->tensors;
    *n_tensors = lo->n_tensors;
    return lo->params;
}

void align__model_train_view(const align_model *m, align__train_view *v)
{
    if (m->lora) {
        v->params = align__lora_params(m->lora, &v->n, &v->grads, &v->tensors, &v->n_tensors);
    } else {
        v->params = m->params;
        v->grads = m->grads;
        v->tensors = m->tensors;
        v->n_tensors = m->n_tensors;
        v->n = m->n_params;
    }
}

/* ---- forward / backward hooks -------------------------------------------------------- */
int align__lora_reserve(align_model *m, int64_t N)
{
    align__lora *lo = m->lora;
    if (!lo)
        return ALIGN_OK;
    lo->fwd_on = lo->enabled && lo->grads;
    lo->rows = N;
    if (N <= lo->rows_cap)
        return ALIGN_OK;
    align__free_aligned(lo->u);
    align__free_aligned(lo->tmp_r);
    align__free_aligned(lo->tmp_in);
    size_t n_ad = (size_t)lo->n_adapters;
    lo->u = align__alloc_aligned(n_ad * (size_t)N * (size_t)lo->r * sizeof(float));
    lo->tmp_r = align__alloc_aligned((size_t)N * (size_t)lo->r * sizeof(float));
    lo->tmp_in = align__alloc_aligned((size_t)N * (size_t)lo->max_in * sizeof(float));
    lo->rows_cap = lo->u && lo->tmp_r && lo->tmp_in ? N : 0;
    return lo->rows_cap ? ALIGN_OK : ALIGN_ENOMEM;
}

void align__lora_fwd(const align_model *m, const align__acts *a, int l, int site, float *out,
                     const float *inp, int64_t N)
{
    align__lora *lo = m->lora;
    if (!lo || !lo->enabled || N <= 0)
        return;
    int k = lo->kidx[l * ALIGN__LORA_MAX_SITES + site];
    if (k < 0)
        return;
    const align__tensor *ta = &lo->tensors[2 * k], *tb = &lo->tensors[2 * k + 1];
    int64_t r = lo->r, in = ta->shape[1], out_w = tb->shape[0];
    int keep = a == &m->acts && lo->fwd_on && N == lo->rows;
    float *u = keep ? lo->u + (size_t)k * (size_t)N * (size_t)r
                    : align__alloc_aligned((size_t)N * (size_t)r * sizeof(float));
    if (!u) { /* a frozen forward's scratch (N x r floats): the forward cannot fail here */
        align__log(0, "lora: out of memory for %lld x %lld scratch: adapter skipped", (long long)N, (long long)r);
        return;
    }
    align__nn_matmul_forward(u, inp, lo->params + ta->offset, NULL, N, in, r, ALIGN__W_OUT_IN, 0.0f);
    for (int64_t i = 0; i < N * r; i++)
        u[i] *= lo->scale;
    align__nn_matmul_forward(out, u, lo->params + tb->offset, NULL, N, r, out_w, ALIGN__W_OUT_IN, 1.0f);
    if (!keep)
        align__free_aligned(u);
}

void align__lora_bwd(align_model *m, int l, int site, float *dinp, const float *dout, const float *inp,
                     int64_t N)
{
    align__lora *lo = m->lora;
    if (!lo || !lo->fwd_on || !lo->grads || N != lo->rows)
        return;
    int k = lo->kidx[l * ALIGN__LORA_MAX_SITES + site];
    if (k < 0)
        return;
    const align__tensor *ta = &lo->tensors[2 * k], *tb = &lo->tensors[2 * k + 1];
    int64_t r = lo->r, in = ta->shape[1], out_w = tb->shape[0];
    const float *u = lo->u + (size_t)k * (size_t)N * (size_t)r;
    /* d(u) = dout B; dB += dout^T u (u carries the scale) */
    align__nn_matmul_backward(lo->tmp_r, lo->grads + tb->offset, NULL, dout, u, lo->params + tb->offset, N, r,
                              out_w, ALIGN__W_OUT_IN);
    for (int64_t i = 0; i < N * r; i++)
        lo->tmp_r[i] *= lo->scale;
    /* d(x) += d(xA^T) A; dA += d(xA^T)^T x */
    align__nn_matmul_backward(lo->tmp_in, lo->grads + ta->offset, NULL, lo->tmp_r, inp, lo->params + ta->offset,
                              N, in, r, ALIGN__W_OUT_IN);
    for (int64_t i = 0; i < N * in; i++)
        dinp[i] += lo->tmp_in[i];
}

/* ---- public API ------------------------------------------------------------------------ */
static const align_lora_params lora_defaults = {
    .struct_size = sizeof(align_lora_params),
    .flags = 0,
    .r = 8,
    .alpha = 16.0f,
    .dropout = 0.0f,
    .targets = NULL, /* the architecture's default (parse_targets) */
    .seed = 0,
    .base_model_name_or_path = NULL,
};

ALIGN_API int align_lora_default_params(align_lora_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &lora_defaults, sizeof lora_defaults,
                                  "align_lora_default_params");
}

static int check_params(const align_model *m, const align_lora_params *c, uint32_t *mask, align__errbuf *eb)
{
    if (c->flags)
        return align__error(eb, ALIGN_EINVAL, "align_lora_params.flags has unknown bits 0x%x", (unsigned)c->flags);
    if (c->r < 1 || c->r > 4096)
        return align__error(eb, ALIGN_EINVAL, "align_lora_params.r is %d (1..4096)", (int)c->r);
    if (!(c->alpha > 0.0f) || !isfinite(c->alpha))
        return align__error(eb, ALIGN_EINVAL, "align_lora_params.alpha is %g (finite, > 0)", (double)c->alpha);
    if (c->dropout != 0.0f)
        return align__error(eb, ALIGN_EINVAL, "align_lora_params.dropout is %g: only 0 is supported",
                            (double)c->dropout);
    if (c->base_model_name_or_path && strlen(c->base_model_name_or_path) >= 512)
        return align__error(eb, ALIGN_EINVAL, "align_lora_params.base_model_name_or_path is too long");
    return parse_targets(&m->cfg, c->targets, mask, eb);
}

ALIGN_API int align_model_lora_attach(align_model *m, const align_lora_params *p)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_lora_attach: model is NULL");
    align__errbuf *eb = align__model_err(m);
    align__error_clear(eb);
    if (m->lora)
        return align__error(eb, ALIGN_EMISUSE, "align_model_lora_attach: the model already has adapters "
                            "(merge them first, or load a fresh model)");
    align_lora_params c = lora_defaults;
    int rc = align__params_copy(&c, sizeof c, p, "align_model_lora_attach");
    uint32_t mask;
    if (rc || (rc = check_params(m, &c, &mask, eb)))
        return rc;
    align__lora *lo = lora_new(m, c.r, c.alpha, mask, !m->frozen);
    if (!lo)
        return align__error(eb, ALIGN_ENOMEM, "align_model_lora_attach: out of memory");
    lo->seed = c.seed;
    snprintf(lo->base_name, sizeof lo->base_name, "%s", c.base_model_name_or_path ? c.base_model_name_or_path : "");
    lora_init(m, lo);
    if ((rc = install(m, lo, eb)))
        align__lora_free(lo);
    return rc;
}

ALIGN_API int align_model_lora_enable(align_model *m, int32_t on)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_lora_enable: model is NULL");
    if (!m->lora)
        return align__error(align__model_err(m), ALIGN_EMISUSE, "align_model_lora_enable: the model has no adapters");
    m->lora->enabled = on != 0;
    if (!m->frozen)
        m->fwd_ready = 0;
    return ALIGN_OK;
}

ALIGN_API int64_t align_model_lora_num_params(const align_model *m)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_lora_num_params: model is NULL");
    return m->lora ? (int64_t)m->lora->n : 0;
}

ALIGN_API int align_model_lora_merge(align_model *m)
{
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_model_lora_merge: model is NULL");
    align__errbuf *eb = align__model_err(m);
    align__error_clear(eb);
    align__lora *lo = m->lora;
    if (!lo)
        return align__error(eb, ALIGN_EMISUSE, "align_model_lora_merge: the model has no adapters");
    int rc;
    /* the base may be shared with an "adapters off" reference: write a copy */
    if ((rc = align__model_own_weights(m)) || (!m->frozen && (rc = align__model_base_grads(m, 1))))
        return align__error(eb, rc, "align_model_lora_merge: out of memory");
    for (int l = 0; l < lo->L; l++)
        for (int s = 0; s < lo->n_sites; s++) {
            int k = lo->kidx[l * ALIGN__LORA_MAX_SITES + s];
            if (k < 0)
                continue;
            const float *A = lo->params + lo->tensors[2 * k].offset, *B = lo->params + lo->tensors[2 * k + 1].offset;
            int64_t in = lo->site[s].in, out = lo->site[s].out, r = lo->r;
            float *W = lo->arch->base_weight(m, l, s);
            /* W += scale * (B A)^T (Conv1D [in][out]) or scale * B A ([out][in]) */
            for (int64_t o = 0; o < out; o++)
                for (int64_t i = 0; i < in; i++) {
                    double d = 0;
                    for (int64_t j = 0; j < r; j++)
                        d += (double)B[o * r + j] * A[j * in + i];
                    float *w = lo->site[s].w_layout == ALIGN__W_IN_OUT ? &W[i * out + o] : &W[o * in + i];
                    *w += (float)(lo->scale * d);
                }
        }
    if (lo->score) { /* the trained head copy becomes the base's */
        float *bs = base_score(m);
        memcpy(bs, score_copy(lo), (size_t)m->cfg.n_embd * sizeof(float));
        m->w.scorew = bs;
    }
    m->lora = NULL;
    align__lora_free(lo);
    m->fwd_ready = 0;
    return ALIGN_OK;
}

/* ---- PEFT files --------------------------------------------------------------------------- */
static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = align__malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static json_t *config_json(const align_model *m, const align__lora *lo)
{
    double a = (double)lo->alpha;
    json_t *alpha = a == floor(a) && fabs(a) < 1e9 ? json_integer((json_int_t)a) : json_real(a);
    json_t *j = json_pack("{s:s, s:i, s:o, s:f, s:o, s:b, s:s, s:s, s:s, s:n, s:b, s:b, s:b}", "peft_type", "LORA",
                     "r", (int)lo->r, "lora_alpha", alpha, "lora_dropout", 0.0, "target_modules", targets_json(lo),
                     "fan_in_fan_out", lo->arch->fan_in_fan_out, "bias", "none", "task_type",
                     (m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD) ? "SEQ_CLS" : "CAUSAL_LM", "base_model_name_or_path",
                     lo->base_name, "modules_to_save", "inference_mode", 1, "use_rslora", 0, "init_lora_weights", 1);
    if (j && lo->score)
        json_object_set_new(j, "modules_to_save", json_pack("[s]", "score"));
    return j;
}

static int write_tensors(const align_model *m, const char *path, align__errbuf *eb, const align__st_meta *meta,
                         int n_meta)
{
    const align__lora *lo = m->lora;
    align__st_tensor *t = align__calloc((size_t)lo->n_tensors, sizeof *t);
    char (*names)[ALIGN__TENSOR_NAME_CAP + 32] = align__calloc((size_t)lo->n_tensors, sizeof *names);
    int rc = ALIGN_ENOMEM;
    if (t && names) {
        for (int i = 0; i < lo->n_tensors; i++) {
            const align__tensor *x = &lo->tensors[i];
            snprintf(names[i], sizeof names[i], PEFT_PREFIX "%s", x->name);
            t[i] = (align__st_tensor){names[i], lo->params + x->offset, 2, {x->shape[0], x->shape[1]}};
        }
        rc = align__st_write(eb, path, t, lo->n_tensors, meta, n_meta);
    } else {
        rc = align__error(eb, ALIGN_ENOMEM, "align_model_lora_save: out of memory");
    }
    align__free(t);
    align__free(names);
    return rc;
}

ALIGN_API int align_model_lora_save(const align_model *m, const char *dir)
{
    if (!m || !dir || !*dir)
        return align__error(NULL, ALIGN_EINVAL, "align_model_lora_save: model or folder is NULL");
    align__errbuf *eb = m->frozen ? NULL : (align__errbuf *)&m->err;
    align__error_clear(eb);
    if (!m->lora)
        return align__error(eb, ALIGN_EMISUSE, "align_model_lora_save: the model has no adapters");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return align__error(eb, ALIGN_EIO, "%s: cannot create the folder: %s", dir, strerror(errno));
    char *st = join(dir, "adapter_model.safetensors"), *cj = join(dir, "adapter_config.json");
    json_t *cfg = config_json(m, m->lora);
    char *text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    int rc;
    if (!st || !cj || !text) {
        rc = align__error(eb, ALIGN_ENOMEM, "align_model_lora_save: out of memory");
    } else {
        align__st_meta meta[] = {{"format", "pt"}};
        rc = write_tensors(m, st, eb, meta, 1);
        align__chunk ch[2] = {{text, strlen(text)}, {"\n", 1}};
        if (!rc)
            rc = align__write_atomic(eb, cj, ch, 2);
    }
    free(text);
    json_decref(cfg);
    align__free(st);
    align__free(cj);
    return rc;
}

/* What a config (adapter_config.json or the checkpoint's metadata) says. */
typedef struct lora_cfg {
    int32_t r;
    float alpha;
    uint32_t mask;
    int enabled;
    uint64_t seed;
    char base_name[512];
} lora_cfg;

static int read_config(const align_model *m, json_t *j, const char *what, lora_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->enabled = 1;
    if (!json_is_object(j))
        return align__error(NULL, ALIGN_EFORMAT, "%s: not a JSON object", what);
    const char *pt = json_string_value(json_object_get(j, "peft_type"));
    if (pt && strcmp(pt, "LORA") != 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: peft_type is %s (only LORA)", what, pt);
    json_t *r = json_object_get(j, "r"), *a = json_object_get(j, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 4096 || !json_is_number(a) ||
        !(json_number_value(a) > 0) || !isfinite(json_number_value(a)))
        return align__error(NULL, ALIGN_EFORMAT, "%s: r must be an integer in 1..4096 and lora_alpha a number > 0",
                            what);
    c->r = (int32_t)json_integer_value(r);
    c->alpha = (float)json_number_value(a);
    const char *bias = json_string_value(json_object_get(j, "bias"));
    if (bias && strcmp(bias, "none") != 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: bias '%s' is not supported (only \"none\")", what, bias);
    if (json_is_true(json_object_get(j, "use_rslora")) || json_is_true(json_object_get(j, "use_dora")))
        return align__error(NULL, ALIGN_EFORMAT, "%s: rsLoRA / DoRA adapters are not supported", what);
    /* PEFT's sequence-classification default: the head trains in full */
    json_t *mts = json_object_get(j, "modules_to_save");
    if (json_is_array(mts) && (m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD)) {
        size_t i;
        json_t *v;
        json_array_foreach(mts, i, v) {
            const char *nm = json_string_value(v);
            if (!nm || (strcmp(nm, "score") != 0 && strcmp(nm, "classifier") != 0))
                return align__error(NULL, ALIGN_EFORMAT, "%s: modules_to_save may name only the score head", what);
        }
        mts = NULL;
    }
    static const char *const unsupported[] = {"layers_to_transform", "modules_to_save", "rank_pattern",
                                              "alpha_pattern"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        json_t *v = json_object_get(j, unsupported[i]);
        if (!strcmp(unsupported[i], "modules_to_save"))
            v = mts;
        if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0) &&
            !(json_is_array(v) && json_array_size(v) == 0))
            return align__error(NULL, ALIGN_EFORMAT, "%s: %s is set, which libalign does not support", what,
                                unsupported[i]);
    }
    json_t *t = json_object_get(j, "target_modules");
    char list[1024] = "";
    if (json_is_string(t)) {
        snprintf(list, sizeof list, "%s", json_string_value(t));
    } else if (json_is_array(t)) {
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) {
            if (!json_is_string(v))
                return align__error(NULL, ALIGN_EFORMAT, "%s: target_modules holds a non-string", what);
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", used ? "," : "", json_string_value(v));
        }
    } else {
        return align__error(NULL, ALIGN_EFORMAT, "%s: no target_modules", what);
    }
    align__errbuf tmp = {0};
    if (parse_targets(&m->cfg, list, &c->mask, &tmp))
        return align__error(NULL, ALIGN_EFORMAT, "%s: %s", what, align__errmsg(&tmp));
    const char *bn = json_string_value(json_object_get(j, "base_model_name_or_path"));
    snprintf(c->base_name, sizeof c->base_name, "%s", bn ? bn : "");
    json_t *en = json_object_get(j, "libalign_enabled");
    if (json_is_boolean(en))
        c->enabled = json_is_true(en);
    json_t *sd = json_object_get(j, "libalign_seed");
    if (json_is_integer(sd))
        c->seed = (uint64_t)json_integer_value(sd);
    return ALIGN_OK;
}

/* Checks f holds exactly the adapters of lo's layout (names under prefix
 * PEFT_PREFIX, F32, shapes), then copies them into lo. */
static int fill_from(align_model *m, align__lora *lo, const align__st_file *f, int strict)
{
    char nm[ALIGN__TENSOR_NAME_CAP + 32];
    const float *src;
    int rc;
    /* the head copy is optional (a PEFT file of a model trained without it):
     * missing, it starts from the base's head */
    snprintf(nm, sizeof nm, PEFT_PREFIX "score.weight");
    int n_want = lo->n_tensors - (lo->score && !align__st_has(f, nm));
    for (int i = 0; i < n_want; i++) {
        const align__tensor *t = &lo->tensors[i];
        snprintf(nm, sizeof nm, PEFT_PREFIX "%s", t->name);
        if ((rc = align__st_get(NULL, f, nm, 2, t->shape, &src)))
            return rc;
    }
    if (strict) {
        json_t *h = f->hdr;
        int n = (int)json_object_size(h) - (json_object_get(h, "__metadata__") ? 1 : 0);
        if (n != n_want)
            return align__error(NULL, ALIGN_EFORMAT,
                                "%s: %d tensors where the adapters of adapter_config.json have %d (libalign "
                                "reads LoRA A / B weights and the score head only)", f->path, n, n_want);
    }
    for (int i = 0; i < n_want; i++) {
        const align__tensor *t = &lo->tensors[i];
        snprintf(nm, sizeof nm, PEFT_PREFIX "%s", t->name);
        align__st_get(NULL, f, nm, 2, t->shape, &src);
        for (size_t j = 0; j < t->numel; j++)
            if (!isfinite(src[j]))
                return align__error(NULL, ALIGN_EFORMAT, "%s: %s holds a non-finite value", f->path, nm);
        memcpy(lo->params + t->offset, src, t->numel * sizeof(float));
    }
    if (n_want < lo->n_tensors)
        memcpy(score_copy(lo), base_score(m), (size_t)m->cfg.n_embd * sizeof(float));
    return ALIGN_OK;
}

/* Adapters of configuration c filled from f: installed on m (none before), or
 * copied into m's (same layout). Nothing changes on failure. */
static int load_into(align_model *m, const lora_cfg *c, const align__st_file *f, int strict)
{
    align__lora *have = m->lora;
    if (have && (have->r != c->r || have->mask != c->mask))
        return align__error(NULL, ALIGN_EINVAL,
                            "%s: the model's adapters have another rank or targets (r %d vs %d): merge them or "
                            "load into a model without adapters", f->path, (int)have->r, (int)c->r);
    align__lora *lo = lora_new(m, c->r, c->alpha, c->mask, !m->frozen);
    if (!lo)
        return align__error(NULL, ALIGN_ENOMEM, "lora: out of memory");
    lo->seed = c->seed;
    lo->enabled = c->enabled;
    memcpy(lo->base_name, c->base_name, sizeof lo->base_name);
    int rc = fill_from(m, lo, f, strict);
    if (!rc && have) {
        memcpy(have->params, lo->params, lo->n * sizeof(float));
        have->alpha = lo->alpha;
        have->scale = lo->scale;
        memcpy(have->base_name, lo->base_name, sizeof have->base_name);
        m->fwd_ready = 0;
        align__lora_free(lo);
        return ALIGN_OK;
    }
    if (!rc && (rc = install(m, lo, NULL)) == 0)
        return ALIGN_OK;
    align__lora_free(lo);
    return rc;
}

ALIGN_API int align_model_lora_load(align_model *m, const char *dir)
{
    if (!m || !dir)
        return align__error(NULL, ALIGN_EINVAL, "align_model_lora_load: model or folder is NULL");
    align__errbuf *eb = align__model_err(m);
    align__error_clear(eb);
    char *st = join(dir, "adapter_model.safetensors"), *cj = join(dir, "adapter_config.json");
    int rc;
    json_t *j = NULL;
    if (!st || !cj) {
        rc = align__error(NULL, ALIGN_ENOMEM, "align_model_lora_load: out of memory");
        goto out;
    }
    json_error_t jerr;
    struct stat sb;
    if (stat(cj, &sb) != 0) {
        rc = align__error(NULL, ALIGN_ENOENT, "%s: no adapter_config.json (a PEFT LoRA folder holds "
                          "adapter_config.json and adapter_model.safetensors)", dir);
        goto out;
    }
    if (!(j = json_load_file(cj, JSON_REJECT_DUPLICATES, &jerr))) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: %s", cj, jerr.text);
        goto out;
    }
    lora_cfg c;
    if ((rc = read_config(m, j, cj, &c)))
        goto out;
    align__st_file f;
    if ((rc = align__st_open(NULL, st, &f)))
        goto out;
    rc = load_into(m, &c, &f, 1);
    align__st_close(&f);
out:
    if (rc && eb)
        align__error(eb, rc, "%s", align_last_errmsg());
    json_decref(j);
    align__free(st);
    align__free(cj);
    return rc;
}

/* ---- checkpoints (align_model_save / load) ---------------------------------------------- */
int align__lora_ckpt_tensors(const align_model *m, int *n)
{
    *n = m->lora ? m->lora->n_tensors : 0;
    return *n;
}

const char *align__lora_ckpt_name(const align_model *m, int i, const float **data, int64_t shape[2])
{
    const align__tensor *t = &m->lora->tensors[i];
    *data = m->lora->params + t->offset;
    shape[0] = t->shape[0];
    shape[1] = t->shape[1];
    return t->name;
}

int align__lora_ckpt_meta(const align_model *m, char *buf, size_t cap)
{
    json_t *j = config_json(m, m->lora);
    if (!j)
        return ALIGN_ENOMEM;
    json_object_set_new(j, "libalign_enabled", json_boolean(m->lora->enabled));
    json_object_set_new(j, "libalign_seed", json_integer((json_int_t)m->lora->seed));
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!s)
        return ALIGN_ENOMEM;
    int ok = strlen(s) < cap;
    if (ok)
        memcpy(buf, s, strlen(s) + 1);
    free(s);
    return ok ? ALIGN_OK : ALIGN_ENOMEM;
}

int align__lora_is_adapter_name(const char *name)
{
    size_t n = strlen(name);
    if (!strcmp(name, PEFT_PREFIX "score.weight"))
        return 1;
    return strncmp(name, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0 && n > 14 &&
           (!strcmp(name + n - 14, ".lora_A.weight") || !strcmp(name + n - 14, ".lora_B.weight"));
}

int align__lora_from_ckpt(align_model *m, const char *meta, const struct align__st_file *f)
{
    json_error_t jerr;
    json_t *j = json_loads(meta, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return align__error(NULL, ALIGN_EFORMAT, "%s: libalign.lora metadata: %s", f->path, jerr.text);
    lora_cfg c;
    int rc = read_config(m, j, f->path, &c);
    json_decref(j);
    return rc ? rc : load_into(m, &c, f, 0);
}
