/*
 * elect.c - leader election on a Lease (lease.c), bounded in time.
 *
 * Every retry period the elector tries to take or renew the lease, each
 * attempt bounded in time.  A leader whose last successful renewal began
 * more than the renew deadline ago (shorter than the lease) may be
 * followed by another at any moment: its worker is killed at that
 * deadline, whatever the elector was doing, so two leaders never act at
 * once.  A follower takes the lease only once its holder has not renewed
 * it for the whole lease duration.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/prctl.h>
#include <sys/wait.h>

#include "elect.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"

static long long monotonic_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sleeps until the monotonic time until_ms, or a signal to stop */
static void sleep_until(long long until_ms, volatile sig_atomic_t *stopping) {
    struct timespec ts;
    long long left;

    while (!*stopping && (left = until_ms - monotonic_ms()) > 0) {
        ts.tv_sec = left / 1000;
        ts.tv_nsec = (left % 1000) * 1000000;
        if (nanosleep(&ts, NULL) != 0 && errno != EINTR) break;
    }
}

/* the worker and its process group (the operations) stop at once */
static void stop_worker(const election *e, pid_t *worker, const char *why) {
    kill(-*worker, SIGKILL);
    waitpid(*worker, NULL, 0);
    *worker = 0;
    syncd_log("%s stopped leading: %s", e->id, why);
    METRIC_SET(leader, 0);
    METRIC_SET(listed, 0);
    METRIC_SET(synced_at, 0);       /* a follower reports no lag */
    METRIC_INC(lease_transitions);
}

static pid_t start_worker(const election *e, elect_work_fn work, void *data) {
    pid_t pid;

    syncd_log("%s leads", e->id);
    METRIC_SET(leader, 1);
    METRIC_INC(lease_transitions);
    pid = fork();
    if (pid == 0) {
        /* a worker never outlives its elector: no second leader */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0);
        _exit(work(data));
    }
    return pid > 0 ? pid : 0;
}

int elect(kube *k, const election *e, elect_work_fn work, void *data,
          volatile sig_atomic_t *stopping) {
    char ns[128], name[128], why[128];
    long long renewed = 0, start, budget, until;
    const char *slash = strchr(e->lease, '/');
    pid_t worker = 0;
    int rc;

    if (slash == NULL) return 2;
    snprintf(ns, sizeof(ns), "%.*s", (int) (slash - e->lease), e->lease);
    snprintf(name, sizeof(name), "%s", slash + 1);
    snprintf(why, sizeof(why), "no renewal within %.3f s", e->renew_ms / 1e3);

    while (!*stopping) {
        start = monotonic_ms();
        /* a leader's attempt may take what is left until its deadline; a
         * follower's, half the renew deadline */
        budget = worker > 0 ? renewed + e->renew_ms - start
                            : e->renew_ms / 2;
        rc = budget > 0
             ? lease_acquire(k, ns, name, e->id, e->duration, budget) : -1;
        if (rc == 1) renewed = start;       /* from before the request */

        if (worker > 0 && waitpid(worker, NULL, WNOHANG) == worker) {
            syncd_log("%s: the worker ended", e->id);
            worker = 0;
        }
        if (worker > 0 && rc == 0)
            stop_worker(e, &worker, "another holds the lease");
        else if (worker > 0 && monotonic_ms() - renewed >= e->renew_ms)
            stop_worker(e, &worker, why);
        if (rc == 1 && worker == 0 && !*stopping)
            worker = start_worker(e, work, data);

        until = start + e->retry_ms;
        if (worker > 0 && renewed + e->renew_ms < until)
            until = renewed + e->renew_ms;
        sleep_until(until, stopping);
    }
    if (worker > 0) {
        kill(-worker, SIGTERM);
        waitpid(worker, NULL, 0);
    }
    return 0;
}
