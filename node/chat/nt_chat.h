/* nt_chat: the chat layer's state — bus, presence, verifier, history, the local room
 * index, counters, readiness — and the functions its files share (nt_client.c: client
 * actions and lifecycle; nt_fanout.c: bus messages to local members; nt_upgrade.c:
 * admitting a WebSocket upgrade). The composition root (nt_node) embeds one and wires
 * it to the listeners; node/ops reads it to answer the HTTP API.
 * Ownership: the node owns the chat state and the backends attached to it.
 * Threading: loop thread only (bus and presence callbacks arrive on the loop). */
#ifndef NT_CHAT_H
#define NT_CHAT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nt_auth.h"
#include "nt_bus.h"
#include "nt_clock.h"
#include "nt_config.h"
#include "nt_conn.h"
#include "nt_hub.h"
#include "nt_map.h"
#include "nt_metrics.h"
#include "nt_presence.h"
#include "nt_rand.h"

struct Natter__Envelope;
struct nt_resume;

/* The operations log lines chat produces (refused upgrades, connections opened and
 * closed), written by node/ops' access log: the root sets these hooks (designated
 * initializers), so chat never calls up. Each may be NULL. */
typedef struct nt_chat_log {
  void (*upgrade_refused)(const nt_conn *c, int status, const char *why);
  void (*conn_open)(const nt_conn *c);
  void (*conn_close)(const nt_conn *c, uint64_t now_ms);
} nt_chat_log;

typedef struct nt_chat {
  uv_loop_t *loop;
  const nt_config *cfg;
  nt_bus *bus;
  nt_presence *pres;
  nt_auth *auth;
  struct nt_resume *res;   /* room history (nt_resume.c); NULL with --history off */
  struct nt_deflate *pmd;  /* permessage-deflate streams; NULL with --compression off */
  nt_hub hub;
  nt_map uas;              /* interned User-Agent strings of the connections (nt_intern) */
  nt_metrics m;

  size_t nconns;           /* all connections, any phase */
  size_t nws;              /* upgraded connections */
  long max_ws;

  char id[NT_ID_MAX + 1];
  char node_subject[NT_SUBJECT_MAX];
  nt_bus_sub *node_sub;
  int bus_up, store_up, bus_ever_up, store_ever_up;
  int draining, stopping, stopped;

  char **origins;          /* --allowed-origins, split; none: any */
  size_t norigins;
  struct nt_rand *rand;    /* ids clients see (nt_rand.h) */
  struct nt_integ *integ;  /* HTTP integration (nt_integ.c); NULL without --integration-url */
  struct nt_webhook *webhook; /* signed webhooks (nt_webhook.c); NULL without --webhook-url */
  nt_chat_log log;         /* operations log lines (set by the root) */
} nt_chat;

/* 1 when NATS and Redis are connected and the node is neither draining nor stopping
 * (GET /readyz). */
int nt_chat_ready(const nt_chat *n);

/* ---- nt_upgrade.c: admitting a WebSocket upgrade (GET /ws) ---- */

/* Checks the handshake, the origin, the capacity and the token, then asks the external
 * authorizer (--auth-request) or accepts at once. `rest` holds bytes that followed the
 * request. */
void nt_upgrade_handle(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                       size_t rest_len);
/* Completes an upgrade that passed authentication (and the authorizer): capacity again
 * (an authorizer answers later), 101, WebSocket phase, welcome. */
void nt_upgrade_accept(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                       size_t rest_len);
/* Sets the origins --allowed-origins lists (comma-separated; NULL or "": any). */
void nt_upgrade_set_origins(nt_chat *n, const char *list);
/* Refuses an upgrade with `status` and a plain-text reason, then closes. */
void nt_upgrade_refuse(nt_chat *n, nt_conn *c, int status, const char *why);

/* ---- nt_client.c ---- */

/* The connection handler's on_message and on_closing (ud: the chat state). */
void nt_client_on_ws_message(void *ud, nt_conn *c, int opcode, const uint8_t *data,
                             size_t len);
void nt_client_on_closing(void *ud, nt_conn *c);
void nt_client_on_message(nt_chat *n, nt_conn *c, const uint8_t *data, size_t len);
void nt_client_welcome(nt_chat *n, nt_conn *c);
void nt_client_closing(nt_chat *n, nt_conn *c);
void nt_client_send_error(nt_chat *n, nt_conn *c, const char *code, const char *msg,
                          const char *reqid);
void nt_client_publish_event(nt_chat *n, int kind, const nt_conn *c, const char *tenant,
                             const char *user, const char *conn_id, const char *room,
                             int reason);
/* Presence handler callbacks (nt_presence_handler, ud: the chat state). */
void nt_client_on_conn_lost(void *ud, const nt_conn_info *info);
void nt_client_on_offline(void *ud, const char *tenant, const char *room, const char *user);
void nt_client_on_online(void *ud, const char *tenant, const char *room, const char *user);
void nt_client_on_store_state(void *ud, int connected);
/* A room or direct message to publish (designated initializers; see
 * nt_client_publish_message). */
typedef struct nt_client_msg {
  const char *subject;      /* natter.room.<t>.<r> or natter.user.<t>.<u> (nt_subject) */
  const char *tenant;
  const char *room;         /* a room message: the room */
  const char *target_user;  /* a direct message: the user; NULL for a room message */
  const char *sender_user;  /* "" for the server (rendered "userId":null,"server":true) */
  const char *sender_conn;  /* "" for the server */
  int exclude_sender;       /* excludeSelf: not back to sender_conn */
  const char *payload;      /* the message, JSON text (borrowed) */
  size_t len;
  const char *id;           /* the sender's message id (nt_client_msg_id_valid), or NULL:
                             * a new server id */
  /* A room message with history on: called once, later, with the history's outcome
   * (nt_hist_ack.status: 0 stored, NT_ETIMEOUT, NT_ELIMIT, NT_EBUS, NT_ECLOSED) */
  void (*on_stored)(void *ud, int status);
  void *ud;
} nt_client_msg;
#define NT_MSG_ID_MAX 64          /* a sender's message id: 1..64 bytes */
/* 1 when `id` is a valid sender message id: an id (docs/protocol.md §4) of 1..64 bytes. */
int nt_client_msg_id_valid(const char *id);
/* Builds the envelope of `m` with its id (m->id, or a new one; written to `id`) and
 * publishes it — a room message through the history when it is on, with the key
 * "<tenant>:<sender user>:<id>" for deduplication. The one publish of client and API
 * messages. Returns 1 when m->on_stored will be called (a room message, history on),
 * 0 when published (to the NATS connection: nothing will be called), or an nt_err code
 * (logged). */
int nt_client_publish_message(nt_chat *n, const nt_client_msg *m,
                              char id[NT_MSG_ID_MAX + 1]);
/* Pushes `data` to one local connection as a text frame (valid UTF-8) or a binary one.
 * Returns nt_conn_send's result (NT_ECLOSED: closing or just closed as slow). */
int nt_client_push(nt_conn *c, const uint8_t *data, size_t len);
/* Closes one local connection with 1000 "closed by the server" (reason: kicked). */
void nt_client_kick(nt_conn *c);
/* A local connection as the API describes it (GET /@connections/{id}, and the owner's
 * answer over the node subject): malloc'd JSON, length in *len. NULL: no memory. */
char *nt_client_describe(nt_chat *n, const nt_conn *c, size_t *len);

/* ---- nt_fanout.c ---- */

/* The one entry of bus input: the bus handler's on_msg, and its on_seq_msg with history
 * on (ud: the chat state). Both decode once and deliver through nt_fanout_room (rooms),
 * sequenced and live-only copies on a live subject by way of nt_resume_on_live. */
void nt_fanout_on_bus_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                          const char *reply, const nt_bus_sub *sub);
void nt_fanout_on_bus_seq(void *ud, const char *subject, const uint8_t *data, size_t len,
                          const nt_bus_seq *seq);
/* The delivery loop of a room: queues `f` on every member of `r` except the connection
 * `skip` (an id, may be NULL) and those still resuming there. Returns how many took it. */
size_t nt_fanout_room(nt_chat *n, nt_room *r, nt_frame *f, const char *skip);
/* The bus handler's on_state (ud: the chat state). */
void nt_fanout_on_bus_state(void *ud, int connected);
/* 1 when an envelope from the bus may be rendered into client frames. */
int nt_fanout_renderable(const struct Natter__Envelope *env);

#endif
