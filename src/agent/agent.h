/*
 * sandbox-agent: an exec and file server for any container image, speaking
 * the AIO sandbox runtime's /v1/shell/exec and /v1/file/ contract.
 */

#ifndef SANDBOX_AGENT_H
#define SANDBOX_AGENT_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    const char  *workdir;       /* default cwd of commands; NULL: ours */
    double       timeout;       /* default exec timeout, seconds */
    double       timeout_max;   /* a request's timeout is clamped to it */
    size_t       max_output;    /* bytes kept per output (stdout, stderr, both) */
    size_t       max_body;      /* request body bound (413 beyond) */
    size_t       max_file;      /* largest file /v1/file/read returns */
    int          idle_timeout;  /* seconds a connection may sit idle */
    int          max_conns;     /* connections served at once (503 beyond) */
    char        *api_key;       /* SANDBOX_API_KEY, AIO's; NULL: none */
} agent_conf_t;

extern agent_conf_t  agent_conf;

struct http_conn_s;
struct http_req_s;

/* endpoints: each answers the request on the connection; -1 closes it */
int agent_exec(struct http_conn_s *c, struct http_req_s *r);
int agent_file_read(struct http_conn_s *c, struct http_req_s *r);
int agent_file_write(struct http_conn_s *c, struct http_req_s *r);
int agent_file_delete(struct http_conn_s *c, struct http_req_s *r);

/* the connection handler's current command group, killed on SIGTERM */
extern volatile pid_t  agent_cmd_pgid;

#endif
