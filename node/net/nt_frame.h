/* nt_frame: reference-counted, pre-rendered outbound WebSocket frames shared by members.
 *
 * A room message is rendered once per node into one nt_frame (header + payload, server
 * frames are unmasked) and the same frame is queued on every local member's connection.
 * Loop thread only (the count is not atomic). */
#ifndef NT_FRAME_H
#define NT_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef struct nt_frame {
  uint32_t refs;
  uint32_t len;    /* bytes in data: WebSocket header + payload */
  uint32_t hdr;    /* bytes of WebSocket header at the start of data */
  uint8_t zdone;   /* nt_deflate has looked at this frame (z is then final) */
  struct nt_frame *z; /* permessage-deflate variant (RSV1), built once on first use by a
                         connection that negotiated it, shared by all of them; owned (one
                         reference) and released with this frame. NULL: none */
  uint8_t data[];
} nt_frame;

/* For code that lays out a frame itself (nt_proto's in-place rendering). */
static inline void nt_frame_init(struct nt_frame *f, uint32_t hdr, uint32_t len) {
  f->refs = 1;
  f->hdr = hdr;
  f->len = len;
  f->zdone = 0;
  f->z = NULL;
}

#define NT_WS_OP_TEXT 0x1
#define NT_WS_OP_BINARY 0x2
#define NT_WS_OP_CLOSE 0x8
#define NT_WS_OP_PING 0x9
#define NT_WS_OP_PONG 0xa

/* Allocates a frame with refs = 1 for an unfragmented, unmasked message of `opcode` whose
 * payload is `payload_len` bytes; the header is written and the payload is left for the
 * caller to fill at nt_frame_payload(f). Returns NULL on allocation failure. */
nt_frame *nt_frame_new(int opcode, size_t payload_len);

/* A frame holding already-framed bytes (hdr = 0), copied; for wslay's control output. */
nt_frame *nt_frame_raw(const void *bytes, size_t len);

/* Same as nt_frame_new, copying `payload`. */
nt_frame *nt_frame_from(int opcode, const void *payload, size_t payload_len);

static inline uint8_t *nt_frame_payload(nt_frame *f) { return f->data + f->hdr; }

static inline nt_frame *nt_frame_ref(nt_frame *f) {
  f->refs++;
  return f;
}

/* Drops one reference; frees the frame with the last one. NULL is ignored. */
void nt_frame_unref(nt_frame *f);

/* Writes the header of an unmasked frame into `hdr` (>= 10 bytes); returns its length. */
size_t nt_frame_header(uint8_t *hdr, int opcode, int fin, size_t payload_len);

#endif
