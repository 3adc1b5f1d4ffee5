// A whole natter cluster on loopback for the browser tests: nats-server (JetStream on),
// redis-server, N natter-node processes and haproxy in front of them (public port and
// internal API port, configuration rendered from the one template by
// scripts/haproxy-cfg.sh) — the same layout and flags as scripts/run-local.sh, on free
// 127.0.0.1 ports, each process tracked by PID and stopped by PID (SIGTERM, then SIGKILL) in
// stop().
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HOST = '127.0.0.1';
const SCALE = Number(process.env.NATTER_TEST_TIMEOUT_SCALE || 1);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Free loopback ports (all held open at once, so they are distinct). */
export async function freePorts(n) {
  const servers = [];
  const ports = [];
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    await new Promise((resolve, reject) => {
      s.once('error', reject);
      s.listen(0, HOST, resolve);
    });
    servers.push(s);
    ports.push(s.address().port);
  }
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: HOST });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function httpOk(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

export function findNatterBin() {
  const candidates = [process.env.NATTER_BIN, path.join(ROOT, 'build/natter-node')].filter(Boolean);
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(`natter-node not found (tried ${candidates.join(', ')}); build it or set NATTER_BIN`);
}

export class Cluster {
  /** standalone: one node without NATS/Redis/haproxy; devTokens: serve /dev/token. */
  constructor({ nodes = 2, bin = findNatterBin(), logDir, standalone = false, devTokens = true } = {}) {
    this.nodeCount = standalone ? 1 : nodes;
    this.standalone = standalone;
    this.devTokens = devTokens;
    this.bin = bin;
    this.logDir = logDir || fs.mkdtempSync(path.join(os.tmpdir(), 'natter-browser-'));
    fs.mkdirSync(this.logDir, { recursive: true });
    this.procs = []; // { name, child, pid, exited }
    this.nodes = []; // { id, port, apiPort, proc }
    this.secret = `browser-test-${process.pid}-${Date.now()}-0123456789abcdef`; // HS256: >= 32 bytes
    this.adminToken = `admin-${process.pid}`;
  }

  _start(name, cmd, args) {
    const log = fs.openSync(path.join(this.logDir, `${name}.log`), 'w');
    const child = spawn(cmd, args, { stdio: ['ignore', log, log], cwd: ROOT });
    fs.closeSync(log);
    const proc = { name, child, pid: child.pid, exited: null };
    child.on('exit', (code, signal) => (proc.exited = { code, signal }));
    child.on('error', (err) => (proc.exited = { error: String(err) }));
    this.procs.push(proc);
    return proc;
  }

  _checkAlive() {
    for (const p of this.procs) {
      if (p.exited && !p.expectedDeath) {
        let tail = '';
        try {
          tail = fs.readFileSync(path.join(this.logDir, `${p.name}.log`), 'utf8').split('\n').slice(-25).join('\n');
        } catch {
          /* no log */
        }
        throw new Error(`${p.name} (pid ${p.pid}) exited ${JSON.stringify(p.exited)}:\n${tail}`);
      }
    }
  }

  async _waitFor(what, check, ms = 30000) {
    const deadline = Date.now() + ms * SCALE;
    while (Date.now() < deadline) {
      if (await check()) return;
      this._checkAlive();
      await sleep(100);
    }
    throw new Error(`${what} not ready after ${ms * SCALE} ms (logs: ${this.logDir})`);
  }

  async start() {
    if (this.standalone) return this._startStandalone();
    const [natsPort, natsMon, redisPort, haPort, haApiPort, ...nodePorts] = await freePorts(5 + 2 * this.nodeCount);
    this.port = haPort;
    this.apiPort = haApiPort; // haproxy's internal API listener
    this.url = `http://${HOST}:${haPort}/`;
    // A fresh JetStream store: rooms' history from an earlier run would show on the pages.
    fs.rmSync(path.join(this.logDir, 'jetstream'), { recursive: true, force: true });
    this._start('nats', 'nats-server', ['-a', HOST, '-p', String(natsPort), '-m', String(natsMon),
      '-js', '-sd', path.join(this.logDir, 'jetstream')]);
    this._start('redis', 'redis-server', ['--port', String(redisPort), '--bind', HOST, '--save', '',
      '--appendonly', 'no']);
    await this._waitFor('nats-server', () => httpOk(`http://${HOST}:${natsMon}/healthz`));
    await this._waitFor('redis-server', () => portOpen(redisPort));

    const staticDir = path.join(ROOT, 'web');
    for (let i = 1; i <= this.nodeCount; i++) {
      const port = nodePorts[2 * (i - 1)];
      const apiPort = nodePorts[2 * (i - 1) + 1];
      const id = `node-${i}`;
      const proc = this._start(id, this.bin, [
        '--listen', `${HOST}:${port}`, '--api-listen', `${HOST}:${apiPort}`, '--node-id', id,
        '--nats', `nats://${HOST}:${natsPort}`, '--redis', `redis://${HOST}:${redisPort}`,
        '--jwt-secret', this.secret, '--admin-token', this.adminToken, '--dev-tokens', 'on',
        '--trust-proxy', 'on', '--drain-grace', '2', '--static-dir', staticDir,
      ]);
      this.nodes.push({ id, port, apiPort, proc });
    }
    for (const n of this.nodes) await this._waitFor(n.id, () => httpOk(`http://${HOST}:${n.port}/readyz`));

    // The same haproxy configuration as scripts/run-local.sh, from the same template.
    const cfg = execFileSync('sh', [path.join(ROOT, 'scripts', 'haproxy-cfg.sh'),
      '--public', `${HOST}:${haPort}`, '--api', `${HOST}:${haApiPort}`, '--maxconn', '2000',
      ...this.nodes.map((n) => `${n.id}=${HOST}:${n.port},${HOST}:${n.apiPort}`)], { encoding: 'utf8' });
    const cfgPath = path.join(this.logDir, 'haproxy.cfg');
    fs.writeFileSync(cfgPath, cfg);
    this._start('haproxy', 'haproxy', ['-db', '-f', cfgPath]);
    await this._waitFor('haproxy', () => httpOk(`http://${HOST}:${haPort}/healthz`));
    await this._waitFor('haproxy (API)', () => httpOk(`http://${HOST}:${haApiPort}/healthz`));
    return this;
  }

  async _startStandalone() {
    const [port, apiPort] = await freePorts(2);
    const proc = this._start('node-1', this.bin, [
      '--listen', `${HOST}:${port}`, '--api-listen', `${HOST}:${apiPort}`, '--node-id', 'node-1',
      '--jwt-secret', this.secret, '--dev-tokens', this.devTokens ? 'on' : 'off',
      '--static-dir', path.join(ROOT, 'web'), '--drain-grace', '0',
    ]);
    this.nodes.push({ id: 'node-1', port, apiPort, proc });
    this.port = port;
    this.url = `http://${HOST}:${port}/`;
    await this._waitFor('node-1', () => httpOk(`http://${HOST}:${port}/readyz`));
    return this;
  }

  /** Sanitizer reports (ASan/UBSan/LSan builds) found in the nodes' logs. */
  sanitizerReports() {
    const re = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer/;
    const found = [];
    for (const n of this.nodes) {
      let text = '';
      try {
        text = fs.readFileSync(path.join(this.logDir, `${n.id}.log`), 'utf8');
      } catch {
        continue;
      }
      const lines = text.split('\n').filter((l) => re.test(l));
      if (lines.length) found.push(`${n.id}: ${lines.slice(0, 3).join(' | ')}`);
    }
    return found;
  }

  node(id) {
    return this.nodes.find((n) => n.id === id);
  }

  /** kill -9 of one node, by PID. */
  async killNode(id) {
    const n = this.node(id);
    if (!n) throw new Error(`no node ${id}`);
    n.proc.expectedDeath = true;
    process.kill(n.proc.pid, 'SIGKILL');
    const deadline = Date.now() + 5000;
    while (!n.proc.exited && Date.now() < deadline) await sleep(20);
  }

  /** Stops everything it started, by PID: haproxy first, then the nodes (together: each
   *  drains for --drain-grace), then redis and nats. SIGTERM, then SIGKILL. */
  async stop() {
    const rank = (p) => (p.name === 'haproxy' ? 0 : p.name.startsWith('node-') ? 1 : 2);
    for (const r of [0, 1, 2]) {
      await Promise.all(this.procs.filter((p) => rank(p) === r).map((p) => this._stopProc(p)));
    }
  }

  async _stopProc(p) {
    if (p.exited) return;
    p.expectedDeath = true;
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      return;
    }
    const deadline = Date.now() + 8000;
    while (!p.exited && Date.now() < deadline) await sleep(25);
    if (!p.exited) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      const d2 = Date.now() + 2000;
      while (!p.exited && Date.now() < d2) await sleep(25);
    }
  }
}
