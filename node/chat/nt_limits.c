/* nt_limits: message rate, rooms per connection, connections per user, HTTP-phase bounds. */
#include "nt_limits.h"

#include <jansson.h>
#include <string.h>

#include "nt_chat.h"
#include "nt_log.h"
#include "nt_proto.h"

/* ---------------------------------------------------------------- node glue --- */

int nt_limits_admit_message(nt_chat *n, nt_conn *c, int opcode, const uint8_t *data,
                            size_t len) {
  const nt_config *cfg = n->cfg;
  uint64_t now = uv_now(n->loop);
  if (nt_ratelimit_take(&c->rl, now, (uint32_t)cfg->rate_limit, (uint32_t)cfg->rate_burst))
    return 1;
  n->m.rate_limited++;
  if (nt_ratelimit_strike(&c->rl, now, (uint32_t)cfg->rate_close_after)) {
    n->m.rate_limit_closes++;
    nt_log_info("rate limit: connection closed", "{s:s, s:s, s:s}", "conn", c->id, "user",
                c->ident.user, "tenant", c->ident.tenant);
    nt_conn_ws_close(c, 1008, "rate limit exceeded", NT_CLOSE_PROTOCOL);
    return 0;
  }
  /* Echo the requestId so the client's pending request fails now rather than time out.
   * Parsing is bounded: at most --rate-close-after refused messages per window. */
  nt_req rq;
  const char *why = NULL;
  const char *reqid = "";
  if (opcode == WSLAY_TEXT_FRAME) {
    nt_proto_parse((const char *)data, len, &rq, &why);
    reqid = rq.reqid;
  }
  nt_frame *f = nt_proto_error("rate_limited", "too many messages: slow down", reqid);
  if (opcode == WSLAY_TEXT_FRAME) nt_req_free(&rq);
  if (f) {
    nt_conn_send(c, f);
    nt_frame_unref(f);
  }
  return 0;
}

int nt_limits_room_ok(nt_chat *n, const nt_conn *c) {
  if ((long)c->nrooms < n->cfg->max_rooms_per_conn) return 1;
  n->m.room_limit_rejected++;
  return 0;
}

int nt_limits_user_conns_check(nt_chat *n, const nt_identity *id) {
  if (n->cfg->max_conns_per_user <= 0) return 0;
  char subject[NT_SUBJECT_MAX];
  int sl = nt_subject_user(subject, sizeof subject, id->tenant, id->user);
  if (sl < 0) return 0; /* an invalid id fails later, in the hub */
  const nt_userset *u = nt_hub_userset(&n->hub, subject);
  if (!u || (long)u->n < n->cfg->max_conns_per_user) return 0;
  n->m.user_limit_rejected++;
  return 429;
}

uint64_t nt_limits_handshake_ms(const nt_chat *n) {
  return (uint64_t)(n->cfg->handshake_timeout_s * 1000);
}
