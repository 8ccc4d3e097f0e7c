/**
 * The node:net driver: it accepts sockets, feeds their bytes to an {@link Http1Connection}, runs
 * an {@link Exchange} per request, writes what the connection produces, and owns the timers and
 * the closing of sockets. It knows nothing of any particular app.
 */
import net from 'node:net';
import type { App, ErrorStream, HeaderList, Upgraded } from '../protocol/nsgi.ts';
import { RequestInput, inputAfterResponse, type InputHooks } from './body.ts';
import { buildEnviron, type ConnectionInfo } from './environ.ts';
import { AppError, ClientGoneError, ProtocolError, STDERR, ServerClosingError } from './errors.ts';
import { Exchange, OUTPUT_HIGH_WATER_MARK, type ExchangeHost } from './exchange.ts';
import { Http1Connection, MAX_DRAIN_BYTES } from './http1/connection.ts';
import { DEFAULT_LIMITS, type RequestHead } from './http1/parser.ts';
import { prepareHeaders } from './http1/writer.ts';
import { watchSendStall } from './send-stall.ts';
import { FORWARDED_HEADERS, applyForwarded, trustedProxies, type ForwardedHeaders, type TrustedProxies } from './forwarded.ts';

/** ServeOptions configures {@link serve}. Every field is optional. */
export interface ServeOptions {
  /** Address to listen on; default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; default 8000; 0 picks a free port. */
  port?: number;
  /** Receives one combined-log-format line per response; no access log when absent. */
  accessLog?: (line: string) => void;
  /** Where app errors and server diagnostics go (`nsgi.errors`); default stderr. */
  errors?: ErrorStream;
  /** The path the app is mounted at; moved from PATH_INFO to SCRIPT_NAME (SPEC §2.2). */
  scriptName?: string;
  /** Longest request line in bytes (414 beyond); default 8 KiB. */
  maxRequestLineSize?: number;
  /** Most header fields in a request (431 beyond); default 100. */
  maxHeaderCount?: number;
  /** Largest header block in bytes (431 beyond); default 16 KiB. */
  maxHeaderSize?: number;
  /** Largest request body in bytes (413 beyond); default unlimited. */
  maxBodySize?: number;
  /**
   * Milliseconds an idle keep-alive connection is kept; default 5 s, as node:http. Keep it longer
   * than the idle timeout of any proxy in front, so the proxy never reuses a connection being closed.
   */
  keepAliveTimeout?: number;
  /**
   * Milliseconds allowed to receive a complete request head, from its first byte (408 beyond); bytes
   * arriving never push it back, so trickling a head does not stretch it. Default 10 s (see
   * {@link SERVER_DEFAULTS} for the arithmetic).
   */
  headersTimeout?: number;
  /**
   * Milliseconds a request body may go without a byte arriving while the app waits for it; the
   * app's read then fails with a 408. Default 30 s: long enough for a slow mobile uplink, short
   * enough that a stalled upload does not hold its connection for the lifetime of the process.
   */
  bodyTimeout?: number;
  /**
   * The slowest average rate, in bytes per second, at which a request body may arrive while the app
   * waits for it, once `minBodyRateGrace` has passed; slower, the app's read fails with a 408.
   * Default 240 bytes/s, Kestrel's: a client trickling a byte every few seconds keeps the body
   * inactivity timer from firing, but not this. Time the server spends not reading because the
   * app is behind does not count. 0 turns it off.
   */
  minBodyRate?: number;
  /** Milliseconds a request body is given before `minBodyRate` applies (TCP slow start, a slow first hop); default 5 s. */
  minBodyRateGrace?: number;
  /**
   * Milliseconds a response may wait on a client that reads nothing at all before the
   * connection is dropped. Default 60 s. A client that reads slowly but steadily is never cut,
   * and a response that is not writing (a long poll waiting for its event) is never timed.
   */
  sendTimeout?: number;
  /**
   * Most connections open at once; beyond it a new connection gets a 503 and is closed. Default
   * 16,384: under the common raised file-descriptor limit of 65,536, with room for the app's own
   * files and sockets; at about 16 KiB per idle connection it bounds memory near 256 MiB.
   */
  maxConnections?: number;
  /**
   * Addresses (or subnets, or `*`) of proxies whose `Forwarded` / `X-Forwarded-*` fields are
   * believed for REMOTE_ADDR, `nsgi.url_scheme` and the host. Default none: nobody is believed.
   */
  forwardedAllowIps?: readonly string[];
  /**
   * Which fields a trusted proxy's word is read from: `forwarded`, `x-forwarded`, or `auto`
   * (default: `Forwarded` when present, else `X-Forwarded-*`). Name the family your proxy sets
   * when it passes the other one through from clients (nginx with `$proxy_add_x_forwarded_for`:
   * `x-forwarded`).
   */
  forwardedHeaders?: ForwardedHeaders;
  /** The `Server` header value; default `nsgi`; empty to send none. */
  serverName?: string;
  /** Sets `nsgi.multiprocess` (true when workers run the app). */
  multiprocess?: boolean;
}

/**
 * SERVER_DEFAULTS are the values `serve` uses for options left out; the CLI's help shows these.
 * Each option's doc comment gives the reason for its default.
 */
export const SERVER_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 8000,
  keepAliveTimeout: 5_000,
  // A head deadline is what a slowloris client holds a connection for. At 10 s, holding all
  // 16,384 connections (maxConnections) means opening and feeding 16,384 / 10 = 1,638 new
  // connections every second without pause, each dropped with a 408 at its deadline however it
  // trickles; at node:http's 60 s, 273 a second would do. An honest head (at most 16 KiB) takes
  // well under a second even on a 2G link (50 kbit/s: about 2.6 s for the full 16 KiB). Apache's
  // mod_reqtimeout allows 20 s, Bun about 10 s.
  headersTimeout: 10_000,
  bodyTimeout: 30_000,
  minBodyRate: 240,
  minBodyRateGrace: 5_000,
  sendTimeout: 60_000,
  maxConnections: 16_384,
  closeTimeout: 30_000,
});

/** Server is a running nsgi server. */
export interface Server {
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on. */
  readonly port: number;
  /** `http://host:port`, for clients. */
  readonly url: string;
  /** The underlying node:net server. */
  readonly netServer: net.Server;
  /**
   * close stops accepting, closes idle connections at once, lets in-flight responses finish, and
   * resolves when every connection is closed. After `timeout` ms (default 30 s) the connections
   * still open are destroyed.
   */
  close(options?: { timeout?: number }): Promise<void>;
}

/**
 * INPUT_READ_AHEAD is how many unparsed bytes are read past a full request input before the socket
 * is paused: enough to see a client's FIN behind the rest of a body it sent in tiny chunks, at a
 * bounded cost of compact bytes per connection (beside the input's own INPUT_HIGH_WATER_MARK).
 */
const INPUT_READ_AHEAD = 256 * 1024;
/** Unparsed pipelined bytes above which the server stops reading until it catches up. */
const PIPELINE_HIGH_WATER_MARK = 64 * 1024;
/** How long a closing connection keeps reading, so the client is not reset before it has read. */
const LINGER_MS = 2000;

/** The whole answer to a connection beyond maxConnections. */
const OVERLOADED = (() => {
  const body = 'Service Unavailable: too many connections\n';
  return (
    'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${body.length}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`
  );
})();

interface Settings {
  app: App;
  limits: typeof DEFAULT_LIMITS;
  errors: ErrorStream;
  accessLog: ((line: string) => void) | undefined;
  scriptName: string;
  keepAliveTimeout: number;
  headersTimeout: number;
  serverName: string;
  multiprocess: boolean;
  bodyTimeout: number;
  minBodyRate: number;
  minBodyRateGrace: number;
  sendTimeout: number;
  maxConnections: number;
  trustedProxies: TrustedProxies | null;
  forwardedHeaders: ForwardedHeaders;
}

/**
 * serve runs `app` on a new HTTP/1.1 server and resolves once it is listening.
 *
 * ```ts
 * const server = await serve(app, { port: 8000 });
 * console.log(server.url);
 * await server.close();
 * ```
 */
export async function serve(app: App, options: ServeOptions = {}): Promise<Server> {
  if (typeof app !== 'function') throw new TypeError(`serve() needs an app function, got ${typeof app}`);
  const scriptName = (options.scriptName ?? '').replace(/\/+$/, '');
  if (scriptName !== '' && !scriptName.startsWith('/')) throw new TypeError(`scriptName must start with "/", got ${JSON.stringify(scriptName)}`);
  const settings: Settings = {
    app,
    limits: {
      maxRequestLineSize: options.maxRequestLineSize ?? DEFAULT_LIMITS.maxRequestLineSize,
      maxHeaderCount: options.maxHeaderCount ?? DEFAULT_LIMITS.maxHeaderCount,
      maxHeaderSize: options.maxHeaderSize ?? DEFAULT_LIMITS.maxHeaderSize,
      maxBodySize: options.maxBodySize ?? DEFAULT_LIMITS.maxBodySize,
    },
    errors: options.errors ?? STDERR,
    accessLog: options.accessLog,
    scriptName,
    keepAliveTimeout: options.keepAliveTimeout ?? SERVER_DEFAULTS.keepAliveTimeout,
    headersTimeout: options.headersTimeout ?? SERVER_DEFAULTS.headersTimeout,
    serverName: options.serverName ?? 'nsgi',
    multiprocess: options.multiprocess ?? false,
    bodyTimeout: options.bodyTimeout ?? SERVER_DEFAULTS.bodyTimeout,
    minBodyRate: options.minBodyRate ?? SERVER_DEFAULTS.minBodyRate,
    minBodyRateGrace: options.minBodyRateGrace ?? SERVER_DEFAULTS.minBodyRateGrace,
    sendTimeout: options.sendTimeout ?? SERVER_DEFAULTS.sendTimeout,
    maxConnections: options.maxConnections ?? SERVER_DEFAULTS.maxConnections,
    forwardedHeaders: options.forwardedHeaders ?? 'auto',
    trustedProxies: options.forwardedAllowIps === undefined || options.forwardedAllowIps.length === 0 ? null : trustedProxies(options.forwardedAllowIps),
  };
  if (!FORWARDED_HEADERS.includes(settings.forwardedHeaders)) {
    throw new TypeError(`forwardedHeaders must be one of ${FORWARDED_HEADERS.join(', ')}, got ${JSON.stringify(settings.forwardedHeaders)}`);
  }
  const connections = new Set<Connection>();
  let closing = false;
  const netServer = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    if (connections.size >= settings.maxConnections) {
      socket.on('error', () => {});
      socket.end(OVERLOADED);
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
      return;
    }
    const conn = new Connection(socket, settings, connections);
    connections.add(conn);
  });
  const host = options.host ?? SERVER_DEFAULTS.host;
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen(options.port ?? SERVER_DEFAULTS.port, host, () => {
      netServer.off('error', reject);
      resolve();
    });
  });
  netServer.on('error', (err) => settings.errors.write(`nsgi: server error: ${err.message}`));
  const address = netServer.address() as net.AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | null = null;
  return {
    host: address.address,
    port: address.port,
    url: `http://${urlHost}:${address.port}`,
    netServer,
    close(closeOptions = {}) {
      if (closed !== null) return closed;
      closing = true;
      closed = new Promise<void>((resolve) => {
        const deadline = setTimeout(() => {
          for (const conn of connections) conn.destroy();
        }, closeOptions.timeout ?? SERVER_DEFAULTS.closeTimeout);
        // net.Server.close calls back once every connection is gone.
        netServer.close(() => {
          clearTimeout(deadline);
          resolve();
        });
        for (const conn of connections) conn.shutdown();
      });
      return closed;
    },
  };
}

const enum Timer {
  None,
  Idle,
  /** Only empty lines since the last response (RFC 9112 §2.2): idle, but not to be pushed back. */
  EmptyLines,
  Head,
  Linger,
}

/** Connection drives one socket: bytes in, exchanges run, bytes out, timers, closing. */
class Connection implements ExchangeHost, InputHooks, ConnectionInfo {
  readonly http: Http1Connection;
  readonly errors: ErrorStream;
  gone = false;

  // What the environ needs to know of the connection (ConnectionInfo), kept on the connection
  // itself rather than in an object of its own: idle connections are what a streaming server
  // holds most of.
  readonly remoteAddress: string;
  readonly remotePort: string;
  readonly localAddress: string;
  readonly localPort: string;
  readonly urlScheme = 'http';
  readonly scriptName: string;
  readonly multiprocess: boolean;
  private exchange: Exchange | null = null;
  private input: RequestInput | null = null;
  private processing = false;
  private flushScheduled = false;
  private pausedForInput = false;
  private pausedForPipeline = false;
  private pausedForOutput = false;
  private peerEnded = false;
  private shuttingDown = false;
  private closing = false;
  private upgraded = false;
  private drained = 0;
  private drainWaiter: Promise<void> | null = null;
  private drainResolve: (() => void) | null = null;
  private drainReject: ((err: Error) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerKind = Timer.None;
  private timerMs = 0;
  // Timers of the exchange in progress: the body arriving, and the client reading what is sent.
  private bodyTimer: NodeJS.Timeout | null = null;
  // The body's progress while the app waits for it: when the current rate window began, the
  // bytes received in it, and when the last byte came (for the inactivity and rate deadlines).
  private bodyWindowStart = 0;
  private bodyWindowBytes = 0;
  private bodyLastByte = 0;
  private sendTimer: NodeJS.Timeout | null = null;
  private sendBacklog = 0;
  private readonly trusted: boolean;
  private requestStart = 0;

  constructor(
    readonly socket: net.Socket,
    private readonly settings: Settings,
    private readonly registry: Set<Connection>,
  ) {
    this.http = new Http1Connection(settings.limits, settings.serverName, settings.keepAliveTimeout);
    this.errors = settings.errors;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = String(socket.remotePort ?? '');
    this.localAddress = socket.localAddress ?? '';
    this.localPort = String(socket.localPort ?? '');
    this.scriptName = settings.scriptName;
    this.multiprocess = settings.multiprocess;
    this.trusted = settings.trustedProxies?.trusts(this.remoteAddress) ?? false;
    // Shared listeners that find the connection on the socket, rather than five closures per
    // connection: idle connections are what a streaming server holds most of.
    (socket as OwnedSocket)[CONNECTION] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
    this.arm(Timer.Head, settings.headersTimeout);
  }

  // ---- input ------------------------------------------------------------------------------

  /** onData takes bytes from the socket. */
  onData(data: Buffer): void {
    if (this.closing) return;
    if (this.pausedForInput) {
      // Read ahead while the app catches up (see pause): kept unparsed, then reading stops.
      this.http.receive(data);
      if (this.http.buffered > INPUT_READ_AHEAD) this.socket.pause();
      return;
    }
    if (this.timerKind === Timer.Idle) this.arm(Timer.None, 0);
    this.http.receive(data);
    this.process();
  }

  /** process turns buffered bytes into events until it needs more or must wait for a response. */
  private process(): void {
    if (this.processing) return;
    this.processing = true;
    const http = this.http;
    try {
      while (!this.closing && !this.upgraded) {
        let event;
        try {
          event = http.nextEvent();
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          this.onProtocolError(err);
          break;
        }
        if (event.kind === 'head') {
          this.startExchange(event.head);
        } else if (event.kind === 'data') {
          this.drained += event.data.length;
          const input = this.input;
          if (this.bodyTimer !== null) {
            this.bodyWindowBytes += event.data.length;
            this.bodyLastByte = Date.now();
          }
          if (input !== null && !input.abandoned && this.exchange !== null && !this.exchange.finished) {
            this.drained = 0;
            if (!input.push(event.data)) {
              // The rest stays unparsed, as compact bytes, until the app catches up.
              this.pause('input');
              break;
            }
          } else if (this.drained > MAX_DRAIN_BYTES && (this.exchange === null || this.exchange.finished)) {
            http.mustClose();
            this.close();
            break;
          }
        } else if (event.kind === 'end') {
          this.stopBodyTimer();
          this.input?.end();
          if (!this.finishCycle()) break;
        } else if (event.kind === 'need-data') {
          // Between requests, the head deadline runs from the first byte of a head, including one
          // that stopped at a line end (every whole line is already parsed, so nothing counts as
          // buffered).
          if (http.request === null && this.timerKind !== Timer.Head) {
            if (!http.idle) this.arm(Timer.Head, this.settings.headersTimeout);
            // Only empty lines, which a client may send before a request line (RFC 9112 §2.2):
            // the parser is idle again, and so is the connection, but its bytes stopped the idle
            // timer. One that more empty lines cannot push back takes its place.
            else if (this.timerKind === Timer.None) this.arm(Timer.EmptyLines, this.emptyLineTimeout());
          }
          break;
        } else {
          if (http.buffered > PIPELINE_HIGH_WATER_MARK) this.pause('pipeline');
          break;
        }
      }
    } finally {
      this.processing = false;
      // What the requests of this read produced leaves now, in one write (see scheduleFlush).
      if (this.flushScheduled) this.flushNow();
    }
    // A client that has closed its side sends nothing more: once no response is under way, close.
    if (this.peerEnded && !this.closing && (this.exchange === null || this.exchange.finished)) this.close();
  }

  private startExchange(head: RequestHead): void {
    if (this.timerKind === Timer.Head || this.timerKind === Timer.EmptyLines) this.arm(Timer.None, 0);
    this.requestStart = this.settings.accessLog === undefined ? 0 : Date.now();
    const http = this.http;
    if (this.shuttingDown) http.mustClose();
    if (head.method === 'CONNECT') {
      http.sendErrorResponse(501, 'CONNECT is not supported', true);
      // The answer says close, so close: after a linger, whatever the request announced. Waiting
      // for a body announced but never sent would hold the connection for ever (SRV-21).
      this.close(true);
      return;
    }
    const input = new RequestInput(this, head.contentLength <= 0 && !head.chunked);
    const exchange = new Exchange(this, input);
    const environ = buildEnviron(head, this, input, exchange);
    if (head.version === 'HTTP/1.1') {
      environ['nsgi.early_hints'] = exchange.earlyHints.bind(exchange);
      environ['nsgi.set_trailers'] = exchange.setTrailers.bind(exchange);
      if (head.upgrade) environ['nsgi.upgrade'] = exchange.upgrade.bind(exchange);
    }
    if (this.trusted) applyForwarded(environ, this.settings.trustedProxies!, this.settings.forwardedHeaders);
    this.exchange = exchange;
    this.input = input;
    // A head that finished arriving after close() began: the app learns at once that the server
    // is closing (SRV-28), as the exchanges under way at close() did.
    if (this.shuttingDown) exchange.abortSignal(new ServerClosingError());
    if (this.peerEnded) exchange.clientClosed(new ClientGoneError('the client closed its side of the connection'));
    exchange.run(this.settings.app, environ);
  }

  /** exchangeDone is called by the exchange when its response is complete, cut, or abandoned. */
  exchangeDone(): void {
    if (this.settings.accessLog !== undefined && this.http.request !== null) this.logAccess();
    const http = this.http;
    if (this.gone || this.closing || this.upgraded) return;
    if (!http.requestBodyDone) {
      // The app answered without reading the whole body. A client still waiting for 100 Continue
      // may never send it, and a large rest is not worth reading: close. Otherwise read and
      // discard the rest so that it never becomes the next request.
      if (this.peerEnded || !http.canKeepAfterUnreadBody()) http.mustClose();
      if (!http.keepAliveRequested || http.responseState === 'closed') {
        this.close();
        return;
      }
      // The rest is read and thrown away: an app still reading learns so, rather than seeing
      // the body end early.
      this.input?.discard(inputAfterResponse());
      this.resume('input');
      this.drained = 0;
      this.startBodyTimer();
      return;
    }
    if (!this.processing) {
      if (this.finishCycle()) this.process();
    }
  }

  /**
   * finishCycle ends an exchange whose request and response are both done: on to the next
   * request if the connection may be reused, else close. It returns true when processing may go on.
   */
  private finishCycle(): boolean {
    const ex = this.exchange;
    const http = this.http;
    if (ex !== null && !ex.finished) return false;
    if (http.responseState === 'closed') return false;
    if (http.responseState !== 'done') return false;
    if (!http.shouldReuseConnection() || this.shuttingDown) {
      this.close();
      return false;
    }
    http.nextCycle();
    this.exchange = null;
    this.input = null;
    this.drained = 0;
    // Pipelined requests answered in one go must not outrun a client that is not reading: once
    // the output is past its mark and the socket is full, read no further request until drain.
    if (http.out.size >= OUTPUT_HIGH_WATER_MARK) this.flushNow();
    if (this.socket.writableNeedDrain) {
      this.pause('output');
      this.startSendTimer();
      return false;
    }
    this.resume('pipeline');
    if (http.buffered === 0) this.arm(Timer.Idle, this.settings.keepAliveTimeout);
    return true;
  }

  private onProtocolError(err: ProtocolError): void {
    const ex = this.exchange;
    this.http.mustClose();
    if (ex !== null && !ex.finished) {
      // The body went bad while the app runs: its reads fail with the error, and if it does not
      // answer, the error's status is sent (Exchange.fail).
      this.input?.fail(err);
      this.socket.pause();
      return;
    }
    this.http.rejectRequest(err);
    if (this.settings.accessLog !== undefined) this.logAccess(err);
    // A refused request's body may still be on its way, though none of it has arrived yet.
    this.close(true);
  }

  /**
   * onEnd is the client's FIN. While a response is in progress it counts as the client leaving
   * (SPEC §2.4), as on node:http: the signal fires, the body's `return()` is called, what was
   * produced so far is sent, and the connection closes. Responses complete before the FIN (a
   * client that half-closes after sending its requests) are not affected.
   */
  onEnd(): void {
    this.peerEnded = true;
    const ex = this.exchange;
    if (ex !== null && !ex.finished) {
      ex.abort(new ClientGoneError('the client closed its side of the connection'));
      this.cut();
      return;
    }
    if (!this.processing && !this.closing) this.close();
  }

  /** onClose is the socket gone, for whatever reason. */
  onClose(): void {
    this.gone = true;
    this.timerKind = Timer.None;
    if (this.timer !== null) clearTimeout(this.timer);
    this.stopBodyTimer();
    if (this.sendTimer !== null) clearTimeout(this.sendTimer);
    this.registry.delete(this);
    const err = new ClientGoneError();
    this.exchange?.abort(err);
    if (this.drainReject !== null) {
      const reject = this.drainReject;
      this.drainWaiter = this.drainResolve = this.drainReject = null;
      reject(err);
    }
  }

  private pause(why: 'input' | 'pipeline' | 'output'): void {
    if (why === 'input') {
      if (!this.pausedForInput) this.restartBodyWindow();
      this.pausedForInput = true;
      // A full input does not stop the reading at once: up to INPUT_READ_AHEAD more bytes are
      // taken, unparsed, so that a client leaving (its FIN or reset) is still seen while the app
      // has not caught up, and `nsgi.signal` fires (SPEC §2.4).
      if (this.http.buffered <= INPUT_READ_AHEAD) return;
    } else if (why === 'pipeline') this.pausedForPipeline = true;
    else this.pausedForOutput = true;
    this.socket.pause();
  }

  private resume(why: 'input' | 'pipeline' | 'output'): void {
    if (why === 'input') {
      if (!this.pausedForInput) return;
      this.restartBodyWindow();
      this.pausedForInput = false;
      // Bytes read ahead wait in the parser; no new read may come to parse them.
      if (!this.processing && !this.closing && this.http.buffered > 0) queueMicrotask(() => this.processBuffered());
    } else if (why === 'pipeline') this.pausedForPipeline = false;
    else this.pausedForOutput = false;
    if (!this.pausedForInput && !this.pausedForPipeline && !this.pausedForOutput && !this.closing) this.socket.resume();
  }

  /** processBuffered parses bytes left waiting when the input filled, once it has room again. */
  private processBuffered(): void {
    if (!this.pausedForInput && !this.closing && !this.gone && !this.upgraded) this.process();
  }

  /** firstRead is the input's first read: time for `100 Continue` (SPEC IN-6). */
  firstRead(input: RequestInput): void {
    // An input kept by an app past its own exchange must not speak for the next request.
    if (input !== this.input || this.exchange === null || this.exchange.finished) return;
    this.http.sendContinue();
    this.scheduleFlush();
    // From now on the client owes the body, so its silence counts (SRV-29: never before).
    this.startBodyTimer();
  }

  /** resumeInput is the app catching up with the request body: read the socket again. */
  resumeInput(input: RequestInput): void {
    if (input === this.input) this.resume('input');
  }

  // ---- output -----------------------------------------------------------------------------

  /**
   * scheduleFlush arranges for the output to be written once the current work is done: at the end
   * of process() when called while it runs (so every response to one read leaves together), else
   * at the end of this tick.
   */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    if (!this.processing) process.nextTick(flushTick, this);
  }

  /** flushScheduledOutput is the end-of-tick flush, if one is still owed. */
  flushScheduledOutput(): void {
    if (this.flushScheduled) this.flushNow();
  }

  flushNow(): boolean {
    this.flushScheduled = false;
    const socket = this.socket;
    if (this.gone || socket.writableEnded) {
      this.http.takeOutput();
      return false;
    }
    const parts = this.http.takeOutput();
    if (parts.length === 1) return socket.write(parts[0]!);
    if (parts.length === 0) return !socket.writableNeedDrain;
    socket.cork();
    for (let i = 0; i < parts.length; i++) socket.write(parts[i]!);
    socket.uncork();
    return !socket.writableNeedDrain;
  }

  waitForDrain(): Promise<void> {
    if (this.gone) return Promise.reject(new ClientGoneError());
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    if (this.drainWaiter === null) {
      this.drainWaiter = new Promise<void>((resolve, reject) => {
        this.drainResolve = resolve;
        this.drainReject = reject;
      });
      this.startSendTimer();
    }
    return this.drainWaiter;
  }

  /** onDrain is the socket able to take more. */
  onDrain(): void {
    const resolve = this.drainResolve;
    if (this.sendTimer !== null) {
      clearTimeout(this.sendTimer);
      this.sendTimer = null;
    }
    if (resolve !== null) {
      this.drainWaiter = this.drainResolve = this.drainReject = null;
      resolve();
    }
    if (this.pausedForOutput) {
      this.resume('output');
      if (!this.processing && !this.closing) {
        if (this.http.buffered === 0) this.arm(Timer.Idle, this.settings.keepAliveTimeout);
        this.process();
      }
    }
  }

  cut(): void {
    if (this.http.responseState !== 'closed') this.http.cut();
    this.close();
  }

  // ---- closing ----------------------------------------------------------------------------

  /**
   * close flushes what is pending, ends the socket, and reads on briefly before destroying it
   * when the client may still be sending: bytes are buffered, a request body is unread, or
   * `mayBeSending` says so (a request refused at its head).
   */
  private close(mayBeSending = false): void {
    if (this.closing) return;
    this.closing = true;
    this.flushNow();
    const socket = this.socket;
    if (this.gone) return;
    const http = this.http;
    const unread = mayBeSending || http.buffered > 0 || (http.request !== null && !http.requestBodyDone);
    if (!unread || this.peerEnded) {
      socket.destroySoon();
      if (socket.writableLength > 0) this.startSendTimer();
      return;
    }
    // Lingering close (RFC 9112 §9.6): the client may still be sending; keep reading, and
    // discarding, for a while, so that its unread bytes do not make our kernel reset the
    // connection before the client has read the response.
    socket.end();
    socket.resume();
    this.arm(Timer.Linger, LINGER_MS);
  }

  /**
   * shutdown is a server close(): idle connections close now, busy ones after their response.
   * `nsgi.signal` fires so that long-lived responses (event streams, long polls, upgraded
   * connections) can end cleanly.
   */
  shutdown(): void {
    this.shuttingDown = true;
    this.http.mustClose();
    const ex = this.exchange;
    ex?.abortSignal(new ServerClosingError());
    if (!this.upgraded && this.exchange === null && this.http.idle) this.close();
  }

  /**
   * upgrade hands the socket to the app (SPEC §6.2): the server's listeners and timers come off,
   * the bytes read past the request head go with it, and the socket is left paused.
   */
  upgrade(headers: HeaderList | undefined): Upgraded {
    const http = this.http;
    const req = http.request!;
    if (this.gone || this.closing) throw new ClientGoneError();
    if (!http.requestComplete && (req.contentLength > 0 || req.chunked)) {
      throw new AppError('NSGI_UPGRADE_WITH_BODY', 'nsgi.upgrade() called before the request body was read (SPEC §6.2)');
    }
    let head101 = '';
    if (headers !== undefined) {
      // Upgrade is hop-by-hop, so prepareHeaders drops it; a 101 needs it (RFC 9110 §7.8).
      const upgrade = headers.find(([name]) => name.toLowerCase() === 'upgrade')?.[1] ?? (req.headers.find(([n]) => n.toLowerCase() === 'upgrade')?.[1] ?? '');
      const prepared = prepareHeaders(headers);
      head101 = `HTTP/1.1 101 Switching Protocols\r\n${prepared.block}Connection: Upgrade\r\nUpgrade: ${upgrade}\r\n\r\n`;
    }
    this.upgraded = true;
    http.statusCode = 101;
    this.flushNow();
    const socket = this.socket;
    socket.pause();
    socket.off('data', onSocketData);
    socket.off('end', onSocketEnd);
    socket.off('drain', onSocketDrain);
    this.timerKind = Timer.None;
    if (this.timer !== null) clearTimeout(this.timer);
    const rest = http.takeBuffered();
    if (head101 !== '') socket.write(head101, 'latin1');
    // The send-stall rule outlives the hand-over: an upgraded peer (a WebSocket) that takes
    // nothing of what is written to it for sendTimeout is dropped as any other would be.
    const { sendTimeout } = this.settings;
    watchSendStall(socket, sendTimeout, () => {
      this.errors.write(`nsgi: dropping upgraded ${this.remoteAddress}:${this.remotePort}: it read nothing for ${sendTimeout} ms`);
      socket.destroy();
    });
    return { socket, head: rest };
  }

  /** destroy closes the socket at once. */
  destroy(): void {
    this.socket.destroy();
  }

  /**
   * arm sets the connection's one timer. Disarming only forgets the kind, so the usual
   * request-response-idle rhythm costs a `refresh()` per request rather than a new timer.
   */
  private arm(kind: Timer, ms: number): void {
    this.timerKind = kind;
    if (kind === Timer.None) return;
    if (this.timer !== null && this.timerMs === ms) {
      this.timer.refresh();
      return;
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(onTimer, ms, this);
    this.timer.unref();
  }

  private emptyLineTimeout(): number {
    const { keepAliveTimeout, headersTimeout } = this.settings;
    return Math.min(keepAliveTimeout, headersTimeout);
  }

  /** onTimeout acts on the timer that fired, if it is still wanted. */
  onTimeout(): void {
    const kind = this.timerKind;
    this.timerKind = Timer.None;
    if (kind === Timer.Linger || kind === Timer.Idle || kind === Timer.EmptyLines) {
      // Output still on its way is not idleness: wait for it, and let the send timeout judge a
      // client that stopped reading.
      if (this.socket.writableLength > 0) {
        if (this.sendTimer === null) this.startSendTimer();
        this.arm(kind, kind === Timer.Idle ? this.settings.keepAliveTimeout : kind === Timer.EmptyLines ? this.emptyLineTimeout() : LINGER_MS);
        return;
      }
      this.socket.destroy();
    } else if (kind === Timer.Head && this.exchange === null) {
      if (this.http.idle) {
        this.socket.destroy();
        return;
      }
      this.http.rejectRequest(new ProtocolError('NSGI_HEADERS_TIMEOUT', 408, 'request head not received in time'));
      this.close();
    }
  }

  /**
   * startBodyTimer starts the body deadlines, if not running: no byte for `bodyTimeout`, and an
   * average under `minBodyRate` once `minBodyRateGrace` has passed. Bytes arriving only update
   * counts; the one timer fires at the nearer deadline and is set again from the counts then.
   */
  private startBodyTimer(): void {
    if (this.bodyTimer !== null) return;
    const { bodyTimeout, minBodyRate } = this.settings;
    if (!(bodyTimeout > 0 && Number.isFinite(bodyTimeout)) && !(minBodyRate > 0)) return;
    this.restartBodyWindow();
    this.bodyTimer = setTimeout(onBodyTimer, this.nextBodyCheck(this.bodyWindowStart), this).unref();
  }

  /** restartBodyWindow starts the rate window over: the time before it was not the client's to use. */
  private restartBodyWindow(): void {
    this.bodyWindowStart = this.bodyLastByte = Date.now();
    this.bodyWindowBytes = 0;
  }

  /** nextBodyCheck is how many ms from `now` the nearer body deadline falls, given the counts. */
  private nextBodyCheck(now: number): number {
    const { bodyTimeout, minBodyRate, minBodyRateGrace } = this.settings;
    let at = bodyTimeout > 0 && Number.isFinite(bodyTimeout) ? this.bodyLastByte + bodyTimeout : Infinity;
    if (minBodyRate > 0) {
      // The moment the bytes so far fall under the rate, never before the grace period ends.
      const rateAt = this.bodyWindowStart + Math.max(minBodyRateGrace, (this.bodyWindowBytes * 1000) / minBodyRate);
      if (rateAt < at) at = rateAt;
    }
    return Math.max(1, Math.min(at - now, 2 ** 31 - 1));
  }

  private stopBodyTimer(): void {
    if (this.bodyTimer !== null) {
      clearTimeout(this.bodyTimer);
      this.bodyTimer = null;
    }
  }

  /**
   * onBodyTimeout: no body byte for `bodyTimeout`. Not the client's fault while the server itself
   * stopped reading because the app is not keeping up; otherwise the app's read fails with 408.
   */
  onBodyTimeout(): void {
    this.bodyTimer = null;
    const http = this.http;
    if (this.gone || this.closing || this.upgraded || http.requestComplete || http.request === null) return;
    if (this.pausedForInput) return this.startBodyTimer();
    const { bodyTimeout, minBodyRate, minBodyRateGrace } = this.settings;
    const now = Date.now();
    const elapsed = now - this.bodyWindowStart;
    let err: ProtocolError;
    if (bodyTimeout > 0 && now - this.bodyLastByte >= bodyTimeout) {
      err = new ProtocolError('NSGI_BODY_TIMEOUT', 408, `no request body data for ${bodyTimeout} ms`);
    } else if (minBodyRate > 0 && elapsed >= minBodyRateGrace && this.bodyWindowBytes < (minBodyRate * elapsed) / 1000) {
      err = new ProtocolError('NSGI_BODY_TOO_SLOW', 408, `request body arrived at ${Math.floor((this.bodyWindowBytes * 1000) / elapsed)} bytes/s, under the minimum of ${minBodyRate}`);
    } else {
      this.bodyTimer = setTimeout(onBodyTimer, this.nextBodyCheck(now), this).unref();
      return;
    }
    http.mustClose();
    const ex = this.exchange;
    if (ex !== null && !ex.finished) this.input?.fail(err);
    else this.close();
  }

  private startSendTimer(): void {
    const ms = this.settings.sendTimeout;
    if (ms <= 0 || !Number.isFinite(ms)) return;
    this.sendBacklog = this.socket.writableLength;
    if (this.sendTimer !== null) this.sendTimer.refresh();
    else this.sendTimer = setTimeout(onSendTimer, ms, this).unref();
  }

  /**
   * onSendTimeout: output has waited `sendTimeout` on a client that took none of it; a client that
   * takes a little is kept. Runs whenever output is pending: while the app waits for drain, while
   * pipelined requests wait, and after the last response of a closing or idle connection.
   */
  onSendTimeout(): void {
    this.sendTimer = null;
    if (this.gone || this.socket.writableLength === 0) return;
    if (this.socket.writableLength < this.sendBacklog) return this.startSendTimer();
    this.errors.write(`nsgi: dropping ${this.remoteAddress}:${this.remotePort}: it read nothing for ${this.settings.sendTimeout} ms`);
    this.socket.destroy();
  }

  private logAccess(err?: ProtocolError): void {
    const http = this.http;
    const req = http.request;
    const status = err?.status ?? http.statusCode;
    const line = req === null ? '-' : `${req.method} ${req.target} ${req.version}`;
    const referer = (req !== null && this.exchange !== null && fieldValue(req.headers, 'referer')) || '-';
    const agent = (req !== null && this.exchange !== null && fieldValue(req.headers, 'user-agent')) || '-';
    const ms = this.requestStart === 0 ? 0 : Date.now() - this.requestStart;
    this.settings.accessLog!(
      `${this.remoteAddress} - - [${clfDate(new Date())}] ${JSON.stringify(line)} ${status || '-'} ${http.bodyBytes || '-'} ${JSON.stringify(referer)} ${JSON.stringify(agent)} ${ms}ms`,
    );
  }
}

const CONNECTION = Symbol('nsgi.connection');
type OwnedSocket = net.Socket & { [CONNECTION]: Connection };

function onSocketData(this: net.Socket, data: Buffer): void {
  (this as OwnedSocket)[CONNECTION].onData(data);
}

function onSocketEnd(this: net.Socket): void {
  (this as OwnedSocket)[CONNECTION].onEnd();
}

function onSocketError(): void {
  // 'close' follows; a reset client is an ordinary event, not a server error.
}

function onSocketClose(this: net.Socket): void {
  (this as OwnedSocket)[CONNECTION].onClose();
}

function onSocketDrain(this: net.Socket): void {
  (this as OwnedSocket)[CONNECTION].onDrain();
}

function flushTick(conn: Connection): void {
  conn.flushScheduledOutput();
}

function onTimer(conn: Connection): void {
  conn.onTimeout();
}

function onBodyTimer(conn: Connection): void {
  conn.onBodyTimeout();
}

function onSendTimer(conn: Connection): void {
  conn.onSendTimeout();
}

/** fieldValue is the first value of the field `name` (lower case), or undefined. */
function fieldValue(headers: Array<[string, string]>, name: string): string | undefined {
  for (const [n, v] of headers) if (n.length === name.length && n.toLowerCase() === name) return v;
  return undefined;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** clfDate formats a time as the Common Log Format does: `25/Nov/2026:09:00:00 +0000`. */
function clfDate(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
