/* itest_bus_nats: two NATS buses ("nodes") on one loop against a real nats-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "nt_bus.h"
#include "nt_err.h"
#include "nt_testsrv.h"

#define MAXREC 1024

typedef struct node {
  nt_bus *bus;
  const char *name;
  int n; /* messages received */
  char subj[MAXREC][64];
  char data[MAXREC][32];
  int states[32]; /* on_state history */
  int nstates;
  int respond; /* answer "re:<data>" when a reply subject is given */
} node;

typedef struct reply_rec {
  int done, status;
  char data[64];
  uint64_t at; /* uv_now when it arrived */
} reply_rec;

typedef struct fx {
  uv_loop_t loop;
  nt_testsrv srv;
  char url[64];
  node a, b;
  int base_subs; /* the server's internal subscriptions in $G */
} fx;

static void on_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const char *reply, const nt_bus_sub *sub) {
  node *nd = ud;
  if (nd->n < MAXREC) {
    snprintf(nd->subj[nd->n], sizeof nd->subj[0], "%s", subject);
    snprintf(nd->data[nd->n], sizeof nd->data[0], "%.*s", (int)len, (const char *)data);
  }
  nd->n++;
  if (nd->respond && reply) {
    char out[64];
    int n = snprintf(out, sizeof out, "re:%.*s", (int)len, (const char *)data);
    assert_int_equal(nt_bus_publish(nd->bus, reply, out, (size_t)n, NULL), 0);
  }
}

static void on_state(void *ud, int connected) {
  node *nd = ud;
  if (nd->nstates < 32) nd->states[nd->nstates++] = connected;
}

static uv_loop_t *g_loop; /* for reply timestamps */

static void on_reply(void *ud, int status, const uint8_t *data, size_t len) {
  reply_rec *r = ud;
  r->done++;
  r->status = status;
  r->at = uv_now(g_loop);
  snprintf(r->data, sizeof r->data, "%.*s", (int)len, data ? (const char *)data : "");
}

/* ---------------------------------------------------------------- loop helpers */

typedef int (*cond_fn)(fx *f, void *arg);

typedef struct waiter {
  uv_timer_t t;
  fx *f;
  cond_fn cond;
  void *arg;
  uint64_t deadline;
  int met, closed;
} waiter;

static void waiter_tick(uv_timer_t *t) {
  waiter *w = t->data;
  if (w->cond && w->cond(w->f, w->arg)) w->met = 1;
  if (w->met || uv_now(t->loop) >= w->deadline) uv_stop(t->loop);
}

static void waiter_closed(uv_handle_t *h) { ((waiter *)h->data)->closed = 1; }

/* Runs the loop until cond holds or timeout_ms passes (cond NULL: just run that long).
 * Returns 1 when cond held. Never waits without bound. */
static int run_until(fx *f, cond_fn cond, void *arg, int timeout_ms) {
  waiter w = {.f = f, .cond = cond, .arg = arg};
  uv_update_time(&f->loop);
  w.deadline = uv_now(&f->loop) + (uint64_t)timeout_ms;
  uv_timer_init(&f->loop, &w.t);
  w.t.data = &w;
  uv_timer_start(&w.t, waiter_tick, 0, 5);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w.t, waiter_closed);
  while (!w.closed) uv_run(&f->loop, UV_RUN_NOWAIT);
  return w.met;
}

static void close_loop(uv_loop_t *loop) {
  for (int i = 0; i < 1000 && uv_loop_alive(loop); i++) uv_run(loop, UV_RUN_NOWAIT);
  int rc = uv_loop_close(loop);
  if (rc != 0) uv_print_all_handles(loop, stderr);
  assert_int_equal(rc, 0);
}

/* Client subscriptions in the global account, from the server's monitoring endpoint,
 * less the server's own (recorded at setup). */
static int subs_at_server(fx *f) {
  char body[16384];
  if (nt_testsrv_http_get(f->srv.mon_port, "/subsz?acc=%24G", body, sizeof body) < 0)
    return -1;
  return (int)nt_testsrv_json_int(body, "num_subscriptions") - f->base_subs;
}

static int cond_subs(fx *f, void *arg) { return subs_at_server(f) == *(int *)arg; }
static int cond_count(fx *f, void *arg) {
  int *want = arg; /* {a.n, b.n} */
  return f->a.n >= want[0] && f->b.n >= want[1];
}
static int cond_reply(fx *f, void *arg) { return ((reply_rec *)arg)->done > 0; }
static int cond_last_state(fx *f, void *arg) {
  int want = *(int *)arg;
  return f->a.nstates && f->a.states[f->a.nstates - 1] == want && f->b.nstates &&
         f->b.states[f->b.nstates - 1] == want;
}

static int cond_a_up(fx *f, void *arg) {
  return f->a.nstates && f->a.states[f->a.nstates - 1] == 1;
}

static void wait_subs(fx *f, int n) {
  if (!run_until(f, cond_subs, &n, 5000))
    fail_msg("server has %d subscriptions, want %d", subs_at_server(f), n);
}

static void wait_counts(fx *f, int a, int b, int timeout_ms) {
  int want[2] = {a, b};
  if (!run_until(f, cond_count, want, timeout_ms))
    fail_msg("received a=%d b=%d, want %d %d", f->a.n, f->b.n, a, b);
}

static nt_bus *new_bus(fx *f, node *nd, const char *name) {
  nd->name = name;
  nt_bus_handler h = {.on_msg = on_msg, .on_state = on_state, .ud = nd};
  nt_bus *bus = NULL;
  assert_int_equal(nt_bus_nats_new(&f->loop, f->url, name, &h, &bus), 0);
  assert_non_null(bus);
  nd->bus = bus;
  return bus;
}

static int setup(void **state) {
  fx *f = test_calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  g_loop = &f->loop;
  if (nt_testsrv_nats_start(&f->srv, 0, 0, 5000) != 0) fail_msg("cannot start nats-server");
  snprintf(f->url, sizeof f->url, "nats://127.0.0.1:%d", f->srv.port);
  f->base_subs = subs_at_server(f);
  assert_true(f->base_subs >= 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  if (f->a.bus) nt_bus_destroy(f->a.bus);
  if (f->b.bus) nt_bus_destroy(f->b.bus);
  nt_testsrv_stop(&f->srv);
  close_loop(&f->loop);
  test_free(f);
  return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_publish_reaches_other_node_and_own_subscription(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  new_bus(f, &f->b, "node-b");
  assert_int_equal(nt_bus_connected(f->a.bus), 1);
  nt_bus_sub *sa, *sb1, *sb2;
  assert_int_equal(nt_bus_subscribe(f->a.bus, "natter.room.t.r1", NULL, &sa), 0);
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.room.t.r1", NULL, &sb1), 0);
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.room.t.*", NULL, &sb2), 0);
  wait_subs(f, 3);

  char buf[16];
  for (int i = 0; i < 500; i++) {
    int n = snprintf(buf, sizeof buf, "m%d", i);
    assert_int_equal(nt_bus_publish(f->a.bus, "natter.room.t.r1", buf, (size_t)n, NULL), 0);
  }
  assert_int_equal(f->a.n, 0); /* delivery is always on a later turn */
  wait_counts(f, 500, 1000, 10000);
  for (int i = 0; i < 500; i++) { /* own echo, in publish order */
    snprintf(buf, sizeof buf, "m%d", i);
    assert_string_equal(f->a.data[i], buf);
    assert_string_equal(f->a.subj[i], "natter.room.t.r1");
  }
  nt_bus_stats sa_st, sb_st;
  nt_bus_get_stats(f->a.bus, &sa_st);
  nt_bus_get_stats(f->b.bus, &sb_st);
  assert_int_equal(sa_st.published, 500);
  assert_int_equal(sa_st.received, 500);
  assert_int_equal(sa_st.subscriptions, 1);
  assert_int_equal(sb_st.received, 1000);
  assert_int_equal(sb_st.subscriptions, 2);
  assert_int_equal(sb_st.dropped, 0);
  print_message("batching: node b took %llu messages in %llu wake-ups\n",
                (unsigned long long)sb_st.received, (unsigned long long)sb_st.wakeups);
  assert_true(sb_st.wakeups < sb_st.received);
}

static void test_unsubscribe(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  new_bus(f, &f->b, "node-b");
  nt_bus_sub *s1, *s2;
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.user.t.u1", NULL, &s1), 0);
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.user.t.>", NULL, &s2), 0);
  wait_subs(f, 2);
  assert_int_equal(nt_bus_publish(f->a.bus, "natter.user.t.u1", "x", 1, NULL), 0);
  wait_counts(f, 0, 2, 5000);

  nt_bus_unsubscribe(f->b.bus, s1);
  nt_bus_stats st;
  nt_bus_get_stats(f->b.bus, &st);
  assert_int_equal(st.subscriptions, 1);
  wait_subs(f, 1);
  assert_int_equal(nt_bus_publish(f->a.bus, "natter.user.t.u1", "y", 1, NULL), 0);
  wait_counts(f, 0, 3, 5000);
  run_until(f, NULL, NULL, 200); /* nothing more may arrive */
  assert_int_equal(f->b.n, 3);
  assert_string_equal(f->b.subj[2], "natter.user.t.u1");

  nt_bus_unsubscribe(f->b.bus, s2);
  wait_subs(f, 0);
}

static void test_queue_group_across_nodes(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  new_bus(f, &f->b, "node-b");
  nt_bus_sub *s1, *s2;
  assert_int_equal(nt_bus_subscribe(f->a.bus, "natter.events.t.join", "backend", &s1), 0);
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.events.t.join", "backend", &s2), 0);
  wait_subs(f, 2);
  for (int i = 0; i < 100; i++)
    assert_int_equal(nt_bus_publish(f->a.bus, "natter.events.t.join", "e", 1, NULL), 0);
  int want = 100;
  for (int i = 0; i < 400 && f->a.n + f->b.n < want; i++) run_until(f, NULL, NULL, 10);
  run_until(f, NULL, NULL, 100);
  assert_int_equal(f->a.n + f->b.n, 100); /* each message to exactly one member */
}

static void test_request_reply(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  new_bus(f, &f->b, "node-b");
  f->b.respond = 1;
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.route.echo", "backend", &s), 0);
  wait_subs(f, 1);
  reply_rec r = {0};
  assert_int_equal(nt_bus_request(f->a.bus, "natter.route.echo", "ping", 4, 5000, on_reply, &r),
                   0);
  assert_int_equal(r.done, 0);
  assert_true(run_until(f, cond_reply, &r, 5000));
  assert_int_equal(r.status, 0);
  assert_string_equal(r.data, "re:ping");

  /* many at once share the one inbox subscription */
  reply_rec rs[20] = {{0}};
  for (int i = 0; i < 20; i++)
    assert_int_equal(nt_bus_request(f->a.bus, "natter.route.echo", "p", 1, 5000, on_reply, &rs[i]),
                     0);
  wait_counts(f, 0, 21, 5000);
  run_until(f, cond_reply, &rs[19], 5000);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(rs[i].done, 1);
    assert_int_equal(rs[i].status, 0);
  }
  nt_bus_stats st;
  nt_bus_get_stats(f->a.bus, &st);
  assert_int_equal(st.subscriptions, 0); /* the inbox is not counted */
}

static void test_no_responder_is_quick(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  reply_rec r = {0};
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(nt_bus_request(f->a.bus, "natter.route.none", "x", 1, 10000, on_reply, &r), 0);
  assert_true(run_until(f, cond_reply, &r, 5000));
  assert_int_equal(r.status, NT_ENORESPONDER);
  assert_true(r.at - t0 < 2000);
}

static void test_timeout(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  new_bus(f, &f->b, "node-b");
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.route.slow", NULL, &s), 0); /* silent */
  wait_subs(f, 1);
  reply_rec r = {0};
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(nt_bus_request(f->a.bus, "natter.route.slow", "x", 1, 300, on_reply, &r), 0);
  assert_true(run_until(f, cond_reply, &r, 5000));
  assert_int_equal(r.status, NT_ETIMEOUT);
  assert_true(r.at - t0 >= 300 && r.at - t0 < 3000);
  assert_int_equal(f->b.n, 1);
}

static void test_destroy_fails_pending_request(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->a.bus, "natter.route.self", NULL, &s), 0);
  reply_rec r = {0};
  assert_int_equal(nt_bus_request(f->a.bus, "natter.route.self", "x", 1, 60000, on_reply, &r), 0);
  nt_bus_destroy(f->a.bus);
  f->a.bus = NULL;
  assert_int_equal(r.done, 1);
  assert_int_equal(r.status, NT_ECLOSED);
}

static void test_server_restart_resumes_delivery(void **state) {
  fx *f = *state;
  new_bus(f, &f->a, "node-a");
  new_bus(f, &f->b, "node-b");
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->b.bus, "natter.node.n2", NULL, &s), 0);
  wait_subs(f, 1);
  assert_int_equal(nt_bus_publish(f->a.bus, "natter.node.n2", "before", 6, NULL), 0);
  wait_counts(f, 0, 1, 5000);

  nt_testsrv_stop(&f->srv);
  int down = 0, up = 1;
  assert_true(run_until(f, cond_last_state, &down, 5000));
  assert_int_equal(nt_bus_connected(f->a.bus), 0);
  assert_int_equal(nt_bus_connected(f->b.bus), 0);

  assert_int_equal(nt_testsrv_restart(&f->srv, 5000), 0);
  if (!run_until(f, cond_last_state, &up, 10000)) fail_msg("no reconnect");
  assert_int_equal(f->a.states[0], 0);
  assert_int_equal(f->a.states[1], 1);
  assert_int_equal(f->b.nstates, 2);
  assert_int_equal(nt_bus_connected(f->b.bus), 1);
  wait_subs(f, 1); /* nats.c replayed the subscription */
  assert_int_equal(nt_bus_publish(f->a.bus, "natter.node.n2", "after", 5, NULL), 0);
  wait_counts(f, 0, 2, 5000);
  assert_string_equal(f->b.data[1], "after");
  nt_bus_stats st;
  nt_bus_get_stats(f->b.bus, &st);
  assert_int_equal(st.reconnects, 1);
}

static void test_bus_created_while_server_down(void **state) {
  fx *f = *state;
  nt_testsrv_stop(&f->srv);
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  new_bus(f, &f->a, "node-a");
  uv_update_time(&f->loop);
  assert_true(uv_now(&f->loop) - t0 < 2000); /* creation does not wait for the server */
  assert_int_equal(nt_bus_connected(f->a.bus), 0);
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->a.bus, "natter.node.n1", NULL, &s), 0);
  /* buffered until connected, then sent after the subscription: we get our own echo */
  assert_int_equal(nt_bus_publish(f->a.bus, "natter.node.n1", "early", 5, NULL), 0);
  run_until(f, NULL, NULL, 300);
  assert_int_equal(f->a.nstates, 0);

  assert_int_equal(nt_testsrv_restart(&f->srv, 5000), 0);
  if (!run_until(f, cond_a_up, NULL, 10000)) fail_msg("never connected");
  assert_int_equal(f->a.nstates, 1);
  new_bus(f, &f->b, "node-b");
  assert_int_equal(nt_bus_connected(f->b.bus), 1);
  assert_int_equal(nt_bus_connected(f->a.bus), 1);
  wait_counts(f, 1, 0, 5000);
  assert_string_equal(f->a.data[0], "early");
  assert_int_equal(nt_bus_publish(f->b.bus, "natter.node.n1", "later", 5, NULL), 0);
  wait_counts(f, 2, 0, 5000);
  assert_string_equal(f->a.data[1], "later");
}

static void test_invalid_arguments(void **state) {
  fx *f = *state;
  nt_bus_handler h = {.on_msg = on_msg, .ud = &f->a};
  nt_bus *bus = NULL;
  assert_int_equal(nt_bus_nats_new(&f->loop, " , ", "x", &h, &bus), NT_EINVAL);
  assert_null(bus);
  new_bus(f, &f->a, "node-a");
  nt_bus_sub *s = NULL;
  assert_int_equal(nt_bus_subscribe(f->a.bus, "a..b", NULL, &s), NT_EINVAL);
  assert_null(s);
  assert_int_equal(nt_bus_publish(f->a.bus, "a.*", "x", 1, NULL), NT_EINVAL);
  assert_int_equal(nt_bus_publish(f->a.bus, "a b", "x", 1, NULL), NT_EINVAL);
  assert_int_equal(nt_bus_request(f->a.bus, "a.>", "x", 1, 10, on_reply, NULL), NT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_publish_reaches_other_node_and_own_subscription,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_group_across_nodes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_responder_is_quick, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_fails_pending_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_restart_resumes_delivery, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bus_created_while_server_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  /* let nats.c's threads finish so the leak checker sees a quiet process */
  nats_CloseAndWait(5000);
  return rc;
}
