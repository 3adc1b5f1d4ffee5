/* test_hub: the node's local index — rooms, members with swap-remove back indexes, user
 * sets and connection ids. Connections are bare calloc'd structs (no sockets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_hub.h"

static nt_conn *mkconn(const char *tenant, const char *user, const char *id) {
  nt_conn *c = calloc(1, sizeof *c);
  assert_non_null(c);
  assert_int_equal(nt_identity_set(&c->ident, user, tenant), 0);
  snprintf(c->id, sizeof c->id, "%s", id);
  return c;
}

static void freeconn(nt_conn *c) {
  nt_identity_clear(&c->ident);
  if (c->rooms != &c->room0) free(c->rooms);
  free(c);
}

/* Every back index agrees with the room's member array, in both directions. */
static void check_invariants(nt_hub *h, nt_conn **conns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    nt_conn *c = conns[i];
    for (uint16_t k = 0; k < c->nrooms; k++) {
      nt_room *r = c->rooms[k].room;
      uint32_t idx = c->rooms[k].idx;
      if (idx >= r->n || r->members[idx] != c)
        fail_msg("conn %s: bad back index %u in %s", c->id, idx, r->name);
      assert_ptr_equal(nt_hub_room(h, r->subject), r);
      assert_ptr_equal(nt_hub_room(h, r->psubject), r);
      for (uint16_t j = k + 1; j < c->nrooms; j++)
        assert_ptr_not_equal(c->rooms[j].room, r); /* no duplicate membership */
    }
    if (c->uset) {
      assert_true(c->uidx < c->uset->n);
      assert_ptr_equal(c->uset->conns[c->uidx], c);
    }
  }
  /* every room member lists the room */
  size_t it = 0, rooms = 0;
  const char *k;
  void *v;
  while (nt_map_next(&h->rooms, &it, &k, &v)) {
    nt_room *r = v;
    if (strcmp(k, r->subject)) continue;
    rooms++;
    assert_true(r->n > 0); /* empty rooms are freed by the caller right away */
    for (uint32_t m = 0; m < r->n; m++) assert_true(nt_hub_is_member(r->members[m], r));
  }
  assert_int_equal(rooms, h->nrooms);
}

static void test_join_leave_flags(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *a = mkconn("acme", "alice", "ca"), *b = mkconn("acme", "bob", "cb");
  int created = -1, err = 0;
  nt_room *r = nt_hub_join(&h, a, "acme", "lobby", &created, &err);
  assert_non_null(r);
  assert_int_equal(created, 1);
  assert_string_equal(r->subject, "natter.room.acme.lobby");
  assert_string_equal(r->psubject, "natter.presence.acme.lobby");
  assert_string_equal(r->tenant, "acme");
  assert_string_equal(r->name, "lobby");
  assert_int_equal(r->n, 1);
  assert_int_equal(h.nrooms, 1);
  assert_ptr_equal(nt_hub_room(&h, "natter.room.acme.lobby"), r);
  assert_ptr_equal(nt_hub_room(&h, "natter.presence.acme.lobby"), r);
  assert_null(nt_hub_room(&h, "natter.room.acme.other"));

  nt_room *r2 = nt_hub_join(&h, b, "acme", "lobby", &created, &err);
  assert_ptr_equal(r2, r);
  assert_int_equal(created, 0);
  assert_int_equal(r->n, 2);

  /* double join: no-op returning the room */
  created = -1;
  assert_ptr_equal(nt_hub_join(&h, a, "acme", "lobby", &created, &err), r);
  assert_int_equal(created, 0);
  assert_int_equal(r->n, 2);
  assert_int_equal(a->nrooms, 1);

  assert_true(nt_hub_is_member(a, r));
  assert_ptr_equal(nt_hub_conn_room(a, "lobby"), r);
  assert_null(nt_hub_conn_room(a, "other"));
  nt_conn *both[] = {a, b};
  check_invariants(&h, both, 2);

  assert_int_equal(nt_hub_leave(&h, a, r), 0); /* b is still there */
  assert_false(nt_hub_is_member(a, r));
  assert_int_equal(a->nrooms, 0);
  assert_int_equal(r->n, 1);
  assert_int_equal(nt_hub_leave(&h, a, r), 0); /* not a member: nothing */
  check_invariants(&h, both, 2);
  assert_int_equal(nt_hub_leave(&h, b, r), 1); /* last one */
  assert_int_equal(r->n, 0);
  nt_hub_room_free(&h, r);
  assert_int_equal(h.nrooms, 0);
  assert_null(nt_hub_room(&h, "natter.room.acme.lobby"));
  assert_null(nt_hub_room(&h, "natter.presence.acme.lobby"));

  /* the room comes back as new */
  r = nt_hub_join(&h, b, "acme", "lobby", &created, &err);
  assert_int_equal(created, 1);
  assert_int_equal(nt_hub_leave(&h, b, r), 1);
  nt_hub_room_free(&h, r);

  nt_hub_free(&h);
  freeconn(a);
  freeconn(b);
}

static void test_join_bad_ids(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *a = mkconn("acme", "alice", "ca");
  const char *bad[] = {"", "a.b", "*", ">", "a b", "x:y", "{x}", "\xff"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int created = -1, err = 0;
    assert_null(nt_hub_join(&h, a, "acme", bad[i], &created, &err));
    assert_int_equal(err, NT_EINVAL);
    assert_int_equal(created, 0);
    err = 0;
    assert_null(nt_hub_join(&h, a, bad[i], "lobby", &created, &err));
    assert_int_equal(err, NT_EINVAL);
  }
  assert_int_equal(h.nrooms, 0);
  assert_int_equal(a->nrooms, 0);
  assert_int_equal(h.rooms.len, 0);
  nt_hub_free(&h);
  freeconn(a);
}

static void test_tenants_isolated(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *a = mkconn("t1", "u", "c1"), *b = mkconn("t2", "u", "c2");
  int c1, c2, err;
  nt_room *r1 = nt_hub_join(&h, a, "t1", "lobby", &c1, &err);
  nt_room *r2 = nt_hub_join(&h, b, "t2", "lobby", &c2, &err);
  assert_ptr_not_equal(r1, r2);
  assert_int_equal(c1, 1);
  assert_int_equal(c2, 1);
  assert_int_equal(r1->n, 1);
  assert_int_equal(r2->n, 1);
  assert_int_equal(h.nrooms, 2);
  int created;
  assert_int_equal(nt_hub_add_conn(&h, a, &created), 0);
  assert_int_equal(created, 1);
  assert_int_equal(nt_hub_add_conn(&h, b, &created), 0);
  assert_int_equal(created, 1); /* same user name, another tenant: another set */
  assert_ptr_not_equal(a->uset, b->uset);
  assert_int_equal(nt_hub_leave(&h, a, r1), 1);
  nt_hub_room_free(&h, r1);
  assert_int_equal(nt_hub_leave(&h, b, r2), 1);
  nt_hub_room_free(&h, r2);
  nt_userset *u = nt_hub_remove_conn(&h, a);
  assert_non_null(u);
  nt_hub_userset_free(&h, u);
  u = nt_hub_remove_conn(&h, b);
  assert_non_null(u);
  nt_hub_userset_free(&h, u);
  nt_hub_free(&h);
  freeconn(a);
  freeconn(b);
}

/* Several connections in several rooms, leaving in an order that moves members around:
 * every moved member's back index must follow. */
static void test_swap_remove_fixups(void **state) {
  (void)state;
  enum { NC = 12, NR = 5 };
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *cs[NC];
  nt_room *rooms[NR];
  char name[16], id[16];
  for (int i = 0; i < NC; i++) {
    snprintf(id, sizeof id, "c%02d", i);
    cs[i] = mkconn("acme", "u", id);
  }
  /* everyone in every room */
  for (int r = 0; r < NR; r++)
    for (int i = 0; i < NC; i++) {
      int created, err;
      snprintf(name, sizeof name, "room%d", r);
      rooms[r] = nt_hub_join(&h, cs[i], "acme", name, &created, &err);
      assert_non_null(rooms[r]);
      assert_int_equal(created, i == 0);
    }
  check_invariants(&h, cs, NC);
  /* leave from the front, the middle and the back, checking after each */
  int order[] = {0, 11, 5, 1, 10, 6, 2, 9, 3, 8, 4, 7};
  for (int step = 0; step < NC; step++) {
    nt_conn *c = cs[order[step]];
    for (int r = 0; r < NR; r++) {
      int rr = (r + step) % NR; /* vary the room order too */
      int last = nt_hub_leave(&h, c, rooms[rr]);
      assert_int_equal(last, step == NC - 1);
      assert_int_equal(rooms[rr]->n, (uint32_t)(NC - step - 1));
      if (last) nt_hub_room_free(&h, rooms[rr]);
      if (!last) check_invariants(&h, cs, NC);
    }
    assert_int_equal(c->nrooms, 0);
  }
  assert_int_equal(h.nrooms, 0);
  nt_hub_free(&h);
  for (int i = 0; i < NC; i++) freeconn(cs[i]);
}

/* Pseudo-random joins and leaves against a simple model. */
static void test_random_churn(void **state) {
  (void)state;
  enum { NC = 20, NR = 8, STEPS = 20000 };
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *cs[NC];
  char model[NC][NR] = {{0}};
  int count[NR] = {0};
  char id[16], name[16];
  for (int i = 0; i < NC; i++) {
    snprintf(id, sizeof id, "c%d", i);
    cs[i] = mkconn("t", "u", id);
  }
  uint32_t x = 7;
  for (int s = 0; s < STEPS; s++) {
    x = x * 1103515245u + 12345u;
    int ci = (int)((x >> 8) % NC), ri = (int)((x >> 16) % NR);
    nt_conn *c = cs[ci];
    snprintf(name, sizeof name, "r%d", ri);
    if (!model[ci][ri]) {
      int created, err;
      nt_room *r = nt_hub_join(&h, c, "t", name, &created, &err);
      assert_non_null(r);
      assert_int_equal(created, count[ri] == 0);
      model[ci][ri] = 1;
      count[ri]++;
      assert_int_equal(r->n, (uint32_t)count[ri]);
    } else {
      nt_room *r = nt_hub_conn_room(c, name);
      assert_non_null(r);
      int last = nt_hub_leave(&h, c, r);
      model[ci][ri] = 0;
      count[ri]--;
      assert_int_equal(last, count[ri] == 0);
      if (last) nt_hub_room_free(&h, r);
    }
    if (s % 97 == 0) check_invariants(&h, cs, NC);
  }
  check_invariants(&h, cs, NC);
  for (int i = 0; i < NC; i++)
    for (int r = 0; r < NR; r++) {
      snprintf(name, sizeof name, "r%d", r);
      assert_int_equal(nt_hub_conn_room(cs[i], name) != NULL, model[i][r]);
    }
  /* free with rooms still populated (node shutdown path) */
  nt_hub_free(&h);
  for (int i = 0; i < NC; i++) freeconn(cs[i]);
}

static void test_many_rooms_per_conn(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *c = mkconn("t", "u", "c");
  char name[16];
  for (int i = 0; i < 3000; i++) {
    int created, err;
    snprintf(name, sizeof name, "r%d", i);
    assert_non_null(nt_hub_join(&h, c, "t", name, &created, &err));
    assert_int_equal(created, 1);
  }
  assert_int_equal(c->nrooms, 3000);
  assert_true(c->caprooms >= 3000);
  assert_int_equal(h.nrooms, 3000);
  check_invariants(&h, &c, 1);
  while (c->nrooms) {
    nt_room *r = c->rooms[c->nrooms / 2].room;
    assert_int_equal(nt_hub_leave(&h, c, r), 1);
    nt_hub_room_free(&h, r);
  }
  assert_int_equal(h.nrooms, 0);
  nt_hub_free(&h);
  freeconn(c);
}

static void test_user_sets(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *a1 = mkconn("acme", "alice", "a1"), *a2 = mkconn("acme", "alice", "a2"),
          *a3 = mkconn("acme", "alice", "a3"), *b = mkconn("acme", "bob", "b1");
  int created = -1;
  assert_int_equal(nt_hub_add_conn(&h, a1, &created), 0);
  assert_int_equal(created, 1);
  nt_userset *u = a1->uset;
  assert_non_null(u);
  assert_string_equal(u->key, "acme.alice");
  char subject[NT_SUBJECT_MAX];
  assert_int_equal(nt_hub_user_subject(u, subject, sizeof subject), 22);
  assert_string_equal(subject, "natter.user.acme.alice");
  assert_null(nt_hub_userset(&h, "acme.alice")); /* by subject only */
  assert_ptr_equal(nt_hub_userset(&h, "natter.user.acme.alice"), u);
  assert_int_equal(nt_hub_add_conn(&h, a2, &created), 0);
  assert_int_equal(created, 0);
  assert_int_equal(nt_hub_add_conn(&h, a3, &created), 0);
  assert_int_equal(created, 0);
  assert_int_equal(nt_hub_add_conn(&h, b, &created), 0);
  assert_int_equal(created, 1);
  assert_ptr_equal(a2->uset, u);
  assert_int_equal(u->n, 3);
  assert_ptr_not_equal(b->uset, u);

  /* conn lookup */
  assert_ptr_equal(nt_hub_conn(&h, "a1"), a1);
  assert_ptr_equal(nt_hub_conn(&h, "a3"), a3);
  assert_ptr_equal(nt_hub_conn(&h, "b1"), b);
  assert_null(nt_hub_conn(&h, "zz"));

  nt_conn *all[] = {a1, a2, a3, b};
  check_invariants(&h, all, 4);
  /* remove the first: the last one moves into its slot */
  assert_null(nt_hub_remove_conn(&h, a1));
  assert_null(a1->uset);
  assert_null(nt_hub_conn(&h, "a1"));
  assert_int_equal(u->n, 2);
  check_invariants(&h, all, 4);
  assert_int_equal(a3->uidx, 0);
  assert_null(nt_hub_remove_conn(&h, a3));
  check_invariants(&h, all, 4);
  assert_int_equal(a2->uidx, 0);
  assert_ptr_equal(nt_hub_remove_conn(&h, a2), u); /* the last: set returned */
  assert_int_equal(u->n, 0);
  nt_hub_userset_free(&h, u);
  assert_null(nt_hub_userset(&h, "natter.user.acme.alice"));
  /* removing a connection that was never added, or twice, is harmless */
  assert_null(nt_hub_remove_conn(&h, a2));
  assert_ptr_equal(nt_hub_conn(&h, "b1"), b);

  /* a bad identity is refused and leaves nothing behind */
  nt_conn *bad = mkconn("ac.me", "x", "bad");
  assert_int_equal(nt_hub_add_conn(&h, bad, &created), NT_EINVAL);
  assert_int_equal(created, 0);
  assert_null(nt_hub_conn(&h, "bad"));
  assert_null(bad->uset);
  freeconn(bad);

  /* free with a user set still registered (b) */
  nt_hub_free(&h);
  freeconn(a1);
  freeconn(a2);
  freeconn(a3);
  freeconn(b);
}

/* Shutdown path: nt_hub_free with rooms and users left must free everything exactly once
 * (ASan/LeakSanitizer check this). Many rooms so both orders of a room's two map entries
 * (room subject, presence subject) occur in the iteration. */
static void test_free_populated(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *cs[4];
  char id[8], name[16];
  for (int i = 0; i < 4; i++) {
    snprintf(id, sizeof id, "c%d", i);
    cs[i] = mkconn("t", i % 2 ? "odd" : "even", id);
    int created;
    assert_int_equal(nt_hub_add_conn(&h, cs[i], &created), 0);
  }
  for (int r = 0; r < 200; r++)
    for (int i = 0; i < 4; i++) {
      int created, err;
      snprintf(name, sizeof name, "room-%d", r);
      assert_non_null(nt_hub_join(&h, cs[i], "t", name, &created, &err));
    }
  nt_hub_free(&h);
  assert_int_equal(h.rooms.len, 0);
  assert_int_equal(h.users.len, 0);
  assert_int_equal(h.conns.len, 0);
  for (int i = 0; i < 4; i++) freeconn(cs[i]);
}

/* Tenant records count the tenant's user sets (not connections); the last user set of a
 * tenant hands back the tenant's wildcard subscription for the caller to drop. */
static void test_tenant_user_counts(void **state) {
  (void)state;
  nt_hub h;
  nt_hub_init(&h);
  nt_conn *a1 = mkconn("acme", "alice", "a1"), *a2 = mkconn("acme", "alice", "a2");
  nt_conn *b = mkconn("acme", "bob", "b1"), *z = mkconn("zeta", "alice", "z1");
  int created;
  assert_int_equal(nt_hub_add_conn(&h, a1, &created), 0);
  assert_int_equal(nt_hub_add_conn(&h, a2, &created), 0);
  assert_int_equal(created, 0); /* alice's second connection: same set */
  assert_int_equal(nt_hub_add_conn(&h, b, &created), 0);
  assert_int_equal(nt_hub_add_conn(&h, z, &created), 0);
  nt_hub_tenant *acme = nt_hub_tenant_of(&h, a1->uset);
  assert_non_null(acme);
  assert_string_equal(acme->name, "acme");
  assert_int_equal(acme->nusers, 2);
  assert_int_equal(nt_hub_tenant_of(&h, z->uset)->nusers, 1);
  nt_bus_sub *fake = (nt_bus_sub *)&h; /* stands for a bus handle: only compared */
  acme->wild = fake;
  h.nwild = 1;
  assert_null(nt_hub_remove_conn(&h, a1)); /* alice still has a2 */
  nt_userset *u = nt_hub_remove_conn(&h, a2);
  assert_non_null(u);
  assert_null(nt_hub_userset_free(&h, u)); /* bob is left: the wildcard stays */
  assert_int_equal(acme->nusers, 1);
  u = nt_hub_remove_conn(&h, b);
  assert_ptr_equal(nt_hub_userset_free(&h, u), fake); /* acme's last user */
  assert_int_equal(h.nwild, 0);
  u = nt_hub_remove_conn(&h, z);
  assert_null(nt_hub_userset_free(&h, u)); /* zeta had no wildcard */
  nt_hub_free(&h);
  freeconn(a1);
  freeconn(a2);
  freeconn(b);
  freeconn(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_join_leave_flags),
      cmocka_unit_test(test_join_bad_ids),
      cmocka_unit_test(test_tenants_isolated),
      cmocka_unit_test(test_swap_remove_fixups),
      cmocka_unit_test(test_random_churn),
      cmocka_unit_test(test_many_rooms_per_conn),
      cmocka_unit_test(test_user_sets),
      cmocka_unit_test(test_free_populated),
      cmocka_unit_test(test_tenant_user_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
