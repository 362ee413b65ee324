/*
 * log.c - see log.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

void syncd_log(const char *fmt, ...) {
    char msg[1024];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* one write per line: daemons share the terminal or the file */
    fprintf(stderr, "sandbox-syncd: %04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s\n",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, (long) tv.tv_usec / 1000, msg);
}
