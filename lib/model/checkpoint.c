/* checkpoint.c — align_model_save / align_model_load in safetensors with
 * Hugging Face GPT-2 tensor names and shapes (docs/model.md). Loading builds
 * a new model and hands it out only when every tensor checked out, so a bad
 * file never leaves anything half-made. */
#include "model/model_impl.h"
#include "model/safetensors.h"
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ALIGN_API int align_model_save(const align_model *m, const char *path)
{
    if (!m || !path)
        return align__error(NULL, ALIGN_EINVAL, "align_model_save: model or path is NULL");
    /* the message is not model state; a frozen model may be shared between
     * threads, so its detail goes only to align_last_errmsg */
    align__errbuf *eb = m->frozen ? NULL : (align__errbuf *)&m->err;
    align__st_tensor *t = align__malloc(sizeof *t * (size_t)m->n_tensors);
    if (!t)
        return align__error(eb, ALIGN_ENOMEM, "align_model_save: out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        t[i].name = m->tensors[i].name;
        t[i].data = m->params + m->tensors[i].offset;
        t[i].ndim = m->tensors[i].ndim;
        t[i].shape[0] = m->tensors[i].shape[0];
        t[i].shape[1] = m->tensors[i].shape[1];
    }
    char v[5][24];
    snprintf(v[0], sizeof v[0], "%d", m->cfg.n_layer);
    snprintf(v[1], sizeof v[1], "%d", m->cfg.n_head);
    snprintf(v[2], sizeof v[2], "%d", m->cfg.n_embd);
    snprintf(v[3], sizeof v[3], "%d", m->cfg.vocab_size);
    snprintf(v[4], sizeof v[4], "%d", m->cfg.max_seq_len);
    align__st_meta meta[] = {
        {"format", "pt"},           {"libalign.arch", "gpt2"}, {"n_layer", v[0]},
        {"n_head", v[1]},           {"n_embd", v[2]},          {"vocab_size", v[3]},
        {"n_positions", v[4]},
    };
    int rc = align__st_write(eb, path, t, m->n_tensors, meta, (int)(sizeof meta / sizeof meta[0]));
    align__free(t);
    return rc;
}

static int meta_int(const align__st_file *f, const char *key, int32_t *out, align__errbuf *eb)
{
    const char *s = align__st_meta_get(f, key);
    if (!s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > (1L << 30))
        return align__error(eb, ALIGN_EFORMAT, "%s: metadata %s = '%s' is not a positive integer",
                            f->path, key, s);
    *out = (int32_t)v;
    return 0;
}

typedef struct {
    const align_model *m;
    const char *prefix;
    const char *bad;
} names_ctx;

/* Every tensor in the file must be one we load, or a known HF buffer. */
static int check_name(const char *name, void *ud)
{
    names_ctx *c = ud;
    size_t pl = strlen(c->prefix);
    if (pl && strncmp(name, c->prefix, pl) == 0)
        name += pl;
    if (align__model_find_tensor(c->m, name))
        return 0;
    if (!strcmp(name, "lm_head.weight")) /* tied to wte */
        return 0;
    const char *dot = strrchr(name, '.');
    if (!strncmp(name, "h.", 2) && dot && (!strcmp(dot, ".bias") || !strcmp(dot, ".masked_bias")) &&
        strstr(name, ".attn.") && (strstr(name, ".attn.bias") || strstr(name, ".attn.masked_bias")))
        return 0; /* HF's causal-mask buffers in older GPT-2 files */
    c->bad = name;
    return 1;
}

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
    align__st_file f;
    if ((rc = align__st_open(NULL, path, &f)))
        return rc;
    const char *prefix = align__st_has(&f, "transformer.wte.weight") ? "transformer." : "";
    char nm[160];
    int nd;
    int64_t sh[2];
    align_model_params cfg = user;
    snprintf(nm, sizeof nm, "%swte.weight", prefix);
    if (!align__st_shape(&f, nm, &nd, sh) || nd != 2) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no 2-D wte.weight: not a GPT-2 checkpoint", path);
        goto done;
    }
    cfg.vocab_size = (int32_t)sh[0];
    cfg.n_embd = (int32_t)sh[1];
    snprintf(nm, sizeof nm, "%swpe.weight", prefix);
    if (!align__st_shape(&f, nm, &nd, sh) || nd != 2) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no 2-D wpe.weight: not a GPT-2 checkpoint", path);
        goto done;
    }
    cfg.max_seq_len = (int32_t)sh[0];
    cfg.n_layer = 0;
    for (;;) {
        snprintf(nm, sizeof nm, "%sh.%d.ln_1.weight", prefix, cfg.n_layer);
        if (!align__st_has(&f, nm))
            break;
        cfg.n_layer++;
    }
    /* Hub GPT-2 files carry no config; their heads are 64 wide. */
    cfg.n_head = cfg.n_embd % 64 == 0 ? cfg.n_embd / 64 : 1;
    if ((rc = meta_int(&f, "n_head", &cfg.n_head, NULL)) || (rc = meta_int(&f, "n_layer", &cfg.n_layer, NULL)) ||
        (rc = meta_int(&f, "n_embd", &cfg.n_embd, NULL)) || (rc = meta_int(&f, "vocab_size", &cfg.vocab_size, NULL)) ||
        (rc = meta_int(&f, "n_positions", &cfg.max_seq_len, NULL)))
        goto done;
    snprintf(nm, sizeof nm, "%sscore.weight", prefix);
    if (align__st_has(&f, nm))
        cfg.flags |= ALIGN_MODEL_SCALAR_HEAD;
    cfg.arch = ALIGN_ARCH_GPT2;
    if ((rc = align__model_check_config(&cfg, NULL))) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: configuration in the file is invalid: %s", path,
                          align_last_errmsg());
        goto done;
    }
    if (cfg.n_threads > 0 && (rc = align_threads_set(cfg.n_threads)))
        goto done;
    align_model *m;
    if ((rc = align__model_alloc(&m, &cfg, 0, NULL)))
        goto done;
    align__model_init_weights(m); /* a fresh scalar head keeps its init */
    names_ctx nc = {m, prefix, NULL};
    if (align__st_each(&f, check_name, &nc)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: unexpected tensor '%s' for a %d-layer GPT-2", path,
                          nc.bad, cfg.n_layer);
        align_model_free(m);
        goto done;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *t = &m->tensors[i];
        snprintf(nm, sizeof nm, "%s%s", prefix, t->name);
        if (!strncmp(t->name, "score.", 6) && !align__st_has(&f, nm)) {
            /* a head asked for by flags stays fresh; HF's score head has no bias (0) */
            snprintf(nm, sizeof nm, "%sscore.weight", prefix);
            if (!strcmp(t->name, "score.bias") && align__st_has(&f, nm))
                m->params[t->offset] = 0.0f;
            continue;
        }
        const float *src;
        if ((rc = align__st_get(NULL, &f, nm, t->ndim, t->shape, &src))) {
            align_model_free(m);
            goto done;
        }
        memcpy(m->params + t->offset, src, t->numel * sizeof(float));
    }
    (void)align_blas_info();
    *out = m;
done:
    align__st_close(&f);
    return rc;
}
