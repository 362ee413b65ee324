
/*
 * Unit tests of the limits' arithmetic (src/sandbox_limit.c); TAP out.
 */


#include <stdint.h>
#include <string.h>

#include "sandbox_limit.h"
#include "tap.h"


static uint64_t
rate(const char *s)
{
    return sbx_limit_rate_parse(s, strlen(s));
}


/* n requests at the same ms against a fresh bucket: how many pass */

static int
burst_passes(uint64_t r, uint64_t burst, int n, sbx_bucket_t *b,
    uint64_t now)
{
    int       i, passed;
    uint64_t  excess;

    passed = 0;

    for (i = 0; i < n; i++) {
        if (sbx_limit_bucket(b, now, r, burst, &excess, NULL) == 0) {
            b->level = excess;
            b->last = now;
            passed++;
        }
    }

    return passed;
}


static int
fields(const char *text, sbx_limit_fields_t *f, char *err)
{
    int           rc;
    json_t       *body;
    json_error_t  e;

    body = json_loads(text, JSON_ALLOW_NUL, &e);
    if (body == NULL) {
        return 99;
    }

    rc = sbx_limit_fields(body, f, err);

    /* the strings point into the body: keep a copy of the rate */
    if (rc == 0 && f->rate_op == SBX_LIMIT_SET) {
        static char  copy[64];

        snprintf(copy, sizeof(copy), "%s", f->rate);
        f->rate = copy;
    }

    json_decref(body);

    return rc;
}


int
main(void)
{
    int                 i, passed;
    char                err[SBX_LIMIT_ERR_MAX];
    uint64_t            excess, now;
    sbx_bucket_t        b;
    sbx_limit_info_t    info;
    sbx_limit_fields_t  f;

    /* rates */
    tap_ok(rate("10r/s") == 10000, "10r/s is 10000 per 1000 s");
    tap_ok(rate("600r/m") == 10000, "600r/m is 10r/s");
    tap_ok(rate("1r/m") == 16, "1r/m rounds down as limit_req does");
    tap_ok(rate("1000000r/s") == 1000000000ULL, "the largest rate");
    tap_ok(rate("1000001r/s") == 0, "past the largest: refused");
    tap_ok(rate("0r/s") == 0, "zero: refused");
    tap_ok(rate("-1r/s") == 0, "negative: refused");
    tap_ok(rate("10r/h") == 0, "unknown unit: refused");
    tap_ok(rate("10") == 0 && rate("r/s") == 0 && rate("") == 0,
           "no unit, no number: refused");
    tap_ok(rate("1.5r/s") == 0 && rate(" 10r/s") == 0
           && rate("10 r/s") == 0, "fractions and blanks: refused");
    tap_ok(rate("99999999999999999999r/s") == 0, "huge: refused");

    /* burst boundaries: burst N lets N + 1 through at once */
    memset(&b, 0, sizeof(b));
    now = 1000000;
    tap_ok(burst_passes(rate("10r/s"), 0, 5, &b, now) == 1,
           "burst 0: exactly one at once");

    memset(&b, 0, sizeof(b));
    tap_ok(burst_passes(rate("10r/s"), 5, 20, &b, now) == 6,
           "burst 5: exactly six at once");

    /* 10r/s drains one request per 100 ms */
    tap_ok(burst_passes(rate("10r/s"), 5, 5, &b, now + 99) == 0,
           "99 ms later: still full");
    tap_ok(burst_passes(rate("10r/s"), 5, 5, &b, now + 100) == 1,
           "100 ms later: exactly one more");
    tap_ok(burst_passes(rate("10r/s"), 5, 5, &b, now + 400) == 3,
           "300 ms more: three more");

    /* a long idle bucket is empty */
    tap_ok(burst_passes(rate("10r/s"), 5, 20, &b, now + 100000000ULL) == 6,
           "a day later: the whole burst again");

    /* a steady stream at the rate always passes */
    memset(&b, 0, sizeof(b));
    passed = 0;
    for (i = 0; i < 1000; i++) {
        passed += burst_passes(rate("10r/s"), 0, 1, &b, now + i * 100);
    }
    tap_ok(passed == 1000, "one every 100 ms at 10r/s: all pass");

    /* a clock that went back */
    b.level = 1000;
    b.last = now;
    tap_ok(sbx_limit_bucket(&b, now - 500, rate("10r/s"), 0, &excess, NULL)
           == 1, "clock back 500 ms: no time passed, refused");
    tap_ok(sbx_limit_bucket(&b, now - 120000, rate("10r/s"), 0, &excess,
                            NULL) == 1,
           "clock back 2 min: counts as 1 ms, still refused");

    /* what a refusal says */
    memset(&b, 0, sizeof(b));
    burst_passes(rate("1r/s"), 2, 3, &b, now);
    tap_ok(sbx_limit_bucket(&b, now, rate("1r/s"), 2, &excess, &info) == 1,
           "1r/s burst 2: the fourth is refused");
    tap_ok(info.limit == 3 && info.remaining == 0,
           "limit 3, remaining 0");
    tap_ok(info.retry_after == 1, "retry after 1 s");
    tap_ok(info.reset == 3, "empty after 3 s");

    memset(&b, 0, sizeof(b));
    burst_passes(rate("6r/m"), 0, 1, &b, now);
    sbx_limit_bucket(&b, now + 2000, rate("6r/m"), 0, &excess, &info);
    tap_ok(info.retry_after == 8, "6r/m, 2 s after: retry after 8 s");

    memset(&b, 0, sizeof(b));
    tap_ok(sbx_limit_bucket(&b, now, rate("10r/s"), 4, &excess, &info) == 0
           && info.remaining == 4 && info.limit == 5,
           "an accepted request: remaining 4 of 5");

    /* the API's fields */
    tap_ok(fields("{}", &f, err) == 0 && f.rate_op == SBX_LIMIT_KEEP
           && f.conc_op == SBX_LIMIT_KEEP, "absent: kept");
    tap_ok(fields("{\"rate_limit\": null, \"max_concurrent\": null}", &f,
                  err) == 0
           && f.rate_op == SBX_LIMIT_CLEAR && f.conc_op == SBX_LIMIT_CLEAR,
           "null: cleared");
    tap_ok(fields("{\"rate_limit\": \"600r/m\", \"max_concurrent\": 3}", &f,
                  err) == 0
           && f.rate_op == SBX_LIMIT_SET && strcmp(f.rate, "600r/m") == 0
           && f.conc_op == SBX_LIMIT_SET && f.conc == 3, "set");
    tap_ok(fields("{\"max_concurrent\": 0}", &f, err) == -1
           && strcmp(err, SBX_LIMIT_CONC_RULE) == 0, "zero: the rule");
    tap_ok(fields("{\"max_concurrent\": -2}", &f, err) == -1,
           "negative: refused");
    tap_ok(fields("{\"max_concurrent\": 1000001}", &f, err) == -1
           && fields("{\"max_concurrent\": 1e30}", &f, err) == -1,
           "huge: refused");
    tap_ok(fields("{\"max_concurrent\": \"3\"}", &f, err) == -1
           && fields("{\"max_concurrent\": 2.5}", &f, err) == -1
           && fields("{\"max_concurrent\": true}", &f, err) == -1,
           "not an integer: refused");
    tap_ok(fields("{\"rate_limit\": 10}", &f, err) == -1
           && strcmp(err, SBX_LIMIT_RATE_RULE) == 0, "a bare number: rule");
    tap_ok(fields("{\"rate_limit\": \"0r/s\"}", &f, err) == -1
           && fields("{\"rate_limit\": \"ten\"}", &f, err) == -1
           && fields("{\"rate_limit\": \"10r/s\\u0000x\"}", &f, err) == -1,
           "bad rates: refused");

    return tap_done();
}
