/**
 * One request's response on the reference server: the {@link ResponseCycle} (the contract's
 * response rules, and the life of a response told at the top of `src/cycle.ts`) with its bytes
 * framed by the connection's HTTP/1.1 state, plus what only this server offers: early hints,
 * trailers and upgrades.
 *
 * Each non-empty chunk is framed into the connection's output buffer, the first one preceded by
 * the head. The buffer is flushed to the socket once the work at hand is done (the end of the
 * read being processed, or of the current tick), or at once when it holds OUTPUT_HIGH_WATER_MARK
 * bytes; when the socket says it is full, the cycle waits for `drain` before it asks the iterator
 * for another chunk.
 */
import type { Chunk, ErrorStream, HeaderList, Upgraded, UpgradeOptions } from '../protocol/nsgi.ts';
import type { RequestInput } from './body.ts';
import { ResponseCycle } from './cycle.ts';
import { AppError, ClientGoneError, ProtocolError } from './errors.ts';
import type { Http1Connection } from './http1/connection.ts';
import { Framing, bodyAllowedForStatus, prepareHeaders, prepareTrailers, type PreparedHeaders } from './http1/writer.ts';

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

/** Exchange runs the app for one request and carries its response to the connection. */
export class Exchange extends ResponseCycle {
  private headers: PreparedHeaders | null = null;
  private trailerBlock = '';
  private wantChunked = false;

  constructor(
    private readonly host: ExchangeHost,
    readonly input: RequestInput,
  ) {
    super(host.errors);
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
    const block = prepareTrailers(trailers).block;
    const http = this.host.http;
    let chunked: boolean;
    if (this.headSent && this.held === null) {
      chunked = http.isChunked;
    } else {
      const req = http.request!;
      chunked =
        req.version === 'HTTP/1.1' && req.method !== 'HEAD' && bodyAllowedForStatus(this.status!.code) &&
        this.headers!.contentLength < 0;
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

  /** abort is the client going away: the signal fires, reads fail, the iterator is closed. */
  abort(reason: Error): void {
    this.abortSignal(reason);
    this.input.fail(reason);
    this.abandon();
  }

  /** clientClosed is a FIN from the client: the signal fires, but the response may still finish. */
  clientClosed(reason: Error): void {
    this.abortSignal(reason);
    if (!this.input.complete) this.input.fail(reason);
  }

  // ---- the cycle's hooks ----------------------------------------------------------------------

  protected recordHead(headers: HeaderList): void {
    this.headers = prepareHeaders(headers);
    this.trailerBlock = '';
    this.wantChunked = false;
  }

  protected canPeek(): boolean {
    return !this.wantChunked && this.headers!.contentLength < 0;
  }

  protected sendHead(knownLength: number, flush: boolean): boolean {
    const framing = this.host.http.sendHead(this.status!, this.headers!, knownLength);
    if (flush) this.host.flushNow();
    return framing === Framing.None;
  }

  protected sendData(chunk: Chunk): boolean {
    const http = this.host.http;
    http.sendData(chunk);
    if (http.out.size >= OUTPUT_HIGH_WATER_MARK) return this.host.flushNow();
    this.host.scheduleFlush();
    return true;
  }

  protected waitForDrain(): Promise<void> {
    return this.host.waitForDrain();
  }

  protected sendEnd(): void {
    if (!this.headSent) {
      // An empty body against a Content-Length above 0 is short before any byte of the response
      // has gone: a failure before the head (a 500), as on every runner (SR-18).
      const declared = this.headers!.contentLength;
      if (declared > 0 && this.host.http.request!.method !== 'HEAD' && bodyAllowedForStatus(this.status!.code)) {
        throw new AppError('NSGI_CONTENT_LENGTH_SHORT', `the body ended after 0 of the ${declared} bytes its Content-Length declares (SPEC §4.3, SR-18)`);
      }
      // An empty body has length 0, unless trailers were promised: they need chunked coding.
      this.commitHead(this.wantChunked ? -1 : 0, false);
    }
    this.host.http.sendEnd(this.trailerBlock);
    this.host.scheduleFlush();
  }

  /** failBeforeHead sends a 500, or the status of a ProtocolError met reading the input. */
  protected failBeforeHead(err: unknown): void {
    const http = this.host.http;
    if (err instanceof ProtocolError) {
      http.mustClose();
      http.sendErrorResponse(err.status, err.message, true);
    } else {
      http.sendErrorResponse(500, '', false);
    }
    this.host.scheduleFlush();
  }

  protected cut(): void {
    this.host.cut();
  }

  /**
   * shouldLog leaves out what is not the app's fault: a malformed body met while reading the
   * input (answered with its own status) and the client leaving.
   */
  protected override shouldLog(err: unknown): boolean {
    return !(err instanceof ProtocolError) && !(err instanceof ClientGoneError);
  }

  protected requestName(): string {
    const req = this.host.http.request!;
    return `${req.method} ${req.target}`;
  }

  /**
   * clientLeft tells a call after the end that it came too late because the client left, not
   * because the app broke the contract: the socket may linger after a FIN while output drains.
   */
  protected override clientLeft(): boolean {
    return this.aborted || this.host.gone;
  }

  protected override complete(): void {
    this.finished = true;
    this.host.exchangeDone();
  }
}
