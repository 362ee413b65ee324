/*
 * metrics.c - sandbox-syncd's counters in shared memory and a /metrics
 * page in the Prometheus text format (0.0.4), served by libmicrohttpd.
 */

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "metrics.h"

syncd_metrics *metrics;

static struct MHD_Daemon *daemon_;
static struct sockaddr_storage listen_addr;

static const long long bounds[] = { METRICS_BOUNDS };
static const char *event_names[EV_N] = {
    "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
};
static const char *op_names[OP_N] = { "create", "delete", "pause", "resume" };

int metrics_init(void) {
    void *p = mmap(NULL, sizeof(syncd_metrics), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) return -1;
    metrics = p;                    /* zeroed by the kernel */
    return 0;
}

void metrics_observe(metrics_hist *h, long long ms) {
    int i;

    if (metrics == NULL) return;
    for (i = 0; i < METRICS_BUCKETS - 1 && ms > bounds[i]; i++)
        ;
    __atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_ms, ms > 0 ? (uint64_t) ms : 0,
                       __ATOMIC_RELAXED);
}

int metrics_event_type(const char *type) {
    int i;

    for (i = 0; type && i < EV_N; i++)
        if (strcmp(type, event_names[i]) == 0) return i;
    return -1;
}

int metrics_op_kind(const char *op) {
    int i;

    for (i = 0; op && i < OP_N; i++)
        if (strcmp(op, op_names[i]) == 0) return i;
    return -1;
}

static uint64_t get(const uint64_t *v) {
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void head(FILE *f, const char *name, const char *type,
                 const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type, const char *help,
                unsigned long long v) {
    head(f, name, type, help);
    fprintf(f, "%s %llu\n", name, v);
}

/* buckets are kept apart and summed here; label: "" or 'kind="x",' */
static void hist(FILE *f, const char *name, const char *label,
                 const metrics_hist *h) {
    unsigned long long n = 0, sum = get(&h->sum_ms);
    int i;

    for (i = 0; i < METRICS_BUCKETS - 1; i++) {
        n += get(&h->buckets[i]);
        fprintf(f, "%s_bucket{%sle=\"%lld.%03lld\"} %llu\n", name, label,
                bounds[i] / 1000, bounds[i] % 1000, n);
    }
    n += get(&h->buckets[i]);
    fprintf(f, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, n);
    if (*label) {
        /* 'kind="x",' without its comma */
        fprintf(f, "%s_sum{%.*s} %llu.%03llu\n%s_count{%.*s} %llu\n",
                name, (int) strlen(label) - 1, label, sum / 1000, sum % 1000,
                name, (int) strlen(label) - 1, label, n);
    } else {
        fprintf(f, "%s_sum %llu.%03llu\n%s_count %llu\n", name, sum / 1000,
                sum % 1000, name, n);
    }
}

char *metrics_render(long long now_ms, size_t *len) {
    char *text = NULL, label[64];
    FILE *f;
    int i;
    long long synced_at;

    f = open_memstream(&text, len);
    if (f == NULL || metrics == NULL) {
        if (f) fclose(f);
        free(text);
        return NULL;
    }

    head(f, "sandbox_syncd_watch_events_total", "counter",
         "Watch events received, by type (BOOKMARK: bookmarks).");
    for (i = 0; i < EV_N; i++)
        fprintf(f, "sandbox_syncd_watch_events_total{type=\"%s\"} %llu\n",
                event_names[i], (unsigned long long) get(&metrics->events[i]));

    one(f, "sandbox_syncd_relists_total", "counter",
        "Full lists of the Sandboxes completed.", get(&metrics->relists));
    one(f, "sandbox_syncd_relist_failures_total", "counter",
        "Full lists that failed (Kubernetes or Redis).",
        get(&metrics->relist_failures));
    head(f, "sandbox_syncd_relist_seconds", "histogram",
         "How long a completed full list took, writes included.");
    hist(f, "sandbox_syncd_relist_seconds", "", &metrics->relist_time);
    one(f, "sandbox_syncd_gone_total", "counter",
        "Watches answered 410 Gone (history compacted): each means a "
        "re-list.", get(&metrics->gone));

    one(f, "sandbox_syncd_listed", "gauge",
        "1 once this leader has listed everything.",
        (unsigned long long) __atomic_load_n(&metrics->listed,
                                             __ATOMIC_RELAXED));
    synced_at = __atomic_load_n(&metrics->synced_at, __ATOMIC_RELAXED);
    if (synced_at > 0 && now_ms >= synced_at) {
        head(f, "sandbox_syncd_lag_seconds", "gauge",
             "Now minus the last moment the watch was known current.");
        fprintf(f, "sandbox_syncd_lag_seconds %lld.%03lld\n",
                (now_ms - synced_at) / 1000, (now_ms - synced_at) % 1000);
    }

    head(f, "sandbox_syncd_operations_total", "counter",
         "Operations of sbx:ops carried out, by kind and result (failed: "
         "Kubernetes refused it).");
    for (i = 0; i < OP_N; i++) {
        fprintf(f, "sandbox_syncd_operations_total{kind=\"%s\",result=\"done\"}"
                " %llu\n", op_names[i],
                (unsigned long long) get(&metrics->ops_done[i]));
        fprintf(f, "sandbox_syncd_operations_total{kind=\"%s\","
                "result=\"failed\"} %llu\n", op_names[i],
                (unsigned long long) get(&metrics->ops_failed[i]));
    }
    head(f, "sandbox_syncd_operation_seconds", "histogram",
         "How long Kubernetes took to carry out an operation.");
    for (i = 0; i < OP_N; i++) {
        snprintf(label, sizeof(label), "kind=\"%s\",", op_names[i]);
        hist(f, "sandbox_syncd_operation_seconds", label,
             &metrics->op_time[i]);
    }

    one(f, "sandbox_syncd_leader", "gauge",
        "1 while this process leads (runs the watch and the operations).",
        (unsigned long long) __atomic_load_n(&metrics->leader,
                                             __ATOMIC_RELAXED));
    one(f, "sandbox_syncd_lease_transitions_total", "counter",
        "Times this process won or lost the lease.",
        get(&metrics->lease_transitions));
    one(f, "sandbox_syncd_redis_errors_total", "counter",
        "Redis connections or commands that failed.",
        get(&metrics->redis_errors));
    one(f, "sandbox_syncd_kube_errors_total", "counter",
        "Kubernetes API calls without an answer, refused for the token, or "
        "answered 5xx.", get(&metrics->kube_errors));

    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static long long now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **state) {
    struct MHD_Response *r;
    enum MHD_Result rc;
    unsigned status = MHD_HTTP_OK;
    char *text = NULL;
    size_t len = 0;
    static const char not_found[] = "not found: try /metrics\n";

    (void) cls; (void) version; (void) upload; (void) upload_size;
    (void) state;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    else if (strcmp(url, "/metrics") != 0)
        status = MHD_HTTP_NOT_FOUND;
    else if ((text = metrics_render(now_ms(), &len)) == NULL)
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;

    if (status == MHD_HTTP_OK)
        r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    else
        r = MHD_create_response_from_buffer(sizeof(not_found) - 1,
                                            (void *) not_found,
                                            MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    if (status == MHD_HTTP_OK)
        MHD_add_response_header(r, "Content-Type",
                                "text/plain; version=0.0.4; charset=utf-8");
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* IP:PORT, [IPv6]:PORT, or PORT: numeric only, no name lookups */
static int parse_addr(const char *addr, struct sockaddr_storage *ss) {
    char host[128], *colon;
    const char *port;
    struct addrinfo hints, *ai;

    if (strchr(addr, ':') == NULL) {
        snprintf(host, sizeof(host), "127.0.0.1");
        port = addr;
    } else if (addr[0] == '[') {
        snprintf(host, sizeof(host), "%s", addr + 1);
        colon = strstr(host, "]:");
        if (colon == NULL) return -1;
        *colon = '\0';
        port = strstr(addr, "]:") + 2;
    } else {
        snprintf(host, sizeof(host), "%s", addr);
        colon = strrchr(host, ':');
        *colon = '\0';
        port = strrchr(addr, ':') + 1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

int metrics_serve(const char *addr) {
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

    if (parse_addr(addr, &listen_addr) != 0) {
        fprintf(stderr, "sandbox-syncd: --metrics %s: not IP:PORT\n", addr);
        return -1;
    }
    if (listen_addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, answer, NULL,
                               MHD_OPTION_SOCK_ADDR, &listen_addr,
                               MHD_OPTION_CONNECTION_LIMIT, 16u,
                               MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                               MHD_OPTION_END);
    if (daemon_ == NULL) {
        fprintf(stderr, "sandbox-syncd: --metrics %s: cannot listen\n", addr);
        return -1;
    }
    return 0;
}

void metrics_stop(void) {
    if (daemon_) MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
