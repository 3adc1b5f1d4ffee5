/* nt_webhook: the event queue, batches, signatures and retries of --webhook-url. */
#include "nt_webhook.h"

#include <jansson.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_httpc.h"
#include "nt_log.h"
#include "nt_chat.h"

#define BATCH_MAX 100
#define BATCH_DELAY_MS 50        /* events of one burst share a request */
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 10000
#define BODY_MAX (4u << 20)      /* a batch body (100 events of well under 1 KiB) */

/* ================================================================ pure part ====== */

static const char *const type_names[] = {"", "connect", "disconnect", "join", "leave",
                                         "online", "offline"};

static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

char *nt_webhook_event_json(const nt_webhook_event *ev, size_t *len) {
  if (ev->type < NT_WH_CONNECT || ev->type > NT_WH_OFFLINE) return NULL;
  json_t *o = json_object();
  if (!o) return NULL;
  json_object_set_new(o, "type", json_string(type_names[ev->type]));
  json_object_set_new(o, "id", str_or_null(ev->id));
  json_object_set_new(o, "tenantId", str_or_null(ev->tenant));
  json_object_set_new(o, "userId", str_or_null(ev->user));
  json_object_set_new(o, "roomId", str_or_null(ev->room));
  json_object_set_new(o, "connectionId", str_or_null(ev->conn));
  json_object_set_new(o, "node", str_or_null(ev->node));
  json_object_set_new(o, "timestamp", json_integer(ev->timestamp_ms));
  if (ev->reason) json_object_set_new(o, "reason", json_string(ev->reason));
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s && len) *len = strlen(s);
  return s;
}

void nt_webhook_sign(const char *secret, const void *body, size_t len, char *out) {
  static const char hex[] = "0123456789abcdef";
  unsigned char mac[32];
  unsigned int ml = sizeof mac;
  HMAC(EVP_sha256(), secret ? secret : "", (int)(secret ? strlen(secret) : 0), body, len,
       mac, &ml);
  memcpy(out, "sha256=", 7);
  for (unsigned i = 0; i < 32; i++) {
    out[7 + 2 * i] = hex[mac[i] >> 4];
    out[8 + 2 * i] = hex[mac[i] & 15];
  }
  out[71] = '\0';
}

/* ================================================================ queue ========== */

typedef struct wh_item {
  struct wh_item *next;
  size_t len;
  char json[];
} wh_item;

struct nt_webhook {
  nt_chat *n;
  nt_httpc *http;
  uv_timer_t timer;          /* batch delay, then backoff */
  wh_item *head, *tail;      /* queued, oldest first */
  size_t queued, max_queued;
  char *body;                /* the batch in flight (or waiting for its retry) */
  size_t body_len, body_events;
  uint64_t backoff_ms;
  int busy;                  /* a request is in flight */
  int backing_off;           /* the timer runs a retry's backoff: new events wait for it */
  int overflowing;           /* dropping since the last "queue full" line */
  int closing;
};

static void schedule(nt_webhook *w, uint64_t ms);

/* Builds the next batch body from the head of the queue (the items are freed). */
static int take_batch(nt_webhook *w) {
  size_t need = 16, k = 0;
  for (wh_item *it = w->head; it && k < BATCH_MAX && need + it->len + 1 <= BODY_MAX; it = it->next, k++)
    need += it->len + 1;
  if (!k) return 0;
  char *b = malloc(need);
  if (!b) return NT_ENOMEM;
  size_t o = 0;
  memcpy(b, "{\"events\":[", 11);
  o = 11;
  for (size_t i = 0; i < k; i++) {
    wh_item *it = w->head;
    if (i) b[o++] = ',';
    memcpy(b + o, it->json, it->len);
    o += it->len;
    w->head = it->next;
    free(it);
  }
  if (!w->head) w->tail = NULL;
  w->queued -= k;
  b[o++] = ']';
  b[o++] = '}';
  b[o] = '\0';
  w->body = b;
  w->body_len = o;
  w->body_events = k;
  return 0;
}

static void on_sent(void *ud, const nt_httpc_resp *r) {
  nt_webhook *w = ud;
  nt_chat *n = w->n;
  w->busy = 0;
  if (w->closing) return;
  int ok = !r->err && r->status >= 200 && r->status < 300;
  int permanent = !r->err && r->status >= 400 && r->status < 500;
  if (ok || permanent) {
    if (ok) n->m.webhook_delivered += w->body_events;
    else {
      n->m.webhook_rejected += w->body_events;
      nt_log_warn("webhook batch rejected", "{s:i, s:I}", "status", r->status, "events",
                  (json_int_t)w->body_events);
    }
    free(w->body);
    w->body = NULL;
    w->backoff_ms = 0;
    schedule(w, 0);
  } else {
    n->m.webhook_retries++;
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
    nt_log_warn("webhook delivery failed", "{s:s, s:i, s:I, s:I}", "error",
                r->err ? nt_strerror(r->err) : "status", "status", r->status, "events",
                (json_int_t)w->body_events, "retry_ms", (json_int_t)w->backoff_ms);
    schedule(w, w->backoff_ms);
    w->backing_off = 1;
  }
  n->m.webhook_queue = w->queued + (w->body ? w->body_events : 0);
}

static void send_batch(uv_timer_t *t) {
  nt_webhook *w = t->data;
  nt_chat *n = w->n;
  w->backing_off = 0;
  if (w->busy || w->closing) return;
  if (!w->body && take_batch(w)) {
    schedule(w, BACKOFF_FIRST_MS);
    return;
  }
  if (!w->body) return;
  char sig[96], ts[48];
  char mac[72];
  nt_webhook_sign(n->cfg->webhook_secret, w->body, w->body_len, mac);
  snprintf(sig, sizeof sig, "X-Natter-Signature: %s", mac);
  snprintf(ts, sizeof ts, "X-Natter-Timestamp: %lld", (long long)(nt_now_ms() / 1000));
  const char *hdrs[] = {"Content-Type: application/json", sig, ts};
  int rc = nt_httpc_post(w->http, n->cfg->webhook_url, hdrs, 3, w->body, w->body_len,
                         (uint64_t)(n->cfg->webhook_timeout_s * 1000), on_sent, w);
  if (rc) schedule(w, BACKOFF_FIRST_MS);
  else w->busy = 1;
}

static void schedule(nt_webhook *w, uint64_t ms) {
  if (w->closing || w->busy || w->backing_off || (!w->body && !w->head)) return;
  if (uv_is_active((uv_handle_t *)&w->timer) && ms >= BATCH_DELAY_MS) return;
  uv_timer_start(&w->timer, send_batch, ms, 0);
}

/* ================================================================ node hooks ===== */

int nt_webhook_start(nt_chat *n) {
  const nt_config *cfg = n->cfg;
  if (!cfg->webhook_url) return 0;
  nt_webhook *w = calloc(1, sizeof *w);
  if (!w) return NT_ENOMEM;
  w->n = n;
  w->max_queued = (size_t)cfg->webhook_queue;
  w->http = nt_httpc_new(n->loop, &(nt_httpc_opts){.max_inflight = 1, .max_queued = 0,
                                                   .max_body = 64 * 1024,
                                                   .user_agent = "natter-webhook/" NATTER_VERSION});
  if (!w->http) {
    free(w);
    nt_log_error("webhooks not started", "{s:s}", "error", "http client");
    return NT_ENOMEM;
  }
  uv_timer_init(n->loop, &w->timer);
  w->timer.data = w;
  n->webhook = w;
  nt_log_info("webhooks", "{s:s, s:I}", "url", cfg->webhook_url, "queue",
              (json_int_t)w->max_queued);
  return 0;
}

static void on_timer_closed(uv_handle_t *h) {
  nt_webhook *w = h->data;
  while (w->head) {
    wh_item *it = w->head;
    w->head = it->next;
    free(it);
  }
  free(w->body);
  free(w);
}

void nt_webhook_close(nt_chat *n) {
  nt_webhook *w = n->webhook;
  if (!w) return;
  n->webhook = NULL;
  w->closing = 1;
  if (w->queued || w->body)
    nt_log_warn("webhook events not delivered at stop", "{s:I}", "events",
                (json_int_t)(w->queued + (w->body ? w->body_events : 0)));
  nt_httpc_close(w->http);
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

void nt_webhook_emit(nt_chat *n, int type, const char *tenant, const char *user,
                     const char *room, const char *conn, const char *node,
                     const char *reason) {
  nt_webhook *w = n->webhook;
  if (!w) return;
  n->m.webhook_events++;
  if (w->queued >= w->max_queued) {
    n->m.webhook_dropped++;
    if (!w->overflowing)
      nt_log_warn("webhook queue full: dropping events", "{s:I}", "queue",
                  (json_int_t)w->max_queued);
    w->overflowing = 1;
    return;
  }
  w->overflowing = 0;
  char id[NT_CONN_ID_LEN + 1];
  nt_rand_id(n->rand, id, NT_CONN_ID_LEN);
  nt_webhook_event ev = {.type = type, .id = id, .tenant = tenant, .user = user, .room = room,
                         .conn = conn, .node = node ? node : n->id,
                         .timestamp_ms = nt_now_ms(), .reason = reason};
  size_t len = 0;
  char *js = nt_webhook_event_json(&ev, &len);
  wh_item *it = js ? malloc(sizeof *it + len + 1) : NULL;
  if (!it) {
    free(js);
    n->m.webhook_dropped++;
    return;
  }
  memcpy(it->json, js, len + 1);
  free(js);
  it->len = len;
  it->next = NULL;
  if (w->tail) w->tail->next = it;
  else w->head = it;
  w->tail = it;
  w->queued++;
  n->m.webhook_queue = w->queued + (w->body ? w->body_events : 0);
  schedule(w, w->queued >= BATCH_MAX ? 0 : BATCH_DELAY_MS);
}
