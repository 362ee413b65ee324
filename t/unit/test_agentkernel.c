
/*
 * Unit tests of the agentkernel API's pure parts; TAP out.  The shell
 * form is proven by running it: the line made for each argv is given to
 * /bin/sh -c, and the program must see exactly the elements given.
 */


#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_agentkernel.h"
#include "tap.h"


static char  err[SBX_AK_ERR_MAX];


static int
route(const char *method, const char *path, sbx_ak_route_t *rt)
{
    err[0] = '\0';
    return sbx_ak_route(method, strlen(method), path, strlen(path), rt, err);
}


static int
str_is(sbx_ak_str_t *s, const char *want)
{
    return s->len == strlen(want) && memcmp(s->data, want, s->len) == 0;
}


static json_t *
body(const char *text)
{
    json_error_t  e;

    return json_loads(text, 0, &e);
}


static void
test_routes(void)
{
    sbx_ak_route_t  rt;

    tap_ok(route("GET", "/health", &rt) == 0 && rt.op == SBX_AK_HEALTH,
           "GET /health");
    tap_ok(route("HEAD", "/sandboxes", &rt) == 0 && rt.op == SBX_AK_LIST,
           "HEAD is GET");
    tap_ok(route("GET", "/sandboxes/", &rt) == 0 && rt.op == SBX_AK_LIST,
           "a trailing slash");
    tap_ok(route("POST", "/sandboxes/pi-1/exec", &rt) == 0
           && rt.op == SBX_AK_EXEC && str_is(&rt.name, "pi-1"),
           "exec and its name");
    tap_ok(route("POST", "/sandboxes/pi-1/stop", &rt) == 0
           && rt.op == SBX_AK_STOP, "stop");
    tap_ok(route("POST", "/sandboxes/pi-1/start", &rt) == 0
           && rt.op == SBX_AK_START, "start");
    tap_ok(route("DELETE", "/sandboxes/pi-1", &rt) == 0
           && rt.op == SBX_AK_DELETE, "delete");
    tap_ok(route("GET", "/sandboxes/b/files/etc/os-release", &rt) == 0
           && rt.op == SBX_AK_FILE_GET && str_is(&rt.file, "etc/os-release"),
           "a file's path");
    tap_ok(route("PUT", "/sandboxes/b/files/tmp/dir/", &rt) == 0
           && str_is(&rt.file, "tmp/dir/"), "a file path keeps its slash");
    tap_ok(route("POST", "/run/stream", &rt) == 0
           && rt.op == SBX_AK_RUN_STREAM, "run/stream");
    tap_ok(route("GET", "/sandboxes/b/logs", &rt) == 0
           && rt.op == SBX_AK_LOGS, "logs");

    tap_ok(route("GET", "/nowhere", &rt) == 404
           && strcmp(err, "Not found") == 0, "unknown path: 404");
    tap_ok(route("GET", "/sandboxes/b/exec", &rt) == 405, "GET exec: 405");
    tap_ok(route("PATCH", "/sandboxes", &rt) == 405, "PATCH: 405");
    tap_ok(route("GET", "/sandboxes/Bad_Name", &rt) == 400
           && strstr(err, "Invalid sandbox name") != NULL,
           "an upper-case name: 400");
    tap_ok(route("GET", "/sandboxes//exec", &rt) == 404, "an empty name");
    tap_ok(route("GET", "/sandboxes/b/files/a/../etc", &rt) == 400,
           "a '..' segment in a file path");
    tap_ok(route("GET", "/sandboxes/b/files/a//b", &rt) == 400,
           "an empty segment in a file path");
    tap_ok(route("GET", "/sandboxes/b/files/", &rt) == 400,
           "no file path");
    tap_ok(route("GET", "/sandboxes/b/x/y", &rt) == 404, "too deep");
}


static void
test_bodies(void)
{
    json_t            *j;
    sbx_ak_create_t    cr;
    sbx_ak_command_t   cmd;
    sbx_ak_file_t      f;

    j = body("{\"name\":\"pi-m5x2k9ab1c2d\",\"image\":\"node:22-alpine\"}");
    tap_ok(sbx_ak_create(j, &cr, err) == 0 && str_is(&cr.name,
                                                     "pi-m5x2k9ab1c2d")
           && str_is(&cr.image, "node:22-alpine"), "create: pi's body");
    json_decref(j);

    j = body("{\"name\":\"a\",\"image\":null,\"vcpus\":2,\"memory_mb\":512,"
             "\"profile\":\"moderate\"}");
    tap_ok(sbx_ak_create(j, &cr, err) == 0 && cr.image.len == 0,
           "create: the SDK's fields, null image");
    json_decref(j);

    j = body("{\"name\":\"a\",\"colour\":\"red\"}");
    tap_ok(sbx_ak_create(j, &cr, err) != 0
           && strcmp(err, "Unknown field 'colour'") == 0, "unknown field");
    json_decref(j);

    j = body("{\"name\":\"a\",\"vcpus\":\"2\"}");
    tap_ok(sbx_ak_create(j, &cr, err) != 0, "vcpus as a string");
    json_decref(j);

    j = body("{\"name\":\"a\",\"profile\":\"lax\"}");
    tap_ok(sbx_ak_create(j, &cr, err) != 0
           && strstr(err, "Invalid profile 'lax'") != NULL, "bad profile");
    json_decref(j);

    j = body("{\"name\":\"a\",\"image\":\"x y\"}");
    tap_ok(sbx_ak_create(j, &cr, err) != 0, "bad image");
    json_decref(j);

    tap_ok(sbx_ak_create(NULL, &cr, err) != 0, "create: no body");

    j = body("{\"command\":[\"sh\",\"-c\",\"ls\"]}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) == 0
           && json_array_size(cmd.command) == 3, "exec: argv");
    json_decref(j);

    j = body("{\"command\":[]}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0
           && strcmp(err, "command is required") == 0, "empty argv");
    json_decref(j);

    j = body("{\"command\":\"ls\"}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0, "a string command");
    json_decref(j);

    j = body("{\"command\":[\"ls\",1]}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0
           && strcmp(err, "command[1] must be a string") == 0,
           "a number in argv");
    json_decref(j);

    j = body("{\"command\":[\"\"]}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0, "an empty program");
    json_decref(j);

    j = body("{\"command\":[\"ls\"],\"fast\":true}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0, "exec: no fast");
    json_decref(j);

    j = body("{\"command\":[\"ls\"],\"fast\":false,\"image\":\"alpine\"}");
    tap_ok(sbx_ak_command(j, 1, &cmd, err) == 0 && cmd.fast == 0
           && str_is(&cmd.image, "alpine"), "run: fast and image");
    json_decref(j);

    j = body("{\"command\":[\"ls\"],\"fast\":\"yes\"}");
    tap_ok(sbx_ak_command(j, 1, &cmd, err) != 0, "run: fast not a boolean");
    json_decref(j);

    j = body("{\"command\":[\"ls\"],\"env\":{\"A\":\"1\"},"
             "\"workdir\":\"/tmp\",\"sudo\":false}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) == 0 && cmd.env != NULL
           && str_is(&cmd.workdir, "/tmp"), "exec: env, workdir, sudo");
    json_decref(j);

    j = body("{\"command\":[\"ls\"],\"sudo\":true}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0, "sudo refused");
    json_decref(j);

    j = body("{\"command\":[\"ls\"],\"env\":{\"A=B\":\"1\"}}");
    tap_ok(sbx_ak_command(j, 0, &cmd, err) != 0, "env name with '='");
    json_decref(j);

    j = body("{\"content\":\"\"}");
    tap_ok(sbx_ak_file(j, &f, err) == 0 && f.content.len == 0
           && f.base64 == 0, "file: empty utf8 content");
    json_decref(j);

    j = body("{\"content\":\"AA==\",\"encoding\":\"base64\"}");
    tap_ok(sbx_ak_file(j, &f, err) == 0 && f.base64, "file: base64");
    json_decref(j);

    j = body("{\"content\":\"a\",\"encoding\":\"hex\"}");
    tap_ok(sbx_ak_file(j, &f, err) != 0, "file: bad encoding");
    json_decref(j);

    j = body("{\"encoding\":\"utf8\"}");
    tap_ok(sbx_ak_file(j, &f, err) != 0, "file: no content");
    json_decref(j);
}


/* the line of the shell form, run by /bin/sh: what does printf see? */

static char *
run_shell(const char *request)
{
    int            fd[2];
    char          *out;
    pid_t          pid;
    size_t         len;
    ssize_t        n;
    json_t        *j;
    json_error_t   e;

    j = json_loads(request, 0, &e);
    if (j == NULL || pipe(fd) != 0) {
        return NULL;
    }

    pid = fork();

    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execl("/bin/sh", "sh", "-c",
              json_string_value(json_object_get(j, "command")), (char *) 0);
        _exit(127);
    }

    close(fd[1]);
    json_decref(j);

    out = malloc(65536);
    len = 0;

    while (out && (n = read(fd[0], out + len, 65535 - len)) > 0) {
        len += n;
    }

    close(fd[0]);
    waitpid(pid, NULL, 0);

    if (out) {
        out[len] = '\0';
    }

    return out;
}


static void
test_exec_requests(void)
{
    char              *req, *out, want[1024], *p;
    size_t             i;
    json_t            *j, *argv;
    sbx_ak_command_t   cmd;

    static const char  *args[] = {
        "a b", "'single' \"double\"", "$(echo injected)", "`echo injected`",
        "; echo injected", "line1\nline2", "\xc3\xa9 \xe2\x98\x83", "$HOME",
        "*", "\\n", "'", "''\\''", "", NULL
    };

    argv = json_array();
    json_array_append_new(argv, json_string("printf"));
    json_array_append_new(argv, json_string("[%s]"));

    for (i = 0; args[i]; i++) {
        json_array_append_new(argv, json_string(args[i]));
    }

    memset(&cmd, 0, sizeof(cmd));
    cmd.command = argv;
    cmd.workdir.data = "";

    req = sbx_ak_exec_request(&cmd, 30);
    j = req ? json_loads(req, 0, NULL) : NULL;
    tap_ok(j && json_equal(json_object_get(j, "argv"), argv)
           && json_integer_value(json_object_get(j, "timeout")) == 30
           && json_object_get(j, "command") == NULL,
           "the argv form carries the array as it is");
    json_decref(j);
    free(req);

    req = sbx_ak_exec_request_shell(&cmd, 30);
    out = req ? run_shell(req) : NULL;

    p = want;
    for (i = 0; args[i]; i++) {
        p += sprintf(p, "[%s]", args[i]);
    }

    tap_ok(out && strcmp(out, want) == 0,
           "the shell form: each argument reached printf literally");
    tap_ok(out && strstr(out, "[injected]") == NULL, "nothing injected");
    free(out);
    free(req);

    /* the environment through env(1), quoted the same way */

    j = json_pack("{s:s}", "X", "$(echo no) 'q'");
    cmd.env = j;
    json_array_clear(argv);
    json_array_append_new(argv, json_string("sh"));
    json_array_append_new(argv, json_string("-c"));
    json_array_append_new(argv, json_string("printf %s \"$X\""));
    req = sbx_ak_exec_request_shell(&cmd, 30);
    out = req ? run_shell(req) : NULL;
    tap_ok(out && strcmp(out, "$(echo no) 'q'") == 0,
           "the shell form: env values literal");
    free(out);
    free(req);
    json_decref(j);
    json_decref(argv);
}


static void
test_results(void)
{
    sbx_ak_result_t  res;

#define R(s)  s, strlen(s)

    tap_ok(sbx_ak_exec_result(R("{\"success\":true,\"data\":{\"status\":"
                                "\"completed\",\"exit_code\":0,\"stdout\":"
                                "\"out\\n\",\"stderr\":\"\"}}"), &res, err)
           == 0 && res.completed && res.exit_code == 0
           && strcmp(res.output, "out\n") == 0, "stdout only");
    free(res.output);

    tap_ok(sbx_ak_exec_result(R("{\"data\":{\"exit_code\":2,\"stdout\":\"\","
                                "\"stderr\":\"err\"}}"), &res, err) == 0
           && res.completed && res.exit_code == 2
           && strcmp(res.output, "err") == 0, "stderr when stdout is empty");
    free(res.output);

    tap_ok(sbx_ak_exec_result(R("{\"data\":{\"exit_code\":0,\"stdout\":\"o\","
                                "\"stderr\":\"e\"}}"), &res, err) == 0
           && strcmp(res.output, "o\ne") == 0, "both, joined by a newline");
    free(res.output);

    tap_ok(sbx_ak_exec_result(R("{\"data\":{\"status\":\"completed\","
                                "\"exit_code\":0,\"output\":\"aio\"}}"),
                              &res, err) == 0
           && strcmp(res.output, "aio") == 0, "AIO's output field");
    free(res.output);

    tap_ok(sbx_ak_exec_result(R("{\"data\":{\"status\":\"hard_timeout\","
                                "\"exit_code\":null,\"output\":\"\"}}"),
                              &res, err) == 0 && !res.completed,
           "a timeout is not completed");
    free(res.output);

    tap_ok(sbx_ak_exec_result(R("not json"), &res, err) != 0,
           "not JSON");
    tap_ok(sbx_ak_exec_result(R("{\"success\":false,\"message\":\"no\"}"),
                              &res, err) != 0
           && strstr(err, "no") != NULL, "a refusal's message");
}


int
main(void)
{
    test_routes();
    test_bodies();
    test_exec_requests();
    test_results();

    return tap_done();
}
