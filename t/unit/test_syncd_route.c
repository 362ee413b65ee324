/*
 * Unit tests of src/syncd/route.c: a Sandbox object as a route.  TAP out.
 */

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "route.h"
#include "tap.h"


/* a v1beta1 object around the given metadata, spec and status bodies */
static int
parse(const char *api, const char *meta, const char *spec,
    const char *status, route *r)
{
    char          text[4096];
    int           rc;
    json_t       *obj;
    json_error_t  err;

    snprintf(text, sizeof(text),
             "{\"metadata\": {%s}, \"spec\": {%s}, \"status\": {%s}}",
             meta, spec, status);
    obj = json_loads(text, 0, &err);
    if (obj == NULL) {
        printf("# bad fixture: %s: %s\n", err.text, text);
        return -2;
    }

    rc = route_from_object(obj, api, 8080, r);
    json_decref(obj);
    return rc;
}


#define META  "\"name\": \"sb1\", \"namespace\": \"user-alice\", " \
              "\"resourceVersion\": \"42\", \"uid\": \"u-1\", " \
              "\"labels\": {\"user\": \"alice\"}"
#define READY "\"conditions\": [{\"type\": \"Ready\", \"status\": \"True\", " \
              "\"reason\": \"DependenciesReady\", \"message\": \"ok\"}]"


static void
test_ready(void)
{
    route  r;

    tap_ok(parse("v1beta1", META, "",
                 READY ", \"podIPs\": [\"10.1.2.3\", \"fd00::9\"], "
                 "\"serviceFQDN\": \"sb1.user-alice.svc.cluster.local\"",
                 &r) == 0, "a ready sandbox is routed");
    tap_ok(strcmp(r.user, "alice") == 0 && strcmp(r.name, "sb1") == 0,
           "owner from the label, name from metadata");
    tap_ok(strcmp(r.addr, "10.1.2.3:8080") == 0,
           "first pod IP and the default port: %s", r.addr);
    tap_ok(r.ready == 1 && r.suspended == 0, "ready, not suspended");
    tap_ok(strcmp(r.rv, "42") == 0 && strcmp(r.uid, "u-1") == 0
           && strcmp(r.namespace, "user-alice") == 0,
           "resourceVersion, uid, namespace");
    tap_ok(strcmp(r.reason, "DependenciesReady") == 0
           && strcmp(r.message, "ok") == 0, "reason and message");
    tap_ok(strcmp(r.fqdn, "sb1.user-alice.svc.cluster.local") == 0,
           "service name kept");
}


static void
test_ports(void)
{
    route  r;

    parse("v1beta1", META ", \"annotations\": "
          "{\"agents.x-k8s.io/port\": \"9000\"}",
          "\"podTemplate\": {\"spec\": {\"containers\": "
          "[{\"ports\": [{\"containerPort\": 7000}]}]}}",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(strcmp(r.addr, "10.0.0.1:9000") == 0,
           "the port annotation wins: %s", r.addr);

    parse("v1beta1", META ", \"annotations\": "
          "{\"agents.x-k8s.io/port\": \"99999\"}",
          "\"podTemplate\": {\"spec\": {\"containers\": "
          "[{\"ports\": [{\"containerPort\": 7000}]}]}}",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(strcmp(r.addr, "10.0.0.1:7000") == 0,
           "an invalid annotation falls back to the container port: %s",
           r.addr);

    parse("v1beta1", META ", \"annotations\": "
          "{\"agents.x-k8s.io/port\": \"9000x\"}",
          "\"podTemplate\": {\"spec\": {\"containers\": "
          "[{\"ports\": [{\"containerPort\": 7000}]}]}}",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(strcmp(r.addr, "10.0.0.1:7000") == 0,
           "an annotation with trailing characters is no port: %s",
           r.addr);

    parse("v1beta1", META, "", READY ", \"podIPs\": [\"fd00::1\"]", &r);
    tap_ok(strcmp(r.addr, "[fd00::1]:8080") == 0,
           "IPv6 in brackets: %s", r.addr);
    tap_ok(r.port == 8080, "port kept");
}


static void
test_addresses(void)
{
    route  r;

    parse("v1beta1", META, "",
          READY ", \"podIPs\": [\"pod.example.com\"]", &r);
    tap_ok(r.addr[0] == '\0', "a pod IP that is a name is never used");

    parse("v1beta1", META, "", READY ", \"podIPs\": [\"10.0.0.1:80\"]", &r);
    tap_ok(r.addr[0] == '\0', "an IP with a port is not an IP");

    parse("v1beta1", META, "", READY, &r);
    tap_ok(r.addr[0] == '\0' && r.fqdn[0] == '\0',
           "no pod IP, no service name: no address");

    parse("v1beta1", META, "",
          READY ", \"serviceFQDN\": \"bad_name.svc\"", &r);
    tap_ok(r.fqdn[0] == '\0', "a service name that is not DNS is dropped");

    tap_ok(route_set_addr(&r, "1.2.3") == -1, "1.2.3 is not an IP");
}


static void
test_suspension(void)
{
    route  r;

    parse("v1beta1", META, "\"operatingMode\": \"Suspended\"",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(r.suspended == 1 && r.ready == 0,
           "v1beta1: Suspended is paused, never ready");

    parse("v1beta1", META, "\"operatingMode\": \"Running\", \"replicas\": 0",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(r.suspended == 0 && r.ready == 1,
           "v1beta1: replicas do not suspend");

    parse("v1alpha1", META, "\"replicas\": 0",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(r.suspended == 1 && r.ready == 0, "v1alpha1: replicas 0 paused");

    parse("v1alpha1", META, "\"replicas\": 1",
          READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(r.suspended == 0 && r.ready == 1, "v1alpha1: replicas 1 runs");

    parse("v1alpha1", META, "", READY ", \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(r.suspended == 0, "v1alpha1: no replicas means one");

    parse("v1beta1", META, "",
          "\"conditions\": [{\"type\": \"Ready\", \"status\": \"False\", "
          "\"reason\": \"PodNotReady\"}], \"podIPs\": [\"10.0.0.1\"]", &r);
    tap_ok(r.ready == 0 && strcmp(r.reason, "PodNotReady") == 0,
           "Ready False: not ready, with its reason");
}


static void
test_rejects(void)
{
    route  r;

    tap_ok(parse("v1beta1", "\"name\": \"sb1\"", "", READY, &r) == -1,
           "no owner label: not routed");
    tap_ok(parse("v1beta1", "\"name\": \"SB1\", \"labels\": "
                 "{\"user\": \"alice\"}", "", READY, &r) == -1,
           "a name that is not a DNS label: not routed");
    tap_ok(parse("v1beta1", "\"name\": \"sb1\", \"labels\": {\"user\": "
                 "\"a234567890123456789012345678901234567890123456789012"
                 "345678901234\"}", "", READY, &r) == -1,
           "an owner longer than 63: not routed");
    tap_ok(parse("v1beta1", "\"name\": \"sb1\", \"labels\": "
                 "{\"user\": \"al:ice\"}", "", READY, &r) == -1,
           "an owner with a colon: not routed");
}


static void
test_helpers(void)
{
    char  name[300];

    tap_ok(route_rv_older("9", "10") == 1, "rv 9 is older than 10");
    tap_ok(route_rv_older("10", "9") == 0, "rv 10 is not older than 9");
    tap_ok(route_rv_older("10", "10") == 0, "equal is not older");
    tap_ok(route_rv_older("x", "10") == 0 && route_rv_older("1", "") == 0,
           "non-numeric is never older");

    tap_ok(route_dns_name_valid("sb1.user-a.svc.cluster.local"),
           "a service name");
    tap_ok(route_dns_name_valid("localhost."), "an absolute name");
    tap_ok(!route_dns_name_valid("a..b") && !route_dns_name_valid(".a")
           && !route_dns_name_valid("-a.b") && !route_dns_name_valid(""),
           "empty labels, leading hyphens");

    memset(name, 'a', sizeof(name));
    name[254] = '\0';
    for (int i = 63; i < 254; i += 64) {
        name[i] = '.';
    }
    tap_ok(!route_dns_name_valid(name), "254 bytes is too long");
    name[253] = '\0';
    tap_ok(route_dns_name_valid(name), "253 bytes is not");
}


/* a Ready condition written for an older spec is not trusted */
static void
test_generation(void)
{
    route  r;

#define COND(og) "\"conditions\": [{\"type\": \"Ready\", " \
                 "\"status\": \"True\", \"reason\": \"DependenciesReady\"" \
                 og "}], \"podIPs\": [\"10.1.2.3\"]"

    tap_ok(parse("v1beta1", META ", \"generation\": 3", "",
                 COND(", \"observedGeneration\": 2"), &r) == 0
           && r.ready == 0 && strcmp(r.reason, "Reconciling") == 0,
           "Ready for generation 2 of 3: not ready, %s", r.reason);
    tap_ok(parse("v1beta1", META ", \"generation\": 3", "",
                 COND(", \"observedGeneration\": 3"), &r) == 0
           && r.ready == 1, "Ready for the current generation: ready");
    tap_ok(parse("v1beta1", META ", \"generation\": 3", "",
                 COND(""), &r) == 0 && r.ready == 1,
           "no observedGeneration: the condition is taken as it is");
    tap_ok(parse("v1beta1", META ", \"generation\": 3", "",
                 COND(", \"observedGeneration\": 4"), &r) == 0
           && r.ready == 1, "a newer observedGeneration: ready");
#undef COND
}


static void
test_idle(void)
{
    route  r;

    parse("v1beta1", META, "", READY, &r);
    tap_ok(r.idle_timeout == -1, "no idle annotation: -1 (the default)");

    parse("v1beta1", META ", \"annotations\": "
          "{\"agents.x-k8s.io/idle-timeout\": \"300\"}", "", READY, &r);
    tap_ok(r.idle_timeout == 300, "idle annotation in seconds");

    parse("v1beta1", META ", \"annotations\": "
          "{\"agents.x-k8s.io/idle-timeout\": \"0\"}", "", READY, &r);
    tap_ok(r.idle_timeout == 0, "idle annotation 0: never");

    parse("v1beta1", META ", \"annotations\": "
          "{\"agents.x-k8s.io/idle-timeout\": \"five\"}", "", READY, &r);
    tap_ok(r.idle_timeout == -1, "a malformed idle annotation counts as absent");

    tap_ok(route_duration("300") == 300 && route_duration("300s") == 300
           && route_duration("5m") == 300 && route_duration("2h") == 7200
           && route_duration("0") == 0, "durations: s, m, h, bare seconds");
    tap_ok(route_duration("") == -1 && route_duration("-5") == -1
           && route_duration("5d") == -1 && route_duration("1.5m") == -1
           && route_duration(" 5") == -1 && route_duration("5 m") == -1,
           "durations: malformed ones refused");
    tap_ok(route_duration("8760h") == 31536000
           && route_duration("8761h") == -1
           && route_duration("99999999999999999999") == -1,
           "durations: at most a year");
}


int
main(void)
{
    test_ready();
    test_ports();
    test_addresses();
    test_suspension();
    test_rejects();
    test_helpers();
    test_generation();
    test_idle();

    return tap_done();
}
