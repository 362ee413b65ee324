
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The access-phase handler: it parses /<user>/<sandbox>/... or
 * /proxy/<name>/..., authenticates the bearer key, and finds the pod
 * address, then lets the request go on to proxy_pass (the balancer picks
 * the address up from the request context) or answers with JSON.
 *
 * The first entry may suspend the request for one Redis round trip
 * (ngx_http_sandbox_lookup.c) when the shared cache cannot decide; the
 * reply resumes the phases, and the re-entered handler returns the stored
 * decision, as auth_request does.
 *
 * The decision itself is ngx_http_sandbox_decide.c's; the key is judged
 * by ngx_http_sandbox_auth.c; what the sandbox then receives (URI,
 * headers) is made by ngx_http_sandbox_forward.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_decision.h"
#include "sandbox_path.h"


static ngx_int_t ngx_http_sandbox_begin(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t nocache, ngx_http_sandbox_route_t *released);
static ngx_int_t ngx_http_sandbox_conclude(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t on_stack);
static void ngx_http_sandbox_woke(ngx_http_request_t *r, ngx_int_t rc,
    ngx_str_t *addr);
static ngx_int_t ngx_http_sandbox_start(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_http_sandbox_route_t *released);
static ngx_int_t ngx_http_sandbox_parse(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_finish(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_finish_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *dp, ngx_http_sandbox_loc_conf_t *slcf);


ngx_int_t
ngx_http_sandbox_access_handler(ngx_http_request_t *r)
{
    ngx_uint_t                     nocache, released;
    ngx_http_sandbox_route_t       route;
    ngx_http_sandbox_decision_t   *dp;
    ngx_http_sandbox_route_ctx_t  *ctx;
    ngx_http_sandbox_loc_conf_t   *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    if (!slcf->route) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_sandbox_route_ctx(r);

    if (ctx != NULL) {

        /* re-entered once the lookup's reply has come */

        dp = ctx->decision;

        if (dp == NULL) {
            return NGX_OK;
        }

        if (dp->state == NGX_HTTP_SANDBOX_PENDING
            || dp->state == NGX_HTTP_SANDBOX_WAKING)
        {
            return NGX_AGAIN;
        }

        ctx->decision = NULL;

        if (dp->state == NGX_HTTP_SANDBOX_ANEW) {
            nocache = dp->nocache;
            released = dp->released;
            route = dp->route;
            ngx_pfree(r->pool, dp);
            return ngx_http_sandbox_begin(r, ctx, slcf, nocache,
                                          released ? &route : NULL);
        }

        return ngx_http_sandbox_finish_lookup(r, dp, slcf);
    }

    ctx = ngx_http_sandbox_create_ctx(r, NGX_HTTP_SANDBOX_CTX_ROUTE,
                                      sizeof(ngx_http_sandbox_route_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sandbox_begin(r, ctx, slcf, 0, NULL);
}


static ngx_int_t
ngx_http_sandbox_begin(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t nocache, ngx_http_sandbox_route_t *released)
{
    ngx_int_t                     rc;
    ngx_http_sandbox_decision_t   d, *dp;

    ngx_memzero(&d, sizeof(ngx_http_sandbox_decision_t));
    d.out = ctx;
    d.nocache = nocache;

    if (ngx_http_sandbox_start(r, &d, slcf, released) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (d.state == NGX_HTTP_SANDBOX_DECIDED) {
        return ngx_http_sandbox_conclude(r, &d, slcf, 1);
    }

    /* to Redis: the decision outlives this call, not the lookup */

    dp = ngx_pmemalign(r->pool, sizeof(ngx_http_sandbox_decision_t),
                       NGX_ALIGNMENT);
    if (dp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *dp = d;

    rc = ngx_http_sandbox_lookup(r, dp);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (dp->state == NGX_HTTP_SANDBOX_PENDING) {
        ctx->decision = dp;
        return NGX_AGAIN;
    }

    return ngx_http_sandbox_finish_lookup(r, dp, slcf);
}


/*
 * A decision made by a lookup goes back to the stack, its allocation freed
 * and its cleanup disarmed, so that a stream opened after a Redis lookup
 * keeps no more than one opened from the cache (the strings the route
 * context points to are apart).  Before finishing: an answer sent may free
 * the request.
 */

static ngx_int_t
ngx_http_sandbox_finish_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *dp, ngx_http_sandbox_loc_conf_t *slcf)
{
    ngx_http_sandbox_decision_t  d;

    d = *dp;

    if (d.cleanup) {
        d.cleanup->handler = NULL;
        d.cleanup = NULL;
    }

    ngx_pfree(r->pool, dp);

    return ngx_http_sandbox_conclude(r, &d, slcf, 1);
}


/*
 * A sandbox that is not ready may be woken (ngx_http_sandbox_wake.c):
 * once per request, the request waiting meanwhile with its decision in
 * the pool.
 */

static ngx_int_t
ngx_http_sandbox_conclude(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t on_stack)
{
    ngx_int_t                     rc;
    ngx_http_sandbox_decision_t  *dp;

    if (!ctx->not_ready || !slcf->wake || ctx->out->wake_tried
        || ctx->out->user.len == 0)
    {
        return ngx_http_sandbox_finish(r, ctx);
    }

    ctx->out->wake_tried = 1;

    dp = ctx;

    if (on_stack) {
        dp = ngx_pmemalign(r->pool, sizeof(ngx_http_sandbox_decision_t),
                           NGX_ALIGNMENT);
        if (dp == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *dp = *ctx;
    }

    dp->wake_start = ngx_current_msec;

    rc = ngx_http_sandbox_wake(r, dp->out, dp->wake_start,
                               ngx_http_sandbox_woke);

    switch (rc) {

    case NGX_AGAIN:
        dp->state = NGX_HTTP_SANDBOX_WAKING;
        dp->out->decision = dp;
        return NGX_AGAIN;

    case NGX_BUSY:
        ngx_http_sandbox_not_ready(dp, "Too many requests waiting for "
                                   "sandboxes");
        break;

    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default: /* Redis cannot be asked: the sandbox is not ready, as before */
        break;
    }

    return ngx_http_sandbox_finish(r, dp);
}


/* the wake's outcome: decide again, or answer 503 */

static void
ngx_http_sandbox_woke(ngx_http_request_t *r, ngx_int_t rc, ngx_str_t *addr)
{
    ngx_http_sandbox_decision_t   *dp;
    ngx_http_sandbox_route_ctx_t  *ctx;

    ctx = ngx_http_sandbox_route_ctx(r);
    dp = ctx->decision;

    if (ctx->holding) {
        ctx->holding = 0;
        ctx->wake_ms = ngx_current_msec - ctx->wake_ms;
    }

    dp->state = NGX_HTTP_SANDBOX_DECIDED;

    switch (rc) {

    case NGX_OK:

        dp->state = NGX_HTTP_SANDBOX_ANEW;

        /* released on the route its group read: that one is used */

        if (addr) {
            dp->released = 1;
            dp->route.state = NGX_HTTP_SANDBOX_ROUTE_READY;
            dp->route.addr = *addr;
            break;
        }

        /* a route the cache may still hold as not ready: Redis says */

        dp->nocache = !ctx->woken;
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_http_sandbox_not_ready(dp, "Sandbox did not wake in time");
        break;

    case NGX_BUSY:
        ngx_http_sandbox_not_ready(dp, "Too many requests waiting for "
                                   "sandboxes");
        break;

    case NGX_DECLINED:
        break;

    default:
        ngx_http_sandbox_deny(dp, NGX_HTTP_INTERNAL_SERVER_ERROR,
                              "Internal server error", "Wake failed");
        dp->not_ready = 0;
        break;
    }

    /* resume the phases where the access handler suspended them */

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_sandbox_start(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_http_sandbox_route_t *released)
{
    ngx_int_t                      rc;
    ngx_str_t                      key;
    const char                    *message;
    ngx_http_sandbox_main_conf_t  *smcf;

    ctx->state = NGX_HTTP_SANDBOX_DECIDED;
    ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_BYPASS;

    /* authentication comes first, as in the original proxy */

    if (slcf->auth) {
        rc = ngx_http_sandbox_auth_bearer(r, &key, &message);

        if (rc != NGX_OK) {
            ngx_http_sandbox_deny(ctx, rc, "Unauthorized", message);
            return NGX_OK;
        }

        /* raw for the cache; only a lookup in Redis needs it in hex */

        if (ngx_http_sandbox_sha256(ctx->key_digest, key.data, key.len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "sandbox: SHA-256 failed");
            return NGX_ERROR;
        }

        ctx->authenticated = 1;

        smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

        if (smcf->cache_zone && slcf->cache) {
            ngx_http_sandbox_cache_prefetch_key(smcf->cache_zone,
                                                ctx->key_digest);
        }
    }

    rc = ngx_http_sandbox_parse(r, ctx);

    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    if (!slcf->auth && ctx->form == SBX_FORM_PROXY) {
        ngx_http_sandbox_deny(ctx, NGX_HTTP_UNAUTHORIZED, "Unauthorized",
                              "Missing Authorization header");
        return NGX_OK;
    }

    if (released) {
        if (ngx_http_sandbox_from_release(r, ctx, slcf, released)) {
            return NGX_OK;
        }

    } else if (!ctx->nocache && ngx_http_sandbox_from_cache(r, ctx, slcf)) {
        ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_HIT;
        return NGX_OK;
    }

    ctx->state = NGX_HTTP_SANDBOX_TO_REDIS;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_parse(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    int          rc;
    u_char      *raw;
    size_t       raw_len;
    sbx_path_t   path;

    /* the raw path, without the query, to catch what normalizing hid */

    raw = r->unparsed_uri.data;
    raw_len = r->unparsed_uri.len;

    if (r->args_start && r->args_start > raw
        && r->args_start <= raw + raw_len)
    {
        raw_len = r->args_start - 1 - raw;
    }

    if (r->internal || r->valid_unparsed_uri == 0) {
        raw = NULL;
        raw_len = 0;
    }

    rc = sbx_path_parse(r->uri.data, r->uri.len, raw, raw_len, &path);

    switch (rc) {

    case SBX_PATH_OK:
        break;

    case SBX_PATH_BAD_NAME:
        ngx_http_sandbox_deny(ctx, NGX_HTTP_BAD_REQUEST, "Bad Request",
                              "Invalid user or sandbox name: names must be "
                              "DNS-1123 labels");
        return NGX_DECLINED;

    case SBX_PATH_TRICK:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sandbox: rejected path \"%V\"", &r->unparsed_uri);
        ngx_http_sandbox_deny(ctx, NGX_HTTP_BAD_REQUEST, "Invalid path",
                              "Encoded separators and dot segments are not "
                              "allowed in sandbox paths");
        return NGX_DECLINED;

    default:
        ngx_http_sandbox_deny(ctx, NGX_HTTP_BAD_REQUEST, "Invalid path",
                              "Expected format: /{username}/{sandboxname}/"
                              "{endpoint} or /proxy/{sandboxname}/{endpoint}");
        return NGX_DECLINED;
    }

    ctx->form = path.form;
    ctx->out->name.data = r->uri.data + path.name_off;
    ctx->out->name.len = path.name_len;

    if (path.form == SBX_FORM_USER) {
        ctx->path_user.data = r->uri.data + path.user_off;
        ctx->path_user.len = path.user_len;
    }

    ngx_http_sandbox_forward_uri(ctx->out, r->uri.data + path.rest_off,
                                 path.rest_len);

    return NGX_OK;
}



static ngx_int_t
ngx_http_sandbox_finish(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    ngx_int_t                     rc;
    ngx_uint_t                    limit;
    ngx_table_elt_t              *h;
    ngx_http_sandbox_loc_conf_t  *slcf;

    if (ctx->status == NGX_OK) {
        rc = ngx_http_sandbox_limit_request(r, ctx->authenticated
                                               ? ctx->key_digest : NULL,
                                            &ctx->out->user,
                                            &ctx->key.limits, &limit,
                                            &ctx->message);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->out->limit = limit;

        if (rc == NGX_DECLINED) {
            ctx->status = NGX_HTTP_TOO_MANY_REQUESTS;
            ctx->error = "Too Many Requests";
        }
    }

    if (ctx->status == NGX_OK && ctx->out->woken) {
        ngx_http_sandbox_metrics_inc(
                               requests[NGX_HTTP_SANDBOX_DECISION_WOKEN]);

    } else {
        ngx_http_sandbox_metrics_decision(ctx->status, ctx->not_ready);
    }

    if (ctx->status == NGX_OK) {
        if (ngx_http_sandbox_forward_headers(r, ctx->out) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_sandbox_forward_rewrite(r, ctx->out);

        /* in flight until the request ends: idle auto-pause reads it */

        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

        if (slcf->activity
            && ngx_http_sandbox_activity_start(r, &ctx->out->user,
                                               &ctx->out->name,
                                               slcf->cache_ttl.last_used)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* a key answered from the cache: its use goes to Redis aside */

        if (ctx->key_used) {
            ngx_http_sandbox_usage_add(ctx->key_digest);
        }

        return NGX_OK;
    }

    if (ctx->status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_sandbox_www_authenticate(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->not_ready) {
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data, "%T", slcf->retry_after)
                       - h->value.data;
    }

    rc = ngx_http_sandbox_send_error(r, ctx->status, ctx->error,
                                     ctx->message);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}
