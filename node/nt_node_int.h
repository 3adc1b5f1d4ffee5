/* nt_node_int: the node's private state, shared by its implementation files
 * (nt_node.c: lifecycle, listeners, HTTP; nt_client.c: client actions; nt_fanout.c: bus
 * messages to local members). Not for other modules. */
#ifndef NT_NODE_INT_H
#define NT_NODE_INT_H

#include "nt_heap.h"
#include "nt_node.h"
#include "nt_resume.h"

#define NT_READ_BUF (64 * 1024)

/* A listening socket of our own, watched by a uv_poll_t (connections are accepted with
 * accept4, straight into the non-blocking sockets nt_conn polls; nt_sock.h). */
typedef struct nt_listener {
  uv_poll_t poll;          /* first member; poll.data == the node */
  int fd;                  /* closed in the poll's close callback */
  int api;                 /* --api-listen */
} nt_listener;

struct nt_node {
  uv_loop_t *loop;
  const nt_config *cfg;
  nt_bus *bus;
  nt_presence *pres;
  nt_auth *auth;
  struct nt_resume *res;   /* room history (nt_resume.c); NULL with --history off */
  struct nt_tls_ctx *tls;  /* TLS of --listen (and of --api-listen with --api-tls); NULL: off */
  struct nt_deflate *pmd;  /* permessage-deflate streams; NULL with --compression off */
  struct nt_integ *integ;  /* HTTP integration (nt_integ.c); NULL without --integration-url */
  struct nt_webhook *webhook; /* signed webhooks (nt_webhook.c); NULL without --webhook-url */
  int api_tls;             /* the API listener speaks TLS */
  nt_hub hub;
  nt_map uas;              /* interned User-Agent strings of the connections (nt_intern) */
  nt_heap_trim heap;       /* malloc_trim once a burst of handshakes is over (nt_heap.h) */
  nt_metrics m;

  nt_listener listener, api_listener;
  uv_timer_t accept_retry; /* out of descriptors: listeners rest, then poll again */
  uint64_t accept_logged;  /* when "accept failed" was last logged (uv_now ms) */
  uv_prepare_t prep;
  uv_check_t check;
  uv_timer_t sweep, drain_timer;
  int handles_open;

  nt_conn *dirty;          /* connections with queued output this turn */
  nt_conn *all;            /* every connection (doubly linked) */
  size_t nconns;           /* all connections, any phase */
  size_t nws;              /* upgraded connections */
  long max_ws;

  char id[NT_ID_MAX + 1];
  char node_subject[NT_SUBJECT_MAX];
  nt_bus_sub *node_sub;
  int bus_up, store_up, bus_ever_up, store_ever_up;
  int draining, stopping, stopped;

  nt_frame *ping;
  char **origins;
  size_t norigins;
  struct nt_rand *rand;     /* ids clients see (nt_rand.h) */
  uint8_t rbuf[NT_READ_BUF];
};

/* Writes `len` random characters from [A-Za-z0-9] plus a NUL into out. */
void nt_node_random_id(nt_node *n, char *out, size_t len);
int64_t nt_now_ms(void);

/* nt_node.c, for nt_api.c and nt_authz.c */
/* 1 when NATS and Redis are connected and the node is not draining (GET /readyz). */
int nt_node_ready(const nt_node *n);
/* Completes an upgrade that passed authentication (and the authorizer): 101, WebSocket
 * phase, welcome. `rest` holds bytes that followed the request. */
void nt_node_accept_upgrade(nt_node *n, nt_conn *c, const nt_http_req *req,
                            const uint8_t *rest, size_t rest_len);
/* Refuses an upgrade with `status` and a plain-text reason, then closes. */
void nt_node_refuse_upgrade(nt_node *n, nt_conn *c, int status, const char *why);

/* nt_client.c */
void nt_client_on_message(nt_node *n, nt_conn *c, const uint8_t *data, size_t len);
void nt_client_welcome(nt_node *n, nt_conn *c);
void nt_client_closing(nt_node *n, nt_conn *c);
void nt_client_send_error(nt_node *n, nt_conn *c, const char *code, const char *msg,
                          const char *reqid);
void nt_client_publish_event(nt_node *n, int kind, const nt_conn *c, const char *tenant,
                             const char *user, const char *conn_id, const char *room,
                             int reason);

/* nt_fanout.c */
void nt_fanout_on_bus_msg(void *ud, const char *subject, const uint8_t *data, size_t len,
                          const char *reply, const nt_bus_sub *sub);
/* 1 when an envelope from the bus may be rendered into client frames. */
struct Natter__Envelope;
int nt_fanout_renderable(const struct Natter__Envelope *env);

#endif
