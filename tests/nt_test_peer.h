/* nt_test_peer: reading a memory-transport peer (nt_conn.h) into a test's own buffer,
 * for the tests that drive a node without sockets ("../nt_test_peer.h"). Header-only:
 * each includer gets its own static copy. */
#ifndef NT_TEST_PEER_H
#define NT_TEST_PEER_H

#include <stdlib.h>
#include <string.h>

#include "nt_conn.h"

/* Appends what the connection wrote since the last call to buf[*len..] (grown as needed,
 * *cap > 0), marks it consumed (the peer's window opens again). Returns 1 once the
 * connection has closed its end and everything was taken, else 0. */
static inline int nt_test_peer_take(nt_mem_peer *p, uint8_t **buf, size_t *len,
                                    size_t *cap) {
  size_t n = p->out_len - p->out_read;
  while (*len + n > *cap) {
    *cap *= 2;
    *buf = realloc(*buf, *cap);
  }
  if (n) memcpy(*buf + *len, p->out + p->out_read, n);
  *len += n;
  nt_mem_peer_consume(p);
  return p->closed || !p->conn;
}

#endif
