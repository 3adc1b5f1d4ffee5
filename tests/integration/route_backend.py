#!/usr/bin/python3
"""route_backend: a test backend process for natter — answers custom routes
(natter.route.<action>) and/or the external authorizer (natter.auth.connect) over NATS.
It is also the smallest example of how to write a natter backend.

  route_backend.py --nats URL --route echo               reply at once
  route_backend.py --nats URL --route slow --delay 3     reply after 3 s
  route_backend.py --nats URL --authz [--delay S]        authorizer (rules below)

Every request it sees is printed as one JSON line (the tests read them from its log);
{"ready": true} is printed once the subscriptions are in place.

Route reply: {"echo": <the client's frame>, "user", "tenant", "conn", "action",
"requestId"} — natter relays it to the client as {"type":"reply","data":...}.
Authorizer rules by user id: "mallory*" denied ("banned"), "slow*" answered after --delay,
"roomy*" allowed with rooms ["vip-*"], anyone else allowed unchanged.
"""

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import natter_nats as nn  # noqa: E402


def log(**kw):
    print(json.dumps(kw), flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats", required=True)
    ap.add_argument("--route", action="append", default=[])
    ap.add_argument("--authz", action="store_true")
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()
    nc = await nn.Nats.connect(a.nats, name="route-backend")

    async def on_route(msg):
        env = nn.decode_envelope(msg.data)
        try:
            frame = json.loads(env["payload"])
        except ValueError:
            frame = env["payload"].decode("utf-8", "replace")
        log(route=env["action"], user=env["sender_user"], tenant=env["tenant"],
            conn=env["sender_conn"], request_id=env["request_id"])
        if env["action"].startswith("slow"):
            await asyncio.sleep(a.delay)
        if not msg.reply:
            return
        reply = {"echo": frame, "user": env["sender_user"], "tenant": env["tenant"],
                 "conn": env["sender_conn"], "action": env["action"],
                 "requestId": env["request_id"]}
        await nc.publish(msg.reply, json.dumps(reply))

    async def on_auth(msg):
        req = nn.decode_auth_request(msg.data)
        log(authz=req)
        user = req["user"]
        if user.startswith("slow"):
            await asyncio.sleep(a.delay)
        if user.startswith("mallory"):
            out = nn.encode_auth_reply(False, "banned")
        elif user.startswith("roomy"):
            out = nn.encode_auth_reply(True, rooms=["vip-*"])
        else:
            out = nn.encode_auth_reply(True)
        if msg.reply:
            await nc.publish(msg.reply, out)

    for action in a.route:
        # A queue group: several backend processes share the work of one action.
        await nc.subscribe(f"natter.route.{action}", on_route, queue="backend")
    if a.authz:
        await nc.subscribe("natter.auth.connect", on_auth, queue="authz")
    await nc.flush()
    log(ready=True)
    while not nc.closed:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
