
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The Authorization header as the original proxy read it: a
 * case-sensitive "Bearer " and a token without blanks or controls.
 */


#include <string.h>

#include "sandbox_token.h"


int
sbx_token_parse(const unsigned char *v, size_t len, size_t *off,
    size_t *tlen)
{
    size_t  i, end;

    *off = 0;
    *tlen = 0;

    /* nginx strips trailing blanks of a header: "Bearer " arrives bare */

    if (len == 6 && memcmp(v, "Bearer", 6) == 0) {
        return SBX_TOKEN_EMPTY;
    }

    if (len < 7 || memcmp(v, "Bearer ", 7) != 0) {
        return SBX_TOKEN_FORMAT;
    }

    end = len;
    while (end > 7 && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
        end--;
    }

    if (end == 7) {
        return SBX_TOKEN_EMPTY;
    }

    if (end - 7 > SBX_TOKEN_MAX) {
        return SBX_TOKEN_FORMAT;
    }

    for (i = 7; i < end; i++) {
        if (v[i] <= 0x20 || v[i] == 0x7f) {
            return SBX_TOKEN_FORMAT;
        }
    }

    *off = 7;
    *tlen = end - 7;

    return SBX_TOKEN_OK;
}


int
sbx_key_format_valid(const unsigned char *k, size_t len)
{
    size_t  i;

    if (len != SBX_KEY_LEN
        || memcmp(k, SBX_KEY_PREFIX, sizeof(SBX_KEY_PREFIX) - 1) != 0)
    {
        return 0;
    }

    for (i = sizeof(SBX_KEY_PREFIX) - 1; i < len; i++) {
        if ((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z')
            || (k[i] >= '0' && k[i] <= '9') || k[i] == '-' || k[i] == '_')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


int
sbx_hex_sha256_valid(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len != 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}
