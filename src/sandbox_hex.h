
/*
 * Copyright (C) The sandbox gateway authors
 *
 * One hex digit's value, for the pure parsers (sandbox_path.c's %XX,
 * sandbox_event.c's key digests).  Plain C: no nginx headers.
 */


#ifndef _SANDBOX_HEX_H_INCLUDED_
#define _SANDBOX_HEX_H_INCLUDED_


/* 0 to 15, either case; -1 for any other byte */

static inline int
sbx_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


#endif /* _SANDBOX_HEX_H_INCLUDED_ */
