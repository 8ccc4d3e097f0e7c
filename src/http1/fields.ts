/**
 * Checking an app's header and trailer fields (SPEC §4.2, EXT-11): each `[name, value]` pair, the
 * facts the server acts on (Content-Length, `Connection: close`, Upgrade, Date, Server), the
 * hop-by-hop fields it drops, and the fields a trailer section must not carry; `describe` names a
 * bad value in the messages. Encoding the checked fields into a head is `writer.ts`'s job.
 */
import { isFieldValue, isToken } from './syntax.ts';

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
 * checkTrailerFields refuses, with a TypeError naming it, a field of {@link FORBIDDEN_TRAILER_FIELDS}
 * in a trailer list already checked as headers are (SPEC EXT-11), so that the app learns of it
 * where it called `set_trailers`.
 */
export function checkTrailerFields(trailers: ReadonlyArray<readonly [string, string]>): void {
  for (const [name] of trailers) {
    if (FORBIDDEN_TRAILER_FIELDS.has(name.toLowerCase())) {
      throw new TypeError(`trailer field ${JSON.stringify(name)} is not allowed in a trailer section: it frames, routes, authenticates or describes the response, so it belongs in the head (SPEC EXT-11, RFC 9110 §6.5.1)`);
    }
  }
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
export interface HeaderFacts {
  contentLength: number;
  close: boolean;
  hasDate: boolean;
  hasServer: boolean;
  upgrade: string;
}

/** checkField checks one `[name, value]` pair (SPEC §4.2) and returns it with a string value. */
export function checkField(pair: unknown, i: number): [string, string] {
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
export function noteField(name: string, value: string, facts: HeaderFacts): boolean {
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
