/* test_proxy: which X-Forwarded-For entry a node believes — the last one behind one
 * proxy, walked from the right past --trusted-proxies, never a client-supplied hop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "nt_proxy.h"

static char got[64];

/* The chosen address as a string, or "-" when the socket's stands. */
static const char *pick(const char *trusted, const char *peer, const char *xff) {
  uint8_t a[16];
  int fam = inet_pton(AF_INET, peer, a) == 1 ? 4 : inet_pton(AF_INET6, peer, a) == 1 ? 6 : 0;
  assert_true(fam != 0);
  const char *ip;
  size_t len;
  if (!nt_proxy_client(trusted, a, fam, xff, &ip, &len)) return "-";
  assert_true(len < sizeof got);
  memcpy(got, ip, len);
  got[len] = '\0';
  return got;
}

static void test_one_proxy_takes_the_last_entry(void **state) {
  (void)state;
  /* the case: the client sends 6.6.6.6, haproxy appends the real address */
  assert_string_equal(pick(NULL, "127.0.0.1", "6.6.6.6, 203.0.113.9"), "203.0.113.9");
  assert_string_equal(pick(NULL, "127.0.0.1", "203.0.113.9"), "203.0.113.9");
  assert_string_equal(pick(NULL, "127.0.0.1", "6.6.6.6,203.0.113.9"), "203.0.113.9");
  assert_string_equal(pick(NULL, "127.0.0.1", " 2001:db8::1 "), "2001:db8::1");
  /* no header, or garbage where the proxy's entry should be: the socket's address */
  assert_string_equal(pick(NULL, "127.0.0.1", NULL), "-");
  assert_string_equal(pick(NULL, "127.0.0.1", "6.6.6.6, nonsense"), "-");
  assert_string_equal(pick(NULL, "127.0.0.1", "6.6.6.6, "), "-");
  assert_string_equal(pick(NULL, "127.0.0.1", ""), "-");
}

static void test_trusted_list(void **state) {
  (void)state;
  const char *tp = "10.0.0.0/8, 192.168.1.7,fd00::/8";
  /* from a trusted proxy: skip trusted hops from the right */
  assert_string_equal(pick(tp, "10.1.2.3", "6.6.6.6, 198.51.100.4, 10.9.9.9"), "198.51.100.4");
  assert_string_equal(pick(tp, "192.168.1.7", "198.51.100.4"), "198.51.100.4");
  assert_string_equal(pick(tp, "fd00::1", "2001:db8::5, fd12::7"), "2001:db8::5");
  /* every hop trusted: the leftmost */
  assert_string_equal(pick(tp, "10.1.2.3", "10.0.0.5, 10.0.0.6"), "10.0.0.5");
  /* not from a trusted proxy: the header is ignored */
  assert_string_equal(pick(tp, "192.168.1.8", "198.51.100.4"), "-");
  assert_string_equal(pick(tp, "11.0.0.1", "198.51.100.4"), "-");
  assert_string_equal(pick(tp, "2001:db8::1", "198.51.100.4"), "-");
  /* garbage between trusted hops stops the walk */
  assert_string_equal(pick(tp, "10.1.2.3", "198.51.100.4, x, 10.0.0.2"), "-");
  /* prefix lengths that are not byte aligned */
  assert_string_equal(pick("172.16.0.0/12", "172.31.255.255", "1.2.3.4"), "1.2.3.4");
  assert_string_equal(pick("172.16.0.0/12", "172.32.0.1", "1.2.3.4"), "-");
  assert_string_equal(pick("0.0.0.0/0", "8.8.8.8", "1.2.3.4"), "1.2.3.4");
}

static void test_list_validation(void **state) {
  (void)state;
  assert_int_equal(nt_proxy_list_valid("10.0.0.0/8"), 1);
  assert_int_equal(nt_proxy_list_valid("10.0.0.1, ::1, fd00::/8"), 1);
  assert_int_equal(nt_proxy_list_valid(""), 0);
  assert_int_equal(nt_proxy_list_valid("10.0.0.0/33"), 0);
  assert_int_equal(nt_proxy_list_valid("::/129"), 0);
  assert_int_equal(nt_proxy_list_valid("10.0.0.0/"), 0);
  assert_int_equal(nt_proxy_list_valid("10.0.0.0/8,"), 0);
  assert_int_equal(nt_proxy_list_valid("example.com"), 0);
  assert_int_equal(nt_proxy_list_valid("10.0.0.0/8x"), 0);
  assert_int_equal(nt_proxy_list_valid(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_proxy_takes_the_last_entry),
      cmocka_unit_test(test_trusted_list),
      cmocka_unit_test(test_list_validation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
