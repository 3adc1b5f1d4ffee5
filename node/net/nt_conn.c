/* nt_conn: a client connection over any transport — HTTP phase, wslay glue, queue, closing. */
#include "nt_conn.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nt_deflate.h"
#include "nt_err.h"
#include "nt_log.h"
#include "nt_utf8.h"

#define HTTP_MAX_BODY 0

static void begin_close(nt_conn *c, int why);
static void pump_held(nt_conn *c);

/* ---------------------------------------------------------------- lifecycle -- */

nt_conn *nt_conn_alloc(const nt_conn_env *env, const nt_transport *tp) {
  nt_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->env = env;
  c->tp = tp;
  c->fd = -1;
  c->refs = 1;
  c->state = NT_CONN_HTTP;
  c->api = env->keep_alive != 0;
  c->q = c->qin;
  c->qcap = NT_CONN_QINLINE;
  return c;
}

const char *nt_conn_peer(const nt_conn *c, char *buf) {
  buf[0] = '\0';
  if (c->peer_family)
    uv_inet_ntop(c->peer_family == 4 ? AF_INET : AF_INET6, c->peer, buf, NT_CONN_PEER_STRLEN);
  return buf;
}

int nt_conn_set_peer_addr(nt_conn *c, const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    memcpy(c->peer, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    c->peer_family = 4;
  } else if (sa->sa_family == AF_INET6) {
    memcpy(c->peer, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    c->peer_family = 6;
  } else {
    return NT_EINVAL;
  }
  return 0;
}

int nt_conn_set_peer(nt_conn *c, const char *ip, size_t len) {
  char s[NT_CONN_PEER_STRLEN];
  uint8_t a[16];
  if (len == 0 || len >= sizeof s) return NT_EINVAL;
  memcpy(s, ip, len);
  s[len] = '\0';
  int fam = uv_inet_pton(AF_INET, s, a) == 0 ? 4 : uv_inet_pton(AF_INET6, s, a) == 0 ? 6 : 0;
  if (!fam) return NT_EINVAL;
  memcpy(c->peer, a, fam == 4 ? 4 : 16);
  c->peer_family = (uint8_t)fam;
  return 0;
}

/* ---- what the transport watches ----
 * The only place that changes it. For TCP a change costs libuv two epoll_ctl calls, so it
 * changes only when reading pauses (HTTP phase) or the socket fills up. */
static void update_events(nt_conn *c) {
  if (c->handle_closing) return;
  int ev = (c->reading ? UV_READABLE : 0) | (c->wblocked ? UV_WRITABLE : 0);
  if ((unsigned)ev == c->events) return;
  c->events = (unsigned)ev;
  if (c->tp->watch(c, ev)) nt_conn_abort(c, NT_CLOSE_CLIENT);
}

void nt_conn_set_reading(nt_conn *c, int on) {
  c->reading = on != 0;
  update_events(c);
}

void nt_conn_want_write(nt_conn *c, int on) {
  c->wblocked = on != 0;
  update_events(c);
}

int nt_conn_start(nt_conn *c) {
  /* API requests carry bodies (pushes) up to the client message limit: 413 beyond. */
  c->http = nt_http_parser_new(c->env->max_header_bytes,
                               c->api ? c->env->max_message_bytes : HTTP_MAX_BODY);
  if (!c->http) return NT_ENOMEM;
  nt_conn_set_reading(c, 1);
  return c->handle_closing ? NT_EIO : 0;
}

static void queue_clear(nt_conn *c) {
  for (uint32_t i = c->qhead; i < c->qtail; i++) nt_frame_unref(c->q[i]);
  if (c->q != c->qin) free(c->q);
  c->q = c->qin;
  c->qcap = NT_CONN_QINLINE;
  c->qhead = c->qtail = c->qoff = 0;
  c->qbytes = 0;
}

void nt_conn_unref(nt_conn *c) {
  if (--c->refs) return;
  c->env->h->on_free(c->env->ud, c);
  if (c->tp->free) c->tp->free(c);
  queue_clear(c);
  if (c->ws) wslay_event_context_free(c->ws);
  nt_http_parser_free(c->http);
  free(c->held);
  nt_identity_clear(&c->ident);
  if (c->rooms != &c->room0) free(c->rooms);
  free(c);
}

static void on_close(uv_handle_t *h) {
  nt_conn *c = h->data;
  c->tp->closed(c);
  nt_conn_unref(c);
}

static void close_handle(nt_conn *c) {
  if (c->handle_closing) return;
  c->handle_closing = 1;
  uv_close(&c->h.handle, on_close);
}

void nt_conn_close_handle(nt_conn *c) { close_handle(c); }

/* Marks the connection closing and lets the owner drop its membership; idempotent. */
static void begin_close(nt_conn *c, int why) {
  if (c->state == NT_CONN_CLOSING) return;
  int was_ws = c->state == NT_CONN_WS;
  c->state = NT_CONN_CLOSING;
  if (!c->close_reason) c->close_reason = (uint8_t)why;
  c->closing_since = nt_conn_stamp(uv_now(c->env->loop));
  if (was_ws) c->env->h->on_closing(c->env->ud, c);
}

void nt_conn_abort(nt_conn *c, int why) {
  begin_close(c, why);
  close_handle(c);
}

void nt_conn_close_after_flush(nt_conn *c, int why) {
  begin_close(c, why);
  c->shutdown_after_flush = 1;
  if (c->qhead == c->qtail && !c->wblocked) close_handle(c);
  else nt_conn_mark_dirty(c);
}

/* ---------------------------------------------------------------- queue ------ */

/* What may wait in the queue before reading pauses: the send queue bound on WebSockets;
 * on the API, one answer's worth — pipelined requests are parsed only while the answers
 * before them have (nearly) left. */
#define API_PIPELINE_BYTES (64u << 10)
static size_t pause_bound(const nt_conn *c) {
  return c->api ? API_PIPELINE_BYTES : c->env->send_queue_bytes;
}

static void http_input(nt_conn *c, const uint8_t *data, size_t len);
static void take_held(nt_conn *c, void (*input)(nt_conn *, const uint8_t *, size_t));

/* After a flush: reading resumes once the queue is down to half its bound, and an API
 * connection parses what it held back. */
static void queue_resume(nt_conn *c) {
  if (!c->qpaused || c->handle_closing || c->qbytes > pause_bound(c) / 2) return;
  c->qpaused = 0;
  nt_conn_ref(c);
  if (c->state == NT_CONN_HTTP && c->api && !c->http_busy && !c->shutdown_after_flush)
    take_held(c, http_input);
  if (!c->qpaused && !c->handle_closing && !c->http_busy && !c->shutdown_after_flush &&
      (c->state == NT_CONN_WS || c->state == NT_CONN_HTTP))
    nt_conn_set_reading(c, 1);
  nt_conn_unref(c);
}

static int queue_push(nt_conn *c, nt_frame *f) {
  if (c->qtail == c->qcap) {
    if (c->qhead > 0 && c->qhead >= c->qcap / 2) {
      memmove(c->q, c->q + c->qhead, (c->qtail - c->qhead) * sizeof *c->q);
      c->qtail -= c->qhead;
      c->qhead = 0;
    } else {
      uint32_t ncap = c->qcap < 8 ? 8 : c->qcap * 2;
      int inl = c->q == c->qin;
      nt_frame **nq = inl ? malloc(ncap * sizeof *nq) : realloc(c->q, ncap * sizeof *nq);
      if (!nq) return NT_ENOMEM;
      if (inl) memcpy(nq, c->qin, c->qtail * sizeof *nq);
      c->q = nq;
      c->qcap = ncap;
    }
  }
  c->q[c->qtail++] = nt_frame_ref(f);
  c->qbytes += f->len;
  nt_conn_mark_dirty(c);
  /* Output natter is not allowed to refuse (pongs and closes wslay writes, API answers)
   * still counts: past the bound the connection stops being read, so a peer that sends
   * without reading (125-byte pings, pipelined requests) cannot make the queue grow. */
  if (!c->qpaused && c->qbytes > pause_bound(c)) {
    c->qpaused = 1;
    nt_conn_set_reading(c, 0);
  }
  return 0;
}

int nt_conn_send(nt_conn *c, nt_frame *f) {
  if (c->state != NT_CONN_WS || c->pending_abort) return NT_ECLOSED;
  if (c->ws && wslay_event_get_close_sent(c->ws)) return NT_ECLOSED;
  if (c->pmd) { /* the frame's compressed twin: built by the first member, shared after */
    nt_frame *z = nt_deflate_frame(c->env->pmd, f, c->pmd);
    if (z != f) c->env->m->deflate_deliveries++;
    f = z;
  }
  if (c->qbytes + f->len > c->env->send_queue_bytes) {
    /* Not aborted here: the caller may be iterating a member list that closing would
     * modify. The flush phase closes it (Redis' freeClientAsync pattern). */
    c->pending_abort = 1;
    c->close_reason = NT_CLOSE_SLOW;
    c->env->m->slow_consumer_closes++;
    nt_log_warn("slow consumer closed", "{s:s, s:I}", "conn", c->id, "queued",
                (json_int_t)c->qbytes);
    nt_conn_mark_dirty(c);
    return NT_ECLOSED;
  }
  c->env->m->messages_out++;
  return queue_push(c, f);
}

int nt_conn_send_raw(nt_conn *c, const void *data, size_t len) {
  if (c->handle_closing) return NT_ECLOSED;
  nt_frame *f = nt_frame_raw(data, len);
  if (!f) return NT_ENOMEM;
  int r = queue_push(c, f);
  nt_frame_unref(f);
  return r;
}

void nt_conn_respond(nt_conn *c, int status, const char *type, const void *body, size_t len,
                     const char *extra) {
  size_t out_len;
  char *resp = nt_http_response(status, type, body, len, extra, 0, &out_len);
  if (resp) nt_conn_send_raw(c, resp, out_len);
  free(resp);
  nt_conn_close_after_flush(c, NT_CLOSE_CLIENT);
}

void nt_conn_respond_text(nt_conn *c, int status, const char *text) {
  nt_conn_respond(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

/* Drops `n` fully or partly written bytes from the head of the queue. */
static void queue_consume(nt_conn *c, size_t n) {
  c->env->m->bytes_out += n;
  c->qbytes -= n;
  while (n && c->qhead < c->qtail) {
    nt_frame *f = c->q[c->qhead];
    size_t left = f->len - c->qoff;
    if (n < left) {
      c->qoff += (uint32_t)n;
      return;
    }
    n -= left;
    c->qoff = 0;
    nt_frame_unref(f);
    c->qhead++;
  }
  if (c->qhead == c->qtail) c->qhead = c->qtail = 0;
}

void nt_conn_wrote(nt_conn *c, size_t n) { queue_consume(c, n); }

void nt_conn_trim(nt_conn *c) {
  if (c->q == c->qin || c->qhead != c->qtail) return;
  free(c->q);
  c->q = c->qin;
  c->qcap = NT_CONN_QINLINE;
  c->qhead = c->qtail = 0;
}

void nt_conn_flush(nt_conn *c) {
  c->tp->flush(c);
  queue_resume(c);
}

int nt_conn_flush_ready(nt_conn *c) {
  if (c->handle_closing) return 0;
  /* Before the blocked check: a client that stops reading fills its socket, and it is
   * exactly the one to close. */
  if (c->pending_abort) {
    nt_conn_abort(c, NT_CLOSE_SLOW);
    return 0;
  }
  return !c->wblocked;
}

void nt_conn_flush_done(nt_conn *c) {
  nt_conn_want_write(c, c->qhead != c->qtail);
  if (c->qhead == c->qtail && c->shutdown_after_flush) close_handle(c);
}

void nt_conn_mark_dirty(nt_conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  nt_conn_ref(c);
  c->next_dirty = *c->env->dirty;
  *c->env->dirty = c;
}

void nt_conn_flush_dirty(nt_conn **head) {
  while (*head) {
    nt_conn *c = *head;
    *head = c->next_dirty;
    c->next_dirty = NULL;
    c->dirty = 0;
    nt_conn_flush(c);
    nt_conn_unref(c);
  }
}

/* ---------------------------------------------------------------- wslay glue - */

/* The bytes being fed to wslay: borrowed for one ws_pump call, which is the only caller
 * of wslay_event_recv. One cursor for the thread rather than 16 bytes in every
 * connection; ws_pump saves and restores it, so a pump nested in another connection's
 * callbacks cannot disturb the outer one. */
typedef struct ws_input {
  const uint8_t *p;
  size_t n;
} ws_input;
static _Thread_local ws_input ws_in;

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud) {
  (void)ud;
  if (ws_in.n == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < ws_in.n ? len : ws_in.n;
  memcpy(buf, ws_in.p, n);
  ws_in.p += n;
  ws_in.n -= n;
  return (ssize_t)n;
}

/* wslay's own output (pongs, close frames) joins the same queue, so it is ordered with
 * our pre-rendered frames; it is never refused, so a wslay frame is never split. */
static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *ud) {
  nt_conn *c = ud;
  nt_frame *f = nt_frame_raw(data, len);
  if (!f || queue_push(c, f)) {
    nt_frame_unref(f);
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  nt_frame_unref(f);
  return (ssize_t)len;
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                      void *ud) {
  nt_conn *c = ud;
  if (c->state != NT_CONN_WS) return;
  if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
    const uint8_t *msg = a->msg;
    size_t len = a->msg_length;
    if (a->rsv & WSLAY_RSV1_BIT) { /* only allowed when negotiated (ws_ensure) */
      int r = nt_deflate_inflate(c->env->pmd, a->msg, a->msg_length, &msg, &len);
      if (r) {
        nt_conn_ws_close(c, r == NT_ETOOLARGE ? 1009 : 1007,
                         r == NT_ETOOLARGE ? "message too big" : "invalid compressed data",
                         NT_CLOSE_PROTOCOL);
        return;
      }
    }
    /* wslay checks text only when uncompressed: inflated text is checked here */
    if (a->opcode == WSLAY_TEXT_FRAME && !nt_utf8_valid(msg, len)) {
      nt_conn_ws_close(c, 1007, "invalid UTF-8", NT_CLOSE_PROTOCOL);
      return;
    }
    c->env->h->on_message(c->env->ud, c, a->opcode, msg, len);
  } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
    /* wslay has queued an echo of this close. Two cases it gets wrong (RFC 6455 5.5.1,
     * 7.1.6): a 1-byte payload cannot hold a status code (1002), and a reason arriving in
     * several reads is UTF-8-checked from its 3rd byte in each read only (1007). Answer
     * with our own close instead; wslay's echo never leaves. */
    uint16_t fail = a->msg_length == 1 ? 1002
                    : a->msg_length > 2 && !nt_utf8_valid(a->msg + 2, a->msg_length - 2) ? 1007
                    : 0;
    if (fail) {
      uint8_t close_fail[4] = {0x88, 0x02, (uint8_t)(fail >> 8), (uint8_t)fail};
      nt_frame *f = nt_frame_raw(close_fail, sizeof close_fail);
      if (f && queue_push(c, f) == 0) wslay_event_shutdown_write(ctx);
      nt_frame_unref(f);
      begin_close(c, NT_CLOSE_PROTOCOL);
      return;
    }
    begin_close(c, NT_CLOSE_CLIENT);
  } else if (a->opcode == WSLAY_PING) {
    wslay_event_send(ctx); /* the pong goes before replies to later messages of this read */
  }
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_msg_recv_callback = ws_on_msg,
};

/* ---- idle connections hold no wslay context ----
 * A wslay event context is ~13 KB (two 4 KiB frame buffers), far more than everything
 * else an idle connection needs. So a connection gets one only while bytes are being
 * parsed or a close handshake runs, and gives it back whenever the input stops at a
 * message boundary. wslay keeps no state across complete messages that we need (its
 * close state matters only once closing starts, and then the context is kept), so the
 * only thing to know is where frames end: fb_scan tracks frame headers and lengths of
 * the raw input, without interpreting anything else. */

static int ws_ensure(nt_conn *c) {
  if (c->ws) return 0;
  if (wslay_event_context_server_init(&c->ws, &ws_callbacks, c)) {
    c->ws = NULL;
    return NT_ENOMEM;
  }
  wslay_event_config_set_max_recv_msg_length(c->ws, c->env->max_message_bytes);
  /* per context: reapplied whenever an idle connection gets a new one */
  if (c->pmd) wslay_event_config_set_allowed_rsv_bits(c->ws, WSLAY_RSV1_BIT);
  return 0;
}

/* Returns 0, or -1 when a message has more than NT_WS_MAX_FRAGMENTS frames. */
static int fb_scan(nt_conn *c, const uint8_t *p, size_t n) {
  while (n) {
    if (c->fb_left) {
      size_t k = n < c->fb_left ? n : (size_t)c->fb_left;
      p += k;
      n -= k;
      c->fb_left -= k;
      continue;
    }
    c->fb_hdr[c->fb_have++] = *p++;
    n--;
    if (c->fb_have < 2) continue;
    uint8_t len7 = c->fb_hdr[1] & 0x7f;
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    size_t need = 2 + ext + ((c->fb_hdr[1] & 0x80) ? 4 : 0);
    if (c->fb_have < need) continue;
    uint64_t len = len7;
    if (ext) {
      len = 0;
      for (size_t i = 0; i < ext; i++) len = (len << 8) | c->fb_hdr[2 + i];
    }
    int fin = c->fb_hdr[0] & 0x80, op = c->fb_hdr[0] & 0x0f;
    if (op == 0x1 || op == 0x2) {
      c->fb_frag = !fin;
      c->fb_nfrag = 1;
    } else if (op == 0x0) {
      if (fin) c->fb_frag = 0;
      if (++c->fb_nfrag > NT_WS_MAX_FRAGMENTS) return -1;
    }
    c->fb_left = len;
    c->fb_have = 0;
  }
  return 0;
}

/* Frees the context when nothing is half-parsed, nothing waits to be written by wslay and
 * no close handshake is under way. */
static void ws_maybe_release(nt_conn *c) {
  if (!c->ws || c->state != NT_CONN_WS || c->fb_have || c->fb_left || c->fb_frag) return;
  if (wslay_event_want_write(c->ws) || wslay_event_get_close_sent(c->ws) ||
      wslay_event_get_close_received(c->ws))
    return;
  wslay_event_context_free(c->ws);
  c->ws = NULL;
}

/* Keeps a copy of `len` bytes of input while reading is paused (the read buffer is
 * shared). Returns 0 or NT_ENOMEM. */
static int hold_input(nt_conn *c, const uint8_t *data, size_t len) {
  if (!len) return 0;
  nt_conn_held *h = malloc(sizeof *h + len);
  if (!h) return NT_ENOMEM;
  h->len = len;
  memcpy(h->data, data, len);
  free(c->held);
  c->held = h;
  return 0;
}

int nt_conn_upgrade(nt_conn *c, const uint8_t *rest, size_t rest_len) {
  /* Frames sent before the 101 arrived (rare): kept until reading resumes. */
  if (hold_input(c, rest, rest_len)) return NT_ENOMEM;
  nt_http_parser_free(c->http);
  c->http = NULL;
  c->state = NT_CONN_WS;
  return 0;
}

static void ws_run(nt_conn *c);

/* Runs wslay over `len` bytes at `data` (borrowed for the call) and pushes its pending
 * output into the queue. */
static void ws_pump(nt_conn *c, const uint8_t *data, size_t len) {
  if (ws_ensure(c)) {
    nt_conn_abort(c, NT_CLOSE_PROTOCOL);
    return;
  }
  if (c->shutdown_after_flush) return; /* closing: nothing more is parsed */
  if (fb_scan(c, data, len)) {
    nt_conn_ws_close(c, 1009, "message too fragmented", NT_CLOSE_PROTOCOL);
    nt_conn_close_after_flush(c, NT_CLOSE_PROTOCOL);
    return;
  }
  ws_input outer = ws_in;
  ws_in.p = data;
  ws_in.n = len;
  ws_run(c);
  ws_in = outer;
}

/* The rest of ws_pump, with the input in place. */
static void ws_run(nt_conn *c) {
  int r = wslay_event_recv(c->ws);
  ws_in.n = 0; /* whatever wslay refused to read is dropped, as it always was */
  if (r == WSLAY_ERR_CALLBACK_FAILURE && !wslay_event_get_close_sent(c->ws)) {
    /* A violation caught by wslay's frame layer (control frame over 125 bytes or
     * fragmented, non-minimal length): wslay queued a close without a status and gives
     * up. Our recv callback never fails, so this is the peer's fault: answer 1002 (RFC
     * 6455 §7.4.1) ourselves, then close once it is out. */
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
    nt_frame *f = nt_frame_raw(close_1002, sizeof close_1002);
    if (f && queue_push(c, f) == 0) {
      nt_frame_unref(f);
      wslay_event_shutdown_write(c->ws); /* its status-less close must never follow ours */
      begin_close(c, NT_CLOSE_PROTOCOL);
      nt_conn_close_after_flush(c, NT_CLOSE_PROTOCOL);
      return;
    }
    nt_frame_unref(f);
  }
  if (r == 0) r = wslay_event_send(c->ws);
  if (r != 0) {
    nt_conn_abort(c, NT_CLOSE_PROTOCOL);
    return;
  }
  /* wslay stops wanting to read after a close (received, or sent for a protocol error
   * such as 1002/1007/1009) and stops wanting to write once its close frame is queued. */
  if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
    if (c->state == NT_CONN_WS) {
      uint16_t code = wslay_event_get_status_code_sent(c->ws);
      begin_close(c, code == 1000 || code == 0 ? NT_CLOSE_CLIENT : NT_CLOSE_PROTOCOL);
    }
    nt_conn_close_after_flush(c, NT_CLOSE_CLIENT);
    return;
  }
  ws_maybe_release(c);
}

void nt_conn_ws_close(nt_conn *c, uint16_t code, const char *reason, int why) {
  if (c->handle_closing) return;
  if (c->state == NT_CONN_WS && ws_ensure(c)) {
    nt_conn_abort(c, why);
    return;
  }
  if (c->state == NT_CONN_WS || (c->ws && !wslay_event_get_close_sent(c->ws))) {
    if (c->ws) {
      if (!c->close_reason) c->close_reason = (uint8_t)why;
      wslay_event_queue_close(c->ws, code, (const uint8_t *)reason,
                              reason ? strlen(reason) : 0);
      wslay_event_send(c->ws);
    }
  }
  begin_close(c, why);
  /* wait (bounded by the owner's sweep) for the peer's close reply */
  if (!c->ws || !wslay_event_want_read(c->ws)) nt_conn_close_after_flush(c, why);
  else nt_conn_mark_dirty(c);
}

/* ---------------------------------------------------------------- reading ---- */

/* A request the parser refused (400, 413, 431, 505): the owner answers, then it closes. */
static void http_refuse(nt_conn *c) {
  c->env->h->on_refused(c->env->ud, c, nt_http_parser_status(c->http));
  nt_conn_close_after_flush(c, NT_CLOSE_PROTOCOL);
}

/* HTTP-phase input. The WebSocket port takes one request: an upgrade, or a request that
 * is answered and closed. The API port keeps connections alive: requests are answered one
 * at a time and in order; while one waits for an asynchronous answer (bus, store), reading
 * pauses and the bytes already read wait in c->held (the read buffer is shared). */
static void http_input(nt_conn *c, const uint8_t *data, size_t len) {
  c->http_dispatching = 1;
  while (len && c->state == NT_CONN_HTTP && !c->shutdown_after_flush) {
    size_t used = 0;
    int r = nt_http_feed(c->http, (const char *)data, len, &used);
    if (r < 0) {
      http_refuse(c);
      break;
    }
    if (r == 0) break;
    data += used;
    len -= used;
    if (!c->api) {
      nt_conn_set_reading(c, 0);
      c->env->h->on_http(c->env->ud, c, nt_http_parser_req(c->http), data, len);
      if (c->state == NT_CONN_WS) {
        nt_conn_set_reading(c, 1);
        pump_held(c);
      }
      break;
    }
    c->http_busy = 1;
    c->connected_at = uv_now(c->env->loop); /* the sweep's HTTP deadline restarts */
    c->env->h->on_http(c->env->ud, c, nt_http_parser_req(c->http), data, len);
    if (c->http_busy) {
      if (hold_input(c, data, len)) {
        nt_conn_abort(c, NT_CLOSE_CLIENT);
        break;
      }
      nt_conn_set_reading(c, 0);
      break;
    }
    nt_http_parser_reset(c->http);
    if (c->qpaused) { /* answers are waiting: the rest is parsed once they have left */
      if (hold_input(c, data, len)) nt_conn_abort(c, NT_CLOSE_CLIENT);
      break;
    }
  }
  c->http_dispatching = 0;
}

/* Detaches the held input (processing may hold new input) and processes it. */
static void take_held(nt_conn *c, void (*input)(nt_conn *, const uint8_t *, size_t)) {
  nt_conn_held *h = c->held;
  if (!h) return;
  c->held = NULL;
  input(c, h->data, h->len);
  free(h);
}

static void ws_input_held(nt_conn *c, const uint8_t *data, size_t len) {
  ws_pump(c, data, len);
}

/* Frames that followed the upgrade request, once the connection is upgraded. */
static void pump_held(nt_conn *c) { take_held(c, ws_input_held); }

void nt_conn_http_done(nt_conn *c, int keep_alive) {
  if (!c->http_busy) return;
  c->http_busy = 0;
  if (!keep_alive || c->state != NT_CONN_HTTP) {
    nt_conn_close_after_flush(c, NT_CLOSE_CLIENT);
    return;
  }
  if (c->http_dispatching) return; /* answered at once: http_input goes on by itself */
  nt_conn_ref(c);
  nt_http_parser_reset(c->http);
  c->connected_at = uv_now(c->env->loop);
  take_held(c, http_input);
  if (c->state == NT_CONN_HTTP && !c->http_busy && !c->shutdown_after_flush && !c->qpaused)
    nt_conn_set_reading(c, 1);
  nt_conn_unref(c);
}

void nt_conn_resume(nt_conn *c) {
  if (c->state != NT_CONN_WS || c->handle_closing) return;
  nt_conn_ref(c);
  nt_conn_set_reading(c, 1);
  pump_held(c);
  nt_conn_unref(c);
}

void nt_conn_received(nt_conn *c, const uint8_t *data, size_t n) {
  c->env->m->bytes_in += (uint64_t)n;
  c->last_active = nt_conn_stamp(uv_now(c->env->loop));
  c->ping_sent = 0;
  c->tp->read(c, data, n);
}

/* Output first waiting for the peer: the transport writes it now. */
void nt_conn_writable(nt_conn *c) {
  c->wblocked = 0;
  nt_conn_flush(c);
  update_events(c); /* never left watching UV_WRITABLE with nothing to write */
}

void nt_conn_input(nt_conn *c, const uint8_t *data, size_t len) {
  if (c->state == NT_CONN_HTTP) {
    http_input(c, data, len);
  } else if (c->state == NT_CONN_WS || (c->ws && !c->handle_closing)) {
    ws_pump(c, data, len);
  }
}
