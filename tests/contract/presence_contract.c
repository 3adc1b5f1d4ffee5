/* presence_contract: the rules of lib/presence/nt_presence.h, for any implementation —
 * callbacks exactly once and never inside the call, in call order; membership per
 * connection deduplicated by user, so online/offline transitions are reported exactly once;
 * tenants isolated; the connection registry round trip and the tenant's online users;
 * argument errors without callbacks; destroy failing pending calls; statistics. Every case
 * uses a fresh store (the factory's job) and fresh tenant names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nt_contract.h"
#include "nt_err.h"

#define NODE "ct-node"

typedef struct pfx pfx;

typedef struct rec {
  pfx *f;
  int calls, status, transition, order;
  char members[4096]; /* sorted, comma-separated (a listpack of 512 is paged whole) */
  size_t n;
  uint64_t total, version; /* join: members in all, the room's join counter */
  int has_cursor;          /* join: the member list continues */
  char cursor[32];
  char user[32], node[32], ip[48], ua[64], tenant[32];
  int64_t connected_at, last_active;
} rec;

struct pfx {
  uv_loop_t loop;
  nt_presence *p;
  char t[24], t2[24];  /* this case's tenants */
  int in_call, during_call, order;
};

static const nt_ct_presence_factory *F;

#define CALL(f, expr) ((f)->in_call = 1, _ct_rc = (expr), (f)->in_call = 0, _ct_rc)
static int _ct_rc;

/* ---------------------------------------------------------------- callbacks */

static int cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void hit(rec *r, int status) {
  if (r->f->in_call) r->f->during_call++;
  r->calls++;
  r->status = status;
  r->order = ++r->f->order;
}

static void put_members(rec *r, const char *const *m, size_t n) {
  const char **v = malloc((n ? n : 1) * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) v[i] = m[i];
  qsort(v, n, sizeof v[0], cmp);
  r->members[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < n && used < sizeof r->members; i++)
    used += (size_t)snprintf(r->members + used, sizeof r->members - used, "%s%s",
                             i ? "," : "", v[i]);
  r->n = n;
  free(v);
}

static void on_join(void *ud, int status, const nt_presence_joined *j) {
  rec *r = ud;
  hit(r, status);
  r->transition = j ? j->transition : 0;
  put_members(r, j ? j->members : NULL, j ? j->n : 0);
  r->total = j ? j->total : 0;
  r->version = j ? j->version : 0;
  r->has_cursor = j && j->cursor;
  if (r->has_cursor) snprintf(r->cursor, sizeof r->cursor, "%s", j->cursor);
}

static void on_leave(void *ud, int status, int tr) {
  rec *r = ud;
  hit(r, status);
  r->transition = tr;
}

static void on_members(void *ud, int status, const nt_presence_page *pg) {
  rec *r = ud;
  hit(r, status);
  put_members(r, pg ? pg->members : NULL, pg ? pg->n : 0);
}

static void on_done(void *ud, int status) { hit(ud, status); }

static void on_conn(void *ud, int status, const nt_conn_info *i) {
  rec *r = ud;
  hit(r, status);
  if (!i) return;
  snprintf(r->tenant, sizeof r->tenant, "%s", i->tenant);
  snprintf(r->user, sizeof r->user, "%s", i->user);
  snprintf(r->node, sizeof r->node, "%s", i->node);
  snprintf(r->ip, sizeof r->ip, "%s", i->source_ip);
  snprintf(r->ua, sizeof r->ua, "%s", i->user_agent);
  r->connected_at = i->connected_at_ms;
  r->last_active = i->last_active_ms;
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **state) {
  pfx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  unsigned u = nt_ct_unique();
  snprintf(f->t, sizeof f->t, "ct%u", u);
  snprintf(f->t2, sizeof f->t2, "ct%u-b", u);
  nt_presence_handler h = {.ud = f};
  f->p = F->create(F->ctx, &f->loop, &h);
  if (!f->p) fail_msg("%s: cannot create the presence", F->name);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  pfx *f = *state;
  if (f->p) nt_presence_destroy(f->p);
  assert_int_equal(nt_ct_close_loop(&f->loop), 0);
  assert_int_equal(f->during_call, 0); /* no callback inside the call that caused it */
  free(f);
  return 0;
}

static int c_calls(void *ud) { return ((rec *)ud)->calls > 0; }

/* Waits for r's callback, then a little longer: it must come exactly once. */
static void wait_once(pfx *f, rec *r) {
  if (!nt_ct_run_until(&f->loop, c_calls, r, 5000)) fail_msg("%s: no callback", F->name);
  nt_ct_run_until(&f->loop, NULL, NULL, 20);
  assert_int_equal(r->calls, 1);
}

static rec join(pfx *f, const char *t, const char *room, const char *user, const char *conn) {
  rec r = {.f = f};
  assert_int_equal(CALL(f, nt_presence_join(f->p, t, room, user, conn, on_join, &r)), 0);
  assert_int_equal(r.calls, 0); /* never inside the call */
  wait_once(f, &r);
  assert_int_equal(r.status, 0);
  return r;
}

static int leave(pfx *f, const char *t, const char *room, const char *user, const char *conn) {
  rec r = {.f = f};
  assert_int_equal(CALL(f, nt_presence_leave(f->p, t, room, user, conn, on_leave, &r)), 0);
  assert_int_equal(r.calls, 0);
  wait_once(f, &r);
  assert_int_equal(r.status, 0);
  return r.transition;
}

static const char *members(pfx *f, const char *t, const char *room) {
  static rec r;
  memset(&r, 0, sizeof r);
  r.f = f;
  assert_int_equal(CALL(f, nt_presence_members(f->p, t, room, NULL, NT_PRESENCE_PAGE_MAX, on_members, &r)), 0);
  assert_int_equal(r.calls, 0);
  wait_once(f, &r);
  assert_int_equal(r.status, 0);
  return r.members;
}

static void add(pfx *f, const char *t, const char *user, const char *conn) {
  rec r = {.f = f};
  nt_conn_info in = {.conn_id = conn, .tenant = t, .user = user, .node = NODE,
                     .source_ip = "10.0.0.1", .user_agent = "ua/1",
                     .connected_at_ms = 1700000000111, .last_active_ms = 1700000000222};
  assert_int_equal(CALL(f, nt_presence_conn_add(f->p, &in, on_done, &r)), 0);
  assert_int_equal(r.calls, 0);
  wait_once(f, &r);
  assert_int_equal(r.status, 0);
}

static int remove_conn(pfx *f, const char *t, const char *conn) {
  rec r = {.f = f};
  assert_int_equal(CALL(f, nt_presence_conn_remove(f->p, t, conn, on_done, &r)), 0);
  assert_int_equal(r.calls, 0);
  wait_once(f, &r);
  return r.status;
}

/* ---------------------------------------------------------------- cases */

static void test_join_dedupes_by_user(void **state) {
  pfx *f = *state;
  rec r = join(f, f->t, "r1", "u1", "c1");
  assert_int_equal(r.transition, 1);
  assert_string_equal(r.members, "u1");
  r = join(f, f->t, "r1", "u1", "c2"); /* a second tab */
  assert_int_equal(r.transition, 0);
  assert_string_equal(r.members, "u1");
  r = join(f, f->t, "r1", "u1", "c2"); /* the same tab again changes nothing */
  assert_int_equal(r.transition, 0);
  r = join(f, f->t, "r1", "u2", "c3");
  assert_int_equal(r.transition, 1);
  assert_string_equal(r.members, "u1,u2");
  assert_string_equal(members(f, f->t, "r1"), "u1,u2");
  assert_string_equal(members(f, f->t, "other"), "");
}

static void test_leave_transition_exactly_once(void **state) {
  pfx *f = *state;
  join(f, f->t, "r1", "u1", "c1");
  join(f, f->t, "r1", "u1", "c2");
  join(f, f->t, "r1", "u2", "c3");
  assert_int_equal(leave(f, f->t, "r1", "u1", "c1"), 0); /* u1 still has c2 */
  assert_string_equal(members(f, f->t, "r1"), "u1,u2");
  assert_int_equal(leave(f, f->t, "r1", "u1", "c1"), 0); /* c1 is not there any more */
  assert_int_equal(leave(f, f->t, "r1", "u1", "c2"), 1);
  assert_string_equal(members(f, f->t, "r1"), "u2");
  assert_int_equal(leave(f, f->t, "r1", "u1", "c2"), 0); /* offline once, not twice */
  assert_int_equal(leave(f, f->t, "r1", "u2", "c9"), 0); /* never joined */
  assert_int_equal(leave(f, f->t, "r1", "u2", "c3"), 1);
  assert_string_equal(members(f, f->t, "r1"), "");
  assert_int_equal(leave(f, f->t, "nowhere", "u2", "c3"), 0);
  rec r = join(f, f->t, "r1", "u1", "c1"); /* online again after going offline */
  assert_int_equal(r.transition, 1);
}

static void test_rooms_and_tenants_isolated(void **state) {
  pfx *f = *state;
  join(f, f->t, "r1", "u1", "c1");
  rec r = join(f, f->t2, "r1", "u2", "c2");
  assert_int_equal(r.transition, 1);
  assert_string_equal(r.members, "u2");
  r = join(f, f->t, "r2", "u1", "c1"); /* one connection in two rooms: online in each */
  assert_int_equal(r.transition, 1);
  assert_string_equal(members(f, f->t, "r1"), "u1");
  assert_string_equal(members(f, f->t2, "r1"), "u2");
  assert_int_equal(leave(f, f->t, "r2", "u1", "c1"), 1);
  assert_string_equal(members(f, f->t, "r1"), "u1"); /* still in r1 */
}

static void test_registry_round_trip(void **state) {
  pfx *f = *state;
  add(f, f->t, "u1", "c1");
  rec g = {.f = f};
  assert_int_equal(CALL(f, nt_presence_conn_get(f->p, "c1", on_conn, &g)), 0);
  assert_int_equal(g.calls, 0);
  wait_once(f, &g);
  assert_int_equal(g.status, 0);
  assert_string_equal(g.tenant, f->t);
  assert_string_equal(g.user, "u1");
  assert_string_equal(g.node, NODE);
  assert_string_equal(g.ip, "10.0.0.1");
  assert_string_equal(g.ua, "ua/1");
  assert_int_equal(g.connected_at, 1700000000111);
  assert_int_equal(g.last_active, 1700000000222);
  assert_int_equal(remove_conn(f, f->t, "c1"), 0);
  assert_int_equal(remove_conn(f, f->t, "c1"), NT_ENOTFOUND);
  rec gone = {.f = f};
  assert_int_equal(CALL(f, nt_presence_conn_get(f->p, "c1", on_conn, &gone)), 0);
  wait_once(f, &gone);
  assert_int_equal(gone.status, NT_ENOTFOUND);
  rec never = {.f = f};
  assert_int_equal(CALL(f, nt_presence_conn_get(f->p, "c-never", on_conn, &never)), 0);
  wait_once(f, &never);
  assert_int_equal(never.status, NT_ENOTFOUND);
}

static void test_tenant_online_users(void **state) {
  pfx *f = *state;
  add(f, f->t, "u1", "c1");
  add(f, f->t, "u1", "c2");
  add(f, f->t, "u2", "c3");
  add(f, f->t2, "u9", "c4");
  add(f, f->t, "u2", "c3"); /* re-registration does not double-count */
  assert_string_equal(members(f, f->t, NULL), "u1,u2");
  assert_string_equal(members(f, f->t2, NULL), "u9");
  assert_int_equal(remove_conn(f, f->t, "c1"), 0);
  assert_string_equal(members(f, f->t, NULL), "u1,u2"); /* u1 still has c2 */
  assert_int_equal(remove_conn(f, f->t, "c2"), 0);
  assert_string_equal(members(f, f->t, NULL), "u2");
  assert_int_equal(remove_conn(f, f->t, "c3"), 0); /* registered twice, removed once */
  assert_string_equal(members(f, f->t, NULL), "");
}

static void test_callbacks_in_call_order(void **state) {
  pfx *f = *state;
  rec j1 = {.f = f}, j2 = {.f = f}, l1 = {.f = f}, l2 = {.f = f}, m = {.f = f};
  f->in_call = 1;
  assert_int_equal(nt_presence_join(f->p, f->t, "r", "u1", "c1", on_join, &j1), 0);
  assert_int_equal(nt_presence_join(f->p, f->t, "r", "u1", "c2", on_join, &j2), 0);
  assert_int_equal(nt_presence_leave(f->p, f->t, "r", "u1", "c1", on_leave, &l1), 0);
  assert_int_equal(nt_presence_leave(f->p, f->t, "r", "u1", "c2", on_leave, &l2), 0);
  assert_int_equal(nt_presence_members(f->p, f->t, "r", NULL, 10, on_members, &m), 0);
  f->in_call = 0;
  wait_once(f, &m);
  rec *all[] = {&j1, &j2, &l1, &l2, &m};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(all[i]->calls, 1);
    assert_int_equal(all[i]->status, 0);
    assert_int_equal(all[i]->order, i + 1);
  }
  assert_int_equal(j1.transition, 1);
  assert_int_equal(j2.transition, 0);
  assert_int_equal(l1.transition, 0);
  assert_int_equal(l2.transition, 1);
  assert_string_equal(m.members, "");
}

static void test_null_callbacks(void **state) {
  pfx *f = *state;
  nt_conn_info in = {.conn_id = "c1", .tenant = f->t, .user = "u1", .node = NODE,
                     .source_ip = "", .user_agent = ""};
  assert_int_equal(CALL(f, nt_presence_conn_add(f->p, &in, NULL, NULL)), 0);
  assert_int_equal(CALL(f, nt_presence_join(f->p, f->t, "r", "u1", "c1", NULL, NULL)), 0);
  assert_int_equal(CALL(f, nt_presence_join(f->p, f->t, "r", "u2", "c2", NULL, NULL)), 0);
  assert_string_equal(members(f, f->t, "r"), "u1,u2");
  assert_string_equal(members(f, f->t, NULL), "u1");
  assert_int_equal(CALL(f, nt_presence_leave(f->p, f->t, "r", "u2", "c2", NULL, NULL)), 0);
  assert_int_equal(CALL(f, nt_presence_conn_remove(f->p, f->t, "c1", NULL, NULL)), 0);
  assert_string_equal(members(f, f->t, NULL), "");
}

static void test_many_members(void **state) {
  pfx *f = *state;
  rec last = {.f = f};
  for (int i = 0; i < 60; i++) {
    char u[16], c[16];
    snprintf(u, sizeof u, "user%02d", i);
    snprintf(c, sizeof c, "conn%02d", i);
    memset(&last, 0, sizeof last);
    last.f = f;
    assert_int_equal(CALL(f, nt_presence_join(f->p, f->t, "big", u, c, on_join, &last)), 0);
    wait_once(f, &last);
    assert_int_equal(last.transition, 1);
  }
  assert_int_equal(last.n, 60);
  members(f, f->t, "big");
  assert_non_null(strstr(members(f, f->t, "big"), "user00,user01"));
}

/* A page collects users into a set; the test pages through a whole tenant. */
typedef struct pager {
  pfx *f;
  int calls, status;
  size_t n;
  uint64_t total;
  char cursor[32];
  int has_cursor;
  char seen[700];
} pager;

static void on_page(void *ud, int status, const nt_presence_page *pg) {
  pager *g = ud;
  g->calls++;
  g->status = status;
  if (status || !pg) return;
  g->n = pg->n;
  g->total = pg->total;
  g->has_cursor = pg->cursor != NULL;
  if (pg->cursor) snprintf(g->cursor, sizeof g->cursor, "%s", pg->cursor);
  for (size_t i = 0; i < pg->n; i++) g->seen[atoi(pg->members[i] + 1)]++;
}
static int page_done(void *arg) { return ((pager *)arg)->calls > 0; }

/* 250 online users of a tenant in pages of 100: every user at least once and none twice
 * while nothing changes, the total on every page, no cursor after the last; bad page
 * arguments refused. (Redis' HSCAN may give a few more than the limit per page.) */
static void test_members_paged(void **state) {
  pfx *f = *state;
  for (int i = 0; i < 250; i++) {
    char u[16], c[16];
    snprintf(u, sizeof u, "u%d", i);
    snprintf(c, sizeof c, "pc%d", i);
    add(f, f->t, u, c);
  }
  pager g = {.f = f};
  const char *cursor = NULL;
  int pages = 0;
  do {
    g.calls = 0;
    assert_int_equal(
        CALL(f, nt_presence_members(f->p, f->t, NULL, cursor, 100, on_page, &g)), 0);
    assert_int_equal(g.calls, 0); /* never inside the call */
    assert_true(nt_ct_run_until(&f->loop, page_done, &g, 5000));
    assert_int_equal(g.status, 0);
    /* Redis returns a hash of up to 512 fields (a listpack) whole, larger ones in pages of
     * about the limit */
    if (g.n > 150 && g.n > 512) fail_msg("%s: a page of %zu for a limit of 100", F->name, g.n);
    assert_int_equal(g.total, 250);
    cursor = g.has_cursor ? g.cursor : NULL;
    pages++;
  } while (cursor && pages < 20);
  assert_true(pages >= 2 || g.n == 250); /* paged, unless the store gave the whole set */
  for (int i = 0; i < 250; i++)
    if (g.seen[i] != 1) fail_msg("%s: user u%d listed %d times", F->name, i, g.seen[i]);
  const char *badc[] = {"12a", "", "123456789012345678901"};
  for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++)
    assert_int_equal(CALL(f, nt_presence_members(f->p, f->t, NULL, badc[i], 10, on_page, &g)),
                     NT_EINVAL);
  assert_int_equal(CALL(f, nt_presence_members(f->p, f->t, NULL, NULL, 0, on_page, &g)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_presence_members(f->p, f->t, NULL, NULL,
                                               NT_PRESENCE_PAGE_MAX + 1, on_page, &g)),
                   NT_EINVAL);
}

static void join_fast(pfx *f, rec *r, const char *room, int i) {
  char u[16], c[16];
  snprintf(u, sizeof u, "u%d", i);
  snprintf(c, sizeof c, "jc%d", i);
  memset(r, 0, sizeof *r);
  r->f = f;
  assert_int_equal(CALL(f, nt_presence_join(f->p, f->t, room, u, c, on_join, r)), 0);
  assert_true(nt_ct_run_until(&f->loop, c_calls, r, 5000));
  assert_int_equal(r->status, 0);
}

/* A join's answer costs the store O(1) in the room's size and says where the room stands:
 * one bounded page of members, a cursor for the rest, the total, and a version that
 * orders the room's joins (1, 2, 3, ... here: one caller) and restarts once the room is
 * empty (the store keeps nothing of an empty room). */
static void test_join_roster(void **state) {
  pfx *f = *state;
  enum { N = 600 }; /* past Redis' listpack (512): a hash table, paged */
  rec r;
  for (int i = 0; i < N; i++) {
    join_fast(f, &r, "roster", i);
    if (r.version != (uint64_t)i + 1 || r.total != (uint64_t)i + 1)
      fail_msg("%s: join %d: version %llu total %llu", F->name, i,
               (unsigned long long)r.version, (unsigned long long)r.total);
  }
  if (r.n > 150) fail_msg("%s: joined listed %zu of %d members", F->name, r.n, N);
  assert_true(r.has_cursor);
  /* the join's page and the pages after its cursor list every member */
  pager g = {.f = f};
  char list[4200];
  snprintf(list, sizeof list, ",%s,", r.members);
  for (int i = 0; i < N; i++) {
    char u[20];
    snprintf(u, sizeof u, ",u%d,", i);
    if (strstr(list, u)) g.seen[i]++;
  }
  const char *cursor = r.cursor;
  char cur[32];
  for (int pages = 0; cursor && pages < 40; pages++) {
    g.calls = 0;
    assert_int_equal(CALL(f, nt_presence_members(f->p, f->t, "roster", cursor, 100, on_page, &g)), 0);
    assert_true(nt_ct_run_until(&f->loop, page_done, &g, 5000));
    assert_int_equal(g.status, 0);
    assert_int_equal(g.total, N);
    snprintf(cur, sizeof cur, "%s", g.cursor);
    cursor = g.has_cursor ? cur : NULL;
  }
  for (int i = 0; i < N; i++)
    if (!g.seen[i]) fail_msg("%s: u%d in neither the join's page nor the pages after it", F->name, i);
  for (int i = 0; i < N; i++) {
    char u[16], c[16];
    snprintf(u, sizeof u, "u%d", i);
    snprintf(c, sizeof c, "jc%d", i);
    rec l = {.f = f};
    assert_int_equal(CALL(f, nt_presence_leave(f->p, f->t, "roster", u, c, on_leave, &l)), 0);
    assert_true(nt_ct_run_until(&f->loop, c_calls, &l, 5000));
  }
  join_fast(f, &r, "roster", 7);
  assert_int_equal(r.version, 1);
  assert_int_equal(r.total, 1);
  assert_false(r.has_cursor);
}

static void test_invalid_arguments(void **state) {
  pfx *f = *state;
  rec r = {.f = f};
  const char *bad[] = {"", "a.b", "a b", "t*", "{x}", "a:b", "a>b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (CALL(f, nt_presence_join(f->p, f->t, bad[i], "u", "c", on_join, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_join(f->p, bad[i], "r", "u", "c", on_join, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_join(f->p, f->t, "r", bad[i], "c", on_join, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_join(f->p, f->t, "r", "u", bad[i], on_join, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_leave(f->p, f->t, bad[i], "u", "c", on_leave, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_members(f->p, f->t, bad[i], NULL, 10, on_members, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_members(f->p, bad[i], NULL, NULL, 10, on_members, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_conn_remove(f->p, f->t, bad[i], on_done, &r)) != NT_EINVAL ||
        CALL(f, nt_presence_conn_get(f->p, bad[i], on_conn, &r)) != NT_EINVAL)
      fail_msg("%s: id \"%s\" accepted", F->name, bad[i]);
    nt_conn_info in = {.conn_id = bad[i], .tenant = f->t, .user = "u", .node = NODE};
    if (CALL(f, nt_presence_conn_add(f->p, &in, on_done, &r)) != NT_EINVAL)
      fail_msg("%s: conn id \"%s\" accepted", F->name, bad[i]);
  }
  assert_int_equal(CALL(f, nt_presence_members(f->p, f->t, "r", NULL, 10, NULL, NULL)), NT_EINVAL);
  assert_int_equal(CALL(f, nt_presence_conn_get(f->p, "c1", NULL, NULL)), NT_EINVAL);
  assert_int_equal(CALL(f, nt_presence_conn_add(f->p, NULL, on_done, &r)), NT_EINVAL);
  nt_ct_run_until(&f->loop, NULL, NULL, 100);
  assert_int_equal(r.calls, 0); /* an error return means no callback, ever */
}

static void test_destroy_fails_pending(void **state) {
  pfx *f = *state;
  rec j = {.f = f}, m = {.f = f};
  assert_int_equal(CALL(f, nt_presence_join(f->p, f->t, "r", "u1", "c1", on_join, &j)), 0);
  assert_int_equal(CALL(f, nt_presence_members(f->p, f->t, "r", NULL, 10, on_members, &m)), 0);
  nt_presence_destroy(f->p); /* pending callbacks run before destroy returns */
  f->p = NULL;
  assert_int_equal(j.calls, 1);
  assert_int_equal(j.status, NT_ECLOSED);
  assert_int_equal(m.calls, 1);
  assert_int_equal(m.status, NT_ECLOSED);
  assert_true(j.order < m.order);
}

static void test_connected_and_stats(void **state) {
  pfx *f = *state;
  assert_int_equal(nt_presence_connected(f->p), 1);
  nt_presence_stats st0, st;
  nt_presence_get_stats(f->p, &st0);
  join(f, f->t, "r", "u1", "c1");
  join(f, f->t, "r", "u1", "c2");
  leave(f, f->t, "r", "u1", "c1");
  leave(f, f->t, "r", "u1", "c2");
  members(f, f->t, "r");
  nt_presence_get_stats(f->p, &st);
  assert_int_equal(st.ops - st0.ops, 5);
  assert_int_equal(st.transitions - st0.transitions, 2);
  assert_int_equal(st.errors, st0.errors);
}

int nt_ct_presence_run(const nt_ct_presence_factory *f) {
  F = f;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_join_dedupes_by_user, setup, teardown),
      cmocka_unit_test_setup_teardown(test_leave_transition_exactly_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rooms_and_tenants_isolated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_registry_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenant_online_users, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callbacks_in_call_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_null_callbacks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_members, setup, teardown),
      cmocka_unit_test_setup_teardown(test_members_paged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_join_roster, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_fails_pending, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connected_and_stats, setup, teardown),
  };
  return _cmocka_run_group_tests(f->name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}
