
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The data plane's limits: request rate per key, concurrent requests per
 * key and per user, held in one shared zone for all workers.
 */


#ifndef _NGX_HTTP_SANDBOX_LIMIT_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_LIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "sandbox_limit.h"


/* $sandbox_limit: none (not checked), ok, rate, concurrency */
#define NGX_HTTP_SANDBOX_LIMIT_NONE         0
#define NGX_HTTP_SANDBOX_LIMIT_OK           1
#define NGX_HTTP_SANDBOX_LIMIT_RATE         2
#define NGX_HTTP_SANDBOX_LIMIT_CONCURRENCY  3


/* a location's defaults (0: no limit) */
typedef struct {
    ngx_uint_t                      rate;       /* per 1000 s */
    ngx_uint_t                      burst;
    ngx_uint_t                      key_conc;
    ngx_uint_t                      user_conc;
    ngx_flag_t                      rate_set;
    ngx_flag_t                      conc_set;
} ngx_http_sandbox_limit_conf_t;


char *ngx_http_sandbox_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_sandbox_limit_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_sandbox_limit_concurrency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_sandbox_limit_scope(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_sandbox_limit_conf_init(ngx_http_sandbox_limit_conf_t *lc);
void ngx_http_sandbox_limit_conf_merge(ngx_http_sandbox_limit_conf_t *conf,
    ngx_http_sandbox_limit_conf_t *prev);

ngx_int_t ngx_http_sandbox_limit_init_process(ngx_cycle_t *cycle);
void ngx_http_sandbox_limit_exit_process(ngx_cycle_t *cycle);

/*
 * A request let through by the access phase: NGX_OK (it holds its slots
 * until its pool goes), NGX_DECLINED (refused: *kind says why, the 429's
 * headers are set and *message is its text) or NGX_ERROR.  digest: the
 * key's raw SHA-256, NULL without a key; limits: the key's and its user's
 * overrides.
 */
ngx_int_t ngx_http_sandbox_limit_request(ngx_http_request_t *r,
    u_char *digest, ngx_str_t *user, sbx_limits_t *limits,
    ngx_uint_t *kind, const char **message);

ngx_int_t ngx_http_sandbox_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

/* sandbox_status's "limits": null without a zone */
json_t *ngx_http_sandbox_limit_status(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_SANDBOX_LIMIT_H_INCLUDED_ */
