/*
 * Debian builds libjansson.a and libcrypto.a with _FORTIFY_SOURCE, so their
 * objects call glibc's checked variants of a few libc functions.  musl has
 * no such variants; these do what glibc's do (check the destination size,
 * abort on overflow, then call the plain function), which is all it takes
 * to link Debian's own archives into a static musl binary.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen,
                    const char *fmt, va_list ap);
int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen,
                   const char *fmt, ...);
int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap);
char *__strncpy_chk(char *dst, const char *src, size_t n, size_t dstlen);


int
__vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen,
                const char *fmt, va_list ap)
{
    (void) flag;
    if (maxlen > slen) {
        abort();
    }
    return vsnprintf(s, maxlen, fmt, ap);
}


int
__snprintf_chk(char *s, size_t maxlen, int flag, size_t slen,
               const char *fmt, ...)
{
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = __vsnprintf_chk(s, maxlen, flag, slen, fmt, ap);
    va_end(ap);
    return n;
}


int
__vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
    (void) flag;
    return vfprintf(f, fmt, ap);
}


char *
__strncpy_chk(char *dst, const char *src, size_t n, size_t dstlen)
{
    if (n > dstlen) {
        abort();
    }
    return strncpy(dst, src, n);
}
