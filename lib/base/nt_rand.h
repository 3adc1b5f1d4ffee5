/* nt_rand: ids clients see, from the OS CSPRNG (getrandom), read in 4 KiB refills so a
 * message id costs a few bytes of a buffer, not a system call. */
#ifndef NT_RAND_H
#define NT_RAND_H

#include <stddef.h>
#include <stdint.h>

#define NT_RAND_POOL 4096

/* One pool per owner (the node's loop thread); not thread-safe. Zero-initialised is
 * valid: the first use fills it. */
typedef struct nt_rand {
  uint8_t buf[NT_RAND_POOL];
  size_t pos; /* next unused byte; NT_RAND_POOL (or 0 on a fresh pool) means empty */
  int filled;
} nt_rand;

/* `n` random bytes. The kernel's CSPRNG never fails once seeded; should getrandom fail
 * anyway the process aborts rather than hand out guessable ids. */
void nt_rand_bytes(nt_rand *r, void *out, size_t n);

/* `len` characters of [A-Za-z0-9], uniformly (rejection sampling, no modulo bias), NUL
 * at out[len]: ≈ 5.95 bits per character (20 characters ≈ 119 bits). */
void nt_rand_id(nt_rand *r, char *out, size_t len);

#endif
