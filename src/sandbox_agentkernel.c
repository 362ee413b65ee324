
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The agentkernel-compatible API's pure parts (see sandbox_agentkernel.h):
 * which endpoint a request names, and its body checked field by field.
 * The exchange with a sandbox runtime is in sandbox_agentkernel_runtime.c.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_agentkernel.h"
#include "sandbox_path.h"


typedef struct {
    const char         *method;
    const char         *pattern;    /* ":" a name, "*" the rest */
    sbx_ak_op_e         op;
} sbx_ak_endpoint_t;


static const sbx_ak_endpoint_t  sbx_ak_endpoints[] = {
    { "GET",    "/health",                  SBX_AK_HEALTH },
    { "POST",   "/run",                     SBX_AK_RUN },
    { "POST",   "/run/stream",              SBX_AK_RUN_STREAM },
    { "GET",    "/sandboxes",               SBX_AK_LIST },
    { "POST",   "/sandboxes",               SBX_AK_CREATE },
    { "GET",    "/sandboxes/:",             SBX_AK_GET },
    { "DELETE", "/sandboxes/:",             SBX_AK_DELETE },
    { "POST",   "/sandboxes/:/stop",        SBX_AK_STOP },
    { "POST",   "/sandboxes/:/start",       SBX_AK_START },
    { "POST",   "/sandboxes/:/exec",        SBX_AK_EXEC },
    { "GET",    "/sandboxes/:/logs",        SBX_AK_LOGS },
    { "GET",    "/sandboxes/:/files/*",     SBX_AK_FILE_GET },
    { "PUT",    "/sandboxes/:/files/*",     SBX_AK_FILE_PUT },
    { "DELETE", "/sandboxes/:/files/*",     SBX_AK_FILE_DELETE },
    { NULL, NULL, SBX_AK_NONE }
};


static int sbx_ak_has_files(const char *path, size_t plen);
static int sbx_ak_match(const char *pattern, const char *path, size_t plen,
    sbx_ak_route_t *route);
static int sbx_ak_file_path_valid(const char *p, size_t len, char *err);
static int sbx_ak_fields(const json_t *body, const char *const *allowed,
    char *err);
static int sbx_ak_string(const json_t *body, const char *field, int required,
    sbx_ak_str_t *out, char *err);
static int sbx_ak_image_valid(const char *p, size_t len, char *err);
static int sbx_ak_exec_options(const json_t *body, sbx_ak_command_t *out,
    char *err);


int
sbx_ak_route(const char *method, size_t mlen, const char *path, size_t plen,
    sbx_ak_route_t *route, char *err)
{
    int                       known;
    const sbx_ak_endpoint_t  *ep;

    memset(route, 0, sizeof(sbx_ak_route_t));

    /* a trailing slash is accepted, except in a file's path */

    if (plen > 1 && path[plen - 1] == '/' && !sbx_ak_has_files(path, plen))
    {
        plen--;
    }

    known = 0;

    for (ep = sbx_ak_endpoints; ep->method; ep++) {

        if (!sbx_ak_match(ep->pattern, path, plen, route)) {
            continue;
        }

        known = 1;

        if ((strlen(ep->method) == mlen
             && memcmp(ep->method, method, mlen) == 0)
            || (mlen == 4 && memcmp(method, "HEAD", 4) == 0
                && strcmp(ep->method, "GET") == 0))
        {
            route->op = ep->op;
            break;
        }
    }

    if (route->op == SBX_AK_NONE) {
        sbx_ak_err(err, known ? "Method not allowed" : "Not found");
        return known ? 405 : 404;
    }

    if (route->name.data != NULL
        && sbx_ak_name_valid(route->name.data, route->name.len, err) != 0)
    {
        return 400;
    }

    if (route->file.data != NULL
        && sbx_ak_file_path_valid(route->file.data, route->file.len, err)
           != 0)
    {
        return 400;
    }

    return 0;
}


static int
sbx_ak_has_files(const char *path, size_t plen)
{
    size_t  i;

    for (i = 0; i + 7 <= plen; i++) {
        if (memcmp(path + i, "/files/", 7) == 0) {
            return 1;
        }
    }

    return 0;
}


static int
sbx_ak_match(const char *pattern, const char *path, size_t plen,
    sbx_ak_route_t *route)
{
    const char  *p, *end, *seg;

    p = path;
    end = path + plen;

    while (*pattern) {

        if (*pattern == ':') {
            seg = p;
            while (p < end && *p != '/') {
                p++;
            }

            if (p == seg) {
                return 0;
            }

            route->name.data = seg;
            route->name.len = p - seg;
            pattern++;
            continue;
        }

        if (*pattern == '*') {
            route->file.data = p;
            route->file.len = end - p;
            return 1;
        }

        if (p == end || *p != *pattern) {
            return 0;
        }

        p++;
        pattern++;
    }

    return p == end;
}


int
sbx_ak_name_valid(const char *p, size_t len, char *err)
{
    if (len == 0 || len > 63) {
        sbx_ak_err(err, "Invalid sandbox name: it must be 1 to 63 "
                   "characters");
        return -1;
    }

    if (!sbx_dns_label_valid((const unsigned char *) p, len)) {
        sbx_ak_err(err, "Invalid sandbox name '%.*s': sandboxes here are "
                   "Kubernetes objects, so names are lowercase letters, "
                   "digits and '-', starting and ending with a letter or "
                   "digit", (int) (len > 63 ? 63 : len), p);
        return -1;
    }

    return 0;
}


/*
 * A file's path below "/" as nginx normalized it: no NUL, no "." or ".."
 * segment left, no empty one; the runtime is given "/" and this.
 */

static int
sbx_ak_file_path_valid(const char *p, size_t len, char *err)
{
    size_t       i, seg;
    const char  *s;

    if (len == 0 || len > SBX_AK_PATH_MAX) {
        sbx_ak_err(err, "Invalid file path: 1 to %d bytes after /files/",
                   SBX_AK_PATH_MAX);
        return -1;
    }

    s = p;

    for (i = 0; i <= len; i++) {
        if (i < len && p[i] == '\0') {
            sbx_ak_err(err, "Invalid file path: NUL byte");
            return -1;
        }

        if (i < len && p[i] != '/') {
            continue;
        }

        seg = (p + i) - s;

        if (seg == 0 && i < len) {
            sbx_ak_err(err, "Invalid file path: empty segment");
            return -1;
        }

        if ((seg == 1 && s[0] == '.') || (seg == 2 && s[0] == '.'
                                          && s[1] == '.'))
        {
            sbx_ak_err(err, "Invalid file path: '.' or '..' segment");
            return -1;
        }

        s = p + i + 1;
    }

    return 0;
}


/* unknown fields are refused, so a misspelt option is never ignored */

static int
sbx_ak_fields(const json_t *body, const char *const *allowed, char *err)
{
    const char          *key;
    json_t              *v;
    const char *const   *a;

    json_object_foreach((json_t *) body, key, v) {
        (void) v;

        for (a = allowed; *a; a++) {
            if (strcmp(*a, key) == 0) {
                break;
            }
        }

        if (*a == NULL) {
            sbx_ak_err(err, "Unknown field '%.64s'", key);
            return -1;
        }
    }

    return 0;
}


/* absent or null gives "" (an error when required) */

static int
sbx_ak_string(const json_t *body, const char *field, int required,
    sbx_ak_str_t *out, char *err)
{
    json_t  *v;

    out->data = "";
    out->len = 0;

    v = json_object_get(body, field);

    if (v == NULL || json_is_null(v)) {
        if (required) {
            sbx_ak_err(err, "%s is required", field);
            return -1;
        }

        return 0;
    }

    if (!json_is_string(v)) {
        sbx_ak_err(err, "%s must be a string", field);
        return -1;
    }

    out->data = json_string_value(v);
    out->len = json_string_length(v);

    if (memchr(out->data, '\0', out->len) != NULL) {
        sbx_ak_err(err, "%s must not contain NUL", field);
        return -1;
    }

    return 0;
}


static int
sbx_ak_image_valid(const char *p, size_t len, char *err)
{
    size_t  i;

    if (len > SBX_AK_IMAGE_MAX) {
        sbx_ak_err(err, "Invalid image: longer than %d characters",
                   SBX_AK_IMAGE_MAX);
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9') || strchr("._-/:@", p[i])))
        {
            sbx_ak_err(err, "Invalid image name: only letters, digits and "
                       "._-/:@ are allowed");
            return -1;
        }
    }

    if (len && (p[0] == '-' || p[0] == '.' || p[0] == '/')) {
        sbx_ak_err(err, "Invalid image name");
        return -1;
    }

    return 0;
}


static int
sbx_ak_profile(const json_t *body, char *err)
{
    sbx_ak_str_t  pr;

    if (sbx_ak_string(body, "profile", 0, &pr, err) != 0) {
        return -1;
    }

    if (pr.len && strcmp(pr.data, "permissive") != 0
        && strcmp(pr.data, "moderate") != 0
        && strcmp(pr.data, "restrictive") != 0)
    {
        sbx_ak_err(err, "Invalid profile '%.32s'. Use: permissive, moderate, "
                   "restrictive", pr.data);
        return -1;
    }

    return 0;
}


static int
sbx_ak_count(const json_t *body, const char *field, long long max,
    char *err)
{
    json_t  *v;

    v = json_object_get(body, field);

    if (v == NULL || json_is_null(v)) {
        return 0;
    }

    if (!json_is_integer(v) || json_integer_value(v) < 1
        || json_integer_value(v) > max)
    {
        sbx_ak_err(err, "%s must be an integer from 1 to %lld", field, max);
        return -1;
    }

    return 0;
}


int
sbx_ak_create(const json_t *body, sbx_ak_create_t *out, char *err)
{
    static const char *const  allowed[] = {
        "name", "image", "vcpus", "memory_mb", "profile", NULL
    };

    if (body == NULL) {
        sbx_ak_err(err, "name is required");
        return -1;
    }

    if (sbx_ak_fields(body, allowed, err) != 0
        || sbx_ak_string(body, "name", 1, &out->name, err) != 0
        || sbx_ak_name_valid(out->name.data, out->name.len, err) != 0
        || sbx_ak_string(body, "image", 0, &out->image, err) != 0
        || sbx_ak_image_valid(out->image.data, out->image.len, err) != 0
        || sbx_ak_count(body, "vcpus", 64, err) != 0
        || sbx_ak_count(body, "memory_mb", 1024 * 1024, err) != 0
        || sbx_ak_profile(body, err) != 0)
    {
        return -1;
    }

    return 0;
}


int
sbx_ak_command(const json_t *body, int run, sbx_ak_command_t *out,
    char *err)
{
    size_t         i;
    json_t        *cmd, *v, *fast;
    sbx_ak_str_t   s;

    static const char *const  exec_fields[] = {
        "command", "env", "workdir", "sudo", NULL
    };
    static const char *const  run_fields[] = {
        "command", "image", "profile", "fast", NULL
    };

    memset(out, 0, sizeof(sbx_ak_command_t));
    out->image.data = "";
    out->fast = 1;

    if (body == NULL) {
        sbx_ak_err(err, "command is required");
        return -1;
    }

    if (sbx_ak_fields(body, run ? run_fields : exec_fields, err) != 0) {
        return -1;
    }

    cmd = json_object_get(body, "command");

    if (cmd == NULL || json_is_null(cmd)) {
        sbx_ak_err(err, "command is required");
        return -1;
    }

    if (!json_is_array(cmd)) {
        sbx_ak_err(err, "command must be an array of strings (argv)");
        return -1;
    }

    if (json_array_size(cmd) == 0) {
        sbx_ak_err(err, "command is required");
        return -1;
    }

    if (json_array_size(cmd) > SBX_AK_ARGV_MAX) {
        sbx_ak_err(err, "command has more than %d elements", SBX_AK_ARGV_MAX);
        return -1;
    }

    json_array_foreach(cmd, i, v) {
        if (!json_is_string(v)) {
            sbx_ak_err(err, "command[%zu] must be a string", i);
            return -1;
        }

        if (memchr(json_string_value(v), '\0', json_string_length(v))) {
            sbx_ak_err(err, "command[%zu] must not contain NUL", i);
            return -1;
        }

        if (json_string_length(v) > SBX_AK_ARG_MAX) {
            sbx_ak_err(err, "command[%zu] is longer than %d bytes", i,
                       SBX_AK_ARG_MAX);
            return -1;
        }
    }

    if (json_string_length(json_array_get(cmd, 0)) == 0) {
        sbx_ak_err(err, "command[0] must name a program");
        return -1;
    }

    out->command = cmd;

    if (!run) {
        return sbx_ak_exec_options(body, out, err);
    }

    if (sbx_ak_string(body, "image", 0, &s, err) != 0
        || sbx_ak_image_valid(s.data, s.len, err) != 0
        || sbx_ak_profile(body, err) != 0)
    {
        return -1;
    }

    out->image = s;

    fast = json_object_get(body, "fast");

    if (fast != NULL && !json_is_null(fast)) {
        if (!json_is_boolean(fast)) {
            sbx_ak_err(err, "fast must be a boolean");
            return -1;
        }

        out->fast = json_is_true(fast);
    }

    return 0;
}


/* exec's env, workdir and sudo, as the SDKs send them */

static int
sbx_ak_exec_options(const json_t *body, sbx_ak_command_t *out, char *err)
{
    json_t      *env, *v;
    const char  *key;

    env = json_object_get(body, "env");

    if (env != NULL && !json_is_null(env)) {
        if (!json_is_object(env)) {
            sbx_ak_err(err, "env must be an object of strings");
            return -1;
        }

        json_object_foreach(env, key, v) {
            if (!json_is_string(v) || key[0] == '\0' || strchr(key, '=')
                || memchr(json_string_value(v), '\0', json_string_length(v)))
            {
                sbx_ak_err(err, "env: names must be non-empty without '=', "
                           "values strings without NUL");
                return -1;
            }
        }

        out->env = env;
    }

    if (sbx_ak_string(body, "workdir", 0, &out->workdir, err) != 0) {
        return -1;
    }

    if (out->workdir.len && (out->workdir.data[0] != '/'
                             || out->workdir.len > SBX_AK_PATH_MAX))
    {
        sbx_ak_err(err, "workdir must be an absolute path");
        return -1;
    }

    v = json_object_get(body, "sudo");

    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            sbx_ak_err(err, "sudo must be a boolean");
            return -1;
        }

        if (json_is_true(v)) {
            sbx_ak_err(err, "sudo is not supported by this gateway");
            return -1;
        }
    }

    return 0;
}


int
sbx_ak_file(const json_t *body, sbx_ak_file_t *out, char *err)
{
    sbx_ak_str_t  enc;

    static const char *const  allowed[] = { "content", "encoding", NULL };

    if (body == NULL) {
        sbx_ak_err(err, "content is required");
        return -1;
    }

    if (sbx_ak_fields(body, allowed, err) != 0
        || sbx_ak_string(body, "content", 1, &out->content, err) != 0
        || sbx_ak_string(body, "encoding", 0, &enc, err) != 0)
    {
        return -1;
    }

    if (enc.len == 0 || strcmp(enc.data, "utf8") == 0
        || strcmp(enc.data, "utf-8") == 0)
    {
        out->base64 = 0;

    } else if (strcmp(enc.data, "base64") == 0) {
        out->base64 = 1;

    } else {
        sbx_ak_err(err, "encoding must be \"utf8\" or \"base64\"");
        return -1;
    }

    return 0;
}
