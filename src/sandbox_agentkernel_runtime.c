
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The agentkernel-compatible API's exchange with a sandbox runtime, pure
 * (see sandbox_agentkernel.h): the exec request, in argv form or as one
 * shell line, and the runtime's answer turned into agentkernel's output.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_agentkernel.h"


static char *sbx_ak_dump(json_t *j, const sbx_ak_command_t *cmd,
    long timeout);
static size_t sbx_ak_shell_quote_pair(char *dst, const char *name,
    const char *value, size_t len);



char *
sbx_ak_exec_request(const sbx_ak_command_t *cmd, long timeout)
{
    return sbx_ak_dump(json_pack("{s:O}", "argv", cmd->command), cmd,
                       timeout);
}


/* the fields both forms share; takes j's reference */

static char *
sbx_ak_dump(json_t *j, const sbx_ak_command_t *cmd, long timeout)
{
    char  *s;

    if (j == NULL) {
        return NULL;
    }

    json_object_set_new(j, "timeout", json_integer(timeout));

    if (cmd->workdir.len) {
        json_object_set_new(j, "exec_dir", json_stringn(cmd->workdir.data,
                                                        cmd->workdir.len));
    }

    if (cmd->env && j != NULL && json_object_get(j, "argv")) {
        json_object_set(j, "env", (json_t *) cmd->env);
    }

    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    return s;
}


static size_t
sbx_ak_shell_quote_pair(char *dst, const char *name, const char *value,
    size_t len)
{
    char    *tmp;
    size_t   n, nlen;

    nlen = strlen(name);
    tmp = malloc(nlen + 1 + len + 1);
    if (tmp == NULL) {
        return 0;
    }

    memcpy(tmp, name, nlen);
    tmp[nlen] = '=';
    memcpy(tmp + nlen + 1, value, len);

    n = sbx_ak_shell_quote(dst, tmp, nlen + 1 + len);
    free(tmp);

    return n;
}


size_t
sbx_ak_shell_quote(char *dst, const char *src, size_t len)
{
    char    *p;
    size_t   i;

    p = dst;
    *p++ = '\'';

    for (i = 0; i < len; i++) {
        if (src[i] == '\'') {
            memcpy(p, "'\\''", 4);
            p += 4;
            continue;
        }

        *p++ = src[i];
    }

    *p++ = '\'';

    return p - dst;
}


/*
 * Each argument single-quoted, where /bin/sh takes every byte literally
 * (a ' itself closes, is escaped, and reopens); "exec" so the program
 * replaces the shell.
 */

char *
sbx_ak_exec_request_shell(const sbx_ak_command_t *cmd, long timeout)
{
    char        *line, *p;
    size_t       i, size;
    json_t      *v, *j;
    const char  *key;

    size = sizeof("exec env --");

    json_object_foreach((json_t *) cmd->env, key, v) {
        size += 1 + 2 + 4 * (strlen(key) + 1 + json_string_length(v));
    }

    json_array_foreach(cmd->command, i, v) {
        size += 1 + 2 + 4 * json_string_length(v);
    }

    line = malloc(size);
    if (line == NULL) {
        return NULL;
    }

    p = line;

    if (cmd->env && json_object_size(cmd->env)) {
        memcpy(p, "exec env --", 11);
        p += 11;

        json_object_foreach((json_t *) cmd->env, key, v) {
            *p++ = ' ';
            p += sbx_ak_shell_quote_pair(p, key, json_string_value(v),
                                         json_string_length(v));
        }

    } else {
        memcpy(p, "exec", 4);
        p += 4;
    }

    json_array_foreach(cmd->command, i, v) {
        *p++ = ' ';
        p += sbx_ak_shell_quote(p, json_string_value(v),
                                json_string_length(v));
    }

    j = json_pack("{s:s#}", "command", line, (size_t) (p - line));
    free(line);

    return sbx_ak_dump(j, cmd, timeout);
}


int
sbx_ak_exec_result(const char *data, size_t len, sbx_ak_result_t *out,
    char *err)
{
    int            rc;
    size_t         olen, elen;
    json_t        *j, *d, *o, *e, *code, *status;
    const char    *ostr, *estr, *msg;
    json_error_t   jerr;

    memset(out, 0, sizeof(sbx_ak_result_t));

    j = json_loadb(data, len, 0, &jerr);

    if (j == NULL || !json_is_object(j)) {
        sbx_ak_err(err, "The sandbox runtime answered something else than "
                   "JSON");
        json_decref(j);
        return -1;
    }

    rc = -1;
    d = json_object_get(j, "data");

    if (!json_is_object(d)) {
        msg = json_string_value(json_object_get(j, "message"));
        sbx_ak_err(err, "The sandbox runtime refused the command: %.200s",
                   msg ? msg : "no reason given");
        goto done;
    }

    status = json_object_get(d, "status");
    code = json_object_get(d, "exit_code");

    out->completed = json_is_integer(code)
                     && (status == NULL
                         || (json_is_string(status)
                             && strcmp(json_string_value(status),
                                       "completed") == 0));
    out->exit_code = json_is_integer(code) ? json_integer_value(code) : -1;

    /* stdout and stderr apart when the runtime gives them, else output */

    o = json_object_get(d, "stdout");
    e = json_object_get(d, "stderr");

    if (!json_is_string(o)) {
        o = json_object_get(d, "output");
        e = NULL;
    }

    ostr = json_is_string(o) ? json_string_value(o) : "";
    olen = json_is_string(o) ? json_string_length(o) : 0;
    estr = json_is_string(e) ? json_string_value(e) : "";
    elen = json_is_string(e) ? json_string_length(e) : 0;

    out->output = malloc(olen + 1 + elen + 1);
    if (out->output == NULL) {
        sbx_ak_err(err, "out of memory");
        goto done;
    }

    if (olen == 0) {
        memcpy(out->output, estr, elen);
        out->output_len = elen;

    } else {
        memcpy(out->output, ostr, olen);
        out->output_len = olen;

        if (elen) {
            out->output[out->output_len++] = '\n';
            memcpy(out->output + out->output_len, estr, elen);
            out->output_len += elen;
        }
    }

    out->output[out->output_len] = '\0';
    rc = 0;

done:

    json_decref(j);

    return rc;
}
