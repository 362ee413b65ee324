
/*
 * Copyright (C) The sandbox gateway authors
 *
 * One Redis link per worker (and per role).  Commands are appended to an
 * output buffer and flushed from a posted write event, so every command
 * queued during one event-loop iteration leaves in one send(): requests
 * pipeline naturally.  Replies come back in order and are matched against
 * a FIFO of pending operations.
 *
 * The link is never marked idle: a worker that is shutting down still
 * finishes the requests it has, and they may need Redis; exit_process
 * closes it.
 *
 * RESP carries no request ids, so a reply that does not arrive in time
 * cannot be skipped: on timeout the link is declared broken, every pending
 * operation fails, and a cancelable timer reconnects with backoff.  While
 * the link is down new commands fail at once (fail fast, never queue behind
 * a dead link).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_sandbox_redis.h"


#define NGX_HTTP_SANDBOX_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_SANDBOX_REDIS_BACKOFF_MAX  2000
#define NGX_HTTP_SANDBOX_REDIS_READ_SIZE    16384


typedef enum {
    NGX_HTTP_SANDBOX_REDIS_DOWN = 0,
    NGX_HTTP_SANDBOX_REDIS_CONNECTING,
    NGX_HTTP_SANDBOX_REDIS_UP
} ngx_http_sandbox_redis_state_e;


struct ngx_http_sandbox_redis_op_s {
    ngx_queue_t                          queue;
    ngx_http_sandbox_redis_handler_pt    handler;
    void                                *data;
    ngx_msec_t                           start;
};


struct ngx_http_sandbox_redis_s {
    ngx_http_sandbox_redis_conf_t        conf;
    ngx_http_sandbox_redis_state_e       state;
    ngx_peer_connection_t                peer;
    redisReader                         *reader;

    u_char                              *out;
    size_t                               out_len;
    size_t                               out_sent;
    size_t                               out_size;

    ngx_queue_t                          pending;
    ngx_queue_t                          free;

    ngx_event_t                          reconnect;
    ngx_msec_t                           backoff;
    ngx_log_t                           *log;
    unsigned                             auth_failed:1;

    /*
     * An outage is logged once when it starts and once when it ends, with
     * the number of commands that failed meanwhile; in between, the link's
     * own errors (each reconnect's connect() failure) go to quiet_log, a
     * copy of the log that lets only [crit] and worse through.
     */
    unsigned                             outage:1;
    ngx_msec_t                           outage_start;
    ngx_uint_t                           outage_failed;
    ngx_log_t                            quiet_log;

    ngx_http_sandbox_redis_stats_t      *stats;
    ngx_http_sandbox_redis_stats_t       own_stats;
};


static void ngx_http_sandbox_redis_connect(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_connected(ngx_http_sandbox_redis_t *rd);
static ngx_int_t ngx_http_sandbox_redis_test_connect(ngx_connection_t *c);
static void ngx_http_sandbox_redis_read_handler(ngx_event_t *rev);
static void ngx_http_sandbox_redis_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_http_sandbox_redis_flush(ngx_http_sandbox_redis_t *rd);
static ngx_int_t ngx_http_sandbox_redis_dispatch(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_arm_timer(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_fail(ngx_http_sandbox_redis_t *rd,
    const char *reason);
static void ngx_http_sandbox_redis_close(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_schedule(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_reconnect_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_sandbox_redis_append(ngx_http_sandbox_redis_t *rd,
    ngx_uint_t argc, const char **argv, const size_t *argvlen);
static ngx_http_sandbox_redis_op_t *ngx_http_sandbox_redis_op_alloc(
    ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_op_free(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_redis_op_t *op);
static void ngx_http_sandbox_redis_auth_handler(void *data,
    redisReply *reply);
static void ngx_http_sandbox_redis_trouble(ngx_http_sandbox_redis_t *rd,
    ngx_err_t err, const char *reason);
static void ngx_http_sandbox_redis_recovered(ngx_http_sandbox_redis_t *rd);


ngx_http_sandbox_redis_t *
ngx_http_sandbox_redis_create(ngx_http_sandbox_redis_conf_t *conf,
    ngx_log_t *log)
{
    ngx_http_sandbox_redis_t  *rd;

    rd = ngx_calloc(sizeof(ngx_http_sandbox_redis_t), log);
    if (rd == NULL) {
        return NULL;
    }

    rd->conf = *conf;
    rd->log = log;
    rd->stats = conf->stats ? conf->stats : &rd->own_stats;
    rd->backoff = NGX_HTTP_SANDBOX_REDIS_BACKOFF_MIN;

    rd->reader = redisReaderCreate();
    if (rd->reader == NULL) {
        ngx_free(rd);
        return NULL;
    }

    ngx_queue_init(&rd->pending);
    ngx_queue_init(&rd->free);

    /* the reconnect timer must not keep a worker alive on shutdown */

    rd->reconnect.handler = ngx_http_sandbox_redis_reconnect_handler;
    rd->reconnect.data = rd;
    rd->reconnect.log = log;
    rd->reconnect.cancelable = 1;

    ngx_http_sandbox_redis_connect(rd);

    return rd;
}


void
ngx_http_sandbox_redis_destroy(ngx_http_sandbox_redis_t *rd)
{
    ngx_queue_t                  *q;
    ngx_http_sandbox_redis_op_t  *op;

    if (rd == NULL) {
        return;
    }

    /* what is queued goes out if the socket takes it now, without waiting */

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_UP) {
        (void) ngx_http_sandbox_redis_flush(rd);
    }

    ngx_http_sandbox_redis_fail(rd, NULL);

    /* armed before, or just now by the failure: nobody reconnects */

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    while (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_sandbox_redis_op_t, queue);
        ngx_free(op);
    }

    redisReaderFree(rd->reader);

    if (rd->out) {
        ngx_free(rd->out);
    }

    ngx_free(rd);
}


ngx_uint_t
ngx_http_sandbox_redis_ready(ngx_http_sandbox_redis_t *rd)
{
    return rd != NULL && rd->state == NGX_HTTP_SANDBOX_REDIS_UP;
}


ngx_http_sandbox_redis_op_t *
ngx_http_sandbox_redis_command(ngx_http_sandbox_redis_t *rd, ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sandbox_redis_handler_pt handler, void *data)
{
    ngx_connection_t             *c;
    ngx_http_sandbox_redis_op_t  *op;

    /*
     * a link being established accepts commands (its connect timeout bounds
     * them), so a fresh worker does not refuse its first requests
     */

    if (rd == NULL) {
        return NULL;
    }

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_DOWN) {
        rd->outage_failed += (handler != NULL);
        return NULL;
    }

    op = ngx_http_sandbox_redis_op_alloc(rd);
    if (op == NULL) {
        return NULL;
    }

    if (ngx_http_sandbox_redis_append(rd, argc, argv, argvlen) != NGX_OK) {
        ngx_http_sandbox_redis_op_free(rd, op);
        return NULL;
    }

    op->handler = handler;
    op->data = data;
    op->start = ngx_current_msec;

    ngx_queue_insert_tail(&rd->pending, &op->queue);

    (void) ngx_atomic_fetch_add(&rd->stats->commands, 1);

    c = rd->peer.connection;

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, rd->conf.timeout);
    }

    /* flush once per event-loop iteration: pipelining for free */

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_UP && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return op;
}


void
ngx_http_sandbox_redis_cancel(ngx_http_sandbox_redis_op_t *op)
{
    /* the reply must still be consumed in order; only forget the caller */

    op->handler = NULL;
    op->data = NULL;
}


static void
ngx_http_sandbox_redis_connect(ngx_http_sandbox_redis_t *rd)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;
    const char        *argv[2];
    size_t             argvlen[2];

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_memzero(&rd->peer, sizeof(ngx_peer_connection_t));

    rd->peer.sockaddr = rd->conf.addr->sockaddr;
    rd->peer.socklen = rd->conf.addr->socklen;
    rd->peer.name = &rd->conf.addr->name;
    rd->peer.get = ngx_event_get_peer;
    rd->peer.log = rd->outage ? &rd->quiet_log : rd->log;
    rd->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&rd->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_sandbox_redis_trouble(rd, 0, "cannot connect");

        if (rd->peer.connection) {
            ngx_close_connection(rd->peer.connection);
            rd->peer.connection = NULL;
        }

        ngx_http_sandbox_redis_schedule(rd);
        return;
    }

    (void) ngx_atomic_fetch_add(&rd->stats->connects, 1);

    c = rd->peer.connection;
    c->data = rd;
    c->read->handler = ngx_http_sandbox_redis_read_handler;
    c->write->handler = ngx_http_sandbox_redis_write_handler;
    c->log = rd->peer.log;
    c->read->log = c->log;
    c->write->log = c->log;

    rd->state = NGX_HTTP_SANDBOX_REDIS_CONNECTING;

    if (rd->conf.password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) rd->conf.password.data;
        argvlen[1] = rd->conf.password.len;

        /* queued now, sent first once connected */

        if (ngx_http_sandbox_redis_command(rd, 2, argv, argvlen,
                                           ngx_http_sandbox_redis_auth_handler,
                                           rd)
            == NULL)
        {
            ngx_http_sandbox_redis_fail(rd, "cannot queue AUTH");
            return;
        }
    }

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, rd->conf.connect_timeout);
        return;
    }

    ngx_http_sandbox_redis_connected(rd);
}


static void
ngx_http_sandbox_redis_connected(ngx_http_sandbox_redis_t *rd)
{
    ngx_connection_t  *c;

    c = rd->peer.connection;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "sandbox: redis connected to %V", &rd->conf.addr->name);

    rd->state = NGX_HTTP_SANDBOX_REDIS_UP;
    rd->backoff = NGX_HTTP_SANDBOX_REDIS_BACKOFF_MIN;

    if (rd->outage) {
        ngx_http_sandbox_redis_recovered(rd);
    }

    if (rd->conf.ready) {
        rd->conf.ready(rd, rd->conf.data);
    }

    if (rd->state != NGX_HTTP_SANDBOX_REDIS_UP) {
        return;
    }

    if (rd->out_len > rd->out_sent && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_sandbox_redis_fail(rd, "cannot add read event");
    }
}


static ngx_int_t
ngx_http_sandbox_redis_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_http_sandbox_redis_trouble(c->data, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t          *c;
    ngx_http_sandbox_redis_t  *rd;

    c = wev->data;
    rd = c->data;

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_CONNECTING) {

        if (wev->timedout) {
            ngx_http_sandbox_redis_fail(rd, "connect timed out");
            return;
        }

        if (ngx_http_sandbox_redis_test_connect(c) != NGX_OK) {
            ngx_http_sandbox_redis_fail(rd, NULL);
            return;
        }

        ngx_http_sandbox_redis_connected(rd);

        if (rd->state != NGX_HTTP_SANDBOX_REDIS_UP) {
            return;
        }
    }

    if (ngx_http_sandbox_redis_flush(rd) != NGX_OK) {
        ngx_http_sandbox_redis_fail(rd, "send failed");
    }
}


static ngx_int_t
ngx_http_sandbox_redis_flush(ngx_http_sandbox_redis_t *rd)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rd->peer.connection;

    while (rd->out_sent < rd->out_len) {

        n = c->send(c, rd->out + rd->out_sent, rd->out_len - rd->out_sent);

        if (n == NGX_AGAIN) {
            return ngx_handle_write_event(c->write, 0);
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        rd->out_sent += n;
    }

    rd->out_len = 0;
    rd->out_sent = 0;

    return NGX_OK;
}


static void
ngx_http_sandbox_redis_read_handler(ngx_event_t *rev)
{
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_http_sandbox_redis_t  *rd;
    u_char                     buf[NGX_HTTP_SANDBOX_REDIS_READ_SIZE];

    c = rev->data;
    rd = c->data;

    if (c->close) {
        ngx_http_sandbox_redis_fail(rd, NULL);
        return;
    }

    if (rev->timedout) {
        ngx_http_sandbox_redis_fail(rd, "timed out");
        return;
    }

    if (rd->state != NGX_HTTP_SANDBOX_REDIS_UP) {
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_sandbox_redis_fail(rd, "redis closed the connection");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_sandbox_redis_fail(rd, "redis read failed");
            return;
        }

        if (redisReaderFeed(rd->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_http_sandbox_redis_fail(rd, "redis reader failed");
            return;
        }

        if (ngx_http_sandbox_redis_dispatch(rd) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_sandbox_redis_fail(rd, "cannot add read event");
        return;
    }

    ngx_http_sandbox_redis_arm_timer(rd);
}


static ngx_int_t
ngx_http_sandbox_redis_dispatch(ngx_http_sandbox_redis_t *rd)
{
    void                         *r;
    ngx_msec_t                    t;
    ngx_queue_t                  *q;
    redisReply                   *reply;
    ngx_http_sandbox_redis_op_t  *op;

    for ( ;; ) {
        r = NULL;

        if (redisReaderGetReply(rd->reader, &r) != REDIS_OK) {
            ngx_http_sandbox_redis_fail(rd, "invalid redis reply");
            return NGX_ERROR;
        }

        if (r == NULL) {
            return NGX_OK;
        }

        reply = r;

        if (rd->conf.push && rd->conf.push(rd->conf.data, reply) == NGX_OK) {
            freeReplyObject(reply);

            if (rd->state != NGX_HTTP_SANDBOX_REDIS_UP) {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_queue_empty(&rd->pending)) {
            freeReplyObject(reply);
            ngx_http_sandbox_redis_fail(rd, "unexpected redis reply");
            return NGX_ERROR;
        }

        q = ngx_queue_head(&rd->pending);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_sandbox_redis_op_t, queue);

        t = ngx_current_msec - op->start;
        (void) ngx_atomic_fetch_add(&rd->stats->replies, 1);
        (void) ngx_atomic_fetch_add(&rd->stats->latency_total, t);
        (void) ngx_atomic_fetch_add(
                    &rd->stats->latency[ngx_http_sandbox_latency_bucket(t)], 1);

        if (t > rd->stats->latency_max) {
            rd->stats->latency_max = t;     /* a racy max is good enough */
        }

        if (reply->type == REDIS_REPLY_ERROR) {
            (void) ngx_atomic_fetch_add(&rd->stats->failures, 1);
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "sandbox: redis error: %*s",
                          (size_t) reply->len, reply->str);
        }

        /* the handler may queue new commands: that is safe here */

        if (op->handler) {
            op->handler(op->data, reply);
        }

        freeReplyObject(reply);
        ngx_http_sandbox_redis_op_free(rd, op);

        if (rd->auth_failed) {
            rd->auth_failed = 0;
            ngx_http_sandbox_redis_fail(rd, "redis AUTH failed");
            return NGX_ERROR;
        }

        if (rd->state != NGX_HTTP_SANDBOX_REDIS_UP) {
            return NGX_ERROR;
        }
    }
}


static void
ngx_http_sandbox_redis_arm_timer(ngx_http_sandbox_redis_t *rd)
{
    ngx_msec_t                    elapsed;
    ngx_connection_t             *c;
    ngx_http_sandbox_redis_op_t  *op;

    c = rd->peer.connection;

    if (ngx_queue_empty(&rd->pending)) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        return;
    }

    /* the oldest command bounds the wait of all that follow it */

    op = ngx_queue_data(ngx_queue_head(&rd->pending),
                        ngx_http_sandbox_redis_op_t, queue);

    elapsed = ngx_current_msec - op->start;

    ngx_add_timer(c->read, elapsed < rd->conf.timeout
                           ? rd->conf.timeout - elapsed : 1);
}


static void
ngx_http_sandbox_redis_fail(ngx_http_sandbox_redis_t *rd, const char *reason)
{
    ngx_queue_t                   failed, *q;
    ngx_http_sandbox_redis_op_t  *op;

    if (reason) {
        ngx_http_sandbox_redis_trouble(rd, 0, reason);
    }

    ngx_http_sandbox_redis_close(rd);

    /* detach first: handlers may call back into this client */

    ngx_queue_init(&failed);

    if (!ngx_queue_empty(&rd->pending)) {
        failed = rd->pending;
        failed.next->prev = &failed;
        failed.prev->next = &failed;
        ngx_queue_init(&rd->pending);
    }

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_sandbox_redis_op_t, queue);

        (void) ngx_atomic_fetch_add(&rd->stats->failures, 1);

        if (op->handler) {
            rd->outage_failed++;
            op->handler(op->data, NULL);
        }

        ngx_http_sandbox_redis_op_free(rd, op);
    }

    ngx_http_sandbox_redis_schedule(rd);
}


static void
ngx_http_sandbox_redis_close(ngx_http_sandbox_redis_t *rd)
{
    if (rd->peer.connection) {
        ngx_close_connection(rd->peer.connection);
        rd->peer.connection = NULL;
    }

    rd->state = NGX_HTTP_SANDBOX_REDIS_DOWN;
    rd->out_len = 0;
    rd->out_sent = 0;

    /* a partial reply of the old link must not prefix the next one */

    redisReaderFree(rd->reader);
    rd->reader = redisReaderCreate();
}


static void
ngx_http_sandbox_redis_schedule(ngx_http_sandbox_redis_t *rd)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_quit || rd->reconnect.timer_set) {
        return;
    }

    /* exponential backoff with jitter, so workers do not stampede */

    delay = rd->backoff + ngx_random() % (rd->backoff / 4 + 1);

    rd->backoff *= 2;
    if (rd->backoff > NGX_HTTP_SANDBOX_REDIS_BACKOFF_MAX) {
        rd->backoff = NGX_HTTP_SANDBOX_REDIS_BACKOFF_MAX;
    }

    ngx_add_timer(&rd->reconnect, delay);
}


static void
ngx_http_sandbox_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_sandbox_redis_t  *rd;

    rd = ev->data;

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_DOWN && rd->reader != NULL) {
        ngx_http_sandbox_redis_connect(rd);
    }
}


static ngx_int_t
ngx_http_sandbox_redis_append(ngx_http_sandbox_redis_t *rd, ngx_uint_t argc,
    const char **argv, const size_t *argvlen)
{
    int      len;
    char    *cmd;
    size_t   size;
    u_char  *p;

    len = redisFormatCommandArgv(&cmd, (int) argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    if (rd->out_len + len > rd->out_size) {
        size = ngx_max(rd->out_size * 2, rd->out_len + len);
        size = ngx_max(size, 4096);

        p = ngx_alloc(size, rd->log);
        if (p == NULL) {
            redisFreeCommand(cmd);
            return NGX_ERROR;
        }

        if (rd->out) {
            ngx_memcpy(p, rd->out, rd->out_len);
            ngx_free(rd->out);
        }

        rd->out = p;
        rd->out_size = size;
    }

    ngx_memcpy(rd->out + rd->out_len, cmd, len);
    rd->out_len += len;

    redisFreeCommand(cmd);

    return NGX_OK;
}


static ngx_http_sandbox_redis_op_t *
ngx_http_sandbox_redis_op_alloc(ngx_http_sandbox_redis_t *rd)
{
    ngx_queue_t  *q;

    if (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        return ngx_queue_data(q, ngx_http_sandbox_redis_op_t, queue);
    }

    return ngx_alloc(sizeof(ngx_http_sandbox_redis_op_t), rd->log);
}


static void
ngx_http_sandbox_redis_op_free(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_redis_op_t *op)
{
    op->handler = NULL;
    op->data = NULL;
    ngx_queue_insert_head(&rd->free, &op->queue);
}


static void
ngx_http_sandbox_redis_auth_handler(void *data, redisReply *reply)
{
    ngx_http_sandbox_redis_t  *rd = data;

    /* the dispatcher drops the link once it has released this reply */

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        rd->auth_failed = 1;
    }
}


static void
ngx_http_sandbox_redis_trouble(ngx_http_sandbox_redis_t *rd, ngx_err_t err,
    const char *reason)
{
    if (rd->outage) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, err,
                       "sandbox: redis %V still unavailable: %s",
                       &rd->conf.addr->name, reason);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rd->log, err,
                  "sandbox: redis %V unavailable: %s; requests that need it "
                  "fail until it is back", &rd->conf.addr->name, reason);

    rd->outage = 1;
    rd->outage_start = ngx_current_msec;
    rd->outage_failed = 0;

    rd->quiet_log = *rd->log;

    if (rd->quiet_log.log_level > NGX_LOG_CRIT) {
        rd->quiet_log.log_level = NGX_LOG_CRIT;
    }
}


static void
ngx_http_sandbox_redis_recovered(ngx_http_sandbox_redis_t *rd)
{
    ngx_connection_t  *c;

    ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                  "sandbox: redis %V is back after %M ms; %ui requests "
                  "failed meanwhile", &rd->conf.addr->name,
                  ngx_current_msec - rd->outage_start, rd->outage_failed);

    rd->outage = 0;

    c = rd->peer.connection;
    c->log = rd->log;
    c->read->log = rd->log;
    c->write->log = rd->log;
}
