/* test_pct: the shared percent-decoder (nt_pct_decode) — escapes in either case, '+' only
 * with NT_PCT_PLUS, %2F only without NT_PCT_NO_SLASH, %00 and malformed escapes refused,
 * the length bound, the capacity bound, and `n` bounding the input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nt_err.h"
#include "nt_pct.h"

static void test_decodes(void **state) {
  char out[16];
  assert_int_equal(nt_pct_decode("a%41b%6a", 8, out, sizeof out, 0), 4);
  assert_string_equal(out, "aAbj");
  assert_int_equal(nt_pct_decode("", 0, out, sizeof out, 0), 0);
  assert_string_equal(out, "");
  assert_int_equal(nt_pct_decode("%e2%82%AC", 9, out, sizeof out, 0), 3); /* bytes, not chars */
  assert_string_equal(out, "\xe2\x82\xac");
  assert_int_equal(nt_pct_decode("a+b", 3, out, sizeof out, 0), 3);
  assert_string_equal(out, "a+b");
  assert_int_equal(nt_pct_decode("a+b%2B", 6, out, sizeof out, NT_PCT_PLUS), 4);
  assert_string_equal(out, "a b+");
  assert_int_equal(nt_pct_decode("a%2fb", 5, out, sizeof out, 0), 3);
  assert_string_equal(out, "a/b");
}

static void test_refuses(void **state) {
  char out[8];
  static const char *bad[] = {"%", "%4", "%g0", "%0g", "ab%", "%00", "x%00y", "%%41"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memcpy(out, "junk", 5);
    if (nt_pct_decode(bad[i], strlen(bad[i]), out, sizeof out, NT_PCT_PLUS) != NT_EINVAL)
      fail_msg("accepted \"%s\"", bad[i]);
    assert_string_equal(out, ""); /* never a partial result */
  }
  assert_int_equal(nt_pct_decode("a%2Fb", 5, out, sizeof out, NT_PCT_NO_SLASH), NT_EINVAL);
  assert_int_equal(nt_pct_decode("x", 1, NULL, 4, 0), NT_EINVAL);
  assert_int_equal(nt_pct_decode(NULL, 1, out, sizeof out, 0), NT_EINVAL);
  assert_int_equal(nt_pct_decode("x", 1, out, 0, 0), NT_EINVAL);
}

static void test_bounds(void **state) {
  char out[8];
  assert_int_equal(nt_pct_decode("12345678", 8, out, sizeof out, 0), NT_ETOOLARGE);
  assert_string_equal(out, "");
  assert_int_equal(nt_pct_decode("1234567", 7, out, sizeof out, 0), 7);
  assert_int_equal(nt_pct_decode("%41%41%41%41%41%41%41", 21, out, sizeof out, 0), 7);
  /* `n` bounds the input: bytes past it are not read, so an escape cut by n is malformed */
  assert_int_equal(nt_pct_decode("ab%41", 2, out, sizeof out, 0), 2);
  assert_string_equal(out, "ab");
  assert_int_equal(nt_pct_decode("ab%41", 4, out, sizeof out, 0), NT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decodes),
      cmocka_unit_test(test_refuses),
      cmocka_unit_test(test_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
