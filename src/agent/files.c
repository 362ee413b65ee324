/*
 * POST /v1/file/read, /v1/file/write (the AIO runtime's names and fields:
 * file, content, encoding "utf-8" or "base64", append, start_line,
 * end_line) and /v1/file/delete (this agent's addition).  Paths are
 * absolute; files are read up to --max-file bytes.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "http.h"
#include "text.h"

enum { ENC_UTF8, ENC_BASE64 };


/* the "file" field: an absolute path; NULL once answered */
static const char *
file_path(http_conn_t *c, http_req_t *r, json_t *in)
{
    json_t  *f = json_object_get(in, "file");

    if (f == NULL || json_is_null(f)) {
        http_send_invalid(c, r, "file", "missing", "Field required");
        return NULL;
    }
    if (!json_is_string(f)) {
        http_send_invalid(c, r, "file", "string_type",
                          "Input should be a valid string");
        return NULL;
    }
    if (json_string_value(f)[0] != '/'
        || memchr(json_string_value(f), '\0', json_string_length(f)))
    {
        http_send_invalid(c, r, "file", "value_error",
                          "must be an absolute path without NUL bytes");
        return NULL;
    }
    return json_string_value(f);
}


static int
file_encoding(http_conn_t *c, http_req_t *r, json_t *in, int *enc)
{
    json_t      *e = json_object_get(in, "encoding");
    const char  *s;

    *enc = ENC_UTF8;
    if (e == NULL || json_is_null(e)) {
        return 0;
    }
    s = json_is_string(e) ? json_string_value(e) : "";
    if (strcmp(s, "base64") == 0) {
        *enc = ENC_BASE64;
        return 0;
    }
    if (strcmp(s, "utf-8") == 0 || strcmp(s, "utf8") == 0) {
        return 0;
    }
    http_send_invalid(c, r, "encoding", "enum",
                      "Input should be 'utf-8' or 'base64'");
    return -1;
}


/* an optional boolean or non-negative integer field */
static int
file_opt(http_conn_t *c, http_req_t *r, json_t *in, const char *name,
    int boolean, json_int_t *out)
{
    json_t  *v = json_object_get(in, name);

    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (boolean && json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (!boolean && json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return 0;
    }
    http_send_invalid(c, r, name, boolean ? "bool_type" : "int_type",
                      boolean ? "Input should be a valid boolean"
                              : "Input should be a non-negative integer");
    return -1;
}


static int
file_errno(http_conn_t *c, http_req_t *r, const char *path, int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return http_send_error(c, r, 404, "File not found: %s", path);
    case EACCES:
    case EPERM:
    case EROFS:
        return http_send_error(c, r, 403, "%s: %s", path, strerror(err));
    case EISDIR:
        return http_send_error(c, r, 400, "%s: Is a directory", path);
    default:
        return http_send_error(c, r, 500, "%s: %s", path, strerror(err));
    }
}


/* lines [start, end) of s, 0-based as AIO counts them */
static void
file_lines(const char *s, size_t len, json_int_t start, json_int_t end,
    size_t *from, size_t *to)
{
    json_int_t  line = 0;
    size_t      i;

    *from = (start == 0) ? 0 : len;
    *to = len;
    for (i = 0; i < len; i++) {
        if (s[i] != '\n') {
            continue;
        }
        line++;
        if (line == start) {
            *from = i + 1;
        }
        if (end >= 0 && line == end) {
            *to = i + 1;
            break;
        }
    }
    if (end >= 0 && end <= start) {
        *to = *from;
    }
}


int
agent_file_read(http_conn_t *c, http_req_t *r)
{
    json_t       *in, *content;
    const char   *path;
    json_int_t    start = 0, end = -1;
    struct stat   sb;
    char         *data = NULL, *b64;
    size_t        len = 0, from, to;
    ssize_t       n;
    int           enc, fd = -1, rc = 0;

    in = http_json_body(c, r);
    if (in == NULL) {
        return 0;
    }
    path = file_path(c, r, in);
    if (path == NULL || file_encoding(c, r, in, &enc) != 0
        || file_opt(c, r, in, "start_line", 0, &start) != 0
        || file_opt(c, r, in, "end_line", 0, &end) != 0)
    {
        goto done;
    }

    /* O_NONBLOCK: a FIFO must not hang the handler */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        rc = file_errno(c, r, path, errno);
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = file_errno(c, r, path, EISDIR);
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = http_send_error(c, r, 400, "%s: not a regular file", path);
        goto done;
    }
    if ((size_t) sb.st_size > agent_conf.max_file) {
        rc = http_send_error(c, r, 400, "%s is %lld bytes, more than the "
                             "limit of %zu", path, (long long) sb.st_size,
                             agent_conf.max_file);
        goto done;
    }

    /* the file may grow meanwhile: read to the limit, one byte past */
    data = malloc(agent_conf.max_file + 1);
    if (data == NULL) {
        rc = http_send_error(c, r, 500, "out of memory");
        goto done;
    }
    while (len <= agent_conf.max_file) {
        n = read(fd, data + len, agent_conf.max_file + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = file_errno(c, r, path, errno);
            goto done;
        }
        if (n == 0) {
            break;
        }
        len += n;
    }
    if (len > agent_conf.max_file) {
        rc = http_send_error(c, r, 400, "%s grew past the limit of %zu bytes",
                             path, agent_conf.max_file);
        goto done;
    }

    if (enc == ENC_BASE64) {
        b64 = text_b64_encode((unsigned char *) data, len);
        content = b64 ? json_string(b64) : NULL;
        free(b64);
    } else {
        if (!text_utf8_valid((unsigned char *) data, len)) {
            rc = http_send_error(c, r, 400, "%s is not valid UTF-8: read it "
                                 "with \"encoding\": \"base64\"", path);
            goto done;
        }
        file_lines(data, len, start, end, &from, &to);
        content = json_stringn(data + from, to - from);
    }

    rc = http_send_json(c, r, 200,
                        json_pack("{s:b, s:s, s:{s:s, s:o, s:s, s:I}}",
                                  "success", 1,
                                  "message", "File read successfully",
                                  "data", "file", path, "content", content,
                                  "encoding", enc == ENC_BASE64 ? "base64"
                                                                : "utf-8",
                                  "size", (json_int_t) len));
done:
    if (fd >= 0) {
        close(fd);
    }
    free(data);
    json_decref(in);
    return rc;
}


/* the parents of path, as mkdir -p makes them */
static int
file_mkdirs(const char *path)
{
    char  *copy, *p;
    int    rc = 0;

    copy = strdup(path);
    if (copy == NULL) {
        return -1;
    }
    for (p = copy + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            rc = -1;
            break;
        }
        *p = '/';
    }
    free(copy);
    return rc;
}


int
agent_file_write(http_conn_t *c, http_req_t *r)
{
    json_t         *in, *content;
    const char     *path;
    json_int_t      append = 0, lead = 0, trail = 0;
    unsigned char  *bytes = NULL;
    size_t          len;
    int             enc, fd = -1, rc = 0;

    in = http_json_body(c, r);
    if (in == NULL) {
        return 0;
    }
    path = file_path(c, r, in);
    if (path == NULL || file_encoding(c, r, in, &enc) != 0
        || file_opt(c, r, in, "append", 1, &append) != 0
        || file_opt(c, r, in, "leading_newline", 1, &lead) != 0
        || file_opt(c, r, in, "trailing_newline", 1, &trail) != 0)
    {
        goto done;
    }

    content = json_object_get(in, "content");
    if (content == NULL || json_is_null(content)) {
        http_send_invalid(c, r, "content", "missing", "Field required");
        goto done;
    }
    if (!json_is_string(content)) {
        http_send_invalid(c, r, "content", "string_type",
                          "Input should be a valid string");
        goto done;
    }

    if (enc == ENC_BASE64) {
        bytes = text_b64_decode(json_string_value(content),
                                json_string_length(content), &len);
        if (bytes == NULL) {
            http_send_invalid(c, r, "content", "value_error",
                              "not valid base64");
            goto done;
        }
    } else {
        len = json_string_length(content);
        bytes = malloc(len + 2);
        if (bytes == NULL) {
            rc = http_send_error(c, r, 500, "out of memory");
            goto done;
        }
        len = 0;
        if (lead) {
            bytes[len++] = '\n';
        }
        memcpy(bytes + len, json_string_value(content),
               json_string_length(content));
        len += json_string_length(content);
        if (trail) {
            bytes[len++] = '\n';
        }
    }

    if (file_mkdirs(path) != 0) {
        rc = file_errno(c, r, path, errno);
        goto done;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK
                    | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0) {
        rc = file_errno(c, r, path, errno);
        goto done;
    }
    if (http_write_all(fd, bytes, len) != 0 || close(fd) != 0) {
        rc = file_errno(c, r, path, errno);
        fd = -1;
        goto done;
    }
    fd = -1;

    rc = http_send_json(c, r, 200,
                        json_pack("{s:b, s:s, s:{s:s, s:I}}",
                                  "success", 1,
                                  "message", "File written successfully",
                                  "data", "file", path,
                                  "bytes_written", (json_int_t) len));
done:
    if (fd >= 0) {
        close(fd);
    }
    free(bytes);
    json_decref(in);
    return rc;
}


int
agent_file_delete(http_conn_t *c, http_req_t *r)
{
    json_t       *in;
    const char   *path;
    struct stat   sb;
    int           rc = 0;

    in = http_json_body(c, r);
    if (in == NULL) {
        return 0;
    }
    path = file_path(c, r, in);
    if (path == NULL) {
        goto done;
    }

    if (lstat(path, &sb) != 0) {
        rc = file_errno(c, r, path, errno);
    } else if (S_ISDIR(sb.st_mode)) {
        rc = file_errno(c, r, path, EISDIR);
    } else if (unlink(path) != 0) {
        rc = file_errno(c, r, path, errno);
    } else {
        rc = http_send_json(c, r, 200,
                            json_pack("{s:b, s:s, s:{s:s}}", "success", 1,
                                      "message", "File deleted",
                                      "data", "file", path));
    }
done:
    json_decref(in);
    return rc;
}
