/* test_bus_mem: the in-memory bus — subject rules, delivery, queue groups, request/reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nt_bus.h"
#include "nt_err.h"

#define MAXREC 256

typedef struct fx {
  uv_loop_t loop;
  nt_bus *bus;
  int n;                     /* messages received */
  char subj[MAXREC][64];
  char data[MAXREC][64];
  int has_reply[MAXREC];
  int respond;               /* reply "re:<data>" to requests */
  int destroy_on_msg;        /* destroy the bus inside the first on_msg */
  int replies;               /* reply callbacks */
  int status;
  char reply_data[64];
  int publish_in_cb;         /* publish once more from inside on_msg */
} fx;

static void on_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const char *reply, const nt_bus_sub *sub) {
  fx *f = ud;
  if (f->n < MAXREC) {
    snprintf(f->subj[f->n], sizeof f->subj[0], "%s", subject);
    snprintf(f->data[f->n], sizeof f->data[0], "%.*s", (int)len, (const char *)data);
    f->has_reply[f->n] = reply != NULL;
  }
  f->n++;
  if (f->respond && reply) {
    char out[80];
    int n = snprintf(out, sizeof out, "re:%.*s", (int)len, (const char *)data);
    assert_int_equal(nt_bus_publish(f->bus, reply, out, (size_t)n, NULL), 0);
  }
  if (f->publish_in_cb) {
    f->publish_in_cb = 0;
    assert_int_equal(nt_bus_publish(f->bus, subject, "again", 5, NULL), 0);
    assert_int_equal(f->n, 1); /* not re-entrant */
  }
  if (f->destroy_on_msg && f->bus) {
    nt_bus_destroy(f->bus);
    f->bus = NULL;
  }
}

static void on_reply(void *ud, int status, const uint8_t *data, size_t len) {
  fx *f = ud;
  f->replies++;
  f->status = status;
  snprintf(f->reply_data, sizeof f->reply_data, "%.*s", (int)len, data ? (const char *)data : "");
}

/* Runs the loop until nothing is left, then asserts that it closes: a handle the bus
 * forgot to close fails here. */
static void close_loop(uv_loop_t *loop) {
  for (int i = 0; i < 1000 && uv_loop_alive(loop); i++) uv_run(loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static int setup(void **state) {
  fx *f = test_calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  nt_bus_handler h = {.on_msg = on_msg, .ud = f};
  f->bus = nt_bus_mem_new(&f->loop, &h);
  assert_non_null(f->bus);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  if (f->bus) nt_bus_destroy(f->bus);
  close_loop(&f->loop);
  test_free(f);
  return 0;
}

static void pub(fx *f, const char *subject, const char *data) {
  assert_int_equal(nt_bus_publish(f->bus, subject, data, strlen(data), NULL), 0);
}

/* ---------------------------------------------------------------- subjects */

static void test_subject_match(void **state) {
  static const struct {
    const char *pat, *subj;
    int want;
  } t[] = {
      {"a", "a", 1},
      {"a", "b", 0},
      {"a.b", "a.b", 1},
      {"a.b", "a.bc", 0},
      {"a.b", "a.b.c", 0},
      {"a.b.c", "a.b", 0},
      {"*", "a", 1},
      {"*", "a.b", 0},
      {"a.*", "a.b", 1},
      {"a.*", "a", 0},
      {"a.*", "a.b.c", 0},
      {"*.b", "a.b", 1},
      {"*.b", "a.c", 0},
      {"a.*.c", "a.b.c", 1},
      {"a.*.c", "a.b.d", 0},
      {"*.*", "a.b", 1},
      {">", "a", 1},
      {">", "a.b.c", 1},
      {"a.>", "a.b", 1},
      {"a.>", "a.b.c.d", 1},
      {"a.>", "a", 0},
      {"a.>", "b.c", 0},
      {"*.>", "a.b", 1},
      {"*.>", "a", 0},
      {"a.*.>", "a.b.c", 1},
      {"a.*.>", "a.b", 0},
      {"natter.room.t1.*", "natter.room.t1.lobby", 1},
      {"natter.room.*.lobby", "natter.room.t2.lobby", 1},
      {"natter.room.>", "natter.user.t1.u", 0},
      {"a*", "a*", 1}, /* not a wildcard token: literal */
      {"a*", "ab", 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (nt_bus_subject_match(t[i].pat, t[i].subj) != t[i].want)
      fail_msg("match(%s, %s) != %d", t[i].pat, t[i].subj, t[i].want);
  }
}

static void test_subject_valid(void **state) {
  static const struct {
    const char *s;
    int wild, want;
  } t[] = {
      {"a", 0, 1},     {"a.b.c", 0, 1},  {"", 0, 0},      {".a", 0, 0},    {"a.", 0, 0},
      {"a..b", 0, 0},  {"a b", 0, 0},    {"a\tb", 0, 0},  {"a\nb", 1, 0},  {"a.*", 0, 0},
      {"a.*", 1, 1},   {"a.>", 0, 0},    {"a.>", 1, 1},   {">", 1, 1},     {"a.>.b", 1, 0},
      {"*.*.>", 1, 1}, {"a*.b>", 0, 1},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (nt_bus_subject_valid(t[i].s, t[i].wild) != t[i].want)
      fail_msg("valid(\"%s\", %d) != %d", t[i].s, t[i].wild, t[i].want);
  }
  assert_false(nt_bus_subject_valid(NULL, 1));
}

/* ---------------------------------------------------------------- delivery */

static void test_delivery_later_and_in_order(void **state) {
  fx *f = *state;
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->bus, "room.*", NULL, &s), 0);
  char buf[16];
  for (int i = 0; i < 100; i++) {
    snprintf(buf, sizeof buf, "m%d", i);
    pub(f, i % 2 ? "room.a" : "room.b", buf);
  }
  assert_int_equal(f->n, 0); /* never inside publish */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 100);
  for (int i = 0; i < 100; i++) {
    snprintf(buf, sizeof buf, "m%d", i);
    assert_string_equal(f->data[i], buf);
    assert_string_equal(f->subj[i], i % 2 ? "room.a" : "room.b");
    assert_false(f->has_reply[i]);
  }
  nt_bus_stats st;
  nt_bus_get_stats(f->bus, &st);
  assert_int_equal(st.published, 100);
  assert_int_equal(st.received, 100);
  assert_int_equal(st.subscriptions, 1);
  assert_true(st.wakeups >= 1 && st.wakeups <= 2); /* batched */
  assert_int_equal(nt_bus_connected(f->bus), 1);
}

static void test_echo_to_every_matching_sub(void **state) {
  fx *f = *state;
  nt_bus_sub *s[6];
  const char *subs[] = {"a.b", "a.*", "a.>", ">", "b.*", "a.b.c"};
  for (int i = 0; i < 6; i++) assert_int_equal(nt_bus_subscribe(f->bus, subs[i], NULL, &s[i]), 0);
  pub(f, "a.b", "x");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 4); /* a.b, a.*, a.>, > */
  pub(f, "b.c", "y");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 6); /* >, b.* */
}

static void test_publish_from_callback_waits_a_turn(void **state) {
  fx *f = *state;
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->bus, "t", NULL, &s), 0);
  f->publish_in_cb = 1;
  pub(f, "t", "first");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 2);
  assert_string_equal(f->data[1], "again");
}

static void test_unsubscribe_stops_delivery(void **state) {
  fx *f = *state;
  nt_bus_sub *s, *other;
  assert_int_equal(nt_bus_subscribe(f->bus, "u.*", NULL, &s), 0);
  assert_int_equal(nt_bus_subscribe(f->bus, "v", NULL, &other), 0);
  pub(f, "u.1", "a");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 1);
  pub(f, "u.1", "queued before unsubscribe");
  nt_bus_unsubscribe(f->bus, s);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 1);
  pub(f, "u.1", "after");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 1);
  nt_bus_stats st;
  nt_bus_get_stats(f->bus, &st);
  assert_int_equal(st.subscriptions, 1);
  nt_bus_unsubscribe(f->bus, other);
  nt_bus_get_stats(f->bus, &st);
  assert_int_equal(st.subscriptions, 0);
}

static void test_late_subscriber_misses_earlier_message(void **state) {
  fx *f = *state;
  pub(f, "late", "x");
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->bus, "late", NULL, &s), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 0);
}

static void test_many_literal_subjects(void **state) {
  fx *f = *state;
  char subj[32];
  nt_bus_sub *s[300];
  for (int i = 0; i < 300; i++) { /* forces the literal table to grow */
    snprintf(subj, sizeof subj, "room.%d", i);
    assert_int_equal(nt_bus_subscribe(f->bus, subj, NULL, &s[i]), 0);
  }
  for (int i = 0; i < 300; i += 7) nt_bus_unsubscribe(f->bus, s[i]);
  for (int i = 0; i < 300; i++) {
    snprintf(subj, sizeof subj, "room.%d", i);
    pub(f, subj, "x");
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 300 - 43);
}

static void test_queue_groups(void **state) {
  fx *f = *state;
  nt_bus_sub *s[6];
  assert_int_equal(nt_bus_subscribe(f->bus, "work.*", "g", &s[0]), 0);
  assert_int_equal(nt_bus_subscribe(f->bus, "work.*", "g", &s[1]), 0);
  assert_int_equal(nt_bus_subscribe(f->bus, "work.x", "g", &s[2]), 0); /* same group */
  assert_int_equal(nt_bus_subscribe(f->bus, "work.>", "h", &s[3]), 0);
  assert_int_equal(nt_bus_subscribe(f->bus, "work.x", NULL, &s[4]), 0);
  assert_int_equal(nt_bus_subscribe(f->bus, "work.y", "g", &s[5]), 0); /* no match */
  for (int i = 0; i < 30; i++) pub(f, "work.x", "j");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 90); /* one of g, one of h, the plain sub */

  /* with the only other members gone, the last one gets every message */
  nt_bus_unsubscribe(f->bus, s[0]);
  nt_bus_unsubscribe(f->bus, s[1]);
  nt_bus_unsubscribe(f->bus, s[3]);
  nt_bus_unsubscribe(f->bus, s[4]);
  f->n = 0;
  for (int i = 0; i < 10; i++) pub(f, "work.x", "j");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 10);
  assert_int_equal(nt_bus_subscribe(f->bus, "q", "bad group", &s[0]), NT_EINVAL);
}

/* ---------------------------------------------------------------- request/reply */

static void test_request_reply(void **state) {
  fx *f = *state;
  nt_bus_sub *s;
  f->respond = 1;
  assert_int_equal(nt_bus_subscribe(f->bus, "svc.echo", NULL, &s), 0);
  assert_int_equal(nt_bus_request(f->bus, "svc.echo", "hello", 5, 1000, on_reply, f), 0);
  assert_int_equal(f->replies, 0); /* never from inside the call */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->replies, 1);
  assert_int_equal(f->status, 0);
  assert_string_equal(f->reply_data, "re:hello");
  assert_int_equal(f->n, 1);
  assert_true(f->has_reply[0]);
}

static void test_no_responder(void **state) {
  fx *f = *state;
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(nt_bus_request(f->bus, "svc.none", "x", 1, 5000, on_reply, f), 0);
  assert_int_equal(f->replies, 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->replies, 1);
  assert_int_equal(f->status, NT_ENORESPONDER);
  uv_update_time(&f->loop);
  assert_true(uv_now(&f->loop) - t0 < 1000); /* not by the timer */
}

static void test_timeout(void **state) {
  fx *f = *state;
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->bus, "svc.slow", NULL, &s), 0); /* never answers */
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(nt_bus_request(f->bus, "svc.slow", "x", 1, 50, on_reply, f), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->replies, 1);
  assert_int_equal(f->status, NT_ETIMEOUT);
  assert_true(uv_now(&f->loop) - t0 >= 50);
  assert_int_equal(f->n, 1);
  /* a reply after the timeout is ignored */
  char reply[64];
  snprintf(reply, sizeof reply, "_INBOX.mem.1");
  assert_int_equal(nt_bus_publish(f->bus, reply, "late", 4, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->replies, 1);
}

static void test_destroy_fails_pending_requests(void **state) {
  fx *f = *state;
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->bus, "svc.slow", NULL, &s), 0);
  assert_int_equal(nt_bus_request(f->bus, "svc.slow", "x", 1, 60000, on_reply, f), 0);
  pub(f, "svc.slow", "queued");
  nt_bus_destroy(f->bus);
  f->bus = NULL;
  assert_int_equal(f->replies, 1); /* before destroy returned */
  assert_int_equal(f->status, NT_ECLOSED);
  close_loop(&f->loop); /* the 60 s timer must not keep it alive */
  assert_int_equal(f->n, 0);
  assert_int_equal(uv_loop_init(&f->loop), 0); /* for teardown */
}

static void test_destroy_inside_callback(void **state) {
  fx *f = *state;
  nt_bus_sub *s;
  assert_int_equal(nt_bus_subscribe(f->bus, "d", NULL, &s), 0);
  f->destroy_on_msg = 1;
  for (int i = 0; i < 5; i++) pub(f, "d", "x");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_null(f->bus);
  assert_int_equal(f->n, 1);
}

static void test_invalid_arguments(void **state) {
  fx *f = *state;
  nt_bus_sub *s = NULL;
  assert_int_equal(nt_bus_subscribe(f->bus, "a..b", NULL, &s), NT_EINVAL);
  assert_int_equal(nt_bus_subscribe(f->bus, "a.>.b", NULL, &s), NT_EINVAL);
  assert_null(s);
  assert_int_equal(nt_bus_publish(f->bus, "a.*", "x", 1, NULL), NT_EINVAL);
  assert_int_equal(nt_bus_publish(f->bus, "a", "x", 1, "r e"), NT_EINVAL);
  assert_int_equal(nt_bus_publish(f->bus, "", "x", 1, NULL), NT_EINVAL);
  assert_int_equal(nt_bus_request(f->bus, "a.>", "x", 1, 10, on_reply, f), NT_EINVAL);
  assert_int_equal(nt_bus_request(f->bus, "a", "x", 1, 10, NULL, f), NT_EINVAL);
  assert_int_equal(nt_bus_publish(f->bus, "a", NULL, 0, NULL), 0); /* empty payload */
  nt_bus_handler none = {0};
  assert_null(nt_bus_mem_new(&f->loop, &none));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_subject_match),
      cmocka_unit_test(test_subject_valid),
      cmocka_unit_test_setup_teardown(test_delivery_later_and_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_echo_to_every_matching_sub, setup, teardown),
      cmocka_unit_test_setup_teardown(test_publish_from_callback_waits_a_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_stops_delivery, setup, teardown),
      cmocka_unit_test_setup_teardown(test_late_subscriber_misses_earlier_message, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_many_literal_subjects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_groups, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_responder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_fails_pending_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_inside_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
