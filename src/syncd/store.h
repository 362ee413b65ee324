/*
 * store.h - the route table in Redis (docs/redis-data-model.md).
 */

#ifndef SYNCD_STORE_H
#define SYNCD_STORE_H

#include <hiredis/hiredis.h>

#include "route.h"

redisContext *store_connect(const char *addr);
int store_put(redisContext *c, const route *r);
int store_del(redisContext *c, const char *user, const char *name);
/* deletes every route whose "user:name" is not in keep (sorted) */
int store_reconcile(redisContext *c, char **keep, size_t n);
int store_sync_state(redisContext *c, const char *rv, int listed);

#endif
