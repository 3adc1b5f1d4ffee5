/* nt_integ: invocations of the HTTP integration — per-connection order, bounds, retries. */
#include "nt_integ.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nt_authz.h"
#include "nt_err.h"
#include "nt_httpc.h"
#include "nt_limits.h"
#include "nt_integ_event.h"
#include "nt_log.h"
#include "nt_chat.h"
#include "nt_utf8.h"

#define CONN_QUEUE_MAX 64     /* route invocations one connection may have waiting */
#define RETRY_MAX 4           /* $disconnect attempts */
#define RETRY_FIRST_MS 250    /* then doubled: 250, 500, 1000 ms */
#define RETRY_TICK_MS 50

typedef struct iconn iconn;

typedef struct inv {
  iconn *ic;
  struct inv *next;
  int type;                   /* enum nt_integ_type */
  nt_conn *c;                 /* CONNECT and MESSAGE: referenced, for the answer */
  char *event;                /* the JSON body */
  size_t len;
  uint8_t *rest;              /* CONNECT: bytes after the upgrade request */
  size_t rest_len;
  int attempts;
  char reqid[NT_REQID_MAX + 1];
} inv;

struct iconn {
  char id[NT_CONN_ID_LEN + 1]; /* the map's (borrowed) key */
  struct nt_integ *ig;
  json_t *claims;
  char *domain;
  int64_t connected_at_ms;
  inv *head, *tail;           /* head is in flight while busy */
  size_t nq;
  int busy;                   /* head submitted (or waiting for its retry) */
  int closed;                 /* the connection is gone: free when the queue is empty */
  int holds;                  /* callbacks using it now: not freed under them */
  uint64_t retry_at;          /* uv_now of the head's next attempt; 0: none */
  iconn *next_retry;
};

struct nt_integ {
  nt_chat *n;
  nt_httpc *http;
  nt_integ_routes routes;
  nt_map conns;               /* connection id -> iconn */
  iconn *retrying;            /* $disconnects waiting for their next attempt */
  uv_timer_t retry_timer;
  size_t pending_routes;      /* MESSAGE invocations accepted and not finished */
  size_t max_routes;          /* --integration-concurrency + --integration-queue */
  int want_connect, want_disconnect;
  int closing;
};

/* ================================================================ records ======== */

static void inv_free(inv *v) {
  if (v->c) nt_conn_unref(v->c);
  free(v->event);
  free(v->rest);
  free(v);
}

static void iconn_free(nt_integ *ig, iconn *ic) {
  nt_map_del(&ig->conns, ic->id, strlen(ic->id));
  while (ic->head) {
    inv *v = ic->head;
    ic->head = v->next;
    if (v->type == NT_INTEG_MESSAGE) ig->pending_routes--;
    inv_free(v);
  }
  json_decref(ic->claims);
  free(ic->domain);
  free(ic);
}

static void maybe_free(nt_integ *ig, iconn *ic) {
  if (ic->closed && !ic->head && !ic->busy && !ic->holds) iconn_free(ig, ic);
}

static iconn *iconn_of(nt_integ *ig, const nt_conn *c) {
  return c->id[0] ? nt_map_get(&ig->conns, c->id, strlen(c->id)) : NULL;
}

static void gauge(nt_integ *ig) {
  ig->n->m.integ_inflight = nt_httpc_inflight(ig->http) + nt_httpc_queued(ig->http);
}

/* ================================================================ events ========= */

static nt_integ_conn_info conn_info(nt_integ *ig, const iconn *ic, const nt_conn *c,
                                    char *peer) {
  nt_chat *n = ig->n;
  return (nt_integ_conn_info){.conn_id = ic->id, .connected_at_ms = ic->connected_at_ms,
                              .source_ip = nt_conn_peer(c, peer),
                              .user_agent = c->user_agent, .domain = ic->domain,
                              .stage = n->cfg->integration_stage, .api_id = "natter",
                              .principal = c->ident.user, .tenant = c->ident.tenant,
                              .claims = ic->claims};
}

static inv *inv_new(nt_integ *ig, iconn *ic, nt_conn *c, nt_integ_call *call) {
  inv *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  char rid[NT_CONN_ID_LEN + 1], mid[NT_CONN_ID_LEN + 1], peer[NT_CONN_PEER_STRLEN];
  nt_rand_id(ig->n->rand, rid, NT_CONN_ID_LEN);
  nt_rand_id(ig->n->rand, mid, NT_CONN_ID_LEN);
  call->request_id = rid;
  call->message_id = mid;
  call->now_ms = nt_now_ms();
  nt_integ_conn_info ci = conn_info(ig, ic, c, peer);
  v->event = nt_integ_event(&ci, call, &v->len);
  if (!v->event) {
    free(v);
    return NULL;
  }
  v->ic = ic;
  v->type = call->type;
  return v;
}

static void enqueue(iconn *ic, inv *v) {
  if (ic->tail) ic->tail->next = v;
  else ic->head = v;
  ic->tail = v;
  ic->nq++;
}

static void dequeue(iconn *ic) {
  inv *v = ic->head;
  ic->head = v->next;
  if (!ic->head) ic->tail = NULL;
  ic->nq--;
}

/* ================================================================ answers ======== */

static void send_error(nt_chat *n, nt_conn *c, const char *code, int status, const char *msg,
                       const char *reqid) {
  nt_frame *f = nt_integ_error_frame(code, status, msg, reqid);
  if (!f) return;
  nt_conn_send(c, f);
  nt_frame_unref(f);
}

static void connect_done(nt_integ *ig, inv *v, int err, int status) {
  nt_chat *n = ig->n;
  nt_conn *c = v->c;
  const nt_http_req *req = c->http ? nt_http_parser_req(c->http) : NULL;
  if (!nt_conn_is_open(c) || c->state != NT_CONN_HTTP || !req || n->stopped) return;
  if (!err && status >= 200 && status < 300) {
    nt_authz_accept(n, c, req, v->rest, v->rest_len);
    return;
  }
  int st = err == NT_ETIMEOUT || err == NT_ELIMIT ? 503 : err ? 502 : (status >= 300 && status <= 599) ? status : 502;
  const char *why = err == NT_ETIMEOUT ? "$connect timed out"
                    : err ? "$connect failed" : "refused by $connect";
  n->m.integ_connect_refused++;
  nt_log_info("upgrade refused by the integration", "{s:i, s:s, s:s, s:s}", "status", st,
              "reason", why, "user", c->ident.user, "tenant", c->ident.tenant);
  nt_identity_clear(&c->ident);
  nt_upgrade_refuse(n, c, st, why);
}

static void message_done(nt_integ *ig, inv *v, int err, int status, const char *body,
                         size_t len) {
  nt_chat *n = ig->n;
  nt_conn *c = v->c;
  if (!nt_conn_is_open(c) || c->state != NT_CONN_WS) return;
  if (err == NT_ETIMEOUT) {
    send_error(n, c, "timeout", 0, "the integration did not answer in time", v->reqid);
  } else if (err) {
    send_error(n, c, "backend_error", 502,
               err == NT_ETOOLARGE ? "the integration's answer is too large"
                                   : "the integration is unavailable", v->reqid);
  } else if (status < 200 || status >= 300) {
    send_error(n, c, "backend_error", status, "the integration answered with an error",
               v->reqid);
  } else if (len) { /* the gateway's two-way route: the body as one frame */
    int text = nt_utf8_valid((const uint8_t *)body, len);
    nt_frame *f = nt_frame_from(text ? NT_WS_OP_TEXT : NT_WS_OP_BINARY, body, len);
    if (f) {
      nt_conn_send(c, f);
      nt_frame_unref(f);
    }
  }
}

static void pump(nt_integ *ig, iconn *ic);
static void on_retry_tick(uv_timer_t *t);

/* A $disconnect that failed for a reason worth retrying waits at the head. */
static int retry_later(nt_integ *ig, iconn *ic, inv *v, int err, int status) {
  int transient = err == NT_ETIMEOUT || err == NT_EIO || err == NT_ELIMIT || status >= 500;
  if (ig->closing || !transient || v->attempts >= RETRY_MAX) return 0;
  ig->n->m.integ_retries++;
  ic->retry_at = uv_now(ig->n->loop) + ((uint64_t)RETRY_FIRST_MS << (v->attempts - 1));
  ic->next_retry = ig->retrying;
  ig->retrying = ic;
  ic->busy = 1;
  if (!uv_is_active((uv_handle_t *)&ig->retry_timer))
    uv_timer_start(&ig->retry_timer, on_retry_tick, RETRY_TICK_MS, RETRY_TICK_MS);
  return 1;
}

/* The head invocation of `ic` finished with `err` / the response. */
static void finish_head(nt_integ *ig, iconn *ic, int err, int http_status, const char *body,
                        size_t len) {
  nt_chat *n = ig->n;
  inv *v = ic->head;
  nt_integ_result res = {.status = http_status, .body = body, .body_len = len};
  if (!err && nt_integ_result_read(http_status, body, len, &res)) err = NT_EPROTO;
  int status = err ? 0 : res.status;
  if (err == NT_ETIMEOUT) n->m.integ_timeouts++;
  int failed = err || status >= 500;
  if (failed && err != NT_ECLOSED) {
    n->m.integ_failures++;
    nt_log_warn("integration invocation failed", "{s:s, s:s, s:s, s:i, s:i}", "conn", ic->id,
                "type", v->type == NT_INTEG_CONNECT ? "connect"
                        : v->type == NT_INTEG_MESSAGE ? "message" : "disconnect",
                "error", err ? nt_strerror(err) : "status", "status", status, "attempt",
                v->attempts);
  }
  ic->busy = 0;
  if (v->type == NT_INTEG_DISCONNECT && failed && retry_later(ig, ic, v, err, status)) {
    nt_integ_result_free(&res);
    return;
  }
  if (v->type == NT_INTEG_DISCONNECT && failed && err != NT_ECLOSED) n->m.integ_dropped++;
  dequeue(ic);
  if (!ig->closing) {
    if (v->type == NT_INTEG_CONNECT) connect_done(ig, v, err, status);
    else if (v->type == NT_INTEG_MESSAGE) message_done(ig, v, err, status, res.body, res.body_len);
  }
  if (v->type == NT_INTEG_MESSAGE) ig->pending_routes--;
  nt_integ_result_free(&res);
  inv_free(v);
}

static void on_http(void *ud, const nt_httpc_resp *r) {
  iconn *ic = ud;
  nt_integ *ig = ic->ig;
  ic->holds++; /* dropping the last reference of a connection comes back to it */
  finish_head(ig, ic, r->err, r->status, r->body, r->body_len);
  pump(ig, ic);
  ic->holds--;
  maybe_free(ig, ic);
}

/* Submits the head of `ic` when nothing of it is in flight. A head that cannot be
 * submitted finishes at once (its error reaches the client), and the next one is tried. */
static void pump(nt_integ *ig, iconn *ic) {
  nt_chat *n = ig->n;
  while (!ig->closing && !ic->busy && ic->head) {
    inv *v = ic->head;
    uint64_t tmo = (uint64_t)(n->cfg->integration_timeout_s * 1000);
    if (v->type == NT_INTEG_CONNECT) { /* answered before the sweep's handshake deadline */
      uint64_t hs = nt_limits_handshake_ms(n);
      if (hs > 500 && tmo > hs - 500) tmo = hs - 500;
    }
    char cid[32 + NT_CONN_ID_LEN];
    snprintf(cid, sizeof cid, "X-Natter-Connection-Id: %s", ic->id);
    const char *hdrs[] = {"Content-Type: application/json", cid};
    if (!v->attempts) n->m.integ_invocations++;
    v->attempts++;
    ic->busy = 1;
    int rc = nt_httpc_post(ig->http, n->cfg->integration_url, hdrs, 2, v->event, v->len,
                           tmo ? tmo : 1, on_http, ic);
    if (rc) {
      ic->busy = 0;
      if (v->type == NT_INTEG_MESSAGE && rc == NT_ELIMIT) n->m.integ_rate_limited++;
      finish_head(ig, ic, rc, 0, "", 0);
    }
  }
  gauge(ig);
}

static void on_retry_tick(uv_timer_t *t) {
  nt_integ *ig = t->data;
  uint64_t now = uv_now(ig->n->loop);
  iconn **pp = &ig->retrying, *due = NULL;
  while (*pp) { /* detach the due ones first: pumping may add to the list */
    iconn *ic = *pp;
    if (ic->retry_at <= now) {
      *pp = ic->next_retry;
      ic->next_retry = due;
      due = ic;
    } else {
      pp = &ic->next_retry;
    }
  }
  while (due) {
    iconn *ic = due;
    due = ic->next_retry;
    ic->next_retry = NULL;
    ic->retry_at = 0;
    ic->busy = 0;
    ic->holds++;
    pump(ig, ic);
    ic->holds--;
    maybe_free(ig, ic);
  }
  if (!ig->retrying) uv_timer_stop(&ig->retry_timer);
}

/* ================================================================ hooks ========== */

int nt_integ_start(nt_chat *n) {
  const nt_config *cfg = n->cfg;
  if (!cfg->integration_url) return 0;
  nt_integ *ig = calloc(1, sizeof *ig);
  if (!ig) return NT_ENOMEM;
  ig->n = n;
  nt_map_init_borrowed(&ig->conns);
  int rc = nt_integ_routes_init(&ig->routes, cfg->integration_routes,
                                cfg->route_selection_expression);
  size_t conc = (size_t)cfg->integration_concurrency, queue = (size_t)cfg->integration_queue;
  ig->max_routes = conc + queue;
  /* the client's queue also holds $connects and $disconnects: one per connection at most */
  if (!rc && !(ig->http = nt_httpc_new(n->loop,
                                       &(nt_httpc_opts){.max_inflight = conc,
                                                        .max_queued = queue + (size_t)n->max_ws,
                                                        .max_body = cfg->max_message_bytes,
                                                        .user_agent = "natter/" NATTER_VERSION})))
    rc = NT_ENOMEM;
  if (rc) {
    nt_log_error("integration not started", "{s:s}", "error", nt_strerror(rc));
    nt_integ_routes_free(&ig->routes);
    free(ig);
    return rc;
  }
  ig->want_connect = nt_integ_routes_has(&ig->routes, "$connect");
  ig->want_disconnect = nt_integ_routes_has(&ig->routes, "$disconnect");
  uv_timer_init(n->loop, &ig->retry_timer);
  ig->retry_timer.data = ig;
  n->integ = ig;
  nt_log_info("integration", "{s:s, s:s, s:s}", "url", cfg->integration_url, "routes",
              cfg->integration_routes, "route_selection", cfg->route_selection_expression);
  return 0;
}

static void on_retry_closed(uv_handle_t *h) {
  nt_integ *ig = h->data;
  nt_integ_routes_free(&ig->routes);
  nt_map_clear(&ig->conns);
  free(ig);
}

void nt_integ_close(nt_chat *n) {
  nt_integ *ig = n->integ;
  if (!ig) return;
  n->integ = NULL;
  ig->closing = 1;
  nt_httpc_close(ig->http); /* every in-flight head finishes with NT_ECLOSED */
  ig->http = NULL;
  size_t it = 0;
  const char *key;
  void *val;
  while (nt_map_next(&ig->conns, &it, &key, &val)) iconn_free(ig, val);
  ig->retrying = NULL;
  uv_timer_stop(&ig->retry_timer);
  uv_close((uv_handle_t *)&ig->retry_timer, on_retry_closed);
}

int nt_integ_upgrade(nt_chat *n, nt_conn *c, const nt_http_req *req, const char *token) {
  nt_integ *ig = n->integ;
  if (!ig) return 0;
  if (!c->id[0]) nt_rand_id(n->rand, c->id, NT_CONN_ID_LEN);
  iconn *ic = calloc(1, sizeof *ic);
  const char *host = req->hdr[NT_HDR_HOST];
  if (!ic || !(ic->domain = strdup(host ? host : ""))) {
    free(ic);
    return NT_ENOMEM;
  }
  ic->ig = ig;
  memcpy(ic->id, c->id, sizeof ic->id);
  ic->claims = nt_integ_token_claims(token);
  ic->connected_at_ms = nt_now_ms();
  if (nt_map_put(&ig->conns, ic->id, strlen(ic->id), ic, NULL)) {
    json_decref(ic->claims);
    free(ic->domain);
    free(ic);
    return NT_ENOMEM;
  }
  return 0;
}

int nt_integ_connect(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                     size_t rest_len) {
  nt_integ *ig = n->integ;
  iconn *ic = ig && ig->want_connect ? iconn_of(ig, c) : NULL;
  if (!ic) return 0;
  /* the headers natter parses, without the credentials */
  static const int kept[] = {NT_HDR_HOST, NT_HDR_ORIGIN, NT_HDR_USER_AGENT,
                             NT_HDR_X_FORWARDED_FOR, NT_HDR_WS_PROTOCOL, NT_HDR_WS_EXTENSIONS,
                             NT_HDR_WS_VERSION, NT_HDR_WS_KEY, NT_HDR_UPGRADE,
                             NT_HDR_CONNECTION, NT_HDR_CONTENT_TYPE};
  static const char *const names[] = {"Host", "Origin", "User-Agent", "X-Forwarded-For",
                                      "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
                                      "Sec-WebSocket-Version", "Sec-WebSocket-Key", "Upgrade",
                                      "Connection", "Content-Type"};
  enum { NKEPT = sizeof kept / sizeof kept[0] };
  const char *hn[NKEPT], *hv[NKEPT];
  size_t nh = 0;
  for (size_t i = 0; i < NKEPT; i++)
    if (req->hdr[kept[i]]) {
      hn[nh] = names[i];
      hv[nh++] = req->hdr[kept[i]];
    }
  char *query = nt_authz_query_without_token(req->target);
  if (!query) return NT_ENOMEM;
  nt_integ_call call = {.type = NT_INTEG_CONNECT, .route = "$connect", .hdr_names = hn,
                        .hdr_values = hv, .nhdrs = nh, .query = query};
  inv *v = inv_new(ig, ic, c, &call);
  free(query);
  if (!v) return NT_ENOMEM;
  if (rest_len && !(v->rest = malloc(rest_len))) {
    inv_free(v);
    return NT_ENOMEM;
  }
  if (rest_len) memcpy(v->rest, rest, rest_len);
  v->rest_len = rest_len;
  v->c = c;
  nt_conn_ref(c);
  enqueue(ic, v);
  /* the sweep's HTTP deadline restarts here; the invocation ends 0.5 s before it */
  c->connected_at = uv_now(n->loop);
  pump(ig, ic);
  return 1;
}

int nt_integ_on_message(nt_chat *n, nt_conn *c, const uint8_t *data, size_t len) {
  nt_integ *ig = n->integ;
  if (!ig) return 0;
  char reqid[NT_REQID_MAX + 1];
  const char *route = nt_integ_select(&ig->routes, (const char *)data, len, reqid);
  iconn *ic = route ? iconn_of(ig, c) : NULL;
  if (!ic) return 0;
  n->m.messages_in++;
  if (ig->pending_routes >= ig->max_routes || ic->nq >= CONN_QUEUE_MAX) {
    n->m.integ_rate_limited++;
    send_error(n, c, "rate_limited", 0, "too many invocations waiting", reqid);
    return 1;
  }
  nt_integ_call call = {.type = NT_INTEG_MESSAGE, .route = route, .body = (const char *)data,
                        .body_len = len};
  inv *v = inv_new(ig, ic, c, &call);
  if (!v) {
    send_error(n, c, "internal", 0, "cannot build the event", reqid);
    return 1;
  }
  memcpy(v->reqid, reqid, sizeof v->reqid);
  v->c = c;
  nt_conn_ref(c);
  ig->pending_routes++;
  enqueue(ic, v);
  pump(ig, ic);
  return 1;
}

/* What a DISCONNECT says about why the connection ended. */
static void close_code(int why, int *code, const char **reason) {
  switch (why) {
  case NT_CLOSE_CLIENT: *code = 1000; *reason = "client closed the connection"; break;
  case NT_CLOSE_TIMEOUT: *code = 1001; *reason = "idle timeout"; break;
  case NT_CLOSE_SLOW: *code = 1008; *reason = "slow consumer"; break;
  case NT_CLOSE_KICKED: *code = 1000; *reason = "closed by the API"; break;
  case NT_CLOSE_PROTOCOL: *code = 1002; *reason = "protocol error"; break;
  case NT_CLOSE_SHUTDOWN: *code = 1001; *reason = "node shutting down"; break;
  default: *code = 1006; *reason = "connection lost"; break;
  }
}

void nt_integ_closing(nt_chat *n, nt_conn *c, int welcomed) {
  nt_integ *ig = n->integ;
  iconn *ic = ig ? iconn_of(ig, c) : NULL;
  if (!ic) return;
  ic->closed = 1;
  if (welcomed && ig->want_disconnect) {
    nt_integ_call call = {.type = NT_INTEG_DISCONNECT, .route = "$disconnect"};
    close_code(c->close_reason, &call.disconnect_code, &call.disconnect_reason);
    inv *v = inv_new(ig, ic, c, &call);
    if (v) {
      enqueue(ic, v);
      pump(ig, ic);
    } else {
      n->m.integ_dropped++;
    }
  }
  maybe_free(ig, ic);
}

void nt_integ_conn_free(nt_chat *n, nt_conn *c) {
  nt_integ *ig = n->integ;
  iconn *ic = ig ? iconn_of(ig, c) : NULL;
  if (!ic) return;
  ic->closed = 1;
  maybe_free(ig, ic);
}
