/* nt_config: natter-node configuration from flags and NATTER_* environment variables.
 * `--foo-bar VALUE` and `NATTER_FOO_BAR=VALUE` set the same option; a flag wins. Parsed
 * by main.c; kept in node/chat, the lowest layer that reads it (node/net gets its limits
 * in nt_conn_env instead). */
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
  char *jwt_secret_file;     /* read into jwt_secret by nt_config_parse */
  char *jwt_audience;        /* NULL: aud not checked */
  char *jwt_issuer;          /* NULL: iss not checked */
  char *default_tenant;
  char *admin_token;
  char *admin_token_file;    /* read into admin_token by nt_config_parse */
  char *aws_access_key_id, *aws_secret_access_key; /* SigV4 access to the HTTP API */
  char *aws_secret_access_key_file; /* read into aws_secret_access_key by nt_config_parse */
  char *allowed_origins;     /* comma-separated, NULL: any */
  char *static_dir;
  char *client_js;           /* served at /natter.js instead of static_dir's file */
  char *redis_prefix;
  char *redis_sentinel;      /* Sentinel host:port list, NULL: --redis's fixed address */
  char *redis_master;        /* the sentinels' name of the primary (a list: one per shard) */
  char *redis_shards;        /* --redis-shards: Redis URLs, one presence shard each */
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
  long history_streams;      /* JetStream streams rooms are spread over (1..16) */
  size_t history_max_bytes;  /* all rooms together (0: 1 GiB JetStream, 64 MiB memory) */
  size_t history_max_msg_bytes; /* largest stored envelope (0: max_message_bytes + 4 KiB) */
  size_t history_tenant_bytes;  /* per tenant and node per max age (0: no quota) */
  double history_dedupe_window_s; /* a message id is recognised this long (stream duplicates) */
  double ack_timeout_s;      /* a room message unstored this long: error unavailable */
  long history_recent;       /* recent messages kept per room to answer resumes (0: none) */
  size_t history_recent_bytes; /* ... over all rooms of the node */
  char *tls_cert, *tls_key;
  char *tls_min_version;     /* "1.3" | "1.2" */
  int api_tls;               /* -1 auto (on with --tls-cert), 0 off, 1 on */
  int trust_proxy;           /* take the source ip from X-Forwarded-For (its last entry) */
  char *trusted_proxies;     /* addresses/CIDRs of trusted proxies (nt_proxy.h), NULL: none */
  double node_ttl_s;         /* node liveness record TTL in Redis */
  double node_refresh_s;     /* node liveness refresh interval */
  long presence_max_members; /* rooms larger than this get no presence events (0: no limit) */
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
  /* HTTP integration (docs/integrations.md; nt_integ.c) */
  char *integration_url;     /* NULL: off */
  char *integration_routes;  /* comma-separated route keys sent to the integration */
  char *route_selection_expression; /* "$request.body.<path>" */
  double integration_timeout_s;
  long integration_concurrency; /* in flight per node */
  long integration_queue;    /* waiting route invocations beyond the concurrency */
  char *integration_stage;   /* requestContext.stage */
  char *integration_ca_file; /* PEM CAs for https:// integration and webhook URLs (NULL:
                              * the system's); checked readable by nt_config_validate */
  /* signed webhooks (nt_webhook.c) */
  char *webhook_url, *webhook_secret;
  char *webhook_secret_file; /* read into webhook_secret by nt_config_parse */
  long webhook_queue;        /* events waiting; past it new ones are dropped */
  double webhook_timeout_s;
  long max_user_subs;        /* per tenant: users with their own bus subscription before the
                              * tenant's user wildcard takes over (nt_hub.h) */
} nt_config;

/* Parses argv and the environment into *cfg (defaults first), then reads the secret
 * files (--jwt-secret-file, --admin-token-file: one trailing newline, LF or CRLF, is
 * dropped; a file given together with its value is refused). Returns 0 on success, 1 when
 * --help or --version was printed (exit 0), or -1 after printing an error to `err`. */
int nt_config_parse(nt_config *cfg, int argc, char **argv, FILE *out, FILE *err);

/* Checks option combinations (NATS without Redis, missing key...), the NATS and Redis
 * URLs (scheme, host, port) and the HS* secret length (at least the hash output: 32, 48
 * or 64 bytes). Returns 0 or -1 after printing why to `err` (credentials in URLs
 * redacted). */
int nt_config_validate(const nt_config *cfg, FILE *err);

void nt_config_free(nt_config *cfg);

/* Splits "host:port" ("[v6]:port" too) into the parts. Returns 0 or -1. */
int nt_config_split_hostport(const char *s, char *host, size_t hostcap, int *port);

/* Checks a --nats value: one or more nats:// or tls:// URLs, comma-separated, each with a
 * host and an optional port 1..65535. Returns 0, or -1 with the reason and the expected
 * form in `why` (capacity `cap`, the URL redacted). */
int nt_config_check_nats(const char *list, char *why, size_t cap);

/* Largest number of presence shards and history streams. */
#define NT_CONFIG_SHARDS_MAX 16
/* Splits a comma-separated list (blanks around entries trimmed) into out[] (pointers into
 * *dup, a copy the caller frees, even on failure). Returns the number of entries, -1 for
 * an empty entry, a NULL list or no memory, max + 1 when there are more than max. */
int nt_config_split_list(const char *list, char **dup, char **out, int max);

/* Checks a --redis value: redis://[[user]:password@]host[:port][/db] or host:port. Same
 * contract as nt_config_check_nats. */
int nt_config_check_redis(const char *url, char *why, size_t cap);

/* The least HS* secret length for `alg` (32, 48, 64), or 0 for other algorithms. */
size_t nt_config_hmac_min_bytes(const char *alg);

#endif
