/*
 * route.h - a Sandbox object, as the gateway's route table sees it.
 *
 * Pure logic over jansson values: no I/O, unit-tested on its own.
 */

#ifndef SYNCD_ROUTE_H
#define SYNCD_ROUTE_H

#include <jansson.h>

#define ROUTE_NAME_MAX  64
#define ROUTE_ADDR_MAX  64
#define ROUTE_TEXT_MAX  256

typedef struct route {
    char user[ROUTE_NAME_MAX];
    char name[ROUTE_NAME_MAX];
    char namespace[ROUTE_NAME_MAX];
    char addr[ROUTE_ADDR_MAX];      /* "ip:port", "" when unknown */
    char fqdn[ROUTE_TEXT_MAX];      /* status.serviceFQDN */
    int port;                       /* the sandbox port, known or not addr */
    char reason[ROUTE_TEXT_MAX];
    char message[ROUTE_TEXT_MAX];
    char rv[32];                    /* metadata.resourceVersion */
    char uid[64];
    int ready;
    int suspended;
    long idle_timeout;              /* the annotation, seconds; -1: none */
} route;

/* the annotation overriding sandbox-syncd's --idle-pause per sandbox */
#define ROUTE_IDLE_ANNOTATION  "agents.x-k8s.io/idle-timeout"

/* at most a year: longer is as good as never */
#define ROUTE_IDLE_MAX  31536000L

/* "300", "300s", "5m", "2h" (0: never): seconds, or -1 if malformed or
 * past ROUTE_IDLE_MAX */
long route_duration(const char *s);

/* api_version: "v1beta1" or "v1alpha1" (how suspension is spelled);
 * returns 0, or -1 when the object is not one the gateway can route
 * (no owner label, names that are not DNS labels) */
int route_from_object(json_t *obj, const char *api_version,
                      int default_port, route *r);

/* the port the gateway uses for a Sandbox: the annotation
 * "agents.x-k8s.io/port", else the first container's first port, else
 * default_port */
int route_port_of(json_t *obj, int default_port);

int route_label_valid(const char *s);

/* a DNS name: dot-separated labels, at most 253 bytes */
int route_dns_name_valid(const char *s);

/* fills r->addr from an IP literal and r->port ("[ip]:port" for IPv6);
 * -1 if ip is not an IPv4 or IPv6 literal */
int route_set_addr(route *r, const char *ip);

/* 1 if resourceVersion a is older than b (numeric compare; a
 * non-numeric version is never older) */
int route_rv_older(const char *a, const char *b);

#endif
