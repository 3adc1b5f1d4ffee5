/* nt_upgrade: admitting a WebSocket upgrade (GET /ws) — handshake, origin, capacity, token,
 * the external authorizer, then 101 and the welcome. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nt_authz.h"
#include "nt_chat.h"
#include "nt_deflate.h"
#include "nt_handshake.h"
#include "nt_integ.h"
#include "nt_limits.h"
#include "nt_log.h"
#include "nt_proxy.h"

int nt_chat_ready(const nt_chat *n) {
  return n->bus && n->pres && !n->draining && !n->stopping && nt_bus_connected(n->bus) &&
         nt_presence_connected(n->pres);
}

void nt_upgrade_set_origins(nt_chat *n, const char *list) {
  if (!list || !*list) return;
  char *dup = strdup(list), *save = NULL;
  for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    size_t l = strlen(t);
    while (l && t[l - 1] == ' ') t[--l] = '\0';
    if (!l) continue;
    char **no = realloc(n->origins, (n->norigins + 1) * sizeof *no);
    if (!no) break;
    n->origins = no;
    n->origins[n->norigins++] = strdup(t);
  }
  free(dup);
}

static int origin_allowed(const nt_chat *n, const char *origin) {
  if (!n->norigins) return 1;
  if (!origin) return 0;
  for (size_t i = 0; i < n->norigins; i++)
    if (!strcmp(n->origins[i], "*") || !strcasecmp(n->origins[i], origin)) return 1;
  return 0;
}

static void reject_upgrade(nt_chat *n, nt_conn *c, int status, const char *why) {
  n->m.upgrades_rejected++;
  if (n->log.upgrade_refused) n->log.upgrade_refused(c, status, why);
  nt_conn_respond_text(c, status, why);
}

/* The one capacity check of an upgrade: before the token is verified, and again when it
 * is accepted (an authorizer's reply comes later). Returns 1 after refusing with 503. */
static int refuse_at_capacity(nt_chat *n, nt_conn *c) {
  if (!n->draining && !n->stopping && (long)n->nws < n->max_ws) return 0;
  n->m.capacity_rejected++;
  reject_upgrade(n, c, 503, n->draining ? "draining" : "at capacity");
  return 1;
}


void nt_upgrade_handle(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                       size_t rest_len) {
  int st = nt_handshake_check(req);
  if (st) {
    nt_conn_respond(c, st, "text/plain", nt_http_reason(st), strlen(nt_http_reason(st)),
                    st == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
    n->m.upgrades_rejected++;
    if (n->log.upgrade_refused) n->log.upgrade_refused(c, st, nt_http_reason(st));
    return;
  }
  if (!origin_allowed(n, req->hdr[NT_HDR_ORIGIN])) {
    n->m.origin_rejected++;
    reject_upgrade(n, c, 403, "origin not allowed");
    return;
  }
  if (refuse_at_capacity(n, c)) return;
  char token[8192];
  int tl = nt_http_query_param(req->target, "token", token, sizeof token);
  if (tl < 0) {
    const char *auth = req->hdr[NT_HDR_AUTHORIZATION];
    if (auth && !strncasecmp(auth, "Bearer ", 7) && strlen(auth + 7) < sizeof token) {
      snprintf(token, sizeof token, "%s", auth + 7);
      tl = (int)strlen(token);
    }
  }
  const char *why = "missing token";
  if (tl <= 0 || nt_auth_verify(n->auth, token, nt_now_ms() / 1000, &c->ident, &why)) {
    n->m.auth_failures++;
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 401, why);
    return;
  }
  const char *ua = req->hdr[NT_HDR_USER_AGENT];
  /* browsers send a few dozen distinct strings of ≈ 120 bytes: one shared copy each */
  if (ua) c->user_agent = nt_intern(&n->uas, ua, strnlen(ua, 256));
  const char *xip;
  size_t xlen;
  if ((n->cfg->trust_proxy || n->cfg->trusted_proxies) &&
      nt_proxy_client(n->cfg->trusted_proxies, c->peer, c->peer_family,
                      req->hdr[NT_HDR_X_FORWARDED_FOR], &xip, &xlen))
    nt_conn_set_peer(c, xip, xlen); /* the hop a trusted proxy added (nt_proxy.h) */
  if (n->integ && nt_integ_upgrade(n, c, req, token)) {
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 503, "integration unavailable");
    return;
  }
  if (n->cfg->auth_request) { /* the authorizer's reply accepts or refuses, later */
    if (nt_authz_start(n, c, req, rest, rest_len)) {
      nt_identity_clear(&c->ident);
      reject_upgrade(n, c, 503, "authorizer unavailable");
    }
    return;
  }
  int ir = n->integ ? nt_integ_connect(n, c, req, rest, rest_len) : 0;
  if (ir < 0) {
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 503, "integration unavailable");
  }
  if (ir) return; /* $connect accepts or refuses, later */
  nt_upgrade_accept(n, c, req, rest, rest_len);
}

void nt_upgrade_refuse(nt_chat *n, nt_conn *c, int status, const char *why) {
  reject_upgrade(n, c, status, why);
}

void nt_upgrade_accept(nt_chat *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                       size_t rest_len) {
  if (refuse_at_capacity(n, c)) { /* again: an authorizer answers later */
    nt_identity_clear(&c->ident);
    return;
  }
  if (nt_limits_user_conns_check(n, &c->ident)) { /* per node: docs/security.md */
    nt_identity_clear(&c->ident);
    reject_upgrade(n, c, 429, "too many connections for this user");
    return;
  }
  char resp[512], ext[NT_DEFLATE_RESPONSE_MAX];
  uint8_t wbits = 0;
  int pmd = n->pmd && nt_deflate_negotiate(req->hdr[NT_HDR_WS_EXTENSIONS], ext, sizeof ext,
                                           &wbits);
  int rl = nt_handshake_response(req, pmd ? ext : NULL, resp, sizeof resp);
  if (rl < 0 || nt_conn_upgrade(c, rest, rest_len)) {
    reject_upgrade(n, c, 500, "internal error");
    return;
  }
  nt_conn_send_raw(c, resp, (size_t)rl);
  c->pmd = pmd ? wbits : 0;
  if (!c->id[0]) nt_rand_id(n->rand, c->id, NT_CONN_ID_LEN); /* set early with an authorizer */
  n->nws++;
  n->m.connections = n->nws;
  n->m.connections_total++;
  if (n->log.conn_open) n->log.conn_open(c);
  nt_client_welcome(n, c);
}
