/* nt_bus_nats: the bus over NATS (nats.c; socket events on the loop: nt_nats_uv.h),
 * moving nats.c's thread callbacks onto the loop thread through one batched queue. */

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_bus.h"
#include "nt_err.h"
#include "nt_log.h"
#include "nt_nats_opts.h"
#include "nt_url.h"
#include "nt_nats_uv.h"

/* Tuning. The connect timeout also bounds how long a loop-thread call into nats.c can
 * wait for the connection lock while the reconnect thread dials an unreachable server. */
#define RECONNECT_WAIT_MS 1000
#define CONNECT_TIMEOUT_MS 1000
#define PING_INTERVAL_MS 20000
#define MAX_PINGS_OUT 3
#define RECONNECT_BUF_BYTES (8 * 1024 * 1024) /* publications kept while disconnected */
#define SUB_PENDING_MSGS (1024 * 1024)        /* nats.c's per-subscription buffer */
#define SUB_PENDING_BYTES (256 * 1024 * 1024)
#define QUEUE_MAX_MSGS (1024 * 1024)          /* the crossing queue, if the loop stalls */
#define QUEUE_MAX_BYTES ((size_t)256 * 1024 * 1024)
#define QUEUE_MSG_OVERHEAD 64                 /* per message, for byte accounting */
#define DROP_LOG_INTERVAL_MS 5000
#define MAX_URLS 32

/* ================================================================ threading
 *
 * nats.c runs message handlers on its delivery thread pool and connection handlers on its
 * own callback thread. Those handlers touch exactly one structure, the crossing queue
 * (xq): under its mutex they append an item and, when the queue was empty, call
 * uv_async_send. The loop side (on_async) swaps the whole array out in one critical
 * section and handles every item, so one wake-up delivers any number of messages.
 *
 * A message item holds the natsMsg itself (no copy, no allocation of ours) and a
 * reference on its subscription. Subscription memory is shared by both sides and freed
 * when the last reference goes: the loop's (until unsubscribe), nats.c's (until its
 * on-complete callback, after which no handler of it runs) and one per queued message.
 * The queue itself is referenced by the bus, every subscription and the connection
 * (until its closed callback), because nats.c handlers can still run after the bus is
 * gone; they then find xq->async == NULL and drop what they carry. */

enum { X_MSG, X_CONNECTED, X_RECONNECTED, X_DISCONNECTED, X_CLOSED };

typedef struct xitem {
  int kind;
  nt_bus_sub *sub; /* X_MSG */
  natsMsg *msg;    /* X_MSG: destroyed on the loop after delivery */
  nt_bus_seq seq;  /* X_MSG: stream position, read on the delivery thread (seq 0: none) */
} xitem;

typedef struct xq {
  uv_mutex_t mu;
  xitem *v;
  size_t len, cap, bytes;
  uv_async_t *async; /* NULL once the bus is closing */
  uint64_t dropped;  /* messages refused because the queue was over its limits */
  int want_seq;      /* immutable: the handler has on_seq_msg */
  atomic_int refs;
} xq;

/* One per subscription, and the node has one per local user: kept at 40 bytes. */
struct nt_bus_sub {
  xq *q;                 /* immutable: the only fields nats.c threads read are q and inbox */
  atomic_int refs;
  uint8_t inbox;         /* immutable: our request inbox, not handed to on_msg */
  uint8_t live;          /* loop thread only, like everything below */
  natsSubscription *ns;
  nt_bus_sub *prev, *next;
};

typedef struct nt_bus_nats nt_bus_nats;

typedef struct nats_req {
  uv_timer_t timer; /* the request is freed in the timer's close callback */
  nt_bus_nats *b;
  uint64_t token;
  nt_bus_reply_cb cb;
  void *ud;
  struct nats_req *hnext;
} nats_req;

struct nt_bus_nats {
  nt_bus base;
  uv_loop_t *loop;
  uv_async_t async; /* the bus is freed in its close callback */
  xq *q;
  xitem *spare; /* the other half of the double buffer */
  size_t spare_cap;
  natsConnection *nc;
  nt_nats_uv *nle;      /* socket events on the loop (nt_nats_uv.h) */
  nt_bus_sub *subs;
  nt_bus_sub *inbox_sub;
  natsInbox *inbox; /* "_INBOX.<nuid>"; replies come to "<inbox>.<token>" */
  size_t inbox_len;
  nats_req **rb; /* pending requests by token */
  size_t nrb, nreqs;
  uint64_t next_token;
  nt_bus_stats st;
  uint64_t dropped_gone;   /* nats.c drops of subscriptions already ended */
  uint64_t dropped_logged;
  uint64_t drop_log_at;
  int connected, closing;
  char url[256]; /* of the last connection, for logs */
};

/* ================================================================ helpers */

static void xq_release(xq *q) {
  if (atomic_fetch_sub(&q->refs, 1) != 1) return;
  uv_mutex_destroy(&q->mu);
  free(q->v);
  free(q);
}

static void sub_release(nt_bus_sub *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  xq_release(s->q);
  free(s);
}

static void xitem_release(xitem *it) {
  if (it->msg) natsMsg_Destroy(it->msg);
  if (it->sub) sub_release(it->sub);
}

/* Any thread, q->mu held. Returns 0, or -1 when the bus is gone or memory is short. */
static int xq_append(xq *q, xitem it) {
  if (q->async == NULL) return -1;
  if (q->len == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    xitem *v = realloc(q->v, cap * sizeof *v);
    if (!v) return -1;
    q->v = v;
    q->cap = cap;
  }
  q->v[q->len++] = it;
  /* one wake-up per empty->non-empty transition: on_async takes everything at once */
  if (q->len == 1) uv_async_send(q->async);
  return 0;
}

/* ================================================================ nats.c threads */

/* Reads the stream position headers of a republished message. nats.c parses headers into
 * a table on first access, which costs a few allocations: done here, on the delivery
 * thread, so the loop only reads two integers. A message without headers costs a test. */
static nt_bus_seq read_seq(natsMsg *msg) {
  nt_bus_seq r = {0, 0};
  const char *v = NULL;
  if (natsMsgHeader_Get(msg, JSSequence, &v) != NATS_OK || !v) return r;
  char *end;
  unsigned long long seq = strtoull(v, &end, 10);
  if (end == v || *end) return r;
  if (natsMsgHeader_Get(msg, JSLastSequence, &v) == NATS_OK && v) {
    unsigned long long last = strtoull(v, &end, 10);
    if (end != v && !*end) r.last = last;
  }
  r.seq = seq;
  return r;
}

/* Delivery thread: hands the message itself to the loop. */
static void on_nats_msg(natsConnection *nc, natsSubscription *ns, natsMsg *msg, void *closure) {
  nt_bus_sub *s = closure;
  xq *q = s->q;
  nt_bus_seq seq = q->want_seq && !s->inbox ? read_seq(msg) : (nt_bus_seq){0, 0};
  size_t sz = (size_t)natsMsg_GetDataLength(msg) + QUEUE_MSG_OVERHEAD;
  uv_mutex_lock(&q->mu);
  int ok = q->async != NULL && q->len < QUEUE_MAX_MSGS && q->bytes + sz <= QUEUE_MAX_BYTES;
  if (ok) {
    atomic_fetch_add(&s->refs, 1);
    ok = xq_append(q, (xitem){X_MSG, s, msg, seq}) == 0;
    if (ok) q->bytes += sz;
    else atomic_fetch_sub(&s->refs, 1); /* nats.c's own reference keeps it above 0 */
  }
  if (!ok && q->async != NULL) q->dropped++;
  uv_mutex_unlock(&q->mu);
  if (!ok) natsMsg_Destroy(msg);
}

/* After the last handler call of a subscription. */
static void on_sub_complete(void *closure) { sub_release(closure); }

/* Connection callback thread. */
static void push_state(xq *q, int kind) {
  uv_mutex_lock(&q->mu);
  xq_append(q, (xitem){kind, NULL, NULL, {0, 0}});
  uv_mutex_unlock(&q->mu);
}

static void on_connected(natsConnection *nc, void *q) { push_state(q, X_CONNECTED); }
static void on_reconnected(natsConnection *nc, void *q) { push_state(q, X_RECONNECTED); }
static void on_disconnected(natsConnection *nc, void *q) { push_state(q, X_DISCONNECTED); }
/* The connection's last callback: its reference on the queue goes with it. */
static void on_closed(natsConnection *nc, void *q) {
  push_state(q, X_CLOSED);
  xq_release(q);
}

/* Asynchronous errors (slow consumer, permission violations). Logged here, rate-limited,
 * because no caller decision depends on them; drops are counted in the stats. */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                           void *closure) {
  static _Atomic int64_t last_ms;
  int64_t now = nats_Now(), prev = atomic_load(&last_ms);
  if (now - prev < DROP_LOG_INTERVAL_MS || !atomic_compare_exchange_strong(&last_ms, &prev, now))
    return;
  nt_log_warn("bus async error", "{s:s, s:s}", "error", natsStatus_GetText(err), "subject",
              sub ? natsSubscription_GetSubject(sub) : "");
}

/* ================================================================ requests */

static int req_reserve(nt_bus_nats *b) {
  if (b->nreqs < b->nrb) return 0;
  size_t n = b->nrb ? b->nrb * 2 : 64;
  nats_req **nb = calloc(n, sizeof *nb);
  if (!nb) return NT_ENOMEM;
  for (size_t i = 0; i < b->nrb; i++) {
    for (nats_req *r = b->rb[i], *next; r; r = next) {
      next = r->hnext;
      r->hnext = nb[r->token & (n - 1)];
      nb[r->token & (n - 1)] = r;
    }
  }
  free(b->rb);
  b->rb = nb;
  b->nrb = n;
  return 0;
}

/* Removes and returns the pending request `token`, or NULL (late or foreign reply). */
static nats_req *req_take(nt_bus_nats *b, uint64_t token) {
  if (b->nrb == 0) return NULL;
  for (nats_req **pp = &b->rb[token & (b->nrb - 1)]; *pp; pp = &(*pp)->hnext) {
    nats_req *r = *pp;
    if (r->token == token) {
      *pp = r->hnext;
      b->nreqs--;
      return r;
    }
  }
  return NULL;
}

static void req_closed(uv_handle_t *h) { free(h->data); }

/* The request is already out of the table, so the callback may use or destroy the bus. */
static void req_finish(nats_req *r, int status, const uint8_t *data, size_t len) {
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, req_closed);
  r->cb(r->ud, status, data, len);
}

static void req_timeout(uv_timer_t *t) {
  nats_req *r = t->data;
  if (req_take(r->b, r->token) == r) req_finish(r, NT_ETIMEOUT, NULL, 0);
}

/* A message on "<inbox>.<token>": a reply, or the server's 503 "no responders" status. */
static void reply_arrived(nt_bus_nats *b, natsMsg *msg) {
  const char *subj = natsMsg_GetSubject(msg);
  if (strncmp(subj, b->inbox, b->inbox_len) != 0 || subj[b->inbox_len] != '.') return;
  char *end;
  uint64_t token = strtoull(subj + b->inbox_len + 1, &end, 10);
  if (*end != '\0') return;
  nats_req *r = req_take(b, token);
  if (!r) return;
  if (natsMsg_IsNoResponders(msg)) req_finish(r, NT_ENORESPONDER, NULL, 0);
  else
    req_finish(r, 0, (const uint8_t *)natsMsg_GetData(msg),
               (size_t)natsMsg_GetDataLength(msg));
}

/* ================================================================ loop side */

/* The URL of the current server, credentials redacted: b->url is only ever logged. */
static void take_url(nt_bus_nats *b) {
  char raw[sizeof b->url];
  if (natsConnection_GetConnectedUrl(b->nc, raw, sizeof raw) == NATS_OK)
    nt_url_redact(raw, b->url, sizeof b->url);
}

static void set_state(nt_bus_nats *b, int connected, const char *msg) {
  if (connected) take_url(b);
  if (connected == b->connected) return;
  b->connected = connected;
  if (connected) nt_log_info(msg, "{s:s}", "url", b->url);
  else nt_log_warn(msg, "{s:s}", "url", b->url);
  if (b->base.h.on_state) b->base.h.on_state(b->base.h.ud, connected);
}

static void handle_item(nt_bus_nats *b, xitem *it) {
  switch (it->kind) {
  case X_MSG:
    if (!it->sub->live) return; /* unsubscribed after nats.c queued it */
    if (it->sub->inbox) {
      reply_arrived(b, it->msg);
      return;
    }
    b->st.received++;
    if (it->seq.seq && b->base.h.on_seq_msg) {
      b->base.h.on_seq_msg(b->base.h.ud, natsMsg_GetSubject(it->msg),
                           (const uint8_t *)natsMsg_GetData(it->msg),
                           (size_t)natsMsg_GetDataLength(it->msg), &it->seq);
      return;
    }
    b->base.h.on_msg(b->base.h.ud, natsMsg_GetSubject(it->msg),
                     (const uint8_t *)natsMsg_GetData(it->msg),
                     (size_t)natsMsg_GetDataLength(it->msg), natsMsg_GetReply(it->msg), it->sub);
    return;
  case X_CONNECTED:
    set_state(b, 1, "bus connected");
    return;
  case X_RECONNECTED:
    b->st.reconnects++;
    set_state(b, 1, "bus reconnected");
    return;
  case X_DISCONNECTED:
    set_state(b, 0, "bus disconnected");
    return;
  case X_CLOSED:
    /* not asked for (destroy has cut the queue by then): nats.c gave up, e.g. auth */
    nt_log_error("bus connection closed", "{s:s}", "url", b->url);
    set_state(b, 0, "bus disconnected");
    return;
  }
}

/* Loop thread: one wake-up takes everything queued so far. A callback may destroy the
 * bus; its memory lives until the async handle's close callback. */
static void on_async(uv_async_t *a) {
  nt_bus_nats *b = a->data;
  xq *q = b->q;
  uv_mutex_lock(&q->mu);
  xitem *v = q->v;
  size_t n = q->len, cap = q->cap;
  q->v = b->spare;
  q->cap = b->spare_cap;
  q->len = q->bytes = 0;
  uint64_t dropped = q->dropped;
  uv_mutex_unlock(&q->mu);
  b->spare = NULL;
  b->spare_cap = 0;

  if (n) b->st.wakeups++;
  for (size_t i = 0; i < n; i++) {
    if (!b->closing) handle_item(b, &v[i]);
    xitem_release(&v[i]);
  }
  if (b->closing) {
    free(v);
    return;
  }
  b->spare = v;
  b->spare_cap = cap;
  if (dropped > b->dropped_logged && uv_now(b->loop) >= b->drop_log_at) {
    nt_log_warn("bus queue full, messages dropped", "{s:I}", "dropped",
                (json_int_t)(dropped - b->dropped_logged));
    b->dropped_logged = dropped;
    b->drop_log_at = uv_now(b->loop) + DROP_LOG_INTERVAL_MS;
  }
}

/* ================================================================ vtable */

static int sub_start(nt_bus_nats *b, const char *subject, const char *queue, int inbox,
                     nt_bus_sub **out) {
  nt_bus_sub *s = calloc(1, sizeof *s);
  if (!s) return NT_ENOMEM;
  s->q = b->q;
  atomic_fetch_add(&b->q->refs, 1);
  atomic_init(&s->refs, 2); /* the loop's and nats.c's, before nats.c can see it */
  s->inbox = inbox;
  natsSubscription *ns = NULL;
  natsStatus st = queue ? natsConnection_QueueSubscribe(&ns, b->nc, subject, queue,
                                                        on_nats_msg, s)
                        : natsConnection_Subscribe(&ns, b->nc, subject, on_nats_msg, s);
  if (st != NATS_OK) {
    xq_release(b->q);
    free(s);
    return nt_nats_err(st);
  }
  if (natsSubscription_SetOnCompleteCB(ns, on_sub_complete, s) != NATS_OK) {
    /* closed under us by the connection: no on-complete will come, so nats.c's
     * reference stays (a small leak in a rare race beats a use after free) */
    natsSubscription_Destroy(ns);
    sub_release(s);
    return NT_ECLOSED;
  }
  natsSubscription_SetPendingLimits(ns, SUB_PENDING_MSGS, SUB_PENDING_BYTES);
  s->ns = ns;
  s->live = 1;
  s->next = b->subs;
  if (b->subs) b->subs->prev = s;
  b->subs = s;
  if (!inbox) b->st.subscriptions++;
  *out = s;
  return 0;
}

static int nats_subscribe(nt_bus *bb, const char *subject, const char *queue_group,
                          nt_bus_sub **out) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!out || !nt_bus_subject_valid(subject, 1)) return NT_EINVAL;
  return sub_start(b, subject, queue_group, 0, out);
}

static void nats_unsubscribe(nt_bus *bb, nt_bus_sub *s) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (!s || !s->live) return;
  s->live = 0;
  if (s->prev) s->prev->next = s->next;
  else b->subs = s->next;
  if (s->next) s->next->prev = s->prev;
  if (!s->inbox) b->st.subscriptions--;
  int64_t d = 0;
  if (natsSubscription_GetDropped(s->ns, &d) == NATS_OK && d > 0)
    b->dropped_gone += (uint64_t)d;
  natsSubscription_Unsubscribe(s->ns); /* fails harmlessly once the connection is closed */
  natsSubscription_Destroy(s->ns);
  s->ns = NULL;
  sub_release(s);
}

/* natsConnection_Publish only appends to the connection's buffer and adds write interest
 * (SendAsap, see make_opts), so the publications of one loop turn share one write(2). */
static int nats_publish(nt_bus *bb, const char *subject, const void *data, size_t len,
                        const char *reply) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!nt_bus_subject_valid(subject, 0) || (reply && !nt_bus_subject_valid(reply, 0)) ||
      (len && !data))
    return NT_EINVAL;
  if (len > INT_MAX) return NT_ETOOLARGE;
  natsStatus st = reply ? natsConnection_PublishRequest(b->nc, subject, reply, data, (int)len)
                        : natsConnection_Publish(b->nc, subject, data, (int)len);
  if (st != NATS_OK) return nt_nats_err(st);
  b->st.published++;
  return 0;
}

/* A message with a Nats-Msg-Id header (see nt_bus_publish_msgid). */
static int nats_publish_msgid(nt_bus *bb, const char *subject, const void *data, size_t len,
                              const char *reply, const char *msg_id) {
  if (!msg_id) return nats_publish(bb, subject, data, len, reply);
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!nt_bus_subject_valid(subject, 0) || (reply && !nt_bus_subject_valid(reply, 0)) ||
      (len && !data) || !*msg_id)
    return NT_EINVAL;
  if (len > INT_MAX) return NT_ETOOLARGE;
  natsMsg *m = NULL;
  natsStatus st = natsMsg_Create(&m, subject, reply, data, (int)len);
  if (st == NATS_OK) st = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
  if (st == NATS_OK) st = natsConnection_PublishMsg(b->nc, m);
  natsMsg_Destroy(m);
  if (st != NATS_OK) return nt_nats_err(st);
  b->st.published++;
  return 0;
}

/* A message with the headers a stream's RePublish adds (see nt_bus_publish_seq). */
static int nats_publish_seq(nt_bus *bb, const char *subject, const void *data, size_t len,
                            const nt_bus_seq *seq) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!seq || !nt_bus_subject_valid(subject, 0) || (len && !data)) return NT_EINVAL;
  if (len > INT_MAX) return NT_ETOOLARGE;
  char sv[24], lv[24];
  snprintf(sv, sizeof sv, "%" PRIu64, seq->seq);
  snprintf(lv, sizeof lv, "%" PRIu64, seq->last);
  natsMsg *m = NULL;
  natsStatus st = natsMsg_Create(&m, subject, NULL, data, (int)len);
  if (st == NATS_OK) st = natsMsgHeader_Set(m, JSSequence, sv);
  if (st == NATS_OK) st = natsMsgHeader_Set(m, JSLastSequence, lv);
  if (st == NATS_OK) st = natsConnection_PublishMsg(b->nc, m);
  natsMsg_Destroy(m);
  if (st != NATS_OK) return nt_nats_err(st);
  b->st.published++;
  return 0;
}

/* One wildcard subscription serves every request: replies go to "<inbox>.<token>". */
static int inbox_start(nt_bus_nats *b) {
  natsInbox *ib = NULL;
  natsStatus st = natsInbox_Create(&ib);
  if (st != NATS_OK) return nt_nats_err(st);
  char wild[128];
  snprintf(wild, sizeof wild, "%s.*", ib);
  int rc = sub_start(b, wild, NULL, 1, &b->inbox_sub);
  if (rc) {
    natsInbox_Destroy(ib);
    return rc;
  }
  b->inbox = ib;
  b->inbox_len = strlen(ib);
  return 0;
}

/* Sends `data` to `subject` (or, when subject is NULL, to the request's own inbox) with
 * the request's inbox as reply subject, and waits for the message that comes back there. */
static int req_send(nt_bus_nats *b, const char *subject, const void *data, size_t len,
                    uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud) {
  int rc;
  if (!b->inbox_sub && (rc = inbox_start(b)) != 0) return rc;
  if ((rc = req_reserve(b)) != 0) return rc;
  nats_req *r = calloc(1, sizeof *r);
  if (!r) return NT_ENOMEM;
  r->b = b;
  r->token = ++b->next_token;
  r->cb = cb;
  r->ud = ud;
  char reply[256];
  snprintf(reply, sizeof reply, "%s.%" PRIu64, b->inbox, r->token);
  natsStatus st = subject
                      ? natsConnection_PublishRequest(b->nc, subject, reply, data, (int)len)
                      : natsConnection_Publish(b->nc, reply, NULL, 0);
  if (st != NATS_OK) {
    free(r);
    return nt_nats_err(st);
  }
  if (subject) b->st.published++;
  size_t i = r->token & (b->nrb - 1);
  r->hnext = b->rb[i];
  b->rb[i] = r;
  b->nreqs++;
  uv_timer_init(b->loop, &r->timer);
  r->timer.data = r;
  uv_timer_start(&r->timer, req_timeout, timeout_ms, 0);
  return 0;
}

static int nats_request(nt_bus *bb, const char *subject, const void *data, size_t len,
                        uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!cb || !nt_bus_subject_valid(subject, 0) || (len && !data)) return NT_EINVAL;
  if (len > INT_MAX) return NT_ETOOLARGE;
  return req_send(b, subject, data, len, timeout_ms, cb, ud);
}

/* A message published to our own request inbox comes back only after the server has
 * processed everything this connection sent before it (commands are handled in order),
 * so its arrival proves earlier SUBs are in place. */
static int nats_flush(nt_bus *bb, uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!cb) return NT_EINVAL;
  return req_send(b, NULL, NULL, 0, timeout_ms, cb, ud);
}

static int nats_connected(nt_bus *bb) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  return b->connected && !b->closing;
}

static void nats_stats(nt_bus *bb, nt_bus_stats *out) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  *out = b->st;
  uv_mutex_lock(&b->q->mu);
  out->dropped = b->q->dropped + b->dropped_gone;
  uv_mutex_unlock(&b->q->mu);
  for (nt_bus_sub *s = b->subs; s; s = s->next) {
    int64_t d = 0;
    if (natsSubscription_GetDropped(s->ns, &d) == NATS_OK && d > 0) out->dropped += (uint64_t)d;
  }
}

static void bus_closed(uv_handle_t *h) {
  nt_bus_nats *b = h->data;
  xq_release(b->q);
  free(b);
}

static void nats_destroy(nt_bus *bb) {
  nt_bus_nats *b = (nt_bus_nats *)bb;
  if (b->closing) return;
  b->closing = 1;

  /* callbacks run now, as the contract says; they find the bus closing */
  for (size_t i = 0; i < b->nrb; i++) {
    nats_req *r;
    while ((r = b->rb[i]) != NULL) {
      b->rb[i] = r->hnext;
      b->nreqs--;
      req_finish(r, NT_ECLOSED, NULL, 0);
    }
  }
  free(b->rb);
  b->rb = NULL;
  b->nrb = 0;

  /* cut the crossing: handlers still running from here on drop what they carry */
  uv_mutex_lock(&b->q->mu);
  xitem *v = b->q->v;
  size_t n = b->q->len;
  b->q->v = NULL;
  b->q->len = b->q->cap = b->q->bytes = 0;
  b->q->async = NULL;
  uv_mutex_unlock(&b->q->mu);
  for (size_t i = 0; i < n; i++) xitem_release(&v[i]);
  free(v);
  free(b->spare);
  b->spare = NULL;

  /* Write what is buffered now, without blocking: natsConnection_Destroy would otherwise
   * wait up to 500 ms for a PONG that only this (blocked) loop thread could read. Closing
   * the connection ends every subscription on the server and in nats.c. */
  if (natsConnection_Buffered(b->nc) > 0) natsConnection_ProcessWriteEvent(b->nc);
  natsConnection_Destroy(b->nc);
  b->nc = NULL;
  for (nt_bus_sub *s = b->subs, *next; s; s = next) {
    next = s->next;
    s->live = 0;
    natsSubscription_Destroy(s->ns);
    sub_release(s);
  }
  b->subs = b->inbox_sub = NULL;
  natsInbox_Destroy(b->inbox);
  b->inbox = NULL;
  nt_nats_uv_close(b->nle);
  b->nle = NULL;
  uv_close((uv_handle_t *)&b->async, bus_closed);
}

static const nt_bus_vtab nats_vtab = {
    .publish = nats_publish,
    .publish_seq = nats_publish_seq,
    .publish_msgid = nats_publish_msgid,
    .subscribe = nats_subscribe,
    .unsubscribe = nats_unsubscribe,
    .request = nats_request,
    .connected = nats_connected,
    .stats = nats_stats,
    .destroy = nats_destroy,
    .flush = nats_flush,
};

/* ================================================================ creation */

static natsStatus make_opts(nt_bus_nats *b, const char **urls, int nurls, const char *name,
                            const nt_nats_sec *sec, natsOptions **out) {
  natsOptions *o = NULL;
  natsStatus s = nt_nats_opts_new(urls, nurls, name, sec, &o);
  if (s != NATS_OK) return s;
  s = nt_nats_uv_options(b->nle, o);
  /* with a connected callback the first connect does not block: it returns
   * NATS_NOT_YET_CONNECTED and nats.c keeps dialling from its reconnect thread */
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, b->q);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MS);
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(o, PING_INTERVAL_MS);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, MAX_PINGS_OUT);
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(o, RECONNECT_BUF_BYTES);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, b->q);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_reconnected, b->q);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, b->q);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_async_error, NULL);
  /* interest-based subscriptions can number thousands: one delivery thread each (the
   * default) would not scale; the shared pool keeps per-subscription order */
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(o, true);
  /* Without SendAsap a publication waits for nats.c's flusher thread, which sleeps 1 ms
   * "to accumulate more" before it asks the loop for write interest: +1 ms and two thread
   * hops on every message. With it (and the event loop) a publication only adds write
   * interest, so everything published in one loop turn still leaves in one write(2). */
  if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
  if (s == NATS_OK) *out = o;
  else natsOptions_Destroy(o);
  return s;
}

int nt_bus_nats_new(uv_loop_t *loop, const char *urls, const char *name,
                    const nt_bus_handler *h, nt_bus **out) {
  return nt_bus_nats_open(loop, urls, name, NULL, h, out);
}

int nt_bus_nats_open(uv_loop_t *loop, const char *urls, const char *name,
                     const nt_nats_sec *sec, const nt_bus_handler *h, nt_bus **out) {
  if (!loop || !urls || !h || !h->on_msg || !out) return NT_EINVAL;
  char *buf = strdup(urls);
  if (!buf) return NT_ENOMEM;
  const char *list[MAX_URLS];
  int nurls = nt_nats_split_urls(buf, list, MAX_URLS);
  if (nurls <= 0) {
    free(buf);
    return NT_EINVAL;
  }

  nt_bus_nats *b = calloc(1, sizeof *b);
  xq *q = calloc(1, sizeof *q);
  if (!b || !q || uv_mutex_init(&q->mu) != 0) {
    free(b);
    free(q);
    free(buf);
    return NT_ENOMEM;
  }
  atomic_init(&q->refs, 1); /* the bus's */
  q->want_seq = h->on_seq_msg != NULL;
  b->base.vt = &nats_vtab;
  b->base.h = *h;
  b->loop = loop;
  b->q = q;
  b->nle = nt_nats_uv_new(loop);
  int rc = b->nle ? 0 : NT_ENOMEM;
  if (rc == 0 && uv_async_init(loop, &b->async, on_async) != 0) {
    nt_nats_uv_close(b->nle);
    rc = NT_EINTERNAL;
  }
  if (rc) {
    xq_release(q);
    free(b);
    free(buf);
    return rc;
  }
  b->async.data = b;
  q->async = &b->async;

  natsOptions *opts = NULL;
  natsStatus s = make_opts(b, list, nurls, name, sec, &opts);
  if (s == NATS_OK) {
    atomic_fetch_add(&q->refs, 1); /* the connection's, dropped in on_closed */
    s = natsConnection_Connect(&b->nc, opts);
    natsOptions_Destroy(opts);
  }
  if (s == NATS_OK) {
    take_url(b);
    b->connected = 1;
    nt_log_info("bus connected", "{s:s}", "url", b->url);
  } else if (s == NATS_NOT_YET_CONNECTED) {
    nt_log_warn("bus not connected yet, retrying", "{s:s}", "urls",
                nt_url_redact(urls, (char[NT_URL_REDACTED_MAX]){0}, NT_URL_REDACTED_MAX));
  } else {
    /* The connection's reference on q is not dropped: on some failure paths nats.c still
     * posts a closed callback, and a leak at a failed startup beats a use after free. */
    char ru[NT_URL_REDACTED_MAX], re[512];
    nt_log_error("bus cannot start", "{s:s, s:s}", "urls", nt_url_redact(urls, ru, sizeof ru),
                 "error", nt_url_redact(nats_GetLastError(NULL), re, sizeof re));
    q->async = NULL;
    nt_nats_uv_close(b->nle);
    uv_close((uv_handle_t *)&b->async, bus_closed);
    free(buf);
    return nt_nats_err(s);
  }
  free(buf);
  *out = &b->base;
  return 0;
}
