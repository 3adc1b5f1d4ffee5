/* fz_node: an in-process standalone node (in-memory bus and presence) for fuzz targets
 * that need the real connection path. A "client" is the peer of a connection on the
 * memory transport (nt_node_connect_mem): bytes go through the HTTP parser, the upgrade,
 * wslay and the client protocol exactly as from a socket, without one (no descriptors,
 * no ports, no TIME_WAIT across millions of runs).
 *
 * Every byte the node writes to a client can be checked with fz_check_output(): the
 * HTTP response head, then RFC 6455 server frames (unmasked, known opcodes, control
 * frames short and unfragmented, close codes valid, text frames valid UTF-8 JSON). A
 * violation aborts (the fuzzer reports it). */
#ifndef FZ_NODE_H
#define FZ_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "nt_node.h"

typedef struct fz_client {
  nt_mem_peer peer;  /* the connection's peer (memory transport) */
  int open;
  uint8_t *out;      /* everything the node wrote to us (peer.out, after fz_sync) */
  size_t out_len;
  int eof;           /* the node closed its end */
  int hold;          /* 1: fz_sync does not consume (a peer that stopped reading);
                        peer.window bounds what the node may write unread (0: none) */
  nt_conn *conn;     /* the node's side (may be freed: check with fz_client_alive) */
} fz_client;

/* Starts the node once (flags added to the harness defaults; NULL-terminated). The API
 * port's admin token is FZ_ADMIN_TOKEN. */
#define FZ_ADMIN_TOKEN "fuzz-admin-token"
nt_node *fz_node_start(const char *const *extra);
/* The same with the memory room history attached when `history` (as the standalone
 * node runs it, configured by the --history-* flags). */
nt_node *fz_node_start_history(const char *const *extra, int history);
/* The node's memory presence (to fill it with other nodes' users). */
nt_presence *fz_presence(void);
/* The node's monotonic clock stands still from fz_node_start on; this moves it by `ms`
 * (timers due then run at the next fz_pump). */
void fz_advance(uint64_t ms);
/* Records the connections a target keeps open between runs; fz_node_settled aborts when
 * more are allocated (a run's connections must be freed at its end; a kept one may have
 * been closed by the run). */
void fz_node_keep(void);
void fz_node_settled(void);

/* Opens a client: the node side is accepted as a new nt_conn (on the WebSocket port, or
 * on the API port with fz_client_open_api). Returns 0 or -1. */
int fz_client_open(fz_client *cl);
int fz_client_open_api(fz_client *cl);
/* (Re)connects `m` as an upgraded client of (t1, user) that joined `room`, with a
 * deterministic connection id (the node's id generator is reseeded first), written to
 * `id`. Returns the number of output bytes already checked (response head and frames). */
size_t fz_member_connect(fz_client *m, const char *user, const char *room,
                         char id[NT_CONN_ID_LEN + 1]);
/* Sends all of `data` (read by the node now, or once it reads again). */
void fz_client_write(fz_client *cl, const void *data, size_t len);
/* Runs the loop without blocking `rounds` times, reading what the node sent. */
void fz_pump(fz_client *cl, int rounds);
/* Refreshes out, out_len and eof from the peer (and consumes, unless cl->hold). */
void fz_sync(fz_client *cl);
/* Consumes what the node wrote (a held reader reading once). */
void fz_client_read(fz_client *cl);
/* Shuts our side (the node sees EOF), pumps until the node freed the connection
 * (or forces it closed after a bound), checks the output and releases the client. */
void fz_client_finish(fz_client *cl);
/* Checks a client's output from its start (see above); aborts on a violation. Returns
 * the bytes checked (complete response head and frames). */
size_t fz_check_output(const uint8_t *buf, size_t len);
#define FZ_PMD 4       /* in *closed: permessage-deflate negotiated (RSV1 allowed) */
#define FZ_PMD_NOCTX 8 /* ... with server_no_context_takeover */
/* Checks server frames only; *closed carries "a close frame was seen" across calls.
 * Returns the bytes of complete frames checked (the rest waits for more input). */
size_t fz_check_frames(const uint8_t *buf, size_t len, int *closed);
/* 1 while the client's connection is not freed. */
int fz_client_alive(const fz_client *cl);

/* A valid upgrade request for (tenant, user) with an HS256 token; caller frees. The _ext
 * variant also offers Sec-WebSocket-Extensions `extensions` (NULL: none). */
char *fz_upgrade_request(const char *tenant, const char *user, size_t *len);
char *fz_upgrade_request_ext(const char *tenant, const char *user, const char *extensions,
                             size_t *len);
/* One masked client frame; returns its length (out must hold len + 14). */
size_t fz_frame(uint8_t *out, int fin, int opcode, const void *payload, size_t len);

/* Structured input of the WebSocket targets: records [b0][len16 big-endian][payload],
 * each made a masked client frame with b0's FIN/RSV/opcode bits (the fuzzer reaches the
 * protocol without learning masking). Returns the frames (caller frees) or NULL. */
uint8_t *fz_structured(const uint8_t *d, size_t n, size_t *out_len);

#endif
