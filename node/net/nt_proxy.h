/* nt_proxy: the client address of a request that came through trusted proxies — which
 * X-Forwarded-For entry to believe (docs/security.md, "Behind a proxy"). */
#ifndef NT_PROXY_H
#define NT_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* Pure functions, any thread; nothing is allocated.
 *
 * `trusted` is --trusted-proxies: a comma-separated list of addresses and CIDR blocks
 * ("10.0.0.0/8, 192.168.1.7, fd00::/8"), or NULL.
 *
 *  - trusted NULL (plain --trust-proxy on): the socket's peer is the one proxy; the
 *    client is the LAST X-Forwarded-For entry — the one that proxy appended. Entries
 *    before it are whatever the client sent and are never believed.
 *  - trusted set: X-Forwarded-For is read only when the socket's peer is in the list;
 *    then entries are walked from the right, skipping those in the list, and the first
 *    one that is not is the client (every entry trusted: the leftmost).
 *
 * Returns 1 and sets *ip / *len to the chosen entry (inside `xff`, trimmed), or 0 when the
 * socket's own address stands (no header, peer not trusted, or the chosen entry is empty
 * or not an IP address). `peer` is 4 or 16 bytes by `peer_family` (4 or 6). */
int nt_proxy_client(const char *trusted, const uint8_t *peer, int peer_family,
                    const char *xff, const char **ip, size_t *len);

/* 1 when `trusted` is a valid list (as above), 0 otherwise. */
int nt_proxy_list_valid(const char *trusted);

#endif
