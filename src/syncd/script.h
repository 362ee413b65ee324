/*
 * script.h - Lua scripts run by EVALSHA.
 *
 * Redis names a script by the SHA-1 of its text, so a call sends 40
 * bytes instead of the text.  The scripts a connection runs are loaded
 * once, right after it is made (store_connect): a new connection may
 * be to a server whose script cache is empty (a restarted Redis, a
 * replica a Sentinel failover promoted).  A NOSCRIPT under a live
 * connection (SCRIPT FLUSH) means the script did not run: it is loaded
 * again and the call sent once more, so a write is neither lost nor
 * doubled.
 */

#ifndef SYNCD_SCRIPT_H
#define SYNCD_SCRIPT_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#define SCRIPT_ARGS_MAX  24         /* KEYS and ARGV of one call */

typedef struct script {
    const char *text;
    char sha[41];                   /* lowercase hex, once computed */
} script;

/* SCRIPT LOAD of each, in one pipeline; 0, or -1 (logged) */
int script_load(redisContext *c, script *const *s, size_t n);

/* queues EVALSHA sha nkeys argv...: the first nkeys of argv are KEYS */
int script_append(redisContext *c, script *s, int nkeys, int argc,
                  const char **argv);

/* 1 if the reply says the script is not in the server's cache */
int script_noscript(const redisReply *rep);

/* one call, its reply (the caller frees it; NULL: connection error or
 * the reload failed); a NOSCRIPT is met by loading it and sending the
 * call once more */
redisReply *script_call(redisContext *c, script *s, int nkeys, int argc,
                        const char **argv);

#endif
