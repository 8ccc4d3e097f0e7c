/**
 * The response side of the contract, written once for every way of serving an app:
 * `startResponse` with exc_info, the lazy head, `write()` and `flushHead()`, the body pump with
 * backpressure, and the iterator's `return()` exactly once. The reference server's Exchange
 * (`src/exchange.ts`) and the adapters' ResponseRunner (`src/adapters/runner.ts`) extend
 * {@link ResponseCycle} and say only where the bytes go.
 *
 * The life of a response. The app is called with the environ and `startResponse`. Calling
 * `startResponse` records the status and headers; nothing is sent (SPEC §3.2). The cycle then
 * pulls the body one chunk at a time, and the first non-empty chunk takes the head with it. A sync
 * iterable is pulled in a plain loop with no await between chunks; when its first chunk comes,
 * one more is pulled, so that a body of one chunk can get a Content-Length instead of chunked
 * coding. After each chunk the subclass says whether the receiver can take more; when it cannot,
 * the cycle waits for drain before it pulls again (SPEC §3.3), so a slow client suspends the
 * generator and memory stays bounded however large the body is. When the body ends, its end goes
 * out. Whatever else stops it (an error, the client leaving, a status without a body) finishes or
 * cuts the response, and either way the iterator's `return()` is called exactly once (SPEC §3.4).
 * An error before the head becomes an error response; after it, the response is cut so that the
 * client sees it truncated (SPEC §8).
 */
import type { Body, Chunk, Environ, ErrorStream, HeaderList, StartResponse, Write } from '../protocol/nsgi.ts';
import { LazySignal } from './environ.ts';
import { AppError, ClientGoneError } from './errors.ts';
import { describe, parseStatus, type Status } from './http1/writer.ts';

type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>;

const RESOLVED = Promise.resolve();

/**
 * ResponseCycle runs an app for one request and carries its response out through the hooks a
 * subclass implements. It is also the source of the request's `nsgi.signal` where its owner wants
 * one (see LazySignal).
 */
export abstract class ResponseCycle extends LazySignal {
  /** finished is true once the response is complete, cut, or abandoned. */
  finished = false;
  /** headSent is true once the head is committed: sent, or held back with the first chunk for a peek. */
  headSent = false;
  /** pulling is true while a sync iterator's `next()` runs; see {@link ResponseCycle.pullSync}. */
  private pulling = false;
  /** started is true once startResponse has been called. */
  protected started = false;
  /** status is the one given to the latest startResponse. */
  protected status: Status | null = null;
  /** noBody is true once a head that allows no body (HEAD, 204, 205, 304) is committed. */
  protected noBody = false;
  /** aborted is true once the response ended because the client left. */
  protected aborted = false;
  /** held is the first chunk of a sync body, kept back while the next one is pulled. */
  protected held: Chunk | null = null;
  private iterator: AnyIterator | null = null;
  private iteratorClosed = false;
  /**
   * iteratorReturned settles once an async iterator's `return()` has finished (its `finally`
   * run); null when none was called or it finished at once. A server closing waits for it.
   */
  iteratorReturned: Promise<void> | null = null;
  /**
   * True once the body has stopped (ended, failed, or abandoned) and its iterator is being
   * closed: a write() from here on, from the iterator's `return()` say, comes after the end.
   */
  private bodyStopped = false;

  // The functions handed to the app are bound methods rather than arrow-function fields: they
  // are made for every request, and bound functions skip the name bookkeeping that the
  // TypeScript loader adds to every named function expression.

  /** startResponse is the function handed to the app (SPEC §4). */
  readonly startResponse: StartResponse = this.startResponseImpl.bind(this);

  /** write is the push-style channel returned by startResponse (SPEC §4.5). */
  readonly write: Write;

  constructor(protected readonly errors: ErrorStream) {
    super();
    const write = this.writeChunk.bind(this) as Write;
    write.flushHead = this.flushHead.bind(this);
    this.write = write;
  }

  // ---- what a subclass supplies ---------------------------------------------------------------

  /** recordHead checks and keeps the headers of a startResponse call, forgetting any earlier ones; it throws on a bad list. */
  protected abstract recordHead(headers: HeaderList): void;
  /** canPeek tells whether a body of one chunk could still get a Content-Length: the app gave none, and nothing asks for chunked coding. */
  protected abstract canPeek(): boolean;
  /**
   * sendHead sends the head: `knownLength` is the whole body's length when it is known, else -1;
   * `flush` sends it at once rather than with what follows. It returns true when the response
   * carries no body (HEAD, 204, 205, 304).
   */
  protected abstract sendHead(knownLength: number, flush: boolean): boolean;
  /** sendData sends one non-empty chunk of a response that has a body; false means wait for drain. */
  protected abstract sendData(chunk: Chunk): boolean;
  /** waitForDrain resolves when the receiver can take more; it rejects with ClientGoneError once the client has gone. */
  protected abstract waitForDrain(): Promise<void>;
  /** sendEnd ends a body that ran to its end, the head first if it has not gone; it throws if the body broke a rule (SR-18). */
  protected abstract sendEnd(): void;
  /** failBeforeHead answers with an error response; no head has been sent (ERR-1). */
  protected abstract failBeforeHead(err: unknown): void;
  /** cut stops a response whose head has been sent, so that the client sees it truncated (ERR-4). */
  protected abstract cut(err: unknown): void;
  /** requestName names the request in error messages: `GET /path`. */
  protected abstract requestName(): string;

  /** shouldLog tells whether an error that fails the response is written to `nsgi.errors` (ERR-3). */
  protected shouldLog(_err: unknown): boolean {
    return true;
  }

  /** clientLeft tells whether the client has gone, so that a late call is not blamed on the app. */
  protected clientLeft(): boolean {
    return this.aborted;
  }

  /** complete marks the response finished: complete, cut, or abandoned. */
  protected complete(): void {
    this.finished = true;
  }

  // ---- the app's side ---------------------------------------------------------------------------

  private startResponseImpl(status: string, headers: HeaderList, excInfo?: unknown): Write {
    if (excInfo !== undefined) {
      // SR-24: once the head is on its way it cannot be taken back; the app's own error unwinds.
      if (this.headSent) throw excInfo;
    } else if (this.started) {
      throw new AppError('NSGI_START_RESPONSE_TWICE', 'startResponse called a second time without excInfo (SPEC §4.4, SR-22)');
    }
    if (this.finished && !this.clientLeft()) {
      throw new AppError('NSGI_START_RESPONSE_AFTER_END', 'startResponse called after the response ended');
    }
    const parsed = parseStatus(status);
    // SR-23: a replacement forgets everything derived from the earlier call.
    this.recordHead(headers);
    this.status = parsed;
    this.started = true;
    return this.write;
  }

  /** writeChunk is `write(chunk)`. */
  private writeChunk(chunk: Chunk): Promise<void> {
    if (this.finished || this.bodyStopped) {
      return Promise.reject(
        this.clientLeft()
          ? new ClientGoneError()
          : new AppError('NSGI_WRITE_AFTER_END', 'write() called after the response ended (SPEC §4.5, SR-28)'),
      );
    }
    // SR-29: a chunk of the wrong type is the caller's mistake, refused; the response goes on.
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`write() takes a string or a Uint8Array, got ${describe(chunk)} (SPEC §3.1, SR-29)`));
    }
    try {
      this.releaseHeld();
      return this.send(chunk) ? RESOLVED : this.waitForDrain();
    } catch (err) {
      this.fail(err);
      return Promise.reject(err);
    }
  }

  /** flushHead is `write.flushHead()` (SPEC §4.6). */
  private flushHead(): void {
    if (!this.started) throw new AppError('NSGI_FLUSH_BEFORE_START', 'flushHead() called before startResponse (SPEC §4.6)');
    if (this.headSent || this.finished) return;
    this.commitHead(-1, true);
  }

  // ---- running the body ---------------------------------------------------------------------------

  /**
   * run calls the app and pumps its body to the end; it never throws. A promised body goes
   * through Promise.resolve, as `await` would: a `then` that throws is a rejection, and one that
   * calls back twice is heard once (APP-3). The cycle keeps no reference to the environ: once the
   * app has it, it lives only as long as the app holds it.
   */
  run(app: (environ: Environ, startResponse: StartResponse) => Body | Promise<Body>, environ: Environ): void {
    let body: unknown;
    try {
      body = app(environ, this.startResponse);
      if (isThenable(body)) {
        Promise.resolve(body).then(
          (b) => this.pump(b),
          (err) => this.fail(err),
        );
        return;
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    this.pump(body);
  }

  private pump(body: unknown): void {
    if (body === null || typeof body !== 'object' || body instanceof Uint8Array) {
      const hint =
        typeof body === 'string' || body instanceof Uint8Array ? '; wrap it in an array: [body]'
        : typeof body === 'function' ? '; is the export a factory that makes the app? Export the app it returns'
        : '';
      this.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks${hint} (SPEC §3, BODY-1)`));
      return;
    }
    try {
      const asyncFn = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
      const syncFn = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
      // BODY-2: an object that is both is iterated asynchronously.
      if (typeof asyncFn === 'function') {
        const it = checkIterator(asyncFn.call(body), body) as AsyncIterator<unknown>;
        this.iterator = it;
        // A body that comes after the client left is opened only to be closed.
        if (this.finished) return this.closeIterator();
        void this.pumpAsync(it);
      } else if (typeof syncFn === 'function') {
        const it = checkIterator(syncFn.call(body), body) as Iterator<unknown>;
        this.iterator = it;
        if (this.finished) return this.closeIterator();
        void this.pumpSync(it);
      } else {
        this.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks (SPEC §3, BODY-1)`));
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
        const r = this.pullSync(it);
        if (this.finished) return this.closeIterator();
        if (r.done) return this.finish();
        let chunk = r.value;
        if (!this.headSent && this.started && isNonEmptyChunk(chunk) && this.canPeek()) {
          // The head leaves with the first chunk; peek once more so that a body of one chunk
          // gets a Content-Length (the MAY of SPEC §3.2). The head counts as sent from here.
          this.headSent = true;
          this.held = chunk;
          let peek: IteratorResult<unknown>;
          try {
            peek = this.pullSync(it);
          } catch (err) {
            this.releaseHeld();
            throw err;
          }
          if (this.finished) return this.closeIterator();
          if (this.held !== null && peek.done && this.canPeek()) {
            this.held = null;
            this.commitHead(byteLength(chunk), false);
            this.sendFramed(chunk);
            return this.finish();
          }
          if (!this.releaseHeld()) await this.waitForDrain();
          if (this.finished) return this.closeIterator();
          if (this.noBody || peek.done) return this.finish();
          chunk = peek.value;
        }
        if (!this.send(chunk)) await this.waitForDrain();
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
        if (!this.send(r.value)) await this.waitForDrain();
        if (this.finished) return this.closeIterator();
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /**
   * pullSync calls a sync iterator's `next()` with `pulling` set. While it runs, the iterator
   * cannot be closed (a running generator throws from `return()`), so closing waits for it.
   */
  private pullSync(it: Iterator<unknown>): IteratorResult<unknown> {
    this.pulling = true;
    try {
      return it.next();
    } finally {
      this.pulling = false;
    }
  }

  /** releaseHeld sends the chunk held back for a peek, with the head; false means wait for drain. */
  private releaseHeld(): boolean {
    const held = this.held;
    if (held === null) return true;
    this.held = null;
    this.commitHead(-1, false);
    return this.sendFramed(held);
  }

  /** send checks one chunk and sends it, the head first if it has not gone; false means wait for drain. */
  private send(chunk: unknown): boolean {
    if (typeof chunk === 'string') {
      if (chunk.length === 0) return true; // BODY-6
    } else if (chunk instanceof Uint8Array) {
      if (chunk.length === 0) return true;
    } else {
      throw new AppError('NSGI_BAD_CHUNK', `a body chunk must be a string or a Uint8Array, got ${describe(chunk)} (SPEC §3.1, BODY-4)`);
    }
    if (!this.headSent) {
      if (!this.started) {
        throw new AppError('NSGI_CHUNK_BEFORE_START', 'the body produced a chunk before startResponse was called (SPEC §3.2, BODY-9)');
      }
      this.commitHead(-1, false);
    }
    return this.sendFramed(chunk);
  }

  private sendFramed(chunk: Chunk): boolean {
    if (this.noBody) {
      const code = this.status!.code;
      if (code === 204 || code === 205 || code === 304) {
        this.errors.write(`nsgi: body chunk for a ${code} response discarded (SPEC §4.3, SR-21)`);
      }
      return true;
    }
    return this.sendData(chunk);
  }

  /** commitHead sends the head and learns whether the response may carry a body. */
  protected commitHead(knownLength: number, flush: boolean): void {
    this.headSent = true;
    this.noBody = this.sendHead(knownLength, flush);
  }

  /** finish ends a body that ran to its end. */
  private finish(): void {
    if (this.finished) return this.closeIterator();
    try {
      if (!this.started) {
        throw new AppError('NSGI_NO_START_RESPONSE', 'the body ended but startResponse was never called (SPEC §3.2, BODY-10)');
      }
      this.sendEnd();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.closeIterator();
    this.complete();
  }

  /** fail handles anything the app threw (SPEC §8): an error response before the head, a cut after it. */
  protected fail(err: unknown): void {
    this.closeIterator();
    if (this.finished) return;
    if (this.clientLeft()) {
      this.complete();
      return;
    }
    if (this.shouldLog(err)) {
      const what = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `non-Error value thrown: ${describe(err)}`;
      this.errors.write(`nsgi: error in app for ${this.requestName()}: ${what}`);
    }
    if (!this.headSent) {
      this.failBeforeHead(err);
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
      this.cut(err);
    }
    this.complete();
  }

  /** abandon ends the response because the client left: nothing more is sent, and the iterator is closed. */
  protected abandon(): void {
    this.aborted = true;
    if (!this.finished) {
      this.closeIterator();
      this.complete();
    }
  }

  /**
   * closeIterator calls the iterator's `return()` exactly once (SPEC §3.4). Called from inside a
   * sync `next()` (the body failed the response through write(), say), it does nothing yet: the
   * pump calls it again once `next()` has returned.
   */
  protected closeIterator(): void {
    this.bodyStopped = true;
    const it = this.iterator;
    if (it === null || this.iteratorClosed || this.pulling) return;
    this.iteratorClosed = true;
    this.iteratorReturned = callReturn(it, this.errors);
  }
}

/**
 * callReturn calls `it.return()` if it has one (BODY-16), writing whatever it throws or rejects
 * with to `errors` (BODY-18): nothing an iterator does while being closed escapes. It returns the
 * promise an async iterator's `return()` gave, settled once its `finally` has run, if any.
 */
function callReturn(it: object, errors: ErrorStream): Promise<void> | null {
  try {
    const close = (it as { return?: unknown }).return;
    if (typeof close !== 'function') return null;
    const r: unknown = close.call(it);
    if (isThenable(r)) return Promise.resolve(r).then(() => undefined, (err) => logCloseError(errors, err));
  } catch (err) {
    logCloseError(errors, err);
  }
  return null;
}

function logCloseError(errors: ErrorStream, err: unknown): void {
  errors.write(`nsgi: error while closing the body iterator: ${err instanceof Error ? (err.stack ?? err.message) : describe(err)}`);
}

/** checkIterator returns what a body's iterator method made, if it is an object (BODY-1), else throws. */
function checkIterator(it: unknown, body: unknown): object {
  if (it === null || (typeof it !== 'object' && typeof it !== 'function')) {
    throw new AppError('NSGI_BAD_BODY', `the iterator method of the body ${describe(body)} returned ${describe(it)}, not an iterator (SPEC §3, BODY-1)`);
  }
  return it;
}

/** isThenable tells whether `v` has a `then` method, as a promise does. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

function isNonEmptyChunk(chunk: unknown): chunk is Chunk {
  return (typeof chunk === 'string' || chunk instanceof Uint8Array) && chunk.length > 0;
}

function byteLength(chunk: Chunk): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
}
