/* nt_deflate: permessage-deflate negotiation, shared compressed frames, bounded inflate. */
#include "nt_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "nt_err.h"

#define WINDOW_BITS 15  /* the compressor's window; connections may allow less (wbits) */
#define MEM_LEVEL 8
#define LEVEL 6

struct nt_deflate {
  z_stream def, inf;
  int def_ok, inf_ok;
  size_t min_bytes, max_inflated;
  nt_metrics *m;
  uint8_t *zbuf;        /* compressor output, grown to the largest message seen */
  size_t zcap;
  uint8_t *ibuf;        /* inflater output: max_inflated + 1 bytes, allocated on first use */
};

/* ---------------------------------------------------------------- negotiation - */

/* RFC 7230 tchar */
static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ows(const char *p) {
  while (*p == ' ' || *p == '\t') p++;
  return p;
}

/* Reads a token at *pp into out (NUL-terminated, truncated tokens are refused).
 * Returns its length, 0 when there is none, -1 when it does not fit. */
static int read_token(const char **pp, char *out, size_t cap) {
  const char *p = *pp;
  size_t n = 0;
  while (is_tchar((unsigned char)*p)) {
    if (n + 1 >= cap) return -1;
    out[n++] = *p++;
  }
  out[n] = '\0';
  *pp = p;
  return (int)n;
}

/* A parameter value: token or quoted-string (RFC 6455 §9.1: once unquoted it must be a
 * token too). Returns 0 or -1. */
static int read_value(const char **pp, char *out, size_t cap) {
  const char *p = *pp;
  if (*p != '"') return read_token(pp, out, cap) > 0 ? 0 : -1;
  p++;
  size_t n = 0;
  while (*p && *p != '"') {
    if (*p == '\\') p++;
    if (!*p || !is_tchar((unsigned char)*p) || n + 1 >= cap) return -1;
    out[n++] = *p++;
  }
  if (*p != '"' || n == 0) return -1;
  out[n] = '\0';
  *pp = p + 1;
  return 0;
}

/* 8..15 written as a plain decimal (RFC 7692 §7.1.2: no leading zeros). */
static int window_bits(const char *v) {
  size_t n = strlen(v);
  if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
  return -1;
}

enum { P_SNC = 1, P_CNC = 2, P_SMW = 4, P_CMW = 8 };

/* Parses one extension (name and parameters) from *pp up to the next top-level comma.
 * For a permessage-deflate offer, *ok says whether it is acceptable and *smw gives its
 * server_max_window_bits (0: not limited). Returns 1 for permessage-deflate, 0 for another
 * extension, -1 for a malformed header (nothing further can be trusted). */
static int parse_extension(const char **pp, int *ok, int *smw) {
  char name[64], pname[64], val[16];
  const char *p = skip_ows(*pp);
  int nl = read_token(&p, name, sizeof name);
  if (nl <= 0) return -1;
  int pmd = strcasecmp(name, "permessage-deflate") == 0;
  int seen = 0;
  *ok = 1;
  *smw = 0;
  for (;;) {
    p = skip_ows(p);
    if (*p == '\0' || *p == ',') break;
    if (*p != ';') return -1;
    p = skip_ows(p + 1);
    if (read_token(&p, pname, sizeof pname) <= 0) return -1;
    p = skip_ows(p);
    int has_val = 0;
    if (*p == '=') {
      p = skip_ows(p + 1);
      if (read_value(&p, val, sizeof val)) {
        /* too long or malformed: a value of another extension may be anything quoted;
         * skip it, but a permessage-deflate offer with it is not acceptable */
        if (!pmd) {
          if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
              if (*p == '\\' && p[1]) p++;
            if (*p != '"') return -1;
            p++;
          } else {
            while (is_tchar((unsigned char)*p)) p++;
          }
          continue;
        }
        *ok = 0;
        while (*p && *p != ',' && *p != ';') p++;
        continue;
      }
      has_val = 1;
    }
    if (!pmd) continue;
    int bit = !strcasecmp(pname, "server_no_context_takeover")   ? P_SNC
              : !strcasecmp(pname, "client_no_context_takeover") ? P_CNC
              : !strcasecmp(pname, "server_max_window_bits")     ? P_SMW
              : !strcasecmp(pname, "client_max_window_bits")     ? P_CMW
                                                                 : 0;
    if (!bit || (seen & bit)) { /* unknown or repeated: decline this offer */
      *ok = 0;
      continue;
    }
    seen |= bit;
    if (bit == P_SNC || bit == P_CNC) {
      if (has_val) *ok = 0;
    } else if (bit == P_SMW) {
      int b = has_val ? window_bits(val) : -1; /* the value is required */
      if (b < 0) *ok = 0;
      else *smw = b;
    } else if (has_val && window_bits(val) < 0) { /* client_max_window_bits: value optional */
      *ok = 0;
    }
  }
  *pp = p;
  return pmd;
}

int nt_deflate_negotiate(const char *header, char *resp, size_t cap, uint8_t *wbits) {
  if (!header || !resp || cap < NT_DEFLATE_RESPONSE_MAX) return 0;
  const char *p = header;
  for (;;) {
    p = skip_ows(p);
    if (*p == ',') { /* empty list elements are allowed (RFC 7230 §7) */
      p++;
      continue;
    }
    if (*p == '\0') return 0;
    int ok = 0, smw = 0;
    int r = parse_extension(&p, &ok, &smw);
    if (r < 0) return 0;
    if (r == 1 && ok) {
      /* client_no_context_takeover may be sent even when not offered (RFC 7692
       * §7.1.1.2): it is what lets the node inflate every client with one stream. */
      if (smw)
        snprintf(resp, cap, "permessage-deflate; server_no_context_takeover; "
                            "client_no_context_takeover; server_max_window_bits=%d", smw);
      else
        snprintf(resp, cap, "permessage-deflate; server_no_context_takeover; "
                            "client_no_context_takeover");
      *wbits = (uint8_t)(smw ? smw : WINDOW_BITS);
      return 1;
    }
    if (*p == ',') p++;
  }
}

/* ---------------------------------------------------------------- streams ---- */

nt_deflate *nt_deflate_new(size_t min_bytes, size_t max_inflated, nt_metrics *m) {
  nt_deflate *z = calloc(1, sizeof *z);
  if (!z) return NULL;
  z->min_bytes = min_bytes ? min_bytes : 1;
  z->max_inflated = max_inflated;
  z->m = m;
  /* Negative window bits: raw DEFLATE, no zlib header or trailer (RFC 7692 §7.2.1). */
  z->def_ok = deflateInit2(&z->def, LEVEL, Z_DEFLATED, -WINDOW_BITS, MEM_LEVEL,
                           Z_DEFAULT_STRATEGY) == Z_OK;
  z->inf_ok = inflateInit2(&z->inf, -WINDOW_BITS) == Z_OK;
  if (!z->def_ok || !z->inf_ok) {
    nt_deflate_free(z);
    return NULL;
  }
  return z;
}

void nt_deflate_free(nt_deflate *z) {
  if (!z) return;
  if (z->def_ok) deflateEnd(&z->def);
  if (z->inf_ok) inflateEnd(&z->inf);
  free(z->zbuf);
  free(z->ibuf);
  free(z);
}

/* Compresses into z->zbuf; returns the length without the 00 00 ff ff tail, or 0. */
static size_t compress_msg(nt_deflate *z, const uint8_t *in, size_t len) {
  /* deflateBound covers a finished stream; the sync flush adds an empty stored block */
  size_t need = deflateBound(&z->def, (uLong)len) + 16;
  if (need > z->zcap) {
    uint8_t *nb = realloc(z->zbuf, need);
    if (!nb) return 0;
    z->zbuf = nb;
    z->zcap = need;
  }
  if (deflateReset(&z->def) != Z_OK) return 0;
  z->def.next_in = (Bytef *)in;
  z->def.avail_in = (uInt)len;
  z->def.next_out = z->zbuf;
  z->def.avail_out = (uInt)z->zcap;
  int r = deflate(&z->def, Z_SYNC_FLUSH);
  if (r != Z_OK || z->def.avail_in != 0 || z->def.avail_out == 0) return 0;
  size_t n = z->zcap - z->def.avail_out;
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  if (n < 4 || memcmp(z->zbuf + n - 4, tail, 4) != 0) return 0;
  return n - 4;
}

uint8_t *nt_deflate_compress(nt_deflate *z, const uint8_t *in, size_t len, size_t *out_len) {
  size_t n = compress_msg(z, in, len);
  if (!n) return NULL;
  uint8_t *out = malloc(n);
  if (!out) return NULL;
  memcpy(out, z->zbuf, n);
  *out_len = n;
  return out;
}

static nt_frame *fit(nt_frame *f, unsigned wbits) {
  if (!f->z) return f;
  /* A back-reference never reaches before the message's start (no context takeover), so
   * a message no longer than the connection's window is valid with our larger one. */
  if (wbits < WINDOW_BITS && (size_t)(f->len - f->hdr) > ((size_t)1 << wbits)) return f;
  return f->z;
}

nt_frame *nt_deflate_frame(nt_deflate *z, nt_frame *f, unsigned wbits) {
  if (f->zdone) return fit(f, wbits);
  if (f->hdr == 0) return f; /* pre-framed bytes (HTTP, wslay control output) */
  uint8_t b0 = f->data[0];
  int op = b0 & 0x0f;
  size_t plen = f->len - f->hdr;
  if (!(b0 & 0x80) || (b0 & 0x70) || (op != NT_WS_OP_TEXT && op != NT_WS_OP_BINARY) ||
      plen < z->min_bytes)
    return f;
  f->zdone = 1; /* tried once per frame, whatever the outcome */
  size_t n = compress_msg(z, nt_frame_payload(f), plen);
  if (!n || n >= plen) {
    if (z->m) z->m->deflate_skipped++;
    return f;
  }
  nt_frame *v = nt_frame_new(op, n);
  if (!v) return f;
  v->data[0] |= 0x40; /* RSV1: "Per-Message Compressed" */
  v->zdone = 1;
  memcpy(nt_frame_payload(v), z->zbuf, n);
  f->z = v;
  if (z->m) {
    z->m->deflate_frames++;
    z->m->deflate_in_bytes += plen;
    z->m->deflate_out_bytes += n;
  }
  return fit(f, wbits);
}

int nt_deflate_inflate(nt_deflate *z, const uint8_t *in, size_t len, const uint8_t **out,
                       size_t *out_len) {
  if (!z->ibuf && !(z->ibuf = malloc(z->max_inflated + 1))) return NT_ENOMEM;
  if (inflateReset(&z->inf) != Z_OK) return NT_EINVAL;
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  /* One byte more than allowed: filling it proves the message too large, and inflate
   * stops as soon as the buffer is full, so the work is bounded by the limit. */
  z->inf.next_out = z->ibuf;
  z->inf.avail_out = (uInt)(z->max_inflated + 1);
  int ended = 0, r = NT_OK;
  for (int pass = 0; pass < 2 && !ended && r == NT_OK; pass++) {
    z->inf.next_in = (Bytef *)(pass == 0 ? in : tail);
    z->inf.avail_in = (uInt)(pass == 0 ? len : sizeof tail);
    while (z->inf.avail_in > 0) {
      int zr = inflate(&z->inf, Z_SYNC_FLUSH);
      if (z->inf.avail_out == 0) {
        r = NT_ETOOLARGE;
        break;
      }
      if (zr == Z_STREAM_END) { /* a final block (BFINAL) is allowed; nothing may follow */
        ended = 1;
        if (pass == 0 && z->inf.avail_in > 0) r = NT_EINVAL;
        break;
      }
      if (zr == Z_BUF_ERROR) break; /* no progress possible: input used up */
      if (zr != Z_OK) {
        r = NT_EINVAL;
        break;
      }
    }
  }
  if (r == NT_OK && z->inf.avail_out == 0) r = NT_ETOOLARGE;
  if (z->m) {
    if (r == NT_OK) z->m->inflate_messages++;
    else z->m->inflate_refused++;
  }
  if (r != NT_OK) return r;
  *out = z->ibuf;
  *out_len = z->max_inflated + 1 - z->inf.avail_out;
  return NT_OK;
}
