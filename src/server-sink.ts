/**
 * The reference server's {@link ResponseSink}: each response's head and non-empty chunks are
 * framed by the connection's HTTP/1.1 state into its output buffer, and what the server alone
 * offers (early hints, trailers, upgrades) is done here. One sink serves all the exchanges of a
 * connection, one at a time.
 *
 * The output buffer is flushed to the socket once the work at hand is done (the end of the read
 * being processed, or of the current tick), or at once when it holds OUTPUT_HIGH_WATER_MARK
 * bytes; when the socket says it is full, the cycle waits for `drain` before it asks the iterator
 * for another chunk.
 */
import type net from 'node:net';
import type { Chunk, HeaderList, Upgraded } from '../protocol/nsgi.ts';
import { DrainWaiter } from './drain.ts';
import type { Driver } from './driver.ts';
import { ClientGoneError, ProtocolError } from './errors.ts';
import type { Http1Connection } from './http1/connection.ts';
import { checkTrailerFields } from './http1/fields.ts';
import { blockWithoutLength, type BodyRule, type HeadCache, type PreparedHeaders, type Status } from './http1/writer.ts';
import type { ResponseSink } from './sink.ts';

/** OUTPUT_HIGH_WATER_MARK is how many framed bytes are gathered before a write is forced. */
export const OUTPUT_HIGH_WATER_MARK = 64 * 1024;

/** ServerSink is where the responses of one server connection go. */
export class ServerSink implements ResponseSink<PreparedHeaders> {
  private flushScheduled = false;
  /** A flushTick is queued: a flush owed again before it runs needs no second one. */
  private tickQueued = false;
  private drainWaiter: DrainWaiter | null = null;
  /** The trailer fields of the response under way, encoded; '' for none. */
  private trailerBlock = '';

  constructor(
    private readonly driver: Driver,
    private readonly http: Http1Connection,
    private readonly socket: net.Socket,
    readonly heads: HeadCache,
  ) {}

  get gone(): boolean {
    return this.driver.gone;
  }

  checkHeaders(headers: unknown): PreparedHeaders {
    const checked = this.heads.headers(headers);
    // A replacement head forgets the trailers promised with the one it replaces (SR-23); one
    // refused by the checks changes nothing (SR-7).
    this.trailerBlock = '';
    return checked;
  }

  head(status: Status, headers: PreparedHeaders, _rule: BodyRule, knownLength: number, flush: boolean): void {
    this.http.sendHead(status, headers, knownLength);
    if (flush) this.flushNow();
  }

  data(chunk: Chunk): boolean {
    const http = this.http;
    http.sendData(chunk);
    const out = http.out;
    if (out.size < OUTPUT_HIGH_WATER_MARK) {
      this.scheduleFlush();
      return true;
    }
    // A body large enough to fill the buffer: its copies go to memory that is reused as soon as
    // the socket has written it (at once when the kernel took all, else at drain).
    out.useOwn();
    const more = this.flushNow();
    if (this.socket.writableLength === 0) out.recycle();
    return more;
  }

  drain(): Promise<void> {
    if (this.driver.gone) return Promise.reject(new ClientGoneError());
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    const waiter = (this.drainWaiter ??= new DrainWaiter());
    if (!waiter.waiting) this.driver.sendStarted();
    return waiter.wait();
  }

  end(close: boolean): void {
    if (close) this.http.mustClose();
    this.http.sendEnd(this.trailerBlock);
    this.http.out.dropOwn();
    this.scheduleFlush();
  }

  /** failBeforeHead sends a 500, or the status of a ProtocolError met reading the input. */
  failBeforeHead(err: unknown): void {
    const http = this.http;
    if (err instanceof ProtocolError) {
      http.mustClose();
      http.sendErrorResponse(err.status, err.message, true);
    } else {
      http.sendErrorResponse(500, '', false);
    }
    this.scheduleFlush();
  }

  cut(): void {
    this.driver.cut();
  }

  done(): void {
    this.driver.exchangeDone();
  }

  earlyHints(headers: HeaderList): void {
    // RFC 9110 §8.6: no 1xx carries a Content-Length.
    if (this.http.sendEarlyHints(blockWithoutLength(this.heads.headers(headers)))) this.flushNow();
  }

  trailers(trailers: HeaderList, headSent: boolean, canStream: boolean): boolean {
    const block = this.heads.headers(trailers).block;
    checkTrailerFields(trailers);
    const http = this.http;
    const chunked = headSent ? http.isChunked : canStream && http.request!.version === 'HTTP/1.1';
    if (chunked) this.trailerBlock = block;
    return chunked;
  }

  upgrade(headers: HeaderList | undefined): Upgraded {
    return this.driver.upgrade(headers);
  }

  idle(): boolean {
    return this.http.out.size === 0 && this.socket.writableLength === 0 && !this.driver.gone;
  }

  // ---- the socket ---------------------------------------------------------------------------

  /**
   * scheduleFlush arranges for the output to be written once the current work is done: at the end
   * of the driver's processing of a read when called while it runs (so every response to one read
   * leaves together), else at the end of this tick.
   */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A body that fills the buffer flushes it many times in one tick (an async generator's
    // chunks follow each other in one run of microtasks), and each time owes a flush again.
    if (this.driver.processing || this.tickQueued) return;
    this.tickQueued = true;
    process.nextTick(flushTick, this);
  }

  /** tick is the queued flushTick running. */
  tick(): void {
    this.tickQueued = false;
    this.flushIfScheduled();
  }

  /** flushIfScheduled writes the output if a flush is owed. */
  flushIfScheduled(): void {
    if (this.flushScheduled) this.flushNow();
  }

  /** flushNow writes the output in one go; false when the socket is full and the caller should wait. */
  flushNow(): boolean {
    this.flushScheduled = false;
    const socket = this.socket;
    if (this.driver.gone || socket.writableEnded) {
      this.http.takeOutput();
      return false;
    }
    const parts = this.http.takeOutput();
    if (parts.length === 1) return socket.write(parts[0]!);
    if (parts.length === 0) return !socket.writableNeedDrain;
    socket.cork();
    for (let i = 0; i < parts.length; i++) socket.write(parts[i]!);
    socket.uncork();
    return !socket.writableNeedDrain;
  }

  /** drained is the socket's 'drain': everything written has left, and a pending wait ends. */
  drained(): void {
    if (this.socket.writableLength === 0) this.http.out.recycle();
    this.drainWaiter?.drained();
  }

  /** socketGone fails a pending wait: the socket has closed. */
  socketGone(err: Error): void {
    this.drainWaiter?.fail(err);
  }
}

function flushTick(sink: ServerSink): void {
  sink.tick();
}
