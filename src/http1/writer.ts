/**
 * The sans-I/O response side of HTTP/1.1: checking an app's status and headers, choosing the
 * framing, and encoding heads and chunks into an {@link OutBuffer} that the server flushes to its
 * socket. Nothing here touches a socket.
 */
import { isFieldValue, isToken } from './syntax.ts';

// ---- status ------------------------------------------------------------------------------

/** Status is a checked status: its code and the status line that goes on the wire. */
export interface Status {
  code: number;
  /** `HTTP/1.1 200 OK\r\n` */
  line: string;
}

const statusCache = new Map<string, Status>();

/**
 * parseStatus checks an app's status string (`"200 OK"`, SPEC §4.1) and returns its code and
 * line. It throws a TypeError naming the problem; statuses seen before come from a cache.
 */
export function parseStatus(status: unknown): Status {
  if (typeof status !== 'string') throw new TypeError(`status must be a string like "200 OK", got ${describe(status)}`);
  const cached = statusCache.get(status);
  if (cached !== undefined) return cached;
  const code = status.length >= 3 ? Number(status.slice(0, 3)) : NaN;
  if (!/^[1-5][0-9][0-9](?: [\t\x20-\x7e\x80-\xff]*)?$/.test(status) || code < 100) {
    throw new TypeError(`status ${JSON.stringify(status)} is not a three-digit code, a space and a reason phrase (SPEC §4.1)`);
  }
  if (code < 200) {
    throw new TypeError(`status ${JSON.stringify(status)} is informational; an app's final status is 200-599 (SPEC §4.1)`);
  }
  const parsed: Status = { code, line: `HTTP/1.1 ${status.length === 3 ? status + ' ' : status}\r\n` };
  if (statusCache.size < 512) statusCache.set(status, parsed);
  return parsed;
}

/** REASONS are the reason phrases the server uses for the responses it writes itself. */
export const REASONS: Record<number, string> = {
  100: 'Continue', 103: 'Early Hints', 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 408: 'Request Timeout',
  413: 'Content Too Large', 414: 'URI Too Long', 417: 'Expectation Failed', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable', 505: 'HTTP Version Not Supported',
};

/**
 * bodyAllowedForStatus tells whether a response with this status may carry a body: not 1xx, 204
 * or 304 (RFC 9110 §6.4.1), nor 205, which a server MUST NOT send content in (§15.3.6).
 */
export function bodyAllowedForStatus(code: number): boolean {
  return !(code < 200 || code === 204 || code === 205 || code === 304);
}

// ---- headers -----------------------------------------------------------------------------

/** PreparedHeaders is an app's header list, checked and encoded once. It is shared: never mutate it. */
export interface PreparedHeaders {
  /** The fields to send, each as `name: value\r\n`, hop-by-hop fields removed. */
  block: string;
  /** The app's Content-Length, or -1 when it gave none. */
  contentLength: number;
  /** The app sent `Connection: close`. */
  close: boolean;
  /** The app sent its own Date. */
  hasDate: boolean;
  /** The app sent its own Server. */
  hasServer: boolean;
  /** The app's Upgrade value, '' for none: hop-by-hop, sent only in a 426 (RFC 9110 §15.5.22). */
  upgrade: string;
}

/**
 * prepareHeaders checks an app's headers (SPEC §4.2) and encodes them. Names must be tokens and
 * values free of CR, LF, NUL and other controls; a violation throws a TypeError naming the header,
 * so nothing invalid ever reaches the wire. Hop-by-hop fields are the server's and are dropped,
 * except that `Connection: close` is honoured and `Upgrade` is kept aside for a 426.
 */
export function prepareHeaders(headers: unknown): PreparedHeaders {
  if (!Array.isArray(headers)) throw new TypeError(`headers must be an array of [name, value] pairs, got ${describe(headers)}`);
  if (matchesLast(headers)) return lastPrepared!;
  const prepared = prepareFresh(headers);
  rememberLast(headers, prepared);
  return prepared;
}

// Apps tend to send the same header list on every response, built from the same string literals.
// The last list prepared is remembered as its strings; a list made of the very same strings is
// valid and encodes the same way, so it skips the checks.
let lastStrings: string[] = [];
let lastPrepared: PreparedHeaders | null = null;

function matchesLast(headers: unknown[]): boolean {
  const last = lastStrings;
  if (lastPrepared === null || headers.length * 2 !== last.length) return false;
  for (let i = 0; i < headers.length; i++) {
    const pair = headers[i];
    if (!Array.isArray(pair) || pair.length !== 2 || pair[0] !== last[2 * i] || pair[1] !== last[2 * i + 1]) return false;
  }
  return true;
}

function rememberLast(headers: unknown[], prepared: PreparedHeaders): void {
  const strings: string[] = [];
  for (const pair of headers as unknown[][]) {
    if (typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      lastPrepared = null;
      return;
    }
    strings.push(pair[0], pair[1]);
  }
  lastStrings = strings;
  lastPrepared = prepared;
}

function prepareFresh(headers: unknown[]): PreparedHeaders {
  const facts: HeaderFacts = { contentLength: -1, close: false, hasDate: false, hasServer: false, upgrade: '' };
  let block = '';
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = checkField(headers[i], i);
    if (noteField(name, value, facts)) block += `${name}: ${value}\r\n`;
  }
  return Object.freeze({ block, ...facts });
}

/**
 * FORBIDDEN_TRAILER_FIELDS are the fields, in lower case, that a response never carries in its
 * trailer section. RFC 9110 §6.5.1 forbids in trailers the fields that frame the message
 * (Content-Length, Transfer-Encoding, Trailer), route it (Host), authenticate (Authorization,
 * the -Authenticate challenges, Authentication-Info, and the cookies that carry sessions), or
 * decide how the content is handled (Content-Type, Content-Encoding, Content-Range): a recipient
 * that has already acted on the head would read them too late, or, merging them into the head,
 * would let a streamed body rewrite its own framing or credentials.
 */
export const FORBIDDEN_TRAILER_FIELDS: ReadonlySet<string> = new Set([
  'content-length', 'transfer-encoding', 'trailer', 'host',
  'authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate',
  'authentication-info', 'proxy-authentication-info', 'set-cookie', 'cookie',
  'content-type', 'content-encoding', 'content-range',
]);

/**
 * prepareTrailers checks an app's trailer fields (SPEC EXT-11) and encodes them: everything
 * {@link prepareHeaders} checks, and none of {@link FORBIDDEN_TRAILER_FIELDS}. A violation throws a
 * TypeError naming the field, so the app learns of it where it called `set_trailers`.
 */
export function prepareTrailers(trailers: unknown): PreparedHeaders {
  const prepared = prepareHeaders(trailers);
  for (const pair of trailers as Array<[string, unknown]>) {
    if (FORBIDDEN_TRAILER_FIELDS.has(pair[0].toLowerCase())) {
      throw new TypeError(`trailer field ${JSON.stringify(pair[0])} is not allowed in a trailer section: it frames, routes, authenticates or describes the response, so it belongs in the head (SPEC EXT-11, RFC 9110 §6.5.1)`);
    }
  }
  return prepared;
}

/**
 * checkHeaderList checks an app's header list like {@link prepareHeaders} and returns the fields
 * to send as a list, for servers that set headers one by one (the node:http adapter) rather than
 * writing a head.
 */
export function checkHeaderList(headers: unknown): { headers: Array<[string, string]>; contentLength: number; close: boolean; upgrade: string } {
  if (!Array.isArray(headers)) throw new TypeError(`headers must be an array of [name, value] pairs, got ${describe(headers)}`);
  const facts: HeaderFacts = { contentLength: -1, close: false, hasDate: false, hasServer: false, upgrade: '' };
  const out: Array<[string, string]> = [];
  for (let i = 0; i < headers.length; i++) {
    const field = checkField(headers[i], i);
    if (noteField(field[0], field[1], facts)) out.push(field);
  }
  return { headers: out, contentLength: facts.contentLength, close: facts.close, upgrade: facts.upgrade };
}

/** HeaderFacts is what the fields the server cares about say, gathered while a list is checked. */
interface HeaderFacts {
  contentLength: number;
  close: boolean;
  hasDate: boolean;
  hasServer: boolean;
  upgrade: string;
}

/** checkField checks one `[name, value]` pair (SPEC §4.2) and returns it with a string value. */
function checkField(pair: unknown, i: number): [string, string] {
  if (!Array.isArray(pair) || pair.length !== 2) {
    throw new TypeError(`header #${i} must be a [name, value] pair, got ${describe(pair)}`);
  }
  const name: unknown = pair[0];
  let value: unknown = pair[1];
  if (typeof name !== 'string' || !isToken(name)) {
    throw new TypeError(`header name ${describe(name)} is not a valid token (SPEC §4.2)`);
  }
  if (typeof value === 'number') value = String(value);
  if (typeof value !== 'string') throw new TypeError(`value of header ${JSON.stringify(name)} must be a string, got ${describe(value)}`);
  if (!isFieldValue(value)) {
    throw new TypeError(`value of header ${JSON.stringify(name)} contains CR, LF, NUL, another control character or a character above U+00FF: ${JSON.stringify(value)} (SPEC §4.2)`);
  }
  return [name, value];
}

/**
 * noteField records what a field the server cares about says, and tells whether the field is to
 * be sent: hop-by-hop fields are the server's (`Connection: close` is honoured), and a repeated
 * Content-Length of the same value is sent once.
 */
function noteField(name: string, value: string, facts: HeaderFacts): boolean {
  switch (classifyHeader(name)) {
    case Special.ContentLength:
      if (!/^[0-9]{1,15}$/.test(value)) throw new TypeError(`Content-Length ${JSON.stringify(value)} is not a non-negative integer (SPEC §4.3)`);
      if (facts.contentLength !== -1 && facts.contentLength !== Number(value)) throw new TypeError(`two different Content-Length headers (SPEC §4.3)`);
      if (facts.contentLength !== -1) return false;
      facts.contentLength = Number(value);
      return true;
    case Special.Connection:
      if (/(?:^|,)[ \t]*close[ \t]*(?:,|$)/i.test(value)) facts.close = true;
      return false;
    case Special.Upgrade:
      facts.upgrade = facts.upgrade === '' ? value : `${facts.upgrade}, ${value}`;
      return false;
    case Special.HopByHop:
      return false;
    case Special.Date:
      facts.hasDate = true;
      return true;
    case Special.Server:
      facts.hasServer = true;
      return true;
    default:
      return true;
  }
}

const enum Special {
  None,
  ContentLength,
  Connection,
  HopByHop,
  Upgrade,
  Date,
  Server,
}

/** classifyHeader finds the fields the server treats specially; the length test keeps it cheap. */
function classifyHeader(name: string): Special {
  switch (name.length) {
    case 2:
      return name.toLowerCase() === 'te' ? Special.HopByHop : Special.None;
    case 4:
      return name.toLowerCase() === 'date' ? Special.Date : Special.None;
    case 6:
      return name.toLowerCase() === 'server' ? Special.Server : Special.None;
    case 7:
      return name.toLowerCase() === 'upgrade' ? Special.Upgrade : Special.None;
    case 10: {
      const lower = name.toLowerCase();
      return lower === 'connection' ? Special.Connection : lower === 'keep-alive' ? Special.HopByHop : Special.None;
    }
    case 14:
      return name.toLowerCase() === 'content-length' ? Special.ContentLength : Special.None;
    case 16:
      return name.toLowerCase() === 'proxy-connection' ? Special.HopByHop : Special.None;
    case 17:
      return name.toLowerCase() === 'transfer-encoding' ? Special.HopByHop : Special.None;
    default:
      return Special.None;
  }
}

/**
 * connectionOptions is the value of the server's own Connection field, '' for none: `close` when
 * the connection ends after the response, `keep-alive` to an HTTP/1.0 client when it does not
 * (HTTP/1.1 persists by default), and `upgrade` first when the response carries an Upgrade field,
 * as a 426 does (RFC 9110 §7.8, §15.5.22).
 */
export function connectionOptions(upgrade: boolean, close: boolean, http10: boolean): string {
  const persistence = close ? 'close' : http10 ? 'keep-alive' : '';
  if (!upgrade) return persistence;
  return persistence === '' ? 'upgrade' : `upgrade, ${persistence}`;
}

/** describe names a value's type for an error message. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'a Uint8Array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value);
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  if (typeof value === 'function') return value.name === '' ? 'a function' : `the function ${value.name}`;
  return `${typeof value} ${String(value)}`;
}

// ---- framing -----------------------------------------------------------------------------

/** Framing is how a response body is delimited on the wire (RFC 9112 §6). */
export enum Framing {
  /** No body at all: HEAD, 1xx, 204, 205, 304. */
  None,
  /** Content-Length. */
  Length,
  /** Transfer-Encoding: chunked. */
  Chunked,
  /** The body ends when the connection closes (HTTP/1.0 without a length). */
  Close,
}

/**
 * chooseFraming decides how a response is framed, in one place:
 * 1. HEAD and statuses without a body (1xx, 204, 205, 304) send no body (RFC 9110 §9.3.2, §6.4.1).
 * 2. A Content-Length the app gave, or the server learned by having the whole body, is used.
 * 3. Otherwise an HTTP/1.1 client gets chunked coding (RFC 9112 §7).
 * 4. Otherwise (HTTP/1.0) the body ends with the connection (RFC 9112 §6.3, step 8).
 */
export function chooseFraming(isHead: boolean, code: number, contentLength: number, http11: boolean): Framing {
  if (isHead || !bodyAllowedForStatus(code)) return Framing.None;
  if (contentLength >= 0) return Framing.Length;
  return http11 ? Framing.Chunked : Framing.Close;
}

// ---- Date --------------------------------------------------------------------------------

let dateValue = '';
let dateExpires = 0;

/** httpDate returns the current time as an IMF-fixdate, recomputed at most once a second. */
export function httpDate(): string {
  const now = Date.now();
  if (now >= dateExpires) {
    dateValue = new Date(now).toUTCString();
    dateExpires = now - (now % 1000) + 1000;
  }
  return dateValue;
}

// ---- output ------------------------------------------------------------------------------

/** Appends of at least this many bytes are queued by reference instead of copied. */
const COPY_LIMIT = 16 * 1024;
const SLAB_SIZE = 64 * 1024;

const HEX_DIGITS = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

// Buffer's own latin1Write and utf8Write skip the argument checks of buf.write(); they are not in
// Node's type definitions, so they are looked up once and write() stands in where they are missing.
interface RawWrites {
  latin1Write?(s: string, offset: number, length: number): number;
  utf8Write?(s: string, offset: number, length: number): number;
}
const rawWrites = Buffer.prototype as unknown as RawWrites;
const writeLatin1: (b: Buffer, s: string, at: number, n: number) => void =
  typeof rawWrites.latin1Write === 'function'
    ? (b, s, at, n) => void (b as unknown as Required<RawWrites>).latin1Write(s, at, n)
    : (b, s, at, n) => void b.write(s, at, n, 'latin1');
const writeUtf8: (b: Buffer, s: string, at: number, n: number) => void =
  typeof rawWrites.utf8Write === 'function'
    ? (b, s, at, n) => void (b as unknown as Required<RawWrites>).utf8Write(s, at, n)
    : (b, s, at, n) => void b.write(s, at, n, 'utf8');

// One slab shared by every connection, as Node's Buffer pool is. Bytes are appended and never
// rewritten; a connection extends its open part only while nobody else has appended after it.
let slab = Buffer.allocUnsafe(SLAB_SIZE);
let slabUsed = 0;

/**
 * OutBuffer gathers a connection's outgoing bytes until the server flushes them, so that a head,
 * small chunks and their framing, or several pipelined responses leave in one write. An idle
 * OutBuffer holds no memory of its own.
 */
export class OutBuffer {
  // Made when the first part is sealed, so an idle buffer holds no array.
  private parts: Uint8Array[] | null = null;
  private open: Buffer | null = null;
  private openStart = 0;
  private openEnd = 0;
  /** size is the number of bytes waiting to be flushed. */
  size = 0;

  /** latin1 appends a string of characters up to U+00FF, one byte each. */
  latin1(s: string): void {
    const n = s.length;
    if (n === 0) return;
    const at = this.reserve(n);
    writeLatin1(slab, s, at, n);
  }

  /** utf8 appends a string as UTF-8 and returns its length in bytes. */
  utf8(s: string, byteLength: number): void {
    if (byteLength === 0) return;
    if (byteLength >= COPY_LIMIT) return this.bytes(Buffer.from(s, 'utf8'));
    const at = this.reserve(byteLength);
    writeUtf8(slab, s, at, byteLength);
  }

  /**
   * chunkFrame appends the size line of a chunk (RFC 9112 §7.1), or, with `crlfFirst`, the CRLF
   * that ends the previous chunk and then the size line: byte stores, no string made.
   */
  chunkFrame(size: number, crlfFirst: boolean): void {
    let digits = 1;
    while (size >>> (digits * 4) !== 0 && digits < 8) digits++;
    if (size > 0xffffffff) digits = size.toString(16).length;
    const n = digits + 2 + (crlfFirst ? 2 : 0);
    let at = this.reserve(n);
    const s = slab;
    if (crlfFirst) {
      s[at++] = 0x0d;
      s[at++] = 0x0a;
    }
    if (size > 0xffffffff) {
      s.write(size.toString(16), at, digits, 'latin1');
      at += digits;
    } else {
      for (let i = digits - 1; i >= 0; i--) s[at++] = HEX_DIGITS[(size >>> (i * 4)) & 0xf]!;
    }
    s[at++] = 0x0d;
    s[at] = 0x0a;
  }

  /** crlf appends CRLF. */
  crlf(): void {
    const at = this.reserve(2);
    slab[at] = 0x0d;
    slab[at + 1] = 0x0a;
  }

  /** bytes appends raw bytes: copied when small, queued by reference when large. */
  bytes(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) return;
    if (n >= COPY_LIMIT) {
      this.seal();
      (this.parts ??= []).push(data);
      this.size += n;
      return;
    }
    const at = this.reserve(n);
    slab.set(data, at);
  }

  /** take returns everything gathered, in order, and leaves the buffer empty. */
  take(): Uint8Array[] {
    this.seal();
    const parts = this.parts ?? [];
    this.parts = null;
    this.size = 0;
    return parts;
  }

  private reserve(n: number): number {
    this.size += n;
    if (this.open === slab && this.openEnd === slabUsed && slabUsed + n <= slab.length) {
      slabUsed += n;
      this.openEnd = slabUsed;
      return slabUsed - n;
    }
    this.seal();
    if (slabUsed + n > slab.length) {
      slab = Buffer.allocUnsafe(n > SLAB_SIZE ? n : SLAB_SIZE);
      slabUsed = 0;
    }
    this.open = slab;
    this.openStart = slabUsed;
    slabUsed += n;
    this.openEnd = slabUsed;
    return this.openStart;
  }

  private seal(): void {
    if (this.open !== null) {
      (this.parts ??= []).push(this.open.subarray(this.openStart, this.openEnd));
      this.open = null;
    }
  }
}

/** LAST_CHUNK ends a chunked body that has no trailers. */
export const LAST_CHUNK = '0\r\n\r\n';
