/* test_handshake: RFC 6455 opening handshake checks and 101 response, from raw requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "nt_err.h"
#include "nt_handshake.h"
#include "nt_http.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Builds a request from its parts; a NULL part leaves that header out. */
static nt_http_parser *parse(const char *line, const char *upgrade, const char *connection,
                             const char *key, const char *version, const char *extra) {
  char raw[1024];
  int n = snprintf(raw, sizeof raw, "%s\r\n", line);
  if (upgrade) n += snprintf(raw + n, sizeof raw - (size_t)n, "Upgrade: %s\r\n", upgrade);
  if (connection)
    n += snprintf(raw + n, sizeof raw - (size_t)n, "Connection: %s\r\n", connection);
  if (key) n += snprintf(raw + n, sizeof raw - (size_t)n, "Sec-WebSocket-Key: %s\r\n", key);
  if (version)
    n += snprintf(raw + n, sizeof raw - (size_t)n, "Sec-WebSocket-Version: %s\r\n", version);
  n += snprintf(raw + n, sizeof raw - (size_t)n, "%s\r\n", extra ? extra : "");
  nt_http_parser *p = nt_http_parser_new(4096, 1024);
  assert_non_null(p);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, raw, (size_t)n, &used), 1);
  assert_int_equal(used, (size_t)n);
  return p;
}

static int check(const char *line, const char *upgrade, const char *connection,
                 const char *key, const char *version, const char *extra) {
  nt_http_parser *p = parse(line, upgrade, connection, key, version, extra);
  int rc = nt_handshake_check(nt_http_parser_req(p));
  nt_http_parser_free(p);
  return rc;
}

#define GET "GET /ws?token=t HTTP/1.1"
#define HOST "Host: chat.example.com\r\n"

static void test_accept_key_rfc_sample(void **state) {
  (void)state;
  char out[NT_WS_ACCEPT_LEN + 1];
  assert_int_equal(nt_ws_accept_key(KEY, out), 0);
  assert_string_equal(out, ACCEPT);
  assert_int_equal(strlen(out), NT_WS_ACCEPT_LEN);
  assert_int_equal(nt_ws_accept_key(NULL, out), NT_EINVAL);
  assert_int_equal(nt_ws_accept_key("", out), NT_EINVAL);
}

static void test_valid(void **state) {
  (void)state;
  assert_int_equal(check(GET, "websocket", "Upgrade", KEY, "13", HOST), 0);
  /* Case-insensitive tokens, lists as Firefox sends them. */
  assert_int_equal(check(GET, "WebSocket", "keep-alive, Upgrade", KEY, "13", HOST), 0);
  assert_int_equal(check(GET, "websocket", "UPGRADE", KEY, "13",
                         HOST "Origin: https://app.example.com\r\n"),
                   0);
}

static void test_method_and_version(void **state) {
  (void)state;
  assert_int_equal(check("POST /ws HTTP/1.1", "websocket", "Upgrade", KEY, "13", HOST), 405);
  assert_int_equal(check("HEAD /ws HTTP/1.1", "websocket", "Upgrade", KEY, "13", HOST), 405);
  assert_int_equal(check("GET /ws HTTP/1.0", "websocket", "Upgrade", KEY, "13", HOST), 400);
}

static void test_missing_upgrade_or_connection(void **state) {
  (void)state;
  assert_int_equal(check(GET, NULL, "Upgrade", KEY, "13", HOST), 400);
  assert_int_equal(check(GET, "h2c", "Upgrade", KEY, "13", HOST), 400);
  assert_int_equal(check(GET, "websocket", NULL, KEY, "13", HOST), 400);
  assert_int_equal(check(GET, "websocket", "keep-alive", KEY, "13", HOST), 400);
  /* no Host: a 1.1 request the parser itself answers with 400 (RFC 9112 §3.2) */
  static const char nohost[] = GET "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  nt_http_parser *p = nt_http_parser_new(4096, 1024);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, nohost, sizeof nohost - 1, &used), NT_EPROTO);
  assert_int_equal(nt_http_parser_status(p), 400);
  nt_http_parser_free(p);
}

static void test_key(void **state) {
  (void)state;
  assert_int_equal(check(GET, "websocket", "Upgrade", NULL, "13", HOST), 400);
  assert_int_equal(check(GET, "websocket", "Upgrade", "", "13", HOST), 400);
  assert_int_equal(check(GET, "websocket", "Upgrade", "dGhlIHNhbXBsZQ==", "13", HOST), 400);
  /* 24 characters but 17 bytes, or not base64, or no padding. */
  assert_int_equal(check(GET, "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZSE=", "13", HOST),
                   400);
  assert_int_equal(check(GET, "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25j*Q==", "13", HOST),
                   400);
  assert_int_equal(check(GET, "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ", "13", HOST),
                   400);
  /* A repeated key is joined by the parser and so refused. */
  assert_int_equal(check(GET, "websocket", "Upgrade", KEY, "13",
                         HOST "Sec-WebSocket-Key: " KEY "\r\n"),
                   400);
}

static void test_ws_version(void **state) {
  (void)state;
  assert_int_equal(check(GET, "websocket", "Upgrade", KEY, "8", HOST), 426);
  assert_int_equal(check(GET, "websocket", "Upgrade", KEY, "14", HOST), 426);
  assert_int_equal(check(GET, "websocket", "Upgrade", KEY, NULL, HOST), 400);
  /* The version is judged before the key: a v8 client with an odd key still learns 13. */
  assert_int_equal(check(GET, "websocket", "Upgrade", "x", "8", HOST), 426);
}

static void test_response(void **state) {
  (void)state;
  nt_http_parser *p = parse(GET, "websocket", "Upgrade", KEY, "13",
                            HOST "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n");
  const nt_http_req *r = nt_http_parser_req(p);
  char out[512];
  int n = nt_handshake_response(r, NULL, out, sizeof out);
  const char *want = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n";
  assert_int_equal(n, (int)strlen(want));
  assert_string_equal(out, want);

  n = nt_handshake_response(r, "permessage-deflate; server_no_context_takeover", out,
                            sizeof out);
  assert_true(n > 0);
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Extensions: permessage-deflate; "
                              "server_no_context_takeover\r\n\r\n"));

  n = nt_handshake_response_proto(r, "chat.v1", NULL, out, sizeof out);
  assert_true(n > 0);
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Protocol: chat.v1\r\n\r\n"));
  /* Only an offered protocol may be selected. */
  assert_int_equal(nt_handshake_response_proto(r, "chat", NULL, out, sizeof out), NT_EINVAL);

  /* Exactly fitting (length + NUL) works; one byte less does not. */
  assert_int_equal(nt_handshake_response(r, NULL, out, strlen(want) + 1), (int)strlen(want));
  assert_int_equal(nt_handshake_response(r, NULL, out, strlen(want)), NT_ETOOLARGE);
  /* Header injection through a negotiated value is refused. */
  assert_int_equal(nt_handshake_response(r, "x\r\nSet-Cookie: a=b", out, sizeof out),
                   NT_EINVAL);
  assert_int_equal(nt_handshake_response(NULL, NULL, out, sizeof out), NT_EINVAL);
  nt_http_parser_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_key_rfc_sample),
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_method_and_version),
      cmocka_unit_test(test_missing_upgrade_or_connection),
      cmocka_unit_test(test_key),
      cmocka_unit_test(test_ws_version),
      cmocka_unit_test(test_response),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
