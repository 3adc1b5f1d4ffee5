/* test_deflate: permessage-deflate negotiation (RFC 7692 offers, accepted and declined),
 * the shared compressed frame variant, and the bounded inflater (zip bombs, corrupt data,
 * BFINAL). Checked against zlib used directly as the "other side". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "nt_deflate.h"
#include "nt_err.h"
#include "nt_frame.h"
#include "nt_metrics.h"

#define BOTH "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/* ---------------------------------------------------------------- negotiation - */

static int neg(const char *offer, char *resp, uint8_t *wbits) {
  *wbits = 0;
  resp[0] = '\0';
  return nt_deflate_negotiate(offer, resp, NT_DEFLATE_RESPONSE_MAX, wbits);
}

static void test_accepted_offers(void **state) {
  (void)state;
  char r[NT_DEFLATE_RESPONSE_MAX];
  uint8_t wb;
  static const char *const plain[] = {
      "permessage-deflate",
      "permessage-deflate; client_max_window_bits",          /* browsers */
      "permessage-deflate;client_max_window_bits=15",
      "permessage-deflate; client_max_window_bits=\"10\"",   /* quoted value */
      "permessage-deflate; server_no_context_takeover",
      "permessage-deflate; client_no_context_takeover",
      "PerMessage-Deflate ; Client_No_Context_Takeover ; server_no_context_takeover",
      "x-foo; a=1; b=\"q,uoted\", permessage-deflate",        /* other extensions skipped */
      ", permessage-deflate",                                 /* empty list element */
      "permessage-deflate; bogus, permessage-deflate",        /* the 2nd offer is fine */
  };
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    assert_int_equal(neg(plain[i], r, &wb), 1);
    assert_string_equal(r, BOTH);
    assert_int_equal(wb, 15);
  }
  assert_int_equal(neg("permessage-deflate; server_max_window_bits=10", r, &wb), 1);
  assert_string_equal(r, BOTH "; server_max_window_bits=10");
  assert_int_equal(wb, 10);
  assert_int_equal(neg("permessage-deflate; server_max_window_bits=8; client_max_window_bits",
                       r, &wb), 1);
  assert_string_equal(r, BOTH "; server_max_window_bits=8");
  assert_int_equal(wb, 8);
  assert_int_equal(neg("permessage-deflate; server_max_window_bits=7, permessage-deflate; "
                       "server_max_window_bits=\"15\"", r, &wb), 1);
  assert_int_equal(wb, 15);
}

static void test_declined_offers(void **state) {
  (void)state;
  char r[NT_DEFLATE_RESPONSE_MAX];
  uint8_t wb;
  static const char *const bad[] = {
      NULL,
      "",
      "x-webkit-deflate-frame",
      "permessage-deflate; bogus",                                        /* unknown */
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; client_max_window_bits; client_max_window_bits=9", /* twice */
      "permessage-deflate; server_max_window_bits",                       /* value needed */
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=010",                   /* leading zero */
      "permessage-deflate; server_max_window_bits=1x",
      "permessage-deflate; client_max_window_bits=99",
      "permessage-deflate; client_max_window_bits=\"\"",
      "permessage-deflate; server_no_context_takeover=1",                 /* no value */
      "permessage-deflate; client_no_context_takeover=\"x\"",
      "permessage-deflate x",                                             /* malformed */
      "permessage-deflate;",
      "; permessage-deflate",
      "permessage-deflate; client_max_window_bits=\"10",                  /* unterminated */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(neg(bad[i], r, &wb), 0);
    assert_int_equal(wb, 0);
  }
  /* too small a response buffer is refused, not overflowed */
  assert_int_equal(nt_deflate_negotiate("permessage-deflate", r, 10, &wb), 0);
}

/* ---------------------------------------------------------------- helpers ---- */

/* zlib inflate of a permessage-deflate payload (tail appended), as a client would. */
static size_t ref_inflate(const uint8_t *in, size_t len, uint8_t *out, size_t cap, int wbits) {
  z_stream s;
  memset(&s, 0, sizeof s);
  assert_int_equal(inflateInit2(&s, -wbits), Z_OK);
  uint8_t *buf = malloc(len + 4);
  memcpy(buf, in, len);
  memcpy(buf + len, "\x00\x00\xff\xff", 4);
  s.next_in = buf;
  s.avail_in = (uInt)(len + 4);
  s.next_out = out;
  s.avail_out = (uInt)cap;
  int r = inflate(&s, Z_SYNC_FLUSH);
  assert_true(r == Z_OK || r == Z_STREAM_END);
  size_t n = cap - s.avail_out;
  inflateEnd(&s);
  free(buf);
  return n;
}

/* zlib deflate of `len` bytes as a client would send it (sync flush, tail removed), or
 * with a final block when `final`. */
static uint8_t *ref_deflate(const uint8_t *in, size_t len, int final, size_t *out_len) {
  z_stream s;
  memset(&s, 0, sizeof s);
  assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&s, (uLong)len) + 64;
  uint8_t *out = malloc(cap);
  s.next_in = (Bytef *)in;
  s.avail_in = (uInt)len;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  int r = deflate(&s, final ? Z_FINISH : Z_SYNC_FLUSH);
  assert_true(r == Z_OK || r == Z_STREAM_END);
  size_t n = cap - s.avail_out;
  deflateEnd(&s);
  if (!final) {
    assert_memory_equal(out + n - 4, "\x00\x00\xff\xff", 4);
    n -= 4;
  }
  *out_len = n;
  return out;
}

static char *json_text(size_t n) {
  static const char unit[] = "{\"type\":\"message\",\"text\":\"hello\"} ";
  char *s = malloc(n + 1);
  for (size_t i = 0; i < n; i++) s[i] = unit[i % (sizeof unit - 1)];
  s[n] = '\0';
  return s;
}

/* ---------------------------------------------------------------- frames ----- */

static void test_shared_variant(void **state) {
  (void)state;
  nt_metrics m;
  memset(&m, 0, sizeof m);
  nt_deflate *z = nt_deflate_new(256, 65536, &m);
  assert_non_null(z);
  char *text = json_text(3000);
  nt_frame *f = nt_frame_from(NT_WS_OP_TEXT, text, 3000);
  nt_frame *v = nt_deflate_frame(z, f, 15);
  assert_ptr_not_equal(v, f);
  assert_ptr_equal(f->z, v);
  assert_int_equal(v->data[0], 0x80 | 0x40 | NT_WS_OP_TEXT); /* FIN, RSV1, text */
  assert_true(v->len < f->len / 4);
  /* every later member gets the same variant: compressed once */
  for (int i = 0; i < 1000; i++) assert_ptr_equal(nt_deflate_frame(z, f, 15), v);
  assert_int_equal(m.deflate_frames, 1);
  assert_int_equal(m.deflate_in_bytes, 3000);
  assert_int_equal(m.deflate_out_bytes, v->len - v->hdr);
  /* a client inflates it back */
  uint8_t out[4096];
  size_t n = ref_inflate(nt_frame_payload(v), v->len - v->hdr, out, sizeof out, 15);
  assert_int_equal(n, 3000);
  assert_memory_equal(out, text, 3000);
  /* a queue holding the variant keeps it alive after the frame goes (refcounts) */
  nt_frame *held = nt_frame_ref(v);
  nt_frame_unref(f);
  assert_int_equal(held->refs, 1);
  nt_frame_unref(held);
  free(text);
  nt_deflate_free(z);
}

static void test_frames_left_plain(void **state) {
  (void)state;
  nt_metrics m;
  memset(&m, 0, sizeof m);
  nt_deflate *z = nt_deflate_new(256, 65536, &m);
  char *text = json_text(4000);
  /* under the threshold */
  nt_frame *f = nt_frame_from(NT_WS_OP_TEXT, text, 255);
  assert_ptr_equal(nt_deflate_frame(z, f, 15), f);
  nt_frame_unref(f);
  /* at the threshold: compressed */
  f = nt_frame_from(NT_WS_OP_TEXT, text, 256);
  assert_ptr_not_equal(nt_deflate_frame(z, f, 15), f);
  nt_frame_unref(f);
  /* control frames and pre-framed bytes never */
  f = nt_frame_from(NT_WS_OP_PING, text, 100);
  assert_ptr_equal(nt_deflate_frame(z, f, 15), f);
  nt_frame_unref(f);
  f = nt_frame_raw(text, 4000);
  assert_ptr_equal(nt_deflate_frame(z, f, 15), f);
  nt_frame_unref(f);
  /* incompressible data: tried once, sent plain, counted */
  uint8_t rnd[2000];
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < sizeof rnd; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    rnd[i] = (uint8_t)x;
  }
  f = nt_frame_from(NT_WS_OP_BINARY, rnd, sizeof rnd);
  assert_ptr_equal(nt_deflate_frame(z, f, 15), f);
  assert_ptr_equal(nt_deflate_frame(z, f, 15), f);
  assert_int_equal(m.deflate_skipped, 1);
  assert_null(f->z);
  nt_frame_unref(f);
  /* a smaller window than the message: plain for that connection, compressed for others */
  f = nt_frame_from(NT_WS_OP_TEXT, text, 2000);
  assert_ptr_equal(nt_deflate_frame(z, f, 10), f); /* 2000 > 1024 */
  assert_ptr_not_equal(nt_deflate_frame(z, f, 15), f);
  assert_ptr_not_equal(nt_deflate_frame(z, f, 11), f); /* 2000 <= 2048 */
  uint8_t out[4096];
  nt_frame *v = f->z;
  assert_int_equal(ref_inflate(nt_frame_payload(v), v->len - v->hdr, out, sizeof out, 11), 2000);
  assert_memory_equal(out, text, 2000);
  nt_frame_unref(f);
  free(text);
  nt_deflate_free(z);
}

/* ---------------------------------------------------------------- inflate ---- */

static void test_inflate_roundtrip(void **state) {
  (void)state;
  nt_metrics m;
  memset(&m, 0, sizeof m);
  nt_deflate *z = nt_deflate_new(1, 65536, &m);
  char *text = json_text(65536);
  const uint8_t *out;
  size_t n, zl;
  for (int final = 0; final < 2; final++) {
    for (size_t len = 0; len <= 65536; len = len ? len * 4 : 1) {
      uint8_t *c = ref_deflate((const uint8_t *)text, len, final, &zl);
      assert_int_equal(nt_deflate_inflate(z, c, zl, &out, &n), 0);
      assert_int_equal(n, len);
      if (len) assert_memory_equal(out, text, len);
      free(c);
    }
  }
  /* our own compressor, through our own inflater (one stream each, reset per message) */
  for (int i = 0; i < 3; i++) {
    uint8_t *c = nt_deflate_compress(z, (const uint8_t *)text, 5000, &zl);
    assert_non_null(c);
    assert_int_equal(nt_deflate_inflate(z, c, zl, &out, &n), 0);
    assert_int_equal(n, 5000);
    assert_memory_equal(out, text, 5000);
    free(c);
  }
  /* exactly at the limit is allowed */
  uint8_t *c = ref_deflate((const uint8_t *)text, 65536, 0, &zl);
  assert_int_equal(nt_deflate_inflate(z, c, zl, &out, &n), 0);
  assert_int_equal(n, 65536);
  free(c);
  assert_int_equal(m.inflate_refused, 0);
  free(text);
  nt_deflate_free(z);
}

static void test_inflate_bomb_and_garbage(void **state) {
  (void)state;
  nt_metrics m;
  memset(&m, 0, sizeof m);
  nt_deflate *z = nt_deflate_new(1, 65536, &m);
  const uint8_t *out;
  size_t n, zl;
  /* one byte over the limit */
  char *text = json_text(65537);
  uint8_t *c = ref_deflate((const uint8_t *)text, 65537, 0, &zl);
  assert_int_equal(nt_deflate_inflate(z, c, zl, &out, &n), NT_ETOOLARGE);
  free(c);
  free(text);
  /* 32 MiB of zeros in ~32 KB: refused after 64 KiB of work */
  size_t big = 32u << 20;
  uint8_t *zeros = calloc(1, big);
  c = ref_deflate(zeros, big, 0, &zl);
  free(zeros);
  assert_true(zl < 64 * 1024);
  assert_int_equal(nt_deflate_inflate(z, c, zl, &out, &n), NT_ETOOLARGE);
  free(c);
  /* not DEFLATE */
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x12};
  assert_int_equal(nt_deflate_inflate(z, junk, sizeof junk, &out, &n), NT_EINVAL);
  /* data after a final block */
  c = ref_deflate((const uint8_t *)"hello", 5, 1, &zl);
  uint8_t *more = malloc(zl + 3);
  memcpy(more, c, zl);
  memcpy(more + zl, "abc", 3);
  assert_int_equal(nt_deflate_inflate(z, more, zl + 3, &out, &n), NT_EINVAL);
  free(more);
  free(c);
  /* the shared stream recovers: the next message is fine */
  c = ref_deflate((const uint8_t *)"hello", 5, 0, &zl);
  assert_int_equal(nt_deflate_inflate(z, c, zl, &out, &n), 0);
  assert_int_equal(n, 5);
  assert_memory_equal(out, "hello", 5);
  free(c);
  assert_int_equal(m.inflate_refused, 4);
  assert_int_equal(m.inflate_messages, 1);
  nt_deflate_free(z);
}

/* A client keeping its context between messages (it was told not to) produces data that
 * refers before the message's start: refused, not misread. */
static void test_context_takeover_refused(void **state) {
  (void)state;
  nt_deflate *z = nt_deflate_new(1, 65536, NULL);
  z_stream s;
  memset(&s, 0, sizeof s);
  assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  const char *msg = "the same sentence, said twice over: the same sentence";
  uint8_t buf[2][256];
  size_t len[2];
  for (int i = 0; i < 2; i++) {
    s.next_in = (Bytef *)msg;
    s.avail_in = (uInt)strlen(msg);
    s.next_out = buf[i];
    s.avail_out = sizeof buf[i];
    assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
    len[i] = sizeof buf[i] - s.avail_out - 4;
  }
  deflateEnd(&s);
  const uint8_t *out;
  size_t n;
  assert_int_equal(nt_deflate_inflate(z, buf[0], len[0], &out, &n), 0);
  assert_int_equal(nt_deflate_inflate(z, buf[1], len[1], &out, &n), NT_EINVAL);
  nt_deflate_free(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepted_offers),
      cmocka_unit_test(test_declined_offers),
      cmocka_unit_test(test_shared_variant),
      cmocka_unit_test(test_frames_left_plain),
      cmocka_unit_test(test_inflate_roundtrip),
      cmocka_unit_test(test_inflate_bomb_and_garbage),
      cmocka_unit_test(test_context_takeover_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
