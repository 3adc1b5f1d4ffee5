// Reference for natter's benchmark: a Socket.IO 4.8 node of a cluster that shares rooms
// through @socket.io/redis-adapter. Run two of these (PORT=3101, PORT=3102) against one
// redis-server. It does the job natter does in the same scenarios:
//   - connect over the WebSocket transport with an HS256 JWT (auth payload or ?token=),
//     verified on every connection (sub = user, tenant|tid = tenant, exp required);
//   - "join" <room>  -> joins <tenant>:<room>, answers "joined" <room>;
//   - "msg" <room> <message> -> broadcast to every member of the room on every node,
//     sender included, as {id, roomId, userId, message, timestamp} (natter's fields).
"use strict";

const http = require("http");
const crypto = require("crypto");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const PORT = Number(process.env.PORT || 3101);
const HOST = process.env.HOST || "127.0.0.1";
const SECRET = Buffer.from(process.env.JWT_SECRET || "bench-secret-0123456789abcdef0123456789");
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";

function b64urlDecode(s) {
  return Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}

function verifyJwt(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  let header;
  try {
    header = JSON.parse(b64urlDecode(parts[0]).toString("utf8"));
  } catch {
    return null;
  }
  if (!header || header.alg !== "HS256") return null;
  const mac = crypto.createHmac("sha256", SECRET).update(parts[0] + "." + parts[1]).digest();
  const sig = b64urlDecode(parts[2]);
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
  let claims;
  try {
    claims = JSON.parse(b64urlDecode(parts[1]).toString("utf8"));
  } catch {
    return null;
  }
  if (!claims || typeof claims.sub !== "string" || typeof claims.exp !== "number") return null;
  if (claims.exp * 1000 < Date.now()) return null;
  const tenant = claims.tenant || claims.tid;
  if (typeof tenant !== "string") return null;
  return { user: claims.sub, tenant };
}

let seq = 0;
const idPrefix = PORT.toString(36) + process.pid.toString(36);

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error(JSON.stringify({ level: "error", msg: "redis", error: String(e) })));
  sub.on("error", (e) => console.error(JSON.stringify({ level: "error", msg: "redis", error: String(e) })));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub),
  });

  io.use((socket, next) => {
    const tok = (socket.handshake.auth && socket.handshake.auth.token) || socket.handshake.query.token;
    const who = verifyJwt(tok);
    if (!who) return next(new Error("unauthorized"));
    socket.data.user = who.user;
    socket.data.tenant = who.tenant;
    next();
  });

  io.on("connection", (socket) => {
    const tenant = socket.data.tenant;
    socket.on("join", (room) => {
      if (typeof room !== "string" || room.length === 0 || room.length > 128) return;
      socket.join(tenant + ":" + room);
      socket.emit("joined", room);
    });
    socket.on("msg", (room, message) => {
      if (typeof room !== "string") return;
      const key = tenant + ":" + room;
      if (!socket.rooms.has(key)) return;
      io.to(key).emit("msg", {
        id: idPrefix + (seq++).toString(36),
        roomId: room,
        userId: socket.data.user,
        message,
        timestamp: Date.now(),
      });
    });
  });

  httpServer.listen(PORT, HOST, () => {
    console.log(JSON.stringify({ level: "info", msg: "listening", host: HOST, port: PORT, pid: process.pid }));
  });
  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
