/* nt_integ: HTTP integration of routes (--integration-url) — $connect, $disconnect and
 * message routes invoked as API Gateway WebSocket Lambda proxy events over HTTP.
 *
 * Each invocation is a POST through the node's nt_httpc (libcurl multi on the loop). One
 * connection's invocations run one at a time in the order its frames arrived, so its
 * $disconnect goes out after its earlier invocations finished. At most
 * --integration-concurrency run at once per node; up to --integration-queue more route
 * invocations wait, past that the frame is answered with `error` rate_limited.
 * $connect runs after the JWT (and the external authorizer) accepted the upgrade and
 * before the 101: reading stays paused meanwhile, as with nt_authz.
 * Per connection the integration keeps a small record (the token's claims, its Host,
 * connectedAt) from the upgrade until its last invocation finished.
 * Threading: loop thread only. Events and answers: nt_integ_event.h. */
#ifndef NT_INTEG_H
#define NT_INTEG_H

#include <stddef.h>
#include <stdint.h>

#include "nt_conn.h"
#include "nt_http.h"

struct nt_chat;
typedef struct nt_integ nt_integ;

/* Creates the node's integration when --integration-url is set (n->integ, else NULL).
 * Returns 0, or a negative code (logged). */
int nt_integ_start(struct nt_chat *n);

/* Fails what is pending (replies dropped, $disconnects not retried), closes the handles;
 * the memory goes with the last close callback. */
void nt_integ_close(struct nt_chat *n);

/* An upgrade of `c` passed the JWT (`token`, verified): records what later events need.
 * Gives `c` its connection id when it has none. 0 or NT_ENOMEM. */
int nt_integ_upgrade(struct nt_chat *n, nt_conn *c, const nt_http_req *req, const char *token);

/* Starts the $connect invocation of `c` (reading paused, identity verified) and returns 1:
 * its answer accepts (2xx) or refuses (its status; no answer: 503) the upgrade later.
 * Returns 0 when $connect is not an integration route (accept now), or a negative code
 * when it cannot be sent (refuse with 503). `rest` (bytes after the request) is copied. */
int nt_integ_connect(struct nt_chat *n, nt_conn *c, const nt_http_req *req,
                     const uint8_t *rest, size_t rest_len);

/* A client text frame: returns 1 when it went to the integration (or was refused with
 * rate_limited), 0 when natter handles it (built-in actions, natter's own $default). */
int nt_integ_on_message(struct nt_chat *n, nt_conn *c, const uint8_t *data, size_t len);

/* `c` is closing; `welcomed`: it had been accepted (its $disconnect is due). */
void nt_integ_closing(struct nt_chat *n, nt_conn *c, int welcomed);

/* `c` is being freed (refused upgrades: forget its record). */
void nt_integ_conn_free(struct nt_chat *n, nt_conn *c);

#endif
