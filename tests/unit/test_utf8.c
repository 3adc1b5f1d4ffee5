/* test_utf8: the strict incremental UTF-8 validator (RFC 3629 as RFC 6455 requires). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_utf8.h"

typedef struct sample {
  const char *s;
  size_t len;
} sample;

#define S(lit) {lit, sizeof(lit) - 1}

static const sample valid[] = {
    S(""),
    S("hello"),
    S("\x00"),                      /* NUL is a valid character */
    S("\x7f"),
    S("\xc2\x80"),                  /* U+0080, smallest 2-byte */
    S("\xdf\xbf"),                  /* U+07FF */
    S("\xe0\xa0\x80"),              /* U+0800, smallest 3-byte */
    S("\xed\x9f\xbf"),              /* U+D7FF, just below surrogates */
    S("\xee\x80\x80"),              /* U+E000, just above surrogates */
    S("\xef\xbf\xbf"),              /* U+FFFF */
    S("\xf0\x90\x80\x80"),          /* U+10000, smallest 4-byte */
    S("\xf4\x8f\xbf\xbf"),          /* U+10FFFF, the largest */
    S("\xf3\xbf\xbf\xbf"),
    S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), /* "κόσμε" */
    S("a\xf0\x9f\x98\x80z"),
};

static const sample invalid[] = {
    S("\x80"),                      /* lone continuation */
    S("\xbf"),
    S("\xc0\x80"),                  /* overlong NUL */
    S("\xc1\xbf"),                  /* overlong */
    S("\xe0\x80\x80"),              /* overlong 3-byte */
    S("\xe0\x9f\xbf"),              /* overlong U+07FF */
    S("\xf0\x80\x80\x80"),          /* overlong 4-byte */
    S("\xf0\x8f\xbf\xbf"),          /* overlong U+FFFF */
    S("\xed\xa0\x80"),              /* U+D800 */
    S("\xed\xbf\xbf"),              /* U+DFFF */
    S("\xed\xa0\x80\xed\xb0\x80"),  /* surrogate pair encoded (CESU-8) */
    S("\xf4\x90\x80\x80"),          /* U+110000 */
    S("\xf5\x80\x80\x80"),
    S("\xf7\xbf\xbf\xbf"),
    S("\xf8\x88\x80\x80\x80"),      /* 5-byte form */
    S("\xfc\x84\x80\x80\x80\x80"),  /* 6-byte form */
    S("\xfe"),
    S("\xff"),
    S("\xc2"),                      /* truncated */
    S("\xe0\xa0"),
    S("\xf0\x90\x80"),
    S("\xc2\x41"),                  /* ASCII where a continuation is needed */
    S("\xe1\x80\x41"),
    S("\xc2\xc2\x80"),              /* lead byte where a continuation is needed */
    S("abc\x80"),
};

static void test_valid_samples(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    if (!nt_utf8_valid(valid[i].s, valid[i].len)) fail_msg("valid sample #%zu rejected", i);
    uint32_t st = NT_UTF8_ACCEPT;
    assert_int_equal(nt_utf8_feed(&st, valid[i].s, valid[i].len), NT_UTF8_ACCEPT);
    assert_int_equal(st, NT_UTF8_ACCEPT);
  }
}

static void test_invalid_samples(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    if (nt_utf8_valid(invalid[i].s, invalid[i].len)) fail_msg("invalid sample #%zu accepted", i);
  }
}

/* Every code point encoded by hand: all valid, and every surrogate rejected. */
static size_t encode(uint32_t cp, unsigned char *o) {
  if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

static void test_every_code_point(void **state) {
  (void)state;
  unsigned char b[4];
  for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
    size_t n = encode(cp, b);
    int want = !(cp >= 0xd800 && cp <= 0xdfff);
    if (nt_utf8_valid(b, n) != want) fail_msg("U+%04X: got %d", cp, !want);
  }
  /* everything above U+10FFFF that fits in 4 bytes is refused */
  for (uint32_t cp = 0x110000; cp <= 0x1fffff; cp += 0x1111) {
    size_t n = encode(cp, b);
    if (nt_utf8_valid(b, n)) fail_msg("U+%X accepted", cp);
  }
  /* every overlong 2-byte form */
  for (uint32_t cp = 0; cp < 0x80; cp++) {
    b[0] = (unsigned char)(0xc0 | cp >> 6);
    b[1] = (unsigned char)(0x80 | (cp & 0x3f));
    assert_false(nt_utf8_valid(b, 2));
  }
}

/* Feeding a sample in two pieces, split at every position, gives the same verdict, and
 * an incomplete prefix of a valid text is "neither accept nor reject". */
static void test_split_everywhere(void **state) {
  (void)state;
  const char text[] = "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80!\xf4\x8f\xbf\xbf";
  size_t len = sizeof text - 1;
  for (size_t cut = 0; cut <= len; cut++) {
    uint32_t st = NT_UTF8_ACCEPT;
    uint32_t r = nt_utf8_feed(&st, text, cut);
    assert_int_not_equal(r, NT_UTF8_REJECT);
    r = nt_utf8_feed(&st, text + cut, len - cut);
    assert_int_equal(r, NT_UTF8_ACCEPT);
  }
  /* byte by byte */
  uint32_t st = NT_UTF8_ACCEPT;
  for (size_t i = 0; i < len; i++) {
    uint32_t r = nt_utf8_feed(&st, text + i, 1);
    assert_int_not_equal(r, NT_UTF8_REJECT);
    int boundary = i + 1 == len || ((unsigned char)text[i + 1] & 0xc0) != 0x80;
    if (boundary) assert_int_equal(r, NT_UTF8_ACCEPT);
    else assert_int_not_equal(r, NT_UTF8_ACCEPT);
  }
  /* every sample, split at every position into three pieces */
  for (size_t k = 0; k < sizeof valid / sizeof valid[0]; k++) {
    for (size_t a = 0; a <= valid[k].len; a++)
      for (size_t b = a; b <= valid[k].len; b++) {
        uint32_t s = NT_UTF8_ACCEPT;
        nt_utf8_feed(&s, valid[k].s, a);
        nt_utf8_feed(&s, valid[k].s + a, b - a);
        assert_int_equal(nt_utf8_feed(&s, valid[k].s + b, valid[k].len - b), NT_UTF8_ACCEPT);
      }
  }
  for (size_t k = 0; k < sizeof invalid / sizeof invalid[0]; k++) {
    for (size_t a = 0; a <= invalid[k].len; a++) {
      uint32_t s = NT_UTF8_ACCEPT;
      nt_utf8_feed(&s, invalid[k].s, a);
      assert_int_not_equal(nt_utf8_feed(&s, invalid[k].s + a, invalid[k].len - a),
                           NT_UTF8_ACCEPT);
    }
  }
}

/* REJECT is returned by the very byte that makes the input impossible, and sticks. */
static void test_fail_fast(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t bad_at; /* index of the byte that makes it impossible */
  } cases[] = {
      {"\xe0\x80", 1},          /* E0 must be followed by A0..BF */
      {"\xed\xa0", 1},          /* ED A0: would be a surrogate */
      {"\xf0\x8f", 1},          /* overlong 4-byte */
      {"\xf4\x90", 1},          /* > U+10FFFF */
      {"\xc0", 0},
      {"\xf5", 0},
      {"ab\x80", 2},
      {"\xe1\x80\x20", 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t st = NT_UTF8_ACCEPT;
    const char *s = cases[i].s;
    for (size_t j = 0; j < cases[i].bad_at; j++) {
      uint32_t r = nt_utf8_feed(&st, s + j, 1);
      if (r == NT_UTF8_REJECT) fail_msg("case %zu rejected early at %zu", i, j);
    }
    if (nt_utf8_feed(&st, s + cases[i].bad_at, 1) != NT_UTF8_REJECT)
      fail_msg("case %zu not rejected at byte %zu", i, cases[i].bad_at);
    /* sticky: valid bytes afterwards do not revive it */
    assert_int_equal(nt_utf8_feed(&st, "abc", 3), NT_UTF8_REJECT);
    assert_int_equal(st, NT_UTF8_REJECT);
  }
  /* in one call: the first bad byte stops the scan, even with a long tail */
  char buf[4096];
  memset(buf, 'a', sizeof buf);
  buf[5] = (char)0xff;
  uint32_t st = NT_UTF8_ACCEPT;
  assert_int_equal(nt_utf8_feed(&st, buf, sizeof buf), NT_UTF8_REJECT);
}

/* The 8-byte ASCII fast path: a non-ASCII byte at every offset and every length around
 * multiples of 8, both valid (2-byte char) and invalid (lone continuation). */
static void test_ascii_fast_path(void **state) {
  (void)state;
  char buf[80];
  for (size_t len = 0; len <= 64; len++) {
    memset(buf, 'x', sizeof buf);
    assert_true(nt_utf8_valid(buf, len));
    for (size_t pos = 0; pos < len; pos++) {
      memset(buf, 'x', sizeof buf);
      buf[pos] = (char)0x80; /* invalid anywhere */
      if (nt_utf8_valid(buf, len)) fail_msg("len %zu: 0x80 at %zu accepted", len, pos);
      buf[pos] = (char)0x7f; /* highest ASCII */
      assert_true(nt_utf8_valid(buf, len));
      if (pos + 1 < len) {
        memset(buf, 'x', sizeof buf);
        buf[pos] = (char)0xc3;
        buf[pos + 1] = (char)0xa9;
        if (!nt_utf8_valid(buf, len)) fail_msg("len %zu: é at %zu rejected", len, pos);
        /* truncated at the end of the buffer */
        if (nt_utf8_valid(buf, pos + 1)) fail_msg("truncated é at %zu accepted", pos);
      }
    }
  }
  /* unaligned starts */
  char big[256];
  memset(big, 'q', sizeof big);
  for (size_t off = 0; off < 16; off++) {
    assert_true(nt_utf8_valid(big + off, sizeof big - off));
    big[200] = (char)0xbf;
    assert_false(nt_utf8_valid(big + off, sizeof big - off));
    big[200] = 'q';
  }
  /* mid-character state across an ASCII run: ASCII must be refused */
  uint32_t st = NT_UTF8_ACCEPT;
  assert_int_not_equal(nt_utf8_feed(&st, "\xe6", 1), NT_UTF8_REJECT);
  assert_int_equal(nt_utf8_feed(&st, "abcdefghijklmnop", 16), NT_UTF8_REJECT);
}

static void test_large_buffer(void **state) {
  (void)state;
  size_t n = 1 << 20;
  char *b = malloc(n);
  assert_non_null(b);
  for (size_t i = 0; i + 3 <= n; i += 3) memcpy(b + i, "\xe2\x82\xac", 3); /* '€' */
  size_t len = n - n % 3;
  assert_true(nt_utf8_valid(b, len));
  assert_false(nt_utf8_valid(b, len - 1));
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_samples),
      cmocka_unit_test(test_invalid_samples),
      cmocka_unit_test(test_every_code_point),
      cmocka_unit_test(test_split_everywhere),
      cmocka_unit_test(test_fail_fast),
      cmocka_unit_test(test_ascii_fast_path),
      cmocka_unit_test(test_large_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
