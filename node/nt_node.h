/* nt_node: the composition root — builds the connections' environments and handlers
 * (node/net), embeds the chat state (node/chat: upgrades, client actions, fan-out,
 * resume), routes --listen and hands --api-listen to node/ops; listeners, per-turn flush,
 * liveness sweeps, drain and stop. Owns the connections, the bus, presence, history and
 * the verifier once attached. Loop thread only (signals arrive through uv_signal). */
#ifndef NT_NODE_H
#define NT_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nt_auth.h"
#include "nt_bus.h"
#include "nt_config.h"
#include "nt_conn.h"
#include "nt_history.h"
#include "nt_hub.h"
#include "nt_metrics.h"
#include "nt_presence.h"

typedef struct nt_node nt_node;

/* Creates a node for `cfg` (borrowed; must outlive the node). Returns NULL on failure. */
nt_node *nt_node_new(uv_loop_t *loop, const nt_config *cfg);

/* Handlers to give the bus and presence implementations so they report to this node.
 * The bus handler is the node's one entry of bus input: with --history on it also takes
 * the stream positions (on_seq_msg) that the resume state machine needs. */
nt_bus_handler nt_node_bus_handler(nt_node *n);
nt_presence_handler nt_node_presence_handler(nt_node *n);

/* Hands over the bus, presence store and verifier (the node owns and destroys them). */
void nt_node_attach(nt_node *n, nt_bus *bus, nt_presence *pres, nt_auth *auth);

/* Hands over the room history (NULL: --history off), owned by the node from here on.
 * Returns 0, or NT_ENOMEM after destroying `h`. */
int nt_node_attach_history(nt_node *n, nt_history *h);

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

/* ---- without sockets (tests, fuzzing) ---- */

/* Opens a connection on the WebSocket port (api 0) or the API port (api 1) whose peer is
 * the memory transport's `peer` (nt_conn.h; zeroed by the caller, outliving the
 * connection): from here on it is what an accepted socket would be, source address
 * 127.0.0.1. Returns the connection, or NULL (no memory, stopping: the peer then sees
 * closed). */
nt_conn *nt_node_connect_mem(nt_node *n, int api, nt_mem_peer *peer);
/* Makes the ids this node hands out from now on the same on every run (a fixed pool
 * instead of getrandom's): reproducible fuzz inputs. Never in production. */
void nt_node_fixed_ids(nt_node *n);
/* The node's chat state (nt_chat.h): rooms, counters, the history's resume state. */
struct nt_chat *nt_node_chat(nt_node *n);

/* SIGHUP: reloads the TLS certificate and key from their files for new connections
 * (established ones keep theirs). Failures are logged; the old certificate stays. */
void nt_node_reload(nt_node *n);

#endif
