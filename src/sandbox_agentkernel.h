
/*
 * Copyright (C) The sandbox gateway authors
 *
 * The agentkernel-compatible API's pure parts: which endpoint a method
 * and path name, the request bodies checked field by field, the request
 * sent to a sandbox runtime and its answer turned into agentkernel's
 * "output" (sandbox_agentkernel.c: routes and bodies;
 * sandbox_agentkernel_runtime.c: the runtime's request and answer).  Plain
 * C and jansson, no nginx headers, no global state, so it is unit-tested
 * (t/unit/test_agentkernel.c) and fuzzed.  Errors are
 * messages for {"success": false, "error": ...}, at most SBX_AK_ERR_MAX
 * bytes with the NUL.
 */


#ifndef _SANDBOX_AGENTKERNEL_H_INCLUDED_
#define _SANDBOX_AGENTKERNEL_H_INCLUDED_


#include <stddef.h>

#include <jansson.h>


#define SBX_AK_ERR_MAX         256
#define SBX_AK_ARGV_MAX        4096     /* elements of a command */
#define SBX_AK_ARG_MAX         (128 * 1024)     /* bytes of one element */
#define SBX_AK_IMAGE_MAX       255
#define SBX_AK_PATH_MAX        4096

/* an error message into err, cut to SBX_AK_ERR_MAX: the .c files' */
#define sbx_ak_err(err, ...)  snprintf(err, SBX_AK_ERR_MAX, __VA_ARGS__)


typedef enum {
    SBX_AK_NONE = 0,
    SBX_AK_HEALTH,
    SBX_AK_LIST,
    SBX_AK_CREATE,
    SBX_AK_GET,
    SBX_AK_DELETE,
    SBX_AK_STOP,
    SBX_AK_START,
    SBX_AK_EXEC,
    SBX_AK_RUN,
    SBX_AK_RUN_STREAM,
    SBX_AK_FILE_GET,
    SBX_AK_FILE_PUT,
    SBX_AK_FILE_DELETE,
    SBX_AK_LOGS
} sbx_ak_op_e;


typedef struct {
    const char         *data;
    size_t              len;
} sbx_ak_str_t;


typedef struct {
    sbx_ak_op_e         op;
    sbx_ak_str_t        name;       /* the sandbox, as in the path */
    sbx_ak_str_t        file;       /* after /files/, without its "/" */
} sbx_ak_route_t;


/* POST /sandboxes */
typedef struct {
    sbx_ak_str_t        name;
    sbx_ak_str_t        image;      /* "" when absent or null */
} sbx_ak_create_t;


/* POST /run, /run/stream, /sandboxes/{name}/exec */
typedef struct {
    const json_t       *command;    /* a non-empty array of strings */
    const json_t       *env;        /* exec: an object of strings, or NULL */
    sbx_ak_str_t        workdir;    /* exec: absolute, or "" */
    sbx_ak_str_t        image;      /* run */
    int                 fast;       /* run */
} sbx_ak_command_t;


/* PUT /sandboxes/{name}/files/{path} */
typedef struct {
    sbx_ak_str_t        content;
    int                 base64;
} sbx_ak_file_t;


/* what a runtime's /v1/shell/exec answered */
typedef struct {
    int                 completed;  /* else killed (timeout) */
    long long           exit_code;
    char               *output;     /* malloc()ed, NUL-terminated */
    size_t              output_len;
} sbx_ak_result_t;


/*
 * The method ("GET", ...) and the path below the API's prefix, starting
 * with "/".  Returns 0 and the route, 404 for no such path, 405 for a
 * path known with another method, or 400 (a bad name or file path), with
 * err set for each.
 */
int sbx_ak_route(const char *method, size_t mlen, const char *path,
    size_t plen, sbx_ak_route_t *route, char *err);

/* a sandbox name: agentkernel's rule, narrowed to DNS-1123 labels */
int sbx_ak_name_valid(const char *p, size_t len, char *err);

int sbx_ak_create(const json_t *body, sbx_ak_create_t *out, char *err);

/* run: 1 for /run and /run/stream (image, profile, fast allowed) */
int sbx_ak_command(const json_t *body, int run, sbx_ak_command_t *out,
    char *err);

int sbx_ak_file(const json_t *body, sbx_ak_file_t *out, char *err);

/*
 * The body sent to a runtime's /v1/shell/exec: the argv form, so every
 * element reaches the program as one argument, never through a shell.
 * A malloc()ed string, or NULL.
 */
char *sbx_ak_exec_request(const sbx_ak_command_t *cmd, long timeout);

/*
 * The same for a runtime that has only the shell form: "exec" and each
 * argument single-quoted (the environment through env(1))
 */
char *sbx_ak_exec_request_shell(const sbx_ak_command_t *cmd, long timeout);

/* one argument quoted for /bin/sh: '...' with each ' as '\'' */
size_t sbx_ak_shell_quote(char *dst, const char *src, size_t len);

/*
 * A runtime's answer: agentkernel's output is stdout, or stderr when
 * stdout is empty, or both joined by a newline.  Returns 0, or -1 with
 * err (free out->output with free()).
 */
int sbx_ak_exec_result(const char *data, size_t len, sbx_ak_result_t *out,
    char *err);


#endif /* _SANDBOX_AGENTKERNEL_H_INCLUDED_ */
