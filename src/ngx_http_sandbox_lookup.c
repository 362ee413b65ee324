
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The access phase's Redis lookup, when the shared cache cannot decide:
 * plain reads of the key's, the user's and the route's hashes, pipelined.
 * The replies, decoded by sandbox_reply.c, fill the cache and are judged
 * by ngx_http_sandbox_decide() (ngx_http_sandbox_route.c); Redis down or
 * silent falls back on stale cache entries, else 503.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_decision.h"
#include "ngx_http_sandbox_redis.h"
#include "sandbox_path.h"
#include "sandbox_reply.h"


/*
 * What one round trip asks, in this order: the key's hash, a user's hash,
 * the route's hash with the sandbox's record (a sandbox with a record and
 * no route yet is pending).  The fields are those sandbox_reply.h reads;
 * see docs/redis-data-model.md.
 */

#define NGX_HTTP_SANDBOX_LOOKUP_KEY    0x01
#define NGX_HTTP_SANDBOX_LOOKUP_USER   0x02
#define NGX_HTTP_SANDBOX_LOOKUP_ROUTE  0x04


static ngx_str_t  ngx_http_sandbox_lookup_key_fields[] = {
    ngx_string("user"), ngx_string("id"), ngx_string("expires_at"),
    ngx_string("active"), ngx_string("last_used_at"),
    ngx_string("rate_limit"), ngx_string("max_concurrent")
};

static ngx_str_t  ngx_http_sandbox_lookup_user_fields[] = {
    ngx_string("active"), ngx_string("rate_limit"),
    ngx_string("max_concurrent")
};

static ngx_str_t  ngx_http_sandbox_lookup_route_fields[] = {
    ngx_string("addr"), ngx_string("ready"), ngx_string("suspended")
};


/*
 * A key's user never changes: a key is made for one user and keeps it.  A
 * worker remembers whose each key it has read was, so that a /proxy/
 * lookup asks the key's, its user's and the route's hashes in one round
 * trip instead of two.  It is only a guess at what to read: the key's
 * hash is read with the rest and must name that user, else the reads are
 * not used and made again for the user it names.  Direct-mapped by the
 * digest's first bytes (SHA-256: uniform), so lookups cost one compare.
 */

#define NGX_HTTP_SANDBOX_LOOKUP_MEMO  1024

typedef struct {
    u_char                        digest[NGX_HTTP_SANDBOX_SHA256_LEN];
    u_char                        len;
    u_char                        user[SBX_NAME_MAX];
} ngx_http_sandbox_lookup_memo_t;

static ngx_http_sandbox_lookup_memo_t
    ngx_http_sandbox_lookup_memo[NGX_HTTP_SANDBOX_LOOKUP_MEMO];


/* the longest pipeline: HMGET key, HMGET user, HMGET route, EXISTS */
#define NGX_HTTP_SANDBOX_LOOKUP_ARGS                                              (2 + 7 + 2 + 3 + 2 + 3 + 2)


typedef struct {
    ngx_http_sandbox_redis_cmd_t  cmd[4];
    ngx_uint_t                    n;
    const char                   *argv[NGX_HTTP_SANDBOX_LOOKUP_ARGS];
    size_t                        argvlen[NGX_HTTP_SANDBOX_LOOKUP_ARGS];
    ngx_uint_t                    argc;
} ngx_http_sandbox_lookup_cmds_t;


static ngx_int_t ngx_http_sandbox_lookup_send(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_uint_t parts, ngx_str_t *user);
static void ngx_http_sandbox_lookup_add(ngx_http_sandbox_lookup_cmds_t *lc,
    const char *verb, u_char *key, u_char *end, ngx_str_t *fields,
    ngx_uint_t nfields);
static void ngx_http_sandbox_lookup_cleanup(void *data);
static void ngx_http_sandbox_lookup_handler(void *data, redisReply *reply);
static void ngx_http_sandbox_lookup_failed(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_parse_reply(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_sandbox_parse_key(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply);
static ngx_uint_t ngx_http_sandbox_lookup_next(
    ngx_http_sandbox_decision_t *ctx);
static ngx_int_t ngx_http_sandbox_reply_error(ngx_http_request_t *r,
    int rc);
static ngx_http_sandbox_lookup_memo_t *ngx_http_sandbox_lookup_memo_slot(
    u_char *digest);
static ngx_int_t ngx_http_sandbox_reply_copy(ngx_http_request_t *r,
    ngx_str_t *dst, sbx_reply_str_t *src);


/*
 * Plain reads cost Redis a fraction of a script doing the same (Lua's own
 * cost was most of the lookup's).  A user named in the path lets one
 * round trip ask everything; a /proxy/ key's user is only found in the
 * key's hash, so its user and route take a second one, unless the memo
 * knows whose the key is.  What was read for another user than the key's
 * is never used.
 */

ngx_int_t
ngx_http_sandbox_lookup(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx)
{
    ngx_str_t                        *user, guess;
    ngx_uint_t                        parts;
    ngx_http_cleanup_t               *cln;
    ngx_http_sandbox_lookup_memo_t   *m;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx->cleanup = cln;

    if (ctx->authenticated
        && ctx->key_cached != NGX_HTTP_SANDBOX_CACHE_HIT)
    {
        user = &ctx->path_user;
        parts = NGX_HTTP_SANDBOX_LOOKUP_KEY;

        if (user->len == 0) {
            m = ngx_http_sandbox_lookup_memo_slot(ctx->key_digest);

            /* a copy: the memo may change before the reply comes */

            if (m->len
                && ngx_memcmp(m->digest, ctx->key_digest,
                              NGX_HTTP_SANDBOX_SHA256_LEN) == 0)
            {
                guess.data = ngx_pnalloc(r->pool, m->len);
                if (guess.data == NULL) {
                    return NGX_ERROR;
                }

                guess.len = ngx_cpymem(guess.data, m->user, m->len)
                            - guess.data;
                user = &guess;
            }
        }

        if (user->len) {
            parts |= NGX_HTTP_SANDBOX_LOOKUP_USER
                     | NGX_HTTP_SANDBOX_LOOKUP_ROUTE;
        }

    } else {
        /* a cached key, or none to judge: the route only */

        user = (ctx->key_cached == NGX_HTTP_SANDBOX_CACHE_HIT)
               ? &ctx->key.user : &ctx->path_user;
        parts = NGX_HTTP_SANDBOX_LOOKUP_ROUTE;
    }

    if (ngx_http_sandbox_lookup_send(r, ctx, parts, user) != NGX_OK) {
        /* the Redis client logs the outage once, not each request */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sandbox: redis unavailable");
        ngx_http_sandbox_lookup_failed(r, ctx);
        return NGX_OK;
    }

    cln->handler = ngx_http_sandbox_lookup_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


/* NGX_OK: sent, the state PENDING; NGX_ERROR: Redis cannot be asked */

static ngx_int_t
ngx_http_sandbox_lookup_send(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, ngx_uint_t parts, ngx_str_t *user)
{
    u_char                          *p, *end;
    size_t                           size;
    ngx_str_t                       *name;
    ngx_http_sandbox_lookup_cmds_t   lc;
    u_char                           buf[512];

    name = &ctx->out->name;

    /*
     * the key names, on the stack unless a name is unusually long: the
     * commands are copied out at once
     */

    size = sizeof("sbx:key:") - 1 + NGX_HTTP_SANDBOX_SHA256_HEX_LEN
           + sizeof("sbx:user:") - 1 + user->len
           + 2 * (sizeof("sbx:sandbox::") - 1 + user->len + name->len);

    p = buf;

    if (size > sizeof(buf)) {
        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    lc.n = 0;
    lc.argc = 0;

    if (parts & NGX_HTTP_SANDBOX_LOOKUP_KEY) {
        end = ngx_cpymem(p, "sbx:key:", sizeof("sbx:key:") - 1);
        end = ngx_hex_dump(end, ctx->key_digest,
                           NGX_HTTP_SANDBOX_SHA256_LEN);
        ngx_http_sandbox_lookup_add(&lc, "HMGET", p, end,
                                    ngx_http_sandbox_lookup_key_fields, 7);
        p = end;
    }

    if (parts & NGX_HTTP_SANDBOX_LOOKUP_USER) {
        end = ngx_sprintf(p, "sbx:user:%V", user);
        ngx_http_sandbox_lookup_add(&lc, "HMGET", p, end,
                                    ngx_http_sandbox_lookup_user_fields, 3);
        p = end;
    }

    if (parts & NGX_HTTP_SANDBOX_LOOKUP_ROUTE) {
        end = ngx_sprintf(p, "sbx:route:%V:%V", user, name);
        ngx_http_sandbox_lookup_add(&lc, "HMGET", p, end,
                                    ngx_http_sandbox_lookup_route_fields, 3);
        p = end;

        end = ngx_sprintf(p, "sbx:sandbox:%V:%V", user, name);
        ngx_http_sandbox_lookup_add(&lc, "EXISTS", p, end, NULL, 0);
    }

    ctx->op = ngx_http_sandbox_redis_pipeline(ngx_http_sandbox_worker_redis,
                                              lc.n, lc.cmd,
                                              ngx_http_sandbox_lookup_handler,
                                              r);
    if (ctx->op == NULL) {
        return NGX_ERROR;
    }

    ctx->lookup = parts;
    ctx->lookup_user = *user;
    ctx->state = NGX_HTTP_SANDBOX_PENDING;

    return NGX_OK;
}


static void
ngx_http_sandbox_lookup_add(ngx_http_sandbox_lookup_cmds_t *lc,
    const char *verb, u_char *key, u_char *end, ngx_str_t *fields,
    ngx_uint_t nfields)
{
    ngx_uint_t                     i;
    ngx_http_sandbox_redis_cmd_t  *cmd;

    cmd = &lc->cmd[lc->n++];
    cmd->argc = 2 + nfields;
    cmd->argv = &lc->argv[lc->argc];
    cmd->argvlen = &lc->argvlen[lc->argc];

    lc->argv[lc->argc] = verb;
    lc->argvlen[lc->argc++] = ngx_strlen(verb);
    lc->argv[lc->argc] = (const char *) key;
    lc->argvlen[lc->argc++] = end - key;

    for (i = 0; i < nfields; i++) {
        lc->argv[lc->argc] = (const char *) fields[i].data;
        lc->argvlen[lc->argc++] = fields[i].len;
    }
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

    ngx_int_t                      rc;
    ngx_connection_t              *c;
    ngx_http_sandbox_decision_t   *ctx;
    ngx_http_sandbox_loc_conf_t   *slcf;
    ngx_http_sandbox_main_conf_t  *smcf;

    c = r->connection;
    ctx = ngx_http_sandbox_route_ctx(r)->decision;

    ctx->op = NULL;
    ctx->state = NGX_HTTP_SANDBOX_DECIDED;

    rc = ngx_http_sandbox_parse_reply(r, ctx, reply);

    if (rc == NGX_AGAIN) {
        return;                 /* the second round trip is on its way */
    }

    if (rc != NGX_OK) {
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
 * The replies supersede whatever the cache held; their strings are copied
 * out.  NGX_OK: decided; NGX_AGAIN: a second round trip was sent (a key's
 * user and route); NGX_ERROR: the lookup failed.
 */

static ngx_int_t
ngx_http_sandbox_parse_reply(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply)
{
    int               rc;
    ngx_uint_t        n, parts, ours;
    redisReply      **el;
    sbx_lookup_t      lk;
    sbx_key_state_e   state;

    parts = ctx->lookup;

    n = ((parts & NGX_HTTP_SANDBOX_LOOKUP_KEY) ? 1 : 0)
        + ((parts & NGX_HTTP_SANDBOX_LOOKUP_USER) ? 1 : 0)
        + ((parts & NGX_HTTP_SANDBOX_LOOKUP_ROUTE) ? 2 : 0);

    /* no reply is an outage, which the Redis client logs once */

    if (reply == NULL) {
        return NGX_ERROR;
    }

    if (n == 1) {
        el = &reply;

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == n) {
        el = reply->element;

    } else {
        return ngx_http_sandbox_reply_error(r, SBX_REPLY_MALFORMED);
    }

    if (parts & NGX_HTTP_SANDBOX_LOOKUP_KEY) {
        if (ngx_http_sandbox_parse_key(r, ctx, *el++) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* what was asked of a user other than the key's is not used */

    ours = !ctx->authenticated
           || (ctx->key.user.len == ctx->lookup_user.len
               && ngx_strncmp(ctx->key.user.data, ctx->lookup_user.data,
                              ctx->lookup_user.len) == 0);

    if (parts & NGX_HTTP_SANDBOX_LOOKUP_USER) {
        if (ours) {
            state = (sbx_key_state_e) ctx->key.state;

            rc = sbx_lookup_user(*el, &state, &ctx->key.limits);
            if (rc != SBX_REPLY_OK) {
                return ngx_http_sandbox_reply_error(r, rc);
            }

            ctx->key.state = (ngx_http_sandbox_key_state_e) state;
            ctx->user_judged = 1;
        }

        el++;
    }

    ngx_memzero(&ctx->route, sizeof(ngx_http_sandbox_route_t));

    if ((parts & NGX_HTTP_SANDBOX_LOOKUP_ROUTE) && ours) {
        rc = sbx_lookup_route(el[0], el[1], &lk);
        if (rc != SBX_REPLY_OK) {
            return ngx_http_sandbox_reply_error(r, rc);
        }

        ctx->route.state = (ngx_http_sandbox_route_state_e) lk.route_state;
        ctx->route_read = 1;

        if (ngx_http_sandbox_reply_copy(r, &ctx->route.addr, &lk.addr)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    parts = ngx_http_sandbox_lookup_next(ctx);

    if (parts == 0) {
        return NGX_OK;
    }

    if (ngx_http_sandbox_lookup_send(r, ctx, parts, &ctx->key.user)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/*
 * After the key's hash: a valid key still needs its own user's record,
 * and a /proxy/ path its route, unless they were read along with it (the
 * path's user, or the memo's guess, was the key's); whatever else the key
 * is, it is refused without either.
 */

static ngx_uint_t
ngx_http_sandbox_lookup_next(ngx_http_sandbox_decision_t *ctx)
{
    ngx_uint_t  parts;

    if (!(ctx->lookup & NGX_HTTP_SANDBOX_LOOKUP_KEY)
        || ctx->key.state != NGX_HTTP_SANDBOX_KEY_VALID)
    {
        return 0;
    }

    parts = 0;

    if (!ctx->user_judged) {
        parts |= NGX_HTTP_SANDBOX_LOOKUP_USER;
    }

    if (ctx->form == SBX_FORM_PROXY && !ctx->route_read) {
        parts |= NGX_HTTP_SANDBOX_LOOKUP_ROUTE;
    }

    return parts;
}


static ngx_int_t
ngx_http_sandbox_parse_key(ngx_http_request_t *r,
    ngx_http_sandbox_decision_t *ctx, redisReply *reply)
{
    int                               rc;
    sbx_lookup_t                      lk;
    ngx_http_sandbox_key_t           *key;
    ngx_http_sandbox_loc_conf_t      *slcf;
    ngx_http_sandbox_lookup_memo_t   *m;

    rc = sbx_lookup_key(reply, &lk);
    if (rc != SBX_REPLY_OK) {
        return ngx_http_sandbox_reply_error(r, rc);
    }

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

    /* whose the key is, for the next /proxy/ lookup of it */

    if (lk.key_state != SBX_KEY_UNKNOWN && key->user.len
        && key->user.len <= SBX_NAME_MAX)
    {
        m = ngx_http_sandbox_lookup_memo_slot(ctx->key_digest);
        ngx_memcpy(m->digest, ctx->key_digest, NGX_HTTP_SANDBOX_SHA256_LEN);
        ngx_memcpy(m->user, key->user.data, key->user.len);
        m->len = (u_char) key->user.len;
    }

    /* the cache's entry is superseded: no stale fallback after this */

    ctx->key_cached = NGX_HTTP_SANDBOX_CACHE_MISS;

    /*
     * its last_used_at moves at most once per interval, by the worker's
     * batched key-use report, as for a key the cache answers
     */

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    ctx->key_used = lk.key_state != SBX_KEY_UNKNOWN
                    && ngx_time() - lk.last_used
                       >= (time_t) (slcf->cache_ttl.last_used / 1000);

    return NGX_OK;
}


static ngx_http_sandbox_lookup_memo_t *
ngx_http_sandbox_lookup_memo_slot(u_char *digest)
{
    ngx_uint_t  i;

    i = ((ngx_uint_t) digest[0] << 8 | digest[1])
        % NGX_HTTP_SANDBOX_LOOKUP_MEMO;

    return &ngx_http_sandbox_lookup_memo[i];
}


static ngx_int_t
ngx_http_sandbox_reply_error(ngx_http_request_t *r, int rc)
{
    if (rc == SBX_REPLY_MALFORMED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox: route lookup: unexpected reply from redis");

    } else {
        /* the Redis client logged the error reply itself */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sandbox: route lookup failed");
    }

    return NGX_ERROR;
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
