/* test_api_aws: the AWS-compatible parts of the HTTP API — a request signed by the AWS SDK
 * v3 (captured from @aws-sdk/client-apigatewaymanagementapi 3.1177, PostToConnection with a
 * stage in the endpoint) verified through the HTTP parser, stage paths, error types and
 * RFC 3339 times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <http_parser.h>

#include "nt_api.h"
#include "nt_api_aws.h"
#include "nt_clock.h"
#include "nt_config.h"
#include "nt_err.h"
#include "nt_http.h"

#define SDK_T 1796684746 /* 2026-12-07T23:05:46Z */

static const char sdk_req[] =
    "POST /prod/@connections/abc HTTP/1.1\r\n"
    "content-type: application/octet-stream\r\n"
    "content-length: 2\r\n"
    "x-amz-user-agent: aws-sdk-js/3.1177.0\r\n"
    "user-agent: aws-sdk-js/3.1177.0 ua/2.1 os/linux#6.18.44-fc-v1294 lang/js "
    "md/nodejs#20.20.2 api/apigatewaymanagementapi#3.1177.0 m/N,E,e\r\n"
    "host: 127.0.0.1:45999\r\n"
    "amz-sdk-invocation-id: 47d4b63f-8ac7-45cc-9376-3d47c5028d67\r\n"
    "amz-sdk-request: attempt=1; max=1\r\n"
    "x-amz-date: 20261207T230546Z\r\n"
    "x-amz-content-sha256: 8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4\r\n"
    "authorization: AWS4-HMAC-SHA256 Credential=AK/20261207/eu-west-3/execute-api/"
    "aws4_request, SignedHeaders=amz-sdk-invocation-id;amz-sdk-request;content-length;"
    "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-user-agent, "
    "Signature=6b14d6359535b38b05c7c808433e971df939c9b66a5019596d05fd6161f0d68b\r\n"
    "Connection: keep-alive\r\n"
    "\r\n"
    "hi";

/* Parses `raw` and checks SigV4 access with key "AK" / `secret` at `now`. */
static int access_of(const char *raw, const char *secret, int64_t now, const char **why) {
  nt_http_parser *p = nt_http_parser_new(16384, 65536);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, raw, strlen(raw), &used), 1);
  nt_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.aws_access_key_id = "AK";
  cfg.aws_secret_access_key = (char *)secret;
  int rc = nt_api_aws_access(&cfg, nt_http_parser_req(p), now, why);
  nt_http_parser_free(p);
  return rc;
}

static void test_sdk_signed_request(void **st) {
  const char *why = NULL;
  int rc = access_of(sdk_req, "S", SDK_T, &why);
  if (rc) fail_msg("refused: %s", why);
  assert_int_equal(access_of(sdk_req, "S", SDK_T + 400, &why), 403);
  assert_string_equal(why, "request time too skewed");
  assert_int_equal(access_of(sdk_req, "T", SDK_T, &why), 403);
  assert_string_equal(why, "signature mismatch");
  /* the body is signed (x-amz-content-sha256 and the canonical request) */
  char tampered[sizeof sdk_req];
  memcpy(tampered, sdk_req, sizeof sdk_req);
  tampered[sizeof sdk_req - 2] = 'o';
  assert_int_equal(access_of(tampered, "S", SDK_T, &why), 403);
  assert_string_equal(why, "payload hash mismatch");
  /* bearer requests are left to the admin token; SigV4 without a configured key refused */
  assert_int_equal(access_of("GET /@connections/a HTTP/1.1\r\nHost: h\r\n"
                             "Authorization: Bearer x\r\n\r\n", "S", SDK_T, &why), 1);
  nt_http_parser *p = nt_http_parser_new(16384, 65536);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, sdk_req, strlen(sdk_req), &used), 1);
  nt_config none;
  memset(&none, 0, sizeof none);
  assert_int_equal(nt_api_aws_access(&none, nt_http_parser_req(p), SDK_T, &why), 403);
  nt_http_parser_free(p);
}

static void test_header_iteration(void **st) {
  nt_http_parser *p = nt_http_parser_new(16384, 65536);
  size_t used = 0;
  const char *raw = "GET / HTTP/1.1\r\nHost:  h:1 \r\nX-A: 1\r\nX-A: 2\r\nEmpty:\r\n\r\n";
  assert_int_equal(nt_http_feed(p, raw, strlen(raw), &used), 1);
  const nt_http_req *r = nt_http_parser_req(p);
  size_t pos = 0, nl, vl;
  const char *nm, *v;
  const char *want[][2] = {{"Host", "h:1"}, {"X-A", "1"}, {"X-A", "2"}, {"Empty", ""}};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(nt_http_header_next(r, &pos, &nm, &nl, &v, &vl), 1);
    assert_int_equal(nl, strlen(want[i][0]));
    assert_memory_equal(nm, want[i][0], nl);
    assert_int_equal(vl, strlen(want[i][1]));
    if (vl) assert_memory_equal(v, want[i][1], vl);
  }
  assert_int_equal(nt_http_header_next(r, &pos, &nm, &nl, &v, &vl), 0);
  nt_http_parser_free(p);
}

static void test_stage_paths(void **st) {
  nt_api_match m;
  const char *p = "/prod/@connections/abc";
  nt_api_route(HTTP_POST, p, strlen(p), &m);
  assert_int_equal(m.route, NT_API_CONN_POST);
  assert_string_equal(m.id, "abc");
  p = "/@connections/abc";
  nt_api_route(HTTP_GET, p, strlen(p), &m);
  assert_int_equal(m.route, NT_API_CONN_GET);
  p = "/prod/@connections/a.b";
  nt_api_route(HTTP_DELETE, p, strlen(p), &m);
  assert_int_equal(m.status, 400);
  p = "/a/b/@connections/abc";
  nt_api_route(HTTP_GET, p, strlen(p), &m);
  assert_int_equal(m.status, 404);
  p = "/prod/other/abc";
  nt_api_route(HTTP_GET, p, strlen(p), &m);
  assert_int_equal(m.status, 404);
}

static void test_error_types_and_times(void **st) {
  assert_string_equal(nt_api_aws_error_type(410), "GoneException");
  assert_string_equal(nt_api_aws_error_type(403), "ForbiddenException");
  assert_string_equal(nt_api_aws_error_type(413), "PayloadTooLargeException");
  assert_string_equal(nt_api_aws_error_type(429), "LimitExceededException");
  assert_string_equal(nt_api_aws_error_type(500), "InternalServerErrorException");
  char b[32];
  assert_string_equal(nt_clock_rfc3339(1796684746123, b), "2026-12-07T23:05:46.123Z");
  assert_string_equal(nt_clock_rfc3339(0, b), "1970-01-01T00:00:00.000Z");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sdk_signed_request), cmocka_unit_test(test_header_iteration),
      cmocka_unit_test(test_stage_paths), cmocka_unit_test(test_error_types_and_times),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
