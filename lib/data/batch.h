/*
 * batch.h — turns dataset records into training rows (private to libalign).
 * Owned by the data layer (lib/data/batch.c). Used by the trainers.
 *
 * A row is a token sequence [max_len] with an explicit length and a loss mask
 * aligned with align_model_forward's token_logprobs: mask[t] == 1 means the
 * target tokens[t+1] (predicted at position t) is in the loss. Nothing is
 * inferred from padding.
 *
 * Formatting is the chat template's (data/template.h, docs/datasets.md):
 *   demo:  prompt tokens, completion tokens, end-of-turn; loss on completion
 *          and end-of-turn (everything with ALIGN__BATCH_FULL_LOSS).
 *   chat:  for each message: <role prefix><content><end-of-turn>; loss on the
 *          assistant contents and their end-of-turn tokens.
 * Records of other kinds are skipped by the SFT batcher (counted).
 */
#ifndef ALIGN_DATA_BATCH_H
#define ALIGN_DATA_BATCH_H

#include "core/core.h"

#define ALIGN__BATCH_FULL_LOSS 0x1u   /* = ALIGN_SFT_FULL_SEQUENCE_LOSS */
#define ALIGN__BATCH_PACK      0x2u   /* = ALIGN_SFT_PACK */
#define ALIGN__BATCH_SHUFFLE   0x4u   /* shuffle each epoch (off for evaluation) */
#define ALIGN__BATCH_STREAM    0x8u   /* records arrive later: an empty start is fine */

typedef struct align__batch_params {
    uint32_t flags;            /* ALIGN__BATCH_* */
    int32_t  max_len;          /* row length */
    int32_t  truncation;       /* ALIGN_TRUNCATE_* */
    uint64_t seed;             /* shuffling */
    const char *system_prefix; /* NULL = "<|system|>\n" */
    const char *user_prefix;   /* NULL = "<|user|>\n" */
    const char *assistant_prefix; /* NULL = "<|assistant|>\n" */
} align__batch_params;

typedef struct align__batcher align__batcher;

/* d and t are borrowed. Tokenizes every usable record up front (so a row's
 * cost is a copy). Fails with ALIGN_EINVAL (message in eb) if the dataset has
 * no usable record; when records were too long for max_len the message
 * says so and how many. */
int  align__batcher_create(align__batcher **out, align_dataset *d, const align_tokenizer *t,
                           const align__batch_params *p, align__errbuf *eb);
void align__batcher_free(align__batcher *b);

/* Fills up to n_rows rows: tokens [n_rows][max_len] (padding 0),
 * lengths [n_rows], loss_mask [n_rows][max_len-1]. *rows_out rows were
 * filled. With wrap != 0 the batcher starts the next epoch (reshuffled) when
 * the data runs out and always fills n_rows; with wrap == 0 it stops at the
 * end of the epoch (*rows_out may be < n_rows, 0 at the end). */
int  align__batcher_next(align__batcher *b, int32_t n_rows, int wrap, int32_t *tokens,
                         int32_t *lengths, uint8_t *loss_mask, int32_t *rows_out);
/* Rewinds to the start of epoch 0 (evaluation passes). */
void align__batcher_rewind(align__batcher *b);

/* Epochs started so far (1 after the first row), examples in one epoch,
 * examples skipped (wrong kind, or dropped by ALIGN_TRUNCATE_DROP). */
int64_t align__batcher_epoch(const align__batcher *b);
int64_t align__batcher_examples(const align__batcher *b);
int64_t align__batcher_skipped(const align__batcher *b);

/* The whole iteration state, so a resumed run continues exactly. */
typedef struct align__batcher_state {
    int64_t epoch;
    int64_t position;     /* next example index within the epoch order */
    int64_t carry;        /* packing: tokens of a split example already used */
    align__rng rng;       /* shuffling stream */
    int64_t epoch_examples; /* examples shuffled at the epoch's start (later ones follow in order) */
} align__batcher_state;
void align__batcher_get_state(const align__batcher *b, align__batcher_state *out);
/* Re-derives the epoch's order from the state; ALIGN_EINVAL if it does not fit. */
int  align__batcher_set_state(align__batcher *b, const align__batcher_state *s);

/* Tokenizes the dataset's records [records seen, upto) (upto < 0: all) and
 * appends their examples; in the current epoch they come after the examples
 * it started with, in arrival order (the next epoch shuffles them all).
 * *added: new examples. All-or-nothing. */
int  align__batcher_ingest(align__batcher *b, align_dataset *d, int64_t upto, int64_t *added, align__errbuf *eb);
/* Dataset records looked at so far (usable or not). */
int64_t align__batcher_records(const align__batcher *b);
/* Tokens of the current epoch not yet in a row (the whole data before the first). */
int64_t align__batcher_tokens_left(const align__batcher *b);

#endif
