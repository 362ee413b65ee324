
/*
 * Unit tests of the Authorization header and key shape parsers; TAP out.
 */


#include <string.h>

#include "sandbox_token.h"
#include "tap.h"


static void
check(const char *v, int want, const char *token)
{
    int     rc;
    size_t  off, len;

    off = len = 0;
    rc = sbx_token_parse((const unsigned char *) v, strlen(v), &off, &len);

    if (want != SBX_TOKEN_OK) {
        tap_ok(rc == want, "\"%s\" refused (%d, got %d)", v, want, rc);
        return;
    }

    tap_ok(rc == SBX_TOKEN_OK && len == strlen(token)
           && memcmp(v + off, token, len) == 0,
           "\"%s\" gives \"%s\"", v, token);
}


int
main(void)
{
    char  big[600];

    check("Bearer sk_live_abc", SBX_TOKEN_OK, "sk_live_abc");
    check("Bearer sk_live_abc  ", SBX_TOKEN_OK, "sk_live_abc");
    check("Bearer  sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Bearer", SBX_TOKEN_EMPTY, NULL);
    check("Bearer ", SBX_TOKEN_EMPTY, NULL);
    check("Bearer    ", SBX_TOKEN_EMPTY, NULL);
    check("bearer sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("BEARER sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Basic YWxpY2U6eA==", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a b", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a\tb", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a\x01", SBX_TOKEN_FORMAT, NULL);
    check("", SBX_TOKEN_FORMAT, NULL);
    check("Bearersk_live_abc", SBX_TOKEN_FORMAT, NULL);

    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'x', sizeof(big) - 8);
    big[sizeof(big) - 1] = '\0';
    check(big, SBX_TOKEN_FORMAT, NULL);

    big[7 + SBX_TOKEN_MAX] = '\0';
    check(big, SBX_TOKEN_OK, big + 7);

    tap_ok(sbx_key_format_valid((unsigned char *)
               "sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01", 40),
           "well-formed key");
    tap_ok(!sbx_key_format_valid((unsigned char *)
               "sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_0", 39), "short key");
    tap_ok(!sbx_key_format_valid((unsigned char *)
               "sk_test_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01", 40), "prefix");
    tap_ok(!sbx_key_format_valid((unsigned char *)
               "sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab+/01", 40), "alphabet");

    tap_ok(sbx_hex_sha256_valid((unsigned char *)
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        64), "sha256 hex");
    tap_ok(!sbx_hex_sha256_valid((unsigned char *)
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        64), "uppercase hex refused");

    return tap_done();
}
