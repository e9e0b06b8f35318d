/*
 * template.c — the chat template (see template.h, docs/datasets.md).
 */
#include "data/template.h"

#include <string.h>

static const char *const default_prefix[3] = { "<|system|>\n", "<|user|>\n", "<|assistant|>\n" };
static const char *const role_names[3] = { "system", "user", "assistant" };

const char *align__template_default_prefix(int r)
{
    return r >= 0 && r < 3 ? default_prefix[r] : NULL;
}

int align__tokbuf_reserve(align__tokbuf *b, int64_t extra, align__errbuf *eb)
{
    if (b->ids && b->n + extra <= b->cap)
        return ALIGN_OK;
    int64_t c = ALIGN__MAX(b->cap * 2, b->n + extra + 4096);
    int32_t *t = align__realloc(b->ids, (size_t)c * sizeof *t);
    if (t)
        b->ids = t;
    uint8_t *l = align__realloc(b->mask, (size_t)c);
    if (l)
        b->mask = l;
    if (!t || !l)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    b->cap = c;
    return ALIGN_OK;
}

void align__tokbuf_free(align__tokbuf *b)
{
    if (!b)
        return;
    align__free(b->ids);
    align__free(b->mask);
    memset(b, 0, sizeof *b);
}

/* Tokenizes text into tp->scratch (grown as needed); *n receives the count.
 * flags: ALIGN_TOKENIZE_SPECIAL for the role prefixes only. */
static int tokenize(align__template *tp, const char *text, size_t len, uint32_t flags, size_t *n, align__errbuf *eb)
{
    for (;;) {
        uint64_t mark = align__error_mark();
        int rc = align_tokenize(tp->t, text, len, flags, tp->scratch, tp->scratch_cap, n);
        if (rc == ALIGN_OK)
            return ALIGN_OK;
        if (rc != ALIGN_ERANGE)
            return align__error(eb, rc, "template: cannot tokenize the text: %s", align_last_errmsg());
        align__error_recovered(mark); /* ERANGE answered by a larger buffer: not a failure */
        int32_t *p = align__realloc(tp->scratch, (*n + 64) * sizeof *p);
        if (!p)
            return align__error(eb, ALIGN_ENOMEM, "out of memory");
        tp->scratch = p;
        tp->scratch_cap = *n + 64;
    }
}

static int append_ids(align__tokbuf *out, const int32_t *ids, size_t n, int target, align__errbuf *eb)
{
    int rc = align__tokbuf_reserve(out, (int64_t)n, eb);
    if (rc)
        return rc;
    if (n)
        memcpy(out->ids + out->n, ids, n * sizeof *ids);
    memset(out->mask + out->n, target ? 1 : 0, n);
    out->n += (int64_t)n;
    return ALIGN_OK;
}

int align__template_init(align__template *tp, const align_tokenizer *t, const char *system_prefix,
                         const char *user_prefix, const char *assistant_prefix, align__errbuf *eb)
{
    memset(tp, 0, sizeof *tp);
    if (!t)
        return align__error(eb, ALIGN_EINVAL, "template: the tokenizer is NULL");
    if (align_tokenizer_eot(t) < 0)
        return align__error(eb, ALIGN_EINVAL, "template: the tokenizer has no end-of-text token to end turns with");
    tp->t = t;
    tp->eot = align_tokenizer_eot(t);
    const char *prefixes[3] = { system_prefix, user_prefix, assistant_prefix };
    int rc = ALIGN_OK;
    for (int r = 0; r < 3 && !rc; r++) {
        const char *s = prefixes[r] ? prefixes[r] : default_prefix[r];
        size_t cnt = 0;
        /* Prefixes are the developer's configuration, not data: special
         * tokens written in them ("<|im_start|>", "<|start_header_id|>") are
         * those tokens, as in the model's own chat template
         * (docs/chat-templates.md). Contents never are. */
        rc = tokenize(tp, s, strlen(s), ALIGN_TOKENIZE_SPECIAL, &cnt, eb);
        if (!rc) {
            tp->prefix_tok[r] = align__malloc((cnt ? cnt : 1) * sizeof(int32_t));
            if (!tp->prefix_tok[r])
                rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
            else if (cnt)
                memcpy(tp->prefix_tok[r], tp->scratch, cnt * sizeof(int32_t));
            tp->prefix_len[r] = cnt;
        }
    }
    if (rc)
        align__template_free(tp);
    return rc;
}

void align__template_free(align__template *tp)
{
    if (!tp)
        return;
    for (int r = 0; r < 3; r++)
        align__free(tp->prefix_tok[r]);
    align__free(tp->scratch);
    memset(tp, 0, sizeof *tp);
}

int align__template_encode_text(align__template *tp, align__tokbuf *out, const char *text, size_t len, int target,
                                align__errbuf *eb)
{
    size_t n = 0;
    int rc = tokenize(tp, text, len, 0, &n, eb);
    return rc ? rc : append_ids(out, tp->scratch, n, target, eb);
}

static int role_index(const char *role, size_t len)
{
    for (int i = 0; i < 3; i++)
        if (strlen(role_names[i]) == len && memcmp(role, role_names[i], len) == 0)
            return i;
    return -1;
}

int align__template_encode_message(align__template *tp, align__tokbuf *out, const char *role, size_t role_len,
                                   const char *content, size_t content_len, uint32_t flags, align__errbuf *eb)
{
    const int full = (flags & ALIGN__TEMPLATE_FULL_LOSS) != 0;
    const int r = role_index(role, role_len);
    const int target = full || r == ALIGN__ROLE_ASSISTANT;
    int rc;
    if (r >= 0) {
        rc = append_ids(out, tp->prefix_tok[r], tp->prefix_len[r], full, eb);
    } else {
        /* another role ("tool", ...): "<|role|>\n", never a target */
        char *pre = align__malloc(role_len + 6);
        if (!pre)
            return align__error(eb, ALIGN_ENOMEM, "out of memory");
        memcpy(pre, "<|", 2);
        memcpy(pre + 2, role, role_len);
        memcpy(pre + 2 + role_len, "|>\n", 3);
        rc = align__template_encode_text(tp, out, pre, role_len + 5, full, eb);
        align__free(pre);
    }
    if (rc || (rc = align__template_encode_text(tp, out, content, content_len, target, eb)))
        return rc;
    return append_ids(out, &tp->eot, 1, target, eb);
}

int align__template_encode_gen_prompt(align__template *tp, align__tokbuf *out, uint32_t flags, align__errbuf *eb)
{
    return append_ids(out, tp->prefix_tok[ALIGN__ROLE_ASSISTANT], tp->prefix_len[ALIGN__ROLE_ASSISTANT],
                      (flags & ALIGN__TEMPLATE_FULL_LOSS) != 0, eb);
}

int align__template_encode_chat(align__template *tp, align__tokbuf *out, const char *const *roles,
                                const char *const *contents, int32_t n, uint32_t flags, align__errbuf *eb)
{
    if (n < 0 || (n > 0 && (!roles || !contents)))
        return align__error(eb, ALIGN_EINVAL, "template: %d messages with roles %s and contents %s", (int)n,
                            roles ? "set" : "NULL", contents ? "set" : "NULL");
    for (int32_t j = 0; j < n; j++) {
        if (!roles[j] || !contents[j])
            return align__error(eb, ALIGN_EINVAL, "template: message %d has a NULL %s", (int)j,
                                !roles[j] ? "role" : "content");
        if (!roles[j][0])
            return align__error(eb, ALIGN_EINVAL, "template: message %d has an empty role", (int)j);
        int rc = align__template_encode_message(tp, out, roles[j], strlen(roles[j]), contents[j],
                                                strlen(contents[j]), flags, eb);
        if (rc)
            return rc;
    }
    return (flags & ALIGN__TEMPLATE_GEN_PROMPT) ? align__template_encode_gen_prompt(tp, out, flags, eb) : ALIGN_OK;
}

int align__template_encode_response(align__template *tp, align__tokbuf *out, const char *response,
                                    size_t response_len, int64_t *resp_start, int64_t *resp_end, align__errbuf *eb)
{
    const int64_t start = out->n;
    int rc;
    if ((rc = align__template_encode_text(tp, out, response, response_len, 1, eb)) ||
        (rc = append_ids(out, &tp->eot, 1, 1, eb)))
        return rc;
    if (resp_start)
        *resp_start = start;
    if (resp_end)
        *resp_end = out->n;
    return ALIGN_OK;
}

int align__template_encode_pair(align__template *tp, align__tokbuf *out, const char *prompt, size_t prompt_len,
                                const char *response, size_t response_len, uint32_t flags, int64_t *resp_start,
                                int64_t *resp_end, align__errbuf *eb)
{
    int rc = align__template_encode_text(tp, out, prompt, prompt_len, (flags & ALIGN__TEMPLATE_FULL_LOSS) != 0, eb);
    return rc ? rc : align__template_encode_response(tp, out, response, response_len, resp_start, resp_end, eb);
}

int align__template_encode_prompt(align__template *tp, align__tokbuf *out, const char *prompt, size_t prompt_len,
                                  align__errbuf *eb)
{
    return align__template_encode_text(tp, out, prompt, prompt_len, 0, eb);
}

/* ---- public face ------------------------------------------------------------ */

static const align_chat_template chat_defaults = {
    .struct_size = sizeof(align_chat_template),
    .flags = 0,
    .system_prefix = NULL,
    .user_prefix = NULL,
    .assistant_prefix = NULL,
};

ALIGN_API int align_chat_template_default_params(align_chat_template *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &chat_defaults, sizeof chat_defaults,
                                  "align_chat_template_default_params");
}

int align__template_init_public(align__template *tp, const align_tokenizer *t, const align_chat_template *tmpl,
                                align__errbuf *eb)
{
    memset(tp, 0, sizeof *tp);
    align_chat_template c = chat_defaults;
    int rc = align__params_copy(&c, sizeof c, tmpl, "align_chat_template");
    if (rc)
        return align__error(eb, rc, "%s", align_last_errmsg());
    if (c.flags)
        return align__error(eb, ALIGN_EINVAL, "align_chat_template.flags has unknown bits 0x%x", (unsigned)c.flags);
    return align__template_init(tp, t, c.system_prefix, c.user_prefix, c.assistant_prefix, eb);
}

ALIGN_API int align_chat_tokenize(const align_tokenizer *t, const align_chat_template *tmpl, const char *const *roles,
                                  const char *const *contents, int32_t n_messages, uint32_t flags, int32_t *ids,
                                  uint8_t *mask, size_t cap, size_t *n_out)
{
    if (n_out)
        *n_out = 0;
    if (!t || !n_out || (!ids && cap))
        return align__error(NULL, ALIGN_EINVAL, "align_chat_tokenize: %s is NULL",
                            !t ? "the tokenizer" : !n_out ? "n_out" : "ids");
    if (flags & ~ALIGN_CHAT_GENERATION_PROMPT)
        return align__error(NULL, ALIGN_EINVAL, "align_chat_tokenize: unknown flags 0x%x",
                            (unsigned)(flags & ~ALIGN_CHAT_GENERATION_PROMPT));
    align__errbuf eb = { { 0 } };
    align__template tp;
    align__tokbuf buf = { 0 };
    int rc = align__template_init_public(&tp, t, tmpl, &eb);
    if (!rc)
        rc = align__template_encode_chat(&tp, &buf, roles, contents, n_messages,
                                         (flags & ALIGN_CHAT_GENERATION_PROMPT) ? ALIGN__TEMPLATE_GEN_PROMPT : 0, &eb);
    if (!rc) {
        *n_out = (size_t)buf.n;
        size_t k = ALIGN__MIN((size_t)buf.n, cap);
        if (k) {
            memcpy(ids, buf.ids, k * sizeof *ids);
            if (mask)
                memcpy(mask, buf.mask, k);
        }
        if ((size_t)buf.n > cap)
            rc = align__error(&eb, ALIGN_ERANGE, "align_chat_tokenize: %zu ids do not fit in %zu", (size_t)buf.n, cap);
    }
    align__tokbuf_free(&buf);
    align__template_free(&tp);
    if (rc)
        return align__error(NULL, rc, "%s", eb.msg);
    return ALIGN_OK;
}
