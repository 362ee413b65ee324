
/*
 * libFuzzer target for the sbx:events and sbx:ready message decoders
 * (src/sandbox_event.c), fed each input as one message of either channel,
 * as the module gets it from a "message" push (t/fuzz/run.sh builds and
 * runs it).
 *
 * Properties: the same message always gives the same answer, and the
 * answer is what docs/redis-data-model.md says of the message:
 *
 *   - "flush" exactly, and nothing else, is FLUSH;
 *   - KEY is "key " and 64 hex digits, the digest their value;
 *   - USER is "user " and a non-empty rest, the user that rest;
 *   - ROUTE is "route ", a user without blanks, one blank, a non-empty
 *     name: slices within the message, in order, the name to its end;
 *   - an UNKNOWN or FLUSH result holds no slice and no digest, a KEY no
 *     slice, a USER no name and no digest, a ROUTE no digest;
 *   - as an sbx:ready message, it is accepted exactly when it is three
 *     words split by single blanks, the first two DNS-1123 labels (1 to
 *     63 of [a-z0-9-], no '-' at either end), the third 1 to 255 bytes
 *     from '!' to '~'; the slices are those words; a refusal zeroes them.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_event.h"


static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/* what the message is, judged independently of the parser */

static sbx_event_kind_e
expected_kind(const uint8_t *m, size_t len)
{
    size_t  i, sp;

    if (len == 5 && memcmp(m, "flush", 5) == 0) {
        return SBX_EVENT_FLUSH;
    }

    if (len == 68 && memcmp(m, "key ", 4) == 0) {
        for (i = 4; i < len && hexval(m[i]) >= 0; i++) {
            /* void */
        }

        if (i == len) {
            return SBX_EVENT_KEY;
        }
    }

    if (len > 5 && memcmp(m, "user ", 5) == 0) {
        return SBX_EVENT_USER;
    }

    if (len > 6 && memcmp(m, "route ", 6) == 0) {
        for (sp = 6; sp < len && m[sp] != ' '; sp++) {
            /* void */
        }

        if (sp > 6 && sp + 1 < len) {
            return SBX_EVENT_ROUTE;
        }
    }

    return SBX_EVENT_UNKNOWN;
}


static int
label_ok(const uint8_t *p, size_t len)
{
    size_t  i;

    if (len < 1 || len > 63 || p[0] == '-' || p[len - 1] == '-') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')
              || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* the words of an sbx:ready message, judged independently: 0 if one */

static int
expected_ready(const uint8_t *m, size_t len, sbx_ready_t *want)
{
    size_t  i, n, start, off[3], wlen[3];

    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && m[i] != ' ') {
            continue;
        }

        if (n == 3) {
            return -1;
        }

        off[n] = start;
        wlen[n] = i - start;
        n++;
        start = i + 1;
    }

    if (n != 3 || !label_ok(m + off[0], wlen[0])
        || !label_ok(m + off[1], wlen[1])
        || wlen[2] < 1 || wlen[2] > 255)
    {
        return -1;
    }

    for (i = off[2]; i < len; i++) {
        if (m[i] < '!' || m[i] > '~') {
            return -1;
        }
    }

    want->user_off = off[0];
    want->user_len = wlen[0];
    want->name_off = off[1];
    want->name_len = wlen[1];
    want->addr_off = off[2];
    want->addr_len = wlen[2];

    return 0;
}


static void
check_ready(const uint8_t *data, size_t size)
{
    int          rc;
    sbx_ready_t  rd, rd2, want;

    memset(&rd, 0xa5, sizeof(rd));
    rc = sbx_ready_parse(data, size, &rd);

    memset(&rd2, 0, sizeof(rd2));

    if (sbx_ready_parse(data, size, &rd2) != rc
        || memcmp(&rd, &rd2, sizeof(rd)) != 0)
    {
        abort();
    }

    memset(&want, 0, sizeof(want));

    if (rc != expected_ready(data, size, &want)
        || memcmp(&rd, &want, sizeof(rd)) != 0)
    {
        abort();
    }
}


static int
all_zero(const unsigned char *p, size_t len)
{
    while (len--) {
        if (*p++) {
            return 0;
        }
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t            i;
    sbx_event_t       ev, ev2;
    sbx_event_kind_e  kind;

    /* garbage in the output struct must not leak into the answer */

    memset(&ev, 0xa5, sizeof(ev));
    kind = sbx_event_parse(data, size, &ev);

    memset(&ev2, 0, sizeof(ev2));

    if (sbx_event_parse(data, size, &ev2) != kind
        || memcmp(&ev, &ev2, sizeof(ev)) != 0)
    {
        abort();
    }

    if (kind != ev.kind || kind != expected_kind(data, size)) {
        abort();
    }

    switch (kind) {

    case SBX_EVENT_FLUSH:
    case SBX_EVENT_UNKNOWN:
        if (ev.user_off || ev.user_len || ev.name_off || ev.name_len
            || !all_zero(ev.digest, sizeof(ev.digest)))
        {
            abort();
        }

        break;

    case SBX_EVENT_KEY:
        if (ev.user_off || ev.user_len || ev.name_off || ev.name_len) {
            abort();
        }

        for (i = 0; i < SBX_EVENT_DIGEST_LEN; i++) {
            if (ev.digest[i] != (hexval(data[4 + 2 * i]) << 4
                                 | hexval(data[5 + 2 * i])))
            {
                abort();
            }
        }

        break;

    case SBX_EVENT_USER:
        if (ev.user_off != 5 || ev.user_len == 0
            || ev.user_off + ev.user_len != size
            || ev.name_off || ev.name_len
            || !all_zero(ev.digest, sizeof(ev.digest)))
        {
            abort();
        }

        break;

    case SBX_EVENT_ROUTE:
        if (ev.user_off != 6 || ev.user_len == 0 || ev.name_len == 0
            || ev.name_off != ev.user_off + ev.user_len + 1
            || ev.name_off > size || ev.name_len != size - ev.name_off
            || data[ev.name_off - 1] != ' '
            || memchr(data + ev.user_off, ' ', ev.user_len) != NULL
            || !all_zero(ev.digest, sizeof(ev.digest)))
        {
            abort();
        }

        break;

    default:
        abort();
    }

    check_ready(data, size);

    return 0;
}
