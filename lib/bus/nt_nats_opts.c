/* nt_nats_opts: NATS connection options shared by every connection of a node, and the
 * NKey public key of a seed (see nt_nats_opts.h). */
#include "nt_nats_opts.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

#define NKEY_PREFIX_SEED (18 << 3) /* 'S' */
#define NKEY_PREFIX_USER (20 << 3) /* 'U' */
#define SEED_CHARS 58              /* base32 of 2 prefix bytes, 32 seed bytes, CRC-16 */
#define PUB_CHARS 56               /* base32 of 1 prefix byte, 32 key bytes, CRC-16 */

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* CRC-16/XMODEM, the NKey checksum (stored little-endian after the payload). */
static uint16_t crc16(const unsigned char *p, size_t n) {
  uint16_t c = 0;
  while (n--) {
    c ^= (uint16_t)(*p++ << 8);
    for (int i = 0; i < 8; i++) c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
  }
  return c;
}

/* RFC 4648 base32 without padding; returns the decoded length or -1. The bits past the
 * last whole byte must be zero: one text per key. */
static int b32_decode(const char *s, size_t n, unsigned char *out, size_t cap) {
  uint32_t acc = 0;
  int bits = 0;
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    const char *at = s[i] ? strchr(b32, s[i]) : NULL;
    if (!at) return -1;
    acc = (acc << 5) | (uint32_t)(at - b32);
    bits += 5;
    if (bits >= 8) {
      if (len == cap) return -1;
      out[len++] = (unsigned char)(acc >> (bits - 8));
      bits -= 8;
    }
  }
  if (acc & ((1u << bits) - 1)) return -1;
  return (int)len;
}

static void b32_encode(const unsigned char *p, size_t n, char *out) {
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 8) | p[i];
    bits += 8;
    while (bits >= 5) {
      *out++ = b32[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits) *out++ = b32[(acc << (5 - bits)) & 31];
  *out = '\0';
}

int nt_nkey_public_from_seed(const char *seed, char *out, size_t cap) {
  unsigned char raw[40], pub[35];
  if (!seed || strlen(seed) != SEED_CHARS || cap < PUB_CHARS + 1 ||
      b32_decode(seed, SEED_CHARS, raw, sizeof raw) != 36)
    return NT_EINVAL;
  uint16_t want = (uint16_t)(raw[34] | raw[35] << 8);
  int type = ((raw[0] & 7) << 5) | ((raw[1] & 0xf8) >> 3);
  if (crc16(raw, 34) != want || (raw[0] & 0xf8) != NKEY_PREFIX_SEED || type != NKEY_PREFIX_USER)
    return NT_EINVAL;
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw + 2, 32);
  size_t len = 32;
  int ok = k && EVP_PKEY_get_raw_public_key(k, pub + 1, &len) == 1 && len == 32;
  EVP_PKEY_free(k);
  memset(raw, 0, sizeof raw); /* the private key */
  if (!ok) return NT_EINVAL;
  pub[0] = NKEY_PREFIX_USER;
  uint16_t c = crc16(pub, 33);
  pub[33] = (unsigned char)(c & 0xff);
  pub[34] = (unsigned char)(c >> 8);
  b32_encode(pub, sizeof pub, out);
  return 0;
}

int nt_nkey_public_from_text(const char *text, char *out, size_t cap) {
  for (const char *p = text ? strstr(text, "SU") : NULL; p; p = strstr(p + 1, "SU")) {
    size_t n = strspn(p, b32);
    if (n == SEED_CHARS && (p == text || !strchr(b32, p[-1]))) {
      char seed[SEED_CHARS + 1];
      memcpy(seed, p, SEED_CHARS);
      seed[SEED_CHARS] = '\0';
      int r = nt_nkey_public_from_seed(seed, out, cap);
      memset(seed, 0, sizeof seed);
      return r;
    }
  }
  return NT_EINVAL;
}

/* The public key of the seed in file `path` (read here; nats.c reads it again to sign). */
static natsStatus nkey_public_of_file(const char *path, char *pub, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return NATS_INVALID_ARG;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  int r = nt_nkey_public_from_text(buf, pub, cap);
  memset(buf, 0, sizeof buf);
  return r ? NATS_INVALID_ARG : NATS_OK;
}

static natsStatus apply_sec(natsOptions *o, const nt_nats_sec *sec) {
  natsStatus s = NATS_OK;
  if (sec->creds) s = natsOptions_SetUserCredentialsFromFiles(o, sec->creds, NULL);
  if (s == NATS_OK && sec->nkey_seed) {
    char pub[PUB_CHARS + 1];
    s = nkey_public_of_file(sec->nkey_seed, pub, sizeof pub);
    if (s == NATS_OK) s = natsOptions_SetNKeyFromSeed(o, pub, sec->nkey_seed);
  }
  if (s == NATS_OK && (sec->tls_ca || sec->tls_cert)) s = natsOptions_SetSecure(o, true);
  if (s == NATS_OK && sec->tls_ca) s = natsOptions_LoadCATrustedCertificates(o, sec->tls_ca);
  if (s == NATS_OK && sec->tls_cert)
    s = natsOptions_LoadCertificatesChain(o, sec->tls_cert, sec->tls_key);
  return s;
}

natsStatus nt_nats_opts_new(const char **urls, int nurls, const char *name,
                            const nt_nats_sec *sec, natsOptions **out) {
  natsOptions *o = NULL;
  natsStatus s = natsOptions_Create(&o);
  if (s == NATS_OK) s = natsOptions_SetServers(o, urls, nurls);
  if (s == NATS_OK && name) s = natsOptions_SetName(o, name);
  if (s == NATS_OK && sec) s = apply_sec(o, sec);
  if (s == NATS_OK) *out = o;
  else natsOptions_Destroy(o);
  return s;
}
