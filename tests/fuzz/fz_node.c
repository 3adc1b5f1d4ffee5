/* fz_node: in-process node, memory-transport clients and an RFC 6455 output checker. */
#include "fz_node.h"

#include <dlfcn.h>
#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "nt_chat.h"
#include "nt_log.h"
#include "nt_rand.h"
#include "nt_utf8.h"

#define FZ_SECRET "fuzz-node-secret-0123456789abcdef0123456789"

static uv_loop_t loop;
static nt_presence *pres;
static size_t base_conns; /* connections the target keeps between runs (fz_node_settled) */

/* ---------------------------------------------------------------- harness clocks ---- */

/* The node's monotonic time (libuv's loop time, timers) is virtual once a node started:
 * it stands still and moves only by fz_advance, so a run does not depend on how fast the
 * machine is and timers (pacing, sweeps) fire when a target says, not after real
 * milliseconds. CLOCK_REALTIME (token expiry, timestamps, libFuzzer's own clock) is real.
 * Defining clock_gettime here overrides the sanitizer's interceptor (a weak symbol). */
static int vclock_on;
static uint64_t vclock_ns; /* virtual monotonic time */
typedef int (*clock_fn)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts) {
  static clock_fn real;
  if (vclock_on && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE ||
                    id == CLOCK_MONOTONIC_RAW || id == CLOCK_BOOTTIME)) {
    ts->tv_sec = (time_t)(vclock_ns / 1000000000u);
    ts->tv_nsec = (long)(vclock_ns % 1000000000u);
    return 0;
  }
  if (!real && !(real = (clock_fn)dlsym(RTLD_NEXT, "clock_gettime"))) abort();
  return real(id, ts);
}

void fz_advance(uint64_t ms) { vclock_ns += ms * 1000000u; }

/* Every upgrade of a node target carries one of the harness's own tokens: HMAC-checking
 * the same token millions of times was ~40 % of fuzz_ws. Once libjwt has verified a token
 * with a key, the same (token, key) gets a copy of that result (fuzz_jwt fuzzes the
 * verification itself, without this). */
static int jwt_memo_on;
static char *memo_tok;
static unsigned char *memo_key;
static int memo_klen;
static jwt_t *memo_jwt;
typedef int (*decode_fn)(jwt_t **, const char *, const unsigned char *, int);

int jwt_decode(jwt_t **jwt, const char *token, const unsigned char *key, int key_len) {
  static decode_fn real;
  if (!real && !(real = (decode_fn)dlsym(RTLD_NEXT, "jwt_decode"))) abort();
  if (jwt_memo_on && memo_jwt && token && key_len == memo_klen && !strcmp(token, memo_tok) &&
      (!key_len || !memcmp(key, memo_key, (size_t)key_len))) {
    *jwt = jwt_dup(memo_jwt);
    return *jwt ? 0 : ENOMEM;
  }
  int rc = real(jwt, token, key, key_len);
  if (jwt_memo_on && !rc && *jwt && key_len > 0 && !memo_jwt) { /* the first one only */
    memo_tok = strdup(token);
    memo_key = malloc((size_t)key_len);
    memo_jwt = jwt_dup(*jwt);
    if (!memo_tok || !memo_key || !memo_jwt) abort();
    memcpy(memo_key, key, (size_t)key_len);
    memo_klen = key_len;
  }
  return rc;
}
/* One output buffer is recycled between clients: a fresh 64 KiB allocation per run costs
 * more than the run itself under ASan (page faults). */
static uint8_t *spare_out;
static size_t spare_cap;
static nt_config cfg;
static nt_node *node;

nt_node *fz_node_start(const char *const *extra) { return fz_node_start_history(extra, 0); }

nt_node *fz_node_start_history(const char *const *extra, int history) {
  if (node) return node;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  vclock_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
  vclock_on = 1;
  jwt_memo_on = 1;
  const char *argv[64] = {"natter-node", "--jwt-secret", FZ_SECRET, "--listen", "127.0.0.1:0",
                          "--api-listen", "127.0.0.1:0", "--node-id", "fuzz-node",
                          "--log-level", "error", "--admin-token", FZ_ADMIN_TOKEN};
  int argc = 13;
  for (const char *const *a = extra; a && *a && argc < 63; a++) argv[argc++] = *a;
  FILE *devnull = fopen("/dev/null", "w");
  if (uv_loop_init(&loop) || nt_config_parse(&cfg, argc, (char **)argv, devnull, stderr))
    abort();
  fclose(devnull);
  nt_log_init(NT_LOG_ERROR + 1, "fuzz-node"); /* silence: the fuzzer's output matters */
  node = nt_node_new(&loop, &cfg);
  if (!node) abort();
  nt_auth_cfg acfg = {.alg = "HS256", .secret = FZ_SECRET};
  nt_auth *auth = NULL;
  char err[256];
  if (nt_auth_new(&acfg, &auth, err, sizeof err)) abort();
  nt_bus_handler bh = nt_node_bus_handler(node);
  nt_presence_handler ph = nt_node_presence_handler(node);
  nt_bus *bus = nt_bus_mem_new(&loop, &bh);
  pres = nt_presence_mem_new(&loop, &ph);
  if (!bus || !pres) abort();
  bh.on_state(bh.ud, 1);
  nt_node_attach(node, bus, pres, auth);
  if (history) { /* as main.c builds it standalone */
    nt_hist_cfg hc = {.max_age_s = cfg.history_max_age_s,
                      .max_per_room = cfg.history_max_per_room,
                      .replicas = 1,
                      .max_bytes = cfg.history_max_bytes,
                      .max_msg_bytes = cfg.history_max_msg_bytes
                                           ? cfg.history_max_msg_bytes
                                           : cfg.max_message_bytes + 4096,
                      .tenant_bytes = cfg.history_tenant_bytes};
    nt_history *h = nt_history_mem_new(&loop, bus, &hc, NULL);
    if (!h || nt_node_attach_history(node, h)) abort();
  }
  if (nt_node_start(node)) abort();
  return node;
}

nt_presence *fz_presence(void) { return pres; }

void fz_node_keep(void) { base_conns = nt_node_chat(node)->nconns; }

void fz_node_settled(void) {
  /* A connection closed while its request waits (an API call to another node, a bus
   * request) is freed when that ends, at the latest at its timeout: the virtual clock
   * goes forward (50 ms a turn, up to 2 minutes) as real time would. */
  for (int i = 0; i < 2400 + 8 && nt_node_chat(node)->nconns > base_conns; i++) {
    if (i >= 8) fz_advance(50);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  /* Every connection of the run is freed (the persistent ones of fz_node_keep stay). */
  if (nt_node_chat(node)->nconns > base_conns) {
    fprintf(stderr, "fz_node_settled: %zu connections allocated, %zu kept\n", nt_node_chat(node)->nconns, base_conns);
    abort();
  }
}

static int client_open(fz_client *cl, int api) {
  memset(cl, 0, sizeof *cl);
  if (spare_out) { /* the transport appends to it */
    cl->peer.out = spare_out;
    cl->peer.out_cap = spare_cap;
    spare_out = NULL;
  }
  cl->open = 1;
  cl->conn = nt_node_connect_mem(node, api, &cl->peer);
  fz_sync(cl);
  return 0;
}

int fz_client_open(fz_client *cl) { return client_open(cl, 0); }
int fz_client_open_api(fz_client *cl) { return client_open(cl, 1); }

/* Keeps the output buffer of a released client for the next one. */
static void release(fz_client *cl) {
  if (!spare_out && cl->peer.out_cap <= (1u << 20)) {
    spare_out = cl->peer.out;
    spare_cap = cl->peer.out_cap;
    cl->peer.out = NULL;
  }
  nt_mem_peer_free(&cl->peer); /* a connection still alive is reset */
  memset(cl, 0, sizeof *cl);
}

size_t fz_member_connect(fz_client *m, const char *user, const char *room,
                         char id[NT_CONN_ID_LEN + 1]) {
  if (m->open) release(m);
  nt_node_fixed_ids(node); /* the same ids every run: reproducible inputs */
  if (fz_client_open(m)) abort();
  size_t rl;
  char *req = fz_upgrade_request("t1", user, &rl);
  fz_client_write(m, req, rl);
  free(req);
  char join[256];
  int jl = snprintf(join, sizeof join,
                    "{\"action\":\"joinRoom\",\"roomId\":\"%s\",\"requestId\":1}", room);
  uint8_t fr[sizeof join + 14];
  fz_client_write(m, fr, fz_frame(fr, 1, 1, join, (size_t)jl));
  for (int i = 0; i < 100; i++) {
    if (m->out && memmem(m->out, m->out_len, "\"joined\"", 8)) break;
    fz_pump(m, 1);
  }
  if (!m->out || !memmem(m->out, m->out_len, "\"joined\"", 8)) abort();
  snprintf(id, NT_CONN_ID_LEN + 1, "%s", m->conn->id);
  return fz_check_output(m->out, m->out_len);
}

void fz_sync(fz_client *cl) {
  cl->out = cl->peer.out;
  cl->out_len = cl->peer.out_len;
  cl->eof = cl->peer.closed || !cl->peer.conn;
  if (!cl->hold) nt_mem_peer_consume(&cl->peer); /* a reader that reads */
}

void fz_client_read(fz_client *cl) {
  fz_sync(cl);
  nt_mem_peer_consume(&cl->peer);
}

void fz_pump(fz_client *cl, int rounds) {
  for (int i = 0; i < rounds; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (cl) fz_sync(cl);
  }
}

void fz_client_write(fz_client *cl, const void *data, size_t len) {
  nt_mem_peer_write(&cl->peer, data, len); /* read when the connection reads */
  fz_sync(cl);
}

int fz_client_alive(const fz_client *cl) { return cl->peer.conn != NULL; }

void fz_client_finish(fz_client *cl) {
  cl->hold = 0; /* reads what is left, as a peer closing its end still reads */
  cl->peer.window = 0;
  fz_sync(cl);
  nt_mem_peer_shutdown(&cl->peer);
  for (int i = 0; i < 200 && cl->peer.conn; i++) fz_pump(cl, 1);
  /* Still there: a connection waiting for something only time ends (the sweep's close
   * deadline). Closing it is what the sweep would do. */
  if (cl->peer.conn) nt_conn_abort(cl->peer.conn, NT_CLOSE_TIMEOUT);
  fz_pump(cl, 4);
  const char *dump = getenv("FZ_DUMP"); /* debugging a crash: what the node sent */
  if (dump) {
    FILE *f = fopen(dump, "wb");
    if (f) {
      fwrite(cl->out, 1, cl->out_len, f);
      fclose(f);
    }
  }
  fz_check_output(cl->out, cl->out_len);
  release(cl);
}

/* ---------------------------------------------------------------- requests ---- */

char *fz_upgrade_request(const char *tenant, const char *user, size_t *len) {
  return fz_upgrade_request_ext(tenant, user, NULL, len);
}

char *fz_upgrade_request_ext(const char *tenant, const char *user, const char *extensions,
                             size_t *len) {
  jwt_t *j = NULL;
  char claims[256];
  snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"tenant\":\"%s\",\"exp\":%ld}", user, tenant,
           (long)time(NULL) + 86400 * 365);
  if (jwt_new(&j) || jwt_add_grants_json(j, claims) ||
      jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)FZ_SECRET, (int)strlen(FZ_SECRET)))
    abort();
  char *tok = jwt_encode_str(j);
  jwt_free(j);
  char *req = malloc(strlen(tok) + 256 + (extensions ? strlen(extensions) : 0));
  int n = sprintf(req,
                  "GET /ws?token=%s HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                  tok, extensions ? "Sec-WebSocket-Extensions: " : "",
                  extensions ? extensions : "", extensions ? "\r\n" : "");
  free(tok);
  *len = (size_t)n;
  return req;
}

size_t fz_frame(uint8_t *out, int fin, int opcode, const void *payload, size_t len) {
  static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  size_t h = 0;
  out[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[h++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    out[h++] = 0x80 | 126;
    out[h++] = (uint8_t)(len >> 8);
    out[h++] = (uint8_t)len;
  } else {
    out[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(out + h, key, 4);
  h += 4;
  const uint8_t *p = payload;
  for (size_t i = 0; i < len; i++) out[h + i] = p[i] ^ key[i & 3];
  return h + len;
}

uint8_t *fz_structured(const uint8_t *d, size_t n, size_t *out_len) {
  uint8_t *out = malloc(n * 2 + 64), *o = out;
  if (!out) return NULL;
  size_t i = 0;
  while (i + 3 <= n) {
    uint8_t b0 = d[i];
    size_t len = ((size_t)d[i + 1] << 8) | d[i + 2];
    i += 3;
    if (len > n - i) len = n - i;
    size_t fl = fz_frame(o, b0 & 0x80, b0 & 0x0f, d + i, len);
    o[0] |= b0 & 0x70; /* RSV bits as given */
    o += fl;
    i += len;
  }
  *out_len = (size_t)(o - out);
  return out;
}

/* ---------------------------------------------------------------- oracle ------ */

static int close_code_ok(unsigned code) {
  return (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) ||
         (code >= 3000 && code <= 4999);
}

/* A compressed text message must inflate to valid UTF-8. Checked only when the server
 * said server_no_context_takeover (each message inflates on its own). */
static int inflated_utf8(const uint8_t *p, size_t n, int flags) {
  if (!(flags & FZ_PMD_NOCTX)) return 1;
  static uint8_t out[1 << 20];
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, -15) != Z_OK) abort();
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  z.next_in = (uint8_t *)p;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = sizeof out;
  int r = inflate(&z, Z_SYNC_FLUSH);
  if (r == Z_OK || r == Z_BUF_ERROR) {
    z.next_in = (uint8_t *)tail;
    z.avail_in = 4;
    r = inflate(&z, Z_SYNC_FLUSH);
  }
  size_t got = sizeof out - z.avail_out;
  inflateEnd(&z);
  if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END) return 0; /* corrupt deflate */
  return z.avail_out == 0 || nt_utf8_valid(out, got); /* larger than 1 MiB: not judged */
}

/* *closed: 0 open, 1 close seen; bit 2 (FZ_PMD) says permessage-deflate was negotiated. */
size_t fz_check_frames(const uint8_t *buf, size_t len, int *closed) {
  size_t off = 0;
  while (off < len) {
    if (len - off < 2) break; /* incomplete: checked with the bytes that follow */
    uint8_t b0 = buf[off], b1 = buf[off + 1];
    size_t h = 2;
    uint64_t n = b1 & 0x7f;
    if (b1 & 0x80) abort();           /* a server never masks (RFC 6455 5.1) */
    int op = b0 & 0x0f;
    /* RSV2/3 never; RSV1 only on the first frame of a message, with deflate negotiated */
    if ((b0 & 0x30) || ((b0 & 0x40) && (!(*closed & FZ_PMD) || op == 0 || op >= 8))) abort();
    if (n == 126) {
      if (len - off < 4) break;
      n = ((uint64_t)buf[off + 2] << 8) | buf[off + 3];
      if (n < 126) abort();           /* minimal length encoding (5.2) */
      h = 4;
    } else if (n == 127) {
      if (len - off < 10) break;
      n = 0;
      for (int i = 0; i < 8; i++) n = (n << 8) | buf[off + 2 + i];
      if (n < 65536 || n >> 63) abort();
      h = 10;
    }
    if (len - off - h < n) break;
    const uint8_t *p = buf + off + h;
    if (*closed & 1) abort();         /* nothing after our close frame (5.5.1) */
    switch (op) {
    case 0x1:
      if (!(b0 & 0x80)) abort();      /* the node sends whole messages */
      if (b0 & 0x40 ? !inflated_utf8(p, n, *closed) : !nt_utf8_valid(p, n)) abort();
      break;
    case 0x2:
      break;
    case 0x8:
      if (!(b0 & 0x80) || n > 125 || n == 1) abort();
      if (n >= 2 && !close_code_ok(((unsigned)p[0] << 8) | p[1])) abort();
      if (n > 2 && !nt_utf8_valid(p + 2, n - 2)) abort();
      *closed |= 1;
      break;
    case 0x9:
    case 0xa:
      if (!(b0 & 0x80) || n > 125) abort();
      break;
    default:
      abort();
    }
    off += h + n;
  }
  return off;
}

size_t fz_check_output(const uint8_t *buf, size_t len) {
  if (!len) return 0; /* nothing written (buf may be NULL) */
  const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
  if (!end) return 0; /* nothing, or a response cut short by a close */
  if (len < 12 || memcmp(buf, "HTTP/1.1 ", 9)) abort();
  size_t head = (size_t)(end - buf) + 4;
  if (memcmp(buf + 9, "101", 3)) return len; /* a refusal: plain HTTP, nothing follows */
  int closed = 0;
  const uint8_t *ext = memmem(buf, head, "permessage-deflate", 18);
  if (ext) closed |= FZ_PMD;
  if (ext && memmem(buf, head, "server_no_context_takeover", 26)) closed |= FZ_PMD_NOCTX;
  return head + fz_check_frames(buf + head, len - head, &closed);
}
