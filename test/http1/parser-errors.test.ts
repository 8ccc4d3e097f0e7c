/**
 * RequestParser on malformed and oversized input. Each case is raw bytes, the status the server
 * must answer and the error's stable code. Every case checks that the error sticks and that the
 * same error comes out whether the bytes arrive whole, byte by byte or split anywhere.
 */
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { RequestParser, type ParserLimits } from '../../src/http1/parser.ts';
import { crlf, parseAll, raw, req, type Split } from '../helpers/bytes.ts';

interface ErrorCase {
  name: string;
  bytes: Buffer;
  status: number;
  code: string;
  limits?: Partial<ParserLimits>;
}

const POST_CHUNKED = 'POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n';
const chunked = (body: string): Buffer => Buffer.concat([crlf(POST_CHUNKED), raw(body)]);
const withHeader = (line: string): Buffer => Buffer.concat([raw('GET / HTTP/1.1\r\nHost: a\r\n'), raw(line), raw('\r\n\r\n')]);

const ERRORS: ErrorCase[] = [
  // framing (RFC 9112 §6)
  { name: 'Content-Length with Transfer-Encoding', bytes: req`POST / HTTP/1.1\nHost: a\nContent-Length: 5\nTransfer-Encoding: chunked\n\n`, status: 400, code: 'NSGI_CONTENT_LENGTH_WITH_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding with Content-Length after it', bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 0\n\n`, status: 400, code: 'NSGI_CONTENT_LENGTH_WITH_TRANSFER_ENCODING' },
  { name: 'two equal Content-Length fields', bytes: req`POST / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 5\n\nhello`, status: 400, code: 'NSGI_DUPLICATE_CONTENT_LENGTH' },
  { name: 'two different Content-Length fields', bytes: req`POST / HTTP/1.1\nHost: a\nContent-Length: 5\ncontent-length: 6\n\nhello!`, status: 400, code: 'NSGI_DUPLICATE_CONTENT_LENGTH' },
  ...['+5', '-1', '1 2', '0x10', '', '1,1', '5a', '1234567890123456'].map((value) => ({
    name: `Content-Length ${JSON.stringify(value)}`,
    bytes: crlf(`POST / HTTP/1.1\nHost: a\nContent-Length: ${value}\n\n`),
    status: 400,
    code: 'NSGI_BAD_CONTENT_LENGTH',
  })),
  { name: 'Transfer-Encoding: gzip alone', bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n\n`, status: 400, code: 'NSGI_CHUNKED_NOT_FINAL' },
  { name: 'Transfer-Encoding: chunked, gzip', bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, gzip\n\n`, status: 400, code: 'NSGI_CHUNKED_NOT_FINAL' },
  { name: 'Transfer-Encoding: gzip, chunked is not implemented', bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked\n\n`, status: 501, code: 'NSGI_UNSUPPORTED_TRANSFER_CODING' },
  { name: 'Transfer-Encoding gzip and chunked in two fields', bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\nTransfer-Encoding: chunked\n\n`, status: 501, code: 'NSGI_UNSUPPORTED_TRANSFER_CODING' },
  { name: 'Transfer-Encoding: chunked, chunked', bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, chunked\n\n`, status: 400, code: 'NSGI_CHUNKED_TWICE' },
  { name: 'Transfer-Encoding in HTTP/1.0', bytes: req`POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n0\n\n`, status: 400, code: 'NSGI_TRANSFER_ENCODING_HTTP10' },
  // chunked coding (RFC 9112 §7.1)
  { name: 'chunk size that is not hex', bytes: chunked('zz\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_SIZE' },
  { name: 'empty chunk size', bytes: chunked('\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_SIZE' },
  { name: 'chunk size with a sign', bytes: chunked('+5\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_SIZE' },
  { name: 'overflowing chunk size', bytes: chunked('fffffffffffffffffff\r\n'), status: 400, code: 'NSGI_CHUNK_SIZE_OVERFLOW' },
  { name: 'chunk size followed by garbage', bytes: chunked('5 x\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_EXTENSION' },
  { name: 'chunk extension with an unterminated quote', bytes: chunked('5;a="b\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_EXTENSION' },
  { name: 'chunk data not followed by CRLF', bytes: chunked('5\r\nhelloXX0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_END' },
  { name: 'chunk data followed by CR and not LF', bytes: chunked('5\r\nhello\rX0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_END' },
  { name: 'chunk data longer than its size', bytes: chunked('3\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BAD_CHUNK_END' },
  { name: 'bare LF after the chunk size', bytes: chunked('5\nhello\r\n0\r\n\r\n'), status: 400, code: 'NSGI_BARE_LF' },
  { name: 'bare LF in the trailer section', bytes: chunked('0\r\nX: y\n\r\n'), status: 400, code: 'NSGI_BARE_LF' },
  { name: 'obs-fold in a trailer', bytes: chunked('0\r\nX: y\r\n z\r\n\r\n'), status: 400, code: 'NSGI_OBS_FOLD' },
  // field lines (RFC 9112 §5)
  { name: 'obs-fold (a continuation line starting with SP)', bytes: withHeader('X-A: one\r\n two'), status: 400, code: 'NSGI_OBS_FOLD' },
  { name: 'obs-fold (a continuation line starting with HTAB)', bytes: withHeader('X-A: one\r\n\ttwo'), status: 400, code: 'NSGI_OBS_FOLD' },
  { name: 'whitespace before the first field line', bytes: req`GET / HTTP/1.1\n Host: a\n\n`, status: 400, code: 'NSGI_OBS_FOLD' },
  { name: 'space between field name and colon', bytes: req`GET / HTTP/1.1\nHost : a\n\n`, status: 400, code: 'NSGI_SPACE_BEFORE_COLON' },
  { name: 'invalid character in a field name', bytes: withHeader('Fo@o: x'), status: 400, code: 'NSGI_BAD_FIELD_NAME' },
  { name: 'field line without a colon', bytes: withHeader('NoColon'), status: 400, code: 'NSGI_BAD_FIELD_NAME' },
  { name: 'empty field name', bytes: withHeader(': x'), status: 400, code: 'NSGI_BAD_FIELD_NAME' },
  { name: 'NUL in a field value', bytes: withHeader('X: a\x00b'), status: 400, code: 'NSGI_BAD_FIELD_VALUE' },
  { name: 'bare CR in a field value', bytes: withHeader('X: a\rb'), status: 400, code: 'NSGI_BAD_FIELD_VALUE' },
  { name: 'DEL in a field value', bytes: withHeader('X: a\x7fb'), status: 400, code: 'NSGI_BAD_FIELD_VALUE' },
  { name: 'control character in a field value', bytes: withHeader('X: a\x01b'), status: 400, code: 'NSGI_BAD_FIELD_VALUE' },
  // request line (RFC 9112 §3)
  { name: 'invalid character in the method', bytes: req`G(T / HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_METHOD' },
  { name: 'request line starting with a space', bytes: req` GET / HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_METHOD' },
  { name: 'request line with only a method', bytes: req`GET\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_METHOD' },
  { name: 'two spaces between method and target', bytes: req`GET  / HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  { name: 'raw space inside the target', bytes: req`GET /a b HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_VERSION' },
  { name: 'raw DEL (0x7f) in the target', bytes: req`GET /a\x7fb HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  { name: 'raw non-ASCII byte in the target', bytes: req`GET /caf\xe9 HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  { name: 'raw tab in the target', bytes: req`GET /a\tb HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  { name: 'missing version', bytes: req`GET /\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  { name: 'lowercase http/1.1', bytes: req`GET / http/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_VERSION' },
  { name: 'version with two-digit minor', bytes: req`GET / HTTP/1.10\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_VERSION' },
  { name: 'trailing space after the version', bytes: req`GET / HTTP/1.1 \nHost: a\n\n`, status: 400, code: 'NSGI_BAD_VERSION' },
  { name: 'HTTP/2.0', bytes: req`GET / HTTP/2.0\nHost: a\n\n`, status: 505, code: 'NSGI_UNSUPPORTED_VERSION' },
  { name: 'HTTP/3.1', bytes: req`GET / HTTP/3.1\nHost: a\n\n`, status: 505, code: 'NSGI_UNSUPPORTED_VERSION' },
  { name: 'HTTP/0.9', bytes: req`GET / HTTP/0.9\n\n`, status: 505, code: 'NSGI_UNSUPPORTED_VERSION' },
  { name: 'target not starting with / for GET', bytes: req`GET foo HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  { name: 'asterisk-form with GET', bytes: req`GET * HTTP/1.1\nHost: a\n\n`, status: 400, code: 'NSGI_BAD_TARGET' },
  // line endings: nsgi rejects bare LF everywhere
  { name: 'bare LF ending the request line', bytes: raw('GET / HTTP/1.1\nHost: a\r\n\r\n'), status: 400, code: 'NSGI_BARE_LF' },
  { name: 'bare LF ending a field line', bytes: raw('GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n'), status: 400, code: 'NSGI_BARE_LF' },
  { name: 'bare LF ending the head', bytes: raw('GET / HTTP/1.1\r\nHost: a\r\n\n'), status: 400, code: 'NSGI_BARE_LF' },
  { name: 'bare LF as an empty line before the request line', bytes: raw('\nGET / HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400, code: 'NSGI_BARE_LF' },
  // Host (RFC 9112 §3.2)
  { name: 'HTTP/1.1 without Host', bytes: req`GET / HTTP/1.1\nAccept: */*\n\n`, status: 400, code: 'NSGI_MISSING_HOST' },
  { name: 'two Host fields', bytes: req`GET / HTTP/1.1\nHost: a\nhost: a\n\n`, status: 400, code: 'NSGI_DUPLICATE_HOST' },
  { name: 'two Host fields in HTTP/1.0', bytes: req`GET / HTTP/1.0\nHost: a\nHost: b\n\n`, status: 400, code: 'NSGI_DUPLICATE_HOST' },
  { name: 'Host with a space', bytes: req`GET / HTTP/1.1\nHost: a b\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with a slash', bytes: req`GET / HTTP/1.1\nHost: a/b\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with a userinfo @', bytes: req`GET / HTTP/1.1\nHost: u@a\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with brackets around no IPv6 address', bytes: req`GET / HTTP/1.1\nHost: [:::::]\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with an IPv4 address in brackets', bytes: req`GET / HTTP/1.1\nHost: [1.2.3.4]\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with nine IPv6 groups', bytes: req`GET / HTTP/1.1\nHost: [1:2:3:4:5:6:7:8:9]\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with two :: in its IPv6 address', bytes: req`GET / HTTP/1.1\nHost: [1::2::3]:80\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  { name: 'Host with a % not followed by two hex digits', bytes: req`GET / HTTP/1.1\nHost: %zz\n\n`, status: 400, code: 'NSGI_BAD_HOST' },
  // Expect (RFC 9110 §10.1.1)
  { name: 'an expectation other than 100-continue', bytes: req`POST / HTTP/1.1\nHost: a\nExpect: 200-ok\nContent-Length: 2\n\nok`, status: 417, code: 'NSGI_EXPECTATION_FAILED' },
  { name: 'an unknown expectation beside 100-continue', bytes: req`POST / HTTP/1.1\nHost: a\nExpect: 100-continue, x-y=1\nContent-Length: 2\n\nok`, status: 417, code: 'NSGI_EXPECTATION_FAILED' },
  // limits
  { name: 'request line over 8 KiB', bytes: crlf(`GET /${'a'.repeat(8 * 1024)} HTTP/1.1\nHost: a\n\n`), status: 414, code: 'NSGI_REQUEST_LINE_TOO_LONG' },
  { name: 'request line over 8 KiB that never ends', bytes: raw(`GET /${'a'.repeat(8 * 1024)}`), status: 414, code: 'NSGI_REQUEST_LINE_TOO_LONG' },
  { name: 'method alone over 8 KiB', bytes: crlf(`${'G'.repeat(9000)} / HTTP/1.1\nHost: a\n\n`), status: 501, code: 'NSGI_METHOD_TOO_LONG' },
  { name: 'method over 8 KiB that never ends', bytes: raw('G'.repeat(9000)), status: 501, code: 'NSGI_METHOD_TOO_LONG' },
  { name: '101 header fields', bytes: crlf(`GET / HTTP/1.1\nHost: a\n${Array.from({ length: 100 }, (_, i) => `X-${i}: ${i}\n`).join('')}\n`), status: 431, code: 'NSGI_TOO_MANY_HEADERS' },
  { name: 'header block over 16 KiB', bytes: crlf(`GET / HTTP/1.1\nHost: a\n${Array.from({ length: 20 }, (_, i) => `X-${i}: ${'v'.repeat(1000)}\n`).join('')}\n`), status: 431, code: 'NSGI_HEADERS_TOO_LARGE' },
  { name: 'one field line over 16 KiB that never ends', bytes: raw(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(16 * 1024)}`), status: 431, code: 'NSGI_HEADERS_TOO_LARGE' },
  { name: 'custom maxRequestLineSize', bytes: req`GET /abcdefghij HTTP/1.1\nHost: a\n\n`, status: 414, code: 'NSGI_REQUEST_LINE_TOO_LONG', limits: { maxRequestLineSize: 20 } },
  { name: 'custom maxHeaderCount', bytes: req`GET / HTTP/1.1\nHost: a\nA: 1\nB: 2\nC: 3\n\n`, status: 431, code: 'NSGI_TOO_MANY_HEADERS', limits: { maxHeaderCount: 3 } },
  { name: 'custom maxHeaderSize', bytes: req`GET / HTTP/1.1\nHost: a\nX-Long: 0123456789012345678901234567890123456789\n\n`, status: 431, code: 'NSGI_HEADERS_TOO_LARGE', limits: { maxHeaderSize: 32 } },
  { name: 'custom maxHeaderCount applies to trailers', bytes: chunked('0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n'), status: 431, code: 'NSGI_TOO_MANY_TRAILERS', limits: { maxHeaderCount: 2 } },
  { name: 'trailer section over maxHeaderSize', bytes: chunked(`0\r\nX: ${'t'.repeat(100)}\r\n\r\n`), status: 431, code: 'NSGI_TRAILERS_TOO_LARGE', limits: { maxHeaderSize: 64 } },
  { name: 'Content-Length above maxBodySize', bytes: req`POST / HTTP/1.1\nHost: a\nContent-Length: 11\n\nhello world`, status: 413, code: 'NSGI_BODY_TOO_LARGE', limits: { maxBodySize: 10 } },
  { name: 'chunked body exceeding maxBodySize', bytes: chunked('6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n'), status: 413, code: 'NSGI_BODY_TOO_LARGE', limits: { maxBodySize: 10 } },
  // not HTTP at all
  { name: 'TLS ClientHello', bytes: raw('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'), status: 400, code: 'NSGI_BAD_METHOD' },
];

/** RULE_OF_CODE names the SPEC rule (§9.2, §9.3) each parser error code enforces. */
const RULE_OF_CODE: Readonly<Record<string, string>> = {
  NSGI_BARE_LF: 'SRV-8',
  NSGI_OBS_FOLD: 'SRV-9',
  NSGI_SPACE_BEFORE_COLON: 'SRV-10',
  NSGI_BAD_METHOD: 'SRV-11',
  NSGI_BAD_TARGET: 'SRV-11',
  NSGI_BAD_FIELD_NAME: 'SRV-11',
  NSGI_BAD_FIELD_VALUE: 'SRV-11',
  NSGI_BAD_VERSION: 'SRV-11',
  NSGI_MISSING_HOST: 'SRV-13',
  NSGI_DUPLICATE_HOST: 'SRV-13',
  NSGI_BAD_HOST: 'SRV-13',
  NSGI_CONTENT_LENGTH_WITH_TRANSFER_ENCODING: 'SRV-14',
  NSGI_DUPLICATE_CONTENT_LENGTH: 'SRV-15',
  NSGI_BAD_CONTENT_LENGTH: 'SRV-15',
  NSGI_TRANSFER_ENCODING_HTTP10: 'SRV-16',
  NSGI_CHUNKED_NOT_FINAL: 'SRV-17',
  NSGI_CHUNKED_TWICE: 'SRV-17',
  NSGI_UNSUPPORTED_TRANSFER_CODING: 'SRV-17',
  NSGI_BAD_CHUNK_SIZE: 'SRV-18',
  NSGI_BAD_CHUNK_END: 'SRV-18',
  NSGI_BAD_CHUNK_EXTENSION: 'SRV-18',
  NSGI_CHUNK_LINE_TOO_LONG: 'SRV-18',
  NSGI_CHUNK_SIZE_OVERFLOW: 'SRV-18',
  NSGI_UNSUPPORTED_VERSION: 'SRV-19',
  NSGI_EXPECTATION_FAILED: 'SRV-30',
  NSGI_REQUEST_LINE_TOO_LONG: 'SRV-22',
  NSGI_METHOD_TOO_LONG: 'SRV-22',
  NSGI_TOO_MANY_HEADERS: 'SRV-22',
  NSGI_HEADERS_TOO_LARGE: 'SRV-22',
  NSGI_TOO_MANY_TRAILERS: 'SRV-22',
  NSGI_TRAILERS_TOO_LARGE: 'SRV-22',
  NSGI_BODY_TOO_LARGE: 'SRV-23',
};

/** ruleOf returns the rule a case's code enforces; a code missing from the table fails the file. */
function ruleOf(c: ErrorCase): string {
  const rule = RULE_OF_CODE[c.code];
  if (rule === undefined) throw new Error(`no SPEC rule listed for ${c.code} (case ${c.name}): add it to RULE_OF_CODE`);
  return rule;
}

function expectError(c: ErrorCase, split: Split): ProtocolError {
  const result = parseAll(c.bytes, { split, limits: c.limits });
  const label = `split ${JSON.stringify(split)}`;
  expect(result.last, label).toBe('error');
  expect(result.error, label).toBeInstanceOf(ProtocolError);
  expect({ status: result.error!.status, code: result.error!.code }, `${label}: ${result.error!.message}`).toEqual({
    status: c.status,
    code: c.code,
  });
  return result.error!;
}

describe('RequestParser rejects malformed requests with the right status', () => {
  for (const c of ERRORS) {
    describe(c.name, () => {
      it(`${ruleOf(c)}: whole: ${c.status} ${c.code}, and the error sticks`, () => {
        const parser = new RequestParser(c.limits);
        parser.feed(Buffer.from(c.bytes));
        let error: unknown;
        try {
          for (let i = 0; i < 10; i++) parser.next();
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(ProtocolError);
        const pe = error as ProtocolError;
        expect({ status: pe.status, code: pe.code }, pe.message).toEqual({ status: c.status, code: c.code });
        expect(pe.message.length).toBeGreaterThan(0);
        // Sticky: every later call throws the very same error, even after more bytes arrive.
        expect(() => parser.next()).toThrow(pe);
        parser.feed(req`GET / HTTP/1.1\nHost: a\n\n`);
        let again: unknown;
        try {
          parser.next();
        } catch (err) {
          again = err;
        }
        expect(again).toBe(pe);
      });
      it(`${ruleOf(c)}: byte by byte: the same status and code`, () => {
        expectError(c, 'bytes');
      });
      if (c.bytes.length <= 300) {
        it(`${ruleOf(c)}: split at every offset: the same status and code`, () => {
          for (let at = 0; at <= c.bytes.length; at++) expectError(c, at);
        });
      }
    });
  }
});

describe('errors found early', () => {
  it('a TLS ClientHello gets 400 from its first byte, without waiting for a line end', () => {
    const parser = new RequestParser();
    parser.feed(raw('\x16'));
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 400 }));
  });

  it('binary garbage with a NUL gets 400 before any line end', () => {
    const parser = new RequestParser();
    parser.feed(raw('GET /\x00'));
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 400 }));
  });

  it('a request line that never ends throws 414 as soon as it passes the limit, not later', () => {
    const parser = new RequestParser({ maxRequestLineSize: 100 });
    parser.feed(raw('GET /' + 'a'.repeat(95)));
    expect(parser.next().kind).toBe('need-data'); // exactly 100 bytes: not over yet
    parser.feed(raw('a'));
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 414, code: 'NSGI_REQUEST_LINE_TOO_LONG' }));
  });

  it('the 414 check for an unfinished line works fed in large pieces too', () => {
    const parser = new RequestParser();
    parser.feed(raw('GET /' + 'a'.repeat(4000)));
    expect(parser.next().kind).toBe('need-data');
    parser.feed(raw('a'.repeat(5000)));
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 414 }));
  });

  it('a header block that never ends throws 431 once past the limit', () => {
    const parser = new RequestParser({ maxHeaderSize: 50 });
    parser.feed(req`GET / HTTP/1.1\nHost: a\n`);
    expect(parser.next().kind).toBe('need-data');
    // "Host: a\r\n" is 9 bytes and each X line 15: 24, 39, then 54 > 50.
    for (let i = 0; i < 2; i++) {
      parser.feed(req`X: 0123456789\n`);
      expect(parser.next().kind).toBe('need-data');
    }
    parser.feed(req`X: 0123456789\n`);
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 431 }));
  });

  it('a chunk-size line that never ends is rejected instead of buffered forever', () => {
    const parser = new RequestParser();
    parser.feed(chunked('1;' + 'a'.repeat(5000)));
    expect(parser.next().kind).toBe('head');
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 400, code: 'NSGI_CHUNK_LINE_TOO_LONG' }));
  });

  it('Content-Length above maxBodySize is refused at head time, before any body byte', () => {
    const parser = new RequestParser({ maxBodySize: 100 });
    parser.feed(req`POST / HTTP/1.1\nHost: a\nContent-Length: 101\n\n`);
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 413 }));
  });

  it('a chunked body is refused when the chunk that crosses maxBodySize is announced', () => {
    const parser = new RequestParser({ maxBodySize: 10 });
    parser.feed(chunked('a\r\n0123456789\r\n1\r\n'));
    expect(parser.next().kind).toBe('head');
    expect(parser.next()).toEqual({ kind: 'data', data: raw('0123456789') });
    expect(() => parser.next()).toThrow(expect.objectContaining({ status: 413 }));
  });

  it('data before a chunked-body error is still delivered, then the error', () => {
    const result = parseAll(chunked('5\r\nhelloXX'), { split: 'whole' });
    expect(result.events.slice(1)).toEqual([{ kind: 'data', data: raw('hello') }]);
    expect(result.error?.code).toBe('NSGI_BAD_CHUNK_END');
  });

  it('a request sent after the last chunk without the empty line is named as a bad trailer line', () => {
    const result = parseAll(req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n0\nGET /n HTTP/1.1\nHost: a\n\n`);
    expect(result.error?.status).toBe(400);
    expect(result.error?.message).toMatch(/trailer line "GET \/n HTTP\/1\.1".*ends with its last chunk, any trailers, then an empty line/);
  });

  it('an error message quotes the offending value', () => {
    const result = parseAll(req`POST / HTTP/1.1\nHost: a\nContent-Length: 0x10\n\n`);
    expect(result.error?.message).toContain('"0x10"');
  });
});

describe('Host values that are valid are accepted', () => {
  // The other side of the Host checks above (RFC 3986 §3.2.2): every form of IPv6 literal, an
  // IPv4 address, percent-encoding and an empty port pass.
  for (const host of ['[::1]:8080', '[2001:db8::8a2e:370:7334]', '[1:2:3:4:5:6:7:8]', '[::ffff:192.0.2.1]', '[::]', '192.0.2.1:80', 'a%20b.example', 'example.com:']) {
    it(host, () => {
      const result = parseAll(req`GET / HTTP/1.1\nHost: ${host}\n\n`);
      expect(result.error).toBeUndefined();
    });
  }
});
