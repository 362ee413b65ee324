
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The held requests' subscription (see ngx_http_sandbox_wait.c): a Redis
 * link of its own in every worker (worker 0's invalidation listener
 * serves the shared cache, and nginx has no way to wake another worker),
 * opened with the first held request and closed when nothing has been
 * held for NGX_HTTP_SANDBOX_WAIT_LINGER.
 *
 * It listens to two channels (docs/redis-data-model.md).  sbx:events'
 * "route <user> <name>" says a route changed: the group held on it reads
 * it again.  sbx:ready's "<user> <name> <addr>" says it was just written
 * ready at addr: the group is released on that address at once, without
 * a read (sandbox-syncd publishes it before the "route" message of the
 * same write).  A writer that does not publish on sbx:ready, or a
 * message lost, leaves the read of the "route" message and the safety
 * net.
 *
 * A subscribed link carries no commands, so a connection that died
 * silently (a frozen server, a path that drops packets, a failover
 * without RST) would never be noticed: a PING every
 * NGX_HTTP_SANDBOX_WAIT_PING proves it alive, and one not answered within
 * sandbox_redis_timeout fails the link, which then reconnects and
 * subscribes again (rechecking every group).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_wait_link.h"
#include "sandbox_event.h"


#define NGX_HTTP_SANDBOX_WAIT_CHANNEL  "sbx:events"
#define NGX_HTTP_SANDBOX_WAIT_READY    "sbx:ready"

/* how long an idle link stays */
#define NGX_HTTP_SANDBOX_WAIT_LINGER   30000

/* how often the subscription is proven alive (as the cache subscriber's) */
#define NGX_HTTP_SANDBOX_WAIT_PING     1000


static void ngx_http_sandbox_wait_close(void);
static void ngx_http_sandbox_wait_ready(ngx_http_sandbox_redis_t *rd,
    void *data);
static void ngx_http_sandbox_wait_subscribed(void *data, redisReply *reply);
static ngx_int_t ngx_http_sandbox_wait_push(void *data, redisReply *reply);
static void ngx_http_sandbox_wait_event(redisReply *msg);
static void ngx_http_sandbox_wait_ready_message(redisReply *msg);
static void ngx_http_sandbox_wait_linger(ngx_event_t *ev);
static void ngx_http_sandbox_wait_ping_handler(ngx_event_t *ev);
static void ngx_http_sandbox_wait_pong_handler(void *data,
    redisReply *reply);


static ngx_http_sandbox_redis_conf_t   ngx_http_sandbox_wait_rc;
static ngx_http_sandbox_redis_t       *ngx_http_sandbox_wait_link;
static ngx_uint_t                      ngx_http_sandbox_wait_on;
static ngx_event_t                     ngx_http_sandbox_wait_idle;
static ngx_event_t                     ngx_http_sandbox_wait_ping;
static ngx_http_sandbox_redis_op_t    *ngx_http_sandbox_wait_pong;


void
ngx_http_sandbox_wait_link_init(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sandbox_module);

    ngx_http_sandbox_redis_conf_init(&ngx_http_sandbox_wait_rc, smcf);
    ngx_http_sandbox_wait_rc.ready = ngx_http_sandbox_wait_ready;
    ngx_http_sandbox_wait_rc.push = ngx_http_sandbox_wait_push;

    /* none of these timers keeps an exiting worker alive: held requests do */

    ngx_http_sandbox_wait_idle.handler = ngx_http_sandbox_wait_linger;
    ngx_http_sandbox_wait_idle.log = cycle->log;
    ngx_http_sandbox_wait_idle.cancelable = 1;

    ngx_http_sandbox_wait_ping.handler = ngx_http_sandbox_wait_ping_handler;
    ngx_http_sandbox_wait_ping.log = cycle->log;
    ngx_http_sandbox_wait_ping.cancelable = 1;
}


void
ngx_http_sandbox_wait_link_exit(void)
{
    if (ngx_http_sandbox_wait_idle.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_wait_idle);
    }

    ngx_http_sandbox_wait_close();
}


/* the subscription: opened with the first held request */

ngx_int_t
ngx_http_sandbox_wait_listen(ngx_log_t *log)
{
    if (ngx_http_sandbox_wait_idle.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_wait_idle);
    }

    if (ngx_http_sandbox_wait_link) {
        return NGX_OK;
    }

    ngx_http_sandbox_wait_link = ngx_http_sandbox_redis_create(
                                     &ngx_http_sandbox_wait_rc, ngx_cycle->log);
    if (ngx_http_sandbox_wait_link == NULL) {
        return NGX_ERROR;
    }

    ngx_add_timer(&ngx_http_sandbox_wait_ping, NGX_HTTP_SANDBOX_WAIT_PING);

    return NGX_OK;
}


void
ngx_http_sandbox_wait_unused(void)
{
    if (ngx_http_sandbox_wait_link && !ngx_http_sandbox_wait_idle.timer_set) {
        ngx_add_timer(&ngx_http_sandbox_wait_idle,
                      NGX_HTTP_SANDBOX_WAIT_LINGER);
    }
}


static void
ngx_http_sandbox_wait_close(void)
{
    if (ngx_http_sandbox_wait_ping.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_wait_ping);
    }

    /* fails what is pending: the pong handler forgets its PING */

    ngx_http_sandbox_redis_destroy(ngx_http_sandbox_wait_link);
    ngx_http_sandbox_wait_link = NULL;
    ngx_http_sandbox_wait_pong = NULL;
    ngx_http_sandbox_wait_on = 0;
}


/*
 * One SUBSCRIBE per channel, as one pipeline: each is confirmed by one
 * reply (a SUBSCRIBE of two channels would be answered twice, and its
 * second answer taken for the next command's).  sbx:ready goes first, so
 * that once sbx:events is heard, so is sbx:ready.
 */

static void
ngx_http_sandbox_wait_ready(ngx_http_sandbox_redis_t *rd, void *data)
{
    const char                    *ready[2], *events[2];
    size_t                         ready_len[2], events_len[2];
    ngx_http_sandbox_redis_cmd_t   cmds[2];

    ngx_http_sandbox_wait_on = 0;

    ready[0] = "SUBSCRIBE";
    ready_len[0] = sizeof("SUBSCRIBE") - 1;
    ready[1] = NGX_HTTP_SANDBOX_WAIT_READY;
    ready_len[1] = sizeof(NGX_HTTP_SANDBOX_WAIT_READY) - 1;

    events[0] = "SUBSCRIBE";
    events_len[0] = sizeof("SUBSCRIBE") - 1;
    events[1] = NGX_HTTP_SANDBOX_WAIT_CHANNEL;
    events_len[1] = sizeof(NGX_HTTP_SANDBOX_WAIT_CHANNEL) - 1;

    cmds[0].argc = 2;
    cmds[0].argv = ready;
    cmds[0].argvlen = ready_len;
    cmds[1].argc = 2;
    cmds[1].argv = events;
    cmds[1].argvlen = events_len;

    (void) ngx_http_sandbox_redis_pipeline(rd, 2, cmds,
                                           ngx_http_sandbox_wait_subscribed,
                                           NULL);
}


static void
ngx_http_sandbox_wait_subscribed(void *data, redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        ngx_http_sandbox_wait_on = 0;
        return;
    }

    if (ngx_http_sandbox_wait_on) {
        return;
    }

    ngx_http_sandbox_wait_on = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "sandbox: held requests listen to "
                   NGX_HTTP_SANDBOX_WAIT_CHANNEL " and "
                   NGX_HTTP_SANDBOX_WAIT_READY);

    /* what changed before the subscription took effect went unheard */

    ngx_http_sandbox_wait_check_all();
}


static ngx_int_t
ngx_http_sandbox_wait_push(void *data, redisReply *reply)
{
    redisReply  *msg, *channel;

    if (ngx_http_sandbox_redis_message(reply, &msg) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (msg == NULL) {
        return NGX_OK;
    }

    channel = reply->element[1];

    if (channel->type == REDIS_REPLY_STRING
        && channel->len == sizeof(NGX_HTTP_SANDBOX_WAIT_READY) - 1
        && ngx_strncmp(channel->str, NGX_HTTP_SANDBOX_WAIT_READY,
                       channel->len) == 0)
    {
        ngx_http_sandbox_wait_ready_message(msg);

    } else {
        ngx_http_sandbox_wait_event(msg);
    }

    return NGX_OK;
}


/* a message of sbx:events */

static void
ngx_http_sandbox_wait_event(redisReply *msg)
{
    ngx_int_t    rc;
    sbx_event_t  ev;

    switch (sbx_event_parse((u_char *) msg->str, msg->len, &ev)) {

    case SBX_EVENT_ROUTE:
        rc = ngx_http_sandbox_wait_heard((u_char *) msg->str + ev.user_off,
                                         ev.user_len,
                                         (u_char *) msg->str + ev.name_off,
                                         ev.name_len, NULL);

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "sandbox: held requests heard \"%*s\"%s",
                       (size_t) msg->len, msg->str,
                       rc == NGX_OK ? ": checking" : "");
        break;

    case SBX_EVENT_KEY:
    case SBX_EVENT_USER:
        break;

    default: /* a flush, or a message of a newer writer */
        ngx_http_sandbox_wait_check_all();
    }
}


/* a message of sbx:ready: its address is the release's, no read */

static void
ngx_http_sandbox_wait_ready_message(redisReply *msg)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_str_t     addr;
    sbx_ready_t   rd;

    p = (u_char *) msg->str;

    /* not echoed: it may hold anything */

    if (sbx_ready_parse(p, msg->len, &rd) != 0) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "sandbox: ignored a malformed "
                      NGX_HTTP_SANDBOX_WAIT_READY " message of %uz bytes",
                      (size_t) msg->len);
        return;
    }

    addr.data = p + rd.addr_off;
    addr.len = rd.addr_len;

    rc = ngx_http_sandbox_wait_heard(p + rd.user_off, rd.user_len,
                                     p + rd.name_off, rd.name_len, &addr);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "sandbox: held requests heard ready \"%*s\"%s",
                   (size_t) msg->len, msg->str,
                   rc == NGX_OK ? ": released" : "");
}


static void
ngx_http_sandbox_wait_linger(ngx_event_t *ev)
{
    if (ngx_http_sandbox_wait_groups) {
        return;
    }

    ngx_http_sandbox_wait_close();
}


/*
 * One PING at a time.  Its deadline is the link's own timeout
 * (sandbox_redis_timeout): unanswered, it fails the link, which
 * reconnects and calls ngx_http_sandbox_wait_ready() again.  A link that
 * is down or on its way is left to its own timers.  An exiting worker
 * pings on: it still holds requests.
 */

static void
ngx_http_sandbox_wait_ping_handler(ngx_event_t *ev)
{
    const char  *argv[1];
    size_t       argvlen[1];

    if (ngx_http_sandbox_wait_link == NULL) {
        return;
    }

    if (ngx_http_sandbox_wait_pong == NULL
        && ngx_http_sandbox_redis_ready(ngx_http_sandbox_wait_link))
    {
        argv[0] = "PING";
        argvlen[0] = sizeof("PING") - 1;

        ngx_http_sandbox_wait_pong = ngx_http_sandbox_redis_command(
                                         ngx_http_sandbox_wait_link, 1, argv,
                                         argvlen,
                                         ngx_http_sandbox_wait_pong_handler,
                                         NULL);
    }

    ngx_add_timer(ev, NGX_HTTP_SANDBOX_WAIT_PING);
}


/* in subscribe mode the answer is ["pong", ""]; NULL: the link failed */

static void
ngx_http_sandbox_wait_pong_handler(void *data, redisReply *reply)
{
    ngx_http_sandbox_wait_pong = NULL;
}
