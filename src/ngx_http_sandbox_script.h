
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Redis scripts by their SHA-1: each command is EVALSHA, so a request
 * carries a 40-byte name instead of the script's text, and Redis neither
 * hashes nor parses the text again.  A NOSCRIPT answer (SCRIPT FLUSH, a
 * restarted or failed-over Redis) is handled by resending that one
 * command once more as EVALSHA behind a SCRIPT LOAD, pipelined.
 */


#ifndef _NGX_HTTP_SANDBOX_SCRIPT_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_SCRIPT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_sandbox_redis.h"


#define NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN  40


typedef struct {
    ngx_str_t                            text;
    u_char                               sha[NGX_HTTP_SANDBOX_SCRIPT_SHA_LEN];
    unsigned                             hashed:1;
    unsigned                             state:2;  /* this worker's view */
} ngx_http_sandbox_script_t;


#define ngx_http_sandbox_script(text)  { ngx_string(text), { 0 }, 0, 0 }


ngx_int_t ngx_http_sandbox_script_hash(ngx_http_sandbox_script_t *s,
    ngx_log_t *log);

/*
 * Runs the script: argv is what follows the script in EVAL (numkeys, the
 * keys, the arguments), copied at once.  With a pool, the call's memory is
 * the pool's (a request's: cancel the op from the request's cleanup), and
 * given back to it before the handler is called; without, it is freed
 * when the call ends.  *opp, when not NULL, follows
 * the command in flight (a reload replaces it), for ..._redis_cancel().
 * Without a pool, a NULL handler makes the command fire-and-forget,
 * NOSCRIPT still handled.  Returns NGX_ERROR when the command could not
 * be queued (the link is down): the handler is then never called.
 */
ngx_int_t ngx_http_sandbox_script_run(ngx_http_sandbox_redis_t *rd,
    ngx_http_sandbox_script_t *s, ngx_pool_t *pool, ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sandbox_redis_handler_pt handler, void *data, void **opp);


#endif /* _NGX_HTTP_SANDBOX_SCRIPT_H_INCLUDED_ */
