/*
 * generate.c — batched sampling with a KV cache (align_generate).
 *
 * All prompts are prefilled in one align__model_decode call (each with its
 * own length: no padding to the longest), then every unfinished sequence
 * advances one token per decode call (finished ones drop out of the batch),
 * one pass over the weights per step for the whole batch. The sampling of a
 * step runs in parallel across sequences, into buffers allocated once per
 * call. Sampling (docs/generate.md):
 *   - temperature 0: greedy (the lowest id among equal maxima);
 *   - otherwise softmax(logits / temperature), restricted to the top_k most
 *     likely tokens (top_k > 0; found by partial selection, then only those
 *     k sorted), then to the smallest set of most likely
 *     tokens whose renormalised probability reaches top_p (Holtzman et al.
 *     2019, "nucleus sampling"; top_p < 1), then one uniform draw;
 *   - sequence i draws from its own Philox stream (seed, stream i), one draw
 *     per token: its sample depends on its prompt, the seed and i only, not
 *     on the other prompts of the batch (up to floating-point rounding of
 *     batched products, which can in rare near-ties change a pick).
 * The log-probability reported for each token is log softmax(logits) at
 * temperature 1, before top-k/top-p: what a forward pass over prompt+response
 * gives, as RL objectives need.
 *
 * Only ids the tokenizer knows are sampled (a model's vocabulary may be padded
 * past the tokenizer's, as llm.c pads GPT-2's 50257 to 50304).
 *
 * Ending: at the end-of-text token (kept in tokens/log-probs, not in the
 * text: ALIGN_FINISH_EOT; ALIGN_GENERATE_IGNORE_EOT turns this off); when the text contains a stop string (the text is
 * cut where the stop string starts, the stop string itself removed; tokens
 * keep everything sampled, including the tokens that spelled it:
 * ALIGN_FINISH_STOP); after max_new_tokens or when the model's context is
 * full (ALIGN_FINISH_LENGTH).
 */
#include "core/core.h"
#include "data/template.h"
#include "model/model.h"
#include "nn/vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct gen_seq {
    char    *text;
    size_t   len, cap;
    int32_t *tokens;
    float   *logprobs;
    int32_t  n_tokens;
    int      finish;
    int      done;
} gen_seq;

struct align_generation {
    int32_t  n;
    gen_seq *seq;
};

static const align_generate_params gen_defaults = {
    .struct_size = sizeof(align_generate_params),
    .flags = 0,
    .max_new_tokens = 64,
    .temperature = 1.0f,
    .top_k = 0,
    .top_p = 1.0f,
    .seed = 1234,
    .stop = NULL,
    .n_stop = 0,
};

ALIGN_API int align_generate_default_params(align_generate_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &gen_defaults, sizeof gen_defaults,
                                  "align_generate_default_params");
}

/* ---- results ---------------------------------------------------------------- */

ALIGN_API void align_generation_free(align_generation *g)
{
    if (!g)
        return;
    for (int32_t i = 0; i < g->n; i++) {
        align__free(g->seq[i].text);
        align__free(g->seq[i].tokens);
        align__free(g->seq[i].logprobs);
    }
    align__free(g->seq);
    align__free(g);
}

ALIGN_API int32_t align_generation_count(const align_generation *g)
{
    return g ? g->n : 0;
}

ALIGN_API const char *align_generation_text(const align_generation *g, int32_t i, size_t *len_out)
{
    if (!g || i < 0 || i >= g->n) {
        if (len_out)
            *len_out = 0;
        return NULL;
    }
    if (len_out)
        *len_out = g->seq[i].len;
    return g->seq[i].text;
}

ALIGN_API const int32_t *align_generation_tokens(const align_generation *g, int32_t i, int32_t *n_out)
{
    if (!g || i < 0 || i >= g->n) {
        if (n_out)
            *n_out = 0;
        return NULL;
    }
    if (n_out)
        *n_out = g->seq[i].n_tokens;
    return g->seq[i].tokens;
}

ALIGN_API const float *align_generation_logprobs(const align_generation *g, int32_t i, int32_t *n_out)
{
    if (!g || i < 0 || i >= g->n) {
        if (n_out)
            *n_out = 0;
        return NULL;
    }
    if (n_out)
        *n_out = g->seq[i].n_tokens;
    return g->seq[i].logprobs;
}

ALIGN_API int align_generation_finish_reason(const align_generation *g, int32_t i)
{
    if (!g || i < 0 || i >= g->n)
        return align__error(NULL, ALIGN_EINVAL, "align_generation_finish_reason: index %d out of range",
                            (int)i);
    return g->seq[i].finish;
}

/* ---- sampling ------------------------------------------------------------------- */

typedef struct cand {
    float   w;    /* logit, then exp((logit - max) / temperature) */
    int32_t id;
} cand;

/* Descending by value, ascending id among equals: a total order, so the
 * result never depends on qsort's algorithm. */
static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->w > y->w)
        return -1;
    if (x->w < y->w)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Moves the k largest (by cand_cmp) of c[0..n) to the front (any order). */
static void select_top(cand *c, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_cmp(&c[i], &pivot) < 0)
                i++;
            while (cand_cmp(&c[j], &pivot) > 0)
                j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

/* log sum exp over x[0..n): float exponentials summed in double. With AVX2
 * + FMA the maximum in 8 lanes, the exponentials by vmath.h's exp and the
 * sum in 8 running double sums folded in a fixed order (a libm expf call
 * per logit was ~10% of a batch-8 decode step of the tiny model); the
 * result depends on the row alone. */
static double row_lse_plain(const float *x, int32_t n)
{
    float mx = x[0];
    for (int32_t v = 1; v < n; v++)
        mx = x[v] > mx ? x[v] : mx;
    double z = 0.0;
    for (int32_t v = 0; v < n; v++)
        z += (double)expf(x[v] - mx);
    return (double)mx + log(z);
}

/* The first index of the largest of x[0..n). */
static int32_t row_argmax_plain(const float *x, int32_t n)
{
    float mx = x[0];
    int32_t arg = 0;
    for (int32_t v = 1; v < n; v++)
        if (x[v] > mx) {
            mx = x[v];
            arg = v;
        }
    return arg;
}

#ifdef ALIGN__VMATH_X86
__attribute__((target("avx2,fma"))) static float row_max_avx2(const float *x, int32_t n)
{
    const int32_t full = n & ~7;
    float mx = x[0];
    if (full > 0) {
        __m256 mv = _mm256_loadu_ps(x);
        for (int32_t v = 8; v < full; v += 8)
            mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + v));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mv, 1), _mm256_castps256_ps128(mv));
        m4 = _mm_max_ps(m4, _mm_shuffle_ps(m4, m4, 0x4e));
        mx = fmaxf(_mm_cvtss_f32(m4), _mm_cvtss_f32(_mm_shuffle_ps(m4, m4, 0x55)));
    }
    for (int32_t v = full; v < n; v++)
        mx = x[v] > mx ? x[v] : mx;
    return mx;
}

__attribute__((target("avx2,fma"))) static double row_lse_avx2(const float *x, int32_t n)
{
    const float mx = row_max_avx2(x, n);
    const __m256 mxv = _mm256_set1_ps(mx);
    const int32_t full = n & ~7;
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int32_t v = 0; v < full; v += 8) {
        __m256 e = align__exp8(_mm256_sub_ps(_mm256_loadu_ps(x + v), mxv));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_extractf128_pd(a, 1), _mm256_castpd256_pd128(a));
    double z = _mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
    for (int32_t v = full; v < n; v++)
        z += (double)align__exp1(x[v] - mx);
    return (double)mx + log(z);
}

__attribute__((target("avx2,fma"))) static int32_t row_argmax_avx2(const float *x, int32_t n)
{
    const float mx = row_max_avx2(x, n);
    if (mx != mx) /* NaN: the plain scan's answer */
        return row_argmax_plain(x, n);
    const __m256 mxv = _mm256_set1_ps(mx);
    const int32_t full = n & ~7;
    for (int32_t v = 0; v < full; v += 8) {
        int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + v), mxv, _CMP_EQ_OQ));
        if (bits)
            return v + __builtin_ctz((unsigned)bits);
    }
    for (int32_t v = full; v < n; v++)
        if (x[v] == mx)
            return v;
    return 0;
}
#endif

static double row_lse(const float *x, int32_t n)
{
#ifdef ALIGN__VMATH_X86
    if (align__have_avx2_fma())
        return row_lse_avx2(x, n);
#endif
    return row_lse_plain(x, n);
}

static int32_t row_argmax(const float *x, int32_t n)
{
#ifdef ALIGN__VMATH_X86
    if (align__have_avx2_fma())
        return row_argmax_avx2(x, n);
#endif
    return row_argmax_plain(x, n);
}

/* Picks the next token from one row of logits [Vm]. Only ids below V (the
 * tokenizer's vocabulary; a model's vocabulary may be padded beyond it) and,
 * when ok is not NULL, with ok[id] (ids the tokenizer can decode: n_ok of
 * them) are sampled; the others' logits are overwritten with -inf.
 * *logprob_out is the chosen token's log-probability at temperature 1 over
 * all Vm logits, as a forward pass computes it. */
static int32_t sample_token(float *logits, int32_t Vm, int32_t V, const uint8_t *ok, int32_t n_ok,
                            const align_generate_params *p, align__rng *rng, cand *scratch, float *logprob_out)
{
    const double lse = row_lse(logits, Vm); /* float exponentials, summed in double */
    if (ok)
        for (int32_t v = 0; v < V; v++)
            if (!ok[v])
                logits[v] = -INFINITY;
    const int32_t arg = row_argmax(logits, V);
    const float mx = logits[arg];

    int32_t tok = arg;
    if (p->temperature > 0.0f) {
        const double invT = 1.0 / (double)p->temperature;
        const int use_k = p->top_k > 0 && p->top_k < n_ok;
        const int use_p = p->top_p < 1.0f;
        const double u = (double)align__rng_uniform(rng);
        if (!use_k && !use_p) {
            /* Plain temperature: walk the vocabulary in id order. */
            double zt = 0.0;
            for (int32_t v = 0; v < V; v++)
                zt += exp(((double)logits[v] - (double)mx) * invT);
            double target = u * zt, acc = 0.0;
            tok = -1;
            int32_t last = arg; /* the last token with mass, if rounding runs past the end */
            for (int32_t v = 0; v < V; v++) {
                double wv = exp(((double)logits[v] - (double)mx) * invT);
                if (wv > 0.0)
                    last = v;
                acc += wv;
                if (acc > target) {
                    tok = v;
                    break;
                }
            }
            if (tok < 0)
                tok = last;
        } else {
            int32_t n = 0;
            if (use_k) {
                for (int32_t v = 0; v < V; v++) {
                    scratch[v].w = logits[v];
                    scratch[v].id = v;
                }
                n = V;
                select_top(scratch, n, p->top_k);
                n = p->top_k;
            } else {
                /* Only top-p: a token with probability below (1 - top_p) / V
                 * can never be in the nucleus (all tokens at most as likely
                 * as it sum to less than 1 - top_p), so drop those before
                 * sorting. Since the partition function is >= 1 relative to
                 * the maximum, the logit bound below keeps a superset. */
                double cut = (double)mx + (double)p->temperature * log((1.0 - (double)p->top_p) / (double)V);
                for (int32_t v = 0; v < V; v++)
                    if ((double)logits[v] >= cut) {
                        scratch[n].w = logits[v];
                        scratch[n].id = v;
                        n++;
                    }
            }
            qsort(scratch, (size_t)n, sizeof *scratch, cand_cmp);
            double zc = 0.0;
            for (int32_t i = 0; i < n; i++) {
                scratch[i].w = (float)exp(((double)scratch[i].w - (double)mx) * invT);
                zc += scratch[i].w;
            }
            if (use_p) {
                /* Normaliser: the candidates after top-k, or the whole
                 * vocabulary when top-k is off. */
                double znorm = zc;
                if (!use_k) {
                    znorm = 0.0;
                    for (int32_t v = 0; v < V; v++)
                        znorm += exp(((double)logits[v] - (double)mx) * invT);
                }
                double acc = 0.0;
                int32_t keep = n;
                for (int32_t i = 0; i < n; i++) {
                    acc += scratch[i].w;
                    if (acc / znorm >= (double)p->top_p) {
                        keep = i + 1;
                        break;
                    }
                }
                n = keep;
                zc = 0.0;
                for (int32_t i = 0; i < n; i++)
                    zc += scratch[i].w;
            }
            double target = u * zc, acc = 0.0;
            tok = scratch[n - 1].id;
            for (int32_t i = 0; i < n; i++) {
                acc += scratch[i].w;
                if (acc > target) {
                    tok = scratch[i].id;
                    break;
                }
            }
        }
    }
    *logprob_out = (float)((double)logits[tok] - lse);
    return tok;
}

/* ---- text --------------------------------------------------------------------------- */

static int text_append(gen_seq *s, const char *b, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *t = align__realloc(s->text, cap);
        if (!t)
            return ALIGN_ENOMEM;
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, b, n);
    s->len += n;
    s->text[s->len] = '\0';
    return ALIGN_OK;
}

/* Looks for a stop string that ends in the bytes added after `old_len`.
 * Returns its start, or (size_t)-1. */
static size_t find_stop(const gen_seq *s, size_t old_len, char **stop, const size_t *stop_len, int32_t n_stop)
{
    size_t best = (size_t)-1;
    for (int32_t k = 0; k < n_stop; k++) {
        size_t sl = stop_len[k];
        if (sl > s->len)
            continue;
        size_t from = old_len >= sl - 1 ? old_len - (sl - 1) : 0;
        for (size_t i = from; i + sl <= s->len; i++) {
            if (memcmp(s->text + i, stop[k], sl) == 0) {
                if (i < best)
                    best = i;
                break;
            }
        }
    }
    return best;
}

/* ---- align_generate -------------------------------------------------------------------- */

typedef struct gen_work {
    int32_t *prompt_tokens; /* [n][max_plen] */
    int32_t *plen;          /* [n] */
    int32_t *next;          /* [n] one token per sequence */
    int32_t *n_new;         /* [n] */
    float   *logits;        /* [n][V] */
    cand    *scratch;       /* [chunks][V] */
    int32_t *tok;           /* [n] this step's samples */
    float   *lp;            /* [n] their log-probabilities */
    char   **stop;          /* copies */
    size_t  *stop_len;
    int32_t  n_stop;
    char    *tokbuf;
    size_t   tokcap;
    align__kv_cache *kv;
} gen_work;

static void work_free(gen_work *w)
{
    align__free(w->prompt_tokens);
    align__free(w->plen);
    align__free(w->next);
    align__free(w->n_new);
    align__free(w->logits);
    align__free(w->scratch);
    align__free(w->tok);
    align__free(w->lp);
    for (int32_t k = 0; k < w->n_stop; k++)
        align__free(w->stop[k]);
    align__free(w->stop);
    align__free(w->stop_len);
    align__free(w->tokbuf);
    align__kv_free(w->kv);
}

/* Appends the text of one token to s (growing the scratch buffer if needed). */
static int append_token_text(gen_work *w, const align_tokenizer *t, gen_seq *s, int32_t tok, align__errbuf *eb)
{
    for (;;) {
        size_t len = 0;
        uint64_t mark = align__error_mark();
        int rc = align_detokenize(t, &tok, 1, w->tokbuf, w->tokcap, &len);
        if (rc == ALIGN_OK)
            return text_append(s, w->tokbuf, len) == ALIGN_OK ? ALIGN_OK
                                                               : align__error(eb, ALIGN_ENOMEM, "out of memory");
        if (rc != ALIGN_ERANGE || len + 1 <= w->tokcap)
            return align__error(eb, rc < 0 ? rc : ALIGN_EINTERNAL, "generate: cannot decode token %d: %s",
                                (int)tok, align_last_errmsg());
        align__error_recovered(mark); /* ERANGE answered by a larger buffer: not a failure */
        char *b = align__realloc(w->tokbuf, len + 1);
        if (!b)
            return align__error(eb, ALIGN_ENOMEM, "out of memory");
        w->tokbuf = b;
        w->tokcap = len + 1;
    }
}

/* ---- prompts ------------------------------------------------------------------------ */

/* The prompts of one call: text (align_generate), token ids
 * (align_generate_tokens) or conversations (align_generate_chat). */
typedef struct gen_prompts {
    const char *fn;                   /* the public function, for messages */
    const char *what;                 /* its prompt argument's name */
    const char *const *text;
    const int32_t *ids, *lengths;
    const align_chat_template *tmpl;
    const char *const *roles, *const *contents;
    const int32_t *n_messages;
    uint64_t stream0;                 /* sequence i samples from stream stream0 + i */
} gen_prompts;

/* Checks the prompt arguments that need no tokenizer. */
static int check_prompts(const gen_prompts *pr, int32_t n, align__errbuf *eb)
{
    if (pr->text) {
        for (int32_t i = 0; i < n; i++)
            if (!pr->text[i])
                return align__error(eb, ALIGN_EINVAL, "%s: prompts[%d] is NULL", pr->fn, (int)i);
    } else if (pr->lengths) {
        int64_t total = 0;
        for (int32_t i = 0; i < n; i++) {
            if (pr->lengths[i] < 0)
                return align__error(eb, ALIGN_EINVAL, "%s: lengths[%d] is %d (>= 0)", pr->fn, (int)i,
                                    (int)pr->lengths[i]);
            total += pr->lengths[i];
        }
        if (total > 0 && !pr->ids)
            return align__error(eb, ALIGN_EINVAL, "%s: tokens is NULL", pr->fn);
    } else {
        for (int32_t i = 0; i < n; i++)
            if (pr->n_messages[i] < 1)
                return align__error(eb, ALIGN_EINVAL, "%s: conversation %d has %d messages (>= 1)", pr->fn, (int)i,
                                    (int)pr->n_messages[i]);
    }
    return ALIGN_OK;
}

/* Encodes the n prompts into rows [n][*max_plen] (*rows_out, owned by the
 * caller) and plen [n]. Text prompts are tokenized (with special tokens
 * under ALIGN_GENERATE_SPECIAL), conversations rendered by the chat
 * template with the generation prompt. An empty prompt starts from
 * end-of-text. */
static int encode_prompts(const align_tokenizer *t, const gen_prompts *pr, int32_t n, uint32_t flags,
                          int32_t max_seq_len, int32_t tv, int32_t eot, int32_t **rows_out, int32_t *plen,
                          int32_t *max_plen_out, align__errbuf *eb)
{
    *rows_out = NULL;
    align__tokbuf buf = { 0 };
    align__template tp;
    memset(&tp, 0, sizeof tp);
    int64_t *off = align__calloc((size_t)n + 1, sizeof *off);
    int rc = off ? ALIGN_OK : align__error(eb, ALIGN_ENOMEM, "out of memory");
    if (!rc && pr->n_messages)
        rc = align__template_init_public(&tp, t, pr->tmpl, eb);
    const uint32_t tflags = (flags & ALIGN_GENERATE_SPECIAL) ? ALIGN_TOKENIZE_SPECIAL : 0;
    int64_t msg = 0;
    for (int32_t i = 0; i < n && !rc; i++) {
        off[i] = buf.n;
        if (pr->text) {
            const size_t len = strlen(pr->text[i]);
            size_t np = 0;
            rc = align_tokenize(t, pr->text[i], len, tflags, NULL, 0, &np);
            if (rc == ALIGN_ERANGE || rc == ALIGN_OK)
                rc = align__tokbuf_reserve(&buf, (int64_t)np, eb);
            else
                rc = align__error(eb, rc, "%s: prompt %d: %s", pr->fn, (int)i, align_last_errmsg());
            if (!rc && np > 0 && (rc = align_tokenize(t, pr->text[i], len, tflags, buf.ids + buf.n, np, &np)) < 0)
                rc = align__error(eb, rc, "%s: prompt %d: %s", pr->fn, (int)i, align_last_errmsg());
            if (!rc)
                buf.n += (int64_t)np;
        } else if (pr->lengths) {
            const int32_t *src = pr->lengths[i] > 0 ? pr->ids + off[i] : NULL;
            rc = align__tokbuf_reserve(&buf, pr->lengths[i], eb);
            for (int32_t k = 0; k < pr->lengths[i] && !rc; k++) {
                if (src[k] < 0 || src[k] >= tv)
                    rc = align__error(eb, ALIGN_EINVAL, "%s: prompt %d token %d is id %d, outside the tokenizer's "
                                      "vocabulary (%d)", pr->fn, (int)i, (int)k, (int)src[k], (int)tv);
                else
                    buf.ids[buf.n++] = src[k];
            }
        } else {
            rc = align__template_encode_chat(&tp, &buf, pr->roles + msg, pr->contents + msg, pr->n_messages[i],
                                             ALIGN__TEMPLATE_GEN_PROMPT, eb);
            if (rc)
                rc = align__error(eb, rc, "%s: conversation %d: %s", pr->fn, (int)i, align__errmsg(eb));
            msg += pr->n_messages[i];
        }
    }
    int32_t max_plen = 1;
    for (int32_t i = 0; i < n && !rc; i++) {
        off[i + 1] = i + 1 < n ? off[i + 1] : buf.n;
        const int64_t np = off[i + 1] - off[i];
        if (np == 0 && eot < 0)
            rc = align__error(eb, ALIGN_EINVAL, "%s: prompt %d is empty and the tokenizer has no end-of-text token "
                              "to start from", pr->fn, (int)i);
        else if (np >= max_seq_len)
            rc = align__error(eb, ALIGN_EINVAL, "%s: prompt %d has %lld tokens; the model's context is %d", pr->fn,
                              (int)i, (long long)np, (int)max_seq_len);
        else
            plen[i] = np ? (int32_t)np : 1;
        if (!rc)
            max_plen = ALIGN__MAX(max_plen, plen[i]);
    }
    int32_t *rows = rc ? NULL : align__calloc((size_t)n * (size_t)max_plen, sizeof(int32_t));
    if (!rc && !rows)
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
    for (int32_t i = 0; i < n && !rc; i++) {
        int32_t *row = rows + (size_t)i * max_plen;
        const int64_t np = off[i + 1] - off[i];
        if (np == 0)
            row[0] = eot;
        else
            memcpy(row, buf.ids + off[i], (size_t)np * sizeof *row);
    }
    align__template_free(&tp);
    align__tokbuf_free(&buf);
    align__free(off);
    if (rc) {
        align__free(rows);
        return rc;
    }
    *rows_out = rows;
    *max_plen_out = max_plen;
    return ALIGN_OK;
}

/* Which ids below tv the tokenizer can decode: NULL when all can (the
 * common case), else a flag per id and *n_ok. A tokenizer.json may leave
 * holes in its ids. */
static int decodable_ids(const align_tokenizer *t, int32_t tv, uint8_t **ok_out, int32_t *n_ok)
{
    *ok_out = NULL;
    *n_ok = tv;
    uint8_t *ok = NULL;
    char buf[256];
    for (int32_t v = 0; v < tv; v++) {
        size_t len = 0;
        uint64_t mark = align__error_mark();
        int rc = align_detokenize(t, &v, 1, buf, sizeof buf, &len);
        align__error_recovered(mark); /* an undecodable id is an answer here, not a failure */
        if (rc == ALIGN_OK || rc == ALIGN_ERANGE)
            continue;
        if (!ok) {
            ok = align__malloc((size_t)tv);
            if (!ok)
                return ALIGN_ENOMEM;
            memset(ok, 1, (size_t)tv);
        }
        ok[v] = 0;
        (*n_ok)--;
    }
    *ok_out = ok;
    return ALIGN_OK;
}

/* One sampling step over the sequences [b, e): each sequence draws from its
 * own stream and logits row, so the picks do not depend on how the pool
 * splits the batch; chunk c uses scratch row c. */
typedef struct sample_ctx {
    gen_work *w;
    const gen_seq *seq;
    const uint8_t *ok;
    int32_t V, tv, n_ok;
    const align_generate_params *p;
    align__rng *rngs;
} sample_ctx;

static void sample_rows(void *vctx, int64_t b, int64_t e, int chunk)
{
    sample_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        if (c->seq[i].done)
            continue;
        c->w->tok[i] = sample_token(c->w->logits + (size_t)i * (size_t)c->V, c->V, c->tv, c->ok, c->n_ok, c->p,
                                    &c->rngs[i], c->w->scratch + (size_t)chunk * (size_t)c->V, &c->w->lp[i]);
    }
}

static int generate(align_model *m, const align_tokenizer *t, const gen_prompts *pr, int32_t n,
                    const align_generate_params *p, align_generation **out)
{
    if (out)
        *out = NULL;
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "%s: model is NULL", pr->fn);
    align__errbuf *eb = align__model_err(m);
    align__error_clear(eb);
    const int have = pr->text || pr->lengths || pr->n_messages;
    if (!t || !have || !out)
        return align__error(eb, ALIGN_EINVAL, "%s: %s is NULL", pr->fn, !t ? "tokenizer" : !have ? pr->what : "out");
    if (n < 1)
        return align__error(eb, ALIGN_EINVAL, "%s: n is %d (>= 1)", pr->fn, (int)n);
    int rc = check_prompts(pr, n, eb);
    if (rc)
        return rc;
    align_generate_params prm = gen_defaults;
    rc = align__params_copy(&prm, sizeof prm, p, "align_generate_params");
    if (rc)
        return align__error(eb, rc, "%s", align_last_errmsg());
    const uint32_t known = ALIGN_GENERATE_IGNORE_EOT | ALIGN_GENERATE_SPECIAL;
    if (prm.flags & ~known)
        return align__error(eb, ALIGN_EINVAL, "align_generate_params.flags has unknown bits 0x%x",
                            (unsigned)(prm.flags & ~known));
    if (prm.max_new_tokens < 0)
        return align__error(eb, ALIGN_EINVAL, "align_generate_params.max_new_tokens is %d (>= 0)",
                            (int)prm.max_new_tokens);
    if (!(prm.temperature >= 0.0f) || !isfinite(prm.temperature))
        return align__error(eb, ALIGN_EINVAL, "align_generate_params.temperature is %g (>= 0)",
                            (double)prm.temperature);
    if (prm.top_k < 0)
        return align__error(eb, ALIGN_EINVAL, "align_generate_params.top_k is %d (>= 0)", (int)prm.top_k);
    if (!(prm.top_p > 0.0f && prm.top_p <= 1.0f))
        return align__error(eb, ALIGN_EINVAL, "align_generate_params.top_p is %g (in (0, 1])", (double)prm.top_p);
    if (prm.n_stop < 0 || (prm.n_stop > 0 && !prm.stop))
        return align__error(eb, ALIGN_EINVAL, "align_generate_params: n_stop is %d with stop %s",
                            (int)prm.n_stop, prm.stop ? "set" : "NULL");
    for (int32_t k = 0; k < prm.n_stop; k++)
        if (!prm.stop[k] || !prm.stop[k][0])
            return align__error(eb, ALIGN_EINVAL, "align_generate_params.stop[%d] is NULL or empty", (int)k);

    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    if ((rc = align_model_config(m, &cfg)) < 0)
        return rc;
    const int32_t V = cfg.vocab_size;
    const int32_t tv = align_tokenizer_vocab_size(t);
    if (tv <= 0 || tv > V)
        return align__error(eb, ALIGN_EINVAL, "%s: the tokenizer's vocabulary (%d) does not fit the model's (%d)",
                            pr->fn, (int)tv, (int)V);
    const int32_t eot = align_tokenizer_eot(t);

    gen_work w;
    memset(&w, 0, sizeof w);
    uint8_t *ok = NULL; /* ids the tokenizer can decode (NULL: all) */
    align_generation *g = align__calloc(1, sizeof *g);
    if (!g)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    g->seq = align__calloc((size_t)n, sizeof *g->seq);
    w.plen = align__calloc((size_t)n, sizeof(int32_t));
    w.next = align__calloc((size_t)n, sizeof(int32_t));
    w.n_new = align__calloc((size_t)n, sizeof(int32_t));
    w.tokcap = 256;
    w.tokbuf = align__malloc(w.tokcap);
    if (!g->seq || !w.plen || !w.next || !w.n_new || !w.tokbuf) {
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
        goto fail;
    }
    g->n = n;
    if (prm.n_stop > 0) {
        w.stop = align__calloc((size_t)prm.n_stop, sizeof(char *));
        w.stop_len = align__calloc((size_t)prm.n_stop, sizeof(size_t));
        if (!w.stop || !w.stop_len) {
            rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
            goto fail;
        }
        for (int32_t k = 0; k < prm.n_stop; k++) {
            w.stop[k] = align__strdup(prm.stop[k]);
            if (!w.stop[k]) {
                rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
                goto fail;
            }
            w.n_stop = k + 1;
            w.stop_len[k] = strlen(w.stop[k]);
        }
    }
    prm.stop = NULL;

    /* Encode the prompts (an empty prompt starts from end-of-text). */
    int32_t max_plen = 1;
    rc = encode_prompts(t, pr, n, prm.flags, cfg.max_seq_len, tv, eot, &w.prompt_tokens, w.plen, &max_plen, eb);
    if (rc)
        goto fail;
    int32_t n_ok = tv;
    if (decodable_ids(t, tv, &ok, &n_ok)) {
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
        goto fail;
    }
    if (n_ok == 0) {
        rc = align__error(eb, ALIGN_EINVAL, "%s: the tokenizer can decode no id", pr->fn);
        goto fail;
    }

    const int32_t max_new = prm.max_new_tokens;
    for (int32_t i = 0; i < n; i++) {
        gen_seq *s = &g->seq[i];
        int32_t room = ALIGN__MIN(max_new, cfg.max_seq_len - w.plen[i]);
        s->tokens = align__malloc((size_t)ALIGN__MAX(room, 1) * sizeof(int32_t));
        s->logprobs = align__malloc((size_t)ALIGN__MAX(room, 1) * sizeof(float));
        if (!s->tokens || !s->logprobs || text_append(s, "", 0) != ALIGN_OK) {
            rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
            goto fail;
        }
        s->finish = ALIGN_FINISH_LENGTH;
        s->done = room <= 0;
    }
    if (max_new == 0) {
        align__free(ok);
        work_free(&w);
        *out = g;
        return ALIGN_OK;
    }

    const int32_t cache_len = (int32_t)ALIGN__MIN((int64_t)cfg.max_seq_len, (int64_t)max_plen + max_new);
    w.logits = align__malloc((size_t)n * (size_t)V * sizeof(float));
    const int sample_chunks = align__threads(); /* scratch rows: the pool's chunks now */
    w.scratch = align__malloc((size_t)sample_chunks * (size_t)V * sizeof(cand));
    w.tok = align__calloc((size_t)n, sizeof(int32_t));
    w.lp = align__calloc((size_t)n, sizeof(float));
    if (!w.logits || !w.scratch || !w.tok || !w.lp) {
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory for %d x %d logits", (int)n, (int)V);
        goto fail;
    }
    rc = align__kv_create(&w.kv, m, n, cache_len);
    if (rc < 0) {
        rc = align__error(eb, rc, "align_generate: %s", align_last_errmsg());
        goto fail;
    }
    for (int32_t i = 0; i < n; i++)
        w.n_new[i] = w.plen[i];
    rc = align__model_decode(m, w.kv, w.prompt_tokens, max_plen, w.n_new, w.logits);
    if (rc < 0)
        goto fail; /* the model reported into eb */

    align__rng *rngs = align__malloc((size_t)n * sizeof *rngs);
    if (!rngs) {
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++)
        align__rng_init(&rngs[i], prm.seed, pr->stream0 + (uint64_t)i);

    for (;;) {
        int32_t active = 0;
        /* sample every unfinished sequence in parallel (serially if another
         * thread changed the thread count since the scratch was sized) */
        sample_ctx sc = { &w, g->seq, ok, V, tv, n_ok, &prm, rngs };
        if (n > 1 && align__threads() <= sample_chunks)
            align__parallel_for(n, sample_rows, &sc);
        else
            sample_rows(&sc, 0, n, 0);
        for (int32_t i = 0; i < n; i++) {
            gen_seq *s = &g->seq[i];
            w.n_new[i] = 0;
            if (s->done)
                continue;
            const float lp = w.lp[i];
            const int32_t tok = w.tok[i];
            s->tokens[s->n_tokens] = tok;
            s->logprobs[s->n_tokens] = lp;
            s->n_tokens++;
            size_t old = s->len;
            if (tok == eot) {
                if (!(prm.flags & ALIGN_GENERATE_IGNORE_EOT)) {
                    s->finish = ALIGN_FINISH_EOT;
                    s->done = 1;
                    continue;
                }
            } else if ((rc = append_token_text(&w, t, s, tok, eb)) < 0) {
                align__free(rngs);
                goto fail;
            }
            if (w.n_stop > 0) {
                size_t at = find_stop(s, old, w.stop, w.stop_len, w.n_stop);
                if (at != (size_t)-1) {
                    s->len = at;
                    s->text[at] = '\0';
                    s->finish = ALIGN_FINISH_STOP;
                    s->done = 1;
                    continue;
                }
            }
            if (s->n_tokens >= max_new || w.plen[i] + s->n_tokens >= cache_len) {
                s->finish = ALIGN_FINISH_LENGTH;
                s->done = 1;
                continue;
            }
            w.next[i] = tok;
            w.n_new[i] = 1;
            active++;
        }
        if (active == 0)
            break;
        rc = align__model_decode(m, w.kv, w.next, 1, w.n_new, w.logits);
        if (rc < 0) {
            align__free(rngs);
            goto fail;
        }
    }
    align__free(rngs);
    align__free(ok);
    work_free(&w);
    *out = g;
    return ALIGN_OK;

fail:
    align__free(ok);
    work_free(&w);
    align_generation_free(g);
    return rc;
}

ALIGN_API int align_generate(align_model *m, const align_tokenizer *t, const char *const *prompts, int32_t n,
                             const align_generate_params *p, align_generation **out)
{
    gen_prompts pr = { .fn = "align_generate", .what = "prompts", .text = prompts };
    return generate(m, t, &pr, n, p, out);
}

ALIGN_API int align_generate_tokens(align_model *m, const align_tokenizer *t, const int32_t *tokens,
                                    const int32_t *lengths, int32_t n, const align_generate_params *p,
                                    align_generation **out)
{
    gen_prompts pr = { .fn = "align_generate_tokens", .what = "lengths", .ids = tokens, .lengths = lengths };
    return generate(m, t, &pr, n, p, out);
}

/* lib/dist/dist.h: samples [stream0, stream0 + n) of a larger batch, drawn
 * as one align_generate_tokens call over the whole batch would draw them
 * (decoding is batch independent), for a rank's share of a rollout. */
int align__generate_tokens_from(align_model *m, const align_tokenizer *t, const int32_t *tokens,
                                const int32_t *lengths, int32_t n, const align_generate_params *p, uint64_t stream0,
                                align_generation **out)
{
    gen_prompts pr = { .fn = "align_generate_tokens", .what = "lengths", .ids = tokens, .lengths = lengths,
                       .stream0 = stream0 };
    return generate(m, t, &pr, n, p, out);
}

ALIGN_API int align_generate_chat(align_model *m, const align_tokenizer *t, const align_chat_template *tmpl,
                                  const char *const *roles, const char *const *contents, const int32_t *n_messages,
                                  int32_t n, const align_generate_params *p, align_generation **out)
{
    gen_prompts pr = { .fn = "align_generate_chat", .what = "n_messages", .tmpl = tmpl, .roles = roles,
                       .contents = contents, .n_messages = n_messages };
    return generate(m, t, &pr, n, p, out);
}
