/* test_net_conn: nt_conn on its own — node/net with a handler struct and an environment of
 * the test's making, on the memory transport, linked with the net layer only (nt_net; no
 * node, no chat). Bytes are fed in and frames read out, as wslay's own tests do: a request
 * reaches on_http, a refused one on_refused, an upgrade carries frames sent with it, a
 * masked text message reaches on_message, a close is echoed and reported once through
 * on_closing, a full peer window makes output wait, a queue past send_queue_bytes closes a
 * slow consumer, and every connection ends in exactly one on_free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nt_conn.h"
#include "nt_err.h"
#include "nt_frame.h"
#include "nt_http.h"
#include "nt_log.h"

/* ---------------------------------------------------------------- a recording owner */

typedef struct rec {
  int http, refused, messages, closing, freed;
  int refused_status;
  char path[64];
  char msg[256];
  size_t msg_len;
  int msg_op;
  int upgrade;          /* on_http upgrades (and answers 101) instead of answering 200 */
  uint8_t close_reason; /* at on_closing */
} rec;

static void h_http(void *ud, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                   size_t rest_len) {
  rec *r = ud;
  r->http++;
  snprintf(r->path, sizeof r->path, "%.*s", (int)req->path_len, req->target);
  if (r->upgrade) {
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    assert_int_equal(nt_conn_upgrade(c, rest, rest_len), 0);
    nt_conn_send_raw(c, resp, sizeof resp - 1);
    return;
  }
  nt_conn_respond_text(c, 200, "ok\n");
}

static void h_message(void *ud, nt_conn *c, int opcode, const uint8_t *data, size_t len) {
  rec *r = ud;
  r->messages++;
  r->msg_op = opcode;
  r->msg_len = len < sizeof r->msg ? len : sizeof r->msg - 1;
  memcpy(r->msg, data, r->msg_len);
  r->msg[r->msg_len] = '\0';
}

static void h_refused(void *ud, nt_conn *c, int status) {
  rec *r = ud;
  r->refused++;
  r->refused_status = status;
  static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  nt_conn_send_raw(c, resp, sizeof resp - 1);
}

static void h_closing(void *ud, nt_conn *c) {
  rec *r = ud;
  r->closing++;
  r->close_reason = c->close_reason;
}

static void h_free(void *ud, nt_conn *c) { ((rec *)ud)->freed++; }

static const nt_conn_handler handler = {
    .on_http = h_http,
    .on_message = h_message,
    .on_refused = h_refused,
    .on_closing = h_closing,
    .on_free = h_free,
};

typedef struct fx {
  uv_loop_t loop;
  uint8_t rbuf[4096];
  nt_metrics m;
  nt_conn *dirty;
  nt_conn_env env;
  rec r;
  nt_mem_peer peer;
  nt_conn *c;
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->env = (nt_conn_env){
      .loop = &f->loop,
      .h = &handler,
      .ud = &f->r,
      .rbuf = f->rbuf,
      .rbuf_len = sizeof f->rbuf,
      .send_queue_bytes = 4096,
      .max_message_bytes = 1024,
      .max_header_bytes = 2048,
      .m = &f->m,
      .dirty = &f->dirty,
  };
  f->c = nt_conn_mem_new(&f->env, &f->peer);
  assert_non_null(f->c);
  assert_int_equal(nt_conn_start(f->c), 0);
  *state = f;
  return 0;
}

/* One loop turn as the owner runs it: callbacks, then the per-turn flush. */
static void turn(fx *f) {
  uv_run(&f->loop, UV_RUN_NOWAIT);
  nt_conn_flush_dirty(&f->dirty);
}

static int teardown(void **state) {
  fx *f = *state;
  if (f->peer.conn) nt_conn_abort(f->peer.conn, NT_CLOSE_SHUTDOWN);
  for (int i = 0; i < 10; i++) turn(f);
  assert_int_equal(f->r.freed, 1); /* exactly one free, whatever happened */
  assert_null(f->peer.conn);
  nt_mem_peer_free(&f->peer);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void feed(fx *f, const void *data, size_t len) {
  nt_mem_peer_write(&f->peer, data, len);
  turn(f);
}

static int out_has(fx *f, const char *s) {
  return f->peer.out_len && memmem(f->peer.out, f->peer.out_len, s, strlen(s)) != NULL;
}

/* A masked client frame. */
static size_t client_frame(uint8_t *out, int b0, const void *payload, size_t len) {
  size_t h = 0;
  out[h++] = (uint8_t)b0;
  assert_true(len < 126);
  out[h++] = (uint8_t)(0x80 | len);
  static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
  memcpy(out + h, key, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) out[h + i] = ((const uint8_t *)payload)[i] ^ key[i % 4];
  return h + len;
}

static void upgrade(fx *f, const uint8_t *after, size_t after_len) {
  f->r.upgrade = 1;
  char req[512];
  int n = snprintf(req, sizeof req, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
  uint8_t buf[1024];
  memcpy(buf, req, (size_t)n);
  if (after_len) memcpy(buf + n, after, after_len);
  feed(f, buf, (size_t)n + after_len);
  assert_int_equal(f->r.http, 1);
  assert_int_equal(f->c->state, NT_CONN_WS);
  assert_true(out_has(f, " 101 "));
}

/* ---------------------------------------------------------------- tests */

static void test_http_request(void **state) {
  fx *f = *state;
  static const char req[] = "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
  /* in two pieces: the parser waits for the end of the head */
  nt_mem_peer_write(&f->peer, req, 10);
  turn(f);
  assert_int_equal(f->r.http, 0);
  feed(f, req + 10, sizeof req - 1 - 10);
  assert_int_equal(f->r.http, 1);
  assert_string_equal(f->r.path, "/hello");
  assert_true(out_has(f, "HTTP/1.1 200 "));
  assert_true(out_has(f, "ok\n"));
  assert_int_equal(f->m.bytes_in, sizeof req - 1);
  assert_int_equal(f->m.bytes_out, f->peer.out_len);
  for (int i = 0; i < 3; i++) turn(f);
  assert_true(f->peer.closed); /* closed once the answer was out */
  assert_int_equal(f->r.closing, 0); /* never upgraded: nothing to leave */
}

static void test_refused(void **state) {
  fx *f = *state;
  static const char bad[] = "NOT HTTP AT ALL\r\n\r\n";
  feed(f, bad, sizeof bad - 1);
  assert_int_equal(f->r.http, 0);
  assert_int_equal(f->r.refused, 1);
  assert_int_equal(f->r.refused_status, 400);
  assert_true(out_has(f, "HTTP/1.1 400 "));
  for (int i = 0; i < 3; i++) turn(f);
  assert_true(f->peer.closed);
}

static void test_upgrade_message_close(void **state) {
  fx *f = *state;
  uint8_t fr[64];
  size_t n = client_frame(fr, 0x81, "early", 5); /* sent with the request */
  upgrade(f, fr, n);
  turn(f);
  assert_int_equal(f->r.messages, 1);
  assert_string_equal(f->r.msg, "early");
  n = client_frame(fr, 0x81, "{\"a\":1}", 7);
  feed(f, fr, n);
  assert_int_equal(f->r.messages, 2);
  assert_int_equal(f->r.msg_op, 1);
  assert_string_equal(f->r.msg, "{\"a\":1}");
  /* a frame queued by the owner reaches the peer unmasked, after the 101 */
  size_t before = f->peer.out_len;
  nt_frame *out = nt_frame_from(NT_WS_OP_TEXT, "hi", 2);
  assert_int_equal(nt_conn_send(f->c, out), 0);
  nt_frame_unref(out);
  turn(f);
  assert_int_equal(f->peer.out_len - before, 4);
  assert_memory_equal(f->peer.out + before, "\x81\x02hi", 4);
  /* invalid UTF-8 in a text message: closed with 1007, reported once */
  n = client_frame(fr, 0x81, "\xc3\x28", 2);
  feed(f, fr, n);
  assert_int_equal(f->r.messages, 2);
  assert_int_equal(f->r.closing, 1);
  assert_int_equal(f->r.close_reason, NT_CLOSE_PROTOCOL);
  assert_true(out_has(f, "\x88")); /* a close frame went out */
  const uint8_t *cl = memmem(f->peer.out + before + 4, f->peer.out_len - before - 4, "\x88", 1);
  assert_non_null(cl);
  assert_int_equal(cl[2] << 8 | cl[3], 1007);
}

static void test_window_and_slow_consumer(void **state) {
  fx *f = *state;
  upgrade(f, NULL, 0);
  f->peer.window = f->peer.out_len + 100; /* the peer's buffer: 100 more bytes */
  uint8_t payload[90];
  memset(payload, 'x', sizeof payload);
  nt_frame *fr = nt_frame_from(NT_WS_OP_BINARY, payload, sizeof payload);
  assert_int_equal(nt_conn_send(f->c, fr), 0);
  assert_int_equal(nt_conn_send(f->c, fr), 0);
  turn(f);
  assert_int_equal(f->peer.out_len, f->peer.window); /* what fits; the rest waits */
  assert_true(f->c->wblocked);
  nt_mem_peer_consume(&f->peer); /* the peer reads: output goes on */
  f->peer.window = 0;
  for (int i = 0; i < 3; i++) turn(f);
  assert_false(f->c->wblocked);
  assert_int_equal(f->c->qbytes, 0);
  /* a peer that stops reading: the queue grows to send_queue_bytes, then it is closed */
  f->peer.window = f->peer.out_len;
  int refused = 0;
  for (int i = 0; i < 100 && !refused; i++) refused = nt_conn_send(f->c, fr) == NT_ECLOSED;
  nt_frame_unref(fr);
  assert_true(refused);
  assert_int_equal(f->m.slow_consumer_closes, 1);
  assert_int_equal(f->r.closing, 0); /* not while the caller may be iterating members */
  turn(f);                           /* the flush closes it */
  assert_int_equal(f->r.closing, 1);
  assert_int_equal(f->r.close_reason, NT_CLOSE_SLOW);
}

static void test_peer_eof(void **state) {
  fx *f = *state;
  upgrade(f, NULL, 0);
  nt_mem_peer_shutdown(&f->peer);
  turn(f);
  assert_int_equal(f->r.closing, 1);
  assert_int_equal(f->r.close_reason, NT_CLOSE_CLIENT);
}

int main(void) {
  nt_log_init(NT_LOG_ERROR + 1, NULL); /* the slow-consumer warning is expected */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_http_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_upgrade_message_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_window_and_slow_consumer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_peer_eof, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
