
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The routing prefix of a request is decided on the normalized URI, but
 * normalizing can hide tricks: "/alice/sb/../bob/x" and "//alice/sb" look
 * innocent once nginx has resolved them, and "%2F" becomes a real "/".
 * So the raw path must show the same prefix, byte for byte, and may not
 * contain encoded separators, dots, NULs or controls anywhere.
 */


#include <string.h>

#include "sandbox_path.h"
#include "sandbox_hex.h"


static size_t sbx_segment_end(const unsigned char *uri, size_t len,
    size_t off);
static int sbx_path_raw_ok(const unsigned char *raw, size_t len);


int
sbx_dns_label_valid(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > SBX_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')) {
            continue;
        }

        if (p[i] == '-' && i != 0 && i != len - 1) {
            continue;
        }

        return 0;
    }

    return 1;
}


int
sbx_path_parse(const unsigned char *uri, size_t uri_len,
    const unsigned char *raw, size_t raw_len, sbx_path_t *out)
{
    int                   proxy;
    size_t                first, first_end, second, second_end;
    const unsigned char  *q;

    /* nothing is filled in before the verdict: a refusal leaves zeros */

    memset(out, 0, sizeof(sbx_path_t));

    if (uri_len < 2 || uri[0] != '/') {
        return SBX_PATH_MALFORMED;
    }

    first = 1;
    first_end = sbx_segment_end(uri, uri_len, first);

    /* an empty first segment, or no second one at all */

    if (first_end == first || first_end == uri_len) {
        return SBX_PATH_MALFORMED;
    }

    second = first_end + 1;
    second_end = sbx_segment_end(uri, uri_len, second);

    if (second_end == second) {
        return SBX_PATH_MALFORMED;
    }

    /* "proxy" is matched before the label rule: it is a reserved user */

    proxy = (first_end - first == 5 && memcmp(uri + first, "proxy", 5) == 0);

    if (!proxy && !sbx_dns_label_valid(uri + first, first_end - first)) {
        return SBX_PATH_BAD_NAME;
    }

    if (!sbx_dns_label_valid(uri + second, second_end - second)) {
        return SBX_PATH_BAD_NAME;
    }

    if (raw != NULL) {

        /* the query is not part of the path; callers may pass it along */

        q = memchr(raw, '?', raw_len);
        if (q != NULL) {
            raw_len = q - raw;
        }

        /*
         * The routing prefix, "/<first>/<second>", must open the raw path
         * verbatim and end there: otherwise it was reached through dot
         * segments, merged slashes or escapes that normalizing removed.
         */

        if (raw_len < second_end
            || memcmp(raw, uri, second_end) != 0
            || (raw_len > second_end && raw[second_end] != '/'))
        {
            return SBX_PATH_TRICK;
        }

        if (!sbx_path_raw_ok(raw, raw_len)) {
            return SBX_PATH_TRICK;
        }
    }

    if (proxy) {
        out->form = SBX_FORM_PROXY;

    } else {
        out->form = SBX_FORM_USER;
        out->user_off = first;
        out->user_len = first_end - first;
    }

    out->name_off = second;
    out->name_len = second_end - second;
    out->rest_off = second_end;
    out->rest_len = uri_len - second_end;

    return SBX_PATH_OK;
}


/* the end of the segment starting at off: the next '/' or the end */

static size_t
sbx_segment_end(const unsigned char *uri, size_t len, size_t off)
{
    const unsigned char  *slash;

    if (off >= len) {
        return len;
    }

    slash = memchr(uri + off, '/', len - off);

    return slash ? (size_t) (slash - uri) : len;
}


/*
 * No backslash, no control byte, and no percent-encoded '/', '\', '.',
 * NUL or control anywhere in the raw path; other escapes (%20 ...) pass.
 * A malformed escape ("%", "%2", "%zz") is refused too: nginx answers 400
 * to it anyway, and an escape we cannot read is one we cannot vouch for.
 */

static int
sbx_path_raw_ok(const unsigned char *raw, size_t len)
{
    int     hi, lo, c;
    size_t  i;

    for (i = 0; i < len; i++) {

        if (raw[i] == '\\' || raw[i] < 0x20 || raw[i] == 0x7f) {
            return 0;
        }

        if (raw[i] != '%') {
            continue;
        }

        if (len - i < 3) {
            return 0;
        }

        hi = sbx_hex(raw[i + 1]);
        lo = sbx_hex(raw[i + 2]);

        if (hi < 0 || lo < 0) {
            return 0;
        }

        c = hi * 16 + lo;

        if (c == '/' || c == '\\' || c == '.' || c < 0x20 || c == 0x7f) {
            return 0;
        }

        i += 2;
    }

    return 1;
}
