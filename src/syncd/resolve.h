/*
 * resolve.h - an address for a route that has a service name but no pod
 * IP.  The daemon resolves, so that nginx workers never do.
 */

#ifndef SYNCD_RESOLVE_H
#define SYNCD_RESOLVE_H

#include "route.h"

/* resolves r->fqdn into r->addr (IPv4 preferred); on failure, the route
 * is marked not ready with the reason "AddressUnresolved" and -1 is
 * returned.  Blocks for at most the resolver's timeout. */
int resolve_route(route *r);

#endif
