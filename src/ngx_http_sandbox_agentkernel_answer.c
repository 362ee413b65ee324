
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The agentkernel API's answers made of the management API's scripts:
 * sandboxes as agentkernel describes them (name, uuid, status, backend),
 * the scripts' refusals in its words and statuses, and a sandbox's audit
 * records.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_agentkernel.h"


static json_t *ngx_http_sandbox_ak_info(ngx_http_sandbox_ak_ctx_t *ctx,
    json_t *s);


/* a script's refusal in agentkernel's words and statuses, not sent */

ngx_int_t
ngx_http_sandbox_ak_script_status(ngx_http_request_t *r, ngx_int_t status,
    json_t *data, const char **msg)
{
    *msg = json_string_value(json_object_get(data, "message"));

    if (*msg == NULL) {
        *msg = json_string_value(json_object_get(data, "error"));
    }

    if (*msg == NULL) {
        *msg = "Request refused";
    }

    /* another user's sandbox is a missing one */

    if (status == NGX_HTTP_NOT_FOUND
        || (status == NGX_HTTP_FORBIDDEN
            && ngx_strcmp(*msg, "You do not have access to this sandbox")
               == 0))
    {
        *msg = "Sandbox not found";
        return NGX_HTTP_NOT_FOUND;
    }

    if (status < 400 || status > 599) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return status;
}


ngx_int_t
ngx_http_sandbox_ak_script_error(ngx_http_request_t *r, ngx_int_t status,
    json_t *data)
{
    const char  *msg;

    status = ngx_http_sandbox_ak_script_status(r, status, data, &msg);

    if (status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_sandbox_www_authenticate(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sandbox_ak_fail(r, status, msg);
}


/*
 * agentkernel's uuid: the registry has none, so one is made of the name
 * and creation time, stable for the sandbox's life and new for a sandbox
 * made again under the same name
 */

void
ngx_http_sandbox_ak_uuid(ngx_http_sandbox_ak_ctx_t *ctx, ngx_str_t *name,
    json_t *created)
{
    u_char  *p, md[NGX_HTTP_SANDBOX_SHA256_LEN], hex[32];
    u_char   src[512];

    p = ngx_snprintf(src, sizeof(src), "%V:%V:%L", &ctx->user, name,
                     (int64_t) (json_is_number(created)
                                ? json_number_value(created) : 0));

    (void) ngx_http_sandbox_sha256(md, src, p - src);

    md[6] = (md[6] & 0x0f) | 0x50;
    md[8] = (md[8] & 0x3f) | 0x80;

    ngx_hex_dump(hex, md, 16);

    ngx_sprintf(ctx->uuid, "%*s-%*s-%*s-%*s-%*s", (size_t) 8, hex, (size_t) 4,
                hex + 8, (size_t) 4, hex + 12, (size_t) 4, hex + 16,
                (size_t) 12, hex + 20);
}


/* a sandbox of the registry as agentkernel describes one */

static json_t *
ngx_http_sandbox_ak_info(ngx_http_sandbox_ak_ctx_t *ctx, json_t *s)
{
    json_t      *info, *created, *image;
    ngx_str_t    name;
    const char  *status;

    name.data = (u_char *) json_string_value(json_object_get(s, "name"));
    name.len = name.data ? ngx_strlen(name.data) : 0;

    if (name.data == NULL) {
        return NULL;
    }

    created = json_object_get(s, "createdAt");
    ngx_http_sandbox_ak_uuid(ctx, &name, created);

    status = json_is_true(json_object_get(s, "ready")) ? "running"
                                                        : "stopped";

    info = json_pack("{s:s, s:s#, s:s, s:s}",
                     "name", (char *) name.data,
                     "uuid", (char *) ctx->uuid, (size_t) 36,
                     "status", status,
                     "backend", NGX_HTTP_SANDBOX_AK_BACKEND);
    if (info == NULL) {
        return NULL;
    }

    image = json_object_get(s, "image");

    if (json_is_string(image)) {
        json_object_set(info, "image", image);
    }

    if (json_is_number(created) && json_number_value(created) > 0) {
        json_object_set_new(info, "created_at",
                 ngx_http_sandbox_api_iso((time_t) json_number_value(created)));
    }

    return info;
}


void
ngx_http_sandbox_ak_listed(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data)
{
    size_t   i;
    json_t  *list, *s, *info;

    if (status != NGX_HTTP_OK) {
        ngx_http_sandbox_ak_finish(r,
                             ngx_http_sandbox_ak_script_error(r, status, data));
        return;
    }

    list = json_array();
    if (list == NULL) {
        ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    s = json_object_get(data, "sandboxes");

    json_array_foreach(s, i, info) {
        json_array_append_new(list, ngx_http_sandbox_ak_info(ctx, info));
    }

    ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK,
                                                         list));
}


void
ngx_http_sandbox_ak_got(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx,
    ngx_int_t status, json_t *data)
{
    json_t  *info;

    if (status != NGX_HTTP_OK) {
        ngx_http_sandbox_ak_finish(r,
                             ngx_http_sandbox_ak_script_error(r, status, data));
        return;
    }

    info = ngx_http_sandbox_ak_info(ctx, data);

    if (info && json_is_true(json_object_get(data, "suspended"))) {
        json_object_set_new(info, "status", json_string("stopped"));
    }

    ngx_http_sandbox_ak_finish(r, info
                                  ? ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK, info)
                                  : NGX_HTTP_INTERNAL_SERVER_ERROR);
}


/* created and queued: answered once it is usable */

void
ngx_http_sandbox_ak_created(ngx_http_request_t *r,
    ngx_http_sandbox_ak_ctx_t *ctx, ngx_int_t status, json_t *data)
{
    if (status != NGX_HTTP_CREATED) {
        ngx_http_sandbox_ak_finish(r,
                             ngx_http_sandbox_ak_script_error(r, status, data));
        return;
    }

    ngx_http_sandbox_ak_hold(r, ctx);
}


void
ngx_http_sandbox_ak_done(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx,
    ngx_int_t status, json_t *data)
{
    const char  *what;

    if (status != NGX_HTTP_OK) {
        ngx_http_sandbox_ak_finish(r,
                             ngx_http_sandbox_ak_script_error(r, status, data));
        return;
    }

    switch (ctx->route.op) {

    case SBX_AK_STOP:
        what = "Sandbox stopped";
        break;

    case SBX_AK_START:
        what = "Sandbox started";
        break;

    default:
        what = "Sandbox removed";
    }

    ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK,
                                                         json_string(what)));
}


/* the caller's audit records of this sandbox, oldest first */

void
ngx_http_sandbox_ak_logs(ngx_http_request_t *r, ngx_http_sandbox_ak_ctx_t *ctx,
    ngx_int_t status, json_t *data)
{
    u_char   *p, *target;
    size_t    i, tlen;
    json_t   *list, *rec, *tgt, *e, *created;

    if (status != NGX_HTTP_OK) {
        ngx_http_sandbox_ak_finish(r,
                             ngx_http_sandbox_ak_script_error(r, status, data));
        return;
    }

    target = ngx_pnalloc(r->pool, ctx->user.len + 1 + ctx->name.len);
    list = json_array();

    if (target == NULL || list == NULL) {
        json_decref(list);
        ngx_http_sandbox_ak_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(target, ctx->user.data, ctx->user.len);
    *p++ = '/';
    p = ngx_cpymem(p, ctx->name.data, ctx->name.len);
    tlen = p - target;

    json_array_foreach(json_object_get(data, "records"), i, rec) {
        tgt = json_object_get(rec, "target");

        if (!json_is_string(tgt) || json_string_length(tgt) != tlen
            || ngx_memcmp(json_string_value(tgt), target, tlen) != 0)
        {
            continue;
        }

        created = json_object_get(rec, "created_at");

        e = json_pack("{s:O, s:O, s:O, s:O, s:O}",
                      "action", json_object_get(rec, "action"),
                      "result", json_object_get(rec, "result"),
                      "status", json_object_get(rec, "status"),
                      "key_id", json_object_get(rec, "key_id"),
                      "request_id", json_object_get(rec, "request_id"));

        if (e && json_is_number(created)) {
            json_object_set_new(e, "timestamp",
                 ngx_http_sandbox_api_iso((time_t) json_number_value(created)));
        }

        json_array_append_new(list, e);
    }

    ngx_http_sandbox_ak_finish(r, ngx_http_sandbox_ak_ok(r, NGX_HTTP_OK,
                                                         list));
}
