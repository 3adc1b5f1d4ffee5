/* nt_presence_redis_int: state shared by the Redis presence files (nt_presence_redis.c:
 * connection, operations, destroy; nt_presence_sync.c: mirror, re-assertion, reaping).
 * Not for other modules. Loop thread only. */
#ifndef NT_PRESENCE_REDIS_INT_H
#define NT_PRESENCE_REDIS_INT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <uv.h>

#include "nt_map.h"
#include "nt_presence.h"
#include "nt_presence_lua.h"
#include "nt_sentinel.h"
#include "nt_subject.h"

#include <string.h>

#define NT_KEY_MAX NT_SUBJECT_MAX

enum { RP_DOWN, RP_RESOLVING, RP_CONNECTING, RP_INIT, RP_UP };

/* One room of a mirrored connection: the interned name (rp.rooms) with, in its low bit,
 * `confirmed` — Redis acknowledged the membership, so the cluster heard of it; a room
 * joined while Redis was away is not, and its online transition is reported when
 * re-assertion finally makes it. (Interned names are even addresses, see nt_intern, so the
 * low bit is free.) */
typedef struct rp_room {
  uintptr_t v;
} rp_room;

static inline const char *rp_room_name(rp_room r) { return (const char *)(r.v & ~(uintptr_t)1); }
static inline int rp_room_confirmed(rp_room r) { return (int)(r.v & 1); }
static inline rp_room rp_room_make(const char *name, int confirmed) {
  return (rp_room){(uintptr_t)name | (confirmed ? 1u : 0u)};
}

/* What this node asserted about one of its connections: the local mirror that is
 * re-asserted after a reconnect. One allocation holds the entry and its strings
 * ("id\0user\0ip\0"); the tenant, room names and user agent are interned (15,000
 * connections in 150 rooms from a few dozen browsers hold that many copies, not 15,000).
 * Kept small: there is one per connection of the node. */
typedef struct rp_conn {
  const char *tenant;      /* interned (rp.tenants) */
  const char *ua;          /* interned (rp.uas), "" when unknown */
  int64_t connected_at_ms;
  rp_room *rooms;          /* &room0 (or NULL) until a second room */
  rp_room room0;
  uint32_t active_after_ms; /* lastActiveAt - connectedAt (clamped) */
  uint16_t nrooms, caprooms; /* at most 65535 rooms (--max-rooms-per-connection) */
  uint8_t registered;      /* conn_add seen (and no conn_remove yet) */
  char id[];               /* id, user, source ip ("" when unknown) */
} rp_conn;

static inline const char *rp_conn_user(const rp_conn *c) { return c->id + strlen(c->id) + 1; }
static inline const char *rp_conn_ip(const rp_conn *c) {
  const char *u = rp_conn_user(c);
  return u + strlen(u) + 1;
}

typedef struct rp rp;
typedef struct rop rop;
/* Reply handler: `r` is NULL when the command failed (error reply, connection lost, or
 * the presence is closing). The op is freed after it returns. */
typedef void (*rop_fn)(rp *p, rop *op, redisReply *r);

enum { CB_NONE, CB_JOIN, CB_LEAVE, CB_MEMBERS, CB_DONE, CB_CONN };

/* One command in flight. */
struct rop {
  rop *prev, *next;         /* rp.pending, oldest first */
  rp *p;
  rop_fn fn;
  int script;               /* NT_LUA_* for EVALSHA (kept for a NOSCRIPT retry), else -1 */
  int retried;
  int urgent;               /* sent past the window (the liveness heartbeat) */
  uint64_t sent_ms;
  int cbkind;               /* CB_*: which member of cb the caller gave */
  nt_presence_cb cb;
  void *ud;
  void *ctx;                /* handler-specific */
  /* What the reply handler needs to know ("" unless nt_rp_op_ids set them): one block of
   * exact size, as thousands of ops wait at once during a storm. */
  const char *tenant, *id, *room;
  char *ids;
  int argc;
  char nk[8];               /* numkeys of a script, as text */
  char cmd[16];             /* command or script name, for logs */
  const char **argv;        /* argv[2..] point into owned copies (one block) */
  size_t *lens;
};

struct rp {
  nt_presence base;
  uv_loop_t *loop;
  char *host, *user, *pass;
  int port, db;
  char prefix[72], node[NT_ID_MAX + 1];
  char k_live[NT_KEY_MAX], k_reaping[NT_KEY_MAX], k_reaped[NT_KEY_MAX];
  char k_tenants[NT_KEY_MAX];
  uint64_t ttl_ms, refresh_ms, op_timeout_ms, reclaim_ms, backoff_ms;

  redisAsyncContext *ac;    /* NULL while disconnected */
  int state;                /* RP_* */
  uint64_t state_since, up_since, closing_since, err_logged_at, hb_wait_since;
  uint64_t last_reply_ms;    /* when Redis last answered anything (the watchdog) */
  uv_timer_t tick, retry;
  uv_getaddrinfo_t gai;
  int gai_busy, timers_open;
  nt_sentinel *sentinel;    /* NULL: the URL's fixed address */
  int locating;             /* asked the sentinels, waiting for the answer */
  int ever_up, self_reaped, hb_busy, hb_wait, init_left, down_logged;
  int closing, in_destroy;
  char sha[NT_LUA_COUNT][48];
  rop pending;              /* sent, awaiting replies (list sentinel) */
  rop waiting;              /* not sent yet: the window is full (list sentinel, FIFO) */
  int inflight;             /* ops in `pending` */

  nt_map conns;             /* mirror: conn id -> rp_conn* (key borrowed from the entry) */
  nt_map tenants;           /* interned tenants (nt_intern; refs: mirrored connections) */
  nt_map rooms;             /* interned room names (refs: memberships) */
  nt_map uas;               /* interned user agents (refs: mirrored connections) */
  /* Leaves Redis may not have seen: "tenant\nroom\nuser" of confirmed rooms left while
   * Redis was away (or whose leave failed). Announced after a reconnect to a Redis that
   * lost everything, once every node had time to re-assert (departed_at). */
  nt_map departed;
  uint64_t departed_at;
  nt_presence_stats st;
};

/* nt_presence_redis.c */
rop *nt_rp_op_new(rp *p, rop_fn fn);
/* Copies the ids the reply handler reads (NULL: ""). 0, or NT_ENOMEM (op unchanged). */
int nt_rp_op_ids(rop *op, const char *tenant, const char *id, const char *room);
/* Frees an op that was never sent. */
void nt_rp_op_free(rop *op);
/* Sends argv (plain command); on failure frees `op` and returns NT_ESTORE. */
int nt_rp_send(rp *p, rop *op, int argc, const char **argv, const size_t *lens);
/* Sends EVALSHA of script `id` with `nkeys` keys followed by the arguments (argv holds
 * keys then args, `n` in all); same failure rule. lens NULL: strlen. */
int nt_rp_script(rp *p, rop *op, int id, int nkeys, int n, const char **argv,
                 const size_t *lens);
/* Fire-and-forget plain command (failures are counted and logged). */
void nt_rp_cmd(rp *p, int argc, const char **argv, const size_t *lens);
int nt_rp_up(const rp *p);
/* Tenant key base and the routing key (the tenant's conns hash). */
int nt_rp_tkeys(const rp *p, const char *tenant, char *base, char *ck);
/* Marks the connection usable and reports it (after a successful re-assertion). */
void nt_rp_go_up(rp *p);
/* The mirror entry for `id`, or NULL. */
rp_conn *nt_rp_conn(const rp *p, const char *id);

/* nt_presence_sync.c */
/* Sends the refresh (one script call) unless one is in flight; its reply drives
 * re-assertion and reaping. */
void nt_rp_heartbeat(rp *p);
/* Sets up the mirror's maps (from nt_presence_redis_new). */
void nt_rp_mirror_init(rp *p);
/* Returns the entry for `id`, creating it for tenant/user (NULL on allocation failure);
 * `ip` and `ua` (NULL: unknown, "") are stored with a new entry only. A new tenant is
 * added to the node's tenant set in Redis when connected. */
rp_conn *nt_rp_mirror_ensure(rp *p, const char *id, const char *tenant, const char *user,
                             const char *ip, const char *ua);
/* Replaces the source ip and user agent of entry *c (NULL: unknown, ""). A new ip moves the
 * entry: *c is updated (nothing else holds entries). 0, or NT_ENOMEM: what could not be
 * replaced keeps its old value. */
int nt_rp_mirror_set_client(rp *p, rp_conn **c, const char *ip, const char *ua);
/* 1 added, 0 already there, NT_ENOMEM. */
int nt_rp_mirror_add_room(rp *p, rp_conn *c, const char *room);
/* Returns 1 when the room was there and confirmed (the cluster knew of it), else 0. */
int nt_rp_mirror_del_room(rp *p, rp_conn *c, const char *room);
/* Records / forgets a leave Redis may not have seen (see rp.departed). */
void nt_rp_departed_add(rp *p, const char *tenant, const char *room, const char *user);
void nt_rp_departed_del(rp *p, const char *tenant, const char *room, const char *user);
/* Every refresh while connected: announces the recorded leaves once their time came. */
void nt_rp_departed_tick(rp *p);
/* Marks the room of connection `id` as acknowledged by Redis (no-op when gone). */
void nt_rp_mirror_confirm(rp *p, const char *id, const char *room);
/* Removes and frees the entry. */
void nt_rp_mirror_drop(rp *p, rp_conn *c);
void nt_rp_mirror_free(rp *p);
/* Re-asserts the whole mirror and removes what Redis holds for this node beyond it.
 * Online transitions are reported only when `report_on`. */
void nt_rp_sync(rp *p, int report_on);
/* A claimed dead node: removes its entries tenant by tenant, reporting what was lost.
 * Abandoned when the connection drops (a survivor reclaims it after reclaim_ms). */
void nt_rp_reap(rp *p, const char *node);
/* The same for what an earlier run of this node id left behind, then the first
 * refresh. */
void nt_rp_self_reap(rp *p);
/* Reports offline (room, user pairs) and online (rooms) transitions from a script reply. */
void nt_rp_report_off(rp *p, const char *tenant, const redisReply *pairs);
/* Sends the registry record of a mirrored connection (HSET). */
void nt_rp_put_record(rp *p, const rp_conn *c);

#endif
