
/*
 * Copyright (C) The sandbox gateway authors
 *
 * "sandbox_limit_scope cluster": gateways share their counts through
 * Redis in batches, never a round trip per request.  Every interval one
 * worker of each gateway sends, in one script, the entries touched since
 * the last sync: for each, the requests it has in flight and the requests
 * it let through since; and reads back, for each, what the other
 * gateways have in flight and the cluster's bucket level.  Requests are
 * then judged locally against local + remote counts, the bucket starting
 * from the cluster's level.  What another gateway does between two syncs
 * is not seen until the next: see docs/limits.md for the accuracy.
 *
 * In Redis (docs/redis-data-model.md): sbx:limit:gw:<gateway> says a
 * gateway is alive (it expires when it stops syncing), sbx:limit:c:<id>
 * holds each gateway's requests in flight for one key or user (fields of
 * dead gateways are dropped by the next sync that reads them), and
 * sbx:limit:r:<id> the cluster's bucket of a key (level and last, drained
 * at the key's rate with Redis's clock; it expires once drained).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_script.h"
#include "ngx_http_sandbox_limit_zone.h"


/*
 * KEYS[1] this gateway's liveness key, then for each entry its count hash
 * and its bucket hash (sbx:limit:c:<id>, sbx:limit:r:<id>); ARGV[1] the
 * gateway, ARGV[2] how long it is alive without a sync (ms), then for
 * each entry its requests in flight here, requests let through here since
 * the last sync and the key's rate (per 1000 s; 0: no bucket).  Answers,
 * for each entry, the other live gateways' requests in flight and the
 * cluster bucket's level.  The other gateways' liveness keys are found
 * from data (the count hashes' fields).
 */

static ngx_http_sandbox_script_t  ngx_http_sandbox_limit_lua =
    ngx_http_sandbox_script(
    "local gw, ttl = ARGV[1], tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('SET', KEYS[1], now, 'PX', ttl)\n"
    "local out, alive = {}, {}\n"
    "for i = 1, (#KEYS - 1) / 2 do\n"
    "  local ck, rk = KEYS[2 * i], KEYS[2 * i + 1]\n"
    "  local conc = tonumber(ARGV[3 * i])\n"
    "  local adm, rate = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])\n"
    "  if conc > 0 then redis.call('HSET', ck, gw, conc)\n"
    "  else redis.call('HDEL', ck, gw) end\n"
    "  local h, others = redis.call('HGETALL', ck), 0\n"
    "  for j = 1, #h, 2 do\n"
    "    local g = h[j]\n"
    "    if g ~= gw then\n"
    "      if alive[g] == nil then\n"
    "        alive[g] = redis.call('EXISTS', 'sbx:limit:gw:' .. g) == 1 end\n"
    "      if alive[g] then others = others + tonumber(h[j + 1])\n"
    "      else redis.call('HDEL', ck, g) end\n"
    "    end\n"
    "  end\n"
    "  local level = 0\n"
    "  if rate > 0 then\n"
    "    local b = redis.call('HMGET', rk, 'level', 'last')\n"
    "    level = tonumber(b[1] or '0') or 0\n"
    "    local ms = now - (tonumber(b[2] or '') or now)\n"
    "    if ms < 0 then ms = 0 end\n"
    "    level = level - rate * ms / 1000\n"
    "    if level < 0 then level = 0 end\n"
    "    level = math.floor(level + adm * 1000)\n"
    "    redis.call('HSET', rk, 'level', level, 'last', now)\n"
    "    redis.call('PEXPIRE', rk, math.floor(level * 1000 / rate) + ttl)\n"
    "  end\n"
    "  out[#out + 1] = others\n"
    "  out[#out + 1] = level\n"
    "end\n"
    "return out\n");


/* one entry of a sync, as sent: raw id (kind, bytes) and counts */
typedef struct {
    u_char                         *raw;
    size_t                          len;        /* raw, kind included */
    uint32_t                        adm;
    uint32_t                        rate;
} ngx_http_sandbox_limit_sent_t;


typedef struct {
    ngx_http_sandbox_limit_ctx_t   *ctx;
    ngx_uint_t                      n;
    ngx_http_sandbox_limit_sent_t  *sent;
} ngx_http_sandbox_limit_batch_t;


static void ngx_http_sandbox_limit_sync_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_sandbox_limit_send(
    ngx_http_sandbox_limit_ctx_t *ctx, ngx_http_sandbox_limit_node_t **list,
    ngx_uint_t n, ngx_log_t *log);
static void ngx_http_sandbox_limit_synced(void *data, redisReply *reply);
static void ngx_http_sandbox_limit_apply(ngx_http_sandbox_limit_batch_t *b,
    redisReply *reply);


static ngx_event_t  ngx_http_sandbox_limit_sync_ev;


/* how long an entry let through is kept in step without use, ms */
#define ngx_http_sandbox_limit_fresh()                                        \
    (20 * ngx_http_sandbox_limit_sync)

/* how long the remote counts are trusted without a sync, ms */
#define ngx_http_sandbox_limit_stale()                                        \
    (10 * ngx_http_sandbox_limit_sync + 2000)


void
ngx_http_sandbox_limit_cluster_init(ngx_cycle_t *cycle,
    ngx_http_sandbox_limit_ctx_t *ctx)
{
    ngx_http_sandbox_limit_sync_ev.handler =
                                        ngx_http_sandbox_limit_sync_handler;
    ngx_http_sandbox_limit_sync_ev.data = ctx;
    ngx_http_sandbox_limit_sync_ev.log = cycle->log;
    ngx_http_sandbox_limit_sync_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_sandbox_limit_sync_ev,
                  ngx_http_sandbox_limit_sync);
}


/* called locked: the entry goes out with the next sync */

void
ngx_http_sandbox_limit_touch(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_node_t *ln)
{
    if (ln->dirty) {
        return;
    }

    if (ctx->sh->ndirty == NGX_HTTP_SANDBOX_LIMIT_DIRTY) {
        ctx->sh->overflow = 1;
        return;
    }

    ln->dirty = 1;
    ctx->sh->dirty[ctx->sh->ndirty++] = ln;
}


/* called locked: what the other gateways hold, while it is fresh */

uint32_t
ngx_http_sandbox_limit_remote(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_node_t *ln)
{
    if (ngx_http_sandbox_limit_sync == 0
        || ngx_current_msec - ctx->sh->synced
           > (ngx_msec_t) ngx_http_sandbox_limit_stale())
    {
        return 0;
    }

    return ln->remote;
}


/*
 * Every interval in every worker: the first to find the last sync old
 * enough makes the next one.  A sync whose worker died is given up after
 * a while.
 */

static void
ngx_http_sandbox_limit_sync_handler(ngx_event_t *ev)
{
    ngx_http_sandbox_limit_ctx_t *ctx = ev->data;

    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_sandbox_limit_sh_t    *sh;
    ngx_http_sandbox_limit_node_t  *ln, **list;

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, ngx_http_sandbox_limit_sync);
    }

    if (ngx_http_sandbox_worker_redis == NULL
        || !ngx_shmtx_trylock(&ctx->shpool->mutex))
    {
        return;
    }

    sh = ctx->sh;

    if (ngx_current_msec - sh->sync_started < ngx_http_sandbox_limit_sync
        || (sh->sync_pid
            && ngx_current_msec - sh->sync_started
               < (ngx_msec_t) ngx_http_sandbox_limit_stale()))
    {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    sh->sync_pid = ngx_pid;
    sh->sync_started = ngx_current_msec;

    /* the touched entries; after an overflow, the most recent others */

    list = ngx_alloc(NGX_HTTP_SANDBOX_LIMIT_DIRTY * sizeof(void *), ev->log);
    if (list == NULL) {
        sh->sync_pid = 0;
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    n = sh->ndirty;
    ngx_memcpy(list, sh->dirty, n * sizeof(void *));
    sh->ndirty = 0;

    if (sh->overflow) {
        sh->overflow = 0;

        for (q = ngx_queue_head(&sh->lru);
             q != ngx_queue_sentinel(&sh->lru)
             && n < NGX_HTTP_SANDBOX_LIMIT_DIRTY;
             q = ngx_queue_next(q))
        {
            ln = ngx_queue_data(q, ngx_http_sandbox_limit_node_t, queue);

            if (!ln->dirty) {
                ln->dirty = 1;
                list[n++] = ln;
            }
        }
    }

    if (ngx_http_sandbox_limit_send(ctx, list, n, ev->log) != NGX_OK) {
        sh->sync_pid = 0;
        sh->sync_failures++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_free(list);
}


/* called locked: the batch copied out of the zone, and sent */

static ngx_int_t
ngx_http_sandbox_limit_send(ngx_http_sandbox_limit_ctx_t *ctx,
    ngx_http_sandbox_limit_node_t **list, ngx_uint_t n, ngx_log_t *log)
{
    u_char                          *p, *id, *q;
    size_t                           size, idlen;
    ngx_int_t                        rc;
    ngx_uint_t                       i, argc, nkeys;
    const char                     **argv;
    size_t                          *argvlen;
    ngx_http_sandbox_limit_node_t   *ln;
    ngx_http_sandbox_limit_sent_t   *sent;
    ngx_http_sandbox_limit_batch_t  *b;
    u_char                           ttl[NGX_INT_T_LEN];
    u_char                           nk[NGX_INT_T_LEN];
    u_char                           gw[sizeof("sbx:limit:gw:")
                                        + NGX_HTTP_SANDBOX_LIMIT_GW_LEN];

    /*
     * per entry: its raw id, its id as text (a key's digest in hex, a
     * user's name: at most twice as long), its two keys, three numbers
     */

    size = sizeof(ngx_http_sandbox_limit_batch_t);

    for (i = 0; i < n; i++) {
        size += sizeof(ngx_http_sandbox_limit_sent_t) + list[i]->len
                + 3 * (sizeof("sbx:limit:c:") + 2 * list[i]->len)
                + 3 * NGX_INT32_LEN;
    }

    nkeys = 1 + 2 * n;
    argc = 1 + nkeys + 2 + 3 * n;

    b = ngx_alloc(size, log);
    if (b == NULL) {
        return NGX_ERROR;
    }

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)), log);
    if (argv == NULL) {
        ngx_free(b);
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);

    b->ctx = ctx;
    b->n = n;
    b->sent = (ngx_http_sandbox_limit_sent_t *) (b + 1);
    p = (u_char *) (b->sent + n);

    argv[0] = (const char *) nk;
    argvlen[0] = ngx_sprintf(nk, "%ui", nkeys) - nk;
    argv[1] = (const char *) gw;
    argvlen[1] = ngx_sprintf(gw, "sbx:limit:gw:%*s",
                             (size_t) NGX_HTTP_SANDBOX_LIMIT_GW_LEN,
                             ctx->sh->gateway) - gw;
    argv[1 + nkeys] = (const char *) ctx->sh->gateway;
    argvlen[1 + nkeys] = NGX_HTTP_SANDBOX_LIMIT_GW_LEN;
    argv[2 + nkeys] = (const char *) ttl;
    argvlen[2 + nkeys] = ngx_sprintf(ttl, "%M", (ngx_msec_t)
                                     ngx_http_sandbox_limit_stale()) - ttl;

    for (i = 0; i < n; i++) {
        ln = list[i];
        sent = &b->sent[i];

        sent->raw = p;
        sent->len = ln->len;
        sent->adm = ln->adm;
        sent->rate = ln->rate;
        p = ngx_cpymem(p, ln->data, ln->len);

        /* "k" and the digest in hex, or "u" and the user's name */

        id = p;
        *p++ = ln->data[0];

        if (ln->data[0] == NGX_HTTP_SANDBOX_LIMIT_KEY) {
            p = ngx_hex_dump(p, ln->data + 1, ln->len - 1);

        } else {
            p = ngx_cpymem(p, ln->data + 1, ln->len - 1);
        }

        idlen = p - id;

        q = p;
        p = ngx_sprintf(p, "sbx:limit:c:%*s", idlen, id);
        argv[2 + 2 * i] = (const char *) q;
        argvlen[2 + 2 * i] = p - q;

        q = p;
        p = ngx_sprintf(p, "sbx:limit:r:%*s", idlen, id);
        argv[3 + 2 * i] = (const char *) q;
        argvlen[3 + 2 * i] = p - q;

        q = p;
        p = ngx_sprintf(p, "%uD", ln->conc);
        argv[3 + nkeys + 3 * i] = (const char *) q;
        argvlen[3 + nkeys + 3 * i] = p - q;

        q = p;
        p = ngx_sprintf(p, "%uD", ln->adm);
        argv[4 + nkeys + 3 * i] = (const char *) q;
        argvlen[4 + nkeys + 3 * i] = p - q;

        q = p;
        p = ngx_sprintf(p, "%uD", ln->rate);
        argv[5 + nkeys + 3 * i] = (const char *) q;
        argvlen[5 + nkeys + 3 * i] = p - q;

        ln->adm = 0;
        ln->dirty = 0;
    }

    rc = ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                     &ngx_http_sandbox_limit_lua, NULL, argc,
                                     argv, argvlen,
                                     ngx_http_sandbox_limit_synced, b, NULL);
    ngx_free(argv);

    if (rc != NGX_OK) {
        /* what was let through goes out with the next one */

        ngx_http_sandbox_limit_apply(b, NULL);
        ngx_free(b);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_sandbox_limit_synced(void *data, redisReply *reply)
{
    ngx_http_sandbox_limit_batch_t *b = data;

    ngx_http_sandbox_limit_ctx_t  *ctx;

    ctx = b->ctx;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2 * b->n)
    {
        ctx->sh->sync_failures++;
        reply = NULL;

    } else {
        ctx->sh->syncs++;
        ctx->sh->synced = ngx_current_msec;
    }

    ngx_http_sandbox_limit_apply(b, reply);

    ctx->sh->sync_pid = 0;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_free(b);
}


/*
 * Called locked.  With a reply: each entry still there takes the other
 * gateways' count and, for a key with a rate, the cluster's level plus
 * what it let through since the batch left.  Without: the entries' own
 * admissions go back in, for the next sync.
 */

static void
ngx_http_sandbox_limit_apply(ngx_http_sandbox_limit_batch_t *b,
    redisReply *reply)
{
    ngx_uint_t                      i;
    redisReply                     *others, *level;
    ngx_http_sandbox_limit_ctx_t   *ctx;
    ngx_http_sandbox_limit_node_t  *ln;
    ngx_http_sandbox_limit_sent_t  *sent;

    ctx = b->ctx;

    for (i = 0; i < b->n; i++) {
        sent = &b->sent[i];

        ln = ngx_http_sandbox_limit_find(ctx, sent->raw[0], sent->raw + 1,
                                         sent->len - 1,
                                         ngx_crc32_short(sent->raw + 1,
                                                         sent->len - 1)
                                         ^ sent->raw[0]);
        if (ln == NULL) {
            continue;
        }

        if (reply == NULL) {
            ln->adm += sent->adm;
            ngx_http_sandbox_limit_touch(ctx, ln);
            continue;
        }

        others = reply->element[2 * i];
        level = reply->element[2 * i + 1];

        if (others->type != REDIS_REPLY_INTEGER
            || level->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        ln->remote = (uint32_t) ngx_max(others->integer, 0);

        if (sent->rate && level->integer >= 0) {
            ln->level = (uint64_t) level->integer + (uint64_t) ln->adm * 1000;
            ln->last = ngx_current_msec;
        }

        /*
         * Kept in step while it matters: requests in flight here or
         * elsewhere, or some let through here lately
         */

        if (ln->conc || ln->remote
            || (uint32_t) ngx_current_msec - ln->used
               < (uint32_t) ngx_http_sandbox_limit_fresh())
        {
            ngx_http_sandbox_limit_touch(ctx, ln);
        }
    }
}


json_t *
ngx_http_sandbox_limit_cluster_status(ngx_http_sandbox_limit_sh_t *sh,
    ngx_uint_t remote)
{
    if (ngx_http_sandbox_limit_sync == 0) {
        return json_null();
    }

    return json_pack("{ss# sI sI sI sI sI}",
                     "gateway", (char *) sh->gateway,
                     (int) NGX_HTTP_SANDBOX_LIMIT_GW_LEN,
                     "interval_ms", (json_int_t) ngx_http_sandbox_limit_sync,
                     "syncs", (json_int_t) sh->syncs,
                     "sync_failures", (json_int_t) sh->sync_failures,
                     "last_sync_ms",
                     sh->synced ? (json_int_t) (ngx_current_msec - sh->synced)
                                : (json_int_t) -1,
                     "remote_in_flight", (json_int_t) remote);
}
