/* nt_url: the parts of a server URL (NATS, Redis) for checking, and the one redaction of
 * credentials every log line and error message that shows a URL goes through.
 * Pure functions: no allocation, no global state, any thread. */
#ifndef NT_URL_H
#define NT_URL_H

#include <stddef.h>

/* One URL, as [scheme://][userinfo@]host[:port][rest]. Pointers are borrowed from the
 * parsed text (valid while it is); lengths exclude any NUL. */
typedef struct nt_url {
  const char *scheme;   /* before "://"; NULL when the text has none */
  size_t scheme_len;
  const char *userinfo; /* before the last '@'; NULL when there is none */
  size_t userinfo_len;
  const char *host;     /* without the brackets of an IPv6 literal; never empty */
  size_t host_len;
  int port;             /* 1..65535, or 0 when the text gives none */
  const char *rest;     /* what follows host[:port] ("/0", "?x=1", ""); never NULL */
  size_t rest_len;
} nt_url;

/* Parses `len` bytes of `s` into *u (written only on success). The host is a name of
 * letters, digits, '.', '-' and '_', or a bracketed IPv6 literal; a port, when given,
 * is 1..65535. Returns 0, or NT_EINVAL with a static reason in *why (when non-NULL):
 * "no host", "bad host", "bad port", "unclosed IPv6 bracket". */
int nt_url_parse(const char *s, size_t len, nt_url *u, const char **why);

/* Copies `in` (one URL, a comma-separated list of them, or any text holding some) to
 * `out` (capacity `cap`, always NUL-terminated, truncated if short) with credentials
 * replaced by "***": the password of user:password@ (or the whole userinfo when it has
 * no ':', as a token), and the value of every query parameter. Returns `out`, so it can
 * be used inline in a log call. NULL `in` gives "". */
char *nt_url_redact(const char *in, char *out, size_t cap);

/* Room for nt_url_redact of a configured URL list in a log line. */
#define NT_URL_REDACTED_MAX 1024

#endif
