/*
 * template.h — the chat template: the one place that turns text into the
 * token sequences a model is trained on and prompted with (private to
 * libalign; public face: align_chat_tokenize, align_generate_chat).
 *
 * Format (docs/datasets.md, "Chat template"):
 *   demo / pair:  prompt tokens, response tokens, end-of-turn;
 *                 targets: the response and its end-of-turn.
 *   chat:         for each message <role prefix><content><end-of-turn>;
 *                 targets: the assistant contents and their end-of-turn.
 *                 Known roles use the configured prefixes (default
 *                 "<|system|>\n", "<|user|>\n", "<|assistant|>\n"), any
 *                 other role ("tool") is written "<|role|>\n" and is never
 *                 a target.
 *   generation prompt: a chat followed by the assistant prefix, which is
 *                 exactly what the model saw before each assistant turn.
 * The end-of-turn token is the tokenizer's end-of-text. Text (contents,
 * prompts) is tokenized without ALIGN_TOKENIZE_SPECIAL, so an
 * "<|endoftext|>" written inside a message stays text and cannot end a turn;
 * the role prefixes (configuration, not data) are tokenized with it, so a
 * prefix can hold a model's header tokens ("<|im_start|>user\n").
 *
 * Users: the SFT batcher (lib/data/batch.c), generation (lib/gen/generate.c),
 * and every trainer that builds prompt + response sequences (reward model,
 * DPO, PPO rollouts) through align__template_encode_pair.
 */
#ifndef ALIGN_DATA_TEMPLATE_H
#define ALIGN_DATA_TEMPLATE_H

#include "core/core.h"

/* A growing token sequence with a parallel target flag per token:
 * mask[i] == 1 means ids[i] is a completion token (in the SFT loss). The
 * encode functions append to it; reset with n = 0. */
typedef struct align__tokbuf {
    int32_t *ids;
    uint8_t *mask;
    int64_t  n, cap;
} align__tokbuf;

/* Ensures room for extra more tokens; ALIGN_ENOMEM (message in eb). */
int  align__tokbuf_reserve(align__tokbuf *b, int64_t extra, align__errbuf *eb);
void align__tokbuf_free(align__tokbuf *b);

/* encode flags */
#define ALIGN__TEMPLATE_FULL_LOSS  0x1u  /* every token is a target (= ALIGN_SFT_FULL_SEQUENCE_LOSS) */
#define ALIGN__TEMPLATE_GEN_PROMPT 0x2u  /* chat: end with the assistant prefix */

enum { ALIGN__ROLE_SYSTEM = 0, ALIGN__ROLE_USER = 1, ALIGN__ROLE_ASSISTANT = 2 };

typedef struct align__template {
    const align_tokenizer *t;  /* borrowed */
    int32_t  eot;              /* end-of-turn id */
    int32_t *prefix_tok[3];    /* role prefixes, tokenized once */
    size_t   prefix_len[3];
    int32_t *scratch;          /* one tokenize call */
    size_t   scratch_cap;
} align__template;

/* Tokenizes the three prefixes (NULL = the default). t is borrowed and must
 * have an end-of-text token (ALIGN_EINVAL otherwise). On failure tp is left
 * empty (align__template_free is still safe). Not thread-safe: the template
 * owns a scratch buffer; use one per thread. */
int  align__template_init(align__template *tp, const align_tokenizer *t, const char *system_prefix,
                          const char *user_prefix, const char *assistant_prefix, align__errbuf *eb);
void align__template_free(align__template *tp);

/* align__template_init from a public align_chat_template (NULL = defaults;
 * struct_size and flags checked). */
int  align__template_init_public(align__template *tp, const align_tokenizer *t, const align_chat_template *tmpl,
                                 align__errbuf *eb);

/* The default prefix of role r (ALIGN__ROLE_*). */
const char *align__template_default_prefix(int r);

/* Appends text's tokens (never special) with target flag `target`. */
int align__template_encode_text(align__template *tp, align__tokbuf *out, const char *text, size_t len,
                                int target, align__errbuf *eb);

/* Appends one chat message (see the format above). flags: FULL_LOSS. */
int align__template_encode_message(align__template *tp, align__tokbuf *out, const char *role, size_t role_len,
                                   const char *content, size_t content_len, uint32_t flags, align__errbuf *eb);

/* Appends a whole conversation of n messages (NUL-terminated strings), then
 * the assistant prefix with ALIGN__TEMPLATE_GEN_PROMPT. */
int align__template_encode_chat(align__template *tp, align__tokbuf *out, const char *const *roles,
                                const char *const *contents, int32_t n, uint32_t flags, align__errbuf *eb);

/* Appends the assistant prefix (never a target unless FULL_LOSS): after a
 * chat it is the "generation prompt". */
int align__template_encode_gen_prompt(align__template *tp, align__tokbuf *out, uint32_t flags, align__errbuf *eb);

/* Appends prompt + response + end-of-turn (a demonstration, or one side of
 * a preference pair, a labelled or scored response, a rollout). The prompt
 * is a target only with FULL_LOSS. *resp_start and *resp_end (either may be
 * NULL) receive the positions in out where the response starts and ends:
 * [resp_start, resp_end) holds the response tokens and the end-of-turn, so
 * the log-probability of the response is the sum of log p(ids[k] | ids[<k])
 * over that range. */
int align__template_encode_pair(align__template *tp, align__tokbuf *out, const char *prompt, size_t prompt_len,
                                const char *response, size_t response_len, uint32_t flags,
                                int64_t *resp_start, int64_t *resp_end, align__errbuf *eb);

/* Appends response + end-of-turn, both targets: the reply after a prompt
 * already in out (a chat rendered with ALIGN__TEMPLATE_GEN_PROMPT, or a
 * bare prompt). *resp_start / *resp_end (may be NULL) as for encode_pair,
 * which is encode_text(prompt) followed by this. */
int align__template_encode_response(align__template *tp, align__tokbuf *out, const char *response,
                                    size_t response_len, int64_t *resp_start, int64_t *resp_end, align__errbuf *eb);

/* Appends a bare prompt as generation sees it for a pair: the prompt tokens
 * (an encode_pair with the same prompt starts with exactly these). */
int align__template_encode_prompt(align__template *tp, align__tokbuf *out, const char *prompt, size_t prompt_len,
                                  align__errbuf *eb);

#endif
