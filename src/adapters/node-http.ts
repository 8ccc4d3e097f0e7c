/**
 * An nsgi app served by `node:http`: {@link toNodeListener} turns an app into a request listener,
 * so it mounts wherever a Node `(req, res)` listener fits (`http.createServer`, `https`, Express's
 * `app.use`, a test harness); {@link toNodeUpgradeListener} is its twin for the server's
 * `'upgrade'` event; {@link createNodeServer} wires both.
 *
 * What node:http does and what this adapter does:
 * - HTTP parsing, framing, keep-alive, pipelining, Date and reading an unread body to the end are
 *   node:http's. The adapter hands it the status and headers (hop-by-hop fields removed, SR-9) in
 *   one `writeHead()` and the body bytes; it lets node:http choose chunked or Content-Length
 *   framing. node:http's parser is stricter than SPEC §9 in two places: it refuses a method that
 *   is not upper-case letters (SRV-7) and an `HTTP/1.x` version above 1.1 (SRV-19) with a 400
 *   before the app is called.
 * - A body the app began to read but left unfinished when its response ended is let go: node:http
 *   reads and drops the rest, and a later read rejects (IN-8).
 * - The lazy head, exc_info, `write()`, `flushHead()`, the body pump and `return()` are the shared
 *   ResponseCycle's, as in `toFetch`; the adapter's sink is `NodeSink` (`node-exchange.ts`).
 * - Backpressure: the cycle pulls the next chunk only while `res.write()` returns true, else after
 *   `'drain'` (BODY-12). The request body is read through `req`'s own async iterator, which pauses
 *   the socket while the app does not read (IN-4).
 * - Disconnect: `res` closing before it finished aborts `nsgi.signal` (ENV-27), fails pending
 *   writes and input reads, and closes the iterator; for an upgrade request, the socket closing
 *   or a FIN before the response is complete does the same. The AbortController behind the
 *   signal is made only for apps that ask for it, and a response that is complete when the app
 *   returns needs no `'close'` listener at all.
 * - `Expect: 100-continue` (IN-6): node:http answers it by itself, before the app runs, unless the
 *   server has a `'checkContinue'` listener. Register the same listener for both events
 *   (`server.on('checkContinue', listener)`, as {@link createNodeServer} does) and the adapter sends
 *   `100 Continue` at the app's first read of `nsgi.input`, as the spec asks.
 * - Upgrades (SPEC §6): node:http gives a request that asks to switch protocols (`Connection:
 *   upgrade` and `Upgrade`) to the server's `'upgrade'` listeners, with the raw socket and the bytes
 *   read past the head, and never to the request listener; with no such listener it is an ordinary
 *   request without `nsgi.upgrade`. {@link toNodeUpgradeListener} (`node-upgrade.ts`) runs the app for it with
 *   `nsgi.upgrade` in the environ (HTTP/1.1 only, UPG-1). `upgrade()` hands over the socket, paused,
 *   and as `head` every byte read past the request head (and its body); with `headers` it writes the
 *   101 first. An app that answers instead has its response written onto the socket by a
 *   `ServerResponse` of its own, and the connection then closes: node:http has let go of it and
 *   would not read another request from it. node:http leaves such a request's body unparsed, so the
 *   adapter reads it (Content-Length or chunked) with nsgi's own parser. The 101 is built by the
 *   same code as the reference server's (`src/upgrade.ts`).
 * - Shutdown: the server of {@link createNodeServer} fires `nsgi.signal` of its upgraded
 *   connections when `close()` is called (UPG-7), so that the app can close its protocol properly;
 *   node:http has no shutdown deadline, and `close()` completes once those connections have closed.
 * - Early hints and trailers are not offered: `nsgi.early_hints` and `nsgi.set_trailers` are absent
 *   (EXT-2). So an app's Trailer field, which would announce trailers that never come, is not
 *   sent: node:http refuses one on any response it does not chunk.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { App, ErrorStream } from '../../protocol/nsgi.ts';
import { STDERR, ServerClosingError } from '../errors.ts';
import { decodePath, type ConnectionInfo } from '../environ.ts';
import { NodeInput, NodeSink, connectionInfo, describeRequest, hasBody, type NodeRequest, type NodeSettings } from './node-exchange.ts';
import { UpgradeExchange, startUpgradeExchange } from './node-upgrade.ts';
import { AdapterShared } from './plain.ts';

/** NodeListenerOptions configures {@link toNodeListener} and {@link toNodeUpgradeListener}. */
export interface NodeListenerOptions {
  /** Where app errors go (`nsgi.errors`); default stderr. */
  errors?: ErrorStream;
  /** The path the app is mounted at; moved from PATH_INFO to SCRIPT_NAME (SPEC §2.2). */
  scriptName?: string;
  /** Sets `nsgi.multiprocess`. */
  multiprocess?: boolean;
}

/** NodeListener is a node:http request listener. */
export type NodeListener = (req: IncomingMessage, res: ServerResponse) => void;

/** NodeUpgradeListener is a node:http `'upgrade'` listener. */
export type NodeUpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** settingsOf checks `app` and makes the settings one listener's requests share; `caller` names the function in the error. */
export function settingsOf(caller: string, app: App, options: NodeListenerOptions): NodeSettings {
  if (typeof app !== 'function') throw new TypeError(`${caller}() needs an app function, got ${typeof app}`);
  const shared = new AdapterShared();
  return {
    heads: shared.heads,
    environs: shared.environs,
    app,
    errors: options.errors ?? STDERR,
    scriptName: (options.scriptName ?? '').replace(/\/+$/, ''),
    multiprocess: options.multiprocess ?? false,
  };
}

/**
 * toNodeListener returns a node:http request listener that serves `app`.
 *
 * ```ts
 * const listener = toNodeListener(app);
 * const server = http.createServer(listener);
 * server.on('checkContinue', listener); // 100 Continue at the app's first read
 * server.on('upgrade', toNodeUpgradeListener(app)); // nsgi.upgrade, WebSockets
 * server.listen(8000);
 * ```
 */
export function toNodeListener(app: App, options: NodeListenerOptions = {}): NodeListener {
  const settings = settingsOf('toNodeListener', app, options);
  return (req, res) => serveRequest(settings, req, res);
}

/**
 * toNodeUpgradeListener returns a listener for a node:http server's `'upgrade'` event that serves
 * `app` with `nsgi.upgrade` in the environ (SPEC §6). With it, the server no longer hands upgrade
 * requests to its request listener, so the app answers all of them here, accepting or refusing.
 * On a server of your own, `close()` does not fire `nsgi.signal` of upgraded connections; on the
 * one {@link createNodeServer} makes, it does.
 */
export function toNodeUpgradeListener(app: App, options: NodeListenerOptions = {}): NodeUpgradeListener {
  const settings = settingsOf('toNodeUpgradeListener', app, options);
  return (req, socket, head) => startUpgradeExchange(settings, req, socket as Socket, head, null);
}

/**
 * createNodeServer is `http.createServer` with `app` served by {@link toNodeListener} for both
 * `'request'` and `'checkContinue'`, so `100 Continue` waits for the app's first read, and by
 * {@link toNodeUpgradeListener} for `'upgrade'`. Its `close()` fires `nsgi.signal` of upgraded
 * connections (UPG-7).
 */
export function createNodeServer(app: App, options: NodeListenerOptions = {}): http.Server {
  const settings = settingsOf('createNodeServer', app, options);
  const listener: NodeListener = (req, res) => serveRequest(settings, req, res);
  const server = new NodeServer(listener);
  server.on('checkContinue', listener);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    startUpgradeExchange(settings, req, socket as Socket, head, server.upgrades);
  });
  return server;
}

/** NodeServer is the server {@link createNodeServer} makes: it knows its upgrade exchanges. */
class NodeServer extends http.Server {
  /** Every upgrade request whose socket is still open, accepted or not. */
  readonly upgrades = new Set<UpgradeExchange>();

  /** close is node:http's, after `nsgi.signal` has fired on every upgrade connection (UPG-7). */
  override close(callback?: (err?: Error) => void): this {
    const reason = new ServerClosingError();
    for (const upgrade of this.upgrades) upgrade.serverClosing(reason);
    return super.close(callback);
  }
}

/** ExpressRequest is a request an Express (or Connect-style) router has passed to a mounted handler. */
type ExpressRequest = IncomingMessage & { originalUrl?: unknown; baseUrl?: unknown };

/**
 * mounted reads the mount of a listener that a router such as Express's `app.use('/p', l)`
 * calls: such a router strips its prefix from `req.url`, but keeps the request-target as
 * received in `req.originalUrl` and the matched prefix in `req.baseUrl`. The environ is then
 * built from the original target (REQUEST_URI as received) with that prefix as the mount path,
 * so SCRIPT_NAME names the mount and the app can link to itself (SPEC §2.2). The prefix replaces
 * the `scriptName` option, since `req.baseUrl` already holds every prefix above the listener.
 * Other requests are described as they are.
 */
function mounted(req: ExpressRequest, request: NodeRequest, info: ConnectionInfo): [NodeRequest, ConnectionInfo] {
  const { originalUrl, baseUrl } = req;
  if (typeof originalUrl !== 'string' || typeof baseUrl !== 'string' || baseUrl === '' || originalUrl === request.target) return [request, info];
  // SCRIPT_NAME is compared with the decoded path (ENV-18) and never ends with `/` (ENV-19).
  return [{ ...request, target: originalUrl }, { ...info, scriptName: decodePath(baseUrl).replace(/\/+$/, '') }];
}

/** serveRequest answers one request of the request listener. */
function serveRequest(settings: NodeSettings, req: IncomingMessage, res: ServerResponse): void {
  const request = describeRequest(req);
  const sink = new NodeSink(res, res, settings, request);
  const cycle = sink.cycle;
  const input = new NodeInput(req, sink, hasBody(request));
  sink.input = input;
  const [described, info] = mounted(req, request, connectionInfo(settings, req.socket));
  const environ = settings.environs.build(described, info, input, cycle);
  cycle.run(settings.app, environ);
  // ENV-27: a response still under way must learn that the client left; a finished one need not.
  // `res` says so once it is the response being sent. A pipelined request whose response waits
  // behind another's never gets a 'close' on `res` if the connection dies first; node:http
  // destroys its `req` then, so 'close' on `req` with the socket gone says it instead.
  if (!cycle.finished) {
    const onClose = sink.onClose.bind(sink);
    res.on('close', onClose);
    req.on('close', onClose);
  }
}
