/* nt_contract: the contract suites of the bus, presence and history interfaces, each a
 * set of cmocka tests parametrised by a factory, so the memory implementations (unit
 * tests, tests/unit/test_contract_mem.c) and the real ones (integration tests with
 * nats-server, redis-server, nats-server -js: tests/integration/itest_contract_*.c) are
 * held to the same rules — the ones their headers promise.
 *
 * A factory creates a ready implementation on the loop it is given (connected, or
 * storing for a history) and returns NULL when it cannot. The suite destroys what it
 * created, runs the loop until the implementation's handles are closed and checks that
 * uv_loop_close succeeds (no leaked handle). Loop thread only. */
#ifndef NT_CONTRACT_H
#define NT_CONTRACT_H

#include <uv.h>

#include "nt_bus.h"
#include "nt_history.h"
#include "nt_presence.h"

typedef struct nt_ct_bus_factory {
  const char *name;
  nt_bus *(*create)(void *ctx, uv_loop_t *loop, const nt_bus_handler *h);
  void *ctx;
} nt_ct_bus_factory;

typedef struct nt_ct_presence_factory {
  const char *name;
  /* Each call must give an empty store (a fresh key prefix for Redis). */
  nt_presence *(*create)(void *ctx, uv_loop_t *loop, const nt_presence_handler *h);
  void *ctx;
} nt_ct_presence_factory;

typedef struct nt_ct_history_factory {
  const char *name;
  nt_ct_bus_factory bus; /* the bus the history publishes on */
  /* Over `bus` (created by bus.create), with `cfg`. Returns once it is storing. */
  nt_history *(*create)(void *ctx, uv_loop_t *loop, nt_bus *bus, const nt_hist_cfg *cfg);
  void *ctx;
  /* A sharded history (nt_history_shard_new): msg_id keys span the rooms of one shard
   * only; same_shard(ctx, a, b) says whether room subjects a and b share one. */
  int keys_per_shard;
  int (*same_shard)(void *ctx, const char *a, const char *b);
} nt_ct_history_factory;

/* Run a suite (a cmocka group named after the factory); return cmocka's failure count. */
int nt_ct_bus_run(const nt_ct_bus_factory *f);
int nt_ct_presence_run(const nt_ct_presence_factory *f);
int nt_ct_history_run(const nt_ct_history_factory *f);

/* Runs `loop` until cond(ud) holds (checked every 2 ms) or `timeout_ms` passed; cond NULL
 * runs it that long. Returns 1 when cond held. Never waits without bound. */
int nt_ct_run_until(uv_loop_t *loop, int (*cond)(void *ud), void *ud, int timeout_ms);

/* Runs `loop` until it has no more active handles (bounded), then uv_loop_close()s it;
 * returns uv_loop_close's result, after printing the handles left when it fails. */
int nt_ct_close_loop(uv_loop_t *loop);

/* A bus factory's create for the NATS implementation: `ctx` is the server URL. Returns a
 * connected bus, or NULL. */
nt_bus *nt_ct_nats_bus(void *ctx, uv_loop_t *loop, const nt_bus_handler *h);

/* A number unique in this process (fresh tenants, prefixes and subjects per case). */
unsigned nt_ct_unique(void);

#endif
