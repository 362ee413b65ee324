
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The data plane's limits, held for all workers in one shared zone: an
 * rbtree of entries (a key's bucket and its requests in flight; a user's
 * requests in flight) with an LRU queue in a slab pool, as limit_req
 * keeps its own; the bucket's arithmetic is sandbox_limit.c's.
 *
 * A request let through holds a slot (a "hold": which key and user entry
 * it counts in) from the access phase until its pool is destroyed, that
 * is after its upstream connection is closed or kept: an open stream
 * holds its slot for its whole life.  Normal ends, client aborts,
 * upstream resets and timeouts all end in the pool's destruction; the
 * worker's own exit and death are ngx_http_sandbox_limit_workers.c's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_limit_zone.h"


/* what a request's pool cleanup needs */
typedef struct {
    ngx_http_sandbox_limit_ctx_t   *ctx;
    ngx_http_sandbox_limit_hold_t  *hold;
} ngx_http_sandbox_limit_cln_t;


/* what one request asks of the zone */
typedef struct {
    u_char                         *digest;
    ngx_str_t                      *user;
    uint64_t                        rate;
    uint64_t                        burst;
    ngx_uint_t                      key_conc;
    ngx_uint_t                      user_conc;

    ngx_uint_t                      kind;       /* of a refusal */
    ngx_uint_t                      limit;
    sbx_limit_info_t                info;
} ngx_http_sandbox_limit_ask_t;


static ngx_int_t ngx_http_sandbox_limit_take(
    ngx_http_sandbox_limit_ctx_t *ctx, ngx_http_sandbox_limit_ask_t *ask,
    ngx_http_sandbox_limit_hold_t **hold);
static ngx_http_sandbox_limit_node_t *ngx_http_sandbox_limit_get(
    ngx_http_sandbox_limit_ctx_t *ctx, u_char kind, u_char *id, size_t len);
static void *ngx_http_sandbox_limit_alloc(ngx_http_sandbox_limit_ctx_t *ctx,
    size_t size);
static void ngx_http_sandbox_limit_expire(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_uint_t force);
static void ngx_http_sandbox_limit_cleanup(void *data);
static ngx_int_t ngx_http_sandbox_limit_headers(ngx_http_request_t *r,
    ngx_http_sandbox_limit_ask_t *ask);


ngx_int_t
ngx_http_sandbox_limit_request(ngx_http_request_t *r, u_char *digest,
    ngx_str_t *user, sbx_limits_t *limits, ngx_uint_t *kind,
    const char **message)
{
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_pool_cleanup_t             *cln;
    ngx_http_sandbox_loc_conf_t    *slcf;
    ngx_http_sandbox_limit_ctx_t   *ctx;
    ngx_http_sandbox_limit_cln_t   *lcln;
    ngx_http_sandbox_limit_hold_t  *hold;
    ngx_http_sandbox_limit_ask_t    ask;

    *kind = NGX_HTTP_SANDBOX_LIMIT_NONE;

    /* one check per request: not again after an internal redirect */

    if (ngx_http_sandbox_limit_shm == NULL || r != r->main || r->internal) {
        return NGX_OK;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    /* the key's own override, its user's, the location's default */

    ngx_memzero(&ask, sizeof(ngx_http_sandbox_limit_ask_t));

    ask.digest = digest;
    ask.user = user;
    ask.burst = slcf->limit.burst;

    if (digest) {
        ask.rate = limits->rate ? limits->rate
                   : limits->user_rate ? limits->user_rate
                   : slcf->limit.rate;
        ask.key_conc = limits->conc ? limits->conc : slcf->limit.key_conc;
    }

    ask.user_conc = limits->user_conc ? limits->user_conc
                                      : slcf->limit.user_conc;

    if (user->len == 0 || user->len > 255) {
        ask.user_conc = 0;
    }

    *kind = NGX_HTTP_SANDBOX_LIMIT_OK;

    if (ask.rate == 0 && ask.key_conc == 0 && ask.user_conc == 0) {
        return NGX_OK;
    }

    ctx = ngx_http_sandbox_limit_shm->data;

    lcln = NULL;
    cln = NULL;

    if (ask.key_conc || ask.user_conc) {
        cln = ngx_pool_cleanup_add(r->pool,
                                   sizeof(ngx_http_sandbox_limit_cln_t));
        if (cln == NULL) {
            return NGX_ERROR;
        }

        lcln = cln->data;
        lcln->ctx = ctx;
        lcln->hold = NULL;
    }

    rc = ngx_http_sandbox_limit_take(ctx, &ask, &hold);

    if (rc == NGX_OK) {
        if (lcln) {
            lcln->hold = hold;
            cln->handler = ngx_http_sandbox_limit_cleanup;
        }

        return NGX_OK;
    }

    if (rc != NGX_DECLINED) {
        return rc;
    }

    *kind = ask.kind;

    p = ngx_pnalloc(r->pool, 128);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ask.kind == NGX_HTTP_SANDBOX_LIMIT_RATE) {
        ngx_sprintf(p, "Rate limit exceeded for this API key: "
                       "retry in %uL s%Z", ask.info.retry_after);

    } else {
        ngx_sprintf(p, "Too many concurrent requests for this %s "
                       "(limit %ui)%Z",
                    ask.limit == ask.key_conc ? "API key" : "user",
                    ask.limit);
    }

    *message = (const char *) p;

    if (ngx_http_sandbox_limit_headers(r, &ask) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * Under the lock: the key's and the user's entries are found (or made),
 * the bucket and the counts judged, and only when every limit passes is
 * anything changed.
 */

static ngx_int_t
ngx_http_sandbox_limit_take(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_ask_t *ask, ngx_http_sandbox_limit_hold_t **hold)
{
    uint64_t                        level;
    ngx_uint_t                      w;
    sbx_bucket_t                    b;
    ngx_http_sandbox_limit_node_t  *kn, *un;
    ngx_http_sandbox_limit_hold_t  *h;

    *hold = NULL;
    kn = NULL;
    un = NULL;
    h = NULL;
    level = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ask->rate || ask->key_conc) {
        kn = ngx_http_sandbox_limit_get(ctx, NGX_HTTP_SANDBOX_LIMIT_KEY,
                                        ask->digest,
                                        NGX_HTTP_SANDBOX_SHA256_LEN);
        if (kn == NULL) {
            goto full;
        }
    }

    if (ask->user_conc) {
        un = ngx_http_sandbox_limit_get(ctx, NGX_HTTP_SANDBOX_LIMIT_USER,
                                        ask->user->data, ask->user->len);
        if (un == NULL) {
            goto full;
        }
    }

    if (ask->rate) {
        b.level = kn->level;
        b.last = kn->last;

        if (sbx_limit_bucket(&b, ngx_current_msec, ask->rate, ask->burst,
                             &level, &ask->info))
        {
            ask->kind = NGX_HTTP_SANDBOX_LIMIT_RATE;
            ctx->sh->refused_rate++;
            goto refused;
        }
    }

    /* in the cluster scope, with what the other gateways hold */

    if (ask->key_conc
        && kn->conc + ngx_http_sandbox_limit_remote(ctx, kn) >= ask->key_conc)
    {
        ask->limit = ask->key_conc;
        goto busy;
    }

    if (un
        && un->conc + ngx_http_sandbox_limit_remote(ctx, un) >= ask->user_conc)
    {
        ask->limit = ask->user_conc;
        goto busy;
    }

    if (ask->key_conc || un) {
        h = ngx_http_sandbox_limit_alloc(ctx,
                                       sizeof(ngx_http_sandbox_limit_hold_t));
        if (h == NULL) {
            goto full;
        }

        h->key = ask->key_conc ? kn : NULL;
        h->user = un;

        if (h->key) {
            h->key->conc++;
        }

        if (un) {
            un->conc++;
        }

        w = ngx_http_sandbox_limit_worker;

        if (w < NGX_HTTP_SANDBOX_LIMIT_WORKERS) {
            ngx_queue_insert_head(&ctx->sh->workers[w].holds, &h->queue);

        } else {
            ngx_queue_init(&h->queue);
        }

        ctx->sh->slots++;
    }

    if (ask->rate) {
        kn->level = level;
        kn->last = ngx_current_msec;
        kn->rate = (uint32_t) ask->rate;
        kn->adm++;
    }

    if (ngx_http_sandbox_limit_sync) {
        if (kn) {
            kn->used = (uint32_t) ngx_current_msec;
            ngx_http_sandbox_limit_touch(ctx, kn);
        }

        if (un) {
            un->used = (uint32_t) ngx_current_msec;
            ngx_http_sandbox_limit_touch(ctx, un);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    *hold = h;

    return NGX_OK;

busy:

    ask->kind = NGX_HTTP_SANDBOX_LIMIT_CONCURRENCY;
    ctx->sh->refused_concurrency++;

refused:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_DECLINED;

full:

    /* every entry is in use: the zone is too small; let it through */

    ctx->sh->full++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "sandbox: limit zone full, request not limited");

    return NGX_OK;
}


/* called locked: the entry of (kind, id), made if new, moved to the head */

static ngx_http_sandbox_limit_node_t *
ngx_http_sandbox_limit_get(ngx_http_sandbox_limit_ctx_t *ctx, u_char kind,
    u_char *id, size_t len)
{
    size_t                          size;
    uint32_t                        hash;
    ngx_rbtree_node_t              *node;
    ngx_http_sandbox_limit_node_t  *ln;

    hash = ngx_crc32_short(id, len) ^ kind;

    ln = ngx_http_sandbox_limit_find(ctx, kind, id, len, hash);

    if (ln) {
        ngx_queue_remove(&ln->queue);
        ngx_queue_insert_head(&ctx->sh->lru, &ln->queue);
        return ln;
    }

    /* limit_req's way: drop a couple of idle, drained entries first */

    ngx_http_sandbox_limit_expire(ctx, 0);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_sandbox_limit_node_t, data) + 1 + len;

    node = ngx_http_sandbox_limit_alloc(ctx, size);
    if (node == NULL) {
        return NULL;
    }

    node->key = hash;

    ln = (ngx_http_sandbox_limit_node_t *) &node->color;

    ngx_memzero(&ln->len, size - offsetof(ngx_rbtree_node_t, color) - 1);

    ln->len = (u_char) (1 + len);
    ln->last = ngx_current_msec;
    ln->data[0] = kind;
    ngx_memcpy(ln->data + 1, id, len);

    ngx_rbtree_insert(&ctx->sh->rbtree, node);
    ngx_queue_insert_head(&ctx->sh->lru, &ln->queue);

    ctx->sh->entries++;

    return ln;
}


/* called locked: the entry of (kind, id), or NULL */

ngx_http_sandbox_limit_node_t *
ngx_http_sandbox_limit_find(ngx_http_sandbox_limit_ctx_t *ctx, u_char kind,
    u_char *id, size_t len, uint32_t hash)
{
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_sandbox_limit_node_t  *ln;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        ln = (ngx_http_sandbox_limit_node_t *) &node->color;

        /* the order of the insertion's: kind, then id */

        rc = (ngx_int_t) kind - (ngx_int_t) ln->data[0];

        if (rc == 0) {
            rc = ngx_memn2cmp(id, ln->data + 1, len, (size_t) ln->len - 1);
        }

        if (rc == 0) {
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* called locked: on no room, idle entries are dropped and it tries again */

static void *
ngx_http_sandbox_limit_alloc(ngx_http_sandbox_limit_ctx_t *ctx, size_t size)
{
    void  *p;

    p = ngx_slab_alloc_locked(ctx->shpool, size);

    if (p == NULL) {
        ngx_http_sandbox_limit_expire(ctx, 1);
        p = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    return p;
}


/*
 * Called locked.  Entries in use (requests in flight) are never dropped:
 * a hold points at them; nor are those the next cluster sync lists; they
 * go back to the head.  Without force, only
 * entries whose bucket has drained are dropped, two at most (forgetting
 * them changes nothing); with force, up to eight idle ones whatever their
 * bucket (the least recently used keys get a fresh bucket).
 */

static void
ngx_http_sandbox_limit_expire(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_uint_t force)
{
    ngx_uint_t                      n, seen;
    ngx_queue_t                    *q;
    ngx_rbtree_node_t              *node;
    ngx_http_sandbox_limit_node_t  *ln;

    n = 0;

    for (seen = 0; seen < 16 && n < (force ? 8 : 2); seen++) {

        if (ngx_queue_empty(&ctx->sh->lru)) {
            return;
        }

        q = ngx_queue_last(&ctx->sh->lru);
        ln = ngx_queue_data(q, ngx_http_sandbox_limit_node_t, queue);

        if (ln->conc || ln->dirty) {
            ngx_queue_remove(q);
            ngx_queue_insert_head(&ctx->sh->lru, q);
            continue;
        }

        /* only a drained bucket can be forgotten without effect */

        if (!force
            && ln->level > (uint64_t) ln->rate
                           * (ngx_current_msec - (ngx_msec_t) ln->last)
                           / 1000)
        {
            return;
        }

        ngx_queue_remove(q);

        node = ngx_http_sandbox_limit_rbnode(ln);

        ngx_rbtree_delete(&ctx->sh->rbtree, node);
        ngx_slab_free_locked(ctx->shpool, node);

        ctx->sh->entries--;
        n++;

        if (force) {
            ctx->sh->evicted++;
        }
    }
}


static void
ngx_http_sandbox_limit_cleanup(void *data)
{
    ngx_http_sandbox_limit_cln_t *lcln = data;

    ngx_http_sandbox_limit_ctx_t  *ctx;

    ctx = lcln->ctx;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ngx_http_sandbox_limit_release(ctx, lcln->hold);
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* called locked */

void
ngx_http_sandbox_limit_release(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_hold_t *hold)
{
    if (hold->key && hold->key->conc) {
        hold->key->conc--;

        if (ngx_http_sandbox_limit_sync) {
            ngx_http_sandbox_limit_touch(ctx, hold->key);
        }
    }

    if (hold->user && hold->user->conc) {
        hold->user->conc--;

        if (ngx_http_sandbox_limit_sync) {
            ngx_http_sandbox_limit_touch(ctx, hold->user);
        }
    }

    ngx_queue_remove(&hold->queue);
    ngx_slab_free_locked(ctx->shpool, hold);

    ctx->sh->slots--;
}



/*
 * A rate refusal tells the bucket's size (burst + 1), that nothing is
 * left, when it is empty again and when the next request passes.  The
 * count of requests in flight says nothing of when one ends: a
 * concurrency refusal tells its limit and to try again in a second.
 */

static ngx_int_t
ngx_http_sandbox_limit_headers(ngx_http_request_t *r,
    ngx_http_sandbox_limit_ask_t *ask)
{
    sbx_limit_info_t  *info;

    info = &ask->info;

    if (ask->kind == NGX_HTTP_SANDBOX_LIMIT_CONCURRENCY) {
        info->limit = ask->limit;
        info->remaining = 0;
        info->reset = 1;
        info->retry_after = 1;
    }

    if (ngx_http_sandbox_header_uint(r, "Retry-After", info->retry_after)
        != NGX_OK
        || ngx_http_sandbox_header_uint(r, "RateLimit-Limit", info->limit)
           != NGX_OK
        || ngx_http_sandbox_header_uint(r, "RateLimit-Remaining",
                                         info->remaining)
           != NGX_OK
        || ngx_http_sandbox_header_uint(r, "RateLimit-Reset", info->reset)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_sandbox_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_sandbox_route_ctx_t  *ctx;

    static ngx_str_t  kinds[] = {
        ngx_null_string, ngx_string("ok"), ngx_string("rate"),
        ngx_string("concurrency")
    };

    ctx = ngx_http_sandbox_route_ctx(r->main);

    if (ctx == NULL || ctx->limit == NGX_HTTP_SANDBOX_LIMIT_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = kinds[ctx->limit].len;
    v->data = kinds[ctx->limit].data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


