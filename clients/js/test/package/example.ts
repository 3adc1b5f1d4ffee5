// The package test's usage example: imports natter-client as an application would (from
// the installed tarball), compiled with tsc --strict, run under Node 20 with the ws
// package against a real natter node. Connects, joins a room, sends a message, receives it
// back, and reads it from the room's history. Exits non-zero on any failure.
//
//   NATTER_HTTP=http://127.0.0.1:PORT node dist/example.js
import { NatterClient, NatterError, PROTOCOL, VERSION } from 'natter-client';
import type { HistoryFrame, MessageFrame, NatterEventMap, ServerFrame } from 'natter-client';
import { WebSocket } from 'ws';

interface Chat {
  text: string;
}

const http = process.env.NATTER_HTTP;
if (!http) throw new Error('set NATTER_HTTP to the node, e.g. http://127.0.0.1:8080');

async function devToken(user: string): Promise<string> {
  const res = await fetch(`${http}/dev/token?user=${user}&tenant=pkgtest`);
  if (!res.ok) throw new Error(`GET /dev/token answered ${res.status}`);
  const body = (await res.json()) as { token: string };
  return body.token;
}

// Compile-time checks, never called: these lines fail to compile if the declarations lose
// their types (an `any` would make the @ts-expect-error directives unused, which tsc
// reports as an error).
export function typeChecks(client: NatterClient<Chat>): void {
  // @ts-expect-error: there is no 'mesage' event
  client.on('mesage', () => {});
  client.on('presence', (p) => {
    const status: 'online' | 'offline' = p.status;
    // @ts-expect-error: a presence has no message
    void p.message;
    void status;
  });
  client.on('state', (s) => {
    if (s.state === 'reconnecting') void (s.delay + s.attempt);
    // @ts-expect-error: only the reconnecting state has a delay
    else void s.delay;
  });
  // @ts-expect-error: the payload must be a Chat
  void client.send('room', { txt: 'x' });
  const frame = (f: ServerFrame<Chat>): string => (f.type === 'history' ? String(f.messages.length) : f.type);
  void frame;
  const detail: NatterEventMap<Chat>['direct'] | null = null;
  void detail;
  void client.join('room').then(async (j) => {
    const total: number | undefined = j.total;
    const events: false | undefined = j.presenceEvents;
    const all: { userId: string }[] = await client.roomMembers('room', j);
    // @ts-expect-error: presenceEvents is only ever false
    const on: true = j.presenceEvents;
    void [total, events, all, on];
  });
}

async function main(): Promise<void> {
  const room = `pkg-${process.pid}`;
  const client = new NatterClient<Chat>({
    url: http!.replace(/^http/, 'ws') + '/ws',
    getToken: () => devToken('ts-example'),
    WebSocket,
    reconnect: false,
  });
  const received: MessageFrame<Chat>[] = [];
  client.on('message', (m) => {
    const roomId: string = m.roomId;
    const text: string = m.message.text;
    if (roomId === room) received.push(m);
    console.log(`message in #${roomId} from ${m.userId ?? 'server'}: ${text}`);
  });
  client.on('error', (e: NatterError) => console.error('natter error', e.code, e.message));

  const session = await client.connect();
  console.log(`natter-client ${VERSION} (protocol ${PROTOCOL}): connected as ${session.userId} to ${session.node}`);
  const joined = await client.join(room);
  if (!joined.members.some((m) => m.userId === 'ts-example')) throw new Error('not a member after join');

  const text = `hello from TypeScript ${Date.now()}`;
  const ack = await client.send(room, { text });
  const deadline = Date.now() + 5000;
  while (!received.some((m) => m.id === ack.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const echo = received.find((m) => m.id === ack.id);
  if (!echo || echo.message.text !== text) throw new Error(`message ${ack.id} did not come back`);

  const page: HistoryFrame<Chat> = await client.history(room, { limit: 10 });
  const stored = page.messages.find((m) => m.id === ack.id);
  if (!stored || stored.message.text !== text || stored.seq !== echo.seq) {
    throw new Error(`history does not hold ${ack.id}: ${JSON.stringify(page)}`);
  }
  console.log(`history of #${room}: ${page.messages.length} message(s), seq ${stored.seq}`);

  try {
    await client.send('', { text: 'x' });
    throw new Error('an empty roomId was accepted');
  } catch (e) {
    if (!(e instanceof NatterError) || e.code !== 'bad_request') throw e;
  }
  await client.close();
  console.log('package example: ok');
}

main().catch((e: unknown) => {
  console.error('package example FAILED:', e);
  process.exit(1);
});
