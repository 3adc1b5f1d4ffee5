/* nt_resolve: off-loop host name resolution for the Redis clients (see nt_resolve.h). */
#include "nt_resolve.h"

#include <string.h>

int nt_resolve_is_numeric(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return uv_inet_pton(AF_INET, host, buf) == 0 || uv_inet_pton(AF_INET6, host, buf) == 0;
}

int nt_resolve_start(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                     const char *host) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  return uv_getaddrinfo(loop, req, cb, host, NULL, &hints);
}

void nt_resolve_result(int status, struct addrinfo *res, char *ip, size_t cap) {
  ip[0] = '\0';
  if (status == 0 && res) {
    if (res->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, cap);
    else
      uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, cap);
  }
  uv_freeaddrinfo(res);
}
