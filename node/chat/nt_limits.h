/* nt_limits: the edge's per-connection and per-user limits — message rate (token bucket),
 * rooms per connection, connections per user — and the HTTP-phase bounds nt_conn applies
 * (header size, request deadline). docs/security.md lists every limit and its default.
 *
 * Two layers, as elsewhere in node/: a pure token bucket (nt_ratelimit_*) unit-tested
 * with explicit clocks, and node glue (nt_limits_*) that reads the configuration and
 * answers the client. Loop thread only. */
#ifndef NT_LIMITS_H
#define NT_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "nt_auth.h"

struct nt_node;
struct nt_conn;

/* Rejections are counted per window of this length; --rate-close-after of them within one
 * window close the connection with 1008. */
#define NT_RATE_WINDOW_MS 10000

/* Per-connection token bucket state (embedded in nt_conn; all zero = not started). The
 * counters are as narrow as the configuration allows: tokens x 1000 <= 1e9 (--rate-burst
 * <= 1e6), strikes count up to --rate-close-after <= 65535. */
typedef struct nt_ratelimit {
  uint64_t last_ms;       /* time of the last refill */
  uint64_t window_ms;     /* start of the current rejection window */
  uint32_t tokens;        /* available tokens x 1000 */
  uint16_t strikes;       /* rejections within the current window (saturates) */
  uint8_t started;
} nt_ratelimit;

/* Takes one token at `now_ms` from a bucket refilled at `rate` tokens per second up to
 * `burst` tokens (a new bucket starts full). Returns 1 when the message may pass, 0 when
 * the bucket is empty. `rate` 0 means no limit (always 1). Pure. */
int nt_ratelimit_take(nt_ratelimit *rl, uint64_t now_ms, uint32_t rate, uint32_t burst);

/* Records one rejection at `now_ms`. Returns 1 when `close_after` (> 0) rejections fell
 * within one NT_RATE_WINDOW_MS window (the caller closes with 1008), else 0. Pure. */
int nt_ratelimit_strike(nt_ratelimit *rl, uint64_t now_ms, uint32_t close_after);

/* ---- node glue ---- */

/* Called for every client data message before it is processed. Returns 1 to process it;
 * 0 when the rate limit refused it: the client got `error` rate_limited (with the
 * message's requestId when it had one), or, when refusals are sustained, the connection
 * is being closed with 1008. */
int nt_limits_admit_message(struct nt_node *n, struct nt_conn *c, int opcode,
                            const uint8_t *data, size_t len);

/* Returns 1 when `c` may join one more room (--max-rooms-per-connection), else 0 (the
 * caller answers `error` forbidden). */
int nt_limits_room_ok(struct nt_node *n, const struct nt_conn *c);

/* Returns 0 when a new connection of `id` may be accepted on this node, or 429 when the
 * user already has --max-connections-per-user local connections. Counted from the hub's
 * user sets: per node, not cluster-wide. */
int nt_limits_user_conns_check(struct nt_node *n, const nt_identity *id);

/* HTTP-phase bounds for nt_conn: request line + headers, and the request deadline. */
size_t nt_limits_max_header_bytes(const struct nt_node *n);
uint64_t nt_limits_handshake_ms(const struct nt_node *n);

#endif
