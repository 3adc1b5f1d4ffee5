/* nt_subject: the one place that validates ids and builds NATS subjects and Redis keys. */
#ifndef NT_SUBJECT_H
#define NT_SUBJECT_H

#include <stddef.h>

#define NT_ID_MAX 128          /* room, user, tenant and node ids: 1..128 bytes */
#define NT_SUBJECT_MAX 512     /* enough for any subject built here, NUL included */

/* Returns 0 when `id` (length `len`) is a valid room/user/tenant/node id: 1..NT_ID_MAX bytes,
 * none of '.', '*', '>', whitespace, control characters (< 0x20, 0x7f), '{', '}' or ':'
 * (the last three would break Redis hash tags and key separators), valid UTF-8, and no
 * Unicode whitespace (U+00A0, U+2000..U+200A, U+3000...), C1 control or format character
 * (U+200B zero-width space, U+202E right-to-left override, U+FEFF, tags...).
 * Returns NT_EINVAL otherwise. */
int nt_id_check(const char *id, size_t len);

/* Returns 1 when the NUL-terminated `id` passes nt_id_check, 0 otherwise (NULL included). */
int nt_id_valid(const char *id);

/* Subject builders. Each writes a NUL-terminated subject into `out` (capacity `cap`) and
 * returns its length, or NT_EINVAL when an id is invalid or NT_ETOOLARGE when `cap` is too
 * small. Ids are validated here, so a built subject can never contain a wildcard. */
int nt_subject_room(char *out, size_t cap, const char *tenant, const char *room);
int nt_subject_user(char *out, size_t cap, const char *tenant, const char *user);
/* "natter.user.<tenant>.*": every user of a tenant (one subscription instead of many). */
int nt_subject_user_all(char *out, size_t cap, const char *tenant);
int nt_subject_node(char *out, size_t cap, const char *node_id);
int nt_subject_presence(char *out, size_t cap, const char *tenant, const char *room);
/* kind: "connect" | "disconnect" | "join" | "leave". */
int nt_subject_event(char *out, size_t cap, const char *tenant, const char *kind);
/* action must itself be a valid id. */
int nt_subject_route(char *out, size_t cap, const char *action);

/* Parses a subject built by nt_subject_room/user/presence back into its tenant and id
 * (copied into out buffers of NT_ID_MAX+1 bytes). `prefix` is "natter.room." etc.
 * Returns 0 or NT_EINVAL. */
int nt_subject_parse2(const char *subject, const char *prefix, char *tenant, char *id);

/* Redis keys: "<prefix>{<tenant>}:<what>:<id>" — the hash tag keeps one tenant's keys on
 * one Redis Cluster slot. Node-scoped keys use "<prefix>node:<node>". Same return
 * convention as the subject builders. `prefix` defaults to "natter:" when NULL. */
int nt_key_tenant(char *out, size_t cap, const char *prefix, const char *tenant,
                  const char *what, const char *id);
int nt_key_node(char *out, size_t cap, const char *prefix, const char *what,
                const char *node_id);

/* Presence key layout (docs/presence.md "Key layout"; nt_presence_redis.c and its Lua scripts). One tenant's
 * keys are "<prefix>{<tenant>}:<name>" and share a Redis Cluster slot:
 *   conns              hash connId -> user: the tenant's registered connections
 *   online             hash user -> registered connections (the tenant's online users)
 *   room:<room>        hash connId -> user: the connections in a room
 *   roomu:<room>       hash user -> connections in the room (the members, by user)
 *   rjoins:<room>      string: the room's join counter (deleted with its last member)
 *   crooms:<connId>    set: the rooms of one connection
 *   node:<nodeId>      hash connId -> user: what a node holds in the tenant (reap index)
 * Keys outside any tenant:
 *   <prefix>conn:<connId>            hash: registry record (GET /@connections/{id} has
 *                                    only the id, so it cannot carry the tenant's tag)
 *   <prefix>node:tenants:<nodeId>    set: tenants where a node has entries
 *   <prefix>cluster:{nodes}:live     zset node -> last refresh (Redis clock, ms)
 *   <prefix>cluster:{nodes}:reaping  zset node -> time a survivor claimed it
 *   <prefix>cluster:{nodes}:reaped   zset node -> time its reap finished (1 h tombstones)
 * Lua scripts build the per-room and per-connection names from the tenant base and these
 * names, so the names are spelled only here. */
#define NT_KEY_CONNS "conns"
#define NT_KEY_ONLINE "online"
#define NT_KEY_ROOM "room"
#define NT_KEY_ROOMU "roomu"
#define NT_KEY_CROOMS "crooms"
#define NT_KEY_GONE "gone"
#define NT_KEY_RJOINS "rjoins"
#define NT_KEY_NODEIDX "node"
#define NT_KEY_TENANTS "tenants"
#define NT_KEY_LIVE "live"
#define NT_KEY_REAPING "reaping"
#define NT_KEY_REAPED "reaped"

/* Returns 0 when `prefix` can start keys: at most 64 bytes, printable, no '{' or '}' (a
 * brace would move the Redis Cluster hash tag). NT_EINVAL otherwise. */
int nt_key_prefix_check(const char *prefix);

/* "<prefix>{<tenant>}:" — the base a Lua script appends "<name>" or "<name>:<id>" to. */
int nt_key_tenant_base(char *out, size_t cap, const char *prefix, const char *tenant);

/* "<prefix>conn:<connId>" — a connection's registry record. */
int nt_key_conn(char *out, size_t cap, const char *prefix, const char *conn_id);

/* "<prefix>cluster:{nodes}:<what>" — cluster-wide liveness keys, one slot. */
int nt_key_cluster(char *out, size_t cap, const char *prefix, const char *what);

/* Room history (docs/history.md): the stream stores natter.room.<tenant>.<room> and
 * republishes each stored message, with its sequence, on
 * natter.live.room.<tenant>.<room>, where nodes subscribe while history is on.
 * nt_subject_live_of() maps a room subject to its live subject and nt_subject_room_of()
 * back (both return the length, or NT_EINVAL for a subject of another kind or one that is
 * not exactly "<prefix><tenant>.<room>" with valid ids, or NT_ETOOLARGE). The stream's RePublish rule is spelled from the two prefixes. */
#define NT_SUBJECT_ROOM_PREFIX "natter.room."
#define NT_SUBJECT_LIVE_PREFIX "natter.live.room."
/* The prefixes of the other subject kinds, for code that dispatches on a subject's kind. */
#define NT_SUBJECT_USER_PREFIX "natter.user."
#define NT_SUBJECT_PRESENCE_PREFIX "natter.presence."
int nt_subject_live_of(char *out, size_t cap, const char *room_subject);
int nt_subject_room_of(char *out, size_t cap, const char *live_subject);

/* Sharding (docs/presence.md "Sharding", docs/history.md "Several streams"). The shard of
 * a tenant (presence) or of a room (history) among `n` is the jump consistent hash
 * (Lamping & Veach, 2014) of the 64-bit FNV-1a hash of the tenant id, or of
 * "<tenant>.<room>" (the room subject's tail): stable across nodes, restarts and
 * versions (tests/unit/test_subject.c holds a fixed vector), balanced, and growing `n` to
 * n + 1 moves only about 1/(n + 1) of the keys. n 0 or 1: always 0. */
unsigned nt_shard_of_tenant(const char *tenant, unsigned n);
unsigned nt_shard_of_room(const char *tenant, const char *room, unsigned n);
/* The shard of a room subject built by nt_subject_room, or NT_EINVAL. */
int nt_subject_room_shard(const char *room_subject, unsigned n);

/* Room history over K > 1 streams (--history-streams K): stream k (0 <= k < K) stores
 * "natter.hist.<k>.<tenant>.<room>" for the rooms with nt_shard_of_room(..., K) == k and
 * republishes them on the same live subject as the single stream (the RePublish rule maps
 * "natter.hist.<k>.>" to NT_SUBJECT_LIVE_PREFIX ">"), so the live path and the nodes'
 * subscriptions do not change with K. nt_subject_hist_of() maps a room subject to its
 * stored subject in partition `part` (NT_EINVAL for anything but a room subject);
 * nt_subject_hist_filter() writes "natter.hist.<part>.>", the stream's subject. */
#define NT_SUBJECT_HIST_PREFIX "natter.hist."
int nt_subject_hist_of(char *out, size_t cap, unsigned part, const char *room_subject);
int nt_subject_hist_filter(char *out, size_t cap, unsigned part);

#endif
