/* test_map: the string-keyed open-addressing map — put/get/del, growth, tombstones,
 * iteration, moving an entry, interning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_map.h"

#define V(i) ((void *)(uintptr_t)(i))

static int key_of(char *buf, size_t cap, size_t i) { return snprintf(buf, cap, "key-%zu", i); }

static void test_empty(void **state) {
  (void)state;
  nt_map m = NT_MAP_INIT;
  assert_null(nt_map_get(&m, "a", 1));
  assert_null(nt_map_del(&m, "a", 1));
  size_t it = 0;
  const char *k;
  void *v;
  assert_int_equal(nt_map_next(&m, &it, &k, &v), 0);
  nt_map_clear(&m);
  nt_map_clear(&m); /* idempotent */
  assert_int_equal(m.len, 0);
}

static void test_put_get_del(void **state) {
  (void)state;
  nt_map m = NT_MAP_INIT;
  void *old = V(99);
  assert_int_equal(nt_map_put(&m, "alpha", 5, V(1), &old), 0);
  assert_null(old);
  assert_int_equal(nt_map_put(&m, "beta", 4, V(2), NULL), 0);
  assert_int_equal(m.len, 2);
  assert_ptr_equal(nt_map_get(&m, "alpha", 5), V(1));
  assert_ptr_equal(nt_map_get(&m, "beta", 4), V(2));
  assert_null(nt_map_get(&m, "gamma", 5));
  /* klen, not NUL, delimits the key: a prefix or a longer buffer is another key */
  assert_null(nt_map_get(&m, "alph", 4));
  assert_null(nt_map_get(&m, "alphabet", 8));
  assert_ptr_equal(nt_map_get(&m, "alphabet", 5), V(1));
  /* the key is copied */
  char key[8] = "delta";
  assert_int_equal(nt_map_put(&m, key, 5, V(4), NULL), 0);
  memset(key, 'X', 5);
  assert_ptr_equal(nt_map_get(&m, "delta", 5), V(4));
  /* the empty key is a key like any other */
  assert_int_equal(nt_map_put(&m, "", 0, V(5), NULL), 0);
  assert_ptr_equal(nt_map_get(&m, "", 0), V(5));

  assert_ptr_equal(nt_map_del(&m, "alpha", 5), V(1));
  assert_null(nt_map_get(&m, "alpha", 5));
  assert_null(nt_map_del(&m, "alpha", 5));
  assert_int_equal(m.len, 3);
  assert_ptr_equal(nt_map_get(&m, "beta", 4), V(2));
  nt_map_clear(&m);
  assert_int_equal(m.len, 0);
  assert_null(nt_map_get(&m, "beta", 4));
  /* reusable after clear */
  assert_int_equal(nt_map_put(&m, "beta", 4, V(7), NULL), 0);
  assert_ptr_equal(nt_map_get(&m, "beta", 4), V(7));
  nt_map_clear(&m);
}

static void test_replace(void **state) {
  (void)state;
  nt_map m = NT_MAP_INIT;
  void *old = NULL;
  assert_int_equal(nt_map_put(&m, "k", 1, V(1), NULL), 0);
  assert_int_equal(nt_map_put(&m, "k", 1, V(2), &old), 0);
  assert_ptr_equal(old, V(1));
  assert_int_equal(m.len, 1);
  assert_ptr_equal(nt_map_get(&m, "k", 1), V(2));
  /* a NULL value is stored (get cannot tell it from absent, del can be used to check) */
  assert_int_equal(nt_map_put(&m, "k", 1, NULL, &old), 0);
  assert_ptr_equal(old, V(2));
  assert_int_equal(m.len, 1);
  nt_map_clear(&m);
}

static void test_growth_100k(void **state) {
  (void)state;
  nt_map m = NT_MAP_INIT;
  char k[32];
  const size_t N = 100000;
  for (size_t i = 0; i < N; i++) {
    int n = key_of(k, sizeof k, i);
    assert_int_equal(nt_map_put(&m, k, (size_t)n, V(i + 1), NULL), 0);
  }
  assert_int_equal(m.len, N);
  assert_true(m.cap >= N);
  assert_true(m.used * 4 < m.cap * 3); /* load factor below 3/4 */
  assert_true(m.len * 2 >= m.cap);     /* and at least 1/2: growth by 1.5x, not 2x */
  for (size_t i = 0; i < N; i++) {
    int n = key_of(k, sizeof k, i);
    if (nt_map_get(&m, k, (size_t)n) != V(i + 1)) fail_msg("lost key %zu", i);
  }
  assert_null(nt_map_get(&m, "key-100000", 10));
  /* iteration sees each key exactly once */
  char *seen = calloc(N, 1);
  assert_non_null(seen);
  size_t it = 0, count = 0;
  const char *key;
  void *v;
  while (nt_map_next(&m, &it, &key, &v)) {
    size_t i = (size_t)(uintptr_t)v - 1;
    assert_true(i < N);
    assert_int_equal(seen[i], 0);
    seen[i] = 1;
    key_of(k, sizeof k, i);
    assert_string_equal(key, k);
    count++;
  }
  assert_int_equal(count, N);
  free(seen);
  /* delete every other key */
  for (size_t i = 0; i < N; i += 2) {
    int n = key_of(k, sizeof k, i);
    assert_ptr_equal(nt_map_del(&m, k, (size_t)n), V(i + 1));
  }
  assert_int_equal(m.len, N / 2);
  for (size_t i = 0; i < N; i++) {
    int n = key_of(k, sizeof k, i);
    void *want = i % 2 ? V(i + 1) : NULL;
    if (nt_map_get(&m, k, (size_t)n) != want) fail_msg("key %zu wrong after deletes", i);
  }
  nt_map_clear(&m);
}

/* Insert/delete churn on a small key set: tombstones are reused or purged, so the table
 * does not grow without bound and lookups keep terminating. */
static void test_tombstone_reuse(void **state) {
  (void)state;
  nt_map m = NT_MAP_INIT;
  char k[32];
  for (size_t i = 0; i < 8; i++) {
    int n = key_of(k, sizeof k, i);
    assert_int_equal(nt_map_put(&m, k, (size_t)n, V(i + 1), NULL), 0);
  }
  size_t cap0 = m.cap;
  /* delete and re-insert the same key: its tombstone (or an empty slot) is reused */
  for (int round = 0; round < 1000; round++) {
    int n = key_of(k, sizeof k, 3);
    assert_ptr_equal(nt_map_del(&m, k, (size_t)n), round ? V(1000) : V(4));
    assert_null(nt_map_get(&m, k, (size_t)n));
    assert_int_equal(nt_map_put(&m, k, (size_t)n, V(1000), NULL), 0);
  }
  assert_int_equal(m.len, 8);
  assert_int_equal(m.cap, cap0);
  /* a stream of ever-new keys with at most 8 alive: the table stays small */
  for (size_t i = 8; i < 100000; i++) {
    int n = key_of(k, sizeof k, i);
    assert_int_equal(nt_map_put(&m, k, (size_t)n, V(i + 1), NULL), 0);
    n = key_of(k, sizeof k, i - 8); /* drop the oldest */
    assert_ptr_equal(nt_map_del(&m, k, (size_t)n), i - 8 == 3 ? V(1000) : V(i - 8 + 1));
  }
  assert_int_equal(m.len, 8);
  assert_true(m.cap <= 64);
  assert_true(m.used < m.cap); /* at least one empty slot: lookups of absent keys end */
  assert_null(nt_map_get(&m, "absent", 6));
  for (size_t i = 100000 - 8; i < 100000; i++) {
    int n = key_of(k, sizeof k, i);
    assert_ptr_equal(nt_map_get(&m, k, (size_t)n), V(i + 1));
  }
  /* a key whose probe chain passes over a tombstone is still found */
  nt_map_clear(&m);
  for (size_t i = 0; i < 10; i++) {
    int n = key_of(k, sizeof k, i);
    nt_map_put(&m, k, (size_t)n, V(i + 1), NULL);
  }
  for (size_t i = 0; i < 10; i += 3) {
    int n = key_of(k, sizeof k, i);
    nt_map_del(&m, k, (size_t)n);
  }
  for (size_t i = 0; i < 10; i++) {
    int n = key_of(k, sizeof k, i);
    assert_ptr_equal(nt_map_get(&m, k, (size_t)n), i % 3 ? V(i + 1) : NULL);
  }
  /* re-putting a live key after a tombstone earlier in its chain does not duplicate it */
  for (size_t i = 1; i < 10; i += 3) {
    int n = key_of(k, sizeof k, i);
    void *old = NULL;
    nt_map_put(&m, k, (size_t)n, V(500 + i), &old);
    assert_ptr_equal(old, V(i + 1));
  }
  size_t it = 0, count = 0;
  const char *key;
  void *v;
  while (nt_map_next(&m, &it, &key, &v)) count++;
  assert_int_equal(count, m.len);
  assert_int_equal(m.len, 6);
  nt_map_clear(&m);
}

static void test_iterate_delete_current(void **state) {
  (void)state;
  nt_map m = NT_MAP_INIT;
  char k[32];
  const size_t N = 1000;
  for (size_t i = 0; i < N; i++) {
    int n = key_of(k, sizeof k, i);
    nt_map_put(&m, k, (size_t)n, V(i + 1), NULL);
  }
  /* delete the odd ones while iterating */
  size_t it = 0, visited = 0;
  const char *key;
  void *v;
  while (nt_map_next(&m, &it, &key, &v)) {
    visited++;
    size_t i = (size_t)(uintptr_t)v - 1;
    if (i % 2) {
      char copy[32];
      snprintf(copy, sizeof copy, "%s", key); /* key is freed by del */
      assert_ptr_equal(nt_map_del(&m, copy, strlen(copy)), v);
    }
  }
  assert_int_equal(visited, N);
  assert_int_equal(m.len, N / 2);
  /* then delete everything while iterating */
  it = 0;
  visited = 0;
  while (nt_map_next(&m, &it, &key, &v)) {
    visited++;
    size_t i = (size_t)(uintptr_t)v - 1;
    assert_int_equal(i % 2, 0);
    char copy[32];
    snprintf(copy, sizeof copy, "%s", key);
    nt_map_del(&m, copy, strlen(copy));
  }
  assert_int_equal(visited, N / 2);
  assert_int_equal(m.len, 0);
  it = 0;
  assert_int_equal(nt_map_next(&m, &it, &key, &v), 0);
  nt_map_clear(&m);
}

static void test_hash(void **state) {
  (void)state;
  assert_int_equal(nt_hash("abc", 3), nt_hash("abcd", 3));
  assert_int_not_equal(nt_hash("abc", 3), nt_hash("abd", 3));
  assert_int_not_equal(nt_hash("", 0), nt_hash("\0", 1));
  /* the low bits (used for the slot) spread sequential keys */
  size_t buckets[16] = {0};
  char k[32];
  for (size_t i = 0; i < 16000; i++) {
    int n = key_of(k, sizeof k, i);
    buckets[nt_hash(k, (size_t)n) & 15]++;
  }
  for (int b = 0; b < 16; b++) assert_in_range(buckets[b], 800, 1200);
}

/* An entry whose memory moved keeps its place: found by key, at the new address. */
static void test_move(void **state) {
  (void)state;
  nt_map m;
  nt_map_init_borrowed(&m);
  char *a = strdup("conn-1"), *b = strdup("conn-1");
  assert_int_equal(nt_map_put(&m, a, 6, V(1), NULL), 0);
  assert_int_equal(nt_map_move(&m, "conn-1", 6, b, V(2)), 0);
  memset(a, 'x', 6); /* the old key is gone: the map must not read it any more */
  free(a);
  assert_ptr_equal(nt_map_get(&m, "conn-1", 6), V(2));
  size_t it = 0;
  const char *k;
  void *v;
  assert_true(nt_map_next(&m, &it, &k, &v));
  assert_ptr_equal(k, b);
  assert_int_equal(nt_map_move(&m, "conn-2", 6, b, V(3)), NT_ENOTFOUND);
  assert_ptr_equal(nt_map_del(&m, "conn-1", 6), V(2));
  nt_map_clear(&m);
  free(b);
}

/* One copy per distinct string, shared until its last reference goes; even addresses. */
static void test_intern(void **state) {
  (void)state;
  nt_map m;
  nt_map_init_borrowed(&m);
  const char *ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
  char copy[128];
  snprintf(copy, sizeof copy, "%s", ua);
  const char *x = nt_intern(&m, ua, strlen(ua));
  const char *y = nt_intern(&m, copy, strlen(copy));
  const char *z = nt_intern(&m, "curl/8.0 and more", 8); /* a prefix: "curl/8.0" */
  assert_non_null(x);
  assert_ptr_equal(x, y);
  assert_ptr_not_equal(x, ua);
  assert_string_equal(z, "curl/8.0");
  assert_int_equal((uintptr_t)x & 1, 0);
  assert_int_equal((uintptr_t)z & 1, 0);
  assert_int_equal(m.len, 2);
  nt_unintern(&m, x);
  assert_non_null(nt_map_get(&m, ua, strlen(ua))); /* y still holds it */
  nt_unintern(&m, y);
  assert_null(nt_map_get(&m, ua, strlen(ua)));
  assert_int_equal(m.len, 1);
  const char *e = nt_intern(&m, "", 0);
  assert_string_equal(e, "");
  assert_int_equal(m.len, 2);
  nt_intern_clear(&m); /* frees z and e with references left (ASan: no leak) */
  assert_int_equal(m.len, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_put_get_del),
      cmocka_unit_test(test_replace),
      cmocka_unit_test(test_growth_100k),
      cmocka_unit_test(test_tombstone_reuse),
      cmocka_unit_test(test_iterate_delete_current),
      cmocka_unit_test(test_hash),
      cmocka_unit_test(test_move),
      cmocka_unit_test(test_intern),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
