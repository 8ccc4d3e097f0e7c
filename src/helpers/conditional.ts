/**
 * Conditional requests (RFC 9110 §13): validators for a representation, and the evaluation of a
 * request's preconditions in the order RFC 9110 §13.2.2 prescribes, giving 304, 412, or "go on".
 */

/** Validators are what a response says about the representation it carries (RFC 9110 §8.8). */
export interface Validators {
  /** The entity tag, quoted, with `W/` in front when weak (`"5f3a-1c"`). */
  etag?: string;
  /** The modification time, in milliseconds since the epoch; compared at whole seconds. */
  lastModified?: number;
}

/** Precondition is the outcome of {@link evaluatePreconditions}. */
export type Precondition = 'proceed' | 'not-modified' | 'failed';

/** RequestConditions are the request fields that make it conditional, as received. */
export interface RequestConditions {
  method: string;
  ifMatch?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifUnmodifiedSince?: string;
}

/**
 * evaluatePreconditions decides what a request's conditional fields ask for, given the
 * representation's current validators, in RFC 9110 §13.2.2's order: If-Match, else
 * If-Unmodified-Since (412 when false); then If-None-Match, else If-Modified-Since for GET and
 * HEAD (304 when false for GET and HEAD, 412 for other methods).
 */
export function evaluatePreconditions(request: RequestConditions, current: Validators): Precondition {
  const { etag, lastModified } = current;
  if (request.ifMatch !== undefined) {
    // Strong comparison: a weak tag never satisfies If-Match (RFC 9110 §13.1.1).
    if (!matchesAny(request.ifMatch, etag, true)) return 'failed';
  } else if (request.ifUnmodifiedSince !== undefined && lastModified !== undefined) {
    // An invalid date makes the field ignored (RFC 9110 §13.1.4).
    const since = parseHttpDate(request.ifUnmodifiedSince);
    if (since !== undefined && seconds(lastModified) > since) return 'failed';
  }
  const safe = request.method === 'GET' || request.method === 'HEAD';
  if (request.ifNoneMatch !== undefined) {
    // Weak comparison (RFC 9110 §13.1.2).
    if (matchesAny(request.ifNoneMatch, etag, false)) return safe ? 'not-modified' : 'failed';
  } else if (safe && request.ifModifiedSince !== undefined && lastModified !== undefined) {
    const since = parseHttpDate(request.ifModifiedSince);
    if (since !== undefined && seconds(lastModified) <= since) return 'not-modified';
  }
  return 'proceed';
}

/**
 * ifRangeHolds tells whether an If-Range field lets a Range apply (RFC 9110 §13.1.5): an entity
 * tag must match the current one strongly; a date must equal the Last-Modified time exactly.
 * Anything else, a weak tag included, means the whole representation is sent.
 */
export function ifRangeHolds(ifRange: string, current: Validators): boolean {
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    return current.etag !== undefined && !value.startsWith('W/') && !current.etag.startsWith('W/') && value === current.etag;
  }
  const date = parseHttpDate(value);
  return date !== undefined && current.lastModified !== undefined && seconds(current.lastModified) === date;
}

/**
 * matchesAny tells whether a list of entity tags (`*`, or comma-separated tags) names `etag`.
 * With `strong`, weak tags on either side never match.
 */
function matchesAny(list: string, etag: string | undefined, strong: boolean): boolean {
  if (etag === undefined) return false;
  if (list.trim() === '*') return true;
  if (strong && etag.startsWith('W/')) return false;
  const opaque = etag.startsWith('W/') ? etag.slice(2) : etag;
  for (const raw of splitTags(list)) {
    if (strong && raw.startsWith('W/')) continue;
    if ((raw.startsWith('W/') ? raw.slice(2) : raw) === opaque) return true;
  }
  return false;
}

/** splitTags splits a list of entity tags; commas may appear inside the quotes of a tag. */
function splitTags(list: string): string[] {
  const tags: string[] = [];
  const pattern = /\s*((?:W\/)?"[^"]*")\s*(?:,|$)/gy;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(list)) !== null) {
    tags.push(match[1]!);
    if (pattern.lastIndex >= list.length) break;
  }
  return tags;
}

/** IMF_FIXDATE is the preferred HTTP-date form (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * parseHttpDate reads an HTTP-date into whole seconds since the epoch, or undefined when it is
 * not one. The preferred form is checked strictly; the two obsolete forms a recipient must also
 * accept (RFC 9110 §5.6.7) go through `Date.parse`, which reads both.
 */
export function parseHttpDate(value: string): number | undefined {
  const text = value.trim();
  if (!IMF_FIXDATE.test(text) && !/ GMT$|^\w{3} \w{3} [ \d]\d /.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/** httpDate formats a time in milliseconds as an IMF-fixdate. */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** seconds truncates milliseconds to whole seconds, the resolution of an HTTP-date. */
function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}
