/* nt_authz: the optional external authorizer of WebSocket upgrades (--auth-request on).
 *
 * After the JWT verified, the node sends an AuthRequest (proto/natter.proto) as a NATS
 * request on natter.auth.connect and waits — asynchronously: the connection stays in the
 * HTTP phase with reading paused, the loop keeps serving everyone else. The AuthReply
 * allows (101, optionally with the allowed rooms replaced) or denies (403 with its reason).
 * No responder, no reply within --auth-timeout, or an undecodable reply refuse with 503:
 * the authorizer fails closed.
 * Threading: loop thread only. */
#ifndef NT_AUTHZ_H
#define NT_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

#include "nt_auth.h"
#include "nt_conn.h"
#include "nt_http.h"

struct nt_chat;

#define NT_AUTHZ_SUBJECT "natter.auth.connect"
#define NT_AUTHZ_REASON_MAX 128

/* Encodes the AuthRequest for an upgrade `req` whose token gave `id`. `conn_id` is the id
 * the connection will have, `peer` its source ip. Returns a malloc'd buffer (caller frees)
 * and its length in *len, or NULL on allocation failure. Pure. */
uint8_t *nt_authz_encode(const nt_identity *id, const char *conn_id, const char *node_id,
                         const char *peer, const nt_http_req *req, int64_t now_ms, size_t *len);

/* Applies an AuthReply to `id`. Returns 0 (allowed; id->rooms replaced when the reply sets
 * rooms), NT_EFORBIDDEN (denied: the reason, printable ASCII, is written to `reason`), or
 * NT_EPROTO (undecodable reply or invalid room patterns; id unchanged). Pure. */
int nt_authz_apply(const uint8_t *data, size_t len, nt_identity *id, char *reason,
                   size_t reason_cap);

/* Returns the query string of `target` without its `token` parameter(s) (a malloc'd
 * string, "" when none is left; NULL on allocation failure). Pure. */
char *nt_authz_query_without_token(const char *target);

/* Sends the request for connection `c` (its identity verified, reading paused) and
 * returns 0; on the reply the node accepts or refuses the upgrade. `rest` (bytes after the
 * request) is copied. Returns a negative code when the request cannot be sent (the
 * caller refuses the upgrade with 503). */
int nt_authz_start(struct nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                   size_t rest_len);

/* Completes an upgrade decided outside the read callback (this authorizer's reply, or the
 * integration's $connect): 503 when the node filled up or started draining meanwhile,
 * else 101 and reading resumes. */
void nt_authz_accept(struct nt_chat *n, nt_conn *c, const nt_http_req *req,
                     const uint8_t *rest, size_t rest_len);

#endif
