/*
 * tok_internal.h — the tokenizer's private layout, shared by
 *   tokenizer.c   public API: loading dispatch, encode pipeline, decode;
 *   tok_bpe.c     vocabulary/merge tables, the BPE merge loop, GPT-2 files;
 *   tok_hfjson.c  Hugging Face tokenizer.json (normalizer, pre-tokenizer,
 *                 model options, added tokens, decoder).
 * (private to libalign; docs/tokenizer.md describes the behaviour.)
 */
#ifndef ALIGN_DATA_TOK_INTERNAL_H
#define ALIGN_DATA_TOK_INTERNAL_H

#include "core/core.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <jansson.h>

enum { TOK_BYTES = 0, TOK_BPE = 1 };

#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define EOT_TEXT "<|endoftext|>"

/* is_special[id] bits */
#define TOKF_ADDED   0x01u /* an added token: cut out of the text before pre-tokenization */
#define TOKF_SPECIAL 0x02u /* ...recognised only with ALIGN_TOKENIZE_SPECIAL */
#define TOKF_LSTRIP  0x04u /* swallows the whitespace before it */
#define TOKF_RSTRIP  0x08u /* swallows the whitespace after it */

/* normalizer steps (applied in order to each stretch of text between added tokens) */
enum { NORM_PREPEND = 1, NORM_REPLACE = 2, NORM_NFC = 3 };
typedef struct tok_norm {
    int type;
    char *a, *b; /* PREPEND: a; REPLACE: a -> b */
    size_t alen, blen;
} tok_norm;

/* pre-tokenizer steps, each applied to every piece the previous one left */
enum { PRE_SPLIT = 1, PRE_PREFIX_SPACE = 2, PRE_METASPACE = 3 };
typedef struct tok_pre {
    int type;
    pcre2_code *re;  /* SPLIT: pieces are the matches and the text between (Isolated) */
    int jit;
    int prepend;     /* METASPACE: 0 never, 1 first (text start only), 2 always */
    char repl[8];    /* METASPACE: the replacement of ' ' (UTF-8) */
    size_t repl_len;
} tok_pre;

#define TOK_MAX_NORM 8
#define TOK_MAX_PRE 8

struct align_tokenizer {
    int kind;
    int32_t n_vocab;       /* max id + 1 */
    int32_t eot;           /* -1 if the vocabulary has none */
    /* per id: the bytes the model matches (len -1 = id unused): raw bytes for
     * byte-level vocabularies, the UTF-8 of the vocabulary string otherwise */
    uint32_t *tok_off;
    int32_t *tok_len;
    char *bytes;
    size_t bytes_len, bytes_cap;
    /* per id: what it decodes to, when that differs (NULL: the bytes above) */
    uint32_t *dec_off;
    int32_t *dec_len;
    char *dec_bytes;
    uint8_t *is_special;   /* per id: TOKF_* bits (0 = ordinary vocabulary token) */
    /* bytes -> id for ordinary tokens (open addressing, -1 = empty) */
    int32_t *map;
    size_t map_cap;
    int32_t byte_id[256];  /* token of each single byte (byte-level), or its <0xXX>
                              byte-fallback token (character-level); -1 if none */
    /* merges: (left id, right id) -> rank, merged id */
    uint64_t *pair_key;    /* UINT64_MAX = empty */
    int32_t *pair_rank;
    int32_t *pair_out;
    size_t pair_cap;
    int32_t n_merges;
    /* added tokens, longest first */
    int32_t *specials;
    int32_t n_specials;
    int32_t n_plain_added; /* of them, not special: recognised without ALIGN_TOKENIZE_SPECIAL */
    uint8_t special_first[256]; /* first bytes of added tokens, a quick filter */
    /* the encode pipeline (docs/tokenizer.md) */
    int byte_level;        /* symbols are bytes (ByteLevel); else UTF-8 characters */
    int byte_fallback;     /* character-level: unknown characters become <0xXX> tokens */
    int32_t unk;           /* character-level: unknown characters become this (-1: refused) */
    int fuse_unk;
    int ignore_merges;     /* a piece that is a vocabulary token is that token */
    tok_norm norm[TOK_MAX_NORM];
    int n_norm;
    tok_pre pre[TOK_MAX_PRE];
    int n_pre;
    /* decoder: up to strip_start leading copies of strip_char are dropped */
    int strip_start;
    char strip_char;
};

/* ---- tok_bpe.c ----------------------------------------------------------------- */

typedef struct tok_builder {
    align_tokenizer *t;
    uint32_t inv[324];   /* code point -> byte (256 = none) */
    char *scratch;       /* conversion buffer */
    size_t scratch_cap;
    const char *path;    /* for messages */
    int byte_level;      /* vocabulary strings are GPT-2 byte-level characters */
} tok_builder;

int align__tok_builder_init(tok_builder *bd, const char *path);
int align__tok_builder_fail(tok_builder *bd, int rc);
int align__tok_load_json(const char *path, json_t **out);
int align__tok_load_vocab_object(tok_builder *bd, json_t *vocab, int32_t extra_max, size_t n_extra);
int align__tok_set_token(tok_builder *bd, int32_t id, const char *s, size_t len, uint8_t flags);
int align__tok_index_vocab(tok_builder *bd);
size_t align__tok_max_merges(const align_tokenizer *t);
int align__tok_alloc_merges(tok_builder *bd, size_t n);
int align__tok_add_merge(tok_builder *bd, const char *a, size_t alen, const char *b, size_t blen, long line);
/* Orders the added tokens, picks end-of-text (eos: preferred text or NULL). */
int align__tok_finish(tok_builder *bd, const char *eos, align_tokenizer **out);
int32_t align__tok_map_find(const align_tokenizer *t, const char *s, size_t n);

/* BPE over one piece: sym[0..n) are the initial symbols (ids); merges are
 * applied by rank; the result is appended with emit. Scratch lives in bpe_ctx. */
typedef struct tok_heap_ent {
    int32_t rank, pos, left, right;
} tok_heap_ent;

typedef struct bpe_ctx {
    int32_t *sym, *prev, *next;
    tok_heap_ent *heap;
    size_t scap, hn;
} bpe_ctx;

/* Grows the scratch to n symbols; ALIGN_ENOMEM. */
int align__bpe_reserve(bpe_ctx *c, size_t n);
/* Merges c->sym[0..n) in place; returns the index of the first live symbol
 * (follow c->next until -1). */
int32_t align__bpe_merge(bpe_ctx *c, const align_tokenizer *t, size_t n);
void align__bpe_free(bpe_ctx *c);

/* ---- tok_nfc.c ---- */

/* ALIGN_OK if NFC leaves s[0..n) (valid UTF-8) unchanged; else ALIGN_EFORMAT
 * naming the first code point it could change. */
int align__tok_nfc_check(const char *s, size_t n);

/* ---- tok_hfjson.c ---------------------------------------------------------------- */

int align__tok_load_hf(align_tokenizer **out, const char *path);
/* Appends a pre-tokenizer step that isolates the matches of pattern
 * (literal: a plain string). ALIGN_EFORMAT names a bad pattern. */
int align__tok_add_split(align_tokenizer *t, const char *pattern, size_t len, int literal);
void align__tok_free_pipeline(align_tokenizer *t);

#endif
