
/*
 * Copyright (C) The sandbox gateway authors
 *
 * ngx_http_sandbox_module: an nginx-native gateway for AI-agent sandboxes.
 *
 * This file holds the module definition, its directives, configuration,
 * variables and process hooks; each concern lives in src/:
 *
 *   sandbox_path.c, sandbox_token.c   pure parsers (no nginx headers)
 *   ngx_http_sandbox_redis.c          the non-blocking Redis client: links
 *   ngx_http_sandbox_redis_io.c       ... and their traffic
 *   ngx_http_sandbox_sentinel.c       the master Redis Sentinel names
 *   ngx_http_sandbox_auth.c           bearer keys, digests, the admin key
 *   ngx_http_sandbox_route.c          the access phase: auth and routing
 *   ngx_http_sandbox_lookup.c         ... its Redis lookup when uncached
 *   ngx_http_sandbox_wake.c           waking a suspended sandbox
 *   ngx_http_sandbox_wait.c           requests held until a route is ready
 *   ngx_http_sandbox_balancer.c       per-request peer for upstream{}
 *   ngx_http_sandbox_cache.c          the shared-memory cache
 *   ngx_http_sandbox_events.c         invalidations from Redis pub/sub
 *   ngx_http_sandbox_status.c         counters as JSON
 *   ngx_http_sandbox_metrics.c        counters for Prometheus
 *   ngx_http_sandbox_json.c           JSON answers and error pages
 *   ngx_http_sandbox_api.c            the management and admin API
 *   ngx_http_sandbox_limit*.c         rate and concurrency limits
 *   ngx_http_sandbox_guard.c          its guards: admin key failures, rates
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_wait.h"


static ngx_int_t ngx_http_sandbox_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_sandbox_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_http_sandbox_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sandbox_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sandbox_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sandbox_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_sandbox_redis_addr(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sandbox_redis_sentinel(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_sandbox_parse_addr(ngx_conf_t *cf, ngx_str_t *url,
    in_port_t port, ngx_addr_t **addr);
static char *ngx_http_sandbox_content(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sandbox_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_sandbox_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sandbox_init_process(ngx_cycle_t *cycle);
static void ngx_http_sandbox_exit_process(ngx_cycle_t *cycle);
static void ngx_http_sandbox_exit_master(ngx_cycle_t *cycle);


ngx_http_sandbox_redis_t     *ngx_http_sandbox_worker_redis;
ngx_http_sandbox_sentinel_t  *ngx_http_sandbox_worker_sentinel;


static ngx_command_t  ngx_http_sandbox_commands[] = {

    { ngx_string("sandbox_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sandbox_redis_addr,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_redis_sentinel"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_sandbox_redis_sentinel,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_redis_password"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sandbox_main_conf_t, redis_password),
      NULL },

    { ngx_string("sandbox_redis_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sandbox_main_conf_t, redis_connect_timeout),
      NULL },

    { ngx_string("sandbox_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sandbox_main_conf_t, redis_timeout),
      NULL },

    { ngx_string("sandbox_admin_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sandbox_admin_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_admin_auth_failures"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_sandbox_guard_admin_failures,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sandbox_main_conf_t, guard),
      NULL },

    { ngx_string("sandbox_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sandbox_cache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, cache),
      NULL },

    { ngx_string("sandbox_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, cache_ttl.ttl),
      NULL },

    { ngx_string("sandbox_cache_negative_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, cache_ttl.negative_ttl),
      NULL },

    { ngx_string("sandbox_cache_grace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, cache_ttl.grace),
      NULL },

    { ngx_string("sandbox_last_used_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, cache_ttl.last_used),
      NULL },

    { ngx_string("sandbox_activity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, activity),
      NULL },

    { ngx_string("sandbox_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sandbox_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      2,
      NULL },

    { ngx_string("sandbox_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sandbox_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      3,
      NULL },

    { ngx_string("sandbox_route"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, route),
      NULL },

    { ngx_string("sandbox_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, auth),
      NULL },

    { ngx_string("sandbox_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, retry_after),
      NULL },

    { ngx_string("sandbox_sync_max_lag"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, sync_max_lag),
      NULL },

    { ngx_string("sandbox_error"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sandbox_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sandbox_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("sandbox_agentkernel_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_sandbox_agentkernel_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_wake"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, wake),
      NULL },

    { ngx_string("sandbox_wake_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, wake_timeout),
      NULL },

    { ngx_string("sandbox_wake_max_held"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, wake_max_held),
      NULL },

    { ngx_string("sandbox_quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, quota),
      NULL },

    { ngx_string("sandbox_audit_maxlen"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, audit_maxlen),
      NULL },

    { ngx_string("sandbox_default_image"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, default_image),
      NULL },

    { ngx_string("sandbox_namespace_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, namespace_prefix),
      NULL },

    { ngx_string("sandbox_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sandbox_limit_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_limit_scope"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_sandbox_limit_scope,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sandbox_limit_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_sandbox_limit_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, limit),
      NULL },

    { ngx_string("sandbox_limit_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_sandbox_limit_concurrency,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, limit),
      NULL },

    { ngx_string("sandbox_api_create_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_sandbox_guard_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, create_rate),
      NULL },

    { ngx_string("sandbox_api_key_create_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_sandbox_guard_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sandbox_loc_conf_t, key_create_rate),
      NULL },

    { ngx_string("sandbox_balancer"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_sandbox_balancer,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sandbox_module_ctx = {
    ngx_http_sandbox_add_variables,        /* preconfiguration */
    ngx_http_sandbox_init,                 /* postconfiguration */

    ngx_http_sandbox_create_main_conf,     /* create main configuration */
    ngx_http_sandbox_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sandbox_create_loc_conf,      /* create location configuration */
    ngx_http_sandbox_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_sandbox_module = {
    NGX_MODULE_V1,
    &ngx_http_sandbox_module_ctx,          /* module context */
    ngx_http_sandbox_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_sandbox_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_sandbox_exit_process,         /* exit process */
    ngx_http_sandbox_exit_master,          /* exit master */
    NGX_MODULE_V1_PADDING
};


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


static ngx_int_t
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


static void *
ngx_http_sandbox_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->redis_addr = NULL;
     *     smcf->redis_sentinel = NULL;
     *     smcf->redis_password = { 0, NULL };
     *     smcf->admin_key_file = { 0, NULL };
     */

    smcf->redis_connect_timeout = NGX_CONF_UNSET_MSEC;
    smcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    smcf->admin_key_set = NGX_CONF_UNSET;
    smcf->guard.max = NGX_CONF_UNSET_UINT;
    smcf->guard.window = NGX_CONF_UNSET_MSEC;

    return smcf;
}


static char *
ngx_http_sandbox_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ngx_conf_init_msec_value(smcf->redis_connect_timeout, 1000);
    ngx_conf_init_msec_value(smcf->redis_timeout, 1000);
    ngx_conf_init_value(smcf->admin_key_set, 0);

    if (ngx_http_sandbox_guard_init_conf(cf, &smcf->guard,
                                         smcf->admin_key_set)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* metrics always exist, with or without a cache zone */

    if (ngx_http_sandbox_metrics_zone_add(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_sandbox_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->default_image = { 0, NULL };
     *     slcf->namespace_prefix = { 0, NULL };
     *     slcf->agentkernel = NULL;
     */

    slcf->route = NGX_CONF_UNSET;
    slcf->auth = NGX_CONF_UNSET;
    slcf->retry_after = NGX_CONF_UNSET;
    slcf->sync_max_lag = NGX_CONF_UNSET_MSEC;
    slcf->cache = NGX_CONF_UNSET;
    slcf->activity = NGX_CONF_UNSET;
    slcf->cache_ttl.ttl = NGX_CONF_UNSET_MSEC;
    slcf->cache_ttl.negative_ttl = NGX_CONF_UNSET_MSEC;
    slcf->cache_ttl.grace = NGX_CONF_UNSET_MSEC;
    slcf->cache_ttl.last_used = NGX_CONF_UNSET_MSEC;
    slcf->wake = NGX_CONF_UNSET;
    slcf->wake_timeout = NGX_CONF_UNSET_MSEC;
    slcf->wake_max_held = NGX_CONF_UNSET_UINT;
    slcf->quota = NGX_CONF_UNSET_UINT;
    slcf->audit_maxlen = NGX_CONF_UNSET_UINT;
    ngx_http_sandbox_limit_conf_init(&slcf->limit);
    slcf->create_rate.interval = NGX_CONF_UNSET_UINT;
    slcf->key_create_rate.interval = NGX_CONF_UNSET_UINT;

    return slcf;
}


static char *
ngx_http_sandbox_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_sandbox_loc_conf_t *prev = parent;
    ngx_http_sandbox_loc_conf_t *conf = child;

    ngx_http_sandbox_main_conf_t  *smcf;

    ngx_conf_merge_value(conf->route, prev->route, 0);
    ngx_conf_merge_value(conf->auth, prev->auth, 1);
    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after, 5);
    ngx_conf_merge_msec_value(conf->sync_max_lag, prev->sync_max_lag, 10000);
    ngx_conf_merge_value(conf->cache, prev->cache, 1);
    ngx_conf_merge_value(conf->activity, prev->activity, 1);
    /* invalidation is pushed: the TTL only bounds a lost message */

    ngx_conf_merge_msec_value(conf->cache_ttl.ttl, prev->cache_ttl.ttl,
                              300000);
    ngx_conf_merge_msec_value(conf->cache_ttl.negative_ttl,
                              prev->cache_ttl.negative_ttl, 5000);

    /*
     * no grace by default: past its TTL an entry is only as good as Redis
     * says, so a revocation whose message was lost is bounded by the TTL
     */

    ngx_conf_merge_msec_value(conf->cache_ttl.grace, prev->cache_ttl.grace,
                              0);
    ngx_conf_merge_msec_value(conf->cache_ttl.last_used,
                              prev->cache_ttl.last_used, 60000);

    ngx_conf_merge_value(conf->wake, prev->wake, 1);
    ngx_conf_merge_msec_value(conf->wake_timeout, prev->wake_timeout, 60000);
    ngx_conf_merge_uint_value(conf->wake_max_held, prev->wake_max_held,
                              1024);
    ngx_conf_merge_uint_value(conf->quota, prev->quota, 20);
    ngx_conf_merge_uint_value(conf->audit_maxlen, prev->audit_maxlen, 100000);
    ngx_conf_merge_str_value(conf->default_image, prev->default_image,
                             "ghcr.io/agent-infra/sandbox:latest");
    ngx_conf_merge_str_value(conf->namespace_prefix, prev->namespace_prefix,
                             "user-");
    ngx_http_sandbox_limit_conf_merge(&conf->limit, &prev->limit);

    /* creations per user: sandboxes 1r/s burst=20, keys 1r/s burst=100 */

    ngx_http_sandbox_guard_merge_rate(&conf->create_rate, &prev->create_rate,
                                      1000000, 20);
    ngx_http_sandbox_guard_merge_rate(&conf->key_create_rate,
                                      &prev->key_create_rate, 1000000, 100);

    if (conf->wake_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sandbox_wake_timeout\" must be more than 0");
        return NGX_CONF_ERROR;
    }

    if (conf->audit_maxlen == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sandbox_audit_maxlen\" must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (conf->cache_ttl.grace > NGX_HTTP_SANDBOX_CACHE_GRACE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sandbox_cache_grace\" cannot exceed 1h");
        return NGX_CONF_ERROR;
    }

    /* whole seconds, as last_used_at is; at most a day, so 32 bits hold */

    if (conf->cache_ttl.last_used < 1000
        || conf->cache_ttl.last_used > 86400000
        || conf->cache_ttl.last_used % 1000)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sandbox_last_used_interval\" must be whole "
                           "seconds from 1s to 1d");
        return NGX_CONF_ERROR;
    }

    if (conf->route) {
        smcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_sandbox_module);

        if (smcf->redis_addr == NULL && smcf->redis_sentinel == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"sandbox_route\" requires \"sandbox_redis\"");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sandbox_redis_addr(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->redis_addr || smcf->redis_sentinel) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_sandbox_parse_addr(cf, &value[1], 6379, &smcf->redis_addr)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* sandbox_redis_sentinel <master name> <address> ... */

static char *
ngx_http_sandbox_redis_sentinel(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_addr_t                        *addr, *slot;
    ngx_http_sandbox_sentinel_conf_t  *sc;

    if (smcf->redis_addr || smcf->redis_sentinel) {
        return "is duplicate";
    }

    sc = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_sentinel_conf_t));
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&sc->addrs, cf->pool, cf->args->nelts - 2,
                       sizeof(ngx_addr_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    sc->name = value[1];

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_http_sandbox_parse_addr(cf, &value[i], 26379, &addr)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (addr->sockaddr->sa_family == AF_UNIX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a sentinel is reached over TCP, not \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        slot = ngx_array_push(&sc->addrs);
        if (slot == NULL) {
            return NGX_CONF_ERROR;
        }

        *slot = *addr;
    }

    smcf->redis_sentinel = sc;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sandbox_parse_addr(ngx_conf_t *cf, ngx_str_t *url, in_port_t port,
    ngx_addr_t **addr)
{
    ngx_url_t   u;
    ngx_str_t  *value;

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *url;
    u.default_port = port;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in \"%V\" of the \"%V\" directive",
                               u.err, &u.url, &value[0]);
        }

        return NGX_ERROR;
    }

    /* workers must never resolve names: IP literals and unix: paths only */

    if (u.naddrs == 0 || u.addrs == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs an IP address or a "
                           "unix: path, not \"%V\"",
                           &value[0], &u.url);
        return NGX_ERROR;
    }

    *addr = &u.addrs[0];

    return NGX_OK;
}


/*
 * sandbox_error, sandbox_api, sandbox_status, sandbox_metrics: the
 * location's handler
 */

static ngx_http_handler_pt  ngx_http_sandbox_content_handlers[] = {
    ngx_http_sandbox_error_handler,
    ngx_http_sandbox_api_handler,
    ngx_http_sandbox_status_handler,
    ngx_http_sandbox_metrics_handler
};


static char *
ngx_http_sandbox_content(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sandbox_content_handlers[cmd->offset];

    return NGX_CONF_OK;
}


/*
 * A zone's "name:size" argument, at least min_pages pages: NGX_OK, or
 * NGX_ERROR once said
 */

ngx_int_t
ngx_http_sandbox_zone_arg(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_uint_t min_pages, ngx_str_t *name, ssize_t *size)
{
    u_char     *p;
    ngx_str_t   s;

    p = (u_char *) ngx_strchr(arg->data, ':');

    if (p == NULL || p == arg->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected name:size", arg);
        return NGX_ERROR;
    }

    name->data = arg->data;
    name->len = p - arg->data;

    s.data = p + 1;
    s.len = arg->data + arg->len - s.data;

    *size = ngx_parse_size(&s);

    if (*size == NGX_ERROR || *size < (ssize_t) (min_pages * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" needs a size of at least %uz",
                           arg, min_pages * ngx_pagesize);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_http_sandbox_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ssize_t     size;
    ngx_str_t  *value, name;

    if (smcf->cache_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_sandbox_zone_arg(cf, &value[1], 8, &name, &size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->cache_zone = ngx_http_sandbox_cache_zone_add(cf, &name, size);
    if (smcf->cache_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sandbox_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sandbox_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sandbox_metrics_log_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_main_conf_t   *smcf;
    ngx_http_sandbox_redis_conf_t   rc;

    ngx_http_sandbox_request_id_init();

    /* cache manager and loader processes serve no requests */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_http_sandbox_limit_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sandbox_module);

    if (smcf == NULL
        || (smcf->redis_addr == NULL && smcf->redis_sentinel == NULL))
    {
        return NGX_OK;
    }

    ngx_memzero(&rc, sizeof(ngx_http_sandbox_redis_conf_t));

    rc.addr = smcf->redis_addr;
    rc.password = smcf->redis_password;
    rc.connect_timeout = smcf->redis_connect_timeout;
    rc.timeout = smcf->redis_timeout;

    rc.stats = ngx_http_sandbox_metrics ? &ngx_http_sandbox_metrics->redis
                                        : NULL;

    if (smcf->redis_sentinel) {
        ngx_http_sandbox_worker_sentinel = ngx_http_sandbox_sentinel_create(
                                          smcf->redis_sentinel, &rc,
                                          cycle->log);
        if (ngx_http_sandbox_worker_sentinel == NULL) {
            return NGX_ERROR;
        }

        rc.sentinel = ngx_http_sandbox_worker_sentinel;
    }

    ngx_http_sandbox_worker_redis = ngx_http_sandbox_redis_create(&rc,
                                                                  cycle->log);
    if (ngx_http_sandbox_worker_redis == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_sandbox_usage_init(cycle) != NGX_OK
        || ngx_http_sandbox_wait_init(cycle) != NGX_OK
        || ngx_http_sandbox_activity_init(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_sandbox_events_init(cycle, smcf);
}


static void
ngx_http_sandbox_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_limit_exit_process(cycle);
    ngx_http_sandbox_events_exit();
    ngx_http_sandbox_wait_exit();
    ngx_http_sandbox_usage_exit();
    ngx_http_sandbox_activity_exit();
    ngx_http_sandbox_sha256_cleanup();

    ngx_http_sandbox_redis_destroy(ngx_http_sandbox_worker_redis);
    ngx_http_sandbox_worker_redis = NULL;

    /* after its followers: they unfollow as they go */

    ngx_http_sandbox_sentinel_destroy(ngx_http_sandbox_worker_sentinel);
    ngx_http_sandbox_worker_sentinel = NULL;
}


static void
ngx_http_sandbox_exit_master(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_sha256_cleanup();
}
