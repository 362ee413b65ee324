/*
 * idle.c - idle auto-pause, run by the leader's operations process.
 *
 * Each running sandbox with an idle timeout is in sbx:idle, scored by
 * when it falls idle: its last activity (its route's active_at) plus its
 * timeout.  store.c puts it there (counting from when the sandbox was
 * first seen or ran again) and takes it out when it stops running; the
 * gateway moves both forward with each activity report (a request, or
 * "now" while a request is in flight) and marks sandboxes with an open stream in sbx:streams (an
 * expiry, refreshed while the stream is open).  Once a second the scan
 * takes what has fallen idle, and a script checks each one again (idle
 * for more than the timeout: times are whole seconds) and
 * queues its pause atomically: the same sbx:ops "pause" the API queues
 * (carried out by ops.c: v1beta1 operatingMode Suspended, v1alpha1
 * replicas 0), the sandbox record's state "pausing", and an audit record
 * whose actor is "sandbox-syncd".  A sandbox with an open stream is never
 * paused.  Each member taken is moved out of the scan's range (paused:
 * retried a minute later if it still runs), so nothing starves.
 *
 * The timeout: the annotation agents.x-k8s.io/idle-timeout (the API's
 * idle_timeout at creation becomes it), else --idle-pause; 0 is never.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "idle.h"
#include "log.h"
#include "script.h"

#define IDLE_SCAN_MS    1000

/* sandboxes handled per scan; the rest are the next second's */
#define IDLE_PAGE       500

/* a pause that did not take (refused, the sandbox recreated) is tried
 * again after this long */
#define IDLE_RETRY_S    60

/* KEYS: the sandbox's route and record, sbx:idle, sbx:streams, sbx:ops,
 * sbx:audit; ARGV: member, now, the audit cap, IDLE_RETRY_S */
script idle_pause_script = { .text =
    "local id, now = ARGV[1], tonumber(ARGV[2])\n"
    "local u, n = id:match('^([^:]+):(.+)$')\n"
    "local rt = redis.call('HMGET', KEYS[1], 'ready', 'suspended',\n"
    "                      'idle_timeout', 'namespace', 'active_at')\n"
    "local t = tonumber(rt[3] or '') or 0\n"
    "if not u or rt[1] ~= '1' or rt[2] == '1' or t <= 0 then\n"
    "  redis.call('ZREM', KEYS[3], id) return 0 end\n"
    "local last = tonumber(rt[5] or '') or now\n"
    "if now - last <= t then\n"
    "  redis.call('ZADD', KEYS[3], last + t + 1, id) return 0 end\n"
    "local open = tonumber(redis.call('ZSCORE', KEYS[4], id)) or 0\n"
    "if open > now then\n"
    "  redis.call('ZADD', KEYS[3], open, id) return 0 end\n"
    "local sk, ns = KEYS[2], rt[4] or ''\n"
    "if redis.call('EXISTS', sk) == 1 then\n"
    "  redis.call('HSET', sk, 'state', 'pausing')\n"
    "  ns = redis.call('HGET', sk, 'namespace') or ns end\n"
    "redis.call('XADD', KEYS[5], '*', 'op', 'pause', 'user', u, 'name', n,\n"
    "           'namespace', ns, 'image', '', 'requested_at', now,\n"
    "           'reason', 'idle')\n"
    "redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*',\n"
    "  'time', now, 'actor', 'sandbox-syncd', 'key_id', '',\n"
    "  'action', 'sandbox.pause', 'target', u .. '/' .. n, 'client', '',\n"
    "  'request_id', '', 'result', 'ok', 'status', 200,\n"
    "  'reason', 'idle for ' .. (now - last) .. ' s (timeout ' .. t .. ' s)')\n"
    "redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), id)\n"
    "redis.call('PUBLISH', 'sbx:events', 'route ' .. u .. ' ' .. n)\n"
    "return now - last\n" };

static long long now_ms(void) {
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int pause_one(redisContext *c, idle *d, const char *id, long now) {
    redisReply *r;
    int rc = 0;
    char route[160], rec[160], t[24], maxlen[24], retry[24];
    const char *argv[] = { route, rec, "sbx:idle", "sbx:streams", "sbx:ops",
                           "sbx:audit", id, t, maxlen, retry };

    snprintf(route, sizeof(route), "sbx:route:%s", id);
    snprintf(rec, sizeof(rec), "sbx:sandbox:%s", id);
    snprintf(t, sizeof(t), "%ld", now);
    snprintf(maxlen, sizeof(maxlen), "%ld", d->audit_maxlen);
    snprintf(retry, sizeof(retry), "%d", IDLE_RETRY_S);
    r = script_call(c, &idle_pause_script, 6, 10, argv);
    if (r == NULL) return -1;
    if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        syncd_log("idle pause %s: idle for %lld s", id, r->integer);
        rc = 1;
    } else if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "sandbox-syncd: idle pause %s: %s\n", id, r->str);
    }
    freeReplyObject(r);
    return rc;
}

int idle_scan(redisContext *c, idle *d) {
    long long ms = now_ms();
    long now = (long) (ms / 1000);
    redisReply *r;
    size_t i;
    int n = 0, rc;

    if (ms < d->next_ms) return 0;
    d->next_ms = ms + IDLE_SCAN_MS;

    r = redisCommand(c, "ZREMRANGEBYSCORE sbx:streams -inf (%ld", now);
    if (r == NULL) return -1;
    freeReplyObject(r);

    r = redisCommand(c, "ZRANGEBYSCORE sbx:idle -inf %ld LIMIT 0 %d", now,
                     IDLE_PAGE);
    if (r == NULL) return -1;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        rc = pause_one(c, d, r->element[i]->str, now);
        if (rc < 0) { n = -1; break; }
        n += rc;
    }
    freeReplyObject(r);
    return n;
}
