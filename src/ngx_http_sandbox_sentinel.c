
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Which Redis master the links of a worker follow, as Redis Sentinel says.
 * Each worker keeps one link to every sentinel it was given (so an
 * announcement reaches it from whichever sentinel makes it first; the
 * other sentinels only learn of a failover through their hello messages,
 * up to two seconds later).  On every connection a link asks
 * SENTINEL get-master-addr-by-name and subscribes to +switch-master in
 * the same pipeline, so no switch falls between the answer and the
 * subscription.
 *
 * A +switch-master for our master moves every follower at once.  Plain
 * answers move them only when a majority of the sentinels agree: during a
 * failover the leader names the new master a little before it announces
 * it, and the others name the old one until they hear of it; following
 * the leader early would move one worker before the others (and worker 0
 * resubscribing flushes the shared cache while another worker's link is
 * still down).  Followers that fail make the sentinels be asked again, by
 * reconnecting the sentinel links, at most every
 * NGX_HTTP_SANDBOX_SENTINEL_REASK ms.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_sandbox_redis.h"


#define NGX_HTTP_SANDBOX_SENTINEL_FOLLOWERS  4
#define NGX_HTTP_SANDBOX_SENTINEL_REASK      250
#define NGX_HTTP_SANDBOX_SENTINEL_PING       1000
#define NGX_HTTP_SANDBOX_SENTINEL_CHANNEL    "+switch-master"


/* a link to one sentinel, and what that sentinel last said */

typedef struct {
    ngx_http_sandbox_sentinel_t         *st;
    ngx_http_sandbox_redis_t            *rd;
    ngx_sockaddr_t                       said;
    socklen_t                            said_len;     /* 0: nothing yet */
} ngx_http_sandbox_sentinel_link_t;


struct ngx_http_sandbox_sentinel_s {
    ngx_http_sandbox_sentinel_conf_t    *conf;
    ngx_http_sandbox_sentinel_link_t    *links;
    ngx_uint_t                           nlinks;

    ngx_http_sandbox_redis_t            *followers[
                                         NGX_HTTP_SANDBOX_SENTINEL_FOLLOWERS];
    ngx_uint_t                           nfollowers;

    ngx_addr_t                           master;
    ngx_sockaddr_t                       sockaddr;
    u_char                               name[NGX_SOCKADDR_STRLEN];
    unsigned                             known:1;

    ngx_event_t                          reask;
    ngx_msec_t                           asked;
    ngx_event_t                          ping;
    ngx_log_t                           *log;
};


static void ngx_http_sandbox_sentinel_ready(ngx_http_sandbox_redis_t *rd,
    void *data);
static void ngx_http_sandbox_sentinel_addr_handler(void *data,
    redisReply *reply);
static ngx_int_t ngx_http_sandbox_sentinel_push(void *data,
    redisReply *reply);
static void ngx_http_sandbox_sentinel_answer(
    ngx_http_sandbox_sentinel_link_t *link, u_char *ip, size_t iplen,
    u_char *port, size_t portlen, ngx_uint_t announced);
static ngx_int_t ngx_http_sandbox_sentinel_parse(u_char *ip, size_t iplen,
    u_char *port, size_t portlen, ngx_sockaddr_t *sa, socklen_t *socklen);
static ngx_uint_t ngx_http_sandbox_sentinel_is(ngx_http_sandbox_sentinel_t *st,
    ngx_addr_t *addr);
static void ngx_http_sandbox_sentinel_reask_handler(ngx_event_t *ev);
static void ngx_http_sandbox_sentinel_ping_handler(ngx_event_t *ev);


ngx_http_sandbox_sentinel_t *
ngx_http_sandbox_sentinel_create(ngx_http_sandbox_sentinel_conf_t *conf,
    ngx_http_sandbox_redis_conf_t *rc, ngx_log_t *log)
{
    ngx_uint_t                      i;
    ngx_addr_t                     *addrs;
    ngx_http_sandbox_sentinel_t    *st;
    ngx_http_sandbox_redis_conf_t   lc;

    st = ngx_calloc(sizeof(ngx_http_sandbox_sentinel_t), log);
    if (st == NULL) {
        return NULL;
    }

    st->links = ngx_calloc(conf->addrs.nelts
                           * sizeof(ngx_http_sandbox_sentinel_link_t), log);
    if (st->links == NULL) {
        ngx_free(st);
        return NULL;
    }

    st->conf = conf;
    st->log = log;
    st->master.sockaddr = &st->sockaddr.sockaddr;
    st->master.name.data = st->name;

    /* neither timer may keep an exiting worker alive */

    st->reask.handler = ngx_http_sandbox_sentinel_reask_handler;
    st->reask.data = st;
    st->reask.log = log;
    st->reask.cancelable = 1;

    st->ping.handler = ngx_http_sandbox_sentinel_ping_handler;
    st->ping.data = st;
    st->ping.log = log;
    st->ping.cancelable = 1;

    /* sentinels take no password here, only the data links do */

    lc = *rc;
    lc.sentinel = NULL;
    ngx_str_null(&lc.password);
    lc.ready = ngx_http_sandbox_sentinel_ready;
    lc.push = ngx_http_sandbox_sentinel_push;
    lc.stats = NULL;

    addrs = conf->addrs.elts;

    for (i = 0; i < conf->addrs.nelts; i++) {
        lc.addr = &addrs[i];
        lc.data = &st->links[i];
        st->links[i].st = st;

        st->links[i].rd = ngx_http_sandbox_redis_create(&lc, log);
        if (st->links[i].rd == NULL) {
            ngx_http_sandbox_sentinel_destroy(st);
            return NULL;
        }

        st->nlinks++;
    }

    ngx_add_timer(&st->ping, NGX_HTTP_SANDBOX_SENTINEL_PING);

    return st;
}


void
ngx_http_sandbox_sentinel_destroy(ngx_http_sandbox_sentinel_t *st)
{
    ngx_uint_t  i;

    if (st == NULL) {
        return;
    }

    if (st->reask.timer_set) {
        ngx_del_timer(&st->reask);
    }

    if (st->ping.timer_set) {
        ngx_del_timer(&st->ping);
    }

    for (i = 0; i < st->nlinks; i++) {
        ngx_http_sandbox_redis_destroy(st->links[i].rd);
    }

    ngx_free(st->links);
    ngx_free(st);
}


ngx_int_t
ngx_http_sandbox_sentinel_follow(ngx_http_sandbox_sentinel_t *st,
    ngx_http_sandbox_redis_t *rd)
{
    if (st->nfollowers == NGX_HTTP_SANDBOX_SENTINEL_FOLLOWERS) {
        return NGX_ERROR;
    }

    st->followers[st->nfollowers++] = rd;

    return NGX_OK;
}


void
ngx_http_sandbox_sentinel_unfollow(ngx_http_sandbox_sentinel_t *st,
    ngx_http_sandbox_redis_t *rd)
{
    ngx_uint_t  i;

    for (i = 0; i < st->nfollowers; i++) {
        if (st->followers[i] == rd) {
            st->followers[i] = st->followers[--st->nfollowers];
            return;
        }
    }
}


ngx_addr_t *
ngx_http_sandbox_sentinel_master(ngx_http_sandbox_sentinel_t *st)
{
    return st->known ? &st->master : NULL;
}


void
ngx_http_sandbox_sentinel_failed(ngx_http_sandbox_sentinel_t *st,
    ngx_addr_t *addr)
{
    ngx_msec_t  elapsed;

    /* a failure at an address already left behind says nothing new */

    if (!ngx_http_sandbox_sentinel_is(st, addr)) {
        return;
    }

    if (st->reask.timer_set || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* never from inside a link's handlers, and not in a tight loop */

    elapsed = ngx_current_msec - st->asked;

    ngx_add_timer(&st->reask, elapsed >= NGX_HTTP_SANDBOX_SENTINEL_REASK
                              ? 1 : NGX_HTTP_SANDBOX_SENTINEL_REASK - elapsed);
}


static ngx_uint_t
ngx_http_sandbox_sentinel_is(ngx_http_sandbox_sentinel_t *st,
    ngx_addr_t *addr)
{
    return st->known
           && ngx_cmp_sockaddr(st->master.sockaddr, st->master.socklen,
                               addr->sockaddr, addr->socklen, 1)
              == NGX_OK;
}


static void
ngx_http_sandbox_sentinel_ready(ngx_http_sandbox_redis_t *rd, void *data)
{
    ngx_http_sandbox_sentinel_link_t *link = data;

    const char                   *argv[3];
    size_t                        argvlen[3];
    ngx_http_sandbox_sentinel_t  *st;

    st = link->st;

    /* what it said on its last connection may be old news */

    link->said_len = 0;

    /* one pipeline: the answer, then the subscription, nothing between */

    argv[0] = "SENTINEL";
    argvlen[0] = sizeof("SENTINEL") - 1;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) st->conf->name.data;
    argvlen[2] = st->conf->name.len;

    if (ngx_http_sandbox_redis_command(rd, 3, argv, argvlen,
                                       ngx_http_sandbox_sentinel_addr_handler,
                                       link)
        == NULL)
    {
        return;
    }

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = NGX_HTTP_SANDBOX_SENTINEL_CHANNEL;
    argvlen[1] = sizeof(NGX_HTTP_SANDBOX_SENTINEL_CHANNEL) - 1;

    (void) ngx_http_sandbox_redis_command(rd, 2, argv, argvlen, NULL, NULL);
}


static void
ngx_http_sandbox_sentinel_addr_handler(void *data, redisReply *reply)
{
    ngx_http_sandbox_sentinel_link_t *link = data;

    redisReply                  **el;
    ngx_http_sandbox_sentinel_t  *st;

    st = link->st;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_WARN, st->log, 0,
                      "sandbox: a sentinel does not know the master \"%V\"",
                      &st->conf->name);
        return;
    }

    el = reply->element;

    ngx_http_sandbox_sentinel_answer(link, (u_char *) el[0]->str,
                                     el[0]->len, (u_char *) el[1]->str,
                                     el[1]->len, 0);
}


/* "message", "+switch-master", "<name> <old ip> <old port> <ip> <port>" */

static ngx_int_t
ngx_http_sandbox_sentinel_push(void *data, redisReply *reply)
{
    ngx_http_sandbox_sentinel_link_t *link = data;

    u_char                       *p, *last, *f[5];
    size_t                        len[5];
    ngx_uint_t                    n;
    redisReply                   *msg;
    ngx_http_sandbox_sentinel_t  *st;

    st = link->st;

    if (ngx_http_sandbox_redis_message(reply, &msg) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (msg == NULL) {
        return NGX_OK;
    }

    p = (u_char *) msg->str;
    last = p + msg->len;

    for (n = 0; n < 5 && p < last; n++) {
        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        len[n] = p - f[n];

        while (p < last && *p == ' ') {
            p++;
        }
    }

    if (n < 5 || len[0] != st->conf->name.len
        || ngx_strncmp(f[0], st->conf->name.data, len[0]) != 0)
    {
        return NGX_OK;
    }

    ngx_http_sandbox_sentinel_answer(link, f[3], len[3], f[4], len[4], 1);

    return NGX_OK;
}


static void
ngx_http_sandbox_sentinel_answer(ngx_http_sandbox_sentinel_link_t *link,
    u_char *ip, size_t iplen, u_char *port, size_t portlen,
    ngx_uint_t announced)
{
    ngx_uint_t                    i, agree;
    ngx_addr_t                    addr;
    socklen_t                     socklen;
    ngx_sockaddr_t                sa;
    ngx_http_sandbox_sentinel_t  *st;

    st = link->st;

    if (ngx_http_sandbox_sentinel_parse(ip, iplen, port, portlen, &sa,
                                        &socklen)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "sandbox: the sentinels name \"%*s\" port \"%*s\" for "
                      "the master \"%V\", not an IP address and port",
                      iplen, ip, portlen, port, &st->conf->name);
        return;
    }

    addr.sockaddr = &sa.sockaddr;
    addr.socklen = socklen;

    ngx_memcpy(&link->said, &sa, socklen);
    link->said_len = socklen;

    if (ngx_http_sandbox_sentinel_is(st, &addr)) {
        return;
    }

    /* one sentinel's word moves links only when it is an announcement */

    agree = 0;

    for (i = 0; i < st->nlinks; i++) {
        if (st->links[i].said_len
            && ngx_cmp_sockaddr(&st->links[i].said.sockaddr,
                                st->links[i].said_len, &sa.sockaddr,
                                socklen, 1)
               == NGX_OK)
        {
            agree++;
        }
    }

    if (!announced && agree <= st->nlinks / 2) {
        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, st->log, 0,
                       "sandbox: %ui of %ui sentinels name %*s as the "
                       "master", agree, st->nlinks, iplen, ip);
        return;
    }

    ngx_memcpy(&st->sockaddr, &sa, socklen);
    st->master.socklen = socklen;
    st->master.name.len = ngx_sock_ntop(&st->sockaddr.sockaddr, socklen,
                                        st->name, NGX_SOCKADDR_STRLEN, 1);
    st->known = 1;

    ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                  "sandbox: redis master \"%V\" is at %V%s",
                  &st->conf->name, &st->master.name,
                  announced ? " (switched)" : "");

    for (i = 0; i < st->nfollowers; i++) {
        ngx_http_sandbox_redis_retarget(st->followers[i], 0);
    }
}


/* sentinels answer with IP addresses unless told to announce names */

static ngx_int_t
ngx_http_sandbox_sentinel_parse(u_char *ip, size_t iplen, u_char *port,
    size_t portlen, ngx_sockaddr_t *sa, socklen_t *socklen)
{
    ngx_int_t   p;
    in_addr_t   inaddr;

    ngx_memzero(sa, sizeof(ngx_sockaddr_t));

    p = ngx_atoi(port, portlen);
    if (p < 1 || p > 65535) {
        return NGX_ERROR;
    }

    inaddr = ngx_inet_addr(ip, iplen);

    if (inaddr != INADDR_NONE) {
        sa->sockaddr_in.sin_family = AF_INET;
        sa->sockaddr_in.sin_addr.s_addr = inaddr;
        *socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(ip, iplen,
                              sa->sockaddr_in6.sin6_addr.s6_addr)
               == NGX_OK)
    {
        sa->sockaddr_in6.sin6_family = AF_INET6;
        *socklen = sizeof(struct sockaddr_in6);
#endif

    } else {
        return NGX_ERROR;
    }

    ngx_inet_set_port(&sa->sockaddr, (in_port_t) p);

    return NGX_OK;
}


static void
ngx_http_sandbox_sentinel_reask_handler(ngx_event_t *ev)
{
    ngx_uint_t                    i;
    ngx_http_sandbox_sentinel_t  *st;

    st = ev->data;
    st->asked = ngx_current_msec;

    ngx_log_error(NGX_LOG_INFO, st->log, 0,
                  "sandbox: redis master \"%V\" at %V failed, asking the "
                  "sentinels", &st->conf->name, &st->master.name);

    /* a fresh connection asks and subscribes again */

    for (i = 0; i < st->nlinks; i++) {
        ngx_http_sandbox_redis_retarget(st->links[i].rd, 1);
    }
}


static void
ngx_http_sandbox_sentinel_ping_handler(ngx_event_t *ev)
{
    const char                   *argv[1];
    size_t                        argvlen[1];
    ngx_uint_t                    i;
    ngx_http_sandbox_sentinel_t  *st;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    st = ev->data;

    /* a silent sentinel is found out by the read timeout */

    argv[0] = "PING";
    argvlen[0] = sizeof("PING") - 1;

    for (i = 0; i < st->nlinks; i++) {
        if (ngx_http_sandbox_redis_ready(st->links[i].rd)) {
            (void) ngx_http_sandbox_redis_command(st->links[i].rd, 1, argv,
                                                  argvlen, NULL, NULL);
        }
    }

    ngx_add_timer(ev, NGX_HTTP_SANDBOX_SENTINEL_PING);
}
