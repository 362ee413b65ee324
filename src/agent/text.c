/* Pure byte helpers of sandbox-agent: UTF-8 repair, base64. */

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "text.h"


/*
 * The sequence at s: its length if it is valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), 0 if it is
 * invalid, -1 if it is a valid but cut-off start.
 */
static int
utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char  c = s[0], lo = 0x80, hi = 0xbf;
    int            n, i;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) {
            lo = 0xa0;
        } else if (c == 0xed) {
            hi = 0x9f;
        }
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) {
            lo = 0x90;
        } else if (c == 0xf4) {
            hi = 0x8f;
        }
    } else {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((size_t) i >= len) {
            return -1;
        }
        if (s[i] < lo || s[i] > hi) {
            return 0;
        }
        lo = 0x80;
        hi = 0xbf;
    }
    return n;
}


size_t
text_utf8_complete(const unsigned char *s, size_t len)
{
    size_t  i = 0;
    int     n;

    while (i < len) {
        n = utf8_seq(s + i, len - i);
        if (n < 0) {
            return i;
        }
        i += n ? (size_t) n : 1;
    }
    return len;
}


int
text_utf8_valid(const unsigned char *s, size_t len)
{
    size_t  i = 0;
    int     n;

    while (i < len) {
        n = utf8_seq(s + i, len - i);
        if (n <= 0) {
            return 0;
        }
        i += n;
    }
    return 1;
}


char *
text_utf8_repair(const unsigned char *s, size_t len, size_t *out_len)
{
    char    *out, *p;
    size_t   i = 0;
    int      n;

    /* U+FFFD is 3 bytes for each 1 replaced */
    out = malloc(len * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    p = out;

    while (i < len) {
        n = utf8_seq(s + i, len - i);
        if (n > 0) {
            memcpy(p, s + i, n);
            p += n;
            i += n;
            continue;
        }
        memcpy(p, "\xef\xbf\xbd", 3);
        p += 3;
        i++;
    }

    *p = '\0';
    *out_len = p - out;
    return out;
}


char *
text_b64_encode(const unsigned char *s, size_t len)
{
    char  *out;

    if (len > (size_t) INT_MAX / 4 * 3 - 3) {
        return NULL;
    }
    out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL) {
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *) out, s, (int) len);
    return out;
}


unsigned char *
text_b64_decode(const char *s, size_t len, size_t *out_len)
{
    unsigned char  *out;
    size_t          pad = 0;
    int             n;

    /* EVP_DecodeBlock trims white space at both ends but wants the rest
     * in whole quads; the padding it decodes as zero bytes is cut here */
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r'
                   || s[len - 1] == ' ' || s[len - 1] == '\t'))
    {
        len--;
    }
    if (len % 4 != 0 || len > (size_t) INT_MAX) {
        return NULL;
    }
    if (len && s[len - 1] == '=') {
        pad = (len > 1 && s[len - 2] == '=') ? 2 : 1;
    }
    /* OpenSSL reads a '=' anywhere as a zero quantum: only padding may be */
    if (memchr(s, '=', len - pad) != NULL) {
        return NULL;
    }

    out = malloc(len / 4 * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    n = len ? EVP_DecodeBlock(out, (const unsigned char *) s, (int) len) : 0;
    if (n < 0 || (size_t) n < pad) {
        free(out);
        return NULL;
    }
    *out_len = n - pad;
    return out;
}
