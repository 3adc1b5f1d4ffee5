/* nt_hub: local rooms, user sets and connection ids. */
#include "nt_hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

void nt_hub_init(nt_hub *h) {
  memset(h, 0, sizeof *h);
  nt_map_init_borrowed(&h->rooms);
  nt_map_init_borrowed(&h->users);
  nt_map_init_borrowed(&h->conns);
  nt_map_init_borrowed(&h->tenants);
}

static void userset_free(nt_userset *u);

void nt_hub_free(nt_hub *h) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&h->rooms, &it, &k, &v)) {
    /* Each room is stored twice (room and presence subject) and the keys point into it:
     * drop both entries, then free it once. */
    nt_room *r = v;
    nt_map_del(&h->rooms, r->subject, strlen(r->subject));
    nt_map_del(&h->rooms, r->psubject, strlen(r->psubject));
    if (h->room_dtor) h->room_dtor(r);
    free(r->members);
    free(r);
  }
  it = 0;
  while (nt_map_next(&h->users, &it, &k, &v)) userset_free(v);
  it = 0;
  while (nt_map_next(&h->tenants, &it, &k, &v)) free(v);
  nt_map_clear(&h->rooms);
  nt_map_clear(&h->users);
  nt_map_clear(&h->conns);
  nt_map_clear(&h->tenants);
  h->nwild = 0;
}

nt_room *nt_hub_room(nt_hub *h, const char *subject) {
  return nt_map_get(&h->rooms, subject, strlen(subject));
}

#define USER_PREFIX_LEN (sizeof NT_SUBJECT_USER_PREFIX - 1)

nt_userset *nt_hub_userset(nt_hub *h, const char *subject) {
  size_t n = strlen(subject);
  if (n <= USER_PREFIX_LEN || memcmp(subject, NT_SUBJECT_USER_PREFIX, USER_PREFIX_LEN))
    return NULL;
  return nt_map_get(&h->users, subject + USER_PREFIX_LEN, n - USER_PREFIX_LEN);
}

static const char *key_tenant(const char *key, size_t *len);

int nt_hub_user_subject(const nt_userset *u, char *out, size_t cap) {
  size_t tl;
  const char *t = key_tenant(u->key, &tl);
  char tenant[NT_ID_MAX + 1];
  if (tl > NT_ID_MAX) return NT_EINVAL;
  memcpy(tenant, t, tl);
  tenant[tl] = '\0';
  return nt_subject_user(out, cap, tenant, u->key + tl + 1);
}

nt_conn *nt_hub_conn(nt_hub *h, const char *conn_id) {
  return nt_map_get(&h->conns, conn_id, strlen(conn_id));
}

/* Makes room for element n of the array at *pp (capacity *cap, elements of `elem`
 * bytes), doubling it. `inl` is a one-element array inside the owner that *pp points to
 * at first (NULL: none): most connections are in one room and most users have one
 * connection on a node, and an idle connection's memory is what the node scales by. */
static int grow(void *pp, void *inl, uint32_t *cap, uint32_t n, size_t elem) {
  void **p = pp;
  if (!*p && inl) {
    *p = inl;
    *cap = 1;
  }
  if (n < *cap) return 0;
  uint32_t ncap = *cap ? *cap * 2 : 1;
  int leave_inl = inl && *p == inl;
  void *np = leave_inl ? malloc((size_t)ncap * elem) : realloc(*p, (size_t)ncap * elem);
  if (!np) return NT_ENOMEM;
  if (leave_inl) memcpy(np, inl, (size_t)n * elem);
  *p = np;
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

/* One allocation: the room, then its subject, presence subject, tenant and name. */
static nt_room *room_new(const char *subject, size_t slen, const char *tenant,
                         const char *name, int *err) {
  char psubject[NT_SUBJECT_MAX];
  int pn = nt_subject_presence(psubject, sizeof psubject, tenant, name);
  if (pn < 0) {
    *err = pn;
    return NULL;
  }
  size_t tl = strlen(tenant), nl = strlen(name);
  nt_room *r = calloc(1, sizeof *r + slen + 1 + (size_t)pn + 1 + tl + 1 + nl + 1);
  if (!r) {
    *err = NT_ENOMEM;
    return NULL;
  }
  char *at = r->str;
  r->subject = memcpy(at, subject, slen + 1);
  at += slen + 1;
  r->psubject = memcpy(at, psubject, (size_t)pn + 1);
  at += pn + 1;
  r->tenant = memcpy(at, tenant, tl + 1);
  at += tl + 1;
  r->name = memcpy(at, name, nl + 1);
  return r;
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
    if (!(r = room_new(subject, (size_t)n, tenant, name, err))) return NULL;
    if (nt_map_put(&h->rooms, r->subject, (size_t)n, r, NULL)) {
      free(r);
      *err = NT_ENOMEM;
      return NULL;
    }
    if (nt_map_put(&h->rooms, r->psubject, strlen(r->psubject), r, NULL)) {
      nt_map_del(&h->rooms, r->subject, (size_t)n);
      free(r);
      *err = NT_ENOMEM;
      return NULL;
    }
    h->nrooms++;
    *created = 1;
  }
  uint32_t rc = c->caprooms;
  if (grow(&r->members, NULL, &r->cap, r->n, sizeof *r->members) ||
      grow(&c->rooms, &c->room0, &rc, c->nrooms, sizeof *c->rooms)) {
    if (*created) nt_hub_room_free(h, r);
    *created = 0;
    *err = NT_ENOMEM;
    return NULL;
  }
  c->caprooms = (uint16_t)(rc > UINT16_MAX ? UINT16_MAX : rc);
  c->rooms[c->nrooms++] = (nt_conn_room){.room = r, .idx = r->n};
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
  if (h->room_dtor) h->room_dtor(r);
  free(r->members);
  free(r);
}

/* The tenant of a user set's key "<tenant>.<user>" (ids hold no dots). */
static const char *key_tenant(const char *key, size_t *len) {
  *len = (size_t)(strchr(key, '.') - key);
  return key;
}

nt_hub_tenant *nt_hub_tenant_of(nt_hub *h, const nt_userset *u) {
  size_t len;
  const char *t = key_tenant(u->key, &len);
  return nt_map_get(&h->tenants, t, len);
}

/* Counts a new user set in its tenant (creating the record). */
static int tenant_add(nt_hub *h, const nt_userset *u) {
  size_t len;
  const char *t = key_tenant(u->key, &len);
  nt_hub_tenant *ten = nt_map_get(&h->tenants, t, len);
  if (!ten) {
    if (!(ten = calloc(1, sizeof *ten + len + 1))) return NT_ENOMEM;
    memcpy(ten->name, t, len);
    if (nt_map_put(&h->tenants, ten->name, len, ten, NULL)) {
      free(ten);
      return NT_ENOMEM;
    }
  }
  ten->nusers++;
  return 0;
}

int nt_hub_add_conn(nt_hub *h, nt_conn *c, int *created) {
  char subject[NT_SUBJECT_MAX];
  *created = 0;
  int n = nt_subject_user(subject, sizeof subject, c->ident.tenant, c->ident.user);
  if (n < 0) return n;
  if (nt_map_put(&h->conns, c->id, strlen(c->id), c, NULL)) return NT_ENOMEM;
  const char *key = subject + USER_PREFIX_LEN;
  size_t klen = (size_t)n - USER_PREFIX_LEN;
  nt_userset *u = nt_map_get(&h->users, key, klen);
  if (!u) {
    u = calloc(1, sizeof *u + klen + 1);
    if (!u) goto oom;
    memcpy(u->key, key, klen + 1);
    if (tenant_add(h, u)) {
      free(u);
      goto oom;
    }
    if (nt_map_put(&h->users, u->key, klen, u, NULL)) {
      nt_hub_userset_free(h, u); /* not listed: only uncounts the tenant */
      goto oom;
    }
    *created = 1;
  }
  if (grow(&u->conns, &u->conn0, &u->cap, u->n, sizeof *u->conns)) {
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

static void userset_free(nt_userset *u) {
  if (u->conns != &u->conn0) free(u->conns);
  free(u);
}

nt_bus_sub *nt_hub_userset_free(nt_hub *h, nt_userset *u) {
  nt_map_del(&h->users, u->key, strlen(u->key));
  size_t len;
  const char *t = key_tenant(u->key, &len);
  nt_hub_tenant *ten = nt_map_get(&h->tenants, t, len);
  nt_bus_sub *wild = NULL;
  if (ten) {
    if (--ten->nusers == 0) {
      wild = ten->wild;
      if (wild) h->nwild--;
      nt_map_del(&h->tenants, ten->name, len);
      free(ten);
    }
  }
  userset_free(u);
  return wild;
}
