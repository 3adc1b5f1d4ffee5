/* nt_history_mem: in-process room history (standalone node, unit tests) — one global
 * sequence, per-room lists bounded by count and age, all rooms bounded by bytes, message
 * ids deduplicated within a window like a stream's Nats-Msg-Id. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nt_err.h"
#include "nt_hist_quota.h"
#include "nt_history.h"
#include "nt_map.h"
#include "nt_subject.h"

#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define MSG_OVERHEAD 64 /* per message, for the byte bound */
#define DEFAULT_DEDUPE_S 120.0

/* ---------------------------------------------------------------- types */

typedef struct mroom mroom;

/* One stored message: in its room's list and in the global list (oldest first), so the
 * byte bound evicts the oldest message of all rooms. */
typedef struct mmsg {
  struct mmsg *gprev, *gnext;
  struct mmsg *rprev, *rnext;
  mroom *room;
  uint64_t seq;
  int64_t stored_ms;
  size_t len;
  uint8_t data[];
} mmsg;

struct mroom {
  mmsg *head, *tail;
  size_t n;
  uint64_t last_seq; /* newest sequence stored in the room (the next one's `last`) */
  size_t klen;
  char subject[];
};

/* A msg_id seen within the dedupe window (a FIFO: the window is the same for all). */
typedef struct mdup {
  struct mdup *next;
  int64_t expires_ms;
  uint64_t seq;
  size_t klen;
  char key[];
} mdup;

enum { OP_ENSURE, OP_AFTER, OP_PAGE, OP_ACK };

typedef struct mop {
  struct mop *next;
  int kind;
  uint64_t a, b;   /* AFTER: after, upto; PAGE: before, -; ACK: seq, duplicate */
  int status;      /* ACK */
  nt_hist_ack_cb acb;
  size_t max;
  nt_hist_cb cb;
  nt_hist_done_cb done;
  void *ud;
  char subject[];
} mop;

typedef struct hist_mem {
  nt_history base;
  uv_loop_t *loop;
  uv_idle_t idle; /* runs only while ops are queued; the history is freed in its close cb */
  nt_bus *bus;
  nt_hist_handler h;
  double max_age_s;
  size_t max_per_room, max_bytes, max_msg_bytes;
  nt_hist_quota *quota; /* per-tenant budget */
  int own_quota;        /* quota is this history's (not a shared one) */
  nt_map rooms;    /* subject -> mroom* */
  mmsg *ghead, *gtail;
  uint64_t gseq;
  nt_map dups;     /* msg_id -> mdup* (keys borrowed) */
  mdup *dhead, *dtail;
  int64_t dedupe_ms;
  mop *ops, *ops_tail;
  nt_hist_stats st;
  int closing;
} hist_mem;

/* ---------------------------------------------------------------- storage */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void msg_unlink_free(hist_mem *m, mmsg *x) {
  mroom *r = x->room;
  if (x->gprev) x->gprev->gnext = x->gnext;
  else m->ghead = x->gnext;
  if (x->gnext) x->gnext->gprev = x->gprev;
  else m->gtail = x->gprev;
  if (x->rprev) x->rprev->rnext = x->rnext;
  else r->head = x->rnext;
  if (x->rnext) x->rnext->rprev = x->rprev;
  else r->tail = x->rprev;
  r->n--;
  m->st.stored_msgs--;
  m->st.stored_bytes -= x->len + MSG_OVERHEAD;
  free(x);
  if (r->n == 0) { /* an empty room is forgotten, like a stream subject with no message */
    nt_map_del(&m->rooms, r->subject, r->klen);
    free(r);
  }
}

/* Drops what the age bound no longer allows (oldest first across rooms). */
static void expire(hist_mem *m) {
  if (m->max_age_s <= 0) return;
  int64_t cutoff = wall_ms() - (int64_t)(m->max_age_s * 1000);
  while (m->ghead && m->ghead->stored_ms < cutoff) msg_unlink_free(m, m->ghead);
}

static mroom *room_get(hist_mem *m, const char *subject, int create) {
  size_t kl = strlen(subject);
  mroom *r = nt_map_get(&m->rooms, subject, kl);
  if (r || !create) return r;
  r = calloc(1, sizeof *r + kl + 1);
  if (!r) return NULL;
  memcpy(r->subject, subject, kl + 1);
  r->klen = kl;
  if (nt_map_put(&m->rooms, subject, kl, r, NULL)) {
    free(r);
    return NULL;
  }
  return r;
}

static int queue_op(hist_mem *m, int kind, const char *subject, uint64_t a, uint64_t b,
                    size_t max, nt_hist_cb cb, nt_hist_done_cb done, void *ud);

/* Queues pub->on_ack for a later loop turn. */
static int queue_ack(hist_mem *m, const nt_hist_pub *pub, int status, uint64_t seq, int dup) {
  if (!pub || !pub->on_ack) return 0;
  int rc = queue_op(m, OP_ACK, NULL, seq, (uint64_t)dup, 0, NULL, NULL, pub->ud);
  if (rc == 0) {
    m->ops_tail->status = status;
    m->ops_tail->acb = pub->on_ack;
  }
  return rc;
}

static void dups_expire(hist_mem *m, int64_t now) {
  while (m->dhead && m->dhead->expires_ms <= now) {
    mdup *d = m->dhead;
    m->dhead = d->next;
    if (!m->dhead) m->dtail = NULL;
    nt_map_del(&m->dups, d->key, d->klen);
    free(d);
  }
}

/* Remembers that `id` was stored as `seq`. */
static int dups_add(hist_mem *m, const char *id, uint64_t seq, int64_t now) {
  size_t kl = strlen(id);
  mdup *d = malloc(sizeof *d + kl + 1);
  if (!d) return NT_ENOMEM;
  *d = (mdup){NULL, now + m->dedupe_ms, seq, kl};
  memcpy(d->key, id, kl + 1);
  if (nt_map_put(&m->dups, d->key, kl, d, NULL)) {
    free(d);
    return NT_ENOMEM;
  }
  if (m->dtail) m->dtail->next = d;
  else m->dhead = d;
  m->dtail = d;
  return 0;
}

static int mem_publish(nt_history *hh, const char *subject, const void *data, size_t len,
                       const nt_hist_pub *pub) {
  hist_mem *m = (hist_mem *)hh;
  if (m->closing) return NT_ECLOSED;
  char live[NT_SUBJECT_MAX];
  const char *id = pub ? pub->msg_id : NULL;
  if (nt_subject_live_of(live, sizeof live, subject) < 0 || (len && !data) ||
      (id && !nt_hist_msgid_valid(id)))
    return NT_EINVAL;
  int64_t now = wall_ms();
  dups_expire(m, now);
  mdup *seen = id ? nt_map_get(&m->dups, id, strlen(id)) : NULL;
  if (seen) { /* like the stream: acknowledged, neither stored nor delivered again */
    int rc = queue_ack(m, pub, 0, seen->seq, 1);
    if (rc == 0) {
      m->st.published++;
      m->st.duplicates++;
    }
    return rc;
  }
  if (nt_hist_over_quota(m->quota, m->max_msg_bytes, subject, len, uv_now(m->loop))) {
    int rc = queue_ack(m, pub, NT_ELIMIT, 0, 0); /* refused: not stored, not delivered */
    if (rc == 0) {
      m->st.published++;
      m->st.over_quota++;
    }
    return rc;
  }
  expire(m);
  mroom *r = room_get(m, subject, 1);
  mmsg *x = r ? malloc(sizeof *x + len) : NULL;
  if (!x || (id && dups_add(m, id, m->gseq + 1, now))) {
    free(x);
    if (r && r->n == 0) {
      nt_map_del(&m->rooms, r->subject, r->klen);
      free(r);
    }
    return NT_ENOMEM;
  }
  x->room = r;
  x->seq = ++m->gseq;
  x->stored_ms = now;
  x->len = len;
  if (len) memcpy(x->data, data, len);
  x->rnext = x->gnext = NULL;
  x->rprev = r->tail;
  if (r->tail) r->tail->rnext = x;
  else r->head = x;
  r->tail = x;
  x->gprev = m->gtail;
  if (m->gtail) m->gtail->gnext = x;
  else m->ghead = x;
  m->gtail = x;
  r->n++;
  m->st.stored_msgs++;
  m->st.stored_bytes += len + MSG_OVERHEAD;
  nt_bus_seq seq = {x->seq, r->last_seq};
  r->last_seq = x->seq;
  /* bounds: this room's count, then all rooms' bytes (never the message just stored) */
  while (r->n > m->max_per_room) msg_unlink_free(m, r->head);
  while (m->st.stored_bytes > m->max_bytes && m->ghead != x) msg_unlink_free(m, m->ghead);
  m->st.published++;
  m->st.stored++;
  /* stored: no memory for the acknowledgment is an error (a resend with the same msg_id
   * is then a duplicate); the live copy goes out either way */
  int rc = queue_ack(m, pub, 0, seq.seq, 0);
  nt_bus_publish_seq(m->bus, live, data, len, &seq);
  return rc;
}

/* ---------------------------------------------------------------- reads */

/* Copies the selected messages into one block (a callback may publish and so evict). */
static nt_hist_msg *copy_out(mmsg **sel, size_t n) {
  size_t bytes = n * sizeof(nt_hist_msg);
  for (size_t i = 0; i < n; i++) bytes += sel[i]->len;
  nt_hist_msg *out = malloc(bytes ? bytes : 1);
  if (!out) return NULL;
  uint8_t *p = (uint8_t *)(out + n);
  for (size_t i = 0; i < n; i++) {
    out[i] = (nt_hist_msg){sel[i]->seq, sel[i]->stored_ms, p, sel[i]->len};
    if (sel[i]->len) memcpy(p, sel[i]->data, sel[i]->len);
    p += sel[i]->len;
  }
  return out;
}

/* Answers a fetch with the `n` selected messages (oldest first; `sel` is freed) and counts
 * it. */
static void fetch_done(hist_mem *m, mop *op, nt_hist_result *res, mmsg **sel, size_t n) {
  nt_hist_msg *out = res->status ? NULL : copy_out(sel, n);
  if (!res->status && !out) res->status = NT_ENOMEM;
  res->msgs = out;
  res->n = out ? n : 0;
  free(sel);
  m->st.fetches++;
  m->st.fetched += res->n;
  if (res->status) m->st.fetch_errors++;
  op->cb(op->ud, res);
  free(out);
}

static void run_after(hist_mem *m, mop *op) {
  nt_hist_result res = {0};
  mroom *r = room_get(m, op->subject, 0);
  mmsg **sel = malloc((op->max ? op->max : 1) * sizeof *sel);
  size_t n = 0;
  res.anchored = op->a == 0;
  if (!sel) {
    res.status = NT_ENOMEM;
  } else if (r) {
    for (mmsg *x = r->head; x; x = x->rnext) {
      if (x->seq == op->a) res.anchored = 1;
      if (x->seq <= op->a) continue;
      if (op->b && x->seq > op->b) break;
      if (n == op->max) {
        res.more = 1;
        break;
      }
      sel[n++] = x;
    }
  }
  fetch_done(m, op, &res, sel, n);
}

static void run_page(hist_mem *m, mop *op) {
  nt_hist_result res = {0};
  mroom *r = room_get(m, op->subject, 0);
  mmsg **sel = malloc(op->max * sizeof *sel);
  size_t n = 0;
  if (!sel) {
    res.status = NT_ENOMEM;
  } else if (r) {
    for (mmsg *x = r->tail; x; x = x->rprev) {
      if (op->a && x->seq >= op->a) continue;
      if (n == op->max) {
        res.more = 1;
        break;
      }
      sel[n++] = x;
    }
    for (size_t i = 0; i < n / 2; i++) { /* newest first -> oldest first */
      mmsg *t = sel[i];
      sel[i] = sel[n - 1 - i];
      sel[n - 1 - i] = t;
    }
  }
  fetch_done(m, op, &res, sel, n);
}

/* Runs the ops queued before this turn; a callback may queue more (next turn) or destroy
 * the history (its memory lives until the idle handle's close callback). */
static void on_idle(uv_idle_t *hd) {
  hist_mem *m = hd->data;
  mop *op = m->ops;
  m->ops = m->ops_tail = NULL;
  uv_idle_stop(&m->idle);
  while (op) {
    mop *next = op->next;
    if (op->kind == OP_ACK) {
      nt_hist_ack a = {op->status, op->a, (int)op->b};
      op->acb(op->ud, &a);
    } else if (m->closing) {
      nt_hist_result res = {.status = NT_ECLOSED};
      if (op->kind == OP_ENSURE) { if (op->done) op->done(op->ud, NT_ECLOSED); }
      else op->cb(op->ud, &res);
    } else {
      expire(m);
      if (op->kind == OP_ENSURE) { if (op->done) op->done(op->ud, 0); }
      else if (op->kind == OP_AFTER) run_after(m, op);
      else run_page(m, op);
    }
    free(op);
    op = next;
  }
  if (m->ops && !m->closing) uv_idle_start(&m->idle, on_idle);
}

static int queue_op(hist_mem *m, int kind, const char *subject, uint64_t a, uint64_t b,
                    size_t max, nt_hist_cb cb, nt_hist_done_cb done, void *ud) {
  if (m->closing) return NT_ECLOSED;
  size_t sl = subject ? strlen(subject) : 0;
  mop *op = calloc(1, sizeof *op + sl + 1);
  if (!op) return NT_ENOMEM;
  op->kind = kind;
  op->a = a;
  op->b = b;
  op->max = max;
  op->cb = cb;
  op->done = done;
  op->ud = ud;
  if (sl) memcpy(op->subject, subject, sl + 1);
  if (m->ops_tail) m->ops_tail->next = op;
  else m->ops = op;
  m->ops_tail = op;
  if (!uv_is_active((uv_handle_t *)&m->idle)) uv_idle_start(&m->idle, on_idle);
  return 0;
}

static int valid_room_subject(const char *subject) {
  char tmp[NT_SUBJECT_MAX];
  return nt_subject_live_of(tmp, sizeof tmp, subject) >= 0;
}

static int mem_ensure(nt_history *hh, nt_hist_done_cb cb, void *ud) {
  return queue_op((hist_mem *)hh, OP_ENSURE, NULL, 0, 0, 0, NULL, cb, ud);
}

static int mem_fetch_after(nt_history *hh, const char *subject, uint64_t after, uint64_t upto,
                           size_t max, nt_hist_cb cb, void *ud) {
  if (!cb || !max || !valid_room_subject(subject)) return NT_EINVAL;
  return queue_op((hist_mem *)hh, OP_AFTER, subject, after, upto, max, cb, NULL, ud);
}

static int mem_fetch_page(nt_history *hh, const char *subject, uint64_t before, size_t limit,
                          nt_hist_cb cb, void *ud) {
  if (!cb || !limit || !valid_room_subject(subject)) return NT_EINVAL;
  return queue_op((hist_mem *)hh, OP_PAGE, subject, before, 0, limit, cb, NULL, ud);
}

static int mem_storing(nt_history *hh) { return !((hist_mem *)hh)->closing; }

static void mem_stats(nt_history *hh, nt_hist_stats *out) {
  hist_mem *m = (hist_mem *)hh;
  *out = m->st;
  out->storing = !m->closing;
}

static void mem_closed(uv_handle_t *hd) {
  hist_mem *m = hd->data;
  if (m->own_quota) nt_hist_quota_free(m->quota);
  free(m);
}

static void mem_destroy(nt_history *hh) {
  hist_mem *m = (hist_mem *)hh;
  if (m->closing) return;
  m->closing = 1;
  mop *op = m->ops;
  m->ops = m->ops_tail = NULL;
  while (op) { /* callbacks now, as the contract says */
    mop *next = op->next;
    nt_hist_result res = {.status = NT_ECLOSED};
    if (op->kind == OP_ACK) { /* decided already: stored, duplicate or live-only */
      nt_hist_ack a = {op->status, op->a, (int)op->b};
      op->acb(op->ud, &a);
    } else if (op->kind == OP_ENSURE) { if (op->done) op->done(op->ud, NT_ECLOSED); }
    else op->cb(op->ud, &res);
    free(op);
    op = next;
  }
  dups_expire(m, INT64_MAX);
  nt_map_clear(&m->dups);
  while (m->ghead) msg_unlink_free(m, m->ghead);
  nt_map_clear(&m->rooms);
  uv_idle_stop(&m->idle);
  uv_close((uv_handle_t *)&m->idle, mem_closed);
}

static const nt_history_vtab mem_vtab = {
    .ensure = mem_ensure,
    .publish = mem_publish,
    .fetch_after = mem_fetch_after,
    .fetch_page = mem_fetch_page,
    .storing = mem_storing,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

nt_history *nt_history_mem_new(uv_loop_t *loop, nt_bus *bus, const nt_hist_cfg *cfg,
                               const nt_hist_handler *h) {
  if (!loop || !bus || !cfg || cfg->max_per_room < 1 || cfg->dedupe_window_s < 0) return NULL;
  hist_mem *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->own_quota = !cfg->quota;
  m->quota = cfg->quota ? cfg->quota
                        : nt_hist_quota_new(cfg->tenant_bytes, nt_hist_quota_window_ms(cfg));
  if (!m->quota || uv_idle_init(loop, &m->idle) != 0) {
    if (m->own_quota) nt_hist_quota_free(m->quota);
    free(m);
    return NULL;
  }
  m->base.vt = &mem_vtab;
  m->loop = loop;
  m->idle.data = m;
  m->bus = bus;
  if (h) m->h = *h;
  m->max_age_s = cfg->max_age_s;
  m->max_per_room = (size_t)cfg->max_per_room;
  m->max_bytes = cfg->max_bytes ? cfg->max_bytes : DEFAULT_MAX_BYTES;
  m->max_msg_bytes = cfg->max_msg_bytes;
  nt_map_init_borrowed(&m->dups);
  m->dedupe_ms = (int64_t)((cfg->dedupe_window_s > 0 ? cfg->dedupe_window_s
                                                     : DEFAULT_DEDUPE_S) * 1000);
  return &m->base;
}
