/* nt_config: one table of options drives parsing, environment lookup and --help. */
#include "nt_config.h"

#include "nt_nats_opts.h"
#include "nt_sentinel.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_kind { OPT_STR, OPT_SIZE, OPT_SECS, OPT_LONG, OPT_BOOL, OPT_AUTO_BOOL };

typedef struct opt {
  const char *name; /* flag without "--" */
  enum opt_kind kind;
  size_t off;
  const char *def;  /* default as text (NULL: none) */
  const char *help;
} opt;

#define O(f) offsetof(nt_config, f)
static const opt opts[] = {
  {"listen", OPT_STR, O(listen), "0.0.0.0:8080", "WebSocket upgrades on /ws, demo files, /healthz, /readyz"},
  {"api-listen", OPT_STR, O(api_listen), "0.0.0.0:8081", "HTTP API, /metrics, /healthz, /readyz"},
  {"nats", OPT_STR, O(nats), NULL, "NATS server URL(s), comma-separated (cluster mode; needs --redis)"},
  {"nats-creds", OPT_STR, O(nats_creds), NULL, "NATS .creds file (user JWT + NKey seed) for every NATS connection"},
  {"nats-nkey-seed", OPT_STR, O(nats_nkey_seed), NULL, "file with the NATS user NKey seed (SU...) for every NATS connection"},
  {"nats-tls-ca", OPT_STR, O(nats_tls_ca), NULL, "PEM CA bundle: connect to NATS over TLS and verify the servers with it"},
  {"nats-tls-cert", OPT_STR, O(nats_tls_cert), NULL, "PEM client certificate for NATS (mutual TLS; with --nats-tls-key)"},
  {"nats-tls-key", OPT_STR, O(nats_tls_key), NULL, "PEM private key of --nats-tls-cert"},
  {"redis", OPT_STR, O(redis), NULL, "Redis URL, redis://host:port[/db] (cluster mode; needs --nats)"},
  {"node-id", OPT_STR, O(node_id), NULL, "this node's id, unique in the cluster (default: generated)"},
  {"jwt-secret", OPT_STR, O(jwt_secret), NULL, "HS256/384/512 shared secret for client tokens"},
  {"jwt-public-key", OPT_STR, O(jwt_public_key), NULL, "PEM file of the RS*/ES* public key for client tokens"},
  {"jwt-alg", OPT_STR, O(jwt_alg), "HS256", "the only JWT algorithm accepted (HS256 RS256 ES256 ...)"},
  {"default-tenant", OPT_STR, O(default_tenant), NULL, "tenant of tokens without a tenant/tid claim (default: such tokens are refused)"},
  {"admin-token", OPT_STR, O(admin_token), NULL, "bearer token of the HTTP API (API refused when unset)"},
  {"allowed-origins", OPT_STR, O(allowed_origins), NULL, "comma-separated Origin values allowed to upgrade (default: any)"},
  {"max-message-bytes", OPT_SIZE, O(max_message_bytes), "65536", "largest client message; larger ones close with 1009"},
  {"send-queue-bytes", OPT_SIZE, O(send_queue_bytes), "1048576", "per-connection outbound bound; past it the client is closed as a slow consumer"},
  {"ping-interval", OPT_SECS, O(ping_interval_s), "25", "seconds of client silence before the node sends a WebSocket ping"},
  {"idle-timeout", OPT_SECS, O(idle_timeout_s), "60", "seconds of client silence before the connection is closed"},
  {"drain-grace", OPT_SECS, O(drain_grace_s), "10", "seconds between SIGTERM and closing clients with 1001"},
  {"static-dir", OPT_STR, O(static_dir), NATTER_DEFAULT_STATIC_DIR, "directory of the demo page files"},
  {"client-js", OPT_STR, O(client_js), NATTER_DEFAULT_CLIENT_JS, "file served at /natter.js: the JavaScript client (clients/js/natter.js)"},
  {"max-connections", OPT_LONG, O(max_connections), "0", "WebSocket connections before upgrades get 503 (0: from the open-files limit)"},
  {"routes", OPT_BOOL, O(routes), "on", "forward unknown actions to natter.route.<action> (on|off)"},
  {"route-timeout", OPT_SECS, O(route_timeout_s), "5", "seconds to wait for a route's reply"},
  {"tls-cert", OPT_STR, O(tls_cert), NULL, "PEM certificate chain: --listen serves https/wss only (reloaded on SIGHUP)"},
  {"tls-key", OPT_STR, O(tls_key), NULL, "PEM private key of --tls-cert (reloaded on SIGHUP)"},
  {"tls-min-version", OPT_STR, O(tls_min_version), "1.3", "oldest TLS version accepted: 1.3|1.2 (1.2 with ECDHE AEAD ciphers only)"},
  {"api-tls", OPT_AUTO_BOOL, O(api_tls), "auto", "HTTP API over TLS with the same certificate (on|off; auto: on when --tls-cert is set)"},
  {"compression", OPT_BOOL, O(compression), "on", "permessage-deflate (RFC 7692) when the client offers it (on|off)"},
  {"compression-min-bytes", OPT_SIZE, O(compression_min_bytes), "256", "messages shorter than this are sent uncompressed"},
  {"history", OPT_AUTO_BOOL, O(history), "auto", "room history, message seq and resume (on|off; auto: on — JetStream with NATS, bounded memory standalone)"},
  {"history-max-age", OPT_SECS, O(history_max_age_s), "86400", "seconds a room message stays in the history (0: no age limit)"},
  {"history-max-per-room", OPT_LONG, O(history_max_per_room), "1000", "messages kept per room (older ones leave first)"},
  {"history-storage", OPT_STR, O(history_storage), "file", "JetStream storage of the history stream: file|memory"},
  {"history-replicas", OPT_LONG, O(history_replicas), "1", "replicas of the history stream in a NATS cluster (1..5)"},
  {"dev-tokens", OPT_BOOL, O(dev_tokens), "off", "serve GET /dev/token?user=&tenant= minting tokens (DEVELOPMENT ONLY)"},
  {"trust-proxy", OPT_BOOL, O(trust_proxy), "off", "take the client address from X-Forwarded-For (behind a proxy you run)"},
  {"redis-sentinel", OPT_STR, O(redis_sentinel), NULL, "Redis Sentinel addresses host:port,... (needs --redis-master; --redis then gives only user, password, db)"},
  {"redis-master", OPT_STR, O(redis_master), NULL, "name of the primary the sentinels monitor (with --redis-sentinel)"},
  {"redis-sentinel-user", OPT_STR, O(redis_sentinel_user), NULL, "ACL user for AUTH to the sentinels (with --redis-sentinel-password)"},
  {"redis-sentinel-password", OPT_STR, O(redis_sentinel_password), NULL, "password for AUTH to the sentinels (default: none)"},
  {"redis-prefix", OPT_STR, O(redis_prefix), "natter:", "prefix of every Redis key"},
  {"node-ttl", OPT_SECS, O(node_ttl_s), "3", "seconds without refresh after which a node is considered dead"},
  {"node-refresh", OPT_SECS, O(node_refresh_s), "1", "seconds between refreshes of this node's liveness record"},
  {"auth-request", OPT_BOOL, O(auth_request), "off", "ask an external authorizer on natter.auth.connect before accepting an upgrade (on|off)"},
  {"auth-timeout", OPT_SECS, O(auth_timeout_s), "3", "seconds to wait for the authorizer; no reply in time answers 503 (below --handshake-timeout)"},
  {"rate-limit", OPT_LONG, O(rate_limit), "100", "client messages per second per connection (token bucket; 0: no limit); over it: error rate_limited"},
  {"rate-burst", OPT_LONG, O(rate_burst), "200", "messages a connection may send at once before --rate-limit applies (0: same as --rate-limit)"},
  {"rate-close-after", OPT_LONG, O(rate_close_after), "20", "rate-limited messages within 10 s that close the connection with 1008 (0: never close)"},
  {"max-rooms-per-connection", OPT_LONG, O(max_rooms_per_conn), "128", "rooms one connection may be in; joining more answers error forbidden (at most 65535)"},
  {"max-connections-per-user", OPT_LONG, O(max_conns_per_user), "0", "WebSocket connections of one user (tenant+sub) on this node; past it upgrades get 429 (0: unlimited)"},
  {"max-header-bytes", OPT_SIZE, O(max_header_bytes), "16384", "largest HTTP request line + headers; larger requests get 431"},
  {"handshake-timeout", OPT_SECS, O(handshake_timeout_s), "10", "seconds a client has to send a complete HTTP request (upgrade or API) before it is closed"},
  {"max-user-subscriptions", OPT_LONG, O(max_user_subs), "128", "users of one tenant with their own bus subscription on this node; past it one natter.user.<tenant>.* subscription serves the rest (0: always the wildcard)"},
  {"log-level", OPT_STR, O(log_level), "info", "debug|info|warn|error"},
};
#undef O
#define NOPTS (sizeof opts / sizeof opts[0])

static int parse_bool(const char *v, int *out) {
  /* case-insensitive: NATTER_ROUTES=TRUE is as common as --routes on */
  if (!strcasecmp(v, "on") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) *out = 1;
  else if (!strcasecmp(v, "off") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) *out = 0;
  else return -1;
  return 0;
}

static int set_opt(nt_config *cfg, const opt *o, const char *v, FILE *err) {
  void *p = (char *)cfg + o->off;
  char *end;
  errno = 0;
  switch (o->kind) {
  case OPT_STR:
    free(*(char **)p);
    *(char **)p = v ? strdup(v) : NULL;
    return 0;
  case OPT_SIZE: {
    /* N, Nk/NK/NkB/NKiB, NM/NMB/NMiB or NB. strtoull accepts "-1" (as ULLONG_MAX) and
     * leading blanks: only a digit may start the value. */
    if (!isdigit((unsigned char)v[0])) break;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno) break;
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K') { shift = 10; end++; }
    else if (*end == 'm' || *end == 'M') { shift = 20; end++; }
    if (shift && end[0] == 'i' && end[1] == 'B') end += 2;
    else if (*end == 'B') end++;
    if (*end || n > (SIZE_MAX >> shift)) break;
    *(size_t *)p = (size_t)(n << shift);
    return 0;
  }
  case OPT_SECS: {
    double d = strtod(v, &end);
    if (end == v || !isfinite(d) || d < 0 || errno) break; /* strtod takes "nan", "inf" */
    if (!strcmp(end, "ms")) d /= 1000.0;
    else if (*end && strcmp(end, "s")) break;
    *(double *)p = d;
    return 0;
  }
  case OPT_LONG: {
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 0 || errno) break;
    *(long *)p = n;
    return 0;
  }
  case OPT_BOOL:
    if (parse_bool(v, (int *)p)) break;
    return 0;
  case OPT_AUTO_BOOL:
    if (!strcmp(v, "auto")) { *(int *)p = -1; return 0; }
    if (parse_bool(v, (int *)p)) break;
    return 0;
  }
  fprintf(err, "natter-node: invalid value '%s' for --%s\n", v, o->name);
  return -1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: natter-node [options]\n\n"
          "Edge node of natter, a clustered WebSocket chat service. Standalone (in-memory bus\n"
          "and presence) without --nats/--redis; cluster member with both.\n"
          "Every option may also be set as NATTER_<NAME> (e.g. --jwt-secret = NATTER_JWT_SECRET).\n\n");
  for (size_t i = 0; i < NOPTS; i++) {
    char flag[48];
    snprintf(flag, sizeof flag, "--%s", opts[i].name);
    fprintf(out, "  %-28s %s", flag, opts[i].help);
    if (opts[i].def) fprintf(out, " [default: %s]", opts[i].def);
    fputc('\n', out);
  }
  fprintf(out, "  %-28s %s\n  %-28s %s\n", "--help", "print this help", "--version",
          "print the version");
}

static void env_name(char *out, size_t cap, const char *flag) {
  size_t n = (size_t)snprintf(out, cap, "NATTER_");
  for (const char *s = flag; *s && n + 1 < cap; s++)
    out[n++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
  out[n] = '\0';
}

int nt_config_parse(nt_config *cfg, int argc, char **argv, FILE *out, FILE *err) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < NOPTS; i++)
    if (opts[i].def && set_opt(cfg, &opts[i], opts[i].def, err)) return -1;
  for (size_t i = 0; i < NOPTS; i++) {
    char env[64];
    env_name(env, sizeof env, opts[i].name);
    const char *v = getenv(env);
    if (v && *v && set_opt(cfg, &opts[i], v, err)) {
      fprintf(err, "natter-node: (the value comes from the environment: %s)\n", env);
      return -1;
    }
  }
  for (int a = 1; a < argc; a++) {
    const char *arg = argv[a];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { usage(out); return 1; }
    if (!strcmp(arg, "--version")) { fprintf(out, "natter-node %s\n", NATTER_VERSION); return 1; }
    if (strncmp(arg, "--", 2) != 0) {
      fprintf(err, "natter-node: unexpected argument '%s' (see --help)\n", arg);
      return -1;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    const opt *o = NULL;
    for (size_t i = 0; i < NOPTS; i++)
      if (strlen(opts[i].name) == nlen && !strncmp(opts[i].name, name, nlen)) o = &opts[i];
    if (!o) {
      fprintf(err, "natter-node: unknown option '%s' (see --help)\n", arg);
      return -1;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (!v) {
      if (a + 1 >= argc) {
        fprintf(err, "natter-node: --%s needs a value\n", o->name);
        return -1;
      }
      v = argv[++a];
    }
    if (set_opt(cfg, o, v, err)) return -1;
  }
  if (cfg->log_level && !strcmp(cfg->log_level, "")) {
    free(cfg->log_level);
    cfg->log_level = NULL;
  }
  return 0;
}

int nt_config_split_hostport(const char *s, char *host, size_t hostcap, int *port) {
  const char *colon;
  const char *h = s;
  size_t hl;
  if (!s) return -1;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':') return -1;
    h = s + 1;
    hl = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return -1;
    hl = (size_t)(colon - s);
  }
  if (hl + 1 > hostcap) return -1;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535 || end == colon + 1) return -1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  if (!hl) snprintf(host, hostcap, "0.0.0.0");
  *port = (int)p;
  return 0;
}

int nt_config_validate(const nt_config *cfg, FILE *err) {
  char host[256];
  int port;
  if ((cfg->redis_sentinel != NULL) != (cfg->redis_master != NULL)) {
    fprintf(err, "natter-node: --redis-sentinel and --redis-master go together (got only "
                 "--%s)\n", cfg->redis_sentinel ? "redis-sentinel" : "redis-master");
    return -1;
  }
  if (cfg->redis_sentinel && nt_sentinel_check_addrs(cfg->redis_sentinel)) {
    fprintf(err, "natter-node: --redis-sentinel must be host:port[,host:port...] (at most 16)\n");
    return -1;
  }
  if (cfg->redis_sentinel_user && !cfg->redis_sentinel_password) {
    fprintf(err, "natter-node: --redis-sentinel-user needs --redis-sentinel-password\n");
    return -1;
  }
  int has_redis = cfg->redis != NULL || cfg->redis_sentinel != NULL;
  if ((cfg->nats != NULL) != has_redis) {
    fprintf(err,
            "natter-node: --nats and --redis go together (--redis-sentinel counts as --redis): "
            "give both to join a cluster, or neither to run standalone (got only --%s)\n",
            cfg->nats ? "nats" : cfg->redis ? "redis" : "redis-sentinel");
    return -1;
  }
  if (cfg->nats_creds && cfg->nats_nkey_seed) {
    fprintf(err, "natter-node: give --nats-creds or --nats-nkey-seed, not both\n");
    return -1;
  }
  if ((cfg->nats_tls_cert != NULL) != (cfg->nats_tls_key != NULL)) {
    fprintf(err, "natter-node: --nats-tls-cert and --nats-tls-key go together\n");
    return -1;
  }
  const char *files[][2] = {{"nats-creds", cfg->nats_creds}, {"nats-nkey-seed", cfg->nats_nkey_seed},
                            {"nats-tls-ca", cfg->nats_tls_ca}, {"nats-tls-cert", cfg->nats_tls_cert},
                            {"nats-tls-key", cfg->nats_tls_key}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    FILE *f = files[i][1] ? fopen(files[i][1], "rb") : NULL;
    if (files[i][1] && !f) {
      fprintf(err, "natter-node: cannot read --%s %s\n", files[i][0], files[i][1]);
      return -1;
    }
    if (f && files[i][1] == cfg->nats_nkey_seed) {
      char text[4096], pub[64];
      size_t n = fread(text, 1, sizeof text - 1, f);
      text[n] = '\0';
      int bad = nt_nkey_public_from_text(text, pub, sizeof pub);
      memset(text, 0, sizeof text);
      if (bad) {
        fclose(f);
        fprintf(err, "natter-node: --nats-nkey-seed %s holds no valid user NKey seed (SU...)\n",
                cfg->nats_nkey_seed);
        return -1;
      }
    }
    if (f) fclose(f);
  }
  if (!cfg->jwt_secret && !cfg->jwt_public_key) {
    fprintf(err, "natter-node: give --jwt-secret (HS*) or --jwt-public-key (RS*/ES*) to verify client tokens\n");
    return -1;
  }
  if (nt_config_split_hostport(cfg->listen, host, sizeof host, &port)) {
    fprintf(err, "natter-node: --listen must be host:port (got '%s')\n", cfg->listen);
    return -1;
  }
  if (nt_config_split_hostport(cfg->api_listen, host, sizeof host, &port)) {
    fprintf(err, "natter-node: --api-listen must be host:port (got '%s')\n", cfg->api_listen);
    return -1;
  }
  /* The bound is what a node accepts from the bus (NT_ENV_MAX_BYTES, 16M), less room for
   * the envelope's other fields: a larger message would be acknowledged, then dropped by
   * every receiving node as undecodable. */
  if (cfg->max_message_bytes < 16 || cfg->max_message_bytes > (16u << 20) - 65536) {
    fprintf(err, "natter-node: --max-message-bytes must be between 16 and 16320k\n");
    return -1;
  }
  if (cfg->send_queue_bytes < 1024) {
    fprintf(err, "natter-node: --send-queue-bytes must be at least 1024\n");
    return -1;
  }
  /* One message frame is the payload plus its ids and JSON framing (well under 4k): a
   * bound below that would close every receiver of a large message as a slow consumer. */
  if (cfg->send_queue_bytes < cfg->max_message_bytes + 4096) {
    fprintf(err, "natter-node: --send-queue-bytes must exceed --max-message-bytes by at least "
                 "4k (one message would close every receiver as a slow consumer)\n");
    return -1;
  }
  /* at most 24 days: connections keep 32-bit millisecond liveness stamps (nt_conn.h) */
  if (cfg->idle_timeout_s <= 0 || cfg->ping_interval_s <= 0 ||
      cfg->idle_timeout_s > 24 * 86400 || cfg->ping_interval_s > 24 * 86400) {
    fprintf(err, "natter-node: --ping-interval and --idle-timeout must be positive and at "
                 "most 24 days (2073600 s)\n");
    return -1;
  }
  if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
    fprintf(err, "natter-node: --tls-cert and --tls-key go together\n");
    return -1;
  }
  if (!cfg->tls_min_version || (strcmp(cfg->tls_min_version, "1.3") &&
                                strcmp(cfg->tls_min_version, "1.2"))) {
    fprintf(err, "natter-node: --tls-min-version must be 1.3 or 1.2\n");
    return -1;
  }
  if (cfg->api_tls == 1 && !cfg->tls_cert) {
    fprintf(err, "natter-node: --api-tls on needs --tls-cert and --tls-key\n");
    return -1;
  }
  if (cfg->handshake_timeout_s < 0.1 || cfg->handshake_timeout_s > 3600) {
    fprintf(err, "natter-node: --handshake-timeout must be between 0.1 and 3600 seconds\n");
    return -1;
  }
  /* An upgrade waiting for the authorizer is in the HTTP phase, which --handshake-timeout
   * bounds: the authorizer must answer (or time out into a 503) before that. */
  if (cfg->auth_timeout_s <= 0 ||
      (cfg->auth_request && cfg->auth_timeout_s > cfg->handshake_timeout_s - 1)) {
    fprintf(err, "natter-node: --auth-timeout must be above 0 and, with --auth-request, at "
                 "least 1 second below --handshake-timeout\n");
    return -1;
  }
  if (cfg->max_header_bytes < 1024 || cfg->max_header_bytes > (1u << 20)) {
    fprintf(err, "natter-node: --max-header-bytes must be between 1k and 1M\n");
    return -1;
  }
  if (cfg->max_user_subs < 0 || cfg->max_user_subs > 1000000) {
    fprintf(err, "natter-node: --max-user-subscriptions must be between 0 and 1000000\n");
    return -1;
  }
  if (cfg->max_rooms_per_conn < 1 || cfg->max_rooms_per_conn > 65535) {
    fprintf(err, "natter-node: --max-rooms-per-connection must be between 1 and 65535\n");
    return -1;
  }
  if (cfg->rate_limit > 1000000 || cfg->rate_burst > 1000000 || cfg->rate_close_after > 65535) {
    fprintf(err, "natter-node: --rate-limit and --rate-burst must be at most 1000000, "
                 "--rate-close-after at most 65535\n");
    return -1;
  }
  if (cfg->history_max_per_room < 1 || cfg->history_max_per_room > 1000000) {
    fprintf(err, "natter-node: --history-max-per-room must be between 1 and 1000000\n");
    return -1;
  }
  if (!cfg->history_storage || (strcmp(cfg->history_storage, "file") &&
                                strcmp(cfg->history_storage, "memory"))) {
    fprintf(err, "natter-node: --history-storage must be file or memory\n");
    return -1;
  }
  if (cfg->history_replicas < 1 || cfg->history_replicas > 5) {
    fprintf(err, "natter-node: --history-replicas must be between 1 and 5\n");
    return -1;
  }
  if (cfg->log_level && strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
      strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
    fprintf(err, "natter-node: --log-level must be debug, info, warn or error (got '%s')\n",
            cfg->log_level);
    return -1;
  }
  return 0;
}

void nt_config_free(nt_config *cfg) {
  for (size_t i = 0; i < NOPTS; i++)
    if (opts[i].kind == OPT_STR) {
      char **p = (char **)((char *)cfg + opts[i].off);
      free(*p);
      *p = NULL;
    }
}
