
/*
 * libFuzzer target for the management API's JSON bodies
 * (src/sandbox_body.c; t/fuzz/run.sh builds and runs it).
 *
 * Each input is a request body (the seeds are plain JSON), and a date
 * for the ISO-8601 parser.  Every body is loaded (sbx_body_load) and, when
 * it is an object, given to every validator: user create, user update,
 * key create, sandbox create with and without authentication.  The key
 * validator's clock is picked by the input's length (now: 0, the present
 * or the last second of 9999), which a blank more or less changes; every
 * string of the body is a date too.
 *
 * Properties: the load and each validator accept exactly what an oracle
 * written from the API's rules (docs/api.md, sandbox_body.h) accepts; a
 * refusal has a message (NUL-terminated, within SBX_BODY_ERR_MAX); an
 * accepted string is the body's own (or "" / "default" when absent), at
 * most SBX_BODY_STRING_MAX bytes without a NUL inside; names are DNS-1123
 * labels, "proxy" refused; an ISO-8601 date reads back as the same date
 * and time (a day the month does not have is refused).
 */


#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE         /* timegm() */
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandbox_body.h"
#include "sandbox_path.h"


#define FIELD_ABSENT   0        /* absent, null or "" */
#define FIELD_STRING   1        /* a string the API takes */
#define FIELD_BAD     -1        /* another type, too long, a NUL inside */


static void
check_err(int rc, const char *err)
{
    if (rc != 0 && rc != -1) {
        abort();
    }

    if (rc == -1
        && (err[0] == '\0' || memchr(err, '\0', SBX_BODY_ERR_MAX) == NULL))
    {
        abort();
    }
}


static int
field(const json_t *body, const char *name)
{
    json_t  *v;

    v = json_object_get(body, name);

    if (v == NULL || json_is_null(v)
        || (json_is_string(v) && json_string_length(v) == 0))
    {
        return FIELD_ABSENT;
    }

    if (!json_is_string(v) || json_string_length(v) > SBX_BODY_STRING_MAX
        || memchr(json_string_value(v), '\0', json_string_length(v)))
    {
        return FIELD_BAD;
    }

    return FIELD_STRING;
}


static int
label(const json_t *body, const char *name)
{
    json_t  *v;

    v = json_object_get(body, name);

    return sbx_dns_label_valid((const unsigned char *) json_string_value(v),
                               json_string_length(v));
}


static int
is_proxy(const json_t *body, const char *name)
{
    return strcmp(json_string_value(json_object_get(body, name)), "proxy")
           == 0;
}


/* a decoded string: the body's own field, or dflt when it is absent */

static void
check_str(const sbx_body_str_t *s, const json_t *body, const char *name,
    const char *dflt)
{
    json_t  *v;

    if (s->data == NULL || strlen(s->data) != s->len
        || s->len > SBX_BODY_STRING_MAX)
    {
        abort();
    }

    if (field(body, name) == FIELD_ABSENT) {
        if (strcmp(s->data, dflt) != 0) {
            abort();
        }

        return;
    }

    v = json_object_get(body, name);

    if (s->data != json_string_value(v) || s->len != json_string_length(v)) {
        abort();
    }
}


static void
check_user_create(const json_t *body)
{
    int                want;
    char               err[SBX_BODY_ERR_MAX];
    sbx_user_create_t  uc;

    want = field(body, "username") == FIELD_STRING
           && label(body, "username") && !is_proxy(body, "username")
           && field(body, "email") != FIELD_BAD;

    err[0] = '\0';

    if (sbx_body_user_create(body, &uc, err) != (want ? 0 : -1)) {
        abort();
    }

    check_err(want ? 0 : -1, err);

    if (want) {
        check_str(&uc.username, body, "username", "");
        check_str(&uc.email, body, "email", "");
    }
}


static void
check_user_update(const json_t *body)
{
    int                want;
    char               err[SBX_BODY_ERR_MAX];
    json_t            *email, *active;
    sbx_user_update_t  uu;

    email = json_object_get(body, "email");
    active = json_object_get(body, "is_active");

    want = (email == NULL || json_is_null(email)
            || field(body, "email") == FIELD_STRING)
           && (active == NULL || json_is_boolean(active));

    err[0] = '\0';

    if (sbx_body_user_update(body, &uu, err) != (want ? 0 : -1)) {
        abort();
    }

    check_err(want ? 0 : -1, err);

    if (!want) {
        return;
    }

    if (email == NULL) {
        if (uu.email_op != SBX_EMAIL_KEEP) {
            abort();
        }

    } else if (json_is_null(email)) {
        if (uu.email_op != SBX_EMAIL_CLEAR) {
            abort();
        }

    } else if (uu.email_op != SBX_EMAIL_SET
               || uu.email.data != json_string_value(email)
               || uu.email.len != json_string_length(email))
    {
        abort();
    }

    if (uu.active != (active == NULL ? -1 : json_is_true(active) ? 1 : 0)) {
        abort();
    }
}


static void
check_key_create(const json_t *body, time_t now)
{
    int               rc, want;
    char              err[SBX_BODY_ERR_MAX];
    time_t            t;
    json_t           *exp;
    sbx_key_create_t  kc;

    exp = json_object_get(body, "expires_at");

    err[0] = '\0';
    rc = sbx_body_key_create(body, now, &kc, err);
    check_err(rc, err);

    if (field(body, "name") == FIELD_BAD) {
        if (rc != -1) {
            abort();
        }

        return;
    }

    if (exp == NULL || json_is_null(exp)) {
        if (rc != 0 || kc.expires != 0 || kc.expires_text.len != 0
            || kc.expires_text.data == NULL)
        {
            abort();
        }

        check_str(&kc.name, body, "name", "");
        return;
    }

    if (!json_is_string(exp)) {
        if (rc != -1) {
            abort();
        }

        return;
    }

    t = sbx_iso8601_parse((const unsigned char *) json_string_value(exp),
                          json_string_length(exp));

    want = (t == -1 || t > now);

    if (rc != (want ? 0 : -1)) {
        abort();
    }

    if (!want) {
        if (strcmp(err, SBX_BODY_EXPIRES_FUTURE) != 0) {
            abort();
        }

        return;
    }

    if (kc.expires != (t == -1 ? SBX_BODY_DATE_OTHER : t)
        || kc.expires_text.data != json_string_value(exp)
        || kc.expires_text.len != json_string_length(exp))
    {
        abort();
    }

    check_str(&kc.name, body, "name", "");
}


static void
check_sandbox_create(const json_t *body, int anon)
{
    int                   want;
    json_t               *idle;
    char                  err[SBX_BODY_ERR_MAX];
    sbx_sandbox_create_t  sc;

    want = field(body, "name") == FIELD_STRING && label(body, "name")
           && !is_proxy(body, "name") && field(body, "image") != FIELD_BAD;

    if (anon) {
        want = want
               && (field(body, "username") == FIELD_ABSENT
                   || (field(body, "username") == FIELD_STRING
                       && label(body, "username")
                       && !is_proxy(body, "username")))
               && (field(body, "namespace") == FIELD_ABSENT
                   || (field(body, "namespace") == FIELD_STRING
                       && label(body, "namespace")));
    }

    /* idle_timeout: absent, null, or whole seconds up to a year */

    idle = json_object_get(body, "idle_timeout");
    want = want
           && (idle == NULL || json_is_null(idle)
               || (json_is_integer(idle) && json_integer_value(idle) >= 0
                   && json_integer_value(idle) <= SBX_BODY_IDLE_MAX));

    err[0] = '\0';

    if (sbx_body_sandbox_create(body, anon, &sc, err) != (want ? 0 : -1)) {
        abort();
    }

    check_err(want ? 0 : -1, err);

    if (!want) {
        return;
    }

    check_str(&sc.name, body, "name", "");
    check_str(&sc.image, body, "image", "");

    if (sc.idle_timeout != (json_is_integer(idle)
                            ? (long) json_integer_value(idle) : -1))
    {
        abort();
    }

    if (anon) {
        check_str(&sc.username, body, "username", "default");
        check_str(&sc.ns, body, "namespace", "default");

    } else if (sc.username.len || sc.ns.len) {
        abort();
    }
}


static int
days_in_month(long y, long m)
{
    static const int  days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                 31 };

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return 29;
    }

    return days[m - 1];
}


static long
num(const unsigned char *p, size_t n)
{
    long  v;

    for (v = 0; n--; p++) {
        v = v * 10 + (*p - '0');
    }

    return v;
}


/* an accepted date is read back as written */

static void
check_iso(const unsigned char *p, size_t len)
{
    time_t     t;
    struct tm  tm;

    t = sbx_iso8601_parse(p, len);

    if (t != sbx_iso8601_parse(p, len)) {
        abort();
    }

    if (t == -1) {
        return;
    }

    if (t < 0 || (len != 10 && len < 19) || gmtime_r(&t, &tm) == NULL) {
        abort();
    }

    if (tm.tm_year + 1900 != num(p, 4) || tm.tm_mon + 1 != num(p + 5, 2)
        || tm.tm_mday != num(p + 8, 2)
        || num(p + 8, 2) > days_in_month(num(p, 4), num(p + 5, 2)))
    {
        abort();
    }

    if (len == 10) {
        if (tm.tm_hour || tm.tm_min || tm.tm_sec) {
            abort();
        }

        return;
    }

    if (tm.tm_hour != num(p + 11, 2) || tm.tm_min != num(p + 14, 2)
        || tm.tm_sec != num(p + 17, 2))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           err[SBX_BODY_ERR_MAX];
    time_t         now;
    json_t        *body, *v;
    const char    *k;
    json_error_t   jerr;

    static const time_t  clocks[] = { 0, 1764288000, 253402300799 };

    now = clocks[size % 3];

    check_iso(data, size);

    err[0] = '\0';
    body = sbx_body_load((const char *) data, size, err);

    /* an object without duplicate keys, and nothing else, is a body */

    v = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, &jerr);

    if ((body != NULL) != (v != NULL && json_is_object(v))) {
        abort();
    }

    json_decref(v);

    check_err(body ? 0 : -1, err);

    if (body == NULL) {
        return 0;
    }

    check_user_create(body);
    check_user_update(body);
    check_key_create(body, now);
    check_sandbox_create(body, 0);
    check_sandbox_create(body, 1);

    /* every string in the body, as a date */

    json_object_foreach(body, k, v) {
        if (json_is_string(v)) {
            check_iso((const unsigned char *) json_string_value(v),
                      json_string_length(v));
        }
    }

    json_decref(body);

    return 0;
}
