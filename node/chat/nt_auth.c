/* nt_auth: verifies connect JWTs, the algorithm pinned by configuration. */
#include "nt_auth.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "nt_err.h"

/* Generous for clock skew, small enough that a typo (ms for s) fails at startup. */
#define LEEWAY_MAX_S 86400
#define RSA_MIN_BITS 2048
/* Keeps exp + leeway and nbf - leeway far from int64 overflow. */
#define TIME_LIMIT ((int64_t)1 << 62)

/* Signatures are checked two ways, both with the algorithm fixed here, never by the token:
 * - HS*: libjwt's jwt_decode() with the shared secret.
 * - RS*, ES*: OpenSSL directly, with the key parsed once in nt_auth_new(). libjwt 1.10
 *   takes the key as PEM text and re-parses it on every jwt_decode(); OpenSSL 3's PEM
 *   decoder costs ~400 us, which capped RS256/ES256 at ~2,000 verifications/s per core,
 *   far below the 10,000/s a node needs for connect storms. */

enum key_kind { KEY_HMAC, KEY_RSA, KEY_EC };

struct nt_auth {
  jwt_alg_t alg;
  enum key_kind kind;
  const char *alg_name; /* static, from the table below */
  unsigned char *key;   /* HS*: the shared secret */
  int key_len;
  EVP_PKEY *pkey; /* RS*, ES*: the public key */
  EVP_MD *md;     /* RS*, ES*: fetched once; an implicit fetch per verify costs */
  size_t ec_half; /* ES*: bytes of r (and of s) in the raw JWS signature */
  char default_tenant[NT_ID_MAX + 1]; /* "" when tokens must name their tenant */
  int64_t leeway_s;
  char *audience; /* NULL: not checked */
  char *issuer;   /* NULL: not checked */
};

static const struct {
  const char *name;
  jwt_alg_t alg;
  enum key_kind kind;
  const char *digest;
  const char *curve; /* EC only: the one curve the algorithm is defined on (RFC 7518) */
  size_t ec_half;
} algs[] = {
    {"HS256", JWT_ALG_HS256, KEY_HMAC, NULL, NULL, 0},
    {"HS384", JWT_ALG_HS384, KEY_HMAC, NULL, NULL, 0},
    {"HS512", JWT_ALG_HS512, KEY_HMAC, NULL, NULL, 0},
    {"RS256", JWT_ALG_RS256, KEY_RSA, "SHA256", NULL, 0},
    {"RS384", JWT_ALG_RS384, KEY_RSA, "SHA384", NULL, 0},
    {"RS512", JWT_ALG_RS512, KEY_RSA, "SHA512", NULL, 0},
    {"ES256", JWT_ALG_ES256, KEY_EC, "SHA256", "prime256v1", 32},
    {"ES384", JWT_ALG_ES384, KEY_EC, "SHA384", "secp384r1", 48},
    {"ES512", JWT_ALG_ES512, KEY_EC, "SHA512", "secp521r1", 66},
};

/* ---------------------------------------------------------------- configuration */

static int cfg_fail(char *err, size_t errcap, const char *fmt, ...) {
  if (err && errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
  }
  return NT_EINVAL;
}

/* Parses and checks the key at startup, so a bad or mismatched key fails here with a
 * clear reason instead of turning every connect into "bad_signature". */
static int load_public_key(const char *pem, enum key_kind kind, const char *curve,
                           EVP_PKEY **out, char *err, size_t errcap) {
  size_t len = strlen(pem);
  if (len > INT_MAX) return cfg_fail(err, errcap, "public key PEM too large");
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) return NT_ENOMEM;
  EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  BIO_free(bio);
  int rc = 0;
  if (!pk) {
    rc = cfg_fail(err, errcap,
                  "cannot parse public key PEM (need a \"BEGIN PUBLIC KEY\" block)");
  } else if (kind == KEY_RSA) {
    if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
      rc = cfg_fail(err, errcap, "public key is not an RSA key");
    else if (EVP_PKEY_get_bits(pk) < RSA_MIN_BITS)
      rc = cfg_fail(err, errcap, "RSA key has %d bits, at least %d required",
                    EVP_PKEY_get_bits(pk), RSA_MIN_BITS);
  } else {
    char group[64] = "";
    if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC)
      rc = cfg_fail(err, errcap, "public key is not an EC key");
    else if (!EVP_PKEY_get_group_name(pk, group, sizeof group, NULL) ||
             strcmp(group, curve) != 0)
      rc = cfg_fail(err, errcap, "EC key is on curve '%s', the algorithm needs '%s'", group,
                    curve);
  }
  ERR_clear_error(); /* the error queue is per thread; leave it clean for other users */
  if (rc) {
    EVP_PKEY_free(pk);
    return rc;
  }
  *out = pk;
  return 0;
}

int nt_auth_new(const nt_auth_cfg *cfg, nt_auth **out, char *err, size_t errcap) {
  if (err && errcap) err[0] = '\0';
  if (!cfg || !out) return cfg_fail(err, errcap, "no configuration");

  const char *name = cfg->alg ? cfg->alg : "HS256";
  size_t ai = 0;
  while (ai < sizeof algs / sizeof algs[0] && strcmp(algs[ai].name, name) != 0) ai++;
  if (ai == sizeof algs / sizeof algs[0])
    return cfg_fail(err, errcap, "unknown or unsupported JWT algorithm '%s'", name);

  if (cfg->leeway_s < 0 || cfg->leeway_s > LEEWAY_MAX_S)
    return cfg_fail(err, errcap, "leeway must be 0..%d seconds", LEEWAY_MAX_S);

  const char *dt = cfg->default_tenant ? cfg->default_tenant : "";
  if (dt[0] && !nt_id_valid(dt))
    return cfg_fail(err, errcap, "default tenant is not a valid id");

  nt_auth *a = calloc(1, sizeof *a);
  if (!a) return NT_ENOMEM;
  a->alg = algs[ai].alg;
  a->kind = algs[ai].kind;
  a->alg_name = algs[ai].name;
  a->ec_half = algs[ai].ec_half;
  a->leeway_s = cfg->leeway_s;
  memcpy(a->default_tenant, dt, strlen(dt) + 1);

  int rc = 0;
  if ((cfg->audience && cfg->audience[0] && !(a->audience = strdup(cfg->audience))) ||
      (cfg->issuer && cfg->issuer[0] && !(a->issuer = strdup(cfg->issuer)))) {
    nt_auth_free(a);
    return NT_ENOMEM;
  }
  if (a->kind == KEY_HMAC) {
    /* Never hand libjwt an empty key: jwt_decode() without one skips signature
     * verification altogether and accepts any token. */
    size_t klen = cfg->secret ? strlen(cfg->secret) : 0;
    if (klen == 0) {
      rc = cfg_fail(err, errcap, "%s needs a shared secret", name);
    } else if (klen > INT_MAX) {
      rc = cfg_fail(err, errcap, "secret too large");
    } else if (!(a->key = malloc(klen + 1))) {
      rc = NT_ENOMEM;
    } else {
      memcpy(a->key, cfg->secret, klen + 1);
      a->key_len = (int)klen;
    }
  } else if (!cfg->public_key_pem || !cfg->public_key_pem[0]) {
    rc = cfg_fail(err, errcap, "%s needs a public key (PEM)", name);
  } else {
    rc = load_public_key(cfg->public_key_pem, a->kind, algs[ai].curve, &a->pkey, err,
                         errcap);
    if (rc == 0 && !(a->md = EVP_MD_fetch(NULL, algs[ai].digest, NULL))) {
      ERR_clear_error();
      rc = cfg_fail(err, errcap, "OpenSSL has no %s", algs[ai].digest);
    }
  }
  if (rc) {
    nt_auth_free(a);
    return rc;
  }
  *out = a;
  return 0;
}

void nt_auth_free(nt_auth *a) {
  if (!a) return;
  if (a->key) OPENSSL_cleanse(a->key, (size_t)a->key_len);
  free(a->key);
  EVP_PKEY_free(a->pkey);
  EVP_MD_free(a->md);
  free(a->audience);
  free(a->issuer);
  free(a);
}

/* ---------------------------------------------------------------- token parsing */

static signed char b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return (signed char)(c - 'A');
  if (c >= 'a' && c <= 'z') return (signed char)(c - 'a' + 26);
  if (c >= '0' && c <= '9') return (signed char)(c - '0' + 52);
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* Unpadded base64url (RFC 7515 §2). Returns the decoded length, or -1 when `in` is not
 * base64url. `out` must hold len / 4 * 3 + 2 bytes. */
static long b64url_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 == 1) return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    signed char v = b64url_value((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)(unsigned char)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return (long)o;
}

static int b64url_only(const char *s, size_t len) {
  if (len % 4 == 1) return 0;
  for (size_t i = 0; i < len; i++)
    if (b64url_value((unsigned char)s[i]) < 0) return 0;
  return 1;
}

/* Decodes one segment into a JSON object. Duplicate names are refused so that no two
 * readers of the same bytes (this file, libjwt, the issuer's tooling) can disagree on
 * which value counts. */
static json_t *segment_object(const char *seg, size_t len, unsigned char *buf) {
  long n = b64url_decode(seg, len, buf);
  if (n < 0) return NULL;
  json_t *o = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
  if (o && !json_is_object(o)) {
    json_decref(o);
    o = NULL;
  }
  return o;
}

/* JSON numbers as NumericDate (RFC 7519 §2): fractions are dropped, absurd values clamped
 * so later arithmetic with the leeway cannot overflow. Returns 0 or -1 if not a number. */
static int numeric_date(const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    *out = i > TIME_LIMIT ? TIME_LIMIT : i < -TIME_LIMIT ? -TIME_LIMIT : (int64_t)i;
    return 0;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d)) return -1;
    d = floor(d);
    if (d > (double)TIME_LIMIT)
      *out = TIME_LIMIT;
    else if (d < -(double)TIME_LIMIT)
      *out = -TIME_LIMIT;
    else
      *out = (int64_t)d;
    return 0;
  }
  return -1;
}

/* Copies a JSON string that must be a valid id into `out` (NT_ID_MAX + 1 bytes). */
static int copy_id(const json_t *v, char *out) {
  if (!json_is_string(v)) return -1;
  size_t len = json_string_length(v);
  const char *s = json_string_value(v);
  if (nt_id_check(s, len) != 0) return -1;
  memcpy(out, s, len);
  out[len] = '\0';
  return 0;
}

/* Returns 0 with *rooms set (NULL when absent), NT_EINVAL for a bad claim, NT_ENOMEM. */
static int rooms_claim(const json_t *v, char ***rooms, size_t *nrooms) {
  *rooms = NULL;
  *nrooms = 0;
  if (!v) return 0;
  if (!json_is_array(v)) return NT_EINVAL;
  size_t n = json_array_size(v), bytes = 0;
  if (n > NT_IDENTITY_ROOMS_MAX) return NT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(v, i);
    if (!json_is_string(e) || !nt_identity_pattern_ok(json_string_value(e), json_string_length(e)))
      return NT_EINVAL;
    bytes += json_string_length(e) + 1;
  }
  char *at;
  char **r = nt_identity_rooms_alloc(n, bytes, &at);
  if (!r) return NT_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(v, i);
    at = nt_identity_rooms_put(r, i, at, json_string_value(e), json_string_length(e));
  }
  *rooms = r;
  *nrooms = n;
  return 0;
}

/* ---------------------------------------------------------------- verification */

static int reject(const char **why, const char *reason) {
  if (why) *why = reason;
  return NT_EAUTH;
}

static int internal_error(const char **why) {
  if (why) *why = "internal";
  return NT_ENOMEM;
}

static int string_is(const json_t *v, const char *want) {
  return json_is_string(v) && json_string_length(v) == strlen(want) &&
         !memcmp(json_string_value(v), want, json_string_length(v));
}

/* RFC 7519 §4.1.3: `aud` is one string or an array of them; the token is for us when one
 * of them is our audience. */
static int audience_ok(const json_t *aud, const char *want) {
  if (string_is(aud, want)) return 1;
  for (size_t i = 0; json_is_array(aud) && i < json_array_size(aud); i++)
    if (string_is(json_array_get(aud, i), want)) return 1;
  return 0;
}

/* Claims are read from our own decode of the payload segment: the signature covers the
 * segment's text, and that text has one decoding, so these are the bytes that were signed
 * (and the ones libjwt parsed, on the HS* path). */
static int check_claims(const nt_auth *a, json_t *claims, int64_t now_s, nt_identity *out,
                        const char **why) {
  int64_t exp, nbf;
  const json_t *v = json_object_get(claims, "exp");
  if (!v) return reject(why, "missing_exp");
  if (numeric_date(v, &exp) != 0) return reject(why, "malformed");
  if (now_s >= exp + a->leeway_s) return reject(why, "expired");

  v = json_object_get(claims, "nbf");
  if (v) {
    if (numeric_date(v, &nbf) != 0) return reject(why, "malformed");
    if (now_s < nbf - a->leeway_s) return reject(why, "not_yet_valid");
  }

  if (a->issuer && !string_is(json_object_get(claims, "iss"), a->issuer))
    return reject(why, "wrong_issuer");
  if (a->audience && !audience_ok(json_object_get(claims, "aud"), a->audience))
    return reject(why, "wrong_audience");

  char user[NT_ID_MAX + 1], tenant[NT_ID_MAX + 1];
  v = json_object_get(claims, "sub");
  if (!v) return reject(why, "missing_sub");
  if (copy_id(v, user) != 0) return reject(why, "invalid_sub");

  /* A present-but-bad `tenant` never falls back to `tid` or the default: the issuer
   * meant something, and guessing a tenant is how cross-tenant access happens. */
  v = json_object_get(claims, "tenant");
  if (!v) v = json_object_get(claims, "tid");
  if (v) {
    if (copy_id(v, tenant) != 0) return reject(why, "invalid_tenant");
  } else if (a->default_tenant[0]) {
    memcpy(tenant, a->default_tenant, sizeof tenant);
  } else {
    return reject(why, "missing_tenant");
  }

  int rc = rooms_claim(json_object_get(claims, "rooms"), &out->rooms, &out->nrooms);
  if (rc == NT_ENOMEM) return internal_error(why);
  if (rc) return reject(why, "invalid_rooms");
  if (nt_identity_set(out, user, tenant)) {
    nt_identity_clear(out);
    return internal_error(why);
  }
  out->exp = exp;
  return 0;
}

/* Everything decided from the header alone, before any key is used. */
static int check_header(const nt_auth *a, json_t *hdr, const char **why) {
  const json_t *alg = json_object_get(hdr, "alg");
  if (!json_is_string(alg)) return reject(why, "malformed");
  /* The pin: libjwt takes the algorithm from the token itself, which admits "none" and
   * HS256 signed with an RSA/EC public key as the HMAC secret. Checked for every
   * algorithm so that both signature paths reject the same tokens. */
  if (json_string_length(alg) != strlen(a->alg_name) ||
      strcmp(json_string_value(alg), a->alg_name) != 0)
    return reject(why, "alg_mismatch");
  /* We implement no extensions, and RFC 7515 §4.1.11 says a token naming any must fail. */
  if (json_object_get(hdr, "crit")) return reject(why, "malformed");
  /* libjwt refuses any other typ; refusing it here too keeps the two signature paths
   * alike and the reason accurate (libjwt's refusal would read "bad_signature"). */
  const json_t *typ = json_object_get(hdr, "typ");
  if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
    return reject(why, "malformed");
  return 0;
}

static int verify_hmac(const nt_auth *a, const char *token, const char **why) {
  jwt_t *jwt = NULL;
  int jrc = jwt_decode(&jwt, token, a->key, a->key_len);
  if (jrc != 0 || !jwt) {
    ERR_clear_error();
    return jrc == ENOMEM ? internal_error(why) : reject(why, "bad_signature");
  }
  /* Belt and braces: the header check already pinned it. */
  jwt_alg_t got = jwt_get_alg(jwt);
  jwt_free(jwt);
  return got == a->alg ? 0 : reject(why, "alg_mismatch");
}

/* JWS carries an ECDSA signature as fixed-width r || s (RFC 7518 §3.4); OpenSSL wants
 * DER. Returns the DER length, 0 for a signature of the wrong size, -1 on no memory. */
static int ecdsa_to_der(const unsigned char *raw, size_t len, size_t half,
                        unsigned char *der, size_t cap) {
  if (len != 2 * half) return 0;
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(raw, (int)half, NULL), *s = BN_bin2bn(raw + half, (int)half, NULL);
  if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
    ECDSA_SIG_free(es);
    BN_free(r);
    BN_free(s);
    return -1;
  }
  int n = i2d_ECDSA_SIG(es, NULL);
  unsigned char *p = der;
  n = n > 0 && (size_t)n <= cap ? i2d_ECDSA_SIG(es, &p) : 0;
  ECDSA_SIG_free(es);
  return n;
}

/* `input` is the signing input (header "." payload); `buf` scratch for the decoded
 * signature. */
static int verify_pkey(const nt_auth *a, const char *input, size_t ilen, const char *sig64,
                       size_t slen, unsigned char *buf, const char **why) {
  long n = b64url_decode(sig64, slen, buf);
  if (n <= 0) return reject(why, "malformed");
  const unsigned char *sig = buf;
  size_t siglen = (size_t)n;
  unsigned char der[160]; /* P-521 needs 141 bytes at most */
  if (a->kind == KEY_EC) {
    int dl = ecdsa_to_der(buf, siglen, a->ec_half, der, sizeof der);
    if (dl < 0) return internal_error(why);
    if (dl == 0) return reject(why, "bad_signature");
    sig = der;
    siglen = (size_t)dl;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return internal_error(why);
  EVP_PKEY_CTX *pctx = NULL;
  /* RS* is PKCS#1 v1.5 (RFC 7518 §3.3); say so rather than trust the default. */
  int ok =
      EVP_DigestVerifyInit(ctx, &pctx, a->md, NULL, a->pkey) == 1 &&
      (a->kind != KEY_RSA || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
      EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)input, ilen) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok ? 0 : reject(why, "bad_signature");
}

int nt_auth_verify(const nt_auth *a, const char *token, int64_t now_s, nt_identity *id,
                   const char **why) {
  if (why) *why = NULL;
  if (!a || !token || !id) {
    if (why) *why = "malformed";
    return NT_EINVAL;
  }

  size_t len = strnlen(token, NT_AUTH_TOKEN_MAX + 1);
  if (len == 0 || len > NT_AUTH_TOKEN_MAX) return reject(why, "malformed");
  const char *d1 = memchr(token, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
  if (!d2) return reject(why, "malformed");
  size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
  size_t slen = len - (size_t)(d2 + 1 - token);
  if (hlen == 0 || plen == 0) return reject(why, "malformed");

  /* The header goes first so that an "alg":"none" token is logged as alg_mismatch. */
  unsigned char buf[NT_AUTH_TOKEN_MAX / 4 * 3 + 3];
  json_t *hdr = segment_object(token, hlen, buf);
  if (!hdr) return reject(why, "malformed");
  int rc = check_header(a, hdr, why);
  json_decref(hdr);
  if (rc) return rc;
  /* Empty is the unsigned form, and a '.' here would be a fourth segment. */
  if (slen == 0 || !b64url_only(d2 + 1, slen)) return reject(why, "malformed");

  json_t *claims = segment_object(d1 + 1, plen, buf);
  if (!claims) return reject(why, "malformed");

  if (a->kind == KEY_HMAC)
    rc = verify_hmac(a, token, why);
  else
    rc = verify_pkey(a, token, (size_t)(d2 - token), d2 + 1, slen, buf, why);
  if (rc) {
    json_decref(claims);
    return rc;
  }

  nt_identity tmp;
  memset(&tmp, 0, sizeof tmp);
  rc = check_claims(a, claims, now_s, &tmp, why);
  json_decref(claims);
  if (rc) return rc;
  *id = tmp;
  return 0;
}
