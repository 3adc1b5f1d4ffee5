/* nt_identity: the identity a connection carries — user, tenant, token expiry and the
 * rooms its token allows. Filled by the JWT verifier (node/chat/nt_auth) or by code that
 * builds identities without a token; embedded in every connection (node/net/nt_conn).
 * Plain data with its own allocation; not thread-safe (one owner). */
#ifndef NT_IDENTITY_H
#define NT_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

/* Upper bound on the number of patterns in a `rooms` claim ("invalid_rooms" beyond). */
#define NT_IDENTITY_ROOMS_MAX 1024

/* The identity a verified token carries. `user` and `tenant` are NULL until set (verify,
 * nt_identity_set), then two exact-length strings in one allocation. `rooms` is NULL when
 * the token has no `rooms` claim (any room of the tenant); otherwise `nrooms` patterns
 * (exact names, or prefixes ending in '*'). Everything is owned by the identity: release
 * with nt_identity_clear(). */
typedef struct nt_identity {
  char *user;
  char *tenant;               /* points into the allocation of `user` */
  int64_t exp;
  char **rooms;
  size_t nrooms;
} nt_identity;

/* Replaces id->rooms with a copy of `rooms` (`n` patterns, each checked as in a token's
 * `rooms` claim); `rooms` == NULL means "no claim" (any room). For code that builds
 * identities without a token (tests, single-node tools). Returns 0, NT_EINVAL (bad pattern,
 * id->rooms unchanged) or NT_ENOMEM. */
int nt_identity_set_rooms(nt_identity *id, const char *const *rooms, size_t n);

/* Sets user and tenant (copied, not checked: nt_auth_verify checks what a token says),
 * replacing earlier ones. Returns 0, NT_EINVAL (NULL argument) or NT_ENOMEM (id unchanged). */
int nt_identity_set(nt_identity *id, const char *user, const char *tenant);

/* Frees user, tenant and the rooms list (all become NULL); the identity may be reused
 * afterwards. */
void nt_identity_clear(nt_identity *id);

/* Returns 1 when `room` may be joined under `id`'s rooms claim, else 0. A pattern is an
 * exact room name, or a prefix followed by '*' ("team-*"; "*" alone matches every room).
 * An invalid room id (nt_id_valid) is never allowed. */
int nt_identity_room_allowed(const nt_identity *id, const char *room);

/* ---- for the token parser (nt_auth.c) ---- */

/* 1 when `p` (`len` bytes) is a valid rooms pattern: an id, or an id prefix ending in '*'. */
int nt_identity_pattern_ok(const char *p, size_t len);
/* One allocation for `n` room patterns of `str_bytes` bytes in all (NULs included): the
 * pointer array, then the strings, whose start is written to *strings. NULL: no memory. */
char **nt_identity_rooms_alloc(size_t n, size_t str_bytes, char **strings);
/* Copies pattern `p` into slot `i` at `at`; returns where the next string goes. */
char *nt_identity_rooms_put(char **r, size_t i, char *at, const char *p, size_t len);

#endif
