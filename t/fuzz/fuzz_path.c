
/*
 * libFuzzer target for the pure parsers.  The input is split at its first
 * NUL into a URI and a raw path (no NUL: the raw path is the URI itself).
 * Properties: slices lie within the input; accepted names are DNS labels;
 * a non-empty rest starts with '/'; the routing prefix is never reached
 * through a dot segment; the same input always gives the same answer.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_path.h"
#include "sandbox_token.h"


static void
check_path(const unsigned char *uri, size_t len, const unsigned char *raw,
    size_t raw_len)
{
    int         rc, rc2;
    sbx_path_t  p, p2;

    rc = sbx_path_parse(uri, len, raw, raw_len, &p);
    rc2 = sbx_path_parse(uri, len, raw, raw_len, &p2);

    if (rc != rc2 || memcmp(&p, &p2, sizeof(p)) != 0) {
        abort();
    }

    if (rc != SBX_PATH_OK) {
        return;
    }

    if (p.user_off + p.user_len > len || p.name_off + p.name_len > len
        || p.rest_off + p.rest_len != len)
    {
        abort();
    }

    if (!sbx_dns_label_valid(uri + p.name_off, p.name_len)
        || (p.form == SBX_FORM_USER
            && !sbx_dns_label_valid(uri + p.user_off, p.user_len))
        || (p.rest_len && uri[p.rest_off] != '/'))
    {
        abort();
    }

    /* with the raw check on, its prefix is the URI's prefix, verbatim */

    if (raw && (raw_len < p.rest_off || memcmp(raw, uri, p.rest_off) != 0)) {
        abort();
    }

    if (raw && (memmem(raw, p.rest_off, "/.", 2) != NULL
                || memmem(raw, p.rest_off, "//", 2) != NULL))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          off, tlen;
    const uint8_t  *nul;

    nul = memchr(data, '\0', size);

    if (nul) {
        check_path(data, nul - data, nul + 1, size - (nul - data) - 1);

    } else {
        check_path(data, size, data, size);
        check_path(data, size, NULL, 0);
    }

    if (sbx_token_parse(data, size, &off, &tlen) == SBX_TOKEN_OK) {
        if (off + tlen > size || tlen == 0 || tlen > SBX_TOKEN_MAX) {
            abort();
        }
    }

    return 0;
}
