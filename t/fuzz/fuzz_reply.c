
/*
 * libFuzzer target for Redis replies as the module reads them
 * (src/sandbox_reply.c; t/fuzz/run.sh builds and runs it).  Each input is
 * RESP bytes, read by hiredis's own reader (sbx_reply_read), then:
 *
 *   - decoded as the route lookup script's reply (sbx_lookup_reply_parse);
 *   - when it has the shape of a pub/sub "message" push (the check of
 *     ngx_http_sandbox_events_push(), repeated here: it lives in a file
 *     with nginx headers), its payload decoded as an sbx:events message
 *     (sbx_event_parse), from an exactly sized copy.
 *
 * Properties: the reader takes exactly one whole reply (never a strict
 * prefix of one); the decoder answers FAILED exactly for what is not a
 * non-empty array, MALFORMED exactly for an array of the wrong shape (an
 * oracle written from the script's documented shape, sandbox_reply.h),
 * and on success its states are those the elements say, its strings the
 * elements' own bytes (or ""), its expiry 0, 1 or the decimal value.
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


/* the expiry the module must read from el: 0 never, 1 unreadable */

static time_t
expected_expiry(const redisReply *el)
{
    size_t    i;
    uint64_t  v;

    if (el->type != REDIS_REPLY_STRING || el->len == 0) {
        return 0;
    }

    v = 0;

    for (i = 0; i < (size_t) el->len; i++) {
        if (el->str[i] < '0' || el->str[i] > '9') {
            return 1;
        }

        if (v > ((uint64_t) INT64_MAX - (uint64_t) (el->str[i] - '0')) / 10)
        {
            return 1;
        }

        v = v * 10 + (uint64_t) (el->str[i] - '0');
    }

    return (time_t) v;
}


/* the route part, n elements from el; returns the expected rc */

static int
check_route(const sbx_lookup_t *lk, redisReply **el, size_t n)
{
    if (n == 0) {
        if (lk->route_state != SBX_ROUTE_ABSENT) {
            abort();
        }

        return SBX_REPLY_OK;
    }

    if (is(el[0], "none") || is(el[0], "pending")) {
        if (lk->route_state
            != (is(el[0], "none") ? SBX_ROUTE_NONE : SBX_ROUTE_PENDING)
            || lk->addr.data != NULL || lk->addr.len != 0)
        {
            abort();
        }

        return SBX_REPLY_OK;
    }

    if (n < 4 || !is(el[0], "route")) {
        return SBX_REPLY_MALFORMED;
    }

    if (lk->route_state != ((is(el[2], "1") && !is(el[3], "1"))
                            ? SBX_ROUTE_READY : SBX_ROUTE_NOT_READY))
    {
        abort();
    }

    check_str(&lk->addr, el[1]);

    return SBX_REPLY_OK;
}


static void
check_lookup(const redisReply *r)
{
    int            rc, want;
    size_t         n;
    sbx_lookup_t   lk, lk2, zero;
    redisReply   **el;

    memset(&zero, 0, sizeof(zero));
    memset(&lk, 0xa5, sizeof(lk));

    rc = sbx_lookup_reply_parse(r, &lk);

    if (sbx_lookup_reply_parse(r, &lk2) != rc
        || memcmp(&lk, &lk2, sizeof(lk)) != 0)
    {
        abort();
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        if (rc != SBX_REPLY_FAILED || memcmp(&lk, &zero, sizeof(lk)) != 0) {
            abort();
        }

        return;
    }

    if (rc != SBX_REPLY_OK && rc != SBX_REPLY_MALFORMED) {
        abort();
    }

    el = r->element;
    n = r->elements;

    if (is(el[0], "nokey")) {
        if (rc != SBX_REPLY_OK || lk.key_state != SBX_KEY_UNKNOWN
            || lk.route_state != SBX_ROUTE_ABSENT || lk.expires != 0
            || lk.user.len != 0 || lk.id.len != 0 || lk.addr.len != 0
            || lk.user.data == NULL || lk.id.data == NULL)
        {
            abort();
        }

        return;
    }

    if (!is(el[0], "key")) {
        want = check_route(&lk, el + 1, n - 1);

        if (rc != want
            || (rc == SBX_REPLY_OK && (lk.key_state != SBX_KEY_ABSENT
                                       || lk.user.data || lk.id.data
                                       || lk.expires)))
        {
            abort();
        }

        return;
    }

    if (n < 6) {
        if (rc != SBX_REPLY_MALFORMED) {
            abort();
        }

        return;
    }

    /* whatever the route part, the key part is decoded */

    check_str(&lk.user, el[1]);
    check_str(&lk.id, el[2]);

    if (lk.expires != expected_expiry(el[3])) {
        abort();
    }

    if (lk.key_state != (is(el[4], "0") ? SBX_KEY_INACTIVE
                         : is(el[5], "") ? SBX_KEY_UNKNOWN
                         : !is(el[5], "1") ? SBX_KEY_USER_INACTIVE
                         : SBX_KEY_VALID))
    {
        abort();
    }

    want = check_route(&lk, el + 6, n - 6);

    if (rc != want) {
        abort();
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
