/*
 * sandbox-admin: day-one administration of the sandbox gateway from a
 * shell, over its admin API (docs/api.md).
 *
 *   sandbox-admin [--url URL] [--key-file FILE] [--json] COMMAND [ARGS]
 *
 * The admin key comes from --key-file, SANDBOX_ADMIN_KEY_FILE or
 * SANDBOX_ADMIN_KEY (never from the command line, where ps would show
 * it); the URL from --url or SANDBOX_GATEWAY_URL.  Users may be named by
 * id or by user name.  Exit status: 0 done, 1 refused or failed, 2 usage.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define ADMIN_BODY_MAX  (4 * 1024 * 1024)

typedef struct {
    const char  *url;
    char         key[1024];
    int          json;
} admin_t;

typedef struct {
    char    *data;
    size_t   len;
} buf_t;


static void
usage(void)
{
    fprintf(stderr,
        "usage: sandbox-admin [--url URL] [--key-file FILE] [--json] COMMAND\n"
        "\n"
        "  health                          gateway and registry state\n"
        "  users                           list users\n"
        "  user-create NAME [EMAIL] [LIMITS]  create a user\n"
        "  user-show USER                  show a user\n"
        "  user-activate USER              allow a user again\n"
        "  user-deactivate USER            refuse all of a user's keys\n"
        "  user-delete USER                delete a user and their keys\n"
        "  keys USER                       list a user's API keys\n"
        "  key-create USER [NAME [EXPIRES]] [LIMITS]\n"
        "                                  create a key (shown once)\n"
        "  key-revoke KEY_ID               revoke a key\n"
        "  user-limits USER LIMITS         set a user's limits\n"
        "  key-limits KEY_ID LIMITS        set a key's limits\n"
        "  audit [--follow] [--user USER] [--action ACTION] [--limit N]\n"
        "                                  the audit log, newest last;\n"
        "                                  --follow waits for more\n"
        "\n"
        "LIMITS: --rate RATE (\"10r/s\", \"600r/m\": the key's request rate;\n"
        "a user's is its keys' default) and --max-concurrent N (requests\n"
        "at once); \"default\" for the gateway's default.\n"
        "USER is a user id or a user name.  The admin key is read from\n"
        "--key-file, $SANDBOX_ADMIN_KEY_FILE or $SANDBOX_ADMIN_KEY; the\n"
        "gateway is --url or $SANDBOX_GATEWAY_URL (http://127.0.0.1).\n");
}


static size_t
collect(char *p, size_t size, size_t n, void *data)
{
    buf_t   *b = data;
    char    *q;
    size_t   len = size * n;

    if (b->len + len > ADMIN_BODY_MAX) {
        return 0;
    }

    q = realloc(b->data, b->len + len + 1);
    if (q == NULL) {
        return 0;
    }

    memcpy(q + b->len, p, len);
    b->data = q;
    b->len += len;
    b->data[b->len] = '\0';

    return len;
}


/* one request; returns the HTTP status (0 on a transport error) */

static long
request(admin_t *a, const char *method, const char *path, json_t *body,
    json_t **out)
{
    long                status;
    char               *url, *payload, auth[1100];
    buf_t               b = { NULL, 0 };
    CURL               *curl;
    CURLcode            rc;
    struct curl_slist  *h = NULL;

    *out = NULL;
    status = 0;
    payload = NULL;

    curl = curl_easy_init();
    url = malloc(strlen(a->url) + strlen(path) + 1);
    if (curl == NULL || url == NULL) {
        goto done;
    }

    sprintf(url, "%s%s", a->url, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->key);

    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Accept: application/json");

    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload ? payload : "{}");
    }

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);

    rc = curl_easy_perform(curl);

    if (rc != CURLE_OK) {
        fprintf(stderr, "sandbox-admin: %s: %s\n", url,
                curl_easy_strerror(rc));
        goto done;
    }

    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);

    if (b.data) {
        *out = json_loads(b.data, 0, NULL);
    }

    if (*out == NULL) {
        fprintf(stderr, "sandbox-admin: %s answered %ld without JSON\n",
                url, status);
        status = 0;
    }

done:

    free(payload);
    free(b.data);
    free(url);
    curl_slist_free_all(h);
    if (curl) {
        curl_easy_cleanup(curl);
    }

    return status;
}


static int
refused(long status, json_t *j)
{
    const char  *e, *m;

    if (status >= 200 && status < 300) {
        return 0;
    }

    if (status) {
        e = json_string_value(json_object_get(j, "error"));
        m = json_string_value(json_object_get(j, "message"));
        fprintf(stderr, "sandbox-admin: %ld %s: %s\n", status,
                e ? e : "error", m ? m : "");
    }

    return 1;
}


static int
is_uuid(const char *s)
{
    size_t  i;

    if (strlen(s) != 36) {
        return 0;
    }

    for (i = 0; i < 36; i++) {
        if ((i == 8 || i == 13 || i == 18 || i == 23)
            ? s[i] != '-' : !isxdigit((unsigned char) s[i]))
        {
            return 0;
        }
    }

    return 1;
}


/* a user id for "USER", looked up by name when it is not an id */

static int
user_id(admin_t *a, const char *user, char *id)
{
    long         status;
    size_t       i;
    json_t      *j, *u;
    const char  *name, *uid;

    if (is_uuid(user)) {
        strcpy(id, user);
        return 0;
    }

    status = request(a, "GET", "/api/admin/users", NULL, &j);
    if (refused(status, j)) {
        json_decref(j);
        return 1;
    }

    json_array_foreach(json_object_get(j, "users"), i, u) {
        name = json_string_value(json_object_get(u, "username"));
        uid = json_string_value(json_object_get(u, "id"));

        if (name && uid && strcmp(name, user) == 0 && strlen(uid) == 36) {
            strcpy(id, uid);
            json_decref(j);
            return 0;
        }
    }

    json_decref(j);
    fprintf(stderr, "sandbox-admin: no user \"%s\"\n", user);

    return 1;
}


static const char *
str(json_t *o, const char *k)
{
    const char  *v;

    v = json_string_value(json_object_get(o, k));

    return v ? v : "-";
}


/* "  rate_limit 10r/s  max_concurrent 4", for those set */

static void
print_limits(json_t *o)
{
    json_t  *c;

    if (json_is_string(json_object_get(o, "rate_limit"))) {
        printf("  rate_limit %s", str(o, "rate_limit"));
    }

    c = json_object_get(o, "max_concurrent");

    if (json_is_integer(c)) {
        printf("  max_concurrent %lld", (long long) json_integer_value(c));
    }

    printf("\n");
}


static void
print_user(json_t *u)
{
    printf("%-36s  %-24s  %-8s  %s", str(u, "id"), str(u, "username"),
           json_is_false(json_object_get(u, "is_active")) ? "inactive"
                                                          : "active",
           str(u, "email"));
    print_limits(u);
}


static void
print_key(json_t *k)
{
    printf("%-36s  %-12s  %-8s  %-16s  expires %s  used %s",
           str(k, "id"), str(k, "key_prefix"),
           json_is_false(json_object_get(k, "is_active")) ? "revoked"
                                                          : "active",
           str(k, "name"), str(k, "expires_at"), str(k, "last_used_at"));
    print_limits(k);
}


/*
 * --rate RATE and --max-concurrent N, wherever they are, into body and
 * out of argv; "default" is null (the gateway's default again).  The
 * gateway checks the values (400 with the rule).  -1: usage.
 */

static int
limit_opts(int *argc, char **argv, json_t *body)
{
    int          i, n;
    char        *end;
    long long    v;
    const char  *name;

    n = 1;

    for (i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--rate") == 0) {
            name = "rate_limit";

        } else if (strcmp(argv[i], "--max-concurrent") == 0) {
            name = "max_concurrent";

        } else {
            argv[n++] = argv[i];
            continue;
        }

        if (i + 1 == *argc) {
            return -1;
        }

        i++;

        if (strcmp(argv[i], "default") == 0) {
            json_object_set_new(body, name, json_null());
            continue;
        }

        v = strtoll(argv[i], &end, 10);

        if (name[0] == 'm' && *argv[i] != '\0' && *end == '\0') {
            json_object_set_new(body, name, json_integer(v));

        } else {
            json_object_set_new(body, name, json_string(argv[i]));
        }
    }

    *argc = n;

    return 0;
}


static int
show(admin_t *a, json_t *j, const char *list, void (*one)(json_t *),
    const char *single)
{
    size_t   i;
    json_t  *v;

    if (a->json) {
        json_dumpf(j, stdout, JSON_INDENT(2));
        printf("\n");

    } else if (list) {
        json_array_foreach(json_object_get(j, list), i, v) {
            one(v);
        }

    } else if (single && json_object_get(j, single)) {
        one(json_object_get(j, single));

    } else if (json_object_get(j, "message")) {
        printf("%s\n", str(j, "message"));
    }

    return 0;
}


static void
print_record(json_t *r)
{
    printf("%s  %-10s  %-14s  %-7s %3d  %-24s  %s  %s\n",
           str(r, "created_at"), str(r, "actor"), str(r, "action"),
           str(r, "result"),
           (int) json_integer_value(json_object_get(r, "status")),
           str(r, "target"), str(r, "client"), str(r, "request_id"));
}


/*
 * The newest records, then (--follow) whatever comes after them, asked
 * once a second from where the last answer ended ("next")
 */

static int
audit(admin_t *a, int argc, char **argv)
{
    int          i, follow;
    long         status;
    char         query[512], path[700], since[64];
    char        *v;
    size_t       k, n;
    json_t      *j, *r;
    const char  *next;
    CURL        *curl;

    follow = 0;
    since[0] = '\0';
    n = 0;
    query[0] = '\0';

    curl = curl_easy_init();
    if (curl == NULL) {
        return 1;
    }

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0) {
            follow = 1;
            continue;
        }

        if (i + 1 == argc || (strcmp(argv[i], "--user") != 0
                              && strcmp(argv[i], "--action") != 0
                              && strcmp(argv[i], "--limit") != 0))
        {
            curl_easy_cleanup(curl);
            usage();
            return 2;
        }

        v = curl_easy_escape(curl, argv[i + 1], 0);
        if (v == NULL || strlen(v) > 100) {
            curl_free(v);
            curl_easy_cleanup(curl);
            usage();
            return 2;
        }

        n += snprintf(query + n, sizeof(query) - n, "&%s=%s", argv[i] + 2, v);
        curl_free(v);
        i++;
    }

    curl_easy_cleanup(curl);

    for ( ;; ) {
        snprintf(path, sizeof(path), "/api/admin/audit?since=%s%s", since,
                 query);

        status = request(a, "GET", path, NULL, &j);
        if (refused(status, j)) {
            json_decref(j);
            return 1;
        }

        json_array_foreach(json_object_get(j, "records"), k, r) {
            if (a->json) {
                json_dumpf(r, stdout, JSON_COMPACT);
                printf("\n");

            } else {
                print_record(r);
            }
        }

        next = json_string_value(json_object_get(j, "next"));
        if (next && strlen(next) < sizeof(since)) {
            strcpy(since, next);
        }

        /* a full page means more is there already */
        k = json_array_size(json_object_get(j, "records"));
        json_decref(j);
        fflush(stdout);

        if (!follow) {
            return 0;
        }

        if (k == 0 || since[0] == '\0') {
            sleep(1);
        }
    }
}


static int
run(admin_t *a, int argc, char **argv)
{
    int          rc;
    long         status;
    char         id[40], path[256];
    json_t      *j, *body;
    const char  *cmd;

    cmd = argv[0];
    j = NULL;
    body = NULL;
    rc = 2;

#define NEED(n)                                                               \
    if (argc < (n)) { json_decref(body); usage(); return 2; }
#define USER(i)  if (user_id(a, argv[i], id)) { json_decref(body); return 1; }
#define LIMITS()                                                              \
    if (limit_opts(&argc, argv, body) != 0) {                                 \
        json_decref(body);                                                    \
        usage();                                                              \
        return 2;                                                             \
    }

    if (strcmp(cmd, "health") == 0) {
        status = request(a, "GET", "/health", NULL, &j);
        rc = refused(status, j) || show(a, j, NULL, NULL, NULL);
        if (rc == 0 && !a->json) {
            printf("status %s, registry %s\n", str(j, "status"),
                   str(j, "database"));
        }

    } else if (strcmp(cmd, "users") == 0) {
        status = request(a, "GET", "/api/admin/users", NULL, &j);
        rc = refused(status, j) || show(a, j, "users", print_user, NULL);

    } else if (strcmp(cmd, "user-create") == 0) {
        body = json_object();
        LIMITS();
        NEED(2);
        json_object_set_new(body, "username", json_string(argv[1]));
        if (argc > 2) {
            json_object_set_new(body, "email", json_string(argv[2]));
        }
        status = request(a, "POST", "/api/admin/users", body, &j);
        rc = refused(status, j) || show(a, j, NULL, print_user, "user");

    } else if (strcmp(cmd, "user-show") == 0) {
        NEED(2);
        USER(1);
        snprintf(path, sizeof(path), "/api/admin/users/%s", id);
        status = request(a, "GET", path, NULL, &j);
        rc = refused(status, j) || show(a, j, NULL, print_user, "user");

    } else if (strcmp(cmd, "user-activate") == 0
               || strcmp(cmd, "user-deactivate") == 0)
    {
        NEED(2);
        USER(1);
        snprintf(path, sizeof(path), "/api/admin/users/%s", id);
        body = json_pack("{sb}", "is_active", cmd[5] == 'a');
        status = request(a, "PUT", path, body, &j);
        rc = refused(status, j) || show(a, j, NULL, print_user, "user");

    } else if (strcmp(cmd, "user-delete") == 0) {
        NEED(2);
        USER(1);
        snprintf(path, sizeof(path), "/api/admin/users/%s", id);
        status = request(a, "DELETE", path, NULL, &j);
        rc = refused(status, j) || show(a, j, NULL, NULL, NULL);

    } else if (strcmp(cmd, "keys") == 0) {
        NEED(2);
        USER(1);
        snprintf(path, sizeof(path), "/api/admin/users/%s/apikeys", id);
        status = request(a, "GET", path, NULL, &j);
        rc = refused(status, j) || show(a, j, "api_keys", print_key, NULL);

    } else if (strcmp(cmd, "user-limits") == 0) {
        body = json_object();
        LIMITS();
        NEED(2);
        USER(1);
        snprintf(path, sizeof(path), "/api/admin/users/%s", id);
        status = request(a, "PUT", path, body, &j);
        rc = refused(status, j) || show(a, j, NULL, print_user, "user");

    } else if (strcmp(cmd, "key-limits") == 0) {
        body = json_object();
        LIMITS();
        NEED(2);
        snprintf(path, sizeof(path), "/api/admin/apikeys/%.64s", argv[1]);
        status = request(a, "PUT", path, body, &j);
        rc = refused(status, j) || show(a, j, NULL, print_key, "key_info");

    } else if (strcmp(cmd, "key-create") == 0) {
        body = json_object();
        LIMITS();
        NEED(2);
        USER(1);
        snprintf(path, sizeof(path), "/api/admin/users/%s/apikeys", id);
        if (argc > 2) {
            json_object_set_new(body, "name", json_string(argv[2]));
        }
        if (argc > 3) {
            json_object_set_new(body, "expires_at", json_string(argv[3]));
        }
        status = request(a, "POST", path, body, &j);
        rc = refused(status, j);
        if (rc == 0 && a->json) {
            show(a, j, NULL, NULL, NULL);

        } else if (rc == 0) {
            /* the key alone on stdout, so scripts can capture it */
            printf("%s\n", str(j, "api_key"));
            fprintf(stderr, "key id %s; it will not be shown again\n",
                    str(json_object_get(j, "key_info"), "id"));
        }

    } else if (strcmp(cmd, "audit") == 0) {
        rc = audit(a, argc, argv);

    } else if (strcmp(cmd, "key-revoke") == 0) {
        NEED(2);
        snprintf(path, sizeof(path), "/api/admin/apikeys/%.64s", argv[1]);
        status = request(a, "DELETE", path, NULL, &j);
        rc = refused(status, j) || show(a, j, NULL, NULL, NULL);

    } else {
        usage();
    }

    json_decref(body);
    json_decref(j);

    return rc;
}


static int
read_key(admin_t *a, const char *file)
{
    FILE    *f;
    size_t   n;

    f = fopen(file, "r");
    if (f == NULL || fgets(a->key, sizeof(a->key), f) == NULL) {
        fprintf(stderr, "sandbox-admin: cannot read the admin key from %s\n",
                file);
        if (f) {
            fclose(f);
        }
        return 1;
    }

    fclose(f);

    n = strcspn(a->key, " \t\r\n");
    a->key[n] = '\0';

    return 0;
}


int
main(int argc, char **argv)
{
    int          i, rc;
    admin_t      a;
    const char  *file, *env;

    memset(&a, 0, sizeof(a));
    a.url = getenv("SANDBOX_GATEWAY_URL");
    file = getenv("SANDBOX_ADMIN_KEY_FILE");

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            a.url = argv[++i];

        } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
            file = argv[++i];

        } else if (strcmp(argv[i], "--json") == 0) {
            a.json = 1;

        } else {
            usage();
            return 2;
        }
    }

    if (i == argc) {
        usage();
        return 2;
    }

    if (a.url == NULL) {
        a.url = "http://127.0.0.1";
    }

    if (file) {
        if (read_key(&a, file) != 0) {
            return 1;
        }

    } else if ((env = getenv("SANDBOX_ADMIN_KEY")) != NULL) {
        snprintf(a.key, sizeof(a.key), "%s", env);

    } else if (strcmp(argv[i], "health") != 0) {
        fprintf(stderr, "sandbox-admin: no admin key: use --key-file or "
                        "SANDBOX_ADMIN_KEY_FILE\n");
        return 2;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = run(&a, argc - i, argv + i);
    curl_global_cleanup();

    memset(a.key, 0, sizeof(a.key));

    return rc;
}
