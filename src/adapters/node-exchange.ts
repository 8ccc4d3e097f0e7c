/**
 * One request served through node:http: what the environ is made from, the {@link NodeSink} that
 * carries the response to a `ServerResponse`, and {@link NodeInput}, `nsgi.input` over the
 * request. Used by the request listener (`node-http.ts`) and by the upgrade listener
 * (`node-upgrade.ts`).
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { App, Chunk, ErrorStream, HeaderList, Upgraded } from '../../protocol/nsgi.ts';
import { ResponseCycle } from '../cycle.ts';
import { DrainWaiter } from '../drain.ts';
import type { ConnectionInfo, RequestDescription } from '../environ.ts';
import { ClientGoneError } from '../errors.ts';
import { checkHeaderList } from '../http1/fields.ts';
import { connectionOptions, type BodyRule, type Status } from '../http1/writer.ts';
import { InputBase, inputAfterResponse } from '../input.ts';
import type { ResponseSink } from '../sink.ts';
import { AdapterShared, plainHead, toBytes, type HeaderFields } from './plain.ts';

/** NodeSettings is what every request of one listener shares. */
export interface NodeSettings extends AdapterShared {
  readonly app: App;
  readonly errors: ErrorStream;
  readonly scriptName: string;
  readonly multiprocess: boolean;
}

/** NodeRequest describes a node:http request: what the environ is made from, and its framing. */
export interface NodeRequest extends RequestDescription {
  /** The Content-Length field's value as received, or undefined. */
  readonly contentLength: string | undefined;
  /** True when the body is framed by chunked coding. */
  readonly chunked: boolean;
  /** True when the client sent `Expect: 100-continue` over HTTP/1.1. */
  readonly expectContinue: boolean;
}

/** describeRequest describes a node:http request from its raw header list (never node's lazily built `req.headers`). */
export function describeRequest(req: IncomingMessage): NodeRequest {
  const raw = req.rawHeaders;
  const headers: Array<[string, string]> = [];
  let host: string | undefined;
  let contentLength: string | undefined;
  let chunked = false;
  let expectContinue = false;
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
      case 14:
        if (name.toLowerCase() === 'content-length') contentLength = value;
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
    expectContinue: expectContinue && version === 'HTTP/1.1',
  };
}

/** hasBody tells whether a request's head announces a body. */
export function hasBody(request: NodeRequest): boolean {
  return request.chunked || (request.contentLength !== undefined && Number(request.contentLength) > 0);
}

/** CONNECTION_INFO keeps, on each socket, what the environ needs to know of it and of the listener. */
const CONNECTION_INFO = Symbol('nsgi.connectionInfo');

type InfoSocket = Socket & { [CONNECTION_INFO]?: ConnectionInfo & { readonly settings: NodeSettings } };

/**
 * connectionInfo is what the environ needs to know of the connection and the listener. It is
 * made once per socket and listener: the requests of a keep-alive connection share it.
 */
export function connectionInfo(settings: NodeSettings, socket: InfoSocket): ConnectionInfo {
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

const RESOLVED = Promise.resolve();

/**
 * ResponseWrites is the backpressure of a node writable response (node:http's or node:http2's):
 * `data()` writes a chunk and says whether more may follow now, `drain()` waits for the writable's
 * `'drain'` (BODY-12), and once `fail()` says the client has left, writes are dropped and waits
 * reject.
 */
export class ResponseWrites {
  private closedBy: Error | null = null;
  private full = false;
  private listening = false;
  private readonly waiter = new DrainWaiter();

  constructor(
    private readonly writable: { write(chunk: Uint8Array): boolean },
    /** What emits `'drain'` once `writable` can take more: itself, or the socket under it. */
    private readonly drainSource: EventEmitter,
  ) {}

  /** gone is true once {@link fail} was called. */
  get gone(): boolean {
    return this.closedBy !== null;
  }

  /** data writes `chunk` and returns false when the writable is full. */
  data(chunk: Chunk): boolean {
    if (this.closedBy !== null || this.writable.write(toBytes(chunk))) return true;
    this.full = true;
    return false;
  }

  /** drain resolves once the writable can take more, and rejects once the client has left. */
  drain(): Promise<void> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (!this.full) return RESOLVED;
    if (!this.listening) {
      this.listening = true;
      this.drainSource.on('drain', this.onDrain.bind(this));
    }
    return this.waiter.wait();
  }

  /** fail fails pending and later drains with `reason`: the client has left. */
  fail(reason: Error): void {
    this.closedBy = reason;
    this.waiter.fail(reason);
  }

  private onDrain(): void {
    this.full = false;
    this.waiter.drained();
  }
}

/**
 * NodeSink is one request's response on a node:http ServerResponse. Its cycle is the source of
 * the request's `nsgi.signal`.
 */
export class NodeSink implements ResponseSink<HeaderFields> {
  readonly cycle: ResponseCycle<HeaderFields>;
  readonly heads: AdapterShared['heads'];
  /** The request's `nsgi.input`, told when the response is complete (IN-8). */
  input: NodeInput | null = null;
  /** What `nsgi.upgrade` hands over with, for a request of the upgrade listener. */
  upgrader: ((headers: HeaderList | undefined) => Upgraded) | undefined;
  private readonly writes: ResponseWrites;

  constructor(
    readonly res: ServerResponse,
    /** What emits `'drain'` once `res` can take more: `res` itself, or the socket of an upgrade request. */
    drainSource: EventEmitter,
    settings: NodeSettings,
    private readonly request: NodeRequest,
  ) {
    this.writes = new ResponseWrites(res, drainSource);
    this.heads = settings.heads;
    this.cycle = new ResponseCycle(this, request, settings.errors);
  }

  get gone(): boolean {
    return this.writes.gone;
  }

  /**
   * onClose is `res` or `req` closing. Before the response finished and with the socket gone, the
   * client has left (ENV-27); `req` also closes, harmlessly, once its body has been read.
   */
  onClose(): void {
    if (this.res.writableFinished) return;
    const socket = this.res.req.socket;
    if (this.res.closed || socket === null || socket.destroyed) this.leave(new ClientGoneError());
  }

  /** leave fails pending and later drains, fires the signal and stops the cycle: the client has left. */
  leave(reason: Error): void {
    this.writes.fail(reason);
    this.cycle.abortSignal(reason);
    this.cycle.abandon();
  }

  /** firstRead sends one 100 Continue at the app's first read, unless one went out (IN-6, IN-7). */
  firstRead(): void {
    const res = this.res;
    // node:http answers `Expect: 100-continue` itself when the server has no 'checkContinue'
    // listener, and says so only in this field; a second 100 would be a protocol error.
    const sent100 = (res as unknown as { _sent100?: boolean })._sent100 === true;
    if (this.request.expectContinue && !sent100 && !this.cycle.headSent && !res.headersSent) res.writeContinue();
  }

  checkHeaders(headers: unknown): HeaderFields {
    return checkHeaderList(headers);
  }

  head(status: Status, fields: HeaderFields, rule: BodyRule, knownLength: number, flush: boolean): void {
    const head = plainHead(status, fields, rule, knownLength);
    const flat: string[] = [];
    let hasLength = false;
    for (const [name, value] of head.headers) {
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      // node:http throws on a Trailer field in a response it does not chunk (a Content-Length, HEAD,
      // 204, HTTP/1.0); no trailers follow here anyway, since set_trailers is not offered (EXT-2).
      else if (name.length === 7 && name.toLowerCase() === 'trailer') continue;
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

  data(chunk: Chunk): boolean {
    return this.writes.data(chunk);
  }

  drain(): Promise<void> {
    return this.writes.drain();
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

  failBeforeHead(_err: unknown, isHead: boolean): void {
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

  done(): void {
    // Nothing to do: node:http's response, ended or cut, is complete.
  }

  upgrade(headers: HeaderList | undefined): Upgraded {
    return this.upgrader!(headers);
  }
}

/**
 * NodeInput is `nsgi.input` over an IncomingMessage (or an `Http2ServerRequest`): an async
 * iterable of its body, read through the stream's own iterator so the socket (or the h2 stream's
 * flow-control window) pauses while the app does not read (IN-4).
 */
export class NodeInput extends InputBase {
  private inner: AsyncIterator<Buffer> | null = null;
  /** True once the response ended with the body not read to its end: the rest was let go. */
  private discarded = false;

  constructor(
    private readonly req: Readable,
    /** Told of the app's first read, to send `100 Continue` then. */
    private readonly sink: { firstRead(): void },
    /** False when the head says there is no body: nothing can be left unread. */
    private readonly hasBody: boolean,
    /** The most body bytes allowed, for a body whose length was not declared up front; the read beyond fails with this error. */
    private readonly limit?: { readonly maxBytes: number; exceeded(): Error },
  ) {
    super();
  }

  /** Body bytes read so far, counted only under a limit. */
  private bytesRead = 0;
  /** Why the server stopped the body (a deadline), which every read from then on fails with. */
  private failure: Error | null = null;

  /** fail makes the pending and every later read reject with `reason`. */
  fail(reason: Error): void {
    this.failure ??= reason;
  }

  protected iterate(): AsyncIterator<Uint8Array> {
    return {
      next: async () => {
        if (this.discarded) throw inputAfterResponse();
        if (this.failure !== null) throw this.failure;
        try {
          const r = await this.open().next();
          if (this.failure !== null) throw this.failure;
          if (r.done && this.discarded) throw inputAfterResponse();
          if (this.limit !== undefined && !r.done && (this.bytesRead += r.value.length) > this.limit.maxBytes) throw this.limit.exceeded();
          return r;
        } catch (err) {
          // IN-9: a client that left mid-body fails the read with an Error.
          throw this.failure ?? (err instanceof Error ? err : new ClientGoneError());
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
      this.sink.firstRead();
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
}
