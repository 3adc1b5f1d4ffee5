/* test_presence_mem: presence transition rules on the in-memory implementation —
 * multi-tab dedupe, leaving one tab of two, tenant members, registry, reap of a dead
 * node's entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nt_err.h"
#include "nt_presence.h"

typedef struct rec {
  int calls, status, transition;
  char members[512];   /* sorted, comma-separated */
  char offline[1024];  /* "room/user;" in report order */
  int noffline, nlost;
  nt_conn_info info;
  char user[32], node[32], ip[32], ua[32];
} rec;

static int cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void put_members(rec *r, const char *const *m, size_t n) {
  const char *v[64];
  for (size_t i = 0; i < n && i < 64; i++) v[i] = m[i];
  qsort(v, n, sizeof v[0], cmp);
  r->members[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(r->members, ",");
    strcat(r->members, v[i]);
  }
}

static void on_join(void *ud, int status, int tr, const char *const *m, size_t n) {
  rec *r = ud;
  r->calls++;
  r->status = status;
  r->transition = tr;
  put_members(r, m, n);
}

static void on_leave(void *ud, int status, int tr) {
  rec *r = ud;
  r->calls++;
  r->status = status;
  r->transition = tr;
}

static void on_members(void *ud, int status, const nt_presence_page *pg) {
  on_join(ud, status, 0, pg ? pg->members : NULL, pg ? pg->n : 0);
}

static void on_done(void *ud, int status) {
  rec *r = ud;
  r->calls++;
  r->status = status;
}

static void on_conn(void *ud, int status, const nt_conn_info *i) {
  rec *r = ud;
  r->calls++;
  r->status = status;
  if (i) {
    snprintf(r->user, sizeof r->user, "%s", i->user);
    snprintf(r->node, sizeof r->node, "%s", i->node);
    snprintf(r->ip, sizeof r->ip, "%s", i->source_ip);
    snprintf(r->ua, sizeof r->ua, "%s", i->user_agent);
    r->info = *i;
  }
}

static void h_offline(void *ud, const char *tenant, const char *room, const char *user) {
  rec *r = ud;
  r->noffline++;
  char s[128];
  snprintf(s, sizeof s, "%s/%s/%s;", tenant, room, user);
  strcat(r->offline, s);
}

static void h_lost(void *ud, const nt_conn_info *i) { ((rec *)ud)->nlost++; }

/* ---------------------------------------------------------------- helpers ---- */

static rec join(nt_presence *p, const char *t, const char *room, const char *user,
                const char *conn) {
  rec r = {0};
  assert_int_equal(nt_presence_join(p, t, room, user, conn, on_join, &r), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  return r;
}

static int leave(nt_presence *p, const char *t, const char *room, const char *user,
                 const char *conn) {
  rec r = {0};
  assert_int_equal(nt_presence_leave(p, t, room, user, conn, on_leave, &r), 0);
  assert_int_equal(r.calls, 1);
  return r.transition;
}

static const char *members(nt_presence *p, const char *t, const char *room) {
  static rec r;
  memset(&r, 0, sizeof r);
  assert_int_equal(nt_presence_members(p, t, room, NULL, NT_PRESENCE_PAGE_MAX, on_members, &r), 0);
  assert_int_equal(r.calls, 1);
  return r.members;
}

static void add(nt_presence *p, const char *t, const char *user, const char *conn,
                const char *node) {
  rec r = {0};
  nt_conn_info in = {conn, t, user, node, "10.0.0.1", "ua/1", 111, 222};
  assert_int_equal(nt_presence_conn_add(p, &in, on_done, &r), 0);
  assert_int_equal(r.status, 0);
}

static int setup(void **state) {
  static rec handler_rec;
  memset(&handler_rec, 0, sizeof handler_rec);
  nt_presence_handler h = {h_lost, h_offline, NULL, &handler_rec, NULL};
  nt_presence *p = nt_presence_mem_new(&h);
  assert_non_null(p);
  *state = p;
  return 0;
}

static int teardown(void **state) {
  nt_presence_destroy(*state);
  return 0;
}

static rec *handler_rec(nt_presence *p) { return p->h.ud; }

/* ---------------------------------------------------------------- tests ------ */

static void test_multi_tab_dedupe(void **state) {
  nt_presence *p = *state;
  rec r = join(p, "t1", "r1", "u1", "c1");
  assert_int_equal(r.transition, 1);
  assert_string_equal(r.members, "u1");
  r = join(p, "t1", "r1", "u1", "c2"); /* second tab */
  assert_int_equal(r.transition, 0);
  assert_string_equal(r.members, "u1");
  r = join(p, "t1", "r1", "u1", "c2"); /* the same tab again changes nothing */
  assert_int_equal(r.transition, 0);
  r = join(p, "t1", "r1", "u2", "c3");
  assert_int_equal(r.transition, 1);
  assert_string_equal(r.members, "u1,u2");
  assert_string_equal(members(p, "t1", "r1"), "u1,u2");
}

static void test_leave_one_tab_of_two(void **state) {
  nt_presence *p = *state;
  join(p, "t1", "r1", "u1", "c1");
  join(p, "t1", "r1", "u1", "c2");
  join(p, "t1", "r1", "u2", "c3");
  assert_int_equal(leave(p, "t1", "r1", "u1", "c1"), 0);
  assert_string_equal(members(p, "t1", "r1"), "u1,u2");
  assert_int_equal(leave(p, "t1", "r1", "u1", "c1"), 0); /* c1 is not there any more */
  assert_string_equal(members(p, "t1", "r1"), "u1,u2");
  assert_int_equal(leave(p, "t1", "r1", "u1", "c2"), 1);
  assert_string_equal(members(p, "t1", "r1"), "u2");
  assert_int_equal(leave(p, "t1", "r1", "u2", "c9"), 0); /* never joined */
  assert_int_equal(leave(p, "t1", "r1", "u2", "c3"), 1);
  assert_string_equal(members(p, "t1", "r1"), "");
  assert_int_equal(leave(p, "t1", "nowhere", "u2", "c3"), 0);
  nt_presence_stats st;
  nt_presence_get_stats(p, &st);
  assert_int_equal(st.transitions, 4);
  assert_int_equal(st.ops, 3 + 6 + 4); /* joins, leaves, members */
}

static void test_tenants_isolated(void **state) {
  nt_presence *p = *state;
  join(p, "t1", "r1", "u1", "c1");
  rec r = join(p, "t2", "r1", "u2", "c2");
  assert_int_equal(r.transition, 1);
  assert_string_equal(r.members, "u2");
  assert_string_equal(members(p, "t1", "r1"), "u1");
}

static void test_tenant_members_and_registry(void **state) {
  nt_presence *p = *state;
  add(p, "t1", "u1", "c1", "A");
  add(p, "t1", "u1", "c2", "B");
  add(p, "t1", "u2", "c3", "A");
  add(p, "t2", "u9", "c4", "A");
  add(p, "t1", "u1", "c1", "A"); /* re-registration does not double-count */
  assert_string_equal(members(p, "t1", NULL), "u1,u2");
  rec g = {0};
  assert_int_equal(nt_presence_conn_get(p, "c3", on_conn, &g), 0);
  assert_int_equal(g.status, 0);
  assert_string_equal(g.user, "u2");
  assert_string_equal(g.node, "A");
  assert_string_equal(g.ip, "10.0.0.1");
  assert_string_equal(g.ua, "ua/1");
  assert_int_equal(g.info.connected_at_ms, 111);
  assert_int_equal(g.info.last_active_ms, 222);
  rec d = {0};
  assert_int_equal(nt_presence_conn_remove(p, "t1", "c1", on_done, &d), 0);
  assert_int_equal(d.status, 0);
  assert_string_equal(members(p, "t1", NULL), "u1,u2"); /* u1 still has c2 */
  assert_int_equal(nt_presence_conn_remove(p, "t1", "c2", on_done, &d), 0);
  assert_string_equal(members(p, "t1", NULL), "u2");
  assert_int_equal(nt_presence_conn_remove(p, "t1", "c2", on_done, &d), 0);
  assert_int_equal(d.status, NT_ENOTFOUND);
  memset(&g, 0, sizeof g);
  assert_int_equal(nt_presence_conn_get(p, "c1", on_conn, &g), 0);
  assert_int_equal(g.status, NT_ENOTFOUND);
}

static void test_invalid_ids(void **state) {
  nt_presence *p = *state;
  assert_int_equal(nt_presence_join(p, "t1", "a.b", "u1", "c1", NULL, NULL), NT_EINVAL);
  assert_int_equal(nt_presence_join(p, "t1", "r1", "", "c1", NULL, NULL), NT_EINVAL);
  assert_int_equal(nt_presence_join(p, "t*", "r1", "u1", "c1", NULL, NULL), NT_EINVAL);
  assert_int_equal(nt_presence_leave(p, "t1", "r 1", "u1", "c1", NULL, NULL), NT_EINVAL);
  assert_int_equal(nt_presence_members(p, "t1", "{r}", NULL, 10, on_members, NULL), NT_EINVAL);
}

/* A page collects users into a set; the test pages through the whole tenant. */
typedef struct pager {
  int calls, status;
  size_t n, total;
  char cursor[32];
  int has_cursor;
  char seen[300];
} pager;

static void on_page(void *ud, int status, const nt_presence_page *pg) {
  pager *g = ud;
  g->calls++;
  g->status = status;
  if (status) return;
  g->n = pg->n;
  g->total = pg->total;
  g->has_cursor = pg->cursor != NULL;
  if (pg->cursor) snprintf(g->cursor, sizeof g->cursor, "%s", pg->cursor);
  for (size_t i = 0; i < pg->n; i++) g->seen[atoi(pg->members[i] + 1)]++;
}

/* 250 online users in pages of 100: three pages, each user exactly once (nothing changes
 * meanwhile), the total on every page, no cursor after the last; bad arguments refused. */
static void test_members_paged(void **state) {
  nt_presence *p = *state;
  char user[16], conn[16];
  for (int i = 0; i < 250; i++) {
    snprintf(user, sizeof user, "u%d", i);
    snprintf(conn, sizeof conn, "c%d", i);
    add(p, "big", user, conn, "A");
  }
  pager g = {0};
  const char *cursor = NULL;
  int pages = 0;
  do {
    g.calls = 0;
    assert_int_equal(nt_presence_members(p, "big", NULL, cursor, 100, on_page, &g), 0);
    assert_int_equal(g.calls, 1);
    assert_true(g.n <= 100);
    assert_int_equal(g.total, 250);
    cursor = g.has_cursor ? g.cursor : NULL;
    pages++;
  } while (cursor && pages < 10);
  assert_int_equal(pages, 3);
  for (int i = 0; i < 250; i++) assert_int_equal(g.seen[i], 1);
  assert_int_equal(nt_presence_members(p, "big", NULL, NULL, 0, on_page, &g), NT_EINVAL);
  assert_int_equal(nt_presence_members(p, "big", NULL, NULL, NT_PRESENCE_PAGE_MAX + 1,
                                       on_page, &g), NT_EINVAL);
  assert_int_equal(nt_presence_members(p, "big", NULL, "12a", 10, on_page, &g), NT_EINVAL);
  assert_int_equal(nt_presence_members(p, "big", NULL, "", 10, on_page, &g), NT_EINVAL);
  assert_int_equal(nt_presence_members(p, "big", NULL, "123456789012345678901", 10, on_page,
                                       &g), NT_EINVAL);
  /* a cursor past the end is an empty last page */
  g = (pager){0};
  assert_int_equal(nt_presence_members(p, "big", NULL, "99999999", 10, on_page, &g), 0);
  assert_int_equal(g.n, 0);
  assert_false(g.has_cursor);
}

/* Node A dies: u1 (tabs on A and B) stays online, u2 (A only) goes offline in both of its
 * rooms, u3 (B only) is untouched — each report exactly once. */
static void test_reap_dead_node(void **state) {
  nt_presence *p = *state;
  rec *h = handler_rec(p);
  add(p, "t1", "u1", "a1", "A");
  add(p, "t1", "u1", "b1", "B");
  add(p, "t1", "u2", "a2", "A");
  add(p, "t1", "u3", "b3", "B");
  join(p, "t1", "r1", "u1", "a1");
  join(p, "t1", "r1", "u1", "b1");
  join(p, "t1", "r1", "u2", "a2");
  join(p, "t1", "r2", "u2", "a2");
  join(p, "t1", "r2", "u3", "b3");
  assert_int_equal(nt_presence_mem_reap_node(p, "A"), 2);
  assert_int_equal(h->nlost, 2);
  assert_int_equal(h->noffline, 2);
  assert_non_null(strstr(h->offline, "t1/r1/u2;"));
  assert_non_null(strstr(h->offline, "t1/r2/u2;"));
  assert_null(strstr(h->offline, "u1"));
  assert_string_equal(members(p, "t1", "r1"), "u1");
  assert_string_equal(members(p, "t1", "r2"), "u3");
  assert_string_equal(members(p, "t1", NULL), "u1,u3");
  /* a second reap (another survivor) finds nothing */
  assert_int_equal(nt_presence_mem_reap_node(p, "A"), 0);
  assert_int_equal(h->noffline, 2);
  nt_presence_stats st;
  nt_presence_get_stats(p, &st);
  assert_int_equal(st.reaped_nodes, 1);
  /* the survivor's user leaves normally afterwards */
  assert_int_equal(leave(p, "t1", "r1", "u1", "b1"), 1);
  assert_string_equal(members(p, "t1", "r1"), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_multi_tab_dedupe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_leave_one_tab_of_two, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenants_isolated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenant_members_and_registry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_ids, setup, teardown),
      cmocka_unit_test_setup_teardown(test_members_paged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reap_dead_node, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
