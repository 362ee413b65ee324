/*
 * ops.h - carries out the operations the API queues on sbx:ops.
 */

#ifndef SYNCD_OPS_H
#define SYNCD_OPS_H

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "kube.h"
#include "wrap.h"

typedef struct ops {
    kube *k;
    redisContext *redis;
    const char *api_version;
    json_t *template;           /* the Sandbox to create, with ${...} */
    wrap_conf wrap;             /* plain images: sandbox-agent added */
    char consumer[128];
    int claimed;                /* other consumers' entries taken over */
    int grouped;                /* the consumer group made (or found) */
    int pending;                /* entries of ours may be unacknowledged */
} ops;

/* a connection with the operations' scripts loaded (store_connect) */
redisContext *ops_connect(const char *addr);

/* one round: the consumer's pending entries if some may be left, then
 * new ones (blocks up to block_ms); returns -1 on a Redis error.  The first round takes over the
 * entries other consumers left pending: only one operations process runs
 * at a time (the leader's), so theirs died with their daemon. */
int ops_round(ops *o, long block_ms);

#endif
