/* nt_conn: one client connection (TCP, or TLS through nt_tls.h) — HTTP phase, WebSocket
 * phase, bounded outbound queue.
 *
 * Ownership: the node creates connections on accept and owns them. A connection is closed
 * by marking it (nt_conn_close) and freed only after libuv's close callback AND after the
 * last reference taken by an asynchronous operation (nt_conn_ref/unref) is dropped, so
 * callbacks of pending Redis or NATS requests may still look at a closed connection
 * (check nt_conn_is_open) but never at freed memory.
 * Threading: loop thread only.
 *
 * Outbound path: frames (nt_frame, shared and reference counted) are appended to the
 * connection's queue and the connection is put on the node's dirty list; the node flushes
 * every dirty connection once per loop turn (uv_check), so many frames leave in one
 * writev. A queue above --send-queue-bytes closes the connection as a slow consumer. */
#ifndef NT_CONN_H
#define NT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "nt_auth.h"
#include "nt_frame.h"
#include "nt_http.h"
#include "nt_limits.h"

struct nt_node;
struct nt_room;
struct nt_userset;
struct nt_tls;
struct nt_conn;

/* A transport moves a connection's bytes between the socket and the connection (Redis'
 * connection types): plain TCP (nt_conn.c) or TLS (nt_tls.c). TCP pays one indirect call
 * per read and per flush for it, nothing else. */
typedef struct nt_transport {
  const char *name;
  /* Bytes read from the socket (borrowed for the call): passes the plaintext on with
   * nt_conn_input, and may abort the connection. */
  void (*read)(struct nt_conn *c, const uint8_t *data, size_t len);
  /* Writes the queue as far as the socket takes it (nt_conn_flush). */
  void (*flush)(struct nt_conn *c);
  /* Frees the transport's state (from the connection's own free). */
  void (*free)(struct nt_conn *c);
} nt_transport;

extern const nt_transport nt_transport_tcp;

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
} nt_conn_room;

typedef struct nt_conn {
  uv_tcp_t tcp;                 /* first member: handle.data == the connection */
  struct nt_node *node;
  const nt_transport *tp;       /* &nt_transport_tcp or &nt_transport_tls */
  struct nt_tls *tls;           /* TLS state (nt_tls.c); NULL for plain TCP */
  uint32_t refs;                /* 1 while the handle is open + async operations */
  uint8_t state;
  uint8_t close_reason;
  uint8_t writing;              /* a uv_write is in flight */
  uint8_t dirty;                /* on the node's dirty list */
  uint8_t shutdown_after_flush; /* close the handle once the queue is empty */
  uint8_t welcomed;
  uint8_t api;                  /* accepted on --api-listen */
  uint8_t pending_abort;        /* slow consumer found during fan-out: abort at flush */
  uint8_t handle_closing;       /* uv_close called */
  uint8_t pmd;                  /* permessage-deflate: the server window bits the client
                                   allows (8..15); 0 when not negotiated (nt_deflate.h) */

  /* HTTP phase only */
  nt_http_parser *http;
  uint8_t http_busy;            /* API: a request is being answered (maybe later) */
  uint8_t http_dispatching;     /* inside the request loop of a read */
  uint8_t *http_hold;           /* API: pipelined bytes read before the answer (malloc'd) */
  size_t http_hold_len;

  /* WebSocket phase */
  wslay_event_context_ptr ws;   /* created when bytes arrive, freed again when idle */
  const uint8_t *rbuf;          /* bytes being fed to wslay (borrowed during a read) */
  size_t rlen;
  uint64_t fb_left;             /* frame tracker: payload bytes left in the current frame */
  uint8_t fb_hdr[14];           /* frame tracker: header bytes seen so far */
  uint8_t fb_have;
  uint8_t fb_frag;              /* a fragmented data message is in progress */

  /* outbound queue: frames[qhead..qtail), first one partly written at qoff; q is qin
   * until more frames are queued at once (an idle connection allocates nothing) */
  nt_frame **q;
  nt_frame *qin[NT_CONN_QINLINE];
  uint32_t qhead, qtail, qcap, qoff;
  uint32_t inflight;            /* frames from qhead handed to the in-flight uv_write */
  size_t qbytes;                /* unsent bytes queued */
  uv_write_t *wreq;             /* only while a uv_write is in flight (slow path) */
  struct nt_conn *next_dirty;

  /* identity and membership */
  char id[NT_CONN_ID_LEN + 1];
  nt_identity ident;
  nt_conn_room *rooms;          /* &room0 (or NULL) until a second room is joined */
  uint16_t nrooms, caprooms;
  nt_conn_room room0;           /* the usual case: one room (nt_hub_join) */
  struct nt_userset *uset;
  uint32_t uidx;                /* position in uset->conns */

  /* liveness (ms, uv_now) */
  uint64_t connected_at;        /* wall clock ms */
  uint64_t last_active;
  uint64_t last_ping;
  uint64_t closing_since;
  nt_ratelimit rl;              /* client message rate (nt_limits.c) */

  /* list of all connections of the node */
  struct nt_conn *prev, *next;
  uint8_t peer[16];             /* source address, binary (nt_conn_peer formats it): the
                                   socket's, or the trusted X-Forwarded-For first hop */
  uint8_t peer_family;          /* 0 unknown, 4 (peer[0..3]) or 6 */
  char *user_agent;             /* malloc'd, may be NULL */
} nt_conn;

#define NT_CONN_PEER_STRLEN 46 /* INET6_ADDRSTRLEN: a formatted source address and NUL */

/* Allocates a connection for an accepted socket (refs = 1, state HTTP) and links it into
 * the node. Returns NULL on failure (the caller closes the server's pending socket). */
nt_conn *nt_conn_new(struct nt_node *node);

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

/* Switches to the WebSocket phase after the 101 response has been queued: creates the
 * wslay server context and feeds it `rest` (bytes that followed the request). */
int nt_conn_upgrade(nt_conn *c, const uint8_t *rest, size_t rest_len);

/* API keep-alive: the answer to the current request has been queued. With keep_alive
 * the connection goes on with the next request (bytes already received first); otherwise
 * it closes once the answer is out. Once per request, from any loop callback. */
void nt_conn_http_done(nt_conn *c, int keep_alive);

/* After an upgrade completed outside a read callback (external authorizer): resumes
 * reading and processes the bytes given to nt_conn_upgrade. */
void nt_conn_resume(nt_conn *c);

/* Queues a shared frame (takes a new reference). Closes the connection as a slow consumer
 * when the queue would exceed the node's bound; returns NT_ECLOSED then or when closing. */
int nt_conn_send(nt_conn *c, nt_frame *f);

/* Queues raw bytes (copied), e.g. an HTTP response. */
int nt_conn_send_raw(nt_conn *c, const void *data, size_t len);

/* Starts the WebSocket close handshake with `code` (RFC 6455 §7.4) and a short reason,
 * then closes the TCP connection once the close frame is out (or after a grace period). */
void nt_conn_ws_close(nt_conn *c, uint16_t code, const char *reason, int why);

/* Closes after the queue has been flushed (HTTP answers). */
void nt_conn_close_after_flush(nt_conn *c, int why);

/* Closes at once, dropping queued output (slow consumer, fatal errors). Idempotent. */
void nt_conn_abort(nt_conn *c, int why);

/* Writes as much of the queue as the socket takes (one writev), starting a uv_write for
 * the rest. Called by the node for each dirty connection once per loop turn. */
void nt_conn_flush(nt_conn *c);

/* Frees what an idle connection can do without: a queue array grown by a burst, when
 * nothing is queued or being written (back to the inline slots). From the node's
 * periodic sweep, never per message. */
void nt_conn_trim(nt_conn *c);

/* ---- for transports (nt_tls.c) ---- */

/* Plaintext input: HTTP phase or WebSocket frames, as read from a plain TCP socket. */
void nt_conn_input(nt_conn *c, const uint8_t *data, size_t len);
/* `n` bytes from the head of the queue have been written (or encrypted): drops them. */
void nt_conn_wrote(nt_conn *c, size_t n);
/* Closes the handle (once); the connection is freed after its close callback. */
void nt_conn_close_handle(nt_conn *c);

#endif
