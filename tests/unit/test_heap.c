/* test_heap: nt_heap_trim_tick trims after a burst freed memory, never while the burst
 * goes on, and not again while the resident size is steady. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nt_heap.h"

#define CHUNKS 200000
#define CHUNK 200 /* below the mmap threshold: these live in the heap */

static void **burst(void) {
  void **p = malloc(CHUNKS * sizeof *p);
  assert_non_null(p);
  for (int i = 0; i < CHUNKS; i++) {
    p[i] = malloc(CHUNK);
    assert_non_null(p[i]);
    memset(p[i], 0x5a, CHUNK); /* resident */
  }
  return p;
}

static void test_rss_readable(void **state) {
  (void)state;
  assert_true(nt_heap_rss() > 0);
}

static void test_trims_after_burst_only_when_quiet(void **state) {
  (void)state;
  nt_heap_trim t = {0};
  assert_int_equal(nt_heap_trim_tick(&t, 0, 64, 4u << 20), 0); /* sets the base */
  void **p = burst();
  /* ~40 MB freed except every 64th chunk, as a storm leaves the long-lived objects */
  for (int i = 0; i < CHUNKS; i++)
    if (i % 64) {
      free(p[i]);
      p[i] = NULL;
    }
  size_t before = nt_heap_rss();
  /* still busy: 1,000 units of work since the last tick */
  assert_int_equal(nt_heap_trim_tick(&t, 1000, 64, 4u << 20), 0);
  assert_int_equal(t.trims, 0);
  /* quiet now: trims, and the resident size drops by most of what was freed */
  assert_int_equal(nt_heap_trim_tick(&t, 1010, 64, 4u << 20), 1);
  assert_int_equal(t.trims, 1);
  size_t after = nt_heap_rss();
  assert_true(after + (16u << 20) < before);
  /* steady: no second trim */
  assert_int_equal(nt_heap_trim_tick(&t, 1010, 64, 4u << 20), 0);
  assert_int_equal(t.trims, 1);
  for (int i = 0; i < CHUNKS; i++) free(p[i]);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rss_readable),
      cmocka_unit_test(test_trims_after_burst_only_when_quiet),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
