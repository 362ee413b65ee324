/*
 * wrap.h - makes a plain image a sandbox runtime: the Sandbox's pod
 * template gets an init container that copies sandbox-agent into a shared
 * emptyDir volume, and the runtime container runs it as its entrypoint.
 */

#ifndef SYNCD_WRAP_H
#define SYNCD_WRAP_H

#include <jansson.h>

/* where the agent is in the agent image, and where the pod sees it */
#define WRAP_AGENT_SRC    "/usr/lib/sandbox-gateway/sandbox-agent"
#define WRAP_AGENT_DIR    "/opt/sandbox-agent"
#define WRAP_AGENT_BIN    WRAP_AGENT_DIR "/sandbox-agent"
#define WRAP_VOLUME       "sandbox-agent"

typedef struct wrap_conf {
    const char *agent_image;    /* NULL or "": nothing is wrapped */
    const char *exec_images;    /* comma-separated: images serving exec */
    int default_port;
} wrap_conf;

/* 1 when an image serves the exec contract itself: it is an entry of the
 * list, or an entry followed by ":tag" or "@digest", or starts with an
 * entry that ends in "/" (a whole repository path) */
int wrap_serves_exec(const char *exec_images, const char *image);

/* wraps the runtime container (the first) of a Sandbox object unless its
 * image serves exec itself or it is wrapped already; returns 1 when
 * wrapped, 0 when left alone, -1 when the template has no container */
int wrap_sandbox(json_t *sandbox, const wrap_conf *w);

#endif
