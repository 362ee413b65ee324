/*
 * lease.h - leader election on a coordination.k8s.io/v1 Lease.
 */

#ifndef SYNCD_LEASE_H
#define SYNCD_LEASE_H

#include "kube.h"

/* 1: we hold the lease now; 0: another holder's lease is still valid;
 * -1: no answer (treat as not leading).  Every request of the attempt
 * together takes at most budget_ms; the renewTime written is the time
 * the attempt began. */
int lease_acquire(kube *k, const char *ns, const char *name, const char *id,
                  int duration, long budget_ms);

#endif
