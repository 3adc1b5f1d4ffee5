/* nt_hist_quota: per-tenant byte budget of the history over a sliding window of slices. */
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_hist_quota.h"
#include "nt_history.h"
#include "nt_map.h"
#include "nt_subject.h"

#define NSLOTS (NT_HQ_SLICES + 1)

typedef struct tq {
  uint64_t slice;          /* index (now / slice length) of the newest slot */
  uint64_t sum;            /* of bytes[] */
  uint64_t bytes[NSLOTS];  /* ring: slot (slice % NSLOTS) */
} tq;

struct nt_hist_quota {
  uint64_t budget, slice_ms;
  uint64_t swept;          /* slice of the last sweep */
  nt_map tenants;          /* tenant -> tq */
};

nt_hist_quota *nt_hist_quota_new(uint64_t budget, uint64_t window_ms) {
  if (!window_ms) return NULL;
  nt_hist_quota *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->budget = budget;
  q->slice_ms = window_ms / NT_HQ_SLICES ? window_ms / NT_HQ_SLICES : 1;
  q->tenants = (nt_map)NT_MAP_INIT;
  return q;
}

void nt_hist_quota_free(nt_hist_quota *q) {
  if (!q) return;
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&q->tenants, &it, &k, &v)) free(v);
  nt_map_clear(&q->tenants);
  free(q);
}

/* Moves t's newest slot to `slice`, dropping the slots that left the window. */
static void advance(tq *t, uint64_t slice) {
  if (slice <= t->slice) return;
  uint64_t gap = slice - t->slice;
  if (gap >= NSLOTS) {
    memset(t->bytes, 0, sizeof t->bytes);
    t->sum = 0;
  } else {
    for (uint64_t s = t->slice + 1; s <= slice; s++) {
      t->sum -= t->bytes[s % NSLOTS];
      t->bytes[s % NSLOTS] = 0;
    }
  }
  t->slice = slice;
}

static void sweep(nt_hist_quota *q, uint64_t slice) {
  if (slice == q->swept) return;
  q->swept = slice;
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&q->tenants, &it, &k, &v)) {
    tq *t = v;
    advance(t, slice);
    if (t->sum == 0) free(nt_map_del(&q->tenants, k, strlen(k)));
  }
}

int nt_hist_quota_take(nt_hist_quota *q, const char *subject, size_t bytes, uint64_t now_ms) {
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1];
  if (nt_subject_parse2(subject, NT_SUBJECT_ROOM_PREFIX, tenant, room)) return NT_EINVAL;
  if (!q->budget) return 0;
  uint64_t slice = now_ms / q->slice_ms;
  sweep(q, slice);
  size_t tl = strlen(tenant);
  tq *t = nt_map_get(&q->tenants, tenant, tl);
  if (!t) {
    if (bytes > q->budget) return NT_ELIMIT;
    t = calloc(1, sizeof *t);
    if (!t) return NT_ENOMEM;
    t->slice = slice;
    if (nt_map_put(&q->tenants, tenant, tl, t, NULL)) {
      free(t);
      return NT_ENOMEM;
    }
  }
  advance(t, slice);
  if (t->sum + bytes > q->budget) return NT_ELIMIT;
  t->bytes[slice % NSLOTS] += bytes;
  t->sum += bytes;
  return 0;
}

uint64_t nt_hist_quota_used(nt_hist_quota *q, const char *tenant, uint64_t now_ms) {
  tq *t = nt_map_get(&q->tenants, tenant, strlen(tenant));
  if (!t) return 0;
  advance(t, now_ms / q->slice_ms);
  return t->sum;
}

size_t nt_hist_quota_tenants(const nt_hist_quota *q) { return q->tenants.len; }

uint64_t nt_hist_quota_window_ms(const struct nt_hist_cfg *cfg) {
  return cfg->max_age_s > 0 ? (uint64_t)(cfg->max_age_s * 1000) : 86400000u;
}

int nt_hist_over_quota(nt_hist_quota *q, size_t max_msg_bytes, const char *subject,
                       size_t len, uint64_t now_ms) {
  if (max_msg_bytes && len > max_msg_bytes) return 1;
  return q && nt_hist_quota_take(q, subject, len, now_ms) == NT_ELIMIT;
}
