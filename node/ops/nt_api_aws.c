/* nt_api_aws: SigV4 access, x-amzn-ErrorType values and RFC 3339 times for the HTTP API. */
#include "nt_api_aws.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "nt_sigv4.h"

int nt_api_aws_access(const nt_config *cfg, const nt_http_req *req, int64_t now_s,
                      const char **why) {
  if (!nt_sigv4_is_sigv4(req->hdr[NT_HDR_AUTHORIZATION])) return 1;
  if (!cfg->aws_access_key_id || !cfg->aws_secret_access_key) {
    *why = "SigV4 is not configured (--aws-access-key-id)";
    return 403;
  }
  const char *q = req->target ? req->target + req->path_len : "";
  if (*q == '?') q++;
  nt_sigv4_req r = {.method = http_method_str((enum http_method)req->method),
                    .path = req->target ? req->target : "/",
                    .path_len = req->target ? req->path_len : 1,
                    .query = q,
                    .query_len = strcspn(q, "#"),
                    .headers = req->headers,
                    .headers_len = req->headers_len,
                    .body = req->body,
                    .body_len = req->body_len};
  return nt_sigv4_verify(&r, cfg->aws_access_key_id, cfg->aws_secret_access_key,
                         NT_API_AWS_SERVICE, now_s, why) ? 403 : 0;
}

const char *nt_api_aws_error_type(int status) {
  switch (status) {
  case 400: return "BadRequestException";
  case 401: return "UnauthorizedException";
  case 403: return "ForbiddenException";
  case 404: return "NotFoundException";
  case 405: return "MethodNotAllowedException";
  case 410: return "GoneException";
  case 413: return "PayloadTooLargeException";
  case 429: return "LimitExceededException";
  case 503: return "ServiceUnavailableException";
  case 504: return "GatewayTimeoutException";
  default: return status >= 500 ? "InternalServerErrorException" : "BadRequestException";
  }
}

