/* nt_recent: a room's recent messages on a node, kept so that a resume (`joinRoom` with
 * `since`) within them is answered from memory instead of the history (docs/history.md,
 * "Resumes served from memory").
 *
 * A ring of the last sequenced items a room delivered, oldest first, each with its
 * rendered frame (a shared reference), its sequence and its predecessor in the room. The
 * ring is a chain: every item's `prev` is the sequence of the item before it, so the ring
 * holds every message of the room with first.prev < seq <= last.seq. An item that does not
 * continue the chain (a hole the room delivered without repairing it) empties the ring
 * first. Bounded per room by a count, and over all rooms of a node by bytes (frames and
 * slots): a push that takes the node past its budget drops the room's own oldest items,
 * down to none. Items older than an age are dropped when the ring is read.
 *
 * Ownership: a ring owns one reference to each frame it holds; its budget is borrowed
 * (one per node, outliving its rings). Threading: loop thread only (frames are counted
 * without atomics). Pure otherwise: no clock, no I/O. */
#ifndef NT_RECENT_H
#define NT_RECENT_H

#include <stddef.h>
#include <stdint.h>

#include "nt_conn.h"
#include "nt_frame.h"

typedef struct nt_recent_budget {
  size_t used;            /* bytes held by all rings of the node */
  size_t max;             /* at most (0: rings hold nothing) */
} nt_recent_budget;

typedef struct nt_recent_item {
  nt_frame *f;            /* NULL: a link of the sequence nobody can be shown */
  uint64_t seq, prev;     /* seq >= 1; prev: the room's previous sequence (0: none) */
  uint64_t idh;           /* hash of the message id (0: none) */
  uint64_t at_ms;         /* when the room delivered it */
  uint32_t bytes;         /* charged to the budget */
  char skip[NT_CONN_ID_LEN + 1]; /* excludeSelf: the sender's connection, or "" */
} nt_recent_item;

typedef struct nt_recent {
  nt_recent_item *v;      /* circular, `cap` slots, grown up to `max` (NULL until used) */
  size_t head, len, cap, max;
  nt_recent_budget *b;
} nt_recent;

/* An empty ring of at most `max` items (0: the ring keeps nothing) charged to `b`. */
void nt_recent_init(nt_recent *r, size_t max, nt_recent_budget *b);

/* Appends a copy of `it` (takes a new reference to it->f). Returns 1 when kept, 0 when
 * not (seq 0, a ring of max 0, memory short, or over the budget by itself). */
int nt_recent_push(nt_recent *r, const nt_recent_item *it);

/* Drops the items delivered before `min_at_ms` (oldest first). */
void nt_recent_expire(nt_recent *r, uint64_t min_at_ms);

/* Where the messages after `since` start, when the ring holds all of them: `since` is
 * the sequence of an item or the predecessor of the first one (and not 0). Writes the
 * index of the first item with seq > since (== nt_recent_len when none) and returns 1;
 * 0 when the ring cannot answer. */
int nt_recent_after(const nt_recent *r, uint64_t since, size_t *first);

static inline size_t nt_recent_len(const nt_recent *r) { return r->len; }

/* The i-th item, oldest first (i < nt_recent_len). */
static inline const nt_recent_item *nt_recent_at(const nt_recent *r, size_t i) {
  return &r->v[(r->head + i) % r->cap];
}

/* Empties the ring (frames released, budget given back) and frees its slots. */
void nt_recent_clear(nt_recent *r);

#endif
