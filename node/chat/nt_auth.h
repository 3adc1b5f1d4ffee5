/* nt_auth: JWT verification on connect (libjwt), with the algorithm pinned by config. */
#ifndef NT_AUTH_H
#define NT_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "nt_identity.h"
#include "nt_subject.h"

/* Tokens longer than this are rejected as "malformed" before any decoding; the HTTP layer
 * may use it to bound the `token` query parameter / Authorization header. */
#define NT_AUTH_TOKEN_MAX 8192
#define NT_AUTH_ROOMS_MAX NT_IDENTITY_ROOMS_MAX

typedef struct nt_auth nt_auth;

typedef struct nt_auth_cfg {
  const char *alg;            /* "HS256" (default when NULL), "HS384", "HS512", "RS256",
                                 "RS384", "RS512", "ES256", "ES384", "ES512" */
  const char *secret;         /* shared secret for HS*; required for HS* */
  const char *public_key_pem; /* PEM text of the public key for RS and ES algorithms; required for them */
  const char *default_tenant; /* tenant used when a token has neither `tenant` nor `tid`;
                                 NULL or "" means such tokens are rejected */
  int64_t leeway_s;           /* clock skew tolerated on exp/nbf (default 0) */
  const char *audience;       /* NULL or "": `aud` not checked; else `aud` (a string or an
                                 array of strings) must hold exactly this value */
  const char *issuer;         /* NULL or "": `iss` not checked; else it must equal this */
} nt_auth_cfg;

/* Creates a verifier. Returns 0 and writes *out, or NT_EINVAL with a reason in `err`
 * (capacity `errcap`): unknown algorithm, missing secret/key, unparsable key. */
int nt_auth_new(const nt_auth_cfg *cfg, nt_auth **out, char *err, size_t errcap);
void nt_auth_free(nt_auth *a);

/* Verifies `token` at time `now_s` (unix seconds). Rejects (NT_EAUTH): malformed tokens,
 * a header `alg` other than the configured one (including "none"), a bad signature, a
 * missing or past `exp`, a future `nbf`, a missing or invalid `sub`, a missing or invalid
 * tenant (`tenant`, else `tid`, else the default), a `rooms` claim that is not an array of
 * strings. On success fills *id (call nt_identity_clear later) and returns 0. When `why`
 * is non-NULL it receives a static reason string for logs ("expired", "bad_signature",
 * "alg_mismatch", "malformed", "missing_sub", "missing_tenant", "missing_exp", ...). */
int nt_auth_verify(const nt_auth *a, const char *token, int64_t now_s, nt_identity *id,
                   const char **why);

/* Notes on nt_auth_verify beyond the contract above:
 * - *id is written only on success and is overwritten without being cleared first, so
 *   clear an identity before reusing it. On success *why is set to NULL.
 * - More reasons: "not_yet_valid" (nbf), "invalid_sub", "invalid_tenant", "invalid_rooms",
 *   "wrong_audience" (an audience is configured and `aud` is missing or does not hold it),
 *   "wrong_issuer" (an issuer is configured and `iss` is missing or differs);
 *   a `crit` header, a `typ` other than "JWT", or an `exp`/`nbf` that is not a number
 *   give "malformed".
 * - Returns NT_ENOMEM (why "internal") when an allocation fails, NT_EINVAL when `a`,
 *   `token` or `id` is NULL.
 * - Reentrant: one nt_auth may be shared by threads; it is never modified by verify.
 * - HS* signatures are checked by libjwt; RS* and ES* by OpenSSL with the key parsed once
 *   in nt_auth_new (libjwt 1.10 re-parses the PEM on every call, ~2,000 tokens/s). */

#endif
