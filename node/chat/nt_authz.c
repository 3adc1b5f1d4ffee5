/* nt_authz: AuthRequest/AuthReply codec and the asynchronous authorizer round trip. */
#include "nt_authz.h"

#include <stdlib.h>
#include <string.h>

#include "natter.pb-c.h"
#include "nt_chat.h"
#include "nt_err.h"
#include "nt_integ.h"
#include "nt_log.h"
#include "nt_pct.h"

/* ================================================================ pure part ====== */

char *nt_authz_query_without_token(const char *target) {
  const char *q = target ? strchr(target, '?') : NULL;
  size_t qlen = q ? strcspn(q + 1, "#") : 0;
  char *out = malloc(qlen + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t pos = 0; q && pos < qlen;) {
    const char *p = q + 1 + pos;
    size_t plen = strcspn(p, "&#");
    if (pos + plen > qlen) plen = qlen - pos;
    const char *eq = memchr(p, '=', plen);
    size_t klen = eq ? (size_t)(eq - p) : plen;
    /* Keys are compared decoded, as the token lookup does ("%74oken" is "token"); a key
     * that does not decode is dropped rather than risk forwarding a token. */
    char key[16];
    int kl = nt_pct_decode(p, klen, key, sizeof key, NT_PCT_PLUS);
    int drop = kl == NT_EINVAL || (kl == 5 && !memcmp(key, "token", 5));
    if (!drop && plen) {
      if (o) out[o++] = '&';
      memcpy(out + o, p, plen);
      o += plen;
    }
    pos += plen + 1;
  }
  out[o] = '\0';
  return out;
}

uint8_t *nt_authz_encode(const nt_identity *id, const char *conn_id, const char *node_id,
                         const char *peer, const nt_http_req *req, int64_t now_ms, size_t *len) {
  static const int kept[] = {NT_HDR_HOST, NT_HDR_ORIGIN, NT_HDR_USER_AGENT,
                             NT_HDR_X_FORWARDED_FOR, NT_HDR_WS_PROTOCOL, NT_HDR_CONTENT_TYPE};
  static const char *const names[] = {"Host", "Origin", "User-Agent", "X-Forwarded-For",
                                      "Sec-WebSocket-Protocol", "Content-Type"};
  enum { NKEPT = sizeof kept / sizeof kept[0] };
  Natter__Header hs[NKEPT], *hp[NKEPT];
  size_t nh = 0;
  for (size_t i = 0; i < NKEPT; i++) {
    if (!req->hdr[kept[i]]) continue;
    natter__header__init(&hs[nh]);
    hs[nh].name = (char *)names[i];
    hs[nh].value = req->hdr[kept[i]];
    hp[nh] = &hs[nh];
    nh++;
  }
  char *query = nt_authz_query_without_token(req->target);
  char *path = req->target ? strndup(req->target, req->path_len) : strdup("");
  uint8_t *out = NULL;
  if (query && path) {
    Natter__AuthRequest ar = NATTER__AUTH_REQUEST__INIT;
    ar.tenant = (char *)id->tenant;
    ar.user = (char *)id->user;
    ar.conn = (char *)conn_id;
    ar.node = (char *)node_id;
    ar.source_ip = (char *)peer;
    ar.user_agent = req->hdr[NT_HDR_USER_AGENT] ? req->hdr[NT_HDR_USER_AGENT] : "";
    ar.origin = req->hdr[NT_HDR_ORIGIN] ? req->hdr[NT_HDR_ORIGIN] : "";
    ar.path = path;
    ar.query = query;
    ar.n_rooms = id->rooms ? id->nrooms : 0;
    ar.rooms = id->rooms;
    ar.has_rooms_claim = id->rooms != NULL;
    ar.exp = id->exp;
    ar.n_headers = nh;
    ar.headers = hp;
    ar.timestamp_ms = now_ms;
    size_t n = natter__auth_request__get_packed_size(&ar);
    out = malloc(n ? n : 1);
    if (out) {
      natter__auth_request__pack(&ar, out);
      *len = n;
    }
  }
  free(query);
  free(path);
  return out;
}

int nt_authz_apply(const uint8_t *data, size_t len, nt_identity *id, char *reason,
                   size_t reason_cap) {
  if (reason_cap) reason[0] = '\0';
  Natter__AuthReply *ar = natter__auth_reply__unpack(NULL, len, data);
  if (!ar) return NT_EPROTO;
  int rc = 0;
  if (!ar->allow) {
    /* The reason ends up in a response body and a log line: printable ASCII only. */
    size_t o = 0;
    for (const char *s = ar->reason ? ar->reason : ""; *s && o + 1 < reason_cap; s++)
      reason[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (reason_cap) reason[o] = '\0';
    rc = NT_EFORBIDDEN;
  } else if (ar->set_rooms) {
    rc = nt_identity_set_rooms(id, (const char *const *)ar->rooms, ar->n_rooms) ? NT_EPROTO : 0;
  }
  natter__auth_reply__free_unpacked(ar, NULL);
  return rc;
}

/* ================================================================ round trip ===== */

void nt_authz_accept(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                     size_t rest_len) {
  nt_upgrade_accept(n, c, req, rest, rest_len); /* the capacity is checked there, again */
  nt_conn_resume(c);
}

typedef struct authz_op {
  nt_chat *n;
  nt_conn *c;        /* referenced until the reply */
  uint8_t *rest;     /* bytes that followed the upgrade request (copy) */
  size_t rest_len;
} authz_op;

static void on_reply(void *ud, int status, const uint8_t *data, size_t len) {
  authz_op *op = ud;
  nt_chat *n = op->n;
  nt_conn *c = op->c;
  const nt_http_req *req = c->http ? nt_http_parser_req(c->http) : NULL;
  if (nt_conn_is_open(c) && c->state == NT_CONN_HTTP && req && !n->stopped) {
    char reason[NT_AUTHZ_REASON_MAX] = "";
    int r = status ? status : nt_authz_apply(data, len, &c->ident, reason, sizeof reason);
    int ir = r == 0 && n->integ ? nt_integ_connect(n, c, req, op->rest, op->rest_len) : 0;
    if (ir < 0) {
      nt_identity_clear(&c->ident);
      nt_upgrade_refuse(n, c, 503, "integration unavailable");
    } else if (r == 0 && ir == 0) {
      nt_authz_accept(n, c, req, op->rest, op->rest_len);
    } else if (r == 0) {
      /* $connect decides (nt_integ.c) */
    } else {
      int st = r == NT_EFORBIDDEN ? 403 : 503;
      const char *why = r == NT_EFORBIDDEN ? (reason[0] ? reason : "denied by the authorizer")
                        : r == NT_ETIMEOUT ? "authorizer timeout"
                        : r == NT_EPROTO   ? "invalid authorizer reply"
                                           : "authorizer unavailable";
      if (st == 403) n->m.authz_denied++;
      else n->m.authz_unavailable++;
      nt_log_info("upgrade refused by the authorizer", "{s:i, s:s, s:s, s:s}", "status", st,
                  "reason", why, "user", c->ident.user, "tenant", c->ident.tenant);
      nt_identity_clear(&c->ident);
      nt_upgrade_refuse(n, c, st, why);
    }
  }
  free(op->rest);
  nt_conn_unref(c);
  free(op);
}

int nt_authz_start(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                   size_t rest_len) {
  if (!n->bus) return NT_ECLOSED;
  if (!c->id[0]) nt_rand_id(n->rand, c->id, NT_CONN_ID_LEN);
  authz_op *op = calloc(1, sizeof *op);
  if (!op) return NT_ENOMEM;
  if (rest_len && !(op->rest = malloc(rest_len))) {
    free(op);
    return NT_ENOMEM;
  }
  if (rest_len) memcpy(op->rest, rest, rest_len);
  op->rest_len = rest_len;
  op->n = n;
  op->c = c;
  size_t len = 0;
  char peer[NT_CONN_PEER_STRLEN];
  uint8_t *msg = nt_authz_encode(&c->ident, c->id, n->id, nt_conn_peer(c, peer), req,
                                 nt_now_ms(), &len);
  int r = msg ? nt_bus_request(n->bus, NT_AUTHZ_SUBJECT, msg, len,
                               (uint64_t)(n->cfg->auth_timeout_s * 1000), on_reply, op)
              : NT_ENOMEM;
  free(msg);
  if (r) {
    free(op->rest);
    free(op);
    n->m.authz_unavailable++;
    return r;
  }
  nt_conn_ref(c);
  n->m.authz_requests++;
  /* The sweep's 10 s HTTP deadline restarts here, so it bounds this wait (--auth-timeout
   * is at most 9 s) instead of cutting it short. */
  c->connected_at = uv_now(n->loop);
  return 0;
}
