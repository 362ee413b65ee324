
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Messages of the sbx:events invalidation channel, decoded.  Pure C: no
 * nginx headers, no allocation, no global state.
 */


#ifndef _SANDBOX_EVENT_H_INCLUDED_
#define _SANDBOX_EVENT_H_INCLUDED_


#include <stddef.h>


typedef enum {
    SBX_EVENT_UNKNOWN = 0,  /* a newer writer's, or garbage: flush all */
    SBX_EVENT_FLUSH,        /* "flush": everything may have changed */
    SBX_EVENT_KEY,          /* "key <sha256hex>": one key record changed */
    SBX_EVENT_USER,         /* "user <name>": everything of that user */
    SBX_EVENT_ROUTE         /* "route <user> <name>": one sandbox's route */
} sbx_event_kind_e;


#define SBX_EVENT_DIGEST_LEN  32


/*
 * Strings are offsets into the message, never copies.  A user of a "user"
 * message is the whole rest of it; a route's user ends at its first blank
 * and its name is the rest (neither empty).  A key's digest is decoded to
 * its 32 raw bytes (hex digits in either case).
 */

typedef struct {
    sbx_event_kind_e  kind;
    unsigned char     digest[SBX_EVENT_DIGEST_LEN];
    size_t            user_off;
    size_t            user_len;
    size_t            name_off;
    size_t            name_len;
} sbx_event_t;


/* decodes msg of len bytes into *ev; returns ev->kind */
sbx_event_kind_e sbx_event_parse(const unsigned char *msg, size_t len,
    sbx_event_t *ev);


#endif /* _SANDBOX_EVENT_H_INCLUDED_ */
