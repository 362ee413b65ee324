/*
 * kubeconfig.h - where the Kubernetes API is and how to authenticate to
 * it, from a kubeconfig file (the current context, or a named one).
 *
 * Supported: server, certificate-authority(-data),
 * insecure-skip-tls-verify, token, tokenFile, client-certificate(-data)
 * and client-key(-data).  Credential plugins (exec, auth-provider) are
 * not: a daemon should use a service account or a token file instead.
 */

#ifndef SYNCD_KUBECONFIG_H
#define SYNCD_KUBECONFIG_H

#include <stddef.h>

#include <jansson.h>

typedef struct blob {
    unsigned char *data;        /* decoded *-data, owned */
    size_t len;
} blob;

typedef struct kubeconfig {
    char server[512];
    char ca_file[512];
    blob ca;
    int insecure;
    char token[4096];
    char token_file[512];
    char cert_file[512];
    blob cert;
    char key_file[512];
    blob key;
} kubeconfig;

/* reads and resolves path; relative file names are relative to its
 * directory.  Returns 0, or -1 with a message in err. */
int kubeconfig_load(const char *path, const char *context, kubeconfig *kc,
                    char *err, size_t errlen);

/* the same, from an already parsed document (unit-tested) */
int kubeconfig_from_json(json_t *doc, const char *dir, const char *context,
                         kubeconfig *kc, char *err, size_t errlen);

/* YAML (a superset of JSON) to a jansson value: mappings, sequences and
 * scalars, every scalar a string.  NULL with a message in err. */
json_t *kubeconfig_yaml(const char *text, size_t len, char *err,
                        size_t errlen);

void kubeconfig_free(kubeconfig *kc);

#endif
