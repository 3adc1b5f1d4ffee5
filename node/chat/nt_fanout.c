/* nt_fanout: the node's one entry of bus input and its one delivery loop — room, presence,
 * direct and node-subject messages to local members, with history on through the resume
 * state machine (nt_resume.c) and back into the same loop: one render per message, one
 * shared frame queued on every member (no per-member copy, allocation or serialization). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nt_chat.h"
#include "nt_envelope.h"
#include "nt_log.h"
#include "nt_pfan.h"
#include "nt_proto.h"
#include "nt_resume.h"
#include "nt_subject.h"
#include "nt_utf8.h"

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* The delivery loop: queues `f` on every connection of `members` except `skip` (a
 * connection id, may be NULL) and, in room `r` (NULL for a user's connections), the
 * connections still resuming there (the resume state machine sends theirs). */
static size_t deliver(nt_room *r, nt_conn *const *members, uint32_t count, nt_frame *f,
                      const char *skip) {
  int check_rs = r && nt_resume_resumers(r) > 0;
  size_t d = 0;
  for (uint32_t i = 0; i < count; i++) {
    nt_conn *m = members[i];
    if (skip && strcmp(m->id, skip) == 0) continue;
    if (check_rs && nt_resume_is_resumer(r, m)) continue;
    if (nt_conn_send(m, f) == 0) d++;
  }
  return d;
}

size_t nt_fanout_room(nt_chat *n, nt_room *r, nt_frame *f, const char *skip) {
  return deliver(r, r->members, r->n, f, skip);
}

static void on_room(nt_chat *n, nt_room *r, const Natter__Envelope *env) {
  nt_frame *f = NULL;
  const char *skip = NULL;
  if (env->kind == NATTER__KIND__ROOM_MESSAGE) {
    f = nt_proto_message(env->id, r->name, env->sender_user[0] ? env->sender_user : NULL,
                         (const char *)env->payload.data, env->payload.len, env->timestamp_ms,
                         0);
    if (env->exclude_sender) skip = env->sender_conn;
  } else if (env->kind == NATTER__KIND__PRESENCE) {
    if (env->presence_total) r->total = env->presence_total;
    if (!nt_pfan_events_on(n->cfg->presence_max_members, r->total)) {
      n->m.presence_suppressed++; /* e.g. a reap's offline in a room too large */
      return;
    }
    f = nt_proto_presence(r->name, env->sender_user,
                          env->status == NATTER__PRESENCE_STATUS__ONLINE, env->timestamp_ms);
    if (!f) return;
    nt_pfan_deliver(n, r, f, env->presence_version, env->exclude_sender ? env->sender_conn : NULL);
    nt_frame_unref(f);
    return;
  }
  if (!f) return;
  size_t d = nt_fanout_room(n, r, f, skip);
  if (env->kind == NATTER__KIND__ROOM_MESSAGE) n->m.deliveries += d;
  nt_frame_unref(f);
}

static void on_user(nt_chat *n, nt_userset *u, const Natter__Envelope *env) {
  if (env->kind != NATTER__KIND__DIRECT_MESSAGE) return;
  nt_frame *f = nt_proto_direct(env->id, env->sender_user[0] ? env->sender_user : NULL,
                                (const char *)env->payload.data, env->payload.len,
                                env->timestamp_ms);
  if (!f) return;
  n->m.deliveries += deliver(NULL, u->conns, u->n, f, NULL);
  nt_frame_unref(f);
}

/* natter.node.<me>: push to, close or describe one of this node's connections (HTTP API of
 * any node). The reply, when asked for, is "ok" or "gone" (CONN_INFO: the JSON). */
static void on_node(nt_chat *n, const Natter__Envelope *env, const char *reply) {
  nt_conn *c = env->target_conn[0] ? nt_hub_conn(&n->hub, env->target_conn) : NULL;
  int ok = c && nt_conn_is_open(c);
  if (ok && env->kind == NATTER__KIND__CONN_PUSH) {
    ok = nt_client_push(c, env->payload.data, env->payload.len) == 0;
  } else if (ok && env->kind == NATTER__KIND__CONN_KICK) {
    nt_client_kick(c);
  } else if (ok && env->kind == NATTER__KIND__CONN_INFO) {
    size_t jl = 0;
    char *js = nt_client_describe(n, c, &jl);
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

/* Publish-to-deliver latency of a message (origin timestamp), once per message. */
static void observe(nt_chat *n, const Natter__Envelope *env) {
  if ((env->kind == NATTER__KIND__ROOM_MESSAGE || env->kind == NATTER__KIND__DIRECT_MESSAGE) &&
      env->timestamp_ms > 0)
    nt_metrics_observe_latency(&n->m, (double)(nt_now_ms() - env->timestamp_ms));
}

/* Every bus message, with its stream position (`seq`, history on) or without. */
static void bus_input(nt_chat *n, const char *subject, const uint8_t *data, size_t len,
                      const char *reply, const nt_bus_sub *sub, const nt_bus_seq *seq) {
  n->m.bus_received++;
  nt_room *r = NULL;
  nt_userset *u = NULL;
  int node_msg = 0, live = 0;
  if (has_prefix(subject, NT_SUBJECT_LIVE_PREFIX)) { /* history on: sequenced or live-only */
    char key[NT_SUBJECT_MAX];
    if (!n->res || nt_subject_room_of(key, sizeof key, subject) < 0) return;
    if (!(r = nt_hub_room(&n->hub, key)) || !nt_resume_room_live(r)) return; /* raced */
    live = 1;
  } else if (has_prefix(subject, NT_SUBJECT_ROOM_PREFIX) || has_prefix(subject, NT_SUBJECT_PRESENCE_PREFIX)) {
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
  if (!live) seq = NULL; /* a position on another subject means nothing here */
  Natter__Envelope *env = nt_env_decode(data, len);
  if (!env) {
    n->m.bad_envelopes++;
    nt_log_warn("undecodable envelope dropped", "{s:s, s:I}", "subject", subject, "bytes",
                (json_int_t)len);
  } else if ((r || u) && (!renderable(env) ||
                          (live && env->kind != NATTER__KIND__ROOM_MESSAGE))) {
    n->m.bad_envelopes++;
    nt_log_warn("invalid envelope dropped", "{s:s}", "subject", subject);
    nt_env_free(env);
    env = NULL;
  }
  if (env && (r || u)) observe(n, env);
  /* A sequenced message nobody can be shown still moves the room's position. */
  if (live) nt_resume_on_live(n, r, env, seq);
  else if (env && r) on_room(n, r, env);
  else if (env && u) on_user(n, u, env);
  else if (env && node_msg) on_node(n, env, reply);
  nt_env_free(env);
}

void nt_fanout_on_bus_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                          const char *reply, const nt_bus_sub *sub) {
  bus_input(ud, subject, data, len, reply, sub, NULL);
}

void nt_fanout_on_bus_seq(void *ud, const char *subject, const uint8_t *data, size_t len,
                          const nt_bus_seq *seq) {
  bus_input(ud, subject, data, len, NULL, NULL, seq);
}

void nt_fanout_on_bus_state(void *ud, int connected) {
  nt_chat *n = ud;
  if (connected && !n->bus_up && n->bus_ever_up) n->m.bus_reconnects++;
  if (connected) n->bus_ever_up = 1;
  n->bus_up = connected;
  nt_log(connected ? NT_LOG_INFO : NT_LOG_WARN, connected ? "bus connected" : "bus disconnected",
         "{s:I}", "rooms", (json_int_t)n->hub.nrooms);
}
