
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The lookup script's reply, read as the module reads it: every element
 * is checked for its type before use, and whatever is not the script's
 * shape is refused rather than guessed at.
 */


#include <stdint.h>
#include <string.h>

#include "sandbox_reply.h"


#define SBX_TIME_T_MAX                                                        \
    ((time_t) (sizeof(time_t) == 8 ? INT64_MAX : INT32_MAX))


static void *sbx_reply_create_string(const redisReadTask *task, char *str,
    size_t len);
static void *sbx_reply_create_array(const redisReadTask *task,
    int elements);
static void *sbx_reply_create_integer(const redisReadTask *task,
    long long value);
static void *sbx_reply_create_nil(const redisReadTask *task);


/* hiredis's own objects, through a check of array lengths */

static redisReplyObjectFunctions  sbx_reply_functions = {
    sbx_reply_create_string,
    sbx_reply_create_array,
    sbx_reply_create_integer,
    sbx_reply_create_nil,
    freeReplyObject
};


static int
sbx_reply_is(const redisReply *el, const char *s)
{
    size_t  len;

    len = strlen(s);

    return (el->type == REDIS_REPLY_STRING || el->type == REDIS_REPLY_STATUS)
           && el->len == len && memcmp(el->str, s, len) == 0;
}


/* a string element, or "" for anything else */

static void
sbx_reply_string(const redisReply *el, sbx_reply_str_t *dst)
{
    if (el->type == REDIS_REPLY_STRING && el->len > 0) {
        dst->data = el->str;
        dst->len = el->len;

    } else {
        dst->data = "";
        dst->len = 0;
    }
}


/* decimal seconds, as ngx_atotm() reads them; -1 for anything else */

static time_t
sbx_reply_time(const char *p, size_t len)
{
    time_t  value, cutoff, cutlim;

    if (len == 0) {
        return -1;
    }

    cutoff = SBX_TIME_T_MAX / 10;
    cutlim = SBX_TIME_T_MAX % 10;

    for (value = 0; len--; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        if (value >= cutoff && (value > cutoff || *p - '0' > cutlim)) {
            return -1;
        }

        value = value * 10 + (*p - '0');
    }

    return value;
}


static uint64_t
sbx_reply_rate(const redisReply *el)
{
    return el->type == REDIS_REPLY_STRING
           ? sbx_limit_rate_parse(el->str, el->len) : 0;
}


static uint32_t
sbx_reply_conc(const redisReply *el)
{
    return el->type == REDIS_REPLY_STRING
           ? sbx_limit_conc_parse(el->str, el->len) : 0;
}


static int
sbx_reply_route(redisReply **el, size_t n, sbx_lookup_t *out)
{
    /* no route part: the key was refused or belongs to another user */

    if (n == 0) {
        return SBX_REPLY_OK;
    }

    if (sbx_reply_is(el[0], "none")) {
        out->route_state = SBX_ROUTE_NONE;
        return SBX_REPLY_OK;
    }

    if (sbx_reply_is(el[0], "pending")) {
        out->route_state = SBX_ROUTE_PENDING;
        return SBX_REPLY_OK;
    }

    /* "route", addr, ready, suspended */

    if (n < 4 || !sbx_reply_is(el[0], "route")) {
        return SBX_REPLY_MALFORMED;
    }

    sbx_reply_string(el[1], &out->addr);

    out->route_state = (sbx_reply_is(el[2], "1") && !sbx_reply_is(el[3], "1"))
                       ? SBX_ROUTE_READY : SBX_ROUTE_NOT_READY;

    return SBX_REPLY_OK;
}


int
sbx_lookup_reply_parse(const redisReply *reply, sbx_lookup_t *out)
{
    size_t        n;
    redisReply  **el;

    memset(out, 0, sizeof(sbx_lookup_t));

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0)
    {
        return SBX_REPLY_FAILED;
    }

    el = reply->element;
    n = reply->elements;

    if (sbx_reply_is(el[0], "nokey")) {
        out->key_state = SBX_KEY_UNKNOWN;
        out->user.data = "";
        out->id.data = "";
        return SBX_REPLY_OK;
    }

    if (!sbx_reply_is(el[0], "key")) {
        return sbx_reply_route(el + 1, n - 1, out);
    }

    /* "key", user, id, expires_at, active, user's active ("" = no user) */

    if (n < 6) {
        return SBX_REPLY_MALFORMED;
    }

    sbx_reply_string(el[1], &out->user);
    sbx_reply_string(el[2], &out->id);

    if (el[3]->type == REDIS_REPLY_STRING && el[3]->len > 0) {
        out->expires = sbx_reply_time(el[3]->str, el[3]->len);

        if (out->expires == -1) {
            out->expires = 1;     /* unreadable expiry: treat as expired */
        }
    }

    if (sbx_reply_is(el[4], "0")) {
        out->key_state = SBX_KEY_INACTIVE;

    } else if (sbx_reply_is(el[5], "")) {
        out->key_state = SBX_KEY_UNKNOWN;

    } else if (!sbx_reply_is(el[5], "1")) {
        out->key_state = SBX_KEY_USER_INACTIVE;

    } else {
        out->key_state = SBX_KEY_VALID;
    }

    if (n >= 11 && sbx_reply_is(el[6], "limits")) {
        out->limits.rate = (uint32_t) sbx_reply_rate(el[7]);
        out->limits.conc = sbx_reply_conc(el[8]);
        out->limits.user_rate = (uint32_t) sbx_reply_rate(el[9]);
        out->limits.user_conc = sbx_reply_conc(el[10]);

        return sbx_reply_route(el + 11, n - 11, out);
    }

    return sbx_reply_route(el + 6, n - 6, out);
}


/*
 * hiredis 0.14 allocates an array's element pointers as soon as it reads
 * the count: "*999999999\r\n", 12 bytes, would cost 8 GB (found by
 * t/fuzz/fuzz_reply.c).  The reader's privdata holds hiredis's default
 * functions, which each task carries; a longer array than the module ever
 * reads is refused as out of memory, a reader error.
 */

redisReader *
sbx_reply_reader_create(void)
{
    redisReader  *reader;

    reader = redisReaderCreate();
    if (reader == NULL) {
        return NULL;
    }

    reader->privdata = reader->fn;
    reader->fn = &sbx_reply_functions;

    return reader;
}


static void *
sbx_reply_create_string(const redisReadTask *task, char *str, size_t len)
{
    return ((redisReplyObjectFunctions *) task->privdata)
               ->createString(task, str, len);
}


static void *
sbx_reply_create_array(const redisReadTask *task, int elements)
{
    if (elements > SBX_REPLY_MAX_ELEMENTS) {
        return NULL;
    }

    return ((redisReplyObjectFunctions *) task->privdata)
               ->createArray(task, elements);
}


static void *
sbx_reply_create_integer(const redisReadTask *task, long long value)
{
    return ((redisReplyObjectFunctions *) task->privdata)
               ->createInteger(task, value);
}


static void *
sbx_reply_create_nil(const redisReadTask *task)
{
    return ((redisReplyObjectFunctions *) task->privdata)->createNil(task);
}


int
sbx_reply_read(const char *buf, size_t len, redisReply **reply)
{
    int           rc;
    void         *r;
    redisReader  *reader;

    *reply = NULL;

    reader = sbx_reply_reader_create();
    if (reader == NULL) {
        return -1;
    }

    r = NULL;

    rc = redisReaderFeed(reader, buf, len);

    if (rc == REDIS_OK) {
        rc = redisReaderGetReply(reader, &r);
    }

    /* bytes left over, even the start of a second reply, are refused */

    if (rc == REDIS_OK && reader->pos != reader->len) {
        rc = REDIS_ERR;
    }

    redisReaderFree(reader);

    if (rc != REDIS_OK || r == NULL) {
        if (r) {
            freeReplyObject(r);
        }

        return -1;
    }

    *reply = r;

    return 0;
}
