/*
 * judge.c — a language model as judge: pairwise preferences, rankings and
 * scores read from its next-token probabilities (docs/judge.md).
 *
 * RL from AI feedback (Bai et al. 2022, "Constitutional AI", arXiv
 * 2212.08073; Lee et al. 2023, "RLAIF", arXiv 2309.00267): the judge is shown
 * a principle, the prompt and two responses, and the preference is the
 * probability it gives to answering "A" against "B", normalised over the two
 * answers:  pA = e^{lA} / (e^{lA} + e^{lB}) = σ(lA − lB), with lX the
 * log-probability of answer X's tokens after the rendered prompt. Lee et al.
 * (§2.1.2) average over both orders of the responses to cancel the judge's
 * position bias:  p(y1 ≻ y2) = ½·(pA(y1, y2) + pB(y2, y1)).
 *
 * Scores (the judge as reward model) use the same reading on a numeric scale:
 * each number's probability is that of its text followed by the end-of-turn
 * token (prefix-free, so "1" does not absorb "10"), normalised over the scale,
 * and the score is the expected value (Lee et al. §2.1 "direct RLAIF" uses a
 * 1–10 scale the same way).
 */
#include "feedback/judge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TEMPLATE \
    "Consider this principle: {principle}\n" \
    "\n" \
    "Prompt: {prompt}\n" \
    "\n" \
    "Response A: {a}\n" \
    "\n" \
    "Response B: {b}\n" \
    "\n" \
    "Following the principle, which response is better? Answer A or B.\n"

#define DEFAULT_SCORE_TEMPLATE \
    "Consider this principle: {principle}\n" \
    "\n" \
    "Prompt: {prompt}\n" \
    "\n" \
    "Response: {response}\n" \
    "\n" \
    "Following the principle, rate the response from {min} to {max}.\n"

#define DEFAULT_PRINCIPLE "Choose the response that is more helpful, honest and harmless."

struct align_judge {
    align__errbuf err;
    align_model *m;
    const align_tokenizer *t;
    uint32_t flags;
    char *tmpl, *score_tmpl, *name;
    char *ans[2];
    char **principles;
    int32_t n_principles;
    uint64_t seed;
    int32_t score_min, score_max;
    int32_t max_len, eot;
    /* answer token ids (with the end-of-turn when asked) */
    int32_t *ans_ids[2];
    size_t ans_n[2];
    /* ALIGN_JUDGE_CHAT: the chat template, prefixes owned */
    align_chat_template chat;
};

static const align_judge_params judge_defaults = {
    .struct_size = sizeof(align_judge_params),
    .seed = 1234,
    .score_min = 1,
    .score_max = 10,
};

ALIGN_API int align_judge_default_params(align_judge_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &judge_defaults, sizeof judge_defaults,
                                  "align_judge_default_params");
}

/* ---- templates ------------------------------------------------------------ */

typedef struct growbuf {
    char *s;
    size_t len, cap;
} growbuf;

static int gb_put(growbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = align__realloc(b->s, cap);
        if (!p)
            return ALIGN_ENOMEM;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
    return ALIGN_OK;
}

/* Renders tmpl, replacing {name} by the value of the same name in
 * names/values (n of them); "{{" and "}}" are literal braces. With out ==
 * NULL only checks: an unknown or unterminated placeholder is an error
 * described in why. used (may be NULL) gets a bit per name seen. */
static int render(const char *tmpl, const char *const *names, const char *const *values, int n,
                  growbuf *out, unsigned *used, char *why, size_t whycap)
{
    const char *s = tmpl;
    if (used)
        *used = 0;
    while (*s) {
        const char *brace = strpbrk(s, "{}");
        size_t lit = brace ? (size_t)(brace - s) : strlen(s);
        if (out && lit && gb_put(out, s, lit))
            return ALIGN_ENOMEM;
        if (!brace)
            break;
        s = brace;
        if (s[0] == s[1]) { /* "{{" or "}}" */
            if (out && gb_put(out, s, 1))
                return ALIGN_ENOMEM;
            s += 2;
            continue;
        }
        if (*s == '}') {
            snprintf(why, whycap, "a lone '}' at offset %zu (write '}}' for a brace)", (size_t)(s - tmpl));
            return ALIGN_EINVAL;
        }
        const char *end = strchr(s, '}');
        if (!end) {
            snprintf(why, whycap, "unterminated placeholder at offset %zu (write '{{' for a brace)",
                     (size_t)(s - tmpl));
            return ALIGN_EINVAL;
        }
        size_t nl = (size_t)(end - s - 1);
        int k = 0;
        while (k < n && !(strlen(names[k]) == nl && memcmp(names[k], s + 1, nl) == 0))
            k++;
        if (k == n) {
            snprintf(why, whycap, "unknown placeholder {%.*s}", (int)(nl < 40 ? nl : 40), s + 1);
            return ALIGN_EINVAL;
        }
        if (used)
            *used |= 1u << k;
        if (out && gb_put(out, values[k], strlen(values[k])))
            return ALIGN_ENOMEM;
        s = end + 1;
    }
    if (out && !out->s && gb_put(out, "", 0))
        return ALIGN_ENOMEM;
    return ALIGN_OK;
}

static const char *const pair_names[] = { "principle", "prompt", "a", "b" };
static const char *const score_names[] = { "principle", "prompt", "response", "min", "max" };

/* ---- principles -------------------------------------------------------------- */

static int add_principle(align_judge *j, const char *s, size_t n)
{
    char **p = align__realloc(j->principles, (size_t)(j->n_principles + 1) * sizeof *p);
    if (!p)
        return ALIGN_ENOMEM;
    j->principles = p;
    if (!(p[j->n_principles] = align__strndup(s, n)))
        return ALIGN_ENOMEM;
    j->n_principles++;
    return ALIGN_OK;
}

static int load_principles(align_judge *j, const char *path)
{
    char *data = NULL;
    size_t len = 0;
    int rc = align__read_file(&j->err, path, &data, &len);
    if (rc)
        return align__error(&j->err, rc, "principles file '%s': %s", path, align__errmsg(&j->err));
    const char *s = data, *end = data + len;
    while (s < end && !rc) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        const char *a = s, *b = e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        if (b > a && *a != '#')
            rc = add_principle(j, a, (size_t)(b - a));
        s = nl ? nl + 1 : end;
    }
    align__free(data);
    return rc ? align__error(&j->err, rc, "out of memory") : ALIGN_OK;
}

/* FNV-1a over a string, for keying a comparison's principle draw. */
static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    h ^= 0xff; /* separator: ("ab","c") differs from ("a","bc") */
    return h * 1099511628211ull;
}

/* The principle of a comparison: drawn from the Philox stream keyed by the
 * seed and a hash of (prompt, the responses as an unordered set), so the
 * same comparison gets the same principle in either order and in any call
 * sequence. */
static const char *pick_principle(const align_judge *j, const char *prompt, const char *a, const char *b)
{
    if (j->n_principles == 1)
        return j->principles[0];
    uint64_t h = hash_str(14695981039346656037ull, prompt);
    uint64_t ha = hash_str(h, a), hb = b ? hash_str(h, b) : 0;
    uint64_t lo = ha < hb ? ha : hb, hi = ha < hb ? hb : ha;
    uint64_t key = (lo * 0x9e3779b97f4a7c15ull) ^ (hi + 0x632be59bd9b4e019ull + (lo << 6) + (lo >> 2));
    align__rng r;
    align__rng_init(&r, j->seed, key);
    return j->principles[align__rng_below(&r, (uint32_t)j->n_principles)];
}

/* ---- lifetime ----------------------------------------------------------------- */

ALIGN_API void align_judge_free(align_judge *j)
{
    if (!j)
        return;
    align__free(j->tmpl);
    align__free(j->score_tmpl);
    align__free(j->name);
    for (int i = 0; i < 2; i++) {
        align__free(j->ans[i]);
        align__free(j->ans_ids[i]);
    }
    for (int32_t i = 0; i < j->n_principles; i++)
        align__free(j->principles[i]);
    align__free(j->principles);
    align__free((char *)j->chat.system_prefix);
    align__free((char *)j->chat.user_prefix);
    align__free((char *)j->chat.assistant_prefix);
    align__free(j);
}

ALIGN_API const char *align_judge_errmsg(const align_judge *j)
{
    return j ? align__errmsg(&j->err) : "judge is NULL";
}

ALIGN_API const char *align_judge_name(const align_judge *j)
{
    return j ? j->name : NULL;
}

/* Tokenizes text into a fresh array (*ids, *n); thread-safe tokenizer. */
static int tokenize_alloc(const align_tokenizer *t, const char *text, int32_t **ids, size_t *n)
{
    size_t len = strlen(text), need = 0;
    *ids = NULL;
    *n = 0;
    int rc = align_tokenize(t, text, len, 0, NULL, 0, &need);
    if (rc != ALIGN_OK && rc != ALIGN_ERANGE)
        return rc;
    *ids = align__malloc((need ? need : 1) * sizeof **ids);
    if (!*ids)
        return ALIGN_ENOMEM;
    rc = align_tokenize(t, text, len, 0, *ids, need, n);
    if (rc) {
        align__free(*ids);
        *ids = NULL;
    }
    return rc;
}

static int create_fail(align_judge *j, int rc)
{
    /* keep the judge's message as the thread's last error */
    align__error(NULL, rc, "%s", align__errmsg(&j->err));
    align_judge_free(j);
    return rc;
}

ALIGN_API int align_judge_create(align_judge **out, align_model *m, const align_tokenizer *t,
                                 const align_judge_params *p)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_judge_create: out is NULL");
    *out = NULL;
    if (!m || !t)
        return align__error(NULL, ALIGN_EINVAL, "align_judge_create: %s is NULL", m ? "tokenizer" : "model");
    align_judge_params prm = judge_defaults;
    if (p) {
        int rc = align__params_copy(&prm, sizeof prm, p, "align_judge_params");
        if (rc)
            return align__error(NULL, rc, "align_judge_create: %s", align_last_errmsg());
    }
    const uint32_t known = ALIGN_JUDGE_ANSWER_EOT | ALIGN_JUDGE_CHAT;
    if (prm.flags & ~known)
        return align__error(NULL, ALIGN_EINVAL, "align_judge_create: unknown flags 0x%x",
                            (unsigned)(prm.flags & ~known));
    align_chat_template ct;
    align_chat_template_default_params(&ct, sizeof ct);
    if ((prm.flags & ALIGN_JUDGE_CHAT) && prm.chat_template) {
        int rc = align__params_copy(&ct, sizeof ct, prm.chat_template, "align_chat_template");
        if (rc)
            return align__error(NULL, rc, "align_judge_create: %s", align_last_errmsg());
    }
    if (prm.n_principles < 0 || (prm.n_principles > 0 && !prm.principles))
        return align__error(NULL, ALIGN_EINVAL, "align_judge_create: principles is NULL with n_principles = %d",
                            (int)prm.n_principles);
    if (prm.score_min < 0 || prm.score_max <= prm.score_min || prm.score_max - prm.score_min > 100)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_judge_create: score scale %d..%d (need 0 <= min < max, at most 101 values)",
                            (int)prm.score_min, (int)prm.score_max);
    align_model_params cfg;
    cfg.struct_size = sizeof cfg;
    int rc = align_model_config(m, &cfg);
    if (rc)
        return align__error(NULL, rc, "align_judge_create: %s", align_model_errmsg(m));
    if (cfg.vocab_size < align_tokenizer_vocab_size(t))
        return align__error(NULL, ALIGN_EINVAL,
                            "align_judge_create: the tokenizer's vocabulary (%d) is larger than the model's (%d)",
                            (int)align_tokenizer_vocab_size(t), (int)cfg.vocab_size);

    align_judge *j = align__calloc(1, sizeof *j);
    if (!j)
        return align__error(NULL, ALIGN_ENOMEM, "align_judge_create: out of memory");
    j->m = m;
    j->t = t;
    j->flags = prm.flags;
    j->seed = prm.seed;
    j->score_min = prm.score_min;
    j->score_max = prm.score_max;
    j->max_len = cfg.max_seq_len;
    j->eot = align_tokenizer_eot(t);
    j->tmpl = align__strdup(prm.template_text ? prm.template_text : DEFAULT_TEMPLATE);
    j->score_tmpl = align__strdup(prm.score_template ? prm.score_template : DEFAULT_SCORE_TEMPLATE);
    j->name = align__strdup(prm.name ? prm.name : "judge");
    j->ans[0] = align__strdup(prm.answer_a ? prm.answer_a : "A");
    j->ans[1] = align__strdup(prm.answer_b ? prm.answer_b : "B");
    j->chat = ct;
    j->chat.system_prefix = ct.system_prefix ? align__strdup(ct.system_prefix) : NULL;
    j->chat.user_prefix = ct.user_prefix ? align__strdup(ct.user_prefix) : NULL;
    j->chat.assistant_prefix = ct.assistant_prefix ? align__strdup(ct.assistant_prefix) : NULL;
    if ((ct.system_prefix && !j->chat.system_prefix) || (ct.user_prefix && !j->chat.user_prefix) ||
        (ct.assistant_prefix && !j->chat.assistant_prefix))
        return create_fail(j, align__error(&j->err, ALIGN_ENOMEM, "align_judge_create: out of memory"));
    if (!j->tmpl || !j->score_tmpl || !j->name || !j->ans[0] || !j->ans[1])
        return create_fail(j, align__error(&j->err, ALIGN_ENOMEM, "align_judge_create: out of memory"));

    char why[160];
    unsigned used = 0;
    const char *dummy[5] = { "", "", "", "", "" };
    if ((rc = render(j->tmpl, pair_names, dummy, 4, NULL, &used, why, sizeof why)))
        return create_fail(j, align__error(&j->err, rc, "align_judge_create: template: %s", why));
    if ((used & 12u) != 12u)
        return create_fail(j, align__error(&j->err, ALIGN_EINVAL,
                                           "align_judge_create: the template needs both {a} and {b}"));
    if ((rc = render(j->score_tmpl, score_names, dummy, 5, NULL, &used, why, sizeof why)))
        return create_fail(j, align__error(&j->err, rc, "align_judge_create: score template: %s", why));
    if (!(used & 4u))
        return create_fail(j, align__error(&j->err, ALIGN_EINVAL,
                                           "align_judge_create: the score template needs {response}"));

    int eot_after = (prm.flags & ALIGN_JUDGE_ANSWER_EOT) != 0;
    if (!*j->ans[0] || !*j->ans[1])
        return create_fail(j, align__error(&j->err, ALIGN_EINVAL, "align_judge_create: an answer is empty"));
    if (!strcmp(j->ans[0], j->ans[1]))
        return create_fail(j, align__error(&j->err, ALIGN_EINVAL,
                                           "align_judge_create: answers A and B are the same (\"%s\")", j->ans[0]));
    if (!eot_after && (!strncmp(j->ans[0], j->ans[1], strlen(j->ans[0])) ||
                       !strncmp(j->ans[1], j->ans[0], strlen(j->ans[1]))))
        return create_fail(j, align__error(&j->err, ALIGN_EINVAL,
                                           "align_judge_create: one answer is a prefix of the other (\"%s\", \"%s\"); "
                                           "set ALIGN_JUDGE_ANSWER_EOT",
                                           j->ans[0], j->ans[1]));
    for (int i = 0; i < 2; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if ((rc = tokenize_alloc(t, j->ans[i], &ids, &n)))
            return create_fail(j, align__error(&j->err, rc, "align_judge_create: answer \"%s\": %s", j->ans[i],
                                               align_last_errmsg()));
        if (eot_after) {
            int32_t *g = align__realloc(ids, (n + 1) * sizeof *g);
            if (!g) {
                align__free(ids);
                return create_fail(j, align__error(&j->err, ALIGN_ENOMEM, "align_judge_create: out of memory"));
            }
            ids = g;
            ids[n++] = j->eot;
        }
        j->ans_ids[i] = ids;
        j->ans_n[i] = n;
    }

    for (int32_t i = 0; i < prm.n_principles; i++) {
        if (!prm.principles[i] || !*prm.principles[i])
            return create_fail(j, align__error(&j->err, ALIGN_EINVAL, "align_judge_create: principles[%d] is %s",
                                               (int)i, prm.principles[i] ? "empty" : "NULL"));
        if (add_principle(j, prm.principles[i], strlen(prm.principles[i])))
            return create_fail(j, align__error(&j->err, ALIGN_ENOMEM, "align_judge_create: out of memory"));
    }
    if (prm.principles_file) {
        int32_t before = j->n_principles;
        if ((rc = load_principles(j, prm.principles_file)))
            return create_fail(j, rc);
        if (j->n_principles == before)
            return create_fail(j, align__error(&j->err, ALIGN_EINVAL,
                                               "align_judge_create: principles file '%s' has no principle",
                                               prm.principles_file));
    }
    if (j->n_principles == 0 && add_principle(j, DEFAULT_PRINCIPLE, strlen(DEFAULT_PRINCIPLE)))
        return create_fail(j, align__error(&j->err, ALIGN_ENOMEM, "align_judge_create: out of memory"));
    *out = j;
    return ALIGN_OK;
}

/* ---- scoring sequences ------------------------------------------------------------
 * A batch of n sequences, each a prompt followed by an answer; lp[i] receives
 * the log-probability of answer i's tokens given its prompt. */

typedef struct seqs {
    int32_t *tokens;   /* [n][max_len] */
    int32_t *lengths;
    int32_t *ans_start;
    int32_t n, cap, max_len;
} seqs;

static void seqs_free(seqs *s)
{
    align__free(s->tokens);
    align__free(s->lengths);
    align__free(s->ans_start);
    memset(s, 0, sizeof *s);
}

/* The ids of a rendered judge prompt: its text, or with ALIGN_JUDGE_CHAT a
 * user turn followed by the assistant prefix (align_chat_tokenize). */
static int prompt_ids(const align_judge *j, const char *text, int32_t **ids, size_t *n)
{
    if (!(j->flags & ALIGN_JUDGE_CHAT))
        return tokenize_alloc(j->t, text, ids, n);
    const char *role = "user";
    size_t need = 0;
    *ids = NULL;
    *n = 0;
    int rc = align_chat_tokenize(j->t, &j->chat, &role, &text, 1, ALIGN_CHAT_GENERATION_PROMPT, NULL, NULL, 0,
                                 &need);
    if (rc != ALIGN_OK && rc != ALIGN_ERANGE)
        return rc;
    *ids = align__malloc((need ? need : 1) * sizeof **ids);
    if (!*ids)
        return ALIGN_ENOMEM;
    rc = align_chat_tokenize(j->t, &j->chat, &role, &text, 1, ALIGN_CHAT_GENERATION_PROMPT, *ids, NULL, need, n);
    if (rc) {
        align__free(*ids);
        *ids = NULL;
    }
    return rc;
}

/* Appends prompt text (tokenized) + answer ids as one sequence. */
static int seqs_add(align_judge *j, seqs *s, const char *text, const int32_t *ans, size_t n_ans, const char *fn)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = prompt_ids(j, text, &ids, &n);
    if (rc)
        return align__error(&j->err, rc, "%s: %s", fn, align_last_errmsg());
    if (n == 0) { /* a sequence needs a first token to condition on */
        align__free(ids);
        return align__error(&j->err, ALIGN_EINVAL, "%s: the rendered judge prompt is empty", fn);
    }
    if (n + n_ans > (size_t)j->max_len) {
        align__free(ids);
        return align__error(&j->err, ALIGN_ERANGE,
                            "%s: the judge prompt (%zu tokens) and its answer (%zu) exceed the model's "
                            "max_seq_len %d",
                            fn, n, n_ans, (int)j->max_len);
    }
    if (s->n == s->cap) {
        int32_t cap = s->cap ? 2 * s->cap : 4;
        int32_t *tk = align__realloc(s->tokens, (size_t)cap * (size_t)j->max_len * sizeof *tk);
        if (tk)
            s->tokens = tk;
        int32_t *ln = align__realloc(s->lengths, (size_t)cap * sizeof *ln);
        if (ln)
            s->lengths = ln;
        int32_t *as = align__realloc(s->ans_start, (size_t)cap * sizeof *as);
        if (as)
            s->ans_start = as;
        if (!tk || !ln || !as) {
            align__free(ids);
            return align__error(&j->err, ALIGN_ENOMEM, "%s: out of memory", fn);
        }
        s->cap = cap;
    }
    int32_t *row = s->tokens + (size_t)s->n * (size_t)j->max_len;
    memcpy(row, ids, n * sizeof *row);
    memcpy(row + n, ans, n_ans * sizeof *row);
    s->lengths[s->n] = (int32_t)(n + n_ans);
    s->ans_start[s->n] = (int32_t)n;
    if (s->lengths[s->n] > s->max_len)
        s->max_len = s->lengths[s->n];
    s->n++;
    align__free(ids);
    return ALIGN_OK;
}

/* lp[i] = log p(answer of sequence i | its prompt). */
static int seqs_run(align_judge *j, seqs *s, double *lp, const char *fn)
{
    int32_t L = s->max_len, W = j->max_len;
    int32_t *tok = align__calloc((size_t)s->n * (size_t)L, sizeof *tok);
    float *out = align__malloc((size_t)s->n * (size_t)(L - 1) * sizeof *out);
    if (!tok || !out) {
        align__free(tok);
        align__free(out);
        return align__error(&j->err, ALIGN_ENOMEM, "%s: out of memory", fn);
    }
    for (int32_t i = 0; i < s->n; i++)
        memcpy(tok + (size_t)i * L, s->tokens + (size_t)i * W, (size_t)s->lengths[i] * sizeof *tok);
    int rc = align_model_forward(j->m, tok, s->lengths, s->n, L, out, NULL, NULL);
    if (rc) {
        rc = align__error(&j->err, rc, "%s: %s", fn, align_model_errmsg(j->m));
    } else {
        for (int32_t i = 0; i < s->n; i++) {
            double sum = 0.0;
            for (int32_t t = s->ans_start[i]; t < s->lengths[i]; t++)
                sum += (double)out[(size_t)i * (L - 1) + (size_t)(t - 1)];
            if (!isfinite(sum)) {
                rc = align__error(&j->err, ALIGN_ENONFINITE, "%s: the judge's log-probability is not finite", fn);
                break;
            }
            lp[i] = sum;
        }
    }
    align__free(tok);
    align__free(out);
    return rc;
}

static int check_text_arg(align_judge *j, const char *s, const char *what, const char *fn)
{
    if (!s)
        return align__error(&j->err, ALIGN_EINVAL, "%s: %s is NULL", fn, what);
    return ALIGN_OK;
}

/* q = p(x ≻ y) averaged over both orders, from one forward of the four
 * sequences (x,y)+A, (x,y)+B, (y,x)+A, (y,x)+B. */
static int prefer_ordered(align_judge *j, const char *prompt, const char *x, const char *y, double *q,
                          const char *fn)
{
    const char *principle = pick_principle(j, prompt, x, y);
    seqs s;
    memset(&s, 0, sizeof s);
    int rc = ALIGN_OK;
    for (int order = 0; order < 2 && !rc; order++) {
        const char *vals[4] = { principle, prompt, order ? y : x, order ? x : y };
        growbuf text = { 0 };
        char why[160];
        rc = render(j->tmpl, pair_names, vals, 4, &text, NULL, why, sizeof why);
        if (rc)
            rc = align__error(&j->err, rc, "%s: template: %s", fn, why);
        for (int a = 0; a < 2 && !rc; a++)
            rc = seqs_add(j, &s, text.s, j->ans_ids[a], j->ans_n[a], fn);
        align__free(text.s);
    }
    double lp[4];
    if (!rc)
        rc = seqs_run(j, &s, lp, fn);
    seqs_free(&s);
    if (rc)
        return rc;
    /* pA(x, y) = σ(lA − lB) with x shown as A; pB(y, x) = σ(lB − lA) with x shown as B */
    double p_first = 1.0 / (1.0 + exp(lp[1] - lp[0]));
    double p_second = 1.0 / (1.0 + exp(lp[2] - lp[3]));
    *q = 0.5 * (p_first + p_second);
    return ALIGN_OK;
}

/* p(a ≻ b) with the batch in a canonical order (the smaller string first),
 * so prefer(a, b) and prefer(b, a) run the same computation and sum to 1. */
static int prefer(align_judge *j, const char *prompt, const char *a, const char *b, double *p, const char *fn)
{
    if (!strcmp(a, b)) {
        *p = 0.5;
        return ALIGN_OK;
    }
    int swap = strcmp(a, b) > 0;
    double q;
    int rc = prefer_ordered(j, prompt, swap ? b : a, swap ? a : b, &q, fn);
    if (rc)
        return rc;
    *p = swap ? 1.0 - q : q;
    return ALIGN_OK;
}

ALIGN_API int align_judge_prefer(align_judge *j, const char *prompt, const char *resp_a, const char *resp_b,
                                 float *p_a_out)
{
    static const char fn[] = "align_judge_prefer";
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "%s: judge is NULL", fn);
    align__error_clear(&j->err);
    int rc;
    if ((rc = check_text_arg(j, prompt, "prompt", fn)) || (rc = check_text_arg(j, resp_a, "resp_a", fn)) ||
        (rc = check_text_arg(j, resp_b, "resp_b", fn)))
        return rc;
    if (!p_a_out)
        return align__error(&j->err, ALIGN_EINVAL, "%s: p_a_out is NULL", fn);
    double p;
    if ((rc = prefer(j, prompt, resp_a, resp_b, &p, fn)))
        return rc;
    *p_a_out = (float)p;
    return ALIGN_OK;
}

int align__judge_rank(align_judge *j, const char *prompt, const char *const *responses, int32_t k,
                      int32_t *rank_out, float *win_prob_out, const char *fn)
{
    int rc;
    if ((rc = check_text_arg(j, prompt, "prompt", fn)))
        return rc;
    if (k < 2 || !responses || !rank_out)
        return align__error(&j->err, ALIGN_EINVAL, "%s: %s", fn,
                            k < 2 ? "k must be at least 2" : responses ? "rank_out is NULL" : "responses is NULL");
    for (int32_t i = 0; i < k; i++)
        if (!responses[i])
            return align__error(&j->err, ALIGN_EINVAL, "%s: responses[%d] is NULL", fn, (int)i);
    double *wins = align__calloc((size_t)k, sizeof *wins);
    int32_t *order = align__malloc((size_t)k * sizeof *order);
    if (!wins || !order) {
        align__free(wins);
        align__free(order);
        return align__error(&j->err, ALIGN_ENOMEM, "%s: out of memory", fn);
    }
    /* Borda count over pairwise win probabilities: wins[i] = Σ_j p(i ≻ j). */
    for (int32_t a = 0; a < k && !rc; a++)
        for (int32_t b = a + 1; b < k && !rc; b++) {
            double p;
            rc = prefer(j, prompt, responses[a], responses[b], &p, fn);
            if (!rc) {
                wins[a] += p;
                wins[b] += 1.0 - p;
            }
        }
    if (!rc) {
        for (int32_t i = 0; i < k; i++)
            order[i] = i;
        /* insertion sort by wins, descending; stable on index */
        for (int32_t i = 1; i < k; i++) {
            int32_t v = order[i], x = i;
            while (x > 0 && wins[order[x - 1]] < wins[v]) {
                order[x] = order[x - 1];
                x--;
            }
            order[x] = v;
        }
        int32_t place = 0;
        for (int32_t i = 0; i < k; i++) {
            if (i > 0 && wins[order[i - 1]] - wins[order[i]] > 1e-9)
                place++;
            rank_out[order[i]] = place;
        }
        if (win_prob_out)
            for (int32_t i = 0; i < k; i++)
                win_prob_out[i] = (float)(wins[i] / (double)(k - 1));
    }
    align__free(wins);
    align__free(order);
    return rc;
}

ALIGN_API int align_judge_rank(align_judge *j, const char *prompt, const char *const *responses, int32_t k,
                               int32_t *rank_out, float *win_prob_out)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "align_judge_rank: judge is NULL");
    align__error_clear(&j->err);
    return align__judge_rank(j, prompt, responses, k, rank_out, win_prob_out, "align_judge_rank");
}

ALIGN_API int align_judge_score(align_judge *j, const char *const *prompts, const char *const *responses, int32_t n,
                                float *scores)
{
    static const char fn[] = "align_judge_score";
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "%s: judge is NULL", fn);
    align__error_clear(&j->err);
    if (n < 0)
        return align__error(&j->err, ALIGN_EINVAL, "%s: n = %d", fn, (int)n);
    if (n > 0 && (!prompts || !responses || !scores))
        return align__error(&j->err, ALIGN_EINVAL, "%s: %s is NULL", fn,
                            !prompts ? "prompts" : !responses ? "responses" : "scores");
    int32_t n_vals = j->score_max - j->score_min + 1;
    /* the answers: each number's text followed by the end-of-turn token */
    int32_t **ids = align__calloc((size_t)n_vals, sizeof *ids);
    size_t *nids = align__calloc((size_t)n_vals, sizeof *nids);
    double *lp = align__malloc((size_t)n_vals * sizeof *lp);
    int rc = (!ids || !nids || !lp) ? align__error(&j->err, ALIGN_ENOMEM, "%s: out of memory", fn) : ALIGN_OK;
    for (int32_t v = 0; v < n_vals && !rc; v++) {
        char num[16];
        snprintf(num, sizeof num, "%d", (int)(j->score_min + v));
        int32_t *t = NULL;
        size_t m = 0;
        rc = tokenize_alloc(j->t, num, &t, &m);
        if (!rc) {
            int32_t *g = align__realloc(t, (m + 1) * sizeof *g);
            if (!g) {
                align__free(t);
                rc = ALIGN_ENOMEM;
            } else {
                g[m++] = j->eot;
                ids[v] = g;
                nids[v] = m;
            }
        }
        if (rc)
            rc = align__error(&j->err, rc, "%s: tokenizing \"%s\" failed", fn, num);
    }
    char smin[16], smax[16];
    snprintf(smin, sizeof smin, "%d", (int)j->score_min);
    snprintf(smax, sizeof smax, "%d", (int)j->score_max);
    for (int32_t i = 0; i < n && !rc; i++) {
        if (!prompts[i] || !responses[i]) {
            rc = align__error(&j->err, ALIGN_EINVAL, "%s: %s[%d] is NULL", fn, prompts[i] ? "responses" : "prompts",
                              (int)i);
            break;
        }
        const char *vals[5] = { pick_principle(j, prompts[i], responses[i], NULL), prompts[i], responses[i], smin,
                                smax };
        growbuf text = { 0 };
        char why[160];
        rc = render(j->score_tmpl, score_names, vals, 5, &text, NULL, why, sizeof why);
        if (rc)
            rc = align__error(&j->err, rc, "%s: score template: %s", fn, why);
        seqs s;
        memset(&s, 0, sizeof s);
        for (int32_t v = 0; v < n_vals && !rc; v++)
            rc = seqs_add(j, &s, text.s, ids[v], nids[v], fn);
        align__free(text.s);
        if (!rc)
            rc = seqs_run(j, &s, lp, fn);
        seqs_free(&s);
        if (rc)
            break;
        /* softmax over the scale, then the expected value */
        double mx = lp[0];
        for (int32_t v = 1; v < n_vals; v++)
            mx = lp[v] > mx ? lp[v] : mx;
        double z = 0.0, ev = 0.0;
        for (int32_t v = 0; v < n_vals; v++) {
            double e = exp(lp[v] - mx);
            z += e;
            ev += e * (double)(j->score_min + v);
        }
        scores[i] = (float)(ev / z);
    }
    for (int32_t v = 0; ids && v < n_vals; v++)
        align__free(ids[v]);
    align__free(ids);
    align__free(nids);
    align__free(lp);
    return rc;
}

/* ---- the judge as a reward model ---------------------------------------------------- */

static int judge_score_cb(const char *const *prompts, const char *const *responses, int32_t n, float *scores,
                          void *user_data)
{
    int rc = align_judge_score(user_data, prompts, responses, n, scores);
    return rc < 0 ? rc : 0;
}

ALIGN_API int align_reward_model_from_judge(align_reward_model **out, align_judge *j)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_judge: out is NULL");
    *out = NULL;
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_model_from_judge: judge is NULL");
    return align_reward_model_from_callback(out, judge_score_cb, j);
}
