/* reward_model.c — align_reward_model: the one scorer every RL algorithm
 * calls, over a scalar-head model (read at each sequence's last token) or a
 * host callback (docs/reward.md). */
#include "reward/reward_model.h"
#include "model/model_impl.h"

#include <math.h>
#include <string.h>

struct align_reward_model {
    align__errbuf err;
    /* model-backed */
    align_model *m;
    const align_tokenizer *t;
    align_reward_params p;
    align__reward_template tp;
    int32_t *prefix[2];
    /* callback-backed */
    align_score_fn fn;
    void *ud;
    int cb_norm_set;
    float cb_bias, cb_scale;
};

static const align_reward_params reward_defaults = {
    .struct_size = sizeof(align_reward_params),
    .flags = 0,
    .max_seq_len = 0,
    .batch_size = 16,
    .truncation = ALIGN_TRUNCATE_LEFT,
    .user_prefix = NULL,
    .assistant_prefix = NULL,
};

ALIGN_API int align_reward_default_params(align_reward_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &reward_defaults, sizeof reward_defaults,
                                  "align_reward_default_params");
}

/* ---- sequence building ------------------------------------------------------ */

static int append_text(align__errbuf *eb, const align_tokenizer *t, const char *text, int32_t **ids,
                       size_t *cap, size_t *n)
{
    size_t len = strlen(text);
    for (;;) {
        size_t got = 0;
        int rc = align_tokenize(t, text, len, 0, *ids ? *ids + *n : NULL, *ids ? *cap - *n : 0, &got);
        if (rc == ALIGN_OK) {
            *n += got;
            return ALIGN_OK;
        }
        if (rc != ALIGN_ERANGE)
            return align__error(eb, rc, "reward model: cannot tokenize: %s", align_last_errmsg());
        size_t want = *n + got + 64;
        int32_t *p = align__realloc(*ids, want * sizeof *p);
        if (!p)
            return align__error(eb, ALIGN_ENOMEM, "reward model: out of memory");
        *ids = p;
        *cap = want;
    }
}

static int append_ids(align__errbuf *eb, const int32_t *src, size_t k, int32_t **ids, size_t *cap, size_t *n)
{
    if (*n + k > *cap) {
        size_t want = (*n + k) * 2 + 64;
        int32_t *p = align__realloc(*ids, want * sizeof *p);
        if (!p)
            return align__error(eb, ALIGN_ENOMEM, "reward model: out of memory");
        *ids = p;
        *cap = want;
    }
    if (k)
        memcpy(*ids + *n, src, k * sizeof *src);
    *n += k;
    return ALIGN_OK;
}

int align__reward_build(align__errbuf *eb, const align_tokenizer *t, const align__reward_template *tp,
                        const char *prompt, const char *response, int32_t **ids, size_t *cap, size_t *n)
{
    int rc;
    if (tp->chat) {
        if ((rc = append_ids(eb, tp->user_prefix, tp->user_len, ids, cap, n)) ||
            (rc = append_text(eb, t, prompt, ids, cap, n)) || (rc = append_ids(eb, &tp->eot, 1, ids, cap, n)) ||
            (rc = append_ids(eb, tp->assistant_prefix, tp->assistant_len, ids, cap, n)))
            return rc;
    } else if ((rc = append_text(eb, t, prompt, ids, cap, n))) {
        return rc;
    }
    if ((rc = append_text(eb, t, response, ids, cap, n)))
        return rc;
    return append_ids(eb, &tp->eot, 1, ids, cap, n);
}

const align__reward_template *align__reward_model_template(const align_reward_model *rm)
{
    return rm && rm->m ? &rm->tp : NULL;
}

/* ---- lifecycle ------------------------------------------------------------- */

ALIGN_API int align_reward_model_from_model(align_reward_model **out, align_model *m,
                                            const align_tokenizer *t, const align_reward_params *p)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_model: out is NULL");
    *out = NULL;
    if (!m || !t)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_model: model or tokenizer is NULL");
    align_reward_params rp = reward_defaults;
    int rc = align__params_copy(&rp, sizeof rp, p, "align_reward_model_from_model");
    if (rc)
        return rc;
    if (!(m->cfg.flags & ALIGN_MODEL_SCALAR_HEAD))
        return align__error(NULL, ALIGN_EINVAL,
                            "align_reward_model_from_model: the model has no scalar head (create or load it "
                            "with ALIGN_MODEL_SCALAR_HEAD, or load a " "GPT2ForSequenceClassification file)");
    if (rp.flags & ~ALIGN_REWARD_CHAT)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_model: unknown flags 0x%x", rp.flags);
    if (rp.max_seq_len == 0)
        rp.max_seq_len = m->cfg.max_seq_len;
    if (rp.max_seq_len < 1 || rp.max_seq_len > m->cfg.max_seq_len)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_reward_model_from_model: max_seq_len %d is outside 1..%d (the model's)",
                            rp.max_seq_len, m->cfg.max_seq_len);
    if (rp.batch_size < 1)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_model: batch_size %d must be >= 1",
                            rp.batch_size);
    if (rp.truncation < ALIGN_TRUNCATE_RIGHT || rp.truncation > ALIGN_TRUNCATE_DROP)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_model: unknown truncation %d",
                            rp.truncation);
    int32_t eot = align_tokenizer_eot(t);
    if (eot < 0)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_model: the tokenizer has no end-of-text token");
    if (align_tokenizer_vocab_size(t) > m->cfg.vocab_size)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_reward_model_from_model: the tokenizer's %d ids do not fit the model's "
                            "vocabulary of %d", align_tokenizer_vocab_size(t), m->cfg.vocab_size);
    align_reward_model *rm = align__calloc(1, sizeof *rm);
    if (!rm)
        return align__error(NULL, ALIGN_ENOMEM, "align_reward_model_from_model: out of memory");
    rm->m = m;
    rm->t = t;
    rm->p = rp;
    rm->p.user_prefix = rm->p.assistant_prefix = NULL; /* copied as tokens below */
    rm->tp.chat = (rp.flags & ALIGN_REWARD_CHAT) != 0;
    rm->tp.eot = eot;
    const char *pre[2] = {rp.user_prefix ? rp.user_prefix : "<|user|>\n",
                          rp.assistant_prefix ? rp.assistant_prefix : "<|assistant|>\n"};
    size_t len[2] = {0, 0};
    for (int i = 0; i < 2 && !rc; i++) {
        size_t cap = 0;
        rc = append_text(NULL, t, pre[i], &rm->prefix[i], &cap, &len[i]);
    }
    if (rc) {
        align_reward_model_free(rm);
        return rc;
    }
    rm->tp.user_prefix = rm->prefix[0];
    rm->tp.user_len = len[0];
    rm->tp.assistant_prefix = rm->prefix[1];
    rm->tp.assistant_len = len[1];
    *out = rm;
    return ALIGN_OK;
}

ALIGN_API int align_reward_model_from_callback(align_reward_model **out, align_score_fn fn, void *user_data)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_callback: out is NULL");
    *out = NULL;
    if (!fn)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_callback: fn is NULL");
    align_reward_model *rm = align__calloc(1, sizeof *rm);
    if (!rm)
        return align__error(NULL, ALIGN_ENOMEM, "align_reward_model_from_callback: out of memory");
    rm->fn = fn;
    rm->ud = user_data;
    rm->cb_scale = 1.0f;
    *out = rm;
    return ALIGN_OK;
}

ALIGN_API void align_reward_model_free(align_reward_model *rm)
{
    if (!rm)
        return;
    align__free(rm->prefix[0]);
    align__free(rm->prefix[1]);
    align__free(rm);
}

ALIGN_API const char *align_reward_model_errmsg(const align_reward_model *rm)
{
    return rm ? align__errmsg(&rm->err) : "reward model is NULL";
}

/* ---- scoring ---------------------------------------------------------------- */

static int check_pairs(align_reward_model *rm, const char *what, const char *const *prompts,
                       const char *const *responses, int32_t n, const void *scores)
{
    if (n < 0)
        return align__error(&rm->err, ALIGN_EINVAL, "%s: n = %d is negative", what, n);
    if (n > 0 && (!prompts || !responses))
        return align__error(&rm->err, ALIGN_EINVAL, "%s: prompts or responses is NULL", what);
    if (n > 0 && !scores)
        return align__error(&rm->err, ALIGN_EINVAL, "%s: scores is NULL", what);
    for (int32_t i = 0; i < n; i++)
        if (!prompts[i] || !responses[i])
            return align__error(&rm->err, ALIGN_EINVAL, "%s: %s[%d] is NULL", what,
                                prompts[i] ? "responses" : "prompts", i);
    return ALIGN_OK;
}

static int score_callback(align_reward_model *rm, const char *const *prompts, const char *const *responses,
                          int32_t n, float *scores)
{
    for (int32_t i = 0; i < n; i++)
        scores[i] = NAN; /* a score the callback leaves unset is caught below */
    int rc = rm->fn(prompts, responses, n, scores, rm->ud);
    if (rc < 0)
        return align__error(&rm->err, ALIGN_ECALLBACK, "align_reward_model_score: the score callback returned %d",
                            rc);
    for (int32_t i = 0; i < n; i++)
        if (!isfinite(scores[i]))
            return align__error(&rm->err, ALIGN_ENONFINITE,
                                "align_reward_model_score: the score callback gave %s for pair %d%s",
                                isnan(scores[i]) ? "NaN" : "an infinite score", i,
                                isnan(scores[i]) ? " (or left it unset)" : "");
    return ALIGN_OK;
}

static int score_model(align_reward_model *rm, const char *const *prompts, const char *const *responses,
                       int32_t n, float *scores)
{
    const int32_t L = rm->p.max_seq_len, B = rm->p.batch_size;
    int32_t *all = NULL, *tokens = NULL, *lengths = NULL;
    size_t cap = 0, used = 0;
    int64_t *off = align__malloc((size_t)n * sizeof *off);
    int32_t *len = align__malloc((size_t)n * sizeof *len);
    float *scalar = NULL;
    int rc = off && len ? ALIGN_OK : align__error(&rm->err, ALIGN_ENOMEM, "align_reward_model_score: out of memory");
    /* every pair's tokens, truncated to max_seq_len */
    for (int32_t i = 0; i < n && !rc; i++) {
        size_t start = used;
        if ((rc = align__reward_build(&rm->err, rm->t, &rm->tp, prompts[i], responses[i], &all, &cap, &used)))
            break;
        size_t k = used - start;
        if (k > (size_t)L) {
            if (rm->p.truncation == ALIGN_TRUNCATE_DROP) {
                rc = align__error(&rm->err, ALIGN_ERANGE,
                                  "align_reward_model_score: pair %d is %zu tokens, more than max_seq_len %d "
                                  "(truncation is ALIGN_TRUNCATE_DROP)", i, k, L);
                break;
            }
            if (rm->p.truncation == ALIGN_TRUNCATE_LEFT)
                memmove(all + start, all + used - L, (size_t)L * sizeof *all);
            used = start + (size_t)L;
            k = (size_t)L;
        }
        off[i] = (int64_t)start;
        len[i] = (int32_t)k;
    }
    /* one forward pass per batch, padded to the batch's longest sequence */
    for (int32_t b0 = 0; b0 < n && !rc; b0 += B) {
        int32_t nb = ALIGN__MIN(B, n - b0), T = 1;
        for (int32_t j = 0; j < nb; j++)
            T = ALIGN__MAX(T, len[b0 + j]);
        if (!tokens) {
            tokens = align__malloc((size_t)ALIGN__MIN(B, n) * (size_t)L * sizeof *tokens);
            lengths = align__malloc((size_t)ALIGN__MIN(B, n) * sizeof *lengths);
            scalar = align__malloc((size_t)ALIGN__MIN(B, n) * (size_t)L * sizeof *scalar);
            if (!tokens || !lengths || !scalar) {
                rc = align__error(&rm->err, ALIGN_ENOMEM, "align_reward_model_score: out of memory");
                break;
            }
        }
        memset(tokens, 0, (size_t)nb * (size_t)T * sizeof *tokens);
        for (int32_t j = 0; j < nb; j++) {
            memcpy(tokens + (size_t)j * T, all + off[b0 + j], (size_t)len[b0 + j] * sizeof *tokens);
            lengths[j] = len[b0 + j];
        }
        rc = align_model_forward(rm->m, tokens, lengths, nb, T, NULL, scalar, NULL);
        if (rc) {
            rc = align__error(&rm->err, rc, "align_reward_model_score: %s", align_model_errmsg(rm->m));
            break;
        }
        /* the scalar at each sequence's last real token: its final end-of-turn */
        for (int32_t j = 0; j < nb; j++)
            scores[b0 + j] = scalar[(size_t)j * T + (size_t)(lengths[j] - 1)];
    }
    align__free(all);
    align__free(off);
    align__free(len);
    align__free(tokens);
    align__free(lengths);
    align__free(scalar);
    return rc;
}

int align__reward_score_raw(align_reward_model *rm, const char *const *prompts, const char *const *responses,
                            int32_t n, float *scores)
{
    if (n == 0)
        return ALIGN_OK;
    return rm->m ? score_model(rm, prompts, responses, n, scores)
                 : score_callback(rm, prompts, responses, n, scores);
}

static void get_norm(const align_reward_model *rm, int *set, float *bias, float *scale)
{
    if (rm->m) {
        *set = rm->m->reward_norm.set;
        *bias = rm->m->reward_norm.set ? rm->m->reward_norm.bias : 0.0f;
        *scale = rm->m->reward_norm.set ? rm->m->reward_norm.scale : 1.0f;
    } else {
        *set = rm->cb_norm_set;
        *bias = rm->cb_norm_set ? rm->cb_bias : 0.0f;
        *scale = rm->cb_norm_set ? rm->cb_scale : 1.0f;
    }
}

static void put_norm(align_reward_model *rm, float bias, float scale)
{
    int set = !(bias == 0.0f && scale == 1.0f); /* the identity: nothing to save */
    if (rm->m) {
        rm->m->reward_norm.set = set;
        rm->m->reward_norm.bias = set ? bias : 0.0f;
        rm->m->reward_norm.scale = set ? scale : 1.0f;
    } else {
        rm->cb_norm_set = set;
        rm->cb_bias = bias;
        rm->cb_scale = scale;
    }
}

ALIGN_API int align_reward_model_score(align_reward_model *rm, const char *const *prompts,
                                       const char *const *responses, int32_t n, float *scores)
{
    if (!rm)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_score: reward model is NULL");
    align__error_clear(&rm->err);
    int rc = check_pairs(rm, "align_reward_model_score", prompts, responses, n, scores);
    if (rc || (rc = align__reward_score_raw(rm, prompts, responses, n, scores)))
        return rc;
    int set;
    float bias, scale;
    get_norm(rm, &set, &bias, &scale);
    if (set)
        for (int32_t i = 0; i < n; i++)
            scores[i] = scale * scores[i] + bias;
    return ALIGN_OK;
}

ALIGN_API int align_reward_model_normalize(align_reward_model *rm, const char *const *prompts,
                                           const char *const *responses, int32_t n, uint32_t flags)
{
    if (!rm)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_normalize: reward model is NULL");
    align__error_clear(&rm->err);
    if (flags & ~ALIGN_REWARD_NORMALIZE_STD)
        return align__error(&rm->err, ALIGN_EINVAL, "align_reward_model_normalize: unknown flags 0x%x", flags);
    int std = (flags & ALIGN_REWARD_NORMALIZE_STD) != 0;
    if (n < (std ? 2 : 1))
        return align__error(&rm->err, ALIGN_EINVAL, "align_reward_model_normalize: needs at least %d pairs (got %d)",
                            std ? 2 : 1, n);
    float *raw = align__malloc((size_t)n * sizeof *raw);
    if (!raw)
        return align__error(&rm->err, ALIGN_ENOMEM, "align_reward_model_normalize: out of memory");
    int rc = check_pairs(rm, "align_reward_model_normalize", prompts, responses, n, raw);
    if (!rc)
        rc = align__reward_score_raw(rm, prompts, responses, n, raw);
    if (rc) {
        align__free(raw);
        return rc;
    }
    double mean = 0.0, var = 0.0;
    for (int32_t i = 0; i < n; i++)
        mean += raw[i];
    mean /= n;
    for (int32_t i = 0; i < n; i++)
        var += ((double)raw[i] - mean) * ((double)raw[i] - mean);
    var /= n;
    align__free(raw);
    int set;
    float bias, scale;
    get_norm(rm, &set, &bias, &scale);
    if (std) {
        if (!(var > 0.0))
            return align__error(&rm->err, ALIGN_EINVAL,
                                "align_reward_model_normalize: the %d reference pairs all score %g: no spread "
                                "to scale to unit deviation", n, mean);
        scale = (float)(1.0 / sqrt(var));
    }
    bias = (float)(-mean * (double)scale);
    if (!isfinite(scale) || !isfinite(bias))
        return align__error(&rm->err, ALIGN_ENONFINITE, "align_reward_model_normalize: non-finite normalisation");
    put_norm(rm, bias, scale);
    return ALIGN_OK;
}

ALIGN_API int align_reward_model_set_normalization(align_reward_model *rm, float bias, float scale)
{
    if (!rm)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_set_normalization: reward model is NULL");
    align__error_clear(&rm->err);
    if (!isfinite(bias) || !isfinite(scale) || scale == 0.0f)
        return align__error(&rm->err, ALIGN_EINVAL,
                            "align_reward_model_set_normalization: bias %g and scale %g must be finite, scale "
                            "non-zero", (double)bias, (double)scale);
    put_norm(rm, bias, scale);
    return ALIGN_OK;
}

ALIGN_API int align_reward_model_get_normalization(const align_reward_model *rm, float *bias, float *scale)
{
    if (!rm || !bias || !scale)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_get_normalization: NULL argument");
    int set;
    get_norm(rm, &set, bias, scale);
    return ALIGN_OK;
}
