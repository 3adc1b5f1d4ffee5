/* nt_sigv4: AWS Signature Version 4 verification (canonical request, scope, HMAC chain). */
#include "nt_sigv4.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "nt_err.h"

#define ALG "AWS4-HMAC-SHA256"
#define MAX_SIGNED 32       /* signed headers */
#define MAX_PARAMS 64       /* query parameters */
#define CREQ_MAX 16384      /* canonical request */

/* A bounded string builder on the caller's buffer; `over` once something did not fit. */
typedef struct sb {
  char *p;
  size_t len, cap;
  int over;
} sb;

static void sb_put(sb *b, const char *s, size_t n) {
  if (b->over || n >= b->cap - b->len) {
    b->over = 1;
    return;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

/* RFC 3986 unreserved characters stay, every other byte becomes %XX (upper case). */
static void sb_uri_encode(sb *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      sb_put(b, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      sb_put(b, e, 3);
    }
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes (and '+' as itself, as AWS does) into out; returns the length or -1. */
static long pct_decode(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      if (i + 2 >= n) return -1;
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = hi * 16 + lo;
      i += 2;
    }
    if (o + 1 >= cap) return -1;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return (long)o;
}

static void hex_of(const unsigned char *d, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t n, char out[65]) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(data, n, d);
  hex_of(d, sizeof d, out);
}

static void hmac(const void *key, size_t klen, const char *msg, size_t mlen,
                 unsigned char out[32]) {
  unsigned int ol = 32;
  HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &ol);
}

/* ================================================================ parsing ======== */

typedef struct auth_hdr {
  const char *cred;        /* AKID/date/region/service/aws4_request */
  size_t cred_len;
  const char *signed_hdrs; /* "host;x-amz-date" */
  size_t signed_len;
  const char *sig;
  size_t sig_len;
} auth_hdr;

/* Finds `key=` in the comma-separated list of the header after the algorithm. */
static int auth_field(const char *s, const char *key, const char **v, size_t *vl) {
  size_t kl = strlen(key);
  for (const char *p = s; *p;) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ",");
    if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
      *v = p + kl + 1;
      *vl = n - kl - 1;
      while (*vl && (*v)[*vl - 1] == ' ') (*vl)--;
      return 0;
    }
    p += n;
  }
  return -1;
}

static int parse_auth(const char *a, auth_hdr *h) {
  if (!a || strncmp(a, ALG " ", sizeof ALG)) return -1;
  const char *rest = a + sizeof ALG;
  if (auth_field(rest, "Credential", &h->cred, &h->cred_len) ||
      auth_field(rest, "SignedHeaders", &h->signed_hdrs, &h->signed_len) ||
      auth_field(rest, "Signature", &h->sig, &h->sig_len))
    return -1;
  return 0;
}

/* The value of header `name` (case-insensitive; several occurrences joined with ','),
 * trimmed and with inner runs of spaces collapsed, appended to b. 0, or -1 when absent. */
static int put_header(sb *b, const nt_sigv4_req *r, const char *name, size_t nlen) {
  int found = 0;
  const char *h = r->headers, *end = h ? h + r->headers_len : NULL;
  for (const char *line = h; line && line < end;) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *le = nl ? nl : end;
    const char *colon = memchr(line, ':', (size_t)(le - line));
    if (colon && (size_t)(colon - line) == nlen && !strncasecmp(line, name, nlen)) {
      if (found++) sb_put(b, ",", 1);
      const char *v = colon + 1, *e = le;
      while (v < e && (*v == ' ' || *v == '\t')) v++;
      while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
      for (const char *p = v; p < e; p++) {
        if ((*p == ' ' || *p == '\t') && (p[1] == ' ' || p[1] == '\t')) continue;
        sb_put(b, *p == '\t' ? " " : p, 1);
      }
    }
    line = nl ? nl + 1 : end;
  }
  return found ? 0 : -1;
}

/* The header value of `name` copied into out (cap bytes); 0 or -1. */
static int header_copy(const nt_sigv4_req *r, const char *name, char *out, size_t cap) {
  sb b = {out, 0, cap, 0};
  out[0] = '\0';
  return put_header(&b, r, name, strlen(name)) || b.over ? -1 : 0;
}

typedef struct qparam {
  char k[256], v[1024];
} qparam;

static int qcmp(const void *a, const void *b) {
  const qparam *x = a, *y = b;
  int c = strcmp(x->k, y->k);
  return c ? c : strcmp(x->v, y->v);
}

static int put_query(sb *b, const char *q, size_t n) {
  qparam *ps = n ? calloc(MAX_PARAMS, sizeof *ps) : NULL;
  size_t np = 0;
  if (n && !ps) return -1;
  for (size_t i = 0; i < n;) {
    const char *s = q + i;
    size_t l = strcspn(s, "&");
    if (l > n - i) l = n - i;
    if (l) {
      const char *eq = memchr(s, '=', l);
      size_t kl = eq ? (size_t)(eq - s) : l;
      if (np == MAX_PARAMS || pct_decode(s, kl, ps[np].k, sizeof ps[np].k) < 0 ||
          pct_decode(eq ? eq + 1 : s + l, eq ? l - kl - 1 : 0, ps[np].v, sizeof ps[np].v) < 0) {
        free(ps);
        return -1;
      }
      np++;
    }
    i += l + 1;
  }
  if (np) qsort(ps, np, sizeof *ps, qcmp);
  for (size_t i = 0; i < np; i++) {
    if (i) sb_put(b, "&", 1);
    sb_uri_encode(b, ps[i].k, strlen(ps[i].k));
    sb_put(b, "=", 1);
    sb_uri_encode(b, ps[i].v, strlen(ps[i].v));
  }
  free(ps);
  return 0;
}

/* The path with empty and "." segments dropped and ".." applied, each segment encoded
 * (again: an encoded path is encoded twice, as the SDKs sign non-S3 services). */
static int put_path(sb *b, const char *path, size_t n) {
  const char *seg[64];
  size_t segl[64], ns = 0;
  for (size_t i = 0; i < n;) {
    const char *s = path + i;
    size_t l = strcspn(s, "/");
    if (l > n - i) l = n - i;
    if (l == 2 && !strncmp(s, "..", 2)) {
      if (ns) ns--;
    } else if (l && !(l == 1 && s[0] == '.')) {
      if (ns == 64) return -1;
      seg[ns] = s;
      segl[ns++] = l;
    }
    i += l + 1;
  }
  sb_put(b, "/", 1);
  for (size_t i = 0; i < ns; i++) {
    if (i) sb_put(b, "/", 1);
    sb_uri_encode(b, seg[i], segl[i]);
  }
  if (ns && n && path[n - 1] == '/') sb_put(b, "/", 1);
  return 0;
}

/* "20150830T123600Z" -> unix seconds, or -1. */
static int64_t amz_time(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z') return -1;
  char *end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
  if (!end || *end) return -1;
  return (int64_t)timegm(&tm);
}

/* ================================================================ verify ========= */

int nt_sigv4_is_sigv4(const char *a) { return a && !strncmp(a, ALG " ", sizeof ALG); }

int nt_sigv4_verify(const nt_sigv4_req *r, const char *akid, const char *secret,
                    const char *service, int64_t now_s, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  *why = NULL;
  char auth[4096];
  auth_hdr ah;
  if (header_copy(r, "authorization", auth, sizeof auth) || parse_auth(auth, &ah)) {
    *why = "malformed authorization";
    return NT_EFORBIDDEN;
  }
  /* Credential = AKID/yyyymmdd/region/service/aws4_request */
  char cred[512];
  if (ah.cred_len >= sizeof cred) {
    *why = "malformed authorization";
    return NT_EFORBIDDEN;
  }
  memcpy(cred, ah.cred, ah.cred_len);
  cred[ah.cred_len] = '\0';
  char *parts[5], *save = NULL;
  int np = 0;
  for (char *t = strtok_r(cred, "/", &save); t && np < 5; t = strtok_r(NULL, "/", &save))
    parts[np++] = t;
  if (np != 5 || strtok_r(NULL, "/", &save) || strcmp(parts[4], "aws4_request") ||
      strlen(parts[1]) != 8) {
    *why = "malformed credential";
    return NT_EFORBIDDEN;
  }
  /* The key id is not secret; the signature compare below is the constant-time one. */
  if (!akid || strcmp(parts[0], akid)) {
    *why = "unknown access key";
    return NT_EFORBIDDEN;
  }
  if (strcmp(parts[3], service)) {
    *why = "wrong service";
    return NT_EFORBIDDEN;
  }
  char date[32];
  if (header_copy(r, "x-amz-date", date, sizeof date)) {
    *why = "missing x-amz-date";
    return NT_EFORBIDDEN;
  }
  int64_t t = amz_time(date);
  if (t < 0 || strncmp(date, parts[1], 8)) {
    *why = "malformed x-amz-date";
    return NT_EFORBIDDEN;
  }
  if (t > now_s + NT_SIGV4_SKEW_S || t < now_s - NT_SIGV4_SKEW_S) {
    *why = "request time too skewed";
    return NT_EFORBIDDEN;
  }
  char body_hash[65], claimed[80];
  sha256_hex(r->body ? (const void *)r->body : "", r->body_len, body_hash);
  if (!header_copy(r, "x-amz-content-sha256", claimed, sizeof claimed) &&
      strcmp(claimed, body_hash)) {
    *why = "payload hash mismatch";
    return NT_EFORBIDDEN;
  }
  /* canonical request */
  char *creq = malloc(CREQ_MAX);
  if (!creq) {
    *why = "internal";
    return NT_EFORBIDDEN;
  }
  sb b = {creq, 0, CREQ_MAX, 0};
  creq[0] = '\0';
  sb_str(&b, r->method);
  sb_put(&b, "\n", 1);
  int bad = put_path(&b, r->path, r->path_len);
  sb_put(&b, "\n", 1);
  bad |= put_query(&b, r->query ? r->query : "", r->query_len);
  sb_put(&b, "\n", 1);
  /* signed headers: lower case, sorted, each present */
  const char *sh = ah.signed_hdrs, *prev = NULL;
  size_t prevl = 0, nsigned = 0, host_signed = 0;
  for (size_t i = 0; !bad && i < ah.signed_len;) {
    const char *nm = sh + i;
    size_t l = strcspn(nm, ";, ");
    if (l > ah.signed_len - i) l = ah.signed_len - i;
    int ok = l > 0 && ++nsigned <= MAX_SIGNED;
    for (size_t k = 0; ok && k < l; k++) ok = !(nm[k] >= 'A' && nm[k] <= 'Z');
    if (ok && prev) {
      int c = strncmp(prev, nm, prevl < l ? prevl : l);
      ok = c < 0 || (c == 0 && prevl < l);
    }
    if (!ok) {
      bad = 1;
      *why = "malformed signed headers";
      break;
    }
    if (l == 4 && !strncmp(nm, "host", 4)) host_signed = 1;
    sb_put(&b, nm, l);
    sb_put(&b, ":", 1);
    if (put_header(&b, r, nm, l)) {
      bad = 1;
      *why = "signed header missing";
      break;
    }
    sb_put(&b, "\n", 1);
    prev = nm;
    prevl = l;
    i += l + 1;
  }
  if (!bad && !host_signed) {
    bad = 1;
    *why = "host is not signed";
  }
  sb_put(&b, "\n", 1);
  sb_put(&b, ah.signed_hdrs, ah.signed_len);
  sb_put(&b, "\n", 1);
  sb_str(&b, body_hash);
  if (bad || b.over) {
    if (b.over || !*why) *why = "malformed request";
    free(creq);
    return NT_EFORBIDDEN;
  }
  char creq_hash[65];
  sha256_hex(creq, b.len, creq_hash);
  free(creq);
  /* string to sign and the signing key */
  char sts[512], scope[256];
  snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", parts[1], parts[2], parts[3]);
  int sl = snprintf(sts, sizeof sts, ALG "\n%s\n%s\n%s", date, scope, creq_hash);
  char k0[300];
  int kl = snprintf(k0, sizeof k0, "AWS4%s", secret ? secret : "");
  if (sl <= 0 || (size_t)sl >= sizeof sts || kl <= 0 || (size_t)kl >= sizeof k0) {
    *why = "malformed request";
    return NT_EFORBIDDEN;
  }
  unsigned char kd[32], kr[32], ks[32], kg[32], sig[32];
  hmac(k0, (size_t)kl, parts[1], strlen(parts[1]), kd);
  hmac(kd, 32, parts[2], strlen(parts[2]), kr);
  hmac(kr, 32, parts[3], strlen(parts[3]), ks);
  hmac(ks, 32, "aws4_request", 12, kg);
  hmac(kg, 32, sts, (size_t)sl, sig);
  OPENSSL_cleanse(k0, sizeof k0);
  char want[65];
  hex_of(sig, 32, want);
  char got[65] = {0};
  if (ah.sig_len == 64) memcpy(got, ah.sig, 64);
  int eq = CRYPTO_memcmp(want, got, 64) == 0;
  if (!eq) {
    *why = "signature mismatch";
    return NT_EFORBIDDEN;
  }
  *why = NULL;
  return 0;
}
