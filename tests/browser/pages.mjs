// Helpers of the browser tests: Debian's chromium through playwright-core, and the demo
// page's moves (sign in, say something, wait for a message) shared by the test files.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

import { Cluster, ROOT } from './cluster.mjs';

// playwright-core is a devDependency of tests/browser/ (installed there by `npm ci`).
const require = createRequire(path.join(ROOT, 'tests', 'browser', 'package.json'));
export const { chromium } = require('playwright-core');

export const ART = path.join(ROOT, 'tests', 'artifacts');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCALE = Number(process.env.NATTER_TEST_TIMEOUT_SCALE || 1);
export const T = (ms) => ms * SCALE;

export const LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1100, height: 720 },
};

/** Collects script errors of pages (WebSocket connection failures are expected noise). */
export function watchErrors(page, name, into) {
  page.on('pageerror', (e) => into.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket connection|Failed to load resource/.test(m.text())) {
      into.push(`${name}: ${m.text()}`);
    }
  });
}

/** Signs in on the demo page at `url` as `name` in `room` and waits for the connection. */
export async function signIn(page, url, name, room = 'lobby') {
  await page.goto(url);
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#join');
  await page.waitForSelector('body[data-state="open"]', { timeout: T(15000) });
  await page.waitForSelector(`#members li[data-user="${name}"]`);
  return page;
}

export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** Waits until `page` shows, in the conversation on screen, a message with this exact
 *  text from someone else. */
export function waitForMessage(page, text, timeout = T(10000)) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages ol.active li.msg:not(.mine) .text')].some((e) => e.textContent === t),
    text,
    { timeout },
  );
}

/** Texts of the messages of the conversation on screen, top to bottom. */
export function shownTexts(page) {
  return page.$$eval('#messages ol.active li.msg .text', (els) => els.map((e) => e.textContent));
}

export function members(page) {
  return page.$$eval('#members li', (lis) => lis.map((li) => li.dataset.user).sort());
}

export async function screenshot(page, name) {
  fs.mkdirSync(ART, { recursive: true });
  const file = path.join(ART, name);
  await page.screenshot({ path: file, animations: 'disabled' });
  return file;
}

/** A cluster (`Cluster` options; `logName` under tests/artifacts/) and a fresh chromium
 *  profile for one describe block. `stop()` closes the browser, stops every process and
 *  fails on sanitizer reports in the nodes' logs. */
export async function startBrowserCluster(logName, options = {}, launch = LAUNCH) {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium (scripts/install-deps.sh)`);
  fs.mkdirSync(ART, { recursive: true });
  const cluster = new Cluster({ ...options, logDir: path.join(ART, logName) });
  let dir = null;
  let context = null;
  const stop = async () => {
    try {
      if (context) await context.close();
    } finally {
      await cluster.stop();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(cluster.sanitizerReports(), [], `sanitizer reports (logs: ${cluster.logDir})`);
  };
  try {
    await cluster.start();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'natter-chromium-'));
    context = await chromium.launchPersistentContext(dir, launch);
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
  return { cluster, context, stop };
}
