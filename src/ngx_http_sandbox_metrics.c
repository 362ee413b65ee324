
/*
 * Copyright (C) The sandbox gateway authors
 *
 * "sandbox_metrics": the counters of the whole nginx instance in the
 * Prometheus text exposition format (version 0.0.4).  The request path
 * pays one atomic addition per counter it touches; the scrape reads the
 * counters without any lock (the cache's entry count is an atomic, so the
 * cache is never walked) and makes one Redis read, of sbx:sync, to report
 * the sync state /health judges.  No label takes a user, key or sandbox
 * name: cardinality is fixed.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_api.h"
#include "ngx_http_sandbox_metrics.h"
#include "ngx_http_sandbox_shm.h"


#define NGX_HTTP_SANDBOX_METRICS_SIZE  16384


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_sandbox_redis_op_t    *op;
} ngx_http_sandbox_metrics_scrape_t;


static ngx_int_t ngx_http_sandbox_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_sandbox_metrics_reply(void *data, redisReply *reply);
static void ngx_http_sandbox_metrics_cleanup(void *data);
static ngx_int_t ngx_http_sandbox_metrics_send(ngx_http_request_t *r,
    redisReply *reply);
static u_char *ngx_http_sandbox_metrics_sync(ngx_http_request_t *r,
    u_char *p, u_char *last, redisReply *reply);
static u_char *ngx_http_sandbox_metrics_cache(u_char *p, u_char *last,
    ngx_shm_zone_t *zone);
static u_char *ngx_http_sandbox_metrics_redis(u_char *p, u_char *last,
    ngx_http_sandbox_redis_stats_t *st);
static u_char *ngx_http_sandbox_metrics_upstream(u_char *p, u_char *last,
    ngx_http_sandbox_metrics_t *m);
static u_char *ngx_http_sandbox_metrics_counter(u_char *p, u_char *last,
    const char *name, const char *type, const char *help, ngx_atomic_uint_t n);
static u_char *ngx_http_sandbox_metrics_histogram(u_char *p, u_char *last,
    const char *name, const char *help, ngx_atomic_t *buckets,
    ngx_atomic_uint_t total_ms);


ngx_http_sandbox_metrics_t  *ngx_http_sandbox_metrics;


static ngx_msec_t  ngx_http_sandbox_latency_bounds[] = {
    NGX_HTTP_SANDBOX_LATENCY_BOUNDS
};


static const char  *ngx_http_sandbox_decisions[] = {
    "ok", "bad_request", "unauthorized", "not_found", "not_ready",
    "unavailable", "error", "woken", "limited"
};


static const char  *ngx_http_sandbox_status_classes[] = {
    "none", "1xx", "2xx", "3xx", "4xx", "5xx"
};


ngx_int_t
ngx_http_sandbox_metrics_zone_add(ngx_conf_t *cf)
{
    ngx_str_t        name = ngx_string("sandbox_metrics");
    ngx_shm_zone_t  *zone;

    zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                 &ngx_http_sandbox_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_sandbox_metrics_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_uint_t        fresh;
    ngx_slab_pool_t  *shpool;

    /* on reload the counters carry over: Prometheus counters never reset */

    if (data) {
        shm_zone->data = data;
        ngx_http_sandbox_metrics = data;
        return NGX_OK;
    }

    ngx_http_sandbox_metrics = ngx_http_sandbox_shm_init(shm_zone,
                                           sizeof(ngx_http_sandbox_metrics_t),
                                           &shpool, &fresh);
    if (ngx_http_sandbox_metrics == NULL) {
        return NGX_ERROR;
    }

    shm_zone->data = ngx_http_sandbox_metrics;

    return NGX_OK;
}


ngx_uint_t
ngx_http_sandbox_latency_bucket(ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_SANDBOX_LATENCY_BUCKETS - 1; i++) {
        if (ms <= ngx_http_sandbox_latency_bounds[i]) {
            return i;
        }
    }

    return NGX_HTTP_SANDBOX_LATENCY_BUCKETS - 1;
}


void
ngx_http_sandbox_metrics_decision(ngx_int_t status, ngx_uint_t not_ready)
{
    ngx_http_sandbox_decision_e  d;

    switch (status) {

    case NGX_OK:
        d = NGX_HTTP_SANDBOX_DECISION_OK;
        break;

    case NGX_HTTP_BAD_REQUEST:
        d = NGX_HTTP_SANDBOX_DECISION_BAD_REQUEST;
        break;

    case NGX_HTTP_UNAUTHORIZED:
        d = NGX_HTTP_SANDBOX_DECISION_UNAUTHORIZED;
        break;

    /* /proxy/'s 403 means what 404 means on the other form */
    case NGX_HTTP_FORBIDDEN:
    case NGX_HTTP_NOT_FOUND:
        d = NGX_HTTP_SANDBOX_DECISION_NOT_FOUND;
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        d = not_ready ? NGX_HTTP_SANDBOX_DECISION_NOT_READY
                      : NGX_HTTP_SANDBOX_DECISION_UNAVAILABLE;
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        d = NGX_HTTP_SANDBOX_DECISION_LIMITED;
        break;

    default:
        d = NGX_HTTP_SANDBOX_DECISION_ERROR;
        break;
    }

    ngx_http_sandbox_metrics_inc(requests[d]);
}


/*
 * Log phase: what the sandbox answered, and how fast, for each attempt of
 * a data-plane request.  The request context is gone after an error_page
 * redirect (a 502 say), so the request is known by its upstream{} block.
 */

ngx_int_t
ngx_http_sandbox_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                  i, c;
    ngx_http_upstream_t        *u;
    ngx_http_upstream_state_t  *state;

    u = r->upstream;

    if (u == NULL || ngx_http_sandbox_metrics == NULL
        || !ngx_http_sandbox_balancer_is(r, u)
        || r->upstream_states == NULL)
    {
        return NGX_OK;
    }

    state = r->upstream_states->elts;

    for (i = 0; i < r->upstream_states->nelts; i++) {

        if (state[i].peer == NULL) {
            continue;                   /* not an attempt: an error_page */
        }

        c = (state[i].status >= 100 && state[i].status < 600)
            ? state[i].status / 100 : 0;

        ngx_http_sandbox_metrics_inc(upstream_status[c]);

        if (state[i].response_time == (ngx_msec_t) -1) {
            continue;
        }

        ngx_http_sandbox_metrics_inc(
            upstream_time[ngx_http_sandbox_latency_bucket(
                                                  state[i].response_time)]);
        (void) ngx_atomic_fetch_add(
                             &ngx_http_sandbox_metrics->upstream_time_total,
                             state[i].response_time);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_sandbox_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_http_cleanup_t                 *cln;
    ngx_http_sandbox_metrics_scrape_t  *sc;
    static const char                  *argv[] = { "HGETALL", "sbx:sync" };
    static const size_t                 argvlen[] = { 7, 8 };

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_http_sandbox_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                           "Method Not Allowed", "Use GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_sandbox_worker_redis == NULL) {
        return ngx_http_sandbox_metrics_send(r, NULL);
    }

    cln = ngx_http_cleanup_add(r, sizeof(ngx_http_sandbox_metrics_scrape_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sc = cln->data;
    sc->request = r;

    sc->op = ngx_http_sandbox_redis_command(ngx_http_sandbox_worker_redis, 2,
                                            argv, argvlen,
                                            ngx_http_sandbox_metrics_reply,
                                            sc);
    if (sc->op == NULL) {
        return ngx_http_sandbox_metrics_send(r, NULL);
    }

    cln->handler = ngx_http_sandbox_metrics_cleanup;

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_sandbox_metrics_cleanup(void *data)
{
    ngx_http_sandbox_metrics_scrape_t *sc = data;

    if (sc->op) {
        ngx_http_sandbox_redis_cancel(sc->op);
        sc->op = NULL;
    }
}


static void
ngx_http_sandbox_metrics_reply(void *data, redisReply *reply)
{
    ngx_http_sandbox_metrics_scrape_t *sc = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = sc->request;
    c = r->connection;
    sc->op = NULL;

    ngx_http_finalize_request(r, ngx_http_sandbox_metrics_send(r, reply));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_sandbox_metrics_send(ngx_http_request_t *r, redisReply *reply)
{
    u_char                        *p, *last;
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_chain_t                    out;
    ngx_http_sandbox_metrics_t    *m;
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);
    m = ngx_http_sandbox_metrics;

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_SANDBOX_METRICS_SIZE);
    if (b == NULL || m == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->pos;
    last = b->end;

    p = ngx_http_sandbox_metrics_upstream(p, last, m);

    if (smcf->cache_zone) {
        p = ngx_http_sandbox_metrics_cache(p, last, smcf->cache_zone);
    }

    if (ngx_http_sandbox_worker_redis) {
        p = ngx_http_sandbox_metrics_redis(p, last, &m->redis);
        p = ngx_http_sandbox_metrics_sync(r, p, last, reply);
    }

    if (p == last) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sandbox: metrics do not fit in %uz bytes",
                      (size_t) NGX_HTTP_SANDBOX_METRICS_SIZE);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.last_modified_time = -1;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_sandbox_metrics_upstream(u_char *p, u_char *last,
    ngx_http_sandbox_metrics_t *m)
{
    ngx_uint_t  i;

    p = ngx_slprintf(p, last,
            "# HELP sandbox_requests_total Data-plane requests by the "
            "gateway's decision.\n"
            "# TYPE sandbox_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_SANDBOX_DECISIONS; i++) {
        p = ngx_slprintf(p, last, "sandbox_requests_total{decision=\"%s\"} "
                         "%uA\n", ngx_http_sandbox_decisions[i],
                         m->requests[i]);
    }

    p = ngx_slprintf(p, last,
            "# HELP sandbox_upstream_responses_total Sandbox responses by "
            "status class (a failed connection counts as the 502 or 504 "
            "it caused; none: no status, the client left first).\n"
            "# TYPE sandbox_upstream_responses_total counter\n");

    for (i = 0; i < NGX_HTTP_SANDBOX_STATUS_CLASSES; i++) {
        p = ngx_slprintf(p, last, "sandbox_upstream_responses_total"
                         "{class=\"%s\"} %uA\n",
                         ngx_http_sandbox_status_classes[i],
                         m->upstream_status[i]);
    }

    p = ngx_http_sandbox_metrics_histogram(p, last,
            "sandbox_upstream_response_seconds",
            "Time from choosing the sandbox to its response's end "
            "(a stream's whole life).",
            m->upstream_time, m->upstream_time_total);

    p = ngx_http_sandbox_metrics_counter(p, last, "sandbox_upstream_active",
            "gauge", "Upstream connections carrying a request now "
            "(open streams included).", m->upstream_active);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_upstream_pool_hits_total", "counter",
            "Requests that reused a pooled connection to their pod.",
            m->pool_hits);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_upstream_pool_misses_total", "counter",
            "Requests that found no pooled connection to their pod.",
            m->pool_misses);
    p = ngx_http_sandbox_metrics_counter(p, last, "sandbox_wake_held",
            "gauge", "Requests held now until their sandbox wakes.",
            m->wake_held);

    return p;
}


static u_char *
ngx_http_sandbox_metrics_cache(u_char *p, u_char *last, ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_stats_t  *st;

    st = ngx_http_sandbox_cache_stats(zone);

    p = ngx_http_sandbox_metrics_counter(p, last, "sandbox_cache_hits_total",
            "counter", "Key and route lookups answered by the cache.",
            st->hits);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_cache_misses_total", "counter",
            "Lookups the cache could not answer.", st->misses);
    p = ngx_http_sandbox_metrics_counter(p, last, "sandbox_cache_stale_total",
            "counter", "Answers from entries past their TTL while Redis "
            "failed.", st->stale);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_cache_evictions_total", "counter",
            "Entries evicted to make room.", st->evictions);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_cache_invalidations_total", "counter",
            "Entries dropped on an invalidation message.",
            st->invalidations);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_cache_flushes_total", "counter",
            "Whole-cache flushes (after a gap in the subscription).",
            st->flushes);
    p = ngx_http_sandbox_metrics_counter(p, last, "sandbox_cache_entries",
            "gauge", "Entries in the cache now.", st->entries);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_cache_size_bytes", "gauge",
            "Size of the cache zone.", ngx_http_sandbox_cache_size(zone));

    return p;
}


static u_char *
ngx_http_sandbox_metrics_redis(u_char *p, u_char *last,
    ngx_http_sandbox_redis_stats_t *st)
{
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_redis_commands_total", "counter",
            "Commands the workers sent to Redis.", st->commands);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_redis_failures_total", "counter",
            "Commands that failed: error replies, timeouts, lost links.",
            st->failures);
    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_redis_connects_total", "counter",
            "Connections (re)established to Redis.", st->connects);

    return ngx_http_sandbox_metrics_histogram(p, last,
            "sandbox_redis_latency_seconds",
            "Redis round trips, from sending a command to its reply.",
            st->latency, st->latency_total);
}


/* the state /health judges, from the HGETALL sbx:sync reply */

static u_char *
ngx_http_sandbox_metrics_sync(ngx_http_request_t *r, u_char *p, u_char *last,
    redisReply *reply)
{
    json_t                       *raw;
    size_t                        i;
    long long                     lag;
    const char                   *state;
    ngx_uint_t                    connected;
    redisReply                   *k, *v;
    ngx_http_sandbox_loc_conf_t  *slcf;
    static const char            *states[] = {
        "unknown", "listing", "stale", "synced", NULL
    };
    const char                  **s;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    connected = (reply && reply->type == REDIS_REPLY_ARRAY);

    raw = json_object();
    lag = -1;
    state = "unknown";

    if (raw && connected) {
        for (i = 0; i + 1 < reply->elements; i += 2) {
            k = reply->element[i];
            v = reply->element[i + 1];

            if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            {
                json_object_set_new(raw, k->str,
                                    json_stringn(v->str, v->len));
            }
        }

        state = ngx_http_sandbox_api_sync_state(raw, slcf->sync_max_lag,
                                                &lag);
    }

    json_decref(raw);

    p = ngx_http_sandbox_metrics_counter(p, last, "sandbox_redis_up",
            "gauge", "1 if this scrape could read Redis.", connected);

    p = ngx_slprintf(p, last,
            "# HELP sandbox_sync_state The route table's sync state as "
            "/health judges it (1 for the current state).\n"
            "# TYPE sandbox_sync_state gauge\n");

    for (s = states; *s; s++) {
        p = ngx_slprintf(p, last, "sandbox_sync_state{state=\"%s\"} %d\n",
                         *s, ngx_strcmp(*s, state) == 0);
    }

    p = ngx_http_sandbox_metrics_counter(p, last,
            "sandbox_sync_routes_trustworthy", "gauge",
            "1 while the route table is synced within "
            "sandbox_sync_max_lag.", ngx_strcmp(state, "synced") == 0);

    if (lag >= 0) {
        p = ngx_slprintf(p, last,
                "# HELP sandbox_sync_lag_seconds How far sandbox-syncd's "
                "view of the cluster is behind now.\n"
                "# TYPE sandbox_sync_lag_seconds gauge\n"
                "sandbox_sync_lag_seconds %L.%03L\n",
                lag / 1000, lag % 1000);
    }

    return p;
}


static u_char *
ngx_http_sandbox_metrics_counter(u_char *p, u_char *last, const char *name,
    const char *type, const char *help, ngx_atomic_uint_t n)
{
    return ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n%s %uA\n",
                        name, help, name, type, name, n);
}


/* buckets are kept apart and summed here, as Prometheus wants them */

static u_char *
ngx_http_sandbox_metrics_histogram(u_char *p, u_char *last, const char *name,
    const char *help, ngx_atomic_t *buckets, ngx_atomic_uint_t total_ms)
{
    ngx_uint_t         i;
    ngx_msec_t         le;
    ngx_atomic_uint_t  n;

    p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s histogram\n",
                     name, help, name);

    n = 0;

    for (i = 0; i < NGX_HTTP_SANDBOX_LATENCY_BUCKETS - 1; i++) {
        n += buckets[i];
        le = ngx_http_sandbox_latency_bounds[i];

        p = ngx_slprintf(p, last, "%s_bucket{le=\"%M.%03M\"} %uA\n",
                         name, le / 1000, le % 1000, n);
    }

    n += buckets[i];

    return ngx_slprintf(p, last,
                        "%s_bucket{le=\"+Inf\"} %uA\n"
                        "%s_sum %uA.%03uA\n"
                        "%s_count %uA\n",
                        name, n, name, total_ms / 1000, total_ms % 1000,
                        name, n);
}
