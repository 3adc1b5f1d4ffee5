/* test_auth: connect JWT checks — algorithm pinning, claims, ids, rooms, keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <pthread.h>

#include "nt_auth.h"
#include "nt_err.h"
#include "../nt_test_b64.h"

#define NOW 1700000000LL
#define SECRET "natter-test-secret-0123456789abcdef"

/* Test-only key pairs, generated once with:
 *   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
 *   openssl ecparam -name prime256v1 -genkey -noout | openssl pkey
 *   openssl ecparam -name secp384r1 -genkey -noout | openssl pkey -pubout
 *   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 | openssl pkey -pubout
 * They protect nothing. */
static const char RSA_PRIV[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC0Np3Sf+2q/WVT\n"
    "iwoPU6gNyq7fTpPv+OrZ96hMcs6OXWRkVzJFPgdm5wGc2Pn+z54f++T+ExMgDuQz\n"
    "hySjiy2anaW5RCW5t2zbWbIr99uKD7JyxnI6aMDIr1pkuyGFOvRKj0ngQBRgpYuz\n"
    "1q4kcHBbbc+0GiSDZq1DhSOiuwUc23W0mnvyFbDpnyu4XPLyqMHlfs+jgwGpGk0S\n"
    "AHYWuFZjSHT74zCgDsvxBFNThyLqVc1xE2LfDHB+l5MGAaTAGlpBX/pWTE+zfZCh\n"
    "/fgqx7CvxbiM6CrFNBaKfCNUkwQj3w1MC9hSqrEFahZwW7re6IXrFSp5eYZVtYem\n"
    "wvRPr0Q5AgMBAAECggEAIFP13teVHonjXefAz7wNlx/HXAbAEhngo2ZCeihUNoS5\n"
    "aCieO36jnEmPaAAiZJwA/TLWQt/QG/2f4UB6iZ4DecuS+ZeoftbRP84o4KtPZkZn\n"
    "mCBSSHkXMEkIma5aFojbXu6ybXiBT08TLxkxVxcWiMg7rM7NwwatyUF+gYg0JBdK\n"
    "h/vFy0ibC5gMMWCkZpfE7NDXc2OxGOpt3KJBEv2eQMYBsb8yR8J6EuGnEtOfvYZI\n"
    "TapwvAR64Lsa3iVXH+T2NBSqtqxi3PJs6X0PD0yxK8LMAwdOMHzs/bV7/n306Xh9\n"
    "S7osn9sVBe0/e3papR0lMr91nfGHNIpblm6mQ8MbQwKBgQD25mW1ei4U2Fq+dlmO\n"
    "YY02u1FiNLVBGIYdWo1KuBTU11t4tDEKd5NSAY7q/fSrQ0I+kG7An5DXx39wuU8I\n"
    "/FZegsA600OR3OizjZSnI9bon/rk6xOjkdJhogr624QCzy0HGw2XzMpjJ/4p1ULR\n"
    "6NZMB7oKb66Tub84H0KOOG8vUwKBgQC62wDbb8jmQxY/CqoQoRY9r9Ed3Ht0AwHD\n"
    "lGOpNAJzkbvqcM9Q+uEl9mObeUd2F6znGc79GxpJFvLzYSakfc+WYVS/eMae0rXK\n"
    "bmBPuUNSK/3qjejtPmW8TDdqsRZVqvAs9+CkGajut9IgyQDCNoT5fYVW3AHcieBh\n"
    "WJIkKxnowwKBgQCKlN2H1DFjT+D3QNSZn1W038UZWz5VcF9uwHHH+7TtlodoI7PX\n"
    "DTDqeadvbOXU7yaSmV0gzy9sfjSg39Jl18TevYMKQaSOjbErfw9uFSa+YXVg4jWe\n"
    "vO2aEWsaTPY24XSDpYKmrrL2nu8BKgucaJVIDZo122Pg1QRoits/mpuFswKBgDy/\n"
    "1QCC0GMkbogidHYhmTSHA8rckvp9u8YVaW1qbl2ahOjMsmpWlnqcJ3g1rukS+3DL\n"
    "MEOT2zDmGCjObhzOln4CuOXjY1fhk57z0bY5ukxt5wiqCI+RWMwmT2INnwBNKfbE\n"
    "xDE18nliJBvqnaeGyCbBC2fY8XX9EYk0nZbKuIq3AoGBAMZuLnK223ZUcTf6AbsJ\n"
    "hA+Kb4Qgo2KJSY1JhJ47SfacHyhvT9Ncq10e0fqwJLzUGXt4CD52qE50n/y1SwrJ\n"
    "YsnWXK1zxUSeynSid17NX59jwfe5V7ZUdsLujgH43og0bY0wvC+AMSrVmpkwkTNn\n"
    "esWYuRbpkBpEv362RxEV9wLd\n"
    "-----END PRIVATE KEY-----\n";

static const char RSA_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtDad0n/tqv1lU4sKD1Oo\n"
    "Dcqu306T7/jq2feoTHLOjl1kZFcyRT4HZucBnNj5/s+eH/vk/hMTIA7kM4cko4st\n"
    "mp2luUQlubds21myK/fbig+ycsZyOmjAyK9aZLshhTr0So9J4EAUYKWLs9auJHBw\n"
    "W23PtBokg2atQ4UjorsFHNt1tJp78hWw6Z8ruFzy8qjB5X7Po4MBqRpNEgB2FrhW\n"
    "Y0h0++MwoA7L8QRTU4ci6lXNcRNi3wxwfpeTBgGkwBpaQV/6VkxPs32Qof34Ksew\n"
    "r8W4jOgqxTQWinwjVJMEI98NTAvYUqqxBWoWcFu63uiF6xUqeXmGVbWHpsL0T69E\n"
    "OQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char EC_PRIV[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvJp4Cm5MEi693OCj\n"
    "BEvm4UuYX9zE9kFo2SSa29wNTEuhRANCAASOz1x4xhNDC3AiFN/sY8kKdn21EJm/\n"
    "XTfynCeiQ9vXRUNXluCOmQMP08/aSgGhXUm3bRxdCdco45A7mnJDNxoa\n"
    "-----END PRIVATE KEY-----\n";

static const char EC_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjs9ceMYTQwtwIhTf7GPJCnZ9tRCZ\n"
    "v1038pwnokPb10VDV5bgjpkDD9PP2koBoV1Jt20cXQnXKOOQO5pyQzcaGg==\n"
    "-----END PUBLIC KEY-----\n";

static const char EC384_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEtbLRM1IrCxdMzRzGZkcsS714kdWiI6Fv\n"
    "kVTLgU9r/Hym0F/Gy8zs1+i5oLTZhNAdZ6pTC15CBCptbhC/L7M8m2HPAwdXRJ4d\n"
    "6+2pDD4SoqtpghZZcpxswypNOFNktdK2\n"
    "-----END PUBLIC KEY-----\n";

static const char RSA1024_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQClSKeLRr/fSK8S3BLwr3i/yxgS\n"
    "KoNUTq1cYpx+o+VdOu/fiViWMETVIycAGH8yBdFeMXcbnffsofEa+dvLwioZR2Fr\n"
    "E8GwlAknoWR3uvtqcWNKbaXUp1qKlU1puh7nEFlU//Mdp7E2AcJtSJBizZtQcuh1\n"
    "viwwEnvkqgibf5jGpwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

/* ---------------------------------------------------------------- helpers */

static nt_auth *auth_with(const char *alg, const char *secret, const char *pem,
                          const char *default_tenant, int64_t leeway) {
  nt_auth_cfg cfg = {.alg = alg,
                     .secret = secret,
                     .public_key_pem = pem,
                     .default_tenant = default_tenant,
                     .leeway_s = leeway};
  nt_auth *a = NULL;
  char err[256];
  int rc = nt_auth_new(&cfg, &a, err, sizeof err);
  if (rc != 0) fail_msg("nt_auth_new(%s): %d %s", alg ? alg : "(default)", rc, err);
  return a;
}

static nt_auth *hs256(void) { return auth_with(NULL, SECRET, NULL, NULL, 0); }

/* Signs `claims` (a JSON object) with libjwt, as an issuer would. Free with free(). */
static char *mint(jwt_alg_t alg, const char *key, const char *claims) {
  jwt_t *j = NULL;
  assert_int_equal(jwt_new(&j), 0);
  if (claims) assert_int_equal(jwt_add_grants_json(j, claims), 0);
  assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
  char *t = jwt_encode_str(j);
  assert_non_null(t);
  jwt_free(j);
  return t;
}

static char *mint_hs(const char *claims) { return mint(JWT_ALG_HS256, SECRET, claims); }

static char *fmt(const char *f, ...) {
  static char buf[4][16384];
  static int next;
  char *b = buf[next++ % 4];
  va_list ap;
  va_start(ap, f);
  vsnprintf(b, sizeof buf[0], f, ap);
  va_end(ap);
  return b;
}


/* Builds a token by hand, for headers no honest library would write. With `hmac_key`
 * the signature is a real HS256 over the two segments; without, it is `sig` verbatim. */
static char *craft(const char *header, const char *payload, const char *hmac_key,
                   const char *sig) {
  char *t = malloc(20000);
  assert_non_null(t);
  nt_test_b64url((const unsigned char *)header, strlen(header), t);
  strcat(t, ".");
  nt_test_b64url((const unsigned char *)payload, strlen(payload), t + strlen(t));
  if (hmac_key) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    assert_non_null(HMAC(EVP_sha256(), hmac_key, (int)strlen(hmac_key),
                         (const unsigned char *)t, strlen(t), mac, &maclen));
    strcat(t, ".");
    nt_test_b64url(mac, maclen, t + strlen(t));
  } else {
    strcat(t, ".");
    strcat(t, sig ? sig : "");
  }
  return t;
}

#define GOOD_CLAIMS "{\"sub\":\"alice\",\"tenant\":\"acme\",\"exp\":%lld}"

static void expect_reject(const nt_auth *a, const char *tok, int64_t now,
                          const char *reason) {
  nt_identity id;
  memset(&id, 0x5a, sizeof id);
  nt_identity before = id;
  const char *why = NULL;
  int rc = nt_auth_verify(a, tok, now, &id, &why);
  if (rc != NT_EAUTH || !why || strcmp(why, reason) != 0)
    fail_msg("token %.80s: rc %d why %s, wanted NT_EAUTH %s", tok ? tok : "(null)", rc,
             why ? why : "(null)", reason);
  /* Out-parameters are written only on success. */
  assert_memory_equal(&id, &before, sizeof id);
}

static void expect_ok(const nt_auth *a, const char *tok, int64_t now, nt_identity *id) {
  const char *why = "unset";
  int rc = nt_auth_verify(a, tok, now, id, &why);
  if (rc != 0) fail_msg("token %.80s: rc %d why %s", tok, rc, why ? why : "(null)");
  assert_null(why);
}

/* ---------------------------------------------------------------- HS256 basics */

static void test_valid_hs256(void **state) {
  nt_auth *a = hs256();
  jwt_t *j = NULL;
  assert_int_equal(jwt_new(&j), 0);
  jwt_add_grant(j, "sub", "alice");
  jwt_add_grant(j, "tenant", "acme");
  jwt_add_grant_int(j, "exp", (long)(NOW + 60));
  jwt_add_grant_int(j, "iat", (long)NOW);
  jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET));
  char *tok = jwt_encode_str(j);
  jwt_free(j);

  nt_identity id = {0};
  expect_ok(a, tok, NOW, &id);
  assert_string_equal(id.user, "alice");
  assert_string_equal(id.tenant, "acme");
  assert_int_equal(id.exp, NOW + 60);
  assert_null(id.rooms);
  assert_int_equal(id.nrooms, 0);
  assert_int_equal(nt_identity_room_allowed(&id, "anything"), 1);
  nt_identity_clear(&id);

  /* why may be NULL. */
  assert_int_equal(nt_auth_verify(a, tok, NOW, &id, NULL), 0);
  nt_identity_clear(&id);
  free(tok);
  nt_auth_free(a);
}

static void test_expired(void **state) {
  nt_auth *a = hs256();
  char *tok = mint_hs(fmt(GOOD_CLAIMS, NOW - 1));
  expect_reject(a, tok, NOW, "expired");
  free(tok);
  /* exp is the first instant the token is no longer valid (RFC 7519 §4.1.4). */
  tok = mint_hs(fmt(GOOD_CLAIMS, NOW));
  expect_reject(a, tok, NOW, "expired");
  nt_identity id;
  expect_ok(a, tok, NOW - 1, &id);
  nt_identity_clear(&id);
  free(tok);
  nt_auth_free(a);
}

static void test_leeway(void **state) {
  nt_auth *a = auth_with("HS256", SECRET, NULL, NULL, 30);
  nt_identity id;
  char *tok = mint_hs(fmt(GOOD_CLAIMS, NOW - 10));
  expect_ok(a, tok, NOW, &id);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs(fmt(GOOD_CLAIMS, NOW - 30));
  expect_reject(a, tok, NOW, "expired");
  free(tok);

  tok = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"nbf\":%lld}", NOW + 100,
                    NOW + 30));
  expect_ok(a, tok, NOW, &id);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"nbf\":%lld}", NOW + 100,
                    NOW + 31));
  expect_reject(a, tok, NOW, "not_yet_valid");
  free(tok);
  nt_auth_free(a);
}

static void test_nbf(void **state) {
  nt_auth *a = hs256();
  nt_identity id;
  char *tok = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"nbf\":%lld}",
                          NOW + 100, NOW + 1));
  expect_reject(a, tok, NOW, "not_yet_valid");
  expect_ok(a, tok, NOW + 1, &id);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"nbf\":%lld}", NOW + 100,
                    NOW - 100));
  expect_ok(a, tok, NOW, &id);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs(
      fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"nbf\":\"soon\"}", NOW + 100));
  expect_reject(a, tok, NOW, "malformed");
  free(tok);
  nt_auth_free(a);
}

static void test_numeric_dates(void **state) {
  nt_auth *a = hs256();
  nt_identity id;
  /* NumericDate may carry a fraction. */
  char *tok = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld.5}", NOW + 10));
  expect_ok(a, tok, NOW, &id);
  assert_int_equal(id.exp, NOW + 10);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":\"2099-01-01\"}");
  expect_reject(a, tok, NOW, "malformed");
  free(tok);
  tok = mint_hs("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":null}");
  expect_reject(a, tok, NOW, "malformed");
  free(tok);
  /* Far-future values must not overflow against the leeway. */
  nt_auth *l = auth_with("HS256", SECRET, NULL, NULL, 86400);
  tok = mint_hs("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":9223372036854775807}");
  expect_ok(l, tok, NOW, &id);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":1e300}");
  expect_ok(l, tok, NOW, &id);
  nt_identity_clear(&id);
  free(tok);
  tok = mint_hs("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":-9223372036854775807}");
  expect_reject(l, tok, NOW, "expired");
  free(tok);
  tok =
      mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,"
                  "\"nbf\":-9223372036854775807}",
                  NOW + 10));
  expect_ok(l, tok, NOW, &id);
  nt_identity_clear(&id);
  free(tok);
  nt_auth_free(l);
  nt_auth_free(a);
}

static void test_bad_signature(void **state) {
  nt_auth *a = hs256();
  char *tok =
      mint(JWT_ALG_HS256, "another-secret-0123456789abcdef!", fmt(GOOD_CLAIMS, NOW + 60));
  expect_reject(a, tok, NOW, "bad_signature");
  free(tok);

  /* Swap in a different payload under a valid signature: the classic tampering. */
  char *good = mint_hs(fmt(GOOD_CLAIMS, NOW + 60));
  char *evil =
      mint(JWT_ALG_HS256, "x", "{\"sub\":\"root\",\"tenant\":\"acme\",\"exp\":4000000000}");
  char *gp = strchr(good, '.'), *gs = strrchr(good, '.');
  char *ep = strchr(evil, '.'), *es = strrchr(evil, '.');
  char *mixed = fmt("%.*s%.*s%s", (int)(gp - good), good, (int)(es - ep), ep, gs);
  expect_reject(a, mixed, NOW, "bad_signature");

  /* Flip one signature character. */
  char *flip = fmt("%s", good);
  char *last = flip + strlen(flip) - 3;
  *last = *last == 'A' ? 'B' : 'A';
  expect_reject(a, flip, NOW, "bad_signature");

  /* Truncated signature. */
  expect_reject(a, fmt("%.*s", (int)strlen(good) - 4, good), NOW, "bad_signature");
  free(good);
  free(evil);
  nt_auth_free(a);
}

/* ---------------------------------------------------------------- algorithm pinning */

static void test_alg_none(void **state) {
  nt_auth *a = hs256();
  const char *claims = fmt(GOOD_CLAIMS, NOW + 60);
  /* The unsigned "xxx.yyy." form. */
  char *t = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL, "");
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  t = craft("{\"alg\":\"none\"}", claims, NULL, "AAAA");
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  t = craft("{\"alg\":\"None\"}", claims, NULL, "");
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  /* Case and whitespace variants of the pinned name are other names. */
  t = craft("{\"alg\":\"hs256\"}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  t = craft("{\"alg\":\"HS256 \"}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  t = craft("{\"alg\":\"HS256\\u0000\"}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  /* libjwt itself would accept a keyless decode of this; we must not. */
  t = craft("{\"typ\":\"JWT\"}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  t = craft("{\"alg\":256}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  /* Pinned alg, but no signature. */
  t = craft("{\"alg\":\"HS256\"}", claims, NULL, "");
  expect_reject(a, t, NOW, "malformed");
  free(t);
  /* Duplicate names: a reader keeping the first sees "none", one keeping the last
   * sees HS256. Refused outright. */
  t = craft("{\"alg\":\"none\",\"alg\":\"HS256\"}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  nt_auth_free(a);
}

static void test_key_confusion_rs256(void **state) {
  nt_auth *a = auth_with("RS256", NULL, RSA_PUB, NULL, 0);
  const char *claims = fmt(GOOD_CLAIMS, NOW + 60);
  /* The attacker knows the public key and uses it as an HMAC secret. */
  char *t = mint(JWT_ALG_HS256, RSA_PUB, claims);
  jwt_t *j = NULL;
  int libjwt_alone =
      jwt_decode(&j, t, (const unsigned char *)RSA_PUB, (int)strlen(RSA_PUB));
  print_message("  (libjwt 1.10 alone %s the confused token)\n",
                libjwt_alone == 0 ? "ACCEPTS" : "rejects");
  if (j) jwt_free(j);
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  /* Same HMAC signature, header lying that it is RS256. */
  t = craft("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, RSA_PUB, NULL);
  expect_reject(a, t, NOW, "bad_signature");
  free(t);
  /* ES256 config likewise. */
  nt_auth *e = auth_with("ES256", NULL, EC_PUB, NULL, 0);
  t = mint(JWT_ALG_HS256, EC_PUB, claims);
  expect_reject(e, t, NOW, "alg_mismatch");
  free(t);
  /* And an honest RS256 token is not an ES256 token. */
  t = mint(JWT_ALG_RS256, RSA_PRIV, claims);
  expect_reject(e, t, NOW, "alg_mismatch");
  free(t);
  nt_auth_free(e);
  nt_auth_free(a);
}

static void test_wrong_hs_alg(void **state) {
  nt_auth *a = hs256();
  const char *claims = fmt(GOOD_CLAIMS, NOW + 60);
  char *t = mint(JWT_ALG_HS384, SECRET, claims);
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  t = mint(JWT_ALG_HS512, SECRET, claims);
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  /* Pinned to HS384, HS384 passes and HS256 does not. */
  nt_auth *b = auth_with("HS384", SECRET, NULL, NULL, 0);
  nt_identity id;
  t = mint(JWT_ALG_HS384, SECRET, claims);
  expect_ok(b, t, NOW, &id);
  nt_identity_clear(&id);
  free(t);
  t = mint(JWT_ALG_HS256, SECRET, claims);
  expect_reject(b, t, NOW, "alg_mismatch");
  free(t);
  nt_auth_free(b);
  nt_auth_free(a);
}

static void test_header_extensions(void **state) {
  nt_auth *a = hs256();
  nt_identity id;
  const char *claims = fmt(GOOD_CLAIMS, NOW + 60);
  char *t =
      craft("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  t = craft("{\"alg\":\"HS256\",\"crit\":[]}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  t = craft("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  t = craft("{\"alg\":\"HS256\",\"typ\":7}", claims, SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);
  /* Harmless headers pass; a kid never selects a key here. */
  t = craft("{\"alg\":\"HS256\",\"typ\":\"jwt\",\"kid\":\"../../etc/passwd\"}", claims,
            SECRET, NULL);
  expect_ok(a, t, NOW, &id);
  nt_identity_clear(&id);
  free(t);
  t = craft("{\"alg\":\"HS256\"}", claims, SECRET, NULL);
  expect_ok(a, t, NOW, &id);
  nt_identity_clear(&id);
  free(t);
  nt_auth_free(a);
}

/* ---------------------------------------------------------------- claims */

static void test_missing_claims(void **state) {
  nt_auth *a = hs256();
  char *t = mint_hs("{\"sub\":\"alice\",\"tenant\":\"acme\"}");
  expect_reject(a, t, NOW, "missing_exp");
  free(t);
  t = mint_hs(fmt("{\"tenant\":\"acme\",\"exp\":%lld}", NOW + 60));
  expect_reject(a, t, NOW, "missing_sub");
  free(t);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"exp\":%lld}", NOW + 60));
  expect_reject(a, t, NOW, "missing_tenant");
  free(t);
  /* Expiry is judged before identity: an expired token says "expired". */
  t = mint_hs(fmt("{\"exp\":%lld}", NOW - 60));
  expect_reject(a, t, NOW, "expired");
  free(t);
  nt_auth_free(a);
}

static void test_tenant_sources(void **state) {
  nt_auth *a = hs256();
  nt_identity id;
  char *t = mint_hs(fmt("{\"sub\":\"alice\",\"tid\":\"globex\",\"exp\":%lld}", NOW + 60));
  expect_ok(a, t, NOW, &id);
  assert_string_equal(id.tenant, "globex");
  nt_identity_clear(&id);
  free(t);
  /* `tenant` wins over `tid`. */
  t = mint_hs(fmt("{\"sub\":\"alice\",\"tenant\":\"acme\",\"tid\":\"globex\",\"exp\":%lld}",
                  NOW + 60));
  expect_ok(a, t, NOW, &id);
  assert_string_equal(id.tenant, "acme");
  nt_identity_clear(&id);
  free(t);
  /* A bad `tenant` does not fall back to `tid`. */
  t = mint_hs(fmt("{\"sub\":\"alice\",\"tenant\":\"a.b\",\"tid\":\"globex\",\"exp\":%lld}",
                  NOW + 60));
  expect_reject(a, t, NOW, "invalid_tenant");
  free(t);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"tid\":42,\"exp\":%lld}", NOW + 60));
  expect_reject(a, t, NOW, "invalid_tenant");
  free(t);
  nt_auth_free(a);

  /* The default tenant covers tokens with neither claim, and only them. */
  nt_auth *d = auth_with("HS256", SECRET, NULL, "default-co", 0);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"exp\":%lld}", NOW + 60));
  expect_ok(d, t, NOW, &id);
  assert_string_equal(id.tenant, "default-co");
  nt_identity_clear(&id);
  free(t);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"tenant\":\"\",\"exp\":%lld}", NOW + 60));
  expect_reject(d, t, NOW, "invalid_tenant");
  free(t);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"tid\":\"acme\",\"exp\":%lld}", NOW + 60));
  expect_ok(d, t, NOW, &id);
  assert_string_equal(id.tenant, "acme");
  nt_identity_clear(&id);
  free(t);
  nt_auth_free(d);

  /* "" means no default. */
  nt_auth *e = auth_with("HS256", SECRET, NULL, "", 0);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"exp\":%lld}", NOW + 60));
  expect_reject(e, t, NOW, "missing_tenant");
  free(t);
  nt_auth_free(e);
}

static void test_invalid_ids(void **state) {
  nt_auth *a = hs256();
  nt_identity id;
  static const char *bad_subs[] = {"a.b", "a*",  "a b", "a>b",    "tab\\there",
                                   "a:b", "{x}", "",    "\\u007f"};
  for (size_t i = 0; i < sizeof bad_subs / sizeof bad_subs[0]; i++) {
    char *t = mint_hs(
        fmt("{\"sub\":\"%s\",\"tenant\":\"acme\",\"exp\":%lld}", bad_subs[i], NOW + 60));
    expect_reject(a, t, NOW, "invalid_sub");
    free(t);
  }
  char *t = mint_hs(fmt("{\"sub\":12,\"tenant\":\"acme\",\"exp\":%lld}", NOW + 60));
  expect_reject(a, t, NOW, "invalid_sub");
  free(t);
  t = mint_hs(fmt("{\"sub\":[\"alice\"],\"tenant\":\"acme\",\"exp\":%lld}", NOW + 60));
  expect_reject(a, t, NOW, "invalid_sub");
  free(t);

  char long_id[NT_ID_MAX + 2];
  memset(long_id, 'x', sizeof long_id - 1);
  long_id[NT_ID_MAX + 1] = '\0'; /* 129 bytes */
  t = mint_hs(fmt("{\"sub\":\"%s\",\"tenant\":\"acme\",\"exp\":%lld}", long_id, NOW + 60));
  expect_reject(a, t, NOW, "invalid_sub");
  free(t);
  t = mint_hs(fmt("{\"sub\":\"alice\",\"tenant\":\"%s\",\"exp\":%lld}", long_id, NOW + 60));
  expect_reject(a, t, NOW, "invalid_tenant");
  free(t);
  long_id[NT_ID_MAX] = '\0'; /* 128 bytes: the longest valid id */
  t = mint_hs(
      fmt("{\"sub\":\"%s\",\"tenant\":\"%s\",\"exp\":%lld}", long_id, long_id, NOW + 60));
  expect_ok(a, t, NOW, &id);
  assert_int_equal(strlen(id.user), NT_ID_MAX);
  assert_int_equal(strlen(id.tenant), NT_ID_MAX);
  nt_identity_clear(&id);
  free(t);
  /* Non-ASCII UTF-8 ids are fine. */
  t = mint_hs(fmt("{\"sub\":\"j\\u00fcrgen\",\"tenant\":\"acme\",\"exp\":%lld}", NOW + 60));
  expect_ok(a, t, NOW, &id);
  assert_string_equal(id.user, "j\xc3\xbcrgen");
  nt_identity_clear(&id);
  free(t);
  nt_auth_free(a);
}

/* ---------------------------------------------------------------- rooms */

static void test_rooms_claim(void **state) {
  nt_auth *a = hs256();
  nt_identity id;
  char *t =
      mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,"
                  "\"rooms\":[\"lobby\",\"team-*\",\"ops\"]}",
                  NOW + 60));
  expect_ok(a, t, NOW, &id);
  free(t);
  assert_non_null(id.rooms);
  assert_int_equal(id.nrooms, 3);
  assert_string_equal(id.rooms[0], "lobby");
  assert_string_equal(id.rooms[1], "team-*");
  assert_string_equal(id.rooms[2], "ops");
  assert_int_equal(nt_identity_room_allowed(&id, "lobby"), 1);
  assert_int_equal(nt_identity_room_allowed(&id, "ops"), 1);
  assert_int_equal(nt_identity_room_allowed(&id, "team-red"), 1);
  assert_int_equal(nt_identity_room_allowed(&id, "team-"), 1);
  assert_int_equal(nt_identity_room_allowed(&id, "team"), 0);
  assert_int_equal(nt_identity_room_allowed(&id, "lobby2"), 0);
  assert_int_equal(nt_identity_room_allowed(&id, "lobb"), 0);
  assert_int_equal(nt_identity_room_allowed(&id, "opsx"), 0);
  assert_int_equal(nt_identity_room_allowed(&id, "xteam-red"), 0);
  /* Never an id that could break a subject, whatever the pattern. */
  assert_int_equal(nt_identity_room_allowed(&id, "team-a.b"), 0);
  assert_int_equal(nt_identity_room_allowed(&id, "team->"), 0);
  assert_int_equal(nt_identity_room_allowed(&id, ""), 0);
  assert_int_equal(nt_identity_room_allowed(&id, NULL), 0);
  assert_int_equal(nt_identity_room_allowed(NULL, "lobby"), 0);
  nt_identity_clear(&id);
  assert_null(id.rooms);
  assert_int_equal(id.nrooms, 0);
  nt_identity_clear(&id); /* idempotent */

  t = mint_hs(
      fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"rooms\":[\"*\"]}", NOW + 60));
  expect_ok(a, t, NOW, &id);
  free(t);
  assert_int_equal(nt_identity_room_allowed(&id, "anything"), 1);
  assert_int_equal(nt_identity_room_allowed(&id, "a*"), 0);
  nt_identity_clear(&id);

  /* An empty list allows nothing, unlike an absent claim. */
  t = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"rooms\":[]}", NOW + 60));
  expect_ok(a, t, NOW, &id);
  free(t);
  assert_non_null(id.rooms);
  assert_int_equal(id.nrooms, 0);
  assert_int_equal(nt_identity_room_allowed(&id, "lobby"), 0);
  nt_identity_clear(&id);

  static const char *bad[] = {"\"lobby\"",     "{}",        "null",       "[1]",
                              "[\"ok\",null]", "[\"\"]",    "[\"a.b\"]",  "[\"a*b\"]",
                              "[\"**\"]",      "[\"a.*\"]", "[\"a b*\"]", "[[\"x\"]]",
                              "[\">\"]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    t = mint_hs(fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"rooms\":%s}", NOW + 60,
                    bad[i]));
    expect_reject(a, t, NOW, "invalid_rooms");
    free(t);
  }

  /* Bounded: NT_AUTH_ROOMS_MAX patterns pass, one more does not. */
  for (int extra = 0; extra <= 1; extra++) {
    size_t n = NT_AUTH_ROOMS_MAX + (size_t)extra;
    char *list = malloc(n * 4 + 3);
    char *p = list;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s\"a\"", i ? "," : "");
    strcpy(p, "]");
    t = mint_hs(
        fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"rooms\":%s}", NOW + 60, list));
    free(list);
    if (extra) {
      expect_reject(a, t, NOW, "invalid_rooms");
    } else {
      expect_ok(a, t, NOW, &id);
      assert_int_equal(id.nrooms, NT_AUTH_ROOMS_MAX);
      nt_identity_clear(&id);
    }
    free(t);
  }
  nt_auth_free(a);
}

/* ---------------------------------------------------------------- aud and iss */

static nt_auth *with_aud_iss(const char *aud, const char *iss) {
  nt_auth_cfg c = {.alg = "HS256", .secret = SECRET, .audience = aud, .issuer = iss};
  nt_auth *a = NULL;
  char err[128];
  assert_int_equal(nt_auth_new(&c, &a, err, sizeof err), 0);
  return a;
}

#define AUD_CLAIMS "{\"sub\":\"alice\",\"tenant\":\"acme\",\"exp\":%lld%s}"

/* craft(): claims no library would write (\u0000, odd aud shapes) still get signed. */
static void expect_claims(const nt_auth *a, const char *extra, const char *reason) {
  char *t = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", fmt(AUD_CLAIMS, NOW + 60, extra),
                  SECRET, NULL);
  if (reason) {
    expect_reject(a, t, NOW, reason);
  } else {
    nt_identity id;
    expect_ok(a, t, NOW, &id);
    nt_identity_clear(&id);
  }
  free(t);
}

static void test_audience_issuer(void **state) {
  /* not configured: neither claim is looked at */
  nt_auth *a = with_aud_iss(NULL, "");
  expect_claims(a, "", NULL);
  expect_claims(a, ",\"aud\":\"other\",\"iss\":\"someone\"", NULL);
  nt_auth_free(a);

  a = with_aud_iss("chat", NULL);
  expect_claims(a, ",\"aud\":\"chat\"", NULL);
  expect_claims(a, ",\"aud\":[\"billing\",\"chat\"]", NULL);
  expect_claims(a, "", "wrong_audience");
  expect_claims(a, ",\"aud\":\"billing\"", "wrong_audience");
  expect_claims(a, ",\"aud\":[\"billing\"]", "wrong_audience");
  expect_claims(a, ",\"aud\":[]", "wrong_audience");
  expect_claims(a, ",\"aud\":\"chatx\"", "wrong_audience");   /* no prefix match */
  expect_claims(a, ",\"aud\":\"Chat\"", "wrong_audience");    /* case-sensitive */
  expect_claims(a, ",\"aud\":{\"chat\":1}", "wrong_audience"); /* not a string */
  expect_claims(a, ",\"aud\":[[\"chat\"]]", "wrong_audience");
  expect_claims(a, ",\"aud\":\"chat\\u0000\"", "malformed"); /* a NUL is never decoded */
  nt_auth_free(a);

  a = with_aud_iss(NULL, "https://auth.example.com");
  expect_claims(a, ",\"iss\":\"https://auth.example.com\"", NULL);
  expect_claims(a, "", "wrong_issuer");
  expect_claims(a, ",\"iss\":\"https://auth.example.com/\"", "wrong_issuer");
  expect_claims(a, ",\"iss\":[\"https://auth.example.com\"]", "wrong_issuer");
  nt_auth_free(a);

  /* both: each is checked; the issuer is reported first */
  a = with_aud_iss("chat", "me");
  expect_claims(a, ",\"aud\":\"chat\",\"iss\":\"me\"", NULL);
  expect_claims(a, ",\"aud\":\"x\",\"iss\":\"x\"", "wrong_issuer");
  expect_claims(a, ",\"aud\":\"x\",\"iss\":\"me\"", "wrong_audience");
  nt_auth_free(a);
}


static void test_identity_set_rooms(void **state) {
  nt_identity id = {0};
  const char *r[] = {"general", "dev-*"};
  assert_int_equal(nt_identity_set_rooms(&id, r, 2), 0);
  assert_int_equal(id.nrooms, 2);
  assert_int_equal(nt_identity_room_allowed(&id, "dev-1"), 1);
  assert_int_equal(nt_identity_room_allowed(&id, "random"), 0);
  const char *bad[] = {"ok", "no.dots"};
  assert_int_equal(nt_identity_set_rooms(&id, bad, 2), NT_EINVAL);
  assert_int_equal(id.nrooms, 2); /* unchanged */
  assert_int_equal(nt_identity_set_rooms(&id, NULL, 0), 0);
  assert_null(id.rooms);
  assert_int_equal(nt_identity_room_allowed(&id, "random"), 1);
  assert_int_equal(nt_identity_set_rooms(&id, r, 0), 0);
  assert_non_null(id.rooms);
  assert_int_equal(nt_identity_room_allowed(&id, "general"), 0);
  assert_int_equal(nt_identity_set_rooms(&id, NULL, 1), NT_EINVAL);
  nt_identity_clear(&id);
}

/* ---------------------------------------------------------------- garbage */

static void test_garbage(void **state) {
  nt_auth *a = hs256();
  static const char *junk[] = {
      "",
      "abc",
      "abc.def",
      ".",
      "..",
      "...",
      "a.b.c.d",
      "!!!.###.$$$",
      "eyJhbGciOiJIUzI1NiJ9",
      "eyJhbGciOiJIUzI1NiJ9.",
      "eyJhbGciOiJIUzI1NiJ9..",
      ".eyJzdWIiOiJ1In0.AAAA",
      "eyJhbGciOiJIUzI1NiJ9=.eyJzdWIiOiJ1In0.AAAA", /* padding is not base64url */
      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0=.AAAA",
      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.AA+/",  /* base64, not base64url */
      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.AAAAA", /* impossible length */
      "e.eyJzdWIiOiJ1In0.AAAA",
      "bm90IGpzb24.eyJzdWIiOiJ1In0.AAAA",      /* header "not json" */
      "WyJhbGciXQ.eyJzdWIiOiJ1In0.AAAA",       /* header ["alg"] */
      "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA", /* payload "not json" */
      "eyJhbGciOiJIUzI1NiJ9.WzFd.AAAA",        /* payload [1] */
      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.AAAA.",
      "eyJhbGciOiJIUzI1NiJ9 .eyJzdWIiOiJ1In0.AAAA",
  };
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
    expect_reject(a, junk[i], NOW, "malformed");

  /* Huge: over the limit is refused before decoding, however well formed. */
  size_t n = NT_AUTH_TOKEN_MAX + 1;
  char *huge = malloc(n + 1);
  memset(huge, 'A', n);
  huge[10] = '.';
  huge[20] = '.';
  huge[n] = '\0';
  expect_reject(a, huge, NOW, "malformed");
  free(huge);
  char *pad = malloc(NT_AUTH_TOKEN_MAX * 2);
  memset(pad, 'x', NT_AUTH_TOKEN_MAX);
  pad[NT_AUTH_TOKEN_MAX] = '\0';
  char *t = mint_hs(
      fmt("{\"sub\":\"u\",\"tenant\":\"t\",\"exp\":%lld,\"pad\":\"%s\"}", NOW + 60, pad));
  expect_reject(a, t, NOW, "malformed");
  free(t);
  free(pad);

  /* Duplicate claims are ambiguous: refused. */
  t = craft(
      "{\"alg\":\"HS256\"}",
      fmt("{\"sub\":\"alice\",\"sub\":\"root\",\"tenant\":\"t\",\"exp\":%lld}", NOW + 60),
      SECRET, NULL);
  expect_reject(a, t, NOW, "malformed");
  free(t);

  /* Deterministic fuzz: random bytes and mutated real tokens never pass or crash. */
  char *good = mint_hs(fmt(GOOD_CLAIMS, NOW + 60));
  size_t glen = strlen(good);
  unsigned seed = 12345;
  char buf[512];
  for (int i = 0; i < 3000; i++) {
    seed = seed * 1103515245u + 12345u;
    nt_identity id;
    const char *why = NULL;
    if (i % 2) {
      size_t len = (seed >> 8) % (sizeof buf - 1);
      for (size_t k = 0; k < len; k++) {
        seed = seed * 1103515245u + 12345u;
        buf[k] = (char)(1 + (seed >> 16) % 255);
      }
      buf[len] = '\0';
    } else {
      memcpy(buf, good, glen + 1);
      seed = seed * 1103515245u + 12345u;
      buf[(seed >> 8) % glen] ^= (char)(1 + (seed >> 20) % 127);
    }
    int rc = nt_auth_verify(a, buf, NOW, &id, &why);
    if (rc == 0) {
      /* A flip that decodes to the same bytes (trailing bits) is harmless. */
      assert_string_equal(id.user, "alice");
      nt_identity_clear(&id);
    } else {
      assert_int_equal(rc, NT_EAUTH);
      assert_non_null(why);
    }
  }
  free(good);

  nt_identity id;
  const char *why = NULL;
  assert_int_equal(nt_auth_verify(a, NULL, NOW, &id, &why), NT_EINVAL);
  assert_int_equal(nt_auth_verify(NULL, "a.b.c", NOW, &id, &why), NT_EINVAL);
  assert_int_equal(nt_auth_verify(a, "a.b.c", NOW, NULL, &why), NT_EINVAL);
  nt_auth_free(a);
  nt_auth_free(NULL);
}

/* ---------------------------------------------------------------- RS256 / ES256 */

static void test_rs256(void **state) {
  nt_auth *a = auth_with("RS256", NULL, RSA_PUB, NULL, 0);
  nt_identity id;
  char *t = mint(
      JWT_ALG_RS256, RSA_PRIV,
      fmt("{\"sub\":\"bob\",\"tid\":\"acme\",\"exp\":%lld,\"rooms\":[\"r1\"]}", NOW + 60));
  expect_ok(a, t, NOW, &id);
  assert_string_equal(id.user, "bob");
  assert_string_equal(id.tenant, "acme");
  assert_int_equal(nt_identity_room_allowed(&id, "r1"), 1);
  nt_identity_clear(&id);
  expect_reject(a, t, NOW + 60, "expired");
  /* Tampered payload under an RSA signature. */
  char *evil = mint(JWT_ALG_RS256, RSA_PRIV,
                    fmt("{\"sub\":\"root\",\"tid\":\"acme\",\"exp\":%lld}", NOW + 60));
  char *tp = strchr(t, '.'), *ts = strrchr(t, '.'), *ep = strchr(evil, '.'),
       *es = strrchr(evil, '.');
  expect_reject(a, fmt("%.*s%.*s%s", (int)(tp - t), t, (int)(es - ep), ep, ts), NOW,
                "bad_signature");
  free(evil);
  free(t);
  /* RS384 with the same key pair, pinned config. */
  nt_auth *b = auth_with("RS384", NULL, RSA_PUB, NULL, 0);
  t = mint(JWT_ALG_RS384, RSA_PRIV, fmt(GOOD_CLAIMS, NOW + 60));
  expect_ok(b, t, NOW, &id);
  nt_identity_clear(&id);
  expect_reject(a, t, NOW, "alg_mismatch");
  free(t);
  nt_auth_free(b);
  nt_auth_free(a);
}

/* Decodes the signature segment of `tok` (test helper, no validation). */
static size_t sig_bytes(const char *tok, unsigned char *out) {
  const char *s = strrchr(tok, '.') + 1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (; *s; s++) {
    const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    acc = (acc << 6) | (uint32_t)(strchr(al, *s) - al);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return o;
}

/* Replaces the signature of `tok` with `sig`. Returns a static buffer. */
static char *with_sig(const char *tok, const unsigned char *sig, size_t len) {
  static char out[4096];
  size_t keep = (size_t)(strrchr(tok, '.') - tok) + 1;
  memcpy(out, tok, keep);
  nt_test_b64url(sig, len, out + keep);
  return out;
}

static void test_es256(void **state) {
  nt_auth *a = auth_with("ES256", NULL, EC_PUB, "default-co", 0);
  nt_identity id;
  char *t = mint(JWT_ALG_ES256, EC_PRIV, fmt("{\"sub\":\"carol\",\"exp\":%lld}", NOW + 60));
  expect_ok(a, t, NOW, &id);
  assert_string_equal(id.user, "carol");
  assert_string_equal(id.tenant, "default-co");
  nt_identity_clear(&id);
  char *flip = fmt("%s", t);
  char *c = flip + strlen(flip) - 5;
  *c = *c == 'A' ? 'B' : 'A';
  expect_reject(a, flip, NOW, "bad_signature");

  /* libjwt reads the same token the same way. */
  jwt_t *j = NULL;
  assert_int_equal(jwt_decode(&j, t, (const unsigned char *)EC_PUB, (int)strlen(EC_PUB)),
                   0);
  jwt_free(j);

  unsigned char raw[64];
  assert_int_equal(sig_bytes(t, raw), 64);
  /* Wrong widths, all-zero r and s, and the DER form some libraries emit by mistake. */
  expect_reject(a, with_sig(t, raw, 63), NOW, "bad_signature");
  unsigned char longer[65] = {0};
  memcpy(longer + 1, raw, 64);
  expect_reject(a, with_sig(t, longer, 65), NOW, "bad_signature");
  unsigned char zero[64] = {0};
  expect_reject(a, with_sig(t, zero, 64), NOW, "bad_signature");
  ECDSA_SIG *es = ECDSA_SIG_new();
  ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
  unsigned char der[80], *p = der;
  int dl = i2d_ECDSA_SIG(es, &p);
  ECDSA_SIG_free(es);
  expect_reject(a, with_sig(t, der, (size_t)dl), NOW, "bad_signature");
  /* r and s swapped. */
  unsigned char swapped[64];
  memcpy(swapped, raw + 32, 32);
  memcpy(swapped + 32, raw, 32);
  expect_reject(a, with_sig(t, swapped, 64), NOW, "bad_signature");
  /* The original still passes after all that. */
  expect_ok(a, with_sig(t, raw, 64), NOW, &id);
  nt_identity_clear(&id);
  free(t);
  nt_auth_free(a);
}

/* Generates a key pair on `curve` as PEM strings (free both). */
static void gen_ec(const char *curve, char **priv, char **pub) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
  assert_non_null(k);
  BIO *b = BIO_new(BIO_s_mem());
  assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
  char *d;
  long n = BIO_get_mem_data(b, &d);
  *priv = strndup(d, (size_t)n);
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
  n = BIO_get_mem_data(b, &d);
  *pub = strndup(d, (size_t)n);
  BIO_free(b);
  EVP_PKEY_free(k);
}

static void test_es384_es512(void **state) {
  static const struct {
    const char *alg, *curve;
    jwt_alg_t jalg;
    size_t sig;
  } cases[] = {{"ES384", "P-384", JWT_ALG_ES384, 96},
               {"ES512", "P-521", JWT_ALG_ES512, 132}};
  for (size_t c = 0; c < 2; c++) {
    char *priv, *pub;
    gen_ec(cases[c].curve, &priv, &pub);
    nt_auth *a = auth_with(cases[c].alg, NULL, pub, NULL, 0);
    /* Many tokens, so that short r or s values (leading zero bytes) come up. */
    for (int i = 0; i < 50; i++) {
      char *t = mint(cases[c].jalg, priv,
                     fmt("{\"sub\":\"u%d\",\"tenant\":\"t\",\"exp\":%lld}", i, NOW + 60));
      unsigned char raw[200];
      assert_int_equal(sig_bytes(t, raw), cases[c].sig);
      nt_identity id;
      expect_ok(a, t, NOW, &id);
      nt_identity_clear(&id);
      raw[cases[c].sig - 1] ^= 1;
      expect_reject(a, with_sig(t, raw, cases[c].sig), NOW, "bad_signature");
      free(t);
    }
    nt_auth_free(a);
    free(priv);
    free(pub);
  }
}

/* One nt_auth shared by threads: verify must not mutate it. */
struct thread_arg {
  const nt_auth *a;
  const char *tok;
  int fails;
};

static void *verify_thread(void *p) {
  struct thread_arg *t = p;
  for (int i = 0; i < 300; i++) {
    nt_identity id;
    if (nt_auth_verify(t->a, t->tok, NOW, &id, NULL) != 0)
      t->fails++;
    else
      nt_identity_clear(&id);
  }
  return NULL;
}

static void test_shared_between_threads(void **state) {
  nt_auth *auths[3] = {hs256(), auth_with("RS256", NULL, RSA_PUB, NULL, 0),
                       auth_with("ES256", NULL, EC_PUB, NULL, 0)};
  const char *claims = fmt(GOOD_CLAIMS, NOW + 60);
  char *toks[3] = {mint_hs(claims), mint(JWT_ALG_RS256, RSA_PRIV, claims),
                   mint(JWT_ALG_ES256, EC_PRIV, claims)};
  pthread_t th[6];
  struct thread_arg args[6];
  for (int i = 0; i < 6; i++) {
    args[i] = (struct thread_arg){auths[i % 3], toks[i % 3], 0};
    assert_int_equal(pthread_create(&th[i], NULL, verify_thread, &args[i]), 0);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].fails, 0);
  }
  for (int i = 0; i < 3; i++) {
    free(toks[i]);
    nt_auth_free(auths[i]);
  }
}

static void test_cfg_errors(void **state) {
  struct {
    nt_auth_cfg cfg;
    const char *what;
  } bad[] = {
      {{.alg = "HS256"}, "HS256 without secret"},
      {{.alg = "HS256", .secret = ""}, "HS256 with empty secret"},
      {{.alg = "HS256", .public_key_pem = RSA_PUB}, "HS256 with only a PEM"},
      {{.alg = "none", .secret = SECRET}, "alg none"},
      {{.alg = "hs256", .secret = SECRET}, "lowercase alg"},
      {{.alg = "HS257", .secret = SECRET}, "unknown alg"},
      {{.alg = "PS256", .public_key_pem = RSA_PUB}, "unsupported alg"},
      {{.alg = "RS256"}, "RS256 without key"},
      {{.alg = "RS256", .secret = SECRET}, "RS256 with only a secret"},
      {{.alg = "RS256",
        .public_key_pem = "-----BEGIN PUBLIC KEY-----\nnot base64!\n"
                          "-----END PUBLIC KEY-----\n"},
       "garbage PEM"},
      {{.alg = "RS256", .public_key_pem = "hello"}, "not a PEM"},
      {{.alg = "RS256", .public_key_pem = RSA_PRIV}, "private key as public"},
      {{.alg = "RS256", .public_key_pem = EC_PUB}, "EC key for RS256"},
      {{.alg = "RS256", .public_key_pem = RSA1024_PUB}, "1024-bit RSA"},
      {{.alg = "ES256", .public_key_pem = RSA_PUB}, "RSA key for ES256"},
      {{.alg = "ES256", .public_key_pem = EC384_PUB}, "P-384 key for ES256"},
      {{.alg = "ES384", .public_key_pem = EC_PUB}, "P-256 key for ES384"},
      {{.alg = "HS256", .secret = SECRET, .default_tenant = "a.b"}, "bad default tenant"},
      {{.alg = "HS256", .secret = SECRET, .leeway_s = -1}, "negative leeway"},
      {{.alg = "HS256", .secret = SECRET, .leeway_s = 86401}, "huge leeway"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    nt_auth *a = (nt_auth *)0x1;
    char err[256] = "untouched";
    int rc = nt_auth_new(&bad[i].cfg, &a, err, sizeof err);
    if (rc != NT_EINVAL) fail_msg("%s: rc %d", bad[i].what, rc);
    assert_ptr_equal(a, (nt_auth *)0x1);
    assert_true(err[0] != '\0' && strcmp(err, "untouched") != 0);
    print_message("  %-26s -> %s\n", bad[i].what, err);
  }
  nt_auth *a = NULL;
  assert_int_equal(nt_auth_new(NULL, &a, NULL, 0), NT_EINVAL);
  /* ES384 with its own curve is accepted. */
  a = auth_with("ES384", NULL, EC384_PUB, NULL, 0);
  nt_auth_free(a);
  /* The configuration is copied: the caller's strings may go away. */
  char secret[] = SECRET, tenant[] = "copied";
  nt_auth_cfg cfg = {.secret = secret, .default_tenant = tenant};
  assert_int_equal(nt_auth_new(&cfg, &a, NULL, 0), 0);
  memset(secret, 'z', sizeof secret - 1);
  memset(tenant, 'z', sizeof tenant - 1);
  char *t = mint_hs(fmt("{\"sub\":\"u\",\"exp\":%lld}", NOW + 60));
  nt_identity id;
  expect_ok(a, t, NOW, &id);
  assert_string_equal(id.tenant, "copied");
  nt_identity_clear(&id);
  free(t);
  nt_auth_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_hs256),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_leeway),
      cmocka_unit_test(test_nbf),
      cmocka_unit_test(test_numeric_dates),
      cmocka_unit_test(test_bad_signature),
      cmocka_unit_test(test_alg_none),
      cmocka_unit_test(test_key_confusion_rs256),
      cmocka_unit_test(test_wrong_hs_alg),
      cmocka_unit_test(test_header_extensions),
      cmocka_unit_test(test_missing_claims),
      cmocka_unit_test(test_tenant_sources),
      cmocka_unit_test(test_invalid_ids),
      cmocka_unit_test(test_rooms_claim),
      cmocka_unit_test(test_audience_issuer),
      cmocka_unit_test(test_identity_set_rooms),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_rs256),
      cmocka_unit_test(test_es256),
      cmocka_unit_test(test_es384_es512),
      cmocka_unit_test(test_shared_between_threads),
      cmocka_unit_test(test_cfg_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
