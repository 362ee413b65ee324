/*
 * Unit tests of src/syncd/kubeconfig.c: YAML to values, a context to a
 * server and credentials.  TAP out.
 */

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kubeconfig.h"
#include "tap.h"


static const char  config[] =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: dev\n"
    "clusters:\n"
    "- name: dev-cluster\n"
    "  cluster:\n"
    "    server: https://10.0.0.1:6443/\n"
    "    certificate-authority: pki/ca.crt\n"
    "- name: prod-cluster\n"
    "  cluster:\n"
    "    server: \"https://prod.example:443\"\n"
    "    certificate-authority-data: aGVsbG8=\n"
    "    insecure-skip-tls-verify: true\n"
    "contexts:\n"
    "- name: dev\n"
    "  context: {cluster: dev-cluster, user: dev-user, namespace: x}\n"
    "- name: prod\n"
    "  context:\n"
    "    cluster: prod-cluster\n"
    "    user: prod-user\n"
    "- name: plugin\n"
    "  context: {cluster: dev-cluster, user: gke}\n"
    "- name: halfcert\n"
    "  context: {cluster: dev-cluster, user: half}\n"
    "- name: nocluster\n"
    "  context: {cluster: nope, user: dev-user}\n"
    "users:\n"
    "- name: dev-user\n"
    "  user:\n"
    "    token: abc.def\n"
    "    tokenFile: /var/run/token\n"
    "- name: prod-user\n"
    "  user:\n"
    "    client-certificate-data: Y2VydA==\n"
    "    client-key-data: a2V5\n"
    "- name: gke\n"
    "  user:\n"
    "    exec:\n"
    "      command: gke-gcloud-auth-plugin\n"
    "- name: half\n"
    "  user:\n"
    "    client-certificate: me.crt\n";


static int
load(const char *text, const char *context, kubeconfig *kc, char *err)
{
    int      rc;
    json_t  *doc;

    err[0] = '\0';
    doc = kubeconfig_yaml(text, strlen(text), err, 256);
    if (doc == NULL) {
        return -2;
    }

    rc = kubeconfig_from_json(doc, "/etc/k", context, kc, err, 256);
    json_decref(doc);
    return rc;
}


static json_t *
yaml(const char *text, char *err)
{
    err[0] = '\0';
    return kubeconfig_yaml(text, strlen(text), err, 256);
}


static int
blob_is(const blob *b, const char *want)
{
    return b->data != NULL && b->len == strlen(want)
           && memcmp(b->data, want, b->len) == 0;
}


static void
test_contexts(void)
{
    char        err[256];
    kubeconfig  kc;

    tap_ok(load(config, NULL, &kc, err) == 0, "current context: %s", err);
    tap_ok(strcmp(kc.server, "https://10.0.0.1:6443") == 0,
           "server, trailing slash dropped: %s", kc.server);
    tap_ok(strcmp(kc.ca_file, "/etc/k/pki/ca.crt") == 0,
           "a relative CA is relative to the file: %s", kc.ca_file);
    tap_ok(strcmp(kc.token, "abc.def") == 0
           && strcmp(kc.token_file, "/var/run/token") == 0,
           "token and an absolute tokenFile");
    tap_ok(kc.insecure == 0 && kc.ca.data == NULL && kc.cert.data == NULL,
           "nothing else");
    kubeconfig_free(&kc);

    tap_ok(load(config, "prod", &kc, err) == 0, "a named context: %s", err);
    tap_ok(strcmp(kc.server, "https://prod.example:443") == 0,
           "its server (a quoted scalar)");
    tap_ok(blob_is(&kc.ca, "hello"), "certificate-authority-data decoded");
    tap_ok(blob_is(&kc.cert, "cert") && blob_is(&kc.key, "key"),
           "client certificate and key data decoded");
    tap_ok(kc.insecure == 1, "insecure-skip-tls-verify");
    tap_ok(kc.token[0] == '\0' && kc.token_file[0] == '\0', "no token");
    kubeconfig_free(&kc);
}


static void
test_refusals(void)
{
    char        err[256];
    kubeconfig  kc;

    tap_ok(load(config, "nope", &kc, err) == -1
           && strstr(err, "no context \"nope\""), "unknown context: %s", err);
    tap_ok(load(config, "nocluster", &kc, err) == -1
           && strstr(err, "no such cluster"), "unknown cluster: %s", err);
    tap_ok(load(config, "plugin", &kc, err) == -1
           && strstr(err, "credential plugins"), "exec plugin: %s", err);
    tap_ok(load(config, "halfcert", &kc, err) == -1
           && strstr(err, "needs its key"), "certificate without key: %s",
           err);
    tap_ok(load("clusters: []\n", NULL, &kc, err) == -1
           && strstr(err, "current-context"), "no current context: %s", err);
    tap_ok(load("current-context: a\ncontexts: [{name: a, context: "
                "{cluster: c}}]\nclusters: [{name: c, cluster: "
                "{server: 'http://x'}}]\n", NULL, &kc, err) == -1
           && strstr(err, "https://"), "plain http refused: %s", err);
    tap_ok(load("current-context: a\ncontexts: [{name: a, context: "
                "{cluster: c}}]\nclusters: [{name: c, cluster: "
                "{server: 'https://x', certificate-authority-data: '%%%'}}]\n",
                NULL, &kc, err) == -1
           && strstr(err, "not base64"), "bad base64: %s", err);
    tap_ok(load("- a\n- b\n", NULL, &kc, err) == -1
           && strstr(err, "not a kubeconfig"), "a list: %s", err);
}


static void
test_yaml(void)
{
    char     err[256], deep[400];
    json_t  *doc;
    int      i;

    doc = yaml("{\"a\": [\"b\", {\"c\": \"d\"}]}", err);
    tap_ok(doc != NULL
           && strcmp(json_string_value(json_object_get(
                  json_array_get(json_object_get(doc, "a"), 1), "c")),
                  "d") == 0, "JSON is YAML");
    json_decref(doc);

    doc = yaml("a: &x 1\nb: *x\n", err);
    tap_ok(doc == NULL && strstr(err, "aliases"), "aliases refused: %s", err);

    doc = yaml("a: [1, 2\n", err);
    tap_ok(doc == NULL && strstr(err, "line"), "syntax error: %s", err);

    doc = yaml("", err);
    tap_ok(doc == NULL && strstr(err, "empty"), "empty: %s", err);

    doc = yaml("? [a]\n: b\n", err);
    tap_ok(doc == NULL && strstr(err, "scalar"), "complex key: %s", err);

    for (i = 0; i < 100; i++) {
        deep[i] = '[';
    }
    deep[i] = '\0';
    doc = yaml(deep, err);
    tap_ok(doc == NULL, "nested too deeply or unterminated: %s", err);
}


int
main(void)
{
    test_contexts();
    test_refusals();
    test_yaml();

    return tap_done();
}
