/* nt_api: the HTTP API of --api-listen (docs/api.md) — /@connections management, server push,
 * room presence, /healthz, /readyz and /metrics, behind the admin bearer token.
 *
 * Two layers: pure functions (routing, token comparison, JSON bodies) that need no node
 * and are unit-tested directly, and the glue (nt_api_on_request, on the chat state of
 * nt_chat.h) that answers on an API connection, directly for local connections (through
 * nt_client_push/kick/describe) and through the registry and natter.node.<node> for the
 * others. Every answer is JSON (errors are
 * {"error": code, "message": text}) except /metrics (Prometheus text).
 *
 * Access: /healthz, /readyz and /metrics need no token (probes and Prometheus scrapers;
 * they reveal no tenant data). Every other path needs "Authorization: Bearer <token>":
 * 401 without a bearer token, 403 with a wrong one. With no --admin-token configured the
 * API is disabled and every other path answers 403 "api_disabled".
 * Threading: loop thread only. */
#ifndef NT_API_H
#define NT_API_H

#include <stddef.h>

#include "nt_conn.h"
#include "nt_http.h"
#include "nt_subject.h"

struct nt_chat;

enum nt_api_route {
  NT_API_NONE = 0,        /* no route: see nt_api_match.status */
  NT_API_HEALTHZ,
  NT_API_READYZ,
  NT_API_METRICS,
  NT_API_CONN_GET,        /* GET /@connections/{id} */
  NT_API_CONN_POST,       /* POST /@connections/{id} */
  NT_API_CONN_DELETE,     /* DELETE /@connections/{id} */
  NT_API_ROOM_MESSAGE,    /* POST /v1/tenants/{t}/rooms/{r}/messages */
  NT_API_USER_MESSAGE,    /* POST /v1/tenants/{t}/users/{u}/messages */
  NT_API_ROOM_PRESENCE,   /* GET /v1/tenants/{t}/rooms/{r}/presence */
  NT_API_ROOM_HISTORY     /* GET /v1/tenants/{t}/rooms/{r}/messages?limit=&before= */
};

/* Result of routing one request. */
typedef struct nt_api_match {
  int route;              /* enum nt_api_route; NT_API_NONE when status is set */
  int status;             /* 0, or the HTTP status to answer: 400 (bad id), 404, 405 */
  int is_public;          /* 1: no admin token needed (health and metrics) */
  const char *why;        /* static message for an error status */
  char id[NT_ID_MAX + 1];     /* connection id, or tenant id */
  char sub[NT_ID_MAX + 1];    /* room or user id */
} nt_api_match;

/* Routes `method` (libhttp-parser's enum http_method) and the path `path` (`path_len`
 * bytes, no query string). Path segments are percent-decoded; ids must pass nt_id_check.
 * Always fills *m. Pure. */
void nt_api_route(int method, const char *path, size_t path_len, nt_api_match *m);

/* Compares the Authorization header value `authorization` (may be NULL) with the
 * configured token (NULL or "" when unset) in constant time (SHA-256 of both, compared
 * with CRYPTO_memcmp, so neither length nor content leaks through timing). Returns 0 when
 * allowed, 401 when there is no "Bearer <token>", 403 when it is wrong or the API is
 * disabled. Pure. */
int nt_api_check_auth(const char *admin_token, const char *authorization);

/* The error code of the JSON error body for an HTTP status ("bad_request", "unauthorized",
 * "forbidden", "not_found", "gone", "too_large", "timeout", "unavailable", ...). Static. */
const char *nt_api_error_code(int status);

/* Renders {"error": code, "message": message} into a malloc'd string (caller frees);
 * *len gets its length. NULL on allocation failure. Pure. */
char *nt_api_error_json(const char *code, const char *message, size_t *len);

/* A complete HTTP response (Connection: close) with the JSON error for `status`, for a
 * request the parser refused on an API connection (400, 413, 431, 505). Caller frees. */
char *nt_api_error_response(int status, size_t *len);

/* The body of GET /readyz, on either port: {"ready","bus","store","draining"} as JSON
 * (malloc'd, length in *len), *status 200 when ready else 503. NULL: no memory. */
char *nt_api_readyz(const struct nt_chat *n, int *status, size_t *len);

/* Node glue: answers one complete request on API connection `c` (now or later) and then
 * calls nt_conn_http_done. `req` is borrowed for the call. */
void nt_api_on_request(struct nt_chat *n, nt_conn *c, const nt_http_req *req);


#endif
