/* nt_presence_redis: TEMPORARY stand-in until the Redis implementation lands — uses the
 * in-memory presence so the node builds and runs in cluster mode. */
#include "nt_err.h"
#include "nt_presence.h"

int nt_presence_redis_new(uv_loop_t *loop, const char *url, const char *prefix,
                          const char *node_id, double node_ttl_s, double refresh_s,
                          const nt_presence_handler *h, nt_presence **out) {
  nt_presence *p = nt_presence_mem_new(h);
  if (!p) return NT_ENOMEM;
  *out = p;
  return 0;
}
