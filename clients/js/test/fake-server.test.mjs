// natter.js with the `ws` package's WebSocket against a tiny fake natter server (real
// sockets, real timers): the protocol round trip, a 401 before the upgrade for an expired
// token, a server crash and restart with rejoin and the queued sends flushed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';

import { NatterClient } from '../natter.js';

/** A fake natter node: tokens are "user:<id>" (anything else → 401), one tenant. */
class FakeNatter {
  constructor() {
    this.conns = new Set();
    this.rooms = new Map(); // room -> Set(conn)
    this.log = []; // every client frame, with the user
    this.upgrades = { ok: 0, refused: 0 };
    this.seq = 0;
  }

  async listen(port = 0) {
    this.http = http.createServer((req, res) => res.writeHead(404).end());
    this.wss = new WebSocketServer({ noServer: true });
    this.http.on('upgrade', (req, socket, head) => {
      const token = new URL(req.url, 'http://x').searchParams.get('token') || '';
      if (!token.startsWith('user:')) {
        this.upgrades.refused++;
        socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      this.upgrades.ok++;
      this.wss.handleUpgrade(req, socket, head, (ws) => this._accept(ws, token.slice(5)));
    });
    await new Promise((r) => this.http.listen(port, '127.0.0.1', r));
    this.port = this.http.address().port;
    return this;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  _accept(ws, user) {
    const c = { ws, user, id: `c${++this.seq}`, rooms: new Set() };
    this.conns.add(c);
    const send = (f) => ws.send(JSON.stringify(f));
    send({ type: 'welcome', connectionId: c.id, userId: user, tenantId: 'demo', heartbeatInterval: 25000, node: 'fake' });
    ws.on('message', (data) => {
      const f = JSON.parse(String(data));
      this.log.push({ user, ...f });
      const rid = f.requestId !== undefined ? { requestId: f.requestId } : {};
      const members = (room) => [...new Set([...(this.rooms.get(room) || [])].map((m) => m.user))].map((userId) => ({ userId }));
      switch (f.action) {
        case 'joinRoom': {
          if (!this.rooms.has(f.roomId)) this.rooms.set(f.roomId, new Set());
          const isNew = ![...this.rooms.get(f.roomId)].some((m) => m.user === user);
          this.rooms.get(f.roomId).add(c);
          c.rooms.add(f.roomId);
          send({ type: 'joined', roomId: f.roomId, members: members(f.roomId), ...rid });
          if (isNew) this._toRoom(f.roomId, { type: 'presence', roomId: f.roomId, userId: user, status: 'online', timestamp: Date.now() }, c);
          break;
        }
        case 'sendMessage': {
          if (!c.rooms.has(f.roomId)) {
            send({ type: 'error', code: 'forbidden', message: 'join the room first', ...rid });
            break;
          }
          const id = `m${++this.seq}`;
          this._toRoom(f.roomId, { type: 'message', id, roomId: f.roomId, userId: user, message: f.message, timestamp: Date.now() });
          send({ type: 'ack', id, ...rid });
          break;
        }
        case 'heartbeat':
          send({ type: 'heartbeat', ...rid });
          break;
        default:
          send({ type: 'error', code: 'unknown_action', message: 'no handler for this action', ...rid });
      }
    });
    ws.on('close', () => {
      this.conns.delete(c);
      for (const r of c.rooms) this.rooms.get(r)?.delete(c);
    });
  }

  _toRoom(room, frame, except = null) {
    const data = JSON.stringify(frame);
    for (const m of this.rooms.get(room) || []) if (m !== except) m.ws.send(data);
  }

  /** Like kill -9: every TCP connection dies, the listener goes away. */
  async crash() {
    for (const c of this.conns) c.ws.terminate();
    this.conns.clear();
    this.rooms.clear();
    await new Promise((r) => this.http.close(r));
    this.wss.close();
  }

  async stop() {
    for (const c of this.conns) c.ws.terminate();
    await new Promise((r) => this.http.close(r));
    this.wss.close();
  }
}

function waitFor(pred, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const iv = setInterval(() => {
      let v;
      try {
        v = pred();
      } catch {
        v = false;
      }
      if (v) {
        clearInterval(iv);
        resolve(v);
      } else if (Date.now() - t0 > ms) {
        clearInterval(iv);
        reject(new Error(`timed out waiting for ${what}`));
      }
    }, 5);
  });
}

test('round trip, crash, 401 with an expired token, restart, rejoin and queued sends', async () => {
  const server = await new FakeNatter().listen();
  const tokenCalls = { alice: 0, bob: 0 };
  let expireNext = false;
  const mk = (user) =>
    new NatterClient({
      url: server.url,
      WebSocket,
      initialDelay: 20,
      maxDelay: 100,
      getToken: async () => {
        tokenCalls[user]++;
        if (user === 'alice' && expireNext) {
          expireNext = false;
          return 'expired-token'; // the server answers 401 before the upgrade
        }
        return `user:${user}`;
      },
    });
  const alice = mk('alice');
  const bob = mk('bob');
  const got = { alice: [], bob: [] };
  const presence = [];
  alice.on('message', (m) => got.alice.push(m.message.text));
  bob.on('message', (m) => got.bob.push(m.message.text));
  alice.on('presence', (p) => presence.push(`${p.userId}:${p.status}`));
  try {
    assert.equal((await alice.connect()).userId, 'alice');
    await bob.connect();
    await alice.join('lobby');
    const joined = await bob.join('lobby');
    assert.deepEqual(joined.members.map((m) => m.userId).sort(), ['alice', 'bob']);
    await waitFor(() => presence.includes('bob:online'), 'bob online');
    const ack = await alice.send('lobby', { text: 'hello bob' });
    assert.match(ack.id, /^m\d+$/);
    await waitFor(() => got.bob.includes('hello bob'), 'bob gets the message');
    await assert.rejects(alice.request('nope'), { code: 'unknown_action' });

    // The node dies; while it is down alice keeps "sending" (queued) and her next token
    // is stale: the first attempt after the restart gets a 401 and she refreshes.
    const port = server.port;
    await server.crash();
    await waitFor(() => alice.state === 'reconnecting' && bob.state === 'reconnecting', 'both reconnecting');
    const queued = [alice.send('lobby', { text: 'q1' }), alice.send('lobby', { text: 'q2' }), alice.send('lobby', { text: 'q3' })];
    assert.equal(alice.queued, 3);
    await new Promise((r) => setTimeout(r, 150)); // a few refused attempts
    expireNext = true;
    const before = tokenCalls.alice;
    await server.listen(port);
    await waitFor(() => alice.state === 'open' && bob.state === 'open', 'both open again', 8000);
    assert.ok(server.upgrades.refused >= 1, 'the expired token was refused with 401');
    assert.ok(tokenCalls.alice >= before + 2, 'getToken called again after the 401');
    const acks = await Promise.all(queued);
    assert.equal(new Set(acks.map((a) => a.id)).size, 3);
    await waitFor(() => got.bob.includes('q3'), 'bob gets the queued messages');
    assert.deepEqual(got.bob.filter((t) => t.startsWith('q')), ['q1', 'q2', 'q3'], 'in order');
    // The new server saw each client rejoin before anything it had queued.
    const aliceFrames = server.log.filter((f) => f.user === 'alice').map((f) => f.action);
    assert.deepEqual(aliceFrames.filter((a) => a !== 'heartbeat').slice(-4), ['joinRoom', 'sendMessage', 'sendMessage', 'sendMessage']);
    assert.ok(server.log.some((f) => f.user === 'bob' && f.action === 'joinRoom'), 'bob rejoined too');
    await bob.send('lobby', { text: 'still here' });
    await waitFor(() => got.alice.includes('still here'), 'alice hears bob after the restart');
  } finally {
    await alice.close();
    await bob.close();
    await server.stop();
  }
  assert.equal(alice.state, 'closed');
});

test('the global WebSocket (browsers, Node >= 22) works the same, 401s included', {
  skip: typeof globalThis.WebSocket !== 'function' && 'no global WebSocket in this Node (run with --experimental-websocket)',
}, async () => {
  const server = await new FakeNatter().listen();
  let n = 0;
  const c = new NatterClient({ url: server.url, initialDelay: 20, getToken: async () => (++n < 3 ? 'stale' : 'user:carol') });
  try {
    assert.equal((await c.connect()).userId, 'carol');
    assert.equal(n, 3, 'two refused upgrades, each followed by a fresh token');
    assert.equal(server.upgrades.refused, 2);
    await c.join('lobby');
    assert.match((await c.send('lobby', 'hi')).id, /^m/);
  } finally {
    await c.close();
    await server.stop();
  }
});
