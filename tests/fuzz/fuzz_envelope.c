/* fuzz_envelope: what a node does with bytes from the bus — envelope decoding
 * (nt_env_decode), the fan-out's renderable checks, rendering and delivery to a local
 * member (the bus handler of a real node), node-subject commands (push, kick, info),
 * and the other bus decoders (lifecycle events, authorizer replies). The member's
 * output is checked against RFC 6455 (fz_check_frames): a bad envelope must never make
 * the node send an invalid frame.
 *
 * data[0] % 6 picks the subject: the member's room, that room's presence subject, the
 * member's user subject, this node's subject, a room without local members, the node
 * subject with a reply inbox. The member's connection id is deterministic
 * (FZ_MEMBER_ID, the node's id generator is reseeded before it connects) so seeds can
 * address it. FZ_WRITE_SEEDS=dir writes seed envelopes there and exits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_node.h"
#include "nt_authz.h"
#include "nt_envelope.h"

static nt_node *n;
static nt_bus_handler bus_in; /* the node's bus input: what the bus hands it */
static char node_subject[NT_SUBJECT_MAX];
static fz_client member = {.open = 0};
static size_t checked;
static int closed;
static char member_id[NT_CONN_ID_LEN + 1];

static void connect_member(void) {
  checked = fz_member_connect(&member, "member", "r", member_id);
  closed = 0;
}

static void write_seed(const char *dir, const char *name, int subj, const Natter__Envelope *e) {
  uint8_t buf[4096], *out;
  size_t len = nt_env_encode(e, buf, sizeof buf, &out);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fputc(subj, f);
  fwrite(out, 1, len, f);
  fclose(f);
  if (out != buf) free(out);
}

static void write_seeds(const char *dir) {
  Natter__Envelope e = NATTER__ENVELOPE__INIT;
  e.id = "m1";
  e.tenant = "t1";
  e.room = "r";
  e.sender_user = "alice";
  e.sender_conn = "c1";
  e.origin_node = "other";
  e.timestamp_ms = 1700000000000;
  e.kind = NATTER__KIND__ROOM_MESSAGE;
  e.payload.data = (uint8_t *)"{\"text\":\"hi\"}";
  e.payload.len = 13;
  write_seed(dir, "room-message", 0, &e);
  e.exclude_sender = 1;
  e.sender_conn = member_id;
  write_seed(dir, "room-message-exclude", 0, &e);
  e.exclude_sender = 0;
  e.kind = NATTER__KIND__PRESENCE;
  e.status = NATTER__PRESENCE_STATUS__ONLINE;
  write_seed(dir, "presence", 1, &e);
  e.kind = NATTER__KIND__DIRECT_MESSAGE;
  e.room = "";
  e.target_user = "member";
  write_seed(dir, "direct", 2, &e);
  e.target_user = "";
  e.target_conn = member_id;
  e.kind = NATTER__KIND__CONN_PUSH;
  e.payload.data = (uint8_t *)"pushed \xff binary";
  e.payload.len = 15;
  write_seed(dir, "conn-push", 3, &e);
  e.kind = NATTER__KIND__CONN_INFO;
  write_seed(dir, "conn-info", 5, &e);
  e.kind = NATTER__KIND__CONN_KICK;
  write_seed(dir, "conn-kick", 3, &e);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const char *const flags[] = {"--send-queue-bytes", "1048576", "--ping-interval",
                                      "3600", "--idle-timeout", "3600", NULL};
  n = fz_node_start(flags);
  bus_in = nt_node_bus_handler(n);
  if (nt_subject_node(node_subject, sizeof node_subject, nt_node_id(n)) < 0) abort();
  connect_member();
  const char *dir = getenv("FZ_WRITE_SEEDS");
  if (dir) {
    write_seeds(dir);
    printf("fuzz_envelope: seeds written to %s (member %s)\n", dir, member_id);
    exit(0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 1 << 20) return 0;
  if (!fz_client_alive(&member) || member.eof || closed) connect_member();
  static const char *const subjects[] = {"natter.room.t1.r", "natter.presence.t1.r",
                                         "natter.user.t1.member", NULL, "natter.room.t1.none",
                                         NULL};
  int s = data[0] % 6;
  const char *subject = subjects[s] ? subjects[s] : node_subject;
  bus_in.on_msg(bus_in.ud, subject, data + 1, size - 1, s == 5 ? "_INBOX.fuzz" : NULL, NULL);
  fz_pump(&member, 2);
  checked += fz_check_frames(member.out + checked, member.out_len - checked, &closed);
  if (checked > (1u << 20)) { /* keep the buffer small: drop what was checked */
    nt_mem_peer *p = &member.peer;
    memmove(p->out, p->out + checked, p->out_len - checked);
    p->out_len -= checked;
    p->out_read = p->out_len;
    checked = 0;
    fz_sync(&member);
  }
  /* the other decoders of bus input */
  Natter__Event *ev = nt_event_decode(data + 1, size - 1);
  if (ev) nt_event_free(ev);
  nt_identity id;
  memset(&id, 0, sizeof id);
  if (nt_identity_set(&id, "u", "t1")) return 0;
  char reason[NT_AUTHZ_REASON_MAX + 1];
  nt_authz_apply(data + 1, size - 1, &id, reason, sizeof reason);
  nt_identity_clear(&id);
  return 0;
}
