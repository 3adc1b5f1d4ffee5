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
 * for the duration of the call. `reply` is NULL when the publisher wants none. */
typedef void (*nt_bus_msg_cb)(void *ud, const char *subject, const uint8_t *data,
                              size_t len, const char *reply);

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
} nt_bus_handler;

typedef struct nt_bus_stats {
  uint64_t published;      /* messages published */
  uint64_t received;       /* messages handed to on_msg */
  uint64_t subscriptions;  /* live subscriptions */
  uint64_t reconnects;     /* successful reconnections */
  uint64_t dropped;        /* messages lost to slow delivery (client-side slow consumer) */
} nt_bus_stats;

typedef struct nt_bus_vtab {
  int (*publish)(nt_bus *b, const char *subject, const void *data, size_t len,
                 const char *reply);
  int (*subscribe)(nt_bus *b, const char *subject, const char *queue_group,
                   nt_bus_sub **out);
  void (*unsubscribe)(nt_bus *b, nt_bus_sub *sub);
  int (*request)(nt_bus *b, const char *subject, const void *data, size_t len,
                 uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud);
  int (*connected)(nt_bus *b);
  void (*stats)(nt_bus *b, nt_bus_stats *out);
  void (*destroy)(nt_bus *b);
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

/* Returns 1 while connected to the bus. */
static inline int nt_bus_connected(nt_bus *b) { return b->vt->connected(b); }

static inline void nt_bus_get_stats(nt_bus *b, nt_bus_stats *out) { b->vt->stats(b, out); }

/* Drops all subscriptions, fails pending requests with NT_ECLOSED (callbacks run before
 * this returns), closes the bus's uv handles and frees it. The caller then runs the loop
 * until its handles are closed. */
static inline void nt_bus_destroy(nt_bus *b) { b->vt->destroy(b); }

/* In-memory bus: subjects matched with NATS wildcard rules, delivery on a later loop turn.
 * Never disconnected. Returns NULL on allocation failure. */
nt_bus *nt_bus_mem_new(uv_loop_t *loop, const nt_bus_handler *h);

/* NATS bus over nats.c with its libuv adapter. `urls` is a comma-separated list; `name`
 * is the client connection name. Keeps retrying when the server is not up yet (returns 0
 * and reports on_state(1) when connected). On success writes *out and returns 0. */
int nt_bus_nats_new(uv_loop_t *loop, const char *urls, const char *name,
                    const nt_bus_handler *h, nt_bus **out);

#endif
