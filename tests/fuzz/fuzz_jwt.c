/* fuzz_jwt: connect-token verification (nt_auth_verify), the first thing a node does with
 * attacker bytes after the HTTP parser. Three modes (data[0] % 3):
 *   0  the input is the token, checked by an HS256 verifier;
 *   1  the input is a header and a claims JSON (split at the first NUL) that the harness
 *      encodes and signs with the verifier's secret, so the claim checks (exp, nbf, sub,
 *      tenant/tid, rooms patterns, alg pinning, typ, crit) run on signed fuzz data;
 *   2  the input is the token, checked by an ES256 verifier (OpenSSL signature parsing).
 * The room-claim matcher then runs on a fuzzer-chosen room for every identity that came
 * out. Time is fixed so runs are reproducible. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "nt_auth.h"
#include "../nt_test_b64.h"

#define SECRET "fuzz-secret-0123456789abcdef0123456789abcdef"
#define NOW_S 1700000000

static nt_auth *hs, *es;

static char *es_public_pem(void) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  BIO *b = BIO_new(BIO_s_mem());
  if (!k || !b || !PEM_write_bio_PUBKEY(b, k)) abort();
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *pem = strndup(p, (size_t)n);
  BIO_free(b);
  EVP_PKEY_free(k);
  return pem;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char err[256];
  nt_auth_cfg h = {.alg = "HS256", .secret = SECRET, .default_tenant = "dflt", .leeway_s = 5};
  if (nt_auth_new(&h, &hs, err, sizeof err)) abort();
  char *pem = es_public_pem();
  nt_auth_cfg e = {.alg = "ES256", .public_key_pem = pem};
  if (nt_auth_new(&e, &es, err, sizeof err)) abort();
  free(pem);
  return 0;
}


static char *sign_hs256(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t hl = nul ? (size_t)(nul - data) : 0;
  const uint8_t *hdr = nul ? data : (const uint8_t *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  if (!nul) hl = strlen((const char *)hdr);
  const uint8_t *cl = nul ? nul + 1 : data;
  size_t cll = nul ? size - hl - 1 : size;
  char *tok = malloc((hl + cll) * 4 / 3 + 64 + 4);
  if (!tok) return NULL;
  size_t n = nt_test_b64url(hdr, hl, tok);
  tok[n++] = '.';
  n += nt_test_b64url(cl, cll, tok + n);
  unsigned char mac[32];
  unsigned int ml = 0;
  HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)tok, n, mac, &ml);
  tok[n++] = '.';
  nt_test_b64url(mac, ml, tok + n);
  return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 16384) return 0;
  int mode = data[0] % 3;
  data++;
  size--;
  char *tok = mode == 1 ? sign_hs256(data, size) : strndup((const char *)data, size);
  if (!tok) return 0;
  nt_identity id;
  memset(&id, 0, sizeof id);
  const char *why = NULL;
  int r = nt_auth_verify(mode == 2 ? es : hs, tok, NOW_S, &id, &why);
  if (r == 0) {
    if (why || !id.user[0] || !id.tenant[0]) __builtin_trap(); /* the contract */
    const char *room = size > 2 ? (const char *)data + size - 2 : "r";
    char probe[3] = {room[0], size > 2 ? room[1] : 0, 0};
    nt_identity_room_allowed(&id, probe);
    nt_identity_room_allowed(&id, "lobby");
    nt_identity_clear(&id);
  } else if (!why) {
    __builtin_trap();
  }
  free(tok);
  return 0;
}
