
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Each API endpoint's preparer: after the router matched it and its body
 * was read, it turns the path parameters and the body (checked by the
 * pure validators of sandbox_body.c) into its Redis script's arguments,
 * or answers 400.  New ids and API keys are made here, and the keys each
 * script declares from its arguments.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_sandbox_api.h"
#include "sandbox_body.h"
#include "sandbox_path.h"


static ngx_int_t ngx_http_sandbox_api_mint_key(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static void ngx_http_sandbox_api_uuid(u_char *dst);
static void ngx_http_sandbox_api_op_arg(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx);
static void ngx_http_sandbox_api_str_arg(ngx_http_sandbox_api_ctx_t *ctx,
    sbx_body_str_t *s);
static ssize_t ngx_http_sandbox_api_key(ngx_http_sandbox_api_ctx_t *ctx,
    const char *t, u_char *dst);


ngx_int_t
ngx_http_sandbox_api_prep_none(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    return NGX_OK;
}


ngx_int_t
ngx_http_sandbox_api_prep_param(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->params[0].data,
                             ctx->params[0].len);
    return NGX_OK;
}


/* users */

ngx_int_t
ngx_http_sandbox_api_prep_user_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    sbx_user_create_t  uc;
    char               err[SBX_BODY_ERR_MAX];

    if (sbx_body_user_create(ctx->body, &uc, err) != 0) {
        return ngx_http_sandbox_api_bad(r, err);
    }

    ngx_http_sandbox_api_str_arg(ctx, &uc.username);
    ngx_http_sandbox_api_str_arg(ctx, &uc.email);

    ngx_http_sandbox_api_uuid(ctx->id);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->id, 36);

    return NGX_OK;
}


ngx_int_t
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


ngx_int_t
ngx_http_sandbox_api_prep_user_update(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    sbx_user_update_t  uu;
    char               err[SBX_BODY_ERR_MAX];

    if (sbx_body_user_update(ctx->body, &uu, err) != 0) {
        return ngx_http_sandbox_api_bad(r, err);
    }

    ngx_http_sandbox_api_prep_param(r, ctx);

    /* "\0": leave the email as it is */

    switch (uu.email_op) {

    case SBX_EMAIL_KEEP:
        ngx_http_sandbox_api_arg(ctx, "\\0", 2);
        break;

    case SBX_EMAIL_CLEAR:
        ngx_http_sandbox_api_arg(ctx, "", 0);
        break;

    default: /* SBX_EMAIL_SET */
        ngx_http_sandbox_api_str_arg(ctx, &uu.email);
    }

    if (uu.active < 0) {
        ngx_http_sandbox_api_arg(ctx, "", 0);

    } else {
        ngx_http_sandbox_api_arg(ctx, uu.active ? "1" : "0", 1);
    }

    return NGX_OK;
}


/* keys */

ngx_int_t
ngx_http_sandbox_api_prep_key_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    time_t                        now;
    ngx_int_t                     rc;
    sbx_key_create_t              kc;
    ngx_http_sandbox_loc_conf_t  *slcf;
    char                          err[SBX_BODY_ERR_MAX];

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_ADMIN) {
        ngx_http_sandbox_api_prep_param(r, ctx);

    } else {
        ngx_http_sandbox_api_arg(ctx, "", 0);
    }

    now = ngx_time();

    if (sbx_body_key_create(ctx->body, now, &kc, err) != 0) {
        return ngx_http_sandbox_api_bad(r, err);
    }

    /* a date that is not ISO-8601 may still be an HTTP date */

    if (kc.expires == SBX_BODY_DATE_OTHER) {
        kc.expires = ngx_parse_http_time((u_char *) kc.expires_text.data,
                                         kc.expires_text.len);

        if (kc.expires == NGX_ERROR || kc.expires <= now) {
            return ngx_http_sandbox_api_bad(r, SBX_BODY_EXPIRES_FUTURE);
        }
    }

    rc = ngx_http_sandbox_api_mint_key(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    ngx_http_sandbox_api_arg(ctx, (char *) ctx->digest,
                             NGX_HTTP_SANDBOX_SHA256_HEX_LEN);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->key, 12);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->id, 36);
    ngx_http_sandbox_api_str_arg(ctx, &kc.name);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->expires,
                             ngx_sprintf(ctx->expires, "%T", kc.expires)
                             - ctx->expires);

    /* a user's own keys are rate-limited; the admin's are not */

    if (ctx->ep->auth == NGX_HTTP_SANDBOX_API_USER) {
        ngx_http_sandbox_api_rate_args(ctx, &slcf->key_create_rate);
    }

    return NGX_OK;
}


/*
 * A new key: 24 random bytes, base64url, "sk_live_" in front; Redis gets
 * only its digest and a display prefix.
 */

static ngx_int_t
ngx_http_sandbox_api_mint_key(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_str_t  src, dst;
    u_char     raw[24], enc[32];

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


/* sandboxes */

ngx_int_t
ngx_http_sandbox_api_prep_sandbox_create(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_uint_t                    anon;
    sbx_sandbox_create_t          sc;
    ngx_http_sandbox_loc_conf_t  *slcf;
    char                          err[SBX_BODY_ERR_MAX];

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    anon = (ctx->ep->auth == NGX_HTTP_SANDBOX_API_ANON);

    if (sbx_body_sandbox_create(ctx->body, anon, &sc, err) != 0) {
        return ngx_http_sandbox_api_bad(r, err);
    }

    /* with authentication off, the body names the user: the caller arg */

    if (anon) {
        ctx->argv[NGX_HTTP_SANDBOX_API_CALLER] = sc.username.data;
        ctx->argvlen[NGX_HTTP_SANDBOX_API_CALLER] = sc.username.len;
    }

    ngx_http_sandbox_api_str_arg(ctx, &sc.name);

    if (sc.image.len == 0) {
        ngx_http_sandbox_api_arg(ctx, (char *) slcf->default_image.data,
                                 ngx_strlen(slcf->default_image.data));

    } else {
        ngx_http_sandbox_api_str_arg(ctx, &sc.image);
    }

    if (anon) {
        ngx_http_sandbox_api_str_arg(ctx, &sc.ns);

    } else {
        /* a namespace per user, as the original: <prefix><user> */
        ngx_http_sandbox_api_arg(ctx, (char *) slcf->namespace_prefix.data,
                                 slcf->namespace_prefix.len);
    }

    ngx_http_sandbox_api_arg(ctx, (char *) ctx->expires,
                             ngx_sprintf(ctx->expires, "%ui", slcf->quota)
                             - ctx->expires);

    ngx_http_sandbox_api_arg(ctx, anon ? "namespace" : "prefix",
                             anon ? 9 : 6);

    ngx_http_sandbox_api_rate_args(ctx, &slcf->create_rate);

    return NGX_OK;
}


ngx_int_t
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

ngx_int_t
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

ngx_int_t
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

    ctx->argv[NGX_HTTP_SANDBOX_API_CALLER] = (const char *) user->data;
    ctx->argvlen[NGX_HTTP_SANDBOX_API_CALLER] = user->len;

    ngx_http_sandbox_api_arg(ctx, (char *) name->data, name->len);

    if (ctx->ep->script == SBX_LUA_ANON_SANDBOX_STATE) {
        ngx_http_sandbox_api_op_arg(r, ctx);
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_api_str_arg(ngx_http_sandbox_api_ctx_t *ctx,
    sbx_body_str_t *s)
{
    ngx_http_sandbox_api_arg(ctx, s->data, s->len);
}


/* the audit log: ?since=<stream id>&user=<name>&action=<a>&limit=<n> */

ngx_int_t
ngx_http_sandbox_api_prep_audit(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    u_char     *p;
    ngx_int_t   limit;
    ngx_str_t   v;
    ngx_uint_t  dash;

    /* since: a stream id, "ms" or "ms-seq" */

    ngx_str_null(&v);
    (void) ngx_http_arg(r, (u_char *) "since", 5, &v);

    dash = 0;

    for (p = v.data; p < v.data + v.len; p++) {
        if (*p == '-' && p > v.data && !dash && p + 1 < v.data + v.len) {
            dash = 1;
            continue;
        }

        if (*p < '0' || *p > '9' || v.len > 41) {
            return ngx_http_sandbox_api_bad(r, "since must be an audit "
                                               "record id (ms or ms-seq)");
        }
    }

    ngx_http_sandbox_api_arg(ctx, (char *) v.data, v.len);

    ngx_str_null(&v);
    (void) ngx_http_arg(r, (u_char *) "user", 4, &v);

    if (v.len && !sbx_dns_label_valid(v.data, v.len)) {
        return ngx_http_sandbox_api_bad(r, "user must be a user name");
    }

    ngx_http_sandbox_api_arg(ctx, (char *) v.data, v.len);

    ngx_str_null(&v);
    (void) ngx_http_arg(r, (u_char *) "action", 6, &v);

    for (p = v.data; p < v.data + v.len; p++) {
        if (v.len > 32 || !((*p >= 'a' && *p <= 'z') || *p == '.')) {
            return ngx_http_sandbox_api_bad(r, "action must be like "
                                               "sandbox.create");
        }
    }

    ngx_http_sandbox_api_arg(ctx, (char *) v.data, v.len);

    limit = 100;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &v) == NGX_OK) {
        limit = ngx_atoi(v.data, v.len);

        if (limit < 1 || limit > 1000) {
            return ngx_http_sandbox_api_bad(r, "limit must be 1 to 1000");
        }
    }

    ngx_http_sandbox_api_arg(ctx, (char *) ctx->expires,
                             ngx_sprintf(ctx->expires, "%i", limit)
                             - ctx->expires);

    return NGX_OK;
}


/* a rate-limited creation's two arguments: the interval in us, the burst */

void
ngx_http_sandbox_api_rate_args(ngx_http_sandbox_api_ctx_t *ctx,
    ngx_http_sandbox_rate_t *rate)
{
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->rate,
                             ngx_sprintf(ctx->rate, "%ui", rate->interval)
                             - ctx->rate);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->burst,
                             ngx_sprintf(ctx->burst, "%ui", rate->burst)
                             - ctx->burst);
}


/*
 * Every script's last three arguments, for its audit record: the client's
 * address, a request id (the data plane's kind) and sandbox_audit_maxlen
 */

void
ngx_http_sandbox_api_audit_args(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    ngx_http_sandbox_api_arg(ctx, (char *) r->connection->addr_text.data,
                             r->connection->addr_text.len);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->request_id,
                             ngx_http_sandbox_request_id_write(ctx->request_id)
                             - ctx->request_id);
    ngx_http_sandbox_api_arg(ctx, (char *) ctx->maxlen,
                             ngx_sprintf(ctx->maxlen, "%ui",
                                         slcf->audit_maxlen)
                             - ctx->maxlen);
}


/*
 * What follows the script in EVALSHA: numkeys, the keys the script
 * declares, then its ARGV.  Returns the count, 0 on failure.
 */

ngx_uint_t
ngx_http_sandbox_api_keys(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx, ngx_http_sandbox_api_script_t *s,
    const char **argv, size_t *argvlen, u_char *numkeys)
{
    u_char      *key;
    ssize_t      len;
    ngx_uint_t   i, k;

    for (k = 0; k < NGX_HTTP_SANDBOX_API_KEYS && s->keys[k]; k++) {

        len = ngx_http_sandbox_api_key(ctx, s->keys[k], NULL);

        if (len == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "sandbox api: key \"%s\" names no argument",
                          s->keys[k]);
            return 0;
        }

        key = ngx_pnalloc(r->pool, len + 1);
        if (key == NULL) {
            return 0;
        }

        argv[k + 1] = (const char *) key;
        argvlen[k + 1] = ngx_http_sandbox_api_key(ctx, s->keys[k], key);
    }

    argv[0] = (const char *) numkeys;
    argvlen[0] = ngx_sprintf(numkeys, "%ui", k) - numkeys;

    for (i = 0; i < ctx->argc; i++) {
        argv[k + 1 + i] = ctx->argv[i];
        argvlen[k + 1 + i] = ctx->argvlen[i];
    }

    return k + 1 + ctx->argc;
}


/*
 * A key from its template, "$N" standing for ARGV[N]: its length, and
 * the key itself into dst when not NULL
 */

static ssize_t
ngx_http_sandbox_api_key(ngx_http_sandbox_api_ctx_t *ctx, const char *t,
    u_char *dst)
{
    size_t      len;
    ngx_uint_t  i;

    for (len = 0; *t; t++) {

        if (*t != '$') {
            if (dst) {
                dst[len] = *t;
            }

            len++;
            continue;
        }

        for (i = 0; t[1] >= '0' && t[1] <= '9'; t++) {
            i = i * 10 + t[1] - '0';
        }

        if (i == 0 || i > ctx->argc) {
            return NGX_ERROR;
        }

        if (dst) {
            ngx_memcpy(dst + len, ctx->argv[i - 1], ctx->argvlen[i - 1]);
        }

        len += ctx->argvlen[i - 1];
    }

    return len;
}
