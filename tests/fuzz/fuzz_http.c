/* fuzz_http: the HTTP request parser (nt_http_feed) fed in fuzzer-chosen slices, then the
 * WebSocket handshake checks and response, token lookup and the authorizer's query
 * rewrite on whatever request came out — what an unauthenticated peer reaches first. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nt_authz.h"
#include "nt_handshake.h"
#include "nt_http.h"

static void use_request(const nt_http_req *req) {
  char buf[1024];
  if (nt_handshake_check(req) == 0) {
    nt_handshake_response(req, NULL, buf, sizeof buf);
    if (req->hdr[NT_HDR_WS_PROTOCOL])
      nt_handshake_response_proto(req, req->hdr[NT_HDR_WS_PROTOCOL], "permessage-deflate", buf,
                                  sizeof buf);
  }
  char token[8192];
  nt_http_query_param(req->target, "token", token, sizeof token);
  nt_http_query_param(req->target, "", token, 16);
  for (int i = 0; i < NT_HDR_COUNT; i++)
    if (req->hdr[i]) nt_http_has_token(req->hdr[i], "upgrade");
  free(nt_authz_query_without_token(req->target));
  size_t len;
  free(nt_http_response(200, "text/plain", req->body, req->body_len, NULL, req->keep_alive, &len));
}

/* data[0]: slice size and parser limits; the rest is the byte stream of one connection. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = data[0];
  data++;
  size--;
  size_t slice = (ctl & 0x0f) ? (size_t)(ctl & 0x0f) * (ctl & 0x10 ? 37 : 1) : size;
  size_t max_header = ctl & 0x20 ? 256 : 8192;
  size_t max_body = ctl & 0x40 ? 65536 : 0; /* API connections carry bodies */
  nt_http_parser *p = nt_http_parser_new(max_header, max_body);
  if (!p) return 0;
  size_t off = 0;
  while (off < size) {
    size_t n = size - off < slice ? size - off : slice;
    size_t used = 0;
    int r = nt_http_feed(p, (const char *)data + off, n, &used);
    if (r < 0) {
      nt_http_reason(nt_http_parser_status(p));
      break;
    }
    if (used > n) __builtin_trap();
    if (r == 1) {
      use_request(nt_http_parser_req(p));
      /* What a request may hold: the head within max_header and the body within
       * max_body, each buffer at most doubled by growth (plus its first 32 bytes). */
      if (nt_http_parser_held(p) > 2 * (max_header + max_body) + 32 * (NT_HDR_COUNT + 2))
        __builtin_trap();
      nt_http_parser_reset(p); /* keep-alive: the rest is the next request */
      off += used;
      if (!(ctl & 0x80)) break;
      continue;
    }
    off += n;
  }
  nt_http_parser_free(p);
  return 0;
}
