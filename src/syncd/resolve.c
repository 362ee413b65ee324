/*
 * resolve.c - status.serviceFQDN to an IP literal for the route table,
 * with c-ares: lookups are started, their sockets waited on by the
 * daemon's own loop, and their answers handled when they come, so no
 * lookup ever holds the watch.  Each lookup is bounded (RESOLVE_TIMEOUT_MS,
 * RESOLVE_TRIES); the daemon retries failed ones later.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ares.h>

#include "resolve.h"

struct resolver {
    ares_channel channel;
};

typedef struct lookup {
    resolve_fn fn;
    void *data;
} lookup;

resolver *resolver_new(const char *servers, char *err, size_t size) {
    struct ares_options o;
    resolver *res;
    int rc;

    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, size, "%s", ares_strerror(rc));
        return NULL;
    }
    res = calloc(1, sizeof(*res));
    if (res == NULL) {
        snprintf(err, size, "out of memory");
        ares_library_cleanup();
        return NULL;
    }
    memset(&o, 0, sizeof(o));
    o.timeout = RESOLVE_TIMEOUT_MS;
    o.tries = RESOLVE_TRIES;
    rc = ares_init_options(&res->channel, &o,
                           ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc == ARES_SUCCESS && servers && *servers)
        rc = ares_set_servers_ports_csv(res->channel, servers);
    if (rc != ARES_SUCCESS) {
        snprintf(err, size, "%s", ares_strerror(rc));
        resolver_free(res);
        return NULL;
    }
    return res;
}

void resolver_free(resolver *res) {
    if (res == NULL) return;
    if (res->channel) ares_destroy(res->channel);
    free(res);
    ares_library_cleanup();
}

/* the first IPv4 address, else the first IPv6 one */
static int pick(const struct ares_addrinfo *ai, char *ip, size_t size) {
    const struct ares_addrinfo_node *n, *v6 = NULL;
    const void *bin;

    for (n = ai ? ai->nodes : NULL; n; n = n->ai_next) {
        if (n->ai_family == AF_INET) break;
        if (n->ai_family == AF_INET6 && v6 == NULL) v6 = n;
    }
    if (n == NULL) n = v6;
    if (n == NULL) return -1;
    bin = n->ai_family == AF_INET
          ? (const void *) &((struct sockaddr_in *) n->ai_addr)->sin_addr
          : (const void *) &((struct sockaddr_in6 *) n->ai_addr)->sin6_addr;
    return inet_ntop(n->ai_family, bin, ip, size) ? 0 : -1;
}

static void done(void *arg, int status, int timeouts,
                 struct ares_addrinfo *ai) {
    lookup *l = arg;
    char ip[INET6_ADDRSTRLEN];

    (void) timeouts;
    if (status != ARES_SUCCESS)
        l->fn(l->data, NULL, ares_strerror(status));
    else if (pick(ai, ip, sizeof(ip)) != 0)
        l->fn(l->data, NULL, "no address");
    else
        l->fn(l->data, ip, NULL);
    ares_freeaddrinfo(ai);
    free(l);
}

int resolver_start(resolver *res, const char *name, resolve_fn fn,
                   void *data) {
    struct ares_addrinfo_hints hints;
    lookup *l = malloc(sizeof(*l));

    if (l == NULL) return -1;
    l->fn = fn;
    l->data = data;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* may call back at once (a name in /etc/hosts) */
    ares_getaddrinfo(res->channel, name, NULL, &hints, done, l);
    return 0;
}

int resolver_fds(resolver *res, struct pollfd *fds, int max, int *timeout_ms) {
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    struct timeval max_tv, tv, *t;
    unsigned bits;
    int i, n = 0;

    /* c-ares's own READABLE/WRITABLE macros shift a signed 1 into the
     * sign bit: the same tests, unsigned */
    bits = (unsigned) ares_getsock(res->channel, socks, ARES_GETSOCK_MAXNUM);
    for (i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
        short ev = 0;
        if (bits & (1u << i)) ev |= POLLIN;
        if (bits & (1u << (i + ARES_GETSOCK_MAXNUM))) ev |= POLLOUT;
        if (ev == 0) continue;
        fds[n].fd = socks[i];
        fds[n].events = ev;
        fds[n].revents = 0;
        n++;
    }
    max_tv.tv_sec = *timeout_ms / 1000;
    max_tv.tv_usec = (*timeout_ms % 1000) * 1000;
    t = ares_timeout(res->channel, &max_tv, &tv);
    if (t) *timeout_ms = (int) (t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
    return n;
}

void resolver_process(resolver *res) {
    struct pollfd fds[ARES_GETSOCK_MAXNUM];
    int timeout = 0, n, i;

    n = resolver_fds(res, fds, ARES_GETSOCK_MAXNUM, &timeout);
    if (n > 0 && poll(fds, n, 0) < 0) n = 0;
    for (i = 0; i < n; i++) {
        if (fds[i].revents == 0) continue;
        ares_process_fd(res->channel,
            fds[i].revents & (POLLIN | POLLERR | POLLHUP)
                ? fds[i].fd : ARES_SOCKET_BAD,
            fds[i].revents & POLLOUT ? fds[i].fd : ARES_SOCKET_BAD);
    }
    /* the lookups whose time is up */
    ares_process_fd(res->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

int resolve_apply(route *r, const char *ip, const char *error) {
    if (ip && route_set_addr(r, ip) == 0) return 0;
    r->addr[0] = '\0';
    r->ready = 0;
    snprintf(r->reason, sizeof(r->reason), "AddressUnresolved");
    snprintf(r->message, sizeof(r->message), "cannot resolve %.200s: %s",
             r->fqdn, ip ? "not an address" : error);
    return -1;
}
