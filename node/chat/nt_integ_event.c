/* nt_integ_event: route selection, Lambda proxy events and results of the HTTP integration. */
#include "nt_integ_event.h"
#include "nt_pct.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "nt_http.h"
#include "nt_err.h"

/* ================================================================ routes ========= */

void nt_integ_routes_free(nt_integ_routes *r) {
  for (size_t i = 0; i < r->nkeys; i++) free(r->keys[i]);
  free(r->keys);
  for (size_t i = 0; i < r->npath; i++) free(r->path[i]);
  memset(r, 0, sizeof *r);
}

/* Appends s[0..n) to a string array; 0 or NT_ENOMEM. */
static int push_str(char ***arr, size_t *len, const char *s, size_t n) {
  char **na = realloc(*arr, (*len + 1) * sizeof *na);
  if (!na) return NT_ENOMEM;
  *arr = na;
  if (!(na[*len] = strndup(s, n))) return NT_ENOMEM;
  (*len)++;
  return 0;
}

int nt_integ_routes_init(nt_integ_routes *out, const char *list, const char *expr) {
  static const char pre[] = "$request.body.";
  if (!list || !expr || strncmp(expr, pre, sizeof pre - 1)) return NT_EINVAL;
  nt_integ_routes r = {0};
  int rc = 0;
  for (const char *p = expr + sizeof pre - 1; !rc;) {
    size_t n = strcspn(p, ".");
    if (!n || r.npath == NT_INTEG_PATH_MAX) rc = NT_EINVAL;
    else if (!(r.path[r.npath] = strndup(p, n))) rc = NT_ENOMEM;
    else r.npath++;
    if (rc || !p[n]) break;
    p += n + 1;
  }
  for (const char *p = list; !rc && *p;) {
    size_t n = strcspn(p, ",");
    const char *s = p, *e = p + n;
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e > s) rc = push_str(&r.keys, &r.nkeys, s, (size_t)(e - s));
    p += n + (p[n] ? 1 : 0);
  }
  if (rc) {
    nt_integ_routes_free(&r);
    return rc;
  }
  *out = r;
  return 0;
}

int nt_integ_routes_has(const nt_integ_routes *r, const char *key) {
  for (size_t i = 0; i < r->nkeys; i++)
    if (!strcmp(r->keys[i], key)) return 1;
  return 0;
}

static const char *route_key(const nt_integ_routes *r, const char *key) {
  for (size_t i = 0; i < r->nkeys; i++)
    if (!strcmp(r->keys[i], key)) return r->keys[i];
  return NULL;
}

const char *nt_integ_select(const nt_integ_routes *r, const char *data, size_t len,
                            char reqid[NT_REQID_MAX + 1]) {
  reqid[0] = '\0';
  json_t *root = json_loadb(data, len, 0, NULL);
  const char *route = NULL;
  int builtin = 0;
  if (json_is_object(root)) {
    json_t *v = root;
    for (size_t i = 0; v && i < r->npath; i++) v = json_object_get(v, r->path[i]);
    const char *key = json_is_string(v) ? json_string_value(v) : NULL;
    if (key && key[0] != '$' && strlen(key) == json_string_length(v))
      route = route_key(r, key);
    json_t *act = json_object_get(root, "action");
    builtin = json_is_string(act) && nt_proto_action_of(json_string_value(act)) != NT_ACT_CUSTOM;
    json_t *rid = json_object_get(root, "requestId");
    if (json_is_string(rid) || json_is_integer(rid)) {
      char *t = json_dumps(rid, JSON_ENCODE_ANY | JSON_COMPACT);
      if (t && strlen(t) <= NT_REQID_MAX) memcpy(reqid, t, strlen(t) + 1);
      free(t);
    }
  }
  json_decref(root);
  if (route) return route;
  if (builtin) return NULL;
  return route_key(r, "$default");
}

/* ================================================================ events ========= */

static json_t *str(const char *s) { return json_string(s ? s : ""); }

/* {"a": "1", ...} of a query string; values percent-decoded where they decode. */
static json_t *query_params(const char *q) {
  json_t *o = json_object();
  for (const char *p = q ? q : ""; o && *p;) {
    size_t n = strcspn(p, "&");
    const char *eq = memchr(p, '=', n);
    size_t kl = eq ? (size_t)(eq - p) : n;
    const char *v = eq ? eq + 1 : p + n;
    size_t vl = eq ? n - kl - 1 : 0;
    char key[256], val[1024];
    int k = nt_pct_decode(p, kl, key, sizeof key, 0);
    int d = nt_pct_decode(v, vl, val, sizeof val, 0);
    if (k > 0)
      json_object_set_new(o, key, d >= 0 ? json_stringn(val, (size_t)d) : json_stringn(v, vl));
    p += n + (p[n] ? 1 : 0);
  }
  return o;
}

static const char *const type_names[] = {"", "CONNECT", "MESSAGE", "DISCONNECT"};

char *nt_integ_event(const nt_integ_conn_info *ci, const nt_integ_call *call, size_t *len) {
  json_t *authz = json_is_object(ci->claims) ? json_deep_copy(ci->claims) : json_object();
  json_t *rc = json_object(), *ev = json_object();
  if (!authz || !rc || !ev) {
    json_decref(authz);
    json_decref(rc);
    json_decref(ev);
    return NULL;
  }
  json_object_set_new(authz, "principalId", str(ci->principal));
  json_object_set_new(authz, "tenantId", str(ci->tenant));
  json_object_set_new(rc, "routeKey", str(call->route));
  json_object_set_new(rc, "eventType", json_string(type_names[call->type]));
  json_object_set_new(rc, "connectionId", str(ci->conn_id));
  json_object_set_new(rc, "connectedAt", json_integer(ci->connected_at_ms));
  json_object_set_new(rc, "requestId", str(call->request_id));
  json_object_set_new(rc, "requestTimeEpoch", json_integer(call->now_ms));
  if (call->type == NT_INTEG_MESSAGE) json_object_set_new(rc, "messageId", str(call->message_id));
  json_object_set_new(rc, "domainName", str(ci->domain));
  json_object_set_new(rc, "stage", str(ci->stage));
  json_object_set_new(rc, "apiId", str(ci->api_id));
  json_object_set_new(rc, "identity", json_pack("{s:o, s:o}", "sourceIp", str(ci->source_ip),
                                                "userAgent", str(ci->user_agent)));
  json_object_set_new(rc, "authorizer", authz);
  if (call->type == NT_INTEG_DISCONNECT) {
    json_object_set_new(rc, "disconnectStatusCode", json_integer(call->disconnect_code));
    json_object_set_new(rc, "disconnectReason", str(call->disconnect_reason));
  }
  json_object_set_new(ev, "requestContext", rc);
  if (call->type == NT_INTEG_MESSAGE)
    json_object_set_new(ev, "body", json_stringn(call->body ? call->body : "", call->body_len));
  json_object_set_new(ev, "isBase64Encoded", json_false());
  if (call->type == NT_INTEG_CONNECT) {
    json_t *h = json_object(), *mh = json_object();
    for (size_t i = 0; h && mh && i < call->nhdrs; i++) {
      json_object_set_new(h, call->hdr_names[i], str(call->hdr_values[i]));
      json_object_set_new(mh, call->hdr_names[i], json_pack("[o]", str(call->hdr_values[i])));
    }
    json_object_set_new(ev, "headers", h);
    json_object_set_new(ev, "multiValueHeaders", mh);
    json_object_set_new(ev, "queryStringParameters", query_params(call->query));
  }
  char *out = json_dumps(ev, JSON_COMPACT);
  json_decref(ev);
  if (out) *len = strlen(out);
  return out;
}

/* ================================================================ results ======== */

void nt_integ_result_free(nt_integ_result *r) {
  free(r->owned);
  r->owned = NULL;
}

/* Decodes base64 (standard alphabet, or base64url when `url`; padding optional) into a
 * malloc'd buffer. Returns its length or -1. */
static long b64_decode(const char *in, size_t n, int url, char **out) {
  size_t padded = (n + 3) / 4 * 4;
  char *t = malloc(padded + 1), *o = malloc(padded / 4 * 3 + 1);
  long len = -1;
  if (t && o) {
    memcpy(t, in, n);
    for (size_t i = 0; url && i < n; i++)
      t[i] = t[i] == '-' ? '+' : t[i] == '_' ? '/' : t[i];
    size_t pad = 0;
    while (n > 0 && t[n - 1] == '=') { n--; pad++; }
    for (size_t i = n; i < padded; i++) t[i] = '=';
    int d = padded ? EVP_DecodeBlock((unsigned char *)o, (unsigned char *)t, (int)padded) : 0;
    size_t strip = padded - n; /* '=' we or the sender added */
    if (d >= 0 && (size_t)d >= strip && strip <= 2 && pad <= 2) {
      len = d - (long)strip;
      o[len] = '\0';
    }
  }
  free(t);
  if (len < 0) {
    free(o);
    return -1;
  }
  *out = o;
  return len;
}

int nt_integ_result_read(int http_status, const char *body, size_t len, nt_integ_result *out) {
  *out = (nt_integ_result){.status = http_status, .body = body, .body_len = len};
  size_t i = 0;
  while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) i++;
  if (i == len || body[i] != '{') return 0;
  json_t *root = json_loadb(body, len, 0, NULL);
  json_t *sc = json_object_get(root, "statusCode");
  if (!sc) { /* a plain JSON answer */
    json_decref(root);
    return 0;
  }
  int rc = NT_EPROTO;
  json_t *b = json_object_get(root, "body");
  json_int_t st = json_is_integer(sc) ? json_integer_value(sc) : 0;
  if (st >= 100 && st <= 599 && (!b || json_is_string(b) || json_is_null(b))) {
    const char *bs = json_is_string(b) ? json_string_value(b) : "";
    size_t bl = json_is_string(b) ? json_string_length(b) : 0;
    char *copy = NULL;
    long n = -1;
    if (json_is_true(json_object_get(root, "isBase64Encoded"))) {
      n = b64_decode(bs, bl, 0, &copy);
    } else if ((copy = malloc(bl + 1))) {
      memcpy(copy, bs, bl);
      copy[bl] = '\0';
      n = (long)bl;
    } else {
      rc = NT_ENOMEM;
    }
    if (n >= 0) {
      *out = (nt_integ_result){.status = (int)st, .body = copy, .body_len = (size_t)n,
                               .owned = copy};
      rc = 0;
    }
  }
  json_decref(root);
  return rc;
}

json_t *nt_integ_token_claims(const char *token) {
  const char *p = token ? strchr(token, '.') : NULL;
  const char *e = p ? strchr(p + 1, '.') : NULL;
  if (!e) return NULL;
  char *raw = NULL;
  long n = b64_decode(p + 1, (size_t)(e - p - 1), 1, &raw);
  json_t *claims = n > 0 ? json_loadb(raw, (size_t)n, 0, NULL) : NULL;
  free(raw);
  if (!json_is_object(claims)) {
    json_decref(claims);
    return NULL;
  }
  return claims;
}

nt_frame *nt_integ_error_frame(const char *code, int status, const char *message,
                               const char *reqid) {
  json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message",
                        message ? message : code);
  if (!o) return NULL;
  if (status) json_object_set_new(o, "status", json_integer(status));
  if (reqid && *reqid) json_object_set_new(o, "requestId", json_loads(reqid, JSON_DECODE_ANY, NULL));
  char *t = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  nt_frame *f = t ? nt_frame_from(NT_WS_OP_TEXT, t, strlen(t)) : NULL;
  free(t);
  return f;
}
