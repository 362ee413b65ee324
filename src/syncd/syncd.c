/*
 * sandbox-syncd - keeps the gateway's route table in Redis in step with
 * the cluster's agent-sandbox Sandbox objects.
 *
 * The loop: list every Sandbox (paged), write their routes, remove routes
 * whose objects are gone, then watch from the list's resourceVersion with
 * bookmarks.  A watch that ends cleanly is resumed from the last version
 * seen; 410 Gone (history compacted) means a fresh list; errors back off.
 *
 * With --template, a second process carries out the operations the API
 * queues (ops.c).
 *
 * With --lease NAMESPACE/NAME, the process first elects a leader on that
 * Lease (elect.c): only the leader runs the watch and the operations, in
 * a child it starts when it wins and kills when it cannot renew in time;
 * followers keep trying, so one takes over once the lease expires.
 *
 * Service names are resolved without blocking (resolve.c): the watch's
 * loop waits on the resolver's sockets too, and a route whose lookup is
 * running is written when the lookup ends.
 *
 * With --metrics ADDR, the main process serves the counters of all of
 * them (metrics.c) at http://ADDR/metrics.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include <sys/prctl.h>
#include <sys/wait.h>

#include "elect.h"
#include "flag.h"
#include "idle.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "resolve.h"
#include "route.h"
#include "store.h"

#define RESOLVE_RETRY_MS  5000
#define WAIT_FDS          16

/* a route waiting for its service name's address */
typedef struct pending {
    route r;                    /* as the object says, unresolved */
    unsigned gen;               /* which lookup counts */
    int busy;                   /* a lookup is running */
    long long retry_at;         /* ms: when a failed one is tried again */
} pending;

typedef struct syncd {
    kube k;
    redisContext *redis;
    const char *redis_addr;
    const char *namespace;
    const char *api_version;
    int default_port;
    long idle_pause;            /* --idle-pause, seconds; 0: never */
    long watch_timeout;
    const char *agent_image;    /* plain images get sandbox-agent (wrap.c) */
    const char *exec_images;    /* images that serve exec themselves */
    int gone;                   /* the watch said 410 */
    int resync;                 /* Redis lost data or writes: list again */
    sync_state st;              /* published on sbx:sync every second */

    /* routes whose service name is being resolved, or did not resolve
     * (retried every 5 s) */
    resolver *res;
    const char *dns_servers;
    pending *pending;
    size_t npending;
    size_t cap;
    unsigned gen;
    long long retry_scan_at;
} syncd;

/* what a lookup's callback needs to find its route again */
typedef struct lookup_tag {
    syncd *s;
    char user[ROUTE_NAME_MAX];
    char name[ROUTE_NAME_MAX];
    unsigned gen;
} lookup_tag;

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void) sig;
    stopping = 1;
}

static void collection(syncd *s, char *path, size_t size, const char *query) {
    if (s->namespace && *s->namespace)
        snprintf(path, size, "/apis/agents.x-k8s.io/%s/namespaces/%s/sandboxes%s",
                 s->api_version, s->namespace, query);
    else
        snprintf(path, size, "/apis/agents.x-k8s.io/%s/sandboxes%s",
                 s->api_version, query);
}

static int redis_ready(syncd *s) {
    if (s->redis && s->redis->err == 0) return 0;
    redisFree(s->redis);
    s->redis = store_open(s->redis_addr);
    if (s->redis == NULL) METRIC_INC(redis_errors);
    return s->redis ? 0 : -1;
}

static long long monotonic_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pending *pending_find(syncd *s, const char *user, const char *name) {
    size_t i;

    for (i = 0; i < s->npending; i++)
        if (strcmp(s->pending[i].r.user, user) == 0
            && strcmp(s->pending[i].r.name, name) == 0)
            return &s->pending[i];
    return NULL;
}

/* a lookup still running for it is ignored when it ends */
static void pending_drop(syncd *s, const char *user, const char *name) {
    pending *p = pending_find(s, user, name);

    if (p) *p = s->pending[--s->npending];
}

static pending *pending_add(syncd *s, const route *r) {
    pending *more;

    if (s->npending == s->cap) {
        more = realloc(s->pending,
                       (s->cap ? s->cap * 2 : 16) * sizeof(pending));
        if (more == NULL) return NULL;
        s->pending = more;
        s->cap = s->cap ? s->cap * 2 : 16;
    }
    memset(&s->pending[s->npending], 0, sizeof(pending));
    s->pending[s->npending].r = *r;
    return &s->pending[s->npending++];
}

static void put(syncd *s, const route *r) {
    if (s->redis == NULL || s->redis->err || store_put(s->redis, r) != 0) {
        METRIC_INC(redis_errors);
        s->resync = 1;
    }
}

/* the end of a lookup: the route is written, resolved or not */
static void resolved(void *data, const char *ip, const char *error) {
    lookup_tag *t = data;
    syncd *s = t->s;
    pending *p = pending_find(s, t->user, t->name);
    route r;

    if (p && p->gen == t->gen) {
        r = p->r;
        if (resolve_apply(&r, ip, error) == 0) {
            pending_drop(s, t->user, t->name);
        } else {
            p->busy = 0;
            p->retry_at = store_now_ms() + RESOLVE_RETRY_MS;
        }
        put(s, &r);
    }
    free(t);
}

/* starts p's lookup; p may be gone when this returns (answered at once) */
static void lookup(syncd *s, pending *p) {
    lookup_tag *t = malloc(sizeof(*t));
    char user[ROUTE_NAME_MAX], name[ROUTE_NAME_MAX];

    p->busy = 1;
    p->gen = ++s->gen;
    p->retry_at = store_now_ms() + RESOLVE_RETRY_MS;
    snprintf(user, sizeof(user), "%s", p->r.user);
    snprintf(name, sizeof(name), "%s", p->r.name);
    if (t) {
        t->s = s;
        memcpy(t->user, user, sizeof(user));
        memcpy(t->name, name, sizeof(name));
        t->gen = p->gen;
    }
    if (t == NULL || s->res == NULL
        || resolver_start(s->res, p->r.fqdn, resolved, t) != 0) {
        free(t);
        p = pending_find(s, user, name);
        if (p) p->busy = 0;             /* tried again later */
    }
}

/*
 * A route without a pod IP gets its service's address.  Returns 1 when
 * the route is held back: it is written when its lookup ends.
 */
static int prepare(syncd *s, route *r) {
    pending *p;

    pending_drop(s, r->user, r->name);
    /* a sandbox that is not ready is not served: no address needed */
    if (r->addr[0] || !r->ready || r->fqdn[0] == '\0') return 0;
    p = pending_add(s, r);
    if (p == NULL) {
        resolve_apply(r, NULL, "out of memory");
        return 0;
    }
    lookup(s, p);
    return 1;
}

/* a failed write may have lost a change: the next tick lists again */
static void apply(syncd *s, json_t *obj, int deleted) {
    route r;

    if (route_from_object(obj, s->api_version, s->default_port, &r) != 0)
        return;                 /* not a sandbox the gateway routes */
    if (r.idle_timeout < 0) r.idle_timeout = s->idle_pause;
    if (deleted) {
        pending_drop(s, r.user, r.name);
        if (store_del(s->redis, r.user, r.name) != 0) {
            METRIC_INC(redis_errors);
            s->resync = 1;
        }
        return;
    }
    if (prepare(s, &r) == 0) put(s, &r);
}

/* the routes that did not resolve, again, every RESOLVE_RETRY_MS */
static void retry_pending(syncd *s) {
    long long now = store_now_ms();
    size_t i = 0;
    unsigned gen;

    if (now < s->retry_scan_at) return;
    s->retry_scan_at = now + 500;
    while (i < s->npending) {
        pending *p = &s->pending[i];

        if (p->busy || now < p->retry_at) { i++; continue; }
        lookup(s, p);
        gen = s->gen;
        /* answered at once: the last entry took its place */
        if (i < s->npending && s->pending[i].gen == gen) i++;
    }
}

/* between two waits of the loop: answers, timeouts, retries */
static void resolve_step(void *data) {
    syncd *s = data;

    if (s->res) resolver_process(s->res);
    retry_pending(s);
}

static int resolve_fds(void *data, struct pollfd *fds, int max,
                       int *timeout_ms) {
    syncd *s = data;

    return s->res ? resolver_fds(s->res, fds, max, timeout_ms) : 0;
}

/*
 * The heartbeat, from the watch's progress callback or a wait.  A Redis
 * that failed a write or lost sbx:sync (flushed, restarted empty) may
 * have lost routes too: the watch ends and everything is listed again.
 */
static int tick(void *data, int streaming) {
    syncd *s = data;
    long long now = store_now_ms();
    int rc;

    if (streaming) s->st.synced_at = now;
    METRIC_SET(synced_at, s->st.synced_at);
    METRIC_SET(listed, s->st.listed);
    if (s->redis == NULL || s->redis->err) {
        s->resync = 1;
        return 1;
    }
    rc = store_sync_state(s->redis, &s->st, 0);
    if (rc == 0 && s->st.listed && !s->resync) {
        fprintf(stderr, "sandbox-syncd: Redis lost its data: re-listing\n");
        s->resync = 1;
    }
    if (rc < 0) {
        METRIC_INC(redis_errors);
        s->resync = 1;
    }
    return s->resync;
}

/* waits up to ms, serving the resolver meanwhile */
static void wait_resolving(syncd *s, long ms) {
    struct pollfd fds[WAIT_FDS];
    long long end = monotonic_ms() + ms, left;
    int n, timeout;

    while (!stopping && (left = end - monotonic_ms()) > 0) {
        timeout = (int) left;
        n = resolve_fds(s, fds, WAIT_FDS, &timeout);
        poll(fds, n, timeout);
        resolve_step(s);
    }
}

/* sleeps, beating */
static void wait_beating(syncd *s, int seconds) {
    while (seconds-- > 0 && !stopping) {
        tick(s, 0);
        wait_resolving(s, 1000);
    }
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* a full list, page by page, each page written in one pipeline; then
 * the routes of vanished objects go */
static int relist(syncd *s) {
    char path[4096], query[3072], cont[2048] = "";
    char **seen = NULL;
    route *page = NULL;
    size_t nseen = 0, npage, i;
    int rc = -1;
    long long start = store_now_ms();

    s->npending = 0;
    for (;;) {
        json_t *list, *items, *item, *meta;
        char **more;
        long status;

        if (cont[0]) {
            /* the token is opaque: escaped, whatever alphabet it uses */
            char *esc = curl_easy_escape(NULL, cont, 0);
            if (esc == NULL) goto done;
            snprintf(query, sizeof(query), "?limit=500&continue=%s", esc);
            curl_free(esc);
        } else {
            snprintf(query, sizeof(query), "?limit=500");
        }
        collection(s, path, sizeof(path), query);
        status = kube_get(&s->k, path, &list);
        if (status != 200 || list == NULL) {
            fprintf(stderr, "sandbox-syncd: list: HTTP %ld\n", status);
            json_decref(list);
            goto done;
        }

        items = json_object_get(list, "items");
        free(page);
        page = malloc((json_array_size(items) + 1) * sizeof(route));
        more = realloc(seen, (nseen + json_array_size(items) + 1)
                             * sizeof(char *));
        if (more) seen = more;
        if (page == NULL || more == NULL) { json_decref(list); goto done; }

        npage = 0;
        json_array_foreach(items, i, item) {
            route *r = &page[npage];
            int held;

            if (route_from_object(item, s->api_version, s->default_port, r))
                continue;
            if (r->idle_timeout < 0) r->idle_timeout = s->idle_pause;
            held = prepare(s, r);   /* written when its lookup ends */
            seen[nseen] = malloc(strlen(r->user) + strlen(r->name) + 2);
            if (seen[nseen] == NULL) { json_decref(list); goto done; }
            sprintf(seen[nseen++], "%s:%s", r->user, r->name);
            if (!held) npage++;
        }

        meta = json_object_get(list, "metadata");
        snprintf(s->st.rv, sizeof(s->st.rv), "%s",
                 json_string_value(json_object_get(meta, "resourceVersion"))
                 ?: "");
        if (snprintf(cont, sizeof(cont), "%s",
                     json_string_value(json_object_get(meta, "continue"))
                     ?: "") >= (int) sizeof(cont)) {
            fprintf(stderr, "sandbox-syncd: list: continue token too long\n");
            json_decref(list);
            goto done;
        }
        json_decref(list);

        if (store_put_many(s->redis, page, npage) != 0) goto done;
        if (cont[0] == '\0') break;
    }

    qsort(seen, nseen, sizeof(char *), cmp);
    if (store_reconcile(s->redis, seen, nseen) != 0) goto done;
    s->st.listed = 1;
    s->st.last_list_at = s->st.synced_at = store_now_ms();
    s->resync = 0;
    store_sync_state(s->redis, &s->st, 1);
    METRIC_SET(synced_at, s->st.synced_at);
    METRIC_SET(listed, 1);
    rc = 0;

done:
    if (rc == 0) {
        METRIC_INC(relists);
        metrics_observe(&metrics->relist_time, store_now_ms() - start);
    } else {
        METRIC_INC(relist_failures);
    }
    for (i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    free(page);
    return rc;
}

static int on_event(const char *line, size_t len, void *data) {
    syncd *s = data;
    json_t *ev, *obj;
    const char *type, *rv;

    ev = json_loadb(line, len, 0, NULL);
    if (ev == NULL) return 0;
    type = json_string_value(json_object_get(ev, "type"));
    obj = json_object_get(ev, "object");
    if (metrics_event_type(type) >= 0) METRIC_INC(events[metrics_event_type(type)]);

    if (type && strcmp(type, "ERROR") == 0) {
        if (json_integer_value(json_object_get(obj, "code")) == 410) {
            METRIC_INC(gone);
            s->gone = 1;
        }
        json_decref(ev);
        return 1;
    }
    if (type && strcmp(type, "BOOKMARK") != 0)
        apply(s, obj, strcmp(type, "DELETED") == 0);

    rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                           "resourceVersion"));
    if (rv) snprintf(s->st.rv, sizeof(s->st.rv), "%s", rv);
    /* sbx:sync is written by the next tick, not once per event */
    s->st.last_event_at = s->st.synced_at = store_now_ms();
    json_decref(ev);
    return stopping || s->resync ? 1 : 0;
}

static void usage_to(FILE *out) {
    fprintf(out,
        "usage: sandbox-syncd [--kubeconfig F] [--context NAME]\n"
        "         [--api URL] [--token-file F] [--ca-file F]\n"
        "         [--namespace NS] [--api-version v1beta1|v1alpha1]\n"
        "         [--redis ADDR | --redis sentinel:NAME@HOST:PORT,...]\n"
        "         [--default-port N] [--watch-timeout S]\n"
        "         [--template FILE] [--lease NAMESPACE/NAME] [--lease-duration S]\n"
        "         [--renew-deadline S] [--retry-period S]\n"
        "         [--dns-servers LIST] [--idle-pause DURATION]\n"
        "         [--agent-image IMAGE] [--exec-images LIST]\n"
        "         [--metrics ADDR]   (e.g. 127.0.0.1:9464: GET /metrics)\n"
        "         [--help]\n"
        "environment: KUBECONFIG, K8S_API, K8S_TOKEN_FILE, K8S_CA_FILE,\n"
        "SANDBOX_REDIS, SANDBOX_NAMESPACE, SANDBOX_API_VERSION,\n"
        "SANDBOX_TEMPLATE, SANDBOX_DNS_SERVERS, SANDBOX_AGENT_IMAGE,\n"
        "SANDBOX_EXEC_IMAGES; in a pod, the service account and\n"
        "KUBERNETES_SERVICE_HOST/PORT; else ~/.kube/config\n"
        "--idle-pause: the leader (with --template) pauses a running sandbox\n"
        "no request or open stream has used for this long (300, 300s, 5m,\n"
        "2h); 0, the default, never.  A Sandbox's annotation\n"
        "agents.x-k8s.io/idle-timeout (the API's idle_timeout) overrides it\n"
        "(SANDBOX_IDLE_PAUSE)\n");
}

static void usage(void) {
    usage_to(stderr);
}

static const char *env(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* the operations loop, in its own process: it blocks on Redis */
static int run_ops(syncd *s, const char *template_file) {
    json_error_t err;
    ops o;
    idle d = { IDLE_AUDIT_MAXLEN, 0 };

    memset(&o, 0, sizeof(o));
    o.k = &s->k;
    o.api_version = s->api_version;
    o.template = json_load_file(template_file, 0, &err);
    if (o.template == NULL) {
        fprintf(stderr, "sandbox-syncd: %s: %s\n", template_file, err.text);
        return 1;
    }
    o.wrap.agent_image = s->agent_image;
    o.wrap.exec_images = s->exec_images;
    o.wrap.default_port = s->default_port;
    snprintf(o.consumer, sizeof(o.consumer), "syncd-%ld", (long) getpid());

    while (!stopping) {
        if (o.redis == NULL || o.redis->err) {
            redisFree(o.redis);
            o.redis = ops_connect(s->redis_addr);
            if (o.redis == NULL) { sleep(1); continue; }
        }
        if (ops_round(&o, 1000) != 0) { sleep(1); continue; }
        if (idle_scan(o.redis, &d) < 0) METRIC_INC(redis_errors);
    }
    redisFree(o.redis);
    json_decref(o.template);
    kube_close(&s->k);
    return 0;
}

static int run(syncd *s, const char *template_file);

typedef struct work {
    syncd *s;
    const char *template_file;
} work;

static int run_work(void *data) {
    work *w = data;
    return run(w->s, w->template_file);
}

/*
 * Where the API is, in order: the --kubeconfig/KUBECONFIG file; else the
 * pod's service account; else ~/.kube/config.  --api, --token-file and
 * --ca-file (or K8S_API, K8S_TOKEN_FILE, K8S_CA_FILE) then override.
 */
static int configure_api(syncd *s, const char *kubeconfig_file,
                         const char *context) {
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    char file[1024], err[512], *colon;
    kubeconfig *kc = &s->k.conf;

    file[0] = '\0';
    if (kubeconfig_file && *kubeconfig_file) {
        /* KUBECONFIG may list several files: the first is used */
        snprintf(file, sizeof(file), "%s", kubeconfig_file);
        colon = strchr(file, ':');
        if (colon) *colon = '\0';
    } else if (host == NULL && getenv("HOME")) {
        snprintf(file, sizeof(file), "%s/.kube/config", getenv("HOME"));
        if (access(file, R_OK) != 0) file[0] = '\0';
    }

    if (file[0]) {
        if (kubeconfig_load(file, context, kc, err, sizeof(err)) != 0) {
            fprintf(stderr, "sandbox-syncd: %s: %s\n", file, err);
            return -1;
        }
        snprintf(s->k.api, sizeof(s->k.api), "%s", kc->server);
        snprintf(s->k.token, sizeof(s->k.token), "%s", kc->token);
        snprintf(s->k.token_file, sizeof(s->k.token_file), "%s",
                 kc->token_file);
        snprintf(s->k.ca_file, sizeof(s->k.ca_file), "%s", kc->ca_file);
    } else if (host) {
        if (strchr(host, ':'))          /* an IPv6 service address */
            snprintf(s->k.api, sizeof(s->k.api), "https://[%s]:%s", host,
                     env("KUBERNETES_SERVICE_PORT", "443"));
        else
            snprintf(s->k.api, sizeof(s->k.api), "https://%s:%s", host,
                     env("KUBERNETES_SERVICE_PORT", "443"));
        snprintf(s->k.token_file, sizeof(s->k.token_file), "%s/token", sa);
        snprintf(s->k.ca_file, sizeof(s->k.ca_file), "%s/ca.crt", sa);
    } else {
        snprintf(s->k.api, sizeof(s->k.api), "https://127.0.0.1:6443");
    }
    return 0;
}

int main(int argc, char **argv) {
    syncd s;
    const char *template_file;
    const char *api, *token_file, *ca_file, *kubeconfig_file, *context = NULL;
    char host[128], err[256];
    election e = { NULL, NULL, 15, 0, 0 };
    work w = { &s, NULL };
    double renew = 0, retry = 0;
    resolver *res;
    const char *metrics_addr = NULL, *idle_pause;
    int i;

    memset(&s, 0, sizeof(s));
    api = env("K8S_API", NULL);
    token_file = env("K8S_TOKEN_FILE", NULL);
    ca_file = env("K8S_CA_FILE", NULL);
    kubeconfig_file = env("KUBECONFIG", NULL);
    s.redis_addr = env("SANDBOX_REDIS", "127.0.0.1:6379");
    s.namespace = env("SANDBOX_NAMESPACE", "");
    s.api_version = env("SANDBOX_API_VERSION", "v1beta1");
    s.default_port = 8080;
    s.watch_timeout = 300;
    template_file = env("SANDBOX_TEMPLATE", NULL);
    s.dns_servers = env("SANDBOX_DNS_SERVERS", NULL);
    idle_pause = env("SANDBOX_IDLE_PAUSE", "0");
    s.agent_image = env("SANDBOX_AGENT_IMAGE", NULL);
    s.exec_images = env("SANDBOX_EXEC_IMAGES", "ghcr.io/agent-infra/sandbox");

    for (i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        int bad = 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_to(stdout);
            return 0;
        }
        if (v == NULL) { usage(); return 2; }
        if (strcmp(argv[i], "--api") == 0) api = v;
        else if (strcmp(argv[i], "--token-file") == 0) token_file = v;
        else if (strcmp(argv[i], "--ca-file") == 0) ca_file = v;
        else if (strcmp(argv[i], "--kubeconfig") == 0) kubeconfig_file = v;
        else if (strcmp(argv[i], "--context") == 0) context = v;
        else if (strcmp(argv[i], "--namespace") == 0) s.namespace = v;
        else if (strcmp(argv[i], "--api-version") == 0) s.api_version = v;
        else if (strcmp(argv[i], "--redis") == 0) s.redis_addr = v;
        else if (strcmp(argv[i], "--default-port") == 0) {
            bad = whole_flag(argv[i], v, 1, 65535, &n);
            s.default_port = (int) n;
        } else if (strcmp(argv[i], "--watch-timeout") == 0)
            bad = whole_flag(argv[i], v, 1, 3600, &s.watch_timeout);
        else if (strcmp(argv[i], "--template") == 0) template_file = v;
        else if (strcmp(argv[i], "--lease") == 0) e.lease = v;
        else if (strcmp(argv[i], "--metrics") == 0) metrics_addr = v;
        else if (strcmp(argv[i], "--lease-duration") == 0) {
            bad = whole_flag(argv[i], v, 1, 3600, &n);
            e.duration = (int) n;
        } else if (strcmp(argv[i], "--renew-deadline") == 0)
            bad = seconds_flag(argv[i], v, &renew);
        else if (strcmp(argv[i], "--retry-period") == 0)
            bad = seconds_flag(argv[i], v, &retry);
        else if (strcmp(argv[i], "--dns-servers") == 0) s.dns_servers = v;
        else if (strcmp(argv[i], "--idle-pause") == 0) idle_pause = v;
        else if (strcmp(argv[i], "--agent-image") == 0) s.agent_image = v;
        else if (strcmp(argv[i], "--exec-images") == 0) s.exec_images = v;
        else { usage(); return 2; }
        if (bad) return 2;
        i++;
    }
    if (strcmp(s.api_version, "v1beta1") && strcmp(s.api_version, "v1alpha1")) {
        usage();
        return 2;
    }
    s.idle_pause = route_duration(idle_pause);
    if (s.idle_pause < 0) {
        fprintf(stderr, "sandbox-syncd: --idle-pause %s: expected seconds"
                " (300, 300s, 5m, 2h) up to a year, or 0 for never\n",
                idle_pause);
        return 2;
    }
    /* as client-go's defaults (15 s, 10 s, 2 s), scaled to the lease */
    e.renew_ms = renew > 0 ? (long) (renew * 1000) : e.duration * 2000L / 3;
    e.retry_ms = retry > 0 ? (long) (retry * 1000) : e.duration * 2000L / 15;
    if (e.renew_ms >= e.duration * 1000L || e.retry_ms >= e.renew_ms) {
        fprintf(stderr, "sandbox-syncd: need retry period < renew deadline"
                " < lease duration\n");
        return 2;
    }
    res = resolver_new(s.dns_servers, err, sizeof(err));
    if (res == NULL) {
        fprintf(stderr, "sandbox-syncd: resolver %s: %s\n",
                s.dns_servers ? s.dns_servers : "", err);
        return 2;
    }
    resolver_free(res);             /* each worker makes its own */
    if (configure_api(&s, kubeconfig_file, context) != 0) return 2;
    if (api) snprintf(s.k.api, sizeof(s.k.api), "%s", api);
    if (token_file)
        snprintf(s.k.token_file, sizeof(s.k.token_file), "%s", token_file);
    if (ca_file) snprintf(s.k.ca_file, sizeof(s.k.ca_file), "%s", ca_file);
    s.k.abort = &stopping;

    /* who this is, in the Lease and in sbx:sync: host and pid */
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    snprintf(s.st.leader, sizeof(s.st.leader), "%s-%ld", host,
             (long) getpid());

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kube_token(&s.k, 1);

    /* counters shared by every process forked from here on */
    if (metrics_init() != 0)
        fprintf(stderr, "sandbox-syncd: no shared memory: no metrics\n");
    if (metrics_addr && metrics_serve(metrics_addr) != 0) return 2;
    if (e.lease == NULL) METRIC_SET(leader, 1);

    if (e.lease) {
        e.id = s.st.leader;
        w.template_file = template_file;
        i = elect(&s.k, &e, run_work, &w, &stopping);
        if (i == 2) usage();
    } else {
        i = run(&s, template_file);
    }
    kube_close(&s.k);
    metrics_stop();
    curl_global_cleanup();
    kubeconfig_free(&s.k.conf);
    return i;
}


/* the worker: the operations process (if any) and the watch loop */
static int run(syncd *s_, const char *template_file) {
    syncd s = *s_;
    pid_t ops_pid = 0;
    int backoff = 1;
    char path[1024], query[256], err[256];

    s.k.conn = NULL;                /* the caller's connection stays its own */

    if (template_file) {
        ops_pid = fork();
        if (ops_pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(run_ops(&s, template_file));
        }
    }

    s.res = resolver_new(s.dns_servers, err, sizeof(err));
    if (s.res == NULL)              /* names stay unresolved */
        fprintf(stderr, "sandbox-syncd: resolver: %s\n", err);
    s.k.tick = tick;
    s.k.tick_data = &s;
    s.k.wait_fds = resolve_fds;
    s.k.after_wait = resolve_step;

    while (!stopping) {
        if (redis_ready(&s) != 0 || relist(&s) != 0) {
            wait_beating(&s, backoff);
            backoff = backoff < 30 ? backoff * 2 : 30;
            continue;
        }
        backoff = 1;

        while (!stopping) {
            long status;

            s.gone = 0;
            snprintf(query, sizeof(query),
                     "?watch=1&allowWatchBookmarks=true&timeoutSeconds=%ld"
                     "&resourceVersion=%s", s.watch_timeout, s.st.rv);
            collection(&s, path, sizeof(path), query);
            /* the server ends a watch after watch_timeout: a stream
             * silent for longer than that is dead */
            status = kube_watch(&s.k, path, s.watch_timeout + 10, on_event,
                                &s);

            if (status == 410) METRIC_INC(gone);
            if (s.gone || s.resync || status == 410) break;  /* re-list */
            if (status == 200) { backoff = 1; continue; } /* resume */
            fprintf(stderr, "sandbox-syncd: watch: HTTP %ld\n", status);
            if (redis_ready(&s) != 0) break;
            wait_beating(&s, backoff);
            backoff = backoff < 30 ? backoff * 2 : 30;
        }
    }

    if (ops_pid > 0) {
        kill(ops_pid, SIGTERM);
        waitpid(ops_pid, NULL, 0);
    }
    s.npending = 0;                 /* the lookups' ends go nowhere */
    resolver_free(s.res);
    kube_close(&s.k);
    redisFree(s.redis);
    free(s.pending);
    return 0;
}
