
/*
 * Copyright (C) The sandbox gateway authors
 *
 * W3C Trace Context: the traceparent header.  Pure C.
 */


#ifndef _SANDBOX_TRACE_H_INCLUDED_
#define _SANDBOX_TRACE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define SBX_TRACEPARENT_LEN  55
#define SBX_TRACE_ID_LEN     32
#define SBX_SPAN_ID_LEN      16


/*
 * A traceparent value as received: returns 0 and points *trace_id at its
 * 32 hex digits and *flags at its 2, or -1 when it is not one (then a new
 * trace is started).  Version 00 must be exactly 55 characters; a later
 * version may carry more after a "-"; version ff, upper case hex, and
 * all-zero trace or parent ids are invalid, as the specification says.
 */
int sbx_traceparent_parse(const unsigned char *v, size_t len,
    const unsigned char **trace_id, const unsigned char **flags);

/*
 * Writes the 55 characters of "00-<trace_id>-<span>-<flags>" at dst, span
 * being the 64 bits given in lowercase hex (0 is made 1: never all zeros);
 * trace_id and flags may lie in dst, where they are written (trace_id at
 * dst + 3, flags at dst + 53: the value is rewritten in place)
 */
unsigned char *sbx_traceparent_write(unsigned char *dst,
    const unsigned char *trace_id, uint64_t span,
    const unsigned char *flags);


#endif /* _SANDBOX_TRACE_H_INCLUDED_ */
