/* test_presence_mem: what only the in-memory presence has — the reap of a dead node's
 * entries (nt_presence_mem_reap_node), reported on a later loop turn, once per user and
 * room. The rules it shares with Redis are checked by the presence contract suite
 * (tests/contract/presence_contract.c, run by test_contract_mem). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "nt_err.h"
#include "nt_presence.h"

typedef struct fx {
  uv_loop_t loop;
  nt_presence *p;
  char offline[1024]; /* "tenant/room/user;" in report order */
  int noffline, nlost, calls;
  char lost_node[32];
} fx;

static void h_offline(void *ud, const char *tenant, const char *room, const char *user) {
  fx *f = ud;
  f->noffline++;
  char s[128];
  snprintf(s, sizeof s, "%s/%s/%s;", tenant, room, user);
  strcat(f->offline, s);
}

static void h_lost(void *ud, const nt_conn_info *i) {
  fx *f = ud;
  f->nlost++;
  snprintf(f->lost_node, sizeof f->lost_node, "%s", i->node);
}

static void on_any(void *ud, int status) { ((fx *)ud)->calls++; }

static void on_members(void *ud, int status, const nt_presence_page *pg) {
  char *out = ud;
  out[0] = '\0';
  for (size_t i = 0; pg && i < pg->n; i++) {
    if (i) strcat(out, ",");
    strcat(out, pg->members[i]);
  }
}

static void settle(fx *f) { uv_run(&f->loop, UV_RUN_DEFAULT); }

static void add(fx *f, const char *user, const char *conn, const char *node) {
  nt_conn_info in = {.conn_id = conn, .tenant = "t1", .user = user, .node = node};
  assert_int_equal(nt_presence_conn_add(f->p, &in, on_any, f), 0);
}

static void join(fx *f, const char *room, const char *user, const char *conn) {
  assert_int_equal(nt_presence_join(f->p, "t1", room, user, conn, NULL, NULL), 0);
}

static const char *members(fx *f, const char *room) {
  static char out[256];
  assert_int_equal(nt_presence_members(f->p, "t1", room, NULL, NT_PRESENCE_PAGE_MAX, on_members, out), 0);
  settle(f);
  return out;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  nt_presence_handler h = {.on_conn_lost = h_lost, .on_offline = h_offline, .ud = f};
  f->p = nt_presence_mem_new(&f->loop, &h);
  assert_non_null(f->p);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  nt_presence_destroy(f->p);
  settle(f);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no leaked handle */
  free(f);
  return 0;
}

/* Node A dies: u1 (tabs on A and B) stays online, u2 (A only) goes offline in both of its
 * rooms, u3 (B only) is untouched — each report exactly once, after the call. */
static void test_reap_dead_node(void **state) {
  fx *f = *state;
  add(f, "u1", "a1", "A");
  add(f, "u1", "b1", "B");
  add(f, "u2", "a2", "A");
  add(f, "u3", "b3", "B");
  join(f, "r1", "u1", "a1");
  join(f, "r1", "u1", "b1");
  join(f, "r1", "u2", "a2");
  join(f, "r2", "u2", "a2");
  join(f, "r2", "u3", "b3");
  settle(f);
  assert_int_equal(f->calls, 4);
  assert_int_equal(nt_presence_mem_reap_node(f->p, "A"), 2);
  assert_int_equal(f->nlost + f->noffline, 0); /* never inside the call */
  settle(f);
  assert_int_equal(f->nlost, 2);
  assert_string_equal(f->lost_node, "A");
  assert_int_equal(f->noffline, 2);
  assert_non_null(strstr(f->offline, "t1/r1/u2;"));
  assert_non_null(strstr(f->offline, "t1/r2/u2;"));
  assert_null(strstr(f->offline, "u1"));
  assert_string_equal(members(f, "r1"), "u1");
  assert_string_equal(members(f, "r2"), "u3");
  /* a second reap (another survivor) finds nothing */
  assert_int_equal(nt_presence_mem_reap_node(f->p, "A"), 0);
  settle(f);
  assert_int_equal(f->noffline, 2);
  nt_presence_stats st;
  nt_presence_get_stats(f->p, &st);
  assert_int_equal(st.reaped_nodes, 1);
}

/* Reap reports still queued when the store is destroyed are dropped, not delivered. */
static void test_destroy_drops_reap_reports(void **state) {
  fx *f = *state;
  add(f, "u1", "a1", "A");
  join(f, "r1", "u1", "a1");
  settle(f);
  assert_int_equal(nt_presence_mem_reap_node(f->p, "A"), 1);
  nt_presence_destroy(f->p);
  f->p = nt_presence_mem_new(&f->loop, NULL); /* for teardown */
  settle(f);
  assert_int_equal(f->nlost + f->noffline, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_reap_dead_node, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_drops_reap_reports, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
