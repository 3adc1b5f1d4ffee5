/* test_proto: client protocol v1 — parsing every action and bad_request case, rendering
 * every server frame (checked by parsing it back with jansson), WebSocket headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_frame.h"
#include "nt_proto.h"

/* ---------------------------------------------------------------- helpers ---- */

static int parse(const char *text, nt_req *rq, const char **why) {
  *why = NULL;
  return nt_proto_parse(text, strlen(text), rq, why);
}

/* Parses `text`, expects success and returns the request (caller frees). */
static nt_req ok(const char *text) {
  nt_req rq;
  const char *why;
  int r = parse(text, &rq, &why);
  if (r) fail_msg("rejected %s: %s", text, why ? why : "?");
  return rq;
}

/* Expects a bad_request; returns why (static) and checks the echoed requestId. */
static const char *bad(const char *text, const char *want_reqid) {
  nt_req rq;
  const char *why = NULL;
  int r = parse(text, &rq, &why);
  if (r != NT_EINVAL) fail_msg("accepted %s", text);
  assert_non_null(why);
  assert_string_equal(rq.reqid, want_reqid ? want_reqid : "");
  nt_req_free(&rq);
  return why;
}

/* Decodes the WebSocket header of an unmasked server frame: returns header length and
 * fills opcode, fin and payload length. */
static size_t ws_header(const uint8_t *d, size_t avail, int *fin, int *op, uint64_t *plen) {
  assert_true(avail >= 2);
  *fin = d[0] >> 7;
  assert_int_equal(d[0] & 0x70, 0); /* RSV bits clear */
  *op = d[0] & 0x0f;
  assert_int_equal(d[1] & 0x80, 0); /* server frames are not masked */
  uint64_t n = d[1] & 0x7f;
  if (n < 126) { *plen = n; return 2; }
  if (n == 126) {
    assert_true(avail >= 4);
    *plen = (uint64_t)d[2] << 8 | d[3];
    assert_true(*plen >= 126); /* minimal encoding */
    return 4;
  }
  assert_true(avail >= 10);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | d[2 + i];
  assert_true(v > 0xffff);
  assert_int_equal(v >> 63, 0);
  *plen = v;
  return 10;
}

/* Checks a rendered text frame (header consistent with len/hdr) and returns its payload
 * parsed as a JSON object; frees the frame. */
static json_t *frame_json(nt_frame *f) {
  assert_non_null(f);
  assert_int_equal(f->refs, 1);
  int fin, op;
  uint64_t plen;
  size_t h = ws_header(f->data, f->len, &fin, &op, &plen);
  assert_int_equal(h, f->hdr);
  assert_int_equal(fin, 1);
  assert_int_equal(op, NT_WS_OP_TEXT);
  assert_int_equal(h + plen, f->len);
  json_error_t err;
  json_t *v = json_loadb((const char *)f->data + h, (size_t)plen, JSON_REJECT_DUPLICATES, &err);
  if (!v) fail_msg("frame is not JSON (%s): %.*s", err.text, (int)plen, f->data + h);
  assert_true(json_is_object(v));
  nt_frame_unref(f);
  return v;
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  if (!json_is_string(v)) fail_msg("field %s is not a string", k);
  return json_string_value(v);
}

static json_int_t jint(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  if (!json_is_integer(v)) fail_msg("field %s is not an integer", k);
  return json_integer_value(v);
}

/* ---------------------------------------------------------------- actions ---- */

static void test_join(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"joinRoom\",\"roomId\":\"lobby\"}");
  assert_int_equal(rq.action, NT_ACT_JOIN);
  assert_string_equal(rq.action_name, "joinRoom");
  assert_string_equal(rq.room, "lobby");
  assert_int_equal(rq.has_since, 0);
  assert_string_equal(rq.reqid, "");
  assert_null(rq.user);
  assert_null(rq.message);
  nt_req_free(&rq);

  rq = ok("{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":42,\"requestId\":\"r1\"}");
  assert_int_equal(rq.has_since, 1);
  assert_int_equal(rq.since, 42);
  assert_string_equal(rq.reqid, "\"r1\"");
  nt_req_free(&rq);

  rq = ok("{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":0}");
  assert_int_equal(rq.has_since, 1);
  assert_int_equal(rq.since, 0);
  nt_req_free(&rq);

  rq = ok("{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":null}");
  assert_int_equal(rq.has_since, 0);
  nt_req_free(&rq);

  rq = ok("{\"action\":\"joinRoom\",\"roomId\":\"caf\\u00e9\"}"); /* escaped UTF-8 id */
  assert_string_equal(rq.room, "caf\xc3\xa9");
  nt_req_free(&rq);

  bad("{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":-1}", NULL);
  bad("{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":\"5\"}", NULL);
  bad("{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":1.5}", NULL);
  assert_string_equal(bad("{\"action\":\"joinRoom\"}", NULL), "invalid roomId");
  bad("{\"action\":\"joinRoom\",\"roomId\":null}", NULL);
}

static void test_leave(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"leaveRoom\",\"roomId\":\"r\",\"requestId\":7}");
  assert_int_equal(rq.action, NT_ACT_LEAVE);
  assert_string_equal(rq.room, "r");
  assert_string_equal(rq.reqid, "7");
  nt_req_free(&rq);
  bad("{\"action\":\"leaveRoom\"}", NULL);
  bad("{\"action\":\"leaveRoom\",\"roomId\":\"\"}", NULL);
}

static void test_send(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":{\"text\":\"hi\"}}");
  assert_int_equal(rq.action, NT_ACT_SEND);
  assert_string_equal(rq.room, "r");
  assert_non_null(rq.message);
  assert_true(json_is_object(rq.message));
  assert_string_equal(json_string_value(json_object_get(rq.message, "text")), "hi");
  assert_int_equal(rq.exclude_self, 0);
  size_t len;
  char *dump = nt_proto_dump(rq.message, &len);
  assert_string_equal(dump, "{\"text\":\"hi\"}");
  assert_int_equal(len, strlen(dump));
  free(dump);
  nt_req_free(&rq);

  rq = ok("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":\"x\",\"excludeSelf\":true}");
  assert_int_equal(rq.exclude_self, 1);
  nt_req_free(&rq);
  rq = ok("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":1,\"excludeSelf\":false}");
  assert_int_equal(rq.exclude_self, 0);
  nt_req_free(&rq);
  rq = ok("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":[],\"excludeSelf\":null}");
  assert_int_equal(rq.exclude_self, 0);
  nt_req_free(&rq);

  /* any JSON is a message, null included */
  const char *msgs[] = {"null", "true", "0", "-1.5e3", "\"\"", "[1,[2]]", "{}"};
  for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
    char buf[128];
    snprintf(buf, sizeof buf, "{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":%s}", msgs[i]);
    rq = ok(buf);
    assert_non_null(rq.message);
    nt_req_free(&rq);
  }

  assert_string_equal(bad("{\"action\":\"sendMessage\",\"roomId\":\"r\"}", NULL), "missing message");
  bad("{\"action\":\"sendMessage\",\"message\":1}", NULL);
  bad("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":1,\"excludeSelf\":1}", NULL);
  bad("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":1,\"excludeSelf\":\"yes\"}", NULL);
}

static void test_send_user(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"sendToUser\",\"userId\":\"bob\",\"message\":{\"a\":1}}");
  assert_int_equal(rq.action, NT_ACT_SEND_USER);
  assert_string_equal(rq.user, "bob");
  assert_null(rq.room);
  assert_non_null(rq.message);
  nt_req_free(&rq);
  assert_string_equal(bad("{\"action\":\"sendToUser\",\"userId\":\"bob\"}", NULL), "missing message");
  assert_string_equal(bad("{\"action\":\"sendToUser\",\"message\":1}", NULL), "invalid userId");
  bad("{\"action\":\"sendToUser\",\"userId\":\"b.b\",\"message\":1}", NULL);
  bad("{\"action\":\"sendToUser\",\"userId\":42,\"message\":1}", NULL);
}

static void test_heartbeat_presence_history(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"heartbeat\"}");
  assert_int_equal(rq.action, NT_ACT_HEARTBEAT);
  nt_req_free(&rq);
  rq = ok("{\"action\":\"heartbeat\",\"requestId\":\"hb-1\",\"extra\":[1,2]}");
  assert_string_equal(rq.reqid, "\"hb-1\"");
  nt_req_free(&rq);

  rq = ok("{\"action\":\"presence\",\"roomId\":\"r\"}");
  assert_int_equal(rq.action, NT_ACT_PRESENCE);
  assert_string_equal(rq.room, "r");
  nt_req_free(&rq);
  rq = ok("{\"action\":\"presence\"}");
  assert_int_equal(rq.action, NT_ACT_PRESENCE);
  assert_null(rq.room);
  nt_req_free(&rq);
  bad("{\"action\":\"presence\",\"roomId\":\"a*\"}", NULL);

  rq = ok("{\"action\":\"history\",\"roomId\":\"r\"}");
  assert_int_equal(rq.action, NT_ACT_HISTORY);
  assert_int_equal(rq.limit, 0);
  assert_int_equal(rq.has_before, 0);
  nt_req_free(&rq);
  rq = ok("{\"action\":\"history\",\"roomId\":\"r\",\"limit\":50,\"before\":1000}");
  assert_int_equal(rq.limit, 50);
  assert_int_equal(rq.has_before, 1);
  assert_int_equal(rq.before, 1000);
  nt_req_free(&rq);
  bad("{\"action\":\"history\",\"roomId\":\"r\",\"limit\":0}", NULL);
  bad("{\"action\":\"history\",\"roomId\":\"r\",\"limit\":-3}", NULL);
  bad("{\"action\":\"history\",\"roomId\":\"r\",\"limit\":\"10\"}", NULL);
  bad("{\"action\":\"history\",\"roomId\":\"r\",\"before\":-1}", NULL);
  bad("{\"action\":\"history\"}", NULL);
}

static void test_custom(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"getProfile\",\"requestId\":\"q\",\"anything\":{\"x\":1}}");
  assert_int_equal(rq.action, NT_ACT_CUSTOM);
  assert_string_equal(rq.action_name, "getProfile");
  assert_string_equal(rq.reqid, "\"q\"");
  nt_req_free(&rq);
  /* names are case-sensitive: not the built-in */
  rq = ok("{\"action\":\"JoinRoom\"}");
  assert_int_equal(rq.action, NT_ACT_CUSTOM);
  nt_req_free(&rq);
  /* a custom action name must be usable as a subject token */
  assert_string_equal(bad("{\"action\":\"a.b\",\"requestId\":1}", "1"), "invalid action");
  bad("{\"action\":\">\"}", NULL);
  bad("{\"action\":\"do it\"}", NULL);
  char longact[200];
  memset(longact, 'a', 129);
  longact[129] = '\0';
  char buf[300];
  snprintf(buf, sizeof buf, "{\"action\":\"%s\"}", longact);
  bad(buf, NULL);
}

/* ---------------------------------------------------------------- bad input -- */

static void test_bad_json(void **state) {
  (void)state;
  assert_string_equal(bad("", NULL), "malformed JSON");
  assert_string_equal(bad("{", NULL), "malformed JSON");
  assert_string_equal(bad("{\"action\":}", NULL), "malformed JSON");
  assert_string_equal(bad("{'action':'x'}", NULL), "malformed JSON");
  assert_string_equal(bad("{\"action\":\"heartbeat\"} trailing", NULL), "malformed JSON");
  assert_string_equal(bad("\"just a string\"", NULL), "malformed JSON");
  bad("42", NULL);
  bad("null", NULL);
  assert_string_equal(bad("[{\"action\":\"heartbeat\"}]", NULL), "a request is a JSON object");
  /* an escaped NUL inside a string is refused by the JSON decoder */
  bad("{\"action\":\"heartbeat\",\"x\":\"a\\u0000b\"}", NULL);
  /* bytes after the declared length are ignored: a length-delimited buffer, no NUL */
  const char t[] = "{\"action\":\"heartbeat\"}GARBAGE";
  nt_req rq;
  const char *why;
  assert_int_equal(nt_proto_parse(t, 22, &rq, &why), 0);
  assert_int_equal(rq.action, NT_ACT_HEARTBEAT);
  nt_req_free(&rq);
  /* deep nesting does not crash */
  char deep[4100];
  size_t n = 0;
  n += (size_t)snprintf(deep, sizeof deep, "{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":");
  while (n < 4000) deep[n++] = '[';
  deep[n] = '\0';
  bad(deep, NULL);
}

static void test_bad_action(void **state) {
  (void)state;
  assert_string_equal(bad("{}", NULL), "missing action");
  assert_string_equal(bad("{\"action\":\"\"}", NULL), "missing action");
  assert_string_equal(bad("{\"action\":null}", NULL), "missing action");
  assert_string_equal(bad("{\"action\":5}", NULL), "missing action");
  assert_string_equal(bad("{\"action\":[\"joinRoom\"]}", NULL), "missing action");
  assert_string_equal(bad("{\"roomId\":\"r\",\"requestId\":\"x\"}", "\"x\""), "missing action");
}

static void test_bad_ids(void **state) {
  (void)state;
  const char *ids[] = {
      "\"\"", "\"a.b\"", "\"a*\"", "\">\"", "\"a b\"", "\"a\\tb\"", "\"a\\nb\"", "\"a\\u0001\"",
      "\"a\\u007f\"", "\"{t}\"", "\"a:b\"", "1", "true", "[\"r\"]", "{}",
  };
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    char buf[256];
    snprintf(buf, sizeof buf, "{\"action\":\"joinRoom\",\"roomId\":%s,\"requestId\":\"b%zu\"}",
             ids[i], i);
    char want[16];
    snprintf(want, sizeof want, "\"b%zu\"", i);
    assert_string_equal(bad(buf, want), "invalid roomId");
  }
  /* 128 bytes is fine, 129 is not */
  char id[200], buf[400];
  memset(id, 'r', 128);
  id[128] = '\0';
  snprintf(buf, sizeof buf, "{\"action\":\"joinRoom\",\"roomId\":\"%s\"}", id);
  nt_req rq = ok(buf);
  assert_int_equal(strlen(rq.room), 128);
  nt_req_free(&rq);
  id[128] = 'r';
  id[129] = '\0';
  snprintf(buf, sizeof buf, "{\"action\":\"joinRoom\",\"roomId\":\"%s\"}", id);
  bad(buf, NULL);
}

static void test_request_id(void **state) {
  (void)state;
  nt_req rq = ok("{\"action\":\"heartbeat\",\"requestId\":\"a\\\"b\\\\c\"}");
  assert_string_equal(rq.reqid, "\"a\\\"b\\\\c\""); /* JSON text, ready to echo */
  nt_req_free(&rq);
  rq = ok("{\"action\":\"heartbeat\",\"requestId\":-12}");
  assert_string_equal(rq.reqid, "-12");
  nt_req_free(&rq);
  rq = ok("{\"action\":\"heartbeat\",\"requestId\":null}");
  assert_string_equal(rq.reqid, "");
  nt_req_free(&rq);
  rq = ok("{\"action\":\"heartbeat\",\"requestId\":\"\"}");
  assert_string_equal(rq.reqid, "\"\"");
  nt_req_free(&rq);
  rq = ok("{\"action\":\"heartbeat\",\"requestId\":\"\xc3\xa9\"}");
  json_t *back = json_loads(rq.reqid, JSON_DECODE_ANY, NULL);
  assert_non_null(back);
  assert_string_equal(json_string_value(back), "\xc3\xa9");
  json_decref(back);
  nt_req_free(&rq);

  /* wrong types */
  const char *types[] = {"1.5", "true", "[1]", "{\"a\":1}"};
  for (size_t i = 0; i < 4; i++) {
    char buf[128];
    snprintf(buf, sizeof buf, "{\"action\":\"heartbeat\",\"requestId\":%s}", types[i]);
    assert_string_equal(bad(buf, NULL), "requestId must be a string or an integer");
  }
  /* too long: as JSON text, at most NT_REQID_MAX bytes (quotes included) */
  char s[300], buf[400];
  memset(s, 'q', NT_REQID_MAX - 2);
  s[NT_REQID_MAX - 2] = '\0';
  snprintf(buf, sizeof buf, "{\"action\":\"heartbeat\",\"requestId\":\"%s\"}", s);
  rq = ok(buf);
  assert_int_equal(strlen(rq.reqid), NT_REQID_MAX);
  nt_req_free(&rq);
  memset(s, 'q', NT_REQID_MAX - 1);
  s[NT_REQID_MAX - 1] = '\0';
  snprintf(buf, sizeof buf, "{\"action\":\"heartbeat\",\"requestId\":\"%s\"}", s);
  assert_string_equal(bad(buf, NULL), "requestId is too long");
  /* escaping counts: 60 quotes become 120 bytes + 2 */
  memset(s, 0, sizeof s);
  for (int i = 0; i < 64; i++) strcat(s, "\\\"");
  snprintf(buf, sizeof buf, "{\"action\":\"heartbeat\",\"requestId\":\"%s\"}", s);
  bad(buf, NULL);
}

/* The requestId is captured even when the rest of the request is invalid, so the error
 * reply can carry it. */
static void test_request_id_on_errors(void **state) {
  (void)state;
  bad("{\"requestId\":\"r1\"}", "\"r1\"");
  bad("{\"requestId\":\"r2\",\"action\":\"joinRoom\",\"roomId\":\"a.b\"}", "\"r2\"");
  bad("{\"action\":\"sendMessage\",\"roomId\":\"r\",\"requestId\":3}", "3");
  bad("{\"action\":\"history\",\"roomId\":\"r\",\"limit\":0,\"requestId\":\"h\"}", "\"h\"");
  bad("{\"action\":\"x.y\",\"requestId\":\"c\"}", "\"c\"");
  bad("{\"action\":5,\"requestId\":\"n\"}", "\"n\"");
}

static void test_duplicate_keys(void **state) {
  (void)state;
  /* ambiguity (which roomId?) is refused outright */
  assert_string_equal(bad("{\"action\":\"joinRoom\",\"roomId\":\"a\",\"roomId\":\"b\"}", NULL),
                      "malformed JSON");
  bad("{\"action\":\"joinRoom\",\"action\":\"leaveRoom\",\"roomId\":\"a\"}", NULL);
  /* duplicates inside the free-form message too */
  bad("{\"action\":\"sendMessage\",\"roomId\":\"a\",\"message\":{\"k\":1,\"k\":2}}", NULL);
}

/* Arbitrary bytes (fuzz-lite): never crashes, always a clean verdict. */
static void test_garbage(void **state) {
  (void)state;
  uint32_t x = 12345;
  char buf[256];
  const char *seeds[] = {
      "{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"since\":1,\"requestId\":\"r\"}",
      "{\"action\":\"sendMessage\",\"roomId\":\"r\",\"message\":{\"a\":[1,2,{\"b\":null}]}}",
  };
  for (int round = 0; round < 20000; round++) {
    const char *seed = seeds[round % 2];
    size_t n = strlen(seed);
    memcpy(buf, seed, n);
    for (int k = 0; k < 3; k++) {
      x = x * 1103515245u + 12345u;
      buf[(x >> 8) % n] = (char)(x >> 16);
    }
    x = x * 1103515245u + 12345u;
    size_t len = (x >> 8) % (n + 1);
    nt_req rq;
    const char *why = NULL;
    int r = nt_proto_parse(buf, len, &rq, &why);
    if (r) {
      assert_int_equal(r, NT_EINVAL);
      assert_non_null(why);
    } else {
      assert_true(rq.action >= NT_ACT_JOIN && rq.action <= NT_ACT_CUSTOM);
    }
    nt_req_free(&rq);
  }
}

/* ---------------------------------------------------------------- rendering -- */

static void test_render_welcome(void **state) {
  (void)state;
  json_t *v = frame_json(nt_proto_welcome("c1", "alice", "acme", 25000, "node-1"));
  assert_string_equal(jstr(v, "type"), "welcome");
  assert_string_equal(jstr(v, "connectionId"), "c1");
  assert_string_equal(jstr(v, "userId"), "alice");
  assert_string_equal(jstr(v, "tenantId"), "acme");
  assert_int_equal(jint(v, "heartbeatInterval"), 25000);
  assert_string_equal(jstr(v, "node"), "node-1");
  json_decref(v);
  v = frame_json(nt_proto_welcome("c1", "alice", "acme", 0, NULL));
  assert_null(json_object_get(v, "node"));
  json_decref(v);
}

static void test_render_error(void **state) {
  (void)state;
  json_t *v = frame_json(nt_proto_error("bad_request", "invalid roomId", "\"r9\""));
  assert_string_equal(jstr(v, "type"), "error");
  assert_string_equal(jstr(v, "code"), "bad_request");
  assert_string_equal(jstr(v, "message"), "invalid roomId");
  assert_string_equal(jstr(v, "requestId"), "r9");
  json_decref(v);
  v = frame_json(nt_proto_error("internal", NULL, NULL));
  assert_string_equal(jstr(v, "message"), "internal");
  assert_null(json_object_get(v, "requestId"));
  json_decref(v);
  v = frame_json(nt_proto_error("timeout", "x", ""));
  assert_null(json_object_get(v, "requestId"));
  json_decref(v);
  v = frame_json(nt_proto_error("timeout", "x", "17"));
  assert_int_equal(jint(v, "requestId"), 17);
  json_decref(v);
  /* every documented code renders */
  const char *codes[] = {"bad_request", "unknown_action", "forbidden", "not_found",
                         "too_large",   "rate_limited",   "timeout",   "internal"};
  for (size_t i = 0; i < 8; i++) {
    v = frame_json(nt_proto_error(codes[i], "m", NULL));
    assert_string_equal(jstr(v, "code"), codes[i]);
    json_decref(v);
  }
}

static void test_render_request_id_round_trip(void **state) {
  (void)state;
  /* a requestId parsed from a request is echoed unchanged by every reply type */
  nt_req rq = ok("{\"action\":\"heartbeat\",\"requestId\":\"q\\\"\\\\\\u00e9\\n\"}");
  json_t *vs[] = {
      frame_json(nt_proto_heartbeat(rq.reqid)),
      frame_json(nt_proto_error("bad_request", "x", rq.reqid)),
      frame_json(nt_proto_ack("id1", rq.reqid)),
      frame_json(nt_proto_left("r", rq.reqid)),
      frame_json(nt_proto_joined("r", NULL, 0, rq.reqid)),
      frame_json(nt_proto_members("r", &(nt_presence_page){0}, rq.reqid)),
      frame_json(nt_proto_reply("act", "1", 1, rq.reqid)),
  };
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
    assert_string_equal(jstr(vs[i], "requestId"), "q\"\\\xc3\xa9\n");
    json_decref(vs[i]);
  }
  nt_req_free(&rq);
}

static void test_render_joined_members(void **state) {
  (void)state;
  const char *members[] = {"alice", "b\"o\\b", "\xe6\x97\xa5"};
  json_t *v = frame_json(nt_proto_joined("lobby", members, 3, "1"));
  assert_string_equal(jstr(v, "type"), "joined");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  json_t *arr = json_object_get(v, "members");
  assert_true(json_is_array(arr));
  assert_int_equal(json_array_size(arr), 3);
  for (size_t i = 0; i < 3; i++)
    assert_string_equal(jstr(json_array_get(arr, i), "userId"), members[i]);
  assert_int_equal(jint(v, "requestId"), 1);
  json_decref(v);

  v = frame_json(nt_proto_joined("lobby", NULL, 0, NULL));
  assert_int_equal(json_array_size(json_object_get(v, "members")), 0);
  json_decref(v);

  /* the roster fields: total when known, cursor when more follow, presenceEvents only
   * when false (a small room's `joined` is the old frame plus total) */
  nt_proto_roster small = {.total = 3};
  v = frame_json(nt_proto_joined_ex("lobby", members, 3, &small, "1"));
  assert_int_equal(jint(v, "total"), 3);
  assert_null(json_object_get(v, "cursor"));
  assert_null(json_object_get(v, "presenceEvents"));
  assert_int_equal(jint(v, "requestId"), 1);
  json_decref(v);
  nt_proto_roster big = {.total = 10000, .cursor = "4096", .events_off = 1};
  v = frame_json(nt_proto_joined_ex("hall", members, 3, &big, NULL));
  assert_int_equal(jint(v, "total"), 10000);
  assert_string_equal(jstr(v, "cursor"), "4096");
  assert_true(json_is_false(json_object_get(v, "presenceEvents")));
  assert_int_equal(json_array_size(json_object_get(v, "members")), 3);
  json_decref(v);
  nt_proto_roster unknown = {0};
  v = frame_json(nt_proto_joined_ex("hall", members, 1, &unknown, NULL));
  assert_null(json_object_get(v, "total"));
  json_decref(v);

  nt_presence_page pg = {members, 2, "1234", 7};
  v = frame_json(nt_proto_members("lobby", &pg, NULL));
  assert_string_equal(jstr(v, "type"), "members");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  assert_int_equal(json_array_size(json_object_get(v, "members")), 2);
  assert_int_equal(jint(v, "total"), 7);
  assert_string_equal(jstr(v, "cursor"), "1234");
  json_decref(v);
  pg = (nt_presence_page){members, 1, NULL, 1};
  v = frame_json(nt_proto_members(NULL, &pg, NULL)); /* tenant-wide, last page */
  assert_null(json_object_get(v, "roomId"));
  assert_null(json_object_get(v, "cursor"));
  assert_int_equal(jint(v, "total"), 1);
  json_decref(v);

  /* many members: the builder grows */
  enum { N = 5000 };
  static char names[N][16];
  static const char *ptrs[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "user-%d", i);
    ptrs[i] = names[i];
  }
  v = frame_json(nt_proto_joined("big", ptrs, N, NULL));
  arr = json_object_get(v, "members");
  assert_int_equal(json_array_size(arr), N);
  assert_string_equal(jstr(json_array_get(arr, N - 1), "userId"), "user-4999");
  json_decref(v);
}

static void test_render_left_ack_heartbeat(void **state) {
  (void)state;
  json_t *v = frame_json(nt_proto_left("lobby", NULL));
  assert_string_equal(jstr(v, "type"), "left");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  json_decref(v);
  v = frame_json(nt_proto_ack("m-123", "\"a\""));
  assert_string_equal(jstr(v, "type"), "ack");
  assert_string_equal(jstr(v, "id"), "m-123");
  assert_string_equal(jstr(v, "requestId"), "a");
  json_decref(v);
  v = frame_json(nt_proto_heartbeat(NULL));
  assert_string_equal(jstr(v, "type"), "heartbeat");
  assert_int_equal(json_object_size(v), 1);
  json_decref(v);
}

static void test_render_message_direct(void **state) {
  (void)state;
  const char *msg = "{\"text\":\"hi\",\"n\":[1,2]}";
  json_t *v = frame_json(nt_proto_message("m1", "lobby", "alice", msg, strlen(msg), 1700000000123LL, 0));
  assert_string_equal(jstr(v, "type"), "message");
  assert_string_equal(jstr(v, "id"), "m1");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  assert_string_equal(jstr(v, "userId"), "alice");
  assert_int_equal(jint(v, "timestamp"), 1700000000123LL);
  json_t *m = json_object_get(v, "message");
  assert_string_equal(jstr(m, "text"), "hi");
  assert_int_equal(json_array_size(json_object_get(m, "n")), 2);
  json_decref(v);

  /* server-sent: userId null */
  v = frame_json(nt_proto_message("m2", "lobby", NULL, "\"x\"", 3, 1, 0));
  assert_true(json_is_null(json_object_get(v, "userId")));
  assert_string_equal(jstr(v, "message"), "x");
  json_decref(v);

  v = frame_json(nt_proto_direct("d1", "bob", "[true]", 6, 5));
  assert_string_equal(jstr(v, "type"), "direct");
  assert_string_equal(jstr(v, "id"), "d1");
  assert_string_equal(jstr(v, "userId"), "bob");
  assert_true(json_is_array(json_object_get(v, "message")));
  assert_int_equal(jint(v, "timestamp"), 5);
  json_decref(v);
  v = frame_json(nt_proto_direct("d2", NULL, "null", 4, 5));
  assert_true(json_is_null(json_object_get(v, "userId")));
  assert_true(json_is_null(json_object_get(v, "message")));
  json_decref(v);
}

static void test_render_presence_reply(void **state) {
  (void)state;
  json_t *v = frame_json(nt_proto_presence("lobby", "alice", 1, 77));
  assert_string_equal(jstr(v, "type"), "presence");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  assert_string_equal(jstr(v, "userId"), "alice");
  assert_string_equal(jstr(v, "status"), "online");
  assert_int_equal(jint(v, "timestamp"), 77);
  json_decref(v);
  v = frame_json(nt_proto_presence("lobby", "alice", 0, 78));
  assert_string_equal(jstr(v, "status"), "offline");
  json_decref(v);

  v = frame_json(nt_proto_reply("getProfile", "{\"name\":\"A\"}", 12, "\"p\""));
  assert_string_equal(jstr(v, "type"), "reply");
  assert_string_equal(jstr(v, "action"), "getProfile");
  assert_string_equal(jstr(json_object_get(v, "data"), "name"), "A");
  assert_string_equal(jstr(v, "requestId"), "p");
  json_decref(v);
}

/* Ids are validated before they get here, but the renderer must still produce valid JSON
 * for any string: quotes, backslashes, control characters. */
static void test_render_escaping(void **state) {
  (void)state;
  const char *nasty[] = {"q\"uote", "back\\slash", "\"\\\"", "tab\there", "nl\nx", "cr\rx",
                         "\x01\x1f", "end\\", "</script>", "\xf0\x9f\x98\x80"};
  for (size_t i = 0; i < sizeof nasty / sizeof nasty[0]; i++) {
    const char *s = nasty[i];
    json_t *v = frame_json(nt_proto_welcome(s, s, s, 1, s));
    assert_string_equal(jstr(v, "connectionId"), s);
    assert_string_equal(jstr(v, "userId"), s);
    assert_string_equal(jstr(v, "tenantId"), s);
    assert_string_equal(jstr(v, "node"), s);
    json_decref(v);
    v = frame_json(nt_proto_message(s, s, s, "1", 1, 0, 0));
    assert_string_equal(jstr(v, "id"), s);
    assert_string_equal(jstr(v, "roomId"), s);
    assert_string_equal(jstr(v, "userId"), s);
    json_decref(v);
    v = frame_json(nt_proto_presence(s, s, 1, 0));
    assert_string_equal(jstr(v, "roomId"), s);
    json_decref(v);
    v = frame_json(nt_proto_error(s, s, NULL));
    assert_string_equal(jstr(v, "code"), s);
    json_decref(v);
    const char *one = s;
    v = frame_json(nt_proto_joined(s, &one, 1, NULL));
    assert_string_equal(jstr(json_array_get(json_object_get(v, "members"), 0), "userId"), s);
    json_decref(v);
    v = frame_json(nt_proto_direct(s, s, "2", 1, 0));
    assert_string_equal(jstr(v, "userId"), s);
    json_decref(v);
    v = frame_json(nt_proto_reply(s, "3", 1, NULL));
    assert_string_equal(jstr(v, "action"), s);
    json_decref(v);
  }
}

/* ---------------------------------------------------------------- ws headers - */

static void test_frame_header(void **state) {
  (void)state;
  static const struct {
    size_t n;
    size_t hlen;
  } cases[] = {{0, 2}, {1, 2}, {125, 2}, {126, 4}, {127, 4}, {65535, 4}, {65536, 10},
               {1u << 20, 10}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t h[10];
    size_t hl = nt_frame_header(h, NT_WS_OP_TEXT, 1, cases[i].n);
    assert_int_equal(hl, cases[i].hlen);
    int fin, op;
    uint64_t plen;
    assert_int_equal(ws_header(h, hl, &fin, &op, &plen), hl);
    assert_int_equal(fin, 1);
    assert_int_equal(op, NT_WS_OP_TEXT);
    assert_int_equal(plen, cases[i].n);
  }
  uint8_t h[10];
  /* exact bytes at the boundaries */
  assert_int_equal(nt_frame_header(h, NT_WS_OP_TEXT, 1, 125), 2);
  assert_int_equal(h[0], 0x81);
  assert_int_equal(h[1], 125);
  assert_int_equal(nt_frame_header(h, NT_WS_OP_TEXT, 1, 126), 4);
  assert_memory_equal(h, "\x81\x7e\x00\x7e", 4);
  assert_int_equal(nt_frame_header(h, NT_WS_OP_TEXT, 1, 65535), 4);
  assert_memory_equal(h, "\x81\x7e\xff\xff", 4);
  assert_int_equal(nt_frame_header(h, NT_WS_OP_BINARY, 1, 65536), 10);
  assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  /* fin off and other opcodes */
  nt_frame_header(h, NT_WS_OP_TEXT, 0, 0);
  assert_int_equal(h[0], 0x01);
  nt_frame_header(h, NT_WS_OP_PING, 1, 0);
  assert_int_equal(h[0], 0x89);
  nt_frame_header(h, NT_WS_OP_CLOSE, 1, 2);
  assert_memory_equal(h, "\x88\x02", 2);
}

static void test_frame_alloc(void **state) {
  (void)state;
  nt_frame *f = nt_frame_from(NT_WS_OP_PONG, "abc", 3);
  assert_non_null(f);
  assert_int_equal(f->refs, 1);
  assert_int_equal(f->hdr, 2);
  assert_int_equal(f->len, 5);
  assert_memory_equal(f->data, "\x8a\x03" "abc", 5);
  assert_ptr_equal(nt_frame_payload(f), f->data + 2);
  assert_ptr_equal(nt_frame_ref(f), f);
  assert_int_equal(f->refs, 2);
  nt_frame_unref(f);
  assert_int_equal(f->refs, 1);
  nt_frame_unref(f);
  nt_frame_unref(NULL);

  f = nt_frame_new(NT_WS_OP_PING, 0);
  assert_int_equal(f->len, 2);
  assert_memory_equal(f->data, "\x89\x00", 2);
  nt_frame_unref(f);

  f = nt_frame_raw("\x88\x02\x03\xe8", 4);
  assert_int_equal(f->hdr, 0);
  assert_int_equal(f->len, 4);
  assert_memory_equal(nt_frame_payload(f), "\x88\x02\x03\xe8", 4);
  nt_frame_unref(f);

  uint8_t big[70000];
  memset(big, 'z', sizeof big);
  f = nt_frame_from(NT_WS_OP_BINARY, big, sizeof big);
  assert_int_equal(f->hdr, 10);
  assert_int_equal(f->len, 10 + sizeof big);
  assert_memory_equal(nt_frame_payload(f), big, sizeof big);
  nt_frame_unref(f);
}

/* A message frame whose whole payload is exactly `plen` bytes: the header must match. */
static void check_message_frame_of_size(size_t plen) {
  const char *prefix = "{\"type\":\"message\",\"id\":\"i\",\"roomId\":\"r\",\"userId\":\"u\",\"message\":";
  const char *suffix = ",\"timestamp\":1}";
  size_t fixed = strlen(prefix) + strlen(suffix);
  assert_true(plen >= fixed + 2);
  size_t mlen = plen - fixed; /* a JSON string literal of mlen bytes */
  char *m = malloc(mlen);
  assert_non_null(m);
  memset(m, 'a', mlen);
  m[0] = m[mlen - 1] = '"';
  nt_frame *f = nt_proto_message("i", "r", "u", m, mlen, 1, 0);
  assert_non_null(f);
  int fin, op;
  uint64_t got;
  size_t h = ws_header(f->data, f->len, &fin, &op, &got);
  assert_int_equal(got, plen);
  assert_int_equal(h, plen < 126 ? 2 : plen <= 65535 ? 4 : 10);
  assert_int_equal(f->hdr, h);
  assert_int_equal(f->len, h + plen);
  assert_memory_equal(f->data + h, prefix, strlen(prefix));
  assert_memory_equal(f->data + h + plen - strlen(suffix), suffix, strlen(suffix));
  json_t *v = frame_json(f);
  assert_int_equal(json_string_length(json_object_get(v, "message")), mlen - 2);
  json_decref(v);
  free(m);
}

static void test_message_frame_sizes(void **state) {
  (void)state;
  size_t sizes[] = {125, 126, 127, 65535, 65536, 65537, 200000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_message_frame_of_size(sizes[i]);
  /* and every size around the small boundary */
  for (size_t s = 90; s < 140; s++) check_message_frame_of_size(s);
  /* empty-payload frames built by nt_frame_new: 0-byte payload */
  nt_frame *f = nt_frame_new(NT_WS_OP_TEXT, 0);
  int fin, op;
  uint64_t got;
  assert_int_equal(ws_header(f->data, f->len, &fin, &op, &got), 2);
  assert_int_equal(got, 0);
  nt_frame_unref(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_join),
      cmocka_unit_test(test_leave),
      cmocka_unit_test(test_send),
      cmocka_unit_test(test_send_user),
      cmocka_unit_test(test_heartbeat_presence_history),
      cmocka_unit_test(test_custom),
      cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_bad_action),
      cmocka_unit_test(test_bad_ids),
      cmocka_unit_test(test_request_id),
      cmocka_unit_test(test_request_id_on_errors),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_render_welcome),
      cmocka_unit_test(test_render_error),
      cmocka_unit_test(test_render_request_id_round_trip),
      cmocka_unit_test(test_render_joined_members),
      cmocka_unit_test(test_render_left_ack_heartbeat),
      cmocka_unit_test(test_render_message_direct),
      cmocka_unit_test(test_render_presence_reply),
      cmocka_unit_test(test_render_escaping),
      cmocka_unit_test(test_frame_header),
      cmocka_unit_test(test_frame_alloc),
      cmocka_unit_test(test_message_frame_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
