/* nt_pfan: presence fan-out to a room's local members — each member hears of a user's
 * join only when its own `joined` did not already list it (the store's per-room join
 * order, nt_presence_joined.version), nothing before its `joined`, and no events at all in
 * rooms larger than --presence-max-members (docs/presence.md "Large rooms").
 * State lives in the room (nt_room: total, npending, pring) and in each membership
 * (nt_conn_room: pver, pmark). Loop thread only. */
#ifndef NT_PFAN_H
#define NT_PFAN_H

#include <stddef.h>
#include <stdint.h>

#include "nt_conn.h"
#include "nt_hub.h"

struct nt_chat;

/* nt_conn_room.pver of a member whose `joined` is not sent yet. */
#define NT_PVER_PENDING UINT64_MAX
/* Presence frames kept per room while some members wait for their `joined`: all of them,
 * from NT_PFAN_RING slots doubling up to NT_PFAN_RING_MAX (then the newest; a member that
 * waited through more misses the oldest — docs/presence.md). Powers of two. */
#define NT_PFAN_RING 64
#define NT_PFAN_RING_MAX 16384

/* 1 when a room of `total` members (cluster-wide, 0: unknown) gets presence events under
 * `max` (--presence-max-members; 0: no limit). */
static inline int nt_pfan_events_on(long max, uint64_t total) {
  return max <= 0 || total <= (uint64_t)max;
}

/* `c` just joined `r` locally; its `joined` is on the way (presence store round trip). */
void nt_pfan_pending(nt_room *r, nt_conn *c);
/* `c`'s `joined` was just queued, listing the room as of join `version` (0: unknown, the
 * store was down): from now on it gets presence events, first those that arrived while it
 * waited and that its `joined` did not cover. No-op unless `c` is pending in `r`. */
void nt_pfan_ready(struct nt_chat *n, nt_room *r, nt_conn *c, uint64_t version);
/* `c` leaves `r` (before nt_hub_leave): forgets it as a waiting member. */
void nt_pfan_leave(nt_room *r, nt_conn *c);
/* A presence frame of `r` (`version`: the join's, 0 for offline and re-asserted online)
 * to its members except `skip` (a connection id, may be NULL); returns deliveries. */
size_t nt_pfan_deliver(struct nt_chat *n, nt_room *r, nt_frame *f, uint64_t version,
                       const char *skip);
/* Frees what the room keeps for waiting members (nt_hub_room_free calls it). */
void nt_pfan_room_free(nt_room *r);

#endif
