
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Failed admin-key attempts per client address, across all workers: a
 * red-black tree of addresses in a small shared zone, with a queue that
 * keeps the most recently failed first.  An address's window opens with
 * its first failure; the failure that reaches the limit within the
 * window locks the address out for a whole window from then, during
 * which every admin request from it gets 429 before its key is looked
 * at.  Successes clear nothing.  IPv6 addresses count per /64, which one
 * host usually holds whole.  Old entries are dropped as new ones come;
 * when the zone is full the least recently failed goes.
 *
 * This lives in nginx, not in Redis: the admin key is checked in nginx,
 * so a guessing flood never reaches Redis at all.  Creation rates are the
 * other way round (see ngx_http_sandbox_api_lua.c): the user is only
 * known once the request's script has judged its key in Redis.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_shm.h"


#define NGX_HTTP_SANDBOX_GUARD_ZONE_SIZE  (1024 * 1024)
#define NGX_HTTP_SANDBOX_GUARD_ADDR_LEN   16


typedef struct {
    ngx_rbtree_node_t               node;       /* key: the address's crc */
    ngx_queue_t                     queue;
    ngx_msec_t                      first;      /* the window's start */
    ngx_msec_t                      until;      /* locked out until */
    ngx_uint_t                      failures;
    unsigned                        locked:1;
    u_char                          len;
    u_char                          addr[NGX_HTTP_SANDBOX_GUARD_ADDR_LEN];
} ngx_http_sandbox_guard_node_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;      /* most recent first */
} ngx_http_sandbox_guard_sh_t;


typedef struct {
    ngx_http_sandbox_guard_sh_t    *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_sandbox_guard_zone_t;


static ngx_int_t ngx_http_sandbox_guard_init_zone(ngx_shm_zone_t *zone,
    void *data);
static void ngx_http_sandbox_guard_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static size_t ngx_http_sandbox_guard_addr(ngx_http_request_t *r, u_char *addr);
static ngx_http_sandbox_guard_node_t *ngx_http_sandbox_guard_find(
    ngx_http_sandbox_guard_sh_t *sh, uint32_t hash, u_char *addr,
    size_t len);
static ngx_http_sandbox_guard_node_t *ngx_http_sandbox_guard_alloc(
    ngx_http_sandbox_guard_zone_t *gz, ngx_msec_t window);
static void ngx_http_sandbox_guard_expire(ngx_http_sandbox_guard_zone_t *gz,
    ngx_msec_t window, ngx_uint_t force);


/* sandbox_api_create_rate off | rate [burst=number] */

char *
ngx_http_sandbox_guard_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                   *p;
    ngx_int_t                 n;
    ngx_str_t                *value;
    ngx_uint_t                per, i;
    ngx_http_sandbox_rate_t  *rate;

    rate = (ngx_http_sandbox_rate_t *) ((u_char *) conf + cmd->offset);

    if (rate->interval != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters after \"off\"";
        }

        rate->interval = 0;
        rate->burst = 0;
        return NGX_CONF_OK;
    }

    /* "10r/s" or "10r/m", as limit_req writes rates */

    p = value[1].data + value[1].len;
    per = 0;

    if (value[1].len > 3 && ngx_strncmp(p - 3, "r/s", 3) == 0) {
        per = 1000000;

    } else if (value[1].len > 3 && ngx_strncmp(p - 3, "r/m", 3) == 0) {
        per = 60000000;
    }

    n = per ? ngx_atoi(value[1].data, value[1].len - 3) : NGX_ERROR;

    if (n <= 0 || (ngx_uint_t) n > per) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\": a positive number of "
                           "requests per second (\"r/s\") or minute "
                           "(\"r/m\"), at most one a microsecond",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    rate->interval = per / n;
    rate->burst = 0;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n < 0 || n > 1000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\": 0 to 1000000",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            rate->burst = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_http_sandbox_guard_merge_rate(ngx_http_sandbox_rate_t *conf,
    ngx_http_sandbox_rate_t *prev, ngx_uint_t interval, ngx_uint_t burst)
{
    if (conf->interval != NGX_CONF_UNSET_UINT) {
        return;
    }

    if (prev->interval != NGX_CONF_UNSET_UINT) {
        *conf = *prev;
        return;
    }

    conf->interval = interval;
    conf->burst = burst;
}


/* sandbox_admin_auth_failures off | number [window=time] */

char *
ngx_http_sandbox_guard_admin_failures(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sandbox_guard_conf_t  *gcf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_uint_t   i;

    gcf = (ngx_http_sandbox_guard_conf_t *) ((u_char *) conf + cmd->offset);

    if (gcf->max != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters after \"off\"";
        }

        gcf->max = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n <= 0 || n > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of failures \"%V\": 1 to 1000000 "
                           "or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    gcf->max = n;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            gcf->window = ngx_parse_time(&s, 0);

            if (gcf->window == (ngx_msec_t) NGX_ERROR || gcf->window < 1000
                || gcf->window > 86400000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid window \"%V\": 1s to 1d",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Defaults (10 failures a minute), and the zone when there is an admin
 * key to guard
 */

char *
ngx_http_sandbox_guard_init_conf(ngx_conf_t *cf,
    ngx_http_sandbox_guard_conf_t *gcf, ngx_flag_t admin_key_set)
{
    ngx_str_t                       name;
    ngx_http_sandbox_guard_zone_t  *gz;

    ngx_conf_init_uint_value(gcf->max, 10);
    ngx_conf_init_msec_value(gcf->window, 60000);

    if (gcf->max == 0 || !admin_key_set) {
        return NGX_CONF_OK;
    }

    gz = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_guard_zone_t));
    if (gz == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "sandbox_admin_guard");

    gcf->zone = ngx_shared_memory_add(cf, &name,
                                      NGX_HTTP_SANDBOX_GUARD_ZONE_SIZE,
                                      &ngx_http_sandbox_module);
    if (gcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    gcf->zone->init = ngx_http_sandbox_guard_init_zone;
    gcf->zone->data = gz;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sandbox_guard_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_http_sandbox_guard_zone_t *ogz = data;

    ngx_uint_t                      fresh;
    ngx_http_sandbox_guard_zone_t  *gz;

    gz = zone->data;

    /* a reload keeps the counts */

    if (ogz) {
        gz->sh = ogz->sh;
        gz->shpool = ogz->shpool;
        return NGX_OK;
    }

    gz->sh = ngx_http_sandbox_shm_init(zone,
                                       sizeof(ngx_http_sandbox_guard_sh_t),
                                       &gz->shpool, &fresh);
    if (gz->sh == NULL) {
        return NGX_ERROR;
    }

    if (!fresh) {
        return NGX_OK;
    }

    ngx_rbtree_init(&gz->sh->rbtree, &gz->sh->sentinel,
                    ngx_http_sandbox_guard_insert);
    ngx_queue_init(&gz->sh->queue);

    gz->shpool->log_ctx = (u_char *) " in sandbox_admin_guard zone";
    gz->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_sandbox_guard_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t              **p;
    ngx_http_sandbox_guard_node_t   *n, *t;

    n = (ngx_http_sandbox_guard_node_t *) node;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            t = (ngx_http_sandbox_guard_node_t *) temp;

            p = (ngx_memn2cmp(n->addr, t->addr, n->len, t->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_int_t
ngx_http_sandbox_guard_admin_check(ngx_http_request_t *r, ngx_int_t *rc)
{
    size_t                          len;
    uint32_t                        hash;
    ngx_msec_t                      left;
    ngx_http_sandbox_guard_zone_t  *gz;
    ngx_http_sandbox_guard_node_t  *gn;
    ngx_http_sandbox_main_conf_t   *smcf;
    u_char                          addr[NGX_HTTP_SANDBOX_GUARD_ADDR_LEN];
    u_char                          msg[128];

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (smcf->guard.zone == NULL) {
        return NGX_OK;
    }

    gz = smcf->guard.zone->data;

    len = ngx_http_sandbox_guard_addr(r, addr);
    hash = ngx_crc32_short(addr, len);
    left = 0;

    ngx_shmtx_lock(&gz->shpool->mutex);

    gn = ngx_http_sandbox_guard_find(gz->sh, hash, addr, len);

    if (gn && gn->locked
        && (ngx_msec_int_t) (gn->until - ngx_current_msec) > 0)
    {
        left = gn->until - ngx_current_msec;
    }

    ngx_shmtx_unlock(&gz->shpool->mutex);

    if (left == 0) {
        return NGX_OK;
    }

    /* whole seconds, rounded up: a client that waits that long gets in */

    left = (left + 999) / 1000;

    if (ngx_http_sandbox_header_uint(r, "Retry-After", left) != NGX_OK
        || ngx_http_sandbox_header_uint(r, "RateLimit-Limit",
                                         smcf->guard.max)
           != NGX_OK
        || ngx_http_sandbox_header_uint(r, "RateLimit-Remaining", 0)
           != NGX_OK
        || ngx_http_sandbox_header_uint(r, "RateLimit-Reset", left)
           != NGX_OK)
    {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    ngx_sprintf(msg, "Too many failed admin key attempts from this "
                     "address; retry in %M s%Z", left);

    *rc = ngx_http_sandbox_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "Too Many Requests", (char *) msg);

    return NGX_DECLINED;
}


void
ngx_http_sandbox_guard_admin_failed(ngx_http_request_t *r)
{
    size_t                          len;
    uint32_t                        hash;
    ngx_msec_t                      now, window;
    ngx_uint_t                      locked;
    ngx_http_sandbox_guard_zone_t  *gz;
    ngx_http_sandbox_guard_node_t  *gn;
    ngx_http_sandbox_main_conf_t   *smcf;
    u_char                          addr[NGX_HTTP_SANDBOX_GUARD_ADDR_LEN];

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (smcf->guard.zone == NULL) {
        return;
    }

    gz = smcf->guard.zone->data;
    window = smcf->guard.window;

    len = ngx_http_sandbox_guard_addr(r, addr);
    hash = ngx_crc32_short(addr, len);
    now = ngx_current_msec;
    locked = 0;

    ngx_shmtx_lock(&gz->shpool->mutex);

    gn = ngx_http_sandbox_guard_find(gz->sh, hash, addr, len);

    if (gn == NULL) {
        gn = ngx_http_sandbox_guard_alloc(gz, window);

        if (gn == NULL) {
            ngx_shmtx_unlock(&gz->shpool->mutex);
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sandbox: no memory to count failed admin key "
                          "attempts");
            return;
        }

        gn->node.key = hash;
        gn->len = (u_char) len;
        ngx_memcpy(gn->addr, addr, len);
        gn->first = now;
        gn->failures = 0;
        gn->locked = 0;

        ngx_rbtree_insert(&gz->sh->rbtree, &gn->node);

    } else {
        ngx_queue_remove(&gn->queue);

        /* a lockout that passed, or a window without one: a fresh start */

        if (gn->locked ? (ngx_msec_int_t) (now - gn->until) >= 0
                       : (ngx_msec_int_t) (now - gn->first) >= (ngx_msec_int_t)
                                                                window)
        {
            gn->first = now;
            gn->failures = 0;
            gn->locked = 0;
        }
    }

    ngx_queue_insert_head(&gz->sh->queue, &gn->queue);

    if (!gn->locked && ++gn->failures >= smcf->guard.max) {
        gn->locked = 1;
        gn->until = now + window;
        locked = 1;
    }

    ngx_shmtx_unlock(&gz->shpool->mutex);

    if (locked) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "sandbox: %V locked out of the admin API for %M ms "
                      "after %ui failed admin key attempts",
                      &r->connection->addr_text, window, smcf->guard.max);
    }
}


/* the bytes an address is counted by: IPv4, an IPv6 /64, or none */

static size_t
ngx_http_sandbox_guard_addr(ngx_http_request_t *r, u_char *addr)
{
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (r->connection->sockaddr->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) r->connection->sockaddr;
        ngx_memcpy(addr, &sin->sin_addr, 4);
        return 4;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) r->connection->sockaddr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            ngx_memcpy(addr, &sin6->sin6_addr.s6_addr[12], 4);
            return 4;
        }

        ngx_memcpy(addr, sin6->sin6_addr.s6_addr, 8);
        return 8;
#endif

    default: /* unix sockets: one client */
        return 0;
    }
}


static ngx_http_sandbox_guard_node_t *
ngx_http_sandbox_guard_find(ngx_http_sandbox_guard_sh_t *sh, uint32_t hash,
    u_char *addr, size_t len)
{
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_sandbox_guard_node_t  *gn;

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        gn = (ngx_http_sandbox_guard_node_t *) node;

        rc = ngx_memn2cmp(addr, gn->addr, len, gn->len);

        if (rc == 0) {
            return gn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_http_sandbox_guard_node_t *
ngx_http_sandbox_guard_alloc(ngx_http_sandbox_guard_zone_t *gz,
    ngx_msec_t window)
{
    ngx_http_sandbox_guard_node_t  *gn;

    ngx_http_sandbox_guard_expire(gz, window, 0);

    gn = ngx_slab_alloc_locked(gz->shpool,
                               sizeof(ngx_http_sandbox_guard_node_t));
    if (gn) {
        return gn;
    }

    /* full: the least recently failed address goes */

    ngx_http_sandbox_guard_expire(gz, window, 1);

    return ngx_slab_alloc_locked(gz->shpool,
                                 sizeof(ngx_http_sandbox_guard_node_t));
}


/* up to two entries past their window and lockout, or one by force */

static void
ngx_http_sandbox_guard_expire(ngx_http_sandbox_guard_zone_t *gz,
    ngx_msec_t window, ngx_uint_t force)
{
    ngx_uint_t                      n;
    ngx_msec_t                      now;
    ngx_queue_t                    *q;
    ngx_http_sandbox_guard_node_t  *gn;

    now = ngx_current_msec;

    for (n = 0; n < 2 && !ngx_queue_empty(&gz->sh->queue); n++) {

        q = ngx_queue_last(&gz->sh->queue);
        gn = ngx_queue_data(q, ngx_http_sandbox_guard_node_t, queue);

        if (!force
            && ((ngx_msec_int_t) (now - gn->first) < (ngx_msec_int_t) window
                || (gn->locked && (ngx_msec_int_t) (now - gn->until) < 0)))
        {
            return;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&gz->sh->rbtree, &gn->node);
        ngx_slab_free_locked(gz->shpool, gn);

        if (force) {
            return;
        }
    }
}


/* "limit remaining reset [retry]", as a creation's script answered */

ngx_int_t
ngx_http_sandbox_guard_rate_headers(ngx_http_request_t *r, u_char *p,
    size_t len)
{
    u_char      *last, *start;
    ngx_int_t    v;
    ngx_uint_t   i;

    static const char  *names[] = {
        "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
        "Retry-After"
    };

    last = p + len;

    for (i = 0; i < 4 && p < last; i++) {
        start = p;

        while (p < last && *p != ' ') {
            p++;
        }

        v = ngx_atoi(start, p - start);

        if (v == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sandbox api: bad rate answer");
            return NGX_OK;
        }

        if (ngx_http_sandbox_header_uint(r, names[i], v) != NGX_OK) {
            return NGX_ERROR;
        }

        if (p < last) {
            p++;
        }
    }

    return NGX_OK;
}

