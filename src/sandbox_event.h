
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Messages of the sbx:events invalidation channel and of the sbx:ready
 * channel, decoded.  Pure C: no nginx headers, no allocation, no global
 * state.
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


/*
 * An sbx:ready message, "<user> <name> <addr>": the route of that sandbox
 * was just written ready (and not suspended) at addr.  user and name are
 * DNS-1123 labels, addr is 1 to SBX_READY_ADDR_MAX printable bytes, no
 * blank; one blank between them, nothing around.  Offsets into the
 * message, never copies.
 */

#define SBX_READY_ADDR_MAX  255

typedef struct {
    size_t            user_off;
    size_t            user_len;
    size_t            name_off;
    size_t            name_len;
    size_t            addr_off;
    size_t            addr_len;
} sbx_ready_t;


/* 0 with *rd filled; -1 for anything else, *rd zeroed */
int sbx_ready_parse(const unsigned char *msg, size_t len, sbx_ready_t *rd);


#endif /* _SANDBOX_EVENT_H_INCLUDED_ */
