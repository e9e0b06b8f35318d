/*
 * dataset.h — read access to align_dataset records for the trainers and the
 * batcher (private to libalign; lib/data/dataset.c).
 *
 * Every record's strings live in one arena owned by the dataset; pointers
 * returned here are borrowed and stay valid until the next call that adds
 * records (align_dataset_add_*, align_dataset_load_jsonl, align__dataset_pull),
 * since the arena may move when it grows.
 */
#ifndef ALIGN_DATA_DATASET_H
#define ALIGN_DATA_DATASET_H

#include "core/core.h"

typedef struct align__record_view {
    int32_t kind;            /* ALIGN_RECORD_* */
    int32_t source;          /* ALIGN_SOURCE_* */
    const char *annotator;   /* NULL if unknown */
    int64_t timestamp;       /* 0 if unknown */
    const char *prompt;      /* NULL for chat */
    size_t prompt_len;
    const char *response;    /* demo completion; label / score response; else NULL */
    size_t response_len;
    int32_t good;            /* label: 1 good, 0 bad */
    float score;             /* score records */
    int32_t n_items;         /* chat: messages; ranking: K responses; else 0 */
} align__record_view;

/* Record i (0 <= i < size). ALIGN_EINVAL if out of range. */
int align__dataset_get(const align_dataset *d, int64_t i, align__record_view *out);
/* Item j of record i: chat message j (role and content) or ranking response j
 * (role NULL, *rank_out its place: 0 = best, equal = tie). Out params may be NULL. */
int align__dataset_item(const align_dataset *d, int64_t i, int32_t j, const char **role, size_t *role_len,
                        const char **text, size_t *text_len, int32_t *rank_out);

/* Pulls records from the host source (align_dataset_set_source) until at
 * least min_new records (of any kind) were added or the source is
 * exhausted. Called by trainers when they have used every record they hold
 * (SFT at the end of its data; PPO/GRPO/RLOO when out of prompts); never by
 * loading. Returns ALIGN_OK when min_new records arrived; ALIGN_DONE when the
 * source reported it has no more (records added before that stay), or when
 * no source is set; ALIGN_ECALLBACK (message in eb and on d) when the
 * callback returned < 0 or returned 0 without adding anything. */
int align__dataset_pull(align_dataset *d, int64_t min_new, align__errbuf *eb);
/* 1 if a source is set (align_dataset_set_source). */
int align__dataset_has_source(const align_dataset *d);

#endif
