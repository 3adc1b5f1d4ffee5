/* nt_map: string-keyed open-addressing hash map (keys copied or borrowed, values borrowed). */
#ifndef NT_MAP_H
#define NT_MAP_H

#include <stddef.h>
#include <stdint.h>

/* 16 bytes: the hash is not stored (recomputed from the key when the table grows), which
 * keeps a map of many small entries (connections, users) a third smaller. */
typedef struct nt_map_slot {
  char *key;      /* NULL: empty; NT_MAP_TOMB: deleted */
  void *val;
} nt_map_slot;

typedef struct nt_map {
  nt_map_slot *slots;
  size_t cap;     /* slots (grows by 1.5x), 0 before first insert */
  size_t len;     /* live entries */
  size_t used;    /* live + tombstones */
  int borrow_keys; /* keys are not copied (nt_map_init_borrowed) */
} nt_map;

#define NT_MAP_INIT {NULL, 0, 0, 0, 0}

/* An empty map that does not copy keys: the key given to nt_map_put (NUL-terminated at
 * its length) must stay valid and unchanged until its entry is deleted or the map cleared — typically it points into the
 * value (a connection's id, a room's subject), which saves a malloc per entry. */
static inline void nt_map_init_borrowed(nt_map *m) {
  *m = (nt_map)NT_MAP_INIT;
  m->borrow_keys = 1;
}

/* Returns the value for `key` (length `klen`), or NULL. */
void *nt_map_get(const nt_map *m, const char *key, size_t klen);

/* Inserts or replaces. The key is copied (borrowed in a borrowed-key map; on replace the
 * stored key is kept). Returns 0 or NT_ENOMEM. When `old` is non-NULL
 * it receives the replaced value (or NULL). */
int nt_map_put(nt_map *m, const char *key, size_t klen, void *val, void **old);

/* Borrowed-key map: the entry of `key` moved — its key now lives at `moved_key` (same
 * bytes) and its value is `val`. No allocation, so no failure: 0, or NT_ENOTFOUND. */
int nt_map_move(nt_map *m, const char *key, size_t klen, const char *moved_key, void *val);

/* Removes `key`; returns its value or NULL when absent. */
void *nt_map_del(nt_map *m, const char *key, size_t klen);

/* Iterates: start with *it = 0; returns 1 and sets key/val while entries remain.
 * The map must not be modified during iteration, except via nt_map_del (it never moves
 * entries). */
int nt_map_next(const nt_map *m, size_t *it, const char **key, void **val);

/* Frees the table and copied keys (not the values). The map is empty and reusable after,
 * and keeps its key mode. */
void nt_map_clear(nt_map *m);

uint64_t nt_hash(const void *data, size_t len);

/* Interning over a borrowed-key map `m` that holds nothing else: one reference-counted
 * copy of each distinct string (many connections, a few dozen tenants, rooms or
 * User-Agents). nt_intern returns the shared copy of s[0..len) with one more reference,
 * or NULL when memory is short; nt_unintern drops one reference of a string nt_intern
 * returned and frees it with the last. A copy starts 8 bytes into its own malloc'd block,
 * so its address is even: callers may keep a flag in the low bit. nt_intern_clear frees
 * every copy, whatever its count. Not thread-safe, like the map. */
const char *nt_intern(nt_map *m, const char *s, size_t len);
void nt_unintern(nt_map *m, const char *s);
void nt_intern_clear(nt_map *m);

#endif
