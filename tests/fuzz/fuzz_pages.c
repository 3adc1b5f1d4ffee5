/* fuzz_pages: the replies natter pages or paces (issue 15 rows 5 and 6) on a real node
 * with the memory presence and history holding more than one reply may carry: 300 users
 * of tenant t1 online on another node (all in room "crowd"), room "big" with 60 stored
 * messages of 20..3,000 bytes (~90 KB: a history page is at most half of the 16 KiB send
 * queue), room "small" with 20 short ones. A fresh connection per run sends the fuzzer's
 * frames — tenant-wide and room `presence` with `limit`/`cursor`, `history` with
 * `limit`/`before`, `joinRoom` with `since` (replays paced by what the socket takes),
 * anything else — while a reader with a bounded window reads (or stalls), and the node's
 * clock moves as the input says (the pace timer runs every 5 ms).
 *
 * Oracles besides the sanitizers: every byte the node sends is valid RFC 6455
 * (fz_check_output); a reader that keeps reading and sent one request is never closed as
 * a slow consumer for natter's own replies; the run's connection is freed at its end.
 *
 * Input: data[0] = control, the rest structured records as fuzz_ws's ([b0][len16][payload],
 * masked by the harness).
 *   bits 0-1: the reader's window — unlimited, 1 KiB, 4 KiB, 16 KiB;
 *   bit 2:    the reader stalls: reads one loop turn in 8;
 *   bits 3-4: virtual ms per loop turn — 0, 1, 5, 250 (48 turns of 250 ms outlast the
 *             10 s after which a replay that makes no progress is sent at once);
 *   bit 5:    offer permessage-deflate;
 *   bits 6-7: the frames are written in 1, 2, 4 or 8 pieces, a loop turn between. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_node.h"

#define CROWD 300
#define BIG_MSGS 60
#define SMALL_MSGS 20
#define TURNS 48

static nt_node *n;
static char *req, *req_pmd;
static size_t req_len, req_pmd_len;

static void on_done(void *ud, int status) {
  if (status) abort();
}
static void on_join(void *ud, int status, int transition, const char *const *m, size_t k) {
  if (status) abort();
}

static void send_text(fz_client *c, const char *text) {
  size_t len = strlen(text);
  uint8_t *fr = malloc(len + 14);
  if (!fr) abort();
  fz_client_write(c, fr, fz_frame(fr, 1, 1, text, len));
  free(fr);
  fz_pump(c, 2);
}

static void store(fz_client *w, const char *room, size_t size) {
  char *msg = malloc(size + 128);
  if (!msg) abort();
  int h = sprintf(msg, "{\"action\":\"sendMessage\",\"roomId\":\"%s\",\"excludeSelf\":true,"
                       "\"message\":\"", room);
  memset(msg + h, 'a' + (char)(size % 26), size);
  strcpy(msg + h + size, "\"}");
  send_text(w, msg);
  free(msg);
}

/* The data to page: other nodes' users in presence, stored messages in the history. */
static void fill(void) {
  nt_presence *p = fz_presence();
  for (int i = 0; i < CROWD; i++) {
    char id[32], user[16];
    snprintf(id, sizeof id, "crowdconn%011d", i);
    snprintf(user, sizeof user, "u%03d", i);
    nt_conn_info info = {.conn_id = id, .tenant = "t1", .user = user, .node = "fuzz-other",
                         .source_ip = "10.0.0.1", .connected_at_ms = 1, .last_active_ms = 1};
    if (nt_presence_conn_add(p, &info, on_done, NULL) ||
        nt_presence_join(p, "t1", "crowd", user, id, on_join, NULL))
      abort();
    if (i % 50 == 49) fz_pump(NULL, 2);
  }
  fz_pump(NULL, 4);
  fz_client w;
  char wid[NT_CONN_ID_LEN + 1];
  fz_member_connect(&w, "writer", "big", wid);
  for (size_t i = 0; i < BIG_MSGS; i++) store(&w, "big", 20 + (i * 997) % 2981);
  send_text(&w, "{\"action\":\"joinRoom\",\"roomId\":\"small\"}");
  for (size_t i = 0; i < SMALL_MSGS; i++) store(&w, "small", 1 + i);
  /* The history holds more than a page: its newest page says so. */
  send_text(&w, "{\"action\":\"history\",\"roomId\":\"big\",\"limit\":500,\"requestId\":\"probe\"}");
  fz_pump(&w, 8);
  if (!memmem(w.out, w.out_len, "\"hasMore\":true", 14)) abort();
  fz_client_finish(&w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const char *const flags[] = {
      "--max-message-bytes", "4096", "--send-queue-bytes", "16384", "--rate-limit", "0",
      "--history", "on", "--history-max-per-room", "1000", "--max-rooms-per-connection", "8",
      "--ping-interval", "3600", "--idle-timeout", "3600", NULL};
  n = fz_node_start_history(flags, 1);
  fill();
  fz_node_keep();
  req = fz_upgrade_request("t1", "pager", &req_len);
  req_pmd = fz_upgrade_request_ext("t1", "pager", "permessage-deflate; client_max_window_bits",
                                   &req_pmd_len);
  return 0;
}

/* Data frames (text, binary, continuation) among the records. */
static int data_frames(const uint8_t *d, size_t size) {
  int k = 0;
  for (size_t i = 0; i + 3 <= size;) {
    if ((d[i] & 0x0f) < 8) k++;
    i += 3 + (((size_t)d[i + 1] << 8) | d[i + 2]);
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  static const size_t windows[4] = {0, 1024, 4096, 16384};
  static const uint64_t step_ms[4] = {0, 1, 5, 250};
  uint8_t ctl = data[0];
  size_t len;
  uint8_t *frames = fz_structured(data + 1, size - 1, &len);
  if (!frames) return 0;
  int stall = (ctl & 4) != 0, pmd = (ctl & 0x20) != 0;
  int one_request = !stall && !pmd && data_frames(data + 1, size - 1) <= 1;
  uint64_t slow0 = nt_node_metrics(n)->slow_consumer_closes;

  fz_client cl;
  if (fz_client_open(&cl)) abort();
  cl.peer.window = windows[ctl & 3];
  fz_client_write(&cl, pmd ? req_pmd : req, pmd ? req_pmd_len : req_len);
  fz_pump(&cl, 1);
  size_t pieces = (size_t)1 << (ctl >> 6), piece = len / pieces + 1;
  int turn = 0;
  for (size_t off = 0; off < len && !cl.eof; off += piece, turn++) {
    fz_client_write(&cl, frames + off, len - off < piece ? len - off : piece);
    fz_advance(step_ms[(ctl >> 3) & 3]);
    fz_pump(&cl, 1);
  }
  for (; turn < TURNS && !cl.eof; turn++) {
    cl.hold = stall && turn % 8 != 7;
    fz_advance(step_ms[(ctl >> 3) & 3]);
    fz_pump(&cl, 1);
  }
  fz_client_finish(&cl);
  fz_node_settled();
  if (one_request && nt_node_metrics(n)->slow_consumer_closes != slow0) abort();
  free(frames);
  return 0;
}
