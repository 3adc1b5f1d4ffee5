/* js_live_probe: measures the candidate live paths of room history on a real JetStream
 * server (docs/history.md, "Live path"), with plain nats.c and no natter code.
 *
 *   core    core publish on p.room.<r>, core subscriber on p.room.> (history off)
 *   rp      stream over p.room.> with RePublish to p.live.room.>; core publish on
 *           p.room.<r> (captured by the stream); subscriber on p.live.room.> reads the
 *           Nats-Sequence / Nats-Last-Sequence headers and checks the per-room chain
 *   rpack   as rp, each publish carrying a reply inbox (the stream's PubAck, counted
 *           on a second connection: natter's outage detection)
 *   async   js_PublishAsync into the stream (no RePublish), ack handler counts acks; a
 *           core subscriber on p.room.> sees the messages (without sequence)
 *
 * Not built by CMake (a measurement tool, run by hand):
 *   cc -O2 -o /tmp/js_live_probe bench/js_live_probe.c -lnats -lpthread
 *   nats-server -js -sd /tmp/jsprobe -a 127.0.0.1 -p 14222 &
 *   /tmp/js_live_probe nats://127.0.0.1:14222 rp 200000 16 200
 * Arguments: url mode messages rooms payload-bytes [rate/s for the latency run, 5000]. */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define MAXROOMS 1024
static atomic_long received, acks, ack_errs, chain_ok, chain_gap, hdr_missing;
static uint64_t last_seq[MAXROOMS];
static int64_t *lat;
static atomic_long nlat;
static long lat_cap;
static int measure_lat;
static int64_t hdr_ns_total;

static int room_of(const char *subj) {
  const char *p = strrchr(subj, '.');
  return p ? atoi(p + 2) : 0; /* "...r<N>" */
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *cl) {
  int check = *(int *)cl;
  if (check) {
    int64_t t0 = now_ns();
    const char *s = NULL, *l = NULL;
    if (natsMsgHeader_Get(m, "Nats-Sequence", &s) != NATS_OK ||
        natsMsgHeader_Get(m, "Nats-Last-Sequence", &l) != NATS_OK) {
      atomic_fetch_add(&hdr_missing, 1);
    } else {
      uint64_t seq = strtoull(s, NULL, 10), last = strtoull(l, NULL, 10);
      int r = room_of(natsMsg_GetSubject(m)) % MAXROOMS;
      if (last == last_seq[r]) atomic_fetch_add(&chain_ok, 1);
      else atomic_fetch_add(&chain_gap, 1);
      last_seq[r] = seq;
    }
    hdr_ns_total += now_ns() - t0;
  }
  if (measure_lat && natsMsg_GetDataLength(m) >= 8) {
    int64_t ts;
    memcpy(&ts, natsMsg_GetData(m), 8);
    long i = atomic_fetch_add(&nlat, 1);
    if (i < lat_cap) lat[i] = now_ns() - ts;
  }
  atomic_fetch_add(&received, 1);
  natsMsg_Destroy(m);
}

static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *cl) {
  const char *d = natsMsg_GetData(m);
  if (d && strstr(d, "\"seq\":")) atomic_fetch_add(&acks, 1);
  else atomic_fetch_add(&ack_errs, 1);
  natsMsg_Destroy(m);
}

static void on_js_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *cl) {
  if (pa) atomic_fetch_add(&acks, 1);
  else atomic_fetch_add(&ack_errs, 1);
  natsMsg_Destroy(m);
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void die(const char *what, natsStatus s) {
  fprintf(stderr, "%s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s url core|rp|rpack|async messages rooms payload [rate]\n", argv[0]);
    return 2;
  }
  const char *url = argv[1], *mode = argv[2];
  long n = atol(argv[3]);
  int rooms = atoi(argv[4]), plen = atoi(argv[5]);
  long rate = argc > 6 ? atol(argv[6]) : 5000;
  if (plen < 8) plen = 8;
  int rp = !strcmp(mode, "rp") || !strcmp(mode, "rpack");
  int withack = !strcmp(mode, "rpack");
  int async = !strcmp(mode, "async");

  natsConnection *pub = NULL, *subc = NULL, *ackc = NULL;
  natsStatus s = natsConnection_ConnectTo(&pub, url);
  if (s == NATS_OK) s = natsConnection_ConnectTo(&subc, url);
  if (s == NATS_OK) s = natsConnection_ConnectTo(&ackc, url);
  if (s != NATS_OK) die("connect", s);

  jsCtx *js = NULL;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.AckHandler = on_js_ack;
  jo.PublishAsync.MaxPending = 1 << 20;
  if ((s = natsConnection_JetStream(&js, pub, &jo)) != NATS_OK) die("jetstream", s);
  jsErrCode jerr = 0;
  js_DeleteStream(js, "PROBE", NULL, &jerr);
  if (rp || async) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {"p.room.>"};
    sc.Name = "PROBE";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = getenv("PROBE_MEM") ? js_MemoryStorage : js_FileStorage;
    sc.MaxMsgsPerSubject = getenv("PROBE_NOPER") ? 0 : 1000;
    sc.MaxAge = (int64_t)3600 * 1000000000;
    sc.AllowDirect = true;
    jsRePublish rpc;
    jsRePublish_Init(&rpc);
    rpc.Source = "p.room.>";
    rpc.Destination = "p.live.room.>";
    if (rp) sc.RePublish = &rpc;
    jsStreamInfo *si = NULL;
    if ((s = js_AddStream(&si, js, &sc, NULL, &jerr)) != NATS_OK) die("add stream", s);
    jsStreamInfo_Destroy(si);
  }

  static int check_on = 1, check_off = 0;
  natsSubscription *sub = NULL, *asub = NULL;
  s = natsConnection_Subscribe(&sub, subc, rp ? "p.live.room.>" : "p.room.>", on_msg,
                               rp ? &check_on : &check_off);
  if (s == NATS_OK) natsSubscription_SetPendingLimits(sub, -1, -1);
  if (s == NATS_OK && withack) s = natsConnection_Subscribe(&asub, ackc, "_INBOX.probe.*", on_ack, NULL);
  if (s == NATS_OK) s = natsConnection_Flush(subc);
  if (s == NATS_OK) s = natsConnection_Flush(ackc);
  if (s != NATS_OK) die("subscribe", s);

  char *payload = calloc(1, (size_t)plen);
  memset(payload + 8, 'x', (size_t)plen - 8);
  char subj[64], reply[64];

  /* ---- throughput: publish n as fast as possible, wait for all deliveries ---- */
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    snprintf(subj, sizeof subj, "p.room.r%ld", i % rooms);
    int64_t ts = now_ns();
    memcpy(payload, &ts, 8);
    if (async) s = js_PublishAsync(js, subj, payload, plen, NULL);
    else if (withack) {
      snprintf(reply, sizeof reply, "_INBOX.probe.%ld", i);
      s = natsConnection_PublishRequest(pub, subj, reply, payload, plen);
    } else s = natsConnection_Publish(pub, subj, payload, plen);
    if (s != NATS_OK) die("publish", s);
  }
  int64_t tpub = now_ns();
  int64_t deadline = tpub + (int64_t)60 * 1000000000;
  while (atomic_load(&received) < n && now_ns() < deadline) nats_Sleep(1);
  if (async) js_PublishAsyncComplete(js, NULL);
  while ((withack || async) && atomic_load(&acks) + atomic_load(&ack_errs) < n &&
         now_ns() < deadline)
    nats_Sleep(1);
  int64_t t1 = now_ns();
  double secs = (double)(t1 - t0) / 1e9;
  printf("mode=%s msgs=%ld rooms=%d payload=%d\n", mode, n, rooms, plen);
  printf("  throughput: %.0f msg/s delivered (%ld of %ld in %.2fs; publish loop %.2fs)\n",
         (double)atomic_load(&received) / secs, atomic_load(&received), n, secs,
         (double)(tpub - t0) / 1e9);
  if (withack || async)
    printf("  acks: %ld ok, %ld errors\n", atomic_load(&acks), atomic_load(&ack_errs));
  if (rp)
    printf("  chain: %ld in order (Nats-Last-Sequence == previous seq of the room), %ld "
           "mismatches, %ld without headers; header parse %.2f us/msg\n",
           atomic_load(&chain_ok), atomic_load(&chain_gap), atomic_load(&hdr_missing),
           (double)hdr_ns_total / 1e3 / (double)(atomic_load(&received) ? atomic_load(&received) : 1));

  /* ---- latency at a fixed rate ---- */
  long ln = rate * 3;
  lat_cap = ln;
  lat = calloc((size_t)ln, sizeof *lat);
  atomic_store(&received, 0);
  atomic_store(&nlat, 0);
  measure_lat = 1;
  int64_t start = now_ns(), period = 1000000000 / rate;
  for (long i = 0; i < ln; i++) {
    int64_t due = start + i * period;
    while (now_ns() < due) ;
    snprintf(subj, sizeof subj, "p.room.r%ld", i % rooms);
    int64_t ts = now_ns();
    memcpy(payload, &ts, 8);
    if (async) s = js_PublishAsync(js, subj, payload, plen, NULL);
    else if (withack) {
      snprintf(reply, sizeof reply, "_INBOX.probe.%ld", n + i);
      s = natsConnection_PublishRequest(pub, subj, reply, payload, plen);
    } else s = natsConnection_Publish(pub, subj, payload, plen);
    if ((i & 63) == 0) natsConnection_Flush(pub); /* pace like a busy node */
  }
  deadline = now_ns() + (int64_t)20 * 1000000000;
  while (atomic_load(&received) < ln && now_ns() < deadline) nats_Sleep(1);
  long m = atomic_load(&nlat);
  if (m > ln) m = ln;
  qsort(lat, (size_t)m, sizeof *lat, cmp64);
  if (m)
    printf("  latency at %ld msg/s: p50 %.0f us, p99 %.0f us, p99.9 %.0f us (%ld samples)\n", rate,
           lat[m / 2] / 1e3, lat[m * 99 / 100] / 1e3, lat[m * 999 / 1000] / 1e3, m);

  /* ---- replay cost: direct gets (next message of one room after a sequence) ---- */
  if (rp && getenv("PROBE_DGET")) {
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.NextBySubject = "p.room.r0";
    uint64_t seq = 1;
    long got = 0;
    int64_t d0 = now_ns();
    for (int i = 0; i < 1000; i++) {
      natsMsg *dm = NULL;
      dg.Sequence = seq;
      if (js_DirectGetMsg(&dm, js, "PROBE", NULL, &dg) != NATS_OK) break;
      seq = natsMsg_GetSequence(dm) + 1;
      got++;
      natsMsg_Destroy(dm);
    }
    int64_t d1 = now_ns();
    printf("  direct get next_by_subj: %ld messages, %.1f us each\n", got,
           got ? (double)(d1 - d0) / 1e3 / (double)got : 0.0);
  }

  if (rp || async) js_DeleteStream(js, "PROBE", NULL, &jerr);
  natsSubscription_Destroy(sub);
  natsSubscription_Destroy(asub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(pub);
  natsConnection_Destroy(subc);
  natsConnection_Destroy(ackc);
  free(payload);
  free(lat);
  return 0;
}
