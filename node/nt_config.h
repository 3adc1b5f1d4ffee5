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
  char *node_id;             /* generated when not given */
  char *jwt_secret, *jwt_public_key, *jwt_alg;
  char *default_tenant;
  char *admin_token;
  char *allowed_origins;     /* comma-separated, NULL: any */
  char *static_dir;
  char *redis_prefix;
  char *log_level;
  size_t max_message_bytes;
  size_t send_queue_bytes;
  double ping_interval_s, idle_timeout_s, drain_grace_s, route_timeout_s;
  long max_connections;      /* 0: derived from the open-files limit */
  int routes;                /* bool */
  int dev_tokens;            /* bool: GET /dev/token (development only) */
  int compression;           /* bool (permessage-deflate; reserved) */
  int history;               /* -1 auto, 0 off, 1 on (reserved) */
  char *tls_cert, *tls_key;
  int trust_proxy;           /* take the source ip from X-Forwarded-For */
  double node_ttl_s;         /* node liveness record TTL in Redis */
  double node_refresh_s;     /* node liveness refresh interval */
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
