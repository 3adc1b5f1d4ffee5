/* itest_history_js: the JetStream history against a real nats-server -js — stream created
 * and updated idempotently, every stored message republished on its live subject with a
 * per-room chain (seq, last), acknowledgments counted, replay and repair reads, backward
 * pages over a stream where rooms interleave (sparse and dense), Nats-Msg-Id
 * deduplication (a resend is acknowledged as a duplicate, stored and delivered once), and
 * a JetStream outage: nothing delivered, NT_ETIMEOUT at the acknowledgment bound, resends
 * stored once when the stream is back (late or within the bound). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "nt_bus.h"
#include "nt_err.h"
#include "nt_history.h"
#include "nt_testsrv.h"

#define MAXMSG 512
#define ROOMS 6 /* r0..r3 dense, "sparse", "x" */

typedef struct live {
  char room[32];
  uint64_t seq, last; /* seq 0: live-only */
  int value;
} live;

typedef struct fx {
  uv_loop_t loop;
  nt_testsrv srv;
  char dir[64], url[64];
  nt_bus *bus;
  nt_bus_sub *sub;
  nt_history *h;
  live got[MAXMSG];
  int n;
  /* last read */
  int done, status, anchored, more;
  uint64_t seqs[MAXMSG];
  int values[MAXMSG];
  size_t nr;
  int ensured;
  /* publication outcomes (on_pub_ack), in completion order */
  int nacks;
  int ack_status[MAXMSG], ack_dup[MAXMSG];
  uint64_t ack_seq[MAXMSG], ack_at[MAXMSG];
} fx;

static void record(fx *f, const char *subject, const uint8_t *data, size_t len,
                   const nt_bus_seq *seq) {
  if (f->n >= MAXMSG) return;
  live *l = &f->got[f->n++];
  const char *r = strrchr(subject, '.');
  snprintf(l->room, sizeof l->room, "%s", r ? r + 1 : subject);
  l->seq = seq ? seq->seq : 0;
  l->last = seq ? seq->last : 0;
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%.*s", (int)len, (const char *)data);
  l->value = atoi(tmp);
}

static void on_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const char *reply, const nt_bus_sub *sub) {
  record(ud, subject, data, len, NULL);
}

static void on_seq(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const nt_bus_seq *seq) {
  record(ud, subject, data, len, seq);
}

static void on_read(void *ud, const nt_hist_result *r) {
  fx *f = ud;
  f->done = 1;
  f->status = r->status;
  f->anchored = r->anchored;
  f->more = r->more;
  f->nr = r->n < MAXMSG ? r->n : MAXMSG;
  for (size_t i = 0; i < f->nr; i++) {
    char tmp[32];
    f->seqs[i] = r->msgs[i].seq;
    snprintf(tmp, sizeof tmp, "%.*s", (int)r->msgs[i].len, (const char *)r->msgs[i].data);
    f->values[i] = atoi(tmp);
  }
}

static void on_ensure(void *ud, int status) {
  fx *f = ud;
  f->ensured = status == 0 ? 1 : -1;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until cond() or `ms` pass; returns cond(). */
typedef int (*cond_fn)(fx *f, void *arg);
static int run_until(fx *f, cond_fn cond, void *arg, int ms) {
  uint64_t t0 = now_ms();
  while (!cond(f, arg)) {
    if (now_ms() - t0 > (uint64_t)ms) return 0;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  return 1;
}

static int c_done(fx *f, void *arg) { return f->done; }
static int c_ensured(fx *f, void *arg) { return f->ensured != 0; }
static int c_count(fx *f, void *arg) { return f->n >= *(int *)arg; }
static int c_stored(fx *f, void *arg) {
  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  return st.stored >= *(uint64_t *)arg;
}
static int c_storing(fx *f, void *arg) { return nt_history_storing(f->h) == *(int *)arg; }

#define ACK_MS 3000

static nt_history *new_history(fx *f, long per_room) {
  nt_hist_cfg cfg = {3600, per_room, 0, 1, NULL, 0, 0, 0, NULL, 60, ACK_MS, 0, NULL};
  nt_history *h = NULL;
  assert_int_equal(nt_history_js_new(&f->loop, f->bus, f->url, "itest", &cfg, NULL, &h), 0);
  return h;
}

static void ensure(fx *f, nt_history *h) {
  f->ensured = 0;
  assert_int_equal(nt_history_ensure(h, on_ensure, f), 0);
  assert_true(run_until(f, c_ensured, NULL, 10000));
  assert_int_equal(f->ensured, 1);
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  snprintf(f->dir, sizeof f->dir, "/tmp/nt-itest-hist-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  if (nt_testsrv_nats_start_js(&f->srv, 0, 0, f->dir, 10000)) fail_msg("cannot start nats-server -js");
  snprintf(f->url, sizeof f->url, "nats://127.0.0.1:%d", f->srv.port);
  nt_bus_handler bh = {.on_msg = on_msg, .ud = f, .on_seq_msg = on_seq};
  assert_int_equal(nt_bus_nats_new(&f->loop, f->url, "itest-bus", &bh, &f->bus), 0);
  assert_int_equal(nt_bus_subscribe(f->bus, "natter.live.room.>", NULL, &f->sub), 0);
  f->h = new_history(f, 1000);
  ensure(f, f->h);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  if (f->h) nt_history_destroy(f->h);
  nt_bus_destroy(f->bus);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&f->loop);
  if (rc) uv_print_all_handles(&f->loop, stderr);
  assert_int_equal(rc, 0);
  nt_testsrv_stop(&f->srv);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", f->dir);
  free(f);
  return 0;
}

static void publish(fx *f, const char *room, int value) {
  char subject[64], data[16];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  int n = snprintf(data, sizeof data, "%d", value);
  assert_int_equal(nt_history_publish(f->h, subject, data, (size_t)n, NULL), 0);
}

static void read_after(fx *f, const char *room, uint64_t after, uint64_t upto, size_t max) {
  char subject[64];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  f->done = 0;
  assert_int_equal(nt_history_fetch_after(f->h, subject, after, upto, max, on_read, f), 0);
  assert_true(run_until(f, c_done, NULL, 10000));
  assert_int_equal(f->status, 0);
}

static void read_page(fx *f, const char *room, uint64_t before, size_t limit) {
  char subject[64];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  f->done = 0;
  assert_int_equal(nt_history_fetch_page(f->h, subject, before, limit, on_read, f), 0);
  assert_true(run_until(f, c_done, NULL, 10000));
  assert_int_equal(f->status, 0);
}

/* The live sequences of one room, in arrival order. */
static size_t room_seqs(fx *f, const char *room, uint64_t *out, int *values) {
  size_t k = 0;
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->got[i].room, room)) {
      values[k] = f->got[i].value;
      out[k++] = f->got[i].seq;
    }
  return k;
}

static const char *room_of(int k) {
  static const char *dense[] = {"r0", "r1", "r2", "r3"};
  return k % 17 == 0 ? "sparse" : dense[k % 4];
}

static void test_js_live_chain_reads_and_pages(void **state) {
  fx *f = *state;
  const int total = 300;
  for (int k = 0; k < total; k++) publish(f, room_of(k), k);
  int want = total;
  assert_true(run_until(f, c_count, &want, 15000));
  uint64_t stored = (uint64_t)total;
  assert_true(run_until(f, c_stored, &stored, 10000)); /* every publication acknowledged */

  /* one stream sequence, and each room's chain links to its previous message */
  uint64_t prev_global = 0;
  const char *rooms[] = {"r0", "r1", "r2", "r3", "sparse"};
  for (int i = 0; i < f->n; i++) {
    assert_true(f->got[i].seq > prev_global);
    prev_global = f->got[i].seq;
  }
  for (size_t r = 0; r < 5; r++) {
    uint64_t last = 0;
    for (int i = 0; i < f->n; i++) {
      if (strcmp(f->got[i].room, rooms[r])) continue;
      assert_int_equal(f->got[i].last, last);
      last = f->got[i].seq;
    }
  }

  static uint64_t sp[MAXMSG], d0[MAXMSG];
  static int spv[MAXMSG], d0v[MAXMSG];
  size_t nsp = room_seqs(f, "sparse", sp, spv), nd0 = room_seqs(f, "r0", d0, d0v);
  assert_int_equal(nsp, 18);

  /* replay reads */
  read_after(f, "sparse", 0, 0, 1000);
  assert_int_equal(f->nr, nsp);
  assert_true(f->anchored);
  for (size_t i = 0; i < nsp; i++) assert_int_equal(f->seqs[i], sp[i]);
  read_after(f, "sparse", sp[3], 0, 1000); /* resume after the 4th */
  assert_true(f->anchored);
  assert_int_equal(f->nr, nsp - 4);
  assert_int_equal(f->seqs[0], sp[4]);
  read_after(f, "sparse", d0[5], 0, 1000); /* another room's position */
  assert_false(f->anchored);
  read_after(f, "r0", d0[2], d0[5], 1000); /* repair (d0[2], d0[5]] */
  assert_int_equal(f->nr, 3);
  assert_int_equal(f->seqs[0], d0[3]);
  assert_int_equal(f->seqs[2], d0[5]);
  read_after(f, "r0", 0, 0, 10); /* capped */
  assert_int_equal(f->nr, 10);
  assert_true(f->more);

  /* pages, newest first across pages, oldest first within: sparse and dense rooms */
  struct { const char *room; uint64_t *s; int *v; size_t n; size_t limit; } cases[] = {
      {"sparse", sp, spv, nsp, 5}, {"r0", d0, d0v, nd0, 7}, {"r0", d0, d0v, nd0, 50}};
  for (size_t c = 0; c < 3; c++) {
    size_t end = cases[c].n; /* exclusive index of the next page's newest */
    uint64_t before = 0;
    int pages = 0;
    for (;;) {
      read_page(f, cases[c].room, before, cases[c].limit);
      size_t start = end > cases[c].limit ? end - cases[c].limit : 0;
      if (f->nr != end - start)
        fail_msg("%s limit %zu page %d: %zu messages, expected %zu", cases[c].room,
                 cases[c].limit, pages, f->nr, end - start);
      for (size_t i = 0; i < f->nr; i++) {
        assert_int_equal(f->seqs[i], cases[c].s[start + i]);
        assert_int_equal(f->values[i], cases[c].v[start + i]);
      }
      assert_int_equal(f->more, start > 0);
      pages++;
      if (!f->more) break;
      before = f->seqs[0];
      end = start;
    }
    assert_int_equal(pages, (int)((cases[c].n + cases[c].limit - 1) / cases[c].limit));
  }
  read_page(f, "nothing", 0, 10);
  assert_int_equal(f->nr, 0);
  assert_false(f->more);
}

static void test_js_ensure_is_idempotent_and_updates(void **state) {
  fx *f = *state;
  ensure(f, f->h); /* again: no change */
  nt_history_destroy(f->h);
  f->h = new_history(f, 3); /* another node with other retention updates the stream */
  ensure(f, f->h);
  for (int i = 0; i < 5; i++) publish(f, "x", i);
  int want = 5;
  assert_true(run_until(f, c_count, &want, 10000));
  read_after(f, "x", 0, 0, 100);
  assert_int_equal(f->nr, 3);
  assert_int_equal(f->values[0], 2);
}

static void on_pub_ack(void *ud, const nt_hist_ack *a) {
  fx *f = ud;
  if (f->nacks >= MAXMSG) return;
  f->ack_status[f->nacks] = a->status;
  f->ack_dup[f->nacks] = a->duplicate;
  f->ack_seq[f->nacks] = a->seq;
  f->ack_at[f->nacks++] = now_ms();
}

static int c_acks(fx *f, void *arg) { return f->nacks >= *(int *)arg; }

/* Publishes `value` in room `room` with msg_id `id`; returns publish's result. */
static int publish_id(fx *f, const char *room, int value, const char *id) {
  char subject[64], data[16];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  int n = snprintf(data, sizeof data, "%d", value);
  nt_hist_pub pub = {.msg_id = id, .on_ack = on_pub_ack, .ud = f};
  uv_update_time(&f->loop); /* the loop did not run while the server restarted */
  return nt_history_publish(f->h, subject, data, (size_t)n, &pub);
}

/* Publishes with `id` and waits for its outcome; returns the status. */
static int publish_wait(fx *f, const char *room, int value, const char *id) {
  int want = f->nacks + 1;
  assert_int_equal(publish_id(f, room, value, id), 0);
  assert_true(run_until(f, c_acks, &want, ACK_MS + 3000));
  return f->ack_status[f->nacks - 1];
}

static void test_js_dedupe_by_msg_id(void **state) {
  fx *f = *state;
  assert_int_equal(publish_wait(f, "x", 1, "t:alice:m1"), 0);
  assert_int_equal(f->ack_dup[0], 0);
  assert_true(f->ack_seq[0] > 0);
  int want = 1;
  assert_true(run_until(f, c_count, &want, 5000));
  assert_int_equal(f->got[0].seq, f->ack_seq[0]);
  /* the same id again, even with other data: a duplicate, neither stored nor delivered */
  assert_int_equal(publish_wait(f, "x", 2, "t:alice:m1"), 0);
  assert_int_equal(f->ack_dup[1], 1);
  assert_int_equal(f->ack_seq[1], f->ack_seq[0]);
  /* another sender's key with the same message id is another message */
  assert_int_equal(publish_wait(f, "x", 3, "t:bob:m1"), 0);
  assert_int_equal(f->ack_dup[2], 0);
  want = 2;
  assert_true(run_until(f, c_count, &want, 5000));
  run_until(f, c_count, &(int){3}, 300); /* a wrong third delivery would come by now */
  assert_int_equal(f->n, 2);
  assert_int_equal(f->got[1].value, 3);
  read_after(f, "x", 0, 0, 100);
  assert_int_equal(f->nr, 2);
  assert_int_equal(f->values[0], 1);
  assert_int_equal(f->values[1], 3);
  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.stored, 2);
  assert_int_equal(st.duplicates, 1);
  /* a bad key is refused at once, no callback */
  assert_int_equal(publish_id(f, "x", 4, ""), NT_EINVAL);
  assert_int_equal(publish_id(f, "x", 4, "bad\nkey"), NT_EINVAL);
  run_until(f, c_acks, &(int){4}, 200);
  assert_int_equal(f->nacks, 3);
}

static void test_js_outage_unavailable_then_back(void **state) {
  fx *f = *state;
  assert_int_equal(publish_wait(f, "x", 1, "t:a:1"), 0);
  int want = 1;
  assert_true(run_until(f, c_count, &want, 5000));

  /* the same server comes back without JetStream: no stream answers */
  char dir[256];
  snprintf(dir, sizeof dir, "%s", f->srv.js_dir);
  nt_testsrv_stop(&f->srv);
  f->srv.js_dir[0] = '\0';
  assert_int_equal(nt_testsrv_restart(&f->srv, 10000), 0);
  uint64_t t0 = now_ms();
  /* not acknowledged within the bound: NT_ETIMEOUT, and never delivered live-only */
  assert_int_equal(publish_wait(f, "x", 2, "t:a:2"), NT_ETIMEOUT);
  assert_true(f->ack_at[1] - t0 >= ACK_MS - 50);
  assert_int_equal(f->n, 1);
  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.unavailable, 1);
  assert_true(st.resent >= 1); /* it was tried again with the same key */
  assert_int_equal(st.live_only, 0);
  int storing = 0;
  assert_true(run_until(f, c_storing, &storing, 5000));
  assert_int_equal(nt_history_fetch_after(f->h, "natter.room.t.x", 0, 0, 5, on_read, f),
                   NT_EAGAIN); /* reads fail at once while the stream does not answer */

  /* sent while the stream is away, which comes back within the bound: stored late */
  int before = f->nacks;
  assert_int_equal(publish_id(f, "x", 3, "t:a:3"), 0);
  nt_testsrv_stop(&f->srv);
  snprintf(f->srv.js_dir, sizeof f->srv.js_dir, "%s", dir);
  assert_int_equal(nt_testsrv_restart(&f->srv, 10000), 0);
  want = before + 1;
  assert_true(run_until(f, c_acks, &want, ACK_MS + 3000));
  int late_ok = f->ack_status[before] == 0; /* the bound may pass while the bus reconnects */

  /* the caller resends what was not acknowledged, with the same key: stored once */
  t0 = now_ms();
  int st2 = -1;
  while (st2 != 0 && now_ms() - t0 < 20000) st2 = publish_wait(f, "x", 2, "t:a:2");
  assert_int_equal(st2, 0);
  if (!late_ok) assert_int_equal(publish_wait(f, "x", 3, "t:a:3"), 0);
  assert_int_equal(publish_wait(f, "x", 3, "t:a:3"), 0); /* once more: a duplicate */
  assert_int_equal(f->ack_dup[f->nacks - 1], 1);
  want = 3;
  assert_true(run_until(f, c_count, &want, 5000));
  run_until(f, c_count, &(int){4}, 300);
  assert_int_equal(f->n, 3); /* each delivered once, each with its sequence */
  for (int i = 0; i < 3; i++) assert_true(f->got[i].seq > 0);
  read_after(f, "x", 0, 0, 100);
  assert_int_equal(f->nr, 3);
  int seen2 = 0, seen3 = 0;
  for (size_t i = 1; i < f->nr; i++) {
    seen2 += f->values[i] == 2;
    seen3 += f->values[i] == 3;
  }
  assert_int_equal(f->values[0], 1);
  assert_int_equal(seen2, 1);
  assert_int_equal(seen3, 1);
  print_message("stored within the bound after the stream came back: %s\n",
                late_ok ? "yes" : "no (bound passed first)");
}

/* Reads counted by outcome (a storm of resumes). */
typedef struct tally {
  int calls, ok, timeout, closed, other;
  size_t msgs;
} tally;

static void on_tally(void *ud, const nt_hist_result *r) {
  tally *t = ud;
  t->calls++;
  if (r->status == 0) {
    t->ok++;
    t->msgs += r->n;
  } else if (r->status == NT_ETIMEOUT) t->timeout++;
  else if (r->status == NT_ECLOSED) t->closed++;
  else t->other++;
}

typedef struct storm {
  tally t;
  int want;
} storm;

static int c_storm(fx *f, void *arg) { return ((storm *)arg)->t.calls >= ((storm *)arg)->want; }

/* More reads at once than the history runs: they wait, in order, and are answered (or
 * time out waiting, NT_ETIMEOUT); past the running and waiting bounds a read is refused
 * at once with NT_EAGAIN, never queued without bound. Destroying the history answers the
 * waiting ones with NT_ECLOSED before it returns. */
static void test_js_reads_wait_bounded(void **state) {
  fx *f = *state;
  publish(f, "q", 1);
  uint64_t one = 1;
  assert_true(run_until(f, c_stored, &one, 10000));
  const int accepted = NT_HIST_JS_READS_RUNNING + NT_HIST_JS_READS_WAITING, extra = 500;
  storm s = {.want = accepted};
  int refused = 0;
  for (int i = 0; i < accepted + extra; i++) {
    int rc = nt_history_fetch_after(f->h, "natter.room.t.q", 0, 0, 5, on_tally, &s.t);
    if (rc == NT_EAGAIN) refused++;
    else assert_int_equal(rc, 0);
  }
  assert_int_equal(refused, extra);
  assert_int_equal(s.t.calls, 0); /* never inside the call */
  assert_true(run_until(f, c_storm, &s, 60000));
  assert_int_equal(s.t.calls, accepted);
  assert_int_equal(s.t.ok + s.t.timeout, accepted);
  assert_true(s.t.ok >= NT_HIST_JS_READS_RUNNING); /* at least those that never waited */
  assert_int_equal(s.t.msgs, (size_t)s.t.ok);      /* each read the room's one message */
  /* room again once the storm is answered */
  read_after(f, "q", 0, 0, 5);
  assert_int_equal(f->nr, 1);

  /* waiting reads when the history goes: answered before destroy returns */
  storm d = {.want = 3000};
  for (int i = 0; i < d.want; i++)
    assert_int_equal(nt_history_fetch_after(f->h, "natter.room.t.q", 0, 0, 5, on_tally, &d.t), 0);
  nt_history_destroy(f->h);
  f->h = NULL;
  assert_int_equal(d.t.calls, d.want);
  assert_int_equal(d.t.ok + d.t.closed, d.want);
  assert_true(d.t.closed > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_js_live_chain_reads_and_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_js_ensure_is_idempotent_and_updates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_js_dedupe_by_msg_id, setup, teardown),
      cmocka_unit_test_setup_teardown(test_js_outage_unavailable_then_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_js_reads_wait_bounded, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
