/* nt_proto: client protocol parsing and frame rendering. */
#include "nt_proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_presence.h"
#include "nt_subject.h"

/* ---------------------------------------------------------------- parsing ---- */

static const struct {
  const char *name;
  int action;
} actions[] = {
    {"joinRoom", NT_ACT_JOIN},      {"leaveRoom", NT_ACT_LEAVE},
    {"sendMessage", NT_ACT_SEND},   {"sendToUser", NT_ACT_SEND_USER},
    {"heartbeat", NT_ACT_HEARTBEAT}, {"presence", NT_ACT_PRESENCE},
    {"history", NT_ACT_HISTORY},
};

int nt_proto_action_of(const char *name) {
  for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
    if (!strcmp(actions[i].name, name)) return actions[i].action;
  return NT_ACT_CUSTOM;
}

static int get_id(json_t *root, const char *field, int required, const char **out,
                  const char **why, const char *bad) {
  json_t *v = json_object_get(root, field);
  if (!v || json_is_null(v)) {
    *out = NULL;
    if (required) { *why = bad; return NT_EINVAL; }
    return 0;
  }
  if (!json_is_string(v) || nt_id_check(json_string_value(v), json_string_length(v)) ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    *why = bad;
    return NT_EINVAL;
  }
  *out = json_string_value(v);
  return 0;
}

static int get_u64(json_t *root, const char *field, int *has, uint64_t *out,
                   const char **why, const char *bad) {
  json_t *v = json_object_get(root, field);
  *has = 0;
  if (!v || json_is_null(v)) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0) { *why = bad; return NT_EINVAL; }
  *has = 1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

/* `limit`: absent (0) or a positive integer; above `max` it is clamped to `max`. */
static int get_limit(json_t *root, nt_req *req, int64_t max, const char **why) {
  json_t *l = json_object_get(root, "limit");
  if (!l || json_is_null(l)) return 0;
  if (!json_is_integer(l) || json_integer_value(l) < 1) {
    *why = "limit must be a positive integer";
    return NT_EINVAL;
  }
  req->limit = json_integer_value(l) > max ? max : json_integer_value(l);
  return 0;
}

int nt_proto_parse(const char *data, size_t len, nt_req *req, const char **why) {
  memset(req, 0, sizeof *req);
  json_error_t jerr;
  json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) { *why = "malformed JSON"; return NT_EINVAL; }
  req->root = root;
  if (!json_is_object(root)) { *why = "a request is a JSON object"; return NT_EINVAL; }

  json_t *rid = json_object_get(root, "requestId");
  if (rid && !json_is_null(rid)) {
    if (!json_is_string(rid) && !json_is_integer(rid)) {
      *why = "requestId must be a string or an integer";
      return NT_EINVAL;
    }
    char *txt = json_dumps(rid, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!txt) { *why = "internal"; return NT_ENOMEM; }
    size_t tl = strlen(txt);
    if (tl > NT_REQID_MAX) {
      free(txt);
      *why = "requestId is too long";
      return NT_EINVAL;
    }
    memcpy(req->reqid, txt, tl + 1);
    free(txt);
  }

  json_t *act = json_object_get(root, "action");
  if (!json_is_string(act) || json_string_length(act) == 0) {
    *why = "missing action";
    return NT_EINVAL;
  }
  req->action_name = json_string_value(act);
  req->action = nt_proto_action_of(req->action_name);

  switch (req->action) {
  case NT_ACT_JOIN:
    if (get_id(root, "roomId", 1, &req->room, why, "invalid roomId")) return NT_EINVAL;
    return get_u64(root, "since", &req->has_since, &req->since, why, "invalid since");
  case NT_ACT_LEAVE:
    return get_id(root, "roomId", 1, &req->room, why, "invalid roomId");
  case NT_ACT_SEND: {
    if (get_id(root, "roomId", 1, &req->room, why, "invalid roomId")) return NT_EINVAL;
    req->message = json_object_get(root, "message");
    if (!req->message) { *why = "missing message"; return NT_EINVAL; }
    json_t *ex = json_object_get(root, "excludeSelf");
    if (ex && !json_is_boolean(ex) && !json_is_null(ex)) {
      *why = "excludeSelf must be a boolean";
      return NT_EINVAL;
    }
    req->exclude_self = json_is_true(ex);
    if (get_id(root, "id", 0, &req->msgid, why, "invalid id")) return NT_EINVAL;
    if (req->msgid && strlen(req->msgid) > 64) { /* NT_MSG_ID_MAX */
      *why = "id is longer than 64 bytes";
      return NT_EINVAL;
    }
    return 0;
  }
  case NT_ACT_SEND_USER:
    if (get_id(root, "userId", 1, &req->user, why, "invalid userId")) return NT_EINVAL;
    req->message = json_object_get(root, "message");
    if (!req->message) { *why = "missing message"; return NT_EINVAL; }
    return 0;
  case NT_ACT_PRESENCE: {
    if (get_id(root, "roomId", 0, &req->room, why, "invalid roomId") ||
        get_limit(root, req, NT_PRESENCE_PAGE_MAX, why))
      return NT_EINVAL;
    json_t *cur = json_object_get(root, "cursor");
    if (cur && !json_is_null(cur)) {
      if (!json_is_string(cur) || nt_presence_page_args_ok(json_string_value(cur), 1)) {
        *why = "invalid cursor";
        return NT_EINVAL;
      }
      req->cursor = json_string_value(cur);
    }
    return 0;
  }
  case NT_ACT_HISTORY:
    if (get_id(root, "roomId", 1, &req->room, why, "invalid roomId") ||
        get_limit(root, req, INT64_MAX, why))
      return NT_EINVAL;
    return get_u64(root, "before", &req->has_before, &req->before, why, "invalid before");
  case NT_ACT_CUSTOM:
    if (!nt_id_valid(req->action_name)) { *why = "invalid action"; return NT_EINVAL; }
    return 0;
  default:
    return 0;
  }
}

void nt_req_free(nt_req *req) {
  json_decref(req->root);
  req->root = NULL;
}

/* ---------------------------------------------------------------- rendering -- */

/* A string builder that reserves room for the largest WebSocket header in front, so the
 * frame is rendered in place with one allocation and no copy. */
typedef struct sb {
  uint8_t *p;
  size_t len, cap;
  int oom;
} sb;

#define SB_HDR 10

static void sb_init(sb *b, size_t hint) {
  b->cap = hint + SB_HDR + 64;
  b->p = malloc(sizeof(nt_frame) + b->cap);
  b->len = SB_HDR;
  b->oom = !b->p;
}

static void sb_need(sb *b, size_t n) {
  if (b->oom || b->len + n <= b->cap) return;
  size_t ncap = (b->len + n) * 2;
  uint8_t *np = realloc(b->p, sizeof(nt_frame) + ncap);
  if (!np) { b->oom = 1; return; }
  b->p = np;
  b->cap = ncap;
}

static inline uint8_t *sb_at(sb *b) { return b->p + sizeof(nt_frame) + b->len; }

static void sb_raw(sb *b, const void *s, size_t n) {
  if (n == 0) return; /* s may be NULL (an empty protobuf bytes field) */
  sb_need(b, n);
  if (b->oom) return;
  memcpy(sb_at(b), s, n);
  b->len += n;
}

static void sb_lit(sb *b, const char *s) { sb_raw(b, s, strlen(s)); }

/* Appends `s` as a JSON string literal with the escapes JSON requires. */
static void sb_str(sb *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t n = strlen(s);
  sb_need(b, n * 6 + 2);
  if (b->oom) return;
  uint8_t *o = sb_at(b), *start = o;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = c; }
    else if (c == '\n') { *o++ = '\\'; *o++ = 'n'; }
    else if (c == '\r') { *o++ = '\\'; *o++ = 'r'; }
    else if (c == '\t') { *o++ = '\\'; *o++ = 't'; }
    else if (c < 0x20) {
      *o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
      *o++ = (uint8_t)hex[c >> 4]; *o++ = (uint8_t)hex[c & 15];
    } else *o++ = c;
  }
  *o++ = '"';
  b->len += (size_t)(o - start);
}

static void sb_int(sb *b, int64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  sb_raw(b, tmp, (size_t)n);
}

static void sb_reqid(sb *b, const char *reqid) {
  if (reqid && *reqid) {
    sb_lit(b, ",\"requestId\":");
    sb_lit(b, reqid);
  }
}

/* Turns the builder into a text frame: header written just before the payload, the
 * frame struct placed in front of it (payload does not move). */
static nt_frame *sb_frame(sb *b) {
  if (b->oom) { free(b->p); return NULL; }
  size_t plen = b->len - SB_HDR;
  uint8_t hdr[10];
  size_t h = nt_frame_header(hdr, NT_WS_OP_TEXT, 1, plen);
  uint8_t *data = b->p + sizeof(nt_frame);
  /* data area: [SB_HDR reserved][payload]; shift so the header ends where payload starts */
  memmove(data + h, data + SB_HDR, plen);
  memcpy(data, hdr, h);
  nt_frame *f = (nt_frame *)b->p;
  nt_frame_init(f, (uint32_t)h, (uint32_t)(h + plen));
  return f;
}

static void sb_members(sb *b, const char *const *members, size_t n) {
  sb_lit(b, ",\"members\":[");
  for (size_t i = 0; i < n; i++) {
    if (i) sb_lit(b, ",");
    sb_lit(b, "{\"userId\":");
    sb_str(b, members[i]);
    sb_lit(b, "}");
  }
  sb_lit(b, "]");
}

nt_frame *nt_proto_welcome(const char *conn_id, const char *user, const char *tenant,
                           uint64_t heartbeat_ms, const char *node_id) {
  sb b;
  sb_init(&b, 256);
  sb_lit(&b, "{\"type\":\"welcome\",\"connectionId\":");
  sb_str(&b, conn_id);
  sb_lit(&b, ",\"userId\":");
  sb_str(&b, user);
  sb_lit(&b, ",\"tenantId\":");
  sb_str(&b, tenant);
  sb_lit(&b, ",\"heartbeatInterval\":");
  sb_int(&b, (int64_t)heartbeat_ms);
  if (node_id) {
    sb_lit(&b, ",\"node\":");
    sb_str(&b, node_id);
  }
  sb_lit(&b, ",\"protocol\":1}");
  return sb_frame(&b);
}

nt_frame *nt_proto_error(const char *code, const char *message, const char *reqid) {
  sb b;
  sb_init(&b, 128);
  sb_lit(&b, "{\"type\":\"error\",\"code\":");
  sb_str(&b, code);
  sb_lit(&b, ",\"message\":");
  sb_str(&b, message ? message : code);
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

/* `,"total":N` (when known) and `,"cursor":"…"` (when more follow) of a member list. */
static void sb_page(sb *b, uint64_t total, int with_total, const char *cursor) {
  if (with_total) {
    char num[48];
    snprintf(num, sizeof num, ",\"total\":%llu", (unsigned long long)total);
    sb_lit(b, num);
  }
  if (cursor) {
    sb_lit(b, ",\"cursor\":");
    sb_str(b, cursor);
  }
}

nt_frame *nt_proto_joined_ex(const char *room, const char *const *members, size_t n,
                             const nt_proto_roster *x, const char *reqid) {
  sb b;
  sb_init(&b, 128 + n * 24);
  sb_lit(&b, "{\"type\":\"joined\",\"roomId\":");
  sb_str(&b, room);
  sb_members(&b, members, n);
  if (x) {
    sb_page(&b, x->total, x->total > 0, x->cursor);
    if (x->events_off) sb_lit(&b, ",\"presenceEvents\":false");
  }
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

nt_frame *nt_proto_joined(const char *room, const char *const *members, size_t n,
                          const char *reqid) {
  return nt_proto_joined_ex(room, members, n, NULL, reqid);
}

nt_frame *nt_proto_joined_resume(const char *room, const char *const *members, size_t n,
                                 int recovered, const char *reqid) {
  sb b;
  sb_init(&b, 96 + n * 24);
  sb_lit(&b, "{\"type\":\"joined\",\"roomId\":");
  sb_str(&b, room);
  sb_members(&b, members, n);
  sb_lit(&b, recovered ? ",\"recovered\":true" : ",\"recovered\":false");
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

nt_frame *nt_proto_members(const char *room, const nt_presence_page *pg, const char *reqid) {
  sb b;
  sb_init(&b, 96 + pg->n * 24);
  sb_lit(&b, "{\"type\":\"members\"");
  if (room) {
    sb_lit(&b, ",\"roomId\":");
    sb_str(&b, room);
  }
  sb_members(&b, pg->members, pg->n);
  sb_page(&b, pg->total, 1, pg->cursor);
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

/* A reply of `head` (the type and, for a value, its key), `value` as a JSON string (none
 * when NULL) and the requestId. */
static nt_frame *short_reply(const char *head, const char *value, const char *reqid) {
  sb b;
  sb_init(&b, 64);
  sb_lit(&b, head);
  if (value) sb_str(&b, value);
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

nt_frame *nt_proto_left(const char *room, const char *reqid) {
  return short_reply("{\"type\":\"left\",\"roomId\":", room, reqid);
}

nt_frame *nt_proto_ack(const char *id, const char *reqid) {
  return short_reply("{\"type\":\"ack\",\"id\":", id, reqid);
}

nt_frame *nt_proto_heartbeat(const char *reqid) {
  return short_reply("{\"type\":\"heartbeat\"", NULL, reqid);
}

/* The sender, payload and time of a room or direct message: "userId" (null with
 * "server":true for API pushes), "message" (JSON text, raw) and "timestamp". */
static void sb_sent(sb *b, const char *user, const char *message, size_t len, int64_t ts_ms) {
  if (user) {
    sb_lit(b, ",\"userId\":");
    sb_str(b, user);
  } else {
    sb_lit(b, ",\"userId\":null,\"server\":true");
  }
  sb_lit(b, ",\"message\":");
  sb_raw(b, message, len);
  sb_lit(b, ",\"timestamp\":");
  sb_int(b, ts_ms);
}

nt_frame *nt_proto_message(const char *id, const char *room, const char *user,
                           const char *message, size_t len, int64_t ts_ms, uint64_t seq) {
  sb b;
  sb_init(&b, len + 128);
  sb_lit(&b, "{\"type\":\"message\",\"id\":");
  sb_str(&b, id);
  sb_lit(&b, ",\"roomId\":");
  sb_str(&b, room);
  sb_sent(&b, user, message, len, ts_ms);
  if (seq) {
    sb_lit(&b, ",\"seq\":");
    sb_int(&b, (int64_t)seq);
  }
  sb_lit(&b, "}");
  return sb_frame(&b);
}

/* The messages array and hasMore of a history page. */
static void sb_hist_items(sb *b, const nt_proto_hist_item *items, size_t n, int has_more) {
  sb_lit(b, ",\"messages\":[");
  for (size_t i = 0; i < n; i++) {
    const nt_proto_hist_item *it = &items[i];
    sb_lit(b, i ? ",{\"id\":" : "{\"id\":");
    sb_str(b, it->id);
    if (it->user) {
      sb_lit(b, ",\"userId\":");
      sb_str(b, it->user);
    } else {
      sb_lit(b, ",\"userId\":null,\"server\":true");
    }
    sb_lit(b, ",\"message\":");
    sb_raw(b, it->message, it->len);
    sb_lit(b, ",\"timestamp\":");
    sb_int(b, it->ts_ms);
    sb_lit(b, ",\"seq\":");
    sb_int(b, (int64_t)it->seq);
    sb_lit(b, "}");
  }
  sb_lit(b, has_more ? "],\"hasMore\":true" : "],\"hasMore\":false");
}

static size_t hist_hint(const nt_proto_hist_item *items, size_t n) {
  size_t h = 128;
  for (size_t i = 0; i < n; i++) h += items[i].len + 160;
  return h;
}

nt_frame *nt_proto_history(const char *room, const nt_proto_hist_item *items, size_t n,
                           int has_more, const char *reqid) {
  sb b;
  sb_init(&b, hist_hint(items, n));
  sb_lit(&b, "{\"type\":\"history\",\"roomId\":");
  sb_str(&b, room);
  sb_hist_items(&b, items, n, has_more);
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

char *nt_proto_history_json(const char *tenant, const char *room,
                            const nt_proto_hist_item *items, size_t n, int has_more,
                            size_t *len) {
  sb b;
  sb_init(&b, hist_hint(items, n));
  sb_lit(&b, "{\"tenantId\":");
  sb_str(&b, tenant);
  sb_lit(&b, ",\"roomId\":");
  sb_str(&b, room);
  sb_hist_items(&b, items, n, has_more);
  sb_lit(&b, "}");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  size_t plen = b.len - SB_HDR;
  char *out = malloc(plen + 1);
  if (out) {
    memcpy(out, b.p + sizeof(nt_frame) + SB_HDR, plen);
    out[plen] = '\0';
    if (len) *len = plen;
  }
  free(b.p);
  return out;
}

nt_frame *nt_proto_direct(const char *id, const char *from_user, const char *message,
                          size_t len, int64_t ts_ms) {
  sb b;
  sb_init(&b, len + 128);
  sb_lit(&b, "{\"type\":\"direct\",\"id\":");
  sb_str(&b, id);
  sb_sent(&b, from_user, message, len, ts_ms);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

nt_frame *nt_proto_presence(const char *room, const char *user, int online, int64_t ts_ms) {
  sb b;
  sb_init(&b, 128);
  sb_lit(&b, "{\"type\":\"presence\",\"roomId\":");
  sb_str(&b, room);
  sb_lit(&b, ",\"userId\":");
  sb_str(&b, user);
  sb_lit(&b, online ? ",\"status\":\"online\"" : ",\"status\":\"offline\"");
  sb_lit(&b, ",\"timestamp\":");
  sb_int(&b, ts_ms);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

nt_frame *nt_proto_reply(const char *action, const char *data, size_t len,
                         const char *reqid) {
  sb b;
  sb_init(&b, len + 96);
  sb_lit(&b, "{\"type\":\"reply\",\"action\":");
  sb_str(&b, action);
  sb_lit(&b, ",\"data\":");
  sb_raw(&b, data, len);
  sb_reqid(&b, reqid);
  sb_lit(&b, "}");
  return sb_frame(&b);
}

char *nt_proto_dump(const json_t *v, size_t *len) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (s) *len = strlen(s);
  return s;
}
