#define _GNU_SOURCE
/*
 * lease.c - one Lease, taken or renewed with optimistic concurrency: the
 * update carries the resourceVersion read, so of two contenders exactly
 * one wins (the other gets 409).  A lease whose renewTime is older than
 * its duration is free for the taking.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "lease.h"

static void micro_time(char *buf, size_t size) {
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (long) tv.tv_usec);
}

static double parse_time(const char *s) {
    struct tm tm;
    const char *frac;

    if (s == NULL) return 0;
    memset(&tm, 0, sizeof(tm));
    if (strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL) return 0;
    frac = strchr(s, '.');
    return (double) timegm(&tm) + (frac ? strtod(frac, NULL) : 0);
}

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static long long monotonic_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* what is left of the attempt's budget, for the next request */
static int budget(kube *k, long long end) {
    long long left = end - monotonic_ms();

    if (left <= 0) return -1;
    k->timeout_ms = (long) left;
    return 0;
}

int lease_acquire(kube *k, const char *ns, const char *name, const char *id,
                  int duration, long budget_ms) {
    char path[512], t[64];
    json_t *lease = NULL, *spec, *out = NULL;
    const char *holder;
    char *body;
    long status, saved = k->timeout_ms;
    long long end = monotonic_ms() + budget_ms;
    int rc = -1;

    snprintf(path, sizeof(path),
             "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", ns, name);
    micro_time(t, sizeof(t));
    if (budget(k, end) != 0) goto done;
    status = kube_get(k, path, &lease);

    if (status == 404) {
        json_decref(lease);
        lease = json_pack("{ss ss s{ss ss} s{ss si ss ss si}}",
            "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
            "metadata", "name", name, "namespace", ns,
            "spec", "holderIdentity", id, "leaseDurationSeconds", duration,
            "acquireTime", t, "renewTime", t, "leaseTransitions", 0);
        body = json_dumps(lease, JSON_COMPACT);
        snprintf(path, sizeof(path),
                 "/apis/coordination.k8s.io/v1/namespaces/%s/leases", ns);
        status = budget(k, end) == 0
                 ? kube_send(k, "POST", path, body, NULL, &out) : 0;
        free(body);
        rc = status == 201 ? 1 : status == 409 ? 0 : -1;
        goto done;
    }
    if (status != 200 || lease == NULL) goto done;

    spec = json_object_get(lease, "spec");
    holder = json_string_value(json_object_get(spec, "holderIdentity"));

    if (holder == NULL || strcmp(holder, id) != 0) {
        double renew = parse_time(json_string_value(
                           json_object_get(spec, "renewTime")));
        json_int_t d = json_integer_value(
                           json_object_get(spec, "leaseDurationSeconds"));
        if (holder && *holder && renew + (d ? d : duration) > now()) {
            rc = 0;                         /* someone else leads */
            goto done;
        }
        json_object_set_new(spec, "acquireTime", json_string(t));
        json_object_set_new(spec, "leaseTransitions", json_integer(
            json_integer_value(json_object_get(spec, "leaseTransitions")) + 1));
    }

    json_object_set_new(spec, "holderIdentity", json_string(id));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(duration));
    json_object_set_new(spec, "renewTime", json_string(t));

    /* resourceVersion stays in metadata: a concurrent update makes 409 */
    body = json_dumps(lease, JSON_COMPACT);
    status = budget(k, end) == 0
             ? kube_send(k, "PUT", path, body, NULL, &out) : 0;
    free(body);
    rc = status == 200 ? 1 : status == 409 ? 0 : -1;

done:
    k->timeout_ms = saved;
    json_decref(lease);
    json_decref(out);
    return rc;
}
