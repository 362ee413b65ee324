
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Key use reports.  The route lookup only reads Redis, and a key answered
 * from the shared cache never reaches it, yet a key's last_used_at should
 * still move: the cache marks a key due at most once per
 * sandbox_last_used_interval across all workers (a key judged by Redis is
 * due when its last_used_at is that old), and each worker gathers its due
 * keys and writes them in one script a second.
 * One command per key was measured to cost: 100,000 keys cached together
 * fell due together, 80,000 commands in ten seconds, and that stretch's
 * throughput dropped by up to 30%.
 *
 * The script only touches keys that still exist, so a report that arrives
 * after a key was deleted cannot bring back a stub of it.  Reports are
 * best effort, like the field: a worker exiting, or Redis down, loses at
 * most the last second's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"
#include "ngx_http_sandbox_script.h"


/* how long a due key waits for company, ms */
#define NGX_HTTP_SANDBOX_USAGE_DELAY  1000

/* keys per command; a full batch goes at once */
#define NGX_HTTP_SANDBOX_USAGE_BATCH  256


/* KEYS: the keys' hashes; ARGV[1]: the time */

static ngx_http_sandbox_script_t  ngx_http_sandbox_usage_lua =
    ngx_http_sandbox_script(
    "for _, k in ipairs(KEYS) do\n"
    "  if redis.call('EXISTS', k) == 1 then\n"
    "    redis.call('HSET', k, 'last_used_at', ARGV[1])\n"
    "  end\n"
    "end\n"
    "return 0\n");

#define NGX_HTTP_SANDBOX_USAGE_KEY_LEN                                        \
    (sizeof("sbx:key:") - 1 + NGX_HTTP_SANDBOX_SHA256_HEX_LEN)


static void ngx_http_sandbox_usage_handler(ngx_event_t *ev);
static void ngx_http_sandbox_usage_flush(void);


static u_char       *ngx_http_sandbox_usage_keys;    /* sbx:key:<hex> */
static ngx_uint_t    ngx_http_sandbox_usage_n;
static ngx_event_t   ngx_http_sandbox_usage_timer;


ngx_int_t
ngx_http_sandbox_usage_init(ngx_cycle_t *cycle)
{
    ngx_http_sandbox_usage_keys = ngx_alloc(NGX_HTTP_SANDBOX_USAGE_BATCH
                                            * NGX_HTTP_SANDBOX_USAGE_KEY_LEN,
                                            cycle->log);
    if (ngx_http_sandbox_usage_keys == NULL) {
        return NGX_ERROR;
    }

    ngx_http_sandbox_usage_n = 0;

    /* the timer must not keep an exiting worker alive */

    ngx_http_sandbox_usage_timer.handler = ngx_http_sandbox_usage_handler;
    ngx_http_sandbox_usage_timer.log = cycle->log;
    ngx_http_sandbox_usage_timer.cancelable = 1;

    return NGX_OK;
}


void
ngx_http_sandbox_usage_exit(void)
{
    if (ngx_http_sandbox_usage_keys == NULL) {
        return;
    }

    /* queued on the link, which is flushed when it closes if it can be */

    ngx_http_sandbox_usage_flush();

    ngx_free(ngx_http_sandbox_usage_keys);
    ngx_http_sandbox_usage_keys = NULL;
}


/* a key by its raw digest; Redis names it in hex */

void
ngx_http_sandbox_usage_add(u_char *digest)
{
    u_char      *p, *q, hex[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    ngx_uint_t   i;

    if (ngx_http_sandbox_usage_keys == NULL) {
        return;
    }

    /*
     * a key judged by Redis is due on each use until the report lands
     * (the cache marks a key due once): each key once per batch
     */

    ngx_hex_dump(hex, digest, NGX_HTTP_SANDBOX_SHA256_LEN);

    q = ngx_http_sandbox_usage_keys + sizeof("sbx:key:") - 1;

    for (i = 0; i < ngx_http_sandbox_usage_n; i++) {
        if (ngx_memcmp(q, hex, NGX_HTTP_SANDBOX_SHA256_HEX_LEN) == 0) {
            return;
        }

        q += NGX_HTTP_SANDBOX_USAGE_KEY_LEN;
    }

    p = ngx_http_sandbox_usage_keys
        + ngx_http_sandbox_usage_n * NGX_HTTP_SANDBOX_USAGE_KEY_LEN;

    p = ngx_cpymem(p, "sbx:key:", sizeof("sbx:key:") - 1);
    ngx_memcpy(p, hex, NGX_HTTP_SANDBOX_SHA256_HEX_LEN);

    if (++ngx_http_sandbox_usage_n == NGX_HTTP_SANDBOX_USAGE_BATCH) {
        ngx_http_sandbox_usage_flush();
        return;
    }

    if (!ngx_http_sandbox_usage_timer.timer_set) {
        ngx_add_timer(&ngx_http_sandbox_usage_timer,
                      NGX_HTTP_SANDBOX_USAGE_DELAY);
    }
}


static void
ngx_http_sandbox_usage_handler(ngx_event_t *ev)
{
    ngx_http_sandbox_usage_flush();
}


static void
ngx_http_sandbox_usage_flush(void)
{
    u_char             *p;
    ngx_uint_t          i;
    static const char  *argv[2 + NGX_HTTP_SANDBOX_USAGE_BATCH];
    static size_t       argvlen[2 + NGX_HTTP_SANDBOX_USAGE_BATCH];
    static u_char       now[NGX_TIME_T_LEN];
    static u_char       num[NGX_INT_T_LEN];

    if (ngx_http_sandbox_usage_timer.timer_set) {
        ngx_del_timer(&ngx_http_sandbox_usage_timer);
    }

    if (ngx_http_sandbox_usage_n == 0) {
        return;
    }

    argv[0] = (const char *) num;
    argvlen[0] = ngx_sprintf(num, "%ui", ngx_http_sandbox_usage_n) - num;

    p = ngx_http_sandbox_usage_keys;

    for (i = 0; i < ngx_http_sandbox_usage_n; i++) {
        argv[1 + i] = (const char *) p;
        argvlen[1 + i] = NGX_HTTP_SANDBOX_USAGE_KEY_LEN;
        p += NGX_HTTP_SANDBOX_USAGE_KEY_LEN;
    }

    argv[1 + i] = (const char *) now;
    argvlen[1 + i] = ngx_sprintf(now, "%T", ngx_time()) - now;

    /* the command is copied out at once; fire and forget */

    (void) ngx_http_sandbox_script_run(ngx_http_sandbox_worker_redis,
                                       &ngx_http_sandbox_usage_lua, NULL,
                                       2 + ngx_http_sandbox_usage_n,
                                       argv, argvlen, NULL, NULL, NULL);

    ngx_http_sandbox_usage_n = 0;
}
