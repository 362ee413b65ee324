
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The access phase's Redis lookup, when the shared cache cannot decide:
 * one script judges the key and finds the route in one round trip.  Its
 * reply, decoded by sandbox_reply.c, fills the cache and is judged by
 * ngx_http_sandbox_decide() (ngx_http_sandbox_route.c); Redis down or
 * silent falls back on stale cache entries, else 503.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_decision.h"
#include "ngx_http_sandbox_redis.h"
#include "ngx_http_sandbox_script.h"
#include "sandbox_reply.h"


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


static void ngx_http_sandbox_lookup_handler(void *data, redisReply *reply);
static void ngx_http_sandbox_lookup_cleanup(void *data);
static void ngx_http_sandbox_lookup_failed(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_parse_reply(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_sandbox_reply_copy(ngx_http_request_t *r,
    ngx_str_t *dst, sbx_reply_str_t *src);


ngx_int_t
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
