/**
 * The response cycle for servers that are not the reference one. The contract's response rules
 * live in {@link ResponseCycle} (`src/cycle.ts`), shared with the reference server; a runner adds
 * only what a server without its own HTTP/1.1 framing needs: the head as plain data, the
 * Content-Length check, and a {@link ResponseSink} that knows where the bytes go. The adapters
 * (`toNodeListener`, `toFetch`) and `testing.ts` each supply one.
 */
import type { Chunk, ErrorStream, HeaderList } from '../../protocol/nsgi.ts';
import { ResponseCycle } from '../cycle.ts';
import { EnvironBuilder } from '../environ.ts';
import { AppError } from '../errors.ts';
import { HeadCache, checkHeaderList, statusReason } from '../http1/writer.ts';

/**
 * AdapterShared is what the requests served by one adapter (a listener, a fetch handler) share:
 * the status and header checks and the environ builder, with their caches.
 */
export class AdapterShared {
  readonly heads = new HeadCache();
  readonly environs = new EnvironBuilder();
}

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
  /**
   * For a 426, the protocols the app named in Upgrade (RFC 9110 §15.5.22), which are also among
   * `headers`: the sink adds the `upgrade` connection option (§7.8). '' otherwise.
   */
  readonly upgrade: string;
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

/** ResponseRunner runs an app for one request and carries its response to a {@link ResponseSink}. */
export class ResponseRunner extends ResponseCycle {
  private head: ReturnType<typeof checkHeaderList> | null = null;
  private sent = 0;

  constructor(
    private readonly sink: ResponseSink,
    errors: ErrorStream,
    heads: HeadCache,
    /** True for a HEAD request, as received (ENV-3: the environ is not read again). */
    private readonly isHead: boolean,
    /** How the request is named in error messages: `GET /path`. */
    private readonly what: string,
  ) {
    super(errors, heads);
  }

  /** abort is the client going away: pending waits fail, the iterator is closed, nothing more is sent. */
  abort(): void {
    this.abandon();
  }

  // ---- the cycle's hooks ----------------------------------------------------------------------

  protected recordHead(headers: HeaderList): void {
    this.head = checkHeaderList(headers);
  }

  protected canPeek(): boolean {
    return this.head!.contentLength < 0;
  }

  protected sendHead(knownLength: number, flush: boolean): boolean {
    const h = this.head!;
    const status = this.status!;
    const code = status.code;
    const noBody = this.isHead || code === 204 || code === 205 || code === 304;
    // 204 has no Content-Length (RFC 9110 §8.6); 205 has no content, and says so (§15.3.6): the
    // app's Content-Length is dropped from both, and the sink adds 0 for a 205.
    const empty = code === 204 || code === 205;
    const contentLength = code === 204 ? -1 : code === 205 ? 0 : h.contentLength >= 0 ? h.contentLength : knownLength;
    const headers = empty && h.contentLength >= 0 ? h.headers.filter(([name]) => name.toLowerCase() !== 'content-length') : h.headers;
    const reason = statusReason(status);
    // Every field spelled out, no spread: one object shape for every head keeps the code that
    // reads them fast.
    const upgrade = code === 426 ? h.upgrade : '';
    const fields: HeaderList = upgrade === '' ? headers : [...headers, ['Upgrade', upgrade]];
    this.sink.head({ status: code, reason, headers: fields, contentLength, noBody, close: h.close, upgrade }, flush);
    return noBody;
  }

  protected sendData(chunk: Chunk): boolean {
    const bytes = toBytes(chunk);
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
      this.complete();
      this.sink.end(true);
      throw err;
    }
    this.sent += bytes.length;
    return this.sink.data(bytes);
  }

  protected waitForDrain(): Promise<void> {
    return this.sink.drain();
  }

  protected sendEnd(): void {
    const h = this.head!;
    const code = this.status!.code;
    const exempt = this.isHead || code === 304 || code === 204 || code === 205;
    if (!exempt && h.contentLength >= 0 && this.sent < h.contentLength) {
      throw new AppError('NSGI_CONTENT_LENGTH_SHORT', `the body ended after ${this.sent} of the ${h.contentLength} bytes its Content-Length declares (SPEC §4.3, SR-18)`);
    }
    if (!this.headSent) this.commitHead(0, false);
    this.sink.end(h.close);
  }

  protected failBeforeHead(): void {
    this.sink.failBeforeHead(this.isHead);
  }

  protected cut(err: unknown): void {
    this.sink.cut(err);
  }

  protected requestName(): string {
    return this.what;
  }
}

/** toBytes encodes a chunk: strings as UTF-8 (BODY-5). */
function toBytes(chunk: Chunk): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}
