/* nt_presence_shard: presence over several stores chosen by tenant (--redis-shards) —
 * every tenant-scoped call forwarded unchanged to the tenant's shard
 * (nt_shard_of_tenant), the registry lookup by id asked of every shard, node-level
 * events and state gathered from all (nt_presence.h, nt_presence_shard_new). */
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_presence.h"
#include "nt_subject.h"

typedef struct pshard pshard;

typedef struct pslot {
  pshard *s;
  unsigned k;
  int up;                /* as the shard last reported through on_state */
} pslot;

struct pshard {
  nt_presence base;
  unsigned n;
  nt_presence *sub[NT_PRESENCE_SHARDS_MAX];
  pslot slot[NT_PRESENCE_SHARDS_MAX];
  int up;                /* what on_state last reported: some shard is up */
  int closing;
};

/* One conn_get over every shard: the first shard that has the connection answers; else,
 * after the last, NT_ENOTFOUND when every shard said so, or the first other failure (the
 * connection may be on a shard that cannot answer now). */
typedef struct get_all {
  nt_presence_conn_cb cb;
  void *ud;
  unsigned left;
  int answered, status;
} get_all;

static const nt_presence_vtab shard_vtab;

static nt_presence *of_tenant(nt_presence *p, const char *tenant) {
  pshard *s = (pshard *)p;
  return s->sub[nt_shard_of_tenant(tenant, s->n)];
}

/* ---------------------------------------------------------------- events ---- */

static pshard *owner(void *ud) { return ((pslot *)ud)->s; }

static void on_conn_lost(void *ud, const nt_conn_info *info) {
  pshard *s = owner(ud);
  if (s->base.h.on_conn_lost) s->base.h.on_conn_lost(s->base.h.ud, info);
}

static void on_offline(void *ud, const char *tenant, const char *room, const char *user) {
  pshard *s = owner(ud);
  if (s->base.h.on_offline) s->base.h.on_offline(s->base.h.ud, tenant, room, user);
}

static void on_online(void *ud, const char *tenant, const char *room, const char *user) {
  pshard *s = owner(ud);
  if (s->base.h.on_online) s->base.h.on_online(s->base.h.ud, tenant, room, user);
}

static int any_up(const pshard *s) {
  for (unsigned k = 0; k < s->n; k++)
    if (s->slot[k].up) return 1;
  return 0;
}

static void on_state(void *ud, int connected) {
  pslot *sl = ud;
  pshard *s = sl->s;
  sl->up = connected;
  int up = any_up(s);
  if (up == s->up) return;
  s->up = up;
  if (s->base.h.on_state) s->base.h.on_state(s->base.h.ud, up);
}

/* ---------------------------------------------------------------- calls ----- */

static int sh_join(nt_presence *p, const char *tenant, const char *room, const char *user,
                   const char *conn_id, nt_presence_join_cb cb, void *ud) {
  return nt_presence_join(of_tenant(p, tenant), tenant, room, user, conn_id, cb, ud);
}

static int sh_leave(nt_presence *p, const char *tenant, const char *room, const char *user,
                    const char *conn_id, nt_presence_leave_cb cb, void *ud) {
  return nt_presence_leave(of_tenant(p, tenant), tenant, room, user, conn_id, cb, ud);
}

static int sh_members(nt_presence *p, const char *tenant, const char *room,
                      const char *cursor, size_t limit, nt_presence_members_cb cb, void *ud) {
  return nt_presence_members(of_tenant(p, tenant), tenant, room, cursor, limit, cb, ud);
}

static int sh_conn_add(nt_presence *p, const nt_conn_info *info, nt_presence_done_cb cb,
                       void *ud) {
  if (!info) return NT_EINVAL;
  return nt_presence_conn_add(of_tenant(p, info->tenant), info, cb, ud);
}

static int sh_conn_remove(nt_presence *p, const char *tenant, const char *conn_id,
                          nt_presence_done_cb cb, void *ud) {
  return nt_presence_conn_remove(of_tenant(p, tenant), tenant, conn_id, cb, ud);
}

static void on_got(void *ud, int status, const nt_conn_info *info) {
  get_all *g = ud;
  if (status == 0 && !g->answered) {
    g->answered = 1;
    if (g->cb) g->cb(g->ud, 0, info);
  } else if (status && status != NT_ENOTFOUND && g->status == NT_ENOTFOUND) {
    g->status = status;
  }
  if (--g->left) return;
  if (!g->answered && g->cb) g->cb(g->ud, g->status, NULL);
  free(g);
}

static int sh_conn_get(nt_presence *p, const char *conn_id, nt_presence_conn_cb cb,
                       void *ud) {
  pshard *s = (pshard *)p;
  if (s->closing) return NT_ECLOSED;
  if (!cb) return NT_EINVAL; /* a lookup without a callback is a mistake, as in each store */
  get_all *g = calloc(1, sizeof *g);
  if (!g) return NT_ENOMEM;
  *g = (get_all){cb, ud, 1, 0, NT_ENOTFOUND}; /* one for this loop */
  int first_err = 0;
  unsigned started = 0;
  for (unsigned k = 0; k < s->n; k++) {
    g->left++;
    int rc = nt_presence_conn_get(s->sub[k], conn_id, on_got, g);
    if (rc) {
      g->left--;
      if (!first_err) first_err = rc;
      if (rc != NT_EINVAL && g->status == NT_ENOTFOUND) g->status = rc;
    } else {
      started++;
    }
  }
  if (!started) { /* every shard refused: an error and no callback */
    free(g);
    return first_err;
  }
  if (--g->left == 0) { /* not expected: the shards answer on a later turn */
    if (!g->answered && g->cb) g->cb(g->ud, g->status, NULL);
    free(g);
  }
  return 0;
}

static int sh_connected(nt_presence *p) {
  pshard *s = (pshard *)p;
  for (unsigned k = 0; k < s->n; k++)
    if (nt_presence_connected(s->sub[k])) return 1;
  return 0;
}

static void sh_stats(nt_presence *p, nt_presence_stats *out) {
  pshard *s = (pshard *)p;
  memset(out, 0, sizeof *out);
  for (unsigned k = 0; k < s->n; k++) {
    nt_presence_stats st;
    nt_presence_get_stats(s->sub[k], &st);
    out->ops += st.ops;
    out->transitions += st.transitions;
    out->reaped_nodes += st.reaped_nodes;
    out->reconnects += st.reconnects;
    out->errors += st.errors;
    out->queued += st.queued;
    if (st.inflight_max > out->inflight_max) out->inflight_max = st.inflight_max;
  }
}

static unsigned sh_shards(nt_presence *p, unsigned k, nt_presence_stats *out, int *up) {
  pshard *s = (pshard *)p;
  if (k < s->n) {
    if (out) nt_presence_get_stats(s->sub[k], out);
    if (up) *up = nt_presence_connected(s->sub[k]);
  }
  return s->n;
}

static void sh_destroy(nt_presence *p) {
  pshard *s = (pshard *)p;
  if (s->closing) return;
  s->closing = 1;
  /* Each shard fails its pending callbacks now. Its handler goes first: a Redis shard
   * still reads the replies of its last commands after this, and must not reach us. */
  for (unsigned k = 0; k < s->n; k++) {
    s->sub[k]->h = (nt_presence_handler){0};
    nt_presence_destroy(s->sub[k]);
  }
  free(s);
}

static const nt_presence_vtab shard_vtab = {
    .join = sh_join,
    .leave = sh_leave,
    .members = sh_members,
    .conn_add = sh_conn_add,
    .conn_remove = sh_conn_remove,
    .conn_get = sh_conn_get,
    .connected = sh_connected,
    .stats = sh_stats,
    .destroy = sh_destroy,
    .shards = sh_shards,
};

int nt_presence_shard_new(unsigned n, nt_presence_make_fn make, void *ctx,
                          const nt_presence_handler *h, nt_presence **out) {
  if (!make || !out || n < 1 || n > NT_PRESENCE_SHARDS_MAX) return NT_EINVAL;
  pshard *s = calloc(1, sizeof *s);
  if (!s) return NT_ENOMEM;
  s->base.vt = &shard_vtab;
  if (h) s->base.h = *h;
  int rc = 0;
  for (unsigned k = 0; k < n && !rc; k++) {
    s->slot[k] = (pslot){s, k, 0};
    nt_presence_handler sh = {.on_conn_lost = on_conn_lost, .on_offline = on_offline,
                              .on_state = on_state, .ud = &s->slot[k],
                              .on_online = on_online};
    rc = make(ctx, k, &sh, &s->sub[k]);
    if (!rc && !s->sub[k]) rc = NT_ENOMEM;
    if (!rc) s->n = k + 1;
  }
  if (rc) {
    sh_destroy(&s->base);
    return rc;
  }
  /* a store that never reports its state (memory) is up from the start */
  for (unsigned k = 0; k < n; k++) s->slot[k].up = nt_presence_connected(s->sub[k]);
  s->up = any_up(s);
  *out = &s->base;
  return 0;
}
