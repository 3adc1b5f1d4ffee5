/* itest_httpc: nt_httpc against a real local HTTP server (http_backend.py): keep-alive,
 * bounded concurrency, deadlines, body caps, and servers that hang, refuse or talk garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nt_err.h"
#include "nt_httpc.h"
#include "nt_testsrv.h"

#ifndef NT_SOURCE_DIR
#error NT_SOURCE_DIR must name the source tree
#endif

static nt_testsrv g_srv;

typedef struct res {
  int done, err, status;
  char body[2048];
  size_t body_len;
  char ctype[64];
  double elapsed;
  uint64_t at;
} res;

typedef struct fx {
  uv_loop_t loop;
  nt_httpc *h;
  uv_timer_t guard;
  int expected, got;
  res r[16];
} fx;

static int group_setup(void **st) {
  int port = nt_testsrv_free_port();
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  char *argv[] = {"/usr/bin/python3", NT_SOURCE_DIR "/tests/integration/http_backend.py",
                  "--port", ps, NULL};
  if (nt_testsrv_cmd_start(&g_srv, argv, port, 10000) != 0) return -1;
  return 0;
}

static int group_teardown(void **st) {
  nt_testsrv_stop(&g_srv);
  return 0;
}

static void url(char *out, size_t cap, const char *path) {
  snprintf(out, cap, "http://127.0.0.1:%d%s", g_srv.port, path);
}

static fx *fx_new(size_t inflight, size_t queued, size_t max_body) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->h = nt_httpc_new(&f->loop, &(nt_httpc_opts){.max_inflight = inflight,
                                                 .max_queued = queued,
                                                 .max_body = max_body,
                                                 .user_agent = "natter-itest"});
  assert_non_null(f->h);
  return f;
}

/* Closes the client and asserts that the loop ends with no handle left. */
static void fx_free(fx *f) {
  nt_httpc_close(f->h);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
}

static void on_resp(void *ud, const nt_httpc_resp *r) {
  res *x = ud;
  x->done++;
  x->err = r->err;
  x->status = r->status;
  x->body_len = r->body_len;
  snprintf(x->body, sizeof x->body, "%.*s", (int)r->body_len, r->body);
  snprintf(x->ctype, sizeof x->ctype, "%s", r->content_type ? r->content_type : "");
  x->elapsed = r->elapsed_s;
}

static void on_guard(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop until every r[0..n) is done or `ms` passed. */
static void run_until(fx *f, int n, uint64_t ms) {
  uv_timer_init(&f->loop, &f->guard);
  uint64_t end = uv_now(&f->loop) + ms;
  for (;;) {
    int all = 1;
    for (int i = 0; i < n; i++) all &= f->r[i].done > 0;
    if (all || uv_now(&f->loop) >= end) break;
    uv_timer_start(&f->guard, on_guard, 20, 0);
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&f->guard, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int post(fx *f, int i, const char *path, const char *body, uint64_t timeout_ms) {
  char u[128];
  url(u, sizeof u, path);
  const char *hdrs[] = {"Content-Type: application/json", "X-Test: abc"};
  return nt_httpc_post(f->h, u, hdrs, 2, body, strlen(body), timeout_ms, on_resp, &f->r[i]);
}

static long server_connections(void) {
  char b[256];
  assert_true(nt_testsrv_http_get(g_srv.port, "/stats", b, sizeof b) > 0);
  return nt_testsrv_json_int(b, "connections");
}

/* ================================================================ tests ========== */

static void test_echo_and_headers(void **st) {
  fx *f = fx_new(4, 4, 4096);
  assert_int_equal(post(f, 0, "/echo", "{\"a\":1}", 5000), 0);
  assert_int_equal(post(f, 1, "/headers", "", 5000), 0);
  run_until(f, 2, 5000);
  assert_int_equal(f->r[0].done, 1);
  assert_int_equal(f->r[0].err, 0);
  assert_int_equal(f->r[0].status, 200);
  assert_string_equal(f->r[0].body, "{\"a\":1}");
  assert_string_equal(f->r[0].ctype, "application/json");
  assert_int_equal(f->r[1].err, 0);
  assert_non_null(strstr(f->r[1].body, "\"X-Test\": \"abc\""));
  assert_non_null(strstr(f->r[1].body, "\"User-Agent\": \"natter-itest\""));
  assert_null(strstr(f->r[1].body, "100-continue"));
  fx_free(f);
}

typedef struct chain {
  fx *f;
  int left, fails;
  res last;
} chain;

static void on_chain(void *ud, const nt_httpc_resp *r) {
  chain *c = ud;
  if (r->err || r->status != 200) c->fails++;
  if (--c->left > 0) {
    char u[128];
    url(u, sizeof u, "/echo");
    if (nt_httpc_post(c->f->h, u, NULL, 0, "x", 1, 5000, on_chain, c)) c->fails++;
  } else {
    c->f->r[0].done = 1;
  }
}

static void test_keepalive_reuses_one_connection(void **st) {
  fx *f = fx_new(4, 4, 4096);
  long before = server_connections();
  chain c = {.f = f, .left = 20};
  char u[128];
  url(u, sizeof u, "/echo");
  assert_int_equal(nt_httpc_post(f->h, u, NULL, 0, "x", 1, 5000, on_chain, &c), 0);
  run_until(f, 1, 10000);
  assert_int_equal(c.left, 0);
  assert_int_equal(c.fails, 0);
  /* 20 requests, one new connection (the /stats probes are one each) */
  assert_int_equal(server_connections() - before - 1, 1);
  fx_free(f);
}

static void test_concurrency_bound_and_queue(void **st) {
  fx *f = fx_new(4, 4, 4096);
  long before = server_connections();
  for (int i = 0; i < 8; i++) assert_int_equal(post(f, i, "/slow/300", "q", 5000), 0);
  assert_int_equal(nt_httpc_inflight(f->h), 4);
  assert_int_equal(nt_httpc_queued(f->h), 4);
  assert_int_equal(post(f, 8, "/echo", "overflow", 5000), NT_ELIMIT);
  run_until(f, 8, 10000);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(f->r[i].err, 0);
    assert_int_equal(f->r[i].status, 200);
    assert_string_equal(f->r[i].body, "q");
  }
  assert_int_equal(f->r[8].done, 0); /* refused: its callback is never called */
  /* never more than 4 connections at once, and the queued 4 reused them */
  assert_true(server_connections() - before - 1 <= 4);
  /* the queued half waited for a slot */
  double mx = 0;
  for (int i = 0; i < 8; i++) mx = f->r[i].elapsed > mx ? f->r[i].elapsed : mx;
  assert_true(mx >= 0.55);
  fx_free(f);
}

static void test_hanging_server_times_out_others_unaffected(void **st) {
  fx *f = fx_new(4, 4, 4096);
  assert_int_equal(post(f, 0, "/hang", "h", 400), 0);
  assert_int_equal(post(f, 1, "/echo", "fast", 5000), 0);
  run_until(f, 2, 5000);
  assert_int_equal(f->r[0].err, NT_ETIMEOUT);
  assert_true(f->r[0].elapsed >= 0.39 && f->r[0].elapsed < 2.0);
  assert_int_equal(f->r[1].err, 0);
  assert_true(f->r[1].elapsed < f->r[0].elapsed);
  fx_free(f);
}

static void test_queued_request_keeps_its_deadline(void **st) {
  fx *f = fx_new(1, 4, 4096);
  assert_int_equal(post(f, 0, "/hang", "h", 3000), 0);
  assert_int_equal(post(f, 1, "/echo", "waits", 300), 0);
  assert_int_equal(nt_httpc_queued(f->h), 1);
  run_until(f, 2, 1500);
  assert_int_equal(f->r[1].done, 1);
  assert_int_equal(f->r[1].err, NT_ETIMEOUT);
  assert_true(f->r[1].elapsed >= 0.29 && f->r[1].elapsed < 1.0);
  assert_int_equal(f->r[0].done, 0); /* still hanging */
  fx_free(f); /* closing fails it */
}

static void test_refused_garbage_closed(void **st) {
  fx *f = fx_new(4, 4, 4096);
  int dead = nt_testsrv_free_port();
  char u[128];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/echo", dead);
  assert_int_equal(nt_httpc_post(f->h, u, NULL, 0, "r", 1, 5000, on_resp, &f->r[0]), 0);
  assert_int_equal(post(f, 1, "/garbage", "g", 5000), 0);
  assert_int_equal(post(f, 2, "/close", "c", 5000), 0);
  assert_int_equal(post(f, 3, "/status/503", "s", 5000), 0);
  run_until(f, 4, 5000);
  assert_int_equal(f->r[0].err, NT_EIO);
  assert_true(f->r[0].elapsed < 1.0);
  assert_int_equal(f->r[1].err, NT_EPROTO);
  assert_int_equal(f->r[2].err, NT_EIO);
  assert_int_equal(f->r[3].err, 0);
  assert_int_equal(f->r[3].status, 503);
  assert_string_equal(f->r[3].body, "status 503");
  fx_free(f);
}

static void test_body_cap(void **st) {
  fx *f = fx_new(4, 4, 1000);
  assert_int_equal(post(f, 0, "/big/1000", "", 5000), 0);
  assert_int_equal(post(f, 1, "/big/1001", "", 5000), 0);
  assert_int_equal(post(f, 2, "/big/100000", "", 5000), 0);
  run_until(f, 3, 5000);
  assert_int_equal(f->r[0].err, 0);
  assert_int_equal(f->r[0].body_len, 1000);
  assert_int_equal(f->r[1].err, NT_ETOOLARGE);
  assert_int_equal(f->r[2].err, NT_ETOOLARGE);
  fx_free(f);
}

static void test_bad_arguments_never_call_back(void **st) {
  fx *f = fx_new(1, 0, 100);
  assert_int_equal(nt_httpc_post(f->h, "ftp://127.0.0.1/x", NULL, 0, "", 0, 100, on_resp,
                                 &f->r[0]),
                   NT_EINVAL);
  assert_int_equal(nt_httpc_post(f->h, "http://127.0.0.1/x", NULL, 0, "", 0, 0, on_resp,
                                 &f->r[0]),
                   NT_EINVAL);
  /* queue of 0: the second concurrent request is refused */
  assert_int_equal(post(f, 1, "/slow/100", "", 5000), 0);
  assert_int_equal(post(f, 2, "/echo", "", 5000), NT_ELIMIT);
  run_until(f, 2, 3000);
  assert_int_equal(f->r[0].done, 0);
  assert_int_equal(f->r[1].err, 0);
  assert_int_equal(f->r[2].done, 0);
  assert_null(nt_httpc_new(&f->loop, &(nt_httpc_opts){.max_inflight = 0, .max_body = 1}));
  fx_free(f);
}

static void test_close_fails_pending(void **st) {
  fx *f = fx_new(1, 4, 4096);
  assert_int_equal(post(f, 0, "/hang", "h", 5000), 0);
  assert_int_equal(post(f, 1, "/echo", "q", 5000), 0);
  run_until(f, 0, 200); /* let the first one reach the server */
  nt_httpc_close(f->h);
  assert_int_equal(f->r[0].done, 1);
  assert_int_equal(f->r[0].err, NT_ECLOSED);
  assert_int_equal(f->r[1].done, 1);
  assert_int_equal(f->r[1].err, NT_ECLOSED);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_and_headers),
      cmocka_unit_test(test_keepalive_reuses_one_connection),
      cmocka_unit_test(test_concurrency_bound_and_queue),
      cmocka_unit_test(test_hanging_server_times_out_others_unaffected),
      cmocka_unit_test(test_queued_request_keeps_its_deadline),
      cmocka_unit_test(test_refused_garbage_closed),
      cmocka_unit_test(test_body_cap),
      cmocka_unit_test(test_bad_arguments_never_call_back),
      cmocka_unit_test(test_close_fails_pending),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
