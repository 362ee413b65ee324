
/*
 * Unit tests of the sbx:events and sbx:ready message decoders; TAP out.
 * Messages are parsed from exactly sized heap copies, so that
 * AddressSanitizer sees any read past them.
 */


#include <stdio.h>
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


static void
check_ready(const char *msg, const char *user, const char *name,
    const char *addr)
{
    int             rc;
    sbx_ready_t     rd;
    unsigned char  *p;
    size_t          len;

    len = strlen(msg);
    p = sbx_exact(msg, len);
    memset(&rd, 0x5a, sizeof(rd));
    rc = sbx_ready_parse(p, len, &rd);
    free(p);

    tap_ok(rc == 0
           && rd.user_len == strlen(user)
           && memcmp(msg + rd.user_off, user, rd.user_len) == 0
           && rd.name_len == strlen(name)
           && memcmp(msg + rd.name_off, name, rd.name_len) == 0
           && rd.addr_len == strlen(addr)
           && memcmp(msg + rd.addr_off, addr, rd.addr_len) == 0,
           "ready \"%s\": \"%s\" \"%s\" at \"%s\"", msg, user, name,
           addr);
}


static void
check_not_ready_n(const char *desc, const char *msg, size_t len)
{
    int             rc;
    sbx_ready_t     rd, zero;
    unsigned char  *p;

    p = sbx_exact(msg, len);
    memset(&rd, 0x5a, sizeof(rd));
    memset(&zero, 0, sizeof(zero));
    rc = sbx_ready_parse(p, len, &rd);
    free(p);

    tap_ok(rc == -1 && memcmp(&rd, &zero, sizeof(rd)) == 0,
           "ready refused: %s", desc);
}


static void
check_not_ready(const char *msg)
{
    check_not_ready_n(msg, msg, strlen(msg));
}


int
main(void)
{
    unsigned char     want[SBX_EVENT_DIGEST_LEN];
    sbx_event_t       ev;
    sbx_event_kind_e  kind;
    size_t            i;
    char              msg[4 + 64 + 2];
    char              label[64], addr[257], line[300];

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

    /* sbx:ready: two DNS labels and an address, one blank between */
    check_ready("alice box 10.0.0.7:8080", "alice", "box", "10.0.0.7:8080");
    check_ready("a b c", "a", "b", "c");
    check_ready("u-1 my-sandbox-2 [fd00::7]:80", "u-1", "my-sandbox-2",
                "[fd00::7]:80");
    check_ready("0 9 pod.ns.svc:1", "0", "9", "pod.ns.svc:1");
    memset(label, 'a', 63);
    label[63] = '\0';
    snprintf(line, sizeof(line), "%s %s x:1", label, label);
    check_ready(line, label, label, "x:1");
    snprintf(line, sizeof(line), "%sa b x:1", label);
    check_not_ready(line);                              /* 64 bytes */
    snprintf(line, sizeof(line), "a %sa x:1", label);
    check_not_ready(line);
    memset(addr, 'x', 255);
    addr[255] = '\0';
    snprintf(line, sizeof(line), "a b %s", addr);
    check_ready(line, "a", "b", addr);
    snprintf(line, sizeof(line), "a b %sx", addr);
    check_not_ready(line);                              /* 256 bytes */

    /* names that are no DNS label */
    check_not_ready("Alice box 10.0.0.7:80");
    check_not_ready("alice Box 10.0.0.7:80");
    check_not_ready("-alice box 10.0.0.7:80");
    check_not_ready("alice box- 10.0.0.7:80");
    check_not_ready("al_ice box 10.0.0.7:80");
    check_not_ready("alice b.x 10.0.0.7:80");
    check_not_ready("alice/x box 10.0.0.7:80");

    /* the wrong number of words, or of blanks */
    check_not_ready("alice box");
    check_not_ready("alice box ");
    check_not_ready("alice  box 10.0.0.7:80");
    check_not_ready("alice box  10.0.0.7:80");
    check_not_ready(" alice box 10.0.0.7:80");
    check_not_ready("alice box 10.0.0.7:80 ");
    check_not_ready("alice box 10.0.0.7:80 extra");
    check_not_ready("alice");
    check_not_ready("alice ");
    check_not_ready(" ");
    check_not_ready("  ");
    check_not_ready_n("empty", "", 0);

    /* an address with a control byte or a non-ASCII one */
    check_not_ready("alice box 10.0.0.7:80\n");
    check_not_ready("alice box 10.0.0.7\t:80");
    check_not_ready("alice box 10.0.0.7:80\x7f");
    check_not_ready("alice box 10.0.0.\xc3\xa9" "7:80");
    check_not_ready_n("addr with a NUL", "alice box 10\0.0.0.7:80", 22);
    check_not_ready_n("name with a NUL", "alice b\0x 10.0.0.7:80", 21);
    check_not_ready("flush");

    return tap_done();
}
