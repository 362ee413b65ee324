
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The arithmetic of the data plane's limits, free of nginx: rates in
 * nginx's "10r/s" form, the leaky bucket of limit_req (nodelay: a request
 * within the burst passes at once, one past it is refused), the numbers
 * a refusal tells the client, and the API's limit fields.  No allocation,
 * no global state.
 */


#ifndef _SANDBOX_LIMIT_H_INCLUDED_
#define _SANDBOX_LIMIT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <jansson.h>


/* "N r/s" and "N r/m" with N up to this; bursts and concurrency too */
#define SBX_LIMIT_MAX        1000000

#define SBX_LIMIT_ERR_MAX    256

#define SBX_LIMIT_RATE_RULE                                                   \
    "rate_limit must be a rate such as \"10r/s\" or \"600r/m\" "             \
    "(1 to 1000000 requests), or null"

#define SBX_LIMIT_CONC_RULE                                                   \
    "max_concurrent must be an integer from 1 to 1000000, or null"


/*
 * A rate in requests per 1000 seconds (limit_req's unit: 10r/s is 10000),
 * or 0 when the text is not "<N>r/s" or "<N>r/m" with 1 <= N <= the max.
 */
uint64_t sbx_limit_rate_parse(const char *p, size_t len);


/* one key's bucket: its level in thousandths of a request, last in ms */
typedef struct {
    uint64_t           level;
    uint64_t           last;
} sbx_bucket_t;


/* what a refusal (or an acceptance) tells the client, in seconds */
typedef struct {
    uint64_t           limit;           /* RateLimit-Limit: burst + 1 */
    uint64_t           remaining;       /* RateLimit-Remaining */
    uint64_t           reset;           /* RateLimit-Reset: bucket empty */
    uint64_t           retry_after;     /* Retry-After: next one passes */
} sbx_limit_info_t;


/*
 * Would a request at now (ms) pass a bucket of rate (per 1000 s) and
 * burst?  0: yes, *next is the bucket's level to store with now; 1: no,
 * the bucket is to be left as it is.  info, if not NULL, is filled either
 * way.  A clock that went back by up to a minute counts as no time
 * passed; further back, as 1 ms (the bucket was from another clock).
 */
int sbx_limit_bucket(const sbx_bucket_t *b, uint64_t now, uint64_t rate,
    uint64_t burst, uint64_t *next, sbx_limit_info_t *info);


/*
 * A key's and its user's overrides, as Redis holds them: 0 where none is
 * set (so the location's default applies).  Rates per 1000 s.
 */
typedef struct {
    uint32_t           rate;
    uint32_t           conc;
    uint32_t           user_rate;
    uint32_t           user_conc;
} sbx_limits_t;


/* max_concurrent as Redis holds it: 1 to the max, else 0 (none) */
uint32_t sbx_limit_conc_parse(const char *p, size_t len);


/* a limit field of an API body */
typedef enum {
    SBX_LIMIT_KEEP = 0,                 /* absent: left as it is */
    SBX_LIMIT_CLEAR,                    /* null: the default again */
    SBX_LIMIT_SET
} sbx_limit_op_e;

typedef struct {
    sbx_limit_op_e     rate_op;
    const char        *rate;            /* as given, NUL-terminated */
    size_t             rate_len;
    sbx_limit_op_e     conc_op;
    uint64_t           conc;
} sbx_limit_fields_t;


/*
 * "rate_limit" and "max_concurrent" of a body (an object or NULL):
 * 0 and *out, or -1 and the 400's message (the rule) in err.
 */
int sbx_limit_fields(const json_t *body, sbx_limit_fields_t *out,
    char *err);


#endif /* _SANDBOX_LIMIT_H_INCLUDED_ */
