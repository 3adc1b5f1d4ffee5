/* nt_history_shard: room history over several histories (--history-streams K) — each
 * room in the one nt_subject_room_shard() names, every call about a room forwarded to it
 * unchanged (nt_history.h, nt_history_shard_new). */
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_hist_quota.h"
#include "nt_history.h"
#include "nt_subject.h"

typedef struct hshard hshard;

typedef struct hslot {
  hshard *s;
  unsigned k;
  int storing;           /* as the shard last reported */
} hslot;

struct hshard {
  nt_history base;
  unsigned n;
  nt_history *sub[NT_HISTORY_SHARDS_MAX];
  hslot slot[NT_HISTORY_SHARDS_MAX];
  nt_hist_handler h;
  nt_hist_quota *quota;  /* shared by the shards; NULL when the caller's cfg had one */
  int storing;           /* all shards store: what on_state last reported */
  int closing;
};

/* One ensure over every shard: cb once, after the last, with the first failure. */
typedef struct ensure_all {
  nt_hist_done_cb cb;
  void *ud;
  unsigned left;
  int status;
} ensure_all;

static const nt_history_vtab shard_vtab;

/* The shard of a room subject, or NULL when it is not one. */
static nt_history *route(nt_history *hh, const char *subject) {
  hshard *s = (hshard *)hh;
  int k = nt_subject_room_shard(subject, s->n);
  return k < 0 || s->closing ? NULL : s->sub[k];
}

static void on_sub_state(void *ud, int storing) {
  hslot *sl = ud;
  hshard *s = sl->s;
  sl->storing = storing;
  int all = 1;
  for (unsigned k = 0; k < s->n; k++) all &= s->slot[k].storing != 0;
  if (all == s->storing) return;
  s->storing = all;
  if (s->h.on_state) s->h.on_state(s->h.ud, all);
}

static void on_ensured(void *ud, int status) {
  ensure_all *e = ud;
  if (status && !e->status) e->status = status;
  if (--e->left) return;
  if (e->cb) e->cb(e->ud, e->status);
  free(e);
}

static int sh_ensure(nt_history *hh, nt_hist_done_cb cb, void *ud) {
  hshard *s = (hshard *)hh;
  if (s->closing) return NT_ECLOSED;
  ensure_all *e = calloc(1, sizeof *e);
  if (!e) return NT_ENOMEM;
  *e = (ensure_all){cb, ud, 1, 0}; /* one for this loop, so cb cannot run inside it */
  for (unsigned k = 0; k < s->n; k++) {
    e->left++;
    int rc = nt_history_ensure(s->sub[k], on_ensured, e);
    if (rc) {
      e->left--;
      if (!e->status) e->status = rc;
    }
  }
  if (e->left == 1 && e->status) { /* none started: an error and no callback */
    int rc = e->status;
    free(e);
    return rc;
  }
  on_ensured(e, 0); /* drops this loop's count; the shards' callbacks come later */
  return 0;
}

static int sh_publish(nt_history *hh, const char *subject, const void *data, size_t len,
                      const nt_hist_pub *pub) {
  nt_history *to = route(hh, subject);
  return to ? nt_history_publish(to, subject, data, len, pub) : NT_EINVAL;
}

static int sh_fetch_after(nt_history *hh, const char *subject, uint64_t after, uint64_t upto,
                          size_t max, nt_hist_cb cb, void *ud) {
  nt_history *to = route(hh, subject);
  return to ? nt_history_fetch_after(to, subject, after, upto, max, cb, ud) : NT_EINVAL;
}

static int sh_fetch_page(nt_history *hh, const char *subject, uint64_t before, size_t limit,
                         nt_hist_cb cb, void *ud) {
  nt_history *to = route(hh, subject);
  return to ? nt_history_fetch_page(to, subject, before, limit, cb, ud) : NT_EINVAL;
}

static int sh_storing(nt_history *hh) {
  hshard *s = (hshard *)hh;
  int all = !s->closing;
  for (unsigned k = 0; k < s->n && all; k++) all = nt_history_storing(s->sub[k]);
  return all;
}

static void sh_stats(nt_history *hh, nt_hist_stats *out) {
  hshard *s = (hshard *)hh;
  memset(out, 0, sizeof *out);
  out->storing = !s->closing;
  for (unsigned k = 0; k < s->n; k++) {
    nt_hist_stats st;
    nt_history_get_stats(s->sub[k], &st);
    out->published += st.published;
    out->stored += st.stored;
    out->live_only += st.live_only;
    out->over_quota += st.over_quota;
    out->resent += st.resent;
    out->duplicates += st.duplicates;
    out->unavailable += st.unavailable;
    out->outages += st.outages;
    out->fetches += st.fetches;
    out->fetch_errors += st.fetch_errors;
    out->fetched += st.fetched;
    out->stored_msgs += st.stored_msgs;
    out->stored_bytes += st.stored_bytes;
    out->storing &= st.storing != 0;
  }
}

static void sh_destroy(nt_history *hh) {
  hshard *s = (hshard *)hh;
  if (s->closing) return;
  s->closing = 1;
  for (unsigned k = 0; k < s->n; k++) nt_history_destroy(s->sub[k]);
  /* the shards touch the quota only when publishing, which ends with their destroy */
  nt_hist_quota_free(s->quota);
  free(s);
}

static const nt_history_vtab shard_vtab = {
    .ensure = sh_ensure,
    .publish = sh_publish,
    .fetch_after = sh_fetch_after,
    .fetch_page = sh_fetch_page,
    .storing = sh_storing,
    .stats = sh_stats,
    .destroy = sh_destroy,
};

int nt_history_shard_new(uv_loop_t *loop, unsigned n, const nt_hist_cfg *cfg,
                         nt_history_make_fn make, void *ctx, const nt_hist_handler *h,
                         nt_history **out) {
  if (!loop || !cfg || !make || !out || n < 1 || n > NT_HISTORY_SHARDS_MAX) return NT_EINVAL;
  hshard *s = calloc(1, sizeof *s);
  if (!s) return NT_ENOMEM;
  s->base.vt = &shard_vtab;
  s->n = n;
  s->storing = 1; /* a history starts storing */
  if (h) s->h = *h;
  nt_hist_cfg c = *cfg;
  if (!c.quota) { /* one budget per tenant, whichever streams its rooms are in */
    s->quota = nt_hist_quota_new(cfg->tenant_bytes, nt_hist_quota_window_ms(cfg));
    c.quota = s->quota;
  }
  if (!c.quota) {
    free(s);
    return NT_ENOMEM;
  }
  c.max_bytes = cfg->max_bytes / n; /* 0 stays 0: each shard's default */
  int rc = 0;
  unsigned made = 0;
  for (; made < n && !rc; made++) {
    s->slot[made] = (hslot){s, made, 1};
    nt_hist_handler sh = {.on_state = on_sub_state, .ud = &s->slot[made]};
    c.partition = (int)made + 1;
    rc = make(ctx, made, &c, &sh, &s->sub[made]);
    if (!rc && !s->sub[made]) rc = NT_ENOMEM;
  }
  if (rc) {
    s->n = made - 1; /* the one that failed was not made */
    sh_destroy(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}

unsigned nt_history_shard_stats(nt_history *h, unsigned k, nt_hist_stats *out) {
  if (!h || h->vt != &shard_vtab) return 0;
  hshard *s = (hshard *)h;
  if (k < s->n && out) nt_history_get_stats(s->sub[k], out);
  return s->n;
}
