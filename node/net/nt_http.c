/* nt_http: incremental HTTP/1.x request parser over libhttp-parser, plus response helpers. */
#include "nt_http.h"

#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nt_err.h"
#include "nt_pct.h"

/* Longest name in the table below is "Sec-WebSocket-Extensions" (24): a name that does not
 * fit cannot be one we keep, so it is skipped without being stored. */
#define NAME_MAX_LEN 32

/* Growable NUL-terminated string; NULL until the first byte (or empty value) arrives. */
typedef struct sbuf {
  char *s;
  uint32_t len, cap;
} sbuf;

enum { ST_HEAD, ST_BODY, ST_DONE, ST_ERROR };
enum { CB_NONE, CB_FIELD, CB_VALUE };

struct nt_http_parser {
  http_parser hp;
  size_t max_header, max_body;
  size_t head_bytes; /* bytes fed while the request line + headers were incomplete */
  int state;
  int status;        /* HTTP status of the error, 0 while none */
  int err;           /* nt_err code returned for the error */
  int last_cb;       /* CB_*: tells a split header name from the next header */
  int cur;           /* header being read: enum nt_http_hdr, or -1 when skipped */
  uint32_t name_len;
  char name[NAME_MAX_LEN];
  sbuf target;
  sbuf hdr[NT_HDR_COUNT];
  sbuf all;          /* every header as sent: "name:value" lines joined by '\n' */
  uint8_t *body;
  size_t body_cap;
  size_t body_expect; /* announced Content-Length, 0 when chunked or absent */
  /* the head's line scanner (strict_head): what http_parser lets through */
  uint32_t sc_line;   /* bytes of the current line so far */
  uint32_t sc_lines;  /* complete non-empty lines */
  uint8_t sc_cr;      /* the previous byte was CR */
  uint8_t sc_colon;   /* the current line has had its ':' */
  uint8_t sc_done;    /* the empty line ending the head was seen */
  nt_http_req req;
};

static const char *const hdr_names[NT_HDR_COUNT] = {
  [NT_HDR_HOST] = "Host",
  [NT_HDR_UPGRADE] = "Upgrade",
  [NT_HDR_CONNECTION] = "Connection",
  [NT_HDR_WS_KEY] = "Sec-WebSocket-Key",
  [NT_HDR_WS_VERSION] = "Sec-WebSocket-Version",
  [NT_HDR_WS_EXTENSIONS] = "Sec-WebSocket-Extensions",
  [NT_HDR_WS_PROTOCOL] = "Sec-WebSocket-Protocol",
  [NT_HDR_ORIGIN] = "Origin",
  [NT_HDR_AUTHORIZATION] = "Authorization",
  [NT_HDR_USER_AGENT] = "User-Agent",
  [NT_HDR_X_FORWARDED_FOR] = "X-Forwarded-For",
  [NT_HDR_CONTENT_TYPE] = "Content-Type",
};

/* ---------------------------------------------------------------------------------------
 * Storage
 * ------------------------------------------------------------------------------------- */

/* Grows geometrically from a small start: most values (Host, Upgrade, key) are short, and
 * the total is already bounded by max_header because the head is fed in bounded slices. */
static int sbuf_append(sbuf *b, const char *s, size_t n) {
  if ((size_t)b->len + n + 1 > UINT32_MAX) return NT_ETOOLARGE;
  uint32_t need = b->len + (uint32_t)n + 1;
  if (need > b->cap) {
    uint32_t cap = b->cap ? b->cap : 32;
    while (cap < need) cap = cap > UINT32_MAX / 2 ? need : cap * 2;
    char *ns = realloc(b->s, cap);
    if (!ns) return NT_ENOMEM;
    b->s = ns;
    b->cap = cap;
  }
  if (n) memcpy(b->s + b->len, s, n);
  b->len += (uint32_t)n;
  b->s[b->len] = '\0';
  return 0;
}

static void sbuf_free(sbuf *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* http_parser hands values over with their trailing whitespace (RFC 7230 OWS). */
static void trim_value(nt_http_parser *p) {
  if (p->cur < 0) return;
  sbuf *b = &p->hdr[p->cur];
  while (b->len > 0 && is_ows(b->s[b->len - 1])) b->s[--b->len] = '\0';
}

/* Records the answer for the connection. 500 only comes from a failed allocation. */
static int fail(nt_http_parser *p, int status) {
  p->status = status;
  p->err = (status == 413 || status == 431) ? NT_ETOOLARGE
           : status == 500                  ? NT_ENOMEM
                                            : NT_EPROTO;
  return -1; /* makes http_parser stop with HPE_CB_* */
}

/* ---------------------------------------------------------------------------------------
 * http_parser callbacks
 * ------------------------------------------------------------------------------------- */

/* Only 1.x is spoken here; http_parser happily parses "HTTP/2.0" and HTTP/0.9 lines. */
static int check_version(nt_http_parser *p) {
  return p->hp.http_major == 1 ? 0 : fail(p, 505);
}

static int on_url(http_parser *hp, const char *at, size_t n) {
  nt_http_parser *p = hp->data;
  return sbuf_append(&p->target, at, n) == 0 ? 0 : fail(p, 500);
}

static int on_header_field(http_parser *hp, const char *at, size_t n) {
  nt_http_parser *p = hp->data;
  if (p->state != ST_HEAD) return 0; /* chunked trailers never override real headers */
  if (p->last_cb != CB_FIELD) {
    if (p->last_cb == CB_NONE && check_version(p) != 0) return -1;
    if (p->last_cb == CB_VALUE) trim_value(p);
    p->name_len = 0;
    p->last_cb = CB_FIELD;
    if (p->all.len && sbuf_append(&p->all, "\n", 1) != 0) return fail(p, 500);
  }
  if (sbuf_append(&p->all, at, n) != 0) return fail(p, 500);
  /* A name longer than the buffer cannot be one we keep: mark it and stop copying. */
  if (p->name_len > NAME_MAX_LEN || n > NAME_MAX_LEN - p->name_len) {
    p->name_len = NAME_MAX_LEN + 1;
  } else {
    memcpy(p->name + p->name_len, at, n);
    p->name_len += (uint32_t)n;
  }
  return 0;
}

static int lookup_header(const nt_http_parser *p) {
  if (p->name_len > NAME_MAX_LEN) return -1;
  for (int i = 0; i < NT_HDR_COUNT; i++) {
    if (strlen(hdr_names[i]) == p->name_len && !strncasecmp(hdr_names[i], p->name, p->name_len))
      return i;
  }
  return -1;
}

static int on_header_value(http_parser *hp, const char *at, size_t n) {
  nt_http_parser *p = hp->data;
  if (p->state != ST_HEAD) return 0;
  if ((p->last_cb == CB_FIELD && sbuf_append(&p->all, ":", 1) != 0) ||
      (n && sbuf_append(&p->all, at, n) != 0))
    return fail(p, 500);
  if (p->last_cb == CB_FIELD) {
    p->last_cb = CB_VALUE;
    p->cur = lookup_header(p);
    if (p->cur < 0) return 0;
    sbuf *b = &p->hdr[p->cur];
    if (b->s) {
      /* RFC 7230 §5.4: several Host headers make the target authority ambiguous. */
      if (p->cur == NT_HDR_HOST) return fail(p, 400);
      if (sbuf_append(b, ", ", 2) != 0) return fail(p, 500);
    } else if (sbuf_append(b, "", 0) != 0) { /* present but empty is not absent */
      return fail(p, 500);
    }
  }
  if (p->cur < 0 || n == 0) return 0;
  return sbuf_append(&p->hdr[p->cur], at, n) == 0 ? 0 : fail(p, 500);
}

static int on_headers_complete(http_parser *hp) {
  nt_http_parser *p = hp->data;
  if (check_version(p) != 0) return -1;
  /* RFC 9112 §3.2: a 1.1 request without Host is 400 */
  if (hp->http_minor >= 1 && !p->hdr[NT_HDR_HOST].s) return fail(p, 400);
  if (p->last_cb == CB_VALUE) trim_value(p);
  p->state = ST_BODY;
  /* Refuse an announced oversized body before reading any of it. */
  if (!(hp->flags & F_CHUNKED) && hp->content_length != ULLONG_MAX) {
    if (hp->content_length > p->max_body) return fail(p, 413);
    p->body_expect = (size_t)hp->content_length;
  }
  return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n) {
  nt_http_parser *p = hp->data;
  nt_http_req *r = &p->req;
  if (n > p->max_body - r->body_len) return fail(p, 413); /* chunked bodies end here */
  size_t need = r->body_len + n + 1;
  if (need > p->body_cap) {
    /* A known length is allocated once; a chunked body grows geometrically. */
    size_t cap = p->body_expect ? p->body_expect + 1 : p->body_cap ? p->body_cap * 2 : 256;
    if (cap < need) cap = need;
    if (cap > p->max_body + 1) cap = p->max_body + 1;
    uint8_t *nb = realloc(p->body, cap);
    if (!nb) return fail(p, 500);
    p->body = nb;
    p->body_cap = cap;
  }
  memcpy(p->body + r->body_len, at, n);
  r->body_len += n;
  p->body[r->body_len] = '\0';
  return 0;
}

static int on_message_complete(http_parser *hp) {
  nt_http_parser *p = hp->data;
  nt_http_req *r = &p->req;
  p->state = ST_DONE;
  r->method = (int)hp->method;
  r->target = p->target.s;
  r->path_len = r->target ? strcspn(r->target, "?#") : 0;
  for (int i = 0; i < NT_HDR_COUNT; i++) r->hdr[i] = p->hdr[i].s;
  r->headers = p->all.s ? p->all.s : "";
  r->headers_len = p->all.len;
  r->body = r->body_len ? p->body : NULL;
  r->keep_alive = http_should_keep_alive(hp) ? 1 : 0;
  r->upgrade = hp->upgrade ? 1 : 0;
  /* RFC 7230 §2.6: a 1.x minor above 1 is to be treated as the highest we speak. */
  r->http_minor = hp->http_minor >= 1 ? 1 : 0;
  /* Pausing makes http_parser_execute() return right after this request, which is how the
   * bytes that follow it (pipelined request, WebSocket frames) stay with the caller. */
  http_parser_pause(hp, 1);
  return 0;
}

static const http_parser_settings settings = {
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------------------------------
 * Parser API
 * ------------------------------------------------------------------------------------- */

nt_http_parser *nt_http_parser_new(size_t max_header_bytes, size_t max_body_bytes) {
  nt_http_parser *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->max_header = max_header_bytes;
  /* The body buffer is sized max_body + 1 for its NUL. */
  p->max_body = max_body_bytes < SIZE_MAX - 1 ? max_body_bytes : SIZE_MAX - 2;
  http_parser_init(&p->hp, HTTP_REQUEST);
  p->hp.data = p;
  p->cur = -1;
  return p;
}

static void release(nt_http_parser *p) {
  sbuf_free(&p->target);
  for (int i = 0; i < NT_HDR_COUNT; i++) sbuf_free(&p->hdr[i]);
  sbuf_free(&p->all);
  free(p->body);
  p->body = NULL;
  p->body_cap = 0;
}

void nt_http_parser_free(nt_http_parser *p) {
  if (!p) return;
  release(p);
  free(p);
}

void nt_http_parser_reset(nt_http_parser *p) {
  if (!p) return;
  /* Buffers are dropped rather than recycled: an idle keep-alive connection then holds
   * nothing beyond the parser itself. */
  release(p);
  size_t mh = p->max_header, mb = p->max_body;
  memset(p, 0, sizeof *p);
  p->max_header = mh;
  p->max_body = mb;
  http_parser_init(&p->hp, HTTP_REQUEST);
  p->hp.data = p;
  p->cur = -1;
}

/* RFC 9112 strictness http_parser does not have: every head line ends with CRLF (a bare
 * LF is 400, §2.2), and a header field name is followed by ':' directly — whitespace
 * before the colon (`Transfer-Encoding : chunked`, which proxies may read differently, a
 * smuggling vector) or a line that starts with whitespace (obs-fold) is 400 (§5.1, §5.2).
 * Scans data[0..n) up to the end of the head only; returns 0, or -1 after fail(). */
static int strict_head(nt_http_parser *p, const char *data, size_t n) {
  for (size_t i = 0; i < n && !p->sc_done; i++) {
    char ch = data[i];
    if (ch == '\n') {
      if (!p->sc_cr) return fail(p, 400);
      p->sc_cr = 0;
      if (p->sc_line == 1) { /* just "\r": an empty line */
        if (p->sc_lines) p->sc_done = 1; /* (empty lines before the request line are skipped) */
      } else {
        p->sc_lines++;
      }
      p->sc_line = 0;
      p->sc_colon = 0;
      continue;
    }
    if (p->sc_cr) return fail(p, 400); /* a CR not followed by LF */
    p->sc_cr = ch == '\r';
    if (p->sc_lines > 0 && !p->sc_colon && !p->sc_cr) { /* a header field name */
      if (ch == ':') p->sc_colon = 1;
      else if (ch == ' ' || ch == '\t') return fail(p, 400);
    }
    p->sc_line++;
  }
  return 0;
}

/* Status for an error http_parser found itself (not one of our callbacks). */
static int status_of(const http_parser *hp) {
  switch (HTTP_PARSER_ERRNO(hp)) {
  case HPE_HEADER_OVERFLOW:
    return 431;
  case HPE_INVALID_VERSION:
    /* "HTTP/2" stops the parser after the major digit: a well-formed other major. */
    return hp->http_major != 1 ? 505 : 400;
  default:
    return 400;
  }
}

int nt_http_feed(nt_http_parser *p, const char *data, size_t len, size_t *consumed) {
  size_t off = 0;
  if (consumed) *consumed = 0;
  if (!p || !consumed || (!data && len)) return NT_EINVAL;
  if (p->state == ST_DONE) return 1; /* the caller has not reset yet: nothing used */
  if (p->state == ST_ERROR) return p->err;

  while (off < len) {
    size_t chunk = len - off;
    if (p->state == ST_HEAD) {
      /* Feeding the head in slices that cannot overrun the limit bounds what is stored,
       * whatever the header names, instead of noticing the overrun afterwards. */
      if (p->head_bytes >= p->max_header) {
        fail(p, 431);
        break;
      }
      if (chunk > p->max_header - p->head_bytes) chunk = p->max_header - p->head_bytes;
    }
    int was_head = p->state == ST_HEAD;
    if (was_head && strict_head(p, data + off, chunk)) break;
    size_t n = http_parser_execute(&p->hp, &settings, data + off, chunk);
    off += n;
    if (was_head) p->head_bytes += n;
    if (p->state == ST_DONE) {
      http_parser_pause(&p->hp, 0);
      *consumed = off;
      return 1;
    }
    if (p->status) break; /* one of our callbacks refused */
    if (HTTP_PARSER_ERRNO(&p->hp) != HPE_OK || n != chunk) {
      fail(p, status_of(&p->hp));
      break;
    }
  }
  if (p->status) {
    p->state = ST_ERROR;
    *consumed = off;
    return p->err;
  }
  *consumed = len;
  return 0;
}

const nt_http_req *nt_http_parser_req(const nt_http_parser *p) {
  return p && p->state == ST_DONE ? &p->req : NULL;
}

int nt_http_parser_status(const nt_http_parser *p) { return p ? p->status : 0; }

size_t nt_http_parser_held(const nt_http_parser *p) {
  if (!p) return 0;
  size_t n = p->target.cap + p->body_cap;
  for (int i = 0; i < NT_HDR_COUNT; i++) n += p->hdr[i].cap;
  return n;
}

/* ---------------------------------------------------------------------------------------
 * Query strings and token lists
 * ------------------------------------------------------------------------------------- */

/* Compares the (encoded) key s[0..n) with the plain `name`, decoded as the value is, so
 * that "room%5Fid" names the same parameter as "room_id". */
static int key_equals(const char *s, size_t n, const char *name) {
  char key[256];
  return nt_pct_decode(s, n, key, sizeof key, NT_PCT_PLUS) >= 0 && strcmp(key, name) == 0;
}

int nt_http_query_param(const char *target, const char *name, char *out, size_t cap) {
  if (!target || !name || !out || cap == 0 || cap > INT_MAX) return NT_EINVAL;
  out[0] = '\0';
  /* a '?' inside the fragment starts no query: "/ws#?token=x" has no token */
  const char *q = target + strcspn(target, "?#");
  if (*q != '?') return NT_ENOTFOUND;
  q++;
  size_t qlen = strcspn(q, "#");
  size_t pos = 0;
  while (pos <= qlen) {
    size_t plen = strcspn(q + pos, "&#");
    if (pos + plen > qlen) plen = qlen - pos;
    const char *param = q + pos;
    const char *eq = memchr(param, '=', plen);
    size_t klen = eq ? (size_t)(eq - param) : plen;
    if (klen > 0 && key_equals(param, klen, name)) {
      /* First occurrence wins; a repeated parameter cannot override an earlier one. */
      const char *v = eq ? eq + 1 : param + plen;
      return nt_pct_decode(v, (size_t)(param + plen - v), out, cap, NT_PCT_PLUS);
    }
    pos += plen + 1;
  }
  return NT_ENOTFOUND;
}

int nt_http_has_token(const char *list, const char *token) {
  if (!list || !token) return 0;
  size_t tlen = strlen(token);
  const char *s = list;
  for (;;) {
    size_t n = strcspn(s, ",");
    const char *b = s, *e = s + n;
    while (b < e && is_ows(*b)) b++;
    while (e > b && is_ows(e[-1])) e--;
    if ((size_t)(e - b) == tlen && strncasecmp(b, token, tlen) == 0) return 1;
    if (s[n] == '\0') return 0;
    s += n + 1;
  }
}

/* ---------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------- */

const char *nt_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Entity";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

/* Writes the status line and headers (snprintf semantics: returns the full length). */
static int format_head(char *buf, size_t cap, int status, const char *content_type,
                       const char *len_line, const char *extra_headers, int keep_alive) {
  return snprintf(buf, cap, "HTTP/1.1 %d %s\r\n%s%s%s%sConnection: %s\r\n%s\r\n", status,
                  nt_http_reason(status), content_type ? "Content-Type: " : "",
                  content_type ? content_type : "", content_type ? "\r\n" : "", len_line,
                  keep_alive ? "keep-alive" : "close", extra_headers ? extra_headers : "");
}

char *nt_http_response(int status, const char *content_type, const void *body,
                       size_t body_len, const char *extra_headers, int keep_alive,
                       size_t *out_len) {
  if (status < 100 || status > 999) status = 500; /* keeps the status line well-formed */
  if (!body) body_len = 0;
  /* RFC 7230 §3.3: 1xx, 204 and 304 carry no body, and their Content-Length would be
   * wrong or forbidden. */
  int no_length = status < 200 || status == 204 || status == 304;
  if (no_length) body_len = 0;
  char len_line[48] = "";
  if (!no_length) snprintf(len_line, sizeof len_line, "Content-Length: %zu\r\n", body_len);
  int h = format_head(NULL, 0, status, content_type, len_line, extra_headers, keep_alive);
  if (h < 0 || (size_t)h > SIZE_MAX - body_len - 1) return NULL;
  char *out = malloc((size_t)h + body_len + 1);
  if (!out) return NULL;
  format_head(out, (size_t)h + 1, status, content_type, len_line, extra_headers, keep_alive);
  if (body_len) memcpy(out + h, body, body_len);
  out[(size_t)h + body_len] = '\0';
  if (out_len) *out_len = (size_t)h + body_len;
  return out;
}

int nt_http_header_next(const nt_http_req *r, size_t *pos, const char **name, size_t *nlen,
                        const char **val, size_t *vlen) {
  const char *h = r->headers;
  size_t len = r->headers_len;
  while (h && *pos < len) {
    const char *line = h + *pos;
    const char *nl = memchr(line, '\n', len - *pos);
    size_t ll = nl ? (size_t)(nl - line) : len - *pos;
    *pos += ll + (nl ? 1 : 0);
    const char *colon = memchr(line, ':', ll);
    if (!colon) continue;
    const char *v = colon + 1, *e = line + ll;
    while (v < e && is_ows(*v)) v++;
    while (e > v && (is_ows(e[-1]) || e[-1] == '\r')) e--;
    *name = line;
    *nlen = (size_t)(colon - line);
    *val = v;
    *vlen = (size_t)(e - v);
    return 1;
  }
  return 0;
}
