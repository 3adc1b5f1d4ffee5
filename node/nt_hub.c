/* nt_hub: local rooms, user sets and connection ids. */
#include "nt_hub.h"

#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

void nt_hub_init(nt_hub *h) { memset(h, 0, sizeof *h); }

void nt_hub_free(nt_hub *h) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&h->rooms, &it, &k, &v)) {
    /* Each room is stored twice (room and presence subject); free it at its room-subject
     * entry. Decide from the key alone: the room may already be freed when its presence
     * entry comes later in the iteration. */
    if (strncmp(k, "natter.room.", 12) == 0) {
      nt_room *r = v;
      free(r->members);
      free(r);
    }
  }
  it = 0;
  while (nt_map_next(&h->users, &it, &k, &v)) {
    nt_userset *u = v;
    free(u->conns);
    free(u);
  }
  nt_map_clear(&h->rooms);
  nt_map_clear(&h->users);
  nt_map_clear(&h->conns);
}

nt_room *nt_hub_room(nt_hub *h, const char *subject) {
  return nt_map_get(&h->rooms, subject, strlen(subject));
}

nt_userset *nt_hub_userset(nt_hub *h, const char *subject) {
  return nt_map_get(&h->users, subject, strlen(subject));
}

nt_conn *nt_hub_conn(nt_hub *h, const char *conn_id) {
  return nt_map_get(&h->conns, conn_id, strlen(conn_id));
}

static int grow_ptrs(void *pp, uint32_t *cap, uint32_t n, size_t elem) {
  if (n < *cap) return 0;
  uint32_t ncap = *cap ? *cap * 2 : 4;
  void *np = realloc(*(void **)pp, (size_t)ncap * elem);
  if (!np) return NT_ENOMEM;
  *(void **)pp = np;
  *cap = ncap;
  return 0;
}

nt_room *nt_hub_conn_room(const nt_conn *c, const char *name) {
  for (uint16_t i = 0; i < c->nrooms; i++)
    if (strcmp(c->rooms[i].room->name, name) == 0) return c->rooms[i].room;
  return NULL;
}

int nt_hub_is_member(const nt_conn *c, const nt_room *r) {
  for (uint16_t i = 0; i < c->nrooms; i++)
    if (c->rooms[i].room == r) return 1;
  return 0;
}

nt_room *nt_hub_join(nt_hub *h, nt_conn *c, const char *tenant, const char *name,
                     int *created, int *err) {
  char subject[NT_SUBJECT_MAX];
  int n = nt_subject_room(subject, sizeof subject, tenant, name);
  *created = 0;
  if (n < 0) { *err = n; return NULL; }
  nt_room *r = nt_map_get(&h->rooms, subject, (size_t)n);
  if (r && nt_hub_is_member(c, r)) return r;
  if (c->nrooms == UINT16_MAX) { *err = NT_ELIMIT; return NULL; }
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) { *err = NT_ENOMEM; return NULL; }
    memcpy(r->subject, subject, (size_t)n + 1);
    int pn = nt_subject_presence(r->psubject, sizeof r->psubject, tenant, name);
    snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
    snprintf(r->name, sizeof r->name, "%s", name);
    if (pn < 0 || nt_map_put(&h->rooms, r->subject, (size_t)n, r, NULL)) {
      free(r);
      *err = pn < 0 ? pn : NT_ENOMEM;
      return NULL;
    }
    if (nt_map_put(&h->rooms, r->psubject, (size_t)pn, r, NULL)) {
      nt_map_del(&h->rooms, r->subject, (size_t)n);
      free(r);
      *err = NT_ENOMEM;
      return NULL;
    }
    h->nrooms++;
    *created = 1;
  }
  uint32_t rc = c->caprooms;
  if (grow_ptrs(&r->members, &r->cap, r->n, sizeof *r->members) ||
      grow_ptrs(&c->rooms, &rc, c->nrooms, sizeof *c->rooms)) {
    if (*created) nt_hub_room_free(h, r);
    *created = 0;
    *err = NT_ENOMEM;
    return NULL;
  }
  c->caprooms = (uint16_t)(rc > UINT16_MAX ? UINT16_MAX : rc);
  c->rooms[c->nrooms++] = (nt_conn_room){r, r->n};
  r->members[r->n++] = c;
  return r;
}

int nt_hub_leave(nt_hub *h, nt_conn *c, nt_room *r) {
  uint16_t i;
  for (i = 0; i < c->nrooms && c->rooms[i].room != r; i++) {}
  if (i == c->nrooms) return 0;
  uint32_t idx = c->rooms[i].idx;
  c->rooms[i] = c->rooms[--c->nrooms];
  /* swap-remove from the room; fix the moved member's back index */
  nt_conn *moved = r->members[--r->n];
  r->members[idx] = moved;
  if (moved != c)
    for (uint16_t k = 0; k < moved->nrooms; k++)
      if (moved->rooms[k].room == r) { moved->rooms[k].idx = idx; break; }
  return r->n == 0;
}

void nt_hub_room_free(nt_hub *h, nt_room *r) {
  nt_map_del(&h->rooms, r->subject, strlen(r->subject));
  nt_map_del(&h->rooms, r->psubject, strlen(r->psubject));
  h->nrooms--;
  free(r->members);
  free(r);
}

int nt_hub_add_conn(nt_hub *h, nt_conn *c, int *created) {
  char subject[NT_SUBJECT_MAX];
  *created = 0;
  int n = nt_subject_user(subject, sizeof subject, c->ident.tenant, c->ident.user);
  if (n < 0) return n;
  if (nt_map_put(&h->conns, c->id, strlen(c->id), c, NULL)) return NT_ENOMEM;
  nt_userset *u = nt_map_get(&h->users, subject, (size_t)n);
  if (!u) {
    u = calloc(1, sizeof *u);
    if (!u) goto oom;
    memcpy(u->subject, subject, (size_t)n + 1);
    if (nt_map_put(&h->users, u->subject, (size_t)n, u, NULL)) {
      free(u);
      goto oom;
    }
    *created = 1;
  }
  if (grow_ptrs(&u->conns, &u->cap, u->n, sizeof *u->conns)) {
    if (*created) nt_hub_userset_free(h, u);
    *created = 0;
    goto oom;
  }
  c->uset = u;
  c->uidx = u->n;
  u->conns[u->n++] = c;
  return 0;
oom:
  nt_map_del(&h->conns, c->id, strlen(c->id));
  return NT_ENOMEM;
}

nt_userset *nt_hub_remove_conn(nt_hub *h, nt_conn *c) {
  nt_map_del(&h->conns, c->id, strlen(c->id));
  nt_userset *u = c->uset;
  if (!u) return NULL;
  nt_conn *moved = u->conns[--u->n];
  u->conns[c->uidx] = moved;
  moved->uidx = c->uidx;
  c->uset = NULL;
  return u->n == 0 ? u : NULL;
}

void nt_hub_userset_free(nt_hub *h, nt_userset *u) {
  nt_map_del(&h->users, u->subject, strlen(u->subject));
  free(u->conns);
  free(u);
}
