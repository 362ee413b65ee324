
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The gateway's authentication decisions, in one place: the bearer key
 * of a request, the admin key, and whether a key record found in Redis or
 * the cache is good (active, not expired, its user active).  Keys are
 * only ever compared as SHA-256 digests: Redis stores digests, and the
 * admin key read from its file is hashed at configuration time and the
 * clear text dropped.  (The API's Redis scripts judge the keys of /api/me
 * and /api/sandboxes the same way, atomically with what they do.)
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_http_sandbox_module.h"
#include "sandbox_token.h"


/*
 * Returns NGX_OK with the key, or NGX_HTTP_UNAUTHORIZED with the message
 * the original proxy used for that case.
 */

ngx_int_t
ngx_http_sandbox_auth_bearer(ngx_http_request_t *r, ngx_str_t *key,
    const char **message)
{
    int               rc;
    size_t            off, len;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h == NULL) {
        *message = "Missing Authorization header";
        return NGX_HTTP_UNAUTHORIZED;
    }

    rc = sbx_token_parse(h->value.data, h->value.len, &off, &len);

    if (rc == SBX_TOKEN_EMPTY) {
        *message = "Empty API key";
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (rc != SBX_TOKEN_OK) {
        *message = "Invalid Authorization header format. "
                   "Expected: Bearer <api-key>";
        return NGX_HTTP_UNAUTHORIZED;
    }

    key->data = h->value.data + off;
    key->len = len;

    return NGX_OK;
}


/*
 * A key record, as Redis or the cache gave it: NGX_OK when it may be
 * used, else NGX_HTTP_UNAUTHORIZED with the original proxy's message.
 * On the hot path (every cached request): no allocation.
 */

ngx_int_t
ngx_http_sandbox_auth_key(ngx_http_sandbox_key_t *key, const char **message)
{
    switch (key->state) {

    case NGX_HTTP_SANDBOX_KEY_VALID:
        break;

    case NGX_HTTP_SANDBOX_KEY_INACTIVE:
        *message = "API key is inactive";
        return NGX_HTTP_UNAUTHORIZED;

    case NGX_HTTP_SANDBOX_KEY_USER_INACTIVE:
        *message = "User account is inactive";
        return NGX_HTTP_UNAUTHORIZED;

    default: /* NGX_HTTP_SANDBOX_KEY_UNKNOWN */
        *message = "Invalid API key";
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (key->expires > 0 && key->expires <= ngx_time()) {
        *message = "API key has expired";
        return NGX_HTTP_UNAUTHORIZED;
    }

    return NGX_OK;
}


/*
 * The admin API's key against the configured one, digests compared in
 * constant time: NGX_OK, or the status to answer with its error and
 * message.
 */

ngx_int_t
ngx_http_sandbox_auth_admin(ngx_http_request_t *r, ngx_str_t *key,
    const char **error, const char **message)
{
    u_char                         digest[NGX_HTTP_SANDBOX_SHA256_HEX_LEN];
    ngx_http_sandbox_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sandbox_module);

    if (!smcf->admin_key_set) {
        *error = "Internal server error";
        *message = "Admin authentication not configured";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_sandbox_sha256_hex(digest, key->data, key->len);

    if (CRYPTO_memcmp(digest, smcf->admin_key_hash, sizeof(digest)) != 0) {
        *error = "Forbidden";
        *message = "Invalid admin API key";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * OpenSSL 3 looks an algorithm up by name on every EVP_sha256() digest
 * (locks, string compares); on the hot path the fetched method and a
 * context are kept per process instead.
 */

static EVP_MD      *ngx_http_sandbox_sha256_md;
static EVP_MD_CTX  *ngx_http_sandbox_sha256_ctx;


ngx_int_t
ngx_http_sandbox_sha256(u_char *md, u_char *src, size_t len)
{
    unsigned int  mdlen;

    mdlen = 0;

    if (ngx_http_sandbox_sha256_md == NULL) {
        ngx_http_sandbox_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        ngx_http_sandbox_sha256_ctx = EVP_MD_CTX_new();
    }

    if (ngx_http_sandbox_sha256_md == NULL
        || ngx_http_sandbox_sha256_ctx == NULL
        || EVP_DigestInit_ex(ngx_http_sandbox_sha256_ctx,
                             ngx_http_sandbox_sha256_md, NULL) != 1
        || EVP_DigestUpdate(ngx_http_sandbox_sha256_ctx, src, len) != 1
        || EVP_DigestFinal_ex(ngx_http_sandbox_sha256_ctx, md, &mdlen) != 1
        || mdlen != NGX_HTTP_SANDBOX_SHA256_LEN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_sandbox_sha256_hex(u_char *dst, u_char *src, size_t len)
{
    u_char  md[EVP_MAX_MD_SIZE];

    if (ngx_http_sandbox_sha256(md, src, len) != NGX_OK) {
        /* cannot happen with a sane libcrypto; never match anything */
        ngx_memset(dst, 'x', NGX_HTTP_SANDBOX_SHA256_HEX_LEN);
        return;
    }

    ngx_hex_dump(dst, md, NGX_HTTP_SANDBOX_SHA256_LEN);
}


void
ngx_http_sandbox_sha256_cleanup(void)
{
    EVP_MD_CTX_free(ngx_http_sandbox_sha256_ctx);
    EVP_MD_free(ngx_http_sandbox_sha256_md);

    ngx_http_sandbox_sha256_ctx = NULL;
    ngx_http_sandbox_sha256_md = NULL;
}


char *
ngx_http_sandbox_admin_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sandbox_main_conf_t *smcf = conf;

    u_char           *p, *last;
    size_t            len;
    ssize_t           n;
    ngx_str_t        *value;
    ngx_file_t        file;
    ngx_file_info_t   fi;
    u_char            buf[1024];

    if (smcf->admin_key_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    smcf->admin_key_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &smcf->admin_key_file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = smcf->admin_key_file;
    file.log = cf->log;

    file.fd = ngx_open_file(file.name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &file.name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) != NGX_FILE_ERROR
        && (ngx_file_access(&fi) & 0004))
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "admin key file \"%V\" is world-readable",
                           &file.name);
    }

    n = ngx_read_file(&file, buf, sizeof(buf), 0);

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &file.name);
    }

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    /* the key is the first line, surrounding white space ignored */

    p = buf;
    last = buf + n;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    len = 0;
    while (p + len < last && p[len] != CR && p[len] != LF
           && p[len] != ' ' && p[len] != '\t')
    {
        len++;
    }

    if (len < 16 || (size_t) n == sizeof(buf)) {
        ngx_explicit_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "admin key in \"%V\" must be 16 to 1000 "
                           "characters", &file.name);
        return NGX_CONF_ERROR;
    }

    ngx_http_sandbox_sha256_hex(smcf->admin_key_hash, p, len);
    ngx_explicit_memzero(buf, sizeof(buf));

    smcf->admin_key_set = 1;

    return NGX_CONF_OK;
}
