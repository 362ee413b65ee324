
/*
 * libFuzzer target for Redis replies as the module reads them
 * (src/sandbox_reply.c; t/fuzz/run.sh builds and runs it).  Each input is
 * RESP bytes, read by hiredis's own reader (sbx_reply_read), then:
 *
 *   - decoded by each of the route lookup's decoders (sbx_lookup_key,
 *     _user, _route), and when an array, its elements as a lookup's
 *     pipeline: the key's, the user's, the route's replies and EXISTS;
 *   - when it has the shape of a pub/sub "message" push (the check of
 *     ngx_http_sandbox_events_push(), repeated here: it lives in a file
 *     with nginx headers), its payload decoded as an sbx:events message
 *     (sbx_event_parse), from an exactly sized copy.
 *
 * Properties: the reader takes exactly one whole reply (never a strict
 * prefix of one); a decoder answers FAILED exactly for no reply or an
 * error, MALFORMED exactly for any other shape than its command's (an
 * oracle written from the documented shapes, sandbox_reply.h), and on
 * success its states are those the elements say, its strings the
 * elements' own bytes (or ""), its times 0, 1 or the decimal value.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_event.h"
#include "sandbox_reply.h"


static int
is(const redisReply *el, const char *s)
{
    size_t  len;

    len = strlen(s);

    return (el->type == REDIS_REPLY_STRING || el->type == REDIS_REPLY_STATUS)
           && (size_t) el->len == len && memcmp(el->str, s, len) == 0;
}


/* a decoded string: "" or exactly the bytes of the bulk string el */

static void
check_str(const sbx_reply_str_t *s, const redisReply *el)
{
    if (s->data == NULL) {
        abort();
    }

    if (s->len == 0) {
        if (s->data[0] != '\0'
            && !(el->type == REDIS_REPLY_STRING && s->data == el->str))
        {
            abort();
        }

        return;
    }

    if (el->type != REDIS_REPLY_STRING || s->data != el->str
        || s->len != (size_t) el->len)
    {
        abort();
    }
}


/* decimal seconds as the decoders read them, -1 for anything else */

static time_t
expected_time(const redisReply *el)
{
    size_t    i;
    uint64_t  v;

    if (el->type != REDIS_REPLY_STRING || el->len == 0) {
        return -1;
    }

    v = 0;

    for (i = 0; i < (size_t) el->len; i++) {
        if (el->str[i] < '0' || el->str[i] > '9') {
            return -1;
        }

        if (v > ((uint64_t) INT64_MAX - (uint64_t) (el->str[i] - '0')) / 10)
        {
            return -1;
        }

        v = v * 10 + (uint64_t) (el->str[i] - '0');
    }

    return (time_t) v;
}


/* the expiry the module must read from el: 0 never, 1 unreadable */

static time_t
expected_expiry(const redisReply *el)
{
    time_t  t;

    if (el->type != REDIS_REPLY_STRING || el->len == 0) {
        return 0;
    }

    t = expected_time(el);

    return t == -1 ? 1 : t;
}


/* the expected rc of a decoder for HMGET of n fields */

static int
expected_fields(const redisReply *r, size_t n)
{
    size_t  i;

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        return SBX_REPLY_FAILED;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        return SBX_REPLY_MALFORMED;
    }

    for (i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING
            && r->element[i]->type != REDIS_REPLY_NIL)
        {
            return SBX_REPLY_MALFORMED;
        }
    }

    return SBX_REPLY_OK;
}


/* HMGET sbx:key:<digest> user id expires_at active last_used_at ... */

static void
check_key(const redisReply *r)
{
    int            rc;
    time_t         t;
    sbx_lookup_t   lk, lk2;
    redisReply   **el;

    memset(&lk, 0xa5, sizeof(lk));
    memset(&lk2, 0x5a, sizeof(lk2));

    rc = sbx_lookup_key(r, &lk);

    /* the same answer twice, whatever was there before */

    if (sbx_lookup_key(r, &lk2) != rc
        || lk.key_state != lk2.key_state || lk.expires != lk2.expires
        || lk.last_used != lk2.last_used
        || lk.user.data != lk2.user.data || lk.user.len != lk2.user.len
        || lk.id.data != lk2.id.data || lk.id.len != lk2.id.len
        || memcmp(&lk.limits, &lk2.limits, sizeof(sbx_limits_t)) != 0
        || rc != expected_fields(r, 7)
        || lk.user.data == NULL || lk.id.data == NULL)
    {
        abort();
    }

    if (rc != SBX_REPLY_OK || r->element[0]->type == REDIS_REPLY_NIL) {
        if (lk.key_state != SBX_KEY_UNKNOWN || lk.user.len || lk.id.len
            || lk.expires || lk.last_used)
        {
            abort();
        }

        return;
    }

    el = r->element;

    check_str(&lk.user, el[0]);
    check_str(&lk.id, el[1]);

    t = expected_time(el[4]);

    if (lk.expires != expected_expiry(el[2])
        || lk.last_used != (t == -1 ? 0 : t)
        || lk.key_state != (is(el[3], "0") ? SBX_KEY_INACTIVE
                                            : SBX_KEY_VALID))
    {
        abort();
    }
}


/* HMGET sbx:user:<user> active rate_limit max_concurrent, each state */

static void
check_user(const redisReply *r)
{
    int               rc;
    sbx_limits_t      lim;
    sbx_key_state_e   st, want, from;

    for (from = SBX_KEY_ABSENT; from <= SBX_KEY_USER_INACTIVE; from++) {
        st = from;
        memset(&lim, 0xa5, sizeof(lim));

        rc = sbx_lookup_user(r, &st, &lim);

        if (rc != expected_fields(r, 3)) {
            abort();
        }

        want = from;

        if (rc == SBX_REPLY_OK && from == SBX_KEY_VALID) {
            want = (r->element[0]->type != REDIS_REPLY_STRING
                    || r->element[0]->len == 0) ? SBX_KEY_UNKNOWN
                   : !is(r->element[0], "1") ? SBX_KEY_USER_INACTIVE
                   : SBX_KEY_VALID;
        }

        if (st != want
            || (rc != SBX_REPLY_OK
                && (lim.user_rate != 0 || lim.user_conc != 0)))
        {
            abort();
        }
    }
}


/* HMGET sbx:route:... addr ready suspended, and EXISTS sbx:sandbox:... */

static void
check_route(const redisReply *r, const redisReply *exists)
{
    int            rc, want;
    sbx_lookup_t   lk;
    redisReply   **el;

    memset(&lk, 0xa5, sizeof(lk));

    rc = sbx_lookup_route(r, exists, &lk);

    want = expected_fields(r, 3);

    if (want == SBX_REPLY_OK) {
        want = (exists == NULL || exists->type == REDIS_REPLY_ERROR)
               ? SBX_REPLY_FAILED
               : exists->type != REDIS_REPLY_INTEGER ? SBX_REPLY_MALFORMED
               : SBX_REPLY_OK;
    }

    if (rc != want || lk.addr.data == NULL) {
        abort();
    }

    if (rc != SBX_REPLY_OK) {
        if (lk.route_state != SBX_ROUTE_ABSENT || lk.addr.len != 0) {
            abort();
        }

        return;
    }

    el = r->element;

    if (el[0]->type == REDIS_REPLY_STRING
        || el[1]->type == REDIS_REPLY_STRING)
    {
        if (lk.route_state != ((is(el[1], "1") && !is(el[2], "1"))
                               ? SBX_ROUTE_READY : SBX_ROUTE_NOT_READY))
        {
            abort();
        }

        check_str(&lk.addr, el[0]);
        return;
    }

    if (lk.route_state != (exists->integer == 1 ? SBX_ROUTE_PENDING
                                                 : SBX_ROUTE_NONE)
        || lk.addr.len != 0)
    {
        abort();
    }
}


/*
 * The reply itself as each decoder's input; and when it is an array, its
 * elements as a lookup's pipeline: key, user, route, exists
 */

static void
check_lookup(const redisReply *r)
{
    size_t        n;
    redisReply  **el;

    check_key(r);
    check_user(r);
    check_route(r, r);
    check_route(r, NULL);

    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        return;
    }

    el = r->element;
    n = r->elements;

    check_key(el[0]);

    if (n > 1) {
        check_user(el[1]);
    }

    if (n > 2) {
        check_route(el[2], n > 3 ? el[3] : NULL);
    }
}


/* a pub/sub push, as the events connection takes it */

static void
check_push(const redisReply *r)
{
    unsigned char     *msg;
    sbx_event_t        ev;
    sbx_event_kind_e   kind;
    const redisReply  *p;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[0]->len != 7
        || memcmp(r->element[0]->str, "message", 7) != 0
        || r->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    p = r->element[2];

    /* hiredis NUL-terminates its strings: a copy makes over-reads show */

    msg = malloc(p->len ? p->len : 1);
    if (msg == NULL) {
        abort();
    }

    memcpy(msg, p->str, p->len);

    kind = sbx_event_parse(msg, p->len, &ev);

    if (kind != ev.kind
        || (kind != SBX_EVENT_UNKNOWN && kind != SBX_EVENT_FLUSH
            && kind != SBX_EVENT_KEY && kind != SBX_EVENT_USER
            && kind != SBX_EVENT_ROUTE)
        || ev.user_off + ev.user_len > (size_t) p->len
        || ev.name_off + ev.name_len > (size_t) p->len)
    {
        abort();
    }

    free(msg);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReply  *r, *r2;

    if (sbx_reply_read((const char *) data, size, &r) != 0) {
        if (r != NULL) {
            abort();
        }

        return 0;
    }

    if (r == NULL) {
        abort();
    }

    /* exactly one whole reply: a strict prefix of it is not one */

    if (size == 0 || sbx_reply_read((const char *) data, size - 1, &r2) == 0)
    {
        abort();
    }

    check_lookup(r);
    check_push(r);

    freeReplyObject(r);

    return 0;
}
