/*
 * label.h — private to `alignctl label`: a small HTTP/1.1 server on one
 * libuv loop (label_http.c, requests parsed by Debian's http-parser) and the
 * labelling page and API on top of it (cmd_label.c). Docs: docs/cli/label.md.
 */
#ifndef ALIGNCTL_LABEL_H
#define ALIGNCTL_LABEL_H

#include <stddef.h>
#include <uv.h>

/* One complete request, valid during the handler call only. */
typedef struct http_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* the URL's path, without the query */
    const char *query;  /* the part after '?', "" if none */
    const char *host;   /* the Host header, "" if none */
    const char *ctype;  /* the Content-Type header, "" if none */
    const char *body;   /* NUL-terminated; body_len bytes */
    size_t body_len;
} http_req;

/* What the handler answers: status, a Content-Type and a body it allocated
 * with malloc (the server frees it), plus optional extra header lines
 * ("Name: value\r\n...", static storage). */
typedef struct http_resp {
    int status;
    const char *ctype;
    char *body;
    size_t len;
    const char *headers;
} http_resp;

typedef void (*http_handler)(const http_req *rq, http_resp *rs, void *ud);

typedef struct http_conn http_conn;
typedef struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    http_handler handler;
    void *ud;
    size_t body_limit; /* larger bodies get 413 and are never held in memory */
    http_conn *conns;  /* open connections */
    int port;          /* the bound port */
    int open;
} http_server;

/* Binds host:port (port 0: a free one, reported in s->port) and starts
 * accepting. 0, or a negative libuv error code. */
int http_server_start(http_server *s, uv_loop_t *loop, const char *host, int port,
                      size_t body_limit, http_handler h, void *ud);
/* Closes the listener and every connection; uv_run then returns. */
void http_server_stop(http_server *s);

/* A JSON error body {"error": what, "status": status} with that status. */
void http_error(http_resp *rs, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *http_reason(int status);

#endif
