
/*
 * Unit tests of sbx_path_parse, driven by t/unit/path_cases.txt; TAP out.
 *
 *   test_path path_cases.txt
 *
 * Each case is parsed from exactly sized heap copies of the URI and the
 * raw path (no terminating NUL), so AddressSanitizer sees any over-read.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_path.h"
#include "tap.h"


#define SBX_LINE_MAX  8192


static const char *
sbx_rc_name(int rc)
{
    switch (rc) {
    case SBX_PATH_OK:
        return "OK";
    case SBX_PATH_MALFORMED:
        return "MALFORMED";
    case SBX_PATH_BAD_NAME:
        return "BAD_NAME";
    case SBX_PATH_TRICK:
        return "TRICK";
    default:
        return "?";
    }
}


/*
 * Undoes the escapes of a case field in place: "\\" a backslash, "\t" a
 * tab, "\xHH" any byte (NUL included).  Returns the decoded length.
 */

static size_t
sbx_unescape(char *s)
{
    char          *r, *w;
    unsigned int   b;

    for (r = w = s; *r; r++) {
        if (r[0] == '\\' && r[1] == '\\') {
            *w++ = '\\';
            r++;

        } else if (r[0] == '\\' && r[1] == 't') {
            *w++ = '\t';
            r++;

        } else if (r[0] == '\\' && r[1] == 'x' && r[2] && r[3]
                   && sscanf(r + 2, "%2x", &b) == 1)
        {
            *w++ = (char) b;
            r += 3;

        } else {
            *w++ = *r;
        }
    }

    return w - s;
}


static int
sbx_slice_is(const unsigned char *uri, size_t off, size_t len,
    const char *want, size_t want_len)
{
    return len == want_len && memcmp(uri + off, want, len) == 0;
}


static void
check_case(int lineno, const char *uri_s, const char *raw_s,
    const char *expect)
{
    int             rc, ok;
    char            buf[SBX_LINE_MAX], *user, *name, *rest, *sp;
    size_t          uri_len, raw_len, user_len, name_len, rest_len;
    sbx_path_t      p;
    unsigned char  *uri, *raw;

    /* the messages quote the fields as written, escapes and all */

    snprintf(buf, sizeof(buf), "%s", uri_s);
    uri_len = sbx_unescape(buf);
    uri = sbx_exact(buf, uri_len);

    raw = NULL;
    raw_len = 0;

    if (strcmp(raw_s, "-") != 0) {
        snprintf(buf, sizeof(buf), "%s", raw_s);
        raw_len = sbx_unescape(buf);
        raw = sbx_exact(buf, raw_len);
    }

    rc = sbx_path_parse(uri, uri_len, raw, raw_len, &p);

    if (strncmp(expect, "OK ", 3) != 0) {
        tap_ok(strcmp(expect, sbx_rc_name(rc)) == 0,
               "line %d: %s | %s -> %s (got %s)",
               lineno, uri_s, raw_s, expect, sbx_rc_name(rc));

        tap_ok(rc == SBX_PATH_OK
               || (p.form == 0 && p.user_len == 0 && p.name_len == 0
                   && p.rest_len == 0 && p.rest_off == 0),
               "line %d: a refusal leaves the output zeroed", lineno);
        goto done;
    }

    if (rc != SBX_PATH_OK) {
        tap_ok(0, "line %d: %s | %s -> %s (got %s)",
               lineno, uri_s, raw_s, expect, sbx_rc_name(rc));
        goto done;
    }

    /* "OK <user or -> <name> <rest or ->": the rest may hold spaces */

    snprintf(buf, sizeof(buf), "%s", expect + 3);
    user = buf;
    sp = strchr(user, ' ');
    name = sp ? sp + 1 : NULL;
    sp = name ? strchr(name, ' ') : NULL;
    rest = sp ? sp + 1 : NULL;

    if (rest == NULL) {
        tap_ok(0, "line %d: bad expectation \"%s\"", lineno, expect);
        goto done;
    }

    name[-1] = '\0';
    rest[-1] = '\0';

    user_len = strcmp(user, "-") == 0 ? 0 : sbx_unescape(user);
    name_len = sbx_unescape(name);
    rest_len = strcmp(rest, "-") == 0 ? 0 : sbx_unescape(rest);

    tap_ok(p.user_off + p.user_len <= uri_len
           && p.name_off + p.name_len <= uri_len
           && p.rest_off + p.rest_len == uri_len
           && (p.rest_len == 0 || uri[p.rest_off] == '/'),
           "line %d: %s: slices within the URI", lineno, uri_s);

    ok = sbx_slice_is(uri, p.user_off, p.user_len, user, user_len)
         && sbx_slice_is(uri, p.name_off, p.name_len, name, name_len)
         && sbx_slice_is(uri, p.rest_off, p.rest_len, rest, rest_len);

    tap_ok(ok, "line %d: %s | %s -> %s", lineno, uri_s, raw_s, expect);

    if (!ok) {
        printf("# got OK %.*s %.*s %.*s\n",
               (int) p.user_len, uri + p.user_off,
               (int) p.name_len, uri + p.name_off,
               (int) p.rest_len, uri + p.rest_off);
    }

    tap_ok(p.form == (user_len == 0 ? SBX_FORM_PROXY : SBX_FORM_USER),
           "line %d: %s: form %d", lineno, uri_s, (int) p.form);

done:

    free(uri);
    free(raw);
}


static void
check_labels(void)
{
    char  buf[80];

    tap_ok(sbx_dns_label_valid((unsigned char *) "a", 1), "label a");
    tap_ok(sbx_dns_label_valid((unsigned char *) "0", 1), "label 0");
    tap_ok(sbx_dns_label_valid((unsigned char *) "a-b", 3), "label a-b");
    tap_ok(sbx_dns_label_valid((unsigned char *) "a--b", 4), "label a--b");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "a-", 2), "label a-");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "-a", 2), "label -a");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "-", 1), "label -");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "", 0), "label empty");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "a\0b", 3), "label NUL");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "aB", 2), "label aB");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "a_b", 3), "label a_b");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "a.b", 3), "label a.b");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "\xc3\xa9", 2),
           "label non-ASCII");

    memset(buf, 'a', sizeof(buf));
    tap_ok(sbx_dns_label_valid((unsigned char *) buf, 63), "label of 63");
    tap_ok(!sbx_dns_label_valid((unsigned char *) buf, 64), "label of 64");
}


/* the lengths given are obeyed: the URI need not end where its buffer does */

static void
check_lengths(void)
{
    int          rc;
    sbx_path_t   p;
    const char  *s;

    s = "/alice/sbx/more";

    rc = sbx_path_parse((unsigned char *) s, 9, (unsigned char *) s, 9, &p);
    tap_ok(rc == SBX_PATH_OK && p.name_len == 2 && p.rest_off == 9
           && p.rest_len == 0, "a URI shorter than its buffer");

    rc = sbx_path_parse((unsigned char *) s, 9, (unsigned char *) s, 10, &p);
    tap_ok(rc == SBX_PATH_TRICK, "a raw path longer than the prefix");

    rc = sbx_path_parse((unsigned char *) s, 9, (unsigned char *) s, 8, &p);
    tap_ok(rc == SBX_PATH_TRICK, "a raw path shorter than the prefix");

    rc = sbx_path_parse((unsigned char *) "", 0, NULL, 0, &p);
    tap_ok(rc == SBX_PATH_MALFORMED, "an empty URI");

    rc = sbx_path_parse((unsigned char *) "/proxy/s\0b/x", 12, NULL, 0, &p);
    tap_ok(rc == SBX_PATH_BAD_NAME, "NUL in a name");
}


int
main(int argc, char **argv)
{
    int    lineno, cases;
    char   line[SBX_LINE_MAX], *uri, *raw, *expect, *nl;
    FILE  *f;

    if (argc != 2 || (f = fopen(argv[1], "r")) == NULL) {
        fprintf(stderr, "usage: test_path path_cases.txt\n");
        return 2;
    }

    lineno = 0;
    cases = 0;

    while (fgets(line, sizeof(line), f)) {
        lineno++;

        nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
        }

        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }

        uri = line;
        raw = strchr(uri, '\t');
        expect = raw ? strchr(raw + 1, '\t') : NULL;

        if (expect == NULL) {
            tap_ok(0, "line %d: not uri<TAB>raw<TAB>expect", lineno);
            continue;
        }

        *raw++ = '\0';
        *expect++ = '\0';

        check_case(lineno, uri, raw, expect);
        cases++;
    }

    fclose(f);

    tap_ok(cases >= 50, "%d cases read", cases);

    check_labels();
    check_lengths();

    return tap_done();
}
