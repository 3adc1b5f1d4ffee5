/* nt_node: node lifecycle — listeners, HTTP routing and upgrade, per-turn flush,
 * liveness sweep, drain and stop. Client actions live in nt_client.c, bus fan-out in
 * nt_fanout.c. */
#include <errno.h>
#include <jansson.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include "nt_api.h"
#include "nt_authz.h"
#include "nt_integ.h"
#include "nt_webhook.h"
#include "nt_deflate.h"
#include "nt_drain.h"
#include "nt_err.h"
#include "nt_handshake.h"
#include "nt_limits.h"
#include "nt_accesslog.h"
#include "nt_log.h"
#include "nt_node_int.h"
#include "nt_proxy.h"
#include "nt_rand.h"
#include "nt_sock.h"
#include "nt_static.h"
#include "nt_tls.h"

#define CLOSE_DEADLINE_MS 3000   /* close handshake: the peer has this long to answer */
#define SWEEP_MS 1000
#define ACCEPTS_PER_EVENT 64     /* then the loop serves the connections it has */
#define ACCEPT_RETRY_MS 100      /* out of descriptors: accepting rests this long */
#define ACCEPT_LOG_MS 10000      /* "accept failed" at most this often */

/* ---------------------------------------------------------------- helpers ---- */

int64_t nt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connection and message ids: the OS CSPRNG, buffered (nt_rand.h). */
void nt_node_random_id(nt_node *n, char *out, size_t len) { nt_rand_id(n->rand, out, len); }

const char *nt_node_id(const nt_node *n) { return n->id; }
const nt_metrics *nt_node_metrics(const nt_node *n) { return &n->m; }
nt_metrics *nt_node_metrics_mut(nt_node *n) { return &n->m; }
uv_loop_t *nt_node_loop(nt_node *n) { return n->loop; }
size_t nt_node_send_queue_bytes(const nt_node *n) { return n->cfg->send_queue_bytes; }
size_t nt_node_max_message_bytes(const nt_node *n) { return n->cfg->max_message_bytes; }
void nt_node_read_buffer(nt_node *n, uv_buf_t *buf) { *buf = uv_buf_init((char *)n->rbuf, NT_READ_BUF); }
nt_deflate *nt_node_deflate(nt_node *n) { return n->pmd; }

void nt_node_mark_dirty(nt_node *n, nt_conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  nt_conn_ref(c);
  c->next_dirty = n->dirty;
  n->dirty = c;
}

/* One flush per connection per loop turn: everything queued by the callbacks of this
 * turn leaves in one writev. Runs before blocking (prepare) and after polling (check). */
static void flush_dirty(nt_node *n) {
  while (n->dirty) {
    nt_conn *c = n->dirty;
    n->dirty = c->next_dirty;
    c->next_dirty = NULL;
    c->dirty = 0;
    nt_conn_flush(c);
    nt_conn_unref(c);
  }
}

static void on_prepare(uv_prepare_t *h) { flush_dirty(h->data); }
static void on_check(uv_check_t *h) { flush_dirty(h->data); }

/* ---------------------------------------------------------------- lifecycle -- */

static void split_origins(nt_node *n, const char *list) {
  if (!list || !*list) return;
  char *dup = strdup(list), *save = NULL;
  for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    size_t l = strlen(t);
    while (l && t[l - 1] == ' ') t[--l] = '\0';
    if (!l) continue;
    char **no = realloc(n->origins, (n->norigins + 1) * sizeof *no);
    if (!no) break;
    n->origins = no;
    n->origins[n->norigins++] = strdup(t);
  }
  free(dup);
}

static long derive_max_connections(const nt_config *cfg) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) { /* take all the open files we are allowed */
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  /* Keep room for the listeners, NATS, Redis, API clients and upgrades in progress. */
  long fds = rl.rlim_cur == RLIM_INFINITY ? 1000000 : (long)rl.rlim_cur;
  long derived = fds > 256 ? fds - 128 : fds / 2;
  if (cfg->max_connections > 0 && cfg->max_connections < derived) return cfg->max_connections;
  return derived;
}

nt_node *nt_node_new(uv_loop_t *loop, const nt_config *cfg) {
  nt_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->loop = loop;
  n->cfg = cfg;
  nt_hub_init(&n->hub);
  nt_map_init_borrowed(&n->uas);
  if (!(n->rand = calloc(1, sizeof *n->rand))) {
    free(n);
    return NULL;
  }
  if (cfg->node_id && *cfg->node_id) {
    snprintf(n->id, sizeof n->id, "%s", cfg->node_id);
  } else {
    char host[64] = "node", rnd[9];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
      if (nt_id_check(p, 1)) *p = '-';
    nt_node_random_id(n, rnd, 8);
    snprintf(n->id, sizeof n->id, "%s-%s", host, rnd);
  }
  if (!nt_id_valid(n->id) || nt_subject_node(n->node_subject, sizeof n->node_subject, n->id) < 0) {
    nt_log_error("invalid node id", "{s:s}", "node_id", n->id);
    free(n->rand);
    free(n);
    return NULL;
  }
  n->ping = nt_frame_new(NT_WS_OP_PING, 0);
  n->max_ws = derive_max_connections(cfg);
  split_origins(n, cfg->allowed_origins);
  return n;
}

nt_bus_handler nt_node_bus_handler(nt_node *n) {
  extern void nt_node_bus_state(void *ud, int connected);
  nt_bus_handler h = {nt_fanout_on_bus_msg, nt_node_bus_state, n, NULL};
  return h;
}

void nt_node_bus_state(void *ud, int connected) {
  nt_node *n = ud;
  if (connected && !n->bus_up && n->bus_ever_up) n->m.bus_reconnects++;
  if (connected) n->bus_ever_up = 1;
  n->bus_up = connected;
  nt_log(connected ? NT_LOG_INFO : NT_LOG_WARN, connected ? "bus connected" : "bus disconnected",
         "{s:I}", "rooms", (json_int_t)n->hub.nrooms);
}

static void pres_state(void *ud, int connected) {
  nt_node *n = ud;
  if (connected && !n->store_up && n->store_ever_up) n->m.store_reconnects++;
  if (connected) n->store_ever_up = 1;
  n->store_up = connected;
}

extern void nt_client_on_conn_lost(void *ud, const nt_conn_info *info);
extern void nt_client_on_offline(void *ud, const char *tenant, const char *room,
                                 const char *user);
extern void nt_client_on_online(void *ud, const char *tenant, const char *room,
                                const char *user);

nt_presence_handler nt_node_presence_handler(nt_node *n) {
  nt_presence_handler h = {nt_client_on_conn_lost, nt_client_on_offline, pres_state, n,
                           nt_client_on_online};
  return h;
}

void nt_node_attach(nt_node *n, nt_bus *bus, nt_presence *pres, nt_auth *auth) {
  n->bus = bus;
  n->pres = pres;
  n->auth = auth;
}

static void on_listener_io(uv_poll_t *h, int status, int events);

static int listen_on(nt_node *n, nt_listener *l, const char *addr, const char *what) {
  char host[256];
  int port;
  struct sockaddr_storage ss;
  if (nt_config_split_hostport(addr, host, sizeof host, &port)) return NT_EINVAL;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)) {
    nt_log_error("bad listen address", "{s:s}", "addr", addr);
    return NT_EINVAL;
  }
  l->fd = -1;
  l->api = l == &n->api_listener;
  int r = nt_sock_listen((struct sockaddr *)&ss, 4096, &l->fd);
  if (!r) {
    r = uv_poll_init(n->loop, &l->poll, l->fd);
    if (r) {
      close(l->fd);
      l->fd = -1;
    } else {
      l->poll.data = n;
      n->handles_open++;
      r = uv_poll_start(&l->poll, UV_READABLE, on_listener_io);
    }
  }
  if (r) {
    nt_log_error("cannot listen", "{s:s, s:s, s:s}", "what", what, "addr", addr, "error",
                 uv_strerror(r));
    return NT_EIO;
  }
  nt_log_info("listening", "{s:s, s:s}", "what", what, "addr", addr);
  return 0;
}

static void on_sweep(uv_timer_t *t);

/* TLS and compression (docs/tls-compression.md). Returns 0 or a negative code (logged). */
static int start_tls_pmd(nt_node *n) {
  const nt_config *cfg = n->cfg;
  if (cfg->tls_cert) {
    char err[256];
    int r = nt_tls_ctx_new(cfg->tls_cert, cfg->tls_key, cfg->tls_min_version, &n->m, &n->tls,
                           err, sizeof err);
    if (r) {
      nt_log_error("cannot set up TLS", "{s:s}", "error", err);
      return r;
    }
    n->api_tls = cfg->api_tls != 0; /* auto: with the same certificate */
    nt_log_info("tls on", "{s:s, s:s, s:b}", "cert", cfg->tls_cert, "min_version",
                cfg->tls_min_version ? cfg->tls_min_version : "1.3", "api", n->api_tls);
  }
  if (cfg->compression &&
      !(n->pmd = nt_deflate_new(cfg->compression_min_bytes, cfg->max_message_bytes, &n->m)))
    return NT_ENOMEM;
  return 0;
}

void nt_node_reload(nt_node *n) {
  if (!n->tls) {
    nt_log_info("reload: nothing to reload (no TLS)", NULL);
    return;
  }
  char err[256];
  if (nt_tls_ctx_reload(n->tls, err, sizeof err))
    nt_log_error("tls reload failed: keeping the current certificate", "{s:s}", "error", err);
  else
    nt_log_info("tls certificate reloaded", "{s:s}", "cert", n->cfg->tls_cert);
}

int nt_node_start(nt_node *n) {
  uv_prepare_init(n->loop, &n->prep);
  uv_check_init(n->loop, &n->check);
  uv_timer_init(n->loop, &n->sweep);
  uv_timer_init(n->loop, &n->drain_timer);
  uv_timer_init(n->loop, &n->accept_retry);
  n->prep.data = n->check.data = n->sweep.data = n->drain_timer.data = n->accept_retry.data = n;
  n->handles_open += 5;
  uv_prepare_start(&n->prep, on_prepare);
  uv_check_start(&n->check, on_check);
  uv_timer_start(&n->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  if (nt_bus_subscribe(n->bus, n->node_subject, NULL, &n->node_sub))
    nt_log_warn("cannot subscribe node subject", "{s:s}", "subject", n->node_subject);
  int r = start_tls_pmd(n);
  if (!r) r = nt_integ_start(n);
  if (!r) r = nt_webhook_start(n);
  if (r) return r;
  r = listen_on(n, &n->listener, n->cfg->listen, "websocket");
  if (!r) r = listen_on(n, &n->api_listener, n->cfg->api_listen, "api");
  if (r) return r;
  nt_log_info("node started", "{s:s, s:s, s:I, s:b}", "version", NATTER_VERSION, "mode",
              n->cfg->nats ? "cluster" : "standalone", "max_connections", (json_int_t)n->max_ws,
              "routes", n->cfg->routes);
  return 0;
}

/* ---------------------------------------------------------------- accept ----- */

/* Sets up a connection for an accepted socket (owned from here on). */
static void conn_accepted(nt_node *n, nt_listener *l, int fd,
                          const struct sockaddr_storage *peer) {
  nt_conn *c = nt_conn_new(n, fd);
  if (!c) {
    close(fd);
    return;
  }
  c->next = n->all; /* linked first: nt_node_on_conn_free unlinks whatever happens */
  if (n->all) n->all->prev = c;
  n->all = c;
  n->nconns++;
  if (n->stopping) {
    nt_conn_abort(c, NT_CLOSE_SHUTDOWN);
    return;
  }
  c->api = l->api != 0;
  if (n->tls && (!c->api || n->api_tls) && nt_tls_attach(c, n->tls)) {
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return;
  }
  c->connected_at = uv_now(n->loop);
  c->last_active = nt_conn_stamp(c->connected_at);
  nt_conn_set_peer_addr(c, (const struct sockaddr *)peer);
  if (nt_conn_start(c)) nt_conn_abort(c, NT_CLOSE_CLIENT);
}

static void listeners_poll(nt_node *n, int on) {
  nt_listener *ls[] = {&n->listener, &n->api_listener};
  for (size_t i = 0; i < 2; i++) {
    uv_handle_t *h = (uv_handle_t *)&ls[i]->poll;
    if (h->type != UV_POLL || uv_is_closing(h)) continue;
    if (on) uv_poll_start(&ls[i]->poll, UV_READABLE, on_listener_io);
    else uv_poll_stop(&ls[i]->poll);
  }
}

static void on_accept_retry(uv_timer_t *t) {
  nt_node *n = t->data;
  if (!n->stopped) listeners_poll(n, 1);
}

/* Logs an accept error at most every ACCEPT_LOG_MS: a node at its descriptor limit would
 * otherwise log for every waiting client. */
static void accept_failed(nt_node *n, int uverr) {
  uint64_t now = uv_now(n->loop);
  if (n->accept_logged && now - n->accept_logged < ACCEPT_LOG_MS) return;
  n->accept_logged = now;
  nt_log_warn("accept failed", "{s:s}", "error", uv_strerror(uverr));
}

static void on_listener_io(uv_poll_t *h, int status, int events) {
  nt_node *n = h->data;
  nt_listener *l = (nt_listener *)h;
  (void)events;
  if (status < 0) { /* POLLERR: libuv stopped the handle; try again later */
    accept_failed(n, status);
    listeners_poll(n, 0);
    uv_timer_start(&n->accept_retry, on_accept_retry, ACCEPT_RETRY_MS, 0);
    return;
  }
  for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
    int fd = -1, uverr = 0;
    struct sockaddr_storage peer;
    int r = nt_sock_accept(l->fd, &fd, &peer, &uverr);
    if (r == NT_EAGAIN) return;
    if (r == NT_ELIMIT) {
      /* Out of descriptors: the waiting clients stay in the backlog until some close.
       * Polling on would wake up at once, forever (level-triggered): rest instead. */
      n->m.accept_paused++;
      accept_failed(n, uverr);
      listeners_poll(n, 0);
      uv_timer_start(&n->accept_retry, on_accept_retry, ACCEPT_RETRY_MS, 0);
      return;
    }
    if (r) {
      accept_failed(n, uverr);
      return;
    }
    conn_accepted(n, l, fd, &peer);
  }
}

void nt_node_on_conn_free(nt_node *n, nt_conn *c) {
  if (c->prev) c->prev->next = c->next;
  else if (n->all == c) n->all = c->next;
  if (c->next) c->next->prev = c->prev;
  n->nconns--;
  if (c->api) nt_accesslog_forget(c);
  if (n->integ) nt_integ_conn_free(n, c);
  if (c->user_agent) nt_unintern(&n->uas, c->user_agent);
  c->user_agent = NULL;
}

/* ---------------------------------------------------------------- HTTP ------- */

static void respond(nt_conn *c, int status, const char *type, const void *body, size_t len,
                    const char *extra) {
  size_t out_len;
  char *resp = nt_http_response(status, type, body, len, extra, 0, &out_len);
  if (resp) nt_conn_send_raw(c, resp, out_len);
  free(resp);
  nt_conn_close_after_flush(c, NT_CLOSE_CLIENT);
}

static void respond_text(nt_conn *c, int status, const char *text) {
  respond(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

static int ready(const nt_node *n) {
  return !n->draining && !n->stopping && nt_bus_connected(n->bus) &&
         nt_presence_connected(n->pres);
}

int nt_node_ready(const nt_node *n) { return n->bus && n->pres && ready(n); }

static int origin_allowed(const nt_node *n, const char *origin) {
  if (!n->norigins) return 1;
  if (!origin) return 0;
  for (size_t i = 0; i < n->norigins; i++)
    if (!strcmp(n->origins[i], "*") || !strcasecmp(n->origins[i], origin)) return 1;
  return 0;
}

static int path_is(const nt_http_req *r, const char *path) {
  return r->path_len == strlen(path) && !strncmp(r->target, path, r->path_len);
}

static void reject_upgrade(nt_node *n, nt_conn *c, int status, const char *why) {
  n->m.upgrades_rejected++;
  nt_accesslog_upgrade_refused(c, status, why);
  respond_text(c, status, why);
}

static void handle_upgrade(nt_node *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                           size_t rest_len) {
  int st = nt_handshake_check(req);
  if (st) {
    respond(c, st, "text/plain", nt_http_reason(st), strlen(nt_http_reason(st)),
            st == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
    n->m.upgrades_rejected++;
    nt_accesslog_upgrade_refused(c, st, nt_http_reason(st));
    return;
  }
  if (!origin_allowed(n, req->hdr[NT_HDR_ORIGIN])) {
    n->m.origin_rejected++;
    reject_upgrade(n, c, 403, "origin not allowed");
    return;
  }
  if (n->draining || n->stopping || (long)n->nws >= n->max_ws) {
    n->m.capacity_rejected++;
    reject_upgrade(n, c, 503, n->draining ? "draining" : "at capacity");
    return;
  }
  char token[8192];
  int tl = nt_http_query_param(req->target, "token", token, sizeof token);
  if (tl < 0) {
    const char *auth = req->hdr[NT_HDR_AUTHORIZATION];
    if (auth && !strncasecmp(auth, "Bearer ", 7) && strlen(auth + 7) < sizeof token) {
      snprintf(token, sizeof token, "%s", auth + 7);
      tl = (int)strlen(token);
    }
  }
  const char *why = "missing token";
  if (tl <= 0 || nt_auth_verify(n->auth, token, nt_now_ms() / 1000, &c->ident, &why)) {
    n->m.auth_failures++;
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 401, why);
    return;
  }
  const char *ua = req->hdr[NT_HDR_USER_AGENT];
  /* browsers send a few dozen distinct strings of ≈ 120 bytes: one shared copy each */
  if (ua) c->user_agent = nt_intern(&n->uas, ua, strnlen(ua, 256));
  const char *xip;
  size_t xlen;
  if ((n->cfg->trust_proxy || n->cfg->trusted_proxies) &&
      nt_proxy_client(n->cfg->trusted_proxies, c->peer, c->peer_family,
                      req->hdr[NT_HDR_X_FORWARDED_FOR], &xip, &xlen))
    nt_conn_set_peer(c, xip, xlen); /* the hop a trusted proxy added (nt_proxy.h) */
  if (n->integ && nt_integ_upgrade(n, c, req, token)) {
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 503, "integration unavailable");
    return;
  }
  if (n->cfg->auth_request) { /* the authorizer's reply accepts or refuses, later */
    if (nt_authz_start(n, c, req, rest, rest_len)) {
      nt_identity_clear(&c->ident);
      reject_upgrade(n, c, 503, "authorizer unavailable");
    }
    return;
  }
  int ir = n->integ ? nt_integ_connect(n, c, req, rest, rest_len) : 0;
  if (ir < 0) {
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 503, "integration unavailable");
  }
  if (ir) return; /* $connect accepts or refuses, later */
  nt_node_accept_upgrade(n, c, req, rest, rest_len);
}

void nt_node_refuse_upgrade(nt_node *n, nt_conn *c, int status, const char *why) {
  reject_upgrade(n, c, status, why);
}

void nt_node_accept_upgrade(nt_node *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                            size_t rest_len) {
  if (nt_limits_user_conns_check(n, &c->ident)) { /* per node: docs/security.md */
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 429, "too many connections for this user");
    return;
  }
  char resp[512], ext[NT_DEFLATE_RESPONSE_MAX];
  uint8_t wbits = 0;
  int pmd = n->pmd && nt_deflate_negotiate(req->hdr[NT_HDR_WS_EXTENSIONS], ext, sizeof ext,
                                           &wbits);
  int rl = nt_handshake_response(req, pmd ? ext : NULL, resp, sizeof resp);
  if (rl < 0 || nt_conn_upgrade(c, rest, rest_len)) {
    reject_upgrade(n, c, 500, "internal error");
    return;
  }
  nt_conn_send_raw(c, resp, (size_t)rl);
  c->pmd = pmd ? wbits : 0;
  if (!c->id[0]) nt_node_random_id(n, c->id, NT_CONN_ID_LEN); /* set early with an authorizer */
  n->nws++;
  n->m.connections = n->nws;
  n->m.connections_total++;
  nt_accesslog_conn_open(c);
  nt_client_welcome(n, c);
}

static void handle_health(nt_node *n, nt_conn *c, const nt_http_req *req) {
  if (path_is(req, "/healthz")) {
    respond_text(c, 200, "ok\n");
  } else {
    int ok = ready(n);
    char body[160];
    snprintf(body, sizeof body, "{\"ready\":%s,\"bus\":%s,\"store\":%s,\"draining\":%s}\n",
             ok ? "true" : "false", nt_bus_connected(n->bus) ? "true" : "false",
             nt_presence_connected(n->pres) ? "true" : "false", n->draining ? "true" : "false");
    respond(c, ok ? 200 : 503, "application/json", body, strlen(body), NULL);
  }
}

void nt_node_on_http(nt_node *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                     size_t rest_len) {
  if (c->api) { /* keep-alive JSON API, health and metrics included (nt_api.c) */
    nt_api_on_request(n, c, req);
    return;
  }
  if (path_is(req, "/healthz") || path_is(req, "/readyz")) {
    handle_health(n, c, req);
    return;
  }
  if (path_is(req, "/ws")) {
    handle_upgrade(n, c, req, rest, rest_len);
    return;
  }
  if (path_is(req, "/dev/token") && n->cfg->dev_tokens) {
    char body[4096];
    int st = nt_static_dev_token(n->cfg, req->target, body, sizeof body);
    respond(c, st, st == 200 ? "application/json" : "text/plain", body, strlen(body),
            "Cache-Control: no-store\r\n");
    return;
  }
  nt_static_serve(n->cfg->static_dir, n->cfg->client_js, c, req);
}

/* ---------------------------------------------------------------- sweep ------ */

/* A liveness interval in ms as compared with connection stamps: beyond NT_CONN_AGE_MAX
 * (24 days) it acts as that. */
static uint32_t age_ms(double s) {
  double ms = s * 1000;
  return ms >= NT_CONN_AGE_MAX ? NT_CONN_AGE_MAX : (uint32_t)ms;
}

/* Once a second: slow HTTP requests, overdue close handshakes, pings and idle timeouts,
 * and empty queue arrays given back (at most one realloc per connection a second). One pass over the node's connections costs well under a millisecond at 100k. */
static void on_sweep(uv_timer_t *t) {
  nt_node *n = t->data;
  uint64_t now = uv_now(n->loop);
  nt_accesslog_tick();
  uint32_t ping_ms = age_ms(n->cfg->ping_interval_s);
  uint32_t idle_ms = age_ms(n->cfg->idle_timeout_s);
  uint64_t http_ms = nt_limits_handshake_ms(n);
  for (nt_conn *c = n->all, *next; c; c = next) {
    next = c->next;
    if (c->handle_closing) continue;
    if (c->state == NT_CONN_HTTP) {
      if (now - c->connected_at > http_ms) { /* slowloris: --handshake-timeout */
        n->m.handshake_timeouts++;
        nt_conn_abort(c, NT_CLOSE_TIMEOUT);
      }
    } else if (c->state == NT_CONN_CLOSING) {
      if (nt_conn_age(now, c->closing_since) > CLOSE_DEADLINE_MS)
        nt_conn_abort(c, c->close_reason);
    } else if (nt_conn_age(now, c->last_active) >= idle_ms) {
      n->m.timeouts++;
      nt_conn_ws_close(c, 1001, "idle timeout", NT_CLOSE_TIMEOUT);
    } else if (nt_conn_age(now, c->last_active) >= ping_ms &&
               (!c->ping_sent || nt_conn_age(now, c->last_ping) >= ping_ms)) {
      /* ping_sent: last_ping falls within this silence (else any ping was earlier
       * still, more than ping_ms ago, and its stamp may have aged past 32 bits) */
      c->last_ping = nt_conn_stamp(now);
      c->ping_sent = 1;
      nt_conn_send(c, n->ping);
    } else {
      nt_conn_trim(c); /* idle between pings: give back the empty queue's array */
    }
  }
  /* After a storm (≤ 64 handshakes and joins in the last second, resident size 4 MiB
   * above the last trim) the parsers, WebSocket contexts, JSON trees and store replies it
   * freed go back to the OS. */
  uint64_t work = n->m.connections_total + n->m.upgrades_rejected + n->m.joins + n->m.leaves;
  if (nt_heap_trim_tick(&n->heap, work, 64, 4u << 20)) n->m.heap_trims++;
}

/* ---------------------------------------------------------------- stop ------- */

static void on_handle_closed(uv_handle_t *h) {
  nt_node *n = h->data;
  n->handles_open--;
}

/* The listening socket is ours, not libuv's: closed once the poll handle is. */
static void on_listener_closed(uv_handle_t *h) {
  nt_listener *l = (nt_listener *)h;
  close(l->fd);
  l->fd = -1;
  on_handle_closed(h);
}

static void close_listener(nt_listener *l) {
  uv_handle_t *h = (uv_handle_t *)&l->poll;
  if (h->type != UV_UNKNOWN_HANDLE && /* not yet listening: start failed early */
      !uv_is_closing(h))
    uv_close(h, on_listener_closed);
}

static void close_node_handles(nt_node *n) {
  if (n->stopped) return;
  n->stopped = 1;
  close_listener(&n->listener);
  close_listener(&n->api_listener);
  uv_handle_t *hs[] = {(uv_handle_t *)&n->prep,        (uv_handle_t *)&n->check,
                       (uv_handle_t *)&n->sweep,       (uv_handle_t *)&n->drain_timer,
                       (uv_handle_t *)&n->accept_retry};
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
    if (hs[i]->type != UV_UNKNOWN_HANDLE && !uv_is_closing(hs[i])) uv_close(hs[i], on_handle_closed);
  if (n->node_sub) {
    nt_bus_unsubscribe(n->bus, n->node_sub);
    n->node_sub = NULL;
  }
  /* Presence first: its pending callbacks (failed with NT_ECLOSED) may still publish. */
  nt_presence *p = n->pres;
  n->pres = NULL;
  if (p) nt_presence_destroy(p);
  nt_webhook_close(n); /* after presence: its last callbacks may still emit */
  nt_integ_close(n);
  nt_resume_close(n); /* the history publishes on the bus: it goes first */
  nt_bus *b = n->bus;
  n->bus = NULL;
  if (b) nt_bus_destroy(b);
}

static void finish_stop(uv_timer_t *t) {
  nt_node *n = t->data;
  for (nt_conn *c = n->all, *next; c; c = next) {
    next = c->next;
    nt_conn_abort(c, NT_CLOSE_SHUTDOWN);
  }
  flush_dirty(n);
  nt_log_info("node stopped", "{s:I}", "deliveries", (json_int_t)n->m.deliveries);
  close_node_handles(n);
}

/* Closes every client with 1001, gives presence removal and close frames a moment to
 * leave, then closes everything. */
static void close_clients(uv_timer_t *t) {
  nt_node *n = t->data;
  n->stopping = 1;
  close_listener(&n->listener); /* no new connections from now on */
  for (nt_conn *c = n->all, *next; c; c = next) {
    next = c->next;
    if (c->state == NT_CONN_WS) nt_conn_ws_close(c, 1001, "going away", NT_CLOSE_SHUTDOWN);
    else if (c->state == NT_CONN_HTTP) nt_conn_abort(c, NT_CLOSE_SHUTDOWN);
  }
  uv_timer_start(&n->drain_timer, finish_stop, 500, 0);
}

/* Drain, after the rejoin window: the held presence removals go out; the node stops once
 * they are done (on a later loop turn: never inside a presence callback), or after
 * RELEASE_DEADLINE_MS if the store does not answer. */
#define RELEASE_DEADLINE_MS 3000

static void on_released(void *ud) {
  nt_node *n = ud;
  uv_timer_start(&n->drain_timer, finish_stop, 0, 0);
}

static void release_presence(uv_timer_t *t) {
  nt_node *n = t->data;
  nt_log_info("drain: removing presence", "{s:I}", "held", (json_int_t)nt_drain_held(n->pres));
  uv_timer_start(&n->drain_timer, finish_stop, RELEASE_DEADLINE_MS, 0);
  nt_drain_release(n->pres, on_released, n);
}

/* Drain, end of the grace: clients are told to go (1001); the held removals wait for the
 * rejoin window. */
static void end_grace(uv_timer_t *t) {
  nt_node *n = t->data;
  close_clients(t);
  if (nt_drain_is_holding(n->pres))
    uv_timer_start(&n->drain_timer, release_presence, (uint64_t)(n->cfg->node_ttl_s * 1000), 0);
}

/* In a cluster, presence removals of this node's connections are held from SIGTERM until
 * the rejoin window after the grace (--node-ttl: as long as a crashed node's entries would
 * survive), so users who reconnect elsewhere by then never go offline — whether the 1001
 * or the load balancer ended their connection. */
void nt_node_drain(nt_node *n) {
  if (n->draining || n->stopping) return;
  n->draining = 1;
  nt_presence *held = n->cfg->nats && n->cfg->node_ttl_s > 0 && n->nws > 0
                          ? nt_drain_hold(n->pres) : NULL; /* no clients: nothing to hold */
  if (held) n->pres = held;
  nt_log_info("draining", "{s:f, s:I, s:f}", "grace_s", n->cfg->drain_grace_s, "connections",
              (json_int_t)n->nws, "rejoin_window_s", held ? n->cfg->node_ttl_s : 0.0);
  uv_timer_start(&n->drain_timer, end_grace, (uint64_t)(n->cfg->drain_grace_s * 1000), 0);
}

/* Immediate stop; during a drain it also cuts the rejoin window short: held presence
 * removals go out now. */
void nt_node_stop(nt_node *n) {
  int held = nt_drain_is_holding(n->pres);
  if (!n->stopping) {
    n->draining = 1;
    uv_timer_stop(&n->drain_timer);
    close_clients(&n->drain_timer);
  }
  if (held) release_presence(&n->drain_timer);
}

void nt_node_free(nt_node *n) {
  if (!n) return;
  nt_resume_free(n);
  nt_hub_free(&n->hub);
  nt_intern_clear(&n->uas);
  nt_frame_unref(n->ping);
  nt_tls_ctx_free(n->tls);
  nt_deflate_free(n->pmd);
  for (size_t i = 0; i < n->norigins; i++) free(n->origins[i]);
  free(n->origins);
  if (n->auth) nt_auth_free(n->auth);
  free(n->rand);
  free(n);
}
