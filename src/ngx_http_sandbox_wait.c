
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Held requests (see ngx_http_sandbox_wait.h).  Each worker keeps the
 * sandboxes it holds requests for in an rbtree of groups, each group a
 * queue of waiters living in their requests' pools.  A group is checked,
 * one HMGET of its route on the worker's Redis link, when it is made,
 * when a "route" message names it, when the subscription (re)starts (a
 * message may have been missed before), and by the safety-net timer;
 * a check that finds the route ready releases the whole group.  A message
 * that comes while a check is in flight asks for one more check after it,
 * since the check may have read the route before the change.  A "ready"
 * message releases the group at once on its address, with no check: one
 * in flight then finds the group gone (freed with its last waiter, its
 * read cancelled).  The subscription is ngx_http_sandbox_wait_link.c's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_wait.h"
#include "ngx_http_sandbox_wait_link.h"


/* the safety net for a lost message */
#define NGX_HTTP_SANDBOX_WAIT_RECHECK  3000

/* names are DNS labels (63); room for longer ones, bounded */
#define NGX_HTTP_SANDBOX_WAIT_NAME_MAX  253
#define NGX_HTTP_SANDBOX_WAIT_KEY_LEN                                         \
    (sizeof("sbx:route:") + 2 * NGX_HTTP_SANDBOX_WAIT_NAME_MAX + 1)


typedef struct {
    ngx_str_node_t                  sn;         /* key "user/name" */
    ngx_queue_t                     waiters;
    size_t                          user_len;
    ngx_http_sandbox_redis_op_t    *op;         /* a check in flight */
    unsigned                        again:1;    /* check once more */
    u_char                          data[1];
} ngx_http_sandbox_wait_group_t;


typedef struct {
    ngx_queue_t                     queue;
    ngx_event_t                     ev;         /* timeout, then the call */
    ngx_http_request_t             *request;
    ngx_http_sandbox_wait_group_t  *group;      /* NULL once released */
    ngx_http_sandbox_wait_pt        handler;
    ngx_http_event_handler_pt       read_handler;
    ngx_int_t                       rc;
    ngx_str_t                       addr;       /* the route released on */
} ngx_http_sandbox_wait_t;


static ngx_http_sandbox_wait_group_t *ngx_http_sandbox_wait_group(
    ngx_str_t *user, ngx_str_t *name, ngx_log_t *log);
static ngx_http_sandbox_wait_group_t *ngx_http_sandbox_wait_find(
    u_char *user, size_t user_len, u_char *name, size_t name_len);
static void ngx_http_sandbox_wait_group_free(
    ngx_http_sandbox_wait_group_t *g);
static void ngx_http_sandbox_wait_check(ngx_http_sandbox_wait_group_t *g);
static void ngx_http_sandbox_wait_route_handler(void *data,
    redisReply *reply);
static void ngx_http_sandbox_wait_release(ngx_http_sandbox_wait_group_t *g,
    ngx_str_t *addr);
static void ngx_http_sandbox_wait_detach(ngx_http_sandbox_wait_t *w);
static void ngx_http_sandbox_wait_fire(ngx_event_t *ev);
static void ngx_http_sandbox_wait_cleanup(void *data);
static void ngx_http_sandbox_wait_timer(ngx_event_t *ev);


ngx_uint_t                             ngx_http_sandbox_wait_groups;

static ngx_rbtree_t                    ngx_http_sandbox_wait_tree;
static ngx_rbtree_node_t               ngx_http_sandbox_wait_sentinel;
static ngx_uint_t                      ngx_http_sandbox_wait_count;
static ngx_event_t                     ngx_http_sandbox_wait_recheck;


ngx_int_t
ngx_http_sandbox_wait_init(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_http_sandbox_wait_tree,
                    &ngx_http_sandbox_wait_sentinel,
                    ngx_str_rbtree_insert_value);

    /* this timer does not keep an exiting worker alive: held requests do */

    ngx_http_sandbox_wait_recheck.handler = ngx_http_sandbox_wait_timer;
    ngx_http_sandbox_wait_recheck.log = cycle->log;
    ngx_http_sandbox_wait_recheck.cancelable = 1;

    ngx_http_sandbox_wait_link_init(cycle);

    return NGX_OK;
}


void
ngx_http_sandbox_wait_exit(void)
{
    if (ngx_http_sandbox_wait_recheck.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_wait_recheck);
    }

    ngx_http_sandbox_wait_link_exit();
}


ngx_uint_t
ngx_http_sandbox_wait_held(void)
{
    return ngx_http_sandbox_wait_count;
}


ngx_int_t
ngx_http_sandbox_wait_route(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *name, ngx_msec_t timeout, ngx_http_sandbox_wait_pt handler)
{
    ngx_uint_t                      fresh;
    ngx_connection_t               *c;
    ngx_pool_cleanup_t             *cln;
    ngx_http_sandbox_route_t        route;
    ngx_http_sandbox_wait_t        *w;
    ngx_http_sandbox_loc_conf_t    *slcf;
    ngx_http_sandbox_main_conf_t   *smcf;
    ngx_http_sandbox_wait_group_t  *g;

    c = r->connection;
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (ngx_http_sandbox_wait_tree.sentinel == NULL     /* no Redis */
        || user->len == 0 || user->len > NGX_HTTP_SANDBOX_WAIT_NAME_MAX
        || name->len == 0 || name->len > NGX_HTTP_SANDBOX_WAIT_NAME_MAX)
    {
        return NGX_ERROR;
    }

    if (smcf->cache_zone
        && ngx_http_sandbox_cache_get_route(smcf->cache_zone, r->pool, user,
                                            name, &route, &slcf->cache_ttl)
           == NGX_HTTP_SANDBOX_CACHE_HIT
        && route.state == NGX_HTTP_SANDBOX_ROUTE_READY)
    {
        return NGX_OK;
    }

    if (ngx_http_sandbox_wait_count >= slcf->wake_max_held) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "sandbox: %ui requests held already "
                      "(sandbox_wake_max_held)", ngx_http_sandbox_wait_count);
        return NGX_DECLINED;
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_sandbox_wait_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    g = ngx_http_sandbox_wait_find(user->data, user->len, name->data,
                                   name->len);
    fresh = (g == NULL);

    if (fresh) {
        g = ngx_http_sandbox_wait_group(user, name, c->log);
        if (g == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_sandbox_wait_listen(c->log) != NGX_OK) {
        if (fresh) {
            ngx_http_sandbox_wait_group_free(g);
        }

        return NGX_ERROR;
    }

    w->request = r;
    w->group = g;
    w->handler = handler;
    w->read_handler = r->read_event_handler;

    w->ev.handler = ngx_http_sandbox_wait_fire;
    w->ev.data = w;
    w->ev.log = c->log;

    cln->handler = ngx_http_sandbox_wait_cleanup;
    cln->data = w;

    ngx_queue_insert_tail(&g->waiters, &w->queue);
    ngx_http_sandbox_wait_count++;
    ngx_http_sandbox_metrics_inc(wake_held);

    /* this timer keeps an exiting worker alive until the request is done */

    ngx_add_timer(&w->ev, timeout);

    /* the client may leave meanwhile, or may have left already */

    r->read_event_handler = ngx_http_test_reading;

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    if (!ngx_http_sandbox_wait_recheck.timer_set) {
        ngx_add_timer(&ngx_http_sandbox_wait_recheck,
                      NGX_HTTP_SANDBOX_WAIT_RECHECK);
    }

    /* a change made just before the group existed went unnoticed */

    if (fresh) {
        ngx_http_sandbox_wait_check(g);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "sandbox: held for \"%V/%V\", %ui held",
                   user, name, ngx_http_sandbox_wait_count);

    return NGX_AGAIN;
}


static ngx_http_sandbox_wait_group_t *
ngx_http_sandbox_wait_group(ngx_str_t *user, ngx_str_t *name, ngx_log_t *log)
{
    u_char                         *p;
    size_t                          len;
    ngx_http_sandbox_wait_group_t  *g;

    len = user->len + 1 + name->len;

    g = ngx_alloc(sizeof(ngx_http_sandbox_wait_group_t) + len, log);
    if (g == NULL) {
        return NULL;
    }

    ngx_memzero(g, sizeof(ngx_http_sandbox_wait_group_t));

    p = ngx_cpymem(g->data, user->data, user->len);
    *p++ = '/';
    ngx_memcpy(p, name->data, name->len);

    g->sn.str.data = g->data;
    g->sn.str.len = len;
    g->sn.node.key = ngx_crc32_short(g->data, len);
    g->user_len = user->len;

    ngx_queue_init(&g->waiters);

    ngx_rbtree_insert(&ngx_http_sandbox_wait_tree, &g->sn.node);
    ngx_http_sandbox_wait_groups++;

    return g;
}


static ngx_http_sandbox_wait_group_t *
ngx_http_sandbox_wait_find(u_char *user, size_t user_len, u_char *name,
    size_t name_len)
{
    u_char           key[2 * NGX_HTTP_SANDBOX_WAIT_NAME_MAX + 1], *p;
    ngx_str_t        k;
    ngx_str_node_t  *sn;

    if (ngx_http_sandbox_wait_groups == 0
        || user_len > NGX_HTTP_SANDBOX_WAIT_NAME_MAX
        || name_len > NGX_HTTP_SANDBOX_WAIT_NAME_MAX)
    {
        return NULL;
    }

    p = ngx_cpymem(key, user, user_len);
    *p++ = '/';
    p = ngx_cpymem(p, name, name_len);

    k.data = key;
    k.len = p - key;

    sn = ngx_str_rbtree_lookup(&ngx_http_sandbox_wait_tree, &k,
                               ngx_crc32_short(k.data, k.len));

    return (ngx_http_sandbox_wait_group_t *) sn;
}


static void
ngx_http_sandbox_wait_group_free(ngx_http_sandbox_wait_group_t *g)
{
    if (g->op) {
        ngx_http_sandbox_redis_cancel(g->op);
    }

    ngx_rbtree_delete(&ngx_http_sandbox_wait_tree, &g->sn.node);
    ngx_http_sandbox_wait_groups--;

    ngx_free(g);

    if (ngx_http_sandbox_wait_groups) {
        return;
    }

    /* nothing held: the safety net rests, the subscription lingers */

    if (ngx_http_sandbox_wait_recheck.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_wait_recheck);
    }

    ngx_http_sandbox_wait_unused();
}


/* one read of the route for every request held on it */

static void
ngx_http_sandbox_wait_check(ngx_http_sandbox_wait_group_t *g)
{
    u_char       key[NGX_HTTP_SANDBOX_WAIT_KEY_LEN], *p;
    const char  *argv[5];
    size_t       argvlen[5];

    if (g->op) {
        g->again = 1;
        return;
    }

    g->again = 0;

    /* "sbx:route:<user>:<name>" from "<user>/<name>" */

    p = ngx_cpymem(key, "sbx:route:", sizeof("sbx:route:") - 1);
    p = ngx_cpymem(p, g->data, g->user_len);
    *p++ = ':';
    p = ngx_cpymem(p, g->data + g->user_len + 1,
                   g->sn.str.len - g->user_len - 1);

    argv[0] = "HMGET";
    argvlen[0] = sizeof("HMGET") - 1;
    argv[1] = (const char *) key;
    argvlen[1] = p - key;
    argv[2] = "addr";
    argvlen[2] = sizeof("addr") - 1;
    argv[3] = "ready";
    argvlen[3] = sizeof("ready") - 1;
    argv[4] = "suspended";
    argvlen[4] = sizeof("suspended") - 1;

    /* Redis down: the safety net tries again, the timeouts stand */

    g->op = ngx_http_sandbox_redis_command(ngx_http_sandbox_worker_redis, 5,
                                           argv, argvlen,
                                           ngx_http_sandbox_wait_route_handler,
                                           g);
}


void
ngx_http_sandbox_wait_check_all(void)
{
    ngx_rbtree_node_t  *node, *root, *sentinel;

    sentinel = ngx_http_sandbox_wait_tree.sentinel;
    root = ngx_http_sandbox_wait_tree.root;

    if (root == sentinel) {
        return;
    }

    /* checks only send commands: the tree does not change under the walk */

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&ngx_http_sandbox_wait_tree, node))
    {
        ngx_http_sandbox_wait_check((ngx_http_sandbox_wait_group_t *) node);
    }
}


ngx_int_t
ngx_http_sandbox_wait_heard(u_char *user, size_t user_len, u_char *name,
    size_t name_len, ngx_str_t *addr)
{
    ngx_http_sandbox_wait_group_t  *g;

    g = ngx_http_sandbox_wait_find(user, user_len, name, name_len);

    if (g == NULL) {
        return NGX_DECLINED;
    }

    if (addr == NULL) {
        ngx_http_sandbox_wait_check(g);
        return NGX_OK;
    }

    /* frees g with its last waiter, and cancels a check in flight */

    ngx_http_sandbox_wait_release(g, addr);

    return NGX_OK;
}


static void
ngx_http_sandbox_wait_route_handler(void *data, redisReply *reply)
{
    ngx_http_sandbox_wait_group_t *g = data;

    ngx_str_t    addr;
    redisReply  **el;

    g->op = NULL;

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 3)
    {
        el = reply->element;

        if (el[0]->type == REDIS_REPLY_STRING && el[0]->len > 0
            && el[1]->type == REDIS_REPLY_STRING && el[1]->len == 1
            && el[1]->str[0] == '1'
            && !(el[2]->type == REDIS_REPLY_STRING && el[2]->len == 1
                 && el[2]->str[0] == '1'))
        {
            addr.data = (u_char *) el[0]->str;
            addr.len = el[0]->len;

            ngx_http_sandbox_wait_release(g, &addr);
            return;
        }
    }

    if (g->again) {
        ngx_http_sandbox_wait_check(g);
    }
}


/*
 * The route is ready: every request held on it goes on, with the address
 * just read (its decision takes the route from here, not from the cache
 * or Redis again).  The route is put into the shared cache too, for the
 * requests that come after (the cache's own invalidation may not have
 * come yet).
 */

static void
ngx_http_sandbox_wait_release(ngx_http_sandbox_wait_group_t *g,
    ngx_str_t *addr)
{
    ngx_str_t                       user, name;
    ngx_uint_t                      last;
    ngx_queue_t                    *q;
    ngx_http_request_t             *r;
    ngx_http_sandbox_wait_t        *w;
    ngx_http_sandbox_route_t        route;
    ngx_http_sandbox_loc_conf_t    *slcf;
    ngx_http_sandbox_main_conf_t   *smcf;

    q = ngx_queue_head(&g->waiters);
    w = ngx_queue_data(q, ngx_http_sandbox_wait_t, queue);
    r = w->request;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    if (smcf->cache_zone && slcf->cache) {
        user.data = g->data;
        user.len = g->user_len;
        name.data = g->data + g->user_len + 1;
        name.len = g->sn.str.len - g->user_len - 1;

        route.state = NGX_HTTP_SANDBOX_ROUTE_READY;
        route.addr = *addr;

        ngx_http_sandbox_cache_put_route(smcf->cache_zone, &user, &name,
                                         &route, &slcf->cache_ttl);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "sandbox: \"%V\" ready at \"%V\"", &g->sn.str, addr);

    /* the group is freed with its last waiter: stop before touching it */

    do {
        q = ngx_queue_head(&g->waiters);
        w = ngx_queue_data(q, ngx_http_sandbox_wait_t, queue);
        last = (ngx_queue_next(q) == ngx_queue_sentinel(&g->waiters));

        ngx_http_sandbox_wait_detach(w);

        if (w->ev.timer_set) {
            ngx_del_timer(&w->ev);
        }

        /* the reply is gone once this returns; out of memory: no address */

        w->addr.data = ngx_pnalloc(w->request->pool, addr->len);

        if (w->addr.data) {
            ngx_memcpy(w->addr.data, addr->data, addr->len);
            w->addr.len = addr->len;
        }

        w->rc = NGX_OK;
        ngx_post_event(&w->ev, &ngx_posted_events);

    } while (!last);
}


/* out of its group (freed when empty) and of the counts */

static void
ngx_http_sandbox_wait_detach(ngx_http_sandbox_wait_t *w)
{
    ngx_http_sandbox_wait_group_t  *g;

    g = w->group;

    if (g == NULL) {
        return;
    }

    w->group = NULL;

    ngx_queue_remove(&w->queue);
    ngx_http_sandbox_wait_count--;
    ngx_http_sandbox_metrics_dec(wake_held);

    if (ngx_queue_empty(&g->waiters)) {
        ngx_http_sandbox_wait_group_free(g);
    }
}


static void
ngx_http_sandbox_wait_fire(ngx_event_t *ev)
{
    ngx_http_sandbox_wait_t *w = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = w->request;
    c = r->connection;

    if (ev->timedout) {
        ev->timedout = 0;
        ngx_http_sandbox_wait_detach(w);
        w->rc = NGX_HTTP_SERVICE_UNAVAILABLE;

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "sandbox: held request timed out");
    }

    r->read_event_handler = w->read_handler;

    ngx_http_set_log_request(c->log, r);

    w->handler(r, w->rc, w->addr.len ? &w->addr : NULL);

    ngx_http_run_posted_requests(c);
}


/* the request is going away: nothing may refer to it any more */

static void
ngx_http_sandbox_wait_cleanup(void *data)
{
    ngx_http_sandbox_wait_t *w = data;

    ngx_http_sandbox_wait_detach(w);

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    if (w->ev.posted) {
        ngx_delete_posted_event(&w->ev);
    }
}


static void
ngx_http_sandbox_wait_timer(ngx_event_t *ev)
{
    if (ngx_http_sandbox_wait_groups == 0) {
        return;
    }

    ngx_http_sandbox_wait_check_all();

    ngx_add_timer(ev, NGX_HTTP_SANDBOX_WAIT_RECHECK);
}
