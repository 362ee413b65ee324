/* The HTTP/1.1 server side of sandbox-agent (see http.h). */

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent.h"
#include "http.h"


static const char *
http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default:  return "Status";
    }
}


int
http_write_all(int fd, const void *p, size_t n)
{
    const char  *s = p;
    ssize_t      w;

    while (n) {
        w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        s += w;
        n -= w;
    }
    return 0;
}


/* more bytes into c->buf, waiting at most the idle timeout: >0 read,
 * 0 the peer closed, -1 error or timeout */
static ssize_t
http_fill(http_conn_t *c, size_t limit)
{
    struct pollfd   pfd;
    ssize_t         n;
    size_t          cap;
    char           *buf;
    int             rc;

    if (c->cap - c->len < 4096) {
        cap = c->cap ? c->cap * 2 : 8192;
        if (cap > limit + 8192) {
            cap = limit + 8192;
        }
        if (cap <= c->len) {
            return -1;
        }
        buf = realloc(c->buf, cap);
        if (buf == NULL) {
            return -1;
        }
        c->buf = buf;
        c->cap = cap;
    }

    pfd.fd = c->fd;
    pfd.events = POLLIN;
    do {
        rc = poll(&pfd, 1, agent_conf.idle_timeout * 1000);
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) {
        return -1;
    }

    do {
        n = read(c->fd, c->buf + c->len, c->cap - c->len);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->len += n;
    }
    return n;
}


/* have at least n bytes buffered; 0 or -1 */
static int
http_need(http_conn_t *c, size_t n, size_t limit)
{
    while (c->len < n) {
        if (http_fill(c, limit) <= 0) {
            return -1;
        }
    }
    return 0;
}


static void
http_consume(http_conn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}


static int
http_parse_size(const char *s, int base, size_t *out)
{
    char                *end;
    unsigned long long   v;

    if (*s == '\0' || *s == '-' || *s == '+' || *s == ' ') {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, base);
    if (errno || end == s || (*end != '\0' && *end != ';' && *end != ' ')) {
        return -1;
    }
    *out = (size_t) v;
    return v > (size_t) -1 / 2 ? -1 : 0;
}


/* a chunked body starting at c->buf[0], decoded into r->body */
static int
http_read_chunked(http_conn_t *c, http_req_t *r)
{
    size_t   pos = 0, size, limit, len = 0;
    char    *eol, *body;

    /* the framing may cost more than the data: bound the raw bytes too */
    limit = agent_conf.max_body * 2 + 65536;
    body = malloc(agent_conf.max_body + 1);
    if (body == NULL) {
        return http_send_error(c, r, 500, "out of memory"), -1;
    }
    r->body = body;

    for ( ;; ) {
        while ((eol = memmem(c->buf + pos, c->len - pos, "\r\n", 2)) == NULL) {
            if (c->len - pos > 1024 || c->len >= limit
                || http_fill(c, limit) <= 0)
            {
                return -2;
            }
        }
        *eol = '\0';
        if (http_parse_size(c->buf + pos, 16, &size) != 0) {
            return -2;
        }
        pos = eol + 2 - c->buf;

        if (size == 0) {
            break;
        }
        if (len + size > agent_conf.max_body) {
            return -3;
        }
        if (pos + size + 2 > limit || http_need(c, pos + size + 2, limit)) {
            return -2;
        }
        if (memcmp(c->buf + pos + size, "\r\n", 2) != 0) {
            return -2;
        }
        memcpy(body + len, c->buf + pos, size);
        len += size;
        pos += size + 2;
    }

    /* trailers, then the empty line */
    for ( ;; ) {
        while ((eol = memmem(c->buf + pos, c->len - pos, "\r\n", 2)) == NULL) {
            if (c->len - pos > 4096 || http_fill(c, limit) <= 0) {
                return -2;
            }
        }
        if (eol == c->buf + pos) {
            pos += 2;
            break;
        }
        pos = eol + 2 - c->buf;
    }

    http_consume(c, pos);
    body[len] = '\0';
    r->body_len = len;
    return 0;
}


static int
http_token_in(const char *value, const char *token)
{
    size_t       n = strlen(token);
    const char  *p = value;

    while ((p = strcasestr(p, token)) != NULL) {
        if ((p == value || p[-1] == ' ' || p[-1] == ',')
            && (p[n] == '\0' || p[n] == ' ' || p[n] == ',' || p[n] == ';'))
        {
            return 1;
        }
        p += n;
    }
    return 0;
}


/* the request line and headers, in r->head; the body length or -1 */
static int
http_parse_head(http_conn_t *c, http_req_t *r, size_t head_len,
    size_t *clen, int *chunked, int *expect)
{
    char  *line, *next, *name, *value, *version, *q, *end;
    int    minor, have_cl = 0;
    size_t n;

    r->head = malloc(head_len + 1);
    if (r->head == NULL) {
        return -1;
    }
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';

    line = r->head;
    next = strstr(line, "\r\n");
    *next = '\0';
    next += 2;

    r->method = line;
    r->path = strchr(line, ' ');
    if (r->path == NULL) {
        return -1;
    }
    *r->path++ = '\0';
    version = strchr(r->path, ' ');
    if (version == NULL || r->path[0] != '/') {
        return -1;
    }
    *version++ = '\0';
    if (strncmp(version, "HTTP/1.", 7) != 0
        || version[7] < '0' || version[7] > '9' || version[8] != '\0')
    {
        return -1;
    }
    minor = version[7] - '0';
    r->close = (minor == 0);
    q = strchr(r->path, '?');
    if (q) {
        *q = '\0';
    }

    *clen = 0;
    *chunked = 0;
    *expect = 0;

    end = r->head + head_len - 4;
    for (line = next; line < end; line = next) {
        next = strstr(line, "\r\n");
        *next = '\0';
        next += 2;

        name = line;
        value = strchr(line, ':');
        if (value == NULL || value == name
            || strcspn(name, " \t") < (size_t) (value - name))
        {
            return -1;
        }
        *value++ = '\0';
        value += strspn(value, " \t");
        for (n = strlen(value); n && (value[n - 1] == ' '
                                      || value[n - 1] == '\t'); n--)
        {
            value[n - 1] = '\0';
        }

        if (strcasecmp(name, "Content-Length") == 0) {
            size_t  v;

            if (http_parse_size(value, 10, &v) != 0
                || strspn(value, "0123456789") != strlen(value)
                || (have_cl && v != *clen))
            {
                return -1;
            }
            *clen = v;
            have_cl = 1;

        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            if (strcasecmp(value, "chunked") != 0) {
                return -2;
            }
            *chunked = 1;

        } else if (strcasecmp(name, "Connection") == 0) {
            if (http_token_in(value, "close")) {
                r->close = 1;
            } else if (http_token_in(value, "keep-alive")) {
                r->close = 0;
            }

        } else if (strcasecmp(name, "Expect") == 0) {
            *expect = strcasecmp(value, "100-continue") == 0 ? 1 : -1;

        } else if (strcasecmp(name, "X-AIO-API-Key") == 0) {
            r->api_key = value;

        } else if (strcasecmp(name, "Authorization") == 0) {
            r->authorization = value;

        } else if (strcasecmp(name, "Accept") == 0) {
            r->accept = value;
            r->sse = strcasestr(value, "text/event-stream") != NULL;
        }
    }

    /* both framings at once is how requests are smuggled: refused */
    if (*chunked && have_cl) {
        return -1;
    }
    return 0;
}


int
http_read_request(http_conn_t *c, http_req_t *r)
{
    char    *end;
    size_t   head_len, clen;
    int      chunked, expect, rc;
    ssize_t  n;

    memset(r, 0, sizeof(*r));

    while (c->len < 4
           || (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
    {
        if (c->len >= HTTP_MAX_HEAD) {
            r->close = 1;
            http_send_error(c, r, 431, "request head larger than %d bytes",
                            HTTP_MAX_HEAD);
            return -1;
        }
        n = http_fill(c, HTTP_MAX_HEAD);
        if (n <= 0) {
            return 0;
        }
        /* a keep-alive peer may send an empty line between requests */
        while (c->len >= 2 && c->buf[0] == '\r' && c->buf[1] == '\n') {
            http_consume(c, 2);
        }
    }
    head_len = end + 4 - c->buf;

    rc = http_parse_head(c, r, head_len, &clen, &chunked, &expect);
    if (rc != 0) {
        r->close = 1;
        if (rc == -2) {
            http_send_error(c, r, 501, "only the chunked transfer coding "
                            "is supported");
        } else {
            http_send_error(c, r, 400, "malformed request");
        }
        return -1;
    }
    http_consume(c, head_len);

    if (expect < 0) {
        r->close = 1;
        http_send_error(c, r, 417, "only Expect: 100-continue is supported");
        return -1;
    }

    if (!chunked && clen > agent_conf.max_body) {
        r->close = 1;
        http_send_error(c, r, 413, "request body of %zu bytes is larger "
                        "than the limit of %zu bytes", clen,
                        agent_conf.max_body);
        return -1;
    }

    if (expect > 0 && (chunked || c->len < clen)) {
        static const char  cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        if (http_write_all(c->fd, cont, sizeof(cont) - 1) != 0) {
            return -1;
        }
    }

    if (chunked) {
        rc = http_read_chunked(c, r);
        if (rc == -3) {
            r->close = 1;
            http_send_error(c, r, 413, "request body larger than the limit "
                            "of %zu bytes", agent_conf.max_body);
            return -1;
        }
        if (rc != 0) {
            r->close = 1;
            if (rc == -2) {
                http_send_error(c, r, 400, "malformed chunked body");
            }
            return -1;
        }
        return 1;
    }

    if (http_need(c, clen, agent_conf.max_body) != 0) {
        return 0;
    }
    r->body = malloc(clen + 1);
    if (r->body == NULL) {
        r->close = 1;
        http_send_error(c, r, 500, "out of memory");
        return -1;
    }
    memcpy(r->body, c->buf, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    http_consume(c, clen);
    return 1;
}


void
http_req_free(http_req_t *r)
{
    free(r->head);
    free(r->body);
    r->head = NULL;
    r->body = NULL;
}


static int
http_send(http_conn_t *c, http_req_t *r, int status, const char *body,
    size_t len)
{
    char  head[256];
    int   n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: %zu\r\n"
                 "%s\r\n",
                 status, http_reason(status), len,
                 r->close ? "Connection: close\r\n" : "");
    if (http_write_all(c->fd, head, n) != 0
        || (r->method == NULL || strcmp(r->method, "HEAD") != 0
            ? http_write_all(c->fd, body, len) : 0) != 0)
    {
        r->close = 1;
        return -1;
    }
    return 0;
}


int
http_send_json(http_conn_t *c, http_req_t *r, int status, json_t *json)
{
    char  *s;
    int    rc;

    s = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (s == NULL) {
        static const char  oom[] =
            "{\"success\":false,\"message\":\"out of memory\"}";

        r->close = 1;
        return http_send(c, r, 500, oom, sizeof(oom) - 1);
    }
    rc = http_send(c, r, status, s, strlen(s));
    free(s);
    return rc;
}


int
http_send_error(http_conn_t *c, http_req_t *r, int status,
    const char *fmt, ...)
{
    char     msg[512];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    return http_send_json(c, r, status,
                          json_pack("{s:b, s:s, s:n}", "success", 0,
                                    "message", msg, "data"));
}


int
http_send_invalid(http_conn_t *c, http_req_t *r, const char *field,
    const char *type, const char *msg)
{
    char     text[512];
    json_t  *loc;

    loc = field ? json_pack("[s, s]", "body", field) : json_pack("[s]", "body");
    snprintf(text, sizeof(text), "%s%s%s", field ? field : "",
             field ? ": " : "", msg);

    return http_send_json(c, r, 422,
                          json_pack("{s:b, s:s, s:[{s:o, s:s, s:s}]}",
                                    "success", 0, "message", text, "detail",
                                    "loc", loc, "msg", msg, "type", type));
}


json_t *
http_json_body(http_conn_t *c, http_req_t *r)
{
    json_t        *j;
    json_error_t   err;
    char           msg[300];

    j = json_loadb(r->body ? r->body : "", r->body_len,
                   JSON_REJECT_DUPLICATES, &err);
    if (j == NULL) {
        snprintf(msg, sizeof(msg), "invalid JSON at byte %d: %s",
                 err.position, err.text);
        http_send_invalid(c, r, NULL, "json_invalid", msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_send_invalid(c, r, NULL, "model_attributes_type",
                          "the body must be a JSON object");
        return NULL;
    }
    return j;
}


int
http_sse_start(http_conn_t *c)
{
    static const char  head[] =
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n"
        "X-Accel-Buffering: no\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";

    return http_write_all(c->fd, head, sizeof(head) - 1);
}


/* one event, one chunk, one write: "event: E\ndata: <json>\n\n" */
int
http_sse_event(http_conn_t *c, const char *event, json_t *data)
{
    char    *s, *frame;
    size_t   len, cap;
    int      rc, n;

    s = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (s == NULL) {
        return -1;
    }
    len = strlen("event: \ndata: \n\n") + strlen(event) + strlen(s);
    cap = len + 32;
    frame = malloc(cap);
    if (frame == NULL) {
        free(s);
        return -1;
    }
    n = snprintf(frame, cap, "%zx\r\nevent: %s\ndata: %s\n\n\r\n",
                 len, event, s);
    rc = http_write_all(c->fd, frame, n);
    free(frame);
    free(s);
    return rc;
}


int
http_sse_end(http_conn_t *c)
{
    return http_write_all(c->fd, "0\r\n\r\n", 5);
}
