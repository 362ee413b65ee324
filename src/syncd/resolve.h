/*
 * resolve.h - an address for a route that has a service name but no pod
 * IP.  The daemon resolves, so that nginx workers never do; and it
 * resolves without blocking (c-ares), so that a slow DNS server never
 * stalls the watch or the heartbeat: the daemon's loop waits on the
 * resolver's sockets next to the watch's (resolver_fds) and lets it
 * work when they are ready (resolver_process).
 */

#ifndef SYNCD_RESOLVE_H
#define SYNCD_RESOLVE_H

#include <poll.h>

#include "route.h"

/* a lookup gives up after about RESOLVE_TIMEOUT_MS * (2^RESOLVE_TRIES - 1)
 * per server: 1 s, then 2 s */
#define RESOLVE_TIMEOUT_MS  1000
#define RESOLVE_TRIES       2

typedef struct resolver resolver;

/* the end of a lookup: ip is the address (IPv4 preferred) or NULL, and
 * then error says why.  Called exactly once per started lookup, from
 * resolver_start itself (names in /etc/hosts), resolver_process or
 * resolver_free. */
typedef void (*resolve_fn)(void *data, const char *ip, const char *error);

/* servers: "ip[:port],..." or NULL for the system's (/etc/resolv.conf);
 * NULL on failure, with the reason in err */
resolver *resolver_new(const char *servers, char *err, size_t size);
/* ends every lookup still running (their callbacks see an error) */
void resolver_free(resolver *res);

/* starts looking name up; -1 (and fn is never called) if it cannot */
int resolver_start(resolver *res, const char *name, resolve_fn fn,
                   void *data);

/* the sockets to wait on (at most max) and, lowered if needed, how long
 * to wait at most; returns how many */
int resolver_fds(resolver *res, struct pollfd *fds, int max, int *timeout_ms);

/* reads answers and handles timeouts without waiting; calls back */
void resolver_process(resolver *res);

/* the route with the lookup's outcome: r->addr from ip, or not ready
 * with the reason "AddressUnresolved" (and -1) */
int resolve_apply(route *r, const char *ip, const char *error);

#endif
