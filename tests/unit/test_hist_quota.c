/* test_hist_quota: the per-tenant history budget — charging, refusal at the budget, the
 * sliding window freeing bytes, tenants forgotten once their window is empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "nt_err.h"
#include "nt_hist_quota.h"
#include "nt_history.h"

#define WINDOW 16000 /* ms: slices of 1 s */

static void test_budget_per_tenant(void **state) {
  (void)state;
  nt_hist_quota *q = nt_hist_quota_new(1000, WINDOW);
  assert_non_null(q);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r1", 600, 0), 0);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r2", 400, 10), 0); /* any room */
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r1", 1, 20), NT_ELIMIT);
  assert_int_equal(nt_hist_quota_used(q, "a", 20), 1000);
  /* another tenant has its own budget */
  assert_int_equal(nt_hist_quota_take(q, "natter.room.b.r1", 1000, 20), 0);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.c.r1", 1001, 20), NT_ELIMIT);
  assert_int_equal(nt_hist_quota_tenants(q), 2);
  /* not a room subject */
  assert_int_equal(nt_hist_quota_take(q, "natter.user.a.u1", 1, 20), NT_EINVAL);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a", 1, 20), NT_EINVAL);
  nt_hist_quota_free(q);
}

static void test_window_slides(void **state) {
  (void)state;
  nt_hist_quota *q = nt_hist_quota_new(1000, WINDOW);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 500, 0), 0);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 500, 5000), 0);
  /* a message stored at 0 may still be in the stream until 16 s: still counted */
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 1, WINDOW), NT_ELIMIT);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 1, WINDOW + 999), NT_ELIMIT);
  /* the slice of 0 s has left 17 slices later: its 500 bytes are free again */
  assert_int_equal(nt_hist_quota_used(q, "a", WINDOW + 1000), 500);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 500, WINDOW + 1000), 0);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 1, WINDOW + 1000), NT_ELIMIT);
  /* long after, everything is free */
  assert_int_equal(nt_hist_quota_used(q, "a", 10 * WINDOW), 0);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 1000, 10 * WINDOW), 0);
  nt_hist_quota_free(q);
}

static void test_idle_tenants_forgotten(void **state) {
  (void)state;
  nt_hist_quota *q = nt_hist_quota_new(1000, WINDOW);
  char subject[64];
  for (int i = 0; i < 500; i++) {
    snprintf(subject, sizeof subject, "natter.room.t%d.r", i);
    assert_int_equal(nt_hist_quota_take(q, subject, 10, 0), 0);
  }
  assert_int_equal(nt_hist_quota_tenants(q), 500);
  /* one take a window later sweeps the 500 idle tenants */
  assert_int_equal(nt_hist_quota_take(q, "natter.room.x.r", 10, 3 * WINDOW), 0);
  assert_int_equal(nt_hist_quota_tenants(q), 1);
  nt_hist_quota_free(q);
}

static void test_no_quota_and_message_size(void **state) {
  (void)state;
  nt_hist_quota *q = nt_hist_quota_new(0, WINDOW);
  assert_int_equal(nt_hist_quota_take(q, "natter.room.a.r", 1u << 30, 0), 0);
  assert_int_equal(nt_hist_quota_tenants(q), 0);
  assert_int_equal(nt_hist_over_quota(q, 100, "natter.room.a.r", 100, 0), 0);
  assert_int_equal(nt_hist_over_quota(q, 100, "natter.room.a.r", 101, 0), 1);
  assert_int_equal(nt_hist_over_quota(NULL, 0, "natter.room.a.r", 1u << 30, 0), 0);
  nt_hist_quota_free(q);
  q = nt_hist_quota_new(100, WINDOW);
  assert_int_equal(nt_hist_over_quota(q, 0, "natter.room.a.r", 100, 0), 0);
  assert_int_equal(nt_hist_over_quota(q, 0, "natter.room.a.r", 1, 0), 1);
  nt_hist_quota_free(q);
  nt_hist_cfg cfg = {.max_age_s = 0};
  assert_int_equal(nt_hist_quota_window_ms(&cfg), 86400000u);
  cfg.max_age_s = 2.5;
  assert_int_equal(nt_hist_quota_window_ms(&cfg), 2500);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_budget_per_tenant),
      cmocka_unit_test(test_window_slides),
      cmocka_unit_test(test_idle_tenants_forgotten),
      cmocka_unit_test(test_no_quota_and_message_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
