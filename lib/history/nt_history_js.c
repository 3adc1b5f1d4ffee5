/* nt_history_js: room history on NATS JetStream — a stream over natter.room.> that
 * republishes every stored message on natter.live.room.> with its sequence; stored
 * messages read back with direct gets on worker threads (nt_history_js_read.c). This
 * file is the loop side: publications, their acknowledgments and resends (same
 * Nats-Msg-Id) until the ack bound, the job queue's loop end. Threading: nt_history_js_int.h. */
#include <inttypes.h>
#include <jansson.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_hist_quota.h"
#include "nt_history.h"
#include "nt_history_js_int.h"
#include "nt_log.h"
#include "nt_nats_opts.h"
#include "nt_url.h"
#include "nt_nats_uv.h"
#include "nt_subject.h"

/* Tuning */
#define NWORKERS 2
#define MAX_QUEUED_JOBS 4096     /* jobs outside the read gate (stream creation) */
/* reads: NT_HIST_JS_READS_RUNNING, _WAITING and NT_HIST_JS_READ_WAIT_MS (nt_history.h) */
#define ATTEMPT_MS 1000          /* an attempt unanswered this long is sent again */
#define RETRY_MIN_MS 100         /* after "cannot store now": resend after this, doubling */
#define RETRY_MAX_MS 1000
#define DEFAULT_ACK_TIMEOUT_MS 5000
#define DEFAULT_DEDUPE_S 120.0
#define TICK_MS 50               /* resends, ack timeouts and probes */
#define PROBE_MS 2000            /* while live-only: try the stream again this often */
#define RING_CAP 65536           /* publications awaiting their ack (power of two) */
#define CONNECT_TIMEOUT_MS 1000
#define ERR_LOG_INTERVAL_MS 5000
#define DEFAULT_MAX_BYTES ((int64_t)1 << 30) /* stream max_bytes when the config says 0 */

/* A publication awaiting its acknowledgment: resent (same token and Nats-Msg-Id) while
 * the stream cannot store, completed once. */
typedef struct pend {
  uint64_t token;        /* 0: slot free */
  uint64_t sent_ms;      /* the last attempt */
  uint64_t deadline_ms;  /* nt_history_publish + ack timeout: NT_ETIMEOUT */
  uint64_t retry_at;     /* != 0: the stream said "cannot store now", resend then */
  unsigned attempts;
  int done;
  int live_only;         /* over quota or size: refused, never sent (NT_ELIMIT) */
  size_t len;
  uint8_t *buf;          /* room subject, NUL, msg id (maybe empty), NUL, data */
  nt_hist_ack_cb cb;
  void *ud;
} pend;

typedef struct hist_js {
  nt_history base;
  uv_loop_t *loop;
  uv_async_t async;      /* the history is freed in its close callback */
  uv_timer_t tick;
  nt_bus *bus;
  nt_hist_handler h;
  xq *q;
  natsConnection *nc;
  natsSubscription *ack_sub;
  uv_thread_t th[NWORKERS];
  int nthreads;
  char inbox[64];        /* "_INBOX.<nuid>": acks come to "<inbox>.<token>" */
  pend *ring;
  uint64_t head_tok, next_tok;
  int storing, probing;
  int confirmed;         /* the stream has answered an ensure at least once */
  int bus_was_down;      /* publications waited in the bus's reconnect buffer */
  uint64_t next_probe;
  uint64_t err_log_at;
  nt_hist_stats st;
  nt_hist_quota *quota;  /* per-tenant budget (nt_hist_quota.h) */
  int own_quota;         /* quota is this history's (not a shared one) */
  int part;              /* partition (nt_hist_cfg.partition - 1), -1: the one stream */
  nt_hist_gate gate;     /* reads: bounded in flight, a bounded wait behind (loop only) */
  size_t max_msg_bytes;  /* 0: none */
  uint64_t ack_timeout_ms;
  int closing, tick_open;
} hist_js;

static void xq_release(xq *q) {
  if (atomic_fetch_sub(&q->refs, 1) != 1) return;
  uv_mutex_destroy(&q->mu);
  uv_cond_destroy(&q->cv);
  free(q->acks);
  free(q);
}

/* ================================================================ nats.c thread */

/* Appends an outcome for the loop (q->mu held). Returns 0 without memory. */
static int xq_push_ack(xq *q, ackitem a) {
  if (q->nacks == q->capacks) {
    size_t cap = q->capacks ? q->capacks * 2 : 256;
    ackitem *v = realloc(q->acks, cap * sizeof *v);
    if (!v) return 0;
    q->acks = v;
    q->capacks = cap;
  }
  q->acks[q->nacks++] = a;
  return 1;
}

/* The value of `"name":` in a flat JSON object (the server writes `"duplicate": true`
 * with a space), or NULL. */
static const char *json_field(const char *d, const char *name) {
  char key[32];
  snprintf(key, sizeof key, "\"%s\"", name);
  const char *p = strstr(d, key);
  if (!p) return NULL;
  p += strlen(key);
  while (*p == ' ') p++;
  if (*p++ != ':') return NULL;
  while (*p == ' ') p++;
  return p;
}

/* An acknowledgment on "<inbox>.<token>": {"stream":..,"seq":N} when stored, {"error":
 * {"code":503,..}} when the stream cannot store now, another error for this message. */
static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  xq *q = closure;
  const char *subj = natsMsg_GetSubject(msg), *dot = strrchr(subj, '.');
  char *end = NULL;
  uint64_t token = dot ? strtoull(dot + 1, &end, 10) : 0;
  if (token && end && !*end) {
    int kind = ACK_OK, dup = 0;
    uint64_t seq = 0;
    const char *d = natsMsg_GetData(msg), *sq = d ? json_field(d, "seq") : NULL;
    if (natsMsg_IsNoResponders(msg)) kind = ACK_DOWN;
    else if (!d || strstr(d, "\"error\"")) kind = d && strstr(d, "\"code\":503") ? ACK_DOWN : ACK_FAIL;
    else if (!sq) kind = ACK_FAIL;
    if (kind == ACK_OK) {
      const char *dv = json_field(d, "duplicate");
      seq = strtoull(sq, NULL, 10);
      dup = dv && !strncmp(dv, "true", 4);
    }
    uv_mutex_lock(&q->mu); /* lost without memory: the message is resent, then times out */
    if (q->async && xq_push_ack(q, (ackitem){token, kind, dup, seq}) && q->nacks == 1)
      uv_async_send(q->async);
    uv_mutex_unlock(&q->mu);
  }
  natsMsg_Destroy(msg);
}

static void on_ack_complete(void *closure) { xq_release(closure); }

static void on_nats_connected(natsConnection *nc, void *closure) {}

/* ================================================================ loop side */

static void set_storing(hist_js *j, int storing, const char *why) {
  if (j->storing == storing) return;
  j->storing = storing;
  if (storing) {
    nt_log_info("history storing again", "{s:s}", "stream", j->q->stream);
  } else {
    j->st.outages++;
    j->next_probe = uv_now(j->loop) + PROBE_MS;
    nt_log_warn("history unavailable, publications wait for the stream", "{s:s, s:s, s:I}",
                "stream", j->q->stream, "reason", why, "ack_timeout_ms",
                (json_int_t)j->ack_timeout_ms);
  }
  if (j->h.on_state) j->h.on_state(j->h.ud, storing);
}

/* (Re)sends a publication to the stream: its token's reply inbox, its Nats-Msg-Id. */
static int send_pend(hist_js *j, pend *p) {
  const char *subject = (const char *)p->buf, *id = subject + strlen(subject) + 1;
  const uint8_t *data = (const uint8_t *)id + strlen(id) + 1;
  char reply[96];
  snprintf(reply, sizeof reply, "%s.%" PRIu64, j->inbox, p->token);
  p->sent_ms = uv_now(j->loop);
  p->retry_at = 0;
  p->attempts++;
  return nt_bus_publish_msgid(j->bus, subject, data, p->len, reply, *id ? id : NULL);
}

static void ring_pop(hist_js *j) {
  while (j->head_tok < j->next_tok) {
    pend *p = &j->ring[j->head_tok & (RING_CAP - 1)];
    if (p->token == j->head_tok && !p->done) return;
    free(p->buf);
    p->buf = NULL;
    p->token = 0;
    j->head_tok++;
  }
}

/* Completes a publication once: counts it and calls its callback (which may publish). */
static void complete(hist_js *j, pend *p, int status, uint64_t seq, int duplicate) {
  p->done = 1;
  if (status == 0 && !duplicate) j->st.stored++;
  if (status == 0 && duplicate) j->st.duplicates++;
  if (status == NT_ETIMEOUT) j->st.unavailable++;
  nt_hist_ack a = {status, status == 0 ? seq : 0, status == 0 && duplicate};
  if (p->cb) p->cb(p->ud, &a);
}

static void handle_ack(hist_js *j, const ackitem *a) {
  if (a->token < j->head_tok || a->token >= j->next_tok) return; /* late */
  pend *p = &j->ring[a->token & (RING_CAP - 1)];
  if (p->token != a->token || p->done) return;
  if (a->kind == ACK_OK) {
    set_storing(j, 1, NULL);
    complete(j, p, 0, a->seq, a->duplicate);
  } else if (a->kind == ACK_LIMIT) {
    complete(j, p, NT_ELIMIT, 0, 0);
  } else if (a->kind == ACK_DOWN) { /* no responders or 503: the same again, later */
    unsigned sh = p->attempts < 5 ? p->attempts : 5;
    uint64_t wait = (uint64_t)RETRY_MIN_MS << (sh ? sh - 1 : 0);
    p->retry_at = uv_now(j->loop) + (wait < RETRY_MAX_MS ? wait : RETRY_MAX_MS);
    set_storing(j, 0, "stream unavailable (503)");
  } else {
    if (uv_now(j->loop) >= j->err_log_at) {
      j->err_log_at = uv_now(j->loop) + ERR_LOG_INTERVAL_MS;
      nt_log_warn("history refused a message, not delivered", "{s:s}", "subject",
                  (const char *)p->buf);
    }
    complete(j, p, NT_EBUS, 0, 0);
  }
  ring_pop(j);
}

static int queue_job(hist_js *j, job *jb, int bounded);

/* A read gave its place back: the oldest waiting one runs. */
static void read_done(hist_js *j) {
  nt_hist_gate_node *gn = nt_hist_gate_done(&j->gate);
  if (!gn) return;
  job *next = (job *)((char *)gn - offsetof(job, gn));
  next->gated = 1;
  queue_job(j, next, 0); /* unbounded: the gate is the bound */
}

static void finish_job(hist_js *j, job *jb, int closed) {
  if (jb->kind == J_ENSURE) {
    int st = closed ? NT_ECLOSED : jb->status;
    if (!closed) {
      if (jb->probe) j->probing = 0;
      if (st == 0) {
        if (jb->stream_warn)
          nt_log_warn("history stream exists with another configuration, kept as is",
                      "{s:s, s:s}", "stream", j->q->stream, "error", jb->err);
        else if (!jb->probe || !j->storing)
          nt_log_info("history stream ready", "{s:s, s:f, s:I, s:I, s:I, s:s, s:i}",
                      "stream", j->q->stream, "max_age_s", j->q->max_age_s, "max_per_room",
                      (json_int_t)j->q->max_per_room, "max_bytes",
                      (json_int_t)j->q->max_bytes, "max_msg_bytes",
                      (json_int_t)j->q->max_msg_bytes, "storage",
                      j->q->memory_storage ? "memory" : "file", "replicas", j->q->replicas);
        if (jb->other_msgs)
          nt_log_warn("history stream of another --history-streams layout still holds "
                      "messages; they are not read (its rooms now live in other streams)",
                      "{s:s, s:s, s:I}", "stream", j->q->stream, "other", j->q->other, "messages",
                      (json_int_t)jb->other_msgs);
        j->confirmed = 1;
        set_storing(j, 1, NULL);
      } else {
        if (!jb->probe || j->storing)
          nt_log_warn("history stream unavailable", "{s:s, s:s}", "stream", j->q->stream,
                      "error", jb->err[0] ? jb->err : nt_strerror(st));
        set_storing(j, 0, "stream unavailable");
        j->next_probe = uv_now(j->loop) + PROBE_MS;
      }
    }
    if (jb->done) jb->done(jb->ud, st);
  } else {
    nt_hist_result r = {0};
    nt_hist_msg *msgs = NULL;
    if (jb->gated && !closed) read_done(j); /* before the callback: it may destroy j */
    r.status = closed ? NT_ECLOSED : jb->status;
    if (r.status == 0 && jb->n) {
      msgs = malloc(jb->n * sizeof *msgs);
      if (!msgs) r.status = NT_ENOMEM;
    }
    if (r.status == 0) {
      for (size_t i = 0; i < jb->n; i++) {
        int64_t t = natsMsg_GetTime(jb->nm[i]);
        msgs[i] = (nt_hist_msg){natsMsg_GetSequence(jb->nm[i]), t > 0 ? t / 1000000 : 0,
                                (const uint8_t *)natsMsg_GetData(jb->nm[i]),
                                (size_t)natsMsg_GetDataLength(jb->nm[i])};
      }
      r.msgs = msgs;
      r.n = jb->n;
      r.anchored = jb->anchored;
      r.more = jb->more;
    }
    if (!closed) {
      j->st.fetches++;
      j->st.fetched += r.n;
      if (r.status) j->st.fetch_errors++;
    }
    jb->cb(jb->ud, &r);
    free(msgs);
  }
  for (size_t i = 0; i < jb->n; i++) natsMsg_Destroy(jb->nm[i]);
  free(jb->nm);
  free(jb);
}

/* Loop: one wake-up takes every ack and finished job. A callback may destroy the history;
 * its memory lives until the async handle's close callback. */
static void on_async(uv_async_t *a) {
  hist_js *j = a->data;
  xq *q = j->q;
  uv_mutex_lock(&q->mu);
  job *done = q->done;
  q->done = q->done_tail = NULL;
  ackitem *acks = q->acks;
  size_t nacks = q->nacks;
  q->acks = NULL;
  q->nacks = q->capacks = 0;
  uv_mutex_unlock(&q->mu);
  for (size_t i = 0; i < nacks && !j->closing; i++) handle_ack(j, &acks[i]);
  free(acks);
  while (done) {
    job *next = done->next;
    finish_job(j, done, j->closing);
    done = next;
  }
}

/* Hands a job to the workers; `bounded`: refused past MAX_QUEUED_JOBS (reads are bounded
 * by the gate instead). */
static int queue_job(hist_js *j, job *jb, int bounded) {
  xq *q = j->q;
  uv_mutex_lock(&q->mu);
  if (bounded && q->ntodo >= MAX_QUEUED_JOBS) {
    uv_mutex_unlock(&q->mu);
    return NT_EAGAIN;
  }
  jb->next = NULL;
  if (q->todo_tail) q->todo_tail->next = jb;
  else q->todo = jb;
  q->todo_tail = jb;
  q->ntodo++;
  uv_cond_signal(&q->cv);
  uv_mutex_unlock(&q->mu);
  return 0;
}

static int start_ensure(hist_js *j, int probe, nt_hist_done_cb cb, void *ud) {
  job *jb = calloc(1, sizeof *jb);
  if (!jb) return NT_ENOMEM;
  jb->kind = J_ENSURE;
  jb->probe = probe;
  jb->done = cb;
  jb->ud = ud;
  int rc = queue_job(j, jb, 1);
  if (rc) free(jb);
  else if (probe) j->probing = 1;
  return rc;
}

/* Every TICK_MS: a publication unanswered for ATTEMPT_MS, or told "cannot store now",
 * is sent again (same Nats-Msg-Id: the stream stores it once); one not acknowledged
 * within the ack timeout completes with NT_ETIMEOUT. While the bus itself is
 * disconnected nothing is resent — the copies wait in its reconnect buffer and go out
 * once it is back, when their attempt clock restarts — but the ack timeout still runs.
 * While the stream does not answer, it is probed every PROBE_MS (for reads). */
/* Reads that waited in the gate past NT_HIST_JS_READ_WAIT_MS fail with NT_ETIMEOUT. Returns 1 when
 * a callback destroyed the history. */
static int expire_reads(hist_js *j, uint64_t now) {
  nt_hist_gate_node *gn;
  while ((gn = nt_hist_gate_expired(&j->gate, now, NT_HIST_JS_READ_WAIT_MS)) != NULL) {
    job *jb = (job *)((char *)gn - offsetof(job, gn));
    jb->status = NT_ETIMEOUT;
    finish_job(j, jb, 0);
    if (j->closing) return 1;
  }
  return 0;
}

static void on_tick(uv_timer_t *t) {
  hist_js *j = t->data;
  uint64_t now = uv_now(j->loop);
  if (expire_reads(j, now)) return;
  int connected = nt_bus_connected(j->bus), unanswered = 0;
  if (!connected) j->bus_was_down = 1;
  int restart = connected && j->bus_was_down;
  if (restart) j->bus_was_down = 0;
  for (uint64_t tok = j->head_tok; tok < j->next_tok && !j->closing; tok++) {
    pend *p = &j->ring[tok & (RING_CAP - 1)];
    if (p->token != tok || p->done) continue;
    if (now >= p->deadline_ms) {
      complete(j, p, NT_ETIMEOUT, 0, 0);
      continue;
    }
    if (restart) p->sent_ms = now;
    if (!connected || p->live_only) continue; /* live_only: completed by queue_limit */
    int due = p->retry_at ? now >= p->retry_at : now >= p->sent_ms + ATTEMPT_MS;
    if (!due) continue;
    if (!p->retry_at) unanswered++;
    if (send_pend(j, p) == 0) j->st.resent++;
  }
  if (j->closing) return;
  ring_pop(j);
  if (unanswered) set_storing(j, 0, "no acknowledgment from the stream");
  if (!j->storing && !j->probing && now >= j->next_probe) {
    j->next_probe = now + PROBE_MS;
    start_ensure(j, 1, NULL, NULL);
  }
}

/* Queues a completion for the loop's next wake-up (a callback never runs inside the
 * call that started it). */
static void queue_limit(hist_js *j, uint64_t token) {
  xq *q = j->q;
  uv_mutex_lock(&q->mu); /* without memory the ack timeout completes it (NT_ETIMEOUT) */
  xq_push_ack(q, (ackitem){token, ACK_LIMIT, 0, 0});
  uv_mutex_unlock(&q->mu);
  uv_async_send(&j->async);
}

/* ================================================================ vtable */

static int js_ensure(nt_history *hh, nt_hist_done_cb cb, void *ud) {
  hist_js *j = (hist_js *)hh;
  if (j->closing) return NT_ECLOSED;
  return start_ensure(j, 0, cb, ud);
}

/* The subject the stream stores a room subject's messages under: itself, or
 * natter.hist.<part>.<tenant>.<room> in a partition. */
static int stored_subject(const hist_js *j, const char *subject, char *out) {
  if (j->part < 0) return snprintf(out, NT_SUBJECT_MAX, "%s", subject) < NT_SUBJECT_MAX ? 0 : -1;
  return nt_subject_hist_of(out, NT_SUBJECT_MAX, (unsigned)j->part, subject);
}

static int js_publish(nt_history *hh, const char *subject, const void *data, size_t len,
                      const nt_hist_pub *pub) {
  hist_js *j = (hist_js *)hh;
  if (j->closing) return NT_ECLOSED;
  char live[NT_SUBJECT_MAX], stored[NT_SUBJECT_MAX];
  const char *id = pub && pub->msg_id ? pub->msg_id : "";
  if (nt_subject_live_of(live, sizeof live, subject) < 0 || (len && !data) ||
      (*id && !nt_hist_msgid_valid(id)) || (pub && pub->msg_id && !*id) ||
      stored_subject(j, subject, stored) < 0)
    return NT_EINVAL;
  if (j->next_tok - j->head_tok >= RING_CAP) return NT_EAGAIN; /* the stream is far behind */
  int over = nt_hist_over_quota(j->quota, j->max_msg_bytes, subject, len, uv_now(j->loop));
  subject = stored; /* what the stream captures */
  size_t sl = strlen(subject), il = strlen(id);
  uint8_t *buf = malloc(sl + 1 + il + 1 + len);
  if (!buf) return NT_ENOMEM;
  memcpy(buf, subject, sl + 1);
  memcpy(buf + sl + 1, id, il + 1);
  if (len) memcpy(buf + sl + il + 2, data, len);
  uint64_t tok = j->next_tok, now = uv_now(j->loop);
  pend *p = &j->ring[tok & (RING_CAP - 1)];
  *p = (pend){.token = tok, .sent_ms = now, .deadline_ms = now + j->ack_timeout_ms,
              .live_only = over, .len = len, .buf = buf, .cb = pub ? pub->on_ack : NULL,
              .ud = pub ? pub->ud : NULL};
  /* over the tenant's budget or the size limit: refused — neither stored nor delivered,
   * so every delivered message is a stored one (NT_ELIMIT on the next wake-up) */
  int rc = over ? 0 : send_pend(j, p);
  if (rc) {
    free(buf);
    *p = (pend){0};
    return rc;
  }
  j->next_tok++;
  j->st.published++;
  if (over) {
    j->st.over_quota++;
    queue_limit(j, tok);
  }
  return 0;
}

static int valid_room_subject(const char *subject) {
  char tmp[NT_SUBJECT_MAX];
  return subject && strlen(subject) < NT_SUBJECT_MAX &&
         nt_subject_live_of(tmp, sizeof tmp, subject) >= 0;
}

static int start_fetch(hist_js *j, int kind, const char *subject, uint64_t a, uint64_t b,
                       size_t max, nt_hist_cb cb, void *ud) {
  if (j->closing) return NT_ECLOSED;
  if (!cb || !max || !valid_room_subject(subject)) return NT_EINVAL;
  if (!j->storing) return NT_EAGAIN;
  job *jb = calloc(1, sizeof *jb);
  if (!jb) return NT_ENOMEM;
  jb->kind = kind;
  if (stored_subject(j, subject, jb->subject) < 0) {
    free(jb);
    return NT_EINVAL;
  }
  jb->a = a;
  jb->b = b;
  jb->max = max;
  jb->cb = cb;
  jb->ud = ud;
  int rc = nt_hist_gate_enter(&j->gate, &jb->gn, uv_now(j->loop));
  if (rc == NT_HIST_GATE_WAIT) return 0;
  if (rc == NT_HIST_GATE_RUN) {
    jb->gated = 1;
    rc = queue_job(j, jb, 0);
  }
  if (rc) free(jb);
  return rc;
}

static int js_fetch_after(nt_history *hh, const char *subject, uint64_t after, uint64_t upto,
                          size_t max, nt_hist_cb cb, void *ud) {
  return start_fetch((hist_js *)hh, J_AFTER, subject, after, upto, max, cb, ud);
}

static int js_fetch_page(nt_history *hh, const char *subject, uint64_t before, size_t limit,
                         nt_hist_cb cb, void *ud) {
  return start_fetch((hist_js *)hh, J_PAGE, subject, before, 0, limit, cb, ud);
}

static int js_storing(nt_history *hh) {
  hist_js *j = (hist_js *)hh;
  return j->storing && !j->closing;
}

static void js_stats(nt_history *hh, nt_hist_stats *out) {
  hist_js *j = (hist_js *)hh;
  *out = j->st;
  /* Publications are sent to the stream from the start (tracked, resent live-only if it
   * never answers), but the metric says "storing" only once the stream has confirmed. */
  out->storing = j->storing && j->confirmed && !j->closing;
}

static void hist_closed(uv_handle_t *h) {
  hist_js *j = h->data;
  xq_release(j->q);
  if (j->own_quota) nt_hist_quota_free(j->quota);
  free(j->ring);
  free(j);
}

static void tick_closed(uv_handle_t *h) {}

static void js_destroy(nt_history *hh) {
  hist_js *j = (hist_js *)hh;
  if (j->closing) return;
  j->closing = 1;
  xq *q = j->q;
  if (j->tick_open) uv_close((uv_handle_t *)&j->tick, tick_closed);
  /* Closing the connection first makes requests in flight return at once; then the
   * workers finish their job and exit. */
  uv_mutex_lock(&q->mu);
  q->stop = 1;
  uv_cond_broadcast(&q->cv);
  uv_mutex_unlock(&q->mu);
  if (j->nc) natsConnection_Close(j->nc);
  for (int i = 0; i < j->nthreads; i++) uv_thread_join(&j->th[i]);
  uv_mutex_lock(&q->mu);
  job *todo = q->todo, *done = q->done;
  q->todo = q->todo_tail = q->done = q->done_tail = NULL;
  q->ntodo = 0;
  q->nacks = 0;
  q->async = NULL; /* the ack handler drops what comes from now on */
  uv_mutex_unlock(&q->mu);
  /* callbacks now, as the contract says: finished jobs first, then the unstarted ones */
  while (done) {
    job *next = done->next;
    finish_job(j, done, 1);
    done = next;
  }
  while (todo) {
    job *next = todo->next;
    finish_job(j, todo, 1);
    todo = next;
  }
  for (nt_hist_gate_node *gn = nt_hist_gate_take_all(&j->gate), *nx; gn; gn = nx) {
    nx = gn->next;
    finish_job(j, (job *)((char *)gn - offsetof(job, gn)), 1);
  }
  if (j->ack_sub) natsSubscription_Destroy(j->ack_sub);
  j->ack_sub = NULL;
  jsCtx_Destroy(q->js);
  q->js = NULL;
  if (j->nc) natsConnection_Destroy(j->nc);
  j->nc = NULL;
  for (uint64_t tok = j->head_tok; tok < j->next_tok; tok++) { /* unknown: may be stored */
    pend *p = &j->ring[tok & (RING_CAP - 1)];
    if (p->token == tok && !p->done) complete(j, p, NT_ECLOSED, 0, 0);
  }
  for (size_t i = 0; i < RING_CAP; i++) free(j->ring[i].buf);
  uv_close((uv_handle_t *)&j->async, hist_closed);
}

static const nt_history_vtab js_vtab = {
    .ensure = js_ensure,
    .publish = js_publish,
    .fetch_after = js_fetch_after,
    .fetch_page = js_fetch_page,
    .storing = js_storing,
    .stats = js_stats,
    .destroy = js_destroy,
};

/* ================================================================ creation */

static natsStatus connect_nats(hist_js *j, const char *urls, const char *name,
                               const nt_nats_sec *sec) {
  char *buf = strdup(urls);
  const char *list[32];
  int n = buf ? nt_nats_split_urls(buf, list, 32) : -1;
  if (n <= 0) {
    free(buf);
    return NATS_INVALID_ARG;
  }
  char cname[200];
  snprintf(cname, sizeof cname, "%s-history", name ? name : "natter");
  natsOptions *o = NULL;
  natsStatus s = nt_nats_opts_new(list, n, cname, sec, &o);
  if (s != NATS_OK) {
    free(buf);
    return s;
  }
  /* with a connected callback the first failed attempt does not fail the creation:
   * nats.c keeps dialling from its reconnect thread, requests fail until then */
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, on_nats_connected, NULL);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 1000);
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
  if (s == NATS_OK) s = natsConnection_Connect(&j->nc, o);
  if (s == NATS_NOT_YET_CONNECTED) s = NATS_OK;
  natsOptions_Destroy(o);
  free(buf);
  return s;
}

int nt_history_js_new(uv_loop_t *loop, nt_bus *bus, const char *urls, const char *name,
                      const nt_hist_cfg *cfg, const nt_hist_handler *h, nt_history **out) {
  if (!loop || !bus || !urls || !cfg || !out || cfg->max_per_room < 1 || cfg->replicas < 1 ||
      cfg->replicas > 5 || cfg->max_age_s < 0 || cfg->dedupe_window_s < 0)
    return NT_EINVAL;
  const char *base = cfg->stream ? cfg->stream : NT_HISTORY_STREAM;
  char stream[64], other[64];
  int part = cfg->partition - 1;
  if (part < -1 || part >= NT_HISTORY_SHARDS_MAX) return NT_EINVAL;
  /* the stream of the other layout (one stream / partitions), named in a warning */
  snprintf(other, sizeof other, "%s_0", base);
  if (part >= 0) snprintf(other, sizeof other, "%s", base);
  if (strlen(base) >= 60 || !nt_bus_subject_valid(base, 0) || strchr(base, '.'))
    return NT_EINVAL;
  snprintf(stream, sizeof stream, part < 0 ? "%s" : "%s_%d", base, part);
  hist_js *j = calloc(1, sizeof *j);
  xq *q = calloc(1, sizeof *q);
  pend *ring = calloc(RING_CAP, sizeof *ring);
  nt_hist_quota *quota = cfg->quota ? cfg->quota
                                    : nt_hist_quota_new(cfg->tenant_bytes,
                                                        nt_hist_quota_window_ms(cfg));
  if (!j || !q || !ring || !quota || uv_mutex_init(&q->mu) != 0) {
    if (!cfg->quota) nt_hist_quota_free(quota);
    free(j);
    free(q);
    free(ring);
    return NT_ENOMEM;
  }
  if (uv_cond_init(&q->cv) != 0) {
    uv_mutex_destroy(&q->mu);
    if (!cfg->quota) nt_hist_quota_free(quota);
    free(j);
    free(q);
    free(ring);
    return NT_ENOMEM;
  }
  atomic_init(&q->refs, 1); /* the history's */
  snprintf(q->stream, sizeof q->stream, "%s", stream);
  snprintf(q->other, sizeof q->other, "%s", other);
  q->part = part;
  q->max_age_s = cfg->max_age_s;
  q->max_per_room = cfg->max_per_room;
  q->max_bytes = cfg->max_bytes ? (int64_t)cfg->max_bytes : DEFAULT_MAX_BYTES;
  q->max_msg_bytes = cfg->max_msg_bytes ? (int64_t)cfg->max_msg_bytes : -1;
  q->memory_storage = cfg->memory_storage;
  q->replicas = cfg->replicas;
  q->dedupe_ns = (int64_t)((cfg->dedupe_window_s > 0 ? cfg->dedupe_window_s
                                                     : DEFAULT_DEDUPE_S) * 1e9);
  j->ack_timeout_ms = cfg->ack_timeout_ms ? cfg->ack_timeout_ms : DEFAULT_ACK_TIMEOUT_MS;
  j->base.vt = &js_vtab;
  j->loop = loop;
  j->bus = bus;
  if (h) j->h = *h;
  j->q = q;
  j->ring = ring;
  j->quota = quota;
  j->own_quota = !cfg->quota;
  j->part = part;
  j->max_msg_bytes = cfg->max_msg_bytes;
  j->head_tok = j->next_tok = 1;
  nt_hist_gate_init(&j->gate, NT_HIST_JS_READS_RUNNING, NT_HIST_JS_READS_WAITING);
  j->storing = 1; /* until the stream says otherwise: early publications are tracked */
  uv_async_init(loop, &j->async, on_async);
  j->async.data = j;
  q->async = &j->async;

  natsStatus s = connect_nats(j, urls, name, cfg->nats_sec);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = JS_WAIT_MS;
  if (s == NATS_OK) s = natsConnection_JetStream(&q->js, j->nc, &jo);
  natsInbox *ib = NULL;
  if (s == NATS_OK) s = natsInbox_Create(&ib);
  if (s == NATS_OK) {
    snprintf(j->inbox, sizeof j->inbox, "%s", ib);
    char wild[96];
    snprintf(wild, sizeof wild, "%s.*", ib);
    atomic_fetch_add(&q->refs, 1); /* the subscription's, dropped in on_ack_complete */
    s = natsConnection_Subscribe(&j->ack_sub, j->nc, wild, on_ack, q);
    if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(j->ack_sub, on_ack_complete, q);
    else atomic_fetch_sub(&q->refs, 1);
    if (s == NATS_OK) natsSubscription_SetPendingLimits(j->ack_sub, -1, -1);
  }
  natsInbox_Destroy(ib);
  for (int i = 0; s == NATS_OK && i < NWORKERS; i++) {
    if (uv_thread_create(&j->th[i], nt_hjs_worker, q) != 0) break;
    j->nthreads++;
  }
  if (s != NATS_OK || j->nthreads == 0) {
    char ru[NT_URL_REDACTED_MAX], re[512];
    nt_log_error("history cannot start", "{s:s, s:s}", "urls", nt_url_redact(urls, ru, sizeof ru),
                 "error", nt_url_redact(nats_GetLastError(NULL) ? nats_GetLastError(NULL)
                                                                : natsStatus_GetText(s),
                                        re, sizeof re));
    js_destroy(&j->base); /* frees in the async close callback */
    return s == NATS_INVALID_ARG ? NT_EINVAL : NT_EBUS;
  }
  uv_timer_init(loop, &j->tick);
  j->tick.data = j;
  j->tick_open = 1;
  uv_timer_start(&j->tick, on_tick, TICK_MS, TICK_MS);
  start_ensure(j, 0, NULL, NULL);
  if (cfg->memory_storage)
    nt_log_warn("history on memory storage: nats-server 2.9 computes each republished "
                "message's previous sequence by scanning a memory stream (measured ~2k msg/s "
                "against ~85k with file storage); prefer --history-storage file",
                "{s:s}", "stream", q->stream);
  *out = &j->base;
  return 0;
}
