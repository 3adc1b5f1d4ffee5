/* test_contract_mem: the bus, presence and history contract suites (tests/contract)
 * against the in-memory implementations; tests/integration/itest_contract_*.c run the
 * same suites against NATS, Redis and JetStream. */
#include <stdio.h>

#include "nt_contract.h"
#include "nt_subject.h"

static nt_bus *mem_bus(void *ctx, uv_loop_t *loop, const nt_bus_handler *h) {
  return nt_bus_mem_new(loop, h);
}

static nt_presence *mem_presence(void *ctx, uv_loop_t *loop, const nt_presence_handler *h) {
  return nt_presence_mem_new(loop, h);
}

static nt_history *mem_history(void *ctx, uv_loop_t *loop, nt_bus *bus,
                               const nt_hist_cfg *cfg) {
  return nt_history_mem_new(loop, bus, cfg, NULL);
}

/* The sharding wrappers over memory shards: the contract holds for them as for one store. */
static int mem_pres_shard(void *ctx, unsigned k, const nt_presence_handler *h,
                          nt_presence **out) {
  return (*out = nt_presence_mem_new(ctx, h)) ? 0 : -1;
}

static nt_presence *sharded_presence(void *ctx, uv_loop_t *loop, const nt_presence_handler *h) {
  nt_presence *p = NULL;
  return nt_presence_shard_new(2, mem_pres_shard, loop, h, &p) ? NULL : p;
}

typedef struct mem_hist_ctx {
  uv_loop_t *loop;
  nt_bus *bus;
} mem_hist_ctx;

static int mem_hist_shard(void *ctx, unsigned k, const nt_hist_cfg *cfg,
                          const nt_hist_handler *h, nt_history **out) {
  mem_hist_ctx *c = ctx;
  return (*out = nt_history_mem_new(c->loop, c->bus, cfg, h)) ? 0 : -1;
}

static nt_history *sharded_history(void *ctx, uv_loop_t *loop, nt_bus *bus,
                                   const nt_hist_cfg *cfg) {
  mem_hist_ctx c = {loop, bus};
  nt_history *h = NULL;
  return nt_history_shard_new(loop, 3, cfg, mem_hist_shard, &c, NULL, &h) ? NULL : h;
}

/* Rooms of one of the 3 streams share msg_id keys. */
static int same_of_3(void *ctx, const char *a, const char *b) {
  return nt_subject_room_shard(a, 3) == nt_subject_room_shard(b, 3);
}

int main(void) {
  nt_ct_bus_factory bus = {.name = "bus contract: memory", .create = mem_bus};
  nt_ct_presence_factory pres = {.name = "presence contract: memory", .create = mem_presence};
  nt_ct_history_factory hist = {.name = "history contract: memory", .bus = bus,
                                .create = mem_history};
  int failed = nt_ct_bus_run(&bus);
  failed += nt_ct_presence_run(&pres);
  failed += nt_ct_history_run(&hist);
  nt_ct_presence_factory spres = {.name = "presence contract: memory, 2 shards",
                                  .create = sharded_presence};
  nt_ct_history_factory shist = {.name = "history contract: memory, 3 shards", .bus = bus,
                                 .create = sharded_history, .keys_per_shard = 1,
                                 .same_shard = same_of_3};
  failed += nt_ct_presence_run(&spres);
  failed += nt_ct_history_run(&shist);
  return failed;
}
