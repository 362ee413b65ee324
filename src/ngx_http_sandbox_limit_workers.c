
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The workers' rows in the limit zone.  Every slot a request holds is
 * listed under the worker that took it; a worker gives back what is left
 * when it exits, and the slots of a worker that died without exiting
 * (killed by a signal, crashed) are reclaimed by the first worker to find
 * its process gone: at every worker's start (the master respawns a dead
 * worker at once) and once a second.  Also the zone's status.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_limit_zone.h"


static void ngx_http_sandbox_limit_scan(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_log_t *log);
static void ngx_http_sandbox_limit_scan_handler(ngx_event_t *ev);


ngx_shm_zone_t  *ngx_http_sandbox_limit_shm;
ngx_uint_t       ngx_http_sandbox_limit_worker =
                                            NGX_HTTP_SANDBOX_LIMIT_WORKERS;
ngx_msec_t       ngx_http_sandbox_limit_sync;

static ngx_event_t  ngx_http_sandbox_limit_scan_ev;


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

    ngx_http_sandbox_limit_sync = smcf->limit_sync;

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

    if (ngx_http_sandbox_limit_sync) {
        ngx_http_sandbox_limit_cluster_init(cycle, ctx);
    }

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

ngx_uint_t
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


/*
 * The zone's counters, and a walk of its entries (under the lock, for
 * this status answer only): the requests in flight they count.
 */

json_t *
ngx_http_sandbox_limit_status(ngx_cycle_t *cycle)
{
    size_t                          used;
    ngx_uint_t                      keys, users, key_conc, user_conc, w;
    ngx_uint_t                      remote;
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
    remote = 0;

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

    for (q = ngx_queue_head(&ctx->sh->lru);
         q != ngx_queue_sentinel(&ctx->sh->lru);
         q = ngx_queue_next(q))
    {
        ln = ngx_queue_data(q, ngx_http_sandbox_limit_node_t, queue);
        remote += ln->remote;
    }

    used = ((ctx->shpool->end - ctx->shpool->start) / ngx_pagesize
            - ctx->shpool->pfree) * ngx_pagesize;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return json_pack("{sI sI sI sI sI sI sI sI sI sI sI sI sI so*}",
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
                     "full", (json_int_t) sh.full,
                     "cluster",
                     ngx_http_sandbox_limit_cluster_status(&sh, remote));
}
