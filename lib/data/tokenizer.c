/*
 * tokenizer.c — GPT-2 byte-level BPE and the 256-symbol byte tokenizer.
 *
 * GPT-2 maps every byte to a printable Unicode character (bytes_to_unicode),
 * so its vocabulary files hold strings of those characters. We undo that
 * mapping once at load time: every token is stored as the raw bytes it
 * stands for, merges become pairs of token ids, and encoding works on bytes
 * and ids only. The result is the same as GPT-2's, without re-mapping text
 * on every call.
 *
 * Encoding (docs/tokenizer.md):
 *   1. with ALIGN_TOKENIZE_SPECIAL, special tokens are cut out first;
 *   2. the text is split into maximal valid UTF-8 runs; each invalid byte is a
 *      piece of its own (GPT-2 itself never sees invalid UTF-8: its input is a
 *      Python str; treating the stray byte as one byte-token keeps every byte
 *      and makes decode(encode(x)) == x for any bytes);
 *   3. each run is cut into pieces by GPT-2's pattern (PCRE2, UTF + UCP);
 *   4. each piece starts as one token per byte and the adjacent pair with the
 *      lowest merge rank is merged until none is left (a min-heap over a linked
 *      list: O(n log n) per piece, so long runs of one character stay fast).
 */
#include "core/core.h"
#include "data/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum { TOK_BYTES = 0, TOK_BPE = 1 };

#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define EOT_TEXT "<|endoftext|>"

struct align_tokenizer {
    int kind;
    int32_t n_vocab;       /* max id + 1 */
    int32_t eot;           /* -1 if the vocabulary has none */
    /* per id: the raw bytes of the token (len -1 = id unused) */
    uint32_t *tok_off;
    int32_t *tok_len;
    char *bytes;
    size_t bytes_len, bytes_cap;
    uint8_t *is_special;   /* per id: added/special token (never produced by BPE) */
    /* bytes -> id for ordinary tokens (open addressing, -1 = empty) */
    int32_t *map;
    size_t map_cap;
    int32_t byte_id[256];  /* token of each single byte, -1 if none */
    /* merges: (left id, right id) -> rank, merged id */
    uint64_t *pair_key;    /* UINT64_MAX = empty */
    int32_t *pair_rank;
    int32_t *pair_out;
    size_t pair_cap;
    int32_t n_merges;
    /* special tokens recognised with ALIGN_TOKENIZE_SPECIAL, longest first */
    int32_t *specials;
    int32_t n_specials;
    uint8_t special_first[256]; /* first bytes of specials, a quick filter */
    pcre2_code *re;
    int jit;
};

/* ---- GPT-2 bytes_to_unicode --------------------------------------------- */

/* byte -> code point, as GPT-2's bytes_to_unicode(): printable Latin-1 bytes
 * map to themselves, the other 68 to 256, 257, ... in byte order. */
static void byte_to_unicode_table(uint32_t cp[256])
{
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = printable ? (uint32_t)b : 256 + n++;
    }
}

/* Converts a vocabulary string (byte-level characters) into raw bytes.
 * Returns the byte count, or -1 if a character is not a byte-level one. */
static long unicode_to_bytes(const uint32_t *inv, const char *s, size_t len, char *out)
{
    size_t i = 0;
    long n = 0;
    while (i < len) {
        size_t l = align__utf8_seq((const unsigned char *)s + i, len - i);
        if (l == 0)
            return -1;
        uint32_t c = align__utf8_decode((const unsigned char *)s + i, l);
        if (c >= 324 || inv[c] > 255)
            return -1;
        out[n++] = (char)inv[c];
        i += l;
    }
    return n;
}

/* ---- tables --------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* Id of the ordinary token with these bytes, or -1. */
static int32_t map_find(const align_tokenizer *t, const char *s, size_t n)
{
    if (!t->map)
        return -1;
    size_t mask = t->map_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->map[i];
        if (id < 0)
            return -1;
        if ((size_t)t->tok_len[id] == n && memcmp(t->bytes + t->tok_off[id], s, n) == 0)
            return id;
    }
}

static void map_insert(align_tokenizer *t, int32_t id)
{
    size_t mask = t->map_cap - 1;
    const char *s = t->bytes + t->tok_off[id];
    size_t n = (size_t)t->tok_len[id];
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        if (t->map[i] < 0) {
            t->map[i] = id;
            return;
        }
    }
}

static int pair_find(const align_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *out)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pair_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (t->pair_key[i] == UINT64_MAX)
            return 0;
        if (t->pair_key[i] == key) {
            *rank = t->pair_rank[i];
            *out = t->pair_out[i];
            return 1;
        }
    }
}

/* Inserts a merge unless the pair is already there (a repeated merge line
 * keeps its first, lowest rank — as a Python dict built from zip would not,
 * but GPT-2's files have no repeats and the lower rank is the sane choice). */
static void pair_insert(align_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t out)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pair_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (t->pair_key[i] == key)
            return;
        if (t->pair_key[i] == UINT64_MAX) {
            t->pair_key[i] = key;
            t->pair_rank[i] = rank;
            t->pair_out[i] = out;
            return;
        }
    }
}

ALIGN_API void align_tokenizer_free(align_tokenizer *t)
{
    if (!t)
        return;
    align__free(t->tok_off);
    align__free(t->tok_len);
    align__free(t->bytes);
    align__free(t->is_special);
    align__free(t->map);
    align__free(t->pair_key);
    align__free(t->pair_rank);
    align__free(t->pair_out);
    align__free(t->specials);
    if (t->re)
        pcre2_code_free(t->re);
    align__free(t);
}

/* ---- building a BPE tokenizer ---------------------------------------------- */

typedef struct builder {
    align_tokenizer *t;
    uint32_t inv[324];   /* code point -> byte (256 = none) */
    char *scratch;       /* conversion buffer */
    size_t scratch_cap;
    const char *path;    /* for messages */
} builder;

static int builder_init(builder *bd, const char *path)
{
    memset(bd, 0, sizeof *bd);
    bd->path = path;
    uint32_t cp[256];
    byte_to_unicode_table(cp);
    for (int i = 0; i < 324; i++)
        bd->inv[i] = 256;
    for (int b = 0; b < 256; b++)
        bd->inv[cp[b]] = (uint32_t)b;
    bd->t = align__calloc(1, sizeof *bd->t);
    if (!bd->t)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    bd->t->kind = TOK_BPE;
    bd->t->eot = -1;
    return ALIGN_OK;
}

static int ensure_scratch(builder *bd, size_t n)
{
    if (n <= bd->scratch_cap)
        return ALIGN_OK;
    char *p = align__realloc(bd->scratch, n);
    if (!p)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    bd->scratch = p;
    bd->scratch_cap = n;
    return ALIGN_OK;
}

/* Sets id's bytes. Byte-level strings are converted to raw bytes; strings
 * that are not byte-level (added tokens such as "<|im_start|>") are kept as
 * their UTF-8 text, which is what they decode to. */
static int set_token(builder *bd, int32_t id, const char *s, size_t len, int special)
{
    align_tokenizer *t = bd->t;
    if (id < 0 || id >= t->n_vocab)
        return align__error(NULL, ALIGN_EFORMAT, "%s: token id %d out of range", bd->path, (int)id);
    if (t->tok_len[id] >= 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: token id %d used twice", bd->path, (int)id);
    int rc = ensure_scratch(bd, len + 1);
    if (rc)
        return rc;
    long n = special ? -1 : unicode_to_bytes(bd->inv, s, len, bd->scratch);
    const char *src = bd->scratch;
    if (n < 0) {
        src = s;
        n = (long)len;
    }
    if (n == 0) /* a token must stand for at least one byte */
        return align__error(NULL, ALIGN_EFORMAT, "%s: token id %d is the empty string", bd->path, (int)id);
    if (t->bytes_len + (size_t)n > UINT32_MAX)
        return align__error(NULL, ALIGN_EFORMAT, "%s: vocabulary too large", bd->path);
    if (t->bytes_len + (size_t)n > t->bytes_cap) {
        size_t cap = ALIGN__MAX(t->bytes_cap * 2, t->bytes_len + (size_t)n + 4096);
        char *p = align__realloc(t->bytes, cap);
        if (!p)
            return align__error(NULL, ALIGN_ENOMEM, "out of memory");
        t->bytes = p;
        t->bytes_cap = cap;
    }
    memcpy(t->bytes + t->bytes_len, src, (size_t)n);
    t->tok_off[id] = (uint32_t)t->bytes_len;
    t->tok_len[id] = (int32_t)n;
    t->bytes_len += (size_t)n;
    t->is_special[id] = (uint8_t)(special != 0);
    return ALIGN_OK;
}

static int alloc_vocab(builder *bd, int32_t n_vocab)
{
    align_tokenizer *t = bd->t;
    t->n_vocab = n_vocab;
    t->tok_off = align__calloc((size_t)n_vocab, sizeof *t->tok_off);
    t->tok_len = align__malloc((size_t)n_vocab * sizeof *t->tok_len);
    t->is_special = align__calloc((size_t)n_vocab, 1);
    if (!t->tok_off || !t->tok_len || !t->is_special)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    for (int32_t i = 0; i < n_vocab; i++)
        t->tok_len[i] = -1;
    return ALIGN_OK;
}

/* After all tokens are set: the bytes -> id map and the byte table. */
static int index_vocab(builder *bd)
{
    align_tokenizer *t = bd->t;
    t->map_cap = pow2_at_least((size_t)t->n_vocab * 2);
    t->map = align__malloc(t->map_cap * sizeof *t->map);
    if (!t->map)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    memset(t->map, 0xff, t->map_cap * sizeof *t->map);
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->tok_len[id] < 0 || t->is_special[id])
            continue;
        if (map_find(t, t->bytes + t->tok_off[id], (size_t)t->tok_len[id]) >= 0)
            return align__error(NULL, ALIGN_EFORMAT, "%s: two tokens stand for the same bytes (id %d)",
                                bd->path, (int)id);
        map_insert(t, id);
        if (t->tok_len[id] == 1)
            t->byte_id[(unsigned char)t->bytes[t->tok_off[id]]] = id;
    }
    return ALIGN_OK;
}

static int alloc_merges(builder *bd, size_t n)
{
    align_tokenizer *t = bd->t;
    t->pair_cap = pow2_at_least(n * 2 + 1);
    t->pair_key = align__malloc(t->pair_cap * sizeof *t->pair_key);
    t->pair_rank = align__malloc(t->pair_cap * sizeof *t->pair_rank);
    t->pair_out = align__malloc(t->pair_cap * sizeof *t->pair_out);
    if (!t->pair_key || !t->pair_rank || !t->pair_out)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    memset(t->pair_key, 0xff, t->pair_cap * sizeof *t->pair_key);
    return ALIGN_OK;
}

/* Looks up a merge operand given as a vocabulary string. */
static int32_t find_operand(builder *bd, const char *s, size_t len)
{
    if (ensure_scratch(bd, len + 1))
        return -2;
    long n = unicode_to_bytes(bd->inv, s, len, bd->scratch);
    if (n < 0)
        return -1;
    return map_find(bd->t, bd->scratch, (size_t)n);
}

/* Adds merge number rank: "a b". The merged token must be in the vocabulary
 * (as Hugging Face requires), since BPE would otherwise emit an unknown id. */
static int add_merge(builder *bd, const char *a, size_t alen, const char *b, size_t blen, long line)
{
    align_tokenizer *t = bd->t;
    int32_t ia = find_operand(bd, a, alen);
    int32_t ib = find_operand(bd, b, blen);
    if (ia == -2 || ib == -2)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    if (ia < 0 || ib < 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: merge %ld: '%.*s' is not in the vocabulary",
                            bd->path, line, ia < 0 ? (int)ALIGN__MIN(alen, 64) : (int)ALIGN__MIN(blen, 64),
                            ia < 0 ? a : b);
    size_t la = (size_t)t->tok_len[ia], lb = (size_t)t->tok_len[ib];
    if (ensure_scratch(bd, la + lb + 1))
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    memcpy(bd->scratch, t->bytes + t->tok_off[ia], la);
    memcpy(bd->scratch + la, t->bytes + t->tok_off[ib], lb);
    int32_t out = map_find(t, bd->scratch, la + lb);
    if (out < 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: merge %ld: result '%.*s%.*s' is not in the vocabulary",
                            bd->path, line, (int)ALIGN__MIN(alen, 64), a, (int)ALIGN__MIN(blen, 64), b);
    int32_t r0, o0;
    if (pair_find(t, ia, ib, &r0, &o0))
        return align__error(NULL, ALIGN_EFORMAT, "%s: merge %ld repeats merge %d ('%.*s %.*s')", bd->path, line,
                            (int)r0, (int)ALIGN__MIN(alen, 64), a, (int)ALIGN__MIN(blen, 64), b);
    if ((size_t)t->n_merges * 2 + 1 >= t->pair_cap) /* cannot happen with distinct merges: see max_merges */
        return align__error(NULL, ALIGN_EFORMAT, "%s: merge %ld: more merges than the vocabulary allows",
                            bd->path, line);
    pair_insert(t, ia, ib, t->n_merges++, out);
    return ALIGN_OK;
}

/* Specials sorted longest first, so "<|a|>b" style overlaps pick the longest. */
static int finish(builder *bd, align_tokenizer **out)
{
    align_tokenizer *t = bd->t;
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n += t->is_special[id];
    if (n) {
        t->specials = align__malloc((size_t)n * sizeof *t->specials);
        if (!t->specials)
            return align__error(NULL, ALIGN_ENOMEM, "out of memory");
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (t->is_special[id] && t->tok_len[id] > 0) {
                /* insertion sort by length, descending: few specials */
                int j = t->n_specials++;
                while (j > 0 && t->tok_len[t->specials[j - 1]] < t->tok_len[id]) {
                    t->specials[j] = t->specials[j - 1];
                    j--;
                }
                t->specials[j] = id;
                t->special_first[(unsigned char)t->bytes[t->tok_off[id]]] = 1;
            }
        }
    }
    if (t->eot < 0) {
        int32_t id = map_find(t, EOT_TEXT, strlen(EOT_TEXT));
        for (int i = 0; id < 0 && i < t->n_specials; i++)
            if ((size_t)t->tok_len[t->specials[i]] == strlen(EOT_TEXT) &&
                memcmp(t->bytes + t->tok_off[t->specials[i]], EOT_TEXT, strlen(EOT_TEXT)) == 0)
                id = t->specials[i];
        t->eot = id;
    }
    int errcode;
    PCRE2_SIZE erroff;
    t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &errcode, &erroff, NULL);
    if (!t->re)
        return align__error(NULL, ALIGN_EINTERNAL, "cannot compile the GPT-2 pattern (PCRE2 error %d)", errcode);
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    align__free(bd->scratch);
    bd->scratch = NULL;
    *out = t;
    bd->t = NULL;
    return ALIGN_OK;
}

static int builder_fail(builder *bd, int rc)
{
    align_tokenizer_free(bd->t);
    align__free(bd->scratch);
    return rc;
}

/* Marks the GPT-2 end-of-text token special, so that it is only produced
 * when the caller asks (ALIGN_TOKENIZE_SPECIAL), as tiktoken does. */
static void mark_eot_special(align_tokenizer *t)
{
    int32_t id = map_find(t, EOT_TEXT, strlen(EOT_TEXT));
    if (id < 0)
        return;
    t->eot = id;
    t->is_special[id] = 1;
    /* take it out of the ordinary map: rebuild (cheap, once per load) */
    memset(t->map, 0xff, t->map_cap * sizeof *t->map);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->tok_len[i] >= 0 && !t->is_special[i])
            map_insert(t, i);
}

/* ---- loading --------------------------------------------------------------- */

static int load_json(const char *path, json_t **out)
{
    char *data = NULL;
    size_t len = 0;
    int rc = align__read_file(NULL, path, &data, &len);
    if (rc)
        return rc;
    json_error_t err;
    /* a repeated key would silently drop one token (jansson keeps the last) */
    *out = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
    align__free(data);
    if (!*out)
        return align__error(NULL, ALIGN_EFORMAT, "%s:%d: %s", path, err.line, err.text);
    return ALIGN_OK;
}

/* model.vocab / encoder.json: {"token": id, ...}. Sizes the vocabulary to
 * cover extra ids too (added tokens). Every id must be below the number of
 * tokens the file defines (n_extra more for added tokens): the allocation is
 * then bounded by the file's own contents, so one id of 1e8 in a 3 KB file
 * is an error rather than 1.4 GB of tables (docs/reliability.md). */
static int load_vocab_object(builder *bd, json_t *vocab, int32_t extra_max, size_t n_extra)
{
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: vocabulary is not a non-empty object", bd->path);
    size_t n_tokens = json_object_size(vocab) + n_extra;
    if (n_tokens > INT32_MAX / 2)
        return align__error(NULL, ALIGN_EFORMAT, "%s: vocabulary too large (%zu tokens)", bd->path, n_tokens);
    /* Ids may leave holes (unused ids: some published vocabularies have
     * them), but the table the ids index is bounded by the file's own size:
     * at most twice the tokens it defines, plus 1024. */
    const size_t id_limit = n_tokens + ALIGN__MAX(n_tokens, (size_t)1024);
    int32_t max_id = extra_max;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return align__error(NULL, ALIGN_EFORMAT, "%s: id of token '%.64s' is not a valid integer",
                                bd->path, key);
        if ((uint64_t)json_integer_value(v) >= id_limit)
            return align__error(NULL, ALIGN_EFORMAT,
                                "%s: id %lld of token '%.64s' is too large for a vocabulary of %zu tokens "
                                "(ids must be below %zu)",
                                bd->path, (long long)json_integer_value(v), key, n_tokens, id_limit);
        max_id = ALIGN__MAX(max_id, (int32_t)json_integer_value(v));
    }
    if ((size_t)max_id >= id_limit)
        return align__error(NULL, ALIGN_EFORMAT, "%s: added token id %d is too large for a vocabulary of %zu "
                            "tokens (ids must be below %zu)", bd->path, (int)max_id, n_tokens, id_limit);
    int rc = alloc_vocab(bd, max_id + 1);
    if (rc)
        return rc;
    size_t klen;
    json_object_keylen_foreach(vocab, key, klen, v) {
        rc = set_token(bd, (int32_t)json_integer_value(v), key, klen, 0);
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

/* An upper bound on the distinct merges a vocabulary allows: a merge's
 * result is a token, and a token of k bytes can be split in k-1 ways. With
 * repeated merges refused, the merge table is sized by the vocabulary, not by
 * the line count of the file (50 MB of blank lines once took 1.1 GB). */
static size_t max_merges(const align_tokenizer *t)
{
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok_len[id] > 1 && !t->is_special[id])
            n += (size_t)t->tok_len[id] - 1;
    return n;
}

static int load_vocab_bpe(builder *bd, const char *path)
{
    char *data = NULL;
    size_t len = 0;
    int rc = align__read_file(NULL, path, &data, &len);
    if (rc)
        return rc;
    size_t n_lines = 0; /* lines that may hold a merge: at least 3 bytes, "a b" */
    for (const char *p = data, *end = data + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        n_lines += eol - p >= 3;
        p = eol + 1;
    }
    rc = alloc_merges(bd, ALIGN__MIN(n_lines, max_merges(bd->t)));
    const char *p = data, *end = data + len;
    long line = 0;
    while (!rc && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        line++;
        const char *q = p, *e = eol;
        if (e > q && e[-1] == '\r')
            e--;
        p = eol + 1;
        if (e == q || (line == 1 && *q == '#'))
            continue; /* "#version: 0.2" header and blank lines */
        const char *sp = memchr(q, ' ', (size_t)(e - q));
        if (!sp || sp == q || sp + 1 >= e || memchr(sp + 1, ' ', (size_t)(e - sp - 1)))
            rc = align__error(NULL, ALIGN_EFORMAT, "%s:%ld: expected two tokens separated by one space", path, line);
        else
            rc = add_merge(bd, q, (size_t)(sp - q), sp + 1, (size_t)(e - sp - 1), line);
    }
    align__free(data);
    return rc;
}

ALIGN_API int align_tokenizer_load_gpt2(align_tokenizer **out, const char *encoder_json, const char *vocab_bpe)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "out is NULL");
    *out = NULL;
    if (!encoder_json || !vocab_bpe)
        return align__error(NULL, ALIGN_EINVAL, "encoder_json and vocab_bpe paths are required");
    builder bd;
    int rc = builder_init(&bd, encoder_json);
    if (rc)
        return rc;
    json_t *enc = NULL;
    rc = load_json(encoder_json, &enc);
    if (!rc)
        rc = load_vocab_object(&bd, enc, -1, 0);
    json_decref(enc);
    if (!rc)
        rc = index_vocab(&bd);
    bd.path = vocab_bpe;
    if (!rc)
        rc = load_vocab_bpe(&bd, vocab_bpe);
    if (rc)
        return builder_fail(&bd, rc);
    mark_eot_special(bd.t);
    rc = finish(&bd, out);
    return rc ? builder_fail(&bd, rc) : ALIGN_OK;
}

static int load_hf(align_tokenizer **out, const char *path)
{
    json_t *root = NULL;
    int rc = load_json(path, &root);
    if (rc)
        return rc;
    builder bd;
    rc = builder_init(&bd, path);
    if (rc) {
        json_decref(root);
        return rc;
    }
    json_t *model = json_object_get(root, "model");
    json_t *type = json_object_get(model, "type");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no \"model\" object", path);
    } else if (type && !(json_is_string(type) && strcmp(json_string_value(type), "BPE") == 0)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: model type is not \"BPE\"", path);
    } else if (added && !json_is_array(added)) {
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: \"added_tokens\" is not an array", path);
    }
    /* added tokens: their ids may lie beyond model.vocab */
    int32_t extra_max = -1;
    size_t i;
    json_t *a;
    if (!rc && added) {
        json_array_foreach(added, i, a) {
            json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 100000000 ||
                !json_is_string(content) || json_string_length(content) == 0) {
                rc = align__error(NULL, ALIGN_EFORMAT, "%s: added_tokens[%zu] needs an \"id\" and a \"content\"",
                                  path, i);
                break;
            }
            extra_max = ALIGN__MAX(extra_max, (int32_t)json_integer_value(id));
        }
    }
    if (!rc) {
        /* a vocab entry duplicated as an added token is set once, as special */
        json_t *vocab = json_object_get(model, "vocab");
        json_t *vc = json_deep_copy(vocab);
        if (!vc) {
            rc = align__error(NULL, ALIGN_EFORMAT, "%s: no \"model.vocab\" object", path);
        } else {
            json_array_foreach(added, i, a) {
                const char *c = json_string_value(json_object_get(a, "content"));
                json_t *v = json_object_get(vc, c);
                if (v && json_integer_value(v) == json_integer_value(json_object_get(a, "id")))
                    json_object_del(vc, c);
            }
            rc = load_vocab_object(&bd, vc, extra_max, added ? json_array_size(added) : 0);
            json_decref(vc);
        }
    }
    if (!rc && added) {
        json_array_foreach(added, i, a) {
            json_t *c = json_object_get(a, "content");
            rc = set_token(&bd, (int32_t)json_integer_value(json_object_get(a, "id")), json_string_value(c),
                           json_string_length(c), 1);
            if (rc)
                break;
        }
    }
    if (!rc)
        rc = index_vocab(&bd);
    json_t *merges = json_object_get(model, "merges");
    if (!rc && !json_is_array(merges))
        rc = align__error(NULL, ALIGN_EFORMAT, "%s: no \"model.merges\" array", path);
    if (!rc)
        rc = alloc_merges(&bd, ALIGN__MIN(json_array_size(merges), max_merges(bd.t)));
    json_t *m;
    if (!rc) {
        json_array_foreach(merges, i, m) {
            /* "a b" (older files) or ["a", "b"] (newer ones, which allow spaces) */
            if (json_is_string(m)) {
                const char *s = json_string_value(m);
                size_t len = json_string_length(m);
                const char *sp = memchr(s, ' ', len);
                if (!sp || sp == s || sp + 1 >= s + len) {
                    rc = align__error(NULL, ALIGN_EFORMAT, "%s: merges[%zu] is not \"a b\"", path, i);
                    break;
                }
                rc = add_merge(&bd, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, (long)i);
            } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                       json_is_string(json_array_get(m, 1))) {
                json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
                rc = add_merge(&bd, json_string_value(x), json_string_length(x), json_string_value(y),
                               json_string_length(y), (long)i);
            } else {
                rc = align__error(NULL, ALIGN_EFORMAT, "%s: merges[%zu] is neither \"a b\" nor [a, b]", path, i);
            }
            if (rc)
                break;
        }
    }
    json_decref(root);
    if (rc)
        return builder_fail(&bd, rc);
    rc = finish(&bd, out);
    return rc ? builder_fail(&bd, rc) : ALIGN_OK;
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
                rc = load_hf(out, hf);
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
    return load_hf(out, path);
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

typedef struct heap_ent {
    int32_t rank, pos, left, right;
} heap_ent;

typedef struct enc_ctx {
    const align_tokenizer *t;
    int32_t *ids;
    size_t cap, n;
    /* BPE scratch, grown to the longest piece */
    int32_t *sym, *prev, *next;
    heap_ent *heap;
    size_t scap, hcap, hn;
    pcre2_match_data *md;
} enc_ctx;

static inline void emit(enc_ctx *c, int32_t id)
{
    if (c->n < c->cap)
        c->ids[c->n] = id;
    c->n++;
}

static inline int heap_less(const heap_ent *a, const heap_ent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(enc_ctx *c, heap_ent e)
{
    size_t i = c->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &c->heap[p]))
            break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = e;
}

static heap_ent heap_pop(enc_ctx *c)
{
    heap_ent top = c->heap[0], last = c->heap[--c->hn];
    size_t i = 0, n = c->hn;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = (l + 1 < n && heap_less(&c->heap[l + 1], &c->heap[l])) ? l + 1 : l;
        if (!heap_less(&c->heap[m], &last))
            break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n)
        c->heap[i] = last;
    return top;
}

static void push_pair(enc_ctx *c, int32_t pos)
{
    if (pos < 0)
        return;
    int32_t nx = c->next[pos];
    if (nx < 0)
        return;
    int32_t rank, out;
    if (pair_find(c->t, c->sym[pos], c->sym[nx], &rank, &out)) {
        heap_ent e = { rank, pos, c->sym[pos], c->sym[nx] };
        heap_push(c, e);
    }
}

static int bpe_piece(enc_ctx *c, const unsigned char *s, size_t n)
{
    const align_tokenizer *t = c->t;
    if (n == 1 || !t->pair_cap) {
        for (size_t i = 0; i < n; i++) {
            if (t->byte_id[s[i]] < 0)
                return align__error(NULL, ALIGN_EFORMAT, "byte 0x%02x has no token in this vocabulary", s[i]);
            emit(c, t->byte_id[s[i]]);
        }
        return ALIGN_OK;
    }
    if (n > c->scap) {
        size_t cap = ALIGN__MAX(n, c->scap * 2);
        int32_t *a = align__realloc(c->sym, cap * sizeof *a);
        if (a) c->sym = a;
        int32_t *b = align__realloc(c->prev, cap * sizeof *b);
        if (b) c->prev = b;
        int32_t *d = align__realloc(c->next, cap * sizeof *d);
        if (d) c->next = d;
        heap_ent *h = align__realloc(c->heap, cap * 2 * sizeof *h);
        if (h) c->heap = h;
        if (!a || !b || !d || !h)
            return align__error(NULL, ALIGN_ENOMEM, "out of memory");
        c->scap = cap;
        c->hcap = cap * 2;
    }
    for (size_t i = 0; i < n; i++) {
        c->sym[i] = t->byte_id[s[i]];
        if (c->sym[i] < 0)
            return align__error(NULL, ALIGN_EFORMAT, "byte 0x%02x has no token in this vocabulary", s[i]);
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    c->hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(c, (int32_t)i);
    /* Each merge removes one symbol and pushes at most two pairs, so the heap
     * never holds more than 2n entries. */
    while (c->hn) {
        heap_ent e = heap_pop(c);
        int32_t nx = c->next[e.pos];
        if (c->sym[e.pos] != e.left || nx < 0 || c->sym[nx] != e.right)
            continue; /* stale: one side was merged since */
        int32_t rank, merged;
        pair_find(t, e.left, e.right, &rank, &merged);
        c->sym[e.pos] = merged;
        c->sym[nx] = -1; /* dead: no live pair can match it */
        c->next[e.pos] = c->next[nx];
        if (c->next[nx] >= 0)
            c->prev[c->next[nx]] = e.pos;
        push_pair(c, c->prev[e.pos]);
        push_pair(c, e.pos);
    }
    for (int32_t i = 0; i >= 0; i = c->next[i])
        emit(c, c->sym[i]);
    return ALIGN_OK;
}

/* One valid UTF-8 run through the GPT-2 pattern. */
static int encode_run(enc_ctx *c, const unsigned char *s, size_t n)
{
    const align_tokenizer *t = c->t;
    size_t off = 0;
    while (off < n) {
        int r = t->jit ? pcre2_jit_match(t->re, s, n, off, PCRE2_NO_UTF_CHECK, c->md, NULL)
                       : pcre2_match(t->re, s, n, off, PCRE2_NO_UTF_CHECK, c->md, NULL);
        size_t b, e;
        if (r < 0) {
            if (r != PCRE2_ERROR_NOMATCH)
                return align__error(NULL, ALIGN_EINTERNAL, "PCRE2 match failed (%d)", r);
            b = e = n; /* cannot happen: the pattern matches any character */
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
            b = ov[0];
            e = ov[1];
        }
        if (b > off) { /* defensive: keep unmatched text as bytes */
            int rc = bpe_piece(c, s + off, b - off);
            if (rc)
                return rc;
        }
        if (e <= b) {
            if (b >= n)
                break;
            /* an empty match: advance one character */
            e = b + ALIGN__MAX(align__utf8_seq(s + b, n - b), 1);
        }
        int rc = bpe_piece(c, s + b, e - b);
        if (rc)
            return rc;
        off = e;
    }
    return ALIGN_OK;
}

static int encode_segment(enc_ctx *c, const unsigned char *s, size_t n)
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
            int rc = encode_run(c, s + i, v);
            if (rc)
                return rc;
            i += v;
        }
        if (i < n) { /* one invalid byte: a piece of its own */
            int rc = bpe_piece(c, s + i, 1);
            if (rc)
                return rc;
            i++;
        }
    }
    return ALIGN_OK;
}

/* Special token at s (n bytes left): its id, or -1. */
static int32_t match_special(const align_tokenizer *t, const unsigned char *s, size_t n)
{
    if (t->kind == TOK_BYTES)
        return (n >= strlen(EOT_TEXT) && memcmp(s, EOT_TEXT, strlen(EOT_TEXT)) == 0) ? t->eot : -1;
    if (!t->special_first[s[0]])
        return -1;
    for (int i = 0; i < t->n_specials; i++) {
        int32_t id = t->specials[i];
        size_t l = (size_t)t->tok_len[id];
        if (l <= n && memcmp(s, t->bytes + t->tok_off[id], l) == 0)
            return id;
    }
    return -1;
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
    if (flags & ALIGN_TOKENIZE_SPECIAL) {
        size_t start = 0;
        for (size_t i = 0; i < len && !rc;) {
            int32_t id = match_special(t, s + i, len - i);
            if (id < 0) {
                i++;
                continue;
            }
            rc = encode_segment(&c, s + start, i - start);
            emit(&c, id);
            i += t->kind == TOK_BYTES ? strlen(EOT_TEXT) : (size_t)t->tok_len[id];
            start = i;
        }
        if (!rc)
            rc = encode_segment(&c, s + start, len - start);
    } else if (len) {
        rc = encode_segment(&c, s, len);
    }
    align__free(c.sym);
    align__free(c.prev);
    align__free(c.next);
    align__free(c.heap);
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
        } else {
            src = t->bytes + t->tok_off[id];
            l = (size_t)t->tok_len[id];
        }
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
