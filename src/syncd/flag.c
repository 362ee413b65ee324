/*
 * flag.c - the numeric command-line flags of sandbox-syncd, read whole.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "flag.h"

/*
 * A numeric flag is all of its value or an error that names it: atoi()
 * would take "80x" as 80 and "abc" as 0, silently.
 */
int whole_flag(const char *flag, const char *v, long min, long max,
               long *out) {
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "sandbox-syncd: %s %s: expected a whole number"
                " from %ld to %ld\n", flag, v, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

/* seconds, a fraction allowed (0.5), above 0 and at most an hour */
int seconds_flag(const char *flag, const char *v, double *out) {
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !(d > 0) || d > 3600) {
        fprintf(stderr, "sandbox-syncd: %s %s: expected seconds above 0,"
                " at most 3600 (0.5, 10)\n", flag, v);
        return -1;
    }
    *out = d;
    return 0;
}
