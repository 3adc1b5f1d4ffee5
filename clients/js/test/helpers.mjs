// Test doubles for natter.js: a fake clock (injected as `timers`) and a fake WebSocket
// class (injected as `WebSocket`) that the test drives as if it were the server.

/** Waits for pending promise callbacks (and the tasks they queue) to run. */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock {
  constructor(now = 1_000_000) {
    this._now = now;
    this._seq = 0;
    this._timers = new Map(); // id -> { at, fn, interval }
    this.timers = {
      setTimeout: (fn, ms) => this._add(fn, ms, false),
      setInterval: (fn, ms) => this._add(fn, ms, true),
      clearTimeout: (id) => this._timers.delete(id),
      clearInterval: (id) => this._timers.delete(id),
      now: () => this._now,
    };
  }

  _add(fn, ms, interval) {
    const id = ++this._seq;
    const d = Math.max(0, Number(ms) || 0);
    this._timers.set(id, { at: this._now + d, fn, interval: interval ? Math.max(1, d) : 0, seq: id });
    return id;
  }

  now() {
    return this._now;
  }

  /** Delays of pending timers, sorted (relative to now). */
  pending() {
    return [...this._timers.values()].map((t) => t.at - this._now).sort((a, b) => a - b);
  }

  /** Advances time by `ms`, firing due timers in order and letting promises settle
   *  between them (timers created meanwhile fire too if they fall due). */
  async tick(ms) {
    const target = this._now + ms;
    await flush();
    for (;;) {
      let next = null;
      let nextId = null;
      for (const [id, t] of this._timers) {
        if (t.at <= target && (next === null || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t;
          nextId = id;
        }
      }
      if (!next) break;
      this._now = next.at;
      if (next.interval) {
        next.at += next.interval;
        next.seq = ++this._seq;
      } else {
        this._timers.delete(nextId);
      }
      next.fn();
      await flush();
    }
    this._now = target;
    await flush();
  }
}

/** A WebSocket double. Every instance is recorded in `FakeWebSocket.instances`; the test
 *  plays the server with `serverOpen()`, `welcome()`, `serverSend()`, `serverClose()`. */
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static instances = [];
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = []; // parsed frames the client sent
      this.closedWith = null;
      this._answered = new Set();
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
    }

    static get last() {
      return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    }

    get token() {
      return new URL(this.url).searchParams.get('token');
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(JSON.parse(data));
    }

    close(code = 1000, reason = '') {
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason };
      this.readyState = 2;
      // Like a browser: the close event arrives later, asynchronously.
      setImmediate(() => this._closed(code, reason, true));
    }

    _closed(code, reason, wasClean) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean });
    }

    // ---- the server's side ----
    serverOpen() {
      this.readyState = 1;
      this.onopen?.({});
    }

    serverSend(frame) {
      this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }

    welcome(extra = {}) {
      if (this.readyState === 0) this.serverOpen();
      this.serverSend({
        type: 'welcome',
        connectionId: `c${FakeWebSocket.instances.indexOf(this) + 1}`,
        userId: 'alice',
        tenantId: 'demo',
        heartbeatInterval: 25000,
        node: 'node-1',
        ...extra,
      });
    }

    serverClose(code = 1006, reason = '') {
      this.onerror?.({});
      this._closed(code, reason, code !== 1006);
    }

    /** Frames sent with the given action. */
    actions(action) {
      return this.sent.filter((f) => f.action === action);
    }

    /** Answers every unanswered joinRoom with `joined`. */
    answerJoins(members = [{ userId: 'alice' }]) {
      for (const f of this.sent) {
        if (f.action === 'joinRoom' && !this._answered.has(f.requestId)) {
          this._answered.add(f.requestId);
          this.serverSend({ type: 'joined', roomId: f.roomId, members, requestId: f.requestId });
        }
      }
    }
  }
  return FakeWebSocket;
}
