
/*
 * Unit tests of the API's JSON body checks; TAP out.  Bodies are loaded
 * from exactly sized heap copies of their text, as the module loads them.
 */


#include <stdlib.h>
#include <string.h>

#include "sandbox_body.h"
#include "tap.h"


#define NOW  1700000000


static char  err[SBX_BODY_ERR_MAX];


static json_t *
load(const char *text)
{
    json_t         *j;
    unsigned char  *p;

    p = sbx_exact(text, strlen(text));
    err[0] = '\0';
    j = sbx_body_load((const char *) p, strlen(text), err);
    free(p);

    return j;
}


static int
is(sbx_body_str_t *s, const char *want)
{
    return s->len == strlen(want) && strcmp(s->data, want) == 0;
}


static int
err_is(const char *want)
{
    return strcmp(err, want) == 0;
}


/*
 * The validator's result on a body given as text ("" for no body); the
 * strings it gives point into the body, kept until the next RUN.
 */

static json_t  *body;

#define RUN(call, text)                                                       \
    do {                                                                      \
        json_decref(body);                                                    \
        body = (text)[0] ? load(text) : NULL;                                 \
        err[0] = '\0';                                                        \
        rc = (call);                                                          \
    } while (0)

#define BODY  body

#define LABEL_MSG(what)                                                       \
    what " must be a DNS-1123 label: 1 to 63 lowercase letters, digits or "  \
    "'-', starting and ending with a letter or digit"


static void
test_load(void)
{
    json_t  *j;

    j = load("{\"a\": 1}");
    tap_ok(j != NULL && json_is_object(j), "load: an object");
    json_decref(j);

    j = load("{\"a\": 1");
    tap_ok(j == NULL && strncmp(err, "Invalid JSON: ", 14) == 0,
           "load: truncated JSON (%s)", err);

    j = load("[1, 2]");
    tap_ok(j == NULL && err_is("Request body must be a JSON object"),
           "load: an array refused");

    /* jansson itself wants an array or object at the top */
    j = load("\"s\"");
    tap_ok(j == NULL && strncmp(err, "Invalid JSON: ", 14) == 0,
           "load: a string refused");

    j = load("{\"a\": 1, \"a\": 2}");
    tap_ok(j == NULL && strncmp(err, "Invalid JSON: ", 14) == 0,
           "load: duplicate keys refused");

    j = load("");
    tap_ok(j == NULL && strncmp(err, "Invalid JSON: ", 14) == 0,
           "load: nothing refused");
}


static void
test_user_create(void)
{
    int                rc;
    char               big[1100];
    sbx_user_create_t  uc;

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": \"alice\"}");
    tap_ok(rc == 0 && is(&uc.username, "alice") && is(&uc.email, ""),
           "user: name only");

    RUN(sbx_body_user_create(BODY, &uc, err),
        "{\"username\": \"alice\", \"email\": \"a@example.com\"}");
    tap_ok(rc == 0 && is(&uc.email, "a@example.com"), "user: with email");

    RUN(sbx_body_user_create(BODY, &uc, err),
        "{\"username\": \"alice\", \"email\": null}");
    tap_ok(rc == 0 && is(&uc.email, ""), "user: email null");

    RUN(sbx_body_user_create(BODY, &uc, err), "{}");
    tap_ok(rc == -1 && err_is("username is required"), "user: no name");

    RUN(sbx_body_user_create(BODY, &uc, err), "");
    tap_ok(rc == -1 && err_is("username is required"), "user: no body");

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": \"\"}");
    tap_ok(rc == -1 && err_is("username is required"), "user: empty name");

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": null}");
    tap_ok(rc == -1 && err_is("username is required"), "user: null name");

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": \"Alice\"}");
    tap_ok(rc == -1 && err_is(LABEL_MSG("username")),
           "user: upper case refused");

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": \"proxy\"}");
    tap_ok(rc == -1 && err_is(LABEL_MSG("username")),
           "user: \"proxy\" reserved");

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": \"-a\"}");
    tap_ok(rc == -1 && err_is(LABEL_MSG("username")),
           "user: leading dash refused");

    RUN(sbx_body_user_create(BODY, &uc, err), "{\"username\": 5}");
    tap_ok(rc == -1
           && err_is("username must be a string of at most 1024 bytes"),
           "user: a number refused");

    RUN(sbx_body_user_create(BODY, &uc, err),
        "{\"username\": \"alice\", \"email\": true}");
    tap_ok(rc == -1 && err_is("email must be a string of at most 1024 bytes"),
           "user: email boolean refused");

    strcpy(big, "{\"username\": \"a\", \"email\": \"");
    memset(big + strlen(big), 'x', 1024);
    strcpy(big + 28 + 1024, "\"}");
    RUN(sbx_body_user_create(BODY, &uc, err), big);
    tap_ok(rc == 0 && uc.email.len == 1024, "user: email of 1024 bytes");

    strcpy(big, "{\"username\": \"a\", \"email\": \"");
    memset(big + strlen(big), 'x', 1025);
    strcpy(big + 28 + 1025, "\"}");
    RUN(sbx_body_user_create(BODY, &uc, err), big);
    tap_ok(rc == -1, "user: email of 1025 bytes refused");
}


static void
test_user_update(void)
{
    int                rc;
    sbx_user_update_t  uu;

    RUN(sbx_body_user_update(BODY, &uu, err), "{}");
    tap_ok(rc == 0 && uu.email_op == SBX_EMAIL_KEEP && uu.active == -1,
           "update: nothing changes");

    RUN(sbx_body_user_update(BODY, &uu, err), "");
    tap_ok(rc == 0 && uu.email_op == SBX_EMAIL_KEEP && uu.active == -1,
           "update: no body");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"email\": null}");
    tap_ok(rc == 0 && uu.email_op == SBX_EMAIL_CLEAR, "update: email cleared");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"email\": \"b@example.com\"}");
    tap_ok(rc == 0 && uu.email_op == SBX_EMAIL_SET
           && is(&uu.email, "b@example.com"), "update: email set");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"email\": \"\"}");
    tap_ok(rc == -1 && err_is("email must be a string or null"),
           "update: empty email refused");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"email\": 3}");
    tap_ok(rc == -1 && err_is("email must be a string or null"),
           "update: email number refused");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"is_active\": false}");
    tap_ok(rc == 0 && uu.active == 0, "update: deactivate");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"is_active\": true}");
    tap_ok(rc == 0 && uu.active == 1, "update: activate");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"is_active\": \"yes\"}");
    tap_ok(rc == -1 && err_is("is_active must be a boolean"),
           "update: is_active string refused");

    RUN(sbx_body_user_update(BODY, &uu, err), "{\"is_active\": null}");
    tap_ok(rc == -1 && err_is("is_active must be a boolean"),
           "update: is_active null refused");
}


static void
test_key_create(void)
{
    int               rc;
    sbx_key_create_t  kc;

    RUN(sbx_body_key_create(BODY, NOW, &kc, err), "{}");
    tap_ok(rc == 0 && is(&kc.name, "") && kc.expires == 0,
           "key: no name, no expiry");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err), "");
    tap_ok(rc == 0 && kc.expires == 0, "key: no body");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"name\": \"ci\", \"expires_at\": null}");
    tap_ok(rc == 0 && is(&kc.name, "ci") && kc.expires == 0,
           "key: named, expiry null");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"expires_at\": \"2030-01-02T03:04:05Z\"}");
    tap_ok(rc == 0 && kc.expires == 1893553445, "key: ISO-8601 expiry");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"expires_at\": \"2030-01-02T03:04:05.123Z\"}");
    tap_ok(rc == 0 && kc.expires == 1893553445, "key: with fraction");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"expires_at\": \"2030-01-02\"}");
    tap_ok(rc == 0 && kc.expires == 1893542400, "key: a date alone");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"expires_at\": \"2020-01-01T00:00:00Z\"}");
    tap_ok(rc == -1 && err_is(SBX_BODY_EXPIRES_FUTURE), "key: past refused");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"expires_at\": 1893553445}");
    tap_ok(rc == -1 && err_is("expires_at must be an ISO-8601 date"),
           "key: a number refused");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err),
        "{\"expires_at\": \"Wed, 21 Oct 2037 07:28:00 GMT\"}");
    tap_ok(rc == 0 && kc.expires == SBX_BODY_DATE_OTHER
           && is(&kc.expires_text, "Wed, 21 Oct 2037 07:28:00 GMT"),
           "key: another date form left to the caller");

    RUN(sbx_body_key_create(BODY, NOW, &kc, err), "{\"name\": [1]}");
    tap_ok(rc == -1 && err_is("name must be a string of at most 1024 bytes"),
           "key: name array refused");
}


static void
test_sandbox_create(void)
{
    int                   rc;
    sbx_sandbox_create_t  sc;

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err), "{\"name\": \"box-1\"}");
    tap_ok(rc == 0 && is(&sc.name, "box-1") && is(&sc.image, "")
           && is(&sc.username, "") && is(&sc.ns, ""), "sandbox: name only");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"image\": \"img:1\", \"port\": 8888}");
    tap_ok(rc == 0 && is(&sc.image, "img:1"), "sandbox: image, port ignored");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"username\": \"Bob\"}");
    tap_ok(rc == 0 && is(&sc.username, ""),
           "sandbox: username ignored with authentication");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err), "{}");
    tap_ok(rc == -1 && err_is("name is required"), "sandbox: no name");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err), "{\"name\": \"Box\"}");
    tap_ok(rc == -1 && err_is(LABEL_MSG("Sandbox name")),
           "sandbox: upper case refused");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err), "{\"name\": \"proxy\"}");
    tap_ok(rc == -1 && err_is(LABEL_MSG("Sandbox name")),
           "sandbox: \"proxy\" reserved");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"image\": 7}");
    tap_ok(rc == -1 && err_is("image must be a string of at most 1024 bytes"),
           "sandbox: image number refused");

    /* authentication off: the body names the user and the namespace */

    RUN(sbx_body_sandbox_create(BODY, 1, &sc, err), "{\"name\": \"box\"}");
    tap_ok(rc == 0 && is(&sc.username, "default") && is(&sc.ns, "default"),
           "anon sandbox: defaults");

    RUN(sbx_body_sandbox_create(BODY, 1, &sc, err),
        "{\"name\": \"box\", \"username\": \"bob\", \"namespace\": \"team\"}");
    tap_ok(rc == 0 && is(&sc.username, "bob") && is(&sc.ns, "team"),
           "anon sandbox: user and namespace");

    RUN(sbx_body_sandbox_create(BODY, 1, &sc, err),
        "{\"name\": \"Box\", \"username\": \"Bob\"}");
    tap_ok(rc == -1 && err_is("username must be a DNS-1123 label"),
           "anon sandbox: the user is checked first");

    RUN(sbx_body_sandbox_create(BODY, 1, &sc, err),
        "{\"name\": \"box\", \"namespace\": \"a.b\"}");
    tap_ok(rc == -1 && err_is("namespace must be a DNS-1123 label"),
           "anon sandbox: namespace refused");

    RUN(sbx_body_sandbox_create(BODY, 1, &sc, err),
        "{\"name\": \"box\", \"username\": \"proxy\"}");
    tap_ok(rc == -1 && err_is("username \"proxy\" is reserved"),
           "anon sandbox: the user \"proxy\" refused (no path reaches it)");

    RUN(sbx_body_sandbox_create(BODY, 1, &sc, err), "{}");
    tap_ok(rc == -1 && err_is("name is required"), "anon sandbox: no name");

    /* idle_timeout: whole seconds, 0 never, absent or null the default */

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err), "{\"name\": \"box\"}");
    tap_ok(rc == 0 && sc.idle_timeout == -1, "idle_timeout: absent");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": null}");
    tap_ok(rc == 0 && sc.idle_timeout == -1, "idle_timeout: null");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": 0}");
    tap_ok(rc == 0 && sc.idle_timeout == 0, "idle_timeout: 0 (never)");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": 31536000}");
    tap_ok(rc == 0 && sc.idle_timeout == 31536000, "idle_timeout: a year");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": 31536001}");
    tap_ok(rc == -1 && err_is(SBX_BODY_IDLE_RULE),
           "idle_timeout: past a year refused");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": -1}");
    tap_ok(rc == -1 && err_is(SBX_BODY_IDLE_RULE), "idle_timeout: negative");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": 2.5}");
    tap_ok(rc == -1 && err_is(SBX_BODY_IDLE_RULE), "idle_timeout: a fraction");

    RUN(sbx_body_sandbox_create(BODY, 0, &sc, err),
        "{\"name\": \"box\", \"idle_timeout\": \"60\"}");
    tap_ok(rc == -1 && err_is(SBX_BODY_IDLE_RULE), "idle_timeout: a string");
}


static void
check_iso(const char *s, time_t want)
{
    time_t          t;
    unsigned char  *p;

    p = sbx_exact(s, strlen(s));
    t = sbx_iso8601_parse(p, strlen(s));
    free(p);

    tap_ok(t == want, "iso \"%s\": %lld (got %lld)", s, (long long) want,
           (long long) t);
}


static void
test_iso(void)
{
    check_iso("2030-01-02T03:04:05Z", 1893553445);
    check_iso("2030-01-02 03:04:05", 1893553445);
    check_iso("2030-01-02T03:04:05.999999Z", 1893553445);
    check_iso("2030-01-02", 1893542400);
    check_iso("1970-01-01", 0);
    check_iso("1969-12-31", -1);
    check_iso("2030-13-01", -1);
    check_iso("2030-00-01", -1);
    check_iso("2030-01-32", -1);
    check_iso("2030-01-00", -1);
    check_iso("2028-02-29", 1835395200);
    check_iso("2000-02-29", 951782400);
    check_iso("2030-02-29", -1);      /* not carried into March */
    check_iso("2100-02-29", -1);
    check_iso("2030-02-30", -1);
    check_iso("2030-04-31T00:00:00Z", -1);
    check_iso("2030-01-01T24:00:00Z", -1);
    check_iso("2030-01-01T00:60:00Z", -1);
    check_iso("2030-01-01T00:00:60Z", -1);
    check_iso("2030-01-01T00:00:00+01:00", -1);
    check_iso("2030-01-01T00:00:00ZZ", -1);
    check_iso("2030-01-01T00:00", -1);
    check_iso("2030-01-01Z", -1);
    check_iso("2030/01/01", -1);
    check_iso("203a-01-01", -1);
    check_iso("2030-1-01", -1);
    check_iso("2030-01-01X00:00:00", -1);
    check_iso("", -1);
}


int
main(void)
{
    test_load();
    test_user_create();
    test_user_update();
    test_key_create();
    test_sandbox_create();
    test_iso();

    json_decref(body);

    return tap_done();
}
