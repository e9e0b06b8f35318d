/*
 * tok_bpe.c — the BPE tables (vocabulary, merges), the merge loop, and
 * GPT-2's own files (encoder.json + vocab.bpe).
 *
 * GPT-2 maps every byte to a printable Unicode character (bytes_to_unicode),
 * so byte-level vocabularies hold strings of those characters. We undo that
 * mapping once at load time: every token is stored as the raw bytes it
 * stands for, merges become pairs of token ids, and encoding works on bytes
 * and ids only. Character-level vocabularies (SentencePiece-style BPE) keep
 * their strings as UTF-8. Either way a merge is a pair of ids.
 */
#include "data/tok_internal.h"
#include "data/utf8.h"

#include <stdio.h>
#include <string.h>

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
int32_t align__tok_map_find(const align_tokenizer *t, const char *s, size_t n)
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

/* ---- building a BPE tokenizer ---------------------------------------------- */

int align__tok_builder_init(tok_builder *bd, const char *path)
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
    bd->t->unk = -1;
    bd->byte_level = 1;
    bd->t->byte_level = 1;
    return ALIGN_OK;
}

static int ensure_scratch(tok_builder *bd, size_t n)
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

/* Sets id's bytes. In a byte-level vocabulary, byte-level strings are
 * converted to raw bytes; strings that are not byte-level (added tokens such
 * as "<|im_start|>") are kept as their UTF-8 text, which is what they decode
 * to (as Hugging Face's ByteLevel decoder does). Added tokens (flags != 0)
 * are always their text. */
int align__tok_set_token(tok_builder *bd, int32_t id, const char *s, size_t len, uint8_t flags)
{
    align_tokenizer *t = bd->t;
    if (id < 0 || id >= t->n_vocab)
        return align__error(NULL, ALIGN_EFORMAT, "%s: token id %d out of range", bd->path, (int)id);
    if (t->tok_len[id] >= 0)
        return align__error(NULL, ALIGN_EFORMAT, "%s: token id %d used twice", bd->path, (int)id);
    int rc = ensure_scratch(bd, len + 1);
    if (rc)
        return rc;
    long n = flags || !bd->byte_level ? -1 : unicode_to_bytes(bd->inv, s, len, bd->scratch);
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
    t->is_special[id] = flags;
    return ALIGN_OK;
}

static int alloc_vocab(tok_builder *bd, int32_t n_vocab)
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
int align__tok_index_vocab(tok_builder *bd)
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
        if (align__tok_map_find(t, t->bytes + t->tok_off[id], (size_t)t->tok_len[id]) >= 0)
            return align__error(NULL, ALIGN_EFORMAT, "%s: two tokens stand for the same bytes (id %d)",
                                bd->path, (int)id);
        map_insert(t, id);
        if (t->tok_len[id] == 1 && bd->byte_level)
            t->byte_id[(unsigned char)t->bytes[t->tok_off[id]]] = id;
    }
    return ALIGN_OK;
}

int align__tok_alloc_merges(tok_builder *bd, size_t n)
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
static int32_t find_operand(tok_builder *bd, const char *s, size_t len)
{
    if (!bd->byte_level)
        return align__tok_map_find(bd->t, s, len);
    if (ensure_scratch(bd, len + 1))
        return -2;
    long n = unicode_to_bytes(bd->inv, s, len, bd->scratch);
    if (n < 0)
        return -1;
    return align__tok_map_find(bd->t, bd->scratch, (size_t)n);
}

/* Adds merge number rank: "a b". The merged token must be in the vocabulary
 * (as Hugging Face requires), since BPE would otherwise emit an unknown id. */
int align__tok_add_merge(tok_builder *bd, const char *a, size_t alen, const char *b, size_t blen, long line)
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
    int32_t out = align__tok_map_find(t, bd->scratch, la + lb);
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

static int32_t find_added(const align_tokenizer *t, const char *s)
{
    size_t l = strlen(s);
    for (int i = 0; i < t->n_specials; i++)
        if ((size_t)t->tok_len[t->specials[i]] == l && memcmp(t->bytes + t->tok_off[t->specials[i]], s, l) == 0)
            return t->specials[i];
    return -1;
}

/* Added tokens sorted longest first, so "<|a|>b" style overlaps pick the
 * longest. End-of-text: eos if given and an added token, else the first of
 * "<|endoftext|>" (GPT-2, Qwen2, SmolLM2), "</s>" (Llama-2, TinyLlama),
 * "<|end_of_text|>" (Llama-3) that the vocabulary has. */
int align__tok_finish(tok_builder *bd, const char *eos, align_tokenizer **out)
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
                t->n_plain_added += !(t->is_special[id] & TOKF_SPECIAL);
                t->special_first[(unsigned char)t->bytes[t->tok_off[id]]] = 1;
            }
        }
    }
    if (t->eot < 0 && eos)
        t->eot = find_added(t, eos);
    static const char *const eot_names[] = { EOT_TEXT, "</s>", "<|end_of_text|>" };
    for (size_t k = 0; t->eot < 0 && k < sizeof eot_names / sizeof *eot_names; k++) {
        int32_t id = align__tok_map_find(t, eot_names[k], strlen(eot_names[k]));
        t->eot = id >= 0 ? id : find_added(t, eot_names[k]);
    }
    align__free(bd->scratch);
    bd->scratch = NULL;
    *out = t;
    bd->t = NULL;
    return ALIGN_OK;
}

int align__tok_builder_fail(tok_builder *bd, int rc)
{
    align_tokenizer_free(bd->t);
    align__free(bd->scratch);
    return rc;
}

/* Marks the GPT-2 end-of-text token special, so that it is only produced
 * when the caller asks (ALIGN_TOKENIZE_SPECIAL), as tiktoken does. */
static void mark_eot_special(align_tokenizer *t)
{
    int32_t id = align__tok_map_find(t, EOT_TEXT, strlen(EOT_TEXT));
    if (id < 0)
        return;
    t->eot = id;
    t->is_special[id] = TOKF_ADDED | TOKF_SPECIAL;
    /* take it out of the ordinary map: rebuild (cheap, once per load) */
    memset(t->map, 0xff, t->map_cap * sizeof *t->map);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->tok_len[i] >= 0 && !t->is_special[i])
            map_insert(t, i);
}

/* ---- loading --------------------------------------------------------------- */

int align__tok_load_json(const char *path, json_t **out)
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
int align__tok_load_vocab_object(tok_builder *bd, json_t *vocab, int32_t extra_max, size_t n_extra)
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
        rc = align__tok_set_token(bd, (int32_t)json_integer_value(v), key, klen, 0);
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

/* An upper bound on the distinct merges a vocabulary allows: a merge's
 * result is a token, and a token of k bytes can be split in k-1 ways. With
 * repeated merges refused, the merge table is sized by the vocabulary, not by
 * the line count of the file (50 MB of blank lines once took 1.1 GB). */
size_t align__tok_max_merges(const align_tokenizer *t)
{
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok_len[id] > 1 && !t->is_special[id])
            n += (size_t)t->tok_len[id] - 1;
    return n;
}

static int load_vocab_bpe(tok_builder *bd, const char *path)
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
    rc = align__tok_alloc_merges(bd, ALIGN__MIN(n_lines, align__tok_max_merges(bd->t)));
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
            rc = align__tok_add_merge(bd, q, (size_t)(sp - q), sp + 1, (size_t)(e - sp - 1), line);
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
    tok_builder bd;
    int rc = align__tok_builder_init(&bd, encoder_json);
    if (rc)
        return rc;
    json_t *enc = NULL;
    rc = align__tok_load_json(encoder_json, &enc);
    if (!rc)
        rc = align__tok_load_vocab_object(&bd, enc, -1, 0);
    json_decref(enc);
    if (!rc)
        rc = align__tok_index_vocab(&bd);
    bd.path = vocab_bpe;
    if (!rc)
        rc = load_vocab_bpe(&bd, vocab_bpe);
    if (rc)
        return align__tok_builder_fail(&bd, rc);
    mark_eot_special(bd.t);
    if (!rc)
        rc = align__tok_add_split(bd.t, GPT2_PATTERN, strlen(GPT2_PATTERN), 0);
    if (rc)
        return align__tok_builder_fail(&bd, rc);
    rc = align__tok_finish(&bd, NULL, out);
    return rc ? align__tok_builder_fail(&bd, rc) : ALIGN_OK;
}

/* ---- the merge loop ------------------------------------------------------------ */

static inline int heap_less(const tok_heap_ent *a, const tok_heap_ent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_ctx *c, tok_heap_ent e)
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

static tok_heap_ent heap_pop(bpe_ctx *c)
{
    tok_heap_ent top = c->heap[0], last = c->heap[--c->hn];
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

static void push_pair(bpe_ctx *c, const align_tokenizer *t, int32_t pos)
{
    if (pos < 0)
        return;
    int32_t nx = c->next[pos];
    if (nx < 0)
        return;
    int32_t rank, out;
    if (pair_find(t, c->sym[pos], c->sym[nx], &rank, &out)) {
        tok_heap_ent e = { rank, pos, c->sym[pos], c->sym[nx] };
        heap_push(c, e);
    }
}

int align__bpe_reserve(bpe_ctx *c, size_t n)
{
    if (n <= c->scap)
        return ALIGN_OK;
    size_t cap = ALIGN__MAX(n, c->scap * 2);
    int32_t *a = align__realloc(c->sym, cap * sizeof *a);
    if (a)
        c->sym = a;
    int32_t *b = align__realloc(c->prev, cap * sizeof *b);
    if (b)
        c->prev = b;
    int32_t *d = align__realloc(c->next, cap * sizeof *d);
    if (d)
        c->next = d;
    tok_heap_ent *h = align__realloc(c->heap, cap * 2 * sizeof *h);
    if (h)
        c->heap = h;
    if (!a || !b || !d || !h)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    c->scap = cap;
    return ALIGN_OK;
}

void align__bpe_free(bpe_ctx *c)
{
    align__free(c->sym);
    align__free(c->prev);
    align__free(c->next);
    align__free(c->heap);
    memset(c, 0, sizeof *c);
}

/* The adjacent pair with the lowest merge rank is merged until none is left:
 * a min-heap over a linked list, O(n log n), so long runs of one character
 * stay fast. Ties (the same pair twice) go to the leftmost, as in GPT-2 and
 * Hugging Face. */
int32_t align__bpe_merge(bpe_ctx *c, const align_tokenizer *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    if (!t->pair_cap || n < 2)
        return 0;
    c->hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(c, t, (int32_t)i);
    /* Each merge removes one symbol and pushes at most two pairs, so the heap
     * never holds more than 2n entries. */
    while (c->hn) {
        tok_heap_ent e = heap_pop(c);
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
        push_pair(c, t, c->prev[e.pos]);
        push_pair(c, t, e.pos);
    }
    return 0;
}
