/* natter-bench: WebSocket load generator for natter (protocol v1) and Socket.IO v4.
 *
 * One libuv loop per process. Frames are parsed in place from one shared read buffer per
 * process (a connection keeps a small carry buffer only for a frame split across reads);
 * the receive hot path is a header decode, a prefix compare and a short scan for the
 * send timestamp the publisher put in the message ("bt"), no JSON library.
 *
 * Phases: connect (rate-limited, bounded concurrency, each connection with its own HS256
 * JWT) and join; then, from a common start time: warm-up, measure, drain. Messages whose
 * send timestamp falls in the measure window are the ones counted: latency = receive time
 * - send time; delivery ratio = delivered / (sum over rooms of sent x joined members).
 * With --procs N the work is split over N forked processes (each < 20,000 open files);
 * the parent starts them together and merges their histograms and counters.
 * The result is one JSON line on stdout; progress goes to stderr. See --help. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nb_hist.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE (256 * 1024)
#define MAX_URLS 16
#define MAX_FRAME (16u << 20)
#define HTTP_MAX 16384

enum { PROTO_NATTER = 0, PROTO_SIO = 1 };
enum { ST_IDLE = 0, ST_CONNECTING, ST_HTTP, ST_WS, ST_READY, ST_DEAD };

/* ------------------------------------------------------------------ options ---- */

typedef struct url {
  char host[64];
  int port;
  char path[256];
  struct sockaddr_in addr;
} url;

static struct opts {
  int proto;
  url urls[MAX_URLS];
  int nurls;
  long conns;
  int src_addrs;
  double connect_rate;
  int concurrency;
  double connect_timeout;
  const char *secret;
  const char *tenant;
  long rooms;
  int rooms_per_conn;
  int spread;
  long publishers;
  double rate; /* total msg/s; 0: closed loop */
  int window;
  int ack_all;
  int payload;
  double warmup, duration, drain;
  double loss_timeout;
  int procs;
  int realtime;
  const char *ready_file;
  const char *label;
  const char *blast;
  const char *user_agent; /* sent as User-Agent, or no such header */
  int eager;              /* join right after the 101, before welcome (a browser's way) */
  int quiet;
  long pub_base;          /* publishers 0..pub_base-1 are connections 0..pub_base-1 */
  int weights[MAX_URLS];  /* --weights: share of a room's members per URL (0: none) */
  int wsum;
  long big_rooms, big_size; /* --big-rooms N --big-room-size M: the last N*M connections */
  int reconnect;          /* on close, reconnect to another URL and rejoin with since */
  int no_since;           /* --no-since: rejoin without since (a client without resume) */
  double reconnect_jitter; /* s: random delay before a reconnect (0: at once) */
  long kill_pid;          /* --kill-pid: signal this process after the measure window */
  int kill_signal;
  double kill_after;      /* s after the measure window ends */
  double idle;            /* s of silence between everybody ready and the start */
} O = {
    .proto = PROTO_NATTER,
    .conns = 100,
    .src_addrs = -1,
    .concurrency = 256,
    .connect_timeout = 60,
    .secret = "bench-secret-0123456789abcdef0123456789", /* HS256: >= 32 bytes */
    .tenant = "bench",
    .rooms_per_conn = 1,
    .spread = 0,
    .window = 8,
    .ack_all = -1,
    .payload = 100,
    .warmup = 2,
    .duration = 5,
    .drain = 2,
    .loss_timeout = 3,
    .procs = 1,
    .kill_signal = SIGKILL,
    .kill_after = 1,
};

/* ------------------------------------------------------------------ state ------ */

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uint32_t idx;      /* global connection index */
  uint8_t state;
  uint8_t url;
  uint8_t closing;
  uint8_t pending;   /* counted in G.pending */
  uint8_t joins_sent; /* send_joins ran (once per connection) */
  uint16_t joins;    /* joins not yet confirmed */
  int32_t pub;       /* global publisher id when this connection publishes, else -1 */
  uint8_t *carry;
  uint32_t clen, ccap;
  uint64_t t0;
  uint8_t mask[4];
  /* --reconnect */
  uint8_t reconnecting; /* dropped after being ready, not rejoined yet */
  uint8_t dropped;      /* dropped at least once: not part of the reference */
  uint8_t dead_url;     /* the URL it was on when it dropped */
  uint8_t attempts;     /* reconnect attempts since the drop */
  uint64_t t_drop;
  uint64_t t_up;        /* the last attempt's 101 */
  uint64_t due;         /* jittered reconnect time */
  uint64_t *rx;         /* (k << 56 | seq) received after the first drop */
  uint32_t nrx, crx;
} conn;

/* Per room: the sorted set of seqs received by connections that never dropped. */
typedef struct seqset {
  uint64_t *v;
  uint32_t n, cap;
} seqset;

typedef struct slot {
  uint64_t seq;
  uint64_t t;
  uint32_t remaining;
  uint8_t used;
} slot;

typedef struct pub {
  conn *c;           /* NULL when another process owns this publisher */
  uint32_t room;
  uint64_t seq;      /* next sequence number */
  uint64_t sent;
  uint32_t inflight;
  slot *slots;
} pub;

/* Everything a worker reports; merged by adding (times: min/max). */
typedef struct res {
  uint64_t conns, started, ready, failed, conn_errors, rej503, rej401, rej_other;
  uint64_t closed_after_ready;
  uint64_t sent, sent_win, delivered, expected, rx_msgs, rx_win, rx_frames, rx_bytes;
  uint64_t acks, presence, errors, other, timeouts, late;
  /* --reconnect: drops, rejoins and the message accounting (see acct_finish) */
  uint64_t dropped, rejoined, not_back, reconnect_attempts, reconnect_503, reconnect_refused;
  uint64_t recovered_true, recovered_false, no_since, no_seq;
  uint64_t acct_expected, acct_received, lost, duplicated, out_of_order, extra;
  uint64_t lost_recovered, lost_not_recovered; /* lost, by the rejoin's `recovered` */
  uint64_t ref_msgs, stable_dup, stable_lost, rx_after_kill;
  uint64_t t_first_connect, t_last_ready;
  uint64_t t_first_drop, t_last_rejoin;
  double cpu_measure_s;
  double measure_s;
  nb_hist lat, hs, back, lat_storm;
  nb_hist re_dial, re_join; /* reconnects: dial → 101, 101 → every room joined */
  nb_hist ack;              /* natter: sendMessage → its ack (history on: stored) */
} res;

static struct gen {
  uv_loop_t *loop;
  long lo, hi, nlocal;
  conn *conns;
  long next;          /* next local connection to start */
  long pending;       /* started, not yet ready or failed */
  long done;          /* ready + failed */
  uint64_t t_cstart;
  uv_timer_t ctimer, ptimer, stimer, ltimer;
  int connect_finished;
  uint64_t t_go, t_ws, t_we, t_end;
  int sending;
  pub *pubs;          /* indexed by global publisher id */
  uint64_t *joined;   /* per room: joined local members */
  uint64_t *sent_win; /* per room: messages sent in the measure window */
  uint8_t *rbuf;
  uint64_t now;
  int st_fd, go_fd;   /* pipes to the parent, -1 when single-process */
  uv_pipe_t gopipe;
  uint8_t gobuf[8];
  size_t golen;
  struct rusage ru_ws;
  char pad[512];      /* payload padding */
  /* --reconnect */
  seqset *ref;        /* per room */
  uint64_t *last;     /* per local connection and room slot k: the last seq seen */
  uint64_t *since;    /* the same, frozen at the first drop */
  uint32_t *cnt;      /* the same: messages received while it never dropped */
  uint8_t *rec;       /* the same: the last rejoin answered recovered true (1) / false (2) */
  uint64_t t_kill, t_send_end;
  uv_timer_t ktimer, rtimer;
  conn **rq;          /* connections waiting for their (jittered or retry) reconnect */
  long nrq;
  res r;
} G;

/* ------------------------------------------------------------------ helpers ---- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(O.realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void logf_(const char *fmt, ...) {
  if (O.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "natter-bench[%d]: ", (int)getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "natter-bench: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static size_t b64url(const uint8_t *in, size_t n, char *out) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    out[o++] = a[(v >> 6) & 63];
    out[o++] = a[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    out[o++] = a[(v >> 6) & 63];
  }
  out[o] = 0;
  return o;
}

/* HS256 token for user u<idx> of the bench tenant, valid for an hour. */
static size_t mint_jwt(uint32_t idx, char *out, size_t cap) {
  static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char claims[256];
  int cl = snprintf(claims, sizeof claims, "{\"sub\":\"u%u\",\"tenant\":\"%s\",\"exp\":%lld}", idx,
                    O.tenant, (long long)time(NULL) + 3600);
  if (cap < 512) return 0;
  size_t n = b64url((const uint8_t *)hdr, sizeof hdr - 1, out);
  out[n++] = '.';
  n += b64url((const uint8_t *)claims, (size_t)cl, out + n);
  uint8_t mac[32];
  unsigned mlen = 0;
  HMAC(EVP_sha256(), O.secret, (int)strlen(O.secret), (const uint8_t *)out, n, mac, &mlen);
  out[n++] = '.';
  n += b64url(mac, mlen, out + n);
  return n;
}

/* Rooms r0..r(rooms-1), then the big rooms r(rooms)..r(rooms+big_rooms-1). */
static long nrooms_all(void) { return O.rooms > 0 ? O.rooms + O.big_rooms : 0; }

/* The last big_rooms * big_size connections are the members of the big rooms. */
static int is_big(long idx) {
  return O.big_rooms > 0 && idx >= O.conns - O.big_rooms * O.big_size;
}

/* The publisher id of a connection, or -1: connections 0..P-1 publish to their room and,
 * with big rooms, the last big_rooms connections (one per big room) too. */
static long pub_of(long idx) {
  if (idx < O.pub_base) return idx;
  if (O.publishers > O.pub_base && idx >= O.conns - O.big_rooms)
    return O.pub_base + (idx - (O.conns - O.big_rooms));
  return -1;
}

static long room_of(long idx, int k) {
  if (O.rooms <= 0) return -1;
  if (is_big(idx)) return O.rooms + idx % O.big_rooms;
  long step = O.rooms_per_conn > 1 ? O.rooms / O.rooms_per_conn : 0;
  if (step == 0) step = 1;
  return (idx + (long)k * step) % O.rooms;
}

/* The node a connection goes to: a room's members are spread over O.spread nodes. */
static int url_of(long idx) {
  if (O.nurls == 1) return 0;
  if (O.wsum > 0) { /* --weights: the member's rank in its room picks the URL */
    long rank = O.rooms <= 0 ? idx : is_big(idx) ? idx / O.big_rooms : idx / O.rooms;
    long sl = rank % O.wsum;
    for (int i = 0; i < O.nurls; i++) {
      if (sl < O.weights[i]) return i;
      sl -= O.weights[i];
    }
    return 0;
  }
  if (O.rooms <= 0 || is_big(idx)) return (int)(idx % O.nurls);
  long r = idx % O.rooms, k = idx / O.rooms;
  return (int)((r + k % O.spread) % O.nurls);
}

/* ------------------------------------------------------------------ writing ---- */

typedef struct wreq {
  uv_write_t req;
  uint8_t data[];
} wreq;

static void on_written(uv_write_t *req, int status) { free(req); }

static void conn_close(conn *c);

static void conn_write(conn *c, const void *data, size_t len) {
  if (c->closing) return;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)len) return;
  if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
  if (r < 0) {
    conn_close(c);
    return;
  }
  size_t rest = len - (size_t)r;
  wreq *w = malloc(sizeof *w + rest);
  if (!w) die("out of memory");
  memcpy(w->data, (const uint8_t *)data + r, rest);
  b = uv_buf_init((char *)w->data, (unsigned)rest);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
    free(w);
    conn_close(c);
  }
}

/* Sends one masked client frame. */
static void ws_send(conn *c, int opcode, const void *payload, size_t len) {
  uint8_t stack[2048], *f = stack;
  size_t need = len + 14;
  if (need > sizeof stack && !(f = malloc(need))) die("out of memory");
  size_t h = 0;
  f[h++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    f[h++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    f[h++] = 0x80 | 126;
    f[h++] = (uint8_t)(len >> 8);
    f[h++] = (uint8_t)len;
  } else {
    f[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(f + h, c->mask, 4);
  h += 4;
  const uint8_t *p = payload;
  for (size_t i = 0; i < len; i++) f[h + i] = p[i] ^ c->mask[i & 3];
  conn_write(c, f, h + len);
  if (f != stack) free(f);
}

static void ws_text(conn *c, const char *s, size_t len) { ws_send(c, 0x1, s, len); }

/* ------------------------------------------------------------------ lifecycle -- */

static void check_connect_done(void);
static void start_more(void);
static void reconnect_later(conn *c, double delay_s);
static void dial(conn *c);
static int phase;

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  free(c->carry);
  c->carry = NULL;
  c->clen = c->ccap = 0;
  if (c->reconnecting) {
    /* the first attempt goes out at once (or after the jitter); a failed one is retried
     * on the next URL after 100 ms */
    double d = c->attempts == 0 ? (O.reconnect_jitter > 0 ? O.reconnect_jitter * drand48() : 0)
                                : 0.1;
    reconnect_later(c, d);
  }
}

/* --reconnect: the URL of attempt a after a drop: the others in turn, from a place that
 * depends on the connection (so the dead node's clients spread over the survivors). */
static int next_url(conn *c) {
  if (O.nurls == 1) return 0;
  int n = O.nurls - 1, j = (int)((c->idx + c->attempts) % (uint32_t)n);
  return j >= c->dead_url ? j + 1 : j;
}

static void reconnect_now(conn *c) {
  if (phase >= 4) return;
  c->url = (uint8_t)next_url(c);
  c->attempts++;
  G.r.reconnect_attempts++;
  c->t0 = now_ns();
  c->closing = 0;
  c->joins_sent = 0;
  c->joins = 0;
  dial(c);
}

static void on_rtimer(uv_timer_t *t) {
  uint64_t now = now_ns();
  long keep = 0;
  for (long i = 0; i < G.nrq; i++) {
    conn *c = G.rq[i];
    if (c->due <= now) reconnect_now(c);
    else G.rq[keep++] = c;
  }
  G.nrq = keep;
  if (!G.nrq) uv_timer_stop(&G.rtimer);
}

static void reconnect_later(conn *c, double delay_s) {
  if (phase >= 4) return;
  if (delay_s <= 0) {
    reconnect_now(c);
    return;
  }
  c->due = now_ns() + (uint64_t)(delay_s * 1e9);
  G.rq[G.nrq++] = c;
  if (!uv_is_active((uv_handle_t *)&G.rtimer)) uv_timer_start(&G.rtimer, on_rtimer, 1, 1);
}

static void conn_fail(conn *c) {
  if (c->pending) {
    c->pending = 0;
    G.pending--;
    G.r.failed++;
    G.done++;
    check_connect_done();
    start_more();
  }
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->state == ST_READY) {
    G.r.closed_after_ready++;
    if (O.reconnect && phase >= 1 && phase < 4) { /* dropped: come back and rejoin */
      uint64_t t = now_ns();
      c->reconnecting = 1;
      c->attempts = 0;
      c->dead_url = c->url;
      c->t_drop = t;
      if (!c->dropped) {
        c->dropped = 1;
        G.r.dropped++;
        memcpy(&G.since[(c->idx - G.lo) * (size_t)O.rooms_per_conn],
               &G.last[(c->idx - G.lo) * (size_t)O.rooms_per_conn],
               (size_t)O.rooms_per_conn * sizeof *G.since);
      }
      if (!G.r.t_first_drop || t < G.r.t_first_drop) G.r.t_first_drop = t;
    }
  }
  conn_fail(c);
  c->state = ST_DEAD;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_ready(conn *c) {
  if (c->reconnecting) { /* back: every room rejoined */
    uint64_t t = now_ns();
    c->state = ST_READY;
    c->reconnecting = 0;
    G.r.rejoined++;
    nb_hist_record(&G.r.re_join, t - c->t_up);
    nb_hist_record(&G.r.back, t - c->t_drop);
    if (t > G.r.t_last_rejoin) G.r.t_last_rejoin = t;
    return;
  }
  c->state = ST_READY;
  if (c->pending) {
    c->pending = 0;
    G.pending--;
  }
  G.r.ready++;
  G.done++;
  uint64_t t = now_ns();
  nb_hist_record(&G.r.hs, t - c->t0);
  G.r.t_last_ready = t;
  int nk = is_big(c->idx) ? 1 : O.rooms_per_conn;
  for (int k = 0; k < nk && O.rooms > 0; k++) G.joined[room_of(c->idx, k)]++;
  check_connect_done();
  start_more();
}

static void send_joins(conn *c) {
  if (c->joins_sent) return;
  c->joins_sent = 1;
  if (O.rooms <= 0 || O.rooms_per_conn <= 0) {
    conn_ready(c);
    return;
  }
  int nk = is_big(c->idx) ? 1 : O.rooms_per_conn;
  c->joins = (uint16_t)nk;
  char buf[160];
  for (int k = 0; k < nk; k++) {
    long r = room_of(c->idx, k);
    uint64_t since = c->reconnecting && !O.no_since
                         ? G.last[(c->idx - G.lo) * (size_t)O.rooms_per_conn + k] : 0;
    if (c->reconnecting && !since && !O.no_since) G.r.no_since++;
    int n = O.proto != PROTO_NATTER
                ? snprintf(buf, sizeof buf, "42[\"join\",\"r%ld\"]", r)
            : since ? snprintf(buf, sizeof buf,
                               "{\"action\":\"joinRoom\",\"roomId\":\"r%ld\",\"since\":%" PRIu64 "}",
                               r, since)
                    : snprintf(buf, sizeof buf, "{\"action\":\"joinRoom\",\"roomId\":\"r%ld\"}", r);
    ws_text(c, buf, (size_t)n);
  }
}

/* ------------------------------------------------------------------ messages --- */

static void pub_pump(pub *p);

static void pub_complete(pub *p, uint64_t seq) {
  slot *s = &p->slots[seq % (uint64_t)O.window];
  if (!s->used || s->seq != seq) return;
  if (O.ack_all && s->remaining > 1) {
    s->remaining--;
    return;
  }
  s->used = 0;
  p->inflight--;
  pub_pump(p);
}

static void pub_send(pub *p) {
  conn *c = p->c;
  uint64_t t = now_ns();
  uint64_t seq = p->seq++;
  char msg[1024];
  int hn = O.proto == PROTO_NATTER
               ? snprintf(msg, sizeof msg,
                          "{\"action\":\"sendMessage\",\"roomId\":\"r%u\",\"message\":", p->room)
               : snprintf(msg, sizeof msg, "42[\"msg\",\"r%u\",", p->room);
  int bn = snprintf(msg + hn, sizeof msg - (size_t)hn,
                    "{\"bt\":%" PRIu64 ",\"p\":%d,\"s\":%" PRIu64 ",\"x\":\"", t, c->pub, seq);
  int used = bn + 2; /* plus closing "} */
  int padn = O.payload - used;
  if (padn < 0) padn = 0;
  if (padn > (int)sizeof G.pad) padn = (int)sizeof G.pad;
  size_t n = (size_t)hn + (size_t)bn;
  memcpy(msg + n, G.pad, (size_t)padn);
  n += (size_t)padn;
  msg[n++] = '"';
  msg[n++] = '}';
  if (O.proto == PROTO_NATTER) /* the ack echoes it: sendMessage → ack latency */
    n += (size_t)snprintf(msg + n, sizeof msg - n, ",\"requestId\":\"a%" PRIu64 "\"", t);
  msg[n++] = O.proto == PROTO_NATTER ? '}' : ']';
  if (O.rate <= 0) {
    slot *s = &p->slots[seq % (uint64_t)O.window];
    s->used = 1;
    s->seq = seq;
    s->t = t;
    s->remaining = O.ack_all ? (uint32_t)G.joined[p->room] : 1;
    if (s->remaining == 0) s->remaining = 1;
    p->inflight++;
  }
  p->sent++;
  G.r.sent++;
  if (t >= G.t_ws && t < G.t_we) {
    G.r.sent_win++;
    G.sent_win[p->room]++;
  }
  ws_text(c, msg, n);
}

static void pub_pump(pub *p) {
  if (!G.sending || !p->c || p->c->state != ST_READY) return;
  while (p->inflight < (uint32_t)O.window && !p->slots[p->seq % (uint64_t)O.window].used) {
    pub_send(p);
    if (!G.sending || p->c->state != ST_READY) return;
  }
}

static inline uint64_t parse_u64(const uint8_t **pp, const uint8_t *end) {
  const uint8_t *p = *pp;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
  *pp = p;
  return v;
}

/* Adds seq to a room's reference set (kept sorted; receptions arrive nearly in order). */
static void seqset_add(seqset *s, uint64_t seq) {
  if (s->n && s->v[s->n - 1] == seq) return;
  uint32_t at = s->n;
  if (s->n && s->v[s->n - 1] > seq) {
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (s->v[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    if (lo < s->n && s->v[lo] == seq) return;
    at = lo;
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 64;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    if (!s->v) die("out of memory");
  }
  memmove(s->v + at + 1, s->v + at, (s->n - at) * sizeof *s->v);
  s->v[at] = seq;
  s->n++;
}

/* --reconnect: the room seq of a natter message frame (its `seq` is the last field). */
static void account(conn *c, const uint8_t *p, size_t len) {
  size_t tail = len > 40 ? 40 : len;
  const uint8_t *q = memmem(p + len - tail, tail, ",\"seq\":", 7);
  if (!q) {
    G.r.no_seq++;
    return;
  }
  q += 7;
  uint64_t seq = parse_u64(&q, p + len);
  int k = 0;
  if (O.rooms_per_conn > 1 && !is_big(c->idx)) {
    const uint8_t *rq = memmem(p, len, "\"roomId\":\"r", 11);
    if (!rq) return;
    rq += 11;
    long room = (long)parse_u64(&rq, p + len);
    for (k = 0; k < O.rooms_per_conn && room_of(c->idx, k) != room; k++) {}
    if (k == O.rooms_per_conn) return;
  }
  uint64_t *last = &G.last[(c->idx - G.lo) * (size_t)O.rooms_per_conn + k];
  if (G.t_kill && G.now >= G.t_kill) G.r.rx_after_kill++;
  if (!c->dropped) {
    G.cnt[(c->idx - G.lo) * (size_t)O.rooms_per_conn + k]++;
    if (seq <= *last) G.r.stable_dup++;
    seqset_add(&G.ref[room_of(c->idx, k)], seq);
  } else {
    if (seq <= *last) G.r.out_of_order++;
    if (c->nrx == c->crx) {
      c->crx = c->crx ? c->crx * 2 : 16;
      c->rx = realloc(c->rx, c->crx * sizeof *c->rx);
      if (!c->rx) die("out of memory");
    }
    c->rx[c->nrx++] = (uint64_t)k << 56 | seq;
  }
  if (seq > *last) *last = seq;
}

/* A message frame (natter `message`, Socket.IO `msg` event) from any publisher. */
static void on_message(conn *c, const uint8_t *p, size_t len) {
  G.r.rx_msgs++;
  if (O.reconnect && O.proto == PROTO_NATTER) account(c, p, len);
  uint64_t now = G.now;
  if (now >= G.t_ws && now < G.t_we) G.r.rx_win++;
  const uint8_t *end = p + len;
  const uint8_t *q = memmem(p, len, "{\"bt\":", 6);
  if (!q) return;
  q += 6;
  uint64_t bt = parse_u64(&q, end);
  if (bt >= G.t_ws && bt < G.t_we) {
    G.r.delivered++;
    nb_hist_record(&G.r.lat, now > bt ? now - bt : 0);
    if (now >= G.t_end) G.r.late++;
  } else if (G.t_kill && bt >= G.t_kill && !c->dropped) {
    nb_hist_record(&G.r.lat_storm, now > bt ? now - bt : 0); /* live path during the storm */
  }
  if (O.rate > 0) return;
  if (end - q < 6 || memcmp(q, ",\"p\":", 5) != 0) return;
  q += 5;
  uint64_t pid = parse_u64(&q, end);
  if (end - q < 6 || memcmp(q, ",\"s\":", 5) != 0) return;
  q += 5;
  uint64_t seq = parse_u64(&q, end);
  if (pid >= (uint64_t)O.publishers) return;
  pub *pb = &G.pubs[pid];
  if (!pb->c) return;
  if (!O.ack_all && pb->c != c) return;
  pub_complete(pb, seq);
}

static void on_text_natter(conn *c, const uint8_t *p, size_t len) {
  /* every server frame starts with {"type":" */
  if (len < 12 || memcmp(p, "{\"type\":\"", 9) != 0) {
    G.r.other++;
    return;
  }
  const uint8_t *t = p + 9;
  switch (t[0]) {
  case 'm':
    if (len >= 17 && memcmp(t, "message\"", 8) == 0) {
      on_message(c, p, len);
      return;
    }
    break;
  case 'a': {
    G.r.acks++;
    const uint8_t *rq = memmem(p, len, "\"requestId\":\"a", 14);
    if (!rq) return;
    rq += 14;
    uint64_t t0 = parse_u64(&rq, p + len), now = now_ns();
    if (t0 >= G.t_ws && t0 < G.t_we) nb_hist_record(&G.r.ack, now > t0 ? now - t0 : 0);
    return;
  }
  case 'p': G.r.presence++; return;
  case 'w':
    if (c->state == ST_WS) send_joins(c);
    return;
  case 'j':
    if (c->reconnecting && c->state == ST_WS) {
      int rv = memmem(p, len, "\"recovered\":true", 16) ? 1
               : memmem(p, len, "\"recovered\":false", 17) ? 2 : 0;
      if (rv == 1) G.r.recovered_true++;
      else if (rv == 2) G.r.recovered_false++;
      int k = 0;
      if (O.rooms_per_conn > 1 && !is_big(c->idx)) { /* which of its rooms */
        const uint8_t *rq = memmem(p, len, "\"roomId\":\"r", 11);
        long room = rq ? (rq += 11, (long)parse_u64(&rq, p + len)) : -1;
        for (k = 0; k < O.rooms_per_conn && room_of(c->idx, k) != room; k++) {}
      }
      if (rv && k < O.rooms_per_conn) G.rec[(c->idx - G.lo) * (size_t)O.rooms_per_conn + k] = (uint8_t)rv;
    }
    if (c->state == ST_WS && c->joins && --c->joins == 0) conn_ready(c);
    return;
  case 'e':
    if (G.r.errors++ < 5) logf_("error frame: %.*s", (int)(len > 200 ? 200 : len), p);
    return;
  }
  G.r.other++;
}

static void on_text_sio(conn *c, const uint8_t *p, size_t len) {
  if (len == 0) return;
  switch (p[0]) {
  case '0': { /* Engine.IO open: connect to the main namespace with the token */
    char buf[640];
    char tok[600];
    size_t tl = mint_jwt(c->idx, tok, sizeof tok);
    int n = snprintf(buf, sizeof buf, "40{\"token\":\"%.*s\"}", (int)tl, tok);
    ws_text(c, buf, (size_t)n);
    return;
  }
  case '2': ws_text(c, "3", 1); return; /* ping -> pong */
  case '3': return;
  case '1': conn_close(c); return;
  case '4':
    if (len < 2) break;
    if (p[1] == '2') {
      if (len >= 10 && memcmp(p, "42[\"msg\",", 9) == 0) {
        on_message(c, p, len);
        return;
      }
      if (len >= 12 && memcmp(p, "42[\"joined\"", 11) == 0) {
        if (c->state == ST_WS && c->joins && --c->joins == 0) conn_ready(c);
        return;
      }
    } else if (p[1] == '0') {
      if (c->state == ST_WS) send_joins(c);
      return;
    } else if (p[1] == '4') {
      G.r.rej401++;
      if (G.r.errors++ < 5) logf_("connect_error: %.*s", (int)(len > 200 ? 200 : len), p);
      conn_close(c);
      return;
    }
    break;
  }
  G.r.other++;
}

/* ------------------------------------------------------------------ reading ---- */

/* Header length of the frame at p, or 0 when fewer than 2 bytes are there. */
static inline size_t frame_hdr_len(const uint8_t *p, size_t n) {
  if (n < 2) return 0;
  size_t l7 = p[1] & 0x7f;
  return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((p[1] & 0x80) ? 4 : 0);
}

/* Total length of the frame at p, 0 when its header is not complete yet. */
static inline uint64_t frame_len(const uint8_t *p, size_t n) {
  size_t h = frame_hdr_len(p, n);
  if (!h || n < h) return 0;
  uint64_t l = p[1] & 0x7f;
  if (l == 126) l = (uint64_t)p[2] << 8 | p[3];
  else if (l == 127) {
    l = 0;
    for (int i = 0; i < 8; i++) l = l << 8 | p[2 + i];
  }
  return h + l;
}

/* Handles one complete frame; returns 0, or -1 when the connection was closed. */
static int on_frame(conn *c, uint8_t *f, size_t total) {
  size_t h = frame_hdr_len(f, total);
  uint8_t *p = f + h;
  size_t len = total - h;
  if (f[1] & 0x80) { /* servers do not mask; unmask anyway */
    uint8_t *m = f + h - 4;
    for (size_t i = 0; i < len; i++) p[i] ^= m[i & 3];
  }
  G.r.rx_frames++;
  switch (f[0] & 0x0f) {
  case 0x1:
    if (O.proto == PROTO_NATTER) on_text_natter(c, p, len);
    else on_text_sio(c, p, len);
    break;
  case 0x8:
    conn_close(c);
    return -1;
  case 0x9:
    ws_send(c, 0xa, p, len);
    break;
  default:
    break;
  }
  return c->closing ? -1 : 0;
}

static int carry_add(conn *c, const uint8_t *d, size_t n) {
  if (c->clen + n > c->ccap) {
    size_t ncap = c->ccap ? c->ccap : 256;
    while (ncap < c->clen + n) ncap *= 2;
    uint8_t *nb = realloc(c->carry, ncap);
    if (!nb) die("out of memory");
    c->carry = nb;
    c->ccap = (uint32_t)ncap;
  }
  memcpy(c->carry + c->clen, d, n);
  c->clen += (uint32_t)n;
  return 0;
}

static void carry_release(conn *c) {
  c->clen = 0;
  if (c->ccap > 4096) { /* keep idle connections small */
    free(c->carry);
    c->carry = NULL;
    c->ccap = 0;
  }
}

static void ws_feed(conn *c, const uint8_t *d, size_t n) {
  /* 1. finish the frame started in an earlier read (copy only what it needs) */
  while (c->clen) {
    uint64_t need = frame_len(c->carry, c->clen);
    if (!need) {
      size_t want = c->clen < 2 ? 2 : frame_hdr_len(c->carry, c->clen);
      size_t take = want - c->clen;
      if (take > n) take = n;
      if (!take) return;
      carry_add(c, d, take);
      d += take;
      n -= take;
      continue;
    }
    if (need > MAX_FRAME) {
      conn_close(c);
      return;
    }
    if (c->clen >= need) {
      size_t rest = c->clen - (size_t)need;
      if (on_frame(c, c->carry, (size_t)need)) return;
      if (rest) memmove(c->carry, c->carry + need, rest);
      c->clen = (uint32_t)rest;
      if (!rest) carry_release(c);
      continue;
    }
    size_t take = (size_t)need - c->clen;
    if (take > n) take = n;
    if (!take) return;
    carry_add(c, d, take);
    d += take;
    n -= take;
  }
  /* 2. whole frames in place in the shared read buffer */
  while (n) {
    uint64_t total = frame_len(d, n);
    if (!total || total > n) break;
    if (on_frame(c, (uint8_t *)d, (size_t)total)) return;
    d += total;
    n -= (size_t)total;
  }
  if (n) {
    if (frame_len(d, n) > MAX_FRAME) {
      conn_close(c);
      return;
    }
    carry_add(c, d, n);
  }
}

static void on_http(conn *c, const uint8_t *d, size_t n) {
  carry_add(c, d, n);
  uint8_t *e = memmem(c->carry, c->clen, "\r\n\r\n", 4);
  if (!e) {
    if (c->clen > HTTP_MAX) conn_close(c);
    return;
  }
  int status = 0;
  if (c->clen > 12 && memcmp(c->carry, "HTTP/1.1 ", 9) == 0) status = atoi((char *)c->carry + 9);
  if (status != 101) {
    if (c->reconnecting) {
      if (status == 503) G.r.reconnect_503++; /* a survivor refused a returning client */
      else G.r.rej_other++;
      conn_close(c);
      return;
    }
    if (status == 503) G.r.rej503++;
    else if (status == 401) G.r.rej401++;
    else G.r.rej_other++;
    conn_close(c);
    return;
  }
  c->state = ST_WS;
  if (c->reconnecting) {
    c->t_up = now_ns();
    nb_hist_record(&G.r.re_dial, c->t_up - c->t0);
  }
  /* --eager-join: joinRoom goes out with the first frames, not after welcome; the
   * connection is ready once every join is confirmed, as usual. */
  if (O.eager && O.proto == PROTO_NATTER && O.rooms > 0 && O.rooms_per_conn > 0) send_joins(c);
  size_t hl = (size_t)(e + 4 - c->carry), rest = c->clen - hl;
  memmove(c->carry, c->carry + hl, rest);
  c->clen = (uint32_t)rest;
  if (!rest) carry_release(c);
  ws_feed(c, NULL, 0);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  *buf = uv_buf_init((char *)G.rbuf, RBUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  G.now = now_ns();
  G.r.rx_bytes += (uint64_t)nread;
  if (c->state == ST_HTTP) on_http(c, (const uint8_t *)buf->base, (size_t)nread);
  else if (!c->closing) ws_feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* ------------------------------------------------------------------ connecting - */

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    if (c->reconnecting) G.r.reconnect_refused++;
    else if (++G.r.conn_errors <= 3) logf_("connect: %s", uv_strerror(status));
    conn_close(c);
    return;
  }
  c->state = ST_HTTP;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
  const url *u = &O.urls[c->url];
  char req_[1600], tok[600] = "", ua[300] = "";
  int n;
  if (O.user_agent) snprintf(ua, sizeof ua, "User-Agent: %s\r\n", O.user_agent);
  if (O.proto == PROTO_NATTER) {
    size_t tl = mint_jwt(c->idx, tok, sizeof tok);
    n = snprintf(req_, sizeof req_,
                 "GET %s%ctoken=%.*s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 u->path, strchr(u->path, '?') ? '&' : '?', (int)tl, tok, u->host, u->port, ua);
  } else {
    n = snprintf(req_, sizeof req_,
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 u->path, u->host, u->port, ua);
  }
  conn_write(c, req_, (size_t)n);
}

static void start_conn(conn *c) {
  c->pending = 1;
  G.pending++;
  G.r.started++;
  c->t0 = now_ns();
  if (!G.r.t_first_connect) G.r.t_first_connect = c->t0;
  c->url = (uint8_t)url_of(c->idx);
  uint32_t m = (uint32_t)(c->idx * 2654435761u) ^ 0x5bd1e995u;
  memcpy(c->mask, &m, 4);
  dial(c);
}

/* Opens the socket (from the connection's source address) and connects to c->url. */
static void dial(conn *c) {
  c->state = ST_CONNECTING;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    G.r.conn_errors++;
    if (G.r.conn_errors <= 3) logf_("socket: %s", strerror(errno));
    c->state = ST_DEAD;
    c->closing = 1;
    conn_fail(c);
    if (c->reconnecting) reconnect_later(c, 0.1);
    return;
  }
  if (O.src_addrs > 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(c->idx % (uint32_t)O.src_addrs));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && G.r.conn_errors++ < 3)
      logf_("bind: %s", strerror(errno));
  }
  uv_tcp_init(G.loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  if (uv_tcp_open(&c->tcp, fd) ||
      uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&O.urls[c->url].addr,
                     on_connect)) {
    G.r.conn_errors++;
    conn_close(c);
  }
}

static void start_more(void) {
  if (G.connect_finished) return;
  uint64_t due = UINT64_MAX;
  if (O.connect_rate > 0) {
    double el = (double)(now_ns() - G.t_cstart) / 1e9;
    due = (uint64_t)(el * O.connect_rate / O.procs) + 1;
  }
  while (G.next < G.nlocal && G.pending < O.concurrency && (uint64_t)G.next < due)
    start_conn(&G.conns[G.next++]);
}

static void on_ctimer(uv_timer_t *t) {
  start_more();
  if (now_ns() - G.t_cstart > (uint64_t)(O.connect_timeout * 1e9)) {
    logf_("connect phase timed out: %ld of %ld ready, %ld pending", (long)G.r.ready,
          G.nlocal, G.pending);
    /* give up on the stragglers */
    for (long i = 0; i < G.next; i++)
      if (G.conns[i].pending) conn_close(&G.conns[i]);
    G.next = G.nlocal;
    G.done = G.nlocal;
    check_connect_done();
  }
}

/* ------------------------------------------------------------------ phases ----- */

static void finish(void);

static void on_ptimer(uv_timer_t *t);

static void on_stimer(uv_timer_t *t) { /* fixed rate: due messages of every publisher */
  uint64_t now = now_ns();
  if (now >= G.t_send_end) return;
  double el = (double)(now - G.t_go) / 1e9;
  double per = O.rate / (double)O.publishers;
  for (long i = 0; i < O.publishers; i++) {
    pub *p = &G.pubs[i];
    if (!p->c || p->c->state != ST_READY) continue;
    /* publisher i runs i/P of a period behind publisher 0: together they send one
     * evenly spaced stream at the total rate instead of P-message bursts */
    double k = el * per - (double)i / (double)O.publishers;
    if (k < 0) continue;
    uint64_t due = (uint64_t)k + 1;
    int burst = 0;
    while (p->sent < due && burst++ < 1000 && p->c->state == ST_READY) pub_send(p);
  }
}

static void on_ltimer(uv_timer_t *t) { /* closed loop: give up on lost messages */
  uint64_t now = now_ns(), lim = (uint64_t)(O.loss_timeout * 1e9);
  for (long i = 0; i < O.publishers; i++) {
    pub *p = &G.pubs[i];
    if (!p->c) continue;
    int freed = 0;
    for (int k = 0; k < O.window; k++) {
      slot *s = &p->slots[k];
      if (s->used && now - s->t > lim) {
        s->used = 0;
        p->inflight--;
        G.r.timeouts++;
        freed = 1;
      }
    }
    if (freed) pub_pump(p);
  }
}

static void set_phase_timer(uint64_t at) {
  uint64_t now = now_ns();
  uint64_t ms = at > now ? (at - now + 999999) / 1000000 : 0;
  uv_timer_start(&G.ptimer, on_ptimer, ms, 0);
}

static uint64_t t_kill_actual; /* when --kill-pid was signalled (this process) */
static double kill_wall;        /* the same, seconds since the epoch */

static void do_kill(void) {
  if (kill((pid_t)O.kill_pid, O.kill_signal)) logf_("kill %ld: %s", O.kill_pid, strerror(errno));
  t_kill_actual = now_ns();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  kill_wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_ktimer(uv_timer_t *t) { do_kill(); }

static void on_ptimer(uv_timer_t *t) {
  uint64_t now = now_ns();
  if (phase == 0) { /* go */
    if (now < G.t_go) { set_phase_timer(G.t_go); return; }
    phase = 1;
    G.sending = O.publishers > 0;
    if (G.sending) {
      if (O.rate > 0) uv_timer_start(&G.stimer, on_stimer, 0, 1);
      else {
        uv_timer_start(&G.ltimer, on_ltimer, 100, 100);
        for (long i = 0; i < O.publishers; i++) pub_pump(&G.pubs[i]);
      }
    }
    set_phase_timer(G.t_ws);
  } else if (phase == 1) { /* measure starts */
    if (now < G.t_ws) { set_phase_timer(G.t_ws); return; }
    phase = 2;
    getrusage(RUSAGE_SELF, &G.ru_ws);
    set_phase_timer(G.t_we);
  } else if (phase == 2) { /* measure ends: stop sending, drain */
    if (now < G.t_we) { set_phase_timer(G.t_we); return; }
    phase = 3;
    if (!O.kill_pid) G.sending = 0; /* with --kill-pid publishers go on until t_send_end */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    G.r.cpu_measure_s = (double)(ru.ru_utime.tv_sec - G.ru_ws.ru_utime.tv_sec) +
                        (double)(ru.ru_stime.tv_sec - G.ru_ws.ru_stime.tv_sec) +
                        (double)(ru.ru_utime.tv_usec - G.ru_ws.ru_utime.tv_usec) / 1e6 +
                        (double)(ru.ru_stime.tv_usec - G.ru_ws.ru_stime.tv_usec) / 1e6;
    if (!O.kill_pid) uv_timer_stop(&G.stimer);
    set_phase_timer(G.t_end);
  } else {
    if (now < G.t_end) { set_phase_timer(G.t_end); return; }
    finish();
  }
}

static void begin_phases(uint64_t t_go) {
  G.t_go = t_go;
  G.t_ws = t_go + (uint64_t)(O.warmup * 1e9);
  G.t_we = G.t_ws + (uint64_t)(O.duration * 1e9);
  G.t_end = G.t_we + (uint64_t)(O.drain * 1e9);
  G.t_send_end = G.t_we;
  if (O.kill_pid) { /* the kill comes after the measure window, the stream goes on */
    G.t_kill = G.t_we + (uint64_t)(O.kill_after * 1e9);
    G.t_send_end = G.t_end - 2000000000ull;
    if (G.st_fd < 0) {
      uint64_t now = now_ns();
      uv_timer_start(&G.ktimer, on_ktimer, G.t_kill > now ? (G.t_kill - now) / 1000000 : 0, 0);
    }
  }
  G.r.measure_s = O.duration;
  phase = 0;
  set_phase_timer(t_go);
}

static void on_go_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0) die("parent went away");
  (void)buf;
  G.golen += (size_t)nread;
  if (G.golen < 8) return;
  uv_read_stop(s);
  uint64_t t;
  memcpy(&t, G.gobuf, 8);
  begin_phases(t);
}

static void go_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  *buf = uv_buf_init((char *)G.gobuf + G.golen, (unsigned)(8 - G.golen));
}

static void touch_ready_file(void) {
  if (!O.ready_file) return;
  FILE *f = fopen(O.ready_file, "w");
  if (f) fclose(f);
}

static void check_connect_done(void) {
  if (G.connect_finished || G.done < G.nlocal) return;
  G.connect_finished = 1;
  uv_timer_stop(&G.ctimer);
  double el = (double)(now_ns() - G.t_cstart) / 1e9;
  logf_("connect phase: %" PRIu64 " ready, %" PRIu64 " failed (503: %" PRIu64 ", 401: %" PRIu64
        ") in %.2f s",
        G.r.ready, G.r.failed, G.r.rej503, G.r.rej401, el);
  if (G.st_fd >= 0) {
    uint8_t msg[16] = {'R'};
    memcpy(msg + 8, &G.r.ready, 8);
    if (write(G.st_fd, msg, sizeof msg) != sizeof msg) die("status pipe");
    uv_pipe_init(G.loop, &G.gopipe, 0);
    uv_pipe_open(&G.gopipe, G.go_fd);
    uv_read_start((uv_stream_t *)&G.gopipe, go_alloc, on_go_read);
  } else {
    touch_ready_file();
    begin_phases(now_ns() + 100000000ull + (uint64_t)(O.idle * 1e9));
  }
}

/* ------------------------------------------------------------------ results ---- */

static void res_merge(res *d, const res *s) {
  uint64_t *dp = &d->conns, *sp = (uint64_t *)&s->conns;
  for (uint64_t *e = &d->t_first_connect; dp < e; dp++, sp++) *dp += *sp;
  if (s->t_first_connect && (!d->t_first_connect || s->t_first_connect < d->t_first_connect))
    d->t_first_connect = s->t_first_connect;
  if (s->t_last_ready > d->t_last_ready) d->t_last_ready = s->t_last_ready;
  if (s->t_first_drop && (!d->t_first_drop || s->t_first_drop < d->t_first_drop))
    d->t_first_drop = s->t_first_drop;
  if (s->t_last_rejoin > d->t_last_rejoin) d->t_last_rejoin = s->t_last_rejoin;
  nb_hist_merge(&d->back, &s->back);
  nb_hist_merge(&d->lat_storm, &s->lat_storm);
  nb_hist_merge(&d->re_dial, &s->re_dial);
  nb_hist_merge(&d->re_join, &s->re_join);
  d->cpu_measure_s += s->cpu_measure_s;
  d->measure_s = s->measure_s;
  nb_hist_merge(&d->lat, &s->lat);
  nb_hist_merge(&d->hs, &s->hs);
  nb_hist_merge(&d->ack, &s->ack);
}

static void write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write to parent: %s", strerror(errno));
    b += w;
    n -= (size_t)w;
  }
}

static int read_all(int fd, void *p, size_t n) {
  uint8_t *b = p;
  while (n) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

static void print_json(const res *r, const uint64_t *joined, const uint64_t *sent_win) {
  uint64_t expected = 0;
  for (long i = 0; i < nrooms_all(); i++) expected += sent_win[i] * joined[i];
  double ms = 1e6;
  double conn_s =
      r->t_last_ready > r->t_first_connect ? (double)(r->t_last_ready - r->t_first_connect) / 1e9 : 0;
  printf("{\"proto\":\"%s\"", O.proto == PROTO_NATTER ? "natter" : "socketio");
  if (O.label) printf(",\"label\":\"%s\"", O.label);
  printf(",\"conns\":%ld,\"procs\":%d,\"nodes\":%d,\"rooms\":%ld,\"publishers\":%ld,"
         "\"mode\":\"%s\",\"rate\":%.0f,\"window\":%d,\"payload\":%d",
         O.conns, O.procs, O.nurls, O.rooms, O.publishers,
         O.publishers ? (O.rate > 0 ? "fixed" : "closed") : "idle", O.rate, O.window, O.payload);
  printf(",\"ready\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"conn_errors\":%" PRIu64
         ",\"rejected_503\":%" PRIu64 ",\"rejected_401\":%" PRIu64 ",\"rejected_other\":%" PRIu64
         ",\"closed_after_ready\":%" PRIu64,
         r->ready, r->failed, r->conn_errors, r->rej503, r->rej401, r->rej_other,
         r->closed_after_ready);
  printf(",\"connect_s\":%.3f,\"connect_rate\":%.1f", conn_s,
         conn_s > 0 ? (double)r->ready / conn_s : 0);
  printf(",\"handshake_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
         nb_hist_quantile(&r->hs, 0.5) / ms, nb_hist_quantile(&r->hs, 0.99) / ms,
         r->hs.total ? r->hs.max / ms : 0.0);
  double dur = r->measure_s > 0 ? r->measure_s : 1;
  printf(",\"measure_s\":%.3f,\"sent\":%" PRIu64 ",\"sent_measured\":%" PRIu64
         ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64,
         r->measure_s, r->sent, r->sent_win, expected, r->delivered);
  if (expected) printf(",\"delivery_ratio\":%.6f", (double)r->delivered / (double)expected);
  else printf(",\"delivery_ratio\":null");
  printf(",\"msgs_per_s\":%.1f,\"deliveries_per_s\":%.1f,\"rx_frames_per_s\":%.1f",
         (double)r->sent_win / dur, (double)r->delivered / dur, (double)r->rx_win / dur);
  printf(",\"lat_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
         "\"mean\":%.3f}",
         nb_hist_quantile(&r->lat, 0.5) / ms, nb_hist_quantile(&r->lat, 0.9) / ms,
         nb_hist_quantile(&r->lat, 0.99) / ms, nb_hist_quantile(&r->lat, 0.999) / ms,
         r->lat.total ? r->lat.max / ms : 0.0, nb_hist_mean(&r->lat) / ms);
  if (r->ack.total) /* natter: a sendMessage's requestId carries its send time */
    printf(",\"ack_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"n\":%" PRIu64 "}",
           nb_hist_quantile(&r->ack, 0.5) / ms, nb_hist_quantile(&r->ack, 0.99) / ms,
           r->ack.max / ms, (uint64_t)r->ack.total);
  { /* the start as a wall time, to place the phases among run.sh's samples */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    double wall_now = (double)rt.tv_sec + (double)rt.tv_nsec / 1e9;
    printf(",\"go_wall\":%.3f,\"warmup_s\":%.3f,\"idle_s\":%.3f",
           O.realtime ? (double)G.t_go / 1e9 : wall_now - (double)(now_ns() - G.t_go) / 1e9,
           O.warmup, O.idle);
  }
  printf(",\"rx_frames\":%" PRIu64 ",\"rx_msgs\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
         ",\"acks\":%" PRIu64 ",\"presence\":%" PRIu64 ",\"errors\":%" PRIu64
         ",\"timeouts\":%" PRIu64 ",\"late\":%" PRIu64 ",\"gen_cpu_s\":%.3f",
         r->rx_frames, r->rx_msgs, r->rx_bytes, r->acks, r->presence, r->errors, r->timeouts,
         r->late, r->cpu_measure_s);
  if (O.kill_pid) {
    printf(",\"kill_pid\":%ld,\"kill_signal\":%d,\"kill_wall\":%.3f", O.kill_pid, O.kill_signal,
           kill_wall);
    printf(",\"lat_storm_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
           nb_hist_quantile(&r->lat_storm, 0.5) / ms, nb_hist_quantile(&r->lat_storm, 0.99) / ms,
           r->lat_storm.total ? r->lat_storm.max / ms : 0.0);
  }
  if (O.reconnect) {
    int all_back = r->dropped && r->rejoined >= r->dropped && !r->not_back;
    if (all_back && t_kill_actual && r->t_last_rejoin > t_kill_actual)
      printf(",\"back_s\":%.3f", (double)(r->t_last_rejoin - t_kill_actual) / 1e9);
    else printf(",\"back_s\":null");
    printf(",\"back_from_first_drop_s\":%.3f",
           r->t_last_rejoin > r->t_first_drop && r->t_first_drop
               ? (double)(r->t_last_rejoin - r->t_first_drop) / 1e9 : 0.0);
    printf(",\"first_drop_after_kill_s\":%.3f",
           r->t_first_drop > t_kill_actual && t_kill_actual
               ? (double)(r->t_first_drop - t_kill_actual) / 1e9 : 0.0);
    printf(",\"back_ms\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}",
           nb_hist_quantile(&r->back, 0.5) / ms, nb_hist_quantile(&r->back, 0.99) / ms,
           r->back.total ? r->back.max / ms : 0.0);
    printf(",\"reconnect_dial_ms\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}"
           ",\"reconnect_join_ms\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}",
           nb_hist_quantile(&r->re_dial, 0.5) / ms, nb_hist_quantile(&r->re_dial, 0.99) / ms,
           r->re_dial.total ? r->re_dial.max / ms : 0.0, nb_hist_quantile(&r->re_join, 0.5) / ms,
           nb_hist_quantile(&r->re_join, 0.99) / ms, r->re_join.total ? r->re_join.max / ms : 0.0);
    printf(",\"dropped\":%" PRIu64 ",\"rejoined\":%" PRIu64 ",\"not_back\":%" PRIu64
           ",\"reconnect_attempts\":%" PRIu64 ",\"reconnect_503\":%" PRIu64
           ",\"reconnect_refused\":%" PRIu64 ",\"recovered_true\":%" PRIu64
           ",\"recovered_false\":%" PRIu64 ",\"no_since\":%" PRIu64 ",\"no_seq\":%" PRIu64,
           r->dropped, r->rejoined, r->not_back, r->reconnect_attempts, r->reconnect_503,
           r->reconnect_refused, r->recovered_true, r->recovered_false, r->no_since, r->no_seq);
    printf(",\"acct_expected\":%" PRIu64 ",\"acct_received\":%" PRIu64 ",\"lost\":%" PRIu64
           ",\"duplicated\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"extra\":%" PRIu64
           ",\"lost_recovered\":%" PRIu64 ",\"lost_not_recovered\":%" PRIu64
           ",\"ref_msgs\":%" PRIu64 ",\"stable_dup\":%" PRIu64 ",\"stable_lost\":%" PRIu64
           ",\"rx_after_kill\":%" PRIu64,
           r->acct_expected, r->acct_received, r->lost, r->duplicated, r->out_of_order, r->extra,
           r->lost_recovered, r->lost_not_recovered, r->ref_msgs, r->stable_dup, r->stable_lost, r->rx_after_kill);
  }
  printf("}\n");
  fflush(stdout);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* --reconnect: every connection that dropped and came back must have received, in each of
 * its rooms, every seq of the room's reference (the union of what the connections that
 * never dropped received) above its `since`, once. */
static void acct_finish(void) {
  for (long r = 0; r < nrooms_all(); r++) G.r.ref_msgs += G.ref[r].n;
  uint64_t *tmp = NULL;
  size_t tcap = 0;
  for (long i = 0; i < G.nlocal; i++) {
    conn *c = &G.conns[i];
    if (!c->dropped) { /* it joined before the first message: it must have them all */
      if (c->state != ST_READY) continue;
      int nk = is_big(c->idx) ? 1 : O.rooms_per_conn;
      for (int k = 0; k < nk; k++) {
        uint32_t got = G.cnt[(size_t)i * (size_t)O.rooms_per_conn + k];
        uint32_t want = G.ref[room_of(c->idx, k)].n;
        if (got < want) G.r.stable_lost += want - got;
      }
      continue;
    }
    if (c->reconnecting) {
      G.r.not_back++;
      continue;
    }
    int nk = is_big(c->idx) ? 1 : O.rooms_per_conn;
    for (int k = 0; k < nk; k++) {
      uint64_t since = G.since[(size_t)i * (size_t)O.rooms_per_conn + k];
      if (!since) continue; /* joined again without since: nothing to compare */
      const seqset *ref = &G.ref[room_of(c->idx, k)];
      size_t n = 0;
      if (tcap < c->nrx) {
        tcap = c->nrx;
        tmp = realloc(tmp, tcap * sizeof *tmp);
        if (!tmp) die("out of memory");
      }
      for (uint32_t j = 0; j < c->nrx; j++)
        if ((int)(c->rx[j] >> 56) == k) tmp[n++] = c->rx[j] & ((1ull << 56) - 1);
      qsort(tmp, n, sizeof *tmp, cmp_u64);
      uint32_t a = 0;
      while (a < ref->n && ref->v[a] <= since) a++;
      uint32_t a0 = a;
      G.r.acct_expected += ref->n - a;
      uint64_t matched = 0;
      for (size_t j = 0; j < n; j++) {
        if (tmp[j] <= since || (j && tmp[j] == tmp[j - 1])) { /* had it already */
          G.r.duplicated++;
          continue;
        }
        while (a < ref->n && ref->v[a] < tmp[j]) a++;
        if (a < ref->n && ref->v[a] == tmp[j]) matched++;
        else G.r.extra++;
      }
      G.r.acct_received += matched;
      uint64_t lost = (ref->n - a0) - matched;
      if (G.rec[(size_t)i * (size_t)O.rooms_per_conn + k] == 2) G.r.lost_not_recovered += lost;
      else G.r.lost_recovered += lost;
    }
  }
  G.r.lost = G.r.acct_expected - G.r.acct_received;
  free(tmp);
}

static void finish(void) {
  phase = 4;
  if (O.reconnect) acct_finish();
  uv_timer_stop(&G.ltimer);
  uv_timer_stop(&G.stimer);
  if (G.st_fd >= 0) {
    uint32_t nr = (uint32_t)nrooms_all();
    write_all(G.st_fd, &G.r, sizeof G.r);
    write_all(G.st_fd, &nr, sizeof nr);
    if (nr) {
      write_all(G.st_fd, G.joined, nr * sizeof *G.joined);
      write_all(G.st_fd, G.sent_win, nr * sizeof *G.sent_win);
    }
    close(G.st_fd);
  } else {
    print_json(&G.r, G.joined, G.sent_win);
  }
  _exit(0); /* sockets close with the process */
}

/* ------------------------------------------------------------------ worker ----- */

static void run_worker(long lo, long hi, int st_fd, int go_fd) {
  G.loop = uv_default_loop();
  G.lo = lo;
  G.hi = hi;
  G.nlocal = hi - lo;
  G.st_fd = st_fd;
  G.go_fd = go_fd;
  G.rbuf = malloc(RBUF_SIZE);
  G.conns = calloc((size_t)(G.nlocal ? G.nlocal : 1), sizeof *G.conns);
  long nr = nrooms_all() > 0 ? nrooms_all() : 1;
  G.joined = calloc((size_t)nr, sizeof *G.joined);
  G.sent_win = calloc((size_t)nr, sizeof *G.sent_win);
  G.pubs = calloc((size_t)(O.publishers ? O.publishers : 1), sizeof *G.pubs);
  if (!G.rbuf || !G.conns || !G.joined || !G.sent_win || !G.pubs) die("out of memory");
  if (O.reconnect) {
    size_t nslots = (size_t)(G.nlocal ? G.nlocal : 1) * (size_t)(O.rooms_per_conn ? O.rooms_per_conn : 1);
    G.ref = calloc((size_t)nr, sizeof *G.ref);
    G.last = calloc(nslots, sizeof *G.last);
    G.since = calloc(nslots, sizeof *G.since);
    G.cnt = calloc(nslots, sizeof *G.cnt);
    G.rec = calloc(nslots, sizeof *G.rec);
    G.rq = calloc((size_t)(G.nlocal ? G.nlocal : 1), sizeof *G.rq);
    if (!G.ref || !G.last || !G.since || !G.cnt || !G.rec || !G.rq) die("out of memory");
    srand48((long)getpid() ^ (long)now_ns());
  }
  memset(G.pad, 'x', sizeof G.pad);
  nb_hist_init(&G.r.lat);
  nb_hist_init(&G.r.hs);
  nb_hist_init(&G.r.back);
  nb_hist_init(&G.r.lat_storm);
  nb_hist_init(&G.r.re_dial);
  nb_hist_init(&G.r.re_join);
  nb_hist_init(&G.r.ack);
  G.r.conns = (uint64_t)G.nlocal;
  for (long i = 0; i < G.nlocal; i++) {
    conn *c = &G.conns[i];
    c->idx = (uint32_t)(lo + i);
    c->pub = -1;
    long pid_ = pub_of(c->idx);
    if (pid_ >= 0) {
      c->pub = (int32_t)pid_;
      pub *p = &G.pubs[pid_];
      p->c = c;
      p->room = (uint32_t)room_of(c->idx, 0);
      p->slots = calloc((size_t)O.window, sizeof *p->slots);
      if (!p->slots) die("out of memory");
    }
  }
  uv_timer_init(G.loop, &G.ctimer);
  uv_timer_init(G.loop, &G.ptimer);
  uv_timer_init(G.loop, &G.stimer);
  uv_timer_init(G.loop, &G.ltimer);
  uv_timer_init(G.loop, &G.ktimer);
  uv_timer_init(G.loop, &G.rtimer);
  G.t_cstart = now_ns();
  uv_timer_start(&G.ctimer, on_ctimer, 1, 1);
  if (G.nlocal == 0) check_connect_done();
  else start_more();
  uv_run(G.loop, UV_RUN_DEFAULT);
}

/* ------------------------------------------------------------------ blast ------ */
/* --blast-server HOST:PORT: a stand-in server that answers every upgrade with a natter
 * welcome and then writes pre-rendered `message` frames as fast as the socket takes them.
 * Used to show the generator's own receive rate (it must never be the bottleneck). */

typedef struct bconn {
  uv_tcp_t tcp;
  uint8_t hdr[4096];
  size_t hlen;
  int upgraded;
  uv_write_t w[2];
} bconn;

static uint8_t *blast_block;
static size_t blast_len;

static void blast_write(bconn *b, int i);

static void blast_done(uv_write_t *w, int status) {
  bconn *b = w->data;
  if (status < 0) return;
  blast_write(b, (int)(w - b->w));
}

static void blast_write(bconn *b, int i) {
  uv_buf_t buf = uv_buf_init((char *)blast_block, (unsigned)blast_len);
  b->w[i].data = b;
  uv_write(&b->w[i], (uv_stream_t *)&b->tcp, &buf, 1, blast_done);
}

static void blast_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char sink[65536];
  *buf = uv_buf_init(sink, sizeof sink);
}

static void blast_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bconn *b = s->data;
  if (nread < 0) {
    uv_close((uv_handle_t *)s, NULL); /* leaks b: the blast server is a throwaway */
    return;
  }
  if (b->upgraded) return;
  size_t n = (size_t)nread;
  if (b->hlen + n > sizeof b->hdr) n = sizeof b->hdr - b->hlen;
  memcpy(b->hdr + b->hlen, buf->base, n);
  b->hlen += n;
  if (!memmem(b->hdr, b->hlen, "\r\n\r\n", 4)) return;
  b->upgraded = 1;
  static const char resp[] =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
      "\x81\x1b{\"type\":\"welcome\",\"x\":1234}";
  uv_buf_t rb = uv_buf_init((char *)resp, sizeof resp - 1);
  uv_try_write(s, &rb, 1);
  blast_write(b, 0);
  blast_write(b, 1);
}

static void blast_conn(uv_stream_t *srv, int status) {
  if (status < 0) return;
  bconn *b = calloc(1, sizeof *b);
  uv_tcp_init(srv->loop, &b->tcp);
  b->tcp.data = b;
  if (uv_accept(srv, (uv_stream_t *)&b->tcp)) return;
  uv_read_start((uv_stream_t *)&b->tcp, blast_alloc, blast_read);
}

static void run_blast(const char *hp) {
  char host[64];
  int port;
  const char *colon = strrchr(hp, ':');
  if (!colon || (size_t)(colon - hp) >= sizeof host) die("--blast-server HOST:PORT");
  memcpy(host, hp, (size_t)(colon - hp));
  host[colon - hp] = 0;
  port = atoi(colon + 1);
  /* one message frame like natter's, bt=0 (outside any measure window) */
  char payload[512];
  int pl = snprintf(payload, sizeof payload,
                    "{\"type\":\"message\",\"id\":\"AbCdEfGhIjKlMnOpQrSt\",\"roomId\":\"r1\","
                    "\"userId\":\"u1\",\"message\":{\"bt\":0,\"p\":0,\"s\":0,\"x\":\"%.*s\"},"
                    "\"timestamp\":1700000000000}",
                    O.payload > 30 ? O.payload - 30 : 1, G.pad);
  size_t flen = 2 + (pl >= 126 ? 2 : 0) + (size_t)pl;
  size_t nframes = 65536 / flen;
  blast_len = nframes * flen;
  blast_block = malloc(blast_len);
  for (size_t i = 0; i < nframes; i++) {
    uint8_t *f = blast_block + i * flen;
    f[0] = 0x81;
    if (pl >= 126) {
      f[1] = 126;
      f[2] = (uint8_t)(pl >> 8);
      f[3] = (uint8_t)pl;
      memcpy(f + 4, payload, (size_t)pl);
    } else {
      f[1] = (uint8_t)pl;
      memcpy(f + 2, payload, (size_t)pl);
    }
  }
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t srv;
  struct sockaddr_in sa;
  uv_ip4_addr(host, port, &sa);
  uv_tcp_init(loop, &srv);
  if (uv_tcp_bind(&srv, (struct sockaddr *)&sa, 0) || uv_listen((uv_stream_t *)&srv, 1024, blast_conn))
    die("blast server cannot listen on %s", hp);
  fprintf(stderr, "natter-bench: blast server on %s, %zu frames of %zu bytes per write\n", hp,
          nframes, flen);
  uv_run(loop, UV_RUN_DEFAULT);
}

/* ------------------------------------------------------------------ main ------- */

static void usage(FILE *f) { /* first the options of every run, then the storm ones */
  fprintf(f,
"usage: natter-bench [options]\n"
"  --proto natter|socketio   protocol (default natter)\n"
"  --url ws://H:P/PATH       server URL; repeat or comma-separate for several nodes\n"
"                            (default path: /ws for natter, /socket.io/?EIO=4&transport=websocket)\n"
"  --conns N                 client connections (default 100)\n"
"  --src-addrs K             bind connections over 127.0.0.2..K+1 (default: 0 up to 20000\n"
"                            connections, then one address per 20000)\n"
"  --connect-rate R          new connections per second, all processes (default: unlimited)\n"
"  --concurrency C           handshakes in progress per process (default 256)\n"
"  --eager-join              natter: send joinRoom right after the upgrade, without waiting\n"
"                            for welcome (as browsers do); ready once every join is confirmed\n"
"  --connect-timeout S       give up on connections not ready after S s (default 60)\n"
"  --secret S                HS256 secret of the tokens (default bench-secret-0123456789abcdef0123456789)\n"
"  --tenant T                tenant claim (default bench)\n"
"  --rooms R                 rooms r0..r(R-1); connection i joins r(i%%R) (default 0: no joins)\n"
"  --rooms-per-conn K        rooms joined by each connection (default 1)\n"
"  --spread K                nodes the members of one room are spread over (default: all URLs)\n"
"  --publishers P            connections 0..P-1 publish to their first room (default 0)\n"
"  --rate R                  total messages/s over all publishers; 0: closed loop (default 0)\n"
"  --window W                closed loop: messages in flight per publisher (default 8)\n"
"  --ack all|self            closed loop: a message completes when every member (all, the\n"
"                            default with one process) or the publisher (self) received it\n"
"  --payload B               bytes of the message object (default 100)\n"
"  --warmup S --duration S --drain S   phases after connecting (default 2, 5, 2)\n"
"  --loss-timeout S          closed loop: a message not back after S s is lost (default 3)\n"
"  --procs N                 split the connections over N processes (default 1)\n"
"  --clock mono|real         timestamp clock (default mono; real across machines)\n"
"  --ready-file PATH         created when every connection is ready (before warm-up)\n"
"  --label STR               copied into the JSON result\n"
"  --user-agent STR          send this User-Agent header (default: none)\n"
"  --blast-server H:P        run a stand-in server that floods message frames (self-test)\n"
"  --quiet                   no progress on stderr\n"
"  --weights W1,W2,...       share of each room's members per URL (default: --spread)\n"
"  --big-rooms N --big-room-size M   the last N*M connections join N big rooms instead\n"
"                            (the last N connections also publish, one per big room)\n"
"  --idle S                  S seconds of silence between everybody ready and the start\n"
"  --kill-pid PID            send PID --kill-signal KILL|TERM (default KILL) --kill-after S\n"
"                            (default 1) after the measure window; publishers go on through\n"
"                            the drain until 2 s before its end (needs --rate, --drain >= 4)\n"
"  --reconnect               a ready connection that drops reconnects at once to another URL\n"
"                            (the others in turn from a place per connection; a refused\n"
"                            attempt, 503 included, tries the next after 100 ms) and rejoins\n"
"                            with since = the last seq it saw per room; counts lost and\n"
"                            duplicated messages against the connections that never dropped\n"
"  --reconnect-jitter S      random delay of 0..S s before the first reconnect attempt\n"
"  --no-since                --reconnect without since (a client without resume): the\n"
"                            accounting must then find the messages missed while away\n");
}

static void add_urls(const char *list) {
  char *dup = strdup(list), *save = NULL;
  for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (O.nurls == MAX_URLS) die("at most %d URLs", MAX_URLS);
    url *u = &O.urls[O.nurls];
    const char *p = t;
    if (!strncmp(p, "ws://", 5)) p += 5;
    else if (!strncmp(p, "http://", 7)) p += 7;
    const char *slash = strchr(p, '/');
    const char *hp_end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(hp_end - p));
    if (!colon || (size_t)(colon - p) >= sizeof u->host) die("bad URL %s", t);
    memcpy(u->host, p, (size_t)(colon - p));
    u->host[colon - p] = 0;
    u->port = atoi(colon + 1);
    snprintf(u->path, sizeof u->path, "%s", slash ? slash : "");
    if (uv_ip4_addr(u->host, u->port, &u->addr)) die("bad address %s (IPv4 only)", t);
    O.nurls++;
  }
  free(dup);
}

int main(int argc, char **argv) {
  enum { OPT_PROTO = 256, OPT_EAGER, OPT_URL, OPT_CONNS, OPT_SRC, OPT_CRATE, OPT_CONC, OPT_CTO, OPT_SECRET,
         OPT_TENANT, OPT_ROOMS, OPT_RPC, OPT_SPREAD, OPT_PUBS, OPT_RATE, OPT_WINDOW, OPT_ACK,
         OPT_PAYLOAD, OPT_WARMUP, OPT_DURATION, OPT_DRAIN, OPT_LOSS, OPT_PROCS, OPT_CLOCK,
         OPT_READY, OPT_LABEL, OPT_BLAST, OPT_QUIET, OPT_HELP, OPT_UA, OPT_WEIGHTS, OPT_BIGR,
         OPT_BIGS, OPT_RECONN, OPT_JITTER, OPT_KPID, OPT_KSIG, OPT_KAFTER, OPT_IDLE, OPT_NOSINCE };
  static const struct option lo[] = {
      {"proto", 1, 0, OPT_PROTO},       {"url", 1, 0, OPT_URL},
      {"conns", 1, 0, OPT_CONNS},       {"src-addrs", 1, 0, OPT_SRC},
      {"connect-rate", 1, 0, OPT_CRATE}, {"concurrency", 1, 0, OPT_CONC}, {"eager-join", 0, 0, OPT_EAGER},
      {"connect-timeout", 1, 0, OPT_CTO}, {"secret", 1, 0, OPT_SECRET},
      {"tenant", 1, 0, OPT_TENANT},     {"rooms", 1, 0, OPT_ROOMS},
      {"rooms-per-conn", 1, 0, OPT_RPC}, {"spread", 1, 0, OPT_SPREAD},
      {"publishers", 1, 0, OPT_PUBS},   {"rate", 1, 0, OPT_RATE},
      {"window", 1, 0, OPT_WINDOW},     {"ack", 1, 0, OPT_ACK},
      {"payload", 1, 0, OPT_PAYLOAD},   {"warmup", 1, 0, OPT_WARMUP},
      {"duration", 1, 0, OPT_DURATION}, {"drain", 1, 0, OPT_DRAIN},
      {"loss-timeout", 1, 0, OPT_LOSS}, {"procs", 1, 0, OPT_PROCS},
      {"clock", 1, 0, OPT_CLOCK},       {"ready-file", 1, 0, OPT_READY},
      {"label", 1, 0, OPT_LABEL},       {"blast-server", 1, 0, OPT_BLAST},
      {"quiet", 0, 0, OPT_QUIET},       {"help", 0, 0, OPT_HELP},
      {"user-agent", 1, 0, OPT_UA},
      {"weights", 1, 0, OPT_WEIGHTS},   {"big-rooms", 1, 0, OPT_BIGR},
      {"big-room-size", 1, 0, OPT_BIGS}, {"reconnect", 0, 0, OPT_RECONN},
      {"reconnect-jitter", 1, 0, OPT_JITTER}, {"kill-pid", 1, 0, OPT_KPID},
      {"kill-signal", 1, 0, OPT_KSIG},  {"kill-after", 1, 0, OPT_KAFTER},
      {"idle", 1, 0, OPT_IDLE},         {"no-since", 0, 0, OPT_NOSINCE},
      {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (ch) {
    case OPT_PROTO:
      if (!strcmp(optarg, "natter")) O.proto = PROTO_NATTER;
      else if (!strcmp(optarg, "socketio") || !strcmp(optarg, "sio")) O.proto = PROTO_SIO;
      else die("--proto natter|socketio");
      break;
    case OPT_URL: add_urls(optarg); break;
    case OPT_CONNS: O.conns = atol(optarg); break;
    case OPT_SRC: O.src_addrs = atoi(optarg); break;
    case OPT_CRATE: O.connect_rate = atof(optarg); break;
    case OPT_CONC: O.concurrency = atoi(optarg); break;
    case OPT_EAGER: O.eager = 1; break;
    case OPT_CTO: O.connect_timeout = atof(optarg); break;
    case OPT_SECRET: O.secret = optarg; break;
    case OPT_TENANT: O.tenant = optarg; break;
    case OPT_ROOMS: O.rooms = atol(optarg); break;
    case OPT_RPC: O.rooms_per_conn = atoi(optarg); break;
    case OPT_SPREAD: O.spread = atoi(optarg); break;
    case OPT_PUBS: O.publishers = atol(optarg); break;
    case OPT_RATE: O.rate = atof(optarg); break;
    case OPT_WINDOW: O.window = atoi(optarg); break;
    case OPT_ACK:
      if (!strcmp(optarg, "all")) O.ack_all = 1;
      else if (!strcmp(optarg, "self")) O.ack_all = 0;
      else die("--ack all|self");
      break;
    case OPT_PAYLOAD: O.payload = atoi(optarg); break;
    case OPT_WARMUP: O.warmup = atof(optarg); break;
    case OPT_DURATION: O.duration = atof(optarg); break;
    case OPT_DRAIN: O.drain = atof(optarg); break;
    case OPT_LOSS: O.loss_timeout = atof(optarg); break;
    case OPT_UA:
      if (strlen(optarg) > 256 || strpbrk(optarg, "\r\n")) die("--user-agent: at most 256 bytes, one line");
      O.user_agent = optarg;
      break;
    case OPT_PROCS: O.procs = atoi(optarg); break;
    case OPT_CLOCK: O.realtime = !strcmp(optarg, "real"); break;
    case OPT_READY: O.ready_file = optarg; break;
    case OPT_LABEL: O.label = optarg; break;
    case OPT_BLAST: O.blast = optarg; break;
    case OPT_QUIET: O.quiet = 1; break;
    case OPT_WEIGHTS: {
      char *dup = strdup(optarg), *save = NULL;
      int n = 0;
      for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == MAX_URLS || atoi(t) < 0) die("--weights W1,W2,... (at most %d, each >= 0)", MAX_URLS);
        O.weights[n++] = atoi(t);
        O.wsum += atoi(t);
      }
      free(dup);
      if (O.wsum <= 0) die("--weights: at least one weight above 0");
      break;
    }
    case OPT_BIGR: O.big_rooms = atol(optarg); break;
    case OPT_BIGS: O.big_size = atol(optarg); break;
    case OPT_RECONN: O.reconnect = 1; break;
    case OPT_JITTER: O.reconnect_jitter = atof(optarg); break;
    case OPT_KPID: O.kill_pid = atol(optarg); break;
    case OPT_KSIG:
      if (!strcmp(optarg, "KILL") || !strcmp(optarg, "9")) O.kill_signal = SIGKILL;
      else if (!strcmp(optarg, "TERM") || !strcmp(optarg, "15")) O.kill_signal = SIGTERM;
      else die("--kill-signal KILL|TERM");
      break;
    case OPT_KAFTER: O.kill_after = atof(optarg); break;
    case OPT_IDLE: O.idle = atof(optarg); break;
    case OPT_NOSINCE: O.no_since = 1; break;
    case OPT_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  if (O.blast) {
    memset(G.pad, 'x', sizeof G.pad);
    run_blast(O.blast);
    return 0;
  }
  if (!O.nurls) add_urls(O.proto == PROTO_NATTER ? "ws://127.0.0.1:8080/ws"
                                                 : "ws://127.0.0.1:3000/");
  for (int i = 0; i < O.nurls; i++) {
    url *u = &O.urls[i];
    if (!u->path[0] || !strcmp(u->path, "/"))
      snprintf(u->path, sizeof u->path, "%s",
               O.proto == PROTO_NATTER ? "/ws" : "/socket.io/?EIO=4&transport=websocket");
  }
  if (O.conns < 0 || O.procs < 1 || O.procs > 64 || O.window < 1 || O.payload < 1 ||
      O.payload > 480 || O.publishers > O.conns || O.rooms_per_conn < 0 || O.concurrency < 1)
    die("invalid option values (see --help)");
  if (O.publishers > 0 && O.rooms <= 0) die("--publishers needs --rooms");
  if (O.big_rooms < 0 || O.big_size < 0 || (O.big_rooms > 0) != (O.big_size > 0) ||
      O.big_rooms * O.big_size > O.conns - O.publishers || (O.big_rooms && O.rooms <= 0) ||
      (O.big_rooms && O.rooms_per_conn != 1))
    die("--big-rooms N --big-room-size M: N*M of the connections (not publishers), with --rooms "
        "and one room per connection");
  O.pub_base = O.publishers;
  if (O.big_rooms > 0 && O.publishers > 0) O.publishers += O.big_rooms; /* one per big room */
  if (O.wsum > 0 && O.wsum && O.weights[0] == 0 && O.publishers)
    logf_("warning: --weights gives the first URL no members: publishers are on another one");
  if (O.kill_pid && (O.rate <= 0 || O.drain < 4))
    die("--kill-pid needs --rate > 0 and --drain of at least 4 s (the stream goes on through "
        "the drain until 2 s before its end)");
  if (O.reconnect && (O.nurls < 2 || O.proto != PROTO_NATTER)) die("--reconnect needs natter and 2+ URLs");
  if (O.reconnect_jitter < 0 || O.idle < 0 || O.kill_after < 0) die("invalid option values (see --help)");
  if (O.spread <= 0 || O.spread > O.nurls) O.spread = O.nurls;
  if (O.src_addrs < 0) O.src_addrs = O.conns > 20000 ? (int)((O.conns + 19999) / 20000) : 0;
  if (O.src_addrs > 250) die("--src-addrs at most 250");
  if (O.ack_all < 0) O.ack_all = O.procs == 1 && !O.big_rooms;
  if (O.ack_all && O.procs > 1) die("--ack all needs one process (use --ack self)");
  if (O.conns / O.procs > 19500)
    logf_("warning: %ld connections per process is close to the 20,000 open-files limit; "
          "use more --procs", O.conns / O.procs);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  if (O.procs == 1) {
    run_worker(0, O.conns, -1, -1);
    return 0;
  }

  int st[64][2], go[64][2];
  pid_t pids[64];
  for (int k = 0; k < O.procs; k++) {
    if (pipe(st[k]) || pipe(go[k])) die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
      for (int j = 0; j < k; j++) {
        close(st[j][0]);
        close(go[j][1]);
      }
      close(st[k][0]);
      close(go[k][1]);
      long lo_ = O.conns * k / O.procs, hi_ = O.conns * (k + 1) / O.procs;
      run_worker(lo_, hi_, st[k][1], go[k][0]);
      _exit(0);
    }
    pids[k] = pid;
    close(st[k][1]);
    close(go[k][0]);
  }
  /* wait for every worker to be connected, then start them together */
  for (int k = 0; k < O.procs; k++) {
    uint8_t msg[16];
    struct pollfd pf = {st[k][0], POLLIN, 0};
    int tmo = (int)((O.connect_timeout + 30) * 1000);
    if (poll(&pf, 1, tmo) <= 0 || read_all(st[k][0], msg, sizeof msg) || msg[0] != 'R')
      die("worker %d did not get ready", k);
  }
  touch_ready_file();
  struct timespec ts;
  clock_gettime(O.realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
  uint64_t t_go = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + 200000000ull +
                  (uint64_t)(O.idle * 1e9);
  for (int k = 0; k < O.procs; k++) {
    if (write(go[k][1], &t_go, 8) != 8) die("go pipe");
  }
  G.t_go = t_go;
  if (O.kill_pid) { /* the workers know the same time (begin_phases); the parent kills */
    uint64_t at = t_go + (uint64_t)((O.warmup + O.duration + O.kill_after) * 1e9);
    for (uint64_t t; (t = now_ns()) < at;) {
      struct timespec d = {(time_t)((at - t) / 1000000000ull), (long)((at - t) % 1000000000ull)};
      nanosleep(&d, NULL);
    }
    do_kill();
  }
  res *total = calloc(1, sizeof *total), *one = malloc(sizeof *one);
  long nr = nrooms_all() > 0 ? nrooms_all() : 1;
  uint64_t *joined = calloc((size_t)nr, 8), *sent = calloc((size_t)nr, 8);
  uint64_t *tj = calloc((size_t)nr, 8), *ts_ = calloc((size_t)nr, 8);
  nb_hist_init(&total->lat);
  nb_hist_init(&total->hs);
  nb_hist_init(&total->back);
  nb_hist_init(&total->lat_storm);
  nb_hist_init(&total->re_dial);
  nb_hist_init(&total->re_join);
  nb_hist_init(&total->ack);
  int failed = 0;
  for (int k = 0; k < O.procs; k++) {
    uint32_t n = 0;
    if (read_all(st[k][0], one, sizeof *one) || read_all(st[k][0], &n, sizeof n) ||
        (n && (read_all(st[k][0], tj, n * 8) || read_all(st[k][0], ts_, n * 8)))) {
      fprintf(stderr, "natter-bench: worker %d gave no result\n", k);
      failed = 1;
      continue;
    }
    res_merge(total, one);
    for (uint32_t i = 0; i < n && i < (uint32_t)nr; i++) {
      joined[i] += tj[i];
      sent[i] += ts_[i];
    }
  }
  for (int k = 0; k < O.procs; k++) waitpid(pids[k], NULL, 0);
  print_json(total, joined, sent);
  return failed;
}
