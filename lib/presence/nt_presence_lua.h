/* nt_presence_lua: the Lua scripts that decide presence transitions inside Redis. */
#ifndef NT_PRESENCE_LUA_H
#define NT_PRESENCE_LUA_H

/* Tenant scripts take KEYS[1] = the tenant's "conns" key (it routes the call to the
 * tenant's Redis Cluster slot) and ARGV[1] = the tenant key base ("<prefix>{<tenant>}:");
 * the per-room and per-connection keys they touch are built from that base and share the
 * slot. Liveness scripts take KEYS = live, reaping, reaped (nt_key_cluster). Replies are
 * documented beside each script in nt_presence_lua.c. */
enum {
  NT_LUA_JOIN,        /* ARGV base conn user room node -> {transition, {members}, cursor,
                       * total, version}: the first NT_PRESENCE_JOINED_MAX or so members
                       * (HSCAN), HLEN, the room's join counter (INCR) */
  NT_LUA_LEAVE,       /* ARGV base conn room node -> transition */
  NT_LUA_CONN_ADD,    /* ARGV base conn user node -> 1 */
  NT_LUA_CONN_REMOVE, /* ARGV base conn node -> {found, {room, user, ...}} */
  NT_LUA_SYNC,        /* ARGV base node conn user registered room... -> {{on}, {off r,u}} */
  NT_LUA_REAP,        /* ARGV base node limit [conn...] -> {left, {conn,user..}, {room,user..}} */
  NT_LUA_HEARTBEAT,   /* ARGV node ttl_ms reclaim_ms may_claim -> {status, {claimed}} */
  NT_LUA_CLAIM_SELF,  /* ARGV node -> 1 */
  NT_LUA_FINISH,      /* ARGV node -> 1 */
  NT_LUA_MEMBERS,     /* ARGV base hash cursor count -> {cursor, {user...}, total} */
  NT_LUA_GONE,        /* ARGV base room user px -> 1 when this call announces the offline */
  NT_LUA_COUNT
};

/* Script bodies, indexed by the enum above. Static strings. */
extern const char *const nt_presence_lua[NT_LUA_COUNT];
/* Short names of the scripts, for logs. */
extern const char *const nt_presence_lua_name[NT_LUA_COUNT];

#endif
