/* nt_integ_event: the pure half of the HTTP integration — which route a frame goes to
 * (the gateway's route selection), the API Gateway WebSocket Lambda proxy event sent for
 * an invocation, and reading the answer (a plain HTTP response or a Lambda proxy result).
 * No I/O, no loop: tested with cmocka (tests/unit/test_integ_event.c). Not thread-safe
 * only in that jansson values passed in must not be shared while in use. */
#ifndef NT_INTEG_EVENT_H
#define NT_INTEG_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "nt_frame.h"
#include "nt_proto.h"

enum nt_integ_type { NT_INTEG_CONNECT = 1, NT_INTEG_MESSAGE = 2, NT_INTEG_DISCONNECT = 3 };

#define NT_INTEG_PATH_MAX 8   /* fields in a route selection expression */

/* The route keys sent to the integration and the route selection expression. */
typedef struct nt_integ_routes {
  char **keys;
  size_t nkeys;
  char *path[NT_INTEG_PATH_MAX]; /* "$request.body.a.b" -> {"a", "b"} */
  size_t npath;
} nt_integ_routes;

/* Parses `list` ("$connect,$disconnect,$default,sendMessage": comma-separated, blanks
 * around keys ignored, empty keys skipped) and `expr` ("$request.body.<field>[.<field>]",
 * at most NT_INTEG_PATH_MAX fields). Returns 0, NT_EINVAL (*r untouched) or NT_ENOMEM. */
int nt_integ_routes_init(nt_integ_routes *r, const char *list, const char *expr);
void nt_integ_routes_free(nt_integ_routes *r);

/* 1 when `key` is one of the route keys. */
int nt_integ_routes_has(const nt_integ_routes *r, const char *key);

/* Route selection for a client text frame, as the gateway does it, with natter's built-in
 * actions in between:
 *   1. the frame is a JSON object and the expression names a string there that is a
 *      route key (not starting with '$')  -> that route;
 *   2. else its `action` is a built-in action (joinRoom, sendMessage...) -> NULL: natter
 *      handles it (a built-in named in the list was taken by step 1);
 *   3. else (no key, a key with no route, not JSON) -> "$default" when it is in the list,
 *      NULL otherwise (natter's own $default: NATS routes or unknown_action).
 * Returns a pointer into r->keys or NULL. The frame's requestId (string or integer, as
 * JSON text of at most NT_REQID_MAX bytes) is written to `reqid` ("" when none). */
const char *nt_integ_select(const nt_integ_routes *r, const char *data, size_t len,
                            char reqid[NT_REQID_MAX + 1]);

/* What an event says about the connection. Strings are borrowed; NULL is written as "". */
typedef struct nt_integ_conn_info {
  const char *conn_id;
  int64_t connected_at_ms;     /* unix ms */
  const char *source_ip, *user_agent;
  const char *domain, *stage, *api_id;
  const char *principal, *tenant; /* the token's sub and tenant */
  const json_t *claims;        /* the token's claims (object), or NULL */
} nt_integ_conn_info;

/* One invocation. */
typedef struct nt_integ_call {
  int type;                    /* enum nt_integ_type */
  const char *route;           /* routeKey */
  const char *request_id;
  const char *message_id;      /* MESSAGE */
  int64_t now_ms;              /* requestTimeEpoch */
  const char *body;            /* MESSAGE: the client's frame */
  size_t body_len;
  /* CONNECT: request headers (names as sent, values NUL-terminated) and the query string
   * (without the leading '?'; the token parameter already removed) */
  const char *const *hdr_names;
  const char *const *hdr_values;
  size_t nhdrs;
  const char *query;
  int disconnect_code;         /* DISCONNECT: WebSocket close code */
  const char *disconnect_reason;
} nt_integ_call;

/* Renders the Lambda proxy event (docs/integrations.md lists every field) as a malloc'd
 * JSON text (caller frees) with its length in *len; NULL on allocation failure. */
char *nt_integ_event(const nt_integ_conn_info *ci, const nt_integ_call *call, size_t *len);

/* An answer: `status` and `body` of the plain response, or of the Lambda proxy result
 * {"statusCode": N, "body": "...", "isBase64Encoded"?, "headers"?} found in it. */
typedef struct nt_integ_result {
  int status;
  const char *body;            /* points into the response or into `owned` */
  size_t body_len;
  char *owned;                 /* freed by nt_integ_result_free */
} nt_integ_result;

/* Reads a response of `http_status` with `body`. A JSON object with a `statusCode` member
 * is a Lambda proxy result; anything else is a plain response. Returns 0, or NT_EPROTO
 * for a malformed proxy result (statusCode not an integer in 100..599, body not a string,
 * bad base64), or NT_ENOMEM. */
int nt_integ_result_read(int http_status, const char *body, size_t len, nt_integ_result *out);
void nt_integ_result_free(nt_integ_result *r);

/* The claims of a JWT (its payload, base64url-decoded JSON object; the signature is not
 * checked here: call only with a verified token). Returns a new reference or NULL. */
json_t *nt_integ_token_claims(const char *token);

/* The `error` frame {"type":"error","code","message","status"? ,"requestId"?} (status 0:
 * none). NULL on allocation failure. */
nt_frame *nt_integ_error_frame(const char *code, int status, const char *message,
                               const char *reqid);

#endif
