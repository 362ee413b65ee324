
/*
 * Unit tests of the lookup's reply decoders (HMGET of a key, a user and a
 * route, EXISTS of a sandbox); TAP out.  Replies are written in RESP and
 * read by hiredis's own reader (sbx_reply_read), as the module gets them
 * from its connection.
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


/* the decoded strings point into the replies: they live until the end */

#define KEPT  64

static redisReply  *kept[KEPT];
static int          nkept;


static redisReply *
keep(const char *buf, size_t len)
{
    redisReply  *reply;

    if (nkept == KEPT || sbx_reply_read(buf, len, &reply) != 0) {
        fprintf(stderr, "unreadable test reply\n");
        exit(2);
    }

    kept[nkept++] = reply;

    return reply;
}


static int
str_is(sbx_reply_str_t *s, const char *want)
{
    return s->len == strlen(want) && memcmp(s->data, want, s->len) == 0;
}


/* an array reply of n elements, as resp() writes them */
#define R(n, ...)                                                             \
    keep(buf, resp(buf, sizeof(buf), n, __VA_ARGS__))

/* a reply that is not an array: RESP as is */
#define RAW(s)  keep(s, sizeof(s) - 1)


static int
key(redisReply *reply, sbx_lookup_t *lk)
{
    memset(lk, 0x5a, sizeof(sbx_lookup_t));    /* all must be set */

    return sbx_lookup_key(reply, lk);
}


int
main(void)
{
    int               rc;
    char              buf[1024];
    void             *r;
    size_t            i, len;
    redisReader      *reader;
    static char       big[16 + 4 * (SBX_REPLY_MAX_ELEMENTS + 1)];
    redisReply       *reply, *yes, *no;
    sbx_limits_t      lim;
    sbx_lookup_t      lk;
    sbx_key_state_e   st;

    /* the key's hash: user id expires_at active last_used_at rate conc */

    rc = key(R(7, "balice", "bid-1", "b0", "b1", "b1700000000", "b10r/s",
               "b5"), &lk);
    tap_ok(rc == SBX_REPLY_OK && lk.key_state == SBX_KEY_VALID
           && lk.expires == 0 && str_is(&lk.user, "alice")
           && str_is(&lk.id, "id-1"), "valid key decoded");
    tap_ok(lk.last_used == 1700000000, "its last use");
    tap_ok(lk.limits.rate == 10000 && lk.limits.conc == 5
           && lk.limits.user_rate == 0 && lk.limits.user_conc == 0,
           "its limits, none of its user's yet");

    rc = key(R(7, "n", "n", "n", "n", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_UNKNOWN && lk.user.len == 0
           && lk.id.len == 0 && lk.expires == 0 && lk.last_used == 0,
           "no such key: unknown");
    rc = key(R(7, "balice", "bid", "b0", "b0", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_INACTIVE, "inactive key");
    rc = key(R(7, "balice", "bid", "b0", "n", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_VALID && lk.last_used == 0,
           "key's active nil: active; never used");
    rc = key(R(7, "balice", "bid", "b0", "byes", "b12x", "bfast", "b0"),
             &lk);
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_VALID && lk.last_used == 0
           && lk.limits.rate == 0 && lk.limits.conc == 0,
           "unreadable active, last use and limits: active, never, none");
    rc = key(R(7, "b", "n", "n", "n", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.key_state == SBX_KEY_VALID && lk.user.len == 0,
           "an empty user field is still a key (its user then unknown)");

    /* expiry */
    rc = key(R(7, "balice", "bid", "b1700000000", "b1", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.expires == 1700000000, "expiry read");
    rc = key(R(7, "balice", "bid", "b", "b1", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.expires == 0, "empty expiry: never");
    rc = key(R(7, "balice", "bid", "b12x", "b1", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.expires == 1, "unreadable expiry: expired");
    rc = key(R(7, "balice", "bid", "b-5", "b1", "n", "n", "n"), &lk);
    tap_ok(rc == 0 && lk.expires == 1, "negative expiry: expired");
    rc = key(R(7, "balice", "bid", "b99999999999999999999", "b1", "n", "n",
               "n"), &lk);
    tap_ok(rc == 0 && lk.expires == 1, "overflowing expiry: expired");

    /* refused shapes */
    rc = key(R(6, "balice", "bid", "b0", "b1", "n", "n"), &lk);
    tap_ok(rc == SBX_REPLY_MALFORMED, "key: one field short");
    rc = key(R(8, "balice", "bid", "b0", "b1", "n", "n", "n", "n"), &lk);
    tap_ok(rc == SBX_REPLY_MALFORMED, "key: one field too many");
    rc = key(R(7, "i5", "bid", "b0", "b1", "n", "n", "n"), &lk);
    tap_ok(rc == SBX_REPLY_MALFORMED, "key: a field not a string");
    rc = key(R(7, "salice", "bid", "b0", "b1", "n", "n", "n"), &lk);
    tap_ok(rc == SBX_REPLY_MALFORMED, "key: a status, not a string");
    tap_ok(key(RAW("-ERR boom\r\n"), &lk) == SBX_REPLY_FAILED
           && lk.key_state == SBX_KEY_UNKNOWN && lk.user.data != NULL,
           "key: an error reply fails, nothing left unset");
    tap_ok(key(RAW("-WRONGTYPE no\r\n"), &lk) == SBX_REPLY_FAILED,
           "key: a key of the wrong type fails");
    tap_ok(key(RAW(":7\r\n"), &lk) == SBX_REPLY_MALFORMED,
           "key: an integer is malformed");
    tap_ok(key(RAW("$-1\r\n"), &lk) == SBX_REPLY_MALFORMED,
           "key: a nil is malformed");
    tap_ok(key(NULL, &lk) == SBX_REPLY_FAILED, "key: no reply (an outage)");

    /* the user's hash: active rate_limit max_concurrent */

    st = SBX_KEY_VALID;
    rc = sbx_lookup_user(R(3, "b1", "b2r/m", "b3"), &st, &lim);
    tap_ok(rc == 0 && st == SBX_KEY_VALID && lim.user_rate == 2000 / 60
           && lim.user_conc == 3, "active user: valid, its limits");
    st = SBX_KEY_VALID;
    rc = sbx_lookup_user(R(3, "b0", "n", "n"), &st, &lim);
    tap_ok(rc == 0 && st == SBX_KEY_USER_INACTIVE && lim.user_conc == 0,
           "inactive user");
    st = SBX_KEY_VALID;
    rc = sbx_lookup_user(R(3, "btrue", "n", "n"), &st, &lim);
    tap_ok(rc == 0 && st == SBX_KEY_USER_INACTIVE,
           "active other than 1: inactive");
    st = SBX_KEY_VALID;
    rc = sbx_lookup_user(R(3, "n", "n", "n"), &st, &lim);
    tap_ok(rc == 0 && st == SBX_KEY_UNKNOWN, "no user: unknown key");
    st = SBX_KEY_VALID;
    rc = sbx_lookup_user(R(3, "b", "n", "n"), &st, &lim);
    tap_ok(rc == 0 && st == SBX_KEY_UNKNOWN, "empty active: unknown key");
    st = SBX_KEY_INACTIVE;
    rc = sbx_lookup_user(R(3, "b1", "n", "b4"), &st, &lim);
    tap_ok(rc == 0 && st == SBX_KEY_INACTIVE && lim.user_conc == 4,
           "an inactive key stays inactive");
    st = SBX_KEY_VALID;
    tap_ok(sbx_lookup_user(R(2, "b1", "n"), &st, &lim) == SBX_REPLY_MALFORMED
           && sbx_lookup_user(RAW("-ERR x\r\n"), &st, &lim)
              == SBX_REPLY_FAILED
           && sbx_lookup_user(NULL, &st, &lim) == SBX_REPLY_FAILED
           && st == SBX_KEY_VALID, "user: refused shapes change nothing");

    /* the route's hash (addr ready suspended) and the sandbox's EXISTS */

    yes = RAW(":1\r\n");
    no = RAW(":0\r\n");

    rc = sbx_lookup_route(R(3, "b10.0.0.7:8888", "b1", "b0"), no, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_READY
           && str_is(&lk.addr, "10.0.0.7:8888"), "ready route decoded");
    rc = sbx_lookup_route(R(3, "b10.0.0.7:8888", "b1", "b1"), yes, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NOT_READY,
           "suspended route: not ready");
    rc = sbx_lookup_route(R(3, "b10.0.0.7:8888", "b0", "b0"), yes, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NOT_READY,
           "unready route");
    rc = sbx_lookup_route(R(3, "n", "b1", "n"), yes, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_READY && lk.addr.len == 0,
           "route without address: empty address");
    rc = sbx_lookup_route(R(3, "b", "n", "n"), no, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NOT_READY,
           "an empty address alone is a route, not ready");
    rc = sbx_lookup_route(R(3, "n", "n", "b0"), yes, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_PENDING,
           "no route, a sandbox record: pending");
    rc = sbx_lookup_route(R(3, "n", "n", "n"), no, &lk);
    tap_ok(rc == 0 && lk.route_state == SBX_ROUTE_NONE, "neither: none");
    tap_ok(sbx_lookup_route(R(3, "n", "n", "n"), R(1, "i1"), &lk)
           == SBX_REPLY_MALFORMED, "route: EXISTS not an integer");
    tap_ok(sbx_lookup_route(R(3, "n", "n", "n"), RAW("-ERR x\r\n"), &lk)
           == SBX_REPLY_FAILED, "route: EXISTS failed");
    tap_ok(sbx_lookup_route(R(3, "n", "n", "n"), NULL, &lk)
           == SBX_REPLY_FAILED, "route: EXISTS missing");
    tap_ok(sbx_lookup_route(R(4, "n", "n", "n", "n"), no, &lk)
           == SBX_REPLY_MALFORMED, "route: one field too many");
    tap_ok(sbx_lookup_route(R(3, "i1", "b1", "b0"), no, &lk)
           == SBX_REPLY_MALFORMED, "route: a field not a string");
    tap_ok(sbx_lookup_route(RAW("-WRONGTYPE x\r\n"), no, &lk)
           == SBX_REPLY_FAILED && lk.route_state == SBX_ROUTE_ABSENT,
           "route: an error reply fails, no route");

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

    while (nkept) {
        freeReplyObject(kept[--nkept]);
    }

    return tap_done();
}
