/* nt_presence: the presence and connection-registry interface (who is online where).
 *
 * Two implementations: Redis (nt_presence_redis.c; shared by the cluster) and in-memory
 * (nt_presence_mem.c; unit tests and the standalone node). Only main.c chooses one.
 * Threading: loop thread only; callbacks run on the loop thread, never inside the call
 * that caused them (both implementations: the in-memory one queues them for a later loop
 * turn). Strings passed in are borrowed (copied if kept);
 * strings passed to callbacks are borrowed for the duration of the callback. */
#ifndef NT_PRESENCE_H
#define NT_PRESENCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct nt_presence nt_presence;

/* One connection's registry record (docs/presence.md "Key layout"; what
 * GET /@connections/{id} describes, docs/api.md). */
typedef struct nt_conn_info {
  const char *conn_id;
  const char *tenant;
  const char *user;
  const char *node;
  const char *source_ip;
  const char *user_agent;
  int64_t connected_at_ms;
  int64_t last_active_ms;
} nt_conn_info;

/* What a join returns (borrowed for the callback). `transition` is 1 when this was the
 * user's first connection in the room (the user just went online there). `members` are
 * the first page (about NT_PRESENCE_JOINED_MAX) of the room's online users after the
 * join; `cursor` continues the list with nt_presence_members (NULL: the list is whole),
 * `total` is the number of members after the join. `version` orders the joins of one room:
 * the store's per-room join counter after this join (every join of the room increments
 * it, in the store's order, so the page above lists the users of every join with a
 * smaller version that are still there; 0 when unknown). It restarts when the room
 * empties. All of it is O(1) in the room's size for the store. */
typedef struct nt_presence_joined {
  int transition;
  const char *const *members;
  size_t n;
  const char *cursor;
  uint64_t total;
  uint64_t version;
} nt_presence_joined;
/* join: `j` is NULL when status != 0. (Changed from (ud, status, transition, members, n)
 * to carry total, cursor and version: wrappers of the vtable pass it through.) */
typedef void (*nt_presence_join_cb)(void *ud, int status, const nt_presence_joined *j);
/* leave: `transition` is 1 when it was the user's last connection in the room. */
typedef void (*nt_presence_leave_cb)(void *ud, int status, int transition);
/* One page of a member list (borrowed for the callback): about `limit` users (Redis may
 * return a few more, and a set of up to 512 members — a listpack — whole), `cursor` to pass for the next page (NULL: this was the last page),
 * `total` the number of members now. A user present during the whole scan is listed at
 * least once; one that comes or goes meanwhile may be missing or listed twice. */
typedef struct nt_presence_page {
  const char *const *members;
  size_t n;
  const char *cursor;
  uint64_t total;
} nt_presence_page;
typedef void (*nt_presence_members_cb)(void *ud, int status, const nt_presence_page *pg);

/* Largest `limit` of one page: what one request may cost the store. */
#define NT_PRESENCE_PAGE_MAX 1000
/* Page size of a `presence` request without a limit. */
#define NT_PRESENCE_PAGE_DEFAULT 100
/* Members listed in `joined`; the rest are paged with `members`. */
#define NT_PRESENCE_JOINED_MAX 100
/* conn_get: status NT_ENOTFOUND when the connection is gone. */
typedef void (*nt_presence_conn_cb)(void *ud, int status, const nt_conn_info *info);
typedef void (*nt_presence_done_cb)(void *ud, int status);

/* One caller's callback of any of the kinds above (implementations keep it until the
 * outcome is known, with a tag saying which member is set). */
typedef union nt_presence_cb {
  nt_presence_join_cb join;
  nt_presence_leave_cb leave;
  nt_presence_members_cb members;
  nt_presence_done_cb done;
  nt_presence_conn_cb conn;
} nt_presence_cb;

typedef struct nt_presence_handler {
  /* A dead node's connection was reaped by this node (exactly one survivor reports each). */
  void (*on_conn_lost)(void *ud, const nt_conn_info *info);
  /* `user` went offline in `room` without a leave through this node's callers: as part of
   * a reap (exactly once per user and room across the cluster), or when re-assertion after
   * a reconnect removed rooms left while Redis was unreachable. */
  void (*on_offline)(void *ud, const char *tenant, const char *room, const char *user);
  /* Store connection state changed (connected=1 after (re)connect and re-assertion). */
  void (*on_state)(void *ud, int connected);
  void *ud;
  /* Optional (may be NULL; last so positional initializers stay valid). `user` came online
   * in `room` through this node's re-assertion after survivors had reaped it (a partition
   * or a stall longer than the node ttl), so the rest of the cluster saw it go offline.
   * Never called for a re-assertion that only refills a Redis that lost its data: nobody
   * saw those users leave. */
  void (*on_online)(void *ud, const char *tenant, const char *room, const char *user);
} nt_presence_handler;

typedef struct nt_presence_stats {
  uint64_t ops;          /* presence operations issued */
  uint64_t transitions;  /* online/offline transitions decided */
  uint64_t reaped_nodes; /* dead nodes reaped by this node */
  uint64_t reconnects;   /* store reconnections */
  uint64_t errors;       /* failed operations */
  uint64_t queued;       /* gauge: operations waiting for the store's window (Redis) */
  uint64_t inflight_max; /* most operations sent and unanswered at once (Redis) */
} nt_presence_stats;

typedef struct nt_presence_vtab {
  int (*join)(nt_presence *p, const char *tenant, const char *room, const char *user,
              const char *conn_id, nt_presence_join_cb cb, void *ud);
  int (*leave)(nt_presence *p, const char *tenant, const char *room, const char *user,
               const char *conn_id, nt_presence_leave_cb cb, void *ud);
  int (*members)(nt_presence *p, const char *tenant, const char *room, const char *cursor,
                 size_t limit, nt_presence_members_cb cb, void *ud);
  int (*conn_add)(nt_presence *p, const nt_conn_info *info, nt_presence_done_cb cb,
                  void *ud);
  int (*conn_remove)(nt_presence *p, const char *tenant, const char *conn_id,
                     nt_presence_done_cb cb, void *ud);
  int (*conn_get)(nt_presence *p, const char *conn_id, nt_presence_conn_cb cb, void *ud);
  int (*connected)(nt_presence *p);
  void (*stats)(nt_presence *p, nt_presence_stats *out);
  void (*destroy)(nt_presence *p);
  /* Optional (NULL: not sharded): the number of shards; when k < it, shard k's stats and
   * connection state (nt_presence_shards). */
  unsigned (*shards)(nt_presence *p, unsigned k, nt_presence_stats *out, int *connected);
} nt_presence_vtab;

struct nt_presence {
  const nt_presence_vtab *vt;
  nt_presence_handler h;
};

/* Each call returns 0 and later calls `cb` exactly once (cb may be NULL where a result is
 * not needed), or returns a negative code and never calls `cb`. */
static inline int nt_presence_join(nt_presence *p, const char *tenant, const char *room,
                                   const char *user, const char *conn_id,
                                   nt_presence_join_cb cb, void *ud) {
  return p->vt->join(p, tenant, room, user, conn_id, cb, ud);
}
static inline int nt_presence_leave(nt_presence *p, const char *tenant, const char *room,
                                    const char *user, const char *conn_id,
                                    nt_presence_leave_cb cb, void *ud) {
  return p->vt->leave(p, tenant, room, user, conn_id, cb, ud);
}
/* A page of a room's online users, or of the tenant's (room NULL): the first one with
 * cursor NULL, the next with the cursor the previous page gave. `limit` 1..
 * NT_PRESENCE_PAGE_MAX; a store never does more than O(limit) work for one page.
 * NT_EINVAL for a bad id, limit or cursor (cursors are decimal, at most 20 digits). */
static inline int nt_presence_members(nt_presence *p, const char *tenant, const char *room,
                                      const char *cursor, size_t limit,
                                      nt_presence_members_cb cb, void *ud) {
  return p->vt->members(p, tenant, room, cursor, limit, cb, ud);
}

/* 0 when `cursor` is NULL or a valid cursor and limit is in 1..NT_PRESENCE_PAGE_MAX. */
static inline int nt_presence_page_args_ok(const char *cursor, size_t limit) {
  if (limit < 1 || limit > NT_PRESENCE_PAGE_MAX) return -1;
  if (!cursor) return 0;
  size_t i = 0;
  for (; cursor[i]; i++)
    if (cursor[i] < '0' || cursor[i] > '9' || i >= 20) return -1;
  return i ? 0 : -1;
}
static inline int nt_presence_conn_add(nt_presence *p, const nt_conn_info *info,
                                       nt_presence_done_cb cb, void *ud) {
  return p->vt->conn_add(p, info, cb, ud);
}
static inline int nt_presence_conn_remove(nt_presence *p, const char *tenant,
                                          const char *conn_id, nt_presence_done_cb cb,
                                          void *ud) {
  return p->vt->conn_remove(p, tenant, conn_id, cb, ud);
}
static inline int nt_presence_conn_get(nt_presence *p, const char *conn_id,
                                       nt_presence_conn_cb cb, void *ud) {
  return p->vt->conn_get(p, conn_id, cb, ud);
}
static inline int nt_presence_connected(nt_presence *p) { return p->vt->connected(p); }
static inline void nt_presence_get_stats(nt_presence *p, nt_presence_stats *out) {
  p->vt->stats(p, out);
}
/* 0 for a presence that is not sharded; else the number of shards, and when k < it,
 * shard k's stats in *out and 1 in *connected while it is up (either may be NULL). */
static inline unsigned nt_presence_shards(nt_presence *p, unsigned k, nt_presence_stats *out,
                                          int *connected) {
  return p->vt->shards ? p->vt->shards(p, k, out, connected) : 0;
}
/* Frees the implementation and closes its handles; pending callbacks are called with
 * NT_ECLOSED before it returns. The caller then runs the loop until handles are closed. */
static inline void nt_presence_destroy(nt_presence *p) { p->vt->destroy(p); }

/* In-memory presence for one process on `loop`: state changes at the call, callbacks run
 * on a later turn of `loop` in call order (an idle handle, active only while callbacks
 * are queued, so a loop with nothing else to do returns from uv_run). Never disconnected,
 * never calls on_state or on_online. Returns NULL on allocation failure or a NULL loop. */
nt_presence *nt_presence_mem_new(uv_loop_t *loop, const nt_presence_handler *h);

/* In-memory presence only (tests): reaps every connection registered with info.node ==
 * `node` the way survivors reap a dead node in Redis: on_offline once per user and room
 * left without a connection, then on_conn_lost per connection, all on a later loop turn.
 * Returns the number of connections reaped. */
size_t nt_presence_mem_reap_node(nt_presence *p, const char *node);

/* Redis commands a node keeps sent and unanswered at once; past it operations wait on
 * the node, in order (natter_presence_queued). The liveness heartbeat bypasses it. */
#define NT_PRESENCE_REDIS_WINDOW 2048

/* Redis presence (hiredis async on `loop`). `url` is redis://[:password@]host:port[/db];
 * keys start with `prefix` (default "natter:"). This node's liveness record expires after
 * `node_ttl_s` and is refreshed every `refresh_s`. Connects in the background and keeps
 * reconnecting (reported through h->on_state). On success writes *out and returns 0. */
int nt_presence_redis_new(uv_loop_t *loop, const char *url, const char *prefix,
                          const char *node_id, double node_ttl_s, double refresh_s,
                          const nt_presence_handler *h, nt_presence **out);

/* The same with every option, Redis Sentinel included. */
typedef struct nt_presence_redis_opts {
  /* redis://[[user]:password@]host[:port][/db]. With `sentinels` only its user, password
   * and db are used (may then be NULL: no AUTH, db 0); the sentinels name the host. */
  const char *url;
  const char *prefix;
  const char *node_id;
  double node_ttl_s, refresh_s;
  /* Redis Sentinel: "host:port,..." and the monitored master's name (both or neither).
   * The node asks the sentinels for the primary, accepts it only when ROLE says master,
   * follows +switch-master and re-asserts its presence on the new primary. */
  const char *sentinels, *master;
  const char *sentinel_user, *sentinel_pass; /* AUTH to the sentinels (NULL: none) */
} nt_presence_redis_opts;

/* Presence over `n` stores (1..NT_PRESENCE_SHARDS_MAX; nt_presence_shard.c), one per
 * tenant: every call about a tenant goes unchanged to shard nt_shard_of_tenant(tenant, n)
 * (nt_subject.h), so transitions, member lists and the registry of one tenant are those
 * of one store; conn_get (an id without its tenant) asks every shard and answers with the
 * one that has it. make(ctx, k, h, &out) creates shard k with handler `h` and returns 0;
 * the shards' on_conn_lost, on_offline and on_online reach the caller's handler as they
 * come (each Redis shard reaps dead nodes and re-asserts this node's presence on its own),
 * on_state reports whether some shard is up, and so does connected(): a shard's outage
 * fails the calls of its tenants only (NT_ESTORE, as a lone Redis would) and leaves the
 * others alone. Stats are the sum (inflight_max the largest); nt_presence_shards reads
 * one shard. On failure the shards made so far are destroyed and a negative code returned. */
#define NT_PRESENCE_SHARDS_MAX 16
typedef int (*nt_presence_make_fn)(void *ctx, unsigned k, const nt_presence_handler *h,
                                   nt_presence **out);
int nt_presence_shard_new(unsigned n, nt_presence_make_fn make, void *ctx,
                          const nt_presence_handler *h, nt_presence **out);

int nt_presence_redis_open(uv_loop_t *loop, const nt_presence_redis_opts *o,
                           const nt_presence_handler *h, nt_presence **out);

#endif
