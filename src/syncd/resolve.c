/*
 * resolve.c - status.serviceFQDN to an IP literal for the route table.
 *
 * getaddrinfo() blocks, which the daemon can afford: it is one process
 * doing one thing, and the resolver's timeout is bounded (see main()).
 */

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "resolve.h"

static void unresolved(route *r, const char *why) {
    r->addr[0] = '\0';
    r->ready = 0;
    snprintf(r->reason, sizeof(r->reason), "AddressUnresolved");
    snprintf(r->message, sizeof(r->message), "cannot resolve %.200s: %s",
             r->fqdn, why);
}

int resolve_route(route *r) {
    struct addrinfo hints, *res, *ai, *pick = NULL;
    char ip[INET6_ADDRSTRLEN];
    const void *bin;
    int rc;

    if (r->fqdn[0] == '\0') {
        unresolved(r, "no pod IP and no service name");
        return -1;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(r->fqdn, NULL, &hints, &res);
    if (rc != 0) {
        unresolved(r, gai_strerror(rc));
        return -1;
    }

    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) { pick = ai; break; }
        if (ai->ai_family == AF_INET6 && pick == NULL) pick = ai;
    }
    if (pick == NULL) {
        freeaddrinfo(res);
        unresolved(r, "no address");
        return -1;
    }

    bin = pick->ai_family == AF_INET
          ? (const void *) &((struct sockaddr_in *) pick->ai_addr)->sin_addr
          : (const void *) &((struct sockaddr_in6 *) pick->ai_addr)->sin6_addr;
    inet_ntop(pick->ai_family, bin, ip, sizeof(ip));
    freeaddrinfo(res);
    return route_set_addr(r, ip);
}
