/* test_rand: CSPRNG ids — alphabet, uniqueness, no modulo bias, refills across the pool,
 * used bytes wiped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nt_map.h"
#include "nt_rand.h"

static void test_ids_alphabet_and_unique(void **state) {
  (void)state;
  nt_rand *r = calloc(1, sizeof *r);
  nt_map seen = NT_MAP_INIT;
  char id[21];
  for (int i = 0; i < 20000; i++) { /* ≈ 25 pool refills */
    nt_rand_id(r, id, 20);
    assert_int_equal(strlen(id), 20);
    for (int k = 0; k < 20; k++)
      assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                             id[k]));
    assert_null(nt_map_get(&seen, id, 20));
    assert_int_equal(nt_map_put(&seen, id, 20, (void *)1, NULL), 0);
  }
  nt_map_clear(&seen);
  free(r);
}

/* 62^... : every character about equally likely (a modulo over 64 would make 'A' and 'B'
 * twice as likely as the rest): chi-square over 620,000 characters, 61 degrees of freedom,
 * 0.1 % critical value 100.9. */
static void test_uniform(void **state) {
  (void)state;
  nt_rand *r = calloc(1, sizeof *r);
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  long count[62] = {0};
  char id[101];
  for (int i = 0; i < 6200; i++) {
    nt_rand_id(r, id, 100);
    for (int k = 0; k < 100; k++) count[strchr(abc, id[k]) - abc]++;
  }
  double expect = 620000.0 / 62, chi = 0;
  for (int i = 0; i < 62; i++) chi += (count[i] - expect) * (count[i] - expect) / expect;
  assert_true(chi < 100.9);
  free(r);
}

static void test_bytes_across_refills_and_wiped(void **state) {
  (void)state;
  nt_rand *r = calloc(1, sizeof *r);
  uint8_t a[NT_RAND_POOL + 100], b[NT_RAND_POOL + 100];
  nt_rand_bytes(r, a, sizeof a);
  nt_rand_bytes(r, b, sizeof b);
  assert_memory_not_equal(a, b, sizeof a);
  /* nothing given out stays in the pool */
  for (size_t i = 0; i < r->pos; i++) assert_int_equal(r->buf[i], 0);
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_alphabet_and_unique),
      cmocka_unit_test(test_uniform),
      cmocka_unit_test(test_bytes_across_refills_and_wiped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
