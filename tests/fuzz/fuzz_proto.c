/* fuzz_proto: the client protocol — one text frame (JSON) to an action (nt_proto_parse),
 * and the frames a node renders from what it parsed or relays (route replies). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nt_frame.h"
#include "nt_proto.h"

static void drop(nt_frame *f) {
  if (f) nt_frame_unref(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nt_req rq;
  const char *why = NULL;
  if (nt_proto_parse((const char *)data, size, &rq, &why) == 0) {
    const char *room = rq.room ? rq.room : "r";
    const char *user = rq.user ? rq.user : "u";
    size_t plen = 0;
    char *payload = rq.message ? nt_proto_dump(rq.message, &plen) : NULL;
    if (payload) {
      drop(nt_proto_message("id", room, user, payload, plen, 1, 7));
      drop(nt_proto_direct("id", user, payload, plen, 1));
      free(payload);
    }
    const char *members[2] = {user, "other"};
    drop(nt_proto_joined(room, members, 2, rq.reqid));
    nt_presence_page pg = {members, 2, rq.cursor, 2};
    drop(nt_proto_members(rq.room, &pg, rq.reqid));
    drop(nt_proto_left(room, rq.reqid));
    drop(nt_proto_ack("id", rq.reqid));
    drop(nt_proto_heartbeat(rq.reqid));
    drop(nt_proto_reply(rq.action_name ? rq.action_name : "x", "{}", 2, rq.reqid));
  } else {
    if (!why) __builtin_trap(); /* a refusal always says why */
    drop(nt_proto_error("bad_request", why, rq.reqid));
  }
  nt_req_free(&rq);
  /* A backend's route reply is relayed as-is when it is JSON (the node checked it). */
  json_error_t jerr;
  json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
  if (v) {
    drop(nt_proto_reply("act", (const char *)data, size, "\"r1\""));
    json_decref(v);
  }
  return 0;
}
