/* checkpoint.c — align_model_save / align_model_load in safetensors with
 * Hugging Face GPT-2 tensor names and shapes (docs/model.md).
 *
 * Loading reads a libalign file (its configuration is in the safetensors
 * metadata), a Hugging Face folder (config.json + model.safetensors), a
 * safetensors file with a config.json beside it, or a libalign checkpoint
 * folder (align_trainer_save's model.safetensors). Every tensor's name,
 * dtype, shape and byte range is checked against the configuration before
 * the model is allocated, so a small hostile file cannot make libalign
 * allocate a large model; the new model is handed out only when everything
 * checked out. Two layouts are read and written: libalign's (GPT2Model names
 * without prefix, scalar head score.weight [1,C] + score.bias [1]) and
 * GPT2ForSequenceClassification's (body under "transformer.", a top-level
 * score.weight [1,C] without bias). */
#include "model/model_impl.h"
#include "model/lora.h"
#include "model/safetensors.h"
#include "nn/nn.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HF_SEQCLS "GPT2ForSequenceClassification"

static char *path_join(const char *dir, const char *name)
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

/* The folder part of a file path ("." when there is none); caller frees. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return align__strdup(".");
    if (slash == path)
        return align__strdup("/");
    return align__strndup(path, (size_t)(slash - path));
}

/* ---- save -------------------------------------------------------------------- */

static int write_config_json(align__errbuf *eb, const align_model *m, const char *path, int seqcls,
                             int bf16)
{
    const align_model_params *c = &m->cfg;
    json_t *j = json_pack("{s:[s], s:s, s:s, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:n, s:b, s:s}",
                          "architectures", seqcls ? HF_SEQCLS : "GPT2LMHeadModel", "model_type", "gpt2",
                          "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5,
                          "n_layer", c->n_layer, "n_head", c->n_head, "n_embd", c->n_embd,
                          "n_positions", c->max_seq_len, "n_ctx", c->max_seq_len,
                          "vocab_size", c->vocab_size, "n_inner", "tie_word_embeddings", 1,
                          "torch_dtype", bf16 ? "bfloat16" : "float32");
    if (j && seqcls) {
        /* one label: the scalar reward (transformers' num_labels = 1) */
        if (json_object_set_new(j, "num_labels", json_integer(1)) ||
            json_object_set_new(j, "id2label", json_pack("{s:s}", "0", "LABEL_0")) ||
            json_object_set_new(j, "label2id", json_pack("{s:i}", "LABEL_0", 0))) {
            json_decref(j);
            j = NULL;
        }
    }
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!s)
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    align__chunk ch[2] = {{s, n}, {"\n", 1}};
    int rc = align__write_atomic(eb, path, ch, 2);
    free(s);
    return rc;
}

ALIGN_API int align_model_save_ex(const align_model *m, const char *path, uint32_t flags)
{
    if (!m || !path)
        return align__error(NULL, ALIGN_EINVAL, "align_model_save: model or path is NULL");
    /* the message is not model state; a frozen model may be shared between
     * threads, so its detail goes only to align_last_errmsg */
    align__errbuf *eb = m->frozen ? NULL : (align__errbuf *)&m->err;
    if (eb)
        align__error_clear(eb);
    if (flags & ~(ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION | ALIGN_SAVE_BF16))
        return align__error(eb, ALIGN_EINVAL, "align_model_save_ex: unknown flags 0x%x", flags);
    if (m->cfg.arch == ALIGN_ARCH_LLAMA)
        return align__llama_save(m, path, flags, eb);
    int seqcls = (flags & ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION) != 0;
    if (seqcls && !(m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD))
        return align__error(eb, ALIGN_EINVAL,
                            "align_model_save_ex: ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION needs a model "
                            "with a scalar head (ALIGN_MODEL_SCALAR_HEAD)");
    /* a folder (existing, or named with a trailing '/'): model.safetensors + config.json */
    size_t pl = strlen(path);
    int folder = is_dir(path) || (pl > 0 && path[pl - 1] == '/');
    char *st_path = NULL, *cfg_path = NULL;
    if (folder) {
        if (!is_dir(path) && mkdir(path, 0777) != 0 && errno != EEXIST)
            return align__error(eb, ALIGN_EIO, "%s: cannot create the folder: %s", path, strerror(errno));
        st_path = path_join(path, "model.safetensors");
        cfg_path = path_join(path, "config.json");
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
    char (*names)[ALIGN__TENSOR_NAME_CAP + 32] = align__malloc(sizeof *names * n_all);
    char *lora_meta = n_lora ? align__malloc(8192) : NULL;
    if (!t || !names || (n_lora && (!lora_meta || align__lora_ckpt_meta(m, lora_meta, 8192)))) {
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
        int score = strncmp(mt->name, "score.", 6) == 0;
        if (seqcls && !strcmp(mt->name, "score.bias")) {
            score_bias = m->params[mt->offset]; /* HF's head has no bias: kept in the metadata */
            continue;
        }
        snprintf(names[n], sizeof names[n], "%s%s", seqcls && !score ? "transformer." : "", mt->name);
        t[n].name = names[n];
        t[n].data = m->params + mt->offset;
        t[n].ndim = mt->ndim;
        t[n].shape[0] = mt->shape[0];
        t[n].shape[1] = mt->shape[1];
        n++;
    }
    for (int i = 0; i < n_lora; i++, n++) {
        const float *d;
        const char *ln = align__lora_ckpt_name(m, i, &d, t[n].shape);
        snprintf(names[n], sizeof names[n], "base_model.model.%s", ln);
        t[n].name = names[n];
        t[n].data = d;
        t[n].ndim = 2;
    }
    char v[8][32];
    snprintf(v[0], sizeof v[0], "%d", m->cfg.n_layer);
    snprintf(v[1], sizeof v[1], "%d", m->cfg.n_head);
    snprintf(v[2], sizeof v[2], "%d", m->cfg.n_embd);
    snprintf(v[3], sizeof v[3], "%d", m->cfg.vocab_size);
    snprintf(v[4], sizeof v[4], "%d", m->cfg.max_seq_len);
    /* %.9g: a float reads back exactly */
    snprintf(v[5], sizeof v[5], "%.9g", (double)score_bias);
    snprintf(v[6], sizeof v[6], "%.9g", (double)m->reward_norm.bias);
    snprintf(v[7], sizeof v[7], "%.9g", (double)m->reward_norm.scale);
    align__st_meta meta[11] = {
        {"format", "pt"},           {"libalign.arch", "gpt2"}, {"n_layer", v[0]},
        {"n_head", v[1]},           {"n_embd", v[2]},          {"vocab_size", v[3]},
        {"n_positions", v[4]},
    };
    int nm = 7;
    if (seqcls)
        meta[nm++] = (align__st_meta){"libalign.score_bias", v[5]};
    if (m->reward_norm.set) {
        meta[nm++] = (align__st_meta){"libalign.reward_bias", v[6]};
        meta[nm++] = (align__st_meta){"libalign.reward_scale", v[7]};
    }
    if (n_lora)
        meta[nm++] = (align__st_meta){"libalign.lora", lora_meta};
    int rc = align__st_write_dtype(eb, folder ? st_path : path, t, n, meta, nm,
                                   (flags & ALIGN_SAVE_BF16) != 0);
    if (!rc && folder)
        rc = write_config_json(eb, m, cfg_path, seqcls, (flags & ALIGN_SAVE_BF16) != 0);
    align__free(t);
    align__free(names);
    align__free(lora_meta);
    align__free(st_path);
    align__free(cfg_path);
    return rc;
}

ALIGN_API int align_model_save(const align_model *m, const char *path)
{
    return align_model_save_ex(m, path, 0);
}

/* ---- load: configuration ------------------------------------------------------ */

static int meta_int(const align__st_file *f, const char *key, int32_t *out)
{
    const char *s = align__st_meta_get(f, key);
    if (!s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > (1L << 30))
        return align__error(NULL, ALIGN_EFORMAT, "%s: metadata %s = '%s' is not a positive integer",
                            f->path, key, s);
    *out = (int32_t)v;
    return 0;
}

static int meta_float(const align__st_file *f, const char *key, float *out, int *found)
{
    const char *s = align__st_meta_get(f, key);
    *found = s != NULL;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (*s == '\0' || *end != '\0' || !isfinite(v))
        return align__error(NULL, ALIGN_EFORMAT, "%s: metadata %s = '%s' is not a finite number",
                            f->path, key, s);
    *out = v;
    return 0;
}

static int json_int_key(const json_t *j, const char *key, int32_t *out, int *found, const char *path)
{
    json_t *v = json_object_get(j, key);
    if (found)
        *found = v != NULL && !json_is_null(v);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30))
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"%s\" must be a positive integer", path, key);
    *out = (int32_t)json_integer_value(v);
    return 0;
}

/* A Hugging Face GPT-2 config.json: the settings libalign needs, and a clear
 * refusal of those it does not implement. *seqcls: the architecture is
 * GPT2ForSequenceClassification (a scalar head). */
static int read_config_json(const char *path, align_model_params *cfg, int *seqcls)
{
    *seqcls = 0;
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j)
        return align__error(NULL, ALIGN_EFORMAT, "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
    int rc = ALIGN_OK, found;
    if (!json_is_object(j)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: not a JSON object", path);
        goto out;
    }
    json_t *mt = json_object_get(j, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "gpt2") != 0)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: model_type \"%s\" is not supported (libalign reads gpt2)",
                          path, json_is_string(mt) ? json_string_value(mt) : "?");
        goto out;
    }
    json_t *arch = json_object_get(j, "architectures");
    if (arch && json_is_array(arch)) {
        size_t i;
        json_t *a;
        json_array_foreach(arch, i, a) {
            const char *s = json_string_value(a);
            if (s && !strcmp(s, HF_SEQCLS))
                *seqcls = 1;
            else if (s && strcmp(s, "GPT2LMHeadModel") && strcmp(s, "GPT2Model")) {
                rc = align__error(NULL, ALIGN_EFORMAT,
                                  "%s: architecture %s is not supported (GPT2LMHeadModel, GPT2Model, "
                                  HF_SEQCLS ")", path, s);
                goto out;
            }
        }
    }
    int32_t tmp = 0;
    if ((rc = json_int_key(j, "n_layer", &cfg->n_layer, NULL, path)) ||
        (rc = json_int_key(j, "n_head", &cfg->n_head, &found, path)) ||
        (rc = json_int_key(j, "n_embd", &cfg->n_embd, NULL, path)) ||
        (rc = json_int_key(j, "vocab_size", &cfg->vocab_size, NULL, path)) ||
        (rc = json_int_key(j, "n_ctx", &cfg->max_seq_len, NULL, path)) ||
        (rc = json_int_key(j, "n_positions", &cfg->max_seq_len, NULL, path)))
        goto out;
    if (!found) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no \"n_head\": the number of attention heads is needed", path);
        goto out;
    }
    if ((rc = json_int_key(j, "n_inner", &tmp, &found, path)))
        goto out;
    if (found && tmp != 4 * cfg->n_embd) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: n_inner %d is not supported (libalign's MLP is 4 x n_embd)",
                          path, tmp);
        goto out;
    }
    json_t *act = json_object_get(j, "activation_function");
    if (act && (!json_is_string(act) || (strcmp(json_string_value(act), "gelu_new") &&
                                         strcmp(json_string_value(act), "gelu_pytorch_tanh")))) {
        rc = align__error(NULL, ALIGN_EFORMAT,
                          "%s: activation_function \"%s\" is not supported (libalign uses the tanh GELU, gelu_new)",
                          path, json_is_string(act) ? json_string_value(act) : "?");
        goto out;
    }
    json_t *eps = json_object_get(j, "layer_norm_epsilon");
    if (eps && (!json_is_number(eps) || fabs(json_number_value(eps) - 1e-5) > 1e-12)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: layer_norm_epsilon other than 1e-5 is not supported", path);
        goto out;
    }
    static const char *const must_be_false[] = {"scale_attn_by_inverse_layer_idx", "add_cross_attention"};
    for (size_t i = 0; i < sizeof must_be_false / sizeof must_be_false[0]; i++)
        if (json_is_true(json_object_get(j, must_be_false[i]))) {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: %s = true is not supported", path, must_be_false[i]);
            goto out;
        }
    if (json_is_false(json_object_get(j, "scale_attn_weights")) ||
        json_is_false(json_object_get(j, "tie_word_embeddings"))) {
        rc = align__error(NULL, ALIGN_EFORMAT,
                          "%s: scale_attn_weights = false or tie_word_embeddings = false is not supported", path);
        goto out;
    }
    if (*seqcls) {
        int32_t labels = 1;
        json_t *id2 = json_object_get(j, "id2label");
        if (json_is_object(id2))
            labels = (int32_t)json_object_size(id2);
        if ((rc = json_int_key(j, "num_labels", &labels, NULL, path)))
            goto out;
        if (labels != 1) {
            rc = align__error(NULL, ALIGN_EFORMAT,
                              "%s: " HF_SEQCLS " with %d labels: a reward model has one (num_labels = 1)",
                              path, labels);
            goto out;
        }
    }
out:
    json_decref(j);
    return rc;
}

/* ---- load: validation before allocation ---------------------------------------- */

typedef struct {
    const align_model_params *cfg;
    const char *prefix;     /* "" or "transformer." for the body */
    int scalar_file;        /* the file holds score.weight */
    const char *bad;        /* first unexpected name */
    int lora;               /* the file carries LoRA adapters (libalign.lora metadata) */
} names_ctx;

/* Expected shape of body tensor `name` (without prefix) for cfg: 1 if it is
 * one, else 0. Mirrors the tensor table of model.c. */
static int body_shape(const align_model_params *c, const char *name, int *nd, int64_t sh[2])
{
    int64_t C = c->n_embd;
    sh[1] = 0;
    *nd = 1;
    if (!strcmp(name, "wte.weight")) {
        *nd = 2, sh[0] = c->vocab_size, sh[1] = C;
        return 1;
    }
    if (!strcmp(name, "wpe.weight")) {
        *nd = 2, sh[0] = c->max_seq_len, sh[1] = C;
        return 1;
    }
    if (!strcmp(name, "ln_f.weight") || !strcmp(name, "ln_f.bias")) {
        sh[0] = C;
        return 1;
    }
    if (strncmp(name, "h.", 2) != 0)
        return 0;
    char *end;
    errno = 0;
    long l = strtol(name + 2, &end, 10);
    if (end == name + 2 || *end != '.' || l < 0 || l >= c->n_layer || (name[2] == '0' && end != name + 3))
        return 0;
    const char *s = end + 1;
    static const struct { const char *n; int d0, d1; } tab[] = {
        {"ln_1.weight", 1, 0},        {"ln_1.bias", 1, 0},        {"attn.c_attn.weight", 1, 3},
        {"attn.c_attn.bias", 3, 0},   {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0},
        {"ln_2.weight", 1, 0},        {"ln_2.bias", 1, 0},        {"mlp.c_fc.weight", 1, 4},
        {"mlp.c_fc.bias", 4, 0},      {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].n)) {
            sh[0] = tab[i].d0 * C;
            sh[1] = tab[i].d1 * C;
            *nd = tab[i].d1 ? 2 : 1;
            return 1;
        }
    return 0;
}

/* HF's causal-mask buffers in older GPT-2 files (h.N.attn.bias / masked_bias). */
static int hf_buffer(const align_model_params *c, const char *name)
{
    int nd;
    int64_t sh[2];
    char tmp[160];
    const char *dot = strstr(name, ".attn.");
    if (strncmp(name, "h.", 2) != 0 || !dot || (strcmp(dot, ".attn.bias") && strcmp(dot, ".attn.masked_bias")))
        return 0;
    /* the layer index must be one of ours */
    snprintf(tmp, sizeof tmp, "%.*s.ln_1.weight", (int)(dot - name), name);
    return body_shape(c, tmp, &nd, sh);
}

static int check_name(const char *name, void *ud)
{
    names_ctx *x = ud;
    int nd;
    int64_t sh[2];
    if (!strcmp(name, "score.weight") || (!strcmp(name, "score.bias") && x->scalar_file))
        return 0;
    if (!strcmp(name, "lm_head.weight")) /* tied to wte (checked below) */
        return 0;
    if (x->lora && align__lora_is_adapter_name(name)) /* checked by align__lora_from_ckpt */
        return 0;
    size_t pl = strlen(x->prefix);
    if (pl && strncmp(name, x->prefix, pl) != 0) {
        x->bad = name;
        return 1;
    }
    const char *b = name + pl;
    if (body_shape(x->cfg, b, &nd, sh) || hf_buffer(x->cfg, b))
        return 0;
    x->bad = name;
    return 1;
}

/* Every tensor the model will read: present, F32, of the configuration's
 * shape (align__st_open already checked that its bytes lie in the file). */
static int check_tensor(const align__st_file *f, const char *name, int nd, int64_t d0, int64_t d1)
{
    int64_t sh[2] = {d0, d1};
    return align__st_read(NULL, f, name, nd, sh, NULL);
}

static int validate(const align__st_file *f, const align_model_params *cfg, const char *prefix,
                    int scalar_file)
{
    names_ctx nc = {cfg, prefix, scalar_file, NULL, align__st_meta_get(f, "libalign.lora") != NULL};
    if (align__st_each(f, check_name, &nc))
        return align__error(NULL, ALIGN_EFORMAT, "%s: unexpected tensor '%s' for a %d-layer GPT-2 of width %d",
                            f->path, nc.bad, cfg->n_layer, cfg->n_embd);
    char nm[200];
    int64_t C = cfg->n_embd;
    int rc;
#define CHECK(suffix, nd, d0, d1)                                              \
    do {                                                                       \
        snprintf(nm, sizeof nm, "%s%s", prefix, suffix);                       \
        if ((rc = check_tensor(f, nm, nd, d0, d1)))                            \
            return rc;                                                         \
    } while (0)
    CHECK("wte.weight", 2, cfg->vocab_size, C);
    CHECK("wpe.weight", 2, cfg->max_seq_len, C);
    CHECK("ln_f.weight", 1, C, 0);
    CHECK("ln_f.bias", 1, C, 0);
    for (int l = 0; l < cfg->n_layer; l++) {
        static const char *const sfx[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                          "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
        for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
            char b[64];
            int nd;
            int64_t sh[2];
            snprintf(b, sizeof b, "h.%d.%s", l, sfx[i]);
            body_shape(cfg, b, &nd, sh);
            CHECK(b, nd, sh[0], sh[1]);
        }
    }
#undef CHECK
    if (scalar_file) {
        if ((rc = check_tensor(f, "score.weight", 2, 1, C)))
            return rc;
        if (align__st_has(f, "score.bias") && (rc = check_tensor(f, "score.bias", 1, 1, 0)))
            return rc;
    }
    if (align__st_has(f, "lm_head.weight") && (rc = check_tensor(f, "lm_head.weight", 2, cfg->vocab_size, C)))
        return rc;
    return ALIGN_OK;
}

/* ---- load ------------------------------------------------------------------- */

ALIGN_API int align_model_load(align_model **out, const char *path, const align_model_params *p)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_model_load: out is NULL");
    *out = NULL;
    if (!path)
        return align__error(NULL, ALIGN_EINVAL, "align_model_load: path is NULL");
    align_model_params user;
    align_model_default_params(&user, sizeof user);
    int rc = align__params_copy(&user, sizeof user, p, "align_model_load");
    if (rc)
        return rc;
    /* the Llama family (by config.json or the file's metadata) loads in llama_ckpt.c */
    int llama = align__llama_probe(path);
    if (llama < 0)
        return llama;
    if (llama)
        return align__llama_load(out, path, &user);
    char *st_path = NULL, *cfg_path = NULL;
    int folder = is_dir(path);
    if (folder) {
        st_path = path_join(path, "model.safetensors");
        cfg_path = path_join(path, "config.json");
        if (!st_path || !cfg_path) {
            rc = align__error(NULL, ALIGN_ENOMEM, "align_model_load: out of memory");
            goto free_paths;
        }
        if (!is_file(st_path)) {
            rc = align__error(NULL, ALIGN_ENOENT,
                              "%s: a folder without model.safetensors (a Hugging Face model folder holds "
                              "config.json and model.safetensors; a libalign checkpoint folder holds "
                              "model.safetensors)", path);
            goto free_paths;
        }
    }
    align__st_file f;
    if ((rc = align__st_open(NULL, folder ? st_path : path, &f)))
        goto free_paths;
    const char *prefix = align__st_has(&f, "transformer.wte.weight") ? "transformer." : "";
    align_model_params cfg = user;
    cfg.arch = ALIGN_ARCH_GPT2;
    cfg.n_layer = cfg.n_head = cfg.n_embd = cfg.vocab_size = cfg.max_seq_len = 0;
    int have_meta = align__st_meta_get(&f, "n_head") != NULL;
    if (have_meta &&
        ((rc = meta_int(&f, "n_head", &cfg.n_head)) || (rc = meta_int(&f, "n_layer", &cfg.n_layer)) ||
         (rc = meta_int(&f, "n_embd", &cfg.n_embd)) || (rc = meta_int(&f, "vocab_size", &cfg.vocab_size)) ||
         (rc = meta_int(&f, "n_positions", &cfg.max_seq_len))))
        goto done;
    /* config.json: in the folder, or beside a file that carries no configuration */
    if (!folder && !have_meta) {
        char *d = dir_of(path);
        cfg_path = d ? path_join(d, "config.json") : NULL;
        align__free(d);
        if (!cfg_path) {
            rc = align__error(NULL, ALIGN_ENOMEM, "align_model_load: out of memory");
            goto done;
        }
    }
    int seqcls = 0;
    if (cfg_path && is_file(cfg_path)) {
        align_model_params js = cfg;
        if ((rc = read_config_json(cfg_path, &js, &seqcls)))
            goto done;
        if (have_meta && (js.n_layer != cfg.n_layer || js.n_head != cfg.n_head || js.n_embd != cfg.n_embd ||
                          js.vocab_size != cfg.vocab_size || js.max_seq_len != cfg.max_seq_len)) {
            rc = align__error(NULL, ALIGN_EFORMAT,
                              "%s and %s disagree on the configuration (config.json: %d layers, %d heads, "
                              "width %d; file: %d layers, %d heads, width %d)",
                              cfg_path, f.path, js.n_layer, js.n_head, js.n_embd, cfg.n_layer, cfg.n_head,
                              cfg.n_embd);
            goto done;
        }
        cfg = js;
    } else if (!have_meta) {
        rc = align__error(NULL, ALIGN_EFORMAT,
                          "%s: no configuration: the file has no libalign metadata (n_head, n_layer, ...) and "
                          "there is no config.json beside it, so the number of attention heads is unknown "
                          "(put the model's Hugging Face config.json next to it, or load its folder)",
                          f.path);
        goto done;
    }
    /* settings config.json may leave out come from the shapes */
    int nd;
    int64_t sh[2];
    char nm[200];
    snprintf(nm, sizeof nm, "%swte.weight", prefix);
    if (!align__st_shape(&f, nm, &nd, sh) || nd != 2) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no 2-D wte.weight: not a GPT-2 checkpoint", f.path);
        goto done;
    }
    if (!cfg.vocab_size)
        cfg.vocab_size = (int32_t)ALIGN__MIN(sh[0], INT32_MAX);
    if (!cfg.n_embd)
        cfg.n_embd = (int32_t)ALIGN__MIN(sh[1], INT32_MAX);
    if (!cfg.max_seq_len) {
        snprintf(nm, sizeof nm, "%swpe.weight", prefix);
        if (align__st_shape(&f, nm, &nd, sh) && nd == 2)
            cfg.max_seq_len = (int32_t)ALIGN__MIN(sh[0], INT32_MAX);
    }
    if (!cfg.n_layer)
        for (;;) {
            snprintf(nm, sizeof nm, "%sh.%d.ln_1.weight", prefix, cfg.n_layer);
            if (!align__st_has(&f, nm) || cfg.n_layer >= 1024)
                break;
            cfg.n_layer++;
        }
    int scalar_file = align__st_has(&f, "score.weight");
    if (seqcls && !scalar_file) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: config.json says " HF_SEQCLS " but the file has no score.weight",
                          f.path);
        goto done;
    }
    if (scalar_file)
        cfg.flags |= ALIGN_MODEL_SCALAR_HEAD;
    if ((rc = align__model_check_config(&cfg, NULL))) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: the configuration is invalid: %s", f.path, align_last_errmsg());
        goto done;
    }
    /* every name, dtype, shape and byte range, before any allocation */
    if ((rc = validate(&f, &cfg, prefix, scalar_file)))
        goto done;
    float score_bias = 0.0f, rbias = 0.0f, rscale = 1.0f;
    int has_sb, has_rb, has_rs;
    if ((rc = meta_float(&f, "libalign.score_bias", &score_bias, &has_sb)) ||
        (rc = meta_float(&f, "libalign.reward_bias", &rbias, &has_rb)) ||
        (rc = meta_float(&f, "libalign.reward_scale", &rscale, &has_rs)))
        goto done;
    if (cfg.n_threads > 0 && (rc = align_threads_set(cfg.n_threads)))
        goto done;
    align_model *m;
    if ((rc = align__model_alloc(&m, &cfg, 0, NULL)))
        goto done;
    /* every tensor is copied from the file below, except a head asked for by
     * flags that the file lacks: only then is there anything to initialise */
    if ((cfg.flags & ALIGN_MODEL_SCALAR_HEAD) && !scalar_file)
        align__model_init_weights(m);
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *t = &m->tensors[i];
        int score = !strncmp(t->name, "score.", 6);
        snprintf(nm, sizeof nm, "%s%s", score ? "" : prefix, t->name);
        if (score && !scalar_file)
            continue;
        if (score && !align__st_has(&f, nm)) { /* HF's head has no bias */
            m->params[t->offset] = has_sb ? score_bias : 0.0f;
            continue;
        }
        if ((rc = align__st_read(NULL, &f, nm, t->ndim, t->shape, m->params + t->offset))) {
            align_model_free(m);
            goto done;
        }
    }
    const char *lora_meta = align__st_meta_get(&f, "libalign.lora");
    if (lora_meta && (rc = align__lora_from_ckpt(m, lora_meta, &f))) {
        align_model_free(m);
        goto done;
    }
    if (has_rb || has_rs) {
        m->reward_norm.set = 1;
        m->reward_norm.bias = rbias;
        m->reward_norm.scale = rscale;
    }
    (void)align_blas_info();
    *out = m;
done:
    align__st_close(&f);
free_paths:
    align__free(st_path);
    align__free(cfg_path);
    return rc;
}
