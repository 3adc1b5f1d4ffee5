/* nt_conn_mem: the memory transport — a connection whose peer is a pair of buffers in
 * the same process (tests, fuzzing): fed bytes are read as from a socket, written bytes
 * are appended to the peer's output. An idle handle stands in for the poll: it runs the
 * deferred reads (reading resumed with input waiting) and writes (the peer consumed). */
#include <stdlib.h>
#include <string.h>

#include "nt_conn.h"
#include "nt_err.h"

static void deliver(nt_conn *c);

static size_t window_room(const nt_mem_peer *p) {
  if (!p->window) return SIZE_MAX;
  size_t held = p->out_len - p->out_read;
  return held < p->window ? p->window - held : 0;
}

static int out_append(nt_mem_peer *p, const uint8_t *data, size_t n) {
  if (p->out_len + n > p->out_cap) {
    size_t cap = p->out_cap ? p->out_cap : 4096;
    while (cap < p->out_len + n) cap *= 2;
    uint8_t *o = realloc(p->out, cap);
    if (!o) return NT_ENOMEM;
    p->out = o;
    p->out_cap = cap;
  }
  memcpy(p->out + p->out_len, data, n);
  p->out_len += n;
  return 0;
}

static void mem_flush(nt_conn *c) {
  if (!nt_conn_flush_ready(c)) return; /* nt_mem_peer_consume comes back here */
  nt_mem_peer *p = c->mem;
  if (!p) { /* the peer is gone: as a reset socket */
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return;
  }
  while (c->qhead != c->qtail) {
    nt_frame *f = c->q[c->qhead];
    size_t n = f->len - c->qoff, room = window_room(p);
    if (n > room) n = room;
    if (!n) break;
    if (out_append(p, f->data + c->qoff, n)) {
      nt_conn_abort(c, NT_CLOSE_CLIENT);
      return;
    }
    nt_conn_wrote(c, n);
  }
  nt_conn_flush_done(c);
}

static void on_idle(uv_idle_t *h) {
  nt_conn *c = h->data;
  nt_conn_ref(c);
  uv_idle_stop(h);
  deliver(c);
  if (!c->handle_closing && c->wblocked && c->mem && window_room(c->mem))
    nt_conn_writable(c);
  nt_conn_unref(c);
}

/* Work is deferred to the next loop turn, as a poll event would be. */
static void schedule(nt_conn *c) {
  if (!c->handle_closing) uv_idle_start(&c->h.idle, on_idle);
}

static int mem_watch(nt_conn *c, int events) {
  nt_mem_peer *p = c->mem;
  if (!p) return 0;
  if (((events & UV_READABLE) && (p->in_len || p->eof)) ||
      ((events & UV_WRITABLE) && window_room(p)))
    schedule(c);
  return 0;
}

static void mem_closed(nt_conn *c) {
  if (c->mem) c->mem->closed = 1;
}

static void mem_free(nt_conn *c) {
  if (c->mem) c->mem->conn = NULL;
  c->mem = NULL;
}

const nt_transport nt_transport_mem = {
    .name = "memory",
    .read = nt_conn_input,
    .flush = mem_flush,
    .watch = mem_watch,
    .closed = mem_closed,
    .free = mem_free,
};

nt_conn *nt_conn_mem_new(const nt_conn_env *env, nt_mem_peer *peer) {
  nt_conn *c = nt_conn_alloc(env, &nt_transport_mem);
  if (!c) return NULL;
  uv_idle_init(env->loop, &c->h.idle);
  c->h.handle.data = c;
  c->mem = peer;
  peer->conn = c;
  return c;
}

/* Reads fed input in read-buffer-sized pieces while the connection reads, then the EOF. */
static void deliver(nt_conn *c) {
  nt_mem_peer *p = c->mem;
  while (p && p->in_len && c->reading && !c->handle_closing) {
    size_t n = p->in_len < c->env->rbuf_len ? p->in_len : c->env->rbuf_len;
    memcpy(c->env->rbuf, p->in, n);
    memmove(p->in, p->in + n, p->in_len - n);
    p->in_len -= n;
    nt_conn_received(c, c->env->rbuf, n);
    p = c->mem;
  }
  if (p && !p->in_len && p->eof && c->reading && !c->handle_closing)
    nt_conn_abort(c, NT_CLOSE_CLIENT);
}

void nt_mem_peer_write(nt_mem_peer *p, const void *data, size_t len) {
  if (!p->conn || p->eof || !len) return;
  uint8_t *in = realloc(p->in, p->in_len + len);
  if (!in) return;
  memcpy(in + p->in_len, data, len);
  p->in = in;
  p->in_len += len;
  nt_conn *c = p->conn;
  nt_conn_ref(c);
  deliver(c);
  nt_conn_unref(c);
}

void nt_mem_peer_shutdown(nt_mem_peer *p) {
  p->eof = 1;
  if (!p->conn) return;
  nt_conn *c = p->conn;
  nt_conn_ref(c);
  deliver(c);
  nt_conn_unref(c);
}

void nt_mem_peer_consume(nt_mem_peer *p) {
  p->out_read = p->out_len;
  if (p->conn && p->conn->wblocked) schedule(p->conn);
}

void nt_mem_peer_free(nt_mem_peer *p) {
  if (p->conn) { /* a connection still alive: as a reset socket */
    nt_conn *c = p->conn;
    c->mem = NULL;
    p->conn = NULL;
    nt_conn_abort(c, NT_CLOSE_CLIENT);
  }
  free(p->out);
  free(p->in);
  memset(p, 0, sizeof *p);
}
