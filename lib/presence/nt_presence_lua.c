/* nt_presence_lua: the Lua scripts that decide presence transitions inside Redis.
 *
 * Every transition (a user's first connection in a room -> online, last -> offline) is
 * decided by one of these scripts, so it is atomic even when several nodes act at once:
 * counts live in Redis, never in a node's read-then-write. All scripts are idempotent for
 * a repeated call with the same arguments, which lets a node re-assert its state after a
 * reconnect without creating transitions that did not happen. */
#include "nt_presence_lua.h"

#include "nt_presence.h"
#include "nt_subject.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Helpers shared by the tenant scripts (B = tenant key base). */
#define PRELUDE                                                                          \
  "local B = ARGV[1]\n"                                                                  \
  /* drop(c, r): removes connection c from room r; returns the user when it was the     \
   * user's last connection there (offline), else false. */                             \
  "local function drop(c, r)\n"                                                          \
  "  local rk = B .. '" NT_KEY_ROOM ":' .. r\n"                                          \
  "  local u = redis.call('HGET', rk, c)\n"                                              \
  "  if not u then return false end\n"                                                   \
  "  redis.call('HDEL', rk, c)\n"                                                        \
  "  local uk = B .. '" NT_KEY_ROOMU ":' .. r\n"                                         \
  "  if redis.call('HINCRBY', uk, u, -1) <= 0 then\n"                                    \
  "    redis.call('HDEL', uk, u)\n"                                                      \
  "    if redis.call('EXISTS', uk) == 0 then\n"                                          \
  "      redis.call('DEL', B .. '" NT_KEY_RJOINS ":' .. r)\n"                             \
  "    end\n"                                                                            \
  "    return u\n"                                                                       \
  "  end\n"                                                                              \
  "  return false\n"                                                                     \
  "end\n"                                                                                \
  /* add(c, u, r): puts c (of user u) in room r; true when u just came online there. */ \
  "local function add(c, u, r)\n"                                                        \
  "  if redis.call('HSETNX', B .. '" NT_KEY_ROOM ":' .. r, c, u) == 0 then\n"            \
  "    return false\n"                                                                   \
  "  end\n"                                                                              \
  "  return redis.call('HINCRBY', B .. '" NT_KEY_ROOMU ":' .. r, u, 1) == 1\n"           \
  "end\n"                                                                                \
  "local function reg(c, u)\n"                                                           \
  "  if redis.call('HSETNX', B .. '" NT_KEY_CONNS "', c, u) == 1 then\n"                 \
  "    redis.call('HINCRBY', B .. '" NT_KEY_ONLINE "', u, 1)\n"                          \
  "  end\n"                                                                              \
  "end\n"                                                                                \
  "local function unreg(c)\n"                                                            \
  "  local u = redis.call('HGET', B .. '" NT_KEY_CONNS "', c)\n"                         \
  "  if not u then return false end\n"                                                   \
  "  redis.call('HDEL', B .. '" NT_KEY_CONNS "', c)\n"                                   \
  "  if redis.call('HINCRBY', B .. '" NT_KEY_ONLINE "', u, -1) <= 0 then\n"              \
  "    redis.call('HDEL', B .. '" NT_KEY_ONLINE "', u)\n"                                \
  "  end\n"                                                                              \
  "  return true\n"                                                                      \
  "end\n"                                                                                \
  /* page(k, cursor, n): {next cursor, {field...}} of one HSCAN of hash k. */          \
  "local function page(k, cur, n)\n"                                                     \
  "  local s = redis.call('HSCAN', k, cur, 'COUNT', n)\n"                                \
  "  local f = {}\n"                                                                     \
  "  for i = 1, #s[2], 2 do f[#f + 1] = s[2][i] end\n"                                   \
  "  return {s[1], f}\n"                                                                 \
  "end\n"                                                                                \
  /* forget(c, idx, off): removes everything of connection c; appends room, user pairs  \
   * of the offline transitions to off. */                                               \
  "local function forget(c, idx, off)\n"                                                 \
  "  unreg(c)\n"                                                                         \
  "  local ck = B .. '" NT_KEY_CROOMS ":' .. c\n"                                        \
  "  for _, r in ipairs(redis.call('SMEMBERS', ck)) do\n"                                \
  "    local x = drop(c, r)\n"                                                           \
  "    if x then off[#off + 1] = r; off[#off + 1] = x end\n"                             \
  "  end\n"                                                                              \
  "  redis.call('DEL', ck)\n"                                                            \
  "  redis.call('HDEL', idx, c)\n"                                                       \
  "end\n"

/* Liveness scripts read the Redis clock, so every node compares against one clock. */
#define NOW                                                                              \
  "if redis.replicate_commands then redis.replicate_commands() end\n"                    \
  "local t = redis.call('TIME')\n"                                                       \
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* Returns {transition, first page of members, its cursor ('0': whole), members in all,
 * the room's join counter after this join}: O(1) in the room's size (one HSCAN page, HLEN,
 * INCR). The counter orders the room's joins, so a node can tell whether a member's
 * `joined` already listed a user (nt_presence_joined.version); drop() deletes it with the
 * room's last member. */
static const char join_lua[] = PRELUDE
    "local c, u, r = ARGV[2], ARGV[3], ARGV[4]\n"
    "local tr = add(c, u, r) and 1 or 0\n"
    "redis.call('SADD', B .. '" NT_KEY_CROOMS ":' .. c, r)\n"
    "redis.call('HSET', B .. '" NT_KEY_NODEIDX ":' .. ARGV[5], c, u)\n"
    "local uk = B .. '" NT_KEY_ROOMU ":' .. r\n"
    "local v = redis.call('INCR', B .. '" NT_KEY_RJOINS ":' .. r)\n"
    "local pg = page(uk, '0', " STR(NT_PRESENCE_JOINED_MAX) ")\n"
    "return {tr, pg[2], pg[1], redis.call('HLEN', uk), v}\n";

/* One page of a member hash (online, or roomu:<room>): O(count) whatever the hash holds,
 * where HKEYS would be O(tenant). */
static const char members_lua[] = PRELUDE
    "local k = B .. ARGV[2]\n"
    "local s = page(k, ARGV[3], tonumber(ARGV[4]))\n"
    "return {s[1], s[2], redis.call('HLEN', k)}\n";

/* A connection that was only joined (never registered) leaves the node index with its
 * last room, so the index never keeps a connection that holds nothing. */
static const char leave_lua[] = PRELUDE
    "local c, r = ARGV[2], ARGV[3]\n"
    "local ck = B .. '" NT_KEY_CROOMS ":' .. c\n"
    "local x = drop(c, r)\n"
    "redis.call('SREM', ck, r)\n"
    "if redis.call('EXISTS', ck) == 0 and\n"
    "   redis.call('HEXISTS', B .. '" NT_KEY_CONNS "', c) == 0 then\n"
    "  redis.call('HDEL', B .. '" NT_KEY_NODEIDX ":' .. ARGV[4], c)\n"
    "end\n"
    "if x then return 1 end\n"
    "return 0\n";

static const char conn_add_lua[] = PRELUDE
    "reg(ARGV[2], ARGV[3])\n"
    "redis.call('HSET', B .. '" NT_KEY_NODEIDX ":' .. ARGV[4], ARGV[2], ARGV[3])\n"
    "return 1\n";

/* Also drops rooms the connection still has (a leave that failed while Redis was away):
 * their offline transitions are returned so the caller reports them. */
static const char conn_remove_lua[] = PRELUDE
    "local found = redis.call('HEXISTS', B .. '" NT_KEY_CONNS "', ARGV[2])\n"
    "local off = {}\n"
    "forget(ARGV[2], B .. '" NT_KEY_NODEIDX ":' .. ARGV[3], off)\n"
    "return {found, off}\n";

/* Makes Redis hold exactly what the node knows of one connection: its registration and
 * its rooms. Returns the rooms where its user came online and the room, user pairs that
 * went offline (rooms left while Redis was unreachable). */
static const char sync_lua[] = PRELUDE
    "local c, u = ARGV[3], ARGV[4]\n"
    "redis.call('HSET', B .. '" NT_KEY_NODEIDX ":' .. ARGV[2], c, u)\n"
    "if ARGV[5] == '1' then reg(c, u) end\n"
    "local want = {}\n"
    "for i = 6, #ARGV do want[ARGV[i]] = true end\n"
    "local ck = B .. '" NT_KEY_CROOMS ":' .. c\n"
    "local on, off = {}, {}\n"
    "for _, r in ipairs(redis.call('SMEMBERS', ck)) do\n"
    "  if not want[r] then\n"
    "    redis.call('SREM', ck, r)\n"
    "    local x = drop(c, r)\n"
    "    if x then off[#off + 1] = r; off[#off + 1] = x end\n"
    "  end\n"
    "end\n"
    "for i = 6, #ARGV do\n"
    "  if add(c, u, ARGV[i]) then on[#on + 1] = ARGV[i] end\n"
    "  redis.call('SADD', ck, ARGV[i])\n"
    "end\n"
    "return {on, off}\n";

/* Removes up to `limit` connections of a node from one tenant (or exactly the listed
 * ones). Returns how many remain in the node's index, the removed connection, user pairs
 * and the offline transitions. Bounded batches keep one call short on a large node. */
static const char reap_lua[] = PRELUDE
    "local idx = B .. '" NT_KEY_NODEIDX ":' .. ARGV[2]\n"
    "local lim = tonumber(ARGV[3])\n"
    "local list = {}\n"
    "if #ARGV > 3 then\n"
    "  for i = 4, #ARGV do\n"
    "    local u = redis.call('HGET', idx, ARGV[i]) or\n"
    "              redis.call('HGET', B .. '" NT_KEY_CONNS "', ARGV[i]) or ''\n"
    "    list[#list + 1] = ARGV[i]; list[#list + 1] = u\n"
    "  end\n"
    "else\n"
    "  local cur = '0'\n"
    "  repeat\n"
    "    local r = redis.call('HSCAN', idx, cur, 'COUNT', lim)\n"
    "    cur = r[1]\n"
    "    for i = 1, #r[2] do list[#list + 1] = r[2][i] end\n"
    "  until cur == '0' or #list >= 2 * lim\n"
    "end\n"
    "local lost, off = {}, {}\n"
    "for i = 1, #list, 2 do\n"
    "  forget(list[i], idx, off)\n"
    "  lost[#lost + 1] = list[i]; lost[#lost + 1] = list[i + 1]\n"
    "end\n"
    "return {redis.call('HLEN', idx), lost, off}\n";

/* The one command a node sends per refresh: records this node as alive and, when allowed,
 * claims nodes silent for longer than the ttl (and reaps abandoned by a claimer that died
 * too). The claim is a ZREM inside this script, so exactly one survivor gets each node.
 * Status: 0 refreshed; 1 our record was missing (Redis lost data, or first start);
 * 3 missing because a survivor reaped us (a tombstone was left); 2 a survivor is reaping
 * us right now (not re-added until it finishes, so it cannot remove what we re-assert). */
static const char heartbeat_lua[] = NOW
    "local me = ARGV[1]\n"
    "local st = 0\n"
    "if redis.call('ZSCORE', KEYS[2], me) then\n"
    "  st = 2\n"
    "elseif redis.call('ZADD', KEYS[1], now, me) == 1 then\n"
    "  st = 1\n"
    "  if redis.call('ZREM', KEYS[3], me) == 1 then st = 3 end\n"
    "end\n"
    "local claimed = {}\n"
    "if ARGV[4] == '1' and st ~= 2 then\n"
    "  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]),\n"
    "                          'LIMIT', 0, 16)\n"
    "  for _, n in ipairs(dead) do\n"
    "    if n ~= me then\n"
    "      redis.call('ZREM', KEYS[1], n)\n"
    "      redis.call('ZADD', KEYS[2], now, n)\n"
    "      claimed[#claimed + 1] = n\n"
    "    end\n"
    "  end\n"
    "  local stuck = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]),\n"
    "                           'LIMIT', 0, 16)\n"
    "  for _, n in ipairs(stuck) do\n"
    "    if n ~= me then\n"
    "      redis.call('ZADD', KEYS[2], now, n)\n"
    "      claimed[#claimed + 1] = n\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {st, claimed}\n";

/* A starting node reaps what an earlier process with its id left behind. */
static const char claim_self_lua[] = NOW
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('ZADD', KEYS[2], now, ARGV[1])\n"
    "return 1\n";

static const char finish_lua[] = NOW
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[3], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 3600000)\n"
    "return 1\n";

/* A user left a room while Redis was away and Redis then lost everything (a restart
 * without persistence): after every node re-asserted, the user is offline there unless
 * some connection of it is back in the room. The `gone` marker (kept `px` ms) makes one
 * node announce it when several saw the same user leave. */
static const char gone_lua[] =
    "local B, r, u = ARGV[1], ARGV[2], ARGV[3]\n"
    "if redis.call('HEXISTS', B .. '" NT_KEY_ROOMU ":' .. r, u) == 1 then return 0 end\n"
    "local g = B .. '" NT_KEY_GONE ":' .. r\n"
    "if redis.call('HSETNX', g, u, '1') == 0 then return 0 end\n"
    "redis.call('PEXPIRE', g, tonumber(ARGV[4]))\n"
    "return 1\n";

const char *const nt_presence_lua[NT_LUA_COUNT] = {
    [NT_LUA_JOIN] = join_lua,
    [NT_LUA_LEAVE] = leave_lua,
    [NT_LUA_CONN_ADD] = conn_add_lua,
    [NT_LUA_CONN_REMOVE] = conn_remove_lua,
    [NT_LUA_SYNC] = sync_lua,
    [NT_LUA_REAP] = reap_lua,
    [NT_LUA_HEARTBEAT] = heartbeat_lua,
    [NT_LUA_CLAIM_SELF] = claim_self_lua,
    [NT_LUA_FINISH] = finish_lua,
    [NT_LUA_MEMBERS] = members_lua,
    [NT_LUA_GONE] = gone_lua,
};

const char *const nt_presence_lua_name[NT_LUA_COUNT] = {
    [NT_LUA_JOIN] = "join",
    [NT_LUA_LEAVE] = "leave",
    [NT_LUA_CONN_ADD] = "conn_add",
    [NT_LUA_CONN_REMOVE] = "conn_remove",
    [NT_LUA_SYNC] = "sync",
    [NT_LUA_REAP] = "reap",
    [NT_LUA_HEARTBEAT] = "heartbeat",
    [NT_LUA_CLAIM_SELF] = "claim_self",
    [NT_LUA_FINISH] = "finish",
    [NT_LUA_MEMBERS] = "members",
    [NT_LUA_GONE] = "gone",
};
