/* fuzz_api: the HTTP API router of --api-listen (nt_api.c) — method and path to a route
 * with percent-decoded, validated ids; the admin bearer-token check; the JSON error
 * bodies. data[0] picks the method; the rest is "path\0authorization". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nt_api.h"
#include "nt_pct.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int method = data[0] % 8; /* DELETE=0 GET=1 HEAD=2 POST=3 PUT=4 ... (libhttp-parser) */
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  const char *nul = memchr(p, 0, n);
  size_t plen = nul ? (size_t)(nul - p) : n;
  nt_api_match m;
  nt_api_route(method, p, plen, &m);
  if (m.route == NT_API_NONE) {
    if (m.status != 400 && m.status != 404 && m.status != 405) __builtin_trap();
    size_t jl;
    free(nt_api_error_json(nt_api_error_code(m.status), m.why ? m.why : "", &jl));
    free(nt_api_error_response(m.status, &jl));
  } else if (m.route != NT_API_HEALTHZ && m.route != NT_API_READYZ &&
             m.route != NT_API_METRICS && !m.id[0]) {
    __builtin_trap(); /* every resource route names an id */
  }
  char out[256];
  nt_pct_decode(p, plen, out, sizeof out, NT_PCT_NO_SLASH);
  char *auth = nul ? strndup(nul + 1, n - plen - 1) : NULL;
  int st = nt_api_check_auth("admin-token", auth);
  if (st != 0 && st != 401 && st != 403) __builtin_trap();
  if (nt_api_check_auth(NULL, auth) != 403 || nt_api_check_auth("", auth) != 403) __builtin_trap();
  free(auth);
  return 0;
}
