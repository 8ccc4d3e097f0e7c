/**
 * The sans-I/O HTTP/1.1 request parser: bytes in through {@link RequestParser.feed}, events out
 * through {@link RequestParser.next}. No sockets, timers or apps; it can be fed one byte at a time.
 *
 * Theory of operation. One request is read as a head (request line and header fields, RFC 9112
 * §3 and §5), then a body framed by Content-Length or by chunked coding (§6, §7). Each call of
 * `next()` returns one event: the head, a piece of body data, the end of the message, or a
 * signal that it needs more bytes (NEED_DATA) or that the message is complete and the caller must
 * call `nextCycle()` before the next request is read (PAUSED). Pipelined bytes after a message stay
 * buffered until then, so a request is never read before the previous one is answered.
 *
 * Anything malformed throws a {@link ProtocolError} carrying the status to answer with, and the
 * error sticks: every later `next()` throws it again. The parser is strict where leniency has
 * allowed request smuggling: Content-Length with Transfer-Encoding, repeated or malformed
 * Content-Length, obs-fold, bare CR and bare LF are all rejected.
 */
import { ProtocolError, quote } from '../errors.ts';
import { FIELD_VALUE, HEX, TARGET, TOKEN, isHost } from './syntax.ts';

/** ParserLimits bound what one request may make the server hold in memory. */
export interface ParserLimits {
  /** Longest request line in bytes; longer gets 414. node:http and gunicorn both use about 8 KiB. */
  maxRequestLineSize: number;
  /** Most header fields in one request; more gets 431. gunicorn's limit is 100. */
  maxHeaderCount: number;
  /** Largest header block in bytes (after the request line); larger gets 431. node:http: 16 KiB. */
  maxHeaderSize: number;
  /** Largest request body in bytes; larger gets 413. Unlimited by default, as in node:http. */
  maxBodySize: number;
}

/** DEFAULT_LIMITS are the limits a parser uses unless told otherwise. */
export const DEFAULT_LIMITS: Readonly<ParserLimits> = Object.freeze({
  maxRequestLineSize: 8 * 1024,
  maxHeaderCount: 100,
  maxHeaderSize: 16 * 1024,
  maxBodySize: Infinity,
});

/**
 * resolveLimits completes a partial set of limits with the defaults. A server resolves its limits
 * once, so that the parsers of all its connections share one object.
 */
export function resolveLimits(limits: Partial<ParserLimits>): Readonly<ParserLimits> {
  if (isComplete(limits)) return limits;
  return Object.freeze({ ...DEFAULT_LIMITS, ...limits });
}

function isComplete(limits: Partial<ParserLimits>): limits is Readonly<ParserLimits> {
  return (
    Object.isFrozen(limits) && limits.maxRequestLineSize !== undefined && limits.maxHeaderCount !== undefined &&
    limits.maxHeaderSize !== undefined && limits.maxBodySize !== undefined
  );
}

/** Longest chunk-size line (size and extensions) accepted; longer gets 400. */
const MAX_CHUNK_LINE = 4 * 1024;

/** RequestHead is a request's line and header fields, with its framing already decided. */
export interface RequestHead {
  /** The method, case preserved. */
  method: string;
  /** The request-target exactly as received. */
  target: string;
  /** `"HTTP/1.1"` or `"HTTP/1.0"` (a higher HTTP/1.x minor version is read as 1.1). */
  version: 'HTTP/1.0' | 'HTTP/1.1';
  /** The header fields in order, names in their original case, values without surrounding OWS. */
  headers: Array<[string, string]>;
  /** The Host field value, or undefined when there is none. */
  host: string | undefined;
  /** The declared body length, or -1 when the body is chunked or absent. */
  contentLength: number;
  /** True when the body is framed by chunked coding. */
  chunked: boolean;
  /** True when the client wants the connection kept open after this exchange. */
  keepAlive: boolean;
  /** True when the client sent `Expect: 100-continue`. */
  expectContinue: boolean;
  /** True when the client asks to switch protocols (`Connection: upgrade` and `Upgrade`). */
  upgrade: boolean;
}

/** HeadEvent carries a request's head. */
export interface HeadEvent {
  kind: 'head';
  head: RequestHead;
}
/** DataEvent carries a piece of the request body, transfer coding removed. */
export interface DataEvent {
  kind: 'data';
  data: Uint8Array;
}
/** EndEvent marks the end of a request; `trailers` holds a chunked body's trailer fields. */
export interface EndEvent {
  kind: 'end';
  trailers: Array<[string, string]> | null;
}
/** NeedData means the parser has used every byte it has and needs more. */
export interface NeedData {
  kind: 'need-data';
}
/** Paused means a request is complete; call `nextCycle()` to read the next one. */
export interface Paused {
  kind: 'paused';
}
/** ParserEvent is anything `next()` returns. */
export type ParserEvent = HeadEvent | DataEvent | EndEvent | NeedData | Paused;

/** NEED_DATA is the one NeedData event. */
export const NEED_DATA: NeedData = Object.freeze({ kind: 'need-data' });
/** PAUSED is the one Paused event. */
export const PAUSED: Paused = Object.freeze({ kind: 'paused' });
const END_NO_TRAILERS: EndEvent = Object.freeze({ kind: 'end', trailers: null });

const enum State {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  End,
  Done,
  Error,
}

const EMPTY = Buffer.alloc(0);
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;

const CHUNK_EXT =
  /^(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*$/;

function fail(code: string, status: number, message: string): never {
  throw new ProtocolError(code, status, message);
}

/** RequestParser turns the bytes of one connection into request events. */
export class RequestParser {
  private readonly limits: Readonly<ParserLimits>;
  private buf: Buffer = EMPTY;
  /** `buf` is a transient buffer of the caller's (see feed). */
  private borrowed = false;
  private pos = 0;
  private state = State.Head;
  private error: ProtocolError | null = null;

  // Head state: where the current line starts, how far it has been checked, and what is known.
  private lineStart = 0;
  private scan = 0;
  private method = '';
  private headLine = false;
  private target = '';
  private version: 'HTTP/1.0' | 'HTTP/1.1' | '' = '';
  // How far checkRequestLinePrefix got: 0 in the method, 1 in the target, 2 past it.
  private lineStage = 0;
  // Where the target starts, relative to lineStart (feed() moves absolute positions).
  private targetOffset = 0;
  private headers: Array<[string, string]> = [];
  private headerBytes = 0;
  private lastGoodHost = '';

  // Body state.
  private remaining = 0;
  private bodyBytes = 0;
  // Made for the first trailer field: almost no request has one.
  private trailers: Array<[string, string]> | null = null;

  /** A frozen, complete `limits` (from {@link resolveLimits}) is shared as it is; any other is completed. */
  constructor(limits: Partial<ParserLimits> = DEFAULT_LIMITS) {
    this.limits = resolveLimits(limits);
  }

  /**
   * feed appends bytes received from the peer. `transient` bytes are in a buffer the caller will
   * reuse: the body data and the unparsed bytes the parser hands out of them are copies, and the
   * caller calls {@link keepBuffered} once it has taken the events it wants from them.
   */
  feed(data: Buffer, transient = false): void {
    if (data.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.scan -= this.pos;
      this.lineStart -= this.pos;
      this.buf = data;
      this.borrowed = transient;
      this.pos = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.pos), data]);
      this.borrowed = false;
      this.scan -= this.pos;
      this.lineStart -= this.pos;
      this.pos = 0;
    }
  }

  /**
   * keepBuffered copies the bytes not yet parsed out of a transient buffer (see {@link feed}) into
   * one of the parser's own. Nothing is copied when everything was parsed.
   */
  keepBuffered(): void {
    if (!this.borrowed) return;
    this.borrowed = false;
    const pos = this.pos;
    this.buf = pos >= this.buf.length ? EMPTY : Buffer.from(this.buf.subarray(pos));
    this.scan -= pos;
    this.lineStart -= pos;
    this.pos = 0;
  }

  /** buffered is how many received bytes have not been turned into events yet. */
  get buffered(): number {
    return this.buf.length - this.pos;
  }

  /**
   * headMethod is true when the request line being read (or read) begins `HEAD `, whether or not
   * the rest of it is valid: a request refused anywhere in its head is still answered without a
   * body if it asked with HEAD.
   */
  get headMethod(): boolean {
    // A line still arriving (refused at the head deadline, say) is judged by what has come.
    return this.headLine || (this.version === '' && beginsWithHead(this.buf, this.lineStart, this.buf.length));
  }

  /**
   * requestLine is the current request's line once it has been read whole (`POST /up HTTP/1.1`),
   * null before: a request refused later in its head (413, 431) is still logged by what it asked.
   */
  get requestLine(): string | null {
    return this.version === '' ? null : `${this.method} ${this.target} ${this.version}`;
  }

  /** idle is true before any byte of the next request head has arrived. */
  get idle(): boolean {
    return this.state === State.Head && this.version === '' && this.buffered === 0;
  }

  /** inBody is true while the body of the current request is being read. */
  get inBody(): boolean {
    return this.state > State.Head && this.state < State.Done;
  }

  /**
   * takeBuffered hands over the bytes received but not parsed (after an upgrade, say) and leaves
   * the parser empty.
   */
  takeBuffered(): Buffer {
    const rest = this.bytes(this.pos, this.buf.length);
    this.borrowed = false;
    this.buf = EMPTY;
    this.pos = 0;
    return rest;
  }

  /** nextCycle starts reading the next request once the current one is complete (PAUSED). */
  nextCycle(): void {
    if (this.state !== State.Done) throw new Error(`nextCycle() called before the request was complete`);
    this.state = State.Head;
    this.method = '';
    this.headLine = false;
    this.target = '';
    this.version = '';
    this.lineStage = 0;
    this.headers = [];
    this.headerBytes = 0;
    this.bodyBytes = 0;
    this.trailers = null;
    this.lineStart = this.scan = this.pos;
  }

  /**
   * startBody reads a body whose head another parser read (node:http, handing a request over
   * with its socket): from here the bytes fed are the body, then whatever follows it. The framing
   * is `chunked`, else the Content-Length field's value as received (undefined for none), checked
   * as it would be in a head; a bad one throws the ProtocolError a head would have.
   */
  startBody(contentLength: string | undefined, chunked: boolean): void {
    if (this.state !== State.Head || this.buffered > 0) throw new Error('startBody() called after bytes were read');
    let length = -1;
    try {
      if (!chunked && contentLength !== undefined) length = parseContentLength(contentLength);
    } catch (err) {
      // As for a head: the error sticks, and every later next() throws it.
      this.state = State.Error;
      this.error = err as ProtocolError;
      throw err;
    }
    if (chunked) this.state = State.ChunkSize;
    else if (length > 0) {
      this.state = State.Length;
      this.remaining = length;
    } else this.state = State.End;
  }

  /** next returns the next event, or throws the ProtocolError that ended the connection. */
  next(): ParserEvent {
    if (this.state === State.Error) throw this.error!;
    try {
      switch (this.state) {
        case State.Head:
          return this.readHead();
        case State.Length:
          return this.readLengthBody();
        case State.ChunkSize:
        case State.ChunkData:
        case State.ChunkDataEnd:
        case State.Trailers:
          return this.readChunked();
        case State.End:
          return this.end(END_NO_TRAILERS);
        default:
          return PAUSED;
      }
    } catch (err) {
      this.state = State.Error;
      this.error =
        err instanceof ProtocolError ? err : new ProtocolError('NSGI_PARSER_BUG', 500, String(err));
      throw this.error;
    }
  }

  private end(event: EndEvent): EndEvent {
    this.state = State.Done;
    if (this.pos >= this.buf.length) {
      this.buf = EMPTY;
      this.pos = 0;
    }
    return event;
  }

  // ---- head -------------------------------------------------------------------------------

  private readHead(): ParserEvent {
    const buf = this.buf;
    for (;;) {
      const lf = buf.indexOf(LF, this.scan);
      if (lf === -1) return this.awaitLine();
      if (lf === this.lineStart || buf[lf - 1] !== CR) {
        // A bare CR earlier in the line was refused the moment its next byte arrived when the
        // line came in pieces; the verdict must not depend on how the bytes were split.
        const cr = bareCR(buf, this.lineStart, lf);
        if (cr !== -1) this.refuseBareCR(buf, cr);
        fail('NSGI_BARE_LF', 400, 'line ends in a bare LF; HTTP/1.1 lines end in CRLF');
      }
      const start = this.lineStart;
      const end = lf - 1;
      this.lineStart = this.scan = this.pos = lf + 1;
      if (this.version === '') {
        if (end === start) continue; // RFC 9112 §2.2: ignore empty lines before the request line
        this.parseRequestLine(buf, start, end);
      } else if (end === start) {
        return this.finishHead();
      } else {
        this.fieldLine(buf, start, end);
      }
    }
  }

  /** fieldLine takes one header field line, within the header block's limits. */
  private fieldLine(buf: Buffer, start: number, end: number): void {
    this.headerBytes += end - start + 2;
    if (this.headerBytes > this.limits.maxHeaderSize) {
      fail('NSGI_HEADERS_TOO_LARGE', 431, `header block exceeds ${this.limits.maxHeaderSize} bytes`);
    }
    if (this.headers.length >= this.limits.maxHeaderCount) {
      fail('NSGI_TOO_MANY_HEADERS', 431, `more than ${this.limits.maxHeaderCount} header fields`);
    }
    this.headers.push(parseField(buf, start, end));
  }

  /**
   * refuseBareCR refuses the head line holding a CR that is followed by neither LF nor the line's
   * end. A CR is allowed in a head only as the first half of a line end (RFC 9112 §2.2), so the
   * line can never become valid; waiting for its LF would let the request hold its connection
   * until the head deadline. The line up to the byte after the CR is judged as a whole line would
   * be, so the status and code are the same however the bytes were split.
   */
  private refuseBareCR(buf: Buffer, cr: number): never {
    const start = this.lineStart;
    if (this.version === '') this.parseRequestLine(buf, start, cr + 2);
    else this.fieldLine(buf, start, cr + 2);
    fail('NSGI_BARE_CR', 400, 'request head contains a CR not followed by LF');
  }

  /**
   * awaitLine checks the unfinished line against the limits, then asks for more. A request line
   * whose method already holds a byte no method may contain is rejected at once, so binary
   * garbage (a TLS handshake, say) does not wait for a line end that may never come.
   */
  private awaitLine(): NeedData {
    const buf = this.buf;
    const cr = bareCR(buf, Math.max(this.lineStart, this.scan - 1), buf.length);
    if (cr !== -1) this.refuseBareCR(buf, cr);
    if (this.version === '' && this.lineStage < 2) this.checkRequestLinePrefix(buf);
    const pending = unfinishedLineLength(buf, this.lineStart);
    if (this.version === '') {
      if (pending > this.limits.maxRequestLineSize) {
        this.headLine = beginsWithHead(buf, this.lineStart, buf.length);
        this.lineTooLong(this.lineStage === 0);
      }
    } else if (this.headerBytes + pending > this.limits.maxHeaderSize) {
      fail('NSGI_HEADERS_TOO_LARGE', 431, `header block exceeds ${this.limits.maxHeaderSize} bytes`);
    }
    this.scan = buf.length;
    return NEED_DATA;
  }

  /**
   * checkRequestLinePrefix checks the method and target of a request line still arriving, with
   * the same verdicts parseRequestLine gives a whole line.
   */
  private checkRequestLinePrefix(buf: Buffer): void {
    for (let i = this.scan; i < buf.length; i++) {
      const b = buf[i]!;
      if (this.lineStage === 0) {
        if (TOKEN[b] === 1) continue;
        if (b === SP && i > this.lineStart) {
          this.lineStage = 1;
          this.targetOffset = i + 1 - this.lineStart;
          continue;
        }
        if (b === CR && i === this.lineStart) continue; // maybe an empty line before the request
        fail('NSGI_BAD_METHOD', 400, `malformed request line: invalid method in ${quote(buf.toString('latin1', this.lineStart, buf.length))}`);
      }
      if (TARGET[b] === 1) continue;
      if (b === SP && i - this.lineStart > this.targetOffset) {
        this.lineStage = 2;
        return;
      }
      fail('NSGI_BAD_TARGET', 400, `malformed request line: invalid request-target in ${quote(buf.toString('latin1', this.lineStart, buf.length))}`);
    }
  }

  /**
   * lineTooLong refuses a request line over the limit: 414 for its target, or 501 when the method
   * alone runs past it, since no method that long is implemented (RFC 9112 §3).
   */
  private lineTooLong(inMethod: boolean): never {
    const limit = this.limits.maxRequestLineSize;
    if (inMethod) fail('NSGI_METHOD_TOO_LONG', 501, `method longer than ${limit} bytes`);
    fail('NSGI_REQUEST_LINE_TOO_LONG', 414, `request line exceeds ${limit} bytes`);
  }

  private parseRequestLine(buf: Buffer, start: number, end: number): void {
    this.headLine = beginsWithHead(buf, start, end);
    if (end - start > this.limits.maxRequestLineSize) {
      const sp = buf.indexOf(SP, start);
      this.lineTooLong(sp < 0 || sp >= end || sp - start > this.limits.maxRequestLineSize);
    }
    let i = start;
    while (i < end && TOKEN[buf[i]!] === 1) i++;
    if (i === start || i === end || buf[i] !== SP) {
      fail('NSGI_BAD_METHOD', 400, `malformed request line: invalid method in ${quote(buf.toString('latin1', start, end))}`);
    }
    const methodEnd = i;
    const targetStart = ++i;
    while (i < end && TARGET[buf[i]!] === 1) i++;
    if (i === targetStart || i === end || buf[i] !== SP) {
      fail('NSGI_BAD_TARGET', 400, `malformed request line: invalid request-target in ${quote(buf.toString('latin1', start, end))}`);
    }
    const line = latin1Slice(buf, start, i);
    const method = line.slice(0, methodEnd - start);
    const target = line.slice(targetStart - start);
    this.version = parseVersion(buf, i + 1, end);
    checkTargetForm(method, target);
    this.method = method;
    this.target = target;
  }

  private finishHead(): HeadEvent {
    const http11 = this.version === 'HTTP/1.1';
    let host: string | undefined;
    let hostCount = 0;
    let contentLength = -1;
    let transferEncoding: string | undefined;
    let close = false;
    let keepAlive = false;
    let connUpgrade = false;
    let hasUpgrade = false;
    let expectContinue = false;
    let otherExpectation: string | undefined;

    // Only the fields that decide framing and connection handling are looked at here. The
    // length check leaves few names to compare.
    for (const field of this.headers) {
      const name = field[0];
      const value = field[1];
      switch (name.length) {
        case 4:
          if (isFieldName(name, 'host')) {
            hostCount++;
            host = value;
          }
          break;
        case 6:
          // Expect is a list (RFC 9110 §10.1.1); empty members are allowed (§5.6.1).
          if (isFieldName(name, 'expect')) {
            for (const member of value.toLowerCase().split(',')) {
              const m = member.trim();
              if (m === '100-continue') expectContinue = true;
              else if (m !== '') otherExpectation ??= m;
            }
          }
          break;
        case 7:
          if (isFieldName(name, 'upgrade')) hasUpgrade = true;
          break;
        case 10:
          if (isFieldName(name, 'connection')) {
            for (const option of value.toLowerCase().split(',')) {
              const o = option.trim();
              if (o === 'close') close = true;
              else if (o === 'keep-alive') keepAlive = true;
              else if (o === 'upgrade') connUpgrade = true;
            }
          }
          break;
        case 14:
          if (isFieldName(name, 'content-length')) {
            if (contentLength !== -1) fail('NSGI_DUPLICATE_CONTENT_LENGTH', 400, 'more than one Content-Length field');
            contentLength = parseContentLength(value);
          }
          break;
        case 17:
          if (isFieldName(name, 'transfer-encoding')) {
            transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
          }
          break;
      }
    }

    // RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host; none may carry two.
    if (hostCount > 1) fail('NSGI_DUPLICATE_HOST', 400, 'more than one Host field');
    if (http11 && hostCount === 0) fail('NSGI_MISSING_HOST', 400, 'HTTP/1.1 request without a Host field');
    if (host !== undefined && host !== this.lastGoodHost) {
      // Clients repeat the same Host on every request of a connection; check it once.
      if (!isHost(host)) fail('NSGI_BAD_HOST', 400, `invalid Host ${quote(host)}`);
      this.lastGoodHost = host;
    } else if (host !== undefined) {
      // The same string as last time, not only the same text: comparing it with a string it was
      // compared with before (the environ's cache of the Host) is then a pointer compare, where two
      // strings cut from different lines are compared in the runtime.
      host = this.lastGoodHost;
    }

    // RFC 9112 §6.3: the message body length, in the order the RFC gives.
    let chunked = false;
    if (transferEncoding !== undefined) {
      // Step 3: Transfer-Encoding with Content-Length is a smuggling attempt, not a choice.
      if (contentLength !== -1) fail('NSGI_CONTENT_LENGTH_WITH_TRANSFER_ENCODING', 400, 'both Content-Length and Transfer-Encoding');
      // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
      if (!http11) fail('NSGI_TRANSFER_ENCODING_HTTP10', 400, 'Transfer-Encoding in an HTTP/1.0 request');
      // Step 4: chunked must be the final coding, and the only one nsgi decodes.
      checkTransferEncoding(transferEncoding);
      chunked = true;
    } else if (contentLength > this.limits.maxBodySize) {
      fail('NSGI_BODY_TOO_LARGE', 413, `Content-Length ${contentLength} exceeds the limit of ${this.limits.maxBodySize} bytes`);
    }

    // RFC 9110 §10.1.1: an expectation the server cannot meet may get 417, as node:http answers
    // it; Expect is an HTTP/1.1 field, so an HTTP/1.0 request's is ignored, as for 100-continue.
    if (http11 && otherExpectation !== undefined) {
      fail('NSGI_EXPECTATION_FAILED', 417, `expectation ${quote(otherExpectation)} is not supported; only 100-continue is`);
    }

    const head: RequestHead = {
      method: this.method,
      target: this.target,
      version: this.version as 'HTTP/1.0' | 'HTTP/1.1',
      headers: this.headers,
      host,
      contentLength,
      chunked,
      keepAlive: http11 ? !close : keepAlive && !close,
      expectContinue: expectContinue && http11,
      upgrade: connUpgrade && hasUpgrade,
    };
    if (chunked) this.state = State.ChunkSize;
    else if (contentLength > 0) {
      this.state = State.Length;
      this.remaining = contentLength;
    } else this.state = State.End;
    return { kind: 'head', head };
  }

  // ---- bodies -----------------------------------------------------------------------------

  /** bytes are the received bytes from `start` to `end`, copied when the buffer is transient. */
  private bytes(start: number, end: number): Buffer {
    const view = this.buf.subarray(start, end);
    return this.borrowed ? Buffer.from(view) : view;
  }

  private readLengthBody(): ParserEvent {
    const available = this.buf.length - this.pos;
    if (available === 0) return NEED_DATA;
    const n = available < this.remaining ? available : this.remaining;
    const data = this.bytes(this.pos, this.pos + n);
    this.pos += n;
    this.remaining -= n;
    if (this.remaining === 0) this.state = State.End;
    return { kind: 'data', data };
  }

  private readChunked(): ParserEvent {
    const buf = this.buf;
    for (;;) {
      switch (this.state) {
        case State.ChunkSize: {
          const lf = buf.indexOf(LF, this.pos);
          if (lf === -1) {
            if (unfinishedLineLength(buf, this.pos) > MAX_CHUNK_LINE) fail('NSGI_CHUNK_LINE_TOO_LONG', 400, 'chunk-size line too long');
            return NEED_DATA;
          }
          if (lf === this.pos || buf[lf - 1] !== CR) fail('NSGI_BARE_LF', 400, 'chunk-size line ends in a bare LF');
          if (lf - 1 - this.pos > MAX_CHUNK_LINE) fail('NSGI_CHUNK_LINE_TOO_LONG', 400, 'chunk-size line too long');
          const size = parseChunkSize(buf, this.pos, lf - 1);
          this.pos = lf + 1;
          if (size === 0) {
            this.state = State.Trailers;
            this.lineStart = this.scan = this.pos;
            this.headerBytes = 0;
            continue;
          }
          this.bodyBytes += size;
          if (this.bodyBytes > this.limits.maxBodySize) {
            fail('NSGI_BODY_TOO_LARGE', 413, `chunked body exceeds the limit of ${this.limits.maxBodySize} bytes`);
          }
          this.remaining = size;
          this.state = State.ChunkData;
          continue;
        }
        case State.ChunkData: {
          const available = buf.length - this.pos;
          if (available === 0) return NEED_DATA;
          const n = available < this.remaining ? available : this.remaining;
          const data = this.bytes(this.pos, this.pos + n);
          this.pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          return { kind: 'data', data };
        }
        case State.ChunkDataEnd: {
          const available = buf.length - this.pos;
          if (available >= 1 && buf[this.pos] !== CR) fail('NSGI_BAD_CHUNK_END', 400, 'chunk data not followed by CRLF');
          if (available < 2) return NEED_DATA;
          if (buf[this.pos + 1] !== LF) fail('NSGI_BAD_CHUNK_END', 400, 'chunk data not followed by CRLF');
          this.pos += 2;
          this.state = State.ChunkSize;
          continue;
        }
        default:
          return this.readTrailers();
      }
    }
  }

  private readTrailers(): ParserEvent {
    const buf = this.buf;
    for (;;) {
      const lf = buf.indexOf(LF, this.scan);
      if (lf === -1) {
        const cr = bareCR(buf, Math.max(this.lineStart, this.scan - 1), buf.length);
        if (cr !== -1) this.refuseBareCRInTrailers(buf, cr);
        if (this.headerBytes + unfinishedLineLength(buf, this.lineStart) > this.limits.maxHeaderSize) {
          fail('NSGI_TRAILERS_TOO_LARGE', 431, `trailer section exceeds ${this.limits.maxHeaderSize} bytes`);
        }
        this.scan = buf.length;
        return NEED_DATA;
      }
      if (lf === this.lineStart || buf[lf - 1] !== CR) {
        const cr = bareCR(buf, this.lineStart, lf);
        if (cr !== -1) this.refuseBareCRInTrailers(buf, cr);
        fail('NSGI_BARE_LF', 400, 'trailer line ends in a bare LF');
      }
      const start = this.lineStart;
      const end = lf - 1;
      this.lineStart = this.scan = this.pos = lf + 1;
      if (end === start) {
        return this.end(this.trailers !== null ? { kind: 'end', trailers: this.trailers } : END_NO_TRAILERS);
      }
      this.trailerLine(buf, start, end);
    }
  }

  /** trailerLine takes one trailer field line, within the trailer section's limits. */
  private trailerLine(buf: Buffer, start: number, end: number): void {
    this.headerBytes += end - start + 2;
    if (this.headerBytes > this.limits.maxHeaderSize) {
      fail('NSGI_TRAILERS_TOO_LARGE', 431, `trailer section exceeds ${this.limits.maxHeaderSize} bytes`);
    }
    const trailers = (this.trailers ??= []);
    if (trailers.length >= this.limits.maxHeaderCount) {
      fail('NSGI_TOO_MANY_TRAILERS', 431, `more than ${this.limits.maxHeaderCount} trailer fields`);
    }
    trailers.push(parseField(buf, start, end, 'trailer'));
  }

  /** refuseBareCRInTrailers is {@link refuseBareCR} for the trailer section. */
  private refuseBareCRInTrailers(buf: Buffer, cr: number): never {
    this.trailerLine(buf, this.lineStart, cr + 2);
    fail('NSGI_BARE_CR', 400, 'trailer section contains a CR not followed by LF');
  }
}

/**
 * isFieldName tells whether a field name as received is `lower` (a lowercase name of the same
 * length) in any case, without making a lowercased copy. Setting bit 0x20 lowercases an ASCII
 * letter and leaves `-` as it is; among the token characters a name is made of (RFC 9110 §5.6.2)
 * only the letters land on a lowercase letter that way, so nothing else can match.
 */
function isFieldName(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** beginsWithHead tells whether the line from `start` begins with the method HEAD and its space. */
function beginsWithHead(buf: Buffer, start: number, end: number): boolean {
  return end - start > 4 && buf[start] === 0x48 && buf[start + 1] === 0x45 && buf[start + 2] === 0x41 && buf[start + 3] === 0x44 && buf[start + 4] === SP;
}

/**
 * bareCR finds, between `from` and `to`, a CR followed by a byte other than LF, or returns -1. A
 * CR that is the last byte before `to` may yet be followed by its LF, so it is not counted.
 */
function bareCR(buf: Buffer, from: number, to: number): number {
  for (let i = buf.indexOf(CR, from); i !== -1 && i + 1 < to; i = buf.indexOf(CR, i + 1)) {
    if (buf[i + 1] !== LF) return i;
  }
  return -1;
}

/** unfinishedLineLength is the length of a line still arriving, not counting a CR that may end it. */
function unfinishedLineLength(buf: Buffer, start: number): number {
  const end = buf.length;
  return end > start && buf[end - 1] === CR ? end - start - 1 : end - start;
}

/**
 * parseField reads one `name: value` line (without its CRLF), RFC 9112 §5; `section` names where
 * it stands, for messages.
 */
function parseField(buf: Buffer, start: number, end: number, section: 'header' | 'trailer' = 'header'): [string, string] {
  const first = buf[start]!;
  if (first === SP || first === HTAB) {
    fail('NSGI_OBS_FOLD', 400, 'obsolete line folding (a field line starting with whitespace)');
  }
  let i = start;
  while (i < end && TOKEN[buf[i]!] === 1) i++;
  if (i === end || buf[i] !== 0x3a) {
    // A line that is no field after the last chunk is most often the next request, sent
    // without the empty line that ends a chunked body.
    const hint = section === 'trailer' ? '; a chunked body ends with its last chunk, any trailers, then an empty line' : '';
    const line = quote(buf.toString('latin1', start, end));
    if (i < end && (buf[i] === SP || buf[i] === HTAB)) {
      fail('NSGI_SPACE_BEFORE_COLON', 400, `whitespace between field name and colon in ${section} line ${line}${hint}`);
    }
    fail('NSGI_BAD_FIELD_NAME', 400, `invalid ${section} field line ${line}${hint}`);
  }
  if (i === start) fail('NSGI_BAD_FIELD_NAME', 400, 'header field with an empty name');
  let vs = i + 1;
  let ve = end;
  while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
  while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
  for (let j = vs; j < ve; j++) {
    if (FIELD_VALUE[buf[j]!] === 0) {
      const b = buf[j]!;
      const what = b === CR ? 'a bare CR' : b === 0 ? 'NUL' : `byte 0x${b.toString(16).padStart(2, '0')}`;
      fail('NSGI_BAD_FIELD_VALUE', 400, `value of header ${quote(buf.toString('latin1', start, i))} contains ${what}`);
    }
  }
  // One string for the line, cut in two: crossing into C++ once per field rather than twice.
  const line = latin1Slice(buf, start, ve);
  return [line.slice(0, i - start), line.slice(vs - start)];
}

type RawSlice = { latin1Slice?(start: number, end: number): string };
/** latin1Slice is `buf.toString('latin1', start, end)` without its argument checks, where Node has the raw method. */
const latin1Slice: (buf: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as unknown as RawSlice).latin1Slice === 'function'
    ? (buf, start, end) => (buf as unknown as Required<RawSlice>).latin1Slice(start, end)
    : (buf, start, end) => buf.toString('latin1', start, end);

/** parseVersion reads `HTTP/x.y` (RFC 9112 §2.3); versions other than 1.x get 505. */
function parseVersion(buf: Buffer, start: number, end: number): 'HTTP/1.0' | 'HTTP/1.1' {
  if (
    end - start !== 8 ||
    buf[start] !== 0x48 || buf[start + 1] !== 0x54 || buf[start + 2] !== 0x54 || buf[start + 3] !== 0x50 ||
    buf[start + 4] !== 0x2f || buf[start + 6] !== 0x2e
  ) {
    fail('NSGI_BAD_VERSION', 400, `malformed HTTP version ${quote(buf.toString('latin1', start, end))}`);
  }
  const major = buf[start + 5]! - 0x30;
  const minor = buf[start + 7]! - 0x30;
  if (major < 0 || major > 9 || minor < 0 || minor > 9) {
    fail('NSGI_BAD_VERSION', 400, `malformed HTTP version ${quote(buf.toString('latin1', start, end))}`);
  }
  if (major !== 1) fail('NSGI_UNSUPPORTED_VERSION', 505, `HTTP/${major}.${minor} is not supported`);
  return minor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
}

// absolute-form for the two schemes an HTTP server serves: the scheme, then the authority.
const ABSOLUTE_FORM = /^https?:\/\/([^/?]*)/i;

/** checkTargetForm enforces the four request-target forms of RFC 9112 §3.2. */
function checkTargetForm(method: string, target: string): void {
  const c = target.charCodeAt(0);
  if (c === 0x2f) return; // origin-form
  if (method === 'CONNECT') return; // authority-form; the server answers CONNECT itself
  if (target === '*') {
    if (method === 'OPTIONS') return;
    fail('NSGI_BAD_TARGET', 400, `asterisk-form target with method ${quote(method)}`);
  }
  const absolute = ABSOLUTE_FORM.exec(target);
  if (absolute === null) fail('NSGI_BAD_TARGET', 400, `invalid request-target ${quote(target)}`);
  // The authority replaces Host (RFC 9112 §3.2.2), so it gets the checks Host gets. An http(s)
  // URI with an empty host MUST be rejected (RFC 9110 §4.2.1), and userinfo is an error (§4.2.4).
  const authority = absolute[1]!;
  if (authority.includes('@')) fail('NSGI_BAD_TARGET', 400, `userinfo in the request-target ${quote(target)}`);
  if (authority === '' || authority.charCodeAt(0) === 0x3a || !isHost(authority)) {
    fail('NSGI_BAD_TARGET', 400, `invalid authority in the request-target ${quote(target)}`);
  }
}

/** parseContentLength reads a Content-Length value: one or more digits and nothing else. */
function parseContentLength(value: string): number {
  if (value.length === 0 || value.length > 15) {
    fail('NSGI_BAD_CONTENT_LENGTH', 400, `invalid Content-Length ${quote(value)}`);
  }
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) fail('NSGI_BAD_CONTENT_LENGTH', 400, `invalid Content-Length ${quote(value)}`);
    n = n * 10 + d;
  }
  return n;
}

/**
 * checkTransferEncoding accepts exactly `chunked`: a request whose final coding is not chunked has
 * no reliable length (400, RFC 9112 §6.3), and any other coding is one nsgi does not decode (501).
 */
function checkTransferEncoding(value: string): void {
  const codings = value.split(',').map((c) => c.trim().toLowerCase());
  const last = codings[codings.length - 1]!;
  if (last !== 'chunked') {
    fail('NSGI_CHUNKED_NOT_FINAL', 400, `Transfer-Encoding ${quote(value)} does not end in chunked`);
  }
  for (let i = 0; i < codings.length - 1; i++) {
    const coding = codings[i]!;
    if (coding === 'chunked') fail('NSGI_CHUNKED_TWICE', 400, `Transfer-Encoding ${quote(value)} applies chunked twice`);
    const name = coding.split(';')[0]!.trim();
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) {
      fail('NSGI_BAD_TRANSFER_ENCODING', 400, `invalid Transfer-Encoding ${quote(value)}`);
    }
    fail('NSGI_UNSUPPORTED_TRANSFER_CODING', 501, `transfer coding ${quote(name)} is not supported`);
  }
}

/** parseChunkSize reads `chunk-size [ chunk-ext ]` (RFC 9112 §7.1) from one line without CRLF. */
function parseChunkSize(buf: Buffer, start: number, end: number): number {
  let i = start;
  let size = 0;
  let digits = 0;
  while (i < end) {
    const v = HEX[buf[i]!]!;
    if (v === 255) break;
    if (size !== 0 || v !== 0) digits++;
    // 13 significant hex digits stay below 2^53, so the arithmetic below is exact.
    if (digits > 13) fail('NSGI_CHUNK_SIZE_OVERFLOW', 400, 'chunk size too large');
    size = size * 16 + v;
    i++;
  }
  if (i === start) {
    fail('NSGI_BAD_CHUNK_SIZE', 400, `invalid chunk size line ${quote(buf.toString('latin1', start, end))}`);
  }
  if (i < end && !CHUNK_EXT.test(buf.toString('latin1', i, end))) {
    fail('NSGI_BAD_CHUNK_EXTENSION', 400, `invalid chunk size line ${quote(buf.toString('latin1', start, end))}`);
  }
  return size;
}
