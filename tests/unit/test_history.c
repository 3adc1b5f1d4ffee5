/* test_history: the in-memory history (sequences, reads, retention, async callbacks,
 * destroy), the sequencing rule, stream positions on the memory bus, and a standalone node
 * with history driven by WebSocket clients on the memory transport (no sockets): gap repair from the history, duplicates
 * dropped, a resume whose replay and live messages are merged by sequence (with a hole at
 * the junction), `recovered: false` past retention, and history pages.
 *
 * For the node tests the history publishes on its own memory bus (the "tap") and the test
 * forwards what it stores to the node's bus, dropping or duplicating chosen sequences, the
 * way a NATS slow consumer or reconnect would; a wrapper around the history can hold
 * fetch results until the test releases them. */
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
#include <unistd.h>
#include <uv.h>

#include "nt_bus.h"
#include "nt_config.h"
#include "nt_envelope.h"
#include "nt_err.h"
#include "nt_history.h"
#include "nt_chat.h"
#include "nt_node.h"
#include "nt_presence.h"
#include "nt_proto.h"
#include "nt_resume.h"
#include "../nt_test_node.h"

#define SECRET "history-test-secret-0123456789abcdef"
#define WAIT_MS 3000

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ================================================================ memory history */

typedef struct seen {
  char subject[128];
  uint64_t seq, last;
  size_t len;
} seen;

typedef struct hfix {
  uv_loop_t loop;
  nt_bus *bus;
  nt_bus_sub *sub;
  nt_history *h;
  seen got[64];
  size_t ngot, nplain;
  /* last fetch */
  int done, status, anchored, more;
  uint64_t seqs[64];
  char data[64][32];
  size_t n;
  int in_call; /* set around calls: a callback must never run inside them */
} hfix;

static void on_plain(void *ud, const char *subject, const uint8_t *data, size_t len,
                     const char *reply, const nt_bus_sub *sub) {
  ((hfix *)ud)->nplain++;
}

static void on_seq(void *ud, const char *subject, const uint8_t *data, size_t len,
                   const nt_bus_seq *seq) {
  hfix *f = ud;
  if (f->ngot == 64) return;
  seen *s = &f->got[f->ngot++];
  snprintf(s->subject, sizeof s->subject, "%s", subject);
  s->seq = seq->seq;
  s->last = seq->last;
  s->len = len;
}

static void on_fetch(void *ud, const nt_hist_result *r) {
  hfix *f = ud;
  assert_false(f->in_call);
  f->done = 1;
  f->status = r->status;
  f->anchored = r->anchored;
  f->more = r->more;
  f->n = r->n < 64 ? r->n : 64;
  for (size_t i = 0; i < f->n; i++) {
    f->seqs[i] = r->msgs[i].seq;
    snprintf(f->data[i], sizeof f->data[i], "%.*s", (int)r->msgs[i].len,
             (const char *)r->msgs[i].data);
    assert_true(r->msgs[i].stored_ms > 0);
  }
}

static hfix *hfix_new(long per_room, double max_age, size_t max_bytes) {
  hfix *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  nt_bus_handler bh = {.on_msg = on_plain, .ud = f, .on_seq_msg = on_seq};
  f->bus = nt_bus_mem_new(&f->loop, &bh);
  assert_non_null(f->bus);
  assert_int_equal(nt_bus_subscribe(f->bus, "natter.live.room.>", NULL, &f->sub), 0);
  nt_hist_cfg cfg = {max_age, per_room, 0, 1, NULL, max_bytes, 0, 0, NULL, 0, 0, 0, NULL};
  f->h = nt_history_mem_new(&f->loop, f->bus, &cfg, NULL);
  assert_non_null(f->h);
  return f;
}

static void hfix_free(hfix *f) {
  if (f->h) nt_history_destroy(f->h);
  nt_bus_destroy(f->bus);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no leaked handle */
  free(f);
}

static void pub(hfix *f, const char *room, const char *text) {
  char subject[128];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  assert_int_equal(nt_history_publish(f->h, subject, text, strlen(text), NULL), 0);
}

static void run_until_done(hfix *f) {
  uint64_t t0 = now_ms();
  while (!f->done) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (now_ms() - t0 > WAIT_MS) fail_msg("no fetch result");
  }
}

static void after(hfix *f, const char *room, uint64_t a, uint64_t upto, size_t max) {
  char subject[128];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  f->done = 0;
  f->in_call = 1;
  assert_int_equal(nt_history_fetch_after(f->h, subject, a, upto, max, on_fetch, f), 0);
  f->in_call = 0;
  run_until_done(f);
  assert_int_equal(f->status, 0);
}

static void page(hfix *f, const char *room, uint64_t before, size_t limit) {
  char subject[128];
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  f->done = 0;
  f->in_call = 1;
  assert_int_equal(nt_history_fetch_page(f->h, subject, before, limit, on_fetch, f), 0);
  f->in_call = 0;
  run_until_done(f);
  assert_int_equal(f->status, 0);
}

static void expect_seqs(hfix *f, const uint64_t *want, size_t n) {
  if (f->n != n) fail_msg("got %zu messages, expected %zu", f->n, n);
  for (size_t i = 0; i < n; i++) assert_int_equal(f->seqs[i], want[i]);
}

static void test_mem_sequences_and_reads(void **state) {
  hfix *f = hfix_new(1000, 0, 0);
  /* a1 b1 a2 a3 b2: one sequence for all rooms, each message knows its room's previous */
  pub(f, "a", "a1");
  pub(f, "b", "b1");
  pub(f, "a", "a2");
  pub(f, "a", "a3");
  pub(f, "b", "b2");
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->ngot, 5);
  assert_int_equal(f->nplain, 0);
  const uint64_t last[] = {0, 0, 1, 3, 2};
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(f->got[i].seq, i + 1);
    assert_int_equal(f->got[i].last, last[i]);
  }
  assert_string_equal(f->got[0].subject, "natter.live.room.t.a");
  assert_string_equal(f->got[1].subject, "natter.live.room.t.b");

  after(f, "a", 0, 0, 100); /* everything: anchored by definition */
  expect_seqs(f, (const uint64_t[]){1, 3, 4}, 3);
  assert_true(f->anchored);
  assert_false(f->more);
  assert_string_equal(f->data[1], "a2");
  after(f, "a", 3, 0, 100); /* since 3: it is still stored, nothing lost */
  expect_seqs(f, (const uint64_t[]){4}, 1);
  assert_true(f->anchored);
  after(f, "a", 2, 0, 100); /* 2 is b's: not a position of room a */
  assert_false(f->anchored);
  after(f, "a", 1, 3, 100); /* a repair: (1, 3] */
  expect_seqs(f, (const uint64_t[]){3}, 1);
  after(f, "a", 0, 0, 2); /* capped */
  expect_seqs(f, (const uint64_t[]){1, 3}, 2);
  assert_true(f->more);
  after(f, "zz", 5, 0, 10); /* unknown room */
  assert_int_equal(f->n, 0);
  assert_false(f->anchored);

  page(f, "a", 0, 2); /* the newest two, oldest first */
  expect_seqs(f, (const uint64_t[]){3, 4}, 2);
  assert_true(f->more);
  page(f, "a", 3, 2); /* before 3 */
  expect_seqs(f, (const uint64_t[]){1}, 1);
  assert_false(f->more);
  page(f, "b", 0, 10);
  expect_seqs(f, (const uint64_t[]){2, 5}, 2);
  assert_false(f->more);

  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.published, 5);
  assert_int_equal(st.stored_msgs, 5);
  assert_true(st.storing);
  /* bad arguments */
  assert_int_equal(nt_history_publish(f->h, "natter.user.t.a", "x", 1, NULL), NT_EINVAL);
  assert_int_equal(nt_history_fetch_after(f->h, "natter.room.t.a", 0, 0, 0, on_fetch, f),
                   NT_EINVAL);
  assert_int_equal(nt_history_fetch_page(f->h, "other", 0, 5, on_fetch, f), NT_EINVAL);
  hfix_free(f);
}

static void test_mem_retention(void **state) {
  hfix *f = hfix_new(3, 0, 0);
  for (int i = 1; i <= 5; i++) pub(f, "a", "x");
  after(f, "a", 1, 0, 100); /* 1 left with the count bound: not anchored */
  expect_seqs(f, (const uint64_t[]){3, 4, 5}, 3);
  assert_false(f->anchored);
  after(f, "a", 3, 0, 100);
  expect_seqs(f, (const uint64_t[]){4, 5}, 2);
  assert_true(f->anchored);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->got[4].last, 4); /* the chain survives eviction */
  hfix_free(f);

  /* bytes: all rooms together, oldest first (64 bytes of overhead per message) */
  f = hfix_new(1000, 0, 3 * (64 + 10));
  pub(f, "a", "0123456789");
  pub(f, "b", "0123456789");
  pub(f, "a", "0123456789");
  pub(f, "c", "0123456789");
  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.stored_msgs, 3);
  after(f, "a", 0, 0, 10);
  expect_seqs(f, (const uint64_t[]){3}, 1);
  hfix_free(f);

  /* age */
  f = hfix_new(1000, 0.05, 0);
  pub(f, "a", "old");
  usleep(120 * 1000);
  pub(f, "a", "new");
  after(f, "a", 0, 0, 10);
  expect_seqs(f, (const uint64_t[]){2}, 1);
  hfix_free(f);
}

/* The per-tenant budget and the message size limit: past them a publication is refused
 * (NT_ELIMIT: neither stored nor delivered) and the tenant's stored history stays as it
 * was; another tenant is not affected. */
static void test_mem_tenant_quota_and_msg_size(void **state) {
  (void)state;
  hfix *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  nt_bus_handler bh = {.on_msg = on_plain, .ud = f, .on_seq_msg = on_seq};
  f->bus = nt_bus_mem_new(&f->loop, &bh);
  assert_int_equal(nt_bus_subscribe(f->bus, "natter.live.room.>", NULL, &f->sub), 0);
  nt_hist_cfg cfg = {.max_age_s = 3600, .max_per_room = 1000, .replicas = 1,
                     .max_msg_bytes = 15, .tenant_bytes = 25};
  f->h = nt_history_mem_new(&f->loop, f->bus, &cfg, NULL);
  assert_non_null(f->h);
  pub(f, "a", "0123456789");         /* t: 10 of 25 */
  pub(f, "b", "0123456789");         /* t: 20 */
  pub(f, "a", "0123456789");         /* t would be 30: refused */
  pub(f, "a", "0123456789abcdef");   /* 16 > 15 bytes: refused */
  assert_int_equal(nt_history_publish(f->h, "natter.room.u.a", "0123456789", 10, NULL), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  nt_hist_stats st;
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.published, 5);
  assert_int_equal(st.stored, 3);
  assert_int_equal(st.over_quota, 2);
  assert_int_equal(st.live_only, 0);
  assert_int_equal(f->ngot, 3);   /* sequenced: the stored ones */
  assert_int_equal(f->nplain, 0); /* the refused ones reach nobody */
  after(f, "a", 0, 0, 10);
  expect_seqs(f, (const uint64_t[]){1}, 1);
  hfix_free(f);
}

static int closed_cb_status = 1;
static void on_closed_fetch(void *ud, const nt_hist_result *r) { closed_cb_status = r->status; }
static int ensure_status = 1;
static void on_ensure(void *ud, int status) { ensure_status = status; }

static void test_mem_async_and_destroy(void **state) {
  hfix *f = hfix_new(10, 0, 0);
  assert_int_equal(nt_history_ensure(f->h, on_ensure, NULL), 0);
  assert_int_equal(ensure_status, 1); /* never inside the call */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(ensure_status, 0);
  closed_cb_status = 1;
  assert_int_equal(nt_history_fetch_after(f->h, "natter.room.t.a", 0, 0, 5, on_closed_fetch, NULL), 0);
  assert_int_equal(closed_cb_status, 1);
  nt_history_destroy(f->h); /* pending callbacks run now, failed */
  f->h = NULL;
  assert_int_equal(closed_cb_status, NT_ECLOSED);
  hfix_free(f);
}

static void test_seq_rule(void **state) {
  /* live-only messages are always delivered */
  assert_int_equal(nt_seq_check(10, 0, 0, 0), NT_SEQ_DELIVER);
  /* first message of a fresh position: anything */
  assert_int_equal(nt_seq_check(0, 0, 7, 5), NT_SEQ_DELIVER);
  /* in order */
  assert_int_equal(nt_seq_check(5, 0, 7, 5), NT_SEQ_DELIVER);
  /* the room's previous is older than ours (stream reset): accepted */
  assert_int_equal(nt_seq_check(6, 0, 7, 5), NT_SEQ_DELIVER);
  /* already delivered */
  assert_int_equal(nt_seq_check(7, 0, 7, 5), NT_SEQ_DUP);
  assert_int_equal(nt_seq_check(7, 0, 3, 1), NT_SEQ_DUP);
  assert_int_equal(nt_seq_check(7, 1, 7, 5), NT_SEQ_DUP);
  /* a hole: 6 was missed */
  assert_int_equal(nt_seq_check(5, 0, 8, 6), NT_SEQ_GAP);
  /* ... unless the hole is accepted (repair failed) */
  assert_int_equal(nt_seq_check(5, 1, 8, 6), NT_SEQ_DELIVER);
}

static int plain_calls, seq_calls;
static nt_bus_seq seq_got;
static void bp_plain(void *ud, const char *s, const uint8_t *d, size_t l, const char *r,
                     const nt_bus_sub *sub) {
  plain_calls++;
}
static void bp_seq(void *ud, const char *s, const uint8_t *d, size_t l, const nt_bus_seq *q) {
  seq_calls++;
  seq_got = *q;
}

static void test_bus_mem_positions(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  for (int with = 0; with < 2; with++) {
    nt_bus_handler h = {.on_msg = bp_plain, .on_seq_msg = with ? bp_seq : NULL};
    nt_bus *b = nt_bus_mem_new(&loop, &h);
    nt_bus_sub *s;
    assert_int_equal(nt_bus_subscribe(b, "x.>", NULL, &s), 0);
    plain_calls = seq_calls = 0;
    nt_bus_seq q = {42, 40};
    assert_int_equal(nt_bus_publish_seq(b, "x.y", "d", 1, &q), 0);
    assert_int_equal(nt_bus_publish(b, "x.y", "d", 1, NULL), 0);
    assert_int_equal(nt_bus_publish_seq(b, "x.y", "d", 1, NULL), NT_EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (with) {
      assert_int_equal(seq_calls, 1);
      assert_int_equal(plain_calls, 1);
      assert_int_equal(seq_got.seq, 42);
      assert_int_equal(seq_got.last, 40);
    } else { /* no position handler: everything to on_msg */
      assert_int_equal(seq_calls, 0);
      assert_int_equal(plain_calls, 2);
    }
    nt_bus_destroy(b);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ================================================================ node */

/* A history wrapper that can hold fetch_after results until released. */
typedef struct held_result {
  nt_hist_cb cb;
  void *ud;
  int status, anchored, more;
  nt_hist_msg *msgs;
  size_t n;
} held_result;

typedef struct park_hist {
  nt_history base;
  nt_history *inner;
  int park;                 /* hold the next fetch_after results */
  int fail;                 /* reads fail at once (history down) */
  held_result held[8];
  size_t nheld;
  int fetches;
} park_hist;

typedef struct park_req {
  park_hist *p;
  nt_hist_cb cb;
  void *ud;
  int park;
} park_req;

static void park_on_fetch(void *ud, const nt_hist_result *r) {
  park_req *rq = ud;
  park_hist *p = rq->p;
  if (rq->park && r->status == 0 && p->nheld < 8) {
    held_result *h = &p->held[p->nheld++];
    h->cb = rq->cb;
    h->ud = rq->ud;
    h->status = r->status;
    h->anchored = r->anchored;
    h->more = r->more;
    h->n = r->n;
    h->msgs = calloc(r->n + 1, sizeof *h->msgs);
    for (size_t i = 0; i < r->n; i++) {
      uint8_t *d = malloc(r->msgs[i].len);
      memcpy(d, r->msgs[i].data, r->msgs[i].len);
      h->msgs[i] = r->msgs[i];
      h->msgs[i].data = d;
    }
  } else {
    rq->cb(rq->ud, r);
  }
  free(rq);
}

static void park_release(park_hist *p) {
  for (size_t i = 0; i < p->nheld; i++) {
    held_result *h = &p->held[i];
    nt_hist_result r = {h->status, h->msgs, h->n, h->anchored, h->more};
    h->cb(h->ud, &r);
    for (size_t k = 0; k < h->n; k++) free((void *)h->msgs[k].data);
    free(h->msgs);
  }
  p->nheld = 0;
}

static int p_ensure(nt_history *hh, nt_hist_done_cb cb, void *ud) {
  return nt_history_ensure(((park_hist *)hh)->inner, cb, ud);
}
static int p_publish(nt_history *hh, const char *s, const void *d, size_t l,
                     const nt_hist_pub *pub) {
  return nt_history_publish(((park_hist *)hh)->inner, s, d, l, pub);
}
static int p_after(nt_history *hh, const char *s, uint64_t a, uint64_t u, size_t max,
                   nt_hist_cb cb, void *ud) {
  park_hist *p = (park_hist *)hh;
  if (p->fail) return NT_EAGAIN;
  park_req *rq = calloc(1, sizeof *rq);
  *rq = (park_req){p, cb, ud, p->park};
  p->fetches++;
  int rc = nt_history_fetch_after(p->inner, s, a, u, max, park_on_fetch, rq);
  if (rc) free(rq);
  return rc;
}
static int p_page(nt_history *hh, const char *s, uint64_t b, size_t l, nt_hist_cb cb, void *ud) {
  if (((park_hist *)hh)->fail) return NT_EAGAIN;
  return nt_history_fetch_page(((park_hist *)hh)->inner, s, b, l, cb, ud);
}
static int p_storing(nt_history *hh) { return nt_history_storing(((park_hist *)hh)->inner); }
static void p_stats(nt_history *hh, nt_hist_stats *o) {
  nt_history_get_stats(((park_hist *)hh)->inner, o);
}
static void p_destroy(nt_history *hh) {
  park_hist *p = (park_hist *)hh;
  for (size_t i = 0; i < p->nheld; i++) { /* fail what is still held */
    nt_hist_result r = {.status = NT_ECLOSED};
    p->held[i].cb(p->held[i].ud, &r);
    for (size_t k = 0; k < p->held[i].n; k++) free((void *)p->held[i].msgs[k].data);
    free(p->held[i].msgs);
  }
  p->nheld = 0;
  nt_history_destroy(p->inner);
  free(p);
}
static const nt_history_vtab park_vtab = {
    .ensure = p_ensure,
    .publish = p_publish,
    .fetch_after = p_after,
    .fetch_page = p_page,
    .storing = p_storing,
    .stats = p_stats,
    .destroy = p_destroy,
};

typedef struct tmsg {
  char subject[256];
  uint8_t *data;
  size_t len;
  nt_bus_seq seq;
} tmsg;

typedef struct env {
  uv_loop_t loop;
  nt_config cfg;
  nt_node *node;
  nt_bus *nbus;          /* the node's bus */
  nt_bus *tap;           /* where the history publishes */
  nt_bus_sub *tap_sub;
  park_hist *park;
  uint64_t drop[8];      /* sequences the tap does not forward */
  size_t ndrop;
  uint64_t dup;          /* a sequence the tap forwards twice */
  int hold;              /* keep what the tap gets instead of forwarding */
  tmsg held[64];
  size_t nheld;
} env;

static env *g;

static void tap_seq(void *ud, const char *subject, const uint8_t *data, size_t len,
                    const nt_bus_seq *seq) {
  env *e = ud;
  for (size_t i = 0; i < e->ndrop; i++)
    if (e->drop[i] == seq->seq) return;
  if (e->hold && e->nheld < 64) {
    tmsg *m = &e->held[e->nheld++];
    snprintf(m->subject, sizeof m->subject, "%s", subject);
    m->data = malloc(len);
    memcpy(m->data, data, len);
    m->len = len;
    m->seq = *seq;
    return;
  }
  nt_bus_publish_seq(e->nbus, subject, data, len, seq);
  if (seq->seq == e->dup) nt_bus_publish_seq(e->nbus, subject, data, len, seq);
}

static void tap_plain(void *ud, const char *subject, const uint8_t *data, size_t len,
                      const char *reply, const nt_bus_sub *sub) {
  nt_bus_publish(((env *)ud)->nbus, subject, data, len, NULL);
}

static void tap_release(env *e) {
  for (size_t i = 0; i < e->nheld; i++) {
    nt_bus_publish_seq(e->nbus, e->held[i].subject, e->held[i].data, e->held[i].len,
                       &e->held[i].seq);
    free(e->held[i].data);
  }
  e->nheld = 0;
  e->hold = 0;
}

/* A node with --history-max-per-room `per_room` and --history-recent `recent`. */
static env *env_start_recent(const char *per_room, const char *recent) {
  env *e = calloc(1, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  char *argv[] = {"natter-node", "--jwt-secret", SECRET, "--listen", "127.0.0.1:0",
                  "--api-listen", "127.0.0.1:0", "--node-id", "hist-node",
                  "--history-max-per-room", (char *)per_room, "--history-recent",
                  (char *)recent, "--log-level", "error", NULL};
  FILE *devnull = fopen("/dev/null", "w");
  assert_int_equal(nt_config_parse(&e->cfg, 15, argv, devnull, stderr), 0);
  fclose(devnull);
  e->node = nt_node_new(&e->loop, &e->cfg);
  assert_non_null(e->node);
  nt_auth_cfg acfg = {.alg = e->cfg.jwt_alg, .secret = e->cfg.jwt_secret};
  nt_auth *auth = NULL;
  char err[256];
  assert_int_equal(nt_auth_new(&acfg, &auth, err, sizeof err), 0);
  nt_bus_handler bh = nt_node_bus_handler(e->node);
  e->nbus = nt_bus_mem_new(&e->loop, &bh);
  nt_bus_handler th = {.on_msg = tap_plain, .ud = e, .on_seq_msg = tap_seq};
  e->tap = nt_bus_mem_new(&e->loop, &th);
  assert_int_equal(nt_bus_subscribe(e->tap, "natter.live.room.>", NULL, &e->tap_sub), 0);
  nt_presence_handler ph = nt_node_presence_handler(e->node);
  nt_presence *pres = nt_presence_mem_new(&e->loop, &ph);
  if (bh.on_state) bh.on_state(bh.ud, 1);
  nt_hist_cfg hc = {.max_per_room = e->cfg.history_max_per_room, .replicas = 1};
  e->park = calloc(1, sizeof *e->park);
  e->park->base.vt = &park_vtab;
  e->park->inner = nt_history_mem_new(&e->loop, e->tap, &hc, NULL);
  assert_non_null(e->park->inner);
  nt_node_attach(e->node, e->nbus, pres, auth);
  assert_int_equal(nt_node_attach_history(e->node, &e->park->base), 0);
  assert_int_equal(nt_node_start(e->node), 0);
  g = e;
  return e;
}

static env *env_start(const char *per_room) { return env_start_recent(per_room, "128"); }

static void env_stop(env *e) {
  nt_node_stop(e->node);
  uint64_t t0 = now_ms();
  while (uv_loop_alive(&e->loop)) {
    uv_run(&e->loop, UV_RUN_ONCE);
    if (now_ms() - t0 > 5000) fail_msg("node did not stop within 5 s");
  }
  for (size_t i = 0; i < e->nheld; i++) free(e->held[i].data);
  nt_bus_destroy(e->tap);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  nt_node_free(e->node);
  int rc = uv_loop_close(&e->loop);
  if (rc) {
    uv_print_all_handles(&e->loop, stderr);
    fail_msg("uv_loop_close: %s (a handle was leaked)", uv_strerror(rc));
  }
  nt_config_free(&e->cfg);
  free(e);
  g = NULL;
}

/* ---------------------------------------------------------------- client */

typedef struct cli {
  nt_mem_peer peer;  /* the connection's other end (memory transport) */
  uint8_t *buf;
  size_t len, cap;
  int eof;
  json_t *frames; /* every JSON frame received, in order */
  size_t consumed; /* frames looked at by cli_next */
} cli;

static void pump(void) { uv_run(&g->loop, UV_RUN_NOWAIT); }

static void cli_fill(cli *c) {
  if (nt_test_peer_take(&c->peer, &c->buf, &c->len, &c->cap)) c->eof = 1;
}

/* Parses complete server frames out of the buffer into c->frames (text frames only). */
static void cli_parse(cli *c) {
  for (;;) {
    if (c->len < 2) return;
    uint64_t n = c->buf[1] & 0x7f;
    size_t h = 2;
    if (n == 126) {
      if (c->len < 4) return;
      n = (uint64_t)c->buf[2] << 8 | c->buf[3];
      h = 4;
    } else if (n == 127) {
      if (c->len < 10) return;
      n = 0;
      for (int i = 0; i < 8; i++) n = n << 8 | c->buf[2 + i];
      h = 10;
    }
    if (c->len < h + n) return;
    if ((c->buf[0] & 0x0f) == 1) {
      json_error_t err;
      json_t *v = json_loadb((const char *)c->buf + h, (size_t)n, 0, &err);
      if (!v) fail_msg("not JSON: %.*s", (int)n, c->buf + h);
      json_array_append_new(c->frames, v);
    }
    memmove(c->buf, c->buf + h + n, c->len - h - n);
    c->len -= h + (size_t)n;
  }
}

static void cli_write(cli *c, const void *data, size_t len) {
  nt_mem_peer_write(&c->peer, data, len); /* read now, or when the node reads again */
}

static void cli_text(cli *c, const char *s) {
  size_t len = strlen(s);
  uint8_t *f = malloc(len + 14);
  size_t h = 0;
  f[h++] = 0x81;
  if (len < 126) f[h++] = (uint8_t)(0x80 | len);
  else {
    f[h++] = 0x80 | 126;
    f[h++] = (uint8_t)(len >> 8);
    f[h++] = (uint8_t)len;
  }
  const uint8_t key[4] = {1, 2, 3, 4};
  memcpy(f + h, key, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) f[h + i] = (uint8_t)s[i] ^ key[i % 4];
  cli_write(c, f, h + len);
  free(f);
}

/* Pumps until `pred` holds (checked after every turn) or WAIT_MS. */
typedef int (*pred_fn)(cli *c, void *arg);
static int cli_wait(cli *c, pred_fn pred, void *arg) {
  uint64_t t0 = now_ms();
  for (;;) {
    pump();
    cli_fill(c);
    cli_parse(c);
    if (pred(c, arg)) return 1;
    if (now_ms() - t0 > WAIT_MS) return 0;
    usleep(500); /* the node's timers run on real time */
  }
}

static const char *ftype(json_t *f) { return json_string_value(json_object_get(f, "type")); }

static int has_type(cli *c, void *arg) {
  for (size_t i = c->consumed; i < json_array_size(c->frames); i++) {
    const char *t = ftype(json_array_get(c->frames, i));
    if (t && !strcmp(t, arg)) return 1;
  }
  return 0;
}

/* The next frame of `type` after the last one returned (others are skipped). */
static json_t *cli_next(cli *c, const char *type) {
  if (!cli_wait(c, has_type, (void *)type)) {
    char *s = json_dumps(c->frames, 0);
    fail_msg("no '%s' frame; received %s", type, s);
  }
  for (size_t i = c->consumed; i < json_array_size(c->frames); i++) {
    json_t *f = json_array_get(c->frames, i);
    const char *t = ftype(f);
    if (t && !strcmp(t, type)) {
      c->consumed = i + 1;
      return f;
    }
  }
  return NULL;
}

static cli *cli_open(const char *user) {
  cli *c = calloc(1, sizeof *c);
  c->cap = 1 << 16;
  c->buf = malloc(c->cap);
  c->frames = json_array();
  assert_non_null(nt_node_connect_mem(g->node, 0, &c->peer));
  char claims[256];
  snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"tenant\":\"t\",\"exp\":%ld}", user,
           (long)time(NULL) + 3600);
  char *tok = nt_test_hs256(SECRET, claims);
  assert_non_null(tok);
  char req[4096];
  int n = snprintf(req, sizeof req,
                   "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n", tok);
  free(tok);
  cli_write(c, req, (size_t)n);
  uint64_t t0 = now_ms();
  uint8_t *end = NULL;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
    pump();
    cli_fill(c);
    if (now_ms() - t0 > WAIT_MS) fail_msg("no upgrade answer");
  }
  assert_non_null(memmem(c->buf, c->len, " 101 ", 5));
  size_t hl = (size_t)(end - c->buf) + 4;
  memmove(c->buf, c->buf + hl, c->len - hl);
  c->len -= hl;
  cli_next(c, "welcome");
  return c;
}

static void cli_close(cli *c) {
  nt_mem_peer_free(&c->peer); /* gone, as a reset socket */
  free(c->buf);
  json_decref(c->frames);
  free(c);
  for (int i = 0; i < 20; i++) pump(); /* let the node see it */
}

static json_t *cli_join(cli *c, const char *room, long long since) {
  char req[256];
  if (since >= 0)
    snprintf(req, sizeof req, "{\"action\":\"joinRoom\",\"roomId\":\"%s\",\"since\":%lld}", room, since);
  else
    snprintf(req, sizeof req, "{\"action\":\"joinRoom\",\"roomId\":\"%s\"}", room);
  cli_text(c, req);
  return cli_next(c, "joined");
}

static void cli_say(cli *c, const char *room, int i) {
  char req[256];
  snprintf(req, sizeof req, "{\"action\":\"sendMessage\",\"roomId\":\"%s\",\"message\":%d}", room, i);
  cli_text(c, req);
  cli_next(c, "ack");
}

typedef struct want_n {
  size_t n;
} want_n;

static size_t count_type(cli *c, const char *type) {
  size_t k = 0;
  for (size_t i = 0; i < json_array_size(c->frames); i++) {
    const char *t = ftype(json_array_get(c->frames, i));
    if (t && !strcmp(t, type)) k++;
  }
  return k;
}

static int has_n_messages(cli *c, void *arg) { return count_type(c, "message") >= ((want_n *)arg)->n; }

/* Waits for `n` message frames in total, then a little longer for unexpected extra ones;
 * checks their `message` values are exactly want[0..n) and their seq strictly increasing. */
static void expect_messages(cli *c, const int *want, size_t n) {
  want_n w = {n};
  if (!cli_wait(c, has_n_messages, &w)) {
    char *s = json_dumps(c->frames, 0);
    fail_msg("expected %zu messages; received %s", n, s);
  }
  for (int i = 0; i < 30; i++) { /* duplicates would show up now */
    pump();
    cli_fill(c);
    cli_parse(c);
    usleep(1000);
  }
  size_t k = 0;
  uint64_t prev = 0;
  for (size_t i = 0; i < json_array_size(c->frames); i++) {
    json_t *f = json_array_get(c->frames, i);
    if (strcmp(ftype(f), "message")) continue;
    if (k >= n) {
      char *s = json_dumps(c->frames, 0);
      fail_msg("more than %zu messages (duplicate?): %s", n, s);
    }
    int v = (int)json_integer_value(json_object_get(f, "message"));
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(f, "seq"));
    if (v != want[k] || seq <= prev) {
      char *s = json_dumps(c->frames, 0);
      fail_msg("message %zu: got %d (seq %llu after %llu), expected %d: %s", k, v,
               (unsigned long long)seq, (unsigned long long)prev, want[k], s);
    }
    prev = seq;
    k++;
  }
}

static unsigned long long metric_value(const char *name) {
  static char buf[16384];
  nt_prom w = NT_PROM_INIT;
  nt_resume_metrics(nt_node_chat(g->node), &w);
  char *text = nt_prom_take(&w);
  assert_non_null(text);
  snprintf(buf, sizeof buf, "%s", text);
  free(text);
  const char *p = buf;
  size_t nl = strlen(name);
  while ((p = strstr(p, name)) != NULL) {
    if ((p == buf || p[-1] == '\n') && p[nl] == ' ') return strtoull(p + nl + 1, NULL, 10);
    p += nl;
  }
  fail_msg("metric %s missing", name);
  return 0;
}

/* Publishes a room message through the node's history as another node (or the HTTP API)
 * would: no member of this node sent it. */
static void inject(const char *room, int value) {
  static int n;
  char id[32], payload[16], subject[128];
  snprintf(id, sizeof id, "inj%d", ++n);
  snprintf(payload, sizeof payload, "%d", value);
  snprintf(subject, sizeof subject, "natter.room.t.%s", room);
  Natter__Envelope ev = NATTER__ENVELOPE__INIT;
  ev.id = id;
  ev.tenant = "t";
  ev.room = (char *)room;
  ev.kind = NATTER__KIND__ROOM_MESSAGE;
  ev.sender_user = "zed";
  ev.sender_conn = "elsewhere";
  ev.origin_node = "other";
  ev.timestamp_ms = 1;
  ev.payload.data = (uint8_t *)payload;
  ev.payload.len = strlen(payload);
  uint8_t buf[512], *out;
  size_t len = nt_env_encode(&ev, buf, sizeof buf, &out);
  assert_true(len > 0 && out == buf);
  assert_int_equal(nt_resume_publish(nt_node_chat(g->node), subject, buf, len, NULL), 1);
  pump();
}

/* ---------------------------------------------------------------- node tests */

static void test_node_gap_repair_and_duplicates(void **state) {
  env *e = env_start("1000");
  cli *a = cli_open("alice");
  cli_join(a, "g", -1);
  e->drop[e->ndrop++] = 3; /* the node never gets 3 live: it must read it back */
  e->dup = 4;              /* and gets 4 twice */
  for (int i = 1; i <= 5; i++) cli_say(a, "g", i);
  expect_messages(a, (const int[]){1, 2, 3, 4, 5}, 5);
  assert_int_equal(metric_value("natter_history_gaps_total"), 1);
  assert_int_equal(metric_value("natter_history_gaps_repaired_total"), 1);
  assert_int_equal(metric_value("natter_history_duplicates_dropped_total"), 1);
  cli_close(a);
  env_stop(e);
}

/* The replay read from the history (no recent messages in memory: --history-recent 0). */
static void test_node_resume_merges_replay_and_live(void **state) {
  env *e = env_start_recent("1000", "0");
  cli *a = cli_open("alice");
  cli_join(a, "r", -1);
  for (int i = 1; i <= 3; i++) cli_say(a, "r", i); /* seq 1..3 */
  expect_messages(a, (const int[]){1, 2, 3}, 3);

  /* 4..6 are stored but not yet delivered live (held in transit) */
  e->hold = 1;
  for (int i = 4; i <= 6; i++) cli_say(a, "r", i);
  /* bob resumes after 2: its replay (3..6) is read now but held back; meanwhile the held
   * live messages arrive (bob buffers them: duplicates of its replay), and 7 and 8 are
   * sent with 7 lost on the way (the room repairs it; bob's buffer follows the room) */
  e->park->park = 1;
  cli *b = cli_open("bob");
  char req[128];
  snprintf(req, sizeof req, "{\"action\":\"joinRoom\",\"roomId\":\"r\",\"since\":2,\"requestId\":9}");
  cli_text(b, req);
  uint64_t t0 = now_ms();
  while (e->park->nheld == 0) {
    pump();
    if (now_ms() - t0 > WAIT_MS) fail_msg("the resume did not read the history");
  }
  e->park->park = 0;
  tap_release(e);
  e->drop[e->ndrop++] = 7;
  cli_say(a, "r", 7);
  cli_say(a, "r", 8);
  for (int i = 0; i < 20; i++) pump();
  assert_int_equal(count_type(b, "message"), 0); /* held out of the fan-out meanwhile */
  park_release(e->park);
  json_t *j = cli_next(b, "joined");
  assert_true(json_is_true(json_object_get(j, "recovered")));
  assert_int_equal(json_integer_value(json_object_get(j, "requestId")), 9);
  expect_messages(b, (const int[]){3, 4, 5, 6, 7, 8}, 6);
  expect_messages(a, (const int[]){1, 2, 3, 4, 5, 6, 7, 8}, 8);
  /* live after the resume: once each */
  cli_say(a, "r", 9);
  expect_messages(b, (const int[]){3, 4, 5, 6, 7, 8, 9}, 7);
  assert_int_equal(metric_value("natter_history_replayed_total"), 4);
  assert_true(metric_value("natter_history_gaps_repaired_total") >= 1);
  cli_close(a);
  cli_close(b);
  env_stop(e);
}

/* The resume creates the room on this node: the room's live sequence starts with the first
 * message it gets, and a message lost between the replay and that one is read back for
 * the resuming connection before it sees the live one. */
static void junction(int repair_fails) {
  env *e = env_start("1000");
  for (int i = 1; i <= 4; i++) inject("j", i); /* no member here yet */
  e->park->park = 1;
  cli *b = cli_open("bob");
  cli_text(b, "{\"action\":\"joinRoom\",\"roomId\":\"j\",\"since\":2}");
  uint64_t t0 = now_ms();
  while (e->park->nheld == 0) { /* replay 3, 4 read, held back */
    pump();
    if (now_ms() - t0 > WAIT_MS) fail_msg("the resume did not read the history");
  }
  e->park->park = 0;
  e->drop[e->ndrop++] = 5; /* stored, lost on the way */
  inject("j", 5);
  inject("j", 6); /* the room's first live message: its predecessor 5 was never seen */
  for (int i = 0; i < 20; i++) pump();
  e->park->fail = repair_fails;
  park_release(e->park);
  json_t *j = cli_next(b, "joined");
  assert_true(json_is_true(json_object_get(j, "recovered")));
  if (repair_fails) { /* the hole stays, live goes on */
    expect_messages(b, (const int[]){3, 4, 6}, 3);
    inject("j", 7);
    expect_messages(b, (const int[]){3, 4, 6, 7}, 4);
    assert_int_equal(metric_value("natter_history_gaps_unrepaired_total"), 1);
  } else {
    expect_messages(b, (const int[]){3, 4, 5, 6}, 4);
    inject("j", 7);
    expect_messages(b, (const int[]){3, 4, 5, 6, 7}, 5);
    assert_int_equal(metric_value("natter_history_gaps_repaired_total"), 1);
  }
  cli_close(b);
  env_stop(e);
}

static void test_node_resume_hole_at_the_junction(void **state) { junction(0); }
static void test_node_resume_hole_not_readable(void **state) { junction(1); }

static void test_node_not_recovered_and_pages(void **state) {
  env *e = env_start("3");
  cli *a = cli_open("alice");
  cli_join(a, "p", -1);
  for (int i = 1; i <= 6; i++) cli_say(a, "p", i); /* 1..3 leave with --history-max-per-room 3 */
  expect_messages(a, (const int[]){1, 2, 3, 4, 5, 6}, 6);
  cli *b = cli_open("bob");
  json_t *j = cli_join(b, "p", 1);
  assert_true(json_is_false(json_object_get(j, "recovered")));
  cli_say(a, "p", 7);
  expect_messages(b, (const int[]){7}, 1); /* no replay, live goes on */

  cli_text(b, "{\"action\":\"history\",\"roomId\":\"p\",\"limit\":2,\"requestId\":\"h\"}");
  json_t *h = cli_next(b, "history");
  json_t *msgs = json_object_get(h, "messages");
  assert_int_equal(json_array_size(msgs), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 0), "message")), 6);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 1), "message")), 7);
  assert_true(json_is_true(json_object_get(h, "hasMore")));
  assert_string_equal(json_string_value(json_object_get(h, "requestId")), "h");
  json_int_t before = json_integer_value(json_object_get(json_array_get(msgs, 0), "seq"));
  char req[160];
  snprintf(req, sizeof req, "{\"action\":\"history\",\"roomId\":\"p\",\"before\":%lld}",
           (long long)before);
  cli_text(b, req);
  h = cli_next(b, "history");
  msgs = json_object_get(h, "messages");
  assert_int_equal(json_array_size(msgs), 1); /* 5: the only older one kept */
  assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 0), "message")), 5);
  assert_true(json_is_false(json_object_get(h, "hasMore")));
  cli_close(a);
  cli_close(b);
  env_stop(e);
}

/* A room with nothing stored answers an empty page. fuzz_pages found that page built from
 * a NULL item array (NULL + 0: clang's UBSan reports it, gcc's does not); its seed
 * regress-history-empty-room replays that in every fuzz smoke. */
static void test_node_history_of_empty_room(void **state) {
  env *e = env_start("1000");
  cli *a = cli_open("alice");
  cli_text(a, "{\"action\":\"history\",\"roomId\":\"nothing-here\",\"requestId\":\"e\"}");
  json_t *h = cli_next(a, "history");
  assert_int_equal(json_array_size(json_object_get(h, "messages")), 0);
  assert_true(json_is_false(json_object_get(h, "hasMore")));
  assert_string_equal(json_string_value(json_object_get(h, "requestId")), "e");
  cli_close(a);
  env_stop(e);
}

/* Reads fail (history down): a resume is answered at once, not recovered, and live goes
 * on; a gap that cannot be read is delivered with its hole; pages answer an error. */
static void test_node_history_unavailable(void **state) {
  env *e = env_start_recent("1000", "0"); /* the resume must read */
  cli *a = cli_open("alice");
  cli_join(a, "u", -1);
  cli_say(a, "u", 1);
  cli_say(a, "u", 2);
  expect_messages(a, (const int[]){1, 2}, 2);
  e->park->fail = 1;
  cli *b = cli_open("bob");
  json_t *j = cli_join(b, "u", 1);
  assert_true(json_is_false(json_object_get(j, "recovered")));
  cli_say(a, "u", 3);
  expect_messages(b, (const int[]){3}, 1);
  e->drop[e->ndrop++] = 4;
  cli_say(a, "u", 4);
  cli_say(a, "u", 5);
  expect_messages(a, (const int[]){1, 2, 3, 5}, 4);
  expect_messages(b, (const int[]){3, 5}, 2);
  assert_int_equal(metric_value("natter_history_gaps_unrepaired_total"), 1);
  cli_text(b, "{\"action\":\"history\",\"roomId\":\"u\",\"requestId\":1}");
  json_t *err = cli_next(b, "error");
  assert_string_equal(json_string_value(json_object_get(err, "code")), "internal");
  cli_close(a);
  cli_close(b);
  env_stop(e);
}

/* Pumps until the tap holds `n` messages. */
static void wait_held(env *e, size_t n) {
  uint64_t t0 = now_ms();
  while (e->nheld < n) {
    pump();
    if (now_ms() - t0 > WAIT_MS) fail_msg("the stream's republication did not arrive");
  }
}

/* A publication the stream acknowledged late reaches the room twice — the sender's
 * live-only resend (no seq) and the stream's republication (with seq), in either order.
 * The members see it once, and the sequence goes on. */
static void test_node_late_ack_copy_delivered_once(void **state) {
  env *e = env_start("1000");
  cli *a = cli_open("alice");
  cli_join(a, "k", -1);
  /* the republication first, in a room that never had a live-only message: 2 arrives with
   * its seq, then the live-only copy (message 1 is the room's first, delivered plainly) */
  cli_say(a, "k", 1);
  e->hold = 1;
  cli_say(a, "k", 2);
  wait_held(e, 1);
  tmsg copy = e->held[0];
  copy.data = malloc(copy.len);
  memcpy(copy.data, e->held[0].data, copy.len);
  tap_release(e);
  for (int i = 0; i < 20; i++) pump();
  nt_bus_publish(e->nbus, copy.subject, copy.data, copy.len, NULL);
  free(copy.data);
  for (int i = 0; i < 20; i++) pump();
  /* the live-only copy first: 3 is stored, its republication still in transit */
  e->hold = 1;
  cli_say(a, "k", 3);
  wait_held(e, 1);
  nt_bus_publish(e->nbus, e->held[0].subject, e->held[0].data, e->held[0].len, NULL);
  for (int i = 0; i < 20; i++) pump();
  tap_release(e);
  cli_say(a, "k", 4);
  want_n w = {4};
  if (!cli_wait(a, has_n_messages, &w)) fail_msg("expected 4 messages");
  for (int i = 0; i < 30; i++) { /* a second copy would show up now */
    pump();
    cli_fill(a);
    cli_parse(a);
    usleep(1000);
  }
  int got[8], k = 0;
  uint64_t seqs[8];
  for (size_t i = 0; i < json_array_size(a->frames) && k < 8; i++) {
    json_t *f = json_array_get(a->frames, i);
    if (strcmp(ftype(f), "message")) continue;
    seqs[k] = (uint64_t)json_integer_value(json_object_get(f, "seq"));
    got[k++] = (int)json_integer_value(json_object_get(f, "message"));
  }
  assert_int_equal(k, 4);
  for (int i = 0; i < 4; i++) assert_int_equal(got[i], i + 1);
  assert_int_equal(seqs[0], 1);
  assert_int_equal(seqs[1], 2); /* the republication came first */
  assert_int_equal(seqs[2], 0); /* 3 went out as the live-only copy */
  assert_int_equal(seqs[3], 4);
  assert_int_equal(metric_value("natter_history_duplicates_dropped_total"), 2);
  assert_int_equal(metric_value("natter_history_gaps_total"), 0);
  cli_close(a);
  env_stop(e);
}

/* The seq of every message frame `c` received, in order (at most `max`). */
static size_t seqs_of(cli *c, uint64_t *out, size_t max) {
  size_t k = 0;
  for (size_t i = 0; i < json_array_size(c->frames) && k < max; i++) {
    json_t *f = json_array_get(c->frames, i);
    if (!strcmp(ftype(f), "message"))
      out[k++] = (uint64_t)json_integer_value(json_object_get(f, "seq"));
  }
  return k;
}

static json_t *join_since(cli *c, const char *room, uint64_t since) {
  return cli_join(c, room, (long long)since);
}

/* Resumes within what the room delivered lately are answered from memory — no history
 * read, the same replay-then-live order, live messages that arrive meanwhile merged once
 * each; one older than the room's recent messages (3 here) or not a position of the room
 * still reads the history, which answers it. */
static void test_node_resume_from_memory(void **state) {
  env *e = env_start_recent("1000", "3");
  cli *a = cli_open("alice");
  cli_join(a, "m", -1);
  for (int i = 1; i <= 5; i++) cli_say(a, "m", i);
  expect_messages(a, (const int[]){1, 2, 3, 4, 5}, 5);
  uint64_t s[8];
  assert_int_equal(seqs_of(a, s, 8), 5);
  int fetches = e->park->fetches;

  cli *b = cli_open("bob");
  json_t *j = join_since(b, "m", s[2]); /* saw 3 */
  assert_true(json_is_true(json_object_get(j, "recovered")));
  expect_messages(b, (const int[]){4, 5}, 2);
  assert_int_equal(e->park->fetches, fetches);
  assert_int_equal(metric_value("natter_history_resumes_from_memory_total"), 1);

  /* 6 is stored but still in transit when carol resumes after 4: her replay (5) comes
   * from memory, 6 reaches her live afterwards, once */
  e->hold = 1;
  cli_say(a, "m", 6);
  wait_held(e, 1);
  cli *c = cli_open("carol");
  j = join_since(c, "m", s[3]);
  assert_true(json_is_true(json_object_get(j, "recovered")));
  tap_release(e);
  expect_messages(c, (const int[]){5, 6}, 2);
  expect_messages(b, (const int[]){4, 5, 6}, 2 + 1);
  assert_int_equal(e->park->fetches, fetches);
  assert_int_equal(metric_value("natter_history_resumes_from_memory_total"), 2);

  /* the room keeps 4, 5, 6 now: after 1 is older than that and is read from the history */
  cli *d = cli_open("dave");
  j = join_since(d, "m", s[0]);
  assert_true(json_is_true(json_object_get(j, "recovered")));
  expect_messages(d, (const int[]){2, 3, 4, 5, 6}, 5);
  assert_int_equal(e->park->fetches, fetches + 1);
  /* after 3, the predecessor of the oldest kept: still answered from memory */
  cli *f = cli_open("frank");
  j = join_since(f, "m", s[2]);
  assert_true(json_is_true(json_object_get(j, "recovered")));
  expect_messages(f, (const int[]){4, 5, 6}, 3);
  assert_int_equal(e->park->fetches, fetches + 1);
  /* not a position of the room: the history answers (not recovered, nothing replayed) */
  cli *x = cli_open("erin");
  j = join_since(x, "m", s[4] + 1000);
  assert_true(json_is_false(json_object_get(j, "recovered")));
  assert_int_equal(e->park->fetches, fetches + 2);
  cli_say(a, "m", 7);
  expect_messages(x, (const int[]){7}, 1);
  expect_messages(f, (const int[]){4, 5, 6, 7}, 4);
  assert_int_equal(metric_value("natter_history_resumes_from_memory_total"), 3);
  assert_true(metric_value("natter_history_recent_bytes") > 0);
  cli_close(a);
  cli_close(b);
  cli_close(c);
  cli_close(d);
  cli_close(f);
  cli_close(x);
  env_stop(e);
}

static void send_join_since(cli *c, const char *room, uint64_t since) {
  char req[160];
  snprintf(req, sizeof req, "{\"action\":\"joinRoom\",\"roomId\":\"%s\",\"since\":%llu}",
           room, (unsigned long long)since);
  cli_text(c, req);
}

/* Resumes of a room the node has no recent messages of, asked while one of them is read:
 * those after the same or a later `since` share that read (no read of their own) and each
 * gets exactly what it missed, then live; one after an older `since` reads for itself. */
static void test_node_resumes_share_a_read(void **state) {
  env *e = env_start("1000");
  for (int i = 1; i <= 5; i++) inject("c", i); /* seq 1..5, no member here yet */
  e->park->park = 1;
  cli *b = cli_open("bob");
  send_join_since(b, "c", 2);
  uint64_t t0 = now_ms();
  while (e->park->nheld == 0) {
    pump();
    if (now_ms() - t0 > WAIT_MS) fail_msg("the resume did not read the history");
  }
  int fetches = e->park->fetches;
  cli *c = cli_open("carol");
  send_join_since(c, "c", 3);
  cli *d = cli_open("dave");
  send_join_since(d, "c", 5);
  for (int i = 0; i < 20; i++) pump();
  assert_int_equal(e->park->fetches, fetches); /* carol and dave wait for bob's read */
  cli *x = cli_open("erin");
  send_join_since(x, "c", 1); /* older than what is being read: a read of its own */
  t0 = now_ms();
  while (e->park->nheld < 2) {
    pump();
    if (now_ms() - t0 > WAIT_MS) fail_msg("the older resume did not read the history");
  }
  assert_int_equal(e->park->fetches, fetches + 1);
  e->park->park = 0;
  inject("c", 6); /* live while the reads are held: buffered, after the replays */
  for (int i = 0; i < 20; i++) pump();
  park_release(e->park);
  cli *all[] = {b, c, d, x};
  for (int k = 0; k < 4; k++) {
    json_t *j = cli_next(all[k], "joined"); /* json_is_true evaluates its argument twice */
    assert_true(json_is_true(json_object_get(j, "recovered")));
  }
  expect_messages(b, (const int[]){3, 4, 5, 6}, 4);
  expect_messages(c, (const int[]){4, 5, 6}, 3);
  expect_messages(d, (const int[]){6}, 1);
  expect_messages(x, (const int[]){2, 3, 4, 5, 6}, 5);
  assert_int_equal(metric_value("natter_history_resumes_coalesced_total"), 2);
  inject("c", 7);
  expect_messages(d, (const int[]){6, 7}, 2);
  expect_messages(b, (const int[]){3, 4, 5, 6, 7}, 5);
  cli_close(b);
  cli_close(c);
  cli_close(d);
  cli_close(x);
  env_stop(e);
}

/* Retention applies to memory too: a resume after a message older than
 * --history-max-per-room messages is answered by the history (not recovered). */
static void test_node_resume_memory_bounded_by_retention(void **state) {
  env *e = env_start_recent("3", "128"); /* the room's recent messages: at most 3 */
  cli *a = cli_open("alice");
  cli_join(a, "k", -1);
  for (int i = 1; i <= 6; i++) cli_say(a, "k", i);
  expect_messages(a, (const int[]){1, 2, 3, 4, 5, 6}, 6);
  uint64_t s[8];
  assert_int_equal(seqs_of(a, s, 8), 6);
  cli *b = cli_open("bob");
  json_t *j = join_since(b, "k", s[0]);
  assert_true(json_is_false(json_object_get(j, "recovered")));
  cli *c = cli_open("carol");
  j = join_since(c, "k", s[2]); /* 4, 5, 6 are kept, 3 is their predecessor */
  assert_true(json_is_true(json_object_get(j, "recovered")));
  expect_messages(c, (const int[]){4, 5, 6}, 3);
  assert_int_equal(metric_value("natter_history_resumes_from_memory_total"), 1);
  cli_close(a);
  cli_close(b);
  cli_close(c);
  env_stop(e);
}

static void test_proto_rendering(void **state) {
  nt_frame *f = nt_proto_message("i", "r", NULL, "1", 1, 5, 77);
  const char *p = (const char *)nt_frame_payload(f);
  assert_non_null(strstr(p, "\"seq\":77}"));
  nt_frame_unref(f);
  f = nt_proto_message("i", "r", "u", "1", 1, 5, 0);
  assert_null(memmem(nt_frame_payload(f), f->len - f->hdr, "seq", 3));
  nt_frame_unref(f);
  nt_proto_hist_item it[2] = {{"a", "u", "{\"x\":1}", 7, 10, 3}, {"b", NULL, "2", 1, 11, 9}};
  size_t len;
  char *js = nt_proto_history_json("t", "r", it, 2, 1, &len);
  json_error_t err;
  json_t *v = json_loads(js, 0, &err);
  assert_non_null(v);
  assert_string_equal(json_string_value(json_object_get(v, "tenantId")), "t");
  json_t *m = json_object_get(v, "messages");
  assert_int_equal(json_array_size(m), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(m, 0), "seq")), 3);
  assert_true(json_is_null(json_object_get(json_array_get(m, 1), "userId")));
  assert_true(json_is_true(json_object_get(v, "hasMore")));
  json_decref(v);
  free(js);
  f = nt_proto_joined_resume("r", (const char *const[]){"u"}, 1, 0, "\"q\"");
  v = json_loadb((const char *)nt_frame_payload(f), f->len - f->hdr, 0, &err);
  assert_true(json_is_false(json_object_get(v, "recovered")));
  assert_string_equal(json_string_value(json_object_get(v, "requestId")), "q");
  json_decref(v);
  nt_frame_unref(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mem_sequences_and_reads),
      cmocka_unit_test(test_mem_retention),
      cmocka_unit_test(test_mem_tenant_quota_and_msg_size),
      cmocka_unit_test(test_mem_async_and_destroy),
      cmocka_unit_test(test_seq_rule),
      cmocka_unit_test(test_bus_mem_positions),
      cmocka_unit_test(test_proto_rendering),
      cmocka_unit_test(test_node_gap_repair_and_duplicates),
      cmocka_unit_test(test_node_resume_merges_replay_and_live),
      cmocka_unit_test(test_node_resume_hole_at_the_junction),
      cmocka_unit_test(test_node_resume_hole_not_readable),
      cmocka_unit_test(test_node_not_recovered_and_pages),
      cmocka_unit_test(test_node_history_of_empty_room),
      cmocka_unit_test(test_node_history_unavailable),
      cmocka_unit_test(test_node_late_ack_copy_delivered_once),
      cmocka_unit_test(test_node_resume_from_memory),
      cmocka_unit_test(test_node_resume_memory_bounded_by_retention),
      cmocka_unit_test(test_node_resumes_share_a_read),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
