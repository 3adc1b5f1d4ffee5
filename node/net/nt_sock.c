/* nt_sock: non-blocking TCP socket calls for uv_poll-watched descriptors. */
#include "nt_sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "nt_err.h"

int nt_sock_listen(const struct sockaddr *sa, int backlog, int *fd) {
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in);
  int s = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return uv_translate_sys_error(errno);
  int one = 1; /* as uv_tcp_bind: a restarted node binds while old connections linger */
  if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(s, sa, len) ||
      listen(s, backlog)) {
    int e = errno;
    close(s);
    return uv_translate_sys_error(e);
  }
  *fd = s;
  return 0;
}

int nt_sock_accept(int lfd, int *fd, struct sockaddr_storage *peer, int *uverr) {
  for (;;) {
    socklen_t sl = sizeof *peer;
    int s = accept4(lfd, (struct sockaddr *)peer, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s >= 0) {
      int one = 1; /* frames are batched per loop turn already: no Nagle delay on top */
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      *fd = s;
      return 0;
    }
    switch (errno) {
    case EINTR:
      continue;
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case ECONNABORTED: /* reset while waiting in the backlog: nothing to do */
    case EPROTO:
      return NT_EAGAIN;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      *uverr = uv_translate_sys_error(errno);
      return NT_ELIMIT;
    default:
      *uverr = uv_translate_sys_error(errno);
      return NT_EIO;
    }
  }
}

ssize_t nt_sock_read(int fd, void *buf, size_t cap) {
  for (;;) {
    ssize_t r = read(fd, buf, cap);
    if (r > 0) return r;
    if (r == 0) return NT_ECLOSED;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? NT_EAGAIN : NT_EIO;
  }
}

ssize_t nt_sock_sendv(int fd, const struct iovec *iov, size_t n) {
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = (struct iovec *)iov;
  mh.msg_iovlen = n;
  for (;;) {
    ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? NT_EAGAIN : NT_EIO;
  }
}
