
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The setters of the module's directives that take arguments of their
 * own: the Redis address or its Sentinels, the content handlers
 * (sandbox_error, sandbox_api, sandbox_status, sandbox_metrics) and the
 * cache zone, with the "name:size" zone argument the limit zone shares.
 * The directive table and the configuration's create and merge stay in
 * ngx_http_sandbox_module.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


static ngx_int_t ngx_http_sandbox_parse_addr(ngx_conf_t *cf, ngx_str_t *url,
    in_port_t port, ngx_addr_t **addr);


char *
ngx_http_sandbox_redis_addr(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->redis_addr || smcf->redis_sentinel) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_sandbox_parse_addr(cf, &value[1], 6379, &smcf->redis_addr)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* sandbox_redis_sentinel <master name> <address> ... */

char *
ngx_http_sandbox_redis_sentinel(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_addr_t                        *addr, *slot;
    ngx_http_sandbox_sentinel_conf_t  *sc;

    if (smcf->redis_addr || smcf->redis_sentinel) {
        return "is duplicate";
    }

    sc = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_sentinel_conf_t));
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&sc->addrs, cf->pool, cf->args->nelts - 2,
                       sizeof(ngx_addr_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    sc->name = value[1];

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_http_sandbox_parse_addr(cf, &value[i], 26379, &addr)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (addr->sockaddr->sa_family == AF_UNIX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a sentinel is reached over TCP, not \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        slot = ngx_array_push(&sc->addrs);
        if (slot == NULL) {
            return NGX_CONF_ERROR;
        }

        *slot = *addr;
    }

    smcf->redis_sentinel = sc;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sandbox_parse_addr(ngx_conf_t *cf, ngx_str_t *url, in_port_t port,
    ngx_addr_t **addr)
{
    ngx_url_t   u;
    ngx_str_t  *value;

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *url;
    u.default_port = port;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in \"%V\" of the \"%V\" directive",
                               u.err, &u.url, &value[0]);
        }

        return NGX_ERROR;
    }

    /* workers must never resolve names: IP literals and unix: paths only */

    if (u.naddrs == 0 || u.addrs == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs an IP address or a "
                           "unix: path, not \"%V\"",
                           &value[0], &u.url);
        return NGX_ERROR;
    }

    *addr = &u.addrs[0];

    return NGX_OK;
}


/*
 * sandbox_error, sandbox_api, sandbox_status, sandbox_metrics: the
 * location's handler
 */

static ngx_http_handler_pt  ngx_http_sandbox_content_handlers[] = {
    ngx_http_sandbox_error_handler,
    ngx_http_sandbox_api_handler,
    ngx_http_sandbox_status_handler,
    ngx_http_sandbox_metrics_handler
};


char *
ngx_http_sandbox_content(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sandbox_content_handlers[cmd->offset];

    return NGX_CONF_OK;
}


/*
 * A zone's "name:size" argument, at least min_pages pages: NGX_OK, or
 * NGX_ERROR once said
 */

ngx_int_t
ngx_http_sandbox_zone_arg(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_uint_t min_pages, ngx_str_t *name, ssize_t *size)
{
    u_char     *p;
    ngx_str_t   s;

    p = (u_char *) ngx_strchr(arg->data, ':');

    if (p == NULL || p == arg->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected name:size", arg);
        return NGX_ERROR;
    }

    name->data = arg->data;
    name->len = p - arg->data;

    s.data = p + 1;
    s.len = arg->data + arg->len - s.data;

    *size = ngx_parse_size(&s);

    if (*size == NGX_ERROR || *size < (ssize_t) (min_pages * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" needs a size of at least %uz",
                           arg, min_pages * ngx_pagesize);
        return NGX_ERROR;
    }

    return NGX_OK;
}


char *
ngx_http_sandbox_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    ssize_t     size;
    ngx_str_t  *value, name;

    if (smcf->cache_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_sandbox_zone_arg(cf, &value[1], 8, &name, &size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->cache_zone = ngx_http_sandbox_cache_zone_add(cf, &name, size);
    if (smcf->cache_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
