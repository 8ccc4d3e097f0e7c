/**
 * One request's response: `startResponse`, `write()`, the lazy head, exc_info, and the body pump.
 *
 * The life of a response. The app is called with the environ and `startResponse`. Calling
 * `startResponse` only records the status and headers; nothing is sent. The server then pulls the
 * body: each non-empty chunk is framed into the connection's output buffer, the first one
 * preceded by the head. The buffer is flushed to the socket once the work at hand is done (the
 * end of the read being processed, or of the current tick), or at once when it holds
 * OUTPUT_HIGH_WATER_MARK bytes; when the socket says it is full, the pump waits
 * for `drain` before it asks the iterator for another chunk. So a slow client suspends the
 * generator, and memory stays bounded however large the body is. A sync iterable is pulled in a
 * plain loop with no await between chunks. When the body ends the terminator goes out; when it
 * stops for any other reason (error, client gone, no body allowed) the response is finished or
 * cut; either way the iterator's `return()` is called exactly once.
 */
import type { Body, Chunk, Environ, ErrorStream, HeaderList, StartResponse, Upgraded, UpgradeOptions, Write } from '../protocol/nsgi.ts';
import type { RequestInput } from './body.ts';
import { LazySignal } from './environ.ts';
import { AppError, ClientGoneError, ProtocolError } from './errors.ts';
import type { Http1Connection } from './http1/connection.ts';
import { Framing, bodyAllowedForStatus, describe, parseStatus, prepareHeaders, type PreparedHeaders, type Status } from './http1/writer.ts';

/** OUTPUT_HIGH_WATER_MARK is how many framed bytes are gathered before a write is forced. */
export const OUTPUT_HIGH_WATER_MARK = 64 * 1024;

/** ExchangeHost is what an exchange needs from the connection that runs it. */
export interface ExchangeHost {
  readonly http: Http1Connection;
  readonly errors: ErrorStream;
  /** True once the socket is closed. */
  readonly gone: boolean;
  /** Arranges for the output buffer to be written at the end of this tick. */
  scheduleFlush(): void;
  /** Writes the output buffer now; false when the socket is full and the caller should wait. */
  flushNow(): boolean;
  /** Resolves when the socket can take more; rejects with ClientGoneError when it has closed. */
  waitForDrain(): Promise<void>;
  /** Sends what is buffered, then closes without finishing the response. */
  cut(): void;
  /** Called once when the response is complete, cut, or abandoned. */
  exchangeDone(): void;
  /** Hands the connection to the app (SPEC §6); writes a 101 first when `headers` are given. */
  upgrade(headers: HeaderList | undefined): Upgraded;
}

const RESOLVED = Promise.resolve();

type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>;

/** Exchange runs the app for one request and carries its response to the connection. */
export class Exchange extends LazySignal {
  /** finished is true once the response is complete, cut, or abandoned. */
  finished = false;

  private started = false;
  /** True once the head is committed: sent, or held back with the first chunk. */
  private headSent = false;
  private status: Status | null = null;
  private headers: PreparedHeaders | null = null;
  private trailerBlock = '';
  private wantChunked = false;
  private noBody = false;
  private held: Chunk | null = null;
  private iterator: AnyIterator | null = null;
  private iteratorClosed = false;
  /** True while a sync iterator's `next()` runs (see pullSync). */
  pulling = false;
  /** True once the response ended because the client left (a close, a reset, or a FIN). */
  private aborted = false;

  constructor(
    private readonly host: ExchangeHost,
    readonly input: RequestInput,
  ) {
    super();
  }

  // The functions handed to the app are bound methods rather than arrow-function fields: they
  // are made for every request, and bound functions skip the name bookkeeping that the
  // TypeScript loader adds to every named function expression.

  /** startResponse is the function handed to the app (SPEC §4). */
  readonly startResponse: StartResponse = this.startResponseImpl.bind(this);

  /** write is the push-style channel returned by startResponse (SPEC §4.5). */
  readonly write: Write = makeWrite(this);

  private startResponseImpl(status: string, headers: HeaderList, excInfo?: unknown): Write {
    if (excInfo !== undefined) {
      // SPEC §4.4: once the head is on the wire it cannot be taken back.
      if (this.headSent) throw excInfo;
    } else if (this.started) {
      throw new AppError('NSGI_START_RESPONSE_TWICE', 'startResponse called a second time without excInfo (SPEC §4.4)');
    }
    if (this.finished && !this.clientLeft()) {
      throw new AppError('NSGI_START_RESPONSE_AFTER_END', 'startResponse called after the response ended');
    }
    const parsed = parseStatus(status);
    this.headers = prepareHeaders(headers);
    this.status = parsed;
    this.started = true;
    this.trailerBlock = '';
    this.wantChunked = false;
    return this.write;
  }

  /** writeChunk is `write(chunk)`. */
  writeChunk(chunk: Chunk): Promise<void> {
    if (this.finished) {
      return Promise.reject(
        this.clientLeft()
          ? new ClientGoneError()
          : new AppError('NSGI_WRITE_AFTER_END', 'write() called after the response ended (SPEC §4.5)'),
      );
    }
    // SR-29: a chunk of the wrong type is the caller's mistake, refused; the response goes on.
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`write() takes a string or a Uint8Array, got ${describe(chunk)} (SPEC §3.1, SR-29)`));
    }
    try {
      this.releaseHeld();
      return this.send(chunk) ? RESOLVED : this.host.waitForDrain();
    } catch (err) {
      this.fail(err);
      return Promise.reject(err);
    }
  }

  /** flushHead is `write.flushHead()` (SPEC §4.6). */
  flushHead(): void {
    if (!this.started) throw new AppError('NSGI_FLUSH_BEFORE_START', 'flushHead() called before startResponse');
    if (this.headSent || this.finished) return;
    this.emitHead(-1);
    this.host.flushNow();
  }

  /** earlyHints sends a 103 response (SPEC §7.1). */
  earlyHints(headers: HeaderList): void {
    if (this.headSent || this.finished) return;
    if (this.host.http.sendEarlyHints(prepareHeaders(headers).block)) this.host.flushNow();
  }

  /** setTrailers records trailers for a chunked body (SPEC §7.2). */
  setTrailers(trailers: HeaderList): boolean {
    // EXT-9: nothing is recorded before startResponse (which would forget it anyway) or after the end.
    if (this.finished || !this.started) return false;
    const block = prepareHeaders(trailers).block;
    const http = this.host.http;
    let chunked: boolean;
    if (this.headSent && this.held === null) {
      chunked = http.isChunked;
    } else {
      const req = http.request!;
      const code = this.status?.code ?? 200;
      chunked =
        req.version === 'HTTP/1.1' && req.method !== 'HEAD' && bodyAllowedForStatus(code) &&
        (this.headers === null || this.headers.contentLength < 0);
      if (chunked) this.wantChunked = true;
    }
    if (chunked) this.trailerBlock = block;
    return chunked;
  }

  /** upgrade is `environ['nsgi.upgrade']` (SPEC §6): the app takes the connection over. */
  upgrade(options?: UpgradeOptions): Upgraded {
    if (this.finished) {
      if (this.clientLeft()) throw new ClientGoneError();
      throw new AppError('NSGI_UPGRADE_TOO_LATE', 'nsgi.upgrade() called after the response ended (SPEC §6.2)');
    }
    if (this.headSent) throw new AppError('NSGI_UPGRADE_AFTER_HEAD', 'nsgi.upgrade() called after the response head was sent (SPEC §6.2)');
    const upgraded = this.host.upgrade(options?.headers);
    this.closeIterator();
    this.complete();
    return upgraded;
  }

  /**
   * run calls the app and pumps its body to the end. It never throws. The exchange keeps no
   * reference to the environ: once the app has it, it lives only as long as the app holds it (an
   * event stream that kept only `nsgi.signal` does not pin the rest).
   */
  run(app: (environ: Environ, startResponse: StartResponse) => Body | Promise<Body>, environ: Environ): void {
    runApp(this, app, environ, this.startResponse);
  }

  /** pump iterates the app's body (for runApp). */
  pump(body: unknown): void {
    if (body === null || typeof body !== 'object' || body instanceof Uint8Array) {
      const hint =
        typeof body === 'string' || body instanceof Uint8Array ? '; wrap it in an array: [body]'
        : typeof body === 'function' ? '; is the export a factory that makes the app? Export the app it returns'
        : '';
      this.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks${hint} (SPEC §3)`));
      return;
    }
    try {
      const syncFn = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
      const asyncFn = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
      // SPEC BODY-2: an object that is both is iterated asynchronously.
      if (typeof asyncFn === 'function') {
        const it = checkIterator(asyncFn.call(body), body) as AsyncIterator<unknown>;
        this.iterator = it;
        if (this.finished) return this.closeIterator();
        void this.pumpAsync(it);
      } else if (typeof syncFn === 'function') {
        const it = checkIterator(syncFn.call(body), body) as Iterator<unknown>;
        this.iterator = it;
        if (this.finished) return this.closeIterator();
        void this.pumpSync(it);
      } else {
        this.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks (SPEC §3)`));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private async pumpSync(it: Iterator<unknown>): Promise<void> {
    try {
      for (;;) {
        // A bodiless head already out (through write() or a peek) ends the pulling (SR-21).
        if (this.noBody && this.headSent) return this.finish();
        const r = pullSync(this, it);
        if (this.finished) return this.closeIterator();
        if (r.done) return this.finish();
        let chunk = r.value as Chunk;
        if (!this.headSent && !this.wantChunked && this.started && isNonEmptyChunk(chunk)) {
          // The head leaves with the first chunk; peek once more so that a body of one chunk
          // gets a Content-Length instead of chunked framing.
          this.headSent = true;
          this.held = chunk;
          let peek: IteratorResult<unknown>;
          try {
            peek = pullSync(this, it);
          } catch (err) {
            this.releaseHeld();
            throw err;
          }
          if (this.finished) return this.closeIterator();
          if (this.held !== null && peek.done && !this.wantChunked) {
            this.held = null;
            this.emitHead(byteLength(chunk));
            this.sendFramed(chunk);
            return this.finish();
          }
          if (!this.releaseHeld()) await this.host.waitForDrain();
          if (this.finished) return this.closeIterator();
          if (this.noBody) return this.finish();
          if (peek.done) return this.finish();
          chunk = peek.value as Chunk;
        }
        if (!this.send(chunk)) await this.host.waitForDrain();
        if (this.finished) return this.closeIterator();
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private async pumpAsync(it: AsyncIterator<unknown>): Promise<void> {
    try {
      for (;;) {
        if (this.noBody && this.headSent) return this.finish();
        const r = await it.next();
        if (this.finished) return this.closeIterator();
        if (r.done) return this.finish();
        if (!this.send(r.value)) await this.host.waitForDrain();
        if (this.finished) return this.closeIterator();
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** releaseHeld sends the chunk held back for a peek, with the head; false means wait for drain. */
  private releaseHeld(): boolean {
    const held = this.held;
    if (held === null) return true;
    this.held = null;
    this.emitHead(-1);
    return this.sendFramed(held);
  }

  /**
   * send frames one chunk, sending the head first if it has not gone; it returns false when the
   * socket is full and the caller must wait for drain before producing more.
   */
  private send(chunk: unknown): boolean {
    if (typeof chunk === 'string') {
      if (chunk.length === 0) return true;
    } else if (chunk instanceof Uint8Array) {
      if (chunk.length === 0) return true;
    } else {
      throw new AppError('NSGI_BAD_CHUNK', `a body chunk must be a string or a Uint8Array, got ${describe(chunk)} (SPEC §3.1)`);
    }
    if (!this.headSent) {
      if (!this.started) {
        throw new AppError('NSGI_CHUNK_BEFORE_START', 'the body produced a chunk before startResponse was called (SPEC §3.2)');
      }
      this.emitHead(-1);
    }
    return this.sendFramed(chunk);
  }

  private sendFramed(chunk: Chunk): boolean {
    if (this.noBody) {
      const code = this.status!.code;
      if (code === 204 || code === 205 || code === 304) {
        this.host.errors.write(`nsgi: body chunk for a ${code} response discarded (SPEC §4.3)`);
      }
      return true;
    }
    const http = this.host.http;
    http.sendData(chunk);
    if (http.out.size >= OUTPUT_HIGH_WATER_MARK) return this.host.flushNow();
    this.host.scheduleFlush();
    return true;
  }

  private emitHead(knownLength: number): void {
    this.headSent = true;
    const framing = this.host.http.sendHead(this.status!, this.headers!, knownLength);
    this.noBody = framing === Framing.None;
  }

  /** finish ends a body that ran to its end. */
  private finish(): void {
    if (this.finished) return this.closeIterator();
    try {
      if (!this.started) {
        throw new AppError('NSGI_NO_START_RESPONSE', 'the body ended but startResponse was never called (SPEC §3.2)');
      }
      // An empty body has length 0, unless trailers were promised: they need chunked coding.
      if (!this.headSent) this.emitHead(this.wantChunked ? -1 : 0);
      this.host.http.sendEnd(this.trailerBlock);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.closeIterator();
    this.complete();
    this.host.scheduleFlush();
  }

  /**
   * fail handles anything the app threw (SPEC §8): before the head, a 500 (or the status of a
   * ProtocolError from reading the input); after it, the connection is cut.
   */
  fail(err: unknown): void {
    this.closeIterator();
    if (this.finished) return;
    const host = this.host;
    if (host.gone) {
      this.complete();
      return;
    }
    const http = host.http;
    if (err instanceof ProtocolError) {
      http.mustClose();
    } else if (!(err instanceof ClientGoneError)) {
      const req = http.request!;
      const what = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `non-Error value thrown: ${describe(err)}`;
      host.errors.write(`nsgi: error in app for ${req.method} ${req.target}: ${what}`);
    }
    if (!this.headSent) {
      if (err instanceof ProtocolError) http.sendErrorResponse(err.status, err.message, true);
      else http.sendErrorResponse(500, '', false);
      this.complete();
      host.scheduleFlush();
    } else {
      // A chunk held back for a peek goes out first: the client sees the head and the body so
      // far, then the cut.
      if (this.held !== null) {
        try {
          this.releaseHeld();
        } catch {
          // The response is being cut anyway; the held chunk's own fault changes nothing.
        }
      }
      host.cut();
      this.complete();
    }
  }

  /** abort is the client going away: the signal fires, reads fail, the iterator is closed. */
  abort(reason: Error): void {
    this.aborted = true;
    this.abortSignal(reason);
    this.input.fail(reason);
    if (!this.finished) {
      this.closeIterator();
      this.complete();
    }
  }

  /** clientClosed is a FIN from the client: the signal fires, but the response may still finish. */
  clientClosed(reason: Error): void {
    this.abortSignal(reason);
    if (!this.input.complete) this.input.fail(reason);
  }

  /**
   * clientLeft tells a call after the end that it came too late because the client left, not
   * because the app broke the contract: the socket may linger after a FIN while output drains.
   */
  private clientLeft(): boolean {
    return this.aborted || this.host.gone;
  }

  private complete(): void {
    this.finished = true;
    this.host.exchangeDone();
  }

  /**
   * closeIterator calls the iterator's `return()` exactly once (SPEC §3.4). Called from inside a
   * sync `next()` (the body failed the response through write(), say), it does nothing yet: the
   * pump calls it again once `next()` has returned.
   */
  private closeIterator(): void {
    const it = this.iterator;
    if (it === null || this.iteratorClosed || this.pulling) return;
    this.iteratorClosed = true;
    callReturn(it, this.host.errors);
  }
}

function makeWrite(exchange: Exchange): Write {
  const write = exchange.writeChunk.bind(exchange) as Write;
  write.flushHead = exchange.flushHead.bind(exchange);
  return write;
}

/** BodyOwner is what {@link runApp} drives: the exchange, or an adapter's runner. */
export interface BodyOwner {
  pump(body: unknown): void;
  fail(err: unknown): void;
}

/**
 * runApp calls the app and hands its body to `owner.pump`, or what it threw to `owner.fail`. A
 * promised body goes through Promise.resolve, as `await` would: a `then` that throws is a
 * rejection, and one that calls back twice is heard once (APP-3).
 */
export function runApp(
  owner: BodyOwner,
  app: (environ: Environ, startResponse: StartResponse) => Body | Promise<Body>,
  environ: Environ,
  startResponse: StartResponse,
): void {
  let body: unknown;
  try {
    body = app(environ, startResponse);
    if (isThenable(body)) {
      Promise.resolve(body).then(
        (b) => owner.pump(b),
        (err) => owner.fail(err),
      );
      return;
    }
  } catch (err) {
    owner.fail(err);
    return;
  }
  owner.pump(body);
}

/**
 * pullSync calls a sync iterator's `next()` with `owner.pulling` set. While it runs, the iterator
 * cannot be closed (a running generator throws from `return()`), so closing waits for it.
 */
export function pullSync(owner: { pulling: boolean }, it: Iterator<unknown>): IteratorResult<unknown> {
  owner.pulling = true;
  try {
    return it.next();
  } finally {
    owner.pulling = false;
  }
}

/**
 * callReturn calls `it.return()` if it has one (BODY-16), writing whatever it throws or rejects
 * with to `errors` (BODY-18): nothing an iterator does while being closed escapes.
 */
export function callReturn(it: object, errors: ErrorStream): void {
  try {
    const close = (it as { return?: unknown }).return;
    if (typeof close !== 'function') return;
    const r: unknown = close.call(it);
    if (isThenable(r)) r.then(undefined, (err) => logCloseError(errors, err));
  } catch (err) {
    logCloseError(errors, err);
  }
}

function logCloseError(errors: ErrorStream, err: unknown): void {
  errors.write(`nsgi: error while closing the body iterator: ${err instanceof Error ? (err.stack ?? err.message) : describe(err)}`);
}

/** checkIterator returns what a body's iterator method made, if it is an object (BODY-1), else throws. */
export function checkIterator(it: unknown, body: unknown): object {
  if (it === null || (typeof it !== 'object' && typeof it !== 'function')) {
    throw new AppError('NSGI_BAD_BODY', `the iterator method of the body ${describe(body)} returned ${describe(it)}, not an iterator (SPEC §3, BODY-1)`);
  }
  return it;
}

/** isThenable tells whether `v` has a `then` method, as a promise does. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

function isNonEmptyChunk(chunk: unknown): boolean {
  return (typeof chunk === 'string' || chunk instanceof Uint8Array) && chunk.length > 0;
}

function byteLength(chunk: Chunk): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
}
