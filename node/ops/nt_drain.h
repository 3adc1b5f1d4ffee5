/* nt_drain: holds back a draining node's presence removals for a rejoin window, so that a
 * user whose connections were closed with 1001 and who reconnects to another node in time
 * never goes offline (no `presence` offline/online pair, no ghost either).
 *
 * The node wraps its presence store when the drain starts (nt_drain_hold); connections that
 * end from then on — closed by the client, the load balancer, or the node with 1001 after
 * the grace — have their leave/conn_remove calls queued, not sent. After the grace and the
 * rejoin window the node sends them in order (nt_drain_release). A user who rejoined elsewhere meanwhile still
 * has a connection in the room, so Redis decides "no transition"; a user who did not come
 * back goes offline exactly once, announced by this node. Loop thread only. */
#ifndef NT_DRAIN_H
#define NT_DRAIN_H

#include "nt_presence.h"

/* Wraps `inner` (takes ownership: destroying the wrapper destroys it). leave and
 * conn_remove are queued until nt_drain_release; every other call passes through.
 * Returns NULL on allocation failure (then `inner` is untouched and still the caller's). */
nt_presence *nt_drain_hold(nt_presence *inner);

/* Sends the queued calls to the inner store in the order they were made and calls
 * done(ud) once each has completed (before returning when nothing was queued). Calls made after this pass straight through. Call at most once.
 * If the wrapper is destroyed first, `done` is never called. */
void nt_drain_release(nt_presence *held, void (*done)(void *ud), void *ud);

/* Returns 1 when `p` is a wrapper made by nt_drain_hold that has not been released. */
int nt_drain_is_holding(const nt_presence *p);

/* Number of calls queued and not yet sent (for logs and tests). */
size_t nt_drain_held(const nt_presence *held);

#endif
