/* nt_metrics: Prometheus text rendering of the node's counters. */
#include "nt_metrics.h"

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

void nt_metrics_render(const nt_metrics *m, nt_prom *w) {
  nt_prom_metric(w, "connections", "gauge", "Open WebSocket connections.", m->connections);
  nt_prom_metric(w, "connections_total", "counter", "WebSocket upgrades completed.", m->connections_total);
  nt_prom_metric(w, "upgrades_rejected_total", "counter", "Upgrade requests refused.", m->upgrades_rejected);
  nt_prom_metric(w, "auth_failures_total", "counter", "Upgrades refused with 401.", m->auth_failures);
  nt_prom_metric(w, "origin_rejected_total", "counter", "Upgrades refused with 403 (origin).", m->origin_rejected);
  nt_prom_metric(w, "capacity_rejected_total", "counter", "Upgrades refused with 503.", m->capacity_rejected);
  nt_prom_metric(w, "joins_total", "counter", "Room joins.", m->joins);
  nt_prom_metric(w, "leaves_total", "counter", "Room leaves.", m->leaves);
  nt_prom_metric(w, "messages_in_total", "counter", "Client messages received.", m->messages_in);
  nt_prom_metric(w, "messages_out_total", "counter", "Frames queued to clients.", m->messages_out);
  nt_prom_metric(w, "published_total", "counter", "Envelopes published to the bus.", m->published);
  nt_prom_metric(w, "bus_received_total", "counter", "Envelopes received from the bus.", m->bus_received);
  nt_prom_metric(w, "deliveries_total", "counter", "Messages queued to local members.", m->deliveries);
  nt_prom_metric(w, "bytes_in_total", "counter", "Bytes read from clients.", m->bytes_in);
  nt_prom_metric(w, "bytes_out_total", "counter", "Bytes written to clients.", m->bytes_out);
  nt_prom_metric(w, "slow_consumer_closes_total", "counter", "Connections closed for exceeding the send queue bound.", m->slow_consumer_closes);
  nt_prom_metric(w, "idle_timeouts_total", "counter", "Connections closed for silence.", m->timeouts);
  nt_prom_metric(w, "protocol_errors_total", "counter", "Error frames sent for bad client input.", m->protocol_errors);
  nt_prom_metric(w, "bus_reconnects_total", "counter", "Message bus reconnections.", m->bus_reconnects);
  nt_prom_metric(w, "store_reconnects_total", "counter", "Presence store reconnections.", m->store_reconnects);
  nt_prom_metric(w, "bad_envelopes_total", "counter", "Bus messages dropped as invalid.", m->bad_envelopes);
  nt_prom_metric(w, "api_requests_total", "counter", "HTTP API requests.", m->api_requests);
  nt_prom_head(w, "api_responses_total", "counter", "HTTP API responses by status.");
  for (int i = 0; i < NT_API_STATUS_SLOTS; i++) {
    if (nt_api_status_codes[i])
      nt_prom_printf(w, "natter_api_responses_total{code=\"%d\"} %llu\n", nt_api_status_codes[i],
                (unsigned long long)m->api_responses[i]);
    else
      nt_prom_printf(w, "natter_api_responses_total{code=\"other\"} %llu\n",
                (unsigned long long)m->api_responses[i]);
  }
  nt_prom_metric(w, "integration_invocations_total", "counter", "HTTP integration invocations sent (retries not counted).", m->integ_invocations);
  nt_prom_metric(w, "integration_failures_total", "counter", "Invocations that failed: refused, garbage, too large, 5xx or timeout.", m->integ_failures);
  nt_prom_metric(w, "integration_timeouts_total", "counter", "Invocations with no answer within --integration-timeout.", m->integ_timeouts);
  nt_prom_metric(w, "integration_rate_limited_total", "counter", "Frames refused with rate_limited: integration queue full.", m->integ_rate_limited);
  nt_prom_metric(w, "integration_connect_refused_total", "counter", "Upgrades refused by the $connect route.", m->integ_connect_refused);
  nt_prom_metric(w, "integration_retries_total", "counter", "$disconnect invocations retried.", m->integ_retries);
  nt_prom_metric(w, "integration_dropped_total", "counter", "$disconnect invocations given up after their retries.", m->integ_dropped);
  nt_prom_metric(w, "integration_pending", "gauge", "Invocations in flight or waiting.", m->integ_inflight);
  nt_prom_metric(w, "webhook_events_total", "counter", "Webhook events emitted.", m->webhook_events);
  nt_prom_metric(w, "webhook_delivered_total", "counter", "Webhook events taken by the endpoint.", m->webhook_delivered);
  nt_prom_metric(w, "webhook_dropped_total", "counter", "Webhook events dropped: queue full.", m->webhook_dropped);
  nt_prom_metric(w, "webhook_rejected_total", "counter", "Webhook events dropped: the endpoint answered 4xx.", m->webhook_rejected);
  nt_prom_metric(w, "webhook_retries_total", "counter", "Webhook requests retried (5xx, timeout, refused).", m->webhook_retries);
  nt_prom_metric(w, "webhook_queue", "gauge", "Webhook events waiting for delivery.", m->webhook_queue);
  nt_prom_metric(w, "authz_requests_total", "counter", "Upgrades sent to the external authorizer.", m->authz_requests);
  nt_prom_metric(w, "authz_denied_total", "counter", "Upgrades the external authorizer refused (403).", m->authz_denied);
  nt_prom_metric(w, "authz_unavailable_total", "counter", "Upgrades refused with 503: no, late or undecodable authorizer reply.", m->authz_unavailable);
  nt_prom_metric(w, "rate_limited_total", "counter", "Client messages refused by the per-connection rate limit.", m->rate_limited);
  nt_prom_metric(w, "rate_limit_closes_total", "counter", "Connections closed with 1008 for sustained flooding.", m->rate_limit_closes);
  nt_prom_metric(w, "presence_events_suppressed_total", "counter", "Presence online/offline events not fanned out because the room has more members than --presence-max-members (counted where dropped: the announcing node, or a receiving node).", m->presence_suppressed);
  nt_prom_metric(w, "room_limit_rejected_total", "counter", "Joins refused by --max-rooms-per-connection.", m->room_limit_rejected);
  nt_prom_metric(w, "user_wildcard_tenants", "gauge", "Tenants whose users this node receives through one natter.user.<tenant>.* subscription (--max-user-subscriptions).", m->user_wildcards);
  nt_prom_metric(w, "user_limit_rejected_total", "counter", "Upgrades refused with 429 by --max-connections-per-user.", m->user_limit_rejected);
  nt_prom_metric(w, "handshake_timeouts_total", "counter", "Connections closed for not completing an HTTP request within --handshake-timeout.", m->handshake_timeouts);
  nt_prom_metric(w, "accept_paused_total", "counter", "Times accepting paused for 100 ms because the process or system was out of file descriptors.", m->accept_paused);
  nt_prom_metric(w, "heap_trims_total", "counter", "Times the heap a burst of handshakes freed was given back to the operating system (malloc_trim).", m->heap_trims);
  nt_prom_metric(w, "deflate_frames_total", "counter", "permessage-deflate frames built (once per message per node, shared by its members).", m->deflate_frames);
  nt_prom_metric(w, "deflate_deliveries_total", "counter", "Compressed frames queued to connections.", m->deflate_deliveries);
  nt_prom_metric(w, "deflate_skipped_total", "counter", "Frames left uncompressed because compression would not shrink them.", m->deflate_skipped);
  nt_prom_metric(w, "deflate_in_bytes_total", "counter", "Payload bytes given to the compressor.", m->deflate_in_bytes);
  nt_prom_metric(w, "deflate_out_bytes_total", "counter", "Payload bytes the compressor produced.", m->deflate_out_bytes);
  nt_prom_metric(w, "inflate_messages_total", "counter", "Compressed client messages inflated.", m->inflate_messages);
  nt_prom_metric(w, "inflate_refused_total", "counter", "Compressed client messages refused (inflated size over the limit, or corrupt).", m->inflate_refused);
  nt_prom_metric(w, "tls_handshakes_total", "counter", "TLS handshakes completed.", m->tls_handshakes);
  nt_prom_metric(w, "tls_handshake_failures_total", "counter", "TLS handshakes that failed (version, ciphers, not TLS).", m->tls_handshake_failures);
  nt_prom_metric(w, "tls_reloads_total", "counter", "Certificate reloads (SIGHUP) that took effect.", m->tls_reloads);
  nt_prom_metric(w, "tls_reload_failures_total", "counter", "Certificate reloads that failed (the previous certificate stays).", m->tls_reload_failures);
  nt_prom_head(w, "delivery_latency_seconds", "histogram", "Origin publish to local fan-out.");
  uint64_t cum = 0;
  for (int i = 0; i < NT_LAT_BUCKETS; i++) {
    cum += m->lat_bucket[i];
    if (i < NT_LAT_BUCKETS - 1)
      nt_prom_printf(w, "natter_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
                nt_lat_bounds_ms[i] / 1000.0, (unsigned long long)cum);
    else
      nt_prom_printf(w, "natter_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
  }
  nt_prom_printf(w, "natter_delivery_latency_seconds_sum %.6f\nnatter_delivery_latency_seconds_count %llu\n",
            m->lat_sum_ms / 1000.0, (unsigned long long)m->lat_count);
  static const struct { const char *name, *help; } route_families[NT_ROUTE_OUTCOMES] = {
      {"route_replies_total", "Custom route requests their backend answered, by action."},
      {"route_timeouts_total", "Custom route requests unanswered within --route-timeout, by action."},
      {"route_unknown_total", "Custom route requests with no backend (error unknown_action), by action."},
      {"route_failures_total", "Custom route requests that could not be sent, by action."}};
  const nt_route_stats *rs = &m->routes;
  char help[160], labels[NT_ROUTE_KEY_MAX + 16];
  snprintf(help, sizeof help, "Custom route ($default) requests, by action (the first %d "
                              "well-formed actions; the others count as route=\"other\").",
           NT_ROUTE_KEYS);
  nt_prom_head(w, "route_requests_total", "counter", help);
  for (uint32_t k = 0; k <= rs->nkeys; k++) {
    uint32_t row = k < rs->nkeys ? k : NT_ROUTE_KEYS;
    uint64_t sum = 0;
    for (int o = 0; o < NT_ROUTE_OUTCOMES; o++) sum += rs->counts[row][o];
    snprintf(labels, sizeof labels, "{route=\"%s\"}", k < rs->nkeys ? rs->keys[k] : "other");
    nt_prom_sample(w, "route_requests_total", labels, sum);
  }
  for (int o = 0; o < NT_ROUTE_OUTCOMES; o++) {
    nt_prom_head(w, route_families[o].name, "counter", route_families[o].help);
    for (uint32_t k = 0; k <= rs->nkeys; k++) {
      uint32_t row = k < rs->nkeys ? k : NT_ROUTE_KEYS;
      snprintf(labels, sizeof labels, "{route=\"%s\"}", k < rs->nkeys ? rs->keys[k] : "other");
      nt_prom_sample(w, route_families[o].name, labels, rs->counts[row][o]);
    }
  }
  nt_procmetrics_render(w, NATTER_VERSION, NATTER_COMMIT);
}
