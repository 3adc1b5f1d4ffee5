/* itest_contract_history: the history contract suite (tests/contract/history_contract.c)
 * against the JetStream implementation over the NATS bus and a real nats-server -js
 * (memory storage) on a free loopback port; every case uses a fresh tenant. */
#include <stdio.h>
#include <stdlib.h>

#include "nt_contract.h"
#include "nt_subject.h"
#include "nt_testsrv.h"

/* Ready once the stream has confirmed it exists (nt_history_storing is 1 from the start:
 * early publications are tracked until the stream answers). */
static int c_storing(void *ud) {
  nt_hist_stats st;
  nt_history_get_stats(ud, &st);
  return st.storing;
}

static nt_history *js_history(void *ctx, uv_loop_t *loop, nt_bus *bus, const nt_hist_cfg *cfg) {
  nt_history *h = NULL;
  if (nt_history_js_new(loop, bus, ctx, "contract", cfg, NULL, &h) != 0) return NULL;
  if (!nt_ct_run_until(loop, c_storing, h, 10000)) {
    nt_history_destroy(h);
    return NULL;
  }
  return h;
}

/* Three streams (--history-streams 3): the same contract through the sharding wrapper. */
typedef struct js_ctx {
  uv_loop_t *loop;
  nt_bus *bus;
  const char *url;
} js_ctx;

static int js_shard(void *ctx, unsigned k, const nt_hist_cfg *cfg, const nt_hist_handler *h,
                    nt_history **out) {
  js_ctx *c = ctx;
  return nt_history_js_new(c->loop, c->bus, c->url, "contract", cfg, h, out);
}

static nt_history *js_sharded(void *ctx, uv_loop_t *loop, nt_bus *bus, const nt_hist_cfg *cfg) {
  js_ctx c = {loop, bus, ctx};
  nt_history *h = NULL;
  if (nt_history_shard_new(loop, 3, cfg, js_shard, &c, NULL, &h) != 0) return NULL;
  if (!nt_ct_run_until(loop, c_storing, h, 10000)) {
    nt_history_destroy(h);
    return NULL;
  }
  return h;
}

/* Rooms of one of the 3 streams share msg_id keys. */
static int same_of_3(void *ctx, const char *a, const char *b) {
  return nt_subject_room_shard(a, 3) == nt_subject_room_shard(b, 3);
}

int main(void) {
  nt_testsrv srv;
  char dir[] = "/tmp/nt-contract-js-XXXXXX";
  if (!mkdtemp(dir) || nt_testsrv_nats_start_js(&srv, 0, 0, dir, 10000)) {
    fprintf(stderr, "cannot start nats-server -js\n");
    return 1;
  }
  char url[64];
  snprintf(url, sizeof url, "nats://127.0.0.1:%d", srv.port);
  nt_ct_history_factory f = {.name = "history contract: JetStream",
                             .bus = {.name = "NATS", .create = nt_ct_nats_bus, .ctx = url},
                             .create = js_history,
                             .ctx = url};
  int failed = nt_ct_history_run(&f);
  nt_ct_history_factory sf = {.name = "history contract: JetStream, 3 streams",
                              .bus = f.bus, .create = js_sharded, .ctx = url,
                              .keys_per_shard = 1, .same_shard = same_of_3};
  failed += nt_ct_history_run(&sf);
  nt_testsrv_stop(&srv);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return failed;
}
