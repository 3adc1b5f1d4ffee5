/* test_nkey: the NKey public key derived from a user seed (nt_nats_opts), against a pair
 * encoded independently (openssl Ed25519 + Python base32/CRC-16, as the NATS test
 * helper in tests/integration/test_nats_auth.py does), and bad seeds refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "nt_err.h"
#include "nt_nats_opts.h"

static const char SEED[] = "SUAJGZD6QLYNKQF5U2A6TIP4O4SJ37VIC2EBBTOYMAJRVCF5WSXLHRAWLY";
static const char PUB[] = "UD6ODEO7KA5PQMI3JASMH57ZGTY657SPKNL6VLLUJVEWQKPTP5HNPQDS";

static void test_known_pair(void **state) {
  (void)state;
  char out[64];
  assert_int_equal(nt_nkey_public_from_seed(SEED, out, sizeof out), 0);
  assert_string_equal(out, PUB);
  char small[56];
  assert_int_equal(nt_nkey_public_from_seed(SEED, small, sizeof small), NT_EINVAL);
}

static void test_seed_file_forms(void **state) {
  (void)state;
  char out[64];
  const char *texts[] = {
      SEED,
      "SUAJGZD6QLYNKQF5U2A6TIP4O4SJ37VIC2EBBTOYMAJRVCF5WSXLHRAWLY\n",
      "-----BEGIN USER NKEY SEED-----\nSUAJGZD6QLYNKQF5U2A6TIP4O4SJ37VIC2EBBTOYMAJRVCF5WSXLHRAWLY\n"
      "------END USER NKEY SEED------\n",
      "# a comment mentioning SUCH things\n  SUAJGZD6QLYNKQF5U2A6TIP4O4SJ37VIC2EBBTOYMAJRVCF5WSXLHRAWLY",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    memset(out, 0, sizeof out);
    assert_int_equal(nt_nkey_public_from_text(texts[i], out, sizeof out), 0);
    assert_string_equal(out, PUB);
  }
}

static void test_bad_seeds(void **state) {
  (void)state;
  char out[64], s[sizeof SEED];
  /* one character changed: the CRC catches it */
  memcpy(s, SEED, sizeof SEED);
  s[20] = s[20] == 'A' ? 'B' : 'A';
  assert_int_equal(nt_nkey_public_from_seed(s, out, sizeof out), NT_EINVAL);
  /* the last character's unused bits set: same bytes, but not the canonical text */
  memcpy(s, SEED, sizeof SEED);
  s[57] = 'Z'; /* 'Y' = 24 = 0b11000: 3 data bits 110, unused 00; 'Z' sets an unused bit */
  assert_int_equal(nt_nkey_public_from_seed(s, out, sizeof out), NT_EINVAL);
  /* truncated, too long, not base32, empty, NULL */
  memcpy(s, SEED, sizeof SEED);
  s[57] = '\0';
  assert_int_equal(nt_nkey_public_from_seed(s, out, sizeof out), NT_EINVAL);
  assert_int_equal(nt_nkey_public_from_seed(
                       "SUAJGZD6QLYNKQF5U2A6TIP4O4SJ37VIC2EBBTOYMAJRVCF5WSXLHRAWLYA", out,
                       sizeof out), NT_EINVAL);
  assert_int_equal(nt_nkey_public_from_seed(
                       "SUAJGZD6QLYNKQF5U2A6TIP4O4SJ37VIC2EBBTOYMAJRVCF5WSXLHRAWL1", out,
                       sizeof out), NT_EINVAL);
  assert_int_equal(nt_nkey_public_from_seed("", out, sizeof out), NT_EINVAL);
  assert_int_equal(nt_nkey_public_from_seed(NULL, out, sizeof out), NT_EINVAL);
  /* a valid account seed (SA...) is not a user seed */
  assert_int_equal(nt_nkey_public_from_seed(
                       "SAAABTX4YNMI2PGIOGOTFYIHGVMVPKTZ5QCJ23X6G3YQPIESCKJJGNEBUU", out,
                       sizeof out), NT_EINVAL);
  /* a public key is not a seed; text without a seed */
  assert_int_equal(nt_nkey_public_from_text(PUB, out, sizeof out), NT_EINVAL);
  assert_int_equal(nt_nkey_public_from_text("no seed here", out, sizeof out), NT_EINVAL);
  assert_int_equal(nt_nkey_public_from_text(NULL, out, sizeof out), NT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_pair),
      cmocka_unit_test(test_seed_file_forms),
      cmocka_unit_test(test_bad_seeds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
