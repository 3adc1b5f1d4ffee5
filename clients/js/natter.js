// natter.js — client library for natter (client protocol v1: docs/protocol.md; this library: docs/client.md).
//
// A plain ES module with no runtime dependencies. Works in browsers and in Node >= 20:
// it uses the global WebSocket when there is one (browsers, Node >= 22) and otherwise the
// implementation passed as `options.WebSocket` (for example the `ws` package's class).
//
//   import { NatterClient } from './natter.js';
//   const chat = new NatterClient({ url: 'wss://chat.example.com/ws', getToken: fetchToken });
//   chat.on('message', (m) => console.log(m.userId, m.message));
//   await chat.connect();
//   await chat.join('lobby');
//   await chat.send('lobby', { text: 'hello' });
//
// What it does for you: typed events, promise-returning actions matched to replies by
// `requestId` (with timeouts), application heartbeats on the interval the server announces
// (and dead-connection detection), automatic reconnect with exponential backoff and jitter,
// a token-refresh hook called before every connection attempt, rejoin of every room after a
// reconnect (passing `since` = the last seen `seq` when the server sends one), a bounded queue
// of actions made while disconnected (flushed in order once the rooms are rejoined),
// reliable room messages (each send carries a random `id`; until its `ack` it is resent with
// the same id after a reconnect, a timeout or `error unavailable`, which the server
// deduplicates), and a clean close that stops reconnecting. See README.md beside this file (the package's
// reference) and docs/client.md; natter.d.ts declares the types.

export const VERSION = '0.1.0';

/** The client protocol version this library speaks (the server's `welcome.protocol`). */
export const PROTOCOL = 1;

/** Default options; every one can be overridden in `new NatterClient(options)`. */
export const DEFAULTS = Object.freeze({
  reconnect: true, // reconnect automatically after an unexpected close
  initialDelay: 500, // ms, base delay of the first reconnect attempt
  maxDelay: 15000, // ms, upper bound of any reconnect delay
  factor: 2, // exponential growth of the base delay per failed attempt
  jitter: 0.5, // 0..1: the delay is drawn uniformly from [base*(1-jitter), base]
  maxAttempts: Infinity, // consecutive failed attempts before giving up (state 'closed')
  connectTimeout: 10000, // ms from starting an attempt to the server's `welcome`
  requestTimeout: 10000, // ms to wait for the reply of an action
  queueLimit: 100, // actions kept while disconnected; more are rejected ('queue_full')
  heartbeat: true, // send `heartbeat` actions on the server's interval, detect dead links
  dedupe: true, // drop a replayed `message` whose `seq` is not after the room's last seq
  resendTimeout: 110000, // ms a send() keeps being resent (same id) before it rejects; keep
  // it under the server's --history-dedupe-window (120 s) so a late resend is recognised
});

const ID_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A new message id: 20 characters of [0-9A-Za-z] from crypto.getRandomValues (the
 *  `random` source only where there is no Web Crypto). */
export function messageId(random = Math.random) {
  const out = [];
  const c = globalThis.crypto;
  while (out.length < 20) {
    const bytes = new Uint8Array(32);
    if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256) & 255;
    for (const b of bytes) if (b < 248 && out.length < 20) out.push(ID_ALPHABET[b % 62]); // no bias
  }
  return out.join('');
}

/** Server answers after which a send() is resent with the same id. */
const RESEND_CODES = new Set(['unavailable', 'disconnected', 'timeout']);

/** Errors of the client and of the server (`error` frames) carry a machine-readable code. */
export class NatterError extends Error {
  constructor(code, message, extra = undefined) {
    super(message || code);
    this.name = 'NatterError';
    /** Server codes: bad_request, unknown_action, forbidden, not_found, too_large,
     *  rate_limited, timeout, unavailable, quota_exceeded, internal. Client codes: timeout, disconnected, closed,
     *  queue_full, left, token_failed, reconnect_failed, bad_frame, not_connected. */
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/**
 * Delay before reconnect attempt number `attempt` (1-based): exponential, bounded by
 * `maxDelay`, with jitter. base = min(maxDelay, initialDelay * factor^(attempt-1));
 * delay = base * (1 - jitter * random()), i.e. uniformly in [base*(1-jitter), base].
 */
export function backoffDelay(attempt, options = DEFAULTS, random = Math.random) {
  const o = { ...DEFAULTS, ...options };
  const n = Math.max(1, Math.floor(attempt) || 1);
  const base = Math.min(o.maxDelay, o.initialDelay * Math.pow(o.factor, n - 1));
  const j = Math.min(1, Math.max(0, o.jitter));
  let r = Number(random());
  if (!(r >= 0)) r = 0;
  if (r > 1) r = 1;
  return Math.max(0, Math.round(base * (1 - j * r)));
}

const STATES = ['idle', 'connecting', 'open', 'reconnecting', 'closed'];

function defaultUrl() {
  const loc = globalThis.location;
  if (!loc || !loc.host) return null;
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

/** Adds `token` to the query of a ws(s)/http(s) URL (http is mapped to ws). */
export function withToken(url, token) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (token != null && token !== '') u.searchParams.set('token', String(token));
  return u.toString();
}

function decodeData(data) {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  if (Array.isArray(data)) return data.map(decodeData).join(''); // ws fragments
  return String(data);
}

function validId(kind, id) {
  if (typeof id !== 'string' || id.length === 0) {
    throw new NatterError('bad_request', `${kind} must be a non-empty string`);
  }
}

export class NatterClient {
  /**
   * @param {object} options
   * @param {string} [options.url] WebSocket URL (default: `/ws` of the page's host).
   * @param {string} [options.token] a fixed token (prefer `getToken`).
   * @param {(info:{attempt:number, reconnect:boolean}) => string|Promise<string>} [options.getToken]
   *   token-refresh hook, called before EVERY connection attempt (the first and each
   *   reconnect); attempt is 0 for the first try, n for the n-th retry since the last welcome.
   * @param {Function} [options.WebSocket] WebSocket class (default: globalThis.WebSocket).
   * @param {(close:{code:number, reason:string}) => boolean} [options.shouldReconnect]
   *   decides whether a close from the server is followed by a reconnect
   *   (default: every close except 1000, which the server uses when it kicks a connection).
   * @param {() => number} [options.random] random source in [0,1) for the jitter (tests).
   * @param {object} [options.timers] {setTimeout, clearTimeout, setInterval, clearInterval, now}
   *   replacing the global ones (tests drive time with a fake clock).
   */
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    this._WS = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== 'function') {
      throw new TypeError(
        'natter: no WebSocket implementation; pass { WebSocket } (e.g. from the "ws" package) on Node < 22',
      );
    }
    this.url = options.url || defaultUrl();
    if (!this.url) throw new TypeError('natter: options.url is required outside a browser page');
    this._random = options.random || Math.random;
    // Timer functions (injectable so tests can drive time; bound to the global object
    // because browsers refuse them called as methods of another object).
    const g = globalThis;
    this._t = {
      setTimeout: (fn, ms) => g.setTimeout(fn, ms),
      clearTimeout: (id) => g.clearTimeout(id),
      setInterval: (fn, ms) => g.setInterval(fn, ms),
      clearInterval: (id) => g.clearInterval(id),
      now: () => Date.now(),
      ...(options.timers || {}),
    };
    this._shouldReconnect = options.shouldReconnect || ((c) => c.code !== 1000);

    this._listeners = new Map();
    this._state = 'idle';
    this._ws = null;
    this._gen = 0; // bumped on every attempt and on close: stale callbacks compare it
    this._attempt = 0; // consecutive failed attempts since the last welcome
    this._welcomed = false; // the current socket got its `welcome`
    this._ready = false; // welcomed, rooms rejoined, queue flushed: actions go straight out
    this._everOpened = false;
    this._closedByUser = false;
    this._rooms = new Map(); // roomId -> { since, lastSeq, waiters: [{resolve, reject}] }
    this._queue = []; // [{ frame, resolve, reject }] made while not ready
    this._unacked = new Map(); // message id -> send() entry, until its ack
    this._pending = new Map(); // requestId -> { resolve, reject, timer, kind }
    this._nextRequest = 1;
    this._openWaiters = [];
    this._retryTimer = null;
    this._connectTimer = null;
    this._hbTimer = null;
    this._hbSent = false;
    this._rxSinceHb = true;
    this._retry = null; // { attempt, delay, at } while waiting to reconnect
    /** The last `welcome`: { connectionId, userId, tenantId, heartbeatInterval, node }. */
    this.session = null;
    this._onOnline = () => {
      if (this._state === 'reconnecting') this.reconnectNow();
    };
  }

  // ------------------------------------------------------------------ events ----

  /** Subscribes to an event; returns a function that unsubscribes. Events: `state`,
   *  `welcome`, `message`, `direct`, `presence`, `joined`, `left`, `members`, `reply`,
   *  `error`, `close`, `reconnect`, `frame` (every server frame). */
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }

  _emit(type, detail) {
    const set = this._listeners.get(type);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (e) {
        // A listener's bug must not break the connection logic.
        (globalThis.console?.error || (() => {}))('natter: listener for', type, 'threw', e);
      }
    }
  }

  // ------------------------------------------------------------------ getters ---

  /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
  get state() {
    return this._state;
  }

  /** Rooms the client is in (or will rejoin on the next connection). */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** Number of actions waiting for a connection. */
  get queued() {
    return this._queue.length;
  }

  /** Number of send()s not acknowledged yet (in flight, queued or waiting to be resent). */
  get unacked() {
    return this._unacked.size;
  }

  /** While reconnecting: { attempt, delay, at } of the next attempt (at = epoch ms). */
  get nextRetry() {
    return this._retry ? { ...this._retry } : null;
  }

  /** The last seq seen in a room (undefined until the server sends `seq`). */
  lastSeq(roomId) {
    return this._rooms.get(roomId)?.lastSeq;
  }

  _setState(state, extra = {}) {
    const previous = this._state;
    this._state = state;
    this._emit('state', { state, previous, ...extra });
  }

  // ------------------------------------------------------------- connection -----

  /** Starts connecting (if not already) and resolves once the client is `open`: the
   *  server's `welcome` arrived, rooms are rejoined and queued actions are sent. While the
   *  server is unreachable it keeps retrying; it rejects only on close() or when
   *  `maxAttempts` is exhausted. */
  connect() {
    if (this._state === 'open') return Promise.resolve(this.session);
    const p = new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
    if (this._state === 'idle' || this._state === 'closed') {
      this._closedByUser = false;
      this._attempt = 0;
      globalThis.addEventListener?.('online', this._onOnline);
      this._open();
    }
    return p;
  }

  /** Skips the wait of a pending reconnect and tries now. */
  reconnectNow() {
    if (this._state !== 'reconnecting') return;
    this._t.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  }

  async _open() {
    const gen = ++this._gen;
    this._retry = null;
    // attempt: 0 for the first try of connect(), n >= 1 for the n-th retry since the last
    // welcome (the same number as in the 'reconnecting' state event).
    const attempt = this._attempt;
    const reconnect = this._everOpened || attempt > 0;
    this._setState('connecting', { attempt, reconnect });
    // One deadline for the whole attempt: token, socket, welcome.
    this._t.clearTimeout(this._connectTimer);
    this._connectTimer = this._t.setTimeout(() => {
      this._connectTimer = null;
      if (gen !== this._gen || this._welcomed) return;
      if (this._ws) {
        this._dropSocket(4000, 'connect timeout');
      } else {
        this._gen++; // abandon the getToken still running
        this._emit('error', new NatterError('token_failed', `getToken did not answer within ${this.options.connectTimeout} ms`));
        this._afterClose({ code: 0, reason: 'token_timeout', wasClean: false });
      }
    }, this.options.connectTimeout);
    const fail = (code, e) => {
      this._stopTimers();
      this._emit('error', new NatterError(code, code === 'token_failed' ? `getToken failed: ${e?.message || e}` : String(e?.message || e), { cause: e }));
      this._afterClose({ code: 0, reason: code, wasClean: false });
    };
    let token = this.options.token;
    if (typeof this.options.getToken === 'function') {
      try {
        token = await this.options.getToken({ attempt, reconnect });
      } catch (e) {
        if (gen === this._gen) fail('token_failed', e);
        return;
      }
      if (gen !== this._gen) return; // closed, timed out or restarted meanwhile
    }
    let ws;
    try {
      ws = new this._WS(withToken(this.url, token));
    } catch (e) {
      fail('connect_failed', e);
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      /* not every implementation has it */
    }
    ws.onopen = () => {};
    ws.onerror = () => {
      // Browsers follow an error with a close event. Some implementations (Node 20's
      // experimental WebSocket on a refused upgrade) never do: if no close arrives soon
      // after an error before the welcome, count the attempt as failed.
      this._t.setTimeout(() => {
        if (this._ws === ws && !this._welcomed) this._dropSocket(1006, 'connection failed');
      }, 100);
    };
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onData(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onSocketClose({ code: ev?.code ?? 1006, reason: ev?.reason || '', wasClean: !!ev?.wasClean });
    };
  }

  /** Abandons the current socket now (dead link, timeout) and reconnects. */
  _dropSocket(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    try {
      ws.close(code >= 3000 ? code : 1000, reason); // applications may send 1000 or 3000-4999
    } catch {
      /* already closed */
    }
    this._onSocketClose({ code, reason, wasClean: false });
  }

  _stopTimers() {
    this._t.clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._t.clearInterval(this._hbTimer);
    this._hbTimer = null;
    this._t.clearTimeout(this._retryTimer);
    this._retryTimer = null;
  }

  _onSocketClose(info) {
    this._ws = null;
    const wasWelcomed = this._welcomed;
    this._welcomed = false;
    this._ready = false;
    this._stopTimers();
    // Requests in flight on the dead socket: their outcome is unknown. Joins are redone by
    // the rejoin (their callers keep waiting on the room); everything else is rejected.
    for (const [id, p] of this._pending) {
      this._t.clearTimeout(p.timer);
      this._pending.delete(id);
      if (p.kind !== 'join') {
        p.reject(new NatterError('disconnected', 'the connection closed before the reply', { requestId: id }));
      }
    }
    this._afterClose({ ...info, welcomed: wasWelcomed });
  }

  _afterClose(info) {
    const willReconnect =
      !this._closedByUser && !!this.options.reconnect && !!this._shouldReconnect(info);
    this._emit('close', { ...info, willReconnect });
    if (!willReconnect) {
      this._shutdown(
        info.code === 1000
          ? new NatterError('closed', `closed by the server${info.reason ? `: ${info.reason}` : ''}`, { closeCode: info.code })
          : new NatterError('closed', `connection closed (${info.code})`, { closeCode: info.code }),
        info,
      );
      return;
    }
    this._attempt++;
    if (this._attempt > this.options.maxAttempts) {
      const err = new NatterError('reconnect_failed', `gave up after ${this._attempt - 1} attempts`);
      this._emit('error', err);
      this._shutdown(err, info);
      return;
    }
    const delay = backoffDelay(this._attempt, this.options, this._random);
    this._retry = { attempt: this._attempt, delay, at: this._t.now() + delay };
    this._setState('reconnecting', { ...this._retry, code: info.code, reason: info.reason });
    this._retryTimer = this._t.setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
  }

  /** Final stop: nothing reconnects, everything waiting is rejected with `err`. */
  _shutdown(err, info = {}) {
    this._gen++;
    this._stopTimers();
    this._retry = null;
    this._ready = false;
    this._welcomed = false;
    globalThis.removeEventListener?.('online', this._onOnline);
    for (const [id, p] of this._pending) {
      this._t.clearTimeout(p.timer);
      this._pending.delete(id);
      p.reject(err);
    }
    for (const q of this._queue.splice(0)) q.reject(err);
    for (const e of [...this._unacked.values()]) this._sendFailed(e, err, true);
    for (const entry of this._rooms.values()) for (const w of entry.waiters.splice(0)) w.reject(err);
    this._rooms.clear();
    for (const w of this._openWaiters.splice(0)) w.reject(err);
    if (this._state !== 'closed') this._setState('closed', { code: info.code, reason: info.reason });
  }

  /** Closes the connection and stops reconnecting. Pending actions are rejected with
   *  code 'closed'. Resolves when the socket has closed (or after 2 s at most). */
  close(code = 1000, reason = 'client closing') {
    this._closedByUser = true;
    const ws = this._ws;
    this._ws = null;
    const wasOpen = !!ws;
    this._shutdown(new NatterError('closed', 'the client was closed'), { code, reason });
    if (wasOpen) this._emit('close', { code, reason, wasClean: true, willReconnect: false });
    if (!ws || ws.readyState >= 2) return Promise.resolve();
    return new Promise((resolve) => {
      const t = this._t.setTimeout(resolve, 2000);
      ws.onclose = () => {
        this._t.clearTimeout(t);
        resolve();
      };
      try {
        ws.close(code, reason);
      } catch {
        this._t.clearTimeout(t);
        resolve();
      }
    });
  }

  // ----------------------------------------------------------------- frames -----

  _onData(data) {
    let f;
    try {
      f = JSON.parse(decodeData(data));
    } catch {
      this._emit('error', new NatterError('bad_frame', 'the server sent a frame that is not JSON'));
      return;
    }
    if (!f || typeof f !== 'object') return;
    this._rxSinceHb = true;
    this._emit('frame', f);
    const reqId = f.requestId != null ? String(f.requestId) : null;
    switch (f.type) {
      case 'welcome':
        this._onWelcome(f);
        return;
      case 'message': {
        const entry = this._rooms.get(f.roomId);
        if (entry && typeof f.seq === 'number') {
          if (this.options.dedupe && entry.lastSeq != null && f.seq <= entry.lastSeq) return;
          entry.lastSeq = f.seq;
        }
        this._emit('message', f);
        return;
      }
      case 'direct':
      case 'presence':
        this._emit(f.type, f);
        return;
      case 'error': {
        const p = reqId != null ? this._pending.get(reqId) : null;
        const err = new NatterError(f.code || 'internal', f.message || f.code || 'error', {
          requestId: f.requestId,
          frame: f,
        });
        if (p) this._settle(reqId, null, err);
        else this._emit('error', err);
        return;
      }
      case 'joined':
      case 'left':
      case 'members':
      case 'reply':
      case 'history':
        this._emit(f.type, f);
        break;
      default:
        break; // ack, heartbeat, and types of later protocol versions
    }
    if (reqId != null && this._pending.has(reqId)) this._settle(reqId, f, null);
  }

  _settle(reqId, frame, err) {
    const p = this._pending.get(reqId);
    if (!p) return;
    this._pending.delete(reqId);
    this._t.clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(frame);
  }

  async _onWelcome(f) {
    const ws = this._ws;
    this._t.clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._welcomed = true;
    this._attempt = 0;
    this.session = {
      connectionId: f.connectionId,
      userId: f.userId,
      tenantId: f.tenantId,
      heartbeatInterval: f.heartbeatInterval,
      node: f.node,
    };
    const reconnected = this._everOpened;
    this._everOpened = true;
    this._emit('welcome', f);
    this._startHeartbeat(f.heartbeatInterval);
    // Rejoin every room (and join the ones asked for while disconnected) before anything
    // queued goes out, so queued messages to those rooms are accepted.
    const rooms = [...this._rooms.keys()];
    await Promise.all(rooms.map((r) => this._sendJoin(r)));
    if (this._ws !== ws || !ws) return; // lost again meanwhile
    this._ready = true;
    for (const q of this._queue.splice(0)) this._request(q.frame).then(q.resolve, q.reject);
    this._setState('open', { node: f.node, reconnected, connectionId: f.connectionId });
    for (const w of this._openWaiters.splice(0)) w.resolve(this.session);
    if (reconnected) this._emit('reconnect', { rooms: this.rooms, session: this.session });
  }

  _startHeartbeat(intervalMs) {
    this._t.clearInterval(this._hbTimer);
    this._hbTimer = null;
    if (!this.options.heartbeat) return;
    const iv = Number(intervalMs) > 0 ? Number(intervalMs) : 25000;
    this._hbSent = false;
    this._rxSinceHb = true;
    this._hbTimer = this._t.setInterval(() => {
      // The previous heartbeat went unanswered (and nothing else came) for a whole
      // interval: the link is dead even if the socket does not know it yet.
      if (this._hbSent && !this._rxSinceHb) {
        this._dropSocket(4001, 'heartbeat timeout');
        return;
      }
      this._rxSinceHb = false;
      this._hbSent = this._rawSend({ action: 'heartbeat' });
    }, iv);
  }

  _rawSend(obj) {
    const ws = this._ws;
    if (!ws || !this._welcomed) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Sends a frame with a fresh requestId now; resolves with the reply frame. */
  _request(frame, kind = 'call') {
    return new Promise((resolve, reject) => {
      const requestId = `r${this._nextRequest++}`;
      const timer = this._t.setTimeout(() => {
        if (this._pending.get(requestId)?.timer !== timer) return;
        this._pending.delete(requestId);
        reject(new NatterError('timeout', `no reply to ${frame.action} within ${this.options.requestTimeout} ms`, { requestId }));
      }, this.options.requestTimeout);
      this._pending.set(requestId, { resolve, reject, timer, kind });
      if (!this._rawSend({ ...frame, requestId })) {
        this._t.clearTimeout(timer);
        this._pending.delete(requestId);
        reject(new NatterError('disconnected', 'not connected', { requestId }));
      }
    });
  }

  /** Sends now when ready; otherwise queues (bounded, unless `force`: a resend of what
   *  was accepted already) until the next connection. */
  _call(frame, force = false) {
    if (this._ready) return this._request(frame);
    if (this._closedByUser || this._state === 'closed') {
      return Promise.reject(new NatterError('closed', 'the client is closed; call connect()'));
    }
    if (!force && this._queue.length >= this.options.queueLimit) {
      return Promise.reject(new NatterError('queue_full', `more than ${this.options.queueLimit} actions waiting for a connection`));
    }
    return new Promise((resolve, reject) => this._queue.push({ frame, resolve, reject }));
  }

  /** Sends joinRoom for a tracked room and settles its waiters. Never rejects. */
  _sendJoin(roomId) {
    const entry = this._rooms.get(roomId);
    if (!entry) return Promise.resolve();
    const frame = { action: 'joinRoom', roomId };
    let since = entry.lastSeq ?? entry.since;
    // Resuming from the same seq a third time means the last two resumes brought nothing
    // (e.g. the connection dropped during the replay): join plainly instead of looping,
    // reported as not recovered.
    entry.stalls = since != null && since === entry.resumedFrom ? (entry.stalls || 0) + 1 : 0;
    entry.resumedFrom = since;
    const gaveUp = since != null && entry.stalls >= 2;
    if (gaveUp) {
      since = undefined;
      entry.resumedFrom = undefined;
    }
    if (since != null) frame.since = since;
    return this._request(frame, 'join').then(
      (joined) => {
        if (this._rooms.get(roomId) !== entry) return;
        if (gaveUp) joined = { ...joined, recovered: false };
        entry.joined = true;
        for (const w of entry.waiters.splice(0)) w.resolve(joined);
      },
      (err) => {
        if (this._rooms.get(roomId) !== entry) return;
        if (err.code === 'disconnected') return; // retried by the next rejoin
        const permanent = err.code !== 'timeout' && err.code !== 'internal';
        if (permanent) this._rooms.delete(roomId); // e.g. forbidden: do not rejoin forever
        const waiters = entry.waiters.splice(0);
        if (waiters.length) for (const w of waiters) w.reject(err);
        else this._emit('error', Object.assign(err, { roomId, action: 'joinRoom' }));
      },
    );
  }

  // ----------------------------------------------------------------- actions ----

  /** Joins a room; resolves with the `joined` frame ({roomId, members, recovered?}).
   *  The room is remembered and rejoined after every reconnect. Called while
   *  disconnected, the join happens (and the promise resolves) on the next connection.
   *  `since`: resume after this seq (history); later rejoins use the last seq seen. */
  join(roomId, { since } = {}) {
    try {
      validId('roomId', roomId);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this._closedByUser || this._state === 'closed') {
      return Promise.reject(new NatterError('closed', 'the client is closed; call connect()'));
    }
    let entry = this._rooms.get(roomId);
    if (!entry) {
      entry = { since: since ?? undefined, lastSeq: undefined, waiters: [], joined: false };
      this._rooms.set(roomId, entry);
    } else if (since != null) {
      entry.since = since;
      entry.lastSeq = undefined;
    }
    const p = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
    // Once welcomed (even while the rejoin is still running) the join goes out at once;
    // before that, the next welcome joins every tracked room.
    if (this._welcomed) this._sendJoin(roomId);
    return p;
  }

  /** Leaves a room (it is no longer rejoined). Resolves with the `left` frame; leaving a
   *  room the server does not know (e.g. while disconnected) also resolves. */
  leave(roomId) {
    try {
      validId('roomId', roomId);
    } catch (e) {
      return Promise.reject(e);
    }
    const entry = this._rooms.get(roomId);
    this._rooms.delete(roomId);
    if (entry) {
      for (const w of entry.waiters.splice(0)) w.reject(new NatterError('left', `left ${roomId} before the join completed`));
    }
    const done = { type: 'left', roomId };
    if (!this._welcomed) return Promise.resolve(done); // the server forgot us with the socket
    return this._request({ action: 'leaveRoom', roomId }).catch((err) => {
      if (err.code === 'not_found' || err.code === 'disconnected') return done;
      throw err;
    });
  }

  /** Broadcasts `message` (any JSON) to a room; resolves with the `ack` ({id}) — with
   *  history on, once the server stored it. The message carries `id` (default: a new
   *  random one); until acknowledged it is resent with that id after a reconnect, a
   *  timeout or `error unavailable` (backoff), for up to `resendTimeout` ms, and the
   *  server delivers and stores it once. Other errors reject at once. */
  send(roomId, message, { excludeSelf, id } = {}) {
    try {
      validId('roomId', roomId);
      if (id != null) validId('id', id);
    } catch (e) {
      return Promise.reject(e);
    }
    const msgId = id ?? messageId(this._random);
    const known = this._unacked.get(msgId);
    if (known) return known.promise; // the same message again: one send
    const frame = { action: 'sendMessage', roomId, message, id: msgId };
    if (excludeSelf) frame.excludeSelf = true;
    const entry = { frame, start: this._t.now(), attempts: 0, timer: null };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    this._unacked.set(msgId, entry);
    this._sendAttempt(entry, false);
    return entry.promise;
  }

  _sendAttempt(entry, resend) {
    entry.attempts++;
    this._call(entry.frame, resend).then(
      (ack) => {
        if (this._unacked.get(entry.frame.id) !== entry) return;
        this._unacked.delete(entry.frame.id);
        entry.resolve(ack);
      },
      (err) => this._sendFailed(entry, err, false),
    );
  }

  _sendFailed(entry, err, final) {
    if (this._unacked.get(entry.frame.id) !== entry) return;
    const expired = this._t.now() - entry.start >= this.options.resendTimeout;
    if (final || !RESEND_CODES.has(err.code) || expired) {
      this._t.clearTimeout(entry.timer);
      this._unacked.delete(entry.frame.id);
      entry.reject(err);
      return;
    }
    if (err.code === 'unavailable') {
      // the server could not store it in time: again after a backoff, same id
      const delay = backoffDelay(entry.attempts, this.options, this._random);
      entry.timer = this._t.setTimeout(() => {
        entry.timer = null;
        if (this._unacked.get(entry.frame.id) === entry) this._sendAttempt(entry, true);
      }, delay);
      return;
    }
    // disconnected: queued for the next connection (after the rejoin); timeout: at once
    this._sendAttempt(entry, true);
  }

  /** Sends `message` to every connection of a user of the same tenant; resolves with the `ack`. */
  sendToUser(userId, message) {
    try {
      validId('userId', userId);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._call({ action: 'sendToUser', userId, message });
  }

  /** Online members of a room (or of the tenant without roomId): resolves with the first
   *  page, [{userId}]; presencePage() walks the rest. */
  presence(roomId) {
    return this.presencePage(roomId).then((f) => f.members || []);
  }

  /** One page of presence: resolves with the `members` frame {members, total, cursor?};
   *  pass its `cursor` back for the next page (none on the last). */
  presencePage(roomId, { cursor, limit } = {}) {
    const frame = { action: 'presence' };
    if (roomId != null) frame.roomId = roomId;
    if (cursor != null) frame.cursor = cursor;
    if (limit != null) frame.limit = limit;
    return this._call(frame);
  }

  /** Every online member of a room: the members of `joined` (a `joined` frame of this
   *  room) and the `presence` pages after its `cursor`, or all pages from the first
   *  without one. Deduplicated by userId (a user who comes or goes during the walk may be
   *  missing or listed once more, docs/presence.md). Rooms larger than `joined` lists
   *  (about 100) and rooms without presence events (`presenceEvents: false`) are read this
   *  way; `maxPages` bounds the walk. */
  async roomMembers(roomId, joined, { maxPages = 1000 } = {}) {
    const seen = new Map();
    const add = (list) => { for (const m of list || []) if (!seen.has(m.userId)) seen.set(m.userId, m); };
    let cursor;
    if (joined) {
      if (joined.roomId !== roomId) return Promise.reject(new TypeError('joined is not a joined frame of this room'));
      add(joined.members);
      cursor = joined.cursor;
      if (!cursor) return [...seen.values()];
    }
    for (let pages = 0; pages < maxPages; pages++) {
      const page = await this.presencePage(roomId, cursor != null ? { cursor } : {});
      add(page.members);
      cursor = page.cursor;
      if (!cursor) break;
    }
    return [...seen.values()];
  }

  /** Stored messages of a room (when history is on); resolves with the `history` frame. */
  history(roomId, { limit, before } = {}) {
    const frame = { action: 'history', roomId };
    if (limit != null) frame.limit = limit;
    if (before != null) frame.before = before;
    return this._call(frame);
  }

  /** A heartbeat round trip; resolves with the `heartbeat` frame. */
  heartbeat() {
    return this._call({ action: 'heartbeat' });
  }

  /** A custom action routed to a backend (`natter.route.<action>`); resolves with the
   *  reply's `data`. `fields` are merged into the frame. */
  request(action, fields = {}) {
    try {
      validId('action', action);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._call({ ...fields, action }).then((f) => (f.type === 'reply' ? f.data : f));
  }
}

export { STATES };
export default NatterClient;
