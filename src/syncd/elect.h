/*
 * elect.h - the elector: runs a worker process only while this daemon
 * holds the Lease, and never past the renew deadline.
 */

#ifndef SYNCD_ELECT_H
#define SYNCD_ELECT_H

#include <signal.h>

#include "kube.h"

typedef struct election {
    const char *lease;          /* NAMESPACE/NAME */
    const char *id;             /* holderIdentity */
    int duration;               /* s: the Lease's leaseDurationSeconds */
    long renew_ms;              /* the leader stops if not renewed within */
    long retry_ms;              /* between two attempts */
} election;

/* the worker, in a child process of its own process group; its return
 * is the child's exit status */
typedef int (*elect_work_fn)(void *data);

/* until *stopping: returns 0, or 2 for a lease name without a slash */
int elect(kube *k, const election *e, elect_work_fn work, void *data,
          volatile sig_atomic_t *stopping);

#endif
