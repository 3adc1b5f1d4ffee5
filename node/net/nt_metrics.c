/* nt_metrics: Prometheus text rendering of the node's counters. */
#include "nt_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_procmetrics.h"

const double nt_lat_bounds_ms[NT_LAT_BUCKETS] = {0.25, 0.5, 1,   2,    5,    10,   25,  50,
                                                 100,  250, 500, 1000, 2500, 5000, 10000, 0};

void nt_metrics_observe_latency(nt_metrics *m, double ms) {
  if (ms < 0) ms = 0;
  int i = 0;
  while (i < NT_LAT_BUCKETS - 1 && ms > nt_lat_bounds_ms[i]) i++;
  m->lat_bucket[i]++;
  m->lat_count++;
  m->lat_sum_ms += ms;
}

const int nt_api_status_codes[NT_API_STATUS_SLOTS] = {
    200, 202, 204, 400, 401, 403, 404, 405, 410, 413, 431, 500, 502, 503, 504, 505, 501, 0};

void nt_metrics_count_api_status(nt_metrics *m, int status) {
  int i = 0;
  while (i < NT_API_STATUS_SLOTS - 1 && nt_api_status_codes[i] != status) i++;
  m->api_responses[i]++;
}

static int route_key_ok(const char *a) {
  size_t n = 0;
  for (; a && a[n]; n++) {
    char c = a[n];
    if (n == NT_ROUTE_KEY_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                   (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return 0;
  }
  return n > 0;
}

void nt_metrics_count_route(nt_metrics *m, const char *action, int outcome) {
  if (outcome < 0 || outcome >= NT_ROUTE_OUTCOMES) outcome = NT_ROUTE_FAILED;
  nt_route_stats *r = &m->routes;
  uint32_t i = NT_ROUTE_KEYS; /* "other" */
  if (route_key_ok(action) && strcmp(action, "other")) {
    uint32_t k = 0;
    while (k < r->nkeys && strcmp(r->keys[k], action)) k++;
    if (k == r->nkeys && k < NT_ROUTE_KEYS) {
      memcpy(r->keys[k], action, strlen(action) + 1);
      r->nkeys++;
    }
    if (k < r->nkeys) i = k;
  }
  r->counts[i][outcome]++;
}

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
    size_t ncap = (b->cap + (size_t)n + 1) * 2;
    char *np = realloc(b->p, ncap);
    if (!np) { b->oom = 1; return; }
    b->p = np;
    b->cap = ncap;
  }
}

static void metric(sbuf *b, const char *name, const char *type, const char *help,
                   uint64_t v) {
  sb_printf(b, "# HELP natter_%s %s\n# TYPE natter_%s %s\nnatter_%s %llu\n", name, help,
            name, type, name, (unsigned long long)v);
}

char *nt_metrics_render(const nt_metrics *m, const char *extra) {
  sbuf b = {malloc(4096), 0, 4096, 0};
  if (!b.p) return NULL;
  b.p[0] = '\0';
  metric(&b, "connections", "gauge", "Open WebSocket connections.", m->connections);
  metric(&b, "connections_total", "counter", "WebSocket upgrades completed.", m->connections_total);
  metric(&b, "upgrades_rejected_total", "counter", "Upgrade requests refused.", m->upgrades_rejected);
  metric(&b, "auth_failures_total", "counter", "Upgrades refused with 401.", m->auth_failures);
  metric(&b, "origin_rejected_total", "counter", "Upgrades refused with 403 (origin).", m->origin_rejected);
  metric(&b, "capacity_rejected_total", "counter", "Upgrades refused with 503.", m->capacity_rejected);
  metric(&b, "joins_total", "counter", "Room joins.", m->joins);
  metric(&b, "leaves_total", "counter", "Room leaves.", m->leaves);
  metric(&b, "messages_in_total", "counter", "Client messages received.", m->messages_in);
  metric(&b, "messages_out_total", "counter", "Frames queued to clients.", m->messages_out);
  metric(&b, "published_total", "counter", "Envelopes published to the bus.", m->published);
  metric(&b, "bus_received_total", "counter", "Envelopes received from the bus.", m->bus_received);
  metric(&b, "deliveries_total", "counter", "Messages queued to local members.", m->deliveries);
  metric(&b, "bytes_in_total", "counter", "Bytes read from clients.", m->bytes_in);
  metric(&b, "bytes_out_total", "counter", "Bytes written to clients.", m->bytes_out);
  metric(&b, "slow_consumer_closes_total", "counter", "Connections closed for exceeding the send queue bound.", m->slow_consumer_closes);
  metric(&b, "idle_timeouts_total", "counter", "Connections closed for silence.", m->timeouts);
  metric(&b, "protocol_errors_total", "counter", "Error frames sent for bad client input.", m->protocol_errors);
  metric(&b, "bus_reconnects_total", "counter", "Message bus reconnections.", m->bus_reconnects);
  metric(&b, "store_reconnects_total", "counter", "Presence store reconnections.", m->store_reconnects);
  metric(&b, "bad_envelopes_total", "counter", "Bus messages dropped as invalid.", m->bad_envelopes);
  metric(&b, "api_requests_total", "counter", "HTTP API requests.", m->api_requests);
  sb_printf(&b, "# HELP natter_api_responses_total HTTP API responses by status.\n"
                "# TYPE natter_api_responses_total counter\n");
  for (int i = 0; i < NT_API_STATUS_SLOTS; i++) {
    if (nt_api_status_codes[i])
      sb_printf(&b, "natter_api_responses_total{code=\"%d\"} %llu\n", nt_api_status_codes[i],
                (unsigned long long)m->api_responses[i]);
    else
      sb_printf(&b, "natter_api_responses_total{code=\"other\"} %llu\n",
                (unsigned long long)m->api_responses[i]);
  }
  metric(&b, "integration_invocations_total", "counter", "HTTP integration invocations sent (retries not counted).", m->integ_invocations);
  metric(&b, "integration_failures_total", "counter", "Invocations that failed: refused, garbage, too large, 5xx or timeout.", m->integ_failures);
  metric(&b, "integration_timeouts_total", "counter", "Invocations with no answer within --integration-timeout.", m->integ_timeouts);
  metric(&b, "integration_rate_limited_total", "counter", "Frames refused with rate_limited: integration queue full.", m->integ_rate_limited);
  metric(&b, "integration_connect_refused_total", "counter", "Upgrades refused by the $connect route.", m->integ_connect_refused);
  metric(&b, "integration_retries_total", "counter", "$disconnect invocations retried.", m->integ_retries);
  metric(&b, "integration_dropped_total", "counter", "$disconnect invocations given up after their retries.", m->integ_dropped);
  metric(&b, "integration_pending", "gauge", "Invocations in flight or waiting.", m->integ_inflight);
  metric(&b, "webhook_events_total", "counter", "Webhook events emitted.", m->webhook_events);
  metric(&b, "webhook_delivered_total", "counter", "Webhook events taken by the endpoint.", m->webhook_delivered);
  metric(&b, "webhook_dropped_total", "counter", "Webhook events dropped: queue full.", m->webhook_dropped);
  metric(&b, "webhook_rejected_total", "counter", "Webhook events dropped: the endpoint answered 4xx.", m->webhook_rejected);
  metric(&b, "webhook_retries_total", "counter", "Webhook requests retried (5xx, timeout, refused).", m->webhook_retries);
  metric(&b, "webhook_queue", "gauge", "Webhook events waiting for delivery.", m->webhook_queue);
  metric(&b, "authz_requests_total", "counter", "Upgrades sent to the external authorizer.", m->authz_requests);
  metric(&b, "authz_denied_total", "counter", "Upgrades the external authorizer refused (403).", m->authz_denied);
  metric(&b, "authz_unavailable_total", "counter", "Upgrades refused with 503: no, late or undecodable authorizer reply.", m->authz_unavailable);
  metric(&b, "rate_limited_total", "counter", "Client messages refused by the per-connection rate limit.", m->rate_limited);
  metric(&b, "rate_limit_closes_total", "counter", "Connections closed with 1008 for sustained flooding.", m->rate_limit_closes);
  metric(&b, "room_limit_rejected_total", "counter", "Joins refused by --max-rooms-per-connection.", m->room_limit_rejected);
  metric(&b, "user_wildcard_tenants", "gauge", "Tenants whose users this node receives through one natter.user.<tenant>.* subscription (--max-user-subscriptions).", m->user_wildcards);
  metric(&b, "user_limit_rejected_total", "counter", "Upgrades refused with 429 by --max-connections-per-user.", m->user_limit_rejected);
  metric(&b, "handshake_timeouts_total", "counter", "Connections closed for not completing an HTTP request within --handshake-timeout.", m->handshake_timeouts);
  metric(&b, "accept_paused_total", "counter", "Times accepting paused for 100 ms because the process or system was out of file descriptors.", m->accept_paused);
  metric(&b, "heap_trims_total", "counter", "Times the heap a burst of handshakes freed was given back to the operating system (malloc_trim).", m->heap_trims);
  metric(&b, "deflate_frames_total", "counter", "permessage-deflate frames built (once per message per node, shared by its members).", m->deflate_frames);
  metric(&b, "deflate_deliveries_total", "counter", "Compressed frames queued to connections.", m->deflate_deliveries);
  metric(&b, "deflate_skipped_total", "counter", "Frames left uncompressed because compression would not shrink them.", m->deflate_skipped);
  metric(&b, "deflate_in_bytes_total", "counter", "Payload bytes given to the compressor.", m->deflate_in_bytes);
  metric(&b, "deflate_out_bytes_total", "counter", "Payload bytes the compressor produced.", m->deflate_out_bytes);
  metric(&b, "inflate_messages_total", "counter", "Compressed client messages inflated.", m->inflate_messages);
  metric(&b, "inflate_refused_total", "counter", "Compressed client messages refused (inflated size over the limit, or corrupt).", m->inflate_refused);
  metric(&b, "tls_handshakes_total", "counter", "TLS handshakes completed.", m->tls_handshakes);
  metric(&b, "tls_handshake_failures_total", "counter", "TLS handshakes that failed (version, ciphers, not TLS).", m->tls_handshake_failures);
  metric(&b, "tls_reloads_total", "counter", "Certificate reloads (SIGHUP) that took effect.", m->tls_reloads);
  metric(&b, "tls_reload_failures_total", "counter", "Certificate reloads that failed (the previous certificate stays).", m->tls_reload_failures);
  sb_printf(&b, "# HELP natter_delivery_latency_seconds Origin publish to local fan-out.\n"
                "# TYPE natter_delivery_latency_seconds histogram\n");
  uint64_t cum = 0;
  for (int i = 0; i < NT_LAT_BUCKETS; i++) {
    cum += m->lat_bucket[i];
    if (i < NT_LAT_BUCKETS - 1)
      sb_printf(&b, "natter_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
                nt_lat_bounds_ms[i] / 1000.0, (unsigned long long)cum);
    else
      sb_printf(&b, "natter_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
  }
  sb_printf(&b, "natter_delivery_latency_seconds_sum %.6f\nnatter_delivery_latency_seconds_count %llu\n",
            m->lat_sum_ms / 1000.0, (unsigned long long)m->lat_count);
  static const struct { const char *name, *help; } route_families[NT_ROUTE_OUTCOMES] = {
      {"route_replies_total", "Custom route requests their backend answered, by action."},
      {"route_timeouts_total", "Custom route requests unanswered within --route-timeout, by action."},
      {"route_unknown_total", "Custom route requests with no backend (error unknown_action), by action."},
      {"route_failures_total", "Custom route requests that could not be sent, by action."}};
  const nt_route_stats *rs = &m->routes;
  sb_printf(&b, "# HELP natter_route_requests_total Custom route ($default) requests, by action "
                "(the first %d well-formed actions; the others count as route=\"other\").\n"
                "# TYPE natter_route_requests_total counter\n", NT_ROUTE_KEYS);
  for (uint32_t k = 0; k <= rs->nkeys; k++) {
    uint32_t row = k < rs->nkeys ? k : NT_ROUTE_KEYS;
    uint64_t sum = 0;
    for (int o = 0; o < NT_ROUTE_OUTCOMES; o++) sum += rs->counts[row][o];
    sb_printf(&b, "natter_route_requests_total{route=\"%s\"} %llu\n",
              k < rs->nkeys ? rs->keys[k] : "other", (unsigned long long)sum);
  }
  for (int o = 0; o < NT_ROUTE_OUTCOMES; o++) {
    sb_printf(&b, "# HELP natter_%s %s\n# TYPE natter_%s counter\n", route_families[o].name,
              route_families[o].help, route_families[o].name);
    for (uint32_t k = 0; k <= rs->nkeys; k++) {
      uint32_t row = k < rs->nkeys ? k : NT_ROUTE_KEYS;
      sb_printf(&b, "natter_%s{route=\"%s\"} %llu\n", route_families[o].name,
                k < rs->nkeys ? rs->keys[k] : "other",
                (unsigned long long)rs->counts[row][o]);
    }
  }
  char proc[2048];
  size_t pl = 0;
  proc[0] = '\0';
  nt_procmetrics_render(proc, sizeof proc, &pl, NATTER_VERSION, NATTER_COMMIT);
  sb_printf(&b, "%s", proc);
  if (extra) sb_printf(&b, "%s", extra);
  if (b.oom) { free(b.p); return NULL; }
  return b.p;
}
