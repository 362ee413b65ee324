
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The limits' configuration: the zone, the defaults of a location, the
 * scope; the zone's creation (kept across reloads).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_limit_zone.h"
#include "ngx_http_sandbox_shm.h"


static void ngx_http_sandbox_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);


char *
ngx_http_sandbox_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ssize_t                        size;
    ngx_str_t                     *value, name;
    ngx_shm_zone_t                *shm_zone;
    ngx_http_sandbox_limit_ctx_t  *ctx;

    if (smcf->limit_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* room for the zone's table of workers and of changed entries */

    if (ngx_http_sandbox_zone_arg(cf, &value[1], 64, &name, &size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_limit_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_sandbox_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_sandbox_limit_init_zone;
    shm_zone->data = ctx;

    smcf->limit_zone = shm_zone;

    return NGX_CONF_OK;
}


/* sandbox_limit_rate off | rate [burst=N] */

char *
ngx_http_sandbox_limit_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_limit_conf_t  *lc;
    ngx_str_t                      *value;
    ngx_int_t                       n;
    ngx_uint_t                      i;

    lc = (ngx_http_sandbox_limit_conf_t *) ((char *) conf + cmd->offset);

    if (lc->rate_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lc->rate_set = 1;
    lc->rate = 0;
    lc->burst = 0;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[1].data, "off") == 0)
    {
        return NGX_CONF_OK;
    }

    lc->rate = sbx_limit_rate_parse((char *) value[1].data, value[1].len);

    if (lc->rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\": \"<N>r/s\" or \"<N>r/m\" "
                           "with N from 1 to %d", &value[1], SBX_LIMIT_MAX);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n == NGX_ERROR || n > SBX_LIMIT_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            lc->burst = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* sandbox_limit_concurrency off | [key=N] [user=M] */

char *
ngx_http_sandbox_limit_concurrency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                      *value;
    ngx_int_t                       n;
    ngx_uint_t                      i, *slot;
    ngx_http_sandbox_limit_conf_t  *lc;

    lc = (ngx_http_sandbox_limit_conf_t *) ((char *) conf + cmd->offset);

    if (lc->conc_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lc->conc_set = 1;
    lc->key_conc = 0;
    lc->user_conc = 0;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[1].data, "off") == 0)
    {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            slot = &lc->key_conc;
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);

        } else if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            slot = &lc->user_conc;
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (n == NGX_ERROR || n < 1 || n > SBX_LIMIT_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid limit \"%V\": from 1 to %d",
                               &value[i], SBX_LIMIT_MAX);
            return NGX_CONF_ERROR;
        }

        *slot = n;
    }

    return NGX_CONF_OK;
}


void
ngx_http_sandbox_limit_conf_init(ngx_http_sandbox_limit_conf_t *lc)
{
    lc->rate_set = NGX_CONF_UNSET;
    lc->conc_set = NGX_CONF_UNSET;
}


void
ngx_http_sandbox_limit_conf_merge(ngx_http_sandbox_limit_conf_t *conf,
    ngx_http_sandbox_limit_conf_t *prev)
{
    if (conf->rate_set == NGX_CONF_UNSET) {
        conf->rate_set = prev->rate_set;
        conf->rate = prev->rate;
        conf->burst = prev->burst;
    }

    if (conf->conc_set == NGX_CONF_UNSET) {
        conf->conc_set = prev->conc_set;
        conf->key_conc = prev->key_conc;
        conf->user_conc = prev->user_conc;
    }
}


ngx_int_t
ngx_http_sandbox_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sandbox_limit_ctx_t  *octx = data;

    ngx_uint_t                     i, fresh;
    ngx_http_sandbox_limit_ctx_t  *ctx;

    ctx = shm_zone->data;

    /* a reload keeps the zone, its entries and the slots held */

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->sh = ngx_http_sandbox_shm_init(shm_zone,
                                        sizeof(ngx_http_sandbox_limit_sh_t),
                                        &ctx->shpool, &fresh);
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    if (!fresh) {
        return NGX_OK;
    }

    /* this gateway's name among others sharing counts (cluster scope) */

    ngx_sprintf(ctx->sh->gateway, "%08xD%08xD",
                (uint32_t) ngx_random(), (uint32_t) ngx_random());

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_sandbox_limit_rbtree_insert);
    ngx_queue_init(&ctx->sh->lru);

    for (i = 0; i < NGX_HTTP_SANDBOX_LIMIT_WORKERS; i++) {
        ngx_queue_init(&ctx->sh->workers[i].holds);
    }

    /* a full zone evicts, and only then refuses: no "[crit]" for it */

    return ngx_http_sandbox_shm_name(shm_zone, "limit");
}


static void
ngx_http_sandbox_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t              **p;
    ngx_http_sandbox_limit_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            ln = (ngx_http_sandbox_limit_node_t *) &node->color;
            lnt = (ngx_http_sandbox_limit_node_t *) &temp->color;

            p = (ngx_memn2cmp(ln->data, lnt->data, ln->len, lnt->len) < 0)
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


/* sandbox_limit_scope local | cluster [interval=time] */

char *
ngx_http_sandbox_limit_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ngx_str_t   *value, s;
    ngx_msec_t   interval;
    ngx_uint_t   i;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "local") == 0 && cf->args->nelts == 2) {
        smcf->limit_sync = 0;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "cluster") != 0) {
        return "must be \"local\" or \"cluster\"";
    }

    interval = 100;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "interval=", 9) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        s.data = value[i].data + 9;
        s.len = value[i].len - 9;

        interval = ngx_parse_time(&s, 0);

        if (interval == (ngx_msec_t) NGX_ERROR || interval < 10
            || interval > 10000)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid interval \"%V\": 10ms to 10s",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    smcf->limit_sync = interval;

    return NGX_CONF_OK;
}
