/* nt_handshake: RFC 6455 §4.2 server-side opening handshake (checks, accept key, 101). */
#include "nt_handshake.h"

#include <http_parser.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "nt_err.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int nt_ws_accept_key(const char *key, char out[NT_WS_ACCEPT_LEN + 1]) {
  if (!key || !*key || !out) return NT_EINVAL;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return NT_EINVAL;
  /* Two updates instead of concatenating, so a key of any length needs no buffer. */
  int ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
           EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
           EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) == 1 &&
           EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20;
  EVP_MD_CTX_free(ctx);
  if (!ok) return NT_EINVAL;
  EVP_EncodeBlock((unsigned char *)out, md, (int)md_len); /* 28 chars + NUL */
  return 0;
}

static int is_b64(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/';
}

/* 16 bytes encode to exactly 22 base64 characters and "==" (RFC 6455 §4.2.1 item 5). */
static int key_is_valid(const char *key) {
  if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=') return 0;
  for (int i = 0; i < 22; i++)
    if (!is_b64(key[i])) return 0;
  return 1;
}

int nt_handshake_check(const nt_http_req *req) {
  if (!req) return 400;
  if (req->method != HTTP_GET) return 405;
  if (req->http_minor < 1) return 400;
  /* RFC 6455 §4.2.1 item 2 (and RFC 7230 §5.4) require Host. */
  if (!req->hdr[NT_HDR_HOST]) return 400;
  if (!nt_http_has_token(req->hdr[NT_HDR_UPGRADE], "websocket")) return 400;
  if (!nt_http_has_token(req->hdr[NT_HDR_CONNECTION], "upgrade")) return 400;
  /* A missing version is a malformed request; a different one gets 426 so the client can
   * retry with 13. Checked before the key: another version may use another key format. */
  const char *ver = req->hdr[NT_HDR_WS_VERSION];
  if (!ver) return 400;
  if (strcmp(ver, "13") != 0) return 426;
  if (!key_is_valid(req->hdr[NT_HDR_WS_KEY])) return 400;
  return 0;
}

/* Values are copied into a header line: a CR or LF would let them inject headers. */
static int is_header_safe(const char *v) {
  for (; *v; v++)
    if ((unsigned char)*v < 0x20 && *v != '\t') return 0;
  return 1;
}

int nt_handshake_response_proto(const nt_http_req *req, const char *protocol,
                                const char *extensions, char *out, size_t cap) {
  if (!req || !out) return NT_EINVAL;
  if (extensions && (!*extensions || !is_header_safe(extensions))) return NT_EINVAL;
  if (protocol && !nt_http_has_token(req->hdr[NT_HDR_WS_PROTOCOL], protocol)) return NT_EINVAL;
  if (protocol && !is_header_safe(protocol)) return NT_EINVAL;
  char accept[NT_WS_ACCEPT_LEN + 1];
  if (nt_ws_accept_key(req->hdr[NT_HDR_WS_KEY], accept) != 0) return NT_EINVAL;
  int n = snprintf(out, cap,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "%s%s%s%s%s%s\r\n",
                   accept, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                   protocol ? "\r\n" : "", extensions ? "Sec-WebSocket-Extensions: " : "",
                   extensions ? extensions : "", extensions ? "\r\n" : "");
  if (n < 0) return NT_EINVAL;
  if ((size_t)n >= cap) return NT_ETOOLARGE;
  return n;
}

int nt_handshake_response(const nt_http_req *req, const char *extensions, char *out,
                          size_t cap) {
  return nt_handshake_response_proto(req, NULL, extensions, out, cap);
}
