// The natter demo page: pick a name, chat in several rooms, write to someone directly, see
// who is online and the room's history. Uses only the natter client (served by the node at
// /natter.js from clients/js/) and the browser; tokens come from the node's development-only
// endpoint GET /dev/token (enabled with --dev-tokens on).
import { NatterClient, messageId } from './natter.js';

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
  rooms: $('rooms'),
  addRoom: $('add-room'),
  newRoom: $('new-room'),
  dms: $('dms'),
  dmHint: $('dm-hint'),
  membersTitle: $('members-title'),
  members: $('members'),
  onlineCount: $('online-count'),
  stale: $('stale'),
  meName: $('me-name'),
  leave: $('leave'),
  sigil: $('conv-sigil'),
  roomName: $('room-name'),
  convSub: $('conv-sub'),
  stack: $('messages'),
  composer: $('composer'),
  text: $('text'),
};

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PAGE = 30; // messages per history page
const SESSION_KEY = 'natter-demo-session'; // this tab's session: survives a reload
const PREFILL_KEY = 'natter-demo'; // the login form's last values

let client = null;
let me = null; // { user, tenant }
let convs = new Map(); // key ('room:<id>' | 'dm:<user>') -> conversation
let active = null; // the conversation shown
let lastRoom = null; // the room whose members are listed
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

// ------------------------------------------------------------------ storage ---

function saveSession() {
  if (!me) return;
  const rooms = [...convs.values()].filter((c) => c.kind === 'room').map((c) => c.id);
  const current = active?.kind === 'room' ? active.id : lastRoom?.id;
  try {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({ user: me.user, tenant: me.tenant, rooms, active: current }));
  } catch {
    /* private mode: no storage */
  }
}

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && ID_RE.test(s.user) && ID_RE.test(s.tenant) && Array.isArray(s.rooms)) {
      const rooms = s.rooms.filter((r) => ID_RE.test(r));
      if (rooms.length) return { ...s, rooms };
    }
  } catch {
    /* nothing saved */
  }
  return null;
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
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return today ? time : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

function textOf(message) {
  if (typeof message === 'string') return message;
  if (message && typeof message.text === 'string') return message.text;
  return JSON.stringify(message);
}

// Only what is new animates: `fresh` is removed when its animation ends, so nothing that
// is already on the page replays it (a room switch or a member list update).
function fresh(el) {
  el.classList.add('fresh');
  return el;
}
document.addEventListener('animationend', (e) => e.target.classList?.remove('fresh'));

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
  if (ts) when.dateTime = new Date(ts).toISOString();
  meta.append(who, when);
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

// ------------------------------------------------------------ conversations ---

function convKey(kind, id) {
  return `${kind}:${id}`;
}

/** A conversation: a room (history, members) or direct messages with one user. */
function getConv(kind, id) {
  const key = convKey(kind, id);
  let c = convs.get(key);
  if (c) return c;
  const list = document.createElement('ol');
  list.className = 'messages';
  list.dataset.conv = key;
  list.hidden = true;
  const top = document.createElement('li');
  top.className = 'earlier';
  const more = document.createElement('button');
  more.type = 'button';
  more.className = 'ghost small load-earlier';
  more.textContent = 'Load earlier messages';
  more.hidden = true;
  top.append(more);
  const hint = document.createElement('li');
  hint.className = 'empty-hint';
  hint.hidden = true;
  list.append(top, hint);
  ui.stack.append(list);

  const nav = document.createElement('li');
  nav.dataset.conv = key;
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'conv';
  const sigil = document.createElement('span');
  sigil.className = 'sigil';
  sigil.textContent = kind === 'room' ? '#' : '@';
  const label = document.createElement('span');
  label.className = 'label';
  label.textContent = id;
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.hidden = true;
  btn.append(sigil, label, badge);
  nav.append(btn);
  (kind === 'room' ? ui.rooms : ui.dms).append(nav);
  if (kind === 'dm') ui.dmHint.hidden = true;

  c = {
    key, kind, id, list, more, hint, nav, badge,
    members: new Set(), // room: online userIds
    ids: new Set(), // message ids shown (history and live overlap)
    oldestSeq: null,
    hasMore: false,
    loaded: kind === 'dm', // room: the newest history page was read
    historyOff: false,
    unread: 0,
    scroll: null,
  };
  btn.addEventListener('click', () => show(c));
  more.addEventListener('click', () => loadEarlier(c));
  convs.set(key, c);
  updateHint(c);
  return c;
}

function updateHint(c) {
  const empty = !c.list.querySelector('li.msg');
  c.hint.hidden = !empty || (c.kind === 'room' && !c.loaded);
  if (c.kind === 'dm') {
    c.hint.textContent = `No messages with ${c.id} yet. Direct messages reach every open page of ${c.id}; they are not stored.`;
  } else if (c.historyOff) {
    c.hint.textContent = `No messages in #${c.id} since you joined (this server keeps no history). Say hello!`;
  } else {
    c.hint.textContent = `No messages in #${c.id} yet. Say hello!`;
  }
}

function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

/** Adds a message or system line to a conversation. Live ones (and this page's own) go at
 *  the end; a stored one from a history page goes before the first message with a larger
 *  `seq`, or before the first live one: history never lands below what came live. */
function place(c, li, seq, { live = true } = {}) {
  const stick = c === active && nearBottom(c.list);
  if (seq != null) li.dataset.seq = String(seq);
  if (live) {
    li.dataset.live = '';
    c.list.append(li);
  } else {
    let at = null;
    for (const e of c.list.querySelectorAll('li.msg[data-seq], li[data-live]')) {
      if (e.dataset.live !== undefined || Number(e.dataset.seq) > seq) {
        at = e;
        break;
      }
    }
    c.list.insertBefore(li, at);
  }
  updateHint(c);
  if (stick && live) c.list.scrollTop = c.list.scrollHeight;
}

function systemLine(c, text, kind = '') {
  if (!c) return;
  const li = fresh(document.createElement('li'));
  li.className += ` system ${kind}`.trimEnd();
  li.textContent = text;
  place(c, li, null);
}

/** A message frame (live or from a history page) in its room, once per id. */
function showMessage(c, m, { live }) {
  if (m.id && c.ids.has(m.id)) return false;
  if (m.id) c.ids.add(m.id);
  const li = messageItem({
    user: m.userId,
    text: textOf(m.message),
    ts: m.timestamp,
    mine: !m.server && m.userId === me.user,
    server: !!m.server,
  });
  if (m.id) li.dataset.id = m.id;
  if (live) fresh(li);
  place(c, li, typeof m.seq === 'number' ? m.seq : null, { live });
  return true;
}

function markUnread(c) {
  if (c === active) return;
  c.unread++;
  c.badge.textContent = String(c.unread);
  c.badge.hidden = false;
}

function show(c) {
  if (active && active !== c) {
    active.scroll = nearBottom(active.list) ? null : active.list.scrollTop;
    active.list.hidden = true;
    active.list.classList.remove('active');
    active.nav.classList.remove('active');
  }
  active = c;
  c.list.hidden = false;
  c.list.classList.add('active');
  c.nav.classList.add('active');
  c.unread = 0;
  c.badge.hidden = true;
  c.list.scrollTop = c.scroll == null ? c.list.scrollHeight : c.scroll;
  ui.sigil.textContent = c.kind === 'room' ? '#' : '@';
  ui.roomName.textContent = c.id;
  ui.convSub.textContent = c.kind === 'room' ? '' : 'direct messages';
  ui.text.placeholder = c.kind === 'room' ? `Message #${c.id}` : `Message ${c.id} directly`;
  document.title = `${c.kind === 'room' ? '#' : '@'}${c.id} · natter`;
  if (c.kind === 'room') {
    lastRoom = c;
    renderMembers(c, { animate: false });
  }
  saveSession();
}

// ------------------------------------------------------------------ members ---

function memberItem(u) {
  const li = document.createElement('li');
  li.dataset.user = u;
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'member';
  btn.title = u === me.user ? 'you' : `Write to ${u} directly`;
  btn.disabled = u === me.user;
  btn.append(avatar(u));
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = u;
  btn.append(name);
  if (u === me.user) {
    const you = document.createElement('span');
    you.className = 'you';
    you.textContent = 'you';
    btn.append(you);
  }
  const dot = document.createElement('span');
  dot.className = 'online-dot';
  btn.append(dot);
  btn.addEventListener('click', () => {
    if (u !== me.user) show(getConv('dm', u));
  });
  li.append(btn);
  return li;
}

const byName = (a, b) => (a === me.user ? -1 : b === me.user ? 1 : a.localeCompare(b));

const memberEls = new Map(); // userId -> its <li> in the member list (reused, never rebuilt)

/** Brings the member list in line with room `c`'s members, touching only what changed:
 *  entries already shown stay as they are (no animation replay); only entries added by a
 *  presence change (`animate`) fade in. */
function renderMembers(c, { animate }) {
  if (c !== lastRoom) return;
  const where = document.createElement('span');
  where.className = 'in-room';
  where.textContent = `in #${c.id}`;
  ui.membersTitle.replaceChildren('Online ', where);
  const want = [...c.members].sort(byName);
  for (const li of [...ui.members.children]) if (!c.members.has(li.dataset.user)) li.remove();
  let prev = null;
  for (const u of want) {
    let li = memberEls.get(u);
    if (!li) memberEls.set(u, (li = memberItem(u)));
    const at = prev ? prev.nextElementSibling : ui.members.firstElementChild;
    if (at !== li) {
      if (animate && !li.isConnected) fresh(li);
      ui.members.insertBefore(li, at);
    }
    prev = li;
  }
  ui.onlineCount.textContent = String(want.length);
}

function setMembers(c, userIds) {
  c.members = new Set(userIds);
  c.members.add(me.user);
  renderMembers(c, { animate: false });
}

// ------------------------------------------------------------------ history ---

async function loadPage(c, before) {
  const opts = { limit: PAGE };
  if (before != null) opts.before = before;
  const page = await client.history(c.id, opts);
  // Oldest first: placing by seq puts each one where it belongs.
  for (const m of page.messages) showMessage(c, m, { live: false });
  if (page.messages.length && (c.oldestSeq == null || page.messages[0].seq < c.oldestSeq)) {
    c.oldestSeq = page.messages[0].seq;
  }
  if (before != null || c.oldestSeq == null || !c.loaded) c.hasMore = page.hasMore;
  c.more.hidden = !c.hasMore;
  return page;
}

/** The newest page when a room is entered (or its resume window was exceeded). */
async function loadNewest(c) {
  try {
    await loadPage(c, null);
  } catch (e) {
    if (e.code === 'not_found') c.historyOff = true;
    else if (e.code !== 'closed') systemLine(c, `Could not load the history of #${c.id}: ${e.message}`, 'warn');
  }
  c.loaded = true;
  updateHint(c);
  if (c === active) c.list.scrollTop = c.list.scrollHeight;
}

async function loadEarlier(c) {
  if (c.oldestSeq == null) return;
  const list = c.list;
  const fromBottom = list.scrollHeight - list.scrollTop;
  c.more.disabled = true;
  c.more.textContent = 'Loading…';
  try {
    await loadPage(c, c.oldestSeq);
  } catch (e) {
    systemLine(c, `Could not load earlier messages: ${e.message}`, 'warn');
  } finally {
    c.more.disabled = false;
    c.more.textContent = 'Load earlier messages';
  }
  list.scrollTop = list.scrollHeight - fromBottom; // keep what was on screen in place
}

// ------------------------------------------------------------------ connection --

function setConn(state, text) {
  document.body.dataset.state = state;
  ui.conn.dataset.state = state;
  ui.connText.textContent = text;
  ui.stale.hidden = state === 'open' || state === 'idle';
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
    const room = convs.get(convKey('room', j.roomId));
    if (!room) return;
    setMembers(room, (j.members || []).map((m) => m.userId));
    // A rejoin (the room was loaded before) whose missed messages are not replayed — the
    // window was exceeded, or no message had been seen to resume from: read the newest
    // page again (what is already shown is not repeated).
    if (room.loaded && j.recovered !== true) loadNewest(room);
  });
  c.on('presence', (p) => {
    const room = convs.get(convKey('room', p.roomId));
    if (!room || p.userId === me.user) return;
    const was = room.members.has(p.userId);
    if (p.status === 'online' && !was) {
      room.members.add(p.userId);
      systemLine(room, `${p.userId} joined`, 'join');
    } else if (p.status === 'offline' && was) {
      room.members.delete(p.userId);
      systemLine(room, `${p.userId} left`, 'leave');
    } else {
      return;
    }
    renderMembers(room, { animate: true });
  });
  c.on('message', (m) => {
    const room = convs.get(convKey('room', m.roomId));
    if (room && showMessage(room, m, { live: true })) markUnread(room);
  });
  c.on('direct', (d) => {
    const from = d.server ? 'server' : d.userId;
    const conv = getConv('dm', from);
    if (d.id && conv.ids.has(d.id)) return;
    if (d.id) conv.ids.add(d.id);
    const li = fresh(messageItem({ user: d.userId, text: textOf(d.message), ts: d.timestamp, server: !!d.server, direct: true }));
    if (d.id) li.dataset.id = d.id;
    place(conv, li, null);
    markUnread(conv);
  });
  c.on('close', (e) => {
    if (e.willReconnect && e.welcomed) systemLine(active, 'Connection lost — reconnecting…', 'warn');
  });
  c.on('reconnect', ({ session, rooms }) => {
    systemLine(active, `Reconnected to ${session.node} and rejoined ${rooms.map((r) => `#${r}`).join(', ')}`, 'ok');
  });
  c.on('error', (e) => {
    if (e.code === 'token_failed' && e.cause instanceof DevTokensOff) {
      ui.tokenHelp.hidden = false;
      signOut('The development token endpoint is off.');
      return;
    }
    if (e.roomId) {
      const room = convs.get(convKey('room', e.roomId));
      systemLine(room || active, `Cannot rejoin #${e.roomId}: ${e.message}`, 'warn');
    } else if (e.code !== 'token_failed') console.warn('natter:', e.code, e.message);
  });
}

/** Joins a room (or shows it when already in), loads its newest history page. */
async function enterRoom(room, { focus = true } = {}) {
  const existing = convs.get(convKey('room', room));
  const c = existing || getConv('room', room);
  if (focus) show(c);
  if (existing) return;
  saveSession();
  systemLine(c, `You joined #${room} as ${me.user}`, 'ok');
  try {
    await client.join(room);
  } catch (e) {
    if (e.code !== 'closed' && e.code !== 'left') systemLine(c, `Could not join #${room}: ${e.message}`, 'warn');
    return;
  }
  // Joined first, then the page: nothing falls between the two (duplicates are dropped).
  await loadNewest(c);
}

async function signIn(user, tenant, rooms, current) {
  me = { user, tenant };
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
    me = null;
    ui.login.hidden = false;
    if (e instanceof DevTokensOff) {
      ui.tokenHelp.hidden = false;
      ui.tokenHelp.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    } else {
      ui.loginError.textContent = `Could not get a token: ${e.message}`;
      ui.loginError.hidden = false;
    }
    return;
  }
  try {
    localStorage.setItem(PREFILL_KEY, JSON.stringify({ user, room: current, tenant }));
  } catch {
    /* private mode */
  }
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
  ui.meName.textContent = user;
  ui.login.hidden = true;
  ui.chat.hidden = false;
  client.connect().catch(() => {});
  const entering = rooms.map((r) => enterRoom(r, { focus: r === current }));
  ui.joinBtn.disabled = false;
  ui.joinBtn.textContent = 'Join room';
  ui.text.focus();
  await Promise.all(entering);
}

async function signOut(why) {
  const c = client;
  client = null;
  if (c) await c.close();
  try {
    sessionStorage.removeItem(SESSION_KEY);
  } catch {
    /* private mode */
  }
  for (const conv of convs.values()) {
    conv.list.remove();
    conv.nav.remove();
  }
  convs = new Map();
  active = null;
  lastRoom = null;
  ui.members.replaceChildren();
  memberEls.clear();
  ui.dmHint.hidden = false;
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
  const c = active;
  const li = fresh(messageItem({ user: me.user, text, mine: true, direct: c.kind === 'dm' }));
  li.classList.add('pending');
  const status = li.querySelector('.status');
  status.textContent = client.state === 'open' ? 'sending…' : 'waiting for connection…';
  place(c, li, null);
  c.list.scrollTop = c.list.scrollHeight;
  try {
    // excludeSelf: this page shows its own message at once, the server does not echo it.
    // The id is chosen here so a replay of it (resume after a reconnect) that comes before
    // the ack is recognised; the client resends it with that id until the ack.
    let ack;
    if (c.kind === 'room') {
      const id = messageId();
      li.dataset.id = id;
      c.ids.add(id);
      ack = await client.send(c.id, { text }, { excludeSelf: true, id });
    } else {
      ack = await client.sendToUser(c.id, { text });
    }
    li.dataset.id = ack.id;
    c.ids.add(ack.id);
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
  signIn(user, tenant, [room], room);
});

ui.addRoom.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = ui.newRoom.value.trim().replace(/^#/, '');
  if (!client) return;
  if (!ID_RE.test(room)) {
    ui.newRoom.setCustomValidity('Letters, digits, - and _ (1–64 characters)');
    ui.newRoom.reportValidity();
    return;
  }
  ui.newRoom.value = '';
  enterRoom(room);
});
ui.newRoom.addEventListener('input', () => ui.newRoom.setCustomValidity(''));

ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !client || !active) return;
  ui.text.value = '';
  sendText(text);
});

ui.leave.addEventListener('click', () => signOut());
ui.retry.addEventListener('click', () => client?.reconnectNow());

// A reload keeps this tab signed in, in the same rooms (history shows what was said);
// otherwise prefill from the last visit or ?user=&room=&tenant=.
const resumed = loadSession();
if (resumed) {
  ui.login.hidden = true;
  signIn(resumed.user, resumed.tenant, resumed.rooms, resumed.rooms.includes(resumed.active) ? resumed.active : resumed.rooms[0]);
} else {
  try {
    const saved = JSON.parse(localStorage.getItem(PREFILL_KEY) || '{}');
    const q = new URLSearchParams(location.search);
    ui.name.value = q.get('user') || saved.user || '';
    ui.room.value = q.get('room') || saved.room || 'lobby';
    ui.tenant.value = q.get('tenant') || saved.tenant || 'demo';
  } catch {
    /* private mode: no storage */
  }
  ui.name.focus();
}
