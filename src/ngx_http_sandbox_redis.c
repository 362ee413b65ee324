
/*
 * Copyright (C) The sandbox gateway authors
 *
 * One Redis link per worker (and per role): its life.  How commands and
 * replies travel is in ngx_http_sandbox_redis_io.c.
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
 *
 * A link that follows a Sentinel-named master (conf.sentinel) queues ROLE
 * first on every connection and sends nothing else until ROLE says
 * "master": a demoted master is never used.  Commands queued meanwhile, or
 * before the sentinels have named any master, wait behind it (bounded by
 * the timeouts).  A READONLY reply, a lost link or a refused connection
 * makes the sentinels be asked again; a new master named by them moves the
 * link at once (ngx_http_sandbox_redis_retarget).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_sandbox_redis_link.h"
#include "sandbox_reply.h"


static void ngx_http_sandbox_redis_connect(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_open(ngx_http_sandbox_redis_t *rd);
static ngx_int_t ngx_http_sandbox_redis_handshake(
    ngx_http_sandbox_redis_t *rd);
static ngx_uint_t ngx_http_sandbox_redis_follows(ngx_http_sandbox_redis_t *rd,
    ngx_addr_t *addr);
static void ngx_http_sandbox_redis_close(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_schedule(ngx_http_sandbox_redis_t *rd);
static void ngx_http_sandbox_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_sandbox_redis_auth_handler(void *data,
    redisReply *reply);
static void ngx_http_sandbox_redis_role_handler(void *data,
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

    rd->reader = sbx_reply_reader_create();
    if (rd->reader == NULL) {
        ngx_free(rd);
        return NULL;
    }

    ngx_queue_init(&rd->pending);
    ngx_queue_init(&rd->free);

    rd->addr = conf->addr;

    if (conf->sentinel) {
        rd->master.sockaddr = &rd->master_sockaddr.sockaddr;
        rd->master.name.data = rd->master_name;

        if (ngx_http_sandbox_sentinel_follow(conf->sentinel, rd) != NGX_OK) {
            redisReaderFree(rd->reader);
            ngx_free(rd);
            return NULL;
        }
    }

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

    if (rd->conf.sentinel) {
        ngx_http_sandbox_sentinel_unfollow(rd->conf.sentinel, rd);
    }

    rd->quiet = 1;

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


static void
ngx_http_sandbox_redis_connect(ngx_http_sandbox_redis_t *rd)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (rd->conf.sentinel == NULL) {
        ngx_http_sandbox_redis_open(rd);
        return;
    }

    /*
     * ROLE goes first, before any address is known, so that commands
     * queued from now on wait behind it
     */

    rd->state = NGX_HTTP_SANDBOX_REDIS_RESOLVING;

    if (ngx_http_sandbox_redis_handshake(rd) != NGX_OK) {
        ngx_http_sandbox_redis_fail(rd, "cannot queue the handshake");
        return;
    }

    if (!ngx_http_sandbox_redis_follows(rd, NULL)) {

        /* the sentinels have not named the master yet: wait, bounded */

        ngx_add_timer(&rd->reconnect, rd->conf.connect_timeout);
        return;
    }

    ngx_http_sandbox_redis_open(rd);
}


/*
 * Copies the master's address the sentinels name now into the link, or,
 * with addr, tells whether the link already follows that address.
 */

static ngx_uint_t
ngx_http_sandbox_redis_follows(ngx_http_sandbox_redis_t *rd,
    ngx_addr_t *addr)
{
    ngx_addr_t  *master;

    master = ngx_http_sandbox_sentinel_master(rd->conf.sentinel);

    if (addr) {
        return master != NULL && rd->addr != NULL
               && ngx_cmp_sockaddr(master->sockaddr, master->socklen,
                                   rd->addr->sockaddr, rd->addr->socklen, 1)
                  == NGX_OK;
    }

    if (master == NULL) {
        rd->addr = NULL;
        return 0;
    }

    ngx_memcpy(rd->master.sockaddr, master->sockaddr, master->socklen);
    rd->master.socklen = master->socklen;
    rd->master.name.len = ngx_min(master->name.len, NGX_SOCKADDR_STRLEN);
    ngx_memcpy(rd->master.name.data, master->name.data, rd->master.name.len);

    rd->addr = &rd->master;

    return 1;
}


static ngx_int_t
ngx_http_sandbox_redis_handshake(ngx_http_sandbox_redis_t *rd)
{
    const char  *argv[2];
    size_t       argvlen[2];

    if (rd->conf.password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) rd->conf.password.data;
        argvlen[1] = rd->conf.password.len;

        if (ngx_http_sandbox_redis_queue(rd, 2, argv, argvlen,
                                         ngx_http_sandbox_redis_auth_handler,
                                         rd)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (rd->conf.sentinel) {
        argv[0] = "ROLE";
        argvlen[0] = 4;

        if (ngx_http_sandbox_redis_queue(rd, 1, argv, argvlen,
                                         ngx_http_sandbox_redis_role_handler,
                                         rd)
            == NULL)
        {
            return NGX_ERROR;
        }

        /* nothing past the handshake leaves before ROLE says "master" */

        rd->out_gate = rd->out_len;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_redis_open(ngx_http_sandbox_redis_t *rd)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_memzero(&rd->peer, sizeof(ngx_peer_connection_t));

    rd->peer.sockaddr = rd->addr->sockaddr;
    rd->peer.socklen = rd->addr->socklen;
    rd->peer.name = &rd->addr->name;
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

        ngx_http_sandbox_redis_fail(rd, NULL);
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

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_DOWN) {

        /* queued now, sent first once connected */

        rd->state = NGX_HTTP_SANDBOX_REDIS_CONNECTING;

        if (ngx_http_sandbox_redis_handshake(rd) != NGX_OK) {
            ngx_http_sandbox_redis_fail(rd, "cannot queue AUTH");
            return;
        }

    } else {

        /* commands queued while the sentinels were asked are bounded now */

        if (rd->reconnect.timer_set) {
            ngx_del_timer(&rd->reconnect);
        }

        rd->state = NGX_HTTP_SANDBOX_REDIS_CONNECTING;
    }

    ngx_http_sandbox_redis_arm_timer(rd);

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, rd->conf.connect_timeout);
        return;
    }

    ngx_http_sandbox_redis_connected(rd);
}


void
ngx_http_sandbox_redis_connected(ngx_http_sandbox_redis_t *rd)
{
    ngx_connection_t  *c;

    c = rd->peer.connection;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "sandbox: redis connected to %V", &rd->addr->name);

    if (rd->conf.sentinel) {

        /* up once ROLE says "master": the role handler finishes */

        rd->state = NGX_HTTP_SANDBOX_REDIS_HANDSHAKE;

    } else {
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
    }

    if (rd->out_len > rd->out_sent && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_sandbox_redis_fail(rd, "cannot add read event");
    }
}


ngx_int_t
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


void
ngx_http_sandbox_redis_fail(ngx_http_sandbox_redis_t *rd, const char *reason)
{
    ngx_addr_t                    failed_addr;
    ngx_queue_t                   failed, *q;
    ngx_sockaddr_t                failed_sockaddr;
    ngx_http_sandbox_redis_op_t  *op;

    if (reason) {
        ngx_http_sandbox_redis_trouble(rd, 0, reason);
    }

    /* the sentinels are asked again, once this link no longer needs it */

    failed_addr.sockaddr = NULL;

    if (rd->conf.sentinel && rd->addr && !rd->quiet) {
        failed_addr = *rd->addr;
        failed_addr.sockaddr = &failed_sockaddr.sockaddr;
        ngx_memcpy(&failed_sockaddr, rd->addr->sockaddr, rd->addr->socklen);
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

    if (failed_addr.sockaddr) {
        ngx_http_sandbox_sentinel_failed(rd->conf.sentinel, &failed_addr);
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
    rd->out_gate = 0;

    /* a partial reply of the old link must not prefix the next one */

    redisReaderFree(rd->reader);
    rd->reader = sbx_reply_reader_create();
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

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_RESOLVING) {
        ngx_http_sandbox_redis_fail(rd, "no sentinel named the master");
        return;
    }

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_DOWN && rd->reader != NULL) {
        ngx_http_sandbox_redis_connect(rd);
    }
}


void
ngx_http_sandbox_redis_retarget(ngx_http_sandbox_redis_t *rd,
    ngx_uint_t force)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    switch (rd->state) {

    case NGX_HTTP_SANDBOX_REDIS_DOWN:
        break;

    case NGX_HTTP_SANDBOX_REDIS_RESOLVING:

        /* what waited for the master's name goes there now */

        if (ngx_http_sandbox_redis_follows(rd, NULL)) {
            ngx_http_sandbox_redis_open(rd);
        }

        return;

    default:
        if (!force && (rd->conf.sentinel == NULL
                       || ngx_http_sandbox_redis_follows(rd, rd->addr)))
        {
            return;
        }

        rd->quiet = 1;
        ngx_http_sandbox_redis_fail(rd, rd->conf.sentinel
                                        ? "the sentinels named another master"
                                        : NULL);
        rd->quiet = 0;
    }

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    rd->backoff = NGX_HTTP_SANDBOX_REDIS_BACKOFF_MIN;

    ngx_http_sandbox_redis_connect(rd);
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
ngx_http_sandbox_redis_role_handler(void *data, redisReply *reply)
{
    ngx_http_sandbox_redis_t  *rd = data;

    ngx_connection_t  *c;

    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 6
        || ngx_strncmp(reply->element[0]->str, "master", 6) != 0)
    {
        rd->not_master = 1;
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                  "sandbox: redis master at %V", &rd->addr->name);

    rd->state = NGX_HTTP_SANDBOX_REDIS_UP;
    rd->backoff = NGX_HTTP_SANDBOX_REDIS_BACKOFF_MIN;

    if (rd->outage) {
        ngx_http_sandbox_redis_recovered(rd);
    }

    if (rd->conf.ready) {
        rd->conf.ready(rd, rd->conf.data);
    }

    /* what waited behind ROLE leaves now */

    c = rd->peer.connection;

    if (rd->state == NGX_HTTP_SANDBOX_REDIS_UP && rd->out_len > rd->out_sent
        && !c->write->posted)
    {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_http_sandbox_redis_trouble(ngx_http_sandbox_redis_t *rd, ngx_err_t err,
    const char *reason)
{
    ngx_str_t  *name;

    /* a link that waits for the sentinels has no address yet */

    name = rd->addr ? &rd->addr->name : &rd->master.name;

    if (rd->outage) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, err,
                       "sandbox: redis %V still unavailable: %s",
                       name, reason);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rd->log, err,
                  "sandbox: redis %V unavailable: %s; requests that need it "
                  "fail until it is back", name, reason);

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
                  "failed meanwhile", &rd->addr->name,
                  ngx_current_msec - rd->outage_start, rd->outage_failed);

    rd->outage = 0;

    c = rd->peer.connection;
    c->log = rd->log;
    c->read->log = rd->log;
    c->write->log = rd->log;
}
