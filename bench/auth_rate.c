/* auth_rate: how many tokens per second nt_auth_verify checks, per algorithm family
 * (HS256, RS256, ES256), on one thread. Keys are generated at start with OpenSSL and the
 * tokens minted with libjwt, as an issuer would.
 *
 *   build-asan/bench/auth_rate [hs-count] [asymmetric-count]   (defaults 20000 2000)
 *
 * Prints one line per algorithm: "<alg> <n> verifications in <s> s = <rate>/s". */
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nt_auth.h"

#define SECRET "natter-bench-secret-0123456789abcdef"

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "auth_rate: %s\n", what);
  exit(1);
}

/* PEM text of `key` (private or public half), malloc'd. */
static char *pem(EVP_PKEY *key, int private_half) {
  BIO *b = BIO_new(BIO_s_mem());
  if (!b) die("BIO_new");
  int ok = private_half ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                        : PEM_write_bio_PUBKEY(b, key);
  if (!ok) die("PEM write");
  char *data;
  long n = BIO_get_mem_data(b, &data);
  char *out = malloc((size_t)n + 1);
  if (!out) die("out of memory");
  memcpy(out, data, (size_t)n);
  out[n] = '\0';
  BIO_free(b);
  return out;
}

static EVP_PKEY *keygen(const char *type, const char *param) {
  EVP_PKEY *k = param && strcmp(type, "EC") == 0 ? EVP_EC_gen(param)
                                                 : EVP_RSA_gen(2048);
  if (!k) die("key generation");
  return k;
}

static char *mint(jwt_alg_t alg, const char *key, const char *claims) {
  jwt_t *j = NULL;
  if (jwt_new(&j) || jwt_add_grants_json(j, claims) ||
      jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)))
    die("jwt mint");
  char *t = jwt_encode_str(j);
  if (!t) die("jwt encode");
  jwt_free(j);
  return t;
}

static void rate(const char *alg, const char *secret, const char *pub, jwt_alg_t jalg,
                 const char *signing_key, const char *claims, int n) {
  nt_auth_cfg cfg = {.alg = alg, .secret = secret, .public_key_pem = pub};
  nt_auth *a = NULL;
  char err[256];
  if (nt_auth_new(&cfg, &a, err, sizeof err)) die(err);
  char *tok = mint(jalg, signing_key, claims);
  int64_t now = (int64_t)time(NULL);
  double t0 = seconds();
  for (int i = 0; i < n; i++) {
    nt_identity id;
    if (nt_auth_verify(a, tok, now, &id, NULL) != 0) die("verification failed");
    nt_identity_clear(&id);
  }
  double dt = seconds() - t0;
  printf("%s %d verifications in %.3f s = %.0f/s\n", alg, n, dt, n / dt);
  free(tok);
  nt_auth_free(a);
}

int main(int argc, char **argv) {
  int hs = argc > 1 ? atoi(argv[1]) : 20000;
  int asym = argc > 2 ? atoi(argv[2]) : 2000;
  if (hs <= 0 || asym <= 0) die("counts must be positive");
  char claims[256];
  snprintf(claims, sizeof claims,
           "{\"sub\":\"alice\",\"tenant\":\"acme\",\"exp\":%lld,"
           "\"rooms\":[\"lobby\",\"team-*\"]}",
           (long long)time(NULL) + 3600);
  rate("HS256", SECRET, NULL, JWT_ALG_HS256, SECRET, claims, hs);
  EVP_PKEY *rsa = keygen("RSA", NULL), *ec = keygen("EC", "P-256");
  char *rsa_priv = pem(rsa, 1), *rsa_pub = pem(rsa, 0);
  char *ec_priv = pem(ec, 1), *ec_pub = pem(ec, 0);
  rate("RS256", NULL, rsa_pub, JWT_ALG_RS256, rsa_priv, claims, asym);
  rate("ES256", NULL, ec_pub, JWT_ALG_ES256, ec_priv, claims, asym);
  free(rsa_priv);
  free(rsa_pub);
  free(ec_priv);
  free(ec_pub);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
  return 0;
}
