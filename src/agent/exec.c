/*
 * POST /v1/shell/exec: the AIO runtime's contract.  {"command": "..."}
 * runs through /bin/sh -c as AIO does; {"argv": [...]} is this agent's
 * addition: the program is executed directly, each element reaching it
 * as one argument, never re-quoted through a shell.  The command gets its
 * own process group, /dev/null as stdin, and a timeout (default, clamped
 * to a maximum) after which the whole group is killed; its output is kept
 * up to a bound; with Accept: text/event-stream it is streamed as it comes.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "http.h"
#include "text.h"

#define EXEC_POLL_MS    100     /* how often a running child is checked */
#define EXEC_GRACE_MS   200     /* output still read after the child exits */

typedef struct {
    char    *data;
    size_t   len;
    int      truncated;
} exec_buf_t;

typedef struct {
    const char   *command;      /* shell form */
    char        **argv;         /* argv form, NULL-terminated */
    json_t       *argv_json;
    const char   *dir;
    json_t       *env;
    double        timeout;
    char          session[33];
} exec_req_t;

typedef struct {
    int           fd;
    const char   *name;
    exec_buf_t    buf;
    unsigned char carry[4];     /* a UTF-8 sequence cut by a read */
    size_t        ncarry;
} exec_stream_t;


static double
now_s(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
buf_add(exec_buf_t *b, const char *p, size_t n)
{
    size_t  room;
    char   *d;

    if (n == 0) {
        return;
    }
    if (b->data == NULL) {
        b->data = malloc(agent_conf.max_output);
        if (b->data == NULL) {
            b->truncated = 1;
            return;
        }
    }
    room = agent_conf.max_output - b->len;
    if (n > room) {
        n = room;
        b->truncated = 1;
    }
    d = b->data + b->len;
    memcpy(d, p, n);
    b->len += n;
}


static json_t *
json_text(const char *p, size_t n)
{
    char    *fixed;
    size_t   len;
    json_t  *j;

    if (text_utf8_valid((const unsigned char *) p, n)) {
        return json_stringn(p ? p : "", n);
    }
    fixed = text_utf8_repair((const unsigned char *) p, n, &len);
    if (fixed == NULL) {
        return NULL;
    }
    j = json_stringn(fixed, len);
    free(fixed);
    return j;
}


static int
has_nul(json_t *s)
{
    return memchr(json_string_value(s), '\0', json_string_length(s)) != NULL;
}


/* the request's fields, AIO's names; 0, or -1 once a 422 went out */
static int
exec_parse(http_conn_t *c, http_req_t *r, json_t *in, exec_req_t *x)
{
    json_t       *cmd, *argv, *dir, *timeout, *id, *env, *async, *v;
    const char   *key;
    size_t        i;

    cmd = json_object_get(in, "command");
    argv = json_object_get(in, "argv");
    if (json_is_null(cmd)) {
        cmd = NULL;
    }
    if (json_is_null(argv)) {
        argv = NULL;
    }

    if (cmd && argv) {
        return http_send_invalid(c, r, "argv", "value_error",
                                 "give command or argv, not both"), -1;
    }
    if (cmd == NULL && argv == NULL) {
        return http_send_invalid(c, r, "command", "missing",
                                 "Field required"), -1;
    }

    if (cmd) {
        if (!json_is_string(cmd)) {
            return http_send_invalid(c, r, "command", "string_type",
                                     "Input should be a valid string "
                                     "(an argument vector goes in argv)"), -1;
        }
        if (json_string_length(cmd) == 0 || has_nul(cmd)) {
            return http_send_invalid(c, r, "command", "value_error",
                                     "must be a non-empty string without "
                                     "NUL bytes"), -1;
        }
        x->command = json_string_value(cmd);

    } else {
        if (!json_is_array(argv) || json_array_size(argv) == 0) {
            return http_send_invalid(c, r, "argv", "list_type",
                                     "Input should be a non-empty array of "
                                     "strings"), -1;
        }
        x->argv = calloc(json_array_size(argv) + 1, sizeof(char *));
        if (x->argv == NULL) {
            return http_send_error(c, r, 500, "out of memory"), -1;
        }
        json_array_foreach(argv, i, v) {
            if (!json_is_string(v) || has_nul(v)
                || (i == 0 && json_string_length(v) == 0))
            {
                return http_send_invalid(c, r, "argv", "string_type",
                                         "every element must be a string "
                                         "without NUL bytes, the first "
                                         "non-empty"), -1;
            }
            x->argv[i] = (char *) json_string_value(v);
        }
        x->argv_json = argv;
    }

    dir = json_object_get(in, "exec_dir");
    if (dir && !json_is_null(dir)) {
        if (!json_is_string(dir) || has_nul(dir)) {
            return http_send_invalid(c, r, "exec_dir", "string_type",
                                     "Input should be a valid string"), -1;
        }
        x->dir = json_string_value(dir);
    }

    x->timeout = agent_conf.timeout;
    timeout = json_object_get(in, "timeout");
    if (timeout && !json_is_null(timeout)) {
        if (!json_is_number(timeout) || !(json_number_value(timeout) > 0)) {
            return http_send_invalid(c, r, "timeout", "float_type",
                                     "Input should be a positive number of "
                                     "seconds"), -1;
        }
        x->timeout = json_number_value(timeout);
    }
    if (x->timeout > agent_conf.timeout_max) {
        x->timeout = agent_conf.timeout_max;
    }

    id = json_object_get(in, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_string(id) || json_string_length(id) > 128
            || has_nul(id))
        {
            return http_send_invalid(c, r, "id", "string_type",
                                     "Input should be a string of at most "
                                     "128 bytes"), -1;
        }
    }
    if (id && json_is_string(id)) {
        snprintf(x->session, sizeof(x->session), "%s", json_string_value(id));
    } else {
        snprintf(x->session, sizeof(x->session), "%08lx%08lx",
                 (unsigned long) getpid(),
                 (unsigned long) (now_s() * 1e6) & 0xffffffffUL);
    }

    env = json_object_get(in, "env");
    if (env && !json_is_null(env)) {
        if (!json_is_object(env)) {
            return http_send_invalid(c, r, "env", "dict_type",
                                     "Input should be an object of "
                                     "strings"), -1;
        }
        json_object_foreach(env, key, v) {
            if (!json_is_string(v) || has_nul(v) || key[0] == '\0'
                || strchr(key, '=') != NULL)
            {
                return http_send_invalid(c, r, "env", "string_type",
                                         "names must be non-empty without "
                                         "'=', values strings without NUL "
                                         "bytes"), -1;
            }
        }
        x->env = env;
    }

    async = json_object_get(in, "async_mode");
    if (async && !json_is_null(async)) {
        if (!json_is_boolean(async)) {
            return http_send_invalid(c, r, "async_mode", "bool_type",
                                     "Input should be a valid boolean"), -1;
        }
        if (json_is_true(async)) {
            return http_send_invalid(c, r, "async_mode", "value_error",
                                     "async_mode is not supported by "
                                     "sandbox-agent"), -1;
        }
    }
    return 0;
}


/* descriptors the agent inherited itself are no business of a command */
static void
close_from(int low)
{
    struct dirent  *e;
    DIR            *d;
    int             fd;

    if (syscall(SYS_close_range, low, ~0U, 0) == 0) {
        return;
    }
    d = opendir("/proc/self/fd");
    if (d == NULL) {
        for (fd = low; fd < 1024; fd++) {
            close(fd);
        }
        return;
    }
    while ((e = readdir(d)) != NULL) {
        fd = atoi(e->d_name);
        if (fd >= low && fd != dirfd(d)) {
            close(fd);
        }
    }
    closedir(d);
}


static void
exec_child(exec_req_t *x, int out, int err)
{
    const char  *key;
    json_t      *v;
    sigset_t     none;
    int          null, sig;

    setpgid(0, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (sig = 1; sig < 32; sig++) {
        signal(sig, SIG_DFL);
    }

    null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0
        || dup2(err, 2) < 0)
    {
        _exit(126);
    }
    close_from(3);

    if (x->dir && chdir(x->dir) != 0) {
        dprintf(2, "sandbox-agent: exec_dir %s: %s\n", x->dir,
                strerror(errno));
        _exit(126);
    }
    if (x->env) {
        json_object_foreach(x->env, key, v) {
            setenv(key, json_string_value(v), 1);
        }
    }

    if (x->argv) {
        execvp(x->argv[0], x->argv);
        dprintf(2, "sandbox-agent: %s: %s\n", x->argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    execl("/bin/sh", "sh", "-c", x->command, (char *) NULL);
    dprintf(2, "sandbox-agent: /bin/sh: %s\n", strerror(errno));
    _exit(127);
}


/* a chunk read from a stream: kept, and sent as an SSE event if asked */
static int
exec_chunk(http_conn_t *c, int sse, exec_stream_t *s, exec_buf_t *all,
    const char *p, size_t n)
{
    unsigned char  *joined;
    size_t          total, whole;
    int             rc;

    buf_add(&s->buf, p, n);
    buf_add(all, p, n);
    if (!sse) {
        return 0;
    }

    /* events carry whole characters: a cut sequence waits for its rest */
    total = s->ncarry + n;
    joined = malloc(total ? total : 1);
    if (joined == NULL) {
        return -1;
    }
    memcpy(joined, s->carry, s->ncarry);
    memcpy(joined + s->ncarry, p, n);
    whole = n ? text_utf8_complete(joined, total) : total;
    if (total - whole > 3) {
        whole = total;
    }
    s->ncarry = total - whole;
    memcpy(s->carry, joined + whole, s->ncarry);

    rc = 0;
    if (whole) {
        rc = http_sse_event(c, "output",
                            json_pack("{s:s, s:o}", "stream", s->name,
                                      "output", json_text((char *) joined,
                                                          whole)));
    }
    free(joined);
    return rc;
}


static json_t *
exec_result(exec_req_t *x, const char *status, int code, exec_stream_t *st,
    exec_buf_t *all, double took)
{
    json_t  *data, *console;
    int      completed = strcmp(status, "completed") == 0;

    data = json_pack("{s:s, s:s, s:o, s:o, s:o, s:b, s:f, s:I}",
                     "session_id", x->session,
                     "status", status,
                     "output", json_text(all->data, all->len),
                     "stdout", json_text(st[0].buf.data, st[0].buf.len),
                     "stderr", json_text(st[1].buf.data, st[1].buf.len),
                     "truncated", all->truncated || st[0].buf.truncated
                                  || st[1].buf.truncated,
                     "timeout", x->timeout,
                     "duration_ms", (json_int_t) (took * 1000));
    if (data == NULL) {
        return NULL;
    }
    json_object_set_new(data, "exit_code",
                        completed ? json_integer(code) : json_null());
    if (x->command) {
        json_object_set_new(data, "command", json_string(x->command));
        console = json_pack("[{s:s, s:s, s:o}]", "ps1", "$", "command",
                            x->command, "output",
                            json_text(all->data, all->len));
        json_object_set_new(data, "console", console);
    } else {
        json_object_set(data, "argv", x->argv_json);
    }

    return json_pack("{s:b, s:s, s:o}", "success", 1,
                     "message", completed ? "Operation successful"
                                          : strcmp(status, "hard_timeout") == 0
                                            ? "Command timed out and was killed"
                                            : "Command terminated",
                     "data", data);
}


static int
exec_run(http_conn_t *c, http_req_t *r, exec_req_t *x)
{
    exec_stream_t   st[2] = { { .name = "stdout" }, { .name = "stderr" } };
    exec_buf_t      all = { 0 };
    struct pollfd   pfd[3];
    char            chunk[65536];
    const char     *status = "completed";
    double          start, deadline, grace = 0, now;
    pid_t           pid;
    int             out[2], err[2], i, n, wstatus = 0, exited = 0, gone = 0;
    int             code = -1, rc = 0, wait_ms;
    ssize_t         got;

    if (pipe2(out, O_CLOEXEC) != 0) {
        return http_send_error(c, r, 500, "pipe: %s", strerror(errno));
    }
    if (pipe2(err, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        return http_send_error(c, r, 500, "pipe: %s", strerror(errno));
    }

    start = now_s();
    deadline = start + x->timeout;

    pid = fork();
    if (pid == 0) {
        exec_child(x, out[1], err[1]);
    }
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(out[0]);
        close(err[0]);
        return http_send_error(c, r, 500, "fork: %s", strerror(errno));
    }
    setpgid(pid, pid);              /* also here: no window before kill */
    agent_cmd_pgid = pid;
    st[0].fd = out[0];
    st[1].fd = err[0];

    if (r->sse && http_sse_start(c) != 0) {
        gone = 1;
    }

    while (!gone) {
        now = now_s();
        if (now >= deadline && !exited) {
            status = "hard_timeout";
            break;
        }
        if (exited && (st[0].fd < 0 && st[1].fd < 0 ? 1 : now >= grace)) {
            break;
        }

        n = 0;
        for (i = 0; i < 2; i++) {
            if (st[i].fd >= 0) {
                pfd[n].fd = st[i].fd;
                pfd[n].events = POLLIN;
                n++;
            }
        }
        pfd[n].fd = c->fd;
        pfd[n].events = POLLRDHUP;

        wait_ms = (int) (((exited ? grace : deadline) - now) * 1000) + 1;
        if (!exited) {
            /* with no pipe open only the exit is awaited: check often */
            int  cap = n ? EXEC_POLL_MS : 5;

            wait_ms = wait_ms > cap ? cap : wait_ms;
        }
        if (poll(pfd, n + 1, wait_ms) < 0 && errno != EINTR) {
            break;
        }

        if (pfd[n].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            gone = 1;
            status = "terminated";
            break;
        }

        for (i = 0; i < 2; i++) {
            int  k;

            if (st[i].fd < 0) {
                continue;
            }
            for (k = 0; k < n && pfd[k].fd != st[i].fd; k++) { /* void */ }
            if (k == n || !(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            got = read(st[i].fd, chunk, sizeof(chunk));
            if (got > 0) {
                if (exec_chunk(c, r->sse, &st[i], &all, chunk, got) != 0) {
                    gone = 1;
                    status = "terminated";
                }
            } else if (got == 0 || errno != EINTR) {
                exec_chunk(c, r->sse, &st[i], &all, chunk, 0);
                close(st[i].fd);
                st[i].fd = -1;
            }
        }

        if (!exited && waitpid(pid, &wstatus, WNOHANG) == pid) {
            exited = 1;
            grace = now_s() + EXEC_GRACE_MS / 1000.0;
        }
    }

    if (!exited) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) { /* void */ }
    }
    agent_cmd_pgid = 0;
    for (i = 0; i < 2; i++) {
        if (st[i].fd >= 0) {
            close(st[i].fd);
        }
    }

    if (strcmp(status, "completed") == 0) {
        code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
                                  : 128 + WTERMSIG(wstatus);
    }

    if (gone) {
        rc = -1;
        r->close = 1;
    } else {
        json_t  *res = exec_result(x, status, code, st, &all, now_s() - start);

        if (r->sse) {
            rc = http_sse_event(c, "result", res) || http_sse_end(c) ? -1 : 0;
        } else {
            rc = http_send_json(c, r, 200, res);
        }
    }

    free(all.data);
    free(st[0].buf.data);
    free(st[1].buf.data);
    return rc;
}


int
agent_exec(http_conn_t *c, http_req_t *r)
{
    exec_req_t   x;
    struct stat  sb;
    json_t      *in;
    int          rc;

    memset(&x, 0, sizeof(x));
    x.dir = agent_conf.workdir;

    in = http_json_body(c, r);
    if (in == NULL) {
        return 0;
    }

    rc = exec_parse(c, r, in, &x);
    if (rc != 0) {
        rc = 0;                         /* answered */

    } else if (x.dir && stat(x.dir, &sb) != 0) {
        rc = http_send_error(c, r, 400, "exec_dir %s: %s", x.dir,
                             strerror(errno));

    } else if (x.dir && !S_ISDIR(sb.st_mode)) {
        rc = http_send_error(c, r, 400, "exec_dir %s: Not a directory",
                             x.dir);

    } else {
        rc = exec_run(c, r, &x);
    }

    free(x.argv);
    json_decref(in);
    return rc;
}
