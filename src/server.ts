/**
 * The reference server: {@link serve} checks its options, listens on node:net, gives each
 * accepted socket a {@link Driver} (`driver.ts`), and closes gracefully. It knows nothing of any
 * particular app.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { App, ErrorStream } from '../protocol/nsgi.ts';
import { accessLogJson, accessLogLine, type AccessEntry, type AccessLogFormat } from './access-log.ts';
import { LINGER_MS, type DeadlineTimes } from './deadlines.ts';
import { Driver } from './driver.ts';
import { EnvironBuilder } from './environ.ts';
import { STDERR } from './errors.ts';
import { FORWARDED_HEADERS, trustedProxies, type ForwardedHeaders, type TrustedProxies } from './forwarded.ts';
import { DEFAULT_LIMITS } from './http1/parser.ts';
import { Http1Shared } from './http1/shared.ts';
import { OVERLOADED_RESPONSE } from './http1/writer.ts';
import { ALPN_PROTOCOLS, Http2Front } from './http2.ts';
import { ListenFailure, boundAddress, listenAll, type BoundAddress, type ListenTarget } from './listen-all.ts';
import { handshakeLogger, type TlsOptions } from './tls.ts';
import { serveBroker } from './broker/default.ts';
import type { Broker } from './broker/types.ts';

/** ServerContext is what every driver of one server shares: the app, the settings and the caches. */
export interface ServerContext extends DeadlineTimes {
  readonly app: App;
  readonly errors: ErrorStream;
  readonly accessLog: ((line: string) => void) | undefined;
  /** Renders one access log entry in the format asked for. */
  readonly accessLogFormat: (entry: AccessEntry) => string;
  readonly scriptName: string;
  readonly multiprocess: boolean;
  readonly trustedProxies: TrustedProxies | null;
  readonly forwardedHeaders: ForwardedHeaders;
  readonly http1: Http1Shared;
  readonly environs: EnvironBuilder;
  /** Every open driver; a driver removes itself when its socket closes. */
  readonly drivers: Set<Driver>;
  /** True once the server's close() has begun. */
  closing: boolean;
  /** `https` on a TLS server. */
  readonly urlScheme: 'http' | 'https';
  /** Bodies whose `return()` is still running, for close() to wait on. */
  readonly returning: Set<Promise<void>>;
  /**
   * Called by a driver whose socket has closed, once its body was ended, with the body's
   * `return()` still running if any: the server forgets the driver and waits for that.
   */
  driverGone(driver: Driver, returned: Promise<void> | null): void;
}

/** ServeOptions configures {@link serve}. Every field is optional. */
export interface ServeOptions {
  /** Address to listen on; default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; default 8000; 0 picks a free port. */
  port?: number;
  /** A unix socket path to listen on instead of `host` and `port` (see src/listeners.ts). */
  path?: string;
  /** An inherited listening socket's file descriptor to accept on instead (systemd, `--fd`). */
  fd?: number;
  /**
   * Several addresses to listen on at once, in place of `host`/`port`, `path` and `fd` (`--bind`,
   * src/listen-all.ts): either all listen or serve() rejects with a ListenFailure naming the one
   * that could not, nothing left listening.
   */
  listen?: readonly ListenTarget[];
  /**
   * Serve HTTPS with this certificate and key (src/tls.ts): the same HTTP/1.1 driver on node:tls
   * sockets, `nsgi.url_scheme` `https`, each peer's failed handshakes logged once.
   */
  tls?: TlsOptions;
  /**
   * With `tls`, offer HTTP/2 by ALPN (src/http2.ts); default true. False offers only HTTP/1.1.
   * A browser opens at most six HTTP/1.1 connections to an origin; over h2 its requests share one.
   */
  http2?: boolean;
  /** Receives one combined-log-format line per response; no access log when absent. */
  accessLog?: (line: string) => void;
  /** The access log's format: `combined` (default) or `json`, one object per line. */
  accessLogFormat?: AccessLogFormat;
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
  /**
   * The stream broker of the process (topics, SSE topic streams, WebSocket topics): a `Broker`,
   * or `memory`, `cluster`, `redis://host:port/db`. It must be reachable before the server
   * listens, else `serve` rejects with its `BrokerError`; one opened from a string closes with
   * the server. Default: `NSGI_BROKER`, else cluster in a node:cluster worker, else memory.
   */
  broker?: Broker | string;
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

/**
 * How long close() waits, once every connection is gone, for the bodies it ended to finish their
 * `return()` (an async generator's `finally` that awaits a cleanup). A process that exits when
 * close() resolves would otherwise skip them; the bound keeps a cleanup that hangs from holding
 * the exit.
 */
const RETURN_WAIT_MS = 2000;

/** Server is a running nsgi server. */
export interface Server {
  /** The address it listens on; the socket's path for a unix socket. */
  readonly host: string;
  /** The port it listens on; 0 for a unix socket. */
  readonly port: number;
  /** `http://host:port` for clients; `http+unix:PATH` (the path URI-encoded) for a unix socket. */
  readonly url: string;
  /** The underlying node:net server (a node:tls one with the `tls` option); the first one with `listen`. */
  readonly netServer: net.Server;
  /** Every address it listens on, in the order given: one unless `listen` named several. */
  readonly addresses: readonly BoundAddress[];
  /** reloadTls swaps in new certificates for the connections that follow (after a renewal). */
  reloadTls(options: TlsOptions): void;
  /**
   * close stops accepting, closes idle connections at once, lets in-flight responses finish, and
   * resolves when every connection is closed. After `timeout` ms (default 30 s) the connections
   * still open are destroyed.
   */
  close(options?: { timeout?: number }): Promise<void>;
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
  const limits = {
    maxRequestLineSize: options.maxRequestLineSize ?? DEFAULT_LIMITS.maxRequestLineSize,
    maxHeaderCount: options.maxHeaderCount ?? DEFAULT_LIMITS.maxHeaderCount,
    maxHeaderSize: options.maxHeaderSize ?? DEFAULT_LIMITS.maxHeaderSize,
    maxBodySize: options.maxBodySize ?? DEFAULT_LIMITS.maxBodySize,
  };
  const keepAliveTimeout = options.keepAliveTimeout ?? SERVER_DEFAULTS.keepAliveTimeout;
  const context: ServerContext = {
    app,
    errors: options.errors ?? STDERR,
    accessLog: options.accessLog,
    accessLogFormat: options.accessLogFormat === 'json' ? accessLogJson : accessLogLine,
    scriptName,
    multiprocess: options.multiprocess ?? false,
    keepAliveTimeout,
    headersTimeout: options.headersTimeout ?? SERVER_DEFAULTS.headersTimeout,
    bodyTimeout: options.bodyTimeout ?? SERVER_DEFAULTS.bodyTimeout,
    minBodyRate: options.minBodyRate ?? SERVER_DEFAULTS.minBodyRate,
    minBodyRateGrace: options.minBodyRateGrace ?? SERVER_DEFAULTS.minBodyRateGrace,
    sendTimeout: options.sendTimeout ?? SERVER_DEFAULTS.sendTimeout,
    forwardedHeaders: options.forwardedHeaders ?? 'auto',
    trustedProxies: options.forwardedAllowIps === undefined || options.forwardedAllowIps.length === 0 ? null : trustedProxies(options.forwardedAllowIps),
    http1: new Http1Shared(limits, options.serverName ?? 'nsgi', keepAliveTimeout),
    environs: new EnvironBuilder(),
    drivers: new Set<Driver>(),
    closing: false,
    urlScheme: options.tls === undefined ? 'http' : 'https',
    returning: new Set(),
    driverGone: (driver, returned) => {
      context.drivers.delete(driver);
      if (returned !== null) {
        const returning = context.returning;
        returning.add(returned);
        void returned.finally(() => returning.delete(returned));
      }
      if (context.closing && context.drivers.size === 0) allGone?.();
    },
  };
  if (!FORWARDED_HEADERS.includes(context.forwardedHeaders)) {
    throw new TypeError(`forwardedHeaders must be one of ${FORWARDED_HEADERS.join(', ')}, got ${JSON.stringify(context.forwardedHeaders)}`);
  }
  let allGone: (() => void) | null = null;
  const maxConnections = options.maxConnections ?? SERVER_DEFAULTS.maxConnections;
  const drivers = context.drivers;
  const h2 = options.tls !== undefined && options.http2 !== false
    ? new Http2Front(app, {
        errors: context.errors,
        scriptName,
        multiprocess: context.multiprocess,
        maxHeaderCount: limits.maxHeaderCount,
        maxHeaderSize: limits.maxHeaderSize,
        maxBodySize: limits.maxBodySize,
        idleTimeout: keepAliveTimeout,
        deadlines: context,
        trustedProxies: context.trustedProxies,
        forwardedHeaders: context.forwardedHeaders,
        ...(context.accessLog !== undefined && { accessLog: (entry: AccessEntry) => context.accessLog!(context.accessLogFormat(entry)) }),
      })
    : null;
  const accept = (socket: net.Socket): void => {
    if (h2 !== null && (socket as tls.TLSSocket).alpnProtocol === 'h2') {
      // An h2 session is one connection, however many streams it carries.
      if (drivers.size + h2.sessions.size >= maxConnections) socket.destroy();
      else h2.accept(socket as tls.TLSSocket);
      return;
    }
    if (drivers.size + (h2?.sessions.size ?? 0) >= maxConnections) {
      socket.on('error', () => {});
      socket.end(OVERLOADED_RESPONSE);
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
      return;
    }
    const driver = new Driver(socket, context);
    drivers.add(driver);
    // Only a TLS handshake that completes after close() gets here: it is a fresh connection,
    // treated as those open at close() are.
    if (context.closing) driver.shutdown();
  };
  // A TLS socket in its handshake has no driver yet, but close()'s deadline must reach it: the
  // TCP sockets under TLS are kept until they close.
  const tcpSockets = new Set<net.Socket>();
  const socketOptions = { allowHalfOpen: true, noDelay: true };
  const makeNetServer = (): net.Server => {
    if (options.tls === undefined) return net.createServer(socketOptions, accept);
    const secure = tls.createServer({ ...socketOptions, ...options.tls, rejectUnauthorized: false, ALPNProtocols: h2 === null ? ['http/1.1'] : [...ALPN_PROTOCOLS] }, accept);
    secure.on('tlsClientError', handshakeLogger(context.errors));
    secure.on('connection', (raw: net.Socket) => {
      tcpSockets.add(raw);
      raw.once('close', () => tcpSockets.delete(raw));
    });
    return secure;
  };
  const targets: readonly ListenTarget[] = options.listen ?? [
    options.path !== undefined ? { path: options.path }
    : options.fd !== undefined ? { fd: options.fd }
    : { host: options.host ?? SERVER_DEFAULTS.host, port: options.port ?? SERVER_DEFAULTS.port },
  ];
  const releaseBroker = options.broker === undefined ? null : await serveBroker(options.broker);
  const netServers = await listenAll(makeNetServer, targets).catch(async (err: unknown) => {
    await releaseBroker?.();
    // One address given the old way fails with the listen error itself, as it always has.
    throw options.listen === undefined && err instanceof ListenFailure ? err.cause : err;
  });
  for (const s of netServers) s.on('error', (err) => context.errors.write(`nsgi: server error: ${err.message}`));
  const addresses = netServers.map((s) => boundAddress(s, context.urlScheme));
  const netServer = netServers[0]!;
  let closed: Promise<void> | null = null;
  return {
    ...addresses[0]!,
    netServer,
    addresses,
    reloadTls(tlsOptions) {
      if (!(netServer instanceof tls.Server)) throw new TypeError('reloadTls() needs a server started with the tls option');
      for (const s of netServers) (s as tls.Server).setSecureContext({ ...tlsOptions });
    },
    close(closeOptions = {}) {
      if (closed !== null) return closed;
      context.closing = true;
      const gone = new Promise<void>((resolve) => (allGone = resolve));
      closed = new Promise<void>((resolve) => {
        const deadline = setTimeout(() => {
          h2?.destroy();
          for (const raw of tcpSockets) raw.destroy();
          for (const driver of drivers) driver.destroy();
        }, closeOptions.timeout ?? SERVER_DEFAULTS.closeTimeout);
        // net.Server.close calls back once every socket is destroyed, which is before the
        // sockets' 'close' events have ended their bodies: wait for those too, then (bounded)
        // for the bodies' return() to finish.
        void Promise.all(netServers.map((s) => new Promise((done) => s.close(done)))).then(() => {
          clearTimeout(deadline);
          if (drivers.size === 0) allGone?.();
          void gone.then(() => waitBounded([...context.returning], RETURN_WAIT_MS))
            .then(() => releaseBroker?.())
            .then(() => resolve(), () => resolve());
        });
        for (const driver of drivers) driver.shutdown();
        h2?.close();
      });
      return closed;
    },
  };
}


/** waitBounded resolves once every promise has settled, or after `ms`, whichever is first. */
function waitBounded(promises: Promise<unknown>[], ms: number): Promise<void> {
  if (promises.length === 0) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([Promise.allSettled(promises).then(() => undefined), limit]).finally(() => clearTimeout(timer));
}
