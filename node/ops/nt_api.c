/* nt_api: HTTP API routing, admin token, and the handlers of --api-listen (docs/api.md). */
#include "nt_api.h"

#include <http_parser.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nt_accesslog.h"
#include "nt_api_aws.h"
#include "nt_chat.h"
#include "nt_envelope.h"
#include "nt_err.h"
#include "nt_log.h"
#include "nt_pct.h"
#include "nt_proto.h"
#include "nt_resume.h"
#include "nt_utf8.h"

/* A push, kick or lookup sent to the owner node: well under the node's 10 s HTTP deadline,
 * and long enough for a node that is busy but alive. */
#define API_BUS_TIMEOUT_MS 3000
#define MAX_SEGMENTS 6
/* A node announces a new connection (welcome frame, connect event) in the same loop turn
 * as it sends the registry write, so a fast backend can ask another node before that write
 * reaches Redis. A miss is asked again once, this much later, before answering 410. */
#define REGISTRY_RETRY_MS 100

/* ================================================================ pure part ====== */

static void route_fail(nt_api_match *m, int status, const char *why) {
  m->route = NT_API_NONE;
  m->status = status;
  m->why = why;
}

/* Copies a decoded id segment into `dst` after validating it; 0 or -1. */
static int take_id(char *dst, const char *seg, int seg_ok) {
  if (seg_ok < 0 || nt_id_check(seg, (size_t)seg_ok)) return -1;
  memcpy(dst, seg, (size_t)seg_ok + 1);
  return 0;
}

void nt_api_route(int method, const char *path, size_t path_len, nt_api_match *m) {
  memset(m, 0, sizeof *m);
  char seg[MAX_SEGMENTS][NT_ID_MAX + 1];
  int ok[MAX_SEGMENTS]; /* decoded length, or a negative code */
  int ns = 0;
  if (!path || path_len < 2 || path[0] != '/') {
    route_fail(m, 404, "no such route");
    return;
  }
  for (size_t i = 1; i <= path_len;) {
    const char *s = path + i;
    const char *slash = memchr(s, '/', path_len - i);
    size_t n = slash ? (size_t)(slash - s) : path_len - i;
    /* Empty segments ("//", a trailing '/') name no resource here. */
    if (n == 0 || ns == MAX_SEGMENTS) {
      route_fail(m, 404, "no such route");
      return;
    }
    ok[ns] = nt_pct_decode(s, n, seg[ns], sizeof seg[ns], NT_PCT_NO_SLASH);
    if (ok[ns] < 0) seg[ns][0] = '\0';
    ns++;
    i += n + 1;
    if (!slash) break;
  }
#define LIT(k, s) (ok[k] >= 0 && strcmp(seg[k], s) == 0)
  if (ns == 1 && (LIT(0, "healthz") || LIT(0, "readyz") || LIT(0, "metrics"))) {
    m->is_public = 1;
    if (method != HTTP_GET) {
      route_fail(m, 405, "use GET");
      return;
    }
    m->route = LIT(0, "healthz") ? NT_API_HEALTHZ : LIT(0, "readyz") ? NT_API_READYZ
                                                                      : NT_API_METRICS;
    return;
  }
  /* /@connections/{id}, or /{stage}/@connections/{id} as the gateway's endpoints have it */
  int st = ns == 3 && LIT(1, "@connections") && ok[0] > 0;
  if ((ns == 2 && LIT(0, "@connections")) || st) {
    if (method == HTTP_GET) m->route = NT_API_CONN_GET;
    else if (method == HTTP_POST) m->route = NT_API_CONN_POST;
    else if (method == HTTP_DELETE) m->route = NT_API_CONN_DELETE;
    else return route_fail(m, 405, "use GET, POST or DELETE");
    if (take_id(m->id, seg[1 + st], ok[1 + st])) route_fail(m, 400, "invalid connection id");
    return;
  }
  if (ns == 6 && LIT(0, "v1") && LIT(1, "tenants")) {
    int rooms = LIT(3, "rooms"), users = LIT(3, "users");
    if (rooms && LIT(5, "messages")) {
      m->route = method == HTTP_GET ? NT_API_ROOM_HISTORY : NT_API_ROOM_MESSAGE;
    } else if (users && LIT(5, "messages")) {
      m->route = NT_API_USER_MESSAGE;
    } else if (rooms && LIT(5, "presence")) {
      m->route = NT_API_ROOM_PRESENCE;
    } else {
      route_fail(m, 404, "no such route");
      return;
    }
    int want = m->route == NT_API_ROOM_PRESENCE || m->route == NT_API_ROOM_HISTORY ? HTTP_GET
                                                                                  : HTTP_POST;
    if (method != want) {
      route_fail(m, 405, want == HTTP_GET ? "use GET" : "use POST");
      return;
    }
    if (take_id(m->id, seg[2], ok[2])) route_fail(m, 400, "invalid tenant id");
    else if (take_id(m->sub, seg[4], ok[4]))
      route_fail(m, 400, rooms ? "invalid room id" : "invalid user id");
    return;
  }
#undef LIT
  route_fail(m, 404, "no such route");
}

int nt_api_check_auth(const char *admin_token, const char *authorization) {
  if (!admin_token || !*admin_token) return 403;
  if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return 401;
  const char *tok = authorization + 7;
  while (*tok == ' ') tok++;
  if (!*tok) return 401;
  /* Hashing first gives two equal-length inputs, so the comparison time depends on
   * neither the configured token's length nor its content. */
  unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)tok, strlen(tok), a);
  SHA256((const unsigned char *)admin_token, strlen(admin_token), b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0 ? 0 : 403;
}

const char *nt_api_error_code(int status) {
  switch (status) {
  case 400: return "bad_request";
  case 401: return "unauthorized";
  case 403: return "forbidden";
  case 404: return "not_found";
  case 405: return "method_not_allowed";
  case 410: return "gone";
  case 413: return "too_large";
  case 431: return "too_large";
  case 503: return "unavailable";
  case 504: return "timeout";
  case 505: return "bad_request";
  default: return status >= 500 ? "internal" : "bad_request";
  }
}

char *nt_api_error_json(const char *code, const char *message, size_t *len) {
  json_t *o = json_pack("{s:s, s:s}", "error", code ? code : "internal", "message",
                        message ? message : "");
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (s && len) *len = strlen(s);
  return s;
}

char *nt_api_error_response(int status, size_t *len) {
  size_t bl = 0;
  char *body = nt_api_error_json(nt_api_error_code(status), nt_http_reason(status), &bl);
  if (!body) return NULL;
  char extra[96];
  snprintf(extra, sizeof extra, "x-amzn-ErrorType: %s\r\n", nt_api_aws_error_type(status));
  char *resp = nt_http_response(status, "application/json", body, bl, extra, 0, len);
  free(body);
  return resp;
}

/* ================================================================ replies ======== */

#define JSON_TYPE "application/json"

static void reply(nt_chat *n, nt_conn *c, int status, const char *type, const char *body,
                  size_t len, const char *extra, int keep_alive) {
  nt_metrics_count_api_status(&n->m, status);
  nt_accesslog_end(c, status);
  if (nt_conn_is_open(c)) {
    size_t out_len;
    char *resp = nt_http_response(status, type, body, len, extra, keep_alive, &out_len);
    if (!resp || nt_conn_send_raw(c, resp, out_len)) keep_alive = 0;
    free(resp);
  }
  nt_conn_http_done(c, keep_alive);
}

static void reply_json(nt_chat *n, nt_conn *c, int status, json_t *o, int keep_alive) {
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!s) {
    static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
    reply(n, c, 500, JSON_TYPE, oom, sizeof oom - 1, NULL, 0);
    return;
  }
  reply(n, c, status, JSON_TYPE, s, strlen(s), NULL, keep_alive);
  free(s);
}

/* `code` NULL: the default code of `status`. */
static void reply_error(nt_chat *n, nt_conn *c, int status, const char *code, const char *msg,
                        int keep_alive) {
  size_t len = 0;
  char *body = nt_api_error_json(code ? code : nt_api_error_code(status), msg, &len);
  char extra[160]; /* the gateway's error type, which the AWS SDKs map to their exceptions */
  snprintf(extra, sizeof extra, "x-amzn-ErrorType: %s\r\n%s", nt_api_aws_error_type(status),
           status == 401 ? "WWW-Authenticate: Bearer realm=\"natter\"\r\n" : "");
  reply(n, c, status, JSON_TYPE, body, body ? len : 0, extra, body ? keep_alive : 0);
  free(body);
}

/* ================================================================ async ops ====== */

/* One request waiting for the presence store or the bus. Holds a reference on the API
 * connection, so the callback may look at it (closed or not) but never at freed memory. */
typedef struct api_op {
  nt_chat *n;
  nt_conn *c;
  int route;
  int keep_alive;
  int retried;       /* the registry was asked a second time */
  uv_timer_t timer;  /* registry retry; initialized only when used */
  int timer_used;
  char id[NT_ID_MAX + 1];
  char sub[NT_ID_MAX + 1];
  char msgid[NT_MSG_ID_MAX + 1]; /* a room message push */
  uint8_t *body;     /* POST /@connections: the data to deliver (copy) */
  size_t body_len;
} api_op;

static api_op *op_new(nt_chat *n, nt_conn *c, const nt_api_match *m, int keep_alive) {
  api_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->n = n;
  op->c = c;
  nt_conn_ref(c);
  op->route = m->route;
  op->keep_alive = keep_alive;
  memcpy(op->id, m->id, sizeof op->id);
  memcpy(op->sub, m->sub, sizeof op->sub);
  return op;
}

static void op_release(uv_handle_t *h) { free(h->data); }

/* The op's memory goes with its timer's close callback when the timer was used. */
static void op_free(api_op *op) {
  nt_conn_unref(op->c);
  free(op->body);
  op->body = NULL;
  if (op->timer_used) {
    op->timer.data = op;
    uv_close((uv_handle_t *)&op->timer, op_release);
  } else {
    free(op);
  }
}

static void op_error(api_op *op, int status, const char *msg) {
  reply_error(op->n, op->c, status, NULL, msg, op->keep_alive);
  op_free(op);
}

/* ================================================================ connections ==== */

static void conn_local(nt_chat *n, nt_conn *c, nt_conn *t, const nt_api_match *m,
                       const nt_http_req *req, int ka) {
  if (m->route == NT_API_CONN_GET) {
    size_t len;
    char *js = nt_client_describe(n, t, &len);
    if (js) reply(n, c, 200, JSON_TYPE, js, len, NULL, ka);
    else reply_error(n, c, 500, NULL, "out of memory", 0);
    free(js);
  } else if (m->route == NT_API_CONN_DELETE) {
    nt_client_kick(t);
    reply(n, c, 204, NULL, NULL, 0, NULL, ka);
  } else {
    int r = nt_client_push(t, req->body, req->body_len);
    /* NT_ECLOSED: closing, or just closed as a slow consumer — gone either way. */
    if (r == 0) reply_json(n, c, 200, json_pack("{s:s}", "connectionId", m->id), ka);
    else if (r == NT_ECLOSED) reply_error(n, c, 410, NULL, "the connection is gone", ka);
    else reply_error(n, c, 500, NULL, "out of memory", ka);
  }
}

static void on_owner_reply(void *ud, int status, const uint8_t *data, size_t len) {
  api_op *op = ud;
  nt_chat *n = op->n;
  int gone = status == 0 && len == 4 && memcmp(data, "gone", 4) == 0;
  if (status == NT_ENORESPONDER || gone) {
    /* No responder: the owner node is down, and its connections went with it. */
    op_error(op, 410, "the connection is gone");
  } else if (status == NT_ETIMEOUT) {
    op_error(op, 504, "the connection's node did not answer in time");
  } else if (status != 0) {
    op_error(op, 503, "message bus unavailable");
  } else if (op->route == NT_API_CONN_GET) {
    if (len && data[0] == '{') reply(n, op->c, 200, JSON_TYPE, (const char *)data, len, NULL,
                                     op->keep_alive);
    else reply_error(n, op->c, 502, "internal", "unexpected answer from the owner node",
                     op->keep_alive);
    op_free(op);
  } else if (op->route == NT_API_CONN_DELETE) {
    reply(n, op->c, 204, NULL, NULL, 0, NULL, op->keep_alive);
    op_free(op);
  } else {
    reply_json(n, op->c, 200, json_pack("{s:s}", "connectionId", op->id), op->keep_alive);
    op_free(op);
  }
}

static void on_registry(void *ud, int status, const nt_conn_info *info);

static void retry_registry(uv_timer_t *t) {
  api_op *op = t->data;
  nt_chat *n = op->n;
  if (!n->pres || !nt_conn_is_open(op->c)) op_error(op, 503, "presence store unavailable");
  else if (nt_presence_conn_get(n->pres, op->id, on_registry, op))
    op_error(op, 503, "presence store unavailable");
}

static void on_registry(void *ud, int status, const nt_conn_info *info) {
  api_op *op = ud;
  nt_chat *n = op->n;
  if (status == NT_ENOTFOUND && !op->retried && !n->stopped) {
    op->retried = 1;
    op->timer_used = 1;
    uv_timer_init(n->loop, &op->timer);
    op->timer.data = op;
    uv_timer_start(&op->timer, retry_registry, REGISTRY_RETRY_MS, 0);
    return;
  }
  if (status == NT_ENOTFOUND) {
    op_error(op, 410, "the connection is gone");
    return;
  }
  if (status != 0 || !n->bus) {
    op_error(op, 503, "presence store unavailable");
    return;
  }
  /* The registry names this node but the hub has no such connection: it just closed. */
  char subject[NT_SUBJECT_MAX];
  if (!strcmp(info->node, n->id) || nt_subject_node(subject, sizeof subject, info->node) < 0) {
    op_error(op, 410, "the connection is gone");
    return;
  }
  char id[NT_CONN_ID_LEN + 1];
  nt_rand_id(n->rand, id, NT_CONN_ID_LEN);
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  env.id = id;
  env.kind = op->route == NT_API_CONN_POST   ? NATTER__KIND__CONN_PUSH
             : op->route == NT_API_CONN_DELETE ? NATTER__KIND__CONN_KICK
                                               : NATTER__KIND__CONN_INFO;
  env.tenant = (char *)info->tenant;
  env.target_conn = op->id;
  env.origin_node = n->id;
  env.timestamp_ms = nt_now_ms();
  env.payload.data = op->body;
  env.payload.len = op->body_len;
  uint8_t buf[4096], *out;
  size_t elen = nt_env_encode(&env, buf, sizeof buf, &out);
  int r = elen ? nt_bus_request(n->bus, subject, out, elen, API_BUS_TIMEOUT_MS, on_owner_reply,
                                op)
               : NT_ENOMEM;
  if (elen && out != buf) free(out);
  if (r) op_error(op, 503, "message bus unavailable");
}

static void handle_conn(nt_chat *n, nt_conn *c, const nt_api_match *m, const nt_http_req *req,
                        int ka) {
  if (m->route == NT_API_CONN_POST && req->body_len == 0) {
    reply_error(n, c, 400, NULL, "the body (the data to send) is empty", ka);
    return;
  }
  nt_conn *t = nt_hub_conn(&n->hub, m->id);
  if (t && nt_conn_is_open(t)) {
    conn_local(n, c, t, m, req, ka);
    return;
  }
  if (!n->pres) {
    reply_error(n, c, 503, NULL, "presence store unavailable", ka);
    return;
  }
  api_op *op = op_new(n, c, m, ka);
  if (op && m->route == NT_API_CONN_POST) {
    op->body = malloc(req->body_len);
    if (op->body) {
      memcpy(op->body, req->body, req->body_len);
      op->body_len = req->body_len;
    }
  }
  if (!op || (m->route == NT_API_CONN_POST && !op->body)) {
    if (op) op_free(op);
    reply_error(n, c, 500, NULL, "out of memory", 0);
    return;
  }
  if (nt_presence_conn_get(n->pres, m->id, on_registry, op))
    op_error(op, 503, "presence store unavailable");
}

/* ================================================================ server push ==== */

/* A room message push with history on: 202 once the stream stored it (or had its id),
 * 503 when it did not answer in time (push again with the same id). */
static void on_push_stored(void *ud, int status) {
  api_op *op = ud;
  if (status == 0)
    reply_json(op->n, op->c, 202, json_pack("{s:s}", "id", op->msgid), op->keep_alive);
  else if (status == NT_ELIMIT) /* may not be stored: not delivered either */
    reply_error(op->n, op->c, 429, "quota_exceeded",
                "over the tenant's history quota or the stored message size",
                op->keep_alive);
  else if (status == NT_ETIMEOUT || status == NT_ECLOSED)
    reply_error(op->n, op->c, 503, "unavailable",
                "the history did not confirm the message; push it again with "
                "the same id", op->keep_alive);
  else
    reply_error(op->n, op->c, 500, NULL, "the history refused the message", op->keep_alive);
  op_free(op);
}

static void handle_push(nt_chat *n, nt_conn *c, const nt_api_match *m, const nt_http_req *req,
                        int ka) {
  int direct = m->route == NT_API_USER_MESSAGE;
  char subject[NT_SUBJECT_MAX];
  if ((direct ? nt_subject_user(subject, sizeof subject, m->id, m->sub)
              : nt_subject_room(subject, sizeof subject, m->id, m->sub)) < 0) {
    reply_error(n, c, 400, NULL, "invalid id", ka);
    return;
  }
  json_error_t jerr;
  json_t *root = req->body_len ? json_loadb((const char *)req->body, req->body_len, 0, &jerr)
                               : NULL;
  json_t *msg = json_is_object(root) ? json_object_get(root, "message") : NULL;
  if (!msg) {
    json_decref(root);
    reply_error(n, c, 400, NULL, "the body must be a JSON object {\"message\": <any JSON>}", ka);
    return;
  }
  json_t *jid = json_object_get(root, "id");
  char msgid[NT_MSG_ID_MAX + 1];
  const char *given = NULL;
  if (jid && !json_is_null(jid) &&
      (!json_is_string(jid) || strlen(json_string_value(jid)) != json_string_length(jid) ||
       !nt_client_msg_id_valid(json_string_value(jid)))) {
    json_decref(root);
    reply_error(n, c, 400, NULL, "invalid id: 1..64 bytes, an id (docs/protocol.md)", ka);
    return;
  }
  if (json_is_string(jid)) {
    snprintf(msgid, sizeof msgid, "%s", json_string_value(jid));
    given = msgid;
  }
  size_t plen;
  char *payload = nt_proto_dump(msg, &plen);
  json_decref(root);
  if (!payload) {
    reply_error(n, c, 500, NULL, "cannot encode the message", ka);
    return;
  }
  api_op *op = direct ? NULL : op_new(n, c, m, ka);
  if (!direct && !op) {
    free(payload);
    reply_error(n, c, 500, NULL, "out of memory", ka);
    return;
  }
  nt_client_msg cm = {
      .subject = subject,
      .tenant = m->id,
      .room = direct ? NULL : m->sub,
      .target_user = direct ? m->sub : NULL,
      .sender_user = "", /* server sender: rendered "userId":null,"server":true */
      .sender_conn = "",
      .exclude_sender = 0,
      .payload = payload,
      .len = plen,
      .id = given,
      .on_stored = on_push_stored,
      .ud = op,
  };
  char idbuf[NT_MSG_ID_MAX + 1];
  char *id = op ? op->msgid : idbuf;
  int r = nt_client_publish_message(n, &cm, id);
  free(payload);
  if (r == 1) return; /* answered once the history stored it (on_push_stored) */
  if (r) reply_error(n, c, 503, NULL, "message bus unavailable", ka);
  else reply_json(n, c, 202, json_pack("{s:s}", "id", id), ka); /* id may be op's */
  if (op) op_free(op);
}

static void on_members(void *ud, int status, const nt_presence_page *pg) {
  api_op *op = ud;
  if (status) {
    op_error(op, 503, "presence store unavailable");
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < pg->n; i++)
    json_array_append_new(arr, json_pack("{s:s}", "userId", pg->members[i]));
  reply_json(op->n, op->c, 200,
             json_pack("{s:s, s:s, s:o*, s:I, s:s*}", "tenantId", op->id, "roomId", op->sub,
                       "members", arr, "total", (json_int_t)pg->total, "cursor", pg->cursor),
             op->keep_alive);
  op_free(op);
}

static int query_u64(const nt_http_req *req, const char *name, uint64_t *out);

/* GET .../presence?limit=&cursor= : one page (docs/api.md). */
static void handle_presence(nt_chat *n, nt_conn *c, const nt_api_match *m,
                            const nt_http_req *req, int ka) {
  uint64_t limit = NT_PRESENCE_PAGE_DEFAULT;
  char cursor[24];
  int cl = nt_http_query_param(req->target, "cursor", cursor, sizeof cursor);
  int has_cursor = cl != NT_ENOTFOUND;
  if (query_u64(req, "limit", &limit) || limit < 1 || limit > NT_PRESENCE_PAGE_MAX ||
      (has_cursor && (cl <= 0 || nt_presence_page_args_ok(cursor, 1)))) {
    reply_error(n, c, 400, NULL, "limit must be 1..1000 and cursor a cursor a page gave", ka);
    return;
  }
  api_op *op = n->pres ? op_new(n, c, m, ka) : NULL;
  if (!op) {
    reply_error(n, c, 503, NULL, "presence store unavailable", ka);
    return;
  }
  int rc = nt_presence_members(n->pres, m->id, m->sub, has_cursor ? cursor : NULL,
                               (size_t)limit, on_members, op);
  if (rc == NT_EINVAL) op_error(op, 400, "invalid cursor");
  else if (rc) op_error(op, 503, "presence store unavailable");
}

/* ================================================================ operations ===== */

/* Per-shard presence series (label shard="k") when presence is sharded (--redis-shards). */
static void shard_metrics(nt_prom *w, nt_presence *p) {
  unsigned n = nt_presence_shards(p, 0, NULL, NULL);
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"presence_shard_connected", "gauge", "1 while connected to this presence shard."},
      {"presence_shard_ops_total", "counter", "Presence operations sent to this shard."},
      {"presence_shard_errors_total", "counter", "Failed presence operations of this shard."},
      {"presence_shard_reaped_nodes_total", "counter", "Dead nodes this node reaped in this shard."},
      {"presence_shard_reconnects_total", "counter", "Reconnections to this shard."},
  };
  for (size_t i = 0; n && i < sizeof m / sizeof m[0]; i++) {
    nt_prom_head(w, m[i].name, m[i].type, m[i].help);
    for (unsigned k = 0; k < n; k++) {
      nt_presence_stats st = {0};
      int up = 0;
      nt_presence_shards(p, k, &st, &up);
      uint64_t v[] = {(uint64_t)up, st.ops, st.errors, st.reaped_nodes, st.reconnects};
      char labels[32];
      snprintf(labels, sizeof labels, "{shard=\"%u\"}", k);
      nt_prom_sample(w, m[i].name, labels, v[i]);
    }
  }
}

static void handle_metrics(nt_chat *n, nt_conn *c, int ka) {
  nt_prom w = NT_PROM_INIT;
  nt_metrics_render(&n->m, &w);
  nt_prom_metric(&w, "draining", "gauge", "1 while draining.", (unsigned)n->draining);
  nt_prom_metric(&w, "http_connections", "gauge",
         "Open connections not upgraded (API and pending HTTP).",
         (unsigned long long)(n->nconns - n->nws));
  if (n->bus) {
    nt_bus_stats bs;
    nt_bus_get_stats(n->bus, &bs);
    nt_prom_metric(&w, "bus_connected", "gauge", "1 while connected to the message bus.",
           (unsigned)nt_bus_connected(n->bus));
    nt_prom_metric(&w, "bus_messages_published_total", "counter", "Messages the bus client published.", bs.published);
    nt_prom_metric(&w, "bus_messages_received_total", "counter", "Messages the bus client delivered to the node.", bs.received);
    nt_prom_metric(&w, "bus_subscriptions", "gauge", "Live bus subscriptions.", bs.subscriptions);
    nt_prom_metric(&w, "bus_client_reconnects_total", "counter", "Reconnections counted by the bus client.", bs.reconnects);
    nt_prom_metric(&w, "bus_dropped_total", "counter", "Bus messages dropped by the client (slow delivery).", bs.dropped);
    nt_prom_metric(&w, "bus_wakeups_total", "counter", "Loop wake-ups that delivered bus messages.", bs.wakeups);
  }
  if (n->pres) {
    nt_presence_stats ps;
    nt_presence_get_stats(n->pres, &ps);
    nt_prom_metric(&w, "store_connected", "gauge", "1 while connected to the presence store.",
           (unsigned)nt_presence_connected(n->pres));
    nt_prom_metric(&w, "presence_ops_total", "counter", "Presence store operations.", ps.ops);
    nt_prom_metric(&w, "presence_transitions_total", "counter", "Online/offline transitions decided.", ps.transitions);
    nt_prom_metric(&w, "presence_reaped_nodes_total", "counter", "Dead nodes reaped by this node.", ps.reaped_nodes);
    nt_prom_metric(&w, "presence_client_reconnects_total", "counter", "Reconnections counted by the store client.", ps.reconnects);
    nt_prom_metric(&w, "presence_errors_total", "counter", "Failed presence operations.", ps.errors);
    nt_prom_metric(&w, "presence_queued", "gauge", "Presence operations waiting for the store's window of commands in flight.", ps.queued);
    shard_metrics(&w, n->pres);
  }
  nt_resume_metrics(n, &w);
  char *body = nt_prom_take(&w);
  if (!body) {
    reply_error(n, c, 500, NULL, "out of memory", ka);
    return;
  }
  reply(n, c, 200, "text/plain; version=0.0.4; charset=utf-8", body, strlen(body), NULL, ka);
  free(body);
}

char *nt_api_readyz(const nt_chat *n, int *status, size_t *len) {
  int ok = nt_chat_ready(n);
  *status = ok ? 200 : 503;
  json_t *o = json_pack("{s:b, s:b, s:b, s:b}", "ready", ok, "bus",
                        n->bus && nt_bus_connected(n->bus), "store",
                        n->pres && nt_presence_connected(n->pres), "draining", n->draining);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (s) *len = strlen(s);
  return s;
}

static void handle_ready(nt_chat *n, nt_conn *c, int ka) {
  int status;
  size_t len;
  char *body = nt_api_readyz(n, &status, &len);
  if (body) reply(n, c, status, JSON_TYPE, body, len, NULL, ka);
  else reply_error(n, c, 500, NULL, "out of memory", ka);
  free(body);
}

/* ================================================================ history ======== */

/* GET /v1/tenants/{t}/rooms/{r}/messages?limit=&before= (docs/history.md). */
static void on_history_page(void *ud, int status, const char *body, size_t len) {
  api_op *op = ud;
  if (status == 0) {
    reply(op->n, op->c, 200, JSON_TYPE, body, len, NULL, op->keep_alive);
    op_free(op);
  } else {
    op_error(op, status == NT_ETIMEOUT ? 504 : 503, "history unavailable");
  }
}

static int query_u64(const nt_http_req *req, const char *name, uint64_t *out) {
  char v[32];
  int l = nt_http_query_param(req->target, name, v, sizeof v);
  if (l == NT_ENOTFOUND) return 0;
  char *end;
  if (l <= 0 || v[0] < '0' || v[0] > '9') return -1;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end || errno == ERANGE) return -1;
  *out = x;
  return 0;
}

static void handle_history(nt_chat *n, nt_conn *c, const nt_api_match *m,
                           const nt_http_req *req, int ka) {
  uint64_t limit = 0, before = 0;
  /* the client protocol's range (a JSON integer): nothing above is a sequence */
  if (query_u64(req, "limit", &limit) || query_u64(req, "before", &before) ||
      before > INT64_MAX) {
    reply_error(n, c, 400, NULL, "limit and before must be integers from 0 to 2^63-1", ka);
    return;
  }
  api_op *op = op_new(n, c, m, ka);
  if (!op) {
    reply_error(n, c, 500, NULL, "out of memory", 0);
    return;
  }
  int rc = nt_resume_api_page(n, m->id, m->sub, before, (size_t)limit, on_history_page, op);
  if (rc == NT_ENOTFOUND) op_error(op, 404, "history is not enabled on this node");
  else if (rc) op_error(op, 503, "history unavailable");
}

/* ================================================================ entry ========== */

void nt_api_on_request(nt_chat *n, nt_conn *c, const nt_http_req *req) {
  n->m.api_requests++;
  /* An upgrade request's remaining bytes are not HTTP; a draining node sheds its
   * keep-alive connections so clients move to another node. */
  int ka = req->keep_alive && !req->upgrade && !n->draining && !n->stopping;
  nt_api_match m;
  nt_api_route(req->method, req->target, req->path_len, &m);
  nt_accesslog_begin(c, req, &m, n->cfg->admin_token); /* the line: nt_accesslog_end */
  const char *aws_why = NULL;
  int aws = m.is_public ? 1 : nt_api_aws_access(n->cfg, req, nt_now_ms() / 1000, &aws_why);
  if (aws == 403) { /* logged as "api auth failed" (warn, rate-limited) by the access log */
    reply_error(n, c, 403, NULL, aws_why, ka);
    return;
  }
  if (!m.is_public && aws) { /* not SigV4-signed: the bearer admin token */
    const char *tok = n->cfg->admin_token;
    int st = nt_api_check_auth(tok, req->hdr[NT_HDR_AUTHORIZATION]);
    if (st) {
      if (!tok || !*tok)
        reply_error(n, c, 403, "api_disabled", "the HTTP API is disabled: no --admin-token is configured", ka);
      else
        reply_error(n, c, st, NULL, st == 401 ? "an admin bearer token is required"
                                              : "wrong admin token", ka);
      return;
    }
  }
  if (m.status) {
    reply_error(n, c, m.status, NULL, m.why, ka);
    return;
  }
  switch (m.route) {
  case NT_API_HEALTHZ:
    reply_json(n, c, 200, json_pack("{s:s}", "status", "ok"), ka);
    break;
  case NT_API_READYZ: handle_ready(n, c, ka); break;
  case NT_API_METRICS: handle_metrics(n, c, ka); break;
  case NT_API_CONN_GET:
  case NT_API_CONN_POST:
  case NT_API_CONN_DELETE: handle_conn(n, c, &m, req, ka); break;
  case NT_API_ROOM_MESSAGE:
  case NT_API_USER_MESSAGE: handle_push(n, c, &m, req, ka); break;
  case NT_API_ROOM_PRESENCE: handle_presence(n, c, &m, req, ka); break;
  case NT_API_ROOM_HISTORY: handle_history(n, c, &m, req, ka); break;
  default: reply_error(n, c, 404, NULL, "no such route", ka); break;
  }
}
