/* fuzz_api_http: the HTTP API of --api-listen end to end on a real node — keep-alive
 * request parsing (bodies, pipelining), the admin-token check, routing (nt_api.c) and
 * every handler: push to / describe / close a connection, room and user messages, room
 * presence, health and metrics. A member connection (deterministic id FZ_MEMBER_ID, in
 * room "r" of tenant t1) receives what the API pushes; its frames are checked against
 * RFC 6455, and every API response must be HTTP/1.1.
 *
 * data[0]: write slice (0: all at once); the rest is the byte stream of one API
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
  if (getenv("FZ_PRINT_MEMBER")) {
    printf("member %s\n", member_id);
    exit(0);
  }
  return 0;
}

static void check_http(const uint8_t *out, size_t len) {
  if (len && (len < 9 || memcmp(out, "HTTP/1.1 ", 9))) abort();
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
  size_t slice = ctl ? (size_t)ctl * 3 : size;
  if (slice < size / 16) slice = size / 16;
  for (size_t off = 0; off < size && !api.eof; off += slice) {
    fz_client_write(&api, data + off, size - off < slice ? size - off : slice);
    fz_pump(&api, 2);
  }
  fz_pump(&api, 2);
  check_http(api.out, api.out_len);
  fz_client_finish(&api);
  fz_pump(&member, 1);
  checked += fz_check_frames(member.out + checked, member.out_len - checked, &closed);
  if (checked > (1u << 20)) {
    memmove(member.out, member.out + checked, member.out_len - checked);
    member.out_len -= checked;
    checked = 0;
  }
  return 0;
}
