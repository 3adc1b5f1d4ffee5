/* nt_nats_uv: runs a nats.c connection's socket I/O on a libuv loop, plus the nats.c
 * helpers the NATS bus (nt_bus_nats.c) and the JetStream history (nt_history_js.c) share.
 *
 * nats.c's own libuv adapter is used for its event list and poll callback, with our
 * lifecycle around it (nt_nats_uv.c says why). Threading: nt_nats_uv_new and
 * nt_nats_uv_close run on the loop thread; nats.c calls the installed callbacks with its
 * connection lock held on any of its threads, and they hand the work to the loop. */
#ifndef NT_NATS_UV_H
#define NT_NATS_UV_H

#include <nats/nats.h>
#include <uv.h>

typedef struct nt_nats_uv nt_nats_uv; /* the adapter's state for one connection */

/* Creates the state on the loop thread (and marks this thread as the one running `loop`).
 * Returns NULL when out of memory. */
nt_nats_uv *nt_nats_uv_new(uv_loop_t *loop);

/* Installs the event callbacks on connection options (natsOptions_SetEventLoop). */
natsStatus nt_nats_uv_options(nt_nats_uv *u, natsOptions *o);

/* Tears the state down, after natsConnection_Destroy (no nats.c thread uses it then).
 * Its handles close on a later loop turn. */
void nt_nats_uv_close(nt_nats_uv *u);

/* The one place natsStatus becomes an nt_err (NT_EINVAL, NT_ENOMEM, NT_EAGAIN, ...). */
int nt_nats_err(natsStatus s);

/* Splits "a, b,c" into trimmed, non-empty entries of `buf` (modified in place) written to
 * out[0..max). Returns the count, or -1 when there are more than `max`. */
int nt_nats_split_urls(char *buf, const char **out, int max);

#endif
