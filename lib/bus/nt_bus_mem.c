/* nt_bus_mem: in-process bus with NATS subject semantics, for unit tests and single-node mode. */
#include "nt_bus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

/* Reply subjects of nt_bus_request(); a publish to one resolves the request. */
#define MEM_INBOX_PREFIX "_INBOX.mem."
#define MEM_INBOX_PREFIX_LEN (sizeof MEM_INBOX_PREFIX - 1)

/* ---------------------------------------------------------------- subjects */

int nt_bus_subject_valid(const char *subject, int wildcards) {
  if (subject == NULL || *subject == '\0') return 0;
  const char *tok = subject;
  for (const char *p = subject;; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '.' || c == '\0') {
      size_t n = (size_t)(p - tok);
      if (n == 0) return 0; /* leading, trailing or doubled dot */
      if (n == 1 && (*tok == '*' || *tok == '>')) {
        if (!wildcards) return 0;
        if (*tok == '>' && c != '\0') return 0; /* '>' only as the last token */
      }
      if (c == '\0') return 1;
      tok = p + 1;
    } else if (c <= ' ' || c == 0x7f) {
      /* whitespace would split the protocol line: "PUB a b 1" means reply subject b */
      return 0;
    }
  }
}

int nt_bus_subject_match(const char *pattern, const char *subject) {
  const char *p = pattern, *s = subject;
  for (;;) {
    const char *pe = strchr(p, '.');
    const char *se = strchr(s, '.');
    if (!pe) pe = p + strlen(p);
    if (!se) se = s + strlen(s);
    size_t pn = (size_t)(pe - p), sn = (size_t)(se - s);
    if (pn == 1 && *p == '>') return sn > 0;
    if (!(pn == 1 && *p == '*') && (pn != sn || memcmp(p, s, pn) != 0)) return 0;
    if (*pe == '\0' || *se == '\0') return *pe == '\0' && *se == '\0';
    p = pe + 1;
    s = se + 1;
  }
}

/* ---------------------------------------------------------------- types */

/* One publication, shared (reference-counted) by all of its deliveries: one allocation
 * holding subject, reply and payload. */
typedef struct mem_msg {
  int refs;
  size_t len;
  nt_bus_seq seq; /* seq 0: no stream position */
  const char *reply; /* NULL or inside subject[] */
  const uint8_t *data;
  char subject[];
} mem_msg;

enum { IT_MSG, IT_REPLY, IT_NORESP };

typedef struct mem_item {
  int kind;
  nt_bus_sub *sub; /* IT_MSG */
  mem_msg *msg;    /* IT_MSG, IT_REPLY */
  uint64_t token;  /* IT_REPLY, IT_NORESP: looked up at delivery, the request may be gone */
} mem_item;

/* Delivery queue: a growable array, double-buffered (queue and spare swap on each drain)
 * so that the steady state allocates nothing for queueing. */
typedef struct mem_vec {
  mem_item *v;
  size_t len, cap;
} mem_vec;

struct nt_bus_sub {
  int refs;      /* 1 while subscribed + 1 per queued delivery */
  int live;      /* cleared by unsubscribe: deliveries still queued are then skipped */
  int wildcard;
  uint32_t hash;
  uint64_t mark; /* publish epoch whose queue-group pick already covered this sub */
  nt_bus_sub *prev, *next; /* hash chain (literal subjects) or wildcard list */
  const char *queue;       /* NULL or inline after subject[] */
  char subject[];
};

typedef struct nt_bus_mem nt_bus_mem;

typedef struct mem_req {
  uv_timer_t timer; /* the request is freed in the timer's close callback */
  nt_bus_mem *b;
  uint64_t token;
  nt_bus_reply_cb cb;
  void *ud;
  struct mem_req *prev, *next;
} mem_req;

struct nt_bus_mem {
  nt_bus base;
  uv_loop_t *loop;
  uv_idle_t idle; /* active only while the queue is non-empty; the bus is freed in its
                   * close callback */
  mem_vec q, spare;
  nt_bus_sub **buckets; /* literal subjects, chained */
  size_t nbuckets, nliteral;
  nt_bus_sub *wild;     /* subscriptions with wildcards, scanned on every publish */
  nt_bus_sub **scratch; /* matches of the current publish */
  size_t scratch_cap;
  mem_req *reqs;        /* few in practice (no backend answers in single-node mode) */
  uint64_t epoch, rr, next_token;
  nt_bus_stats st;
  int closing;
};

/* ---------------------------------------------------------------- helpers */

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static void msg_release(mem_msg *m) {
  if (m && --m->refs == 0) free(m);
}

static void sub_release(nt_bus_sub *s) {
  if (--s->refs == 0) free(s);
}

static void item_release(mem_item *it) {
  if (it->sub) sub_release(it->sub);
  msg_release(it->msg);
}

static int vec_reserve(mem_vec *q, size_t extra) {
  if (q->len + extra <= q->cap) return 0;
  size_t cap = q->cap ? q->cap : 64;
  while (cap < q->len + extra) cap *= 2;
  mem_item *v = realloc(q->v, cap * sizeof *v);
  if (!v) return NT_ENOMEM;
  q->v = v;
  q->cap = cap;
  return 0;
}

static void drain(uv_idle_t *h);

/* The caller reserved room. Delivery starts from the idle handle, after the current
 * callback has returned: never inside publish. */
static void enqueue(nt_bus_mem *b, int kind, nt_bus_sub *sub, mem_msg *msg, uint64_t token) {
  if (sub) sub->refs++;
  if (msg) msg->refs++;
  b->q.v[b->q.len++] = (mem_item){kind, sub, msg, token};
  if (!uv_is_active((uv_handle_t *)&b->idle)) uv_idle_start(&b->idle, drain);
}

static mem_req *req_find(nt_bus_mem *b, uint64_t token) {
  for (mem_req *r = b->reqs; r; r = r->next)
    if (r->token == token) return r;
  return NULL;
}

static void req_unlink(nt_bus_mem *b, mem_req *r) {
  if (r->prev) r->prev->next = r->next;
  else b->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void req_closed(uv_handle_t *h) { free(h->data); }

/* Completes a request exactly once: unlinks it first, so that the callback may use or
 * destroy the bus without finding the request again. */
static void req_finish(mem_req *r, int status, const uint8_t *data, size_t len) {
  req_unlink(r->b, r);
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, req_closed);
  r->cb(r->ud, status, data, len);
}

static void req_timeout(uv_timer_t *t) { req_finish(t->data, NT_ETIMEOUT, NULL, 0); }

/* Parses the token of "_INBOX.mem.<n>"; returns 0 when `subject` is not one. */
static uint64_t inbox_token(const char *subject) {
  if (strncmp(subject, MEM_INBOX_PREFIX, MEM_INBOX_PREFIX_LEN) != 0) return 0;
  const char *p = subject + MEM_INBOX_PREFIX_LEN;
  if (*p < '1' || *p > '9') return 0;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(p, &end, 10);
  return (*end == '\0' && errno == 0) ? (uint64_t)v : 0;
}

/* ---------------------------------------------------------------- matching */

static int scratch_push(nt_bus_mem *b, size_t *n, nt_bus_sub *s) {
  if (*n == b->scratch_cap) {
    size_t cap = b->scratch_cap ? b->scratch_cap * 2 : 16;
    nt_bus_sub **v = realloc(b->scratch, cap * sizeof *v);
    if (!v) return NT_ENOMEM;
    b->scratch = v;
    b->scratch_cap = cap;
  }
  b->scratch[(*n)++] = s;
  return 0;
}

/* Collects every live subscription matching `subject` into b->scratch, in subscription
 * order within the literal and the wildcard sets. */
static int collect(nt_bus_mem *b, const char *subject, size_t *out) {
  size_t n = 0;
  uint32_t h = hash_str(subject);
  for (nt_bus_sub *s = b->buckets[h & (b->nbuckets - 1)]; s; s = s->next)
    if (s->hash == h && strcmp(s->subject, subject) == 0 && scratch_push(b, &n, s))
      return NT_ENOMEM;
  for (nt_bus_sub *s = b->wild; s; s = s->next)
    if (nt_bus_subject_match(s->subject, subject) && scratch_push(b, &n, s))
      return NT_ENOMEM;
  *out = n;
  return 0;
}

static void literal_link(nt_bus_mem *b, nt_bus_sub *s) {
  nt_bus_sub **head = &b->buckets[s->hash & (b->nbuckets - 1)];
  /* appended, so that matching returns subscriptions in the order they were made */
  nt_bus_sub **pp = head, *prev = NULL;
  while (*pp) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  s->prev = prev;
  s->next = NULL;
  *pp = s;
}

static int literal_grow(nt_bus_mem *b) {
  size_t n = b->nbuckets * 2;
  nt_bus_sub **nb = calloc(n, sizeof *nb);
  if (!nb) return NT_ENOMEM;
  nt_bus_sub **old = b->buckets;
  size_t oldn = b->nbuckets;
  b->buckets = nb;
  b->nbuckets = n;
  for (size_t i = 0; i < oldn; i++) {
    nt_bus_sub *s = old[i];
    while (s) {
      nt_bus_sub *next = s->next;
      literal_link(b, s);
      s = next;
    }
  }
  free(old);
  return 0;
}

/* Queues one publication for every matching plain subscription and for one member of
 * each matching queue group (round robin), plus the reply to a pending request when
 * `subject` is one of our inboxes. Subscriptions are evaluated now, like the server does
 * when the message arrives: later subscribers do not get it. */
static int route(nt_bus_mem *b, const char *subject, const void *data, size_t len,
                 const char *reply, const nt_bus_seq *seq) {
  size_t n;
  int rc = collect(b, subject, &n);
  if (rc) return rc;
  uint64_t token = inbox_token(subject);
  int to_req = token && req_find(b, token) != NULL;
  if (n == 0 && !to_req) return 0;
  if (vec_reserve(&b->q, n + 1)) return NT_ENOMEM;

  size_t sl = strlen(subject) + 1, rl = reply ? strlen(reply) + 1 : 0;
  mem_msg *m = malloc(sizeof *m + sl + rl + len);
  if (!m) return NT_ENOMEM;
  m->refs = 1; /* ours until the end of this function */
  m->len = len;
  m->seq = seq ? *seq : (nt_bus_seq){0, 0};
  memcpy(m->subject, subject, sl);
  m->reply = reply ? memcpy(m->subject + sl, reply, rl) : NULL;
  m->data = (uint8_t *)m->subject + sl + rl;
  if (len) memcpy((uint8_t *)m->subject + sl + rl, data, len);

  b->epoch++;
  nt_bus_sub **v = b->scratch;
  for (size_t i = 0; i < n; i++) {
    nt_bus_sub *s = v[i];
    if (!s->queue) {
      enqueue(b, IT_MSG, s, m, 0);
      continue;
    }
    if (s->mark == b->epoch) continue;
    size_t members = 0;
    for (size_t j = i; j < n; j++)
      if (v[j]->queue && v[j]->mark != b->epoch && strcmp(v[j]->queue, s->queue) == 0)
        members++;
    size_t pick = (size_t)(b->rr++ % members), k = 0;
    for (size_t j = i; j < n; j++) {
      if (!v[j]->queue || v[j]->mark == b->epoch || strcmp(v[j]->queue, s->queue) != 0)
        continue;
      v[j]->mark = b->epoch;
      if (k++ == pick) enqueue(b, IT_MSG, v[j], m, 0);
    }
  }
  if (to_req) enqueue(b, IT_REPLY, NULL, m, token);
  msg_release(m);
  return 0;
}

/* ---------------------------------------------------------------- delivery */

static void deliver(nt_bus_mem *b, mem_item *it) {
  mem_req *r;
  switch (it->kind) {
  case IT_MSG:
    if (!it->sub->live) return;
    b->st.received++;
    if (it->msg->seq.seq && b->base.h.on_seq_msg)
      b->base.h.on_seq_msg(b->base.h.ud, it->msg->subject, it->msg->data, it->msg->len,
                           &it->msg->seq);
    else
      b->base.h.on_msg(b->base.h.ud, it->msg->subject, it->msg->data, it->msg->len,
                       it->msg->reply, it->sub);
    return;
  case IT_REPLY:
    if ((r = req_find(b, it->token)) != NULL) req_finish(r, 0, it->msg->data, it->msg->len);
    return;
  case IT_NORESP:
    if ((r = req_find(b, it->token)) != NULL) req_finish(r, NT_ENORESPONDER, NULL, 0);
    return;
  }
}

/* Delivers what was queued before this turn; what the callbacks publish meanwhile waits
 * for the next turn, so ping-pong between subscribers cannot starve the loop. A callback
 * may destroy the bus: its memory lives until the idle handle's close callback. */
static void drain(uv_idle_t *h) {
  nt_bus_mem *b = h->data;
  mem_vec v = b->q;
  b->q = b->spare;
  b->spare = (mem_vec){0};
  if (v.len) b->st.wakeups++;
  for (size_t i = 0; i < v.len; i++) {
    if (!b->closing) deliver(b, &v.v[i]);
    item_release(&v.v[i]);
  }
  v.len = 0;
  if (b->closing) {
    free(v.v);
    return;
  }
  b->spare = v;
  if (b->q.len == 0) uv_idle_stop(&b->idle);
}

/* ---------------------------------------------------------------- vtable */

static int mem_publish(nt_bus *bb, const char *subject, const void *data, size_t len,
                       const char *reply) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!nt_bus_subject_valid(subject, 0) || (reply && !nt_bus_subject_valid(reply, 0)) ||
      (len && !data))
    return NT_EINVAL;
  int rc = route(b, subject, data, len, reply, NULL);
  if (rc == 0) b->st.published++;
  return rc;
}

static int mem_publish_msgid(nt_bus *bb, const char *subject, const void *data, size_t len,
                             const char *reply, const char *msg_id) {
  (void)msg_id; /* no headers in memory: the memory history deduplicates */
  return mem_publish(bb, subject, data, len, reply);
}

static int mem_publish_seq(nt_bus *bb, const char *subject, const void *data, size_t len,
                           const nt_bus_seq *seq) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!seq || !nt_bus_subject_valid(subject, 0) || (len && !data)) return NT_EINVAL;
  int rc = route(b, subject, data, len, NULL, seq);
  if (rc == 0) b->st.published++;
  return rc;
}

static int mem_subscribe(nt_bus *bb, const char *subject, const char *queue_group,
                         nt_bus_sub **out) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!out || !nt_bus_subject_valid(subject, 1)) return NT_EINVAL;
  if (queue_group) {
    if (!*queue_group) return NT_EINVAL;
    for (const char *p = queue_group; *p; p++)
      if ((unsigned char)*p <= ' ' || *p == 0x7f) return NT_EINVAL;
  }
  if (b->nliteral >= b->nbuckets && literal_grow(b)) return NT_ENOMEM;

  size_t sl = strlen(subject) + 1, ql = queue_group ? strlen(queue_group) + 1 : 0;
  nt_bus_sub *s = calloc(1, sizeof *s + sl + ql);
  if (!s) return NT_ENOMEM;
  memcpy(s->subject, subject, sl);
  if (queue_group) s->queue = memcpy(s->subject + sl, queue_group, ql);
  s->refs = 1;
  s->live = 1;
  s->wildcard = !nt_bus_subject_valid(subject, 0);
  s->hash = hash_str(subject);
  if (s->wildcard) {
    /* appended for the same reason as literal_link */
    nt_bus_sub **pp = &b->wild, *prev = NULL;
    while (*pp) {
      prev = *pp;
      pp = &(*pp)->next;
    }
    s->prev = prev;
    *pp = s;
  } else {
    literal_link(b, s);
    b->nliteral++;
  }
  b->st.subscriptions++;
  *out = s;
  return 0;
}

static void mem_unsubscribe(nt_bus *bb, nt_bus_sub *s) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (!s || !s->live) return;
  nt_bus_sub **head = s->wildcard ? &b->wild : &b->buckets[s->hash & (b->nbuckets - 1)];
  if (s->prev) s->prev->next = s->next;
  else *head = s->next;
  if (s->next) s->next->prev = s->prev;
  if (!s->wildcard) b->nliteral--;
  s->live = 0;
  b->st.subscriptions--;
  sub_release(s);
}

/* A pending request with its timer initialised (not started) and linked in. */
static mem_req *req_new(nt_bus_mem *b, nt_bus_reply_cb cb, void *ud) {
  mem_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  uv_timer_init(b->loop, &r->timer);
  r->timer.data = r;
  r->b = b;
  r->token = ++b->next_token;
  r->cb = cb;
  r->ud = ud;
  r->next = b->reqs;
  if (b->reqs) b->reqs->prev = r;
  b->reqs = r;
  return r;
}

static int mem_request(nt_bus *bb, const char *subject, const void *data, size_t len,
                       uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!cb || !nt_bus_subject_valid(subject, 0) || (len && !data)) return NT_EINVAL;
  size_t n;
  int rc = collect(b, subject, &n);
  if (rc) return rc;
  if (n == 0 && vec_reserve(&b->q, 1)) return NT_ENOMEM;

  mem_req *r = req_new(b, cb, ud);
  if (!r) return NT_ENOMEM;

  if (n == 0) {
    /* nobody listens: answer on a later turn, as NATS does with its 503 status */
    enqueue(b, IT_NORESP, NULL, NULL, r->token);
    return 0;
  }
  char reply[MEM_INBOX_PREFIX_LEN + 24];
  snprintf(reply, sizeof reply, MEM_INBOX_PREFIX "%" PRIu64, r->token);
  if ((rc = route(b, subject, data, len, reply, NULL)) != 0) {
    req_unlink(b, r);
    uv_close((uv_handle_t *)&r->timer, req_closed);
    return rc;
  }
  b->st.published++;
  uv_timer_start(&r->timer, req_timeout, timeout_ms, 0);
  return 0;
}

/* A message to our own request's inbox resolves it on a later turn, after everything
 * queued before: the in-memory analogue of a NATS round trip. */
static int mem_flush(nt_bus *bb, uint64_t timeout_ms, nt_bus_reply_cb cb, void *ud) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (b->closing) return NT_ECLOSED;
  if (!cb) return NT_EINVAL;
  mem_req *r = req_new(b, cb, ud);
  if (!r) return NT_ENOMEM;
  char inbox[MEM_INBOX_PREFIX_LEN + 24];
  snprintf(inbox, sizeof inbox, MEM_INBOX_PREFIX "%" PRIu64, r->token);
  int rc = route(b, inbox, NULL, 0, NULL, NULL);
  if (rc) {
    req_unlink(b, r);
    uv_close((uv_handle_t *)&r->timer, req_closed);
    return rc;
  }
  uv_timer_start(&r->timer, req_timeout, timeout_ms, 0);
  return 0;
}

static int mem_connected(nt_bus *bb) { return !((nt_bus_mem *)bb)->closing; }

static void mem_stats(nt_bus *bb, nt_bus_stats *out) { *out = ((nt_bus_mem *)bb)->st; }

static void bus_closed(uv_handle_t *h) { free(h->data); }

static void mem_destroy(nt_bus *bb) {
  nt_bus_mem *b = (nt_bus_mem *)bb;
  if (b->closing) return;
  b->closing = 1;
  while (b->reqs) req_finish(b->reqs, NT_ECLOSED, NULL, 0);
  for (size_t i = 0; i < b->q.len; i++) item_release(&b->q.v[i]);
  free(b->q.v);
  free(b->spare.v);
  b->q = b->spare = (mem_vec){0};
  /* a drain in progress up the stack still holds references to some subs */
  for (size_t i = 0; i < b->nbuckets; i++) {
    for (nt_bus_sub *s = b->buckets[i], *next; s; s = next) {
      next = s->next;
      s->live = 0;
      sub_release(s);
    }
  }
  for (nt_bus_sub *s = b->wild, *next; s; s = next) {
    next = s->next;
    s->live = 0;
    sub_release(s);
  }
  free(b->buckets);
  free(b->scratch);
  b->buckets = NULL;
  b->wild = NULL;
  b->scratch = NULL;
  uv_idle_stop(&b->idle);
  uv_close((uv_handle_t *)&b->idle, bus_closed);
}

static const nt_bus_vtab mem_vtab = {
    .publish = mem_publish,
    .publish_seq = mem_publish_seq,
    .publish_msgid = mem_publish_msgid,
    .subscribe = mem_subscribe,
    .unsubscribe = mem_unsubscribe,
    .request = mem_request,
    .connected = mem_connected,
    .stats = mem_stats,
    .destroy = mem_destroy,
    .flush = mem_flush,
};

nt_bus *nt_bus_mem_new(uv_loop_t *loop, const nt_bus_handler *h) {
  if (!loop || !h || !h->on_msg) return NULL;
  nt_bus_mem *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->nbuckets = 64;
  b->buckets = calloc(b->nbuckets, sizeof *b->buckets);
  if (!b->buckets || uv_idle_init(loop, &b->idle) != 0) {
    free(b->buckets);
    free(b);
    return NULL;
  }
  b->base.vt = &mem_vtab;
  b->base.h = *h;
  b->loop = loop;
  b->idle.data = b;
  return &b->base;
}
