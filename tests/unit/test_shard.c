/* test_shard: what only the sharding wrappers do (nt_presence_shard.c,
 * nt_history_shard.c) — routing by tenant and room, events of every shard reaching the
 * caller once, state gathered from all, per-shard stats, and failures while shards are
 * made. The rules they share with one store are checked by the contract suites
 * (test_contract_mem runs them over 2 presence shards and 3 history shards). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "nt_bus.h"
#include "nt_err.h"
#include "nt_history.h"
#include "nt_presence.h"
#include "nt_subject.h"

/* ---------------------------------------------------------------- presence -- */

typedef struct pfx {
  uv_loop_t loop;
  nt_presence *p, *sub[3];
  unsigned made, fail_at; /* make() fails for shard fail_at (>= 3: never) */
  int noffline, nlost, nstate, last_state;
  char offline[256];
} pfx;

static int make_mem(void *ctx, unsigned k, const nt_presence_handler *h, nt_presence **out) {
  pfx *f = ctx;
  if (k == f->fail_at) return NT_ESTORE;
  f->made++;
  return (*out = f->sub[k] = nt_presence_mem_new(&f->loop, h)) ? 0 : NT_ENOMEM;
}

static void h_offline(void *ud, const char *tenant, const char *room, const char *user) {
  pfx *f = ud;
  f->noffline++;
  char s[64];
  snprintf(s, sizeof s, "%s/%s/%s;", tenant, room, user);
  strcat(f->offline, s);
}
static void h_lost(void *ud, const nt_conn_info *i) { ((pfx *)ud)->nlost++; }
static void h_state(void *ud, int up) {
  pfx *f = ud;
  f->nstate++;
  f->last_state = up;
}

static pfx *pfx_new(unsigned n, unsigned fail_at, int *rc) {
  pfx *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->fail_at = fail_at;
  nt_presence_handler h = {.on_conn_lost = h_lost, .on_offline = h_offline,
                           .on_state = h_state, .ud = f};
  *rc = nt_presence_shard_new(n, make_mem, f, &h, &f->p);
  return f;
}

static void pfx_free(pfx *f) {
  if (f->p) nt_presence_destroy(f->p);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
}

static void on_join(void *ud, int status, const nt_presence_joined *j) {
  assert_int_equal(status, 0);
  (*(int *)ud)++;
}

static void on_members(void *ud, int status, const nt_presence_page *pg) {
  assert_int_equal(status, 0);
  *(uint64_t *)ud = pg->total;
}

/* T0 and T1 are tenants of shard 0 and 1 among 2 (the fixed vector of test_subject). */
#define T0 "acme"
#define T1 "globex"

static void test_presence_routes_by_tenant_and_reports_every_shard(void **state) {
  int rc;
  pfx *f = pfx_new(2, 9, &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(nt_presence_connected(f->p), 1); /* memory shards: up from the start */
  int joined = 0;
  const char *ten[2] = {T0, T1};
  for (int k = 0; k < 2; k++) {
    nt_conn_info in = {.conn_id = k ? "c1" : "c0", .tenant = ten[k], .user = "u",
                       .node = "dead"};
    assert_int_equal(nt_presence_conn_add(f->p, &in, NULL, NULL), 0);
    assert_int_equal(nt_presence_join(f->p, ten[k], "lobby", "u", in.conn_id, on_join,
                                      &joined), 0);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(joined, 2);
  /* each tenant is in its own shard only */
  for (int k = 0; k < 2; k++) {
    uint64_t here = 9, there = 9;
    assert_int_equal(nt_presence_members(f->sub[k], ten[k], "lobby", NULL, 10, on_members,
                                         &here), 0);
    assert_int_equal(nt_presence_members(f->sub[!k], ten[k], "lobby", NULL, 10, on_members,
                                         &there), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(here, 1);
    assert_int_equal(there, 0);
  }
  /* per-shard stats */
  nt_presence_stats st;
  int up = 0;
  assert_int_equal(nt_presence_shards(f->p, 1, &st, &up), 2);
  assert_int_equal(up, 1);
  assert_int_equal(st.ops, 4); /* T1's conn_add and join, and one members per tenant */
  nt_presence_get_stats(f->p, &st);
  assert_int_equal(st.ops, 8);
  /* a dead node reaped in both shards: each event reaches the caller once */
  assert_int_equal(nt_presence_mem_reap_node(f->sub[0], "dead"), 1);
  assert_int_equal(nt_presence_mem_reap_node(f->sub[1], "dead"), 1);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->noffline, 2);
  assert_int_equal(f->nlost, 2);
  /* the shards run their own turns: either order */
  assert_int_equal(strlen(f->offline), strlen(T0 "/lobby/u;" T1 "/lobby/u;"));
  assert_non_null(strstr(f->offline, T0 "/lobby/u;"));
  assert_non_null(strstr(f->offline, T1 "/lobby/u;"));
  assert_int_equal(f->nstate, 0); /* nothing changed state */
  pfx_free(f);
}

static void test_presence_state_is_any_shard_up(void **state) {
  int rc;
  pfx *f = pfx_new(3, 9, &rc);
  assert_int_equal(rc, 0);
  /* the shards' handlers go to the wrapper: drive them as a Redis shard would */
  f->sub[0]->h.on_state(f->sub[0]->h.ud, 0);
  f->sub[1]->h.on_state(f->sub[1]->h.ud, 0);
  assert_int_equal(f->nstate, 0); /* shard 2 still up */
  f->sub[2]->h.on_state(f->sub[2]->h.ud, 0);
  assert_int_equal(f->nstate, 1);
  assert_int_equal(f->last_state, 0);
  f->sub[1]->h.on_state(f->sub[1]->h.ud, 1);
  assert_int_equal(f->nstate, 2);
  assert_int_equal(f->last_state, 1);
  f->sub[0]->h.on_state(f->sub[0]->h.ud, 1); /* no change of "some shard is up" */
  assert_int_equal(f->nstate, 2);
  pfx_free(f);
}

static void test_presence_make_failure_destroys_what_was_made(void **state) {
  int rc;
  pfx *f = pfx_new(3, 2, &rc);
  assert_int_equal(rc, NT_ESTORE);
  assert_int_equal(f->made, 2);
  f->p = NULL; /* nothing to destroy: ASan and uv_loop_close say whether it leaked */
  pfx_free(f);
  f = pfx_new(0, 9, &rc);
  assert_int_equal(rc, NT_EINVAL);
  f->p = NULL;
  pfx_free(f);
  f = pfx_new(NT_PRESENCE_SHARDS_MAX + 1, 99, &rc);
  assert_int_equal(rc, NT_EINVAL);
  assert_int_equal(f->made, 0);
  f->p = NULL;
  pfx_free(f);
}

static void on_conn(void *ud, int status, const nt_conn_info *info) {
  int *got = ud;
  *got = status == 0 ? 1 : status;
  if (status == 0) assert_string_equal(info->tenant, T1);
}

static void test_presence_conn_get_asks_every_shard(void **state) {
  int rc;
  pfx *f = pfx_new(2, 9, &rc);
  assert_int_equal(rc, 0);
  nt_conn_info in = {.conn_id = "c9", .tenant = T1, .user = "u", .node = "n"};
  assert_int_equal(nt_presence_conn_add(f->p, &in, NULL, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  int got = 0;
  assert_int_equal(nt_presence_conn_get(f->p, "c9", on_conn, &got), 0);
  assert_int_equal(got, 0); /* never inside the call */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(got, 1);
  got = 0;
  assert_int_equal(nt_presence_conn_get(f->p, "nobody", on_conn, &got), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(got, NT_ENOTFOUND);
  got = 0;
  assert_int_equal(nt_presence_conn_get(f->p, "a.b", on_conn, &got), NT_EINVAL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(got, 0);
  pfx_free(f);
}

/* ---------------------------------------------------------------- history --- */

typedef struct hfx {
  uv_loop_t loop;
  nt_bus *bus;
  nt_history *h, *sub[3];
  nt_hist_cfg seen[3];
  unsigned fail_at;
  int nstate, last_state;
} hfx;

static int make_hmem(void *ctx, unsigned k, const nt_hist_cfg *cfg, const nt_hist_handler *h,
                     nt_history **out) {
  hfx *f = ctx;
  if (k == f->fail_at) return NT_EBUS;
  f->seen[k] = *cfg;
  return (*out = f->sub[k] = nt_history_mem_new(&f->loop, f->bus, cfg, h)) ? 0 : NT_ENOMEM;
}

static void hh_state(void *ud, int storing) {
  hfx *f = ud;
  f->nstate++;
  f->last_state = storing;
}

static void on_bus_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                       const char *reply, const nt_bus_sub *sub) {}

static hfx *hfx_new(unsigned fail_at, int *rc) {
  hfx *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->bus = nt_bus_mem_new(&f->loop, &(nt_bus_handler){.on_msg = on_bus_msg});
  assert_non_null(f->bus);
  f->fail_at = fail_at;
  nt_hist_cfg cfg = {.max_per_room = 10, .replicas = 1, .max_bytes = 3 << 20,
                     .tenant_bytes = 1000};
  nt_hist_handler h = {.on_state = hh_state, .ud = f};
  *rc = nt_history_shard_new(&f->loop, 3, &cfg, make_hmem, f, &h, &f->h);
  return f;
}

static void hfx_free(hfx *f) {
  if (f->h) nt_history_destroy(f->h);
  nt_bus_destroy(f->bus);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
}

static void test_history_shards_get_their_partition_and_share_one_quota(void **state) {
  int rc;
  hfx *f = hfx_new(9, &rc);
  assert_int_equal(rc, 0);
  for (int k = 0; k < 3; k++) {
    assert_int_equal(f->seen[k].partition, k + 1);
    assert_int_equal(f->seen[k].max_bytes, 1 << 20); /* split evenly */
    assert_non_null(f->seen[k].quota);
    assert_ptr_equal(f->seen[k].quota, f->seen[0].quota);
  }
  /* each message in its room's shard */
  char subj[NT_SUBJECT_MAX];
  int count[3] = {0};
  for (int i = 0; i < 30; i++) {
    char room[16];
    snprintf(room, sizeof room, "r%d", i);
    assert_true(nt_subject_room(subj, sizeof subj, "t", room) > 0);
    assert_int_equal(nt_history_publish(f->h, subj, "x", 1, NULL), 0);
    count[nt_shard_of_room("t", room, 3)]++;
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  nt_hist_stats st;
  for (unsigned k = 0; k < 3; k++) {
    assert_int_equal(nt_history_shard_stats(f->h, k, &st), 3);
    assert_int_equal(st.published, (uint64_t)count[k]);
    assert_true(count[k] > 0);
  }
  nt_history_get_stats(f->h, &st);
  assert_int_equal(st.published, 30);
  assert_int_equal(st.stored, 30);
  /* one budget per tenant across the shards: 1000 bytes, wherever the rooms are */
  char big[600];
  memset(big, 'b', sizeof big);
  int over = 0;
  for (int i = 0; i < 3; i++) {
    char room[16];
    snprintf(room, sizeof room, "q%d", i);
    assert_true(nt_subject_room(subj, sizeof subj, "quota", room) > 0);
    assert_int_equal(nt_history_publish(f->h, subj, big, sizeof big, NULL), 0);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  nt_history_get_stats(f->h, &st);
  over = (int)st.over_quota;
  assert_int_equal(over, 2); /* 600 fits, 1200 and 1800 do not */
  assert_int_equal(nt_history_shard_stats(f->sub[0], 0, &st), 0); /* not a sharded one */
  assert_int_equal(nt_history_publish(f->h, "natter.user.t.u", "x", 1, NULL), NT_EINVAL);
  hfx_free(f);
}

static void test_history_make_failure_destroys_what_was_made(void **state) {
  int rc;
  hfx *f = hfx_new(1, &rc);
  assert_int_equal(rc, NT_EBUS);
  f->h = NULL;
  hfx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_presence_routes_by_tenant_and_reports_every_shard),
      cmocka_unit_test(test_presence_state_is_any_shard_up),
      cmocka_unit_test(test_presence_make_failure_destroys_what_was_made),
      cmocka_unit_test(test_presence_conn_get_asks_every_shard),
      cmocka_unit_test(test_history_shards_get_their_partition_and_share_one_quota),
      cmocka_unit_test(test_history_make_failure_destroys_what_was_made),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
