/**
 * What the HTTP/1.1 connections of one server share: its configuration turned into bytes once,
 * the caches that spare each request work its predecessors already did, and the slab their
 * output is copied into. A server makes one {@link Http1Shared} and hands it to every connection,
 * so two servers in one process share nothing.
 */
import { OutBuffer, Slab } from './out-buffer.ts';
import { DEFAULT_LIMITS, resolveLimits, type ParserLimits } from './parser.ts';
import { Framing, HeadCache, type PreparedHeaders, type Status } from './writer.ts';

/**
 * EncodedHead is the last response head a server encoded, with everything it was made from.
 * Servers send the same head again and again (same status, same prepared headers, same second);
 * the encoded string is then reused rather than concatenated anew, and it is already flat for
 * the write.
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
}

const NO_HEAD: EncodedHead = Object.freeze({
  status: null, headers: null, date: '', framing: Framing.None, keepAlive: false, http11: false, length: -1, head: '',
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

  /** outBuffer makes a connection's output buffer, on the server's slab. */
  outBuffer(): OutBuffer {
    return new OutBuffer(this.slab);
  }
}
