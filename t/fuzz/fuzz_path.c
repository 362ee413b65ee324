
/*
 * libFuzzer target for the pure parsers (t/fuzz/run.sh builds and runs it).
 *
 * Each input is tried as:
 *
 *   - a URI alone (no raw checks), and as both the URI and the raw path;
 *   - "uri NUL raw", split at its first NUL, when it has one;
 *   - a raw path, normalized here the way nginx does it (query cut,
 *     escapes decoded, slashes merged, dot segments resolved) into the URI:
 *     the realistic case, where tricks have to survive normalization;
 *   - an Authorization header value.
 *
 * Properties: the same input always gives the same answer; a refusal
 * leaves the output zeroed; accepted slices lie within the URI, names are
 * DNS-1123 labels (or the user is absent for the proxy form), a non-empty
 * rest starts with '/'; the routing prefix never holds a "." or ".."
 * segment; with a raw path, the routing prefix is the raw path's own first
 * two segments, verbatim: normalizing cannot have changed where the
 * request goes.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_path.h"
#include "sandbox_token.h"


#define SBX_FUZZ_MAX  8192


static int
sbx_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/*
 * A model of nginx's ngx_http_parse_complex_uri(): returns the length of
 * the normalized URI in out, or -1 where nginx would answer 400.
 */

static long
sbx_normalize(const unsigned char *raw, size_t len, unsigned char *out)
{
    int             hi, lo, dot;
    size_t          i, n, o, s, e, seg[SBX_FUZZ_MAX / 2], nseg;
    unsigned char   dec[SBX_FUZZ_MAX];

    if (len == 0 || raw[0] != '/' || len > SBX_FUZZ_MAX) {
        return -1;
    }

    n = 0;

    for (i = 0; i < len && raw[i] != '?' && raw[i] != '#'; i++) {
        if (raw[i] != '%') {
            dec[n++] = raw[i];
            continue;
        }

        if (len - i < 3) {
            return -1;
        }

        hi = sbx_hexval(raw[i + 1]);
        lo = sbx_hexval(raw[i + 2]);

        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            return -1;
        }

        dec[n++] = (unsigned char) (hi * 16 + lo);
        i += 2;
    }

    /*
     * out holds "/" and the kept segments; seg[] where each one starts,
     * its separator included, for ".." to pop.  Like nginx, a path ending
     * in "/", "." or ".." keeps a trailing slash.
     */

    o = 1;
    out[0] = '/';
    nseg = 0;
    dot = 0;

    for (s = 0; s < n; s = e + 1) {
        for (e = s; e < n && dec[e] != '/'; e++) {
            /* void */
        }

        dot = 0;

        if (e == s) {
            continue;
        }

        if (e - s == 1 && dec[s] == '.') {
            dot = 1;
            continue;
        }

        if (e - s == 2 && dec[s] == '.' && dec[s + 1] == '.') {
            if (nseg == 0) {
                return -1;
            }

            o = seg[--nseg];
            dot = 1;
            continue;
        }

        seg[nseg++] = o;

        if (o > 1) {
            out[o++] = '/';
        }

        memcpy(out + o, dec + s, e - s);
        o += e - s;
    }

    if ((dot || dec[n - 1] == '/') && o > 1) {
        out[o++] = '/';
    }

    return (long) o;
}


static int
sbx_is_dot_segment(const unsigned char *p, size_t len)
{
    return (len == 1 && p[0] == '.')
           || (len == 2 && p[0] == '.' && p[1] == '.');
}


static void
check_path(const unsigned char *uri, size_t len, const unsigned char *raw,
    size_t raw_len)
{
    int          rc, rc2;
    size_t       end, qlen;
    sbx_path_t   p, p2, zero;

    rc = sbx_path_parse(uri, len, raw, raw_len, &p);
    rc2 = sbx_path_parse(uri, len, raw, raw_len, &p2);

    if (rc != rc2 || memcmp(&p, &p2, sizeof(p)) != 0) {
        abort();
    }

    if (rc != SBX_PATH_OK) {
        memset(&zero, 0, sizeof(zero));

        if (rc != SBX_PATH_MALFORMED && rc != SBX_PATH_BAD_NAME
            && rc != SBX_PATH_TRICK)
        {
            abort();
        }

        if (memcmp(&p, &zero, sizeof(p)) != 0) {
            abort();
        }

        return;
    }

    /* slices within the URI, in order, the rest running to its end */

    if (p.name_off > len || p.name_len > len - p.name_off
        || p.rest_off != p.name_off + p.name_len
        || p.rest_off + p.rest_len != len
        || (p.rest_len && uri[p.rest_off] != '/'))
    {
        abort();
    }

    if (p.form == SBX_FORM_PROXY) {
        if (p.user_len != 0 || p.name_off != 7
            || memcmp(uri, "/proxy/", 7) != 0)
        {
            abort();
        }

    } else if (p.form == SBX_FORM_USER) {
        if (p.user_off != 1 || p.name_off != p.user_off + p.user_len + 1
            || !sbx_dns_label_valid(uri + p.user_off, p.user_len)
            || uri[0] != '/' || uri[p.name_off - 1] != '/'
            || (p.user_len == 5 && memcmp(uri + 1, "proxy", 5) == 0))
        {
            abort();
        }

    } else {
        abort();
    }

    if (!sbx_dns_label_valid(uri + p.name_off, p.name_len)) {
        abort();
    }

    /* no "." or ".." segment anywhere in the routing prefix */

    if ((p.form == SBX_FORM_USER
         && sbx_is_dot_segment(uri + p.user_off, p.user_len))
        || sbx_is_dot_segment(uri + p.name_off, p.name_len))
    {
        abort();
    }

    if (raw == NULL) {
        return;
    }

    /* the raw path, query cut, opens with the prefix and has no tricks */

    for (qlen = 0; qlen < raw_len && raw[qlen] != '?'; qlen++) {
        /* void */
    }

    end = p.rest_off;

    if (qlen < end || memcmp(raw, uri, end) != 0
        || (qlen > end && raw[end] != '/'))
    {
        abort();
    }

    for (end = 0; end < qlen; end++) {
        if (raw[end] == '\\' || raw[end] < 0x20 || raw[end] == 0x7f) {
            abort();
        }

        if (raw[end] == '%'
            && (qlen - end < 3
                || sbx_hexval(raw[end + 1]) < 0
                || sbx_hexval(raw[end + 2]) < 0
                || sbx_hexval(raw[end + 1]) < 2
                || (raw[end + 1] == '2' && (raw[end + 2] == 'e'
                                            || raw[end + 2] == 'E'
                                            || raw[end + 2] == 'f'
                                            || raw[end + 2] == 'F'))
                || (raw[end + 1] == '5' && (raw[end + 2] == 'c'
                                            || raw[end + 2] == 'C'))
                || (raw[end + 1] == '7' && (raw[end + 2] == 'f'
                                            || raw[end + 2] == 'F'))))
        {
            abort();
        }
    }
}


static void
check_token(const unsigned char *v, size_t len)
{
    int     rc;
    size_t  off, tlen, i;

    rc = sbx_token_parse(v, len, &off, &tlen);

    if (rc == SBX_TOKEN_OK) {
        if (off != 7 || tlen == 0 || tlen > SBX_TOKEN_MAX
            || off + tlen > len || memcmp(v, "Bearer ", 7) != 0)
        {
            abort();
        }

        for (i = off; i < off + tlen; i++) {
            if (v[i] <= 0x20 || v[i] == 0x7f) {
                abort();
            }
        }

        for (i = off + tlen; i < len; i++) {
            if (v[i] != ' ' && v[i] != '\t') {
                abort();
            }
        }

        return;
    }

    if ((rc != SBX_TOKEN_FORMAT && rc != SBX_TOKEN_EMPTY)
        || off != 0 || tlen != 0)
    {
        abort();
    }

    if (rc == SBX_TOKEN_EMPTY) {
        if (len < 6 || memcmp(v, "Bearer", 6) != 0) {
            abort();
        }

        for (i = 6; i < len; i++) {
            if (v[i] != ' ' && v[i] != '\t') {
                abort();
            }
        }
    }

    if (sbx_key_format_valid(v, len) && len != 40) {
        abort();
    }

    if (sbx_hex_sha256_valid(v, len) && len != 64) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long            n;
    const uint8_t  *nul;
    static uint8_t  uri[SBX_FUZZ_MAX + 2];

    check_path(data, size, NULL, 0);
    check_path(data, size, data, size);

    nul = memchr(data, '\0', size);

    if (nul) {
        check_path(data, nul - data, nul + 1, size - (nul - data) - 1);
    }

    n = sbx_normalize(data, size, uri);

    if (n >= 0) {
        check_path(uri, (size_t) n, data, size);
    }

    check_token(data, size);

    return 0;
}
