
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The limit zone as its files see it: the entries, the slots ("holds")
 * and the workers' rows, and what each file offers the others.
 *
 *   ngx_http_sandbox_limit.c          a request's check, its slots
 *   ngx_http_sandbox_limit_conf.c     directives, the zone's creation
 *   ngx_http_sandbox_limit_workers.c  workers' rows, dead workers' slots,
 *                                     the status
 *   ngx_http_sandbox_limit_cluster.c  counts shared through Redis
 */


#ifndef _NGX_HTTP_SANDBOX_LIMIT_ZONE_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_LIMIT_ZONE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_limit.h"


/* workers of all generations alive at once (a reload doubles them) */
#define NGX_HTTP_SANDBOX_LIMIT_WORKERS  256

/* how often a worker looks for dead workers' slots */
#define NGX_HTTP_SANDBOX_LIMIT_SCAN     1000

#define NGX_HTTP_SANDBOX_LIMIT_KEY      'k'
#define NGX_HTTP_SANDBOX_LIMIT_USER     'u'

/* cluster scope: entries changed since the last sync, at most */
#define NGX_HTTP_SANDBOX_LIMIT_DIRTY    4096

#define NGX_HTTP_SANDBOX_LIMIT_GW_LEN   16


/*
 * An entry starts at the rbtree node's color, as limit_req's do: a key's
 * entry (33 bytes of id) fits a 128-byte slab chunk.  remote, adm, rate
 * and used serve the cluster scope only.
 */

typedef struct {
    u_char                          color;
    u_char                          len;
    u_char                          dirty;      /* in the dirty list */
    u_char                          pad;
    uint32_t                        conc;       /* requests in flight */
    ngx_queue_t                     queue;      /* LRU */
    uint64_t                        level;      /* the bucket */
    uint64_t                        last;
    uint32_t                        remote;     /* other gateways' conc */
    uint32_t                        adm;        /* let through since sync */
    uint32_t                        rate;       /* the last one applied */
    uint32_t                        used;       /* last let through, ms */
    u_char                          data[1];    /* kind, id */
} ngx_http_sandbox_limit_node_t;


typedef struct {
    ngx_queue_t                     queue;      /* its worker's holds */
    ngx_http_sandbox_limit_node_t  *key;
    ngx_http_sandbox_limit_node_t  *user;
} ngx_http_sandbox_limit_hold_t;


typedef struct {
    ngx_pid_t                       pid;        /* 0: free */
    ngx_queue_t                     holds;
} ngx_http_sandbox_limit_worker_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     lru;
    ngx_msec_t                      scanned;

    ngx_uint_t                      entries;
    ngx_uint_t                      slots;      /* holds */
    ngx_uint_t                      refused_rate;
    ngx_uint_t                      refused_concurrency;
    ngx_uint_t                      reclaimed;
    ngx_uint_t                      evicted;
    ngx_uint_t                      full;       /* no room: let through */

    /* cluster scope */
    u_char                          gateway[NGX_HTTP_SANDBOX_LIMIT_GW_LEN];
    ngx_pid_t                       sync_pid;   /* a sync under way */
    ngx_msec_t                      sync_started;
    ngx_msec_t                      synced;     /* the last good one */
    ngx_uint_t                      syncs;
    ngx_uint_t                      sync_failures;
    ngx_uint_t                      ndirty;
    ngx_uint_t                      overflow;   /* dirty ones not listed */

    ngx_http_sandbox_limit_worker_t workers[
                                        NGX_HTTP_SANDBOX_LIMIT_WORKERS];
    ngx_http_sandbox_limit_node_t  *dirty[NGX_HTTP_SANDBOX_LIMIT_DIRTY];
} ngx_http_sandbox_limit_sh_t;


typedef struct {
    ngx_http_sandbox_limit_sh_t    *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_sandbox_limit_ctx_t;


#define ngx_http_sandbox_limit_rbnode(ln)                                     \
    ((ngx_rbtree_node_t *)                                                    \
         ((u_char *) (ln) - offsetof(ngx_rbtree_node_t, color)))


/* this worker's zone and row; its sync interval (0: local scope) */
extern ngx_shm_zone_t  *ngx_http_sandbox_limit_shm;
extern ngx_uint_t       ngx_http_sandbox_limit_worker;
extern ngx_msec_t       ngx_http_sandbox_limit_sync;


/* ngx_http_sandbox_limit_conf.c */
ngx_int_t ngx_http_sandbox_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

/* ngx_http_sandbox_limit.c, called locked */
ngx_http_sandbox_limit_node_t *ngx_http_sandbox_limit_find(
    ngx_http_sandbox_limit_ctx_t *ctx, u_char kind, u_char *id, size_t len,
    uint32_t hash);
void ngx_http_sandbox_limit_release(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_hold_t *hold);

/* ngx_http_sandbox_limit_workers.c, called locked */
ngx_uint_t ngx_http_sandbox_limit_reclaim(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_uint_t w);

/* ngx_http_sandbox_limit_cluster.c */
void ngx_http_sandbox_limit_cluster_init(ngx_cycle_t *cycle,
    ngx_http_sandbox_limit_ctx_t *ctx);
void ngx_http_sandbox_limit_touch(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_node_t *ln);                 /* locked */
uint32_t ngx_http_sandbox_limit_remote(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_node_t *ln);                 /* locked */
json_t *ngx_http_sandbox_limit_cluster_status(
    ngx_http_sandbox_limit_sh_t *sh, ngx_uint_t remote);


#endif /* _NGX_HTTP_SANDBOX_LIMIT_ZONE_H_INCLUDED_ */
