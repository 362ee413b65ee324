
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Wake on request ("sandbox_wake on"): a data-plane request for a sandbox
 * that is not ready asks Redis, in one script (ngx_http_sandbox_wake_lua,
 * next to the API's), whether it may be held and whether it resumes the
 * sandbox; then it is held (ngx_http_sandbox_wait.c) until the route is
 * ready, at most sandbox_wake_timeout from its first decision.  The
 * access handler (ngx_http_sandbox_route.c) is told the outcome:
 *   NGX_OK                        the route is ready: decide again (on the
 *                                 address the release read, if given)
 *   NGX_DECLINED                  not a sandbox to wait for: the 503
 *   NGX_HTTP_SERVICE_UNAVAILABLE  held past sandbox_wake_timeout
 *   NGX_BUSY                      sandbox_wake_max_held reached
 *   NGX_ERROR
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_api.h"
#include "ngx_http_sandbox_script.h"
#include "ngx_http_sandbox_wait.h"


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_sandbox_route_ctx_t  *ctx;
    ngx_http_sandbox_wake_pt       done;
    void                          *op;          /* the script in flight */
    ngx_msec_t                     start;
} ngx_http_sandbox_wake_t;


/* numkeys, 5 keys, 8 arguments */
#define NGX_HTTP_SANDBOX_WAKE_ARGS  14


static void ngx_http_sandbox_wake_arg(const char **argv, size_t *argvlen,
    ngx_uint_t *n, const char *arg, size_t len);
static void ngx_http_sandbox_wake_reply(void *data, redisReply *reply);
static ngx_int_t ngx_http_sandbox_wake_hold(ngx_http_request_t *r,
    ngx_http_sandbox_wake_t *wk);
static void ngx_http_sandbox_wake_cleanup(void *data);


ngx_int_t
ngx_http_sandbox_wake(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_msec_t start,
    ngx_http_sandbox_wake_pt done)
{
    u_char                       *p, *q;
    size_t                        len;
    ngx_uint_t                    n;
    const char                   *argv[NGX_HTTP_SANDBOX_WAKE_ARGS];
    size_t                        argvlen[NGX_HTTP_SANDBOX_WAKE_ARGS];
    ngx_http_cleanup_t           *cln;
    ngx_http_sandbox_wake_t      *wk;
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    if (ngx_http_sandbox_worker_redis == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_sandbox_wait_held() >= slcf->wake_max_held) {
        return NGX_BUSY;
    }

    wk = ngx_pcalloc(r->pool, sizeof(ngx_http_sandbox_wake_t));
    if (wk == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    wk->request = r;
    wk->ctx = ctx;
    wk->done = done;
    wk->start = start;

    /* the id the audit record and then the sandbox get (forward.c) */

    if (!ctx->request_id_set) {
        (void) ngx_http_sandbox_request_id_write(
                                      ngx_http_sandbox_request_id_of(ctx));
        ctx->request_id_set = 1;
    }

    /*
     * KEYS: sbx:audit, sbx:ops, the record, the route, the wake marker;
     * ARGV: the time, the user, the sandbox, the key id, the timeout, and
     * the audit's three (the client, the request id, its maxlen)
     */

    len = ctx->user.len + 1 + ctx->name.len;

    p = ngx_pnalloc(r->pool, sizeof("sbx:sandbox:sbx:route:sbx:wake:")
                             + 3 * len + 2 * NGX_TIME_T_LEN
                             + 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    ngx_http_sandbox_wake_arg(argv, argvlen, &n, "5", 1);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, "sbx:audit",
                              sizeof("sbx:audit") - 1);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, "sbx:ops",
                              sizeof("sbx:ops") - 1);

    q = p;
    p = ngx_sprintf(p, "sbx:sandbox:%V:%V", &ctx->user, &ctx->name);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) q, p - q);

    q = p;
    p = ngx_sprintf(p, "sbx:route:%V:%V", &ctx->user, &ctx->name);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) q, p - q);

    q = p;
    p = ngx_sprintf(p, "sbx:wake:%V:%V", &ctx->user, &ctx->name);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) q, p - q);

    q = p;
    p = ngx_sprintf(p, "%T", ngx_time());
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) q, p - q);

    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) ctx->user.data,
                              ctx->user.len);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) ctx->name.data,
                              ctx->name.len);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) ctx->key_id.data,
                              ctx->key_id.len);

    q = p;
    p = ngx_sprintf(p, "%M", slcf->wake_timeout);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) q, p - q);

    ngx_http_sandbox_wake_arg(argv, argvlen, &n,
                              (char *) r->connection->addr_text.data,
                              r->connection->addr_text.len);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n,
                              (char *) ngx_http_sandbox_request_id_of(ctx),
                              NGX_HTTP_SANDBOX_REQUEST_ID_LEN);

    q = p;
    p = ngx_sprintf(p, "%ui", slcf->audit_maxlen);
    ngx_http_sandbox_wake_arg(argv, argvlen, &n, (char *) q, p - q);

    if (ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                    &ngx_http_sandbox_wake_lua, r->pool,
                                    n, argv, argvlen,
                                    ngx_http_sandbox_wake_reply, wk,
                                    &wk->op)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_sandbox_wake_cleanup;
    cln->data = wk;

    return NGX_AGAIN;
}


static void
ngx_http_sandbox_wake_arg(const char **argv, size_t *argvlen, ngx_uint_t *n,
    const char *arg, size_t len)
{
    argv[*n] = arg;
    argvlen[*n] = len;
    (*n)++;
}


static void
ngx_http_sandbox_wake_reply(void *data, redisReply *reply)
{
    ngx_http_sandbox_wake_t *wk = data;

    ngx_int_t            rc;
    redisReply          *el;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = wk->request;
    c = r->connection;

    wk->op = NULL;

    rc = NGX_DECLINED;

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY
        && reply->elements >= 1
        && reply->element[0]->type == REDIS_REPLY_STRING)
    {
        el = reply->element[0];

        if (el->len == 5 && ngx_strncmp(el->str, "ready", 5) == 0) {
            rc = NGX_OK;

        } else if ((el->len == 4 && ngx_strncmp(el->str, "hold", 4) == 0)
                   || (el->len == 5 && ngx_strncmp(el->str, "woken", 5) == 0))
        {
            if (el->len == 5) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "sandbox: waking \"%V/%V\"",
                              &wk->ctx->user, &wk->ctx->name);
            }

            rc = ngx_http_sandbox_wake_hold(r, wk);

            if (rc == NGX_AGAIN) {
                return;
            }
        }

    } else if (reply != NULL) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "sandbox: wake script failed");
    }

    wk->done(r, rc, NULL);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_sandbox_wake_hold(ngx_http_request_t *r, ngx_http_sandbox_wake_t *wk)
{
    ngx_int_t                     rc;
    ngx_msec_t                    spent;
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    spent = ngx_current_msec - wk->start;

    if (spent >= slcf->wake_timeout) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    /* held: the access handler is called back by the wait itself */

    rc = ngx_http_sandbox_wait_route(r, &wk->ctx->user, &wk->ctx->name,
                                     slcf->wake_timeout - spent, wk->done);

    switch (rc) {

    case NGX_AGAIN:
        wk->ctx->woken = 1;
        wk->ctx->holding = 1;
        wk->ctx->wake_ms = wk->start;
        return rc;

    case NGX_OK:
        return rc;

    case NGX_DECLINED:
        return NGX_BUSY;

    default:
        return NGX_ERROR;
    }
}


static void
ngx_http_sandbox_wake_cleanup(void *data)
{
    ngx_http_sandbox_wake_t *wk = data;

    /* the request is going away: the script's reply must find nobody */

    if (wk->op) {
        ngx_http_sandbox_redis_cancel(wk->op);
        wk->op = NULL;
    }
}
