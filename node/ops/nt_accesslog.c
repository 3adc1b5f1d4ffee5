/* nt_accesslog: API access lines, refusals and connection lines, rate-limited per kind. */
#include "nt_accesslog.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nt_api.h"
#include "nt_log.h"
#include "nt_map.h"

#define SUMMARY_INTERVAL_MS 10000

/* ================================================================ limiter ======== */

int nt_logbucket_take(nt_logbucket *b, uint64_t now_ms, double per_s, double burst) {
  if (!b->started) {
    b->started = 1;
    b->tokens = burst;
    b->last_ms = now_ms;
  } else if (now_ms > b->last_ms) {
    b->tokens += (double)(now_ms - b->last_ms) * per_s / 1000.0;
    if (b->tokens > burst) b->tokens = burst;
    b->last_ms = now_ms;
  }
  if (b->tokens >= 1.0) {
    b->tokens -= 1.0;
    return 1;
  }
  if (b->suppressed++ == 0) b->window_ms = now_ms;
  return 0;
}

uint64_t nt_logbucket_summary(nt_logbucket *b, uint64_t now_ms, uint64_t interval_ms) {
  if (!b->suppressed || now_ms - b->window_ms < interval_ms) return 0;
  uint64_t n = b->suppressed;
  b->suppressed = 0;
  return n;
}

/* ================================================================ kinds ========== */

enum { K_UPGRADE, K_AUTH, K_ANON, K_COUNT };

static const struct {
  const char *msg;
  int level;
  double per_s, burst;
} kinds[K_COUNT] = {
    {"upgrade refused", NT_LOG_WARN, 1, 20},
    {"api auth failed", NT_LOG_WARN, 1, 20},
    {"api request", NT_LOG_INFO, 20, 100},
};

/* Process-wide like the log itself; loop thread only. */
static nt_logbucket g_buckets[K_COUNT];

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void summarize(int k, uint64_t now) {
  uint64_t n = nt_logbucket_summary(&g_buckets[k], now, SUMMARY_INTERVAL_MS);
  if (n)
    nt_log_warn("log lines suppressed", "{s:s, s:I, s:i}", "kind", kinds[k].msg,
                "suppressed", (json_int_t)n, "window_s", SUMMARY_INTERVAL_MS / 1000);
}

/* Writes the line of kind `k` unless its bucket is empty. */
static void limited(int k, const char *fmt, ...) {
  if (!nt_log_enabled(kinds[k].level)) return;
  uint64_t now = now_ms();
  int ok = nt_logbucket_take(&g_buckets[k], now, kinds[k].per_s, kinds[k].burst);
  summarize(k, now);
  if (!ok) return;
  va_list ap;
  va_start(ap, fmt);
  nt_vlog(kinds[k].level, kinds[k].msg, fmt, ap);
  va_end(ap);
}

void nt_accesslog_tick(void) {
  uint64_t now = now_ms();
  for (int k = 0; k < K_COUNT; k++) summarize(k, now);
}

/* ================================================================ API ============ */

const char *nt_accesslog_template(int route) {
  switch (route) {
  case NT_API_HEALTHZ: return "/healthz";
  case NT_API_READYZ: return "/readyz";
  case NT_API_METRICS: return "/metrics";
  case NT_API_CONN_GET:
  case NT_API_CONN_POST:
  case NT_API_CONN_DELETE: return "/@connections/{connectionId}";
  case NT_API_ROOM_MESSAGE:
  case NT_API_ROOM_HISTORY: return "/v1/tenants/{tenant}/rooms/{room}/messages";
  case NT_API_USER_MESSAGE: return "/v1/tenants/{tenant}/users/{user}/messages";
  case NT_API_ROOM_PRESENCE: return "/v1/tenants/{tenant}/rooms/{room}/presence";
  default: return "unmatched";
  }
}

static const char *const caller_names[] = {"anonymous", "token", "admin", "sigv4"};

int nt_accesslog_caller(const char *admin_token, const char *authorization) {
  if (!authorization) return NT_CALLER_ANONYMOUS;
  if (!strncmp(authorization, "AWS4-HMAC-SHA256 ", 17)) return NT_CALLER_SIGV4;
  return nt_api_check_auth(admin_token, authorization) == 0 ? NT_CALLER_ADMIN
                                                            : NT_CALLER_TOKEN;
}

/* A request being answered: at most one per API connection (nt_conn.http_busy). */
typedef struct inflight {
  uint64_t t0;        /* uv_hrtime */
  const char *method; /* static */
  const char *route;  /* static template */
  int caller;
  int is_public;
  char peer[NT_CONN_PEER_STRLEN];
} inflight;

static nt_map g_inflight = NT_MAP_INIT; /* "%p" of the connection -> inflight */

static size_t conn_key(const nt_conn *c, char *key, size_t cap) {
  return (size_t)snprintf(key, cap, "%p", (const void *)c);
}

void nt_accesslog_begin(const nt_conn *c, const nt_http_req *req, const nt_api_match *m,
                        const char *admin_token) {
  if (!nt_log_enabled(NT_LOG_INFO) && !nt_log_enabled(NT_LOG_WARN)) return;
  inflight *r = malloc(sizeof *r);
  if (!r) return;
  r->t0 = uv_hrtime();
  r->method = http_method_str(req->method);
  r->route = nt_accesslog_template(m->route);
  r->is_public = m->is_public;
  r->caller = nt_accesslog_caller(admin_token, req->hdr[NT_HDR_AUTHORIZATION]);
  nt_conn_peer(c, r->peer);
  char key[32];
  size_t kl = conn_key(c, key, sizeof key);
  void *old = NULL;
  if (nt_map_put(&g_inflight, key, kl, r, &old)) free(r);
  free(old);
}

void nt_accesslog_end(const nt_conn *c, int status) {
  char key[32];
  size_t kl = conn_key(c, key, sizeof key);
  inflight *r = g_inflight.len ? nt_map_del(&g_inflight, key, kl) : NULL;
  if (!r) return;
  double ms = (double)(uv_hrtime() - r->t0) / 1e6;
  ms = (double)(int64_t)(ms * 1000 + 0.5) / 1000; /* microseconds are enough */
  const char *fmt = "{s:s, s:s, s:i, s:f, s:s, s:s}";
#define FIELDS "method", r->method, "route", r->route, "status", status, "ms", ms, "caller", \
               caller_names[r->caller], "peer", r->peer
  if ((status == 401 || status == 403) && !r->is_public)
    limited(K_AUTH, fmt, FIELDS);
  else if (r->caller == NT_CALLER_ADMIN || r->caller == NT_CALLER_SIGV4) /* signed: trusted */
    nt_log_info(kinds[K_ANON].msg, fmt, FIELDS);
  else
    limited(K_ANON, fmt, FIELDS);
#undef FIELDS
  free(r);
}

void nt_accesslog_forget(const nt_conn *c) {
  if (!g_inflight.len) return;
  char key[32];
  size_t kl = conn_key(c, key, sizeof key);
  free(nt_map_del(&g_inflight, key, kl));
  if (!g_inflight.len) nt_map_clear(&g_inflight);
}

/* ================================================================ WebSocket ====== */

void nt_accesslog_upgrade_refused(const nt_conn *c, int status, const char *why) {
  char peer[NT_CONN_PEER_STRLEN];
  limited(K_UPGRADE, "{s:i, s:s, s:s}", "status", status, "reason", why ? why : "",
          "peer", nt_conn_peer(c, peer));
}

void nt_accesslog_conn_open(const nt_conn *c) {
  if (!nt_log_enabled(NT_LOG_DEBUG)) return;
  char peer[NT_CONN_PEER_STRLEN];
  nt_log_debug("connection open", "{s:s, s:s?, s:s?, s:s}", "conn", c->id, "user",
               c->ident.user, "tenant", c->ident.tenant, "peer", nt_conn_peer(c, peer));
}

static const char *close_reason(int r) {
  switch (r) {
  case NT_CLOSE_CLIENT: return "client";
  case NT_CLOSE_TIMEOUT: return "idle_timeout";
  case NT_CLOSE_SLOW: return "slow_consumer";
  case NT_CLOSE_KICKED: return "kicked";
  case NT_CLOSE_PROTOCOL: return "protocol_error";
  case NT_CLOSE_SHUTDOWN: return "shutdown";
  default: return "unknown";
  }
}

void nt_accesslog_conn_close(const nt_conn *c, uint64_t now) {
  if (!nt_log_enabled(NT_LOG_DEBUG)) return;
  char peer[NT_CONN_PEER_STRLEN];
  double s = now >= c->connected_at ? (double)(now - c->connected_at) / 1000.0 : 0;
  nt_log_debug("connection closed", "{s:s, s:s?, s:s?, s:s, s:s, s:f}", "conn", c->id,
               "user", c->ident.user, "tenant", c->ident.tenant, "peer",
               nt_conn_peer(c, peer), "reason", close_reason(c->close_reason), "s", s);
}
