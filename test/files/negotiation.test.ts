/**
 * The sans-I/O pieces under sendFile and compress, in memory: Range parsing (RFC 9110 §14.1.2),
 * precondition order (RFC 9110 §13.2.2), If-Range, HTTP-dates, and Accept-Encoding q-values.
 */
import { describe, expect, it } from 'vitest';
import { evaluatePreconditions, ifRangeHolds, parseHttpDate } from '../../src/helpers/conditional.ts';
import { mediaTypeFor } from '../../src/helpers/mime.ts';
import { preferredCoding } from '../../src/helpers/negotiate.ts';
import { MAX_RANGES, multipartFraming, parseRange } from '../../src/helpers/ranges.ts';

describe('parseRange', () => {
  const table: Array<[string | undefined, number, ReturnType<typeof parseRange>]> = [
    [undefined, 10, { kind: 'ignore' }],
    ['bytes=0-4', 10, { kind: 'ranges', ranges: [{ start: 0, end: 4 }] }],
    ['Bytes = 0-4', 10, { kind: 'ranges', ranges: [{ start: 0, end: 4 }] }],
    ['bytes=5-', 10, { kind: 'ranges', ranges: [{ start: 5, end: 9 }] }],
    ['bytes=-3', 10, { kind: 'ranges', ranges: [{ start: 7, end: 9 }] }],
    ['bytes=-30', 10, { kind: 'ranges', ranges: [{ start: 0, end: 9 }] }],
    ['bytes=8-100', 10, { kind: 'ranges', ranges: [{ start: 8, end: 9 }] }],
    ['bytes=0-1,,3-4', 10, { kind: 'ranges', ranges: [{ start: 0, end: 1 }, { start: 3, end: 4 }] }],
    ['bytes=6-8, 0-1, 2-3', 10, { kind: 'ranges', ranges: [{ start: 6, end: 8 }, { start: 0, end: 3 }] }],
    ['bytes=10-', 10, { kind: 'unsatisfiable' }],
    ['bytes=-0', 10, { kind: 'unsatisfiable' }],
    ['bytes=0-', 0, { kind: 'unsatisfiable' }],
    ['bytes=10-20, 30-', 10, { kind: 'unsatisfiable' }],
    ['bytes=4-2', 10, { kind: 'ignore' }],
    ['bytes=-', 10, { kind: 'ignore' }],
    ['bytes=a-b', 10, { kind: 'ignore' }],
    ['bytes=1-2-3', 10, { kind: 'ignore' }],
    ['items=0-1', 10, { kind: 'ignore' }],
    ['bytes', 10, { kind: 'ignore' }],
    ['bytes=', 10, { kind: 'ignore' }],
  ];
  for (const [field, size, expected] of table) {
    it(`reads ${JSON.stringify(field)} against ${size} bytes`, () => {
      expect(parseRange(field, size)).toEqual(expected);
    });
  }

  it(`ignores more than ${MAX_RANGES} ranges rather than serving them`, () => {
    const many = `bytes=${Array.from({ length: MAX_RANGES + 1 }, (_, i) => `${i * 2}-${i * 2}`).join(',')}`;
    expect(parseRange(many, 10_000)).toEqual({ kind: 'ignore' });
  });

  it('frames multipart/byteranges with a Content-Length that counts every byte', () => {
    const framing = multipartFraming([{ start: 0, end: 1 }, { start: 5, end: 9 }], 10, 'text/plain');
    const body = framing.partHeads[0]! + 'ab' + framing.partHeads[1]! + 'fghij' + framing.tail;
    expect(Buffer.byteLength(body)).toBe(framing.length);
    expect(framing.partHeads[1]).toContain('Content-Range: bytes 5-9/10');
  });
});

describe('evaluatePreconditions (RFC 9110 §13.2.2)', () => {
  const current = { etag: '"v2"', lastModified: Date.UTC(2024, 0, 2) };
  const before = 'Mon, 01 Jan 2024 00:00:00 GMT';
  const at = 'Tue, 02 Jan 2024 00:00:00 GMT';
  const table: Array<[string, Parameters<typeof evaluatePreconditions>[0], string]> = [
    ['no conditions', { method: 'GET' }, 'proceed'],
    ['If-Match that matches', { method: 'PUT', ifMatch: '"v1", "v2"' }, 'proceed'],
    ['If-Match that does not', { method: 'GET', ifMatch: '"v1"' }, 'failed'],
    ['If-Match with a weak tag', { method: 'GET', ifMatch: 'W/"v2"' }, 'failed'],
    ['If-Unmodified-Since before the change', { method: 'GET', ifUnmodifiedSince: before }, 'failed'],
    ['If-Unmodified-Since at the change', { method: 'GET', ifUnmodifiedSince: at }, 'proceed'],
    ['If-Unmodified-Since ignored under If-Match', { method: 'GET', ifMatch: '*', ifUnmodifiedSince: before }, 'proceed'],
    ['If-None-Match that matches, GET', { method: 'GET', ifNoneMatch: 'W/"v2"' }, 'not-modified'],
    ['If-None-Match that matches, POST', { method: 'POST', ifNoneMatch: '"v2"' }, 'failed'],
    ['If-None-Match: *', { method: 'HEAD', ifNoneMatch: '*' }, 'not-modified'],
    ['If-Modified-Since at the change', { method: 'GET', ifModifiedSince: at }, 'not-modified'],
    ['If-Modified-Since before the change', { method: 'GET', ifModifiedSince: before }, 'proceed'],
    ['If-Modified-Since ignored for POST', { method: 'POST', ifModifiedSince: at }, 'proceed'],
    ['If-Modified-Since ignored under If-None-Match', { method: 'GET', ifNoneMatch: '"v1"', ifModifiedSince: at }, 'proceed'],
    ['an invalid date', { method: 'GET', ifModifiedSince: 'tomorrow' }, 'proceed'],
  ];
  for (const [what, request, expected] of table) {
    it(`${what}: ${expected}`, () => {
      expect(evaluatePreconditions(request, current)).toBe(expected);
    });
  }

  it('If-Range holds for the same strong tag or the exact date only', () => {
    expect(ifRangeHolds('"v2"', current)).toBe(true);
    expect(ifRangeHolds('W/"v2"', current)).toBe(false);
    expect(ifRangeHolds('"v1"', current)).toBe(false);
    expect(ifRangeHolds(at, current)).toBe(true);
    expect(ifRangeHolds(before, current)).toBe(false);
  });

  it('reads the three HTTP-date forms and refuses others', () => {
    const seconds = Date.UTC(1994, 10, 6, 8, 49, 37) / 1000;
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(seconds);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).toBe(seconds);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).toBe(seconds);
    expect(parseHttpDate('2024-01-01')).toBeUndefined();
  });
});

describe('preferredCoding (RFC 9110 §12.5.3)', () => {
  const offered = ['br', 'gzip'];
  const table: Array<[string | undefined, string | undefined]> = [
    [undefined, 'identity'],
    ['gzip, deflate, br', 'br'],
    ['gzip;q=1.0, br;q=0.8', 'gzip'],
    ['br;q=0, gzip;q=0.1', 'gzip'],
    ['*', 'br'],
    ['*;q=0.5, br;q=0', 'gzip'],
    ['identity', 'identity'],
    ['identity;q=0.5, gzip;q=0.5', 'identity'],
    ['identity;q=0.4, gzip;q=0.5', 'gzip'],
    ['deflate', 'identity'],
    ['identity;q=0', undefined],
    ['*;q=0', undefined],
    ['gzip;q=2', 'identity'],
    ['', 'identity'],
  ];
  for (const [field, expected] of table) {
    it(`picks ${String(expected)} for ${JSON.stringify(field)}`, () => {
      expect(preferredCoding(field, offered)).toBe(expected);
    });
  }
});

describe('mediaTypeFor', () => {
  it('maps extensions case-insensitively and falls back to octet-stream', () => {
    expect(mediaTypeFor('/a/Index.HTML')).toBe('text/html; charset=utf-8');
    expect(mediaTypeFor('x.tar.gz')).toBe('application/gzip');
    expect(mediaTypeFor('.env')).toBe('application/octet-stream');
    expect(mediaTypeFor('dir.d/README')).toBe('application/octet-stream');
  });
});
