
/*
 * Copyright (C) The sandbox gateway authors
 *
 * A non-blocking, pipelined Redis client for nginx workers.  nginx owns the
 * socket (ngx_event_connect_peer), hiredis is used only to format commands
 * and to parse replies, so the event loop, timers and logging are nginx's.
 * A link either has a fixed address or follows the master a set of
 * Sentinels names (ngx_http_sandbox_sentinel.c).
 */


#ifndef _NGX_HTTP_SANDBOX_REDIS_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <hiredis/hiredis.h>


typedef struct ngx_http_sandbox_redis_s     ngx_http_sandbox_redis_t;
typedef struct ngx_http_sandbox_redis_op_s  ngx_http_sandbox_redis_op_t;
typedef struct ngx_http_sandbox_sentinel_s  ngx_http_sandbox_sentinel_t;

/* reply is NULL when the command failed: timeout, link lost, not sent */
typedef void (*ngx_http_sandbox_redis_handler_pt)(void *data,
    redisReply *reply);

/*
 * Sees every reply first on a subscriber link: returns NGX_OK when the
 * reply was a pushed message it consumed, NGX_DECLINED when the reply
 * answers the oldest pending command (SUBSCRIBE, PING)
 */
typedef ngx_int_t (*ngx_http_sandbox_redis_push_pt)(void *data,
    redisReply *reply);

/* called each time a connection becomes ready to carry commands */
typedef void (*ngx_http_sandbox_redis_ready_pt)(
    ngx_http_sandbox_redis_t *rd, void *data);


/*
 * The round-trip latency histogram's upper bounds, ms; one more bucket
 * counts the rest.  ngx_http_sandbox_latency_bucket() finds a bucket.
 */
#define NGX_HTTP_SANDBOX_LATENCY_BOUNDS                                       \
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
#define NGX_HTTP_SANDBOX_LATENCY_BUCKETS  16


/* counters; they may live in shared memory, so they are atomics */
typedef struct {
    ngx_atomic_t                         commands;
    ngx_atomic_t                         replies;
    ngx_atomic_t                         failures;
    ngx_atomic_t                         connects;
    ngx_atomic_t                         latency_total;
    ngx_atomic_t                         latency_max;
    ngx_atomic_t                         latency[
                                            NGX_HTTP_SANDBOX_LATENCY_BUCKETS];
} ngx_http_sandbox_redis_stats_t;


ngx_uint_t ngx_http_sandbox_latency_bucket(ngx_msec_t ms);


typedef struct {
    ngx_addr_t                          *addr;      /* NULL with sentinel */
    ngx_http_sandbox_sentinel_t         *sentinel;  /* follows its master */
    ngx_str_t                            password;
    ngx_msec_t                           connect_timeout;
    ngx_msec_t                           timeout;
    ngx_http_sandbox_redis_ready_pt      ready;
    ngx_http_sandbox_redis_push_pt       push;
    void                                *data;
    ngx_http_sandbox_redis_stats_t      *stats;    /* NULL: private */
} ngx_http_sandbox_redis_conf_t;


ngx_http_sandbox_redis_t *ngx_http_sandbox_redis_create(
    ngx_http_sandbox_redis_conf_t *conf, ngx_log_t *log);
void ngx_http_sandbox_redis_destroy(ngx_http_sandbox_redis_t *rd);

/*
 * Queues a command.  Returns NULL when the link is down, so that callers
 * fail fast instead of waiting behind a dead connection.  A NULL handler
 * makes the command fire-and-forget.
 */
ngx_http_sandbox_redis_op_t *ngx_http_sandbox_redis_command(
    ngx_http_sandbox_redis_t *rd, ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_sandbox_redis_handler_pt handler,
    void *data);

/* one command of a pipeline */
typedef struct {
    ngx_uint_t                           argc;
    const char                         **argv;
    const size_t                        *argvlen;
} ngx_http_sandbox_redis_cmd_t;

#define NGX_HTTP_SANDBOX_REDIS_MAX_PIPELINE  4

/*
 * Queues n commands, at most NGX_HTTP_SANDBOX_REDIS_MAX_PIPELINE, as one
 * operation: they leave together, and the handler is called once, with
 * an array of their n replies in order (an error reply stays an element),
 * or with NULL as for one command.  The array is the handler's to read,
 * not to keep.  Plain reads pipelined cost Redis a fraction of a script.
 */
ngx_http_sandbox_redis_op_t *ngx_http_sandbox_redis_pipeline(
    ngx_http_sandbox_redis_t *rd, ngx_uint_t n,
    ngx_http_sandbox_redis_cmd_t *cmds,
    ngx_http_sandbox_redis_handler_pt handler, void *data);

/* the handler of a cancelled command is never called */
void ngx_http_sandbox_redis_cancel(ngx_http_sandbox_redis_op_t *op);

ngx_uint_t ngx_http_sandbox_redis_ready(ngx_http_sandbox_redis_t *rd);

/* a push handler's test: a pub/sub message, and its payload if a string */
ngx_int_t ngx_http_sandbox_redis_message(redisReply *reply,
    redisReply **payload);

/*
 * Drops the link (its pending commands fail) and connects again at once,
 * with no backoff: to the master the sentinels name now, or to the same
 * address for a plain link.  A link that already follows that master, and
 * is up or on its way, is left alone unless force is set.
 */
void ngx_http_sandbox_redis_retarget(ngx_http_sandbox_redis_t *rd,
    ngx_uint_t force);


/* Sentinel: which master the links of this worker follow */

typedef struct {
    ngx_str_t                            name;      /* the master's name */
    ngx_array_t                          addrs;     /* ngx_addr_t */
} ngx_http_sandbox_sentinel_conf_t;

ngx_http_sandbox_sentinel_t *ngx_http_sandbox_sentinel_create(
    ngx_http_sandbox_sentinel_conf_t *conf,
    ngx_http_sandbox_redis_conf_t *rc, ngx_log_t *log);
void ngx_http_sandbox_sentinel_destroy(ngx_http_sandbox_sentinel_t *st);

ngx_int_t ngx_http_sandbox_sentinel_follow(ngx_http_sandbox_sentinel_t *st,
    ngx_http_sandbox_redis_t *rd);
void ngx_http_sandbox_sentinel_unfollow(ngx_http_sandbox_sentinel_t *st,
    ngx_http_sandbox_redis_t *rd);

/* the master's address, NULL while no sentinel has named it */
ngx_addr_t *ngx_http_sandbox_sentinel_master(ngx_http_sandbox_sentinel_t *st);

/* a follower could not use that address (down, or not a master): ask again */
void ngx_http_sandbox_sentinel_failed(ngx_http_sandbox_sentinel_t *st,
    ngx_addr_t *addr);


#endif /* _NGX_HTTP_SANDBOX_REDIS_H_INCLUDED_ */
