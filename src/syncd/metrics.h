/*
 * metrics.h - sandbox-syncd's counters, and their Prometheus page.
 *
 * The counters live in one shared anonymous mapping made before any fork,
 * so the elector, the watch worker and the operations process all count
 * into it; --metrics serves them over HTTP (libmicrohttpd) from the main
 * process.  Updates are relaxed atomic additions.
 */

#ifndef SYNCD_METRICS_H
#define SYNCD_METRICS_H

#include <stdint.h>

/* watch event types; ERROR is the API's error event (410 among them) */
enum { EV_ADDED, EV_MODIFIED, EV_DELETED, EV_BOOKMARK, EV_ERROR, EV_N };

/* operation kinds of sbx:ops */
enum { OP_CREATE, OP_DELETE, OP_PAUSE, OP_RESUME, OP_N };

/* duration histograms' upper bounds, ms; one more bucket for the rest */
#define METRICS_BOUNDS  10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
#define METRICS_BUCKETS 12

typedef struct {
    uint64_t buckets[METRICS_BUCKETS];
    uint64_t sum_ms;
} metrics_hist;

typedef struct {
    uint64_t events[EV_N];
    uint64_t relists;
    uint64_t relist_failures;
    metrics_hist relist_time;
    uint64_t gone;                  /* 410 Gone: history compacted */
    int64_t synced_at;              /* ms; the watch worker's view */
    int64_t listed;
    uint64_t ops_done[OP_N];
    uint64_t ops_failed[OP_N];
    metrics_hist op_time[OP_N];
    int64_t leader;
    uint64_t lease_transitions;
    uint64_t redis_errors;
    uint64_t kube_errors;
} syncd_metrics;

extern syncd_metrics *metrics;

#define METRIC_ADD(field, n)                                                \
    do {                                                                    \
        if (metrics) __atomic_fetch_add(&metrics->field, (n),               \
                                        __ATOMIC_RELAXED);                  \
    } while (0)
#define METRIC_INC(field)  METRIC_ADD(field, 1)
#define METRIC_SET(field, v)                                                \
    do {                                                                    \
        if (metrics) __atomic_store_n(&metrics->field, (v),                 \
                                      __ATOMIC_RELAXED);                    \
    } while (0)

/* the shared counters; before any fork.  0, or -1 (counting off) */
int metrics_init(void);

/* serves GET /metrics on ADDR (IP:PORT, [IPv6]:PORT, or PORT alone for
 * 127.0.0.1:PORT) in a thread of its own; 0 or -1 */
int metrics_serve(const char *addr);
void metrics_stop(void);

void metrics_observe(metrics_hist *h, long long ms);
int metrics_event_type(const char *type);      /* EV_*, or -1 */
int metrics_op_kind(const char *op);           /* OP_*, or -1 */

/* the exposition text (0.0.4); malloc'd, the caller frees it */
char *metrics_render(long long now_ms, size_t *len);

#endif
