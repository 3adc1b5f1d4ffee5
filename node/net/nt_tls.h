/* nt_tls: TLS for the WebSocket and API listeners — OpenSSL over memory, never on the socket.
 *
 * Two parts:
 *   nt_tls_ctx  the node's TLS configuration: the current SSL_CTX (TLS 1.3 by default, 1.2
 *               on request, AEAD ciphers only), reloadable from its files on SIGHUP, plus
 *               the working buffers every TLS connection of the node shares;
 *   nt_transport_tls  the nt_conn transport (nt_conn.h): ciphertext read from libuv is
 *               decrypted before the HTTP / WebSocket code sees it, and queued frames are
 *               encrypted at flush time, many frames per TLS record.
 *
 * OpenSSL reads and writes through a BIO of our own that points at the node's read buffer
 * and at a node-wide output buffer, so an idle TLS connection holds no I/O buffer: only
 * its SSL object (whose record buffers are released when idle, SSL_MODE_RELEASE_BUFFERS)
 * and a small struct. Ciphertext the socket does not take at once is copied into a
 * per-connection buffer held by one uv_write, as the TCP transport does for frames.
 * docs/tls-compression.md gives the measured cost per connection.
 *
 * Loop thread only. */
#ifndef NT_TLS_H
#define NT_TLS_H

#include <stddef.h>

#include "nt_conn.h"
#include "nt_metrics.h"

typedef struct nt_tls_ctx nt_tls_ctx;

/* Loads the PEM certificate chain `cert` and private key `key` and builds the server
 * configuration with `min_version` "1.3" or "1.2" (NULL: "1.3"). `m` (may be NULL, must
 * outlive the object) receives the tls_* counters. On success stores the object in *out
 * and returns 0; otherwise returns NT_EINVAL (bad version, unreadable or mismatched files)
 * or NT_ENOMEM with a reason in `err` (`errlen` bytes, NUL-terminated), *out untouched. */
int nt_tls_ctx_new(const char *cert, const char *key, const char *min_version,
                   nt_metrics *m, nt_tls_ctx **out, char *err, size_t errlen);

/* Reads the certificate and key files again (SIGHUP). New connections get the new
 * certificate; connections already established keep the configuration they started with
 * (OpenSSL reference-counts it) and are not interrupted. On failure the current
 * certificate stays and the reason is in `err`. Returns 0, NT_EINVAL or NT_ENOMEM. */
int nt_tls_ctx_reload(nt_tls_ctx *t, char *err, size_t errlen);

/* Frees the configuration. Every connection attached to it must be gone. NULL is ignored. */
void nt_tls_ctx_free(nt_tls_ctx *t);

/* The SSL_CTX new connections get (borrowed; replaced by a reload). For tests. */
struct ssl_ctx_st *nt_tls_ctx_ssl(nt_tls_ctx *t);

/* Makes the freshly accepted connection `c` a TLS server connection of `t`: switches its
 * transport to nt_transport_tls. Call before nt_conn_start. Returns 0 or NT_ENOMEM (the
 * connection is then still plain TCP, and the caller closes it). */
int nt_tls_attach(nt_conn *c, nt_tls_ctx *t);

extern const nt_transport nt_transport_tls;

#endif
