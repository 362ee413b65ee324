
/*
 * Copyright (C) The sandbox gateway authors
 *
 * What a sandbox receives of a request the access phase let through: the
 * URI without its routing prefix, and the client's headers rewritten.
 * The client's Authorization, X-Request-Id and X-Sandbox-* headers are
 * dropped; the gateway adds X-Sandbox-User and its own X-Request-Id.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_sandbox_module.h"


static ngx_int_t ngx_http_sandbox_request_id(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_push_header(ngx_http_request_t *r,
    ngx_list_t *list, const char *name, ngx_str_t *value);


ngx_int_t
ngx_http_sandbox_forward_uri(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, u_char *rest, size_t len)
{
    u_char     *p;
    uintptr_t   escape;

    if (len == 0) {
        rest = (u_char *) "/";
        len = 1;
    }

    /* r->uri is decoded: encode it again as proxy_pass itself would */

    escape = 2 * ngx_escape_uri(NULL, rest, len, NGX_ESCAPE_URI);

    p = ngx_pnalloc(r->pool, len + escape + 1 + r->args.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->uri.data = p;

    if (escape) {
        p = (u_char *) ngx_escape_uri(p, rest, len, NGX_ESCAPE_URI);

    } else {
        p = ngx_cpymem(p, rest, len);
    }

    if (r->args.len) {
        *p++ = '?';
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    ctx->uri.len = p - ctx->uri.data;

    return NGX_OK;
}


/*
 * The sandbox must never see the client's key nor any X-Sandbox-* header
 * the client made up; it gets the authenticated user and a request id from
 * the gateway instead.  The header list is rebuilt rather than patched, so
 * no proxy configuration can forward what was removed.
 */

ngx_int_t
ngx_http_sandbox_forward_headers(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx)
{
    ngx_str_t         name;
    ngx_uint_t        i;
    ngx_list_t        list;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    part = &r->headers_in.headers.part;

    if (ngx_list_init(&list, r->pool, part->nelts + 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        name = h[i].key;

        if ((name.len == sizeof("Authorization") - 1
             && ngx_strncasecmp(name.data, (u_char *) "Authorization",
                                name.len) == 0)
            || (name.len == sizeof("X-Request-Id") - 1
                && ngx_strncasecmp(name.data, (u_char *) "X-Request-Id",
                                   name.len) == 0)
            || (name.len >= sizeof("X-Sandbox-") - 1
                && ngx_strncasecmp(name.data, (u_char *) "X-Sandbox-",
                                   sizeof("X-Sandbox-") - 1) == 0))
        {
            continue;
        }

        nh = ngx_list_push(&list);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
    }

    if (ctx->user.len
        && ngx_http_sandbox_push_header(r, &list, "X-Sandbox-User",
                                        &ctx->user)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_sandbox_request_id(r, ctx) != NGX_OK
        || ngx_http_sandbox_push_header(r, &list, "X-Request-Id",
                                        &ctx->request_id)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_in.headers = list;
    r->headers_in.authorization = NULL;

    return NGX_OK;
}


/*
 * Request ids: a random per-process prefix and a counter, unique without
 * asking OpenSSL's DRBG for 16 bytes per request as $request_id does
 * (that alone was 4% of a worker's time in the benchmark).
 */

static uint64_t  ngx_http_sandbox_request_id_prefix;
static uint64_t  ngx_http_sandbox_request_id_seq;


void
ngx_http_sandbox_request_id_init(void)
{
    if (RAND_bytes((u_char *) &ngx_http_sandbox_request_id_prefix,
                   sizeof(uint64_t))
        != 1)
    {
        ngx_http_sandbox_request_id_prefix = ((uint64_t) ngx_random() << 32)
                                             ^ (uint64_t) ngx_pid
                                             ^ (uint64_t) ngx_time();
    }

    ngx_http_sandbox_request_id_seq = 0;
}


static ngx_int_t
ngx_http_sandbox_request_id(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->request_id.data = p;
    ctx->request_id.len = ngx_sprintf(p, "%016xL%016xL",
                                      ngx_http_sandbox_request_id_prefix,
                                      ++ngx_http_sandbox_request_id_seq)
                          - p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_push_header(ngx_http_request_t *r, ngx_list_t *list,
    const char *name, ngx_str_t *value)
{
    size_t            len;
    ngx_table_elt_t  *h;

    h = ngx_list_push(list);
    if (h == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(name);

    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value = *value;

    h->lowcase_key = ngx_pnalloc(r->pool, len);
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, len);

    return NGX_OK;
}
