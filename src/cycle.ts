/**
 * The response side of the contract, written once for every way of serving an app:
 * `startResponse` with exc_info, the lazy head, `write()` and `flushHead()`, the body pump with
 * backpressure, the Content-Length rules, and the iterator's `return()` exactly once. A
 * {@link ResponseCycle} says what to send; its {@link ResponseSink} (`sink.ts`) says where: the
 * reference server's connection, a node:http response, a fetch Response.
 *
 * The life of a response. The app is called with the environ and `startResponse`. Calling
 * `startResponse` records the status and headers; nothing is sent (SPEC §3.2). The cycle then
 * pulls the body one chunk at a time, and the first non-empty chunk takes the head with it. A sync
 * iterable is pulled in a plain loop with no await between chunks; when its first chunk comes,
 * one more is pulled, so that a body of one chunk can get a Content-Length instead of chunked
 * coding. After each chunk the sink says whether the receiver can take more; when it cannot, the
 * cycle waits for drain before it pulls again (SPEC §3.3), so a slow client suspends the generator
 * and memory stays bounded however large the body is. When the body ends, its end goes out.
 * Whatever else stops it (an error, the client leaving, a status without a body) finishes or cuts
 * the response, and either way the iterator's `return()` is called exactly once (SPEC §3.4). An
 * error before the head becomes an error response; after it, the response is cut so that the
 * client sees it truncated (SPEC §8).
 */
import type { Body, Chunk, Environ, ErrorStream, HeaderList, StartResponse, Upgraded, UpgradeOptions, Write } from '../protocol/nsgi.ts';
import { LazySignal, type SignalSource } from './environ.ts';
import { AppError, ClientGoneError, ProtocolError, logAppError } from './errors.ts';
import { describe } from './http1/fields.ts';
import { BodyRule, bodyRule, type Status } from './http1/writer.ts';
import { byteLength, callReturn, isThenable, type AnyIterator } from './iterators.ts';
import { pump } from './pump.ts';
import type { CheckedHeaders, ResponseSink } from './sink.ts';

const RESOLVED = Promise.resolve();

/** RequestLine is what a cycle needs to know of its request: HEAD or not, and a name for error messages. */
export interface RequestLine {
  readonly method: string;
  readonly target: string;
}

/**
 * ResponseCycle runs an app for one request and carries its response out through its sink. It is
 * also the source of the request's `nsgi.signal` (SPEC §2.4), made when the app first asks.
 */
export class ResponseCycle<H extends CheckedHeaders = CheckedHeaders> implements SignalSource {
  /** finished is true once the response is complete, cut, or abandoned. */
  finished = false;
  /** headSent is true once the head is committed: sent, or held back with the first chunk for a peek. */
  headSent = false;
  /** pulling is true while a sync iterator's `next()` runs (the pump sets it): the iterator cannot be closed then. */
  pulling = false;
  /** started is true once startResponse has been called. */
  started = false;
  /** upgraded is true once the app has taken the connection over (SPEC §6.2). */
  private upgraded = false;
  /** status is the one given to the latest startResponse. */
  private status: Status | null = null;
  /** headers are the ones given to the latest startResponse, as the sink checked them. */
  private headers: H | null = null;
  /** rule is what the response may carry, decided when the head is committed. */
  rule = BodyRule.Body;
  /** streamed is true when the body must not get a computed Content-Length (trailers were promised). */
  private streamed = false;
  /** sent counts the body bytes sent against the app's Content-Length, when it gave one. */
  private sent = 0;
  /** aborted is true once the response ended because the client left. */
  private aborted = false;
  /** held is the first chunk of a sync body, kept back while the next one is pulled. */
  held: Chunk | null = null;
  /** iterator is the body's iterator, once the pump has opened it. */
  iterator: AnyIterator | null = null;
  private iteratorClosed = false;
  /**
   * iteratorReturned settles once an async iterator's `return()` has finished (its `finally`
   * run); null when none was called or it finished at once. A server closing waits for it.
   */
  iteratorReturned: Promise<void> | null = null;
  /** The body has stopped and its iterator is being closed: a write() now (from `return()`, say) comes after the end. */
  private bodyStopped = false;
  /** The request's signal, made on first use (making one costs more than a small request). */
  private lazySignal: LazySignal | null = null;
  private readonly isHead: boolean;

  // The functions handed to the app are bound methods rather than arrow-function fields: they
  // are made for every request, and bound functions skip the name bookkeeping that the
  // TypeScript loader adds to every named function expression.

  /** startResponse is the function handed to the app (SPEC §4). */
  readonly startResponse: StartResponse = this.startResponseImpl.bind(this);

  /** write is the push-style channel returned by startResponse (SPEC §4.5). */
  readonly write: Write;

  constructor(
    readonly sink: ResponseSink<H>,
    private readonly request: RequestLine,
    private readonly errors: ErrorStream,
  ) {
    this.isHead = request.method === 'HEAD';
    const write = this.writeChunk.bind(this) as Write;
    write.flushHead = this.flushHead.bind(this);
    this.write = write;
  }

  /** signal is the request's `nsgi.signal`. */
  get signal(): AbortSignal {
    return (this.lazySignal ??= new LazySignal()).signal;
  }

  /** abortSignal fires `nsgi.signal` once, with `reason`. */
  abortSignal(reason: Error): void {
    (this.lazySignal ??= new LazySignal()).abortSignal(reason);
  }

  private startResponseImpl(status: string, headers: HeaderList, excInfo?: unknown): Write {
    if (this.upgraded) throw new AppError('NSGI_START_RESPONSE_AFTER_END', 'startResponse called after nsgi.upgrade() (SPEC §6.2, UPG-6)');
    if (excInfo !== undefined) {
      // SR-24: once the head is on its way it cannot be taken back; the app's own error unwinds.
      if (this.headSent) throw excInfo;
    } else if (this.started) {
      throw new AppError('NSGI_START_RESPONSE_TWICE', 'startResponse called a second time without excInfo (SPEC §4.4, SR-22)');
    }
    if (this.finished && !this.clientLeft()) {
      throw new AppError('NSGI_START_RESPONSE_AFTER_END', 'startResponse called after the response ended');
    }
    const parsed = this.sink.heads.status(status);
    // SR-23: a replacement forgets everything derived from the earlier call.
    this.headers = this.sink.checkHeaders(headers);
    this.streamed = false;
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
      return this.send(chunk) ? RESOLVED : this.sink.drain();
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

  /** earlyHints is `nsgi.early_hints` (SPEC §7.1): a 103 while no head has gone. */
  earlyHints(headers: HeaderList): void {
    if (this.headSent || this.finished) return;
    this.sink.earlyHints!(headers);
  }

  /** setTrailers is `nsgi.set_trailers` (SPEC §7.2); true when the trailers will be sent. */
  setTrailers(trailers: HeaderList): boolean {
    // EXT-9: nothing is recorded before startResponse (which would forget it anyway) or after the end.
    if (this.finished || !this.started) return false;
    const committed = this.headSent && this.held === null;
    const canStream = !committed && bodyRule(this.isHead, this.status!.code) === BodyRule.Body && this.headers!.contentLength < 0;
    const chunked = this.sink.trailers!(trailers, committed, canStream);
    if (chunked && !committed) this.streamed = true;
    return chunked;
  }

  /** upgrade is `nsgi.upgrade` (SPEC §6.2): the app takes the connection over. */
  upgrade(options?: UpgradeOptions): Upgraded {
    if (this.finished) {
      if (this.clientLeft()) throw new ClientGoneError();
      throw new AppError('NSGI_UPGRADE_TOO_LATE', 'nsgi.upgrade() called after the response ended (SPEC §6.2)');
    }
    if (this.headSent) throw new AppError('NSGI_UPGRADE_AFTER_HEAD', 'nsgi.upgrade() called after the response head was sent (SPEC §6.2)');
    const upgraded = this.sink.upgrade!(options?.headers);
    this.upgraded = true;
    this.closeIterator();
    this.complete();
    return upgraded;
  }

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
          (b) => pump(this, b),
          (err) => this.fail(err),
        );
        return;
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    pump(this, body);
  }

  /** canPeek tells whether a body of one chunk could still get a Content-Length: the app gave none, and no trailers are promised. */
  canPeek(): boolean {
    return !this.streamed && this.headers!.contentLength < 0;
  }

  /** hold keeps the first chunk of a sync body back while the next is pulled; the head counts as sent from here. */
  hold(chunk: Chunk): void {
    this.headSent = true;
    this.held = chunk;
  }

  /** sendWhole sends the held chunk as the whole body, with a Content-Length, and ends the response. */
  sendWhole(): void {
    const chunk = this.held!;
    this.held = null;
    this.commitHead(byteLength(chunk), false);
    this.sendFramed(chunk);
    this.finish();
  }

  /** drain resolves once the receiver can take more. */
  drain(): Promise<void> {
    return this.sink.drain();
  }

  /** releaseHeld sends the chunk held back for a peek, with the head; false means wait for drain. */
  releaseHeld(): boolean {
    const held = this.held;
    if (held === null) return true;
    this.held = null;
    this.commitHead(-1, false);
    return this.sendFramed(held);
  }

  /** send checks one chunk and sends it, the head first if it has not gone; false means wait for drain. */
  send(chunk: unknown): boolean {
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

  /**
   * sendFramed sends a chunk of a committed head: dropped for a response without a body (SR-21),
   * and never past the app's Content-Length (SR-17): the declared bytes go out, then the response
   * ends, the connection closes, and the caller fails with the error.
   */
  private sendFramed(chunk: Chunk): boolean {
    const rule = this.rule;
    if (rule !== BodyRule.Body) {
      if (rule !== BodyRule.Head) {
        this.errors.write(`nsgi: body chunk for a ${this.status!.code} response discarded (SPEC §4.3, SR-21)`);
      }
      return true;
    }
    const declared = this.headers!.contentLength;
    if (declared >= 0) {
      const n = byteLength(chunk);
      if (this.sent + n > declared) {
        const room = declared - this.sent;
        if (room > 0) this.sink.data((typeof chunk === 'string' ? Buffer.from(chunk) : chunk).subarray(0, room));
        this.sent = declared;
        const err = new AppError('NSGI_CONTENT_LENGTH_EXCEEDED', `the body is longer than its Content-Length ${declared} (SPEC §4.3, SR-17)`);
        this.errors.write(`nsgi: error in app for ${this.request.method} ${this.request.target}: ${err.message}`);
        this.closeIterator();
        this.sink.end(true);
        this.complete();
        throw err;
      }
      this.sent += n;
    }
    return this.sink.data(chunk);
  }

  /** commitHead sends the head and learns what the response may carry. */
  private commitHead(knownLength: number, flush: boolean): void {
    this.headSent = true;
    const status = this.status!;
    this.rule = bodyRule(this.isHead, status.code);
    this.sink.head(status, this.headers!, this.rule, knownLength, flush);
  }

  /** finish ends a body that ran to its end; a body short of its Content-Length fails (SR-18). */
  finish(): void {
    if (this.finished) return this.closeIterator();
    try {
      if (!this.started) {
        throw new AppError('NSGI_NO_START_RESPONSE', 'the body ended but startResponse was never called (SPEC §3.2, BODY-10)');
      }
      const declared = this.headers!.contentLength;
      if (!this.headSent) {
        // An empty body against a Content-Length above 0 is short before any byte of the response
        // has gone: a failure before the head (a 500).
        if (declared > 0 && bodyRule(this.isHead, this.status!.code) === BodyRule.Body) {
          throw new AppError('NSGI_CONTENT_LENGTH_SHORT', `the body ended after 0 of the ${declared} bytes its Content-Length declares (SPEC §4.3, SR-18)`);
        }
        // An empty body has length 0, unless trailers were promised: they need chunked coding.
        this.commitHead(this.streamed ? -1 : 0, false);
      } else if (declared >= 0 && this.rule === BodyRule.Body && this.sent < declared) {
        throw new AppError('NSGI_CONTENT_LENGTH_SHORT', `the body ended after ${this.sent} of the ${declared} bytes its Content-Length declares (SPEC §4.3, SR-18)`);
      }
      this.sink.end(this.headers!.close);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.closeIterator();
    this.complete();
  }

  /** fail handles anything the app threw (SPEC §8): an error response before the head, a cut after it. */
  fail(err: unknown): void {
    this.closeIterator();
    if (this.finished) return;
    if (this.clientLeft()) {
      this.complete();
      return;
    }
    // Not the app's fault, so not logged (ERR-3 is about the app's errors): a malformed body met
    // while reading the input (answered with its own status), and the client leaving, once the
    // request's signal has said so.
    const clientsDoing = err instanceof ProtocolError || (err instanceof ClientGoneError && this.lazySignal?.aborted === true);
    if (!clientsDoing) logAppError(this.errors, this.request, err);
    if (!this.headSent) {
      this.sink.failBeforeHead(err, this.isHead);
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
      this.sink.cut(err);
    }
    this.complete();
  }

  /** abandon ends the response because the client left: nothing more is sent, and the iterator is closed. */
  abandon(): void {
    this.aborted = true;
    if (!this.finished) {
      this.closeIterator();
      this.complete();
    }
  }

  /** clientLeft tells whether the client has gone, so that a late call is not blamed on the app. */
  private clientLeft(): boolean {
    return this.aborted || this.sink.gone;
  }

  /** complete marks the response finished (complete, cut, or abandoned) and tells the sink. */
  private complete(): void {
    this.finished = true;
    this.sink.done();
  }

  /**
   * closeIterator calls the iterator's `return()` exactly once (SPEC §3.4). Called from inside a
   * sync `next()` (the body failed the response through write(), say), it does nothing yet: the
   * pump calls it again once `next()` has returned.
   */
  closeIterator(): void {
    this.bodyStopped = true;
    const it = this.iterator;
    if (it === null || this.iteratorClosed || this.pulling) return;
    this.iteratorClosed = true;
    this.iteratorReturned = callReturn(it, this.errors);
  }
}
