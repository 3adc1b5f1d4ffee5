/* test_accesslog: the log rate limiter (token bucket and suppressed-line summaries) and the
 * route templates and caller kinds of API access lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
#include <string.h>

#include "nt_accesslog.h"
#include "nt_api.h"

static void test_bucket(void **state) {
  (void)state;
  nt_logbucket b = {0};
  uint64_t t = 1000000;
  int written = 0;
  for (int i = 0; i < 1000; i++) written += nt_logbucket_take(&b, t, 1, 20);
  assert_int_equal(written, 20); /* the burst, then nothing within the same instant */
  assert_int_equal(b.suppressed, 980);
  assert_int_equal(nt_logbucket_summary(&b, t + 9999, 10000), 0); /* not yet */
  /* refill: one line a second */
  written = 0;
  for (int i = 0; i < 100; i++) written += nt_logbucket_take(&b, t + 5000, 1, 20);
  assert_int_equal(written, 5);
  assert_int_equal(nt_logbucket_summary(&b, t + 10000, 10000), 980 + 95);
  assert_int_equal(b.suppressed, 0);
  assert_int_equal(nt_logbucket_summary(&b, t + 30000, 10000), 0); /* nothing held back */
  /* a quiet minute fills the bucket back to the burst, no further */
  written = 0;
  for (int i = 0; i < 100; i++) written += nt_logbucket_take(&b, t + 70000, 1, 20);
  assert_int_equal(written, 20);
  /* the window of a new flood starts at its first held-back line */
  assert_int_equal(nt_logbucket_summary(&b, t + 79999, 10000), 0);
  assert_int_equal(nt_logbucket_summary(&b, t + 80000, 10000), 80);
  /* a clock that does not move forward never refills */
  nt_logbucket c = {0};
  assert_int_equal(nt_logbucket_take(&c, 500, 1, 1), 1);
  assert_int_equal(nt_logbucket_take(&c, 400, 1, 1), 0);
  /* the bound over a day of flood: burst + rate * seconds lines, whatever the input */
  nt_logbucket d = {0};
  uint64_t lines = 0, summaries = 0;
  for (uint64_t ms = 0; ms < 86400000; ms += 10) {
    lines += (uint64_t)nt_logbucket_take(&d, ms, 1, 20);
    summaries += nt_logbucket_summary(&d, ms, 10000) != 0;
  }
  assert_true(lines <= 20 + 86400);
  assert_true(summaries <= 8640);
}

static void test_templates(void **state) {
  (void)state;
  static const struct { int method; const char *path, *tpl; } cases[] = {
      {HTTP_GET, "/v1/tenants/acme/rooms/lobby/messages", "/v1/tenants/{tenant}/rooms/{room}/messages"},
      {HTTP_POST, "/v1/tenants/acme/rooms/lobby/messages", "/v1/tenants/{tenant}/rooms/{room}/messages"},
      {HTTP_POST, "/v1/tenants/acme/users/bob/messages", "/v1/tenants/{tenant}/users/{user}/messages"},
      {HTTP_GET, "/v1/tenants/acme/rooms/lobby/presence", "/v1/tenants/{tenant}/rooms/{room}/presence"},
      {HTTP_GET, "/@connections/abc", "/@connections/{connectionId}"},
      {HTTP_DELETE, "/@connections/abc", "/@connections/{connectionId}"},
      {HTTP_GET, "/metrics", "/metrics"},
      {HTTP_GET, "/healthz", "/healthz"},
      {HTTP_GET, "/readyz", "/readyz"},
      {HTTP_GET, "/etc/passwd", "unmatched"},
      {HTTP_GET, "/v1/tenants/acme/rooms/lobby/secret", "unmatched"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nt_api_match m;
    nt_api_route(cases[i].method, cases[i].path, strlen(cases[i].path), &m);
    const char *tpl = nt_accesslog_template(m.route);
    if (strcmp(tpl, cases[i].tpl)) fail_msg("%s -> %s, wanted %s", cases[i].path, tpl,
                                            cases[i].tpl);
    /* a template never carries an id of the path */
    assert_null(strstr(tpl, "acme"));
  }
}

static void test_caller(void **state) {
  (void)state;
  assert_int_equal(nt_accesslog_caller("adm", NULL), NT_CALLER_ANONYMOUS);
  assert_int_equal(nt_accesslog_caller("adm", "Bearer adm"), NT_CALLER_ADMIN);
  assert_int_equal(nt_accesslog_caller("adm", "Bearer nope"), NT_CALLER_TOKEN);
  assert_int_equal(nt_accesslog_caller("adm", "Basic YTpi"), NT_CALLER_TOKEN);
  assert_int_equal(nt_accesslog_caller(NULL, "Bearer adm"), NT_CALLER_TOKEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket),
      cmocka_unit_test(test_templates),
      cmocka_unit_test(test_caller),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
