
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Counters of the whole nginx instance for "sandbox_metrics": a small
 * shared zone that exists whenever the module is configured, so metrics
 * work without a cache zone.  Every update is one atomic addition.
 */


#ifndef _NGX_HTTP_SANDBOX_METRICS_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_redis.h"


/* what the access phase decided; labels of sandbox_requests_total */
typedef enum {
    NGX_HTTP_SANDBOX_DECISION_OK = 0,
    NGX_HTTP_SANDBOX_DECISION_BAD_REQUEST,
    NGX_HTTP_SANDBOX_DECISION_UNAUTHORIZED,
    NGX_HTTP_SANDBOX_DECISION_NOT_FOUND,
    NGX_HTTP_SANDBOX_DECISION_NOT_READY,
    NGX_HTTP_SANDBOX_DECISION_UNAVAILABLE,
    NGX_HTTP_SANDBOX_DECISION_ERROR,
    NGX_HTTP_SANDBOX_DECISION_WOKEN,    /* held, then forwarded */
    NGX_HTTP_SANDBOX_DECISION_LIMITED,
    NGX_HTTP_SANDBOX_DECISIONS
} ngx_http_sandbox_decision_e;


/* upstream status classes: none (no response), 1xx ... 5xx */
#define NGX_HTTP_SANDBOX_STATUS_CLASSES  6


typedef struct {
    ngx_atomic_t                    requests[NGX_HTTP_SANDBOX_DECISIONS];

    ngx_atomic_t                    upstream_status[
                                        NGX_HTTP_SANDBOX_STATUS_CLASSES];
    ngx_atomic_t                    upstream_time[
                                        NGX_HTTP_SANDBOX_LATENCY_BUCKETS];
    ngx_atomic_t                    upstream_time_total;    /* ms */
    ngx_atomic_t                    upstream_active;
    ngx_atomic_t                    pool_hits;
    ngx_atomic_t                    pool_misses;
    ngx_atomic_t                    wake_held;      /* held requests now */

    ngx_http_sandbox_redis_stats_t  redis;      /* all workers' lookups */
} ngx_http_sandbox_metrics_t;


/* the zone's counters; NULL until the zone is mapped */
extern ngx_http_sandbox_metrics_t  *ngx_http_sandbox_metrics;


#define ngx_http_sandbox_metrics_inc(field)                                   \
    do {                                                                      \
        if (ngx_http_sandbox_metrics) {                                       \
            (void) ngx_atomic_fetch_add(&ngx_http_sandbox_metrics->field, 1); \
        }                                                                     \
    } while (0)

#define ngx_http_sandbox_metrics_dec(field)                                   \
    do {                                                                      \
        if (ngx_http_sandbox_metrics) {                                       \
            (void) ngx_atomic_fetch_add(&ngx_http_sandbox_metrics->field,     \
                                        (ngx_atomic_int_t) -1);               \
        }                                                                     \
    } while (0)


ngx_int_t ngx_http_sandbox_metrics_zone_add(ngx_conf_t *cf);
void ngx_http_sandbox_metrics_decision(ngx_int_t status,
    ngx_uint_t not_ready);
ngx_int_t ngx_http_sandbox_metrics_log_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sandbox_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_SANDBOX_METRICS_H_INCLUDED_ */
