
/*
 * Copyright (C) The sandbox gateway authors
 *
 * ngx_http_sandbox_module: an nginx-native gateway for AI-agent sandboxes.
 *
 * This file holds the module definition, its directive table and its
 * configuration's create and merge; each other concern lives in src/:
 *
 *   ngx_http_sandbox_directives.c     setters: Redis, content, cache zone
 *   ngx_http_sandbox_variables.c      the request context, $sandbox_*
 *   ngx_http_sandbox_process.c        phase handlers, worker start, exit
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


static void *ngx_http_sandbox_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sandbox_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sandbox_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sandbox_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


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
