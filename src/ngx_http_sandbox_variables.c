
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The request's context (one per request, of the kind that made it: the
 * data plane's route context, an API call's) and the $sandbox_* variables
 * that read it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


static ngx_int_t ngx_http_sandbox_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


typedef enum {
    NGX_HTTP_SANDBOX_VAR_USER = 0,
    NGX_HTTP_SANDBOX_VAR_NAME,
    NGX_HTTP_SANDBOX_VAR_ADDR,
    NGX_HTTP_SANDBOX_VAR_KEY_ID,
    NGX_HTTP_SANDBOX_VAR_URI,
    NGX_HTTP_SANDBOX_VAR_CACHE_STATUS,
    NGX_HTTP_SANDBOX_VAR_REQUEST_ID,
    NGX_HTTP_SANDBOX_VAR_TRACE_ID,
    NGX_HTTP_SANDBOX_VAR_WAKE
} ngx_http_sandbox_var_e;


static ngx_http_variable_t  ngx_http_sandbox_vars[] = {

    { ngx_string("sandbox_user"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_USER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_name"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_addr"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_ADDR, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_key_id"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_KEY_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_uri"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_URI, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_cache_status"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_CACHE_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_request_id"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_trace_id"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_TRACE_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sandbox_wake"), NULL, ngx_http_sandbox_variable,
      NGX_HTTP_SANDBOX_VAR_WAKE, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("sandbox_limit"), NULL, ngx_http_sandbox_limit_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_sandbox_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_sandbox_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


void *
ngx_http_sandbox_create_ctx(ngx_http_request_t *r,
    ngx_http_sandbox_ctx_kind_e kind, size_t size)
{
    ngx_http_sandbox_ctx_kind_e  *ctx;

    /*
     * The data plane's context lives as long as its request, an open
     * stream's for hours.  A request's pool grows by 4 KB blocks, which
     * nginx itself all but fills for a proxied stream: the context is an
     * allocation of the pool apart from its blocks (freed with it), so it
     * never costs the request one more block (bench/streams.pl).
     */

    if (kind == NGX_HTTP_SANDBOX_CTX_ROUTE) {
        ctx = ngx_pmemalign(r->pool, size, NGX_ALIGNMENT);

    } else {
        ctx = ngx_palloc(r->pool, size);
    }

    if (ctx == NULL) {
        return NULL;
    }

    ngx_memzero(ctx, size);
    *ctx = kind;
    ngx_http_set_ctx(r, ctx, ngx_http_sandbox_module);

    return ctx;
}


void *
ngx_http_sandbox_get_ctx(ngx_http_request_t *r,
    ngx_http_sandbox_ctx_kind_e kind)
{
    ngx_http_sandbox_ctx_kind_e  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sandbox_module);

    return (ctx != NULL && *ctx == kind) ? ctx : NULL;
}


/*
 * On the data plane every variable has its value; in an API request only
 * $sandbox_user does (the user the caller's key belongs to), and in any
 * other request none.
 */

static ngx_int_t
ngx_http_sandbox_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                     *s, text, trace;
    ngx_http_sandbox_route_ctx_t  *ctx;

    static ngx_str_t  cache_status[] = {
        ngx_string("BYPASS"), ngx_string("MISS"), ngx_string("HIT"),
        ngx_string("STALE")
    };

    ctx = ngx_http_sandbox_route_ctx(r->main);

    if (ctx == NULL) {
        s = (data == NGX_HTTP_SANDBOX_VAR_USER)
            ? ngx_http_sandbox_api_user(r->main) : NULL;

        if (s == NULL || s->len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        goto found;
    }

    switch (data) {

    case NGX_HTTP_SANDBOX_VAR_USER:
        s = &ctx->user;
        break;

    case NGX_HTTP_SANDBOX_VAR_NAME:
        s = &ctx->name;
        break;

    case NGX_HTTP_SANDBOX_VAR_ADDR:
        s = &ctx->addr_text;
        break;

    case NGX_HTTP_SANDBOX_VAR_KEY_ID:
        s = &ctx->key_id;
        break;

    case NGX_HTTP_SANDBOX_VAR_URI:
        if (ctx->uri.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        if (ngx_http_sandbox_forward_uri_value(r->main, ctx, &text)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        s = &text;
        break;

    case NGX_HTTP_SANDBOX_VAR_CACHE_STATUS:
        s = &cache_status[ctx->cache_status];
        break;

    case NGX_HTTP_SANDBOX_VAR_TRACE_ID:
        ngx_http_sandbox_trace_id(r->main, ctx, &trace);
        s = &trace;
        break;

    case NGX_HTTP_SANDBOX_VAR_WAKE:
        if (!ctx->woken) {
            v->not_found = 1;
            return NGX_OK;
        }

        text.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (text.data == NULL) {
            return NGX_ERROR;
        }

        /* still held (a client that left): how long until now */

        text.len = ngx_sprintf(text.data, "%M",
                               ctx->holding
                               ? ngx_current_msec - ctx->wake_ms
                               : ctx->wake_ms)
                   - text.data;
        s = &text;
        break;

    default: /* NGX_HTTP_SANDBOX_VAR_REQUEST_ID */
        text.len = ctx->request_id_set ? NGX_HTTP_SANDBOX_REQUEST_ID_LEN : 0;
        text.data = ngx_http_sandbox_request_id_of(ctx);
        s = &text;
        break;
    }

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

found:

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}
