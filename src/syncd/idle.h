/*
 * idle.h - pauses sandboxes nobody has used for their idle timeout.
 */

#ifndef SYNCD_IDLE_H
#define SYNCD_IDLE_H

#include <hiredis/hiredis.h>

#include "script.h"

/* its script, loaded with the operations' (ops.c) */
extern script idle_pause_script;

/* as the module's sandbox_audit_maxlen default */
#define IDLE_AUDIT_MAXLEN  100000

typedef struct idle {
    long audit_maxlen;          /* sbx:audit's approximate cap */
    long long next_ms;          /* when the next scan is due */
} idle;

/* one scan, at most once a second (the caller calls it more often);
 * returns how many pauses it queued, or -1 on a Redis error */
int idle_scan(redisContext *c, idle *d);

#endif
