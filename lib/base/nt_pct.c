/* nt_pct: percent-decoding of URL parts. */
#include "nt_pct.h"

#include <limits.h>

#include "nt_err.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int nt_pct_decode(const char *in, size_t n, char *out, size_t cap, unsigned flags) {
  if (!out || cap == 0 || cap > INT_MAX) return NT_EINVAL;
  out[0] = '\0';
  if (!in) return NT_EINVAL;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    int ch = (unsigned char)in[i];
    if (ch == '%') {
      int hi = i + 2 < n ? hexval(in[i + 1]) : -1, lo = i + 2 < n ? hexval(in[i + 2]) : -1;
      ch = hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
      if (ch <= 0 || (ch == '/' && (flags & NT_PCT_NO_SLASH))) {
        out[0] = '\0';
        return NT_EINVAL;
      }
      i += 3;
    } else {
      if (ch == '+' && (flags & NT_PCT_PLUS)) ch = ' ';
      i++;
    }
    if (o + 1 >= cap) {
      out[0] = '\0';
      return NT_ETOOLARGE;
    }
    out[o++] = (char)ch;
  }
  out[o] = '\0';
  return (int)o;
}
