/* nt_config: natter-node configuration from flags and NATTER_* environment variables.
 * `--foo-bar VALUE` and `NATTER_FOO_BAR=VALUE` set the same option; a flag wins. */
#ifndef NT_CONFIG_H
#define NT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct nt_config {
  char *listen;              /* host:port of WebSockets, demo files, /healthz, /readyz */
  char *api_listen;          /* host:port of the HTTP API */
  char *nats;                /* NATS URL(s), NULL: standalone */
  char *redis;               /* Redis URL, NULL: standalone */
  char *nats_creds, *nats_nkey_seed; /* NATS credentials files (one or neither) */
  char *nats_tls_ca, *nats_tls_cert, *nats_tls_key; /* NATS TLS (CA; client cert + key) */
  char *node_id;             /* generated when not given */
  char *jwt_secret, *jwt_public_key, *jwt_alg;
  char *default_tenant;
  char *admin_token;
  char *allowed_origins;     /* comma-separated, NULL: any */
  char *static_dir;
  char *client_js;           /* served at /natter.js instead of static_dir's file */
  char *redis_prefix;
  char *redis_sentinel;      /* Sentinel host:port list, NULL: --redis's fixed address */
  char *redis_master;        /* the sentinels' name of the primary */
  char *redis_sentinel_user, *redis_sentinel_password;
  char *log_level;
  size_t max_message_bytes;
  size_t send_queue_bytes;
  double ping_interval_s, idle_timeout_s, drain_grace_s, route_timeout_s;
  long max_connections;      /* 0: derived from the open-files limit */
  int routes;                /* bool */
  int dev_tokens;            /* bool: GET /dev/token (development only) */
  int compression;           /* bool: permessage-deflate (docs/tls-compression.md) */
  size_t compression_min_bytes; /* shorter messages go uncompressed */
  int history;               /* -1 auto (on), 0 off, 1 on (docs/history.md) */
  double history_max_age_s;  /* messages older than this leave the history (0: no limit) */
  long history_max_per_room; /* messages kept per room */
  char *history_storage;     /* "file" | "memory" (JetStream) */
  long history_replicas;     /* JetStream stream replicas (1..5) */
  char *tls_cert, *tls_key;
  char *tls_min_version;     /* "1.3" | "1.2" */
  int api_tls;               /* -1 auto (on with --tls-cert), 0 off, 1 on */
  int trust_proxy;           /* take the source ip from X-Forwarded-For */
  double node_ttl_s;         /* node liveness record TTL in Redis */
  double node_refresh_s;     /* node liveness refresh interval */
  int auth_request;          /* bool: ask natter.auth.connect before accepting an upgrade */
  double auth_timeout_s;     /* wait for the authorizer's reply (then 503) */
  /* limits (docs/security.md; enforced in nt_limits.c) */
  long rate_limit;           /* client messages per second per connection (0: off) */
  long rate_burst;           /* token bucket size (0: same as rate_limit) */
  long rate_close_after;     /* refused messages within 10 s that close with 1008 (0: never) */
  long max_rooms_per_conn;   /* rooms one connection may be in (forbidden beyond) */
  long max_conns_per_user;   /* connections of one user on this node (0: unlimited; 429) */
  size_t max_header_bytes;   /* HTTP request line + headers (431 beyond) */
  double handshake_timeout_s; /* a complete HTTP request must arrive within this */
  long max_user_subs;        /* per tenant: users with their own bus subscription before the
                              * tenant's user wildcard takes over (nt_hub.h) */
} nt_config;

/* Parses argv and the environment into *cfg (defaults first). Returns 0 on success, 1 when
 * --help or --version was printed (exit 0), or -1 after printing an error to `err`. */
int nt_config_parse(nt_config *cfg, int argc, char **argv, FILE *out, FILE *err);

/* Checks option combinations (NATS without Redis, missing key...). Returns 0 or -1 after
 * printing why to `err`. */
int nt_config_validate(const nt_config *cfg, FILE *err);

void nt_config_free(nt_config *cfg);

/* Splits "host:port" ("[v6]:port" too) into the parts. Returns 0 or -1. */
int nt_config_split_hostport(const char *s, char *host, size_t hostcap, int *port);

#endif
