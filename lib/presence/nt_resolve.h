/* nt_resolve: host names of the Redis clients (data connection, sentinels) resolved off
 * the loop thread with uv_getaddrinfo, because hiredis's own connect would call
 * getaddrinfo on the loop. Loop thread only. */
#ifndef NT_RESOLVE_H
#define NT_RESOLVE_H

#include <stddef.h>
#include <uv.h>

/* 1 when `host` is a numeric IPv4/IPv6 address (connect directly), else 0. */
int nt_resolve_is_numeric(const char *host);

/* Starts resolving `host` (TCP, any family); `cb` follows on the loop. 0, or a libuv
 * error (then `cb` is never called). */
int nt_resolve_start(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                     const char *host);

/* In `cb`: writes the first address as text to ip[cap] ("" when resolution failed) and
 * frees `res`. */
void nt_resolve_result(int status, struct addrinfo *res, char *ip, size_t cap);

#endif
