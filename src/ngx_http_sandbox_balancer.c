
/*
 * Copyright (C) The sandbox gateway authors
 *
 * "sandbox_balancer" in an upstream{} block: the peer of each request is
 * the pod address the access phase found.  Because the peer is chosen
 * through the upstream machinery, nginx's stock "keepalive" (placed after
 * this directive) pools connections to pods by address.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


static ngx_int_t ngx_http_sandbox_balancer_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_sandbox_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_sandbox_balancer_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_sandbox_balancer_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);


char *
ngx_http_sandbox_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_url_t                      u;
    ngx_http_upstream_server_t    *us;
    ngx_http_upstream_srv_conf_t  *uscf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    /* upstream{} insists on a server: add a placeholder nobody dials */

    if (uscf->servers->nelts == 0) {
        ngx_memzero(&u, sizeof(ngx_url_t));
        ngx_str_set(&u.url, "0.0.0.1:1");
        u.default_port = 1;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));

        us->addrs = u.addrs;
        us->naddrs = u.naddrs;
        us->weight = 1;
    }

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_sandbox_balancer_init;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sandbox_balancer_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    /* "server" lines are placeholders: every peer comes from a route */

    us->peer.init = ngx_http_sandbox_balancer_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_sandbox_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_sandbox_module);

    if (ctx == NULL || ctx->addr == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox: upstream \"%V\" used without a sandbox "
                      "route (is \"sandbox_route on\" set here?)",
                      &us->host);
        return NGX_ERROR;
    }

    r->upstream->peer.data = ctx;
    r->upstream->peer.get = ngx_http_sandbox_balancer_get_peer;
    r->upstream->peer.free = ngx_http_sandbox_balancer_free_peer;
    r->upstream->peer.tries = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_balancer_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_sandbox_ctx_t *ctx = data;

    pc->sockaddr = ctx->addr->sockaddr;
    pc->socklen = ctx->addr->socklen;
    pc->name = &ctx->addr_text;
    pc->cached = 0;
    pc->connection = NULL;

    return NGX_OK;
}


static void
ngx_http_sandbox_balancer_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_sandbox_ctx_t *ctx = data;

    ngx_http_sandbox_main_conf_t  *smcf;

    pc->tries = 0;

    /* pods move: a failed route is asked of Redis again, not of the cache */

    if ((state & NGX_PEER_FAILED) && ctx->user.len) {
        smcf = ngx_http_cycle_get_module_main_conf((ngx_cycle_t *) ngx_cycle,
                                                   ngx_http_sandbox_module);

        if (smcf->cache_zone) {
            ngx_http_sandbox_cache_drop_route(smcf->cache_zone, &ctx->user,
                                              &ctx->name);
        }
    }
}
