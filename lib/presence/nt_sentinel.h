/* nt_sentinel: finds a Redis primary through Redis Sentinel and follows its failovers.
 *
 * Asks the sentinels in turn (`SENTINEL get-master-addr-by-name`) for the primary's
 * address and keeps one subscription to `+switch-master` on one sentinel (moving to the
 * next when it drops), all over hiredis async on the caller's libuv loop: host names are
 * resolved off the loop, nothing blocks it. It only finds addresses; whoever connects to
 * the primary checks it (ROLE) and asks again when it is wrong or lost.
 * Threading: loop thread only; the handler runs on the loop thread, never inside a call
 * to this module. Strings passed in are copied; strings passed to the handler are
 * borrowed for the duration of the call. */
#ifndef NT_SENTINEL_H
#define NT_SENTINEL_H

#include <uv.h>

typedef struct nt_sentinel nt_sentinel;

typedef struct nt_sentinel_handler {
  /* The primary is at host:port. status 0: an answer to nt_sentinel_locate (switched 0)
   * or, unasked, a `+switch-master` announced by a sentinel (switched 1). status
   * NT_ESTORE (host NULL): no sentinel answered a locate or none knew the master. */
  void (*on_primary)(void *ud, int status, const char *host, int port, int switched);
  void *ud;
} nt_sentinel_handler;

typedef struct nt_sentinel_cfg {
  const char *addrs;  /* "host:port,host:port,..." ("[v6]:port" too), at most 16 */
  const char *master; /* the name the sentinels monitor the primary under */
  const char *user;   /* AUTH to the sentinels: NULL/NULL none, NULL/pass requirepass */
  const char *pass;
} nt_sentinel_cfg;

/* Validates the configuration and starts the `+switch-master` subscription. 0 and *out,
 * NT_EINVAL (bad address list or master name) or NT_ENOMEM. */
int nt_sentinel_new(uv_loop_t *loop, const nt_sentinel_cfg *cfg, const nt_sentinel_handler *h,
                    nt_sentinel **out);

/* Asks the sentinels for the primary, one after the other (each gets 1 s), starting
 * with the one that answered last; on_primary (switched 0) follows exactly once per
 * lookup. A call while a lookup runs joins it. */
void nt_sentinel_locate(nt_sentinel *s);

/* Parses an address list as nt_sentinel_new does: 0, or NT_EINVAL. (For validation.) */
int nt_sentinel_check_addrs(const char *addrs);

/* Stops: no handler call after it returns. The memory is freed once its handles are
 * closed (the caller keeps running the loop). */
void nt_sentinel_free(nt_sentinel *s);

#endif
