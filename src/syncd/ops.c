/*
 * ops.c - the operations queue: a Redis stream read by the consumer group
 * "syncd".  An entry is acknowledged only once Kubernetes has answered:
 * a transport error or a 5xx leaves it pending, to be tried again.  Every
 * operation is idempotent (409 on create and 404 on delete count as done),
 * so a redelivery after a crash is harmless.  401 is retried too (the
 * token file has been re-read by then).  A refusal (403, 422 ...) is
 * an answer too: its message is written to the sandbox's record, where the
 * API shows it, and the entry is acknowledged.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idle.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "route.h"
#include "store.h"

typedef struct op {
    const char *id, *op, *user, *name, *namespace, *image;
    const char *idle_timeout;   /* create: seconds, "" for the default */
} op;

static const char *field(redisReply *fields, const char *name) {
    size_t i;

    for (i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1]->str;
    return "";
}

/* the template with ${NAME}, ${USER}, ${NAMESPACE}, ${IMAGE} filled in */
static void fill(json_t *j, const op *p) {
    const char *k;
    size_t i;
    json_t *v;

    if (json_is_object(j)) {
        json_object_foreach(j, k, v) fill(v, p);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) fill(v, p);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        const char *vals[4] = { p->name, p->user, p->namespace, p->image };
        const char *keys[4] = { "${NAME}", "${USER}", "${NAMESPACE}", "${IMAGE}" };
        char out[1024];
        size_t n = 0;

        while (*s && n < sizeof(out) - 1) {
            int hit = 0;
            for (i = 0; i < 4; i++) {
                size_t kl = strlen(keys[i]);
                if (strncmp(s, keys[i], kl) == 0) {
                    n += snprintf(out + n, sizeof(out) - n, "%s", vals[i]);
                    if (n >= sizeof(out)) n = sizeof(out) - 1;
                    s += kl;
                    hit = 1;
                    break;
                }
            }
            if (!hit) out[n++] = *s++;
        }
        out[n] = '\0';
        json_string_set(j, out);
    }
}

/* the API's idle_timeout becomes the annotation idle.c reads */
static void idle_annotate(json_t *obj, const char *idle_timeout) {
    json_t *meta, *ann;

    if (*idle_timeout == '\0' || route_duration(idle_timeout) < 0) return;
    meta = json_object_get(obj, "metadata");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(obj, "metadata", meta);
    }
    ann = json_object_get(meta, "annotations");
    if (!json_is_object(ann)) {
        ann = json_object();
        json_object_set_new(meta, "annotations", ann);
    }
    json_object_set_new(ann, ROUTE_IDLE_ANNOTATION, json_string(idle_timeout));
}

static const char *message(json_t *status) {
    const char *m = json_string_value(json_object_get(status, "message"));
    return m ? m : "no answer from Kubernetes";
}

static long long now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* the outcome written to the sandbox's record, if the API still has one.
 * KEYS: sbx:sandbox:<user>:<name> (the only key: none found from data) */
static script failed_script = { .text =
    "if redis.call('EXISTS', KEYS[1]) == 1 then "
    "redis.call('HSET', KEYS[1], 'error', ARGV[1], 'error_at', ARGV[2]) end" };

static script done_script = { .text =
    "if redis.call('EXISTS', KEYS[1]) == 1 then "
    "redis.call('HSET', KEYS[1], 'state', ARGV[1]) "
    "redis.call('HDEL', KEYS[1], 'error', 'error_at') end" };

static script *const ops_scripts[] = { &failed_script, &done_script,
                                       &idle_pause_script };

redisContext *ops_connect(const char *addr) {
    return store_connect(addr, ops_scripts,
                         sizeof(ops_scripts) / sizeof(ops_scripts[0]));
}

/* 0 once Redis answered (an error reply is only logged); -1 if it did
 * not (connection lost, the script could not be loaded again): the
 * entry then stays pending, to be carried out and recorded again */
static int record(ops *o, const op *p, const char *state, const char *error) {
    char key[256], at[24];
    const char *argv[3] = { key, error ? error : state, at };
    int kind = metrics_op_kind(p->op), rc;
    redisReply *rep;

    snprintf(key, sizeof(key), "sbx:sandbox:%s:%s", p->user, p->name);
    snprintf(at, sizeof(at), "%ld", (long) time(NULL));
    rep = script_call(o->redis, error ? &failed_script : &done_script,
                      1, error ? 3 : 2, argv);
    rc = rep ? 0 : -1;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        syncd_log("%s %s/%s: not recorded: %s", p->op, p->user, p->name,
                  rep ? rep->str : o->redis->errstr);
    else if (kind >= 0 && error)
        METRIC_INC(ops_failed[kind]);
    else if (kind >= 0)
        METRIC_INC(ops_done[kind]);
    freeReplyObject(rep);
    return rc;
}

/* returns 1 when Kubernetes answered (ack), 0 to retry later */
static int carry_out(ops *o, const op *p) {
    char path[512], body[256];
    const char *state = "active", *ct = NULL, *method;
    json_t *obj = NULL, *out = NULL;
    char *text = NULL;
    long status;
    int beta = strcmp(o->api_version, "v1beta1") == 0, rc;

    if (!route_label_valid(p->name) || !route_label_valid(p->user)
        || !route_label_valid(p->namespace)) {
        return record(o, p, NULL, "invalid operation") == 0;
    }
    snprintf(path, sizeof(path),
             "/apis/agents.x-k8s.io/%s/namespaces/%s/sandboxes",
             o->api_version, p->namespace);

    if (strcmp(p->op, "create") == 0) {
        /* per-user namespaces: make sure it exists (409 is fine) */
        snprintf(body, sizeof(body),
                 "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
                 "\"metadata\":{\"name\":\"%s\"}}", p->namespace);
        status = kube_send(o->k, "POST", "/api/v1/namespaces", body, NULL,
                           &out);
        json_decref(out);
        out = NULL;
        if (status == 0 || status == 401 || status >= 500) return 0;
        obj = json_deep_copy(o->template);
        fill(obj, p);
        idle_annotate(obj, p->idle_timeout);
        if (wrap_sandbox(obj, &o->wrap) == 1)
            syncd_log("create %s/%s: %s wrapped by sandbox-agent", p->user,
                      p->name, p->image);
        json_object_set_new(obj, "apiVersion",
            json_sprintf("agents.x-k8s.io/%s", o->api_version));
        text = json_dumps(obj, JSON_COMPACT);
        method = "POST";
    } else {
        size_t len = strlen(path);
        snprintf(path + len, sizeof(path) - len, "/%s", p->name);
        if (strcmp(p->op, "delete") == 0) {
            method = "DELETE";
            state = "deleted";
        } else if (strcmp(p->op, "pause") == 0 || strcmp(p->op, "resume") == 0) {
            int pause = p->op[0] == 'p';
            method = "PATCH";
            ct = "application/merge-patch+json";
            text = strdup(beta
                ? (pause ? "{\"spec\":{\"operatingMode\":\"Suspended\"}}"
                         : "{\"spec\":{\"operatingMode\":\"Running\"}}")
                : (pause ? "{\"spec\":{\"replicas\":0}}"
                         : "{\"spec\":{\"replicas\":1}}"));
            state = pause ? "paused" : "active";
        } else {
            return record(o, p, NULL, "unknown operation") == 0;
        }
    }

    status = kube_send(o->k, method, path, text, ct, &out);
    free(text);
    json_decref(obj);
    if (status)
        syncd_log("%s %s/%s: HTTP %ld", p->op, p->user, p->name, status);
    else
        syncd_log("%s %s/%s: no answer", p->op, p->user, p->name);

    /* no answer, or a token that has just been rotated: try again */

    if (status == 0 || status == 401 || status >= 500) {
        json_decref(out);
        return 0;
    }
    if ((status >= 200 && status < 300)
        || (status == 409 && strcmp(p->op, "create") == 0)
        || (status == 404 && strcmp(p->op, "delete") == 0))
        rc = record(o, p, state, NULL);
    else
        rc = record(o, p, NULL, message(out));

    json_decref(out);
    return rc == 0;
}

/* returns how many entries the reply had; *left, how many of them are
 * still pending (not acknowledged) */
static int handle(ops *o, redisReply *reply, int *left_out) {
    size_t i;
    redisReply *entries, *r;
    long long start;
    int kind, left = 0;

    *left_out = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) return 0;
    entries = reply->element[0]->element[1];
    for (i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i], *f = e->element[1];
        op p;

        p.id = e->element[0]->str;
        if (f->type != REDIS_REPLY_ARRAY) {
            /* trimmed away while pending: nothing to carry out */
            freeReplyObject(redisCommand(o->redis, "XACK sbx:ops syncd %s",
                                         p.id));
            continue;
        }
        p.op = field(f, "op");
        p.user = field(f, "user");
        p.name = field(f, "name");
        p.namespace = field(f, "namespace");
        p.image = field(f, "image");
        p.idle_timeout = field(f, "idle_timeout");

        start = now_ms();
        if (!carry_out(o, &p)) {
            left++;
            continue;
        }
        kind = metrics_op_kind(p.op);
        if (metrics && kind >= 0)
            metrics_observe(&metrics->op_time[kind], now_ms() - start);
        r = redisCommand(o->redis, "XACK sbx:ops syncd %s", p.id);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) left++;
        freeReplyObject(r);
    }
    *left_out = left;
    return (int) entries->elements;
}

/* every entry pending for another consumer becomes this one's */
static int claim(ops *o) {
    char cursor[64] = "0-0";
    redisReply *r;

    do {
        r = redisCommand(o->redis, "XAUTOCLAIM sbx:ops syncd %s 0 %s "
                         "COUNT 100 JUSTID", o->consumer, cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2
            || r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        freeReplyObject(r);
    } while (strcmp(cursor, "0-0") != 0);
    return 0;
}

/* one XREADGROUP, of the consumer's pending entries ("0": no BLOCK,
 * which would not apply to them) or of new ones (">"); -1 when Redis did
 * not answer or refused.  NOGROUP (the stream was deleted, or Redis
 * restarted empty) has the group made again at once. */
static int read_group(ops *o, int pending, long block_ms) {
    redisReply *r;
    int n, left;

    r = pending
        ? redisCommand(o->redis, "XREADGROUP GROUP syncd %s COUNT 50 "
                       "STREAMS sbx:ops 0", o->consumer)
        : redisCommand(o->redis, "XREADGROUP GROUP syncd %s COUNT 50 "
                       "BLOCK %ld STREAMS sbx:ops >", o->consumer, block_ms);
    if (r == NULL) {
        METRIC_INC(redis_errors);
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int nogroup = strncmp(r->str, "NOGROUP", 7) == 0;

        syncd_log("sbx:ops: %s", r->str);
        o->grouped = 0;
        freeReplyObject(r);
        return nogroup ? 0 : -1;
    }
    n = handle(o, r, &left);
    /* pending ones read again until a read of them finds none */
    if ((pending && n > 0) || left > 0) o->pending = 1;
    freeReplyObject(r);
    return 0;
}

/*
 * Only the blocking read runs each round: the group is made once (not
 * once a round), and the consumer's pending entries are read again only
 * when some are left (at the start, after a claim, after an operation
 * Kubernetes did not answer).  An operation queued while the daemon is
 * between two reads waits for no extra round trip.
 */
int ops_round(ops *o, long block_ms) {
    redisReply *r;

    if (!o->grouped) {
        r = redisCommand(o->redis, "XGROUP CREATE sbx:ops syncd 0 MKSTREAM");
        if (r == NULL) {
            METRIC_INC(redis_errors);
            return -1;
        }
        freeReplyObject(r);     /* BUSYGROUP: it exists already */
        o->grouped = 1;
        o->pending = 1;
    }
    if (!o->claimed) {
        if (claim(o) != 0) return -1;
        o->claimed = 1;
        o->pending = 1;
    }

    if (o->pending) {
        o->pending = 0;
        if (read_group(o, 1, 0) != 0) return -1;
    }
    return read_group(o, 0, block_ms);
}
