/*
 * kube.c - HTTP to the Kubernetes API: bearer token, private CA, and a
 * watch stream split into lines across chunk boundaries.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kube.h"
#include "metrics.h"

#define BODY_MAX  (256 * 1024 * 1024)
#define WAIT_MAX  16

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

typedef struct stream {
    buf line;
    kube_line_fn fn;
    void *data;
    int stop;
} stream;

static int buf_append(buf *b, const char *p, size_t n) {
    char *q;
    size_t cap;

    if (b->len + n + 1 > b->cap) {
        if (b->len + n + 1 > BODY_MAX) return -1;
        cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        q = realloc(b->data, cap);
        if (q == NULL) return -1;
        b->data = q;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int kube_token(kube *k, int force) {
    FILE *f;
    size_t n;

    if (k->token_file[0] == '\0') return 0;
    if (!force && time(NULL) - k->token_read_at < 60) return 0;

    f = fopen(k->token_file, "r");
    if (f == NULL) {
        fprintf(stderr, "sandbox-syncd: cannot read %s\n", k->token_file);
        return -1;
    }
    n = fread(k->token, 1, sizeof(k->token) - 1, f);
    fclose(f);
    while (n > 0 && (k->token[n - 1] == '\n' || k->token[n - 1] == ' '))
        n--;
    k->token[n] = '\0';
    k->token_read_at = time(NULL);
    return 0;
}

/* the tick's pace: a clock that wall-clock changes do not move */
static long long monotonic_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl calls this at least once a second, data or not */
static int progress(void *data, curl_off_t a, curl_off_t b, curl_off_t c,
                    curl_off_t d) {
    kube *k = data;
    long status = 0;
    long long now;

    (void) a; (void) b; (void) c; (void) d;
    if (k->abort && *k->abort) return 1;
    if (k->tick == NULL || k->watching == NULL) return 0;
    now = monotonic_ms();
    if (now - k->tick_at < 1000) return 0;
    k->tick_at = now;
    curl_easy_getinfo(k->watching, CURLINFO_RESPONSE_CODE, &status);
    return k->tick(k->tick_data, status == 200) ? 1 : 0;
}

static void set_blob(CURL *curl, CURLoption opt, const blob *b) {
    struct curl_blob cb;

    /* libcurl copies the blob */
    cb.data = b->data;
    cb.len = b->len;
    cb.flags = CURL_BLOB_COPY;
    curl_easy_setopt(curl, opt, &cb);
}

/* what a kubeconfig adds to the CA file: inline CA, client identity */
static void tls(CURL *curl, const kubeconfig *c) {
    if (c->ca.data) set_blob(curl, CURLOPT_CAINFO_BLOB, &c->ca);
    if (c->cert_file[0]) curl_easy_setopt(curl, CURLOPT_SSLCERT, c->cert_file);
    if (c->cert.data) set_blob(curl, CURLOPT_SSLCERT_BLOB, &c->cert);
    if (c->key_file[0]) curl_easy_setopt(curl, CURLOPT_SSLKEY, c->key_file);
    if (c->key.data) set_blob(curl, CURLOPT_SSLKEY_BLOB, &c->key);
    if (c->insecure) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

/*
 * kube_send's handle, kept so that its connection is reused: no TLS
 * handshake per request (the elector renews every few seconds).  A
 * process made by fork() makes its own: a connection is never shared.
 */
static CURL *kept(kube *k) {
    if (k->conn && k->conn_pid == (long) getpid()) {
        curl_easy_reset(k->conn);
        return k->conn;
    }
    k->conn = curl_easy_init();
    k->conn_pid = (long) getpid();
    return k->conn;
}

void kube_close(kube *k) {
    if (k->conn && k->conn_pid == (long) getpid()) curl_easy_cleanup(k->conn);
    k->conn = NULL;
}

static CURL *request(kube *k, CURL *curl, const char *path,
                     struct curl_slist **h) {
    char url[2048], auth[4200];

    if (curl == NULL) return NULL;
    snprintf(url, sizeof(url), "%s%s", k->api, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", k->token);
    /* a client certificate alone authenticates: no empty bearer */
    *h = k->token[0] ? curl_slist_append(NULL, auth) : NULL;
    *h = curl_slist_append(*h, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *h);
    if (k->ca_file[0]) curl_easy_setopt(curl, CURLOPT_CAINFO, k->ca_file);
    tls(curl, &k->conf);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
    /* a peer gone without a word is noticed within about 30 s */
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 15L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 5L);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, k);
    return curl;
}

static size_t collect(char *p, size_t size, size_t n, void *data) {
    return buf_append(data, p, size * n) == 0 ? size * n : 0;
}

long kube_get(kube *k, const char *path, json_t **out) {
    return kube_send(k, "GET", path, NULL, NULL, out);
}

long kube_send(kube *k, const char *method, const char *path,
               const char *body, const char *content_type, json_t **out) {
    struct curl_slist *h = NULL;
    buf b = { NULL, 0, 0 };
    long status = 0;
    char ct[128];
    CURL *curl;

    *out = NULL;
    kube_token(k, 0);
    curl = request(k, kept(k), path, &h);
    if (curl == NULL) return 0;
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 content_type ? content_type : "application/json");
        h = curl_slist_append(h, ct);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     k->timeout_ms > 0 ? k->timeout_ms : 60000L);

    if (curl_easy_perform(curl) == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (b.data) *out = json_loadb(b.data, b.len, 0, NULL);
    }
    if (status == 0 || status == 401 || status >= 500) METRIC_INC(kube_errors);
    if (status == 401) kube_token(k, 1);

    free(b.data);
    curl_slist_free_all(h);
    return status;
}

/* hands every complete line to the callback; keeps the partial tail */
static size_t split(char *p, size_t size, size_t n, void *data) {
    stream *s = data;
    size_t len = size * n, start = 0, i;

    for (i = 0; i < len; i++) {
        if (p[i] != '\n') continue;
        if (buf_append(&s->line, p + start, i - start) != 0) return 0;
        if (s->line.len && s->fn(s->line.data, s->line.len, s->data) != 0) {
            s->stop = 1;
            return 0;
        }
        s->line.len = 0;
        start = i + 1;
    }
    if (buf_append(&s->line, p + start, len - start) != 0) return 0;
    return len;
}

/*
 * The watch's loop: libcurl's multi interface, so that the daemon's other
 * descriptors (the resolver's) are waited on in the same poll and served
 * between two waits, never from inside a libcurl callback.
 */
static CURLcode perform(kube *k, CURL *curl) {
    struct pollfd pfd[WAIT_MAX];
    struct curl_waitfd wfd[WAIT_MAX];
    CURLcode rc = CURLE_FAILED_INIT;
    CURLMsg *msg;
    CURLM *m;
    int running = 1, n, i, timeout, left;

    if (k->wait_fds == NULL) return curl_easy_perform(curl);
    m = curl_multi_init();
    if (m == NULL) return rc;
    if (curl_multi_add_handle(m, curl) != CURLM_OK) {
        curl_multi_cleanup(m);
        return rc;
    }
    for (;;) {
        if (curl_multi_perform(m, &running) != CURLM_OK || !running) break;
        /* awake when the next tick is due, not up to a second after */
        timeout = (int) (k->tick_at + 1000 - monotonic_ms());
        if (timeout > 1000) timeout = 1000;
        if (timeout < 10) timeout = 10;
        n = k->wait_fds(k->tick_data, pfd, WAIT_MAX, &timeout);
        for (i = 0; i < n; i++) {
            wfd[i].fd = pfd[i].fd;
            wfd[i].events = (pfd[i].events & POLLIN ? CURL_WAIT_POLLIN : 0)
                          | (pfd[i].events & POLLOUT ? CURL_WAIT_POLLOUT : 0);
            wfd[i].revents = 0;
        }
        if (curl_multi_poll(m, wfd, n, timeout, NULL) != CURLM_OK) break;
        if (k->after_wait) k->after_wait(k->tick_data);
    }
    while ((msg = curl_multi_info_read(m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE) rc = msg->data.result;
    curl_multi_remove_handle(m, curl);
    curl_multi_cleanup(m);
    return rc;
}

long kube_watch(kube *k, const char *path, long idle_timeout,
                kube_line_fn fn, void *data) {
    struct curl_slist *h = NULL;
    stream s = { { NULL, 0, 0 }, fn, data, 0 };
    long status = 0;
    CURLcode rc;
    CURL *curl;

    kube_token(k, 0);
    curl = request(k, curl_easy_init(), path, &h);
    if (curl == NULL) return 0;
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, split);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
    /* an idle stream is a dead one: less than 1 byte/s for that long */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, idle_timeout);

    k->watching = curl;
    rc = perform(k, curl);
    k->watching = NULL;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && s.stop)) status = 0;
    /* a watch the daemon itself ended (re-list, exit) is no error */
    if ((status == 0 && rc != CURLE_ABORTED_BY_CALLBACK) || status == 401
        || status >= 500)
        METRIC_INC(kube_errors);
    if (status == 401) kube_token(k, 1);

    free(s.line.data);
    curl_slist_free_all(h);
    curl_easy_cleanup(curl);
    return status;
}
