/*
 * batch.c — dataset records -> training rows (see batch.h, docs/datasets.md).
 *
 * Every usable record is tokenized once, at creation, into one flat token
 * array with a parallel "is a loss target" flag per token, by the chat
 * template (data/template.h); a row is then a copy.
 */
#include "data/batch.h"
#include "data/dataset.h"
#include "data/template.h"

#include <stdio.h>
#include <string.h>

struct align__batcher {
    uint32_t flags;
    int32_t max_len, truncation;
    uint64_t seed;
    /* examples, concatenated: buf.mask[i] = token i is a target in the loss */
    align__tokbuf buf;
    int64_t *ex_off;
    int32_t *ex_len;
    int64_t n_ex, cap_ex;
    int64_t skipped, too_long;
    int64_t n_seen;     /* dataset records looked at (align__batcher_ingest) */
    int64_t epoch_n;    /* examples shuffled at the start of this epoch; later arrivals follow in order */
    int64_t *order;     /* this epoch's example order */
    /* iteration state */
    int64_t epoch, position, carry;
    align__rng epoch_rng;   /* before this epoch's shuffle (what the state saves) */
    align__rng next_rng;    /* after it: the next epoch shuffles from here */
    align__template tmpl;   /* the chat template (data/template.h) */
    align__errbuf *eb;
};

/* Appends record i's example; *usable = 0 for kinds the SFT rows ignore. */
static int build_example(align__batcher *b, const align_dataset *d, int64_t i, int *usable)
{
    align__record_view v;
    int rc = align__dataset_get(d, i, &v);
    if (rc)
        return align__error(b->eb, rc, "batcher: %s", align_last_errmsg());
    const uint32_t tf = (b->flags & ALIGN__BATCH_FULL_LOSS) ? ALIGN__TEMPLATE_FULL_LOSS : 0;
    *usable = 1;
    if (v.kind == ALIGN_RECORD_DEMO)
        rc = align__template_encode_pair(&b->tmpl, &b->buf, v.prompt, v.prompt_len, v.response, v.response_len, tf,
                                         NULL, NULL, b->eb);
    else if (v.kind == ALIGN_RECORD_CHAT)
        for (int32_t j = 0; j < v.n_items && !rc; j++) {
            const char *role, *content;
            size_t role_len, content_len;
            align__dataset_item(d, i, j, &role, &role_len, &content, &content_len, NULL);
            rc = align__template_encode_message(&b->tmpl, &b->buf, role, role_len, content, content_len, tf, b->eb);
        }
    else
        *usable = 0;
    if (rc) {
        char msg[ALIGN__ERRMSG_CAP];
        snprintf(msg, sizeof msg, "%s", align__errmsg(b->eb));
        return align__error(b->eb, rc, "batcher: record %lld: %s", (long long)i, msg);
    }
    return ALIGN_OK;
}

/* Applies the truncation policy to the example just appended at off. */
static void finish_example(align__batcher *b, int64_t off)
{
    int64_t len = b->buf.n - off;
    int pack = (b->flags & ALIGN__BATCH_PACK) != 0;
    const int too_long = len > b->max_len;
    if (too_long) {
        if (b->truncation == ALIGN_TRUNCATE_DROP) {
            b->buf.n = off;
            b->skipped++;
            b->too_long++;
            return;
        }
        if (!pack) {
            if (b->truncation == ALIGN_TRUNCATE_LEFT) {
                memmove(b->buf.ids + off, b->buf.ids + b->buf.n - b->max_len,
                        (size_t)b->max_len * sizeof *b->buf.ids);
                memmove(b->buf.mask + off, b->buf.mask + b->buf.n - b->max_len, (size_t)b->max_len);
            }
            b->buf.n = off + b->max_len;
            len = b->max_len;
        }
    }
    /* an example whose first token is its only target (or has none) trains
     * nothing: the first token of a row is never predicted */
    int any = 0;
    for (int64_t k = off + 1; k < b->buf.n && !any; k++)
        any = b->buf.mask[k];
    if (!any) {
        b->buf.n = off;
        b->skipped++;
        b->too_long += too_long; /* truncation cut every target away */
        return;
    }
    b->ex_off[b->n_ex] = off;
    b->ex_len[b->n_ex] = (int32_t)len;
    b->n_ex++;
}

int align__batcher_create(align__batcher **out, align_dataset *d, const align_tokenizer *t,
                          const align__batch_params *p, align__errbuf *eb)
{
    if (!out)
        return align__error(eb, ALIGN_EINVAL, "batcher: out is NULL");
    *out = NULL;
    if (!d || !t || !p)
        return align__error(eb, ALIGN_EINVAL, "batcher: dataset, tokenizer and params are required");
    if (p->max_len < 2)
        return align__error(eb, ALIGN_EINVAL, "batcher: max_len must be >= 2 (got %d)", (int)p->max_len);
    if (p->truncation < ALIGN_TRUNCATE_RIGHT || p->truncation > ALIGN_TRUNCATE_DROP)
        return align__error(eb, ALIGN_EINVAL, "batcher: unknown truncation policy %d", (int)p->truncation);
    if (align_tokenizer_eot(t) < 0)
        return align__error(eb, ALIGN_EINVAL, "batcher: the tokenizer has no end-of-text token");
    align__batcher *b = align__calloc(1, sizeof *b);
    if (!b)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    b->flags = p->flags;
    b->max_len = p->max_len;
    b->truncation = p->truncation;
    b->seed = p->seed;
    b->eb = eb;
    int64_t n = align_dataset_size(d);
    b->ex_off = align__malloc((size_t)(n ? n : 1) * sizeof *b->ex_off);
    b->ex_len = align__malloc((size_t)(n ? n : 1) * sizeof *b->ex_len);
    b->cap_ex = n ? n : 1;
    b->n_seen = n;
    int rc = (b->ex_off && b->ex_len) ? ALIGN_OK : align__error(eb, ALIGN_ENOMEM, "out of memory");
    if (!rc)
        rc = align__template_init(&b->tmpl, t, p->system_prefix, p->user_prefix, p->assistant_prefix, eb);
    for (int64_t i = 0; i < n && !rc; i++) {
        int64_t off = b->buf.n;
        int usable = 0;
        rc = build_example(b, d, i, &usable);
        if (rc)
            break;
        if (usable)
            finish_example(b, off);
        else
            b->skipped++;
    }
    if (!rc && b->n_ex == 0 && !(p->flags & ALIGN__BATCH_STREAM)) {
        if (b->too_long > 0)
            rc = align__error(eb, ALIGN_EINVAL,
                              "batcher: no usable record: %lld of %lld records were too long for max_seq_len %d "
                              "(%s; %lld skipped in all)",
                              (long long)b->too_long, (long long)n, (int)b->max_len,
                              b->truncation == ALIGN_TRUNCATE_DROP ? "dropped by ALIGN_TRUNCATE_DROP"
                                                                   : "truncation left no completion token",
                              (long long)b->skipped);
        else
            rc = align__error(eb, ALIGN_EINVAL,
                              "batcher: no usable record (%lld records; SFT uses demonstrations and chats, "
                              "%lld skipped)",
                              (long long)n, (long long)b->skipped);
    }
    if (!rc) {
        b->order = align__malloc((size_t)(b->n_ex ? b->n_ex : 1) * sizeof *b->order);
        if (!b->order)
            rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
    }
    /* the template stays for records that arrive later (align__batcher_ingest);
     * its tokenize scratch does not */
    align__free(b->tmpl.scratch);
    b->tmpl.scratch = NULL;
    b->tmpl.scratch_cap = 0;
    b->eb = NULL;
    if (rc) {
        align__batcher_free(b);
        return rc;
    }
    align__batcher_rewind(b);
    *out = b;
    return ALIGN_OK;
}

void align__batcher_free(align__batcher *b)
{
    if (!b)
        return;
    align__tokbuf_free(&b->buf);
    align__free(b->ex_off);
    align__free(b->ex_len);
    align__free(b->order);
    align__template_free(&b->tmpl);
    align__free(b);
}

/* The order of the epoch that starts from rng *r (advanced past the draws):
 * Fisher–Yates, or the dataset order without ALIGN__BATCH_SHUFFLE. */
static void make_order(align__batcher *b, align__rng *r)
{
    for (int64_t i = 0; i < b->n_ex; i++)
        b->order[i] = i;
    if (!(b->flags & ALIGN__BATCH_SHUFFLE))
        return;
    for (int64_t i = b->epoch_n - 1; i > 0; i--) {
        int64_t j = (int64_t)align__rng_below(r, (uint32_t)(i + 1));
        int64_t tmp = b->order[i];
        b->order[i] = b->order[j];
        b->order[j] = tmp;
    }
}

static void start_epoch(align__batcher *b)
{
    b->epoch++;
    b->position = 0;
    b->carry = 0;
    b->epoch_rng = b->next_rng;
    b->epoch_n = b->n_ex;
    align__rng r = b->epoch_rng;
    make_order(b, &r);
    b->next_rng = r;
}

void align__batcher_rewind(align__batcher *b)
{
    if (!b)
        return;
    b->epoch = 0;
    b->position = 0;
    b->carry = 0;
    align__rng_init(&b->next_rng, b->seed, 0);
    b->epoch_rng = b->next_rng;
    b->epoch_n = b->n_ex;
    for (int64_t i = 0; i < b->n_ex; i++)
        b->order[i] = i;
}

int align__batcher_next(align__batcher *b, int32_t n_rows, int wrap, int32_t *tokens, int32_t *lengths,
                        uint8_t *loss_mask, int32_t *rows_out)
{
    if (rows_out)
        *rows_out = 0;
    if (!b || n_rows < 0 || (n_rows && (!tokens || !lengths || !loss_mask)) || !rows_out)
        return align__error(NULL, ALIGN_EINVAL, "batcher_next: invalid arguments");
    const int32_t L = b->max_len;
    int pack = (b->flags & ALIGN__BATCH_PACK) != 0;
    int32_t rows = 0;
    while (rows < n_rows && b->n_ex > 0) {
        if (b->epoch == 0 || b->position >= b->n_ex) {
            if (b->epoch > 0 && !wrap)
                break;
            start_epoch(b);
        }
        int32_t *row = tokens + (size_t)rows * L;
        uint8_t *mask = loss_mask + (size_t)rows * (L - 1);
        memset(row, 0, (size_t)L * sizeof *row);
        memset(mask, 0, (size_t)(L - 1));
        int32_t fill = 0;
        /* mask[t] = loss flag of the token at t + 1; staged in place, then shifted */
        uint8_t first_dummy;
        do {
            int64_t ex = b->order[b->position];
            int64_t avail = b->ex_len[ex] - b->carry;
            int64_t take = ALIGN__MIN(avail, (int64_t)(L - fill));
            const int64_t src = b->ex_off[ex] + b->carry;
            memcpy(row + fill, b->buf.ids + src, (size_t)take * sizeof *row);
            for (int64_t k = 0; k < take; k++) {
                int64_t pos = fill + k;
                uint8_t *dst = pos == 0 ? &first_dummy : &mask[pos - 1];
                *dst = b->buf.mask[src + k];
            }
            fill += (int32_t)take;
            b->carry += take;
            if (b->carry >= b->ex_len[ex]) {
                b->position++;
                b->carry = 0;
            } else if (!pack) {
                /* cannot happen: rows are max_len long and examples were truncated */
                b->position++;
                b->carry = 0;
            }
        } while (pack && fill < L && b->position < b->n_ex);
        lengths[rows] = fill;
        rows++;
    }
    *rows_out = rows;
    return ALIGN_OK;
}

int64_t align__batcher_epoch(const align__batcher *b) { return b ? b->epoch : 0; }
int64_t align__batcher_examples(const align__batcher *b) { return b ? b->n_ex : 0; }
int64_t align__batcher_skipped(const align__batcher *b) { return b ? b->skipped : 0; }

void align__batcher_get_state(const align__batcher *b, align__batcher_state *out)
{
    if (!b || !out)
        return;
    out->epoch = b->epoch;
    out->position = b->position;
    out->carry = b->carry;
    out->rng = b->epoch == 0 ? b->next_rng : b->epoch_rng;
    out->epoch_examples = b->epoch == 0 ? b->n_ex : b->epoch_n;
}

int align__batcher_set_state(align__batcher *b, const align__batcher_state *s)
{
    if (!b || !s)
        return align__error(NULL, ALIGN_EINVAL, "batcher_set_state: NULL argument");
    if (s->epoch < 0 || s->position < 0 || s->position > b->n_ex || s->carry < 0 ||
        s->epoch_examples < 0 || s->epoch_examples > b->n_ex ||
        (s->epoch == 0 && (s->position != 0 || s->carry != 0)))
        return align__error(NULL, ALIGN_EINVAL,
                            "batcher_set_state: epoch %lld position %lld carry %lld do not fit %lld examples",
                            (long long)s->epoch, (long long)s->position, (long long)s->carry, (long long)b->n_ex);
    if (s->rng.seed != b->seed)
        return align__error(NULL, ALIGN_EINVAL, "batcher_set_state: the state was saved with another seed");
    if (s->epoch == 0) {
        align__batcher_rewind(b);
        b->next_rng = s->rng;
        b->epoch_rng = s->rng;
        return ALIGN_OK;
    }
    align__rng r = s->rng;
    int64_t cur_n = b->epoch_n;
    b->epoch_n = s->epoch_examples;
    make_order(b, &r);
    if (s->carry && (!(b->flags & ALIGN__BATCH_PACK) || s->position >= b->n_ex ||
                     s->carry >= b->ex_len[b->order[s->position]])) {
        /* all-or-nothing: put back the current epoch's order */
        b->epoch_n = cur_n;
        if (b->epoch > 0) {
            align__rng cur = b->epoch_rng;
            make_order(b, &cur);
        } else {
            for (int64_t i = 0; i < b->n_ex; i++)
                b->order[i] = i;
        }
        return align__error(NULL, ALIGN_EINVAL, "batcher_set_state: carry %lld does not fit the example",
                            (long long)s->carry);
    }
    b->epoch = s->epoch;
    b->position = s->position;
    b->carry = s->carry;
    b->epoch_rng = s->rng;
    b->next_rng = r;
    return ALIGN_OK;
}

/* ---- records that arrive later (a dataset fed by a source) ---------------------- */

int align__batcher_ingest(align__batcher *b, align_dataset *d, int64_t upto, int64_t *added, align__errbuf *eb)
{
    if (added)
        *added = 0;
    int64_t n = align_dataset_size(d);
    if (upto < 0 || upto > n)
        upto = n;
    if (upto <= b->n_seen)
        return ALIGN_OK;
    int64_t need = b->n_ex + (upto - b->n_seen);
    if (need > b->cap_ex) {
        int64_t c = ALIGN__MAX(need, 2 * b->cap_ex);
        int64_t *off = align__realloc(b->ex_off, (size_t)c * sizeof *off);
        if (off)
            b->ex_off = off;
        int32_t *len = align__realloc(b->ex_len, (size_t)c * sizeof *len);
        if (len)
            b->ex_len = len;
        int64_t *ord = align__realloc(b->order, (size_t)c * sizeof *ord);
        if (ord)
            b->order = ord;
        if (!off || !len || !ord)
            return align__error(eb, ALIGN_ENOMEM, "out of memory");
        b->cap_ex = c;
    }
    /* all-or-nothing: on a failure the batcher is put back to this mark */
    const int64_t n_tok = b->buf.n, n_ex = b->n_ex, skipped = b->skipped, seen = b->n_seen;
    const int64_t too_long = b->too_long;
    b->eb = eb;
    int rc = ALIGN_OK;
    for (int64_t i = b->n_seen; i < upto && !rc; i++) {
        int64_t off = b->buf.n;
        int usable = 0;
        rc = build_example(b, d, i, &usable);
        if (!rc && usable)
            finish_example(b, off);
        else if (!rc)
            b->skipped++;
    }
    align__free(b->tmpl.scratch);
    b->tmpl.scratch = NULL;
    b->tmpl.scratch_cap = 0;
    b->eb = NULL;
    if (rc) {
        b->buf.n = n_tok;
        b->too_long = too_long;
        b->n_ex = n_ex;
        b->skipped = skipped;
        b->n_seen = seen;
        return rc;
    }
    b->n_seen = upto;
    /* arrivals join the current epoch after its shuffled part, in order */
    for (int64_t i = n_ex; i < b->n_ex; i++)
        b->order[i] = i;
    if (added)
        *added = b->n_ex - n_ex;
    return ALIGN_OK;
}

int64_t align__batcher_records(const align__batcher *b) { return b ? b->n_seen : 0; }

int64_t align__batcher_tokens_left(const align__batcher *b)
{
    if (!b)
        return 0;
    int64_t pos = b->epoch == 0 ? 0 : b->position, n = -(b->epoch == 0 ? 0 : b->carry);
    for (int64_t i = pos; i < b->n_ex; i++)
        n += b->ex_len[b->epoch == 0 ? i : b->order[i]];
    return n;
}
