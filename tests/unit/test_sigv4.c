/* test_sigv4: SigV4 verification (nt_sigv4) against AWS's published Signature Version 4
 * test suite vectors (AKIDEXAMPLE, us-east-1, service "service", 20150830T123600Z), and
 * every refusal: wrong key, secret, service, skew, tampering, missing signed headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nt_err.h"
#include "nt_sigv4.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define T0 1440938160 /* 2015-08-30T12:36:00Z */
#define CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

static char hdrs[2048];

/* A request of the suite: Host example.amazonaws.com, X-Amz-Date, and `sig`. */
static nt_sigv4_req suite(const char *method, const char *path, const char *query,
                          const char *signed_headers, const char *sig, const char *extra) {
  snprintf(hdrs, sizeof hdrs,
           "Host:example.amazonaws.com\nX-Amz-Date:20150830T123600Z%s\n"
           "Authorization:" CRED "SignedHeaders=%s, Signature=%s",
           extra ? extra : "", signed_headers, sig);
  return (nt_sigv4_req){.method = method, .path = path, .path_len = strlen(path),
                        .query = query, .query_len = strlen(query), .headers = hdrs,
                        .headers_len = strlen(hdrs)};
}

static int verify(const nt_sigv4_req *r, int64_t now, const char **why) {
  return nt_sigv4_verify(r, AKID, SECRET, "service", now, why);
}

static void test_published_vectors(void **st) {
  const char *why = "unset";
  struct {
    const char *name, *method, *path, *query, *sig;
  } v[] = {
      {"get-vanilla", "GET", "/", "",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1",
       "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
      {"get-vanilla-empty-query-key", "GET", "/", "Param1=value1",
       "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
      {"get-utf8", "GET", "/\xe1\x88\xb4", "",
       "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
      {"post-vanilla", "POST", "/", "",
       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"post-vanilla-query", "POST", "/", "Param1=value1",
       "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    nt_sigv4_req r = suite(v[i].method, v[i].path, v[i].query, "host;x-amz-date", v[i].sig,
                           NULL);
    int rc = verify(&r, T0, &why);
    if (rc) fail_msg("%s: %s", v[i].name, why);
    assert_null(why);
    /* inside the 5 minute window either way */
    assert_int_equal(verify(&r, T0 + 299, &why), 0);
    assert_int_equal(verify(&r, T0 - 299, &why), 0);
  }
}

static void test_refusals(void **st) {
  const char *why = NULL;
  const char *good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
  nt_sigv4_req r = suite("GET", "/", "", "host;x-amz-date", good, NULL);
  assert_int_equal(verify(&r, T0 + 301, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "request time too skewed");
  assert_int_equal(verify(&r, T0 - 301, &why), NT_EFORBIDDEN);
  assert_int_equal(nt_sigv4_verify(&r, AKID, "wrong-secret", "service", T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "signature mismatch");
  assert_int_equal(nt_sigv4_verify(&r, "AKIDOTHER", SECRET, "service", T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "unknown access key");
  assert_int_equal(nt_sigv4_verify(&r, AKID, SECRET, "execute-api", T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "wrong service");
  /* tampering: method, path, query, a signed header's value */
  nt_sigv4_req t = suite("POST", "/", "", "host;x-amz-date", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  t = suite("GET", "/x", "", "host;x-amz-date", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  t = suite("GET", "/", "a=1", "host;x-amz-date", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  char bad[65];
  memcpy(bad, good, 65);
  bad[10] = bad[10] == 'a' ? 'b' : 'a';
  t = suite("GET", "/", "", "host;x-amz-date", bad, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  t = suite("GET", "/", "", "host;x-amz-date", "abc", NULL); /* short */
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  /* a signed header the request lacks, unsorted or upper-case names, host not signed */
  t = suite("GET", "/", "", "host;my-header;x-amz-date", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "signed header missing");
  t = suite("GET", "/", "", "x-amz-date;host", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "malformed signed headers");
  t = suite("GET", "/", "", "Host;x-amz-date", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  t = suite("GET", "/", "", "x-amz-date", good, NULL);
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "host is not signed");
  /* a claimed payload hash that is not the body's */
  t = suite("GET", "/", "", "host;x-amz-date", good,
            "\nX-Amz-Content-Sha256:0000000000000000000000000000000000000000000000000000000000000000");
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "payload hash mismatch");
  /* the body is part of the signature: post-vanilla with a body no longer verifies */
  t = suite("POST", "/", "", "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b", NULL);
  t.body = (const uint8_t *)"x";
  t.body_len = 1;
  assert_int_equal(verify(&t, T0, &why), NT_EFORBIDDEN);
  /* not SigV4 at all, or malformed */
  nt_sigv4_req n = {.method = "GET", .path = "/", .path_len = 1, .query = "",
                    .headers = "Host:h\nAuthorization:Bearer x", .headers_len = 29};
  assert_int_equal(verify(&n, T0, &why), NT_EFORBIDDEN);
  assert_string_equal(why, "malformed authorization");
  assert_true(nt_sigv4_is_sigv4("AWS4-HMAC-SHA256 Credential=a"));
  assert_false(nt_sigv4_is_sigv4("Bearer abc"));
  assert_false(nt_sigv4_is_sigv4(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_vectors),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
