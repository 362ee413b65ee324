
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The checks the management API makes of a JSON body before any Redis
 * script runs: field types, lengths, names (DNS-1123 labels, as
 * Kubernetes wants them) and dates.  The messages are the 400 answers'.
 */


#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE         /* timegm() */
#endif

#include <stdio.h>
#include <string.h>

#include "sandbox_body.h"
#include "sandbox_path.h"


json_t *
sbx_body_load(const char *data, size_t len, char *err)
{
    json_t        *j;
    json_error_t   jerr;

    j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);

    if (j == NULL) {
        snprintf(err, SBX_BODY_ERR_MAX, "Invalid JSON: %s", jerr.text);
        return NULL;
    }

    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, SBX_BODY_ERR_MAX, "Request body must be a JSON object");
        return NULL;
    }

    return j;
}


static int sbx_body_idle(const json_t *body, long *out, char *err);


static json_t *
sbx_body_get(const json_t *body, const char *field)
{
    return body ? json_object_get(body, field) : NULL;
}


/*
 * A string field: absent, null or "" gives "" (or an error when required);
 * another type, more than SBX_BODY_STRING_MAX bytes or a NUL inside is an
 * error.
 */

static int
sbx_body_string(const json_t *body, const char *field, int required,
    sbx_body_str_t *value, char *err)
{
    json_t  *v;

    v = sbx_body_get(body, field);

    if (v == NULL || json_is_null(v)
        || (json_is_string(v) && json_string_length(v) == 0))
    {
        if (required) {
            snprintf(err, SBX_BODY_ERR_MAX, "%s is required", field);
            return -1;
        }

        value->data = "";
        value->len = 0;
        return 0;
    }

    if (!json_is_string(v) || json_string_length(v) > SBX_BODY_STRING_MAX
        || strlen(json_string_value(v)) != json_string_length(v))
    {
        snprintf(err, SBX_BODY_ERR_MAX,
                 "%s must be a string of at most 1024 bytes", field);
        return -1;
    }

    value->data = json_string_value(v);
    value->len = json_string_length(v);

    return 0;
}


/* a user or sandbox name: a DNS-1123 label, "proxy" reserved */

static int
sbx_body_name(const json_t *body, const char *field, const char *what,
    int required, sbx_body_str_t *value, char *err)
{
    if (sbx_body_string(body, field, required, value, err) != 0) {
        return -1;
    }

    if (value->len
        && (!sbx_dns_label_valid((const unsigned char *) value->data,
                                 value->len)
            || strcmp(value->data, "proxy") == 0))
    {
        snprintf(err, SBX_BODY_ERR_MAX,
                 "%s must be a DNS-1123 label: 1 to 63 lowercase letters, "
                 "digits or '-', starting and ending with a letter or digit",
                 what);
        return -1;
    }

    return 0;
}


/* a label of the no-auth API: absent means "default" */

static int
sbx_body_label(const json_t *body, const char *field, sbx_body_str_t *value,
    char *err)
{
    if (sbx_body_string(body, field, 0, value, err) != 0) {
        return -1;
    }

    if (value->len == 0) {
        value->data = "default";
        value->len = sizeof("default") - 1;
    }

    if (!sbx_dns_label_valid((const unsigned char *) value->data,
                             value->len))
    {
        snprintf(err, SBX_BODY_ERR_MAX, "%s must be a DNS-1123 label",
                 field);
        return -1;
    }

    /* a user named "proxy" would own sandboxes no path reaches */

    if (strcmp(field, "username") == 0 && strcmp(value->data, "proxy") == 0) {
        snprintf(err, SBX_BODY_ERR_MAX, "username \"proxy\" is reserved");
        return -1;
    }

    return 0;
}


int
sbx_body_user_create(const json_t *body, sbx_user_create_t *out, char *err)
{
    memset(out, 0, sizeof(sbx_user_create_t));

    if (sbx_body_name(body, "username", "username", 1, &out->username, err)
        != 0)
    {
        return -1;
    }

    return sbx_body_string(body, "email", 0, &out->email, err);
}


int
sbx_body_user_update(const json_t *body, sbx_user_update_t *out, char *err)
{
    json_t  *email, *active;

    memset(out, 0, sizeof(sbx_user_update_t));

    email = sbx_body_get(body, "email");
    active = sbx_body_get(body, "is_active");

    if (email == NULL) {
        out->email_op = SBX_EMAIL_KEEP;

    } else if (json_is_null(email)) {
        out->email_op = SBX_EMAIL_CLEAR;

    } else if (json_is_string(email) && json_string_length(email) > 0
               && json_string_length(email) <= SBX_BODY_STRING_MAX
               && strlen(json_string_value(email))
                  == json_string_length(email))
    {
        out->email_op = SBX_EMAIL_SET;
        out->email.data = json_string_value(email);
        out->email.len = json_string_length(email);

    } else {
        snprintf(err, SBX_BODY_ERR_MAX, "email must be a string or null");
        return -1;
    }

    if (active == NULL) {
        out->active = -1;

    } else if (json_is_boolean(active)) {
        out->active = json_is_true(active) ? 1 : 0;

    } else {
        snprintf(err, SBX_BODY_ERR_MAX, "is_active must be a boolean");
        return -1;
    }

    return 0;
}


int
sbx_body_key_create(const json_t *body, time_t now, sbx_key_create_t *out,
    char *err)
{
    json_t  *v;

    memset(out, 0, sizeof(sbx_key_create_t));

    if (sbx_body_string(body, "name", 0, &out->name, err) != 0) {
        return -1;
    }

    out->expires_text.data = "";

    v = sbx_body_get(body, "expires_at");

    if (v == NULL || json_is_null(v)) {
        return 0;
    }

    if (!json_is_string(v)) {
        snprintf(err, SBX_BODY_ERR_MAX, "expires_at must be an ISO-8601 date");
        return -1;
    }

    out->expires_text.data = json_string_value(v);
    out->expires_text.len = json_string_length(v);

    out->expires = sbx_iso8601_parse(
                          (const unsigned char *) out->expires_text.data,
                          out->expires_text.len);

    if (out->expires == -1) {
        out->expires = SBX_BODY_DATE_OTHER;
        return 0;
    }

    if (out->expires <= now) {
        snprintf(err, SBX_BODY_ERR_MAX, "%s", SBX_BODY_EXPIRES_FUTURE);
        return -1;
    }

    return 0;
}


int
sbx_body_sandbox_create(const json_t *body, int anon,
    sbx_sandbox_create_t *out, char *err)
{
    memset(out, 0, sizeof(sbx_sandbox_create_t));

    out->username.data = "";
    out->ns.data = "";

    /* with authentication off, the body names the user (or "default") */

    if (anon && sbx_body_label(body, "username", &out->username, err) != 0) {
        return -1;
    }

    if (sbx_body_name(body, "name", "Sandbox name", 1, &out->name, err)
        != 0)
    {
        return -1;
    }

    /* the "port" clients send is ignored: the runtime's port is fixed */

    if (sbx_body_string(body, "image", 0, &out->image, err) != 0) {
        return -1;
    }

    if (anon && sbx_body_label(body, "namespace", &out->ns, err) != 0) {
        return -1;
    }

    return sbx_body_idle(body, &out->idle_timeout, err);
}


/* absent or null: the default (-1); else whole seconds within the bound */

static int
sbx_body_idle(const json_t *body, long *out, char *err)
{
    json_t     *v;
    json_int_t  n;

    *out = -1;

    v = sbx_body_get(body, "idle_timeout");

    if (v == NULL || json_is_null(v)) {
        return 0;
    }

    if (!json_is_integer(v)) {
        snprintf(err, SBX_BODY_ERR_MAX, "%s", SBX_BODY_IDLE_RULE);
        return -1;
    }

    n = json_integer_value(v);

    if (n < 0 || n > SBX_BODY_IDLE_MAX) {
        snprintf(err, SBX_BODY_ERR_MAX, "%s", SBX_BODY_IDLE_RULE);
        return -1;
    }

    *out = (long) n;

    return 0;
}


static const long  sbx_body_month_days[12] = {
    31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
};


/* n decimal digits, or -1 */

static long
sbx_body_digits(const unsigned char *p, size_t n)
{
    long  v;

    for (v = 0; n--; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        v = v * 10 + (*p - '0');
    }

    return v;
}


time_t
sbx_iso8601_parse(const unsigned char *p, size_t len)
{
    long       n[6];
    size_t     i;
    struct tm  tm;

    memset(n, 0, sizeof(n));

    if (len < 10 || p[4] != '-' || p[7] != '-') {
        return -1;
    }

    n[0] = sbx_body_digits(p, 4);
    n[1] = sbx_body_digits(p + 5, 2);
    n[2] = sbx_body_digits(p + 8, 2);

    if (len > 10) {
        if (len < 19 || (p[10] != 'T' && p[10] != ' ') || p[13] != ':'
            || p[16] != ':')
        {
            return -1;
        }

        n[3] = sbx_body_digits(p + 11, 2);
        n[4] = sbx_body_digits(p + 14, 2);
        n[5] = sbx_body_digits(p + 17, 2);

        /* fractions and a "Z" may follow; other zones are refused */

        for (i = 19; i < len; i++) {
            if (!((p[i] >= '0' && p[i] <= '9') || p[i] == '.'
                  || (p[i] == 'Z' && i == len - 1)))
            {
                return -1;
            }
        }
    }

    for (i = 0; i < 6; i++) {
        if (n[i] < 0) {
            return -1;
        }
    }

    if (n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31 || n[3] > 23
        || n[4] > 59 || n[5] > 59 || n[0] < 1970)
    {
        return -1;
    }

    /* a day the month does not have is refused, not carried into the next */

    if (n[2] > sbx_body_month_days[n[1] - 1]
        || (n[1] == 2 && n[2] == 29
            && !((n[0] % 4 == 0 && n[0] % 100 != 0) || n[0] % 400 == 0)))
    {
        return -1;
    }

    memset(&tm, 0, sizeof(struct tm));
    tm.tm_year = n[0] - 1900;
    tm.tm_mon = n[1] - 1;
    tm.tm_mday = n[2];
    tm.tm_hour = n[3];
    tm.tm_min = n[4];
    tm.tm_sec = n[5];

    return timegm(&tm);
}
