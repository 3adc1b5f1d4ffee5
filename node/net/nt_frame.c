/* nt_frame: shared outbound frames. */
#include "nt_frame.h"

#include <stdlib.h>
#include <string.h>

size_t nt_frame_header(uint8_t *hdr, int opcode, int fin, size_t n) {
  hdr[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (n < 126) {
    hdr[1] = (uint8_t)n;
    return 2;
  }
  if (n <= 0xffff) {
    hdr[1] = 126;
    hdr[2] = (uint8_t)(n >> 8);
    hdr[3] = (uint8_t)n;
    return 4;
  }
  hdr[1] = 127;
  for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
  return 10;
}

nt_frame *nt_frame_new(int opcode, size_t payload_len) {
  if (payload_len > UINT32_MAX - 16) return NULL;
  uint8_t hdr[10];
  size_t h = nt_frame_header(hdr, opcode, 1, payload_len);
  nt_frame *f = malloc(sizeof *f + h + payload_len);
  if (!f) return NULL;
  nt_frame_init(f, (uint32_t)h, (uint32_t)(h + payload_len));
  memcpy(f->data, hdr, h);
  return f;
}

nt_frame *nt_frame_from(int opcode, const void *payload, size_t payload_len) {
  nt_frame *f = nt_frame_new(opcode, payload_len);
  if (f && payload_len) memcpy(nt_frame_payload(f), payload, payload_len);
  return f;
}

void nt_frame_unref(nt_frame *f) {
  if (f && --f->refs == 0) {
    if (f->z) nt_frame_unref(f->z);
    free(f);
  }
}

nt_frame *nt_frame_raw(const void *bytes, size_t len) {
  if (len > UINT32_MAX - 16) return NULL;
  nt_frame *f = malloc(sizeof *f + len);
  if (!f) return NULL;
  nt_frame_init(f, 0, (uint32_t)len);
  memcpy(f->data, bytes, len);
  return f;
}
