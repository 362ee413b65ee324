/*
 * kubeconfig.c - a kubeconfig file to a kubeconfig struct: libyaml reads
 * the file into jansson values, the context picks a cluster and a user,
 * OpenSSL decodes the base64 *-data fields.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "kubeconfig.h"

#define YAML_DEPTH_MAX  64
#define FILE_MAX        (4 * 1024 * 1024)

static json_t *yaml_node(yaml_parser_t *p, yaml_event_t *ev, int depth,
                         char *err, size_t errlen);

/* the next event; ev must be deleted by the caller */
static int next(yaml_parser_t *p, yaml_event_t *ev, char *err,
                size_t errlen) {
    if (yaml_parser_parse(p, ev)) return 0;
    snprintf(err, errlen, "YAML: %s at line %lu",
             p->problem ? p->problem : "syntax error",
             (unsigned long) p->problem_mark.line + 1);
    return -1;
}

static json_t *yaml_sequence(yaml_parser_t *p, int depth, char *err,
                             size_t errlen) {
    json_t *arr = json_array(), *item;
    yaml_event_t ev;

    for (;;) {
        if (next(p, &ev, err, errlen) != 0) break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return arr;
        }
        item = yaml_node(p, &ev, depth + 1, err, errlen);
        yaml_event_delete(&ev);
        if (item == NULL || json_array_append_new(arr, item) != 0) break;
    }
    json_decref(arr);
    return NULL;
}

static json_t *yaml_mapping(yaml_parser_t *p, int depth, char *err,
                            size_t errlen) {
    json_t *obj = json_object(), *value;
    yaml_event_t ev;
    char *key;

    for (;;) {
        if (next(p, &ev, err, errlen) != 0) break;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return obj;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            snprintf(err, errlen, "YAML: a mapping key must be a scalar");
            yaml_event_delete(&ev);
            break;
        }
        key = strndup((char *) ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
        if (key == NULL || next(p, &ev, err, errlen) != 0) {
            free(key);
            break;
        }
        value = yaml_node(p, &ev, depth + 1, err, errlen);
        yaml_event_delete(&ev);
        if (value == NULL || json_object_set_new(obj, key, value) != 0) {
            free(key);
            break;
        }
        free(key);
    }
    json_decref(obj);
    return NULL;
}

/* the value that starts with ev */
static json_t *yaml_node(yaml_parser_t *p, yaml_event_t *ev, int depth,
                         char *err, size_t errlen) {
    if (depth > YAML_DEPTH_MAX) {
        snprintf(err, errlen, "YAML: nested too deeply");
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return json_stringn((char *) ev->data.scalar.value,
                            ev->data.scalar.length);
    case YAML_SEQUENCE_START_EVENT:
        return yaml_sequence(p, depth, err, errlen);
    case YAML_MAPPING_START_EVENT:
        return yaml_mapping(p, depth, err, errlen);
    case YAML_ALIAS_EVENT:
        snprintf(err, errlen, "YAML: aliases are not supported");
        return NULL;
    default:
        snprintf(err, errlen, "YAML: unexpected event %d", ev->type);
        return NULL;
    }
}

json_t *kubeconfig_yaml(const char *text, size_t len, char *err,
                        size_t errlen) {
    yaml_parser_t p;
    yaml_event_t ev;
    json_t *doc = NULL;

    if (!yaml_parser_initialize(&p)) {
        snprintf(err, errlen, "YAML: out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *) text, len);

    /* stream start, document start, the root node */
    for (;;) {
        if (next(&p, &ev, err, errlen) != 0) break;
        if (ev.type == YAML_STREAM_START_EVENT
            || ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type == YAML_STREAM_END_EVENT)
            snprintf(err, errlen, "YAML: empty document");
        else
            doc = yaml_node(&p, &ev, 0, err, errlen);
        yaml_event_delete(&ev);
        break;
    }
    yaml_parser_delete(&p);
    return doc;
}

static const char *str(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* the "name"d entry of a kubeconfig list, its field "what" */
static json_t *named(json_t *doc, const char *list, const char *name,
                     const char *what) {
    json_t *item;
    size_t i;
    const char *n;

    json_array_foreach(json_object_get(doc, list), i, item) {
        n = str(item, "name");
        if (n && name && strcmp(n, name) == 0)
            return json_object_get(item, what);
    }
    return NULL;
}

static int path(char *dst, size_t size, const char *dir, const char *name) {
    int n;

    if (name == NULL || *name == '\0') return 0;
    if (name[0] == '/' || dir == NULL || *dir == '\0')
        n = snprintf(dst, size, "%s", name);
    else
        n = snprintf(dst, size, "%s/%s", dir, name);
    return n >= 0 && (size_t) n < size ? 0 : -1;
}

static int base64(blob *b, const char *text) {
    EVP_ENCODE_CTX *ctx;
    int n = 0, fin = 0, len;

    if (text == NULL) return 0;
    len = (int) strlen(text);
    b->data = malloc(len / 4 * 3 + 3);
    ctx = EVP_ENCODE_CTX_new();
    if (b->data == NULL || ctx == NULL) goto fail;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, b->data, &n, (const unsigned char *) text,
                         len) < 0)
        goto fail;
    if (EVP_DecodeFinal(ctx, b->data + n, &fin) < 0) goto fail;
    b->len = (size_t) (n + fin);
    EVP_ENCODE_CTX_free(ctx);
    return b->len > 0 ? 0 : -1;

fail:
    EVP_ENCODE_CTX_free(ctx);
    free(b->data);
    b->data = NULL;
    return -1;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } \
                  while (0)

int kubeconfig_from_json(json_t *doc, const char *dir, const char *context,
                         kubeconfig *kc, char *err, size_t errlen) {
    json_t *ctx, *cluster, *user;
    const char *v;

    memset(kc, 0, sizeof(*kc));
    if (!json_is_object(doc)) FAIL("not a kubeconfig");
    if (context == NULL || *context == '\0')
        context = str(doc, "current-context");
    if (context == NULL || *context == '\0') FAIL("no current-context");

    ctx = named(doc, "contexts", context, "context");
    if (ctx == NULL) FAIL("no context \"%s\"", context);
    cluster = named(doc, "clusters", str(ctx, "cluster"), "cluster");
    if (cluster == NULL) FAIL("context \"%s\": no such cluster", context);
    user = named(doc, "users", str(ctx, "user"), "user");

    v = str(cluster, "server");
    if (v == NULL || strncmp(v, "https://", 8) != 0)
        FAIL("cluster of \"%s\": server must be an https:// URL", context);
    snprintf(kc->server, sizeof(kc->server), "%s", v);
    while (kc->server[0] && kc->server[strlen(kc->server) - 1] == '/')
        kc->server[strlen(kc->server) - 1] = '\0';

    if (path(kc->ca_file, sizeof(kc->ca_file), dir,
             str(cluster, "certificate-authority")) != 0)
        FAIL("certificate-authority: path too long");
    if (base64(&kc->ca, str(cluster, "certificate-authority-data")) != 0)
        FAIL("certificate-authority-data: not base64");
    v = str(cluster, "insecure-skip-tls-verify");
    kc->insecure = v && strcmp(v, "true") == 0;

    v = str(user, "token");
    if (v && strlen(v) >= sizeof(kc->token)) FAIL("token: too long");
    snprintf(kc->token, sizeof(kc->token), "%s", v ? v : "");
    if (path(kc->token_file, sizeof(kc->token_file), dir,
             str(user, "tokenFile")) != 0
        || path(kc->cert_file, sizeof(kc->cert_file), dir,
                str(user, "client-certificate")) != 0
        || path(kc->key_file, sizeof(kc->key_file), dir,
                str(user, "client-key")) != 0)
        FAIL("user of \"%s\": path too long", context);
    if (base64(&kc->cert, str(user, "client-certificate-data")) != 0)
        FAIL("client-certificate-data: not base64");
    if (base64(&kc->key, str(user, "client-key-data")) != 0)
        FAIL("client-key-data: not base64");

    if (kc->token[0] == '\0' && kc->token_file[0] == '\0'
        && kc->cert_file[0] == '\0' && kc->cert.data == NULL
        && (json_object_get(user, "exec")
            || json_object_get(user, "auth-provider")))
        FAIL("user of \"%s\": credential plugins are not supported; "
             "use a token, a tokenFile or a client certificate", context);
    if ((kc->cert_file[0] || kc->cert.data)
        != (kc->key_file[0] || kc->key.data))
        FAIL("user of \"%s\": a client certificate needs its key", context);
    return 0;

fail:
    kubeconfig_free(kc);
    return -1;
}

int kubeconfig_load(const char *file, const char *context, kubeconfig *kc,
                    char *err, size_t errlen) {
    char *text = NULL, *dir = NULL, *slash;
    json_t *doc = NULL;
    size_t len;
    FILE *f;
    int rc = -1;

    memset(kc, 0, sizeof(*kc));
    f = fopen(file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open", file);
        return -1;
    }
    text = malloc(FILE_MAX);
    if (text == NULL) goto done;
    len = fread(text, 1, FILE_MAX, f);
    if (len == FILE_MAX) {
        snprintf(err, errlen, "%s: larger than 4 MB", file);
        goto done;
    }
    doc = kubeconfig_yaml(text, len, err, errlen);
    if (doc == NULL) goto done;

    dir = strdup(file);
    if (dir == NULL) goto done;
    slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';    /* "/" */
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    rc = kubeconfig_from_json(doc, dir, context, kc, err, errlen);

done:
    fclose(f);
    free(text);
    free(dir);
    json_decref(doc);
    return rc;
}

void kubeconfig_free(kubeconfig *kc) {
    free(kc->ca.data);
    free(kc->cert.data);
    free(kc->key.data);
    kc->ca.data = kc->cert.data = kc->key.data = NULL;
}
