
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The access phase's decision, from what is known of the key and the
 * route: the shared cache's entries, a held request's release, or a
 * Redis lookup's replies (ngx_http_sandbox_lookup.c).  The handler that
 * asks is ngx_http_sandbox_route.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_decision.h"


static ngx_int_t ngx_http_sandbox_decide_key(ngx_http_sandbox_decision_t *ctx);
static void ngx_http_sandbox_decide_route(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static void ngx_http_sandbox_not_found(ngx_http_sandbox_decision_t *ctx);


/*
 * Answers from the shared cache when it can.  A stale entry (past its TTL,
 * within the grace period) is kept aside for the case Redis fails.
 */

ngx_uint_t
ngx_http_sandbox_from_cache(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf)
{
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (smcf->cache_zone == NULL || !slcf->cache) {
        return 0;
    }

    ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_MISS;

    if (!ctx->authenticated) {
        ctx->route_cached = ngx_http_sandbox_cache_get_route(
                                smcf->cache_zone, r->pool, &ctx->path_user,
                                &ctx->out->name, &ctx->route, &slcf->cache_ttl);

        if (ctx->route_cached != NGX_HTTP_SANDBOX_CACHE_HIT) {
            return 0;
        }

        ngx_http_sandbox_decide_route(r, ctx);
        return 1;
    }

    /* the key and its user's route come together */

    ctx->key_cached = ngx_http_sandbox_cache_get_key(smcf->cache_zone,
                                                     r->pool, ctx->key_digest,
                                                     &ctx->key, &ctx->out->name,
                                                     &ctx->route,
                                                     &ctx->route_cached,
                                                     &slcf->cache_ttl,
                                                     &ctx->key_used);

    if (ctx->key_cached == NGX_HTTP_SANDBOX_CACHE_MISS) {
        return 0;
    }

    /* a refused key, or another user's path, needs no route */

    if (ctx->key_cached == NGX_HTTP_SANDBOX_CACHE_HIT
        && ngx_http_sandbox_decide_key(ctx) != NGX_OK)
    {
        return 1;
    }

    if (ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_HIT
        || ctx->route_cached != NGX_HTTP_SANDBOX_CACHE_HIT)
    {
        return 0;
    }

    ngx_http_sandbox_decide_route(r, ctx);

    return 1;
}


/*
 * A request held until its sandbox woke (ngx_http_sandbox_wait.c) is
 * decided on the route its group's release has just read: one read for
 * the group, none per request.  Only the key is judged again (it may have
 * been revoked while held): from the shared cache when it holds the key,
 * its invalidation keeping it current, else by a lookup as usual.
 */

ngx_uint_t
ngx_http_sandbox_from_release(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_http_sandbox_route_t *route)
{
    ngx_int_t                      rc;
    ngx_str_t                      held;
    ngx_http_sandbox_route_t       cached;
    ngx_http_sandbox_main_conf_t  *smcf;

    /* whose route it is: the user the request was held for */

    held = ctx->out->user;

    ctx->route = *route;
    ctx->route_cached = NGX_HTTP_SANDBOX_CACHE_HIT;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (smcf->cache_zone && slcf->cache) {
        ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_MISS;
    }

    if (!ctx->authenticated) {
        ngx_http_sandbox_decide_route(r, ctx);
        return 1;
    }

    if (smcf->cache_zone == NULL || !slcf->cache) {
        return 0;
    }

    /* the route the cache may hold beside the key is not looked at */

    ctx->key_cached = ngx_http_sandbox_cache_get_key(smcf->cache_zone,
                                                     r->pool, ctx->key_digest,
                                                     &ctx->key, &ctx->out->name,
                                                     &cached, &rc,
                                                     &slcf->cache_ttl,
                                                     &ctx->key_used);

    if (ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_HIT) {
        return 0;
    }

    ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_HIT;

    if (ngx_http_sandbox_decide_key(ctx) != NGX_OK) {
        return 1;
    }

    /* /proxy/ finds its user by the key: another one, and Redis decides */

    if (ctx->out->user.len != held.len
        || ngx_strncmp(ctx->out->user.data, held.data, held.len) != 0)
    {
        return 0;
    }

    ngx_http_sandbox_decide_route(r, ctx);

    return 1;
}


void
ngx_http_sandbox_decide(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    if (ctx->authenticated && ngx_http_sandbox_decide_key(ctx) != NGX_OK) {
        return;
    }

    ngx_http_sandbox_decide_route(r, ctx);
}


static ngx_int_t
ngx_http_sandbox_decide_key(ngx_http_sandbox_decision_t *ctx)
{
    ngx_int_t                rc;
    const char              *message;
    ngx_http_sandbox_key_t  *key;

    key = &ctx->key;

    rc = ngx_http_sandbox_auth_key(key, &message);

    if (rc != NGX_OK) {
        ngx_http_sandbox_deny(ctx, rc, "Unauthorized", message);
        return NGX_DECLINED;
    }

    ctx->out->user = key->user;
    ctx->out->key_id = key->id;

    /* another user's sandbox looks exactly like a missing one */

    if (ctx->form == SBX_FORM_USER
        && (ctx->out->user.len != ctx->path_user.len
            || ngx_strncmp(ctx->out->user.data, ctx->path_user.data,
                           ctx->out->user.len) != 0))
    {
        ngx_http_sandbox_not_found(ctx);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_decide_route(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    ngx_http_sandbox_route_t  *route;

    route = &ctx->route;

    if (!ctx->authenticated) {
        ctx->out->user = ctx->path_user;
    }

    switch (route->state) {

    case NGX_HTTP_SANDBOX_ROUTE_READY:
        break;

    case NGX_HTTP_SANDBOX_ROUTE_PENDING:
        ngx_http_sandbox_not_ready(ctx, "Sandbox service not ready");
        return;

    case NGX_HTTP_SANDBOX_ROUTE_NOT_READY:
        ngx_http_sandbox_not_ready(ctx, "Sandbox not ready");
        return;

    default: /* NGX_HTTP_SANDBOX_ROUTE_NONE */
        ngx_http_sandbox_not_found(ctx);
        return;
    }

    /* IP literals only: a worker never resolves names */

    if (ngx_http_sandbox_forward_addr(ctx->out, &route->addr) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox: route of \"%V/%V\" has an invalid address "
                      "\"%V\"", &ctx->out->user, &ctx->out->name, &route->addr);
        ngx_http_sandbox_not_ready(ctx, "Sandbox service not ready");
        return;
    }

    ctx->out->addr_text = route->addr;
    ctx->status = NGX_OK;
}


void
ngx_http_sandbox_deny(ngx_http_sandbox_decision_t *ctx, ngx_int_t status,
    const char *error, const char *message)
{
    ctx->status = status;
    ctx->error = error;
    ctx->message = message;
}


void
ngx_http_sandbox_not_ready(ngx_http_sandbox_decision_t *ctx,
    const char *message)
{
    ngx_http_sandbox_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                          "Service Unavailable", message);
    ctx->not_ready = 1;
}


static void
ngx_http_sandbox_not_found(ngx_http_sandbox_decision_t *ctx)
{
    /*
     * /proxy/ keeps the original proxy's 403, which real clients depend on;
     * either way the answer never depends on whether the sandbox exists
     */

    if (ctx->form == SBX_FORM_PROXY) {
        ngx_http_sandbox_deny(ctx, NGX_HTTP_FORBIDDEN, "Forbidden",
                              "You do not have access to this sandbox");

    } else {
        ngx_http_sandbox_deny(ctx, NGX_HTTP_NOT_FOUND, "Not Found",
                              "Sandbox not found");
    }
}
