/* nt_clock: wall-clock milliseconds and xoshiro256** random ids. */
#include "nt_clock.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int64_t nt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nt_rng_seed(nt_rng *r) {
  if (getrandom(r->s, sizeof r->s, 0) != sizeof r->s) {
    r->s[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)r;
    r->s[1] = 0x9e3779b97f4a7c15ull;
    r->s[2] = (uint64_t)getpid();
    r->s[3] = 0xda3e39cb94b95bdbull;
  }
}

void nt_rng_seed_fixed(nt_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = seed + (uint64_t)i; /* seed 0 would stick at 0 */
  if (!seed) r->s[0] = 0x9e3779b97f4a7c15ull;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nt_rng_next(nt_rng *r) { /* xoshiro256** */
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

void nt_random_id(nt_rng *r, char *out, size_t len) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  uint64_t x = 0;
  for (size_t i = 0; i < len; i++) {
    if (i % 10 == 0) x = nt_rng_next(r);
    out[i] = abc[x % 62];
    x /= 62;
  }
  out[len] = '\0';
}
