/* nt_utf8: a small state machine validating UTF-8 byte by byte, ASCII runs fast. */
#include "nt_utf8.h"

#include <string.h>

/* States: 0 accept, 1 reject, otherwise ((need << 8) | lower bound class) encoded below.
 * We track the number of continuation bytes still needed and the allowed range of the
 * next byte (the first continuation byte is restricted for E0, ED, F0, F4). */
enum { NEED_SHIFT = 16 };

static inline uint32_t mk(uint32_t need, uint8_t lo, uint8_t hi) {
  return (need << NEED_SHIFT) | ((uint32_t)lo << 8) | hi;
}

uint32_t nt_utf8_feed(uint32_t *state, const void *buf, size_t len) {
  const unsigned char *s = buf;
  uint32_t st = *state;
  size_t i = 0;
  if (st == NT_UTF8_REJECT) return st;
  while (i < len) {
    if (st == NT_UTF8_ACCEPT) {
      /* fast path over ASCII, 8 bytes at a time */
      while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i >= len) break;
      unsigned char c = s[i++];
      if (c < 0x80) continue;
      if (c >= 0xc2 && c <= 0xdf) st = mk(1, 0x80, 0xbf);
      else if (c == 0xe0) st = mk(2, 0xa0, 0xbf);
      else if (c == 0xed) st = mk(2, 0x80, 0x9f);
      else if (c >= 0xe1 && c <= 0xef) st = mk(2, 0x80, 0xbf);
      else if (c == 0xf0) st = mk(3, 0x90, 0xbf);
      else if (c >= 0xf1 && c <= 0xf3) st = mk(3, 0x80, 0xbf);
      else if (c == 0xf4) st = mk(3, 0x80, 0x8f);
      else { st = NT_UTF8_REJECT; break; }
    } else {
      unsigned char c = s[i++];
      uint32_t need = st >> NEED_SHIFT;
      uint8_t lo = (uint8_t)(st >> 8), hi = (uint8_t)st;
      if (c < lo || c > hi) { st = NT_UTF8_REJECT; break; }
      need--;
      st = need ? mk(need, 0x80, 0xbf) : NT_UTF8_ACCEPT;
    }
  }
  *state = st;
  return st;
}

int nt_utf8_valid(const void *buf, size_t len) {
  uint32_t st = NT_UTF8_ACCEPT;
  return nt_utf8_feed(&st, buf, len) == NT_UTF8_ACCEPT;
}
