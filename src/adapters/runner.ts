/**
 * The response side of the contract for servers that are not the reference one: `startResponse`
 * with exc_info, the lazy head, `write()` and `flushHead()`, the body pump with backpressure, the
 * Content-Length check, and the iterator's `return()` exactly once. The adapters (`toNodeListener`,
 * `toFetch`) and `testing.ts` each supply a {@link ResponseSink} that knows where the bytes go; the
 * rules live here once, so every way of serving an app keeps them alike.
 *
 * The life of a response, as in `src/exchange.ts`: the app is called; `startResponse` records the
 * status and headers and sends nothing (SPEC §3.2). The runner pulls the body one chunk at a time;
 * the first non-empty chunk takes the head with it. After each chunk it asks the sink whether it can
 * take more, and when the sink says no it waits for the sink's drain before pulling again (SPEC
 * §3.3). Whatever stops the body (its end, an error, the client leaving, HEAD, 204) closes the
 * iterator once (SPEC §3.4). An error before the head becomes a 500; after it, the sink cuts the
 * response so the client sees it truncated (SPEC §8).
 */
import type { Body, Chunk, Environ, ErrorStream, ExcInfo, HeaderList, StartResponse, Write } from '../../protocol/nsgi.ts';
import { AppError, ClientGoneError } from '../errors.ts';
import { callReturn, checkIterator, pullSync, runApp } from '../exchange.ts';
import { checkHeaderList, describe, parseStatus } from '../http1/writer.ts';

/** ResponseHead is what a sink needs to send the head. */
export interface ResponseHead {
  /** The status code, 200 to 599. */
  readonly status: number;
  /** The reason phrase, possibly empty. */
  readonly reason: string;
  /** The app's fields in order, hop-by-hop fields removed (SR-9), values as strings. */
  readonly headers: HeaderList;
  /** The length of the whole body when the runner knows it (the app's Content-Length or computed), else -1. */
  readonly contentLength: number;
  /** True when the response carries no body: HEAD, 204, 205, 304 (SR-20). */
  readonly noBody: boolean;
  /** True when the app asked for `Connection: close` (SR-10). */
  readonly close: boolean;
}

/** ResponseSink is where a runner's response goes: a node:http response, a fetch Response, memory. */
export interface ResponseSink {
  /**
   * head hands over the status and headers. It is called at most once, before any `data`. With
   * `flush` (the app called `flushHead()`) the head must leave at once; otherwise it may wait for
   * the first `data` or `end` so that both leave together.
   */
  head(head: ResponseHead, flush: boolean): void;
  /** data sends body bytes and returns false when the receiver is full and the runner must wait. */
  data(chunk: Uint8Array): boolean;
  /** drain resolves once the receiver can take more; it rejects once the client has gone. */
  drain(): Promise<void>;
  /** end completes the body; with `close`, the connection (if any) is closed afterwards (SR-17). */
  end(close: boolean): void;
  /** failBeforeHead answers the request with a 500 (SPEC §8, ERR-1); no head has been sent. */
  failBeforeHead(isHead: boolean): void;
  /** cut stops a response whose head has been sent, so the client sees it truncated (ERR-4). */
  cut(error: unknown): void;
}

type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>;

const RESOLVED = Promise.resolve();

/** ResponseRunner runs an app for one request and carries its response to a {@link ResponseSink}. */
export class ResponseRunner {
  /** finished is true once the response is complete, cut, or abandoned. */
  finished = false;
  /** headSent is true once the head has been handed to the sink (or held back with the first chunk). */
  headSent = false;

  private started = false;
  private head: Omit<ResponseHead, 'noBody'> | null = null;
  private noBody = false;
  private sent = 0;
  private gone = false;
  private held: Chunk | null = null;
  private iterator: AnyIterator | null = null;
  private iteratorClosed = false;
  /** True while a sync iterator's `next()` runs (see pullSync). */
  pulling = false;

  /** startResponse is the function handed to the app (SPEC §4). */
  readonly startResponse: StartResponse;
  /** write is what startResponse returns (SPEC §4.5). */
  readonly write: Write;

  constructor(
    private readonly sink: ResponseSink,
    private readonly errors: ErrorStream,
    /** True for a HEAD request, as received (ENV-3: the environ is not read again). */
    private readonly isHead: boolean,
    /** How the request is named in error messages: `GET /path`. */
    private readonly what: string,
  ) {
    // Bound methods, not arrow functions: the TypeScript loader gives every named function
    // expression a `name` of its own, a cost paid on every request.
    this.startResponse = this.start.bind(this);
    const write = this.writeChunk.bind(this) as Write;
    write.flushHead = this.flushHead.bind(this);
    this.write = write;
  }

  /** run calls the app and pumps its body to the end; it never throws. */
  run(app: (environ: Environ, startResponse: StartResponse) => Body | Promise<Body>, environ: Environ): void {
    runApp(this, app, environ, this.startResponse);
  }

  /** abort is the client going away: pending waits fail, the iterator is closed, nothing more is sent. */
  abort(): void {
    this.gone = true;
    if (!this.finished) {
      this.closeIterator();
      this.finished = true;
    }
  }

  private start(status: string, headers: HeaderList, excInfo?: ExcInfo): Write {
    if (excInfo !== undefined) {
      // SR-24: the head is on its way; the app's own error unwinds it back to us.
      if (this.headSent) throw excInfo;
    } else if (this.started) {
      throw new AppError('NSGI_START_RESPONSE_TWICE', 'startResponse called a second time without excInfo (SPEC §4.4, SR-22)');
    }
    const code = parseStatus(status).code;
    const checked = checkHeaderList(headers);
    // SR-23: a replacement forgets everything derived from the earlier call.
    // Every field spelled out, no spread: one object shape for every head keeps the code that
    // reads them fast.
    this.head = { status: code, reason: status.slice(4), headers: checked.headers, contentLength: checked.contentLength, close: checked.close };
    this.started = true;
    return this.write;
  }

  private writeChunk(chunk: Chunk): Promise<void> {
    if (this.finished) {
      return Promise.reject(this.gone ? new ClientGoneError() : new AppError('NSGI_WRITE_AFTER_END', 'write() called after the response ended (SPEC §4.5, SR-28)'));
    }
    if (!isChunk(chunk)) {
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

  private flushHead(): void {
    if (!this.started) throw new AppError('NSGI_FLUSH_BEFORE_START', 'flushHead() called before startResponse (SPEC §4.6)');
    if (this.headSent || this.finished) return;
    this.emitHead(-1, true);
  }

  /** pump iterates the app's body (for runApp). */
  pump(body: unknown): void {
    if (this.finished) {
      closeLater(body, this.errors);
      return;
    }
    if (body === null || typeof body !== 'object' || body instanceof Uint8Array) {
      const hint = typeof body === 'string' || body instanceof Uint8Array ? '; wrap it in an array: [body]' : '';
      this.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks${hint} (SPEC §3, BODY-1, BODY-3)`));
      return;
    }
    try {
      const asyncFn = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
      const syncFn = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
      // BODY-2: an object with both is iterated asynchronously.
      if (typeof asyncFn === 'function') {
        const it = checkIterator(asyncFn.call(body), body) as AsyncIterator<unknown>;
        this.iterator = it;
        void this.pumpAsync(it);
      } else if (typeof syncFn === 'function') {
        const it = checkIterator(syncFn.call(body), body) as Iterator<unknown>;
        this.iterator = it;
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
        // A bodiless head already out (through write()) ends the pulling (SR-21).
        if (this.noBody && this.headSent) return this.finish();
        const r = pullSync(this, it);
        if (this.finished) return this.closeIterator();
        if (r.done) return this.finish();
        let chunk = r.value;
        if (!this.headSent && this.started && isNonEmpty(chunk) && this.head!.contentLength < 0) {
          // Peek once: a body of one chunk gets a Content-Length instead of chunked framing
          // (the MAY of SPEC §3.2). The head counts as sent from here, as in the reference server.
          this.headSent = true;
          this.held = chunk as Chunk;
          let peek: IteratorResult<unknown>;
          try {
            peek = pullSync(this, it);
          } catch (err) {
            this.releaseHeld();
            throw err;
          }
          if (this.finished) return this.closeIterator();
          if (this.held !== null && peek.done) {
            const bytes = toBytes(this.held);
            this.held = null;
            this.emitHead(bytes.length);
            this.sendBytes(bytes);
            return this.finish();
          }
          const ok = this.releaseHeld();
          if (this.noBody) return this.finish();
          if (!ok) await this.sink.drain();
          if (peek.done) return this.finish();
          if (this.finished) return this.closeIterator();
          chunk = peek.value;
        }
        if (!this.send(chunk)) await this.sink.drain();
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
        if (!this.send(r.value)) await this.sink.drain();
        if (this.finished) return this.closeIterator();
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** releaseHeld sends the chunk held back for the peek, with the head. */
  private releaseHeld(): boolean {
    const held = this.held;
    if (held === null) return true;
    this.held = null;
    this.emitHead(-1);
    return this.sendBytes(toBytes(held));
  }

  /** send checks one chunk and sends it, the head first if need be; false means wait for drain. */
  private send(chunk: unknown): boolean {
    if (!isChunk(chunk)) {
      throw new AppError('NSGI_BAD_CHUNK', `a body chunk must be a string or a Uint8Array, got ${describe(chunk)} (SPEC §3.1, BODY-4)`);
    }
    if (chunk.length === 0) return true; // BODY-6
    if (!this.headSent) {
      if (!this.started) {
        throw new AppError('NSGI_CHUNK_BEFORE_START', 'the body produced a chunk before startResponse was called (SPEC §3.2, BODY-9)');
      }
      this.emitHead(-1);
    }
    return this.sendBytes(toBytes(chunk));
  }

  private sendBytes(bytes: Uint8Array): boolean {
    if (this.noBody) {
      const code = this.head!.status;
      if (code === 204 || code === 205 || code === 304) this.errors.write(`nsgi: body chunk for a ${code} response discarded (SPEC §4.3, SR-21)`);
      return true;
    }
    const declared = this.head!.contentLength;
    if (declared >= 0 && this.sent + bytes.length > declared) {
      // SR-17: only the declared bytes go out; then the response ends and the connection closes.
      // The write() or the pull that overran fails with the error, as on the reference server.
      const room = declared - this.sent;
      if (room > 0) this.sink.data(bytes.subarray(0, room));
      this.sent = declared;
      const err = new AppError('NSGI_CONTENT_LENGTH_EXCEEDED', `the body is longer than its Content-Length ${declared} (SPEC §4.3, SR-17)`);
      this.errors.write(`nsgi: error in app for ${this.what}: ${err.message}`);
      this.closeIterator();
      this.finished = true;
      this.sink.end(true);
      throw err;
    }
    this.sent += bytes.length;
    return this.sink.data(bytes);
  }

  private emitHead(knownLength: number, flush = false): void {
    this.headSent = true;
    const h = this.head!;
    const noBody = this.isHead || h.status === 204 || h.status === 205 || h.status === 304;
    this.noBody = noBody;
    // 204 has no Content-Length (RFC 9110 §8.6); 205 has no content, and says so (§15.3.6): the
    // app's Content-Length is dropped from both, and the sink adds 0 for a 205.
    const empty = h.status === 204 || h.status === 205;
    const contentLength = h.status === 204 ? -1 : h.status === 205 ? 0 : h.contentLength >= 0 ? h.contentLength : knownLength;
    const headers = empty && h.contentLength >= 0 ? h.headers.filter(([name]) => name.toLowerCase() !== 'content-length') : h.headers;
    this.sink.head({ status: h.status, reason: h.reason, headers, contentLength, noBody, close: h.close }, flush);
  }

  /** finish ends a body that ran to its end. */
  private finish(): void {
    if (this.finished) return this.closeIterator();
    try {
      if (!this.started) {
        throw new AppError('NSGI_NO_START_RESPONSE', 'the body ended but startResponse was never called (SPEC §3.2, BODY-10)');
      }
      const declared = this.head!.contentLength;
      const exempt = this.isHead || this.head!.status === 304 || this.head!.status === 204 || this.head!.status === 205;
      if (!exempt && declared >= 0 && this.sent < declared) {
        throw new AppError('NSGI_CONTENT_LENGTH_SHORT', `the body ended after ${this.sent} of the ${declared} bytes its Content-Length declares (SPEC §4.3, SR-18)`);
      }
      if (!this.headSent) this.emitHead(0);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.closeIterator();
    this.finished = true;
    this.sink.end(this.head!.close);
  }

  /** fail handles an app error (SPEC §8): a 500 before the head, a cut after it. */
  fail(err: unknown): void {
    this.closeIterator();
    if (this.finished) return;
    this.finished = true;
    if (this.gone) return;
    const detail = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `non-Error value thrown: ${describe(err)}`;
    this.errors.write(`nsgi: error in app for ${this.what}: ${detail}`);
    if (!this.headSent) {
      this.sink.failBeforeHead(this.isHead);
    } else {
      if (this.held !== null) {
        try {
          this.releaseHeld();
        } catch {
          // The response is being cut anyway.
        }
      }
      this.sink.cut(err);
    }
  }

  /** closeIterator calls the iterator's `return()` at most once (BODY-16, BODY-17, BODY-18). */
  private closeIterator(): void {
    const it = this.iterator;
    if (it === null || this.iteratorClosed || this.pulling) return;
    this.iteratorClosed = true;
    callReturn(it, this.errors);
  }
}

/** closeLater closes a body that arrived after the client had gone: it was never iterated, so its iterator is opened only to be closed. */
function closeLater(body: unknown, errors: ErrorStream): void {
  if (body === null || typeof body !== 'object') return;
  try {
    const asyncFn = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
    const syncFn = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
    const it = typeof asyncFn === 'function' ? asyncFn.call(body) : typeof syncFn === 'function' ? syncFn.call(body) : null;
    if (it !== null && typeof it === 'object') callReturn(it, errors);
  } catch {
    // Nothing can reach the client any more.
  }
}

function isChunk(v: unknown): v is Chunk {
  return typeof v === 'string' || v instanceof Uint8Array;
}

function isNonEmpty(v: unknown): boolean {
  return isChunk(v) && v.length > 0;
}

/** toBytes encodes a chunk: strings as UTF-8 (BODY-5). */
export function toBytes(chunk: Chunk): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}

