/* nt_envelope: encode/decode of the protobuf bus envelope and lifecycle events. */
#ifndef NT_ENVELOPE_H
#define NT_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "natter.pb-c.h"

/* Upper bound of an envelope accepted by nt_env_decode (a client message is at most
 * --max-message-bytes, plus ids). */
#define NT_ENV_MAX_BYTES (16u * 1024u * 1024u)

/* Serializes `env` into `buf` when it fits in `cap` bytes (no allocation), otherwise into
 * a malloc'd buffer. On return *out points to the bytes (either `buf` or a heap buffer the
 * caller frees when *out != buf) and the length is returned; 0 means failure (allocation). */
size_t nt_env_encode(const Natter__Envelope *env, uint8_t *buf, size_t cap, uint8_t **out);

/* Parses an envelope. Returns NULL for malformed or oversized input. The result is
 * owned by the caller: free it with nt_env_free(). */
Natter__Envelope *nt_env_decode(const uint8_t *data, size_t len);
void nt_env_free(Natter__Envelope *env);

/* Same pair for lifecycle events. */
size_t nt_event_encode(const Natter__Event *ev, uint8_t *buf, size_t cap, uint8_t **out);
Natter__Event *nt_event_decode(const uint8_t *data, size_t len);
void nt_event_free(Natter__Event *ev);

#endif
