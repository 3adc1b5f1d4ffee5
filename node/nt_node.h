/* nt_node: the coordinator — listeners, upgrade and auth, client actions, bus fan-out,
 * presence, liveness sweeps, drain. Owns the connections, the hub, the bus, presence and
 * the verifier. Loop thread only (signals arrive through uv_signal). */
#ifndef NT_NODE_H
#define NT_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nt_auth.h"
#include "nt_bus.h"
#include "nt_config.h"
#include "nt_conn.h"
#include "nt_hub.h"
#include "nt_metrics.h"
#include "nt_presence.h"

typedef struct nt_node nt_node;

/* Creates a node for `cfg` (borrowed; must outlive the node). Returns NULL on failure. */
nt_node *nt_node_new(uv_loop_t *loop, const nt_config *cfg);

/* Handlers to give the bus and presence implementations so they report to this node. */
nt_bus_handler nt_node_bus_handler(nt_node *n);
nt_presence_handler nt_node_presence_handler(nt_node *n);

/* Hands over the bus, presence store and verifier (the node owns and destroys them). */
void nt_node_attach(nt_node *n, nt_bus *bus, nt_presence *pres, nt_auth *auth);

/* Binds the listeners and starts timers. Returns 0 or a negative code (logged). */
int nt_node_start(nt_node *n);

/* SIGTERM: readiness false, new upgrades refused, clients closed with 1001 after
 * --drain-grace, presence removed, then everything is closed so uv_run returns. */
void nt_node_drain(nt_node *n);

/* Immediate stop (SIGINT, tests): closes clients, listeners, bus and presence handles.
 * uv_run returns once all are closed; then call nt_node_free. */
void nt_node_stop(nt_node *n);
void nt_node_free(nt_node *n);

const char *nt_node_id(const nt_node *n);
const nt_metrics *nt_node_metrics(const nt_node *n);

/* ---- for nt_conn (the connection calls back into its node) ---- */

/* A complete HTTP request arrived on a connection in the HTTP phase; `rest` holds bytes
 * that followed it (WebSocket frames after an upgrade). */
void nt_node_on_http(nt_node *n, nt_conn *c, const nt_http_req *req, const uint8_t *rest,
                     size_t rest_len);
/* A complete text or binary message arrived (UTF-8 already checked for text). */
void nt_node_on_ws_message(nt_node *n, nt_conn *c, int opcode, const uint8_t *data,
                           size_t len);
/* The connection is closing: leave rooms, drop presence, publish events. Called once. */
void nt_node_on_conn_closing(nt_node *n, nt_conn *c);
/* The connection's memory is about to be freed. */
void nt_node_on_conn_free(nt_node *n, nt_conn *c);
/* Adds the connection to the per-turn flush list. */
void nt_node_mark_dirty(nt_node *n, nt_conn *c);
/* Limits and counters the connection needs. */
size_t nt_node_send_queue_bytes(const nt_node *n);
size_t nt_node_max_message_bytes(const nt_node *n);
nt_metrics *nt_node_metrics_mut(nt_node *n);
uv_loop_t *nt_node_loop(nt_node *n);
/* Shared read buffer (one per node: reads are processed synchronously). */
void nt_node_read_buffer(nt_node *n, uv_buf_t *buf);
/* The node's permessage-deflate streams (nt_deflate.h); NULL with --compression off. */
struct nt_deflate *nt_node_deflate(nt_node *n);

/* SIGHUP: reloads the TLS certificate and key from their files for new connections
 * (established ones keep theirs). Failures are logged; the old certificate stays. */
void nt_node_reload(nt_node *n);

#endif
