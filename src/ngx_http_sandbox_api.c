
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management and admin API of the original proxy, served by nginx:
 * users, API keys and sandboxes, on Redis (docs/api.md).
 *
 * A request is matched against a table of endpoints, its JSON body read
 * here and checked by the endpoint's preparer (ngx_http_sandbox_api_
 * prepare.c), and the operation is then one Redis script (in
 * ngx_http_sandbox_api_lua.c) that authenticates the caller and does all
 * of its reads and writes atomically.  The script's call and its answer
 * are in ngx_http_sandbox_api_answer.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_api.h"
#include "sandbox_body.h"


static ngx_int_t ngx_http_sandbox_api_route(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, ngx_http_sandbox_api_endpoint_t *eps);
static void ngx_http_sandbox_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sandbox_api_run(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_parse_body(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_authenticate(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static void ngx_http_sandbox_api_cleanup(void *data);
static ngx_int_t ngx_http_sandbox_api_not_found(ngx_http_request_t *r);


#define SBX_GET     NGX_HTTP_GET
#define SBX_POST    NGX_HTTP_POST
#define SBX_PUT     NGX_HTTP_PUT
#define SBX_DELETE  NGX_HTTP_DELETE


static ngx_http_sandbox_api_endpoint_t  ngx_http_sandbox_api_endpoints[] = {

    { SBX_GET, "/health", NGX_HTTP_SANDBOX_API_PUBLIC, SBX_LUA_HEALTH,
      ngx_http_sandbox_api_prep_none },

    { SBX_POST, "/api/admin/users", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_USER_CREATE, ngx_http_sandbox_api_prep_user_create },
    { SBX_GET, "/api/admin/users", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_USER_LIST, ngx_http_sandbox_api_prep_user_list },
    { SBX_GET, "/api/admin/users/:", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_USER_GET, ngx_http_sandbox_api_prep_param },
    { SBX_PUT, "/api/admin/users/:", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_USER_UPDATE, ngx_http_sandbox_api_prep_user_update },
    { SBX_DELETE, "/api/admin/users/:", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_USER_DELETE, ngx_http_sandbox_api_prep_param },
    { SBX_POST, "/api/admin/users/:/apikeys", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_ADMIN_KEY_CREATE, ngx_http_sandbox_api_prep_key_create },
    { SBX_GET, "/api/admin/users/:/apikeys", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_ADMIN_KEY_LIST, ngx_http_sandbox_api_prep_param },
    { SBX_DELETE, "/api/admin/apikeys/:", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_ADMIN_KEY_REVOKE, ngx_http_sandbox_api_prep_param },
    { SBX_PUT, "/api/admin/apikeys/:", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_ADMIN_KEY_UPDATE, ngx_http_sandbox_api_prep_key_update },
    { SBX_GET, "/api/admin/audit", NGX_HTTP_SANDBOX_API_ADMIN,
      SBX_LUA_AUDIT, ngx_http_sandbox_api_prep_audit },

    { SBX_GET, "/api/me", NGX_HTTP_SANDBOX_API_USER, SBX_LUA_ME,
      ngx_http_sandbox_api_prep_none },
    { SBX_POST, "/api/me/apikeys", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_KEY_CREATE, ngx_http_sandbox_api_prep_key_create },
    { SBX_GET, "/api/me/apikeys", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_KEY_LIST, ngx_http_sandbox_api_prep_none },
    { SBX_DELETE, "/api/me/apikeys/:", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_KEY_REVOKE, ngx_http_sandbox_api_prep_param },
    { SBX_GET, "/api/me/audit", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_AUDIT, ngx_http_sandbox_api_prep_audit },

    { SBX_GET, "/api/sandboxes", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_SANDBOX_LIST, ngx_http_sandbox_api_prep_none },
    { SBX_POST, "/api/sandboxes", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_SANDBOX_CREATE, ngx_http_sandbox_api_prep_sandbox_create },
    { SBX_GET, "/api/sandboxes/:", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_SANDBOX_GET, ngx_http_sandbox_api_prep_sandbox },
    { SBX_DELETE, "/api/sandboxes/:", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_SANDBOX_DELETE, ngx_http_sandbox_api_prep_sandbox },
    { SBX_POST, "/api/sandboxes/:/pause", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_SANDBOX_STATE, ngx_http_sandbox_api_prep_state },
    { SBX_POST, "/api/sandboxes/:/resume", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_SANDBOX_STATE, ngx_http_sandbox_api_prep_state },

    { 0, NULL, 0, 0, NULL }
};


/* the first, unauthenticated version of the API (seed 000) */

static ngx_http_sandbox_api_endpoint_t
    ngx_http_sandbox_api_anon_endpoints[] =
{

    { SBX_GET, "/health", NGX_HTTP_SANDBOX_API_PUBLIC, SBX_LUA_HEALTH,
      ngx_http_sandbox_api_prep_none },
    { SBX_GET, "/sandboxes", NGX_HTTP_SANDBOX_API_PUBLIC,
      SBX_LUA_ALL_SANDBOXES, ngx_http_sandbox_api_prep_none },
    { SBX_GET, "/api/sandboxes", NGX_HTTP_SANDBOX_API_PUBLIC,
      SBX_LUA_ALL_SANDBOXES, ngx_http_sandbox_api_prep_none },
    { SBX_POST, "/api/sandboxes", NGX_HTTP_SANDBOX_API_ANON,
      SBX_LUA_ANON_SANDBOX_CREATE, ngx_http_sandbox_api_prep_sandbox_create },
    { SBX_GET, "/api/sandboxes/:/:", NGX_HTTP_SANDBOX_API_ANON,
      SBX_LUA_ANON_SANDBOX_GET, ngx_http_sandbox_api_prep_anon },
    { SBX_DELETE, "/api/sandboxes/:/:", NGX_HTTP_SANDBOX_API_ANON,
      SBX_LUA_ANON_SANDBOX_DELETE, ngx_http_sandbox_api_prep_anon },
    { SBX_POST, "/api/sandboxes/:/:/pause", NGX_HTTP_SANDBOX_API_ANON,
      SBX_LUA_ANON_SANDBOX_STATE, ngx_http_sandbox_api_prep_anon },
    { SBX_POST, "/api/sandboxes/:/:/resume", NGX_HTTP_SANDBOX_API_ANON,
      SBX_LUA_ANON_SANDBOX_STATE, ngx_http_sandbox_api_prep_anon },

    { 0, NULL, 0, 0, NULL }
};


ngx_int_t
ngx_http_sandbox_api_handler(ngx_http_request_t *r)
{
    size_t                        max;
    ngx_int_t                     rc;
    ngx_http_cleanup_t           *cln;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_sandbox_api_ctx_t   *ctx;
    ngx_http_sandbox_loc_conf_t  *slcf;

    ctx = ngx_http_sandbox_create_ctx(r, NGX_HTTP_SANDBOX_CTX_API,
                                      sizeof(ngx_http_sandbox_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    if (ngx_http_sandbox_api_route(r, ctx, slcf->auth
                                   ? ngx_http_sandbox_api_endpoints
                                   : ngx_http_sandbox_api_anon_endpoints)
        != NGX_OK)
    {
        return ngx_http_sandbox_api_not_found(r);
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_sandbox_api_cleanup;
    cln->data = ctx;

    if (r->method != NGX_HTTP_POST && r->method != NGX_HTTP_PUT) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_sandbox_api_run(r, ctx);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
    }

    /* bodies are small JSON documents, kept in memory and bounded */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    max = clcf->client_body_buffer_size;

    if (r->headers_in.content_length_n > (off_t) max) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_http_sandbox_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           "Payload Too Large",
                                           "Request body too large");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_sandbox_api_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


ngx_str_t *
ngx_http_sandbox_api_user(ngx_http_request_t *r)
{
    ngx_http_sandbox_api_ctx_t  *ctx;

    ctx = ngx_http_sandbox_api_ctx(r);

    return ctx ? &ctx->user : NULL;
}


static void
ngx_http_sandbox_api_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_sandbox_api_ctx_t  *ctx;

    ctx = ngx_http_sandbox_api_ctx(r);

    rc = ngx_http_sandbox_api_parse_body(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_sandbox_api_run(r, ctx);

    } else if (rc == NGX_ABORT) {
        rc = ctx->rc;
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Path segments against the table: ":" matches one segment, kept as a
 * parameter.  A trailing slash is accepted, and literal segments compare
 * case-insensitively, as the original's router did.
 */

static ngx_int_t
ngx_http_sandbox_api_route(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, ngx_http_sandbox_api_endpoint_t *eps)
{
    u_char                           *p, *last, *seg;
    size_t                            plen;
    ngx_uint_t                        n;
    const char                       *pat, *pend;
    ngx_http_sandbox_api_endpoint_t  *ep;

    last = r->uri.data + r->uri.len;

    if (r->uri.len > 1 && last[-1] == '/') {
        last--;
    }

    for (ep = eps; ep->path; ep++) {

        p = r->uri.data;
        pat = ep->path;
        n = 0;

        for ( ;; ) {
            if (*pat == '\0' || p >= last) {
                break;
            }

            /* both at a "/": step over it, take one segment of each */

            if (*pat != '/' || *p != '/') {
                break;
            }

            pat++;
            p++;

            seg = p;
            while (p < last && *p != '/') {
                p++;
            }

            pend = pat;
            while (*pend && *pend != '/') {
                pend++;
            }

            plen = pend - pat;

            if (plen == 1 && *pat == ':') {
                if (p == seg || n == NGX_HTTP_SANDBOX_API_PARAMS) {
                    break;
                }

                ctx->params[n].data = seg;
                ctx->params[n].len = p - seg;
                n++;

            } else if ((size_t) (p - seg) != plen
                       || ngx_strncasecmp(seg, (u_char *) pat, plen) != 0)
            {
                break;
            }

            pat = pend;
        }

        if (*pat != '\0' || p != last) {
            continue;
        }

        if (ep->method == r->method
            || (ep->method == NGX_HTTP_GET && r->method == NGX_HTTP_HEAD))
        {
            ctx->ep = ep;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The request body in one piece: NGX_OK with *data and *len (len 0: no
 * body), NGX_DECLINED when it is past client_body_buffer_size, NGX_ERROR.
 * A body past that size went to a file: too large.  One kept in memory
 * may still come in several buffers (a chunked body has one per chunk),
 * joined here.
 */

ngx_int_t
ngx_http_sandbox_api_body(ngx_http_request_t *r, u_char **data, size_t *len)
{
    u_char                    *p;
    size_t                     n;
    ngx_chain_t               *cl;
    ngx_http_core_loc_conf_t  *clcf;

    *len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    n = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file || r->request_body->temp_file) {
            return NGX_DECLINED;
        }

        n += cl->buf->last - cl->buf->pos;
    }

    if (n > clcf->client_body_buffer_size) {
        return NGX_DECLINED;
    }

    if (n == 0) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        *data = cl->buf->pos;

    } else {
        *data = ngx_pnalloc(r->pool, n);
        if (*data == NULL) {
            return NGX_ERROR;
        }

        for (p = *data; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    *len = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_parse_body(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    u_char     *data;
    size_t      len;
    json_t     *j;
    ngx_int_t   rc;
    u_char      msg[SBX_BODY_ERR_MAX];

    rc = ngx_http_sandbox_api_body(r, &data, &len);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_sandbox_api_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           "Payload Too Large",
                                           "Request body too large");
    }

    if (len == 0) {
        return NGX_OK;
    }

    j = sbx_body_load((const char *) data, len, (char *) msg);

    if (j == NULL) {
        return ngx_http_sandbox_api_bad(r, (const char *) msg);
    }

    ctx->body = j;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_run(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_sandbox_api_authenticate(r, ctx);
    if (rc != NGX_OK) {
        return rc == NGX_ABORT ? ctx->rc : rc;
    }

    ctx->argc = 0;

    ngx_http_sandbox_api_arg(ctx, (char *) ctx->now,
                             ngx_sprintf(ctx->now, "%T", ngx_time())
                             - ctx->now);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->caller,
                             ctx->ep->auth == NGX_HTTP_SANDBOX_API_USER
                             ? NGX_HTTP_SANDBOX_SHA256_HEX_LEN : 0);

    rc = ctx->ep->prepare(r, ctx);

    if (rc == NGX_OK) {
        ngx_http_sandbox_api_audit_args(r, ctx);
        rc = ngx_http_sandbox_api_eval(r, ctx);
    }

    return rc == NGX_ABORT ? ctx->rc : rc;
}


static ngx_int_t
ngx_http_sandbox_api_authenticate(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_int_t    rc;
    ngx_str_t    key;
    const char  *error, *message;

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_PUBLIC
        || ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON)
    {
        return NGX_OK;
    }

    /* an address that failed the admin key too often is refused at once */

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_ADMIN
        && ngx_http_sandbox_guard_admin_check(r, &ctx->rc) != NGX_OK)
    {
        return NGX_ABORT;
    }

    rc = ngx_http_sandbox_auth_bearer(r, &key, &message);

    if (rc != NGX_OK) {
        if (ngx_http_sandbox_www_authenticate(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_sandbox_api_error(r, NGX_HTTP_UNAUTHORIZED,
                                           "Unauthorized", message);
    }

    /* a user's key is judged by the operation's script, atomically */

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_USER) {
        ngx_http_sandbox_sha256_hex(ctx->caller, key.data, key.len);
        return NGX_OK;
    }

    rc = ngx_http_sandbox_auth_admin(r, &key, &error, &message);

    if (rc == NGX_HTTP_FORBIDDEN) {
        ngx_http_sandbox_guard_admin_failed(r);
    }

    if (rc != NGX_OK) {
        return ngx_http_sandbox_api_error(r, rc, error, message);
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_api_cleanup(void *data)
{
    ngx_http_sandbox_api_ctx_t *ctx = data;

    if (ctx->op) {
        ngx_http_sandbox_redis_cancel(ctx->op);
        ctx->op = NULL;
    }

    if (ctx->body) {
        json_decref(ctx->body);
        ctx->body = NULL;
    }
}


static ngx_int_t
ngx_http_sandbox_api_not_found(ngx_http_request_t *r)
{
    json_t  *body;
    u_char  *msg, *p;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    msg = ngx_pnalloc(r->pool, sizeof("Route  not found") + r->method_name.len
                               + 1 + r->uri.len);
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(msg, "Route %V %V not found", &r->method_name, &r->uri);

    body = json_pack("{ss ss# s{ss s{ss ss ss ss ss} s{ss ss ss}"
                     " s{ss ss ss ss ss ss} ss}}",
        "error", "Not Found",
        "message", msg, (size_t) (p - msg),
        "endpoints",
            "health", "GET /health",
            "admin",
                "users", "POST|GET /api/admin/users",
                "user", "GET|PUT|DELETE /api/admin/users/:userId",
                "apiKeys", "POST /api/admin/users/:userId/apikeys",
                "listKeys", "GET /api/admin/users/:userId/apikeys",
                "revokeKey", "DELETE /api/admin/apikeys/:keyId",
            "user",
                "me", "GET /api/me",
                "apiKeys", "POST|GET /api/me/apikeys",
                "revokeKey", "DELETE /api/me/apikeys/:keyId",
            "sandboxes",
                "list", "GET /api/sandboxes",
                "create", "POST /api/sandboxes",
                "get", "GET /api/sandboxes/:name",
                "delete", "DELETE /api/sandboxes/:name",
                "pause", "POST /api/sandboxes/:name/pause",
                "resume", "POST /api/sandboxes/:name/resume",
            "proxy", "ALL /proxy/:sandboxname/*");

    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sandbox_send_json(r, NGX_HTTP_NOT_FOUND, body);
}


/* arguments */

void
ngx_http_sandbox_api_arg(ngx_http_sandbox_api_ctx_t *ctx, const char *s,
    size_t len)
{
    if (ctx->argc < NGX_HTTP_SANDBOX_API_ARGS) {
        ctx->argv[ctx->argc] = s;
        ctx->argvlen[ctx->argc] = len;
        ctx->argc++;
    }
}


/*
 * An answer made before any Redis command: the send's result is kept for
 * the final ngx_http_finalize_request(), and NGX_ABORT tells the callers
 * that the request has been answered.
 */

ngx_int_t
ngx_http_sandbox_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, const char *message)
{
    ngx_http_sandbox_api_ctx_t  *ctx;

    ctx = ngx_http_sandbox_api_ctx(r);
    ctx->rc = ngx_http_sandbox_send_error(r, status, error, message);

    return NGX_ABORT;
}


ngx_int_t
ngx_http_sandbox_api_bad(ngx_http_request_t *r, const char *message)
{
    return ngx_http_sandbox_api_error(r, NGX_HTTP_BAD_REQUEST, "Bad Request",
                                      message);
}
