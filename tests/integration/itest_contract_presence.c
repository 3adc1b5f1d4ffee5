/* itest_contract_presence: the presence contract suite (tests/contract/presence_contract.c)
 * against the Redis implementation and a real redis-server on a free loopback port; every
 * case gets a fresh key prefix. */
#include <stdio.h>

#include "nt_contract.h"
#include "nt_testsrv.h"

static int c_up(void *ud) { return nt_presence_connected(ud); }

static nt_presence *redis_presence(void *ctx, uv_loop_t *loop, const nt_presence_handler *h) {
  char prefix[32];
  snprintf(prefix, sizeof prefix, "ct%u:", nt_ct_unique());
  nt_presence *p = NULL;
  if (nt_presence_redis_new(loop, ctx, prefix, "ct-node", 30.0, 5.0, h, &p) != 0) return NULL;
  if (!nt_ct_run_until(loop, c_up, p, 5000)) {
    nt_presence_destroy(p);
    return NULL;
  }
  return p;
}

/* Two Redis servers, one presence shard each (--redis-shards): the same contract. */
typedef struct shard_ctx {
  uv_loop_t *loop;
  const char *const *urls;
  char prefix[32];
} shard_ctx;

static int redis_shard(void *ctx, unsigned k, const nt_presence_handler *h,
                       nt_presence **out) {
  shard_ctx *c = ctx;
  return nt_presence_redis_new(c->loop, c->urls[k], c->prefix, "ct-node", 30.0, 5.0, h, out);
}

static int c_all_up(void *ud) {
  for (unsigned k = 0; k < 2; k++) {
    int up = 0;
    nt_presence_shards(ud, k, NULL, &up);
    if (!up) return 0;
  }
  return 1;
}

static nt_presence *sharded_presence(void *ctx, uv_loop_t *loop, const nt_presence_handler *h) {
  shard_ctx c = {.loop = loop, .urls = ctx};
  snprintf(c.prefix, sizeof c.prefix, "cts%u:", nt_ct_unique());
  nt_presence *p = NULL;
  if (nt_presence_shard_new(2, redis_shard, &c, h, &p) != 0) return NULL;
  if (!nt_ct_run_until(loop, c_all_up, p, 5000)) {
    nt_presence_destroy(p);
    return NULL;
  }
  return p;
}

int main(void) {
  nt_testsrv srv;
  if (nt_testsrv_redis_start(&srv, 0, 10000)) {
    fprintf(stderr, "cannot start redis-server\n");
    return 1;
  }
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  nt_ct_presence_factory f = {.name = "presence contract: Redis", .create = redis_presence,
                              .ctx = url};
  int failed = nt_ct_presence_run(&f);
  nt_testsrv srv2;
  if (nt_testsrv_redis_start(&srv2, 0, 10000)) {
    fprintf(stderr, "cannot start a second redis-server\n");
    nt_testsrv_stop(&srv);
    return 1;
  }
  char url2[64];
  snprintf(url2, sizeof url2, "redis://127.0.0.1:%d", srv2.port);
  const char *urls[2] = {url, url2};
  nt_ct_presence_factory sf = {.name = "presence contract: 2 Redis shards",
                               .create = sharded_presence, .ctx = (void *)urls};
  failed += nt_ct_presence_run(&sf);
  nt_testsrv_stop(&srv2);
  nt_testsrv_stop(&srv);
  return failed;
}
