
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management API's guards: failed admin-key attempts counted per
 * client address in a small shared-memory zone (an address that failed
 * too often is refused with 429, the right key or not, so the admin key
 * cannot be guessed), and the rates of the creations users make, which
 * their Redis scripts enforce (ngx_http_sandbox_api_lua.c).
 */


#ifndef _NGX_HTTP_SANDBOX_GUARD_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_GUARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* a rate with limit_req's meaning: burst + 1 at once, then one each */
typedef struct {
    ngx_uint_t                      interval;   /* microseconds; 0: off */
    ngx_uint_t                      burst;
} ngx_http_sandbox_rate_t;


typedef struct {
    ngx_uint_t                      max;        /* failures; 0: off */
    ngx_msec_t                      window;
    ngx_shm_zone_t                 *zone;
} ngx_http_sandbox_guard_conf_t;


char *ngx_http_sandbox_guard_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_sandbox_guard_merge_rate(ngx_http_sandbox_rate_t *conf,
    ngx_http_sandbox_rate_t *prev, ngx_uint_t interval, ngx_uint_t burst);
char *ngx_http_sandbox_guard_admin_failures(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_sandbox_guard_init_conf(ngx_conf_t *cf,
    ngx_http_sandbox_guard_conf_t *gcf, ngx_flag_t admin_key_set);

/*
 * Before the admin key is checked: NGX_OK, or NGX_DECLINED when the
 * client's address is locked out, the 429 sent and its result in *rc
 */
ngx_int_t ngx_http_sandbox_guard_admin_check(ngx_http_request_t *r,
    ngx_int_t *rc);
void ngx_http_sandbox_guard_admin_failed(ngx_http_request_t *r);

/* RateLimit-* (and Retry-After) headers: "limit remaining reset [retry]" */
ngx_int_t ngx_http_sandbox_guard_rate_headers(ngx_http_request_t *r,
    u_char *p, size_t len);


#endif /* _NGX_HTTP_SANDBOX_GUARD_H_INCLUDED_ */
