
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The access phase's decision, shared by the handler that makes it
 * (ngx_http_sandbox_route.c), the judgement (ngx_http_sandbox_decide.c)
 * and the Redis lookup that answers it when the cache cannot
 * (ngx_http_sandbox_lookup.c).  Internal to those three.
 */


#ifndef _NGX_HTTP_SANDBOX_DECISION_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_DECISION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "sandbox_path.h"


typedef enum {
    NGX_HTTP_SANDBOX_DECIDED = 0,
    NGX_HTTP_SANDBOX_TO_REDIS,          /* the cache could not answer */
    NGX_HTTP_SANDBOX_PENDING,           /* the lookup is under way */
    NGX_HTTP_SANDBOX_WAKING,            /* held until the sandbox wakes */
    NGX_HTTP_SANDBOX_ANEW               /* woken: decide once more */
} ngx_http_sandbox_state_e;


/*
 * The decision's working state.  It lives on the access handler's stack
 * when the cache answers; for a Redis lookup it is moved into an
 * allocation of the pool apart from its blocks, freed once decided, so an
 * answered request keeps just its small route context either way.
 */

struct ngx_http_sandbox_decision_s {
    ngx_http_sandbox_route_ctx_t   *out;        /* what the request keeps */
    ngx_http_sandbox_state_e        state;

    /* NGX_OK to forward, else an HTTP status to answer */
    ngx_int_t                       status;
    const char                     *error;
    const char                     *message;

    sbx_form_t                      form;
    ngx_str_t                       path_user;
    u_char                          key_digest[NGX_HTTP_SANDBOX_SHA256_LEN];
    unsigned                        authenticated:1;
    unsigned                        not_ready:1;
    unsigned                        nocache:1;      /* Redis decides */
    unsigned                        released:1;     /* route: the wait's */
    ngx_msec_t                      wake_start;

    /* what Redis or the cache said, and where it came from */
    ngx_http_sandbox_key_t          key;
    ngx_http_sandbox_route_t        route;
    ngx_int_t                       key_cached;
    ngx_uint_t                      key_used;
    ngx_int_t                       route_cached;

    /* the Redis lookup in flight (ngx_http_sandbox_lookup.c) */
    ngx_uint_t                      lookup;     /* what it asks */
    ngx_str_t                       lookup_user;
    unsigned                        user_judged:1;
    unsigned                        route_read:1;

    void                           *op;
    ngx_http_cleanup_t             *cleanup;    /* cancels op */
};


/*
 * Sends the lookup (ngx_http_sandbox_lookup.c): NGX_OK with the
 * state PENDING, the reply to come, or DECIDED (Redis could not be asked:
 * a stale cache entry or a 503); NGX_ERROR when out of memory.  The reply
 * decides, then resumes the phases.
 */
ngx_int_t ngx_http_sandbox_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);

/*
 * ngx_http_sandbox_decide.c: judge the key and the route found.  The
 * from_ functions decide from the shared cache, or from the route a held
 * request was released on: 1 when decided, 0 when Redis must be asked.
 */
ngx_uint_t ngx_http_sandbox_from_cache(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf);
ngx_uint_t ngx_http_sandbox_from_release(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_http_sandbox_route_t *route);
void ngx_http_sandbox_decide(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
void ngx_http_sandbox_deny(ngx_http_sandbox_decision_t *ctx,
    ngx_int_t status, const char *error, const char *message);
void ngx_http_sandbox_not_ready(ngx_http_sandbox_decision_t *ctx,
    const char *message);


#endif /* _NGX_HTTP_SANDBOX_DECISION_H_INCLUDED_ */
