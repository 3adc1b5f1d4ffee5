/* nt_http: incremental HTTP/1.1 request parsing (libhttp-parser) and response formatting.
 *
 * Used for the WebSocket upgrade on --listen (plus static files, /healthz, /readyz) and
 * for the HTTP API on --api-listen (keep-alive). No I/O: bytes in, requests out, so it is
 * tested with scripted input. Not thread-safe; one parser per connection. */
#ifndef NT_HTTP_H
#define NT_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Header values the node cares about; anything else is skipped without being stored. */
enum nt_http_hdr {
  NT_HDR_HOST, NT_HDR_UPGRADE, NT_HDR_CONNECTION, NT_HDR_WS_KEY, NT_HDR_WS_VERSION,
  NT_HDR_WS_EXTENSIONS, NT_HDR_WS_PROTOCOL, NT_HDR_ORIGIN, NT_HDR_AUTHORIZATION,
  NT_HDR_USER_AGENT, NT_HDR_X_FORWARDED_FOR, NT_HDR_CONTENT_TYPE, NT_HDR_COUNT
};

typedef struct nt_http_req {
  int method;                 /* enum http_method of libhttp-parser (HTTP_GET = 1, ...) */
  char *target;               /* request target as sent ("/ws?token=..."), NUL-terminated */
  size_t path_len;            /* length of the path part of target (before '?') */
  char *hdr[NT_HDR_COUNT];    /* NUL-terminated values, NULL when absent (repeated
                                 headers are joined with ", ") */
  uint8_t *body;              /* NULL when empty; NUL-terminated for convenience */
  size_t body_len;
  int keep_alive;             /* 1 when the connection may carry another request */
  int upgrade;                /* 1 when the request asks for a protocol upgrade */
  int http_minor;             /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
  const char *headers;        /* every header as sent, "name:value" lines joined by '\n'
                                 (read with nt_http_header_next; SigV4 needs them all) */
  size_t headers_len;
} nt_http_req;

typedef struct nt_http_parser nt_http_parser;

/* Creates a parser that refuses request lines + headers above `max_header_bytes` (431)
 * and bodies above `max_body_bytes` (413). Returns NULL on allocation failure. */
nt_http_parser *nt_http_parser_new(size_t max_header_bytes, size_t max_body_bytes);
void nt_http_parser_free(nt_http_parser *p);

/* Feeds `len` bytes. Returns:
 *   0  need more input (all bytes consumed);
 *   1  one request is complete: *consumed says how many bytes of `data` it used (the rest
 *      is the next request, or WebSocket frames after an upgrade); read it with
 *      nt_http_parser_req(), then call nt_http_parser_reset() before feeding more;
 *   <0 the request is invalid: nt_http_parser_status() gives the HTTP status to answer
 *      (400, 413, 431, 505) and the connection must be closed after answering. */
int nt_http_feed(nt_http_parser *p, const char *data, size_t len, size_t *consumed);

/* The complete request (valid after nt_http_feed() returned 1, until reset/free). */
const nt_http_req *nt_http_parser_req(const nt_http_parser *p);

/* HTTP status describing the last error of nt_http_feed(). */
int nt_http_parser_status(const nt_http_parser *p);

/* Forgets the current request and prepares for the next one on the same connection. */
void nt_http_parser_reset(nt_http_parser *p);

/* Bytes held by the parser for the request in progress: what bounds a connection's HTTP
 * memory (at most about twice --max-header-bytes plus twice the body limit). The unit
 * tests and tests/fuzz/fuzz_http.c check that bound with it. */
size_t nt_http_parser_held(const nt_http_parser *p);


/* Iterates over every header of `r` in the order sent: start with *pos = 0; returns 1 with
 * the name and the value (without surrounding whitespace; neither NUL-terminated) while
 * headers remain, then 0. Pure. */
int nt_http_header_next(const nt_http_req *r, size_t *pos, const char **name, size_t *nlen,
                        const char **val, size_t *vlen);

/* Finds query parameter `name` in `target` and percent-decodes its value into `out`
 * (capacity `cap`, NUL-terminated). Returns the decoded length, NT_ENOTFOUND when absent,
 * NT_ETOOLARGE when it does not fit, NT_EINVAL for a malformed escape. */
int nt_http_query_param(const char *target, const char *name, char *out, size_t cap);

/* Returns 1 when the comma-separated header value `list` contains `token`
 * (case-insensitive, surrounding spaces ignored), else 0. */
int nt_http_has_token(const char *list, const char *token);

/* Formats a complete response (status line, Content-Type when non-NULL, Content-Length,
 * Connection keep-alive|close, optional `extra_headers` — already "\r\n"-terminated lines
 * — then the body) into a malloc'd buffer the caller frees. Returns its length in *out_len,
 * or NULL on allocation failure. */
char *nt_http_response(int status, const char *content_type, const void *body,
                       size_t body_len, const char *extra_headers, int keep_alive,
                       size_t *out_len);

/* Reason phrase of a status code ("OK", "Gone", ...). */
const char *nt_http_reason(int status);

#endif
