/* test_contract_mem: the bus, presence and history contract suites (tests/contract)
 * against the in-memory implementations; tests/integration/itest_contract_*.c run the
 * same suites against NATS, Redis and JetStream. */
#include <stdio.h>

#include "nt_contract.h"

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

int main(void) {
  nt_ct_bus_factory bus = {.name = "bus contract: memory", .create = mem_bus};
  nt_ct_presence_factory pres = {.name = "presence contract: memory", .create = mem_presence};
  nt_ct_history_factory hist = {.name = "history contract: memory", .bus = bus,
                                .create = mem_history};
  int failed = nt_ct_bus_run(&bus);
  failed += nt_ct_presence_run(&pres);
  failed += nt_ct_history_run(&hist);
  return failed;
}
