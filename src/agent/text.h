/* Pure byte helpers of sandbox-agent (no I/O): UTF-8 repair, base64. */

#ifndef SANDBOX_AGENT_TEXT_H
#define SANDBOX_AGENT_TEXT_H

#include <stddef.h>

/* length of the longest prefix of s that is whole, valid UTF-8 sequences
 * followed by an incomplete but so far valid one: the bytes from the
 * returned offset on may be completed by the next read */
size_t text_utf8_complete(const unsigned char *s, size_t len);

/* 1 if s is valid UTF-8 */
int text_utf8_valid(const unsigned char *s, size_t len);

/* a copy of s in which every invalid sequence is U+FFFD; *out_len set;
 * NULL on allocation failure; free() it */
char *text_utf8_repair(const unsigned char *s, size_t len, size_t *out_len);

/* base64 (OpenSSL's codec): encode returns a NUL-terminated string;
 * decode returns NULL on invalid input (*out_len set otherwise) */
char *text_b64_encode(const unsigned char *s, size_t len);
unsigned char *text_b64_decode(const char *s, size_t len, size_t *out_len);

#endif
