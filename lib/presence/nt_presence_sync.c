/* nt_presence_sync: the local mirror of what this node asserted in Redis, its
 * re-assertion after a reconnect, node liveness, and the reaping of dead nodes' entries.
 *
 * The mirror is the node's own truth: operations update it before they are sent, even
 * when Redis is away and they fail with NT_ESTORE, so after any reconnect (or after
 * finding that survivors reaped us) Redis can be made to hold exactly what the mirror
 * says: missing entries re-added, entries of connections that ended meanwhile removed. */
#include <jansson.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_log.h"
#include "nt_presence_redis_int.h"

#define REAP_BATCH "500"     /* connections per reap script call */
#define PRUNE_BATCH 256      /* stale connections per prune call */

/* ---------------------------------------------------------------- mirror ----- */

rp_conn *nt_rp_conn(const rp *p, const char *id) {
  return nt_map_get(&p->conns, id, strlen(id));
}

static const char *name_ref(nt_map *m, const char *s) { return nt_intern(m, s, strlen(s)); }

void nt_rp_mirror_init(rp *p) {
  nt_map_init_borrowed(&p->conns);
  nt_map_init_borrowed(&p->tenants);
  nt_map_init_borrowed(&p->rooms);
  nt_map_init_borrowed(&p->uas);
  p->departed = (nt_map)NT_MAP_INIT; /* keys copied */
}

/* Copies `s` (NULL: "") to `at`; returns the copy. */
static char *put_str(char **at, const char *s) {
  size_t len = strlen(s ? s : "");
  char *r = memcpy(*at, s ? s : "", len + 1);
  *at += len + 1;
  return r;
}

rp_conn *nt_rp_mirror_ensure(rp *p, const char *id, const char *tenant, const char *user,
                             const char *ip, const char *ua) {
  rp_conn *c = nt_rp_conn(p, id);
  if (c) return c;
  size_t il = strlen(id);
  size_t bytes = il + 1 + strlen(user) + 1 + strlen(ip ? ip : "") + 1;
  c = calloc(1, offsetof(rp_conn, id) + bytes);
  if (!c) return NULL;
  char *at = c->id;
  put_str(&at, id);
  put_str(&at, user);
  put_str(&at, ip);
  int first = !nt_map_get(&p->tenants, tenant, strlen(tenant));
  c->tenant = name_ref(&p->tenants, tenant);
  c->ua = c->tenant ? name_ref(&p->uas, ua ? ua : "") : NULL;
  if (!c->ua || nt_map_put(&p->conns, c->id, il, c, NULL)) {
    if (c->tenant) nt_unintern(&p->tenants, c->tenant);
    if (c->ua) nt_unintern(&p->uas, c->ua);
    free(c);
    return NULL;
  }
  /* The tenant set is how survivors find our entries; it only needs the tenant once. */
  if (first && nt_rp_up(p))
    nt_rp_cmd(p, 3, (const char *[]){"SADD", p->k_tenants, tenant}, NULL);
  return c;
}

int nt_rp_mirror_set_client(rp *p, rp_conn **cp, const char *ip, const char *ua) {
  rp_conn *c = *cp;
  ip = ip ? ip : "";
  ua = ua ? ua : "";
  if (strcmp(c->ua, ua)) {
    const char *n = name_ref(&p->uas, ua);
    if (!n) return NT_ENOMEM;
    nt_unintern(&p->uas, c->ua);
    c->ua = n;
  }
  if (!strcmp(rp_conn_ip(c), ip)) return 0;
  /* a new ip: the entry moves to a block of the new size (the map borrows its key) */
  size_t head = (size_t)(rp_conn_ip(c) - c->id), il = strlen(ip);
  rp_conn *n = malloc(offsetof(rp_conn, id) + head + il + 1);
  if (!n) return NT_ENOMEM;
  memcpy(n, c, offsetof(rp_conn, id) + head);
  memcpy(n->id + head, ip, il + 1);
  if (c->rooms == &c->room0) n->rooms = &n->room0;
  nt_map_move(&p->conns, c->id, strlen(c->id), n->id, n);
  free(c);
  *cp = n;
  return 0;
}

int nt_rp_mirror_add_room(rp *p, rp_conn *c, const char *room) {
  for (size_t i = 0; i < c->nrooms; i++)
    if (!strcmp(rp_room_name(c->rooms[i]), room)) return 0;
  if (!c->rooms) { /* the inline slot first: most connections are in one room */
    c->rooms = &c->room0;
    c->caprooms = 1;
  }
  if (c->nrooms == c->caprooms) {
    if (c->caprooms == UINT16_MAX) return NT_ENOMEM;
    uint32_t cap = c->caprooms * 2u > UINT16_MAX ? UINT16_MAX : c->caprooms * 2u;
    int leave_inl = c->rooms == &c->room0;
    rp_room *v = leave_inl ? malloc(cap * sizeof *v) : realloc(c->rooms, cap * sizeof *v);
    if (!v) return NT_ENOMEM;
    if (leave_inl) v[0] = c->room0;
    c->rooms = v;
    c->caprooms = (uint16_t)cap;
  }
  const char *name = name_ref(&p->rooms, room);
  if (!name) return NT_ENOMEM;
  c->rooms[c->nrooms++] = rp_room_make(name, 0);
  return 1;
}

int nt_rp_mirror_del_room(rp *p, rp_conn *c, const char *room) {
  for (size_t i = 0; i < c->nrooms; i++) {
    if (strcmp(rp_room_name(c->rooms[i]), room)) continue;
    int confirmed = rp_room_confirmed(c->rooms[i]);
    nt_unintern(&p->rooms, rp_room_name(c->rooms[i]));
    c->rooms[i] = c->rooms[--c->nrooms];
    return confirmed;
  }
  return 0;
}

static rp_room *find_room(rp_conn *c, const char *room) {
  for (size_t i = 0; c && i < c->nrooms; i++)
    if (!strcmp(rp_room_name(c->rooms[i]), room)) return &c->rooms[i];
  return NULL;
}

void nt_rp_mirror_confirm(rp *p, const char *id, const char *room) {
  rp_room *r = find_room(nt_rp_conn(p, id), room);
  if (r) *r = rp_room_make(rp_room_name(*r), 1);
}

static void conn_free(rp *p, rp_conn *c) {
  for (size_t i = 0; i < c->nrooms; i++) nt_unintern(&p->rooms, rp_room_name(c->rooms[i]));
  if (c->rooms != &c->room0) free(c->rooms);
  nt_unintern(&p->tenants, c->tenant);
  nt_unintern(&p->uas, c->ua);
  free(c);
}

void nt_rp_mirror_drop(rp *p, rp_conn *c) {
  nt_map_del(&p->conns, c->id, strlen(c->id));
  conn_free(p, c);
}

void nt_rp_mirror_free(rp *p) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&p->conns, &it, &k, &v)) {
    nt_map_del(&p->conns, k, strlen(k)); /* the key is in the entry */
    conn_free(p, v);
  }
  nt_map_clear(&p->conns);
  nt_map_clear(&p->departed);
  nt_intern_clear(&p->tenants);
  nt_intern_clear(&p->rooms);
  nt_intern_clear(&p->uas);
}

/* ---------------------------------------------------------------- reports ---- */

static int is_str(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING; }

void nt_rp_report_off(rp *p, const char *tenant, const redisReply *pairs) {
  if (!pairs || pairs->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
    if (!is_str(pairs->element[i]) || !is_str(pairs->element[i + 1])) continue;
    p->st.transitions++;
    if (!p->closing && p->base.h.on_offline)
      p->base.h.on_offline(p->base.h.ud, tenant, pairs->element[i]->str,
                           pairs->element[i + 1]->str);
  }
}

void nt_rp_put_record(rp *p, const rp_conn *c) {
  char k[NT_KEY_MAX], at[24], last[24];
  if (nt_key_conn(k, sizeof k, p->prefix, c->id) < 0) return;
  snprintf(at, sizeof at, "%lld", (long long)c->connected_at_ms);
  snprintf(last, sizeof last, "%lld", (long long)(c->connected_at_ms + c->active_after_ms));
  const char *a[] = {"HSET", k, "tenant", c->tenant, "user", rp_conn_user(c), "node", p->node,
                     "connectedAt", at, "lastActiveAt", last, "sourceIp", rp_conn_ip(c),
                     "userAgent", c->ua};
  nt_rp_cmd(p, 16, a, NULL);
}

/* ---------------------------------------------------------------- departed --- */

/* "tenant\nroom\nuser" (ids never hold a newline); 0, or -1 when too long. */
static int departed_key(char *k, size_t cap, const char *tenant, const char *room,
                        const char *user) {
  int n = snprintf(k, cap, "%s\n%s\n%s", tenant, room, user);
  return n < 0 || (size_t)n >= cap ? -1 : n;
}

void nt_rp_departed_add(rp *p, const char *tenant, const char *room, const char *user) {
  char k[3 * (NT_ID_MAX + 1)];
  int n = departed_key(k, sizeof k, tenant, room, user);
  if (n >= 0 && !nt_map_get(&p->departed, k, (size_t)n))
    nt_map_put(&p->departed, k, (size_t)n, p, NULL); /* out of memory: not announced */
}

void nt_rp_departed_del(rp *p, const char *tenant, const char *room, const char *user) {
  char k[3 * (NT_ID_MAX + 1)];
  int n = p->departed.len ? departed_key(k, sizeof k, tenant, room, user) : -1;
  if (n >= 0) nt_map_del(&p->departed, k, (size_t)n);
}

/* After a re-assertion: a Redis that lost everything (`lost`) never saw the recorded
 * leaves, so they are announced a node ttl later (every live node has reconnected and
 * re-asserted by then; the gone script skips users some connection brought back). Data
 * intact: the re-assertion's own pruning announced them already. */
static void departed_after_sync(rp *p, int lost) {
  if (lost && p->departed.len) {
    p->departed_at = uv_now(p->loop) + p->ttl_ms;
    return;
  }
  p->departed_at = 0;
  nt_map_clear(&p->departed);
}

static void on_gone(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 1) return;
  p->st.transitions++;
  if (!p->closing && p->base.h.on_offline)
    p->base.h.on_offline(p->base.h.ud, op->tenant, op->room, op->id);
}

void nt_rp_departed_tick(rp *p) {
  if (!p->departed_at || uv_now(p->loop) < p->departed_at || !nt_rp_up(p)) return;
  char b[NT_KEY_MAX], ck[NT_KEY_MAX], px[24], k[3 * (NT_ID_MAX + 1)];
  snprintf(px, sizeof px, "%llu", (unsigned long long)(3 * p->ttl_ms > 10000 ? 3 * p->ttl_ms : 10000));
  size_t it = 0, sent = 0;
  const char *key;
  void *v;
  while (nt_map_next(&p->departed, &it, &key, &v)) {
    snprintf(k, sizeof k, "%s", key);
    char *room = strchr(k, '\n'), *user = room ? strchr(room + 1, '\n') : NULL;
    if (!user) continue;
    *room++ = '\0';
    *user++ = '\0';
    rop *op = nt_rp_op_new(p, on_gone);
    if (!op || nt_rp_tkeys(p, k, b, ck) || nt_rp_op_ids(op, k, user, room)) {
      if (op) nt_rp_op_free(op);
      continue;
    }
    const char *a[] = {ck, b, room, user, px};
    if (nt_rp_script(p, op, NT_LUA_GONE, 1, 5, a, NULL) == 0) sent++;
  }
  nt_log_info("announcing leaves made while redis was away", "{s:I}", "leaves",
              (json_int_t)sent);
  p->departed_at = 0;
  nt_map_clear(&p->departed);
}

/* ---------------------------------------------------------------- sync ------- */

static void on_synced(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return;
  nt_rp_report_off(p, op->tenant, r->element[1]);
  rp_conn *c = nt_rp_conn(p, op->id);
  const redisReply *on = r->element[0];
  for (size_t i = 0; on->type == REDIS_REPLY_ARRAY && i < on->elements; i++) {
    if (!is_str(on->element[i])) continue;
    p->st.transitions++;
    /* Report when the cluster was told otherwise (we were reaped) or never heard of it
     * (joined while Redis was away); not when Redis merely lost what everyone knew. */
    const rp_room *room = find_room(c, on->element[i]->str);
    int news = op->ctx || (room && !rp_room_confirmed(*room));
    if (news && !p->closing && p->base.h.on_online)
      p->base.h.on_online(p->base.h.ud, op->tenant, on->element[i]->str, op->room);
  }
  for (size_t i = 0; c && i < c->nrooms; i++) c->rooms[i] = rp_room_make(rp_room_name(c->rooms[i]), 1);
}

static void sync_conn(rp *p, const rp_conn *c, int report_on) {
  char b[NT_KEY_MAX], ck[NT_KEY_MAX];
  if (nt_rp_tkeys(p, c->tenant, b, ck)) return;
  if (c->registered) nt_rp_put_record(p, c);
  size_t n = 6 + c->nrooms;
  const char **a = malloc(n * sizeof *a);
  rop *op = a ? nt_rp_op_new(p, on_synced) : NULL;
  if (!op) {
    free(a);
    return;
  }
  a[0] = ck, a[1] = b, a[2] = p->node, a[3] = c->id, a[4] = rp_conn_user(c);
  a[5] = c->registered ? "1" : "0";
  for (size_t i = 0; i < c->nrooms; i++) a[6 + i] = rp_room_name(c->rooms[i]);
  /* room: the user, for online reports */
  if (nt_rp_op_ids(op, c->tenant, c->id, rp_conn_user(c))) {
    nt_rp_op_free(op);
    free(a);
    return;
  }
  op->ctx = (void *)(intptr_t)report_on;
  nt_rp_script(p, op, NT_LUA_SYNC, 1, (int)n, a, NULL);
  free(a);
}

static void on_pruned(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
  nt_rp_report_off(p, op->tenant, r->element[2]);
}

/* Entries Redis holds for this node in one tenant that the mirror does not have: the
 * connection ended (or left the tenant) while Redis was unreachable. The mirror is read
 * when the index arrives; commands sent after the HKEYS are applied after it, so a
 * connection added meanwhile is in the mirror and one removed meanwhile is gone from
 * Redis already. */
static void on_prune_index(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || p->closing) return;
  char b[NT_KEY_MAX], ck[NT_KEY_MAX], rk[NT_KEY_MAX];
  if (nt_rp_tkeys(p, op->tenant, b, ck)) return;
  const char *a[4 + PRUNE_BATCH];
  size_t n = 0;
  for (size_t i = 0; i <= r->elements; i++) {
    const redisReply *e = i < r->elements ? r->element[i] : NULL;
    if (e && is_str(e)) {
      const rp_conn *c = nt_rp_conn(p, e->str);
      if (c && !strcmp(c->tenant, op->tenant)) continue;
      if (nt_key_conn(rk, sizeof rk, p->prefix, e->str) >= 0)
        nt_rp_cmd(p, 2, (const char *[]){"DEL", rk}, NULL);
      a[4 + n++] = e->str;
    }
    if (n && (n == PRUNE_BATCH || i == r->elements)) {
      a[0] = ck, a[1] = b, a[2] = p->node, a[3] = REAP_BATCH;
      rop *pop = nt_rp_op_new(p, on_pruned);
      if (!pop) return;
      if (nt_rp_op_ids(pop, op->tenant, NULL, NULL)) {
        nt_rp_op_free(pop);
        return;
      }
      nt_rp_script(p, pop, NT_LUA_REAP, 1, (int)(4 + n), a, NULL);
      n = 0;
    }
  }
}

static void on_prune_tenants(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || p->closing) return;
  char k[NT_KEY_MAX];
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i];
    if (!is_str(e) || nt_key_tenant(k, sizeof k, p->prefix, e->str, NT_KEY_NODEIDX, p->node) < 0)
      continue;
    rop *iop = nt_rp_op_new(p, on_prune_index);
    if (!iop) return;
    if (nt_rp_op_ids(iop, e->str, NULL, NULL)) {
      nt_rp_op_free(iop);
      return;
    }
    nt_rp_send(p, iop, 2, (const char *[]){"HKEYS", k}, NULL);
  }
}

void nt_rp_sync(rp *p, int report_on) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(&p->tenants, &it, &k, &v))
    nt_rp_cmd(p, 3, (const char *[]){"SADD", p->k_tenants, k}, NULL);
  it = 0;
  while (nt_map_next(&p->conns, &it, &k, &v)) sync_conn(p, v, report_on);
  rop *op = nt_rp_op_new(p, on_prune_tenants);
  if (op) nt_rp_send(p, op, 2, (const char *[]){"SMEMBERS", p->k_tenants}, NULL);
}

/* ---------------------------------------------------------------- liveness --- */

static void on_heartbeat(rp *p, rop *op, redisReply *r) {
  p->hb_busy = 0;
  if (!r || p->closing) return;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_INTEGER) {
    p->st.errors++;
    return;
  }
  long long st = r->element[0]->integer;
  if (st == 2) { /* a survivor is reaping us: retried on the next tick */
    uint64_t now = uv_now(p->loop);
    if (!p->hb_wait) p->hb_wait_since = now;
    p->hb_wait = 1;
    /* ...unless that survivor died too and nobody is left to take its claim over: end
     * the claim ourselves; the next refresh then finds us reaped and re-asserts. */
    if (now - p->hb_wait_since > p->reclaim_ms) {
      const char *a[] = {p->k_live, p->k_reaping, p->k_reaped, p->node};
      rop *fop = nt_rp_op_new(p, NULL);
      if (fop) nt_rp_script(p, fop, NT_LUA_FINISH, 3, 4, a, NULL);
      p->hb_wait_since = now;
    }
  } else if (p->state == RP_INIT) {
    p->hb_wait = 0;
    /* 1: Redis lost our record (and so presumably everything): online transitions found
     * now are not news to anyone. 0: data intact, transitions are joins made while away.
     * 3: survivors reaped us and told everyone we were offline. */
    nt_rp_sync(p, st != 1);
    departed_after_sync(p, st == 1);
    nt_rp_go_up(p);
  } else if (st == 1 || st == 3) {
    p->hb_wait = 0;
    nt_log_warn("liveness record was missing: re-asserting", "{s:s, s:I}", "reason",
                st == 3 ? "reaped by a survivor" : "lost by redis", "connections",
                (json_int_t)p->conns.len);
    nt_rp_sync(p, st == 3);
    departed_after_sync(p, st == 1);
  } else {
    p->hb_wait = 0;
  }
  const redisReply *claimed = r->element[1];
  for (size_t i = 0; claimed->type == REDIS_REPLY_ARRAY && i < claimed->elements; i++)
    if (claimed->element[i]->type == REDIS_REPLY_STRING)
      nt_rp_reap(p, claimed->element[i]->str);
}

/* One EVALSHA: refresh our score, learn whether we were reaped, claim dead nodes. Claims
 * wait a ttl after each (re)connect so nodes reconnecting after an outage can refresh
 * before anyone judges them. */
void nt_rp_heartbeat(rp *p) {
  if (p->hb_busy || !p->ac || p->closing || (p->state != RP_INIT && p->state != RP_UP)) return;
  uint64_t now = uv_now(p->loop);
  char ttl[24], reclaim[24];
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)p->ttl_ms);
  snprintf(reclaim, sizeof reclaim, "%llu", (unsigned long long)p->reclaim_ms);
  int may_claim = p->state == RP_UP && now - p->up_since >= p->ttl_ms;
  const char *a[] = {p->k_live, p->k_reaping, p->k_reaped, p->node, ttl, reclaim,
                     may_claim ? "1" : "0"};
  rop *op = nt_rp_op_new(p, on_heartbeat);
  if (op) op->urgent = 1; /* past the window: a storm's queue must not delay liveness */
  if (op && nt_rp_script(p, op, NT_LUA_HEARTBEAT, 3, 7, a, NULL) == 0) p->hb_busy = 1;
}

/* ---------------------------------------------------------------- reap ------- */

static void after_self_reap(rp *p, int ok) {
  if (!ok) return; /* connection lost mid-way: redone after the reconnect */
  p->self_reaped = 1;
  nt_rp_heartbeat(p);
}

static void start_reap(rp *p, const char *node, int self, void (*done)(rp *p, int ok));

void nt_rp_self_reap(rp *p) { start_reap(p, p->node, 1, after_self_reap); }

void nt_rp_reap(rp *p, const char *node) { start_reap(p, node, 0, NULL); }

typedef struct reap_job {
  char node[NT_ID_MAX + 1];
  int self;
  void (*done)(rp *p, int ok);
  char **tenants;
  size_t n, i;
  uint64_t lost, off;
} reap_job;

static void job_end(rp *p, reap_job *j, int ok) {
  if (j->done && !p->closing) j->done(p, ok);
  for (size_t i = 0; i < j->n; i++) free(j->tenants[i]);
  free(j->tenants);
  free(j);
}

static void on_reap_finished(rp *p, rop *op, redisReply *r) {
  reap_job *j = op->ctx;
  if (r) {
    if (!j->self) p->st.reaped_nodes++;
    nt_log(j->self && !j->lost ? NT_LOG_DEBUG : NT_LOG_INFO,
           j->self ? "reaped entries of this node's previous run" : "reaped dead node",
           "{s:s, s:I, s:I, s:I}", "dead_node", j->node, "tenants", (json_int_t)j->n,
           "connections", (json_int_t)j->lost, "offline", (json_int_t)j->off);
  }
  job_end(p, j, r != NULL);
}

static void reap_next(rp *p, reap_job *j);

static void on_reap_batch(rp *p, rop *op, redisReply *r) {
  reap_job *j = op->ctx;
  if (!r || p->closing || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
    job_end(p, j, 0); /* the claim stays: a survivor takes it over after reclaim_ms */
    return;
  }
  const redisReply *lost = r->element[1];
  char rk[NT_KEY_MAX];
  for (size_t i = 0; lost->type == REDIS_REPLY_ARRAY && i + 1 < lost->elements; i += 2) {
    if (!is_str(lost->element[i]) || !is_str(lost->element[i + 1])) continue;
    const char *conn = lost->element[i]->str;
    if (nt_key_conn(rk, sizeof rk, p->prefix, conn) >= 0)
      nt_rp_cmd(p, 2, (const char *[]){"DEL", rk}, NULL);
    j->lost++;
    nt_conn_info info = {conn, op->tenant, lost->element[i + 1]->str, j->node, "", "", 0, 0};
    if (p->base.h.on_conn_lost) p->base.h.on_conn_lost(p->base.h.ud, &info);
  }
  uint64_t before = p->st.transitions;
  nt_rp_report_off(p, op->tenant, r->element[2]);
  j->off += p->st.transitions - before;
  if (r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 0) j->i++;
  reap_next(p, j);
}

static void reap_next(rp *p, reap_job *j) {
  char b[NT_KEY_MAX], ck[NT_KEY_MAX];
  while (j->i < j->n && nt_rp_tkeys(p, j->tenants[j->i], b, ck)) j->i++;
  if (j->i < j->n) {
    rop *op = nt_rp_op_new(p, on_reap_batch);
    if (!op) return job_end(p, j, 0);
    op->ctx = j;
    if (nt_rp_op_ids(op, j->tenants[j->i], NULL, NULL)) {
      nt_rp_op_free(op);
      return job_end(p, j, 0);
    }
    const char *a[] = {ck, b, j->node, REAP_BATCH};
    if (nt_rp_script(p, op, NT_LUA_REAP, 1, 4, a, NULL)) job_end(p, j, 0);
    return;
  }
  char k[NT_KEY_MAX];
  if (nt_key_node(k, sizeof k, p->prefix, NT_KEY_TENANTS, j->node) >= 0)
    nt_rp_cmd(p, 2, (const char *[]){"DEL", k}, NULL);
  rop *op = nt_rp_op_new(p, on_reap_finished);
  if (!op) return job_end(p, j, 0);
  op->ctx = j;
  const char *a[] = {p->k_live, p->k_reaping, p->k_reaped, j->node};
  if (nt_rp_script(p, op, NT_LUA_FINISH, 3, 4, a, NULL)) job_end(p, j, 0);
}

static void on_reap_tenants(rp *p, rop *op, redisReply *r) {
  reap_job *j = op->ctx;
  if (!r || p->closing || r->type != REDIS_REPLY_ARRAY) return job_end(p, j, 0);
  if (r->elements && !(j->tenants = calloc(r->elements, sizeof *j->tenants)))
    return job_end(p, j, 0);
  for (size_t i = 0; i < r->elements; i++)
    if (is_str(r->element[i]) && (j->tenants[j->n] = strdup(r->element[i]->str))) j->n++;
  reap_next(p, j);
}

static void start_reap(rp *p, const char *node, int self, void (*done)(rp *p, int ok)) {
  reap_job *j = calloc(1, sizeof *j);
  char k[NT_KEY_MAX];
  if (!j || nt_key_node(k, sizeof k, p->prefix, NT_KEY_TENANTS, node) < 0) {
    free(j);
    if (done) done(p, 0);
    return;
  }
  snprintf(j->node, sizeof j->node, "%s", node);
  j->self = self;
  j->done = done;
  if (self) { /* mark ourselves as being reaped so no survivor starts the same work */
    const char *a[] = {p->k_live, p->k_reaping, p->k_reaped, node};
    rop *cop = nt_rp_op_new(p, NULL);
    if (cop) nt_rp_script(p, cop, NT_LUA_CLAIM_SELF, 3, 4, a, NULL);
  }
  rop *op = nt_rp_op_new(p, on_reap_tenants);
  if (!op) return job_end(p, j, 0);
  op->ctx = j;
  if (nt_rp_send(p, op, 2, (const char *[]){"SMEMBERS", k}, NULL)) job_end(p, j, 0);
}
