/* nt_subject: id validation and subject/key construction. */
#include "nt_subject.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nt_err.h"
#include "nt_utf8.h"

/* Code points beyond ASCII an id may not hold: C1 controls, Unicode White_Space and the
 * format characters (general category Cf: zero-width spaces and joiners, bidirectional
 * overrides such as U+202E, the BOM, tag characters), which would make two ids look the
 * same, or an id look like something else, in every log and user interface. Ranges are
 * inclusive and sorted (Unicode 15). */
static const uint32_t refused[][2] = {
    {0x0080, 0x00A0},   {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},
    {0x06DD, 0x06DD},   {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},
    {0x1680, 0x1680},   {0x180E, 0x180E},   {0x2000, 0x200F},   {0x2028, 0x202F},
    {0x205F, 0x2064},   {0x2066, 0x206F},   {0x3000, 0x3000},   {0xFEFF, 0xFEFF},
    {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD}, {0x13430, 0x1343F},
    {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
};

static int refused_cp(uint32_t cp) {
  size_t lo = 0, hi = sizeof refused / sizeof refused[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < refused[mid][0]) hi = mid;
    else if (cp > refused[mid][1]) lo = mid + 1;
    else return 1;
  }
  return 0;
}

int nt_id_check(const char *id, size_t len) {
  if (!id || len == 0 || len > NT_ID_MAX) return NT_EINVAL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c <= 0x20 || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '{' ||
        c == '}' || c == ':')
      return NT_EINVAL;
  }
  if (!nt_utf8_valid(id, len)) return NT_EINVAL;
  /* valid UTF-8 from here: decode each multi-byte sequence */
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)id[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    uint32_t cp = c & (0x3F >> (n - 1));
    for (size_t k = 1; k < n; k++) cp = cp << 6 | ((unsigned char)id[i + k] & 0x3F);
    if (refused_cp(cp)) return NT_EINVAL;
    i += n;
  }
  return 0;
}

int nt_id_valid(const char *id) { return id && nt_id_check(id, strlen(id)) == 0; }

static int build(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  if (n < 0) return NT_EINVAL;
  if ((size_t)n >= cap) return NT_ETOOLARGE;
  return n;
}

int nt_subject_room(char *out, size_t cap, const char *tenant, const char *room) {
  if (!nt_id_valid(tenant) || !nt_id_valid(room)) return NT_EINVAL;
  return build(out, cap, NT_SUBJECT_ROOM_PREFIX "%s.%s", tenant, room);
}

int nt_subject_user(char *out, size_t cap, const char *tenant, const char *user) {
  if (!nt_id_valid(tenant) || !nt_id_valid(user)) return NT_EINVAL;
  return build(out, cap, NT_SUBJECT_USER_PREFIX "%s.%s", tenant, user);
}

int nt_subject_user_all(char *out, size_t cap, const char *tenant) {
  if (!nt_id_valid(tenant)) return NT_EINVAL;
  return build(out, cap, NT_SUBJECT_USER_PREFIX "%s.*", tenant);
}

int nt_subject_node(char *out, size_t cap, const char *node_id) {
  if (!nt_id_valid(node_id)) return NT_EINVAL;
  return build(out, cap, "natter.node.%s", node_id);
}

int nt_subject_presence(char *out, size_t cap, const char *tenant, const char *room) {
  if (!nt_id_valid(tenant) || !nt_id_valid(room)) return NT_EINVAL;
  return build(out, cap, NT_SUBJECT_PRESENCE_PREFIX "%s.%s", tenant, room);
}

int nt_subject_event(char *out, size_t cap, const char *tenant, const char *kind) {
  if (!nt_id_valid(tenant) || !nt_id_valid(kind)) return NT_EINVAL;
  return build(out, cap, "natter.events.%s.%s", tenant, kind);
}

int nt_subject_route(char *out, size_t cap, const char *action) {
  if (!nt_id_valid(action)) return NT_EINVAL;
  return build(out, cap, "natter.route.%s", action);
}

int nt_subject_parse2(const char *subject, const char *prefix, char *tenant, char *id) {
  size_t pl = strlen(prefix);
  if (strncmp(subject, prefix, pl) != 0) return NT_EINVAL;
  const char *t = subject + pl;
  const char *dot = strchr(t, '.');
  if (!dot) return NT_EINVAL;
  size_t tl = (size_t)(dot - t), il = strlen(dot + 1);
  if (nt_id_check(t, tl) || nt_id_check(dot + 1, il)) return NT_EINVAL;
  memcpy(tenant, t, tl);
  tenant[tl] = '\0';
  memcpy(id, dot + 1, il + 1);
  return 0;
}

int nt_key_tenant(char *out, size_t cap, const char *prefix, const char *tenant,
                  const char *what, const char *id) {
  if (!nt_id_valid(tenant) || !nt_id_valid(what) || (id && !nt_id_valid(id))) return NT_EINVAL;
  if (!prefix) prefix = "natter:";
  if (id) return build(out, cap, "%s{%s}:%s:%s", prefix, tenant, what, id);
  return build(out, cap, "%s{%s}:%s", prefix, tenant, what);
}

int nt_key_node(char *out, size_t cap, const char *prefix, const char *what,
                const char *node_id) {
  if (!nt_id_valid(what) || !nt_id_valid(node_id)) return NT_EINVAL;
  if (!prefix) prefix = "natter:";
  return build(out, cap, "%snode:%s:%s", prefix, what, node_id);
}

int nt_key_prefix_check(const char *prefix) {
  if (!prefix) return 0;
  size_t n = strlen(prefix);
  if (n > 64) return NT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)prefix[i];
    if (c <= 0x20 || c >= 0x7f || c == '{' || c == '}') return NT_EINVAL;
  }
  return 0;
}

int nt_key_tenant_base(char *out, size_t cap, const char *prefix, const char *tenant) {
  if (!nt_id_valid(tenant)) return NT_EINVAL;
  if (!prefix) prefix = "natter:";
  return build(out, cap, "%s{%s}:", prefix, tenant);
}

int nt_key_conn(char *out, size_t cap, const char *prefix, const char *conn_id) {
  if (!nt_id_valid(conn_id)) return NT_EINVAL;
  if (!prefix) prefix = "natter:";
  return build(out, cap, "%sconn:%s", prefix, conn_id);
}

int nt_key_cluster(char *out, size_t cap, const char *prefix, const char *what) {
  if (!nt_id_valid(what)) return NT_EINVAL;
  if (!prefix) prefix = "natter:";
  return build(out, cap, "%scluster:{nodes}:%s", prefix, what);
}

/* Swaps prefix `from` of `subject` for `to`. */
static int swap_prefix(char *out, size_t cap, const char *subject, const char *from,
                       const char *to) {
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1];
  if (!subject || nt_subject_parse2(subject, from, tenant, room)) return NT_EINVAL;
  return build(out, cap, "%s%s.%s", to, tenant, room);
}

int nt_subject_live_of(char *out, size_t cap, const char *room_subject) {
  return swap_prefix(out, cap, room_subject, NT_SUBJECT_ROOM_PREFIX, NT_SUBJECT_LIVE_PREFIX);
}

int nt_subject_room_of(char *out, size_t cap, const char *live_subject) {
  return swap_prefix(out, cap, live_subject, NT_SUBJECT_LIVE_PREFIX, NT_SUBJECT_ROOM_PREFIX);
}

/* ---------------------------------------------------------------- sharding --- */

static uint64_t fnv1a64(uint64_t h, const char *s) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

/* Jump consistent hash: the bucket `key` falls in among n. */
static unsigned jump(uint64_t key, unsigned n) {
  int64_t b = -1, j = 0;
  while (j < (int64_t)n) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
  }
  return (unsigned)b;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

unsigned nt_shard_of_tenant(const char *tenant, unsigned n) {
  if (n <= 1 || !tenant) return 0;
  return jump(fnv1a64(FNV_OFFSET, tenant), n);
}

unsigned nt_shard_of_room(const char *tenant, const char *room, unsigned n) {
  if (n <= 1 || !tenant || !room) return 0;
  return jump(fnv1a64(fnv1a64(fnv1a64(FNV_OFFSET, tenant), "."), room), n);
}

int nt_subject_room_shard(const char *room_subject, unsigned n) {
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1];
  if (!room_subject || nt_subject_parse2(room_subject, NT_SUBJECT_ROOM_PREFIX, tenant, room))
    return NT_EINVAL;
  return (int)nt_shard_of_room(tenant, room, n);
}

int nt_subject_hist_of(char *out, size_t cap, unsigned part, const char *room_subject) {
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1];
  if (!room_subject || nt_subject_parse2(room_subject, NT_SUBJECT_ROOM_PREFIX, tenant, room))
    return NT_EINVAL;
  return build(out, cap, "%s%u.%s.%s", NT_SUBJECT_HIST_PREFIX, part, tenant, room);
}

int nt_subject_hist_filter(char *out, size_t cap, unsigned part) {
  return build(out, cap, "%s%u.>", NT_SUBJECT_HIST_PREFIX, part);
}
