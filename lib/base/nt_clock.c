/* nt_clock: wall-clock milliseconds and RFC 3339 times. */
#include "nt_clock.h"

#include <stdio.h>
#include <time.h>

int64_t nt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *nt_clock_rfc3339(int64_t ms, char *out) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
  return out;
}
