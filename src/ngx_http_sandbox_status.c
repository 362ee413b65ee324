
/*
 * Copyright (C) The sandbox gateway authors
 *
 * "sandbox_status": cache and Redis counters of the whole nginx instance
 * (they live in the shared zone) as JSON, for operators and benchmarks.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


static json_t *ngx_http_sandbox_status_cache(ngx_shm_zone_t *zone);
static json_t *ngx_http_sandbox_status_redis(
    ngx_http_sandbox_redis_stats_t *st);


ngx_int_t
ngx_http_sandbox_status_handler(ngx_http_request_t *r)
{
    json_t                        *body, *cache, *redis;
    ngx_http_sandbox_main_conf_t  *smcf;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_http_sandbox_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                           "Method Not Allowed",
                                           "Use GET");
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    cache = json_null();
    redis = json_null();

    if (smcf->cache_zone) {
        cache = ngx_http_sandbox_status_cache(smcf->cache_zone);
    }

    if (ngx_http_sandbox_worker_redis && ngx_http_sandbox_metrics) {
        redis = ngx_http_sandbox_status_redis(&ngx_http_sandbox_metrics->redis);
    }

    body = json_pack("{so so* so sb}",
                     "cache", cache ? cache : json_null(),
                     "limits", ngx_http_sandbox_limit_status((ngx_cycle_t *) ngx_cycle),
                     "redis", redis ? redis : json_null(),
                     "redis_connected",
                     ngx_http_sandbox_redis_ready(
                                               ngx_http_sandbox_worker_redis)
                     ? 1 : 0);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.last_modified_time = -1;

    return ngx_http_sandbox_send_json(r, NGX_HTTP_OK, body);
}


static json_t *
ngx_http_sandbox_status_cache(ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_stats_t  *st;

    st = ngx_http_sandbox_cache_stats(zone);

    return json_pack("{sI sI sI sI sI sI sI sI sI sI}",
                     "size", (json_int_t) ngx_http_sandbox_cache_size(zone),
                     "used", (json_int_t) ngx_http_sandbox_cache_used(zone),
                     "entries", (json_int_t) st->entries,
                     "hits", (json_int_t) st->hits,
                     "misses", (json_int_t) st->misses,
                     "stale", (json_int_t) st->stale,
                     "evictions", (json_int_t) st->evictions,
                     "invalidations", (json_int_t) st->invalidations,
                     "flushes", (json_int_t) st->flushes,
                     "generation",
                     (json_int_t) ngx_http_sandbox_cache_generation(zone));
}


static json_t *
ngx_http_sandbox_status_redis(ngx_http_sandbox_redis_stats_t *st)
{
    double  avg;

    avg = st->replies ? (double) st->latency_total / st->replies : 0.0;

    return json_pack("{sI sI sI sI sf sI}",
                     "commands", (json_int_t) st->commands,
                     "replies", (json_int_t) st->replies,
                     "failures", (json_int_t) st->failures,
                     "connects", (json_int_t) st->connects,
                     "latency_avg_ms", avg,
                     "latency_max_ms", (json_int_t) st->latency_max);
}
