/* nt_bus: the message-bus interface (publish, interest subscriptions, request/reply).
 *
 * Two implementations: NATS (nt_bus_nats.c) and in-memory (nt_bus_mem.c). Only main.c
 * chooses one. Threading: every function here is called on the loop thread, and every
 * callback (messages, replies, state changes) is invoked on the loop thread — the NATS
 * implementation moves nats.c's thread callbacks onto the loop through one queue and
 * uv_async_send. A bus delivers a node's own publications to its own matching
 * subscriptions (like NATS echo), so local delivery takes the same path as remote. */
#ifndef NT_BUS_H
#define NT_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct nt_bus nt_bus;
typedef struct nt_bus_sub nt_bus_sub;

/* Receives every message of every subscription. `subject`, `data` and `reply` are borrowed
 * for the duration of the call. `reply` is NULL when the publisher wants none. `sub` is the
 * subscription that matched (a live handle; NULL when the caller is not a bus, e.g. a
 * replay): a subject matched by two subscriptions of the bus arrives once for each. */
typedef void (*nt_bus_msg_cb)(void *ud, const char *subject, const uint8_t *data,
                              size_t len, const char *reply, const nt_bus_sub *sub);

/* Stream position of a message that a JetStream stream stored and republished (room
 * history): the Nats-Sequence and Nats-Last-Sequence headers, that is the message's
 * sequence in the stream and the sequence of the previous message stored on the same
 * subject (0: none). seq 0 means the message carries no position. */
typedef struct nt_bus_seq {
  uint64_t seq;
  uint64_t last;
} nt_bus_seq;

/* Receives the messages that carry a stream position (when set in the handler; all
 * others still go to on_msg). Arguments as for nt_bus_msg_cb; `seq` borrowed. */
typedef void (*nt_bus_seq_msg_cb)(void *ud, const char *subject, const uint8_t *data,
                                  size_t len, const nt_bus_seq *seq);

/* Connection state changed: connected=1 (connected or reconnected; subscriptions are in
 * place again), connected=0 (lost; the bus keeps reconnecting by itself). */
typedef void (*nt_bus_state_cb)(void *ud, int connected);

/* Outcome of nt_bus_request(): status 0 with the reply bytes (borrowed for the call),
 * NT_ENORESPONDER when nobody listens on the subject, NT_ETIMEOUT, or NT_EBUS/NT_ECLOSED. */
typedef void (*nt_bus_reply_cb)(void *ud, int status, const uint8_t *data, size_t len);

typedef struct nt_bus_handler {
  nt_bus_msg_cb on_msg;
  nt_bus_state_cb on_state; /* may be NULL */
  void *ud;
  nt_bus_seq_msg_cb on_seq_msg; /* may be NULL: stream positions are then not read and
                                 * every message goes to on_msg */
} nt_bus_handler;

typedef struct nt_bus_stats {
  uint64_t published;      /* messages published */
  uint64_t received;       /* messages handed to on_msg */
  uint64_t subscriptions;  /* live subscriptions */
  uint64_t reconnects;     /* successful reconnections */
  uint64_t dropped;        /* messages lost to slow delivery (client-side slow consumer) */
  uint64_t wakeups;        /* loop wake-ups that delivered queued work; received/wakeups is
                            * the batching factor of the cross-thread queue */
} nt_bus_stats;

typedef struct nt_bus_vtab {
  int (*publish)(nt_bus *b, const char *subject, const void *data, size_t len,
                 const char *reply);
  int (*subscribe)(nt_bus *b, const char *subject, const char *queue_group,
                   nt_bus_sub **out);
  void (*unsubscribe)(nt_bus *b, nt_bus_sub *sub);
  int (*publish_seq)(nt_bus *b, const char *subject, const void *data, size_t len,
                     const nt_bus_seq *seq);
  int (*request)(nt_bus *b, const char *subject, const void *data, size_t len,
                 uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud);
  int (*connected)(nt_bus *b);
  void (*stats)(nt_bus *b, nt_bus_stats *out);
  void (*destroy)(nt_bus *b);
  int (*flush)(nt_bus *b, uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud);
  int (*publish_msgid)(nt_bus *b, const char *subject, const void *data, size_t len,
                       const char *reply, const char *msg_id);
} nt_bus_vtab;

/* Every implementation embeds this as its first member. */
struct nt_bus {
  const nt_bus_vtab *vt;
  nt_bus_handler h;
};

/* Publishes `len` bytes on `subject` (copied before return; never blocks on the network).
 * `reply` may be NULL. Returns 0, NT_EINVAL, NT_EAGAIN (not connected and the message could
 * not be buffered) or NT_EBUS. */
static inline int nt_bus_publish(nt_bus *b, const char *subject, const void *data,
                                 size_t len, const char *reply) {
  return b->vt->publish(b, subject, data, len, reply);
}

/* Publishes like nt_bus_publish with the header Nats-Msg-Id: `msg_id` (JetStream's
 * deduplication key; the memory bus carries no headers and delivers the message as
 * nt_bus_publish does — the memory history models deduplication itself). `msg_id` NULL:
 * nt_bus_publish. Same return codes. */
static inline int nt_bus_publish_msgid(nt_bus *b, const char *subject, const void *data,
                                       size_t len, const char *reply, const char *msg_id) {
  return b->vt->publish_msgid(b, subject, data, len, reply, msg_id);
}

/* Publishes like nt_bus_publish with a stream position attached (the headers a
 * JetStream stream's RePublish adds): the in-memory history sequences standalone rooms
 * this way, and tests simulate republished messages. Same return codes. */
static inline int nt_bus_publish_seq(nt_bus *b, const char *subject, const void *data,
                                     size_t len, const nt_bus_seq *seq) {
  return b->vt->publish_seq(b, subject, data, len, seq);
}

/* Subscribes to `subject` (may contain NATS wildcards; `queue_group` may be NULL).
 * On success writes the handle to *out (owned by the bus until nt_bus_unsubscribe or
 * destroy) and returns 0; otherwise returns a negative code and leaves *out untouched.
 * Subscriptions survive reconnects. */
static inline int nt_bus_subscribe(nt_bus *b, const char *subject, const char *queue_group,
                                   nt_bus_sub **out) {
  return b->vt->subscribe(b, subject, queue_group, out);
}

/* Ends a subscription and frees its handle. No message of it is delivered afterwards. */
static inline void nt_bus_unsubscribe(nt_bus *b, nt_bus_sub *sub) {
  b->vt->unsubscribe(b, sub);
}

/* Sends a request and calls `cb` exactly once, later, on the loop thread (never from
 * inside this call). Returns 0, or a negative code in which case `cb` is never called. */
static inline int nt_bus_request(nt_bus *b, const char *subject, const void *data,
                                 size_t len, uint64_t timeout_ms, nt_bus_reply_cb cb,
                                 void *ud) {
  return b->vt->request(b, subject, data, len, timeout_ms, cb, ud);
}

/* Calls `cb` (status 0) once the bus server has processed everything this bus sent
 * before the call — in particular its subscriptions, so messages other publishers send
 * afterwards reach them. NT_ETIMEOUT/NT_ECLOSED otherwise. Same callback rules as
 * nt_bus_request. Used before telling a client it has joined a room. */
static inline int nt_bus_flush(nt_bus *b, uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud) {
  return b->vt->flush(b, timeout_ms, cb, ud);
}

/* Returns 1 while connected to the bus. */
static inline int nt_bus_connected(nt_bus *b) { return b->vt->connected(b); }

static inline void nt_bus_get_stats(nt_bus *b, nt_bus_stats *out) { b->vt->stats(b, out); }

/* Drops all subscriptions, fails pending requests with NT_ECLOSED (callbacks run before
 * this returns), closes the bus's uv handles and frees it. The caller then runs the loop
 * until its handles are closed. */
static inline void nt_bus_destroy(nt_bus *b) { b->vt->destroy(b); }

/* Returns 1 when `subject` (literal tokens only) matches `pattern` under NATS rules: `*`
 * matches exactly one token, `>` as the last token matches one or more tokens. Both strings
 * are assumed valid (see nt_bus_subject_valid). */
int nt_bus_subject_match(const char *pattern, const char *subject);

/* Returns 1 when `subject` is a valid NATS subject: non-empty dot-separated tokens, no
 * empty token, no whitespace or control characters. With `wildcards` set, a token may be
 * `*`, and `>` may be the last token; without it those tokens are rejected (publish and
 * reply subjects). Returns 0 otherwise (NULL included). */
int nt_bus_subject_valid(const char *subject, int wildcards);

/* In-memory bus: subjects matched with NATS wildcard rules, queue groups (round robin),
 * delivery on a later loop turn (an idle handle runs only while work is queued, so a loop
 * with nothing else to do returns from uv_run), request replies on "_INBOX.mem.<n>".
 * Never disconnected, never calls on_state. Returns NULL on allocation failure or when
 * h->on_msg is NULL. */
nt_bus *nt_bus_mem_new(uv_loop_t *loop, const nt_bus_handler *h);

/* NATS bus over nats.c with its libuv adapter. `urls` is a comma-separated list; `name`
 * is the client connection name. Keeps retrying when the server is not up yet (returns 0
 * and reports on_state(1) when connected). On success writes *out and returns 0.
 * Call on the thread that runs `loop`. The first connect attempt runs inside this call
 * (bounded by the 1 s connect timeout). on_state reports changes after creation only: a
 * bus connected at once reports nothing (nt_bus_connected() is 1). On failure returns
 * NT_EINVAL (bad arguments or URL list), NT_ENOMEM or another code; the loop may still
 * have to run once to close internal handles. */
int nt_bus_nats_new(uv_loop_t *loop, const char *urls, const char *name,
                    const nt_bus_handler *h, nt_bus **out);

/* The same with credentials and TLS (nt_nats_opts.h; NULL: none). A file that cannot be
 * read or a bad seed: NT_EINVAL. */
typedef struct nt_nats_sec nt_nats_sec;
int nt_bus_nats_open(uv_loop_t *loop, const char *urls, const char *name,
                     const nt_nats_sec *sec, const nt_bus_handler *h, nt_bus **out);

#endif
