
/*
 * Copyright (C) The sandbox gateway authors
 *
 * GET /health: the gateway is healthy while it serves; the answer also
 * says whether Redis answered, how many routes it holds, and how far the
 * route table can be trusted (sbx:sync, as sandbox-syncd wrote it).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_api.h"


static json_t *ngx_http_sandbox_api_sync(ngx_http_request_t *r, json_t *raw);


/* reply: the health script's {status, JSON}, or NULL when Redis is down */

ngx_int_t
ngx_http_sandbox_api_health(ngx_http_request_t *r, redisReply *reply)
{
    json_t        *j, *health;
    json_error_t   err;

    j = NULL;

    if (reply && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2
        && reply->element[1]->type == REDIS_REPLY_STRING)
    {
        j = json_loadb(reply->element[1]->str, reply->element[1]->len, 0,
                       &err);
    }

    health = json_pack("{ss so ss}", "status", "ok",
                       "timestamp", ngx_http_sandbox_api_iso(ngx_time()),
                       "database", j ? "connected" : "disconnected");
    if (health == NULL) {
        json_decref(j);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (j) {
        json_object_set(health, "sandboxes", json_object_get(j, "routes"));
        json_object_set_new(health, "sync",
                            ngx_http_sandbox_api_sync(r,
                                json_object_get(j, "sync")));
        json_decref(j);
    }

    return ngx_http_sandbox_send_json(r, NGX_HTTP_OK, health);
}


/*
 * sbx:sync as sandbox-syncd wrote it, judged: routes are trustworthy
 * ("synced") while the daemon has listed everything and its view was
 * current within sandbox_sync_max_lag.  The lag is computed here, so a
 * daemon that died, and stopped writing, shows as stale.  "sandbox_metrics"
 * judges the same way.
 */

const char *
ngx_http_sandbox_api_sync_state(json_t *raw, ngx_msec_t max_lag,
    long long *lagp)
{
    const char  *state, *s;
    long long    synced_at, now, lag;
    ngx_time_t  *tp;

    s = json_string_value(json_object_get(raw, "synced_at"));
    synced_at = s ? strtoll(s, NULL, 10) : 0;

    tp = ngx_timeofday();
    now = (long long) tp->sec * 1000 + tp->msec;
    lag = synced_at > 0 ? now - synced_at : -1;

    s = json_string_value(json_object_get(raw, "listed"));

    if (json_object_size(raw) == 0) {
        state = "unknown";

    } else if (s == NULL || ngx_strcmp(s, "1") != 0) {
        state = "listing";

    } else if (synced_at <= 0 || lag > (long long) max_lag
               || -lag > (long long) max_lag)
    {
        /* far in the future is a wrong clock, which would hide a stop */
        state = "stale";

    } else {
        state = "synced";
    }

    if (lag < 0 && synced_at > 0) {
        lag = 0;                /* clocks a little apart */
    }

    *lagp = lag;

    return state;
}


static json_t *
ngx_http_sandbox_api_sync(ngx_http_request_t *r, json_t *raw)
{
    json_t                       *sync;
    const char                   *state, *s;
    long long                     lag;
    ngx_http_sandbox_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sandbox_module);

    state = ngx_http_sandbox_api_sync_state(raw, slcf->sync_max_lag, &lag);

    sync = json_pack("{ss sb sI}", "state", state,
                     "routes_trustworthy", ngx_strcmp(state, "synced") == 0,
                     "lag_ms", (json_int_t) lag);
    if (sync == NULL) {
        return json_null();
    }

    s = json_string_value(json_object_get(raw, "leader"));
    if (s) {
        json_object_set_new(sync, "leader", json_string(s));
    }

    s = json_string_value(json_object_get(raw, "resource_version"));
    if (s) {
        json_object_set_new(sync, "resource_version", json_string(s));
    }

    return sync;
}

