/* test_drain: the drain's presence hold-back (nt_drain) over the in-memory presence — users
 * who rejoin elsewhere within the window never go offline; the others go offline once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <uv.h>

#include "nt_drain.h"
#include "nt_err.h"
#include "nt_presence.h"

typedef struct result {
  int calls, status, transition;
} result;

static void on_join(void *ud, int status, const nt_presence_joined *j) {
  result *r = ud;
  r->calls++;
  r->status = status;
  r->transition = j ? j->transition : 0;
}

static void on_leave(void *ud, int status, int transition) {
  result *r = ud;
  r->calls++;
  r->status = status;
  r->transition = transition;
}

static void on_done(void *ud, int status) {
  result *r = ud;
  r->calls++;
  r->status = status;
}

static void on_released(void *ud) { (*(int *)ud)++; }

static uv_loop_t loop;

/* Runs the loop until nothing is queued (the memory presence answers on a later turn). */
static void settle(void) { uv_run(&loop, UV_RUN_DEFAULT); }

static int setup(void **state) { return uv_loop_init(&loop); }

static int teardown(void **state) {
  settle();
  assert_int_equal(uv_loop_close(&loop), 0); /* no leaked handle */
  return 0;
}

static nt_presence *mem(void) {
  nt_presence_handler h = {0};
  nt_presence *p = nt_presence_mem_new(&loop, &h);
  assert_non_null(p);
  return p;
}

static void join(nt_presence *p, const char *room, const char *user, const char *conn,
                 int want_transition) {
  result r = {0};
  assert_int_equal(nt_presence_join(p, "t1", room, user, conn, on_join, &r), 0);
  assert_int_equal(r.calls, 0); /* never inside the call */
  settle();
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.transition, want_transition);
}

/* alice rejoins on another node inside the window: no offline; bob does not: offline once. */
static void test_rejoin_within_window(void **state) {
  nt_presence *p = mem();
  join(p, "lobby", "alice", "a-old", 1);
  join(p, "lobby", "bob", "b-old", 1);

  nt_presence *held = nt_drain_hold(p);
  assert_non_null(held);
  assert_true(nt_drain_is_holding(held));
  assert_false(nt_drain_is_holding(p));
  result la = {0}, lb = {0}, ra = {0}, rb = {0};
  assert_int_equal(nt_presence_leave(held, "t1", "lobby", "alice", "a-old", on_leave, &la), 0);
  assert_int_equal(nt_presence_conn_remove(held, "t1", "a-old", on_done, &ra), 0);
  assert_int_equal(nt_presence_leave(held, "t1", "lobby", "bob", "b-old", on_leave, &lb), 0);
  assert_int_equal(nt_presence_conn_remove(held, "t1", "b-old", on_done, &rb), 0);
  assert_int_equal(nt_drain_held(held), 4);
  settle();
  assert_int_equal(la.calls + lb.calls + ra.calls + rb.calls, 0); /* nothing sent yet */

  /* alice reconnects through the load balancer to another node: not a new "online" */
  join(p, "lobby", "alice", "a-new", 0);

  int released = 0;
  nt_drain_release(held, on_released, &released);
  assert_false(nt_drain_is_holding(held));
  assert_int_equal(nt_drain_held(held), 0);
  assert_int_equal(released, 0); /* the store answers later */
  settle();
  assert_int_equal(released, 1);
  assert_int_equal(la.calls, 1);
  assert_int_equal(la.status, 0);
  assert_int_equal(la.transition, 0); /* alice stayed online */
  assert_int_equal(lb.calls, 1);
  assert_int_equal(lb.transition, 1); /* bob went offline, once */
  assert_int_equal(ra.calls, 1);
  assert_int_equal(rb.calls, 1);

  /* after the release, calls pass straight through */
  result l2 = {0};
  assert_int_equal(nt_presence_leave(held, "t1", "lobby", "alice", "a-new", on_leave, &l2), 0);
  settle();
  assert_int_equal(l2.calls, 1);
  assert_int_equal(l2.transition, 1);
  nt_presence_destroy(held); /* destroys the inner store too */
}

/* Released with nothing held: done at once. */
static void test_release_empty(void **state) {
  nt_presence *held = nt_drain_hold(mem());
  int released = 0;
  nt_drain_release(held, on_released, &released);
  assert_int_equal(released, 1);
  nt_presence_destroy(held);
}

/* Destroyed while holding: every queued caller gets one NT_ECLOSED callback, `done` none. */
static void test_destroy_while_holding(void **state) {
  nt_presence *p = mem();
  join(p, "r", "carol", "c1", 1);
  nt_presence *held = nt_drain_hold(p);
  result l = {0}, r = {0};
  assert_int_equal(nt_presence_leave(held, "t1", "r", "carol", "c1", on_leave, &l), 0);
  assert_int_equal(nt_presence_conn_remove(held, "t1", "c1", on_done, &r), 0);
  nt_presence_destroy(held);
  assert_int_equal(l.calls, 1);
  assert_int_equal(l.status, NT_ECLOSED);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, NT_ECLOSED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rejoin_within_window, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_while_holding, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
