
/*
 * libFuzzer target for the agentkernel API's pure parts
 * (src/sandbox_agentkernel.c, src/sandbox_agentkernel_runtime.c;
 * t/fuzz/run.sh builds and runs it).
 *
 * The first byte picks what the rest is:
 *   'R'  a method (the second byte picks one) and a path: sbx_ak_route()
 *        answers 0, 400, 404 or 405 with a message; an accepted name is a
 *        DNS-1123 label; an accepted file path has no empty, "." or ".."
 *        segment and no NUL;
 *   'E'  a runtime's answer: sbx_ak_exec_result() gives 0 and an output
 *        NUL-terminated at its length, or -1 and a message;
 *   else a request body: every validator, and for an accepted command
 *        both exec requests.  The argv form carries the array unchanged;
 *        the shell form, split back by an oracle that reads /bin/sh's
 *        quoting (words of '...' and \' only, blanks between), gives
 *        "exec", then "env", "--" and NAME=VALUE for each env entry when
 *        there is one, then exactly the command's elements: no byte of
 *        an argument is ever left to the shell.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_agentkernel.h"
#include "sandbox_path.h"


static void
check_err(const char *err)
{
    if (err[0] == '\0' || memchr(err, '\0', SBX_AK_ERR_MAX) == NULL) {
        abort();
    }
}


static void
fuzz_route(const uint8_t *data, size_t size)
{
    int              rc;
    size_t           i, seg;
    const char      *m, *s;
    sbx_ak_route_t   rt;
    char             err[SBX_AK_ERR_MAX];

    static const char  *methods[] = {
        "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"
    };

    if (size < 1) {
        return;
    }

    m = methods[data[0] % 6];
    err[0] = '\0';

    rc = sbx_ak_route(m, strlen(m), (const char *) data + 1, size - 1, &rt,
                      err);

    if (rc != 0) {
        if (rc != 400 && rc != 404 && rc != 405) {
            abort();
        }

        check_err(err);
        return;
    }

    if (rt.op == SBX_AK_NONE) {
        abort();
    }

    if (rt.name.data != NULL
        && !sbx_dns_label_valid((const unsigned char *) rt.name.data,
                                rt.name.len))
    {
        abort();
    }

    if (rt.file.data == NULL) {
        return;
    }

    if (rt.file.len == 0 || memchr(rt.file.data, '\0', rt.file.len)) {
        abort();
    }

    s = rt.file.data;

    for (i = 0; i <= rt.file.len; i++) {
        if (i < rt.file.len && rt.file.data[i] != '/') {
            continue;
        }

        seg = (rt.file.data + i) - s;

        if ((seg == 0 && i < rt.file.len)
            || (seg == 1 && s[0] == '.')
            || (seg == 2 && s[0] == '.' && s[1] == '.'))
        {
            abort();
        }

        s = rt.file.data + i + 1;
    }
}


/* the shell line's words, as /bin/sh reads '...' and \' (nothing else) */

static json_t *
shell_words(const char *p)
{
    json_t  *words;
    char    *w;
    size_t   n, len;

    words = json_array();
    len = strlen(p);
    w = malloc(len + 1);

    while (*p) {
        if (*p == ' ') {
            p++;
            continue;
        }

        n = 0;

        while (*p && *p != ' ') {
            if (*p == '\'') {
                p++;
                while (*p && *p != '\'') {
                    w[n++] = *p++;
                }

                if (*p != '\'') {
                    abort();            /* an unclosed quote */
                }

                p++;

            } else if (p[0] == '\\' && p[1] == '\'') {
                w[n++] = '\'';
                p += 2;

            } else if ((*p >= 'a' && *p <= 'z') || *p == '-') {
                w[n++] = *p++;         /* exec, env, -- */

            } else {
                abort();                /* a byte the shell would read */
            }
        }

        json_array_append_new(words, json_stringn(w, n));
    }

    free(w);

    return words;
}


static void
check_exec(sbx_ak_command_t *cmd)
{
    char        *req, *pair;
    size_t       i;
    json_t      *j, *want, *got, *v;
    const char  *key;

    req = sbx_ak_exec_request(cmd, 30);
    if (req == NULL) {
        abort();
    }

    j = json_loads(req, 0, NULL);
    if (j == NULL || !json_equal(json_object_get(j, "argv"), cmd->command)) {
        abort();
    }

    json_decref(j);
    free(req);

    req = sbx_ak_exec_request_shell(cmd, 30);
    if (req == NULL) {
        abort();
    }

    j = json_loads(req, 0, NULL);
    if (j == NULL || !json_is_string(json_object_get(j, "command"))) {
        abort();
    }

    got = shell_words(json_string_value(json_object_get(j, "command")));

    want = json_array();
    json_array_append_new(want, json_string("exec"));

    if (cmd->env && json_object_size(cmd->env)) {
        json_array_append_new(want, json_string("env"));
        json_array_append_new(want, json_string("--"));

        json_object_foreach((json_t *) cmd->env, key, v) {
            pair = malloc(strlen(key) + 1 + json_string_length(v) + 1);
            memcpy(pair, key, strlen(key));
            pair[strlen(key)] = '=';
            memcpy(pair + strlen(key) + 1, json_string_value(v),
                   json_string_length(v));
            json_array_append_new(want,
                     json_stringn(pair, strlen(key) + 1 + json_string_length(v)));
            free(pair);
        }
    }

    json_array_foreach(cmd->command, i, v) {
        json_array_append(want, v);
    }

    if (!json_equal(got, want)) {
        abort();
    }

    json_decref(want);
    json_decref(got);
    json_decref(j);
    free(req);
}


static void
fuzz_body(const uint8_t *data, size_t size)
{
    int                run;
    json_t            *j;
    sbx_ak_create_t    cr;
    sbx_ak_command_t   cmd;
    sbx_ak_file_t      f;
    json_error_t       e;
    char               err[SBX_AK_ERR_MAX];

    /* jansson takes valid UTF-8 only, as the module's loader does */

    j = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        return;
    }

    err[0] = '\0';
    if (sbx_ak_create(j, &cr, err) != 0) {
        check_err(err);

    } else if (!sbx_dns_label_valid((const unsigned char *) cr.name.data,
                                    cr.name.len))
    {
        abort();
    }

    for (run = 0; run < 2; run++) {
        err[0] = '\0';

        if (sbx_ak_command(j, run, &cmd, err) != 0) {
            check_err(err);
            continue;
        }

        if (!json_is_array(cmd.command) || json_array_size(cmd.command) == 0)
        {
            abort();
        }

        check_exec(&cmd);
    }

    err[0] = '\0';
    if (sbx_ak_file(j, &f, err) != 0) {
        check_err(err);
    }

    json_decref(j);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char             err[SBX_AK_ERR_MAX];
    sbx_ak_result_t  res;

    if (size < 1) {
        return 0;
    }

    switch (data[0]) {

    case 'R':
        fuzz_route(data + 1, size - 1);
        break;

    case 'E':
        err[0] = '\0';

        if (sbx_ak_exec_result((const char *) data + 1, size - 1, &res, err)
            != 0)
        {
            check_err(err);
            break;
        }

        if (res.output == NULL || res.output[res.output_len] != '\0') {
            abort();
        }

        free(res.output);
        break;

    default:
        fuzz_body(data, size);
    }

    return 0;
}
