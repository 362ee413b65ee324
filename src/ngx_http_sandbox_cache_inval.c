
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Invalidation of the shared cache: the messages of sbx:events (decoded by
 * sandbox_event.c) drop a key's entry, a user's entries, one route, or
 * everything; and since pub/sub loses what is published while nobody
 * listens, the subscriptions are counted and a gap in listening flushes
 * all.  A flush bumps the zone's generation: every entry becomes a miss
 * in O(1).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_sandbox_cache_table.h"
#include "sandbox_event.h"


static void ngx_http_sandbox_cache_delete(ngx_shm_zone_t *zone, u_char *key,
    size_t klen);
static void ngx_http_sandbox_cache_delete_owner(ngx_shm_zone_t *zone,
    u_char *user, size_t len);


/*
 * Messages of the sbx:events channel (docs/redis-data-model.md):
 * "key <sha256hex>", "user <name>", "route <user> <name>", "flush".
 */

void
ngx_http_sandbox_cache_event(ngx_shm_zone_t *zone, u_char *msg, size_t len,
    ngx_log_t *log)
{
    ngx_str_t    user, name;
    sbx_event_t  ev;
    u_char       buf[NGX_HTTP_SANDBOX_CACHE_KEY_LEN];

    switch (sbx_event_parse(msg, len, &ev)) {

    case SBX_EVENT_FLUSH:
        ngx_http_sandbox_cache_flush(zone);
        return;

    case SBX_EVENT_KEY:
        ngx_http_sandbox_cache_digest_key(buf, ev.digest);
        ngx_http_sandbox_cache_delete(zone, buf, sizeof(buf));
        return;

    case SBX_EVENT_USER:
        ngx_http_sandbox_cache_delete_owner(zone, msg + ev.user_off,
                                            ev.user_len);
        return;

    case SBX_EVENT_ROUTE:
        user.data = msg + ev.user_off;
        user.len = ev.user_len;
        name.data = msg + ev.name_off;
        name.len = ev.name_len;

        ngx_http_sandbox_cache_drop_route(zone, &user, &name);
        return;

    default: /* SBX_EVENT_UNKNOWN */
        break;
    }

    /* an unknown message may mean a newer writer: be safe, drop it all */

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "sandbox: unknown invalidation \"%*s\", flushing cache",
                  ngx_min(len, 128), msg);

    ngx_http_sandbox_cache_flush(zone);
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
