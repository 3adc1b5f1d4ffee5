/* nt_history_js_read: the worker side of the JetStream history — stream creation and
 * the blocking direct-get reads behind resume and history pages, run on worker threads
 * (nt_history_js_int.h); results go back to the loop through the job queue. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_history_js_int.h"
#include "nt_log.h"


static int js_err(natsStatus s) {
  switch (s) {
  case NATS_OK: return 0;
  case NATS_TIMEOUT: return NT_ETIMEOUT;
  case NATS_NO_MEMORY: return NT_ENOMEM;
  case NATS_CONNECTION_CLOSED: return NT_ECLOSED;
  default: return NT_EBUS;
  }
}

static int64_t mono_ms(void) { return nats_Now(); }

static int job_push(job *j, natsMsg *m) {
  if (j->n == j->cap) {
    size_t cap = j->cap ? j->cap * 2 : 16;
    natsMsg **v = realloc(j->nm, cap * sizeof *v);
    if (!v) return -1;
    j->nm = v;
    j->cap = cap;
  }
  j->nm[j->n++] = m;
  return 0;
}

/* The first message of `subject` with sequence >= seq, or NULL (*st: NATS_NOT_FOUND when
 * there is none). */
static natsMsg *next_of(xq *q, const char *subject, uint64_t seq, natsStatus *st) {
  jsDirectGetMsgOptions dg;
  jsDirectGetMsgOptions_Init(&dg);
  dg.Sequence = seq;
  dg.NextBySubject = subject;
  natsMsg *m = NULL;
  *st = js_DirectGetMsg(&m, q->js, q->stream, NULL, &dg);
  return *st == NATS_OK ? m : NULL;
}

static void run_ensure(xq *q, job *j) {
  const char *subjects[] = {NT_SUBJECT_ROOM_PREFIX ">"};
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = q->stream;
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.MaxAge = (int64_t)(q->max_age_s * 1e9);
  sc.MaxMsgsPerSubject = q->max_per_room;
  sc.MaxBytes = q->max_bytes;
  sc.MaxMsgSize = (int32_t)q->max_msg_bytes;
  sc.Storage = q->memory_storage ? js_MemoryStorage : js_FileStorage;
  sc.Replicas = q->replicas;
  sc.Discard = js_DiscardOld;
  sc.AllowDirect = true;
  sc.Duplicates = q->dedupe_ns;
  jsRePublish rp;
  jsRePublish_Init(&rp);
  rp.Source = NT_SUBJECT_ROOM_PREFIX ">";
  rp.Destination = NT_SUBJECT_LIVE_PREFIX ">";
  sc.RePublish = &rp;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_AddStream(&si, q->js, &sc, NULL, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr) {
    jerr = 0;
    s = js_UpdateStream(&si, q->js, &sc, NULL, &jerr);
    if (s != NATS_OK) {
      /* e.g. another storage type: keep the stream as it is if it republishes where the
       * nodes listen, say why once */
      const char *e = nats_GetLastError(NULL);
      snprintf(j->err, sizeof j->err, "%s", e && *e ? e : natsStatus_GetText(s));
      jsStreamInfo *cur = NULL;
      jsErrCode e2 = 0;
      if (js_GetStreamInfo(&cur, q->js, q->stream, NULL, &e2) == NATS_OK && cur->Config &&
          cur->Config->RePublish && cur->Config->RePublish->Destination &&
          !strcmp(cur->Config->RePublish->Destination, rp.Destination)) {
        s = NATS_OK;
        j->stream_warn = 1;
      }
      jsStreamInfo_Destroy(cur);
    }
  }
  if (s != NATS_OK && !j->err[0]) {
    const char *e = nats_GetLastError(NULL);
    snprintf(j->err, sizeof j->err, "%s", e && *e ? e : natsStatus_GetText(s));
  }
  jsStreamInfo_Destroy(si);
  j->status = js_err(s);
}

static void run_after(xq *q, job *j) {
  int64_t deadline = mono_ms() + JOB_DEADLINE_MS;
  int repair = j->b != 0;
  uint64_t x = j->a == 0 ? 1 : repair ? j->a + 1 : j->a; /* a resume reads `after` too */
  j->anchored = j->a == 0;
  for (;;) {
    if (mono_ms() > deadline) {
      j->status = NT_ETIMEOUT;
      return;
    }
    natsStatus s;
    natsMsg *m = next_of(q, j->subject, x, &s);
    if (!m) {
      if (s != NATS_NOT_FOUND) j->status = js_err(s);
      return;
    }
    uint64_t seq = natsMsg_GetSequence(m);
    if (seq <= j->a) { /* the message `since` itself: the window is intact */
      if (seq == j->a) j->anchored = 1;
      natsMsg_Destroy(m);
      x = seq + 1;
      continue;
    }
    if ((repair && seq > j->b) || j->n == j->max) {
      if (!(repair && seq > j->b)) j->more = 1;
      natsMsg_Destroy(m);
      return;
    }
    if (job_push(j, m)) {
      natsMsg_Destroy(m);
      j->status = NT_ENOMEM;
      return;
    }
    x = seq + 1;
  }
}

/* The newest `max` messages below `before`, oldest first. JetStream (2.9) reads only
 * forward (next message of a subject from a sequence), so the page is found by scanning
 * windows [lo, hi) backwards from `before`, each sized from the density the previous one
 * showed; the cost is about the page size plus a few reads per window. */
static void run_page(xq *q, job *j) {
  int64_t deadline = mono_ms() + JOB_DEADLINE_MS;
  size_t need = j->max + 1; /* one more tells whether older ones exist */
  uint64_t hi = j->a;
  natsStatus s;
  /* `before` past the room's newest message is the newest page: walking down to it from
   * far above would cost a read per empty window */
  {
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.LastBySubject = j->subject;
    natsMsg *m = NULL;
    s = js_DirectGetMsg(&m, q->js, q->stream, NULL, &dg);
    if (s == NATS_NOT_FOUND) return;
    if (s != NATS_OK) {
      j->status = js_err(s);
      return;
    }
    uint64_t top = natsMsg_GetSequence(m) + 1;
    natsMsg_Destroy(m);
    if (hi == 0 || hi > top) hi = top;
  }
  uint64_t w = need * 2;
  size_t reads = 0;
  while (j->n < need && hi > 1) {
    if (mono_ms() > deadline || reads > PAGE_MAX_READS) {
      j->more = 1; /* what we have is the newest part of the page */
      break;
    }
    uint64_t lo = hi > w ? hi - w : 1;
    size_t before_n = j->n, found = 0;
    /* the window's messages go in front of what was collected (older) */
    natsMsg **seg = NULL;
    size_t nseg = 0, capseg = 0;
    for (uint64_t x = lo;;) {
      reads++;
      natsMsg *m = next_of(q, j->subject, x, &s);
      if (!m) {
        if (s != NATS_NOT_FOUND) j->status = js_err(s);
        break;
      }
      uint64_t seq = natsMsg_GetSequence(m);
      if (seq >= hi) {
        natsMsg_Destroy(m);
        break;
      }
      if (nseg == capseg) {
        capseg = capseg ? capseg * 2 : 16;
        natsMsg **v = realloc(seg, capseg * sizeof *v);
        if (!v) {
          natsMsg_Destroy(m);
          j->status = NT_ENOMEM;
          break;
        }
        seg = v;
      }
      seg[nseg++] = m;
      x = seq + 1;
    }
    if (j->status == 0 && nseg) {
      size_t total = before_n + nseg;
      natsMsg **v = realloc(j->nm, total * sizeof *v);
      if (!v) {
        j->status = NT_ENOMEM;
      } else {
        memmove(v + nseg, v, before_n * sizeof *v);
        memcpy(v, seg, nseg * sizeof *v);
        j->nm = v;
        j->n = j->cap = total;
        nseg = 0;
      }
    }
    for (size_t i = 0; i < nseg; i++) natsMsg_Destroy(seg[i]);
    found = j->n - before_n;
    free(seg);
    if (j->status) return;
    hi = lo;
    if (found == 0) w *= 4;
    else {
      uint64_t want = (uint64_t)((double)(need > j->n ? need - j->n : 0) * (double)w /
                                 (double)found * 1.25) + 1;
      w = want > w ? want : w;
    }
  }
  if (j->n > j->max) { /* keep the newest `max` */
    size_t drop = j->n - j->max;
    for (size_t i = 0; i < drop; i++) natsMsg_Destroy(j->nm[i]);
    memmove(j->nm, j->nm + drop, j->max * sizeof *j->nm);
    j->n = j->max;
    j->more = 1;
  }
}

void nt_hjs_worker(void *arg) {
  xq *q = arg;
  for (;;) {
    uv_mutex_lock(&q->mu);
    while (!q->stop && !q->todo) uv_cond_wait(&q->cv, &q->mu);
    if (q->stop) {
      uv_mutex_unlock(&q->mu);
      return;
    }
    job *j = q->todo;
    q->todo = j->next;
    if (!q->todo) q->todo_tail = NULL;
    q->ntodo--;
    uv_mutex_unlock(&q->mu);

    if (j->kind == J_ENSURE) run_ensure(q, j);
    else if (j->kind == J_AFTER) run_after(q, j);
    else run_page(q, j);

    uv_mutex_lock(&q->mu);
    j->next = NULL;
    if (q->done_tail) q->done_tail->next = j;
    else q->done = j;
    q->done_tail = j;
    if (q->async) uv_async_send(q->async);
    uv_mutex_unlock(&q->mu);
  }
}
