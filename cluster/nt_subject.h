/* nt_subject: the one place that validates ids and builds NATS subjects and Redis keys. */
#ifndef NT_SUBJECT_H
#define NT_SUBJECT_H

#include <stddef.h>

#define NT_ID_MAX 128          /* room, user, tenant and node ids: 1..128 bytes */
#define NT_SUBJECT_MAX 512     /* enough for any subject built here, NUL included */

/* Returns 0 when `id` (length `len`) is a valid room/user/tenant/node id: 1..NT_ID_MAX bytes,
 * none of '.', '*', '>', whitespace, control characters (< 0x20, 0x7f), '{', '}' or ':'
 * (the last three would break Redis hash tags and key separators) and valid UTF-8.
 * Returns NT_EINVAL otherwise. */
int nt_id_check(const char *id, size_t len);

/* Same, for a NUL-terminated string. */
int nt_id_valid(const char *id);

/* Subject builders. Each writes a NUL-terminated subject into `out` (capacity `cap`) and
 * returns its length, or NT_EINVAL when an id is invalid or NT_ETOOLARGE when `cap` is too
 * small. Ids are validated here, so a built subject can never contain a wildcard. */
int nt_subject_room(char *out, size_t cap, const char *tenant, const char *room);
int nt_subject_user(char *out, size_t cap, const char *tenant, const char *user);
int nt_subject_node(char *out, size_t cap, const char *node_id);
int nt_subject_presence(char *out, size_t cap, const char *tenant, const char *room);
/* kind: "connect" | "disconnect" | "join" | "leave". */
int nt_subject_event(char *out, size_t cap, const char *tenant, const char *kind);
/* action must itself be a valid id. */
int nt_subject_route(char *out, size_t cap, const char *action);

/* Parses a subject built by nt_subject_room/user/presence back into its tenant and id
 * (copied into out buffers of NT_ID_MAX+1 bytes). `prefix` is "natter.room." etc.
 * Returns 0 or NT_EINVAL. */
int nt_subject_parse2(const char *subject, const char *prefix, char *tenant, char *id);

/* Redis keys: "<prefix>{<tenant>}:<what>:<id>" — the hash tag keeps one tenant's keys on
 * one Redis Cluster slot. Node-scoped keys use "<prefix>node:<node>". Same return
 * convention as the subject builders. `prefix` defaults to "natter:" when NULL. */
int nt_key_tenant(char *out, size_t cap, const char *prefix, const char *tenant,
                  const char *what, const char *id);
int nt_key_node(char *out, size_t cap, const char *prefix, const char *what,
                const char *node_id);

#endif
