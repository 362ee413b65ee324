
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The shared-memory cache of key and route lookups.
 */


#ifndef _NGX_HTTP_SANDBOX_CACHE_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_redis.h"
#include "sandbox_reply.h"


/* what a key digest resolves to: the decoded reply's states */
typedef enum {
    NGX_HTTP_SANDBOX_KEY_VALID = SBX_KEY_VALID,
    NGX_HTTP_SANDBOX_KEY_UNKNOWN = SBX_KEY_UNKNOWN,
    NGX_HTTP_SANDBOX_KEY_INACTIVE = SBX_KEY_INACTIVE,
    NGX_HTTP_SANDBOX_KEY_USER_INACTIVE = SBX_KEY_USER_INACTIVE
} ngx_http_sandbox_key_state_e;


typedef struct {
    ngx_http_sandbox_key_state_e    state;
    time_t                          expires;
    ngx_str_t                       user;
    ngx_str_t                       id;
    sbx_limits_t                    limits;     /* overrides */
} ngx_http_sandbox_key_t;


/* what (user, sandbox) resolves to */
typedef enum {
    NGX_HTTP_SANDBOX_ROUTE_NONE = SBX_ROUTE_NONE,
    NGX_HTTP_SANDBOX_ROUTE_PENDING = SBX_ROUTE_PENDING,
    NGX_HTTP_SANDBOX_ROUTE_NOT_READY = SBX_ROUTE_NOT_READY,
    NGX_HTTP_SANDBOX_ROUTE_READY = SBX_ROUTE_READY
} ngx_http_sandbox_route_state_e;


typedef struct {
    ngx_http_sandbox_route_state_e  state;
    ngx_str_t                       addr;
} ngx_http_sandbox_route_t;


/* the longest sandbox_cache_grace allowed, ms */
#define NGX_HTTP_SANDBOX_CACHE_GRACE_MAX  3600000

/* results of a lookup */
#define NGX_HTTP_SANDBOX_CACHE_MISS   0
#define NGX_HTTP_SANDBOX_CACHE_HIT    1
#define NGX_HTTP_SANDBOX_CACHE_STALE  2    /* usable only if Redis fails */


typedef struct {
    ngx_atomic_t                    hits;
    ngx_atomic_t                    misses;
    ngx_atomic_t                    stale;
    ngx_atomic_t                    evictions;
    ngx_atomic_t                    invalidations;
    ngx_atomic_t                    flushes;
    ngx_atomic_t                    entries;
} ngx_http_sandbox_cache_stats_t;


typedef struct {
    ngx_msec_t                      ttl;
    ngx_msec_t                      negative_ttl;
    ngx_msec_t                      grace;
    ngx_msec_t                      last_used;    /* report interval */
} ngx_http_sandbox_cache_ttl_t;


ngx_shm_zone_t *ngx_http_sandbox_cache_zone_add(ngx_conf_t *cf,
    ngx_str_t *name, size_t size);

void ngx_http_sandbox_cache_prefetch_key(ngx_shm_zone_t *zone,
    u_char *digest);

/*
 * A key, by its raw SHA-256, and its user's route to the sandbox "name"
 * (*route_rc says how that went) in one go; *used is set to 1 when the
 * key's use is due to be reported.
 */
ngx_int_t ngx_http_sandbox_cache_get_key(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, u_char *digest, ngx_http_sandbox_key_t *key,
    ngx_str_t *name, ngx_http_sandbox_route_t *route, ngx_int_t *route_rc,
    ngx_http_sandbox_cache_ttl_t *ttl, ngx_uint_t *used);
void ngx_http_sandbox_cache_put_key(ngx_shm_zone_t *zone, u_char *digest,
    ngx_http_sandbox_key_t *key, ngx_http_sandbox_cache_ttl_t *ttl);


ngx_int_t ngx_http_sandbox_cache_get_route(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, ngx_str_t *user, ngx_str_t *name,
    ngx_http_sandbox_route_t *route, ngx_http_sandbox_cache_ttl_t *ttl);
void ngx_http_sandbox_cache_put_route(ngx_shm_zone_t *zone, ngx_str_t *user,
    ngx_str_t *name, ngx_http_sandbox_route_t *route,
    ngx_http_sandbox_cache_ttl_t *ttl);

/* invalidation: a message of the sbx:events channel, or a local event */
void ngx_http_sandbox_cache_event(ngx_shm_zone_t *zone, u_char *msg,
    size_t len, ngx_log_t *log);
void ngx_http_sandbox_cache_drop_route(ngx_shm_zone_t *zone,
    ngx_str_t *user, ngx_str_t *name);
void ngx_http_sandbox_cache_flush(ngx_shm_zone_t *zone);

/* subscriber bookkeeping, so a gap in listening flushes the cache */
ngx_uint_t ngx_http_sandbox_cache_subscribed(ngx_shm_zone_t *zone,
    ngx_msec_t live);
void ngx_http_sandbox_cache_unsubscribed(ngx_shm_zone_t *zone);
void ngx_http_sandbox_cache_heartbeat(ngx_shm_zone_t *zone);

ngx_http_sandbox_cache_stats_t *ngx_http_sandbox_cache_stats(
    ngx_shm_zone_t *zone);
size_t ngx_http_sandbox_cache_size(ngx_shm_zone_t *zone);
size_t ngx_http_sandbox_cache_used(ngx_shm_zone_t *zone);
ngx_uint_t ngx_http_sandbox_cache_generation(ngx_shm_zone_t *zone);


#endif /* _NGX_HTTP_SANDBOX_CACHE_H_INCLUDED_ */
