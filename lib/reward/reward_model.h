/*
 * reward_model.h — the inside of align_reward_model (private), for the RL
 * trainers and the reward-model trainer, which must build the (prompt,
 * response) sequence exactly as the scorer does.
 */
#ifndef ALIGN_REWARD_REWARD_MODEL_H
#define ALIGN_REWARD_REWARD_MODEL_H

#include "core/core.h"

/* How a (prompt, response) pair becomes tokens. */
typedef struct align__reward_template {
    int      chat;                    /* ALIGN_REWARD_CHAT */
    int32_t  eot;                     /* end-of-turn id */
    const int32_t *user_prefix;       /* tokenized prefixes (chat only) */
    size_t   user_len;
    const int32_t *assistant_prefix;
    size_t   assistant_len;
} align__reward_template;

/* Appends the tokens of one pair to *ids (grown with align__realloc; *cap
 * its capacity, *n its length on entry and exit). Without chat, a
 * demonstration exactly as the SFT batcher builds it (docs/datasets.md):
 * prompt tokens, response tokens, end-of-turn. With chat, a two-message
 * chat: <user prefix> prompt <eot> <assistant prefix> response <eot>. Texts
 * are tokenized separately and without ALIGN_TOKENIZE_SPECIAL, as the
 * batcher does. To be replaced by the shared chat-template module when it
 * lands, so that SFT, the reward model and the RL trainers use one builder. */
int align__reward_build(align__errbuf *eb, const align_tokenizer *t, const align__reward_template *tp,
                        const char *prompt, const char *response, int32_t **ids, size_t *cap, size_t *n);

/* The sequence template of a model-backed scorer (NULL for a callback), so
 * the reward-model trainer builds exactly the tokens the scorer reads. */
const align__reward_template *align__reward_model_template(const align_reward_model *rm);

/* Unnormalised scores of n pairs (the model's head or the callback's value). */
int align__reward_score_raw(align_reward_model *rm, const char *const *prompts,
                            const char *const *responses, int32_t n, float *scores);

#endif
