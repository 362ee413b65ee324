
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The shared cache's table, as its two files see it: the entry layout,
 * the zone's shared state, and the primitives both use (find an entry,
 * free one, the cache keys of keys and routes).  ngx_http_sandbox_cache.c
 * fills and reads the table; ngx_http_sandbox_cache_inval.c drops what
 * changed.
 */


#ifndef _NGX_HTTP_SANDBOX_CACHE_TABLE_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_CACHE_TABLE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_sandbox_cache.h"


#define NGX_HTTP_SANDBOX_CACHE_KEY    'k'
#define NGX_HTTP_SANDBOX_CACHE_ROUTE  'r'

/* entries in use an eviction may move back to the head before it evicts */
#define NGX_HTTP_SANDBOX_CACHE_CHANCES  16

/* room for "r" + user + "/" + name, both DNS labels */
#define NGX_HTTP_SANDBOX_CACHE_KEY_MAX  160

/* "k" + the raw SHA-256 of an API key */
#define NGX_HTTP_SANDBOX_CACHE_KEY_LEN  (1 + 32)


typedef struct ngx_http_sandbox_cache_node_s  ngx_http_sandbox_cache_node_t;

/*
 * Links are 32-bit offsets from the zone's start in 8-byte units (slab
 * chunks are 8-aligned; 0 is the slab pool header, never an entry): the
 * bucket array, read at every lookup, is half the size it would be with
 * pointers and so stays in the CPU caches longer.  Zones up to 32G.
 */

typedef uint32_t  ngx_http_sandbox_cache_link_t;

#if (NGX_PTR_SIZE == 8)
#define NGX_HTTP_SANDBOX_CACHE_ZONE_MAX  ((size_t) 0xffffffff << 3)
#endif

#define ngx_http_sandbox_cache_node(ctx, link)                               \
    ((link) ? (ngx_http_sandbox_cache_node_t *)                              \
              ((u_char *) (ctx)->shpool + ((size_t) (link) << 3))            \
            : NULL)

#define ngx_http_sandbox_cache_link(ctx, cn)                                 \
    ((ngx_http_sandbox_cache_link_t)                                         \
         (((u_char *) (cn) - (u_char *) (ctx)->shpool) >> 3))


#if (__GNUC__ || __clang__)
#define ngx_http_sandbox_cache_prefetch(p)  __builtin_prefetch(p)
#else
#define ngx_http_sandbox_cache_prefetch(p)
#endif


typedef struct {
    ngx_http_sandbox_cache_link_t   *buckets;
    ngx_uint_t                       mask;
    ngx_queue_t                      lru;
    ngx_uint_t                       generation;
    ngx_uint_t                       subscribers;
    ngx_msec_t                       heartbeat;
    size_t                           base;      /* bytes before entries */
    ngx_http_sandbox_cache_stats_t   stats;
} ngx_http_sandbox_cache_sh_t;


typedef struct {
    ngx_http_sandbox_cache_sh_t     *sh;
    ngx_slab_pool_t                 *shpool;
} ngx_http_sandbox_cache_ctx_t;


/*
 * An entry, packed so that a route entry, or a key entry with a short id
 * and user, fits a 128-byte slab chunk: what a lookup reads comes first,
 * and the owner (the user whose change drops the entry) is found inside
 * the key or the value, not copied.  Times kept in 32 bits are only ever
 * compared by difference.
 *
 * The LRU queue is kept lazily (second chance): a hit only marks its
 * entry used, and an eviction moves a used entry back to the head instead
 * of evicting it.  Moving an entry at hits wrote two other random entries
 * (its neighbours) and cost, with 100,000 users, a tenth of throughput.
 *
 * A key entry's hint links the route entry its last request used, so the
 * route is usually found without a second hash search (two cache misses
 * fewer per request).  A hint is only a guess: it is checked like any
 * chain entry (hash, length, key bytes), and a freed entry has its hash
 * and length zeroed, so a stale hint never matches.
 */

struct ngx_http_sandbox_cache_node_s {
    ngx_http_sandbox_cache_link_t    next;      /* hash chain */
    uint32_t                         hash;
    uint32_t                         generation;    /* the zone's, low bits */
    uint32_t                         mark;
    ngx_msec_t                       expire;
    u_short                          vlen;
    u_short                          uoff;      /* owner's offset in data */
    u_char                           klen;
    u_char                           ulen;
    u_char                           used;      /* hit since queued */
    ngx_http_sandbox_cache_link_t    hint;      /* a key's last route */
    ngx_queue_t                      queue;     /* LRU */
    u_char                           data[1];   /* key, value */
};


static ngx_inline ngx_http_sandbox_cache_node_t *
ngx_http_sandbox_cache_lookup(ngx_http_sandbox_cache_ctx_t *ctx, u_char *key,
    size_t len, uint32_t hash)
{
    ngx_http_sandbox_cache_link_t   link;
    ngx_http_sandbox_cache_node_t  *cn;

    link = ctx->sh->buckets[hash & ctx->sh->mask];

    for (cn = ngx_http_sandbox_cache_node(ctx, link);
         cn;
         cn = ngx_http_sandbox_cache_node(ctx, cn->next))
    {

        if (cn->hash == hash
            && ngx_memn2cmp(key, cn->data, len, cn->klen) == 0)
        {
            return cn;
        }
    }

    return NULL;
}


static ngx_inline void
ngx_http_sandbox_cache_free_node(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_http_sandbox_cache_node_t *cn)
{
    ngx_http_sandbox_cache_link_t  *p, link;

    link = ngx_http_sandbox_cache_link(ctx, cn);

    for (p = &ctx->sh->buckets[cn->hash & ctx->sh->mask];
         *p != link;
         p = &ngx_http_sandbox_cache_node(ctx, *p)->next)
    {
        /* void */
    }

    *p = cn->next;

    ngx_queue_remove(&cn->queue);

    /* a hint may still name this chunk: make sure it cannot match */

    cn->hash = 0;
    cn->klen = 0;

    ngx_slab_free_locked(ctx->shpool, cn);

    ctx->sh->stats.entries--;
}


/* a key's cache key: "k" and its raw digest */

static ngx_inline void
ngx_http_sandbox_cache_digest_key(u_char *buf, u_char *digest)
{
    buf[0] = NGX_HTTP_SANDBOX_CACHE_KEY;
    ngx_memcpy(buf + 1, digest, NGX_HTTP_SANDBOX_CACHE_KEY_LEN - 1);
}


/* a route's cache key: "r" user "/" name; 0 when too long */

static ngx_inline size_t
ngx_http_sandbox_cache_route_key(u_char *buf, ngx_str_t *user,
    ngx_str_t *name)
{
    u_char  *p;

    if (user->len + name->len + 2 > NGX_HTTP_SANDBOX_CACHE_KEY_MAX) {
        return 0;
    }

    p = buf;
    *p++ = NGX_HTTP_SANDBOX_CACHE_ROUTE;
    p = ngx_cpymem(p, user->data, user->len);
    *p++ = '/';
    p = ngx_cpymem(p, name->data, name->len);

    return p - buf;
}


#endif /* _NGX_HTTP_SANDBOX_CACHE_TABLE_H_INCLUDED_ */
