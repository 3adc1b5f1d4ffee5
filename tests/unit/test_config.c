/* test_config: flags, NATTER_* environment, value syntax, --help and validation messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* environ (_GNU_SOURCE) */

#include "nt_config.h"

/* HS256 wants 32 bytes at least (nt_config_validate) */
#define GOOD_SECRET "unit-test-secret-0123456789abcdef0123"

/* Removes every NATTER_* variable so the runner's environment cannot leak in. */
static int clean_env(void **state) {
  (void)state;
  for (;;) {
    char name[256] = "";
    for (char **e = environ; e && *e; e++)
      if (!strncmp(*e, "NATTER_", 7)) {
        size_t n = strcspn(*e, "=");
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, *e, n);
        name[n] = '\0';
        break;
      }
    if (!name[0]) return 0;
    unsetenv(name);
  }
}

/* Parses argv (NULL-terminated list after the program name) with out/err captured. */
typedef struct run {
  nt_config cfg;
  int rc;
  char *out, *err;
  size_t outlen, errlen;
} run;

static void parse_v(run *r, const char *const *args) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = "natter-node";
  for (; args && *args; args++) argv[argc++] = (char *)*args;
  argv[argc] = NULL;
  FILE *out = open_memstream(&r->out, &r->outlen);
  FILE *err = open_memstream(&r->err, &r->errlen);
  assert_non_null(out);
  assert_non_null(err);
  r->rc = nt_config_parse(&r->cfg, argc, argv, out, err);
  fclose(out);
  fclose(err);
}

#define PARSE(r, ...)                                    \
  do {                                                   \
    const char *const a_[] = {__VA_ARGS__, NULL};        \
    parse_v((r), a_);                                    \
  } while (0)

static void done(run *r) {
  nt_config_free(&r->cfg);
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

/* Runs nt_config_validate, returns its rc and the message (malloc'd) in *msg. */
static int validate(const nt_config *cfg, char **msg) {
  size_t len;
  FILE *err = open_memstream(msg, &len);
  int rc = nt_config_validate(cfg, err);
  fclose(err);
  return rc;
}

/* Expects `value` for `flag` to be refused with a message naming the flag. */
static void refused(const char *flag, const char *value) {
  run r = {0};
  char eq[256];
  snprintf(eq, sizeof eq, "--%s=%s", flag, value);
  PARSE(&r, eq);
  if (r.rc != -1) fail_msg("--%s=%s accepted", flag, value);
  if (!strstr(r.err, flag)) fail_msg("message does not name --%s: %s", flag, r.err);
  done(&r);
}

/* ---------------------------------------------------------------- tests ------ */

static void test_defaults(void **state) {
  (void)state;
  run r = {0};
  parse_v(&r, NULL);
  assert_int_equal(r.rc, 0);
  nt_config *c = &r.cfg;
  assert_string_equal(c->listen, "0.0.0.0:8080");
  assert_string_equal(c->api_listen, "0.0.0.0:8081");
  assert_null(c->nats);
  assert_null(c->redis);
  assert_null(c->node_id);
  assert_null(c->jwt_secret);
  assert_null(c->jwt_public_key);
  assert_string_equal(c->jwt_alg, "HS256");
  assert_null(c->admin_token);
  assert_null(c->allowed_origins);
  assert_non_null(c->static_dir);
  assert_int_equal(c->max_message_bytes, 65536);
  assert_int_equal(c->send_queue_bytes, 1048576);
  assert_true(c->ping_interval_s == 25.0);
  assert_true(c->idle_timeout_s == 60.0);
  assert_true(c->drain_grace_s == 10.0);
  assert_true(c->route_timeout_s == 5.0);
  assert_int_equal(c->max_connections, 0);
  assert_int_equal(c->routes, 1);
  assert_int_equal(c->compression, 1);
  assert_int_equal(c->history, -1);
  assert_int_equal(c->dev_tokens, 0);
  assert_int_equal(c->trust_proxy, 0);
  assert_string_equal(c->redis_prefix, "natter:");
  assert_string_equal(c->log_level, "info");
  assert_null(c->tls_cert);
  assert_null(c->tls_key);
  assert_int_equal(r.errlen, 0);
  done(&r);
}

static void test_flag_forms(void **state) {
  (void)state;
  run r = {0};
  PARSE(&r, "--jwt-secret", "s3cret", "--listen=127.0.0.1:9000", "--api-listen", "[::1]:9001",
        "--node-id=n1", "--allowed-origins", "https://a.example,https://b.example",
        "--admin-token=x=y"); /* only the first '=' splits */
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.jwt_secret, "s3cret");
  assert_string_equal(r.cfg.listen, "127.0.0.1:9000");
  assert_string_equal(r.cfg.api_listen, "[::1]:9001");
  assert_string_equal(r.cfg.node_id, "n1");
  assert_string_equal(r.cfg.allowed_origins, "https://a.example,https://b.example");
  assert_string_equal(r.cfg.admin_token, "x=y");
  done(&r);
  /* a value may start with dashes when given as the next argument */
  PARSE(&r, "--jwt-secret", "--not-a-flag");
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.jwt_secret, "--not-a-flag");
  done(&r);
  /* the last occurrence wins, with no leak of the first */
  PARSE(&r, "--node-id", "a", "--node-id", "b");
  assert_string_equal(r.cfg.node_id, "b");
  done(&r);
}

static void test_env(void **state) {
  (void)state;
  setenv("NATTER_JWT_SECRET", "from-env", 1);
  setenv("NATTER_MAX_MESSAGE_BYTES", "1k", 1);
  setenv("NATTER_API_LISTEN", "127.0.0.1:7001", 1);
  setenv("NATTER_ROUTES", "off", 1);
  setenv("NATTER_PING_INTERVAL", "500ms", 1);
  setenv("NATTER_NODE_ID", "", 1); /* empty: ignored */
  run r = {0};
  parse_v(&r, NULL);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.jwt_secret, "from-env");
  assert_int_equal(r.cfg.max_message_bytes, 1024);
  assert_string_equal(r.cfg.api_listen, "127.0.0.1:7001");
  assert_int_equal(r.cfg.routes, 0);
  assert_true(r.cfg.ping_interval_s == 0.5);
  assert_null(r.cfg.node_id);
  done(&r);
  /* a flag beats the environment */
  PARSE(&r, "--jwt-secret=from-flag", "--max-message-bytes", "2k", "--routes=on");
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.jwt_secret, "from-flag");
  assert_int_equal(r.cfg.max_message_bytes, 2048);
  assert_int_equal(r.cfg.routes, 1);
  assert_string_equal(r.cfg.api_listen, "127.0.0.1:7001"); /* untouched by flags */
  done(&r);
  /* a bad environment value is reported with the option's name */
  setenv("NATTER_SEND_QUEUE_BYTES", "lots", 1);
  parse_v(&r, NULL);
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "send-queue-bytes"));
  assert_non_null(strstr(r.err, "lots"));
  assert_non_null(strstr(r.err, "NATTER_SEND_QUEUE_BYTES")); /* says where it came from */
  done(&r);
  unsetenv("NATTER_SEND_QUEUE_BYTES");
  unsetenv("NATTER_JWT_SECRET");
  unsetenv("NATTER_MAX_MESSAGE_BYTES");
  unsetenv("NATTER_API_LISTEN");
  unsetenv("NATTER_ROUTES");
  unsetenv("NATTER_PING_INTERVAL");
  unsetenv("NATTER_NODE_ID");
  /* every multi-word flag maps to its variable: dashes become underscores */
  setenv("NATTER_DRAIN_GRACE", "3", 1);
  setenv("NATTER_JWT_PUBLIC_KEY", "/k.pem", 1);
  setenv("NATTER_REDIS_PREFIX", "app:", 1);
  parse_v(&r, NULL);
  assert_true(r.cfg.drain_grace_s == 3.0);
  assert_string_equal(r.cfg.jwt_public_key, "/k.pem");
  assert_string_equal(r.cfg.redis_prefix, "app:");
  done(&r);
  unsetenv("NATTER_DRAIN_GRACE");
  unsetenv("NATTER_JWT_PUBLIC_KEY");
  unsetenv("NATTER_REDIS_PREFIX");
}

static void test_sizes(void **state) {
  (void)state;
  static const struct {
    const char *v;
    size_t want;
  } ok[] = {
      {"100", 100},          {"0", 0},         {"64k", 65536},      {"64K", 65536},
      {"2M", 2u << 20},      {"2m", 2u << 20}, {"2MiB", 2u << 20},  {"2MB", 2u << 20},
      {"1KiB", 1024},        {"1kB", 1024},    {"100B", 100},       {"1048576", 1048576},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    run r = {0};
    PARSE(&r, "--send-queue-bytes", ok[i].v);
    if (r.rc != 0) fail_msg("size %s refused: %s", ok[i].v, r.err);
    assert_int_equal(r.cfg.send_queue_bytes, ok[i].want);
    done(&r);
  }
  const char *bad[] = {"", "k", "1G", "1.5M", "1x", "1 k", "-1", "-1k", " -5", "1MBB",
                       "1iB", "1Mi", "99999999999999999999", "17592186044416M"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused("send-queue-bytes", bad[i]);
}

static void test_seconds(void **state) {
  (void)state;
  static const struct {
    const char *v;
    double want;
  } ok[] = {{"25", 25}, {"1.5", 1.5}, {"500ms", 0.5}, {"2s", 2}, {"0", 0}, {"0.25s", 0.25},
            {"1500ms", 1.5}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    run r = {0};
    PARSE(&r, "--idle-timeout", ok[i].v);
    if (r.rc != 0) fail_msg("seconds %s refused: %s", ok[i].v, r.err);
    assert_true(r.cfg.idle_timeout_s == ok[i].want);
    done(&r);
  }
  const char *bad[] = {"", "-1", "abc", "5m", "5 s", "5sec", "ms", "nan", "inf", "-inf",
                       "1e999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused("idle-timeout", bad[i]);
}

/* --history-recent (messages per room kept for resumes) and --history-recent-bytes. */
static void test_history_recent(void **state) {
  (void)state;
  run r = {0};
  parse_v(&r, NULL);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.cfg.history_recent, 128);
  assert_int_equal(r.cfg.history_recent_bytes, 16777216);
  done(&r);
  PARSE(&r, "--history-recent", "0", "--history-recent-bytes", "1M");
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.cfg.history_recent, 0);
  assert_int_equal(r.cfg.history_recent_bytes, 1 << 20);
  done(&r);
  refused("history-recent", "-1");
  refused("history-recent", "many");
  char *msg = NULL; /* parsed, then refused by the checks at start-up */
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--history-recent", "1000001");
  assert_int_equal(r.rc, 0);
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--history-recent must be between 0 and 1000000"));
  free(msg);
  done(&r);
  refused("history-recent-bytes", "lots");
  refused("history-recent-bytes", "-1");
}

static void test_booleans_and_longs(void **state) {
  (void)state;
  const char *on[] = {"on", "true", "1", "yes", "ON", "True", "YES"};
  const char *off[] = {"off", "false", "0", "no", "OFF", "False"};
  for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
    run r = {0};
    PARSE(&r, "--routes", "off", "--routes", on[i], "--dev-tokens", on[i]);
    if (r.rc) fail_msg("bool %s refused: %s", on[i], r.err);
    assert_int_equal(r.cfg.routes, 1);
    assert_int_equal(r.cfg.dev_tokens, 1);
    done(&r);
  }
  for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
    run r = {0};
    PARSE(&r, "--compression", off[i]);
    if (r.rc) fail_msg("bool %s refused: %s", off[i], r.err);
    assert_int_equal(r.cfg.compression, 0);
    done(&r);
  }
  refused("routes", "maybe");
  refused("routes", "");
  refused("routes", "2");
  run r = {0};
  PARSE(&r, "--history", "auto");
  assert_int_equal(r.cfg.history, -1);
  done(&r);
  PARSE(&r, "--history", "on");
  assert_int_equal(r.cfg.history, 1);
  done(&r);
  PARSE(&r, "--history", "off");
  assert_int_equal(r.cfg.history, 0);
  done(&r);
  refused("history", "sometimes");

  PARSE(&r, "--max-connections", "5000");
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.cfg.max_connections, 5000);
  done(&r);
  refused("max-connections", "-1");
  refused("max-connections", "10k");
  refused("max-connections", "");
  refused("max-connections", "99999999999999999999999");
}

static void test_unknown_and_missing(void **state) {
  (void)state;
  run r = {0};
  PARSE(&r, "--nope", "1");
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "unknown option '--nope'"));
  done(&r);
  PARSE(&r, "--nope=1");
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "--nope"));
  done(&r);
  PARSE(&r, "--listenx=1");  /* a prefix of a name is not the name */
  assert_int_equal(r.rc, -1);
  done(&r);
  PARSE(&r, "--liste=1");
  assert_int_equal(r.rc, -1);
  done(&r);
  PARSE(&r, "stray");
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "stray"));
  done(&r);
  PARSE(&r, "-x");
  assert_int_equal(r.rc, -1);
  done(&r);
  PARSE(&r, "--");
  assert_int_equal(r.rc, -1);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--listen");
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "--listen needs a value"));
  done(&r);
}

static void test_help_and_version(void **state) {
  (void)state;
  run r = {0};
  PARSE(&r, "--help");
  assert_int_equal(r.rc, 1);
  assert_int_equal(r.errlen, 0);
  /* the core flags of README "Configuration" are in --help */
  const char *flags[] = {"--listen", "--api-listen", "--nats", "--redis", "--node-id",
                         "--jwt-secret", "--jwt-public-key", "--jwt-alg", "--admin-token",
                         "--allowed-origins", "--max-message-bytes", "--send-queue-bytes",
                         "--ping-interval", "--idle-timeout", "--drain-grace", "--static-dir",
                         "--max-connections", "--routes", "--route-timeout", "--tls-cert",
                         "--tls-key", "--compression", "--history", "--help", "NATTER_"};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (!strstr(r.out, flags[i])) fail_msg("--help does not mention %s", flags[i]);
  assert_non_null(strstr(r.out, "[default: 0.0.0.0:8080]"));
  done(&r);
  PARSE(&r, "-h");
  assert_int_equal(r.rc, 1);
  done(&r);
  /* --help wins even after a bad value would have been read later */
  PARSE(&r, "--listen", "x", "--help", "--bogus");
  assert_int_equal(r.rc, 1);
  done(&r);
  PARSE(&r, "--version");
  assert_int_equal(r.rc, 1);
  assert_non_null(strstr(r.out, "natter-node"));
  done(&r);
}

static void test_validate(void **state) {
  (void)state;
  run r = {0};
  char *msg = NULL;
  /* defaults: no way to verify tokens */
  parse_v(&r, NULL);
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--jwt-secret"));
  free(msg);
  done(&r);

  PARSE(&r, "--jwt-secret", GOOD_SECRET);
  assert_int_equal(validate(&r.cfg, &msg), 0);
  assert_string_equal(msg, "");
  free(msg);
  done(&r);

  PARSE(&r, "--jwt-public-key", "/etc/natter/key.pem", "--jwt-alg", "RS256");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r);

  /* the ack bound and the dedupe window: defaults 5 s and 120 s; a window shorter than
   * the bound could not recognise a resend after error unavailable */
  PARSE(&r, "--jwt-secret", GOOD_SECRET);
  assert_true(r.cfg.ack_timeout_s == 5.0 && r.cfg.history_dedupe_window_s == 120.0);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--ack-timeout", "50ms");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--ack-timeout must be between 0.1 and 3600"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--ack-timeout", "30", "--history-dedupe-window", "20");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--history-dedupe-window must be at least --ack-timeout"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--ack-timeout", "2", "--history-dedupe-window", "60");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r);

  /* Sentinel: --redis-sentinel and --redis-master both or neither; with --nats they
   * replace --redis */
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-sentinel", "h:26379");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--redis-sentinel and --redis-master go together"));
  assert_non_null(strstr(msg, "only --redis-sentinel"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-master", "m");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "only --redis-master"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-master", "m",
        "--redis-sentinel", "h1:26379, [::1]:26380,h3");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--redis-master", "m", "--redis-sentinel", "h1:26379");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "only --redis-sentinel"));
  free(msg);
  done(&r);
  static const char *bad_sentinels[] = {"", "h:0", "h:65536", "h:x", ":26379", "h,,g",
                                        "[::1", "[::1]x"};
  for (size_t i = 0; i < sizeof bad_sentinels / sizeof *bad_sentinels; i++) {
    PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-master", "m",
          "--redis-sentinel", bad_sentinels[i]);
    assert_int_equal(validate(&r.cfg, &msg), -1);
    assert_non_null(strstr(msg, "--redis-sentinel must be host:port"));
    free(msg);
    done(&r);
  }
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-master", "m",
        "--redis-sentinel", "h:1", "--redis-sentinel-user", "u");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--redis-sentinel-user needs --redis-sentinel-password"));
  free(msg);
  done(&r);

  /* only one of --nats / --redis: refused with a clear message */
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://127.0.0.1:4222");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--nats and --redis go together"));
  assert_non_null(strstr(msg, "only --nats"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--redis", "redis://127.0.0.1:6379");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--nats and --redis go together"));
  assert_non_null(strstr(msg, "only --redis"));
  free(msg);
  done(&r);
  setenv("NATTER_REDIS", "redis://x:6379", 1); /* the environment counts the same */
  PARSE(&r, "--jwt-secret", GOOD_SECRET);
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "only --redis"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://n:4222");
  assert_int_equal(validate(&r.cfg, &msg), 0); /* both: cluster mode */
  free(msg);
  done(&r);
  unsetenv("NATTER_REDIS");

  static const struct {
    const char *flag, *value, *needle;
  } bad[] = {
      {"--listen", "nohost", "--listen"},
      {"--listen", "h:99999", "--listen"},
      {"--api-listen", "[::1]8081", "--api-listen"},
      {"--max-message-bytes", "8", "--max-message-bytes"},
      {"--max-message-bytes", "65M", "--max-message-bytes"},
      {"--max-message-bytes", "16M", "--max-message-bytes"}, /* over the bus decode bound */
      {"--max-message-bytes", "2M", "--send-queue-bytes"},   /* above the default 1M queue */
      {"--send-queue-bytes", "1000", "--send-queue-bytes"},
      {"--ping-interval", "0", "--ping-interval"},
      {"--idle-timeout", "0", "--idle-timeout"},
      {"--idle-timeout", "2073601", "24 days"}, /* 32-bit liveness stamps */
      {"--ping-interval", "2592000", "24 days"},
      {"--max-user-subscriptions", "1000001", "--max-user-subscriptions"},
      {"--tls-cert", "/c.pem", "--tls-key"},
      {"--log-level", "bogus", "--log-level"},
      {"--log-level", "verbose", "--log-level"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    PARSE(&r, "--jwt-secret", GOOD_SECRET, bad[i].flag, bad[i].value);
    assert_int_equal(r.rc, 0);
    if (validate(&r.cfg, &msg) != -1) fail_msg("%s %s validated", bad[i].flag, bad[i].value);
    if (!strstr(msg, bad[i].needle))
      fail_msg("%s %s: message does not say %s: '%s'", bad[i].flag, bad[i].value,
               bad[i].needle, msg);
    free(msg);
    done(&r);
  }
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--max-message-bytes", "8M", "--send-queue-bytes", "9M");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r);
  /* every log level is accepted */
  const char *levels[] = {"debug", "info", "warn", "error"};
  for (size_t i = 0; i < 4; i++) {
    PARSE(&r, "--jwt-secret", GOOD_SECRET, "--log-level", levels[i]);
    assert_int_equal(validate(&r.cfg, &msg), 0);
    free(msg);
    done(&r);
  }
}

static void test_empty_log_level(void **state) {
  (void)state;
  run r = {0};
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--log-level=");
  assert_int_equal(r.rc, 0);
  assert_null(r.cfg.log_level); /* empty means the default level */
  char *msg;
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r); /* LeakSanitizer: the "" must have been freed */
}

static void test_split_hostport(void **state) {
  (void)state;
  char host[64];
  int port = -1;
  assert_int_equal(nt_config_split_hostport("127.0.0.1:8080", host, sizeof host, &port), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, 8080);
  assert_int_equal(nt_config_split_hostport("[::1]:0", host, sizeof host, &port), 0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 0);
  assert_int_equal(nt_config_split_hostport(":9", host, sizeof host, &port), 0);
  assert_string_equal(host, "0.0.0.0");
  assert_int_equal(port, 9);
  assert_int_equal(nt_config_split_hostport("localhost:65535", host, sizeof host, &port), 0);
  assert_int_equal(port, 65535);
  const char *bad[] = {"", "host", "host:", "host:x", "host:65536", "host:-1", "[::1]",
                       "[::1]:", "[::1:80", "h:80x", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    port = -7;
    if (nt_config_split_hostport(bad[i], host, sizeof host, &port) != -1)
      fail_msg("'%s' accepted", bad[i] ? bad[i] : "(null)");
    assert_int_equal(port, -7); /* untouched on failure */
  }
  char tiny[4];
  assert_int_equal(nt_config_split_hostport("abcd:1", tiny, sizeof tiny, &port), -1);
  assert_int_equal(nt_config_split_hostport("abc:1", tiny, sizeof tiny, &port), 0);
}

static void test_free_twice(void **state) {
  (void)state;
  run r = {0};
  PARSE(&r, "--nats", "n", "--redis", "r", "--tls-cert", "c", "--tls-key", "k");
  nt_config_free(&r.cfg);
  nt_config_free(&r.cfg);
  assert_null(r.cfg.nats);
  done(&r);
}

/* HS* secrets shorter than the hash output are refused with the minimum; public keys and
 * a secret beside a public key (unused) are not measured. */
static void test_secret_length(void **state) {
  (void)state;
  static const struct { const char *alg; size_t min; } algs[] = {
      {"HS256", 32}, {"HS384", 48}, {"HS512", 64}};
  char secret[80];
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(nt_config_hmac_min_bytes(algs[i].alg), algs[i].min);
    for (size_t len = algs[i].min - 1; len <= algs[i].min; len++) {
      memset(secret, 'k', len);
      secret[len] = '\0';
      run r = {0};
      char *msg = NULL;
      PARSE(&r, "--jwt-alg", algs[i].alg, "--jwt-secret", secret);
      assert_int_equal(r.rc, 0);
      int rc = validate(&r.cfg, &msg);
      if (len < algs[i].min) {
        char want[64];
        snprintf(want, sizeof want, "%s needs at least %zu", algs[i].alg, algs[i].min);
        if (rc != -1 || !strstr(msg, want))
          fail_msg("%s with %zu bytes: rc %d '%s'", algs[i].alg, len, rc, msg);
        snprintf(want, sizeof want, "is %zu bytes", len);
        assert_non_null(strstr(msg, want));
      } else if (rc != 0) {
        fail_msg("%s with %zu bytes refused: %s", algs[i].alg, len, msg);
      }
      free(msg);
      done(&r);
    }
  }
  assert_int_equal(nt_config_hmac_min_bytes("RS256"), 0);
  assert_int_equal(nt_config_hmac_min_bytes(NULL), 32); /* the default algorithm */
  run r = {0};
  char *msg = NULL;
  PARSE(&r, "--jwt-secret", "short"); /* default HS256 */
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "HS256 needs at least 32"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-alg", "ES256", "--jwt-public-key", "/k.pem");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r);
}

/* Writes `pad` bytes of 'x' then the PEM armour into a temporary file; returns its path. */
static char *ca_file_with_mark_at(size_t pad) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/test_config_ca.XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  for (size_t i = 0; i < pad; i++) fputc('x', f);
  fputs("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  return path;
}

static int validate_ca(const char *path, char **msg) {
  run r = {0};
  PARSE(&r, "--jwt-secret", "0123456789abcdef0123456789abcdef", "--integration-ca-file", path);
  assert_int_equal(r.rc, 0);
  int rc = validate(&r.cfg, msg);
  done(&r);
  return rc;
}

/* --integration-ca-file: the PEM armour is found wherever it is in the first 4 MiB (across
 * the 64 KiB reads too); a file without one, a directory or a missing path is refused. */
static void test_ca_file(void **state) {
  (void)state;
  /* 0, the read boundary (65563 bytes a read) straddled, far into the file */
  static const size_t pads[] = {0, 65550, 65563 - 10, 3u << 20};
  char *msg = NULL;
  for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
    char *path = ca_file_with_mark_at(pads[i]);
    if (validate_ca(path, &msg)) fail_msg("mark at %zu refused: %s", pads[i], msg);
    free(msg);
    unlink(path);
  }
  char *path = ca_file_with_mark_at(5u << 20); /* beyond the scanned 4 MiB */
  assert_int_equal(validate_ca(path, &msg), -1);
  assert_non_null(strstr(msg, "holds no PEM certificate"));
  free(msg);
  unlink(path);
  assert_int_equal(validate_ca("/tmp", &msg), -1);
  assert_non_null(strstr(msg, "not a regular file"));
  free(msg);
  assert_int_equal(validate_ca("/nonexistent/ca.pem", &msg), -1);
  assert_non_null(strstr(msg, "--integration-ca-file: cannot read /nonexistent/ca.pem"));
  free(msg);
}

typedef struct url_case { const char *url, *needle; } url_case;

/* Every `good` value passes `check`; every `bad` one is refused with its needle and the
 * expected form in the message. */
static void check_urls(int (*check)(const char *, char *, size_t), const char *const *good,
                       size_t ngood, const url_case *bad, size_t nbad, const char *form) {
  char why[512];
  for (size_t i = 0; i < ngood; i++)
    if (check(good[i], why, sizeof why)) fail_msg("'%s' refused: %s", good[i], why);
  for (size_t i = 0; i < nbad; i++) {
    if (check(bad[i].url, why, sizeof why) != -1) fail_msg("'%s' accepted", bad[i].url);
    if (!strstr(why, bad[i].needle) || !strstr(why, form))
      fail_msg("'%s': '%s' lacks '%s' or the expected form", bad[i].url, why, bad[i].needle);
  }
}

static void test_nats_urls(void **state) {
  (void)state;
  char why[512];
  const char *good[] = {"nats://127.0.0.1:4222", "tls://nats.example.com:4443",
                        "nats://h", "NATS://h:1", "nats://u:p@h:65535",
                        "nats://tok@h:4222", "nats://[::1]:4222",
                        "nats://a:4222, nats://b:4222,nats://c:4222", "nats://h:4222/"};
  static const url_case bad[] = {
      {"notaurl", "no nats:// scheme"},
      {"127.0.0.1:4222", "no nats:// scheme"},
      {"http://h:4222", "nats:// or tls://"},
      {"nats://", "no host"},
      {"nats://:4222", "no host"},
      {"nats://h:0", "bad port"},
      {"nats://h:65536", "bad port"},
      {"nats://h:42x", "bad port"},
      {"nats://h:", "bad port"},
      {"nats://h/path", "after the port"},
      {"nats://h:4222,bogus", "no nats:// scheme"},
      {"nats://ho st:1", "bad host"},
      {"nats://[::1:4222", "IPv6"},
      {",", "no URL"},
      {"", "no URL"},
  };
  check_urls(nt_config_check_nats, good, sizeof good / sizeof good[0], bad,
             sizeof bad / sizeof bad[0], "expected nats://");
  /* the refusal never shows the password */
  assert_int_equal(nt_config_check_nats("nats://user:hunter2@h:99999", why, sizeof why), -1);
  assert_null(strstr(why, "hunter2"));
  assert_non_null(strstr(why, "nats://user:***@h:99999"));
}

static void test_redis_urls(void **state) {
  (void)state;
  char why[512];
  const char *good[] = {"redis://127.0.0.1:6379", "redis://h", "redis://:pw@h:1/0",
                        "redis://u:pw@h/15", "localhost:6379", "[::1]:6379",
                        "redis://h:6379/", "redis://h/1000000", "redis://:p@ss%3Fw@h:1"};
  static const url_case bad[] = {
      {"http://x", "redis://"},
      {"rediss://h:6380", "not supported"},
      {"notaurl", "no port"},
      {"u:pw@h:6379", "credentials need the redis:// form"},
      {"redis://", "no host"},
      {"redis://h:0", "bad port"},
      {"redis://h:70000", "bad port"},
      {"redis://h:6379/x", "database number"},
      {"redis://h:6379/0?x=1", "percent-encoded"},
      {"redis://:p@ss/w?rd@h:6379/0", "percent-encoded"},
      {"redis://:a#b@h:6379", "percent-encoded"},
      {"redis://h:6379/1000001", "database number"},
      {"", "no host"},
  };
  check_urls(nt_config_check_redis, good, sizeof good / sizeof good[0], bad,
             sizeof bad / sizeof bad[0], "expected redis://");
  assert_int_equal(nt_config_check_redis("redis://:s3cr3t@h:6379/x", why, sizeof why), -1);
  assert_null(strstr(why, "s3cr3t"));
  /* nt_config_validate runs both checks */
  run r = {0};
  char *msg = NULL;
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "notaurl", "--redis", "redis://h:1");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--nats 'notaurl'"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://h:1", "--redis", "http://x");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--redis 'http://x'"));
  free(msg);
  done(&r);
}

static char *write_tmp(const char *content, size_t len) {
  static char path[4][64];
  static int next;
  char *p = path[next++ % 4];
  snprintf(p, sizeof path[0], "/tmp/nt-test-config-XXXXXX");
  int fd = mkstemp(p);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, len), (ssize_t)len);
  close(fd);
  return p;
}

static void test_secret_files(void **state) {
  (void)state;
  run r = {0};
  const char *sec = write_tmp(GOOD_SECRET "\n", strlen(GOOD_SECRET) + 1);
  const char *tok = write_tmp("admin-tok\r\n", 11);
  PARSE(&r, "--jwt-secret-file", sec, "--admin-token-file", tok);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.jwt_secret, GOOD_SECRET); /* trailing newline dropped */
  assert_string_equal(r.cfg.admin_token, "admin-tok"); /* CRLF too */
  done(&r);
  /* the secrets of SigV4 and webhooks have the same file form */
  PARSE(&r, "--aws-access-key-id", "AK", "--aws-secret-access-key-file", tok,
        "--webhook-url", "http://h/x", "--webhook-secret-file", sec);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.aws_secret_access_key, "admin-tok");
  assert_string_equal(r.cfg.webhook_secret, GOOD_SECRET);
  done(&r);
  PARSE(&r, "--webhook-secret", "x", "--webhook-secret-file", sec);
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "--webhook-secret or --webhook-secret-file, not both"));
  done(&r);
  /* only one newline goes: the rest of the content is the secret */
  const char *two = write_tmp(" padded \n\n", 10);
  PARSE(&r, "--admin-token-file", two);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.admin_token, " padded \n");
  done(&r);
  /* the environment form */
  setenv("NATTER_JWT_SECRET_FILE", sec, 1);
  parse_v(&r, NULL);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.jwt_secret, GOOD_SECRET);
  done(&r);
  /* file and value together: refused, whichever came from the environment */
  PARSE(&r, "--jwt-secret", GOOD_SECRET);
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "--jwt-secret or --jwt-secret-file, not both"));
  done(&r);
  unsetenv("NATTER_JWT_SECRET_FILE");
  PARSE(&r, "--admin-token", "x", "--admin-token-file", tok);
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "--admin-token or --admin-token-file, not both"));
  done(&r);
  /* unreadable, empty, a directory */
  PARSE(&r, "--jwt-secret-file", "/nonexistent/secret");
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "cannot read --jwt-secret-file /nonexistent/secret"));
  done(&r);
  const char *empty = write_tmp("\n", 1);
  PARSE(&r, "--jwt-secret-file", empty);
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "empty"));
  done(&r);
  PARSE(&r, "--admin-token-file", "/tmp");
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "not a regular file"));
  done(&r);
  const char *nul = write_tmp("ab\0cd", 5);
  PARSE(&r, "--admin-token-file", nul);
  assert_int_equal(r.rc, -1);
  assert_non_null(strstr(r.err, "NUL"));
  done(&r);
  unlink(sec);
  unlink(tok);
  unlink(two);
  unlink(empty);
  unlink(nul);
}

/* --redis-shards, several --redis-master names, --history-streams. */
static void test_shards(void **state) {
  (void)state;
  run r = {0};
  char *msg = NULL;
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-shards",
        "redis://a:6379, redis://b:6380/2", "--history-streams", "3");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  assert_int_equal(r.cfg.history_streams, 3);
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET);
  assert_int_equal(r.cfg.history_streams, 1); /* default: today's one stream */
  done(&r);
  static const char *bad[][2] = {
      {"redis://a:6379", "takes 2 to 16"},             /* one shard: that is --redis */
      {"redis://a:6379,,redis://b:6379", "takes 2 to 16"},
      {"redis://a:6379,", "takes 2 to 16"},
      {"redis://a:6379,rediss://b:6379", "--redis-shards: "},
      {"a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16,a:17",
       "takes 2 to 16"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-shards",
          bad[i][0]);
    assert_int_equal(validate(&r.cfg, &msg), -1);
    if (!strstr(msg, bad[i][1])) fail_msg("%s: %s", bad[i][0], msg);
    free(msg);
    done(&r);
  }
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis", "a:1",
        "--redis-shards", "a:1,b:2");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--redis-shards replaces --redis"));
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--redis-shards", "a:1,b:2");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "only --redis-shards"));
  free(msg);
  done(&r);
  /* Sentinel: one shard per monitored primary */
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-sentinel",
        "h:26379", "--redis-master", "m0,m1,m2");
  assert_int_equal(validate(&r.cfg, &msg), 0);
  free(msg);
  done(&r);
  PARSE(&r, "--jwt-secret", GOOD_SECRET, "--nats", "nats://a:4222", "--redis-sentinel",
        "h:26379", "--redis-master", "m0,,m2");
  assert_int_equal(validate(&r.cfg, &msg), -1);
  assert_non_null(strstr(msg, "--redis-master takes 1 to 16"));
  free(msg);
  done(&r);
  const char *streams[] = {"0", "17", "100"};
  for (size_t i = 0; i < 3; i++) {
    PARSE(&r, "--jwt-secret", GOOD_SECRET, "--history-streams", streams[i]);
    assert_int_equal(validate(&r.cfg, &msg), -1);
    assert_non_null(strstr(msg, "--history-streams must be between 1 and 16"));
    free(msg);
    done(&r);
  }
}

static void test_help_groups(void **state) {
  (void)state;
  run r = {0};
  PARSE(&r, "--help");
  assert_int_equal(r.rc, 1);
  const char *order[] = {"\nListeners:\n", "\nAuthentication:\n", "\nCluster", "\nLimits:\n",
                         "\nHistory:\n", "\nCustom routes", "\nTLS and compression:\n",
                         "\nLogs:\n"};
  const char *at = r.out;
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    const char *g = strstr(at, order[i]);
    if (!g) fail_msg("--help: group %s missing or out of order", order[i] + 1);
    at = g + 1;
  }
  const char *placeholders[] = {"--listen ADDR:PORT", "--nats URL[,URL...]", "--redis URL",
                                "--jwt-secret SECRET", "--jwt-secret-file FILE",
                                "--max-message-bytes BYTES", "--idle-timeout SECONDS",
                                "--rate-limit N", "--routes on|off", "--history on|off|auto",
                                "--log-level debug|info|warn|error", "--jwt-audience AUD"};
  for (size_t i = 0; i < sizeof placeholders / sizeof placeholders[0]; i++)
    if (!strstr(r.out, placeholders[i])) fail_msg("--help lacks '%s'", placeholders[i]);
  done(&r);
  PARSE(&r, "--version");
  assert_int_equal(r.rc, 1);
  assert_non_null(strstr(r.out, " (commit " NATTER_COMMIT ")\n"));
  done(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_defaults, clean_env),
      cmocka_unit_test_setup(test_flag_forms, clean_env),
      cmocka_unit_test_setup(test_env, clean_env),
      cmocka_unit_test_setup(test_sizes, clean_env),
      cmocka_unit_test_setup(test_seconds, clean_env),
      cmocka_unit_test_setup(test_booleans_and_longs, clean_env),
      cmocka_unit_test_setup(test_history_recent, clean_env),
      cmocka_unit_test_setup(test_unknown_and_missing, clean_env),
      cmocka_unit_test_setup(test_help_and_version, clean_env),
      cmocka_unit_test_setup(test_validate, clean_env),
      cmocka_unit_test_setup(test_secret_length, clean_env),
      cmocka_unit_test_setup(test_nats_urls, clean_env),
      cmocka_unit_test_setup(test_redis_urls, clean_env),
      cmocka_unit_test_setup(test_secret_files, clean_env),
      cmocka_unit_test_setup(test_help_groups, clean_env),
      cmocka_unit_test_setup(test_empty_log_level, clean_env),
      cmocka_unit_test_setup(test_split_hostport, clean_env),
      cmocka_unit_test_setup(test_free_twice, clean_env),
      cmocka_unit_test_setup(test_ca_file, clean_env),
      cmocka_unit_test_setup(test_shards, clean_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
