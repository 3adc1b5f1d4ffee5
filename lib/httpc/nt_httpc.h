/* nt_httpc: an asynchronous HTTP client on a libuv loop (libcurl's multi interface).
 *
 * One nt_httpc owns one curl multi handle, whose sockets are watched with uv_poll and whose
 * timeouts run on one uv_timer — never a thread per request. Connections to a backend are
 * kept alive and reused between requests (the multi handle's connection cache). At most
 * `max_inflight` requests run at once; up to `max_queued` more wait in FIFO order; past
 * that nt_httpc_post refuses with NT_ELIMIT. Every request has a deadline counted from
 * nt_httpc_post (time spent queued included), and a response body longer than `max_body`
 * fails the request with NT_ETOOLARGE instead of growing memory.
 *
 * Threading: loop thread only; callbacks run on the loop thread, never inside
 * nt_httpc_post. Ownership: everything passed in is copied; the response given to a
 * callback is valid only during the callback. */
#ifndef NT_HTTPC_H
#define NT_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct nt_httpc nt_httpc;

typedef struct nt_httpc_opts {
  size_t max_inflight;     /* requests running at once (>= 1) */
  size_t max_queued;       /* requests waiting for a slot (0: none wait) */
  size_t max_body;         /* response body cap in bytes (>= 1) */
  const char *user_agent;  /* NULL: "natter" */
} nt_httpc_opts;

typedef struct nt_httpc_resp {
  int err;                 /* 0: a response arrived (status below); or NT_ETIMEOUT (deadline
                            * passed), NT_EIO (refused, reset, DNS, TLS), NT_EPROTO (not
                            * HTTP), NT_ETOOLARGE (body over max_body), NT_ECLOSED
                            * (nt_httpc_close), NT_ENOMEM */
  int status;              /* HTTP status when err == 0 */
  const char *body;        /* NUL-terminated (the NUL is not counted) */
  size_t body_len;
  const char *content_type; /* NULL when absent */
  double elapsed_s;        /* from nt_httpc_post to completion */
} nt_httpc_resp;

/* Called exactly once per request accepted by nt_httpc_post. */
typedef void (*nt_httpc_cb)(void *ud, const nt_httpc_resp *resp);

/* Creates a client on `loop`. Returns NULL on failure (bad options, no memory, libcurl
 * failed to initialise). */
nt_httpc *nt_httpc_new(uv_loop_t *loop, const nt_httpc_opts *opts);

/* Starts (or queues) a POST of `body` to `url` (http:// or https:// only) with extra
 * `headers` ("Name: value" lines) and a deadline of `timeout_ms` from now. Returns 0 (`cb`
 * will be called once, later) or NT_ELIMIT (queue full), NT_EINVAL (bad url or timeout),
 * NT_ECLOSED (closing), NT_ENOMEM — and then `cb` is never called. */
int nt_httpc_post(nt_httpc *h, const char *url, const char *const *headers, size_t nheaders,
                  const void *body, size_t len, uint64_t timeout_ms, nt_httpc_cb cb,
                  void *ud);

/* Requests running and waiting now. */
size_t nt_httpc_inflight(const nt_httpc *h);
size_t nt_httpc_queued(const nt_httpc *h);

/* Fails every pending request with NT_ECLOSED (their callbacks run inside this call), then
 * closes the handles; the memory is freed in the last close callback, so once uv_run
 * returns nothing is left. Call once; `h` must not be used afterwards. */
void nt_httpc_close(nt_httpc *h);

#endif
