/* nt_envelope: thin, allocation-aware wrappers around the protobuf-c generated code. */
#include "nt_envelope.h"

#include <stdlib.h>

size_t nt_env_encode(const Natter__Envelope *env, uint8_t *buf, size_t cap, uint8_t **out) {
  size_t n = natter__envelope__get_packed_size(env);
  uint8_t *dst = buf;
  if (n > cap) {
    dst = malloc(n ? n : 1);
    if (!dst) return 0;
  }
  natter__envelope__pack(env, dst);
  *out = dst;
  return n;
}

Natter__Envelope *nt_env_decode(const uint8_t *data, size_t len) {
  if (!data || len > NT_ENV_MAX_BYTES) return NULL;
  return natter__envelope__unpack(NULL, len, data);
}

void nt_env_free(Natter__Envelope *env) {
  if (env) natter__envelope__free_unpacked(env, NULL);
}

size_t nt_event_encode(const Natter__Event *ev, uint8_t *buf, size_t cap, uint8_t **out) {
  size_t n = natter__event__get_packed_size(ev);
  uint8_t *dst = buf;
  if (n > cap) {
    dst = malloc(n ? n : 1);
    if (!dst) return 0;
  }
  natter__event__pack(ev, dst);
  *out = dst;
  return n;
}

Natter__Event *nt_event_decode(const uint8_t *data, size_t len) {
  if (!data || len > NT_ENV_MAX_BYTES) return NULL;
  return natter__event__unpack(NULL, len, data);
}

void nt_event_free(Natter__Event *ev) {
  if (ev) natter__event__free_unpacked(ev, NULL);
}
