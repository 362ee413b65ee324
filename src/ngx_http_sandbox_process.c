
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Where the module joins nginx's life: after the configuration, its
 * access and log phase handlers; in each worker, its Redis link (or the
 * Sentinels that name the master) and the per-worker parts that use it,
 * made at start and taken down at exit.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_wait.h"


ngx_http_sandbox_redis_t     *ngx_http_sandbox_worker_redis;
ngx_http_sandbox_sentinel_t  *ngx_http_sandbox_worker_sentinel;


ngx_int_t
ngx_http_sandbox_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sandbox_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sandbox_metrics_log_handler;

    return NGX_OK;
}


ngx_int_t
ngx_http_sandbox_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_main_conf_t   *smcf;
    ngx_http_sandbox_redis_conf_t   rc;

    ngx_http_sandbox_request_id_init();

    /* cache manager and loader processes serve no requests */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_http_sandbox_limit_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sandbox_module);

    if (smcf == NULL
        || (smcf->redis_addr == NULL && smcf->redis_sentinel == NULL))
    {
        return NGX_OK;
    }

    ngx_http_sandbox_redis_conf_init(&rc, smcf);

    rc.stats = ngx_http_sandbox_metrics ? &ngx_http_sandbox_metrics->redis
                                        : NULL;

    if (smcf->redis_sentinel) {
        ngx_http_sandbox_worker_sentinel = ngx_http_sandbox_sentinel_create(
                                          smcf->redis_sentinel, &rc,
                                          cycle->log);
        if (ngx_http_sandbox_worker_sentinel == NULL) {
            return NGX_ERROR;
        }

        rc.sentinel = ngx_http_sandbox_worker_sentinel;
    }

    ngx_http_sandbox_worker_redis = ngx_http_sandbox_redis_create(&rc,
                                                                  cycle->log);
    if (ngx_http_sandbox_worker_redis == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_sandbox_usage_init(cycle) != NGX_OK
        || ngx_http_sandbox_wait_init(cycle) != NGX_OK
        || ngx_http_sandbox_activity_init(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_sandbox_events_init(cycle, smcf);
}


void
ngx_http_sandbox_redis_conf_init(ngx_http_sandbox_redis_conf_t *rc,
    ngx_http_sandbox_main_conf_t *smcf)
{
    ngx_memzero(rc, sizeof(ngx_http_sandbox_redis_conf_t));

    rc->addr = smcf->redis_addr;
    rc->sentinel = ngx_http_sandbox_worker_sentinel;
    rc->password = smcf->redis_password;
    rc->connect_timeout = smcf->redis_connect_timeout;
    rc->timeout = smcf->redis_timeout;
}


void
ngx_http_sandbox_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_limit_exit_process(cycle);
    ngx_http_sandbox_events_exit();
    ngx_http_sandbox_wait_exit();
    ngx_http_sandbox_usage_exit();
    ngx_http_sandbox_activity_exit();
    ngx_http_sandbox_sha256_cleanup();

    ngx_http_sandbox_redis_destroy(ngx_http_sandbox_worker_redis);
    ngx_http_sandbox_worker_redis = NULL;

    /* after its followers: they unfollow as they go */

    ngx_http_sandbox_sentinel_destroy(ngx_http_sandbox_worker_sentinel);
    ngx_http_sandbox_worker_sentinel = NULL;
}


void
ngx_http_sandbox_exit_master(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_sha256_cleanup();
}
