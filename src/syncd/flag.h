/*
 * flag.h - the numeric command-line flags of sandbox-syncd: a value is
 * read whole or refused with a message on stderr naming the flag.
 */

#ifndef SYNCD_FLAG_H
#define SYNCD_FLAG_H

/* a whole number from min to max into *out; 0, or -1 (told) */
int whole_flag(const char *flag, const char *v, long min, long max,
               long *out);

/* seconds above 0 and at most an hour, a fraction allowed; 0 or -1 */
int seconds_flag(const char *flag, const char *v, double *out);

#endif
