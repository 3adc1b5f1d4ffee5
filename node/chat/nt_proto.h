/* nt_proto: client protocol v1 (docs/protocol.md) — JSON text frames in, rendered frames out.
 * Pure: no sockets, no node state, so every action and error is unit-tested directly. */
#ifndef NT_PROTO_H
#define NT_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "nt_frame.h"
#include "nt_presence.h"

enum nt_action {
  NT_ACT_JOIN = 1,
  NT_ACT_LEAVE,
  NT_ACT_SEND,
  NT_ACT_SEND_USER,
  NT_ACT_HEARTBEAT,
  NT_ACT_PRESENCE,
  NT_ACT_HISTORY,
  NT_ACT_CUSTOM     /* not built in: $default route */
};

#define NT_REQID_MAX 128 /* longest requestId accepted, as JSON text */

/* A parsed client request. Strings point into `root` (owned; nt_req_free releases it). */
typedef struct nt_req {
  int action;
  const char *action_name;
  char reqid[NT_REQID_MAX + 1]; /* requestId as JSON text ("\"a1\"" or "7"), "" if none */
  const char *room;             /* roomId (validated id) or NULL */
  const char *user;             /* userId (validated id) or NULL */
  json_t *message;              /* `message` value or NULL */
  int exclude_self;
  const char *msgid;            /* sendMessage: the sender's message id (1..64 bytes) or NULL */
  int has_since;
  uint64_t since;
  int64_t limit;                /* history, presence: 0 when absent */
  const char *cursor;           /* presence: the page cursor (decimal) or NULL */
  int has_before;
  uint64_t before;
  json_t *root;
} nt_req;

/* Parses one client text message. Returns 0 and fills *req (free with nt_req_free), or
 * NT_EINVAL with a static message in *why for an `error` bad_request reply; req->reqid is
 * filled whenever the requestId could be read, so the error can echo it. Never crashes on
 * any input (fuzzed). */
int nt_proto_parse(const char *data, size_t len, nt_req *req, const char **why);
/* The built-in action called `name` (NT_ACT_JOIN...), or NT_ACT_CUSTOM. Pure. */
int nt_proto_action_of(const char *name);
void nt_req_free(nt_req *req);

/* Renders server frames (each returned with refs = 1; NULL on allocation failure).
 * `reqid` is the JSON text of a requestId or "" / NULL for none. */
nt_frame *nt_proto_welcome(const char *conn_id, const char *user, const char *tenant,
                           uint64_t heartbeat_ms, const char *node_id);
nt_frame *nt_proto_error(const char *code, const char *message, const char *reqid);
nt_frame *nt_proto_joined(const char *room, const char *const *members, size_t n,
                          const char *reqid);
/* What `joined` says of the rest of the room (docs/protocol.md `joined`): `total` members
 * (0: unknown, not rendered), `cursor` for the next `presence` page (NULL: the list is
 * whole), `events_off` when the room is larger than --presence-max-members. */
typedef struct nt_proto_roster {
  uint64_t total;
  const char *cursor;
  int events_off;
} nt_proto_roster;
/* `joined` with the roster fields of `x` (NULL: members only, as nt_proto_joined). */
nt_frame *nt_proto_joined_ex(const char *room, const char *const *members, size_t n,
                             const nt_proto_roster *x, const char *reqid);
/* `joined` after a joinRoom with `since` (history): adds "recovered": true|false. */
nt_frame *nt_proto_joined_resume(const char *room, const char *const *members, size_t n,
                                 int recovered, const char *reqid);
/* `members`: one page of a presence list — members, total, and cursor when more follow. */
nt_frame *nt_proto_members(const char *room, const nt_presence_page *pg, const char *reqid);
nt_frame *nt_proto_left(const char *room, const char *reqid);
nt_frame *nt_proto_ack(const char *id, const char *reqid);
nt_frame *nt_proto_heartbeat(const char *reqid);
/* `message` is JSON text (len bytes). `user` NULL marks a server-sent message. `seq` is
 * the message's position in the room's history, rendered when not 0. */
nt_frame *nt_proto_message(const char *id, const char *room, const char *user,
                           const char *message, size_t len, int64_t ts_ms, uint64_t seq);

/* One stored message of a `history` answer (fields as for nt_proto_message). */
typedef struct nt_proto_hist_item {
  const char *id;
  const char *user;      /* NULL: server-sent */
  const char *message;   /* JSON text */
  size_t len;
  int64_t ts_ms;
  uint64_t seq;
} nt_proto_hist_item;

/* The reply to `history`: {"type":"history","roomId":..,"messages":[{"id","userId",
 * "message","timestamp","seq"},..] oldest first,"hasMore":bool,"requestId"}. */
nt_frame *nt_proto_history(const char *room, const nt_proto_hist_item *items, size_t n,
                           int has_more, const char *reqid);
/* The same page as the HTTP API's JSON body {"tenantId","roomId","messages","hasMore"}:
 * a malloc'd string (caller frees) and its length, or NULL. */
char *nt_proto_history_json(const char *tenant, const char *room,
                            const nt_proto_hist_item *items, size_t n, int has_more,
                            size_t *len);
nt_frame *nt_proto_direct(const char *id, const char *from_user, const char *message,
                          size_t len, int64_t ts_ms);
nt_frame *nt_proto_presence(const char *room, const char *user, int online, int64_t ts_ms);
/* A route reply relayed to the client: {"type":"reply","action":..,"data":<json>,..}. */
nt_frame *nt_proto_reply(const char *action, const char *data, size_t len,
                         const char *reqid);

/* Serializes a JSON value compactly (the `message` payload put on the bus). Returns a
 * malloc'd string and its length, or NULL. */
char *nt_proto_dump(const json_t *v, size_t *len);

#endif
