/* nt_resume: room history on a node — sequenced live delivery with gap repair, resume on
 * joinRoom with `since`, the history metrics. History pages: nt_resume_page.c. */
#include "nt_resume.h"
#include "nt_resume_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_chat.h"
#include "nt_envelope.h"
#include "nt_err.h"
#include "nt_log.h"
#include "nt_map.h"
#include "nt_proto.h"

#define BUF_MAX_ITEMS 10000   /* live messages held for one resume or one room repair */
#define RH_COPIES 64          /* messages remembered per room to drop a late second copy */
#define LOG_INTERVAL_MS 5000
#define PACE_MS 5             /* a paced replay is topped up this often */
#define PACE_STALL_MS 10000   /* a paced replay that makes no progress this long is sent at
                               * once (and so closes a reader that does not read) */

/* ================================================================ state
 *
 * Items are the unit of the live path: one rendered message frame (shared, referenced),
 * its sequence and its predecessor in the room. An item without a frame is a link of the
 * sequence that nobody can be shown (not a renderable room message): it still moves the
 * position, or the next message would look like a gap forever. */

typedef struct rh_item {
  nt_frame *f;                    /* NULL: nothing to deliver */
  uint64_t seq, prev;             /* seq 0: live-only, outside the sequence */
  uint64_t idh;                   /* hash of the message id (0: none) */
  char skip[NT_CONN_ID_LEN + 1];  /* excludeSelf: the sender's connection, or "" */
} rh_item;

typedef struct rh_queue {
  rh_item *v;
  size_t head, len, cap;
} rh_queue;

enum { RS_BUFFER, RS_FILTER, RS_PACED };

/* A connection resuming in a room. RS_BUFFER: its replay (or a repair of it) is being
 * read, live items are buffered. RS_PACED: `joined` is sent and the replay goes out as
 * the socket takes it (rs_pump), live items are buffered behind it. RS_FILTER: caught up, but it may have been shown
 * messages (from the replay) that the room's live sequence has not reached yet; those are
 * skipped until the room passes `cur`, then the resumer is dropped (a plain member). */
typedef struct resumer {
  struct resumer *next;
  nt_conn *c;                 /* a member of the room: valid while the resumer exists */
  uint64_t id;
  uint64_t since, cur;
  int state;
  int force;                  /* accept the next item whatever its predecessor */
  int fetched, have_members, recovered;
  uint64_t wait;              /* waits for the room's resume read of this id (coalesced) */
  uint64_t room_last;         /* ... and the room's last sequence when it began */
  uint64_t pace_at;           /* RS_PACED: last time part of the replay went out */
  char **members;
  size_t nmembers;
  char reqid[NT_REQID_MAX + 1];
  rh_queue replay;            /* read from the history, sent once the members are known */
  rh_queue buf;               /* live items that arrived meanwhile */
} resumer;

struct nt_rhist {
  uint64_t last;              /* last sequence delivered to the room's members (0: none) */
  int force;
  int repairing;
  uint64_t repair_id;
  rh_queue pend;              /* live items held while a gap is repaired */
  resumer *rs;
  size_t nrs;
  uint64_t cread;             /* the resume read in flight that later resumers may share
                               * (its resumer id; 0: none) */
  uint64_t cread_after;       /* ... and the `since` it reads after */
  nt_map byconn;              /* connection id -> its resumer (borrowed keys: rs->c->id):
                               * the fan-out asks for every member while a room has
                               * resumers, so the lookup must not walk the list */
  uint64_t *copies;           /* the last RH_COPIES messages delivered (late_copy); NULL
                               * until the room's first message */
  nt_recent recent;           /* what the room delivered lately: resumes within it are
                               * answered from memory (nt_recent.h) */
  unsigned copies_at;
  char live[NT_SUBJECT_MAX];
};

typedef struct nt_rhist nt_rhist;

/* ---------------------------------------------------------------- queues */

static int q_push(rh_queue *q, const rh_item *it) {
  if (q->head + q->len == q->cap) {
    if (q->head) { /* compact first */
      memmove(q->v, q->v + q->head, q->len * sizeof *q->v);
      q->head = 0;
    }
    if (q->len == q->cap) {
      size_t cap = q->cap ? q->cap * 2 : 16;
      rh_item *v = realloc(q->v, cap * sizeof *v);
      if (!v) return NT_ENOMEM;
      q->v = v;
      q->cap = cap;
    }
  }
  q->v[q->head + q->len++] = *it;
  return 0;
}

static rh_item *q_front(rh_queue *q) { return q->len ? &q->v[q->head] : NULL; }

/* Drops the front item (and its frame reference). */
static void q_pop(rh_queue *q) {
  nt_frame_unref(q->v[q->head].f);
  q->head++;
  if (--q->len == 0) q->head = 0;
}

static void q_clear(rh_queue *q) {
  while (q->len) q_pop(q);
  free(q->v);
  *q = (rh_queue){0};
}

/* Moves everything out of `q` into the returned queue. */
static rh_queue q_take(rh_queue *q) {
  rh_queue t = *q;
  *q = (rh_queue){0};
  return t;
}

/* ---------------------------------------------------------------- rendering */

/* Renders a room message of room `r` at position `seq` into it->f and it->skip; `env`
 * NULL (not a renderable room message) leaves no frame. */
static void render_env(const nt_room *r, const Natter__Envelope *env, uint64_t seq,
                       rh_item *it) {
  it->f = NULL;
  it->idh = 0;
  it->skip[0] = '\0';
  if (!env) return;
  it->idh = env->id[0] ? nt_hash(env->id, strlen(env->id)) : 0;
  it->f = nt_proto_message(env->id, r->name, env->sender_user[0] ? env->sender_user : NULL,
                           (const char *)env->payload.data, env->payload.len,
                           env->timestamp_ms, seq);
  if (env->exclude_sender && env->sender_conn[0])
    snprintf(it->skip, sizeof it->skip, "%s", env->sender_conn);
}

/* The same for a stored envelope read from the history (`data`, `len`). */
static void render_item(nt_chat *n, const nt_room *r, const uint8_t *data, size_t len,
                        uint64_t seq, rh_item *it) {
  Natter__Envelope *env = nt_env_decode(data, len);
  if (!env || env->kind != NATTER__KIND__ROOM_MESSAGE || !nt_fanout_renderable(env)) {
    n->m.bad_envelopes++;
    nt_env_free(env);
    env = NULL;
  }
  render_env(r, env, seq, it);
  nt_env_free(env);
}

static int send_item(nt_chat *n, nt_conn *c, const rh_item *it) {
  if (!it->f || (it->skip[0] && strcmp(c->id, it->skip) == 0)) return 0;
  if (nt_conn_send(c, it->f) != 0) return 0;
  n->m.deliveries++;
  return 1;
}

/* ---------------------------------------------------------------- resumers */

static void fetch_rs(nt_chat *n, nt_room *r, resumer *rs, uint64_t after, uint64_t upto);

static resumer *rs_find_id(nt_rhist *h, uint64_t id) {
  for (resumer *rs = h->rs; rs; rs = rs->next)
    if (rs->id == id) return rs;
  return NULL;
}

static resumer *rs_find_conn(const nt_rhist *h, const nt_conn *c) {
  if (!h->nrs) return NULL;
  resumer *rs = nt_map_get(&h->byconn, c->id, strlen(c->id));
  return rs && rs->c == c ? rs : NULL;
}

static void rs_free(resumer *rs) {
  q_clear(&rs->replay);
  q_clear(&rs->buf);
  for (size_t i = 0; i < rs->nmembers; i++) free(rs->members[i]);
  free(rs->members);
  free(rs);
}

static void rs_remove(nt_rhist *h, resumer *rs) {
  for (resumer **pp = &h->rs; *pp; pp = &(*pp)->next) {
    if (*pp == rs) {
      *pp = rs->next;
      h->nrs--;
      nt_map_del(&h->byconn, rs->c->id, strlen(rs->c->id));
      rs_free(rs);
      return;
    }
  }
}

/* Caught up with the room: a plain member from now on. */
static void rs_maybe_done(nt_rhist *h, resumer *rs) {
  if (rs->state == RS_FILTER && h->last >= rs->cur) rs_remove(h, rs);
}

/* Sends one item to a resumer that is past its replay, by the sequencing rule. */
static void rs_send(nt_chat *n, nt_resume *res, resumer *rs, const rh_item *it) {
  if (it->seq && it->seq <= rs->cur) {
    res->m.dups++;
    return;
  }
  send_item(n, rs->c, it);
  if (it->seq) {
    rs->cur = it->seq;
    rs->force = 0;
  }
}

/* Delivers the buffered items in sequence; a hole between what the connection has and
 * the next buffered item is read from the history first (RS_BUFFER again meanwhile).
 * With `may_finish`, a resumer caught up with the room is dropped (freed): not while a
 * live item is being delivered, which the room has counted but the resumer not yet. */
static void rs_drain(nt_chat *n, nt_room *r, resumer *rs, int may_finish) {
  nt_resume *res = n->res;
  nt_rhist *h = r->hist;
  rh_item *it;
  rs->state = RS_FILTER; /* fetch_rs sets RS_BUFFER again when it starts a read */
  while ((it = q_front(&rs->buf)) != NULL) {
    int d = nt_seq_check(rs->cur, rs->force, it->seq, it->prev);
    if (d == NT_SEQ_GAP) {
      res->m.gaps++;
      fetch_rs(n, r, rs, rs->cur, it->prev);
      if (rs->state == RS_BUFFER) return; /* the repair answers later */
      continue;                            /* could not even start: accepted as it is */
    }
    if (d == NT_SEQ_DUP) res->m.dups++;
    else rs_send(n, res, rs, it);
    q_pop(&rs->buf);
  }
  if (may_finish) rs_maybe_done(h, rs);
}

static void pace_start(nt_chat *n);

/* Sends the replay while the connection's queue is under half its bound — a replay of
 * large messages never makes a reader that reads a slow consumer — and the buffered live
 * items once the replay is out. What the socket does not take yet waits (RS_PACED) for the
 * pace timer; `force` sends everything at once. */
static void rs_pump(nt_chat *n, nt_room *r, resumer *rs, int force, int may_finish) {
  nt_resume *res = n->res;
  size_t pace = n->cfg->send_queue_bytes / 2;
  rh_item *it;
  int sent = 0;
  while ((it = q_front(&rs->replay)) != NULL) {
    if (!force && rs->c->qbytes >= pace) break;
    if (it->seq > rs->cur) {
      send_item(n, rs->c, it);
      rs->cur = it->seq;
      res->m.replayed++;
      sent = 1;
    }
    q_pop(&rs->replay);
  }
  if (sent || rs->state != RS_PACED) rs->pace_at = uv_now(n->loop);
  if (rs->replay.len) {
    if (rs->state != RS_PACED) res->m.paced++;
    rs->state = RS_PACED;
    pace_start(n);
    return;
  }
  rs_drain(n, r, rs, may_finish);
}

/* Replay read and members known: `joined`, the replay, then what arrived meanwhile. */
static void rs_complete(nt_chat *n, nt_room *r, resumer *rs, int may_finish) {
  nt_frame *jf = nt_proto_joined_resume(r->name, (const char *const *)rs->members,
                                        rs->nmembers, rs->recovered, rs->reqid);
  if (jf) {
    nt_conn_send(rs->c, jf);
    nt_frame_unref(jf);
  }
  rs_pump(n, r, rs, 0, may_finish);
}

/* A resumer that would hold too much: give up its replay (recovered: false) and go on
 * with what it buffered. The resumer stays (RS_FILTER, or RS_BUFFER when a hole in its
 * buffer is being read). */
static void rs_give_up(nt_chat *n, nt_room *r, resumer *rs) {
  nt_resume *res = n->res;
  res->m.overflows++;
  if (!rs->fetched) {
    rs->fetched = 1;
    rs->recovered = 0;
    rs->cur = 0;
    res->m.not_recovered++;
    q_clear(&rs->replay);
  }
  rs->force = 1;
  rs->id = ++res->next_id; /* a read in flight no longer applies */
  if (!rs->have_members) { /* members unknown yet: the user itself */
    rs->members = calloc(1, sizeof *rs->members);
    if (rs->members) {
      rs->members[0] = strdup(rs->c->ident.user);
      rs->nmembers = rs->members[0] ? 1 : 0;
    }
    rs->have_members = 1;
  }
  rs_complete(n, r, rs, 0);
}

/* A live item reached the room: buffered for a resumer still reading or replaying, else
 * filtered. */
static void rs_live(nt_chat *n, nt_room *r, resumer *rs, const rh_item *it) {
  if (rs->state == RS_PACED) {
    if (rs->buf.len < BUF_MAX_ITEMS) {
      rh_item copy = *it;
      if (copy.f) nt_frame_ref(copy.f);
      if (q_push(&rs->buf, &copy) == 0) return;
      nt_frame_unref(copy.f);
    }
    rs_pump(n, r, rs, 1, 0); /* too much arrives meanwhile: the rest of the replay at once */
  }
  if (rs->state == RS_BUFFER) {
    if (rs->buf.len < BUF_MAX_ITEMS) {
      rh_item copy = *it;
      if (copy.f) nt_frame_ref(copy.f);
      if (q_push(&rs->buf, &copy) == 0) return;
      nt_frame_unref(copy.f);
    }
    rs_give_up(n, r, rs); /* delivers the buffer */
    if (rs->state == RS_BUFFER) { /* reading a hole again: this item waits behind it */
      rh_item copy = *it;
      if (copy.f) nt_frame_ref(copy.f);
      if (q_push(&rs->buf, &copy)) nt_frame_unref(copy.f);
      return;
    }
  }
  rs_send(n, n->res, rs, it);
  rs_maybe_done(r->hist, rs);
}

/* ---------------------------------------------------------------- rooms */

static int is_resumer(const nt_rhist *h, const nt_conn *c) { return rs_find_conn(h, c) != NULL; }

/* A publication the stream acknowledged late (after ACK_TIMEOUT_MS in nt_history_js) is
 * resent live-only by its node and republished by the stream as well: two copies, one
 * without seq and one with, in either order. A room remembers the ids of the last
 * RH_COPIES messages it delivered (the low bit says which kind; 512 bytes, allocated with
 * its first message) and reports the second copy of one; the sequence still advances. */
static int late_copy(nt_resume *res, nt_rhist *h, const rh_item *it) {
  if (!it->idh) return 0;
  if (!h->copies && !(h->copies = calloc(RH_COPIES, sizeof *h->copies))) return 0;
  uint64_t key = it->idh & ~(uint64_t)1, kind = it->seq ? 1 : 0;
  for (unsigned i = 0; i < RH_COPIES; i++)
    if (h->copies[i] == (key | (kind ^ 1))) {
      h->copies[i] = 0; /* a third copy would be news */
      res->m.dups++;
      return 1;
    }
  h->copies[h->copies_at++ % RH_COPIES] = key | kind;
  return 0;
}

/* Delivers an item to the room's members (one shared frame) and to its resumers. The
 * second copy of a late-acknowledged message goes to no member; resumers still get a
 * sequenced copy (their own sequence check drops what they already have, and one that
 * resumed between the copies may need it), never a second live-only one. */
static void deliver_item(nt_chat *n, nt_room *r, const rh_item *it) {
  nt_rhist *h = r->hist;
  int again = late_copy(n->res, h, it);
  if (again && !it->seq) return;
  if (it->f && !again) /* the fan-out's loop, resumers left out */
    n->m.deliveries += nt_fanout_room(n, r, it->f, it->skip[0] ? it->skip : NULL);
  if (!it->seq) { /* the members got a message outside the sequence: the ring no longer
                   * holds everything delivered after its first item */
    nt_recent_clear(&h->recent);
  } else {
    nt_recent_item ri = {.f = it->f, .seq = it->seq, .prev = it->prev, .idh = it->idh,
                         .at_ms = uv_now(n->loop)};
    memcpy(ri.skip, it->skip, sizeof ri.skip);
    nt_recent_push(&h->recent, &ri);
  }
  for (resumer *rs = h->rs, *next; rs; rs = next) {
    next = rs->next;
    rs_live(n, r, rs, it);
    if (!r->hist) return; /* not expected: sends do not close connections synchronously */
  }
}

static void fetch_room(nt_chat *n, nt_room *r, uint64_t after, uint64_t upto);
static void room_live(nt_chat *n, nt_room *r, rh_item *it);

/* Ends a repair (done, failed or abandoned) and runs the held items through again. */
static void room_release(nt_chat *n, nt_room *r) {
  nt_rhist *h = r->hist;
  h->repairing = 0;
  rh_queue held = q_take(&h->pend);
  for (size_t i = 0; i < held.len; i++) {
    rh_item it = held.v[held.head + i];
    held.v[held.head + i].f = NULL; /* ownership moves to room_live */
    if (!r->hist) { /* not expected */
      nt_frame_unref(it.f);
      continue;
    }
    room_live(n, r, &it);
  }
  q_clear(&held);
}

/* A live item for the room (takes its frame reference). */
static void room_live(nt_chat *n, nt_room *r, rh_item *it) {
  nt_resume *res = n->res;
  nt_rhist *h = r->hist;
  if (h->repairing) {
    if (h->pend.len < BUF_MAX_ITEMS && q_push(&h->pend, it) == 0) return;
    /* the repair takes too long for what keeps arriving: deliver with the hole */
    res->m.overflows++;
    res->m.gaps_unrepaired++;
    h->repair_id++;
    h->force = 1;
    room_release(n, r);
    if (!r->hist) {
      nt_frame_unref(it->f);
      return;
    }
    room_live(n, r, it); /* a new repair may have started meanwhile */
    return;
  }
  int d = nt_seq_check(h->last, h->force, it->seq, it->prev);
  if (d == NT_SEQ_DUP) {
    res->m.dups++;
    nt_frame_unref(it->f);
    return;
  }
  if (d == NT_SEQ_GAP) {
    res->m.gaps++;
    h->repairing = 1;
    if (q_push(&h->pend, it) == 0) {
      fetch_room(n, r, h->last, it->prev);
      if (h->repairing) return;
      /* could not start: held items (this one included) go out with the hole */
      room_release(n, r);
      return;
    }
    h->repairing = 0;
    h->force = 1;
  }
  if (it->seq) {
    h->last = it->seq;
    h->force = 0;
  } else {
    res->m.live_only++;
  }
  deliver_item(n, r, it);
  nt_frame_unref(it->f);
}

/* ---------------------------------------------------------------- reads */

fetch_op *nt_resume_op_new(nt_chat *n, int kind, const char *subject) {
  fetch_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->n = n;
  op->kind = kind;
  snprintf(op->subject, sizeof op->subject, "%s", subject);
  return op;
}

/* The room and its state for a completed read, or NULL when they are gone. */
static nt_room *op_room(fetch_op *op) {
  if (!op->n->res) return NULL;
  nt_room *r = nt_hub_room(&op->n->hub, op->subject);
  return r && r->hist ? r : NULL;
}


static void fetch_rs(nt_chat *n, nt_room *r, resumer *rs, uint64_t after, uint64_t upto) {
  int kind = upto ? F_RS_REPAIR : F_RESUME;
  fetch_op *op = nt_resume_op_new(n, kind, r->subject);
  int rc = n->res->h ? NT_ENOMEM : NT_ECLOSED;
  if (op && n->res->h) {
    op->id = rs->id;
    op->after = after;
    op->upto = upto;
    rc = nt_history_fetch_after(n->res->h, r->subject, after, upto, n->res->replay_max,
                                nt_resume_on_fetched, op);
  }
  if (rc == 0) {
    rs->state = RS_BUFFER;
    return;
  }
  free(op);
  if (kind == F_RESUME) { /* nothing can be read now: not recovered */
    rs->fetched = 1;
    rs->recovered = 0;
    rs->cur = 0;
    n->res->m.not_recovered++;
  } else {
    n->res->m.gaps_unrepaired++;
    rs->force = 1;
  }
}

static void fetch_room(nt_chat *n, nt_room *r, uint64_t after, uint64_t upto) {
  nt_rhist *h = r->hist;
  fetch_op *op = nt_resume_op_new(n, F_ROOM_REPAIR, r->subject);
  int rc = n->res->h ? NT_ENOMEM : NT_ECLOSED;
  if (op && n->res->h) {
    op->id = ++h->repair_id;
    op->upto = upto;
    rc = nt_history_fetch_after(n->res->h, r->subject, after, upto, n->res->replay_max,
                                nt_resume_on_fetched, op);
  }
  if (rc == 0) return;
  free(op);
  n->res->m.gaps_unrepaired++;
  h->repairing = 0;
  h->force = 1;
}

/* A resumer gets its answer: the replay `items` (n of them, referenced again here) when
 * `ok`, else recovered: false. */
static void rs_answer(nt_chat *n, nt_room *r, resumer *rs, int ok, const rh_item *items,
                      size_t count) {
  nt_resume *res = n->res;
  rs->fetched = 1;
  rs->recovered = ok;
  if (ok) {
    res->m.recovered++;
    for (size_t i = 0; i < count; i++) {
      rh_item it = items[i];
      if (it.f) nt_frame_ref(it.f);
      if (q_push(&rs->replay, &it)) nt_frame_unref(it.f);
    }
  } else {
    res->m.not_recovered++;
    rs->cur = 0; /* the client reloads; live goes on from the next message */
    rs->force = 1;
  }
  if (rs->have_members) rs_complete(n, r, rs, 1);
}

/* Where a resumer that shared the read (after `since`) starts in its result, when the
 * result holds everything it needs: `since` is the read's own or one of its messages,
 * and the read reached at least what the room had delivered when the resumer began (what
 * came later it buffered). */
static int shared_start(const resumer *p, const fetch_op *op, const nt_hist_result *hr,
                        size_t *first) {
  uint64_t newest = hr->n ? hr->msgs[hr->n - 1].seq : op->after;
  if (newest < p->room_last) return 0;
  if (p->since == op->after) {
    *first = 0;
    return 1;
  }
  for (size_t i = 0; i < hr->n; i++)
    if (hr->msgs[i].seq == p->since) {
      *first = i + 1;
      return 1;
    }
  return 0;
}

/* A resume read completed: its resumer's answer, and the answers of the resumers of the
 * same room that waited for it (rendered once, shared). */
static void done_resume(nt_chat *n, fetch_op *op, const nt_hist_result *hr) {
  nt_room *r = op_room(op);
  if (!r) return;
  nt_rhist *h = r->hist;
  if (h->cread == op->id) h->cread = 0;
  int ok = hr->status == 0 && hr->anchored && !hr->more;
  rh_item *items = ok && hr->n ? calloc(hr->n, sizeof *items) : NULL;
  if (ok && hr->n && !items) ok = 0;
  for (size_t i = 0; items && i < hr->n; i++) {
    render_item(n, r, hr->msgs[i].data, hr->msgs[i].len, hr->msgs[i].seq, &items[i]);
    items[i].seq = hr->msgs[i].seq;
  }
  size_t count = ok ? hr->n : 0;
  resumer *rs = rs_find_id(h, op->id);
  if (rs && !rs->fetched) rs_answer(n, r, rs, ok, items, count);
  for (resumer *p = r->hist ? r->hist->rs : NULL, *next; p; p = next) {
    next = p->next;
    if (p->wait != op->id || p->fetched) continue;
    p->wait = 0;
    size_t first;
    if (ok && shared_start(p, op, hr, &first)) {
      n->res->m.coalesced++;
      rs_answer(n, r, p, 1, items + first, count - first);
    } else { /* not covered by that read: its own */
      fetch_rs(n, r, p, p->since, 0);
      if (p->fetched && p->have_members) rs_complete(n, r, p, 1);
    }
    if (!r->hist) break;
  }
  for (size_t i = 0; items && i < hr->n; i++) nt_frame_unref(items[i].f);
  free(items);
}

static void done_rs_repair(nt_chat *n, fetch_op *op, const nt_hist_result *hr) {
  nt_room *r = op_room(op);
  resumer *rs = r ? rs_find_id(r->hist, op->id) : NULL;
  if (!rs || rs->state != RS_BUFFER) return;
  nt_resume *res = n->res;
  size_t sent = 0;
  for (size_t i = 0; hr->status == 0 && i < hr->n; i++) {
    if (hr->msgs[i].seq <= rs->cur) continue;
    rh_item it = {0};
    render_item(n, r, hr->msgs[i].data, hr->msgs[i].len, hr->msgs[i].seq, &it);
    send_item(n, rs->c, &it);
    nt_frame_unref(it.f);
    rs->cur = hr->msgs[i].seq;
    sent++;
  }
  if (sent && rs->cur >= op->upto) {
    res->m.gaps_repaired++;
  } else { /* expired or unreadable: the hole stays */
    res->m.gaps_unrepaired++;
    rs->force = 1;
  }
  rs_drain(n, r, rs, 1);
}

static void done_room_repair(nt_chat *n, fetch_op *op, const nt_hist_result *hr) {
  nt_room *r = op_room(op);
  if (!r || !r->hist->repairing || r->hist->repair_id != op->id) return;
  nt_resume *res = n->res;
  nt_rhist *h = r->hist;
  size_t sent = 0;
  for (size_t i = 0; hr->status == 0 && i < hr->n; i++) {
    if (hr->msgs[i].seq <= h->last) continue;
    rh_item it = {0};
    render_item(n, r, hr->msgs[i].data, hr->msgs[i].len, hr->msgs[i].seq, &it);
    it.seq = hr->msgs[i].seq;
    it.prev = h->last;
    h->last = it.seq;
    deliver_item(n, r, &it);
    nt_frame_unref(it.f);
    sent++;
    if (!r->hist) return;
  }
  if (sent && h->last >= op->upto) {
    res->m.gaps_repaired++;
  } else {
    res->m.gaps_unrepaired++;
    h->force = 1;
    uint64_t now = uv_now(n->loop);
    if (now >= res->log_at) {
      res->log_at = now + LOG_INTERVAL_MS;
      nt_log_warn("history gap could not be repaired", "{s:s, s:I, s:I, s:s}", "subject",
                  r->subject, "after", (json_int_t)h->last, "upto", (json_int_t)op->upto,
                  "error", hr->status ? nt_strerror(hr->status) : "messages expired");
    }
  }
  room_release(n, r);
}

void nt_resume_on_fetched(void *ud, const nt_hist_result *hr) {
  fetch_op *op = ud;
  nt_chat *n = op->n;
  if (op->kind == F_PAGE || op->kind == F_API) nt_resume_page_done(n, op, hr);
  else if (hr->status != NT_ECLOSED && n->res) {
    if (op->kind == F_RESUME) done_resume(n, op, hr);
    else if (op->kind == F_RS_REPAIR) done_rs_repair(n, op, hr);
    else done_room_repair(n, op, hr);
  }
  free(op);
}

/* ---------------------------------------------------------------- pacing */

/* Every PACE_MS while a replay is paced: tops up each paced resumer (rooms with
 * resumers only); stops once none is left. */
static void on_pace(uv_timer_t *t) {
  nt_chat *n = t->data;
  uint64_t now = uv_now(n->loop);
  int any = 0;
  size_t iter = 0;
  const char *k;
  void *v;
  while (n->res && nt_map_next(&n->hub.rooms, &iter, &k, &v)) {
    nt_room *r = v;
    for (resumer *rs = r->hist ? r->hist->rs : NULL, *next; rs; rs = next) {
      next = rs->next;
      if (rs->state != RS_PACED) continue;
      any = 1;
      rs_pump(n, r, rs, now - rs->pace_at > PACE_STALL_MS, 1);
      if (!r->hist) break;
    }
  }
  if (!any) uv_timer_stop(t);
}

static void pace_closed(uv_handle_t *h) { free(h); }

static void pace_start(nt_chat *n) {
  nt_resume *res = n->res;
  if (!res->pace) {
    res->pace = malloc(sizeof *res->pace);
    if (!res->pace || uv_timer_init(n->loop, res->pace)) {
      free(res->pace);
      res->pace = NULL;
      return; /* the replay goes on with the next live item or the buffer's overflow */
    }
    res->pace->data = n;
  }
  if (!uv_is_active((uv_handle_t *)res->pace))
    uv_timer_start(res->pace, on_pace, PACE_MS, PACE_MS);
}

static void pace_close(nt_resume *res) {
  if (res->pace) uv_close((uv_handle_t *)res->pace, pace_closed);
  res->pace = NULL;
}

/* ================================================================ public */

int nt_resume_attach(nt_chat *n, nt_history *h) {
  if (!h) return 0;
  nt_resume *res = calloc(1, sizeof *res);
  if (!res) {
    nt_history_destroy(h);
    return NT_ENOMEM;
  }
  res->h = h;
  res->replay_max = n->cfg->history_max_per_room > 0 ? (size_t)n->cfg->history_max_per_room
                                                     : 1000;
  res->recent_max = n->cfg->history_recent > 0 ? (size_t)n->cfg->history_recent : 0;
  if (res->recent_max > res->replay_max) res->recent_max = res->replay_max;
  res->recent.max = n->cfg->history_recent_bytes;
  res->max_age_ms = (uint64_t)(n->cfg->history_max_age_s * 1000);
  n->res = res;
  return 0;
}

void nt_resume_close(nt_chat *n) {
  nt_resume *res = n->res;
  if (!res || !res->h) return;
  nt_history *h = res->h;
  pace_close(res);
  res->h = NULL; /* reads failing now find no history to start more */
  nt_history_destroy(h);
}

static void rhist_free(nt_rhist *h) {
  nt_recent_clear(&h->recent);
  nt_map_clear(&h->byconn);
  q_clear(&h->pend);
  free(h->copies);
  while (h->rs) {
    resumer *rs = h->rs;
    h->rs = rs->next;
    rs_free(rs);
  }
  free(h);
}

void nt_resume_free(nt_chat *n) {
  nt_resume *res = n->res;
  if (!res) return;
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&n->hub.rooms, &it, &k, &v)) {
    nt_room *r = v;
    if (r->hist) {
      rhist_free(r->hist);
      r->hist = NULL;
    }
  }
  pace_close(res);
  if (res->h) nt_history_destroy(res->h);
  free(res);
  n->res = NULL;
}

const char *nt_resume_room_open(nt_chat *n, nt_room *r) {
  if (!r->hist) {
    nt_rhist *h = calloc(1, sizeof *h);
    if (!h || nt_subject_live_of(h->live, sizeof h->live, r->subject) < 0) {
      free(h);
      return NULL;
    }
    nt_recent_init(&h->recent, n->res->recent_max, &n->res->recent);
    nt_map_init_borrowed(&h->byconn);
    r->hist = h;
  }
  return r->hist->live;
}

void nt_resume_room_close(nt_chat *n, nt_room *r) {
  if (!r->hist) return;
  rhist_free(r->hist);
  r->hist = NULL;
}

void nt_resume_leave(nt_chat *n, nt_conn *c, nt_room *r) {
  if (!r->hist) return;
  resumer *rs = rs_find_conn(r->hist, c);
  if (rs) rs_remove(r->hist, rs);
}

int nt_resume_publish(nt_chat *n, const char *subject, const void *data, size_t len,
                      const nt_hist_pub *pub) {
  if (!n->res || !n->res->h) return nt_bus_publish(n->bus, subject, data, len, NULL);
  int rc = nt_history_publish(n->res->h, subject, data, len, pub);
  return rc ? rc : 1;
}

void nt_resume_on_live(nt_chat *n, nt_room *r, const Natter__Envelope *env,
                       const nt_bus_seq *seq) {
  if (!n->res || !r->hist) return;
  rh_item it = {0};
  render_env(r, env, seq ? seq->seq : 0, &it);
  it.seq = seq ? seq->seq : 0;
  it.prev = seq ? seq->last : 0;
  if (!it.f && !it.seq) return;
  room_live(n, r, &it);
}

int nt_resume_room_live(const nt_room *r) { return r->hist != NULL; }

size_t nt_resume_resumers(const nt_room *r) { return r->hist ? r->hist->nrs : 0; }

int nt_resume_is_resumer(const nt_room *r, const nt_conn *c) {
  return r->hist && is_resumer(r->hist, c);
}

/* A resume whose `since` is within what the room delivered lately: its replay is taken
 * from the room's recent messages (the same frames the members got), no read. Not while
 * the room repairs a gap (what it delivered stops short of what exists). */
static int from_memory(nt_chat *n, nt_room *r, resumer *rs) {
  nt_resume *res = n->res;
  nt_rhist *h = r->hist;
  size_t first;
  if (h->repairing || !res->h || !nt_history_storing(res->h)) return 0;
  uint64_t now = uv_now(n->loop);
  if (res->max_age_ms) nt_recent_expire(&h->recent, now > res->max_age_ms ? now - res->max_age_ms : 0);
  if (!nt_recent_after(&h->recent, rs->since, &first)) return 0;
  for (size_t i = first; i < nt_recent_len(&h->recent); i++) {
    const nt_recent_item *ri = nt_recent_at(&h->recent, i);
    rh_item it = {.f = ri->f, .seq = ri->seq, .prev = ri->prev, .idh = ri->idh};
    memcpy(it.skip, ri->skip, sizeof it.skip);
    if (it.f) nt_frame_ref(it.f);
    if (q_push(&rs->replay, &it)) { /* memory short: read it instead */
      nt_frame_unref(it.f);
      q_clear(&rs->replay);
      return 0;
    }
  }
  rs->fetched = 1;
  rs->recovered = 1;
  res->m.recovered++;
  res->m.from_memory++;
  return 1;
}

void nt_resume_begin(nt_chat *n, nt_conn *c, nt_room *r, uint64_t since, const char *reqid) {
  nt_resume *res = n->res;
  if (!res || !res->h || !r->hist || rs_find_conn(r->hist, c)) return;
  resumer *rs = calloc(1, sizeof *rs);
  if (!rs) return;
  rs->c = c;
  if (nt_map_put(&r->hist->byconn, c->id, strlen(c->id), rs, NULL)) {
    free(rs);
    return;
  }
  rs->id = ++res->next_id;
  rs->since = rs->cur = since;
  rs->state = RS_BUFFER;
  snprintf(rs->reqid, sizeof rs->reqid, "%s", reqid ? reqid : "");
  rs->next = r->hist->rs;
  r->hist->rs = rs;
  r->hist->nrs++;
  res->m.resumes++;
  if (from_memory(n, r, rs)) return;
  nt_rhist *h = r->hist;
  if (h->cread && since >= h->cread_after && !h->repairing) {
    /* a resume read of this room is in flight: wait for it (one read for a storm) */
    rs->wait = h->cread;
    rs->room_last = h->last;
    return;
  }
  fetch_rs(n, r, rs, since, 0);
  if (!rs->fetched && !h->cread) {
    h->cread = rs->id;
    h->cread_after = since;
  }
}

int nt_resume_joined(nt_chat *n, nt_conn *c, const char *room, const char *const *members,
                     size_t n_members) {
  nt_room *r = n->res ? nt_hub_conn_room(c, room) : NULL;
  resumer *rs = r && r->hist ? rs_find_conn(r->hist, c) : NULL;
  if (!rs) return 0;
  if (rs->have_members) return 1; /* `joined` already sent (the resume gave up early) */
  rs->members = calloc(n_members ? n_members : 1, sizeof *rs->members);
  for (size_t i = 0; rs->members && i < n_members; i++)
    if ((rs->members[rs->nmembers] = strdup(members[i])) != NULL) rs->nmembers++;
  rs->have_members = 1;
  if (rs->fetched) rs_complete(n, r, rs, 1);
  return 1;
}

/* Per-stream history series (label stream="k") with --history-streams K > 1. */
static void hist_stream_metrics(nt_prom *w, nt_history *h) {
  unsigned n = h ? nt_history_shard_stats(h, 0, NULL) : 0;
  static const char *const names[][2] = {
      {"history_stream_storing", "1 while this stream stores room messages."},
      {"history_stream_published_total", "Room messages published to this stream's rooms."},
      {"history_stream_stored_total", "Room messages this stream confirmed stored."},
      {"history_stream_live_only_total", "Messages of this stream's rooms delivered live-only, not stored (over quota or size)."},
  };
  for (size_t i = 0; n && i < sizeof names / sizeof names[0]; i++) {
    nt_prom_head(w, names[i][0], i ? "counter" : "gauge", names[i][1]);
    for (unsigned k = 0; k < n; k++) {
      nt_hist_stats st = {0};
      nt_history_shard_stats(h, k, &st);
      uint64_t v[] = {(uint64_t)st.storing, st.published, st.stored, st.live_only};
      char labels[32];
      snprintf(labels, sizeof labels, "{stream=\"%u\"}", k);
      nt_prom_sample(w, names[i][0], labels, v[i]);
    }
  }
}

void nt_resume_metrics(nt_chat *n, nt_prom *w) {
  nt_resume *res = n->res;
  if (!res) return;
  nt_hist_stats hs = {0};
  if (res->h) nt_history_get_stats(res->h, &hs);
  nt_prom_metric(w, "history_storing", "gauge",
         "1 while the history stores (0: down; room messages wait for it up to --ack-timeout).",
         (unsigned)hs.storing);
  nt_prom_metric(w, "history_outages_total", "counter",
         "Changes from storing to not storing.", hs.outages);
  nt_prom_metric(w, "history_published_total", "counter",
         "Room messages published through the history.", hs.published);
  nt_prom_metric(w, "history_stored_total", "counter",
         "Room messages confirmed stored.", hs.stored);
  nt_prom_metric(w, "history_live_only_total", "counter",
         "Room messages published live-only, not stored (over quota or size).", hs.live_only);
  nt_prom_metric(w, "history_resent_total", "counter",
         "Room message publications sent to the history again (same Nats-Msg-Id) after no "
         "answer or a 503.", hs.resent);
  nt_prom_metric(w, "history_dedup_total", "counter",
         "Room messages acknowledged as duplicates of a stored message id (resends).",
         hs.duplicates);
  nt_prom_metric(w, "history_unavailable_total", "counter",
         "Room messages not acknowledged within --ack-timeout (answered error unavailable).",
         hs.unavailable);
  nt_prom_metric(w, "history_over_quota_total", "counter",
         "Room messages published live-only because their tenant was over "
         "--history-tenant-bytes or the message over --history-max-msg-bytes.", hs.over_quota);
  nt_prom_metric(w, "history_fetch_errors_total", "counter",
         "History reads that failed.", hs.fetch_errors);
  nt_prom_metric(w, "history_gaps_total", "counter",
         "Missed live messages detected by sequence.", res->m.gaps);
  nt_prom_metric(w, "history_gaps_repaired_total", "counter",
         "Gaps filled from the history before delivering further.", res->m.gaps_repaired);
  nt_prom_metric(w, "history_gaps_unrepaired_total", "counter",
         "Gaps that could not be filled (expired, history down, too slow).", res->m.gaps_unrepaired);
  nt_prom_metric(w, "history_duplicates_dropped_total", "counter",
         "Messages not delivered again (sequence already delivered, or the second copy of a "
         "late-acknowledged message).", res->m.dups);
  nt_prom_head(w, "history_resumes_total", "counter", "joinRoom with since, by outcome.");
  nt_prom_sample(w, "history_resumes_total", "{recovered=\"true\"}", res->m.recovered);
  nt_prom_sample(w, "history_resumes_total", "{recovered=\"false\"}", res->m.not_recovered);
  nt_prom_metric(w, "history_resumes_from_memory_total", "counter",
         "Resumes answered from the room's recent messages in memory (no history read).",
         res->m.from_memory);
  nt_prom_metric(w, "history_resumes_coalesced_total", "counter",
         "Resumes answered by another resume's read of the same room (no read of their own).",
         res->m.coalesced);
  nt_prom_metric(w, "history_recent_bytes", "gauge",
         "Bytes the rooms' recent messages hold (--history-recent-bytes).",
         (uint64_t)res->recent.used);
  nt_prom_metric(w, "history_replayed_total", "counter",
         "Stored messages replayed to resuming connections.", res->m.replayed);
  nt_prom_metric(w, "history_replays_paced_total", "counter",
         "Replays larger than half the send queue, sent as the socket took them.", res->m.paced);
  nt_prom_metric(w, "history_pages_total", "counter",
         "History pages requested (action and HTTP API).", res->m.pages);
  hist_stream_metrics(w, res->h);
}
