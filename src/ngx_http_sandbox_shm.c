
/*
 * Copyright (C) The sandbox gateway authors
 *
 * What the module's shared zones have in common when nginx initializes
 * them (a zone's own state, its carrying over a reload, stay with it).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_sandbox_shm.h"


/*
 * The zone's state: size bytes from its slab pool, zeroed, made once and
 * found again in a zone that exists already (*fresh 0: nothing to set
 * up); NULL when the pool has no room
 */

void *
ngx_http_sandbox_shm_init(ngx_shm_zone_t *shm_zone, size_t size,
    ngx_slab_pool_t **shpool, ngx_uint_t *fresh)
{
    void  *sh;

    *shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    *fresh = 0;

    if (shm_zone->shm.exists) {
        return (*shpool)->data;
    }

    sh = ngx_slab_calloc(*shpool, size);
    if (sh == NULL) {
        return NULL;
    }

    (*shpool)->data = sh;
    *fresh = 1;

    return sh;
}


/*
 * Names the zone in the slab pool's messages; a full zone evicts (and
 * then refuses), which is not worth a "[crit]" each time
 */

ngx_int_t
ngx_http_sandbox_shm_name(ngx_shm_zone_t *shm_zone, const char *kind)
{
    size_t            len;
    ngx_slab_pool_t  *shpool;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    len = sizeof(" in sandbox  zone \"\"") + ngx_strlen(kind)
          + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in sandbox %s zone \"%V\"%Z", kind,
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

    return NGX_OK;
}
