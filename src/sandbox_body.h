
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management API's JSON request bodies, checked and normalized.  Plain
 * C and jansson: no nginx headers, no allocation beyond jansson's own in
 * sbx_body_load(), no global state.  Each validator takes the body (an
 * object, or NULL for no body) and returns 0 with its struct filled, or -1
 * with the 400's message in err.  Strings point into the body.
 */


#ifndef _SANDBOX_BODY_H_INCLUDED_
#define _SANDBOX_BODY_H_INCLUDED_


#include <stddef.h>
#include <time.h>

#include <jansson.h>


#define SBX_BODY_ERR_MAX       256      /* bytes of err, NUL included */
#define SBX_BODY_STRING_MAX    1024     /* bytes of a string field */

/* sbx_key_create_t.expires: a date in another form than ISO-8601 */
#define SBX_BODY_DATE_OTHER    ((time_t) -1)

#define SBX_BODY_EXPIRES_FUTURE                                               \
    "expires_at must be an ISO-8601 date in the future"


typedef struct {
    const char        *data;        /* NUL-terminated */
    size_t             len;
} sbx_body_str_t;


/* POST /api/admin/users */
typedef struct {
    sbx_body_str_t     username;    /* a DNS-1123 label, not "proxy" */
    sbx_body_str_t     email;       /* "" when absent */
} sbx_user_create_t;


/* PUT /api/admin/users/:id */
typedef enum {
    SBX_EMAIL_KEEP = 0,             /* absent */
    SBX_EMAIL_CLEAR,                /* null */
    SBX_EMAIL_SET
} sbx_email_op_e;

typedef struct {
    sbx_email_op_e     email_op;
    sbx_body_str_t     email;
    int                active;      /* -1 absent, else 0 or 1 */
} sbx_user_update_t;


/* POST /api/admin/users/:id/apikeys, POST /api/me/apikeys */
typedef struct {
    sbx_body_str_t     name;        /* "" when absent */
    time_t             expires;     /* 0: never; SBX_BODY_DATE_OTHER */
    sbx_body_str_t     expires_text;
} sbx_key_create_t;


/* POST /api/sandboxes (anon: with authentication off) */
typedef struct {
    sbx_body_str_t     username;    /* anon only: a label, "default" */
    sbx_body_str_t     name;        /* a DNS-1123 label, not "proxy" */
    sbx_body_str_t     image;       /* "" for the configured default */
    sbx_body_str_t     ns;          /* anon only: a label, "default" */
    long               idle_timeout;    /* seconds, 0 never; -1 absent */
} sbx_sandbox_create_t;

/* the longest idle_timeout: a year (sandbox-syncd's bound too) */
#define SBX_BODY_IDLE_MAX      31536000L

#define SBX_BODY_IDLE_RULE                                                    \
    "idle_timeout must be an integer number of seconds from 0 (never) "      \
    "to 31536000"


/* a body's bytes: a JSON object (to json_decref()), or NULL and err */
json_t *sbx_body_load(const char *data, size_t len, char *err);

int sbx_body_user_create(const json_t *body, sbx_user_create_t *out,
    char *err);
int sbx_body_user_update(const json_t *body, sbx_user_update_t *out,
    char *err);

/*
 * An ISO-8601 expires_at must be after now.  Another form is left to the
 * caller (SBX_BODY_DATE_OTHER, the text in expires_text), which owes it
 * the same check and SBX_BODY_EXPIRES_FUTURE.
 */
int sbx_body_key_create(const json_t *body, time_t now,
    sbx_key_create_t *out, char *err);

int sbx_body_sandbox_create(const json_t *body, int anon,
    sbx_sandbox_create_t *out, char *err);

/*
 * "2025-11-09T10:30:00Z", "2025-11-09T10:30:00.000Z", "2025-11-09" (a
 * blank may stand for the T; no zone but Z): epoch seconds, or -1.
 */
time_t sbx_iso8601_parse(const unsigned char *p, size_t len);


#endif /* _SANDBOX_BODY_H_INCLUDED_ */
