/* test_ws_glue: a real standalone node (in-memory bus and presence) driven in-process with
 * scripted bytes — HTTP upgrade and its refusals, hand-built masked frames, close codes,
 * protocol actions, the slow-consumer bound, and a clean shutdown (uv_loop_close() == 0:
 * a leaked handle fails the test).
 *
 * No sockets: every client is the peer of a connection on the memory transport
 * (nt_node_connect_mem). Bytes are fed in, frames are read out of the peer's buffer; a
 * peer window stands in for a socket buffer that a client does not read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "nt_auth.h"
#include "nt_bus.h"
#include "nt_config.h"
#include "nt_handshake.h"
#include "nt_log.h"
#include "nt_chat.h"
#include "nt_node.h"
#include "nt_presence.h"
#include "../nt_test_b64.h"
#include "../nt_test_node.h"

#define SECRET "ws-glue-test-secret-0123456789abcdef"
#define WAIT_MS 3000 /* upper bound for any expected event */

/* ---------------------------------------------------------------- node -------- */

typedef struct env {
  uv_loop_t loop;
  nt_config cfg;
  nt_node *node;
} env;

static env *g; /* the current test's node */

/* Starts a standalone node with the default test flags plus `extra` (NULL-terminated). */
static env *env_start(const char *const *extra) {
  env *e = calloc(1, sizeof *e);
  assert_non_null(e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  char *argv[48];
  int argc = 0;
  argv[argc++] = "natter-node";
  const char *base[] = {"--jwt-secret", SECRET, "--listen", "127.0.0.1:0", "--api-listen",
                        "127.0.0.1:0", "--node-id", "glue-node", NULL};
  for (const char *const *a = base; *a; a++) argv[argc++] = (char *)*a;
  for (const char *const *a = extra; a && *a; a++) argv[argc++] = (char *)*a;
  argv[argc] = NULL;
  FILE *devnull = fopen("/dev/null", "w");
  int rc = nt_config_parse(&e->cfg, argc, argv, devnull, stderr);
  fclose(devnull);
  assert_int_equal(rc, 0);

  e->node = nt_node_new(&e->loop, &e->cfg);
  assert_non_null(e->node);
  nt_auth_cfg acfg = {.alg = e->cfg.jwt_alg, .secret = e->cfg.jwt_secret};
  nt_auth *auth = NULL;
  char err[256];
  assert_int_equal(nt_auth_new(&acfg, &auth, err, sizeof err), 0);
  nt_bus_handler bh = nt_node_bus_handler(e->node);
  nt_presence_handler ph = nt_node_presence_handler(e->node);
  nt_bus *bus = nt_bus_mem_new(&e->loop, &bh);
  nt_presence *pres = nt_presence_mem_new(&e->loop, &ph);
  assert_non_null(bus);
  assert_non_null(pres);
  if (bh.on_state) bh.on_state(bh.ud, 1);
  nt_node_attach(e->node, bus, pres, auth);
  assert_int_equal(nt_node_start(e->node), 0);
  g = e;
  return e;
}

static void pump_once(void) {
  uv_run(&g->loop, UV_RUN_NOWAIT);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Stops the node and checks that every handle closes: the loop must then close cleanly. */
static void env_stop(env *e) {
  nt_node_stop(e->node);
  uint64_t t0 = now_ms();
  while (uv_loop_alive(&e->loop)) {
    uv_run(&e->loop, UV_RUN_ONCE);
    if (now_ms() - t0 > 5000) fail_msg("node did not stop within 5 s (a handle stays active)");
  }
  nt_node_free(e->node);
  int rc = uv_loop_close(&e->loop);
  if (rc) {
    uv_print_all_handles(&e->loop, stderr);
    fail_msg("uv_loop_close: %s (a handle was leaked)", uv_strerror(rc));
  }
  nt_config_free(&e->cfg);
  free(e);
  g = NULL;
}

/* ---------------------------------------------------------------- tokens ------ */

static char *mint_claims(const char *key, const char *claims) {
  jwt_t *j = NULL;
  assert_int_equal(jwt_new(&j), 0);
  assert_int_equal(jwt_add_grants_json(j, claims), 0);
  assert_int_equal(jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)key, (int)strlen(key)), 0);
  char *t = jwt_encode_str(j);
  assert_non_null(t);
  jwt_free(j);
  return t;
}

static char *mint(const char *tenant, const char *user, long exp_in_s) {
  char claims[512];
  snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"tenant\":\"%s\",\"exp\":%ld}", user, tenant,
           (long)time(NULL) + exp_in_s);
  return mint_claims(SECRET, claims);
}


/* An unsigned token: header {"alg":"none"}, valid claims, empty signature. */
static char *mint_none(void) {
  char claims[256], *t = malloc(2048);
  snprintf(claims, sizeof claims, "{\"sub\":\"mallory\",\"tenant\":\"acme\",\"exp\":%ld}",
           (long)time(NULL) + 3600);
  const char *hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
  nt_test_b64url((const unsigned char *)hdr, strlen(hdr), t);
  strcat(t, ".");
  nt_test_b64url((const unsigned char *)claims, strlen(claims), t + strlen(t));
  strcat(t, ".");
  return t;
}

/* ---------------------------------------------------------------- client ------ */

typedef struct cli {
  nt_mem_peer peer;  /* the connection's other end (memory transport) */
  uint8_t *buf;      /* read from the peer, not consumed by the test yet */
  size_t len, cap;
  int eof;           /* the node closed the connection and everything was read */
  char conn_id[64];
} cli;

/* A client of the WebSocket port. `window` > 0: it holds at most that many unread bytes
 * (a socket receive buffer): a client that stops reading makes the node queue. */
static cli *cli_connect(int window) {
  cli *c = calloc(1, sizeof *c);
  c->cap = 1 << 16;
  c->buf = malloc(c->cap);
  c->peer.window = window > 0 ? (size_t)window : 0;
  assert_non_null(nt_node_connect_mem(g->node, 0, &c->peer));
  return c;
}

static void cli_free(cli *c) {
  if (!c) return;
  nt_mem_peer_free(&c->peer); /* a connection still open is reset */
  free(c->buf);
  free(c);
}

/* Moves whatever the node wrote into the buffer. */
static void cli_fill(cli *c) {
  if (nt_test_peer_take(&c->peer, &c->buf, &c->len, &c->cap)) c->eof = 1;
}

static void cli_consume(cli *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

static void cli_write(cli *c, const void *data, size_t len) {
  nt_mem_peer_write(&c->peer, data, len); /* read now, or when the node reads again */
}

/* Pumps the node's loop (and reads every client) until `ready(c, arg)` or WAIT_MS. */
typedef int (*cond_fn)(cli *c, void *arg);
static int wait_for(cli *c, cond_fn ready, void *arg) {
  uint64_t t0 = now_ms();
  for (;;) {
    pump_once();
    cli_fill(c);
    if (ready(c, arg)) return 1;
    if (now_ms() - t0 > WAIT_MS) return 0;
    usleep(500); /* timers (sweep, pings) run on real time */
  }
}

/* ---- HTTP ---- */

static int has_http_response(cli *c, void *arg) {
  (void)arg;
  void *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (!end) return c->eof;
  if (memmem(c->buf, c->len, " 101 ", 5)) return 1;
  /* non-101 answers carry a body: wait for Content-Length bytes */
  size_t hl = (size_t)((uint8_t *)end - c->buf) + 4;
  const char *cl = memmem(c->buf, hl, "Content-Length: ", 16);
  size_t want = cl ? (size_t)strtoul(cl + 16, NULL, 10) : 0;
  return c->len >= hl + want || c->eof;
}

/* Reads one HTTP response; returns its status, copies the head into `head` (if given) and
 * consumes it (body included). */
static int cli_http_response(cli *c, char *head, size_t cap) {
  if (!wait_for(c, has_http_response, NULL)) fail_msg("no HTTP response");
  uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (!end) fail_msg("connection closed without a response (%zu bytes)", c->len);
  size_t hl = (size_t)(end - c->buf) + 4;
  if (head) {
    size_t n = hl < cap - 1 ? hl : cap - 1;
    memcpy(head, c->buf, n);
    head[n] = '\0';
  }
  int status = 0;
  if (sscanf((const char *)c->buf, "HTTP/1.1 %d", &status) != 1) fail_msg("bad status line");
  size_t body = 0;
  if (status != 101) {
    const char *cl = memmem(c->buf, hl, "Content-Length: ", 16);
    body = cl ? (size_t)strtoul(cl + 16, NULL, 10) : 0;
  }
  cli_consume(c, hl + body <= c->len ? hl + body : c->len);
  return status;
}

static void cli_send_upgrade(cli *c, const char *target, const char *extra_headers) {
  char req[16384];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n",
                   target, extra_headers ? extra_headers : "");
  cli_write(c, req, (size_t)n);
}

static int is_eof(cli *c, void *arg) {
  (void)arg;
  return c->eof;
}

static void expect_closed(cli *c) {
  if (!wait_for(c, is_eof, NULL)) fail_msg("the node did not close the connection");
}

/* ---- frames ---- */

typedef struct frame {
  int fin, op;
  uint8_t *payload; /* malloc'd, NUL-terminated */
  size_t len;
} frame;

static int has_frame(cli *c, void *arg) {
  (void)arg;
  if (c->len < 2) return c->eof;
  uint64_t n = c->buf[1] & 0x7f;
  size_t h = 2;
  if (n == 126) {
    if (c->len < 4) return c->eof;
    n = (uint64_t)c->buf[2] << 8 | c->buf[3];
    h = 4;
  } else if (n == 127) {
    if (c->len < 10) return c->eof;
    n = 0;
    for (int i = 0; i < 8; i++) n = n << 8 | c->buf[2 + i];
    h = 10;
  }
  return c->len >= h + n || c->eof;
}

static const char *g_step = ""; /* what the test is doing, for failure messages */

static frame cli_frame(cli *c) {
  frame f = {0};
  if (!wait_for(c, has_frame, NULL) || c->len < 2)
    fail_msg("%s: no frame from the node (%zu bytes buffered, eof %d)", g_step, c->len, c->eof);
  f.fin = c->buf[0] >> 7;
  f.op = c->buf[0] & 0x0f;
  assert_int_equal(c->buf[0] & 0x70, 0);
  assert_int_equal(c->buf[1] & 0x80, 0); /* server frames are never masked */
  uint64_t n = c->buf[1] & 0x7f;
  size_t h = 2;
  if (n == 126) { n = (uint64_t)c->buf[2] << 8 | c->buf[3]; h = 4; }
  else if (n == 127) { n = 0; for (int i = 0; i < 8; i++) n = n << 8 | c->buf[2 + i]; h = 10; }
  if (c->len < h + n) fail_msg("truncated frame");
  f.len = (size_t)n;
  f.payload = malloc(f.len + 1);
  memcpy(f.payload, c->buf + h, f.len);
  f.payload[f.len] = 0;
  cli_consume(c, h + f.len);
  return f;
}

/* Sends one client frame; `mask` 0 sends it unmasked (a protocol violation). */
static void cli_send_frame(cli *c, int fin, int op, const void *payload, size_t len, int mask) {
  uint8_t *f = malloc(len + 14);
  size_t h = 0;
  f[h++] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
  uint8_t mbit = mask ? 0x80 : 0;
  if (len < 126) f[h++] = (uint8_t)(mbit | len);
  else if (len <= 0xffff) {
    f[h++] = mbit | 126;
    f[h++] = (uint8_t)(len >> 8);
    f[h++] = (uint8_t)len;
  } else {
    f[h++] = mbit | 127;
    for (int i = 0; i < 8; i++) f[h++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
  }
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (mask) {
    memcpy(f + h, key, 4);
    h += 4;
  }
  const uint8_t *p = payload;
  for (size_t i = 0; i < len; i++) f[h + i] = mask ? p[i] ^ key[i % 4] : p[i];
  cli_write(c, f, h + len);
  free(f);
}

static void cli_text(cli *c, const char *s) { cli_send_frame(c, 1, 1, s, strlen(s), 1); }

/* Next frame must be a text frame holding a JSON object; returns it (caller decrefs). */
static json_t *cli_json(cli *c) {
  frame f = cli_frame(c);
  if (f.op != 1) fail_msg("expected a text frame, got opcode %d (%.*s)", f.op, (int)f.len, f.payload);
  assert_int_equal(f.fin, 1);
  json_error_t err;
  json_t *v = json_loadb((const char *)f.payload, f.len, 0, &err);
  if (!v) fail_msg("not JSON: %s", f.payload);
  free(f.payload);
  return v;
}

static const char *jtype(json_t *v) { return json_string_value(json_object_get(v, "type")); }
static const char *jstr(json_t *v, const char *k) { return json_string_value(json_object_get(v, k)); }

/* Next JSON frame, skipping `presence` frames; checks its type. */
static json_t *cli_expect(cli *c, const char *type) {
  for (;;) {
    json_t *v = cli_json(c);
    const char *t = jtype(v);
    if (t && !strcmp(t, type)) return v;
    if (t && !strcmp(t, "presence") && strcmp(type, "presence")) {
      json_decref(v);
      continue;
    }
    char *s = json_dumps(v, 0);
    fail_msg("expected '%s', got %s", type, s);
  }
}

/* Expects a close frame with `code`, answers it, then expects the connection to close. */
static void cli_expect_close(cli *c, int code) {
  frame f = cli_frame(c);
  while (f.op == 1 || f.op == 0xa) { /* replies queued before the close */
    free(f.payload);
    f = cli_frame(c);
  }
  if (f.op != 8) fail_msg("expected a close frame, got opcode %d", f.op);
  assert_true(f.len >= 2);
  int got = f.payload[0] << 8 | f.payload[1];
  if (got != code) fail_msg("close code %d, expected %d (%.*s)", got, code, (int)f.len - 2, f.payload + 2);
  free(f.payload);
  if (!c->eof) { /* complete the close handshake (the node may already have gone) */
    uint8_t echo[8] = {0x88, 0x82, 1, 2, 3, 4, (uint8_t)((code >> 8) ^ 1), (uint8_t)(code ^ 2)};
    cli_write(c, echo, sizeof echo);
  }
  expect_closed(c);
}

/* A WebSocket client authenticated with `tok`, past its welcome frame. */
static cli *cli_open_token(const char *tok) {
  cli *c = cli_connect(0);
  char target[4096];
  snprintf(target, sizeof target, "/ws?token=%s", tok);
  cli_send_upgrade(c, target, NULL);
  char head[2048];
  int st = cli_http_response(c, head, sizeof head);
  if (st != 101) fail_msg("upgrade refused: %s", head);
  json_t *w = cli_expect(c, "welcome");
  snprintf(c->conn_id, sizeof c->conn_id, "%s", jstr(w, "connectionId"));
  json_decref(w);
  return c;
}

/* A WebSocket client authenticated as tenant/user, past its welcome frame. */
static cli *cli_open(const char *tenant, const char *user, int rcvbuf) {
  cli *c = cli_connect(rcvbuf);
  char *tok = mint(tenant, user, 3600);
  char target[4096];
  snprintf(target, sizeof target, "/ws?token=%s", tok);
  free(tok);
  cli_send_upgrade(c, target, NULL);
  char head[2048];
  int st = cli_http_response(c, head, sizeof head);
  if (st != 101) fail_msg("upgrade refused: %s", head);
  json_t *w = cli_expect(c, "welcome");
  snprintf(c->conn_id, sizeof c->conn_id, "%s", jstr(w, "connectionId"));
  json_decref(w);
  return c;
}

/* ---------------------------------------------------------------- setup ------- */

static int setup_default(void **state) {
  *state = env_start(NULL);
  return 0;
}

static int teardown_node(void **state) {
  env_stop(*state);
  return 0;
}

/* ---------------------------------------------------------------- HTTP phase -- */

static void test_upgrade_ok(void **state) {
  (void)state;
  cli *c = cli_connect(0);
  char *tok = mint("acme", "alice", 3600);
  char target[4096];
  snprintf(target, sizeof target, "/ws?token=%s", tok);
  cli_send_upgrade(c, target, "User-Agent: glue-test\r\n");
  char head[2048];
  assert_int_equal(cli_http_response(c, head, sizeof head), 101);
  assert_non_null(strcasestr(head, "\r\nUpgrade: websocket\r\n"));
  assert_non_null(strcasestr(head, "\r\nConnection: Upgrade\r\n"));
  assert_non_null(strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  json_t *w = cli_expect(c, "welcome");
  assert_string_equal(jstr(w, "userId"), "alice");
  assert_string_equal(jstr(w, "tenantId"), "acme");
  assert_int_equal(strlen(jstr(w, "connectionId")), NT_CONN_ID_LEN);
  assert_int_equal(json_integer_value(json_object_get(w, "heartbeatInterval")), 25000);
  json_decref(w);
  assert_int_equal(nt_node_metrics(g->node)->connections, 1);
  cli_free(c);
  /* Authorization: Bearer works too */
  c = cli_connect(0);
  char hdr[4096];
  snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", tok);
  cli_send_upgrade(c, "/ws", hdr);
  assert_int_equal(cli_http_response(c, NULL, 0), 101);
  w = cli_expect(c, "welcome");
  assert_string_equal(jstr(w, "userId"), "alice");
  json_decref(w);
  cli_free(c);
  free(tok);
}

static int upgrade_status(const char *target, const char *headers) {
  cli *c = cli_connect(0);
  cli_send_upgrade(c, target, headers);
  int st = cli_http_response(c, NULL, 0);
  if (st != 101) expect_closed(c);
  cli_free(c);
  return st;
}

static int upgrade_status_tok_503(void) {
  char *t = mint("acme", "late", 3600);
  char target[4096];
  snprintf(target, sizeof target, "/ws?token=%s", t);
  free(t);
  return upgrade_status(target, NULL);
}

static void test_upgrade_401(void **state) {
  (void)state;
  char target[4096];
  assert_int_equal(upgrade_status("/ws", NULL), 401);                 /* no token */
  assert_int_equal(upgrade_status("/ws?token=", NULL), 401);          /* empty */
  assert_int_equal(upgrade_status("/ws?token=abc.def.ghi", NULL), 401); /* garbage */
  char *t = mint("acme", "alice", -60);                                /* expired */
  snprintf(target, sizeof target, "/ws?token=%s", t);
  assert_int_equal(upgrade_status(target, NULL), 401);
  free(t);
  t = mint_claims("another-secret-another-secret-0123", /* bad signature */
                  "{\"sub\":\"alice\",\"tenant\":\"acme\",\"exp\":9999999999}");
  snprintf(target, sizeof target, "/ws?token=%s", t);
  assert_int_equal(upgrade_status(target, NULL), 401);
  free(t);
  t = mint_none(); /* alg none */
  snprintf(target, sizeof target, "/ws?token=%s", t);
  assert_int_equal(upgrade_status(target, NULL), 401);
  free(t);
  t = mint_claims(SECRET, "{\"sub\":\"alice\",\"exp\":9999999999}"); /* no tenant */
  snprintf(target, sizeof target, "/ws?token=%s", t);
  assert_int_equal(upgrade_status(target, NULL), 401);
  free(t);
  assert_int_equal(upgrade_status("/ws", "Authorization: Basic dXNlcjpwYXNz\r\n"), 401);
  assert_int_equal(nt_node_metrics(g->node)->auth_failures, 8);
  assert_int_equal(nt_node_metrics(g->node)->connections, 0);
}

static void test_http_other_paths(void **state) {
  (void)state;
  /* anything but /ws gets a plain HTTP answer */
  cli *c = cli_connect(0);
  const char req[] = "GET /no/such/file HTTP/1.1\r\nHost: x\r\n\r\n";
  cli_write(c, req, sizeof req - 1);
  assert_int_equal(cli_http_response(c, NULL, 0), 404);
  cli_free(c);
  c = cli_connect(0);
  const char hz[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  cli_write(c, hz, sizeof hz - 1);
  assert_int_equal(cli_http_response(c, NULL, 0), 200);
  cli_free(c);
  /* an upgrade to another path is not a WebSocket */
  char *t = mint("acme", "alice", 3600);
  char target[4096];
  snprintf(target, sizeof target, "/chat?token=%s", t);
  free(t);
  int st = upgrade_status(target, NULL);
  assert_int_equal(st, 404);
  /* not an upgrade at all on /ws */
  c = cli_connect(0);
  const char plain[] = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
  cli_write(c, plain, sizeof plain - 1);
  assert_int_equal(cli_http_response(c, NULL, 0), 400);
  cli_free(c);
  /* garbage instead of HTTP */
  c = cli_connect(0);
  static const char junk[] = "\x16\x03\x01\x02\x00garbage\r\n\r\n";
  cli_write(c, junk, sizeof junk - 1);
  assert_int_equal(cli_http_response(c, NULL, 0), 400);
  expect_closed(c);
  cli_free(c);
}

static int setup_origin(void **state) {
  const char *extra[] = {"--allowed-origins", "https://good.example, https://also.example", NULL};
  *state = env_start(extra);
  return 0;
}

static void test_upgrade_403_origin(void **state) {
  (void)state;
  char *t = mint("acme", "alice", 3600);
  char target[4096];
  snprintf(target, sizeof target, "/ws?token=%s", t);
  free(t);
  assert_int_equal(upgrade_status(target, "Origin: https://evil.example\r\n"), 403);
  assert_int_equal(upgrade_status(target, NULL), 403); /* no Origin with a list configured */
  assert_int_equal(upgrade_status(target, "Origin: https://good.example.evil\r\n"), 403);
  assert_int_equal(nt_node_metrics(g->node)->origin_rejected, 3);
  /* origin is checked before the token: a bad token from a bad origin is a 403 */
  assert_int_equal(upgrade_status("/ws?token=x", "Origin: https://evil.example\r\n"), 403);
  cli *c = cli_connect(0);
  cli_send_upgrade(c, target, "Origin: https://also.example\r\n");
  assert_int_equal(cli_http_response(c, NULL, 0), 101);
  json_decref(cli_expect(c, "welcome"));
  cli_free(c);
}

/* ---------------------------------------------------------------- frames ------ */

static void test_text_and_fragments(void **state) {
  (void)state;
  cli *c = cli_open("acme", "alice", 0);
  cli_text(c, "{\"action\":\"heartbeat\",\"requestId\":1}");
  json_t *v = cli_expect(c, "heartbeat");
  assert_int_equal(json_integer_value(json_object_get(v, "requestId")), 1);
  json_decref(v);
  /* one message in three fragments, a ping between the fragments (control frames may be
   * interleaved): a pong and the reply to the whole message, in either order (when all
   * arrive in one read, the reply is queued while wslay still holds the pong) */
  const char *a = "{\"action\":\"hea", *b = "rtbeat\",\"reque", *d = "stId\":\"frag\"}";
  cli_send_frame(c, 0, 1, a, strlen(a), 1);
  cli_send_frame(c, 0, 0, b, strlen(b), 1);
  cli_send_frame(c, 1, 9, "mid", 3, 1);
  cli_send_frame(c, 1, 0, d, strlen(d), 1);
  int got_pong = 0, got_reply = 0;
  for (int i = 0; i < 2; i++) {
    frame f = cli_frame(c);
    if (f.op == 0xa) {
      assert_string_equal((char *)f.payload, "mid");
      got_pong++;
    } else {
      assert_int_equal(f.op, 1);
      v = json_loads((char *)f.payload, 0, NULL);
      assert_string_equal(jtype(v), "heartbeat");
      assert_string_equal(jstr(v, "requestId"), "frag");
      json_decref(v);
      got_reply++;
    }
    free(f.payload);
  }
  assert_int_equal(got_pong, 1);
  assert_int_equal(got_reply, 1);
  /* a UTF-8 character split across fragments is fine */
  const char *p1 = "{\"action\":\"heartbeat\",\"requestId\":\"\xc3", *p2 = "\xa9\"}";
  cli_send_frame(c, 0, 1, p1, strlen(p1), 1);
  cli_send_frame(c, 1, 0, p2, strlen(p2), 1);
  v = cli_expect(c, "heartbeat");
  assert_string_equal(jstr(v, "requestId"), "\xc3\xa9");
  json_decref(v);
  /* many frames in one write */
  char batch[4096];
  size_t bl = 0;
  for (int i = 0; i < 20; i++) {
    char msg[64];
    int n = snprintf(msg, sizeof msg, "{\"action\":\"heartbeat\",\"requestId\":%d}", i);
    batch[bl++] = (char)0x81;
    batch[bl++] = (char)(0x80 | n);
    memset(batch + bl, 0, 4); /* zero mask key: payload as is */
    bl += 4;
    memcpy(batch + bl, msg, (size_t)n);
    bl += (size_t)n;
  }
  cli_write(c, batch, bl);
  for (int i = 0; i < 20; i++) {
    v = cli_expect(c, "heartbeat");
    assert_int_equal(json_integer_value(json_object_get(v, "requestId")), i);
    json_decref(v);
  }
  /* a frame trickled in byte by byte */
  char one[128];
  const char *m = "{\"action\":\"heartbeat\",\"requestId\":\"slow\"}";
  size_t ml = strlen(m);
  one[0] = (char)0x81;
  one[1] = (char)(0x80 | ml);
  memcpy(one + 2, "\x11\x22\x33\x44", 4);
  for (size_t i = 0; i < ml; i++) one[6 + i] = (char)(m[i] ^ "\x11\x22\x33\x44"[i % 4]);
  for (size_t i = 0; i < 6 + ml; i++) {
    cli_write(c, one + i, 1);
    pump_once();
  }
  v = cli_expect(c, "heartbeat");
  assert_string_equal(jstr(v, "requestId"), "slow");
  json_decref(v);
  cli_free(c);
}

static void test_ping_pong(void **state) {
  (void)state;
  cli *c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 1, 9, "abc", 3, 1);
  frame f = cli_frame(c);
  assert_int_equal(f.op, 0xa);
  assert_int_equal(f.fin, 1);
  assert_int_equal(f.len, 3);
  assert_memory_equal(f.payload, "abc", 3);
  free(f.payload);
  cli_send_frame(c, 1, 9, "", 0, 1);
  f = cli_frame(c);
  assert_int_equal(f.op, 0xa);
  assert_int_equal(f.len, 0);
  free(f.payload);
  uint8_t big[125];
  memset(big, 'p', sizeof big);
  cli_send_frame(c, 1, 9, big, sizeof big, 1);
  f = cli_frame(c);
  assert_int_equal(f.op, 0xa);
  assert_int_equal(f.len, 125);
  assert_memory_equal(f.payload, big, 125);
  free(f.payload);
  /* an unsolicited pong is ignored; the connection still works */
  cli_send_frame(c, 1, 0xa, "x", 1, 1);
  cli_text(c, "{\"action\":\"heartbeat\"}");
  json_decref(cli_expect(c, "heartbeat"));
  cli_free(c);
}

static void close_with(int code_in, int code_out) {
  cli *c = cli_open("acme", "alice", 0);
  uint8_t p[5] = {(uint8_t)(code_in >> 8), (uint8_t)code_in, 'b', 'y', 'e'};
  cli_send_frame(c, 1, 8, p, sizeof p, 1);
  frame f = cli_frame(c);
  assert_int_equal(f.op, 8);
  assert_true(f.len >= 2);
  assert_int_equal(f.payload[0] << 8 | f.payload[1], code_out);
  free(f.payload);
  expect_closed(c);
  cli_free(c);
}

static void test_close_echo(void **state) {
  (void)state;
  close_with(1000, 1000);
  close_with(1001, 1001);
  close_with(4001, 4001);
  /* an empty close is answered with an empty close (no status) */
  cli *c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 1, 8, "", 0, 1);
  frame f = cli_frame(c);
  assert_int_equal(f.op, 8);
  free(f.payload);
  expect_closed(c);
  cli_free(c);
  /* the node forgets closed connections */
  uint64_t t0 = now_ms();
  while (nt_node_metrics(g->node)->connections != 0 && now_ms() - t0 < WAIT_MS) pump_once();
  assert_int_equal(nt_node_metrics(g->node)->connections, 0);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  cli *c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 1, 1, "{\"a\":\"\xff\"}", 9, 1);
  cli_expect_close(c, 1007);
  cli_free(c);
  /* split over fragments: a lone lead byte at the end of the message */
  c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 0, 1, "{\"a\":\"", 6, 1);
  cli_send_frame(c, 1, 0, "\xe6\x97\"}", 4, 1);
  cli_expect_close(c, 1007);
  cli_free(c);
  /* a surrogate */
  c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 1, 1, "\"\xed\xa0\x80\"", 5, 1);
  cli_expect_close(c, 1007);
  cli_free(c);
  /* binary frames are not checked as UTF-8 and get an error, not a close */
  c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 1, 2, "\xff\xfe", 2, 1);
  json_t *v = cli_expect(c, "error");
  assert_string_equal(jstr(v, "code"), "bad_request");
  json_decref(v);
  cli_free(c);
}

/* Opens a client, sends `bytes` (a whole frame or more) and expects close `code`. */
static void violation(const char *what, const void *bytes, size_t len, int code) {
  g_step = what;
  cli *c = cli_open("acme", "alice", 0);
  cli_write(c, bytes, len);
  cli_expect_close(c, code);
  cli_free(c);
  g_step = "";
}

static void test_reserved_opcode_and_unmasked(void **state) {
  (void)state;
  /* each frame masked with a zero key unless noted */
  static const uint8_t reserved_data[] = {0x83, 0x81, 0, 0, 0, 0, 'x'};
  static const uint8_t reserved_ctrl[] = {0x8b, 0x81, 0, 0, 0, 0, 'x'};
  static const uint8_t unmasked[] = {0x81, 0x01, 'x'};
  static const uint8_t rsv1[] = {0xc1, 0x80, 0, 0, 0, 0};
  static const uint8_t rsv3[] = {0x91, 0x80, 0, 0, 0, 0};
  static const uint8_t lone_cont[] = {0x80, 0x81, 0, 0, 0, 0, 'x'};
  static const uint8_t ping_126[] = {0x89, 0xfe, 0x00, 0x7e, 0, 0, 0, 0};
  static const uint8_t frag_ping[] = {0x09, 0x80, 0, 0, 0, 0};
  static const uint8_t text_in_text[] = {0x01, 0x81, 0, 0, 0, 0, 'a', 0x81, 0x81, 0, 0, 0, 0, 'b'};
  static const uint8_t bad_close_code[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed}; /* 1005 */
  static const uint8_t short_len16[] = {0x81, 0xfe, 0x00, 0x05, 0, 0, 0, 0, 'a', 'b', 'c', 'd', 'e'};
  violation("reserved data opcode", reserved_data, sizeof reserved_data, 1002);
  violation("reserved control opcode", reserved_ctrl, sizeof reserved_ctrl, 1002);
  violation("unmasked client frame", unmasked, sizeof unmasked, 1002);
  violation("RSV1 without extension", rsv1, sizeof rsv1, 1002);
  violation("RSV3", rsv3, sizeof rsv3, 1002);
  violation("continuation without start", lone_cont, sizeof lone_cont, 1002);
  violation("control frame of 126 bytes", ping_126, sizeof ping_126, 1002);
  violation("fragmented control frame", frag_ping, sizeof frag_ping, 1002);
  violation("new data frame inside a fragmented message", text_in_text, sizeof text_in_text, 1002);
  violation("close with reserved code 1005", bad_close_code, sizeof bad_close_code, 1002);
  violation("non-minimal 16-bit length", short_len16, sizeof short_len16, 1002);
}

static int setup_small(void **state) {
  const char *extra[] = {"--max-message-bytes", "1024", "--send-queue-bytes", "64k", NULL};
  *state = env_start(extra);
  return 0;
}

static void test_oversize(void **state) {
  (void)state;
  cli *c = cli_open("acme", "alice", 0);
  char msg[1100];
  int n = snprintf(msg, sizeof msg, "{\"action\":\"heartbeat\",\"pad\":\"");
  memset(msg + n, 'x', 1000 - (size_t)n - 2);
  memcpy(msg + 998, "\"}", 2);
  cli_send_frame(c, 1, 1, msg, 1000, 1); /* under the limit */
  json_decref(cli_expect(c, "heartbeat"));
  char big[2000];
  memset(big, ' ', sizeof big);
  cli_send_frame(c, 1, 1, big, sizeof big, 1);
  cli_expect_close(c, 1009);
  cli_free(c);
  /* the limit applies to a whole fragmented message */
  c = cli_open("acme", "alice", 0);
  cli_send_frame(c, 0, 1, big, 600, 1);
  cli_send_frame(c, 1, 0, big, 600, 1);
  cli_expect_close(c, 1009);
  cli_free(c);
}

/* ---------------------------------------------------------------- actions ----- */

static void test_actions(void **state) {
  (void)state;
  cli *a = cli_open("acme", "alice", 0), *b = cli_open("acme", "bob", 0);
  cli *x = cli_open("other", "alice", 0); /* same names, another tenant */

  cli_text(a, "{\"action\":\"joinRoom\",\"roomId\":\"lobby\",\"requestId\":\"j1\"}");
  json_t *v = cli_expect(a, "joined");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  assert_string_equal(jstr(v, "requestId"), "j1");
  assert_int_equal(json_array_size(json_object_get(v, "members")), 1);
  json_decref(v);
  cli_text(b, "{\"action\":\"joinRoom\",\"roomId\":\"lobby\"}");
  v = cli_expect(b, "joined");
  assert_int_equal(json_array_size(json_object_get(v, "members")), 2);
  assert_null(json_object_get(v, "requestId"));
  json_decref(v);
  v = cli_json(a); /* alice is told bob came online */
  assert_string_equal(jtype(v), "presence");
  assert_string_equal(jstr(v, "userId"), "bob");
  assert_string_equal(jstr(v, "status"), "online");
  json_decref(v);
  cli_text(x, "{\"action\":\"joinRoom\",\"roomId\":\"lobby\"}");
  v = cli_expect(x, "joined");
  assert_int_equal(json_array_size(json_object_get(v, "members")), 1); /* tenants isolated */
  json_decref(v);

  /* sendMessage: ack to the sender (with the id), message to every member */
  cli_text(a, "{\"action\":\"sendMessage\",\"roomId\":\"lobby\",\"message\":{\"text\":\"hi\"},\"requestId\":5}");
  v = cli_expect(a, "ack");
  assert_int_equal(json_integer_value(json_object_get(v, "requestId")), 5);
  char id[64];
  snprintf(id, sizeof id, "%s", jstr(v, "id"));
  assert_true(strlen(id) > 0);
  json_decref(v);
  for (int i = 0; i < 2; i++) {
    v = cli_expect(i ? b : a, "message");
    assert_string_equal(jstr(v, "id"), id);
    assert_string_equal(jstr(v, "roomId"), "lobby");
    assert_string_equal(jstr(v, "userId"), "alice");
    assert_string_equal(jstr(json_object_get(v, "message"), "text"), "hi");
    assert_true(json_is_integer(json_object_get(v, "timestamp")));
    json_decref(v);
  }
  /* excludeSelf: bob gets it, alice only the ack */
  cli_text(a, "{\"action\":\"sendMessage\",\"roomId\":\"lobby\",\"message\":2,\"excludeSelf\":true}");
  json_decref(cli_expect(a, "ack"));
  v = cli_expect(b, "message");
  assert_int_equal(json_integer_value(json_object_get(v, "message")), 2);
  json_decref(v);
  cli_text(a, "{\"action\":\"heartbeat\",\"requestId\":\"hb\"}");
  v = cli_json(a); /* the next frame for alice is the heartbeat: no echo came */
  assert_string_equal(jtype(v), "heartbeat");
  assert_string_equal(jstr(v, "requestId"), "hb");
  json_decref(v);

  /* unknown action: routed, no responder on the mem bus -> unknown_action */
  cli_text(a, "{\"action\":\"getProfile\",\"requestId\":\"u1\"}");
  v = cli_expect(a, "error");
  assert_string_equal(jstr(v, "code"), "unknown_action");
  assert_string_equal(jstr(v, "requestId"), "u1");
  json_decref(v);

  /* bad input: error, connection kept */
  cli_text(a, "{not json");
  v = cli_expect(a, "error");
  assert_string_equal(jstr(v, "code"), "bad_request");
  json_decref(v);
  cli_text(a, "{\"action\":\"joinRoom\",\"roomId\":\"a.b\",\"requestId\":9}");
  v = cli_expect(a, "error");
  assert_string_equal(jstr(v, "code"), "bad_request");
  assert_int_equal(json_integer_value(json_object_get(v, "requestId")), 9);
  json_decref(v);
  cli_text(a, "{\"action\":\"sendMessage\",\"roomId\":\"elsewhere\",\"message\":1}");
  v = cli_expect(a, "error");
  assert_string_equal(jstr(v, "code"), "forbidden");
  json_decref(v);
  cli_text(a, "{\"action\":\"leaveRoom\",\"roomId\":\"elsewhere\"}");
  v = cli_expect(a, "error");
  assert_string_equal(jstr(v, "code"), "not_found");
  json_decref(v);
  cli_text(a, "{\"action\":\"history\",\"roomId\":\"lobby\"}");
  v = cli_expect(a, "error");
  assert_string_equal(jstr(v, "code"), "not_found");
  json_decref(v);
  cli_text(a, "{\"action\":\"heartbeat\"}");
  json_decref(cli_expect(a, "heartbeat"));

  /* presence: members of the room */
  cli_text(b, "{\"action\":\"presence\",\"roomId\":\"lobby\",\"requestId\":\"p\"}");
  v = cli_expect(b, "members");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  assert_int_equal(json_array_size(json_object_get(v, "members")), 2);
  json_decref(v);

  /* sendToUser: every connection of bob in the tenant, not the other tenant's */
  cli *b2 = cli_open("acme", "bob", 0);
  cli_text(a, "{\"action\":\"sendToUser\",\"userId\":\"bob\",\"message\":{\"dm\":1}}");
  json_decref(cli_expect(a, "ack"));
  for (int i = 0; i < 2; i++) {
    v = cli_expect(i ? b2 : b, "direct");
    assert_string_equal(jstr(v, "userId"), "alice");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "message"), "dm")), 1);
    json_decref(v);
  }
  /* the other tenant's alice saw nothing of all this */
  cli_text(x, "{\"action\":\"heartbeat\"}");
  v = cli_json(x);
  assert_string_equal(jtype(v), "heartbeat");
  json_decref(v);

  /* leaveRoom: left, and bob sees alice go offline */
  cli_text(a, "{\"action\":\"leaveRoom\",\"roomId\":\"lobby\",\"requestId\":\"l\"}");
  v = cli_expect(a, "left");
  assert_string_equal(jstr(v, "roomId"), "lobby");
  assert_string_equal(jstr(v, "requestId"), "l");
  json_decref(v);
  v = cli_expect(b, "presence");
  assert_string_equal(jstr(v, "userId"), "alice");
  assert_string_equal(jstr(v, "status"), "offline");
  json_decref(v);
  /* and no longer receives the room */
  cli_text(b, "{\"action\":\"sendMessage\",\"roomId\":\"lobby\",\"message\":3}");
  json_decref(cli_expect(b, "ack"));
  json_decref(cli_expect(b, "message"));
  cli_text(a, "{\"action\":\"heartbeat\"}");
  v = cli_json(a);
  assert_string_equal(jtype(v), "heartbeat");
  json_decref(v);

  const nt_metrics *m = nt_node_metrics(g->node);
  assert_true(m->joins >= 3);
  assert_true(m->protocol_errors >= 6);
  cli_free(a);
  cli_free(b);
  cli_free(b2);
  cli_free(x);
}

/* A member that never reads is closed once its queue passes --send-queue-bytes; the
 * others keep receiving. */
static void test_slow_consumer(void **state) {
  (void)state;
  cli *a = cli_open("acme", "alice", 0);
  cli *s = cli_open("acme", "sloth", 2048);
  cli *r = cli_open("acme", "reader", 0);
  cli *all[] = {a, s, r};
  for (int i = 0; i < 3; i++) {
    cli_text(all[i], "{\"action\":\"joinRoom\",\"roomId\":\"slow\"}");
    json_decref(cli_expect(all[i], "joined"));
  }
  /* the sloth's window (2048 bytes) fills with the first frames: the rest queues */
  assert_non_null(nt_hub_conn(&nt_node_chat(g->node)->hub, s->conn_id));

  char msg[1024];
  int n = snprintf(msg, sizeof msg, "{\"action\":\"sendMessage\",\"roomId\":\"slow\",\"message\":\"");
  memset(msg + n, 'z', 900);
  n += 900;
  n += snprintf(msg + n, sizeof msg - (size_t)n, "\"}");
  const nt_metrics *m = nt_node_metrics(g->node);
  int sent = 0;
  while (m->slow_consumer_closes == 0 && sent < 2000) {
    cli_text(a, msg);
    sent++;
    json_decref(cli_expect(a, "ack"));
    json_decref(cli_expect(a, "message"));
    json_decref(cli_expect(r, "message"));
  }
  assert_int_equal(m->slow_consumer_closes, 1);
  assert_true(sent < 2000);
  /* a few more: the reader still gets everything */
  for (int i = 0; i < 5; i++) {
    cli_text(a, msg);
    json_decref(cli_expect(a, "ack"));
    json_decref(cli_expect(a, "message"));
    json_decref(cli_expect(r, "message"));
  }
  assert_int_equal(m->slow_consumer_closes, 1);
  /* the sloth's connection is gone: reading it now ends in EOF (or a reset) */
  uint64_t t0 = now_ms();
  while (!s->eof && now_ms() - t0 < WAIT_MS) {
    pump_once();
    cli_fill(s);
    s->len = 0;
  }
  assert_true(s->eof);
  assert_int_equal(m->connections, 2);
  cli_free(a);
  cli_free(s);
  cli_free(r);
}

/* The token's `rooms` claim limits the rooms a connection may join (docs/protocol.md §3). */
static void test_rooms_claim(void **state) {
  (void)state;
  char claims[256];
  snprintf(claims, sizeof claims,
           "{\"sub\":\"carol\",\"tenant\":\"acme\",\"exp\":%ld,\"rooms\":[\"team-*\",\"lobby\"]}",
           (long)time(NULL) + 3600);
  char *tok = mint_claims(SECRET, claims);
  cli *c = cli_open_token(tok);
  free(tok);
  cli_text(c, "{\"action\":\"joinRoom\",\"roomId\":\"team-a\"}");
  json_decref(cli_expect(c, "joined"));
  cli_text(c, "{\"action\":\"joinRoom\",\"roomId\":\"lobby\"}");
  json_decref(cli_expect(c, "joined"));
  cli_text(c, "{\"action\":\"joinRoom\",\"roomId\":\"secret\",\"requestId\":\"s\"}");
  json_t *v = cli_expect(c, "error");
  assert_string_equal(jstr(v, "code"), "forbidden");
  assert_string_equal(jstr(v, "requestId"), "s");
  json_decref(v);
  cli_text(c, "{\"action\":\"presence\",\"roomId\":\"secret\"}");
  v = cli_expect(c, "error");
  assert_string_equal(jstr(v, "code"), "forbidden");
  json_decref(v);
  cli_text(c, "{\"action\":\"sendMessage\",\"roomId\":\"secret\",\"message\":1}");
  v = cli_expect(c, "error");
  assert_string_equal(jstr(v, "code"), "forbidden");
  json_decref(v);
  cli_free(c);
}

/* Frames sent in the same packet as the upgrade request are not lost. */
static void test_frames_after_upgrade_request(void **state) {
  (void)state;
  cli *c = cli_connect(0);
  char *tok = mint("acme", "alice", 3600);
  char req[8192];
  int n = snprintf(req, sizeof req,
                   "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n", tok);
  free(tok);
  const char *m = "{\"action\":\"heartbeat\",\"requestId\":\"early\"}";
  size_t ml = strlen(m);
  req[n++] = (char)0x81;
  req[n++] = (char)(0x80 | ml);
  memset(req + n, 0, 4);
  n += 4;
  memcpy(req + n, m, ml);
  n += (int)ml;
  cli_write(c, req, (size_t)n);
  assert_int_equal(cli_http_response(c, NULL, 0), 101);
  json_decref(cli_expect(c, "welcome"));
  json_t *v = cli_expect(c, "heartbeat");
  assert_string_equal(jstr(v, "requestId"), "early");
  json_decref(v);
  cli_free(c);
}

/* A message near the 64 KiB limit: many reads in, a 64-bit-length frame out. */
static void test_big_message(void **state) {
  (void)state;
  cli *a = cli_open("acme", "alice", 0);
  cli_text(a, "{\"action\":\"joinRoom\",\"roomId\":\"big\"}");
  json_decref(cli_expect(a, "joined"));
  size_t len = 65500;
  char *msg = malloc(len + 1);
  int n = snprintf(msg, len, "{\"action\":\"sendMessage\",\"roomId\":\"big\",\"message\":\"");
  memset(msg + n, 'b', len - (size_t)n - 2);
  memcpy(msg + len - 2, "\"}", 3);
  cli_send_frame(a, 1, 1, msg, len, 1);
  json_decref(cli_expect(a, "ack"));
  frame f = cli_frame(a);
  assert_int_equal(f.op, 1);
  assert_true(f.len > 65535); /* sent with a 64-bit length */
  json_t *v = json_loadb((char *)f.payload, f.len, 0, NULL);
  assert_non_null(v);
  assert_int_equal(json_string_length(json_object_get(v, "message")), len - (size_t)n - 2);
  json_decref(v);
  free(f.payload);
  free(msg);
  cli_free(a);
}

static int conns_is(cli *c, void *arg) {
  (void)c;
  return nt_node_metrics(g->node)->connections == (uint64_t)(uintptr_t)arg;
}

/* A client that vanishes (connection reset, no close frame) leaves its rooms: others see it go. */
static void test_abrupt_disconnect(void **state) {
  (void)state;
  cli *a = cli_open("acme", "alice", 0), *b = cli_open("acme", "bob", 0);
  cli_text(a, "{\"action\":\"joinRoom\",\"roomId\":\"r\"}");
  json_decref(cli_expect(a, "joined"));
  cli_text(b, "{\"action\":\"joinRoom\",\"roomId\":\"r\"}");
  json_decref(cli_expect(b, "joined"));
  json_t *v = cli_expect(a, "presence");
  assert_string_equal(jstr(v, "status"), "online");
  json_decref(v);
  /* double join: answered with the members again, no new presence */
  cli_text(b, "{\"action\":\"joinRoom\",\"roomId\":\"r\",\"requestId\":2}");
  v = cli_expect(b, "joined");
  assert_int_equal(json_array_size(json_object_get(v, "members")), 2);
  assert_int_equal(json_integer_value(json_object_get(v, "requestId")), 2);
  json_decref(v);
  cli_free(b); /* gone without a word */
  v = cli_json(a);
  assert_string_equal(jtype(v), "presence");
  assert_string_equal(jstr(v, "userId"), "bob");
  assert_string_equal(jstr(v, "status"), "offline");
  json_decref(v);
  assert_true(wait_for(a, conns_is, (void *)(uintptr_t)1));
  nt_room *r = nt_hub_room(&nt_node_chat(g->node)->hub, "natter.room.acme.r");
  assert_non_null(r);
  assert_int_equal(r->n, 1);
  cli_free(a);
}

/* Joins in flight at once (standalone: memory presence and bus): each member hears of
 * each other user exactly once — listed in its `joined` or announced online after it —
 * and nothing of the room before its `joined`. Before the presence fan-out took the
 * store's join order into account, members also heard of users their `joined` listed. */
static void test_concurrent_joins_each_pair_once(void **state) {
  (void)state;
  enum { N = 24 };
  cli *c[N];
  char user[N][16];
  int heard[N][N] = {{0}};
  for (int i = 0; i < N; i++) {
    snprintf(user[i], sizeof user[i], "cj%02d", i);
    c[i] = cli_open("acme", user[i], 0);
  }
  for (int i = 0; i < N; i++) cli_text(c[i], "{\"action\":\"joinRoom\",\"roomId\":\"fill\"}");
  /* per client: frames until its joined (no presence allowed before it), then until the
   * reply of two heartbeat round trips (everything fanned out by then has arrived) */
  for (int i = 0; i < N; i++) {
    json_t *v = cli_json(c[i]);
    assert_string_equal(jtype(v), "joined");
    json_t *mem = json_object_get(v, "members");
    for (size_t k = 0; k < json_array_size(mem); k++) {
      const char *u = jstr(json_array_get(mem, k), "userId");
      for (int j = 0; j < N; j++)
        if (!strcmp(u, user[j])) heard[i][j]++;
    }
    json_decref(v);
  }
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < N; i++) {
      cli_text(c[i], "{\"action\":\"heartbeat\"}");
      for (;;) {
        json_t *v = cli_json(c[i]);
        const char *t = jtype(v);
        if (!strcmp(t, "heartbeat")) {
          json_decref(v);
          break;
        }
        assert_string_equal(t, "presence");
        assert_string_equal(jstr(v, "status"), "online");
        for (int j = 0; j < N; j++)
          if (!strcmp(jstr(v, "userId"), user[j])) heard[i][j]++;
        json_decref(v);
      }
    }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      if (heard[i][j] != 1)
        fail_msg("%s heard of %s %d times", user[i], user[j], heard[i][j]);
  for (int i = 0; i < N; i++) cli_free(c[i]);
}

static int setup_liveness(void **state) {
  const char *extra[] = {"--ping-interval", "1", "--idle-timeout", "2500ms", "--max-connections",
                         "2", NULL};
  *state = env_start(extra);
  return 0;
}

static int has_frame_or_eof(cli *c, void *arg) {
  (void)arg;
  return has_frame(c, NULL);
}

/* The node pings a silent client, and closes it with 1001 when it stays silent; a client
 * that answers stays. Past --max-connections, upgrades get 503. */
static void test_ping_idle_capacity(void **state) {
  (void)state;
  cli *quiet = cli_open("acme", "quiet", 0), *live = cli_open("acme", "live", 0);
  assert_int_equal(upgrade_status_tok_503(), 503);
  int quiet_pinged = 0, live_pongs = 0, quiet_closed = 0;
  uint64_t t0 = now_ms();
  while (now_ms() - t0 < 4500 && !quiet_closed) {
    pump_once();
    cli_fill(live);
    while (has_frame(live, NULL) && live->len) {
      frame f = cli_frame(live);
      if (f.op == 9) {
        cli_send_frame(live, 1, 0xa, f.payload, f.len, 1);
        live_pongs++;
      }
      free(f.payload);
    }
    cli_fill(quiet);
    while (quiet->len && has_frame_or_eof(quiet, NULL)) {
      frame f = cli_frame(quiet);
      if (f.op == 9) quiet_pinged++;
      if (f.op == 8) {
        assert_int_equal(f.payload[0] << 8 | f.payload[1], 1001);
        quiet_closed = 1;
      }
      free(f.payload);
    }
    usleep(2000);
  }
  assert_true(quiet_pinged >= 1);
  assert_true(quiet_closed);
  assert_true(live_pongs >= 1);
  assert_int_equal(nt_node_metrics(g->node)->timeouts, 1);
  /* the live one is still served */
  cli_text(live, "{\"action\":\"heartbeat\"}");
  for (;;) {
    json_t *v = cli_json(live);
    int hb = !strcmp(jtype(v), "heartbeat");
    json_decref(v);
    if (hb) break;
  }
  cli_free(quiet);
  cli_free(live);
}

/* Stopping with clients still connected: they get 1001, then everything closes. */
static void test_stop_with_clients(void **state) {
  (void)state;
  cli *a = cli_open("acme", "alice", 0);
  cli_text(a, "{\"action\":\"joinRoom\",\"roomId\":\"lobby\"}");
  json_decref(cli_expect(a, "joined"));
  cli *h = cli_connect(0); /* a connection still in its HTTP phase */
  cli_write(h, "GET /ws HTTP/1.1\r\n", 18);
  pump_once();
  nt_node_stop(g->node);
  frame f = cli_frame(a);
  assert_int_equal(f.op, 8);
  assert_int_equal(f.payload[0] << 8 | f.payload[1], 1001);
  free(f.payload);
  /* teardown finishes the stop and checks the loop */
  cli_free(a);
  cli_free(h);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  nt_log_init(getenv("GLUE_DEBUG") ? NT_LOG_DEBUG : NT_LOG_ERROR + 1, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_upgrade_ok, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_concurrent_joins_each_pair_once, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_upgrade_401, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_http_other_paths, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_upgrade_403_origin, setup_origin, teardown_node),
      cmocka_unit_test_setup_teardown(test_text_and_fragments, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_ping_pong, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_close_echo, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_invalid_utf8, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_reserved_opcode_and_unmasked, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_oversize, setup_small, teardown_node),
      cmocka_unit_test_setup_teardown(test_actions, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_slow_consumer, setup_small, teardown_node),
      cmocka_unit_test_setup_teardown(test_rooms_claim, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_frames_after_upgrade_request, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_big_message, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_abrupt_disconnect, setup_default, teardown_node),
      cmocka_unit_test_setup_teardown(test_ping_idle_capacity, setup_liveness, teardown_node),
      cmocka_unit_test_setup_teardown(test_stop_with_clients, setup_default, teardown_node),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
