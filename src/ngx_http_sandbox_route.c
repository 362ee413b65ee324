
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The access-phase handler: it parses /<user>/<sandbox>/... or
 * /proxy/<name>/..., authenticates the bearer key, and finds the pod
 * address, then lets the request go on to proxy_pass (the balancer picks
 * the address up from the request context) or answers with JSON.
 *
 * The first entry may suspend the request for one Redis round trip; the
 * reply resumes the phases, and the re-entered handler returns the stored
 * decision, as auth_request does.
 *
 * The reply is decoded by sandbox_reply.c, the key judged by
 * ngx_http_sandbox_auth.c; what the sandbox then receives (URI, headers)
 * is made by ngx_http_sandbox_forward.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_redis.h"
#include "ngx_http_sandbox_script.h"
#include "sandbox_path.h"
#include "sandbox_reply.h"


typedef enum {
    NGX_HTTP_SANDBOX_DECIDED = 0,
    NGX_HTTP_SANDBOX_TO_REDIS,          /* the cache could not answer */
    NGX_HTTP_SANDBOX_PENDING,           /* the lookup is under way */
    NGX_HTTP_SANDBOX_WAKING,            /* held until the sandbox wakes */
    NGX_HTTP_SANDBOX_ANEW               /* woken: decide once more */
} ngx_http_sandbox_state_e;


/*
 * The decision's working state.  It lives on the access handler's stack
 * when the cache answers; for a Redis lookup it is moved into an
 * allocation of the pool apart from its blocks, freed once decided, so an
 * answered request keeps just its small route context either way.
 */

struct ngx_http_sandbox_decision_s {
    ngx_http_sandbox_route_ctx_t   *out;        /* what the request keeps */
    ngx_http_sandbox_state_e        state;

    /* NGX_OK to forward, else an HTTP status to answer */
    ngx_int_t                       status;
    const char                     *error;
    const char                     *message;

    sbx_form_t                      form;
    ngx_str_t                       path_user;
    u_char                          key_digest[NGX_HTTP_SANDBOX_SHA256_LEN];
    unsigned                        authenticated:1;
    unsigned                        not_ready:1;
    unsigned                        nocache:1;      /* Redis decides */
    ngx_msec_t                      wake_start;

    /* what Redis or the cache said, and where it came from */
    ngx_http_sandbox_key_t          key;
    ngx_http_sandbox_route_t        route;
    ngx_int_t                       key_cached;
    ngx_uint_t                      key_used;
    ngx_int_t                       route_cached;

    void                           *op;
    ngx_http_cleanup_t             *cleanup;    /* cancels op */
};


/*
 * One round trip answers both questions.  ARGV: the user named in the
 * path or by the cached key ("" for /proxy/ with a key to judge), the
 * sandbox name, the time, sandbox_last_used_interval in seconds, "1" when
 * a key is judged.  KEYS: the key's hash when one is judged; then, when
 * the user is known, its user hash (with a key only), its route and its
 * sandbox record.  A /proxy/ key's user is only found in the key's hash,
 * so its user, route and record keys are computed here: see
 * docs/redis-data-model.md.  The route of another user is never looked
 * up.  A key's last_used_at is written at most once per interval.
 */

static ngx_http_sandbox_script_t  ngx_http_sandbox_lookup_lua =
    ngx_http_sandbox_script(
    "local res, user, rk, sk = {'anon'}, ARGV[1]\n"
    "if ARGV[5] == '1' then\n"
    "  local k = redis.call('HMGET', KEYS[1],\n"
    "                       'user', 'id', 'expires_at', 'active',\n"
    "                       'last_used_at', 'rate_limit', 'max_concurrent')\n"
    "  if not k[1] then return {'nokey'} end\n"
    "  if tonumber(ARGV[3]) - (tonumber(k[5] or '0') or 0)\n"
    "     >= tonumber(ARGV[4]) then\n"
    "    redis.call('HSET', KEYS[1], 'last_used_at', ARGV[3])\n"
    "  end\n"
    "  local uk = KEYS[2]\n"
    "  if user ~= k[1] then uk = 'sbx:user:' .. k[1] end\n"
    "  local u = redis.call('HMGET', uk, 'active', 'rate_limit',\n"
    "                       'max_concurrent')\n"
    "  res = {'key', k[1], k[2] or '', k[3] or '0', k[4] or '1', u[1] or '',\n"
    "         'limits', k[6] or '', k[7] or '', u[2] or '', u[3] or ''}\n"
    "  if user == '' then\n"
    "    user = k[1]\n"
    "    rk = 'sbx:route:' .. user .. ':' .. ARGV[2]\n"
    "    sk = 'sbx:sandbox:' .. user .. ':' .. ARGV[2]\n"
    "  elseif user ~= k[1] then return res\n"
    "  else rk, sk = KEYS[3], KEYS[4] end\n"
    "else\n"
    "  rk, sk = KEYS[1], KEYS[2]\n"
    "end\n"
    "local r = redis.call('HMGET', rk, 'addr', 'ready', 'suspended')\n"
    "if r[1] or r[2] then\n"
    "  res[#res + 1] = 'route'\n"
    "  res[#res + 1] = r[1] or ''\n"
    "  res[#res + 1] = r[2] or '0'\n"
    "  res[#res + 1] = r[3] or '0'\n"
    "elseif redis.call('EXISTS', sk) == 1 then\n"
    "  res[#res + 1] = 'pending'\n"
    "else\n"
    "  res[#res + 1] = 'none'\n"
    "end\n"
    "return res\n");


static ngx_int_t ngx_http_sandbox_begin(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t nocache);
static ngx_int_t ngx_http_sandbox_conclude(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t on_stack);
static void ngx_http_sandbox_woke(ngx_http_request_t *r, ngx_int_t rc);
static ngx_int_t ngx_http_sandbox_start(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf);
static ngx_int_t ngx_http_sandbox_parse(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_uint_t ngx_http_sandbox_from_cache(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf);
static ngx_int_t ngx_http_sandbox_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static void ngx_http_sandbox_lookup_handler(void *data, redisReply *reply);
static void ngx_http_sandbox_lookup_cleanup(void *data);
static void ngx_http_sandbox_lookup_failed(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_parse_reply(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_sandbox_reply_copy(ngx_http_request_t *r,
    ngx_str_t *dst, sbx_reply_str_t *src);
static void ngx_http_sandbox_decide(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_decide_key(ngx_http_sandbox_decision_t *ctx);
static void ngx_http_sandbox_decide_route(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static void ngx_http_sandbox_deny(ngx_http_sandbox_decision_t *ctx,
    ngx_int_t status, const char *error, const char *message);
static void ngx_http_sandbox_not_ready(ngx_http_sandbox_decision_t *ctx,
    const char *message);
static void ngx_http_sandbox_not_found(ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_finish(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_finish_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *dp, ngx_http_sandbox_loc_conf_t *slcf);


ngx_int_t
ngx_http_sandbox_access_handler(ngx_http_request_t *r)
{
    ngx_uint_t                     nocache;
    ngx_http_sandbox_decision_t   *dp;
    ngx_http_sandbox_route_ctx_t  *ctx;
    ngx_http_sandbox_loc_conf_t   *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    if (!slcf->route) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_sandbox_route_ctx(r);

    if (ctx != NULL) {

        /* re-entered once the lookup's reply has come */

        dp = ctx->decision;

        if (dp == NULL) {
            return NGX_OK;
        }

        if (dp->state == NGX_HTTP_SANDBOX_PENDING
            || dp->state == NGX_HTTP_SANDBOX_WAKING)
        {
            return NGX_AGAIN;
        }

        ctx->decision = NULL;

        if (dp->state == NGX_HTTP_SANDBOX_ANEW) {
            nocache = dp->nocache;
            ngx_pfree(r->pool, dp);
            return ngx_http_sandbox_begin(r, ctx, slcf, nocache);
        }

        return ngx_http_sandbox_finish_lookup(r, dp, slcf);
    }

    ctx = ngx_http_sandbox_create_ctx(r, NGX_HTTP_SANDBOX_CTX_ROUTE,
                                      sizeof(ngx_http_sandbox_route_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sandbox_begin(r, ctx, slcf, 0);
}


static ngx_int_t
ngx_http_sandbox_begin(ngx_http_request_t *r,
    ngx_http_sandbox_route_ctx_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t nocache)
{
    ngx_int_t                     rc;
    ngx_http_sandbox_decision_t   d, *dp;

    ngx_memzero(&d, sizeof(ngx_http_sandbox_decision_t));
    d.out = ctx;
    d.nocache = nocache;

    if (ngx_http_sandbox_start(r, &d, slcf) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (d.state == NGX_HTTP_SANDBOX_DECIDED) {
        return ngx_http_sandbox_conclude(r, &d, slcf, 1);
    }

    /* to Redis: the decision outlives this call, not the lookup */

    dp = ngx_pmemalign(r->pool, sizeof(ngx_http_sandbox_decision_t),
                       NGX_ALIGNMENT);
    if (dp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *dp = d;

    rc = ngx_http_sandbox_lookup(r, dp);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (dp->state == NGX_HTTP_SANDBOX_PENDING) {
        ctx->decision = dp;
        return NGX_AGAIN;
    }

    return ngx_http_sandbox_finish_lookup(r, dp, slcf);
}


/*
 * A decision made by a lookup goes back to the stack, its allocation freed
 * and its cleanup disarmed, so that a stream opened after a Redis lookup
 * keeps no more than one opened from the cache (the strings the route
 * context points to are apart).  Before finishing: an answer sent may free
 * the request.
 */

static ngx_int_t
ngx_http_sandbox_finish_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *dp, ngx_http_sandbox_loc_conf_t *slcf)
{
    ngx_http_sandbox_decision_t  d;

    d = *dp;

    if (d.cleanup) {
        d.cleanup->handler = NULL;
        d.cleanup = NULL;
    }

    ngx_pfree(r->pool, dp);

    return ngx_http_sandbox_conclude(r, &d, slcf, 1);
}


/*
 * A sandbox that is not ready may be woken (ngx_http_sandbox_wake.c):
 * once per request, the request waiting meanwhile with its decision in
 * the pool.
 */

static ngx_int_t
ngx_http_sandbox_conclude(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf,
    ngx_uint_t on_stack)
{
    ngx_int_t                     rc;
    ngx_http_sandbox_decision_t  *dp;

    if (!ctx->not_ready || !slcf->wake || ctx->out->wake_tried
        || ctx->out->user.len == 0)
    {
        return ngx_http_sandbox_finish(r, ctx);
    }

    ctx->out->wake_tried = 1;

    dp = ctx;

    if (on_stack) {
        dp = ngx_pmemalign(r->pool, sizeof(ngx_http_sandbox_decision_t),
                           NGX_ALIGNMENT);
        if (dp == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *dp = *ctx;
    }

    dp->wake_start = ngx_current_msec;

    rc = ngx_http_sandbox_wake(r, dp->out, dp->wake_start,
                               ngx_http_sandbox_woke);

    switch (rc) {

    case NGX_AGAIN:
        dp->state = NGX_HTTP_SANDBOX_WAKING;
        dp->out->decision = dp;
        return NGX_AGAIN;

    case NGX_BUSY:
        ngx_http_sandbox_not_ready(dp, "Too many requests waiting for "
                                   "sandboxes");
        break;

    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default: /* Redis cannot be asked: the sandbox is not ready, as before */
        break;
    }

    return ngx_http_sandbox_finish(r, dp);
}


/* the wake's outcome: decide again, or answer 503 */

static void
ngx_http_sandbox_woke(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_sandbox_decision_t   *dp;
    ngx_http_sandbox_route_ctx_t  *ctx;

    ctx = ngx_http_sandbox_route_ctx(r);
    dp = ctx->decision;

    if (ctx->holding) {
        ctx->holding = 0;
        ctx->wake_ms = ngx_current_msec - ctx->wake_ms;
    }

    dp->state = NGX_HTTP_SANDBOX_DECIDED;

    switch (rc) {

    case NGX_OK:

        /* a route the cache may still hold as not ready: Redis says */

        dp->state = NGX_HTTP_SANDBOX_ANEW;
        dp->nocache = !ctx->woken;
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_http_sandbox_not_ready(dp, "Sandbox did not wake in time");
        break;

    case NGX_BUSY:
        ngx_http_sandbox_not_ready(dp, "Too many requests waiting for "
                                   "sandboxes");
        break;

    case NGX_DECLINED:
        break;

    default:
        ngx_http_sandbox_deny(dp, NGX_HTTP_INTERNAL_SERVER_ERROR,
                              "Internal server error", "Wake failed");
        dp->not_ready = 0;
        break;
    }

    /* resume the phases where the access handler suspended them */

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_sandbox_start(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf)
{
    ngx_int_t                      rc;
    ngx_str_t                      key;
    const char                    *message;
    ngx_http_sandbox_main_conf_t  *smcf;

    ctx->state = NGX_HTTP_SANDBOX_DECIDED;
    ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_BYPASS;

    /* authentication comes first, as in the original proxy */

    if (slcf->auth) {
        rc = ngx_http_sandbox_auth_bearer(r, &key, &message);

        if (rc != NGX_OK) {
            ngx_http_sandbox_deny(ctx, rc, "Unauthorized", message);
            return NGX_OK;
        }

        /* raw for the cache; only a lookup in Redis needs it in hex */

        if (ngx_http_sandbox_sha256(ctx->key_digest, key.data, key.len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "sandbox: SHA-256 failed");
            return NGX_ERROR;
        }

        ctx->authenticated = 1;

        smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

        if (smcf->cache_zone && slcf->cache) {
            ngx_http_sandbox_cache_prefetch_key(smcf->cache_zone,
                                                ctx->key_digest);
        }
    }

    rc = ngx_http_sandbox_parse(r, ctx);

    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    if (!slcf->auth && ctx->form == SBX_FORM_PROXY) {
        ngx_http_sandbox_deny(ctx, NGX_HTTP_UNAUTHORIZED, "Unauthorized",
                              "Missing Authorization header");
        return NGX_OK;
    }

    if (!ctx->nocache && ngx_http_sandbox_from_cache(r, ctx, slcf)) {
        ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_HIT;
        return NGX_OK;
    }

    ctx->state = NGX_HTTP_SANDBOX_TO_REDIS;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_parse(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    int          rc;
    u_char      *raw;
    size_t       raw_len;
    sbx_path_t   path;

    /* the raw path, without the query, to catch what normalizing hid */

    raw = r->unparsed_uri.data;
    raw_len = r->unparsed_uri.len;

    if (r->args_start && r->args_start > raw
        && r->args_start <= raw + raw_len)
    {
        raw_len = r->args_start - 1 - raw;
    }

    if (r->internal || r->valid_unparsed_uri == 0) {
        raw = NULL;
        raw_len = 0;
    }

    rc = sbx_path_parse(r->uri.data, r->uri.len, raw, raw_len, &path);

    switch (rc) {

    case SBX_PATH_OK:
        break;

    case SBX_PATH_BAD_NAME:
        ngx_http_sandbox_deny(ctx, NGX_HTTP_BAD_REQUEST, "Bad Request",
                              "Invalid user or sandbox name: names must be "
                              "DNS-1123 labels");
        return NGX_DECLINED;

    case SBX_PATH_TRICK:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sandbox: rejected path \"%V\"", &r->unparsed_uri);
        ngx_http_sandbox_deny(ctx, NGX_HTTP_BAD_REQUEST, "Invalid path",
                              "Encoded separators and dot segments are not "
                              "allowed in sandbox paths");
        return NGX_DECLINED;

    default:
        ngx_http_sandbox_deny(ctx, NGX_HTTP_BAD_REQUEST, "Invalid path",
                              "Expected format: /{username}/{sandboxname}/"
                              "{endpoint} or /proxy/{sandboxname}/{endpoint}");
        return NGX_DECLINED;
    }

    ctx->form = path.form;
    ctx->out->name.data = r->uri.data + path.name_off;
    ctx->out->name.len = path.name_len;

    if (path.form == SBX_FORM_USER) {
        ctx->path_user.data = r->uri.data + path.user_off;
        ctx->path_user.len = path.user_len;
    }

    ngx_http_sandbox_forward_uri(ctx->out, r->uri.data + path.rest_off,
                                 path.rest_len);

    return NGX_OK;
}


/*
 * Answers from the shared cache when it can.  A stale entry (past its TTL,
 * within the grace period) is kept aside for the case Redis fails.
 */

static ngx_uint_t
ngx_http_sandbox_from_cache(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_http_sandbox_loc_conf_t *slcf)
{
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (smcf->cache_zone == NULL || !slcf->cache) {
        return 0;
    }

    ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_MISS;

    if (!ctx->authenticated) {
        ctx->route_cached = ngx_http_sandbox_cache_get_route(
                                smcf->cache_zone, r->pool, &ctx->path_user,
                                &ctx->out->name, &ctx->route, &slcf->cache_ttl);

        if (ctx->route_cached != NGX_HTTP_SANDBOX_CACHE_HIT) {
            return 0;
        }

        ngx_http_sandbox_decide_route(r, ctx);
        return 1;
    }

    /* the key and its user's route come together */

    ctx->key_cached = ngx_http_sandbox_cache_get_key(smcf->cache_zone,
                                                     r->pool, ctx->key_digest,
                                                     &ctx->key, &ctx->out->name,
                                                     &ctx->route,
                                                     &ctx->route_cached,
                                                     &slcf->cache_ttl,
                                                     &ctx->key_used);

    if (ctx->key_cached == NGX_HTTP_SANDBOX_CACHE_MISS) {
        return 0;
    }

    /* a refused key, or another user's path, needs no route */

    if (ctx->key_cached == NGX_HTTP_SANDBOX_CACHE_HIT
        && ngx_http_sandbox_decide_key(ctx) != NGX_OK)
    {
        return 1;
    }

    if (ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_HIT
        || ctx->route_cached != NGX_HTTP_SANDBOX_CACHE_HIT)
    {
        return 0;
    }

    ngx_http_sandbox_decide_route(r, ctx);

    return 1;
}


static ngx_int_t
ngx_http_sandbox_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    u_char                       *p, *now, *every;
    size_t                        size;
    ngx_int_t                     rc;
    ngx_str_t                    *user;
    ngx_uint_t                    argc, judge;
    const char                   *argv[11];
    size_t                        argvlen[11];
    ngx_http_cleanup_t           *cln;
    ngx_http_sandbox_loc_conf_t  *slcf;
    u_char                        buf[512];

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx->cleanup = cln;

    /* a cached key only needs its route: skip the key part of the script */

    user = &ctx->path_user;

    if (ctx->key_cached == NGX_HTTP_SANDBOX_CACHE_HIT) {
        user = &ctx->key.user;
    }

    judge = ctx->authenticated
            && ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_HIT;

    /*
     * the key names and the numbers, in one piece, on the stack unless a
     * name is unusually long: the call copies them
     */

    size = sizeof("sbx:key:") - 1 + NGX_HTTP_SANDBOX_SHA256_HEX_LEN
           + sizeof("sbx:user:") - 1 + user->len
           + 2 * (sizeof("sbx:sandbox:") + user->len + ctx->out->name.len)
           + NGX_INT_T_LEN + 2 * NGX_TIME_T_LEN;

    p = buf;

    if (size > sizeof(buf)) {
        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    argc = 1;

    if (judge) {
        argv[argc] = (const char *) p;
        p = ngx_cpymem(p, "sbx:key:", sizeof("sbx:key:") - 1);
        p = ngx_hex_dump(p, ctx->key_digest, NGX_HTTP_SANDBOX_SHA256_LEN);
        argvlen[argc] = p - (u_char *) argv[argc];
        argc++;
    }

    if (user->len) {
        if (judge) {
            argv[argc] = (const char *) p;
            p = ngx_sprintf(p, "sbx:user:%V", user);
            argvlen[argc] = p - (u_char *) argv[argc];
            argc++;
        }

        argv[argc] = (const char *) p;
        p = ngx_sprintf(p, "sbx:route:%V:%V", user, &ctx->out->name);
        argvlen[argc] = p - (u_char *) argv[argc];
        argc++;

        argv[argc] = (const char *) p;
        p = ngx_sprintf(p, "sbx:sandbox:%V:%V", user, &ctx->out->name);
        argvlen[argc] = p - (u_char *) argv[argc];
        argc++;
    }

    argv[0] = (const char *) p;
    argvlen[0] = ngx_sprintf(p, "%ui", argc - 1) - p;
    p += argvlen[0];

    argv[argc] = (const char *) user->data;
    argvlen[argc++] = user->len;
    argv[argc] = (const char *) ctx->out->name.data;
    argvlen[argc++] = ctx->out->name.len;

    now = p;
    every = ngx_sprintf(now, "%T", ngx_time());
    argv[argc] = (const char *) now;
    argvlen[argc++] = every - now;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    argv[argc] = (const char *) every;
    argvlen[argc++] = ngx_sprintf(every, "%M",
                                  slcf->cache_ttl.last_used / 1000)
                      - every;

    argv[argc] = judge ? "1" : "";
    argvlen[argc++] = judge;

    rc = ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                     &ngx_http_sandbox_lookup_lua, r->pool,
                                     argc, argv, argvlen,
                                     ngx_http_sandbox_lookup_handler, r,
                                     &ctx->op);

    if (rc != NGX_OK) {
        /* the Redis client logs the outage once, not each request */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sandbox: redis unavailable");
        ngx_http_sandbox_lookup_failed(r, ctx);
        return NGX_OK;
    }

    cln->handler = ngx_http_sandbox_lookup_cleanup;
    cln->data = ctx;

    ctx->state = NGX_HTTP_SANDBOX_PENDING;

    return NGX_OK;
}


static void
ngx_http_sandbox_lookup_cleanup(void *data)
{
    ngx_http_sandbox_decision_t *ctx = data;

    /* the request is going away: its reply must find nobody */

    if (ctx->state == NGX_HTTP_SANDBOX_PENDING && ctx->op) {
        ngx_http_sandbox_redis_cancel(ctx->op);
        ctx->op = NULL;
        ctx->state = NGX_HTTP_SANDBOX_DECIDED;
    }
}


static void
ngx_http_sandbox_lookup_handler(void *data, redisReply *reply)
{
    ngx_http_request_t *r = data;

    ngx_connection_t              *c;
    ngx_http_sandbox_decision_t   *ctx;
    ngx_http_sandbox_loc_conf_t   *slcf;
    ngx_http_sandbox_main_conf_t  *smcf;

    c = r->connection;
    ctx = ngx_http_sandbox_route_ctx(r)->decision;

    ctx->op = NULL;
    ctx->state = NGX_HTTP_SANDBOX_DECIDED;

    if (ngx_http_sandbox_parse_reply(r, ctx, reply) != NGX_OK) {
        ngx_http_sandbox_lookup_failed(r, ctx);

    } else {
        smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

        if (smcf->cache_zone && slcf->cache) {
            if (ctx->authenticated
                && ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_HIT)
            {
                ngx_http_sandbox_cache_put_key(smcf->cache_zone,
                                               ctx->key_digest, &ctx->key,
                                               &slcf->cache_ttl);
            }

            if (ctx->route.state) {
                ngx_http_sandbox_cache_put_route(smcf->cache_zone,
                                                 ctx->authenticated
                                                 ? &ctx->key.user
                                                 : &ctx->path_user,
                                                 &ctx->out->name, &ctx->route,
                                                 &slcf->cache_ttl);
            }
        }

        ngx_http_sandbox_decide(r, ctx);
    }

    /* resume the phases where the access handler suspended them */

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/*
 * Redis is down or did not answer: fall back on stale cache entries if the
 * grace period allows, else fail fast with a 503.
 */

static void
ngx_http_sandbox_lookup_failed(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    ngx_http_sandbox_main_conf_t  *smcf;

    if ((!ctx->authenticated || ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_MISS)
        && ctx->route_cached != NGX_HTTP_SANDBOX_CACHE_MISS)
    {
        smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);
        (void) ngx_atomic_fetch_add(
                       &ngx_http_sandbox_cache_stats(smcf->cache_zone)->stale,
                       1);

        ctx->out->cache_status = NGX_HTTP_SANDBOX_CSTATUS_STALE;
        ngx_http_sandbox_decide(r, ctx);
        return;
    }

    ngx_http_sandbox_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                          "Service Unavailable",
                          "Sandbox registry unavailable");
}


/*
 * The script's reply, decoded by sbx_lookup_reply_parse(), supersedes
 * whatever the cache held; the strings are copied out of the reply.
 */

static ngx_int_t
ngx_http_sandbox_parse_reply(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply)
{
    int                      rc;
    sbx_lookup_t             lk;
    ngx_http_sandbox_key_t  *key;

    rc = sbx_lookup_reply_parse(reply, &lk);

    if (rc != SBX_REPLY_OK) {

        /* no reply is an outage, which the Redis client logs once */

        if (rc == SBX_REPLY_FAILED && reply != NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sandbox: route lookup failed");
        }

        return NGX_ERROR;
    }

    ngx_memzero(&ctx->route, sizeof(ngx_http_sandbox_route_t));

    /* no key part: none was asked, or the cached key stands */

    if (lk.key_state != SBX_KEY_ABSENT) {
        key = &ctx->key;

        ngx_memzero(key, sizeof(ngx_http_sandbox_key_t));
        key->state = (ngx_http_sandbox_key_state_e) lk.key_state;
        key->expires = lk.expires;
        key->limits = lk.limits;

        if (ngx_http_sandbox_reply_copy(r, &key->user, &lk.user) != NGX_OK
            || ngx_http_sandbox_reply_copy(r, &key->id, &lk.id) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (lk.route_state != SBX_ROUTE_ABSENT) {
        ctx->route.state = (ngx_http_sandbox_route_state_e) lk.route_state;

        if (ngx_http_sandbox_reply_copy(r, &ctx->route.addr, &lk.addr)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sandbox_reply_copy(ngx_http_request_t *r, ngx_str_t *dst,
    sbx_reply_str_t *src)
{
    dst->len = 0;
    dst->data = (u_char *) "";

    if (src->len == 0) {
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(r->pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->len = src->len;

    return NGX_OK;
}


static void
ngx_http_sandbox_decide(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    if (ctx->authenticated && ngx_http_sandbox_decide_key(ctx) != NGX_OK) {
        return;
    }

    ngx_http_sandbox_decide_route(r, ctx);
}


static ngx_int_t
ngx_http_sandbox_decide_key(ngx_http_sandbox_decision_t *ctx)
{
    ngx_int_t                rc;
    const char              *message;
    ngx_http_sandbox_key_t  *key;

    key = &ctx->key;

    rc = ngx_http_sandbox_auth_key(key, &message);

    if (rc != NGX_OK) {
        ngx_http_sandbox_deny(ctx, rc, "Unauthorized", message);
        return NGX_DECLINED;
    }

    ctx->out->user = key->user;
    ctx->out->key_id = key->id;

    /* another user's sandbox looks exactly like a missing one */

    if (ctx->form == SBX_FORM_USER
        && (ctx->out->user.len != ctx->path_user.len
            || ngx_strncmp(ctx->out->user.data, ctx->path_user.data,
                           ctx->out->user.len) != 0))
    {
        ngx_http_sandbox_not_found(ctx);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_decide_route(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    ngx_http_sandbox_route_t  *route;

    route = &ctx->route;

    if (!ctx->authenticated) {
        ctx->out->user = ctx->path_user;
    }

    switch (route->state) {

    case NGX_HTTP_SANDBOX_ROUTE_READY:
        break;

    case NGX_HTTP_SANDBOX_ROUTE_PENDING:
        ngx_http_sandbox_not_ready(ctx, "Sandbox service not ready");
        return;

    case NGX_HTTP_SANDBOX_ROUTE_NOT_READY:
        ngx_http_sandbox_not_ready(ctx, "Sandbox not ready");
        return;

    default: /* NGX_HTTP_SANDBOX_ROUTE_NONE */
        ngx_http_sandbox_not_found(ctx);
        return;
    }

    /* IP literals only: a worker never resolves names */

    if (ngx_http_sandbox_forward_addr(ctx->out, &route->addr) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox: route of \"%V/%V\" has an invalid address "
                      "\"%V\"", &ctx->out->user, &ctx->out->name, &route->addr);
        ngx_http_sandbox_not_ready(ctx, "Sandbox service not ready");
        return;
    }

    ctx->out->addr_text = route->addr;
    ctx->status = NGX_OK;
}


static void
ngx_http_sandbox_deny(ngx_http_sandbox_decision_t *ctx, ngx_int_t status,
    const char *error, const char *message)
{
    ctx->status = status;
    ctx->error = error;
    ctx->message = message;
}


static void
ngx_http_sandbox_not_ready(ngx_http_sandbox_decision_t *ctx,
    const char *message)
{
    ngx_http_sandbox_deny(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                          "Service Unavailable", message);
    ctx->not_ready = 1;
}


static void
ngx_http_sandbox_not_found(ngx_http_sandbox_decision_t *ctx)
{
    /*
     * /proxy/ keeps the original proxy's 403, which real clients depend on;
     * either way the answer never depends on whether the sandbox exists
     */

    if (ctx->form == SBX_FORM_PROXY) {
        ngx_http_sandbox_deny(ctx, NGX_HTTP_FORBIDDEN, "Forbidden",
                              "You do not have access to this sandbox");

    } else {
        ngx_http_sandbox_deny(ctx, NGX_HTTP_NOT_FOUND, "Not Found",
                              "Sandbox not found");
    }
}


static ngx_int_t
ngx_http_sandbox_finish(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    ngx_int_t                     rc;
    ngx_uint_t                    limit;
    ngx_table_elt_t              *h;
    ngx_http_sandbox_loc_conf_t  *slcf;

    if (ctx->status == NGX_OK) {
        rc = ngx_http_sandbox_limit_request(r, ctx->authenticated
                                               ? ctx->key_digest : NULL,
                                            &ctx->out->user,
                                            &ctx->key.limits, &limit,
                                            &ctx->message);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->out->limit = limit;

        if (rc == NGX_DECLINED) {
            ctx->status = NGX_HTTP_TOO_MANY_REQUESTS;
            ctx->error = "Too Many Requests";
        }
    }

    if (ctx->status == NGX_OK && ctx->out->woken) {
        ngx_http_sandbox_metrics_inc(
                               requests[NGX_HTTP_SANDBOX_DECISION_WOKEN]);

    } else {
        ngx_http_sandbox_metrics_decision(ctx->status, ctx->not_ready);
    }

    if (ctx->status == NGX_OK) {
        if (ngx_http_sandbox_forward_headers(r, ctx->out) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_sandbox_forward_rewrite(r, ctx->out);

        /* in flight until the request ends: idle auto-pause reads it */

        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

        if (slcf->activity
            && ngx_http_sandbox_activity_start(r, &ctx->out->user,
                                               &ctx->out->name,
                                               slcf->cache_ttl.last_used)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* a key answered from the cache: its use goes to Redis aside */

        if (ctx->key_used) {
            ngx_http_sandbox_usage_add(ctx->key_digest);
        }

        return NGX_OK;
    }

    if (ctx->status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_sandbox_www_authenticate(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->not_ready) {
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data, "%T", slcf->retry_after)
                       - h->value.data;
    }

    rc = ngx_http_sandbox_send_error(r, ctx->status, ctx->error,
                                     ctx->message);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}
