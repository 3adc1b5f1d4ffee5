/* bus_contract: the rules of lib/bus/nt_bus.h, for any implementation — delivery on a
 * later loop turn and in publication order, NATS wildcards with one delivery per matching
 * subscription, queue groups, unsubscribe (also from inside a callback), request/reply,
 * no responder, timeout, flush, stream positions, argument errors, destroy failing pending
 * requests, statistics. Every subject starts with a fresh "ct<n>" token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nt_contract.h"
#include "nt_err.h"

#define MAXD 256

typedef struct delivery {
  char subject[96], data[64], reply[160];
  const nt_bus_sub *sub;
  nt_bus_seq seq;
  int has_seq;
} delivery;

typedef struct reply_rec {
  int calls, status, during_call;
  char data[64];
} reply_rec;

typedef struct bfx {
  uv_loop_t loop;
  nt_bus *bus;
  char p[24];            /* this case's subject prefix */
  delivery d[MAXD];
  int n;
  int in_call;           /* set around every bus call */
  int during_call;       /* callbacks run while in_call was set: must stay 0 */
  int depth, nested;     /* on_msg re-entered from inside on_msg: must stay 0 */
  char responder[96];    /* requests on this subject get "pong:" + data back */
  char ping[96], pong[96]; /* a message on `ping` publishes one on `pong` */
  nt_bus_sub *unsub_on_first; /* unsubscribed by the callback of its first message */
} bfx;

static const nt_ct_bus_factory *F;

#define CALL(f, expr) ((f)->in_call = 1, _ct_rc = (expr), (f)->in_call = 0, _ct_rc)
static int _ct_rc;

/* ---------------------------------------------------------------- handlers */

static void record(bfx *f, const char *subject, const uint8_t *data, size_t len,
                   const char *reply, const nt_bus_sub *sub, const nt_bus_seq *seq) {
  if (f->in_call) f->during_call++;
  if (f->n >= MAXD) return;
  delivery *d = &f->d[f->n++];
  snprintf(d->subject, sizeof d->subject, "%s", subject);
  snprintf(d->data, sizeof d->data, "%.*s", (int)len, (const char *)data);
  snprintf(d->reply, sizeof d->reply, "%s", reply ? reply : "");
  d->sub = sub;
  d->has_seq = seq != NULL;
  if (seq) d->seq = *seq;
}

static void on_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const char *reply, const nt_bus_sub *sub) {
  bfx *f = ud;
  if (f->depth++) f->nested++;
  record(f, subject, data, len, reply, sub, NULL);
  if (reply && f->responder[0] && !strcmp(subject, f->responder)) {
    char out[80];
    int n = snprintf(out, sizeof out, "pong:%.*s", (int)len, (const char *)data);
    assert_int_equal(nt_bus_publish(f->bus, reply, out, (size_t)n, NULL), 0);
  }
  if (f->ping[0] && !strcmp(subject, f->ping))
    assert_int_equal(nt_bus_publish(f->bus, f->pong, "p", 1, NULL), 0);
  if (f->unsub_on_first && sub == f->unsub_on_first) {
    nt_bus_unsubscribe(f->bus, f->unsub_on_first);
    f->unsub_on_first = NULL;
  }
  f->depth--;
}

static void on_seq_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                       const nt_bus_seq *seq) {
  bfx *f = ud;
  record(f, subject, data, len, NULL, NULL, seq);
}

static void on_reply(void *ud, int status, const uint8_t *data, size_t len) {
  reply_rec *r = ud;
  r->calls++;
  r->status = status;
  snprintf(r->data, sizeof r->data, "%.*s", (int)len, data ? (const char *)data : "");
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **state) {
  bfx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  snprintf(f->p, sizeof f->p, "ct%u", nt_ct_unique());
  nt_bus_handler h = {.on_msg = on_msg, .ud = f, .on_seq_msg = on_seq_msg};
  f->bus = F->create(F->ctx, &f->loop, &h);
  if (!f->bus) fail_msg("%s: cannot create the bus", F->name);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  bfx *f = *state;
  if (f->bus) nt_bus_destroy(f->bus);
  assert_int_equal(nt_ct_close_loop(&f->loop), 0);
  assert_int_equal(f->during_call, 0); /* no callback inside the call that caused it */
  assert_int_equal(f->nested, 0);
  free(f);
  return 0;
}

static const char *subj(bfx *f, const char *rest) {
  static char buf[4][96];
  static int i;
  char *b = buf[i++ % 4];
  snprintf(b, sizeof buf[0], "%s.%s", f->p, rest);
  return b;
}

typedef struct want_n {
  bfx *f;
  int n;
} want_n;

static int c_n(void *ud) {
  want_n *w = ud;
  return w->f->n >= w->n;
}

/* Waits until `n` deliveries were recorded, then a little longer: no more may follow. */
static void wait_n(bfx *f, int n) {
  want_n w = {f, n};
  if (!nt_ct_run_until(&f->loop, c_n, &w, 5000))
    fail_msg("%s: %d of %d deliveries", F->name, f->n, n);
  nt_ct_run_until(&f->loop, NULL, NULL, 100);
  assert_int_equal(f->n, n);
}

static int c_reply(void *ud) { return ((reply_rec *)ud)->calls > 0; }

static int count_sub(bfx *f, const nt_bus_sub *s) {
  int k = 0;
  for (int i = 0; i < f->n; i++) k += f->d[i].sub == s;
  return k;
}

/* ---------------------------------------------------------------- cases */

static void test_delivered_later_in_order(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "a"), NULL, &s)), 0);
  assert_non_null(s);
  for (int i = 0; i < 50; i++) {
    char m[16];
    int n = snprintf(m, sizeof m, "m%d", i);
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "a"), m, (size_t)n, NULL)), 0);
  }
  assert_int_equal(f->n, 0); /* nothing inside publish */
  wait_n(f, 50);
  for (int i = 0; i < 50; i++) {
    char m[16];
    snprintf(m, sizeof m, "m%d", i);
    assert_string_equal(f->d[i].data, m);
    assert_string_equal(f->d[i].subject, subj(f, "a"));
    assert_string_equal(f->d[i].reply, "");
    assert_ptr_equal(f->d[i].sub, s);
    assert_false(f->d[i].has_seq);
  }
}

static void test_wildcards_once_per_subscription(void **state) {
  bfx *f = *state;
  nt_bus_sub *star = NULL, *tail = NULL, *lit = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "*.x"), NULL, &star)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, ">"), NULL, &tail)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "a.x"), NULL, &lit)), 0);
  const char *pubs[] = {"a.x", "b.x", "a.b.c", "q", "a.x.y"};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, pubs[i]), "w", 1, NULL)), 0);
  /* "<p>.x" alone matches none: '>' needs at least one token after the prefix */
  assert_int_equal(CALL(f, nt_bus_publish(f->bus, f->p, "w", 1, NULL)), 0);
  wait_n(f, 3 + 2 + 1 + 1 + 1);
  assert_int_equal(count_sub(f, star), 2);
  assert_int_equal(count_sub(f, tail), 5);
  assert_int_equal(count_sub(f, lit), 1);
}

static void test_queue_group_one_member_each(void **state) {
  bfx *f = *state;
  nt_bus_sub *g1 = NULL, *g2 = NULL, *plain = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "q"), "workers", &g1)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "q"), "workers", &g2)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "q"), NULL, &plain)), 0);
  for (int i = 0; i < 40; i++) {
    char m[16];
    int n = snprintf(m, sizeof m, "%d", i);
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "q"), m, (size_t)n, NULL)), 0);
  }
  wait_n(f, 80);
  assert_int_equal(count_sub(f, plain), 40);
  assert_int_equal(count_sub(f, g1) + count_sub(f, g2), 40);
  int seen[40] = {0};
  for (int i = 0; i < f->n; i++)
    if (f->d[i].sub != plain) seen[atoi(f->d[i].data)]++;
  for (int i = 0; i < 40; i++) assert_int_equal(seen[i], 1); /* each once in the group */
}

static void test_unsubscribe_stops_delivery(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL, *keep = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "u"), NULL, &s)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "keep"), NULL, &keep)), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "u"), "x", 1, NULL)), 0);
  f->in_call = 1;
  nt_bus_unsubscribe(f->bus, s); /* published, not yet delivered: none may arrive now */
  f->in_call = 0;
  assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "keep"), "k", 1, NULL)), 0);
  wait_n(f, 1);
  assert_ptr_equal(f->d[0].sub, keep);
}

static void test_unsubscribe_inside_callback(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL, *other = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "cb"), NULL, &s)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "cb"), NULL, &other)), 0);
  f->unsub_on_first = s;
  for (int i = 0; i < 20; i++)
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "cb"), "x", 1, NULL)), 0);
  wait_n(f, 21);
  assert_int_equal(count_sub(f, other), 20);
  /* s's first message ended it; messages already queued for it were dropped */
  int first = -1;
  for (int i = 0; i < f->n && first < 0; i++)
    if (f->d[i].sub == s) first = i;
  assert_true(first >= 0);
  for (int i = first + 1; i < f->n; i++) assert_ptr_not_equal(f->d[i].sub, s);
}

static void test_request_reply(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL;
  snprintf(f->responder, sizeof f->responder, "%s", subj(f, "svc"));
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, f->responder, NULL, &s)), 0);
  reply_rec r = {0};
  assert_int_equal(CALL(f, nt_bus_request(f->bus, f->responder, "ping", 4, 5000, on_reply, &r)),
                   0);
  assert_int_equal(r.calls, 0); /* never inside the call */
  assert_true(nt_ct_run_until(&f->loop, c_reply, &r, 5000));
  nt_ct_run_until(&f->loop, NULL, NULL, 50);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.data, "pong:ping");
  assert_int_equal(f->n, 1);
  assert_true(f->d[0].reply[0] != '\0'); /* the responder saw a reply subject */
}

static void test_request_no_responder(void **state) {
  bfx *f = *state;
  reply_rec r = {0};
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(
      CALL(f, nt_bus_request(f->bus, subj(f, "nobody"), "x", 1, 5000, on_reply, &r)), 0);
  assert_int_equal(r.calls, 0);
  assert_true(nt_ct_run_until(&f->loop, c_reply, &r, 5000));
  assert_int_equal(r.status, NT_ENORESPONDER);
  assert_true(uv_now(&f->loop) - t0 < 2500); /* told, not timed out */
  nt_ct_run_until(&f->loop, NULL, NULL, 50);
  assert_int_equal(r.calls, 1);
}

static void test_request_timeout(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "silent"), NULL, &s)), 0);
  reply_rec r = {0};
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(
      CALL(f, nt_bus_request(f->bus, subj(f, "silent"), "x", 1, 150, on_reply, &r)), 0);
  assert_true(nt_ct_run_until(&f->loop, c_reply, &r, 5000));
  assert_int_equal(r.status, NT_ETIMEOUT);
  assert_true(uv_now(&f->loop) - t0 >= 140);
  nt_ct_run_until(&f->loop, NULL, NULL, 50);
  assert_int_equal(r.calls, 1);
  assert_int_equal(f->n, 1); /* the silent subscriber got the request */
}

static void test_flush(void **state) {
  bfx *f = *state;
  reply_rec r = {0};
  assert_int_equal(CALL(f, nt_bus_flush(f->bus, 5000, on_reply, &r)), 0);
  assert_int_equal(r.calls, 0);
  assert_true(nt_ct_run_until(&f->loop, c_reply, &r, 5000));
  nt_ct_run_until(&f->loop, NULL, NULL, 50);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
}

static void test_stream_positions(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "s"), NULL, &s)), 0);
  nt_bus_seq seq = {7, 4};
  assert_int_equal(CALL(f, nt_bus_publish_seq(f->bus, subj(f, "s"), "sq", 2, &seq)), 0);
  assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "s"), "pl", 2, NULL)), 0);
  wait_n(f, 2);
  assert_true(f->d[0].has_seq); /* on_seq_msg */
  assert_int_equal(f->d[0].seq.seq, 7);
  assert_int_equal(f->d[0].seq.last, 4);
  assert_string_equal(f->d[0].data, "sq");
  assert_false(f->d[1].has_seq); /* on_msg */
  assert_string_equal(f->d[1].data, "pl");
}

static void test_callbacks_never_nested(void **state) {
  bfx *f = *state;
  nt_bus_sub *a = NULL, *b = NULL;
  snprintf(f->ping, sizeof f->ping, "%s", subj(f, "ping"));
  snprintf(f->pong, sizeof f->pong, "%s", subj(f, "pong"));
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, f->ping, NULL, &a)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, f->pong, NULL, &b)), 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, f->ping, "i", 1, NULL)), 0);
  wait_n(f, 20); /* each pong published from a callback arrives later, not inside it */
  assert_int_equal(count_sub(f, b), 10);
}

static void test_invalid_arguments(void **state) {
  bfx *f = *state;
  const char *bad_pub[] = {"", "a..b", ".a", "a.", "a b", "a\tb", "a.*", "a.>"};
  for (size_t i = 0; i < sizeof bad_pub / sizeof bad_pub[0]; i++) {
    if (CALL(f, nt_bus_publish(f->bus, bad_pub[i], "x", 1, NULL)) != NT_EINVAL)
      fail_msg("%s: publish to \"%s\" accepted", F->name, bad_pub[i]);
  }
  assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "ok"), "x", 1, "r e")), NT_EINVAL);
  assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "ok"), NULL, 3, NULL)), NT_EINVAL);
  nt_bus_sub *sentinel = (nt_bus_sub *)&sentinel, *s = sentinel;
  const char *bad_sub[] = {"", "a..b", "a b", "a.>.b"};
  for (size_t i = 0; i < sizeof bad_sub / sizeof bad_sub[0]; i++) {
    if (CALL(f, nt_bus_subscribe(f->bus, bad_sub[i], NULL, &s)) != NT_EINVAL)
      fail_msg("%s: subscribe to \"%s\" accepted", F->name, bad_sub[i]);
    assert_ptr_equal(s, sentinel); /* *out untouched */
  }
  reply_rec r = {0};
  assert_int_equal(CALL(f, nt_bus_request(f->bus, "a..b", "x", 1, 100, on_reply, &r)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_bus_request(f->bus, subj(f, "x"), "x", 1, 100, NULL, NULL)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_bus_flush(f->bus, 100, NULL, NULL)), NT_EINVAL);
  assert_int_equal(CALL(f, nt_bus_publish_seq(f->bus, subj(f, "x"), "x", 1, NULL)), NT_EINVAL);
  nt_ct_run_until(&f->loop, NULL, NULL, 200);
  assert_int_equal(r.calls, 0); /* an error return means no callback, ever */
  assert_int_equal(f->n, 0);
}

static void test_destroy_fails_pending_requests(void **state) {
  bfx *f = *state;
  nt_bus_sub *s = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "silent"), NULL, &s)), 0);
  reply_rec r = {0};
  assert_int_equal(
      CALL(f, nt_bus_request(f->bus, subj(f, "silent"), "x", 1, 10000, on_reply, &r)), 0);
  nt_ct_run_until(&f->loop, NULL, NULL, 50);
  assert_int_equal(r.calls, 0);
  nt_bus_destroy(f->bus); /* the callback runs before destroy returns */
  f->bus = NULL;
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, NT_ECLOSED);
}

static void test_stats_and_connected(void **state) {
  bfx *f = *state;
  assert_int_equal(nt_bus_connected(f->bus), 1);
  nt_bus_stats st0, st;
  nt_bus_get_stats(f->bus, &st0);
  nt_bus_sub *a = NULL, *b = NULL;
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "st"), NULL, &a)), 0);
  assert_int_equal(CALL(f, nt_bus_subscribe(f->bus, subj(f, "st2"), NULL, &b)), 0);
  nt_bus_get_stats(f->bus, &st);
  assert_int_equal(st.subscriptions, st0.subscriptions + 2);
  for (int i = 0; i < 3; i++)
    assert_int_equal(CALL(f, nt_bus_publish(f->bus, subj(f, "st"), "x", 1, NULL)), 0);
  wait_n(f, 3);
  nt_bus_get_stats(f->bus, &st);
  assert_int_equal(st.published, st0.published + 3);
  assert_int_equal(st.received, st0.received + 3);
  nt_bus_unsubscribe(f->bus, b);
  nt_bus_get_stats(f->bus, &st);
  assert_int_equal(st.subscriptions, st0.subscriptions + 1);
}

int nt_ct_bus_run(const nt_ct_bus_factory *f) {
  F = f;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_delivered_later_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wildcards_once_per_subscription, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_group_one_member_each, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_stops_delivery, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_inside_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_no_responder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_positions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callbacks_never_nested, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_fails_pending_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stats_and_connected, setup, teardown),
  };
  return _cmocka_run_group_tests(f->name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}
