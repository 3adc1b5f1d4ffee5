/* nt_webhook: signed webhooks of lifecycle and presence events (--webhook-url).
 *
 * Every `connect`, `disconnect`, `join`, `leave`, `online` and `offline` this node
 * publishes (the presence transitions exactly once per user and room in the cluster, those
 * a survivor publishes for a crashed node included) becomes one JSON event in a bounded
 * FIFO queue (--webhook-queue events; past it new events are dropped, counted and logged).
 * Batches of up to 100 events go out one request at a time, in order, as
 * `{"events":[...]}` with `X-Natter-Signature: sha256=<hex HMAC-SHA256 of the raw body
 * with --webhook-secret>` and `X-Natter-Timestamp` (unix seconds). Delivery is at least
 * once: a 5xx, a timeout or a refused connection retries the same body (same event ids)
 * with exponential backoff (0.25 s doubling to 10 s) until it is taken; a 4xx drops the
 * batch (counted). Events still queued when the node stops are lost.
 * Threading: loop thread only. */
#ifndef NT_WEBHOOK_H
#define NT_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

struct nt_chat;
typedef struct nt_webhook nt_webhook;

enum nt_webhook_type {
  NT_WH_CONNECT = 1, NT_WH_DISCONNECT, NT_WH_JOIN, NT_WH_LEAVE, NT_WH_ONLINE, NT_WH_OFFLINE
};

/* One event. Strings are borrowed; NULL or "" room / connection are written as null. */
typedef struct nt_webhook_event {
  int type;                  /* enum nt_webhook_type */
  const char *id;            /* unique */
  const char *tenant, *user, *room, *conn, *node;
  int64_t timestamp_ms;
  const char *reason;        /* disconnect (and a crashed node's leave): why; else NULL */
} nt_webhook_event;

/* Renders one event as a JSON object {"type","id","tenantId","userId","roomId",
 * "connectionId","node","timestamp","reason"?} (malloc'd, caller frees); NULL on
 * allocation failure. Pure. */
char *nt_webhook_event_json(const nt_webhook_event *ev, size_t *len);

/* "sha256=" + hex HMAC-SHA256(secret, body) into out (at least 72 bytes). Pure. */
void nt_webhook_sign(const char *secret, const void *body, size_t len, char *out);

/* Creates n->webhook when --webhook-url is set. 0, or a negative code (logged). */
int nt_webhook_start(struct nt_chat *n);
void nt_webhook_close(struct nt_chat *n);

/* Queues an event of this node's (`node` NULL: this node). Never blocks or fails the
 * caller: a full queue drops it (natter_webhook_dropped_total, one log line per episode). */
void nt_webhook_emit(struct nt_chat *n, int type, const char *tenant, const char *user,
                     const char *room, const char *conn, const char *node,
                     const char *reason);

#endif
