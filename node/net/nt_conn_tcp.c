/* nt_conn_tcp: the TCP transport — a non-blocking socket watched by a uv_poll_t (cheaper
 * than a uv_tcp_t per connection; nt_sock.h), read into the shared read buffer, written
 * with sendmsg batches. */
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "nt_conn.h"
#include "nt_err.h"
#include "nt_sock.h"

#define IOV_MAX_BATCH 64
/* Reads per readable event while each fills the read buffer (the poll is level-triggered:
 * what is left brings us back on the next turn, after the other connections). */
#define READS_PER_EVENT 4

static void on_io(uv_poll_t *h, int status, int events);

nt_conn *nt_conn_new(const nt_conn_env *env, int fd) {
  nt_conn *c = nt_conn_alloc(env, &nt_transport_tcp);
  if (!c) return NULL;
  if (uv_poll_init(env->loop, &c->h.poll, fd)) { /* also makes fd non-blocking */
    free(c);
    return NULL;
  }
  c->fd = fd;
  c->h.handle.data = c;
  return c;
}

int nt_conn_tcp_watch(nt_conn *c, int events) {
  return events ? uv_poll_start(&c->h.poll, events, on_io) : uv_poll_stop(&c->h.poll);
}

/* uv_poll never owns the descriptor: it is closed once libuv has let go of it. */
void nt_conn_tcp_closed(nt_conn *c) {
  close(c->fd);
  c->fd = -1;
}

static size_t fill_iov(nt_conn *c, struct iovec *iov, size_t max) {
  size_t n = 0;
  for (uint32_t i = c->qhead; i < c->qtail && n < max; i++, n++) {
    nt_frame *f = c->q[i];
    size_t off = i == c->qhead ? c->qoff : 0;
    iov[n].iov_base = (char *)f->data + off;
    iov[n].iov_len = f->len - off;
  }
  return n;
}

static void tcp_flush(nt_conn *c) {
  if (!nt_conn_flush_ready(c)) return; /* UV_WRITABLE comes back here */
  struct iovec iov[IOV_MAX_BATCH];
  while (c->qhead != c->qtail) {
    size_t n = fill_iov(c, iov, IOV_MAX_BATCH);
    ssize_t r = nt_sock_sendv(c->fd, iov, n);
    if (r == NT_EAGAIN) break;
    if (r < 0) {
      nt_conn_abort(c, NT_CLOSE_CLIENT);
      return;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += iov[i].iov_len;
    nt_conn_wrote(c, (size_t)r);
    if ((size_t)r < total) break; /* kernel buffer full */
  }
  /* The rest stays queued as shared frames (nothing is copied) until the socket drains. */
  nt_conn_flush_done(c);
}

/* Reads what the socket has into the shared read buffer and hands it to the transport. */
static void conn_read(nt_conn *c) {
  for (int i = 0; i < READS_PER_EVENT && c->reading && !c->handle_closing; i++) {
    ssize_t n = nt_sock_read(c->fd, (char *)c->env->rbuf, c->env->rbuf_len);
    if (n == NT_EAGAIN) return;
    if (n < 0) { /* EOF, reset or error */
      nt_conn_abort(c, NT_CLOSE_CLIENT);
      return;
    }
    nt_conn_received(c, c->env->rbuf, (size_t)n);
    if ((size_t)n < c->env->rbuf_len) return; /* drained: the next read would say EAGAIN */
  }
}

static void on_io(uv_poll_t *h, int status, int events) {
  nt_conn *c = h->data;
  nt_conn_ref(c);
  if (status < 0) {
    /* POLLERR (reset): libuv stopped the handle. What was received before it is still
     * processed, as a stream read would; the read then reports the error. */
    c->events = 0;
    conn_read(c);
    nt_conn_abort(c, NT_CLOSE_CLIENT);
  } else {
    if (events & UV_READABLE) conn_read(c);
    if ((events & UV_WRITABLE) && !c->handle_closing) nt_conn_writable(c);
  }
  nt_conn_unref(c);
}

const nt_transport nt_transport_tcp = {
    .name = "tcp",
    .read = nt_conn_input,
    .flush = tcp_flush,
    .watch = nt_conn_tcp_watch,
    .closed = nt_conn_tcp_closed,
    .free = NULL,
};
