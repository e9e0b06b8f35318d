/*
 * tokenizer.c — the public tokenizer API: loading, the byte tokenizer, and
 * the encode pipeline shared by every BPE tokenizer (docs/tokenizer.md):
 *
 *   1. added tokens are cut out of the text first (special ones only with
 *      ALIGN_TOKENIZE_SPECIAL), with their lstrip/rstrip;
 *   2. each stretch between them is split into maximal valid UTF-8 runs; an
 *      invalid byte is a piece of its own (Hugging Face never sees invalid
 *      UTF-8: its input is a Rust/Python string; keeping the stray byte as a
 *      byte token keeps every byte, so decode(encode(x)) == x for any bytes);
 *   3. the normalizer (Prepend, Replace) rewrites each run (NFC checks it);
 *   4. the pre-tokenizer steps (regex splits, ByteLevel's prefix space,
 *      Metaspace) cut it into pieces;
 *   5. the BPE model encodes each piece: byte-level symbols (ByteLevel) or
 *      characters with byte fallback / unk (SentencePiece-style), merged by
 *      rank (tok_bpe.c).
 * Decoding concatenates each id's decoded bytes (tokens are stored decoded)
 * and applies the decoder's leading Strip.
 */
#include "data/tok_internal.h"
#include "data/utf8.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

ALIGN_API void align_tokenizer_free(align_tokenizer *t)
{
    if (!t)
        return;
    align__free(t->tok_off);
    align__free(t->tok_len);
    align__free(t->bytes);
    align__free(t->dec_off);
    align__free(t->dec_len);
    align__free(t->dec_bytes);
    align__free(t->is_special);
    align__free(t->map);
    align__free(t->pair_key);
    align__free(t->pair_rank);
    align__free(t->pair_out);
    align__free(t->specials);
    align__tok_free_pipeline(t);
    align__free(t);
}

ALIGN_API int align_tokenizer_load(align_tokenizer **out, const char *path)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "out is NULL");
    *out = NULL;
    if (!path || !*path)
        return align__error(NULL, ALIGN_EINVAL, "no tokenizer path given");
    struct stat st;
    if (stat(path, &st) != 0)
        return align__error(NULL, ALIGN_ENOENT, "%s: no such file or folder", path);
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + 32;
        char *enc = align__malloc(n), *bpe = align__malloc(n), *hf = align__malloc(n);
        int rc = ALIGN_ENOMEM;
        if (enc && bpe && hf) {
            snprintf(enc, n, "%s/encoder.json", path);
            snprintf(bpe, n, "%s/vocab.bpe", path);
            snprintf(hf, n, "%s/tokenizer.json", path);
            if (stat(enc, &st) == 0 && stat(bpe, &st) == 0)
                rc = align_tokenizer_load_gpt2(out, enc, bpe);
            else if (stat(hf, &st) == 0)
                rc = align__tok_load_hf(out, hf);
            else
                rc = align__error(NULL, ALIGN_ENOENT, "%s: holds neither encoder.json + vocab.bpe nor tokenizer.json",
                                  path);
        } else {
            align__error(NULL, rc, "out of memory");
        }
        align__free(enc);
        align__free(bpe);
        align__free(hf);
        return rc;
    }
    return align__tok_load_hf(out, path);
}

ALIGN_API int align_tokenizer_bytes(align_tokenizer **out)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "out is NULL");
    *out = NULL;
    align_tokenizer *t = align__calloc(1, sizeof *t);
    if (!t)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    t->kind = TOK_BYTES;
    t->n_vocab = 257;
    t->eot = 256;
    *out = t;
    return ALIGN_OK;
}

ALIGN_API int32_t align_tokenizer_vocab_size(const align_tokenizer *t)
{
    return t ? t->n_vocab : 0;
}

ALIGN_API int32_t align_tokenizer_eot(const align_tokenizer *t)
{
    return t ? t->eot : -1;
}

/* ---- encoding ---------------------------------------------------------------- */

typedef struct piece {
    size_t off, len;
    int first; /* starts at offset 0 of the caller's text (Metaspace "first") */
} piece;

typedef struct enc_ctx {
    const align_tokenizer *t;
    int32_t *ids;
    size_t cap, n;
    bpe_ctx bpe;
    pcre2_match_data *md;
    char *buf;          /* normalized text, then rewritten pieces (offsets, so it may move) */
    size_t blen, bcap;
    char *tmp;          /* normalizer scratch */
    size_t tcap;
    piece *pa, *pb;     /* pieces before / after a pre-tokenizer step */
    size_t na, nb, pacap, pbcap;
} enc_ctx;

static inline void emit(enc_ctx *c, int32_t id)
{
    if (c->n < c->cap)
        c->ids[c->n] = id;
    c->n++;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return ALIGN_OK;
    size_t nc = ALIGN__MAX(need, *cap * 2 + 64);
    void *q = align__realloc(*p, nc * elem);
    if (!q)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    *p = q;
    *cap = nc;
    return ALIGN_OK;
}

static int buf_append(enc_ctx *c, const char *s, size_t n)
{
    int rc = grow((void **)&c->buf, &c->bcap, c->blen + n, 1);
    if (rc)
        return rc;
    memcpy(c->buf + c->blen, s, n);
    c->blen += n;
    return ALIGN_OK;
}

static int push_piece(enc_ctx *c, size_t off, size_t len, int first)
{
    if (!len)
        return ALIGN_OK;
    int rc = grow((void **)&c->pb, &c->pbcap, c->nb + 1, sizeof *c->pb);
    if (rc)
        return rc;
    c->pb[c->nb++] = (piece){ off, len, first };
    return ALIGN_OK;
}

/* A character with no token: byte fallback, else unk, else an error. */
static int unknown_char(enc_ctx *c, const unsigned char *s, size_t l, size_t *k, int *last_unk)
{
    const align_tokenizer *t = c->t;
    int ok = t->byte_fallback;
    for (size_t j = 0; ok && j < l; j++)
        ok = t->byte_id[s[j]] >= 0;
    if (ok) {
        for (size_t j = 0; j < l; j++)
            c->bpe.sym[(*k)++] = t->byte_id[s[j]];
        *last_unk = 0;
        return ALIGN_OK;
    }
    if (t->unk >= 0) {
        if (!(t->fuse_unk && *last_unk))
            c->bpe.sym[(*k)++] = t->unk;
        *last_unk = 1;
        return ALIGN_OK;
    }
    if (align__utf8_seq(s, l) != l) /* a stray byte of invalid UTF-8 */
        return align__error(NULL, ALIGN_EFORMAT, "byte 0x%02x has no token in this vocabulary (and the model has "
                            "neither byte_fallback nor unk_token)", s[0]);
    return align__error(NULL, ALIGN_EFORMAT, "character U+%04X has no token in this vocabulary (and the model has "
                        "neither byte_fallback nor unk_token)", (unsigned)align__utf8_decode(s, l));
}

/* One piece through the BPE model. s may be invalid UTF-8 only as a single
 * stray byte (step 2 above). */
static int model_piece(enc_ctx *c, const unsigned char *s, size_t n)
{
    const align_tokenizer *t = c->t;
    if (!n)
        return ALIGN_OK;
    if (n == 1 && t->byte_level && t->byte_id[s[0]] >= 0) { /* spaces, punctuation: no merge to try */
        emit(c, t->byte_id[s[0]]);
        return ALIGN_OK;
    }
    if (t->ignore_merges) { /* Llama-3: a whole piece in the vocabulary is that token */
        int32_t id = align__tok_map_find(t, (const char *)s, n);
        if (id >= 0) {
            emit(c, id);
            return ALIGN_OK;
        }
    }
    int rc = align__bpe_reserve(&c->bpe, n);
    if (rc)
        return rc;
    size_t k = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) {
            if (t->byte_id[s[i]] < 0)
                return align__error(NULL, ALIGN_EFORMAT, "byte 0x%02x has no token in this vocabulary", s[i]);
            c->bpe.sym[k++] = t->byte_id[s[i]];
        }
    } else {
        int last_unk = 0;
        for (size_t i = 0; i < n;) {
            size_t l = align__utf8_seq(s + i, n - i);
            if (!l)
                l = 1;
            int32_t id = align__tok_map_find(t, (const char *)s + i, l);
            if (id >= 0) {
                c->bpe.sym[k++] = id;
                last_unk = 0;
            } else if ((rc = unknown_char(c, s + i, l, &k, &last_unk))) {
                return rc;
            }
            i += l;
        }
    }
    align__bpe_merge(&c->bpe, t, k);
    for (int32_t i = 0; k && i >= 0; i = c->bpe.next[i])
        emit(c, c->bpe.sym[i]);
    return ALIGN_OK;
}


/* A piece out of a step: kept for the next step, or (last: the common case
 * of GPT-2 and Llama-3, one regex) handed to the model at once. */
static int out_piece(enc_ctx *c, size_t off, size_t len, int first, int last)
{
    if (last)
        return len ? model_piece(c, (const unsigned char *)c->buf + off, len) : ALIGN_OK;
    return push_piece(c, off, len, first);
}

/* Isolated split of every piece in pa by re: matches and the text between
 * them become pieces (empty ones dropped), as Hugging Face's Split. */
static int step_split(enc_ctx *c, const tok_pre *p, int last_step)
{
    for (size_t k = 0; k < c->na; k++) {
        piece pc = c->pa[k];
        const unsigned char *s = (const unsigned char *)c->buf + pc.off;
        size_t off = 0, last = 0;
        while (off < pc.len) {
            int r = p->jit ? pcre2_jit_match(p->re, s, pc.len, off, PCRE2_NO_UTF_CHECK, c->md, NULL)
                           : pcre2_match(p->re, s, pc.len, off, PCRE2_NO_UTF_CHECK, c->md, NULL);
            if (r == PCRE2_ERROR_NOMATCH)
                break;
            if (r < 0)
                return align__error(NULL, ALIGN_EINTERNAL, "PCRE2 match failed (%d)", r);
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
            size_t b = ov[0], e = ov[1];
            if (e <= b) { /* an empty match cuts nothing: go on one character later */
                off = b + ALIGN__MAX(align__utf8_seq(s + b, pc.len - b), 1);
                continue;
            }
            int rc = out_piece(c, pc.off + last, b - last, pc.first && last == 0, last_step);
            if (!rc)
                rc = out_piece(c, pc.off + b, e - b, pc.first && b == 0, last_step);
            if (rc)
                return rc;
            off = last = e;
        }
        int rc = out_piece(c, pc.off + last, pc.len - last, pc.first && last == 0, last_step);
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

/* ByteLevel's add_prefix_space: a piece not starting with ' ' gets one. */
static int step_prefix_space(enc_ctx *c)
{
    for (size_t k = 0; k < c->na; k++) {
        piece pc = c->pa[k];
        int rc;
        if (c->buf[pc.off] == ' ') {
            rc = push_piece(c, pc.off, pc.len, pc.first);
        } else {
            size_t at = c->blen;
            rc = grow((void **)&c->buf, &c->bcap, c->blen + pc.len + 1, 1);
            if (!rc) {
                c->buf[c->blen++] = ' ';
                memcpy(c->buf + c->blen, c->buf + pc.off, pc.len);
                c->blen += pc.len;
                rc = push_piece(c, at, pc.len + 1, pc.first);
            }
        }
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

/* Metaspace: ' ' becomes the replacement, which is prepended (scheme
 * "always", or "first" on the piece at the start of the text) unless the
 * piece starts with it. Its split (if any) is a separate PRE_SPLIT step. */
static int step_metaspace(enc_ctx *c, const tok_pre *p)
{
    for (size_t k = 0; k < c->na; k++) {
        piece pc = c->pa[k];
        size_t at = c->blen;
        int rc = grow((void **)&c->buf, &c->bcap, c->blen + (pc.len + 1) * p->repl_len, 1);
        if (rc)
            return rc;
        const char *s = c->buf + pc.off;
        int starts = pc.len >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0;
        if (!starts && s[0] != ' ' && (p->prepend == 2 || (p->prepend == 1 && pc.first))) {
            memcpy(c->buf + c->blen, p->repl, p->repl_len);
            c->blen += p->repl_len;
        }
        for (size_t i = 0; i < pc.len; i++) {
            if (s[i] == ' ') {
                memcpy(c->buf + c->blen, p->repl, p->repl_len);
                c->blen += p->repl_len;
            } else {
                c->buf[c->blen++] = s[i];
            }
        }
        if ((rc = push_piece(c, at, c->blen - at, pc.first)))
            return rc;
    }
    return ALIGN_OK;
}

/* The normalizer over s[0..n) into c->buf (blen = its length). seg_start:
 * s starts a stretch between added tokens (Prepend applies once there). */
static int normalize(enc_ctx *c, const char *s, size_t n, int seg_start)
{
    const align_tokenizer *t = c->t;
    c->blen = 0;
    int rc = buf_append(c, s, n);
    for (int k = 0; k < t->n_norm && !rc; k++) {
        const tok_norm *m = &t->norm[k];
        if (m->type == NORM_NFC) {
            rc = align__tok_nfc_check(c->buf, c->blen);
        } else if (m->type == NORM_PREPEND) {
            if (!seg_start || !c->blen)
                continue;
            rc = grow((void **)&c->buf, &c->bcap, c->blen + m->alen, 1);
            if (!rc) {
                memmove(c->buf + m->alen, c->buf, c->blen);
                memcpy(c->buf, m->a, m->alen);
                c->blen += m->alen;
            }
        } else { /* NORM_REPLACE: every occurrence, left to right, not overlapping */
            size_t cnt = 0;
            for (size_t i = 0; i + m->alen <= c->blen;)
                i += memcmp(c->buf + i, m->a, m->alen) == 0 ? (cnt++, m->alen) : 1;
            if (!cnt)
                continue;
            size_t nl = c->blen + cnt * m->blen;
            if ((rc = grow((void **)&c->tmp, &c->tcap, nl, 1)))
                break;
            size_t o = 0;
            for (size_t i = 0; i < c->blen;) {
                if (i + m->alen <= c->blen && memcmp(c->buf + i, m->a, m->alen) == 0) {
                    memcpy(c->tmp + o, m->b, m->blen);
                    o += m->blen;
                    i += m->alen;
                } else {
                    c->tmp[o++] = c->buf[i++];
                }
            }
            if ((rc = grow((void **)&c->buf, &c->bcap, o, 1)))
                break;
            memcpy(c->buf, c->tmp, o);
            c->blen = o;
        }
    }
    return rc;
}

/* One valid UTF-8 run: normalizer, pre-tokenizer, model. */
static int encode_run(enc_ctx *c, const char *s, size_t n, int at_start, int seg_start)
{
    const align_tokenizer *t = c->t;
    int rc = normalize(c, s, n, seg_start);
    if (rc || !c->blen)
        return rc;
    c->na = 0;
    c->nb = 0;
    if ((rc = push_piece(c, 0, c->blen, at_start)))
        return rc;
    for (int k = 0; k < t->n_pre; k++) {
        piece *sw = c->pa;
        size_t swc = c->pacap;
        c->pa = c->pb;
        c->pacap = c->pbcap;
        c->na = c->nb;
        c->pb = sw;
        c->pbcap = swc;
        c->nb = 0;
        const tok_pre *p = &t->pre[k];
        const int last = k == t->n_pre - 1 && p->type == PRE_SPLIT;
        rc = p->type == PRE_SPLIT ? step_split(c, p, last) : p->type == PRE_PREFIX_SPACE ? step_prefix_space(c)
                                                                                         : step_metaspace(c, p);
        if (rc || last)
            return rc;
    }
    for (size_t k = 0; k < c->nb && !rc; k++)
        rc = model_piece(c, (const unsigned char *)c->buf + c->pb[k].off, c->pb[k].len);
    return rc;
}

/* Text between added tokens. at_start: it starts the caller's text. */
static int encode_segment(enc_ctx *c, const unsigned char *s, size_t n, int at_start)
{
    if (c->t->kind == TOK_BYTES) {
        for (size_t i = 0; i < n; i++)
            emit(c, s[i]);
        return ALIGN_OK;
    }
    size_t i = 0;
    while (i < n) {
        size_t v = align__utf8_valid_prefix(s + i, n - i);
        if (v) {
            int rc = encode_run(c, (const char *)s + i, v, at_start && i == 0, i == 0);
            if (rc)
                return rc;
            i += v;
        }
        if (i < n) { /* one invalid byte: a piece of its own */
            int rc = model_piece(c, s + i, 1);
            if (rc)
                return rc;
            i++;
        }
    }
    return ALIGN_OK;
}

/* Added token at s (n bytes left) that flags allow: its id, or -1. */
static int32_t match_added(const align_tokenizer *t, const unsigned char *s, size_t n, uint32_t flags)
{
    if (t->kind == TOK_BYTES)
        return (flags & ALIGN_TOKENIZE_SPECIAL) && n >= strlen(EOT_TEXT) && memcmp(s, EOT_TEXT, strlen(EOT_TEXT)) == 0
                   ? t->eot : -1;
    if (!t->special_first[s[0]])
        return -1;
    for (int i = 0; i < t->n_specials; i++) {
        int32_t id = t->specials[i];
        size_t l = (size_t)t->tok_len[id];
        if ((t->is_special[id] & TOKF_SPECIAL) && !(flags & ALIGN_TOKENIZE_SPECIAL))
            continue;
        if (l <= n && memcmp(s, t->bytes + t->tok_off[id], l) == 0)
            return id;
    }
    return -1;
}

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

ALIGN_API int align_tokenize(const align_tokenizer *t, const char *text, size_t len, uint32_t flags, int32_t *ids,
                             size_t cap, size_t *n_out)
{
    if (n_out)
        *n_out = 0;
    if (!t || (!text && len) || (!ids && cap) || !n_out)
        return align__error(NULL, ALIGN_EINVAL, "align_tokenize: NULL argument");
    if (flags & ~ALIGN_TOKENIZE_SPECIAL)
        return align__error(NULL, ALIGN_EINVAL, "align_tokenize: unknown flags 0x%x", flags);
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.ids = ids;
    c.cap = cap;
    if (t->kind == TOK_BPE) {
        c.md = pcre2_match_data_create(1, NULL);
        if (!c.md)
            return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    const unsigned char *s = (const unsigned char *)text;
    int rc = ALIGN_OK;
    size_t start = 0;
    /* the scan for added tokens only when one could match */
    const int scan = (flags & ALIGN_TOKENIZE_SPECIAL) ? (t->kind == TOK_BYTES || t->n_specials > 0)
                                                      : t->n_plain_added > 0;
    for (size_t i = 0; scan && i < len && !rc;) {
        int32_t id = match_added(t, s + i, len - i, flags);
        if (id < 0) {
            i++;
            continue;
        }
        uint8_t f = t->kind == TOK_BYTES ? 0 : t->is_special[id];
        size_t end = i;
        while ((f & TOKF_LSTRIP) && end > start && is_space(s[end - 1]))
            end--;
        rc = encode_segment(&c, s + start, end - start, start == 0);
        emit(&c, id);
        i += t->kind == TOK_BYTES ? strlen(EOT_TEXT) : (size_t)t->tok_len[id];
        while ((f & TOKF_RSTRIP) && i < len && is_space(s[i]))
            i++;
        start = i;
    }
    if (!rc)
        rc = encode_segment(&c, s + start, len - start, start == 0);
    align__bpe_free(&c.bpe);
    align__free(c.buf);
    align__free(c.tmp);
    align__free(c.pa);
    align__free(c.pb);
    if (c.md)
        pcre2_match_data_free(c.md);
    if (rc)
        return rc;
    *n_out = c.n;
    if (c.n > cap && cap == 0) /* a size query, not a failure: no message (docs/conventions.md) */
        return ALIGN_ERANGE;
    if (c.n > cap)
        return align__error(NULL, ALIGN_ERANGE, "align_tokenize: %zu ids do not fit in %zu", c.n, cap);
    return ALIGN_OK;
}

ALIGN_API int align_detokenize(const align_tokenizer *t, const int32_t *ids, size_t n, char *buf, size_t cap,
                               size_t *len_out)
{
    if (len_out)
        *len_out = 0;
    if (!t || (!ids && n) || (!buf && cap) || !len_out)
        return align__error(NULL, ALIGN_EINVAL, "align_detokenize: NULL argument");
    size_t total = 0;
    int strip = t->strip_start;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        const char *src;
        size_t l;
        if (id < 0 || id >= t->n_vocab || (t->kind == TOK_BPE && t->tok_len[id] < 0))
            return align__error(NULL, ALIGN_EINVAL, "align_detokenize: id %d at %zu is not in the vocabulary",
                                (int)id, i);
        if (t->kind == TOK_BYTES) {
            if (id != t->eot) { /* the common case, without a memcpy per byte */
                if (total + 1 < cap)
                    buf[total] = (char)id;
                total++;
                continue;
            }
            src = EOT_TEXT;
            l = strlen(EOT_TEXT);
        } else if (t->dec_off) {
            src = t->dec_bytes + t->dec_off[id];
            l = (size_t)t->dec_len[id];
        } else {
            src = t->bytes + t->tok_off[id];
            l = (size_t)t->tok_len[id];
        }
        /* the decoder's Strip: leading copies of strip_char of the whole text */
        while (strip > 0 && total == 0 && l > 0 && *src == t->strip_char) {
            src++;
            l--;
            strip--;
        }
        if (l)
            strip = 0;
        if (total + l < cap)
            memcpy(buf + total, src, l);
        total += l;
    }
    *len_out = total;
    if (total >= cap) {
        if (cap)
            buf[0] = '\0';
        if (cap == 0) /* a size query, not a failure: no message */
            return ALIGN_ERANGE;
        return align__error(NULL, ALIGN_ERANGE, "align_detokenize: %zu bytes and NUL do not fit in %zu", total, cap);
    }
    buf[total] = '\0';
    return ALIGN_OK;
}
