/*
 * route.c - turns a Sandbox object into a route.
 *
 * owner   metadata.labels["user"] (as the original proxy labelled them)
 * addr    status.podIPs[0] and the sandbox port: the annotation
 *         "agents.x-k8s.io/port", else the first container port, else
 *         the configured default (the AIO runtime listens on 8080).
 *         Without a pod IP, addr stays empty and the daemon resolves
 *         status.serviceFQDN (resolve.c): nginx never resolves names.
 * ready   the Ready condition is "True" and the sandbox is not suspended
 * idle    the annotation "agents.x-k8s.io/idle-timeout" (route_duration);
 *         a malformed one counts as absent
 */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

static const char *str(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void copy(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

int route_label_valid(const char *s) {
    size_t i, len = strlen(s);

    if (len == 0 || len > 63) return 0;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) continue;
        if (c == '-' && i != 0 && i != len - 1) continue;
        return 0;
    }
    return 1;
}

int route_dns_name_valid(const char *s) {
    char label[64];
    const char *dot;
    size_t len;

    if (strlen(s) > 253) return 0;
    for (;;) {
        dot = strchr(s, '.');
        len = dot ? (size_t) (dot - s) : strlen(s);
        if (len == 0 || len > 63) return 0;
        memcpy(label, s, len);
        label[len] = '\0';
        if (!route_label_valid(label)) return 0;
        if (dot == NULL) return 1;
        s = dot + 1;
        if (*s == '\0') return 1;          /* a trailing dot: absolute */
    }
}

int route_set_addr(route *r, const char *ip) {
    unsigned char bin[16];

    if (inet_pton(AF_INET, ip, bin) == 1)
        snprintf(r->addr, sizeof(r->addr), "%s:%d", ip, r->port);
    else if (inet_pton(AF_INET6, ip, bin) == 1)
        snprintf(r->addr, sizeof(r->addr), "[%s]:%d", ip, r->port);
    else
        return -1;
    return 0;
}

int route_rv_older(const char *a, const char *b) {
    char *end;
    unsigned long long x, y;

    x = strtoull(a, &end, 10);
    if (*a == '\0' || *end != '\0') return 0;
    y = strtoull(b, &end, 10);
    if (*b == '\0' || *end != '\0') return 0;
    return x < y;
}

long route_duration(const char *s) {
    char *end;
    long long v;
    long unit = 1;

    if (*s < '0' || *s > '9') return -1;
    v = strtoll(s, &end, 10);
    if (strcmp(end, "m") == 0) unit = 60;
    else if (strcmp(end, "h") == 0) unit = 3600;
    else if (*end != '\0' && strcmp(end, "s") != 0) return -1;
    if (v > ROUTE_IDLE_MAX / unit) return -1;
    return (long) v * unit;
}

int route_port_of(json_t *obj, int default_port) {
    json_t *spec, *containers, *ports;
    const char *ann;
    long p;

    ann = str(json_object_get(json_object_get(obj, "metadata"),
                              "annotations"), "agents.x-k8s.io/port");
    if (*ann) {
        char *end;

        /* "80x" is no port: the container's port then, as for none */
        p = strtol(ann, &end, 10);
        if (end != ann && *end == '\0' && p > 0 && p < 65536) return (int) p;
    }

    spec = json_object_get(json_object_get(json_object_get(obj, "spec"),
                                           "podTemplate"), "spec");
    containers = json_object_get(spec, "containers");
    ports = json_object_get(json_array_get(containers, 0), "ports");
    p = json_integer_value(json_object_get(json_array_get(ports, 0),
                                           "containerPort"));
    if (p > 0 && p < 65536) return (int) p;

    return default_port;
}

/* a Ready condition observed for an older spec (a pause or resume the
 * controller has not acted on yet) says nothing of the pod now */
static void conditions(json_t *status, json_int_t generation, route *r) {
    size_t i;
    json_t *c, *og;

    json_array_foreach(json_object_get(status, "conditions"), i, c) {
        if (strcmp(str(c, "type"), "Ready") != 0) continue;
        r->ready = strcmp(str(c, "status"), "True") == 0;
        copy(r->reason, sizeof(r->reason), str(c, "reason"));
        copy(r->message, sizeof(r->message), str(c, "message"));

        og = json_object_get(c, "observedGeneration");
        if (r->ready && json_is_integer(og) && generation > 0
            && json_integer_value(og) < generation) {
            r->ready = 0;
            copy(r->reason, sizeof(r->reason), "Reconciling");
            copy(r->message, sizeof(r->message),
                 "the Ready condition predates the latest spec change");
        }
    }
}

int route_from_object(json_t *obj, const char *api_version,
                      int default_port, route *r) {
    json_t *meta, *spec, *status, *ips;
    const char *ip, *ann;

    memset(r, 0, sizeof(*r));
    meta = json_object_get(obj, "metadata");
    spec = json_object_get(obj, "spec");
    status = json_object_get(obj, "status");

    /* validated before copying: a truncated owner would be another */
    if (!route_label_valid(str(json_object_get(meta, "labels"), "user"))
        || !route_label_valid(str(meta, "name")))
        return -1;

    copy(r->user, sizeof(r->user),
         str(json_object_get(meta, "labels"), "user"));
    copy(r->name, sizeof(r->name), str(meta, "name"));
    copy(r->namespace, sizeof(r->namespace), str(meta, "namespace"));
    copy(r->rv, sizeof(r->rv), str(meta, "resourceVersion"));
    copy(r->uid, sizeof(r->uid), str(meta, "uid"));

    if (strcmp(api_version, "v1alpha1") == 0) {
        json_t *rep = json_object_get(spec, "replicas");
        r->suspended = rep != NULL && json_integer_value(rep) == 0;
    } else {
        r->suspended = strcmp(str(spec, "operatingMode"), "Suspended") == 0;
    }

    conditions(status, json_integer_value(json_object_get(meta, "generation")),
               r);
    if (r->suspended) r->ready = 0;

    ann = str(json_object_get(meta, "annotations"), ROUTE_IDLE_ANNOTATION);
    r->idle_timeout = *ann ? route_duration(ann) : -1;

    copy(r->fqdn, sizeof(r->fqdn), str(status, "serviceFQDN"));
    if (!route_dns_name_valid(r->fqdn)) r->fqdn[0] = '\0';
    r->port = route_port_of(obj, default_port);

    /* a pod IP that is not an IP literal is ignored, never resolved */
    ips = json_object_get(status, "podIPs");
    ip = json_string_value(json_array_get(ips, 0));
    if (ip && *ip) route_set_addr(r, ip);

    return 0;
}
