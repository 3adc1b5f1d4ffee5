/* nt_utf8: strict, incremental UTF-8 validation (RFC 3629; what RFC 6455 requires). */
#ifndef NT_UTF8_H
#define NT_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define NT_UTF8_ACCEPT 0u
#define NT_UTF8_REJECT 1u

/* Feeds `len` bytes to the validator whose state is `*state` (start with NT_UTF8_ACCEPT).
 * Returns the new state: NT_UTF8_REJECT as soon as the input can no longer be valid
 * (fail fast, even in the middle of a message), NT_UTF8_ACCEPT when it ends on a
 * character boundary, any other value when a character is incomplete. */
uint32_t nt_utf8_feed(uint32_t *state, const void *buf, size_t len);

/* Returns 1 when the whole buffer is valid UTF-8, else 0. */
int nt_utf8_valid(const void *buf, size_t len);

#endif
