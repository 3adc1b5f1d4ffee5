/* nt_test_b64: base64url without padding (RFC 4648 §5), for tests that build tokens by
 * hand — unit tests and fuzz targets include it by relative path ("../nt_test_b64.h").
 * Header-only: each includer gets its own static copy. */
#ifndef NT_TEST_B64_H
#define NT_TEST_B64_H

#include <stddef.h>
#include <stdint.h>

/* Writes the encoding of in[0..len) and a NUL to `out` (room for 4 * len / 3 + 3 bytes);
 * returns its length. */
static inline size_t nt_test_b64url(const void *in, size_t len, char *out) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *p = in;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    acc = (acc << 8) | p[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[o++] = al[(acc >> bits) & 63];
    }
  }
  if (bits) out[o++] = al[(acc << (6 - bits)) & 63];
  out[o] = '\0';
  return o;
}

#endif
