
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The invalidation listener.  Worker 0 of each nginx subscribes to the
 * sbx:events channel on a link of its own (a subscribed Redis connection
 * carries nothing else) and applies each message to the shared cache, so
 * one subscriber serves every worker.  A PING every second proves the link
 * alive and keeps the shared heartbeat fresh; a subscription that comes
 * back after a gap flushes the cache, since pub/sub may have dropped
 * messages meanwhile.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


#define NGX_HTTP_SANDBOX_EVENTS_CHANNEL  "sbx:events"
#define NGX_HTTP_SANDBOX_EVENTS_PING     1000


ngx_http_sandbox_redis_t  *ngx_http_sandbox_events_redis;

static ngx_shm_zone_t     *ngx_http_sandbox_events_zone;
static ngx_event_t         ngx_http_sandbox_events_ping;
static ngx_uint_t          ngx_http_sandbox_events_subscribed;


static void ngx_http_sandbox_events_ready(ngx_http_sandbox_redis_t *rd,
    void *data);
static void ngx_http_sandbox_events_subscribe_handler(void *data,
    redisReply *reply);
static ngx_int_t ngx_http_sandbox_events_push(void *data, redisReply *reply);
static void ngx_http_sandbox_events_ping_handler(ngx_event_t *ev);
static void ngx_http_sandbox_events_pong_handler(void *data,
    redisReply *reply);
static void ngx_http_sandbox_events_lost(void);


ngx_int_t
ngx_http_sandbox_events_init(ngx_cycle_t *cycle,
    ngx_http_sandbox_main_conf_t *smcf)
{
    ngx_http_sandbox_redis_conf_t  rc;

    if (smcf->cache_zone == NULL || ngx_worker != 0) {
        return NGX_OK;
    }

    ngx_http_sandbox_events_zone = smcf->cache_zone;

    ngx_http_sandbox_redis_conf_init(&rc, smcf);
    rc.ready = ngx_http_sandbox_events_ready;
    rc.push = ngx_http_sandbox_events_push;

    ngx_http_sandbox_events_redis = ngx_http_sandbox_redis_create(&rc,
                                                                  cycle->log);
    if (ngx_http_sandbox_events_redis == NULL) {
        return NGX_ERROR;
    }

    /* the ping timer must not keep an exiting worker alive */

    ngx_http_sandbox_events_ping.handler =
                                        ngx_http_sandbox_events_ping_handler;
    ngx_http_sandbox_events_ping.log = cycle->log;
    ngx_http_sandbox_events_ping.cancelable = 1;

    ngx_add_timer(&ngx_http_sandbox_events_ping,
                  NGX_HTTP_SANDBOX_EVENTS_PING);

    return NGX_OK;
}


void
ngx_http_sandbox_events_exit(void)
{
    if (ngx_http_sandbox_events_ping.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_events_ping);
    }

    ngx_http_sandbox_events_lost();

    ngx_http_sandbox_redis_destroy(ngx_http_sandbox_events_redis);
    ngx_http_sandbox_events_redis = NULL;
}


static void
ngx_http_sandbox_events_ready(ngx_http_sandbox_redis_t *rd, void *data)
{
    const char  *argv[2];
    size_t       argvlen[2];

    /* a new link is a new subscription, whatever the old one saw */

    ngx_http_sandbox_events_lost();

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = NGX_HTTP_SANDBOX_EVENTS_CHANNEL;
    argvlen[1] = sizeof(NGX_HTTP_SANDBOX_EVENTS_CHANNEL) - 1;

    (void) ngx_http_sandbox_redis_command(rd, 2, argv, argvlen,
                                    ngx_http_sandbox_events_subscribe_handler,
                                    NULL);
}


static void
ngx_http_sandbox_events_subscribe_handler(void *data, redisReply *reply)
{
    ngx_uint_t  flushed;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_sandbox_events_lost();
        return;
    }

    if (ngx_http_sandbox_events_subscribed) {
        return;
    }

    ngx_http_sandbox_events_subscribed = 1;

    flushed = ngx_http_sandbox_cache_subscribed(ngx_http_sandbox_events_zone,
                                          3 * NGX_HTTP_SANDBOX_EVENTS_PING);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "sandbox: subscribed to " NGX_HTTP_SANDBOX_EVENTS_CHANNEL
                  "%s", flushed ? ", cache flushed" : "");
}


static ngx_int_t
ngx_http_sandbox_events_push(void *data, redisReply *reply)
{
    redisReply  *msg;

    if (ngx_http_sandbox_redis_message(reply, &msg) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (msg) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "sandbox: event \"%*s\"",
                       (size_t) msg->len, msg->str);

        ngx_http_sandbox_cache_event(ngx_http_sandbox_events_zone,
                                     (u_char *) msg->str, msg->len,
                                     ngx_cycle->log);
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_events_ping_handler(ngx_event_t *ev)
{
    const char  *argv[1];
    size_t       argvlen[1];

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    argv[0] = "PING";
    argvlen[0] = sizeof("PING") - 1;

    if (!ngx_http_sandbox_redis_ready(ngx_http_sandbox_events_redis)
        || ngx_http_sandbox_redis_command(ngx_http_sandbox_events_redis,
                                          1, argv, argvlen,
                                          ngx_http_sandbox_events_pong_handler,
                                          NULL)
           == NULL)
    {
        ngx_http_sandbox_events_lost();
    }

    ngx_add_timer(ev, NGX_HTTP_SANDBOX_EVENTS_PING);
}


static void
ngx_http_sandbox_events_pong_handler(void *data, redisReply *reply)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_sandbox_events_lost();
        return;
    }

    if (ngx_http_sandbox_events_subscribed) {
        ngx_http_sandbox_cache_heartbeat(ngx_http_sandbox_events_zone);
    }
}


static void
ngx_http_sandbox_events_lost(void)
{
    if (ngx_http_sandbox_events_subscribed) {
        ngx_http_sandbox_events_subscribed = 0;
        ngx_http_sandbox_cache_unsubscribed(ngx_http_sandbox_events_zone);
    }
}
