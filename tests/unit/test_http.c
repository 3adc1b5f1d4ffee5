/* test_http: nt_http request parsing (scripted byte feeds), query params, responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_http.h"

#define MAX_HEAD 4096
#define MAX_BODY 1024

static const char get_req[] =
    "GET /ws?token=abc&x=1 HTTP/1.1\r\n"
    "Host: chat.example.com\r\n"
    "upgrade: websocket\r\n"
    "CONNECTION: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13  \r\n"
    "X-Ignored: whatever\r\n"
    "Origin:\r\n"
    "\r\n";

/* Feeds `raw` whole and expects one complete request using exactly `len` bytes. */
static nt_http_parser *parse_ok(const char *raw, size_t len) {
  nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
  assert_non_null(p);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, raw, strlen(raw), &used), 1);
  assert_int_equal(used, len);
  assert_non_null(nt_http_parser_req(p));
  return p;
}

/* Feeds `raw` whole and expects an error answered with `status`. */
static void expect_status(const char *raw, size_t max_head, size_t max_body, int status) {
  nt_http_parser *p = nt_http_parser_new(max_head, max_body);
  assert_non_null(p);
  size_t used = 0;
  int rc = nt_http_feed(p, raw, strlen(raw), &used);
  assert_true(rc < 0);
  assert_int_equal(nt_http_parser_status(p), status);
  assert_int_equal(rc, (status == 413 || status == 431) ? NT_ETOOLARGE : NT_EPROTO);
  assert_null(nt_http_parser_req(p));
  /* The error sticks: the connection is to be answered and closed. */
  assert_int_equal(nt_http_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &used), rc);
  nt_http_parser_free(p);
}

static void check_get_req(const nt_http_req *r) {
  assert_int_equal(r->method, HTTP_GET);
  assert_string_equal(r->target, "/ws?token=abc&x=1");
  assert_int_equal(r->path_len, 3);
  assert_string_equal(r->hdr[NT_HDR_HOST], "chat.example.com");
  assert_string_equal(r->hdr[NT_HDR_UPGRADE], "websocket");
  assert_string_equal(r->hdr[NT_HDR_CONNECTION], "keep-alive, Upgrade");
  assert_string_equal(r->hdr[NT_HDR_WS_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
  assert_string_equal(r->hdr[NT_HDR_WS_VERSION], "13"); /* trailing OWS trimmed */
  assert_string_equal(r->hdr[NT_HDR_ORIGIN], "");       /* present but empty */
  assert_null(r->hdr[NT_HDR_AUTHORIZATION]);
  assert_null(r->hdr[NT_HDR_USER_AGENT]);
  assert_null(r->body);
  assert_int_equal(r->body_len, 0);
  assert_int_equal(r->keep_alive, 1);
  assert_int_equal(r->upgrade, 1);
  assert_int_equal(r->http_minor, 1);
}

/* ---- streaming ---------------------------------------------------------------------- */

static void test_whole(void **state) {
  (void)state;
  nt_http_parser *p = parse_ok(get_req, sizeof get_req - 1);
  check_get_req(nt_http_parser_req(p));
  nt_http_parser_free(p);
}

static void test_byte_by_byte(void **state) {
  (void)state;
  nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
  size_t len = sizeof get_req - 1, used = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    assert_int_equal(nt_http_feed(p, get_req + i, 1, &used), 0);
    assert_int_equal(used, 1);
    assert_null(nt_http_parser_req(p));
  }
  assert_int_equal(nt_http_feed(p, get_req + len - 1, 1, &used), 1);
  assert_int_equal(used, 1);
  check_get_req(nt_http_parser_req(p));
  nt_http_parser_free(p);
}

/* Every two-piece split must give the same request, whatever byte it falls on. */
static void test_every_split(void **state) {
  (void)state;
  static const char raw[] = "POST /api/rooms/r1/messages?a=b HTTP/1.1\r\n"
                            "Host: h\r\nContent-Type: application/json\r\n"
                            "Authorization: Bearer t0k\r\nContent-Length: 11\r\n\r\n"
                            "{\"x\":\"yz\"}\n";
  size_t len = sizeof raw - 1;
  for (size_t cut = 0; cut <= len; cut++) {
    nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
    size_t used = 0;
    int rc = cut ? nt_http_feed(p, raw, cut, &used) : 0;
    if (cut < len) {
      assert_int_equal(rc, 0);
      assert_int_equal(used, cut);
      rc = nt_http_feed(p, raw + cut, len - cut, &used);
      assert_int_equal(used, len - cut);
    } else {
      assert_int_equal(used, len);
    }
    assert_int_equal(rc, 1);
    const nt_http_req *r = nt_http_parser_req(p);
    assert_int_equal(r->method, HTTP_POST);
    assert_string_equal(r->target, "/api/rooms/r1/messages?a=b");
    assert_int_equal(r->path_len, strlen("/api/rooms/r1/messages"));
    assert_string_equal(r->hdr[NT_HDR_CONTENT_TYPE], "application/json");
    assert_string_equal(r->hdr[NT_HDR_AUTHORIZATION], "Bearer t0k");
    assert_int_equal(r->body_len, 11);
    assert_memory_equal(r->body, "{\"x\":\"yz\"}\n", 11);
    assert_int_equal(r->body[11], 0);
    assert_int_equal(r->upgrade, 0);
    nt_http_parser_free(p);
  }
}

static void test_pipelined(void **state) {
  (void)state;
  static const char one[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  static const char two[] = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  static const char three[] = "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  char buf[512];
  snprintf(buf, sizeof buf, "%s%s%s", one, two, three);
  size_t len = strlen(buf), off = 0, used = 0;
  nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);

  assert_int_equal(nt_http_feed(p, buf, len, &used), 1);
  assert_int_equal(used, sizeof one - 1);
  const nt_http_req *r = nt_http_parser_req(p);
  assert_string_equal(r->target, "/a");
  assert_string_equal((const char *)r->body, "hello");
  /* Not reset yet: nothing more is taken. */
  assert_int_equal(nt_http_feed(p, buf + used, len - used, &used), 1);
  assert_int_equal(used, 0);
  off += sizeof one - 1;

  nt_http_parser_reset(p);
  assert_int_equal(nt_http_parser_held(p), 0);
  assert_int_equal(nt_http_feed(p, buf + off, len - off, &used), 1);
  assert_int_equal(used, sizeof two - 1);
  r = nt_http_parser_req(p);
  assert_string_equal(r->target, "/b");
  assert_null(r->body);
  assert_int_equal(r->keep_alive, 1);
  off += used;

  nt_http_parser_reset(p);
  assert_int_equal(nt_http_feed(p, buf + off, len - off, &used), 1);
  assert_int_equal(used, sizeof three - 1);
  r = nt_http_parser_req(p);
  assert_string_equal(r->target, "/c");
  assert_int_equal(r->keep_alive, 0);
  nt_http_parser_free(p);
}

static void test_upgrade_keeps_frames(void **state) {
  (void)state;
  /* A masked text frame "hi" sent right behind the handshake, in the same segment. */
  static const char frame[] = "\x81\x82\x01\x02\x03\x04\x69\x6b";
  char buf[1024];
  size_t head = sizeof get_req - 1, flen = sizeof frame - 1;
  memcpy(buf, get_req, head);
  memcpy(buf + head, frame, flen);

  nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, buf, head + flen, &used), 1);
  assert_int_equal(used, head);
  assert_memory_equal(buf + used, frame, flen);
  assert_int_equal(nt_http_parser_req(p)->upgrade, 1);
  nt_http_parser_free(p);

  /* Split inside the final CRLF: the frame bytes of the second piece are left over. */
  p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
  assert_int_equal(nt_http_feed(p, buf, head - 1, &used), 0);
  assert_int_equal(nt_http_feed(p, buf + head - 1, 1 + flen, &used), 1);
  assert_int_equal(used, 1);
  check_get_req(nt_http_parser_req(p));
  nt_http_parser_free(p);
}

static void test_chunked_body_and_trailers(void **state) {
  (void)state;
  static const char raw[] = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n6\r\n world\r\n0\r\n"
                            "Authorization: Bearer smuggled\r\n\r\nNEXT";
  nt_http_parser *p = parse_ok(raw, sizeof raw - 1 - 4);
  const nt_http_req *r = nt_http_parser_req(p);
  assert_int_equal(r->body_len, 11);
  assert_string_equal((const char *)r->body, "hello world");
  assert_null(r->hdr[NT_HDR_AUTHORIZATION]); /* trailers are not headers */
  nt_http_parser_free(p);
}

/* ---- headers ------------------------------------------------------------------------ */

static void test_repeated_headers_joined(void **state) {
  (void)state;
  static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
                            "X-Forwarded-For: 10.0.0.1\r\nconnection:  Upgrade \r\n"
                            "X-Forwarded-For: 10.0.0.2\r\n\r\n";
  nt_http_parser *p = parse_ok(raw, sizeof raw - 1);
  const nt_http_req *r = nt_http_parser_req(p);
  assert_string_equal(r->hdr[NT_HDR_CONNECTION], "keep-alive, Upgrade");
  assert_string_equal(r->hdr[NT_HDR_X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");
  nt_http_parser_free(p);
}

static void test_unknown_headers_not_stored(void **state) {
  (void)state;
  char raw[4096];
  int n = snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
  memset(raw + n, 'a', 3000);
  n += 3000;
  n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\nSec-WebSocket-Extensions-But-Longer: x\r\n\r\n");
  nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, raw, (size_t)n, &used), 1);
  /* Only the target and Host are held, not the 3000-byte value. */
  assert_true(nt_http_parser_held(p) > 0);
  assert_true(nt_http_parser_held(p) < 256);
  assert_null(nt_http_parser_req(p)->hdr[NT_HDR_WS_EXTENSIONS]);
  nt_http_parser_free(p);
}

static void test_keep_alive(void **state) {
  (void)state;
  struct {
    const char *raw;
    int keep_alive, minor;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1, 1},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0, 1},
      {"GET / HTTP/1.0\r\n\r\n", 0, 0},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, 0},
      {"GET / HTTP/1.7\r\nHost: h\r\n\r\n", 1, 1}, /* a later 1.x is spoken as 1.1 */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nt_http_parser *p = parse_ok(cases[i].raw, strlen(cases[i].raw));
    assert_int_equal(nt_http_parser_req(p)->keep_alive, cases[i].keep_alive);
    assert_int_equal(nt_http_parser_req(p)->http_minor, cases[i].minor);
    nt_http_parser_free(p);
  }
}

/* ---- errors ------------------------------------------------------------------------- */

static void test_400(void **state) {
  (void)state;
  expect_status("G@T / HTTP/1.1\r\n\r\n", MAX_HEAD, MAX_BODY, 400);
  expect_status("GET / HTTP/1.1\r\nX: a\001b\r\n\r\n", MAX_HEAD, MAX_BODY, 400);
  expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", MAX_HEAD, MAX_BODY, 400);
  expect_status("GET / HTTP/1.12\r\n\r\n", MAX_HEAD, MAX_BODY, 400);
  expect_status("GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", MAX_HEAD, MAX_BODY, 400);
  /* Both lengths: the classic request-smuggling shape. */
  expect_status("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                MAX_HEAD, MAX_BODY, 400);
  expect_status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", MAX_HEAD, MAX_BODY, 400);
}

/* RFC 9112 strictness: whitespace before the colon, obs-fold, bare LF or CR, and a 1.1
 * request without Host are 400 — whole or byte by byte — while the same requests written
 * correctly parse; a body containing bare LFs is not a head. */
static void test_400_strict_rfc9112(void **state) {
  (void)state;
  static const char *const bad[] = {
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\n\n",
      "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\n\n",
      "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", /* obs-fold */
      "GET / HTTP/1.1\r\n\r\n",                             /* no Host */
      "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    expect_status(bad[i], MAX_HEAD, MAX_BODY, 400);
    /* byte by byte too: the scanner keeps its state across feeds */
    nt_http_parser *p = nt_http_parser_new(MAX_HEAD, MAX_BODY);
    size_t used = 0;
    int rc = 0;
    for (size_t k = 0; bad[i][k] && rc == 0; k++) rc = nt_http_feed(p, bad[i] + k, 1, &used);
    assert_int_equal(rc, NT_EPROTO);
    assert_int_equal(nt_http_parser_status(p), 400);
    nt_http_parser_free(p);
  }
  /* HTTP/1.0 needs no Host; spaces inside values are fine; a body may hold bare LFs */
  nt_http_parser *p = parse_ok("GET / HTTP/1.0\r\n\r\n", 18);
  nt_http_parser_free(p);
  static const char ok[] = "POST / HTTP/1.1\r\nHost: h\r\nX-A: b : c\r\n"
                           "Content-Length: 4\r\n\r\na\nb\n";
  p = parse_ok(ok, sizeof ok - 1);
  assert_int_equal(nt_http_parser_req(p)->body_len, 4);
  nt_http_parser_free(p);
  static const char lead[] = "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"; /* leading CRLF */
  p = parse_ok(lead, sizeof lead - 1);
  nt_http_parser_free(p);
}

static void test_413(void **state) {
  (void)state;
  expect_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", MAX_HEAD, 10,
                413);
  expect_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999\r\n\r\n",
                MAX_HEAD, 10, 413);
  expect_status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
                MAX_HEAD, 10, 413);
  /* Exactly at the limit is fine. */
  static const char ok[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
  nt_http_parser *p = nt_http_parser_new(MAX_HEAD, 10);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, ok, sizeof ok - 1, &used), 1);
  assert_int_equal(nt_http_parser_req(p)->body_len, 10);
  nt_http_parser_free(p);
}

static void test_431(void **state) {
  (void)state;
  static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"; /* 27 bytes */
  size_t len = sizeof raw - 1, used = 0;
  /* A head of exactly the limit passes; one byte less of limit refuses it. */
  nt_http_parser *p = nt_http_parser_new(len, 0);
  assert_int_equal(nt_http_feed(p, raw, len, &used), 1);
  nt_http_parser_free(p);
  expect_status(raw, len - 1, 0, 431);

  /* Refused even when dribbled in small pieces, and without storing past the limit. */
  p = nt_http_parser_new(64, 0);
  char line[] = "X-Filler-Header-That-Is-Long: value\r\n";
  int rc = nt_http_feed(p, "GET / HTTP/1.1\r\n", 16, &used);
  for (int i = 0; i < 10 && rc == 0; i++) rc = nt_http_feed(p, line, sizeof line - 1, &used);
  assert_int_equal(rc, NT_ETOOLARGE);
  assert_int_equal(nt_http_parser_status(p), 431);
  nt_http_parser_free(p);

  /* A huge target (the one part of the head always stored) is cut at the limit. */
  char big[300];
  memset(big, 'a', sizeof big);
  memcpy(big, "GET /", 5);
  p = nt_http_parser_new(100, 0);
  assert_int_equal(nt_http_feed(p, big, sizeof big, &used), NT_ETOOLARGE);
  assert_int_equal(nt_http_parser_status(p), 431);
  assert_true(nt_http_parser_held(p) <= 128);
  nt_http_parser_free(p);
}

static void test_505(void **state) {
  (void)state;
  expect_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n", MAX_HEAD, MAX_BODY, 505);
  expect_status("GET / HTTP/2\r\nHost: h\r\n\r\n", MAX_HEAD, MAX_BODY, 505);
  expect_status("GET / HTTP/3.0\r\n\r\n", MAX_HEAD, MAX_BODY, 505);
  expect_status("GET /\r\n\r\n", MAX_HEAD, MAX_BODY, 505); /* HTTP/0.9 */
}

static void test_reset_reuse_and_args(void **state) {
  (void)state;
  nt_http_parser *p = parse_ok(get_req, sizeof get_req - 1);
  assert_true(nt_http_parser_held(p) > 0);
  nt_http_parser_reset(p);
  assert_null(nt_http_parser_req(p));
  assert_int_equal(nt_http_parser_held(p), 0);
  assert_int_equal(nt_http_parser_status(p), 0);
  size_t used = 0;
  assert_int_equal(nt_http_feed(p, get_req, sizeof get_req - 1, &used), 1);
  check_get_req(nt_http_parser_req(p));
  assert_int_equal(nt_http_feed(NULL, "x", 1, &used), NT_EINVAL);
  assert_int_equal(nt_http_feed(p, NULL, 1, &used), NT_EINVAL);
  nt_http_parser_free(p);
  nt_http_parser_free(NULL);
}

/* ---- query parameters and token lists ----------------------------------------------- */

static void test_query_param(void **state) {
  (void)state;
  char out[64];
  const char *t = "/ws?token=a%2Eb.c%2d&name=J%C3%BCrgen+M%20x&empty=&flag&dup=1&dup=2"
                  "&room%5Fid=r1&tok=short#frag=1";
  assert_int_equal(nt_http_query_param(t, "token", out, sizeof out), 6);
  assert_string_equal(out, "a.b.c-");
  assert_int_equal(nt_http_query_param(t, "name", out, sizeof out), 11);
  assert_string_equal(out, "J\xc3\xbcrgen M x");
  assert_int_equal(nt_http_query_param(t, "empty", out, sizeof out), 0);
  assert_string_equal(out, "");
  assert_int_equal(nt_http_query_param(t, "flag", out, sizeof out), 0);
  assert_int_equal(nt_http_query_param(t, "dup", out, sizeof out), 1);
  assert_string_equal(out, "1"); /* first occurrence wins */
  assert_int_equal(nt_http_query_param(t, "room_id", out, sizeof out), 2);
  assert_int_equal(nt_http_query_param(t, "tok", out, sizeof out), 5);
  assert_string_equal(out, "short");
  assert_int_equal(nt_http_query_param(t, "frag", out, sizeof out), NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param(t, "toke", out, sizeof out), NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param("/ws", "token", out, sizeof out), NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param("/ws?", "token", out, sizeof out), NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param("/ws?&&token=x&", "token", out, sizeof out), 1);
}

static void test_query_param_errors(void **state) {
  (void)state;
  char out[8];
  const char *bad[] = {"/?t=%", "/?t=%4", "/?t=ab%G1", "/?t=%zz", "/?t=a%00b", "/?t=%4&x=1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    strcpy(out, "junk");
    assert_int_equal(nt_http_query_param(bad[i], "t", out, sizeof out), NT_EINVAL);
    assert_string_equal(out, "");
  }
  /* A malformed escape in another parameter does not matter. */
  assert_int_equal(nt_http_query_param("/?x=%%&t=ok", "t", out, sizeof out), 2);
  /* 7 bytes + NUL fit in 8; 8 do not (counted after decoding). */
  assert_int_equal(nt_http_query_param("/?t=%41bcdefg", "t", out, sizeof out), 7);
  assert_string_equal(out, "Abcdefg");
  assert_int_equal(nt_http_query_param("/?t=abcdefgh", "t", out, sizeof out), NT_ETOOLARGE);
  assert_int_equal(nt_http_query_param(NULL, "t", out, sizeof out), NT_EINVAL);
  assert_int_equal(nt_http_query_param("/?t=1", "t", out, 0), NT_EINVAL);
  /* a query inside the fragment is no query: a token there is never honoured */
  assert_int_equal(nt_http_query_param("/ws#?token=x", "token", out, sizeof out),
                   NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param("/ws#a?token=x", "token", out, sizeof out),
                   NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param("/ws?a=1#&token=x", "token", out, sizeof out),
                   NT_ENOTFOUND);
  assert_int_equal(nt_http_query_param("/ws?token=ok#?token=x", "token", out, sizeof out), 2);
  assert_string_equal(out, "ok");
}

static void test_has_token(void **state) {
  (void)state;
  assert_int_equal(nt_http_has_token("keep-alive, Upgrade", "upgrade"), 1);
  assert_int_equal(nt_http_has_token("Upgrade", "upgrade"), 1);
  assert_int_equal(nt_http_has_token(" \tupgrade\t ,x", "UPGRADE"), 1);
  assert_int_equal(nt_http_has_token("a,,b, upgrade", "upgrade"), 1);
  assert_int_equal(nt_http_has_token("upgrades, keep-alive", "upgrade"), 0);
  assert_int_equal(nt_http_has_token("up grade", "upgrade"), 0);
  assert_int_equal(nt_http_has_token("", "upgrade"), 0);
  assert_int_equal(nt_http_has_token(NULL, "upgrade"), 0);
  assert_int_equal(nt_http_has_token("websocket", "web"), 0);
}

/* ---- responses ---------------------------------------------------------------------- */

static void test_response(void **state) {
  (void)state;
  size_t len = 0;
  char *r = nt_http_response(200, "application/json", "{\"ok\":true}", 11,
                             "X-Node: n1\r\n", 1, &len);
  const char *want = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: 11\r\nConnection: keep-alive\r\nX-Node: n1\r\n\r\n"
                     "{\"ok\":true}";
  assert_int_equal(len, strlen(want));
  assert_memory_equal(r, want, len);
  free(r);

  r = nt_http_response(404, NULL, NULL, 0, NULL, 0, &len);
  want = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  assert_int_equal(len, strlen(want));
  assert_string_equal(r, want);
  free(r);

  /* 204 never carries a length or body. */
  r = nt_http_response(204, NULL, "x", 1, NULL, 1, &len);
  assert_string_equal(r, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
  free(r);

  /* The parser and the response agree: what we write, we can read. */
  char body[600];
  memset(body, 'b', sizeof body);
  r = nt_http_response(503, "text/plain", body, sizeof body, NULL, 0, &len);
  assert_non_null(strstr(r, "503 Service Unavailable\r\n"));
  assert_memory_equal(r + len - sizeof body, body, sizeof body);
  free(r);
}

static void test_reasons(void **state) {
  (void)state;
  struct {
    int code;
    const char *reason;
  } want[] = {
      {101, "Switching Protocols"}, {200, "OK"}, {204, "No Content"},
      {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
      {404, "Not Found"}, {405, "Method Not Allowed"}, {410, "Gone"},
      {413, "Payload Too Large"}, {426, "Upgrade Required"}, {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
      {503, "Service Unavailable"}, {505, "HTTP Version Not Supported"}, {799, "Unknown"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_string_equal(nt_http_reason(want[i].code), want[i].reason);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole),
      cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_every_split),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_upgrade_keeps_frames),
      cmocka_unit_test(test_chunked_body_and_trailers),
      cmocka_unit_test(test_repeated_headers_joined),
      cmocka_unit_test(test_unknown_headers_not_stored),
      cmocka_unit_test(test_keep_alive),
      cmocka_unit_test(test_400),
      cmocka_unit_test(test_400_strict_rfc9112),
      cmocka_unit_test(test_413),
      cmocka_unit_test(test_431),
      cmocka_unit_test(test_505),
      cmocka_unit_test(test_reset_reuse_and_args),
      cmocka_unit_test(test_query_param),
      cmocka_unit_test(test_query_param_errors),
      cmocka_unit_test(test_has_token),
      cmocka_unit_test(test_response),
      cmocka_unit_test(test_reasons),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
