/* nt_conn: one client connection — HTTP phase, WebSocket phase (wslay), bounded outbound
 * queue — over a transport: TCP (nt_conn_tcp.c), TLS over TCP (nt_tls.c) or memory
 * (nt_conn_mem.c: bytes fed in by a function, output collected in a buffer, no socket).
 *
 * The connection never calls up. Whoever creates it gives it an environment (nt_conn_env:
 * loop, shared read buffer, limits, deflate streams, counters, the per-turn flush list)
 * and, in it, a handler struct (nt_conn_handler) for what arrives: a complete HTTP
 * request, a WebSocket message, a refused request, the start of closing, the free.
 *
 * Ownership: the creator owns connections. A connection is closed by marking it
 * (nt_conn_close) and freed only after its handle's close callback AND after the last
 * reference taken by an asynchronous operation (nt_conn_ref/unref) is dropped, so
 * callbacks of pending Redis or NATS requests may still look at a closed connection
 * (check nt_conn_is_open) but never at freed memory. The handler's on_free runs just
 * before the memory goes.
 * Threading: loop thread only.
 *
 * Outbound path: frames (nt_frame, shared and reference counted) are appended to the
 * connection's queue and the connection is put on the environment's dirty list; the
 * owner calls nt_conn_flush_dirty once per loop turn (uv_check), so many frames leave in
 * one sendmsg. A queue above env->send_queue_bytes closes the connection as a slow
 * consumer. */
#ifndef NT_CONN_H
#define NT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "nt_frame.h"
#include "nt_http.h"
#include "nt_identity.h"
#include "nt_metrics.h"
#include "nt_ratelimit.h"

struct nt_deflate;
struct nt_room;
struct nt_userset;
struct nt_tls;
struct nt_conn;

/* A transport moves a connection's bytes between its peer and the connection (Redis'
 * connection types): plain TCP (nt_conn_tcp.c), TLS over TCP (nt_tls.c), memory
 * (nt_conn_mem.c). TCP pays one indirect call per read and per flush for it. */
typedef struct nt_transport {
  const char *name;
  /* Bytes read from the peer (borrowed for the call): passes the plaintext on with
   * nt_conn_input, and may abort the connection. */
  void (*read)(struct nt_conn *c, const uint8_t *data, size_t len);
  /* Writes the queue as far as the peer takes it (nt_conn_flush). */
  void (*flush)(struct nt_conn *c);
  /* Watches UV_READABLE | UV_WRITABLE (`events`) from now on. Returns 0 or a negative
   * code (the connection is then aborted). */
  int (*watch)(struct nt_conn *c, int events);
  /* The handle has closed (the peer sees EOF): a socket is closed here. */
  void (*closed)(struct nt_conn *c);
  /* Frees the transport's state (from the connection's own free); may be NULL. */
  void (*free)(struct nt_conn *c);
} nt_transport;

extern const nt_transport nt_transport_tcp;
extern const nt_transport nt_transport_mem;

/* What a connection reports to its owner. Every member is required. `ud` is the
 * environment's. Loop thread; the connection stays valid for the call. */
typedef struct nt_conn_handler {
  /* A complete HTTP request arrived in the HTTP phase; `rest` holds bytes that followed
   * it (WebSocket frames after an upgrade). Outside keep-alive mode reading is paused
   * during the call: the handler upgrades (nt_conn_upgrade), answers and closes, or
   * keeps the connection waiting (an asynchronous authorizer). In keep-alive mode the
   * handler answers and calls nt_conn_http_done, at once or later. */
  void (*on_http)(void *ud, struct nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                  size_t rest_len);
  /* A complete text or binary WebSocket message (UTF-8 already checked for text,
   * inflated when compressed). */
  void (*on_message)(void *ud, struct nt_conn *c, int opcode, const uint8_t *data,
                     size_t len);
  /* The HTTP parser refused the request with `status` (400, 413, 431, 505): the handler
   * queues an answer (nt_conn_send_raw); the connection closes once it is out. */
  void (*on_refused)(void *ud, struct nt_conn *c, int status);
  /* An upgraded connection starts closing: leave rooms, drop presence. Once. */
  void (*on_closing)(void *ud, struct nt_conn *c);
  /* The connection's memory is about to be freed (any phase). */
  void (*on_free)(void *ud, struct nt_conn *c);
} nt_conn_handler;

/* What a connection gets from its creator; borrowed, must outlive the connection. One
 * per listener (the handler and keep-alive mode differ), sharing the rest. */
typedef struct nt_conn_env {
  uv_loop_t *loop;              /* the clock (uv_now) and the TCP transport's handles */
  const nt_conn_handler *h;
  void *ud;                     /* the handler's first argument */
  uint8_t *rbuf;                /* read buffer shared by every connection (reads are */
  size_t rbuf_len;              /* processed synchronously) */
  size_t send_queue_bytes;      /* queued output bound: slow consumer beyond */
  size_t max_message_bytes;     /* WebSocket messages (1009 beyond); request bodies in
                                   keep-alive mode (413 beyond) */
  size_t max_header_bytes;      /* request line + headers (431 beyond) */
  int keep_alive;               /* HTTP API mode: keep-alive requests with bodies */
  struct nt_deflate *pmd;       /* permessage-deflate streams; NULL: off */
  nt_metrics *m;                /* bytes, frames, slow consumers, refusals */
  struct nt_conn **dirty;       /* head of the per-turn flush list (nt_conn_flush_dirty) */
} nt_conn_env;

struct nt_mem_peer;

#define NT_CONN_ID_LEN 20
#define NT_CONN_QINLINE 2 /* queue slots inside the connection */

enum nt_conn_state {
  NT_CONN_HTTP = 0,   /* reading the HTTP request */
  NT_CONN_WS = 1,     /* upgraded */
  NT_CONN_CLOSING = 2 /* marked; handle close in progress */
};

/* Why a connection ended (maps onto the DisconnectReason of lifecycle events). */
enum nt_close_reason {
  NT_CLOSE_CLIENT = 1,
  NT_CLOSE_TIMEOUT = 2,
  NT_CLOSE_SLOW = 3,
  NT_CLOSE_KICKED = 4,
  NT_CLOSE_PROTOCOL = 6,
  NT_CLOSE_SHUTDOWN = 7
};

typedef struct nt_conn_room {
  struct nt_room *room;
  uint32_t idx;                 /* position of this connection in room->members */
  uint32_t pmark;               /* presence (node/chat nt_pfan.c): the room's presence */
  uint64_t pver;                /* arrivals when the join began; the join's version */
} nt_conn_room;

/* Input read from the socket but not processed yet, kept while reading is paused (rare):
 * API requests pipelined behind one being answered, or frames that followed an upgrade
 * request. malloc'd in one block. */
typedef struct nt_conn_held {
  size_t len;
  uint8_t data[];
} nt_conn_held;

/* Fields are ordered by size so the struct has no padding holes (gdb: ptype/o nt_conn):
 * it is the memory of every idle connection. */
typedef struct nt_conn {
  union {                       /* first member: handle.data == the connection */
    uv_handle_t handle;
    uv_poll_t poll;             /* TCP, TLS: watches fd */
    uv_idle_t idle;             /* memory: runs deferred reads and writes */
  } h;
  const nt_conn_env *env;
  const nt_transport *tp;       /* &nt_transport_tcp, _tls or _mem */
  union {
    struct nt_tls *tls;         /* TLS state (nt_tls.c) */
    struct nt_mem_peer *mem;    /* memory transport: the peer (nt_conn_mem.c) */
  };
  int fd;                       /* TCP, TLS: the socket, ours, closed in the handle's close
                                   callback; -1 otherwise */
  uint32_t refs;                /* 1 while the handle is open + async operations */
  uint8_t state;
  uint8_t close_reason;
  uint8_t pmd;                  /* permessage-deflate: the server window bits the client
                                   allows (8..15); 0 when not negotiated (nt_deflate.h) */
  uint8_t fb_have;              /* frame tracker: header bytes seen so far (fb_hdr) */
  unsigned dirty : 1;           /* on env->dirty */
  unsigned shutdown_after_flush : 1; /* close the handle once the queue is empty */
  unsigned welcomed : 1;
  unsigned api : 1;             /* keep-alive mode (env->keep_alive): the API port */
  unsigned pending_abort : 1;   /* slow consumer found during fan-out: abort at flush */
  unsigned handle_closing : 1;  /* uv_close called */
  unsigned http_busy : 1;       /* API: a request is being answered (maybe later) */
  unsigned http_dispatching : 1; /* inside the request loop of a read */
  unsigned fb_frag : 1;         /* frame tracker: a fragmented data message is in progress */
  unsigned reading : 1;         /* input wanted (nt_conn_set_reading) */
  unsigned wblocked : 1;        /* output waits for the socket to take more (queue or TLS
                                   ciphertext): flushed on UV_WRITABLE, not per loop turn */
  unsigned events : 2;          /* UV_READABLE | UV_WRITABLE the poll handle watches now */
  unsigned ping_sent : 1;       /* a ping went out since the client was last heard */
  unsigned qpaused : 1;         /* reading paused: the queue is over its bound (pongs,
                                   pipelined API answers), resumed once it drains */
  uint8_t fb_hdr[14];           /* frame tracker: header bytes of the current frame */

  /* outbound queue: frames[qhead..qtail), first one partly written at qoff; q is qin
   * until more frames are queued at once (an idle connection allocates nothing) */
  uint32_t qhead, qtail, qcap, qoff;
  uint32_t uidx;                /* position in uset->conns */

  nt_http_parser *http;         /* HTTP phase only */
  nt_conn_held *held;           /* see nt_conn_held; NULL almost always */
  wslay_event_context_ptr ws;   /* WebSocket phase: created when bytes arrive, freed again
                                   when idle */
  uint64_t fb_left;             /* frame tracker: payload bytes left in the current frame */

  nt_frame **q;
  nt_frame *qin[NT_CONN_QINLINE];
  size_t qbytes;                /* unsent bytes queued */
  struct nt_conn *next_dirty;

  /* identity and membership: set and read by the layers above only */
  nt_identity ident;
  nt_conn_room *rooms;          /* &room0 (or NULL) until a second room is joined */
  nt_conn_room room0;           /* the usual case: one room (nt_hub_join) */
  struct nt_userset *uset;

  uint64_t connected_at;        /* uv_now ms (the API reports it) */
  nt_ratelimit rl;              /* client message rate (chat's nt_limits.c) */

  /* list of all connections of the owner */
  struct nt_conn *prev, *next;
  const char *user_agent;       /* interned by the owner, may be NULL */

  /* liveness: nt_conn_stamp of uv_now */
  uint32_t last_active;
  uint32_t last_ping;
  uint32_t closing_since;
  uint16_t nrooms, caprooms;
  char id[NT_CONN_ID_LEN + 1];
  uint8_t peer[16];             /* source address, binary (nt_conn_peer formats it): the
                                   socket's, or the trusted X-Forwarded-For first hop */
  uint8_t peer_family;          /* 0 unknown, 4 (peer[0..3]) or 6 */
  uint16_t fb_nfrag;            /* frame tracker: frames of the fragmented message so far
                                   (fits in the struct's tail padding) */
} nt_conn;

/* Frames one fragmented message may have: wslay keeps a buffer per fragment, so 65,000
 * one-byte continuations would cost ~100 bytes each against a 64 KiB message limit. Past
 * it the connection is closed with 1009 ("message too fragmented"). */
#define NT_WS_MAX_FRAGMENTS 1024

/* Liveness stamps keep the low 32 bits of uv_now() (ms): ages are unsigned differences,
 * exact below 49 days. Every stamp is young by construction: the idle timeout closes a
 * silent connection (the sweep caps it at NT_CONN_AGE_MAX), the close deadline bounds
 * closing_since, and last_ping only counts while ping_sent says it belongs to the
 * current silence. */
#define NT_CONN_AGE_MAX ((uint32_t)1 << 31)
static inline uint32_t nt_conn_stamp(uint64_t now_ms) { return (uint32_t)now_ms; }
static inline uint32_t nt_conn_age(uint64_t now_ms, uint32_t stamp) {
  return (uint32_t)now_ms - stamp;
}

#define NT_CONN_PEER_STRLEN 46 /* INET6_ADDRSTRLEN: a formatted source address and NUL */

/* Allocates a connection for the accepted, connected socket `fd` (refs = 1, state HTTP,
 * TCP transport) and takes ownership of the descriptor (it is closed with the
 * connection). Returns NULL on failure: the descriptor is then still the caller's. */
nt_conn *nt_conn_new(const nt_conn_env *env, int fd);

/* ---- memory transport (nt_conn_mem.c): a connection without a socket ----
 * The peer is the caller's (it outlives the connection). What the connection writes is
 * appended to out; bytes fed with nt_mem_peer_write are read as from a socket (when the
 * connection reads, on this call or a later loop turn). A window makes the peer's
 * receive buffer finite, as a socket's is: the connection's output then waits until the
 * peer consumes. */
typedef struct nt_mem_peer {
  uint8_t *out;                 /* everything the connection wrote, in order (malloc'd) */
  size_t out_len, out_cap;
  size_t out_read;              /* bytes of out the peer has consumed (nt_mem_peer_consume) */
  size_t window;                /* unconsumed bytes the peer holds at most; 0: unlimited */
  uint8_t *in;                  /* fed, not read yet (reading paused) */
  size_t in_len;
  int eof;                      /* the peer closed its side: read after `in` */
  int closed;                   /* the connection closed its end (handle closed) */
  struct nt_conn *conn;         /* NULL once the connection is freed */
} nt_mem_peer;

/* Allocates a connection (refs = 1, state HTTP) whose peer is `peer` (zeroed by the
 * caller, window set if wanted). NULL on failure. */
nt_conn *nt_conn_mem_new(const nt_conn_env *env, nt_mem_peer *peer);
/* The peer sends `len` bytes (copied). Read now when the connection reads. */
void nt_mem_peer_write(nt_mem_peer *p, const void *data, size_t len);
/* The peer closes its side: the connection sees EOF after what it was sent. */
void nt_mem_peer_shutdown(nt_mem_peer *p);
/* The peer consumed output up to out_len: a connection waiting on the window writes on. */
void nt_mem_peer_consume(nt_mem_peer *p);
/* Frees the peer's buffers; a connection still alive is aborted (as by a reset). */
void nt_mem_peer_free(nt_mem_peer *p);

/* The source address as text, written to `buf` (NT_CONN_PEER_STRLEN bytes); returns buf
 * ("" when unknown). */
const char *nt_conn_peer(const nt_conn *c, char *buf);
/* Sets the source address from a socket address, or from text (`ip` of length `len`, an
 * IPv4 or IPv6 address). Return 0, or NT_EINVAL with the address unchanged. */
int nt_conn_set_peer_addr(nt_conn *c, const struct sockaddr *sa);
int nt_conn_set_peer(nt_conn *c, const char *ip, size_t len);
/* nt_conn_peer into a buffer that lives until the end of the enclosing block (logs). */
#define NT_CONN_PEER_STR(c) nt_conn_peer((c), (char[NT_CONN_PEER_STRLEN]){0})

/* Starts reading. Returns 0 or a negative code (the connection is then closed). */
int nt_conn_start(nt_conn *c);

static inline int nt_conn_is_open(const nt_conn *c) { return c->state != NT_CONN_CLOSING; }
static inline void nt_conn_ref(nt_conn *c) { c->refs++; }
/* Drops a reference; frees the connection when it was the last one. */
void nt_conn_unref(nt_conn *c);

/* Switches to the WebSocket phase after the 101 response has been queued. `rest` (bytes
 * that followed the request, borrowed) is copied and fed to wslay when reading resumes
 * (at once after a request read synchronously, nt_conn_resume otherwise). Returns 0 or
 * NT_ENOMEM (the connection is unchanged). */
int nt_conn_upgrade(nt_conn *c, const uint8_t *rest, size_t rest_len);

/* API keep-alive: the answer to the current request has been queued. With keep_alive
 * the connection goes on with the next request (bytes already received first); otherwise
 * it closes once the answer is out. Once per request, from any loop callback. */
void nt_conn_http_done(nt_conn *c, int keep_alive);

/* After an upgrade completed outside a read callback (external authorizer): resumes
 * reading and processes the bytes given to nt_conn_upgrade. */
void nt_conn_resume(nt_conn *c);

/* Queues a shared frame (takes a new reference). Closes the connection as a slow consumer
 * when the queue would exceed env->send_queue_bytes; returns NT_ECLOSED then or when closing. */
int nt_conn_send(nt_conn *c, nt_frame *f);

/* Queues raw bytes (copied), e.g. an HTTP response. */
int nt_conn_send_raw(nt_conn *c, const void *data, size_t len);

/* Queues a complete HTTP response (nt_http_response: `extra` header lines may be NULL)
 * and closes once it is out. The _text form sends `text` as text/plain. */
void nt_conn_respond(nt_conn *c, int status, const char *type, const void *body, size_t len,
                     const char *extra);
void nt_conn_respond_text(nt_conn *c, int status, const char *text);

/* Starts the WebSocket close handshake with `code` (RFC 6455 §7.4) and a short reason,
 * then closes the TCP connection once the close frame is out (or after a grace period). */
void nt_conn_ws_close(nt_conn *c, uint16_t code, const char *reason, int why);

/* Closes after the queue has been flushed (HTTP answers). */
void nt_conn_close_after_flush(nt_conn *c, int why);

/* Closes at once, dropping queued output (slow consumer, fatal errors). Idempotent. */
void nt_conn_abort(nt_conn *c, int why);

/* Writes as much of the queue as the transport takes (sendmsg batches); the rest waits
 * for UV_WRITABLE. nt_conn_flush_dirty calls it for each dirty connection. */
void nt_conn_flush(nt_conn *c);
/* Flushes every connection on the dirty list `*head` (and empties it): once per loop turn
 * (uv_prepare and uv_check), so everything queued by the turn's callbacks leaves in one
 * write. */
void nt_conn_flush_dirty(nt_conn **head);
/* Puts the connection on its environment's dirty list (idempotent). */
void nt_conn_mark_dirty(nt_conn *c);

/* Frees what an idle connection can do without: a queue array grown by a burst, when
 * nothing is queued (back to the inline slots). From the owner's periodic sweep, never
 * per message. */
void nt_conn_trim(nt_conn *c);

/* ---- for transports (nt_conn_tcp.c, nt_tls.c, nt_conn_mem.c) ---- */

/* A zeroed connection on `tp` (refs 1, HTTP phase, fd -1); the transport initialises
 * the handle (h) with handle.data = the connection. NULL: no memory. */
nt_conn *nt_conn_alloc(const nt_conn_env *env, const nt_transport *tp);

/* Plaintext input: HTTP phase or WebSocket frames, as read from a plain TCP socket. */
void nt_conn_input(nt_conn *c, const uint8_t *data, size_t len);
/* `n` bytes from the head of the queue have been written (or encrypted): drops them. */
void nt_conn_wrote(nt_conn *c, size_t n);
/* A plain transport's flush starts with nt_conn_flush_ready (0: do not write — closing,
 * a slow consumer found during fan-out is aborted now, or the peer is known to be full)
 * and ends with nt_conn_flush_done (watch for writability while output is left; close
 * once it is all out and a close after the flush was asked for). */
int nt_conn_flush_ready(nt_conn *c);
void nt_conn_flush_done(nt_conn *c);
/* Closes the handle (once); the connection is freed after its close callback. */
void nt_conn_close_handle(nt_conn *c);
/* Reads from the peer arrived (`n` bytes, counted, liveness stamped) at `data`. */
void nt_conn_received(nt_conn *c, const uint8_t *data, size_t n);
/* The transport can write again: flushes and re-evaluates what to watch. */
void nt_conn_writable(nt_conn *c);
/* TCP's watch and close, for transports over a socket (nt_tls.c). */
int nt_conn_tcp_watch(nt_conn *c, int events);
void nt_conn_tcp_closed(nt_conn *c);
/* Output is waiting for the socket (on), or no longer (off): watches UV_WRITABLE, whose
 * event calls nt_conn_flush; while on, the per-turn flush leaves the socket alone. */
void nt_conn_want_write(nt_conn *c, int on);
/* Pauses (off) or resumes (on) reading. */
void nt_conn_set_reading(nt_conn *c, int on);

#endif
