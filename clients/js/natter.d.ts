// natter.d.ts — type declarations of natter.js (natter-client), client protocol v1.
//
// Hand-written next to natter.js and checked by the package test (test/package.sh compiles
// a usage example with `tsc --strict` against the packed tarball). Every frame the server
// sends is declared with its fields; `NatterClient<M>` is generic in the type of the
// application's message payloads (default: any JSON value), which the server does not
// check: choose M to describe what your application sends.

/** Any JSON value (what a `message`, a `direct` or a reply's `data` may hold). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** The library's version (the same as the package's). */
export const VERSION: string;

/** The client protocol version the library speaks (`welcome.protocol`). */
export const PROTOCOL: 1;

// ------------------------------------------------------------------ frames ----

/** A member of a room (in `joined` and `members` frames). */
export interface Member {
  userId: string;
}

/** Sent once per connection, before anything else. */
export interface WelcomeFrame {
  type: 'welcome';
  connectionId: string;
  userId: string;
  tenantId: string;
  /** ms between the application heartbeats the client should send */
  heartbeatInterval: number;
  /** the node's id (`--node-id`) */
  node?: string;
  /** the protocol version of the server */
  protocol: number;
}

/** Error codes the server sends in `error` frames. */
export type ServerErrorCode =
  | 'bad_request'
  | 'unknown_action'
  | 'forbidden'
  | 'not_found'
  | 'too_large'
  | 'rate_limited'
  | 'quota_exceeded'
  | 'timeout'
  | 'unavailable'
  | 'internal';

/** Error codes of the library itself. */
export type ClientErrorCode =
  | 'timeout'
  | 'disconnected'
  | 'closed'
  | 'queue_full'
  | 'left'
  | 'token_failed'
  | 'reconnect_failed'
  | 'bad_frame'
  | 'connect_failed'
  | 'not_connected';

export interface ErrorFrame {
  type: 'error';
  code: ServerErrorCode;
  message: string;
  requestId?: string;
}

/** The answer to `joinRoom`: who is in the room. `recovered` is set when the join had a
 *  `since`: true when every missed message is being replayed (they follow as `message`
 *  frames, oldest first), false when nothing could be replayed. */
export interface JoinedFrame {
  type: 'joined';
  roomId: string;
  /** The first page (about 100) of the room's online members, the joining user included. */
  members: Member[];
  /** How many members the room has (absent when the presence store is unreachable). */
  total?: number;
  /** Present when the room has more members than `members` lists: pass it to
   *  `presencePage` (or use `roomMembers`) for the rest. */
  cursor?: string;
  /** `false` when the room is larger than the server's --presence-max-members: no
   *  `presence` online/offline events come for it; read the list with `roomMembers`. */
  presenceEvents?: false;
  recovered?: boolean;
  requestId?: string;
}

/** The answer to `presence`: the online members of a room (or of the tenant, without
 *  `roomId`). */
export interface MembersFrame {
  type: 'members';
  roomId?: string;
  /** One page of the online members (at most `limit`, default 100). */
  members: Member[];
  /** How many members are online in all (the room's or the tenant's). */
  total?: number;
  /** Present when more pages follow: pass it back to `presencePage`. */
  cursor?: string;
  requestId?: string;
}

export interface LeftFrame {
  type: 'left';
  roomId: string;
  requestId?: string;
}

/** The answer to `sendMessage` and `sendToUser`: the message's id. */
export interface AckFrame {
  type: 'ack';
  id: string;
  requestId?: string;
}

export interface HeartbeatFrame {
  type: 'heartbeat';
  requestId?: string;
}

/** A room message. Messages pushed through the HTTP API have `userId: null` and
 *  `server: true`. `seq` (the message's position in the room, increasing but not
 *  contiguous) is there when the server keeps history. */
export interface MessageFrame<M = Json> {
  type: 'message';
  id: string;
  roomId: string;
  userId: string | null;
  server?: true;
  message: M;
  /** epoch ms */
  timestamp: number;
  seq?: number;
}

/** A stored message in a `history` page (always has `seq`). */
export interface HistoryMessage<M = Json> {
  id: string;
  userId: string | null;
  server?: true;
  message: M;
  timestamp: number;
  seq: number;
}

/** A page of a room's stored messages, oldest first: the newest `limit` below `before`.
 *  The next older page is `before: messages[0].seq`; `hasMore: false` ends the paging. */
export interface HistoryFrame<M = Json> {
  type: 'history';
  roomId: string;
  messages: HistoryMessage<M>[];
  hasMore: boolean;
  requestId?: string;
}

/** A message sent to this user (`sendToUser`, or the HTTP API with `server: true`). */
export interface DirectFrame<M = Json> {
  type: 'direct';
  id: string;
  userId: string | null;
  server?: true;
  message: M;
  timestamp: number;
}

export interface PresenceFrame {
  type: 'presence';
  roomId: string;
  userId: string;
  status: 'online' | 'offline';
  timestamp: number;
}

/** A backend's answer to a custom action (`request`). */
export interface ReplyFrame {
  type: 'reply';
  action: string;
  data: Json;
  requestId?: string;
}

/** Every frame the server sends in protocol v1. */
export type ServerFrame<M = Json> =
  | WelcomeFrame
  | ErrorFrame
  | JoinedFrame
  | MembersFrame
  | LeftFrame
  | AckFrame
  | HeartbeatFrame
  | MessageFrame<M>
  | HistoryFrame<M>
  | DirectFrame<M>
  | PresenceFrame
  | ReplyFrame;

// ------------------------------------------------------------------ options ---

/** What the library needs of a WebSocket: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Replaces the global timers (tests drive time with a fake clock). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(id: unknown): void;
  now(): number;
}

export interface TokenRequest {
  /** 0 for the first try of `connect()`, n for the n-th retry since the last welcome */
  attempt: number;
  /** true for every attempt after the first welcome or the first failure */
  reconnect: boolean;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface NatterClientOptions {
  /** WebSocket URL (`ws:`/`wss:`; `http(s):` is mapped). Default: `/ws` of the page's host. */
  url?: string;
  /** A fixed token, when no refreshing is needed. */
  token?: string;
  /** Called before every connection attempt (the first and each reconnect). */
  getToken?: (info: TokenRequest) => string | Promise<string>;
  /** WebSocket class. Default: `globalThis.WebSocket` (Node 20: pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect after unexpected closes (default true). */
  reconnect?: boolean;
  /** Decides per close whether to reconnect (default: every code except 1000). */
  shouldReconnect?: (close: CloseInfo) => boolean;
  /** Backoff: base delay of the first retry in ms (default 500). */
  initialDelay?: number;
  /** Backoff: upper bound of a delay in ms (default 15000). */
  maxDelay?: number;
  /** Backoff: growth per failed attempt (default 2). */
  factor?: number;
  /** Backoff: 0..1, the delay is drawn from [base × (1 − jitter), base] (default 0.5). */
  jitter?: number;
  /** Consecutive failed attempts before giving up (default Infinity). */
  maxAttempts?: number;
  /** ms from starting an attempt to the server's `welcome` (default 10000). */
  connectTimeout?: number;
  /** ms to wait for the reply of an action (default 10000). */
  requestTimeout?: number;
  /** Actions kept while disconnected (default 100). */
  queueLimit?: number;
  /** Application heartbeats and dead-link detection (default true). */
  heartbeat?: boolean;
  /** Drop replayed messages whose `seq` was already seen (default true). */
  dedupe?: boolean;
  /** ms a send() is resent with its id (after a reconnect, a timeout, `unavailable`)
   *  before it rejects (default 110000; keep it under the server's
   *  --history-dedupe-window). */
  resendTimeout?: number;
  /** Random source in [0, 1) for the jitter. */
  random?: () => number;
  /** Replaces some or all of the global timers. */
  timers?: Partial<Timers>;
}

export interface Defaults {
  readonly reconnect: boolean;
  readonly initialDelay: number;
  readonly maxDelay: number;
  readonly factor: number;
  readonly jitter: number;
  readonly maxAttempts: number;
  readonly connectTimeout: number;
  readonly requestTimeout: number;
  readonly queueLimit: number;
  readonly heartbeat: boolean;
  readonly dedupe: boolean;
  readonly resendTimeout: number;
}

export const DEFAULTS: Defaults;

// ------------------------------------------------------------------ events ----

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export const STATES: ConnectionState[];

/** The session of the last `welcome`. */
export interface Session {
  connectionId: string;
  userId: string;
  tenantId: string;
  heartbeatInterval: number;
  node?: string;
}

export interface RetryInfo {
  /** 1 for the first retry after a welcome */
  attempt: number;
  /** ms */
  delay: number;
  /** epoch ms of the attempt */
  at: number;
}

export type StateEvent =
  | { state: 'connecting'; previous: ConnectionState; attempt: number; reconnect: boolean }
  | {
      state: 'open';
      previous: ConnectionState;
      node?: string;
      connectionId: string;
      /** true after a reconnect */
      reconnected: boolean;
    }
  | ({ state: 'reconnecting'; previous: ConnectionState; code: number; reason: string } & RetryInfo)
  | { state: 'closed'; previous: ConnectionState; code?: number; reason?: string };

export interface NatterCloseEvent {
  code: number;
  reason: string;
  wasClean: boolean;
  /** the client will try again */
  willReconnect: boolean;
  /** the socket had been welcomed */
  welcomed?: boolean;
}

export interface ReconnectEvent {
  rooms: string[];
  session: Session;
}

/** The events of `client.on(type, listener)` and their details. */
export interface NatterEventMap<M = Json> {
  state: StateEvent;
  welcome: WelcomeFrame;
  message: MessageFrame<M>;
  direct: DirectFrame<M>;
  presence: PresenceFrame;
  joined: JoinedFrame;
  left: LeftFrame;
  members: MembersFrame;
  history: HistoryFrame<M>;
  reply: ReplyFrame;
  reconnect: ReconnectEvent;
  close: NatterCloseEvent;
  /** server errors without a requestId, a refused rejoin (`roomId` set), token_failed,
   *  reconnect_failed, bad_frame */
  error: NatterError;
  /** every frame from the server, before its typed event */
  frame: ServerFrame<M>;
}

// ------------------------------------------------------------------ client ----

export class NatterError extends Error {
  constructor(code: string, message?: string, extra?: Record<string, unknown>);
  name: 'NatterError';
  code: ServerErrorCode | ClientErrorCode;
  /** the requestId of the action that failed */
  requestId?: string;
  /** the server's `error` frame */
  frame?: ErrorFrame;
  /** set on a refused rejoin */
  roomId?: string;
  action?: string;
  /** the WebSocket close code, on `closed` */
  closeCode?: number;
  cause?: unknown;
}

export class NatterClient<M = Json> {
  constructor(options?: NatterClientOptions);

  readonly url: string;
  readonly options: Defaults & NatterClientOptions;
  /** the last `welcome`, null before the first */
  session: Session | null;
  readonly state: ConnectionState;
  /** rooms the client is in (or will rejoin on the next connection) */
  readonly rooms: string[];
  /** actions waiting for a connection */
  readonly queued: number;
  /** send()s not acknowledged yet (in flight, queued or waiting to be resent) */
  readonly unacked: number;
  /** while reconnecting: the next attempt */
  readonly nextRetry: RetryInfo | null;
  /** the last `seq` seen in a room (undefined until the server sends one) */
  lastSeq(roomId: string): number | undefined;

  /** Subscribes; returns a function that unsubscribes. */
  on<K extends keyof NatterEventMap<M>>(type: K, listener: (detail: NatterEventMap<M>[K]) => void): () => void;
  off<K extends keyof NatterEventMap<M>>(type: K, listener: (detail: NatterEventMap<M>[K]) => void): void;
  once<K extends keyof NatterEventMap<M>>(type: K, listener: (detail: NatterEventMap<M>[K]) => void): () => void;

  /** Resolves once `open` (welcomed, rooms rejoined, queue sent); keeps retrying while the
   *  server is unreachable; rejects on close() or when maxAttempts ran out. */
  connect(): Promise<Session>;
  /** Skips the wait of a pending reconnect. */
  reconnectNow(): void;
  /** Closes with `code` (default 1000) and stops reconnecting; pending actions reject
   *  with `closed`. */
  close(code?: number, reason?: string): Promise<void>;

  /** Joins (and remembers) a room; `since`: replay the messages after this seq. */
  join(roomId: string, options?: { since?: number }): Promise<JoinedFrame>;
  /** Leaves a room (no longer rejoined). */
  leave(roomId: string): Promise<LeftFrame>;
  /** Broadcasts to a room; `excludeSelf` keeps it from coming back to this connection.
   *  The message carries `id` (default: a new random one, `messageId()`); until its `ack`
   *  (with history on: stored) it is resent with the same id after a reconnect, a timeout
   *  or `error unavailable`, for up to `resendTimeout` ms; the server delivers it once.
   *  Sending the same id again while it is unacknowledged returns the same promise. */
  send(roomId: string, message: M, options?: SendOptions): Promise<AckFrame>;
  /** Sends to every connection of a user of the same tenant (a `direct` frame there). */
  sendToUser(userId: string, message: M): Promise<AckFrame>;
  /** The online members of a room, or of the tenant without `roomId`. */
  /** The first page (about 100) of the online members of the room (or of the tenant). */
  presence(roomId?: string): Promise<Member[]>;
  /** One page of presence; pass the frame's `cursor` back for the next (none on the last). */
  presencePage(roomId?: string, page?: { cursor?: string; limit?: number }): Promise<MembersFrame>;
  /** Every online member of a room: `joined`'s members and the pages after its cursor
   *  (or every page when no `joined` is given), deduplicated by userId. */
  roomMembers(roomId: string, joined?: JoinedFrame, options?: { maxPages?: number }): Promise<Member[]>;
  /** A page of stored messages, oldest first (the newest `limit` below `before`). */
  history(roomId: string, options?: { limit?: number; before?: number }): Promise<HistoryFrame<M>>;
  /** A heartbeat round trip. */
  heartbeat(): Promise<HeartbeatFrame>;
  /** A custom action routed to a backend; resolves with the reply's `data`. */
  request<T = Json>(action: string, fields?: { [key: string]: Json }): Promise<T>;
}

/** Delay in ms before reconnect attempt `attempt` (1-based), with jitter. */
/** Options of send(). */
export interface SendOptions {
  excludeSelf?: boolean;
  /** the message id: 1..64 bytes, a protocol id (no `.` `*` `>` `{` `}` `:` or
   *  whitespace); default a new random one */
  id?: string;
}

/** A new message id: 20 characters of [0-9A-Za-z] from crypto.getRandomValues. */
export function messageId(random?: () => number): string;

export function backoffDelay(attempt: number, options?: Partial<Defaults>, random?: () => number): number;

/** Adds `token` to the query of a ws(s)/http(s) URL (http is mapped to ws). */
export function withToken(url: string, token?: string | null): string;

export default NatterClient;
