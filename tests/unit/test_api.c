/* test_api: HTTP API routing, path decoding, admin token check, JSON errors, and the
 * external authorizer's codec — the pure parts of nt_api and nt_authz, without sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter.pb-c.h"
#include "nt_api.h"
#include "nt_authz.h"
#include "nt_err.h"

static nt_api_match route(int method, const char *path) {
  nt_api_match m;
  nt_api_route(method, path, strlen(path), &m);
  return m;
}

/* ---------------------------------------------------------------- routing ---- */

static void test_routes(void **state) {
  nt_api_match m = route(HTTP_GET, "/healthz");
  assert_int_equal(m.route, NT_API_HEALTHZ);
  assert_int_equal(m.status, 0);
  assert_true(m.is_public);
  assert_int_equal(route(HTTP_GET, "/readyz").route, NT_API_READYZ);
  m = route(HTTP_GET, "/metrics");
  assert_int_equal(m.route, NT_API_METRICS);
  assert_true(m.is_public);

  m = route(HTTP_GET, "/@connections/AbC123");
  assert_int_equal(m.route, NT_API_CONN_GET);
  assert_false(m.is_public);
  assert_string_equal(m.id, "AbC123");
  assert_int_equal(route(HTTP_POST, "/@connections/x").route, NT_API_CONN_POST);
  assert_int_equal(route(HTTP_DELETE, "/@connections/x").route, NT_API_CONN_DELETE);

  m = route(HTTP_POST, "/v1/tenants/acme/rooms/lobby/messages");
  assert_int_equal(m.route, NT_API_ROOM_MESSAGE);
  assert_string_equal(m.id, "acme");
  assert_string_equal(m.sub, "lobby");
  m = route(HTTP_POST, "/v1/tenants/acme/users/bob/messages");
  assert_int_equal(m.route, NT_API_USER_MESSAGE);
  assert_string_equal(m.sub, "bob");
  m = route(HTTP_GET, "/v1/tenants/acme/rooms/lobby/presence");
  assert_int_equal(m.route, NT_API_ROOM_PRESENCE);
  assert_false(m.is_public);
}

static void test_route_uses_only_the_path_length(void **state) {
  /* The caller passes path_len (before '?'): the query never reaches the router. */
  const char *t = "/@connections/abc?x=1";
  nt_api_match m;
  nt_api_route(HTTP_GET, t, 17, &m);
  assert_int_equal(m.route, NT_API_CONN_GET);
  assert_string_equal(m.id, "abc");
}

static void test_not_found(void **state) {
  const char *paths[] = {"/", "", "x", "/nope", "/healthz/", "/@connections", "/@connections/",
                         "/@connections/a/b", "//healthz", "/v1/tenants/t/rooms/r",
                         "/v1/tenants/t/rooms/r/messages/", "/v1/tenants/t/users/u/presence",
                         "/v1/tenants/t/groups/r/messages", "/v2/tenants/t/rooms/r/messages",
                         "/v1/tenants/t/rooms/r/messages/x/y/z", "/ws"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    nt_api_match m = route(HTTP_GET, paths[i]);
    assert_int_equal(m.route, NT_API_NONE);
    assert_int_equal(m.status, 404);
    assert_non_null(m.why);
    assert_false(m.is_public);
  }
  nt_api_match m;
  nt_api_route(HTTP_GET, NULL, 0, &m);
  assert_int_equal(m.status, 404);
}

static void test_wrong_method(void **state) {
  assert_int_equal(route(HTTP_POST, "/healthz").status, 405);
  assert_true(route(HTTP_POST, "/metrics").is_public);
  assert_int_equal(route(HTTP_PUT, "/@connections/x").status, 405);
  assert_int_equal(route(HTTP_PATCH, "/@connections/x").status, 405);
  assert_int_equal(route(HTTP_PUT, "/v1/tenants/t/rooms/r/messages").status, 405);
  /* GET on a room's messages is its history (docs/history.md) */
  assert_int_equal(route(HTTP_GET, "/v1/tenants/t/rooms/r/messages").route, NT_API_ROOM_HISTORY);
  assert_int_equal(route(HTTP_DELETE, "/v1/tenants/t/users/u/messages").status, 405);
  assert_int_equal(route(HTTP_POST, "/v1/tenants/t/rooms/r/presence").status, 405);
  /* 405 is decided before ids are looked at. */
  assert_int_equal(route(HTTP_PUT, "/@connections/a.b").status, 405);
}

static void test_bad_ids(void **state) {
  const char *bad[] = {"/@connections/a.b", "/@connections/a*", "/@connections/%3E",
                       "/@connections/a%20b", "/@connections/a%2Fb", "/@connections/a%00",
                       "/@connections/%zz", "/@connections/%4", "/@connections/a%7Bb",
                       "/@connections/%FF"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    nt_api_match m = route(HTTP_GET, bad[i]);
    assert_int_equal(m.status, 400);
    assert_int_equal(m.route, NT_API_NONE);
    assert_string_equal(m.why, "invalid connection id");
  }
  nt_api_match m = route(HTTP_POST, "/v1/tenants/a.b/rooms/r/messages");
  assert_int_equal(m.status, 400);
  assert_string_equal(m.why, "invalid tenant id");
  m = route(HTTP_POST, "/v1/tenants/t/rooms/r>/messages");
  assert_int_equal(m.status, 400);
  assert_string_equal(m.why, "invalid room id");
  m = route(HTTP_POST, "/v1/tenants/t/users/u%09/messages");
  assert_int_equal(m.status, 400);
  assert_string_equal(m.why, "invalid user id");

  /* 128 bytes is the longest id; 129 is refused. */
  char path[256], id[130];
  memset(id, 'a', 128);
  id[128] = '\0';
  snprintf(path, sizeof path, "/@connections/%s", id);
  assert_int_equal(route(HTTP_GET, path).route, NT_API_CONN_GET);
  id[128] = 'a';
  id[129] = '\0';
  snprintf(path, sizeof path, "/@connections/%s", id);
  assert_int_equal(route(HTTP_GET, path).status, 400);
}

static void test_percent_decoded_segments(void **state) {
  nt_api_match m = route(HTTP_GET, "/%40connections/abc");
  assert_int_equal(m.route, NT_API_CONN_GET);
  m = route(HTTP_POST, "/v1/tenants/t/users/j%C3%BCrgen/messages");
  assert_int_equal(m.route, NT_API_USER_MESSAGE);
  assert_string_equal(m.sub, "j\xc3\xbcrgen");
  m = route(HTTP_GET, "/v1/tenants/t/rooms/%72oom/presence");
  assert_string_equal(m.sub, "room");
  m = route(HTTP_GET, "/%68ealthz");
  assert_int_equal(m.route, NT_API_HEALTHZ);
}

/* ---------------------------------------------------------------- auth ------- */

static void test_admin_token(void **state) {
  const char *tok = "s3cret-admin-token";
  assert_int_equal(nt_api_check_auth(tok, "Bearer s3cret-admin-token"), 0);
  assert_int_equal(nt_api_check_auth(tok, "bearer s3cret-admin-token"), 0);
  assert_int_equal(nt_api_check_auth(tok, "Bearer   s3cret-admin-token"), 0);
  assert_int_equal(nt_api_check_auth(tok, NULL), 401);
  assert_int_equal(nt_api_check_auth(tok, ""), 401);
  assert_int_equal(nt_api_check_auth(tok, "Bearer "), 401);
  assert_int_equal(nt_api_check_auth(tok, "Bearer"), 401);
  assert_int_equal(nt_api_check_auth(tok, "Basic czNjcmV0"), 401);
  assert_int_equal(nt_api_check_auth(tok, "s3cret-admin-token"), 401);
  assert_int_equal(nt_api_check_auth(tok, "Bearer wrong"), 403);
  assert_int_equal(nt_api_check_auth(tok, "Bearer s3cret-admin-toke"), 403);
  assert_int_equal(nt_api_check_auth(tok, "Bearer s3cret-admin-token2"), 403);
  assert_int_equal(nt_api_check_auth(tok, "Bearer S3CRET-ADMIN-TOKEN"), 403);
  /* No token configured: the API is disabled, whatever is sent. */
  assert_int_equal(nt_api_check_auth(NULL, "Bearer x"), 403);
  assert_int_equal(nt_api_check_auth("", "Bearer "), 403);
  assert_int_equal(nt_api_check_auth(NULL, NULL), 403);
}

/* ---------------------------------------------------------------- JSON ------- */

static void test_error_json(void **state) {
  size_t len = 0;
  char *s = nt_api_error_json("gone", "the \"connection\" is gone", &len);
  assert_non_null(s);
  assert_int_equal(len, strlen(s));
  json_error_t e;
  json_t *o = json_loads(s, 0, &e);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "error")), "gone");
  assert_string_equal(json_string_value(json_object_get(o, "message")),
                      "the \"connection\" is gone");
  json_decref(o);
  free(s);

  assert_string_equal(nt_api_error_code(400), "bad_request");
  assert_string_equal(nt_api_error_code(401), "unauthorized");
  assert_string_equal(nt_api_error_code(403), "forbidden");
  assert_string_equal(nt_api_error_code(404), "not_found");
  assert_string_equal(nt_api_error_code(410), "gone");
  assert_string_equal(nt_api_error_code(413), "too_large");
  assert_string_equal(nt_api_error_code(503), "unavailable");
  assert_string_equal(nt_api_error_code(504), "timeout");
  assert_string_equal(nt_api_error_code(500), "internal");
}

static void test_error_response(void **state) {
  size_t len = 0;
  char *r = nt_api_error_response(413, &len);
  assert_non_null(r);
  assert_int_equal(len, strlen(r));
  assert_memory_equal(r, "HTTP/1.1 413 ", 13);
  assert_non_null(strstr(r, "Content-Type: application/json\r\n"));
  assert_non_null(strstr(r, "Connection: close\r\n"));
  const char *body = strstr(r, "\r\n\r\n");
  assert_non_null(body);
  json_error_t e;
  json_t *o = json_loads(body + 4, 0, &e);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "error")), "too_large");
  json_decref(o);
  free(r);
}

/* ---------------------------------------------------------------- authorizer - */

static void test_query_without_token(void **state) {
  struct { const char *target, *want; } cases[] = {
      {"/ws", ""},
      {"/ws?", ""},
      {"/ws?token=abc", ""},
      {"/ws?token=abc&device=d1", "device=d1"},
      {"/ws?a=1&token=abc&b=2", "a=1&b=2"},
      {"/ws?a=1&%74oken=abc", "a=1"},
      {"/ws?token&a=%41", "a=%41"},
      {"/ws?tokens=1&x", "tokens=1&x"},
      {"/ws?a=1&token=x#frag", "a=1"},
      {"/ws?a=1&&b=2", "a=1&b=2"},
      {"/ws?%zz=1&c=3", "c=3"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *q = nt_authz_query_without_token(cases[i].target);
    assert_non_null(q);
    assert_string_equal(q, cases[i].want);
    free(q);
  }
  char *q = nt_authz_query_without_token(NULL);
  assert_string_equal(q, "");
  free(q);
}

static void test_authz_encode(void **state) {
  nt_identity id = {0};
  assert_int_equal(nt_identity_set(&id, "alice", "acme"), 0);
  id.exp = 1234;
  const char *rooms[] = {"team-*", "lobby"};
  assert_int_equal(nt_identity_set_rooms(&id, rooms, 2), 0);
  nt_http_req req = {0};
  char target[] = "/ws?token=SECRET&device=d1";
  req.target = target;
  req.path_len = 3;
  req.hdr[NT_HDR_HOST] = "chat.example";
  req.hdr[NT_HDR_AUTHORIZATION] = "Bearer SECRET";
  req.hdr[NT_HDR_USER_AGENT] = "ua/1";
  req.hdr[NT_HDR_ORIGIN] = "https://app.example";
  size_t len = 0;
  uint8_t *buf = nt_authz_encode(&id, "CONN1", "node-a", "10.0.0.1", &req, 99, &len);
  assert_non_null(buf);
  Natter__AuthRequest *ar = natter__auth_request__unpack(NULL, len, buf);
  assert_non_null(ar);
  assert_string_equal(ar->tenant, "acme");
  assert_string_equal(ar->user, "alice");
  assert_string_equal(ar->conn, "CONN1");
  assert_string_equal(ar->node, "node-a");
  assert_string_equal(ar->source_ip, "10.0.0.1");
  assert_string_equal(ar->user_agent, "ua/1");
  assert_string_equal(ar->origin, "https://app.example");
  assert_string_equal(ar->path, "/ws");
  assert_string_equal(ar->query, "device=d1");
  assert_int_equal(ar->n_rooms, 2);
  assert_string_equal(ar->rooms[0], "team-*");
  assert_true(ar->has_rooms_claim);
  assert_int_equal(ar->exp, 1234);
  assert_int_equal(ar->timestamp_ms, 99);
  assert_int_equal(ar->n_headers, 3);
  for (size_t i = 0; i < ar->n_headers; i++) {
    assert_string_not_equal(ar->headers[i]->name, "Authorization");
    assert_null(strstr(ar->headers[i]->value, "SECRET"));
  }
  assert_null(memmem(buf, len, "SECRET", 6)); /* the token never leaves the node */
  natter__auth_request__free_unpacked(ar, NULL);
  free(buf);
  nt_identity_clear(&id);
}

static uint8_t *pack_reply(int allow, const char *reason, int set_rooms, char **rooms,
                           size_t n, size_t *len) {
  Natter__AuthReply r = NATTER__AUTH_REPLY__INIT;
  r.allow = allow;
  r.reason = (char *)(reason ? reason : "");
  r.set_rooms = set_rooms;
  r.rooms = rooms;
  r.n_rooms = n;
  *len = natter__auth_reply__get_packed_size(&r);
  uint8_t *buf = malloc(*len ? *len : 1);
  natter__auth_reply__pack(&r, buf);
  return buf;
}

static void test_authz_apply(void **state) {
  nt_identity id = {0};
  assert_int_equal(nt_identity_set(&id, "alice", "acme"), 0);
  char reason[32];
  size_t len;

  uint8_t *b = pack_reply(1, NULL, 0, NULL, 0, &len);
  assert_int_equal(nt_authz_apply(b, len, &id, reason, sizeof reason), 0);
  assert_null(id.rooms); /* no rooms set: the token's claim stays */
  free(b);

  char *rooms[] = {"vip-*", "lobby"};
  b = pack_reply(1, NULL, 1, rooms, 2, &len);
  assert_int_equal(nt_authz_apply(b, len, &id, reason, sizeof reason), 0);
  assert_int_equal(id.nrooms, 2);
  assert_true(nt_identity_room_allowed(&id, "vip-1"));
  assert_true(nt_identity_room_allowed(&id, "lobby"));
  assert_false(nt_identity_room_allowed(&id, "other"));
  free(b);

  char *bad_rooms[] = {"a.b"};
  b = pack_reply(1, NULL, 1, bad_rooms, 1, &len);
  assert_int_equal(nt_authz_apply(b, len, &id, reason, sizeof reason), NT_EPROTO);
  assert_int_equal(id.nrooms, 2); /* unchanged */
  free(b);

  b = pack_reply(0, "banned\r\nX-Evil: 1 and a very long reason text", 0, NULL, 0, &len);
  assert_int_equal(nt_authz_apply(b, len, &id, reason, sizeof reason), NT_EFORBIDDEN);
  assert_int_equal(strlen(reason), sizeof reason - 1);
  assert_null(strchr(reason, '\r'));
  assert_null(strchr(reason, '\n'));
  assert_memory_equal(reason, "banned??X-Evil", 14);
  free(b);

  /* An empty reply is a deny (allow defaults to false): the authorizer fails closed. */
  assert_int_equal(nt_authz_apply((const uint8_t *)"", 0, &id, reason, sizeof reason),
                   NT_EFORBIDDEN);
  assert_string_equal(reason, "");
  /* Garbage does not decode. */
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_int_equal(nt_authz_apply(junk, sizeof junk, &id, reason, sizeof reason), NT_EPROTO);
  nt_identity_clear(&id);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routes),
      cmocka_unit_test(test_route_uses_only_the_path_length),
      cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_wrong_method),
      cmocka_unit_test(test_bad_ids),
      cmocka_unit_test(test_percent_decoded_segments),
      cmocka_unit_test(test_admin_token),
      cmocka_unit_test(test_error_json),
      cmocka_unit_test(test_error_response),
      cmocka_unit_test(test_query_without_token),
      cmocka_unit_test(test_authz_encode),
      cmocka_unit_test(test_authz_apply),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
