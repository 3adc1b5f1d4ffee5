/* itest_presence_redis: Redis presence ("nodes" as presence instances) against a real
 * redis-server: transitions, dedupe, two nodes, a dead node reaped once by racing
 * survivors, recovery of a reaped node, and re-assertion after a Redis restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "nt_err.h"
#include "nt_presence.h"
#include "nt_subject.h"
#include "nt_testsrv.h"

#define MAXEV 1024
#define TTL_S 1.0       /* short timings keep the test fast; the logic is the same */
#define REFRESH_S 0.2

typedef struct ev {
  char tenant[32], room[32], user[32], conn[32];
} ev;

typedef struct pnode {
  nt_presence *p;
  uv_loop_t *loop;
  char id[32];
  ev off[MAXEV], on[MAXEV], lost[MAXEV];
  int noff, non, nlost;
  int states[64], nstates, up;
} pnode;

typedef struct res {
  int done, status, transition, n;
  char members[64][32];
  nt_conn_info info;
  char user[32], node[32], ip[32], ua[64];
} res;

typedef struct fx {
  uv_loop_t loop, loop2; /* loop2: a node whose process "freezes" (crash, partition) */
  nt_testsrv srv;
  char url[64];
  pnode n[3];
  int count;
} fx;

/* ---------------------------------------------------------------- handlers --- */

static void set_ev(ev *e, const char *t, const char *r, const char *u, const char *c) {
  snprintf(e->tenant, sizeof e->tenant, "%s", t ? t : "");
  snprintf(e->room, sizeof e->room, "%s", r ? r : "");
  snprintf(e->user, sizeof e->user, "%s", u ? u : "");
  snprintf(e->conn, sizeof e->conn, "%s", c ? c : "");
}

static void h_offline(void *ud, const char *tenant, const char *room, const char *user) {
  pnode *n = ud;
  if (n->noff < MAXEV) set_ev(&n->off[n->noff++], tenant, room, user, NULL);
}

static void h_online(void *ud, const char *tenant, const char *room, const char *user) {
  pnode *n = ud;
  if (n->non < MAXEV) set_ev(&n->on[n->non++], tenant, room, user, NULL);
}

static void h_lost(void *ud, const nt_conn_info *i) {
  pnode *n = ud;
  if (n->nlost < MAXEV) set_ev(&n->lost[n->nlost++], i->tenant, NULL, i->user, i->conn_id);
}

static void h_state(void *ud, int up) {
  pnode *n = ud;
  n->up = up;
  if (n->nstates < 64) n->states[n->nstates++] = up;
}

static void cb_list(void *ud, int status, int tr, const char *const *m, size_t n) {
  res *r = ud;
  r->done++;
  r->status = status;
  r->transition = tr;
  r->n = 0;
  for (size_t i = 0; i < n && i < 64; i++)
    snprintf(r->members[r->n++], sizeof r->members[0], "%s", m[i]);
}

static void cb_leave(void *ud, int status, int tr) {
  res *r = ud;
  r->done++;
  r->status = status;
  r->transition = tr;
}

static void cb_join(void *ud, int status, const nt_presence_joined *j) {
  cb_list(ud, status, j ? j->transition : 0, j ? j->members : NULL, j ? j->n : 0);
}

static void cb_members(void *ud, int status, const nt_presence_page *pg) {
  cb_list(ud, status, 0, pg ? pg->members : NULL, pg ? pg->n : 0);
}

static void cb_done(void *ud, int status) {
  res *r = ud;
  r->done++;
  r->status = status;
}

static void cb_conn(void *ud, int status, const nt_conn_info *i) {
  res *r = ud;
  r->done++;
  r->status = status;
  if (i) {
    snprintf(r->user, sizeof r->user, "%s", i->user);
    snprintf(r->node, sizeof r->node, "%s", i->node);
    snprintf(r->ip, sizeof r->ip, "%s", i->source_ip);
    snprintf(r->ua, sizeof r->ua, "%s", i->user_agent);
    r->info = *i;
  }
}

/* ---------------------------------------------------------------- loop helpers */

typedef int (*cond_fn)(void *arg);

typedef struct waiter {
  uv_timer_t t;
  cond_fn cond;
  void *arg;
  uint64_t deadline;
  int met, closed;
  uv_loop_t *also; /* run a turn of this loop on every tick too */
} waiter;

/* When set, waiting on one of the fixture's loops also runs the other: both "processes"
 * live. Cleared while a test freezes the node on loop2. */
static uv_loop_t *g_pair[2];

static void waiter_tick(uv_timer_t *t) {
  waiter *w = t->data;
  if (w->also) uv_run(w->also, UV_RUN_NOWAIT);
  if (w->cond && w->cond(w->arg)) w->met = 1;
  if (w->met || uv_now(t->loop) >= w->deadline) uv_stop(t->loop);
}

static void waiter_closed(uv_handle_t *h) { ((waiter *)h->data)->closed = 1; }

/* Runs `loop` until cond holds or timeout_ms passes (cond NULL: just run that long). */
static int run_until(uv_loop_t *loop, cond_fn cond, void *arg, int timeout_ms) {
  waiter w = {.cond = cond, .arg = arg};
  if (g_pair[0]) w.also = loop == g_pair[0] ? g_pair[1] : g_pair[0];
  uv_update_time(loop);
  w.deadline = uv_now(loop) + (uint64_t)timeout_ms;
  uv_timer_init(loop, &w.t);
  w.t.data = &w;
  uv_timer_start(&w.t, waiter_tick, 0, 5);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w.t, waiter_closed);
  while (!w.closed) uv_run(loop, UV_RUN_NOWAIT);
  return w.met;
}

static int res_done(void *arg) { return ((res *)arg)->done > 0; }
static int node_up(void *arg) { return ((pnode *)arg)->up; }
static int node_down(void *arg) { return !((pnode *)arg)->up; }

/* Presence objects finish closing on their own (a graceful disconnect is bounded by
 * their timers), so running the loop to the end is bounded too. */
static void close_loop(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  if (rc != 0) uv_print_all_handles(loop, stderr);
  assert_int_equal(rc, 0);
}

/* ---------------------------------------------------------------- operations - */

static void start_node(fx *f, int i, uv_loop_t *loop, const char *id) {
  pnode *n = &f->n[i];
  memset(n, 0, sizeof *n);
  n->loop = loop;
  snprintf(n->id, sizeof n->id, "%s", id);
  nt_presence_handler h = {h_lost, h_offline, h_state, n, h_online};
  assert_int_equal(nt_presence_redis_new(loop, f->url, "it:", id, TTL_S, REFRESH_S, &h, &n->p),
                   0);
  assert_true(run_until(loop, node_up, n, 5000));
  if (i >= f->count) f->count = i + 1;
}

static res join(pnode *n, const char *room, const char *user, const char *conn) {
  res r = {0};
  assert_int_equal(nt_presence_join(n->p, "t1", room, user, conn, cb_join, &r), 0);
  assert_true(run_until(n->loop, res_done, &r, 3000));
  assert_int_equal(r.status, 0);
  return r;
}

static res leave(pnode *n, const char *room, const char *user, const char *conn) {
  res r = {0};
  assert_int_equal(nt_presence_leave(n->p, "t1", room, user, conn, cb_leave, &r), 0);
  assert_true(run_until(n->loop, res_done, &r, 3000));
  assert_int_equal(r.status, 0);
  return r;
}

static res members(pnode *n, const char *room) {
  res r = {0};
  assert_int_equal(nt_presence_members(n->p, "t1", room, NULL, NT_PRESENCE_PAGE_MAX, cb_members, &r), 0);
  assert_true(run_until(n->loop, res_done, &r, 3000));
  assert_int_equal(r.status, 0);
  return r;
}

static void conn_add(pnode *n, const char *user, const char *conn) {
  res r = {0};
  nt_conn_info in = {conn, "t1", user, n->id, "127.0.0.1", "itest/1", 1000, 2000};
  assert_int_equal(nt_presence_conn_add(n->p, &in, cb_done, &r), 0);
  assert_true(run_until(n->loop, res_done, &r, 3000));
  assert_int_equal(r.status, 0);
}

static int cmpstr(const void *a, const void *b) { return strcmp(a, b); }

/* Members as "a,b,c" (sorted). */
static const char *joined(res *r) {
  static char out[2048];
  qsort(r->members, (size_t)r->n, sizeof r->members[0], cmpstr);
  out[0] = '\0';
  for (int i = 0; i < r->n; i++) {
    if (i) strcat(out, ",");
    strcat(out, r->members[i]);
  }
  return out;
}

static long long redis_int(fx *f, const char *cmd) {
  redisContext *c = redisConnect("127.0.0.1", f->srv.port);
  assert_non_null(c);
  assert_int_equal(c->err, 0);
  redisReply *r = redisCommand(c, cmd);
  assert_non_null(r);
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  redisFree(c);
  return v;
}

typedef struct pager {
  int done, status, has_cursor;
  size_t n, total, max_n;
  char cursor[32];
  unsigned char *seen;
} pager;

static int pager_done(void *ud) { return ((pager *)ud)->done > 0; }

static void cb_page(void *ud, int status, const nt_presence_page *pg) {
  pager *g = ud;
  g->done++;
  g->status = status;
  if (status) return;
  g->n = pg->n;
  g->total = pg->total;
  if (pg->n > g->max_n) g->max_n = pg->n;
  g->has_cursor = pg->cursor != NULL;
  if (pg->cursor) snprintf(g->cursor, sizeof g->cursor, "%s", pg->cursor);
  for (size_t i = 0; i < pg->n; i++)
    if (pg->members[i][0] == 'u') g->seen[atoi(pg->members[i] + 1)] = 1;
}

/* ---------------------------------------------------------------- fixture ---- */

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  uv_loop_init(&f->loop);
  uv_loop_init(&f->loop2);
  if (nt_testsrv_redis_start(&f->srv, 0, 5000)) {
    fprintf(stderr, "cannot start redis-server\n");
    return -1;
  }
  snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d/0", f->srv.port);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  g_pair[0] = g_pair[1] = NULL;
  for (int i = 0; i < f->count; i++)
    if (f->n[i].p) nt_presence_destroy(f->n[i].p);
  close_loop(&f->loop);
  close_loop(&f->loop2);
  nt_testsrv_stop(&f->srv);
  free(f);
  return 0;
}

/* ---------------------------------------------------------------- tests ------ */

/* A tenant of 20,000 online users (written straight into the `online` hash): pages of
 * 200 go through HSCAN — each page about the limit, never the tenant — and together list
 * every user; the last page has no cursor. */
static void test_members_paged_hscan(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  pnode *a = &f->n[0];
  enum { USERS = 20000 };
  char key[NT_SUBJECT_MAX];
  assert_true(nt_key_tenant(key, sizeof key, "it:", "t1", NT_KEY_ONLINE, NULL) > 0);
  redisContext *c = redisConnect("127.0.0.1", f->srv.port);
  assert_non_null(c);
  for (int i = 0; i < USERS; i++) redisAppendCommand(c, "HSET %s u%d 1", key, i);
  for (int i = 0; i < USERS; i++) {
    redisReply *r = NULL;
    assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
    freeReplyObject(r);
  }
  redisFree(c);
  pager g = {0};
  g.seen = calloc(USERS, 1);
  char cursor[32] = "";
  int pages = 0;
  do {
    g.done = 0;
    assert_int_equal(nt_presence_members(a->p, "t1", NULL, cursor[0] ? cursor : NULL, 200,
                                         cb_page, &g), 0);
    assert_true(run_until(a->loop, pager_done, &g, 3000));
    assert_int_equal(g.status, 0);
    assert_int_equal(g.total, USERS);
    snprintf(cursor, sizeof cursor, "%s", g.has_cursor ? g.cursor : "");
    pages++;
  } while (cursor[0] && pages < 1000);
  size_t seen = 0;
  for (int i = 0; i < USERS; i++) seen += g.seen[i];
  assert_int_equal(seen, USERS);
  assert_true(pages >= USERS / 400);  /* pages, not one reply */
  assert_true(g.max_n <= 2 * 200);    /* HSCAN's COUNT is a hint, kept close */
  free(g.seen);
  assert_int_equal(nt_presence_members(a->p, "t1", NULL, "x", 200, cb_page, &g), NT_EINVAL);
}

static void test_transitions_and_dedupe(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  pnode *a = &f->n[0];
  conn_add(a, "u1", "c1");
  conn_add(a, "u1", "c2");
  conn_add(a, "u2", "c3");
  res r = join(a, "r1", "u1", "c1");
  assert_int_equal(r.transition, 1);
  assert_string_equal(joined(&r), "u1");
  r = join(a, "r1", "u1", "c2"); /* second tab: no transition, one member */
  assert_int_equal(r.transition, 0);
  assert_string_equal(joined(&r), "u1");
  r = join(a, "r1", "u1", "c2"); /* repeated join of the same connection is idempotent */
  assert_int_equal(r.transition, 0);
  r = join(a, "r1", "u2", "c3");
  assert_int_equal(r.transition, 1);
  assert_string_equal(joined(&r), "u1,u2");
  r = members(a, NULL);
  assert_string_equal(joined(&r), "u1,u2");
  assert_int_equal(leave(a, "r1", "u1", "c1").transition, 0); /* one tab of two */
  r = members(a, "r1");
  assert_string_equal(joined(&r), "u1,u2");
  assert_int_equal(leave(a, "r1", "u1", "c2").transition, 1);
  assert_int_equal(leave(a, "r1", "u1", "c2").transition, 0); /* not in the room now */
  r = members(a, "r1");
  assert_string_equal(joined(&r), "u2");

  res g = {0};
  assert_int_equal(nt_presence_conn_get(a->p, "c3", cb_conn, &g), 0);
  assert_true(run_until(a->loop, res_done, &g, 3000));
  assert_int_equal(g.status, 0);
  assert_string_equal(g.user, "u2");
  assert_string_equal(g.node, "nodeA");
  assert_string_equal(g.ip, "127.0.0.1");
  assert_string_equal(g.ua, "itest/1");
  assert_int_equal(g.info.connected_at_ms, 1000);

  /* conn_remove drops what the connection still had (here: r1) and reports it */
  res d = {0};
  assert_int_equal(nt_presence_conn_remove(a->p, "t1", "c3", cb_done, &d), 0);
  assert_true(run_until(a->loop, res_done, &d, 3000));
  assert_int_equal(d.status, 0);
  assert_int_equal(a->noff, 1);
  assert_string_equal(a->off[0].user, "u2");
  memset(&g, 0, sizeof g);
  assert_int_equal(nt_presence_conn_get(a->p, "c3", cb_conn, &g), 0);
  assert_true(run_until(a->loop, res_done, &g, 3000));
  assert_int_equal(g.status, NT_ENOTFOUND);
  r = members(a, NULL);
  assert_string_equal(joined(&r), "u1");
  r = members(a, "r1");
  assert_int_equal(r.n, 0);
  assert_int_equal(nt_presence_join(a->p, "t1", "bad.room", "u1", "c1", NULL, NULL), NT_EINVAL);

  /* the script cache is flushed (as after a failover): calls still work */
  redis_int(f, "SCRIPT FLUSH");
  r = join(a, "r9", "u1", "c1");
  assert_int_equal(r.transition, 1);
  assert_int_equal(redis_int(f, "SCRIPT EXISTS 0000000000000000000000000000000000000000"), -1);

  nt_presence_stats st;
  nt_presence_get_stats(a->p, &st);
  assert_true(st.ops >= 12);
  assert_int_equal(st.transitions, 5); /* u1 on, u2 on, u1 off, u2 off, u1 on in r9 */
  assert_int_equal(st.errors, 0);
}

static void test_two_nodes_multi_tab(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  start_node(f, 1, &f->loop, "nodeB");
  pnode *a = &f->n[0], *b = &f->n[1];
  assert_int_equal(join(a, "r1", "u1", "ca").transition, 1);
  assert_int_equal(join(b, "r1", "u1", "cb").transition, 0);
  assert_int_equal(join(b, "r1", "u2", "cb2").transition, 1);
  res r = members(a, "r1");
  assert_string_equal(joined(&r), "u1,u2");
  assert_int_equal(leave(a, "r1", "u1", "ca").transition, 0); /* still online on B */
  r = members(b, "r1");
  assert_string_equal(joined(&r), "u1,u2");
  assert_int_equal(leave(b, "r1", "u1", "cb").transition, 1);
  r = members(a, "r1");
  assert_string_equal(joined(&r), "u2");
}

static int offline_total(void *arg) {
  fx *f = arg;
  return f->n[1].noff + f->n[2].noff;
}

static int lost_total(fx *f) { return f->n[1].nlost + f->n[2].nlost; }

/* A (on its own loop, which stops running: a crash or a frozen process) holds 20 users in
 * 4 rooms; users u0..u4 also have a connection on B. B and C race to reap A. */
static void test_dead_node_reaped_once(void **state) {
  fx *f = *state;
  g_pair[0] = &f->loop, g_pair[1] = &f->loop2;
  start_node(f, 0, &f->loop2, "nodeA");
  start_node(f, 1, &f->loop, "nodeB");
  start_node(f, 2, &f->loop, "nodeC");
  pnode *a = &f->n[0], *b = &f->n[1];
  char user[16], conn[16], room[16];
  for (int i = 0; i < 20; i++) {
    snprintf(user, sizeof user, "u%d", i);
    snprintf(conn, sizeof conn, "a%d", i);
    conn_add(a, user, conn);
    for (int k = 0; k < 2; k++) {
      snprintf(room, sizeof room, "r%d", (i + k) % 4);
      join(a, room, user, conn);
    }
  }
  for (int i = 0; i < 5; i++) { /* u0..u4 also in the same rooms on B */
    snprintf(user, sizeof user, "u%d", i);
    snprintf(conn, sizeof conn, "b%d", i);
    conn_add(b, user, conn);
    for (int k = 0; k < 2; k++) {
      snprintf(room, sizeof room, "r%d", (i + k) % 4);
      join(b, room, user, conn);
    }
  }
  /* A stops (its loop no longer runs); B and C notice within ttl + refresh */
  g_pair[0] = g_pair[1] = NULL;
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  assert_true(run_until(&f->loop, offline_total, f, 5000));
  run_until(&f->loop, NULL, NULL, 1000); /* a second survivor would report by now */
  uint64_t took = uv_now(&f->loop) - t0;
  fprintf(stderr, "reap reported after <= %llu ms\n", (unsigned long long)took);
  assert_int_equal(offline_total(f), 15 * 2); /* u5..u19, two rooms each, once */
  assert_int_equal(lost_total(f), 20);
  for (int w = 1; w <= 2; w++)
    for (int i = 0; i < f->n[w].noff; i++) {
      int u = atoi(f->n[w].off[i].user + 1);
      assert_true(u >= 5);
      for (int x = 1; x <= 2; x++) /* no duplicate anywhere */
        for (int j = 0; j < f->n[x].noff; j++)
          if ((x != w || j != i) && !strcmp(f->n[x].off[j].user, f->n[w].off[i].user))
            assert_string_not_equal(f->n[x].off[j].room, f->n[w].off[i].room);
    }
  nt_presence_stats sb, sc;
  nt_presence_get_stats(f->n[1].p, &sb);
  nt_presence_get_stats(f->n[2].p, &sc);
  assert_int_equal(sb.reaped_nodes + sc.reaped_nodes, 1);
  res r = members(&f->n[2], "r0");
  assert_string_equal(joined(&r), "u0,u3,u4"); /* B's users stay; A's are gone */
  r = members(&f->n[1], NULL);
  assert_string_equal(joined(&r), "u0,u1,u2,u3,u4");
  assert_int_equal(redis_int(f, "EXISTS it:node:tenants:nodeA"), 0);

  /* A comes back (the partition heals): it finds itself reaped, re-asserts everything
   * and reports the users as online again (the cluster was told they left). */
  g_pair[0] = &f->loop, g_pair[1] = &f->loop2; /* both run again */
  run_until(&f->loop, NULL, NULL, 1000);
  assert_int_equal(a->non, 15 * 2); /* exactly what the reap reported offline */
  r = members(&f->n[1], "r0");
  assert_int_equal(r.n, 10); /* A's u0,u3,u4,u7,..,u19 (B's u0,u3,u4 deduped) */
  r = members(&f->n[1], NULL);
  assert_int_equal(r.n, 20);
}

static void test_redis_restart_reasserts(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  pnode *a = &f->n[0];
  conn_add(a, "u1", "c1");
  conn_add(a, "u2", "c2");
  join(a, "r1", "u1", "c1");
  join(a, "r1", "u2", "c2");
  join(a, "r2", "u2", "c2");
  /* c4 joins before it registers: its mirror entry is made without a client address and
   * moves to a larger block when conn_add brings one; c5 shares c4's agent */
  join(a, "r4", "u4", "c4");
  conn_add(a, "u4", "c4");
  conn_add(a, "u5", "c5");
  nt_testsrv_stop(&f->srv);
  assert_true(run_until(&f->loop, node_down, a, 5000));
  /* while Redis is away: operations fail fast, the mirror keeps up */
  res r = {0};
  assert_int_equal(nt_presence_join(a->p, "t1", "r3", "u1", "c1", cb_join, &r), NT_ESTORE);
  assert_int_equal(nt_presence_leave(a->p, "t1", "r2", "u2", "c2", cb_leave, &r), NT_ESTORE);
  nt_conn_info in = {"c3", "t1", "u3", "nodeA", "", "", 0, 0};
  assert_int_equal(nt_presence_conn_add(a->p, &in, cb_done, &r), NT_ESTORE);
  assert_int_equal(nt_presence_join(a->p, "t1", "r1", "u3", "c3", cb_join, &r), NT_ESTORE);
  assert_int_equal(nt_presence_members(a->p, "t1", "r1", NULL, NT_PRESENCE_PAGE_MAX, cb_members, &r), NT_ESTORE);
  assert_int_equal(r.done, 0);
  assert_int_equal(nt_testsrv_restart(&f->srv, 5000), 0); /* empty: --save '' */
  assert_true(run_until(&f->loop, node_up, a, 5000));
  r = members(a, "r1");
  assert_string_equal(joined(&r), "u1,u2,u3");
  r = members(a, "r2");
  assert_int_equal(r.n, 0);
  r = members(a, "r3");
  assert_string_equal(joined(&r), "u1");
  r = members(a, "r4");
  assert_string_equal(joined(&r), "u4");
  r = members(a, NULL);
  assert_string_equal(joined(&r), "u1,u2,u3,u4,u5"); /* u5: connected, in no room */
  for (int i = 0; i < 2; i++) { /* the records came back from the mirror, strings intact */
    res g = {0};
    assert_int_equal(nt_presence_conn_get(a->p, i ? "c5" : "c4", cb_conn, &g), 0);
    assert_true(run_until(a->loop, res_done, &g, 3000));
    assert_int_equal(g.status, 0);
    assert_string_equal(g.user, i ? "u5" : "u4");
    assert_string_equal(g.ip, "127.0.0.1");
    assert_string_equal(g.ua, "itest/1");
  }
  /* Redis lost its data, but nobody saw anyone leave: only the joins made while it was
   * away are news (u1 in r3, u3 in r1), the rest is re-asserted silently. */
  assert_int_equal(a->non, 2);
  for (int i = 0; i < a->non; i++)
    assert_true((!strcmp(a->on[i].room, "r3") && !strcmp(a->on[i].user, "u1")) ||
                (!strcmp(a->on[i].room, "r1") && !strcmp(a->on[i].user, "u3")));
  assert_int_equal(a->noff, 0);
  nt_presence_stats st;
  nt_presence_get_stats(a->p, &st);
  assert_int_equal(st.reconnects, 1);
  assert_true(a->nstates >= 3);
}

/* Redis keeps its data but the connection drops: what changed meanwhile (a leave, a
 * closed connection) is applied on reconnect, with its offline transitions reported. */
static void test_connection_drop_prunes_stale(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  start_node(f, 1, &f->loop, "nodeB");
  pnode *a = &f->n[0];
  conn_add(a, "u1", "c1");
  conn_add(a, "u2", "c2");
  join(a, "r1", "u1", "c1");
  join(a, "r1", "u2", "c2");
  assert_true(redis_int(f, "CLIENT KILL TYPE normal SKIPME yes") >= 2);
  assert_true(run_until(&f->loop, node_down, a, 3000));
  assert_int_equal(nt_presence_leave(a->p, "t1", "r1", "u1", "c1", NULL, NULL), NT_ESTORE);
  assert_int_equal(nt_presence_conn_remove(a->p, "t1", "c2", NULL, NULL), NT_ESTORE);
  assert_true(run_until(&f->loop, node_up, a, 5000));
  run_until(&f->loop, NULL, NULL, 300);
  assert_int_equal(a->noff, 2);
  res r = members(&f->n[1], "r1");
  assert_int_equal(r.n, 0);
  r = members(&f->n[1], NULL);
  assert_string_equal(joined(&r), "u1");
  assert_int_equal(redis_int(f, "EXISTS it:conn:c2"), 0);
  assert_int_equal(redis_int(f, "EXISTS it:conn:c1"), 1);
}

/* A node restarted with the same id removes what its previous run left behind. */
static void test_restart_with_same_id_cleans_up(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop2, "nodeA");
  start_node(f, 1, &f->loop, "nodeB");
  conn_add(&f->n[0], "u1", "c1");
  join(&f->n[0], "r1", "u1", "c1");
  /* the "process" dies: no goodbye. A new one with the same id starts at once. */
  pnode *b = &f->n[1];
  pnode *a2 = &f->n[2];
  start_node(f, 2, &f->loop, "nodeA");
  res r = members(b, "r1");
  assert_int_equal(r.n, 0);
  assert_int_equal(a2->noff, 1);
  assert_int_equal(a2->nlost, 1);
}

static long long authed_int(fx *f, const char *pass, const char *cmd) {
  redisContext *c = redisConnect("127.0.0.1", f->srv.port);
  assert_non_null(c);
  redisReply *r = redisCommand(c, "AUTH %s", pass);
  freeReplyObject(r);
  r = redisCommand(c, cmd);
  long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  if (r) freeReplyObject(r);
  redisFree(c);
  return v;
}

/* redis://:password@host:port/db: AUTH and SELECT after connecting; a wrong password
 * keeps the node retrying (reported down), never crashing. */
static void test_password_and_db(void **state) {
  fx *f = *state;
  redis_int(f, "CONFIG SET requirepass s3cr@t");
  snprintf(f->url, sizeof f->url, "redis://:s3cr%%40t@127.0.0.1:%d/3", f->srv.port);
  start_node(f, 0, &f->loop, "nodeA");
  conn_add(&f->n[0], "u1", "c1");
  assert_int_equal(authed_int(f, "s3cr@t", "EXISTS it:conn:c1"), 0); /* not in db 0 */
  redisContext *c = redisConnect("127.0.0.1", f->srv.port);
  freeReplyObject(redisCommand(c, "AUTH s3cr@t"));
  freeReplyObject(redisCommand(c, "SELECT 3"));
  redisReply *r = redisCommand(c, "EXISTS it:conn:c1");
  assert_int_equal(r->integer, 1);
  freeReplyObject(r);
  redisFree(c);

  pnode *b = &f->n[1];
  memset(b, 0, sizeof *b);
  b->loop = &f->loop;
  nt_presence_handler h = {h_lost, h_offline, h_state, b, h_online};
  char bad[96];
  snprintf(bad, sizeof bad, "redis://:wrong@127.0.0.1:%d", f->srv.port);
  assert_int_equal(nt_presence_redis_new(&f->loop, bad, "it:", "nodeB", TTL_S, REFRESH_S, &h,
                                         &b->p), 0);
  f->count = 2;
  assert_false(run_until(&f->loop, node_up, b, 1500));
  assert_int_equal(nt_presence_members(b->p, "t1", NULL, NULL, NT_PRESENCE_PAGE_MAX, NULL, NULL), NT_EINVAL);
  res m = {0};
  assert_int_equal(nt_presence_members(b->p, "t1", NULL, NULL, NT_PRESENCE_PAGE_MAX, cb_members, &m), NT_ESTORE);
  authed_int(f, "s3cr@t", "CONFIG SET requirepass \"\"");

  nt_presence *bad_url = NULL;
  assert_int_equal(nt_presence_redis_new(&f->loop, "http://x", "it:", "n", 1, 1, &h, &bad_url),
                   NT_EINVAL);
  assert_int_equal(nt_presence_redis_new(&f->loop, "redis://h:99999", "it:", "n", 1, 1, &h,
                                         &bad_url), NT_EINVAL);
  assert_int_equal(nt_presence_redis_new(&f->loop, "redis://h", "it{", "n", 1, 1, &h,
                                         &bad_url), NT_EINVAL);
  assert_null(bad_url);
}

/* Steady state costs one command per refresh, whatever the number of connections. */
static void test_steady_state_commands(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  char user[16], conn[16];
  for (int i = 0; i < 300; i++) {
    snprintf(user, sizeof user, "u%d", i);
    snprintf(conn, sizeof conn, "c%d", i);
    conn_add(&f->n[0], user, conn);
  }
  redis_int(f, "CONFIG RESETSTAT");
  run_until(&f->loop, NULL, NULL, 2000);
  long long calls = 0;
  redisContext *c = redisConnect("127.0.0.1", f->srv.port);
  redisReply *rep = redisCommand(c, "INFO commandstats");
  const char *s = strstr(rep->str, "cmdstat_evalsha:calls=");
  if (s) calls = atoll(s + strlen("cmdstat_evalsha:calls="));
  freeReplyObject(rep);
  redisFree(c);
  fprintf(stderr, "EVALSHA calls in 2 s at 300 connections: %lld\n", calls);
  assert_true(calls >= 5 && calls <= 12); /* 2 s / 0.2 s refresh */
}

/* A storm: 3,000 connections (6,000 operations, past the window) and their joins asked for at once. At most the window
 * (NT_PRESENCE_REDIS_WINDOW) is in flight, the rest waits in order; every callback comes, in the order asked,
 * with the right answer; the liveness heartbeat is not held behind the queue. */
typedef struct order {
  int next, bad, done;
} order;
typedef struct ordered {
  order *o;
  int i;
} ordered;
static void cb_ordered(void *ud, int status, const nt_presence_joined *j) {
  ordered *x = ud;
  if (status != 0 || x->i != x->o->next || !j || !j->transition) x->o->bad++;
  x->o->next = x->i + 1;
  x->o->done++;
}
static void cb_count(void *ud, int status) {
  order *o = ud;
  if (status) o->bad++;
  o->done++;
}
static int storm_done(void *arg) { return ((order *)arg)->done == 2 * 3000; }

static void test_storm_window(void **state) {
  fx *f = *state;
  start_node(f, 0, &f->loop, "nodeA");
  enum { N = 3000 };
  static ordered xs[N];
  static char users[N][16], conns[N][16];
  order o = {0};
  for (int i = 0; i < N; i++) {
    snprintf(users[i], sizeof users[i], "u%d", i);
    snprintf(conns[i], sizeof conns[i], "c%d", i);
    nt_conn_info in = {conns[i], "t1", users[i], "nodeA", "127.0.0.1", "itest/1", 1000, 2000};
    assert_int_equal(nt_presence_conn_add(f->n[0].p, &in, cb_count, &o), 0);
    xs[i] = (ordered){&o, i};
    assert_int_equal(nt_presence_join(f->n[0].p, "t1", "big", users[i], conns[i], cb_ordered,
                                      &xs[i]),
                     0);
  }
  nt_presence_stats st;
  nt_presence_get_stats(f->n[0].p, &st);
  assert_true(st.queued >= 2 * N - NT_PRESENCE_REDIS_WINDOW - 1); /* all but the window wait */
  assert_true(run_until(&f->loop, storm_done, &o, 60000)); /* ASan on a loaded machine */
  assert_int_equal(o.bad, 0);
  nt_presence_get_stats(f->n[0].p, &st);
  assert_int_equal(st.queued, 0);
  assert_true(st.inflight_max <= NT_PRESENCE_REDIS_WINDOW + 1); /* + the heartbeat */
  res r = members(&f->n[0], "big");
  assert_int_equal(r.n, 64 < N ? 64 : N); /* cb_join keeps 64; the count is checked below */
  assert_int_equal(redis_int(f, "HLEN it:{t1}:room:big"), N);
  assert_true(f->n[0].up); /* never taken for a dead Redis */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_transitions_and_dedupe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_members_paged_hscan, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_nodes_multi_tab, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dead_node_reaped_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redis_restart_reasserts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_drop_prunes_stale, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_with_same_id_cleans_up, setup, teardown),
      cmocka_unit_test_setup_teardown(test_password_and_db, setup, teardown),
      cmocka_unit_test_setup_teardown(test_steady_state_commands, setup, teardown),
      cmocka_unit_test_setup_teardown(test_storm_window, setup, teardown),
  };
  if (getenv("NT_TEST_FILTER")) cmocka_set_test_filter(getenv("NT_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
