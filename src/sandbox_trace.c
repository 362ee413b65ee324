
/*
 * Copyright (C) The sandbox gateway authors
 *
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): traceparent
 * parsing and writing.  Pure C, unit-tested in t/unit/test_trace.c.
 */


#include "sandbox_trace.h"


static int
sbx_trace_hex(const unsigned char *p, size_t n, int *zero)
{
    size_t  i;

    *zero = 1;

    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }

        if (p[i] != '0') {
            *zero = 0;
        }
    }

    return 1;
}


int
sbx_traceparent_parse(const unsigned char *v, size_t len,
    const unsigned char **trace_id, const unsigned char **flags)
{
    int  zero;

    *trace_id = NULL;
    *flags = NULL;

    if (len < SBX_TRACEPARENT_LEN) {
        return -1;
    }

    /* version: 2 hex, not ff; 00 has nothing after the flags */

    if (!sbx_trace_hex(v, 2, &zero) || (v[0] == 'f' && v[1] == 'f')) {
        return -1;
    }

    if (zero ? len != SBX_TRACEPARENT_LEN
             : (len > SBX_TRACEPARENT_LEN && v[SBX_TRACEPARENT_LEN] != '-'))
    {
        return -1;
    }

    if (v[2] != '-' || v[35] != '-' || v[52] != '-') {
        return -1;
    }

    if (!sbx_trace_hex(v + 3, SBX_TRACE_ID_LEN, &zero) || zero) {
        return -1;
    }

    if (!sbx_trace_hex(v + 36, SBX_SPAN_ID_LEN, &zero) || zero) {
        return -1;
    }

    if (!sbx_trace_hex(v + 53, 2, &zero)) {
        return -1;
    }

    *trace_id = v + 3;
    *flags = v + 53;

    return 0;
}


unsigned char *
sbx_traceparent_write(unsigned char *dst, const unsigned char *trace_id,
    uint64_t span, const unsigned char *flags)
{
    int                   i;
    static const char     hex[] = "0123456789abcdef";

    if (span == 0) {
        span = 1;
    }

    dst[0] = '0';
    dst[1] = '0';
    dst[2] = '-';

    for (i = 0; i < SBX_TRACE_ID_LEN; i++) {
        dst[3 + i] = trace_id[i];
    }

    dst[35] = '-';

    for (i = SBX_SPAN_ID_LEN - 1; i >= 0; i--) {
        dst[36 + i] = hex[span & 0xf];
        span >>= 4;
    }

    dst[52] = '-';
    dst[53] = flags[0];
    dst[54] = flags[1];

    return dst + SBX_TRACEPARENT_LEN;
}
