
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The agentkernel API's way into a sandbox: the route of the caller's
 * sandbox (one Redis script that also judges the key), then an nginx
 * subrequest, kept in memory, to the internal location named by
 * runtime= (proxy_pass to the sandbox_balancer upstream: the pod's
 * address is handed to the balancer in the subrequest's own route
 * context, so the request goes out on the data plane's pooled
 * connections).  The runtime gets the argv form of /v1/shell/exec
 * (sandbox-agent's), or with exec=shell every argument single-quoted;
 * files go to its /v1/file/read, write and delete.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_agentkernel.h"


static ngx_int_t ngx_http_sandbox_ak_address(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data,
    const char **msg);
static void ngx_http_sandbox_ak_exec_done(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
static void ngx_http_sandbox_ak_files_target(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data);
static void ngx_http_sandbox_ak_files_done(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_ak_subrequest(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, const char *path, char *body,
    void (*done)(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx));
static ngx_int_t ngx_http_sandbox_ak_sr_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_sandbox_ak_resume(ngx_http_request_t *r);
static ngx_int_t ngx_http_sandbox_ak_runtime_error(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);


/*
 * The caller's sandbox and its route.  KEYS[1]: the key's hash (ARGV[2]);
 * ARGV[1] now, ARGV[3] the name.  The user's record and route keys are found from
 * the key's user, as the management API's scripts do.
 */

static ngx_http_sandbox_api_script_t  ngx_http_sandbox_ak_target_lua = {
    ngx_http_sandbox_script(
    "local now = tonumber(ARGV[1])\n"
    "local function num(v) return tonumber(v or '0') or 0 end\n"
    "local function reply(s, t, who) return {s, cjson.encode(t), who} end\n"
    "local k = redis.call('HMGET', KEYS[1], 'user', 'id', 'expires_at',\n"
    "                     'active', 'last_used_at')\n"
    "if not k[1] then return reply(401, {message = 'Invalid API key'}) end\n"
    "if k[4] == '0' then\n"
    "  return reply(401, {message = 'API key is inactive'}) end\n"
    "local ua = redis.call('HGET', 'sbx:user:' .. k[1], 'active')\n"
    "if not ua then return reply(401, {message = 'Invalid API key'}) end\n"
    "if ua == '0' then\n"
    "  return reply(401, {message = 'User account is inactive'}) end\n"
    "if num(k[3]) > 0 and num(k[3]) <= now then\n"
    "  return reply(401, {message = 'API key has expired'}) end\n"
    "if now - num(k[5]) >= 60 then\n"
    "  redis.call('HSET', KEYS[1], 'last_used_at', now) end\n"
    "local user, n = k[1], ARGV[3]\n"
    "local rt = redis.call('HMGET', 'sbx:route:' .. user .. ':' .. n,\n"
    "                      'addr', 'ready', 'suspended')\n"
    "if not rt[1] and not rt[2] and redis.call('EXISTS',\n"
    "    'sbx:sandbox:' .. user .. ':' .. n) == 0 then\n"
    "  return reply(404, {message = 'Sandbox not found'}, user) end\n"
    "return reply(200, {addr = rt[1] or '',\n"
    "                   ready = rt[2] == '1' and rt[3] ~= '1'}, user)\n"),
    { "sbx:key:$2", NULL }
};


void
ngx_http_sandbox_ak_target(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_http_sandbox_ak_next_pt next)
{
    ngx_int_t  rc;

    ngx_http_sandbox_ak_args(r, ctx);
    ngx_http_sandbox_api_arg(&ctx->api, (char *) ctx->name.data,
                             ctx->name.len);

    rc = ngx_http_sandbox_ak_script(r, ctx, &ngx_http_sandbox_ak_target_lua,
                                    next);

    if (rc != NGX_DONE) {
        ngx_http_sandbox_ak_finish(r, rc);
    }
}


/*
 * NGX_OK with ctx->addr set, or an HTTP status and *msg: nothing is sent,
 * a one-shot run answers in its own way
 */

static ngx_int_t
ngx_http_sandbox_ak_address(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data,
    const char **msg)
{
    u_char      *m;
    json_t      *addr;

    if (status != NGX_HTTP_OK) {
        return ngx_http_sandbox_ak_script_status(r, status, data, msg);
    }

    addr = json_object_get(data, "addr");

    if (!json_is_true(json_object_get(data, "ready"))
        || !json_is_string(addr) || json_string_length(addr) == 0)
    {
        m = ngx_pnalloc(r->pool, 2 * ctx->name.len + 128);
        if (m == NULL) {
            *msg = "Out of memory";
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(m, "Sandbox '%V' is not running. Start it with: "
                    "POST /sandboxes/%V/start%Z", &ctx->name, &ctx->name);

        *msg = (char *) m;
        return NGX_HTTP_CONFLICT;
    }

    ctx->addr_text.len = json_string_length(addr);
    ctx->addr_text.data = ngx_pnalloc(r->pool, ctx->addr_text.len);
    if (ctx->addr_text.data == NULL) {
        *msg = "Out of memory";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->addr_text.data, json_string_value(addr),
               ctx->addr_text.len);

    /* an address, never a name: a worker never resolves */

    if (ngx_parse_addr_port(r->pool, &ctx->addr, ctx->addr_text.data,
                            ctx->addr_text.len)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox agentkernel: bad route address \"%V\"",
                      &ctx->addr_text);
        *msg = "Sandbox unreachable";
        return NGX_HTTP_BAD_GATEWAY;
    }

    ctx->addr.name = ctx->addr_text;

    return NGX_OK;
}


/* POST /sandboxes/{name}/exec */

void
ngx_http_sandbox_ak_exec(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx)
{
    ngx_http_sandbox_ak_target(r, ctx, ngx_http_sandbox_ak_exec_target);
}


static ngx_int_t
ngx_http_sandbox_ak_exec_start(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    char  *body;

    body = ctx->conf->shell
           ? sbx_ak_exec_request_shell(&ctx->cmd, ctx->conf->exec_timeout)
           : sbx_ak_exec_request(&ctx->cmd, ctx->conf->exec_timeout);

    if (body == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_sandbox_ak_subrequest(r, ctx, "/v1/shell/exec", body,
                                          ngx_http_sandbox_ak_exec_done);
}


void
ngx_http_sandbox_ak_exec_target(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data)
{
    ngx_int_t    rc;
    const char  *msg;

    rc = ngx_http_sandbox_ak_address(r, ctx, status, data, &msg);

    if (rc == NGX_OK) {
        if (ngx_http_sandbox_ak_exec_start(r, ctx) == NGX_OK) {
            return;
        }

        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        msg = "The command could not be sent";
    }

    if (ctx->run) {
        ngx_http_sandbox_ak_run_end(r, ctx, rc, msg, NULL);
        return;
    }

    ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r, rc, msg));
}


static void
ngx_http_sandbox_ak_exec_done(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    u_char           *msg, *p;
    json_t           *out;
    ngx_int_t         rc;
    sbx_ak_result_t   res;
    char              err[SBX_AK_ERR_MAX];

    if (ctx->sr_status != NGX_HTTP_OK) {
        if (ctx->run) {
            ngx_http_sandbox_ak_run_end(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                        ctx->sr_status
                                        == NGX_HTTP_GATEWAY_TIME_OUT
                                        ? "Sandbox did not respond in time"
                                        : "Sandbox runtime failed", NULL);
            return;
        }

        ngx_http_sandbox_ak_finish(r,
                                   ngx_http_sandbox_ak_runtime_error(r, ctx));
        return;
    }

    if (sbx_ak_exec_result((char *) ctx->sr_body.data, ctx->sr_body.len,
                           &res, err)
        != 0)
    {
        if (ctx->run) {
            ngx_http_sandbox_ak_run_end(r, ctx, NGX_HTTP_BAD_GATEWAY, err,
                                        NULL);
            return;
        }

        ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r,
                                                 NGX_HTTP_BAD_GATEWAY, err));
        return;
    }

    if (ctx->run) {
        ngx_http_sandbox_ak_run_end(r, ctx, NGX_HTTP_OK, NULL, &res);
        free(res.output);
        return;
    }

    /* agentkernel: a command that fails is a 500 with its output */

    if (!res.completed || res.exit_code != 0) {
        msg = ngx_pnalloc(r->pool, res.output_len + 64);

        if (msg == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            if (res.completed) {
                p = ngx_sprintf(msg, "Command exited with code %L: ",
                                (int64_t) res.exit_code);
            } else {
                p = ngx_sprintf(msg, "Command timed out and was killed: ");
            }

            p = ngx_cpymem(p, res.output, res.output_len);
            *p = '\0';

            rc = ngx_http_sandbox_ak_fail(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                          (char *) msg);
        }

        free(res.output);
        ngx_http_sandbox_ak_finish(r, rc);
        return;
    }

    out = json_pack("{s:s#}", "output", res.output, res.output_len);
    free(res.output);

    ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK, out));
}


/* GET, PUT, DELETE /sandboxes/{name}/files/{path} */

void
ngx_http_sandbox_ak_files(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    ngx_http_sandbox_ak_target(r, ctx, ngx_http_sandbox_ak_files_target);
}


static void
ngx_http_sandbox_ak_files_target(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data)
{
    char        *body, *path;
    json_t      *j;
    ngx_int_t    rc;
    ngx_str_t    src, dst;
    const char  *op, *msg;

    rc = ngx_http_sandbox_ak_address(r, ctx, status, data, &msg);

    if (rc != NGX_OK) {
        ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r, rc, msg));
        return;
    }

    path = ngx_pnalloc(r->pool, ctx->route.file.len + 2);
    if (path == NULL) {
        ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    path[0] = '/';
    ngx_memcpy(path + 1, ctx->route.file.data, ctx->route.file.len);
    path[ctx->route.file.len + 1] = '\0';

    switch (ctx->route.op) {

    case SBX_AK_FILE_GET:
        op = "/v1/file/read";
        j = json_pack("{s:s, s:s}", "file", path, "encoding", "base64");
        break;

    case SBX_AK_FILE_PUT:
        op = "/v1/file/write";

        if (ctx->file.base64) {
            /* checked here, so a bad one is the client's 400 */

            src.data = (u_char *) ctx->file.content.data;
            src.len = ctx->file.content.len;
            dst.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(src.len));

            if (dst.data == NULL) {
                ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

            if (ngx_decode_base64(&dst, &src) != NGX_OK) {
                ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r,
                                   NGX_HTTP_BAD_REQUEST, "Invalid base64"));
                return;
            }
        }

        j = json_pack("{s:s, s:s#, s:s}", "file", path,
                      "content", ctx->file.content.data,
                      ctx->file.content.len,
                      "encoding", ctx->file.base64 ? "base64" : "utf-8");
        break;

    default:
        op = "/v1/file/delete";
        j = json_pack("{s:s}", "file", path);
    }

    body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);

    if (body == NULL
        || ngx_http_sandbox_ak_subrequest(r, ctx, op, body,
                                          ngx_http_sandbox_ak_files_done)
           != NGX_OK)
    {
        ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


static void
ngx_http_sandbox_ak_files_done(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    u_char        *p, *msg;
    json_t        *j, *d, *content, *out;
    ngx_str_t      src, dst, path;
    json_error_t   err;

    if (ctx->sr_status != NGX_HTTP_OK) {
        ngx_http_sandbox_ak_finish(r,
                                   ngx_http_sandbox_ak_runtime_error(r, ctx));
        return;
    }

    j = json_loadb((char *) ctx->sr_body.data, ctx->sr_body.len, 0, &err);
    d = json_object_get(j, "data");

    path.len = ctx->route.file.len + 1;
    path.data = (u_char *) ctx->route.file.data - 1;    /* its "/" */

    msg = ngx_pnalloc(r->pool, path.len + 64);

    if (!json_is_object(d) || msg == NULL) {
        json_decref(j);
        ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r,
                                       NGX_HTTP_BAD_GATEWAY,
                                       "The sandbox runtime answered "
                                       "something else than JSON"));
        return;
    }

    switch (ctx->route.op) {

    case SBX_AK_FILE_GET:
        content = json_object_get(d, "content");

        src.data = (u_char *) json_string_value(content);
        src.len = json_string_length(content);
        dst.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(src.len));

        if (src.data == NULL || dst.data == NULL
            || ngx_decode_base64(&dst, &src) != NGX_OK)
        {
            out = NULL;
            break;
        }

        /* text when it is UTF-8, else base64 as agentkernel does */

        p = dst.data;

        while (p < dst.data + dst.len) {
            if (*p < 0x80) {
                p++;
                continue;
            }

            if (ngx_utf8_decode(&p, dst.data + dst.len - p) > 0x10ffff) {
                break;
            }
        }

        if (p == dst.data + dst.len) {
            out = json_pack("{s:s#, s:s, s:I}", "content", dst.data, dst.len,
                            "encoding", "utf8", "size", (json_int_t) dst.len);
        } else {
            out = json_pack("{s:O, s:s, s:I}", "content", content,
                            "encoding", "base64", "size",
                            (json_int_t) dst.len);
        }

        break;

    case SBX_AK_FILE_PUT:
        p = ngx_sprintf(msg, "Wrote %L bytes to %V",
                        (int64_t) json_integer_value(
                                json_object_get(d, "bytes_written")), &path);
        out = json_stringn((char *) msg, p - msg);
        break;

    default:
        p = ngx_sprintf(msg, "Deleted %V", &path);
        out = json_stringn((char *) msg, p - msg);
    }

    json_decref(j);

    ngx_http_sandbox_ak_finish(r, out ? ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK,
                                                               out)
                                      : ngx_http_sandbox_ak_fail(r,
                                            NGX_HTTP_BAD_GATEWAY,
                                            "Unexpected runtime answer"));
}


/* the runtime's own refusal (404 for a missing file, ...) passed on */

static ngx_int_t
ngx_http_sandbox_ak_runtime_error(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    json_t        *j, *m;
    u_char        *msg;
    ngx_int_t      rc, status;
    json_error_t   err;

    status = ctx->sr_status;

    if (status == NGX_HTTP_BAD_GATEWAY || status < 400 || status > 599) {
        return ngx_http_sandbox_ak_fail(r, NGX_HTTP_BAD_GATEWAY,
                                        "Sandbox unreachable");
    }

    if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
        return ngx_http_sandbox_ak_fail(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                        "Sandbox did not respond in time");
    }

    j = json_loadb((char *) ctx->sr_body.data, ctx->sr_body.len, 0, &err);
    m = json_object_get(j, "message");

    if (!json_is_string(m)) {
        m = json_object_get(j, "detail");
    }

    msg = (u_char *) "The sandbox runtime refused the request";

    if (json_is_string(m)) {
        msg = ngx_pnalloc(r->pool, json_string_length(m) + 1);

        if (msg) {
            ngx_memcpy(msg, json_string_value(m), json_string_length(m) + 1);
        }
    }

    json_decref(j);

    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the runtime's client errors are about the request; others its own */

    if (status != NGX_HTTP_NOT_FOUND && status != NGX_HTTP_BAD_REQUEST
        && status != NGX_HTTP_FORBIDDEN)
    {
        status = NGX_HTTP_BAD_GATEWAY;
    }

    rc = ngx_http_sandbox_ak_fail(r, status, (char *) msg);

    return rc;
}


/*
 * A subrequest to the runtime location, its answer kept in memory; the
 * request goes on in done() once it has finished.  body is malloc()ed.
 */

static ngx_int_t
ngx_http_sandbox_ak_subrequest(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, const char *path, char *body,
    void (*done)(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx))
{
    size_t                         len;
    ngx_buf_t                     *b;
    ngx_str_t                      uri;
    ngx_chain_t                   *cl;
    ngx_http_request_t            *sr;
    ngx_http_request_body_t       *rb;
    ngx_http_post_subrequest_t    *ps;
    ngx_http_sandbox_route_ctx_t  *rctx;

    len = ngx_strlen(body);

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        free(body);
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, body, len);
    b->last_buf = 1;
    b->last_in_chain = 1;
    free(body);

    uri.len = ctx->conf->runtime.len + ngx_strlen(path);
    uri.data = ngx_pnalloc(r->pool, uri.len);
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    cl = ngx_alloc_chain_link(r->pool);

    if (uri.data == NULL || ps == NULL || rb == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(uri.data, ctx->conf->runtime.data,
                          ctx->conf->runtime.len),
               path, ngx_strlen(path));

    ps->handler = ngx_http_sandbox_ak_sr_done;
    ps->data = ctx;

    ctx->sr_status = 0;
    ngx_str_null(&ctx->sr_body);
    ctx->sr_done = done;

    if (ngx_http_subrequest(r, &uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the runtime gets this body, never the client's headers */

    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");

    cl->buf = b;
    cl->next = NULL;
    rb->bufs = cl;
    rb->buf = b;
    sr->request_body = rb;
    sr->headers_in.content_length_n = b->last - b->pos;
    sr->headers_in.chunked = 0;

    /* the pod's address for the balancer, in the subrequest's context */

    rctx = ngx_http_sandbox_create_ctx(sr, NGX_HTTP_SANDBOX_CTX_ROUTE,
                                       sizeof(ngx_http_sandbox_route_ctx_t));
    if (rctx == NULL) {
        return NGX_ERROR;
    }

    rctx->user = ctx->user;
    rctx->name = ctx->name;
    if (ctx->addr.socklen > sizeof(ngx_http_sandbox_sockaddr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&rctx->sockaddr, ctx->addr.sockaddr, ctx->addr.socklen);
    rctx->socklen = ctx->addr.socklen;
    rctx->addr_text = ctx->addr_text;

    ctx->sr = sr;
    r->write_event_handler = ngx_http_sandbox_ak_resume;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_ak_sr_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_http_sandbox_ak_ctx_t *ctx = data;

    ngx_buf_t  *b;

    if (ctx->sr != sr || ctx->sr_status != 0) {
        return rc;
    }

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE
        || sr->headers_out.status == 0)
    {
        ctx->sr_status = (rc >= NGX_HTTP_SPECIAL_RESPONSE)
                         ? rc : NGX_HTTP_BAD_GATEWAY;

    } else {
        ctx->sr_status = sr->headers_out.status;

        b = sr->out ? sr->out->buf : NULL;

        if (b) {
            ctx->sr_body.data = b->pos;
            ctx->sr_body.len = b->last - b->pos;
        }
    }

    /*
     * The client gone ends the whole request (the cleanup deletes a
     * one-shot sandbox); any other failure is answered by the parent, not
     * by an error page of the subrequest's
     */

    if (sr->connection->error || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || rc == NGX_HTTP_REQUEST_TIME_OUT)
    {
        return rc;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_ak_resume(ngx_http_request_t *r)
{
    ngx_http_sandbox_ak_ctx_t  *ctx;

    ctx = ngx_http_sandbox_ak_ctx(r);

    if (ctx == NULL || ctx->finished) {
        return;
    }

    if (ctx->sr && ctx->sr_status) {
        ctx->sr = NULL;
        ctx->sr_done(r, ctx);
        return;
    }

    /* an event stream's output waiting for the client */

    if (r->connection->buffered && r == r->connection->data) {
        if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
            ngx_http_sandbox_ak_finish(r, NGX_ERROR);
        }
    }
}
