/* nt_nats_uv: a nats.c connection's socket events on a libuv loop, and the helpers the
 * NATS bus and the JetStream history share. */

/* The adapter header defines its functions with external linkage: it may be included in
 * exactly one translation unit of the program, and this is the one. */
#include <nats/adapters/libuv.h>

#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_log.h"
#include "nt_nats_uv.h"

/* The one place natsStatus becomes an nt_err. */
int nt_nats_err(natsStatus s) {
  switch (s) {
  case NATS_OK: return 0;
  case NATS_INVALID_SUBJECT: case NATS_INVALID_ARG: case NATS_INVALID_QUEUE_NAME:
  case NATS_INVALID_TIMEOUT: case NATS_ADDRESS_MISSING: return NT_EINVAL;
  case NATS_NO_MEMORY: return NT_ENOMEM;
  case NATS_INSUFFICIENT_BUFFER: /* reconnect buffer full */
  case NATS_NOT_YET_CONNECTED: case NATS_CONNECTION_DISCONNECTED: return NT_EAGAIN;
  case NATS_CONNECTION_CLOSED: case NATS_DRAINING: case NATS_INVALID_SUBSCRIPTION: return NT_ECLOSED;
  case NATS_MAX_PAYLOAD: return NT_ETOOLARGE;
  case NATS_TIMEOUT: return NT_ETIMEOUT;
  case NATS_NO_RESPONDERS: return NT_ENORESPONDER;
  case NATS_CONNECTION_AUTH_FAILED: return NT_EAUTH;
  case NATS_NOT_PERMITTED: return NT_EFORBIDDEN;
  default: return NT_EBUS;
  }
}
int nt_nats_split_urls(char *buf, const char **out, int max) {
  int n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ' || *tok == '\t') tok++;
    char *e = tok + strlen(tok);
    while (e > tok && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
    if (*tok == '\0') continue;
    if (n == max) return -1;
    out[n++] = tok;
  }
  return n;
}

/* ---------------------------------------------------------------- event adapter
 *
 * From the adapter header this module uses its state struct, its cross-thread event list
 * (uvScheduleToEventLoop), its poll callback (natsLibuvPoll) and uvPollUpdate, but
 * replaces the lifecycle around them, because the stock one:
 *  - creates its state only on the loop thread (else NATS_ILLEGAL_STATE), while with
 *    RetryOnFailedConnect the first connect succeeds on nats.c's reconnect thread: a bus
 *    started while NATS is down would never attach;
 *  - closes the stopped uv_poll_t of a dead socket only at the next attach, and uv_close
 *    does epoll_ctl(DEL) on the fd *number*, which by then may be another socket's (two
 *    buses on one loop: one went deaf after a server restart);
 *  - calls natsConnection_Close() on a later turn, maybe after the connection is freed.
 * So the state is created by nt_nats_uv_new, a poll handle is closed as soon as nats.c
 * removes all interest (right before it closes the socket), and destroy tears down. */

static void ev_dispatch(uv_async_t *a);

static int on_loop_thread(natsLibuvEvents *nle) {
  return uv_key_get(&uvLoopThreadKey) == (void *)nle->loop;
}

nt_nats_uv *nt_nats_uv_new(uv_loop_t *loop) {
  natsLibuvEvents *nle = calloc(1, sizeof *nle);
  uv_mutex_t *lock = malloc(sizeof *lock);
  uv_async_t *sched = malloc(sizeof *sched);
  int ok = nle && lock && sched && uv_mutex_init(lock) == 0;
  if (ok && uv_async_init(loop, sched, ev_dispatch) != 0) {
    uv_mutex_destroy(lock);
    ok = 0;
  }
  if (!ok) {
    free(nle);
    free(lock);
    free(sched);
    return NULL;
  }
  natsLibuv_Init();
  natsLibuv_SetThreadLocalLoop(loop); /* this thread runs the loop */
  sched->data = nle;
  nle->loop = loop;
  nle->lock = lock;
  nle->scheduler = sched;
  return (nt_nats_uv *)nle;
}

static void poll_close(natsLibuvEvents *nle) {
  if (!nle->handle) return;
  uv_close((uv_handle_t *)nle->handle, uvHandleClosedCb); /* frees the handle */
  nle->handle = NULL;
}

/* Loop thread: starts polling the connection's new socket. */
static void poll_attach(natsLibuvEvents *nle) {
  poll_close(nle);
  uv_poll_t *h = malloc(sizeof *h);
  if (!h || uv_poll_init_socket(nle->loop, h, nle->socket) != 0) {
    /* pings then go unanswered and nats.c reconnects by itself */
    free(h);
    nt_log_error("bus cannot poll its socket", NULL);
    return;
  }
  h->data = nle;
  nle->handle = h;
  nle->events = UV_READABLE;
  if (uv_poll_start(h, UV_READABLE, natsLibuvPoll) != 0)
    nt_log_error("bus cannot poll its socket", NULL);
}

/* Loop thread. No interest left means nats.c is about to close the socket. */
static void poll_update(natsLibuvEvents *nle, int type, bool add) {
  if (!nle->handle) return;
  if (uvPollUpdate(nle, type, add) != NATS_OK) nt_log_error("bus cannot poll its socket", NULL);
  if (nle->events == 0) poll_close(nle);
}

/* Loop thread: events scheduled from nats.c threads, in order. */
static void ev_dispatch(uv_async_t *a) {
  natsLibuvEvents *nle = a->data;
  for (;;) {
    uv_mutex_lock(nle->lock);
    natsLibuvEvent *ev = nle->head;
    if (ev) {
      nle->head = ev->next;
      if (ev == nle->tail) nle->tail = NULL;
    }
    uv_mutex_unlock(nle->lock);
    if (!ev) return;
    if (ev->type == NATS_LIBUV_ATTACH) poll_attach(nle);
    else poll_update(nle, ev->type, ev->add);
    free(ev);
  }
}

/* nats.c calls the ev_* functions with its connection lock held, on the loop thread or
 * on one of its own threads; the latter are queued for ev_dispatch. Anything already
 * queued keeps later loop-thread calls queued too, so the order is preserved. */
static natsStatus ev_update(natsLibuvEvents *nle, int type, bool add) {
  if (on_loop_thread(nle) && nle->head == NULL) {
    poll_update(nle, type, add);
    return NATS_OK;
  }
  return uvScheduleToEventLoop(nle, type, add);
}

static natsStatus ev_read(void *user_data, bool add) {
  return ev_update(user_data, NATS_LIBUV_READ, add);
}

static natsStatus ev_write(void *user_data, bool add) {
  return ev_update(user_data, NATS_LIBUV_WRITE, add);
}

/* `loop` is our state: natsOptions_SetEventLoop passes it through untouched. */
static natsStatus ev_attach(void **user_data, void *loop, natsConnection *nc, natsSock sock) {
  natsLibuvEvents *nle = loop;
  nle->nc = nc;
  nle->socket = sock;
  *user_data = nle;
  if (on_loop_thread(nle) && nle->head == NULL) {
    poll_attach(nle);
    return NATS_OK;
  }
  return uvScheduleToEventLoop(nle, NATS_LIBUV_ATTACH, true);
}

/* The connection is closed (interest already removed); nle_close tears down later. */
static natsStatus ev_detach(void *user_data) { return NATS_OK; }

natsStatus nt_nats_uv_options(nt_nats_uv *u, natsOptions *o) {
  return natsOptions_SetEventLoop(o, u, ev_attach, ev_read, ev_write, ev_detach);
}

static void nle_sched_closed(uv_handle_t *h) {
  natsLibuvEvents *nle = h->data;
  uv_mutex_destroy(nle->lock);
  free(nle->lock);
  free(nle->scheduler);
  free(nle);
}

/* Loop thread, after natsConnection_Destroy: no nats.c thread uses the state any more.
 * Queued events are dropped (they refer to a freed connection) and both handles closed
 * at once, so no poll callback runs for it. */
void nt_nats_uv_close(nt_nats_uv *u) {
  natsLibuvEvents *nle = (natsLibuvEvents *)u;
  uv_mutex_lock(nle->lock);
  natsLibuvEvent *ev = nle->head;
  nle->head = nle->tail = NULL;
  uv_mutex_unlock(nle->lock);
  while (ev) {
    natsLibuvEvent *next = ev->next;
    free(ev);
    ev = next;
  }
  poll_close(nle);
  uv_close((uv_handle_t *)nle->scheduler, nle_sched_closed);
}
