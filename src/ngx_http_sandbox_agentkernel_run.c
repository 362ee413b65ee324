
/*
 * Copyright (C) The sandbox gateway authors
 *
 * POST /run and /run/stream: a one-shot sandbox made by the management
 * API's create script (its quota and records), held without blocking
 * until usable (ngx_http_sandbox_wait.h), the command run through
 * ngx_http_sandbox_agentkernel_exec.c, and its deletion queued at the end.
 * The request's cleanup queues the deletion too, so a client that goes
 * away, a failing command or a timeout never leaves the sandbox behind.
 * /run/stream answers with agentkernel's events: started, progress
 * (sandbox_created, sandbox_started), output, done or error.  Creating a
 * sandbox through POST /sandboxes is held here as well.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_sandbox_agentkernel.h"
#include "ngx_http_sandbox_wait.h"


static void ngx_http_sandbox_ak_run_created(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
static void ngx_http_sandbox_ak_held(ngx_http_request_t *r, ngx_int_t rc,
    ngx_str_t *addr);
static void ngx_http_sandbox_ak_delete(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_ak_sse_start(ngx_http_request_t *r);
static ngx_int_t ngx_http_sandbox_ak_event(ngx_http_request_t *r,
    const char *event, json_t *data);
static void ngx_http_sandbox_ak_test_reading(ngx_http_request_t *r);


/* POST /run, /run/stream */

void
ngx_http_sandbox_ak_run(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx)
{
    u_char     rnd[8];
    ngx_int_t  rc;
    ngx_str_t  image;

    ctx->run = 1;
    ctx->stream = (ctx->route.op == SBX_AK_RUN_STREAM);

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_hex_dump(ngx_cpymem(ctx->run_name, "run-", 4), rnd, sizeof(rnd));
    ctx->name.data = ctx->run_name;
    ctx->name.len = sizeof(ctx->run_name);

    /* a client that goes away ends the request, and so the sandbox */

    r->read_event_handler = ngx_http_sandbox_ak_test_reading;

    if (ctx->stream) {
        if (ngx_http_sandbox_ak_sse_start(r) != NGX_OK
            || ngx_http_sandbox_ak_event(r, "started",
                   json_pack("{s:s#, s:O, s:b}",
                             "sandbox", ctx->run_name,
                             sizeof(ctx->run_name),
                             "command", ctx->cmd.command,
                             "fast", ctx->cmd.fast))
               != NGX_OK)
        {
            ngx_http_sandbox_ak_finish(r, NGX_ERROR);
            return;
        }
    }

    image.data = (u_char *) ctx->cmd.image.data;
    image.len = ctx->cmd.image.len;

    ngx_http_sandbox_ak_args(r, ctx);
    ngx_http_sandbox_ak_create_args(r, ctx, &image);

    /* it may exist from here on, whatever becomes of the answer */

    ctx->created = 1;

    rc = ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_CREATE],
                     ngx_http_sandbox_ak_run_created);

    if (rc != NGX_DONE) {
        ctx->created = 0;
        ngx_http_sandbox_ak_finish(r, rc);
    }
}


static void
ngx_http_sandbox_ak_run_created(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data)
{
    const char  *msg;

    if (status != NGX_HTTP_CREATED) {
        ctx->created = 0;
        status = ngx_http_sandbox_ak_script_status(r, status, data, &msg);
        ngx_http_sandbox_ak_run_end(r, ctx, status, msg, NULL);
        return;
    }

    if (ctx->stream
        && ngx_http_sandbox_ak_event(r, "progress",
               json_pack("{s:s, s:s#}", "stage", "sandbox_created",
                         "sandbox", ctx->run_name, sizeof(ctx->run_name)))
           != NGX_OK)
    {
        ngx_http_sandbox_ak_finish(r, NGX_ERROR);
        return;
    }

    ngx_http_sandbox_ak_hold(r, ctx);
}


/* held, without blocking, until the new sandbox's route is ready */

void
ngx_http_sandbox_ak_hold(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_sandbox_wait_route(r, &ctx->user, &ctx->name,
                                     ctx->conf->wait,
                                     ngx_http_sandbox_ak_held);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_http_sandbox_ak_held(r, rc == NGX_OK ? NGX_OK
                                : NGX_HTTP_SERVICE_UNAVAILABLE, NULL);
}


/* the run's target is found again by its own script: addr is not used */

static void
ngx_http_sandbox_ak_held(ngx_http_request_t *r, ngx_int_t rc, ngx_str_t *addr)
{
    json_t                     *info, *created;
    ngx_http_sandbox_ak_ctx_t  *ctx;

    ctx = ngx_http_sandbox_ak_ctx(r);

    if (ctx->run) {
        r->read_event_handler = ngx_http_sandbox_ak_test_reading;

        if (rc != NGX_OK) {
            ngx_http_sandbox_ak_run_end(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "The one-shot sandbox did not become "
                                        "ready in time", NULL);
            return;
        }

        if (ctx->stream
            && ngx_http_sandbox_ak_event(r, "progress",
                   json_pack("{s:s}", "stage", "sandbox_started"))
               != NGX_OK)
        {
            ngx_http_sandbox_ak_finish(r, NGX_ERROR);
            return;
        }

        ngx_http_sandbox_ak_target(r, ctx, ngx_http_sandbox_ak_exec_target);
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r,
                               NGX_HTTP_SERVICE_UNAVAILABLE,
                               "The sandbox was created but did not become "
                               "ready in time; it is still starting"));
        return;
    }

    created = json_integer(ngx_atoi(ctx->api.now,
                                    ngx_strlen(ctx->api.now)));
    ngx_http_sandbox_ak_uuid(ctx, &ctx->name, created);
    json_decref(created);

    info = json_pack("{s:s#, s:s#, s:s, s:s}",
                     "name", ctx->name.data, ctx->name.len,
                     "uuid", ctx->uuid, (size_t) 36,
                     "status", "running",
                     "backend", NGX_HTTP_SANDBOX_AK_BACKEND);

    ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_ok(r, NGX_HTTP_CREATED,
                                                         info));
}


/*
 * The end of a one-shot run, whatever it was: the deletion queued, then
 * the answer (JSON, or the stream's last events)
 */

void
ngx_http_sandbox_ak_run_end(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_uint_t status, const char *error,
    sbx_ak_result_t *res)
{
    u_char     *msg, *p;
    ngx_int_t   rc;

    ngx_http_sandbox_ak_delete(r, ctx);

    msg = NULL;

    if (res && (!res->completed || res->exit_code != 0)) {
        msg = ngx_pnalloc(r->pool, res->output_len + 64);
        if (msg == NULL) {
            ngx_http_sandbox_ak_finish(r, NGX_ERROR);
            return;
        }

        p = res->completed
            ? ngx_sprintf(msg, "Command exited with code %L: ",
                          (int64_t) res->exit_code)
            : ngx_sprintf(msg, "Command timed out and was killed: ");
        p = ngx_cpymem(p, res->output, res->output_len);
        *p = '\0';

        error = (char *) msg;
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ctx->stream) {
        if (error) {
            rc = ngx_http_sandbox_ak_fail(r, status, error);

        } else {
            rc = ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK,
                                        json_pack("{s:s#}", "output",
                                                  res->output,
                                                  res->output_len));
        }

        ngx_http_sandbox_ak_finish(r, rc);
        return;
    }

    rc = NGX_OK;

    if (res) {
        rc = ngx_http_sandbox_ak_event(r, "output",
                 json_pack("{s:s#, s:s}", "data", res->output,
                           res->output_len, "stream", "stdout"));
    }

    if (rc == NGX_OK && error) {
        rc = ngx_http_sandbox_ak_event(r, "error",
                                       json_pack("{s:s}", "message", error));

    } else if (rc == NGX_OK) {
        rc = ngx_http_sandbox_ak_event(r, "done",
                 json_pack("{s:I, s:b}", "exit_code",
                           (json_int_t) res->exit_code, "success", 1));
    }

    if (rc == NGX_OK) {
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    ngx_http_sandbox_ak_finish(r, rc == NGX_ERROR ? NGX_ERROR : NGX_OK);
}


/*
 * The one-shot sandbox's deletion, queued by the management API's own
 * script; fire-and-forget, so it is sent even as the request ends
 */

static void
ngx_http_sandbox_ak_delete(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    if (!ctx->created || ctx->deleted) {
        return;
    }

    ctx->deleted = 1;

    ngx_http_sandbox_ak_args(r, ctx);
    ngx_http_sandbox_api_arg(&ctx->api, (char *) ctx->name.data,
                             ctx->name.len);

    if (ngx_http_sandbox_ak_script(r, ctx,
                 &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_DELETE], NULL)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox agentkernel: the deletion of one-shot sandbox "
                      "\"%V\" could not be queued: Redis is unavailable",
                      &ctx->name);
    }
}


void
ngx_http_sandbox_ak_cleanup(void *data)
{
    ngx_http_sandbox_ak_ctx_t *ctx = data;

    ngx_http_request_t  *r;

    if (ctx->api.op) {
        ngx_http_sandbox_redis_cancel(ctx->api.op);
        ctx->api.op = NULL;
    }

    if (ctx->run && ctx->created && !ctx->deleted) {
        r = ctx->request;
        ngx_http_sandbox_ak_delete(r, ctx);
    }

    if (ctx->api.body) {
        json_decref(ctx->api.body);
        ctx->api.body = NULL;
    }
}


static ngx_int_t
ngx_http_sandbox_ak_sse_start(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-cache");

    rc = ngx_http_send_header(r);

    return (rc == NGX_ERROR || rc > NGX_OK) ? NGX_ERROR : NGX_OK;
}


/* one event, flushed at once; takes data's reference */

static ngx_int_t
ngx_http_sandbox_ak_event(ngx_http_request_t *r, const char *event,
    json_t *data)
{
    size_t        len, elen;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (data == NULL) {
        return NGX_ERROR;
    }

    elen = ngx_strlen(event);
    len = json_dumpb(data, NULL, 0, JSON_COMPACT);

    b = ngx_create_temp_buf(r->pool, sizeof("event: \ndata: \n\n") + elen
                                     + len);
    if (b == NULL) {
        json_decref(data);
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, "event: ", 7);
    b->last = ngx_cpymem(b->last, event, elen);
    b->last = ngx_cpymem(b->last, "\ndata: ", 7);
    b->last += json_dumpb(data, (char *) b->last, len, JSON_COMPACT);
    b->last = ngx_cpymem(b->last, "\n\n", 2);
    b->flush = 1;
    json_decref(data);

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out) == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/*
 * While a one-shot run waits on Redis: a client that closed its end
 * finalizes the request at once (the cleanup deletes the sandbox)
 */

static void
ngx_http_sandbox_ak_test_reading(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    c = r->connection;
    rev = c->read;

#if (NGX_HAVE_EPOLLRDHUP)

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {

        if (!rev->pending_eof) {
            return;
        }

        rev->eof = 1;
        c->error = 1;
        err = 0;

        goto closed;
    }

#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == 0) {
        rev->eof = 1;
        c->error = 1;
        err = 0;
        goto closed;
    }

    if (n == -1) {
        err = ngx_socket_errno;

        if (err != NGX_EAGAIN) {
            rev->eof = 1;
            c->error = 1;
            goto closed;
        }
    }

    /* pipelined data, or nothing: keep waiting */

    if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && rev->active) {
        if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    return;

closed:

    ngx_log_error(NGX_LOG_INFO, c->log, err,
                  "client prematurely closed connection during a one-shot "
                  "run");

    ngx_http_sandbox_ak_finish(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}
