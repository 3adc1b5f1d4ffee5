/* nt_resume_page: history pages — the `history` action and the page behind
 * GET /v1/tenants/{t}/rooms/{r}/messages (docs/history.md). Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_chat.h"
#include "nt_envelope.h"
#include "nt_err.h"
#include "nt_proto.h"
#include "nt_resume.h"
#include "nt_resume_int.h"

/* Decodes a page into protocol items; `envs` keeps the strings alive. Returns the count. */
static size_t page_items(const nt_hist_result *hr, nt_proto_hist_item *items,
                         Natter__Envelope **envs) {
  size_t k = 0;
  for (size_t i = 0; i < hr->n; i++) {
    Natter__Envelope *env = nt_env_decode(hr->msgs[i].data, hr->msgs[i].len);
    if (!env || env->kind != NATTER__KIND__ROOM_MESSAGE || !nt_fanout_renderable(env)) {
      nt_env_free(env);
      continue;
    }
    envs[k] = env;
    items[k] = (nt_proto_hist_item){env->id, env->sender_user[0] ? env->sender_user : NULL,
                                    (const char *)env->payload.data, env->payload.len,
                                    env->timestamp_ms, hr->msgs[i].seq};
    k++;
  }
  return k;
}

/* A page is cut to what fits in half a connection's send queue, so the reply never closes
 * its reader as a slow consumer: the oldest messages are dropped (the page still ends at
 * the newest, `hasMore` says older ones exist, and `before` = the first seq shown goes
 * on). At least one message is kept — it is at most --max-message-bytes. Returns the
 * index of the first item kept. */
static size_t page_fit(const nt_chat *n, const nt_proto_hist_item *items, size_t k,
                       int *more) {
  size_t budget = n->cfg->send_queue_bytes / 2, used = 0, first = k;
  while (first > 0) {
    const nt_proto_hist_item *it = &items[first - 1];
    size_t sz = it->len + strlen(it->id) + (it->user ? strlen(it->user) : 0) + 96;
    if (first < k && used + sz > budget) break;
    used += sz;
    first--;
  }
  if (first > 0) *more = 1;
  return first;
}

static const char *page_error(int status) {
  return status == NT_ETIMEOUT ? "timeout" : "internal";
}

void nt_resume_page_done(nt_chat *n, fetch_op *op, const nt_hist_result *hr) {
  nt_resume *res = n->res;
  nt_proto_hist_item *items = hr->n ? calloc(hr->n, sizeof *items) : NULL;
  Natter__Envelope **envs = hr->n ? calloc(hr->n, sizeof *envs) : NULL;
  int status = hr->status;
  if (status == 0 && hr->n && (!items || !envs)) status = NT_ENOMEM;
  size_t k = status == 0 ? page_items(hr, items, envs) : 0;
  int more = hr->more;
  size_t first = k ? page_fit(n, items, k, &more) : 0;
  /* An empty page (a room with nothing stored) has no items array: NULL + 0 is undefined. */
  const nt_proto_hist_item *page = items ? items + first : NULL;
  if (status && res) res->m.page_errors++;
  if (op->kind == F_PAGE) {
    if (nt_conn_is_open(op->c)) {
      if (status == 0) {
        nt_frame *f = nt_proto_history(op->room, page, k - first, more, op->reqid);
        if (f) {
          nt_conn_send(op->c, f);
          nt_frame_unref(f);
        }
      } else {
        nt_client_send_error(n, op->c, page_error(status),
                             status == NT_ECLOSED ? "the node is stopping"
                                                  : "history unavailable",
                             op->reqid);
      }
    }
    nt_conn_unref(op->c);
  } else {
    size_t len = 0;
    char *body = status == 0 ? nt_proto_history_json(op->tenant, op->room, page, k - first,
                                                     more, &len)
                             : NULL;
    if (status == 0 && !body) status = NT_ENOMEM;
    op->cb(op->ud, status, body, len);
    free(body);
  }
  for (size_t i = 0; i < k; i++) nt_env_free(envs[i]);
  free(envs);
  free(items);
}

static size_t clamp_limit(int64_t limit) {
  if (limit <= 0) return NT_HISTORY_LIMIT_DEFAULT;
  return limit > NT_HISTORY_LIMIT_MAX ? NT_HISTORY_LIMIT_MAX : (size_t)limit;
}

void nt_resume_history(nt_chat *n, nt_conn *c, const nt_req *rq) {
  nt_resume *res = n->res;
  if (!res || !res->h) {
    nt_client_send_error(n, c, "not_found", "history is not enabled on this node", rq->reqid);
    return;
  }
  if (!nt_identity_room_allowed(&c->ident, rq->room)) {
    nt_client_send_error(n, c, "forbidden", "the token does not allow this room", rq->reqid);
    return;
  }
  char subject[NT_SUBJECT_MAX];
  if (nt_subject_room(subject, sizeof subject, c->ident.tenant, rq->room) < 0) {
    nt_client_send_error(n, c, "bad_request", "invalid roomId", rq->reqid);
    return;
  }
  fetch_op *op = nt_resume_op_new(n, F_PAGE, subject);
  if (!op) {
    nt_client_send_error(n, c, "internal", "out of memory", rq->reqid);
    return;
  }
  op->c = c;
  nt_conn_ref(c);
  snprintf(op->room, sizeof op->room, "%s", rq->room);
  snprintf(op->reqid, sizeof op->reqid, "%s", rq->reqid);
  res->m.pages++;
  int rc = nt_history_fetch_page(res->h, subject, rq->has_before ? rq->before : 0,
                                 clamp_limit(rq->limit), nt_resume_on_fetched, op);
  if (rc) {
    res->m.page_errors++;
    nt_client_send_error(n, c, "internal", "history unavailable", rq->reqid);
    nt_conn_unref(c);
    free(op);
  }
}

int nt_resume_api_page(nt_chat *n, const char *tenant, const char *room, uint64_t before,
                       size_t limit, nt_resume_page_cb cb, void *ud) {
  nt_resume *res = n->res;
  if (!res || !res->h) return NT_ENOTFOUND;
  char subject[NT_SUBJECT_MAX];
  if (!cb || nt_subject_room(subject, sizeof subject, tenant, room) < 0) return NT_EINVAL;
  fetch_op *op = nt_resume_op_new(n, F_API, subject);
  if (!op) return NT_ENOMEM;
  snprintf(op->tenant, sizeof op->tenant, "%s", tenant);
  snprintf(op->room, sizeof op->room, "%s", room);
  op->cb = cb;
  op->ud = ud;
  res->m.pages++;
  int rc = nt_history_fetch_page(res->h, subject, before, clamp_limit((int64_t)limit),
                                 nt_resume_on_fetched, op);
  if (rc) {
    res->m.page_errors++;
    free(op);
  }
  return rc;
}
