/* nt_deflate: permessage-deflate (RFC 7692) — negotiation, the node's shared compressor
 * and its bounded inflater.
 *
 * Every connection that takes the extension negotiates server_no_context_takeover AND
 * client_no_context_takeover: neither side keeps an LZ77 window between messages. That is
 * what lets one node serve all its connections with ONE deflate stream and ONE inflate
 * stream, each reset per message, and what lets a compressed frame built once be queued on
 * every member that negotiated the extension (nt_frame.z). A connection costs one byte
 * (nt_conn.pmd), never a pair of z_streams (~300 KB with 32 KiB windows).
 *
 * Pure: zlib and nt_frame only, no I/O and no node; unit-tested in tests/unit/test_deflate.c.
 * Loop thread only (the streams and buffers are shared). */
#ifndef NT_DEFLATE_H
#define NT_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "nt_frame.h"
#include "nt_metrics.h"

/* Room for the response extension (the longest one is 94 bytes). */
#define NT_DEFLATE_RESPONSE_MAX 128

/* Chooses the first acceptable permessage-deflate offer of a Sec-WebSocket-Extensions
 * value (`header`, NULL when the header is absent; several header lines joined with ", ").
 * An offer is refused when it has a parameter RFC 7692 does not define for offers, a
 * parameter twice or an invalid value (§7: the server must decline it); other extensions
 * are ignored. On acceptance writes the Sec-WebSocket-Extensions response value into
 * `resp` (`cap` >= NT_DEFLATE_RESPONSE_MAX) — always server_no_context_takeover and
 * client_no_context_takeover, plus server_max_window_bits when the offer limited it — and
 * the server window the connection allows (8..15) into *wbits, and returns 1. Returns 0
 * when nothing is accepted (no response header: the connection runs uncompressed). */
int nt_deflate_negotiate(const char *header, char *resp, size_t cap, uint8_t *wbits);

typedef struct nt_deflate nt_deflate;

/* Creates the node's compressor/inflater. Frames whose payload is below `min_bytes` are
 * never compressed; inflated messages above `max_inflated` bytes are refused. `m` (may be
 * NULL) receives the deflate_* / inflate_* counters and must outlive the object. Returns
 * NULL on allocation failure. */
nt_deflate *nt_deflate_new(size_t min_bytes, size_t max_inflated, nt_metrics *m);
void nt_deflate_free(nt_deflate *z);

/* The frame to queue on a connection that negotiated the extension with server window
 * `wbits`: the compressed variant of `f` (RSV1 set), built the first time any connection
 * asks and then shared through f->z, or `f` itself when `f` is not an unfragmented text
 * or binary frame, its payload is under the threshold, compression does not make it
 * smaller, or the payload is longer than the connection's window (2^wbits bytes; no
 * back-reference can then reach further than the window). Never fails: on any error the
 * plain frame is returned. Borrowed: the variant lives as long as `f`. */
nt_frame *nt_deflate_frame(nt_deflate *z, nt_frame *f, unsigned wbits);

/* Inflates one compressed message (the payload of a message whose first frame had RSV1)
 * into the object's buffer; *out stays valid until the next call. Returns 0, NT_ETOOLARGE
 * when the inflated message would exceed max_inflated (the caller closes with 1009; the
 * work done is bounded by that size, so a zip bomb costs at most one limit's worth), or
 * NT_EINVAL for data that is not a valid DEFLATE stream (close with 1007). */
int nt_deflate_inflate(nt_deflate *z, const uint8_t *in, size_t len, const uint8_t **out,
                       size_t *out_len);

/* Compresses `len` bytes as one permessage-deflate message (raw DEFLATE, sync flush, the
 * final 00 00 ff ff removed) into a malloc'd buffer the caller frees. Returns NULL on
 * failure. For tests and tools; the node uses nt_deflate_frame. */
uint8_t *nt_deflate_compress(nt_deflate *z, const uint8_t *in, size_t len, size_t *out_len);

#endif
