
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The route lookup script's reply (ngx_http_sandbox_lookup.c), decoded
 * into a key record and a route record.  Plain C and hiredis: no nginx
 * headers, no allocation, no global state.
 */


#ifndef _SANDBOX_REPLY_H_INCLUDED_
#define _SANDBOX_REPLY_H_INCLUDED_


#include <stddef.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "sandbox_limit.h"


/* what a key digest resolves to; 0: the reply has no key part */
typedef enum {
    SBX_KEY_ABSENT = 0,
    SBX_KEY_VALID,
    SBX_KEY_UNKNOWN,
    SBX_KEY_INACTIVE,
    SBX_KEY_USER_INACTIVE
} sbx_key_state_e;


/* what (user, sandbox) resolves to; 0: the reply has no route part */
typedef enum {
    SBX_ROUTE_ABSENT = 0,
    SBX_ROUTE_NONE,
    SBX_ROUTE_PENDING,
    SBX_ROUTE_NOT_READY,
    SBX_ROUTE_READY
} sbx_route_state_e;


#define SBX_REPLY_OK          0
#define SBX_REPLY_FAILED     -1     /* no reply, an error, not an array */
#define SBX_REPLY_MALFORMED  -2     /* an array, but not the script's */


/* strings point into the reply: valid while the reply is */
typedef struct {
    const char        *data;
    size_t             len;
} sbx_reply_str_t;


typedef struct {
    sbx_key_state_e    key_state;
    time_t             expires;     /* 0: never; 1: unreadable, expired */
    sbx_reply_str_t    user;
    sbx_reply_str_t    id;
    sbx_limits_t       limits;      /* the key's and its user's */

    sbx_route_state_e  route_state;
    sbx_reply_str_t    addr;
} sbx_lookup_t;


/*
 * The script answers
 *   {"nokey"}                          an unknown key
 *   {"key", user, id, expires_at, active, user's active ("" = no user),
 *    limits part?, route part?}        a known key (no route part when it
 *                                      belongs to another user)
 *   {"anon", route part}               no key asked
 * a limits part is {"limits", key's rate_limit, key's max_concurrent,
 * user's rate_limit, user's max_concurrent} (each "" when not set; one
 * that does not read as a limit counts as not set), and a route part is
 * {"none"}, {"pending"} or {"route", addr, ready, suspended}.  Returns SBX_REPLY_OK with *out filled, or an error.
 */
int sbx_lookup_reply_parse(const redisReply *reply, sbx_lookup_t *out);

/*
 * A reader of replies, hiredis's own but for arrays: one of more than
 * SBX_REPLY_MAX_ELEMENTS elements (none of the module's replies comes
 * near) is a reader error, not an allocation of its announced size.
 */
#define SBX_REPLY_MAX_ELEMENTS  1024

redisReader *sbx_reply_reader_create(void);

/*
 * One whole reply from RESP bytes, through hiredis's reader (for tests
 * and fuzzing): 0 and *reply to be freed with freeReplyObject(), or -1
 * when the bytes are not exactly one complete reply.
 */
int sbx_reply_read(const char *buf, size_t len, redisReply **reply);


#endif /* _SANDBOX_REPLY_H_INCLUDED_ */
