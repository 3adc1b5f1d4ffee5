/* nt_hub: the node's local index — which local connections are in which room, and which
 * local connections belong to which user. No I/O: the node asks it questions and acts
 * on the answers (subscribe on a room's first local member, unsubscribe on its last).
 * Rooms and user sets are keyed by their bus subject, so a message arriving on a subject
 * finds its members with one lookup. Loop thread only. */
#ifndef NT_HUB_H
#define NT_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "nt_bus.h"
#include "nt_conn.h"
#include "nt_map.h"
#include "nt_subject.h"

/* A room with local members. Its four strings are exact-length, in the same allocation. */
typedef struct nt_room {
  const char *subject;            /* natter.room.<tenant>.<room> */
  const char *psubject;           /* natter.presence.<tenant>.<room> */
  const char *tenant;
  const char *name;
  nt_conn **members;
  uint32_t n, cap;
  nt_bus_sub *sub, *psub;         /* owned by the node (bus handles) */
  struct nt_rhist *hist;          /* history state (nt_resume.c); NULL with history off */
  uint8_t ready;                  /* the bus server confirmed the subscriptions */
  uint32_t npending;              /* local members whose `joined` is not sent (nt_pfan.c) */
  struct nt_pfan_ring *pring;     /* presence frames kept for them, or NULL (nt_pfan.c) */
  uint64_t total;                 /* members cluster-wide, as the last join reported (0: unknown) */
  char str[];                     /* the strings above */
} nt_room;

/* The local connections of one user. `sub` is the user's own bus subscription, or NULL
 * when the tenant's wildcard (nt_hub_tenant.wild) delivers the user's messages. */
typedef struct nt_userset {
  nt_conn **conns;                /* &conn0 until a second connection comes */
  uint32_t n, cap;
  nt_bus_sub *sub;
  nt_conn *conn0;                 /* the usual case: one connection per user and node */
  char key[];                     /* "<tenant>.<user>": its subject without "natter.user." */
} nt_userset;

/* A tenant with local users. Up to --max-user-subscriptions users of a tenant get a bus
 * subscription each (natter.user.<tenant>.<user>); past that the node subscribes once to
 * natter.user.<tenant>.* (`wild`) and keeps it until the tenant's last local user leaves.
 * Users subscribed before the wildcard keep their own subscription, which stays the one
 * that delivers their messages (the wildcard's copy is dropped: nt_fanout.c). */
typedef struct nt_hub_tenant {
  uint32_t nusers;                /* user sets of the tenant */
  nt_bus_sub *wild;               /* owned by the node (bus handle), or NULL */
  char name[];
} nt_hub_tenant;

/* The maps borrow their keys from the values (subjects, connection ids, tenant names). */
typedef struct nt_hub {
  nt_map rooms;     /* room subject and presence subject -> nt_room* */
  nt_map users;     /* "<tenant>.<user>" -> nt_userset* */
  nt_map conns;     /* connection id -> nt_conn* */
  nt_map tenants;   /* tenant -> nt_hub_tenant* (tenants with local users) */
  size_t nrooms;
  size_t nwild;     /* tenants with a wildcard user subscription */
  /* Called with each room before it is freed, to release what others keep in it
   * (nt_pfan_room_free: the presence ring); NULL: nothing. Set after nt_hub_init. */
  void (*room_dtor)(nt_room *r);
} nt_hub;

void nt_hub_init(nt_hub *h);
/* Frees rooms and user sets (connections are not the hub's). */
void nt_hub_free(nt_hub *h);

nt_room *nt_hub_room(nt_hub *h, const char *subject);     /* by room or presence subject */
nt_userset *nt_hub_userset(nt_hub *h, const char *subject);   /* by user subject */
/* Writes the user set's bus subject natter.user.<tenant>.<user> (nt_subject_user);
 * returns its length, NT_EINVAL or NT_ETOOLARGE. */
int nt_hub_user_subject(const nt_userset *u, char *out, size_t cap);
nt_conn *nt_hub_conn(nt_hub *h, const char *conn_id);

/* Adds `c` to room (tenant, name). *created is set to 1 when the room had no local
 * member before (the caller subscribes). Returns the room, or NULL with *err set:
 * NT_EINVAL (bad id), NT_ENOMEM. Joining twice is a no-op returning the room. */
nt_room *nt_hub_join(nt_hub *h, nt_conn *c, const char *tenant, const char *name,
                     int *created, int *err);

/* Returns 1 when `c` is in room `r`. */
int nt_hub_is_member(const nt_conn *c, const nt_room *r);

/* Finds c's membership of (tenant, name) or NULL. */
nt_room *nt_hub_conn_room(const nt_conn *c, const char *name);

/* Removes `c` from `r`. Returns 1 when the room has no local member left: the caller
 * unsubscribes and then calls nt_hub_room_free(). */
int nt_hub_leave(nt_hub *h, nt_conn *c, nt_room *r);
void nt_hub_room_free(nt_hub *h, nt_room *r);

/* Registers the connection (id and user set). *created as for rooms (the user set is new
 * and counted in its tenant: nt_hub_tenant_of). Returns 0 or error. */
int nt_hub_add_conn(nt_hub *h, nt_conn *c, int *created);
/* The tenant record of a user set (exists while the tenant has user sets). */
nt_hub_tenant *nt_hub_tenant_of(nt_hub *h, const nt_userset *u);
/* Unregisters; returns the user set when it became empty (caller unsubscribes u->sub and
 * frees it with nt_hub_userset_free), else NULL. The connection must have left all rooms. */
nt_userset *nt_hub_remove_conn(nt_hub *h, nt_conn *c);
/* Frees an empty user set. Returns the tenant's wildcard subscription when this was the
 * tenant's last local user (the caller unsubscribes it), else NULL. */
nt_bus_sub *nt_hub_userset_free(nt_hub *h, nt_userset *u);

#endif
