/*
 * store.h - the route table in Redis (docs/redis-data-model.md).
 */

#ifndef SYNCD_STORE_H
#define SYNCD_STORE_H

#include <hiredis/hiredis.h>

#include "route.h"
#include "script.h"

/* what sbx:sync says about this daemon's view (times in ms) */
typedef struct sync_state {
    char rv[64];                /* the newest resourceVersion seen */
    char leader[256];           /* who writes */
    int listed;                 /* a full list has been written */
    long long last_list_at;
    long long last_event_at;    /* a watch event or bookmark arrived */
    long long synced_at;        /* the view was last known current */
} sync_state;

long long store_now_ms(void);

/* a connection to the master, the scripts it will run loaded on it
 * (NULL: none, or the load failed); the caller owns it (redisFree) */
redisContext *store_connect(const char *addr, script *const *scripts,
                            size_t n);
/* the same, with the route table's scripts (store_put ... below) */
redisContext *store_open(const char *addr);
int store_put(redisContext *c, const route *r);
/* n routes in one pipeline: a re-list costs one round trip per page */
int store_put_many(redisContext *c, const route *r, size_t n);
int store_del(redisContext *c, const char *user, const char *name);
/* deletes every route whose "user:name" is not in keep (sorted) */
int store_reconcile(redisContext *c, char **keep, size_t n);
/* the heartbeat: sbx:sync with updated_at = now and lag_ms = now minus
 * synced_at (listing: written at the end of a list).  Returns 1, 0 if
 * sbx:sync was missing (Redis lost its data), -1 on a Redis error. */
int store_sync_state(redisContext *c, const sync_state *st, int listing);

#endif
