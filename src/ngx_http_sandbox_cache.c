
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
 * messages the API and the sync daemon publish on sbx:events
 * (ngx_http_sandbox_cache_inval.c); the entry layout and the table's
 * primitives are in ngx_http_sandbox_cache_table.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_cache_table.h"
#include "ngx_http_sandbox_shm.h"


static ngx_int_t ngx_http_sandbox_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
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
static void ngx_http_sandbox_cache_expire(ngx_http_sandbox_cache_ctx_t *ctx,
    ngx_uint_t force);
static void ngx_http_sandbox_cache_evict(ngx_http_sandbox_cache_ctx_t *ctx);


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

    ngx_uint_t                     n, fresh;
    ngx_http_sandbox_cache_ctx_t  *ctx;

    ctx = shm_zone->data;

    /* on reload the zone and its entries carry over */

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->sh = ngx_http_sandbox_shm_init(shm_zone,
                                        sizeof(ngx_http_sandbox_cache_sh_t),
                                        &ctx->shpool, &fresh);
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    if (!fresh) {
        return NGX_OK;
    }

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

    /* a full zone evicts the oldest entries; that is not worth an alert */

    if (ngx_http_sandbox_shm_name(shm_zone, "cache") != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->sh->base = ngx_http_sandbox_cache_used(shm_zone);

    return NGX_OK;
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

    /* value: state, expires, limits, id length, id, user */

    p = v.data;
    last = v.data + v.len;

    if (v.len < 1 + sizeof(time_t) + sizeof(sbx_limits_t) + 1) {
        return NGX_HTTP_SANDBOX_CACHE_MISS;
    }

    key->state = *p++;
    ngx_memcpy(&key->expires, p, sizeof(time_t));
    p += sizeof(time_t);
    ngx_memcpy(&key->limits, p, sizeof(sbx_limits_t));
    p += sizeof(sbx_limits_t);
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
    u_char    val[1 + sizeof(time_t) + sizeof(sbx_limits_t) + 1 + 255 + 255];

    ngx_http_sandbox_cache_digest_key(buf, digest);

    idlen = ngx_min(key->id.len, 255);

    if (key->user.len > 255) {
        return;
    }

    p = val;
    *p++ = (u_char) key->state;
    p = ngx_cpymem(p, &key->expires, sizeof(time_t));
    p = ngx_cpymem(p, &key->limits, sizeof(sbx_limits_t));
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


/* routes */

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
