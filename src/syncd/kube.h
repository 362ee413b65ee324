/*
 * kube.h - the few Kubernetes API calls the daemon makes, on libcurl.
 */

#ifndef SYNCD_KUBE_H
#define SYNCD_KUBE_H

#include <poll.h>
#include <signal.h>

#include <jansson.h>

#include "kubeconfig.h"

typedef struct kube {
    char api[512];          /* https://host:port */
    char token_file[512];   /* re-read every minute and on 401 */
    char ca_file[512];
    char token[4096];
    kubeconfig conf;        /* CA, client certificate and key, if any */
    long token_read_at;
    volatile sig_atomic_t *abort;   /* set: transfers stop at once */

    /* called about once a second during a watch; streaming is 1 while
     * the server has answered 200 and the stream is open; a non-zero
     * return ends the watch */
    int (*tick)(void *data, int streaming);
    void *tick_data;
    long long tick_at;              /* ms */
    void *watching;                 /* the watch's CURL handle */

    /* other descriptors the watch's loop waits on (at most max; *timeout
     * may be lowered), and what to do after each wait: the resolver */
    int (*wait_fds)(void *data, struct pollfd *fds, int max,
                    int *timeout_ms);
    void (*after_wait)(void *data);

    /* a whole request's limit (kube_send), 0 for the default (60 s) */
    long timeout_ms;

    void *conn;                     /* kube_send's CURL handle, kept */
    long conn_pid;                  /* the process that made it */
} kube;

/* called with each complete line of a watch stream; returns 0 to go on */
typedef int (*kube_line_fn)(const char *line, size_t len, void *data);

/* GET path; *out gets the parsed body; returns the HTTP status, 0 on a
 * transport error */
long kube_get(kube *k, const char *path, json_t **out);

/* any method with an optional JSON body (content_type for PATCH kinds) */
long kube_send(kube *k, const char *method, const char *path,
               const char *body, const char *content_type, json_t **out);

/* streams path, line by line, until the server ends it (watch timeout),
 * the callback says stop, or idle_timeout seconds pass without data;
 * returns the HTTP status, 0 on a transport error */
long kube_watch(kube *k, const char *path, long idle_timeout,
                kube_line_fn fn, void *data);

/* frees kube_send's kept handle (this process's) */
void kube_close(kube *k);

/* re-reads the token file when it is a minute old, or when forced */
int kube_token(kube *k, int force);

#endif
