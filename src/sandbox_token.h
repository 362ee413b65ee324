
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Parsing of the Authorization header and of API key shapes.  Pure C.
 */


#ifndef _SANDBOX_TOKEN_H_INCLUDED_
#define _SANDBOX_TOKEN_H_INCLUDED_


#include <stddef.h>


#define SBX_TOKEN_OK        0
#define SBX_TOKEN_FORMAT   -1   /* not "Bearer <token>" */
#define SBX_TOKEN_EMPTY    -2   /* "Bearer", then nothing or only blanks */

#define SBX_TOKEN_MAX      512
#define SBX_KEY_PREFIX     "sk_live_"
#define SBX_KEY_LEN        40   /* the prefix and 32 base64url characters */


/*
 * "Bearer " is matched case-sensitively, as the original proxy did; the
 * token is what follows, trailing blanks trimmed.  A token with blanks or
 * controls inside, or longer than SBX_TOKEN_MAX, is a format error.
 * On SBX_TOKEN_OK the token is v[*off] .. v[*off + *tlen - 1]; otherwise
 * both are 0.
 */
int sbx_token_parse(const unsigned char *v, size_t len, size_t *off,
    size_t *tlen);

/* "sk_live_" and exactly 32 of [A-Za-z0-9_-] */
int sbx_key_format_valid(const unsigned char *k, size_t len);

/* 64 lowercase hex digits */
int sbx_hex_sha256_valid(const unsigned char *p, size_t len);


#endif /* _SANDBOX_TOKEN_H_INCLUDED_ */
