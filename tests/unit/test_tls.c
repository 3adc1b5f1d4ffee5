/* test_tls: the node's TLS configuration (nt_tls_ctx) without sockets — loading,
 * refusals (version, files, mismatched key), reload semantics (new connections get the
 * new certificate, established ones keep theirs), the protocol floor, and the memory an
 * idle established server connection holds (OpenSSL's allocations counted through
 * CRYPTO_set_mem_functions; docs/tls-compression.md quotes the number printed here).
 * The end-to-end transport over libuv is covered by tests/integration/test_tls.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nt_err.h"
#include "nt_metrics.h"
#include "nt_tls.h"

/* ---------------------------------------------------------------- accounting -- */

/* Live bytes allocated by OpenSSL while `g_count` is set (the server side's calls). */
#define SLOTS (1 << 16)
static struct { void *p; size_t n; } g_tab[SLOTS];
static int g_count;
static long g_live;

#define TOMB ((void *)1)

static size_t slot(void *p) { return ((uintptr_t)p >> 4) * 2654435761u % SLOTS; }

static void track(void *p, size_t n) {
  for (size_t i = slot(p);; i = (i + 1) % SLOTS)
    if (!g_tab[i].p || g_tab[i].p == TOMB) {
      g_tab[i].p = p;
      g_tab[i].n = n;
      g_live += (long)n;
      return;
    }
}

/* Returns 1 when `p` was tracked (and forgets it). */
static int untrack(void *p) {
  for (size_t i = slot(p); g_tab[i].p; i = (i + 1) % SLOTS)
    if (g_tab[i].p == p) {
      g_live -= (long)g_tab[i].n;
      g_tab[i].p = TOMB;
      return 1;
    }
  return 0;
}

static void *m_alloc(size_t n, const char *f, int l) {
  (void)f, (void)l;
  void *p = malloc(n ? n : 1);
  if (p && g_count) track(p, n);
  return p;
}

static void m_free(void *p, const char *f, int l) {
  (void)f, (void)l;
  if (p) untrack(p);
  free(p);
}

static void *m_realloc(void *p, size_t n, const char *f, int l) {
  (void)f, (void)l;
  int was = p ? untrack(p) : 0;
  void *q = realloc(p, n ? n : 1);
  if (q && (was || g_count)) track(q, n);
  return q;
}

/* ---------------------------------------------------------------- certs ------ */

static char g_dir[64];

/* Writes a self-signed P-256 certificate and key as PEM files. */
static void make_cert(const char *cert, const char *key, const char *cn) {
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  assert_non_null(pk);
  X509 *x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), (long)getpid() ^ (long)cn[0]);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pk);
  X509_NAME *nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, nm);
  assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
  FILE *f = fopen(cert, "w");
  PEM_write_X509(f, x);
  fclose(f);
  f = fopen(key, "w");
  PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pk);
}

static void path(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", g_dir, name);
}

/* ---------------------------------------------------------------- handshake -- */

typedef struct pair {
  SSL *cli, *srv;
} pair;

/* A client and a server SSL joined by a BIO pair, handshake done. */
static pair connect_pair(SSL_CTX *server, const char *ca, int max_version) {
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  assert_int_equal(SSL_CTX_load_verify_locations(cctx, ca, NULL), 1);
  SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
  if (max_version) {
    SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(cctx, max_version);
    SSL_CTX_set_security_level(cctx, 0);
  }
  pair p;
  p.cli = SSL_new(cctx);
  SSL_CTX_free(cctx);
  BIO *bc, *bs;
  assert_int_equal(BIO_new_bio_pair(&bc, 65536, &bs, 65536), 1);
  SSL_set_bio(p.cli, bc, bc);
  SSL_set_connect_state(p.cli);
  g_count = 1;
  p.srv = SSL_new(server);
  g_count = 0;
  SSL_set_bio(p.srv, bs, bs);
  SSL_set_accept_state(p.srv);
  return p;
}

/* Runs both sides until the handshake ends; returns 1 when both completed. */
static int handshake(pair *p) {
  int c = 0, s = 0;
  for (int i = 0; i < 20 && !(c == 1 && s == 1); i++) {
    if (c != 1) {
      c = SSL_do_handshake(p->cli);
      if (c != 1 && SSL_get_error(p->cli, c) != SSL_ERROR_WANT_READ) return 0;
    }
    if (s != 1) {
      g_count = 1;
      s = SSL_do_handshake(p->srv);
      g_count = 0;
      if (s != 1 && SSL_get_error(p->srv, s) != SSL_ERROR_WANT_READ) return 0;
    }
  }
  return c == 1 && s == 1;
}

static void pair_free(pair *p) {
  SSL_free(p->cli);
  SSL_free(p->srv);
  ERR_clear_error();
}

static void echo(pair *p, size_t len) {
  char *buf = malloc(len), *got = malloc(len);
  memset(buf, 'a', len);
  assert_int_equal(SSL_write(p->cli, buf, (int)len), (int)len);
  size_t have = 0;
  g_count = 1;
  while (have < len) {
    int r = SSL_read(p->srv, got + have, (int)(len - have));
    assert_true(r > 0);
    have += (size_t)r;
  }
  assert_int_equal(SSL_write(p->srv, buf, (int)len), (int)len);
  g_count = 0;
  have = 0;
  while (have < len) {
    int r = SSL_read(p->cli, got + have, (int)(len - have));
    assert_true(r > 0);
    have += (size_t)r;
  }
  free(buf);
  free(got);
}

/* ---------------------------------------------------------------- tests ------ */

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/nt-test-tls-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  char c[128], k[128];
  path(c, sizeof c, "a.crt"), path(k, sizeof k, "a.key");
  make_cert(c, k, "natter-a");
  path(c, sizeof c, "b.crt"), path(k, sizeof k, "b.key");
  make_cert(c, k, "natter-b");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  const char *names[] = {"a.crt", "a.key", "b.crt", "b.key", "live.crt", "live.key"};
  char p[128];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    path(p, sizeof p, names[i]);
    unlink(p);
  }
  rmdir(g_dir);
  return 0;
}

static void copy(const char *from, const char *to) {
  char a[128], b[128], buf[8192];
  path(a, sizeof a, from), path(b, sizeof b, to);
  FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
  size_t n = fread(buf, 1, sizeof buf, in);
  fwrite(buf, 1, n, out);
  fclose(in);
  fclose(out);
}

static void test_refusals(void **state) {
  (void)state;
  char c[128], k[128], kb[128], err[256];
  path(c, sizeof c, "a.crt"), path(k, sizeof k, "a.key"), path(kb, sizeof kb, "b.key");
  nt_tls_ctx *t = NULL;
  assert_int_equal(nt_tls_ctx_new(c, k, "1.1", NULL, &t, err, sizeof err), NT_EINVAL);
  assert_non_null(strstr(err, "1.3 or 1.2"));
  assert_int_equal(nt_tls_ctx_new(c, "/nonexistent.key", NULL, NULL, &t, err, sizeof err),
                   NT_EINVAL);
  assert_non_null(strstr(err, "private key"));
  assert_int_equal(nt_tls_ctx_new("/nonexistent.crt", k, NULL, NULL, &t, err, sizeof err),
                   NT_EINVAL);
  assert_non_null(strstr(err, "certificate"));
  assert_int_equal(nt_tls_ctx_new(c, kb, NULL, NULL, &t, err, sizeof err), NT_EINVAL);
  assert_non_null(strstr(err, "mismatch"));
  assert_null(t);
}

static void test_versions(void **state) {
  (void)state;
  char c[128], k[128], err[256];
  path(c, sizeof c, "a.crt"), path(k, sizeof k, "a.key");
  nt_tls_ctx *t13 = NULL, *t12 = NULL;
  nt_metrics m;
  memset(&m, 0, sizeof m);
  assert_int_equal(nt_tls_ctx_new(c, k, NULL, &m, &t13, err, sizeof err), 0);
  assert_int_equal(nt_tls_ctx_new(c, k, "1.2", &m, &t12, err, sizeof err), 0);
  pair p = connect_pair(nt_tls_ctx_ssl(t13), c, 0);
  assert_true(handshake(&p));
  assert_string_equal(SSL_get_version(p.srv), "TLSv1.3");
  pair_free(&p);
  p = connect_pair(nt_tls_ctx_ssl(t13), c, TLS1_2_VERSION); /* 1.2 refused by default */
  assert_false(handshake(&p));
  pair_free(&p);
  p = connect_pair(nt_tls_ctx_ssl(t12), c, TLS1_2_VERSION);
  assert_true(handshake(&p));
  assert_string_equal(SSL_get_version(p.srv), "TLSv1.2");
  const char *cipher = SSL_get_cipher_name(p.srv); /* ECDHE + AEAD only */
  assert_non_null(strstr(cipher, "ECDHE"));
  assert_true(strstr(cipher, "GCM") || strstr(cipher, "CHACHA20"));
  pair_free(&p);
  p = connect_pair(nt_tls_ctx_ssl(t12), c, TLS1_1_VERSION); /* 1.1 never */
  assert_false(handshake(&p));
  pair_free(&p);
  nt_tls_ctx_free(t13);
  nt_tls_ctx_free(t12);
}

static void test_reload(void **state) {
  (void)state;
  char c[128], k[128], ca_a[128], ca_b[128], err[256];
  copy("a.crt", "live.crt");
  copy("a.key", "live.key");
  path(c, sizeof c, "live.crt"), path(k, sizeof k, "live.key");
  path(ca_a, sizeof ca_a, "a.crt"), path(ca_b, sizeof ca_b, "b.crt");
  nt_metrics m;
  memset(&m, 0, sizeof m);
  nt_tls_ctx *t = NULL;
  assert_int_equal(nt_tls_ctx_new(c, k, NULL, &m, &t, err, sizeof err), 0);
  pair old = connect_pair(nt_tls_ctx_ssl(t), ca_a, 0);
  assert_true(handshake(&old));
  copy("b.crt", "live.crt");
  copy("b.key", "live.key");
  assert_int_equal(nt_tls_ctx_reload(t, err, sizeof err), 0);
  assert_int_equal(m.tls_reloads, 1);
  /* the established connection keeps working on its old configuration */
  echo(&old, 1000);
  /* new connections get B: a client trusting only A fails, one trusting B succeeds */
  pair p = connect_pair(nt_tls_ctx_ssl(t), ca_a, 0);
  assert_false(handshake(&p));
  pair_free(&p);
  p = connect_pair(nt_tls_ctx_ssl(t), ca_b, 0);
  assert_true(handshake(&p));
  pair_free(&p);
  /* a broken reload keeps B */
  FILE *f = fopen(k, "w");
  fputs("garbage\n", f);
  fclose(f);
  assert_int_equal(nt_tls_ctx_reload(t, err, sizeof err), NT_EINVAL);
  assert_int_equal(m.tls_reload_failures, 1);
  p = connect_pair(nt_tls_ctx_ssl(t), ca_b, 0);
  assert_true(handshake(&p));
  pair_free(&p);
  echo(&old, 100);
  pair_free(&old);
  nt_tls_ctx_free(t);
}

/* What an idle established TLS connection costs in OpenSSL memory (server side only). */
static void test_memory_per_connection(void **state) {
  (void)state;
  char c[128], k[128], err[256];
  path(c, sizeof c, "a.crt"), path(k, sizeof k, "a.key");
  nt_tls_ctx *t = NULL;
  assert_int_equal(nt_tls_ctx_new(c, k, NULL, NULL, &t, err, sizeof err), 0);
  enum { N = 20 };
  pair ps[N];
  /* one connection first: process-wide caches (algorithm fetches) are not per connection */
  pair warm = connect_pair(nt_tls_ctx_ssl(t), c, 0);
  assert_true(handshake(&warm));
  echo(&warm, 20000);
  pair_free(&warm);
  long base = g_live;
  for (int i = 0; i < N; i++) {
    ps[i] = connect_pair(nt_tls_ctx_ssl(t), c, 0);
    assert_true(handshake(&ps[i]));
    echo(&ps[i], 20000); /* records bigger than the buffers' defaults, then idle */
  }
  long per = (g_live - base) / N;
  printf("tls: an idle established TLS 1.3 server connection holds %ld bytes of OpenSSL "
         "memory (SSL_MODE_RELEASE_BUFFERS)\n", per);
  /* without released buffers it would be over 40 KB */
  assert_true(per > 1000 && per < 16 * 1024);
  for (int i = 0; i < N; i++) pair_free(&ps[i]);
  nt_tls_ctx_free(t);
}

int main(void) {
  /* before OpenSSL allocates anything */
  if (!CRYPTO_set_mem_functions(m_alloc, m_realloc, m_free)) {
    fprintf(stderr, "OpenSSL allocated before main: cannot count its memory\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_reload),
      cmocka_unit_test(test_memory_per_connection),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
