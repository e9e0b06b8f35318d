/* llama_ckpt.c — Llama-family checkpoints: Hugging Face folders as published
 * (config.json + model.safetensors, or shards listed by
 * model.safetensors.index.json; F32, BF16 or F16 weights, converted to float
 * on load) and libalign's own files (the configuration in the safetensors
 * metadata). Tensor names are Hugging Face's (llama.c's table). Like the
 * GPT-2 loader, every name, dtype and shape is checked before the model is
 * allocated, and the model is handed out only when everything loaded.
 * docs/architectures.md lists what is honoured and what is refused. */
#include "model/lora.h"
#include "model/model_impl.h"
#include "model/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const causal_archs[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"};
static const char *const seqcls_archs[] = {"LlamaForSequenceClassification",
                                           "Qwen2ForSequenceClassification",
                                           "MistralForSequenceClassification"};
static const char *const model_types[] = {"llama", "qwen2", "mistral"};
#define SUPPORTED "LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM and their " \
                  "*ForSequenceClassification (and GPT-2)"

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, list[i]))
            return 1;
    return 0;
}
#define IN(s, list) in_list((s), (list), sizeof(list) / sizeof(list[0]))

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = align__malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a == 0 || dir[a - 1] != '/')
        p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return align__strdup(".");
    if (slash == path)
        return align__strdup("/");
    return align__strndup(path, (size_t)(slash - path));
}

/* The metadata value libalign.arch of a safetensors file, read from its header
 * only (NULL if absent or unreadable; caller frees). */
static char *peek_arch(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    unsigned char lb[8];
    char *out = NULL;
    if (fread(lb, 1, 8, fp) == 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--)
            n = (n << 8) | lb[i];
        char *h = n > 0 && n < (100u << 20) ? align__malloc((size_t)n + 1) : NULL;
        if (h && fread(h, 1, (size_t)n, fp) == n) {
            json_t *j = json_loadb(h, (size_t)n, 0, NULL);
            const char *a = json_string_value(json_object_get(json_object_get(j, "__metadata__"), "libalign.arch"));
            if (a)
                out = align__strdup(a);
            json_decref(j);
        }
        align__free(h);
    }
    fclose(fp);
    return out;
}

/* 1: config.json at path describes a model that is not GPT-2. */
static int config_not_gpt2(const char *path, int *err)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    *err = 0;
    if (!j) {
        *err = align__error(NULL, ALIGN_EFORMAT, "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
        return 0;
    }
    int r = 0;
    json_t *mt = json_object_get(j, "model_type");
    if (json_is_string(mt)) {
        r = strcmp(json_string_value(mt), "gpt2") != 0;
    } else {
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(j, "architectures"), i, a)
            if (json_is_string(a) && strncmp(json_string_value(a), "GPT2", 4) != 0)
                r = 1;
    }
    json_decref(j);
    return r;
}

int align__llama_probe(const char *path)
{
    int err = 0, r = 0;
    if (is_dir(path)) {
        char *cfg = join(path, "config.json"), *st = join(path, "model.safetensors"),
             *idx = join(path, "model.safetensors.index.json");
        if (!cfg || !st || !idx)
            r = align__error(NULL, ALIGN_ENOMEM, "align_model_load: out of memory");
        else if (is_file(cfg))
            r = config_not_gpt2(cfg, &err);
        else if (is_file(st)) {
            char *a = peek_arch(st);
            r = a && !strcmp(a, "llama");
            align__free(a);
        } else
            r = is_file(idx);
        align__free(cfg);
        align__free(st);
        align__free(idx);
        return err ? err : r;
    }
    char *a = peek_arch(path);
    if (a) {
        r = !strcmp(a, "llama");
        align__free(a);
        return r;
    }
    char *d = dir_of(path), *cfg = d ? join(d, "config.json") : NULL;
    if (cfg && is_file(cfg))
        r = config_not_gpt2(cfg, &err);
    align__free(d);
    align__free(cfg);
    return err ? err : r;
}

/* ---- config.json ---------------------------------------------------------------- */
static int jint(const json_t *j, const char *key, int32_t *out, int required, const char *path)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        if (required)
            return align__error(NULL, ALIGN_EFORMAT, "%s: no \"%s\"", path, key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30))
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"%s\" must be a positive integer", path, key);
    *out = (int32_t)json_integer_value(v);
    return 0;
}

static int jnum(const json_t *j, const char *key, float *out, const char *path)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) <= 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"%s\" must be a positive number", path, key);
    *out = (float)json_number_value(v);
    return 0;
}

static int read_config(const char *path, align_model_params *c, int *seqcls)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j)
        return align__error(NULL, ALIGN_EFORMAT, "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
    int rc = ALIGN_OK;
    *seqcls = 0;
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    const char *arch = NULL;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(j, "architectures"), i, a) {
        const char *s = json_string_value(a);
        if (IN(s, seqcls_archs))
            *seqcls = 1;
        else if (!IN(s, causal_archs) && s && strcmp(s, "LlamaModel") && strcmp(s, "Qwen2Model") &&
                 strcmp(s, "MistralModel")) {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: architecture %s is not supported (libalign reads " SUPPORTED ")",
                              path, s);
            goto out;
        }
        arch = s;
    }
    if (mt && !IN(mt, model_types)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: model_type \"%s\" is not supported (libalign reads " SUPPORTED ")",
                          path, mt);
        goto out;
    }
    if (!mt && !arch) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: neither model_type nor architectures: the architecture is unknown", path);
        goto out;
    }
    int qwen2 = (mt && !strcmp(mt, "qwen2")) || (arch && !strncmp(arch, "Qwen2", 5));
    c->arch = ALIGN_ARCH_LLAMA;
    c->n_kv_head = 0;
    int32_t head_dim = 0;
    if ((rc = jint(j, "hidden_size", &c->n_embd, 1, path)) ||
        (rc = jint(j, "num_hidden_layers", &c->n_layer, 1, path)) ||
        (rc = jint(j, "num_attention_heads", &c->n_head, 1, path)) ||
        (rc = jint(j, "num_key_value_heads", &c->n_kv_head, 0, path)) ||
        (rc = jint(j, "intermediate_size", &c->intermediate_size, 1, path)) ||
        (rc = jint(j, "vocab_size", &c->vocab_size, 1, path)) ||
        (rc = jint(j, "max_position_embeddings", &c->max_seq_len, 1, path)) ||
        (rc = jint(j, "head_dim", &head_dim, 0, path)))
        goto out;
    if (c->n_kv_head == 0)
        c->n_kv_head = c->n_head;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-6f;
    if ((rc = jnum(j, "rope_theta", &c->rope_theta, path)) || (rc = jnum(j, "rms_norm_eps", &c->norm_eps, path)))
        goto out;
    if (head_dim && (int64_t)head_dim * c->n_head != c->n_embd) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: head_dim %d x %d heads != hidden_size %d is not supported",
                          path, head_dim, c->n_head, c->n_embd);
        goto out;
    }
    const char *act = json_string_value(json_object_get(j, "hidden_act"));
    if (act && strcmp(act, "silu")) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: hidden_act \"%s\" is not supported (SwiGLU with silu)", path, act);
        goto out;
    }
    json_t *rs = json_object_get(j, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        rc = align__error(NULL, ALIGN_EFORMAT,
                          "%s: rope_scaling is not supported (libalign implements plain rotary embeddings)", path);
        goto out;
    }
    if (json_is_true(json_object_get(j, "attention_bias")) || json_is_true(json_object_get(j, "mlp_bias"))) {
        rc = align__error(NULL, ALIGN_EFORMAT,
                          "%s: attention_bias / mlp_bias = true is not supported (only Qwen2's q/k/v biases)", path);
        goto out;
    }
    json_t *sw = json_object_get(j, "sliding_window");
    int sw_used = qwen2 ? json_is_true(json_object_get(j, "use_sliding_window")) : 1;
    if (sw_used && json_is_integer(sw) && json_integer_value(sw) < c->max_seq_len) {
        rc = align__error(NULL, ALIGN_EFORMAT,
                          "%s: sliding_window %lld is not supported (libalign attends over the whole context)",
                          path, (long long)json_integer_value(sw));
        goto out;
    }
    /* transformers' default for these families: untied unless said */
    json_t *tie = json_object_get(j, "tie_word_embeddings");
    if (!json_is_true(tie))
        c->flags |= ALIGN_MODEL_UNTIED_HEAD;
    else
        c->flags &= ~ALIGN_MODEL_UNTIED_HEAD;
    if (qwen2)
        c->flags |= ALIGN_MODEL_QKV_BIAS;
    if (*seqcls) {
        int32_t labels = 1;
        json_t *id2 = json_object_get(j, "id2label");
        if (json_is_object(id2))
            labels = (int32_t)json_object_size(id2);
        if ((rc = jint(j, "num_labels", &labels, 0, path)))
            goto out;
        if (labels != 1) {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: a sequence classifier with %d labels: a reward model has one",
                              path, labels);
            goto out;
        }
        c->flags |= ALIGN_MODEL_SCALAR_HEAD;
        c->flags &= ~ALIGN_MODEL_UNTIED_HEAD; /* *ForSequenceClassification has no LM head */
    }
out:
    json_decref(j);
    return rc;
}

/* ---- libalign metadata --------------------------------------------------------------- */
static int meta_num(const align__st_file *f, const char *key, double *out, int required)
{
    const char *s = align__st_meta_get(f, key);
    if (!s)
        return required ? align__error(NULL, ALIGN_EFORMAT, "%s: no metadata %s", f->path, key) : 0;
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !isfinite(v))
        return align__error(NULL, ALIGN_EFORMAT, "%s: metadata %s = '%s' is not a number", f->path, key, s);
    *out = v;
    return 0;
}

static int read_meta(const align__st_file *f, align_model_params *c)
{
    static const char *const keys[] = {"n_layer", "n_head", "n_kv_head", "n_embd", "vocab_size", "n_positions",
                                       "intermediate_size", "rope_theta", "norm_eps", "libalign.flags"};
    double v[10];
    for (int i = 0; i < 10; i++) {
        int rc = meta_num(f, keys[i], &v[i], 1);
        if (rc)
            return rc;
        if (i < 7 && (v[i] < 1 || v[i] > (1 << 30) || v[i] != floor(v[i])))
            return align__error(NULL, ALIGN_EFORMAT, "%s: metadata %s is not a positive integer", f->path, keys[i]);
    }
    if (v[9] < 0 || v[9] > 0xffff || v[9] != floor(v[9]))
        return align__error(NULL, ALIGN_EFORMAT, "%s: metadata libalign.flags is not a flag set", f->path);
    c->arch = ALIGN_ARCH_LLAMA;
    c->n_layer = (int32_t)v[0];
    c->n_head = (int32_t)v[1];
    c->n_kv_head = (int32_t)v[2];
    c->n_embd = (int32_t)v[3];
    c->vocab_size = (int32_t)v[4];
    c->max_seq_len = (int32_t)v[5];
    c->intermediate_size = (int32_t)v[6];
    c->rope_theta = (float)v[7];
    c->norm_eps = (float)v[8];
    uint32_t fl = (uint32_t)v[9];
    c->flags = (c->flags & ALIGN_MODEL_SCALAR_HEAD) | (fl & (ALIGN_MODEL_UNTIED_HEAD | ALIGN_MODEL_QKV_BIAS));
    return 0;
}

/* ---- load -------------------------------------------------------------------------- */
typedef struct {
    align__st_file *f;
    int n;
} shards;

static void shards_close(shards *s)
{
    for (int i = 0; i < s->n; i++)
        align__st_close(&s->f[i]);
    align__free(s->f);
    s->f = NULL;
    s->n = 0;
}

/* The shard files model.safetensors.index.json names, opened. */
static int open_index(const char *dir, const char *idx, shards *s)
{
    json_error_t jerr;
    json_t *j = json_load_file(idx, 0, &jerr);
    if (!j)
        return align__error(NULL, ALIGN_EFORMAT, "%s:%d: not valid JSON: %s", idx, jerr.line, jerr.text);
    json_t *wm = json_object_get(j, "weight_map");
    int rc = ALIGN_OK;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no \"weight_map\" object", idx);
        goto out;
    }
    /* distinct file names, in order of first appearance */
    const char **names = align__calloc(json_object_size(wm), sizeof *names);
    int nn = 0;
    if (!names) {
        rc = align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", idx);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *fn = json_string_value(v);
        if (!fn || strchr(fn, '/') || fn[0] == '.' || fn[0] == '\0') {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: tensor %s maps to '%s', not a file name in the folder",
                              idx, key, fn ? fn : "?");
            break;
        }
        int seen = 0;
        for (int i = 0; i < nn && !seen; i++)
            seen = !strcmp(names[i], fn);
        if (!seen)
            names[nn++] = fn;
    }
    if (!rc && !(s->f = align__calloc((size_t)nn, sizeof *s->f)))
        rc = align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", idx);
    for (int i = 0; !rc && i < nn; i++) {
        char *p = join(dir, names[i]);
        if (!p) {
            rc = align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", idx);
            break;
        }
        rc = align__st_open(NULL, p, &s->f[i]);
        align__free(p);
        if (!rc)
            s->n++;
    }
    align__free(names);
out:
    json_decref(j);
    if (rc)
        shards_close(s);
    return rc;
}

static const align__st_file *find(const shards *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (align__st_has(&s->f[i], name))
            return &s->f[i];
    return NULL;
}

typedef struct {
    const align_model *table; /* tensor table of the configuration (no weights) */
    const char *bad;
    int lora;                 /* the file carries LoRA adapters (libalign.lora metadata) */
} names_ctx;

static int check_name(const char *name, void *ud)
{
    names_ctx *x = ud;
    if (align__model_find_tensor(x->table, name) || !strcmp(name, "score.weight") ||
        !strcmp(name, "score.bias") || !strcmp(name, "lm_head.weight"))
        return 0;
    if (x->lora && align__lora_is_adapter_name(name)) /* checked by align__lora_from_ckpt */
        return 0;
    size_t n = strlen(name);
    if (n > 22 && !strcmp(name + n - 22, ".rotary_emb.inv_freq")) /* a buffer in older files */
        return 0;
    x->bad = name;
    return 1;
}

int align__llama_load(align_model **out, const char *path, const align_model_params *user)
{
    *out = NULL;
    int rc = ALIGN_OK, folder = is_dir(path);
    char *dir = folder ? align__strdup(path) : dir_of(path);
    char *cfg_path = dir ? join(dir, "config.json") : NULL;
    char *st_path = folder && dir ? join(dir, "model.safetensors") : NULL;
    char *idx_path = folder && dir ? join(dir, "model.safetensors.index.json") : NULL;
    shards sh = {0};
    align__tensor *tab = NULL;
    if (!dir || !cfg_path || (folder && (!st_path || !idx_path))) {
        rc = align__error(NULL, ALIGN_ENOMEM, "align_model_load: out of memory");
        goto done;
    }
    if (folder && !is_file(st_path)) {
        if (!is_file(idx_path)) {
            rc = align__error(NULL, ALIGN_ENOENT,
                              "%s: a folder without model.safetensors or model.safetensors.index.json", path);
            goto done;
        }
        if ((rc = open_index(dir, idx_path, &sh)))
            goto done;
    } else {
        if (!(sh.f = align__calloc(1, sizeof *sh.f))) {
            rc = align__error(NULL, ALIGN_ENOMEM, "align_model_load: out of memory");
            goto done;
        }
        if ((rc = align__st_open(NULL, folder ? st_path : path, &sh.f[0])))
            goto done;
        sh.n = 1;
    }
    align_model_params cfg = *user;
    cfg.flags &= ALIGN_MODEL_SCALAR_HEAD; /* the rest comes from the checkpoint */
    int seqcls = 0;
    const align__st_file *f0 = &sh.f[0];
    const char *marc = align__st_meta_get(f0, "libalign.arch");
    if (marc && !strcmp(marc, "llama")) {
        if ((rc = read_meta(f0, &cfg)))
            goto done;
    } else if (is_file(cfg_path)) {
        if ((rc = read_config(cfg_path, &cfg, &seqcls)))
            goto done;
    } else {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no config.json beside the weights: the configuration is unknown",
                          path);
        goto done;
    }
    int scalar_file = find(&sh, "score.weight") != NULL;
    if (seqcls && !scalar_file) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: config.json names a sequence classifier but there is no score.weight",
                          path);
        goto done;
    }
    if (scalar_file)
        cfg.flags |= ALIGN_MODEL_SCALAR_HEAD;
    if ((rc = align__model_check_config(&cfg, NULL))) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: the configuration is invalid: %s", path, align_last_errmsg());
        goto done;
    }
    /* the tensor table of this configuration, to check the files against */
    align_model table;
    memset(&table, 0, sizeof table);
    table.cfg = cfg;
    if (!(tab = align__calloc((size_t)align__llama_ops.max_tensors(&cfg), sizeof *tab))) {
        rc = align__error(NULL, ALIGN_ENOMEM, "align_model_load: out of memory");
        goto done;
    }
    table.tensors = tab;
    align__llama_ops.build_tensors(&table);
    const char *lora_meta = align__st_meta_get(f0, "libalign.lora");
    names_ctx nc = {&table, NULL, lora_meta != NULL};
    for (int i = 0; i < sh.n; i++)
        if (align__st_each(&sh.f[i], check_name, &nc)) {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: unexpected tensor '%s' for a %d-layer Llama of width %d",
                              sh.f[i].path, nc.bad, cfg.n_layer, cfg.n_embd);
            goto done;
        }
    for (int i = 0; i < table.n_tensors; i++) {
        const align__tensor *t = &tab[i];
        const align__st_file *f = find(&sh, t->name);
        if (!f && !strcmp(t->name, "score.bias") && scalar_file)
            continue; /* HF's head has no bias */
        if (!f && !strncmp(t->name, "score.", 6) && !scalar_file)
            continue; /* a fresh head asked for by the flags */
        if (!f) {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: tensor '%s' is missing%s", path, t->name,
                              !strcmp(t->name, "lm_head.weight") ? " (config.json says tie_word_embeddings = false)" : "");
            goto done;
        }
        if ((rc = align__st_read(NULL, f, t->name, t->ndim, t->shape, NULL)))
            goto done;
    }
    double sb = 0, rb = 0, rsc = 1;
    int has_rn = align__st_meta_get(f0, "libalign.reward_bias") || align__st_meta_get(f0, "libalign.reward_scale");
    if ((rc = meta_num(f0, "libalign.score_bias", &sb, 0)) || (rc = meta_num(f0, "libalign.reward_bias", &rb, 0)) ||
        (rc = meta_num(f0, "libalign.reward_scale", &rsc, 0)))
        goto done;
    if (cfg.n_threads > 0 && (rc = align_threads_set(cfg.n_threads)))
        goto done;
    align_model *m;
    if ((rc = align__model_alloc(&m, &cfg, 0, NULL)))
        goto done;
    if ((cfg.flags & ALIGN_MODEL_SCALAR_HEAD) && !scalar_file)
        align__model_init_weights(m);
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *t = &m->tensors[i];
        const align__st_file *f = find(&sh, t->name);
        if (!f) {
            if (!strcmp(t->name, "score.bias") && scalar_file)
                m->params[t->offset] = (float)sb;
            continue;
        }
        if ((rc = align__st_read(NULL, f, t->name, t->ndim, t->shape, m->params + t->offset))) {
            align_model_free(m);
            goto done;
        }
    }
    /* a LoRA trainer's checkpoint: the adapters ride along (align__llama_save) */
    if (lora_meta && (rc = align__lora_from_ckpt(m, lora_meta, f0))) {
        align_model_free(m);
        goto done;
    }
    if (has_rn) {
        m->reward_norm.set = 1;
        m->reward_norm.bias = (float)rb;
        m->reward_norm.scale = (float)rsc;
    }
    (void)align_blas_info();
    *out = m;
done:
    shards_close(&sh);
    align__free(tab);
    align__free(dir);
    align__free(cfg_path);
    align__free(st_path);
    align__free(idx_path);
    return rc;
}

/* ---- save ------------------------------------------------------------------------- */
static int write_config(align__errbuf *eb, const align_model *m, const char *path, int seqcls, int bf16)
{
    const align_model_params *c = &m->cfg;
    int qwen2 = (c->flags & ALIGN_MODEL_QKV_BIAS) != 0;
    const char *arch = qwen2 ? (seqcls ? "Qwen2ForSequenceClassification" : "Qwen2ForCausalLM")
                             : (seqcls ? "LlamaForSequenceClassification" : "LlamaForCausalLM");
    json_t *j = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:s, s:b, s:b, s:n}",
                          "architectures", arch, "model_type", qwen2 ? "qwen2" : "llama",
                          "hidden_size", c->n_embd, "intermediate_size", c->intermediate_size,
                          "num_hidden_layers", c->n_layer, "num_attention_heads", c->n_head,
                          "num_key_value_heads", c->n_kv_head, "vocab_size", c->vocab_size,
                          "max_position_embeddings", c->max_seq_len, "rope_theta", (double)c->rope_theta,
                          "rms_norm_eps", (double)c->norm_eps,
                          "tie_word_embeddings", !(c->flags & ALIGN_MODEL_UNTIED_HEAD),
                          "hidden_act", "silu", "torch_dtype", bf16 ? "bfloat16" : "float32",
                          "attention_bias", 0, "mlp_bias", 0, "rope_scaling");
    if (j && seqcls &&
        (json_object_set_new(j, "num_labels", json_integer(1)) ||
         json_object_set_new(j, "id2label", json_pack("{s:s}", "0", "LABEL_0")) ||
         json_object_set_new(j, "label2id", json_pack("{s:i}", "LABEL_0", 0)))) {
        json_decref(j);
        j = NULL;
    }
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!s)
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", path);
    align__chunk ch[2] = {{s, strlen(s)}, {"\n", 1}};
    int rc = align__write_atomic(eb, path, ch, 2);
    free(s);
    return rc;
}

int align__llama_save(const align_model *m, const char *path, uint32_t flags, align__errbuf *eb)
{
    int seqcls = (flags & ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION) != 0, bf16 = (flags & ALIGN_SAVE_BF16) != 0;
    if (seqcls && !(m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD))
        return align__error(eb, ALIGN_EINVAL,
                            "align_model_save_ex: ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION needs a model with a "
                            "scalar head (ALIGN_MODEL_SCALAR_HEAD)");
    size_t pl = strlen(path);
    int folder = is_dir(path) || (pl > 0 && path[pl - 1] == '/');
    char *st_path = NULL, *cfg_path = NULL;
    if (folder) {
        if (!is_dir(path) && mkdir(path, 0777) != 0 && errno != EEXIST)
            return align__error(eb, ALIGN_EIO, "%s: cannot create the folder: %s", path, strerror(errno));
        st_path = join(path, "model.safetensors");
        cfg_path = join(path, "config.json");
        if (!st_path || !cfg_path) {
            align__free(st_path);
            align__free(cfg_path);
            return align__error(eb, ALIGN_ENOMEM, "align_model_save: out of memory");
        }
    }
    /* LoRA adapters ride along under their PEFT names, with their
     * configuration in the metadata (a LoRA trainer's checkpoint) */
    int n_lora;
    align__lora_ckpt_tensors(m, &n_lora);
    size_t n_all = (size_t)m->n_tensors + (size_t)n_lora;
    align__st_tensor *t = align__malloc(sizeof *t * n_all);
    char (*names)[ALIGN__TENSOR_NAME_CAP + 32] = n_lora ? align__malloc(sizeof *names * (size_t)n_lora) : NULL;
    char *lora_meta = n_lora ? align__malloc(8192) : NULL;
    if (!t || (n_lora && (!names || !lora_meta || align__lora_ckpt_meta(m, lora_meta, 8192)))) {
        align__free(t);
        align__free(names);
        align__free(lora_meta);
        align__free(st_path);
        align__free(cfg_path);
        return align__error(eb, ALIGN_ENOMEM, "align_model_save: out of memory");
    }
    int n = 0;
    float score_bias = 0.0f;
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *mt = &m->tensors[i];
        if (seqcls && !strcmp(mt->name, "score.bias")) {
            score_bias = m->params[mt->offset]; /* HF's head has no bias: kept in the metadata */
            continue;
        }
        if (seqcls && !strcmp(mt->name, "lm_head.weight"))
            continue; /* a sequence classifier has no LM head */
        t[n].name = mt->name;
        t[n].data = m->params + mt->offset;
        t[n].ndim = mt->ndim;
        t[n].shape[0] = mt->shape[0];
        t[n].shape[1] = mt->shape[1];
        n++;
    }
    for (int i = 0; i < n_lora; i++, n++) {
        const float *d;
        const char *ln = align__lora_ckpt_name(m, i, &d, t[n].shape);
        snprintf(names[i], sizeof names[i], "base_model.model.%s", ln);
        t[n].name = names[i];
        t[n].data = d;
        t[n].ndim = 2;
    }
    const align_model_params *c = &m->cfg;
    char v[13][40];
    snprintf(v[0], sizeof v[0], "%d", c->n_layer);
    snprintf(v[1], sizeof v[1], "%d", c->n_head);
    snprintf(v[2], sizeof v[2], "%d", c->n_kv_head);
    snprintf(v[3], sizeof v[3], "%d", c->n_embd);
    snprintf(v[4], sizeof v[4], "%d", c->vocab_size);
    snprintf(v[5], sizeof v[5], "%d", c->max_seq_len);
    snprintf(v[6], sizeof v[6], "%d", c->intermediate_size);
    snprintf(v[7], sizeof v[7], "%.9g", (double)c->rope_theta); /* %.9g: a float reads back exactly */
    snprintf(v[8], sizeof v[8], "%.9g", (double)c->norm_eps);
    uint32_t kept = ALIGN_MODEL_QKV_BIAS | (seqcls ? 0u : ALIGN_MODEL_UNTIED_HEAD); /* no LM head in seqcls */
    snprintf(v[9], sizeof v[9], "%u", (unsigned)(c->flags & kept));
    snprintf(v[10], sizeof v[10], "%.9g", (double)score_bias);
    snprintf(v[11], sizeof v[11], "%.9g", (double)m->reward_norm.bias);
    snprintf(v[12], sizeof v[12], "%.9g", (double)m->reward_norm.scale);
    align__st_meta meta[16] = {
        {"format", "pt"},          {"libalign.arch", "llama"},   {"n_layer", v[0]},
        {"n_head", v[1]},          {"n_kv_head", v[2]},          {"n_embd", v[3]},
        {"vocab_size", v[4]},      {"n_positions", v[5]},        {"intermediate_size", v[6]},
        {"rope_theta", v[7]},      {"norm_eps", v[8]},           {"libalign.flags", v[9]},
    };
    int nm = 12;
    if (seqcls)
        meta[nm++] = (align__st_meta){"libalign.score_bias", v[10]};
    if (m->reward_norm.set) {
        meta[nm++] = (align__st_meta){"libalign.reward_bias", v[11]};
        meta[nm++] = (align__st_meta){"libalign.reward_scale", v[12]};
    }
    if (n_lora)
        meta[nm++] = (align__st_meta){"libalign.lora", lora_meta};
    int rc = align__st_write_dtype(eb, folder ? st_path : path, t, n, meta, nm, bf16);
    if (!rc && folder)
        rc = write_config(eb, m, cfg_path, seqcls, bf16);
    align__free(t);
    align__free(names);
    align__free(lora_meta);
    align__free(st_path);
    align__free(cfg_path);
    return rc;
}
