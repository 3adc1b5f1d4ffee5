/* test_webhook: webhook event JSON and the X-Natter-Signature value (nt_webhook). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "nt_webhook.h"

static void test_event_json(void **st) {
  nt_webhook_event ev = {.type = NT_WH_OFFLINE, .id = "E1", .tenant = "t1", .user = "alice",
                         .room = "lobby", .conn = "", .node = "A", .timestamp_ms = 1700000000123};
  size_t len = 0;
  char *s = nt_webhook_event_json(&ev, &len);
  assert_non_null(s);
  assert_int_equal(len, strlen(s));
  json_t *o = json_loads(s, 0, NULL);
  free(s);
  assert_string_equal(json_string_value(json_object_get(o, "type")), "offline");
  assert_string_equal(json_string_value(json_object_get(o, "id")), "E1");
  assert_string_equal(json_string_value(json_object_get(o, "tenantId")), "t1");
  assert_string_equal(json_string_value(json_object_get(o, "userId")), "alice");
  assert_string_equal(json_string_value(json_object_get(o, "roomId")), "lobby");
  assert_true(json_is_null(json_object_get(o, "connectionId")));
  assert_string_equal(json_string_value(json_object_get(o, "node")), "A");
  assert_int_equal(json_integer_value(json_object_get(o, "timestamp")), 1700000000123);
  assert_null(json_object_get(o, "reason"));
  json_decref(o);
  nt_webhook_event d = {.type = NT_WH_DISCONNECT, .id = "E2", .tenant = "t1", .user = "bob",
                        .conn = "C9", .node = "B", .reason = "node_lost"};
  s = nt_webhook_event_json(&d, NULL);
  o = json_loads(s, 0, NULL);
  free(s);
  assert_string_equal(json_string_value(json_object_get(o, "type")), "disconnect");
  assert_true(json_is_null(json_object_get(o, "roomId")));
  assert_string_equal(json_string_value(json_object_get(o, "connectionId")), "C9");
  assert_string_equal(json_string_value(json_object_get(o, "reason")), "node_lost");
  json_decref(o);
  nt_webhook_event bad = {.type = 0};
  assert_null(nt_webhook_event_json(&bad, NULL));
  bad.type = NT_WH_OFFLINE + 1;
  assert_null(nt_webhook_event_json(&bad, NULL));
}

static void test_signature(void **st) {
  /* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?" */
  char out[72];
  nt_webhook_sign("Jefe", "what do ya want for nothing?", 28, out);
  assert_string_equal(out,
                      "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  char other[72];
  nt_webhook_sign("Jefe", "what do ya want for nothing!", 28, other);
  assert_string_not_equal(out, other);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_event_json),
      cmocka_unit_test(test_signature),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
