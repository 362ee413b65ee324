
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The route lookup's Redis replies (ngx_http_sandbox_lookup.c), decoded
 * into a key record and a route record.  Plain C and hiredis: no nginx
 * headers, no allocation, no global state.
 */


#ifndef _SANDBOX_REPLY_H_INCLUDED_
#define _SANDBOX_REPLY_H_INCLUDED_


#include <stddef.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "sandbox_limit.h"


/* what a key digest resolves to */
typedef enum {
    SBX_KEY_ABSENT = 0,             /* not looked up */
    SBX_KEY_VALID,
    SBX_KEY_UNKNOWN,
    SBX_KEY_INACTIVE,
    SBX_KEY_USER_INACTIVE
} sbx_key_state_e;


/* what (user, sandbox) resolves to */
typedef enum {
    SBX_ROUTE_ABSENT = 0,           /* not looked up */
    SBX_ROUTE_NONE,
    SBX_ROUTE_PENDING,
    SBX_ROUTE_NOT_READY,
    SBX_ROUTE_READY
} sbx_route_state_e;


#define SBX_REPLY_OK          0
#define SBX_REPLY_FAILED     -1     /* no reply, or an error reply */
#define SBX_REPLY_MALFORMED  -2     /* not the command's shape */


/* strings point into the reply: valid while the reply is */
typedef struct {
    const char        *data;
    size_t             len;
} sbx_reply_str_t;


typedef struct {
    sbx_key_state_e    key_state;
    time_t             expires;     /* 0: never; 1: unreadable, expired */
    time_t             last_used;   /* 0: never, or unreadable */
    sbx_reply_str_t    user;
    sbx_reply_str_t    id;
    sbx_limits_t       limits;      /* the key's and its user's */

    sbx_route_state_e  route_state;
    sbx_reply_str_t    addr;
} sbx_lookup_t;


/*
 * The route lookup (ngx_http_sandbox_lookup.c) is plain reads, pipelined,
 * each reply decoded on its own:
 *
 *   HMGET sbx:key:<digest> user id expires_at active last_used_at
 *                          rate_limit max_concurrent     sbx_lookup_key()
 *   HMGET sbx:user:<user> active rate_limit max_concurrent
 *                                                        sbx_lookup_user()
 *   HMGET sbx:route:<user>:<name> addr ready suspended
 *   EXISTS sbx:sandbox:<user>:<name>                     sbx_lookup_route()
 *
 * Each returns SBX_REPLY_OK, SBX_REPLY_FAILED for no reply or an error
 * reply, SBX_REPLY_MALFORMED for any other shape than the command's (an
 * array of as many strings or nils as fields asked; an integer).  A field
 * that does not read as a limit counts as not set.
 */

/*
 * The key's own record: key_state UNKNOWN (no such key), INACTIVE, or
 * VALID, its user still to be judged by sbx_lookup_user(); its user, id,
 * expiry, last use and limits.
 */
int sbx_lookup_key(const redisReply *hmget, sbx_lookup_t *out);

/*
 * Judges a VALID key by its user's record: UNKNOWN when there is none,
 * USER_INACTIVE unless it is active; any other state stays.  The user's
 * limits go into *limits either way.
 */
int sbx_lookup_user(const redisReply *hmget, sbx_key_state_e *state,
    sbx_limits_t *limits);

/*
 * The route: READY (ready, not suspended), NOT_READY, or without a route
 * PENDING when the sandbox's record exists, else NONE.
 */
int sbx_lookup_route(const redisReply *hmget, const redisReply *exists,
    sbx_lookup_t *out);


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
