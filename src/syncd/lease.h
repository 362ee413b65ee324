/*
 * lease.h - leader election on a coordination.k8s.io/v1 Lease.
 */

#ifndef SYNCD_LEASE_H
#define SYNCD_LEASE_H

#include "kube.h"

/* 1: we hold the lease now; 0: another holder's lease is still valid;
 * -1: no answer (treat as not leading) */
int lease_acquire(kube *k, const char *ns, const char *name, const char *id,
                  int duration);

#endif
