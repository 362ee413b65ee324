
/*
 * Unit tests of sbx_path_parse, driven by t/unit/path_cases.txt; TAP out.
 *
 *   test_path path_cases.txt
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_path.h"
#include "tap.h"


static const char *
sbx_rc_name(int rc)
{
    switch (rc) {
    case SBX_PATH_OK:        return "OK";
    case SBX_PATH_MALFORMED: return "MALFORMED";
    case SBX_PATH_BAD_NAME:  return "BAD_NAME";
    case SBX_PATH_TRICK:     return "TRICK";
    default:                 return "?";
    }
}


static void
check_case(char *uri, char *raw, char *expect)
{
    int          rc;
    char         want[16], user[128], name[128], rest[1024], got[1400];
    sbx_path_t   p;
    const char  *rawp;

    rawp = strcmp(raw, "-") == 0 ? NULL : raw;

    rc = sbx_path_parse((unsigned char *) uri, strlen(uri),
                        (unsigned char *) rawp, rawp ? strlen(rawp) : 0, &p);

    if (sscanf(expect, "%15s", want) != 1) {
        tap_ok(0, "bad case line for \"%s\"", uri);
        return;
    }

    if (rc != SBX_PATH_OK || strcmp(want, "OK") != 0) {
        tap_ok(strcmp(want, sbx_rc_name(rc)) == 0, "%s | %s -> %s (got %s)",
               uri, raw, want, sbx_rc_name(rc));
        return;
    }

    /* every slice lies within the URI; the rest, if any, starts with / */

    tap_ok(p.user_off + p.user_len <= strlen(uri)
           && p.name_off + p.name_len <= strlen(uri)
           && p.rest_off + p.rest_len == strlen(uri)
           && (p.rest_len == 0 || uri[p.rest_off] == '/'),
           "%s: slices within the URI", uri);

    snprintf(got, sizeof(got), "OK %.*s %.*s %.*s",
             (int) p.user_len, uri + p.user_off,
             (int) p.name_len, uri + p.name_off,
             (int) p.rest_len, uri + p.rest_off);

    (void) user;
    (void) name;
    (void) rest;

    tap_ok(strcmp(got, expect) == 0, "%s | %s -> \"%s\" (got \"%s\")",
           uri, raw, expect, got);

    tap_ok((p.user_len == 0) == (p.form == SBX_FORM_PROXY),
           "%s: form matches", uri);
}


int
main(int argc, char **argv)
{
    FILE  *f;
    char   line[4096], *uri, *raw, *expect, *nl;

    if (argc != 2 || (f = fopen(argv[1], "r")) == NULL) {
        fprintf(stderr, "usage: test_path path_cases.txt\n");
        return 2;
    }

    while (fgets(line, sizeof(line), f)) {
        nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
        }

        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }

        uri = line;
        raw = strchr(uri, '\t');
        if (raw == NULL) {
            tap_ok(0, "malformed case line \"%s\"", line);
            continue;
        }

        *raw++ = '\0';
        expect = strchr(raw, '\t');
        if (expect == NULL) {
            tap_ok(0, "malformed case line \"%s\"", line);
            continue;
        }

        *expect++ = '\0';
        check_case(uri, raw, expect);
    }

    fclose(f);

    /* labels: the DNS-1123 rule itself */

    tap_ok(sbx_dns_label_valid((unsigned char *) "a", 1), "label a");
    tap_ok(sbx_dns_label_valid((unsigned char *) "a-b", 3), "label a-b");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "a-", 2), "label a-");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "-a", 2), "label -a");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "", 0), "label empty");
    tap_ok(!sbx_dns_label_valid((unsigned char *) "a\0b", 3), "label NUL");

    /* a NUL inside the URI never passes as part of a name */

    {
        sbx_path_t  p;

        tap_ok(sbx_path_parse((unsigned char *) "/proxy/s\0b/x", 12, NULL, 0,
                              &p) == SBX_PATH_BAD_NAME, "NUL in a name");
    }

    return tap_done();
}
