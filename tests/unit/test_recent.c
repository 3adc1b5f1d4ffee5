/* test_recent: a room's recent messages (nt_recent) — the chain and where a resume starts
 * in it, a hole that empties it, the count and the node-wide byte bounds, age, and frame
 * references held and given back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "nt_frame.h"
#include "nt_recent.h"

static nt_frame *frame(void) { return nt_frame_from(NT_WS_OP_TEXT, "{\"type\":\"message\"}", 18); }

/* Pushes seq with predecessor prev, a fresh frame, delivered at `at`; returns the frame
 * (the test's reference is dropped: the ring holds the only one when it keeps it). */
static int push(nt_recent *r, uint64_t seq, uint64_t prev, uint64_t at) {
  nt_frame *f = frame();
  nt_recent_item it = {.f = f, .seq = seq, .prev = prev, .at_ms = at};
  int kept = nt_recent_push(r, &it);
  nt_frame_unref(f);
  return kept;
}

static void test_chain_and_lookup(void **state) {
  (void)state;
  nt_recent_budget b = {.max = 1 << 20};
  nt_recent r;
  nt_recent_init(&r, 4, &b);
  size_t first = 99;
  assert_int_equal(nt_recent_after(&r, 5, &first), 0); /* empty */
  /* the room's sequence is the stream's: not contiguous */
  assert_int_equal(push(&r, 10, 7, 0), 1);
  assert_int_equal(push(&r, 12, 10, 0), 1);
  assert_int_equal(push(&r, 20, 12, 0), 1);
  assert_int_equal(nt_recent_len(&r), 3);
  assert_int_equal(nt_recent_after(&r, 7, &first), 1); /* the predecessor of the oldest */
  assert_int_equal(first, 0);
  assert_int_equal(nt_recent_after(&r, 10, &first), 1);
  assert_int_equal(first, 1);
  assert_int_equal(nt_recent_after(&r, 20, &first), 1); /* up to date: nothing to replay */
  assert_int_equal(first, 3);
  assert_int_equal(nt_recent_after(&r, 11, &first), 0); /* not a position of the room */
  assert_int_equal(nt_recent_after(&r, 6, &first), 0);  /* older than the ring */
  assert_int_equal(nt_recent_after(&r, 21, &first), 0); /* newer than what it delivered */
  assert_int_equal(nt_recent_after(&r, 0, &first), 0);  /* since 0: everything, not here */
  assert_int_equal(push(&r, 0, 20, 0), 0);               /* live-only: not in the chain */
  /* past the count the oldest leaves; 10 becomes the predecessor of the oldest */
  assert_int_equal(push(&r, 21, 20, 0), 1);
  assert_int_equal(push(&r, 25, 21, 0), 1);
  assert_int_equal(nt_recent_len(&r), 4);
  assert_int_equal(nt_recent_at(&r, 0)->seq, 12);
  assert_int_equal(nt_recent_after(&r, 10, &first), 1);
  assert_int_equal(first, 0);
  assert_int_equal(nt_recent_after(&r, 7, &first), 0);
  for (size_t i = 1; i < nt_recent_len(&r); i++) /* oldest first, across the wrap */
    assert_true(nt_recent_at(&r, i)->seq > nt_recent_at(&r, i - 1)->seq);
  /* a hole (the room delivered 30 after 25 without 26..29): only 30 is known now */
  assert_int_equal(push(&r, 30, 27, 0), 1);
  assert_int_equal(nt_recent_len(&r), 1);
  assert_int_equal(nt_recent_after(&r, 25, &first), 0);
  assert_int_equal(nt_recent_after(&r, 27, &first), 1);
  /* a sequence that goes back is a break too */
  assert_int_equal(push(&r, 28, 30, 0), 1);
  assert_int_equal(nt_recent_len(&r), 1);
  nt_recent_clear(&r);
  assert_int_equal(b.used, 0);
}

static void test_frames_referenced(void **state) {
  (void)state;
  nt_recent_budget b = {.max = 1 << 20};
  nt_recent r;
  nt_recent_init(&r, 2, &b);
  nt_frame *f = frame();
  nt_recent_item it = {.f = f, .seq = 1, .prev = 0};
  memcpy(it.skip, "conn-1", 7);
  assert_int_equal(nt_recent_push(&r, &it), 1);
  assert_int_equal(f->refs, 2);
  assert_string_equal(nt_recent_at(&r, 0)->skip, "conn-1");
  nt_recent_item link = {.f = NULL, .seq = 2, .prev = 1}; /* nothing to show, a link */
  assert_int_equal(nt_recent_push(&r, &link), 1);
  assert_int_equal(push(&r, 3, 2, 0), 1); /* 1 leaves: its frame reference with it */
  assert_int_equal(f->refs, 1);
  nt_recent_clear(&r);
  nt_frame_unref(f);
  assert_int_equal(b.used, 0);
}

/* One budget for all rooms of a node: a push that takes it past its bytes drops the
 * room's own oldest items; one that cannot fit at all leaves the room empty. */
static void test_budget(void **state) {
  (void)state;
  nt_recent_budget b = {.max = 0};
  nt_recent r1, r2;
  nt_recent_init(&r1, 1000, &b);
  nt_recent_init(&r2, 1000, &b);
  assert_int_equal(push(&r1, 1, 0, 0), 0); /* a budget of 0 keeps nothing */
  assert_int_equal(b.used, 0);
  assert_int_equal(nt_recent_len(&r1), 0);

  b.max = 4096;
  for (uint64_t s = 1; s <= 200; s++) push(&r1, s, s - 1, 0);
  assert_true(b.used <= b.max);
  size_t n1 = nt_recent_len(&r1);
  assert_true(n1 > 1 && n1 < 200);
  assert_int_equal(nt_recent_at(&r1, n1 - 1)->seq, 200); /* the newest stay */
  for (uint64_t s = 1; s <= 50; s++) push(&r2, s, s - 1, 0);
  assert_true(b.used <= b.max);
  assert_true(nt_recent_len(&r2) >= 1);
  assert_int_equal(nt_recent_len(&r1), n1); /* r2 paid with its own */
  nt_recent_clear(&r1);
  nt_recent_clear(&r2);
  assert_int_equal(b.used, 0);

  /* a room of max 0 keeps nothing whatever the budget */
  nt_recent r0;
  nt_recent_init(&r0, 0, &b);
  assert_int_equal(push(&r0, 1, 0, 0), 0);
  nt_recent_clear(&r0);
  assert_int_equal(b.used, 0);
}

static void test_expire(void **state) {
  (void)state;
  nt_recent_budget b = {.max = 1 << 20};
  nt_recent r;
  nt_recent_init(&r, 8, &b);
  push(&r, 1, 0, 100);
  push(&r, 2, 1, 200);
  push(&r, 3, 2, 300);
  nt_recent_expire(&r, 201);
  assert_int_equal(nt_recent_len(&r), 1);
  size_t first;
  assert_int_equal(nt_recent_after(&r, 1, &first), 0); /* 2 left with its age */
  assert_int_equal(nt_recent_after(&r, 2, &first), 1);
  nt_recent_expire(&r, 1000);
  assert_int_equal(nt_recent_len(&r), 0);
  nt_recent_clear(&r);
  assert_int_equal(b.used, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_and_lookup),
      cmocka_unit_test(test_frames_referenced),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_expire),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
