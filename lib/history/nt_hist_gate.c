/* nt_hist_gate: bounded history reads in flight, a bounded ordered wait behind them. */
#include "nt_hist_gate.h"

#include "nt_err.h"

void nt_hist_gate_init(nt_hist_gate *g, size_t max_running, size_t max_waiting) {
  *g = (nt_hist_gate){.max_running = max_running ? max_running : 1,
                      .max_waiting = max_waiting};
}

int nt_hist_gate_enter(nt_hist_gate *g, nt_hist_gate_node *n, uint64_t now_ms) {
  n->next = NULL;
  if (g->running < g->max_running && !g->head) {
    g->running++;
    return NT_HIST_GATE_RUN;
  }
  if (g->waiting >= g->max_waiting) {
    g->refused++;
    return NT_EAGAIN;
  }
  n->at_ms = now_ms;
  if (g->tail) g->tail->next = n;
  else g->head = n;
  g->tail = n;
  g->waiting++;
  g->waited++;
  return NT_HIST_GATE_WAIT;
}

static nt_hist_gate_node *pop(nt_hist_gate *g) {
  nt_hist_gate_node *n = g->head;
  if (!n) return NULL;
  g->head = n->next;
  if (!g->head) g->tail = NULL;
  g->waiting--;
  n->next = NULL;
  return n;
}

nt_hist_gate_node *nt_hist_gate_done(nt_hist_gate *g) {
  if (g->running) g->running--;
  if (!g->head || g->running >= g->max_running) return NULL;
  g->running++;
  return pop(g);
}

nt_hist_gate_node *nt_hist_gate_expired(nt_hist_gate *g, uint64_t now_ms,
                                        uint64_t max_wait_ms) {
  if (!g->head || now_ms - g->head->at_ms <= max_wait_ms) return NULL;
  g->expired++;
  return pop(g);
}

nt_hist_gate_node *nt_hist_gate_take_all(nt_hist_gate *g) {
  nt_hist_gate_node *all = g->head;
  g->head = g->tail = NULL;
  g->waiting = 0;
  return all;
}
