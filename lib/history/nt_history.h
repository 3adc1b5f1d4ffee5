/* nt_history: room history — the stored messages of each room, numbered by a sequence
 * that strictly increases per room (the `seq` of message frames; docs/history.md).
 *
 * Two implementations side by side: JetStream (nt_history_js.c: a stream over
 * natter.room.> that republishes every stored message on natter.live.room.> with its
 * sequence) and in-memory (nt_history_mem.c: bounded per room and in total, for the
 * standalone node and unit tests). Only main.c chooses one.
 *
 * The live path. Room messages are published through the history (nt_history_publish),
 * never straight on the bus, because the history is what numbers them: the stream
 * captures the core publish on natter.room.<t>.<r>, the memory history counts. Each
 * stored message then reaches the nodes subscribed to natter.live.room.<t>.<r> carrying
 * an nt_bus_seq {seq, last}: its sequence and the previous sequence of the same room, so
 * a node sees a gap (last != the sequence it delivered before) and repairs it with
 * nt_history_fetch_after before delivering further. A history that cannot store
 * (JetStream down, no stream) publishes on the live subject without a position instead:
 * live-only delivery, never a stall; on_state reports the change.
 *
 * Threading: every function is called on the loop thread; every callback runs on the
 * loop thread and never inside the call that started it. When a function that takes a
 * callback returns an error, the callback is never called. Subjects are room subjects
 * (natter.room.<tenant>.<room>, built by nt_subject_room). */
#ifndef NT_HISTORY_H
#define NT_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nt_bus.h"

typedef struct nt_history nt_history;

#define NT_HISTORY_STREAM "NATTER_ROOMS"

typedef struct nt_hist_cfg {
  double max_age_s;      /* messages older than this are dropped; 0: no age limit */
  long max_per_room;     /* messages kept per room (>= 1) */
  int memory_storage;    /* JetStream: memory instead of file storage */
  int replicas;          /* JetStream: stream replicas, 1..5 */
  const char *stream;    /* JetStream stream name; NULL: NT_HISTORY_STREAM */
  size_t max_bytes;      /* all rooms together (JetStream: the stream's max_bytes, oldest
                          * messages leave first); 0: 1 GiB on JetStream, 64 MiB in memory */
  size_t max_msg_bytes;  /* largest stored message (JetStream: max_msg_size); a larger one
                          * is delivered live-only; 0: no limit */
  uint64_t tenant_bytes; /* bytes one tenant may store through this node per max_age_s
                          * (nt_hist_quota.h; a day when max_age_s is 0); past it the
                          * tenant's messages are delivered live-only; 0: no quota */
  const struct nt_nats_sec *nats_sec; /* JetStream: credentials and TLS (NULL: none) */
} nt_hist_cfg;

/* One stored message. `data` is what was published (the envelope), borrowed. */
typedef struct nt_hist_msg {
  uint64_t seq;
  int64_t stored_ms;     /* unix ms when the history stored it */
  const uint8_t *data;
  size_t len;
} nt_hist_msg;

/* Outcome of a fetch, borrowed for the duration of the callback. */
typedef struct nt_hist_result {
  int status;            /* 0, NT_EAGAIN (live-only: nothing stored can be read now),
                          * NT_ETIMEOUT, NT_EBUS, NT_ENOMEM or NT_ECLOSED (destroyed) */
  const nt_hist_msg *msgs; /* ascending sequence */
  size_t n;
  int anchored;          /* fetch_after: the message `after` is still stored in this room,
                          * so none after it was lost to retention (also 1 for after 0) */
  int more;              /* fetch_after: more follow (stopped at `max`);
                          * fetch_page: older messages exist */
} nt_hist_result;

typedef void (*nt_hist_cb)(void *ud, const nt_hist_result *r);
typedef void (*nt_hist_done_cb)(void *ud, int status);

typedef struct nt_hist_handler {
  /* storing = 1: publications are stored and sequenced; 0: live-only. Reported on
   * changes after creation (a history starts storing). May be NULL. */
  void (*on_state)(void *ud, int storing);
  void *ud;
} nt_hist_handler;

typedef struct nt_hist_stats {
  uint64_t published;    /* room messages given to nt_history_publish */
  uint64_t stored;       /* ... confirmed stored */
  uint64_t live_only;    /* ... published live without being stored (history down) */
  uint64_t over_quota;   /* ... published live-only: over their tenant's budget or the
                          * message size limit (also counted in live_only) */
  uint64_t resent;       /* unconfirmed ones re-sent live-only after a failure or timeout */
  uint64_t untracked;    /* published without confirmation tracking (tracking full) */
  uint64_t outages;      /* changes from storing to live-only */
  uint64_t fetches;      /* fetch requests completed */
  uint64_t fetch_errors; /* ... that failed */
  uint64_t fetched;      /* messages read from the history */
  uint64_t stored_msgs;  /* memory history: messages held now */
  uint64_t stored_bytes; /* memory history: their bytes */
  int storing;           /* storing, and (JetStream) the stream has confirmed it exists */
} nt_hist_stats;

typedef struct nt_history_vtab {
  int (*ensure)(nt_history *h, nt_hist_done_cb cb, void *ud);
  int (*publish)(nt_history *h, const char *subject, const void *data, size_t len);
  int (*fetch_after)(nt_history *h, const char *subject, uint64_t after, uint64_t upto,
                     size_t max, nt_hist_cb cb, void *ud);
  int (*fetch_page)(nt_history *h, const char *subject, uint64_t before, size_t limit,
                    nt_hist_cb cb, void *ud);
  int (*storing)(nt_history *h);
  void (*stats)(nt_history *h, nt_hist_stats *out);
  void (*destroy)(nt_history *h);
} nt_history_vtab;

/* Every implementation embeds this as its first member. */
struct nt_history {
  const nt_history_vtab *vt;
};

/* Creates or updates the store (JetStream: the stream with the configured retention and
 * the RePublish rule; idempotent, any number of nodes may race) and calls cb(ud, status)
 * once: 0, or NT_EBUS / NT_ETIMEOUT (the history then runs live-only and retries by
 * itself), NT_ECLOSED. `cb` may be NULL. Returns 0 or a negative code. */
static inline int nt_history_ensure(nt_history *h, nt_hist_done_cb cb, void *ud) {
  return h->vt->ensure(h, cb, ud);
}

/* Publishes a room message (`data` copied; never blocks on the network): stored and
 * republished live with its sequence, or live-only while the history is down. Returns 0,
 * NT_EINVAL (not a room subject), or the bus's error (NT_EAGAIN, NT_EBUS...). */
static inline int nt_history_publish(nt_history *h, const char *subject, const void *data,
                                     size_t len) {
  return h->vt->publish(h, subject, data, len);
}

/* Reads the messages of `subject` with after < seq (<= upto when upto != 0), oldest first,
 * at most `max` (>= 1): the replay of a resume and the repair of a gap. */
static inline int nt_history_fetch_after(nt_history *h, const char *subject, uint64_t after,
                                         uint64_t upto, size_t max, nt_hist_cb cb,
                                         void *ud) {
  return h->vt->fetch_after(h, subject, after, upto, max, cb, ud);
}

/* Reads a page: the newest `limit` (>= 1) messages of `subject` with seq < before (before
 * 0: the newest of all), returned oldest first; r->more says whether older ones exist. */
static inline int nt_history_fetch_page(nt_history *h, const char *subject, uint64_t before,
                                        size_t limit, nt_hist_cb cb, void *ud) {
  return h->vt->fetch_page(h, subject, before, limit, cb, ud);
}

/* 1 while publications are stored (0: live-only). */
static inline int nt_history_storing(nt_history *h) { return h->vt->storing(h); }

static inline void nt_history_get_stats(nt_history *h, nt_hist_stats *out) {
  h->vt->stats(h, out);
}

/* Fails pending fetches with NT_ECLOSED (their callbacks run before this returns), stops
 * the history's threads, closes its uv handles and frees it; the caller then runs the
 * loop until they are closed. */
static inline void nt_history_destroy(nt_history *h) { h->vt->destroy(h); }

/* In-memory history over `bus` (borrowed; must outlive it): a global sequence, per-room
 * lists bounded by cfg->max_per_room and max_age_s, all rooms together by max_bytes
 * (oldest messages first). Publishing stores synchronously and publishes the message on
 * the room's live subject with nt_bus_publish_seq. Returns NULL on bad arguments or
 * allocation failure. */
nt_history *nt_history_mem_new(uv_loop_t *loop, nt_bus *bus, const nt_hist_cfg *cfg,
                               const nt_hist_handler *h);

/* JetStream history. Publications go out on `bus` (borrowed; must outlive it) as core
 * publishes the stream captures, each with a reply inbox for the stream's acknowledgment;
 * reads and stream management run on a second NATS connection to `urls` (named
 * "<name>-history") from two worker threads, because nats.c's JetStream calls block.
 * Runs nt_history_ensure itself at creation. On success writes *out and returns 0;
 * otherwise NT_EINVAL, NT_ENOMEM or NT_EBUS. */
/* JetStream reads (fetch_after, fetch_page) in flight: at most NT_HIST_JS_READS_RUNNING
 * are handed to the worker threads at once; up to NT_HIST_JS_READS_WAITING more wait
 * behind them in order, each at most NT_HIST_JS_READ_WAIT_MS (then its callback gets
 * NT_ETIMEOUT); past both, a fetch returns NT_EAGAIN at once (nt_hist_gate.h). */
#define NT_HIST_JS_READS_RUNNING 1024
#define NT_HIST_JS_READS_WAITING 16384
#define NT_HIST_JS_READ_WAIT_MS 5000

int nt_history_js_new(uv_loop_t *loop, nt_bus *bus, const char *urls, const char *name,
                      const nt_hist_cfg *cfg, const nt_hist_handler *h, nt_history **out);

#endif
