/**
 * The sans-I/O response side of HTTP/1.1: checking an app's status, encoding its checked headers
 * (the fields themselves are checked in `fields.ts`), choosing the framing, and what the heads are
 * made of (status lines, reason phrases, the Connection field, the Date). The bytes are gathered
 * by an OutBuffer (`out-buffer.ts`). Nothing here touches a socket.
 */
import { checkField, describe, noteField, type HeaderFacts } from './fields.ts';

// ---- status ------------------------------------------------------------------------------

/** Status is a checked status: its code and the status line that goes on the wire. */
export interface Status {
  code: number;
  /** `HTTP/1.1 200 OK\r\n` */
  line: string;
}

/**
 * parseStatus checks an app's status string (`"200 OK"`, SPEC §4.1) and returns its code and
 * line. It throws a TypeError naming the problem.
 */
export function parseStatus(status: unknown): Status {
  if (typeof status !== 'string') throw new TypeError(`status must be a string like "200 OK", got ${describe(status)}`);
  const code = status.length >= 3 ? Number(status.slice(0, 3)) : NaN;
  if (!/^[1-5][0-9][0-9](?: [\t\x20-\x7e\x80-\xff]*)?$/.test(status) || code < 100) {
    throw new TypeError(`status ${JSON.stringify(status)} is not a three-digit code, a space and a reason phrase (SPEC §4.1)`);
  }
  if (code < 200) {
    throw new TypeError(`status ${JSON.stringify(status)} is informational; an app's final status is 200-599 (SPEC §4.1)`);
  }
  return { code, line: `HTTP/1.1 ${status.length === 3 ? status + ' ' : status}\r\n` };
}

/** statusReason is the reason phrase of a checked status, possibly empty (SPEC §4.1). */
export function statusReason(status: Status): string {
  // The line is `HTTP/1.1 200 OK\r\n`: the reason follows the code and its space.
  return status.line.slice(13, -2);
}

/** REASONS are the reason phrases the server uses for the responses it writes itself. */
export const REASONS: Record<number, string> = {
  100: 'Continue', 103: 'Early Hints', 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 408: 'Request Timeout',
  413: 'Content Too Large', 414: 'URI Too Long', 417: 'Expectation Failed', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable', 505: 'HTTP Version Not Supported',
};

/**
 * OVERLOADED_RESPONSE is the whole answer to a connection beyond the server's limit, written
 * before any request is read: 503, a retry hint (RFC 9110 §10.2.3), and the connection closes.
 */
export const OVERLOADED_RESPONSE = ((body: string) =>
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n' +
  `Content-Length: ${body.length}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`)('Service Unavailable: too many connections\n');

/**
 * switchingProtocolsHead is a `101 Switching Protocols` head (RFC 9110 §15.2.2): the app's fields
 * as an encoded `block`, then the Connection and Upgrade fields a 101 needs (§7.8).
 */
export function switchingProtocolsHead(block: string, upgrade: string): string {
  return `HTTP/1.1 101 Switching Protocols\r\n${block}Connection: Upgrade\r\nUpgrade: ${upgrade}\r\n\r\n`;
}

/**
 * BodyRule is what a response may carry, by request method and status; {@link bodyRule} decides
 * it. Only Body carries content; the others differ in the Content-Length their head may have.
 */
export const enum BodyRule {
  /** A body, framed by a Content-Length or by chunked coding. */
  Body,
  /** No body (the request was HEAD); the head may have the framing fields a GET would have had. */
  Head,
  /** No body and no Content-Length at all (1xx, 204). */
  NoContent,
  /** No body, and `Content-Length: 0` in place of any the app gave (205). */
  ResetContent,
  /** No body; the app's Content-Length stands, and none is computed (304). */
  NotModified,
}

/**
 * bodyRule decides, in the one place that knows these statuses, what a response may carry:
 * 1. 1xx and 204 have no content and no Content-Length (RFC 9110 §6.4.1, §8.6).
 * 2. 205 has no content, and, not being bodiless by definition, says so with `Content-Length: 0`
 *    (§15.3.6; SPEC SR-20).
 * 3. 304 has no content; a Content-Length the app gave describes the selected representation
 *    (§15.4.5), so it stands, and the server computes none.
 * 4. A response to HEAD has no content, whatever its status; its head may carry the framing
 *    fields a GET would have had (§9.3.2).
 * 5. Anything else carries a body.
 */
export function bodyRule(isHead: boolean, code: number): BodyRule {
  if (code < 200 || code === 204) return BodyRule.NoContent;
  if (code === 205) return BodyRule.ResetContent;
  if (code === 304) return BodyRule.NotModified;
  return isHead ? BodyRule.Head : BodyRule.Body;
}

/**
 * addedContentLength is the Content-Length the server itself puts in a head under `rule`, -1 for
 * none: 0 for a 205; when the app gave none, the whole body's length where it is known
 * (`knownLength`, else -1) and the rule allows one. The app's own Content-Length is sent as it
 * gave it, except under NoContent and ResetContent, which drop it (see {@link dropsAppLength}).
 */
export function addedContentLength(rule: BodyRule, appLength: number, knownLength: number): number {
  if (rule === BodyRule.ResetContent) return 0;
  if (appLength >= 0 || rule === BodyRule.NoContent || rule === BodyRule.NotModified) return -1;
  return knownLength;
}

/** dropsAppLength tells whether the app's Content-Length is left out of the head under `rule`. */
export function dropsAppLength(rule: BodyRule): boolean {
  return rule === BodyRule.NoContent || rule === BodyRule.ResetContent;
}

/** bodyAllowedForStatus tells whether a response with this status may carry a body (see {@link bodyRule}). */
export function bodyAllowedForStatus(code: number): boolean {
  return bodyRule(false, code) === BodyRule.Body;
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
 * blockWithoutLength is a prepared header block less the app's Content-Length, for a head that
 * must not carry it: a 1xx or a 204 (RFC 9110 §8.6), or a 205, whose length is the server's 0.
 */
export function blockWithoutLength(headers: PreparedHeaders): string {
  return headers.contentLength >= 0 ? headers.block.replace(/^content-length:[^\r]*\r\n/gim, '') : headers.block;
}

/**
 * prepareHeaders checks an app's headers (SPEC §4.2) and encodes them. Names must be tokens and
 * values free of CR, LF, NUL and other controls; a violation throws a TypeError naming the header,
 * so nothing invalid ever reaches the wire. Hop-by-hop fields are the server's and are dropped,
 * except that `Connection: close` is honoured and `Upgrade` is kept aside for a 426.
 */
export function prepareHeaders(headers: unknown): PreparedHeaders {
  if (!Array.isArray(headers)) throw new TypeError(`headers must be an array of [name, value] pairs, got ${describe(headers)}`);
  return prepareFresh(headers);
}

/** Most distinct status strings a HeadCache keeps. */
const MAX_CACHED_STATUSES = 512;

/**
 * HeadCache is {@link parseStatus} and {@link prepareHeaders} with a memory, one per server:
 * apps send the same few statuses, and tend to send the same header list on every response,
 * built from the same string literals. Every status seen is kept (up to MAX_CACHED_STATUSES),
 * and the last list prepared as its strings: a list made of the very same strings is valid and
 * encodes the same way, so it skips the checks.
 */
export class HeadCache {
  private readonly statuses = new Map<string, Status>();
  private lastStrings: string[] = [];
  private lastPrepared: PreparedHeaders | null = null;

  /** status is {@link parseStatus}, from the cache when the string was seen before. */
  status(status: unknown): Status {
    if (typeof status === 'string') {
      const cached = this.statuses.get(status);
      if (cached !== undefined) return cached;
    }
    const parsed = parseStatus(status);
    if (this.statuses.size < MAX_CACHED_STATUSES) this.statuses.set(status as string, parsed);
    return parsed;
  }

  /** headers is {@link prepareHeaders}, the last answer again when the list repeats the last one's strings. */
  headers(headers: unknown): PreparedHeaders {
    if (!Array.isArray(headers)) return prepareHeaders(headers);
    if (this.matchesLast(headers)) return this.lastPrepared!;
    const prepared = prepareFresh(headers);
    this.rememberLast(headers, prepared);
    return prepared;
  }

  private matchesLast(headers: unknown[]): boolean {
    const last = this.lastStrings;
    if (this.lastPrepared === null || headers.length * 2 !== last.length) return false;
    for (let i = 0; i < headers.length; i++) {
      const pair = headers[i];
      if (!Array.isArray(pair) || pair.length !== 2 || pair[0] !== last[2 * i] || pair[1] !== last[2 * i + 1]) return false;
    }
    return true;
  }

  private rememberLast(headers: unknown[], prepared: PreparedHeaders): void {
    const strings: string[] = [];
    for (const pair of headers as unknown[][]) {
      if (typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        this.lastPrepared = null;
        return;
      }
      strings.push(pair[0], pair[1]);
    }
    this.lastStrings = strings;
    this.lastPrepared = prepared;
  }
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

// ---- framing -----------------------------------------------------------------------------

/** Framing is how a response body is delimited on the wire (RFC 9112 §6). */
export enum Framing {
  /** No body at all (see {@link bodyRule}). */
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
 * 1. A response without a body (see {@link bodyRule}) has no framing.
 * 2. A Content-Length the app gave, or the server learned by having the whole body, is used.
 * 3. Otherwise an HTTP/1.1 client gets chunked coding (RFC 9112 §7).
 * 4. Otherwise (HTTP/1.0) the body ends with the connection (RFC 9112 §6.3, step 8).
 */
export function chooseFraming(isHead: boolean, code: number, contentLength: number, http11: boolean): Framing {
  if (bodyRule(isHead, code) !== BodyRule.Body) return Framing.None;
  if (contentLength >= 0) return Framing.Length;
  return http11 ? Framing.Chunked : Framing.Close;
}

// ---- Date --------------------------------------------------------------------------------

// The clock is the one thing every server of a process may share: the cached string is a
// function of the current second alone. It is dropped by a timer at the next second boundary, as
// node:http does, rather than checked against the clock on every response: reading the clock costs
// a call into the runtime per response, the timer one per second. A Date is late by at most the
// event loop's lag, which is also how late that timer would be.
let dateValue = '';

/** httpDate returns the current time as an IMF-fixdate, recomputed at most once a second. */
export function httpDate(): string {
  if (dateValue === '') {
    const now = Date.now();
    dateValue = new Date(now).toUTCString();
    setTimeout(expireDate, 1000 - (now % 1000)).unref();
  }
  return dateValue;
}

function expireDate(): void {
  dateValue = '';
}

/** LAST_CHUNK ends a chunked body that has no trailers. */
export const LAST_CHUNK = '0\r\n\r\n';
