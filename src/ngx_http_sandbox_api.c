
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The management and admin API (placeholder until it lands).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_module.h"


ngx_int_t
ngx_http_sandbox_api_handler(ngx_http_request_t *r)
{
    return ngx_http_sandbox_send_error(r, NGX_HTTP_NOT_FOUND, "Not Found",
                                       "Not found");
}
