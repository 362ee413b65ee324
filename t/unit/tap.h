
/*
 * A tiny TAP producer for the C unit tests.
 */


#ifndef _TAP_H_INCLUDED_
#define _TAP_H_INCLUDED_


#include <stdarg.h>
#include <stdio.h>


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


#endif /* _TAP_H_INCLUDED_ */
