/* nt_metrics: the node's counters and latency histogram, rendered as Prometheus text.
 * Every node layer counts into the same struct, so it lives in the lowest one (net): a
 * connection gets a pointer to it in its environment, chat and ops embed it in nt_chat.
 * Plain integers: loop thread only. */
#ifndef NT_METRICS_H
#define NT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "nt_prom.h"

#define NT_LAT_BUCKETS 16
#define NT_API_STATUS_SLOTS 18

/* Custom routes ($default, natter.route.<action>) are counted per action for the first
 * NT_ROUTE_KEYS well-formed actions (1..NT_ROUTE_KEY_MAX bytes of [A-Za-z0-9_-]); every
 * other action, and those past the cap, count as route="other", so a client sending
 * random action names cannot grow the metrics. */
#define NT_ROUTE_KEYS 64
#define NT_ROUTE_KEY_MAX 64

enum nt_route_outcome {
  NT_ROUTE_REPLIED = 0,  /* the backend answered */
  NT_ROUTE_TIMEOUT,      /* no answer within --route-timeout */
  NT_ROUTE_UNKNOWN,      /* no backend subscribed, --routes off, or an action that cannot
                            be a subject: error unknown_action */
  NT_ROUTE_FAILED,       /* the request could not be sent (bus down, memory) */
  NT_ROUTE_OUTCOMES
};

typedef struct nt_route_stats {
  uint32_t nkeys;
  char keys[NT_ROUTE_KEYS][NT_ROUTE_KEY_MAX + 1];
  uint64_t counts[NT_ROUTE_KEYS + 1][NT_ROUTE_OUTCOMES]; /* the last row: "other" */
} nt_route_stats;

typedef struct nt_metrics {
  uint64_t connections;          /* gauge: open WebSocket connections */
  uint64_t connections_total;    /* upgrades completed */
  uint64_t upgrades_rejected;    /* upgrade requests refused (any status) */
  uint64_t auth_failures;        /* 401s */
  uint64_t origin_rejected;      /* 403s */
  uint64_t capacity_rejected;    /* 503s past --max-connections or draining */
  uint64_t joins, leaves;
  uint64_t messages_in;          /* client frames received */
  uint64_t messages_out;         /* frames queued to clients */
  uint64_t published;            /* envelopes published to the bus */
  uint64_t bus_received;         /* envelopes received from the bus */
  uint64_t deliveries;           /* room/direct messages queued to local members */
  uint64_t presence_suppressed;  /* presence events not fanned out: room > --presence-max-members */
  uint64_t bytes_in, bytes_out;
  uint64_t slow_consumer_closes;
  uint64_t timeouts;             /* idle-timeout closes */
  uint64_t protocol_errors;      /* error frames sent for bad client input */
  uint64_t bus_reconnects, store_reconnects;
  uint64_t api_requests;
  uint64_t bad_envelopes;        /* bus messages dropped as undecodable or unrenderable */
  uint64_t api_responses[NT_API_STATUS_SLOTS]; /* by status, see nt_api_status_codes */
  uint64_t authz_requests;       /* upgrades sent to the external authorizer */
  uint64_t authz_denied;         /* ... refused by it (403) */
  uint64_t authz_unavailable;    /* ... unanswered, timed out or undecodable (503) */
  uint64_t rate_limited;         /* client messages refused by the rate limit */
  uint64_t rate_limit_closes;    /* connections closed with 1008 for sustained flooding */
  uint64_t room_limit_rejected;  /* joins refused by --max-rooms-per-connection */
  uint64_t user_wildcards;       /* tenants served by one natter.user.<tenant>.* subscription */
  uint64_t user_limit_rejected;  /* upgrades refused with 429 (--max-connections-per-user) */
  uint64_t handshake_timeouts;   /* HTTP-phase connections closed by --handshake-timeout */
  uint64_t accept_paused;        /* accepts paused for lack of file descriptors (EMFILE...) */
  uint64_t heap_trims;           /* freed heap given back after a burst of handshakes (nt_heap) */
  /* permessage-deflate (nt_deflate.c) and TLS (nt_tls.c) */
  uint64_t deflate_frames;       /* compressed variants built: once per frame, not per member */
  uint64_t deflate_deliveries;   /* compressed frames queued to connections */
  uint64_t deflate_skipped;      /* frames that compression would not shrink (sent plain) */
  uint64_t deflate_in_bytes, deflate_out_bytes; /* payload bytes before/after compression */
  uint64_t inflate_messages;     /* compressed client messages inflated */
  uint64_t inflate_refused;      /* ... refused: over --max-message-bytes (1009) or corrupt */
  uint64_t tls_handshakes;       /* TLS handshakes completed */
  uint64_t tls_handshake_failures; /* ... failed (protocol version, ciphers, garbage) */
  uint64_t tls_reloads;          /* certificate reloads (SIGHUP) that took effect */
  uint64_t tls_reload_failures;  /* ... that failed (the old certificate stays) */
  nt_route_stats routes;         /* custom route requests by action and outcome */
  /* HTTP integration (nt_integ.c) */
  uint64_t integ_invocations;    /* invocations sent (retries not counted) */
  uint64_t integ_failures;       /* ... failed: refused, garbage, too large, 5xx or timeout */
  uint64_t integ_timeouts;       /* ... of which timed out */
  uint64_t integ_rate_limited;   /* frames refused with rate_limited: queue full */
  uint64_t integ_connect_refused; /* upgrades refused by $connect */
  uint64_t integ_retries;        /* $disconnect retries */
  uint64_t integ_dropped;        /* $disconnect given up after its retries */
  uint64_t integ_inflight;       /* gauge: invocations in flight or waiting */
  /* signed webhooks (nt_webhook.c) */
  uint64_t webhook_events;       /* events emitted */
  uint64_t webhook_delivered;    /* ... taken by the endpoint (2xx) */
  uint64_t webhook_dropped;      /* ... dropped: queue full */
  uint64_t webhook_rejected;     /* ... dropped: the endpoint answered 4xx */
  uint64_t webhook_retries;      /* batch requests retried (5xx, timeout, refused) */
  uint64_t webhook_queue;        /* gauge: events waiting */
  /* publish -> deliver latency on this node (origin timestamp to local fan-out), ms */
  uint64_t lat_bucket[NT_LAT_BUCKETS];
  uint64_t lat_count;
  double lat_sum_ms;
} nt_metrics;

/* Upper bounds (ms) of the latency buckets; the last is +Inf. */
extern const double nt_lat_bounds_ms[NT_LAT_BUCKETS];

void nt_metrics_observe_latency(nt_metrics *m, double ms);

/* HTTP statuses the API counts separately (natter_api_responses_total{code=...}); the last
 * slot (0) counts every other status. */
extern const int nt_api_status_codes[NT_API_STATUS_SLOTS];

/* Counts one API response with `status`. */
void nt_metrics_count_api_status(nt_metrics *m, int status);

/* Counts one custom route request for `action` (may be NULL) that ended with `outcome`
 * (enum nt_route_outcome). */
void nt_metrics_count_route(nt_metrics *m, const char *action, int outcome);

/* Writes all of `m` in Prometheus text format to `w` (nt_prom.h), the process_* families
 * and natter_build_info included. */
void nt_metrics_render(const nt_metrics *m, nt_prom *w);

#endif
