
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Every answer the gateway makes itself is JSON, in the shapes the original
 * proxy used ({"error": ..., "message": ...}), so that clients which call
 * response.json() on errors keep working.  Bodies are built with jansson.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_sandbox_module.h"


typedef struct {
    ngx_uint_t   status;
    const char  *error;
    const char  *message;
} ngx_http_sandbox_status_t;


/* answers for errors nginx itself raises (error_page to sandbox_error) */

static ngx_http_sandbox_status_t  ngx_http_sandbox_statuses[] = {
    { 400, "Bad Request", "The request could not be parsed" },
    { 401, "Unauthorized", "Authentication required" },
    { 403, "Forbidden", "Access denied" },
    { 404, "Not Found", "Not found" },
    { 405, "Method Not Allowed", "Method not allowed" },
    { 408, "Request Timeout", "The request was not received in time" },
    { 411, "Length Required", "Content-Length required" },
    { 413, "Payload Too Large", "Request body too large" },
    { 414, "URI Too Long", "Request URI too long" },
    { 429, "Too Many Requests", "Too many requests" },
    { 494, "Bad Request", "Request header too large" },
    { 500, "Internal server error", "Internal server error" },
    { 502, "Bad Gateway", "Sandbox unreachable" },
    { 503, "Service Unavailable", "Service unavailable" },
    { 504, "Gateway Timeout", "Sandbox did not respond in time" },
    { 0, NULL, NULL }
};


ngx_int_t
ngx_http_sandbox_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *body)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    len = json_dumpb(body, NULL, 0, JSON_COMPACT);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL || len == 0) {
        json_decref(body);
        return NGX_ERROR;
    }

    b->last += json_dumpb(body, (char *) b->pos, len, JSON_COMPACT);
    *b->last++ = '\n';
    json_decref(body);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* a numeric header of a refusal (Retry-After, RateLimit-*) */

ngx_int_t
ngx_http_sandbox_header_uint(ngx_http_request_t *r, const char *name,
    uint64_t value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (h->value.data == NULL) {
        h->hash = 0;
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.len = ngx_sprintf(h->value.data, "%uL", value) - h->value.data;

    return NGX_OK;
}


/* the challenge every 401 of the gateway carries */

ngx_int_t
ngx_http_sandbox_www_authenticate(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer");
    r->headers_out.www_authenticate = h;

    return NGX_OK;
}


ngx_int_t
ngx_http_sandbox_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, const char *message)
{
    json_t  *body;

    body = json_pack("{ss ss}", "error", error, "message", message);
    if (body == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_sandbox_send_json(r, status, body);
}


/*
 * Content handler of "sandbox_error": turns an error nginx raised (502 from
 * an unreachable pod, 504, 413 ...) into JSON.  Used as an error_page target.
 */

static ngx_http_sandbox_status_t *
ngx_http_sandbox_status_find(ngx_uint_t status)
{
    ngx_http_sandbox_status_t  *s;

    for (s = ngx_http_sandbox_statuses; s->status; s++) {
        if (s->status == status) {
            return s;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_sandbox_error_handler(ngx_http_request_t *r)
{
    ngx_uint_t                  status;
    ngx_http_sandbox_status_t  *s;

    status = r->err_status ? r->err_status : NGX_HTTP_NOT_FOUND;

    s = ngx_http_sandbox_status_find(status);

    if (s == NULL) {
        s = ngx_http_sandbox_status_find(status >= 500 ? 500 : 400);
    }

    /* nginx's private 49x codes must not reach clients */

    if (status > NGX_HTTP_REQUEST_HEADER_TOO_LARGE - 1 && status < 500) {
        status = NGX_HTTP_BAD_REQUEST;
    }

    return ngx_http_sandbox_send_error(r, status, s->error, s->message);
}
