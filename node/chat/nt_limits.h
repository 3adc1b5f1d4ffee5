/* nt_limits: the edge's per-connection and per-user limits — message rate (token bucket),
 * rooms per connection, connections per user — and the HTTP request deadline the node's
 * sweep applies. docs/security.md lists every limit and its default.
 *
 * The pure token bucket is lib/base/nt_ratelimit (unit-tested with explicit clocks); this
 * is the glue (nt_limits_*) that reads the configuration and answers the client. Loop
 * thread only. */
#ifndef NT_LIMITS_H
#define NT_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "nt_auth.h"
#include "nt_ratelimit.h"

struct nt_chat;
struct nt_conn;

/* ---- node glue ---- */

/* Called for every client data message before it is processed. Returns 1 to process it;
 * 0 when the rate limit refused it: the client got `error` rate_limited (with the
 * message's requestId when it had one), or, when refusals are sustained, the connection
 * is being closed with 1008. */
int nt_limits_admit_message(struct nt_chat *n, struct nt_conn *c, int opcode,
                            const uint8_t *data, size_t len);

/* Returns 1 when `c` may join one more room (--max-rooms-per-connection), else 0 (the
 * caller answers `error` forbidden). */
int nt_limits_room_ok(struct nt_chat *n, const struct nt_conn *c);

/* Returns 0 when a new connection of `id` may be accepted on this node, or 429 when the
 * user already has --max-connections-per-user local connections. Counted from the hub's
 * user sets: per node, not cluster-wide. */
int nt_limits_user_conns_check(struct nt_chat *n, const nt_identity *id);

/* The HTTP-phase request deadline (--handshake-timeout), ms. */
uint64_t nt_limits_handshake_ms(const struct nt_chat *n);

#endif
