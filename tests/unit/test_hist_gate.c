/* test_hist_gate: bounded history reads — at most max_running run, the next ones wait in
 * order up to max_waiting, then are refused; a finished read lets the oldest waiting one
 * run; waiting reads expire after their deadline; a storm larger than both bounds keeps
 * the counts within them throughout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nt_err.h"
#include "nt_hist_gate.h"

static void test_run_wait_refuse(void **state) {
  (void)state;
  nt_hist_gate g;
  nt_hist_gate_init(&g, 2, 3);
  nt_hist_gate_node n[8];
  assert_int_equal(nt_hist_gate_enter(&g, &n[0], 0), NT_HIST_GATE_RUN);
  assert_int_equal(nt_hist_gate_enter(&g, &n[1], 0), NT_HIST_GATE_RUN);
  assert_int_equal(nt_hist_gate_enter(&g, &n[2], 1), NT_HIST_GATE_WAIT);
  assert_int_equal(nt_hist_gate_enter(&g, &n[3], 2), NT_HIST_GATE_WAIT);
  assert_int_equal(nt_hist_gate_enter(&g, &n[4], 3), NT_HIST_GATE_WAIT);
  assert_int_equal(nt_hist_gate_enter(&g, &n[5], 4), NT_EAGAIN); /* both bounds full */
  assert_int_equal(g.running, 2);
  assert_int_equal(g.waiting, 3);
  assert_int_equal(g.refused, 1);
  /* a finished read hands its place to the oldest waiting one, in order */
  assert_ptr_equal(nt_hist_gate_done(&g), &n[2]);
  assert_int_equal(g.running, 2);
  assert_ptr_equal(nt_hist_gate_done(&g), &n[3]);
  /* a new read does not overtake the one still waiting */
  assert_int_equal(nt_hist_gate_enter(&g, &n[6], 5), NT_HIST_GATE_WAIT);
  assert_ptr_equal(nt_hist_gate_done(&g), &n[4]);
  assert_ptr_equal(nt_hist_gate_done(&g), &n[6]);
  assert_null(nt_hist_gate_done(&g)); /* nothing waits: the place is free */
  assert_int_equal(g.running, 1);
  assert_int_equal(nt_hist_gate_enter(&g, &n[7], 6), NT_HIST_GATE_RUN);
  assert_null(nt_hist_gate_done(&g));
  assert_null(nt_hist_gate_done(&g));
  assert_int_equal(g.running, 0);
  assert_null(nt_hist_gate_done(&g)); /* never below zero */
  assert_int_equal(g.running, 0);
  assert_int_equal(g.waited, 4);
}

static void test_expiry_and_close(void **state) {
  (void)state;
  nt_hist_gate g;
  nt_hist_gate_init(&g, 1, 10);
  nt_hist_gate_node n[4];
  assert_int_equal(nt_hist_gate_enter(&g, &n[0], 0), NT_HIST_GATE_RUN);
  assert_int_equal(nt_hist_gate_enter(&g, &n[1], 100), NT_HIST_GATE_WAIT);
  assert_int_equal(nt_hist_gate_enter(&g, &n[2], 200), NT_HIST_GATE_WAIT);
  assert_int_equal(nt_hist_gate_enter(&g, &n[3], 300), NT_HIST_GATE_WAIT);
  assert_null(nt_hist_gate_expired(&g, 1100, 1000)); /* exactly at the deadline: not yet */
  assert_ptr_equal(nt_hist_gate_expired(&g, 1250, 1000), &n[1]);
  assert_ptr_equal(nt_hist_gate_expired(&g, 1250, 1000), &n[2]);
  assert_null(nt_hist_gate_expired(&g, 1250, 1000));
  assert_int_equal(g.expired, 2);
  assert_int_equal(g.waiting, 1);
  assert_int_equal(g.running, 1); /* expiry does not touch the running place */
  assert_ptr_equal(nt_hist_gate_take_all(&g), &n[3]);
  assert_null(n[3].next);
  assert_int_equal(g.waiting, 0);
  assert_null(nt_hist_gate_done(&g));
}

/* 10,000 reads arrive at once at a gate of 64 + 256, finishing one at a time: never more
 * than 64 run or 256 wait, the refused are exactly the rest, and the waiting run in the
 * order they came. */
static void test_storm_stays_bounded(void **state) {
  (void)state;
  enum { N = 10000, RUN = 64, WAIT = 256 };
  static nt_hist_gate_node n[N];
  nt_hist_gate g;
  nt_hist_gate_init(&g, RUN, WAIT);
  size_t run = 0, wait = 0, refused = 0;
  for (size_t i = 0; i < N; i++) {
    int rc = nt_hist_gate_enter(&g, &n[i], i);
    if (rc == NT_HIST_GATE_RUN) run++;
    else if (rc == NT_HIST_GATE_WAIT) wait++;
    else refused++;
    assert_true(g.running <= RUN && g.waiting <= WAIT);
  }
  assert_int_equal(run, RUN);
  assert_int_equal(wait, WAIT);
  assert_int_equal(refused, N - RUN - WAIT);
  size_t next = RUN; /* the first waiting one */
  nt_hist_gate_node *x;
  size_t finished = 0;
  while (g.running) {
    x = nt_hist_gate_done(&g);
    finished++;
    if (x) assert_ptr_equal(x, &n[next++]);
    assert_true(g.running <= RUN && g.waiting <= WAIT);
  }
  assert_int_equal(finished, RUN + WAIT);
  assert_int_equal(next, RUN + WAIT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_run_wait_refuse),
      cmocka_unit_test(test_expiry_and_close),
      cmocka_unit_test(test_storm_stays_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
