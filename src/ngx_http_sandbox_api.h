
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management and admin API: endpoints and their Redis scripts.
 */


#ifndef _NGX_HTTP_SANDBOX_API_H_INCLUDED_
#define _NGX_HTTP_SANDBOX_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    ngx_str_t  text;
} ngx_http_sandbox_api_script_t;


/* indexes into ngx_http_sandbox_api_scripts[], in its order */
typedef enum {
    SBX_LUA_USER_CREATE = 0,
    SBX_LUA_USER_LIST,
    SBX_LUA_USER_GET,
    SBX_LUA_USER_UPDATE,
    SBX_LUA_USER_DELETE,
    SBX_LUA_ADMIN_KEY_CREATE,
    SBX_LUA_ADMIN_KEY_LIST,
    SBX_LUA_ADMIN_KEY_REVOKE,
    SBX_LUA_ME,
    SBX_LUA_ME_KEY_CREATE,
    SBX_LUA_ME_KEY_LIST,
    SBX_LUA_ME_KEY_REVOKE,
    SBX_LUA_SANDBOX_LIST,
    SBX_LUA_SANDBOX_CREATE,
    SBX_LUA_SANDBOX_GET,
    SBX_LUA_SANDBOX_DELETE,
    SBX_LUA_SANDBOX_STATE,
    SBX_LUA_ALL_SANDBOXES,
    SBX_LUA_ANON_SANDBOX_CREATE,
    SBX_LUA_ANON_SANDBOX_GET,
    SBX_LUA_ANON_SANDBOX_DELETE,
    SBX_LUA_ANON_SANDBOX_STATE,
    SBX_LUA_HEALTH
} ngx_http_sandbox_api_lua_e;


extern ngx_http_sandbox_api_script_t  ngx_http_sandbox_api_scripts[];


#endif /* _NGX_HTTP_SANDBOX_API_H_INCLUDED_ */
