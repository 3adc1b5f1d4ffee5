/* nt_clock: wall-clock milliseconds and random ids (xoshiro256** seeded from getrandom).
 * An nt_rng is plain state with one owner (the node keeps one for the loop thread). */
#ifndef NT_CLOCK_H
#define NT_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Unix time in milliseconds (CLOCK_REALTIME): origin timestamps, token expiry. */
int64_t nt_now_ms(void);

typedef struct nt_rng {
  uint64_t s[4];
} nt_rng;

/* Seeds from getrandom(2), or from time and pid when that fails. */
void nt_rng_seed(nt_rng *r);
/* Seeds deterministically: state {seed, seed+1, seed+2, seed+3} (tests, fuzzing:
 * reproducible ids). */
void nt_rng_seed_fixed(nt_rng *r, uint64_t seed);
uint64_t nt_rng_next(nt_rng *r);
/* Writes `len` random characters from [A-Za-z0-9] plus a NUL into out. */
void nt_random_id(nt_rng *r, char *out, size_t len);

#endif
