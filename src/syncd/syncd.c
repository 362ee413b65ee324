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
 * Lease (lease.c): only the leader runs the watch and the operations, in
 * a child it starts when it wins and kills when it cannot renew in time;
 * followers keep trying, so one takes over once the lease expires.
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

#include "kube.h"
#include "lease.h"
#include "metrics.h"
#include "ops.h"
#include "resolve.h"
#include "route.h"
#include "store.h"

#define RESOLVE_RETRY_MS  5000

typedef struct syncd {
    kube k;
    redisContext *redis;
    const char *redis_addr;
    const char *namespace;
    const char *api_version;
    int default_port;
    long watch_timeout;
    int gone;                   /* the watch said 410 */
    int resync;                 /* Redis lost data or writes: list again */
    sync_state st;              /* published on sbx:sync every second */

    /* routes whose service name did not resolve: retried every 5 s */
    route *pending;
    size_t npending;
    size_t cap;
    long long retry_at;
} syncd;

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
    s->redis = store_connect(s->redis_addr);
    if (s->redis == NULL) METRIC_INC(redis_errors);
    return s->redis ? 0 : -1;
}

static void pending_drop(syncd *s, const route *r) {
    size_t i;

    for (i = 0; i < s->npending; i++) {
        if (strcmp(s->pending[i].user, r->user) == 0
            && strcmp(s->pending[i].name, r->name) == 0) {
            s->pending[i] = s->pending[--s->npending];
            return;
        }
    }
}

static void pending_add(syncd *s, const route *r) {
    route *more;

    pending_drop(s, r);
    if (s->npending == s->cap) {
        more = realloc(s->pending, (s->cap ? s->cap * 2 : 16) * sizeof(route));
        if (more == NULL) return;           /* the next event retries */
        s->pending = more;
        s->cap = s->cap ? s->cap * 2 : 16;
    }
    s->pending[s->npending++] = *r;
}

/* a route without a pod IP gets its service's address, or waits */
static void prepare(syncd *s, route *r) {
    route orig;

    pending_drop(s, r);
    /* a sandbox that is not ready is not served: no address needed */
    if (r->addr[0] || !r->ready || r->fqdn[0] == '\0') return;
    orig = *r;
    if (resolve_route(r) != 0) pending_add(s, &orig);
}

/* a failed write may have lost a change: the next tick lists again */
static void apply(syncd *s, json_t *obj, int deleted) {
    route r;

    if (route_from_object(obj, s->api_version, s->default_port, &r) != 0)
        return;                 /* not a sandbox the gateway routes */
    if (deleted) {
        pending_drop(s, &r);
        if (store_del(s->redis, r.user, r.name) != 0) {
            METRIC_INC(redis_errors);
            s->resync = 1;
        }
        return;
    }
    prepare(s, &r);
    if (store_put(s->redis, &r) != 0) {
        METRIC_INC(redis_errors);
        s->resync = 1;
    }
}

/* the routes that did not resolve, again; written once they do */
static void retry_pending(syncd *s) {
    route r;
    size_t i = 0;

    while (i < s->npending) {
        r = s->pending[i];
        if (resolve_route(&r) != 0) { i++; continue; }
        pending_drop(s, &r);
        store_put(s->redis, &r);
    }
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
    if (s->npending && now >= s->retry_at) {
        s->retry_at = now + RESOLVE_RETRY_MS;
        retry_pending(s);
    }
    return s->resync;
}

/* sleeps, beating */
static void wait_beating(syncd *s, int seconds) {
    while (seconds-- > 0 && !stopping) {
        tick(s, 0);
        sleep(1);
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

            if (route_from_object(item, s->api_version, s->default_port, r))
                continue;
            prepare(s, r);
            seen[nseen] = malloc(strlen(r->user) + strlen(r->name) + 2);
            if (seen[nseen] == NULL) { json_decref(list); goto done; }
            sprintf(seen[nseen++], "%s:%s", r->user, r->name);
            npage++;
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

static void usage(void) {
    fprintf(stderr,
        "usage: sandbox-syncd [--kubeconfig F] [--context NAME]\n"
        "         [--api URL] [--token-file F] [--ca-file F]\n"
        "         [--namespace NS] [--api-version v1beta1|v1alpha1]\n"
        "         [--redis ADDR] [--default-port N] [--watch-timeout S]\n"
        "         [--template FILE] [--lease NAMESPACE/NAME] [--lease-duration S]\n"
        "         [--metrics ADDR]   (e.g. 127.0.0.1:9464: GET /metrics)\n"
        "environment: KUBECONFIG, K8S_API, K8S_TOKEN_FILE, K8S_CA_FILE,\n"
        "SANDBOX_REDIS, SANDBOX_NAMESPACE, SANDBOX_API_VERSION,\n"
        "SANDBOX_TEMPLATE; in a pod, the service account and\n"
        "KUBERNETES_SERVICE_HOST/PORT; else ~/.kube/config\n");
}

static const char *env(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* the operations loop, in its own process: it blocks on Redis */
static int run_ops(syncd *s, const char *template_file) {
    json_error_t err;
    ops o;

    memset(&o, 0, sizeof(o));
    o.k = &s->k;
    o.api_version = s->api_version;
    o.template = json_load_file(template_file, 0, &err);
    if (o.template == NULL) {
        fprintf(stderr, "sandbox-syncd: %s: %s\n", template_file, err.text);
        return 1;
    }
    snprintf(o.consumer, sizeof(o.consumer), "syncd-%ld", (long) getpid());

    while (!stopping) {
        if (o.redis == NULL || o.redis->err) {
            redisFree(o.redis);
            o.redis = store_connect(s->redis_addr);
            if (o.redis == NULL) { sleep(1); continue; }
        }
        if (ops_round(&o, 1000) != 0) sleep(1);
    }
    redisFree(o.redis);
    json_decref(o.template);
    return 0;
}

static int run(syncd *s, const char *template_file);

/*
 * The elector: renews every third of the lease; runs the worker only
 * while it holds the lease.  A renewal that has not succeeded for the
 * lease's duration means someone else may lead: the worker is stopped.
 */
static int elect(syncd *s, const char *template_file, const char *lease,
                 int duration) {
    const char *id = s->st.leader;
    char ns[128], name[128];
    time_t renewed = 0;
    pid_t worker = 0;
    const char *slash = strchr(lease, '/');

    if (slash == NULL) { usage(); return 2; }
    snprintf(ns, sizeof(ns), "%.*s", (int) (slash - lease), lease);
    snprintf(name, sizeof(name), "%s", slash + 1);

    while (!stopping) {
        int rc = lease_acquire(&s->k, ns, name, id, duration);

        if (rc == 1) renewed = time(NULL);
        if (worker > 0 && waitpid(worker, NULL, WNOHANG) == worker) worker = 0;

        if (rc == 1 && worker == 0) {
            fprintf(stderr, "sandbox-syncd: %s leads\n", id);
            METRIC_SET(leader, 1);
            METRIC_INC(lease_transitions);
            worker = fork();
            if (worker == 0) {
                /* a worker never outlives its elector: no second leader */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                setpgid(0, 0);
                _exit(run(s, template_file));
            }
        }
        if (worker > 0 && time(NULL) - renewed >= duration) {
            /* at once: another may lead already; the group holds ops too */
            fprintf(stderr, "sandbox-syncd: %s lost the lease\n", id);
            kill(-worker, SIGKILL);
            waitpid(worker, NULL, 0);
            worker = 0;
            METRIC_SET(leader, 0);
            METRIC_SET(listed, 0);
            METRIC_SET(synced_at, 0);   /* a follower reports no lag */
            METRIC_INC(lease_transitions);
        }
        sleep(duration / 3 > 0 ? duration / 3 : 1);
    }
    if (worker > 0) {
        kill(-worker, SIGTERM);
        waitpid(worker, NULL, 0);
    }
    return 0;
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
    const char *template_file, *lease = NULL;
    const char *api, *token_file, *ca_file, *kubeconfig_file, *context = NULL;
    const char *metrics_addr = NULL;
    char host[128];
    int lease_duration = 15;
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

    for (i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) { usage(); return 2; }
        if (strcmp(argv[i], "--api") == 0) api = v;
        else if (strcmp(argv[i], "--token-file") == 0) token_file = v;
        else if (strcmp(argv[i], "--ca-file") == 0) ca_file = v;
        else if (strcmp(argv[i], "--kubeconfig") == 0) kubeconfig_file = v;
        else if (strcmp(argv[i], "--context") == 0) context = v;
        else if (strcmp(argv[i], "--namespace") == 0) s.namespace = v;
        else if (strcmp(argv[i], "--api-version") == 0) s.api_version = v;
        else if (strcmp(argv[i], "--redis") == 0) s.redis_addr = v;
        else if (strcmp(argv[i], "--default-port") == 0) s.default_port = atoi(v);
        else if (strcmp(argv[i], "--watch-timeout") == 0) s.watch_timeout = atol(v);
        else if (strcmp(argv[i], "--template") == 0) template_file = v;
        else if (strcmp(argv[i], "--lease") == 0) lease = v;
        else if (strcmp(argv[i], "--metrics") == 0) metrics_addr = v;
        else if (strcmp(argv[i], "--lease-duration") == 0)
            lease_duration = atoi(v) > 0 ? atoi(v) : 15;
        else { usage(); return 2; }
        i++;
    }
    if (strcmp(s.api_version, "v1beta1") && strcmp(s.api_version, "v1alpha1")) {
        usage();
        return 2;
    }
    if (s.watch_timeout < 1 || s.default_port < 1 || s.default_port > 65535) {
        usage();
        return 2;
    }
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
    /* service names are resolved here: bound the resolver's wait */
    setenv("RES_OPTIONS", "timeout:2 attempts:2", 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kube_token(&s.k, 1);

    /* counters shared by every process forked from here on */
    if (metrics_init() != 0)
        fprintf(stderr, "sandbox-syncd: no shared memory: no metrics\n");
    if (metrics_addr && metrics_serve(metrics_addr) != 0) return 2;
    if (lease == NULL) METRIC_SET(leader, 1);

    i = lease ? elect(&s, template_file, lease, lease_duration)
              : run(&s, template_file);
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
    char path[1024], query[256];

    if (template_file) {
        ops_pid = fork();
        if (ops_pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(run_ops(&s, template_file));
        }
    }

    s.k.tick = tick;
    s.k.tick_data = &s;

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
    redisFree(s.redis);
    free(s.pending);
    return 0;
}
