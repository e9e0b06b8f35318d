/* label_http.c — the HTTP/1.1 server behind `alignctl label --serve`: libuv
 * TCP on the caller's loop, requests parsed by Debian's http-parser (the
 * parser Node.js used before llhttp; libhttp-parser-dev).
 *
 * One request per connection: every response says "Connection: close". After
 * the response the write side is shut down and whatever the client still
 * sends is read and thrown away until it closes (or 5 s pass), so a client
 * that is still sending an over-long body gets its 413 instead of a reset.
 * A body is held in memory only up to body_limit bytes: a larger
 * Content-Length is refused (413) before any of it is read, and a chunked
 * body is refused as soon as it passes the limit. Idle connections are
 * closed after 30 s. */
#include "label.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

enum { URL_CAP = 4096, HVAL_CAP = 256, HNAME_CAP = 32 };
enum { IDLE_MS = 30000, DRAIN_MS = 5000 };
enum { ST_READING, ST_DRAINING, ST_CLOSING };

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    http_parser parser;
    http_server *srv;
    http_conn *next;
    int state, n_open, complete, status_early; /* status_early: 413/414/431 found while parsing */
    char url[URL_CAP];
    size_t url_len;
    char hname[HNAME_CAP];
    size_t hname_len;
    int hfield_was_value; /* last header callback was a value */
    char *hdst;           /* value buffer of the header being read, or NULL */
    size_t *hdst_len;
    char host[HVAL_CAP], ctype[HVAL_CAP];
    size_t host_len, ctype_len;
    char *body;
    size_t body_len, body_cap;
};

typedef struct {
    uv_write_t req;
    char *head, *body;
} write_req;

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void http_error(http_resp *rs, int status, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s,s:i}", "error", what, "status", status);
    free(rs->body);
    rs->status = status;
    rs->ctype = "application/json";
    rs->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    rs->len = rs->body ? strlen(rs->body) : 0;
    json_decref(o);
}

/* ---- closing ---------------------------------------------------------------------------------- */
static void unlink_conn(http_conn *c)
{
    for (http_conn **p = &c->srv->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            return;
        }
}

static void on_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->n_open == 0) {
        free(c->body);
        free(c);
    }
}

static void conn_close(http_conn *c)
{
    if (c->state == ST_CLOSING)
        return;
    c->state = ST_CLOSING;
    unlink_conn(c);
    uv_close((uv_handle_t *)&c->timer, on_closed);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

/* ---- responding ------------------------------------------------------------------------------- */
static void on_written(uv_write_t *w, int status)
{
    write_req *wr = (write_req *)w;
    (void)status;
    free(wr->head);
    free(wr->body);
    free(wr);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    (void)status;
    free(s);
}

static void send_response(http_conn *c, http_resp *rs)
{
    write_req *wr = calloc(1, sizeof *wr);
    char *head = malloc(1024);
    if (!rs->body && rs->status != 204)
        http_error(rs, 500, "out of memory");
    if (!wr || !head) {
        free(wr);
        free(head);
        free(rs->body);
        conn_close(c);
        return;
    }
    snprintf(head, 1024,
             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
             "Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
             "Referrer-Policy: no-referrer\r\n%s\r\n",
             rs->status, http_reason(rs->status), rs->ctype ? rs->ctype : "text/plain",
             rs->status == 204 ? (size_t)0 : rs->len, rs->headers ? rs->headers : "");
    wr->head = head;
    wr->body = rs->body;
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)strlen(head)),
                        uv_buf_init(rs->body ? rs->body : head, rs->status == 204 ? 0 : (unsigned)rs->len)};
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, 2, on_written) != 0) {
        on_written(&wr->req, -1);
        conn_close(c);
        return;
    }
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (!sd || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        conn_close(c);
        return;
    }
    /* keep reading (and discarding) until the client closes */
    c->state = ST_DRAINING;
    uv_timer_start(&c->timer, on_timeout, DRAIN_MS, 0);
}

static void respond_error(http_conn *c, int status, const char *what)
{
    http_resp rs = {0, NULL, NULL, 0, NULL};
    http_error(&rs, status, "%s", what);
    send_response(c, &rs);
}

/* ---- parsing ---------------------------------------------------------------------------------- */
static int on_url(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (c->url_len + n >= URL_CAP) {
        c->status_early = 414;
        http_parser_pause(p, 1);
        return 0;
    }
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (c->hfield_was_value) {
        c->hname_len = 0;
        c->hfield_was_value = 0;
    }
    size_t room = HNAME_CAP - 1 - c->hname_len;
    memcpy(c->hname + c->hname_len, at, n < room ? n : room);
    c->hname_len += n < room ? n : room;
    c->hname[c->hname_len] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (!c->hfield_was_value) {
        c->hfield_was_value = 1;
        c->hdst = NULL;
        if (strcasecmp(c->hname, "host") == 0) {
            c->hdst = c->host;
            c->hdst_len = &c->host_len;
        } else if (strcasecmp(c->hname, "content-type") == 0) {
            c->hdst = c->ctype;
            c->hdst_len = &c->ctype_len;
        }
        if (c->hdst)
            *c->hdst_len = 0;
    }
    if (!c->hdst)
        return 0;
    if (*c->hdst_len + n >= HVAL_CAP) {
        c->status_early = 431;
        http_parser_pause(p, 1);
        return 0;
    }
    memcpy(c->hdst + *c->hdst_len, at, n);
    *c->hdst_len += n;
    c->hdst[*c->hdst_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;
    /* content_length is ULLONG_MAX when the header is absent (chunked or none) */
    if (p->content_length != (uint64_t)-1 && p->content_length > c->srv->body_limit) {
        c->status_early = 413;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (c->body_len + n > c->srv->body_limit) {
        c->status_early = 413;
        http_parser_pause(p, 1);
        return 0;
    }
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 1024;
        while (cap < c->body_len + n + 1)
            cap *= 2;
        char *b = realloc(c->body, cap);
        if (!b)
            return 1; /* HPE_CB_body: answered 400 below; rare enough */
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    c->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings SETTINGS = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void dispatch(http_conn *c)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    char path[URL_CAP], query[URL_CAP];
    path[0] = query[0] = '\0';
    if (http_parser_parse_url(c->url, c->url_len, c->parser.method == HTTP_CONNECT, &u) != 0) {
        respond_error(c, 400, "malformed request target");
        return;
    }
    if (u.field_set & (1 << UF_PATH))
        snprintf(path, sizeof path, "%.*s", (int)u.field_data[UF_PATH].len,
                 c->url + u.field_data[UF_PATH].off);
    if (u.field_set & (1 << UF_QUERY))
        snprintf(query, sizeof query, "%.*s", (int)u.field_data[UF_QUERY].len,
                 c->url + u.field_data[UF_QUERY].off);
    http_req rq = {http_method_str((enum http_method)c->parser.method), path, query, c->host,
                   c->ctype, c->body ? c->body : "", c->body_len};
    http_resp rs = {0, NULL, NULL, 0, NULL};
    c->srv->handler(&rq, &rs, c->srv->ud);
    send_response(c, &rs);
}

/* ---- reading ---------------------------------------------------------------------------------- */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char scratch[65536]; /* one loop thread: the data is consumed before the next read */
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    http_conn *c = s->data;
    if (n < 0) { /* EOF or error; a request cut short gets no answer */
        conn_close(c);
        return;
    }
    if (n == 0 || c->state != ST_READING)
        return; /* draining: thrown away */
    size_t used = http_parser_execute(&c->parser, &SETTINGS, buf->base, (size_t)n);
    (void)used;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->status_early) {
        respond_error(c, c->status_early,
                      c->status_early == 413   ? "request body too large"
                      : c->status_early == 414 ? "request target too long"
                                               : "request header too large");
    } else if (c->complete) {
        dispatch(c);
    } else if (e != HPE_OK) {
        char what[200];
        snprintf(what, sizeof what, "malformed HTTP request: %s", http_errno_description(e));
        respond_error(c, 400, what);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    http_server *s = server->data;
    if (status < 0)
        return;
    http_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->n_open = 2;
    c->next = s->conns;
    s->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, IDLE_MS, 0);
}

int http_server_start(http_server *s, uv_loop_t *loop, const char *host, int port,
                      size_t body_limit, http_handler h, void *ud)
{
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    if (rc != 0)
        return rc;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->handler = h;
    s->ud = ud;
    s->body_limit = body_limit;
    if ((rc = uv_tcp_init(loop, &s->listener)) != 0)
        return rc;
    s->listener.data = s;
    s->open = 1;
    if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 64, on_connection)) != 0) {
        http_server_stop(s);
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if ((rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len)) != 0) {
        http_server_stop(s);
        return rc;
    }
    s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

void http_server_stop(http_server *s)
{
    if (s->open) {
        s->open = 0;
        uv_close((uv_handle_t *)&s->listener, NULL);
    }
    while (s->conns)
        conn_close(s->conns);
}
