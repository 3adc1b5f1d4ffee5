/* main: natter-node entry point — configuration, choice of bus and presence, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nt_auth.h"
#include "nt_bus.h"
#include "nt_config.h"
#include "nt_history.h"
#include "nt_log.h"
#include "nt_nats_opts.h"
#include "nt_node.h"
#include "nt_presence.h"
#include "nt_url.h"

static nt_node *g_node;

/* SIGHUP: reload the TLS certificate; the watcher stays. */
static void on_sighup(uv_signal_t *s, int signum) { nt_node_reload(g_node); }

static void on_signal(uv_signal_t *s, int signum) {
  if (signum == SIGTERM) nt_node_drain(g_node);
  else nt_node_stop(g_node);
  uv_close((uv_handle_t *)s, NULL);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = (cap + 4096) * 2;
      char *nb = realloc(buf, cap);
      if (!nb) { free(buf); fclose(f); return NULL; }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, 4096, f);
    len += r;
    if (r < 4096) break;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

int main(int argc, char **argv) {
  nt_config cfg;
  int pr = nt_config_parse(&cfg, argc, argv, stdout, stderr);
  if (pr != 0) {
    nt_config_free(&cfg);
    return pr > 0 ? 0 : 2;
  }
  if (nt_config_validate(&cfg, stderr)) {
    nt_config_free(&cfg);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int level = nt_log_level_parse(cfg.log_level);

  uv_loop_t *loop = uv_default_loop();
  g_node = nt_node_new(loop, &cfg);
  if (!g_node) return 1;
  nt_log_init(level < 0 ? NT_LOG_INFO : level, nt_node_id(g_node));

  char *pem = NULL;
  if (cfg.jwt_public_key && !(pem = read_file(cfg.jwt_public_key))) {
    fprintf(stderr, "natter-node: cannot read --jwt-public-key %s\n", cfg.jwt_public_key);
    return 2;
  }
  nt_auth_cfg acfg = {.alg = cfg.jwt_alg,
                      .secret = pem ? NULL : cfg.jwt_secret,
                      .public_key_pem = pem,
                      .default_tenant = cfg.default_tenant,
                      .audience = cfg.jwt_audience,
                      .issuer = cfg.jwt_issuer};
  nt_auth *auth = NULL;
  char err[256] = "";
  if (nt_auth_new(&acfg, &auth, err, sizeof err)) {
    fprintf(stderr, "natter-node: token verification: %s\n", err);
    return 2;
  }
  free(pem);

  nt_bus_handler bh = nt_node_bus_handler(g_node);
  int history = cfg.history != 0; /* auto: on, on JetStream or in memory */
  nt_presence_handler ph = nt_node_presence_handler(g_node);
  nt_bus *bus = NULL;
  nt_presence *pres = NULL;
  char nats_shown[NT_URL_REDACTED_MAX], redis_shown[NT_URL_REDACTED_MAX];
  nt_url_redact(cfg.nats, nats_shown, sizeof nats_shown);
  nt_url_redact(cfg.redis, redis_shown, sizeof redis_shown);
  nt_nats_sec nsec = {cfg.nats_creds, cfg.nats_nkey_seed, cfg.nats_tls_ca, cfg.nats_tls_cert,
                      cfg.nats_tls_key};
  if (cfg.nats) {
    if (nt_bus_nats_open(loop, cfg.nats, nt_node_id(g_node), &nsec, &bh, &bus)) {
      fprintf(stderr, "natter-node: cannot set up NATS client for %s\n", nats_shown);
      return 1;
    }
    nt_presence_redis_opts ro = {
        .url = cfg.redis, .prefix = cfg.redis_prefix, .node_id = nt_node_id(g_node),
        .node_ttl_s = cfg.node_ttl_s, .refresh_s = cfg.node_refresh_s,
        .sentinels = cfg.redis_sentinel, .master = cfg.redis_master,
        .sentinel_user = cfg.redis_sentinel_user, .sentinel_pass = cfg.redis_sentinel_password};
    if (nt_presence_redis_open(loop, &ro, &ph, &pres)) {
      fprintf(stderr, "natter-node: cannot set up Redis client for %s\n",
              cfg.redis_sentinel ? cfg.redis_sentinel : redis_shown);
      return 1;
    }
  } else {
    bus = nt_bus_mem_new(loop, &bh);
    pres = nt_presence_mem_new(loop, &ph);
    if (bus && bh.on_state) bh.on_state(bh.ud, 1);
  }
  if (!bus || !pres) return 1;
  nt_history *hist = NULL;
  if (history) {
    nt_hist_cfg hc = {
        .max_age_s = cfg.history_max_age_s,
        .max_per_room = cfg.history_max_per_room,
        .memory_storage = !strcmp(cfg.history_storage, "memory"),
        .replicas = (int)cfg.history_replicas,
        .max_bytes = cfg.history_max_bytes,
        .max_msg_bytes = cfg.history_max_msg_bytes ? cfg.history_max_msg_bytes
                                                   : cfg.max_message_bytes + 4096,
        .tenant_bytes = cfg.history_tenant_bytes,
        .dedupe_window_s = cfg.history_dedupe_window_s,
        .ack_timeout_ms = (uint64_t)(cfg.ack_timeout_s * 1000),
        .nats_sec = &nsec,
    };
    if (cfg.nats) {
      if (nt_history_js_new(loop, bus, cfg.nats, nt_node_id(g_node), &hc, NULL, &hist)) {
        fprintf(stderr, "natter-node: cannot set up the history on %s\n", nats_shown);
        return 1;
      }
    } else if (!(hist = nt_history_mem_new(loop, bus, &hc, NULL))) {
      return 1;
    }
  }
  nt_node_attach(g_node, bus, pres, auth);
  if (nt_node_attach_history(g_node, hist)) return 1;
  if (nt_node_start(g_node)) {
    nt_node_stop(g_node);
    uv_run(loop, UV_RUN_DEFAULT);
    nt_node_free(g_node);
    uv_loop_close(loop);
    nt_config_free(&cfg);
    return 1;
  }

  uv_signal_t sigterm, sigint, sighup;
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sighup);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sighup, on_sighup, SIGHUP);
  /* Signal watchers must not keep the loop alive: once the node has closed its own
   * handles (end of a drain), uv_run returns even though the other signal's watcher is
   * still installed. */
  uv_unref((uv_handle_t *)&sigterm);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sighup);

  uv_run(loop, UV_RUN_DEFAULT);

  if (!uv_is_closing((uv_handle_t *)&sigterm)) uv_close((uv_handle_t *)&sigterm, NULL);
  if (!uv_is_closing((uv_handle_t *)&sigint)) uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sighup, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  nt_node_free(g_node);
  int rc = uv_loop_close(loop);
  nt_config_free(&cfg);
  if (rc) {
    fprintf(stderr, "natter-node: loop closed with open handles\n");
    return 1;
  }
  return 0;
}
