
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The sbx:events messages (docs/redis-data-model.md): "key <sha256hex>",
 * "user <name>", "route <user> <name>", "flush".  Anything else is
 * SBX_EVENT_UNKNOWN, which a gateway answers by flushing its cache.
 */


#include <string.h>

#include "sandbox_event.h"
#include "sandbox_hex.h"


static int
sbx_event_digest(unsigned char *dst, const unsigned char *hex)
{
    int     hi, lo;
    size_t  i;

    for (i = 0; i < SBX_EVENT_DIGEST_LEN; i++) {
        hi = sbx_hex(hex[2 * i]);
        lo = sbx_hex(hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        dst[i] = (unsigned char) (hi << 4 | lo);
    }

    return 0;
}


sbx_event_kind_e
sbx_event_parse(const unsigned char *msg, size_t len, sbx_event_t *ev)
{
    const unsigned char  *sp;

    memset(ev, 0, sizeof(sbx_event_t));

    if (len == 5 && memcmp(msg, "flush", 5) == 0) {
        ev->kind = SBX_EVENT_FLUSH;
        return ev->kind;
    }

    if (len == 4 + 2 * SBX_EVENT_DIGEST_LEN && memcmp(msg, "key ", 4) == 0
        && sbx_event_digest(ev->digest, msg + 4) == 0)
    {
        ev->kind = SBX_EVENT_KEY;
        return ev->kind;
    }

    if (len > 5 && memcmp(msg, "user ", 5) == 0) {
        ev->kind = SBX_EVENT_USER;
        ev->user_off = 5;
        ev->user_len = len - 5;
        return ev->kind;
    }

    if (len > 6 && memcmp(msg, "route ", 6) == 0) {
        sp = memchr(msg + 6, ' ', len - 6);

        if (sp != NULL && sp > msg + 6 && (size_t) (sp + 1 - msg) < len) {
            ev->kind = SBX_EVENT_ROUTE;
            ev->user_off = 6;
            ev->user_len = sp - msg - 6;
            ev->name_off = sp + 1 - msg;
            ev->name_len = len - ev->name_off;
            return ev->kind;
        }
    }

    memset(ev->digest, 0, sizeof(ev->digest));
    ev->kind = SBX_EVENT_UNKNOWN;

    return ev->kind;
}
