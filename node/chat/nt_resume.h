/* nt_resume: room history on a node (docs/history.md) — the sequenced live path with gap
 * detection and repair, resume on `joinRoom` with `since`, the `history` action and the
 * page behind GET /v1/tenants/{t}/rooms/{r}/messages.
 *
 * With history on, a node subscribes to a room's live subject (natter.live.room.<t>.<r>)
 * instead of its room subject, and every message arriving there carries the stream
 * position {seq, last}. Per room the node keeps the last sequence it delivered; a message
 * whose `last` is newer means messages were missed (slow consumer, NATS reconnect): the
 * node reads them from the history and delivers them first, holding later ones. A
 * connection that joins with `since` is held out of the live fan-out while its replay is
 * read; live messages meanwhile are buffered for it and merged after the replay, by
 * sequence, so it sees every message once and in order.
 *
 * Threading: loop thread only. Part of the chat layer (state in nt_chat.h). */
#ifndef NT_RESUME_H
#define NT_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "nt_bus.h"
#include "nt_history.h"
#include "nt_prom.h"

struct nt_chat;
struct nt_room;
struct nt_conn;
struct nt_req;

/* The sequencing rule, shared by rooms and resuming connections: given the last sequence
 * delivered (`cur`, 0: none yet) and whether the next one must be accepted as it is
 * (`force`, after a gap that could not be repaired), what to do with a message at `seq`
 * whose predecessor in the room is `prev` (seq 0: a live-only message, outside the
 * sequence). Pure. */
enum { NT_SEQ_DELIVER = 0, NT_SEQ_DUP = 1, NT_SEQ_GAP = 2 };
static inline int nt_seq_check(uint64_t cur, int force, uint64_t seq, uint64_t prev) {
  if (seq == 0) return NT_SEQ_DELIVER;
  if (cur && seq <= cur) return NT_SEQ_DUP;
  if (cur == 0 || force || prev <= cur) return NT_SEQ_DELIVER;
  return NT_SEQ_GAP;
}

/* Gives the node its history (takes ownership; NULL: history off). Call before
 * nt_node_start. Returns 0, or NT_ENOMEM after destroying `h`. */
int nt_resume_attach(struct nt_chat *n, nt_history *h);

/* Node stop, before the bus goes: destroys the history (pending reads fail; their
 * callbacks run now). */
void nt_resume_close(struct nt_chat *n);

/* Node free, before the hub is freed: releases the rooms' history state. */
void nt_resume_free(struct nt_chat *n);

/* A room got its first local member: sets up its state and returns the subject to
 * subscribe for its messages (the live subject), or NULL on allocation failure. */
const char *nt_resume_room_open(struct nt_chat *n, struct nt_room *r);

/* The room lost its last local member (after unsubscribing, before nt_hub_room_free). */
void nt_resume_room_close(struct nt_chat *n, struct nt_room *r);

/* `c` leaves `r` (before nt_hub_leave): forgets a resume in progress. */
void nt_resume_leave(struct nt_chat *n, struct nt_conn *c, struct nt_room *r);

/* Publishes a room message through the history (stored and sequenced; `pub` as for
 * nt_history_publish, may be NULL): returns 1 when it went to the history (pub->on_ack
 * will be called), 0 when straight to the bus (no history: nothing will be called), or
 * a negative code as nt_bus_publish / nt_history_publish return. */
int nt_resume_publish(struct nt_chat *n, const char *subject, const void *data, size_t len,
                      const nt_hist_pub *pub);

/* A message of room `r` from its live subject (the fan-out's bus entry): `env` decoded
 * and checked (NULL: nobody can be shown it; counted already), `seq` its stream position
 * (NULL: live-only). Sequenced, repaired when a gap shows, then delivered through
 * nt_fanout_room and to the room's resumers. */
struct Natter__Envelope;
void nt_resume_on_live(struct nt_chat *n, struct nt_room *r, const struct Natter__Envelope *env,
                       const nt_bus_seq *seq);
/* 1 when room `r` takes live messages (history on and the room open). */
int nt_resume_room_live(const struct nt_room *r);
/* Connections resuming in `r` (held out of its fan-out), and whether `c` is one. */
size_t nt_resume_resumers(const struct nt_room *r);
int nt_resume_is_resumer(const struct nt_room *r, const struct nt_conn *c);

/* joinRoom with `since`, right after the hub join: holds `c` out of the room's fan-out and
 * starts reading what it missed. The `joined` frame (with `recovered`) is then sent by
 * nt_resume_joined, followed by the replay and what arrived meanwhile. */
void nt_resume_begin(struct nt_chat *n, struct nt_conn *c, struct nt_room *r, uint64_t since,
                     const char *reqid);

/* The presence join of `c` in `room` answered with `members`: returns 1 when a resume of
 * `c` in that room takes over the `joined` reply, 0 when the caller sends it. */
int nt_resume_joined(struct nt_chat *n, struct nt_conn *c, const char *room,
                     const char *const *members, size_t n_members);

/* The `history` action. */
void nt_resume_history(struct nt_chat *n, struct nt_conn *c, const struct nt_req *rq);

/* A history page as the HTTP API's JSON body: calls cb(ud, status, body, len) later
 * (status 0 with the body, borrowed; NT_EAGAIN when the history is unavailable; another
 * code on failure). Returns 0, NT_ENOTFOUND (history off), or another code, in which case
 * cb is never called. `limit` 0 means the default (50); more than 500 is capped. */
typedef void (*nt_resume_page_cb)(void *ud, int status, const char *body, size_t len);
int nt_resume_api_page(struct nt_chat *n, const char *tenant, const char *room,
                       uint64_t before, size_t limit, nt_resume_page_cb cb, void *ud);

/* Writes the history metrics (Prometheus text) to `w`; nothing when history is off. */
void nt_resume_metrics(struct nt_chat *n, nt_prom *w);

#define NT_HISTORY_LIMIT_DEFAULT 50
#define NT_HISTORY_LIMIT_MAX 500

#endif
