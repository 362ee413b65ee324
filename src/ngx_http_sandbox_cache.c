
/*
 * Copyright (C) The sandbox gateway authors
 *
 * A shared-memory cache of what Redis said about API keys and routes, so a
 * warm request makes no Redis round trip.  A slab pool holds the entries,
 * an LRU queue is trimmed when the slab runs out of room, and a chained
 * hash table finds them.  An rbtree (as limit_req uses) was measured first:
 * with 100,000 users its walk missed the CPU cache at every level and cost
 * over 10% of throughput; a bucket array sized from the zone costs about
 * two cache misses per lookup whatever the number of entries.
 *
 * Every entry records the zone's generation when it was filled; bumping the
 * generation (after a lost subscription, or on "flush") turns every entry
 * into a miss in O(1).  Single entries are dropped by the invalidation
 * messages the API and the sync daemon publish on sbx:events.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

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


static ngx_int_t ngx_http_sandbox_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_sandbox_cache_node_t *ngx_http_sandbox_cache_lookup(
    ngx_http_sandbox_cache_ctx_t *ctx, u_char *key, size_t len,
    uint32_t hash);
static ngx_http_sandbox_cache_node_t *ngx_http_sandbox_cache_at(
    ngx_http_sandbox_cache_ctx_t *ctx, ngx_http_sandbox_cache_link_t link,
    u_char *key, size_t len, uint32_t hash);
static ngx_int_t ngx_http_sandbox_cache_read(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_http_sandbox_cache_node_t *cn, ngx_pool_t *pool, ngx_str_t *value,
    ngx_http_sandbox_cache_ttl_t *ttl, ngx_uint_t *due);
static void ngx_http_sandbox_cache_count(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_int_t rc);
static ngx_int_t ngx_http_sandbox_cache_get_route_of(
    ngx_http_sandbox_cache_ctx_t *ctx, ngx_http_sandbox_cache_node_t *kn,
    ngx_pool_t *pool, ngx_str_t *name, ngx_str_t *value,
    ngx_http_sandbox_cache_ttl_t *ttl);
static ngx_int_t ngx_http_sandbox_cache_route_value(ngx_int_t rc,
    ngx_str_t *v, ngx_http_sandbox_route_t *route);
static void ngx_http_sandbox_cache_put(ngx_shm_zone_t *zone, u_char *key,
    size_t klen, u_char *value, size_t vlen, size_t uoff, size_t ulen,
    ngx_msec_t ttl, ngx_msec_t spread);
static void ngx_http_sandbox_cache_digest_key(u_char *buf, u_char *digest);
static ngx_int_t ngx_http_sandbox_cache_hex(u_char c);
static ngx_int_t ngx_http_sandbox_cache_key_of(u_char *buf, u_char *hex);
static void ngx_http_sandbox_cache_delete(ngx_shm_zone_t *zone, u_char *key,
    size_t klen);
static void ngx_http_sandbox_cache_delete_owner(ngx_shm_zone_t *zone,
    u_char *user, size_t len);
static void ngx_http_sandbox_cache_free_node(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_http_sandbox_cache_node_t *cn);
static void ngx_http_sandbox_cache_expire(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_uint_t force);
static void ngx_http_sandbox_cache_evict(ngx_http_sandbox_cache_ctx_t *ctx);
static size_t ngx_http_sandbox_cache_route_key(u_char *buf, ngx_str_t *user,
    ngx_str_t *name);


ngx_shm_zone_t *
ngx_http_sandbox_cache_zone_add(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t                *shm_zone;
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_cache_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

#if (NGX_PTR_SIZE == 8)
    if (size > NGX_HTTP_SANDBOX_CACHE_ZONE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too large, 32G at most", name);
        return NULL;
    }
#endif

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_http_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NULL;
    }

    shm_zone->init = ngx_http_sandbox_cache_init_zone;
    shm_zone->data = ctx;

    return shm_zone;
}


static ngx_int_t
ngx_http_sandbox_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sandbox_cache_ctx_t  *octx = data;

    size_t                         len;
    ngx_uint_t                     n;
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = shm_zone->data;

    /* on reload the zone and its entries carry over */

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              sizeof(ngx_http_sandbox_cache_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    /* a bucket per 256 bytes of zone, about one per entry when full */

    n = 1;
    while (n * 256 < shm_zone->shm.size) {
        n *= 2;
    }

    ctx->sh->buckets = ngx_slab_calloc(ctx->shpool,
                               n * sizeof(ngx_http_sandbox_cache_link_t));
    if (ctx->sh->buckets == NULL) {
        return NGX_ERROR;
    }

    ctx->sh->mask = n - 1;

    ngx_queue_init(&ctx->sh->lru);

    len = sizeof(" in sandbox cache zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in sandbox cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    ctx->sh->base = ngx_http_sandbox_cache_used(shm_zone);

    /* a full zone evicts the oldest entries; that is not worth an alert */

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_http_sandbox_cache_node_t *
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


/* the entry a link names, if it holds this key: a hint's check */

static ngx_http_sandbox_cache_node_t *
ngx_http_sandbox_cache_at(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_http_sandbox_cache_link_t link, u_char *key, size_t len,
    uint32_t hash)
{
    ngx_http_sandbox_cache_node_t  *cn;

    cn = ngx_http_sandbox_cache_node(ctx, link);

    if (cn && cn->hash == hash && cn->klen == len
        && ngx_memcmp(cn->data, key, len) == 0)
    {
        return cn;
    }

    return NULL;
}


/*
 * Called locked with the entry found (or NULL): copies its value out, as
 * shared memory is never used after the lock is released.
 */

static ngx_int_t
ngx_http_sandbox_cache_read(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_http_sandbox_cache_node_t *cn, ngx_pool_t *pool, ngx_str_t *value,
    ngx_http_sandbox_cache_ttl_t *ttl, ngx_uint_t *due)
{
    ngx_msec_int_t  left;

    if (cn == NULL) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    if (cn->generation != (uint32_t) ctx->sh->generation) {
        ngx_http_sandbox_cache_free_node(ctx, cn);
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    /*
     * an entry past this location's grace stays: another location may
     * allow more; a refill replaces it, LRU pressure or expire() drop it
     */

    left = (ngx_msec_int_t) (cn->expire - ngx_current_msec);

    if (left + (ngx_msec_int_t) ttl->grace <= 0) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    value->data = ngx_pnalloc(pool, cn->vlen);
    if (value->data == NULL) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    ngx_memcpy(value->data, cn->data + cn->klen, cn->vlen);
    value->len = cn->vlen;

    if (left <= 0) {
        return NGX_HTTP_SANDBOX_CACHE_STALE;
    }

    /* written once, not at every hit: workers reading it keep their copy */

    if (!cn->used) {
        cn->used = 1;
    }

    /* once per interval and key, across workers, a use is reported */

    if (due
        && (int32_t) ((uint32_t) ngx_current_msec - cn->mark)
           >= (int32_t) ttl->last_used)
    {
        cn->mark = (uint32_t) ngx_current_msec;
        *due = 1;
    }

    return NGX_HTTP_SANDBOX_CACHE_HIT;
}


static void
ngx_http_sandbox_cache_count(ngx_http_sandbox_cache_ctx_t *ctx, ngx_int_t rc)
{
    if (rc == NGX_HTTP_SANDBOX_CACHE_HIT) {
        (void) ngx_atomic_fetch_add(&ctx->sh->stats.hits, 1);

    } else {
        (void) ngx_atomic_fetch_add(&ctx->sh->stats.misses, 1);
    }
}


static void
ngx_http_sandbox_cache_put(ngx_shm_zone_t *zone, u_char *key, size_t klen,
    u_char *value, size_t vlen, size_t uoff, size_t ulen, ngx_msec_t ttl,
    ngx_msec_t spread)
{
    size_t                          size;
    uint32_t                        hash;
    ngx_http_sandbox_cache_ctx_t   *ctx;
    ngx_http_sandbox_cache_node_t  *cn;

    if (ttl == 0 || klen > 0xff || vlen > 0xffff || uoff > 0xffff
        || ulen > 0xff || uoff + ulen > klen + vlen)
    {
        return;
    }

    ctx = zone->data;
    hash = ngx_murmur_hash2(key, klen);
    size = offsetof(ngx_http_sandbox_cache_node_t, data)
           + klen + vlen;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_sandbox_cache_lookup(ctx, key, klen, hash);

    if (cn) {
        ngx_http_sandbox_cache_free_node(ctx, cn);
    }

    ngx_http_sandbox_cache_expire(ctx, 0);

    cn = ngx_slab_alloc_locked(ctx->shpool, size);

    while (cn == NULL && !ngx_queue_empty(&ctx->sh->lru)) {
        ngx_http_sandbox_cache_expire(ctx, 1);
        cn = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    if (cn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    /*
     * entries cached together (after a flush) would expire together, and
     * in use they would be refilled together again every TTL: up to a
     * tenth is taken off at random, so the refills spread out
     */

    cn->hash = hash;
    cn->expire = ngx_current_msec + ttl
                 - (ngx_msec_t) ngx_random() % (ttl / 10 + 1);
    cn->used = 0;

    /*
     * keys cached together (a warm-up, a flush) would fall due together:
     * their first report is put off by up to "spread" to stagger them
     */

    cn->mark = (uint32_t) (ngx_current_msec
                           + (spread ? (ngx_msec_t) ngx_random() % spread : 0));
    cn->generation = (uint32_t) ctx->sh->generation;
    cn->klen = (u_char) klen;
    cn->vlen = (u_short) vlen;
    cn->uoff = (u_short) uoff;
    cn->ulen = (u_char) ulen;
    cn->hint = 0;

    ngx_memcpy(cn->data, key, klen);
    ngx_memcpy(cn->data + klen, value, vlen);

    cn->next = ctx->sh->buckets[hash & ctx->sh->mask];
    ctx->sh->buckets[hash & ctx->sh->mask] =
                                     ngx_http_sandbox_cache_link(ctx, cn);
    ngx_queue_insert_head(&ctx->sh->lru, &cn->queue);

    ctx->sh->stats.entries++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static void
ngx_http_sandbox_cache_delete(ngx_shm_zone_t *zone, u_char *key, size_t klen)
{
    ngx_http_sandbox_cache_ctx_t   *ctx;
    ngx_http_sandbox_cache_node_t  *cn;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_sandbox_cache_lookup(ctx, key, klen,
                                       ngx_murmur_hash2(key, klen));
    if (cn) {
        ngx_http_sandbox_cache_free_node(ctx, cn);
        ctx->sh->stats.invalidations++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * A user changed (deactivated, deleted): drop every entry it owns.  This
 * walks the whole zone, which is fine for an event that rare.
 */

static void
ngx_http_sandbox_cache_delete_owner(ngx_shm_zone_t *zone, u_char *user,
    size_t len)
{
    ngx_queue_t                    *q, *next;
    ngx_http_sandbox_cache_ctx_t   *ctx;
    ngx_http_sandbox_cache_node_t  *cn;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (q = ngx_queue_head(&ctx->sh->lru);
         q != ngx_queue_sentinel(&ctx->sh->lru);
         q = next)
    {
        next = ngx_queue_next(q);
        cn = ngx_queue_data(q, ngx_http_sandbox_cache_node_t, queue);

        if (ngx_memn2cmp(cn->data + cn->uoff, user, cn->ulen, len)
            == 0)
        {
            ngx_http_sandbox_cache_free_node(ctx, cn);
            ctx->sh->stats.invalidations++;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static void
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


/*
 * Drops up to two entries from the cold end that nobody may use any more;
 * with force, the coldest entry goes whatever its age (LRU eviction),
 * after used ones at the cold end have had their second chance.
 */

static void
ngx_http_sandbox_cache_expire(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_uint_t force)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_sandbox_cache_node_t  *cn;

    for (n = 0; n < 2; n++) {

        if (ngx_queue_empty(&ctx->sh->lru)) {
            return;
        }

        q = ngx_queue_last(&ctx->sh->lru);
        cn = ngx_queue_data(q, ngx_http_sandbox_cache_node_t, queue);

        if (force) {
            ngx_http_sandbox_cache_evict(ctx);
            return;
        }

        /* past the longest grace allowed no location can use it */

        if (cn->generation == (uint32_t) ctx->sh->generation
            && (ngx_msec_int_t) (ngx_current_msec - cn->expire)
               <= NGX_HTTP_SANDBOX_CACHE_GRACE_MAX)
        {
            return;
        }

        ngx_http_sandbox_cache_free_node(ctx, cn);
    }
}


static void
ngx_http_sandbox_cache_evict(ngx_http_sandbox_cache_ctx_t *ctx)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_sandbox_cache_node_t  *cn;

    q = ngx_queue_last(&ctx->sh->lru);
    cn = ngx_queue_data(q, ngx_http_sandbox_cache_node_t, queue);

    /* bounded: when everything is in use, the coldest goes all the same */

    for (n = 0; cn->used && n < NGX_HTTP_SANDBOX_CACHE_CHANCES; n++) {
        cn->used = 0;
        ngx_queue_remove(q);
        ngx_queue_insert_head(&ctx->sh->lru, q);

        q = ngx_queue_last(&ctx->sh->lru);
        cn = ngx_queue_data(q, ngx_http_sandbox_cache_node_t, queue);
    }

    ngx_http_sandbox_cache_free_node(ctx, cn);
    ctx->sh->stats.evictions++;
}


/* keys */

/*
 * Started as soon as the digest is known, so that the bucket is in the CPU
 * cache by the time the lookup needs it: with many keys it is a cache miss
 * otherwise.  A prefetch reads nothing, so it needs no lock.
 */

void
ngx_http_sandbox_cache_prefetch_key(ngx_shm_zone_t *zone, u_char *digest)
{
    ngx_http_sandbox_cache_ctx_t  *ctx;
    u_char                         buf[NGX_HTTP_SANDBOX_CACHE_KEY_LEN];

    ctx = zone->data;

    ngx_http_sandbox_cache_digest_key(buf, digest);

    ngx_http_sandbox_cache_prefetch(
        &ctx->sh->buckets[ngx_murmur_hash2(buf, sizeof(buf))
                          & ctx->sh->mask]);
}


ngx_int_t
ngx_http_sandbox_cache_get_key(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    u_char *digest, ngx_http_sandbox_key_t *key, ngx_str_t *name,
    ngx_http_sandbox_route_t *route, ngx_int_t *route_rc,
    ngx_http_sandbox_cache_ttl_t *ttl, ngx_uint_t *used)
{
    u_char                         *p, *last;
    size_t                          idlen;
    ngx_int_t                       rc;
    ngx_str_t                       v, rv;
    ngx_http_sandbox_cache_ctx_t   *ctx;
    ngx_http_sandbox_cache_node_t  *cn;
    u_char                          buf[NGX_HTTP_SANDBOX_CACHE_KEY_LEN];

    ctx = zone->data;
    *route_rc = NGX_HTTP_SANDBOX_CACHE_MISS;

    ngx_http_sandbox_cache_digest_key(buf, digest);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_sandbox_cache_lookup(ctx, buf, sizeof(buf),
                                       ngx_murmur_hash2(buf, sizeof(buf)));

    /*
     * the value's tail and the hinted route entry are fetched while the
     * value is read: each would be a cache miss of its own after it
     */

    if (cn) {
        ngx_http_sandbox_cache_prefetch(cn->data + cn->klen + cn->vlen - 1);
        ngx_http_sandbox_cache_prefetch(
                                   ngx_http_sandbox_cache_node(ctx, cn->hint));
    }

    rc = ngx_http_sandbox_cache_read(ctx, cn, pool, &v, ttl, used);

    /* the route is the key's user's: looked up under the same lock */

    if (rc != NGX_HTTP_SANDBOX_CACHE_MISS) {
        *route_rc = ngx_http_sandbox_cache_get_route_of(ctx, cn, pool, name,
                                                        &rv, ttl);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_sandbox_cache_count(ctx, rc);

    if (rc == NGX_HTTP_SANDBOX_CACHE_MISS) {
        return rc;
    }

    if (*route_rc == NGX_DECLINED) {
        *route_rc = NGX_HTTP_SANDBOX_CACHE_MISS;

    } else {
        ngx_http_sandbox_cache_count(ctx, *route_rc);
    }

    *route_rc = ngx_http_sandbox_cache_route_value(*route_rc, &rv, route);

    /* value: state, expires, id length, id, user */

    p = v.data;
    last = v.data + v.len;

    if (v.len < 1 + sizeof(time_t) + 1) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    key->state = *p++;
    ngx_memcpy(&key->expires, p, sizeof(time_t));
    p += sizeof(time_t);
    idlen = *p++;

    if ((size_t) (last - p) < idlen) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    key->id.data = p;
    key->id.len = idlen;
    key->user.data = p + idlen;
    key->user.len = last - p - idlen;

    return rc;
}


/* called locked with a key's entry: its user's route, by the hint first */

static ngx_int_t
ngx_http_sandbox_cache_get_route_of(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_http_sandbox_cache_node_t *kn, ngx_pool_t *pool, ngx_str_t *name,
    ngx_str_t *value, ngx_http_sandbox_cache_ttl_t *ttl)
{
    size_t                          klen;
    uint32_t                        hash;
    ngx_str_t                       user;
    ngx_http_sandbox_cache_node_t  *cn;
    u_char                          buf[NGX_HTTP_SANDBOX_CACHE_KEY_MAX];

    user.data = kn->data + kn->uoff;
    user.len = kn->ulen;

    /* an unknown key has no user, and so no route to look up */

    klen = ngx_http_sandbox_cache_route_key(buf, &user, name);
    if (user.len == 0 || klen == 0) {
        return NGX_DECLINED;
    }

    hash = ngx_murmur_hash2(buf, klen);

    cn = ngx_http_sandbox_cache_at(ctx, kn->hint, buf, klen, hash);

    if (cn == NULL) {
        cn = ngx_http_sandbox_cache_lookup(ctx, buf, klen, hash);

        if (cn) {
            kn->hint = ngx_http_sandbox_cache_link(ctx, cn);
        }
    }

    return ngx_http_sandbox_cache_read(ctx, cn, pool, value, ttl, NULL);
}


void
ngx_http_sandbox_cache_put_key(ngx_shm_zone_t *zone, u_char *digest,
    ngx_http_sandbox_key_t *key, ngx_http_sandbox_cache_ttl_t *ttl)
{
    u_char   *p;
    size_t    idlen;
    u_char    buf[NGX_HTTP_SANDBOX_CACHE_KEY_LEN];
    u_char    val[1 + sizeof(time_t) + 1 + 255 + 255];

    ngx_http_sandbox_cache_digest_key(buf, digest);

    idlen = ngx_min(key->id.len, 255);

    if (key->user.len > 255) {
        return;
    }

    p = val;
    *p++ = (u_char) key->state;
    p = ngx_cpymem(p, &key->expires, sizeof(time_t));
    *p++ = (u_char) idlen;
    p = ngx_cpymem(p, key->id.data, idlen);
    p = ngx_cpymem(p, key->user.data, key->user.len);

    /* the owner is the value's tail */

    ngx_http_sandbox_cache_put(zone, buf, sizeof(buf), val, p - val,
                               sizeof(buf) + (p - val) - key->user.len,
                               key->user.len,
                               key->state == NGX_HTTP_SANDBOX_KEY_VALID
                               ? ttl->ttl : ttl->negative_ttl,
                               ttl->last_used / 2);
}


/* a key's cache key: "k" and its raw digest */

static void
ngx_http_sandbox_cache_digest_key(u_char *buf, u_char *digest)
{
    buf[0] = NGX_HTTP_SANDBOX_CACHE_KEY;
    ngx_memcpy(buf + 1, digest, NGX_HTTP_SANDBOX_CACHE_KEY_LEN - 1);
}


static ngx_int_t
ngx_http_sandbox_cache_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return NGX_ERROR;
}


/* a key's cache key from a "key <hex digest>" message */

static ngx_int_t
ngx_http_sandbox_cache_key_of(u_char *buf, u_char *hex)
{
    ngx_int_t   hi, lo;
    ngx_uint_t  i;

    buf[0] = NGX_HTTP_SANDBOX_CACHE_KEY;

    for (i = 0; i < 32; i++) {
        hi = ngx_http_sandbox_cache_hex(hex[2 * i]);
        lo = ngx_http_sandbox_cache_hex(hex[2 * i + 1]);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        buf[1 + i] = (u_char) (hi << 4 | lo);
    }

    return NGX_OK;
}


/* routes */

static size_t
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


ngx_int_t
ngx_http_sandbox_cache_get_route(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    ngx_str_t *user, ngx_str_t *name, ngx_http_sandbox_route_t *route,
    ngx_http_sandbox_cache_ttl_t *ttl)
{
    size_t                          klen;
    ngx_int_t                       rc;
    ngx_str_t                       v;
    ngx_http_sandbox_cache_ctx_t   *ctx;
    ngx_http_sandbox_cache_node_t  *cn;
    u_char                          buf[NGX_HTTP_SANDBOX_CACHE_KEY_MAX];

    klen = ngx_http_sandbox_cache_route_key(buf, user, name);
    if (klen == 0) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_sandbox_cache_lookup(ctx, buf, klen,
                                       ngx_murmur_hash2(buf, klen));

    rc = ngx_http_sandbox_cache_read(ctx, cn, pool, &v, ttl, NULL);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_sandbox_cache_count(ctx, rc);

    return ngx_http_sandbox_cache_route_value(rc, &v, route);
}


/* value: state, address */

static ngx_int_t
ngx_http_sandbox_cache_route_value(ngx_int_t rc, ngx_str_t *v,
    ngx_http_sandbox_route_t *route)
{
    if (rc == NGX_HTTP_SANDBOX_CACHE_MISS || v->len == 0) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    route->state = v->data[0];
    route->addr.data = v->data + 1;
    route->addr.len = v->len - 1;

    return rc;
}


void
ngx_http_sandbox_cache_put_route(ngx_shm_zone_t *zone, ngx_str_t *user,
    ngx_str_t *name, ngx_http_sandbox_route_t *route,
    ngx_http_sandbox_cache_ttl_t *ttl)
{
    size_t   klen;
    u_char   buf[NGX_HTTP_SANDBOX_CACHE_KEY_MAX];
    u_char   val[1 + NGX_SOCKADDR_STRLEN];

    klen = ngx_http_sandbox_cache_route_key(buf, user, name);

    if (klen == 0 || route->addr.len > NGX_SOCKADDR_STRLEN) {
        return;
    }

    val[0] = (u_char) route->state;
    ngx_memcpy(val + 1, route->addr.data, route->addr.len);

    /* the owner is in the key: "r" user "/" name */

    ngx_http_sandbox_cache_put(zone, buf, klen, val, 1 + route->addr.len,
                               1, user->len,
                               route->state == NGX_HTTP_SANDBOX_ROUTE_READY
                               ? ttl->ttl : ttl->negative_ttl, 0);
}


void
ngx_http_sandbox_cache_drop_route(ngx_shm_zone_t *zone, ngx_str_t *user,
    ngx_str_t *name)
{
    size_t  klen;
    u_char  buf[NGX_HTTP_SANDBOX_CACHE_KEY_MAX];

    klen = ngx_http_sandbox_cache_route_key(buf, user, name);

    if (klen) {
        ngx_http_sandbox_cache_delete(zone, buf, klen);
    }
}


void
ngx_http_sandbox_cache_flush(ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ctx->sh->generation++;
    ctx->sh->stats.flushes++;
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * A subscriber (re)joined sbx:events.  Messages published while nobody was
 * listening are lost, so unless another subscriber has been live all along
 * (a reload overlaps old and new workers), everything cached is suspect.
 */

ngx_uint_t
ngx_http_sandbox_cache_subscribed(ngx_shm_zone_t *zone, ngx_msec_t live)
{
    ngx_uint_t                     flush;
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    flush = ctx->sh->subscribers == 0
            || (ngx_msec_int_t) (ngx_current_msec - ctx->sh->heartbeat)
               > (ngx_msec_int_t) live;

    if (flush) {
        ctx->sh->generation++;
        ctx->sh->stats.flushes++;
    }

    ctx->sh->subscribers++;
    ctx->sh->heartbeat = ngx_current_msec;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return flush;
}


void
ngx_http_sandbox_cache_unsubscribed(ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->subscribers) {
        ctx->sh->subscribers--;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_sandbox_cache_heartbeat(ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;
    ctx->sh->heartbeat = ngx_current_msec;
}


/*
 * Messages of the sbx:events channel (docs/redis-data-model.md):
 * "key <sha256hex>", "user <name>", "route <user> <name>", "flush".
 */

void
ngx_http_sandbox_cache_event(ngx_shm_zone_t *zone, u_char *msg, size_t len,
    ngx_log_t *log)
{
    u_char     *p, *last, *sp;
    ngx_str_t   user, name;
    u_char      buf[NGX_HTTP_SANDBOX_CACHE_KEY_LEN];

    last = msg + len;

    if (len == 5 && ngx_strncmp(msg, "flush", 5) == 0) {
        ngx_http_sandbox_cache_flush(zone);
        return;
    }

    if (len == 4 + 64 && ngx_strncmp(msg, "key ", 4) == 0
        && ngx_http_sandbox_cache_key_of(buf, msg + 4) == NGX_OK)
    {
        ngx_http_sandbox_cache_delete(zone, buf, sizeof(buf));
        return;
    }

    if (len > 5 && ngx_strncmp(msg, "user ", 5) == 0) {
        ngx_http_sandbox_cache_delete_owner(zone, msg + 5, len - 5);
        return;
    }

    if (len > 6 && ngx_strncmp(msg, "route ", 6) == 0) {
        p = msg + 6;
        sp = ngx_strlchr(p, last, ' ');

        if (sp != NULL && sp > p && sp + 1 < last) {
            user.data = p;
            user.len = sp - p;
            name.data = sp + 1;
            name.len = last - sp - 1;

            ngx_http_sandbox_cache_drop_route(zone, &user, &name);
            return;
        }
    }

    /* an unknown message may mean a newer writer: be safe, drop it all */

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "sandbox: unknown invalidation \"%*s\", flushing cache",
                  ngx_min(len, 128), msg);

    ngx_http_sandbox_cache_flush(zone);
}


ngx_http_sandbox_cache_stats_t *
ngx_http_sandbox_cache_stats(ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;

    return &ctx->sh->stats;
}


size_t
ngx_http_sandbox_cache_size(ngx_shm_zone_t *zone)
{
    return zone->shm.size;
}


/* bytes the entries use, not counting the zone's fixed structures */

size_t
ngx_http_sandbox_cache_used(ngx_shm_zone_t *zone)
{
    size_t                         pages;
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;

    pages = (ctx->shpool->end - ctx->shpool->start) / ngx_pagesize;

    return (pages - ctx->shpool->pfree) * ngx_pagesize
           - (ctx->sh ? ctx->sh->base : 0);
}


ngx_uint_t
ngx_http_sandbox_cache_generation(ngx_shm_zone_t *zone)
{
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = zone->data;

    return ctx->sh->generation;
}
