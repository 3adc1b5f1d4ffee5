/* nt_url: server URL parsing for configuration checks, and credential redaction. */
#include "nt_url.h"

#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

static const char *rfind(const char *s, const char *e, char ch) {
  for (const char *p = e; p > s; p--)
    if (p[-1] == ch) return p - 1;
  return NULL;
}

static int host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

static int fail(const char **why, const char *reason) {
  if (why) *why = reason;
  return NT_EINVAL;
}

int nt_url_parse(const char *s, size_t len, nt_url *u, const char **why) {
  if (!s || !u) return fail(why, "no host");
  const char *p = s, *e = s + len;
  nt_url r = {0};
  const char *sep = NULL;
  for (const char *q = s; q + 3 <= e; q++)
    if (q[0] == ':' && q[1] == '/' && q[2] == '/') { sep = q; break; }
  if (sep) {
    r.scheme = s;
    r.scheme_len = (size_t)(sep - s);
    p = sep + 3;
  }
  /* The last '@' ends the userinfo: a password may hold '@', '/' or ':' unencoded. */
  const char *at = rfind(p, e, '@');
  if (at) {
    r.userinfo = p;
    r.userinfo_len = (size_t)(at - p);
    p = at + 1;
  }
  const char *hend;
  if (p < e && *p == '[') {
    const char *rb = memchr(p, ']', (size_t)(e - p));
    if (!rb) return fail(why, "unclosed IPv6 bracket");
    r.host = p + 1;
    r.host_len = (size_t)(rb - p - 1);
    for (size_t i = 0; i < r.host_len; i++) {
      char c = r.host[i];
      if (!(c == ':' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
            (c >= 'A' && c <= 'F')))
        return fail(why, "bad host");
    }
    hend = rb + 1;
  } else {
    hend = p;
    while (hend < e && host_char(*hend)) hend++;
    r.host = p;
    r.host_len = (size_t)(hend - p);
    if (hend < e && *hend != ':' && *hend != '/' && *hend != '?' && *hend != '#')
      return fail(why, r.host_len ? "bad host" : "no host");
  }
  if (!r.host_len) return fail(why, "no host");
  p = hend;
  if (p < e && *p == ':') {
    long port = 0;
    const char *d = ++p;
    while (p < e && *p >= '0' && *p <= '9' && port <= 65535) port = port * 10 + (*p++ - '0');
    if (p == d || port < 1 || port > 65535 || (p < e && *p >= '0' && *p <= '9'))
      return fail(why, "bad port");
    if (p < e && *p != '/' && *p != '?' && *p != '#') return fail(why, "bad port");
    r.port = (int)port;
  }
  r.rest = p;
  r.rest_len = (size_t)(e - p);
  *u = r;
  return 0;
}

/* ---------------------------------------------------------------- redaction */

typedef struct wbuf {
  char *p;
  size_t len, cap;
} wbuf;

static void put(wbuf *b, const char *s, size_t n) {
  if (b->len + 1 >= b->cap) return;
  size_t room = b->cap - 1 - b->len;
  if (n > room) n = room;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static int is_sep(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* One element: a URL, or a word of a message that may be one. */
static void redact_one(wbuf *b, const char *s, const char *e) {
  const char *p = s;
  for (const char *q = s; q + 3 <= e; q++)
    if (q[0] == ':' && q[1] == '/' && q[2] == '/') { p = q + 3; break; }
  const char *at = rfind(p, e, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    put(b, s, (size_t)((colon ? colon + 1 : p) - s)); /* scheme:// and the user name */
    put(b, "***", 3);
    p = at;
  } else {
    p = s;
  }
  const char *qm = memchr(p, '?', (size_t)(e - p));
  put(b, p, (size_t)((qm ? qm + 1 : e) - p));
  if (!qm) return;
  /* ?name=value&...: the names stay (they say what was configured), values go */
  for (p = qm + 1; p < e;) {
    const char *amp = memchr(p, '&', (size_t)(e - p));
    const char *end = amp ? amp : e;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq) {
      put(b, p, (size_t)(eq + 1 - p));
      put(b, "***", 3);
    } else {
      put(b, p, (size_t)(end - p));
    }
    if (amp) put(b, "&", 1);
    p = amp ? amp + 1 : e;
  }
}

char *nt_url_redact(const char *in, char *out, size_t cap) {
  if (!out || !cap) return out;
  wbuf b = {out, 0, cap};
  if (in) {
    const char *p = in, *e = in + strlen(in);
    while (p < e) {
      const char *q = p;
      while (q < e && is_sep(*q)) q++;
      put(&b, p, (size_t)(q - p));
      p = q;
      while (q < e && !is_sep(*q)) q++;
      if (q > p) redact_one(&b, p, q);
      p = q;
    }
  }
  out[b.len] = '\0';
  return out;
}
