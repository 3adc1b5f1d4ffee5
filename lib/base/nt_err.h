/* nt_err: the one table of natter error codes and their decoder. */
#ifndef NT_ERR_H
#define NT_ERR_H

/* Every natter function that can fail returns 0 or one of these negative codes.
 * Library errors (uv_*, natsStatus, hiredis, protobuf-c, libjwt) are converted to these in
 * the one file that calls the library; callers never see foreign codes. */
typedef enum nt_err {
  NT_OK = 0,
  NT_EINVAL = -1,      /* bad argument or input (maps to client error bad_request) */
  NT_ENOMEM = -2,      /* allocation failed */
  NT_EIO = -3,         /* socket / transport failure */
  NT_EAGAIN = -4,      /* try again later (not connected yet, would block) */
  NT_ENOTFOUND = -5,   /* no such connection / room / subscription */
  NT_ETOOLARGE = -6,   /* over a size limit */
  NT_EAUTH = -7,       /* authentication failed */
  NT_EFORBIDDEN = -8,  /* authenticated but not allowed */
  NT_ETIMEOUT = -9,    /* deadline passed */
  NT_ENORESPONDER = -10, /* request had no responder */
  NT_ECLOSED = -11,    /* object is closing or closed */
  NT_EPROTO = -12,     /* protocol violation by the peer */
  NT_EBUS = -13,       /* message bus (NATS) error */
  NT_ESTORE = -14,     /* presence store (Redis) error */
  NT_ELIMIT = -15,     /* a configured limit was reached (connections, rate) */
  NT_EINTERNAL = -16   /* bug or unexpected library state */
} nt_err;

/* Returns a static, human-readable description of `err` (never NULL). */
const char *nt_strerror(int err);

/* Returns the client protocol error code (docs/protocol.md §8: "bad_request", "not_found", ...)
 * that best describes `err` (never NULL, static). */
const char *nt_err_client_code(int err);

#endif
