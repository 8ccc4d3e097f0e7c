/**
 * What the HTTP/1.1 connections of one server share: its configuration turned into bytes once,
 * the caches that spare each request work its predecessors already did, and the slab their
 * output is copied into. A server makes one {@link Http1Shared} and hands it to every connection,
 * so two servers in one process share nothing.
 */
import { OutBuffer, Slab } from './out-buffer.ts';
import { DEFAULT_LIMITS, resolveLimits, type ParserLimits } from './parser.ts';
import { Framing, HeadCache, blockWithoutLength, connectionOptions, httpDate, type PreparedHeaders, type Status } from './writer.ts';

/**
 * EncodedHead is the last response head a server encoded, with everything it was made from.
 * Servers send the same head again and again (same status, same prepared headers, same second);
 * the encoded head is then reused rather than concatenated anew, as bytes from its second use on:
 * copying bytes into the output costs no call into C++, writing a string does.
 */
export interface EncodedHead {
  readonly status: Status | null;
  readonly headers: PreparedHeaders | null;
  readonly date: string;
  readonly framing: Framing;
  readonly keepAlive: boolean;
  readonly http11: boolean;
  readonly length: number;
  readonly head: string;
  /** The head as latin1 bytes, made when it is first reused. */
  bytes: Uint8Array | null;
}

// Matches no head, so its bytes are never made.
const NO_HEAD: EncodedHead = Object.freeze({
  status: null, headers: null, date: '', framing: Framing.None, keepAlive: false, http11: false, length: -1, head: '', bytes: null,
});

/** Http1Shared is what every HTTP/1.1 connection of one server shares. */
export class Http1Shared {
  /** limits bound what one request may make the server hold (one frozen object for every parser). */
  readonly limits: Readonly<ParserLimits>;
  /** serverHeader is the `Server` line the server adds, '' for none. */
  readonly serverHeader: string;
  /**
   * keepAliveHeader is the `Keep-Alive: timeout=N` line announced on reused connections, '' for
   * none (RFC 9112 §9.3 leaves its use open; clients such as Node's agents use it to retire a
   * pooled connection before the server closes it, instead of racing the close).
   */
  readonly keepAliveHeader: string;
  /** heads checks and remembers the statuses and header lists of the server's apps. */
  readonly heads = new HeadCache();
  /** lastHead is the last response head encoded; see {@link EncodedHead}. */
  lastHead: EncodedHead = NO_HEAD;
  private readonly slab = new Slab();

  /** `keepAliveTimeout` (ms) is announced when it is a second or more; see keepAliveHeader. */
  constructor(limits: Partial<ParserLimits> = DEFAULT_LIMITS, serverName = 'nsgi', keepAliveTimeout = 0) {
    this.limits = resolveLimits(limits);
    this.serverHeader = serverName === '' ? '' : `Server: ${serverName}\r\n`;
    const seconds = Math.floor(keepAliveTimeout / 1000);
    this.keepAliveHeader = seconds >= 1 && Number.isFinite(seconds) ? `Keep-Alive: timeout=${seconds}\r\n` : '';
  }

  /**
   * encodeHead is a response head as it goes on the wire: the status line, the app's fields
   * (less its Content-Length when `dropAppLength`), Date and Server unless the app gave them, the
   * framing (`added` is a Content-Length the server adds, -1 for none), a 426's Upgrade, and the
   * Connection and Keep-Alive fields. A head made of the same parts as the last one is the same
   * head, given as bytes (see {@link EncodedHead}).
   */
  encodeHead(
    status: Status, headers: PreparedHeaders, framing: Framing, keepAlive: boolean, http11: boolean, added: number, dropAppLength: boolean,
  ): string | Uint8Array {
    const date = headers.hasDate ? '' : httpDate();
    const c = this.lastHead;
    if (
      c.status === status && c.headers === headers && c.date === date && c.framing === framing &&
      c.keepAlive === keepAlive && c.http11 === http11 && c.length === added
    ) {
      return (c.bytes ??= Buffer.from(c.head, 'latin1'));
    }
    let head = status.line;
    head += dropAppLength ? blockWithoutLength(headers) : headers.block;
    if (date !== '') head += `Date: ${date}\r\n`;
    if (!headers.hasServer) head += this.serverHeader;
    if (added >= 0) head += `Content-Length: ${added}\r\n`;
    else if (framing === Framing.Chunked) head += 'Transfer-Encoding: chunked\r\n';
    // RFC 9110 §15.5.22: a 426 names the protocols to switch to.
    const upgrade = status.code === 426 ? headers.upgrade : '';
    if (upgrade !== '') head += `Upgrade: ${upgrade}\r\n`;
    const connection = connectionOptions(upgrade !== '', !keepAlive, !http11);
    if (connection !== '') head += `Connection: ${connection}\r\n`;
    if (keepAlive) head += this.keepAliveHeader;
    head += '\r\n';
    this.lastHead = { status, headers, date, framing, keepAlive, http11, length: added, head, bytes: null };
    return head;
  }

  /** outBuffer makes a connection's output buffer, on the server's slab. */
  outBuffer(): OutBuffer {
    return new OutBuffer(this.slab);
  }
}
