
/*
 * Copyright (C) The sandbox gateway authors
 *
 * EVALSHA with one reload on NOSCRIPT (see the header).  The normal path
 * is one command, as EVAL was, in its place in the pipeline.  A worker's
 * first use of a script, or the first NOSCRIPT it meets, queues one
 * SCRIPT LOAD, and the EVALSHA behind it in the same pipeline: no round
 * trip is waited for, and a burst of commands in flight when Redis lost
 * its scripts costs one load, not one per command.  Only a command that
 * met NOSCRIPT goes again, once, at the end of the pipeline; what it
 * answers is what the caller gets.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>

#include "ngx_http_sandbox_script.h"


typedef struct {
    ngx_http_sandbox_redis_t            *rd;
    ngx_http_sandbox_script_t           *script;
    ngx_http_sandbox_redis_handler_pt    handler;
    void                                *data;
    void                               **opp;
    ngx_log_t                           *log;
    ngx_pool_t                          *pool;     /* NULL: the heap */
    ngx_uint_t                           argc;
    const char                         **argv;     /* EVALSHA, sha, ... */
    size_t                              *argvlen;
    unsigned                             reloaded:1;
} ngx_http_sandbox_script_call_t;


/* ngx_http_sandbox_script_t's state */
#define NGX_HTTP_SANDBOX_SCRIPT_UNKNOWN  0      /* or lost: load it */
#define NGX_HTTP_SANDBOX_SCRIPT_LOADING  1      /* SCRIPT LOAD queued */
#define NGX_HTTP_SANDBOX_SCRIPT_LOADED   2


static ngx_int_t ngx_http_sandbox_script_send(
    ngx_http_sandbox_script_call_t *call);
static void ngx_http_sandbox_script_load(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_script_t *s);
static void ngx_http_sandbox_script_loaded(void *data, redisReply *reply);
static void ngx_http_sandbox_script_handler(void *data, redisReply *reply);
static ngx_uint_t ngx_http_sandbox_script_noscript(redisReply *reply);
static void ngx_http_sandbox_script_free(ngx_http_sandbox_script_call_t *call);


ngx_int_t
ngx_http_sandbox_script_hash(ngx_http_sandbox_script_t *s, ngx_log_t *log)
{
    u_char        md[EVP_MAX_MD_SIZE];
    unsigned int  mdlen;

    if (s->hashed) {
        return NGX_OK;
    }

    /* Redis names a script by the SHA-1 of its text, in lowercase hex */

    if (EVP_Digest(s->text.data, s->text.len, md, &mdlen, EVP_sha1(), NULL)
        != 1
        || mdlen * 2 != NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0, "sandbox: SHA-1 failed");
        return NGX_ERROR;
    }

    ngx_hex_dump(s->sha, md, mdlen);
    s->hashed = 1;

    return NGX_OK;
}


ngx_int_t
ngx_http_sandbox_script_run(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_script_t *s, ngx_pool_t *pool, ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sandbox_redis_handler_pt handler, void *data, void **opp)
{
    u_char                          *p;
    size_t                           size;
    ngx_uint_t                       i;
    ngx_log_t                       *log;
    ngx_http_sandbox_script_call_t  *call;

    log = pool ? pool->log : ngx_cycle->log;

    if (rd == NULL || ngx_http_sandbox_script_hash(s, log) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * the call, its argument vectors and the arguments, in one piece;
     * a request's is apart from its pool's blocks and freed once answered
     * (a stream opened after a lookup keeps none of it)
     */

    size = sizeof(ngx_http_sandbox_script_call_t)
           + (argc + 2) * (sizeof(const char *) + sizeof(size_t));

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    call = pool ? ngx_pmemalign(pool, size, NGX_ALIGNMENT)
                : ngx_alloc(size, log);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->rd = rd;
    call->script = s;
    call->handler = handler;
    call->data = data;
    call->opp = opp;
    call->log = log;
    call->pool = pool;
    call->argc = argc + 2;
    call->argv = (const char **) (call + 1);
    call->argvlen = (size_t *) (call->argv + argc + 2);
    call->reloaded = 0;

    call->argv[0] = "EVALSHA";
    call->argvlen[0] = sizeof("EVALSHA") - 1;
    call->argv[1] = (const char *) s->sha;
    call->argvlen[1] = NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN;

    p = (u_char *) (call->argvlen + argc + 2);

    for (i = 0; i < argc; i++) {
        call->argv[i + 2] = (const char *) p;
        call->argvlen[i + 2] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    if (ngx_http_sandbox_script_send(call) != NGX_OK) {
        ngx_http_sandbox_script_free(call);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_script_send(ngx_http_sandbox_script_call_t *call)
{
    void  *op;

    if (call->script->state == NGX_HTTP_SANDBOX_SCRIPT_UNKNOWN) {
        ngx_http_sandbox_script_load(call->rd, call->script);
    }

    op = ngx_http_sandbox_redis_command(call->rd, call->argc, call->argv,
                                        call->argvlen,
                                        ngx_http_sandbox_script_handler,
                                        call);
    if (op == NULL) {
        return NGX_ERROR;
    }

    if (call->opp) {
        *call->opp = op;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_script_handler(void *data, redisReply *reply)
{
    ngx_http_sandbox_script_call_t *call = data;

    void                               *hdata;
    ngx_http_sandbox_redis_handler_pt   handler;

    if (!call->reloaded && ngx_http_sandbox_script_noscript(reply)) {

        /* Redis lost its scripts: load this one again, then retry once */

        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "sandbox: redis lost script %*s, reloading",
                      (size_t) NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN,
                      call->script->sha);

        call->reloaded = 1;

        if (call->script->state == NGX_HTTP_SANDBOX_SCRIPT_LOADED) {
            call->script->state = NGX_HTTP_SANDBOX_SCRIPT_UNKNOWN;
        }

        if (ngx_http_sandbox_script_send(call) == NGX_OK) {
            return;
        }

        reply = NULL;
    }

    /* freed first: the handler may free the pool the call lives in */

    handler = call->handler;
    hdata = call->data;

    ngx_http_sandbox_script_free(call);

    if (handler) {
        handler(hdata, reply);
    }
}


static void
ngx_http_sandbox_script_free(ngx_http_sandbox_script_call_t *call)
{
    if (call->pool) {
        ngx_pfree(call->pool, call);

    } else {
        ngx_free(call);
    }
}


static void
ngx_http_sandbox_script_load(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_script_t *s)
{
    const char  *argv[3];
    size_t       argvlen[3];

    argv[0] = "SCRIPT";
    argvlen[0] = sizeof("SCRIPT") - 1;
    argv[1] = "LOAD";
    argvlen[1] = sizeof("LOAD") - 1;
    argv[2] = (const char *) s->text.data;
    argvlen[2] = s->text.len;

    if (ngx_http_sandbox_redis_command(rd, 3, argv, argvlen,
                                       ngx_http_sandbox_script_loaded, s)
        != NULL)
    {
        s->state = NGX_HTTP_SANDBOX_SCRIPT_LOADING;
    }
}


static void
ngx_http_sandbox_script_loaded(void *data, redisReply *reply)
{
    ngx_http_sandbox_script_t *s = data;

    /* Redis answers with the SHA-1; anything else: load it next time */

    if (reply != NULL && reply->type == REDIS_REPLY_STRING
        && reply->len == NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN
        && ngx_strncmp(reply->str, s->sha, reply->len) == 0)
    {
        s->state = NGX_HTTP_SANDBOX_SCRIPT_LOADED;
        return;
    }

    if (reply != NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "sandbox: redis did not load script %*s",
                      (size_t) NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN, s->sha);
    }

    s->state = NGX_HTTP_SANDBOX_SCRIPT_UNKNOWN;
}


static ngx_uint_t
ngx_http_sandbox_script_noscript(redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR
           && reply->len >= sizeof("NOSCRIPT") - 1
           && ngx_strncmp(reply->str, "NOSCRIPT", sizeof("NOSCRIPT") - 1)
              == 0;
}
