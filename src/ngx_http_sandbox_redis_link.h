
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The inside of a Redis link, shared by its two halves: the link's life
 * (ngx_http_sandbox_redis.c: connecting, the handshake, failing, following
 * a Sentinel-named master) and its traffic (ngx_http_sandbox_redis_io.c:
 * queueing, sending, reading and matching replies).  Only those two files
 * include it.
 */


#ifndef _NGX_HTTP_SANDBOX_REDIS_LINK_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_REDIS_LINK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_sandbox_redis.h"


#define NGX_HTTP_SANDBOX_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_SANDBOX_REDIS_BACKOFF_MAX  2000
#define NGX_HTTP_SANDBOX_REDIS_READ_SIZE    16384


/* in this order: a link at HANDSHAKE or later reads replies */

typedef enum {
    NGX_HTTP_SANDBOX_REDIS_DOWN = 0,
    NGX_HTTP_SANDBOX_REDIS_RESOLVING,     /* waits for the sentinels */
    NGX_HTTP_SANDBOX_REDIS_CONNECTING,
    NGX_HTTP_SANDBOX_REDIS_HANDSHAKE,     /* connected, ROLE pending */
    NGX_HTTP_SANDBOX_REDIS_UP
} ngx_http_sandbox_redis_state_e;


struct ngx_http_sandbox_redis_op_s {
    ngx_queue_t                          queue;
    ngx_http_sandbox_redis_handler_pt    handler;
    void                                *data;
    ngx_msec_t                           start;

    /* a pipeline's replies, kept until its last one has come */
    ngx_uint_t                           parts;
    ngx_uint_t                           got;
    redisReply                          *part[
                                        NGX_HTTP_SANDBOX_REDIS_MAX_PIPELINE];
};


struct ngx_http_sandbox_redis_s {
    ngx_http_sandbox_redis_conf_t        conf;
    ngx_http_sandbox_redis_state_e       state;
    ngx_peer_connection_t                peer;
    redisReader                         *reader;

    /* where it connects: conf.addr, or a copy of the master's address */
    ngx_addr_t                          *addr;
    ngx_addr_t                           master;
    ngx_sockaddr_t                       master_sockaddr;
    u_char                               master_name[NGX_SOCKADDR_STRLEN];

    u_char                              *out;
    size_t                               out_len;
    size_t                               out_sent;
    size_t                               out_size;
    size_t                               out_gate;  /* sendable before UP */

    ngx_queue_t                          pending;
    ngx_queue_t                          free;

    ngx_event_t                          reconnect;
    ngx_msec_t                           backoff;
    ngx_log_t                           *log;
    unsigned                             auth_failed:1;
    unsigned                             not_master:1;
    unsigned                             quiet:1;   /* failed on purpose */

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


ngx_http_sandbox_redis_op_t *ngx_http_sandbox_redis_queue(
    ngx_http_sandbox_redis_t *rd, ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_sandbox_redis_handler_pt handler,
    void *data);
ngx_http_sandbox_redis_op_t *ngx_http_sandbox_redis_queue_n(
    ngx_http_sandbox_redis_t *rd, ngx_uint_t n,
    ngx_http_sandbox_redis_cmd_t *cmds,
    ngx_http_sandbox_redis_handler_pt handler, void *data);
void ngx_http_sandbox_redis_connected(ngx_http_sandbox_redis_t *rd);
ngx_int_t ngx_http_sandbox_redis_test_connect(ngx_connection_t *c);
void ngx_http_sandbox_redis_read_handler(ngx_event_t *rev);
void ngx_http_sandbox_redis_write_handler(ngx_event_t *wev);
ngx_int_t ngx_http_sandbox_redis_flush(ngx_http_sandbox_redis_t *rd);
void ngx_http_sandbox_redis_arm_timer(ngx_http_sandbox_redis_t *rd);
void ngx_http_sandbox_redis_fail(ngx_http_sandbox_redis_t *rd,
    const char *reason);
void ngx_http_sandbox_redis_op_free(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_redis_op_t *op);


#endif /* _NGX_HTTP_SANDBOX_REDIS_LINK_H_INCLUDED_ */
