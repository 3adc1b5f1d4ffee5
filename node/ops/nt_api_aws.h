/* nt_api_aws: the AWS-compatible parts of the HTTP API — SigV4 access for the
 * ApiGatewayManagementApi clients (--aws-access-key-id / --aws-secret-access-key), the
 * gateway's error types (x-amzn-ErrorType) and its RFC 3339 times. Pure (the clock is a
 * parameter); loop thread or any. */
#ifndef NT_API_AWS_H
#define NT_API_AWS_H

#include <stddef.h>
#include <stdint.h>

#include "nt_config.h"
#include "nt_http.h"

#define NT_API_AWS_SERVICE "execute-api"

/* Access by SigV4: returns 1 when `req` is not SigV4-signed (the bearer token decides),
 * 0 when it is signed for service execute-api (any region) with the configured key pair,
 * or 403 (bad signature, other key, skew past 5 min, SigV4 not configured) with a static
 * reason in *why. `now_s`: unix seconds. */
int nt_api_aws_access(const nt_config *cfg, const nt_http_req *req, int64_t now_s,
                      const char **why);

/* The value of x-amzn-ErrorType for an error status ("GoneException" for 410,
 * "ForbiddenException" 403, "PayloadTooLargeException" 413, "LimitExceededException" 429,
 * "BadRequestException" 400, ...). Static, never NULL. */
const char *nt_api_aws_error_type(int status);

/* RFC 3339 times of the API: nt_clock_rfc3339 (nt_clock.h). */

#endif
