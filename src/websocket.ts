/**
 * The WebSocket helper: the `ws` package on top of the upgrade hook (SPEC §6), with no second HTTP
 * server. nsgi parses the handshake request and calls the app as for any request; this helper
 * checks the handshake, takes the connection through `nsgi.upgrade`, and lets `ws` write the 101
 * and do the framing from then on (`WebSocketServer({ noServer: true }).handleUpgrade`).
 *
 * ```ts
 * import { websocketApp } from 'nsgi';
 *
 * export const app = websocketApp((ws) => {
 *   ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
 * }, { protocols: ['echo.v1'], heartbeatMs: 30_000 });
 * ```
 *
 * An app that checks something first (a cookie, a token) refuses with an ordinary response and
 * accepts with {@link acceptWebSocket}; the connection stays HTTP/1.1 when it refuses:
 *
 * ```ts
 * const app: App = (environ, startResponse) => {
 *   if (!loggedIn(environ)) {
 *     startResponse('401 Unauthorized', [['Content-Type', 'text/plain']]);
 *     return ['log in first\n'];
 *   }
 *   return acceptWebSocket(environ, startResponse, (ws) => { ... });
 * };
 * ```
 *
 * A handshake that is not valid (a method other than GET, a wrong `Sec-WebSocket-Version`, a
 * missing or malformed `Sec-WebSocket-Key`, a malformed subprotocol or extension list) is answered
 * `400 Bad Request` with the reason as a plain-text body, through `startResponse`, before the
 * connection is taken: the checks run before `nsgi.upgrade()` is called, so `ws` never sees a bad
 * request and never writes an error of its own onto a socket the server still owns.
 *
 * The life of an accepted socket: `ws` writes the 101 and attaches its reader; the helper resumes
 * the socket (the server hands it over paused, UPG-4); an `error` listener turns peer errors (a
 * message above `maxPayload`, bad framing) into a line on `nsgi.errors` and a close, never an
 * uncaught exception; when `nsgi.signal` fires because the server is shutting down, the socket is
 * closed with 1001 (Going Away); with `heartbeatMs`, a ping goes out every interval and a peer that
 * has not answered the previous one is terminated. A peer that does not read what it is sent is
 * closed with 1008 (Policy Violation) once more than `maxBufferedBytes` wait for it or once it has
 * taken nothing for `sendStallMs`, and destroyed a moment later if the close frame cannot reach
 * it either. Every timer and listener comes off on `close`.
 */
import type { IncomingMessage } from 'node:http';
import * as wsModule from 'ws';
import { WebSocketServer, type PerMessageDeflateOptions, type WebSocket } from 'ws';
import type { App, Body, Environ, HeaderList, StartResponse } from '../protocol/nsgi.ts';
import { corkEachRead } from './cork.ts';
import { limitSending, watch } from './websocket-watch.ts';

/** WebSocket is `ws`'s socket class, the type of what {@link OnConnection} receives. */
export type { WebSocket } from 'ws';

export { CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, DEFAULT_WEBSOCKET_MAX_BUFFERED, DEFAULT_WEBSOCKET_SEND_STALL_MS } from './websocket-watch.ts';

/** DEFAULT_WEBSOCKET_MAX_PAYLOAD is the largest message accepted unless `maxPayload` says otherwise: 1 MiB. */
export const DEFAULT_WEBSOCKET_MAX_PAYLOAD = 1024 * 1024;

/** WebSocketOptions configures {@link acceptWebSocket} and {@link websocketApp}. Every field is optional. */
export interface WebSocketOptions {
  /**
   * The subprotocols this endpoint speaks, most preferred first. The first of these that the
   * client offers in `Sec-WebSocket-Protocol` is chosen. Without this and without
   * `selectProtocol`, no subprotocol is ever chosen (a browser that asked for one then fails the
   * connection, as RFC 6455 §4.1 wants).
   */
  protocols?: readonly string[];
  /**
   * Chooses the subprotocol from the ones the client offered, in its order; return undefined to
   * choose none. Takes precedence over `protocols`.
   */
  selectProtocol?: (offered: readonly string[], environ: Environ) => string | undefined;
  /** The largest message, in bytes, before the socket is closed with 1009; default 1 MiB. */
  maxPayload?: number;
  /**
   * permessage-deflate (RFC 7692): off by default, since compression costs memory per socket and
   * invites compression-oracle attacks on secrets mixed with attacker-chosen text. `true` turns it
   * on with `ws`'s defaults; an object passes `ws`'s options.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * Milliseconds between pings. A peer that has not answered the previous ping with a pong when
   * the next one is due is terminated, so a vanished peer (a laptop closed, a NAT entry dropped)
   * costs at most two intervals. 0 or absent: no heartbeat.
   */
  heartbeatMs?: number;
  /**
   * The most bytes that may wait to be sent to one peer (`ws.bufferedAmount`) before the socket is
   * closed with 1008; default 4 MiB. An app that sends faster than its peer reads should wait, as
   * the demo's echo does (see examples/demo.ts); this bound is for the peer that never reads.
   */
  maxBufferedBytes?: number;
  /**
   * Milliseconds a peer may take nothing of what is queued for it before the socket is closed
   * with 1008; default 30 s. A peer that reads slowly but steadily is never cut, and nothing is
   * timed while nothing is queued. 0 turns the rule off (the server's send timeout still applies).
   */
  sendStallMs?: number;
  /**
   * The origins allowed to open a WebSocket here, as browsers write them in the `Origin` field
   * (`https://example.com`, scheme and host and any port, no path); a handshake from any other
   * origin gets `403 Forbidden`. Off by default: every origin is accepted. A browser sends the
   * user's cookies with a WebSocket handshake from any site, so an endpoint that authenticates by
   * cookie must set this (cross-site WebSocket hijacking). A handshake without `Origin` comes from
   * a client that is not a browser and is accepted.
   */
  allowedOrigins?: readonly string[];
}

/** WebSocketAppOptions configures {@link websocketApp}. */
export interface WebSocketAppOptions extends WebSocketOptions {
  /**
   * The app for requests that are not WebSocket handshakes (no `Upgrade: websocket`); by default
   * they get `426 Upgrade Required`.
   */
  fallback?: App;
}

/** OnConnection receives each accepted WebSocket, open, with the environ of its handshake request. */
export type OnConnection = (ws: WebSocket, environ: Environ) => void;

/**
 * isWebSocketRequest tells whether the request asks for a WebSocket: it carries the upgrade hook
 * (SPEC §6.1) and its `Upgrade` field names `websocket`. It does not check the rest of the
 * handshake; {@link acceptWebSocket} does.
 */
export function isWebSocketRequest(environ: Environ): boolean {
  return environ['nsgi.upgrade'] !== undefined && listHas(environ.HTTP_UPGRADE, 'websocket');
}

/**
 * websocketHandshakeProblem returns why the request is not an acceptable WebSocket handshake
 * (RFC 6455 §4.2.1), as a sentence for a 400 body, or undefined when it is acceptable. It reads
 * the fields `ws` reads, with `ws`'s own parsers where it has them, so the two never disagree.
 */
export function websocketHandshakeProblem(environ: Environ, options: WebSocketOptions = {}): string | undefined {
  if (environ.REQUEST_METHOD !== 'GET') return `a WebSocket handshake must use GET, not ${JSON.stringify(environ.REQUEST_METHOD)}`;
  // ws accepts exactly one Upgrade value, "websocket" in any case; anything else it would refuse
  // with a response of its own, outside the server's response path.
  if (environ.HTTP_UPGRADE?.toLowerCase() !== 'websocket') {
    return `the Upgrade field must be exactly websocket, got ${JSON.stringify(environ.HTTP_UPGRADE ?? '')}`;
  }
  if ((environ.CONTENT_LENGTH !== undefined && environ.CONTENT_LENGTH !== '0') || environ.HTTP_TRANSFER_ENCODING !== undefined) {
    return 'a WebSocket handshake must not have a body';
  }
  const key = environ.HTTP_SEC_WEBSOCKET_KEY;
  if (key === undefined) return 'the Sec-WebSocket-Key field is missing';
  // 16 random bytes in base64 (RFC 6455 §4.1, item 7): 22 characters and "==".
  if (!/^[+/0-9A-Za-z]{22}==$/.test(key)) return `the Sec-WebSocket-Key field must be 16 bytes in base64, got ${JSON.stringify(key)}`;
  const version = environ.HTTP_SEC_WEBSOCKET_VERSION;
  if (version !== '13') return `the Sec-WebSocket-Version field must be 13, got ${JSON.stringify(version ?? '')}`;
  const protocols = environ.HTTP_SEC_WEBSOCKET_PROTOCOL;
  if (protocols !== undefined && parseProtocols(protocols) === undefined) {
    return `the Sec-WebSocket-Protocol field must be a list of tokens, got ${JSON.stringify(protocols)}`;
  }
  const extensions = environ.HTTP_SEC_WEBSOCKET_EXTENSIONS;
  if (options.perMessageDeflate && extensions !== undefined) {
    try {
      const offers = wsInternals.extension.parse(extensions);
      const deflate = offers['permessage-deflate'];
      if (deflate !== undefined) {
        const settings = typeof options.perMessageDeflate === 'object' ? options.perMessageDeflate : {};
        new wsInternals.PerMessageDeflate({ ...settings, isServer: true, maxPayload: maxPayloadOf(options) }).accept(deflate);
      }
    } catch {
      return `the Sec-WebSocket-Extensions field is malformed or unacceptable: ${JSON.stringify(extensions)}`;
    }
  }
  return undefined;
}

/**
 * acceptWebSocket answers a WebSocket handshake: it returns the body for the app to return, and
 * calls `onConnection` with the open socket once `ws` has written the 101. A request that is not
 * an upgrade gets `426 Upgrade Required`; one whose handshake is not valid gets
 * `400 Bad Request` with the reason (see {@link websocketHandshakeProblem}); in both cases the
 * connection stays HTTP. If the client leaves before the 101 is written, `onConnection` is never
 * called.
 *
 * Pass the same options object to every call (a module-level constant): the `ws` server behind
 * it is made once per object.
 */
export function acceptWebSocket(environ: Environ, startResponse: StartResponse, onConnection: OnConnection, options: WebSocketOptions = {}): Body {
  return accept(environ, startResponse, onConnection, options, serverFor(options));
}

/**
 * websocketApp makes an app that accepts every valid WebSocket handshake and hands the socket to
 * `onConnection`; other requests go to `options.fallback` (default: `426 Upgrade Required`).
 */
export function websocketApp(onConnection: OnConnection, options: WebSocketAppOptions = {}): App {
  const server = makeServer(options);
  const fallback = options.fallback ?? upgradeRequired;
  return (environ, startResponse) => {
    if (!isWebSocketRequest(environ)) return fallback(environ, startResponse);
    return accept(environ, startResponse, onConnection, options, server);
  };
}

// ---- the handshake ----------------------------------------------------------------------------

function accept(environ: Environ, startResponse: StartResponse, onConnection: OnConnection, options: WebSocketOptions, server: WebSocketServer): Body {
  const upgrade = environ['nsgi.upgrade'];
  if (upgrade === undefined) return refuseNonUpgrade(startResponse);
  const problem = websocketHandshakeProblem(environ, options);
  if (problem !== undefined) {
    // RFC 6455 §4.4: a refused version is answered with the versions the server speaks.
    const extra: HeaderList = problem.includes('Sec-WebSocket-Version') ? [['Sec-WebSocket-Version', '13']] : [];
    return plain(startResponse, '400 Bad Request', `Bad WebSocket handshake: ${problem}\n`, extra);
  }
  const origin = environ.HTTP_ORIGIN;
  if (options.allowedOrigins !== undefined && origin !== undefined && !options.allowedOrigins.includes(origin)) {
    return plain(startResponse, '403 Forbidden', `WebSocket connections from origin ${JSON.stringify(origin)} are not allowed\n`, []);
  }
  const signal = environ['nsgi.signal'];
  if (signal.aborted) return plain(startResponse, '503 Service Unavailable', 'The server is shutting down\n', []);

  const offeredField = environ.HTTP_SEC_WEBSOCKET_PROTOCOL;
  const offered = offeredField === undefined ? [] : (parseProtocols(offeredField) ?? []);
  const chosen = offered.length === 0 ? undefined : chooseProtocol(offered, environ, options);
  const request = handshakeRequest(environ, chosen);
  const { socket, head } = upgrade();
  const headBuffer = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  server.handleUpgrade(request, socket, headBuffer, (ws) => {
    watch(ws, environ, options.heartbeatMs ?? 0);
    limitSending(ws, socket, environ, options);
    // The replies to one read leave in one write; see cork.ts.
    corkEachRead(socket);
    // The server hands the socket over paused (UPG-4); ws's reader is attached now.
    socket.resume();
    try {
      onConnection(ws, environ);
    } catch (err) {
      environ['nsgi.errors'].write(`websocket: onConnection threw for ${environ.REQUEST_URI}: ${describeError(err)}`);
      ws.close(1011, 'internal error');
    }
  });
  return [];
}

/** refuseNonUpgrade answers a request that is not a WebSocket handshake. */
function refuseNonUpgrade(startResponse: StartResponse): Body {
  // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
  return plain(startResponse, '426 Upgrade Required', 'This endpoint speaks WebSocket: send a WebSocket handshake (Upgrade: websocket)\n', [['Upgrade', 'websocket']]);
}

const upgradeRequired: App = (_environ, startResponse) => refuseNonUpgrade(startResponse);

function plain(startResponse: StartResponse, status: string, text: string, extra: HeaderList): Body {
  startResponse(status, [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(Buffer.byteLength(text))], ...extra]);
  return [text];
}

/** HandshakeRequest is the request as `ws` sees it, carrying the subprotocol chosen with the environ at hand. */
interface HandshakeRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  chosenProtocol: string | undefined;
}

/**
 * handshakeRequest builds the little that `ws` reads of a request (method, url, lowercased
 * headers) from the environ; repeated fields are joined with ", " as node:http does.
 */
function handshakeRequest(environ: Environ, chosenProtocol: string | undefined): IncomingMessage {
  const headers: Record<string, string> = {};
  for (const [name, value] of environ['nsgi.headers']) {
    const lower = name.toLowerCase();
    const prev = headers[lower];
    headers[lower] = prev === undefined ? value : `${prev}, ${value}`;
  }
  const request: HandshakeRequest = { method: environ.REQUEST_METHOD, url: environ.REQUEST_URI, headers, chosenProtocol };
  return request as unknown as IncomingMessage;
}

function chooseProtocol(offered: readonly string[], environ: Environ, options: WebSocketOptions): string | undefined {
  if (options.selectProtocol !== undefined) {
    const choice = options.selectProtocol(offered, environ);
    if (choice === undefined) return undefined;
    if (!offered.includes(choice)) throw new TypeError(`selectProtocol chose ${JSON.stringify(choice)}, which the client did not offer (${offered.join(', ')})`);
    return choice;
  }
  return options.protocols?.find((p) => offered.includes(p));
}

// ---- the ws servers -----------------------------------------------------------------------------

const servers = new WeakMap<WebSocketOptions, WebSocketServer>();

function serverFor(options: WebSocketOptions): WebSocketServer {
  let server = servers.get(options);
  if (server === undefined) {
    server = makeServer(options);
    servers.set(options, server);
  }
  return server;
}

function makeServer(options: WebSocketOptions): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    // Each socket is tied to its request's signal instead; a set of every client is not needed.
    clientTracking: false,
    maxPayload: maxPayloadOf(options),
    perMessageDeflate: options.perMessageDeflate ?? false,
    handleProtocols: (_offered, request) => (request as unknown as HandshakeRequest).chosenProtocol ?? false,
  });
}

function maxPayloadOf(options: WebSocketOptions): number {
  return options.maxPayload ?? DEFAULT_WEBSOCKET_MAX_PAYLOAD;
}

/**
 * wsInternals are `ws`'s own header parser and permessage-deflate negotiator: exported by its ES
 * module, though not in its type declarations.
 */
const wsInternals = wsModule as unknown as {
  extension: { parse(header: string): Record<string, unknown[] | undefined> };
  PerMessageDeflate: new (options: object) => { accept(offers: unknown[]): unknown };
};
// Fail at load, not as a 400 for every compressed handshake, if a later ws moves them.
if (typeof wsInternals.extension?.parse !== 'function' || typeof wsInternals.PerMessageDeflate !== 'function') {
  throw new Error('nsgi: this version of ws does not export extension and PerMessageDeflate');
}

// ---- field syntax -------------------------------------------------------------------------------

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** parseProtocols splits a Sec-WebSocket-Protocol value into its tokens; undefined if malformed or repeated. */
function parseProtocols(value: string): string[] | undefined {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const token = part.replace(/^[ \t]+|[ \t]+$/g, ''); // OWS only: trim() would also take U+00A0
    if (!TOKEN.test(token) || out.includes(token)) return undefined;
    out.push(token);
  }
  return out;
}

/** listHas tells whether a comma-separated field value lists `token`, case-insensitively. */
function listHas(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  return value.split(',').some((part) => part.trim().toLowerCase() === token);
}

function describeError(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
