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
#include "ops.h"
#include "route.h"
#include "store.h"

typedef struct syncd {
    kube k;
    redisContext *redis;
    const char *redis_addr;
    const char *namespace;
    const char *api_version;
    int default_port;
    long watch_timeout;
    char rv[64];
    int gone;                   /* the watch said 410 */
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
    return s->redis ? 0 : -1;
}

static int apply(syncd *s, json_t *obj, int deleted) {
    route r;

    if (route_from_object(obj, s->api_version, s->default_port, &r) != 0)
        return 0;               /* not a sandbox the gateway routes */
    if (deleted) return store_del(s->redis, r.user, r.name);
    return store_put(s->redis, &r);
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* a full list, page by page; then the routes of vanished objects go */
static int relist(syncd *s) {
    char path[1024], query[512], cont[1024] = "";
    char **seen = NULL;
    size_t nseen = 0, i;
    int rc = -1;

    for (;;) {
        json_t *list, *item;
        long status;

        snprintf(query, sizeof(query), "?limit=500%s%s",
                 cont[0] ? "&continue=" : "", cont);
        collection(s, path, sizeof(path), query);
        status = kube_get(&s->k, path, &list);
        if (status != 200 || list == NULL) {
            fprintf(stderr, "sandbox-syncd: list: HTTP %ld\n", status);
            json_decref(list);
            goto done;
        }
        json_array_foreach(json_object_get(list, "items"), i, item) {
            route r;
            char **more;

            if (route_from_object(item, s->api_version, s->default_port, &r))
                continue;
            if (store_put(s->redis, &r) != 0) {
                json_decref(list);
                goto done;
            }
            more = realloc(seen, (nseen + 1) * sizeof(char *));
            if (more == NULL) { json_decref(list); goto done; }
            seen = more;
            seen[nseen] = malloc(strlen(r.user) + strlen(r.name) + 2);
            if (seen[nseen] == NULL) { json_decref(list); goto done; }
            sprintf(seen[nseen++], "%s:%s", r.user, r.name);
        }
        json_t *meta = json_object_get(list, "metadata");
        snprintf(s->rv, sizeof(s->rv), "%s",
                 json_string_value(json_object_get(meta, "resourceVersion"))
                 ?: "");
        snprintf(cont, sizeof(cont), "%s",
                 json_string_value(json_object_get(meta, "continue")) ?: "");
        json_decref(list);
        if (cont[0] == '\0') break;
    }

    qsort(seen, nseen, sizeof(char *), cmp);
    if (store_reconcile(s->redis, seen, nseen) != 0) goto done;
    store_sync_state(s->redis, s->rv, 1);
    rc = 0;

done:
    for (i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
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

    if (type && strcmp(type, "ERROR") == 0) {
        if (json_integer_value(json_object_get(obj, "code")) == 410)
            s->gone = 1;
        json_decref(ev);
        return 1;
    }
    if (type && strcmp(type, "BOOKMARK") != 0)
        apply(s, obj, strcmp(type, "DELETED") == 0);

    rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                           "resourceVersion"));
    if (rv) snprintf(s->rv, sizeof(s->rv), "%s", rv);
    store_sync_state(s->redis, s->rv, 1);
    json_decref(ev);
    return stopping ? 1 : 0;
}

static void usage(void) {
    fprintf(stderr,
        "usage: sandbox-syncd [--api URL] [--token-file F] [--ca-file F]\n"
        "         [--namespace NS] [--api-version v1beta1|v1alpha1]\n"
        "         [--redis ADDR] [--default-port N] [--watch-timeout S]\n"
        "         [--template FILE] [--lease NAMESPACE/NAME] [--lease-duration S]\n"
        "environment: K8S_API, K8S_TOKEN_FILE, K8S_CA_FILE, SANDBOX_REDIS,\n"
        "SANDBOX_NAMESPACE, SANDBOX_API_VERSION, SANDBOX_TEMPLATE;\n"
        "in a pod, the service account and KUBERNETES_SERVICE_HOST/PORT\n");
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
    char ns[128], name[128], id[256], host[128];
    time_t renewed = 0;
    pid_t worker = 0;
    const char *slash = strchr(lease, '/');

    if (slash == NULL) { usage(); return 2; }
    snprintf(ns, sizeof(ns), "%.*s", (int) (slash - lease), lease);
    snprintf(name, sizeof(name), "%s", slash + 1);
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    snprintf(id, sizeof(id), "%s-%ld", host, (long) getpid());

    while (!stopping) {
        int rc = lease_acquire(&s->k, ns, name, id, duration);

        if (rc == 1) renewed = time(NULL);
        if (worker > 0 && waitpid(worker, NULL, WNOHANG) == worker) worker = 0;

        if (rc == 1 && worker == 0) {
            fprintf(stderr, "sandbox-syncd: %s leads\n", id);
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
        }
        sleep(duration / 3 > 0 ? duration / 3 : 1);
    }
    if (worker > 0) {
        kill(-worker, SIGTERM);
        waitpid(worker, NULL, 0);
    }
    return 0;
}

int main(int argc, char **argv) {
    syncd s;
    const char *template_file, *lease = NULL;
    int lease_duration = 15;
    const char *api, *host, *sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    char incluster[512], token_sa[600], ca_sa[600];
    int i;

    memset(&s, 0, sizeof(s));
    snprintf(token_sa, sizeof(token_sa), "%s/token", sa);
    snprintf(ca_sa, sizeof(ca_sa), "%s/ca.crt", sa);
    host = getenv("KUBERNETES_SERVICE_HOST");
    snprintf(incluster, sizeof(incluster), "https://%s:%s", host ? host : "",
             env("KUBERNETES_SERVICE_PORT", "443"));

    api = env("K8S_API", host ? incluster : "https://127.0.0.1:6443");
    snprintf(s.k.token_file, sizeof(s.k.token_file), "%s",
             env("K8S_TOKEN_FILE", token_sa));
    snprintf(s.k.ca_file, sizeof(s.k.ca_file), "%s", env("K8S_CA_FILE", ca_sa));
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
        else if (strcmp(argv[i], "--token-file") == 0)
            snprintf(s.k.token_file, sizeof(s.k.token_file), "%s", v);
        else if (strcmp(argv[i], "--ca-file") == 0)
            snprintf(s.k.ca_file, sizeof(s.k.ca_file), "%s", v);
        else if (strcmp(argv[i], "--namespace") == 0) s.namespace = v;
        else if (strcmp(argv[i], "--api-version") == 0) s.api_version = v;
        else if (strcmp(argv[i], "--redis") == 0) s.redis_addr = v;
        else if (strcmp(argv[i], "--default-port") == 0) s.default_port = atoi(v);
        else if (strcmp(argv[i], "--watch-timeout") == 0) s.watch_timeout = atol(v);
        else if (strcmp(argv[i], "--template") == 0) template_file = v;
        else if (strcmp(argv[i], "--lease") == 0) lease = v;
        else if (strcmp(argv[i], "--lease-duration") == 0)
            lease_duration = atoi(v) > 0 ? atoi(v) : 15;
        else { usage(); return 2; }
        i++;
    }
    if (strcmp(s.api_version, "v1beta1") && strcmp(s.api_version, "v1alpha1")) {
        usage();
        return 2;
    }
    snprintf(s.k.api, sizeof(s.k.api), "%s", api);
    s.k.abort = &stopping;

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kube_token(&s.k, 1);

    i = lease ? elect(&s, template_file, lease, lease_duration)
              : run(&s, template_file);
    curl_global_cleanup();
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

    while (!stopping) {
        if (redis_ready(&s) != 0 || relist(&s) != 0) {
            sleep(backoff);
            backoff = backoff < 30 ? backoff * 2 : 30;
            continue;
        }
        backoff = 1;

        while (!stopping) {
            long status;

            s.gone = 0;
            snprintf(query, sizeof(query),
                     "?watch=1&allowWatchBookmarks=true&timeoutSeconds=%ld"
                     "&resourceVersion=%s", s.watch_timeout, s.rv);
            collection(&s, path, sizeof(path), query);
            status = kube_watch(&s.k, path, s.watch_timeout + 30, on_event, &s);

            if (s.gone || status == 410) break;          /* re-list */
            if (status == 200) { backoff = 1; continue; } /* resume */
            fprintf(stderr, "sandbox-syncd: watch: HTTP %ld\n", status);
            if (redis_ready(&s) != 0) break;
            sleep(backoff);
            backoff = backoff < 30 ? backoff * 2 : 30;
        }
    }

    if (ops_pid > 0) {
        kill(ops_pid, SIGTERM);
        waitpid(ops_pid, NULL, 0);
    }
    redisFree(s.redis);
    return 0;
}
