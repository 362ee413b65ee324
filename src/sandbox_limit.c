
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The limits' arithmetic: see sandbox_limit.h.  The bucket is limit_req's
 * (ngx_http_limit_req_module.c): it holds a level, thousandths of a
 * request, drained at the rate; each request adds 1000, and a request
 * that would take it past (burst + 1) * 1000 is refused without changing
 * it.
 */


#include <stdio.h>
#include <string.h>

#include "sandbox_limit.h"


/* a day: any bucket is empty after that long */
#define SBX_LIMIT_IDLE_MS  86400000ULL


uint64_t
sbx_limit_rate_parse(const char *p, size_t len)
{
    size_t    i;
    uint64_t  n;

    /* "<digits>r/s" or "<digits>r/m" */

    if (len < 4 || len > 7 + 3 || p[len - 3] != 'r' || p[len - 2] != '/') {
        return 0;
    }

    n = 0;

    for (i = 0; i < len - 3; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        n = n * 10 + (uint64_t) (p[i] - '0');
    }

    if (n == 0 || n > SBX_LIMIT_MAX) {
        return 0;
    }

    switch (p[len - 1]) {

    case 's':
        return n * 1000;

    case 'm':
        /* as limit_req: 1r/m is 16 thousandths a second, never 0 */
        return (n * 1000 / 60) ? n * 1000 / 60 : 1;

    default:
        return 0;
    }
}


uint32_t
sbx_limit_conc_parse(const char *p, size_t len)
{
    size_t    i;
    uint32_t  n;

    if (len == 0 || len > 7) {
        return 0;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        n = n * 10 + (uint32_t) (p[i] - '0');
    }

    return n <= SBX_LIMIT_MAX ? n : 0;
}


static uint64_t
sbx_limit_ceil_s(uint64_t ms)
{
    return (ms + 999) / 1000;
}


int
sbx_limit_bucket(const sbx_bucket_t *b, uint64_t now, uint64_t rate,
    uint64_t burst, uint64_t *next, sbx_limit_info_t *info)
{
    int64_t   ms;
    uint64_t  cur, drained, level, cap;

    ms = (int64_t) (now - b->last);

    if (ms < -60000) {
        ms = 1;

    } else if (ms < 0) {
        ms = 0;
    }

    if ((uint64_t) ms >= SBX_LIMIT_IDLE_MS) {
        cur = 0;

    } else {
        drained = rate * (uint64_t) ms / 1000;
        cur = b->level > drained ? b->level - drained : 0;
    }

    /*
     * The level counts the request itself: limit_req's "excess" is the
     * level less 1000, so its test "excess > burst" is this one.
     */

    level = cur + 1000;
    cap = (burst + 1) * 1000;

    if (level > cap) {
        if (info) {
            info->limit = burst + 1;
            info->remaining = 0;
            info->reset = sbx_limit_ceil_s(cur * 1000 / rate);
            info->retry_after = sbx_limit_ceil_s((level - cap) * 1000 / rate);

            if (info->retry_after == 0) {
                info->retry_after = 1;
            }
        }

        return 1;
    }

    *next = level;

    if (info) {
        info->limit = burst + 1;
        info->remaining = (cap - level) / 1000;
        info->reset = sbx_limit_ceil_s(level * 1000 / rate);
        info->retry_after = 0;
    }

    return 0;
}


int
sbx_limit_fields(const json_t *body, sbx_limit_fields_t *out, char *err)
{
    json_t      *v;
    json_int_t   n;

    memset(out, 0, sizeof(sbx_limit_fields_t));

    v = json_is_object(body) ? json_object_get(body, "rate_limit") : NULL;

    if (v == NULL) {
        out->rate_op = SBX_LIMIT_KEEP;

    } else if (json_is_null(v)) {
        out->rate_op = SBX_LIMIT_CLEAR;

    } else if (json_is_string(v)
               && sbx_limit_rate_parse(json_string_value(v),
                                       json_string_length(v))
               && strlen(json_string_value(v)) == json_string_length(v))
    {
        out->rate_op = SBX_LIMIT_SET;
        out->rate = json_string_value(v);
        out->rate_len = json_string_length(v);

    } else {
        snprintf(err, SBX_LIMIT_ERR_MAX, "%s", SBX_LIMIT_RATE_RULE);
        return -1;
    }

    v = json_is_object(body) ? json_object_get(body, "max_concurrent")
                             : NULL;

    if (v == NULL) {
        out->conc_op = SBX_LIMIT_KEEP;
        return 0;
    }

    if (json_is_null(v)) {
        out->conc_op = SBX_LIMIT_CLEAR;
        return 0;
    }

    n = json_is_integer(v) ? json_integer_value(v) : 0;

    if (n < 1 || n > SBX_LIMIT_MAX) {
        snprintf(err, SBX_LIMIT_ERR_MAX, "%s", SBX_LIMIT_CONC_RULE);
        return -1;
    }

    out->conc_op = SBX_LIMIT_SET;
    out->conc = (uint64_t) n;

    return 0;
}
