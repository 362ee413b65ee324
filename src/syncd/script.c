/*
 * script.c - EVALSHA, SCRIPT LOAD and the one retry after NOSCRIPT.
 */

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "script.h"

/* the name Redis gives the text: SHA-1, lowercase hex */
static int sha(script *s) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len, i;

    if (s->sha[0]) return 0;
    if (EVP_Digest(s->text, strlen(s->text), md, &len, EVP_sha1(), NULL) != 1
        || len * 2 + 1 != sizeof(s->sha))
        return -1;
    for (i = 0; i < len; i++)
        snprintf(s->sha + i * 2, 3, "%02x", md[i]);
    return 0;
}

static void failed(const char *what, redisContext *c, const redisReply *rep) {
    fprintf(stderr, "sandbox-syncd: redis: %s: %s\n", what,
            rep ? rep->str : c->errstr);
}

int script_load(redisContext *c, script *const *s, size_t n) {
    redisReply *rep;
    size_t i, sent = 0;
    int rc = 0;

    for (i = 0; i < n; i++) {
        if (sha(s[i]) != 0
            || redisAppendCommand(c, "SCRIPT LOAD %s", s[i]->text)
               != REDIS_OK) {
            rc = -1;
            break;
        }
        sent++;
    }
    /* every reply is read, so the connection stays in step */
    for (i = 0; i < sent; i++) {
        if (redisGetReply(c, (void **) &rep) != REDIS_OK) {
            failed("SCRIPT LOAD", c, NULL);
            return -1;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            failed("SCRIPT LOAD", c, rep);
            rc = -1;
        } else if (rep->type != REDIS_REPLY_STRING
                   || strcmp(rep->str, s[i]->sha) != 0) {
            fprintf(stderr, "sandbox-syncd: redis: SCRIPT LOAD: not the"
                    " SHA-1 of the script\n");
            rc = -1;
        }
        freeReplyObject(rep);
    }
    return rc;
}

int script_append(redisContext *c, script *s, int nkeys, int argc,
                  const char **argv) {
    const char *v[SCRIPT_ARGS_MAX + 3];
    char num[16];
    int i;

    if (argc > SCRIPT_ARGS_MAX || nkeys > argc || sha(s) != 0) return -1;
    snprintf(num, sizeof(num), "%d", nkeys);
    v[0] = "EVALSHA";
    v[1] = s->sha;
    v[2] = num;
    for (i = 0; i < argc; i++) v[i + 3] = argv[i];
    /* NULL lengths: each argument is a C string */
    return redisAppendCommandArgv(c, argc + 3, v, NULL) == REDIS_OK ? 0 : -1;
}

int script_noscript(const redisReply *rep) {
    return rep && rep->type == REDIS_REPLY_ERROR
           && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

static redisReply *call_once(redisContext *c, script *s, int nkeys,
                             int argc, const char **argv) {
    redisReply *rep;

    if (script_append(c, s, nkeys, argc, argv) != 0) return NULL;
    if (redisGetReply(c, (void **) &rep) != REDIS_OK) return NULL;
    return rep;
}

redisReply *script_call(redisContext *c, script *s, int nkeys, int argc,
                        const char **argv) {
    redisReply *rep = call_once(c, s, nkeys, argc, argv);

    if (!script_noscript(rep)) return rep;
    freeReplyObject(rep);
    fprintf(stderr, "sandbox-syncd: redis lost its scripts: loading again\n");
    if (script_load(c, &s, 1) != 0) return NULL;
    return call_once(c, s, nkeys, argc, argv);
}
