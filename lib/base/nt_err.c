/* nt_err: decoder of the natter error table. */
#include "nt_err.h"

const char *nt_strerror(int err) {
  switch (err) {
  case NT_OK: return "success";
  case NT_EINVAL: return "invalid argument";
  case NT_ENOMEM: return "out of memory";
  case NT_EIO: return "i/o error";
  case NT_EAGAIN: return "try again";
  case NT_ENOTFOUND: return "not found";
  case NT_ETOOLARGE: return "too large";
  case NT_EAUTH: return "authentication failed";
  case NT_EFORBIDDEN: return "forbidden";
  case NT_ETIMEOUT: return "timed out";
  case NT_ENORESPONDER: return "no responder";
  case NT_ECLOSED: return "closed";
  case NT_EPROTO: return "protocol error";
  case NT_EBUS: return "message bus error";
  case NT_ESTORE: return "presence store error";
  case NT_ELIMIT: return "limit reached";
  case NT_EINTERNAL: return "internal error";
  default: return "unknown error";
  }
}

const char *nt_err_client_code(int err) {
  switch (err) {
  case NT_EINVAL: case NT_EPROTO: return "bad_request";
  case NT_ENOTFOUND: return "not_found";
  case NT_ETOOLARGE: return "too_large";
  case NT_EAUTH: case NT_EFORBIDDEN: return "forbidden";
  case NT_ETIMEOUT: return "timeout";
  case NT_ENORESPONDER: return "unknown_action";
  case NT_ELIMIT: return "rate_limited";
  default: return "internal";
  }
}
