/* nt_contract: the loop helpers and the NATS bus factory the contract suites share. */
#include "nt_contract.h"

#include <stdio.h>

typedef struct waiter {
  uv_timer_t t;
  int (*cond)(void *ud);
  void *ud;
  uint64_t deadline;
  int met, closed;
} waiter;

static void waiter_tick(uv_timer_t *t) {
  waiter *w = t->data;
  if (w->cond && w->cond(w->ud)) w->met = 1;
  if (w->met || uv_now(t->loop) >= w->deadline) uv_stop(t->loop);
}

static void waiter_closed(uv_handle_t *h) { ((waiter *)h->data)->closed = 1; }

int nt_ct_run_until(uv_loop_t *loop, int (*cond)(void *ud), void *ud, int timeout_ms) {
  waiter w = {.cond = cond, .ud = ud};
  if (cond && cond(ud)) return 1;
  uv_update_time(loop);
  w.deadline = uv_now(loop) + (uint64_t)timeout_ms;
  uv_timer_init(loop, &w.t);
  w.t.data = &w;
  uv_timer_start(&w.t, waiter_tick, 2, 2);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w.t, waiter_closed);
  while (!w.closed) uv_run(loop, UV_RUN_NOWAIT);
  return w.met;
}

int nt_ct_close_loop(uv_loop_t *loop) {
  for (int i = 0; i < 1000 && uv_loop_alive(loop); i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    if (uv_loop_alive(loop)) nt_ct_run_until(loop, NULL, NULL, 1);
  }
  int rc = uv_loop_close(loop);
  if (rc) uv_print_all_handles(loop, stderr);
  return rc;
}

nt_bus *nt_ct_nats_bus(void *ctx, uv_loop_t *loop, const nt_bus_handler *h) {
  nt_bus *b = NULL;
  if (nt_bus_nats_new(loop, ctx, "contract", h, &b) != 0 || !nt_bus_connected(b)) {
    if (b) nt_bus_destroy(b);
    return NULL;
  }
  return b;
}

unsigned nt_ct_unique(void) {
  static unsigned n;
  return ++n;
}
