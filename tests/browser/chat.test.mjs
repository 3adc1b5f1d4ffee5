// End-to-end: the demo page in Debian's headless chromium (driven by playwright-core)
// against a 2-node natter cluster behind haproxy. Two pages as two users chat in one room,
// see each other come online and go offline, and keep chatting after the node one of them
// is connected to is killed with SIGKILL.
//
//   bash tests/browser/run.sh            (installs npm deps, runs unit + browser tests)
//   NATTER_BIN=build/natter-node node --test tests/browser/chat.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { ROOT, sleep } from './cluster.mjs';
import {
  T, members, say, screenshot, signIn, startBrowserCluster, waitForMessage, watchErrors,
} from './pages.mjs';

let cluster;
let context;
let env;
const pages = {}; // name -> page
const consoleErrors = [];

async function openAs(name, room = 'lobby') {
  const page = await context.newPage();
  watchErrors(page, name, consoleErrors);
  await signIn(page, cluster.url, name, room);
  pages[name] = page;
  return page;
}

describe('demo page in chromium against a 2-node cluster', { timeout: T(120000) }, () => {
  before(async () => {
    env = await startBrowserCluster('browser-cluster', { nodes: 2 });
    ({ cluster, context } = env);
  });

  after(() => env?.stop());

  test('the demo page and the library are served with the right content types', async () => {
    for (const [file, type] of [['', 'text/html'], ['natter.js', 'text/javascript'], ['app.js', 'text/javascript'], ['style.css', 'text/css']]) {
      const res = await fetch(cluster.url + file);
      assert.equal(res.status, 200, file);
      assert.match(res.headers.get('content-type'), new RegExp(`^${type}`), file);
    }
    // /natter.js is the client package's file (--client-js), not a copy in web/.
    const served = await (await fetch(cluster.url + 'natter.js')).text();
    assert.equal(served, fs.readFileSync(path.join(ROOT, 'clients/js/natter.js'), 'utf8'));
    assert.equal(fs.existsSync(path.join(ROOT, 'web/natter.js')), false);
  });

  test('the public port serves no part of the HTTP API; the internal port does', async () => {
    const auth = { Authorization: `Bearer ${cluster.adminToken}` };
    for (const p of ['v1/tenants/demo/rooms/lobby/messages', '@connections/abc', 'metrics', 'v1/']) {
      for (const method of ['GET', 'POST']) {
        const res = await fetch(cluster.url + p, { method, headers: auth, body: method === 'POST' ? '{"message":"x"}' : undefined });
        assert.equal(res.status, 404, `public ${method} /${p}`);
      }
    }
    const api = `http://127.0.0.1:${cluster.apiPort}`;
    const metrics = await fetch(`${api}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^natter_connections /m);
    const noToken = await fetch(`${api}/v1/tenants/demo/rooms/lobby/messages`, { method: 'POST', body: '{"message":"x"}' });
    assert.equal(noToken.status, 401);
  });

  test('two users in one room: each sees the other online and they exchange messages', async () => {
    const alice = await openAs('alice');
    const bob = await openAs('bob');
    // alice sees bob come online live; bob finds alice in the room.
    await alice.waitForSelector('#members li[data-user="bob"]', { timeout: T(10000) });
    await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.system')].some((e) => e.textContent === 'bob joined'));
    await bob.waitForSelector('#members li[data-user="alice"]', { timeout: T(10000) });
    assert.deepEqual(await members(alice), ['alice', 'bob']);
    assert.equal(await alice.textContent('#online-count'), '2');

    await say(alice, 'Hi Bob!');
    await waitForMessage(bob, 'Hi Bob!');
    await say(bob, 'Hello Alice, over another node?');
    await waitForMessage(alice, 'Hello Alice, over another node?');
    // The sender's own message is shown once and marked sent (acked).
    await alice.waitForFunction(() => {
      const mine = [...document.querySelectorAll('#messages li.msg.mine')];
      return mine.length === 1 && mine[0].dataset.id && !mine[0].classList.contains('pending');
    });
    const nodes = await Promise.all([alice, bob].map((p) => p.getAttribute('#conn', 'data-node')));
    console.log(`# alice on ${nodes[0]}, bob on ${nodes[1]}`);
  });

  test('a node is killed: the page reconnects, rejoins and keeps chatting', async () => {
    const { alice, bob } = pages;
    const victim = await alice.getAttribute('#conn', 'data-node');
    assert.ok(cluster.node(victim), `alice is on a known node (${victim})`);
    const t0 = Date.now();
    await cluster.killNode(victim);
    // The page notices, shows the reconnect state, and comes back on the other node.
    await alice.waitForSelector('body:not([data-state="open"])', { timeout: T(10000) });
    await say(alice, 'sent while reconnecting');
    if ((await alice.getAttribute('body', 'data-state')) !== 'open') await screenshot(alice, 'browser-reconnecting.png');
    await alice.waitForSelector('body[data-state="open"]', { timeout: T(30000) });
    const now = await alice.getAttribute('#conn', 'data-node');
    assert.notEqual(now, victim, 'reconnected to the surviving node');
    console.log(`# alice reconnected from ${victim} to ${now} in ${Date.now() - t0} ms`);
    await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.system')].some((e) => /^Reconnected to .* and rejoined #lobby$/.test(e.textContent)));
    await alice.waitForSelector('#banner', { state: 'hidden' });
    // Rejoined: bob is in the member list again (from the rejoin's `joined`).
    await bob.waitForSelector('body[data-state="open"]', { timeout: T(30000) });
    await alice.waitForSelector('#members li[data-user="bob"]', { timeout: T(10000) });
    // The message typed during the outage was queued and delivered.
    await waitForMessage(bob, 'sent while reconnecting', T(15000));
    await say(alice, 'still here after the crash');
    await waitForMessage(bob, 'still here after the crash');
    await say(bob, 'me too');
    await waitForMessage(alice, 'me too');
    const file = await screenshot(alice, 'browser-chat.png');
    console.log(`# screenshot ${path.relative(ROOT, file)}`);
  });

  test('when a page closes, the other sees that user go offline (both ways)', async () => {
    const { alice } = pages;
    await pages.bob.close();
    delete pages.bob;
    await alice.waitForSelector('#members li[data-user="bob"]', { state: 'detached', timeout: T(15000) });
    await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.system')].some((e) => e.textContent === 'bob left'));
    assert.deepEqual(await members(alice), ['alice']);

    // bob comes back: alice sees him online again; then alice closes and bob sees her go.
    const bob = await openAs('bob');
    await alice.waitForSelector('#members li[data-user="bob"]', { timeout: T(10000) });
    await bob.waitForSelector('#members li[data-user="alice"]', { timeout: T(10000) });
    await bob.setViewportSize({ width: 390, height: 760 });
    await say(bob, 'back on my phone');
    await waitForMessage(alice, 'back on my phone');
    await screenshot(bob, 'browser-chat-narrow.png');
    await alice.close();
    delete pages.alice;
    await bob.waitForSelector('#members li[data-user="alice"]', { state: 'detached', timeout: T(15000) });
    await bob.waitForFunction(() => [...document.querySelectorAll('#messages li.system')].some((e) => e.textContent === 'alice left'));
    // Leave: back to the form, the connection closed cleanly and not reopened.
    await bob.click('#leave');
    await bob.waitForSelector('#login', { state: 'visible' });
    await sleep(300);
    assert.equal(await bob.getAttribute('body', 'data-state'), 'idle');
    assert.equal(await bob.evaluate(() => window.natterDemo.client.state), 'closed');
  });

  test('no script errors in the pages', () => {
    assert.deepEqual(consoleErrors, []);
  });
});

describe('demo page without the development token endpoint', { timeout: T(60000) }, () => {
  let node;
  let ctx;
  let standalone;
  before(async () => {
    standalone = await startBrowserCluster('browser-standalone', { standalone: true, devTokens: false });
    ({ cluster: node, context: ctx } = standalone);
  });
  after(() => standalone?.stop());

  test('the page explains that /dev/token is off and how to turn it on', async () => {
    const page = await ctx.newPage();
    await page.goto(node.url);
    await screenshot(page, 'browser-login.png');
    await page.fill('#name', 'carol');
    await page.click('#join');
    await page.waitForSelector('#token-help', { state: 'visible', timeout: T(10000) });
    assert.match(await page.textContent('#token-help'), /--dev-tokens on/);
    assert.equal(await page.isVisible('#chat'), false);
    await screenshot(page, 'browser-dev-tokens-off.png');
  });

  test('a name that is not a valid id is refused on the page', async () => {
    const page = await ctx.newPage();
    await page.goto(node.url);
    await page.fill('#name', 'bad name.with*dots');
    await page.click('#join');
    await page.waitForSelector('#login-error', { state: 'visible' });
    assert.match(await page.textContent('#login-error'), /letters, digits/);
  });
});
