/**
 * An nsgi app served by node:http2's compatibility API (`Http2ServerRequest` and
 * `Http2ServerResponse`): {@link toHttp2Listener} turns an app into a `'request'` listener of an
 * `http2.Http2Server` or `Http2SecureServer`. The reference server uses it for the connections
 * that chose `h2` by ALPN (`src/http2.ts`).
 *
 * What differs from HTTP/1.1 (`node-http.ts`, whose `nsgi.input` this shares):
 * - The request line is in pseudo-header fields (RFC 9113 §8.3.1): `:method` is REQUEST_METHOD,
 *   `:path` the request-target, `:authority` stands for Host (and is HTTP_HOST when the client
 *   sent no Host field), `:scheme` is not trusted over the connection's own scheme.
 *   SERVER_PROTOCOL is `HTTP/2` (ENV-8); the pseudo-headers stay out of `nsgi.headers`.
 * - A response carries no connection-specific field (RFC 9113 §8.2.2): Connection, Keep-Alive,
 *   Proxy-Connection, Transfer-Encoding and Upgrade are dropped, an app's `Connection: close`
 *   ends only its stream, and a 426 goes without its Upgrade field, which h2 cannot act on.
 *   HTTP/2 has no reason phrase (RFC 9113 §8.3.2): only the status code is sent.
 * - A cut response (ERR-4) resets its stream with INTERNAL_ERROR, so the client sees it fail.
 * - Disconnect: the stream closing before the response finished (the client's RST_STREAM, the
 *   session going away) aborts `nsgi.signal` (ENV-27) and closes the iterator.
 * - Backpressure is the stream's flow control: the cycle pulls the next chunk only while
 *   `res.write()` returns true, else after `'drain'` (BODY-12).
 * - No upgrades (SPEC §6 is HTTP/1.1's, UPG-1), early hints or trailers.
 */
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { App, Chunk } from '../../protocol/nsgi.ts';
import { ResponseCycle } from '../cycle.ts';
import type { DeadlineTimes } from '../deadlines.ts';
import { applyForwarded, type ForwardedHeaders, type TrustedProxies } from '../forwarded.ts';
import { StreamDeadlines, type StreamOwner } from '../http2-deadlines.ts';
import { ClientGoneError, ProtocolError } from '../errors.ts';
import { checkHeaderList } from '../http1/fields.ts';
import type { BodyRule, Status } from '../http1/writer.ts';
import type { AccessEntry } from '../access-log.ts';
import type { ResponseSink } from '../sink.ts';
import { NodeInput, ResponseWrites, connectionInfo, type NodeRequest, type NodeSettings } from './node-exchange.ts';
import { settingsOf, type NodeListenerOptions } from './node-http.ts';
import { plainHead, type HeaderFields } from './plain.ts';

/** Http2Listener is a node:http2 compatibility `'request'` listener. */
export type Http2Listener = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

/** Http2Exchanges is every h2 response under way of one server, so that its close() can reach them. */
export type Http2Exchanges = Set<Http2Sink>;

/** Http2ListenerOptions configures {@link toHttp2Listener}. */
export interface Http2ListenerOptions extends NodeListenerOptions {
  /** Receives one entry per finished, cut or abandoned response, for an access log. */
  accessLog?: (entry: AccessEntry) => void;
  /** Largest request body in bytes: a larger declared length gets 413, a longer body a reset stream. Default unlimited. */
  maxBodySize?: number;
  /**
   * The server's body and send deadlines, applied per stream (`http2-deadlines.ts`); without
   * them a stream waits on its client as long as the session lasts.
   */
  deadlines?: DeadlineTimes;
  /** The proxies whose Forwarded / X-Forwarded-* fields are believed, and which of those fields (SRV-26). */
  forwarded?: { readonly trusted: TrustedProxies; readonly headers: ForwardedHeaders };
}

/**
 * CONNECTION_FIELDS are the response fields RFC 9113 §8.2.2 forbids in HTTP/2: they describe a
 * connection, and HTTP/2 multiplexes many responses over one.
 */
const CONNECTION_FIELDS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/**
 * toHttp2Listener returns a node:http2 `'request'` listener that serves `app`. With `exchanges`,
 * each response under way is kept there (for a server's graceful close).
 *
 * ```ts
 * const server = http2.createSecureServer({ cert, key }, toHttp2Listener(app));
 * server.listen(8443);
 * ```
 */
export function toHttp2Listener(app: App, options: Http2ListenerOptions = {}, exchanges?: Http2Exchanges): Http2Listener {
  const settings = settingsOf('toHttp2Listener', app, options);
  const log = options.accessLog;
  const maxBodySize = options.maxBodySize ?? Infinity;
  const extra: StreamExtras = { deadlines: options.deadlines, forwarded: options.forwarded };
  return (req, res) => {
    if (maxBodySize !== Infinity && refuseTooLarge(req, res, maxBodySize)) return;
    serveHttp2Request(settings, req, res, exchanges, log, maxBodySize, extra);
  };
}

/**
 * refuseTooLarge answers 413 to a request whose declared length exceeds `maxBodySize`, before
 * the app runs, as the HTTP/1.1 server does, and resets the stream so the body is never sent
 * (RFC 9113 §8.1 lets a response complete before its request).
 */
function refuseTooLarge(req: Http2ServerRequest, res: Http2ServerResponse, maxBodySize: number): boolean {
  const declared = req.headers['content-length'];
  if (declared === undefined || !(Number(declared) > maxBodySize)) return false;
  const body = `Content-Length ${declared} exceeds the limit of ${maxBodySize} bytes\n`;
  res.writeHead(413, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body, () => res.stream.close(http2.constants.NGHTTP2_NO_ERROR));
  return true;
}

/** describeHttp2Request describes an h2 request from its raw header list, pseudo-headers taken apart (RFC 9113 §8.3.1). */
export function describeHttp2Request(req: Http2ServerRequest): NodeRequest {
  const raw = req.rawHeaders;
  const headers: Array<[string, string]> = [];
  let method = 'GET';
  let path: string | undefined;
  let authority: string | undefined;
  let host: string | undefined;
  let contentLength: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      continue;
    }
    headers.push([name, value]);
    // node:http2 gives field names lower-cased, as HTTP/2 requires (RFC 9113 §8.2.1).
    if (name === 'host' && host === undefined) host = value;
    else if (name === 'content-length') contentLength = value;
  }
  // RFC 9113 §8.3.1: a client SHOULD send :authority rather than Host; the app still finds the
  // host where HTTP/1.1 puts it.
  if (host === undefined && authority !== undefined) headers.unshift(['host', authority]);
  return {
    method,
    // CONNECT has no :path; its target is the authority (RFC 9113 §8.5).
    target: path ?? authority ?? '/',
    version: 'HTTP/2',
    headers,
    host: authority ?? host,
    contentLength,
    chunked: false,
    expectContinue: false,
  };
}

/** StreamExtras are the server's settings that apply per stream beyond the adapter's own. */
interface StreamExtras {
  readonly deadlines: DeadlineTimes | undefined;
  readonly forwarded: Http2ListenerOptions['forwarded'];
}

/** serveHttp2Request answers one h2 request. */
function serveHttp2Request(
  settings: NodeSettings,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  exchanges: Http2Exchanges | undefined,
  log: ((entry: AccessEntry) => void) | undefined,
  maxBodySize: number,
  extra: StreamExtras,
): void {
  const request = describeHttp2Request(req);
  const sink = new Http2Sink(res, settings, request, exchanges);
  const cycle = sink.cycle;
  // A stream whose HEADERS frame ended it has no body; any other may, with or without a length.
  const hasBody = !(req.stream as unknown as { endAfterHeaders?: boolean }).endAfterHeaders;
  if (extra.deadlines !== undefined) sink.timeWith(new StreamDeadlines(sink, res.stream, extra.deadlines), hasBody);
  // A body without a declared length is counted as it is read; past the limit its stream is
  // reset (CANCEL) and the app's read fails with the 413 the HTTP/1.1 server would answer.
  const limit = maxBodySize === Infinity ? undefined : {
    maxBytes: maxBodySize,
    exceeded: () => {
      res.stream.close(http2.constants.NGHTTP2_CANCEL);
      return new ProtocolError('NSGI_BODY_TOO_LARGE', 413, `request body exceeds the limit of ${maxBodySize} bytes`);
    },
  };
  const input = new NodeInput(req, sink, hasBody, limit);
  sink.input = input;
  const socket = req.stream.session?.socket as Socket | undefined;
  const info = socket === undefined ? null : connectionInfo(settings, socket);
  if (info === null) {
    // The session is already gone: nobody is left to answer.
    res.stream.close(http2.constants.NGHTTP2_CANCEL);
    return;
  }
  const environ = settings.environs.build(request, info, input, cycle);
  // The same rule as HTTP/1.1's: a proxy's word about the client only from a trusted peer.
  const forwarded = extra.forwarded;
  const trusted = forwarded !== undefined && forwarded.trusted.trusts(info.remoteAddress);
  if (trusted) applyForwarded(environ, forwarded.trusted, forwarded.headers);
  if (log !== undefined) sink.logTo(log, trusted ? String(environ.REMOTE_ADDR) : info.remoteAddress);
  cycle.run(settings.app, environ);
  if (!cycle.finished) {
    exchanges?.add(sink);
    res.on('close', () => sink.onClose());
  }
}

/** Http2Sink is one request's response on an `Http2ServerResponse`. Its cycle is the source of `nsgi.signal`. */
export class Http2Sink implements ResponseSink<HeaderFields>, StreamOwner {
  readonly cycle: ResponseCycle<HeaderFields>;
  readonly heads: NodeSettings['heads'];
  /** The request's `nsgi.input`, told when the response is complete (IN-8). */
  input: NodeInput | null = null;
  private readonly writes: ResponseWrites;
  private log: ((entry: AccessEntry) => void) | null = null;
  private remoteAddress = '';
  private start = 0;
  private status = 0;
  private bodyBytes = 0;
  private timers: StreamDeadlines | null = null;
  private timedBody = false;

  constructor(
    readonly res: Http2ServerResponse,
    settings: NodeSettings,
    private readonly request: NodeRequest,
    private readonly exchanges: Http2Exchanges | undefined,
  ) {
    this.writes = new ResponseWrites(res, res);
    this.heads = settings.heads;
    this.cycle = new ResponseCycle(this, request, settings.errors);
  }

  /** logTo has the response, once done, reported to `log` as an access log entry. */
  logTo(log: (entry: AccessEntry) => void, remoteAddress: string): void {
    this.log = log;
    this.remoteAddress = remoteAddress;
    this.start = Date.now();
  }

  /** timeWith has the stream's body (when `hasBody`) and send deadlines kept by `timers`. */
  timeWith(timers: StreamDeadlines, hasBody: boolean): void {
    this.timers = timers;
    this.timedBody = hasBody;
  }

  /** timedOut is a deadline passed: the app's read fails, the signal fires, the body is closed and the stream reset. */
  timedOut(reason: Error, code: number): void {
    this.input?.fail(reason);
    this.leave(reason);
    if (!this.res.stream.closed) this.res.stream.close(code);
  }

  get gone(): boolean {
    return this.writes.gone;
  }

  /** onClose is the stream closing: before the response finished, the client has left (ENV-27). */
  onClose(): void {
    this.exchanges?.delete(this);
    if (this.res.writableFinished && !this.res.stream.rstCode) return;
    this.leave(new ClientGoneError());
  }

  /** leave fails pending and later drains, fires the signal and stops the cycle. */
  leave(reason: Error): void {
    if (this.writes.gone) return;
    this.writes.fail(reason);
    this.cycle.abortSignal(reason);
    this.cycle.abandon();
  }

  /**
   * firstRead: node:http2 answers `Expect: 100-continue` itself when the server has no
   * `'checkContinue'` listener, so there is nothing to send here; the body deadlines start.
   */
  firstRead(): void {
    if (this.timedBody) this.timers?.readingBody();
  }

  checkHeaders(headers: unknown): HeaderFields {
    return checkHeaderList(headers);
  }

  head(status: Status, fields: HeaderFields, rule: BodyRule, knownLength: number, flush: boolean): void {
    const head = plainHead(status, fields, rule, knownLength);
    const out: Record<string, string | string[]> = {};
    for (const [field, value] of head.headers) {
      const name = field.toLowerCase();
      if (CONNECTION_FIELDS.has(name)) continue;
      const prev = out[name];
      // A repeated field stays separate field lines, in order (SR-8). The compatibility API takes
      // the head as an object, so lines of different names are grouped by name.
      if (prev === undefined) out[name] = value;
      else out[name] = Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    if (out['content-length'] === undefined && head.contentLength >= 0) out['content-length'] = String(head.contentLength);
    this.status = head.status;
    this.res.writeHead(head.status, out);
    // The compatibility API holds the head until the first write or end(), as node:http does;
    // flushHeaders() (present, though @types/node does not declare it) sends it now.
    if (flush) (this.res as unknown as { flushHeaders(): void }).flushHeaders();
  }

  data(chunk: Chunk): boolean {
    this.bodyBytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    const more = this.writes.data(chunk);
    if (!more) this.timers?.sendWaits();
    return more;
  }

  drain(): Promise<void> {
    return this.writes.drain();
  }

  end(_close: boolean): void {
    // An app's Connection: close ends only its own stream: the connection is shared (RFC 9113 §8.2.2).
    this.input?.responseEnded();
    this.res.end();
    // What the client has not taken yet is still timed, as the last response of an HTTP/1.1 connection is.
    this.timers?.sendWaits();
  }

  failBeforeHead(_err: unknown, isHead: boolean): void {
    this.input?.responseEnded();
    const body = 'Internal Server Error\n';
    this.status = 500;
    this.res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) });
    if (isHead) this.res.end();
    else this.res.end(body);
  }

  cut(): void {
    // ERR-4: a reset stream is how HTTP/2 tells the client its response is incomplete.
    this.res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }

  done(): void {
    this.exchanges?.delete(this);
    const request = this.request;
    this.log?.({ remoteAddress: this.remoteAddress, request, reachedApp: true, status: this.status, bodyBytes: this.bodyBytes, start: this.start });
  }
}
