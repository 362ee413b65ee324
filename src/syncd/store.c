/*
 * store.c - writes routes to Redis, one atomic script per change.
 *
 * A route is only replaced by a newer resourceVersion, so an event that
 * arrives late (a re-list racing a watch) never undoes a newer one; the
 * same version with the same address and readiness is no change at all,
 * so a re-list does not make every gateway drop its cache.
 * Every change is announced on sbx:events in the same script, so the
 * gateways drop their cached copy at once; a route written ready (and
 * not suspended) is also announced on sbx:ready with its address, first,
 * so that the requests a gateway holds for it go on without reading it.
 * The scripts go by EVALSHA (script.c): store_connect loads the ones a
 * connection will run before handing it out.
 *
 * With "sentinel:NAME@HOST:PORT,..." the master is the one a majority of
 * the sentinels that answer name, checked with ROLE; during a failover
 * (sentinels disagree, or the named server is down or not yet a master)
 * they are asked again every 200 ms for up to 5 s.  A READONLY reply
 * (a master demoted under a live connection) marks the connection
 * broken, so the daemon's next use of Redis connects again.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

/*
 * The scripts name every key in KEYS[]: the keys of the route table are
 * all made from the object's user and name, which the caller knows, so
 * none is found only by reading data.  user and name are in ARGV too:
 * the member of sbx:routes and the announcement are made from them.
 */

/*
 * Idle bookkeeping, done for unchanged routes too (a re-list fills it in
 * after an upgrade or a flush): the route's active_at is the sandbox's
 * last activity (the gateway moves it forward; a sandbox counts from when
 * it was first seen, and again from when it runs again); sbx:idle holds
 * the running sandboxes that have an idle timeout (ARGV[13], the
 * annotation or --idle-pause; 0: never), scored by when they fall idle,
 * which is what idle.c scans.
 *
 * KEYS: sbx:route:<user>:<name>, sbx:routes, sbx:idle; ARGV: user, name,
 * rv, addr, ready, suspended, namespace, fqdn, reason, message, uid,
 * updated_at_ms, idle_timeout
 */
static script put_script = { .text =
    "local id = ARGV[1] .. ':' .. ARGV[2]\n"
    "local old = redis.call('HMGET', KEYS[1], 'rv', 'addr', 'ready',\n"
    "  'suspended', 'idle_timeout', 'active_at')\n"
    "local a, b = tonumber(ARGV[3]), tonumber(old[1] or '')\n"
    "if old[1] and a and b and a < b then return 0 end\n"
    "local now = math.floor(tonumber(ARGV[12]) / 1000)\n"
    "local was = old[3] == '1' and old[4] ~= '1'\n"
    "local run = ARGV[5] == '1' and ARGV[6] ~= '1'\n"
    "local t = tonumber(ARGV[13])\n"
    "local at = tonumber(old[6] or '') or now\n"
    "if run and not was and at < now then at = now end\n"
    "redis.call('HSET', KEYS[1], 'active_at', at)\n"
    "if not run or t <= 0 then redis.call('ZREM', KEYS[3], id)\n"
    "elseif not was or (old[5] or '') ~= ARGV[13] then\n"
    "  redis.call('ZADD', KEYS[3], at + t, id)\n"
    "else redis.call('ZADD', KEYS[3], 'NX', at + t, id) end\n"
    "if old[1] == ARGV[3] and old[2] == ARGV[4] and old[3] == ARGV[5]\n"
    "   and (old[5] or '') == ARGV[13]\n"
    "then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'addr', ARGV[4], 'ready', ARGV[5],\n"
    "  'suspended', ARGV[6], 'rv', ARGV[3], 'namespace', ARGV[7],\n"
    "  'fqdn', ARGV[8], 'reason', ARGV[9], 'message', ARGV[10],\n"
    "  'uid', ARGV[11], 'updated_at_ms', ARGV[12], 'idle_timeout', ARGV[13])\n"
    "redis.call('SADD', KEYS[2], ARGV[1] .. ':' .. ARGV[2])\n"
    "if run and ARGV[4] ~= '' then redis.call('PUBLISH', 'sbx:ready',\n"
    "  ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[4]) end\n"
    "redis.call('PUBLISH', 'sbx:events',\n"
    "  'route ' .. ARGV[1] .. ' ' .. ARGV[2])\n"
    "return 1\n" };

/* KEYS: sbx:route:<user>:<name>, sbx:routes, sbx:idle, sbx:streams;
 * ARGV: user, name */
static script del_script = { .text =
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('SREM', KEYS[2], ARGV[1] .. ':' .. ARGV[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1] .. ':' .. ARGV[2])\n"
    "redis.call('ZREM', KEYS[4], ARGV[1] .. ':' .. ARGV[2])\n"
    "redis.call('PUBLISH', 'sbx:events',\n"
    "  'route ' .. ARGV[1] .. ' ' .. ARGV[2])\n"
    "return 1\n" };

/* a missing sbx:sync means Redis lost its data (flushed, or restarted
 * without persistence): the state then says "not listed".
 * KEYS: sbx:sync; ARGV: resource_version, leader, listed, last_list_at,
 * last_event_at, synced_at, lag_ms, updated_at, listing */
static script sync_script = { .text =
    "local existed = redis.call('EXISTS', KEYS[1])\n"
    "local listed = ARGV[3]\n"
    "if existed == 0 and ARGV[9] ~= '1' then listed = '0' end\n"
    "redis.call('HSET', KEYS[1], 'resource_version', ARGV[1],\n"
    "  'leader', ARGV[2], 'listed', listed, 'last_list_at', ARGV[4],\n"
    "  'last_event_at', ARGV[5], 'synced_at', ARGV[6], 'lag_ms', ARGV[7],\n"
    "  'updated_at', ARGV[8])\n"
    "return existed\n" };

static script *const store_scripts[] = {
    &put_script, &del_script, &sync_script
};

#define ROUTE_KEY_MAX  (sizeof("sbx:route::") + 2 * ROUTE_NAME_MAX)

long long store_now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

#define SENTINEL_MAX      16
#define SENTINEL_WAIT_MS  5000
#define SENTINEL_POLL_MS  200

/* a master demoted under this connection: the next use reconnects */
static void demoted(redisContext *c, const redisReply *rep) {
    if (rep && rep->type == REDIS_REPLY_ERROR
        && strncmp(rep->str, "READONLY", 8) == 0 && c->err == 0) {
        c->err = REDIS_ERR_OTHER;
        snprintf(c->errstr, sizeof(c->errstr), "%s", rep->str);
    }
}

static int ok(redisContext *c, redisReply *rep) {
    int rc = (rep != NULL && rep->type != REDIS_REPLY_ERROR) ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "sandbox-syncd: redis: %s\n",
                rep ? rep->str : c->errstr);
    demoted(c, rep);
    freeReplyObject(rep);
    return rc;
}

/* "host:port", "[v6]:port" or "host" (default port); -1 if malformed */
static int split_addr(const char *s, size_t len, int default_port,
                      char *host, size_t hostlen, int *port) {
    const char *end = s + len, *colon;

    if (len > 0 && *s == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL) return -1;
        snprintf(host, hostlen, "%.*s", (int) (close - s - 1), s + 1);
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = NULL;
        for (const char *p = s; p < end; p++) if (*p == ':') colon = p;
        snprintf(host, hostlen, "%.*s", (int) ((colon ? colon : end) - s), s);
    }
    *port = default_port;
    if (colon) {
        const char *d = colon + 1;

        /* digits up to the end of this address, nothing else */
        if (d == end) return -1;
        for (*port = 0; d < end; d++) {
            if (*d < '0' || *d > '9' || *port > 65535) return -1;
            *port = *port * 10 + (*d - '0');
        }
    }
    return host[0] && *port > 0 && *port < 65536 ? 0 : -1;
}

static redisContext *connect_tcp(const char *host, int port, long ms,
                                 int quiet) {
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout(host, port, tv);

    if (c == NULL || c->err) {
        if (!quiet)
            fprintf(stderr, "sandbox-syncd: redis %s:%d: %s\n", host, port,
                    c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* ROLE says "master": never write to a replica */
static int is_master(redisContext *c) {
    redisReply *rep = redisCommand(c, "ROLE");
    int yes = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0
              && rep->element[0]->type == REDIS_REPLY_STRING
              && strcmp(rep->element[0]->str, "master") == 0;

    freeReplyObject(rep);
    return yes;
}

/* what one sentinel names as the master: "ip:port" in out, or -1 */
static int sentinel_ask(const char *host, int port, const char *name,
                        char *out, size_t outlen, int quiet) {
    redisContext *c = connect_tcp(host, port, 500, quiet);
    redisReply *rep;
    int rc = -1;

    if (c == NULL) return -1;
    rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s", name);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2
        && rep->element[0]->type == REDIS_REPLY_STRING
        && rep->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out, outlen, strchr(rep->element[0]->str, ':')
                 ? "[%s]:%s" : "%s:%s",
                 rep->element[0]->str, rep->element[1]->str);
        rc = 0;
    }
    freeReplyObject(rep);
    redisFree(c);
    return rc;
}

/* one round: the master a majority of the sentinels names, if it is one */
static redisContext *sentinel_round(const char *name, const char *list,
                                    int *quiet) {
    char said[SENTINEL_MAX][300], host[256];
    int n = 0, i, j, agree, port;
    const char *p = list, *comma;
    redisContext *c;

    for (; *p && n < SENTINEL_MAX; p = *comma ? comma + 1 : comma) {
        comma = strchr(p, ',');
        if (comma == NULL) comma = p + strlen(p);
        said[n][0] = '\0';
        if (split_addr(p, comma - p, 26379, host, sizeof(host), &port) == 0)
            sentinel_ask(host, port, name, said[n], sizeof(said[n]), *quiet);
        n++;
    }
    for (i = 0; i < n; i++) {
        if (said[i][0] == '\0') continue;
        for (agree = 0, j = 0; j < n; j++)
            if (strcmp(said[i], said[j]) == 0) agree++;
        if (agree <= n / 2) continue;
        if (split_addr(said[i], strlen(said[i]), 6379, host, sizeof(host),
                       &port) != 0)
            return NULL;
        c = connect_tcp(host, port, 2000, *quiet);
        if (c && is_master(c)) {
            fprintf(stderr, "sandbox-syncd: redis master %s is at %s\n",
                    name, said[i]);
            return c;
        }
        if (c && !*quiet)
            fprintf(stderr, "sandbox-syncd: %s is not a master (yet)\n",
                    said[i]);
        *quiet = 1;
        redisFree(c);
        return NULL;
    }
    if (!*quiet)
        fprintf(stderr, "sandbox-syncd: no majority of the sentinels names"
                " the master %s\n", name);
    *quiet = 1;
    return NULL;
}

/* "sentinel:NAME@HOST:PORT,HOST:PORT...": waits out a failover, bounded */
static redisContext *sentinel_connect(const char *spec) {
    const char *at = strchr(spec, '@');
    long long until = store_now_ms() + SENTINEL_WAIT_MS;
    char name[256];
    redisContext *c;
    int quiet = 0;

    if (at == NULL || at == spec) {
        fprintf(stderr, "sandbox-syncd: expected sentinel:NAME@HOST:PORT,..."
                " not sentinel:%s\n", spec);
        return NULL;
    }
    snprintf(name, sizeof(name), "%.*s", (int) (at - spec), spec);
    for (;;) {
        c = sentinel_round(name, at + 1, &quiet);
        if (c || store_now_ms() >= until) return c;
        usleep(SENTINEL_POLL_MS * 1000);
    }
}

static redisContext *connect_addr(const char *addr) {
    struct timeval tv = { 2, 0 };
    redisContext *c;
    char host[256];
    int port;

    if (strncmp(addr, "sentinel:", 9) == 0)
        return sentinel_connect(addr + 9);
    if (strncmp(addr, "unix:", 5) != 0) {
        if (split_addr(addr, strlen(addr), 6379, host, sizeof(host),
                       &port) != 0) {
            fprintf(stderr, "sandbox-syncd: bad redis address %s\n", addr);
            return NULL;
        }
        return connect_tcp(host, port, 2000, 0);
    }
    c = redisConnectUnixWithTimeout(addr + 5, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "sandbox-syncd: redis %s: %s\n", addr,
                c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* every new connection loads its scripts: it may be to a server that
 * has never seen them (a new master after a failover) */
redisContext *store_connect(const char *addr, script *const *scripts,
                            size_t n) {
    redisContext *c = connect_addr(addr);

    if (c && script_load(c, scripts, n) != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

redisContext *store_open(const char *addr) {
    return store_connect(addr, store_scripts,
                         sizeof(store_scripts) / sizeof(store_scripts[0]));
}

static void route_key(char *key, const char *user, const char *name) {
    snprintf(key, ROUTE_KEY_MAX, "sbx:route:%s:%s", user, name);
}

static int append_put(redisContext *c, const route *r, const char *ts) {
    char key[ROUTE_KEY_MAX], idle[24];
    const char *argv[] = {
        key, "sbx:routes", "sbx:idle",
        r->user, r->name, r->rv, r->addr, r->ready ? "1" : "0",
        r->suspended ? "1" : "0", r->namespace, r->fqdn, r->reason,
        r->message, r->uid, ts, idle
    };

    route_key(key, r->user, r->name);
    /* the caller put the default in place of a missing annotation */
    snprintf(idle, sizeof(idle), "%ld",
             r->idle_timeout > 0 ? r->idle_timeout : 0);
    return script_append(c, &put_script, 3, sizeof(argv) / sizeof(argv[0]),
                         argv);
}

/*
 * One pass of a pipeline: the routes still to do (todo[i]) are sent,
 * then every reply is read, so the connection stays in step.  A route
 * whose put met NOSCRIPT did not run: it stays to do.  Returns -1 if
 * any other put failed, the number still to do otherwise.
 */
static int put_pass(redisContext *c, const route *r, size_t n,
                    const char *ts, unsigned char *todo) {
    size_t i, sent = 0;
    int rc = 0, left = 0;
    redisReply *rep;

    for (i = 0; i < n; i++) {
        if (!todo[i]) continue;
        if (append_put(c, &r[i], ts) != 0) { rc = -1; break; }
        sent++;
    }
    for (i = 0; i < n && sent > 0; i++) {
        if (!todo[i]) continue;
        sent--;
        if (redisGetReply(c, (void **) &rep) != REDIS_OK) return -1;
        if (script_noscript(rep)) {
            freeReplyObject(rep);
            left++;
            continue;
        }
        todo[i] = 0;
        if (ok(c, rep) != 0) rc = -1;
    }
    return rc < 0 ? rc : left;
}

int store_put(redisContext *c, const route *r) {
    return store_put_many(c, r, 1);
}

/* the puts that met NOSCRIPT (a SCRIPT FLUSH under this connection) go
 * once more, behind one SCRIPT LOAD; the others ran once already */
int store_put_many(redisContext *c, const route *r, size_t n) {
    script *put = &put_script;
    unsigned char *todo;
    char ts[32];
    int left;

    if (n == 0) return 0;
    todo = malloc(n);
    if (todo == NULL) return -1;
    memset(todo, 1, n);
    snprintf(ts, sizeof(ts), "%lld", store_now_ms());
    left = put_pass(c, r, n, ts, todo);
    if (left > 0) {
        fprintf(stderr, "sandbox-syncd: redis lost its scripts: loading"
                " again\n");
        left = script_load(c, &put, 1) == 0 ? put_pass(c, r, n, ts, todo)
                                            : -1;
    }
    free(todo);
    return left == 0 ? 0 : -1;
}

int store_del(redisContext *c, const char *user, const char *name) {
    char key[ROUTE_KEY_MAX];
    const char *argv[] = { key, "sbx:routes", "sbx:idle", "sbx:streams",
                           user, name };

    route_key(key, user, name);
    return ok(c, script_call(c, &del_script, 4, 6, argv));
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

int store_sync_state(redisContext *c, const sync_state *st, int listing) {
    long long now = store_now_ms();
    char n[7][24];
    const char *argv[] = { "sbx:sync", st->rv, st->leader, n[0], n[1], n[2],
                           n[3], n[4], n[5], n[6] };
    redisReply *rep;
    int rc;

    snprintf(n[0], sizeof(n[0]), "%d", st->listed);
    snprintf(n[1], sizeof(n[1]), "%lld", st->last_list_at);
    snprintf(n[2], sizeof(n[2]), "%lld", st->last_event_at);
    snprintf(n[3], sizeof(n[3]), "%lld", st->synced_at);
    snprintf(n[4], sizeof(n[4]), "%lld",
             st->synced_at ? now - st->synced_at : -1LL);
    snprintf(n[5], sizeof(n[5]), "%lld", now);
    snprintf(n[6], sizeof(n[6]), "%d", listing);
    rep = script_call(c, &sync_script, 1, 10, argv);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        ok(c, rep);
        return -1;
    }
    rc = rep->integer ? 1 : 0;
    freeReplyObject(rep);
    return rc;
}
