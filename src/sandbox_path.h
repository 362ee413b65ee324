
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Parsing of sandbox request paths.  Pure C, no nginx headers: the same
 * file builds into the module, the unit tests and the fuzzer.
 */


#ifndef _SANDBOX_PATH_H_INCLUDED_
#define _SANDBOX_PATH_H_INCLUDED_


#include <stddef.h>


typedef enum {
    SBX_FORM_USER = 1,          /* /<user>/<sandbox>[/<rest>] */
    SBX_FORM_PROXY = 2          /* /proxy/<sandbox>[/<rest>] */
} sbx_form_t;


/* slices of the parsed URI: offsets and lengths, never copies */
typedef struct {
    sbx_form_t  form;
    size_t      user_off;
    size_t      user_len;       /* 0 for the proxy form */
    size_t      name_off;
    size_t      name_len;
    size_t      rest_off;
    size_t      rest_len;       /* 0: the rest is "/" */
} sbx_path_t;


#define SBX_PATH_OK          0
#define SBX_PATH_MALFORMED  -1  /* neither form */
#define SBX_PATH_BAD_NAME   -2  /* a name that is not a DNS-1123 label */
#define SBX_PATH_TRICK      -3  /* the raw URI hides something */

#define SBX_NAME_MAX        63


/*
 * uri: nginx's normalized, percent-decoded URI (dot segments resolved,
 * slashes merged); decisions are made on it.  raw: the request's path as
 * sent, without the query, or NULL to skip the raw checks.
 */
int sbx_path_parse(const unsigned char *uri, size_t uri_len,
    const unsigned char *raw, size_t raw_len, sbx_path_t *out);

/* 1 to 63 of [a-z0-9-], starting and ending alphanumeric */
int sbx_dns_label_valid(const unsigned char *p, size_t len);


#endif /* _SANDBOX_PATH_H_INCLUDED_ */
