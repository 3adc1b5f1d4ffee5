/* nt_pfan: presence fan-out with per-member ordering against `joined` (see nt_pfan.h). */
#include "nt_pfan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_chat.h"
#include "nt_resume.h"

/* The presence frames a room received while members waited for their `joined`, numbered
 * by arrival (`arrivals` counts all, wrapping): every one of them while they fit in
 * NT_PFAN_RING_MAX (the ring doubles from NT_PFAN_RING when full), then the last
 * NT_PFAN_RING_MAX. Freed when no member waits any more. */
typedef struct nt_pfan_entry {
  nt_frame *f;
  uint64_t version;
  char skip[NT_CONN_ID_LEN + 1];
} nt_pfan_entry;

typedef struct nt_pfan_ring {
  uint32_t arrivals;
  uint32_t cap; /* a power of two, NT_PFAN_RING..NT_PFAN_RING_MAX */
  nt_pfan_entry *e;
} nt_pfan_ring;

static nt_conn_room *membership(nt_conn *c, const nt_room *r) {
  for (uint16_t i = 0; i < c->nrooms; i++)
    if (c->rooms[i].room == r) return &c->rooms[i];
  return NULL;
}

static void ring_free(nt_room *r) {
  nt_pfan_ring *g = r->pring;
  if (!g) return;
  for (size_t i = 0; i < g->cap; i++) nt_frame_unref(g->e[i].f);
  free(g->e);
  free(g);
  r->pring = NULL;
}

void nt_pfan_room_free(nt_room *r) { ring_free(r); }

static void unpend(nt_room *r) {
  if (r->npending && --r->npending == 0) ring_free(r);
}

void nt_pfan_pending(nt_room *r, nt_conn *c) {
  nt_conn_room *m = membership(c, r);
  if (!m || m->pver == NT_PVER_PENDING) return;
  m->pver = NT_PVER_PENDING;
  m->pmark = r->pring ? r->pring->arrivals : 0;
  r->npending++;
}

void nt_pfan_leave(nt_room *r, nt_conn *c) {
  nt_conn_room *m = membership(c, r);
  if (m && m->pver == NT_PVER_PENDING) {
    m->pver = 0;
    unpend(r);
  }
}

/* Whether a member whose `joined` listed the room at `pver` is still to hear of a change
 * of `version`: a join the store ordered before its own is in its `joined` (or the pages
 * after it); offline and re-asserted online (version 0) always are news. */
static int news(uint64_t pver, uint64_t version) {
  return pver != NT_PVER_PENDING && (!version || !pver || version > pver);
}

void nt_pfan_ready(nt_chat *n, nt_room *r, nt_conn *c, uint64_t version) {
  nt_conn_room *m = membership(c, r);
  if (!m || m->pver != NT_PVER_PENDING) return;
  m->pver = version;
  nt_pfan_ring *g = r->pring;
  /* what arrived since the member joined locally and its `joined` did not cover; a
   * member resuming there gets nothing, as in nt_pfan_deliver */
  if (g && !(n->res && nt_resume_is_resumer(r, c))) {
    uint32_t kept = g->arrivals < g->cap ? g->arrivals : g->cap;
    uint32_t since = g->arrivals - m->pmark; /* arrivals while it waited (wrapping) */
    if (since < kept) kept = since;
    for (uint32_t k = kept; k > 0; k--) {
      uint32_t a = g->arrivals - k;
      size_t i = a & (g->cap - 1);
      if (news(version, g->e[i].version) && strcmp(g->e[i].skip, c->id) != 0)
        nt_conn_send(c, g->e[i].f);
    }
  }
  unpend(r);
}

/* Doubles a full ring, keeping each entry at its arrival's index; 0 when it cannot grow
 * (at NT_PFAN_RING_MAX or out of memory: the oldest entry is then overwritten). */
static int ring_grow(nt_pfan_ring *g) {
  if (g->cap >= NT_PFAN_RING_MAX) return 0;
  uint32_t cap = g->cap * 2;
  nt_pfan_entry *e = calloc(cap, sizeof *e);
  if (!e) return 0;
  for (uint32_t k = 0; k < g->cap; k++) { /* the last cap arrivals */
    uint32_t a = g->arrivals - g->cap + k;
    e[a & (cap - 1)] = g->e[a & (g->cap - 1)];
  }
  free(g->e);
  g->e = e;
  g->cap = cap;
  return 1;
}

static void ring_push(nt_room *r, nt_frame *f, uint64_t version, const char *skip) {
  if (!r->pring) {
    nt_pfan_ring *g = calloc(1, sizeof *g);
    if (g && !(g->e = calloc(NT_PFAN_RING, sizeof *g->e))) {
      free(g);
      g = NULL;
    }
    if (!g) return;
    g->cap = NT_PFAN_RING;
    r->pring = g;
  }
  nt_pfan_ring *g = r->pring;
  if (g->arrivals >= g->cap) ring_grow(g); /* full: keep every frame a waiter may need */
  size_t i = g->arrivals & (g->cap - 1);
  nt_frame_unref(g->e[i].f);
  g->e[i].f = nt_frame_ref(f);
  g->e[i].version = version;
  snprintf(g->e[i].skip, sizeof g->e[i].skip, "%s", skip ? skip : "");
  g->arrivals++;
}

size_t nt_pfan_deliver(nt_chat *n, nt_room *r, nt_frame *f, uint64_t version,
                       const char *skip) {
  int check_rs = n->res && nt_resume_resumers(r) > 0;
  size_t d = 0;
  for (uint32_t i = 0; i < r->n; i++) {
    nt_conn *c = r->members[i];
    if (skip && strcmp(c->id, skip) == 0) continue;
    if (check_rs && nt_resume_is_resumer(r, c)) continue;
    nt_conn_room *m = membership(c, r);
    if (m && !news(m->pver, version)) continue;
    if (nt_conn_send(c, f) == 0) d++;
  }
  if (r->npending) ring_push(r, f, version, skip);
  return d;
}
