/* fuzz_ws: the WebSocket receive path of a real node — reads, the wslay glue (nt_conn.c),
 * UTF-8 checks, the rate limit, the client protocol and the hub — over the memory
 * transport, after a valid upgrade. Every byte the node sends back is checked against
 * RFC 6455 (fz_check_output).
 *
 * data[0] bit 7 picks the input format:
 *   raw (0):        the rest is the byte stream after the upgrade request (frames are the
 *                   fuzzer's own, masked or not);
 *   structured (1): the rest is records [b0][len16 big-endian][payload]; the harness
 *                   masks each as a client frame with b0's FIN/RSV/opcode bits, so the
 *                   fuzzer reaches the protocol without learning masking.
 * data[0] bit 6: offer permessage-deflate in the upgrade (compressed frames, inflate
 *                caps: the node must close 1009/1007, never inflate without bound);
 * data[0] bits 0-5: write slice (0: all at once), exercising partial frames and reads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fz_node.h"

static char *req, *req_pmd;
static size_t req_len, req_pmd_len;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const char *const flags[] = {
      "--max-message-bytes", "4096", "--send-queue-bytes", "65536", "--rate-limit", "200",
      "--rate-burst", "50", "--rate-close-after", "20", "--max-rooms-per-connection", "8",
      "--ping-interval", "3600", "--idle-timeout", "3600", NULL};
  fz_node_start(flags);
  fz_node_keep();
  req = fz_upgrade_request("t1", "fuzzer", &req_len);
  req_pmd = fz_upgrade_request_ext("t1", "fuzzer", "permessage-deflate; client_max_window_bits",
                                   &req_pmd_len);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  uint8_t ctl = data[0];
  data++;
  size--;
  uint8_t *buf = NULL;
  if (ctl & 0x80) {
    buf = fz_structured(data, size, &size);
    if (!buf) return 0;
    data = buf;
  }
  fz_client cl;
  if (fz_client_open(&cl)) {
    free(buf);
    return 0;
  }
  const char *rq = ctl & 0x40 ? req_pmd : req;
  size_t rq_len = ctl & 0x40 ? req_pmd_len : req_len;
  size_t slice = ctl & 0x3f ? (size_t)(ctl & 0x3f) * 7 : size;
  if (slice < size / 32) slice = size / 32; /* at most ~32 reads: keep runs fast */
  if (slice == size) { /* request and frames in one read */
    uint8_t *all = malloc(rq_len + size);
    if (all) {
      memcpy(all, rq, rq_len);
      if (size) memcpy(all + rq_len, data, size);
      fz_client_write(&cl, all, rq_len + size);
      free(all);
    }
    fz_pump(&cl, 2);
  } else {
    fz_client_write(&cl, rq, rq_len);
    fz_pump(&cl, 1);
    for (size_t off = 0; off < size && !cl.eof; off += slice) {
      fz_client_write(&cl, data + off, size - off < slice ? size - off : slice);
      fz_pump(&cl, 1);
    }
  }
  fz_client_finish(&cl);
  fz_node_settled();
  free(buf);
  return 0;
}
