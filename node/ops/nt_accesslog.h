/* nt_accesslog: the operations log lines of a node — one access line per HTTP API request,
 * refused upgrades, failed admin authentication, WebSocket connections opened and closed —
 * and the rate limit that keeps a flood of any of them from filling a disk.
 *
 * Lines and levels (docs/operations.md "Logs"):
 *   info  "api request"        method, route (the template, never the path with its ids),
 *                              status, ms, caller (admin | sigv4 | token | anonymous), peer
 *   warn  "api auth failed"    the same fields, for 401/403 on a path that needs the admin
 *                              token (instead of the access line)
 *   warn  "upgrade refused"    status, reason, peer
 *   debug "connection open" / "connection closed"   conn, user, tenant, peer (+ reason, s)
 *   warn  "log lines suppressed"  kind (the msg of the lines held back), suppressed (count)
 * Rate limits: a token bucket per kind — "upgrade refused" and "api auth failed" 20 lines
 * at once then 1 a second; access lines of anonymous callers (probes, scrapers) 100 at
 * once then 20 a second; admin callers and connection lines are not limited (an admin
 * token holder and --log-level debug are trusted). Lines held back are counted and
 * reported in one "log lines suppressed" line 10 s after the first of them (so at most
 * one such line per kind every 10 s).
 *
 * Threading: loop thread only (the in-flight table and the buckets are unlocked). */
#ifndef NT_ACCESSLOG_H
#define NT_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "nt_conn.h"
#include "nt_http.h"

struct nt_api_match;

/* ---- the limiter (pure: time is passed in) ---- */

typedef struct nt_logbucket {
  double tokens;        /* lines that may be written now */
  uint64_t last_ms;     /* last refill */
  uint64_t suppressed;  /* lines held back since the last summary */
  uint64_t window_ms;   /* when the first of them was held back */
  int started;
} nt_logbucket;

/* Takes one token at `now_ms` from a bucket of `burst` tokens refilled at `per_s` a
 * second. Returns 1 when the line may be written, 0 when it is held back (counted). */
int nt_logbucket_take(nt_logbucket *b, uint64_t now_ms, double per_s, double burst);

/* The number of lines held back to report now (then reset), or 0: reported once
 * `interval_ms` passed since the first of them was held back. */
uint64_t nt_logbucket_summary(nt_logbucket *b, uint64_t now_ms, uint64_t interval_ms);

/* ---- the node's lines ---- */

enum nt_caller { NT_CALLER_ANONYMOUS = 0, NT_CALLER_TOKEN = 1, NT_CALLER_ADMIN = 2, NT_CALLER_SIGV4 = 3 };

/* The route template of a routed request ("/v1/tenants/{tenant}/rooms/{room}/messages",
 * "/@connections/{connectionId}", "/metrics", ...; "unmatched" for no route). Static. */
const char *nt_accesslog_template(int route);

/* The caller kind of an API request: admin with the configured token, sigv4 with an AWS
 * Signature Version 4 Authorization header (verified or not: the status tells), token
 * with any other bearer token or Authorization header, anonymous without one. */
int nt_accesslog_caller(const char *admin_token, const char *authorization);

/* An API request on `c` was routed (`m`); its line is written by nt_accesslog_end. */
void nt_accesslog_begin(const nt_conn *c, const nt_http_req *req,
                        const struct nt_api_match *m, const char *admin_token);
/* The response to the request on `c` has `status`: writes its line (once). */
void nt_accesslog_end(const nt_conn *c, int status);
/* `c` is being freed: drops a request that never got an answer. */
void nt_accesslog_forget(const nt_conn *c);

void nt_accesslog_upgrade_refused(const nt_conn *c, int status, const char *why);
void nt_accesslog_conn_open(const nt_conn *c);
void nt_accesslog_conn_close(const nt_conn *c, uint64_t now_ms);

/* Once a second (the node's sweep): summaries of held-back lines after a flood ended. */
void nt_accesslog_tick(void);

#endif
