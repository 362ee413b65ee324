
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management API's operation, once prepared: its Redis script is
 * run, and the script's {status, JSON[, user[, rate]]} reply becomes the
 * HTTP answer: epoch times turned into ISO-8601 as the original sent
 * them, empty lists put right, a new key shown once, a rate-limited
 * creation's headers.  /health answers even when Redis cannot be asked.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_api.h"


static void ngx_http_sandbox_api_reply(void *data, redisReply *reply);
static ngx_int_t ngx_http_sandbox_api_answer(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_sandbox_api_copy(ngx_http_request_t *r,
    ngx_str_t *dst, redisReply *src);
static void ngx_http_sandbox_api_fixup(json_t *j);



ngx_int_t
ngx_http_sandbox_api_eval(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_uint_t                      argc;
    ngx_http_sandbox_api_script_t  *s;
    const char                     *argv[NGX_HTTP_SANDBOX_API_ARGS
                                         + NGX_HTTP_SANDBOX_API_KEYS + 1];
    size_t                          argvlen[NGX_HTTP_SANDBOX_API_ARGS
                                            + NGX_HTTP_SANDBOX_API_KEYS + 1];
    u_char                          numkeys[NGX_INT_T_LEN];

    s = &ngx_http_sandbox_api_scripts[ctx->ep->script];

    argc = ngx_http_sandbox_api_keys(r, ctx, s, argv, argvlen, numkeys);
    if (argc == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                    &s->script, r->pool, argc, argv, argvlen,
                                    ngx_http_sandbox_api_reply, r, &ctx->op)
        != NGX_OK)
    {
        ctx->op = NULL;
    }

    if (ctx->op == NULL) {
        if (ctx->ep->script == SBX_LUA_HEALTH) {
            return ngx_http_sandbox_api_answer(r, ctx, NULL);
        }

        return ngx_http_sandbox_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "Service Unavailable",
                                           "Sandbox registry unavailable");
    }

    return NGX_DONE;
}


static void
ngx_http_sandbox_api_reply(void *data, redisReply *reply)
{
    ngx_http_request_t *r = data;

    ngx_connection_t            *c;
    ngx_http_sandbox_api_ctx_t  *ctx;

    c = r->connection;
    ctx = ngx_http_sandbox_api_ctx(r);
    ctx->op = NULL;

    ngx_http_finalize_request(r, ngx_http_sandbox_api_answer(r, ctx, reply));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_sandbox_api_answer(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, redisReply *reply)
{
    json_t        *j;
    ngx_int_t      status;
    json_error_t   err;

    if (ctx->ep->script == SBX_LUA_HEALTH) {
        return ngx_http_sandbox_api_health(r, reply);
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 2 || reply->elements > 4
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        /* a NULL reply is an outage, which the Redis client logs once */

        if (reply != NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sandbox api: script failed");
        }

        return ngx_http_sandbox_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "Service Unavailable",
                                           "Sandbox registry unavailable");
    }

    status = reply->element[0]->integer;

    if (reply->elements >= 3
        && reply->element[2]->type == REDIS_REPLY_STRING
        && ngx_http_sandbox_api_copy(r, &ctx->user, reply->element[2])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    j = json_loadb(reply->element[1]->str, reply->element[1]->len, 0, &err);

    if (j == NULL || status < 200 || status > 599) {
        json_decref(j);
        return ngx_http_sandbox_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           "Internal server error",
                                           "Unexpected registry answer");
    }

    ngx_http_sandbox_api_fixup(j);

    /* a new key is shown once, here, and never stored in clear */

    if (ctx->new_key && status == NGX_HTTP_CREATED) {
        json_object_set_new(j, "message",
                            json_string("API key created successfully. Save "
                                        "this key - it will not be shown "
                                        "again."));
        json_object_set_new(j, "api_key",
                            json_stringn((char *) ctx->key, SBX_KEY_LEN));
        ngx_explicit_memzero(ctx->key, SBX_KEY_LEN);
    }

    if (status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_sandbox_www_authenticate(r) != NGX_OK)
    {
        json_decref(j);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a rate-limited creation: "limit remaining reset [retry]" */

    if (reply->elements == 4
        && reply->element[3]->type == REDIS_REPLY_STRING
        && ngx_http_sandbox_guard_rate_headers(r,
                                   (u_char *) reply->element[3]->str,
                                   reply->element[3]->len)
           != NGX_OK)
    {
        json_decref(j);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sandbox_send_json(r, status, j);
}


static ngx_int_t
ngx_http_sandbox_api_copy(ngx_http_request_t *r, ngx_str_t *dst,
    redisReply *src)
{
    dst->data = ngx_pnalloc(r->pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    dst->len = ngx_cpymem(dst->data, src->str, src->len) - dst->data;

    return NGX_OK;
}


/* epoch seconds to ISO-8601 for the fields the original sent as dates */

static void
ngx_http_sandbox_api_fixup(json_t *j)
{
    size_t       i;
    json_t      *v, *iso;
    const char  *k;

    if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            ngx_http_sandbox_api_fixup(v);
        }

        return;
    }

    if (!json_is_object(j)) {
        return;
    }

    json_object_foreach(j, k, v) {

        if (ngx_strcmp(k, "created_at") == 0
            || ngx_strcmp(k, "updated_at") == 0
            || ngx_strcmp(k, "expires_at") == 0
            || ngx_strcmp(k, "last_used_at") == 0
            || ngx_strcmp(k, "createdAt") == 0
            || ngx_strcmp(k, "lastActivityAt") == 0)
        {
            if (json_is_number(v)) {
                iso = json_number_value(v) > 0
                      ? ngx_http_sandbox_api_iso((time_t) json_number_value(v))
                      : json_null();
                json_object_set_new(j, k, iso);
            }

            continue;
        }

        /* cjson cannot tell an empty list from an empty object */

        if ((ngx_strcmp(k, "users") == 0 || ngx_strcmp(k, "api_keys") == 0
             || ngx_strcmp(k, "sandboxes") == 0
             || ngx_strcmp(k, "records") == 0)
            && json_is_object(v) && json_object_size(v) == 0)
        {
            json_object_set_new(j, k, json_array());
            continue;
        }

        ngx_http_sandbox_api_fixup(v);
    }
}


json_t *
ngx_http_sandbox_api_iso(time_t t)
{
    ngx_tm_t  tm;
    u_char    buf[sizeof("1970-01-01T00:00:00.000Z")];

    ngx_gmtime(t, &tm);

    ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.000Z",
                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return json_stringn((char *) buf, sizeof(buf) - 1);
}
