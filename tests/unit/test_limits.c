/* test_limits: the per-connection token bucket and the rejection window (nt_limits.c),
 * with explicit clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_config.h"

/* HS256 wants 32 bytes at least (nt_config_validate) */
#define GOOD_SECRET "unit-test-secret-0123456789abcdef0123"
#include "nt_limits.h"

static int take_n(nt_ratelimit *rl, uint64_t now, uint32_t rate, uint32_t burst, int n) {
  int ok = 0;
  for (int i = 0; i < n; i++) ok += nt_ratelimit_take(rl, now, rate, burst);
  return ok;
}

static void test_burst_then_rate(void **state) {
  nt_ratelimit rl;
  memset(&rl, 0, sizeof rl);
  /* a new bucket is full: the burst passes at once, then nothing */
  assert_int_equal(take_n(&rl, 1000, 10, 5, 8), 5);
  /* 10 tokens per second: one every 100 ms */
  assert_int_equal(take_n(&rl, 1099, 10, 5, 3), 0);
  assert_int_equal(take_n(&rl, 1100, 10, 5, 3), 1);
  assert_int_equal(take_n(&rl, 1350, 10, 5, 3), 2); /* 250 ms: 2.5 tokens */
  assert_int_equal(take_n(&rl, 1400, 10, 5, 3), 1); /* the half token was kept */
  /* never more than the burst, however long the pause */
  assert_int_equal(take_n(&rl, 1000000, 10, 5, 100), 5);
}

static void test_zero_rate_is_unlimited_and_zero_burst_is_rate(void **state) {
  nt_ratelimit rl;
  memset(&rl, 0, sizeof rl);
  assert_int_equal(take_n(&rl, 5, 0, 0, 10000), 10000);
  memset(&rl, 0, sizeof rl);
  assert_int_equal(take_n(&rl, 5, 3, 0, 10), 3);
}

static void test_clock_going_back_and_lowered_limits(void **state) {
  nt_ratelimit rl;
  memset(&rl, 0, sizeof rl);
  assert_int_equal(take_n(&rl, 5000, 1, 2, 2), 2);
  assert_int_equal(take_n(&rl, 4000, 1, 2, 1), 0); /* no refill from a clock going back */
  assert_int_equal(take_n(&rl, 9000, 1, 2, 5), 2);
  memset(&rl, 0, sizeof rl);
  assert_int_equal(take_n(&rl, 0, 100, 100, 1), 1); /* 99 left */
  assert_int_equal(take_n(&rl, 0, 100, 3, 10), 3);  /* a smaller burst caps what is left */
}

static void test_huge_values_do_not_overflow(void **state) {
  nt_ratelimit rl;
  memset(&rl, 0, sizeof rl);
  assert_int_equal(take_n(&rl, 1, 1000000, 1000000, 10), 10);
  assert_int_equal(take_n(&rl, UINT64_MAX / 2, 1000000, 1000000, 10), 10);
  assert_true(rl.tokens <= (uint64_t)1000000 * 1000);
}

static void test_strikes_close_after_n_within_window(void **state) {
  nt_ratelimit rl;
  memset(&rl, 0, sizeof rl);
  assert_int_equal(nt_ratelimit_strike(&rl, 1000, 3), 0);
  assert_int_equal(nt_ratelimit_strike(&rl, 2000, 3), 0);
  assert_int_equal(nt_ratelimit_strike(&rl, 3000, 3), 1);
  /* a new window starts NT_RATE_WINDOW_MS after the first rejection of the last one */
  memset(&rl, 0, sizeof rl);
  assert_int_equal(nt_ratelimit_strike(&rl, 1000, 3), 0);
  assert_int_equal(nt_ratelimit_strike(&rl, 2000, 3), 0);
  assert_int_equal(nt_ratelimit_strike(&rl, 1000 + NT_RATE_WINDOW_MS, 3), 0);
  assert_int_equal(nt_ratelimit_strike(&rl, 1001 + NT_RATE_WINDOW_MS, 3), 0);
  assert_int_equal(nt_ratelimit_strike(&rl, 1002 + NT_RATE_WINDOW_MS, 3), 1);
  /* 0: never */
  memset(&rl, 0, sizeof rl);
  for (int i = 0; i < 1000; i++) assert_int_equal(nt_ratelimit_strike(&rl, 7, 0), 0);
}

/* ---- the flags (nt_config.c) ---- */

static int parse(nt_config *cfg, const char *const *extra) {
  const char *argv[32] = {"natter-node", "--jwt-secret", GOOD_SECRET};
  int argc = 3;
  for (const char *const *a = extra; a && *a; a++) argv[argc++] = *a;
  FILE *null = fopen("/dev/null", "w");
  int r = nt_config_parse(cfg, argc, (char **)argv, null, null);
  if (r == 0) r = nt_config_validate(cfg, null);
  fclose(null);
  return r;
}

static void test_flag_defaults(void **state) {
  nt_config cfg;
  assert_int_equal(parse(&cfg, NULL), 0);
  assert_int_equal(cfg.rate_limit, 100);
  assert_int_equal(cfg.rate_burst, 200);
  assert_int_equal(cfg.rate_close_after, 20);
  assert_int_equal(cfg.max_rooms_per_conn, 128);
  assert_int_equal(cfg.presence_max_members, 1000);
  assert_int_equal(cfg.max_conns_per_user, 0);
  assert_int_equal(cfg.max_header_bytes, 16384);
  assert_true(cfg.handshake_timeout_s == 10.0);
  nt_config_free(&cfg);
}

static void test_flag_values_and_environment(void **state) {
  nt_config cfg;
  setenv("NATTER_RATE_LIMIT", "7", 1);
  const char *a[] = {"--rate-burst", "9", "--max-header-bytes", "4k", "--handshake-timeout",
                     "1500ms", "--max-connections-per-user", "3", NULL};
  assert_int_equal(parse(&cfg, a), 0);
  unsetenv("NATTER_RATE_LIMIT");
  assert_int_equal(cfg.rate_limit, 7);
  assert_int_equal(cfg.rate_burst, 9);
  assert_int_equal(cfg.max_header_bytes, 4096);
  assert_true(cfg.handshake_timeout_s == 1.5);
  assert_int_equal(cfg.max_conns_per_user, 3);
  nt_config_free(&cfg);
}

static void test_flag_validation(void **state) {
  static const char *const bad[][5] = {
      {"--max-rooms-per-connection", "0"},
      {"--max-rooms-per-connection", "65536"},
      {"--presence-max-members", "-1"},
      {"--presence-max-members", "100000001"},
      {"--max-header-bytes", "512"},
      {"--handshake-timeout", "0"},
      {"--rate-limit", "-1"},
      {"--rate-close-after", "70000"},
      /* the authorizer must answer before the request deadline */
      {"--auth-request", "on", "--handshake-timeout", "3"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    nt_config cfg;
    assert_int_not_equal(parse(&cfg, bad[i]), 0);
    nt_config_free(&cfg);
  }
  /* without an authorizer a short deadline is fine */
  nt_config cfg;
  const char *ok[] = {"--handshake-timeout", "1", NULL};
  assert_int_equal(parse(&cfg, ok), 0);
  nt_config_free(&cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_then_rate),
      cmocka_unit_test(test_zero_rate_is_unlimited_and_zero_burst_is_rate),
      cmocka_unit_test(test_clock_going_back_and_lowered_limits),
      cmocka_unit_test(test_huge_values_do_not_overflow),
      cmocka_unit_test(test_strikes_close_after_n_within_window),
      cmocka_unit_test(test_flag_defaults),
      cmocka_unit_test(test_flag_values_and_environment),
      cmocka_unit_test(test_flag_validation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
