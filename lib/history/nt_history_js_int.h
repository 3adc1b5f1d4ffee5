/* nt_history_js_int.h: what the two halves of the JetStream history share — the job
 * queue between the loop thread (nt_history_js.c) and the worker threads that run
 * blocking JetStream reads (nt_history_js_read.c). Private to those two files. */
#ifndef NT_HISTORY_JS_INT_H
#define NT_HISTORY_JS_INT_H

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "nt_hist_gate.h"
#include "nt_history.h"
#include "nt_subject.h"

#define JS_WAIT_MS 1000          /* one JetStream request (direct get, stream create) */
#define JOB_DEADLINE_MS 5000     /* one fetch as a whole */
#define PAGE_MAX_READS 4096      /* direct gets one page may cost */

/* ================================================================ threading
 *
 * The loop thread owns everything in hist_js. Worker threads run jobs (blocking nats.c
 * JetStream calls on the history's own connection) and nats.c's delivery thread parses
 * the stream's acknowledgments; both hand their results to the loop through `xq` (one
 * mutex, one uv_async: one wake-up drains any number of results). xq is reference
 * counted — the history's and the ack subscription's (dropped in its on-complete
 * callback) — because nats.c may run the ack handler after the history is gone; it then
 * finds async == NULL and drops the ack. */

enum { J_ENSURE, J_AFTER, J_PAGE };
/* stored / this message refused / stream unavailable / over quota (queued by the loop) */
enum { ACK_OK, ACK_FAIL, ACK_DOWN, ACK_LIMIT };

typedef struct job {
  struct job *next;
  int kind;
  int probe;             /* J_ENSURE started by the history itself */
  nt_hist_gate_node gn;  /* AFTER and PAGE: their place in the read gate (loop only) */
  int gated;             /* holds a running place of the gate */
  char subject[NT_SUBJECT_MAX];
  uint64_t a, b;         /* AFTER: after, upto; PAGE: before */
  size_t max;
  nt_hist_cb cb;
  nt_hist_done_cb done;
  void *ud;
  /* results, written by the worker */
  int status;
  int anchored, more;
  natsMsg **nm;          /* AFTER and PAGE: ascending sequence, destroyed on the loop */
  size_t n, cap;
  char err[160];         /* ENSURE: why it failed */
  int stream_warn;       /* ENSURE: the existing stream could not be updated */
  uint64_t other_msgs;   /* ENSURE: messages in the stream of the other layout (q->other) */
} job;

typedef struct ackitem {
  uint64_t token;
  int kind;
  int duplicate;         /* ACK_OK: the stream already had its Nats-Msg-Id */
  uint64_t seq;          /* ACK_OK: its stream sequence */
} ackitem;

typedef struct xq {
  uv_mutex_t mu;
  uv_cond_t cv;
  job *todo, *todo_tail; /* for workers */
  size_t ntodo;
  job *done, *done_tail; /* for the loop */
  ackitem *acks;
  size_t nacks, capacks;
  uv_async_t *async;     /* NULL once the history is closing */
  int stop;              /* workers exit */
  atomic_int refs;
  /* immutable after creation: what the workers need */
  jsCtx *js;
  char stream[64];
  char other[64];        /* the stream of the other --history-streams layout */
  int part;              /* partition, -1: the one stream over natter.room.> */
  double max_age_s;
  long max_per_room;
  int64_t max_bytes, max_msg_bytes; /* stream max_bytes, max_msg_size (-1: none) */
  int64_t dedupe_ns;     /* stream duplicate_window */
  int memory_storage, replicas;
} xq;

/* A worker thread: runs queued jobs until q->stop (arg: the xq). */
void nt_hjs_worker(void *arg);

#endif
