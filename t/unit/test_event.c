
/*
 * Unit tests of the sbx:events message decoder; TAP out.  Messages are
 * parsed from exactly sized heap copies, so that AddressSanitizer sees any
 * read past them.
 */


#include <stdlib.h>
#include <string.h>

#include "sandbox_event.h"
#include "tap.h"


#define HEX64  "00112233445566778899aabbccddeeff" \
               "0123456789abcdefFEDCBA9876543210"


static sbx_event_t
parse_n(const char *msg, size_t len, sbx_event_kind_e *kind)
{
    sbx_event_t     ev;
    unsigned char  *p;

    p = sbx_exact(msg, len);
    memset(&ev, 0x5a, sizeof(ev));
    *kind = sbx_event_parse(p, len, &ev);
    free(p);

    return ev;
}


static void
check_kind_n(const char *desc, const char *msg, size_t len,
    sbx_event_kind_e want)
{
    sbx_event_t       ev;
    sbx_event_kind_e  kind;

    ev = parse_n(msg, len, &kind);
    tap_ok(kind == want && ev.kind == want, "%s: kind %d (got %d)", desc,
           (int) want, (int) kind);
}


static void
check_kind(const char *msg, sbx_event_kind_e want)
{
    check_kind_n(msg, msg, strlen(msg), want);
}


static void
check_user(const char *msg, const char *user)
{
    sbx_event_t       ev;
    sbx_event_kind_e  kind;

    ev = parse_n(msg, strlen(msg), &kind);
    tap_ok(kind == SBX_EVENT_USER && ev.user_len == strlen(user)
           && memcmp(msg + ev.user_off, user, ev.user_len) == 0,
           "\"%s\": user \"%s\"", msg, user);
}


static void
check_route(const char *msg, const char *user, const char *name)
{
    sbx_event_t       ev;
    sbx_event_kind_e  kind;

    ev = parse_n(msg, strlen(msg), &kind);
    tap_ok(kind == SBX_EVENT_ROUTE && ev.user_len == strlen(user)
           && memcmp(msg + ev.user_off, user, ev.user_len) == 0
           && ev.name_len == strlen(name)
           && memcmp(msg + ev.name_off, name, ev.name_len) == 0,
           "\"%s\": route \"%s\" \"%s\"", msg, user, name);
}


int
main(void)
{
    unsigned char     want[SBX_EVENT_DIGEST_LEN];
    sbx_event_t       ev;
    sbx_event_kind_e  kind;
    size_t            i;
    char              msg[4 + 64 + 2];

    /* flush: exactly the word */
    check_kind("flush", SBX_EVENT_FLUSH);
    check_kind("flush ", SBX_EVENT_UNKNOWN);
    check_kind("FLUSH", SBX_EVENT_UNKNOWN);
    check_kind("flus", SBX_EVENT_UNKNOWN);
    check_kind_n("flush then NUL", "flush\0", 6, SBX_EVENT_UNKNOWN);

    /* key: 64 hex digits, either case, decoded to the raw digest */
    ev = parse_n("key " HEX64, 68, &kind);
    for (i = 0; i < SBX_EVENT_DIGEST_LEN; i++) {
        want[i] = (unsigned char) strtoul((char[]) { HEX64[2 * i],
                                                     HEX64[2 * i + 1], 0 },
                                          NULL, 16);
    }
    tap_ok(kind == SBX_EVENT_KEY
           && memcmp(ev.digest, want, sizeof(want)) == 0,
           "key: digest decoded");
    tap_ok(ev.user_len == 0 && ev.name_len == 0, "key: no user, no name");

    memcpy(msg, "key " HEX64, 68);
    msg[40] = 'g';
    check_kind_n("key with a non-hex digit", msg, 68, SBX_EVENT_UNKNOWN);
    memcpy(msg, "key " HEX64, 68);
    msg[67] = ' ';
    check_kind_n("key with a blank for its last digit", msg, 68,
                 SBX_EVENT_UNKNOWN);
    check_kind_n("key of 63 digits", "key " HEX64, 67, SBX_EVENT_UNKNOWN);
    memcpy(msg, "key " HEX64 "0", 69);
    check_kind_n("key of 65 digits", msg, 69, SBX_EVENT_UNKNOWN);
    check_kind_n("Key (case)", "Key " HEX64, 68, SBX_EVENT_UNKNOWN);
    check_kind("key ", SBX_EVENT_UNKNOWN);
    check_kind("key", SBX_EVENT_UNKNOWN);

    /* user: the whole rest, whatever it holds */
    check_user("user alice", "alice");
    check_user("user a b", "a b");
    check_user("user  x", " x");
    check_kind("user ", SBX_EVENT_UNKNOWN);
    check_kind("user", SBX_EVENT_UNKNOWN);
    check_kind("users alice", SBX_EVENT_UNKNOWN);

    /* route: user up to the first blank, name the rest, neither empty */
    check_route("route alice box", "alice", "box");
    check_route("route alice box two", "alice", "box two");
    check_route("route a b", "a", "b");
    check_route("route a  b", "a", " b");
    check_kind("route alice", SBX_EVENT_UNKNOWN);
    check_kind("route alice ", SBX_EVENT_UNKNOWN);
    check_kind("route  box", SBX_EVENT_UNKNOWN);
    check_kind("route ", SBX_EVENT_UNKNOWN);
    check_kind("route", SBX_EVENT_UNKNOWN);
    check_kind("routes alice box", SBX_EVENT_UNKNOWN);

    /* others, including nothing at all */
    check_kind_n("empty", "", 0, SBX_EVENT_UNKNOWN);
    check_kind("sandbox alice box", SBX_EVENT_UNKNOWN);
    check_kind_n("NUL", "\0", 1, SBX_EVENT_UNKNOWN);

    return tap_done();
}
