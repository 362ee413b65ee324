/*
 * sandbox-agent: the process that makes any container image a sandbox
 * runtime.  It listens, forks one handler per connection (one ahead of
 * time, waiting in accept(): see spare_start), optionally runs
 * the container's own command as a child (and exits with it), forwards
 * termination signals to it, and reaps every child, orphans included.
 *
 *   sandbox-agent [--listen [HOST]:PORT] [options] [-- COMMAND [ARG...]]
 *   sandbox-agent --install PATH     (copies itself, for an init container)
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "http.h"

#define AGENT_VERSION  "1.0"

/* the next spare is forked this long after the first answer of the one
 * before: the answer is still on its way (through the gateway, to its
 * client), on the CPUs a fork would take */
#define AGENT_SPARE_DELAY_MS  20

agent_conf_t  agent_conf = {
    .workdir = NULL,
    .timeout = 300,
    .timeout_max = 3600,
    .max_output = 1024 * 1024,
    .max_body = 16 * 1024 * 1024,
    .max_file = 16 * 1024 * 1024,
    .idle_timeout = 75,
    .max_conns = 64,
};

volatile pid_t  agent_cmd_pgid;

static int      sig_pipe[2] = { -1, -1 };
/* what a spare tells the main process, one atomic write each */
typedef enum {
    AGENT_SPARE_TAKEN,              /* it has accepted a connection */
    AGENT_SPARE_ANSWERED,           /* its first answer is out */
    AGENT_SPARE_ENDED               /* its connection ended, unanswered */
} agent_spare_event_e;

typedef struct {
    pid_t                pid;
    agent_spare_event_e  event;
} agent_spare_msg_t;

static int      taken_pipe[2] = { -1, -1 };    /* the spares' words */
static pid_t    spare;              /* the handler forked ahead */
static int      spare_busy;         /* it has its connection */
static int      spare_fd = -1;      /* in the spare: the pipe, until its
                                       first answer */
static long     spare_due;          /* no spare before (monotonic ms) */
static pid_t   *handlers;           /* live connection handlers */
static int      nhandlers;
static pid_t    main_child;         /* the wrapped command, or 0 */
static int      main_status = -1;

static void spare_tell(agent_spare_event_e event);
static int spare_wanted(void);
static long now_ms(void);


static void
usage(void)
{
    fprintf(stderr,
        "usage: sandbox-agent [--listen [HOST]:PORT] [options] "
        "[-- COMMAND [ARG...]]\n"
        "  --listen ADDR        default :8080 (all IPv4 addresses)\n"
        "  --workdir DIR        commands' default directory (default: cwd)\n"
        "  --timeout S          default exec timeout (300)\n"
        "  --timeout-max S      largest exec timeout a request gets (3600)\n"
        "  --max-output BYTES   output kept per stream (1048576)\n"
        "  --max-body BYTES     largest request body (16777216)\n"
        "  --max-file BYTES     largest file read (16777216)\n"
        "  --max-conns N        connections at once (64)\n"
        "  --idle-timeout S     idle keep-alive connection (75)\n"
        "sandbox-agent --install PATH   copy this binary to PATH (mode 755)\n");
    exit(2);
}


static double
arg_num(const char *name, const char *v, double min, double max)
{
    char    *end;
    double   d;

    d = strtod(v, &end);
    if (end == v || *end != '\0' || !(d >= min && d <= max)) {
        fprintf(stderr, "sandbox-agent: %s: bad value \"%s\"\n", name, v);
        exit(2);
    }
    return d;
}


static int
listen_on(const char *addr)
{
    struct sockaddr_in   sin;
    const char          *colon;
    char                 host[64];
    int                  fd, one = 1, port;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_ANY);

    colon = strrchr(addr, ':');
    if (colon && colon != addr) {
        if ((size_t) (colon - addr) >= sizeof(host)) {
            return -1;
        }
        memcpy(host, addr, colon - addr);
        host[colon - addr] = '\0';
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fprintf(stderr, "sandbox-agent: --listen: \"%s\" is not an IPv4 "
                    "address\n", host);
            return -1;
        }
    }
    port = (int) arg_num("--listen port", colon ? colon + 1 : addr, 1, 65535);
    sin.sin_port = htons(port);

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || bind(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0
        || listen(fd, 128) != 0)
    {
        fprintf(stderr, "sandbox-agent: listen %s: %s\n", addr,
                strerror(errno));
        return -1;
    }
    return fd;
}


/* an init container's job: this very binary into the shared volume, with
 * no cp or shell needed in the image that carries it */
static int
install(const char *path)
{
    char     tmp[4096], buf[65536];
    ssize_t  n;
    int      in, out, rc = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp)) {
        return 2;
    }
    in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (in < 0 || out < 0) {
        fprintf(stderr, "sandbox-agent: --install %s: %s\n", path,
                strerror(errno));
        return 1;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (http_write_all(out, buf, n) != 0) {
            rc = 1;
            break;
        }
    }
    if (n < 0 || close(out) != 0 || rc || chmod(tmp, 0755) != 0
        || rename(tmp, path) != 0)
    {
        fprintf(stderr, "sandbox-agent: --install %s: %s\n", path,
                strerror(errno));
        unlink(tmp);
        rc = 1;
    }
    close(in);
    return rc;
}


static void
on_signal(int sig)
{
    int            saved = errno;
    unsigned char  b = (unsigned char) sig;

    (void) !write(sig_pipe[1], &b, 1);
    errno = saved;
}


/* in a handler: the command's group dies with the handler */
static void
on_handler_term(int sig)
{
    (void) sig;
    if (agent_cmd_pgid > 0) {
        kill(-agent_cmd_pgid, SIGKILL);
    }
    _exit(1);
}


static int
serve_health(http_conn_t *c, http_req_t *r)
{
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        return http_send_error(c, r, 405, "use GET");
    }
    return http_send_json(c, r, 200,
                          json_pack("{s:s, s:s}", "status", "ok",
                                    "version", AGENT_VERSION));
}


/* AIO's optional key: X-AIO-API-Key or a bearer token, compared in
 * constant time */
static int
authorized(http_req_t *r)
{
    const char     *given = r->api_key;
    const char     *key = agent_conf.api_key;
    size_t          i, n, m;
    unsigned char   diff;

    if (key == NULL) {
        return 1;
    }
    if (given == NULL && r->authorization
        && strncmp(r->authorization, "Bearer ", 7) == 0)
    {
        given = r->authorization + 7;
    }
    if (given == NULL) {
        return 0;
    }
    n = strlen(key);
    m = strlen(given);
    diff = (n != m);
    for (i = 0; i < m; i++) {
        diff |= (unsigned char) given[i] ^ (unsigned char) key[i % n];
    }
    return diff == 0;
}


static int
dispatch(http_conn_t *c, http_req_t *r)
{
    static const struct {
        const char  *path;
        int        (*handler)(http_conn_t *, http_req_t *);
    } routes[] = {
        { "/v1/shell/exec", agent_exec },
        { "/v1/file/read", agent_file_read },
        { "/v1/file/write", agent_file_write },
        { "/v1/file/delete", agent_file_delete },
    };
    size_t  i;

    if (strcmp(r->path, "/health") == 0 || strcmp(r->path, "/v1/health") == 0)
    {
        return serve_health(c, r);
    }
    if (!authorized(r)) {
        return http_send_error(c, r, 401, "Invalid or missing API key");
    }
    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(r->path, routes[i].path) == 0) {
            if (strcmp(r->method, "POST") != 0) {
                return http_send_error(c, r, 405, "%s takes POST",
                                       routes[i].path);
            }
            return routes[i].handler(c, r);
        }
    }
    return http_send_error(c, r, 404, "Not Found");
}


/* closing with unread bytes would reset the connection, and the peer
 * could lose the answer (a 413 above all): end our side, then discard
 * what still comes, for a bounded time and amount */
static void
linger(int fd)
{
    struct pollfd  pfd = { .fd = fd, .events = POLLIN };
    char           buf[16384];
    size_t         total = 0;
    ssize_t        n;
    int            i;

    shutdown(fd, SHUT_WR);
    spare_tell(AGENT_SPARE_ENDED);  /* its answer, if any, was told */
    for (i = 0; i < 20 && total < 4 * 1024 * 1024; i++) {
        if (poll(&pfd, 1, 100) < 0) {
            break;
        }
        if (pfd.revents == 0) {
            continue;
        }
        n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        total += n;
    }
}


static void
handle_connection(int fd)
{
    http_conn_t     c = { .fd = fd };
    http_req_t      r;
    struct timeval  tv = { .tv_sec = 30 };
    int             one = 1, rc;

    /* a client that stops reading fails our writes instead of holding a
     * command's output forever */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    for ( ;; ) {
        rc = http_read_request(&c, &r);
        if (rc == 1) {
            rc = dispatch(&c, &r) == 0 && !r.close;
        }
        http_req_free(&r);
        if (rc != 1) {
            break;
        }
        spare_tell(AGENT_SPARE_ANSWERED);
    }
    linger(fd);
    free(c.buf);
}


static void
reset_signals(void)
{
    sigset_t  none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
}


/* a handler's first steps: none of the main process's descriptors or
 * signal handlers */
static void
handler_setup(void)
{
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    close(taken_pipe[0]);
    reset_signals();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_handler_term);
}


/*
 * The next connection's handler, forked before the connection comes: a
 * fork costs milliseconds on some virtual machines (the page tables are
 * copied, then faulted in), and the first request after a sandbox wakes
 * would wait for it.  The spare tells the main process on a pipe when it
 * has accepted a connection: from then on the main process accepts
 * further ones itself, forking per connection; and when it has answered
 * its first request, or its connection ended unanswered.  Only then is
 * the next spare forked, so that its fork does not compete for the CPU
 * with that answer: AGENT_SPARE_DELAY_MS after an answer, at once after
 * a connection with none (a readiness probe's).  Without a spare
 * (--max-conns reached, a fork that failed) the main process accepts,
 * and answers 503 past --max-conns.
 */
static void
spare_start(int lfd)
{
    struct pollfd  pfd = { .fd = lfd, .events = POLLIN };
    pid_t          pid, parent;
    int            fd;

    if (!spare_wanted() || now_ms() < spare_due) {
        return;
    }
    parent = getpid();
    pid = fork();
    if (pid < 0) {
        return;
    }
    if (pid > 0) {
        handlers[nhandlers++] = pid;
        spare = pid;
        spare_busy = 0;
        return;
    }

    /* a spare outlives no main process (one killed by SIGKILL has no
     * say): it would hold the port and serve no one */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(0);
    }
    handler_setup();
    prctl(PR_SET_NAME, "agent-spare");

    for ( ;; ) {
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            (void) poll(&pfd, 1, -1);
        } else if (errno != EINTR && errno != ECONNABORTED) {
            _exit(1);           /* the main process accepts meanwhile */
        }
    }
    close(lfd);
    /* a handler finishes its connection, as one forked for it does */
    prctl(PR_SET_PDEATHSIG, 0);
    prctl(PR_SET_NAME, "agent-handler");
    spare_fd = taken_pipe[1];
    spare_tell(AGENT_SPARE_TAKEN);
    handle_connection(fd);
    _exit(0);
}


/* in the spare: a word to the main process; the pipe is closed after
 * the last (an answer, or the end), so a handler says each once */
static void
spare_tell(agent_spare_event_e event)
{
    agent_spare_msg_t  msg = { .pid = getpid(), .event = event };

    if (spare_fd < 0) {
        return;
    }
    (void) !write(spare_fd, &msg, sizeof(msg));
    if (event != AGENT_SPARE_TAKEN) {
        close(spare_fd);
        spare_fd = -1;
    }
}


/* the spare's words (those of an older spare, one that ended first,
 * change nothing) */
static void
spare_heard(void)
{
    agent_spare_msg_t  msg;

    while (read(taken_pipe[0], &msg, sizeof(msg)) == sizeof(msg)) {
        if (spare <= 0 || msg.pid != spare) {
            continue;
        }
        if (msg.event == AGENT_SPARE_TAKEN) {
            spare_busy = 1;
            continue;
        }
        spare = 0;
        spare_due = msg.event == AGENT_SPARE_ANSWERED
                    ? now_ms() + AGENT_SPARE_DELAY_MS : 0;
    }
}


/* no spare, and room for one more handler */
static int
spare_wanted(void)
{
    return spare <= 0 && nhandlers < agent_conf.max_conns;
}


static long
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}


/* the main loop's poll timeout: until the next spare is due, if one is */
static int
spare_timeout(void)
{
    long  left;

    if (!spare_wanted()) {
        return -1;
    }
    left = spare_due - now_ms();
    return left > 0 ? (int) left : -1;
}


static void
accept_one(int lfd)
{
    static const char  busy[] =
        "{\"success\":false,\"message\":\"too many connections\","
        "\"data\":null}";
    char               head[256];
    int                n;
    pid_t  pid;
    int    fd;

    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    if (nhandlers >= agent_conf.max_conns) {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 503 Service Unavailable\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\nRetry-After: 1\r\n"
                     "Connection: close\r\n\r\n%s", sizeof(busy) - 1, busy);
        (void) !write(fd, head, n);
        close(fd);
        return;
    }

    pid = fork();
    if (pid < 0) {
        close(fd);
        return;
    }
    if (pid == 0) {
        close(lfd);
        handler_setup();
        close(taken_pipe[1]);
        prctl(PR_SET_NAME, "agent-handler");
        handle_connection(fd);
        _exit(0);
    }
    handlers[nhandlers++] = pid;
    close(fd);
}


static void
reap(void)
{
    pid_t  pid;
    int    status, i;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == main_child) {
            main_status = WIFEXITED(status) ? WEXITSTATUS(status)
                                            : 128 + WTERMSIG(status);
            main_child = 0;
            continue;
        }
        if (pid == spare) {
            spare = 0;          /* ended without a connection */
        }
        for (i = 0; i < nhandlers; i++) {
            if (handlers[i] == pid) {
                handlers[i] = handlers[--nhandlers];
                break;
            }
        }
    }
}


static pid_t
start_command(char **argv)
{
    pid_t  pid;

    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "sandbox-agent: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        reset_signals();
        execvp(argv[0], argv);
        fprintf(stderr, "sandbox-agent: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}


static void
shutdown_handlers(void)
{
    int  i;

    for (i = 0; i < nhandlers; i++) {
        kill(handlers[i], SIGTERM);
    }
    for (i = 0; i < 50 && nhandlers; i++) {
        usleep(20000);
        reap();
    }
}


int
main(int argc, char **argv)
{
    const char      *listen_addr = ":8080";
    struct pollfd    pfd[3];
    unsigned char    sig;
    int              i, lfd, stop = 0;

    for (i = 1; i < argc; i++) {
        const char  *a = argv[i];

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
        }
        if (strcmp(a, "--install") == 0 && i + 1 < argc) {
            return install(argv[i + 1]);
        }
        if (strcmp(a, "--version") == 0) {
            printf("sandbox-agent %s\n", AGENT_VERSION);
            return 0;
        }
        if (a[0] != '-' || i + 1 >= argc) {
            usage();
        }
        if (strcmp(a, "--listen") == 0) {
            listen_addr = argv[++i];
        } else if (strcmp(a, "--workdir") == 0) {
            agent_conf.workdir = argv[++i];
        } else if (strcmp(a, "--timeout") == 0) {
            agent_conf.timeout = arg_num(a, argv[++i], 0.001, 1e7);
        } else if (strcmp(a, "--timeout-max") == 0) {
            agent_conf.timeout_max = arg_num(a, argv[++i], 0.001, 1e7);
        } else if (strcmp(a, "--max-output") == 0) {
            agent_conf.max_output = arg_num(a, argv[++i], 1, 1 << 30);
        } else if (strcmp(a, "--max-body") == 0) {
            agent_conf.max_body = arg_num(a, argv[++i], 1, 1 << 30);
        } else if (strcmp(a, "--max-file") == 0) {
            agent_conf.max_file = arg_num(a, argv[++i], 1, 1 << 30);
        } else if (strcmp(a, "--max-conns") == 0) {
            agent_conf.max_conns = arg_num(a, argv[++i], 1, 100000);
        } else if (strcmp(a, "--idle-timeout") == 0) {
            agent_conf.idle_timeout = arg_num(a, argv[++i], 1, 86400);
        } else {
            usage();
        }
    }
    /* the key is ours: commands do not inherit it */
    if (getenv("SANDBOX_API_KEY") && getenv("SANDBOX_API_KEY")[0]) {
        agent_conf.api_key = strdup(getenv("SANDBOX_API_KEY"));
    }
    unsetenv("SANDBOX_API_KEY");

    if (agent_conf.timeout > agent_conf.timeout_max) {
        agent_conf.timeout = agent_conf.timeout_max;
    }
    if (agent_conf.workdir && chdir(agent_conf.workdir) != 0) {
        fprintf(stderr, "sandbox-agent: --workdir %s: %s\n",
                agent_conf.workdir, strerror(errno));
        return 2;
    }

    handlers = calloc(agent_conf.max_conns, sizeof(pid_t));
    if (handlers == NULL || pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0
        || pipe2(taken_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    {
        return 1;
    }
    lfd = listen_on(listen_addr);
    if (lfd < 0) {
        return 2;
    }

    /* orphans of commands come back to us to be reaped, PID 1 or not */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGQUIT, on_signal);

    if (i < argc) {
        main_child = start_command(argv + i);
    }
    fprintf(stderr, "sandbox-agent %s: listening on %s\n", AGENT_VERSION,
            listen_addr);

    pfd[0].events = POLLIN;
    pfd[1].fd = sig_pipe[0];
    pfd[1].events = POLLIN;
    pfd[2].fd = taken_pipe[0];
    pfd[2].events = POLLIN;

    while (!stop) {
        spare_start(lfd);
        /* the spare waiting in accept() takes the next one */
        pfd[0].fd = spare > 0 && !spare_busy ? -1 : lfd;  /* -1: skipped */
        if (poll(pfd, 3, spare_timeout()) < 0 && errno != EINTR) {
            break;
        }
        if (pfd[2].revents & POLLIN) {
            spare_heard();
        }
        if (pfd[1].revents & POLLIN) {
            while (read(sig_pipe[0], &sig, 1) == 1) {
                if (sig == SIGCHLD) {
                    continue;
                }
                if (main_child > 0) {
                    kill(main_child, sig);      /* it decides; we follow */
                } else {
                    stop = 1;
                }
            }
            reap();
            if (main_status >= 0) {
                stop = 1;
            }
        }
        if (!stop && pfd[0].fd >= 0 && (pfd[0].revents & POLLIN)) {
            accept_one(lfd);
        }
    }

    close(lfd);
    shutdown_handlers();
    return main_status >= 0 ? main_status : 0;
}
