/* nt_hist_gate: bounded work in flight for history reads — at most `max_running` reads
 * handed to the workers at once; past that a read waits here, in order, at most
 * `max_waiting` of them and each at most a deadline; past both it is refused. A read that
 * finishes lets the oldest waiting one run. So a storm of resumes queues (and is answered
 * late) instead of failing at once, and what waits never grows without bound.
 *
 * Intrusive: the caller embeds an nt_hist_gate_node in each read. Pure logic (the caller
 * passes the clock); not thread-safe: one thread (the loop) owns a gate. */
#ifndef NT_HIST_GATE_H
#define NT_HIST_GATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct nt_hist_gate_node {
  struct nt_hist_gate_node *next;
  uint64_t at_ms;            /* when it started waiting */
} nt_hist_gate_node;

typedef struct nt_hist_gate {
  size_t running, max_running;
  size_t waiting, max_waiting;
  nt_hist_gate_node *head, *tail; /* waiting, oldest first */
  uint64_t waited;           /* reads that had to wait (a counter) */
  uint64_t refused;          /* reads refused: running and waiting both full */
  uint64_t expired;          /* reads that waited past the deadline */
} nt_hist_gate;

enum { NT_HIST_GATE_RUN = 0, NT_HIST_GATE_WAIT = 1 };

/* A gate letting `max_running` (>= 1) run and `max_waiting` wait. */
void nt_hist_gate_init(nt_hist_gate *g, size_t max_running, size_t max_waiting);

/* A new read: NT_HIST_GATE_RUN (it holds a running place: run it now),
 * NT_HIST_GATE_WAIT (queued: nt_hist_gate_done or nt_hist_gate_expired hands it back
 * later) or NT_EAGAIN (refused, nothing kept). */
int nt_hist_gate_enter(nt_hist_gate *g, nt_hist_gate_node *n, uint64_t now_ms);

/* A running read finished (its place is given back): returns the oldest waiting read,
 * which now holds that place (run it), or NULL. */
nt_hist_gate_node *nt_hist_gate_done(nt_hist_gate *g);

/* The oldest waiting read when it has waited more than `max_wait_ms`, taken out of the
 * queue (fail it), else NULL. Call until NULL. */
nt_hist_gate_node *nt_hist_gate_expired(nt_hist_gate *g, uint64_t now_ms,
                                        uint64_t max_wait_ms);

/* Takes every waiting read out (the history closes: fail them); returns the oldest, the
 * rest linked by `next`. */
nt_hist_gate_node *nt_hist_gate_take_all(nt_hist_gate *g);

#endif
