/* nt_identity: who a connection is (user, tenant, allowed rooms) — set, clear, match. */
#include "nt_identity.h"

#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_subject.h"

int nt_identity_pattern_ok(const char *p, size_t len) {
  if (len > 0 && p[len - 1] == '*') {
    if (len == 1) return 1;
    len--;
  }
  return nt_id_check(p, len) == 0;
}

/* rooms is one allocation: the pointer array followed by the strings, so that clearing
 * an identity is one free() and copying it out of the token is one malloc(). The array
 * always has a slot, so "empty claim" (nothing allowed) stays distinct from NULL. */
char **nt_identity_rooms_alloc(size_t n, size_t str_bytes, char **strings) {
  size_t slots = n ? n : 1;
  char **r = malloc(slots * sizeof(char *) + str_bytes);
  if (!r) return NULL;
  r[0] = NULL;
  *strings = (char *)(r + slots);
  return r;
}

char *nt_identity_rooms_put(char **r, size_t i, char *at, const char *p, size_t len) {
  memcpy(at, p, len);
  at[len] = '\0';
  r[i] = at;
  return at + len + 1;
}


int nt_identity_set_rooms(nt_identity *id, const char *const *rooms, size_t n) {
  if (!id || (!rooms && n) || n > NT_IDENTITY_ROOMS_MAX) return NT_EINVAL;
  char **r = NULL;
  if (rooms) {
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
      if (!rooms[i] || !nt_identity_pattern_ok(rooms[i], strlen(rooms[i]))) return NT_EINVAL;
      bytes += strlen(rooms[i]) + 1;
    }
    char *at;
    r = nt_identity_rooms_alloc(n, bytes, &at);
    if (!r) return NT_ENOMEM;
    for (size_t i = 0; i < n; i++) at = nt_identity_rooms_put(r, i, at, rooms[i], strlen(rooms[i]));
  }
  free(id->rooms);
  id->rooms = r;
  id->nrooms = rooms ? n : 0;
  return 0;
}

int nt_identity_set(nt_identity *id, const char *user, const char *tenant) {
  if (!id || !user || !tenant) return NT_EINVAL;
  size_t ul = strlen(user), tl = strlen(tenant);
  char *s = malloc(ul + 1 + tl + 1);
  if (!s) return NT_ENOMEM;
  memcpy(s, user, ul + 1);
  memcpy(s + ul + 1, tenant, tl + 1);
  free(id->user);
  id->user = s;
  id->tenant = s + ul + 1;
  return 0;
}

void nt_identity_clear(nt_identity *id) {
  if (!id) return;
  free(id->user);
  id->user = id->tenant = NULL;
  free(id->rooms);
  id->rooms = NULL;
  id->nrooms = 0;
}

int nt_identity_room_allowed(const nt_identity *id, const char *room) {
  if (!id || !room) return 0;
  size_t rlen = strlen(room);
  if (nt_id_check(room, rlen) != 0) return 0;
  if (!id->rooms) return 1;
  for (size_t i = 0; i < id->nrooms; i++) {
    const char *p = id->rooms[i];
    size_t plen = strlen(p);
    if (plen > 0 && p[plen - 1] == '*') {
      if (rlen >= plen - 1 && memcmp(room, p, plen - 1) == 0) return 1;
    } else if (plen == rlen && memcmp(room, p, rlen) == 0) {
      return 1;
    }
  }
  return 0;
}
