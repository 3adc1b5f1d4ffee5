/* nt_nats_opts: the one place a NATS connection's options are created — servers, name,
 * credentials (creds file, NKey seed) and TLS — for every NATS connection of a node (the
 * bus and the JetStream history), so they all authenticate the same way.
 * Threading: any thread (pure functions and nats.c option calls). */
#ifndef NT_NATS_OPTS_H
#define NT_NATS_OPTS_H

#include <nats/nats.h>
#include <stddef.h>

/* Credentials and TLS of the node's NATS connections; every member may be NULL. */
typedef struct nt_nats_sec {
  const char *creds;     /* .creds file: user JWT and NKey seed (operator/JWT mode) */
  const char *nkey_seed; /* file with a user NKey seed ("SU..."); the public key is derived */
  const char *tls_ca;    /* PEM CA bundle to verify the servers: turns TLS on */
  const char *tls_cert;  /* PEM client certificate chain (mutual TLS; turns TLS on) */
  const char *tls_key;   /* its private key */
} nt_nats_sec;

/* Creates options with the servers, the connection name (NULL: none) and `sec` (NULL:
 * none) applied. NATS_OK and *out (the caller adds its callbacks and destroys it), or the
 * nats.c status of the step that failed (an unreadable file, a bad seed:
 * NATS_INVALID_ARG), with nothing allocated. */
natsStatus nt_nats_opts_new(const char **urls, int nurls, const char *name,
                            const nt_nats_sec *sec, natsOptions **out);

/* The NKey public key ("U...", 56 characters + NUL in out[cap >= 57]) of a user seed
 * ("SU...", base32 of prefix, Ed25519 seed, CRC-16). 0, or NT_EINVAL for anything that is
 * not a valid user seed. */
int nt_nkey_public_from_seed(const char *seed, char *out, size_t cap);

/* Finds the first user seed in `text` (a seed file: the seed alone, or within a
 * "-----BEGIN USER NKEY SEED-----" block) and writes its public key as above. */
int nt_nkey_public_from_text(const char *text, char *out, size_t cap);

#endif
