/**
 * The sans-I/O HTTP/1.1 server connection: the request parser on one side, response framing on
 * the other, and the rules that tie one exchange to the next. It owns no socket and no timer; the
 * server feeds it bytes and writes out what it puts in {@link Http1Connection.out}.
 *
 * Theory of operation. A connection carries a sequence of exchanges, one at a time. The request
 * side is the parser's (head, body, end, then PAUSED). The response side follows the diagram of
 * `response-state.ts`.
 *
 * An exchange is over when its request has ended and its response is done; what then becomes of
 * the connection (the next request, reading the rest of an unread body first, or closing) is
 * decided in one place, {@link Http1Connection.afterResponse}. To go on, `nextCycle()` starts the
 * next exchange and the parser reads whatever the client pipelined meanwhile. Any move the
 * diagram does not show throws: it is a bug in the caller, never the peer's doing.
 */
import { AppError, type ProtocolError } from '../errors.ts';
import { RequestParser, type ParserEvent, type RequestHead } from './parser.ts';
import { nextState, type ResponseMove, type ResponseState } from './response-state.ts';
import type { OutBuffer } from './out-buffer.ts';
import { Http1Shared } from './shared.ts';
import {
  Framing,
  LAST_CHUNK,
  REASONS,
  addedContentLength,
  bodyRule,
  chooseFraming,
  dropsAppLength,
  connectionOptions,
  httpDate,
  type PreparedHeaders,
  type Status,
} from './writer.ts';

/**
 * MAX_DRAIN_BYTES is how much of a request body the app left unread the server will read and
 * discard to keep the connection; a longer rest costs more than a new connection.
 */
export const MAX_DRAIN_BYTES = 256 * 1024;


/**
 * AfterResponse is what becomes of a connection once its response is over (see
 * {@link Http1Connection.afterResponse}).
 */
export const enum AfterResponse {
  /** The exchange is not over yet: the response or the request's end is still to come. */
  Wait,
  /** Read the next request. */
  Next,
  /** Read the rest of the request body and throw it away, then go on. */
  Drain,
  /** Close the connection. */
  Close,
}

/** Http1Connection is the protocol state of one HTTP/1.1 server connection. */
export class Http1Connection {
  /** out holds the bytes to send, gathered until the server flushes them. */
  readonly out: OutBuffer;
  /** request is the head of the current exchange's request, once it has arrived. */
  request: RequestHead | null = null;
  /** requestComplete is true once the current request's body has been read to its end. */
  requestComplete = false;
  /** responseState is where the current response stands. */
  responseState: ResponseState = 'idle';
  /** bodyBytes counts the response body bytes sent in this exchange, framing excluded. */
  bodyBytes = 0;
  /** statusCode is the status of the response sent in this exchange, 0 until its head is out. */
  statusCode = 0;

  private readonly parser: RequestParser;
  private keepAlive = true;
  /** Body bytes read and thrown away since the response ended with the body unread. */
  private discarded = 0;
  private framing = Framing.None;
  private declaredLength = -1;
  private continueSent = false;
  /** A chunk's data has been written and its closing CRLF has not. */
  private chunkOpen = false;

  /** `shared` is what the connections of one server share: limits, header lines, caches, slab. */
  constructor(private readonly shared: Http1Shared = new Http1Shared()) {
    this.parser = new RequestParser(shared.limits);
    this.out = shared.outBuffer();
  }

  /**
   * takeOutput returns everything to send, in order, and empties the buffer. A chunk whose CRLF
   * was being held for the next size line gets it now, so what leaves is always whole chunks.
   */
  takeOutput(): Uint8Array[] {
    if (this.chunkOpen) {
      this.out.crlf();
      this.chunkOpen = false;
    }
    return this.out.take();
  }

  /** receive hands bytes from the peer to the parser; `transient` ones are in a buffer the caller reuses (RequestParser.feed). */
  receive(data: Buffer, transient = false): void {
    this.parser.feed(data, transient);
  }

  /** buffered is how many received bytes wait unparsed (pipelined requests, say). */
  get buffered(): number {
    return this.parser.buffered;
  }

  /**
   * requestBodyDone is true once nothing more of the current request's body is to come: it has
   * been read to its end, or the request has none (its end event may not have been taken yet).
   */
  get requestBodyDone(): boolean {
    const req = this.request;
    return this.requestComplete || (req !== null && req.contentLength <= 0 && !req.chunked);
  }

  /** requestLine is the line of the request being read, once whole, even if its head was refused. */
  get requestLine(): string | null {
    return this.parser.requestLine;
  }

  /** idle is true between exchanges before any byte of the next request has arrived. */
  get idle(): boolean {
    return this.request === null && this.parser.idle;
  }

  /**
   * keepBuffered copies the unparsed bytes out of the buffer they were received in, for a caller
   * about to reuse that buffer for its next read.
   */
  keepBuffered(): void {
    this.parser.keepBuffered();
  }

  /** takeBuffered hands over the unparsed bytes (for an upgrade). */
  takeBuffered(): Buffer {
    return this.parser.takeBuffered();
  }

  /** nextEvent returns the parser's next event, or throws its ProtocolError. */
  nextEvent(): ParserEvent {
    const event = this.parser.next();
    if (event.kind === 'head') {
      this.request = event.head;
      this.keepAlive = event.head.keepAlive;
      this.requestComplete = false;
    } else if (event.kind === 'end') {
      this.requestComplete = true;
    }
    return event;
  }

  private move(m: ResponseMove): void {
    const next = nextState(this.responseState, m);
    if (next === undefined) throw new Error(`response cannot go from ${this.responseState} by ${m}`);
    this.responseState = next;
  }

  /** keepAliveRequested is false once anything has ruled out reusing the connection. */
  get keepAliveRequested(): boolean {
    return this.keepAlive;
  }

  /** mustClose rules out reusing the connection after this exchange. */
  mustClose(): void {
    this.keepAlive = false;
  }

  /**
   * sendContinue writes `100 Continue` if the client asked for it and it can still matter: the
   * final head has not gone out and the body has not started (RFC 9110 §10.1.1).
   */
  sendContinue(): void {
    const req = this.request;
    if (req === null || !req.expectContinue || this.continueSent || this.responseState !== 'idle') return;
    this.continueSent = true;
    this.out.latin1('HTTP/1.1 100 Continue\r\n\r\n');
  }

  /**
   * awaitingContinue is true when the client asked for `100 Continue` and has not had it, so it
   * may never send the body it announced.
   */
  get awaitingContinue(): boolean {
    return this.request !== null && this.request.expectContinue && !this.continueSent && !this.requestComplete;
  }

  /**
   * canKeepAfterUnreadBody tells whether the connection can survive a response sent before the
   * request body was read: not if the client still waits for 100 Continue (it may never send the
   * body), nor if more than MAX_DRAIN_BYTES would have to be read and thrown away.
   */
  canKeepAfterUnreadBody(): boolean {
    const req = this.request;
    if (req === null || this.requestComplete || (req.contentLength <= 0 && !req.chunked)) return true;
    return !this.awaitingContinue && (req.chunked || req.contentLength <= MAX_DRAIN_BYTES);
  }

  /** sendEarlyHints writes a `103 Early Hints` interim response (RFC 8297), if still possible. */
  sendEarlyHints(block: string): boolean {
    if (this.responseState !== 'idle' || this.request?.version !== 'HTTP/1.1') return false;
    this.out.latin1(`HTTP/1.1 103 Early Hints\r\n${block}\r\n`);
    return true;
  }

  /**
   * sendHead writes the status line and headers. `knownLength` is the body's length when the
   * server already holds all of it, else -1. It returns the framing chosen for the body.
   */
  sendHead(status: Status, headers: PreparedHeaders, knownLength = -1): Framing {
    const req = this.request!;
    this.move('head');
    const http11 = req.version === 'HTTP/1.1';
    const code = status.code;
    const isHead = req.method === 'HEAD';
    const rule = bodyRule(isHead, code);
    const appLength = headers.contentLength;
    const framing = chooseFraming(isHead, code, appLength >= 0 ? appLength : knownLength, http11);
    const added = addedContentLength(rule, appLength, knownLength);
    // RFC 9110 §10.1.1: a server answering before the body has arrived says whether it closes.
    if (framing === Framing.Close || headers.close || !this.canKeepAfterUnreadBody()) this.keepAlive = false;
    const head = this.shared.encodeHead(status, headers, framing, this.keepAlive, http11, added, dropsAppLength(rule));
    if (typeof head === 'string') this.out.latin1(head);
    else this.out.bytes(head);
    this.framing = framing;
    this.declaredLength = framing === Framing.Length ? (appLength >= 0 ? appLength : knownLength) : -1;
    this.statusCode = code;
    return framing;
  }

  /**
   * sendData frames one body chunk. A chunk that would run past the declared Content-Length is
   * sent only up to that length, then an AppError is thrown. Chunks for a response without a body
   * are dropped.
   */
  sendData(chunk: Uint8Array | string): void {
    this.move('data');
    const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (n === 0) return;
    const out = this.out;
    switch (this.framing) {
      case Framing.None:
        return;
      case Framing.Length:
        if (this.bodyBytes + n > this.declaredLength) {
          // Send what the declared length allows, so the client gets the whole declared body; the
          // caller cuts the connection, since the app's length was wrong.
          const allowed = this.declaredLength - this.bodyBytes;
          if (allowed > 0) {
            out.bytes((typeof chunk === 'string' ? Buffer.from(chunk) : chunk).subarray(0, allowed));
            this.bodyBytes += allowed;
          }
          this.keepAlive = false;
          throw new AppError(
            'NSGI_CONTENT_LENGTH_EXCEEDED',
            `body is longer than its Content-Length of ${this.declaredLength} bytes (SPEC §4.3)`,
          );
        }
        break;
      case Framing.Chunked:
        // Each chunk's closing CRLF is written with the next size line (or the last chunk), so a
        // chunk costs one small append besides its data.
        out.chunkFrame(n, this.chunkOpen);
        this.chunkOpen = true;
        break;
    }
    this.bodyBytes += n;
    if (typeof chunk === 'string') out.utf8(chunk, n);
    else out.bytes(chunk);
  }

  /**
   * sendEnd finishes the body: the last chunk and any trailers for chunked coding. A body shorter
   * than its Content-Length throws an AppError; the caller must then cut the connection.
   */
  sendEnd(trailerBlock = ''): void {
    this.move('end');
    if (this.framing === Framing.Chunked) {
      if (this.chunkOpen) this.out.crlf();
      this.chunkOpen = false;
      this.out.latin1(trailerBlock === '' ? LAST_CHUNK : `0\r\n${trailerBlock}\r\n`);
    } else if (this.framing === Framing.Length && this.bodyBytes < this.declaredLength) {
      this.keepAlive = false;
      throw new AppError(
        'NSGI_CONTENT_LENGTH_SHORT',
        `body ended after ${this.bodyBytes} of its Content-Length of ${this.declaredLength} bytes (SPEC §4.3)`,
      );
    }
  }

  /** isChunked tells whether the body of the response under way uses chunked coding. */
  get isChunked(): boolean {
    return this.responseState === 'sending' && this.framing === Framing.Chunked;
  }

  /**
   * sendErrorResponse writes a complete short response for a failure found before any response
   * head went out: a ProtocolError's status, or 500 for an app failure. The connection closes
   * after a protocol error, since the rest of the input can no longer be trusted.
   */
  sendErrorResponse(code: number, detail: string, close: boolean): void {
    this.move('error');
    // As for any head (sendHead): a body that will not be read means the connection closes, and
    // the client is told so (RFC 9110 §10.1.1).
    if (close || !this.canKeepAfterUnreadBody()) this.keepAlive = false;
    const reason = REASONS[code] ?? 'Error';
    const body = detail === '' ? `${reason}\n` : `${reason}: ${detail}\n`;
    const http11 = this.request === null || this.request.version === 'HTTP/1.1';
    let head =
      `HTTP/1.1 ${code} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nDate: ${httpDate()}\r\n${this.shared.serverHeader}`;
    const connection = connectionOptions(false, !this.keepAlive, !http11);
    if (connection !== '') head += `Connection: ${connection}\r\n`;
    this.out.latin1(head + '\r\n');
    this.statusCode = code;
    // RFC 9110 §9.3.2: never content for HEAD, even for a request refused at its head.
    if (!(this.request !== null ? this.request.method === 'HEAD' : this.parser.headMethod)) {
      this.out.utf8(body, Buffer.byteLength(body));
      this.bodyBytes = Buffer.byteLength(body);
    }
  }

  /** rejectRequest answers a ProtocolError and rules out any further exchange. */
  rejectRequest(err: ProtocolError): void {
    if (this.responseState === 'idle') this.sendErrorResponse(err.status, err.message, true);
    this.keepAlive = false;
  }

  /** cut abandons the response under way: no terminator is sent and the connection must close. */
  cut(): void {
    this.move('cut');
    this.keepAlive = false;
  }

  /**
   * shouldReuseConnection decides, once an exchange is over, whether the next request may be read
   * from this connection: the client must want it (RFC 9112 §9.3), the response must not be
   * delimited by closing, and nothing may have gone wrong.
   */
  shouldReuseConnection(): boolean {
    return this.keepAlive && this.responseState === 'done' && this.requestComplete;
  }

  /**
   * afterResponse decides, in one place, what becomes of the connection once the response is
   * done or cut. A response sent before the request body was read leaves a rest on its way: a
   * client still waiting for 100 Continue may never send it, and a long rest costs more than a new
   * connection, so then the connection closes; otherwise the rest is read and thrown away (Drain)
   * so that it never becomes the next request. `clientEnded` is the client's FIN: nothing more
   * will come, so nothing is worth keeping the connection for.
   */
  afterResponse(clientEnded: boolean): AfterResponse {
    const state = this.responseState;
    if (state === 'closed') return AfterResponse.Close;
    if (state !== 'done') return AfterResponse.Wait;
    if (!this.requestBodyDone) {
      if (clientEnded || !this.canKeepAfterUnreadBody()) this.keepAlive = false;
      if (!this.keepAlive) return AfterResponse.Close;
      this.discarded = 0;
      return AfterResponse.Drain;
    }
    if (!this.requestComplete) return AfterResponse.Wait;
    return this.shouldReuseConnection() ? AfterResponse.Next : AfterResponse.Close;
  }

  /**
   * discardBody counts `n` body bytes read only to be thrown away. It returns false, and rules out
   * reusing the connection, once more than MAX_DRAIN_BYTES were: the rest is not worth reading.
   */
  discardBody(n: number): boolean {
    this.discarded += n;
    if (this.discarded <= MAX_DRAIN_BYTES) return true;
    this.keepAlive = false;
    return false;
  }

  /** nextCycle starts the next exchange; only legal when the current one is over. */
  nextCycle(): void {
    this.move('next');
    this.parser.nextCycle();
    this.request = null;
    this.requestComplete = false;
    this.framing = Framing.None;
    this.declaredLength = -1;
    this.bodyBytes = 0;
    this.statusCode = 0;
    this.continueSent = false;
    this.chunkOpen = false;
    this.discarded = 0;
  }
}
