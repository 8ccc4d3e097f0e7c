/**
 * HTTP/2 for the reference server's TLS listener. The listener stays one `tls.Server` whose ALPN
 * offers `h2` and `http/1.1` (RFC 7301); {@link Http2Front} takes the connections that chose `h2`
 * and hands them to a plain `http2.Http2Server` through its `'connection'` event, where node:http2
 * runs the app through the node adapter (`adapters/node-http2.ts`). Connections that chose
 * `http/1.1`, or made no choice, never reach it and keep nsgi's own HTTP/1.1 driver, with its
 * limits, deadlines, pipelining and upgrades. `http2.createSecureServer({ allowHTTP1 })` would
 * instead give HTTP/1.1 connections to node:http, which is why it is not used.
 */
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { App, ErrorStream } from '../protocol/nsgi.ts';
import type { AccessEntry } from './access-log.ts';
import { toHttp2Listener, type Http2Exchanges } from './adapters/node-http2.ts';
import type { DeadlineTimes } from './deadlines.ts';
import { ServerClosingError } from './errors.ts';
import type { ForwardedHeaders, TrustedProxies } from './forwarded.ts';
import { HeadWatch } from './http2-deadlines.ts';

/** ALPN_PROTOCOLS are the protocols a TLS listener offers, most preferred first (RFC 7301 §3.2). */
export const ALPN_PROTOCOLS = Object.freeze(['h2', 'http/1.1']);

/** Http2FrontOptions is what {@link Http2Front} needs of the server's settings. */
export interface Http2FrontOptions {
  readonly errors: ErrorStream;
  readonly scriptName: string;
  readonly multiprocess: boolean;
  /** Most header fields in a request, pseudo-headers aside (431 on HTTP/1.1, a stream error here). */
  readonly maxHeaderCount: number;
  /** Largest header block in bytes, advertised as SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2). */
  readonly maxHeaderSize: number;
  /** Largest request body in bytes (413 for a larger declared length). */
  readonly maxBodySize: number;
  /**
   * Milliseconds a session with no open stream is kept before it is sent GOAWAY: the keep-alive
   * timeout of HTTP/1.1, so an idle h2 connection holds a connection slot no longer than an idle
   * HTTP/1.1 one. A session with a stream open (a long poll, an event stream) is never timed.
   */
  readonly idleTimeout: number;
  /**
   * The server's deadlines: the head one ends a session whose client leaves a header block
   * unfinished, the body and send ones reset one stream (`http2-deadlines.ts`).
   */
  readonly deadlines: DeadlineTimes;
  /** The proxies trusted for Forwarded / X-Forwarded-*, null for none, and which fields they set. */
  readonly trustedProxies: TrustedProxies | null;
  readonly forwardedHeaders: ForwardedHeaders;
  /** Writes an access log line per response, when there is an access log. */
  readonly accessLog?: (entry: AccessEntry) => void;
}

/**
 * PSEUDO_HEADERS is the most pseudo-header fields a request carries (`:method`, `:scheme`,
 * `:authority`, `:path`, and `:protocol` for extended CONNECT): node:http2 counts them among the
 * header pairs, the HTTP/1.1 limit does not.
 */
const PSEUDO_HEADERS = 5;

/** Http2Front serves the h2 connections of one TLS listener. */
export class Http2Front {
  /** Every open h2 session. */
  readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly exchanges: Http2Exchanges = new Set();
  private readonly server: http2.Http2Server;
  private closing = false;

  constructor(app: App, options: Http2FrontOptions) {
    const listener = toHttp2Listener(app, {
      ...options,
      ...(options.trustedProxies !== null && { forwarded: { trusted: options.trustedProxies, headers: options.forwardedHeaders } }),
    }, this.exchanges);
    this.server = http2.createServer({
      maxHeaderListPairs: options.maxHeaderCount + PSEUDO_HEADERS,
      settings: { maxHeaderListSize: options.maxHeaderSize },
    }, listener);
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      const idle = new IdleSession(session, options.idleTimeout);
      session.on('stream', idle.onStream);
      const head = new HeadWatch(session, options.deadlines.headersTimeout, () => {
        options.errors.write(`nsgi: ending an h2 session from ${session.socket?.remoteAddress ?? 'a client'}: a request header block unfinished after ${options.deadlines.headersTimeout} ms`);
      });
      session.on('stream', head.onStream);
      session.once('close', () => {
        idle.stop();
        head.stop();
        this.sessions.delete(session);
      });
      // A session's protocol errors end that session; they are the client's, not the server's.
      session.on('error', () => {});
      if (this.closing) session.close();
    });
  }

  /** accept serves `socket`, whose TLS handshake chose `h2`. */
  accept(socket: TLSSocket): void {
    this.server.emit('connection', socket);
  }

  /**
   * close sends GOAWAY on every session (RFC 9113 §6.8): no new streams, the open ones may finish.
   * Their `nsgi.signal` fires with a ServerClosingError, as on HTTP/1.1, so long streams can end.
   */
  close(): void {
    this.closing = true;
    const reason = new ServerClosingError();
    for (const sink of this.exchanges) sink.cycle.abortSignal(reason);
    for (const session of this.sessions) session.close();
  }

  /** destroy ends every session at once: the graceful timeout has passed. */
  destroy(): void {
    for (const session of this.sessions) session.destroy();
  }
}

/**
 * IdleSession closes (GOAWAY, then the connection) a session that has had no open stream for the
 * idle timeout. Streams are counted rather than frames watched, so a stream that waits quietly
 * for its event keeps its session, as a long poll keeps its HTTP/1.1 connection.
 */
class IdleSession {
  private open = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly session: http2.ServerHttp2Session,
    private readonly timeout: number,
  ) {
    this.arm();
  }

  readonly onStream = (stream: http2.ServerHttp2Stream): void => {
    this.open++;
    this.stopTimer();
    stream.once('close', () => {
      if (--this.open === 0) this.arm();
    });
  };

  stop(): void {
    this.stopTimer();
  }

  private arm(): void {
    if (this.session.closed || this.session.destroyed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.open === 0) this.session.close();
    }, this.timeout);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
