/* nt_recent: a room's recent messages (a bounded chain of sequenced frames) for resumes
 * answered from memory. */
#include "nt_recent.h"

#include <stdlib.h>
#include <string.h>

void nt_recent_init(nt_recent *r, size_t max, nt_recent_budget *b) {
  *r = (nt_recent){.max = max, .b = b};
}

static void pop_front(nt_recent *r) {
  nt_recent_item *it = &r->v[r->head];
  r->b->used -= it->bytes;
  nt_frame_unref(it->f);
  it->f = NULL;
  r->head = (r->head + 1) % r->cap;
  r->len--;
}

/* Room for one more: grows the slots (doubling, up to max) or drops the oldest item. */
static int make_room(nt_recent *r) {
  if (r->len < r->cap) return 0;
  if (r->cap < r->max) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    if (cap > r->max) cap = r->max;
    nt_recent_item *v = malloc(cap * sizeof *v);
    if (!v) {
      if (!r->len) return -1;
      pop_front(r); /* keep what fits */
      return 0;
    }
    for (size_t i = 0; i < r->len; i++) v[i] = r->v[(r->head + i) % r->cap];
    free(r->v);
    r->b->used += (cap - r->cap) * sizeof *v;
    r->v = v;
    r->cap = cap;
    r->head = 0;
    return 0;
  }
  pop_front(r);
  return 0;
}

static uint32_t frame_bytes(const nt_frame *f) {
  if (!f) return 0;
  size_t n = sizeof *f + f->len;
  if (f->z) n += sizeof *f->z + f->z->len;
  return (uint32_t)n;
}

int nt_recent_push(nt_recent *r, const nt_recent_item *it) {
  if (!it->seq || !r->max || !r->b) return 0;
  if (r->len) {
    const nt_recent_item *last = nt_recent_at(r, r->len - 1);
    if (it->prev != last->seq || it->seq <= last->seq) nt_recent_clear(r); /* a hole */
  }
  if (make_room(r)) return 0;
  nt_recent_item *slot = &r->v[(r->head + r->len) % r->cap];
  *slot = *it;
  slot->bytes = frame_bytes(it->f);
  if (slot->f) nt_frame_ref(slot->f);
  r->len++;
  r->b->used += slot->bytes;
  while (r->len && r->b->used > r->b->max) pop_front(r);
  if (!r->len) {
    nt_recent_clear(r); /* not even its slots fit: give them back */
    return 0;
  }
  return 1;
}

void nt_recent_expire(nt_recent *r, uint64_t min_at_ms) {
  while (r->len && r->v[r->head].at_ms < min_at_ms) pop_front(r);
}

int nt_recent_after(const nt_recent *r, uint64_t since, size_t *first) {
  if (!since || !r->len) return 0;
  const nt_recent_item *a = nt_recent_at(r, 0), *z = nt_recent_at(r, r->len - 1);
  if (since == a->prev) {
    *first = 0;
    return 1;
  }
  if (since < a->seq || since > z->seq) return 0;
  /* sequences increase along the ring: binary search for since itself */
  size_t lo = 0, hi = r->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (nt_recent_at(r, mid)->seq < since) lo = mid + 1;
    else hi = mid;
  }
  if (lo == r->len || nt_recent_at(r, lo)->seq != since) return 0; /* not a position */
  *first = lo + 1;
  return 1;
}

void nt_recent_clear(nt_recent *r) {
  while (r->len) pop_front(r);
  if (r->b) r->b->used -= r->cap * sizeof *r->v;
  free(r->v);
  r->v = NULL;
  r->cap = r->head = 0;
}
