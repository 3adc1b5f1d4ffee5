/* test_prom: the Prometheus text writer (nt_prom) — HELP/TYPE heads, samples with and
 * without labels, free-form lines, growth past the first buffer, an empty writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nt_prom.h"

static void test_lines(void **state) {
  nt_prom w = NT_PROM_INIT;
  nt_prom_metric(&w, "joins_total", "counter", "Room joins.", 42);
  nt_prom_head(&w, "resumes_total", "counter", "By outcome.");
  nt_prom_sample(&w, "resumes_total", "{recovered=\"true\"}", 18446744073709551615ull);
  nt_prom_printf(&w, "natter_x_sum %.3f\n", 1.5);
  char *t = nt_prom_take(&w);
  assert_non_null(t);
  assert_string_equal(t,
                      "# HELP natter_joins_total Room joins.\n"
                      "# TYPE natter_joins_total counter\n"
                      "natter_joins_total 42\n"
                      "# HELP natter_resumes_total By outcome.\n"
                      "# TYPE natter_resumes_total counter\n"
                      "natter_resumes_total{recovered=\"true\"} 18446744073709551615\n"
                      "natter_x_sum 1.500\n");
  free(t);
  assert_null(w.p); /* empty again */
}

static void test_grows_and_empty(void **state) {
  nt_prom w = NT_PROM_INIT;
  char *t = nt_prom_take(&w);
  assert_string_equal(t, "");
  free(t);
  for (int i = 0; i < 2000; i++) nt_prom_sample(&w, "m", NULL, (uint64_t)i);
  t = nt_prom_take(&w);
  assert_non_null(t);
  assert_non_null(strstr(t, "natter_m 0\nnatter_m 1\n"));
  assert_non_null(strstr(t, "natter_m 1999\n"));
  size_t lines = 0;
  for (const char *p = t; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 2000);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_grows_and_empty),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
