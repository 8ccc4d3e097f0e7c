/**
 * A CR followed by anything but LF in a head or trailer line, refused by the parser as soon as the
 * byte after it arrives, with the same status and code whether the request came whole, byte by
 * byte, or without the rest of its line.
 */
import { describe, expect, it } from 'vitest';
import { parseAll, raw } from '../helpers/bytes.ts';

const CASES: Array<{ name: string; text: string; code: string }> = [
  { name: 'in a field value', text: 'GET / HTTP/1.1\r\nHost: a\r\nX: one\rtwo', code: 'NSGI_BAD_FIELD_VALUE' },
  { name: 'in a field name', text: 'GET / HTTP/1.1\r\nHost: a\r\nX\r-Y: one', code: 'NSGI_BAD_FIELD_NAME' },
  { name: 'after the version', text: 'GET / HTTP/1.1\rHost: a', code: 'NSGI_BAD_VERSION' },
  { name: 'in a trailer line', text: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r2', code: 'NSGI_BAD_FIELD_VALUE' },
];

describe('a CR not followed by LF', () => {
  for (const { name, text, code } of CASES) {
    describe(name, () => {
      it('is refused with 400 before the line ends', () => {
        const result = parseAll(raw(text));
        expect(result.error?.status).toBe(400);
        expect(result.error?.code).toBe(code);
      });
      it('gets the same verdict byte by byte, and when the line ends in CRLF or a bare LF', () => {
        for (const bytes of [raw(text), raw(`${text}\r\n\r\n`), raw(`${text}\n\r\n`)]) {
          expect(parseAll(bytes, { split: 'bytes' }).error?.code).toBe(code);
          expect(parseAll(bytes).error?.code).toBe(code);
        }
      });
    });
  }

  it('a CR that is the last byte so far is not judged until the next byte', () => {
    const result = parseAll(raw('GET / HTTP/1.1\r\nHost: a\r'));
    expect(result.error).toBeUndefined();
    expect(result.last).toBe('need-data');
  });
});
