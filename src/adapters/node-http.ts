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
 *   {@link ResponseRunner}'s, as in `toFetch`.
 * - Backpressure: the runner pulls the next chunk only while `res.write()` returns true, else after
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
 *   request without `nsgi.upgrade`. {@link toNodeUpgradeListener} runs the app for it with
 *   `nsgi.upgrade` in the environ (HTTP/1.1 only, UPG-1). `upgrade()` hands over the socket, paused,
 *   and as `head` every byte read past the request head (and its body); with `headers` it writes the
 *   101 first. An app that answers instead has its response written onto the socket by a
 *   `ServerResponse` of its own, and the connection then closes: node:http has let go of it and
 *   would not read another request from it. node:http leaves such a request's body unparsed, so the
 *   adapter reads it (Content-Length or chunked) with nsgi's own parser.
 * - Shutdown: the server of {@link createNodeServer} fires `nsgi.signal` of its upgraded
 *   connections when `close()` is called (UPG-7), so that the app can close its protocol properly;
 *   node:http has no shutdown deadline, and `close()` completes once those connections have closed.
 * - Early hints and trailers are not offered: `nsgi.early_hints` and `nsgi.set_trailers` are absent
 *   (EXT-2).
 */
import type { EventEmitter } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { App, Environ, ErrorStream, HeaderList, Input, StartResponse, Upgraded, UpgradeOptions, Write } from '../../protocol/nsgi.ts';
import { RequestInput, inputAfterResponse, readBytes, readText, type InputHooks } from '../body.ts';
import { LazySignal, type ConnectionInfo } from '../environ.ts';
import { AppError, ClientGoneError, STDERR, ServerClosingError } from '../errors.ts';
import { RequestParser, type RequestHead } from '../http1/parser.ts';
import { connectionOptions, prepareHeaders } from '../http1/writer.ts';
import { AdapterShared, ResponseRunner, type ResponseHead, type ResponseSink } from './runner.ts';

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


/** Settings is what every request of one listener shares. */
interface Settings extends AdapterShared {
  readonly app: App;
  readonly errors: ErrorStream;
  readonly scriptName: string;
  readonly multiprocess: boolean;
}

function settingsOf(caller: string, app: App, options: NodeListenerOptions): Settings {
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
  return (req, socket, head) => new UpgradeExchange(settings, req, socket as Socket, head, null).start();
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
    new UpgradeExchange(settings, req, socket as Socket, head, server.upgrades).start();
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

/** serveRequest answers one request of the request listener. */
function serveRequest(settings: Settings, req: IncomingMessage, res: ServerResponse): void {
  const head = requestHead(req, false);
  const exchange = new NodeExchange(res, res, settings, head);
  const runner = exchange.runner;
  const input = new NodeInput(req, exchange, head.contentLength > 0 || head.chunked);
  exchange.input = input;
  const environ = settings.environs.build(head, connectionInfo(settings, req.socket), input, runner);
  runner.run(settings.app, environ);
  // ENV-27: a response still under way must learn that the client left; a finished one need not.
  // `res` says so once it is the response being sent. A pipelined request whose response waits
  // behind another's never gets a 'close' on `res` if the connection dies first; node:http
  // destroys its `req` then, so 'close' on `req` with the socket gone says it instead.
  if (!runner.finished) {
    const onClose = exchange.onClose.bind(exchange);
    res.on('close', onClose);
    req.on('close', onClose);
  }
}

/** CONNECTION_INFO keeps, on each socket, what the environ needs to know of it and of the listener. */
const CONNECTION_INFO = Symbol('nsgi.connectionInfo');

type InfoSocket = Socket & { [CONNECTION_INFO]?: ConnectionInfo & { readonly settings: Settings } };

/**
 * connectionInfo is what buildEnviron needs to know of the connection and the listener. It is
 * made once per socket and listener: the requests of a keep-alive connection share it.
 */
function connectionInfo(settings: Settings, socket: InfoSocket): ConnectionInfo {
  const known = socket[CONNECTION_INFO];
  if (known !== undefined && known.settings === settings) return known;
  const info = {
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: String(socket.remotePort ?? ''),
    localAddress: socket.localAddress ?? '',
    localPort: String(socket.localPort ?? ''),
    urlScheme: (socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http',
    scriptName: settings.scriptName,
    multiprocess: settings.multiprocess,
    errors: settings.errors,
    settings,
  };
  socket[CONNECTION_INFO] = info;
  return info;
}

/**
 * requestHead describes a node:http request the way the reference parser does, for buildEnviron.
 * `upgrade` is true for a request node:http gave to the `'upgrade'` event: it has `Connection:
 * upgrade` and `Upgrade`, and the hook is offered on HTTP/1.1 only (UPG-1).
 */
function requestHead(req: IncomingMessage, upgrade: boolean): RequestHead {
  const raw = req.rawHeaders;
  const headers: Array<[string, string]> = [];
  let host: string | undefined;
  let contentLength = -1;
  let chunked = false;
  let expectContinue = false;
  let close = false;
  // The length test keeps the lowercasing to few names.
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    headers.push([name, value]);
    switch (name.length) {
      case 4:
        if (host === undefined && name.toLowerCase() === 'host') host = value;
        break;
      case 6:
        if (name.toLowerCase() === 'expect') expectContinue = /^100-continue$/i.test(value.trim());
        break;
      case 10:
        if (name.toLowerCase() === 'connection' && /close/i.test(value)) close = true;
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') contentLength = Number(value);
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') chunked = /chunked/i.test(value);
        break;
    }
  }
  const version = req.httpVersionMajor === 1 && req.httpVersionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
  return {
    method: req.method ?? 'GET',
    target: req.url ?? '/',
    version,
    headers,
    host,
    contentLength,
    chunked,
    keepAlive: !close,
    expectContinue,
    upgrade: upgrade && version === 'HTTP/1.1',
  };
}

const RESOLVED = Promise.resolve();

/**
 * NodeExchange is one request's response on a node:http ServerResponse: the runner's sink. Its
 * runner is the source of the request listener's `nsgi.signal`.
 */
class NodeExchange implements ResponseSink {
  readonly runner: ResponseRunner;
  /** The request's `nsgi.input`, told when the response is complete (IN-8). */
  input: NodeInput | null = null;
  private closedBy: Error | null = null;
  private full = false;
  private listening = false;
  private drainWaiter: Promise<void> | null = null;
  private drainResolve: (() => void) | null = null;
  private drainReject: ((err: Error) => void) | null = null;

  constructor(
    readonly res: ServerResponse,
    /** What emits `'drain'` once `res` can take more: `res` itself, or the socket of an upgrade request. */
    private readonly drainSource: EventEmitter,
    settings: Settings,
    private readonly request: RequestHead,
  ) {
    this.runner = new ResponseRunner(this, settings.errors, settings.heads, request.method === 'HEAD', `${request.method} ${request.target}`);
  }

  /**
   * onClose is `res` or `req` closing. Before the response finished and with the socket gone, the
   * client has left (ENV-27); `req` also closes, harmlessly, once its body has been read.
   */
  onClose(): void {
    if (this.res.writableFinished) return;
    const socket = this.res.req.socket;
    if (this.res.closed || socket === null || socket.destroyed) this.gone(new ClientGoneError());
  }

  /** gone fails pending and later drains, fires the signal and stops the runner: the client has left. */
  gone(reason: Error): void {
    this.closedBy = reason;
    const reject = this.drainReject;
    this.drainWaiter = this.drainResolve = this.drainReject = null;
    reject?.(reason);
    this.runner.abortSignal(reason);
    this.runner.abort();
  }

  /** firstRead sends one 100 Continue at the app's first read, unless one went out (IN-6, IN-7). */
  firstRead(): void {
    const res = this.res;
    const sent100 = (res as unknown as { _sent100?: boolean })._sent100 === true;
    if (this.request.expectContinue && this.request.version === 'HTTP/1.1' && !sent100 && !this.runner.headSent && !res.headersSent) res.writeContinue();
  }

  head(head: ResponseHead, flush: boolean): void {
    const fields = head.headers;
    const flat: string[] = [];
    let hasLength = false;
    for (let i = 0; i < fields.length; i++) {
      const [name, value] = fields[i]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      flat.push(name, value);
    }
    if (head.upgrade !== '') {
      // A Connection field of our own replaces node:http's choice, so it must carry that choice:
      // close (the app's, the client's, HTTP/1.0's, a refused upgrade's) or keep-alive for 1.0.
      const close = head.close || !this.res.shouldKeepAlive;
      flat.push('Connection', connectionOptions(true, close, this.request.version === 'HTTP/1.0'));
    } else if (head.close) flat.push('Connection', 'close');
    if (!hasLength && head.contentLength >= 0) flat.push('Content-Length', String(head.contentLength));
    // The reason phrase as the app gave it, even empty (SPEC §4.1).
    this.res.writeHead(head.status, head.reason, flat);
    // node:http holds the head until the first write or end(); flushHead() wants it now.
    if (flush) this.res.flushHeaders();
  }

  data(chunk: Uint8Array): boolean {
    if (this.closedBy !== null || this.res.write(chunk)) return true;
    this.full = true;
    return false;
  }

  drain(): Promise<void> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (!this.full) return RESOLVED;
    if (!this.listening) {
      this.listening = true;
      this.drainSource.on('drain', this.onDrain.bind(this));
    }
    this.drainWaiter ??= new Promise<void>((resolve, reject) => {
      this.drainResolve = resolve;
      this.drainReject = reject;
    });
    return this.drainWaiter;
  }

  private onDrain(): void {
    this.full = false;
    const resolve = this.drainResolve;
    this.drainWaiter = this.drainResolve = this.drainReject = null;
    resolve?.();
  }

  end(close: boolean): void {
    this.input?.responseEnded();
    if (close && !this.res.headersSent) this.res.setHeader('Connection', 'close');
    if (close) {
      // node:http lets go of the socket on 'finish', so take hold of it first (SR-17).
      const socket = this.res.socket;
      this.res.once('finish', () => socket?.destroySoon());
    }
    this.res.end();
  }

  failBeforeHead(isHead: boolean): void {
    this.input?.responseEnded();
    const body = 'Internal Server Error\n';
    this.res.writeHead(500, 'Internal Server Error', [
      'Content-Type', 'text/plain; charset=utf-8',
      'Content-Length', String(Buffer.byteLength(body)),
    ]);
    this.res.end(isHead ? undefined : body);
  }

  cut(): void {
    // ERR-4: no terminating chunk, or fewer bytes than the Content-Length said. node:http corks
    // the socket until the next tick, so what was written is flushed first; then the socket is
    // ended and destroyed without the response being finished.
    const socket = this.res.socket;
    if (socket === null) {
      this.res.destroy();
      return;
    }
    while (socket.writableCorked > 0) socket.uncork();
    socket.destroySoon();
  }
}

/**
 * NodeInput is `nsgi.input` over an IncomingMessage: an async iterable of its body, read through
 * the stream's own iterator so the socket pauses while the app does not read (IN-4).
 */
class NodeInput implements Input {
  private iterated = false;
  private inner: AsyncIterator<Buffer> | null = null;
  /** True once the response ended with the body not read to its end: the rest was let go. */
  private discarded = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly exchange: NodeExchange,
    /** False when the head says there is no body: nothing can be left unread. */
    private readonly hasBody: boolean,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new TypeError('nsgi.input can be iterated only once (SPEC §5, IN-2)');
    this.iterated = true;
    return {
      next: async () => {
        if (this.discarded) throw inputAfterResponse();
        try {
          const r = await this.open().next();
          if (r.done && this.discarded) throw inputAfterResponse();
          return r;
        } catch (err) {
          // IN-9: a client that left mid-body fails the read with an Error.
          throw err instanceof Error ? err : new ClientGoneError();
        }
      },
      return: async () => {
        this.stopReading();
        return { done: true, value: undefined };
      },
    };
  }

  /**
   * responseEnded is the response complete. A body the app has not read to its end is let go:
   * read and dropped by node:http, so the connection can carry the next request, and any later
   * read rejects rather than ending early (IN-8).
   */
  responseEnded(): void {
    if (!this.hasBody || this.req.readableEnded) return;
    this.discarded = true;
    this.stopReading();
  }

  private open(): AsyncIterator<Buffer> {
    if (this.inner === null) {
      this.exchange.firstRead();
      // destroyOnReturn: false, so that an app that stops reading early does not destroy the
      // request, and with it the socket its response is about to use.
      this.inner = this.req.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
    }
    return this.inner;
  }

  /**
   * stopReading takes the iterator's listeners off and lets the rest of the body flow away
   * unread. Without a read ever made there is nothing to undo: node:http drops an unread body
   * itself once the response is done.
   */
  private stopReading(): void {
    const inner = this.inner;
    if (inner === null) return;
    const resume = (): void => void this.req.resume();
    inner.return?.()?.then(resume, resume);
  }

  bytes(): Promise<Uint8Array> {
    return readBytes(this);
  }

  text(): Promise<string> {
    return readText(this);
  }
}

/** UPGRADE_BUFFER_LIMIT is how many bytes past the body are read, for `head`, before reading stops. */
const UPGRADE_BUFFER_LIMIT = 64 * 1024;

/**
 * UpgradeExchange serves one request that node:http handed to its `'upgrade'` event, with the
 * socket. It reads the socket itself: the body, if any, into `nsgi.input` through a
 * {@link RequestParser} (fed a head that states only the framing), and what follows into the
 * parser's buffer, which becomes `head` if the app upgrades. A refusal is an ordinary response on a
 * ServerResponse bound to the socket, which closes after it. Once the app has taken the connection,
 * the response and the parser are dropped: an upgraded connection keeps little more than its signal.
 */
class UpgradeExchange extends LazySignal implements InputHooks {
  private readonly request: RequestHead;
  private readonly input: RequestInput;
  private response: NodeExchange | null;
  private parser: RequestParser | null;
  private readonly onData = this.readData.bind(this);
  private readonly onEnd = this.peerEnded.bind(this);
  private pausedForInput = false;
  private upgraded = false;
  private closed = false;

  constructor(
    private readonly settings: Settings,
    req: IncomingMessage,
    private readonly socket: Socket,
    head: Buffer,
    private readonly registry: Set<UpgradeExchange> | null,
  ) {
    super();
    this.request = requestHead(req, true);
    const res = new http.ServerResponse(req);
    // node:http no longer reads this connection, so it ends after the response (Connection: close).
    res.shouldKeepAlive = false;
    this.response = new NodeExchange(res, socket, settings, this.request);
    const { contentLength, chunked } = this.request;
    this.input = new RequestInput(this, contentLength <= 0 && !chunked);
    const framing = chunked ? 'Transfer-Encoding: chunked\r\n' : contentLength > 0 ? `Content-Length: ${contentLength}\r\n` : '';
    const parser = new RequestParser();
    this.parser = parser;
    parser.feed(Buffer.from(`POST / HTTP/1.1\r\nHost: upgrade\r\n${framing}\r\n`, 'latin1'));
    try {
      parser.next();
    } catch (err) {
      // A Content-Length node:http took and nsgi's parser does not (over 15 digits): reads fail.
      this.input.fail(err);
    }
    parser.feed(head);
  }

  /** start takes the socket over from node:http: from here its errors and its closing are the adapter's. */
  start(): void {
    const socket = this.socket;
    this.registry?.add(this);
    socket.on('error', ignoreSocketError);
    socket.on('close', this.socketClosed.bind(this));
    this.whenSocketFree();
  }

  /**
   * whenSocketFree runs the app once the socket carries no response: node:http hands over an
   * upgrade request pipelined behind others while it is still sending their responses.
   */
  private whenSocketFree(): void {
    if (this.closed) return;
    const earlier = (this.socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (earlier != null) {
      earlier.once('finish', this.whenSocketFree.bind(this));
      return;
    }
    this.run(this.response!);
  }

  /** run reads the socket and calls the app. */
  private run(response: NodeExchange): void {
    const socket = this.socket;
    response.res.assignSocket(socket);
    response.res.on('finish', this.responseFinished.bind(this));
    // node:http's keep-alive and request timeouts no longer apply (UPG-4).
    socket.setTimeout(0);
    socket.on('end', this.onEnd);
    socket.on('data', this.onData);
    const environ = this.settings.environs.build(this.request, connectionInfo(this.settings, socket), this.input, this);
    if (this.request.upgrade) environ['nsgi.upgrade'] = this.upgrade.bind(this);
    response.runner.run(this.callApp.bind(this), environ);
    // The body that came with the head is read after the app's first call, as the reference
    // server reads it: an app that upgrades at once has not read it (UPG-3).
    this.process();
  }

  /** callApp calls the app with a startResponse that throws once the connection is upgraded (UPG-6). */
  private callApp(environ: Environ, startResponse: StartResponse): ReturnType<App> {
    return this.settings.app(environ, (status: string, headers: HeaderList, excInfo?: unknown): Write => {
      if (this.upgraded) throw new AppError('NSGI_START_RESPONSE_AFTER_END', 'startResponse called after nsgi.upgrade() (SPEC §6.2, UPG-6)');
      return startResponse(status, headers, excInfo);
    });
  }

  /** upgrade is `environ['nsgi.upgrade']` (SPEC §6.2): the app takes the connection over. */
  private upgrade(options?: UpgradeOptions): Upgraded {
    const response = this.response;
    const parser = this.parser;
    if (this.closed) throw new ClientGoneError();
    if (response === null || parser === null || response.runner.finished) {
      throw new AppError('NSGI_UPGRADE_TOO_LATE', 'nsgi.upgrade() called after the response ended (SPEC §6.2)');
    }
    if (response.runner.headSent) throw new AppError('NSGI_UPGRADE_AFTER_HEAD', 'nsgi.upgrade() called after the response head was sent (SPEC §6.2)');
    if (!this.input.complete) throw new AppError('NSGI_UPGRADE_WITH_BODY', 'nsgi.upgrade() called before the request body was read (SPEC §6.2)');
    let head101 = '';
    if (options?.headers !== undefined) {
      const block = prepareHeaders(options.headers).block;
      // Upgrade is hop-by-hop, so prepareHeaders drops it; a 101 needs it (RFC 9110 §7.8).
      const upgrade = upgradeField(options.headers) ?? upgradeField(this.request.headers) ?? '';
      head101 = `HTTP/1.1 101 Switching Protocols\r\n${block}Connection: Upgrade\r\nUpgrade: ${upgrade}\r\n\r\n`;
    }
    this.upgraded = true;
    // UPG-4: the adapter's listeners come off, except 'close' (for the signal) and 'error'.
    const socket = this.socket;
    response.res.detachSocket(socket);
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.pause();
    response.runner.abort();
    const rest = parser.takeBuffered();
    this.response = this.parser = null;
    if (head101 !== '') socket.write(head101, 'latin1');
    return { socket, head: rest };
  }

  /** serverClosing fires `nsgi.signal` because the server is shutting down (UPG-7). */
  serverClosing(reason: Error): void {
    this.abortSignal(reason);
  }

  firstRead(): void {
    this.response?.firstRead();
  }

  resumeInput(): void {
    if (!this.pausedForInput || this.parser === null) return;
    this.pausedForInput = false;
    if (this.parser.buffered <= UPGRADE_BUFFER_LIMIT) this.socket.resume();
  }

  private readData(data: Buffer): void {
    this.parser?.feed(data);
    this.process();
  }

  /** process turns what the parser holds into body for `nsgi.input`; the rest stays buffered. */
  private process(): void {
    const parser = this.parser;
    if (parser === null) return;
    const input = this.input;
    try {
      for (;;) {
        const event = parser.next();
        if (event.kind === 'data') {
          if (!input.push(event.data)) this.pausedForInput = true;
        } else if (event.kind === 'end') {
          input.end();
        } else {
          break;
        }
      }
    } catch (err) {
      // A malformed body: the app's read fails, and nothing more is read.
      input.fail(err);
      this.socket.pause();
      return;
    }
    if (this.pausedForInput || parser.buffered > UPGRADE_BUFFER_LIMIT) this.socket.pause();
  }

  /** peerEnded is a FIN before the upgrade: the client has left, unless its response is complete (ENV-27). */
  private peerEnded(): void {
    if (this.response?.runner.finished === false) this.socket.destroy();
  }

  private responseFinished(): void {
    this.socket.destroySoon();
  }

  /** socketClosed fires the signal (ENV-27, UPG-7) and, before an upgrade, fails the body and the response. */
  private socketClosed(): void {
    this.closed = true;
    this.registry?.delete(this);
    const reason = new ClientGoneError();
    this.abortSignal(reason);
    this.input.fail(reason);
    this.response?.gone(reason);
  }
}

/** upgradeField is the value of the first Upgrade field in `headers`. */
function upgradeField(headers: HeaderList): string | undefined {
  return headers.find(([name]) => name.toLowerCase() === 'upgrade')?.[1];
}

function ignoreSocketError(): void {
  // 'close' follows; a reset client is an ordinary event, not a server error.
}
