/*
 * The HTTP/1.1 server side of sandbox-agent: one connection, requests read
 * with bounds and timeouts (Content-Length or chunked bodies, Expect:
 * 100-continue, pipelining), JSON answers and SSE streams.  No Debian
 * library serves HTTP from a static musl binary; this is the small subset
 * nginx's proxy and curl send.
 */

#ifndef SANDBOX_AGENT_HTTP_H
#define SANDBOX_AGENT_HTTP_H

#include <stddef.h>

#include <jansson.h>

#define HTTP_MAX_HEAD  16384

typedef struct http_conn_s {
    int      fd;
    char    *buf;           /* bytes read and not yet consumed */
    size_t   len;
    size_t   cap;
} http_conn_t;

typedef struct http_req_s {
    char    *head;          /* a copy of the request head, NUL-separated */
    char    *method;
    char    *path;          /* the target without its query string */
    char    *accept;
    char    *api_key;       /* X-AIO-API-Key */
    char    *authorization;
    char    *body;          /* NUL-terminated; body_len bytes */
    size_t   body_len;
    int      close;         /* the connection ends after the answer */
    int      sse;           /* Accept names text/event-stream */
} http_req_t;

/* 1: a request; 0: the peer closed or idled out; -1: answered, close */
int http_read_request(http_conn_t *c, http_req_t *r);
void http_req_free(http_req_t *r);

/* answers: 0, or -1 when the connection is unusable; json is consumed */
int http_send_json(http_conn_t *c, http_req_t *r, int status, json_t *json);
int http_send_error(http_conn_t *c, http_req_t *r, int status,
    const char *fmt, ...);
/* the AIO (FastAPI) validation error: 422 with detail[{loc, msg, type}] */
int http_send_invalid(http_conn_t *c, http_req_t *r, const char *field,
    const char *type, const char *msg);

/* the body as a JSON object, or NULL once a 422 has been sent */
json_t *http_json_body(http_conn_t *c, http_req_t *r);

int http_sse_start(http_conn_t *c);
int http_sse_event(http_conn_t *c, const char *event, json_t *data);
int http_sse_end(http_conn_t *c);

int http_write_all(int fd, const void *p, size_t n);

#endif
