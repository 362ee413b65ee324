
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The traffic of a Redis link.  Commands are appended to an output buffer
 * and flushed from a posted write event, so every command queued during
 * one event-loop iteration leaves in one send(): requests pipeline
 * naturally.  Replies come back in order and are matched against a FIFO
 * of pending operations.  Before ROLE has said "master" on a link that
 * follows a Sentinel-named master, only the handshake leaves.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_sandbox_redis_link.h"


static ngx_int_t ngx_http_sandbox_redis_dispatch(ngx_http_sandbox_redis_t *rd);
static ngx_int_t ngx_http_sandbox_redis_append(ngx_http_sandbox_redis_t *rd,
    ngx_uint_t argc, const char **argv, const size_t *argvlen);
static ngx_http_sandbox_redis_op_t *ngx_http_sandbox_redis_op_alloc(
    ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_error(ngx_http_sandbox_redis_t *rd,
    redisReply *reply);


ngx_http_sandbox_redis_op_t *
ngx_http_sandbox_redis_command(ngx_http_sandbox_redis_t *rd, ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sandbox_redis_handler_pt handler, void *data)
{
    ngx_http_sandbox_redis_cmd_t  cmd;

    cmd.argc = argc;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    return ngx_http_sandbox_redis_pipeline(rd, 1, &cmd, handler, data);
}


ngx_http_sandbox_redis_op_t *
ngx_http_sandbox_redis_pipeline(ngx_http_sandbox_redis_t *rd, ngx_uint_t n,
    ngx_http_sandbox_redis_cmd_t *cmds,
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

    op = ngx_http_sandbox_redis_queue_n(rd, n, cmds, handler, data);
    if (op == NULL) {
        return NULL;
    }

    /* waiting for the sentinels: the reconnect timer bounds the wait */

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_RESOLVING) {
        return op;
    }

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


ngx_http_sandbox_redis_op_t *
ngx_http_sandbox_redis_queue(ngx_http_sandbox_redis_t *rd, ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sandbox_redis_handler_pt handler, void *data)
{
    ngx_http_sandbox_redis_cmd_t  cmd;

    cmd.argc = argc;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    return ngx_http_sandbox_redis_queue_n(rd, 1, &cmd, handler, data);
}


ngx_http_sandbox_redis_op_t *
ngx_http_sandbox_redis_queue_n(ngx_http_sandbox_redis_t *rd, ngx_uint_t n,
    ngx_http_sandbox_redis_cmd_t *cmds,
    ngx_http_sandbox_redis_handler_pt handler, void *data)
{
    size_t                        out_len;
    ngx_uint_t                    i;
    ngx_http_sandbox_redis_op_t  *op;

    if (n == 0 || n > NGX_HTTP_SANDBOX_REDIS_MAX_PIPELINE) {
        return NULL;
    }

    op = ngx_http_sandbox_redis_op_alloc(rd);
    if (op == NULL) {
        return NULL;
    }

    /* all or nothing: a half-queued pipeline would shift every reply */

    out_len = rd->out_len;

    for (i = 0; i < n; i++) {
        if (ngx_http_sandbox_redis_append(rd, cmds[i].argc, cmds[i].argv,
                                          cmds[i].argvlen)
            != NGX_OK)
        {
            rd->out_len = out_len;
            ngx_http_sandbox_redis_op_free(rd, op);
            return NULL;
        }
    }

    op->handler = handler;
    op->data = data;
    op->start = ngx_current_msec;
    op->parts = n;
    op->got = 0;

    ngx_queue_insert_tail(&rd->pending, &op->queue);

    (void) ngx_atomic_fetch_add(&rd->stats->commands, n);

    return op;
}


void
ngx_http_sandbox_redis_cancel(ngx_http_sandbox_redis_op_t *op)
{
    /* the reply must still be consumed in order; only forget the caller */

    op->handler = NULL;
    op->data = NULL;
}


void
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

        if (rd->state < NGX_HTTP_SANDBOX_REDIS_HANDSHAKE) {
            return;
        }
    }

    if (ngx_http_sandbox_redis_flush(rd) != NGX_OK) {
        ngx_http_sandbox_redis_fail(rd, "send failed");
    }
}


ngx_int_t
ngx_http_sandbox_redis_flush(ngx_http_sandbox_redis_t *rd)
{
    size_t             limit;
    ssize_t            n;
    ngx_connection_t  *c;

    c = rd->peer.connection;

    /* before ROLE says "master", only the handshake may leave */

    limit = (rd->state == NGX_HTTP_SANDBOX_REDIS_UP || !rd->conf.sentinel)
            ? rd->out_len : rd->out_gate;

    while (rd->out_sent < limit) {

        n = c->send(c, rd->out + rd->out_sent, limit - rd->out_sent);

        if (n == NGX_AGAIN) {
            return ngx_handle_write_event(c->write, 0);
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        rd->out_sent += n;
    }

    if (rd->out_sent == rd->out_len) {
        rd->out_len = 0;
        rd->out_sent = 0;
        rd->out_gate = 0;
    }

    return NGX_OK;
}


void
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

    if (rd->state < NGX_HTTP_SANDBOX_REDIS_HANDSHAKE) {
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
    redisReply                   *reply, all;
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

            if (rd->state < NGX_HTTP_SANDBOX_REDIS_HANDSHAKE) {
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
        op = ngx_queue_data(q, ngx_http_sandbox_redis_op_t, queue);

        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_http_sandbox_redis_error(rd, reply);
        }

        /* a pipeline's reply that is not its last: keep it */

        if (op->got + 1 < op->parts) {
            op->part[op->got++] = reply;
            continue;
        }

        ngx_queue_remove(q);

        t = ngx_current_msec - op->start;
        (void) ngx_atomic_fetch_add(&rd->stats->replies, 1);
        (void) ngx_atomic_fetch_add(&rd->stats->latency_total, t);
        (void) ngx_atomic_fetch_add(
                    &rd->stats->latency[ngx_http_sandbox_latency_bucket(t)], 1);

        if (t > rd->stats->latency_max) {
            rd->stats->latency_max = t;     /* a racy max is good enough */
        }

        if (op->parts > 1) {
            op->part[op->got++] = reply;

            ngx_memzero(&all, sizeof(redisReply));
            all.type = REDIS_REPLY_ARRAY;
            all.elements = op->got;
            all.element = op->part;

            reply = &all;
        }

        /* the handler may queue new commands: that is safe here */

        if (op->handler) {
            op->handler(op->data, reply);
        }

        if (reply != &all) {
            freeReplyObject(reply);
        }

        ngx_http_sandbox_redis_op_free(rd, op);

        if (rd->auth_failed) {
            rd->auth_failed = 0;
            ngx_http_sandbox_redis_fail(rd, "redis AUTH failed");
            return NGX_ERROR;
        }

        if (rd->not_master) {
            rd->not_master = 0;
            ngx_http_sandbox_redis_fail(rd, "not the master");
            return NGX_ERROR;
        }

        if (rd->state < NGX_HTTP_SANDBOX_REDIS_HANDSHAKE) {
            return NGX_ERROR;
        }
    }
}


static void
ngx_http_sandbox_redis_error(ngx_http_sandbox_redis_t *rd, redisReply *reply)
{
    (void) ngx_atomic_fetch_add(&rd->stats->failures, 1);
    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "sandbox: redis error: %*s", (size_t) reply->len,
                  reply->str);

    /* a master demoted under a live link: find the new one */

    if (rd->conf.sentinel && reply->len >= 8
        && ngx_strncmp(reply->str, "READONLY", 8) == 0)
    {
        rd->not_master = 1;
    }
}


void
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
    ngx_queue_t                  *q;
    ngx_http_sandbox_redis_op_t  *op;

    if (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        return ngx_queue_data(q, ngx_http_sandbox_redis_op_t, queue);
    }

    op = ngx_alloc(sizeof(ngx_http_sandbox_redis_op_t), rd->log);
    if (op == NULL) {
        return NULL;
    }

    op->got = 0;

    return op;
}


void
ngx_http_sandbox_redis_op_free(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_redis_op_t *op)
{
    while (op->got) {
        freeReplyObject(op->part[--op->got]);
    }

    op->handler = NULL;
    op->data = NULL;
    ngx_queue_insert_head(&rd->free, &op->queue);
}


/*
 * For a subscriber's push handler: NGX_OK when the reply is a pub/sub
 * message ["message", channel, payload], *payload its payload when that
 * is a string (else NULL); NGX_DECLINED when it is no message
 */

ngx_int_t
ngx_http_sandbox_redis_message(redisReply *reply, redisReply **payload)
{
    redisReply  **el;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return NGX_DECLINED;
    }

    el = reply->element;

    if (el[0]->type != REDIS_REPLY_STRING || el[0]->len != 7
        || ngx_strncmp(el[0]->str, "message", 7) != 0)
    {
        return NGX_DECLINED;
    }

    *payload = (el[2]->type == REDIS_REPLY_STRING) ? el[2] : NULL;

    return NGX_OK;
}
