/* itest_history_js: the JetStream history against a real nats-server -js — stream created
 * and updated idempotently, every stored message republished on its live subject with a
 * per-room chain (seq, last), acknowledgments counted, replay and repair reads, backward
 * pages over a stream where rooms interleave (sparse and dense), and a JetStream outage:
 * live-only delivery within the acknowledgment timeout, then storing again once the
 * stream is back. */
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

static nt_history *new_history(fx *f, long per_room) {
  nt_hist_cfg cfg = {3600, per_room, 0, 1, NULL, 0, 0, 0, NULL};
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
  nt_bus_handler bh = {on_msg, NULL, f, on_seq};
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
  assert_int_equal(nt_history_publish(f->h, subject, data, (size_t)n), 0);
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

static void test_js_outage_live_only_then_back(void **state) {
  fx *f = *state;
  publish(f, "x", 1);
  int want = 1;
  assert_true(run_until(f, c_count, &want, 10000));
  assert_true(f->got[0].seq > 0);

  /* the same server comes back without JetStream: no stream answers */
  char dir[256];
  snprintf(dir, sizeof dir, "%s", f->srv.js_dir);
  nt_testsrv_stop(&f->srv);
  f->srv.js_dir[0] = '\0';
  assert_int_equal(nt_testsrv_restart(&f->srv, 10000), 0);
  uint64_t t0 = now_ms();
  int sent = 0;
  want = 2;
  while (f->n < 2 && now_ms() - t0 < 15000) { /* until the bus is back and one gets out */
    publish(f, "x", 100 + sent++);
    uint64_t t1 = now_ms();
    while (f->n < 2 && now_ms() - t1 < 1500) {
      uv_run(&f->loop, UV_RUN_NOWAIT);
      usleep(1000);
    }
  }
  assert_true(f->n >= 2);
  assert_int_equal(f->got[1].seq, 0); /* live-only: delivered without a position */
  int storing = 0;
  assert_true(run_until(f, c_storing, &storing, 5000));
  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.outages, 1);
  assert_true(st.resent + st.live_only >= 1);
  /* while live-only, reads fail at once */
  assert_int_equal(nt_history_fetch_after(f->h, "natter.room.t.x", 0, 0, 5, on_read, f),
                   NT_EAGAIN);
  int before = f->n;
  publish(f, "x", 200); /* live-only at once, no acknowledgment wait */
  want = before + 1;
  assert_true(run_until(f, c_count, &want, 1000));
  assert_int_equal(f->got[before].seq, 0);

  /* JetStream back (same store): the history probes, stores again */
  nt_testsrv_stop(&f->srv);
  snprintf(f->srv.js_dir, sizeof f->srv.js_dir, "%s", dir);
  assert_int_equal(nt_testsrv_restart(&f->srv, 10000), 0);
  storing = 1;
  assert_true(run_until(f, c_storing, &storing, 15000));
  before = f->n;
  t0 = now_ms();
  while (now_ms() - t0 < 10000) { /* the bus may still be reconnecting */
    publish(f, "x", 300);
    want = f->n + 1;
    if (run_until(f, c_count, &want, 1500) && f->got[f->n - 1].seq > 0) break;
  }
  assert_true(f->n > before && f->got[f->n - 1].seq > 0);
  read_after(f, "x", 0, 0, 100); /* the stream kept what it had before the outage */
  assert_true(f->nr >= 2);
  assert_int_equal(f->values[0], 1);
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
      cmocka_unit_test_setup_teardown(test_js_outage_live_only_then_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_js_reads_wait_bounded, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
