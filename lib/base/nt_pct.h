/* nt_pct: percent-decoding (RFC 3986 §2.1) of URL parts — query components, path
 * segments, user info — the one decoder the HTTP parser, the API router, the authorizer
 * request and the Redis URL parser share. Pure, reentrant. */
#ifndef NT_PCT_H
#define NT_PCT_H

#include <stddef.h>

/* Flags of nt_pct_decode. */
#define NT_PCT_PLUS 1u     /* '+' decodes to a space (query components, form encoding) */
#define NT_PCT_NO_SLASH 2u /* refuse "%2F": a path segment never spans two segments */

/* Decodes `in` (`n` bytes, not necessarily NUL-terminated; bytes past `n` are not read)
 * into `out` (capacity `cap`, always NUL-terminated when cap > 0). A '%' must be followed by
 * two hex digits (either case). "%00" is always refused: the result is used as a C string
 * and an embedded NUL would cut it silently. Returns the decoded length, NT_EINVAL (NULL
 * argument, malformed escape, %00, %2F with NT_PCT_NO_SLASH; out is then "") or
 * NT_ETOOLARGE (the result and its NUL do not fit in `cap`; out is then ""). */
int nt_pct_decode(const char *in, size_t n, char *out, size_t cap, unsigned flags);

#endif
