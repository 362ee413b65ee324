
/*
 * Copyright (C) The sandbox gateway authors
 *
 * sandbox_agentkernel_api: the agentkernel HTTP API (thrashr888/
 * agentkernel, docs/api-http.md) under a location's prefix, so that its
 * clients (the pi extension, the SDKs) run their commands in this
 * gateway's sandboxes with no change but the base URL and the key.
 *
 * Sandboxes are made, listed, paused and deleted by the management API's
 * own Redis scripts (the same queue, quota, records and audit), with the
 * caller's key judged inside each script; answers are agentkernel's
 * envelope, {"success": true, "data": ...} or {"success": false,
 * "error": "..."}.  What reaches a sandbox's runtime is in
 * ngx_http_sandbox_agentkernel_exec.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_agentkernel.h"
#include "sandbox_body.h"
#include "sandbox_token.h"


static ngx_int_t ngx_http_sandbox_ak_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sandbox_ak_subpath(ngx_http_request_t *r,
    ngx_str_t *path);
static ngx_int_t ngx_http_sandbox_ak_auth(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
static void ngx_http_sandbox_ak_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sandbox_ak_parse_body(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_ak_dispatch(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx);
static void ngx_http_sandbox_ak_reply(void *data, redisReply *reply);



/*
 *   sandbox_agentkernel_api [runtime=/uri] [wait=time] [exec_timeout=time]
 *                           [exec=argv|shell];
 */

char *
ngx_http_sandbox_agentkernel_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sandbox_loc_conf_t *slcf = conf;

    time_t                       t;
    ngx_str_t                   *value, v;
    ngx_uint_t                   i;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_sandbox_ak_conf_t  *akcf;

    if (slcf->agentkernel) {
        return "is duplicate";
    }

    akcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sandbox_ak_conf_t));
    if (akcf == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&akcf->runtime, "/_sandbox_runtime");
    akcf->wait = 120000;
    akcf->exec_timeout = 300;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "runtime=", 8) == 0) {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;

            if (v.len < 2 || v.data[0] != '/' || v.data[v.len - 1] == '/') {
                return "has an invalid runtime= (a URI like /_runtime)";
            }

            akcf->runtime = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "wait=", 5) == 0) {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;
            akcf->wait = ngx_parse_time(&v, 0);

            if (akcf->wait == (ngx_msec_t) NGX_ERROR || akcf->wait == 0) {
                return "has an invalid wait=";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "exec_timeout=", 13) == 0) {
            v.data = value[i].data + 13;
            v.len = value[i].len - 13;
            t = ngx_parse_time(&v, 1);

            if (t == (time_t) NGX_ERROR || t < 1 || t > 86400) {
                return "has an invalid exec_timeout= (1s to 1d)";
            }

            akcf->exec_timeout = t;
            continue;
        }

        if (ngx_strcmp(value[i].data, "exec=argv") == 0) {
            akcf->shell = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "exec=shell") == 0) {
            akcf->shell = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    slcf->agentkernel = akcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sandbox_ak_handler;

    (void) cmd;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sandbox_ak_handler(ngx_http_request_t *r)
{
    int                           rc;
    size_t                        max;
    ngx_str_t                     path;
    ngx_http_cleanup_t           *cln;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_sandbox_ak_ctx_t    *ctx;
    ngx_http_sandbox_loc_conf_t  *slcf;
    char                          err[SBX_AK_ERR_MAX];

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    ctx = ngx_http_sandbox_create_ctx(r, NGX_HTTP_SANDBOX_CTX_API,
                                      sizeof(ngx_http_sandbox_ak_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->conf = slcf->agentkernel;

    (void) ngx_http_sandbox_ak_subpath(r, &path);

    rc = sbx_ak_route((char *) r->method_name.data, r->method_name.len,
                      (char *) path.data, path.len, &ctx->route, err);

    if (rc != 0) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_http_sandbox_ak_fail(r, rc, err);
    }

    if (ctx->route.op == SBX_AK_HEALTH) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK, json_string("ok"));
    }

    ctx->name.data = (u_char *) ctx->route.name.data;
    ctx->name.len = ctx->route.name.len;

    if (ngx_http_sandbox_ak_auth(r, ctx) != NGX_OK) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ctx->api.rc;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_sandbox_ak_cleanup;
    cln->data = ctx;

    if (r->method != NGX_HTTP_POST && r->method != NGX_HTTP_PUT) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* held while the answer may come from an event, or at once */

        r->main->count++;

        rc = ngx_http_sandbox_ak_dispatch(r, ctx);

        if (rc != NGX_DONE) {
            ngx_http_sandbox_ak_finish(r, rc);
        }

        return NGX_DONE;
    }

    /* bodies are JSON documents kept in memory, and bounded */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    max = clcf->client_body_buffer_size;

    if (r->headers_in.content_length_n > (off_t) max) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_http_sandbox_ak_fail(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        "Request body too large");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_sandbox_ak_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the path below the location's prefix, with its leading "/" */

static ngx_int_t
ngx_http_sandbox_ak_subpath(ngx_http_request_t *r, ngx_str_t *path)
{
    size_t                     n;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    n = clcf->name.len;

    if (n && clcf->name.data[n - 1] == '/') {
        n--;
    }

    if (clcf->regex == NULL && r->uri.len >= n
        && ngx_strncmp(r->uri.data, clcf->name.data, n) == 0
        && (r->uri.len == n || r->uri.data[n] == '/'))
    {
        path->data = r->uri.data + n;
        path->len = r->uri.len - n;

        if (path->len == 0) {
            ngx_str_set(path, "/");
        }

        return NGX_OK;
    }

    *path = r->uri;

    return NGX_DECLINED;
}


/*
 * agentkernel's "Authorization: Bearer <key>", or the "X-API-Key: <key>"
 * its documentation names; the key itself is judged by each script
 */

static ngx_int_t
ngx_http_sandbox_ak_auth(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    size_t            off, len;
    ngx_str_t         key;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *xkey;

    xkey = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-API-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-API-Key",
                               sizeof("X-API-Key") - 1) == 0)
        {
            xkey = &h[i];
            break;
        }
    }

    if (r->headers_in.authorization) {
        h = r->headers_in.authorization;

        switch (sbx_token_parse(h->value.data, h->value.len, &off, &len)) {

        case SBX_TOKEN_OK:
            key.data = h->value.data + off;
            key.len = len;
            break;

        case SBX_TOKEN_EMPTY:
            goto empty;

        default:
            ctx->api.rc = ngx_http_sandbox_ak_fail(r, NGX_HTTP_UNAUTHORIZED,
                              "Invalid authorization format. Use: Bearer "
                              "<api_key>");
            return NGX_ERROR;
        }

    } else if (xkey) {
        key = xkey->value;

        while (key.len && (key.data[key.len - 1] == ' '
                           || key.data[key.len - 1] == '\t'))
        {
            key.len--;
        }

        if (key.len == 0) {
            goto empty;
        }

        if (key.len > SBX_TOKEN_MAX) {
            ctx->api.rc = ngx_http_sandbox_ak_fail(r, NGX_HTTP_UNAUTHORIZED,
                                                   "Invalid API key");
            return NGX_ERROR;
        }

    } else {
        ctx->api.rc = ngx_http_sandbox_ak_fail(r, NGX_HTTP_UNAUTHORIZED,
                                               "Missing Authorization header");
        return NGX_ERROR;
    }

    ngx_http_sandbox_sha256_hex(ctx->api.caller, key.data, key.len);

    return NGX_OK;

empty:

    ctx->api.rc = ngx_http_sandbox_ak_fail(r, NGX_HTTP_UNAUTHORIZED,
                                           "Empty API key");
    return NGX_ERROR;
}


static void
ngx_http_sandbox_ak_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_sandbox_ak_ctx_t  *ctx;

    ctx = ngx_http_sandbox_ak_ctx(r);

    rc = ngx_http_sandbox_ak_parse_body(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_sandbox_ak_dispatch(r, ctx);

    } else if (rc == NGX_DECLINED) {
        rc = ctx->api.rc;             /* answered */
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* NGX_OK, the body kept (or none); NGX_DECLINED once answered */

static ngx_int_t
ngx_http_sandbox_ak_parse_body(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    u_char     *data;
    size_t      len;
    json_t     *j;
    ngx_int_t   rc;
    char        msg[SBX_BODY_ERR_MAX];

    rc = ngx_http_sandbox_api_body(r, &data, &len);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ctx->api.rc = ngx_http_sandbox_ak_fail(r,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "Request body too large");
        return NGX_DECLINED;
    }

    if (len == 0) {
        return NGX_OK;
    }

    j = sbx_body_load((const char *) data, len, msg);

    if (j == NULL) {
        ctx->api.rc = ngx_http_sandbox_ak_fail(r, NGX_HTTP_BAD_REQUEST, msg);
        return NGX_DECLINED;
    }

    ctx->api.body = j;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_ak_dispatch(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx)
{
    ngx_str_t                     image;
    sbx_ak_create_t               cr;
    char                          err[SBX_AK_ERR_MAX];

    ngx_http_sandbox_ak_args(r, ctx);

    switch (ctx->route.op) {

    case SBX_AK_LIST:
        return ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_LIST],
                     ngx_http_sandbox_ak_listed);

    case SBX_AK_GET:
        ngx_http_sandbox_api_arg(&ctx->api, (char *) ctx->name.data,
                                 ctx->name.len);
        return ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_GET],
                     ngx_http_sandbox_ak_got);

    case SBX_AK_DELETE:
        ngx_http_sandbox_api_arg(&ctx->api, (char *) ctx->name.data,
                                 ctx->name.len);
        return ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_DELETE],
                     ngx_http_sandbox_ak_done);

    case SBX_AK_STOP:
    case SBX_AK_START:
        ngx_http_sandbox_api_arg(&ctx->api, (char *) ctx->name.data,
                                 ctx->name.len);
        if (ctx->route.op == SBX_AK_STOP) {
            ngx_http_sandbox_api_arg(&ctx->api, "pause", 5);
        } else {
            ngx_http_sandbox_api_arg(&ctx->api, "resume", 6);
        }

        return ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_STATE],
                     ngx_http_sandbox_ak_done);

    case SBX_AK_LOGS:
        ngx_http_sandbox_api_arg(&ctx->api, "", 0);     /* since */
        ngx_http_sandbox_api_arg(&ctx->api, "", 0);     /* the caller */
        ngx_http_sandbox_api_arg(&ctx->api, "", 0);     /* any action */
        ngx_http_sandbox_api_arg(&ctx->api, "1000", 4);
        return ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_ME_AUDIT],
                     ngx_http_sandbox_ak_logs);

    case SBX_AK_CREATE:
        if (sbx_ak_create(ctx->api.body, &cr, err) != 0) {
            return ngx_http_sandbox_ak_fail(r, NGX_HTTP_BAD_REQUEST, err);
        }

        ctx->name.data = (u_char *) cr.name.data;
        ctx->name.len = cr.name.len;
        image.data = (u_char *) cr.image.data;
        image.len = cr.image.len;

        ngx_http_sandbox_ak_create_args(r, ctx, &image);

        return ngx_http_sandbox_ak_script(r, ctx,
                     &ngx_http_sandbox_api_scripts[SBX_LUA_SANDBOX_CREATE],
                     ngx_http_sandbox_ak_created);

    case SBX_AK_EXEC:
        if (sbx_ak_command(ctx->api.body, 0, &ctx->cmd, err) != 0) {
            return ngx_http_sandbox_ak_fail(r, NGX_HTTP_BAD_REQUEST, err);
        }

        ngx_http_sandbox_ak_exec(r, ctx);
        return NGX_DONE;

    case SBX_AK_FILE_PUT:
        if (sbx_ak_file(ctx->api.body, &ctx->file, err) != 0) {
            return ngx_http_sandbox_ak_fail(r, NGX_HTTP_BAD_REQUEST, err);
        }

        /* fall through */

    case SBX_AK_FILE_GET:
    case SBX_AK_FILE_DELETE:
        ngx_http_sandbox_ak_files(r, ctx);
        return NGX_DONE;

    case SBX_AK_RUN:
    case SBX_AK_RUN_STREAM:
        if (sbx_ak_command(ctx->api.body, 1, &ctx->cmd, err) != 0) {
            return ngx_http_sandbox_ak_fail(r, NGX_HTTP_BAD_REQUEST, err);
        }

        ngx_http_sandbox_ak_run(r, ctx);
        return NGX_DONE;

    default:
        return ngx_http_sandbox_ak_fail(r, NGX_HTTP_NOT_FOUND, "Not found");
    }
}


/* the user scripts' first arguments: the time, the caller's key hash */

void
ngx_http_sandbox_ak_args(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx)
{
    ngx_http_sandbox_api_ctx_t  *api;

    api = &ctx->api;
    api->argc = 0;

    ngx_http_sandbox_api_arg(api, (char *) api->now,
                             ngx_sprintf(api->now, "%T", ngx_time())
                             - api->now);
    ngx_http_sandbox_api_arg(api, (char *) api->caller,
                             NGX_HTTP_SANDBOX_SHA256_HEX_LEN);
}


/*
 * as POST /api/sandboxes: name, image, the namespace prefix, the quota,
 * the creation rate
 */

void
ngx_http_sandbox_ak_create_args(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_str_t *image)
{
    ngx_http_sandbox_api_ctx_t   *api;
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);
    api = &ctx->api;

    ngx_http_sandbox_api_arg(api, (char *) ctx->name.data, ctx->name.len);

    if (image->len == 0) {
        *image = slcf->default_image;
    }

    ngx_http_sandbox_api_arg(api, (char *) image->data, image->len);
    ngx_http_sandbox_api_arg(api, (char *) slcf->namespace_prefix.data,
                             slcf->namespace_prefix.len);
    ngx_http_sandbox_api_arg(api, (char *) api->expires,
                             ngx_sprintf(api->expires, "%ui", slcf->quota)
                             - api->expires);
    ngx_http_sandbox_api_arg(api, "prefix", 6);
    ngx_http_sandbox_api_rate_args(api, &slcf->create_rate);
}


/*
 * Runs a script with the arguments gathered so far and the audit's (the
 * keys it declares made from them, as the management API does); the
 * answer goes to next().  NGX_DONE, or the status of an answer made.
 * Without next, the command is fire-and-forget: NGX_OK or NGX_ERROR.
 */

ngx_int_t
ngx_http_sandbox_ak_script(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_http_sandbox_api_script_t *s,
    ngx_http_sandbox_ak_next_pt next)
{
    ngx_uint_t   argc;
    const char  *argv[NGX_HTTP_SANDBOX_API_ARGS + NGX_HTTP_SANDBOX_API_KEYS
                      + 1];
    size_t       argvlen[NGX_HTTP_SANDBOX_API_ARGS
                         + NGX_HTTP_SANDBOX_API_KEYS + 1];
    u_char       numkeys[NGX_INT_T_LEN];

    ngx_http_sandbox_api_audit_args(r, &ctx->api);

    argc = ngx_http_sandbox_api_keys(r, &ctx->api, s, argv, argvlen, numkeys);

    if (next == NULL) {
        return (argc && ngx_http_sandbox_script_run(
                            ngx_http_sandbox_worker_redis, &s->script, NULL,
                            argc, argv, argvlen, NULL, NULL, NULL) == NGX_OK)
               ? NGX_OK : NGX_ERROR;
    }

    ctx->next = next;
    ctx->api.op = NULL;

    if (argc == 0
        || ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                       &s->script, r->pool, argc, argv,
                                       argvlen, ngx_http_sandbox_ak_reply, r,
                                       &ctx->api.op)
           != NGX_OK)
    {
        ctx->api.op = NULL;
    }

    if (ctx->api.op == NULL) {
        return ngx_http_sandbox_ak_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "Sandbox registry unavailable");
    }

    return NGX_DONE;
}


static void
ngx_http_sandbox_ak_reply(void *data, redisReply *reply)
{
    ngx_http_request_t *r = data;

    json_t                     *j;
    ngx_int_t                   status;
    ngx_connection_t           *c;
    json_error_t                err;
    ngx_http_sandbox_ak_ctx_t  *ctx;

    c = r->connection;
    ctx = ngx_http_sandbox_ak_ctx(r);
    ctx->api.op = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        if (reply != NULL) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "sandbox agentkernel: script failed");
        }

        ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r,
                                       NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "Sandbox registry unavailable"));
        ngx_http_run_posted_requests(c);
        return;
    }

    status = reply->element[0]->integer;

    /* the caller's name, for $sandbox_user and the sandbox's owner */

    if (reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_STRING
        && ctx->api.user.len == 0)
    {
        ctx->api.user.data = ngx_pnalloc(r->pool, reply->element[2]->len);

        if (ctx->api.user.data) {
            ctx->api.user.len = reply->element[2]->len;
            ngx_memcpy(ctx->api.user.data, reply->element[2]->str,
                       ctx->api.user.len);
        }
    }

    ctx->user = ctx->api.user;

    j = json_loadb(reply->element[1]->str, reply->element[1]->len,
                   JSON_DECODE_ANY, &err);

    if (j == NULL) {
        ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_fail(r,
                                       NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "Unexpected registry answer"));
        ngx_http_run_posted_requests(c);
        return;
    }

    ctx->next(r, ctx, status, j);
    json_decref(j);

    ngx_http_run_posted_requests(c);
}


/* the last answer of a request suspended by NGX_DONE */

void
ngx_http_sandbox_ak_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_sandbox_ak_ctx_t  *ctx;

    ctx = ngx_http_sandbox_ak_ctx(r);

    if (ctx->finished) {
        return;
    }

    ctx->finished = 1;

    ngx_http_finalize_request(r, rc);
}


ngx_int_t
ngx_http_sandbox_ak_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    json_t  *body;

    body = json_pack("{s:b, s:s}", "success", 0, "error", message);
    if (body == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_sandbox_send_json(r, status, body);
}


/* takes data's reference */

ngx_int_t
ngx_http_sandbox_ak_ok(ngx_http_request_t *r, ngx_uint_t status,
    json_t *data)
{
    json_t  *body;

    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = json_pack("{s:b, s:o}", "success", 1, "data", data);
    if (body == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_sandbox_send_json(r, status, body);
}
