/* nt_sock: the node's non-blocking TCP socket calls (listen, accept, read, gathered send),
 * with errno converted to nt_err codes here and nowhere else.
 *
 * Connections and listeners are watched with uv_poll_t (nt_conn_tcp.c, nt_node.c): a
 * uv_tcp_t costs 248 bytes per connection, a uv_poll_t plus the fd 164. libuv never
 * owns these descriptors: whoever opened one closes it, after its poll handle's close
 * callback. Stateless; called on the loop thread only. */
#ifndef NT_SOCK_H
#define NT_SOCK_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Opens a non-blocking, close-on-exec TCP socket listening on `sa` (IPv4 or IPv6, with
 * SO_REUSEADDR) and writes it to *fd. Returns 0, or a negative libuv error code (for
 * uv_strerror in the caller's log: libuv's codes are what the log always showed) with
 * nothing left open. */
int nt_sock_listen(const struct sockaddr *sa, int backlog, int *fd);

/* Accepts one connection from listener `lfd`: non-blocking, close-on-exec, TCP_NODELAY.
 * Writes the socket to *fd and the peer's address to *peer. Returns 0; NT_EAGAIN when no
 * connection is waiting (or it went away before it was accepted); NT_ELIMIT when the
 * process or system is out of descriptors or buffers (try again later); NT_EIO for
 * anything else, with the libuv error code in *uverr (for the log). */
int nt_sock_accept(int lfd, int *fd, struct sockaddr_storage *peer, int *uverr);

/* Reads up to `cap` bytes. Returns the count (> 0), NT_EAGAIN (nothing now), NT_ECLOSED
 * (the peer closed its side) or NT_EIO (reset, or any other error). */
ssize_t nt_sock_read(int fd, void *buf, size_t cap);

/* Sends `n` buffers with one sendmsg (no SIGPIPE). Returns the bytes taken (maybe fewer
 * than offered), NT_EAGAIN (the socket buffer is full) or NT_EIO (the connection is
 * gone: EPIPE, ECONNRESET, ...). */
ssize_t nt_sock_sendv(int fd, const struct iovec *iov, size_t n);

#endif
