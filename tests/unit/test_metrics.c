/* test_metrics: /proc/<pid>/stat parsing, process_* and build info rendering, and the
 * bounded cardinality of the custom route counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nt_metrics.h"
#include "nt_procmetrics.h"

static void test_stat_parse(void **state) {
  (void)state;
  /* a comm with spaces and a ')' of its own: fields count from the last ')' */
  const char *stat = "4242 (natter (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 150 0 0 "
                     "20 0 3 0 12000 734003200 5120 18446744073709551615 1 1 0 0 0";
  nt_procstats ps = {0};
  assert_int_equal(nt_procstats_parse(stat, 100, 4096, 1700000000, &ps), 0);
  assert_true(ps.cpu_seconds == 4.0);                /* (250 + 150) / 100 */
  assert_true(ps.start_time_s == 1700000120.0);      /* btime + 12000 / 100 */
  assert_int_equal(ps.virtual_bytes, 734003200);
  assert_int_equal(ps.resident_bytes, 5120 * 4096);

  const char *bad[] = {"", "4242 natter S 1", "4242 (n) S 1 2 3", "4242 (n) 7 1 2 3 4 5 6 7 8 "
                       "9 10 11 12 13 14 15 16 17 18 19 20 21 22", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&ps, 0x5a, sizeof ps);
    nt_procstats before = ps;
    if (nt_procstats_parse(bad[i], 100, 4096, 0, &ps) != -1)
      fail_msg("'%s' parsed", bad[i] ? bad[i] : "(null)");
    assert_memory_equal(&ps, &before, sizeof ps);
  }
  assert_int_equal(nt_procstats_parse(stat, 0, 4096, 0, &ps), -1);
}

static void test_read_self(void **state) {
  (void)state;
  nt_procstats ps;
  assert_int_equal(nt_procstats_read(&ps), 0);
  assert_true(ps.resident_bytes > 0);
  assert_true(ps.virtual_bytes >= ps.resident_bytes);
  assert_true(ps.open_fds >= 3); /* stdin, stdout, stderr */
  assert_true(ps.max_fds >= ps.open_fds);
  double now = (double)time(NULL);
  assert_true(ps.start_time_s <= now + 1 && ps.start_time_s > now - 3600);
  FILE *f = tmpfile(); /* one more descriptor is seen */
  nt_procstats ps2;
  assert_int_equal(nt_procstats_read(&ps2), 0);
  assert_int_equal(ps2.open_fds, ps.open_fds + 1);
  fclose(f);
}

static void test_render(void **state) {
  (void)state;
  nt_prom w = NT_PROM_INIT;
  nt_procmetrics_render(&w, "1.2.3", "abc1234");
  char *buf = nt_prom_take(&w);
  assert_non_null(buf);
  const char *want[] = {
      "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ",
      "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes ",
      "# TYPE process_virtual_memory_bytes gauge\n", "# TYPE process_open_fds gauge\n",
      "# TYPE process_max_fds gauge\n", "# TYPE process_start_time_seconds gauge\n",
      "natter_build_info{version=\"1.2.3\",commit=\"abc1234\"} 1\n"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(buf, want[i])) fail_msg("missing '%s' in:\n%s", want[i], buf);
  assert_true(buf[strlen(buf) - 1] == '\n'); /* whole lines only */
  free(buf);
}

static void test_route_cardinality(void **state) {
  (void)state;
  nt_metrics *m = calloc(1, sizeof *m);
  assert_non_null(m);
  nt_metrics_count_route(m, "getProfile", NT_ROUTE_REPLIED);
  nt_metrics_count_route(m, "getProfile", NT_ROUTE_TIMEOUT);
  nt_metrics_count_route(m, "get-profile_2", NT_ROUTE_UNKNOWN);
  /* not well-formed: never a label of their own */
  const char *odd[] = {"a\"b", "a\\b", "a b", "caf\xc3\xa9", "", NULL, "other",
                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
    nt_metrics_count_route(m, odd[i], NT_ROUTE_UNKNOWN);
  assert_int_equal(m->routes.nkeys, 2);
  /* past the cap, new actions go to "other" */
  char name[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof name, "act%d", i);
    nt_metrics_count_route(m, name, NT_ROUTE_FAILED);
  }
  assert_int_equal(m->routes.nkeys, NT_ROUTE_KEYS);
  nt_metrics_count_route(m, "getProfile", NT_ROUTE_REPLIED); /* known keys keep counting */
  nt_prom w = NT_PROM_INIT;
  nt_metrics_render(m, &w);
  char *text = nt_prom_take(&w);
  assert_non_null(text);
  assert_non_null(strstr(text, "natter_route_requests_total{route=\"getProfile\"} 3\n"));
  assert_non_null(strstr(text, "natter_route_replies_total{route=\"getProfile\"} 2\n"));
  assert_non_null(strstr(text, "natter_route_timeouts_total{route=\"getProfile\"} 1\n"));
  assert_non_null(strstr(text, "natter_route_unknown_total{route=\"get-profile_2\"} 1\n"));
  /* 8 odd names + 1000 - 62 actions past the cap */
  assert_non_null(strstr(text, "natter_route_requests_total{route=\"other\"} 946\n"));
  assert_non_null(strstr(text, "natter_route_unknown_total{route=\"other\"} 8\n"));
  assert_null(strstr(text, "act62\""));
  assert_non_null(strstr(text, "act61\""));
  size_t samples = 0;
  for (const char *p = text; (p = strstr(p, "natter_route_requests_total{")); p++) samples++;
  assert_int_equal(samples, NT_ROUTE_KEYS + 1);
  assert_non_null(strstr(text, "process_open_fds "));
  assert_non_null(strstr(text, "natter_build_info{version=\""));
  free(text);
  free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stat_parse),
      cmocka_unit_test(test_read_self),
      cmocka_unit_test(test_render),
      cmocka_unit_test(test_route_cardinality),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
