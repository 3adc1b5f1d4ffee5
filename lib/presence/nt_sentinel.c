/* nt_sentinel: the Redis Sentinel client — primary lookup and +switch-master follow-up
 * (hiredis async on libuv; see nt_sentinel.h). */
#include "nt_sentinel.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_log.h"
#include "nt_resolve.h"

#define MAX_SENTINELS 16
#define ATTEMPT_MS 1000   /* one sentinel's time to connect and answer */
#define CHECK_MS 50       /* poll checks while connecting (see link_poll_failed) */
#define SUB_CHECK_MS 1000 /* ...and while subscribed */
#define SUB_RETRY_MS 500  /* before the subscription moves to the next sentinel */

typedef struct saddr {
  char host[256];
  int port;
} saddr;

enum { L_LOOKUP, L_SUB };

/* One connection to a sentinel: the lookup's (short-lived) or the subscription's. */
typedef struct slink {
  nt_sentinel *s;
  int kind;
  int idx;        /* sentinel in use */
  int tried;      /* lookup: sentinels asked in this round */
  int busy;       /* lookup: a round is running */
  int subscribed; /* sub: SUBSCRIBE confirmed */
  redisAsyncContext *ac;
  uv_getaddrinfo_t gai;
  int gai_busy;
  uv_timer_t timer; /* connect checks and deadline, retry delay, deferred failure */
  uint64_t since;
} slink;

struct nt_sentinel {
  uv_loop_t *loop;
  saddr addr[MAX_SENTINELS];
  int n;
  char *master, *user, *pass;
  nt_sentinel_handler h;
  slink lk, sub;
  int closing, handles_open, round_fail_logged, sub_fail_logged;
};

static void link_try(slink *l);
static void link_failed(slink *l, const char *why);

/* ---------------------------------------------------------------- addresses -- */

static int parse_one(const char *s, size_t len, saddr *out) {
  while (len && (*s == ' ' || *s == '\t')) s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
  const char *h = s, *port = NULL;
  size_t hl;
  if (len && *s == '[') {
    const char *rb = memchr(s, ']', len);
    if (!rb) return NT_EINVAL;
    h = s + 1;
    hl = (size_t)(rb - h);
    if (rb + 1 < s + len) {
      if (rb[1] != ':') return NT_EINVAL;
      port = rb + 2;
    }
  } else {
    const char *colon = memchr(s, ':', len);
    hl = colon ? (size_t)(colon - s) : len;
    if (colon) port = colon + 1;
  }
  if (!hl || hl >= sizeof out->host) return NT_EINVAL;
  memcpy(out->host, h, hl);
  out->host[hl] = '\0';
  out->port = 26379;
  if (port) {
    size_t pl = (size_t)(s + len - port);
    char buf[8], *end;
    if (!pl || pl >= sizeof buf) return NT_EINVAL;
    memcpy(buf, port, pl);
    buf[pl] = '\0';
    long v = strtol(buf, &end, 10);
    if (*end || v <= 0 || v > 65535) return NT_EINVAL;
    out->port = (int)v;
  }
  return 0;
}

static int parse_addrs(const char *addrs, saddr *out, int *n) {
  *n = 0;
  if (!addrs || !*addrs) return NT_EINVAL;
  for (const char *s = addrs;;) {
    size_t len = strcspn(s, ",");
    saddr tmp;
    if (*n == MAX_SENTINELS || parse_one(s, len, out ? &out[*n] : &tmp)) return NT_EINVAL;
    (*n)++;
    if (!s[len]) return 0;
    s += len + 1;
  }
}

int nt_sentinel_check_addrs(const char *addrs) {
  int n;
  return parse_addrs(addrs, NULL, &n);
}

/* ---------------------------------------------------------------- links ------ */

static void report(nt_sentinel *s, int status, const char *host, int port, int switched) {
  if (!s->closing && s->h.on_primary) s->h.on_primary(s->h.ud, status, host, port, switched);
}

/* Leaves the connection (its pending callbacks see l->ac != ac and return). */
static void link_drop_ac(slink *l) {
  redisAsyncContext *ac = l->ac;
  l->ac = NULL;
  if (ac) redisAsyncFree(ac);
}

/* hiredis 0.14's libuv adapter ignores poll errors (a refused connect, a reset socket):
 * libuv stops the handle and hiredis is never told. A stopped handle means a dead socket. */
static int link_poll_failed(const slink *l) {
  const redisLibuvEvents *e = l->ac ? l->ac->ev.data : NULL;
  return e && !uv_is_active((const uv_handle_t *)&e->handle);
}

static void on_link_timer(uv_timer_t *t) {
  slink *l = t->data;
  if (!l->ac) { /* a retry delay, or a failure deferred out of the caller's call */
    if (l->kind == L_SUB || l->busy) link_try(l);
    return;
  }
  if (link_poll_failed(l)) link_failed(l, "connection failed");
  else if (!l->subscribed && uv_now(l->s->loop) - l->since > ATTEMPT_MS)
    link_failed(l, "no answer in time");
}

static void on_fail_later(uv_timer_t *t) {
  link_failed(t->data, "connection failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  slink *l = ac->data;
  if (l->ac != ac) return;
  l->ac = NULL;
  link_failed(l, "disconnected");
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv) {
  slink *l = priv;
  redisReply *r = reply;
  if (l->ac != ac || !r || r->type != REDIS_REPLY_ERROR) return;
  nt_log_warn("redis sentinel refused AUTH", "{s:s, s:i, s:s}", "host",
              l->s->addr[l->idx].host, "port", l->s->addr[l->idx].port, "error", r->str);
  link_failed(l, "AUTH refused");
}

static void on_lookup(redisAsyncContext *ac, void *reply, void *priv) {
  slink *l = priv;
  nt_sentinel *s = l->s;
  redisReply *r = reply;
  if (l->ac != ac || !r) return;
  char host[256];
  long port = 0;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
      r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
      r->element[0]->len < sizeof host) {
    snprintf(host, sizeof host, "%s", r->element[0]->str);
    port = strtol(r->element[1]->str, NULL, 10);
  }
  if (port <= 0 || port > 65535) {
    link_failed(l, r->type == REDIS_REPLY_ERROR ? r->str : "master unknown to this sentinel");
    return;
  }
  link_drop_ac(l); /* hiredis frees it after this callback */
  uv_timer_stop(&l->timer);
  l->busy = 0;
  s->round_fail_logged = 0;
  report(s, 0, host, (int)port, 0);
}

static void on_switch(redisAsyncContext *ac, void *reply, void *priv) {
  slink *l = priv;
  nt_sentinel *s = l->s;
  redisReply *r = reply;
  if (l->ac != ac || !r) return;
  if (r->type == REDIS_REPLY_ERROR) {
    link_failed(l, r->str);
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
      r->element[0]->type != REDIS_REPLY_STRING)
    return;
  if (!strcmp(r->element[0]->str, "subscribe")) {
    l->subscribed = 1;
    s->sub_fail_logged = 0;
    uv_timer_start(&l->timer, on_link_timer, SUB_CHECK_MS, SUB_CHECK_MS);
    nt_log_debug("subscribed to +switch-master", "{s:s, s:i}", "host", s->addr[l->idx].host,
                 "port", s->addr[l->idx].port);
    return;
  }
  if (strcmp(r->element[0]->str, "message") || r->element[2]->type != REDIS_REPLY_STRING) return;
  /* "<master> <old ip> <old port> <new ip> <new port>" */
  char name[256], oip[256], nip[256];
  int oport, nport;
  if (r->element[2]->len >= sizeof name ||
      sscanf(r->element[2]->str, "%255s %255s %d %255s %d", name, oip, &oport, nip, &nport) != 5 ||
      strcmp(name, s->master) || nport <= 0 || nport > 65535)
    return;
  nt_log_info("redis sentinel: primary switched", "{s:s, s:s, s:i, s:s, s:i}", "master", name,
              "from_host", oip, "from_port", oport, "to_host", nip, "to_port", nport);
  report(s, 0, nip, nport, 1);
}

static void on_connect(const redisAsyncContext *cac, int status) {
  slink *l = cac->data;
  nt_sentinel *s = l->s;
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  if (l->ac != ac) return;
  if (status != REDIS_OK) { /* hiredis frees the context after this callback */
    l->ac = NULL;
    link_failed(l, cac->errstr);
    return;
  }
  if (s->pass && s->user)
    redisAsyncCommand(ac, on_auth, l, "AUTH %s %s", s->user, s->pass);
  else if (s->pass)
    redisAsyncCommand(ac, on_auth, l, "AUTH %s", s->pass);
  if (l->kind == L_LOOKUP)
    redisAsyncCommand(ac, on_lookup, l, "SENTINEL get-master-addr-by-name %s", s->master);
  else
    redisAsyncCommand(ac, on_switch, l, "SUBSCRIBE +switch-master");
}

static void link_connect(slink *l, const char *ip) {
  nt_sentinel *s = l->s;
  redisAsyncContext *ac = redisAsyncConnect(ip, s->addr[l->idx].port); /* numeric */
  if (!ac || ac->err || redisLibuvAttach(ac, s->loop) != REDIS_OK) {
    if (ac) redisAsyncFree(ac);
    uv_timer_start(&l->timer, on_fail_later, 0, 0); /* never inside the caller's call */
    return;
  }
  ac->data = l;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  l->ac = ac;
  l->subscribed = 0;
  l->since = uv_now(s->loop);
  uv_timer_start(&l->timer, on_link_timer, CHECK_MS, CHECK_MS);
}

static void maybe_free(nt_sentinel *s);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  slink *l = req->data;
  l->gai_busy = 0;
  char ip[64];
  nt_resolve_result(status, res, ip, sizeof ip);
  if (l->s->closing) return maybe_free(l->s);
  if (!ip[0]) return link_failed(l, "host not resolved");
  link_connect(l, ip);
}

/* Connects to sentinel l->idx (resolving its name off the loop). */
static void link_try(slink *l) {
  nt_sentinel *s = l->s;
  if (s->closing || l->ac || l->gai_busy) return;
  const char *host = s->addr[l->idx].host;
  if (nt_resolve_is_numeric(host)) return link_connect(l, host);
  l->gai.data = l;
  l->since = uv_now(s->loop);
  if (nt_resolve_start(s->loop, &l->gai, on_resolved, host) == 0)
    l->gai_busy = 1;
  else
    uv_timer_start(&l->timer, on_fail_later, 0, 0);
}

/* This sentinel did not do: the lookup asks the next one (or reports the round failed),
 * the subscription moves to the next one after a pause. */
static void link_failed(slink *l, const char *why) {
  nt_sentinel *s = l->s;
  link_drop_ac(l);
  uv_timer_stop(&l->timer);
  if (s->closing) return maybe_free(s);
  const saddr *a = &s->addr[l->idx];
  nt_log_debug(l->kind == L_LOOKUP ? "redis sentinel lookup failed" : "redis sentinel subscription lost",
               "{s:s, s:i, s:s}", "host", a->host, "port", a->port, "error", why ? why : "");
  l->idx = (l->idx + 1) % s->n;
  if (l->kind == L_SUB) {
    if (l->subscribed || !s->sub_fail_logged)
      nt_log_warn("redis sentinel subscription lost: trying the next sentinel",
                  "{s:s, s:i, s:s}", "host", a->host, "port", a->port, "error", why ? why : "");
    s->sub_fail_logged = 1;
    l->subscribed = 0;
    uv_timer_start(&l->timer, on_link_timer, SUB_RETRY_MS, 0);
    return;
  }
  if (!l->busy) return;
  if (++l->tried < s->n) return link_try(l);
  l->busy = 0;
  if (!s->round_fail_logged)
    nt_log_warn("no redis sentinel named the primary", "{s:s, s:i}", "master", s->master,
                "sentinels", s->n);
  s->round_fail_logged = 1;
  report(s, NT_ESTORE, NULL, 0, 0);
}

/* ---------------------------------------------------------------- lifecycle -- */

void nt_sentinel_locate(nt_sentinel *s) {
  if (!s || s->closing || s->lk.busy) return;
  s->lk.busy = 1;
  s->lk.tried = 0;
  link_try(&s->lk);
}

static void free_now(nt_sentinel *s) {
  free(s->master);
  free(s->user);
  free(s->pass);
  free(s);
}

static void maybe_free(nt_sentinel *s) {
  if (s->closing && !s->handles_open && !s->lk.gai_busy && !s->sub.gai_busy) free_now(s);
}

static void on_timer_closed(uv_handle_t *h) {
  slink *l = h->data;
  l->s->handles_open--;
  maybe_free(l->s);
}

void nt_sentinel_free(nt_sentinel *s) {
  if (!s || s->closing) return;
  s->closing = 1;
  slink *links[2] = {&s->lk, &s->sub};
  for (int i = 0; i < 2; i++) {
    link_drop_ac(links[i]);
    if (links[i]->gai_busy) uv_cancel((uv_req_t *)&links[i]->gai);
    uv_close((uv_handle_t *)&links[i]->timer, on_timer_closed);
  }
}

int nt_sentinel_new(uv_loop_t *loop, const nt_sentinel_cfg *cfg, const nt_sentinel_handler *h,
                    nt_sentinel **out) {
  if (!loop || !cfg || !cfg->master || !*cfg->master || strpbrk(cfg->master, " \r\n") ||
      strlen(cfg->master) > 200)
    return NT_EINVAL;
  nt_sentinel *s = calloc(1, sizeof *s);
  if (!s) return NT_ENOMEM;
  if (parse_addrs(cfg->addrs, s->addr, &s->n)) {
    free(s);
    return NT_EINVAL;
  }
  s->loop = loop;
  if (h) s->h = *h;
  s->master = strdup(cfg->master);
  s->user = cfg->user ? strdup(cfg->user) : NULL;
  s->pass = cfg->pass ? strdup(cfg->pass) : NULL;
  if (!s->master || (cfg->user && !s->user) || (cfg->pass && !s->pass)) {
    free_now(s);
    return NT_ENOMEM;
  }
  slink *links[2] = {&s->lk, &s->sub};
  for (int i = 0; i < 2; i++) {
    links[i]->s = s;
    links[i]->kind = i == 0 ? L_LOOKUP : L_SUB;
    uv_timer_init(loop, &links[i]->timer);
    links[i]->timer.data = links[i];
    s->handles_open++;
  }
  link_try(&s->sub);
  *out = s;
  return 0;
}
