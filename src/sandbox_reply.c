
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The lookup's Redis replies, read as the module reads them: every element
 * is checked for its type before use, and whatever is not the command's
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


/* HMGET's answer to n fields: n strings or nils */

static int
sbx_reply_fields(const redisReply *reply, size_t n)
{
    size_t  i;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        return SBX_REPLY_FAILED;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        return SBX_REPLY_MALFORMED;
    }

    for (i = 0; i < n; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            && reply->element[i]->type != REDIS_REPLY_NIL)
        {
            return SBX_REPLY_MALFORMED;
        }
    }

    return SBX_REPLY_OK;
}


/* a field that is there, even empty */

static int
sbx_reply_set(const redisReply *el)
{
    return el->type == REDIS_REPLY_STRING;
}


int
sbx_lookup_key(const redisReply *hmget, sbx_lookup_t *out)
{
    int          rc;
    time_t       t;
    redisReply **el;

    out->key_state = SBX_KEY_UNKNOWN;
    out->expires = 0;
    out->last_used = 0;
    out->user.data = "";
    out->user.len = 0;
    out->id.data = "";
    out->id.len = 0;
    memset(&out->limits, 0, sizeof(sbx_limits_t));

    /* user id expires_at active last_used_at rate_limit max_concurrent */

    rc = sbx_reply_fields(hmget, 7);
    if (rc != SBX_REPLY_OK) {
        return rc;
    }

    el = hmget->element;

    /* a key is its user field: without one there is no key */

    if (!sbx_reply_set(el[0])) {
        return SBX_REPLY_OK;
    }

    sbx_reply_string(el[0], &out->user);
    sbx_reply_string(el[1], &out->id);

    if (el[2]->type == REDIS_REPLY_STRING && el[2]->len > 0) {
        out->expires = sbx_reply_time(el[2]->str, el[2]->len);

        if (out->expires == -1) {
            out->expires = 1;     /* unreadable expiry: treat as expired */
        }
    }

    out->key_state = sbx_reply_is(el[3], "0") ? SBX_KEY_INACTIVE
                                               : SBX_KEY_VALID;

    if (el[4]->type == REDIS_REPLY_STRING) {
        t = sbx_reply_time(el[4]->str, el[4]->len);
        out->last_used = (t == -1) ? 0 : t;
    }

    out->limits.rate = (uint32_t) sbx_reply_rate(el[5]);
    out->limits.conc = sbx_reply_conc(el[6]);

    return SBX_REPLY_OK;
}


int
sbx_lookup_user(const redisReply *hmget, sbx_key_state_e *state,
    sbx_limits_t *limits)
{
    int          rc;
    redisReply **el;

    limits->user_rate = 0;
    limits->user_conc = 0;

    /* active rate_limit max_concurrent */

    rc = sbx_reply_fields(hmget, 3);
    if (rc != SBX_REPLY_OK) {
        return rc;
    }

    el = hmget->element;

    if (*state == SBX_KEY_VALID) {
        if (!sbx_reply_set(el[0]) || el[0]->len == 0) {
            *state = SBX_KEY_UNKNOWN;       /* its user is gone */

        } else if (!sbx_reply_is(el[0], "1")) {
            *state = SBX_KEY_USER_INACTIVE;
        }
    }

    limits->user_rate = (uint32_t) sbx_reply_rate(el[1]);
    limits->user_conc = sbx_reply_conc(el[2]);

    return SBX_REPLY_OK;
}


int
sbx_lookup_route(const redisReply *hmget, const redisReply *exists,
    sbx_lookup_t *out)
{
    int          rc;
    redisReply **el;

    out->route_state = SBX_ROUTE_ABSENT;
    out->addr.data = "";
    out->addr.len = 0;

    /* addr ready suspended */

    rc = sbx_reply_fields(hmget, 3);
    if (rc != SBX_REPLY_OK) {
        return rc;
    }

    if (exists == NULL || exists->type == REDIS_REPLY_ERROR) {
        return SBX_REPLY_FAILED;
    }

    if (exists->type != REDIS_REPLY_INTEGER) {
        return SBX_REPLY_MALFORMED;
    }

    el = hmget->element;

    if (sbx_reply_set(el[0]) || sbx_reply_set(el[1])) {
        sbx_reply_string(el[0], &out->addr);
        out->route_state = (sbx_reply_is(el[1], "1")
                            && !sbx_reply_is(el[2], "1"))
                           ? SBX_ROUTE_READY : SBX_ROUTE_NOT_READY;

    } else {
        out->route_state = exists->integer == 1 ? SBX_ROUTE_PENDING
                                                : SBX_ROUTE_NONE;
    }

    return SBX_REPLY_OK;
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
