
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The agentkernel-compatible API (sandbox_agentkernel_api): what its
 * files share.  ngx_http_sandbox_agentkernel.c routes a request, reads
 * its body, runs the management API's Redis scripts and answers in
 * agentkernel's envelope, ..._answer.c turns the scripts' answers into
 * agentkernel's; ..._exec.c reaches the sandbox's runtime by subrequests
 * (exec, files); ..._run.c carries /run and /run/stream, whose one-shot
 * sandbox is always deleted, and holds creates until usable.  The pure
 * parts are in sandbox_agentkernel.c.
 */


#ifndef _NGX_HTTP_SANDBOX_AGENTKERNEL_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_AGENTKERNEL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_api.h"
#include "sandbox_agentkernel.h"


#define NGX_HTTP_SANDBOX_AK_BACKEND  "kubernetes"


typedef struct {
    ngx_str_t                       runtime;    /* internal location */
    ngx_msec_t                      wait;       /* until usable */
    ngx_uint_t                      exec_timeout;   /* seconds */
    ngx_flag_t                      shell;      /* runtime: shell form only */
} ngx_http_sandbox_ak_conf_t;


typedef struct ngx_http_sandbox_ak_ctx_s  ngx_http_sandbox_ak_ctx_t;

typedef void (*ngx_http_sandbox_ak_next_pt)(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);


/*
 * The request's context: an API request's (its first member, so the
 * scripts' arguments and $sandbox_user are the API's), then this API's.
 */

struct ngx_http_sandbox_ak_ctx_s {
    ngx_http_sandbox_api_ctx_t      api;

    ngx_http_request_t             *request;
    ngx_http_sandbox_ak_conf_t     *conf;
    sbx_ak_route_t                  route;
    ngx_str_t                       name;       /* the sandbox */
    ngx_str_t                       user;       /* its owner, the caller */

    sbx_ak_command_t                cmd;
    sbx_ak_file_t                   file;

    /* what the script being run answers to */
    ngx_http_sandbox_ak_next_pt     next;

    /* the runtime's address, for the subrequest's balancer */
    ngx_addr_t                      addr;
    ngx_str_t                       addr_text;
    ngx_http_request_t             *sr;
    ngx_int_t                       sr_status;
    ngx_str_t                       sr_body;
    void                          (*sr_done)(ngx_http_request_t *r,
                                      ngx_http_sandbox_ak_ctx_t *ctx);

    u_char                          run_name[sizeof("run-") - 1 + 16];
    u_char                          uuid[36];

    unsigned                        run:1;      /* a one-shot sandbox */
    unsigned                        stream:1;   /* /run/stream */
    unsigned                        created:1;  /* ... queued */
    unsigned                        deleted:1;  /* ... its deletion queued */
    unsigned                        sse_started:1;
    unsigned                        finished:1;
};


#define ngx_http_sandbox_ak_ctx(r)                                            \
    ((ngx_http_sandbox_ak_ctx_t *) ngx_http_sandbox_api_ctx(r))


/* ngx_http_sandbox_agentkernel.c */
char *ngx_http_sandbox_agentkernel_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_sandbox_ak_script(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_http_sandbox_api_script_t *s,
    ngx_http_sandbox_ak_next_pt next);
void ngx_http_sandbox_ak_args(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
void ngx_http_sandbox_ak_create_args(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_str_t *image);
void ngx_http_sandbox_ak_finish(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_http_sandbox_ak_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *message);
ngx_int_t ngx_http_sandbox_ak_ok(ngx_http_request_t *r, ngx_uint_t status,
    json_t *data);
void ngx_http_sandbox_ak_uuid(ngx_http_sandbox_ak_ctx_t *ctx,
    ngx_str_t *name, json_t *created);
ngx_int_t ngx_http_sandbox_ak_script_status(ngx_http_request_t *r,
    ngx_int_t status, json_t *data, const char **msg);
ngx_int_t ngx_http_sandbox_ak_script_error(ngx_http_request_t *r,
    ngx_int_t status, json_t *data);

/* ngx_http_sandbox_agentkernel_answer.c */
void ngx_http_sandbox_ak_listed(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
void ngx_http_sandbox_ak_got(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
void ngx_http_sandbox_ak_created(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
void ngx_http_sandbox_ak_done(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
void ngx_http_sandbox_ak_logs(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);

/* ngx_http_sandbox_agentkernel_exec.c */
void ngx_http_sandbox_ak_target(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_http_sandbox_ak_next_pt next);
void ngx_http_sandbox_ak_exec_target(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
void ngx_http_sandbox_ak_exec(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
void ngx_http_sandbox_ak_files(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);

/* ngx_http_sandbox_agentkernel_run.c */
void ngx_http_sandbox_ak_run(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
void ngx_http_sandbox_ak_run_end(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_uint_t status, const char *error,
    sbx_ak_result_t *res);
void ngx_http_sandbox_ak_hold(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
void ngx_http_sandbox_ak_cleanup(void *data);


#endif /* _NGX_HTTP_SANDBOX_AGENTKERNEL_H_INCLUDED_ */
