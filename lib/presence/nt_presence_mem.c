/* nt_presence_mem: in-memory presence and registry for one process (tests, standalone).
 * Same transition rules as the Redis implementation (nt_presence_redis.c): membership is
 * per connection, deduplicated by user; only conn_remove differs — it leaves rooms to the
 * caller's leaves, which can never fail here. */
#include <stdio.h>
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

/* A room: which connections are in it (so a repeated join or a leave of a connection
 * that is not there changes nothing, as in Redis) and how many each user has. */
typedef struct mem_room {
  nt_map conns;  /* conn id -> user (owned string) */
  nt_map users;  /* user -> number of its connections in the room (uintptr_t) */
} mem_room;

typedef struct mem_presence {
  nt_presence base;
  nt_map rooms;    /* "tenant\x01room" -> mem_room* */
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

/* At most `limit` keys of `set` from slot *it on (the cursor of a page); *it is left on
 * the slot after the last one listed, or 0 when the set is exhausted. */
static size_t list_keys(const nt_map *set, size_t *it, size_t limit, const char ***out) {
  *out = NULL;
  size_t start = *it;
  *it = 0;
  if (!set || !set->len) return 0;
  size_t cap = set->len < limit ? set->len : limit;
  const char **v = malloc(cap * sizeof *v);
  if (!v) return 0;
  size_t pos = start, n = 0;
  const char *k;
  void *val;
  while (n < cap && nt_map_next(set, &pos, &k, &val)) v[n++] = k;
  if (n == cap && pos < set->cap) { /* more may follow: is there one? */
    size_t probe = pos;
    if (nt_map_next(set, &probe, &k, &val)) *it = pos;
  }
  *out = v;
  return n;
}

static void room_free(mem_room *r) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&r->conns, &it, &k, &v)) free(v);
  nt_map_clear(&r->conns);
  nt_map_clear(&r->users);
  free(r);
}

/* Puts conn in the room; returns 1 when its user just came online there, 0 when not
 * (another connection of the user, or this one, is already there), NT_ENOMEM. */
static int room_add(mem_room *r, const char *conn, const char *user) {
  size_t cl = strlen(conn), ul = strlen(user);
  if (nt_map_get(&r->conns, conn, cl)) return 0;
  char *u = strdup(user);
  if (!u || nt_map_put(&r->conns, conn, cl, u, NULL)) {
    free(u);
    return NT_ENOMEM;
  }
  uintptr_t n = (uintptr_t)nt_map_get(&r->users, user, ul) + 1;
  if (nt_map_put(&r->users, user, ul, (void *)n, NULL)) {
    free(nt_map_del(&r->conns, conn, cl));
    return NT_ENOMEM;
  }
  return n == 1;
}

/* Removes conn; returns its user (caller frees) and sets *offline when it was the
 * user's last connection there. NULL when conn was not in the room. */
static char *room_drop(mem_room *r, const char *conn, int *offline) {
  char *u = nt_map_del(&r->conns, conn, strlen(conn));
  *offline = 0;
  if (!u) return NULL;
  size_t ul = strlen(u);
  uintptr_t n = (uintptr_t)nt_map_get(&r->users, u, ul);
  if (n <= 1) {
    nt_map_del(&r->users, u, ul);
    *offline = 1;
  } else {
    nt_map_put(&r->users, u, ul, (void *)(n - 1), NULL); /* existing key: no allocation */
  }
  return u;
}

static void room_release(mem_presence *m, const char *key, size_t kl, mem_room *r) {
  if (r->conns.len) return;
  nt_map_del(&m->rooms, key, kl);
  room_free(r);
}

static int mem_join(nt_presence *p, const char *tenant, const char *room, const char *user,
                    const char *conn_id, nt_presence_join_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (nt_id_valid(tenant) || nt_id_valid(room) || nt_id_valid(user) || nt_id_valid(conn_id))
    return NT_EINVAL;
  size_t kl = room_key(key, tenant, room);
  mem_room *r = nt_map_get(&m->rooms, key, kl);
  if (!r) {
    if (!(r = calloc(1, sizeof *r))) return NT_ENOMEM;
    if (nt_map_put(&m->rooms, key, kl, r, NULL)) {
      free(r);
      return NT_ENOMEM;
    }
  }
  int tr = room_add(r, conn_id, user);
  if (tr < 0) {
    room_release(m, key, kl, r);
    return tr;
  }
  m->st.ops++;
  if (tr) m->st.transitions++;
  if (cb) {
    const char **members;
    size_t it = 0;
    size_t cnt = list_keys(&r->users, &it, NT_PRESENCE_JOINED_MAX, &members);
    cb(ud, 0, tr, members, cnt);
    free(members);
  }
  return 0;
}

static int mem_leave(nt_presence *p, const char *tenant, const char *room, const char *user,
                     const char *conn_id, nt_presence_leave_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (nt_id_valid(tenant) || nt_id_valid(room) || nt_id_valid(user) || nt_id_valid(conn_id))
    return NT_EINVAL;
  size_t kl = room_key(key, tenant, room);
  mem_room *r = nt_map_get(&m->rooms, key, kl);
  int offline = 0;
  if (r) {
    free(room_drop(r, conn_id, &offline));
    room_release(m, key, kl, r);
  }
  m->st.ops++;
  if (offline) m->st.transitions++;
  if (cb) cb(ud, 0, offline);
  return 0;
}

static int mem_members(nt_presence *p, const char *tenant, const char *room,
                       const char *cursor, size_t limit, nt_presence_members_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (nt_id_valid(tenant) || (room && nt_id_valid(room)) ||
      nt_presence_page_args_ok(cursor, limit))
    return NT_EINVAL;
  const nt_map *set;
  if (room) {
    mem_room *r = nt_map_get(&m->rooms, key, room_key(key, tenant, room));
    set = r ? &r->users : NULL;
  } else {
    set = nt_map_get(&m->tenants, tenant, strlen(tenant));
  }
  const char **members;
  size_t it = cursor ? (size_t)strtoull(cursor, NULL, 10) : 0;
  size_t cnt = list_keys(set, &it, limit, &members);
  char next[24];
  snprintf(next, sizeof next, "%zu", it);
  nt_presence_page pg = {members, cnt, it ? next : NULL, set ? set->len : 0};
  m->st.ops++;
  cb(ud, 0, &pg);
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
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&m->rooms, &it, &k, &v)) room_free(v);
  nt_map_clear(&m->rooms);
  free_sets(&m->tenants);
  it = 0;
  while (nt_map_next(&m->conns, &it, &k, &v)) free(v);
  nt_map_clear(&m->conns);
  free(m);
}

static const nt_presence_vtab mem_vtab = {
    .join = mem_join,
    .leave = mem_leave,
    .members = mem_members,
    .conn_add = mem_conn_add,
    .conn_remove = mem_conn_remove,
    .conn_get = mem_conn_get,
    .connected = mem_connected,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

nt_presence *nt_presence_mem_new(const nt_presence_handler *h) {
  mem_presence *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->base.vt = &mem_vtab;
  if (h) m->base.h = *h;
  return &m->base;
}

/* Removes every registered connection of `node` as a survivor's reap would (see
 * nt_presence.h), reporting each through on_conn_lost and each room a user leaves with
 * its last connection through on_offline, once. Returns the number of connections. */
size_t nt_presence_mem_reap_node(nt_presence *p, const char *node) {
  mem_presence *m = (mem_presence *)p;
  nt_map dead = NT_MAP_INIT; /* conn id -> mem_conn* (borrowed) */
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&m->conns, &it, &k, &v))
    if (!strcmp(((mem_conn *)v)->info.node, node)) nt_map_put(&dead, k, strlen(k), v, NULL);
  it = 0;
  while (nt_map_next(&m->rooms, &it, &k, &v)) {
    mem_room *r = v;
    char tenant[NT_ID_MAX + 1];
    const char *sep = strchr(k, '\x01');
    snprintf(tenant, sizeof tenant, "%.*s", (int)(sep - k), k);
    size_t cit = 0;
    const char *conn;
    void *user;
    while (nt_map_next(&r->conns, &cit, &conn, &user)) {
      if (!nt_map_get(&dead, conn, strlen(conn))) continue;
      int offline;
      char *u = room_drop(r, conn, &offline); /* nt_map_del of the current key: allowed */
      if (offline) {
        m->st.transitions++;
        if (m->base.h.on_offline) m->base.h.on_offline(m->base.h.ud, tenant, sep + 1, u);
      }
      free(u);
    }
    if (!r->conns.len) { /* deleting the current key while iterating is allowed */
      nt_map_del(&m->rooms, k, strlen(k));
      room_free(r);
    }
  }
  size_t n = dead.len;
  it = 0;
  while (nt_map_next(&dead, &it, &k, &v)) {
    mem_conn *c = v;
    if (m->base.h.on_conn_lost) m->base.h.on_conn_lost(m->base.h.ud, &c->info);
    nt_map_del(&m->conns, k, strlen(k));
    set_add(&m->tenants, c->info.tenant, strlen(c->info.tenant), c->info.user, -1);
    free(c);
  }
  nt_map_clear(&dead);
  if (n) m->st.reaped_nodes++;
  return n;
}
