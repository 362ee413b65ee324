
/*
 * Copyright (C) The sandbox gateway authors
 *
 * "sandbox_balancer" in an upstream{} block: the peer of each request is
 * the pod address the access phase found.
 *
 * It keeps its own pool of idle connections to pods.  nginx's "keepalive"
 * works too (place it after this directive), but it searches its cache
 * linearly: measured with 1,000 pods behind one upstream that search cost
 * over a quarter of the throughput (bench/RESULTS.md).  This pool finds a
 * pod's idle connection through a hash of its address, and otherwise
 * follows the same rules as "keepalive" about which connections may be
 * kept and for how long.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


typedef struct {
    ngx_uint_t                      max_cached;
    ngx_msec_t                      timeout;
    ngx_msec_t                      time;
    ngx_uint_t                      requests;

    ngx_queue_t                     lru;        /* idle, newest first */
    ngx_queue_t                     free;
    ngx_queue_t                    *buckets;    /* idle, by address */
    ngx_uint_t                      mask;
} ngx_http_sandbox_balancer_conf_t;


typedef struct {
    ngx_http_sandbox_balancer_conf_t  *conf;
    ngx_queue_t                     lru;
    ngx_queue_t                     bucket;
    ngx_connection_t               *connection;
    uint32_t                        hash;
    socklen_t                       socklen;
    ngx_sockaddr_t                  sockaddr;
} ngx_http_sandbox_balancer_item_t;


typedef struct {
    ngx_http_sandbox_balancer_conf_t  *conf;
    ngx_http_sandbox_route_ctx_t      *ctx;
    ngx_http_upstream_t               *upstream;
} ngx_http_sandbox_balancer_peer_t;


static ngx_int_t ngx_http_sandbox_balancer_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_sandbox_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_sandbox_balancer_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_sandbox_balancer_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_uint_t ngx_http_sandbox_balancer_keepable(
    ngx_http_sandbox_balancer_peer_t *bp, ngx_connection_t *c,
    ngx_uint_t state);
static void ngx_http_sandbox_balancer_keep(
    ngx_http_sandbox_balancer_conf_t *bcf, ngx_peer_connection_t *pc,
    ngx_connection_t *c);
static void ngx_http_sandbox_balancer_dummy_handler(ngx_event_t *ev);
static void ngx_http_sandbox_balancer_close_handler(ngx_event_t *ev);
static void ngx_http_sandbox_balancer_close(ngx_connection_t *c);
static void ngx_http_sandbox_balancer_drop(
    ngx_http_sandbox_balancer_item_t *item);
static char *ngx_http_sandbox_balancer_param(ngx_conf_t *cf,
    ngx_http_sandbox_balancer_conf_t *bcf, ngx_str_t *v);


/*
 * The upstream's own srv conf slot of this module is not created by the
 * http core for directive-only modules, so the configuration hangs off
 * uscf->peer.data, which nginx leaves to the balancing method.
 */

char *
ngx_http_sandbox_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_url_t                          u;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_upstream_server_t        *us;
    ngx_http_upstream_srv_conf_t      *uscf, **known;
    ngx_http_sandbox_main_conf_t      *smcf;
    ngx_http_sandbox_balancer_conf_t  *bcf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    /* remembered, so the metrics know a data-plane request by it */

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sandbox_module);

    if (smcf->balancers == NULL) {
        smcf->balancers = ngx_array_create(cf->pool, 2,
                                       sizeof(ngx_http_upstream_srv_conf_t *));
        if (smcf->balancers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    known = ngx_array_push(smcf->balancers);
    if (known == NULL) {
        return NGX_CONF_ERROR;
    }

    *known = uscf;

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    bcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_balancer_conf_t));
    if (bcf == NULL) {
        return NGX_CONF_ERROR;
    }

    bcf->max_cached = 0;
    bcf->timeout = 60000;
    bcf->time = 3600000;
    bcf->requests = 10000;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_sandbox_balancer_param(cf, bcf, &value[i])
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    /* upstream{} insists on a server: add a placeholder nobody dials */

    if (uscf->servers->nelts == 0) {
        ngx_memzero(&u, sizeof(ngx_url_t));
        ngx_str_set(&u.url, "0.0.0.1:1");
        u.default_port = 1;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));

        us->addrs = u.addrs;
        us->naddrs = u.naddrs;
        us->weight = 1;
    }

    uscf->peer.init_upstream = ngx_http_sandbox_balancer_init;
    uscf->peer.data = bcf;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN;

    return NGX_CONF_OK;
}


static char *
ngx_http_sandbox_balancer_param(ngx_conf_t *cf,
    ngx_http_sandbox_balancer_conf_t *bcf, ngx_str_t *v)
{
    ngx_int_t   n;
    ngx_str_t   s;

    if (ngx_strncmp(v->data, "keepalive=", 10) == 0) {
        n = ngx_atoi(v->data + 10, v->len - 10);
        if (n == NGX_ERROR || n > 1000000) {
            goto invalid;
        }

        bcf->max_cached = n;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(v->data, "keepalive_requests=", 19) == 0) {
        n = ngx_atoi(v->data + 19, v->len - 19);
        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        bcf->requests = n;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(v->data, "keepalive_timeout=", 18) == 0) {
        s.data = v->data + 18;
        s.len = v->len - 18;

        bcf->timeout = ngx_parse_time(&s, 0);
        if (bcf->timeout == (ngx_msec_t) NGX_ERROR) {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(v->data, "keepalive_time=", 15) == 0) {
        s.data = v->data + 15;
        s.len = v->len - 15;

        bcf->time = ngx_parse_time(&s, 0);
        if (bcf->time == (ngx_msec_t) NGX_ERROR) {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"", v);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_sandbox_balancer_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                          i, n;
    ngx_http_sandbox_balancer_item_t   *items;
    ngx_http_sandbox_balancer_conf_t   *bcf;

    bcf = us->peer.data;

    us->peer.init = ngx_http_sandbox_balancer_init_peer;

    ngx_queue_init(&bcf->lru);
    ngx_queue_init(&bcf->free);

    if (bcf->max_cached == 0) {
        return NGX_OK;
    }

    items = ngx_pcalloc(cf->pool, bcf->max_cached
                                  * sizeof(ngx_http_sandbox_balancer_item_t));
    if (items == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < bcf->max_cached; i++) {
        items[i].conf = bcf;
        ngx_queue_insert_head(&bcf->free, &items[i].lru);
    }

    for (n = 1; n < bcf->max_cached; n *= 2) { /* void */ }

    bcf->buckets = ngx_palloc(cf->pool, n * sizeof(ngx_queue_t));
    if (bcf->buckets == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        ngx_queue_init(&bcf->buckets[i]);
    }

    bcf->mask = n - 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_sandbox_route_ctx_t      *ctx;
    ngx_http_sandbox_balancer_peer_t  *bp;

    ctx = ngx_http_sandbox_route_ctx(r->main);

    if (ctx == NULL || ctx->socklen == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox: upstream \"%V\" used without a sandbox "
                      "route (is \"sandbox_route on\" set here?)",
                      &us->host);
        return NGX_ERROR;
    }

    bp = ngx_palloc(r->pool, sizeof(ngx_http_sandbox_balancer_peer_t));
    if (bp == NULL) {
        return NGX_ERROR;
    }

    bp->conf = us->peer.data;
    bp->ctx = ctx;
    bp->upstream = r->upstream;

    r->upstream->peer.data = bp;
    r->upstream->peer.get = ngx_http_sandbox_balancer_get_peer;
    r->upstream->peer.free = ngx_http_sandbox_balancer_free_peer;
    r->upstream->peer.tries = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_balancer_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_sandbox_balancer_peer_t *bp = data;

    uint32_t                           hash;
    ngx_queue_t                       *q, *bucket;
    ngx_connection_t                  *c;
    ngx_http_sandbox_balancer_item_t  *item;
    ngx_http_sandbox_balancer_conf_t  *bcf;

    pc->sockaddr = &bp->ctx->sockaddr.sockaddr;
    pc->socklen = bp->ctx->socklen;
    pc->name = &bp->ctx->addr_text;
    pc->cached = 0;
    pc->connection = NULL;

    /* every peer got is freed once: the pair counts the open streams */
    ngx_http_sandbox_metrics_inc(upstream_active);

    bcf = bp->conf;

    if (bcf->max_cached == 0) {
        return NGX_OK;
    }

    hash = ngx_murmur_hash2((u_char *) pc->sockaddr, pc->socklen);
    bucket = &bcf->buckets[hash & bcf->mask];

    for (q = ngx_queue_head(bucket);
         q != ngx_queue_sentinel(bucket);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_sandbox_balancer_item_t, bucket);

        if (item->hash == hash
            && ngx_memn2cmp((u_char *) &item->sockaddr,
                            (u_char *) pc->sockaddr,
                            item->socklen, pc->socklen)
               == 0)
        {
            goto found;
        }
    }

    ngx_http_sandbox_metrics_inc(pool_misses);

    return NGX_OK;

found:

    c = item->connection;

    ngx_queue_remove(&item->bucket);
    ngx_queue_remove(&item->lru);
    ngx_queue_insert_head(&bcf->free, &item->lru);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "sandbox balancer: reusing connection %p", c);

    c->idle = 0;
    c->sent = 0;
    c->data = NULL;
    c->log = pc->log;
    c->read->log = pc->log;
    c->write->log = pc->log;
    c->pool->log = pc->log;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    pc->connection = c;
    pc->cached = 1;

    ngx_http_sandbox_metrics_inc(pool_hits);

    return NGX_DONE;
}


static void
ngx_http_sandbox_balancer_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_sandbox_balancer_peer_t *bp = data;

    ngx_connection_t              *c;
    ngx_http_sandbox_route_ctx_t  *ctx;
    ngx_http_sandbox_main_conf_t  *smcf;

    ctx = bp->ctx;
    c = pc->connection;

    pc->tries = 0;

    ngx_http_sandbox_metrics_dec(upstream_active);

    if (ngx_http_sandbox_balancer_keepable(bp, c, state)) {
        ngx_http_sandbox_balancer_keep(bp->conf, pc, c);
    }

    /*
     * pods move: a failed route is asked of Redis again, not of the cache;
     * but a pooled connection the pod closed as it was reused says nothing
     * of where the pod is (nginx retries it on a new one, whose failure
     * would)
     */

    if ((state & NGX_PEER_FAILED) && !pc->cached && ctx->user.len) {
        smcf = ngx_http_cycle_get_module_main_conf((ngx_cycle_t *) ngx_cycle,
                                                   ngx_http_sandbox_module);

        if (smcf->cache_zone) {
            ngx_http_sandbox_cache_drop_route(smcf->cache_zone, &ctx->user,
                                              &ctx->name);
        }
    }
}


/* the rules of nginx's keepalive: only a clean, reusable link is kept */

static ngx_uint_t
ngx_http_sandbox_balancer_keepable(ngx_http_sandbox_balancer_peer_t *bp,
    ngx_connection_t *c, ngx_uint_t state)
{
    ngx_http_upstream_t  *u;

    u = bp->upstream;

    if (bp->conf->max_cached == 0
        || (state & NGX_PEER_FAILED)
        || c == NULL
        || c->read->eof
        || c->read->error
        || c->read->timedout
        || c->write->error
        || c->write->timedout
        || !u->keepalive
        || !u->request_body_sent
        || ngx_terminate
        || ngx_exiting)
    {
        return 0;
    }

    if (c->requests >= bp->conf->requests
        || ngx_current_msec - c->start_time > bp->conf->time)
    {
        return 0;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return 0;
    }

    return 1;
}


static void
ngx_http_sandbox_balancer_keep(ngx_http_sandbox_balancer_conf_t *bcf,
    ngx_peer_connection_t *pc, ngx_connection_t *c)
{
    ngx_queue_t                       *q;
    ngx_http_sandbox_balancer_item_t  *item;

    /* a full pool gives up its least recently used connection */

    if (ngx_queue_empty(&bcf->free)) {
        q = ngx_queue_last(&bcf->lru);
        item = ngx_queue_data(q, ngx_http_sandbox_balancer_item_t, lru);

        ngx_http_sandbox_balancer_close(item->connection);
        ngx_http_sandbox_balancer_drop(item);
    }

    q = ngx_queue_head(&bcf->free);
    ngx_queue_remove(q);
    item = ngx_queue_data(q, ngx_http_sandbox_balancer_item_t, lru);

    item->connection = c;
    item->socklen = pc->socklen;
    ngx_memcpy(&item->sockaddr, pc->sockaddr, pc->socklen);
    item->hash = ngx_murmur_hash2((u_char *) pc->sockaddr, pc->socklen);

    ngx_queue_insert_head(&bcf->lru, &item->lru);
    ngx_queue_insert_head(&bcf->buckets[item->hash & bcf->mask],
                          &item->bucket);

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, bcf->timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_http_sandbox_balancer_dummy_handler;
    c->read->handler = ngx_http_sandbox_balancer_close_handler;

    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    /* the pod may have closed already: let the handler find out now */

    if (c->read->ready) {
        ngx_http_sandbox_balancer_close_handler(c->read);
    }
}


static void
ngx_http_sandbox_balancer_dummy_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "sandbox balancer: dummy handler");
}


/* an idle pooled connection is readable: a close, a timeout, or garbage */

static void
ngx_http_sandbox_balancer_close_handler(ngx_event_t *ev)
{
    int                                n;
    char                               buf[1];
    ngx_connection_t                  *c;
    ngx_http_sandbox_balancer_item_t  *item;

    c = ev->data;

    if (c->close || c->read->timedout) {
        goto close;
    }

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            goto close;
        }

        return;
    }

close:

    item = c->data;

    ngx_http_sandbox_balancer_close(c);
    ngx_http_sandbox_balancer_drop(item);
}


static void
ngx_http_sandbox_balancer_close(ngx_connection_t *c)
{
    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}


static void
ngx_http_sandbox_balancer_drop(ngx_http_sandbox_balancer_item_t *item)
{
    ngx_queue_remove(&item->bucket);
    ngx_queue_remove(&item->lru);
    ngx_queue_insert_head(&item->conf->free, &item->lru);
    item->connection = NULL;
}


/*
 * Is this request's upstream one of ours: a data-plane request, for the
 * metrics (nginx's "keepalive" after sandbox_balancer wraps our peer
 * functions, so the upstream{} block itself is what tells)
 */

ngx_uint_t
ngx_http_sandbox_balancer_is(ngx_http_request_t *r, ngx_http_upstream_t *u)
{
    ngx_uint_t                      i;
    ngx_http_upstream_srv_conf_t  **known;
    ngx_http_sandbox_main_conf_t   *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (smcf->balancers == NULL || u->upstream == NULL) {
        return 0;
    }

    known = smcf->balancers->elts;

    for (i = 0; i < smcf->balancers->nelts; i++) {
        if (known[i] == u->upstream) {
            return 1;
        }
    }

    return 0;
}
