/* nt_presence_redis: presence, connection registry and node liveness in Redis, over
 * hiredis async on the node's libuv loop (never a blocking call on the loop).
 *
 * This file owns the connection (resolve, connect, AUTH/SELECT, SCRIPT LOAD, reconnect
 * with backoff, a watchdog for a Redis that stops answering), the refresh timer and the
 * presence operations. nt_presence_sync.c keeps the local mirror of what this node
 * asserted, re-asserts it after a reconnect and reaps dead nodes; nt_presence_lua.c holds
 * the scripts that decide transitions. Key layout: nt_subject.h. */
#include <hiredis/adapters/libuv.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_log.h"
#include "nt_pct.h"
#include "nt_presence_redis_int.h"
#include "nt_resolve.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* Commands sent and not answered yet, at most. A connection storm asks for tens of
 * thousands of scripts within a second; pipelined all at once they sit formatted in
 * hiredis' output buffer and in Redis' query buffer, and the liveness heartbeat queues
 * behind all of them (a node could miss its ttl and be reaped). Past the window an op
 * waits here, in order, with its arguments; the heartbeat goes first. The window is what
 * paces a reconnect storm: it refills as fast as the node's loop reads replies, and a
 * loop slowed by the storm's handshakes made 256 a bound of ~5,000 ops/s (scenario 6,
 * docs/benchmarks.md); 2,048 keep the heartbeat at most ~0.1 s (rooms of 100) to ~0.9 s
 * (rooms of 10,000, 442 µs per join) of Redis work behind, within the 3 s node ttl. */
#define WINDOW NT_PRESENCE_REDIS_WINDOW

/* init_cmd id of the ROLE check (script ids are >= 0, -1 is AUTH/SELECT) */
#define ROLE_CHECK (-2)

static void start_connect(rp *p);
static void maybe_free(rp *p);

/* ---------------------------------------------------------------- commands --- */

int nt_rp_up(const rp *p) { return p->state == RP_UP && p->ac && !p->closing; }

rop *nt_rp_op_new(rp *p, rop_fn fn) {
  rop *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->p = p;
  op->fn = fn;
  op->script = -1;
  op->tenant = op->id = op->room = "";
  return op;
}

int nt_rp_op_ids(rop *op, const char *tenant, const char *id, const char *room) {
  const char *v[3] = {tenant ? tenant : "", id ? id : "", room ? room : ""};
  size_t l[3], total = 0;
  for (int i = 0; i < 3; i++) total += (l[i] = strlen(v[i])) + 1;
  char *blk = malloc(total), *cur = blk;
  if (!blk) return NT_ENOMEM;
  const char **dst[3] = {&op->tenant, &op->id, &op->room};
  for (int i = 0; i < 3; i++) {
    memcpy(cur, v[i], l[i] + 1);
    *dst[i] = cur;
    cur += l[i] + 1;
  }
  free(op->ids);
  op->ids = blk;
  return 0;
}

static void op_free(rop *op) {
  free(op->argv);
  free(op->ids);
  free(op);
}

void nt_rp_op_free(rop *op) { op_free(op); }

/* Gives the op its own copy of argv (nt_rp_script ops have one already). */
static int own_args(rop *op, int argc, const char **argv, const size_t *lens) {
  if (op->argv == argv) return 0;
  size_t total = 0;
  for (int i = 0; i < argc; i++) total += (lens ? lens[i] : strlen(argv[i])) + 1;
  char *blk = malloc(argc * (sizeof(char *) + sizeof(size_t)) + total);
  if (!blk) return NT_ENOMEM;
  const char **av = (const char **)blk;
  size_t *lv = (size_t *)(blk + argc * sizeof(char *));
  char *cur = (char *)(lv + argc);
  for (int i = 0; i < argc; i++) {
    size_t l = lens ? lens[i] : strlen(argv[i]);
    memcpy(cur, argv[i], l);
    cur[l] = '\0';
    av[i] = cur;
    lv[i] = l;
    cur += l + 1;
  }
  free(op->argv);
  op->argv = av;
  op->lens = lv;
  op->argc = argc;
  return 0;
}

static void list_append(rop *head, rop *op) {
  op->prev = head->prev;
  op->next = head;
  head->prev->next = op;
  head->prev = op;
}

static void op_unlink(rop *op) {
  if (!op->next) return;
  op->prev->next = op->next;
  op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

/* Calls the caller's callback of a failed op with `status`, at most once: the callback is
 * forgotten, so a reply that still arrives (after destroy failed the op) reaches nobody. */
static void op_fail(rop *op, int status) {
  int kind = op->cbkind;
  nt_presence_cb cb = op->cb;
  op->cbkind = CB_NONE;
  memset(&op->cb, 0, sizeof op->cb);
  switch (kind) {
  case CB_JOIN: cb.join(op->ud, status, NULL); break;
  case CB_LEAVE: cb.leave(op->ud, status, 0); break;
  case CB_MEMBERS: cb.members(op->ud, status, NULL); break;
  case CB_DONE: cb.done(op->ud, status); break;
  case CB_CONN: cb.conn(op->ud, status, NULL); break;
  default: break;
  }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

static int transmit(rp *p, rop *op, int argc, const char **argv, const size_t *lens) {
  op->sent_ms = uv_now(p->loop);
  list_append(&p->pending, op);
  if (redisAsyncCommandArgv(p->ac, on_reply, op, argc, argv, lens) != REDIS_OK) {
    op_unlink(op);
    return NT_ESTORE;
  }
  if ((uint64_t)++p->inflight > p->st.inflight_max) p->st.inflight_max = (uint64_t)p->inflight;
  return 0;
}

static int issue(rp *p, rop *op, int argc, const char **argv, const size_t *lens) {
  if (!p->ac || p->closing) return NT_ESTORE;
  snprintf(op->cmd, sizeof op->cmd, "%s",
           op->script >= 0 ? nt_presence_lua_name[op->script] : argv[0]);
  if (p->inflight < WINDOW || op->urgent || p->in_destroy) return transmit(p, op, argc, argv, lens);
  if (own_args(op, argc, argv, lens)) return NT_ENOMEM;
  list_append(&p->waiting, op);
  p->st.queued++;
  return 0;
}

/* Fails an op that was never answered: its handler sees NULL, its caller `status`. */
static void op_abandon(rp *p, rop *op, int status) {
  if (op->fn) op->fn(p, op, NULL);
  if (op->cbkind != CB_NONE) op_fail(op, status);
  op_free(op);
}

/* Sends waiting ops while the window has room (all of them with `all`). */
static void pump(rp *p, int all) {
  while (p->waiting.next != &p->waiting && (all || p->inflight < WINDOW) && p->ac) {
    rop *op = p->waiting.next;
    op_unlink(op);
    p->st.queued--;
    if (transmit(p, op, op->argc, op->argv, op->lens)) {
      p->st.errors++;
      op_abandon(p, op, NT_ESTORE);
    }
  }
}

/* The connection is gone: ops that were never sent fail as the pending ones did. */
static void fail_waiting(rp *p, int status) {
  while (p->waiting.next != &p->waiting) {
    rop *op = p->waiting.next;
    op_unlink(op);
    p->st.queued--;
    op_abandon(p, op, status);
  }
}

int nt_rp_send(rp *p, rop *op, int argc, const char **argv, const size_t *lens) {
  int r = issue(p, op, argc, argv, lens);
  if (r) {
    p->st.errors++;
    op_free(op);
  }
  return r;
}

int nt_rp_script(rp *p, rop *op, int id, int nkeys, int n, const char **argv,
                 const size_t *lens) {
  /* One block: argv pointers, lengths, then copies of the arguments, so a NOSCRIPT
   * retry can resend them after the caller's buffers are gone. */
  size_t total = 0;
  for (int i = 0; i < n; i++) total += (lens ? lens[i] : strlen(argv[i])) + 1;
  int argc = n + 3;
  char *blk = malloc(argc * (sizeof(char *) + sizeof(size_t)) + total);
  if (!blk) {
    op_free(op);
    return NT_ENOMEM;
  }
  op->argv = (const char **)blk;
  op->lens = (size_t *)(blk + argc * sizeof(char *));
  char *cur = (char *)(op->lens + argc);
  for (int i = 0; i < n; i++) {
    size_t l = lens ? lens[i] : strlen(argv[i]);
    memcpy(cur, argv[i], l);
    cur[l] = '\0';
    op->argv[i + 3] = cur;
    op->lens[i + 3] = l;
    cur += l + 1;
  }
  snprintf(op->nk, sizeof op->nk, "%d", nkeys);
  op->argv[0] = "EVALSHA";
  op->lens[0] = 7;
  op->argv[1] = p->sha[id];
  op->lens[1] = strlen(p->sha[id]);
  op->argv[2] = op->nk;
  op->lens[2] = strlen(op->nk);
  op->argc = argc;
  op->script = id;
  return nt_rp_send(p, op, argc, op->argv, op->lens);
}

void nt_rp_cmd(rp *p, int argc, const char **argv, const size_t *lens) {
  rop *op = nt_rp_op_new(p, NULL);
  if (op) nt_rp_send(p, op, argc, argv, lens);
}

/* NOSCRIPT: the server lost its script cache (failover, SCRIPT FLUSH). Load the script
 * again (same SHA1, so later calls find it) and resend this call with EVAL, once. */
static int retry_eval(rp *p, rop *op) {
  op->retried = 1;
  nt_rp_cmd(p, 3, (const char *[]){"SCRIPT", "LOAD", nt_presence_lua[op->script]}, NULL);
  op->argv[0] = "EVAL";
  op->lens[0] = 4;
  op->argv[1] = nt_presence_lua[op->script];
  op->lens[1] = strlen(op->argv[1]);
  return issue(p, op, op->argc, op->argv, op->lens);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv) {
  rop *op = priv;
  rp *p = op->p;
  redisReply *r = reply;
  op_unlink(op);
  p->inflight--;
  if (r) p->last_reply_ms = uv_now(p->loop);
  if (r && r->type == REDIS_REPLY_ERROR) {
    if (op->script >= 0 && !op->retried && !strncmp(r->str, "NOSCRIPT", 8) &&
        retry_eval(p, op) == 0)
      return;
    p->st.errors++;
    /* at most one line a second: a wrong password or an OOM Redis fails every call */
    uint64_t now = uv_now(p->loop);
    if (now - p->err_logged_at >= 1000 || !p->err_logged_at) {
      p->err_logged_at = now;
      nt_log_warn("redis command failed", "{s:s, s:s, s:I}", "command", op->cmd, "error",
                  r->str, "errors", (json_int_t)p->st.errors);
    }
    r = NULL;
  } else if (!r && !p->closing) {
    p->st.errors++;
  }
  if (op->fn) op->fn(p, op, r);
  if (op->cbkind != CB_NONE) op_fail(op, p->closing ? NT_ECLOSED : NT_ESTORE);
  op_free(op);
  if (reply && p->ac && !p->closing) pump(p, 0); /* not while hiredis frees the context */
}

int nt_rp_tkeys(const rp *p, const char *tenant, char *base, char *ck) {
  if (nt_key_tenant_base(base, NT_KEY_MAX, p->prefix, tenant) < 0) return NT_EINVAL;
  if (ck && nt_key_tenant(ck, NT_KEY_MAX, p->prefix, tenant, NT_KEY_CONNS, NULL) < 0)
    return NT_EINVAL;
  return 0;
}

/* ---------------------------------------------------------------- connection - */

static void on_retry(uv_timer_t *t);

static void schedule_retry(rp *p) {
  if (p->closing) return;
  p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
  if (p->backoff_ms > BACKOFF_MAX_MS) p->backoff_ms = BACKOFF_MAX_MS;
  uv_timer_start(&p->retry, on_retry, p->backoff_ms, 0);
}

static void on_retry(uv_timer_t *t) { start_connect(t->data); }

/* The connection is gone (refused, lost or dropped): report and retry. */
static void conn_lost(rp *p) {
  int was_up = p->state == RP_UP;
  p->state = RP_DOWN;
  p->inflight = 0;
  fail_waiting(p, p->closing ? NT_ECLOSED : NT_ESTORE);
  p->hb_busy = p->hb_wait = 0;
  if (p->closing) {
    maybe_free(p);
    return;
  }
  if (was_up || !p->down_logged) {
    nt_log_warn("redis disconnected", "{s:s, s:i}", "host", p->host, "port", p->port);
    p->down_logged = 1;
  }
  if (was_up && p->base.h.on_state) p->base.h.on_state(p->base.h.ud, 0);
  schedule_retry(p);
}

/* Abandons the connection; pending commands fail (their handlers see NULL). */
static void drop_conn(rp *p) {
  redisAsyncContext *ac = p->ac;
  if (!ac) return;
  int connected = (ac->c.flags & REDIS_CONNECTED) != 0;
  redisAsyncFree(ac); /* calls on_disconnect when it had connected */
  if (!connected) {
    p->ac = NULL;
    conn_lost(p);
  }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  rp *p = ac->data;
  p->ac = NULL;
  conn_lost(p);
}

void nt_rp_go_up(rp *p) {
  p->state = RP_UP;
  p->up_since = uv_now(p->loop);
  p->backoff_ms = 0;
  p->down_logged = 0;
  if (p->ever_up) p->st.reconnects++;
  p->ever_up = 1;
  nt_log_info("redis connected", "{s:s, s:i, s:I}", "host", p->host, "port", p->port,
              "connections", (json_int_t)p->conns.len);
  if (p->base.h.on_state) p->base.h.on_state(p->base.h.ud, 1);
}

static void on_init_reply(rp *p, rop *op, redisReply *r) {
  if (!r) { /* AUTH/SELECT refused or connection lost: start over later */
    if (p->ac && !p->closing) drop_conn(p);
    return;
  }
  int id = (int)(intptr_t)op->ctx;
  if (id == ROLE_CHECK && !(r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                            r->element[0]->type == REDIS_REPLY_STRING &&
                            !strcmp(r->element[0]->str, "master"))) {
    /* a replica (a demoted old primary, or sentinels not agreed yet): ask again */
    nt_log_warn("redis named by the sentinels is not the primary: asking again",
                "{s:s, s:i, s:s}", "host", p->host, "port", p->port, "role",
                r->type == REDIS_REPLY_ARRAY && r->elements && r->element[0]->str
                    ? r->element[0]->str : "?");
    if (p->ac && !p->closing) drop_conn(p);
    return;
  }
  if (id >= 0 && r->type == REDIS_REPLY_STRING)
    snprintf(p->sha[id], sizeof p->sha[id], "%s", r->str);
  if (--p->init_left > 0 || p->state != RP_INIT) return;
  if (!p->self_reaped) /* an earlier process with this node id may have left entries */
    nt_rp_self_reap(p);
  else
    nt_rp_heartbeat(p);
}

static void init_cmd(rp *p, int script_id, int argc, const char **argv) {
  rop *op = nt_rp_op_new(p, on_init_reply);
  if (!op) return;
  op->ctx = (void *)(intptr_t)script_id;
  p->init_left++;
  if (nt_rp_send(p, op, argc, argv, NULL)) p->init_left--;
}

static void on_connect(const redisAsyncContext *cac, int status) {
  rp *p = cac->data;
  uv_timer_stop(&p->retry);
  if (status != REDIS_OK) { /* hiredis frees the context after this callback */
    if (!p->down_logged)
      nt_log_warn("redis connect failed", "{s:s, s:i, s:s}", "host", p->host, "port", p->port,
                  "error", cac->errstr);
    p->down_logged = 1;
    p->ac = NULL;
    conn_lost(p);
    return;
  }
  p->state = RP_INIT;
  p->state_since = uv_now(p->loop);
  p->init_left = 0;
  char db[16];
  snprintf(db, sizeof db, "%d", p->db);
  if (p->pass && p->user) init_cmd(p, -1, 3, (const char *[]){"AUTH", p->user, p->pass});
  else if (p->pass) init_cmd(p, -1, 2, (const char *[]){"AUTH", p->pass});
  if (p->db) init_cmd(p, -1, 2, (const char *[]){"SELECT", db});
  if (p->sentinel) init_cmd(p, ROLE_CHECK, 1, (const char *[]){"ROLE"});
  for (int i = 0; i < NT_LUA_COUNT; i++)
    init_cmd(p, i, 3, (const char *[]){"SCRIPT", "LOAD", nt_presence_lua[i]});
}

static int poll_failed(const rp *p);
static void connect_host(rp *p);

/* With Sentinel every (re)connect starts by asking the sentinels where the primary is. */
static void start_connect(rp *p) {
  if (p->closing || p->ac || p->gai_busy || p->locating) return;
  if (!p->sentinel) return connect_host(p);
  p->locating = 1;
  p->state = RP_RESOLVING;
  nt_sentinel_locate(p->sentinel);
}

/* The sentinels' answer to a lookup, or a failover they announced (`switched`): a
 * connection to another address is dropped and the new primary connected at once. */
static void on_primary(void *ud, int status, const char *host, int port, int switched) {
  rp *p = ud;
  if (p->closing) return;
  if (!switched) {
    p->locating = 0;
    if (status) {
      p->state = RP_DOWN;
      schedule_retry(p);
      return;
    }
  }
  int same = !strcmp(p->host, host) && p->port == port;
  char *h = same ? NULL : strdup(host);
  if (h) {
    free(p->host);
    p->host = h;
    p->port = port;
  }
  if (!switched) return connect_host(p);
  if (p->ac) {
    if (same) return;
    nt_log_warn("redis primary moved: reconnecting", "{s:s, s:i}", "host", p->host, "port",
                p->port);
    drop_conn(p); /* synchronous: p->ac is NULL after it, a retry is scheduled */
  }
  if (p->locating || p->gai_busy || p->ac) return; /* an answer is on its way */
  uv_timer_stop(&p->retry);
  p->backoff_ms = 0;
  connect_host(p);
}

static void on_connect_check(uv_timer_t *t) {
  rp *p = t->data;
  if (p->state != RP_CONNECTING) {
    uv_timer_stop(t);
  } else if (poll_failed(p)) {
    uv_timer_stop(t);
    drop_conn(p); /* schedules the next attempt */
  }
}

static void do_connect(rp *p, const char *ip) {
  redisAsyncContext *ac = redisAsyncConnect(ip, p->port); /* numeric: no DNS here */
  if (!ac || ac->err || redisLibuvAttach(ac, p->loop) != REDIS_OK) {
    if (ac) redisAsyncFree(ac);
    p->state = RP_DOWN;
    schedule_retry(p);
    return;
  }
  ac->data = p;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  p->ac = ac;
  p->state = RP_CONNECTING;
  p->state_since = uv_now(p->loop);
  /* a refused connect goes unnoticed by the adapter (see poll_failed): look often */
  uv_timer_start(&p->retry, on_connect_check, 50, 50);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  rp *p = req->data;
  p->gai_busy = 0;
  char ip[64];
  nt_resolve_result(status, res, ip, sizeof ip);
  if (p->closing) {
    maybe_free(p);
    return;
  }
  if (!ip[0]) {
    if (!p->down_logged)
      nt_log_warn("redis host not resolved", "{s:s}", "host", p->host);
    p->down_logged = 1;
    p->state = RP_DOWN;
    schedule_retry(p);
    return;
  }
  do_connect(p, ip);
}

/* Resolves the host off the loop thread (uv_getaddrinfo) unless it is numeric, because
 * hiredis's own connect would call getaddrinfo on the loop. */
static void connect_host(rp *p) {
  if (p->closing || p->ac || p->gai_busy) return;
  if (nt_resolve_is_numeric(p->host)) {
    do_connect(p, p->host);
    return;
  }
  p->gai.data = p;
  p->state = RP_RESOLVING;
  if (nt_resolve_start(p->loop, &p->gai, on_resolved, p->host) == 0) {
    p->gai_busy = 1;
  } else {
    p->state = RP_DOWN;
    schedule_retry(p);
  }
}

/* hiredis 0.14's libuv adapter ignores poll errors: libuv stops the handle and reports
 * UV_EBADF (a refused connect, a reset socket) and hiredis is never told, so it would wait
 * forever. A stopped poll handle therefore means the socket failed. (hiredis always keeps
 * read or write interest while connecting or connected.) */
static int poll_failed(const rp *p) {
  const redisLibuvEvents *e = p->ac ? p->ac->ev.data : NULL;
  return e && !uv_is_active((const uv_handle_t *)&e->handle);
}

/* Every refresh: the heartbeat, and a watchdog for a Redis that accepted the connection
 * but stopped answering (a stalled server or a silent partition): hiredis has no timeouts
 * of its own. A Redis that still answers is busy, not stalled: during a connection storm
 * the node pipelines tens of thousands of scripts and the last one's reply comes seconds
 * after it was sent, while replies keep arriving. Reconnecting then would fail every
 * pending command and re-assert the whole mirror onto a Redis already at capacity. */
static void on_tick(uv_timer_t *t) {
  rp *p = t->data;
  uint64_t now = uv_now(p->loop);
  if (p->closing) {
    if (p->ac && now - p->closing_since > 2000) drop_conn(p);
    return;
  }
  if (p->state == RP_UP || (p->state == RP_INIT && p->hb_wait)) nt_rp_heartbeat(p);
  nt_rp_departed_tick(p);
  if (poll_failed(p)) {
    drop_conn(p);
    return;
  }
  rop *oldest = p->pending.next != &p->pending ? p->pending.next : NULL;
  if ((p->state == RP_CONNECTING && now - p->state_since > p->op_timeout_ms) ||
      (oldest && now - (oldest->sent_ms > p->last_reply_ms ? oldest->sent_ms : p->last_reply_ms) >
                     p->op_timeout_ms)) {
    nt_log_warn("redis not answering: reconnecting", "{s:s, s:i}", "host", p->host, "port",
                p->port);
    drop_conn(p);
  }
}

/* ---------------------------------------------------------------- operations - */

static int valid4(const char *a, const char *b, const char *c, const char *d) {
  return nt_id_valid(a) && nt_id_valid(b) && (!c || nt_id_valid(c)) &&
         (!d || nt_id_valid(d));
}

/* Members from a reply array of strings; NULL entries for non-strings are skipped. */
static size_t reply_strings(const redisReply *r, const char ***out) {
  *out = NULL;
  if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements) return 0;
  const char **v = malloc(r->elements * sizeof *v);
  if (!v) return 0;
  size_t n = 0;
  for (size_t i = 0; i < r->elements; i++)
    if (r->element[i]->type == REDIS_REPLY_STRING) v[n++] = r->element[i]->str;
  *out = v;
  return n;
}

/* {transition, first page of members, next cursor, total, version} (nt_presence_lua.c). */
static void on_join(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
      r->element[2]->type != REDIS_REPLY_STRING || r->element[3]->type != REDIS_REPLY_INTEGER ||
      r->element[4]->type != REDIS_REPLY_INTEGER)
    return; /* op_fail follows */
  int tr = r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
  if (tr) p->st.transitions++;
  nt_rp_mirror_confirm(p, op->id, op->room);
  const char **m;
  size_t n = reply_strings(r->element[1], &m);
  const char *cur = r->element[2]->str;
  nt_presence_joined j = {tr, m, n, strcmp(cur, "0") ? cur : NULL,
                          (uint64_t)(r->element[3]->integer > 0 ? r->element[3]->integer : 0),
                          (uint64_t)(r->element[4]->integer > 0 ? r->element[4]->integer : 0)};
  op->cbkind = CB_NONE;
  if (op->cb.join) op->cb.join(op->ud, 0, &j);
  free(m);
}

static rop *user_op(rp *p, rop_fn fn, int kind, void *cb, void *ud) {
  rop *op = nt_rp_op_new(p, fn);
  if (!op) return NULL;
  if (cb) {
    op->cbkind = kind;
    memcpy(&op->cb, &cb, sizeof cb);
  }
  op->ud = ud;
  return op;
}

static int r_join(nt_presence *base, const char *tenant, const char *room, const char *user,
                  const char *conn_id, nt_presence_join_cb cb, void *ud) {
  rp *p = (rp *)base;
  if (p->closing) return NT_ECLOSED;
  if (!valid4(tenant, room, user, conn_id)) return NT_EINVAL;
  p->st.ops++;
  rp_conn *c = nt_rp_mirror_ensure(p, conn_id, tenant, user, NULL, NULL);
  if (!c || nt_rp_mirror_add_room(p, c, room) < 0) return NT_ENOMEM;
  nt_rp_departed_del(p, tenant, room, user); /* back before anyone was told it left */
  char b[NT_KEY_MAX], ck[NT_KEY_MAX];
  if (!nt_rp_up(p) || nt_rp_tkeys(p, tenant, b, ck)) {
    p->st.errors++;
    return NT_ESTORE;
  }
  rop *op = user_op(p, on_join, CB_JOIN, (void *)cb, ud);
  if (!op) return NT_ENOMEM;
  if (nt_rp_op_ids(op, NULL, conn_id, room)) {
    op_free(op);
    return NT_ENOMEM;
  }
  const char *a[] = {ck, b, conn_id, user, room, p->node};
  return nt_rp_script(p, op, NT_LUA_JOIN, 1, 6, a, NULL);
}

static void on_leave(rp *p, rop *op, redisReply *r) {
  if (!r && op->room[0]) nt_rp_departed_add(p, op->tenant, op->room, op->id);
  if (!r || r->type != REDIS_REPLY_INTEGER) return;
  if (r->integer == 1) p->st.transitions++;
  op->cbkind = CB_NONE;
  if (op->cb.leave) op->cb.leave(op->ud, 0, r->integer == 1);
}

static int r_leave(nt_presence *base, const char *tenant, const char *room, const char *user,
                   const char *conn_id, nt_presence_leave_cb cb, void *ud) {
  rp *p = (rp *)base;
  if (p->closing) return NT_ECLOSED;
  if (!valid4(tenant, room, user, conn_id)) return NT_EINVAL;
  p->st.ops++;
  rp_conn *c = nt_rp_conn(p, conn_id);
  int known = 0; /* the cluster heard of the membership: its end must be heard too */
  if (c) {
    known = nt_rp_mirror_del_room(p, c, room);
    if (!c->nrooms && !c->registered) nt_rp_mirror_drop(p, c);
  }
  char b[NT_KEY_MAX], ck[NT_KEY_MAX];
  if (!nt_rp_up(p) || nt_rp_tkeys(p, tenant, b, ck)) {
    if (known) nt_rp_departed_add(p, tenant, room, user);
    p->st.errors++;
    return NT_ESTORE;
  }
  rop *op = user_op(p, on_leave, CB_LEAVE, (void *)cb, ud);
  if (!op) return NT_ENOMEM;
  if (known && nt_rp_op_ids(op, tenant, user, room)) { /* recorded if the leave fails */
    op_free(op);
    return NT_ENOMEM;
  }
  const char *a[] = {ck, b, conn_id, room, p->node};
  return nt_rp_script(p, op, NT_LUA_LEAVE, 1, 5, a, NULL);
}

static void on_members(rp *p, rop *op, redisReply *r) {
  (void)p;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_INTEGER)
    return; /* op_fail follows */
  const char **m;
  size_t n = reply_strings(r->element[1], &m);
  const char *next = r->element[0]->str;
  nt_presence_page pg = {m, n, strcmp(next, "0") ? next : NULL,
                         (uint64_t)(r->element[2]->integer > 0 ? r->element[2]->integer : 0)};
  op->cbkind = CB_NONE;
  if (op->cb.members) op->cb.members(op->ud, 0, &pg);
  free(m);
}

static int r_members(nt_presence *base, const char *tenant, const char *room,
                     const char *cursor, size_t limit, nt_presence_members_cb cb, void *ud) {
  rp *p = (rp *)base;
  if (p->closing) return NT_ECLOSED;
  if (!nt_id_valid(tenant) || (room && !nt_id_valid(room)) || !cb ||
      nt_presence_page_args_ok(cursor, limit))
    return NT_EINVAL;
  p->st.ops++;
  char b[NT_KEY_MAX], ck[NT_KEY_MAX], what[NT_ID_MAX + 16], count[24];
  if (!nt_rp_up(p) || nt_rp_tkeys(p, tenant, b, ck)) {
    p->st.errors++;
    return NT_ESTORE;
  }
  if (room) snprintf(what, sizeof what, NT_KEY_ROOMU ":%s", room);
  else snprintf(what, sizeof what, NT_KEY_ONLINE);
  snprintf(count, sizeof count, "%zu", limit);
  rop *op = user_op(p, on_members, CB_MEMBERS, (void *)cb, ud);
  if (!op) return NT_ENOMEM;
  const char *a[] = {ck, b, what, cursor ? cursor : "0", count};
  return nt_rp_script(p, op, NT_LUA_MEMBERS, 1, 5, a, NULL);
}

static void on_done(rp *p, rop *op, redisReply *r) {
  if (!r) return;
  op->cbkind = CB_NONE;
  if (op->cb.done) op->cb.done(op->ud, 0);
}

static int r_conn_add(nt_presence *base, const nt_conn_info *in, nt_presence_done_cb cb,
                      void *ud) {
  rp *p = (rp *)base;
  if (p->closing) return NT_ECLOSED;
  if (!in || !valid4(in->conn_id, in->tenant, in->user, NULL)) return NT_EINVAL;
  p->st.ops++;
  rp_conn *c = nt_rp_mirror_ensure(p, in->conn_id, in->tenant, in->user, in->source_ip,
                                   in->user_agent);
  if (!c || nt_rp_mirror_set_client(p, &c, in->source_ip, in->user_agent)) return NT_ENOMEM;
  c->connected_at_ms = in->connected_at_ms;
  int64_t after = in->last_active_ms - in->connected_at_ms;
  c->active_after_ms = after < 0 ? 0 : after > UINT32_MAX ? UINT32_MAX : (uint32_t)after;
  c->registered = 1;
  char b[NT_KEY_MAX], ck[NT_KEY_MAX];
  if (!nt_rp_up(p) || nt_rp_tkeys(p, in->tenant, b, ck)) {
    p->st.errors++;
    return NT_ESTORE;
  }
  nt_rp_put_record(p, c);
  rop *op = user_op(p, on_done, CB_DONE, (void *)cb, ud);
  if (!op) return NT_ENOMEM;
  const char *a[] = {ck, b, in->conn_id, in->user, p->node};
  return nt_rp_script(p, op, NT_LUA_CONN_ADD, 1, 5, a, NULL);
}

static void on_conn_removed(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return;
  nt_rp_report_off(p, op->tenant, r->element[1]);
  int found = r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
  op->cbkind = CB_NONE;
  if (op->cb.done) op->cb.done(op->ud, found ? 0 : NT_ENOTFOUND);
}

static int r_conn_remove(nt_presence *base, const char *tenant, const char *conn_id,
                         nt_presence_done_cb cb, void *ud) {
  rp *p = (rp *)base;
  if (p->closing) return NT_ECLOSED;
  if (!valid4(tenant, conn_id, NULL, NULL)) return NT_EINVAL;
  p->st.ops++;
  rp_conn *c = nt_rp_conn(p, conn_id);
  for (size_t i = 0; c && !nt_rp_up(p) && i < c->nrooms; i++) /* rooms it did not leave */
    if (rp_room_confirmed(c->rooms[i]))
      nt_rp_departed_add(p, tenant, rp_room_name(c->rooms[i]), rp_conn_user(c));
  if (c) nt_rp_mirror_drop(p, c);
  char b[NT_KEY_MAX], ck[NT_KEY_MAX], rk[NT_KEY_MAX];
  if (!nt_rp_up(p) || nt_rp_tkeys(p, tenant, b, ck) ||
      nt_key_conn(rk, sizeof rk, p->prefix, conn_id) < 0) {
    p->st.errors++;
    return NT_ESTORE;
  }
  nt_rp_cmd(p, 2, (const char *[]){"DEL", rk}, NULL);
  rop *op = user_op(p, on_conn_removed, CB_DONE, (void *)cb, ud);
  if (!op) return NT_ENOMEM;
  if (nt_rp_op_ids(op, tenant, NULL, NULL)) {
    op_free(op);
    return NT_ENOMEM;
  }
  const char *a[] = {ck, b, conn_id, p->node};
  return nt_rp_script(p, op, NT_LUA_CONN_REMOVE, 1, 4, a, NULL);
}

static void on_conn_get(rp *p, rop *op, redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY) return;
  op->cbkind = CB_NONE;
  if (!op->cb.conn) return; /* failed by destroy already */
  if (!r->elements) {
    op->cb.conn(op->ud, NT_ENOTFOUND, NULL);
    return;
  }
  nt_conn_info info = {op->id, "", "", "", "", "", 0, 0};
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
    if (!k || !v) continue;
    if (!strcmp(k, "tenant")) info.tenant = v;
    else if (!strcmp(k, "user")) info.user = v;
    else if (!strcmp(k, "node")) info.node = v;
    else if (!strcmp(k, "sourceIp")) info.source_ip = v;
    else if (!strcmp(k, "userAgent")) info.user_agent = v;
    else if (!strcmp(k, "connectedAt")) info.connected_at_ms = strtoll(v, NULL, 10);
    else if (!strcmp(k, "lastActiveAt")) info.last_active_ms = strtoll(v, NULL, 10);
  }
  op->cb.conn(op->ud, 0, &info);
}

static int r_conn_get(nt_presence *base, const char *conn_id, nt_presence_conn_cb cb,
                      void *ud) {
  rp *p = (rp *)base;
  if (p->closing) return NT_ECLOSED;
  char k[NT_KEY_MAX];
  if (!cb || nt_key_conn(k, sizeof k, p->prefix, conn_id) < 0) return NT_EINVAL;
  p->st.ops++;
  if (!nt_rp_up(p)) {
    p->st.errors++;
    return NT_ESTORE;
  }
  rop *op = user_op(p, on_conn_get, CB_CONN, (void *)cb, ud);
  if (!op) return NT_ENOMEM;
  if (nt_rp_op_ids(op, NULL, conn_id, NULL)) {
    op_free(op);
    return NT_ENOMEM;
  }
  return nt_rp_send(p, op, 2, (const char *[]){"HGETALL", k}, NULL);
}

static int r_connected(nt_presence *base) { return nt_rp_up((rp *)base); }

static void r_stats(nt_presence *base, nt_presence_stats *out) { *out = ((rp *)base)->st; }

/* ---------------------------------------------------------------- destroy ---- */

static void on_timer_closed(uv_handle_t *h) {
  rp *p = h->data;
  p->timers_open--;
  maybe_free(p);
}

static void free_setup(rp *p) {
  free(p->host);
  free(p->user);
  free(p->pass);
  free(p);
}

/* Frees the object once the connection, the resolver and the timers are all gone. The
 * tick timer lives until the connection is gone: it bounds a graceful disconnect. */
static void maybe_free(rp *p) {
  if (!p->closing || p->in_destroy || p->ac || p->gai_busy) return;
  if (!uv_is_closing((uv_handle_t *)&p->tick)) uv_close((uv_handle_t *)&p->tick, on_timer_closed);
  if (p->timers_open > 0) return;
  nt_rp_mirror_free(p);
  free_setup(p);
}

static void r_destroy(nt_presence *base) {
  rp *p = (rp *)base;
  if (p->closing) return;
  int was_up = nt_rp_up(p);
  p->closing = 1;
  p->in_destroy = 1;
  p->closing_since = uv_now(p->loop);
  for (rop *op = p->pending.next; op != &p->pending; op = op->next)
    op_fail(op, NT_ECLOSED);
  for (rop *op = p->waiting.next; op != &p->waiting; op = op->next)
    op_fail(op, NT_ECLOSED);
  pump(p, 1); /* what was asked before the end still goes out, as it always did */
  if (was_up) {
    /* Leaving cleanly: with nothing left in Redis, drop our liveness record; otherwise
     * age it so a survivor reaps the rest on its next refresh. */
    p->closing = 0; /* let these last commands through */
    if (p->conns.len == 0) {
      nt_rp_cmd(p, 3, (const char *[]){"ZREM", p->k_live, p->node}, NULL);
      nt_rp_cmd(p, 2, (const char *[]){"DEL", p->k_tenants}, NULL);
    } else {
      nt_rp_cmd(p, 4, (const char *[]){"ZADD", p->k_live, "0", p->node}, NULL);
    }
    p->closing = 1;
    redisAsyncDisconnect(p->ac); /* after the pending replies */
  } else if (p->ac) {
    drop_conn(p);
  }
  if (p->gai_busy) uv_cancel((uv_req_t *)&p->gai);
  nt_sentinel_free(p->sentinel); /* no answer after this */
  p->sentinel = NULL;
  p->locating = 0;
  uv_timer_stop(&p->retry);
  uv_close((uv_handle_t *)&p->retry, on_timer_closed);
  p->in_destroy = 0;
  maybe_free(p);
}

/* ---------------------------------------------------------------- setup ------ */

/* Copies [s, e) percent-decoded (user info may be URL-encoded); NULL when malformed. */
static char *dup_decoded(const char *s, const char *e) {
  size_t cap = (size_t)(e - s) + 1;
  char *out = malloc(cap);
  if (out && nt_pct_decode(s, cap - 1, out, cap, 0) < 0) {
    free(out);
    out = NULL;
  }
  return out;
}

/* redis://[[user]:password@]host[:port][/db]; "host:port" alone is accepted too. */
static int parse_url(rp *p, const char *url) {
  const char *s = url;
  if (!strncmp(s, "redis://", 8)) s += 8;
  else if (strstr(s, "://")) return NT_EINVAL; /* rediss:// (TLS) is not supported */
  const char *end = s + strcspn(s, "?#");
  const char *at = NULL;
  for (const char *q = s; q < end; q++)
    if (*q == '@') at = q;
  if (at) {
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (colon) {
      if (colon > s && !(p->user = dup_decoded(s, colon))) return NT_EINVAL;
      p->pass = dup_decoded(colon + 1, at);
    } else {
      p->pass = dup_decoded(s, at);
    }
    if (!p->pass) return NT_EINVAL;
    s = at + 1;
  }
  const char *slash = memchr(s, '/', (size_t)(end - s));
  const char *hend = slash ? slash : end, *port = NULL;
  if (*s == '[') {
    const char *rb = memchr(s, ']', (size_t)(hend - s));
    if (!rb) return NT_EINVAL;
    p->host = dup_decoded(s + 1, rb);
    if (rb + 1 < hend && rb[1] == ':') port = rb + 2;
  } else {
    const char *colon = memchr(s, ':', (size_t)(hend - s));
    p->host = dup_decoded(s, colon ? colon : hend);
    if (colon) port = colon + 1;
  }
  if (!p->host || !p->host[0]) return NT_EINVAL;
  p->port = 6379;
  if (port) {
    char *pe;
    long v = strtol(port, &pe, 10);
    if (pe != hend || v <= 0 || v > 65535) return NT_EINVAL;
    p->port = (int)v;
  }
  if (slash && slash + 1 < end) {
    char *de;
    long v = strtol(slash + 1, &de, 10);
    if (de != end || v < 0 || v > 1000000) return NT_EINVAL;
    p->db = (int)v;
  }
  return 0;
}

static const nt_presence_vtab redis_vtab = {
    .join = r_join,
    .leave = r_leave,
    .members = r_members,
    .conn_add = r_conn_add,
    .conn_remove = r_conn_remove,
    .conn_get = r_conn_get,
    .connected = r_connected,
    .stats = r_stats,
    .destroy = r_destroy,
};

int nt_presence_redis_open(uv_loop_t *loop, const nt_presence_redis_opts *o,
                           const nt_presence_handler *h, nt_presence **out) {
  const char *prefix = o && o->prefix ? o->prefix : "natter:", *node_id = o ? o->node_id : NULL;
  if (!loop || !o || (!o->url && !o->sentinels) || !o->sentinels != !o->master ||
      !nt_id_valid(node_id) || nt_key_prefix_check(prefix) || o->node_ttl_s <= 0 ||
      o->refresh_s <= 0)
    return NT_EINVAL;
  double node_ttl_s = o->node_ttl_s, refresh_s = o->refresh_s;
  rp *p = calloc(1, sizeof *p);
  if (!p) return NT_ENOMEM;
  p->base.vt = &redis_vtab;
  if (h) p->base.h = *h;
  p->loop = loop;
  p->pending.next = p->pending.prev = &p->pending;
  p->waiting.next = p->waiting.prev = &p->waiting;
  nt_rp_mirror_init(p);
  snprintf(p->prefix, sizeof p->prefix, "%s", prefix);
  snprintf(p->node, sizeof p->node, "%s", node_id);
  if (refresh_s >= node_ttl_s) {
    nt_log_error("node refresh interval must be shorter than the node ttl", "{s:f, s:f}",
                 "node_refresh_s", refresh_s, "node_ttl_s", node_ttl_s);
    free(p);
    return NT_EINVAL;
  }
  p->ttl_ms = (uint64_t)(node_ttl_s * 1000);
  p->refresh_ms = (uint64_t)(refresh_s * 1000);
  if (p->refresh_ms < 10) p->refresh_ms = 10;
  /* A reply slower than this means Redis is stalled or unreachable: reconnect. Never
   * below the ttl, so a briefly busy Redis is not mistaken for a dead one. */
  p->op_timeout_ms = p->ttl_ms > 2000 ? p->ttl_ms : 2000;
  /* A claimer that has not finished a reap by then died: another survivor takes over. */
  p->reclaim_ms = 5 * p->ttl_ms > 15000 ? 5 * p->ttl_ms : 15000;
  int r = o->url ? parse_url(p, o->url) : 0;
  if (!r && (nt_key_cluster(p->k_live, NT_KEY_MAX, prefix, NT_KEY_LIVE) < 0 ||
             nt_key_cluster(p->k_reaping, NT_KEY_MAX, prefix, NT_KEY_REAPING) < 0 ||
             nt_key_cluster(p->k_reaped, NT_KEY_MAX, prefix, NT_KEY_REAPED) < 0 ||
             nt_key_node(p->k_tenants, NT_KEY_MAX, prefix, NT_KEY_TENANTS, node_id) < 0))
    r = NT_EINVAL;
  if (!r && o->sentinels) { /* the sentinels name the host */
    free(p->host);
    p->host = strdup("");
    p->port = 0;
    nt_sentinel_cfg sc = {o->sentinels, o->master, o->sentinel_user, o->sentinel_pass};
    nt_sentinel_handler sh = {.on_primary = on_primary, .ud = p};
    r = p->host ? nt_sentinel_new(loop, &sc, &sh, &p->sentinel) : NT_ENOMEM;
  }
  if (r) {
    free_setup(p);
    return r;
  }
  uv_timer_init(loop, &p->tick);
  uv_timer_init(loop, &p->retry);
  p->tick.data = p->retry.data = p;
  p->timers_open = 2;
  uv_timer_start(&p->tick, on_tick, p->refresh_ms, p->refresh_ms);
  start_connect(p);
  *out = &p->base;
  return 0;
}

int nt_presence_redis_new(uv_loop_t *loop, const char *url, const char *prefix,
                          const char *node_id, double node_ttl_s, double refresh_s,
                          const nt_presence_handler *h, nt_presence **out) {
  if (!url) return NT_EINVAL;
  nt_presence_redis_opts o = {.url = url, .prefix = prefix, .node_id = node_id,
                              .node_ttl_s = node_ttl_s, .refresh_s = refresh_s};
  return nt_presence_redis_open(loop, &o, h, out);
}
