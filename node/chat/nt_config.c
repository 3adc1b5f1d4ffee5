/* nt_config: one table of options drives parsing, environment lookup and --help. */
#include "nt_config.h"
#include "nt_proxy.h"

#include "nt_nats_opts.h"
#include "nt_sentinel.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "nt_url.h"

enum opt_kind { OPT_STR, OPT_SIZE, OPT_SECS, OPT_LONG, OPT_BOOL, OPT_AUTO_BOOL };

/* --help prints the options group by group, in this order; the table keeps each group's
 * options together. */
enum opt_group { G_LISTEN, G_AUTH, G_CLUSTER, G_LIMITS, G_HISTORY, G_ROUTES, G_INTEG, G_TLS,
                 G_LOGS, G_COUNT };
static const char *const group_names[G_COUNT] = {
    "Listeners", "Authentication", "Cluster (NATS and Redis)", "Limits", "History",
    "Custom routes ($default)", "HTTP integrations and webhooks", "TLS and compression", "Logs"};

typedef struct opt {
  int group;        /* enum opt_group */
  const char *name; /* flag without "--" */
  enum opt_kind kind;
  size_t off;
  const char *def;  /* default as text (NULL: none) */
  const char *help;
  const char *meta; /* value placeholder in --help (NULL: from the kind) */
} opt;

#define O(f) offsetof(nt_config, f)
static const opt opts[] = {
  /* listeners */
  {G_LISTEN, "listen", OPT_STR, O(listen), "0.0.0.0:8080", "WebSocket upgrades on /ws, demo files, /healthz, /readyz", "ADDR:PORT"},
  {G_LISTEN, "api-listen", OPT_STR, O(api_listen), "0.0.0.0:8081", "HTTP API, /metrics, /healthz, /readyz (keep it private)", "ADDR:PORT"},
  {G_LISTEN, "static-dir", OPT_STR, O(static_dir), NATTER_DEFAULT_STATIC_DIR, "directory of the demo page files", "DIR"},
  {G_LISTEN, "client-js", OPT_STR, O(client_js), NATTER_DEFAULT_CLIENT_JS, "file served at /natter.js: the JavaScript client (clients/js/natter.js)", "FILE"},
  {G_LISTEN, "trust-proxy", OPT_BOOL, O(trust_proxy), "off", "behind one proxy you run: the client address is the last X-Forwarded-For entry (the one the proxy added)", NULL},
  {G_LISTEN, "trusted-proxies", OPT_STR, O(trusted_proxies), NULL, "addresses/CIDRs of your proxies: X-Forwarded-For is read only from them, walked from the right past them (implies --trust-proxy)", "CIDR[,CIDR...]"},
  {G_LISTEN, "drain-grace", OPT_SECS, O(drain_grace_s), "10", "seconds between SIGTERM and closing clients with 1001", NULL},
  /* authentication */
  {G_AUTH, "jwt-secret", OPT_STR, O(jwt_secret), NULL, "HS256/384/512 shared secret for client tokens, at least 32/48/64 bytes", "SECRET"},
  {G_AUTH, "jwt-secret-file", OPT_STR, O(jwt_secret_file), NULL, "file holding the --jwt-secret (a trailing newline is dropped; not with --jwt-secret)", "FILE"},
  {G_AUTH, "jwt-public-key", OPT_STR, O(jwt_public_key), NULL, "PEM file of the RS*/ES* public key for client tokens", "FILE"},
  {G_AUTH, "jwt-alg", OPT_STR, O(jwt_alg), "HS256", "the only JWT algorithm accepted (HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512)", "ALG"},
  {G_AUTH, "jwt-audience", OPT_STR, O(jwt_audience), NULL, "when set, a token's aud (a string or an array) must contain this value (else 401)", "AUD"},
  {G_AUTH, "jwt-issuer", OPT_STR, O(jwt_issuer), NULL, "when set, a token's iss must equal this value (else 401)", "ISS"},
  {G_AUTH, "default-tenant", OPT_STR, O(default_tenant), NULL, "tenant of tokens without a tenant/tid claim (default: such tokens are refused)", "ID"},
  {G_AUTH, "admin-token", OPT_STR, O(admin_token), NULL, "bearer token of the HTTP API (API refused when unset)", "TOKEN"},
  {G_AUTH, "aws-access-key-id", OPT_STR, O(aws_access_key_id), NULL, "access key id of SigV4-signed HTTP API calls (service execute-api, any region), besides the bearer token", "KEY-ID"},
  {G_AUTH, "aws-secret-access-key", OPT_STR, O(aws_secret_access_key), NULL, "secret access key of --aws-access-key-id", "SECRET"},
  {G_AUTH, "aws-secret-access-key-file", OPT_STR, O(aws_secret_access_key_file), NULL, "file holding the --aws-secret-access-key (a trailing newline is dropped; not with --aws-secret-access-key)", "FILE"},
  {G_AUTH, "admin-token-file", OPT_STR, O(admin_token_file), NULL, "file holding the --admin-token (a trailing newline is dropped; not with --admin-token)", "FILE"},
  {G_AUTH, "allowed-origins", OPT_STR, O(allowed_origins), NULL, "comma-separated Origin values allowed to upgrade (default: any)", "ORIGIN[,ORIGIN...]"},
  {G_AUTH, "auth-request", OPT_BOOL, O(auth_request), "off", "ask an external authorizer on natter.auth.connect before accepting an upgrade", NULL},
  {G_AUTH, "auth-timeout", OPT_SECS, O(auth_timeout_s), "3", "seconds to wait for the authorizer; no reply in time answers 503 (below --handshake-timeout)", NULL},
  {G_AUTH, "dev-tokens", OPT_BOOL, O(dev_tokens), "off", "serve GET /dev/token?user=&tenant= minting tokens (DEVELOPMENT ONLY)", NULL},
  /* cluster */
  {G_CLUSTER, "nats", OPT_STR, O(nats), NULL, "NATS server URL(s), nats:// or tls://, comma-separated (cluster mode; needs --redis)", "URL[,URL...]"},
  {G_CLUSTER, "redis", OPT_STR, O(redis), NULL, "Redis URL, redis://[[user]:password@]host[:port][/db] or host:port (cluster mode; needs --nats)", "URL"},
  {G_CLUSTER, "node-id", OPT_STR, O(node_id), NULL, "this node's id, unique in the cluster (default: generated)", "ID"},
  {G_CLUSTER, "redis-shards", OPT_STR, O(redis_shards), NULL, "presence over several Redis primaries, one per tenant by a stable hash (instead of --redis; the same list, in the same order, on every node)", "URL,URL[,URL...]"},
  {G_CLUSTER, "redis-sentinel", OPT_STR, O(redis_sentinel), NULL, "Redis Sentinel addresses (needs --redis-master; --redis then gives only user, password, db)", "HOST:PORT[,HOST:PORT...]"},
  {G_CLUSTER, "redis-master", OPT_STR, O(redis_master), NULL, "name of the primary the sentinels monitor (with --redis-sentinel); several names: one presence shard per primary, as --redis-shards", "NAME[,NAME...]"},
  {G_CLUSTER, "redis-sentinel-user", OPT_STR, O(redis_sentinel_user), NULL, "ACL user for AUTH to the sentinels (with --redis-sentinel-password)", "USER"},
  {G_CLUSTER, "redis-sentinel-password", OPT_STR, O(redis_sentinel_password), NULL, "password for AUTH to the sentinels (default: none)", "PASSWORD"},
  {G_CLUSTER, "nats-creds", OPT_STR, O(nats_creds), NULL, "NATS .creds file (user JWT + NKey seed) for every NATS connection", "FILE"},
  {G_CLUSTER, "nats-nkey-seed", OPT_STR, O(nats_nkey_seed), NULL, "file with the NATS user NKey seed (SU...) for every NATS connection", "FILE"},
  {G_CLUSTER, "nats-tls-ca", OPT_STR, O(nats_tls_ca), NULL, "PEM CA bundle: connect to NATS over TLS and verify the servers with it", "FILE"},
  {G_CLUSTER, "nats-tls-cert", OPT_STR, O(nats_tls_cert), NULL, "PEM client certificate for NATS (mutual TLS; with --nats-tls-key)", "FILE"},
  {G_CLUSTER, "nats-tls-key", OPT_STR, O(nats_tls_key), NULL, "PEM private key of --nats-tls-cert", "FILE"},
  {G_CLUSTER, "redis-prefix", OPT_STR, O(redis_prefix), "natter:", "prefix of every Redis key", "PREFIX"},
  {G_CLUSTER, "node-ttl", OPT_SECS, O(node_ttl_s), "3", "seconds without refresh after which a node is considered dead", NULL},
  {G_CLUSTER, "node-refresh", OPT_SECS, O(node_refresh_s), "1", "seconds between refreshes of this node's liveness record", NULL},
  {G_CLUSTER, "max-user-subscriptions", OPT_LONG, O(max_user_subs), "128", "users of one tenant with their own bus subscription on this node; past it one natter.user.<tenant>.* subscription serves the rest (0: always the wildcard)", NULL},
  {G_CLUSTER, "presence-max-members", OPT_LONG, O(presence_max_members), "1000", "rooms with more members get no presence online/offline events (joined says presenceEvents false; page the list with presence); 0: events in every room", NULL},
  /* limits */
  {G_LIMITS, "max-connections", OPT_LONG, O(max_connections), "0", "WebSocket connections before upgrades get 503 (0: from the open-files limit)", NULL},
  {G_LIMITS, "max-message-bytes", OPT_SIZE, O(max_message_bytes), "65536", "largest client message; larger ones close with 1009", NULL},
  {G_LIMITS, "send-queue-bytes", OPT_SIZE, O(send_queue_bytes), "1048576", "per-connection outbound bound; past it the client is closed as a slow consumer", NULL},
  {G_LIMITS, "max-header-bytes", OPT_SIZE, O(max_header_bytes), "16384", "largest HTTP request line + headers; larger requests get 431", NULL},
  {G_LIMITS, "ping-interval", OPT_SECS, O(ping_interval_s), "25", "seconds of client silence before the node sends a WebSocket ping", NULL},
  {G_LIMITS, "idle-timeout", OPT_SECS, O(idle_timeout_s), "60", "seconds of client silence before the connection is closed", NULL},
  {G_LIMITS, "rate-limit", OPT_LONG, O(rate_limit), "100", "client messages per second per connection (token bucket; 0: no limit); over it: error rate_limited", NULL},
  {G_LIMITS, "rate-burst", OPT_LONG, O(rate_burst), "200", "messages a connection may send at once before --rate-limit applies (0: same as --rate-limit)", NULL},
  {G_LIMITS, "rate-close-after", OPT_LONG, O(rate_close_after), "20", "rate-limited messages within 10 s that close the connection with 1008 (0: never close)", NULL},
  {G_LIMITS, "max-rooms-per-connection", OPT_LONG, O(max_rooms_per_conn), "128", "rooms one connection may be in; joining more answers error forbidden (at most 65535)", NULL},
  {G_LIMITS, "max-connections-per-user", OPT_LONG, O(max_conns_per_user), "0", "WebSocket connections of one user (tenant+sub) on this node; past it upgrades get 429 (0: unlimited)", NULL},
  {G_LIMITS, "handshake-timeout", OPT_SECS, O(handshake_timeout_s), "10", "seconds a client has to send a complete HTTP request (upgrade or API) before it is closed", NULL},
  /* history */
  {G_HISTORY, "history", OPT_AUTO_BOOL, O(history), "auto", "room history, message seq and resume (auto: on — JetStream with NATS, bounded memory standalone)", NULL},
  {G_HISTORY, "history-max-age", OPT_SECS, O(history_max_age_s), "86400", "seconds a room message stays in the history (0: no age limit)", NULL},
  {G_HISTORY, "history-max-per-room", OPT_LONG, O(history_max_per_room), "1000", "messages kept per room (older ones leave first)", NULL},
  {G_HISTORY, "history-storage", OPT_STR, O(history_storage), "file", "JetStream storage of the history stream", "file|memory"},
  {G_HISTORY, "history-replicas", OPT_LONG, O(history_replicas), "1", "replicas of the history stream in a NATS cluster (1..5)", NULL},
  {G_HISTORY, "history-streams", OPT_LONG, O(history_streams), "1", "JetStream streams the rooms' history is spread over by a stable hash of tenant and room (1..16; changing it re-homes rooms, docs/history.md)", NULL},
  {G_HISTORY, "history-max-bytes", OPT_SIZE, O(history_max_bytes), "0", "bytes the history keeps over all rooms, oldest leave first (0: 1 GiB on JetStream, 64 MiB in memory)", NULL},
  {G_HISTORY, "history-max-msg-bytes", OPT_SIZE, O(history_max_msg_bytes), "0", "largest stored message; larger ones are refused with quota_exceeded (0: --max-message-bytes + 4 KiB)", NULL},
  {G_HISTORY, "history-dedupe-window", OPT_SECS, O(history_dedupe_window_s), "120", "seconds the history remembers a message id: a resend with the same id is acknowledged, neither stored nor delivered again (the stream's duplicate_window; at least --ack-timeout)", NULL},
  {G_HISTORY, "ack-timeout", OPT_SECS, O(ack_timeout_s), "5", "seconds a room message may wait for the history to store it (resent while the stream cannot store) before sendMessage answers error unavailable", NULL},
  {G_HISTORY, "history-tenant-bytes", OPT_SIZE, O(history_tenant_bytes), "134217728", "bytes one tenant may store through this node per --history-max-age; past it its messages are refused with quota_exceeded (0: no quota)", NULL},
  {G_HISTORY, "history-recent", OPT_LONG, O(history_recent), "128", "recent messages each room keeps in memory to answer resumes without reading the history (at most --history-max-per-room; 0: every resume reads the history)", NULL},
  {G_HISTORY, "history-recent-bytes", OPT_SIZE, O(history_recent_bytes), "16777216", "bytes those recent messages may take over all rooms of the node; past it a room gives up its oldest ones", NULL},
  /* routes */
  {G_ROUTES, "routes", OPT_BOOL, O(routes), "on", "forward unknown actions to natter.route.<action>", NULL},
  {G_ROUTES, "route-timeout", OPT_SECS, O(route_timeout_s), "5", "seconds to wait for a route's reply", NULL},
  /* HTTP integrations and webhooks */
  {G_INTEG, "integration-url", OPT_STR, O(integration_url), NULL, "http(s) URL receiving API Gateway Lambda proxy events for the routes of --integration-routes", "URL"},
  {G_INTEG, "integration-routes", OPT_STR, O(integration_routes), "$connect,$disconnect,$default", "comma-separated route keys sent to --integration-url", "KEY[,KEY...]"},
  {G_INTEG, "route-selection-expression", OPT_STR, O(route_selection_expression), "$request.body.action", "where a frame's route key is: $request.body.<field>[.<field>...]", "EXPR"},
  {G_INTEG, "integration-timeout", OPT_SECS, O(integration_timeout_s), "10", "seconds an invocation may take (then error timeout; $connect: 503)", NULL},
  {G_INTEG, "integration-concurrency", OPT_LONG, O(integration_concurrency), "256", "invocations in flight per node (1..65536)", NULL},
  {G_INTEG, "integration-queue", OPT_LONG, O(integration_queue), "1024", "route invocations waiting beyond --integration-concurrency; past it: error rate_limited", NULL},
  {G_INTEG, "integration-ca-file", OPT_STR, O(integration_ca_file), NULL, "PEM bundle of the CAs trusted for https:// --integration-url and --webhook-url, instead of the system's (verification is always on)", "FILE"},
  {G_INTEG, "integration-stage", OPT_STR, O(integration_stage), "natter", "requestContext.stage of the events", "STAGE"},
  {G_INTEG, "webhook-url", OPT_STR, O(webhook_url), NULL, "http(s) URL receiving signed batches of connect/disconnect/join/leave/online/offline events", "URL"},
  {G_INTEG, "webhook-secret", OPT_STR, O(webhook_secret), NULL, "HMAC-SHA256 key of X-Natter-Signature (required with --webhook-url)", "SECRET"},
  {G_INTEG, "webhook-secret-file", OPT_STR, O(webhook_secret_file), NULL, "file holding the --webhook-secret (a trailing newline is dropped; not with --webhook-secret)", "FILE"},
  {G_INTEG, "webhook-queue", OPT_LONG, O(webhook_queue), "10000", "webhook events waiting for delivery; past it new events are dropped (counted, logged)", NULL},
  {G_INTEG, "webhook-timeout", OPT_SECS, O(webhook_timeout_s), "5", "seconds a webhook request may take before it is retried", NULL},
  /* TLS and compression */
  {G_TLS, "tls-cert", OPT_STR, O(tls_cert), NULL, "PEM certificate chain: --listen serves https/wss only (reloaded on SIGHUP)", "FILE"},
  {G_TLS, "tls-key", OPT_STR, O(tls_key), NULL, "PEM private key of --tls-cert (reloaded on SIGHUP)", "FILE"},
  {G_TLS, "tls-min-version", OPT_STR, O(tls_min_version), "1.3", "oldest TLS version accepted (1.2 with ECDHE AEAD ciphers only)", "1.3|1.2"},
  {G_TLS, "api-tls", OPT_AUTO_BOOL, O(api_tls), "auto", "HTTP API over TLS with the same certificate (auto: on when --tls-cert is set)", NULL},
  {G_TLS, "compression", OPT_BOOL, O(compression), "on", "permessage-deflate (RFC 7692) when the client offers it", NULL},
  {G_TLS, "compression-min-bytes", OPT_SIZE, O(compression_min_bytes), "256", "messages shorter than this are sent uncompressed", NULL},
  /* logs */
  {G_LOGS, "log-level", OPT_STR, O(log_level), "info", "lowest level written: API access lines are info, refusals warn, connections debug", "debug|info|warn|error"},
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

static const char *placeholder(const opt *o) {
  if (o->meta) return o->meta;
  switch (o->kind) {
  case OPT_SIZE: return "BYTES";
  case OPT_SECS: return "SECONDS";
  case OPT_LONG: return "N";
  case OPT_BOOL: return "on|off";
  case OPT_AUTO_BOOL: return "on|off|auto";
  default: return "VALUE";
  }
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: natter-node [options]\n\n"
          "Edge node of natter, a clustered WebSocket chat service. Standalone (in-memory bus\n"
          "and presence) without --nats/--redis; cluster member with both.\n"
          "Every option may also be set as NATTER_<NAME> (e.g. --jwt-secret = NATTER_JWT_SECRET);\n"
          "a flag wins over the environment. Sizes take k/M suffixes, durations s or ms.\n");
  for (int g = 0; g < G_COUNT; g++) {
    fprintf(out, "\n%s:\n", group_names[g]);
    for (size_t i = 0; i < NOPTS; i++) {
      if (opts[i].group != g) continue;
      char flag[64];
      snprintf(flag, sizeof flag, "--%s %s", opts[i].name, placeholder(&opts[i]));
      fprintf(out, "  %-36s %s", flag, opts[i].help);
      if (opts[i].def) fprintf(out, " [default: %s]", opts[i].def);
      fputc('\n', out);
    }
  }
  fprintf(out, "\nOther:\n  %-36s %s\n  %-36s %s\n", "--help", "print this help and exit",
          "--version", "print name, version and commit, and exit");
}

static void env_name(char *out, size_t cap, const char *flag) {
  size_t n = (size_t)snprintf(out, cap, "NATTER_");
  for (const char *s = flag; *s && n + 1 < cap; s++)
    out[n++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
  out[n] = '\0';
}

/* Secrets as files (Kubernetes mounts a Secret's keys as files): at most this much. */
#define SECRET_FILE_MAX 65536

/* Reads the file `path` into *dst (replacing nothing: a value given as well is refused),
 * without the trailing newline editors and `echo` add. */
static int load_secret(char **dst, const char *path, const char *name, FILE *err) {
  if (!path) return 0;
  if (*dst) {
    fprintf(err, "natter-node: give --%s or --%s-file, not both (also counting "
                 "NATTER_* variables)\n", name, name);
    return -1;
  }
  /* O_NONBLOCK: a FIFO in place of the file must not hang the start */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  const char *why = NULL;
  if (fd < 0 || fstat(fd, &st)) why = strerror(errno);
  else if (!S_ISREG(st.st_mode)) why = "not a regular file";
  else if (st.st_size > SECRET_FILE_MAX) why = "larger than 64k";
  if (why) {
    fprintf(err, "natter-node: cannot read --%s-file %s: %s\n", name, path, why);
    if (fd >= 0) close(fd);
    return -1;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
  close(fd);
  if (got != st.st_size) {
    free(buf);
    fprintf(err, "natter-node: cannot read --%s-file %s\n", name, path);
    return -1;
  }
  size_t n = (size_t)got;
  if (n && buf[n - 1] == '\n') n--;
  if (n && buf[n - 1] == '\r') n--;
  buf[n] = '\0';
  if (!n || memchr(buf, '\0', n)) {
    free(buf);
    fprintf(err, "natter-node: --%s-file %s is %s\n", name, path,
            n ? "binary (holds a NUL byte)" : "empty");
    return -1;
  }
  *dst = buf;
  return 0;
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
    if (!strcmp(arg, "--version")) {
      fprintf(out, "natter-node %s (commit %s)\n", NATTER_VERSION, NATTER_COMMIT);
      return 1;
    }
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
  if (load_secret(&cfg->jwt_secret, cfg->jwt_secret_file, "jwt-secret", err) ||
      load_secret(&cfg->admin_token, cfg->admin_token_file, "admin-token", err) ||
      load_secret(&cfg->aws_secret_access_key, cfg->aws_secret_access_key_file,
                  "aws-secret-access-key", err) ||
      load_secret(&cfg->webhook_secret, cfg->webhook_secret_file, "webhook-secret", err))
    return -1;
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

/* ---------------------------------------------------------------- URLs and secrets */

#define NATS_FORM "nats://[user:password@]host[:port] or tls://..., several separated by commas"
#define REDIS_FORM "redis://[[user]:password@]host[:port][/db] or host:port"

static int url_fail(char *why, size_t cap, const char *flag, const char *url, size_t len,
                    const char *reason, const char *form) {
  char raw[NT_URL_REDACTED_MAX], red[NT_URL_REDACTED_MAX];
  snprintf(raw, sizeof raw, "%.*s", (int)len, url);
  snprintf(why, cap, "%s '%s' is not valid (%s); expected %s", flag,
           nt_url_redact(raw, red, sizeof red), reason, form);
  return -1;
}

static int scheme_is(const nt_url *u, const char *name) {
  return u->scheme && u->scheme_len == strlen(name) &&
         !strncasecmp(u->scheme, name, u->scheme_len);
}

int nt_config_check_nats(const char *list, char *why, size_t cap) {
  int n = 0;
  for (const char *p = list; p && *p;) {
    const char *e = p + strcspn(p, ",");
    const char *s = p, *t = e;
    while (s < t && (*s == ' ' || *s == '\t')) s++;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
    p = *e ? e + 1 : e;
    if (s == t) continue;
    nt_url u;
    const char *reason = NULL;
    if (nt_url_parse(s, (size_t)(t - s), &u, &reason))
      return url_fail(why, cap, "--nats", s, (size_t)(t - s), reason, NATS_FORM);
    if (!scheme_is(&u, "nats") && !scheme_is(&u, "tls"))
      return url_fail(why, cap, "--nats", s, (size_t)(t - s),
                      u.scheme ? "the scheme must be nats:// or tls://" : "no nats:// scheme",
                      NATS_FORM);
    if (u.rest_len && !(u.rest_len == 1 && u.rest[0] == '/'))
      return url_fail(why, cap, "--nats", s, (size_t)(t - s), "unexpected text after the port",
                      NATS_FORM);
    n++;
  }
  if (!n) {
    snprintf(why, cap, "--nats has no URL; expected %s", NATS_FORM);
    return -1;
  }
  return 0;
}

/* --integration-ca-file must be a readable regular file holding a PEM certificate: libcurl
 * reads it only when a connection is made, where a wrong path would fail every https://
 * invocation instead of the start. */
static int check_ca_file(const char *path, FILE *err) {
  const char *flag = "natter-node: --integration-ca-file";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(err, "%s: cannot read %s: %s\n", flag, path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    fprintf(err, "%s: %s is not a regular file\n", flag, path);
    return -1;
  }
  /* a PEM bundle: look for a certificate's armour in its first 4 MiB */
  static const char mark[] = "-----BEGIN CERTIFICATE-----";
  char buf[65536 + sizeof mark];
  size_t have = 0, total = 0;
  int found = 0, rerr = 0;
  while (!found && total < (4u << 20)) {
    ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) rerr = errno;
    if (r <= 0) break;
    have += (size_t)r;
    total += (size_t)r;
    buf[have] = '\0';
    found = memmem(buf, have, mark, sizeof mark - 1) != NULL;
    if (have > sizeof mark) { /* keep the tail: the mark may straddle two reads */
      memmove(buf, buf + have - (sizeof mark - 1), sizeof mark - 1);
      have = sizeof mark - 1;
    }
  }
  close(fd);
  if (!found) {
    fprintf(err, "%s: %s %s\n", flag, path,
            rerr ? strerror(rerr) : "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    return -1;
  }
  return 0;
}

static int validate_integration(const nt_config *cfg, FILE *err) {
  if (cfg->integration_ca_file && check_ca_file(cfg->integration_ca_file, err)) return -1;
  if (!cfg->aws_access_key_id != !cfg->aws_secret_access_key ||
      (cfg->aws_access_key_id && (!*cfg->aws_access_key_id || !*cfg->aws_secret_access_key))) {
    fprintf(err, "natter-node: --aws-access-key-id and --aws-secret-access-key go together\n");
    return -1;
  }
  const char *wu = cfg->webhook_url;
  if (wu && ((strncmp(wu, "http://", 7) && strncmp(wu, "https://", 8)) ||
             !cfg->webhook_secret || !*cfg->webhook_secret)) {
    fprintf(err, "natter-node: --webhook-url must be http(s):// and needs --webhook-secret\n");
    return -1;
  }
  if (cfg->webhook_queue < 1 || cfg->webhook_queue > 10000000 || cfg->webhook_timeout_s <= 0 ||
      cfg->webhook_timeout_s > 600) {
    fprintf(err, "natter-node: --webhook-queue must be in 1..10000000, --webhook-timeout in "
                 "(0, 600] s\n");
    return -1;
  }
  const char *u = cfg->integration_url;
  if (u && strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) {
    fprintf(err, "natter-node: --integration-url must start with http:// or https://\n");
    return -1;
  }
  const char *e = cfg->route_selection_expression;
  if (!e || strncmp(e, "$request.body.", 14) || !e[14] || strstr(e + 13, "..") ||
      e[strlen(e) - 1] == '.') {
    fprintf(err, "natter-node: --route-selection-expression must be $request.body.<field>"
                 "[.<field>...]\n");
    return -1;
  }
  if (cfg->integration_timeout_s <= 0 || cfg->integration_timeout_s > 3600 ||
      cfg->integration_concurrency < 1 || cfg->integration_concurrency > 65536 ||
      cfg->integration_queue > 1000000) {
    fprintf(err, "natter-node: --integration-timeout must be in (0, 3600] s, "
                 "--integration-concurrency in 1..65536, --integration-queue at most 1000000\n");
    return -1;
  }
  return 0;
}

int nt_config_check_redis(const char *url, char *why, size_t cap) {
  nt_url u;
  const char *reason = NULL;
  size_t len = url ? strlen(url) : 0;
  /* the presence store's parser ends the URL at '?' or '#', even inside a password */
  if (url && strpbrk(url, "?#"))
    return url_fail(why, cap, "--redis", url, len,
                    "'?' and '#' must be percent-encoded (%3F, %23), in a password too",
                    REDIS_FORM);
  if (nt_url_parse(url, len, &u, &reason))
    return url_fail(why, cap, "--redis", url ? url : "", len, reason, REDIS_FORM);
  if (u.scheme && !scheme_is(&u, "redis"))
    return url_fail(why, cap, "--redis", url, len,
                    scheme_is(&u, "rediss") ? "rediss:// (TLS) is not supported"
                                            : "the scheme must be redis://",
                    REDIS_FORM);
  if (!u.scheme && (!u.port || u.userinfo))
    return url_fail(why, cap, "--redis", url, len,
                    u.userinfo ? "credentials need the redis:// form" : "no port",
                    REDIS_FORM);
  /* the rest may only name a database: "", "/" or "/<number>", at most 1000000 as the
   * presence store's parser takes it */
  int db_ok = u.rest_len == 0 || (u.scheme && u.rest[0] == '/');
  long db = 0;
  for (size_t i = 1; db_ok && i < u.rest_len; i++) {
    if (u.rest[i] < '0' || u.rest[i] > '9') db_ok = 0;
    else if ((db = db * 10 + (u.rest[i] - '0')) > 1000000) db_ok = 0;
  }
  if (!db_ok)
    return url_fail(why, cap, "--redis", url, len, "only a database number may follow the port",
                    REDIS_FORM);
  return 0;
}

size_t nt_config_hmac_min_bytes(const char *alg) {
  if (!alg) alg = "HS256";
  if (!strcmp(alg, "HS256")) return 32;
  if (!strcmp(alg, "HS384")) return 48;
  if (!strcmp(alg, "HS512")) return 64;
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
  if (cfg->redis_shards && (cfg->redis || cfg->redis_sentinel)) {
    fprintf(err, "natter-node: --redis-shards replaces --redis and --redis-sentinel (with "
                 "Sentinel, give one --redis-master name per shard)\n");
    return -1;
  }
  char why[2 * NT_URL_REDACTED_MAX];
  if (cfg->redis_shards) {
    char *list[NT_CONFIG_SHARDS_MAX + 1];
    char *dup = NULL;
    int n = nt_config_split_list(cfg->redis_shards, &dup, list, NT_CONFIG_SHARDS_MAX + 1);
    int bad = n < 2 || n > NT_CONFIG_SHARDS_MAX;
    if (bad)
      fprintf(err, "natter-node: --redis-shards takes 2 to %d Redis URLs, comma-separated\n",
              NT_CONFIG_SHARDS_MAX);
    for (int i = 0; !bad && i < n; i++)
      if ((bad = nt_config_check_redis(list[i], why, sizeof why)))
        fprintf(err, "natter-node: --redis-shards: %s\n", why);
    free(dup);
    if (bad) return -1;
  }
  if (cfg->redis_master) {
    char *list[NT_CONFIG_SHARDS_MAX + 1];
    char *dup = NULL;
    int n = nt_config_split_list(cfg->redis_master, &dup, list, NT_CONFIG_SHARDS_MAX + 1);
    free(dup);
    if (n < 1 || n > NT_CONFIG_SHARDS_MAX) {
      fprintf(err, "natter-node: --redis-master takes 1 to %d names, comma-separated\n",
              NT_CONFIG_SHARDS_MAX);
      return -1;
    }
  }
  if (cfg->history_streams < 1 || cfg->history_streams > NT_CONFIG_SHARDS_MAX) {
    fprintf(err, "natter-node: --history-streams must be between 1 and %d\n",
            NT_CONFIG_SHARDS_MAX);
    return -1;
  }
  int has_redis = cfg->redis != NULL || cfg->redis_sentinel != NULL || cfg->redis_shards != NULL;
  if ((cfg->nats != NULL) != has_redis) {
    fprintf(err,
            "natter-node: --nats and --redis go together (--redis-sentinel and --redis-shards count as --redis): "
            "give both to join a cluster, or neither to run standalone (got only --%s)\n",
            cfg->nats ? "nats" : cfg->redis ? "redis" : cfg->redis_shards ? "redis-shards" : "redis-sentinel");
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
  /* RFC 7518 §3.2: an HS* key at least as long as the hash output; a shorter one is
   * within reach of an offline guess from any one token. */
  size_t hmin = nt_config_hmac_min_bytes(cfg->jwt_alg);
  if (cfg->jwt_secret && !cfg->jwt_public_key && hmin && strlen(cfg->jwt_secret) < hmin) {
    fprintf(err,
            "natter-node: the JWT secret is %zu bytes, %s needs at least %zu (the size of "
            "its hash, RFC 7518 3.2: a shorter key lets anyone holding one token guess it "
            "offline); generate one with: openssl rand -hex %zu\n",
            strlen(cfg->jwt_secret), cfg->jwt_alg ? cfg->jwt_alg : "HS256", hmin, hmin);
    return -1;
  }
  if ((cfg->nats && nt_config_check_nats(cfg->nats, why, sizeof why)) ||
      (cfg->redis && nt_config_check_redis(cfg->redis, why, sizeof why))) {
    fprintf(err, "natter-node: %s\n", why);
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
  if (validate_integration(cfg, err)) return -1;
  if (cfg->max_header_bytes < 1024 || cfg->max_header_bytes > (1u << 20)) {
    fprintf(err, "natter-node: --max-header-bytes must be between 1k and 1M\n");
    return -1;
  }
  if (cfg->max_user_subs < 0 || cfg->max_user_subs > 1000000) {
    fprintf(err, "natter-node: --max-user-subscriptions must be between 0 and 1000000\n");
    return -1;
  }
  if (cfg->presence_max_members < 0 || cfg->presence_max_members > 100000000) {
    fprintf(err, "natter-node: --presence-max-members must be between 0 and 100000000\n");
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
  if (cfg->trusted_proxies && !nt_proxy_list_valid(cfg->trusted_proxies)) {
    fprintf(err, "natter-node: --trusted-proxies must be a comma-separated list of IP "
                 "addresses or CIDR blocks (10.0.0.0/8, fd00::/8)\n");
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
  if (cfg->ack_timeout_s < 0.1 || cfg->ack_timeout_s > 3600) {
    fprintf(err, "natter-node: --ack-timeout must be between 0.1 and 3600 seconds\n");
    return -1;
  }
  if (cfg->history_dedupe_window_s < cfg->ack_timeout_s) {
    fprintf(err, "natter-node: --history-dedupe-window must be at least --ack-timeout "
                 "(a resend after error unavailable must be recognised)\n");
    return -1;
  }
  if (cfg->history_replicas < 1 || cfg->history_replicas > 5) {
    fprintf(err, "natter-node: --history-replicas must be between 1 and 5\n");
    return -1;
  }
  /* JetStream's max_msg_size is a 32-bit signed value */
  if (cfg->history_max_msg_bytes > INT32_MAX - 4096 ||
      (cfg->history_max_msg_bytes && cfg->history_max_msg_bytes < 1024) ||
      (!cfg->history_max_msg_bytes && cfg->max_message_bytes > INT32_MAX - 4096)) {
    fprintf(err, "natter-node: --history-max-msg-bytes must be 0 or between 1k and 2G\n");
    return -1;
  }
  if (cfg->history_recent < 0 || cfg->history_recent > 1000000) {
    fprintf(err, "natter-node: --history-recent must be between 0 and 1000000\n");
    return -1;
  }
  if (cfg->history_max_bytes && cfg->history_max_bytes < (1u << 20)) {
    fprintf(err, "natter-node: --history-max-bytes must be 0 or at least 1M\n");
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

int nt_config_split_list(const char *list, char **dup, char **out, int max) {
  *dup = list ? strdup(list) : NULL;
  if (!*dup) return -1;
  int n = 0;
  for (char *t = *dup, *next; t; t = next) {
    next = strchr(t, ',');
    if (next) *next++ = '\0';
    while (*t == ' ') t++;
    size_t l = strlen(t);
    while (l && t[l - 1] == ' ') t[--l] = '\0';
    if (!l) return -1; /* an empty entry ("a,,b", "a,") is a mistake */
    if (n == max) return max + 1;
    out[n++] = t;
  }
  return n;
}
