
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Sandbox activity reports, for sandbox-syncd's idle auto-pause.  Activity
 * is a forwarded request, and every moment a request is in flight upstream
 * (an open WebSocket, SSE or MCP stream counts for its whole life).
 *
 * The request path only touches this worker's own table (no lock, no
 * Redis): the sandbox's entry counts one more request in flight and notes
 * the time; a pool cleanup counts it out and notes the time again.  Once a
 * second a sweep writes what is due in one script: at most once per
 * sandbox_last_used_interval and sandbox in this worker, the last activity
 * seen, or "now" while a request is in flight, with an open-stream marker
 * that expires after two intervals unless refreshed, so sandbox-syncd
 * never pauses a sandbox whose stream is open.  Entries idle for two
 * intervals with nothing left to report are freed.
 *
 * Reports are best effort, like key uses: a worker that exits, or Redis
 * down, loses at most the last second's (docs/redis-data-model.md).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_script.h"


#define NGX_HTTP_SANDBOX_ACTIVITY_SWEEP  1000     /* ms */

/* sandboxes per command; a larger sweep sends several */
#define NGX_HTTP_SANDBOX_ACTIVITY_BATCH  128

/* "user:name", both DNS labels */
#define NGX_HTTP_SANDBOX_ACTIVITY_KEY_MAX  128


typedef struct {
    ngx_str_node_t        sn;           /* "user:name" */
    ngx_queue_t           queue;        /* every entry, for the sweep */
    ngx_uint_t            open;         /* requests in flight */
    time_t                last;         /* the last activity seen */
    time_t                reported;     /* when it was last written */
    time_t                reported_last;    /* what was written */
    time_t                interval;
    u_char                data[1];
} ngx_http_sandbox_activity_t;


/*
 * KEYS: sbx:idle, sbx:streams, then each sandbox's route.  ARGV: triples
 * of member ("user:name"), last activity, open-stream expiry (0: none).
 * The route's active_at only moves forward (a late report never moves it
 * back), and only on a route that exists: a sandbox deleted meanwhile is
 * not brought back.  sbx:idle (XX: running sandboxes with a timeout only)
 * is scored by when the sandbox falls idle: the time plus the route's
 * idle_timeout.
 */

static ngx_http_sandbox_script_t  ngx_http_sandbox_activity_lua =
    ngx_http_sandbox_script(
    "for i = 1, #ARGV, 3 do\n"
    "  local m, t, u = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]\n"
    "  local rk = KEYS[2 + (i + 2) / 3]\n"
    "  local r = redis.call('HMGET', rk, 'rv', 'active_at', 'idle_timeout')\n"
    "  if r[1] then\n"
    "    if t > (tonumber(r[2] or '') or 0) then\n"
    "      redis.call('HSET', rk, 'active_at', t) end\n"
    "    local to = tonumber(r[3] or '')\n"
    "    if to and to > 0 then\n"
    "      redis.call('ZADD', KEYS[1], 'XX', 'GT', t + to, m) end\n"
    "    if u ~= '0' then redis.call('ZADD', KEYS[2], 'GT', u, m) end\n"
    "  end\n"
    "end\n"
    "return 0\n");


static void ngx_http_sandbox_activity_done(void *data);
static void ngx_http_sandbox_activity_sweep(ngx_event_t *ev);
static void ngx_http_sandbox_activity_report(ngx_http_sandbox_activity_t *a,
    time_t t, time_t until);
static void ngx_http_sandbox_activity_flush(void);


static ngx_rbtree_t          ngx_http_sandbox_activity_tree;
static ngx_rbtree_node_t     ngx_http_sandbox_activity_sentinel;
static ngx_queue_t           ngx_http_sandbox_activity_all;
static ngx_event_t           ngx_http_sandbox_activity_timer;
static ngx_uint_t            ngx_http_sandbox_activity_ready;

/*
 * The batch being filled: its entries (the keys, then ARGV, are put
 * together when it is sent) and the text they point to.
 */

typedef struct {
    ngx_http_sandbox_activity_t  *a;
    size_t                        tlen;
    size_t                        ulen;
    u_char                        key[sizeof("sbx:route:") - 1
                                      + NGX_HTTP_SANDBOX_ACTIVITY_KEY_MAX];
    u_char                        t[NGX_TIME_T_LEN];
    u_char                        until[NGX_TIME_T_LEN];
} ngx_http_sandbox_activity_report_t;

static ngx_http_sandbox_activity_report_t
                             ngx_http_sandbox_activity_batch[
                                 NGX_HTTP_SANDBOX_ACTIVITY_BATCH];
static ngx_uint_t            ngx_http_sandbox_activity_n;


ngx_int_t
ngx_http_sandbox_activity_init(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_http_sandbox_activity_tree,
                    &ngx_http_sandbox_activity_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_http_sandbox_activity_all);

    ngx_http_sandbox_activity_n = 0;

    /* the timer must not keep an exiting worker alive */

    ngx_http_sandbox_activity_timer.handler = ngx_http_sandbox_activity_sweep;
    ngx_http_sandbox_activity_timer.log = cycle->log;
    ngx_http_sandbox_activity_timer.cancelable = 1;

    ngx_http_sandbox_activity_ready = 1;

    return NGX_OK;
}


/*
 * What is due goes now.  No request's cleanup runs after this: a worker
 * exits once its requests have ended, or without ending them (their
 * pools are never destroyed), so the entries can go.
 */

void
ngx_http_sandbox_activity_exit(void)
{
    ngx_queue_t                  *q;
    ngx_http_sandbox_activity_t  *a;

    if (!ngx_http_sandbox_activity_ready) {
        return;
    }

    ngx_http_sandbox_activity_sweep(NULL);
    ngx_http_sandbox_activity_ready = 0;

    while (!ngx_queue_empty(&ngx_http_sandbox_activity_all)) {
        q = ngx_queue_head(&ngx_http_sandbox_activity_all);
        a = ngx_queue_data(q, ngx_http_sandbox_activity_t, queue);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&ngx_http_sandbox_activity_tree, &a->sn.node);
        ngx_free(a);
    }
}


/* a request forwarded to the sandbox: in flight until its pool goes */

ngx_int_t
ngx_http_sandbox_activity_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *name, ngx_msec_t interval)
{
    u_char                       *p;
    uint32_t                      hash;
    ngx_str_t                     key;
    ngx_pool_cleanup_t           *cln;
    ngx_http_sandbox_activity_t  *a;
    u_char                        buf[NGX_HTTP_SANDBOX_ACTIVITY_KEY_MAX];

    if (!ngx_http_sandbox_activity_ready
        || user->len + name->len + 1 > NGX_HTTP_SANDBOX_ACTIVITY_KEY_MAX)
    {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, user->data, user->len);
    *p++ = ':';
    p = ngx_cpymem(p, name->data, name->len);

    key.data = buf;
    key.len = p - buf;
    hash = ngx_crc32_short(key.data, key.len);

    a = (ngx_http_sandbox_activity_t *)
            ngx_str_rbtree_lookup(&ngx_http_sandbox_activity_tree, &key, hash);

    if (a == NULL) {
        a = ngx_alloc(offsetof(ngx_http_sandbox_activity_t, data) + key.len,
                      r->connection->log);
        if (a == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(a, offsetof(ngx_http_sandbox_activity_t, data));
        ngx_memcpy(a->data, key.data, key.len);

        a->sn.node.key = hash;
        a->sn.str.data = a->data;
        a->sn.str.len = key.len;

        ngx_rbtree_insert(&ngx_http_sandbox_activity_tree, &a->sn.node);
        ngx_queue_insert_tail(&ngx_http_sandbox_activity_all, &a->queue);

        if (!ngx_http_sandbox_activity_timer.timer_set) {
            ngx_add_timer(&ngx_http_sandbox_activity_timer,
                          NGX_HTTP_SANDBOX_ACTIVITY_SWEEP);
        }
    }

    a->open++;
    a->last = ngx_time();
    a->interval = (time_t) (interval / 1000);

    cln->handler = ngx_http_sandbox_activity_done;
    cln->data = a;

    return NGX_OK;
}


static void
ngx_http_sandbox_activity_done(void *data)
{
    ngx_http_sandbox_activity_t *a = data;

    a->open--;
    a->last = ngx_time();
}


static void
ngx_http_sandbox_activity_sweep(ngx_event_t *ev)
{
    time_t                        now;
    ngx_queue_t                  *q, *next;
    ngx_http_sandbox_activity_t  *a;

    now = ngx_time();

    for (q = ngx_queue_head(&ngx_http_sandbox_activity_all);
         q != ngx_queue_sentinel(&ngx_http_sandbox_activity_all);
         q = next)
    {
        next = ngx_queue_next(q);
        a = ngx_queue_data(q, ngx_http_sandbox_activity_t, queue);

        if (now - a->reported < a->interval) {
            continue;
        }

        /* a stream open: the sandbox is busy now, and stays marked so */

        if (a->open) {
            ngx_http_sandbox_activity_report(a, now, now + 2 * a->interval);
            continue;
        }

        if (a->last > a->reported_last) {
            ngx_http_sandbox_activity_report(a, a->last, 0);
            continue;
        }

        if (now - a->last >= 2 * a->interval && ev != NULL) {
            ngx_queue_remove(q);
            ngx_rbtree_delete(&ngx_http_sandbox_activity_tree, &a->sn.node);
            ngx_free(a);
        }
    }

    ngx_http_sandbox_activity_flush();

    if (ev != NULL && !ngx_queue_empty(&ngx_http_sandbox_activity_all)) {
        ngx_add_timer(&ngx_http_sandbox_activity_timer,
                      NGX_HTTP_SANDBOX_ACTIVITY_SWEEP);
    }
}


static void
ngx_http_sandbox_activity_report(ngx_http_sandbox_activity_t *a, time_t t,
    time_t until)
{
    u_char                              *p;
    ngx_http_sandbox_activity_report_t  *rp;

    a->reported = ngx_time();
    a->reported_last = t;

    rp = &ngx_http_sandbox_activity_batch[ngx_http_sandbox_activity_n];

    rp->a = a;
    p = ngx_cpymem(rp->key, "sbx:route:", sizeof("sbx:route:") - 1);
    ngx_memcpy(p, a->data, a->sn.str.len);
    rp->tlen = ngx_sprintf(rp->t, "%T", t) - rp->t;
    rp->ulen = ngx_sprintf(rp->until, "%T", until) - rp->until;

    if (++ngx_http_sandbox_activity_n == NGX_HTTP_SANDBOX_ACTIVITY_BATCH) {
        ngx_http_sandbox_activity_flush();
    }
}


static void
ngx_http_sandbox_activity_flush(void)
{
    u_char                              *num;
    ngx_uint_t                           i, n, k;
    ngx_http_sandbox_activity_report_t  *rp;
    static u_char                        numkeys[NGX_INT_T_LEN];
    static const char                   *argv[3 + 4
                                             * NGX_HTTP_SANDBOX_ACTIVITY_BATCH];
    static size_t                        argvlen[3 + 4
                                             * NGX_HTTP_SANDBOX_ACTIVITY_BATCH];

    n = ngx_http_sandbox_activity_n;

    if (n == 0) {
        return;
    }

    num = numkeys;
    argv[0] = (const char *) num;
    argvlen[0] = ngx_sprintf(num, "%ui", 2 + n) - num;
    argv[1] = "sbx:idle";
    argvlen[1] = sizeof("sbx:idle") - 1;
    argv[2] = "sbx:streams";
    argvlen[2] = sizeof("sbx:streams") - 1;

    k = 3;

    for (i = 0; i < n; i++) {
        rp = &ngx_http_sandbox_activity_batch[i];
        argv[k] = (const char *) rp->key;
        argvlen[k++] = sizeof("sbx:route:") - 1 + rp->a->sn.str.len;
    }

    for (i = 0; i < n; i++) {
        rp = &ngx_http_sandbox_activity_batch[i];
        argv[k] = (const char *) rp->a->data;
        argvlen[k++] = rp->a->sn.str.len;
        argv[k] = (const char *) rp->t;
        argvlen[k++] = rp->tlen;
        argv[k] = (const char *) rp->until;
        argvlen[k++] = rp->ulen;
    }

    /* the command is copied out at once; fire and forget */

    (void) ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                       &ngx_http_sandbox_activity_lua, NULL,
                                       k, argv, argvlen, NULL, NULL, NULL);

    ngx_http_sandbox_activity_n = 0;
}
