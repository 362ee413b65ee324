
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
 * holds its slot for its whole life.  Every hold is listed under the
 * worker that took it, in the zone.  A worker gives its slots back as
 * its requests end (normal end, client abort, upstream reset, timeout:
 * all end in the pool's destruction) and, whatever is left, when it
 * exits; the slots of a worker that died without exiting (killed by a
 * signal, crashed) are reclaimed by the first worker to notice that its
 * process is gone: at every worker's start and once a second.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_limit.h"


/* workers of all generations alive at once (a reload doubles them) */
#define NGX_HTTP_SANDBOX_LIMIT_WORKERS  256

/* how often a worker looks for dead workers' slots */
#define NGX_HTTP_SANDBOX_LIMIT_SCAN     1000

#define NGX_HTTP_SANDBOX_LIMIT_KEY      'k'
#define NGX_HTTP_SANDBOX_LIMIT_USER     'u'


/*
 * An entry starts at the rbtree node's color, as limit_req's do: a key's
 * entry (33 bytes of id) fits a 128-byte slab chunk.
 */

typedef struct {
    u_char                          color;
    u_char                          len;
    u_char                          pad[2];
    uint32_t                        conc;       /* requests in flight */
    ngx_queue_t                     queue;      /* LRU */
    uint64_t                        level;      /* the bucket */
    uint64_t                        last;
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

    ngx_http_sandbox_limit_worker_t workers[
                                        NGX_HTTP_SANDBOX_LIMIT_WORKERS];
} ngx_http_sandbox_limit_sh_t;


typedef struct {
    ngx_http_sandbox_limit_sh_t    *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_sandbox_limit_ctx_t;


/* what a request's pool cleanup needs */
typedef struct {
    ngx_http_sandbox_limit_ctx_t   *ctx;
    ngx_http_sandbox_limit_hold_t  *hold;
    ngx_uint_t                      worker;
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


static ngx_int_t ngx_http_sandbox_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_sandbox_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_sandbox_limit_node_t *ngx_http_sandbox_limit_get(
    ngx_http_sandbox_limit_ctx_t *ctx, u_char kind, u_char *id, size_t len);
static void *ngx_http_sandbox_limit_alloc(ngx_http_sandbox_limit_ctx_t *ctx,
    size_t size);
static void ngx_http_sandbox_limit_expire(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_uint_t force);
static ngx_int_t ngx_http_sandbox_limit_take(
    ngx_http_sandbox_limit_ctx_t *ctx, ngx_http_sandbox_limit_ask_t *ask,
    ngx_http_sandbox_limit_hold_t **hold);
static ngx_int_t ngx_http_sandbox_limit_headers(ngx_http_request_t *r,
    ngx_http_sandbox_limit_ask_t *ask);
static void ngx_http_sandbox_limit_cleanup(void *data);
static void ngx_http_sandbox_limit_release(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_hold_t *hold);
static ngx_uint_t ngx_http_sandbox_limit_reclaim(
    ngx_http_sandbox_limit_ctx_t *ctx, ngx_uint_t w);
static void ngx_http_sandbox_limit_scan(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_log_t *log);
static void ngx_http_sandbox_limit_scan_handler(ngx_event_t *ev);


/* this worker's zone, from its cycle's configuration */
static ngx_shm_zone_t  *ngx_http_sandbox_limit_shm;

/* this worker's row in the zone's table */
static ngx_uint_t       ngx_http_sandbox_limit_worker =
                                            NGX_HTTP_SANDBOX_LIMIT_WORKERS;
static ngx_event_t      ngx_http_sandbox_limit_scan_ev;


/* configuration */

char *
ngx_http_sandbox_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    u_char                        *p;
    ssize_t                        size;
    ngx_str_t                     *value, name, s;
    ngx_shm_zone_t                *shm_zone;
    ngx_http_sandbox_limit_ctx_t  *ctx;

    if (smcf->limit_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" needs a size of at least %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_limit_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_sandbox_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_sandbox_limit_init_zone;
    shm_zone->data = ctx;

    smcf->limit_zone = shm_zone;

    return NGX_CONF_OK;
}


/* sandbox_limit_rate off | rate [burst=N] */

char *
ngx_http_sandbox_limit_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_limit_conf_t  *lc;
    ngx_str_t                      *value;
    ngx_int_t                       n;
    ngx_uint_t                      i;

    lc = (ngx_http_sandbox_limit_conf_t *) ((char *) conf + cmd->offset);

    if (lc->rate_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lc->rate_set = 1;
    lc->rate = 0;
    lc->burst = 0;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[1].data, "off") == 0)
    {
        return NGX_CONF_OK;
    }

    lc->rate = sbx_limit_rate_parse((char *) value[1].data, value[1].len);

    if (lc->rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\": \"<N>r/s\" or \"<N>r/m\" "
                           "with N from 1 to %d", &value[1], SBX_LIMIT_MAX);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n == NGX_ERROR || n > SBX_LIMIT_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            lc->burst = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* sandbox_limit_concurrency off | [key=N] [user=M] */

char *
ngx_http_sandbox_limit_concurrency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                      *value;
    ngx_int_t                       n;
    ngx_uint_t                      i, *slot;
    ngx_http_sandbox_limit_conf_t  *lc;

    lc = (ngx_http_sandbox_limit_conf_t *) ((char *) conf + cmd->offset);

    if (lc->conc_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lc->conc_set = 1;
    lc->key_conc = 0;
    lc->user_conc = 0;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[1].data, "off") == 0)
    {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            slot = &lc->key_conc;
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);

        } else if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            slot = &lc->user_conc;
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (n == NGX_ERROR || n < 1 || n > SBX_LIMIT_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid limit \"%V\": from 1 to %d",
                               &value[i], SBX_LIMIT_MAX);
            return NGX_CONF_ERROR;
        }

        *slot = n;
    }

    return NGX_CONF_OK;
}


void
ngx_http_sandbox_limit_conf_init(ngx_http_sandbox_limit_conf_t *lc)
{
    lc->rate_set = NGX_CONF_UNSET;
    lc->conc_set = NGX_CONF_UNSET;
}


void
ngx_http_sandbox_limit_conf_merge(ngx_http_sandbox_limit_conf_t *conf,
    ngx_http_sandbox_limit_conf_t *prev)
{
    if (conf->rate_set == NGX_CONF_UNSET) {
        conf->rate_set = prev->rate_set;
        conf->rate = prev->rate;
        conf->burst = prev->burst;
    }

    if (conf->conc_set == NGX_CONF_UNSET) {
        conf->conc_set = prev->conc_set;
        conf->key_conc = prev->key_conc;
        conf->user_conc = prev->user_conc;
    }
}


static ngx_int_t
ngx_http_sandbox_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sandbox_limit_ctx_t  *octx = data;

    size_t                         len;
    ngx_uint_t                     i;
    ngx_http_sandbox_limit_ctx_t  *ctx;

    ctx = shm_zone->data;

    /* a reload keeps the zone, its entries and the slots held */

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

    ctx->sh = ngx_slab_alloc(ctx->shpool,
                             sizeof(ngx_http_sandbox_limit_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ctx->sh, sizeof(ngx_http_sandbox_limit_sh_t));
    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_sandbox_limit_rbtree_insert);
    ngx_queue_init(&ctx->sh->lru);

    for (i = 0; i < NGX_HTTP_SANDBOX_LIMIT_WORKERS; i++) {
        ngx_queue_init(&ctx->sh->workers[i].holds);
    }

    len = sizeof(" in sandbox limit zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in sandbox limit zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts, and only then refuses: no "[crit]" for it */

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_sandbox_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t              **p;
    ngx_http_sandbox_limit_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            ln = (ngx_http_sandbox_limit_node_t *) &node->color;
            lnt = (ngx_http_sandbox_limit_node_t *) &temp->color;

            p = (ngx_memn2cmp(ln->data, lnt->data, ln->len, lnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* process hooks */

ngx_int_t
ngx_http_sandbox_limit_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i, w;
    ngx_http_sandbox_limit_ctx_t  *ctx;
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sandbox_module);

    ngx_http_sandbox_limit_shm = smcf ? smcf->limit_zone : NULL;

    if (ngx_http_sandbox_limit_shm == NULL) {
        return NGX_OK;
    }

    ctx = ngx_http_sandbox_limit_shm->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* a row of a dead worker (a crash is followed by a respawn) is freed */

    ctx->sh->scanned = ngx_current_msec;

    w = NGX_HTTP_SANDBOX_LIMIT_WORKERS;

    for (i = 0; i < NGX_HTTP_SANDBOX_LIMIT_WORKERS; i++) {
        if (ctx->sh->workers[i].pid != 0) {
            (void) ngx_http_sandbox_limit_reclaim(ctx, i);
        }

        if (ctx->sh->workers[i].pid == 0 && w == NGX_HTTP_SANDBOX_LIMIT_WORKERS)
        {
            w = i;
        }
    }

    if (w < NGX_HTTP_SANDBOX_LIMIT_WORKERS) {
        ctx->sh->workers[w].pid = ngx_pid;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (w == NGX_HTTP_SANDBOX_LIMIT_WORKERS) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "sandbox: more than %d workers share the limit zone: "
                      "this one's slots cannot be reclaimed if it dies",
                      NGX_HTTP_SANDBOX_LIMIT_WORKERS);
    }

    ngx_http_sandbox_limit_worker = w;

    ngx_http_sandbox_limit_scan_ev.handler =
                                        ngx_http_sandbox_limit_scan_handler;
    ngx_http_sandbox_limit_scan_ev.data = ctx;
    ngx_http_sandbox_limit_scan_ev.log = cycle->log;
    ngx_http_sandbox_limit_scan_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_sandbox_limit_scan_ev,
                  NGX_HTTP_SANDBOX_LIMIT_SCAN);

    return NGX_OK;
}


void
ngx_http_sandbox_limit_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     n, w;
    ngx_http_sandbox_limit_ctx_t  *ctx;

    w = ngx_http_sandbox_limit_worker;

    if (ngx_http_sandbox_limit_shm == NULL
        || w == NGX_HTTP_SANDBOX_LIMIT_WORKERS)
    {
        return;
    }

    ctx = ngx_http_sandbox_limit_shm->data;

    /* nothing should be left: requests give their slots as they end */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ctx->sh->workers[w].pid = -1;           /* as good as dead */
    n = ngx_http_sandbox_limit_reclaim(ctx, w);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "sandbox: %ui concurrency slots given back at exit", n);
    }

    ngx_http_sandbox_limit_worker = NGX_HTTP_SANDBOX_LIMIT_WORKERS;
}


static void
ngx_http_sandbox_limit_scan_handler(ngx_event_t *ev)
{
    ngx_http_sandbox_limit_ctx_t *ctx = ev->data;

    ngx_http_sandbox_limit_scan(ctx, ev->log);

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_SANDBOX_LIMIT_SCAN);
    }
}


/*
 * Once a second across all workers: a row whose process is gone gives
 * its slots back.  kill(pid, 0) only asks; workers share a user, so any
 * answer but "no such process" means a process of ours is there (a pid
 * reused by another of the same user's processes would keep the slots
 * until that one ends).
 */

static void
ngx_http_sandbox_limit_scan(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_log_t *log)
{
    ngx_uint_t  i, n;
    ngx_pid_t   pid;

    if (!ngx_shmtx_trylock(&ctx->shpool->mutex)) {
        return;
    }

    if (ngx_current_msec - ctx->sh->scanned < NGX_HTTP_SANDBOX_LIMIT_SCAN) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    ctx->sh->scanned = ngx_current_msec;

    n = 0;
    pid = 0;

    for (i = 0; i < NGX_HTTP_SANDBOX_LIMIT_WORKERS; i++) {
        if (ctx->sh->workers[i].pid != 0) {
            pid = ctx->sh->workers[i].pid;
            n += ngx_http_sandbox_limit_reclaim(ctx, i);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (n) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "sandbox: %ui concurrency slots of dead workers "
                      "reclaimed (last pid %P)", n, pid);
    }
}


/* called locked: frees row w and its slots if its process is gone */

static ngx_uint_t
ngx_http_sandbox_limit_reclaim(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_uint_t w)
{
    ngx_uint_t                      n;
    ngx_pid_t                       pid;
    ngx_queue_t                    *q;
    ngx_http_sandbox_limit_hold_t  *hold;

    pid = ctx->sh->workers[w].pid;

    if (pid > 0 && (pid == ngx_pid || kill(pid, 0) == 0 || ngx_errno != ESRCH))
    {
        return 0;
    }

    n = 0;

    while (!ngx_queue_empty(&ctx->sh->workers[w].holds)) {
        q = ngx_queue_head(&ctx->sh->workers[w].holds);
        hold = ngx_queue_data(q, ngx_http_sandbox_limit_hold_t, queue);
        ngx_http_sandbox_limit_release(ctx, hold);
        n++;
    }

    ctx->sh->reclaimed += n;
    ctx->sh->workers[w].pid = 0;

    return n;
}


/* the request's check */

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
            lcln->worker = ngx_http_sandbox_limit_worker;
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

    if (ask->key_conc && kn->conc >= ask->key_conc) {
        ask->limit = ask->key_conc;
        goto busy;
    }

    if (un && un->conc >= ask->user_conc) {
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
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_sandbox_limit_node_t  *ln;

    hash = ngx_crc32_short(id, len) ^ kind;

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
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&ctx->sh->lru, &ln->queue);
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
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

    ln->len = (u_char) (1 + len);
    ln->conc = 0;
    ln->level = 0;
    ln->last = ngx_current_msec;
    ln->data[0] = kind;
    ngx_memcpy(ln->data + 1, id, len);

    ngx_rbtree_insert(&ctx->sh->rbtree, node);
    ngx_queue_insert_head(&ctx->sh->lru, &ln->queue);

    ctx->sh->entries++;

    return ln;
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
 * a hold points at them; they go back to the head.  Without force, only
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

        if (ln->conc) {
            ngx_queue_remove(q);
            ngx_queue_insert_head(&ctx->sh->lru, q);
            continue;
        }

        /* a drained bucket: no rate holds more than a day of requests */

        if (!force && ln->level
            && ngx_current_msec - (ngx_msec_t) ln->last < 60000)
        {
            return;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

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

static void
ngx_http_sandbox_limit_release(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_hold_t *hold)
{
    if (hold->key && hold->key->conc) {
        hold->key->conc--;
    }

    if (hold->user && hold->user->conc) {
        hold->user->conc--;
    }

    ngx_queue_remove(&hold->queue);
    ngx_slab_free_locked(ctx->shpool, hold);

    ctx->sh->slots--;
}


static ngx_int_t
ngx_http_sandbox_limit_header(ngx_http_request_t *r, char *name,
    uint64_t value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.len = ngx_sprintf(h->value.data, "%uL", value) - h->value.data;

    return NGX_OK;
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

    if (ngx_http_sandbox_limit_header(r, "Retry-After", info->retry_after)
        != NGX_OK
        || ngx_http_sandbox_limit_header(r, "RateLimit-Limit", info->limit)
           != NGX_OK
        || ngx_http_sandbox_limit_header(r, "RateLimit-Remaining",
                                         info->remaining)
           != NGX_OK
        || ngx_http_sandbox_limit_header(r, "RateLimit-Reset", info->reset)
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


/*
 * The zone's counters, and a walk of its entries (under the lock, for
 * this status answer only): the requests in flight they count.
 */

json_t *
ngx_http_sandbox_limit_status(ngx_cycle_t *cycle)
{
    size_t                          used;
    ngx_uint_t                      keys, users, key_conc, user_conc, w;
    ngx_queue_t                    *q;
    ngx_http_sandbox_limit_sh_t     sh;
    ngx_http_sandbox_limit_ctx_t   *ctx;
    ngx_http_sandbox_limit_node_t  *ln;

    if (ngx_http_sandbox_limit_shm == NULL) {
        return json_null();
    }

    ctx = ngx_http_sandbox_limit_shm->data;

    keys = 0;
    users = 0;
    key_conc = 0;
    user_conc = 0;
    w = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (q = ngx_queue_head(&ctx->sh->lru);
         q != ngx_queue_sentinel(&ctx->sh->lru);
         q = ngx_queue_next(q))
    {
        ln = ngx_queue_data(q, ngx_http_sandbox_limit_node_t, queue);

        if (ln->data[0] == NGX_HTTP_SANDBOX_LIMIT_KEY) {
            keys++;
            key_conc += ln->conc;

        } else {
            users++;
            user_conc += ln->conc;
        }
    }

    for (used = 0; used < NGX_HTTP_SANDBOX_LIMIT_WORKERS; used++) {
        if (ctx->sh->workers[used].pid > 0) {
            w++;
        }
    }

    ngx_memcpy(&sh, ctx->sh, offsetof(ngx_http_sandbox_limit_sh_t, workers));

    used = ((ctx->shpool->end - ctx->shpool->start) / ngx_pagesize
            - ctx->shpool->pfree) * ngx_pagesize;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return json_pack("{sI sI sI sI sI sI sI sI sI sI sI sI sI}",
                     "size", (json_int_t) ngx_http_sandbox_limit_shm->shm.size,
                     "used", (json_int_t) used,
                     "keys", (json_int_t) keys,
                     "users", (json_int_t) users,
                     "in_flight_keys", (json_int_t) key_conc,
                     "in_flight_users", (json_int_t) user_conc,
                     "slots", (json_int_t) sh.slots,
                     "workers", (json_int_t) w,
                     "refused_rate", (json_int_t) sh.refused_rate,
                     "refused_concurrency",
                     (json_int_t) sh.refused_concurrency,
                     "reclaimed", (json_int_t) sh.reclaimed,
                     "evicted", (json_int_t) sh.evicted,
                     "full", (json_int_t) sh.full);
}
