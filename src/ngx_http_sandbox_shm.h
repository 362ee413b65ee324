
/*
 * Copyright (C) The sandbox gateway authors
 *
 * What the module's shared zones (the cache, the limits, the admin guard,
 * the metrics) have in common when nginx initializes them.
 */


#ifndef _NGX_HTTP_SANDBOX_SHM_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_SHM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


void *ngx_http_sandbox_shm_init(ngx_shm_zone_t *shm_zone, size_t size,
    ngx_slab_pool_t **shpool, ngx_uint_t *fresh);
ngx_int_t ngx_http_sandbox_shm_name(ngx_shm_zone_t *shm_zone,
    const char *kind);


#endif /* _NGX_HTTP_SANDBOX_SHM_H_INCLUDED_ */
