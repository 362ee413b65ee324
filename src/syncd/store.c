/*
 * store.c - writes routes to Redis, one atomic script per change.
 *
 * A route is only replaced by a newer resourceVersion, so an event that
 * arrives late (a re-list racing a watch) never undoes a newer one; the
 * same version with the same address and readiness is no change at all,
 * so a re-list does not make every gateway drop its cache.
 * Every change is announced on sbx:events in the same script, so the
 * gateways drop their cached copy at once.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "store.h"

static const char *put_lua =
    "local key = 'sbx:route:' .. ARGV[1] .. ':' .. ARGV[2]\n"
    "local old = redis.call('HMGET', key, 'rv', 'addr', 'ready')\n"
    "local a, b = tonumber(ARGV[3]), tonumber(old[1] or '')\n"
    "if old[1] and a and b and a < b then return 0 end\n"
    "if old[1] == ARGV[3] and old[2] == ARGV[4] and old[3] == ARGV[5]\n"
    "then return 0 end\n"
    "redis.call('HSET', key, 'addr', ARGV[4], 'ready', ARGV[5],\n"
    "  'suspended', ARGV[6], 'rv', ARGV[3], 'namespace', ARGV[7],\n"
    "  'fqdn', ARGV[8], 'reason', ARGV[9], 'message', ARGV[10],\n"
    "  'uid', ARGV[11], 'updated_at_ms', ARGV[12])\n"
    "redis.call('SADD', 'sbx:routes', ARGV[1] .. ':' .. ARGV[2])\n"
    "redis.call('PUBLISH', 'sbx:events', 'route ' .. ARGV[1] .. ' ' .. ARGV[2])\n"
    "return 1\n";

static const char *del_lua =
    "redis.call('DEL', 'sbx:route:' .. ARGV[1] .. ':' .. ARGV[2])\n"
    "redis.call('SREM', 'sbx:routes', ARGV[1] .. ':' .. ARGV[2])\n"
    "redis.call('PUBLISH', 'sbx:events', 'route ' .. ARGV[1] .. ' ' .. ARGV[2])\n"
    "return 1\n";

long long store_now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int ok(redisContext *c, redisReply *rep) {
    int rc = (rep != NULL && rep->type != REDIS_REPLY_ERROR) ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "sandbox-syncd: redis: %s\n",
                rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    return rc;
}

redisContext *store_connect(const char *addr) {
    struct timeval tv = { 2, 0 };
    redisContext *c;
    char host[256];
    const char *colon;
    int port = 6379;

    if (strncmp(addr, "unix:", 5) == 0) {
        c = redisConnectUnixWithTimeout(addr + 5, tv);
    } else {
        colon = strrchr(addr, ':');
        snprintf(host, sizeof(host), "%.*s",
                 colon ? (int) (colon - addr) : (int) strlen(addr), addr);
        if (colon) port = atoi(colon + 1);
        c = redisConnectWithTimeout(host, port, tv);
    }
    if (c == NULL || c->err) {
        fprintf(stderr, "sandbox-syncd: redis %s: %s\n", addr,
                c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static int append_put(redisContext *c, const route *r, const char *ts) {
    return redisAppendCommand(c,
        "EVAL %s 0 %s %s %s %s %s %s %s %s %s %s %s %s", put_lua,
        r->user, r->name, r->rv, r->addr, r->ready ? "1" : "0",
        r->suspended ? "1" : "0", r->namespace, r->fqdn, r->reason,
        r->message, r->uid, ts) == REDIS_OK ? 0 : -1;
}

int store_put(redisContext *c, const route *r) {
    return store_put_many(c, r, 1);
}

int store_put_many(redisContext *c, const route *r, size_t n) {
    char ts[32];
    size_t i, sent = 0;
    int rc = 0;
    void *rep;

    snprintf(ts, sizeof(ts), "%lld", store_now_ms());
    for (i = 0; i < n; i++) {
        if (append_put(c, &r[i], ts) != 0) { rc = -1; break; }
        sent++;
    }
    /* every reply is read, so the connection stays in step */
    for (i = 0; i < sent; i++) {
        if (redisGetReply(c, &rep) != REDIS_OK) return -1;
        if (ok(c, rep) != 0) rc = -1;
    }
    return rc;
}

int store_del(redisContext *c, const char *user, const char *name) {
    return ok(c, redisCommand(c, "EVAL %s 0 %s %s", del_lua, user, name));
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *) a, *(char *const *) b);
}

int store_reconcile(redisContext *c, char **keep, size_t n) {
    redisReply *rep;
    size_t i;
    int rc = 0;

    rep = redisCommand(c, "SMEMBERS sbx:routes");
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -1;
    }
    for (i = 0; i < rep->elements; i++) {
        char *id = rep->element[i]->str, *sep, user[ROUTE_NAME_MAX];
        if (bsearch(&id, keep, n, sizeof(char *), cmp)) continue;
        sep = strchr(id, ':');
        if (sep == NULL) continue;
        snprintf(user, sizeof(user), "%.*s", (int) (sep - id), id);
        if (store_del(c, user, sep + 1) != 0) rc = -1;
    }
    freeReplyObject(rep);
    return rc;
}

/* a missing sbx:sync means Redis lost its data (flushed, or restarted
 * without persistence): the state then says "not listed" */
static const char *sync_lua =
    "local existed = redis.call('EXISTS', 'sbx:sync')\n"
    "local listed = ARGV[3]\n"
    "if existed == 0 and ARGV[9] ~= '1' then listed = '0' end\n"
    "redis.call('HSET', 'sbx:sync', 'resource_version', ARGV[1],\n"
    "  'leader', ARGV[2], 'listed', listed, 'last_list_at', ARGV[4],\n"
    "  'last_event_at', ARGV[5], 'synced_at', ARGV[6], 'lag_ms', ARGV[7],\n"
    "  'updated_at', ARGV[8])\n"
    "return existed\n";

int store_sync_state(redisContext *c, const sync_state *st, int listing) {
    long long now = store_now_ms();
    redisReply *rep;
    int rc;

    rep = redisCommand(c, "EVAL %s 0 %s %s %d %lld %lld %lld %lld %lld %d",
                       sync_lua, st->rv, st->leader, st->listed,
                       st->last_list_at, st->last_event_at, st->synced_at,
                       st->synced_at ? now - st->synced_at : -1LL, now,
                       listing);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        ok(c, rep);
        return -1;
    }
    rc = rep->integer ? 1 : 0;
    freeReplyObject(rep);
    return rc;
}
