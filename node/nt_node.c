/* nt_node: the composition root — listeners and accept, the connections' environments and
 * handlers, HTTP routing of --listen, per-turn flush, liveness sweep, drain and stop. The
 * chat layer (node/chat) does upgrades, client actions and fan-out; node/ops the API. */
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
#include "nt_chat.h"
#include "nt_integ.h"
#include "nt_webhook.h"
#include "nt_deflate.h"
#include "nt_drain.h"
#include "nt_err.h"
#include "nt_handshake.h"
#include "nt_heap.h"
#include "nt_limits.h"
#include "nt_accesslog.h"
#include "nt_log.h"
#include "nt_node.h"
#include "nt_pfan.h"
#include "nt_rand.h"
#include "nt_resume.h"
#include "nt_sock.h"
#include "nt_static.h"
#include "nt_tls.h"

#define NT_READ_BUF (64 * 1024)

/* A listening socket of our own, watched by a uv_poll_t (connections are accepted with
 * accept4, straight into the non-blocking sockets nt_conn polls; nt_sock.h). */
typedef struct nt_listener {
  uv_poll_t poll;          /* first member; poll.data == the node */
  int fd;                  /* closed in the poll's close callback */
  int api;                 /* --api-listen */
} nt_listener;

struct nt_node {
  nt_chat chat;            /* bus, presence, rooms, counters, readiness (nt_chat.h) */
  struct nt_tls_ctx *tls;  /* TLS of --listen (and of --api-listen with --api-tls); NULL: off */
  int api_tls;             /* the API listener speaks TLS */

  nt_listener listener, api_listener;
  uv_timer_t accept_retry; /* out of descriptors: listeners rest, then poll again */
  uint64_t accept_logged;  /* when "accept failed" was last logged (uv_now ms) */
  uv_prepare_t prep;
  uv_check_t check;
  uv_timer_t sweep, drain_timer;
  int handles_open;

  nt_heap_trim heap;       /* malloc_trim once a burst of handshakes is over (nt_heap.h) */
  nt_conn_env ws_env;      /* what connections of --listen get (nt_conn.h) */
  nt_conn_env api_env;     /* ... of --api-listen: keep-alive, the API's handler */
  nt_conn *dirty;          /* connections with queued output this turn */
  nt_conn *all;            /* every connection (doubly linked) */

  nt_frame *ping;
  uint8_t rbuf[NT_READ_BUF];
};

#define CLOSE_DEADLINE_MS 3000   /* close handshake: the peer has this long to answer */
#define SWEEP_MS 1000
#define ACCEPTS_PER_EVENT 64     /* then the loop serves the connections it has */
#define ACCEPT_RETRY_MS 100      /* out of descriptors: accepting rests this long */
#define ACCEPT_LOG_MS 10000      /* "accept failed" at most this often */

/* ---------------------------------------------------------------- helpers ---- */

const char *nt_node_id(const nt_node *n) { return n->chat.id; }
const nt_metrics *nt_node_metrics(const nt_node *n) { return &n->chat.m; }
static void on_prepare(uv_prepare_t *h) {
  nt_node *n = h->data;
  nt_conn_flush_dirty(&n->dirty);
}
static void on_check(uv_check_t *h) {
  nt_node *n = h->data;
  nt_conn_flush_dirty(&n->dirty);
}

/* ---------------------------------------------------------------- lifecycle -- */

static void init_envs(nt_node *n);

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
  n->chat.loop = loop;
  n->chat.cfg = cfg;
  nt_hub_init(&n->chat.hub);
  n->chat.hub.room_dtor = nt_pfan_room_free;
  nt_map_init_borrowed(&n->chat.uas);
  if (!(n->chat.rand = calloc(1, sizeof *n->chat.rand))) {
    free(n);
    return NULL;
  }
  if (cfg->node_id && *cfg->node_id) {
    snprintf(n->chat.id, sizeof n->chat.id, "%s", cfg->node_id);
  } else {
    char host[64] = "node", rnd[9];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
      if (nt_id_check(p, 1)) *p = '-';
    nt_rand_id(n->chat.rand, rnd, 8);
    snprintf(n->chat.id, sizeof n->chat.id, "%s-%s", host, rnd);
  }
  if (!nt_id_valid(n->chat.id) || nt_subject_node(n->chat.node_subject, sizeof n->chat.node_subject, n->chat.id) < 0) {
    nt_log_error("invalid node id", "{s:s}", "node_id", n->chat.id);
    free(n->chat.rand);
    free(n);
    return NULL;
  }
  n->chat.log = (nt_chat_log){
      .upgrade_refused = nt_accesslog_upgrade_refused,
      .conn_open = nt_accesslog_conn_open,
      .conn_close = nt_accesslog_conn_close,
  };
  init_envs(n);
  n->ping = nt_frame_new(NT_WS_OP_PING, 0);
  n->chat.max_ws = derive_max_connections(cfg);
  nt_upgrade_set_origins(&n->chat, cfg->allowed_origins);
  return n;
}

nt_bus_handler nt_node_bus_handler(nt_node *n) {
  /* The one entry of bus input (nt_fanout.c), with stream positions when history is on. */
  nt_bus_handler h = {
      .on_msg = nt_fanout_on_bus_msg,
      .on_state = nt_fanout_on_bus_state,
      .ud = &n->chat,
      .on_seq_msg = n->chat.cfg->history != 0 ? nt_fanout_on_bus_seq : NULL,
  };
  return h;
}

nt_presence_handler nt_node_presence_handler(nt_node *n) {
  nt_presence_handler h = {
      .on_conn_lost = nt_client_on_conn_lost,
      .on_offline = nt_client_on_offline,
      .on_state = nt_client_on_store_state,
      .ud = &n->chat,
      .on_online = nt_client_on_online,
  };
  return h;
}

int nt_node_attach_history(nt_node *n, nt_history *h) { return nt_resume_attach(&n->chat, h); }

void nt_node_attach(nt_node *n, nt_bus *bus, nt_presence *pres, nt_auth *auth) {
  n->chat.bus = bus;
  n->chat.pres = pres;
  n->chat.auth = auth;
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
    r = uv_poll_init(n->chat.loop, &l->poll, l->fd);
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
  const nt_config *cfg = n->chat.cfg;
  if (cfg->tls_cert) {
    char err[256];
    int r = nt_tls_ctx_new(cfg->tls_cert, cfg->tls_key, cfg->tls_min_version, &n->chat.m, &n->tls,
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
      !(n->chat.pmd = nt_deflate_new(cfg->compression_min_bytes, cfg->max_message_bytes, &n->chat.m)))
    return NT_ENOMEM;
  n->ws_env.pmd = n->api_env.pmd = n->chat.pmd;
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
    nt_log_info("tls certificate reloaded", "{s:s}", "cert", n->chat.cfg->tls_cert);
}

int nt_node_start(nt_node *n) {
  uv_prepare_init(n->chat.loop, &n->prep);
  uv_check_init(n->chat.loop, &n->check);
  uv_timer_init(n->chat.loop, &n->sweep);
  uv_timer_init(n->chat.loop, &n->drain_timer);
  uv_timer_init(n->chat.loop, &n->accept_retry);
  n->prep.data = n->check.data = n->sweep.data = n->drain_timer.data = n->accept_retry.data = n;
  n->handles_open += 5;
  uv_prepare_start(&n->prep, on_prepare);
  uv_check_start(&n->check, on_check);
  uv_timer_start(&n->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  if (nt_bus_subscribe(n->chat.bus, n->chat.node_subject, NULL, &n->chat.node_sub))
    nt_log_warn("cannot subscribe node subject", "{s:s}", "subject", n->chat.node_subject);
  int r = start_tls_pmd(n);
  if (!r) r = nt_integ_start(&n->chat);
  if (!r) r = nt_webhook_start(&n->chat);
  if (r) return r;
  r = listen_on(n, &n->listener, n->chat.cfg->listen, "websocket");
  if (!r) r = listen_on(n, &n->api_listener, n->chat.cfg->api_listen, "api");
  if (r) return r;
  nt_log_info("node started", "{s:s, s:s, s:I, s:b}", "version", NATTER_VERSION, "mode",
              n->chat.cfg->nats ? "cluster" : "standalone", "max_connections", (json_int_t)n->chat.max_ws,
              "routes", n->chat.cfg->routes);
  return 0;
}

/* ---------------------------------------------------------------- accept ----- */

/* Links a new connection into the node and starts it (TLS attached first when the
 * port speaks it). Returns 0, or -1 when it was aborted at once. */
static int conn_adopt(nt_node *n, nt_conn *c, int tls) {
  c->next = n->all; /* linked first: conn_free unlinks whatever happens */
  if (n->all) n->all->prev = c;
  n->all = c;
  n->chat.nconns++;
  if (n->chat.stopping) {
    nt_conn_abort(c, NT_CLOSE_SHUTDOWN);
    return -1;
  }
  if (tls && nt_tls_attach(c, n->tls)) {
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return -1;
  }
  c->connected_at = uv_now(n->chat.loop);
  c->last_active = nt_conn_stamp(c->connected_at);
  if (nt_conn_start(c)) {
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return -1;
  }
  return 0;
}

/* Sets up a connection for an accepted socket (owned from here on). */
static void conn_accepted(nt_node *n, nt_listener *l, int fd,
                          const struct sockaddr_storage *peer) {
  nt_conn *c = nt_conn_new(l->api ? &n->api_env : &n->ws_env, fd);
  if (!c) {
    close(fd);
    return;
  }
  nt_conn_set_peer_addr(c, (const struct sockaddr *)peer);
  conn_adopt(n, c, n->tls && (!l->api || n->api_tls));
}

nt_conn *nt_node_connect_mem(nt_node *n, int api, nt_mem_peer *peer) {
  nt_conn *c = nt_conn_mem_new(api ? &n->api_env : &n->ws_env, peer);
  if (!c) return NULL;
  nt_conn_set_peer(c, "127.0.0.1", 9);
  return conn_adopt(n, c, 0) ? NULL : c;
}

void nt_node_fixed_ids(nt_node *n) {
  nt_rand *r = n->chat.rand;
  for (size_t i = 0; i < NT_RAND_POOL; i++) r->buf[i] = (uint8_t)(i * 131 + 7);
  r->pos = 0;
  r->filled = 1;
}

nt_chat *nt_node_chat(nt_node *n) { return &n->chat; }

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
  if (!n->chat.stopped) listeners_poll(n, 1);
}

/* Logs an accept error at most every ACCEPT_LOG_MS: a node at its descriptor limit would
 * otherwise log for every waiting client. */
static void accept_failed(nt_node *n, int uverr) {
  uint64_t now = uv_now(n->chat.loop);
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
      n->chat.m.accept_paused++;
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

static void conn_free(void *ud, nt_conn *c) {
  nt_node *n = ud;
  if (c->prev) c->prev->next = c->next;
  else if (n->all == c) n->all = c->next;
  if (c->next) c->next->prev = c->prev;
  n->chat.nconns--;
  if (c->api) nt_accesslog_forget(c);
  if (n->chat.integ) nt_integ_conn_free(&n->chat, c);
  if (c->user_agent) nt_unintern(&n->chat.uas, c->user_agent);
  c->user_agent = NULL;
}

/* ---------------------------------------------------------------- HTTP ------- */

static int path_is(const nt_http_req *r, const char *path) {
  return r->path_len == strlen(path) && !strncmp(r->target, path, r->path_len);
}

static void handle_health(nt_node *n, nt_conn *c, const nt_http_req *req) {
  if (path_is(req, "/healthz")) {
    nt_conn_respond_text(c, 200, "ok\n");
    return;
  }
  int status;
  size_t len;
  char *body = nt_api_readyz(&n->chat, &status, &len); /* the API's /readyz, same body */
  if (body) nt_conn_respond(c, status, "application/json", body, len, NULL);
  else nt_conn_respond_text(c, 500, "out of memory");
  free(body);
}

static void on_http(void *ud, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                    size_t rest_len) {
  nt_node *n = ud;
  if (path_is(req, "/healthz") || path_is(req, "/readyz")) {
    handle_health(n, c, req);
    return;
  }
  if (path_is(req, "/ws")) {
    nt_upgrade_handle(&n->chat, c, req, rest, rest_len);
    return;
  }
  if (path_is(req, "/dev/token") && n->chat.cfg->dev_tokens) {
    char body[4096];
    int st = nt_static_dev_token(n->chat.cfg, req->target, body, sizeof body);
    nt_conn_respond(c, st, st == 200 ? "application/json" : "text/plain", body, strlen(body),
                    "Cache-Control: no-store\r\n");
    return;
  }
  nt_static_serve(n->chat.cfg->static_dir, n->chat.cfg->client_js, c, req);
}

/* A request the HTTP parser refused on --listen: plain text. */
static void on_refused(void *ud, nt_conn *c, int status) {
  nt_node *n = ud;
  size_t len;
  const char *why = nt_http_reason(status);
  char *resp = nt_http_response(status, "text/plain", why, strlen(why), NULL, 0, &len);
  if (resp) nt_conn_send_raw(c, resp, len);
  free(resp);
  n->chat.m.upgrades_rejected++;
}

/* ... on --api-listen: the API's JSON error, counted as an API response. */
static void on_api_refused(void *ud, nt_conn *c, int status) {
  nt_node *n = ud;
  size_t len;
  char *resp = nt_api_error_response(status, &len);
  if (resp) nt_conn_send_raw(c, resp, len);
  free(resp);
  n->chat.m.api_requests++;
  nt_metrics_count_api_status(&n->chat.m, status);
}

/* keep-alive JSON API, health and metrics included (nt_api.c) */
static void on_api_http(void *ud, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                        size_t rest_len) {
  nt_api_on_request(ud, c, req);
}

static const nt_conn_handler ws_handler = {
    .on_http = on_http,
    .on_message = nt_client_on_ws_message,
    .on_refused = on_refused,
    .on_closing = nt_client_on_closing,
    .on_free = conn_free,
};

/* API connections never upgrade: on_message and on_closing are never called. */
static const nt_conn_handler api_handler = {
    .on_http = on_api_http,
    .on_message = nt_client_on_ws_message,
    .on_refused = on_api_refused,
    .on_closing = nt_client_on_closing,
    .on_free = conn_free,
};

/* The connections' environments: limits from the configuration, the node's read buffer,
 * counters and flush list; the deflate streams are added by nt_node_start. */
static void init_envs(nt_node *n) {
  nt_conn_env e = {
      .loop = n->chat.loop,
      .h = &ws_handler,
      .ud = n,
      .rbuf = n->rbuf,
      .rbuf_len = sizeof n->rbuf,
      .send_queue_bytes = n->chat.cfg->send_queue_bytes,
      .max_message_bytes = n->chat.cfg->max_message_bytes,
      .max_header_bytes = n->chat.cfg->max_header_bytes,
      .keep_alive = 0,
      .pmd = NULL,
      .m = &n->chat.m,
      .dirty = &n->dirty,
  };
  n->ws_env = e;
  e.h = &api_handler;
  e.keep_alive = 1;
  n->api_env = e;
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
  uint64_t now = uv_now(n->chat.loop);
  nt_accesslog_tick();
  uint32_t ping_ms = age_ms(n->chat.cfg->ping_interval_s);
  uint32_t idle_ms = age_ms(n->chat.cfg->idle_timeout_s);
  uint64_t http_ms = nt_limits_handshake_ms(&n->chat);
  for (nt_conn *c = n->all, *next; c; c = next) {
    next = c->next;
    if (c->handle_closing) continue;
    if (c->state == NT_CONN_HTTP) {
      if (now - c->connected_at > http_ms) { /* slowloris: --handshake-timeout */
        n->chat.m.handshake_timeouts++;
        nt_conn_abort(c, NT_CLOSE_TIMEOUT);
      }
    } else if (c->state == NT_CONN_CLOSING) {
      if (nt_conn_age(now, c->closing_since) > CLOSE_DEADLINE_MS)
        nt_conn_abort(c, c->close_reason);
    } else if (nt_conn_age(now, c->last_active) >= idle_ms) {
      n->chat.m.timeouts++;
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
  uint64_t work = n->chat.m.connections_total + n->chat.m.upgrades_rejected + n->chat.m.joins + n->chat.m.leaves;
  if (nt_heap_trim_tick(&n->heap, work, 64, 4u << 20)) n->chat.m.heap_trims++;
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
  if (n->chat.stopped) return;
  n->chat.stopped = 1;
  close_listener(&n->listener);
  close_listener(&n->api_listener);
  uv_handle_t *hs[] = {(uv_handle_t *)&n->prep,        (uv_handle_t *)&n->check,
                       (uv_handle_t *)&n->sweep,       (uv_handle_t *)&n->drain_timer,
                       (uv_handle_t *)&n->accept_retry};
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
    if (hs[i]->type != UV_UNKNOWN_HANDLE && !uv_is_closing(hs[i])) uv_close(hs[i], on_handle_closed);
  if (n->chat.node_sub) {
    nt_bus_unsubscribe(n->chat.bus, n->chat.node_sub);
    n->chat.node_sub = NULL;
  }
  /* Presence first: its pending callbacks (failed with NT_ECLOSED) may still publish. */
  nt_presence *p = n->chat.pres;
  n->chat.pres = NULL;
  if (p) nt_presence_destroy(p);
  nt_webhook_close(&n->chat); /* after presence: its last callbacks may still emit */
  nt_integ_close(&n->chat);
  nt_resume_close(&n->chat); /* the history publishes on the bus: it goes first */
  nt_bus *b = n->chat.bus;
  n->chat.bus = NULL;
  if (b) nt_bus_destroy(b);
}

static void finish_stop(uv_timer_t *t) {
  nt_node *n = t->data;
  for (nt_conn *c = n->all, *next; c; c = next) {
    next = c->next;
    nt_conn_abort(c, NT_CLOSE_SHUTDOWN);
  }
  nt_conn_flush_dirty(&n->dirty);
  nt_log_info("node stopped", "{s:I}", "deliveries", (json_int_t)n->chat.m.deliveries);
  close_node_handles(n);
}

/* Closes every client with 1001, gives presence removal and close frames a moment to
 * leave, then closes everything. */
static void close_clients(uv_timer_t *t) {
  nt_node *n = t->data;
  n->chat.stopping = 1;
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
  nt_log_info("drain: removing presence", "{s:I}", "held", (json_int_t)nt_drain_held(n->chat.pres));
  uv_timer_start(&n->drain_timer, finish_stop, RELEASE_DEADLINE_MS, 0);
  nt_drain_release(n->chat.pres, on_released, n);
}

/* Drain, end of the grace: clients are told to go (1001); the held removals wait for the
 * rejoin window. */
static void end_grace(uv_timer_t *t) {
  nt_node *n = t->data;
  close_clients(t);
  if (nt_drain_is_holding(n->chat.pres))
    uv_timer_start(&n->drain_timer, release_presence, (uint64_t)(n->chat.cfg->node_ttl_s * 1000), 0);
}

/* In a cluster, presence removals of this node's connections are held from SIGTERM until
 * the rejoin window after the grace (--node-ttl: as long as a crashed node's entries would
 * survive), so users who reconnect elsewhere by then never go offline — whether the 1001
 * or the load balancer ended their connection. */
void nt_node_drain(nt_node *n) {
  if (n->chat.draining || n->chat.stopping) return;
  n->chat.draining = 1;
  nt_presence *held = n->chat.cfg->nats && n->chat.cfg->node_ttl_s > 0 && n->chat.nws > 0
                          ? nt_drain_hold(n->chat.pres) : NULL; /* no clients: nothing to hold */
  if (held) n->chat.pres = held;
  nt_log_info("draining", "{s:f, s:I, s:f}", "grace_s", n->chat.cfg->drain_grace_s, "connections",
              (json_int_t)n->chat.nws, "rejoin_window_s", held ? n->chat.cfg->node_ttl_s : 0.0);
  uv_timer_start(&n->drain_timer, end_grace, (uint64_t)(n->chat.cfg->drain_grace_s * 1000), 0);
}

/* Immediate stop; during a drain it also cuts the rejoin window short: held presence
 * removals go out now. */
void nt_node_stop(nt_node *n) {
  int held = nt_drain_is_holding(n->chat.pres);
  if (!n->chat.stopping) {
    n->chat.draining = 1;
    uv_timer_stop(&n->drain_timer);
    close_clients(&n->drain_timer);
  }
  if (held) release_presence(&n->drain_timer);
}

void nt_node_free(nt_node *n) {
  if (!n) return;
  nt_resume_free(&n->chat);
  nt_hub_free(&n->chat.hub);
  nt_intern_clear(&n->chat.uas);
  nt_frame_unref(n->ping);
  nt_tls_ctx_free(n->tls);
  nt_deflate_free(n->chat.pmd);
  for (size_t i = 0; i < n->chat.norigins; i++) free(n->chat.origins[i]);
  free(n->chat.origins);
  if (n->chat.auth) nt_auth_free(n->chat.auth);
  free(n->chat.rand);
  free(n);
}
