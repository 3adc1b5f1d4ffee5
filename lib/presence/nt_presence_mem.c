/* nt_presence_mem: in-memory presence and registry for one process (tests, standalone).
 * Same transition rules as the Redis implementation (nt_presence_redis.c), checked by the
 * shared contract suite (tests/contract/presence_contract.c): membership is per
 * connection, deduplicated by user; only conn_remove differs — it leaves rooms to the
 * caller's leaves, which can never fail here. State changes at the call; the callback gets
 * a snapshot of the outcome on a later loop turn (an idle handle, active only while
 * callbacks are queued), never inside the call, as with Redis. */
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
  uint64_t joins; /* the room's join counter (nt_presence_joined.version) */
} mem_room;

/* A callback waiting for the next loop turn, with a copy of what it reports. */
enum { CB_JOIN, CB_LEAVE, CB_MEMBERS, CB_DONE, CB_CONN, CB_LOST, CB_OFFLINE };

typedef struct mem_cb {
  struct mem_cb *next;
  int kind, status, transition;
  nt_presence_cb cb;
  void *ud;
  mem_conn *info;      /* CB_CONN, CB_LOST: a copy (NULL when not found) */
  char **members;      /* CB_JOIN, CB_MEMBERS: n pointers then the strings, one block;
                        * CB_OFFLINE: tenant, room, user */
  size_t n;
  char cursor[24];     /* CB_MEMBERS, CB_JOIN: the next page's cursor ("" on the last page) */
  uint64_t total;      /* CB_MEMBERS, CB_JOIN: members in all */
  uint64_t version;    /* CB_JOIN: the room's join counter after the join */
} mem_cb;

typedef struct mem_presence {
  nt_presence base;
  nt_map rooms;    /* "tenant\x01room" -> mem_room* */
  nt_map tenants;  /* tenant -> nt_map* (user -> count of connections) */
  nt_map conns;    /* conn_id -> mem_conn* */
  nt_presence_stats st;
  uv_idle_t idle;  /* runs queued callbacks; the presence is freed in its close callback */
  mem_cb *head, **tail; /* queued for the next turn */
  mem_cb *running;      /* the rest of the batch being run this turn */
  int closing;
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

/* Copies `n` strings into one block: n pointers, then the strings. NULL on failure. */
static char **copy_strings(const char *const *v, size_t n) {
  size_t total = n * sizeof(char *);
  for (size_t i = 0; i < n; i++) total += strlen(v[i]) + 1;
  char **out = malloc(total ? total : 1);
  if (!out) return NULL;
  char *cur = (char *)(out + n);
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(v[i]) + 1;
    out[i] = memcpy(cur, v[i], l);
    cur += l;
  }
  return out;
}

/* At most `limit` keys of `set` (may be NULL) from slot *it on (list_keys) as one copied
 * block; NT_ENOMEM on failure. */
static int snapshot_page(const nt_map *set, size_t *it, size_t limit, char ***out, size_t *n) {
  const char **v;
  size_t cnt = list_keys(set, it, limit, &v);
  if (!v && set && set->len && limit) return NT_ENOMEM;
  *out = copy_strings(v, cnt);
  *n = cnt;
  free(v);
  return *out ? 0 : NT_ENOMEM;
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

/* ---------------------------------------------------------------- deferred callbacks */

static void run_queued(uv_idle_t *h);

/* A queued callback record (zeroed), or NULL on allocation failure. */
static mem_cb *cb_new(int kind, void *ud) {
  mem_cb *c = calloc(1, sizeof *c);
  if (c) {
    c->kind = kind;
    c->ud = ud;
  }
  return c;
}

static void cb_free(mem_cb *c) {
  free(c->info);
  free(c->members);
  free(c);
}

static void enqueue(mem_presence *m, mem_cb *c) {
  c->next = NULL;
  *m->tail = c;
  m->tail = &c->next;
  if (!uv_is_active((uv_handle_t *)&m->idle)) uv_idle_start(&m->idle, run_queued);
}

static void cb_call(mem_presence *m, mem_cb *c) {
  const nt_presence_handler *h = &m->base.h;
  const char *const *names = (const char *const *)c->members;
  switch (c->kind) {
  case CB_JOIN: {
    nt_presence_joined j = {c->transition, names, c->n, c->cursor[0] ? c->cursor : NULL,
                            c->total, c->version};
    c->cb.join(c->ud, c->status, c->status ? NULL : &j);
    break;
  }
  case CB_LEAVE: c->cb.leave(c->ud, c->status, c->transition); break;
  case CB_MEMBERS: {
    nt_presence_page pg = {names, c->n, c->cursor[0] ? c->cursor : NULL, c->total};
    c->cb.members(c->ud, c->status, c->status ? NULL : &pg);
    break;
  }
  case CB_DONE: c->cb.done(c->ud, c->status); break;
  case CB_CONN: c->cb.conn(c->ud, c->status, c->info ? &c->info->info : NULL); break;
  case CB_LOST:
    if (h->on_conn_lost && !m->closing) h->on_conn_lost(h->ud, &c->info->info);
    break;
  case CB_OFFLINE:
    if (h->on_offline && !m->closing) h->on_offline(h->ud, names[0], names[1], names[2]);
    break;
  }
}

/* Runs what was queued before this turn; what the callbacks queue meanwhile waits for the
 * next turn. A callback may destroy the presence: its memory lives until the idle
 * handle's close callback. */
static void run_queued(uv_idle_t *h) {
  mem_presence *m = h->data;
  m->running = m->head;
  m->head = NULL;
  m->tail = &m->head;
  while (m->running) {
    mem_cb *c = m->running;
    m->running = c->next;
    cb_call(m, c);
    cb_free(c);
  }
  if (!m->head && !m->closing) uv_idle_stop(&m->idle);
}

/* Calls every callback of `c` (a list) with NT_ECLOSED and frees it. */
static void fail_all(mem_presence *m, mem_cb *c) {
  while (c) {
    mem_cb *next = c->next;
    c->status = NT_ECLOSED;
    c->n = 0;
    cb_call(m, c);
    cb_free(c);
    c = next;
  }
}

/* A copy of a registry record in one allocation. */
static mem_conn *conn_copy(const nt_conn_info *in) {
  const char *fields[] = {in->conn_id, in->tenant, in->user, in->node, in->source_ip,
                          in->user_agent};
  size_t total = 0;
  for (size_t i = 0; i < 6; i++) total += strlen(fields[i] ? fields[i] : "") + 1;
  mem_conn *c = malloc(sizeof *c + total);
  if (!c) return NULL;
  char *cur = c->buf;
  const char **dst[] = {&c->info.conn_id, &c->info.tenant, &c->info.user, &c->info.node,
                        &c->info.source_ip, &c->info.user_agent};
  for (size_t i = 0; i < 6; i++) {
    size_t n = strlen(fields[i] ? fields[i] : "") + 1;
    *dst[i] = memcpy(cur, fields[i] ? fields[i] : "", n);
    cur += n;
  }
  c->info.connected_at_ms = in->connected_at_ms;
  c->info.last_active_ms = in->last_active_ms;
  return c;
}

/* ---------------------------------------------------------------- operations */

static int mem_join(nt_presence *p, const char *tenant, const char *room, const char *user,
                    const char *conn_id, nt_presence_join_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (m->closing) return NT_ECLOSED;
  if (!nt_id_valid(tenant) || !nt_id_valid(room) || !nt_id_valid(user) || !nt_id_valid(conn_id))
    return NT_EINVAL;
  mem_cb *c = cb ? cb_new(CB_JOIN, ud) : NULL;
  if (cb && !c) return NT_ENOMEM;
  size_t kl = room_key(key, tenant, room);
  mem_room *r = nt_map_get(&m->rooms, key, kl);
  if (!r) {
    if (!(r = calloc(1, sizeof *r)) || nt_map_put(&m->rooms, key, kl, r, NULL)) {
      free(r);
      free(c);
      return NT_ENOMEM;
    }
  }
  int tr = room_add(r, conn_id, user);
  if (tr < 0) {
    room_release(m, key, kl, r);
    free(c);
    return tr;
  }
  m->st.ops++;
  if (tr) m->st.transitions++;
  uint64_t version = ++r->joins;
  if (c) {
    c->cb.join = cb;
    c->transition = tr;
    size_t it = 0;
    c->status = snapshot_page(&r->users, &it, NT_PRESENCE_JOINED_MAX, &c->members, &c->n);
    if (c->status) c->n = 0;
    if (it) snprintf(c->cursor, sizeof c->cursor, "%zu", it);
    c->total = r->users.len;
    c->version = version;
    enqueue(m, c);
  }
  return 0;
}

static int mem_leave(nt_presence *p, const char *tenant, const char *room, const char *user,
                     const char *conn_id, nt_presence_leave_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (m->closing) return NT_ECLOSED;
  if (!nt_id_valid(tenant) || !nt_id_valid(room) || !nt_id_valid(user) || !nt_id_valid(conn_id))
    return NT_EINVAL;
  mem_cb *c = cb ? cb_new(CB_LEAVE, ud) : NULL;
  if (cb && !c) return NT_ENOMEM;
  size_t kl = room_key(key, tenant, room);
  mem_room *r = nt_map_get(&m->rooms, key, kl);
  int offline = 0;
  if (r) {
    free(room_drop(r, conn_id, &offline));
    room_release(m, key, kl, r);
  }
  m->st.ops++;
  if (offline) m->st.transitions++;
  if (c) {
    c->cb.leave = cb;
    c->transition = offline;
    enqueue(m, c);
  }
  return 0;
}

static int mem_members(nt_presence *p, const char *tenant, const char *room,
                       const char *cursor, size_t limit, nt_presence_members_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  char key[2 * NT_ID_MAX + 2];
  if (m->closing) return NT_ECLOSED;
  if (!nt_id_valid(tenant) || (room && !nt_id_valid(room)) || !cb ||
      nt_presence_page_args_ok(cursor, limit))
    return NT_EINVAL;
  mem_cb *c = cb_new(CB_MEMBERS, ud);
  if (!c) return NT_ENOMEM;
  const nt_map *set;
  if (room) {
    mem_room *r = nt_map_get(&m->rooms, key, room_key(key, tenant, room));
    set = r ? &r->users : NULL;
  } else {
    set = nt_map_get(&m->tenants, tenant, strlen(tenant));
  }
  size_t it = cursor ? (size_t)strtoull(cursor, NULL, 10) : 0;
  if (snapshot_page(set, &it, limit, &c->members, &c->n)) {
    free(c);
    return NT_ENOMEM;
  }
  if (it) snprintf(c->cursor, sizeof c->cursor, "%zu", it);
  c->total = set ? set->len : 0;
  m->st.ops++;
  c->cb.members = cb;
  enqueue(m, c);
  return 0;
}

/* Queues cb(ud, status) when cb is set; NT_ENOMEM when it cannot. */
static int queue_done(mem_presence *m, nt_presence_done_cb cb, void *ud, int status) {
  if (!cb) return 0;
  mem_cb *c = cb_new(CB_DONE, ud);
  if (!c) return NT_ENOMEM;
  c->cb.done = cb;
  c->status = status;
  enqueue(m, c);
  return 0;
}

static int mem_conn_add(nt_presence *p, const nt_conn_info *in, nt_presence_done_cb cb,
                        void *ud) {
  mem_presence *m = (mem_presence *)p;
  if (m->closing) return NT_ECLOSED;
  if (!in || !nt_id_valid(in->conn_id) || !nt_id_valid(in->tenant) || !nt_id_valid(in->user))
    return NT_EINVAL;
  mem_cb *done = cb ? cb_new(CB_DONE, ud) : NULL;
  mem_conn *c = conn_copy(in);
  void *old = NULL;
  if ((cb && !done) || !c || nt_map_put(&m->conns, in->conn_id, strlen(in->conn_id), c, &old)) {
    free(done);
    free(c);
    return NT_ENOMEM;
  }
  if (old) { /* re-registration of the same connection: do not double-count */
    mem_conn *o = old;
    if (strcmp(o->info.tenant, in->tenant) || strcmp(o->info.user, in->user)) {
      set_add(&m->tenants, o->info.tenant, strlen(o->info.tenant), o->info.user, -1);
      old = NULL;
    }
    free(o);
  }
  if (!old && set_add(&m->tenants, in->tenant, strlen(in->tenant), in->user, 1) < 0) {
    free(nt_map_del(&m->conns, in->conn_id, strlen(in->conn_id)));
    free(done);
    return NT_ENOMEM;
  }
  m->st.ops++;
  if (done) {
    done->cb.done = cb;
    enqueue(m, done);
  }
  return 0;
}

static int mem_conn_remove(nt_presence *p, const char *tenant, const char *conn_id,
                           nt_presence_done_cb cb, void *ud) {
  mem_presence *m = (mem_presence *)p;
  if (m->closing) return NT_ECLOSED;
  if (!nt_id_valid(tenant) || !nt_id_valid(conn_id)) return NT_EINVAL;
  mem_conn *c = nt_map_get(&m->conns, conn_id, strlen(conn_id));
  int rc = queue_done(m, cb, ud, c ? 0 : NT_ENOTFOUND);
  if (rc) return rc;
  if (c) {
    nt_map_del(&m->conns, conn_id, strlen(conn_id));
    set_add(&m->tenants, c->info.tenant, strlen(c->info.tenant), c->info.user, -1);
    free(c);
  }
  m->st.ops++;
  return 0;
}

static int mem_conn_get(nt_presence *p, const char *conn_id, nt_presence_conn_cb cb,
                        void *ud) {
  mem_presence *m = (mem_presence *)p;
  if (m->closing) return NT_ECLOSED;
  if (!nt_id_valid(conn_id) || !cb) return NT_EINVAL;
  mem_conn *c = nt_map_get(&m->conns, conn_id, strlen(conn_id));
  mem_cb *q = cb_new(CB_CONN, ud);
  if (!q || (c && !(q->info = conn_copy(&c->info)))) {
    free(q);
    return NT_ENOMEM;
  }
  m->st.ops++;
  q->cb.conn = cb;
  q->status = c ? 0 : NT_ENOTFOUND;
  enqueue(m, q);
  return 0;
}

static int mem_connected(nt_presence *p) { return !((mem_presence *)p)->closing; }

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

static void presence_closed(uv_handle_t *h) { free(h->data); }

static void mem_destroy(nt_presence *p) {
  mem_presence *m = (mem_presence *)p;
  if (m->closing) return;
  m->closing = 1;
  /* pending callbacks get NT_ECLOSED now (handler events are dropped), the rest of a
   * batch being run up the stack first */
  mem_cb *running = m->running, *queued = m->head;
  m->running = m->head = NULL;
  m->tail = &m->head;
  fail_all(m, running);
  fail_all(m, queued);
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&m->rooms, &it, &k, &v)) room_free(v);
  nt_map_clear(&m->rooms);
  free_sets(&m->tenants);
  it = 0;
  while (nt_map_next(&m->conns, &it, &k, &v)) free(v);
  nt_map_clear(&m->conns);
  uv_idle_stop(&m->idle);
  uv_close((uv_handle_t *)&m->idle, presence_closed);
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

nt_presence *nt_presence_mem_new(uv_loop_t *loop, const nt_presence_handler *h) {
  if (!loop) return NULL;
  mem_presence *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  if (uv_idle_init(loop, &m->idle) != 0) {
    free(m);
    return NULL;
  }
  m->idle.data = m;
  m->tail = &m->head;
  m->base.vt = &mem_vtab;
  if (h) m->base.h = *h;
  return &m->base;
}

/* Queues a handler event of a reap; a failed allocation loses only the report. */
static void queue_offline(mem_presence *m, const char *tenant, const char *room,
                          const char *user) {
  if (!m->base.h.on_offline) return;
  mem_cb *c = cb_new(CB_OFFLINE, NULL);
  const char *v[3] = {tenant, room, user};
  if (!c || !(c->members = copy_strings(v, 3))) {
    free(c);
    return;
  }
  enqueue(m, c);
}

static void queue_lost(mem_presence *m, const nt_conn_info *info) {
  if (!m->base.h.on_conn_lost) return;
  mem_cb *c = cb_new(CB_LOST, NULL);
  if (!c || !(c->info = conn_copy(info))) {
    free(c);
    return;
  }
  enqueue(m, c);
}

/* Removes every registered connection of `node` as a survivor's reap would (see
 * nt_presence.h), queueing on_offline once for each room a user leaves with its last
 * connection, then on_conn_lost for each connection. Returns the number of connections. */
size_t nt_presence_mem_reap_node(nt_presence *p, const char *node) {
  mem_presence *m = (mem_presence *)p;
  if (m->closing || !node) return 0;
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
        queue_offline(m, tenant, sep + 1, u);
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
    queue_lost(m, &c->info);
    nt_map_del(&m->conns, k, strlen(k));
    set_add(&m->tenants, c->info.tenant, strlen(c->info.tenant), c->info.user, -1);
    free(c);
  }
  nt_map_clear(&dead);
  if (n) m->st.reaped_nodes++;
  return n;
}
