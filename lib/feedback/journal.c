/*
 * journal.c — feedback requests answered later, kept in an append-only
 * JSON-lines file (docs/feedback.md).
 *
 * The file is a log of operations: a header line, then one line per submit,
 * answer, cancel, expiry and export. A call builds its line, appends it with
 * one write(), fsyncs, and only then changes the in-memory state, so what a
 * call acknowledged is on disk and the state is always what replaying the
 * file gives. Reopening replays the lines through the same apply functions
 * the API uses. A crash can only leave a partial last line (the call that
 * wrote it never returned): open drops it and truncates the file there.
 *
 * Requests are never removed while the journal is open: each one is a
 * separate allocation, so the strings handed out stay where they are, and
 * ids 1, 2, ... index them directly.
 */
#include "core/core.h"
#include "data/utf8.h"
#include "feedback/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_MAGIC "libalign-feedback-journal"
#define JOURNAL_VERSION 1

typedef struct jreq {
    int64_t id;
    int32_t kind, status, k, source;
    int64_t deadline, submitted_at, answered_at;
    int     exported;
    char   *prompt;
    char  **responses;
    char   *annotator;
    int32_t *ivals;   /* rank or labels (k) */
    float   *fvals;   /* scores (k) */
} jreq;

struct align_journal {
    pthread_mutex_t mu;
    align__errbuf err;
    char   *path;
    int     fd;
    uint32_t flags;
    off_t   size;         /* bytes of complete lines in the file */
    int64_t torn;         /* bytes dropped at open */
    jreq  **reqs;         /* reqs[id - 1] */
    int64_t n, cap;
    align__journal_watcher watcher;
    int     watched;
};

static const char *const kind_names[] = { "rank", "label", "score" };
static const char *const status_names[] = { "pending", "answered", "canceled", "expired" };
static const char *const source_names[] = { "unknown", "human", "ai", "program" };

/* ---- small helpers ----------------------------------------------------------- */

static void req_free(jreq *r)
{
    if (!r)
        return;
    align__free(r->prompt);
    if (r->responses)
        for (int32_t i = 0; i < r->k; i++)
            align__free(r->responses[i]);
    align__free(r->responses);
    align__free(r->annotator);
    align__free(r->ivals);
    align__free(r->fvals);
    align__free(r);
}

static int check_utf8(const char *s, const char *what, char *why, size_t whycap)
{
    if (!s) {
        snprintf(why, whycap, "%s is NULL", what);
        return ALIGN_EINVAL;
    }
    size_t n = strlen(s), v = align__utf8_valid_prefix((const unsigned char *)s, n);
    if (v != n) {
        snprintf(why, whycap, "%s is not valid UTF-8 (byte %zu)", what, v);
        return ALIGN_EINVAL;
    }
    return ALIGN_OK;
}

static jreq *find(const align_journal *j, int64_t id)
{
    return id >= 1 && id <= j->n ? j->reqs[id - 1] : NULL;
}

static int64_t now_sec(void)
{
    return (int64_t)time(NULL);
}

/* Same place rule as the dataset (docs/datasets.md): 0..K-1, dense, ties share. */
static int check_rank(const int32_t *rank, int32_t k, char *why, size_t whycap)
{
    int32_t maxr = 0;
    for (int32_t i = 0; i < k; i++) {
        if (rank[i] < 0 || rank[i] >= k) {
            snprintf(why, whycap, "rank[%d] = %d is outside 0..%d", (int)i, (int)rank[i], (int)(k - 1));
            return ALIGN_EINVAL;
        }
        maxr = ALIGN__MAX(maxr, rank[i]);
    }
    for (int32_t r = 0; r <= maxr; r++) {
        int32_t i = 0;
        while (i < k && rank[i] != r)
            i++;
        if (i == k) {
            snprintf(why, whycap, "rank skips place %d (places are dense: 0, 1, ...; ties share a place)", (int)r);
            return ALIGN_EINVAL;
        }
    }
    return ALIGN_OK;
}

/* ---- the operations, shared by the API and the replay -------------------------
 * Each check_* validates against the current state without changing it;
 * each apply_* cannot fail (memory was taken by the check). */

typedef struct answer_in {
    int32_t kind;
    const int32_t *ivals;
    const float *fvals;
    int32_t source;
    const char *annotator;
    int64_t time;
} answer_in;

static int check_answer(const align_journal *j, int64_t id, const answer_in *a, char *why, size_t whycap)
{
    jreq *r = find(j, id);
    if (!r) {
        snprintf(why, whycap, "no request with id %lld", (long long)id);
        return ALIGN_EINVAL;
    }
    if (r->status != ALIGN_REQUEST_PENDING) {
        snprintf(why, whycap, "request %lld is %s, not pending", (long long)id, status_names[r->status]);
        return ALIGN_EMISUSE;
    }
    if (r->kind != a->kind) {
        snprintf(why, whycap, "request %lld asks for a %s, not a %s", (long long)id, kind_names[r->kind],
                 kind_names[a->kind]);
        return ALIGN_EMISUSE;
    }
    if (a->source < ALIGN_SOURCE_UNKNOWN || a->source > ALIGN_SOURCE_PROGRAM) {
        snprintf(why, whycap, "unknown provenance source %d", (int)a->source);
        return ALIGN_EINVAL;
    }
    if (a->annotator) {
        int rc = check_utf8(a->annotator, "annotator", why, whycap);
        if (rc)
            return rc;
    }
    if (a->kind == ALIGN_FEEDBACK_SCORE) {
        if (!a->fvals) {
            snprintf(why, whycap, "scores is NULL");
            return ALIGN_EINVAL;
        }
        for (int32_t i = 0; i < r->k; i++)
            if (!isfinite(a->fvals[i])) {
                snprintf(why, whycap, "scores[%d] is not a finite number", (int)i);
                return ALIGN_EINVAL;
            }
        return ALIGN_OK;
    }
    if (!a->ivals) {
        snprintf(why, whycap, "%s is NULL", a->kind == ALIGN_FEEDBACK_RANK ? "rank" : "good");
        return ALIGN_EINVAL;
    }
    if (a->kind == ALIGN_FEEDBACK_RANK)
        return check_rank(a->ivals, r->k, why, whycap);
    for (int32_t i = 0; i < r->k; i++)
        if (a->ivals[i] != 0 && a->ivals[i] != 1) {
            snprintf(why, whycap, "good[%d] = %d: a label is 1 (good) or 0 (bad)", (int)i, (int)a->ivals[i]);
            return ALIGN_EINVAL;
        }
    return ALIGN_OK;
}

/* The answer's copies, made before the line is written. */
typedef struct answer_mem {
    int32_t *ivals;
    float *fvals;
    char *annotator;
} answer_mem;

static int answer_alloc(const jreq *r, const answer_in *a, answer_mem *m)
{
    memset(m, 0, sizeof *m);
    size_t k = (size_t)r->k;
    if (a->kind == ALIGN_FEEDBACK_SCORE) {
        if (!(m->fvals = align__malloc(k * sizeof *m->fvals)))
            return ALIGN_ENOMEM;
        memcpy(m->fvals, a->fvals, k * sizeof *m->fvals);
    } else {
        if (!(m->ivals = align__malloc(k * sizeof *m->ivals)))
            return ALIGN_ENOMEM;
        memcpy(m->ivals, a->ivals, k * sizeof *m->ivals);
    }
    if (a->annotator && !(m->annotator = align__strdup(a->annotator))) {
        align__free(m->ivals);
        align__free(m->fvals);
        return ALIGN_ENOMEM;
    }
    return ALIGN_OK;
}

static void apply_answer(jreq *r, const answer_in *a, answer_mem *m)
{
    r->status = ALIGN_REQUEST_ANSWERED;
    r->ivals = m->ivals;
    r->fvals = m->fvals;
    r->annotator = m->annotator;
    r->source = a->source;
    r->answered_at = a->time;
}

static int reserve(align_journal *j)
{
    if (j->n < j->cap)
        return ALIGN_OK;
    int64_t nc = j->cap ? j->cap * 2 : 64;
    jreq **p = align__realloc(j->reqs, (size_t)nc * sizeof *p);
    if (!p)
        return ALIGN_ENOMEM;
    j->reqs = p;
    j->cap = nc;
    return ALIGN_OK;
}

/* A new request (copies everything); NULL with why on error. */
static int req_new(int32_t kind, const char *prompt, const char *const *responses, int32_t k, int64_t deadline,
                   int64_t submitted, jreq **out, char *why, size_t whycap)
{
    *out = NULL;
    if (kind < ALIGN_FEEDBACK_RANK || kind > ALIGN_FEEDBACK_SCORE) {
        snprintf(why, whycap, "unknown request kind %d (ALIGN_FEEDBACK_RANK, _LABEL or _SCORE)", (int)kind);
        return ALIGN_EINVAL;
    }
    int32_t kmin = kind == ALIGN_FEEDBACK_RANK ? 2 : 1;
    if (k < kmin || k > 1000000) {
        snprintf(why, whycap, "a %s request needs %d or more responses (got %d)", kind_names[kind], (int)kmin,
                 (int)k);
        return ALIGN_EINVAL;
    }
    if (!responses) {
        snprintf(why, whycap, "responses is NULL");
        return ALIGN_EINVAL;
    }
    if (deadline < 0) {
        snprintf(why, whycap, "deadline %lld is negative (0 = none)", (long long)deadline);
        return ALIGN_EINVAL;
    }
    int rc = check_utf8(prompt, "prompt", why, whycap);
    for (int32_t i = 0; !rc && i < k; i++) {
        char what[48];
        snprintf(what, sizeof what, "responses[%d]", (int)i);
        rc = check_utf8(responses[i], what, why, whycap);
    }
    if (rc)
        return rc;
    jreq *r = align__calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->kind = kind;
    r->k = k;
    r->deadline = deadline;
    r->submitted_at = submitted;
    r->status = ALIGN_REQUEST_PENDING;
    if (!(r->prompt = align__strdup(prompt)) || !(r->responses = align__calloc((size_t)k, sizeof(char *))))
        goto oom;
    for (int32_t i = 0; i < k; i++)
        if (!(r->responses[i] = align__strdup(responses[i])))
            goto oom;
    *out = r;
    return ALIGN_OK;
oom:
    req_free(r);
    snprintf(why, whycap, "out of memory");
    return ALIGN_ENOMEM;
}

static void apply_submit(align_journal *j, jreq *r)
{
    r->id = j->n + 1;
    j->reqs[j->n++] = r;
    if (j->watched && j->watcher.submitted)
        j->watcher.submitted(j->watcher.ctx, r->id);
}

/* ---- the file -------------------------------------------------------------------- */

/* Appends one line (obj as compact JSON + '\n') with one write, then fsyncs.
 * On failure the file is cut back to its previous size. Takes obj. */
static int append(align_journal *j, json_t *obj)
{
    if (!obj)
        return align__error(&j->err, ALIGN_ENOMEM, "out of memory");
    /* json_dumpb into our own buffer: the host may have given jansson other
     * allocation functions. */
    size_t len = json_dumpb(obj, NULL, 0, JSON_COMPACT | JSON_ENSURE_ASCII);
    char *line = len ? align__malloc(len + 1) : NULL;
    if (!line || json_dumpb(obj, line, len, JSON_COMPACT | JSON_ENSURE_ASCII) != len) {
        json_decref(obj);
        align__free(line);
        return align__error(&j->err, ALIGN_ENOMEM, "out of memory");
    }
    json_decref(obj);
    line[len++] = '\n';
    const char *p = line;
    size_t left = len;
    int e = 0;
    while (left > 0) {
        ssize_t w = write(j->fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            e = errno;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    align__free(line);
    if (!e && !(j->flags & ALIGN_JOURNAL_NOSYNC) && fsync(j->fd) != 0)
        e = errno;
    if (e) {
        /* Nothing half-written may stay: the next line would follow it. */
        if (ftruncate(j->fd, j->size) == 0)
            (void)lseek(j->fd, j->size, SEEK_SET);
        return align__error(&j->err, ALIGN_EIO, "%s: cannot append: %s", j->path, strerror(e));
    }
    j->size += (off_t)len;
    return ALIGN_OK;
}

/* ---- replay ------------------------------------------------------------------------ */

static int get_i64(json_t *o, const char *key, int64_t *v, int required, char *why, size_t whycap)
{
    json_t *x = json_object_get(o, key);
    if (!x) {
        if (!required)
            return ALIGN_OK;
        snprintf(why, whycap, "missing \"%s\"", key);
        return ALIGN_EFORMAT;
    }
    if (!json_is_integer(x)) {
        snprintf(why, whycap, "\"%s\" is not an integer", key);
        return ALIGN_EFORMAT;
    }
    *v = (int64_t)json_integer_value(x);
    return ALIGN_OK;
}

static int name_index(json_t *o, const char *key, const char *const *names, int n, int32_t *out, char *why,
                      size_t whycap)
{
    const char *s = json_string_value(json_object_get(o, key));
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return ALIGN_OK;
        }
    snprintf(why, whycap, "missing or unknown \"%s\"", key);
    return ALIGN_EFORMAT;
}

/* Fetches "ids": an array of known ids. */
static int get_ids(const align_journal *j, json_t *o, json_t **ids, char *why, size_t whycap)
{
    *ids = json_object_get(o, "ids");
    if (!json_is_array(*ids)) {
        snprintf(why, whycap, "missing \"ids\" array");
        return ALIGN_EFORMAT;
    }
    size_t i;
    json_t *x;
    json_array_foreach(*ids, i, x) {
        if (!json_is_integer(x) || !find(j, (int64_t)json_integer_value(x))) {
            snprintf(why, whycap, "\"ids\"[%zu] is not the id of an earlier request", i);
            return ALIGN_EFORMAT;
        }
    }
    return ALIGN_OK;
}

static int replay_line(align_journal *j, json_t *o, char *why, size_t whycap)
{
    const char *op = json_string_value(json_object_get(o, "op"));
    int64_t id = 0, t = 0;
    int rc;
    if (!op) {
        snprintf(why, whycap, "missing \"op\"");
        return ALIGN_EFORMAT;
    }
    if ((rc = get_i64(o, "time", &t, 1, why, whycap)))
        return rc;
    if (!strcmp(op, "submit")) {
        int32_t kind;
        int64_t deadline = 0;
        if ((rc = get_i64(o, "id", &id, 1, why, whycap)) || (rc = get_i64(o, "deadline", &deadline, 0, why, whycap)) ||
            (rc = name_index(o, "kind", kind_names, 3, &kind, why, whycap)))
            return rc;
        if (id != j->n + 1) {
            snprintf(why, whycap, "request id %lld out of sequence (expected %lld)", (long long)id,
                     (long long)(j->n + 1));
            return ALIGN_EFORMAT;
        }
        json_t *resp = json_object_get(o, "responses");
        const char *prompt = json_string_value(json_object_get(o, "prompt"));
        if (!json_is_array(resp) || !prompt) {
            snprintf(why, whycap, "missing \"prompt\" or \"responses\"");
            return ALIGN_EFORMAT;
        }
        size_t k = json_array_size(resp);
        const char **rs = align__calloc(k ? k : 1, sizeof *rs);
        if (!rs) {
            snprintf(why, whycap, "out of memory");
            return ALIGN_ENOMEM;
        }
        for (size_t i = 0; i < k; i++)
            if (!(rs[i] = json_string_value(json_array_get(resp, i)))) {
                align__free(rs);
                snprintf(why, whycap, "\"responses\"[%zu] is not a string", i);
                return ALIGN_EFORMAT;
            }
        jreq *r;
        rc = reserve(j);
        if (!rc)
            rc = req_new(kind, prompt, rs, (int32_t)ALIGN__MIN(k, (size_t)INT32_MAX), deadline, t, &r, why, whycap);
        align__free(rs);
        if (rc)
            return rc == ALIGN_ENOMEM ? rc : ALIGN_EFORMAT;
        apply_submit(j, r);
        return ALIGN_OK;
    }
    if (!strcmp(op, "answer")) {
        answer_in a = { .time = t };
        if ((rc = get_i64(o, "id", &id, 1, why, whycap)) ||
            (rc = name_index(o, "kind", kind_names, 3, &a.kind, why, whycap)) ||
            (rc = name_index(o, "source", source_names, 4, &a.source, why, whycap)))
            return rc;
        jreq *r = find(j, id);
        if (!r) {
            snprintf(why, whycap, "answer for unknown request %lld", (long long)id);
            return ALIGN_EFORMAT;
        }
        json_t *ann = json_object_get(o, "annotator");
        if (ann && !json_is_null(ann) && !(a.annotator = json_string_value(ann))) {
            snprintf(why, whycap, "\"annotator\" is not a string");
            return ALIGN_EFORMAT;
        }
        json_t *vals = json_object_get(o, "values");
        if (!json_is_array(vals) || json_array_size(vals) != (size_t)r->k) {
            snprintf(why, whycap, "\"values\" must be an array of the request's %d entries", (int)r->k);
            return ALIGN_EFORMAT;
        }
        int32_t *iv = align__calloc((size_t)r->k, sizeof *iv);
        float *fv = align__calloc((size_t)r->k, sizeof *fv);
        if (!iv || !fv) {
            align__free(iv);
            align__free(fv);
            snprintf(why, whycap, "out of memory");
            return ALIGN_ENOMEM;
        }
        for (int32_t i = 0; !rc && i < r->k; i++) {
            json_t *x = json_array_get(vals, (size_t)i);
            if (a.kind == ALIGN_FEEDBACK_SCORE ? !json_is_number(x) : !json_is_integer(x)) {
                snprintf(why, whycap, "\"values\"[%d] is not a%s", (int)i,
                         a.kind == ALIGN_FEEDBACK_SCORE ? " number" : "n integer");
                rc = ALIGN_EFORMAT;
            } else if (a.kind == ALIGN_FEEDBACK_SCORE)
                fv[i] = (float)json_number_value(x);
            else
                iv[i] = (int32_t)ALIGN__MAX(ALIGN__MIN(json_integer_value(x), INT32_MAX), INT32_MIN);
        }
        if (a.kind == ALIGN_FEEDBACK_SCORE)
            a.fvals = fv;
        else
            a.ivals = iv;
        answer_mem m;
        if (!rc)
            rc = check_answer(j, id, &a, why, whycap);
        if (!rc)
            rc = answer_alloc(r, &a, &m);
        align__free(iv);
        align__free(fv);
        if (rc)
            return rc == ALIGN_ENOMEM ? rc : ALIGN_EFORMAT;
        apply_answer(r, &a, &m);
        return ALIGN_OK;
    }
    if (!strcmp(op, "cancel")) {
        if ((rc = get_i64(o, "id", &id, 1, why, whycap)))
            return rc;
        jreq *r = find(j, id);
        if (!r || r->status != ALIGN_REQUEST_PENDING) {
            snprintf(why, whycap, "cancel of request %lld, which is not pending", (long long)id);
            return ALIGN_EFORMAT;
        }
        r->status = ALIGN_REQUEST_CANCELED;
        r->answered_at = t;
        return ALIGN_OK;
    }
    if (!strcmp(op, "expire") || !strcmp(op, "export")) {
        int expire = !strcmp(op, "expire");
        json_t *ids, *x;
        size_t i;
        if ((rc = get_ids(j, o, &ids, why, whycap)))
            return rc;
        json_array_foreach(ids, i, x) {
            jreq *r = find(j, (int64_t)json_integer_value(x));
            if (expire ? r->status != ALIGN_REQUEST_PENDING : r->status != ALIGN_REQUEST_ANSWERED) {
                snprintf(why, whycap, "%s of request %lld, which is %s", op, (long long)r->id,
                         status_names[r->status]);
                return ALIGN_EFORMAT;
            }
        }
        json_array_foreach(ids, i, x) {
            jreq *r = find(j, (int64_t)json_integer_value(x));
            if (expire) {
                r->status = ALIGN_REQUEST_EXPIRED;
                r->answered_at = t;
            } else
                r->exported = 1;
        }
        return ALIGN_OK;
    }
    snprintf(why, whycap, "unknown \"op\" \"%s\"", op);
    return ALIGN_EFORMAT;
}

static int replay(align_journal *j)
{
    char *data = NULL;
    size_t len = 0;
    int rc = align__read_file(&j->err, j->path, &data, &len);
    if (rc)
        return rc;
    /* Complete lines end with '\n'; anything after the last one is torn. */
    size_t end = len;
    while (end > 0 && data[end - 1] != '\n')
        end--;
    j->torn = (int64_t)(len - end);
    if (j->torn) {
        align__log(ALIGN_LOG_WARN, "%s: dropped a torn last line of %lld bytes (a write cut short by a crash)",
                   j->path, (long long)j->torn);
        if (ftruncate(j->fd, (off_t)end) != 0 || (!(j->flags & ALIGN_JOURNAL_NOSYNC) && fsync(j->fd) != 0)) {
            align__free(data);
            return align__error(&j->err, ALIGN_EIO, "%s: cannot cut the torn last line: %s", j->path,
                                strerror(errno));
        }
    }
    j->size = (off_t)end;
    size_t pos = 0;
    int64_t lineno = 0;
    char why[256];
    while (pos < end) {
        char *nl = memchr(data + pos, '\n', end - pos);
        size_t l = (size_t)(nl - (data + pos));
        lineno++;
        json_error_t jerr;
        json_t *o = json_loadb(data + pos, l, JSON_REJECT_DUPLICATES, &jerr);
        if (!o || !json_is_object(o)) {
            snprintf(why, sizeof why, "not a JSON object%s%s", o ? "" : ": ", o ? "" : jerr.text);
            rc = ALIGN_EFORMAT;
        } else if (lineno == 1) {
            const char *magic = json_string_value(json_object_get(o, "journal"));
            json_t *ver = json_object_get(o, "version");
            rc = ALIGN_OK;
            if (!magic || strcmp(magic, JOURNAL_MAGIC)) {
                snprintf(why, sizeof why, "not a libalign feedback journal (no \"journal\": \"%s\" header)",
                         JOURNAL_MAGIC);
                rc = ALIGN_EFORMAT;
            } else if (!json_is_integer(ver) || json_integer_value(ver) != JOURNAL_VERSION) {
                snprintf(why, sizeof why, "journal version %lld is not %d (this library's)",
                         json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL, JOURNAL_VERSION);
                rc = ALIGN_EVERSION;
            }
        } else
            rc = replay_line(j, o, why, sizeof why);
        json_decref(o);
        if (rc) {
            align__free(data);
            return align__error(&j->err, rc, "%s:%lld: %s", j->path, (long long)lineno, why);
        }
        pos += l + 1;
    }
    align__free(data);
    if (lineno == 0) {
        json_t *h = json_pack("{s:s,s:i}", "journal", JOURNAL_MAGIC, "version", JOURNAL_VERSION);
        return append(j, h);
    }
    return ALIGN_OK;
}

/* ---- lifetime ------------------------------------------------------------------------- */

static void journal_free(align_journal *j)
{
    for (int64_t i = 0; i < j->n; i++)
        req_free(j->reqs[i]);
    align__free(j->reqs);
    if (j->fd >= 0)
        close(j->fd);
    align__free(j->path);
    pthread_mutex_destroy(&j->mu);
    align__free(j);
}

ALIGN_API int align_journal_open(align_journal **out, const char *path, uint32_t flags)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_journal_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return align__error(NULL, ALIGN_EINVAL, "align_journal_open: no path given");
    if (flags & ~ALIGN_JOURNAL_NOSYNC)
        return align__error(NULL, ALIGN_EINVAL, "align_journal_open: unknown flags 0x%x", (unsigned)flags);
    align_journal *j = align__calloc(1, sizeof *j);
    if (!j)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    j->fd = -1;
    j->flags = flags;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        align__free(j);
        return align__error(NULL, ALIGN_ENOMEM, "align_journal_open: cannot create a mutex");
    }
    if (!(j->path = align__strdup(path))) {
        journal_free(j);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j->fd < 0) {
        int e = errno;
        journal_free(j);
        return align__error(NULL, e == ENOENT ? ALIGN_ENOENT : ALIGN_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    /* One writer per file: a second process appending would interleave lines. */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(j->fd, F_SETLK, &fl) != 0) {
        int e = errno;
        journal_free(j);
        if (e == EACCES || e == EAGAIN)
            return align__error(NULL, ALIGN_EBUSY, "%s: the journal is open in another process", path);
        return align__error(NULL, ALIGN_EIO, "%s: cannot lock: %s", path, strerror(e));
    }
    int rc = replay(j);
    if (rc) {
        align__error(NULL, rc, "%s", align__errmsg(&j->err));
        journal_free(j);
        return rc;
    }
    *out = j;
    return ALIGN_OK;
}

ALIGN_API void align_journal_close(align_journal *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    if (j->watched && j->watcher.closing)
        j->watcher.closing(j->watcher.ctx);
    j->watched = 0;
    pthread_mutex_unlock(&j->mu);
    journal_free(j);
}

ALIGN_API const char *align_journal_errmsg(const align_journal *j)
{
    return j ? align__errmsg(&j->err) : "journal is NULL";
}

ALIGN_API int64_t align_journal_torn_bytes(align_journal *j)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    return j->torn;   /* set once by open */
}

/* ---- requests and answers ---------------------------------------------------------------- */

ALIGN_API int align_journal_submit(align_journal *j, int32_t kind, const char *prompt,
                                   const char *const *responses, int32_t k, int64_t deadline, int64_t *id_out)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    if (id_out)
        *id_out = 0;
    char why[256];
    jreq *r;
    int rc = req_new(kind, prompt, responses, k, deadline, now_sec(), &r, why, sizeof why);
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    if (rc) {
        rc = align__error(&j->err, rc, "align_journal_submit: %s", why);
        goto out;
    }
    if ((rc = reserve(j))) {
        req_free(r);
        rc = align__error(&j->err, rc, "out of memory");
        goto out;
    }
    json_t *resp = json_array();
    for (int32_t i = 0; resp && i < k; i++)
        if (json_array_append_new(resp, json_string(r->responses[i]))) {
            json_decref(resp);
            resp = NULL;
        }
    json_t *o = resp ? json_pack("{s:s,s:I,s:s,s:s,s:o,s:I,s:I}", "op", "submit", "id", (json_int_t)(j->n + 1),
                                 "kind", kind_names[kind], "prompt", r->prompt, "responses", resp,
                                 "deadline", (json_int_t)deadline, "time", (json_int_t)r->submitted_at)
                     : NULL;
    if ((rc = append(j, o))) {
        req_free(r);
        goto out;
    }
    apply_submit(j, r);
    if (id_out)
        *id_out = r->id;
out:
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static int answer(align_journal *j, const char *fn, int64_t id, answer_in *a, const align_provenance *pv)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    align_provenance p;
    align_provenance_default(&p, sizeof p);
    if (pv) {
        int rc = align__params_copy(&p, sizeof p, pv, "align_provenance");
        if (rc) {
            char msg[ALIGN__ERRMSG_CAP];
            snprintf(msg, sizeof msg, "%s", align_last_errmsg());
            pthread_mutex_lock(&j->mu);
            rc = align__error(&j->err, rc, "%s: %s", fn, msg);
            pthread_mutex_unlock(&j->mu);
            return rc;
        }
    }
    a->source = p.source == ALIGN_SOURCE_UNKNOWN ? ALIGN_SOURCE_HUMAN : p.source;
    a->annotator = p.annotator;
    a->time = p.timestamp ? p.timestamp : now_sec();
    char why[256];
    answer_mem m;
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    int rc = check_answer(j, id, a, why, sizeof why);
    if (rc) {
        rc = align__error(&j->err, rc, "%s: %s", fn, why);
        goto out;
    }
    jreq *r = find(j, id);
    if ((rc = answer_alloc(r, a, &m))) {
        rc = align__error(&j->err, rc, "out of memory");
        goto out;
    }
    json_t *vals = json_array();
    for (int32_t i = 0; vals && i < r->k; i++)
        if (json_array_append_new(vals, a->kind == ALIGN_FEEDBACK_SCORE ? json_real((double)a->fvals[i])
                                                                        : json_integer(a->ivals[i]))) {
            json_decref(vals);
            vals = NULL;
        }
    json_t *o = vals ? json_pack("{s:s,s:I,s:s,s:o,s:s,s:s?,s:I}", "op", "answer", "id", (json_int_t)id, "kind",
                                 kind_names[a->kind], "values", vals, "source", source_names[a->source],
                                 "annotator", a->annotator, "time", (json_int_t)a->time)
                     : NULL;
    if ((rc = append(j, o))) {
        align__free(m.ivals);
        align__free(m.fvals);
        align__free(m.annotator);
        goto out;
    }
    apply_answer(r, a, &m);
out:
    pthread_mutex_unlock(&j->mu);
    return rc;
}

ALIGN_API int align_journal_answer_rank(align_journal *j, int64_t id, const int32_t *rank,
                                        const align_provenance *pv)
{
    answer_in a = { .kind = ALIGN_FEEDBACK_RANK, .ivals = rank };
    return answer(j, "align_journal_answer_rank", id, &a, pv);
}

ALIGN_API int align_journal_answer_label(align_journal *j, int64_t id, const int32_t *good,
                                         const align_provenance *pv)
{
    answer_in a = { .kind = ALIGN_FEEDBACK_LABEL, .ivals = good };
    return answer(j, "align_journal_answer_label", id, &a, pv);
}

ALIGN_API int align_journal_answer_score(align_journal *j, int64_t id, const float *scores,
                                         const align_provenance *pv)
{
    answer_in a = { .kind = ALIGN_FEEDBACK_SCORE, .fvals = scores };
    return answer(j, "align_journal_answer_score", id, &a, pv);
}

ALIGN_API int align_journal_cancel(align_journal *j, int64_t id)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    int rc;
    jreq *r = find(j, id);
    if (!r)
        rc = align__error(&j->err, ALIGN_EINVAL, "align_journal_cancel: no request with id %lld", (long long)id);
    else if (r->status != ALIGN_REQUEST_PENDING)
        rc = align__error(&j->err, ALIGN_EMISUSE, "align_journal_cancel: request %lld is %s, not pending",
                          (long long)id, status_names[r->status]);
    else {
        int64_t t = now_sec();
        rc = append(j, json_pack("{s:s,s:I,s:I}", "op", "cancel", "id", (json_int_t)id, "time", (json_int_t)t));
        if (!rc) {
            r->status = ALIGN_REQUEST_CANCELED;
            r->answered_at = t;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

ALIGN_API int align_journal_expire(align_journal *j, int64_t now, int64_t *n_expired)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    if (n_expired)
        *n_expired = 0;
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    int rc = ALIGN_OK;
    int64_t n = 0;
    json_t *ids = json_array();
    for (int64_t i = 0; ids && i < j->n; i++) {
        jreq *r = j->reqs[i];
        if (r->status == ALIGN_REQUEST_PENDING && r->deadline != 0 && r->deadline <= now) {
            if (json_array_append_new(ids, json_integer(r->id))) {
                json_decref(ids);
                ids = NULL;
            }
            n++;
        }
    }
    if (!ids)
        rc = align__error(&j->err, ALIGN_ENOMEM, "out of memory");
    else if (n == 0)
        json_decref(ids);
    else if (!(rc = append(j, json_pack("{s:s,s:o,s:I}", "op", "expire", "ids", ids, "time", (json_int_t)now)))) {
        for (int64_t i = 0; i < j->n; i++) {
            jreq *r = j->reqs[i];
            if (r->status == ALIGN_REQUEST_PENDING && r->deadline != 0 && r->deadline <= now) {
                r->status = ALIGN_REQUEST_EXPIRED;
                r->answered_at = now;
            }
        }
        if (n_expired)
            *n_expired = n;
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* ---- queries ------------------------------------------------------------------------------- */

ALIGN_API int64_t align_journal_count(align_journal *j, int32_t status)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    pthread_mutex_lock(&j->mu);
    int64_t n = 0;
    if (status < ALIGN_REQUEST_PENDING || status > ALIGN_REQUEST_EXPIRED)
        n = align__error(&j->err, ALIGN_EINVAL, "align_journal_count: unknown status %d", (int)status);
    else
        for (int64_t i = 0; i < j->n; i++)
            n += j->reqs[i]->status == status;
    pthread_mutex_unlock(&j->mu);
    return n;
}

ALIGN_API int align_journal_pending(align_journal *j, int64_t *ids, int64_t cap, int64_t *n_out)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    if (!n_out || cap < 0 || (cap > 0 && !ids))
        return align__error(NULL, ALIGN_EINVAL, "align_journal_pending: needs n_out, and ids when cap > 0");
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    int64_t n = 0;
    for (int64_t i = 0; i < j->n; i++)
        if (j->reqs[i]->status == ALIGN_REQUEST_PENDING) {
            if (n < cap)
                ids[n] = j->reqs[i]->id;
            n++;
        }
    *n_out = n;
    int rc = n > cap ? align__error(&j->err, ALIGN_ERANGE, "align_journal_pending: %lld pending, room for %lld",
                                    (long long)n, (long long)cap)
                     : ALIGN_OK;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

ALIGN_API int align_feedback_request_init(align_feedback_request *out, size_t struct_size)
{
    align_feedback_request d;
    memset(&d, 0, sizeof d);
    return align__params_defaults(out, struct_size, &d, sizeof d, "align_feedback_request");
}

ALIGN_API int align_journal_request(align_journal *j, int64_t id, align_feedback_request *out)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    size_t n = out ? align__out_size(out, sizeof *out) : 0;
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    int rc = ALIGN_OK;
    jreq *r = find(j, id);
    if (!n)
        rc = align__error(&j->err, ALIGN_EINVAL, "align_journal_request: out is NULL or its struct_size is invalid");
    else if (!r)
        rc = align__error(&j->err, ALIGN_EINVAL, "align_journal_request: no request with id %lld", (long long)id);
    else {
        align_feedback_request f;
        memset(&f, 0, sizeof f);
        f.struct_size = out->struct_size;
        f.kind = r->kind;
        f.status = r->status;
        f.k = r->k;
        f.id = r->id;
        f.deadline = r->deadline;
        f.submitted_at = r->submitted_at;
        f.answered_at = r->answered_at;
        f.prompt = r->prompt;
        f.annotator = r->annotator;
        f.source = r->source;
        f.exported = (uint32_t)r->exported;
        memcpy(out, &f, n);
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

ALIGN_API const char *align_journal_response(align_journal *j, int64_t id, int32_t i)
{
    if (!j) {
        align__error(NULL, ALIGN_EINVAL, "journal is NULL");
        return NULL;
    }
    const char *s = NULL;
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    jreq *r = find(j, id);
    if (!r)
        align__error(&j->err, ALIGN_EINVAL, "align_journal_response: no request with id %lld", (long long)id);
    else if (i < 0 || i >= r->k)
        align__error(&j->err, ALIGN_EINVAL, "align_journal_response: request %lld has %d responses, not %d",
                     (long long)id, (int)r->k, (int)i + 1);
    else
        s = r->responses[i];
    pthread_mutex_unlock(&j->mu);
    return s;
}

/* ---- export ----------------------------------------------------------------------------------- */

static int export_one(align_dataset *d, const jreq *r)
{
    align_provenance pv;
    align_provenance_default(&pv, sizeof pv);
    pv.source = r->source;
    pv.annotator = r->annotator;
    pv.timestamp = r->answered_at;
    if (r->kind == ALIGN_FEEDBACK_RANK)
        return align_dataset_add_ranking(d, r->prompt, (const char *const *)r->responses, r->ivals, r->k, &pv);
    /* A label or score request is all or nothing: records added before a
     * failure stay, but the request is not marked exported. */
    for (int32_t i = 0; i < r->k; i++) {
        int rc = r->kind == ALIGN_FEEDBACK_LABEL ? align_dataset_add_label(d, r->prompt, r->responses[i], r->ivals[i], &pv)
                                                 : align_dataset_add_score(d, r->prompt, r->responses[i], r->fvals[i], &pv);
        if (rc)
            return rc;
    }
    return ALIGN_OK;
}

ALIGN_API int align_journal_export(align_journal *j, align_dataset *d, uint32_t flags, int64_t *n_out)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "journal is NULL");
    if (n_out)
        *n_out = 0;
    pthread_mutex_lock(&j->mu);
    align__error_clear(&j->err);
    int rc = ALIGN_OK;
    int64_t n = 0;
    if (!d) {
        rc = align__error(&j->err, ALIGN_EINVAL, "align_journal_export: dataset is NULL");
        goto out;
    }
    if (flags & ~ALIGN_JOURNAL_EXPORT_ALL) {
        rc = align__error(&j->err, ALIGN_EINVAL, "align_journal_export: unknown flags 0x%x", (unsigned)flags);
        goto out;
    }
    json_t *ids = json_array();
    if (!ids) {
        rc = align__error(&j->err, ALIGN_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < j->n; i++) {
        jreq *r = j->reqs[i];
        if (r->status != ALIGN_REQUEST_ANSWERED || (r->exported && !(flags & ALIGN_JOURNAL_EXPORT_ALL)))
            continue;
        if ((rc = export_one(d, r))) {
            rc = align__error(&j->err, rc, "align_journal_export: request %lld: %s", (long long)r->id,
                              align_dataset_errmsg(d));
            break;
        }
        n++;
        if (!r->exported && json_array_append_new(ids, json_integer(r->id))) {
            rc = align__error(&j->err, ALIGN_ENOMEM, "out of memory");
            break;
        }
    }
    /* Mark what reached the dataset, even after a failure part way. */
    size_t k = json_array_size(ids);
    if (k == 0) {
        json_decref(ids);
    } else {
        int wrc = append(j, json_pack("{s:s,s:O,s:I}", "op", "export", "ids", ids, "time", (json_int_t)now_sec()));
        if (!wrc) {
            size_t i;
            json_t *x;
            json_array_foreach(ids, i, x) j->reqs[json_integer_value(x) - 1]->exported = 1;
        } else if (!rc)
            rc = wrc;
        json_decref(ids);
    }
    if (n_out)
        *n_out = n;
out:
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* ---- hooks for lib/async ------------------------------------------------------------------------ */

void align__journal_lock(align_journal *j)
{
    pthread_mutex_lock(&j->mu);
}

void align__journal_unlock(align_journal *j)
{
    pthread_mutex_unlock(&j->mu);
}

int align__journal_set_watcher(align_journal *j, const align__journal_watcher *w)
{
    if (w && j->watched)
        return ALIGN_EBUSY;
    if (w)
        j->watcher = *w;
    else
        memset(&j->watcher, 0, sizeof j->watcher);
    j->watched = w != NULL;
    return ALIGN_OK;
}

void *align__journal_watcher_ctx(const align_journal *j)
{
    return j->watched ? j->watcher.ctx : NULL;
}

int align__journal_is_pending(const align_journal *j, int64_t id)
{
    const jreq *r = find(j, id);
    return r && r->status == ALIGN_REQUEST_PENDING;
}

int64_t align__journal_size(const align_journal *j)
{
    return j->n;
}

align__errbuf *align__journal_err(align_journal *j)
{
    return &j->err;
}
