/* nt_sigv4: verification of AWS Signature Version 4 (the Authorization header form,
 * AWS4-HMAC-SHA256), as the AWS SDKs sign API Gateway management API calls.
 *
 * The server recomputes the signature from the request as received: canonical request
 * (method, URI-encoded path, sorted and encoded query, the signed headers with trimmed
 * values, the SHA-256 of the body), string to sign, signing key derived from the secret
 * and the credential scope (date, any region, `service`, aws4_request), and compares it in
 * constant time. The request time (X-Amz-Date) must be within 5 minutes of `now_s`.
 * Pure: no I/O, no allocation beyond the call; thread-safe. OpenSSL for SHA-256 and HMAC. */
#ifndef NT_SIGV4_H
#define NT_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#define NT_SIGV4_SKEW_S 300

typedef struct nt_sigv4_req {
  const char *method;          /* "GET", "POST", ... */
  const char *path;            /* as sent on the request line, without the query */
  size_t path_len;
  const char *query;           /* after '?', without it ("" when none) */
  size_t query_len;
  const char *headers;         /* "name:value" lines joined by '\n' (nt_http_req.headers) */
  size_t headers_len;
  const uint8_t *body;
  size_t body_len;
} nt_sigv4_req;

/* 1 when `authorization` (may be NULL) claims SigV4 ("AWS4-HMAC-SHA256 ..."). */
int nt_sigv4_is_sigv4(const char *authorization);

/* Verifies the request's Authorization header against `access_key_id` / `secret` for
 * `service` in any region at `now_s` (unix seconds). Returns 0, or NT_EFORBIDDEN with a
 * static reason in *why ("malformed authorization", "unknown access key", "wrong
 * service", "request time too skewed", "signed header missing", "payload hash mismatch",
 * "signature mismatch", ...). */
int nt_sigv4_verify(const nt_sigv4_req *r, const char *access_key_id, const char *secret,
                    const char *service, int64_t now_s, const char **why);

#endif
