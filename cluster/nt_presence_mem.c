/* nt_presence_mem: in-memory presence and registry for one process (tests, standalone). */
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_map.h"
#include "nt_presence.h"
#include "nt_subject.h"

typedef struct mem_conn {
  nt_conn_info info;   /* strings point into buf */
  char buf[];
} mem_conn;

typedef struct mem_presence {
  nt_presence base;
  nt_map rooms;    /* "tenant\x01room" -> nt_map* (user -> count in a uintptr_t) */
  nt_map tenants;  /* tenant -> nt_map* (user -> count of connections) */
  nt_map conns;    /* conn_id -> mem_conn* */
  nt_presence_stats st;
} mem_presence;

static size_t room_key(char *out, const char *tenant, const char *room) {
  size_t tl = strlen(tenant), rl = strlen(room);
  memcpy(out, tenant, tl);
  out[tl] = '\x01';
  memcpy(out + tl + 1, room, rl + 1);
  return tl + 1 + rl;
}

/* Adds `delta` to user's count in the set stored under `key` in `outer`; returns the new
 * count, or -1 on allocation failure. Empty sets are removed. */
static long set_add(nt_map *outer, const char *key, size_t klen, const char *user,
                    long delta) {
  nt_map *set = nt_map_get(outer, key, klen);
  if (!set) {
    if (delta <= 0) return 0;
    set = calloc(1, sizeof *set);
    if (!set || nt_map_put(outer, key, klen, set, NULL)) {
      free(set);
      return -1;
    }
  }
  size_t ul = strlen(user);
  long n = (long)(uintptr_t)nt_map_get(set, user, ul) + delta;
  if (n <= 0) {
    nt_map_del(set, user, ul);
    n = 0;
  } else if (nt_map_put(set, user, ul, (void *)(uintptr_t)n, NULL)) {
    return -1;
  }
  if (set->len == 0) {
    nt_map_del(outer, key, klen);
    nt_map_clear(set);
    free(set);
  }
  return n;
}

static size_t list_set(nt_map *outer, const char *key, size_t klen, const char ***out) {
  nt_map *set = nt_map_get(outer, key, klen);
  *out = NULL;
  if (!set || !set->len) return 0;
  const char **v = malloc(set->len * sizeof *v);
  if (!v) return 0;
  size_t it = 0, n = 0;
  const char *k;
  void *val;
  while (nt_map_next(set, &it, &k, &val)) v[n++] = k;
  *out = v;
  return n;
}

static int mem_join(nt_presence *p, const char *tenant, const char *room, const char *user,
                    const char *conn_id, nt_presence_join_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (nt_id_valid(tenant) || nt_id_valid(room) || nt_id_valid(user)) return NT_EINVAL;
  size_t kl = room_key(key, tenant, room);
  long n = set_add(&m->rooms, key, kl, user, 1);
  if (n < 0) return NT_ENOMEM;
  m->st.ops++;
  if (n == 1) m->st.transitions++;
  if (cb) {
    const char **members;
    size_t cnt = list_set(&m->rooms, key, kl, &members);
    cb(ud, 0, n == 1, members, cnt);
    free(members);
  }
  return 0;
}

static int mem_leave(nt_presence *p, const char *tenant, const char *room, const char *user,
                     const char *conn_id, nt_presence_leave_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (nt_id_valid(tenant) || nt_id_valid(room) || nt_id_valid(user)) return NT_EINVAL;
  size_t kl = room_key(key, tenant, room);
  nt_map *set = nt_map_get(&m->rooms, key, kl);
  int was = set && nt_map_get(set, user, strlen(user));
  long n = set_add(&m->rooms, key, kl, user, -1);
  m->st.ops++;
  if (was && n == 0) m->st.transitions++;
  if (cb) cb(ud, 0, was && n == 0);
  return 0;
}

static int mem_members(nt_presence *p, const char *tenant, const char *room,
                       nt_presence_members_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (nt_id_valid(tenant) || (room && nt_id_valid(room))) return NT_EINVAL;
  const char **members;
  size_t cnt;
  if (room)
    cnt = list_set(&m->rooms, key, room_key(key, tenant, room), &members);
  else
    cnt = list_set(&m->tenants, tenant, strlen(tenant), &members);
  m->st.ops++;
  cb(ud, 0, members, cnt);
  free(members);
  return 0;
}

static char *dup_into(char **cursor, const char *s) {
  char *d = *cursor;
  size_t n = strlen(s ? s : "") + 1;
  memcpy(d, s ? s : "", n);
  *cursor += n;
  return d;
}

static int mem_conn_add(nt_presence *p, const nt_conn_info *in, nt_presence_done_cb cb,
                        void *ud) {
  mem_presence *m = (mem_presence *)p;
  const char *fields[] = {in->conn_id, in->tenant, in->user, in->node, in->source_ip,
                          in->user_agent};
  size_t total = 0;
  for (size_t i = 0; i < 6; i++) total += strlen(fields[i] ? fields[i] : "") + 1;
  mem_conn *c = malloc(sizeof *c + total);
  if (!c) return NT_ENOMEM;
  char *cur = c->buf;
  c->info.conn_id = dup_into(&cur, in->conn_id);
  c->info.tenant = dup_into(&cur, in->tenant);
  c->info.user = dup_into(&cur, in->user);
  c->info.node = dup_into(&cur, in->node);
  c->info.source_ip = dup_into(&cur, in->source_ip);
  c->info.user_agent = dup_into(&cur, in->user_agent);
  c->info.connected_at_ms = in->connected_at_ms;
  c->info.last_active_ms = in->last_active_ms;
  void *old = NULL;
  if (nt_map_put(&m->conns, in->conn_id, strlen(in->conn_id), c, &old)) {
    free(c);
    return NT_ENOMEM;
  }
  if (old) { /* re-registration of the same connection: do not double-count */
    free(old);
  } else if (set_add(&m->tenants, in->tenant, strlen(in->tenant), in->user, 1) < 0) {
    return NT_ENOMEM;
  }
  m->st.ops++;
  if (cb) cb(ud, 0);
  return 0;
}

static int mem_conn_remove(nt_presence *p, const char *tenant, const char *conn_id,
                           nt_presence_done_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  mem_conn *c = nt_map_del(&m->conns, conn_id, strlen(conn_id));
  if (c) {
    set_add(&m->tenants, c->info.tenant, strlen(c->info.tenant), c->info.user, -1);
    free(c);
  }
  m->st.ops++;
  if (cb) cb(ud, c ? 0 : NT_ENOTFOUND);
  return 0;
}

static int mem_conn_get(nt_presence *p, const char *conn_id, nt_presence_conn_cb cb,
                        void *ud) {
  mem_presence *m = (mem_presence *)p;
  mem_conn *c = nt_map_get(&m->conns, conn_id, strlen(conn_id));
  m->st.ops++;
  cb(ud, c ? 0 : NT_ENOTFOUND, c ? &c->info : NULL);
  return 0;
}

static int mem_connected(nt_presence *p) { return 1; }

static void mem_stats(nt_presence *p, nt_presence_stats *out) {
  *out = ((mem_presence *)p)->st;
}

static void free_sets(nt_map *outer) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(outer, &it, &k, &v)) {
    nt_map_clear(v);
    free(v);
  }
  nt_map_clear(outer);
}

static void mem_destroy(nt_presence *p) {
  mem_presence *m = (mem_presence *)p;
  free_sets(&m->rooms);
  free_sets(&m->tenants);
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&m->conns, &it, &k, &v)) free(v);
  nt_map_clear(&m->conns);
  free(m);
}

static const nt_presence_vtab mem_vtab = {
    mem_join, mem_leave, mem_members, mem_conn_add, mem_conn_remove, mem_conn_get,
    mem_connected, mem_stats, mem_destroy,
};

nt_presence *nt_presence_mem_new(const nt_presence_handler *h) {
  mem_presence *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->base.vt = &mem_vtab;
  if (h) m->base.h = *h;
  return &m->base;
}
