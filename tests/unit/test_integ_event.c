/* test_integ_event: route selection, Lambda proxy events and results of the HTTP
 * integration (nt_integ_event), without a network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "nt_err.h"
#include "nt_integ_event.h"

static nt_integ_routes routes(const char *list, const char *expr) {
  nt_integ_routes r;
  assert_int_equal(nt_integ_routes_init(&r, list, expr), 0);
  return r;
}

static const char *sel(const nt_integ_routes *r, const char *frame, char *reqid) {
  return nt_integ_select(r, frame, strlen(frame), reqid);
}

static void test_routes_parse(void **st) {
  nt_integ_routes r = routes(" $connect , $default,,sendMessage ", "$request.body.a.b");
  assert_int_equal(r.nkeys, 3);
  assert_string_equal(r.keys[0], "$connect");
  assert_string_equal(r.keys[2], "sendMessage");
  assert_int_equal(r.npath, 2);
  assert_string_equal(r.path[1], "b");
  assert_true(nt_integ_routes_has(&r, "$default"));
  assert_false(nt_integ_routes_has(&r, "$disconnect"));
  nt_integ_routes_free(&r);
  nt_integ_routes bad;
  memset(&bad, 0x5a, sizeof bad);
  assert_int_equal(nt_integ_routes_init(&bad, "x", "$request.header.a"), NT_EINVAL);
  assert_int_equal(nt_integ_routes_init(&bad, "x", "$request.body."), NT_EINVAL);
  assert_int_equal(nt_integ_routes_init(&bad, "x", "$request.body.a..b"), NT_EINVAL);
  assert_int_equal(nt_integ_routes_init(&bad, "x", "$request.body.a.b.c.d.e.f.g.h.i"),
                   NT_EINVAL);
  assert_int_equal(nt_integ_routes_init(&bad, NULL, "$request.body.a"), NT_EINVAL);
}

static void test_select(void **st) {
  char rid[NT_REQID_MAX + 1];
  nt_integ_routes r = routes("$connect,$default,sendMessage,echo", "$request.body.action");
  assert_string_equal(sel(&r, "{\"action\":\"echo\",\"requestId\":\"q1\"}", rid), "echo");
  assert_string_equal(rid, "\"q1\"");
  /* a built-in in the list goes to the integration, one not in it stays built in */
  assert_string_equal(sel(&r, "{\"action\":\"sendMessage\"}", rid), "sendMessage");
  assert_null(sel(&r, "{\"action\":\"joinRoom\",\"roomId\":\"a\",\"requestId\":7}", rid));
  assert_string_equal(rid, "7");
  /* no key, a key without a route, not an object, not JSON: $default */
  assert_string_equal(sel(&r, "{\"x\":1}", rid), "$default");
  assert_string_equal(sel(&r, "{\"action\":\"nosuch\"}", rid), "$default");
  assert_string_equal(sel(&r, "{\"action\":5}", rid), "$default");
  assert_string_equal(sel(&r, "[1,2]", rid), "$default");
  assert_string_equal(sel(&r, "hello", rid), "$default");
  assert_string_equal(rid, "");
  /* a frame cannot pick $connect */
  assert_string_equal(sel(&r, "{\"action\":\"$connect\"}", rid), "$default");
  /* a requestId of another type, or too long, is not echoed */
  assert_string_equal(sel(&r, "{\"action\":\"echo\",\"requestId\":{\"a\":1}}", rid), "echo");
  assert_string_equal(rid, "");
  nt_integ_routes_free(&r);
  /* without $default, what has no route stays with natter */
  r = routes("echo", "$request.body.meta.route");
  assert_string_equal(sel(&r, "{\"meta\":{\"route\":\"echo\"}}", rid), "echo");
  assert_null(sel(&r, "{\"action\":\"echo\"}", rid));
  assert_null(sel(&r, "{\"meta\":\"echo\"}", rid));
  nt_integ_routes_free(&r);
}

static json_t *event(const nt_integ_call *call, const json_t *claims) {
  nt_integ_conn_info ci = {.conn_id = "C1", .connected_at_ms = 1700000000123,
                           .source_ip = "10.0.0.1", .user_agent = NULL, .domain = "h:1",
                           .stage = "prod", .api_id = "natter", .principal = "alice",
                           .tenant = "t1", .claims = claims};
  size_t len = 0;
  char *s = nt_integ_event(&ci, call, &len);
  assert_non_null(s);
  assert_int_equal(len, strlen(s));
  json_t *v = json_loads(s, 0, NULL);
  free(s);
  assert_non_null(v);
  return v;
}

static const char *gs(json_t *v, const char *path) {
  json_t *x = v;
  char buf[128];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *tok = strtok(buf, "."); tok && x; tok = strtok(NULL, ".")) x = json_object_get(x, tok);
  return json_string_value(x);
}

static void test_event_message_and_disconnect(void **st) {
  json_t *claims = json_pack("{s:s, s:s, s:i, s:[s]}", "sub", "alice", "role", "admin", "exp",
                             99, "rooms", "a*");
  nt_integ_call call = {.type = NT_INTEG_MESSAGE, .route = "echo", .request_id = "R1",
                        .message_id = "M1", .now_ms = 1700000000999, .body = "{\"a\":\"\\u00e9\"}",
                        .body_len = 14};
  json_t *v = event(&call, claims);
  assert_string_equal(gs(v, "requestContext.routeKey"), "echo");
  assert_string_equal(gs(v, "requestContext.eventType"), "MESSAGE");
  assert_string_equal(gs(v, "requestContext.connectionId"), "C1");
  assert_string_equal(gs(v, "requestContext.messageId"), "M1");
  assert_string_equal(gs(v, "requestContext.requestId"), "R1");
  assert_string_equal(gs(v, "requestContext.domainName"), "h:1");
  assert_string_equal(gs(v, "requestContext.stage"), "prod");
  assert_string_equal(gs(v, "requestContext.apiId"), "natter");
  assert_string_equal(gs(v, "requestContext.identity.sourceIp"), "10.0.0.1");
  assert_string_equal(gs(v, "requestContext.identity.userAgent"), "");
  assert_string_equal(gs(v, "requestContext.authorizer.principalId"), "alice");
  assert_string_equal(gs(v, "requestContext.authorizer.tenantId"), "t1");
  assert_string_equal(gs(v, "requestContext.authorizer.role"), "admin");
  json_t *rc = json_object_get(v, "requestContext");
  assert_int_equal(json_integer_value(json_object_get(rc, "connectedAt")), 1700000000123);
  assert_int_equal(json_integer_value(json_object_get(rc, "requestTimeEpoch")), 1700000000999);
  assert_true(json_is_array(json_object_get(json_object_get(rc, "authorizer"), "rooms")));
  assert_null(json_object_get(rc, "disconnectStatusCode"));
  assert_string_equal(gs(v, "body"), "{\"a\":\"\\u00e9\"}");
  assert_true(json_is_false(json_object_get(v, "isBase64Encoded")));
  assert_null(json_object_get(v, "headers"));
  json_decref(v);
  nt_integ_call d = {.type = NT_INTEG_DISCONNECT, .route = "$disconnect", .request_id = "R2",
                     .message_id = "M2", .disconnect_code = 1001,
                     .disconnect_reason = "idle timeout"};
  v = event(&d, NULL); /* no claims: the two natter fields only */
  rc = json_object_get(v, "requestContext");
  assert_string_equal(gs(v, "requestContext.eventType"), "DISCONNECT");
  assert_int_equal(json_integer_value(json_object_get(rc, "disconnectStatusCode")), 1001);
  assert_string_equal(gs(v, "requestContext.disconnectReason"), "idle timeout");
  assert_null(json_object_get(rc, "messageId"));
  assert_null(json_object_get(v, "body"));
  assert_int_equal(json_object_size(json_object_get(rc, "authorizer")), 2);
  json_decref(v);
  json_decref(claims);
}

static void test_event_connect(void **st) {
  const char *names[] = {"Host", "User-Agent"}, *values[] = {"h:1", "ua/1"};
  nt_integ_call call = {.type = NT_INTEG_CONNECT, .route = "$connect", .request_id = "R",
                        .hdr_names = names, .hdr_values = values, .nhdrs = 2,
                        .query = "device=d%201&x=&flag"};
  json_t *v = event(&call, NULL);
  assert_string_equal(gs(v, "requestContext.eventType"), "CONNECT");
  assert_string_equal(gs(v, "headers.User-Agent"), "ua/1");
  json_t *mv = json_object_get(json_object_get(v, "multiValueHeaders"), "Host");
  assert_int_equal(json_array_size(mv), 1);
  assert_string_equal(json_string_value(json_array_get(mv, 0)), "h:1");
  assert_string_equal(gs(v, "queryStringParameters.device"), "d 1");
  assert_string_equal(gs(v, "queryStringParameters.x"), "");
  assert_string_equal(gs(v, "queryStringParameters.flag"), "");
  assert_null(json_object_get(v, "body"));
  assert_null(json_object_get(json_object_get(v, "requestContext"), "messageId"));
  json_decref(v);
}

static void test_result_read(void **st) {
  nt_integ_result r;
  const char *plain = "{\"type\":\"x\"}";
  assert_int_equal(nt_integ_result_read(200, plain, strlen(plain), &r), 0);
  assert_int_equal(r.status, 200);
  assert_ptr_equal(r.body, plain); /* a JSON answer without statusCode is plain */
  nt_integ_result_free(&r);
  const char *px = " {\"statusCode\":403,\"headers\":{},\"body\":\"no\"}";
  assert_int_equal(nt_integ_result_read(200, px, strlen(px), &r), 0);
  assert_int_equal(r.status, 403);
  assert_int_equal(r.body_len, 2);
  assert_memory_equal(r.body, "no", 2);
  nt_integ_result_free(&r);
  const char *b64 = "{\"statusCode\":200,\"isBase64Encoded\":true,\"body\":\"aGk/\"}";
  assert_int_equal(nt_integ_result_read(200, b64, strlen(b64), &r), 0);
  assert_int_equal(r.body_len, 3);
  assert_memory_equal(r.body, "hi?", 3);
  nt_integ_result_free(&r);
  const char *nobody = "{\"statusCode\":204}";
  assert_int_equal(nt_integ_result_read(200, nobody, strlen(nobody), &r), 0);
  assert_int_equal(r.status, 204);
  assert_int_equal(r.body_len, 0);
  nt_integ_result_free(&r);
  assert_int_equal(nt_integ_result_read(500, "boom", 4, &r), 0);
  assert_int_equal(r.status, 500);
  const char *bad[] = {"{\"statusCode\":\"200\"}", "{\"statusCode\":99}",
                       "{\"statusCode\":200,\"body\":{}}",
                       "{\"statusCode\":200,\"isBase64Encoded\":true,\"body\":\"a\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(nt_integ_result_read(200, bad[i], strlen(bad[i]), &r), NT_EPROTO);
}

static void test_token_claims(void **st) {
  /* {"sub":"a","n":1} base64url, no padding */
  json_t *c = nt_integ_token_claims("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIiwibiI6MX0.sig");
  assert_non_null(c);
  assert_string_equal(json_string_value(json_object_get(c, "sub")), "a");
  assert_int_equal(json_integer_value(json_object_get(c, "n")), 1);
  json_decref(c);
  assert_null(nt_integ_token_claims("nodots"));
  assert_null(nt_integ_token_claims("a.WzFd.b")); /* [1]: not an object */
  assert_null(nt_integ_token_claims("a.!!!.b"));
  assert_null(nt_integ_token_claims(NULL));
}

static void test_error_frame(void **st) {
  nt_frame *f = nt_integ_error_frame("backend_error", 503, "down", "\"r1\"");
  assert_non_null(f);
  json_t *v = json_loadb((const char *)nt_frame_payload(f), f->len - f->hdr, 0, NULL);
  assert_string_equal(gs(v, "code"), "backend_error");
  assert_int_equal(json_integer_value(json_object_get(v, "status")), 503);
  assert_string_equal(gs(v, "requestId"), "r1");
  json_decref(v);
  nt_frame_unref(f);
  f = nt_integ_error_frame("timeout", 0, NULL, "");
  v = json_loadb((const char *)nt_frame_payload(f), f->len - f->hdr, 0, NULL);
  assert_null(json_object_get(v, "status"));
  assert_null(json_object_get(v, "requestId"));
  assert_string_equal(gs(v, "message"), "timeout");
  json_decref(v);
  nt_frame_unref(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routes_parse),       cmocka_unit_test(test_select),
      cmocka_unit_test(test_event_message_and_disconnect), cmocka_unit_test(test_event_connect),
      cmocka_unit_test(test_result_read),        cmocka_unit_test(test_token_claims),
      cmocka_unit_test(test_error_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
