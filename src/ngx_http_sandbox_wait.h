
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Holding a request until a sandbox's route is ready, without blocking
 * the worker and without polling per request.
 *
 * ngx_http_sandbox_wait_route() parks the request on its sandbox; the
 * worker learns of the route's changes from the "route <user> <name>"
 * messages of sbx:events, on a subscription each worker opens lazily while
 * it holds something, and re-reads the route (one HMGET per sandbox, not
 * per request) when one comes.  An sbx:ready message "<user> <name>
 * <addr>" on the same subscription releases them on addr with no read.
 * A timer per worker re-reads every held route every few seconds, only
 * as a safety net for a lost message.
 *
 * Returns
 *   NGX_AGAIN     held: the handler will be called once, later;
 *   NGX_OK        the shared cache already says the route is ready (not
 *                 held; the handler is not called);
 *   NGX_DECLINED  not held: this worker holds sandbox_wake_max_held
 *                 requests already (answer 503 at once);
 *   NGX_ERROR     not held: out of memory.
 *
 * The handler runs once, from a posted event, in the request's context
 * (its log, r->read_event_handler restored as it was), with rc
 *   NGX_OK                         the route is ready: addr is the address
 *                                  the group's read found, or the ready
 *                                  message named (a copy in the request's
 *                                  pool), or NULL if out of memory (read
 *                                  it again then);
 *   NGX_HTTP_SERVICE_UNAVAILABLE   timeout passed (addr NULL);
 * then ngx_http_run_posted_requests() follows it, so the handler resumes
 * the request as an event handler would (ngx_http_core_run_phases(), or
 * ngx_http_finalize_request()).
 *
 * While held, the client's connection is watched (ngx_http_test_reading):
 * a client that goes away finalizes the request, and the pool cleanup the
 * hold registered takes it out at once (its timer, its slot, its group).
 * Each held request has a timer that keeps an exiting worker (nginx -s
 * reload) alive until the request is answered; the worker's other timers
 * are cancelable.
 */


#ifndef _NGX_HTTP_SANDBOX_WAIT_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_WAIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef void (*ngx_http_sandbox_wait_pt)(ngx_http_request_t *r,
    ngx_int_t rc, ngx_str_t *addr);


ngx_int_t ngx_http_sandbox_wait_route(ngx_http_request_t *r,
    ngx_str_t *user, ngx_str_t *name, ngx_msec_t timeout,
    ngx_http_sandbox_wait_pt handler);

/* requests this worker holds now */
ngx_uint_t ngx_http_sandbox_wait_held(void);

/* process hooks (ngx_http_sandbox_module.c) */
ngx_int_t ngx_http_sandbox_wait_init(ngx_cycle_t *cycle);
void ngx_http_sandbox_wait_exit(void);


#endif /* _NGX_HTTP_SANDBOX_WAIT_H_INCLUDED_ */
