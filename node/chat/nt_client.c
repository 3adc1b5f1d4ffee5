/* nt_client: the client protocol on a node — welcome, actions, presence transitions,
 * lifecycle events and $default routes. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nt_chat.h"
#include "nt_envelope.h"
#include "nt_err.h"
#include "nt_integ.h"
#include "nt_limits.h"
#include "nt_log.h"
#include "nt_pfan.h"
#include "nt_proto.h"
#include "nt_resume.h"
#include "nt_utf8.h"
#include "nt_webhook.h"

/* ---------------------------------------------------------------- helpers ---- */

static void send_frame(nt_conn *c, nt_frame *f) {
  if (!f) return;
  nt_conn_send(c, f);
  nt_frame_unref(f);
}

void nt_client_send_error(nt_chat *n, nt_conn *c, const char *code, const char *msg,
                          const char *reqid) {
  n->m.protocol_errors++;
  send_frame(c, nt_proto_error(code, msg, reqid));
}

/* Encodes and publishes one envelope (no allocation for envelopes under 4 KiB). A room
 * message goes through the history, which numbers it (nt_resume.c), with `pub`: returns
 * 1 when pub->on_ack will be called. */
static int publish_env(nt_chat *n, const char *subject, const Natter__Envelope *env,
                       const char *reply, const nt_hist_pub *pub) {
  uint8_t stackbuf[4096], *out;
  size_t len = nt_env_encode(env, stackbuf, sizeof stackbuf, &out);
  if (!len) return NT_ENOMEM;
  int r = n->res && env->kind == NATTER__KIND__ROOM_MESSAGE
              ? nt_resume_publish(n, subject, out, len, pub)
              : nt_bus_publish(n->bus, subject, out, len, reply);
  if (out != stackbuf) free(out);
  if (r >= 0) n->m.published++;
  else nt_log_warn("publish failed", "{s:s, s:s}", "subject", subject, "error", nt_strerror(r));
  return r;
}

int nt_client_msg_id_valid(const char *id) {
  return id && strlen(id) <= NT_MSG_ID_MAX && nt_id_valid(id);
}

/* The history's answer for one message, relayed to the sender's callback. */
typedef struct stored_op {
  void (*cb)(void *ud, int status);
  void *ud;
} stored_op;

static void on_hist_ack(void *ud, const nt_hist_ack *a) {
  stored_op op = *(stored_op *)ud;
  free(ud);
  op.cb(op.ud, a->status);
}

int nt_client_publish_message(nt_chat *n, const nt_client_msg *m, char id[NT_MSG_ID_MAX + 1]) {
  if (!n->bus) return NT_ECLOSED;
  if (m->id && !nt_client_msg_id_valid(m->id)) return NT_EINVAL;
  if (m->id) snprintf(id, NT_MSG_ID_MAX + 1, "%s", m->id);
  else nt_rand_id(n->rand, id, NT_CONN_ID_LEN);
  int direct = m->target_user != NULL;
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  env.id = id;
  env.tenant = (char *)m->tenant;
  env.kind = direct ? NATTER__KIND__DIRECT_MESSAGE : NATTER__KIND__ROOM_MESSAGE;
  env.room = direct ? "" : (char *)m->room;
  env.target_user = direct ? (char *)m->target_user : "";
  env.sender_user = (char *)m->sender_user;
  env.sender_conn = (char *)m->sender_conn;
  env.origin_node = n->id;
  env.timestamp_ms = nt_now_ms();
  env.payload.data = (uint8_t *)m->payload;
  env.payload.len = m->len;
  env.exclude_sender = m->exclude_sender != 0;
  if (direct || !n->res) {
    int r = publish_env(n, m->subject, &env, NULL, NULL);
    return r > 0 ? 0 : r;
  }
  /* the key is scoped to tenant, room and sender (ids have no ':'), so one user's id
   * never pre-empts another's, nor one room's another's (the same in any sharding of the
   * history); the server sender ("") cannot collide with a user (1..128 bytes) */
  char key[NT_HIST_MSGID_MAX];
  snprintf(key, sizeof key, "%s:%s:%s:%s", m->tenant, m->room, m->sender_user, id);
  stored_op *op = m->on_stored ? malloc(sizeof *op) : NULL;
  if (m->on_stored && !op) return NT_ENOMEM;
  if (op) *op = (stored_op){m->on_stored, m->ud};
  nt_hist_pub pub = {.msg_id = key, .on_ack = op ? on_hist_ack : NULL, .ud = op};
  int r = publish_env(n, m->subject, &env, NULL, &pub);
  if (r != 1) free(op);
  return r == 1 && !op ? 0 : r;
}

int nt_client_push(nt_conn *c, const uint8_t *data, size_t len) {
  int text = nt_utf8_valid(data, len);
  nt_frame *f = nt_frame_from(text ? NT_WS_OP_TEXT : NT_WS_OP_BINARY, data, len);
  int r = f ? nt_conn_send(c, f) : NT_ENOMEM;
  nt_frame_unref(f);
  return r;
}

void nt_client_kick(nt_conn *c) {
  nt_conn_ws_close(c, 1000, "closed by the server", NT_CLOSE_KICKED);
}

static const char *const event_names[] = {"", "connect", "disconnect", "join", "leave"};
/* DisconnectReason names, for webhooks */
static const char *const reason_names[] = {"", "client_close", "timeout", "slow_consumer",
                                           "kicked", "node_lost", "protocol_error",
                                           "server_shutdown"};

/* `node` is the node that held the connection: the reaper reports a dead node's ones. */
static void publish_event_of(nt_chat *n, const char *node, int kind, const nt_conn *c,
                             const char *tenant, const char *user, const char *conn_id,
                             const char *room, int reason) {
  if (n->webhook) /* the event kinds are the first four webhook types */
    nt_webhook_emit(n, kind, tenant, user, room, conn_id, node,
                    reason > 0 && reason < (int)(sizeof reason_names / sizeof *reason_names)
                        ? reason_names[reason] : NULL);
  char subject[NT_SUBJECT_MAX];
  if (!n->bus || nt_subject_event(subject, sizeof subject, tenant, event_names[kind]) < 0) return;
  Natter__Event ev = NATTER__EVENT__INIT;
  ev.kind = (Natter__EventKind)kind;
  ev.tenant = (char *)tenant;
  ev.user = (char *)user;
  ev.conn = (char *)conn_id;
  ev.node = (char *)node;
  ev.room = (char *)(room ? room : "");
  ev.timestamp_ms = nt_now_ms();
  ev.reason = (Natter__DisconnectReason)reason;
  char peer[NT_CONN_PEER_STRLEN];
  if (c && kind == NATTER__EVENT_KIND__CONNECT) {
    ev.source_ip = (char *)nt_conn_peer(c, peer);
    ev.user_agent = (char *)(c->user_agent ? c->user_agent : "");
  }
  uint8_t buf[1024], *out;
  size_t len = nt_event_encode(&ev, buf, sizeof buf, &out);
  if (!len) return;
  nt_bus_publish(n->bus, subject, out, len, NULL);
  if (out != buf) free(out);
}

void nt_client_publish_event(nt_chat *n, int kind, const nt_conn *c, const char *tenant,
                             const char *user, const char *conn_id, const char *room,
                             int reason) {
  publish_event_of(n, n->id, kind, c, tenant, user, conn_id, room, reason);
}

/* A presence transition: to the webhook, and to the room's members unless the room is known
 * to be larger than --presence-max-members (`total`: members after a join, 0 unknown;
 * receivers check again with what they know, nt_fanout.c). `version`: the join's
 * (nt_presence_joined), 0 for offline and re-asserted online. */
static void publish_presence(nt_chat *n, const char *tenant, const char *room,
                             const char *user, const char *conn_id, int online,
                             uint64_t version, uint64_t total) {
  if (n->webhook) /* a presence transition: decided once in the cluster */
    nt_webhook_emit(n, online ? NT_WH_ONLINE : NT_WH_OFFLINE, tenant, user, room, conn_id,
                    NULL, NULL);
  if (!nt_pfan_events_on(n->cfg->presence_max_members, total)) {
    n->m.presence_suppressed++;
    return;
  }
  char subject[NT_SUBJECT_MAX];
  if (nt_subject_presence(subject, sizeof subject, tenant, room) < 0) return;
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  env.kind = NATTER__KIND__PRESENCE;
  env.tenant = (char *)tenant;
  env.room = (char *)room;
  env.sender_user = (char *)user;
  env.sender_conn = (char *)(conn_id ? conn_id : "");
  env.exclude_sender = online && conn_id; /* the joiner learns the members from `joined` */
  env.origin_node = n->id;
  env.timestamp_ms = nt_now_ms();
  env.status = online ? NATTER__PRESENCE_STATUS__ONLINE : NATTER__PRESENCE_STATUS__OFFLINE;
  env.presence_version = version;
  env.presence_total = total;
  publish_env(n, subject, &env, NULL, NULL);
}

static void subscribe_room(nt_chat *n, nt_room *r) {
  /* with history, messages come sequenced on the room's live subject */
  const char *msgs = n->res ? nt_resume_room_open(n, r) : r->subject;
  if (!msgs || nt_bus_subscribe(n->bus, msgs, NULL, &r->sub) ||
      nt_bus_subscribe(n->bus, r->psubject, NULL, &r->psub))
    nt_log_error("subscribe failed", "{s:s}", "subject", r->subject);
}

static void leave_room_local(nt_chat *n, nt_conn *c, nt_room *r) {
  if (n->res) nt_resume_leave(n, c, r);
  nt_pfan_leave(r, c);
  if (nt_hub_leave(&n->hub, c, r)) {
    if (r->sub) nt_bus_unsubscribe(n->bus, r->sub);
    if (r->psub) nt_bus_unsubscribe(n->bus, r->psub);
    if (n->res) nt_resume_room_close(n, r);
    nt_hub_room_free(&n->hub, r);
  }
}

/* ---------------------------------------------------------------- presence --- */

typedef struct leave_op {
  nt_chat *n;
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1], user[NT_ID_MAX + 1];
} leave_op;

static void on_left(void *ud, int status, int transition) {
  leave_op *op = ud;
  if (status == 0 && transition && op->n->bus)
    publish_presence(op->n, op->tenant, op->room, op->user, NULL, 0, 0, 0);
  free(op);
}

static void presence_leave(nt_chat *n, const nt_conn *c, const char *room) {
  leave_op *op = malloc(sizeof *op);
  if (!op) return;
  op->n = n;
  snprintf(op->tenant, sizeof op->tenant, "%s", c->ident.tenant);
  snprintf(op->room, sizeof op->room, "%s", room);
  snprintf(op->user, sizeof op->user, "%s", c->ident.user);
  if (nt_presence_leave(n->pres, op->tenant, room, op->user, c->id, on_left, op)) free(op);
}

void nt_client_on_offline(void *ud, const char *tenant, const char *room, const char *user) {
  nt_chat *n = ud;
  publish_presence(n, tenant, room, user, NULL, 0, 0, 0);
  /* A reap's leave: per user and room (not per connection), marked with the reason. */
  nt_client_publish_event(n, NATTER__EVENT_KIND__LEAVE, NULL, tenant, user, "", room,
                          NATTER__DISCONNECT_REASON__NODE_LOST);
}

/* Presence re-asserted after survivors had reaped this node: tell the room again. */
void nt_client_on_online(void *ud, const char *tenant, const char *room, const char *user) {
  publish_presence(ud, tenant, room, user, NULL, 1, 0, 0);
}

void nt_client_on_store_state(void *ud, int connected) {
  nt_chat *n = ud;
  if (connected && !n->store_up && n->store_ever_up) n->m.store_reconnects++;
  if (connected) n->store_ever_up = 1;
  n->store_up = connected;
}

void nt_client_on_conn_lost(void *ud, const nt_conn_info *info) {
  nt_chat *n = ud;
  publish_event_of(n, info->node && *info->node ? info->node : n->id,
                   NATTER__EVENT_KIND__DISCONNECT, NULL, info->tenant, info->user,
                   info->conn_id, NULL, NATTER__DISCONNECT_REASON__NODE_LOST);
}

/* ---------------------------------------------------------------- lifecycle -- */

/* A new local user: its own subscription while the tenant has at most
 * --max-user-subscriptions local users, else the tenant's wildcard (taken once). A
 * subscribe sent now reaches the bus server before anything this node publishes next. */
static void user_subscribe(nt_chat *n, nt_userset *u) {
  nt_hub_tenant *t = nt_hub_tenant_of(&n->hub, u);
  if (t && t->wild) return;
  if (t && t->nusers > (uint32_t)n->cfg->max_user_subs) {
    char wild[NT_SUBJECT_MAX];
    if (nt_subject_user_all(wild, sizeof wild, t->name) > 0 &&
        nt_bus_subscribe(n->bus, wild, NULL, &t->wild) == 0) {
      n->m.user_wildcards = ++n->hub.nwild;
      nt_log_info("user wildcard subscription", "{s:s, s:I}", "subject", wild, "users",
                  (json_int_t)t->nusers);
      return;
    }
    nt_log_error("subscribe failed", "{s:s}", "subject", wild);
  }
  char subject[NT_SUBJECT_MAX];
  if (nt_hub_user_subject(u, subject, sizeof subject) < 0 ||
      nt_bus_subscribe(n->bus, subject, NULL, &u->sub))
    nt_log_error("subscribe failed", "{s:s}", "user", u->key);
}

void nt_client_welcome(nt_chat *n, nt_conn *c) {
  int created = 0;
  if (nt_hub_add_conn(&n->hub, c, &created)) {
    nt_conn_ws_close(c, 1011, "internal error", NT_CLOSE_PROTOCOL);
    return;
  }
  if (created) user_subscribe(n, c->uset);
  char peer[NT_CONN_PEER_STRLEN];
  nt_conn_info info = {c->id, c->ident.tenant, c->ident.user, n->id, nt_conn_peer(c, peer),
                       c->user_agent ? c->user_agent : "", nt_now_ms(), nt_now_ms()};
  nt_presence_conn_add(n->pres, &info, NULL, NULL);
  nt_client_publish_event(n, NATTER__EVENT_KIND__CONNECT, c, c->ident.tenant, c->ident.user,
                          c->id, NULL, 0);
  c->welcomed = 1;
  send_frame(c, nt_proto_welcome(c->id, c->ident.user, c->ident.tenant,
                                 (uint64_t)(n->cfg->ping_interval_s * 1000), n->id));
}

static const int reason_map[] = {
    [NT_CLOSE_CLIENT] = NATTER__DISCONNECT_REASON__CLIENT_CLOSE,
    [NT_CLOSE_TIMEOUT] = NATTER__DISCONNECT_REASON__TIMEOUT,
    [NT_CLOSE_SLOW] = NATTER__DISCONNECT_REASON__SLOW_CONSUMER,
    [NT_CLOSE_KICKED] = NATTER__DISCONNECT_REASON__KICKED,
    [NT_CLOSE_PROTOCOL] = NATTER__DISCONNECT_REASON__PROTOCOL_ERROR,
    [NT_CLOSE_SHUTDOWN] = NATTER__DISCONNECT_REASON__SERVER_SHUTDOWN,
};

void nt_client_closing(nt_chat *n, nt_conn *c) {
  if (!c->welcomed) return;
  if (n->log.conn_close) n->log.conn_close(c, uv_now(n->loop));
  while (c->nrooms) {
    nt_room *r = c->rooms[c->nrooms - 1].room;
    char room[NT_ID_MAX + 1];
    snprintf(room, sizeof room, "%s", r->name);
    leave_room_local(n, c, r);
    if (n->pres) presence_leave(n, c, room);
    n->m.leaves++;
    nt_client_publish_event(n, NATTER__EVENT_KIND__LEAVE, c, c->ident.tenant, c->ident.user,
                            c->id, room, 0);
  }
  nt_userset *u = nt_hub_remove_conn(&n->hub, c);
  if (u) {
    if (u->sub) nt_bus_unsubscribe(n->bus, u->sub);
    nt_bus_sub *wild = nt_hub_userset_free(&n->hub, u);
    if (wild) nt_bus_unsubscribe(n->bus, wild);
    n->m.user_wildcards = n->hub.nwild;
  }
  if (n->pres) nt_presence_conn_remove(n->pres, c->ident.tenant, c->id, NULL, NULL);
  int reason = c->close_reason < sizeof reason_map / sizeof reason_map[0]
                   ? reason_map[c->close_reason] : 0;
  nt_client_publish_event(n, NATTER__EVENT_KIND__DISCONNECT, c, c->ident.tenant,
                          c->ident.user, c->id, NULL, reason);
  c->welcomed = 0;
  n->nws--;
  n->m.connections = n->nws;
}

void nt_client_on_closing(void *ud, nt_conn *c) {
  nt_chat *n = ud;
  int welcomed = c->welcomed;
  nt_client_closing(n, c);
  if (n->integ) nt_integ_closing(n, c, welcomed);
}

char *nt_client_describe(nt_chat *n, const nt_conn *c, size_t *len) {
  /* The connection's times are loop (monotonic) milliseconds; the API speaks unix ms. */
  int64_t wall = nt_now_ms(), mono = (int64_t)uv_now(n->loop);
  char peer[NT_CONN_PEER_STRLEN];
  json_t *rooms = json_array();
  for (uint16_t i = 0; rooms && i < c->nrooms; i++)
    json_array_append_new(rooms, json_string(c->rooms[i].room->name));
  int64_t at = wall - (mono - (int64_t)c->connected_at);
  int64_t active = wall - nt_conn_age((uint64_t)mono, c->last_active);
  char at_s[32], active_s[32]; /* RFC 3339, as the gateway (and its SDKs) have them */
  json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:{s:s, s:s?}, s:s, s:s, s:s, s:o*}",
                        "connectionId", c->id, "connectedAt", nt_clock_rfc3339(at, at_s),
                        "lastActiveAt", nt_clock_rfc3339(active, active_s),
                        "connectedAtMs", (json_int_t)at, "lastActiveAtMs", (json_int_t)active,
                        "identity", "sourceIp", nt_conn_peer(c, peer), "userAgent", c->user_agent,
                        "userId", c->ident.user, "tenantId", c->ident.tenant, "node", n->id,
                        "rooms", rooms);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (s && len) *len = strlen(s);
  return s;
}

/* ---------------------------------------------------------------- actions ---- */

typedef struct conn_op {
  nt_chat *n;
  nt_conn *c;               /* referenced until the callback */
  char room[NT_ID_MAX + 1];
  char action[NT_ID_MAX + 1];
  char reqid[NT_REQID_MAX + 1];
  char msgid[NT_MSG_ID_MAX + 1]; /* sendMessage */
} conn_op;

static conn_op *conn_op_new(nt_chat *n, nt_conn *c, const char *room, const char *reqid) {
  conn_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->n = n;
  op->c = c;
  nt_conn_ref(c);
  if (room) snprintf(op->room, sizeof op->room, "%s", room);
  snprintf(op->reqid, sizeof op->reqid, "%s", reqid);
  return op;
}

static void conn_op_free(conn_op *op) {
  nt_conn_unref(op->c);
  free(op);
}

/* sendMessage with history on: `ack` once the stream stored it (or had it: a duplicate
 * id), `unavailable` when it did not answer in time (resend with the same id),
 * `quota_exceeded` when it may not be stored (tenant quota, stored size): not delivered. */
static void on_stored(void *ud, int status) {
  conn_op *op = ud;
  nt_chat *n = op->n;
  if (nt_conn_is_open(op->c)) {
    if (status == 0)
      send_frame(op->c, nt_proto_ack(op->msgid, op->reqid));
    else if (status == NT_ELIMIT)
      nt_client_send_error(n, op->c, "quota_exceeded",
                           "over the tenant's history quota or the stored message size: "
                           "not delivered", op->reqid);
    else if (status == NT_ETIMEOUT || status == NT_ECLOSED)
      nt_client_send_error(n, op->c, "unavailable",
                           "the history did not confirm the message: resend it with the same id",
                           op->reqid);
    else
      nt_client_send_error(n, op->c, "internal", "the history refused the message", op->reqid);
  }
  conn_op_free(op);
}

static void on_joined(void *ud, int status, const nt_presence_joined *j) {
  conn_op *op = ud;
  nt_chat *n = op->n;
  nt_conn *c = op->c;
  if (status) j = NULL;
  if (j && j->transition)
    publish_presence(n, c->ident.tenant, op->room, c->ident.user, c->id, 1, j->version,
                     j->total);
  nt_room *r = nt_conn_is_open(c) ? nt_hub_conn_room(c, op->room) : NULL;
  if (r) {
    if (j && j->total) r->total = j->total;
    /* store down: the join works locally; members are unknown */
    const char *self = c->ident.user;
    const char *const *mem = j ? j->members : &self;
    size_t nmem = j ? j->n : 1;
    nt_proto_roster x = {j ? j->total : 0, j ? j->cursor : NULL,
                         !nt_pfan_events_on(n->cfg->presence_max_members, r->total)};
    /* a resume (joinRoom with since) sends `joined` itself, then the replay */
    if (!n->res || !nt_resume_joined(n, c, op->room, mem, nmem))
      send_frame(c, nt_proto_joined_ex(op->room, mem, nmem, &x, op->reqid));
    nt_pfan_ready(n, r, c, j ? j->version : 0);
  }
  conn_op_free(op);
}

static void on_members(void *ud, int status, const nt_presence_page *pg) {
  conn_op *op = ud;
  if (nt_conn_is_open(op->c)) {
    if (status == 0)
      send_frame(op->c, nt_proto_members(op->room[0] ? op->room : NULL, pg, op->reqid));
    else
      nt_client_send_error(op->n, op->c, "internal", "presence unavailable", op->reqid);
  }
  conn_op_free(op);
}

static void on_rejoined(void *ud, int status, const nt_presence_page *pg) {
  conn_op *op = ud;
  nt_room *r = nt_conn_is_open(op->c) ? nt_hub_conn_room(op->c, op->room) : NULL;
  if (r && status == 0) {
    nt_proto_roster x = {pg->total, pg->cursor,
                         !nt_pfan_events_on(op->n->cfg->presence_max_members, pg->total)};
    send_frame(op->c, nt_proto_joined_ex(op->room, pg->members, pg->n, &x, op->reqid));
  }
  conn_op_free(op);
}

static void presence_join(conn_op *op) {
  nt_conn *c = op->c;
  if (nt_presence_join(op->n->pres, c->ident.tenant, op->room, c->ident.user, c->id,
                       on_joined, op))
    on_joined(op, NT_ESTORE, NULL);
}

static void on_join_flushed(void *ud, int status, const uint8_t *data, size_t len) {
  conn_op *op = ud;
  nt_room *r = nt_conn_is_open(op->c) ? nt_hub_conn_room(op->c, op->room) : NULL;
  if (!r) { /* closed or left meanwhile: its leave already ran, joining now would ghost */
    conn_op_free(op);
    return;
  }
  if (status == 0) r->ready = 1;
  presence_join(op);
}

static void act_join(nt_chat *n, nt_conn *c, const nt_req *rq) {
  if (!nt_identity_room_allowed(&c->ident, rq->room)) { /* the token's `rooms` claim */
    nt_client_send_error(n, c, "forbidden", "the token does not allow this room", rq->reqid);
    return;
  }
  if (nt_hub_conn_room(c, rq->room)) { /* already a member: answer with the members */
    conn_op *op = conn_op_new(n, c, rq->room, rq->reqid);
    if (op && nt_presence_members(n->pres, c->ident.tenant, rq->room, NULL,
                                  NT_PRESENCE_JOINED_MAX, on_rejoined, op))
      conn_op_free(op);
    return;
  }
  if (!nt_limits_room_ok(n, c)) { /* --max-rooms-per-connection */
    nt_client_send_error(n, c, "forbidden", "too many rooms on this connection", rq->reqid);
    return;
  }
  int created, err = 0;
  nt_room *r = nt_hub_join(&n->hub, c, c->ident.tenant, rq->room, &created, &err);
  if (!r) {
    nt_client_send_error(n, c, nt_err_client_code(err), "cannot join", rq->reqid);
    return;
  }
  if (created) subscribe_room(n, r);
  nt_pfan_pending(r, c); /* presence events wait for its `joined` (nt_pfan.h) */
  if (n->res && rq->has_since) nt_resume_begin(n, c, r, rq->since, rq->reqid);
  n->m.joins++;
  nt_client_publish_event(n, NATTER__EVENT_KIND__JOIN, c, c->ident.tenant, c->ident.user,
                          c->id, rq->room, 0);
  conn_op *op = conn_op_new(n, c, rq->room, rq->reqid);
  if (!op) return;
  /* `joined` promises that what others publish from now on arrives, so a room whose
   * subscription the bus server has not confirmed yet waits for one round trip. */
  if (!r->ready && nt_bus_flush(n->bus, 2000, on_join_flushed, op) == 0) return;
  r->ready = 1;
  presence_join(op);
}

static void act_leave(nt_chat *n, nt_conn *c, const nt_req *rq) {
  nt_room *r = nt_hub_conn_room(c, rq->room);
  if (!r) {
    nt_client_send_error(n, c, "not_found", "not a member of this room", rq->reqid);
    return;
  }
  leave_room_local(n, c, r);
  presence_leave(n, c, rq->room);
  n->m.leaves++;
  nt_client_publish_event(n, NATTER__EVENT_KIND__LEAVE, c, c->ident.tenant, c->ident.user,
                          c->id, rq->room, 0);
  send_frame(c, nt_proto_left(rq->room, rq->reqid));
}

static void act_send(nt_chat *n, nt_conn *c, const nt_req *rq, int direct) {
  char subject[NT_SUBJECT_MAX];
  if (direct) {
    if (nt_subject_user(subject, sizeof subject, c->ident.tenant, rq->user) < 0) {
      nt_client_send_error(n, c, "bad_request", "invalid userId", rq->reqid);
      return;
    }
  } else {
    nt_room *r = nt_hub_conn_room(c, rq->room);
    if (!r) {
      nt_client_send_error(n, c, "forbidden", "join the room first", rq->reqid);
      return;
    }
    memcpy(subject, r->subject, strlen(r->subject) + 1);
  }
  size_t plen;
  char *payload = nt_proto_dump(rq->message, &plen);
  if (!payload) {
    nt_client_send_error(n, c, "internal", "cannot encode message", rq->reqid);
    return;
  }
  conn_op *op = direct ? NULL : conn_op_new(n, c, rq->room, rq->reqid);
  if (!direct && !op) {
    free(payload);
    nt_client_send_error(n, c, "internal", "out of memory", rq->reqid);
    return;
  }
  nt_client_msg msg = {
      .subject = subject,
      .tenant = c->ident.tenant,
      .room = direct ? NULL : rq->room,
      .target_user = direct ? rq->user : NULL,
      .sender_user = c->ident.user,
      .sender_conn = c->id,
      .exclude_sender = rq->exclude_self,
      .payload = payload,
      .len = plen,
      .id = rq->msgid,
      .on_stored = on_stored,
      .ud = op,
  };
  char idbuf[NT_MSG_ID_MAX + 1];
  char *id = op ? op->msgid : idbuf;
  int r = nt_client_publish_message(n, &msg, id);
  free(payload);
  if (r == 1) return; /* the ack follows once the history stored it (on_stored) */
  if (r == NT_EAGAIN && n->res) /* history on: not stored, resend with the same id */
    nt_client_send_error(n, c, "unavailable", "the history cannot take the message now",
                         rq->reqid);
  else if (r == NT_EINVAL)
    nt_client_send_error(n, c, "bad_request", "invalid id", rq->reqid);
  else if (r)
    nt_client_send_error(n, c, "internal", "message bus unavailable", rq->reqid);
  else send_frame(c, nt_proto_ack(id, rq->reqid));
  if (op) conn_op_free(op);
}

static void act_presence(nt_chat *n, nt_conn *c, const nt_req *rq) {
  if (rq->room && !nt_identity_room_allowed(&c->ident, rq->room)) {
    nt_client_send_error(n, c, "forbidden", "the token does not allow this room", rq->reqid);
    return;
  }
  conn_op *op = conn_op_new(n, c, rq->room, rq->reqid);
  if (!op) return;
  if (nt_presence_members(n->pres, c->ident.tenant, rq->room, rq->cursor,
                          rq->limit ? (size_t)rq->limit : NT_PRESENCE_PAGE_DEFAULT, on_members,
                          op))
    on_members(op, NT_ESTORE, NULL);
}

/* ---- $default: a NATS request on natter.route.<action>, the reply relayed ---- */

static void on_route_reply(void *ud, int status, const uint8_t *data, size_t len) {
  conn_op *op = ud;
  nt_chat *n = op->n;
  nt_metrics_count_route(&n->m, op->action,
                         status == 0                 ? NT_ROUTE_REPLIED
                         : status == NT_ENORESPONDER ? NT_ROUTE_UNKNOWN
                         : status == NT_ETIMEOUT     ? NT_ROUTE_TIMEOUT
                                                     : NT_ROUTE_FAILED);
  if (nt_conn_is_open(op->c)) {
    if (status == 0) {
      json_error_t jerr;
      json_t *v = json_loadb((const char *)data, len, JSON_DECODE_ANY, &jerr);
      if (v) { /* relay JSON as-is; anything else as a JSON string */
        send_frame(op->c, nt_proto_reply(op->action, (const char *)data, len, op->reqid));
      } else {
        json_t *s = json_stringn((const char *)data, len);
        size_t sl;
        char *txt = s ? nt_proto_dump(s, &sl) : NULL;
        if (txt) send_frame(op->c, nt_proto_reply(op->action, txt, sl, op->reqid));
        else nt_client_send_error(n, op->c, "internal", "invalid reply", op->reqid);
        free(txt);
        json_decref(s);
      }
      json_decref(v);
    } else if (status == NT_ENORESPONDER) {
      nt_client_send_error(n, op->c, "unknown_action", "no handler for this action", op->reqid);
    } else if (status == NT_ETIMEOUT) {
      nt_client_send_error(n, op->c, "timeout", "the handler did not answer in time", op->reqid);
    } else {
      nt_client_send_error(n, op->c, "internal", "route failed", op->reqid);
    }
  }
  conn_op_free(op);
}

static void act_custom(nt_chat *n, nt_conn *c, const nt_req *rq, const uint8_t *raw,
                       size_t len) {
  char subject[NT_SUBJECT_MAX];
  if (!n->cfg->routes || nt_subject_route(subject, sizeof subject, rq->action_name) < 0) {
    nt_metrics_count_route(&n->m, rq->action_name, NT_ROUTE_UNKNOWN);
    nt_client_send_error(n, c, "unknown_action", "unknown action", rq->reqid);
    return;
  }
  conn_op *op = conn_op_new(n, c, NULL, rq->reqid);
  if (!op) return;
  snprintf(op->action, sizeof op->action, "%s", rq->action_name);
  Natter__Envelope env = NATTER__ENVELOPE__INIT;
  char id[NT_CONN_ID_LEN + 1];
  nt_rand_id(n->rand, id, NT_CONN_ID_LEN);
  env.id = id;
  env.kind = NATTER__KIND__ROUTE_REQUEST;
  env.tenant = c->ident.tenant;
  env.sender_user = c->ident.user;
  env.sender_conn = c->id;
  env.origin_node = n->id;
  env.timestamp_ms = nt_now_ms();
  env.action = op->action;
  env.request_id = op->reqid;
  env.payload.data = (uint8_t *)raw;
  env.payload.len = len;
  uint8_t buf[4096], *out;
  size_t elen = nt_env_encode(&env, buf, sizeof buf, &out);
  int r = elen ? nt_bus_request(n->bus, subject, out, elen,
                                (uint64_t)(n->cfg->route_timeout_s * 1000), on_route_reply, op)
               : NT_ENOMEM;
  if (elen && out != buf) free(out);
  if (r) on_route_reply(op, r, NULL, 0);
}

void nt_client_on_message(nt_chat *n, nt_conn *c, const uint8_t *data, size_t len) {
  nt_req rq;
  const char *why = NULL;
  n->m.messages_in++;
  if (nt_proto_parse((const char *)data, len, &rq, &why)) {
    nt_client_send_error(n, c, "bad_request", why, rq.reqid);
    nt_req_free(&rq);
    return;
  }
  switch (rq.action) {
  case NT_ACT_JOIN: act_join(n, c, &rq); break;
  case NT_ACT_LEAVE: act_leave(n, c, &rq); break;
  case NT_ACT_SEND: act_send(n, c, &rq, 0); break;
  case NT_ACT_SEND_USER: act_send(n, c, &rq, 1); break;
  case NT_ACT_HEARTBEAT: send_frame(c, nt_proto_heartbeat(rq.reqid)); break;
  case NT_ACT_PRESENCE: act_presence(n, c, &rq); break;
  case NT_ACT_HISTORY: nt_resume_history(n, c, &rq); break;
  default: act_custom(n, c, &rq, data, len); break;
  }
  nt_req_free(&rq);
}

void nt_client_on_ws_message(void *ud, nt_conn *c, int opcode, const uint8_t *data,
                             size_t len) {
  nt_chat *n = ud;
  if (!nt_limits_admit_message(n, c, opcode, data, len)) return; /* rate limit */
  if (opcode != WSLAY_TEXT_FRAME) {
    nt_client_send_error(n, c, "bad_request", "binary frames are not part of protocol v1", "");
    return;
  }
  if (n->integ && nt_integ_on_message(n, c, data, len)) return; /* --integration-routes */
  nt_client_on_message(n, c, data, len);
}
