/* nt_tls: TLS server configuration (reloadable) and the TLS transport of nt_conn. */
#include "nt_tls.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"
#include "nt_log.h"
#include "nt_sock.h"

/* Plaintext of one read: the read buffer is 64 KiB of ciphertext, and OpenSSL may hold up
 * to one partial record (16 KiB + overhead) from the previous read; TLS never makes
 * plaintext longer than its ciphertext. Larger input is handled in pieces anyway. */
#define PLAIN_CAP (96 * 1024)
/* Small frames are gathered into one record of at most this many bytes (TLS' maximum). */
#define GATHER_CAP 16384
/* Plaintext encrypted per batch before the socket is tried: bounds what one slow
 * connection can hold in ciphertext (the rest waits as shared frames in its queue). */
#define BATCH_BYTES (64 * 1024)

/* TLS 1.3 suites are all AEAD; for 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305. */
static const char suites13[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char ciphers12[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct nt_tls_ctx {
  SSL_CTX *ctx;          /* for new connections; established ones hold a reference to theirs */
  char *cert, *key;
  int min_version;       /* TLS1_2_VERSION or TLS1_3_VERSION */
  nt_metrics *m;
  BIO_METHOD *meth;
  /* shared by every TLS connection of the node: used synchronously inside one read or
   * one flush, and emptied before it returns */
  uint8_t plain[PLAIN_CAP];    /* decrypted input */
  uint8_t gather[GATHER_CAP];  /* small frames gathered into one record */
  uint8_t *out;                /* ciphertext produced by the current operation */
  size_t out_len, out_cap;
};

/* Per connection (c->tls). */
typedef struct nt_tls {
  SSL *ssl;
  nt_tls_ctx *t;
  const uint8_t *in;     /* ciphertext being read: borrowed from the node's read buffer */
  size_t in_len;
  uint8_t *backlog;      /* ciphertext the socket has not taken yet (rare): sent before
                            anything else once it is writable (c->wblocked meanwhile) */
  size_t backlog_len;
  uint8_t established;
  uint8_t shutdown_sent;
} nt_tls;

/* ---------------------------------------------------------------- errors ----- */

static void ssl_err(char *err, size_t errlen, const char *what, const char *file) {
  char ossl[200] = "";
  unsigned long e = ERR_get_error();
  if (e) ERR_error_string_n(e, ossl, sizeof ossl);
  ERR_clear_error();
  snprintf(err, errlen, "%s%s%s%s%s", what, file ? " " : "", file ? file : "", *ossl ? ": " : "",
           ossl);
}

/* ---------------------------------------------------------------- BIO -------- */

/* OpenSSL reads the ciphertext of the current read callback straight from the node's read
 * buffer and writes its output to the node's output buffer: no per-connection copy. */
static int bio_read(BIO *b, char *buf, int len) {
  nt_tls *s = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!s->in_len) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = (size_t)len < s->in_len ? (size_t)len : s->in_len;
  memcpy(buf, s->in, n);
  s->in += n;
  s->in_len -= n;
  return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len) {
  nt_tls *s = BIO_get_data(b);
  nt_tls_ctx *t = s->t;
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (t->out_len + (size_t)len > t->out_cap) {
    size_t ncap = t->out_cap ? t->out_cap : 128 * 1024;
    while (ncap < t->out_len + (size_t)len) ncap *= 2;
    uint8_t *nb = realloc(t->out, ncap);
    if (!nb) return -1;
    t->out = nb;
    t->out_cap = ncap;
  }
  memcpy(t->out + t->out_len, buf, (size_t)len);
  t->out_len += (size_t)len;
  return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b, (void)num, (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* ---------------------------------------------------------------- config ----- */

/* ALPN: WebSockets and the API speak HTTP/1.1; a client offering only h2 gets no ALPN. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char h11[] = "\x08http/1.1";
  (void)ssl, (void)arg;
  unsigned char *o = NULL;
  if (SSL_select_next_proto(&o, outlen, h11, sizeof h11 - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *build_ctx(const nt_tls_ctx *t, char *err, size_t errlen) {
  ERR_clear_error();
  SSL_CTX *x = SSL_CTX_new(TLS_server_method());
  if (!x) {
    ssl_err(err, errlen, "cannot create the TLS context", NULL);
    return NULL;
  }
  int ok = SSL_CTX_set_min_proto_version(x, t->min_version) == 1 &&
           SSL_CTX_set_ciphersuites(x, suites13) == 1 &&
           SSL_CTX_set_cipher_list(x, ciphers12) == 1 &&
           SSL_CTX_set1_groups_list(x, "X25519:P-256:P-384") == 1;
  if (!ok) {
    ssl_err(err, errlen, "cannot configure TLS", NULL);
    SSL_CTX_free(x);
    return NULL;
  }
  SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Record buffers (~34 KiB) are freed whenever a connection is idle. */
  SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
  /* No server-side session cache (memory per session); resumption uses stateless
   * tickets, one per handshake. */
  SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(x, 1);
  SSL_CTX_set_alpn_select_cb(x, alpn_select, NULL);
  if (SSL_CTX_use_certificate_chain_file(x, t->cert) != 1) {
    ssl_err(err, errlen, "cannot load the certificate chain", t->cert);
    SSL_CTX_free(x);
    return NULL;
  }
  if (SSL_CTX_use_PrivateKey_file(x, t->key, SSL_FILETYPE_PEM) != 1) {
    ssl_err(err, errlen, "cannot load the private key", t->key);
    SSL_CTX_free(x);
    return NULL;
  }
  if (SSL_CTX_check_private_key(x) != 1) {
    ssl_err(err, errlen, "the private key does not match the certificate", t->key);
    SSL_CTX_free(x);
    return NULL;
  }
  return x;
}

int nt_tls_ctx_new(const char *cert, const char *key, const char *min_version,
                   nt_metrics *m, nt_tls_ctx **out, char *err, size_t errlen) {
  int minv;
  if (!min_version || !strcmp(min_version, "1.3")) minv = TLS1_3_VERSION;
  else if (!strcmp(min_version, "1.2")) minv = TLS1_2_VERSION;
  else {
    snprintf(err, errlen, "TLS minimum version must be 1.3 or 1.2 (got '%s')", min_version);
    return NT_EINVAL;
  }
  if (!cert || !key) {
    snprintf(err, errlen, "a certificate and a key are needed");
    return NT_EINVAL;
  }
  nt_tls_ctx *t = calloc(1, sizeof *t);
  if (!t || !(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
    if (t) free(t->cert);
    free(t);
    snprintf(err, errlen, "out of memory");
    return NT_ENOMEM;
  }
  t->min_version = minv;
  t->m = m;
  t->meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "natter-conn");
  if (!t->meth || !BIO_meth_set_read(t->meth, bio_read) ||
      !BIO_meth_set_write(t->meth, bio_write) || !BIO_meth_set_ctrl(t->meth, bio_ctrl)) {
    snprintf(err, errlen, "out of memory");
    nt_tls_ctx_free(t);
    return NT_ENOMEM;
  }
  if (!(t->ctx = build_ctx(t, err, errlen))) {
    nt_tls_ctx_free(t);
    return NT_EINVAL;
  }
  *out = t;
  return 0;
}

int nt_tls_ctx_reload(nt_tls_ctx *t, char *err, size_t errlen) {
  SSL_CTX *x = build_ctx(t, err, errlen);
  if (!x) {
    if (t->m) t->m->tls_reload_failures++;
    return NT_EINVAL;
  }
  SSL_CTX_free(t->ctx); /* connections made with it keep their own reference */
  t->ctx = x;
  if (t->m) t->m->tls_reloads++;
  return 0;
}

void nt_tls_ctx_free(nt_tls_ctx *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  if (t->meth) BIO_meth_free(t->meth);
  free(t->out);
  free(t->cert);
  free(t->key);
  free(t);
}

struct ssl_ctx_st *nt_tls_ctx_ssl(nt_tls_ctx *t) { return t->ctx; }

/* ---------------------------------------------------------------- output ----- */

/* Appends ciphertext to the backlog. Returns 0, or -1 after aborting the connection. */
static int backlog_add(nt_conn *c, const uint8_t *p, size_t n) {
  nt_tls *s = c->tls;
  uint8_t *nb = realloc(s->backlog, s->backlog_len + n);
  if (!nb) {
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return -1;
  }
  memcpy(nb + s->backlog_len, p, n);
  s->backlog = nb;
  s->backlog_len += n;
  nt_conn_want_write(c, 1);
  return 0;
}

/* Writes `n` bytes of ciphertext as far as the socket takes them now; the rest goes to
 * the backlog, sent when the socket is writable. Returns 0, or -1 after aborting the
 * connection. */
static int write_out(nt_conn *c, const uint8_t *p, size_t n) {
  struct iovec v = {(void *)p, n};
  ssize_t r = nt_sock_sendv(c->fd, &v, 1);
  if (r == NT_EAGAIN) r = 0;
  if (r < 0) {
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return -1;
  }
  if ((size_t)r == n) return 0;
  return backlog_add(c, p + r, n - (size_t)r);
}

/* Sends what the last OpenSSL calls produced. While older ciphertext waits in the backlog
 * the new bytes queue behind it (ordering). Returns 0 or -1 (the connection was
 * aborted). */
static int emit(nt_conn *c) {
  nt_tls *s = c->tls;
  nt_tls_ctx *t = s->t;
  size_t n = t->out_len;
  t->out_len = 0;
  if (!n) return 0;
  if (c->handle_closing) return -1;
  return s->backlog_len ? backlog_add(c, t->out, n) : write_out(c, t->out, n);
}

/* Writes the backlog as far as the socket takes it. Returns 0 (check s->backlog_len for
 * what is left) or -1 (aborted). */
static int backlog_flush(nt_conn *c) {
  nt_tls *s = c->tls;
  if (!s->backlog_len) return 0;
  struct iovec v = {s->backlog, s->backlog_len};
  ssize_t r = nt_sock_sendv(c->fd, &v, 1);
  if (r == NT_EAGAIN) r = 0;
  if (r < 0) {
    nt_conn_abort(c, NT_CLOSE_CLIENT);
    return -1;
  }
  if ((size_t)r == s->backlog_len) {
    free(s->backlog);
    s->backlog = NULL;
    s->backlog_len = 0;
    nt_conn_want_write(c, 0);
    return 0;
  }
  memmove(s->backlog, s->backlog + r, s->backlog_len - (size_t)r);
  s->backlog_len -= (size_t)r;
  nt_conn_want_write(c, 1);
  return 0;
}

/* ---------------------------------------------------------------- transport -- */

static void handshake_failed(nt_conn *c, int ssl_error) {
  nt_tls *s = c->tls;
  unsigned long e = ERR_peek_last_error();
  char why[160] = "connection closed during the handshake";
  if (e) ERR_error_string_n(e, why, sizeof why);
  else if (ssl_error == SSL_ERROR_ZERO_RETURN) snprintf(why, sizeof why, "close_notify");
  ERR_clear_error();
  if (s->t->m) s->t->m->tls_handshake_failures++;
  nt_log_debug("tls handshake failed", "{s:s, s:s}", "peer", NT_CONN_PEER_STR(c), "reason", why);
  emit(c); /* the alert, best effort */
  nt_conn_abort(c, NT_CLOSE_PROTOCOL);
}

static void tls_read(nt_conn *c, const uint8_t *data, size_t len) {
  nt_tls *s = c->tls;
  nt_tls_ctx *t = s->t;
  t->out_len = 0; /* the shared output buffer only ever holds this operation's bytes */
  s->in = data;
  s->in_len = len;
  ERR_clear_error();
  if (!s->established) {
    int r = SSL_do_handshake(s->ssl);
    if (r != 1) {
      int e = SSL_get_error(s->ssl, r);
      s->in_len = 0;
      if (e == SSL_ERROR_WANT_READ) emit(c); /* our flight: ServerHello ... Finished */
      else handshake_failed(c, e);
      return;
    }
    s->established = 1;
    if (t->m) t->m->tls_handshakes++;
    nt_log_debug("tls established", "{s:s, s:s, s:s}", "peer", NT_CONN_PEER_STR(c), "version",
                 SSL_get_version(s->ssl), "cipher", SSL_get_cipher_name(s->ssl));
  }
  size_t plen = 0;
  int eof = 0;
  for (;;) {
    if (plen == PLAIN_CAP) { /* cannot happen with a 64 KiB read buffer; handled anyway */
      nt_conn_input(c, t->plain, plen);
      plen = 0;
      if (c->handle_closing) break;
    }
    int r = SSL_read(s->ssl, t->plain + plen, (int)(PLAIN_CAP - plen));
    if (r > 0) {
      plen += (size_t)r;
      continue;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e != SSL_ERROR_WANT_READ) {
      if (e != SSL_ERROR_ZERO_RETURN) { /* not a close_notify: a bad record */
        const char *why = ERR_reason_error_string(ERR_peek_last_error());
        nt_log_debug("tls read failed", "{s:s, s:s}", "peer", NT_CONN_PEER_STR(c), "reason",
                     why ? why : "?");
      }
      ERR_clear_error();
      eof = 1;
    }
    break;
  }
  s->in = NULL;
  s->in_len = 0;
  if (emit(c) < 0) return; /* tickets, key updates, alerts */
  if (plen && !c->handle_closing) nt_conn_input(c, t->plain, plen);
  if (eof) nt_conn_abort(c, NT_CLOSE_CLIENT);
}

static int ssl_write(nt_conn *c, const void *p, size_t n) {
  if (SSL_write(c->tls->ssl, p, (int)n) == (int)n) return 0;
  ERR_clear_error();
  c->tls->t->out_len = 0; /* never left for the next connection's emit */
  nt_conn_abort(c, NT_CLOSE_CLIENT);
  return -1;
}

/* Encrypts the queue in batches (small frames share records) and writes each batch with
 * one call; stops when the socket is full, leaving the rest of the queue as shared frames. */
static void tls_flush(nt_conn *c) {
  nt_tls *s = c->tls;
  nt_tls_ctx *t = s->t;
  if (c->handle_closing) return;
  if (c->pending_abort) {
    nt_conn_abort(c, NT_CLOSE_SLOW);
    return;
  }
  /* Older ciphertext first; from the per-turn flush the socket is not even tried while
   * it is known to be full (UV_WRITABLE comes back here). */
  if (c->wblocked || backlog_flush(c) < 0 || s->backlog_len) return;
  if (!s->established) {
    if (c->shutdown_after_flush) nt_conn_close_handle(c);
    return;
  }
  t->out_len = 0;
  ERR_clear_error();
  while (c->qhead != c->qtail) {
    size_t batch = 0, glen = 0;
    while (c->qhead != c->qtail && batch < BATCH_BYTES) {
      nt_frame *f = c->q[c->qhead];
      const uint8_t *p = f->data + c->qoff;
      size_t n = f->len - c->qoff;
      if (n > BATCH_BYTES - batch) n = BATCH_BYTES - batch;
      if (glen && (n >= GATHER_CAP || glen + n > GATHER_CAP)) {
        if (ssl_write(c, t->gather, glen)) return;
        glen = 0;
      }
      if (n >= GATHER_CAP) {
        if (ssl_write(c, p, n)) return;
      } else {
        memcpy(t->gather + glen, p, n);
        glen += n;
      }
      batch += n;
      nt_conn_wrote(c, n); /* the frame may go now: its bytes are encrypted or copied */
    }
    if (glen && ssl_write(c, t->gather, glen)) return;
    if (emit(c) < 0 || s->backlog_len) return;
  }
  if (c->shutdown_after_flush) {
    if (!s->shutdown_sent) {
      s->shutdown_sent = 1;
      SSL_shutdown(s->ssl); /* close_notify; the peer's is not waited for */
      ERR_clear_error();
      if (emit(c) < 0 || s->backlog_len) return;
    }
    nt_conn_close_handle(c);
  }
}

static void tls_free(nt_conn *c) {
  nt_tls *s = c->tls;
  if (!s) return;
  SSL_free(s->ssl); /* and its BIO */
  free(s->backlog);
  free(s);
  c->tls = NULL;
}

const nt_transport nt_transport_tls = {
    .name = "tls",
    .read = tls_read,
    .flush = tls_flush,
    .watch = nt_conn_tcp_watch,
    .closed = nt_conn_tcp_closed,
    .free = tls_free,
};

int nt_tls_attach(nt_conn *c, nt_tls_ctx *t) {
  nt_tls *s = calloc(1, sizeof *s);
  if (!s) return NT_ENOMEM;
  s->t = t;
  BIO *b = NULL;
  if (!(s->ssl = SSL_new(t->ctx)) || !(b = BIO_new(t->meth))) {
    SSL_free(s->ssl);
    free(s);
    ERR_clear_error();
    return NT_ENOMEM;
  }
  BIO_set_data(b, s);
  BIO_set_init(b, 1);
  SSL_set_bio(s->ssl, b, b); /* one reference, owned by the SSL object */
  SSL_set_accept_state(s->ssl);
  c->tls = s;
  c->tp = &nt_transport_tls;
  return 0;
}

