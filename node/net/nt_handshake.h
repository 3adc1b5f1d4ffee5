/* nt_handshake: RFC 6455 opening handshake checks and the 101 response. No I/O. */
#ifndef NT_HANDSHAKE_H
#define NT_HANDSHAKE_H

#include <stddef.h>

#include "nt_http.h"

#define NT_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/* Computes Sec-WebSocket-Accept for `key` (base64(SHA1(key + GUID)), OpenSSL) into `out`
 * (NT_WS_ACCEPT_LEN + 1 bytes, NUL-terminated). Returns 0 or NT_EINVAL. */
int nt_ws_accept_key(const char *key, char out[NT_WS_ACCEPT_LEN + 1]);

/* Checks that `req` is a valid WebSocket upgrade (RFC 6455 §4.2.1): GET, HTTP/1.1,
 * Upgrade: websocket, Connection containing "upgrade", Sec-WebSocket-Key decoding to 16
 * bytes, Sec-WebSocket-Version 13. Returns 0 when valid, else the HTTP status to answer:
 * 400 (malformed), 405 (not GET), 426 (wrong version; the answer must then carry
 * "Sec-WebSocket-Version: 13"). The path and authentication are checked by the caller. */
int nt_handshake_check(const nt_http_req *req);

/* Formats the "101 Switching Protocols" response for `req` (which passed
 * nt_handshake_check) into `out` (capacity `cap`). `extensions` is the negotiated
 * Sec-WebSocket-Extensions value or NULL. Returns the length, or NT_ETOOLARGE/NT_EINVAL. */
int nt_handshake_response(const nt_http_req *req, const char *extensions, char *out,
                          size_t cap);

/* Same, also selecting the subprotocol `protocol` (NULL for none). It must be one of the
 * values the client offered in Sec-WebSocket-Protocol (browsers fail the connection when a
 * protocol was offered and none, or another, is selected); NT_EINVAL otherwise. */
int nt_handshake_response_proto(const nt_http_req *req, const char *protocol,
                                const char *extensions, char *out, size_t cap);

#endif
