
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management and admin API of the original proxy, served by nginx:
 * users, API keys and sandboxes, on Redis (docs/api.md).
 *
 * A request is matched against a table of endpoints, its JSON body read
 * and checked here, and the operation is then one Redis script (in
 * ngx_http_sandbox_api_lua.c) that authenticates the caller and does all
 * of its reads and writes atomically.  The script answers {status, JSON};
 * this file turns epoch times into ISO-8601 and sends it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_api.h"
#include "sandbox_path.h"
#include "sandbox_token.h"


#define NGX_HTTP_SANDBOX_API_ARGS    12
#define NGX_HTTP_SANDBOX_API_PARAMS  3

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

    ngx_uint_t                          argc;
    const char                         *argv[NGX_HTTP_SANDBOX_API_ARGS];
    size_t                              argvlen[NGX_HTTP_SANDBOX_API_ARGS];

    u_char                              now[NGX_TIME_T_LEN];
    u_char                              caller[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    u_char                              id[36];
    u_char                              key[SBX_KEY_LEN];
    u_char                              digest[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    u_char                              expires[NGX_TIME_T_LEN];
    ngx_flag_t                          new_key;
    ngx_int_t                           rc;

    ngx_str_t                           user;       /* the caller's */

    void                               *op;
};


#define ngx_http_sandbox_api_ctx(r)                                           \
    ((ngx_http_sandbox_api_ctx_t *)                                           \
         ngx_http_sandbox_get_ctx(r, NGX_HTTP_SANDBOX_CTX_API))


static ngx_int_t ngx_http_sandbox_api_route(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, ngx_http_sandbox_api_endpoint_t *eps);
static void ngx_http_sandbox_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sandbox_api_run(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_parse_body(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_authenticate(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_eval(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static time_t ngx_http_sandbox_api_parse_iso(u_char *p, size_t len);
static void ngx_http_sandbox_api_reply(void *data, redisReply *reply);
static ngx_int_t ngx_http_sandbox_api_copy(ngx_http_request_t *r,
    ngx_str_t *dst, redisReply *src);
static ngx_int_t ngx_http_sandbox_api_answer(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, redisReply *reply);
static void ngx_http_sandbox_api_cleanup(void *data);
static void ngx_http_sandbox_api_fixup(json_t *j);
static json_t *ngx_http_sandbox_api_iso(time_t t);
static json_t *ngx_http_sandbox_api_sync(ngx_http_request_t *r, json_t *raw);
static ngx_int_t ngx_http_sandbox_api_not_found(ngx_http_request_t *r);
static void ngx_http_sandbox_api_arg(ngx_http_sandbox_api_ctx_t *ctx,
    const char *s, size_t len);
static ngx_int_t ngx_http_sandbox_api_string(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, const char *field, ngx_uint_t required,
    const char **value);
static ngx_int_t ngx_http_sandbox_api_name(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, const char *field, const char *what,
    ngx_uint_t required);
static void ngx_http_sandbox_api_uuid(u_char *dst);
static ngx_int_t ngx_http_sandbox_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, const char *message);
static ngx_int_t ngx_http_sandbox_api_bad(ngx_http_request_t *r,
    const char *message);

static ngx_int_t ngx_http_sandbox_api_prep_none(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_param(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_user_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_user_list(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_user_update(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_key_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_label(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, const char *field, const char **value);
static ngx_int_t ngx_http_sandbox_api_prep_sandbox_create(
    ngx_http_request_t *r, ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_sandbox(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_state(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static void ngx_http_sandbox_api_op_arg(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static ngx_int_t ngx_http_sandbox_api_prep_anon(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);


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

    { SBX_GET, "/api/me", NGX_HTTP_SANDBOX_API_USER, SBX_LUA_ME,
      ngx_http_sandbox_api_prep_none },
    { SBX_POST, "/api/me/apikeys", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_KEY_CREATE, ngx_http_sandbox_api_prep_key_create },
    { SBX_GET, "/api/me/apikeys", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_KEY_LIST, ngx_http_sandbox_api_prep_none },
    { SBX_DELETE, "/api/me/apikeys/:", NGX_HTTP_SANDBOX_API_USER,
      SBX_LUA_ME_KEY_REVOKE, ngx_http_sandbox_api_prep_param },

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


static ngx_int_t
ngx_http_sandbox_api_parse_body(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    u_char                    *p, *data;
    size_t                     len;
    json_t                    *j;
    ngx_chain_t               *cl;
    json_error_t               err;
    u_char                     msg[256];
    ngx_http_core_loc_conf_t  *clcf;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    /*
     * A body past client_body_buffer_size went to a file: too large.  One
     * kept in memory may still come in several buffers (a chunked body
     * has one per chunk), joined here.
     */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file || r->request_body->temp_file) {
            len = clcf->client_body_buffer_size + 1;
            break;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    if (len > clcf->client_body_buffer_size) {
        return ngx_http_sandbox_api_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           "Payload Too Large",
                                           "Request body too large");
    }

    if (len == 0) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        data = cl->buf->pos;

    } else {
        data = ngx_pnalloc(r->pool, len);
        if (data == NULL) {
            return NGX_ERROR;
        }

        for (p = data; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    j = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES, &err);

    if (j == NULL) {
        ngx_snprintf(msg, sizeof(msg) - 1, "Invalid JSON: %s%Z", err.text);
        return ngx_http_sandbox_api_bad(r, (const char *) msg);
    }

    if (!json_is_object(j)) {
        json_decref(j);
        return ngx_http_sandbox_api_bad(r,
                                        "Request body must be a JSON object");
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
    ngx_http_sandbox_api_arg(ctx, "EVAL", 4);
    ngx_http_sandbox_api_arg(ctx, "", 0);      /* the script, set below */
    ngx_http_sandbox_api_arg(ctx, "0", 1);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->now,
                             ngx_sprintf(ctx->now, "%T", ngx_time())
                             - ctx->now);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->caller,
                             ctx->ep->auth == NGX_HTTP_SANDBOX_API_USER
                             ? NGX_HTTP_SANDBOX_SHA256_HEX_LEN : 0);

    rc = ctx->ep->prepare(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_sandbox_api_eval(r, ctx);
    }

    return rc == NGX_ABORT ? ctx->rc : rc;
}


static ngx_int_t
ngx_http_sandbox_api_authenticate(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                      key;
    const char                    *message;
    u_char                         digest[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    ngx_http_sandbox_main_conf_t  *smcf;

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_PUBLIC
        || ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON)
    {
        return NGX_OK;
    }

    rc = ngx_http_sandbox_auth_bearer(r, &key, &message);

    if (rc != NGX_OK) {
        if (ngx_http_sandbox_www_authenticate(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_sandbox_api_error(r, NGX_HTTP_UNAUTHORIZED,
                                           "Unauthorized", message);
    }

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_USER) {
        ngx_http_sandbox_sha256_hex(ctx->caller, key.data, key.len);
        return NGX_OK;
    }

    /* the admin key: digests compared in constant time */

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (!smcf->admin_key_set) {
        return ngx_http_sandbox_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           "Internal server error",
                                           "Admin authentication not "
                                           "configured");
    }

    ngx_http_sandbox_sha256_hex(digest, key.data, key.len);

    if (CRYPTO_memcmp(digest, smcf->admin_key_hash, sizeof(digest)) != 0) {
        return ngx_http_sandbox_api_error(r, NGX_HTTP_FORBIDDEN, "Forbidden",
                                           "Invalid admin API key");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_eval(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_http_sandbox_api_script_t  *s;

    s = &ngx_http_sandbox_api_scripts[ctx->ep->script];

    ctx->argv[1] = (const char *) s->text.data;
    ctx->argvlen[1] = s->text.len;

    ctx->op = ngx_http_sandbox_redis_command(ngx_http_sandbox_worker_redis,
                                             ctx->argc, ctx->argv,
                                             ctx->argvlen,
                                             ngx_http_sandbox_api_reply, r);
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


/*
 * sbx:sync as sandbox-syncd wrote it, judged: routes are trustworthy
 * ("synced") while the daemon has listed everything and its view was
 * current within sandbox_sync_max_lag.  The lag is computed here, so a
 * daemon that died, and stopped writing, shows as stale.
 */

static json_t *
ngx_http_sandbox_api_sync(ngx_http_request_t *r, json_t *raw)
{
    json_t                       *sync;
    const char                   *state, *s;
    long long                     synced_at, now, lag;
    ngx_time_t                   *tp;
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    s = json_string_value(json_object_get(raw, "synced_at"));
    synced_at = s ? strtoll(s, NULL, 10) : 0;

    tp = ngx_timeofday();
    now = (long long) tp->sec * 1000 + tp->msec;
    lag = synced_at > 0 ? now - synced_at : -1;

    s = json_string_value(json_object_get(raw, "listed"));

    if (json_object_size(raw) == 0) {
        state = "unknown";

    } else if (s == NULL || ngx_strcmp(s, "1") != 0) {
        state = "listing";

    } else if (synced_at <= 0 || lag > (long long) slcf->sync_max_lag
               || -lag > (long long) slcf->sync_max_lag)
    {
        /* far in the future is a wrong clock, which would hide a stop */
        state = "stale";

    } else {
        state = "synced";
    }

    if (lag < 0 && synced_at > 0) {
        lag = 0;                /* clocks a little apart */
    }

    sync = json_pack("{ss sb sI}", "state", state,
                     "routes_trustworthy", ngx_strcmp(state, "synced") == 0,
                     "lag_ms", (json_int_t) lag);
    if (sync == NULL) {
        return json_null();
    }

    s = json_string_value(json_object_get(raw, "leader"));
    if (s) {
        json_object_set_new(sync, "leader", json_string(s));
    }

    s = json_string_value(json_object_get(raw, "resource_version"));
    if (s) {
        json_object_set_new(sync, "resource_version", json_string(s));
    }

    return sync;
}


static ngx_int_t
ngx_http_sandbox_api_answer(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, redisReply *reply)
{
    json_t        *j, *health;
    ngx_int_t      status;
    json_error_t   err;

    if (ctx->ep->script == SBX_LUA_HEALTH) {

        /* healthy means serving; Redis and sync state are reported */

        j = NULL;

        if (reply && reply->type == REDIS_REPLY_ARRAY
            && reply->elements == 2
            && reply->element[1]->type == REDIS_REPLY_STRING)
        {
            j = json_loadb(reply->element[1]->str, reply->element[1]->len, 0,
                           &err);
        }

        health = json_pack("{ss so ss}", "status", "ok",
                           "timestamp", ngx_http_sandbox_api_iso(ngx_time()),
                           "database", j ? "connected" : "disconnected");
        if (health == NULL) {
            json_decref(j);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (j) {
            json_object_set(health, "sandboxes", json_object_get(j, "routes"));
            json_object_set_new(health, "sync",
                                ngx_http_sandbox_api_sync(r,
                                    json_object_get(j, "sync")));
            json_decref(j);
        }

        return ngx_http_sandbox_send_json(r, NGX_HTTP_OK, health);
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 2 || reply->elements > 3
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

    if (reply->elements == 3
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
            || ngx_strcmp(k, "createdAt") == 0)
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
             || ngx_strcmp(k, "sandboxes") == 0)
            && json_is_object(v) && json_object_size(v) == 0)
        {
            json_object_set_new(j, k, json_array());
            continue;
        }

        ngx_http_sandbox_api_fixup(v);
    }
}


static json_t *
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

static void
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
 * A string field of the body: absent or null gives "" (or 400 when
 * required); any other type is a 400.
 */

static ngx_int_t
ngx_http_sandbox_api_string(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, const char *field, ngx_uint_t required,
    const char **value)
{
    json_t  *v;
    u_char  *msg;

    v = ctx->body ? json_object_get(ctx->body, field) : NULL;

    if (v == NULL || json_is_null(v)
        || (json_is_string(v) && json_string_length(v) == 0))
    {
        if (required) {
            msg = ngx_pnalloc(r->pool, ngx_strlen(field) + 13);
            if (msg == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_sprintf(msg, "%s is required%Z", field);
            return ngx_http_sandbox_api_bad(r, (const char *) msg);
        }

        *value = "";
        return NGX_OK;
    }

    if (!json_is_string(v) || json_string_length(v) > 1024
        || ngx_strlen(json_string_value(v)) != json_string_length(v))
    {
        msg = ngx_pnalloc(r->pool, ngx_strlen(field) + 40);
        if (msg == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(msg, "%s must be a string of at most 1024 bytes%Z",
                    field);
        return ngx_http_sandbox_api_bad(r, (const char *) msg);
    }

    *value = json_string_value(v);

    return NGX_OK;
}


/* a name field (user or sandbox): a DNS-1123 label, as Kubernetes wants */

static ngx_int_t
ngx_http_sandbox_api_name(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, const char *field, const char *what,
    ngx_uint_t required)
{
    ngx_int_t    rc;
    const char  *s;
    u_char      *msg;

    rc = ngx_http_sandbox_api_string(r, ctx, field, required, &s);
    if (rc != NGX_OK) {
        return rc;
    }

    if (*s && (!sbx_dns_label_valid((u_char *) s, ngx_strlen(s))
               || ngx_strcmp(s, "proxy") == 0))
    {
        msg = ngx_pnalloc(r->pool, 160);
        if (msg == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(msg, "%s must be a DNS-1123 label: 1 to 63 lowercase "
                    "letters, digits or '-', starting and ending with a "
                    "letter or digit%Z", what);
        return ngx_http_sandbox_api_bad(r, (const char *) msg);
    }

    ngx_http_sandbox_api_arg(ctx, s, ngx_strlen(s));

    return NGX_OK;
}


static void
ngx_http_sandbox_api_uuid(u_char *dst)
{
    u_char  b[16], hex[32];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        ngx_memzero(b, sizeof(b));
    }

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    ngx_hex_dump(hex, b, 16);

    ngx_sprintf(dst, "%*s-%*s-%*s-%*s-%*s", (size_t) 8, hex, (size_t) 4,
                hex + 8, (size_t) 4, hex + 12, (size_t) 4, hex + 16,
                (size_t) 12, hex + 20);
}


/*
 * An answer made before any Redis command: the send's result is kept for
 * the final ngx_http_finalize_request(), and NGX_ABORT tells the callers
 * that the request has been answered.
 */

static ngx_int_t
ngx_http_sandbox_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, const char *message)
{
    ngx_http_sandbox_api_ctx_t  *ctx;

    ctx = ngx_http_sandbox_api_ctx(r);
    ctx->rc = ngx_http_sandbox_send_error(r, status, error, message);

    return NGX_ABORT;
}


static ngx_int_t
ngx_http_sandbox_api_bad(ngx_http_request_t *r, const char *message)
{
    return ngx_http_sandbox_api_error(r, NGX_HTTP_BAD_REQUEST, "Bad Request",
                                      message);
}


/* per-endpoint arguments */

static ngx_int_t
ngx_http_sandbox_api_prep_none(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_prep_param(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->params[0].data,
                             ctx->params[0].len);
    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_prep_user_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_int_t    rc;
    const char  *email;

    rc = ngx_http_sandbox_api_name(r, ctx, "username", "username", 1);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_sandbox_api_string(r, ctx, "email", 0, &email);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_sandbox_api_arg(ctx, email, ngx_strlen(email));

    ngx_http_sandbox_api_uuid(ctx->id);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->id, 36);

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_prep_user_list(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_str_t  v;

    if (ngx_http_arg(r, (u_char *) "active_only", 11, &v) == NGX_OK
        && v.len == 4 && ngx_strncmp(v.data, "true", 4) == 0)
    {
        ngx_http_sandbox_api_arg(ctx, "1", 1);

    } else {
        ngx_http_sandbox_api_arg(ctx, "0", 1);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_prep_user_update(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    json_t  *email, *active;

    ngx_http_sandbox_api_prep_param(r, ctx);

    email = ctx->body ? json_object_get(ctx->body, "email") : NULL;
    active = ctx->body ? json_object_get(ctx->body, "is_active") : NULL;

    /* "\0": leave the email as it is */

    if (email == NULL) {
        ngx_http_sandbox_api_arg(ctx, "\\0", 2);

    } else if (json_is_null(email)) {
        ngx_http_sandbox_api_arg(ctx, "", 0);

    } else if (json_is_string(email) && json_string_length(email) > 0
               && json_string_length(email) <= 1024
               && ngx_strlen(json_string_value(email))
                  == json_string_length(email))
    {
        ngx_http_sandbox_api_arg(ctx, json_string_value(email),
                                 json_string_length(email));

    } else {
        return ngx_http_sandbox_api_bad(r, "email must be a string or null");
    }

    if (active == NULL) {
        ngx_http_sandbox_api_arg(ctx, "", 0);

    } else if (json_is_boolean(active)) {
        ngx_http_sandbox_api_arg(ctx, json_is_true(active) ? "1" : "0", 1);

    } else {
        return ngx_http_sandbox_api_bad(r, "is_active must be a boolean");
    }

    return NGX_OK;
}


/*
 * A new key: 24 random bytes, base64url, "sk_live_" in front; Redis gets
 * only its digest and a display prefix.
 */

static ngx_int_t
ngx_http_sandbox_api_prep_key_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    time_t       expires;
    ngx_int_t    rc;
    ngx_str_t    src, dst;
    json_t      *v;
    const char  *name;
    u_char       raw[24], enc[32];

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_ADMIN) {
        ngx_http_sandbox_api_prep_param(r, ctx);

    } else {
        ngx_http_sandbox_api_arg(ctx, "", 0);
    }

    rc = ngx_http_sandbox_api_string(r, ctx, "name", 0, &name);
    if (rc != NGX_OK) {
        return rc;
    }

    expires = 0;
    v = ctx->body ? json_object_get(ctx->body, "expires_at") : NULL;

    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            return ngx_http_sandbox_api_bad(r, "expires_at must be an "
                                               "ISO-8601 date");
        }

        expires = ngx_parse_http_time((u_char *) json_string_value(v),
                                      json_string_length(v));

        if (expires == NGX_ERROR) {
            expires = ngx_http_sandbox_api_parse_iso(
                                            (u_char *) json_string_value(v),
                                            json_string_length(v));
        }

        if (expires == NGX_ERROR || expires <= ngx_time()) {
            return ngx_http_sandbox_api_bad(r, "expires_at must be an "
                                               "ISO-8601 date in the future");
        }
    }

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return ngx_http_sandbox_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           "Internal server error",
                                           "No randomness available");
    }

    src.data = raw;
    src.len = sizeof(raw);
    dst.data = enc;

    ngx_encode_base64url(&dst, &src);
    ngx_explicit_memzero(raw, sizeof(raw));

    ngx_memcpy(ctx->key, SBX_KEY_PREFIX, sizeof(SBX_KEY_PREFIX) - 1);
    ngx_memcpy(ctx->key + sizeof(SBX_KEY_PREFIX) - 1, enc, 32);
    ngx_explicit_memzero(enc, sizeof(enc));
    ctx->new_key = 1;

    ngx_http_sandbox_sha256_hex(ctx->digest, ctx->key, SBX_KEY_LEN);
    ngx_http_sandbox_api_uuid(ctx->id);

    ngx_http_sandbox_api_arg(ctx, (char *) ctx->digest,
                             NGX_HTTP_SANDBOX_SHA256_HEX_LEN);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->key, 12);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->id, 36);
    ngx_http_sandbox_api_arg(ctx, name, ngx_strlen(name));
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->expires,
                             ngx_sprintf(ctx->expires, "%T", expires)
                             - ctx->expires);

    return NGX_OK;
}


/* "2025-11-09T10:30:00Z", "2025-11-09T10:30:00.000Z", "2025-11-09" */

static time_t
ngx_http_sandbox_api_parse_iso(u_char *p, size_t len)
{
    ngx_tm_t    tm;
    ngx_uint_t  i, n[6];

    ngx_memzero(n, sizeof(n));

    if (len < 10 || p[4] != '-' || p[7] != '-') {
        return NGX_ERROR;
    }

    n[0] = ngx_atoi(p, 4);
    n[1] = ngx_atoi(p + 5, 2);
    n[2] = ngx_atoi(p + 8, 2);

    if (len > 10) {
        if (len < 19 || (p[10] != 'T' && p[10] != ' ') || p[13] != ':'
            || p[16] != ':')
        {
            return NGX_ERROR;
        }

        n[3] = ngx_atoi(p + 11, 2);
        n[4] = ngx_atoi(p + 14, 2);
        n[5] = ngx_atoi(p + 17, 2);

        /* fractions and a "Z" may follow; other zones are refused */

        for (i = 19; i < len; i++) {
            if (!((p[i] >= '0' && p[i] <= '9') || p[i] == '.'
                  || (p[i] == 'Z' && i == len - 1)))
            {
                return NGX_ERROR;
            }
        }
    }

    for (i = 0; i < 6; i++) {
        if (n[i] == (ngx_uint_t) NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31 || n[3] > 23
        || n[4] > 59 || n[5] > 59 || n[0] < 1970)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&tm, sizeof(ngx_tm_t));
    tm.tm_year = n[0] - 1900;
    tm.tm_mon = n[1] - 1;
    tm.tm_mday = n[2];
    tm.tm_hour = n[3];
    tm.tm_min = n[4];
    tm.tm_sec = n[5];

    return timegm(&tm);
}


/* a label field of the no-auth API: absent means "default" */

static ngx_int_t
ngx_http_sandbox_api_label(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, const char *field, const char **value)
{
    ngx_int_t  rc;
    u_char     msg[64];

    rc = ngx_http_sandbox_api_string(r, ctx, field, 0, value);
    if (rc != NGX_OK) {
        return rc;
    }

    if (**value == '\0') {
        *value = "default";
    }

    if (!sbx_dns_label_valid((u_char *) *value, ngx_strlen(*value))) {
        ngx_snprintf(msg, sizeof(msg), "%s must be a DNS-1123 label%Z",
                     field);
        return ngx_http_sandbox_api_bad(r, (const char *) msg);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_prep_sandbox_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_int_t                     rc;
    const char                   *image, *user, *nsv;
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    /* with authentication off, the body names the user (or "default") */

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON) {
        rc = ngx_http_sandbox_api_label(r, ctx, "username", &user);
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->argv[4] = user;
        ctx->argvlen[4] = ngx_strlen(user);
    }

    rc = ngx_http_sandbox_api_name(r, ctx, "name", "Sandbox name", 1);
    if (rc != NGX_OK) {
        return rc;
    }

    /* the "port" clients send is ignored: the runtime's port is fixed */

    rc = ngx_http_sandbox_api_string(r, ctx, "image", 0, &image);
    if (rc != NGX_OK) {
        return rc;
    }

    if (*image == '\0') {
        image = (const char *) slcf->default_image.data;
    }

    ngx_http_sandbox_api_arg(ctx, image, ngx_strlen(image));

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON) {
        rc = ngx_http_sandbox_api_label(r, ctx, "namespace", &nsv);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_http_sandbox_api_arg(ctx, nsv, ngx_strlen(nsv));

    } else {
        /* a namespace per user, as the original: <prefix><user> */
        ngx_http_sandbox_api_arg(ctx, (char *) slcf->namespace_prefix.data,
                                 slcf->namespace_prefix.len);
    }

    ngx_http_sandbox_api_arg(ctx, (char *) ctx->expires,
                             ngx_sprintf(ctx->expires, "%ui", slcf->quota)
                             - ctx->expires);

    ngx_http_sandbox_api_arg(ctx, ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON
                                  ? "namespace" : "prefix",
                             ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON
                             ? 9 : 6);

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_api_prep_sandbox(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    if (!sbx_dns_label_valid(ctx->params[0].data, ctx->params[0].len)) {
        return ngx_http_sandbox_api_bad(r, "Sandbox name must be a DNS-1123 "
                                           "label");
    }

    return ngx_http_sandbox_api_prep_param(r, ctx);
}


/* pause or resume: the last path segment says which */

static ngx_int_t
ngx_http_sandbox_api_prep_state(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_sandbox_api_prep_sandbox(r, ctx);
    if (rc == NGX_OK) {
        ngx_http_sandbox_api_op_arg(r, ctx);
    }

    return rc;
}


static void
ngx_http_sandbox_api_op_arg(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    size_t  len;

    len = r->uri.len;

    if (len && r->uri.data[len - 1] == '/') {
        len--;
    }

    if (len >= 6 && ngx_strncasecmp(r->uri.data + len - 6,
                                    (u_char *) "/pause", 6) == 0)
    {
        ngx_http_sandbox_api_arg(ctx, "pause", 5);

    } else {
        ngx_http_sandbox_api_arg(ctx, "resume", 6);
    }
}


/* /api/sandboxes/:user/:name[/pause|/resume], authentication off */

static ngx_int_t
ngx_http_sandbox_api_prep_anon(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_str_t  *user, *name;

    user = &ctx->params[0];
    name = &ctx->params[1];

    if (!sbx_dns_label_valid(user->data, user->len)
        || !sbx_dns_label_valid(name->data, name->len))
    {
        return ngx_http_sandbox_api_bad(r, "user and sandbox names must be "
                                           "DNS-1123 labels");
    }

    ctx->argv[4] = (const char *) user->data;
    ctx->argvlen[4] = user->len;

    ngx_http_sandbox_api_arg(ctx, (char *) name->data, name->len);

    if (ctx->ep->script == SBX_LUA_ANON_SANDBOX_STATE) {
        ngx_http_sandbox_api_op_arg(r, ctx);
    }

    return NGX_OK;
}
