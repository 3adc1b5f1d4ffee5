/* test_fanout: the node's one entry of bus input and its delivery loop, without sockets —
 * a standalone node (memory bus and presence, --history off) whose members are clients on
 * the memory transport. The test hands envelopes to the node's bus handler, as the bus
 * would, and reads the frames each member got: one rendered message per member,
 * excludeSelf, direct messages, bad envelopes dropped and counted (nothing delivered),
 * rooms without local members ignored, node-subject push and kick of a local connection,
 * and the latency recorded once per message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "nt_bus.h"
#include "nt_chat.h"
#include "nt_clock.h"
#include "nt_config.h"
#include "nt_envelope.h"
#include "nt_log.h"
#include "nt_node.h"
#include "nt_presence.h"
#include "nt_subject.h"
#include "../nt_test_node.h"

#define SECRET "fanout-test-secret-0123456789abcdef"

static uv_loop_t loop;
static nt_config cfg;
static nt_node *node;
static nt_bus_handler bus_in; /* what the bus calls: the node's one entry */

typedef struct member {
  nt_mem_peer peer;
  uint8_t *buf;
  size_t len, cap;
  int eof;
  char id[NT_CONN_ID_LEN + 1];
} member;

static void pump(int rounds) {
  for (int i = 0; i < rounds; i++) uv_run(&loop, UV_RUN_NOWAIT);
}

static void fill(member *m) {
  if (nt_test_peer_take(&m->peer, &m->buf, &m->len, &m->cap)) m->eof = 1;
}

/* The next complete server frame's opcode and payload (malloc'd, NUL-terminated); -1
 * when none is complete. */
static int next_frame(member *m, char **payload, size_t *plen) {
  pump(2);
  fill(m);
  if (m->len < 2) return -1;
  size_t n = m->buf[1] & 0x7f, h = 2;
  if (n == 126) {
    if (m->len < 4) return -1;
    n = (size_t)m->buf[2] << 8 | m->buf[3];
    h = 4;
  }
  if (m->len < h + n) return -1;
  int op = m->buf[0] & 0x0f;
  *payload = malloc(n + 1);
  memcpy(*payload, m->buf + h, n);
  (*payload)[n] = '\0';
  if (plen) *plen = n;
  memmove(m->buf, m->buf + h + n, m->len - h - n);
  m->len -= h + n;
  return op;
}

/* The next text frame as JSON; fails when there is none. */
static json_t *next_json(member *m) {
  char *p = NULL;
  int op = next_frame(m, &p, NULL);
  if (op != 1) fail_msg("expected a text frame, got %d", op);
  json_error_t err;
  json_t *v = json_loads(p, 0, &err);
  if (!v) fail_msg("not JSON: %s", p);
  free(p);
  return v;
}

static const char *jstr(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static void expect_nothing(member *m) {
  pump(3);
  fill(m);
  if (m->len) fail_msg("unexpected output: %zu bytes", m->len);
}

static char *token(const char *user) {
  char claims[256];
  snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"tenant\":\"t\",\"exp\":%ld}", user,
           (long)time(NULL) + 3600);
  char *t = nt_test_hs256(SECRET, claims);
  assert_non_null(t);
  return t;
}

static void text(member *m, const char *s) {
  size_t len = strlen(s), h = 0;
  uint8_t f[1024];
  assert_true(len < 126);
  f[h++] = 0x81;
  f[h++] = (uint8_t)(0x80 | len);
  const uint8_t key[4] = {9, 8, 7, 6};
  memcpy(f + h, key, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) f[h + i] = (uint8_t)s[i] ^ key[i % 4];
  nt_mem_peer_write(&m->peer, f, h + len);
}

/* Upgrades, reads the welcome, joins `room` (if given) and reads the replies. */
static member *connect_member(const char *user, const char *room) {
  member *m = calloc(1, sizeof *m);
  m->cap = 4096;
  m->buf = malloc(m->cap);
  assert_non_null(nt_node_connect_mem(node, 0, &m->peer));
  char *tok = token(user), req[2048];
  int n = snprintf(req, sizeof req,
                   "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n", tok);
  free(tok);
  nt_mem_peer_write(&m->peer, req, (size_t)n);
  pump(2);
  fill(m);
  uint8_t *end = memmem(m->buf, m->len, "\r\n\r\n", 4);
  assert_non_null(end);
  assert_non_null(memmem(m->buf, m->len, " 101 ", 5));
  size_t hl = (size_t)(end - m->buf) + 4;
  memmove(m->buf, m->buf + hl, m->len - hl);
  m->len -= hl;
  json_t *w = next_json(m);
  assert_string_equal(jstr(w, "type"), "welcome");
  snprintf(m->id, sizeof m->id, "%s", jstr(w, "connectionId"));
  json_decref(w);
  if (room) {
    char join[128];
    snprintf(join, sizeof join, "{\"action\":\"joinRoom\",\"roomId\":\"%s\"}", room);
    text(m, join);
    for (int i = 0; i < 50; i++) { /* joined, and presence frames of others */
      pump(1);
      fill(m);
      if (memmem(m->buf, m->len, "\"joined\"", 8)) break;
    }
    assert_non_null(memmem(m->buf, m->len, "\"joined\"", 8));
    pump(5);
    fill(m);
    m->len = 0; /* the rest of the join's output (presence) is not this test's subject */
  }
  return m;
}

/* Drops what arrived so far (presence of members joining after `m`). */
static void settle(member *m) {
  pump(5);
  fill(m);
  m->len = 0;
}

static void member_free(member *m) {
  nt_mem_peer_free(&m->peer);
  free(m->buf);
  free(m);
}

/* Hands `env` to the node's bus entry on `subject`. */
static void bus_deliver(const char *subject, const Natter__Envelope *env) {
  uint8_t buf[4096], *out;
  size_t len = nt_env_encode(env, buf, sizeof buf, &out);
  assert_true(len > 0);
  bus_in.on_msg(bus_in.ud, subject, out, len, NULL, NULL);
  if (out != buf) free(out);
}

static Natter__Envelope room_message(const char *id, const char *from_conn, const char *json) {
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  env.id = (char *)id;
  env.tenant = "t";
  env.kind = NATTER__KIND__ROOM_MESSAGE;
  env.room = "r";
  env.sender_user = "alice";
  env.sender_conn = (char *)from_conn;
  env.origin_node = "elsewhere";
  env.timestamp_ms = nt_now_ms();
  env.payload.data = (uint8_t *)json;
  env.payload.len = strlen(json);
  return env;
}

/* ---------------------------------------------------------------- setup */

static int setup(void **state) {
  const char *argv[] = {"natter-node", "--jwt-secret", SECRET, "--listen", "127.0.0.1:0",
                        "--api-listen", "127.0.0.1:0", "--node-id", "fan-node",
                        "--history", "off", "--log-level", "error", NULL};
  FILE *devnull = fopen("/dev/null", "w");
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(nt_config_parse(&cfg, 13, (char **)argv, devnull, stderr), 0);
  fclose(devnull);
  node = nt_node_new(&loop, &cfg);
  assert_non_null(node);
  nt_auth_cfg acfg = {.alg = "HS256", .secret = SECRET};
  nt_auth *auth = NULL;
  char err[256];
  assert_int_equal(nt_auth_new(&acfg, &auth, err, sizeof err), 0);
  bus_in = nt_node_bus_handler(node);
  assert_null(bus_in.on_seq_msg); /* --history off: positions are not read */
  nt_presence_handler ph = nt_node_presence_handler(node);
  nt_bus *bus = nt_bus_mem_new(&loop, &bus_in);
  nt_presence *pres = nt_presence_mem_new(&loop, &ph);
  assert_non_null(bus);
  assert_non_null(pres);
  bus_in.on_state(bus_in.ud, 1);
  nt_node_attach(node, bus, pres, auth);
  assert_int_equal(nt_node_start(node), 0);
  return 0;
}

static int teardown(void **state) {
  nt_node_stop(node);
  for (int i = 0; i < 5000 && uv_loop_alive(&loop); i++) uv_run(&loop, UV_RUN_ONCE);
  nt_node_free(node);
  assert_int_equal(uv_loop_close(&loop), 0);
  nt_config_free(&cfg);
  return 0;
}

/* ---------------------------------------------------------------- tests */

/* One message from the bus: every member gets the same rendered frame, once; the latency
 * is recorded once; excludeSelf leaves out the sender's connection only. */
static void test_room_message(void **state) {
  member *a = connect_member("alice", "r"), *b = connect_member("bob", "r");
  settle(a);
  const nt_metrics *mt = nt_node_metrics(node);
  uint64_t d0 = mt->deliveries, lat0 = mt->lat_count, rx0 = mt->bus_received;
  Natter__Envelope env = room_message("m1", a->id, "{\"text\":\"hi\"}");
  bus_deliver("natter.room.t.r", &env);
  member *both[] = {a, b};
  for (int i = 0; i < 2; i++) {
    json_t *v = next_json(both[i]);
    assert_string_equal(jstr(v, "type"), "message");
    assert_string_equal(jstr(v, "id"), "m1");
    assert_string_equal(jstr(v, "roomId"), "r");
    assert_string_equal(jstr(v, "userId"), "alice");
    assert_string_equal(jstr(json_object_get(v, "message"), "text"), "hi");
    assert_null(json_object_get(v, "seq")); /* history off: no position */
    json_decref(v);
    expect_nothing(both[i]); /* exactly one frame */
  }
  assert_int_equal(mt->deliveries - d0, 2);
  assert_int_equal(mt->lat_count - lat0, 1);
  assert_int_equal(mt->bus_received - rx0, 1);

  env = room_message("m2", a->id, "{\"text\":\"not to me\"}");
  env.exclude_sender = 1;
  bus_deliver("natter.room.t.r", &env);
  json_t *v = next_json(b);
  assert_string_equal(jstr(v, "id"), "m2");
  json_decref(v);
  expect_nothing(a);
  assert_int_equal(mt->deliveries - d0, 3);
  member_free(a);
  member_free(b);
}

/* Bad input from the bus: counted, logged, delivered to nobody; the members stay. */
static void test_bad_envelopes(void **state) {
  member *a = connect_member("alice", "r");
  const nt_metrics *mt = nt_node_metrics(node);
  uint64_t bad0 = mt->bad_envelopes, d0 = mt->deliveries;
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
  bus_in.on_msg(bus_in.ud, "natter.room.t.r", junk, sizeof junk, NULL, NULL);
  Natter__Envelope env = room_message("m3", "", "{\"x\":1}");
  env.payload.data = (uint8_t *)"\"\xc3\x28\"";                 /* invalid UTF-8 */
  env.payload.len = 4;
  bus_deliver("natter.room.t.r", &env);
  env = room_message("m4", "", "{\"x\":1}");
  env.payload.len = 0; /* a message without payload */
  bus_deliver("natter.room.t.r", &env);
  env = room_message("m5", "", "{\"x\":1}");
  env.sender_user = "bad user"; /* not an id */
  bus_deliver("natter.room.t.r", &env);
  assert_int_equal(mt->bad_envelopes - bad0, 4);
  assert_int_equal(mt->deliveries, d0);
  expect_nothing(a);
  /* a room nobody here is in: ignored, not counted bad */
  env = room_message("m6", "", "{\"x\":1}");
  bus_deliver("natter.room.t.elsewhere", &env);
  assert_int_equal(mt->bad_envelopes - bad0, 4);
  /* the member is still served */
  env = room_message("m7", "", "{\"x\":2}");
  bus_deliver("natter.room.t.r", &env);
  json_t *v = next_json(a);
  assert_string_equal(jstr(v, "id"), "m7");
  json_decref(v);
  member_free(a);
}

/* A direct message on the user's subject reaches each of the user's connections. */
static void test_direct_message(void **state) {
  member *b1 = connect_member("bob", NULL), *b2 = connect_member("bob", NULL);
  member *c = connect_member("carol", NULL);
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  env.id = "d1";
  env.tenant = "t";
  env.kind = NATTER__KIND__DIRECT_MESSAGE;
  env.target_user = "bob";
  env.sender_user = "";
  env.sender_conn = "";
  env.timestamp_ms = nt_now_ms();
  env.payload.data = (uint8_t *)"{\"k\":1}";
  env.payload.len = 7;
  bus_deliver("natter.user.t.bob", &env);
  member *bobs[] = {b1, b2};
  for (int i = 0; i < 2; i++) {
    json_t *v = next_json(bobs[i]);
    assert_string_equal(jstr(v, "type"), "direct");
    assert_string_equal(jstr(v, "id"), "d1");
    assert_true(json_is_null(json_object_get(v, "userId")));
    assert_true(json_is_true(json_object_get(v, "server")));
    json_decref(v);
  }
  expect_nothing(c);
  member_free(b1);
  member_free(b2);
  member_free(c);
}

/* natter.node.<me>: push raw bytes to a local connection (text when UTF-8, else binary),
 * then kick it (close 1000). */
static void test_node_push_kick(void **state) {
  member *a = connect_member("alice", NULL);
  char subject[NT_SUBJECT_MAX];
  assert_true(nt_subject_node(subject, sizeof subject, nt_node_id(node)) > 0);
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  env.id = "p1";
  env.kind = NATTER__KIND__CONN_PUSH;
  env.target_conn = a->id;
  env.payload.data = (uint8_t *)"hello";
  env.payload.len = 5;
  bus_deliver(subject, &env);
  char *p = NULL;
  assert_int_equal(next_frame(a, &p, NULL), 1);
  assert_string_equal(p, "hello");
  free(p);
  static const uint8_t bin[] = {0x00, 0xfe, 0xff};
  env.payload.data = (uint8_t *)bin;
  env.payload.len = sizeof bin;
  bus_deliver(subject, &env);
  size_t pl = 0;
  assert_int_equal(next_frame(a, &p, &pl), 2);
  assert_int_equal(pl, sizeof bin);
  assert_memory_equal(p, bin, sizeof bin);
  free(p);
  env.kind = NATTER__KIND__CONN_KICK;
  env.payload.len = 0;
  bus_deliver(subject, &env);
  assert_int_equal(next_frame(a, &p, &pl), 8);
  assert_true(pl >= 2);
  assert_int_equal((uint8_t)p[0] << 8 | (uint8_t)p[1], 1000);
  free(p);
  member_free(a);
}

int main(void) {
  nt_log_init(getenv("FANOUT_DEBUG") ? NT_LOG_DEBUG : NT_LOG_ERROR + 1, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_room_message, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_envelopes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_direct_message, setup, teardown),
      cmocka_unit_test_setup_teardown(test_node_push_kick, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
