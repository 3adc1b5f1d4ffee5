/* fuzz_api_http: the HTTP API of --api-listen end to end on a real node — keep-alive
 * request parsing (bodies, pipelining), the admin-token check, routing (nt_api.c) and
 * every handler: push to / describe / close a connection, room and user messages, room
 * presence, health and metrics. A member connection (deterministic id FZ_MEMBER_ID, in
 * room "r" of tenant t1) receives what the API pushes; its frames are checked against
 * RFC 6455, and every API response must be HTTP/1.1.
 *
 * Pipelining (several requests in one read, answers unsent): data[0] bits 6-7 pick the
 * reader of the API connection — 0 reads all at once; 1 reads every loop turn through a
 * 2 KiB window (socket buffer); 2 has a 16 KiB window and stops reading while it writes
 * and for 8 more loop turns, then reads; 3 the same with a 2 KiB window. A node that
 * parses on while answers wait (issue 15 row 2) grows its queue past the bound checked
 * here; the answers, read at the end, must be complete HTTP/1.1 responses back to back.
 *
 * data[0] bits 0-5: write slice (0: all at once); the rest is the byte stream of one API
 * connection (seeds carry the admin token). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_node.h"

static nt_node *n;
static fz_client member = {.open = 0};
static size_t checked;
static int closed;
static char member_id[NT_CONN_ID_LEN + 1];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const char *const flags[] = {"--max-message-bytes", "8192", "--send-queue-bytes",
                                      "1048576", "--ping-interval", "3600", "--idle-timeout",
                                      "3600", NULL};
  n = fz_node_start(flags);
  checked = fz_member_connect(&member, "member", "r", member_id);
  fz_node_keep();
  if (getenv("FZ_PRINT_MEMBER")) {
    printf("member %s\n", member_id);
    exit(0);
  }
  return 0;
}

/* What may wait unsent on an API connection whose peer stopped reading: the pipelining
 * bound (64 KiB, nt_conn.c) plus the answer that crossed it (here < 128 KiB: /metrics of
 * this small node is the largest). */
#define API_QUEUE_MAX ((64u << 10) + (128u << 10))

/* Every answer is "HTTP/1.1 ", a head, and Content-Length bytes of body (none for 1xx,
 * 204, 304); nothing follows "Connection: close". An answer cut short by a close is
 * allowed only at the end. */
static void check_http(const uint8_t *out, size_t len) {
  size_t off = 0;
  while (off < len) {
    if (len - off < 12 || memcmp(out + off, "HTTP/1.1 ", 9)) abort();
    const uint8_t *end = memmem(out + off, len - off, "\r\n\r\n", 4);
    if (!end) return; /* cut short */
    size_t head = (size_t)(end - (out + off)) + 4;
    int status = atoi((const char *)out + off + 9);
    if (status < 100 || status > 599) abort();
    const uint8_t *cl = memmem(out + off, head, "\r\nContent-Length: ", 18);
    size_t body = cl ? strtoul((const char *)cl + 18, NULL, 10) : 0;
    if (!cl && status >= 200 && status != 204 && status != 304) abort();
    if (body > len - off - head) return; /* cut short */
    off += head + body;
    if (memmem(out + off - body - head, head, "\r\nConnection: close\r\n", 21) && off != len)
      abort();
  }
}

static void check_queue(const fz_client *api) {
  if (api->peer.conn && api->peer.conn->qbytes > API_QUEUE_MAX) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  if (!fz_client_alive(&member) || member.eof || closed) {
    checked = fz_member_connect(&member, "member", "r", member_id);
    closed = 0;
  }
  uint8_t ctl = data[0];
  data++;
  size--;
  fz_client api;
  if (fz_client_open_api(&api)) return 0;
  static const size_t windows[4] = {0, 2048, 16384, 2048};
  api.peer.window = windows[ctl >> 6];
  api.hold = (ctl & 0x80) != 0;
  size_t slice = ctl & 0x3f ? (size_t)(ctl & 0x3f) * 3 : size;
  if (slice < size / 16) slice = size / 16;
  for (size_t off = 0; off < size && !api.eof; off += slice) {
    fz_client_write(&api, data + off, size - off < slice ? size - off : slice);
    fz_pump(&api, 2);
    check_queue(&api);
  }
  for (int i = 0; i < (api.hold ? 8 : 2); i++) {
    fz_pump(&api, 1);
    check_queue(&api);
  }
  api.hold = 0; /* reads the rest */
  api.peer.window = 0;
  for (int i = 0; i < 4; i++) fz_pump(&api, 1);
  check_http(api.out, api.out_len);
  fz_client_finish(&api);
  fz_node_settled();
  fz_pump(&member, 1);
  checked += fz_check_frames(member.out + checked, member.out_len - checked, &closed);
  if (checked > (1u << 20)) {
    memmove(member.out, member.out + checked, member.out_len - checked);
    member.out_len -= checked;
    checked = 0;
  }
  return 0;
}
