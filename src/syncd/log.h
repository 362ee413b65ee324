/*
 * log.h - the daemon's timestamped lines on stderr, for the events whose
 * order across daemons matters (who led when, which operation was done).
 */

#ifndef SYNCD_LOG_H
#define SYNCD_LOG_H

/* "sandbox-syncd: 2026-11-28T07:30:00.123Z <message>" */
void syncd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
