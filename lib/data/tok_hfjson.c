/*
 * tok_hfjson.c — Hugging Face tokenizer.json: the BPE model and the parts of
 * the pipeline around it that the models people align use (docs/tokenizer.md
 * lists them): byte-level BPE with a regex pre-tokenizer (GPT-2, Llama-3,
 * Qwen2, SmolLM2) and SentencePiece-style BPE with byte fallback (Llama-2,
 * TinyLlama). Anything else is refused naming the unsupported type, because a
 * tokenizer that silently tokenizes differently from the one the model was
 * trained with is worse than none.
 */
#include "data/tok_internal.h"
#include "data/utf8.h"

#include <stdio.h>
#include <string.h>

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

typedef struct hf_dec {
    struct { const char *a, *b; size_t alen, blen; } repl[4];
    int n_repl;
    int byte_fallback;
    int fused;
} hf_dec;

static int unsupported(const char *path, const char *what, const char *type)
{
    return align__error(NULL, ALIGN_EFORMAT, "%s: %s type \"%.64s\" is not supported (docs/tokenizer.md lists "
                        "what is)", path, what, type ? type : "(none)");
}

static const char *type_of(json_t *o)
{
    return json_string_value(json_object_get(o, "type"));
}

static int get_bool(json_t *o, const char *key, int dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

void align__tok_free_pipeline(align_tokenizer *t)
{
    for (int k = 0; k < t->n_norm; k++) {
        align__free(t->norm[k].a);
        align__free(t->norm[k].b);
    }
    for (int k = 0; k < t->n_pre; k++)
        if (t->pre[k].re)
            pcre2_code_free(t->pre[k].re);
    t->n_norm = t->n_pre = 0;
}

static tok_pre *new_pre(align_tokenizer *t)
{
    if (t->n_pre >= TOK_MAX_PRE) {
        align__error(NULL, ALIGN_EFORMAT, "more than %d pre-tokenizer steps", TOK_MAX_PRE);
        return NULL;
    }
    tok_pre *p = &t->pre[t->n_pre++];
    memset(p, 0, sizeof *p);
    return p;
}

int align__tok_add_split(align_tokenizer *t, const char *pattern, size_t len, int literal)
{
    tok_pre *p = new_pre(t);
    if (!p)
        return ALIGN_EFORMAT;
    int errcode;
    PCRE2_SIZE erroff;
    /* UCP: \s \d \w \p{..} by Unicode properties, as Rust's regex and Oniguruma */
    p->re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &errcode,
                          &erroff, NULL);
    if (!p->re) {
        t->n_pre--;
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return align__error(NULL, ALIGN_EFORMAT, "pre-tokenizer pattern '%.80s' does not compile at %zu: %s", pattern,
                            (size_t)erroff, (const char *)msg);
    }
    p->type = PRE_SPLIT;
    p->jit = pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0;
    return ALIGN_OK;
}

/* {"String": s} or {"Regex": s}: sets *s, *len, *regex; 0 or -1. */
static int get_pattern(json_t *pat, const char **s, size_t *len, int *regex)
{
    json_t *v;
    if ((v = json_object_get(pat, "String")) && json_is_string(v))
        *regex = 0;
    else if ((v = json_object_get(pat, "Regex")) && json_is_string(v))
        *regex = 1;
    else
        return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* Metaspace's prepend scheme: "always" / "first" / "never", or the older
 * add_prefix_space boolean. */
static int prepend_scheme(json_t *o, int *scheme)
{
    const char *s = json_string_value(json_object_get(o, "prepend_scheme"));
    if (!s)
        *scheme = get_bool(o, "add_prefix_space", 1) ? 2 : 0;
    else if (!strcmp(s, "always"))
        *scheme = 2;
    else if (!strcmp(s, "first"))
        *scheme = 1;
    else if (!strcmp(s, "never"))
        *scheme = 0;
    else
        return -1;
    return 0;
}

static int metaspace_repl(json_t *o, const char **r)
{
    json_t *v = json_object_get(o, "replacement");
    *r = v ? json_string_value(v) : SPM_SPACE;
    if (!*r || !**r || strlen(*r) > 4 || align__utf8_seq((const unsigned char *)*r, strlen(*r)) != strlen(*r))
        return -1;
    return 0;
}

/* First pass over the pre-tokenizer: is the vocabulary byte-level? */
static int has_byte_level(json_t *pre)
{
    const char *ty = type_of(pre);
    if (ty && !strcmp(ty, "ByteLevel"))
        return 1;
    if (ty && !strcmp(ty, "Sequence")) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(pre, "pretokenizers"), i, x)
            if (has_byte_level(x))
                return 1;
    }
    return 0;
}

static int parse_pre(align_tokenizer *t, json_t *pre, const char *path, int depth)
{
    if (!pre || json_is_null(pre))
        return ALIGN_OK;
    const char *ty = type_of(pre);
    if (!json_is_object(pre) || !ty || depth > 4)
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"pre_tokenizer\" is not an object with a \"type\"", path);
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(pre, "pretokenizers"), *x;
        size_t i;
        if (!json_is_array(arr))
            return align__error(NULL, ALIGN_EFORMAT, "%s: pre_tokenizer Sequence without \"pretokenizers\"", path);
        json_array_foreach(arr, i, x) {
            int rc = parse_pre(t, x, path, depth + 1);
            if (rc)
                return rc;
        }
        return ALIGN_OK;
    }
    if (!strcmp(ty, "ByteLevel")) {
        /* defaults as Hugging Face's ByteLevel::default() */
        if (get_bool(pre, "add_prefix_space", 1)) {
            tok_pre *p = new_pre(t);
            if (!p)
                return ALIGN_EFORMAT;
            p->type = PRE_PREFIX_SPACE;
        }
        if (get_bool(pre, "use_regex", 1))
            return align__tok_add_split(t, GPT2_PATTERN, strlen(GPT2_PATTERN), 0);
        return ALIGN_OK;
    }
    if (!strcmp(ty, "Split")) {
        const char *s, *beh = json_string_value(json_object_get(pre, "behavior"));
        size_t len;
        int regex;
        if (get_pattern(json_object_get(pre, "pattern"), &s, &len, &regex))
            return align__error(NULL, ALIGN_EFORMAT, "%s: pre_tokenizer Split without a String or Regex pattern", path);
        if (!beh || strcmp(beh, "Isolated"))
            return align__error(NULL, ALIGN_EFORMAT, "%s: pre_tokenizer Split behavior \"%.32s\" is not supported "
                                "(only \"Isolated\")", path, beh ? beh : "(none)");
        if (get_bool(pre, "invert", 0))
            return align__error(NULL, ALIGN_EFORMAT, "%s: pre_tokenizer Split with \"invert\": true is not supported",
                                path);
        int rc = align__tok_add_split(t, s, len, !regex);
        return rc ? align__error(NULL, rc, "%s: %s", path, align_last_errmsg()) : ALIGN_OK;
    }
    if (!strcmp(ty, "Digits")) {
        /* Hugging Face's Digits splits on ASCII digits only */
        const char *pat = get_bool(pre, "individual_digits", 0) ? "[0-9]" : "[0-9]+";
        return align__tok_add_split(t, pat, strlen(pat), 0);
    }
    if (!strcmp(ty, "Metaspace")) {
        const char *r;
        tok_pre *p;
        int scheme;
        if (metaspace_repl(pre, &r) || prepend_scheme(pre, &scheme))
            return align__error(NULL, ALIGN_EFORMAT, "%s: pre_tokenizer Metaspace: bad replacement or prepend_scheme",
                                path);
        if (!(p = new_pre(t)))
            return ALIGN_EFORMAT;
        p->type = PRE_METASPACE;
        p->prepend = scheme;
        p->repl_len = strlen(r);
        memcpy(p->repl, r, p->repl_len);
        if (get_bool(pre, "split", 1)) {
            /* MergedWithNext on the replacement: each piece starts with it
             * ((?s): a newline is an ordinary character here) */
            char pat[80];
            snprintf(pat, sizeof pat, "(?s)\\Q%s\\E(?:(?!\\Q%s\\E).)*|(?:(?!\\Q%s\\E).)+", r, r, r);
            return align__tok_add_split(t, pat, strlen(pat), 0);
        }
        return ALIGN_OK;
    }
    return unsupported(path, "pre_tokenizer", ty);
}

static int add_norm(align_tokenizer *t, int type, const char *a, size_t alen, const char *b, size_t blen)
{
    if (t->n_norm >= TOK_MAX_NORM)
        return align__error(NULL, ALIGN_EFORMAT, "more than %d normalizer steps", TOK_MAX_NORM);
    tok_norm *m = &t->norm[t->n_norm];
    m->type = type;
    m->a = align__malloc(alen + 1);
    m->b = align__malloc(blen + 1);
    if (!m->a || !m->b) {
        align__free(m->a);
        align__free(m->b);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    memcpy(m->a, a, alen);
    if (blen)
        memcpy(m->b, b, blen);
    m->alen = alen;
    m->blen = blen;
    t->n_norm++;
    return ALIGN_OK;
}

static int parse_norm(align_tokenizer *t, json_t *n, const char *path, int depth)
{
    if (!n || json_is_null(n))
        return ALIGN_OK;
    const char *ty = type_of(n);
    if (!json_is_object(n) || !ty || depth > 4)
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"normalizer\" is not an object with a \"type\"", path);
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers"), *x;
        size_t i;
        if (!json_is_array(arr))
            return align__error(NULL, ALIGN_EFORMAT, "%s: normalizer Sequence without \"normalizers\"", path);
        json_array_foreach(arr, i, x) {
            int rc = parse_norm(t, x, path, depth + 1);
            if (rc)
                return rc;
        }
        return ALIGN_OK;
    }
    if (!strcmp(ty, "NFC")) /* a check (tok_nfc.c) */
        return add_norm(t, NORM_NFC, "", 0, NULL, 0);
    if (!strcmp(ty, "Prepend")) {
        json_t *p = json_object_get(n, "prepend");
        if (!json_is_string(p) || !json_string_length(p))
            return align__error(NULL, ALIGN_EFORMAT, "%s: normalizer Prepend without \"prepend\"", path);
        return add_norm(t, NORM_PREPEND, json_string_value(p), json_string_length(p), NULL, 0);
    }
    if (!strcmp(ty, "Replace")) {
        const char *s;
        size_t len;
        int regex;
        json_t *c = json_object_get(n, "content");
        if (get_pattern(json_object_get(n, "pattern"), &s, &len, &regex) || !len || !json_is_string(c))
            return align__error(NULL, ALIGN_EFORMAT, "%s: normalizer Replace needs a pattern and a content", path);
        if (regex)
            return align__error(NULL, ALIGN_EFORMAT, "%s: normalizer Replace with a Regex pattern is not supported "
                                "(only String)", path);
        return add_norm(t, NORM_REPLACE, s, len, json_string_value(c), json_string_length(c));
    }
    return unsupported(path, "normalizer", ty);
}

static int parse_dec(align_tokenizer *t, hf_dec *d, json_t *x, const char *path, int depth)
{
    if (!x || json_is_null(x))
        return ALIGN_OK;
    const char *ty = type_of(x);
    if (!json_is_object(x) || !ty || depth > 4)
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"decoder\" is not an object with a \"type\"", path);
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(x, "decoders"), *y;
        size_t i;
        if (!json_is_array(arr))
            return align__error(NULL, ALIGN_EFORMAT, "%s: decoder Sequence without \"decoders\"", path);
        json_array_foreach(arr, i, y) {
            int rc = parse_dec(t, d, y, path, depth + 1);
            if (rc)
                return rc;
        }
        return ALIGN_OK;
    }
    if (!strcmp(ty, "ByteLevel")) {
        if (!t->byte_level)
            return align__error(NULL, ALIGN_EFORMAT, "%s: a ByteLevel decoder without a ByteLevel pre_tokenizer is "
                                "not supported", path);
        return ALIGN_OK;
    }
    if (!strcmp(ty, "Replace") || !strcmp(ty, "Metaspace")) {
        const char *s, *r = NULL;
        size_t len;
        int regex = 0, scheme = 0;
        json_t *c = json_object_get(x, "content");
        if (!strcmp(ty, "Metaspace")) {
            if (metaspace_repl(x, &r) || prepend_scheme(x, &scheme))
                return align__error(NULL, ALIGN_EFORMAT, "%s: decoder Metaspace: bad replacement or prepend_scheme",
                                    path);
            s = r;
            len = strlen(r);
        } else if (get_pattern(json_object_get(x, "pattern"), &s, &len, &regex) || !len || !json_is_string(c) ||
                   regex) {
            return align__error(NULL, ALIGN_EFORMAT, "%s: decoder Replace needs a String pattern and a content", path);
        }
        if (t->byte_level || d->n_repl >= 4 || d->fused)
            return align__error(NULL, ALIGN_EFORMAT, "%s: decoder %s here (after Fuse, with ByteLevel, or more than "
                                "4) is not supported", path, ty);
        d->repl[d->n_repl].a = s;
        d->repl[d->n_repl].alen = len;
        d->repl[d->n_repl].b = r ? " " : json_string_value(c);
        d->repl[d->n_repl].blen = r ? 1 : json_string_length(c);
        d->n_repl++;
        if (r && scheme) { /* Metaspace drops the space it prepended */
            t->strip_start = 1;
            t->strip_char = ' ';
        }
        return ALIGN_OK;
    }
    if (!strcmp(ty, "ByteFallback")) {
        d->byte_fallback = 1;
        return ALIGN_OK;
    }
    if (!strcmp(ty, "Fuse")) {
        d->fused = 1;
        return ALIGN_OK;
    }
    if (!strcmp(ty, "Strip")) {
        const char *c = json_string_value(json_object_get(x, "content"));
        json_int_t start = json_integer_value(json_object_get(x, "start"));
        json_int_t stop = json_integer_value(json_object_get(x, "stop"));
        /* before Fuse it would strip every token: not what any model uses */
        if (!c || strlen(c) != 1 || start < 0 || start > 64 || stop != 0 || !d->fused)
            return align__error(NULL, ALIGN_EFORMAT, "%s: decoder Strip is supported only after Fuse, of one ASCII "
                                "character at the start", path);
        t->strip_start = (int)start;
        t->strip_char = c[0];
        return ALIGN_OK;
    }
    return unsupported(path, "decoder", ty);
}

/* "<0xAB>" -> 0xAB, else -1 */
static int byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!h || !l || !s[3] || !s[4])
        return -1;
    return (int)((h - hex) * 16 + (l - hex));
}

/* Character-level vocabularies: the byte-fallback table and every token's
 * decoded text (the decoder's Replace steps and ByteFallback, once). */
static int build_decoded(tok_builder *bd, const hf_dec *d)
{
    align_tokenizer *t = bd->t;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->tok_len[id] < 0 || t->is_special[id])
            continue;
        int b = byte_token(t->bytes + t->tok_off[id], (size_t)t->tok_len[id]);
        if (b >= 0 && t->byte_id[b] < 0)
            t->byte_id[b] = id;
    }
    if (!d->n_repl && !d->byte_fallback)
        return ALIGN_OK;
    size_t cap = t->bytes_len * 2 + 16, len = 0;
    t->dec_off = align__malloc((size_t)t->n_vocab * sizeof *t->dec_off);
    t->dec_len = align__malloc((size_t)t->n_vocab * sizeof *t->dec_len);
    t->dec_bytes = align__malloc(cap);
    if (!t->dec_off || !t->dec_len || !t->dec_bytes)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    char *tmp[2] = { NULL, NULL };
    size_t tcap[2] = { 0, 0 };
    int rc = ALIGN_OK;
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        t->dec_off[id] = (uint32_t)len;
        t->dec_len[id] = t->tok_len[id] < 0 ? -1 : 0;
        if (t->tok_len[id] < 0)
            continue;
        const char *s = t->bytes + t->tok_off[id];
        size_t n = (size_t)t->tok_len[id];
        int b = d->byte_fallback ? byte_token(s, n) : -1;
        char one = (char)b;
        if (b >= 0) {
            s = &one;
            n = 1;
        }
        /* each Replace writes into the scratch buffer the input is not in */
        for (int k = 0; k < d->n_repl && b < 0 && !rc; k++) {
            int w = s == tmp[0] ? 1 : 0;
            size_t need = n / d->repl[k].alen * d->repl[k].blen + n + 1, o = 0;
            if (need > tcap[w]) {
                char *p = align__realloc(tmp[w], need * 2);
                if (!p) {
                    rc = align__error(NULL, ALIGN_ENOMEM, "out of memory");
                    break;
                }
                tmp[w] = p;
                tcap[w] = need * 2;
            }
            for (size_t i = 0; i < n;) {
                if (i + d->repl[k].alen <= n && !memcmp(s + i, d->repl[k].a, d->repl[k].alen)) {
                    memcpy(tmp[w] + o, d->repl[k].b, d->repl[k].blen);
                    o += d->repl[k].blen;
                    i += d->repl[k].alen;
                } else {
                    tmp[w][o++] = s[i++];
                }
            }
            s = tmp[w];
            n = o;
        }
        if (rc)
            break;
        if (len + n > cap) {
            cap = (len + n) * 2;
            char *p = align__realloc(t->dec_bytes, cap);
            if (!p) {
                rc = align__error(NULL, ALIGN_ENOMEM, "out of memory");
                break;
            }
            t->dec_bytes = p;
        }
        memcpy(t->dec_bytes + len, s, n);
        t->dec_len[id] = (int32_t)n;
        len += n;
        if (len > UINT32_MAX)
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: decoded vocabulary too large", bd->path);
    }
    align__free(tmp[0]);
    align__free(tmp[1]);
    return rc;
}

/* BPE model options: the ones that change results must have the values we
 * implement. */
static int parse_model_options(tok_builder *bd, json_t *model)
{
    align_tokenizer *t = bd->t;
    const char *path = bd->path;
    json_t *v = json_object_get(model, "dropout");
    if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
        return align__error(NULL, ALIGN_EFORMAT, "%s: BPE dropout is not supported", path);
    static const char *const affixes[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (int k = 0; k < 2; k++) {
        v = json_object_get(model, affixes[k]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return align__error(NULL, ALIGN_EFORMAT, "%s: BPE %s is not supported", path, affixes[k]);
    }
    t->byte_fallback = get_bool(model, "byte_fallback", 0);
    t->fuse_unk = get_bool(model, "fuse_unk", 0);
    t->ignore_merges = get_bool(model, "ignore_merges", 0);
    return ALIGN_OK;
}

/* tokenizer_config.json beside the file: its eos_token, which is what
 * instruct models end a turn with (<|im_end|>, <|eot_id|>, </s>). A missing or
 * unreadable one is not an error: end-of-text then falls back to the usual
 * names (tok_bpe.c). Returns a malloc'd string or NULL. */
static char *config_eos(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *cfg = align__malloc(dl + 32);
    if (!cfg)
        return NULL;
    memcpy(cfg, path, dl);
    strcpy(cfg + dl, "tokenizer_config.json");
    json_error_t err;
    json_t *root = json_load_file(cfg, 0, &err);
    align__free(cfg);
    json_t *e = json_object_get(root, "eos_token");
    if (json_is_object(e))
        e = json_object_get(e, "content");
    char *out = NULL;
    if (json_is_string(e) && (out = align__malloc(json_string_length(e) + 1)))
        memcpy(out, json_string_value(e), json_string_length(e) + 1);
    json_decref(root);
    return out;
}

static int load_added(tok_builder *bd, json_t *added)
{
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a) {
        json_t *c = json_object_get(a, "content");
        if (get_bool(a, "single_word", 0))
            return align__error(NULL, ALIGN_EFORMAT, "%s: added_tokens[%zu] (\"%.64s\"): single_word is not "
                                "supported", bd->path, i, json_string_value(c));
        /* matched on the raw text: refuse where the normalizer would change it */
        for (int k = 0; k < bd->t->n_norm && get_bool(a, "normalized", 0) && !get_bool(a, "special", 1); k++)
            if (bd->t->norm[k].type == NORM_REPLACE && strstr(json_string_value(c), bd->t->norm[k].a))
                return align__error(NULL, ALIGN_EFORMAT, "%s: added_tokens[%zu] (\"%.64s\"): a normalized added "
                                    "token that the normalizer changes is not supported", bd->path, i,
                                    json_string_value(c));
        /* "special" absent: special (older files and hand-made ones) */
        uint8_t f = TOKF_ADDED | (get_bool(a, "special", 1) ? TOKF_SPECIAL : 0) |
                    (get_bool(a, "lstrip", 0) ? TOKF_LSTRIP : 0) | (get_bool(a, "rstrip", 0) ? TOKF_RSTRIP : 0);
        int rc = align__tok_set_token(bd, (int32_t)json_integer_value(json_object_get(a, "id")), json_string_value(c),
                                      json_string_length(c), f);
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

static int load_merges(tok_builder *bd, json_t *merges)
{
    const char *path = bd->path;
    size_t i;
    json_t *m;
    int rc = align__tok_alloc_merges(bd, ALIGN__MIN(json_array_size(merges), align__tok_max_merges(bd->t)));
    if (rc)
        return rc;
    json_array_foreach(merges, i, m) {
        /* "a b" (older files) or ["a", "b"] (newer ones, which allow spaces) */
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t len = json_string_length(m);
            const char *sp = memchr(s, ' ', len);
            if (!sp || sp == s || sp + 1 >= s + len)
                return align__error(NULL, ALIGN_EFORMAT, "%s: merges[%zu] is not \"a b\"", path, i);
            rc = align__tok_add_merge(bd, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, (long)i);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
            rc = align__tok_add_merge(bd, json_string_value(x), json_string_length(x), json_string_value(y),
                                      json_string_length(y), (long)i);
        } else {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: merges[%zu] is neither \"a b\" nor [a, b]", path, i);
        }
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

static int load_root(tok_builder *bd, json_t *root)
{
    const char *path = bd->path;
    align_tokenizer *t = bd->t;
    json_t *model = json_object_get(root, "model");
    json_t *type = json_object_get(model, "type");
    json_t *added = json_object_get(root, "added_tokens");
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(model))
        return align__error(NULL, ALIGN_EFORMAT, "%s: no \"model\" object", path);
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), "BPE") == 0))
        return align__error(NULL, ALIGN_EFORMAT, "%s: model type \"%.32s\" is not supported (not \"BPE\")", path,
                            json_is_string(type) ? json_string_value(type) : "?");
    if (added && !json_is_array(added) && !json_is_null(added))
        return align__error(NULL, ALIGN_EFORMAT, "%s: \"added_tokens\" is not an array", path);
    /* Older hand-made files with no "pre_tokenizer" key at all meant GPT-2's
     * byte-level BPE here; Hugging Face itself reads that as "none". A file
     * with a normalizer or a decoder is read as Hugging Face reads it. */
    int legacy = !json_object_get(root, "pre_tokenizer") && !json_object_get(root, "normalizer") &&
                 !json_object_get(root, "decoder") && !json_object_get(model, "byte_fallback");
    bd->byte_level = t->byte_level = legacy || has_byte_level(pre);
    int rc = parse_model_options(bd, model);
    if (!rc && legacy)
        rc = align__tok_add_split(t, GPT2_PATTERN, strlen(GPT2_PATTERN), 0);
    if (!rc && !legacy)
        rc = parse_pre(t, pre, path, 0);
    if (!rc)
        rc = parse_norm(t, json_object_get(root, "normalizer"), path, 0);
    hf_dec d;
    memset(&d, 0, sizeof d);
    if (!rc)
        rc = parse_dec(t, &d, json_object_get(root, "decoder"), path, 0);
    if (rc)
        return rc;
    /* added tokens: their ids may lie beyond model.vocab */
    int32_t extra_max = -1;
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 100000000 ||
            !json_is_string(content) || json_string_length(content) == 0)
            return align__error(NULL, ALIGN_EFORMAT, "%s: added_tokens[%zu] needs an \"id\" and a \"content\"", path,
                                i);
        extra_max = ALIGN__MAX(extra_max, (int32_t)json_integer_value(id));
    }
    /* a vocab entry duplicated as an added token is set once, as added */
    json_t *vc = json_deep_copy(json_object_get(model, "vocab"));
    if (!vc)
        return align__error(NULL, ALIGN_EFORMAT, "%s: no \"model.vocab\" object", path);
    json_array_foreach(added, i, a) {
        const char *c = json_string_value(json_object_get(a, "content"));
        json_t *v = json_object_get(vc, c);
        if (v && json_integer_value(v) == json_integer_value(json_object_get(a, "id")))
            json_object_del(vc, c);
    }
    rc = align__tok_load_vocab_object(bd, vc, extra_max, json_array_size(added));
    json_decref(vc);
    if (!rc)
        rc = load_added(bd, added);
    if (!rc)
        rc = align__tok_index_vocab(bd);
    json_t *unk = json_object_get(model, "unk_token");
    if (!rc && json_is_string(unk)) {
        t->unk = align__tok_map_find(t, json_string_value(unk), json_string_length(unk));
        for (int32_t id = 0; t->unk < 0 && id < t->n_vocab; id++)
            if (t->is_special[id] && (size_t)t->tok_len[id] == json_string_length(unk) &&
                !memcmp(t->bytes + t->tok_off[id], json_string_value(unk), json_string_length(unk)))
                t->unk = id;
        if (t->unk < 0)
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: unk_token \"%.64s\" is not in the vocabulary", path,
                              json_string_value(unk));
    }
    if (!rc && !t->byte_level)
        rc = build_decoded(bd, &d);
    json_t *merges = json_object_get(model, "merges");
    if (!rc && !json_is_array(merges))
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no \"model.merges\" array", path);
    if (!rc)
        rc = load_merges(bd, merges);
    return rc;
}

int align__tok_load_hf(align_tokenizer **out, const char *path)
{
    json_t *root = NULL;
    int rc = align__tok_load_json(path, &root);
    if (rc)
        return rc;
    tok_builder bd;
    rc = align__tok_builder_init(&bd, path);
    if (rc) {
        json_decref(root);
        return rc;
    }
    rc = load_root(&bd, root);
    json_decref(root);
    if (rc)
        return align__tok_builder_fail(&bd, rc);
    char *eos = config_eos(path);
    rc = align__tok_finish(&bd, eos, out);
    align__free(eos);
    return rc ? align__tok_builder_fail(&bd, rc) : ALIGN_OK;
}
