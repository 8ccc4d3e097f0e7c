/**
 * Byte ranges (RFC 9110 §14): reading a `Range` field against a representation's length, and the
 * `multipart/byteranges` framing of a response that carries several ranges (RFC 9110 §14.6).
 */
import { randomBytes } from 'node:crypto';

/** ByteRange is one range of a representation, both ends included, as in `Content-Range`. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * RangeRequest is what a `Range` field asks for: nothing to act on (`ignore`: absent, another
 * unit, malformed, or too many pieces), no byte of the representation (`unsatisfiable`, a 416),
 * or the ranges to send, in the order asked, with overlapping and adjacent ones merged.
 */
export type RangeRequest = { kind: 'ignore' } | { kind: 'unsatisfiable' } | { kind: 'ranges'; ranges: ByteRange[] };

/**
 * MAX_RANGES is how many ranges one request may name before the field is ignored and the whole
 * representation sent. Many small or overlapping ranges cost the server far more than the bytes
 * they ask for (RFC 9110 §14.2 and §17.15); nginx's `max_ranges` and Apache's
 * `MaxRanges` (default 200) guard the same way; 100 covers every reader and download manager.
 */
export const MAX_RANGES = 100;

/** RANGE_SPEC is one range-spec: `first-last`, `first-`, or the suffix form `-length`. */
const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * parseRange reads a `Range` field for a representation of `size` bytes (RFC 9110 §14.1.2). Only
 * the `bytes` unit is known; a field that does not parse is ignored, as RFC 9110 §14.2 allows.
 */
export function parseRange(field: string | undefined, size: number): RangeRequest {
  if (field === undefined) return { kind: 'ignore' };
  const eq = field.indexOf('=');
  if (eq < 0 || field.slice(0, eq).trim().toLowerCase() !== 'bytes') return { kind: 'ignore' };
  const specs = field.slice(eq + 1).split(',');
  if (specs.length > MAX_RANGES) return { kind: 'ignore' };
  const ranges: ByteRange[] = [];
  let named = 0;
  for (const raw of specs) {
    const spec = raw.trim();
    if (spec === '') continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    const match = RANGE_SPEC.exec(spec);
    if (match === null || (match[1] === '' && match[2] === '')) return { kind: 'ignore' };
    named++;
    const [, first, last] = match as unknown as [string, string, string];
    if (first === '') {
      // A suffix range: the last N bytes, all of them when N is larger than the representation.
      const length = Number(last);
      if (length > 0 && size > 0) ranges.push({ start: Math.max(0, size - length), end: size - 1 });
      continue;
    }
    const start = Number(first);
    if (last !== '' && Number(last) < start) return { kind: 'ignore' }; // invalid (RFC 9110 §14.1.1)
    if (start >= size) continue; // unsatisfiable on its own
    ranges.push({ start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) });
  }
  if (named === 0) return { kind: 'ignore' };
  if (ranges.length === 0) return { kind: 'unsatisfiable' };
  return { kind: 'ranges', ranges: coalesce(ranges) };
}

/**
 * coalesce merges ranges that overlap or touch, so that no byte is sent twice (RFC 9110 §14.2
 * lets a server do so); the result keeps the order of each merged group's first range.
 */
function coalesce(ranges: ByteRange[]): ByteRange[] {
  if (ranges.length === 1) return ranges;
  const byStart = ranges.map((range, order) => ({ ...range, order })).sort((a, b) => a.start - b.start);
  const merged: Array<ByteRange & { order: number }> = [];
  for (const range of byStart) {
    const last = merged[merged.length - 1];
    if (last !== undefined && range.start <= last.end + 1) {
      last.end = Math.max(last.end, range.end);
      last.order = Math.min(last.order, range.order);
    } else merged.push({ ...range });
  }
  return merged.sort((a, b) => a.order - b.order).map(({ start, end }) => ({ start, end }));
}

/** contentRange is the `Content-Range` value of one range of a `size`-byte representation. */
export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}

/** Multipart is the framing of a `multipart/byteranges` body, computed before it is sent. */
export interface Multipart {
  /** The response's Content-Type, naming the boundary. */
  contentType: string;
  /** The text before each range's bytes: boundary and part headers. */
  partHeads: string[];
  /** The text after the last range: the closing boundary. */
  tail: string;
  /** The body's total length in bytes, for Content-Length. */
  length: number;
}

/**
 * multipartFraming frames `ranges` of a representation of type `type` (RFC 9110 §14.6). The
 * boundary is random, so no file's bytes can end a part early by containing it.
 */
export function multipartFraming(ranges: readonly ByteRange[], size: number, type: string): Multipart {
  const boundary = randomBytes(12).toString('hex');
  const partHeads = ranges.map(
    (range, i) => `${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${type}\r\nContent-Range: ${contentRange(range, size)}\r\n\r\n`,
  );
  const tail = `\r\n--${boundary}--\r\n`;
  let length = Buffer.byteLength(tail);
  for (let i = 0; i < ranges.length; i++) length += Buffer.byteLength(partHeads[i]!) + ranges[i]!.end - ranges[i]!.start + 1;
  return { contentType: `multipart/byteranges; boundary=${boundary}`, partHeads, tail, length };
}
