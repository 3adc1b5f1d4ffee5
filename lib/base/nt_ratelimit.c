/* nt_ratelimit: token bucket and rejection window. */
#include "nt_ratelimit.h"

int nt_ratelimit_take(nt_ratelimit *rl, uint64_t now_ms, uint32_t rate, uint32_t burst) {
  if (rate == 0) return 1;
  if (burst == 0) burst = rate;
  /* Milli-tokens: `rate` tokens per second is exactly `rate` milli-tokens per ms, so the
   * refill is integer arithmetic with no drift. */
  uint64_t cap = (uint64_t)burst * 1000;
  if (cap > UINT32_MAX) cap = UINT32_MAX; /* beyond the configurable burst (1e6) */
  if (!rl->started) {
    rl->started = 1;
    rl->tokens = (uint32_t)cap;
    rl->last_ms = now_ms;
  } else if (now_ms > rl->last_ms) {
    uint64_t elapsed = now_ms - rl->last_ms, room = rl->tokens < cap ? cap - rl->tokens : 0;
    /* compared before multiplying: a long pause times a high rate would overflow */
    if (elapsed > room / rate) rl->tokens = (uint32_t)cap;
    else rl->tokens += (uint32_t)(elapsed * rate); /* <= room: stays within cap */
    rl->last_ms = now_ms;
  }
  if (rl->tokens > cap) rl->tokens = (uint32_t)cap; /* the limits may have been lowered */
  if (rl->tokens < 1000) return 0;
  rl->tokens -= 1000;
  return 1;
}

int nt_ratelimit_strike(nt_ratelimit *rl, uint64_t now_ms, uint32_t close_after) {
  if (rl->strikes == 0 || now_ms - rl->window_ms >= NT_RATE_WINDOW_MS) {
    rl->window_ms = now_ms;
    rl->strikes = 0;
  }
  if (rl->strikes < UINT16_MAX) rl->strikes++;
  return close_after > 0 && rl->strikes >= close_after;
}
