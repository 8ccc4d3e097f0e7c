/**
 * Request smuggling over the wire. One row per strict-parsing rule of RFC 9112: raw bytes go to
 * the real server on a loopback port, and each row asserts the status that comes back AND that
 * the server closes the connection after it, so nothing the client sent after the bad bytes can
 * be read as a request. The pipelined rows repeat every payload with a complete `GET /smuggled`
 * request in the same write: the app records every path it sees, and `/smuggled` must never be
 * one of them, with exactly one response on the wire.
 *
 * test/http1/parser-errors.test.ts covers the same rules in memory (error codes, whole / byte by
 * byte); this file is about what a client actually sees.
 *
 * Bare LF is rejected with 400 by design (RFC 9112 §2.2 lets a server accept it; nsgi does not,
 * because a proxy in front that splits lines differently is exactly how smuggling starts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App, HeaderList } from '../../protocol/nsgi.ts';
import { RawClient, cleanup, finalResponses, header, startServer, untilResponses, type ParsedResponse } from '../helpers/server.ts';

afterEach(cleanup);

/** recordingApp reads the whole body, records the path, and answers `path:body`. */
function recordingApp(seen: string[]): App {
  return async function* (environ, startResponse) {
    seen.push(environ.PATH_INFO);
    const parts: Uint8Array[] = [];
    for await (const part of environ['nsgi.input']) parts.push(part);
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    yield `${environ.PATH_INFO}:${Buffer.concat(parts).toString('latin1')}`;
  };
}

const b = (text: string): Buffer => Buffer.from(text, 'latin1');
const POST_CHUNKED = 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n';
const withHeader = (line: string): Buffer => b(`GET / HTTP/1.1\r\nHost: a\r\n${line}\r\n\r\n`);
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n';

/** Row is one strict-parsing rule: its SPEC id, what the bytes break, the bytes and the status owed. */
interface Row {
  id: string;
  rule: string;
  bytes: Buffer;
  status: number;
}

const ROWS: Row[] = [
  // framing: RFC 9112 §6.1 / §6.3
  { id: 'SRV-14', rule: 'Content-Length with Transfer-Encoding', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), status: 400 },
  { id: 'SRV-14', rule: 'Transfer-Encoding with Content-Length after it', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n'), status: 400 },
  { id: 'SRV-15', rule: 'duplicate Content-Length, same value', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'duplicate Content-Length, different values', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length as a list "4, 4"', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length with a plus sign', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length with a minus sign', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -4\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length with a space inside', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nabcdefghij'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length with non-digits', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4x\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length in hex', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd'), status: 400 },
  { id: 'SRV-15', rule: 'Content-Length empty', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n'), status: 400 },
  { id: 'SRV-17', rule: 'Transfer-Encoding whose last coding is not chunked', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n'), status: 400 },
  { id: 'SRV-17', rule: 'Transfer-Encoding: gzip alone', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n'), status: 400 },
  { id: 'SRV-17', rule: 'Transfer-Encoding with an unknown coding before chunked (501)', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'), status: 501 },
  { id: 'SRV-17', rule: 'Transfer-Encoding: xchunked', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'), status: 400 },
  { id: 'SRV-10', rule: 'Transfer-Encoding with a space before the colon', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n'), status: 400 },
  { id: 'SRV-16', rule: 'Transfer-Encoding in HTTP/1.0', bytes: b('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), status: 400 },
  // the classic desync payloads
  { id: 'SRV-14', rule: 'CL.TE: front end trusts Content-Length, back end chunked', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED'), status: 400 },
  { id: 'SRV-14', rule: 'TE.CL: front end chunked, back end trusts Content-Length', bytes: b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n'), status: 400 },
  // chunked coding: RFC 9112 §7.1
  { id: 'SRV-18', rule: 'chunk size overflowing 2^53', bytes: b(`${POST_CHUNKED}fffffffffffffffffff\r\nhello\r\n0\r\n\r\n`), status: 400 },
  { id: 'SRV-18', rule: 'chunk size empty', bytes: b(`${POST_CHUNKED}\r\nhello\r\n0\r\n\r\n`), status: 400 },
  { id: 'SRV-18', rule: 'chunk size not hex', bytes: b(`${POST_CHUNKED}zz\r\nhello\r\n0\r\n\r\n`), status: 400 },
  { id: 'SRV-18', rule: 'chunk size with a sign', bytes: b(`${POST_CHUNKED}-5\r\nhello\r\n0\r\n\r\n`), status: 400 },
  { id: 'SRV-18', rule: 'chunk size "0x5"', bytes: b(`${POST_CHUNKED}0x5\r\nhello\r\n0\r\n\r\n`), status: 400 },
  { id: 'SRV-18', rule: 'missing CRLF after chunk data', bytes: b(`${POST_CHUNKED}5\r\nhelloXX0\r\n\r\n`), status: 400 },
  { id: 'SRV-18', rule: 'chunk data longer than its size', bytes: b(`${POST_CHUNKED}3\r\nhello\r\n0\r\n\r\n`), status: 400 },
  { id: 'SRV-8', rule: 'bare LF after the chunk size', bytes: b(`${POST_CHUNKED}5\nhello\r\n0\r\n\r\n`), status: 400 },
  // field lines: RFC 9112 §5
  { id: 'SRV-9', rule: 'obs-fold (continuation line with SP)', bytes: withHeader('X-A: one\r\n two'), status: 400 },
  { id: 'SRV-9', rule: 'obs-fold (continuation line with HTAB)', bytes: withHeader('X-A: one\r\n\ttwo'), status: 400 },
  { id: 'SRV-10', rule: 'whitespace between field name and colon', bytes: withHeader('X-A : one'), status: 400 },
  { id: 'SRV-10', rule: 'tab between field name and colon', bytes: withHeader('X-A\t: one'), status: 400 },
  { id: 'SRV-11', rule: 'invalid character in a field name', bytes: withHeader('X@A: one'), status: 400 },
  { id: 'SRV-11', rule: 'non-ASCII byte in a field name', bytes: withHeader('X\xe9A: one'), status: 400 },
  { id: 'SRV-11', rule: 'NUL in a field value', bytes: withHeader('X-A: o\x00ne'), status: 400 },
  { id: 'SRV-8', rule: 'bare CR in a field value', bytes: withHeader('X-A: o\rne'), status: 400 },
  { id: 'SRV-11', rule: 'DEL in a field value', bytes: withHeader('X-A: o\x7fne'), status: 400 },
  // request line: RFC 9112 §3
  { id: 'SRV-11', rule: 'invalid character in the method', bytes: b('G(T / HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-11', rule: 'NUL in the method', bytes: b('GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-11', rule: 'non-ASCII byte in the target', bytes: b('GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-11', rule: 'control byte in the target', bytes: b('GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-11', rule: 'two spaces in the request line', bytes: b('GET  / HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-11', rule: 'space inside the target', bytes: b('GET /a b HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-11', rule: 'target not in origin form', bytes: b('GET a HTTP/1.1\r\nHost: a\r\n\r\n'), status: 400 },
  // Host: RFC 9112 §3.2
  { id: 'SRV-13', rule: 'missing Host on HTTP/1.1', bytes: b('GET / HTTP/1.1\r\nX-A: 1\r\n\r\n'), status: 400 },
  { id: 'SRV-13', rule: 'repeated Host', bytes: b('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'), status: 400 },
  { id: 'SRV-13', rule: 'repeated Host on HTTP/1.0', bytes: b('GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n'), status: 400 },
  { id: 'SRV-13', rule: 'malformed Host (a space)', bytes: b('GET / HTTP/1.1\r\nHost: a b\r\n\r\n'), status: 400 },
  { id: 'SRV-13', rule: 'malformed Host (a slash)', bytes: b('GET / HTTP/1.1\r\nHost: a/b\r\n\r\n'), status: 400 },
  { id: 'SRV-13', rule: 'malformed Host (a bad port)', bytes: b('GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n'), status: 400 },
  // line endings: RFC 9112 §2.2
  { id: 'SRV-8', rule: 'bare CR ending the request line', bytes: b('GET / HTTP/1.1\rHost: a\r\n\r\n'), status: 400 },
  { id: 'SRV-8', rule: 'bare CR ending a field line', bytes: b('GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n'), status: 400 },
  { id: 'SRV-8', rule: 'bare LF ending every line (rejected by design)', bytes: b('GET / HTTP/1.1\nHost: a\n\n'), status: 400 },
  { id: 'SRV-8', rule: 'bare LF ending one field line', bytes: b('GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n'), status: 400 },
  { id: 'SRV-8', rule: 'bare LF ending the head', bytes: b('GET / HTTP/1.1\r\nHost: a\r\n\n'), status: 400 },
];

/** send writes `bytes` in one write and collects everything until the server closes. */
async function send(port: number, bytes: Buffer): Promise<{ data: Buffer; closed: boolean }> {
  const client = await RawClient.connect(port);
  try {
    client.write(bytes);
    await client.waitForClose(4000);
    return { data: client.data, closed: client.closed };
  } finally {
    client.destroy();
  }
}

/** only returns the one complete response in `data` and checks nothing follows it. */
function only(data: Buffer): ParsedResponse {
  const responses = finalResponses(data, { closed: true });
  expect(responses.length, `responses in ${JSON.stringify(data.toString('latin1'))}`).toBe(1);
  const r = responses[0]!;
  expect(r.complete).toBe(true);
  expect(data.length, 'bytes after the one response').toBe(r.head.length + r.rawBody.length);
  return r;
}

describe('each strict-parsing rule, over the wire', () => {
  for (const { id, rule, bytes, status } of ROWS) {
    it(`${id}, SRV-21: ${rule} -> ${status} and close`, async () => {
      const seen: string[] = [];
      const { port } = await startServer(recordingApp(seen));
      const { data, closed } = await send(port, bytes);
      const r = only(data);
      expect(r.status).toBe(status);
      expect(header(r, 'connection')).toBe('close');
      expect(closed).toBe(true);
      // Head errors never reach the app; a chunked body error reaches it for `/` only.
      expect(seen.every((p) => p === '/')).toBe(true);
    });
  }
});

describe('pipelined: a request smuggled behind each bad payload is never answered', () => {
  for (const { id, rule, bytes, status } of ROWS) {
    it(`${id}: ${rule} + GET /smuggled`, async () => {
      const seen: string[] = [];
      const { port } = await startServer(recordingApp(seen));
      const { data, closed } = await send(port, Buffer.concat([bytes, b(SMUGGLED)]));
      const r = only(data);
      expect(r.status).toBe(status);
      expect(closed).toBe(true);
      expect(seen).not.toContain('/smuggled');
      expect(data.toString('latin1')).not.toContain('/smuggled');
    });
  }
});

describe('valid framing that looks odd is read exactly once', () => {
  it('Transfer-Encoding:<TAB>chunked is valid (tab is OWS) and the next pipelined request is its own', async () => {
    const seen: string[] = [];
    const { port } = await startServer(recordingApp(seen));
    const client = await RawClient.connect(port);
    client.write(b('POST /tab HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n'));
    await client.waitFor(untilResponses(2), 'two responses');
    const [first, second] = finalResponses(client.data);
    expect(first!.status).toBe(200);
    expect(first!.body.toString()).toBe('/tab:hello');
    expect(second!.body.toString()).toBe('/second:');
    expect(seen).toEqual(['/tab', '/second']);
  });

  // A parser that compacts its buffer must move every offset it keeps into it: one kept from an
  // incomplete request line and not moved makes the SP after the target look like an empty
  // target. Needs: the method and its SP buffered after earlier bytes (a pipelined
  // request, or an empty line before it), then a segment holding the target and its SP but no LF.
  it.each([
    ['a pipelined request', ['GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET ', '/bb ', 'HTTP/1.1\r\nHost: a\r\n\r\n'], ['/a', '/bb']],
    ['a request after an empty line', ['\r\nGET ', '/ ', 'HTTP/1.1\r\nHost: a\r\n\r\n'], ['/']],
  ])('%s whose request line arrives in three segments is answered, not 400', async (_name, segments, paths) => {
    const seen: string[] = [];
    const { port } = await startServer(recordingApp(seen));
    const client = await RawClient.connect(port);
    for (const segment of segments) {
      client.write(b(segment));
      await new Promise((r) => setTimeout(r, 100));
    }
    await client.settle(untilResponses(paths.length), 2000);
    const responses = finalResponses(client.data);
    expect(responses.map((r) => `${r.status} ${r.body.toString()}`)).toEqual(paths.map((p) => `200 ${p}:`));
    expect(seen).toEqual(paths);
  });

  it('a Content-Length body that looks like a request is body, not a request', async () => {
    const seen: string[] = [];
    const { port } = await startServer(recordingApp(seen));
    const client = await RawClient.connect(port);
    client.write(b(`POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`));
    await client.waitFor(untilResponses(1), 'one response');
    await new Promise((r) => setTimeout(r, 100));
    const responses = finalResponses(client.data);
    expect(responses).toHaveLength(1);
    expect(responses[0]!.body.toString('latin1')).toBe(`/a:${SMUGGLED}`);
    expect(seen).toEqual(['/a']);
  });

  it('a chunked body holding "0\\r\\n\\r\\nGET /smuggled" inside a chunk is body', async () => {
    const seen: string[] = [];
    const { port } = await startServer(recordingApp(seen));
    const inner = `0\r\n\r\n${SMUGGLED}`;
    const client = await RawClient.connect(port);
    client.write(b(`${POST_CHUNKED}${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`));
    await client.waitFor(untilResponses(1), 'one response');
    await new Promise((r) => setTimeout(r, 100));
    const responses = finalResponses(client.data);
    expect(responses).toHaveLength(1);
    expect(responses[0]!.body.toString('latin1')).toBe(`/:${inner}`);
    expect(seen).toEqual(['/']);
  });
});

// ---- response safety ------------------------------------------------------------------------

interface ResponseRow {
  /** The SPEC ids the row shows. */
  id: string;
  what: string;
  /** The name (or status text) the log line must mention. */
  names: string;
  /** Bytes that must never appear on the wire. */
  evil: string;
  app: App;
}

const headerApp = (headers: HeaderList, status = '200 OK'): App => (_environ, startResponse) => {
  startResponse(status, headers);
  return ['fine'];
};

const RESPONSE_ROWS: ResponseRow[] = [
  { id: 'SR-5, SR-7, ERR-6', what: 'a header value with CRLF', names: 'X-Bad', evil: 'Set-Cookie', app: headerApp([['X-Bad', 'a\r\nSet-Cookie: evil=1']]) },
  { id: 'SR-5, SR-7, ERR-6', what: 'a header value with a bare LF', names: 'X-Bad', evil: 'Set-Cookie', app: headerApp([['X-Bad', 'a\nSet-Cookie: evil=1']]) },
  { id: 'SR-5, SR-7, ERR-6', what: 'a header value with a bare CR', names: 'X-Bad', evil: 'Set-Cookie', app: headerApp([['X-Bad', 'a\rSet-Cookie: evil=1']]) },
  { id: 'SR-5, SR-7, ERR-6', what: 'a header value with NUL', names: 'X-Bad', evil: '\x00', app: headerApp([['X-Bad', 'a\x00b']]) },
  { id: 'SR-4, SR-7, ERR-6', what: 'a header name with a space', names: 'X Bad', evil: 'X Bad', app: headerApp([['X Bad', 'v']]) },
  { id: 'SR-4, SR-7, ERR-6', what: 'a header name with a colon', names: 'X-Bad:', evil: 'X-Bad', app: headerApp([['X-Bad:', 'v']]) },
  { id: 'SR-4, SR-7, ERR-6', what: 'a header name with CRLF', names: 'X-Bad', evil: 'Set-Cookie', app: headerApp([['X-Bad\r\nSet-Cookie', 'evil=1']]) },
  { id: 'SR-1, SR-7, ERR-6', what: 'a status with CRLF and a header', names: '200\\r\\nX: y', evil: 'X: y', app: headerApp([], '200\r\nX: y') },
  { id: 'SR-1, SR-7, ERR-6', what: 'a status whose reason has CRLF', names: 'OK\\r\\nSet-Cookie', evil: 'Set-Cookie', app: headerApp([], '200 OK\r\nSet-Cookie: evil=1') },
  {
    id: 'EXT-11',
    what: 'a trailer value with CRLF',
    names: 'X-T',
    evil: 'Set-Cookie',
    app: (environ, startResponse) => {
      startResponse('200 OK', []);
      environ['nsgi.set_trailers']!([['X-T', 'a\r\nSet-Cookie: evil=1']]);
      return ['fine'];
    },
  },
  {
    id: 'EXT-7',
    what: 'an early hint with CRLF',
    names: 'Link',
    evil: 'Set-Cookie',
    app: (environ, startResponse) => {
      environ['nsgi.early_hints']!([['Link', '</a>\r\nSet-Cookie: evil=1']]);
      startResponse('200 OK', []);
      return ['fine'];
    },
  },
];

describe('response safety: invalid app headers and statuses never reach the wire', () => {
  for (const { id, what, app, names, evil } of RESPONSE_ROWS) {
    it(`${id}: ${what} -> 500, logged, not sent`, async () => {
      const healthy: App = (environ, startResponse) => {
        if (environ.PATH_INFO !== '/ok') return app(environ, startResponse);
        startResponse('200 OK', []);
        return ['ok'];
      };
      const { port, errors } = await startServer(healthy);
      const client = await RawClient.connect(port);
      client.write('GET / HTTP/1.1\nHost: a\n\n');
      await client.waitFor(untilResponses(1), 'a response');
      await new Promise((r) => setTimeout(r, 50));
      const responses = finalResponses(client.data);
      expect(responses).toHaveLength(1);
      expect(responses[0]!.status).toBe(500);
      expect(client.text).not.toContain(evil);
      expect(client.text).not.toContain('fine');
      const log = errors.join('\n');
      expect(log).toContain('GET /');
      expect(log).toContain(names);
      client.destroy();
      // The server is unharmed: the next connection is served.
      const next = await RawClient.connect(port);
      next.write('GET /ok HTTP/1.1\nHost: a\nConnection: close\n\n');
      await next.waitForClose();
      expect(finalResponses(next.data, { closed: true })[0]!.body.toString()).toBe('ok');
    });
  }
});
