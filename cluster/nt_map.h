/* nt_map: string-keyed open-addressing hash map (keys copied, values borrowed). */
#ifndef NT_MAP_H
#define NT_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct nt_map_slot {
  char *key;      /* NULL: empty; NT_MAP_TOMB: deleted */
  uint64_t hash;
  void *val;
} nt_map_slot;

typedef struct nt_map {
  nt_map_slot *slots;
  size_t cap;     /* power of two, 0 before first insert */
  size_t len;     /* live entries */
  size_t used;    /* live + tombstones */
} nt_map;

#define NT_MAP_INIT {NULL, 0, 0, 0}

/* Returns the value for `key` (length `klen`), or NULL. */
void *nt_map_get(const nt_map *m, const char *key, size_t klen);

/* Inserts or replaces. The key is copied. Returns 0 or NT_ENOMEM. When `old` is non-NULL
 * it receives the replaced value (or NULL). */
int nt_map_put(nt_map *m, const char *key, size_t klen, void *val, void **old);

/* Removes `key`; returns its value or NULL when absent. */
void *nt_map_del(nt_map *m, const char *key, size_t klen);

/* Iterates: start with *it = 0; returns 1 and sets key/val while entries remain.
 * The map must not be modified during iteration, except via nt_map_del of the
 * current key. */
int nt_map_next(const nt_map *m, size_t *it, const char **key, void **val);

/* Frees the table and keys (not the values). The map is empty and reusable after. */
void nt_map_clear(nt_map *m);

uint64_t nt_hash(const void *data, size_t len);

#endif
