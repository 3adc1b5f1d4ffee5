// Unit tests of natter.js against a fake WebSocket and a fake clock (deterministic time).
// Run: cd web && node --test
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import fs from 'node:fs';

import { NatterClient, NatterError, backoffDelay, messageId, withToken, DEFAULTS, PROTOCOL, VERSION } from '../natter.js';
import { FakeClock, flush, makeFakeWebSocket } from './helpers.mjs';

/** Marks a promise as handled now (it may reject before the test asserts on it). */
function handled(p) {
  p.catch(() => {});
  return p;
}

function setup(opts = {}) {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  const tokenCalls = [];
  let n = 0;
  const client = new NatterClient({
    url: 'ws://natter.test/ws',
    WebSocket: WS,
    timers: clock.timers,
    random: () => 0.5,
    getToken: async (info) => {
      tokenCalls.push({ ...info, at: clock.now() });
      return `tok${++n}`;
    },
    ...opts,
  });
  const states = [];
  const errors = [];
  client.on('state', (s) => states.push(s));
  client.on('error', (e) => errors.push(e));
  return { clock, WS, client, states, errors, tokenCalls };
}

/** connect() and welcome the first socket; returns that socket. */
async function connected(env, welcome = {}) {
  const p = env.client.connect();
  await flush();
  const ws = env.WS.last;
  ws.welcome(welcome);
  await flush();
  ws.answerJoins();
  await p;
  return ws;
}

/** Joins `room` on the open socket `ws` and waits for the joined. */
async function joinedNow(env, ws, room) {
  const pj = env.client.join(room);
  await flush();
  ws.answerJoins();
  return pj;
}

/** Drops the current socket from the server side and lets the reconnect happen. */
async function reconnect(env, code = 1006) {
  env.WS.last.serverClose(code);
  await flush();
  const retry = env.client.nextRetry;
  assert.ok(retry, 'a reconnect is scheduled');
  await env.clock.tick(retry.delay);
  const ws = env.WS.last;
  ws.welcome();
  await flush();
  return ws;
}

describe('backoffDelay', () => {
  test('grows exponentially from initialDelay and is bounded by maxDelay', () => {
    const o = { initialDelay: 500, maxDelay: 15000, factor: 2, jitter: 0.5 };
    const upper = [1, 2, 3, 4, 5, 6, 7, 8, 20, 1000].map((a) => backoffDelay(a, o, () => 0));
    assert.deepEqual(upper, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000]);
    const lower = [1, 2, 3, 4, 5, 6, 7].map((a) => backoffDelay(a, o, () => 1));
    assert.deepEqual(lower, [250, 500, 1000, 2000, 4000, 7500, 7500]);
  });

  test('jitter spreads delays uniformly inside [base*(1-jitter), base]', () => {
    const o = { initialDelay: 1000, maxDelay: 30000, factor: 2, jitter: 0.5 };
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const seen = new Set();
    for (let i = 0; i < 500; i++) {
      const d = backoffDelay(3, o, rnd); // base 4000
      assert.ok(d >= 2000 && d <= 4000, `delay ${d} in [2000, 4000]`);
      seen.add(d);
    }
    assert.ok(seen.size > 100, 'jitter actually varies the delay');
    assert.equal(backoffDelay(3, { ...o, jitter: 0 }, rnd), 4000, 'jitter 0 = exact');
    assert.equal(backoffDelay(2, { ...o, jitter: 1 }, () => 1), 0, 'full jitter reaches 0');
  });

  test('defaults and bad input', () => {
    assert.equal(backoffDelay(1, {}, () => 0), DEFAULTS.initialDelay);
    assert.equal(backoffDelay(0, {}, () => 0), DEFAULTS.initialDelay, 'attempt < 1 counts as 1');
    assert.equal(backoffDelay(1, {}, () => NaN), DEFAULTS.initialDelay);
    assert.equal(backoffDelay(1, { jitter: 7 }, () => 0.5), DEFAULTS.initialDelay / 2, 'jitter clamped to 1');
  });
});

describe('withToken', () => {
  test('adds the token to the query and maps http to ws', () => {
    assert.equal(withToken('ws://h:1/ws', 'a.b.c'), 'ws://h:1/ws?token=a.b.c');
    assert.equal(withToken('https://h/ws?x=1', 't'), 'wss://h/ws?x=1&token=t');
    assert.equal(withToken('ws://h/ws?token=old', 'new'), 'ws://h/ws?token=new');
    assert.equal(withToken('ws://h/ws', ''), 'ws://h/ws');
  });
});

describe('package', () => {
  test('VERSION is the package version; the protocol is v1, as the server announces', () => {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    assert.equal(VERSION, pkg.version);
    assert.equal(PROTOCOL, 1);
  });
});

describe('construction', () => {
  test('needs a WebSocket implementation and a URL outside browsers', () => {
    const saved = globalThis.WebSocket;
    try {
      delete globalThis.WebSocket;
      assert.throws(() => new NatterClient({ url: 'ws://x/ws' }), /no WebSocket implementation/);
    } finally {
      if (saved) globalThis.WebSocket = saved;
    }
    assert.throws(() => new NatterClient({ WebSocket: makeFakeWebSocket() }), /url is required/);
  });
});

describe('connecting and reconnecting', () => {
  test('connect() resolves on welcome with the session; state goes connecting -> open', async () => {
    const env = setup();
    assert.equal(env.client.state, 'idle');
    const ws = await connected(env, { node: 'node-7', heartbeatInterval: 5000 });
    assert.equal(env.client.state, 'open');
    assert.deepEqual(env.client.session, {
      connectionId: 'c1',
      userId: 'alice',
      tenantId: 'demo',
      heartbeatInterval: 5000,
      node: 'node-7',
    });
    assert.deepEqual(env.states.map((s) => s.state), ['connecting', 'open']);
    assert.equal(ws.url, 'ws://natter.test/ws?token=tok1');
  });

  test('backoff: each failed attempt waits exponentially longer (with jitter), bounded', async () => {
    const env = setup({ initialDelay: 500, maxDelay: 8000, factor: 2, jitter: 0.5 });
    env.client.connect().catch(() => {});
    await flush();
    const created = [env.clock.now()];
    const expected = [375, 750, 1500, 3000, 6000, 6000, 6000]; // base * (1 - 0.5*0.5), cap 8000
    for (const delay of expected) {
      const before = env.WS.instances.length;
      env.WS.last.serverClose(1006); // e.g. HTTP 401/503 before the upgrade
      await flush();
      assert.equal(env.client.state, 'reconnecting');
      assert.equal(env.client.nextRetry.delay, delay);
      await env.clock.tick(delay - 1);
      assert.equal(env.WS.instances.length, before, `no new attempt before ${delay} ms`);
      await env.clock.tick(1);
      assert.equal(env.WS.instances.length, before + 1, `a new attempt at ${delay} ms`);
      created.push(env.clock.now());
    }
    const gaps = created.slice(1).map((t, i) => t - created[i]);
    assert.deepEqual(gaps, expected);
    const reconnecting = env.states.filter((s) => s.state === 'reconnecting');
    assert.deepEqual(reconnecting.map((s) => s.attempt), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(reconnecting.map((s) => s.delay), expected);
    env.client.close();
  });

  test('jitter: delays come from the random source, inside the bounds', async () => {
    const rolls = [0, 0.999, 0.25, 0.75];
    const env = setup({ random: () => rolls.shift() ?? 0.5 });
    env.client.connect().catch(() => {});
    await flush();
    const delays = [];
    for (let i = 0; i < 4; i++) {
      env.WS.last.serverClose(1006);
      await flush();
      delays.push(env.client.nextRetry.delay);
      await env.clock.tick(env.client.nextRetry.delay);
    }
    // bases 500, 1000, 2000, 4000; delay = base * (1 - 0.5 * roll)
    assert.deepEqual(delays, [500, 500, 1750, 2500]);
    env.client.close();
  });

  test('the attempt counter resets after a welcome', async () => {
    const env = setup();
    handled(env.client.connect());
    await flush();
    for (let i = 0; i < 3; i++) {
      env.WS.last.serverClose(1006);
      await flush();
      await env.clock.tick(env.client.nextRetry.delay);
    }
    env.WS.last.welcome();
    await flush();
    assert.equal(env.client.state, 'open');
    env.WS.last.serverClose(1006);
    await flush();
    assert.equal(env.client.nextRetry.attempt, 1);
    assert.equal(env.client.nextRetry.delay, 375);
    env.client.close();
  });

  test('a socket that opens but never says welcome is abandoned after connectTimeout', async () => {
    const env = setup({ connectTimeout: 3000 });
    handled(env.client.connect());
    await flush();
    const ws = env.WS.last;
    ws.serverOpen();
    await env.clock.tick(2999);
    assert.equal(env.client.state, 'connecting');
    await env.clock.tick(1);
    assert.equal(ws.closedWith.code, 4000);
    assert.equal(env.client.state, 'reconnecting');
    env.client.close();
  });

  test('a getToken that never answers times out after connectTimeout and is retried', async () => {
    let calls = 0;
    const env = setup({
      connectTimeout: 2000,
      getToken: () => (++calls === 1 ? new Promise(() => {}) : Promise.resolve('ok')),
    });
    handled(env.client.connect());
    await env.clock.tick(1999);
    assert.equal(env.client.state, 'connecting');
    await env.clock.tick(1);
    assert.equal(env.client.state, 'reconnecting');
    assert.equal(env.errors[0].code, 'token_failed');
    await env.clock.tick(env.client.nextRetry.delay);
    assert.equal(env.WS.instances.length, 1);
    assert.equal(env.WS.last.token, 'ok');
    env.client.close();
  });

  test('an error without a following close still ends the attempt', async () => {
    const env = setup();
    handled(env.client.connect());
    await flush();
    env.WS.last.onerror({}); // and never onclose
    await env.clock.tick(99);
    assert.equal(env.client.state, 'connecting');
    await env.clock.tick(1);
    assert.equal(env.client.state, 'reconnecting');
    assert.equal(env.WS.last.closedWith.code, 1000);
    env.client.close();
  });

  test('server drain (1001) and crashes (1006) reconnect; a kick (1000) does not', async () => {
    for (const code of [1001, 1006, 1011, 1008]) {
      const env = setup();
      await connected(env);
      env.WS.last.serverClose(code);
      await flush();
      assert.equal(env.client.state, 'reconnecting', `close ${code} reconnects`);
      env.client.close();
    }
    const env = setup();
    await connected(env);
    const closes = [];
    env.client.on('close', (c) => closes.push(c));
    env.WS.last.serverClose(1000, 'closed by the server');
    await flush();
    assert.equal(env.client.state, 'closed');
    assert.equal(closes[0].willReconnect, false);
    await env.clock.tick(3_600_000);
    assert.equal(env.WS.instances.length, 1);
  });

  test('shouldReconnect and reconnect:false decide', async () => {
    const env = setup({ shouldReconnect: (c) => c.code !== 4403 });
    await connected(env);
    env.WS.last.serverClose(1000);
    await flush();
    assert.equal(env.client.state, 'reconnecting', 'custom policy reconnects after 1000');
    await env.clock.tick(env.client.nextRetry.delay);
    env.WS.last.welcome();
    await flush();
    env.WS.last.serverClose(4403);
    await flush();
    assert.equal(env.client.state, 'closed');

    const env2 = setup({ reconnect: false });
    await connected(env2);
    env2.WS.last.serverClose(1006);
    await flush();
    assert.equal(env2.client.state, 'closed');
  });

  test('maxAttempts: gives up, rejects connect() and reports reconnect_failed', async () => {
    const env = setup({ maxAttempts: 2 });
    const p = handled(env.client.connect());
    await flush();
    for (let i = 0; i < 3; i++) {
      env.WS.last.serverClose(1006);
      await flush();
      if (env.client.state === 'reconnecting') await env.clock.tick(env.client.nextRetry.delay);
    }
    await assert.rejects(p, (e) => e instanceof NatterError && e.code === 'reconnect_failed');
    assert.equal(env.client.state, 'closed');
    assert.equal(env.WS.instances.length, 3);
    assert.ok(env.errors.some((e) => e.code === 'reconnect_failed'));
  });

  test('reconnectNow() skips the wait', async () => {
    const env = setup({ initialDelay: 60000 });
    await connected(env);
    env.WS.last.serverClose(1006);
    await flush();
    assert.equal(env.WS.instances.length, 1);
    env.client.reconnectNow();
    await flush();
    assert.equal(env.WS.instances.length, 2);
    env.client.close();
  });
});

describe('token refresh', () => {
  test('getToken is called before every attempt and its token is used', async () => {
    const env = setup();
    await connected(env);
    assert.deepEqual(env.tokenCalls.map((c) => [c.attempt, c.reconnect]), [[0, false]]);
    env.WS.last.serverClose(1006);
    await flush();
    assert.equal(env.tokenCalls.length, 1, 'not called while waiting');
    await env.clock.tick(env.client.nextRetry.delay);
    assert.equal(env.tokenCalls.length, 2, 'called when the attempt starts');
    assert.equal(env.tokenCalls[1].at, env.clock.now());
    assert.equal(env.WS.last.token, 'tok2');
    env.WS.last.serverClose(1006); // e.g. 401: the old token expired
    await flush();
    await env.clock.tick(env.client.nextRetry.delay);
    assert.equal(env.WS.last.token, 'tok3');
    assert.deepEqual(env.tokenCalls.map((c) => [c.attempt, c.reconnect]), [[0, false], [1, true], [2, true]]);
    env.client.close();
  });

  test('a failing getToken is retried with backoff, never a tight loop', async () => {
    let calls = 0;
    const env = setup({
      getToken: async () => {
        calls++;
        if (calls <= 2) throw new Error('auth service down');
        return 'fresh';
      },
    });
    const p = env.client.connect();
    await flush();
    assert.equal(env.WS.instances.length, 0, 'no socket without a token');
    assert.equal(env.errors[0].code, 'token_failed');
    assert.equal(env.client.nextRetry.delay, 375);
    await env.clock.tick(375);
    assert.equal(calls, 2);
    assert.equal(env.client.nextRetry.delay, 750);
    await env.clock.tick(750);
    assert.equal(env.WS.last.token, 'fresh');
    env.WS.last.welcome();
    await p;
    env.client.close();
  });

  test('a static token is reused', async () => {
    const env = setup({ getToken: undefined, token: 'static' });
    await connected(env);
    assert.equal(env.WS.last.token, 'static');
    env.client.close();
  });
});

describe('rooms', () => {
  test('join resolves with the joined frame; every room is rejoined after a reconnect', async () => {
    const env = setup();
    const ws1 = await connected(env);
    const joinedEvents = [];
    env.client.on('joined', (j) => joinedEvents.push(j.roomId));
    const pa = env.client.join('lobby');
    const pb = env.client.join('dev');
    const pc = env.client.join('random');
    await flush();
    ws1.answerJoins([{ userId: 'alice' }, { userId: 'bob' }]);
    const joined = await pa;
    assert.deepEqual(joined.members, [{ userId: 'alice' }, { userId: 'bob' }]);
    await Promise.all([pb, pc]);
    const pl = env.client.leave('dev');
    await flush();
    const leave = ws1.actions('leaveRoom')[0];
    ws1.serverSend({ type: 'left', roomId: 'dev', requestId: leave.requestId });
    await pl;
    assert.deepEqual(env.client.rooms, ['lobby', 'random']);

    const reconnects = [];
    env.client.on('reconnect', (r) => reconnects.push(r));
    const ws2 = await reconnect(env, 1001);
    const rejoins = ws2.actions('joinRoom');
    assert.deepEqual(rejoins.map((f) => f.roomId), ['lobby', 'random'], 'every room but the one left');
    assert.ok(rejoins.every((f) => typeof f.requestId === 'string'));
    assert.equal(env.client.state, 'connecting', 'open only once the rooms are back');
    ws2.answerJoins();
    await flush();
    assert.equal(env.client.state, 'open');
    assert.deepEqual(reconnects.map((r) => r.rooms), [['lobby', 'random']]);
    assert.deepEqual(joinedEvents, ['lobby', 'dev', 'random', 'lobby', 'random']);
    env.client.close();
  });

  test('join while disconnected happens on the next connection', async () => {
    const env = setup();
    const pj = env.client.join('early'); // before connect()
    const p = env.client.connect();
    await flush();
    env.WS.last.welcome();
    await flush();
    assert.deepEqual(env.WS.last.actions('joinRoom').map((f) => f.roomId), ['early']);
    env.WS.last.answerJoins();
    assert.equal((await pj).roomId, 'early');
    await p;
    env.client.close();
  });

  test('a join in flight when the link drops resolves after the rejoin', async () => {
    const env = setup();
    await connected(env);
    const pj = env.client.join('lobby');
    await flush();
    const ws2 = await reconnect(env);
    ws2.answerJoins();
    assert.equal((await pj).roomId, 'lobby');
    env.client.close();
  });

  test('a rejoin refused by the server drops the room and reports the error', async () => {
    const env = setup();
    const ws1 = await connected(env);
    const pj = env.client.join('secret');
    await flush();
    ws1.answerJoins();
    await pj;
    const ws2 = await reconnect(env);
    const f = ws2.actions('joinRoom')[0];
    ws2.serverSend({ type: 'error', code: 'forbidden', message: 'no', requestId: f.requestId });
    await flush();
    assert.equal(env.client.state, 'open');
    assert.deepEqual(env.client.rooms, []);
    const err = env.errors.find((e) => e.code === 'forbidden');
    assert.equal(err.roomId, 'secret');
    env.client.close();
  });

  test('join rejects on an error reply; leave of an unknown room resolves', async () => {
    const env = setup();
    const ws = await connected(env);
    const pj = env.client.join('bad room');
    await flush();
    const f = ws.actions('joinRoom')[0];
    ws.serverSend({ type: 'error', code: 'bad_request', message: 'invalid roomId', requestId: f.requestId });
    await assert.rejects(pj, { code: 'bad_request' });
    assert.deepEqual(env.client.rooms, []);
    const pl = env.client.leave('nowhere');
    await flush();
    const l = ws.actions('leaveRoom')[0];
    ws.serverSend({ type: 'error', code: 'not_found', message: 'not a member', requestId: l.requestId });
    assert.deepEqual(await pl, { type: 'left', roomId: 'nowhere' });
    await assert.rejects(env.client.join(''), { code: 'bad_request' });
    env.client.close();
  });

  test('message seq is tracked per room and passed as since on rejoin; replays are deduplicated', async () => {
    const env = setup();
    const ws1 = await connected(env);
    const pj = env.client.join('lobby', { since: 3 });
    const pk = env.client.join('plain');
    await flush();
    assert.equal(ws1.actions('joinRoom')[0].since, 3);
    assert.equal('since' in ws1.actions('joinRoom')[1], false);
    ws1.answerJoins();
    await Promise.all([pj, pk]);
    const got = [];
    env.client.on('message', (m) => got.push(`${m.roomId}:${m.seq ?? m.id}`));
    for (const seq of [4, 5, 7]) ws1.serverSend({ type: 'message', id: `m${seq}`, roomId: 'lobby', userId: 'bob', message: 'x', timestamp: 1, seq });
    ws1.serverSend({ type: 'message', id: 'p1', roomId: 'plain', userId: 'bob', message: 'x', timestamp: 1 });
    assert.equal(env.client.lastSeq('lobby'), 7);
    const ws2 = await reconnect(env);
    const rejoin = ws2.actions('joinRoom');
    assert.equal(rejoin.find((f) => f.roomId === 'lobby').since, 7);
    assert.equal('since' in rejoin.find((f) => f.roomId === 'plain'), false);
    ws2.answerJoins();
    for (const seq of [6, 7, 8]) ws2.serverSend({ type: 'message', id: `m${seq}`, roomId: 'lobby', userId: 'bob', message: 'x', timestamp: 1, seq });
    assert.deepEqual(got, ['lobby:4', 'lobby:5', 'lobby:7', 'plain:p1', 'lobby:8']);
    env.client.close();
  });
});

describe('resume that never completes', () => {
  test('a resume cut twice by a disconnect with no progress is retried without since', async () => {
    const env = setup();
    const ws1 = await connected(env);
    const pj = env.client.join('big', { since: 10 });
    await flush();
    ws1.answerJoins();
    await pj;
    // the server closes before the replay gets through, twice: lastSeq stays at 10
    let ws = await reconnect(env);
    assert.equal(ws.actions('joinRoom')[0].since, 10);
    ws = await reconnect(env);
    assert.equal('since' in ws.actions('joinRoom')[0], false, 'no third resume from the same seq');
    ws.answerJoins();
    await flush();
    // progress resets the count: resume with since again after new messages
    ws.serverSend({ type: 'message', id: 'm11', roomId: 'big', userId: 'bob', message: 'x', timestamp: 1, seq: 11 });
    ws = await reconnect(env);
    assert.equal(ws.actions('joinRoom')[0].since, 11);
    env.client.close();
  });
});

describe('queue of actions made while disconnected', () => {
  test('sends are queued, then flushed in order after the rooms are rejoined', async () => {
    const env = setup();
    const ws1 = await connected(env);
    await joinedNow(env, ws1, 'lobby');
    ws1.serverClose(1006);
    await flush();
    assert.equal(env.client.state, 'reconnecting');
    const sends = [1, 2, 3, 4, 5].map((i) => env.client.send('lobby', { text: `m${i}` }));
    const dm = env.client.sendToUser('bob', 'psst');
    assert.equal(env.client.queued, 6);
    await env.clock.tick(env.client.nextRetry.delay);
    const ws2 = env.WS.last;
    ws2.welcome();
    await flush();
    assert.deepEqual(ws2.sent.map((f) => f.action), ['joinRoom'], 'nothing before the rejoin');
    ws2.answerJoins();
    await flush();
    assert.deepEqual(ws2.sent.map((f) => f.action), ['joinRoom', 'sendMessage', 'sendMessage', 'sendMessage', 'sendMessage', 'sendMessage', 'sendToUser']);
    const msgs = ws2.actions('sendMessage');
    assert.deepEqual(msgs.map((f) => f.message.text), ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.equal(new Set(ws2.sent.map((f) => f.requestId)).size, 7, 'distinct requestIds');
    assert.equal(env.client.queued, 0);
    // Acks in reverse order still resolve the right promises.
    for (const f of [...ws2.sent].reverse()) {
      if (f.action !== 'joinRoom') ws2.serverSend({ type: 'ack', id: `id-${f.message.text ?? f.message}`, requestId: f.requestId });
    }
    assert.deepEqual((await Promise.all(sends)).map((a) => a.id), ['id-m1', 'id-m2', 'id-m3', 'id-m4', 'id-m5']);
    assert.equal((await dm).id, 'id-psst');
    env.client.close();
  });

  test('actions before connect() are queued too; new sends during the rejoin go after the queue', async () => {
    const env = setup();
    const p1 = env.client.send('lobby', 'first');
    env.client.join('lobby');
    const p = env.client.connect();
    await flush();
    const ws = env.WS.last;
    ws.welcome();
    await flush();
    const p2 = env.client.send('lobby', 'second'); // during the rejoin
    ws.answerJoins();
    await p;
    assert.deepEqual(ws.actions('sendMessage').map((f) => f.message), ['first', 'second']);
    for (const f of ws.actions('sendMessage')) ws.serverSend({ type: 'ack', id: f.message, requestId: f.requestId });
    assert.equal((await p1).id, 'first');
    assert.equal((await p2).id, 'second');
    env.client.close();
  });

  test('the queue is bounded: past queueLimit new actions are rejected', async () => {
    const env = setup({ queueLimit: 3 });
    const ok = [1, 2, 3].map((i) => handled(env.client.send('r', i)));
    await assert.rejects(env.client.send('r', 4), (e) => e instanceof NatterError && e.code === 'queue_full');
    assert.equal(env.client.queued, 3);
    await env.client.close();
    for (const p of ok) await assert.rejects(p, { code: 'closed' });
  });
});

describe('reliable send: an id, resent until acknowledged', () => {
  test('a send in flight when the link drops is resent with the same id after the rejoin', async () => {
    const env = setup();
    const ws1 = await connected(env);
    await joinedNow(env, ws1, 'lobby');
    const p = env.client.send('lobby', 'x');
    const q = env.client.send('lobby', 'y', { id: 'my-id-1' });
    await flush();
    const [f1, f2] = ws1.actions('sendMessage');
    assert.equal(f2.id, 'my-id-1');
    assert.equal(env.client.unacked, 2);
    const ws2 = await reconnect(env); // no ack came: both outcomes unknown
    assert.deepEqual(ws2.sent.map((f) => f.action), ['joinRoom'], 'nothing before the rejoin');
    ws2.answerJoins();
    await flush();
    const [g1, g2] = ws2.actions('sendMessage');
    assert.deepEqual([g1.id, g2.id], [f1.id, 'my-id-1'], 'same ids, same order');
    assert.deepEqual([g1.message, g2.message], ['x', 'y']);
    assert.notEqual(g1.requestId, f1.requestId);
    ws2.serverSend({ type: 'ack', id: g1.id, requestId: g1.requestId });
    ws2.serverSend({ type: 'ack', id: g2.id, requestId: g2.requestId });
    assert.equal((await p).id, f1.id);
    assert.equal((await q).id, 'my-id-1');
    assert.equal(env.client.unacked, 0);
    env.client.close();
  });

  test('error unavailable: resent after a backoff with the same id; other errors reject', async () => {
    const env = setup({ initialDelay: 500, maxDelay: 4000, jitter: 0 });
    const ws = await connected(env);
    const p = env.client.send('lobby', 'x', { id: 'u1' });
    const bad = handled(env.client.send('lobby', 'z', { id: 'u2' }));
    await flush();
    const [f1, fb] = ws.actions('sendMessage');
    ws.serverSend({ type: 'error', code: 'forbidden', message: 'join first', requestId: fb.requestId });
    await assert.rejects(bad, { code: 'forbidden' });
    const lastU1 = () => ws.actions('sendMessage').filter((f) => f.id === 'u1').at(-1);
    for (const wait of [500, 1000]) {
      const last = lastU1();
      ws.serverSend({ type: 'error', code: 'unavailable', message: 'resend', requestId: last.requestId });
      await flush();
      const n = ws.actions('sendMessage').length;
      await env.clock.tick(wait - 1);
      assert.equal(ws.actions('sendMessage').length, n, `not before ${wait} ms`);
      await env.clock.tick(1);
      assert.equal(ws.actions('sendMessage').length, n + 1);
      assert.equal(ws.actions('sendMessage').at(-1).id, 'u1');
    }
    const last = lastU1();
    ws.serverSend({ type: 'ack', id: 'u1', requestId: last.requestId });
    assert.equal((await p).id, 'u1');
    assert.notEqual(f1.requestId, last.requestId);
    assert.equal(env.client.unacked, 0);
    assert.equal(env.errors.length, 0);
    env.client.close();
  });

  test('a request timeout resends at once; past resendTimeout the send rejects', async () => {
    const env = setup({ requestTimeout: 1000, resendTimeout: 2500 });
    const ws = await connected(env);
    const p = handled(env.client.send('lobby', 'x', { id: 't1' }));
    await flush();
    assert.equal(ws.actions('sendMessage').length, 1);
    await env.clock.tick(1000);
    assert.equal(ws.actions('sendMessage').length, 2);
    await env.clock.tick(1000);
    assert.equal(ws.actions('sendMessage').length, 3);
    await env.clock.tick(1000); // 3000 ms since the send: over resendTimeout
    await assert.rejects(p, { code: 'timeout' });
    assert.deepEqual(ws.actions('sendMessage').map((f) => f.id), ['t1', 't1', 't1']);
    assert.equal(env.client.unacked, 0);
    env.client.close();
  });

  test('the same id twice is one send; ids are random; bad ids are refused; close rejects', async () => {
    const env = setup();
    const ws = await connected(env);
    const a = handled(env.client.send('lobby', 'x', { id: 'same' }));
    const b = handled(env.client.send('lobby', 'x', { id: 'same' }));
    assert.equal(a, b);
    await assert.rejects(env.client.send('lobby', 'x', { id: '' }), { code: 'bad_request' });
    const ids = new Set();
    for (let i = 0; i < 200; i++) ids.add(messageId());
    assert.equal(ids.size, 200);
    for (const id of ids) assert.match(id, /^[0-9A-Za-z]{20}$/);
    await flush();
    assert.equal(ws.actions('sendMessage').length, 1);
    await env.client.close();
    await assert.rejects(a, { code: 'closed' });
    assert.equal(env.client.unacked, 0);
  });
});

describe('requests and replies', () => {
  test('roomMembers: joined of a small room is the whole list; a large one is paged after its cursor', async () => {
    const env = setup();
    const ws = await connected(env);
    // small room (the frame as servers before `total` sent it, too): no request at all
    const small = { type: 'joined', roomId: 'lobby', members: [{ userId: 'alice' }, { userId: 'bob' }] };
    assert.deepEqual(await env.client.roomMembers('lobby', small), small.members);
    assert.deepEqual(await env.client.roomMembers('lobby', { ...small, total: 2 }), small.members);
    await flush();
    assert.equal(ws.actions('presence').length, 0);
    // large room without events: pages from the joined's cursor, deduplicated
    const big = { type: 'joined', roomId: 'hall', members: [{ userId: 'a' }, { userId: 'b' }], total: 4, cursor: '17', presenceEvents: false };
    const p = env.client.roomMembers('hall', big);
    await flush();
    const [first] = ws.actions('presence');
    assert.deepEqual(first, { action: 'presence', roomId: 'hall', cursor: '17', requestId: first.requestId });
    ws.serverSend({ type: 'members', roomId: 'hall', members: [{ userId: 'b' }, { userId: 'c' }], total: 4, cursor: '40', requestId: first.requestId });
    await flush();
    const second = ws.actions('presence')[1];
    assert.equal(second.cursor, '40');
    ws.serverSend({ type: 'members', roomId: 'hall', members: [{ userId: 'd' }], total: 4, requestId: second.requestId });
    assert.deepEqual((await p).map((m) => m.userId), ['a', 'b', 'c', 'd']);
    // without a joined: from the first page; a joined of another room is refused
    const p2 = env.client.roomMembers('hall');
    await flush();
    const third = ws.actions('presence')[2];
    assert.deepEqual(third, { action: 'presence', roomId: 'hall', requestId: third.requestId });
    ws.serverSend({ type: 'members', roomId: 'hall', members: [{ userId: 'a' }], total: 1, requestId: third.requestId });
    assert.deepEqual(await p2, [{ userId: 'a' }]);
    await assert.rejects(env.client.roomMembers('other', big), TypeError);
    env.client.close();
  });

  test('replies resolve by requestId; error frames reject; timeouts reject', async () => {
    const env = setup({ requestTimeout: 5000 });
    const ws = await connected(env);
    const pSend = env.client.send('lobby', { text: 'hi' }, { excludeSelf: true });
    const pPres = env.client.presence('lobby');
    const pTenant = handled(env.client.presence());
    const pDenied = handled(env.client.send('private', 'x'));
    const pCustom = env.client.request('getProfile', { userId: 'bob' });
    const pHb = env.client.heartbeat();
    const pHist = handled(env.client.history('lobby', { limit: 10, before: 99 }));
    await flush();
    const [fSend, fPres, fTenant, fDenied, fCustom, fHb, fHist] = ws.sent;
    assert.deepEqual(fSend, { action: 'sendMessage', roomId: 'lobby', message: { text: 'hi' }, id: fSend.id, excludeSelf: true, requestId: fSend.requestId });
    assert.match(fSend.id, /^[0-9A-Za-z]{20}$/);
    assert.deepEqual(fTenant, { action: 'presence', requestId: fTenant.requestId });
    assert.deepEqual(fCustom, { action: 'getProfile', userId: 'bob', requestId: fCustom.requestId });
    assert.deepEqual(fHist, { action: 'history', roomId: 'lobby', limit: 10, before: 99, requestId: fHist.requestId });
    ws.serverSend({ type: 'error', code: 'forbidden', message: 'join the room first', requestId: fDenied.requestId });
    ws.serverSend({ type: 'members', roomId: 'lobby', members: [{ userId: 'bob' }], requestId: fPres.requestId });
    ws.serverSend({ type: 'ack', id: 'M1', requestId: fSend.requestId });
    ws.serverSend({ type: 'reply', action: 'getProfile', data: { name: 'Bob' }, requestId: fCustom.requestId });
    ws.serverSend({ type: 'heartbeat', requestId: fHb.requestId });
    assert.deepEqual(await pSend, { type: 'ack', id: 'M1', requestId: fSend.requestId });
    assert.deepEqual(await pPres, [{ userId: 'bob' }]);
    assert.deepEqual(await pCustom, { name: 'Bob' });
    assert.equal((await pHb).type, 'heartbeat');
    await assert.rejects(pDenied, (e) => e instanceof NatterError && e.code === 'forbidden' && e.message === 'join the room first' && e.requestId === fDenied.requestId);
    assert.equal(env.errors.length, 0, 'errors of requests go to their promise, not the error event');
    // Unanswered: presence of the tenant and history time out after requestTimeout.
    await env.clock.tick(4999);
    let settled = false;
    pTenant.then(() => {}, () => {}).finally(() => (settled = true));
    await flush();
    assert.equal(settled, false);
    await env.clock.tick(1);
    await assert.rejects(pTenant, { code: 'timeout' });
    await assert.rejects(pHist, { code: 'timeout' });
    // A late reply is ignored; an error without requestId goes to the error event.
    ws.serverSend({ type: 'members', members: [], requestId: fTenant.requestId });
    ws.serverSend({ type: 'error', code: 'bad_request', message: 'invalid JSON' });
    assert.equal(env.errors.length, 1);
    assert.equal(env.errors[0].code, 'bad_request');
    assert.equal(env.client.state, 'open');
    env.client.close();
  });

  test('requests in flight when the link drops are rejected with disconnected', async () => {
    const env = setup();
    const ws = await connected(env);
    const p = handled(env.client.sendToUser('bob', 'x'));
    await flush();
    ws.serverClose(1006);
    await assert.rejects(p, { code: 'disconnected' });
  });


  test('events: message, direct, presence, members, frame; non-JSON frames are reported', async () => {
    const env = setup();
    const ws = await connected(env);
    const seen = [];
    for (const t of ['message', 'direct', 'presence', 'members', 'left', 'reply', 'frame']) env.client.on(t, (f) => seen.push(`${t}:${f.type}`));
    ws.serverSend({ type: 'message', id: '1', roomId: 'lobby', userId: null, server: true, message: 'sys', timestamp: 1 });
    ws.serverSend({ type: 'direct', id: '2', userId: 'bob', message: 'dm', timestamp: 1 });
    ws.serverSend({ type: 'presence', roomId: 'lobby', userId: 'bob', status: 'offline', timestamp: 1 });
    ws.serverSend({ type: 'future', x: 1 });
    ws.serverSend('not json');
    assert.deepEqual(seen, ['frame:message', 'message:message', 'frame:direct', 'direct:direct', 'frame:presence', 'presence:presence', 'frame:future']);
    assert.equal(env.errors.at(-1).code, 'bad_frame');
    env.client.close();
  });

  test('a listener that throws does not break the client', async () => {
    const env = setup();
    const ws = await connected(env);
    const origError = console.error;
    console.error = () => {};
    try {
      env.client.on('message', () => {
        throw new Error('app bug');
      });
      let after = 0;
      env.client.on('message', () => after++);
      ws.serverSend({ type: 'message', id: '1', roomId: 'r', userId: 'b', message: 1, timestamp: 1 });
      assert.equal(after, 1);
    } finally {
      console.error = origError;
    }
    const off = env.client.on('direct', () => assert.fail('unsubscribed'));
    off();
    let once = 0;
    env.client.once('direct', () => once++);
    ws.serverSend({ type: 'direct', id: '1', userId: 'b', message: 1, timestamp: 1 });
    ws.serverSend({ type: 'direct', id: '2', userId: 'b', message: 1, timestamp: 1 });
    assert.equal(once, 1);
    env.client.close();
  });
});

describe('heartbeats', () => {
  test('sent on the announced interval; an unanswered one drops the link and reconnects', async () => {
    const env = setup();
    const ws = await connected(env, { heartbeatInterval: 1000 });
    await env.clock.tick(999);
    assert.equal(ws.actions('heartbeat').length, 0);
    await env.clock.tick(1);
    assert.equal(ws.actions('heartbeat').length, 1);
    assert.equal('requestId' in ws.actions('heartbeat')[0], false);
    ws.serverSend({ type: 'heartbeat' });
    await env.clock.tick(1000);
    assert.equal(ws.actions('heartbeat').length, 2);
    assert.equal(env.client.state, 'open');
    // No answer (half-open TCP): at the next tick the socket is given up.
    await env.clock.tick(1000);
    assert.equal(ws.closedWith.code, 4001);
    assert.equal(env.client.state, 'reconnecting');
    env.client.close();
  });

  test('heartbeat:false sends none', async () => {
    const env = setup({ heartbeat: false });
    const ws = await connected(env, { heartbeatInterval: 1000 });
    await env.clock.tick(10000);
    assert.equal(ws.actions('heartbeat').length, 0);
    env.client.close();
  });
});

describe('clean close', () => {
  test('close() closes with 1000, rejects what waits and never reconnects', async () => {
    const env = setup();
    const ws = await connected(env);
    const pending = handled(env.client.send('lobby', 'x'));
    const joining = handled(env.client.join('later'));
    await flush();
    const closes = [];
    env.client.on('close', (c) => closes.push(c));
    const done = env.client.close();
    assert.deepEqual(ws.closedWith, { code: 1000, reason: 'client closing' });
    await done;
    assert.equal(env.client.state, 'closed');
    assert.deepEqual(closes.map((c) => c.willReconnect), [false]);
    await assert.rejects(pending, { code: 'closed' });
    await assert.rejects(joining, { code: 'closed' });
    await assert.rejects(env.client.send('lobby', 'y'), { code: 'closed' });
    await env.clock.tick(3_600_000);
    assert.equal(env.WS.instances.length, 1, 'no reconnect after close()');
    assert.equal(env.clock.pending().length, 0, 'no timers left behind');
  });

  test('close() while waiting to reconnect cancels the attempt', async () => {
    const env = setup();
    await connected(env);
    env.WS.last.serverClose(1006);
    await flush();
    assert.equal(env.client.state, 'reconnecting');
    await env.client.close();
    await env.clock.tick(3_600_000);
    assert.equal(env.WS.instances.length, 1);
    assert.equal(env.tokenCalls.length, 1);
  });

  test('close() during getToken abandons the attempt', async () => {
    let release;
    const env = setup({ getToken: () => new Promise((r) => (release = r)) });
    const p = handled(env.client.connect());
    await flush();
    env.client.close();
    await assert.rejects(p, { code: 'closed' });
    release('late');
    await flush();
    assert.equal(env.WS.instances.length, 0);
  });

  test('connect() again after close() starts a fresh session', async () => {
    const env = setup();
    await connected(env);
    await env.client.close();
    const p = env.client.connect();
    await flush();
    env.WS.last.welcome();
    await p;
    assert.equal(env.client.state, 'open');
    assert.equal(env.WS.instances.length, 2);
    env.client.close();
  });
});
