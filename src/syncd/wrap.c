/*
 * wrap.c - the pod template of a Sandbox whose image runs no exec server.
 *
 * The runtime container (the first: the one whose port the gateway uses)
 * becomes
 *
 *   command: [/opt/sandbox-agent/sandbox-agent, --listen, ":PORT"
 *             (, --, its own command and args, when the template has any)]
 *
 * with the "sandbox-agent" emptyDir mounted read-only at /opt/sandbox-agent,
 * filled by an init container of the agent image that runs
 * "sandbox-agent --install" (the agent copies itself: no shell or cp is
 * needed in either image), and, unless it has one, a readiness probe on
 * the agent's /health (the pod is Ready once exec is served).  The image's own entrypoint is replaced, not
 * run: the syncd cannot know it without asking the registry, and the
 * plain images asked for (node, python, alpine) only start a REPL that
 * would end at once.  A template that names a command keeps it, run by
 * the agent as its child.
 */

#include <stdio.h>
#include <string.h>

#include "route.h"
#include "wrap.h"

int wrap_serves_exec(const char *exec_images, const char *image) {
    const char *p = exec_images, *end;
    size_t n, il = strlen(image);

    while (p && *p) {
        end = strchr(p, ',');
        n = end ? (size_t) (end - p) : strlen(p);
        while (n && *p == ' ') { p++; n--; }
        while (n && p[n - 1] == ' ') n--;
        if (n && il >= n && strncmp(image, p, n) == 0
            && (il == n || p[n - 1] == '/' || image[n] == ':'
                || image[n] == '@'))
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* the array member "key" of an object, made when missing */
static json_t *array_of(json_t *obj, const char *key) {
    json_t *a = json_object_get(obj, key);

    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(obj, key, a);
    }
    return a;
}

static int has_named(json_t *array, const char *name) {
    size_t i;
    json_t *v;

    json_array_foreach(array, i, v) {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0) return 1;
    }
    return 0;
}

static json_t *mount(int readonly) {
    return json_pack("{s:s, s:s, s:b}", "name", WRAP_VOLUME,
                     "mountPath", WRAP_AGENT_DIR, "readOnly", readonly);
}

/* the agent, then "--" and what the container ran, if it said */
static json_t *wrapped_command(json_t *c, int port) {
    json_t *cmd, *own = json_object_get(c, "command");
    json_t *args = json_object_get(c, "args");
    char listen[16];

    snprintf(listen, sizeof(listen), ":%d", port);
    cmd = json_pack("[s, s, s]", WRAP_AGENT_BIN, "--listen", listen);
    if (json_array_size(own) || json_array_size(args)) {
        json_array_append_new(cmd, json_string("--"));
        if (json_is_array(own)) json_array_extend(cmd, own);
        if (json_is_array(args)) json_array_extend(cmd, args);
    }
    return cmd;
}

int wrap_sandbox(json_t *sandbox, const wrap_conf *w) {
    json_t *pod, *c, *init;
    const char *image;
    int port;

    pod = json_object_get(json_object_get(json_object_get(sandbox, "spec"),
                                          "podTemplate"), "spec");
    c = json_array_get(json_object_get(pod, "containers"), 0);
    if (!json_is_object(c)) return -1;
    image = json_string_value(json_object_get(c, "image"));

    if (w->agent_image == NULL || *w->agent_image == '\0' || image == NULL
        || wrap_serves_exec(w->exec_images, image)
        || has_named(json_object_get(pod, "initContainers"), WRAP_VOLUME))
        return 0;

    if (!has_named(array_of(pod, "volumes"), WRAP_VOLUME))
        json_array_append_new(json_object_get(pod, "volumes"),
            json_pack("{s:s, s:{}}", "name", WRAP_VOLUME, "emptyDir"));

    init = json_pack("{s:s, s:s, s:[s, s, s], s:[o]}",
                     "name", WRAP_VOLUME, "image", w->agent_image,
                     "command", WRAP_AGENT_SRC, "--install", WRAP_AGENT_BIN,
                     "volumeMounts", mount(0));
    json_array_insert_new(array_of(pod, "initContainers"), 0, init);

    port = route_port_of(sandbox, w->default_port);
    json_object_set_new(c, "command", wrapped_command(c, port));
    json_object_del(c, "args");
    if (json_object_get(c, "readinessProbe") == NULL)
        json_object_set_new(c, "readinessProbe",
            json_pack("{s:{s:s, s:i}}", "httpGet", "path", "/health",
                      "port", port));
    json_array_append_new(array_of(c, "volumeMounts"), mount(1));
    return 1;
}
