
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Shared declarations of ngx_http_sandbox_module: configuration, the
 * per-request context, and the entry points each part offers the others.
 */


#ifndef _NGX_HTTP_SANDBOX_MODULE_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "sandbox_path.h"
#include "ngx_http_sandbox_redis.h"
#include "ngx_http_sandbox_cache.h"
#include "ngx_http_sandbox_metrics.h"
#include "ngx_http_sandbox_limit.h"
#include "ngx_http_sandbox_guard.h"


#define NGX_HTTP_SANDBOX_SHA256_LEN      32
#define NGX_HTTP_SANDBOX_SHA256_HEX_LEN  64


typedef struct {
    ngx_addr_t                     *redis_addr;
    ngx_http_sandbox_sentinel_conf_t
                                   *redis_sentinel;
    ngx_str_t                       redis_password;
    ngx_msec_t                      redis_connect_timeout;
    ngx_msec_t                      redis_timeout;

    ngx_str_t                       admin_key_file;
    u_char                          admin_key_hash[
                                        NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    ngx_flag_t                      admin_key_set;
    ngx_http_sandbox_guard_conf_t   guard;      /* failed admin keys */

    ngx_shm_zone_t                 *cache_zone;
    ngx_shm_zone_t                 *limit_zone;
    ngx_msec_t                      limit_sync;     /* 0: local scope */

    /* upstream{} blocks with sandbox_balancer: the data plane's */
    ngx_array_t                    *balancers;
} ngx_http_sandbox_main_conf_t;


typedef struct {
    ngx_flag_t                      route;
    ngx_flag_t                      auth;
    time_t                          retry_after;
    ngx_msec_t                      sync_max_lag;
    ngx_flag_t                      cache;
    ngx_http_sandbox_cache_ttl_t    cache_ttl;
    ngx_flag_t                      activity;   /* for idle auto-pause */

    ngx_flag_t                      wake;
    ngx_msec_t                      wake_timeout;
    ngx_uint_t                      wake_max_held;      /* per worker */

    ngx_uint_t                      quota;
    ngx_uint_t                      audit_maxlen;
    ngx_str_t                       default_image;
    ngx_str_t                       namespace_prefix;

    ngx_http_sandbox_limit_conf_t   limit;
    ngx_http_sandbox_rate_t         create_rate;
    ngx_http_sandbox_rate_t         key_create_rate;

    void                           *agentkernel;    /* its own location */
} ngx_http_sandbox_loc_conf_t;


/*
 * Each kind of handler keeps its own request context in the module's slot,
 * and each context begins with its kind.  Contexts are made and read only
 * through ngx_http_sandbox_create_ctx() and ngx_http_sandbox_get_ctx(),
 * which returns NULL for a context of another kind: a reader can never
 * take one kind for another (the access log reads the variables of every
 * request, whichever handler served it).
 */

typedef enum {
    NGX_HTTP_SANDBOX_CTX_ROUTE = 1,     /* sandbox_route: the data plane */
    NGX_HTTP_SANDBOX_CTX_API            /* sandbox_api */
} ngx_http_sandbox_ctx_kind_e;


#define NGX_HTTP_SANDBOX_REQUEST_ID_LEN  32
#define NGX_HTTP_SANDBOX_TRACEPARENT_LEN 55     /* SBX_TRACEPARENT_LEN */

/* $sandbox_cache_status */
typedef enum {
    NGX_HTTP_SANDBOX_CSTATUS_BYPASS = 0,
    NGX_HTTP_SANDBOX_CSTATUS_MISS,
    NGX_HTTP_SANDBOX_CSTATUS_HIT,
    NGX_HTTP_SANDBOX_CSTATUS_STALE
} ngx_http_sandbox_cache_status_e;


typedef struct ngx_http_sandbox_decision_s  ngx_http_sandbox_decision_t;


/* a pod's address, held in the route context (no allocation of its own) */
typedef union {
    struct sockaddr                 sockaddr;
    struct sockaddr_in              sockaddr_in;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6             sockaddr_in6;
#endif
} ngx_http_sandbox_sockaddr_t;


/*
 * What the data plane keeps of a request once its access phase has
 * decided: what the balancer and the variables read, for the request's
 * whole life (an open stream's too), so it is kept small and in one
 * piece: the pod's address and the trace context are inline, and the
 * request id is the trace context's trace id.  The decision's working
 * state lives on the access handler's stack, or apart from the pool's
 * blocks only while a Redis lookup is under way (its struct:
 * ngx_http_sandbox_decision.h).
 */

typedef struct {
    ngx_http_sandbox_ctx_kind_e     kind;       /* first, in every kind */
    unsigned                        cache_status:2;
    unsigned                        request_id_set:1;
    unsigned                        trace_continued:1;
    unsigned                        wake_tried:1;
    unsigned                        woken:1;    /* held, $sandbox_wake */
    unsigned                        holding:1;  /* wake_ms: when it began */
    unsigned                        limit:2;    /* $sandbox_limit */

    ngx_str_t                       user;
    ngx_str_t                       name;
    ngx_str_t                       key_id;
    ngx_str_t                       uri;
    ngx_str_t                       addr_text;

    ngx_http_sandbox_sockaddr_t     sockaddr;
    socklen_t                       socklen;    /* 0: no pod */
    ngx_msec_t                      wake_ms;    /* how long it was held */

    ngx_http_sandbox_decision_t    *decision;   /* a lookup under way */

    /*
     * "00-<request id>-<span>-01": the traceparent of a new trace; of a
     * continued one only the request id is written
     */
    u_char                          trace[NGX_HTTP_SANDBOX_TRACEPARENT_LEN];
} ngx_http_sandbox_route_ctx_t;

#define ngx_http_sandbox_request_id_of(ctx)  ((ctx)->trace + 3)


extern ngx_module_t               ngx_http_sandbox_module;


/*
 * the module definition's parts: directive setters (directives.c), the
 * variables (variables.c), phase handlers and process hooks (process.c)
 */
char *ngx_http_sandbox_redis_addr(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_sandbox_redis_sentinel(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_sandbox_content(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_sandbox_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_sandbox_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_sandbox_init(ngx_conf_t *cf);
ngx_int_t ngx_http_sandbox_init_process(ngx_cycle_t *cycle);
void ngx_http_sandbox_exit_process(ngx_cycle_t *cycle);
void ngx_http_sandbox_exit_master(ngx_cycle_t *cycle);


void *ngx_http_sandbox_create_ctx(ngx_http_request_t *r,
    ngx_http_sandbox_ctx_kind_e kind, size_t size);
void *ngx_http_sandbox_get_ctx(ngx_http_request_t *r,
    ngx_http_sandbox_ctx_kind_e kind);

#define ngx_http_sandbox_route_ctx(r)                                         \
    ((ngx_http_sandbox_route_ctx_t *)                                         \
         ngx_http_sandbox_get_ctx(r, NGX_HTTP_SANDBOX_CTX_ROUTE))

extern ngx_http_sandbox_redis_t  *ngx_http_sandbox_worker_redis;
extern ngx_http_sandbox_redis_t  *ngx_http_sandbox_events_redis;
extern ngx_http_sandbox_sentinel_t
                                 *ngx_http_sandbox_worker_sentinel;

/*
 * A link to the Redis of nginx.conf, with the worker's Sentinel (if any)
 * and timeouts; its handlers and stats are the caller's to set
 */
void ngx_http_sandbox_redis_conf_init(ngx_http_sandbox_redis_conf_t *rc,
    ngx_http_sandbox_main_conf_t *smcf);


/* auth */
ngx_int_t ngx_http_sandbox_auth_bearer(ngx_http_request_t *r, ngx_str_t *key,
    const char **message);
ngx_int_t ngx_http_sandbox_auth_key(ngx_http_sandbox_key_t *key,
    const char **message);
ngx_int_t ngx_http_sandbox_auth_admin(ngx_http_request_t *r, ngx_str_t *key,
    const char **error, const char **message);
ngx_int_t ngx_http_sandbox_sha256(u_char *md, u_char *src, size_t len);
void ngx_http_sandbox_sha256_hex(u_char *dst, u_char *src, size_t len);
void ngx_http_sandbox_sha256_cleanup(void);
char *ngx_http_sandbox_admin_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* route: the access-phase handler */
ngx_int_t ngx_http_sandbox_access_handler(ngx_http_request_t *r);

/* forward: the URI and headers a sandbox receives */
void ngx_http_sandbox_forward_uri(ngx_http_sandbox_route_ctx_t *ctx,
    u_char *rest, size_t len);
ngx_int_t ngx_http_sandbox_forward_addr(ngx_http_sandbox_route_ctx_t *ctx,
    ngx_str_t *text);
void ngx_http_sandbox_forward_rewrite(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_forward_uri_value(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_str_t *value);
ngx_int_t ngx_http_sandbox_forward_headers(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx);
void ngx_http_sandbox_request_id_init(void);
u_char *ngx_http_sandbox_request_id_write(u_char *p);
void ngx_http_sandbox_trace_id(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_str_t *id);

#define NGX_HTTP_SANDBOX_REQUEST_ID_LEN  32

/*
 * wake: a request for a suspended sandbox resumes it and is held; addr is
 * the ready route's address its release read (in the request's pool), or
 * NULL (see ngx_http_sandbox_wait.h)
 */
typedef void (*ngx_http_sandbox_wake_pt)(ngx_http_request_t *r,
    ngx_int_t rc, ngx_str_t *addr);

ngx_int_t ngx_http_sandbox_wake(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_msec_t start,
    ngx_http_sandbox_wake_pt done);

/* invalidation events: the sbx:events subscriber of worker 0 */
ngx_int_t ngx_http_sandbox_events_init(ngx_cycle_t *cycle,
    ngx_http_sandbox_main_conf_t *smcf);
void ngx_http_sandbox_events_exit(void);

ngx_int_t ngx_http_sandbox_usage_init(ngx_cycle_t *cycle);
void ngx_http_sandbox_usage_exit(void);
void ngx_http_sandbox_usage_add(u_char *digest);

/* activity: what sandbox-syncd's idle auto-pause reads */
ngx_int_t ngx_http_sandbox_activity_init(ngx_cycle_t *cycle);
void ngx_http_sandbox_activity_exit(void);
ngx_int_t ngx_http_sandbox_activity_start(ngx_http_request_t *r,
    ngx_str_t *user, ngx_str_t *name, ngx_msec_t interval);

/* status: content handler of "sandbox_status" */
ngx_int_t ngx_http_sandbox_status_handler(ngx_http_request_t *r);

/* balancer */
char *ngx_http_sandbox_balancer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_uint_t ngx_http_sandbox_balancer_is(ngx_http_request_t *r,
    ngx_http_upstream_t *u);

/* management and admin API: content handler of "sandbox_api" */
ngx_int_t ngx_http_sandbox_api_handler(ngx_http_request_t *r);
ngx_str_t *ngx_http_sandbox_api_user(ngx_http_request_t *r);

/* agentkernel-compatible API: "sandbox_agentkernel_api" */
char *ngx_http_sandbox_agentkernel_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* a zone's "name:size" directive argument */
ngx_int_t ngx_http_sandbox_zone_arg(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_uint_t min_pages, ngx_str_t *name, ssize_t *size);

/* JSON answers */
ngx_int_t ngx_http_sandbox_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *body);
ngx_int_t ngx_http_sandbox_www_authenticate(ngx_http_request_t *r);
ngx_int_t ngx_http_sandbox_header_uint(ngx_http_request_t *r,
    const char *name, uint64_t value);
ngx_int_t ngx_http_sandbox_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, const char *message);
ngx_int_t ngx_http_sandbox_error_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_SANDBOX_MODULE_H_INCLUDED_ */
