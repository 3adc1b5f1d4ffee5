/* nt_test_node: helpers of the tests that drive a node without sockets
 * ("../nt_test_node.h"): reading a memory-transport peer (nt_conn.h) into the test's own
 * buffer, and HS256 tokens. Header-only: each includer gets its own static copy. */
#ifndef NT_TEST_NODE_H
#define NT_TEST_NODE_H

#include <jwt.h>
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

/* An HS256 token with `claims` (a JSON object) signed with `secret`; malloc'd, NULL on
 * failure. */
static inline char *nt_test_hs256(const char *secret, const char *claims) {
  jwt_t *j = NULL;
  char *t = NULL;
  if (jwt_new(&j) == 0 && jwt_add_grants_json(j, claims) == 0 &&
      jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) == 0)
    t = jwt_encode_str(j);
  jwt_free(j);
  return t;
}

#endif
