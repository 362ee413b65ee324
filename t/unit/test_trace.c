
/*
 * Unit tests of the traceparent parser and writer; TAP out.  Values are
 * parsed from exactly sized heap copies, so that AddressSanitizer sees any
 * read past them.
 */


#include <stdlib.h>
#include <string.h>

#include "sandbox_trace.h"
#include "tap.h"


#define TID  "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID  "00f067aa0ba902b7"


static void
check(const char *desc, const char *v, int want)
{
    int                   rc;
    unsigned char        *p;
    const unsigned char  *tid, *flags;

    p = sbx_exact(v, strlen(v));
    rc = sbx_traceparent_parse(p, strlen(v), &tid, &flags);

    tap_ok(rc == want
           && (rc != 0 || (memcmp(tid, v + 3, 32) == 0
                            && memcmp(flags, v + 53, 2) == 0)),
           "%s: %s", desc, want == 0 ? "valid" : "invalid");

    free(p);
}


int
main(void)
{
    unsigned char         out[SBX_TRACEPARENT_LEN + 1];
    const unsigned char  *tid, *flags;

    check("the specification's example", "00-" TID "-" SID "-01", 0);
    check("not sampled", "00-" TID "-" SID "-00", 0);
    check("a later version with more", "01-" TID "-" SID "-01-what", 0);
    check("a later version, exact", "cc-" TID "-" SID "-01", 0);
    check("version 00 with more", "00-" TID "-" SID "-01-what", -1);
    check("a later version, more without a dash",
          "01-" TID "-" SID "-01what", -1);
    check("version ff", "ff-" TID "-" SID "-01", -1);
    check("upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", -1);
    check("zero trace id", "00-00000000000000000000000000000000-" SID "-01",
          -1);
    check("zero parent id", "00-" TID "-0000000000000000-01", -1);
    check("short trace id", "00-4bf92f3577b34da6a3ce929d0e0e473-" SID "-01",
          -1);
    check("a separator missing", "00" TID "-" SID "-01x", -1);
    check("not hex", "00-" TID "-00f067aa0ba902bg-01", -1);
    check("bad flags", "00-" TID "-" SID "-0x", -1);
    check("empty", "", -1);
    check("too short", "00-" TID "-" SID "-1", -1);
    check("blanks", " 00-" TID "-" SID "-01", -1);

    out[SBX_TRACEPARENT_LEN] = '\0';
    sbx_traceparent_write(out, (const unsigned char *) TID, 0xf067aa0ba902b7,
                          (const unsigned char *) "01");
    tap_ok(strcmp((char *) out, "00-" TID "-" SID "-01") == 0,
           "written: %s", out);
    tap_ok(sbx_traceparent_parse(out, SBX_TRACEPARENT_LEN, &tid, &flags) == 0,
           "what is written parses");

    sbx_traceparent_write(out, (const unsigned char *) TID, 0,
                          (const unsigned char *) "00");
    tap_ok(sbx_traceparent_parse(out, SBX_TRACEPARENT_LEN, &tid, &flags) == 0,
           "a zero span is never written");

    return tap_done();
}
