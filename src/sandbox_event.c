
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The sbx:events messages (docs/redis-data-model.md): "key <sha256hex>",
 * "user <name>", "route <user> <name>", "flush".  Anything else is
 * SBX_EVENT_UNKNOWN, which a gateway answers by flushing its cache.
 * And the sbx:ready messages, "<user> <name> <addr>", which a gateway
 * refuses whole when they are anything else.
 */


#include <string.h>

#include "sandbox_event.h"
#include "sandbox_hex.h"
#include "sandbox_path.h"


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


/* the end of the word at p (its first blank, or end), or NULL if empty */

static const unsigned char *
sbx_ready_word(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *sp;

    sp = memchr(p, ' ', end - p);

    if (sp == NULL) {
        sp = end;
    }

    return (sp > p) ? sp : NULL;
}


int
sbx_ready_parse(const unsigned char *msg, size_t len, sbx_ready_t *rd)
{
    size_t                i;
    const unsigned char  *end, *user_end, *name, *name_end, *addr;

    memset(rd, 0, sizeof(sbx_ready_t));

    end = msg + len;

    user_end = (len > 0) ? sbx_ready_word(msg, end) : NULL;
    if (user_end == NULL || user_end == end) {
        return -1;
    }

    name = user_end + 1;
    name_end = (name < end) ? sbx_ready_word(name, end) : NULL;
    if (name_end == NULL || name_end == end) {
        return -1;
    }

    addr = name_end + 1;

    if (addr == end || (size_t) (end - addr) > SBX_READY_ADDR_MAX
        || !sbx_dns_label_valid(msg, user_end - msg)
        || !sbx_dns_label_valid(name, name_end - name))
    {
        return -1;
    }

    /* printable, no blank: an address, not the rest of a sentence */

    for (i = 0; i < (size_t) (end - addr); i++) {
        if (addr[i] <= ' ' || addr[i] >= 0x7f) {
            return -1;
        }
    }

    rd->user_off = 0;
    rd->user_len = user_end - msg;
    rd->name_off = name - msg;
    rd->name_len = name_end - name;
    rd->addr_off = addr - msg;
    rd->addr_len = end - addr;

    return 0;
}
