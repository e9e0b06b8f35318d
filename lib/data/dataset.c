/*
 * dataset.c — one data model for every kind of feedback (docs/datasets.md).
 *
 * Records are small fixed-size structs; their strings live in one arena
 * (NUL-terminated, addressed by offset so the arena may grow by realloc), and
 * the variable parts of chat and ranking records (messages, responses with
 * their ranks) in one item array. A 100k-line file is three allocations that
 * grow geometrically, not 300k small ones.
 *
 * JSON goes through jansson (docs/datasets.md says why). A record is added
 * the same way from the API and from a JSONL line: the line is decoded into a
 * rec_in and handed to add_record(), which validates everything before it
 * appends anything, so a failed add leaves the dataset unchanged.
 */
#include "core/core.h"
#include "data/dataset.h"
#include "data/utf8.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_STR UINT64_MAX

typedef struct str_ref {
    uint64_t off;   /* NO_STR = absent */
    uint64_t len;
} str_ref;

typedef struct rec {
    int32_t kind, source;
    int64_t timestamp;
    str_ref annotator, prompt, response;
    int32_t good;
    float score;
    int32_t n_items;
    int64_t first_item;
} rec;

typedef struct item {
    str_ref role;   /* chat: role; ranking: absent */
    str_ref text;
    int32_t rank;   /* ranking: place of this response */
} item;

struct align_text_sink {
    align_dataset *d;
    int64_t added;
};

struct align_dataset {
    align__errbuf err;
    rec *recs;
    int64_t n, cap;
    item *items;
    int64_t n_items, items_cap;
    char *arena;
    size_t arena_len, arena_cap;
    int64_t skipped;
    align_prompt_fn source;
    void *source_ud;
    align_text_sink sink;   /* handed to the source callback */
    int pulling;            /* inside the source callback */
};

/* What a record is made of before it is stored (pointers are the caller's). */
typedef struct rec_in {
    int32_t kind;
    const char *prompt;
    size_t prompt_len;
    const char *response;
    size_t response_len;
    int32_t good;
    float score;
    int32_t n;
    const char **roles;     /* chat */
    size_t *role_lens;
    const char **texts;     /* chat contents, ranking responses */
    size_t *text_lens;
    const int32_t *ranks;   /* ranking */
    int32_t source;
    const char *annotator;
    size_t annotator_len;
    int64_t timestamp;
} rec_in;

static const char *const source_names[] = { "unknown", "human", "ai", "program" };

/* ---- lifetime ------------------------------------------------------------------ */

ALIGN_API int align_dataset_create(align_dataset **out)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "out is NULL");
    *out = align__calloc(1, sizeof **out);
    if (!*out)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    return ALIGN_OK;
}

ALIGN_API void align_dataset_free(align_dataset *d)
{
    if (!d)
        return;
    align__free(d->recs);
    align__free(d->items);
    align__free(d->arena);
    align__free(d);
}

ALIGN_API const char *align_dataset_errmsg(const align_dataset *d)
{
    return d ? align__errmsg(&d->err) : "dataset is NULL";
}

ALIGN_API int64_t align_dataset_size(const align_dataset *d)
{
    return d ? d->n : 0;
}

ALIGN_API int64_t align_dataset_skipped(const align_dataset *d)
{
    return d ? d->skipped : 0;
}

ALIGN_API int align_provenance_default(align_provenance *out, size_t struct_size)
{
    align_provenance def = { sizeof def, ALIGN_SOURCE_UNKNOWN, NULL, 0 };
    return align__params_defaults(out, struct_size, &def, sizeof def, "align_provenance");
}

/* ---- storing ---------------------------------------------------------------------- */

static int grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t c = ALIGN__MAX(*cap * 2, ALIGN__MAX(need, 64));
    void *q = align__realloc(*p, (size_t)c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static str_ref put_str(align_dataset *d, const char *s, size_t len)
{
    str_ref r = { NO_STR, 0 };
    if (!s)
        return r;
    if (d->arena_len + len + 1 > d->arena_cap) {
        size_t c = ALIGN__MAX(d->arena_cap * 2, d->arena_len + len + 1 + 4096);
        char *p = align__realloc(d->arena, c);
        if (!p) {
            r.len = UINT64_MAX; /* marks failure */
            return r;
        }
        d->arena = p;
        d->arena_cap = c;
    }
    memcpy(d->arena + d->arena_len, s, len);
    d->arena[d->arena_len + len] = '\0';
    r.off = d->arena_len;
    r.len = len;
    d->arena_len += len + 1;
    return r;
}

static int bad_str(str_ref r)
{
    return r.off == NO_STR && r.len == UINT64_MAX;
}

/* Checks a string: UTF-8 and no NUL byte (records travel as C strings). */
static int check_text(const char *s, size_t len, const char *what, char *why, size_t whycap)
{
    if (!s) {
        snprintf(why, whycap, "'%s' is missing", what);
        return ALIGN_EINVAL;
    }
    size_t v = align__utf8_valid_prefix((const unsigned char *)s, len);
    if (v != len) {
        snprintf(why, whycap, "'%s' is not valid UTF-8 (byte %zu)", what, v);
        return ALIGN_EINVAL;
    }
    if (memchr(s, '\0', len)) {
        snprintf(why, whycap, "'%s' contains a NUL character", what);
        return ALIGN_EINVAL;
    }
    return ALIGN_OK;
}

/* The ranking rule (docs/datasets.md): K >= 2 places, each in 0..K-1, dense —
 * every place from 0 to the largest one used is taken by at least one
 * response. Ties share a place; the next place follows directly
 * ([0, 1, 1, 2] is valid, [0, 2, 2, 3] is not). */
static int check_ranking(const int32_t *rank, int32_t k, char *why, size_t whycap)
{
    if (k < 2) {
        snprintf(why, whycap, "a ranking needs at least 2 responses (got %d)", (int)k);
        return ALIGN_EINVAL;
    }
    if (!rank) {
        snprintf(why, whycap, "'ranking' is missing");
        return ALIGN_EINVAL;
    }
    int32_t maxr = 0;
    for (int32_t i = 0; i < k; i++) {
        if (rank[i] < 0 || rank[i] >= k) {
            snprintf(why, whycap, "ranking[%d] = %d is outside 0..%d", (int)i, (int)rank[i], (int)(k - 1));
            return ALIGN_EINVAL;
        }
        maxr = ALIGN__MAX(maxr, rank[i]);
    }
    for (int32_t r = 0; r <= maxr; r++) {
        int32_t i = 0;
        while (i < k && rank[i] != r)
            i++;
        if (i == k) {
            snprintf(why, whycap, "ranking skips place %d (places must be dense: 0, then 1, ... ties share a place)",
                     (int)r);
            return ALIGN_EINVAL;
        }
    }
    return ALIGN_OK;
}

static int validate(const rec_in *in, char *why, size_t whycap)
{
    int rc;
    if (in->source < ALIGN_SOURCE_UNKNOWN || in->source > ALIGN_SOURCE_PROGRAM) {
        snprintf(why, whycap, "unknown provenance source %d", (int)in->source);
        return ALIGN_EINVAL;
    }
    if (in->annotator && (rc = check_text(in->annotator, in->annotator_len, "annotator", why, whycap)))
        return rc;
    if (in->kind != ALIGN_RECORD_CHAT && (rc = check_text(in->prompt, in->prompt_len, "prompt", why, whycap)))
        return rc;
    switch (in->kind) {
    case ALIGN_RECORD_DEMO:
        return check_text(in->response, in->response_len, "completion", why, whycap);
    case ALIGN_RECORD_LABEL:
        if (in->good != 0 && in->good != 1) {
            snprintf(why, whycap, "label must be 1 (good) or 0 (bad), got %d", (int)in->good);
            return ALIGN_EINVAL;
        }
        return check_text(in->response, in->response_len, "response", why, whycap);
    case ALIGN_RECORD_SCORE:
        if (!isfinite(in->score)) {
            snprintf(why, whycap, "score is not a finite number");
            return ALIGN_EINVAL;
        }
        return check_text(in->response, in->response_len, "response", why, whycap);
    case ALIGN_RECORD_PROMPT:
        return ALIGN_OK;
    case ALIGN_RECORD_CHAT:
        if (in->n < 1) {
            snprintf(why, whycap, "a chat needs at least one message");
            return ALIGN_EINVAL;
        }
        for (int32_t i = 0; i < in->n; i++) {
            char what[48];
            snprintf(what, sizeof what, "messages[%d].role", (int)i);
            if ((rc = check_text(in->roles[i], in->role_lens[i], what, why, whycap)))
                return rc;
            if (in->role_lens[i] == 0) {
                snprintf(why, whycap, "%s is empty", what);
                return ALIGN_EINVAL;
            }
            snprintf(what, sizeof what, "messages[%d].content", (int)i);
            if ((rc = check_text(in->texts[i], in->text_lens[i], what, why, whycap)))
                return rc;
        }
        return ALIGN_OK;
    case ALIGN_RECORD_RANKING:
        if ((rc = check_ranking(in->ranks, in->n, why, whycap)))
            return rc;
        for (int32_t i = 0; i < in->n; i++) {
            char what[48];
            snprintf(what, sizeof what, "responses[%d]", (int)i);
            if ((rc = check_text(in->texts[i], in->text_lens[i], what, why, whycap)))
                return rc;
        }
        return ALIGN_OK;
    default:
        snprintf(why, whycap, "unknown record kind %d", (int)in->kind);
        return ALIGN_EINVAL;
    }
}

/* Validates, then appends. On failure nothing was added; the reason is in
 * why (without a location prefix). */
static int add_record(align_dataset *d, const rec_in *in, char *why, size_t whycap)
{
    int rc = validate(in, why, whycap);
    if (rc)
        return rc;
    int32_t n_items = (in->kind == ALIGN_RECORD_CHAT || in->kind == ALIGN_RECORD_RANKING) ? in->n : 0;
    if (grow((void **)&d->recs, &d->cap, d->n + 1, sizeof *d->recs) ||
        grow((void **)&d->items, &d->items_cap, d->n_items + n_items, sizeof *d->items)) {
        snprintf(why, whycap, "out of memory");
        return ALIGN_ENOMEM;
    }
    size_t arena_mark = d->arena_len;
    rec r;
    memset(&r, 0, sizeof r);
    r.kind = in->kind;
    r.source = in->source;
    r.timestamp = in->timestamp;
    r.good = in->kind == ALIGN_RECORD_LABEL ? in->good : 0;
    r.score = in->kind == ALIGN_RECORD_SCORE ? in->score : 0.0f;
    r.annotator = put_str(d, in->annotator, in->annotator_len);
    r.prompt = put_str(d, in->kind == ALIGN_RECORD_CHAT ? NULL : in->prompt, in->prompt_len);
    int has_resp = in->kind == ALIGN_RECORD_DEMO || in->kind == ALIGN_RECORD_LABEL || in->kind == ALIGN_RECORD_SCORE;
    r.response = put_str(d, has_resp ? in->response : NULL, in->response_len);
    r.n_items = n_items;
    r.first_item = d->n_items;
    int failed = bad_str(r.annotator) || bad_str(r.prompt) || bad_str(r.response);
    for (int32_t i = 0; i < n_items && !failed; i++) {
        item *it = &d->items[d->n_items + i];
        it->role = put_str(d, in->kind == ALIGN_RECORD_CHAT ? in->roles[i] : NULL,
                           in->kind == ALIGN_RECORD_CHAT ? in->role_lens[i] : 0);
        it->text = put_str(d, in->texts[i], in->text_lens[i]);
        it->rank = in->kind == ALIGN_RECORD_RANKING ? in->ranks[i] : 0;
        failed = bad_str(it->role) || bad_str(it->text);
    }
    if (failed) {
        d->arena_len = arena_mark;
        snprintf(why, whycap, "out of memory");
        return ALIGN_ENOMEM;
    }
    d->n_items += n_items;
    d->recs[d->n++] = r;
    return ALIGN_OK;
}

/* The API adds: copy the caller's provenance prefix over the defaults. */
static int api_prov(align_dataset *d, const align_provenance *pv, rec_in *in, const char *fn)
{
    align_provenance p;
    align_provenance_default(&p, sizeof p);
    if (pv) {
        int rc = align__params_copy(&p, sizeof p, pv, "align_provenance");
        if (rc)
            return align__error(&d->err, rc, "%s: %s", fn, align_last_errmsg());
    }
    in->source = p.source;
    in->annotator = p.annotator;
    in->annotator_len = p.annotator ? strlen(p.annotator) : 0;
    in->timestamp = p.timestamp;
    return ALIGN_OK;
}

static int api_add(align_dataset *d, rec_in *in, const align_provenance *pv, const char *fn)
{
    align__error_clear(&d->err);
    int rc = api_prov(d, pv, in, fn);
    if (rc)
        return rc;
    char why[256];
    rc = add_record(d, in, why, sizeof why);
    return rc ? align__error(&d->err, rc, "%s: %s", fn, why) : ALIGN_OK;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

ALIGN_API int align_dataset_add_demo(align_dataset *d, const char *prompt, const char *completion,
                                     const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    rec_in in = { .kind = ALIGN_RECORD_DEMO, .prompt = prompt, .prompt_len = slen(prompt),
                  .response = completion, .response_len = slen(completion) };
    return api_add(d, &in, pv, "align_dataset_add_demo");
}

ALIGN_API int align_dataset_add_label(align_dataset *d, const char *prompt, const char *response, int32_t good,
                                      const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    rec_in in = { .kind = ALIGN_RECORD_LABEL, .prompt = prompt, .prompt_len = slen(prompt),
                  .response = response, .response_len = slen(response), .good = good };
    return api_add(d, &in, pv, "align_dataset_add_label");
}

ALIGN_API int align_dataset_add_score(align_dataset *d, const char *prompt, const char *response, float score,
                                      const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    rec_in in = { .kind = ALIGN_RECORD_SCORE, .prompt = prompt, .prompt_len = slen(prompt),
                  .response = response, .response_len = slen(response), .score = score };
    return api_add(d, &in, pv, "align_dataset_add_score");
}

ALIGN_API int align_dataset_add_prompt(align_dataset *d, const char *prompt, const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    rec_in in = { .kind = ALIGN_RECORD_PROMPT, .prompt = prompt, .prompt_len = slen(prompt) };
    return api_add(d, &in, pv, "align_dataset_add_prompt");
}

/* Arrays of C strings as (pointer, length) pairs for rec_in. */
static int lens_of(const char *const *strs, int32_t n, size_t **out)
{
    *out = align__malloc((size_t)(n > 0 ? n : 1) * sizeof **out);
    if (!*out)
        return ALIGN_ENOMEM;
    for (int32_t i = 0; i < n; i++)
        (*out)[i] = slen(strs[i]);
    return ALIGN_OK;
}

ALIGN_API int align_dataset_add_chat(align_dataset *d, const char *const *roles, const char *const *contents,
                                     int32_t n_messages, const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    if (n_messages < 1 || !roles || !contents)
        return align__error(&d->err, ALIGN_EINVAL, "align_dataset_add_chat: needs n_messages >= 1 with roles and contents");
    size_t *rl = NULL, *cl = NULL;
    if (lens_of(roles, n_messages, &rl) || lens_of(contents, n_messages, &cl)) {
        align__free(rl);
        return align__error(&d->err, ALIGN_ENOMEM, "out of memory");
    }
    rec_in in = { .kind = ALIGN_RECORD_CHAT, .n = n_messages, .roles = (const char **)roles, .role_lens = rl,
                  .texts = (const char **)contents, .text_lens = cl };
    int rc = api_add(d, &in, pv, "align_dataset_add_chat");
    align__free(rl);
    align__free(cl);
    return rc;
}

ALIGN_API int align_dataset_add_ranking(align_dataset *d, const char *prompt, const char *const *responses,
                                        const int32_t *rank, int32_t k, const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    if (k < 2 || !responses || !rank)
        return align__error(&d->err, ALIGN_EINVAL,
                            "align_dataset_add_ranking: needs k >= 2 responses and their ranks (got k = %d)", (int)k);
    size_t *tl = NULL;
    if (lens_of(responses, k, &tl))
        return align__error(&d->err, ALIGN_ENOMEM, "out of memory");
    rec_in in = { .kind = ALIGN_RECORD_RANKING, .prompt = prompt, .prompt_len = slen(prompt), .n = k,
                  .texts = (const char **)responses, .text_lens = tl, .ranks = rank };
    int rc = api_add(d, &in, pv, "align_dataset_add_ranking");
    align__free(tl);
    return rc;
}

ALIGN_API int align_dataset_add_preference(align_dataset *d, const char *prompt, const char *chosen,
                                           const char *rejected, const align_provenance *pv)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    const char *resp[2] = { chosen, rejected };
    size_t lens[2] = { slen(chosen), slen(rejected) };
    static const int32_t ranks[2] = { 0, 1 };
    if (!chosen || !rejected)
        return align__error(&d->err, ALIGN_EINVAL, "align_dataset_add_preference: chosen and rejected are required");
    rec_in in = { .kind = ALIGN_RECORD_RANKING, .prompt = prompt, .prompt_len = slen(prompt), .n = 2,
                  .texts = resp, .text_lens = lens, .ranks = ranks };
    return api_add(d, &in, pv, "align_dataset_add_preference");
}

/* ---- reading -------------------------------------------------------------------------- */

static const char *str_at(const align_dataset *d, str_ref r, size_t *len)
{
    if (r.off == NO_STR) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = (size_t)r.len;
    return d->arena + r.off;
}

int align__dataset_get(const align_dataset *d, int64_t i, align__record_view *out)
{
    if (!d || !out || i < 0 || i >= d->n)
        return align__error(NULL, ALIGN_EINVAL, "record %lld out of range", (long long)i);
    const rec *r = &d->recs[i];
    out->kind = r->kind;
    out->source = r->source;
    out->annotator = str_at(d, r->annotator, NULL);
    out->timestamp = r->timestamp;
    out->prompt = str_at(d, r->prompt, &out->prompt_len);
    out->response = str_at(d, r->response, &out->response_len);
    out->good = r->good;
    out->score = r->score;
    out->n_items = r->n_items;
    return ALIGN_OK;
}

int align__dataset_item(const align_dataset *d, int64_t i, int32_t j, const char **role, size_t *role_len,
                        const char **text, size_t *text_len, int32_t *rank_out)
{
    if (!d || i < 0 || i >= d->n || j < 0 || j >= d->recs[i].n_items)
        return align__error(NULL, ALIGN_EINVAL, "record %lld item %d out of range", (long long)i, (int)j);
    const item *it = &d->items[d->recs[i].first_item + j];
    const char *r = str_at(d, it->role, role_len);
    if (role)
        *role = r;
    const char *t = str_at(d, it->text, text_len);
    if (text)
        *text = t;
    if (rank_out)
        *rank_out = it->rank;
    return ALIGN_OK;
}

ALIGN_API int align_dataset_record_kind(const align_dataset *d, int64_t i)
{
    if (!d || i < 0 || i >= d->n)
        return align__error(NULL, ALIGN_EINVAL, "record %lld out of range", (long long)i);
    return d->recs[i].kind;
}

/* ---- JSON out ---------------------------------------------------------------------------- */

static json_t *jstr(const align_dataset *d, str_ref r)
{
    return json_stringn_nocheck(d->arena + r.off, (size_t)r.len);
}

/* The shortest decimal that reads back as the same float, so scores save
 * as 0.1 rather than 0.10000000149011612 and still round-trip exactly. */
static double float_for_json(float f)
{
    char buf[48];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

static json_t *record_to_json(const align_dataset *d, int64_t i)
{
    const rec *r = &d->recs[i];
    /* items is NULL in a dataset without chat or ranking records: no NULL + 0 */
    const item *it = r->n_items ? d->items + r->first_item : NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    if (r->kind == ALIGN_RECORD_CHAT) {
        json_t *msgs = json_array();
        for (int32_t j = 0; j < r->n_items; j++) {
            json_t *m = json_object();
            bad |= json_object_set_new(m, "role", jstr(d, it[j].role));
            bad |= json_object_set_new(m, "content", jstr(d, it[j].text));
            bad |= json_array_append_new(msgs, m);
        }
        bad |= json_object_set_new(o, "messages", msgs);
    } else {
        bad |= json_object_set_new(o, "prompt", jstr(d, r->prompt));
    }
    switch (r->kind) {
    case ALIGN_RECORD_DEMO:
        bad |= json_object_set_new(o, "completion", jstr(d, r->response));
        break;
    case ALIGN_RECORD_RANKING:
        /* A strict pair [0, 1] saves in the familiar chosen/rejected form;
         * anything else (ties, reversed order, K > 2) as responses/ranking,
         * so loading the file back gives the very same record. */
        if (r->n_items == 2 && it[0].rank == 0 && it[1].rank == 1) {
            bad |= json_object_set_new(o, "chosen", jstr(d, it[0].text));
            bad |= json_object_set_new(o, "rejected", jstr(d, it[1].text));
        } else {
            json_t *resp = json_array(), *rank = json_array();
            for (int32_t j = 0; j < r->n_items; j++) {
                bad |= json_array_append_new(resp, jstr(d, it[j].text));
                bad |= json_array_append_new(rank, json_integer(it[j].rank));
            }
            bad |= json_object_set_new(o, "responses", resp);
            bad |= json_object_set_new(o, "ranking", rank);
        }
        break;
    case ALIGN_RECORD_LABEL:
        bad |= json_object_set_new(o, "response", jstr(d, r->response));
        bad |= json_object_set_new(o, "label", json_boolean(r->good));
        break;
    case ALIGN_RECORD_SCORE:
        bad |= json_object_set_new(o, "response", jstr(d, r->response));
        bad |= json_object_set_new(o, "score", json_real(float_for_json(r->score)));
        break;
    default:
        break;
    }
    if (r->source != ALIGN_SOURCE_UNKNOWN)
        bad |= json_object_set_new(o, "source", json_string(source_names[r->source]));
    if (r->annotator.off != NO_STR)
        bad |= json_object_set_new(o, "annotator", jstr(d, r->annotator));
    if (r->timestamp != 0)
        bad |= json_object_set_new(o, "timestamp", json_integer((json_int_t)r->timestamp));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9))

ALIGN_API int align_dataset_record_json(const align_dataset *d, int64_t i, char **json_out)
{
    if (json_out)
        *json_out = NULL;
    if (!d || !json_out)
        return align__error(NULL, ALIGN_EINVAL, "align_dataset_record_json: NULL argument");
    if (i < 0 || i >= d->n)
        return align__error(NULL, ALIGN_EINVAL, "align_dataset_record_json: record %lld out of range (size %lld)",
                            (long long)i, (long long)d->n);
    json_t *o = record_to_json(d, i);
    char *s = o ? json_dumps(o, DUMP_FLAGS) : NULL;
    json_decref(o);
    if (!s)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    /* copied so that align_free() (the library's allocator) releases it */
    *json_out = align__strdup(s);
    free(s);
    return *json_out ? ALIGN_OK : align__error(NULL, ALIGN_ENOMEM, "out of memory");
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int dump_cb(const char *buf, size_t size, void *data)
{
    sbuf *b = data;
    if (b->len + size + 1 > b->cap) {
        size_t c = ALIGN__MAX(b->cap * 2, b->len + size + 1 + 65536);
        char *p = align__realloc(b->p, c);
        if (!p)
            return -1;
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->len, buf, size);
    b->len += size;
    return 0;
}

ALIGN_API int align_dataset_save_jsonl(const align_dataset *d, const char *path)
{
    if (!d || !path)
        return align__error(NULL, ALIGN_EINVAL, "align_dataset_save_jsonl: NULL argument");
    align__errbuf *eb = (align__errbuf *)&d->err; /* the message is not part of the data */
    align__error_clear(eb);
    sbuf b = { NULL, 0, 0 };
    for (int64_t i = 0; i < d->n; i++) {
        json_t *o = record_to_json(d, i);
        int bad = !o || json_dump_callback(o, dump_cb, &b, DUMP_FLAGS) != 0 || dump_cb("\n", 1, &b) != 0;
        json_decref(o);
        if (bad) {
            align__free(b.p);
            return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", path);
        }
    }
    align__chunk c = { b.p ? b.p : "", b.len };
    int rc = align__write_atomic(eb, path, &c, 1);
    align__free(b.p);
    return rc;
}

/* ---- JSON in ---------------------------------------------------------------------------------- */

static int field_string(json_t *o, const char *key, int required, const char **s, size_t *len, char *why,
                        size_t whycap)
{
    json_t *v = json_object_get(o, key);
    *s = NULL;
    *len = 0;
    if (!v || (json_is_null(v) && !required)) {
        if (required) {
            snprintf(why, whycap, "missing '%s'", key);
            return ALIGN_EFORMAT;
        }
        return ALIGN_OK;
    }
    if (!json_is_string(v)) {
        snprintf(why, whycap, "'%s' must be a string", key);
        return ALIGN_EFORMAT;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return ALIGN_OK;
}

/* Scratch arrays for one line's chat or ranking, reused across lines. */
typedef struct line_scratch {
    const char **a;
    size_t *al;
    const char **b;
    size_t *bl;
    int32_t *ranks;
    size_t cap;
} line_scratch;

static int scratch_fit(line_scratch *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    size_t c = ALIGN__MAX(n, 2 * s->cap);
    void *p1 = align__realloc(s->a, c * sizeof *s->a);
    if (p1) s->a = p1;
    void *p2 = align__realloc(s->al, c * sizeof *s->al);
    if (p2) s->al = p2;
    void *p3 = align__realloc(s->b, c * sizeof *s->b);
    if (p3) s->b = p3;
    void *p4 = align__realloc(s->bl, c * sizeof *s->bl);
    if (p4) s->bl = p4;
    void *p5 = align__realloc(s->ranks, c * sizeof *s->ranks);
    if (p5) s->ranks = p5;
    if (!p1 || !p2 || !p3 || !p4 || !p5)
        return -1;
    s->cap = c;
    return 0;
}

/* The fields each kind of record may have, besides the provenance
 * (source, annotator, timestamp). Anything else is an error: a misspelt
 * "completions" must not load as a bare prompt (docs/datasets.md). */
static const char *const prov_fields[] = { "source", "annotator", "timestamp", NULL };
static const char *const chat_fields[] = { "messages", NULL };
static const char *const pref_fields[] = { "prompt", "chosen", "rejected", NULL };
static const char *const rank_fields[] = { "prompt", "responses", "ranking", NULL };
static const char *const label_fields[] = { "prompt", "response", "label", NULL };
static const char *const score_fields[] = { "prompt", "response", "score", NULL };
static const char *const demo_fields[] = { "prompt", "completion", NULL };
static const char *const prompt_fields[] = { "prompt", NULL };
static const char *const msg_fields[] = { "role", "content", NULL };
static const char *const all_fields[] = { "source", "annotator", "timestamp", "messages", "prompt", "chosen",
                                          "rejected", "responses", "ranking", "response", "label", "score",
                                          "completion", NULL };

static int in_list(const char *key, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(key, *list) == 0)
            return 1;
    return 0;
}

/* Every key of o is in allowed or extra; else why names the first that is
 * not: "unknown field 'x'", or "field 'x' does not belong in a <kind> record". */
static int check_fields(json_t *o, const char *const *allowed, const char *const *extra, const char *kind,
                        char *why, size_t whycap)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (in_list(key, allowed) || in_list(key, extra))
            continue;
        if (in_list(key, all_fields))
            snprintf(why, whycap, "field '%.64s' does not belong in a %s record", key, kind);
        else
            snprintf(why, whycap, "unknown field '%.64s'", key);
        return ALIGN_EFORMAT;
    }
    return ALIGN_OK;
}

static int json_to_rec_kind(json_t *o, rec_in *in, line_scratch *sc, char *why, size_t whycap);

/* One JSON object -> rec_in (pointers into o), refusing fields the kind does
 * not use. */
static int json_to_rec(json_t *o, rec_in *in, line_scratch *sc, char *why, size_t whycap)
{
    int rc = json_to_rec_kind(o, in, sc, why, whycap);
    if (rc)
        return rc;
    switch (in->kind) {
    case ALIGN_RECORD_CHAT: return check_fields(o, chat_fields, prov_fields, "chat", why, whycap);
    case ALIGN_RECORD_RANKING:
        return in->ranks && json_object_get(o, "responses")
                   ? check_fields(o, rank_fields, prov_fields, "ranking", why, whycap)
                   : check_fields(o, pref_fields, prov_fields, "preference", why, whycap);
    case ALIGN_RECORD_LABEL: return check_fields(o, label_fields, prov_fields, "label", why, whycap);
    case ALIGN_RECORD_SCORE: return check_fields(o, score_fields, prov_fields, "score", why, whycap);
    case ALIGN_RECORD_DEMO: return check_fields(o, demo_fields, prov_fields, "demonstration", why, whycap);
    default: return check_fields(o, prompt_fields, prov_fields, "prompt", why, whycap);
    }
}

/* Kind by the first field present of: messages, chosen/rejected, responses,
 * label, score, completion; else a bare prompt. */
static int json_to_rec_kind(json_t *o, rec_in *in, line_scratch *sc, char *why, size_t whycap)
{
    memset(in, 0, sizeof *in);
    int rc;
    json_t *v;
    /* provenance */
    if ((v = json_object_get(o, "source")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        in->source = -1;
        for (int i = 0; s && i < 4; i++)
            if (strcmp(s, source_names[i]) == 0)
                in->source = i;
        if (in->source < 0) {
            snprintf(why, whycap, "'source' must be one of \"human\", \"ai\", \"program\", \"unknown\"");
            return ALIGN_EFORMAT;
        }
    }
    if ((rc = field_string(o, "annotator", 0, &in->annotator, &in->annotator_len, why, whycap)))
        return rc;
    if ((v = json_object_get(o, "timestamp")) && !json_is_null(v)) {
        if (!json_is_integer(v)) {
            snprintf(why, whycap, "'timestamp' must be an integer (seconds since the epoch)");
            return ALIGN_EFORMAT;
        }
        in->timestamp = (int64_t)json_integer_value(v);
    }

    json_t *msgs = json_object_get(o, "messages");
    if (msgs) {
        in->kind = ALIGN_RECORD_CHAT;
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            snprintf(why, whycap, "'messages' must be a non-empty array");
            return ALIGN_EFORMAT;
        }
        size_t n = json_array_size(msgs);
        if (n > INT32_MAX || scratch_fit(sc, n)) {
            snprintf(why, whycap, "out of memory");
            return ALIGN_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            if (!json_is_object(m)) {
                snprintf(why, whycap, "messages[%zu] must be an object with 'role' and 'content'", i);
                return ALIGN_EFORMAT;
            }
            char w2[200];
            if ((rc = field_string(m, "role", 1, &sc->a[i], &sc->al[i], w2, sizeof w2)) ||
                (rc = field_string(m, "content", 1, &sc->b[i], &sc->bl[i], w2, sizeof w2)) ||
                (rc = check_fields(m, msg_fields, NULL, "message", w2, sizeof w2))) {
                snprintf(why, whycap, "messages[%zu]: %s", i, w2);
                return rc;
            }
        }
        in->n = (int32_t)n;
        in->roles = sc->a;
        in->role_lens = sc->al;
        in->texts = sc->b;
        in->text_lens = sc->bl;
        return ALIGN_OK;
    }
    if ((rc = field_string(o, "prompt", 1, &in->prompt, &in->prompt_len, why, whycap)))
        return rc;
    if (json_object_get(o, "chosen") || json_object_get(o, "rejected")) {
        in->kind = ALIGN_RECORD_RANKING;
        if (scratch_fit(sc, 2)) {
            snprintf(why, whycap, "out of memory");
            return ALIGN_ENOMEM;
        }
        if ((rc = field_string(o, "chosen", 1, &sc->b[0], &sc->bl[0], why, whycap)) ||
            (rc = field_string(o, "rejected", 1, &sc->b[1], &sc->bl[1], why, whycap)))
            return rc;
        sc->ranks[0] = 0;
        sc->ranks[1] = 1;
        in->n = 2;
        in->texts = sc->b;
        in->text_lens = sc->bl;
        in->ranks = sc->ranks;
        return ALIGN_OK;
    }
    json_t *resp = json_object_get(o, "responses");
    if (resp) {
        in->kind = ALIGN_RECORD_RANKING;
        json_t *rank = json_object_get(o, "ranking");
        if (!json_is_array(resp)) {
            snprintf(why, whycap, "'responses' must be an array of strings");
            return ALIGN_EFORMAT;
        }
        if (!rank) {
            snprintf(why, whycap, "missing 'ranking'");
            return ALIGN_EFORMAT;
        }
        if (!json_is_array(rank)) {
            snprintf(why, whycap, "'ranking' must be an array of integers");
            return ALIGN_EFORMAT;
        }
        size_t n = json_array_size(resp);
        if (json_array_size(rank) != n) {
            snprintf(why, whycap, "'ranking' has %zu entries but 'responses' has %zu", json_array_size(rank), n);
            return ALIGN_EFORMAT;
        }
        if (n > INT32_MAX || scratch_fit(sc, n ? n : 1)) {
            snprintf(why, whycap, "out of memory");
            return ALIGN_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(resp, i), *r = json_array_get(rank, i);
            if (!json_is_string(s)) {
                snprintf(why, whycap, "responses[%zu] must be a string", i);
                return ALIGN_EFORMAT;
            }
            if (!json_is_integer(r) || json_integer_value(r) < INT32_MIN || json_integer_value(r) > INT32_MAX) {
                snprintf(why, whycap, "ranking[%zu] must be an integer", i);
                return ALIGN_EFORMAT;
            }
            sc->b[i] = json_string_value(s);
            sc->bl[i] = json_string_length(s);
            sc->ranks[i] = (int32_t)json_integer_value(r);
        }
        in->n = (int32_t)n;
        in->texts = sc->b;
        in->text_lens = sc->bl;
        in->ranks = sc->ranks;
        return ALIGN_OK;
    }
    json_t *label = json_object_get(o, "label"), *score = json_object_get(o, "score");
    if (label || score) {
        if ((rc = field_string(o, "response", 1, &in->response, &in->response_len, why, whycap)))
            return rc;
        if (label && score) {
            snprintf(why, whycap, "a record has either 'label' or 'score', not both");
            return ALIGN_EFORMAT;
        }
        if (label) {
            if (!json_is_boolean(label)) {
                snprintf(why, whycap, "'label' must be true or false");
                return ALIGN_EFORMAT;
            }
            in->kind = ALIGN_RECORD_LABEL;
            in->good = json_is_true(label);
        } else {
            if (!json_is_number(score)) {
                snprintf(why, whycap, "'score' must be a number");
                return ALIGN_EFORMAT;
            }
            in->kind = ALIGN_RECORD_SCORE;
            in->score = (float)json_number_value(score);
            if (!isfinite(in->score)) {
                snprintf(why, whycap, "'score' is out of the float range");
                return ALIGN_EFORMAT;
            }
        }
        return ALIGN_OK;
    }
    if (json_object_get(o, "completion")) {
        in->kind = ALIGN_RECORD_DEMO;
        return field_string(o, "completion", 1, &in->response, &in->response_len, why, whycap);
    }
    if (json_object_get(o, "response")) {
        snprintf(why, whycap, "'response' needs a 'label' or a 'score' (a demonstration uses 'completion')");
        return ALIGN_EFORMAT;
    }
    in->kind = ALIGN_RECORD_PROMPT;
    return ALIGN_OK;
}

/* One line: ALIGN_OK, or an error code with the reason in why. */
static int load_line(align_dataset *d, const char *line, size_t len, line_scratch *sc, char *why, size_t whycap)
{
    size_t v = align__utf8_valid_prefix((const unsigned char *)line, len);
    if (v != len) {
        snprintf(why, whycap, "invalid UTF-8 at byte %zu of the line", v + 1);
        return ALIGN_EFORMAT;
    }
    json_error_t err;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!o) {
        snprintf(why, whycap, "malformed JSON at column %d: %s", err.column, err.text);
        return ALIGN_EFORMAT;
    }
    int rc;
    if (!json_is_object(o)) {
        snprintf(why, whycap, "expected a JSON object");
        rc = ALIGN_EFORMAT;
    } else {
        rec_in in;
        rc = json_to_rec(o, &in, sc, why, whycap);
        if (!rc) {
            rc = add_record(d, &in, why, whycap);
            if (rc == ALIGN_EINVAL) /* invalid content in a file is a format error */
                rc = ALIGN_EFORMAT;
        }
    }
    json_decref(o);
    return rc;
}

ALIGN_API int align_dataset_load_jsonl(align_dataset *d, const char *path, uint32_t flags)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    align__error_clear(&d->err);
    if (!path)
        return align__error(&d->err, ALIGN_EINVAL, "align_dataset_load_jsonl: path is NULL");
    if (flags & ~ALIGN_LENIENT)
        return align__error(&d->err, ALIGN_EINVAL, "align_dataset_load_jsonl: unknown flags 0x%x", flags);
    char *data = NULL;
    size_t len = 0;
    int rc = align__read_file(&d->err, path, &data, &len);
    if (rc)
        return rc;
    line_scratch sc;
    memset(&sc, 0, sizeof sc);
    char why[400], first_bad[440] = "";
    long line_no = 0, n_lines = 0, skipped = 0;
    const char *p = data, *end = data + len;
    rc = ALIGN_OK;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = p, *e = eol;
        p = eol + 1;
        line_no++;
        if (e > q && e[-1] == '\r')
            e--;
        /* blank lines are allowed (a trailing newline, spacing) */
        const char *s = q;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        if (s == e)
            continue;
        n_lines++;
        int lrc = load_line(d, q, (size_t)(e - q), &sc, why, sizeof why);
        if (lrc == ALIGN_OK)
            continue;
        if ((flags & ALIGN_LENIENT) && lrc == ALIGN_EFORMAT) {
            /* one summary warning at the end; each line at debug level */
            if (skipped++ == 0)
                snprintf(first_bad, sizeof first_bad, "line %ld: %s", line_no, why);
            align__log(ALIGN_LOG_DEBUG, "%s:%ld: %s (skipped)", path, line_no, why);
            continue;
        }
        rc = align__error(&d->err, lrc, "%s:%ld: %s", path, line_no, why);
        break;
    }
    d->skipped += skipped;
    if (skipped)
        align__log(ALIGN_LOG_WARN, "%s: skipped %ld bad line(s) of %ld; first at %s", path, skipped, n_lines,
                   first_bad);
    if (!rc && n_lines == 0)
        rc = align__error(&d->err, ALIGN_EFORMAT, "%s: empty file (no JSON lines)", path);
    align__free(sc.a);
    align__free(sc.al);
    align__free(sc.b);
    align__free(sc.bl);
    align__free(sc.ranks);
    align__free(data);
    return rc;
}

/* ---- pull source ---------------------------------------------------------------------------- */

ALIGN_API int align_dataset_set_source(align_dataset *d, align_prompt_fn fn, void *user_data)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "dataset is NULL");
    d->source = fn;
    d->source_ud = user_data;
    return ALIGN_OK;
}

ALIGN_API int align_text_sink_add(align_text_sink *sink, const char *text, size_t len)
{
    if (!sink || !sink->d)
        return align__error(NULL, ALIGN_EMISUSE, "align_text_sink_add: the sink is only valid inside the callback");
    if (!text && len)
        return align__error(NULL, ALIGN_EINVAL, "align_text_sink_add: text is NULL");
    rec_in in = { .kind = ALIGN_RECORD_PROMPT, .prompt = text ? text : "", .prompt_len = len };
    char why[256];
    int rc = add_record(sink->d, &in, why, sizeof why);
    if (rc)
        return align__error(NULL, rc, "align_text_sink_add: %s", why);
    sink->added++;
    return ALIGN_OK;
}

int align__dataset_has_source(const align_dataset *d)
{
    return d && d->source;
}

ALIGN_API align_dataset *align_text_sink_dataset(align_text_sink *sink)
{
    return sink ? sink->d : NULL;
}

int align__dataset_pull(align_dataset *d, int64_t min_new, align__errbuf *eb)
{
    if (!d)
        return align__error(eb, ALIGN_EINVAL, "dataset is NULL");
    if (!d->source)
        return ALIGN_DONE;
    if (d->pulling)
        return align__error(eb, ALIGN_EMISUSE, "the source callback pulled from its own dataset");
    int64_t total = 0;
    while (total < min_new) {
        /* The sink lives in the dataset, so a host that keeps the pointer past
         * the callback gets ALIGN_EMISUSE rather than a dangling pointer.
         * Records of any kind count: added with align_text_sink_add or with
         * align_dataset_add_* on align_text_sink_dataset(sink). */
        align_text_sink *sink = &d->sink;
        sink->d = d;
        sink->added = 0;
        int64_t before = d->n;
        d->pulling = 1;
        int r = d->source(sink, d->source_ud);
        d->pulling = 0;
        sink->d = NULL;
        int64_t added = d->n - before;
        total += added;
        if (r == ALIGN_DONE)
            return total >= min_new ? ALIGN_OK : ALIGN_DONE;
        if (r < 0) {
            align__error(&d->err, ALIGN_ECALLBACK, "data source returned %d (%s)", r, align_err_name(r));
            return align__error(eb, ALIGN_ECALLBACK, "%s", d->err.msg);
        }
        if (r != ALIGN_OK || added == 0) {
            align__error(&d->err, ALIGN_ECALLBACK, "data source returned %d without adding a record", r);
            return align__error(eb, ALIGN_ECALLBACK, "%s", d->err.msg);
        }
    }
    return ALIGN_OK;
}

ALIGN_API int align_dataset_pull(align_dataset *d, int64_t min_new)
{
    if (!d)
        return align__error(NULL, ALIGN_EINVAL, "align_dataset_pull: dataset is NULL");
    align__error_clear(&d->err);
    if (min_new < 1)
        return align__error(&d->err, ALIGN_EINVAL, "align_dataset_pull: min_new must be >= 1 (got %lld)",
                            (long long)min_new);
    return align__dataset_pull(d, min_new, NULL);
}
