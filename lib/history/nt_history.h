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
 * nt_history_fetch_after before delivering further.
 *
 * Acknowledgment and idempotency. Each publication may carry a key (nt_hist_pub.msg_id:
 * JetStream's Nats-Msg-Id) and a completion callback. A publication whose key the
 * history stored within cfg->dedupe_window_s is a duplicate: acknowledged (status 0,
 * `duplicate` set) and neither stored nor delivered again. While the store cannot store
 * (JetStream down, no responders, 503, leader election) the history keeps resending the
 * same publication with the same key until cfg->ack_timeout_ms has passed since
 * nt_history_publish, then completes with NT_ETIMEOUT: "not known to be stored" — it may
 * still be stored later (a copy in the bus's reconnect buffer), so the caller resends with
 * the same key. A room message is delivered only through the store (every delivered
 * message is stored and has a seq); there is no live-only fallback: messages over the
 * tenant's quota or the size limit are refused — neither stored nor delivered — and
 * complete with NT_ELIMIT. on_state still reports whether the store answers.
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
                          * is refused (NT_ELIMIT); 0: no limit */
  uint64_t tenant_bytes; /* bytes one tenant may store through this node per max_age_s
                          * (nt_hist_quota.h; a day when max_age_s is 0); past it the
                          * tenant's messages are refused (NT_ELIMIT); 0: no quota */
  const struct nt_nats_sec *nats_sec; /* JetStream: credentials and TLS (NULL: none) */
  double dedupe_window_s; /* publications with the same msg_id within this are stored once
                           * (JetStream: the stream's duplicate_window); 0: 120 s */
  uint64_t ack_timeout_ms; /* a publication not acknowledged this long after
                            * nt_history_publish completes with NT_ETIMEOUT; 0: 5000 */
  /* JetStream: 0 for the one stream `stream` over natter.room.>; p >= 1 for partition
   * p - 1 of several: the stream "<stream>_<p-1>" over natter.hist.<p-1>.> (nt_subject.h;
   * set by nt_history_shard_new). */
  int partition;
  /* A per-tenant budget shared by several histories (the sharding wrapper's), borrowed:
   * it must outlive them. NULL: each history has its own, from tenant_bytes. */
  struct nt_hist_quota *quota;
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
  int status;            /* 0, NT_EAGAIN (the store is not answering: nothing can be read now),
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

/* The outcome of one publication, borrowed for the duration of the callback. */
typedef struct nt_hist_ack {
  int status;            /* 0: stored (or a duplicate of a stored one); NT_ETIMEOUT: not
                          * acknowledged within cfg->ack_timeout_ms (resend with the same
                          * msg_id); NT_ELIMIT: over the tenant's quota or the size limit,
                          * neither stored nor delivered; NT_EBUS: the store refused
                          * it (neither stored nor delivered); NT_ECLOSED: the history was
                          * destroyed first (unknown) */
  uint64_t seq;          /* status 0: its sequence (0 when the store does not say) */
  int duplicate;         /* status 0: it had been stored before under the same msg_id */
} nt_hist_ack;

typedef void (*nt_hist_ack_cb)(void *ud, const nt_hist_ack *a);

/* Options of one nt_history_publish (designated initializers; NULL: all defaults). */
typedef struct nt_hist_pub {
  const char *msg_id;    /* idempotency key, copied: 1..NT_HIST_MSGID_MAX bytes, no control
                          * character (NULL: none, so a resend is stored twice). Whether
                          * rooms share a key space is the implementation's (one stream:
                          * yes; a sharded history: per stream), so callers put tenant and
                          * room in the key (nt_client: "<tenant>:<room>:<sender>:<id>") */
  nt_hist_ack_cb on_ack; /* called exactly once, later, on the loop thread, when
                          * nt_history_publish returned 0 (NULL: no callback) */
  void *ud;
} nt_hist_pub;

#define NT_HIST_MSGID_MAX 512

/* 1 when `id` is a valid nt_hist_pub.msg_id. */
static inline int nt_hist_msgid_valid(const char *id) {
  size_t n = 0;
  if (!id) return 0;
  for (; id[n]; n++)
    if ((unsigned char)id[n] < 0x20 || id[n] == 0x7f || n >= NT_HIST_MSGID_MAX) return 0;
  return n > 0;
}

typedef struct nt_hist_handler {
  /* storing = 1: the store answers; 0: it does not (publications wait for it). Reported on
   * changes after creation (a history starts storing). May be NULL. */
  void (*on_state)(void *ud, int storing);
  void *ud;
} nt_hist_handler;

typedef struct nt_hist_stats {
  uint64_t published;    /* room messages given to nt_history_publish */
  uint64_t stored;       /* ... confirmed stored (duplicates not counted) */
  uint64_t live_only;    /* ... published live without being stored (history down) */
  uint64_t over_quota;   /* ... refused: over their tenant's budget or the message size
                          * limit (neither stored nor delivered) */
  uint64_t resent;       /* ... sent to the store again (same msg_id) after no answer or a
                          * "cannot store now" answer */
  uint64_t duplicates;   /* ... acknowledged as duplicates of a stored msg_id */
  uint64_t unavailable;  /* ... completed NT_ETIMEOUT (not acknowledged in time) */
  uint64_t outages;      /* changes from storing to not storing */
  uint64_t fetches;      /* fetch requests completed */
  uint64_t fetch_errors; /* ... that failed */
  uint64_t fetched;      /* messages read from the history */
  uint64_t stored_msgs;  /* memory history: messages held now */
  uint64_t stored_bytes; /* memory history: their bytes */
  int storing;           /* storing, and (JetStream) the stream has confirmed it exists */
} nt_hist_stats;

typedef struct nt_history_vtab {
  int (*ensure)(nt_history *h, nt_hist_done_cb cb, void *ud);
  int (*publish)(nt_history *h, const char *subject, const void *data, size_t len,
                 const nt_hist_pub *pub);
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
 * once: 0, or NT_EBUS / NT_ETIMEOUT (the history then retries by
 * itself), NT_ECLOSED. `cb` may be NULL. Returns 0 or a negative code. */
static inline int nt_history_ensure(nt_history *h, nt_hist_done_cb cb, void *ud) {
  return h->vt->ensure(h, cb, ud);
}

/* Publishes a room message (`data` and pub->msg_id copied; never blocks on the network):
 * stored and republished live with its sequence, then pub->on_ack (see "Acknowledgment"
 * above). `pub` may be NULL. Returns 0, NT_EINVAL (not a room subject, bad msg_id),
 * NT_EAGAIN (too many publications awaiting acknowledgment), or the bus's error; on an
 * error on_ack is never called. */
static inline int nt_history_publish(nt_history *h, const char *subject, const void *data,
                                     size_t len, const nt_hist_pub *pub) {
  return h->vt->publish(h, subject, data, len, pub);
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

/* 1 while the store answers (0: publications wait for it, reads fail). */
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
 * the room's live subject with nt_bus_publish_seq; a duplicate msg_id within
 * cfg->dedupe_window_s is acknowledged without storing or publishing. Returns NULL on bad arguments or
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

/* Room history over `n` (1..NT_HISTORY_SHARDS_MAX) histories (nt_history_shard.c): each room lives in
 * the one chosen by nt_subject_room_shard(subject, n), every call about a room is
 * forwarded to it unchanged, so sequences, resume, pages and gap repair are those of one
 * history per room. make(ctx, k, cfg, h, &out) creates shard k with `cfg` (a copy of the
 * caller's with partition k + 1, max_bytes / n, and one quota shared by all) and returns
 * 0. storing() is 1 while every shard stores (the "storing" stat: all of them); on_state
 * reports changes of that; stats are the sum. nt_history_shard_stats() reads one shard.
 * msg_id keys are deduplicated by the room's shard: the same key in two rooms of
 * different shards is two publications (within one shard, as in any history, one).
 * On success writes *out and returns 0; the shards made so far are destroyed on failure. */
#define NT_HISTORY_SHARDS_MAX 64
typedef int (*nt_history_make_fn)(void *ctx, unsigned k, const nt_hist_cfg *cfg,
                                  const nt_hist_handler *h, nt_history **out);
int nt_history_shard_new(uv_loop_t *loop, unsigned n, const nt_hist_cfg *cfg,
                         nt_history_make_fn make, void *ctx, const nt_hist_handler *h,
                         nt_history **out);
/* Shards of a sharded history (0 for any other history); fills shard k's stats when
 * k < the count. */
unsigned nt_history_shard_stats(nt_history *h, unsigned k, nt_hist_stats *out);

#endif
