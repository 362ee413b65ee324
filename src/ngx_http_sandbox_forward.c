
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
#include "sandbox_trace.h"


#if (NGX_HTTP_SANDBOX_TRACEPARENT_LEN != SBX_TRACEPARENT_LEN                 \
     || NGX_HTTP_SANDBOX_REQUEST_ID_LEN != SBX_TRACE_ID_LEN)
#error "the route context's trace buffer does not fit a traceparent"
#endif


static void ngx_http_sandbox_request_id(ngx_http_sandbox_route_ctx_t *ctx);
static uint64_t ngx_http_sandbox_span(void);
static void ngx_http_sandbox_header(ngx_table_elt_t *h, const char *name,
    const char *lowcase, ngx_str_t *value);


/*
 * The URI the sandbox gets is the path's rest, "/" if none, with the
 * query string.  It becomes the request's URI when the request goes
 * upstream, so "proxy_pass http://sandbox_pods;" sends it as it is (the
 * URI counts as changed, as after a rewrite); $sandbox_uri is made from it
 * only when read, for configurations that name it in proxy_pass.
 */

void
ngx_http_sandbox_forward_uri(ngx_http_sandbox_route_ctx_t *ctx, u_char *rest,
    size_t len)
{
    if (len == 0) {
        ngx_str_set(&ctx->uri, "/");
        return;
    }

    ctx->uri.data = rest;
    ctx->uri.len = len;
}


/*
 * The pod's address, "ip:port" or "[ipv6]:port" as ngx_parse_addr_port()
 * reads it, parsed into the route context itself (ngx_parse_addr_port()
 * would allocate the sockaddr, for the request's whole life).  IP literals
 * only: a worker never resolves names.  NGX_DECLINED for anything else,
 * a port of 0 included.
 */

ngx_int_t
ngx_http_sandbox_forward_addr(ngx_http_sandbox_route_ctx_t *ctx,
    ngx_str_t *text)
{
    u_char               *host, *p, *last;
    size_t                len;
    ngx_int_t             port;
    in_addr_t             inaddr;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    host = text->data;
    last = text->data + text->len;

    if (text->len && host[0] == '[') {
        p = ngx_strlchr(host, last, ']');
        if (p == NULL || p == last - 1 || p[1] != ':') {
            return NGX_DECLINED;
        }

        host++;
        len = p - host;
        p += 2;

    } else {
        p = ngx_strlchr(host, last, ':');
        if (p == NULL) {
            return NGX_DECLINED;
        }

        len = p - host;
        p++;
    }

    port = ngx_atoi(p, last - p);
    if (port < 1 || port > 65535) {
        return NGX_DECLINED;
    }

    ngx_memzero(&ctx->sockaddr, sizeof(ngx_http_sandbox_sockaddr_t));

    inaddr = ngx_inet_addr(host, len);

    if (inaddr != INADDR_NONE) {
        sin = &ctx->sockaddr.sockaddr_in;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = inaddr;
        sin->sin_port = htons((in_port_t) port);
        ctx->socklen = sizeof(struct sockaddr_in);
        return NGX_OK;
    }

#if (NGX_HAVE_INET6)
    sin6 = &ctx->sockaddr.sockaddr_in6;

    if (len && ngx_inet6_addr(host, len, sin6->sin6_addr.s6_addr) == NGX_OK) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((in_port_t) port);
        ctx->socklen = sizeof(struct sockaddr_in6);
        return NGX_OK;
    }
#endif

    return NGX_DECLINED;
}


void
ngx_http_sandbox_forward_rewrite(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx)
{
    r->uri = ctx->uri;
    r->valid_unparsed_uri = 0;
}


ngx_int_t
ngx_http_sandbox_forward_uri_value(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_str_t *value)
{
    u_char     *p;
    uintptr_t   escape;

    /* the URI is decoded: encode it again as proxy_pass itself would */

    escape = 2 * ngx_escape_uri(NULL, ctx->uri.data, ctx->uri.len,
                                NGX_ESCAPE_URI);

    p = ngx_pnalloc(r->pool, ctx->uri.len + escape + 1 + r->args.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;

    if (escape) {
        p = (u_char *) ngx_escape_uri(p, ctx->uri.data, ctx->uri.len,
                                      NGX_ESCAPE_URI);

    } else {
        p = ngx_cpymem(p, ctx->uri.data, ctx->uri.len);
    }

    if (r->args.len) {
        *p++ = '?';
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    value->len = p - value->data;

    return NGX_OK;
}


/*
 * The sandbox must never see the client's key nor any X-Sandbox-* header
 * the client made up; it gets the authenticated user and a request id from
 * the gateway instead, and the trace context (see below).
 *
 * The list is edited in place: a dropped header's slot takes one of the
 * gateway's own, the others are pushed into the list's spare room, and no
 * kept header moves (r->headers_in points into the list).  Only a client
 * that sent more dropped headers than the gateway adds gets a rebuilt
 * list (bench/streams.pl measures what an open stream costs).
 *
 * Trace context: one valid traceparent is continued in place, its parent
 * id overwritten with the gateway's span (and a later version's extra
 * fields cut); otherwise the client's are dropped and a new trace is added
 * whose id is the request id, written in the route context around it.
 * Nothing here allocates unless the list is rebuilt.
 */

#define NGX_HTTP_SANDBOX_ADDED  3

/* what ngx_http_sandbox_dropped() says of a header */
#define NGX_HTTP_SANDBOX_KEEP         0
#define NGX_HTTP_SANDBOX_DROP         1
#define NGX_HTTP_SANDBOX_TRACEPARENT  2

static ngx_int_t ngx_http_sandbox_rebuild_headers(ngx_http_request_t *r,
    ngx_table_elt_t *add, ngx_uint_t nadd, ngx_uint_t keep_tp);
static ngx_uint_t ngx_http_sandbox_dropped(ngx_str_t *name);
static void ngx_http_sandbox_trace(ngx_http_sandbox_route_ctx_t *ctx,
    ngx_table_elt_t *tp, ngx_uint_t ntp, ngx_str_t *traceparent);


ngx_int_t
ngx_http_sandbox_forward_headers(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx)
{
    ngx_str_t         id, traceparent;
    ngx_uint_t        i, nadd, used, ndrop, ntp, drop;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *tp, *slot[NGX_HTTP_SANDBOX_ADDED];
    ngx_table_elt_t   add[NGX_HTTP_SANDBOX_ADDED];

    /* the dropped headers' slots (as many as may be used), the trace */

    used = 0;
    ndrop = 0;
    ntp = 0;
    tp = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            drop = ngx_http_sandbox_dropped(&h[i].key);

            if (drop == NGX_HTTP_SANDBOX_KEEP) {
                continue;
            }

            if (drop == NGX_HTTP_SANDBOX_TRACEPARENT) {
                if (ntp++ == 0) {
                    tp = &h[i];
                }

                continue;
            }

            if (used < NGX_HTTP_SANDBOX_ADDED) {
                slot[used++] = &h[i];
            }

            ndrop++;
        }
    }

    ngx_http_sandbox_trace(ctx, tp, ntp, &traceparent);

    nadd = 0;

    if (ctx->user.len) {
        ngx_http_sandbox_header(&add[nadd++], "X-Sandbox-User",
                                "x-sandbox-user", &ctx->user);
    }

    id.len = NGX_HTTP_SANDBOX_REQUEST_ID_LEN;
    id.data = ngx_http_sandbox_request_id_of(ctx);

    ngx_http_sandbox_header(&add[nadd++], "X-Request-Id", "x-request-id", &id);

    if (!ctx->trace_continued) {
        ngx_http_sandbox_header(&add[nadd++], "traceparent", "traceparent",
                                &traceparent);

        /* the client's one invalid traceparent: its slot is ours */

        if (ntp == 1) {
            if (used < NGX_HTTP_SANDBOX_ADDED) {
                slot[used++] = tp;
            }

            ndrop++;
        }
    }

    if (ndrop > nadd || (ntp > 1 && !ctx->trace_continued)) {
        return ngx_http_sandbox_rebuild_headers(r, add, nadd,
                                                ctx->trace_continued);
    }

    for (i = 0; i < nadd; i++) {
        h = (i < used) ? slot[i] : ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = add[i];
    }

    r->headers_in.authorization = NULL;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_sandbox_dropped(ngx_str_t *name)
{
    if (name->len == sizeof("traceparent") - 1
        && ngx_strncasecmp(name->data, (u_char *) "traceparent", name->len)
           == 0)
    {
        return NGX_HTTP_SANDBOX_TRACEPARENT;
    }

    return (name->len == sizeof("Authorization") - 1
            && ngx_strncasecmp(name->data, (u_char *) "Authorization",
                               name->len) == 0)
           || (name->len == sizeof("X-Request-Id") - 1
               && ngx_strncasecmp(name->data, (u_char *) "X-Request-Id",
                                  name->len) == 0)
           || (name->len >= sizeof("X-Sandbox-") - 1
               && ngx_strncasecmp(name->data, (u_char *) "X-Sandbox-",
                                  sizeof("X-Sandbox-") - 1) == 0);
}


/* the rare request with more to drop than to add: a new list */

static ngx_int_t
ngx_http_sandbox_rebuild_headers(ngx_http_request_t *r, ngx_table_elt_t *add,
    ngx_uint_t nadd, ngx_uint_t keep_tp)
{
    ngx_uint_t        drop;
    ngx_uint_t        i;
    ngx_list_t        list;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    if (ngx_list_init(&list, r->pool, r->headers_in.headers.part.nelts + nadd,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            drop = ngx_http_sandbox_dropped(&h[i].key);

            if (drop == NGX_HTTP_SANDBOX_DROP
                || (drop == NGX_HTTP_SANDBOX_TRACEPARENT && !keep_tp))
            {
                continue;
            }

            nh = ngx_list_push(&list);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }
    }

    for (i = 0; i < nadd; i++) {
        nh = ngx_list_push(&list);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = add[i];
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


/* 32 hex digits at p */

u_char *
ngx_http_sandbox_request_id_write(u_char *p)
{
    return ngx_sprintf(p, "%016xL%016xL", ngx_http_sandbox_request_id_prefix,
                       ++ngx_http_sandbox_request_id_seq);
}


static void
ngx_http_sandbox_request_id(ngx_http_sandbox_route_ctx_t *ctx)
{
    (void) ngx_http_sandbox_request_id_write(
                                      ngx_http_sandbox_request_id_of(ctx));

    ctx->request_id_set = 1;
}


/* a span id: the counter scrambled by a bijection, so unique here */

static uint64_t
ngx_http_sandbox_span(void)
{
    return (++ngx_http_sandbox_request_id_seq * 0x9e3779b97f4a7c15ULL)
           ^ ngx_http_sandbox_request_id_prefix;
}


/*
 * The trace: one valid traceparent of the client is continued in place,
 * else a new trace starts whose id is the request id: its text is the
 * route context's trace buffer, around the request id already there
 */

static void
ngx_http_sandbox_trace(ngx_http_sandbox_route_ctx_t *ctx, ngx_table_elt_t *tp,
    ngx_uint_t ntp, ngx_str_t *traceparent)
{
    const u_char  *trace_id, *flags;

    ngx_http_sandbox_request_id(ctx);

    if (ntp == 1
        && sbx_traceparent_parse(tp->value.data, tp->value.len, &trace_id,
                                 &flags)
           == 0)
    {
        ctx->trace_continued = 1;

        /* trace_id and flags point into the value: written over in place */

        tp->value.len = sbx_traceparent_write(tp->value.data, trace_id,
                                              ngx_http_sandbox_span(),
                                              flags)
                        - tp->value.data;
        *traceparent = tp->value;

        return;
    }

    /* the request id is copied onto itself: sbx_traceparent_write allows it */

    traceparent->data = ctx->trace;
    traceparent->len = sbx_traceparent_write(ctx->trace,
                                        ngx_http_sandbox_request_id_of(ctx),
                                        ngx_http_sandbox_span(),
                                        (u_char *) "01")
                       - ctx->trace;
}


/* the trace id the sandbox received, for $sandbox_trace_id */

void
ngx_http_sandbox_trace_id(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_str_t *id)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (!ctx->trace_continued) {
        id->len = ctx->request_id_set ? NGX_HTTP_SANDBOX_REQUEST_ID_LEN : 0;
        id->data = ngx_http_sandbox_request_id_of(ctx);  /* new, or none */
        return;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_sandbox_dropped(&h[i].key)
                    == NGX_HTTP_SANDBOX_TRACEPARENT
                && h[i].value.len == SBX_TRACEPARENT_LEN)
            {
                id->data = h[i].value.data + 3;
                id->len = SBX_TRACE_ID_LEN;
                return;
            }
        }
    }

    ngx_str_null(id);
}


static void
ngx_http_sandbox_header(ngx_table_elt_t *h, const char *name,
    const char *lowcase, ngx_str_t *value)
{
    ngx_memzero(h, sizeof(ngx_table_elt_t));   /* "next" in nginx >= 1.23 */

    h->key.len = ngx_strlen(name);
    h->key.data = (u_char *) name;
    h->value = *value;
    h->lowcase_key = (u_char *) lowcase;        /* never written to */
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
}
