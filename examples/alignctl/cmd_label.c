/* cmd_label.c — alignctl label: a labelling page for people on top of a
 * feedback journal (align_journal_*). `--serve` runs an HTTP server on one
 * libuv loop (label_http.c) that serves the page (label_page.html, embedded
 * at build time) and a small JSON API; every answer goes straight into the
 * journal, which writes and fsyncs it before the response is sent.
 * Docs: docs/cli/label.md. */
#include "alignctl.h"
#include "label.h"
#include "label_page.h" /* generated from label_page.html: LABEL_PAGE[], LABEL_PAGE_LEN */

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const HELP_LABEL =
    "usage: alignctl label --serve --journal JOURNAL [--port N] [--host ADDR]\n"
    "       alignctl label --journal JOURNAL          (counts only)\n"
    "\n"
    "Serves a web page on which people answer the pending requests of a feedback\n"
    "journal one at a time: order the responses (ties allowed), mark them good or\n"
    "bad, or score them, as each request asks. Every answer is written to the\n"
    "journal (and fsync'ed) before the page shows the next request.\n"
    "\n"
    "  --serve         run the web server (Ctrl-C stops it; exit status 0)\n"
    "  --journal FILE  the journal (must exist; see docs/feedback.md)\n"
    "  --port N        TCP port (default 8157; 0 = any free port)\n"
    "  --host ADDR     address to listen on (default 127.0.0.1). There is no\n"
    "                  login: anyone who can reach the address can answer.\n"
    "  --max-body N    largest request body accepted, bytes (default 65536)\n"
    "\n"
    "Prints 'serving http://HOST:PORT/' on stdout once it listens.\n"
    "HTTP API: GET / (the page), GET /api/next, POST /api/answer, GET /api/stats\n"
    "(docs/cli/label.md).\n";

typedef struct label_ctx {
    align_journal *j;
    const char *journal_path;
    const char *host;
    int loopback;
    int port;
    int64_t session_answered;
    int64_t started_at;
    http_server srv;
    uv_signal_t sigint, sigterm;
    int stopping;
} label_ctx;

static const char *kind_name(int32_t kind)
{
    return kind == ALIGN_FEEDBACK_RANK    ? "rank"
           : kind == ALIGN_FEEDBACK_LABEL ? "label"
           : kind == ALIGN_FEEDBACK_SCORE ? "score"
                                          : "unknown";
}

static const char *status_name(int32_t st)
{
    return st == ALIGN_REQUEST_PENDING    ? "pending"
           : st == ALIGN_REQUEST_ANSWERED ? "answered"
           : st == ALIGN_REQUEST_CANCELED ? "canceled"
                                          : "expired";
}

/* {pending, answered, canceled, expired, total, session} */
static json_t *progress_json(label_ctx *c)
{
    int64_t n[4], total = 0;
    for (int32_t s = 0; s < 4; s++) {
        n[s] = align_journal_count(c->j, s);
        if (n[s] < 0)
            n[s] = 0;
        total += n[s];
    }
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "pending", (json_int_t)n[0], "answered",
                     (json_int_t)n[1], "canceled", (json_int_t)n[2], "expired", (json_int_t)n[3],
                     "total", (json_int_t)total, "session", (json_int_t)c->session_answered);
}

/* The pending request to show: the oldest, or with after > 0 the oldest with
 * a larger id (wrapping round), so "skip" walks through them. 0 if none. */
static int64_t next_pending(label_ctx *c, int64_t after)
{
    align_journal_expire(c->j, (int64_t)time(NULL), NULL);
    int64_t n = 0, *ids = NULL, pick = 0;
    if (align_journal_pending(c->j, NULL, 0, &n) != 0 && n == 0)
        return 0;
    if (n == 0 || !(ids = malloc((size_t)n * sizeof *ids)))
        return 0;
    if (align_journal_pending(c->j, ids, n, &n) == 0 && n > 0) {
        pick = ids[0];
        for (int64_t i = 0; i < n; i++)
            if (ids[i] > after) {
                pick = ids[i];
                break;
            }
    }
    free(ids);
    return pick;
}

/* The request as the page gets it, or {"id": null, "done": true} when none. */
static json_t *request_json(label_ctx *c, int64_t id)
{
    align_feedback_request r;
    align_feedback_request_init(&r, sizeof r);
    json_t *o;
    if (id <= 0 || align_journal_request(c->j, id, &r) != 0) {
        o = json_pack("{s:n,s:b}", "id", "done", 1);
    } else {
        json_t *resp = json_array();
        for (int32_t i = 0; i < r.k; i++) {
            const char *s = align_journal_response(c->j, id, i);
            json_array_append_new(resp, json_bytes(s ? s : "", s ? strlen(s) : 0));
        }
        o = json_pack("{s:I,s:s,s:s,s:o,s:o,s:i,s:I,s:I}", "id", (json_int_t)id, "kind",
                      kind_name(r.kind), "status", status_name(r.status), "prompt",
                      json_bytes(r.prompt ? r.prompt : "", r.prompt ? strlen(r.prompt) : 0),
                      "responses", resp, "k", (int)r.k, "deadline", (json_int_t)r.deadline,
                      "submitted_at", (json_int_t)r.submitted_at);
    }
    json_put(o, "progress", progress_json(c));
    return o;
}

static void reply_json(http_resp *rs, int status, json_t *o)
{
    rs->status = status;
    rs->ctype = "application/json";
    rs->body = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    rs->len = rs->body ? strlen(rs->body) : 0;
    json_decref(o);
    if (!rs->body)
        http_error(rs, 500, "out of memory");
}

/* ---- POST /api/answer ------------------------------------------------------------------------- */
/* Reads arr (K integers, or booleans when bools) into v; 0, or a 400/422 with rs filled. */
static int int_array(http_resp *rs, const json_t *arr, const char *field, int32_t k, int bools,
                     int32_t *v)
{
    if (!json_is_array(arr)) {
        http_error(rs, 400, "'%s' must be an array", field);
        return 400;
    }
    if ((int64_t)json_array_size(arr) != k) {
        http_error(rs, 422, "'%s' has %zu entries; this request has %d responses", field,
                   json_array_size(arr), (int)k);
        return 422;
    }
    for (int32_t i = 0; i < k; i++) {
        json_t *e = json_array_get(arr, (size_t)i);
        if (bools && json_is_boolean(e)) {
            v[i] = json_is_true(e);
        } else if (json_is_integer(e)) {
            json_int_t x = json_integer_value(e);
            if (x < 0 || x >= k || (bools && x > 1)) {
                http_error(rs, 422, "'%s'[%d] = %lld is out of range (%s)", field, (int)i,
                           (long long)x, bools ? "0 or 1" : "places 0 .. K-1");
                return 422;
            }
            v[i] = (int32_t)x;
        } else {
            http_error(rs, 400, "'%s'[%d] must be %s", field, (int)i,
                       bools ? "true, false, 0 or 1" : "an integer");
            return 400;
        }
    }
    return 0;
}

/* Places must be dense: every place from 0 to the largest one is taken. */
static int check_dense(http_resp *rs, const int32_t *rank, int32_t k)
{
    int32_t hi = 0;
    for (int32_t i = 0; i < k; i++)
        hi = rank[i] > hi ? rank[i] : hi;
    for (int32_t p = 0; p <= hi; p++) {
        int seen = 0;
        for (int32_t i = 0; i < k && !seen; i++)
            seen = rank[i] == p;
        if (!seen) {
            http_error(rs, 422,
                       "'ranking' skips place %d: places are 0 = best, equal places are ties, "
                       "and every place up to the largest must be used",
                       (int)p);
            return 422;
        }
    }
    return 0;
}

static void api_answer(label_ctx *c, const http_req *rq, http_resp *rs)
{
    if (strncasecmp(rq->ctype, "application/json", 16) != 0 ||
        (rq->ctype[16] && rq->ctype[16] != ';' && rq->ctype[16] != ' ')) {
        http_error(rs, 415, "send the answer as Content-Type: application/json");
        return;
    }
    json_error_t err;
    json_t *o = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!o) {
        http_error(rs, 400, "malformed JSON at line %d column %d: %s", err.line, err.column,
                   err.text);
        return;
    }
    int32_t *ivals = NULL;
    float *fvals = NULL;
    const char *key;
    json_t *val, *jid = json_object_get(o, "id"), *ann = json_object_get(o, "annotator");
    if (!json_is_object(o)) {
        http_error(rs, 400, "the body must be a JSON object {id, ranking | label | scores, annotator}");
        goto out;
    }
    json_object_foreach(o, key, val)
    {
        if (strcmp(key, "id") && strcmp(key, "ranking") && strcmp(key, "label") &&
            strcmp(key, "scores") && strcmp(key, "annotator")) {
            http_error(rs, 400, "unknown field '%s' (expected id, ranking, label, scores, annotator)",
                       key);
            goto out;
        }
    }
    if (!json_is_integer(jid)) {
        http_error(rs, 400, "'id' must be an integer (the id from /api/next)");
        goto out;
    }
    if (ann && !json_is_null(ann) && !json_is_string(ann)) {
        http_error(rs, 400, "'annotator' must be a string");
        goto out;
    }
    const char *annotator = json_is_string(ann) ? json_string_value(ann) : NULL;
    if (annotator && json_string_length(ann) > 200) {
        http_error(rs, 422, "'annotator' is longer than 200 bytes");
        goto out;
    }
    if (annotator && strlen(annotator) != json_string_length(ann)) {
        http_error(rs, 422, "'annotator' contains a NUL character");
        goto out;
    }
    if (annotator && !*annotator)
        annotator = NULL;
    int64_t id = (int64_t)json_integer_value(jid);
    align_feedback_request r;
    align_feedback_request_init(&r, sizeof r);
    if (id <= 0 || align_journal_request(c->j, id, &r) != 0) {
        http_error(rs, 404, "no request with id %lld in this journal", (long long)id);
        goto out;
    }
    if (r.status != ALIGN_REQUEST_PENDING) {
        http_error(rs, 409, "request %lld is already %s", (long long)id, status_name(r.status));
        goto out;
    }
    static const char *const field[] = {"ranking", "label", "scores"};
    for (int kd = 0; kd < 3; kd++)
        if (kd != r.kind && json_object_get(o, field[kd])) {
            http_error(rs, 422, "request %lld asks for '%s', not '%s'", (long long)id,
                       field[r.kind], field[kd]);
            goto out;
        }
    json_t *ans = json_object_get(o, field[r.kind]);
    if (!ans) {
        http_error(rs, 400, "request %lld asks for '%s'", (long long)id, field[r.kind]);
        goto out;
    }
    ivals = calloc((size_t)r.k, sizeof *ivals);
    fvals = calloc((size_t)r.k, sizeof *fvals);
    if (!ivals || !fvals) {
        http_error(rs, 500, "out of memory");
        goto out;
    }
    if (r.kind == ALIGN_FEEDBACK_SCORE) {
        if (!json_is_array(ans)) {
            http_error(rs, 400, "'scores' must be an array of numbers");
            goto out;
        }
        if ((int64_t)json_array_size(ans) != r.k) {
            http_error(rs, 422, "'scores' has %zu entries; this request has %d responses",
                       json_array_size(ans), (int)r.k);
            goto out;
        }
        for (int32_t i = 0; i < r.k; i++) {
            json_t *e = json_array_get(ans, (size_t)i);
            if (!json_is_number(e)) {
                http_error(rs, 400, "'scores'[%d] must be a number", (int)i);
                goto out;
            }
            fvals[i] = (float)json_number_value(e);
        }
    } else if (int_array(rs, ans, field[r.kind], r.k, r.kind == ALIGN_FEEDBACK_LABEL, ivals) ||
               (r.kind == ALIGN_FEEDBACK_RANK && check_dense(rs, ivals, r.k))) {
        goto out;
    }
    align_provenance pv;
    align_provenance_default(&pv, sizeof pv);
    pv.source = ALIGN_SOURCE_HUMAN;
    pv.annotator = annotator;
    int rc = r.kind == ALIGN_FEEDBACK_RANK    ? align_journal_answer_rank(c->j, id, ivals, &pv)
             : r.kind == ALIGN_FEEDBACK_LABEL ? align_journal_answer_label(c->j, id, ivals, &pv)
                                              : align_journal_answer_score(c->j, id, fvals, &pv);
    if (rc < 0) {
        int status = rc == ALIGN_EINVAL ? 422 : rc == ALIGN_EMISUSE ? 409 : 500;
        http_error(rs, status, "%s", align_journal_errmsg(c->j));
        if (status == 500)
            msg("cannot record the answer to request %lld: %s (%s)", (long long)id,
                align_journal_errmsg(c->j), align_err_name(rc));
        goto out;
    }
    c->session_answered++;
    json_t *next = request_json(c, next_pending(c, id));
    json_t *prog = json_incref(json_object_get(next, "progress"));
    json_object_del(next, "progress");
    json_t *done = json_pack("{s:b,s:I,s:o,s:o}", "ok", 1, "answered", (json_int_t)id, "next",
                             next, "progress", prog);
    reply_json(rs, 200, done);
out:
    free(ivals);
    free(fvals);
    json_decref(o);
}

/* ---- routing ---------------------------------------------------------------------------------- */
/* DNS-rebinding guard: on a loopback address the Host header must name it. */
static int host_ok(label_ctx *c, const char *host)
{
    if (!c->loopback)
        return 1;
    static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
    char want[300];
    for (int i = 0; i < 4; i++) {
        snprintf(want, sizeof want, "%s:%d", i < 3 ? names[i] : c->host, c->port);
        if (strcasecmp(host, want) == 0)
            return 1;
    }
    return 0;
}

static long long query_int(const char *q, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return strtoll(p + n + 1, NULL, 10);
    return 0;
}

static void route(const http_req *rq, http_resp *rs, void *ud)
{
    label_ctx *c = ud;
    int get = strcmp(rq->method, "GET") == 0, post = strcmp(rq->method, "POST") == 0;
    if (!host_ok(c, rq->host)) {
        http_error(rs, 403, "unexpected Host header '%s' (this server answers only to "
                   "127.0.0.1:%d or localhost:%d)", rq->host, c->port, c->port);
        return;
    }
    const char *known[] = {"/", "/api/next", "/api/answer", "/api/stats"};
    int which = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(rq->path, known[i]) == 0)
            which = i;
    if (which < 0) {
        http_error(rs, 404, "no such page: %s (the API is /api/next, /api/answer, /api/stats)",
                   rq->path);
        return;
    }
    if ((which == 2 && !post) || (which != 2 && !get)) {
        http_error(rs, 405, "%s %s is not supported (use %s)", rq->method, rq->path,
                   which == 2 ? "POST" : "GET");
        rs->headers = which == 2 ? "Allow: POST\r\n" : "Allow: GET\r\n";
        return;
    }
    if (which == 0) {
        rs->status = 200;
        rs->ctype = "text/html; charset=utf-8";
        rs->headers = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                      "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
                      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n";
        rs->body = malloc(LABEL_PAGE_LEN);
        if (rs->body)
            memcpy(rs->body, LABEL_PAGE, LABEL_PAGE_LEN);
        rs->len = LABEL_PAGE_LEN;
        if (!rs->body)
            http_error(rs, 500, "out of memory");
    } else if (which == 1) {
        reply_json(rs, 200, request_json(c, next_pending(c, query_int(rq->query, "after"))));
    } else if (which == 2) {
        api_answer(c, rq, rs);
    } else {
        json_t *o = progress_json(c);
        const char *base = strrchr(c->journal_path, '/');
        json_put(o, "journal", json_string(base ? base + 1 : c->journal_path));
        json_put(o, "started_at", json_integer((json_int_t)c->started_at));
        reply_json(rs, 200, o);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    label_ctx *c = s->data;
    if (c->stopping)
        return;
    c->stopping = 1;
    fprintf(stderr, "\n%s: %s, stopping (%lld answers recorded in this session)\n", g_cmd,
            signum == SIGINT ? "interrupted" : "terminated", (long long)c->session_answered);
    http_server_stop(&c->srv);
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_close((uv_handle_t *)&c->sigterm, NULL);
}

static int serve(label_ctx *c, int port, long max_body)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc != 0) {
        msg("cannot start the event loop: %s", uv_strerror(rc));
        return EXIT_RUNTIME;
    }
    rc = http_server_start(&c->srv, &loop, c->host, port, (size_t)max_body, route, c);
    if (rc != 0) {
        msg("cannot listen on %s:%d: %s", c->host, port, uv_strerror(rc));
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return EXIT_RUNTIME;
    }
    c->port = c->srv.port;
    uv_signal_init(&loop, &c->sigint);
    uv_signal_init(&loop, &c->sigterm);
    c->sigint.data = c->sigterm.data = c;
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    int v6 = strchr(c->host, ':') != NULL;
    printf("serving http://%s%s%s:%d/\n", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
    fflush(stdout);
    fprintf(stderr, "%s: %lld pending requests in %s; Ctrl-C stops\n", g_cmd,
            (long long)align_journal_count(c->j, ALIGN_REQUEST_PENDING), c->journal_path);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    return rc == 0 ? EXIT_OK : EXIT_RUNTIME;
}

int cmd_label(int argc, char **argv)
{
    const char *journal = NULL, *host = "127.0.0.1", *v;
    int do_serve = 0, port = 8157;
    long max_body = 65536;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_LABEL, stdout);
            return EXIT_OK;
        } else if (flag(a, "--serve")) {
            do_serve = 1;
        } else if (opt(argc, argv, &i, "--journal", &v)) {
            journal = v;
        } else if (opt(argc, argv, &i, "--port", &v)) {
            port = parse_int("--port", v, 0, 65535);
        } else if (opt(argc, argv, &i, "--host", &v)) {
            host = v;
        } else if (opt(argc, argv, &i, "--max-body", &v)) {
            max_body = (long)parse_int("--max-body", v, 1024, 64L << 20);
        } else {
            unknown_arg(a);
            usage_die("unexpected argument '%s'", a);
        }
    }
    if (!journal)
        usage_die("--journal FILE is required");
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (uv_ip4_addr(host, 0, &a4) != 0 && uv_ip6_addr(host, 0, &a6) != 0)
        usage_die("--host '%s' is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0)", host);
    if (!file_exists(journal)) {
        msg("journal '%s' not found (create it with align_journal_open; docs/feedback.md)", journal);
        return EXIT_RUNTIME;
    }
    label_ctx c;
    memset(&c, 0, sizeof c);
    c.journal_path = journal;
    c.host = host;
    c.loopback = strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
    c.started_at = (int64_t)time(NULL);
    int rc = align_journal_open(&c.j, journal, 0);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot open journal '%s'", journal);
    if (align_journal_torn_bytes(c.j) > 0)
        msg("warning: dropped %lld bytes of a torn last line of '%s'",
            (long long)align_journal_torn_bytes(c.j), journal);
    int r;
    if (do_serve) {
        /* a client that goes away mid-response must not kill the server */
        signal(SIGPIPE, SIG_IGN);
        r = serve(&c, port, max_body);
    } else {
        json_t *o = progress_json(&c);
        json_object_del(o, "session");
        r = json_print_line(stdout, o) == 0 ? EXIT_OK : EXIT_RUNTIME;
    }
    align_journal_close(c.j);
    return r;
}
