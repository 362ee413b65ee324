
/*
 * Unit tests of the Authorization header and key shape parsers; TAP out.
 * Values are parsed from exactly sized heap copies, so that AddressSanitizer
 * sees any read past them.
 */


#include <stdlib.h>
#include <string.h>

#include "sandbox_token.h"
#include "tap.h"


static const char *
sbx_rc_name(int rc)
{
    switch (rc) {
    case SBX_TOKEN_OK:
        return "OK";
    case SBX_TOKEN_FORMAT:
        return "FORMAT";
    case SBX_TOKEN_EMPTY:
        return "EMPTY";
    default:
        return "?";
    }
}


/* v of len bytes (it may hold NULs) gives want and, if OK, token */

static void
check_n(const char *desc, const char *v, size_t len, int want,
    const char *token)
{
    int             rc;
    size_t          off, tlen;
    unsigned char  *p;

    p = sbx_exact(v, len);
    off = tlen = 12345;

    rc = sbx_token_parse(p, len, &off, &tlen);

    if (want != SBX_TOKEN_OK) {
        tap_ok(rc == want && off == 0 && tlen == 0, "%s: %s (got %s)",
               desc, sbx_rc_name(want), sbx_rc_name(rc));

    } else {
        tap_ok(rc == SBX_TOKEN_OK && off == 7 && tlen == strlen(token)
               && memcmp(p + off, token, tlen) == 0,
               "%s: OK \"%s\" (got %s)", desc, token, sbx_rc_name(rc));
    }

    free(p);
}


static void
check(const char *v, int want, const char *token)
{
    check_n(v, v, strlen(v), want, token);
}


static void
check_key(const char *k, int want, const char *desc)
{
    unsigned char  *p;

    p = sbx_exact(k, strlen(k));
    tap_ok(sbx_key_format_valid(p, strlen(k)) == want, "key %s", desc);
    free(p);
}


static void
check_hex(const char *h, int want, const char *desc)
{
    unsigned char  *p;

    p = sbx_exact(h, strlen(h));
    tap_ok(sbx_hex_sha256_valid(p, strlen(h)) == want, "sha256 %s", desc);
    free(p);
}


int
main(void)
{
    char  big[7 + SBX_TOKEN_MAX + 2], want[SBX_TOKEN_MAX + 1];

    check("Bearer sk_live_abc", SBX_TOKEN_OK, "sk_live_abc");
    check("Bearer sk_live_abc  ", SBX_TOKEN_OK, "sk_live_abc");
    check("Bearer sk_live_abc\t \t", SBX_TOKEN_OK, "sk_live_abc");
    check("Bearer x", SBX_TOKEN_OK, "x");
    check("Bearer \xc3\xa9", SBX_TOKEN_OK, "\xc3\xa9");

    /* nginx trims trailing blanks, so "Bearer " usually arrives bare */
    check("Bearer", SBX_TOKEN_EMPTY, NULL);
    check("Bearer ", SBX_TOKEN_EMPTY, NULL);
    check("Bearer    ", SBX_TOKEN_EMPTY, NULL);
    check("Bearer \t ", SBX_TOKEN_EMPTY, NULL);

    /* the prefix is case-sensitive and needs exactly one space */
    check("bearer sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("BEARER sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Basic YWxpY2U6eA==", SBX_TOKEN_FORMAT, NULL);
    check("Bearersk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Bearer\tsk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check(" Bearer sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Bearer  sk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Bearer \tsk_live_abc", SBX_TOKEN_FORMAT, NULL);
    check("Beare", SBX_TOKEN_FORMAT, NULL);
    check("", SBX_TOKEN_FORMAT, NULL);

    /* blanks and controls inside the token */
    check("Bearer a b", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a\tb", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a\x01", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a\x7f", SBX_TOKEN_FORMAT, NULL);
    check("Bearer a\rb", SBX_TOKEN_FORMAT, NULL);
    check_n("NUL inside", "Bearer a\0b", 10, SBX_TOKEN_FORMAT, NULL);
    check_n("NUL at the end", "Bearer ab\0", 10, SBX_TOKEN_FORMAT, NULL);
    check_n("Bearer then NUL", "Bearer\0abc", 10, SBX_TOKEN_FORMAT, NULL);

    /* the cap: SBX_TOKEN_MAX bytes pass, one more does not */
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'x', SBX_TOKEN_MAX + 1);
    big[sizeof(big) - 1] = '\0';
    check_n("token of max + 1", big, 7 + SBX_TOKEN_MAX + 1,
            SBX_TOKEN_FORMAT, NULL);

    memset(want, 'x', SBX_TOKEN_MAX);
    want[SBX_TOKEN_MAX] = '\0';
    check_n("token of max", big, 7 + SBX_TOKEN_MAX, SBX_TOKEN_OK, want);

    big[7 + SBX_TOKEN_MAX] = ' ';
    check_n("token of max, then a blank", big, 7 + SBX_TOKEN_MAX + 1,
            SBX_TOKEN_OK, want);

    check_key("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01", 1, "well-formed");
    check_key("sk_live_abcdefghijklmnopqrstuvwxyz012345", 1, "lowercase");
    check_key("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_0", 0, "of 31");
    check_key("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_012", 0, "of 33");
    check_key("sk_test_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01", 0, "sk_test_");
    check_key("SK_LIVE_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01", 0, "SK_LIVE_");
    check_key("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab+/01", 0, "base64 +/");
    check_key("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab.=01", 0, "dot, equals");
    check_key("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab \t01", 0, "blanks");
    check_key("sk_live_", 0, "prefix only");
    check_key("", 0, "empty");

    check_hex("e3b0c44298fc1c149afbf4c8996fb924"
              "27ae41e4649b934ca495991b7852b855",
              1, "lowercase hex");
    check_hex("E3B0C44298FC1C149AFBF4C8996FB924"
              "27AE41E4649B934CA495991B7852B855",
              0, "uppercase hex");
    check_hex("e3b0c44298fc1c149afbf4c8996fb924"
              "27ae41e4649b934ca495991b7852b85",
              0, "of 63");
    check_hex("e3b0c44298fc1c149afbf4c8996fb924"
              "27ae41e4649b934ca495991b7852b8555",
              0, "of 65");
    check_hex("g3b0c44298fc1c149afbf4c8996fb924"
              "27ae41e4649b934ca495991b7852b855",
              0, "with a g");
    check_hex("", 0, "empty");

    return tap_done();
}
