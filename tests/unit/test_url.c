/* test_url: server URL parsing (nt_url_parse) and credential redaction (nt_url_redact). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "nt_err.h"
#include "nt_url.h"

static void test_parse(void **state) {
  (void)state;
  nt_url u;
  const char *s = "nats://user:p@ss@host.example:4222/x";
  assert_int_equal(nt_url_parse(s, strlen(s), &u, NULL), 0);
  assert_int_equal(u.scheme_len, 4);
  assert_memory_equal(u.scheme, "nats", 4);
  assert_int_equal(u.userinfo_len, 9); /* the last '@' ends the userinfo */
  assert_memory_equal(u.userinfo, "user:p@ss", 9);
  assert_int_equal(u.host_len, 12);
  assert_memory_equal(u.host, "host.example", 12);
  assert_int_equal(u.port, 4222);
  assert_int_equal(u.rest_len, 2);
  s = "[::1]:6379";
  assert_int_equal(nt_url_parse(s, strlen(s), &u, NULL), 0);
  assert_null(u.scheme);
  assert_null(u.userinfo);
  assert_int_equal(u.host_len, 3);
  assert_int_equal(u.port, 6379);
  s = "redis://h";
  assert_int_equal(nt_url_parse(s, strlen(s), &u, NULL), 0);
  assert_int_equal(u.port, 0);
  assert_int_equal(u.rest_len, 0);
  /* only `len` bytes are read */
  assert_int_equal(nt_url_parse("h:1,garbage", 3, &u, NULL), 0);
  assert_int_equal(u.port, 1);

  static const struct { const char *s, *why; } bad[] = {
      {"", "no host"}, {"nats://", "no host"}, {"nats://:1", "no host"},
      {"h:0", "bad port"}, {"h:65536", "bad port"}, {"h:99999999999999999999", "bad port"},
      {"h:1x", "bad port"}, {"h:", "bad port"}, {"h:-1", "bad port"},
      {"[::1", "unclosed IPv6 bracket"}, {"[zz]:1", "bad host"}, {"a b:1", "bad host"},
      {"h%41:1", "bad host"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *why = NULL;
    memset(&u, 0x5a, sizeof u);
    nt_url before = u;
    if (nt_url_parse(bad[i].s, strlen(bad[i].s), &u, &why) != NT_EINVAL)
      fail_msg("'%s' parsed", bad[i].s);
    if (!why || strcmp(why, bad[i].why)) fail_msg("'%s': why %s", bad[i].s, why ? why : "-");
    assert_memory_equal(&u, &before, sizeof u); /* written only on success */
  }
  assert_int_equal(nt_url_parse(NULL, 0, &u, NULL), NT_EINVAL);
}

static void test_redact(void **state) {
  (void)state;
  char out[256];
  static const struct { const char *in, *want; } cases[] = {
      {"nats://user:pass@host:4222", "nats://user:***@host:4222"},
      {"nats://s3cr3ttoken@host:4222", "nats://***@host:4222"},
      {"redis://:pw@h:6379/0", "redis://:***@h:6379/0"},
      {"redis://u:p@ss:w/rd@h", "redis://u:***@h"},
      {"u:pw@h:6379", "u:***@h:6379"},
      {"nats://a:1@h1:4222, nats://h2:4222,tls://b:2@h3",
       "nats://a:***@h1:4222, nats://h2:4222,tls://b:***@h3"},
      {"nats://h:4222", "nats://h:4222"},
      {"redis://h:1/0?password=x&db=2", "redis://h:1/0?password=***&db=***"},
      {"connect to nats://u:pw@h failed", "connect to nats://u:***@h failed"},
      {"no url at all", "no url at all"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *r = nt_url_redact(cases[i].in, out, sizeof out);
    assert_ptr_equal(r, out);
    if (strcmp(out, cases[i].want))
      fail_msg("'%s' -> '%s', wanted '%s'", cases[i].in, out, cases[i].want);
  }
  assert_string_equal(nt_url_redact(NULL, out, sizeof out), "");
  /* truncation keeps the NUL and never writes past cap */
  char tiny[8];
  memset(tiny, 'z', sizeof tiny);
  nt_url_redact("nats://user:pass@host", tiny, 6);
  assert_string_equal(tiny, "nats:");
  assert_int_equal(tiny[6], 'z');
  /* a cut can never end inside the password: it is never copied */
  for (size_t cap = 1; cap < 40; cap++) {
    nt_url_redact("nats://user:hunter2@host:4222", out, cap);
    assert_null(strstr(out, "hunt"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_redact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
