// The natter demo page: pick a name and a room, chat, see who is online.
// Uses only natter.js and the browser; tokens come from the node's development-only
// endpoint GET /dev/token (enabled with --dev-tokens on).
import { NatterClient } from './natter.js';

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $('conn'),
  connText: $('conn-text'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  retry: $('retry'),
  login: $('login'),
  loginForm: $('login-form'),
  name: $('name'),
  room: $('room'),
  tenant: $('tenant'),
  loginError: $('login-error'),
  joinBtn: $('join'),
  tokenHelp: $('token-help'),
  chat: $('chat'),
  roomName: $('room-name'),
  members: $('members'),
  onlineCount: $('online-count'),
  meName: $('me-name'),
  leave: $('leave'),
  messages: $('messages'),
  composer: $('composer'),
  text: $('text'),
};

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
let client = null;
let me = null; // { user, tenant, room }
let online = new Map(); // userId -> true
let countdown = null;

// ------------------------------------------------------------------ tokens ----

class DevTokensOff extends Error {}

async function fetchToken(user, tenant) {
  const q = new URLSearchParams({ user, tenant });
  const res = await fetch(`/dev/token?${q}`, { cache: 'no-store' });
  if (res.status === 404) throw new DevTokensOff('the /dev/token endpoint is disabled');
  if (!res.ok) throw new Error((await res.text()).trim() || `HTTP ${res.status}`);
  return res.json();
}

// ------------------------------------------------------------------ rendering --

function hue(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function avatar(user) {
  const el = document.createElement('span');
  el.className = 'avatar';
  el.textContent = user ? user.slice(0, 1).toUpperCase() : '⚙';
  el.style.setProperty('--h', user ? hue(user) : 220);
  el.setAttribute('aria-hidden', 'true');
  return el;
}

function timeOf(ts) {
  const d = ts ? new Date(ts) : new Date();
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function textOf(message) {
  if (typeof message === 'string') return message;
  if (message && typeof message.text === 'string') return message.text;
  return JSON.stringify(message);
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function append(li) {
  const stick = nearBottom();
  ui.messages.append(li);
  if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function systemLine(text, kind = '') {
  const li = document.createElement('li');
  li.className = `system ${kind}`.trim();
  li.textContent = text;
  append(li);
}

function messageItem({ user, text, ts, mine = false, server = false, direct = false }) {
  const li = document.createElement('li');
  li.className = 'msg' + (mine ? ' mine' : '') + (server ? ' server' : '') + (direct ? ' direct' : '');
  if (!mine) li.append(avatar(server ? null : user));
  const body = document.createElement('div');
  body.className = 'bubble';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = server ? 'server' : mine ? 'you' : user;
  const when = document.createElement('time');
  when.textContent = timeOf(ts);
  meta.append(who);
  if (direct) {
    const tag = document.createElement('span');
    tag.className = 'pill';
    tag.textContent = 'direct';
    meta.append(tag);
  }
  meta.append(when);
  const p = document.createElement('p');
  p.className = 'text';
  p.textContent = text;
  body.append(meta, p);
  li.append(body);
  if (mine) {
    const status = document.createElement('span');
    status.className = 'status';
    body.append(status);
  }
  return li;
}

function renderMembers() {
  ui.members.replaceChildren();
  const users = [...online.keys()].sort((a, b) => (a === me.user ? -1 : b === me.user ? 1 : a.localeCompare(b)));
  for (const u of users) {
    const li = document.createElement('li');
    li.dataset.user = u;
    li.append(avatar(u));
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = u;
    li.append(name);
    if (u === me.user) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = 'you';
      li.append(you);
    }
    const dot = document.createElement('span');
    dot.className = 'online-dot';
    dot.title = 'online';
    li.append(dot);
    ui.members.append(li);
  }
  ui.onlineCount.textContent = String(users.length);
}

// ------------------------------------------------------------------ connection --

function setConn(state, text) {
  document.body.dataset.state = state;
  ui.conn.dataset.state = state;
  ui.connText.textContent = text;
}

function showBanner(retry) {
  clearInterval(countdown);
  const tick = () => {
    const left = Math.max(0, Math.ceil((retry.at - Date.now()) / 1000));
    ui.bannerText.textContent =
      `Connection lost. Reconnecting in ${left} s (attempt ${retry.attempt})… ` +
      'Messages you send now are delivered once the connection is back.';
    setConn('reconnecting', `Reconnecting in ${left} s`);
  };
  tick();
  countdown = setInterval(tick, 250);
  ui.banner.hidden = false;
}

function hideBanner() {
  clearInterval(countdown);
  countdown = null;
  ui.banner.hidden = true;
}

function onState(s) {
  switch (s.state) {
    case 'connecting':
      clearInterval(countdown);
      setConn('connecting', s.reconnect ? 'Reconnecting…' : 'Connecting…');
      if (s.reconnect) {
        ui.bannerText.textContent = 'Connection lost. Reconnecting now…';
        ui.banner.hidden = false;
      }
      break;
    case 'open':
      hideBanner();
      setConn('open', `Connected · ${s.node || 'node'}`);
      ui.conn.dataset.node = s.node || '';
      break;
    case 'reconnecting':
      showBanner(s);
      break;
    case 'closed':
      hideBanner();
      setConn('closed', 'Offline');
      break;
    default:
      setConn(s.state, s.state);
  }
}

function wire(c) {
  c.on('state', onState);
  c.on('joined', (j) => {
    if (j.roomId !== me.room) return;
    online = new Map((j.members || []).map((m) => [m.userId, true]));
    online.set(me.user, true);
    renderMembers();
  });
  c.on('presence', (p) => {
    if (p.roomId !== me.room || p.userId === me.user) return;
    const was = online.has(p.userId);
    if (p.status === 'online') {
      online.set(p.userId, true);
      if (!was) systemLine(`${p.userId} joined`, 'join');
    } else {
      online.delete(p.userId);
      if (was) systemLine(`${p.userId} left`, 'leave');
    }
    renderMembers();
  });
  c.on('message', (m) => {
    if (m.roomId !== me.room) return;
    const li = messageItem({
      user: m.userId,
      text: textOf(m.message),
      ts: m.timestamp,
      mine: !m.server && m.userId === me.user,
      server: !!m.server,
    });
    li.dataset.id = m.id;
    append(li);
  });
  c.on('direct', (d) => {
    append(messageItem({ user: d.userId, text: textOf(d.message), ts: d.timestamp, server: !!d.server, direct: true }));
  });
  c.on('close', (e) => {
    if (e.willReconnect && e.welcomed) systemLine('Connection lost — reconnecting…', 'warn');
  });
  c.on('reconnect', ({ session }) => {
    systemLine(`Reconnected to ${session.node} and rejoined #${me.room}`, 'ok');
  });
  c.on('error', (e) => {
    if (e.code === 'token_failed' && e.cause instanceof DevTokensOff) {
      ui.tokenHelp.hidden = false;
      leaveRoom('The development token endpoint is off.');
      return;
    }
    if (e.code === 'forbidden' && e.roomId) systemLine(`Cannot rejoin #${e.roomId}: ${e.message}`, 'warn');
    else if (e.code !== 'token_failed') console.warn('natter:', e.code, e.message);
  });
}

async function enterRoom(user, room, tenant) {
  me = { user, room, tenant };
  ui.loginError.hidden = true;
  ui.tokenHelp.hidden = true;
  ui.joinBtn.disabled = true;
  ui.joinBtn.textContent = 'Joining…';
  let first;
  try {
    first = await fetchToken(user, tenant);
  } catch (e) {
    ui.joinBtn.disabled = false;
    ui.joinBtn.textContent = 'Join room';
    if (e instanceof DevTokensOff) {
      ui.tokenHelp.hidden = false;
      ui.tokenHelp.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    } else {
      ui.loginError.textContent = `Could not get a token: ${e.message}`;
      ui.loginError.hidden = false;
    }
    return;
  }
  localStorage.setItem('natter-demo', JSON.stringify({ user, room, tenant }));
  // The token-refresh hook: the first attempt uses the token just fetched, every later
  // (re)connect asks for a fresh one, so an expired token never loops.
  let cached = first.token;
  client = new NatterClient({
    getToken: async () => {
      if (cached) {
        const t = cached;
        cached = null;
        return t;
      }
      return (await fetchToken(user, tenant)).token;
    },
  });
  window.natterDemo = { client };
  wire(client);
  online = new Map([[user, true]]);
  ui.messages.replaceChildren();
  ui.roomName.textContent = room;
  ui.meName.textContent = user;
  ui.text.placeholder = `Message #${room}`;
  renderMembers();
  ui.login.hidden = true;
  ui.chat.hidden = false;
  document.title = `#${room} · natter`;
  systemLine(`You joined #${room} as ${user}`, 'ok');
  const joined = client.join(room);
  client.connect().catch(() => {});
  try {
    await joined;
    ui.text.focus();
  } catch (e) {
    if (e.code !== 'closed' && e.code !== 'left') systemLine(`Could not join #${room}: ${e.message}`, 'warn');
  } finally {
    ui.joinBtn.disabled = false;
    ui.joinBtn.textContent = 'Join room';
  }
}

async function leaveRoom(why) {
  const c = client;
  client = null;
  if (c) {
    if (c.state === 'open') await c.leave(me.room).catch(() => {});
    await c.close();
  }
  hideBanner();
  setConn('idle', 'Not connected');
  ui.chat.hidden = true;
  ui.login.hidden = false;
  document.title = 'natter · demo chat';
  if (why) {
    ui.loginError.textContent = why;
    ui.loginError.hidden = false;
  }
}

async function sendText(text) {
  const li = messageItem({ user: me.user, text, mine: true });
  li.classList.add('pending');
  const status = li.querySelector('.status');
  status.textContent = client.state === 'open' ? 'sending…' : 'waiting for connection…';
  append(li);
  try {
    // excludeSelf: this page shows its own message at once, the server does not echo it.
    const ack = await client.send(me.room, { text }, { excludeSelf: true });
    li.dataset.id = ack.id;
    li.classList.remove('pending');
    status.textContent = '';
  } catch (e) {
    li.classList.remove('pending');
    li.classList.add('failed');
    status.textContent = e.code === 'disconnected' ? 'not sent (connection lost)' : `not sent: ${e.message}`;
  }
}

// ------------------------------------------------------------------ events ----

ui.loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const user = ui.name.value.trim();
  const room = ui.room.value.trim();
  const tenant = ui.tenant.value.trim() || 'demo';
  for (const [what, v] of [['name', user], ['room', room], ['tenant', tenant]]) {
    if (!ID_RE.test(v)) {
      ui.loginError.textContent = `The ${what} may use letters, digits, - and _ (1–64 characters).`;
      ui.loginError.hidden = false;
      (what === 'name' ? ui.name : what === 'room' ? ui.room : ui.tenant).focus();
      return;
    }
  }
  enterRoom(user, room, tenant);
});

ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !client) return;
  ui.text.value = '';
  sendText(text);
});

ui.leave.addEventListener('click', () => leaveRoom());
ui.retry.addEventListener('click', () => client?.reconnectNow());

// Prefill from the last visit or ?user=&room=&tenant=.
try {
  const saved = JSON.parse(localStorage.getItem('natter-demo') || '{}');
  const q = new URLSearchParams(location.search);
  ui.name.value = q.get('user') || saved.user || '';
  ui.room.value = q.get('room') || saved.room || 'lobby';
  ui.tenant.value = q.get('tenant') || saved.tenant || 'demo';
} catch {
  /* private mode: no storage */
}
ui.name.focus();
