/* nt_proxy: picks the client address from X-Forwarded-For behind trusted proxies. */
#include "nt_proxy.h"

#include <string.h>
#include <uv.h>

#define ADDR_MAX 46 /* INET6_ADDRSTRLEN */

/* Parses s[0..n) (trimmed) as an address into a (4 or 16 bytes); returns 4, 6 or 0. */
static int parse_addr(const char *s, size_t n, uint8_t *a) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  char buf[ADDR_MAX];
  if (n == 0 || n >= sizeof buf) return 0;
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (uv_inet_pton(AF_INET, buf, a) == 0) return 4;
  if (uv_inet_pton(AF_INET6, buf, a) == 0) return 6;
  return 0;
}

typedef struct cidr {
  int family;
  unsigned bits;
  uint8_t a[16];
} cidr;

/* One list item "addr" or "addr/bits"; returns 0 or -1. */
static int parse_cidr(const char *s, size_t n, cidr *out) {
  const char *slash = memchr(s, '/', n);
  size_t al = slash ? (size_t)(slash - s) : n;
  out->family = parse_addr(s, al, out->a);
  if (!out->family) return -1;
  unsigned max = out->family == 4 ? 32 : 128;
  out->bits = max;
  if (slash) {
    const char *d = slash + 1, *end = s + n;
    while (end > d && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if (d == end || end - d > 3) return -1;
    unsigned v = 0;
    for (; d < end; d++) {
      if (*d < '0' || *d > '9') return -1;
      v = v * 10 + (unsigned)(*d - '0');
    }
    if (v > max) return -1;
    out->bits = v;
  }
  return 0;
}

static int in_cidr(const cidr *c, int family, const uint8_t *a) {
  if (c->family != family) return 0;
  unsigned full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(c->a, a, full)) return 0;
  if (!rest) return 1;
  uint8_t m = (uint8_t)(0xff << (8 - rest));
  return (c->a[full] & m) == (a[full] & m);
}

/* Calls each list item; returns -1 at the first invalid one, else 1 when `a` (family
 * `family`, 0: none) is in the list, 0 when not. */
static int list_match(const char *list, int family, const uint8_t *a) {
  int hit = 0, items = 0;
  for (const char *p = list;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    cidr c;
    if (parse_cidr(p, n, &c)) return -1;
    items++;
    if (family && in_cidr(&c, family, a)) hit = 1;
    if (!comma) break;
    p = comma + 1;
  }
  return items ? hit : -1;
}

int nt_proxy_list_valid(const char *trusted) {
  return trusted && list_match(trusted, 0, NULL) >= 0;
}

int nt_proxy_client(const char *trusted, const uint8_t *peer, int peer_family,
                    const char *xff, const char **ip, size_t *len) {
  if (!xff) return 0;
  if (trusted && list_match(trusted, peer_family, peer) != 1) return 0;
  const char *end = xff + strlen(xff);
  for (;;) {
    const char *start = end;
    while (start > xff && start[-1] != ',') start--;
    uint8_t a[16];
    int fam = parse_addr(start, (size_t)(end - start), a);
    if (!fam) return 0; /* garbage where the client should be: believe the socket */
    if (!trusted || start == xff || list_match(trusted, fam, a) != 1) {
      while (*start == ' ' || *start == '\t') start++;
      const char *e = end;
      while (e > start && (e[-1] == ' ' || e[-1] == '\t')) e--;
      *ip = start;
      *len = (size_t)(e - start);
      return 1;
    }
    end = start - 1; /* the comma before this entry */
  }
}
