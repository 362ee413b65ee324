
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The API's limit overrides: "rate_limit" and "max_concurrent" on users
 * and keys, checked by sandbox_limit.c and passed to the scripts as two
 * arguments each: "keep" (absent), "" (null: back to the default) or the
 * value.  Only an admin sets them: a user cannot raise their own.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sandbox_api.h"
#include "sandbox_limit.h"


ngx_int_t
ngx_http_sandbox_api_limit_args(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    u_char              *p;
    sbx_limit_fields_t   lf;
    char                 err[SBX_LIMIT_ERR_MAX];

    if (sbx_limit_fields(ctx->body, &lf, err) != 0) {
        return ngx_http_sandbox_api_bad(r, err);
    }

    if (ctx->ep->auth != NGX_HTTP_SANDBOX_API_ADMIN
        && (lf.rate_op != SBX_LIMIT_KEEP || lf.conc_op != SBX_LIMIT_KEEP))
    {
        return ngx_http_sandbox_api_error(r, NGX_HTTP_FORBIDDEN, "Forbidden",
                                          "rate_limit and max_concurrent are "
                                          "set by an admin");
    }

    switch (lf.rate_op) {

    case SBX_LIMIT_KEEP:
        ngx_http_sandbox_api_arg(ctx, "keep", 4);
        break;

    case SBX_LIMIT_CLEAR:
        ngx_http_sandbox_api_arg(ctx, "", 0);
        break;

    default: /* SBX_LIMIT_SET */
        ngx_http_sandbox_api_arg(ctx, lf.rate, lf.rate_len);
    }

    switch (lf.conc_op) {

    case SBX_LIMIT_KEEP:
        ngx_http_sandbox_api_arg(ctx, "keep", 4);
        break;

    case SBX_LIMIT_CLEAR:
        ngx_http_sandbox_api_arg(ctx, "", 0);
        break;

    default: /* SBX_LIMIT_SET */
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_sandbox_api_arg(ctx, (char *) p,
                                 ngx_sprintf(p, "%uL", lf.conc) - p);
    }

    return NGX_OK;
}


/* PUT /api/admin/apikeys/:id {"rate_limit": ..., "max_concurrent": ...} */

ngx_int_t
ngx_http_sandbox_api_prep_key_update(ngx_http_request_t *r,
    ngx_http_sandbox_api_ctx_t *ctx)
{
    if (!json_is_object(ctx->body)
        || (json_object_get(ctx->body, "rate_limit") == NULL
            && json_object_get(ctx->body, "max_concurrent") == NULL))
    {
        return ngx_http_sandbox_api_bad(r, "Give rate_limit or "
                                           "max_concurrent (null: the "
                                           "default)");
    }

    ngx_http_sandbox_api_prep_param(r, ctx);

    return ngx_http_sandbox_api_limit_args(r, ctx);
}
