
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management and admin API: what its files share.  The router and
 * the request's life are in ngx_http_sandbox_api.c, each endpoint's
 * arguments in ngx_http_sandbox_api_prepare.c (bodies checked by
 * sandbox_body.c), the script's call and its answer in
 * ngx_http_sandbox_api_answer.c, /health in ngx_http_sandbox_api_health.c
 * and the Redis scripts in ngx_http_sandbox_api_lua.c.
 */


#ifndef _NGX_HTTP_SANDBOX_API_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "sandbox_token.h"
#include "ngx_http_sandbox_script.h"


#define NGX_HTTP_SANDBOX_API_KEYS    8

/*
 * A script and the keys it declares: each a template where "$N" stands
 * for ARGV[N], as the endpoint's preparer set it
 */
typedef struct {
    ngx_http_sandbox_script_t           script;
    const char                         *keys[NGX_HTTP_SANDBOX_API_KEYS];
} ngx_http_sandbox_api_script_t;


/* indexes into ngx_http_sandbox_api_scripts[], in its order */
typedef enum {
    SBX_LUA_USER_CREATE = 0,
    SBX_LUA_USER_LIST,
    SBX_LUA_USER_GET,
    SBX_LUA_USER_UPDATE,
    SBX_LUA_USER_DELETE,
    SBX_LUA_ADMIN_KEY_CREATE,
    SBX_LUA_ADMIN_KEY_LIST,
    SBX_LUA_ADMIN_KEY_REVOKE,
    SBX_LUA_ME,
    SBX_LUA_ME_KEY_CREATE,
    SBX_LUA_ME_KEY_LIST,
    SBX_LUA_ME_KEY_REVOKE,
    SBX_LUA_SANDBOX_LIST,
    SBX_LUA_SANDBOX_CREATE,
    SBX_LUA_SANDBOX_GET,
    SBX_LUA_SANDBOX_DELETE,
    SBX_LUA_SANDBOX_STATE,
    SBX_LUA_ALL_SANDBOXES,
    SBX_LUA_ANON_SANDBOX_CREATE,
    SBX_LUA_ANON_SANDBOX_GET,
    SBX_LUA_ANON_SANDBOX_DELETE,
    SBX_LUA_ANON_SANDBOX_STATE,
    SBX_LUA_HEALTH,
    SBX_LUA_AUDIT,
    SBX_LUA_ME_AUDIT,
    SBX_LUA_ADMIN_KEY_UPDATE
} ngx_http_sandbox_api_lua_e;


extern ngx_http_sandbox_api_script_t  ngx_http_sandbox_api_scripts[];

/* the data plane's wake script (ngx_http_sandbox_wake.c) */
extern ngx_http_sandbox_script_t      ngx_http_sandbox_wake_lua;


#define NGX_HTTP_SANDBOX_API_ARGS    16

/* argv[]'s index of ARGV[2], the caller (see ngx_http_sandbox_api_run) */
#define NGX_HTTP_SANDBOX_API_CALLER  1
#define NGX_HTTP_SANDBOX_API_PARAMS  3

/* who may call an endpoint */
#define NGX_HTTP_SANDBOX_API_PUBLIC  0
#define NGX_HTTP_SANDBOX_API_ADMIN   1
#define NGX_HTTP_SANDBOX_API_USER    2
#define NGX_HTTP_SANDBOX_API_ANON    3      /* with "sandbox_auth off" */


typedef struct ngx_http_sandbox_api_ctx_s  ngx_http_sandbox_api_ctx_t;

typedef ngx_int_t (*ngx_http_sandbox_api_prepare_pt)(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);


typedef struct {
    ngx_uint_t                          method;
    const char                         *path;
    ngx_uint_t                          auth;
    ngx_uint_t                          script;
    ngx_http_sandbox_api_prepare_pt     prepare;
} ngx_http_sandbox_api_endpoint_t;


struct ngx_http_sandbox_api_ctx_s {
    ngx_http_sandbox_ctx_kind_e         kind;       /* first: see module.h */
    ngx_http_sandbox_api_endpoint_t    *ep;
    ngx_str_t                           params[NGX_HTTP_SANDBOX_API_PARAMS];
    json_t                             *body;

    /* the script's ARGV: now, caller, ... (KEYS are made from them) */
    ngx_uint_t                          argc;
    const char                         *argv[NGX_HTTP_SANDBOX_API_ARGS];
    size_t                              argvlen[NGX_HTTP_SANDBOX_API_ARGS];

    u_char                              now[NGX_TIME_T_LEN];
    u_char                              caller[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    u_char                              id[36];
    u_char                              key[SBX_KEY_LEN];
    u_char                              digest[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    u_char                              expires[NGX_TIME_T_LEN];
    u_char                              request_id[32];
    u_char                              maxlen[NGX_INT_T_LEN];
    u_char                              rate[NGX_INT_T_LEN];
    u_char                              burst[NGX_INT_T_LEN];
    ngx_flag_t                          new_key;
    ngx_int_t                           rc;

    ngx_str_t                           user;       /* the caller's */

    void                               *op;
};


#define ngx_http_sandbox_api_ctx(r)                                           \
    ((ngx_http_sandbox_api_ctx_t *)                                           \
         ngx_http_sandbox_get_ctx(r, NGX_HTTP_SANDBOX_CTX_API))


/* ngx_http_sandbox_api.c */
void ngx_http_sandbox_api_arg(ngx_http_sandbox_api_ctx_t *ctx, const char *s,
    size_t len);
ngx_int_t ngx_http_sandbox_api_body(ngx_http_request_t *r, u_char **data,
    size_t *len);
ngx_int_t ngx_http_sandbox_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, const char *message);
ngx_int_t ngx_http_sandbox_api_bad(ngx_http_request_t *r,
    const char *message);

/* ngx_http_sandbox_api_answer.c: the script's call and its answer */
ngx_int_t ngx_http_sandbox_api_eval(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
json_t *ngx_http_sandbox_api_iso(time_t t);

/* ngx_http_sandbox_api_prepare.c: each endpoint's script arguments */
ngx_int_t ngx_http_sandbox_api_prep_none(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_param(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_user_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_user_list(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_user_update(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_key_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_sandbox_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_sandbox(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_state(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_anon(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_audit(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
void ngx_http_sandbox_api_audit_args(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
void ngx_http_sandbox_api_rate_args(ngx_http_sandbox_api_ctx_t *ctx,
    ngx_http_sandbox_rate_t *rate);
ngx_uint_t ngx_http_sandbox_api_keys(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, ngx_http_sandbox_api_script_t *s,
    const char **argv, size_t *argvlen, u_char *numkeys);

/* ngx_http_sandbox_api_limit.c: rate_limit and max_concurrent */
ngx_int_t ngx_http_sandbox_api_limit_args(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
ngx_int_t ngx_http_sandbox_api_prep_key_update(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);

/* ngx_http_sandbox_api_health.c: the answer of GET /health */
ngx_int_t ngx_http_sandbox_api_health(ngx_http_request_t *r,
    redisReply *reply);
const char *ngx_http_sandbox_api_sync_state(json_t *raw, ngx_msec_t max_lag,
    long long *lag);


#endif /* _NGX_HTTP_SANDBOX_API_H_INCLUDED_ */
