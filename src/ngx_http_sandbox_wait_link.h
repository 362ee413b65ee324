
/*
 * Copyright (C) The sandbox gateway authors
 *
 * Internal to the held requests: what the groups (ngx_http_sandbox_wait.c)
 * and the subscription that tells them of route changes
 * (ngx_http_sandbox_wait_link.c) ask of each other.
 */


#ifndef _NGX_HTTP_SANDBOX_WAIT_LINK_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_WAIT_LINK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* ngx_http_sandbox_wait.c: the groups of held requests */

extern ngx_uint_t  ngx_http_sandbox_wait_groups;

void ngx_http_sandbox_wait_check_all(void);

/*
 * A message named a sandbox: addr NULL, its route changed (read it
 * again); otherwise it is ready at addr (release what is held on it).
 * NGX_DECLINED when nothing is held on it here.
 */
ngx_int_t ngx_http_sandbox_wait_heard(u_char *user, size_t user_len,
    u_char *name, size_t name_len, ngx_str_t *addr);


/* ngx_http_sandbox_wait_link.c: the subscription */

void ngx_http_sandbox_wait_link_init(ngx_cycle_t *cycle);
void ngx_http_sandbox_wait_link_exit(void);

/* opens the subscription, or keeps it from closing */
ngx_int_t ngx_http_sandbox_wait_listen(ngx_log_t *log);

/* nothing is held any more: the subscription lingers, then closes */
void ngx_http_sandbox_wait_unused(void);


#endif /* _NGX_HTTP_SANDBOX_WAIT_LINK_H_INCLUDED_ */
