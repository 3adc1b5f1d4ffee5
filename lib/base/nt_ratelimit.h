/* nt_ratelimit: a token bucket with explicit clocks (pure; every connection embeds one)
 * and a count of rejections per window. No allocation, not thread-safe (one owner). */
#ifndef NT_RATELIMIT_H
#define NT_RATELIMIT_H

#include <stdint.h>

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

#endif
