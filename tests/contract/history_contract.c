/* history_contract: the rules of lib/history/nt_history.h, for any implementation — every
 * stored message republished live with its room sequence and the previous one of the same
 * room; fetch_after (anchored, more, upto, max) and fetch_page (newest first page, more,
 * paging back) in ascending order; retention per room; rooms independent; argument errors
 * without callbacks; callbacks never inside the call; destroy failing pending fetches;
 * publications acknowledged once, after they are stored, with their sequence; a msg_id
 * stored once within the dedupe window (a resend is a duplicate: acknowledged, neither
 * stored nor delivered again); statistics. Every case uses a fresh tenant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "nt_contract.h"
#include "nt_err.h"
#include "nt_subject.h"

#define MAXL 256
#define MAXF 64

typedef struct live {
  char subject[NT_SUBJECT_MAX], data[64];
  nt_bus_seq seq;
} live;

typedef struct fetch {
  int calls, status, anchored, more, during_call;
  size_t n;
  uint64_t seq[MAXF];
  int64_t stored_ms[MAXF];
  char data[MAXF][64];
} fetch;

typedef struct hfx {
  uv_loop_t loop;
  nt_bus *bus;
  nt_bus_sub *sub;
  nt_history *h;
  char t[24];
  char room[3][NT_SUBJECT_MAX], live_subj[3][NT_SUBJECT_MAX];
  live l[MAXL];
  int n, unsequenced;
  int in_call, during_call;
} hfx;

static const nt_ct_history_factory *F;

#define CALL(f, expr) ((f)->in_call = 1, _ct_rc = (expr), (f)->in_call = 0, _ct_rc)
static int _ct_rc;
static hfx *current; /* for fetch callbacks (they get only the fetch record) */

/* ---------------------------------------------------------------- callbacks */

static void on_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const char *reply, const nt_bus_sub *sub) {
  hfx *f = ud;
  if (!strncmp(subject, "natter.live.", 12)) f->unsequenced++; /* live-only: not stored */
}

static void on_seq(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const nt_bus_seq *seq) {
  hfx *f = ud;
  if (f->in_call) f->during_call++;
  if (f->n >= MAXL) return;
  live *l = &f->l[f->n++];
  snprintf(l->subject, sizeof l->subject, "%s", subject);
  snprintf(l->data, sizeof l->data, "%.*s", (int)len, (const char *)data);
  l->seq = *seq;
}

static void on_fetch(void *ud, const nt_hist_result *r) {
  fetch *x = ud;
  if (current && current->in_call) x->during_call++;
  x->calls++;
  x->status = r->status;
  x->anchored = r->anchored;
  x->more = r->more;
  x->n = r->n;
  for (size_t i = 0; i < r->n && i < MAXF; i++) {
    x->seq[i] = r->msgs[i].seq;
    x->stored_ms[i] = r->msgs[i].stored_ms;
    snprintf(x->data[i], sizeof x->data[i], "%.*s", (int)r->msgs[i].len,
             (const char *)r->msgs[i].data);
  }
}

/* ---------------------------------------------------------------- fixture */

static int open_history(hfx *f, long max_per_room) {
  nt_hist_cfg cfg = {.max_per_room = max_per_room, .memory_storage = 1, .replicas = 1};
  f->h = F->create(F->ctx, &f->loop, f->bus, &cfg);
  if (!f->h) fail_msg("%s: cannot create the history", F->name);
  return 0;
}

static int setup_n(void **state, long max_per_room) {
  hfx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  current = f;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  snprintf(f->t, sizeof f->t, "ct%u-%ld", nt_ct_unique(), (long)time(NULL) % 100000);
  for (int i = 0; i < 3; i++) {
    char r[8];
    snprintf(r, sizeof r, "r%d", i);
    assert_true(nt_subject_room(f->room[i], sizeof f->room[i], f->t, r) > 0);
    assert_true(nt_subject_live_of(f->live_subj[i], sizeof f->live_subj[i], f->room[i]) > 0);
  }
  nt_bus_handler bh = {.on_msg = on_msg, .ud = f, .on_seq_msg = on_seq};
  f->bus = F->bus.create(F->bus.ctx, &f->loop, &bh);
  if (!f->bus) fail_msg("%s: cannot create the bus", F->name);
  char live_all[NT_SUBJECT_MAX];
  snprintf(live_all, sizeof live_all, "natter.live.room.%s.>", f->t);
  assert_int_equal(nt_bus_subscribe(f->bus, live_all, NULL, &f->sub), 0);
  open_history(f, max_per_room);
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_n(state, 1000); }
static int setup_keep5(void **state) { return setup_n(state, 5); }

static int teardown(void **state) {
  hfx *f = *state;
  if (f->h) nt_history_destroy(f->h);
  nt_bus_destroy(f->bus);
  assert_int_equal(nt_ct_close_loop(&f->loop), 0);
  assert_int_equal(f->during_call, 0); /* no callback inside the call that caused it */
  assert_int_equal(f->unsequenced, 0); /* a storing history sequences every message */
  current = NULL;
  free(f);
  return 0;
}

typedef struct want {
  hfx *f;
  int n;
} want;

static int c_live(void *ud) {
  want *w = ud;
  return w->f->n >= w->n;
}

/* Publishes "<tag><i>" for i in [0, n) to room `r` and waits for their live copies. */
static void publish(hfx *f, int r, const char *tag, int n) {
  int before = f->n;
  for (int i = 0; i < n; i++) {
    char m[32];
    int len = snprintf(m, sizeof m, "%s%d", tag, i);
    assert_int_equal(CALL(f, nt_history_publish(f->h, f->room[r], m, (size_t)len, NULL)), 0);
  }
  want w = {f, before + n};
  if (!nt_ct_run_until(&f->loop, c_live, &w, 10000))
    fail_msg("%s: %d of %d live copies", F->name, f->n - before, n);
}

/* The sequences the live copies of room `r` carried, in arrival order. */
static size_t seqs_of(hfx *f, int r, uint64_t *out) {
  size_t k = 0;
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->l[i].subject, f->live_subj[r])) out[k++] = f->l[i].seq.seq;
  return k;
}

static int c_fetch(void *ud) { return ((fetch *)ud)->calls > 0; }

static fetch *run_fetch(hfx *f, fetch *x) {
  assert_int_equal(x->calls, 0); /* never inside the call */
  if (!nt_ct_run_until(&f->loop, c_fetch, x, 10000)) fail_msg("%s: no fetch result", F->name);
  nt_ct_run_until(&f->loop, NULL, NULL, 20);
  assert_int_equal(x->calls, 1);
  assert_int_equal(x->during_call, 0);
  assert_int_equal(x->status, 0);
  return x;
}

static fetch *after(hfx *f, int r, uint64_t a, uint64_t upto, size_t max, fetch *x) {
  memset(x, 0, sizeof *x);
  assert_int_equal(
      CALL(f, nt_history_fetch_after(f->h, f->room[r], a, upto, max, on_fetch, x)), 0);
  return run_fetch(f, x);
}

static fetch *page(hfx *f, int r, uint64_t before, size_t limit, fetch *x) {
  memset(x, 0, sizeof *x);
  assert_int_equal(CALL(f, nt_history_fetch_page(f->h, f->room[r], before, limit, on_fetch, x)),
                   0);
  return run_fetch(f, x);
}

static void expect_seqs(const fetch *x, const uint64_t *want_seq, size_t n) {
  assert_int_equal(x->n, n);
  for (size_t i = 0; i < n; i++) assert_int_equal(x->seq[i], want_seq[i]);
}

/* ---------------------------------------------------------------- cases */

static void test_live_copies_carry_room_sequence(void **state) {
  hfx *f = *state;
  for (int i = 0; i < 4; i++) { /* interleaved rooms */
    publish(f, 0, "a", 2);
    publish(f, 1, "b", 1);
  }
  assert_int_equal(f->n, 12);
  uint64_t prev[2] = {0, 0};
  int k[2] = {0, 0};
  for (int i = 0; i < f->n; i++) {
    int r = !strcmp(f->l[i].subject, f->live_subj[1]);
    assert_true(r || !strcmp(f->l[i].subject, f->live_subj[0]));
    assert_true(f->l[i].seq.seq > prev[r]);         /* strictly increasing per room */
    assert_int_equal(f->l[i].seq.last, prev[r]);    /* the room's previous message */
    char m[16];
    snprintf(m, sizeof m, "%c%d", r ? 'b' : 'a', r ? 0 : k[0] % 2);
    assert_string_equal(f->l[i].data, m);
    prev[r] = f->l[i].seq.seq;
    k[r]++;
  }
  assert_int_equal(k[0], 8);
  assert_int_equal(k[1], 4);
}

static void test_fetch_after(void **state) {
  hfx *f = *state;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t t0 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  publish(f, 0, "m", 10);
  publish(f, 1, "other", 3);
  uint64_t s[16];
  assert_int_equal(seqs_of(f, 0, s), 10);
  fetch x;
  after(f, 0, 0, 0, 100, &x); /* everything, oldest first */
  expect_seqs(&x, s, 10);
  assert_true(x.anchored);
  assert_false(x.more);
  for (int i = 0; i < 10; i++) {
    char m[8];
    snprintf(m, sizeof m, "m%d", i);
    assert_string_equal(x.data[i], m);
    assert_true(x.stored_ms[i] >= t0 - 2000 && x.stored_ms[i] <= t0 + 60000);
  }
  after(f, 0, s[3], 0, 100, &x); /* the rest after a stored message */
  expect_seqs(&x, s + 4, 6);
  assert_true(x.anchored);
  assert_false(x.more);
  after(f, 0, 0, 0, 4, &x); /* stopped at max */
  expect_seqs(&x, s, 4);
  assert_true(x.more);
  after(f, 0, s[2], s[6], 100, &x); /* bounded by upto */
  expect_seqs(&x, s + 3, 4);
  after(f, 0, s[9], 0, 100, &x); /* nothing newer */
  assert_int_equal(x.n, 0);
  assert_true(x.anchored);
  assert_false(x.more);
}

static void test_fetch_page(void **state) {
  hfx *f = *state;
  publish(f, 0, "m", 10);
  publish(f, 1, "other", 2);
  uint64_t s[16];
  assert_int_equal(seqs_of(f, 0, s), 10);
  fetch x;
  page(f, 0, 0, 4, &x); /* the newest four, oldest first */
  expect_seqs(&x, s + 6, 4);
  assert_true(x.more);
  assert_string_equal(x.data[3], "m9");
  page(f, 0, s[6], 4, &x); /* the page before */
  expect_seqs(&x, s + 2, 4);
  assert_true(x.more);
  page(f, 0, s[2], 4, &x); /* the first page is short and says so */
  expect_seqs(&x, s, 2);
  assert_false(x.more);
  page(f, 0, 0, 100, &x);
  expect_seqs(&x, s, 10);
  assert_false(x.more);
}

static void test_empty_room(void **state) {
  hfx *f = *state;
  publish(f, 1, "elsewhere", 2);
  fetch x;
  after(f, 0, 0, 0, 10, &x);
  assert_int_equal(x.n, 0);
  assert_true(x.anchored); /* after 0 is always anchored */
  assert_false(x.more);
  page(f, 0, 0, 10, &x);
  assert_int_equal(x.n, 0);
  assert_false(x.more);
}

/* max_per_room 5: the oldest go, the room's other messages and other rooms stay. */
static void test_retention_per_room(void **state) {
  hfx *f = *state;
  publish(f, 1, "b", 2);
  publish(f, 0, "a", 8);
  uint64_t s[16], sb[4];
  assert_int_equal(seqs_of(f, 0, s), 8);
  assert_int_equal(seqs_of(f, 1, sb), 2);
  fetch x;
  after(f, 0, 0, 0, 100, &x);
  expect_seqs(&x, s + 3, 5);
  assert_string_equal(x.data[0], "a3");
  after(f, 0, s[1], 0, 100, &x); /* `after` itself was dropped: not anchored */
  expect_seqs(&x, s + 3, 5);
  assert_false(x.anchored);
  after(f, 0, s[4], 0, 100, &x); /* still stored: anchored */
  expect_seqs(&x, s + 5, 3);
  assert_true(x.anchored);
  page(f, 0, 0, 100, &x);
  expect_seqs(&x, s + 3, 5);
  assert_false(x.more);
  after(f, 1, 0, 0, 100, &x); /* the other room keeps its own */
  expect_seqs(&x, sb, 2);
}

static void test_invalid_arguments(void **state) {
  hfx *f = *state;
  fetch x = {0};
  const char *bad[] = {"natter.user.t.u", "foo", "natter.room.t", "natter.room.t.r.x",
                       "natter.room.*.r", "natter.room.t.>", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (CALL(f, nt_history_publish(f->h, bad[i], "x", 1, NULL)) != NT_EINVAL ||
        CALL(f, nt_history_fetch_after(f->h, bad[i], 0, 0, 10, on_fetch, &x)) != NT_EINVAL ||
        CALL(f, nt_history_fetch_page(f->h, bad[i], 0, 10, on_fetch, &x)) != NT_EINVAL)
      fail_msg("%s: subject \"%s\" accepted", F->name, bad[i]);
  }
  assert_int_equal(CALL(f, nt_history_fetch_after(f->h, f->room[0], 0, 0, 0, on_fetch, &x)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_history_fetch_page(f->h, f->room[0], 0, 0, on_fetch, &x)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_history_fetch_after(f->h, f->room[0], 0, 0, 5, NULL, NULL)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_history_fetch_page(f->h, f->room[0], 0, 5, NULL, NULL)),
                   NT_EINVAL);
  assert_int_equal(CALL(f, nt_history_publish(f->h, f->room[0], NULL, 4, NULL)), NT_EINVAL);
  nt_ct_run_until(&f->loop, NULL, NULL, 200);
  assert_int_equal(x.calls, 0); /* an error return means no callback, ever */
  assert_int_equal(f->n, 0);    /* and nothing published */
}

static void test_destroy_fails_pending_fetch(void **state) {
  hfx *f = *state;
  publish(f, 0, "m", 2);
  fetch a = {0}, p = {0};
  assert_int_equal(CALL(f, nt_history_fetch_after(f->h, f->room[0], 0, 0, 10, on_fetch, &a)), 0);
  assert_int_equal(CALL(f, nt_history_fetch_page(f->h, f->room[0], 0, 10, on_fetch, &p)), 0);
  nt_history_destroy(f->h); /* pending callbacks run before destroy returns */
  f->h = NULL;
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, NT_ECLOSED);
  assert_int_equal(p.calls, 1);
  assert_int_equal(p.status, NT_ECLOSED);
}

typedef struct acks {
  int calls, during_call;
  int status[8], dup[8];
  uint64_t seq[8];
} acks;

static void on_ack(void *ud, const nt_hist_ack *a) {
  acks *x = ud;
  if (current && current->in_call) x->during_call++;
  if (x->calls < 8) {
    x->status[x->calls] = a->status;
    x->dup[x->calls] = a->duplicate;
    x->seq[x->calls] = a->seq;
  }
  x->calls++;
}

typedef struct acks_want {
  acks *x;
  int n;
} acks_want;

static int c_acks(void *ud) {
  acks_want *w = ud;
  return w->x->calls >= w->n;
}

/* Publishes `data` to room `r` with key "<tenant>:<key>" and waits for its ack. */
static void publish_acked(hfx *f, int r, const char *key, const char *data, acks *x) {
  char id[128];
  snprintf(id, sizeof id, "%s:%s", f->t, key);
  nt_hist_pub pub = {.msg_id = id, .on_ack = on_ack, .ud = x};
  int before = x->calls;
  assert_int_equal(CALL(f, nt_history_publish(f->h, f->room[r], data, strlen(data), &pub)), 0);
  acks_want w = {x, before + 1};
  if (!nt_ct_run_until(&f->loop, c_acks, &w, 10000)) fail_msg("%s: no ack", F->name);
}

static void test_ack_after_store_and_dedupe(void **state) {
  hfx *f = *state;
  acks x = {0};
  nt_hist_stats st0, st;
  nt_history_get_stats(f->h, &st0);
  publish_acked(f, 0, "alice:m1", "one", &x);
  assert_int_equal(x.status[0], 0);
  assert_int_equal(x.dup[0], 0);
  assert_true(x.seq[0] > 0);
  want w = {f, 1};
  assert_true(nt_ct_run_until(&f->loop, c_live, &w, 10000));
  assert_int_equal(f->l[0].seq.seq, x.seq[0]); /* the ack's sequence is the stored one's */
  /* the same key again (other data even): a duplicate with the first one's sequence */
  publish_acked(f, 0, "alice:m1", "one again", &x);
  assert_int_equal(x.status[1], 0);
  assert_int_equal(x.dup[1], 1);
  assert_int_equal(x.seq[1], x.seq[0]);
  /* another key: another message (whether a key is shared between rooms is not part of
   * the contract — sharded histories keep one key space per stream — so callers put the
   * room in the key) */
  publish_acked(f, 0, "bob:m1", "two", &x);
  assert_int_equal(x.status[2], 0);
  assert_int_equal(x.dup[2], 0);
  assert_true(x.seq[2] > x.seq[0]);
  w.n = 2;
  assert_true(nt_ct_run_until(&f->loop, c_live, &w, 10000));
  w.n = 3;
  nt_ct_run_until(&f->loop, c_live, &w, 300); /* a duplicate's copy would be here by now */
  assert_int_equal(f->n, 2);
  assert_string_equal(f->l[1].data, "two");
  fetch a;
  after(f, 0, 0, 0, 100, &a);
  assert_int_equal(a.n, 2);
  assert_string_equal(a.data[0], "one");
  assert_string_equal(a.data[1], "two");
  assert_int_equal(x.during_call, 0);
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.stored - st0.stored, 2);
  assert_int_equal(st.duplicates - st0.duplicates, 1);
  /* a bad key: refused at once, no callback, nothing published */
  const char *bad[] = {"", "a\nb", "tab\there"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    nt_hist_pub pub = {.msg_id = bad[i], .on_ack = on_ack, .ud = &x};
    assert_int_equal(CALL(f, nt_history_publish(f->h, f->room[0], "z", 1, &pub)), NT_EINVAL);
  }
  char longkey[NT_HIST_MSGID_MAX + 2];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  nt_hist_pub pub = {.msg_id = longkey, .on_ack = on_ack, .ud = &x};
  assert_int_equal(CALL(f, nt_history_publish(f->h, f->room[0], "z", 1, &pub)), NT_EINVAL);
  nt_ct_run_until(&f->loop, NULL, NULL, 200);
  assert_int_equal(x.calls, 3);
  assert_int_equal(f->n, 2);
}

static void test_destroy_completes_pending_publication(void **state) {
  hfx *f = *state;
  acks x = {0};
  char id[64];
  snprintf(id, sizeof id, "%s:u:p1", f->t);
  nt_hist_pub pub = {.msg_id = id, .on_ack = on_ack, .ud = &x};
  assert_int_equal(CALL(f, nt_history_publish(f->h, f->room[0], "p", 1, &pub)), 0);
  assert_int_equal(x.calls, 0);
  nt_history_destroy(f->h); /* the callback runs exactly once, before destroy returns */
  f->h = NULL;
  assert_int_equal(x.calls, 1);
  assert_true(x.status[0] == 0 || x.status[0] == NT_ECLOSED);
  nt_ct_run_until(&f->loop, NULL, NULL, 200);
  assert_int_equal(x.calls, 1);
  f->n = 0; /* a live copy may or may not have gone out: not this case's subject */
}

typedef struct stored_want {
  hfx *f;
  uint64_t n;
} stored_want;

static int c_stored(void *ud) {
  stored_want *w = ud;
  nt_hist_stats st;
  nt_history_get_stats(w->f->h, &st);
  return st.stored >= w->n;
}

static void test_storing_and_stats(void **state) {
  hfx *f = *state;
  assert_int_equal(nt_history_storing(f->h), 1);
  nt_hist_stats st0, st;
  nt_history_get_stats(f->h, &st0);
  assert_int_equal(st0.storing, 1);
  publish(f, 0, "m", 6);
  stored_want w = {f, st0.stored + 6};
  assert_true(nt_ct_run_until(&f->loop, c_stored, &w, 10000)); /* confirmed stored */
  fetch x;
  after(f, 0, 0, 0, 100, &x);
  page(f, 0, 0, 2, &x);
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.published - st0.published, 6);
  assert_int_equal(st.stored - st0.stored, 6);
  assert_int_equal(st.live_only, st0.live_only);
  assert_int_equal(st.fetches - st0.fetches, 2);
  assert_int_equal(st.fetch_errors, st0.fetch_errors);
  assert_int_equal(st.fetched - st0.fetched, 6 + 2);
}

int nt_ct_history_run(const nt_ct_history_factory *f) {
  F = f;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_live_copies_carry_room_sequence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_after, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_page, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_room, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retention_per_room, setup_keep5, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_fails_pending_fetch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_storing_and_stats, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ack_after_store_and_dedupe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_completes_pending_publication, setup,
                                      teardown),
  };
  return _cmocka_run_group_tests(f->name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}
