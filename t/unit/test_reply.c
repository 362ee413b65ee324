
/*
 * Unit tests of the lookup script's reply decoder; TAP out.  Replies are
 * written in RESP and read by hiredis's own reader (sbx_reply_read), as
 * the module gets them from its connection.
 */


#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_reply.h"
#include "tap.h"


/*
 * An array reply of n elements, each "b<bulk>", "s<status>", "i<int>",
 * "e<error>" or "n" (nil), as RESP in buf.
 */

static size_t
resp(char *buf, size_t size, int n, ...)
{
    int          i;
    size_t       len;
    va_list      ap;
    const char  *el;

    len = (size_t) snprintf(buf, size, "*%d\r\n", n);

    va_start(ap, n);

    for (i = 0; i < n; i++) {
        el = va_arg(ap, const char *);

        switch (el[0]) {
        case 'b':
            len += snprintf(buf + len, size - len, "$%zu\r\n%s\r\n",
                            strlen(el + 1), el + 1);
            break;
        case 's':
            len += snprintf(buf + len, size - len, "+%s\r\n", el + 1);
            break;
        case 'i':
            len += snprintf(buf + len, size - len, ":%s\r\n", el + 1);
            break;
        case 'e':
            len += snprintf(buf + len, size - len, "-%s\r\n", el + 1);
            break;
        default:
            len += snprintf(buf + len, size - len, "$-1\r\n");
        }
    }

    va_end(ap);

    return len;
}


/* the decoded strings point into the reply: it lives until the next */

static redisReply  *last;


static int
parse_resp(const char *buf, size_t len, sbx_lookup_t *lk)
{
    if (last) {
        freeReplyObject(last);
        last = NULL;
    }

    if (sbx_reply_read(buf, len, &last) != 0) {
        return 99;
    }

    return sbx_lookup_reply_parse(last, lk);
}


static int
str_is(sbx_reply_str_t *s, const char *want)
{
    return s->len == strlen(want) && memcmp(s->data, want, s->len) == 0;
}


#define PARSE(lk, n, ...)                                                     \
    parse_resp(buf, resp(buf, sizeof(buf), n, __VA_ARGS__), lk)


int
main(void)
{
    int           rc;
    char          buf[1024];
    void         *r;
    size_t        i, len;
    redisReader  *reader;
    static char   big[16 + 4 * (SBX_REPLY_MAX_ELEMENTS + 1)];
    redisReply   *reply;
    sbx_lookup_t  lk;

    /* a known, valid key and its user's ready route */
    rc = PARSE(&lk, 10, "bkey", "balice", "bid-1", "b0", "b1", "b1",
               "broute", "b10.0.0.7:8888", "b1", "b0");
    tap_ok(rc == SBX_REPLY_OK && lk.key_state == SBX_KEY_VALID
           && lk.expires == 0 && str_is(&lk.user, "alice")
           && str_is(&lk.id, "id-1"), "valid key decoded");
    tap_ok(lk.route_state == SBX_ROUTE_READY
           && str_is(&lk.addr, "10.0.0.7:8888"), "ready route decoded");

    /* route states */
    rc = PARSE(&lk, 10, "bkey", "balice", "bid", "b0", "b1", "b1",
               "broute", "b10.0.0.7:8888", "b1", "b1");
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NOT_READY,
           "suspended route: not ready");
    rc = PARSE(&lk, 5, "sanon", "broute", "b10.0.0.7:8888", "b0", "b0");
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NOT_READY
           && lk.key_state == SBX_KEY_ABSENT, "unready route, no key part");
    rc = PARSE(&lk, 5, "banon", "broute", "n", "b1", "n");
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_READY
           && lk.addr.len == 0, "route without address: empty address");
    rc = PARSE(&lk, 2, "banon", "bnone");
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NONE, "no route");
    rc = PARSE(&lk, 2, "banon", "spending");
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_PENDING,
           "pending (status reply)");
    rc = PARSE(&lk, 1, "banon");
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_ABSENT
           && lk.key_state == SBX_KEY_ABSENT, "anon alone: nothing");

    /* key states */
    rc = PARSE(&lk, 1, "bnokey");
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_UNKNOWN
           && lk.route_state == SBX_ROUTE_ABSENT && lk.user.len == 0,
           "nokey: unknown key");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b0", "b0", "b1");
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_INACTIVE
           && lk.route_state == SBX_ROUTE_ABSENT,
           "inactive key, no route part");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b0", "b1", "b");
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_UNKNOWN,
           "key of a missing user: unknown");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b0", "b1", "b0");
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_USER_INACTIVE,
           "inactive user");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b0", "b1", "n");
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_USER_INACTIVE,
           "user's active nil: inactive");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b0", "n", "b1");
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_VALID,
           "key's active nil: active");
    rc = PARSE(&lk, 6, "bkey", "i5", "n", "b0", "b1", "b1");
    tap_ok(rc == 0 && lk.user.len == 0 && lk.id.len == 0,
           "user and id not strings: empty");

    /* expiry */
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b1700000000", "b1", "b1");
    tap_ok(rc == 0 && lk.expires == 1700000000, "expiry read");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b", "b1", "b1");
    tap_ok(rc == 0 && lk.expires == 0, "empty expiry: never");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "n", "b1", "b1");
    tap_ok(rc == 0 && lk.expires == 0, "nil expiry: never");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b12x", "b1", "b1");
    tap_ok(rc == 0 && lk.expires == 1, "unreadable expiry: expired");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid", "b-5", "b1", "b1");
    tap_ok(rc == 0 && lk.expires == 1, "negative expiry: expired");
    rc = PARSE(&lk, 6, "bkey", "balice", "bid",
               "b99999999999999999999", "b1", "b1");
    tap_ok(rc == 0 && lk.expires == 1, "overflowing expiry: expired");

    /* refused shapes */
    rc = PARSE(&lk, 5, "bkey", "balice", "bid", "b0", "b1");
    tap_ok(rc == SBX_REPLY_MALFORMED, "key part too short");
    rc = PARSE(&lk, 9, "bkey", "balice", "bid", "b0", "b1", "b1",
               "broute", "b10.0.0.7:8888", "b1");
    tap_ok(rc == SBX_REPLY_MALFORMED, "route part too short");
    rc = PARSE(&lk, 2, "banon", "bother");
    tap_ok(rc == SBX_REPLY_MALFORMED, "unknown route part");
    rc = PARSE(&lk, 5, "banon", "i1", "b", "b1", "b0");
    tap_ok(rc == SBX_REPLY_MALFORMED, "route part not a string");
    rc = PARSE(&lk, 0, "");
    tap_ok(rc == SBX_REPLY_FAILED, "empty array");

    tap_ok(parse_resp("-ERR boom\r\n", 11, &lk) == SBX_REPLY_FAILED,
           "error reply");
    tap_ok(parse_resp(":7\r\n", 4, &lk) == SBX_REPLY_FAILED,
           "integer reply");
    tap_ok(parse_resp("$-1\r\n", 5, &lk) == SBX_REPLY_FAILED, "nil reply");
    tap_ok(sbx_lookup_reply_parse(NULL, &lk) == SBX_REPLY_FAILED,
           "no reply (an outage)");

    /* the reader: exactly one whole reply */
    tap_ok(sbx_reply_read("*1\r\n$3\r\nab", 10, &reply) == -1
           && reply == NULL, "read: incomplete refused");
    tap_ok(sbx_reply_read(":1\r\n:2\r\n", 8, &reply) == -1,
           "read: two replies refused");
    tap_ok(sbx_reply_read(":1\r\n:", 5, &reply) == -1,
           "read: trailing bytes refused");
    tap_ok(sbx_reply_read("?what\r\n", 7, &reply) == -1,
           "read: protocol error refused");
    tap_ok(sbx_reply_read("", 0, &reply) == -1, "read: nothing refused");

    /*
     * an array's announced length is refused past the limit as soon as it
     * is read, not allocated (found by fuzzing: hiredis 0.14 allocated
     * 8 GB for "*999999999")
     */
    reader = sbx_reply_reader_create();
    tap_ok(reader != NULL
           && redisReaderFeed(reader, "*999999999\r\n", 12) == REDIS_OK
           && redisReaderGetReply(reader, &r) == REDIS_ERR && r == NULL,
           "reader: a huge array's count is an error");
    if (reader) {
        redisReaderFree(reader);
    }

    len = (size_t) snprintf(big, sizeof(big), "*%d\r\n",
                            SBX_REPLY_MAX_ELEMENTS + 1);
    for (i = 0; i <= SBX_REPLY_MAX_ELEMENTS; i++) {
        memcpy(big + len, ":1\r\n", 4);
        len += 4;
    }
    tap_ok(sbx_reply_read(big, len, &reply) == -1 && reply == NULL,
           "read: an array one past the limit refused");

    len = (size_t) snprintf(big, sizeof(big), "*%d\r\n",
                            SBX_REPLY_MAX_ELEMENTS);
    for (i = 0; i < SBX_REPLY_MAX_ELEMENTS; i++) {
        memcpy(big + len, ":1\r\n", 4);
        len += 4;
    }
    tap_ok(sbx_reply_read(big, len, &reply) == 0
           && reply->elements == SBX_REPLY_MAX_ELEMENTS,
           "read: an array at the limit read");
    if (reply) {
        freeReplyObject(reply);
    }

    if (last) {
        freeReplyObject(last);
    }

    return tap_done();
}
