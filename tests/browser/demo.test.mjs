// End-to-end: what the demo page shows of the product, in Debian's headless chromium
// against a 2-node natter cluster (history in JetStream). Each page is opened on one
// node's own port, so "alice on node-1, bob on node-2" is certain: history on join and
// after a reload, "load earlier", rooms switched across the two nodes, a direct message,
// grey presence dots while the page is disconnected (its WebSocket is cut through
// playwright's routeWebSocket) and the messages missed meanwhile, the empty-room hint,
// and a member list that does not replay its animation on a presence change.
//
//   NATTER_BIN=build/natter-node node --test tests/browser/demo.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LAUNCH, T, members, say, screenshot, shownTexts, signIn, startBrowserCluster, waitForMessage, watchErrors,
} from './pages.mjs';

const GREY = 'rgb(160, 164, 184)'; // the stale dot of web/style.css
const GREEN = 'rgb(31, 157, 99)'; // --ok (light scheme)

let cluster;
let context;
let env;
const errors = [];
const tag = Date.now().toString(36); // fresh room names on every run

function nodeUrl(id) {
  return `http://127.0.0.1:${cluster.node(id).port}/`;
}

async function open(name, { node = 'node-1', room = 'lobby', before: prepare } = {}) {
  const page = await context.newPage();
  watchErrors(page, name, errors);
  if (prepare) await prepare(page);
  await signIn(page, nodeUrl(node), name, room);
  assert.equal(await page.getAttribute('#conn', 'data-node'), node);
  return page;
}

/** Sends `n` messages to a room through the page's own client (faster than typing). */
function sendMany(page, room, prefix, n) {
  return page.evaluate(
    async ([r, p, count]) => {
      for (let i = 1; i <= count; i++) await window.natterDemo.client.send(r, { text: `${p}${i}` });
    },
    [room, prefix, n],
  );
}

async function addRoom(page, room) {
  await page.fill('#new-room', room);
  await page.press('#new-room', 'Enter');
  await page.waitForSelector(`#rooms li.active[data-conv="room:${room}"]`);
  await page.waitForSelector(`#members li[data-user]`);
}

function dotColours(page) {
  return page.$$eval('#members .online-dot', (ds) => ds.map((d) => getComputedStyle(d).backgroundColor));
}

describe('the demo page shows the product', { timeout: T(180000) }, () => {
  before(async () => {
    env = await startBrowserCluster('browser-demo-cluster', { nodes: 2 }, { ...LAUNCH, colorScheme: 'light' });
    ({ cluster, context } = env);
  });

  after(() => env?.stop());

  test('history on join, and again after a reload', async () => {
    const room = `hist-${tag}`;
    const alice = await open('alice', { node: 'node-1', room });
    for (const t of ['first', 'second', 'third']) await say(alice, t);
    await alice.waitForFunction(() => document.querySelectorAll('#messages ol.active li.msg.mine[data-id]').length === 3);
    // bob joins later on the other node: the room's history is on screen, in order.
    const bob = await open('bob', { node: 'node-2', room });
    await waitForMessage(bob, 'third');
    assert.deepEqual(await shownTexts(bob), ['first', 'second', 'third']);
    // A reload keeps the tab signed in, in the same room, and reads the history again.
    await bob.reload();
    await bob.waitForSelector('body[data-state="open"]', { timeout: T(15000) });
    assert.equal(await bob.isVisible('#login'), false);
    await waitForMessage(bob, 'third');
    assert.deepEqual(await shownTexts(bob), ['first', 'second', 'third']);
    // alice's reload shows her own messages as hers; live messages go on after them.
    await alice.reload();
    await alice.waitForSelector('body[data-state="open"]', { timeout: T(15000) });
    await alice.waitForFunction(() => document.querySelectorAll('#messages ol.active li.msg.mine').length === 3);
    await say(bob, 'after the reloads');
    await waitForMessage(alice, 'after the reloads');
    assert.deepEqual(await shownTexts(alice), ['first', 'second', 'third', 'after the reloads']);
    await Promise.all([alice.close(), bob.close()]);
  });

  test('"load earlier" pages back through the history without moving the view', async () => {
    const room = `long-${tag}`;
    const alice = await open('alice', { node: 'node-1', room });
    await sendMany(alice, room, 'm', 45);
    const bob = await open('bob', { node: 'node-2', room });
    await waitForMessage(bob, 'm45');
    // The newest page (30), oldest first, and the control at the top.
    const page1 = await shownTexts(bob);
    assert.deepEqual(page1, Array.from({ length: 30 }, (_, i) => `m${i + 16}`));
    const more = bob.locator('#messages ol.active .load-earlier');
    await more.waitFor({ state: 'visible' });
    await bob.$eval('#messages ol.active', (l) => (l.scrollTop = 0));
    await screenshot(bob, 'browser-load-earlier.png');
    const anchor = (p) => p.$eval('#messages ol.active li.msg[data-seq]', (li) => li.querySelector('.text').textContent);
    assert.equal(await anchor(bob), 'm16');
    await more.click();
    await bob.waitForFunction(() => document.querySelectorAll('#messages ol.active li.msg').length === 45);
    assert.deepEqual(await shownTexts(bob), Array.from({ length: 45 }, (_, i) => `m${i + 1}`));
    await more.waitFor({ state: 'hidden' }); // hasMore: false, nothing older
    // m16, at the top before, is still on screen: the older page went above it.
    const visible = await bob.evaluate(() => {
      const list = document.querySelector('#messages ol.active');
      const m16 = [...list.querySelectorAll('li.msg .text')].find((e) => e.textContent === 'm16');
      const a = list.getBoundingClientRect();
      const b = m16.getBoundingClientRect();
      return b.bottom > a.top && b.top < a.bottom;
    });
    assert.ok(visible, 'm16 stays in view after loading earlier messages');
    await Promise.all([alice.close(), bob.close()]);
  });

  test('rooms: two users on two nodes switch between rooms, with unread counts', async () => {
    const lobby = `lobby-${tag}`;
    const ops = `ops-${tag}`;
    const alice = await open('alice', { node: 'node-1', room: lobby });
    const bob = await open('bob', { node: 'node-2', room: lobby });
    await addRoom(alice, ops);
    await addRoom(bob, ops);
    await bob.waitForSelector('#members li[data-user="alice"]');
    assert.equal(await bob.textContent('#members-title'), `Online in #${ops}`);
    assert.equal(await bob.textContent('#room-name'), ops);
    await say(alice, 'in ops');
    await waitForMessage(bob, 'in ops');
    // bob switches back to the lobby: a new message in ops counts as unread there.
    await bob.click(`#rooms li[data-conv="room:${lobby}"] button`);
    assert.equal(await bob.textContent('#room-name'), lobby);
    await say(alice, 'second in ops');
    await bob.waitForSelector(`#rooms li[data-conv="room:${ops}"] .badge:not([hidden])`);
    assert.equal(await bob.textContent(`#rooms li[data-conv="room:${ops}"] .badge`), '1');
    assert.deepEqual(await shownTexts(bob), []);
    // The lobby still works while ops is in the background.
    await alice.click(`#rooms li[data-conv="room:${lobby}"] button`);
    await say(alice, 'in the lobby');
    await waitForMessage(bob, 'in the lobby');
    assert.deepEqual(await shownTexts(bob), ['in the lobby']);
    await bob.click(`#rooms li[data-conv="room:${ops}"] button`);
    assert.deepEqual(await shownTexts(bob), ['in ops', 'second in ops']);
    assert.equal(await bob.isVisible(`#rooms li[data-conv="room:${ops}"] .badge`), false);
    // Both rooms come back after a reload, the one on screen first.
    await bob.reload();
    await bob.waitForSelector('body[data-state="open"]', { timeout: T(15000) });
    await waitForMessage(bob, 'second in ops');
    assert.equal(await bob.textContent('#room-name'), ops);
    assert.equal(await bob.locator('#rooms li').count(), 2);
    await Promise.all([alice.close(), bob.close()]);
  });

  test('a direct message to a member, and the answer', async () => {
    const room = `dm-${tag}`;
    const alice = await open('alice', { node: 'node-1', room });
    const bob = await open('bob', { node: 'node-2', room });
    await alice.waitForSelector('#members li[data-user="bob"]');
    await alice.click('#members li[data-user="bob"] button');
    assert.equal(await alice.textContent('#room-name'), 'bob');
    assert.equal(await alice.textContent('#conv-sub'), 'direct messages');
    assert.match(await alice.textContent('#messages ol.active .empty-hint'), /No messages with bob yet/);
    await say(alice, 'psst, bob');
    await bob.waitForSelector('#dms li[data-conv="dm:alice"] .badge:not([hidden])', { timeout: T(10000) });
    // Not in the room's timeline.
    assert.deepEqual(await shownTexts(bob), []);
    await bob.click('#dms li[data-conv="dm:alice"] button');
    await waitForMessage(bob, 'psst, bob');
    assert.equal(await bob.isVisible('#messages ol.active li.msg.direct'), true);
    await say(bob, 'hi alice');
    await waitForMessage(alice, 'hi alice');
    await alice.waitForFunction(() => document.querySelector('#messages ol.active li.msg.mine[data-id]'));
    await screenshot(alice, 'browser-direct.png');
    await Promise.all([alice.close(), bob.close()]);
  });

  test('presence dots turn grey while disconnected; missed messages arrive after', async () => {
    const room = `grey-${tag}`;
    let blocked = false;
    let current = null;
    const cut = async (page) => {
      // Every WebSocket of this page goes through here: passed on to the node, or, while
      // `blocked`, closed at once (a network that is down).
      await page.routeWebSocket(/\/ws/, (ws) => {
        if (blocked) {
          ws.close({ code: 4003, reason: 'test: network down' });
          return;
        }
        current = ws;
        ws.connectToServer();
      });
    };
    const alice = await open('alice', { node: 'node-1', room });
    const carol = await open('carol', { node: 'node-2', room, before: cut });
    await carol.waitForSelector('#members li[data-user="alice"]');
    assert.deepEqual(await dotColours(carol), [GREEN, GREEN]);
    assert.equal(await carol.isVisible('#stale'), false);
    await say(alice, 'before the cut');
    await waitForMessage(carol, 'before the cut'); // carol has seen the room up to here
    await carol.evaluate(() => {
      window.__joins = [];
      window.natterDemo.client.on('joined', (j) => window.__joins.push(j.recovered));
    });

    blocked = true;
    await current.close({ code: 4003, reason: 'test: network down' });
    await carol.waitForSelector('body[data-state="reconnecting"]', { timeout: T(10000) });
    await carol.waitForFunction((g) => [...document.querySelectorAll('#members .online-dot')]
      .every((d) => getComputedStyle(d).backgroundColor === g), GREY, { timeout: T(5000) });
    assert.equal(await carol.isVisible('#stale'), true);
    await screenshot(carol, 'browser-grey-dots.png');
    // Meanwhile alice sees carol go, and says something carol misses.
    await alice.waitForSelector('#members li[data-user="carol"]', { state: 'detached', timeout: T(15000) });
    await say(alice, 'while carol was away');

    blocked = false;
    await carol.evaluate(() => window.natterDemo.client.reconnectNow()); // what "Retry now" does
    await carol.waitForSelector('body[data-state="open"]', { timeout: T(15000) });
    await carol.waitForFunction((g) => {
      const ds = [...document.querySelectorAll('#members .online-dot')];
      return ds.length === 2 && ds.every((d) => getComputedStyle(d).backgroundColor === g);
    }, GREEN, { timeout: T(5000) });
    // The rejoin asked for what came after the last seq seen (`since`): it is replayed.
    await waitForMessage(carol, 'while carol was away');
    assert.deepEqual(await carol.evaluate(() => window.__joins), [true]);
    assert.deepEqual(await shownTexts(carol), ['before the cut', 'while carol was away']);
    await Promise.all([alice.close(), carol.close()]);
  });

  test('an empty room says so, until its first message', async () => {
    const room = `empty-${tag}`;
    const alice = await open('alice', { node: 'node-1', room });
    const hint = alice.locator('#messages ol.active .empty-hint');
    await hint.waitFor({ state: 'visible' });
    assert.match(await hint.textContent(), new RegExp(`No messages in #${room} yet`));
    await screenshot(alice, 'browser-empty-room.png');
    await say(alice, 'hello, anyone?');
    await hint.waitFor({ state: 'hidden' });
    // A room with history shows no hint.
    await addRoom(alice, `other-${tag}`);
    await alice.locator('#messages ol.active .empty-hint').waitFor({ state: 'visible' });
    await alice.click(`#rooms li[data-conv="room:${room}"] button`);
    assert.equal(await hint.isVisible(), false);
    await alice.close();
  });

  test('a presence change adds one entry and leaves the others alone (no animation replay)', async () => {
    const room = `calm-${tag}`;
    const alice = await open('alice', { node: 'node-1', room });
    const bob = await open('bob', { node: 'node-2', room });
    await alice.waitForSelector('#members li[data-user="bob"]');
    await alice.waitForFunction(() => [...document.querySelectorAll('#members li')].every((li) => !li.classList.contains('fresh')));
    // Record what changes in alice's member list from now on.
    await alice.evaluate(() => {
      const ul = document.getElementById('members');
      window.__before = [...ul.children];
      window.__added = [];
      window.__removed = [];
      new MutationObserver((records) => {
        for (const r of records) {
          for (const n of r.addedNodes) window.__added.push({ user: n.dataset.user, fresh: n.classList.contains('fresh') });
          for (const n of r.removedNodes) window.__removed.push(n.dataset.user);
        }
      }).observe(ul, { childList: true });
    });
    const dave = await open('dave', { node: 'node-2', room });
    await alice.waitForSelector('#members li[data-user="dave"]', { timeout: T(10000) });
    const seen = await alice.evaluate(() => ({
      added: window.__added,
      removed: window.__removed,
      kept: window.__before.every((li) => li.isConnected && li.getAnimations().length === 0 && !li.classList.contains('fresh')),
    }));
    assert.deepEqual(seen.added, [{ user: 'dave', fresh: true }]);
    assert.deepEqual(seen.removed, []);
    assert.ok(seen.kept, 'alice and bob keep their entries, not animated again');
    assert.deepEqual(await members(alice), ['alice', 'bob', 'dave']);
    // dave goes: only his entry is removed.
    await dave.close();
    await alice.waitForSelector('#members li[data-user="dave"]', { state: 'detached', timeout: T(15000) });
    assert.deepEqual(await alice.evaluate(() => window.__removed), ['dave']);
    assert.ok(await alice.evaluate(() => window.__before.every((li) => li.isConnected)));
    await alice.setViewportSize({ width: 390, height: 760 });
    await addRoom(alice, `second-${tag}`);
    await alice.click(`#rooms li[data-conv="room:${room}"] button`);
    await say(bob, 'seen on a phone');
    await waitForMessage(alice, 'seen on a phone');
    await screenshot(alice, 'browser-demo-narrow.png');
    await alice.setViewportSize(LAUNCH.viewport);
    await screenshot(alice, 'browser-demo.png');
    await Promise.all([alice.close(), bob.close()]);
  });

  test('no script errors in the pages', () => {
    assert.deepEqual(errors, []);
  });
});
