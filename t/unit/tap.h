
/*
 * A tiny TAP producer for the C unit tests.
 */


#ifndef _TAP_H_INCLUDED_
#define _TAP_H_INCLUDED_


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int  tap_n;
static int  tap_failed;


static void
tap_ok(int ok, const char *fmt, ...)
{
    va_list  ap;

    tap_n++;

    if (!ok) {
        tap_failed++;
    }

    printf("%sok %d - ", ok ? "" : "not ", tap_n);

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);

    printf("\n");
}


static int
tap_done(void)
{
    printf("1..%d\n", tap_n);

    return tap_failed ? 1 : 0;
}


/* a heap copy of exactly len bytes, so that ASan sees reads past it */

static inline unsigned char *
sbx_exact(const char *s, size_t len)
{
    unsigned char  *p;

    p = malloc(len ? len : 1);
    if (p == NULL) {
        abort();
    }

    memcpy(p, s, len);

    return p;
}


#endif /* _TAP_H_INCLUDED_ */
