/* nt_rand: buffered getrandom for the ids clients see. */
#include "nt_rand.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "nt_log.h"

static void refill(nt_rand *r) {
  size_t got = 0;
  while (got < sizeof r->buf) {
    ssize_t k = getrandom(r->buf + got, sizeof r->buf - got, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      nt_log_error("getrandom failed: refusing to make guessable ids", "{s:s}", "error",
                   strerror(errno));
      abort();
    }
    got += (size_t)k;
  }
  r->pos = 0;
  r->filled = 1;
}

void nt_rand_bytes(nt_rand *r, void *out, size_t n) {
  uint8_t *o = out;
  while (n) {
    if (!r->filled || r->pos == sizeof r->buf) refill(r);
    size_t k = sizeof r->buf - r->pos;
    if (k > n) k = n;
    memcpy(o, r->buf + r->pos, k);
    /* used bytes are wiped, so the pool never holds an id already given out */
    memset(r->buf + r->pos, 0, k);
    r->pos += k;
    o += k;
    n -= k;
  }
}

void nt_rand_id(nt_rand *r, char *out, size_t len) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  size_t i = 0;
  while (i < len) {
    uint8_t b;
    nt_rand_bytes(r, &b, 1);
    b &= 63;
    if (b < 62) out[i++] = abc[b]; /* 62, 63 dropped: every character equally likely */
  }
  out[len] = '\0';
}
