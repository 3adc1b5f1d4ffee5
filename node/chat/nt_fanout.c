/* nt_fanout: bus messages to local members — one render per message, one shared frame
 * queued on every member (no per-member copy, allocation or serialization). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nt_api.h"
#include "nt_envelope.h"
#include "nt_log.h"
#include "nt_node_int.h"
#include "nt_proto.h"
#include "nt_subject.h"
#include "nt_utf8.h"

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Queues `f` on every member of `members` except the connection `skip` (may be NULL). */
static size_t deliver(nt_conn *const *members, uint32_t count, nt_frame *f, const char *skip) {
  size_t d = 0;
  for (uint32_t i = 0; i < count; i++) {
    nt_conn *m = members[i];
    if (skip && strcmp(m->id, skip) == 0) continue;
    if (nt_conn_send(m, f) == 0) d++;
  }
  return d;
}

static void observe(nt_node *n, const Natter__Envelope *env) {
  if (env->timestamp_ms > 0) nt_metrics_observe_latency(&n->m, (double)(nt_now_ms() - env->timestamp_ms));
}

static void on_room(nt_node *n, nt_room *r, const Natter__Envelope *env) {
  nt_frame *f = NULL;
  const char *skip = NULL;
  if (env->kind == NATTER__KIND__ROOM_MESSAGE) {
    f = nt_proto_message(env->id, r->name, env->sender_user[0] ? env->sender_user : NULL,
                         (const char *)env->payload.data, env->payload.len, env->timestamp_ms,
                         0);
    if (env->exclude_sender) skip = env->sender_conn;
    observe(n, env);
  } else if (env->kind == NATTER__KIND__PRESENCE) {
    f = nt_proto_presence(r->name, env->sender_user,
                          env->status == NATTER__PRESENCE_STATUS__ONLINE, env->timestamp_ms);
    if (env->exclude_sender) skip = env->sender_conn;
  }
  if (!f) return;
  size_t d = deliver(r->members, r->n, f, skip);
  if (env->kind == NATTER__KIND__ROOM_MESSAGE) n->m.deliveries += d;
  nt_frame_unref(f);
}

static void on_user(nt_node *n, nt_userset *u, const Natter__Envelope *env) {
  if (env->kind != NATTER__KIND__DIRECT_MESSAGE) return;
  nt_frame *f = nt_proto_direct(env->id, env->sender_user[0] ? env->sender_user : NULL,
                                (const char *)env->payload.data, env->payload.len,
                                env->timestamp_ms);
  if (!f) return;
  observe(n, env);
  n->m.deliveries += deliver(u->conns, u->n, f, NULL);
  nt_frame_unref(f);
}

/* natter.node.<me>: push to, close or describe one of this node's connections (HTTP API of
 * any node). The reply, when asked for, is "ok" or "gone" (CONN_INFO: the JSON). */
static void on_node(nt_node *n, const Natter__Envelope *env, const char *reply) {
  nt_conn *c = env->target_conn[0] ? nt_hub_conn(&n->hub, env->target_conn) : NULL;
  int ok = c && nt_conn_is_open(c);
  if (ok && env->kind == NATTER__KIND__CONN_PUSH) {
    int text = nt_utf8_valid(env->payload.data, env->payload.len);
    nt_frame *f = nt_frame_from(text ? NT_WS_OP_TEXT : NT_WS_OP_BINARY, env->payload.data,
                                env->payload.len);
    if (f) {
      ok = nt_conn_send(c, f) == 0;
      nt_frame_unref(f);
    }
  } else if (ok && env->kind == NATTER__KIND__CONN_KICK) {
    nt_conn_ws_close(c, 1000, "closed by the server", NT_CLOSE_KICKED);
  } else if (ok && env->kind == NATTER__KIND__CONN_INFO) {
    size_t jl = 0;
    char *js = nt_api_conn_json(n, c, &jl);
    if (js && reply && reply[0]) nt_bus_publish(n->bus, reply, js, jl, NULL);
    free(js);
    if (js) return;
    ok = 0;
  }
  if (reply && reply[0]) nt_bus_publish(n->bus, reply, ok ? "ok" : "gone", ok ? 2 : 4, NULL);
}

/* The bus is a trusted zone (nodes and backends holding NATS credentials), but a buggy
 * publisher must not make every member's browser fail the connection: strings rendered
 * into text frames must be valid UTF-8 (protobuf-c does not check) and ids valid ids.
 * The payload is not re-parsed as JSON: nodes validated it when the client sent it (an
 * empty one, which no node produces, is refused: it would break every member's frame). */
static int renderable(const Natter__Envelope *env) {
  int needs_payload = env->kind == NATTER__KIND__ROOM_MESSAGE ||
                      env->kind == NATTER__KIND__DIRECT_MESSAGE;
  return (!needs_payload || env->payload.len > 0) && nt_utf8_valid(env->id, strlen(env->id)) &&
         (!env->sender_user[0] || nt_id_valid(env->sender_user)) &&
         nt_utf8_valid(env->payload.data, env->payload.len);
}

int nt_fanout_renderable(const Natter__Envelope *env) { return renderable(env); }

void nt_fanout_on_bus_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                          const char *reply, const nt_bus_sub *sub) {
  nt_node *n = ud;
  n->m.bus_received++;
  nt_room *r = NULL;
  nt_userset *u = NULL;
  int node_msg = 0;
  if (has_prefix(subject, NT_SUBJECT_LIVE_PREFIX)) { /* history on, live-only: no seq */
    nt_resume_on_live(n, subject, data, len, NULL);
    return;
  }
  if (has_prefix(subject, NT_SUBJECT_ROOM_PREFIX) || has_prefix(subject, NT_SUBJECT_PRESENCE_PREFIX)) {
    if (!(r = nt_hub_room(&n->hub, subject))) return; /* raced with the last leave */
  } else if (has_prefix(subject, NT_SUBJECT_USER_PREFIX)) {
    if (!(u = nt_hub_userset(&n->hub, subject))) return;
    /* a user with its own subscription gets the message through it; the tenant
     * wildcard's copy of the same message is dropped (nt_hub.h) */
    if (sub && u->sub && sub != u->sub) return;
  } else if (strcmp(subject, n->node_subject) == 0) {
    node_msg = 1;
  } else {
    return;
  }
  Natter__Envelope *env = nt_env_decode(data, len);
  if (!env) {
    n->m.bad_envelopes++;
    nt_log_warn("undecodable envelope dropped", "{s:s, s:I}", "subject", subject, "bytes",
                (json_int_t)len);
    return;
  }
  if ((r || u) && !renderable(env)) {
    n->m.bad_envelopes++;
    nt_log_warn("invalid envelope dropped", "{s:s}", "subject", subject);
  } else if (r) on_room(n, r, env);
  else if (u) on_user(n, u, env);
  else if (node_msg) on_node(n, env, reply);
  nt_env_free(env);
}
