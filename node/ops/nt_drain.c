/* nt_drain: a presence wrapper that queues a draining node's removals (see nt_drain.h). */
#include "nt_drain.h"

#include <stdio.h>
#include <stdlib.h>

#include "nt_err.h"
#include "nt_subject.h"

typedef struct drain_presence drain_presence;
static const nt_presence_vtab drain_vtab;

typedef struct held_op {
  struct held_op *next;
  drain_presence *d;
  int is_leave;                  /* leave, else conn_remove */
  nt_presence_leave_cb leave_cb;
  nt_presence_done_cb done_cb;
  void *ud;
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1], user[NT_ID_MAX + 1];
  char conn_id[NT_ID_MAX + 1];
} held_op;

struct drain_presence {
  nt_presence base;
  nt_presence *inner;
  held_op *head, **tail;
  size_t queued, inflight;
  int released, releasing;
  void (*done)(void *ud);
  void *done_ud;
};

/* ---------------------------------------------------------------- pass-through -- */

static int d_join(nt_presence *p, const char *tenant, const char *room, const char *user,
                  const char *conn_id, nt_presence_join_cb cb, void *ud) {
  return nt_presence_join(((drain_presence *)p)->inner, tenant, room, user, conn_id, cb, ud);
}

static int d_members(nt_presence *p, const char *tenant, const char *room,
                     const char *cursor, size_t limit, nt_presence_members_cb cb, void *ud) {
  return nt_presence_members(((drain_presence *)p)->inner, tenant, room, cursor, limit, cb,
                             ud);
}

static int d_conn_add(nt_presence *p, const nt_conn_info *info, nt_presence_done_cb cb,
                      void *ud) {
  return nt_presence_conn_add(((drain_presence *)p)->inner, info, cb, ud);
}

static int d_conn_get(nt_presence *p, const char *conn_id, nt_presence_conn_cb cb, void *ud) {
  return nt_presence_conn_get(((drain_presence *)p)->inner, conn_id, cb, ud);
}

static int d_connected(nt_presence *p) {
  return nt_presence_connected(((drain_presence *)p)->inner);
}

static void d_stats(nt_presence *p, nt_presence_stats *out) {
  nt_presence_get_stats(((drain_presence *)p)->inner, out);
}

static unsigned d_shards(nt_presence *p, unsigned k, nt_presence_stats *out, int *up) {
  return nt_presence_shards(((drain_presence *)p)->inner, k, out, up);
}

/* ---------------------------------------------------------------- queue --------- */

static held_op *enqueue(drain_presence *d, int is_leave, const char *tenant, const char *room,
                        const char *user, const char *conn_id) {
  held_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->d = d;
  op->is_leave = is_leave;
  snprintf(op->tenant, sizeof op->tenant, "%s", tenant ? tenant : "");
  snprintf(op->room, sizeof op->room, "%s", room ? room : "");
  snprintf(op->user, sizeof op->user, "%s", user ? user : "");
  snprintf(op->conn_id, sizeof op->conn_id, "%s", conn_id ? conn_id : "");
  *d->tail = op;
  d->tail = &op->next;
  d->queued++;
  return op;
}

static int d_leave(nt_presence *p, const char *tenant, const char *room, const char *user,
                   const char *conn_id, nt_presence_leave_cb cb, void *ud) {
  drain_presence *d = (drain_presence *)p;
  if (d->released) return nt_presence_leave(d->inner, tenant, room, user, conn_id, cb, ud);
  held_op *op = enqueue(d, 1, tenant, room, user, conn_id);
  if (!op) return NT_ENOMEM;
  op->leave_cb = cb;
  op->ud = ud;
  return 0;
}

static int d_conn_remove(nt_presence *p, const char *tenant, const char *conn_id,
                         nt_presence_done_cb cb, void *ud) {
  drain_presence *d = (drain_presence *)p;
  if (d->released) return nt_presence_conn_remove(d->inner, tenant, conn_id, cb, ud);
  held_op *op = enqueue(d, 0, tenant, NULL, NULL, conn_id);
  if (!op) return NT_ENOMEM;
  op->done_cb = cb;
  op->ud = ud;
  return 0;
}

/* The caller was told 0 when the call was queued, so it gets exactly one callback. */
static void finish_op(held_op *op, int status, int transition) {
  if (op->is_leave && op->leave_cb) op->leave_cb(op->ud, status, transition);
  else if (!op->is_leave && op->done_cb) op->done_cb(op->ud, status);
  free(op);
}

static void maybe_done(drain_presence *d) {
  if (d->releasing || d->inflight || !d->done) return;
  void (*done)(void *) = d->done;
  d->done = NULL;
  done(d->done_ud);
}

static void on_leave_done(void *ud, int status, int transition) {
  held_op *op = ud;
  drain_presence *d = op->d;
  finish_op(op, status, transition);
  d->inflight--;
  maybe_done(d);
}

static void on_remove_done(void *ud, int status) { on_leave_done(ud, status, 0); }

void nt_drain_release(nt_presence *held, void (*done)(void *ud), void *ud) {
  drain_presence *d = (drain_presence *)held;
  d->released = 1;
  d->releasing = 1;
  d->done = done;
  d->done_ud = ud;
  while (d->head) {
    held_op *op = d->head;
    d->head = op->next;
    d->queued--;
    d->inflight++;
    int r = op->is_leave
                ? nt_presence_leave(d->inner, op->tenant, op->room, op->user, op->conn_id,
                                    on_leave_done, op)
                : nt_presence_conn_remove(d->inner, op->tenant, op->conn_id, on_remove_done, op);
    if (r) {
      d->inflight--;
      finish_op(op, r, 0);
    }
  }
  d->tail = &d->head;
  d->releasing = 0;
  maybe_done(d);
}

int nt_drain_is_holding(const nt_presence *p) {
  return p && p->vt == &drain_vtab && !((const drain_presence *)p)->released;
}

size_t nt_drain_held(const nt_presence *held) { return ((const drain_presence *)held)->queued; }

static void d_destroy(nt_presence *p) {
  drain_presence *d = (drain_presence *)p;
  d->done = NULL; /* the node is going away: nobody waits any more */
  while (d->head) {
    held_op *op = d->head;
    d->head = op->next;
    finish_op(op, NT_ECLOSED, 0);
  }
  nt_presence_destroy(d->inner); /* fails in-flight calls: on_leave_done still needs d */
  free(d);
}

static const nt_presence_vtab drain_vtab = {
    .join = d_join,
    .leave = d_leave,
    .members = d_members,
    .conn_add = d_conn_add,
    .conn_remove = d_conn_remove,
    .conn_get = d_conn_get,
    .connected = d_connected,
    .stats = d_stats,
    .destroy = d_destroy,
    .shards = d_shards,
};

nt_presence *nt_drain_hold(nt_presence *inner) {
  drain_presence *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->base.vt = &drain_vtab;
  d->base.h = inner->h;
  d->inner = inner;
  d->tail = &d->head;
  return &d->base;
}
