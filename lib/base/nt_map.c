/* nt_map: linear-probing hash map with tombstones, FNV-1a-then-mix hashing.
 *
 * The table grows by 1.5x (not 2x) and a hash picks its slot by multiply-shift
 * (Lemire's fastrange: the high half of hash * cap), so the capacity need not be a power
 * of two. The node's biggest maps hold one entry per connection; doubling leaves them
 * between 37 % and 75 % full (16 B per slot: 21-43 B per entry), growing by half keeps
 * them between 50 % and 75 %. */
#include "nt_map.h"

#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

static char tomb;
#define NT_MAP_TOMB (&tomb)

uint64_t nt_hash(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static int key_eq(const nt_map_slot *s, const char *key, size_t klen) {
  /* the first byte rejects most probes without a call */
  return (klen == 0 || s->key[0] == key[0]) && strncmp(s->key, key, klen) == 0 &&
         s->key[klen] == '\0';
}

/* The home slot of hash `h` in a table of `cap` slots. */
static size_t home(uint64_t h, size_t cap) {
  return (size_t)(((unsigned __int128)h * cap) >> 64);
}

static size_t next(size_t i, size_t cap) { return i + 1 == cap ? 0 : i + 1; }

static nt_map_slot *find(const nt_map *m, const char *key, size_t klen, uint64_t h) {
  if (!m->cap) return NULL;
  for (size_t i = home(h, m->cap);; i = next(i, m->cap)) {
    nt_map_slot *s = &m->slots[i];
    if (!s->key) return NULL;
    if (s->key != NT_MAP_TOMB && key_eq(s, key, klen)) return s;
  }
}

void *nt_map_get(const nt_map *m, const char *key, size_t klen) {
  nt_map_slot *s = find(m, key, klen, nt_hash(key, klen));
  return s ? s->val : NULL;
}

static int grow(nt_map *m) {
  size_t ncap = m->cap ? m->cap + m->cap / 2 : 16;
  if (m->len * 2 < m->cap) ncap = m->cap; /* mostly tombstones: rehash in place size */
  nt_map_slot *ns = calloc(ncap, sizeof *ns);
  if (!ns) return NT_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    nt_map_slot *s = &m->slots[i];
    if (!s->key || s->key == NT_MAP_TOMB) continue;
    size_t j = home(nt_hash(s->key, strlen(s->key)), ncap);
    while (ns[j].key) j = next(j, ncap);
    ns[j] = *s;
  }
  free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  m->used = m->len;
  return 0;
}

int nt_map_put(nt_map *m, const char *key, size_t klen, void *val, void **old) {
  uint64_t h = nt_hash(key, klen);
  nt_map_slot *s = find(m, key, klen, h);
  if (s) {
    if (old) *old = s->val;
    s->val = val;
    return 0;
  }
  if ((m->used + 1) * 4 >= m->cap * 3 && grow(m)) return NT_ENOMEM;
  char *k = (char *)key;
  if (!m->borrow_keys) {
    if (!(k = malloc(klen + 1))) return NT_ENOMEM;
    memcpy(k, key, klen);
    k[klen] = '\0';
  }
  size_t i = home(h, m->cap);
  while (m->slots[i].key && m->slots[i].key != NT_MAP_TOMB) i = next(i, m->cap);
  if (!m->slots[i].key) m->used++;
  m->slots[i] = (nt_map_slot){k, val};
  m->len++;
  if (old) *old = NULL;
  return 0;
}

int nt_map_move(nt_map *m, const char *key, size_t klen, const char *moved_key, void *val) {
  nt_map_slot *s = find(m, key, klen, nt_hash(key, klen));
  if (!s) return NT_ENOTFOUND;
  if (m->borrow_keys) s->key = (char *)moved_key;
  s->val = val;
  return 0;
}

void *nt_map_del(nt_map *m, const char *key, size_t klen) {
  nt_map_slot *s = find(m, key, klen, nt_hash(key, klen));
  if (!s) return NULL;
  void *v = s->val;
  if (!m->borrow_keys) free(s->key);
  s->key = NT_MAP_TOMB;
  s->val = NULL;
  m->len--;
  return v;
}

int nt_map_next(const nt_map *m, size_t *it, const char **key, void **val) {
  for (; *it < m->cap; (*it)++) {
    nt_map_slot *s = &m->slots[*it];
    if (s->key && s->key != NT_MAP_TOMB) {
      *key = s->key;
      *val = s->val;
      (*it)++;
      return 1;
    }
  }
  return 0;
}

void nt_map_clear(nt_map *m) {
  int borrowed = m->borrow_keys;
  for (size_t i = 0; !borrowed && i < m->cap; i++)
    if (m->slots[i].key && m->slots[i].key != NT_MAP_TOMB) free(m->slots[i].key);
  free(m->slots);
  *m = (nt_map)NT_MAP_INIT;
  m->borrow_keys = borrowed;
}

/* ---------------------------------------------------------------- interning */

typedef struct interned {
  size_t refs;
  char s[]; /* at offset 8 */
} interned;

const char *nt_intern(nt_map *m, const char *s, size_t len) {
  interned *n = nt_map_get(m, s, len);
  if (!n) {
    if (!(n = malloc(sizeof *n + len + 1))) return NULL;
    n->refs = 0;
    memcpy(n->s, s, len);
    n->s[len] = '\0';
    if (nt_map_put(m, n->s, len, n, NULL)) {
      free(n);
      return NULL;
    }
  }
  n->refs++;
  return n->s;
}

void nt_unintern(nt_map *m, const char *s) {
  size_t len = strlen(s);
  interned *n = nt_map_get(m, s, len);
  if (n && --n->refs == 0) {
    nt_map_del(m, n->s, len);
    free(n);
  }
}

void nt_intern_clear(nt_map *m) {
  size_t it = 0;
  const char *k;
  void *v;
  while (nt_map_next(m, &it, &k, &v)) free(v);
  nt_map_clear(m);
}
