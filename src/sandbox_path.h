
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Parsing of sandbox request paths.  Pure C, no nginx headers: the same
 * file builds into the module, the unit tests and the fuzzer.
 *
 *   /<user>/<sandbox>[/<rest>]     the user form
 *   /proxy/<sandbox>[/<rest>]      the proxy form
 *
 * "proxy" is therefore a reserved user name: "/proxy/x/y" is always the
 * proxy form, a user called "proxy" cannot use the user form.
 */


#ifndef _SANDBOX_PATH_H_INCLUDED_
#define _SANDBOX_PATH_H_INCLUDED_


#include <stddef.h>


typedef enum {
    SBX_FORM_USER = 1,          /* /<user>/<sandbox>[/<rest>] */
    SBX_FORM_PROXY = 2          /* /proxy/<sandbox>[/<rest>] */
} sbx_form_t;


/* slices of the parsed URI: offsets into it and lengths, never copies */
typedef struct {
    sbx_form_t  form;
    size_t      user_off;
    size_t      user_len;       /* 0 for the proxy form */
    size_t      name_off;
    size_t      name_len;
    size_t      rest_off;       /* rest_off + rest_len == uri_len */
    size_t      rest_len;       /* 0: the caller uses "/" */
} sbx_path_t;


#define SBX_PATH_OK          0
#define SBX_PATH_MALFORMED  -1  /* neither form, or an empty segment */
#define SBX_PATH_BAD_NAME   -2  /* a name that is not a DNS-1123 label */
#define SBX_PATH_TRICK      -3  /* the raw path disagrees or hides something */

#define SBX_NAME_MAX        63


/*
 * uri: nginx's normalized, percent-decoded URI (r->uri: dot segments
 * resolved, slashes merged); the decision is made on it.
 *
 * raw: the request's path as sent (r->unparsed_uri), or NULL to skip the
 * raw checks (internal redirects).  It ends at its first '?', so passing
 * the query along is harmless.  The raw path is refused (SBX_PATH_TRICK)
 * when it does not start with the routing prefix of uri ("/<user>/<sandbox>"
 * or "/proxy/<sandbox>") verbatim, followed by its end or '/'; or when it
 * holds anywhere a backslash, a control byte, a malformed escape or an
 * escaped '/', '\', '.', NUL or control.  Other escapes (%20 ...) pass.
 *
 * On success *out holds the slices; otherwise *out is zeroed.  O(n), no
 * allocation.
 */
int sbx_path_parse(const unsigned char *uri, size_t uri_len,
    const unsigned char *raw, size_t raw_len, sbx_path_t *out);

/* 1 to 63 of [a-z0-9-], starting and ending alphanumeric: 1 if valid */
int sbx_dns_label_valid(const unsigned char *p, size_t len);


#endif /* _SANDBOX_PATH_H_INCLUDED_ */
