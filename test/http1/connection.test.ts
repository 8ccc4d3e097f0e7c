/**
 * Http1Connection without a socket: request bytes in, exact response bytes out. The Date value
 * changes every second, so it is replaced by `<date>` before comparing.
 */
import { describe, expect, it } from 'vitest';
import { AppError, ProtocolError } from '../../src/errors.ts';
import { Http1Connection } from '../../src/http1/connection.ts';
import { Http1Shared } from '../../src/http1/shared.ts';
import { Framing, parseStatus, prepareHeaders } from '../../src/http1/writer.ts';
import { req } from '../helpers/bytes.ts';

/** output takes everything the connection wrote, as text with the Date value masked. */
function output(conn: Http1Connection): string {
  return Buffer.concat(conn.takeOutput())
    .toString('latin1')
    .replace(/^Date: [^\r]*\r\n/gm, 'Date: <date>\r\n');
}

/** connect returns a connection that has received `bytes` and read events up to the first body byte. */
function connect(bytes: Buffer, serverName?: string): Http1Connection {
  const conn = serverName === undefined ? new Http1Connection() : new Http1Connection(new Http1Shared({}, serverName));
  conn.receive(bytes);
  expect(conn.nextEvent().kind).toBe('head');
  return conn;
}

/** readToEnd reads events until the request's end. */
function readToEnd(conn: Http1Connection): void {
  for (let i = 0; i < 100; i++) if (conn.nextEvent().kind === 'end') return;
  throw new Error('request did not end');
}

const ok = parseStatus('200 OK');

describe('Http1Connection response bytes', () => {
  it('a GET answered with Content-Length: head, data and end give exact bytes', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    const framing = conn.sendHead(ok, prepareHeaders([['Content-Type', 'text/plain'], ['Content-Length', '11']]));
    expect(framing).toBe(Framing.Length);
    conn.sendData('hello ');
    conn.sendData(Buffer.from('world'));
    conn.sendEnd();
    expect(output(conn)).toBe(
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nDate: <date>\r\nServer: nsgi\r\n\r\nhello world',
    );
    expect(conn.bodyBytes).toBe(11);
    expect(conn.statusCode).toBe(200);
    expect(conn.responseState).toBe('done');
    expect(conn.shouldReuseConnection()).toBe(true);
  });

  it('SR-12, SR-13, SRV-25: the Date value is an IMF-fixdate, and an app Date or Server replaces the server one', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([['Date', 'Thu, 01 Jan 1970 00:00:00 GMT'], ['Server', 'mine'], ['Content-Length', '0']]));
    const text = Buffer.concat(conn.takeOutput()).toString('latin1');
    expect(text).toBe('HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: mine\r\nContent-Length: 0\r\n\r\n');
  });

  it('SR-13: a server name of "" sends no Server field', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`, '');
    conn.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    const text = Buffer.concat(conn.takeOutput()).toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\nContent-Length: 0\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n\r\n$/);
  });

  it('SR-19, SRV-24: an unknown length on HTTP/1.1 is chunked, with exact framing bytes', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    expect(conn.sendHead(ok, prepareHeaders([]))).toBe(Framing.Chunked);
    expect(conn.isChunked).toBe(true);
    conn.sendData('hello');
    conn.sendData(''); // an empty chunk would end the body early; it must be skipped
    conn.sendData(Buffer.alloc(26, 0x78));
    conn.sendEnd();
    expect(output(conn)).toBe(
      'HTTP/1.1 200 OK\r\nDate: <date>\r\nServer: nsgi\r\nTransfer-Encoding: chunked\r\n\r\n' +
        `5\r\nhello\r\n1a\r\n${'x'.repeat(26)}\r\n0\r\n\r\n`,
    );
    expect(conn.bodyBytes).toBe(31);
  });

  it('chunked: one chunk, then the last chunk: 5\\r\\nhello\\r\\n0\\r\\n\\r\\n', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    conn.takeOutput();
    conn.sendData('hello');
    conn.sendEnd();
    expect(output(conn)).toBe('5\r\nhello\r\n0\r\n\r\n');
  });

  it('EXT-10, SRV-24: chunked with trailers ends with the trailer block', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    conn.takeOutput();
    conn.sendData('hi');
    conn.sendEnd('X-Sum: 1\r\n');
    expect(output(conn)).toBe('2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n');
  });

  it('BODY-5: a UTF-8 string body is counted and chunked by its bytes, not its characters', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    conn.takeOutput();
    conn.sendData('\u20ac');
    expect(Buffer.concat(conn.takeOutput())).toEqual(Buffer.concat([Buffer.from('3\r\n'), Buffer.from('\u20ac'), Buffer.from('\r\n')]));
    expect(conn.bodyBytes).toBe(3);
  });

  it('a knownLength from the server becomes Content-Length', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    expect(conn.sendHead(ok, prepareHeaders([]), 4)).toBe(Framing.Length);
    conn.sendData('abcd');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nDate: <date>\r\nServer: nsgi\r\nContent-Length: 4\r\n\r\nabcd');
  });

  it('SR-17: a body longer than Content-Length sends only the declared bytes, then throws AppError', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '3']]));
    conn.takeOutput();
    conn.sendData('ab');
    expect(() => conn.sendData('cd')).toThrow(AppError);
    expect(() => conn.sendData('cd')).toThrow(expect.objectContaining({ code: 'NSGI_CONTENT_LENGTH_EXCEEDED' }));
    expect(output(conn)).toBe('abc');
    expect(conn.bodyBytes).toBe(3);
    expect(conn.shouldReuseConnection()).toBe(false);
  });

  it('SR-18: a body shorter than Content-Length throws AppError at the end and rules out reuse', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '10']]));
    conn.sendData('short');
    expect(() => conn.sendEnd()).toThrow(expect.objectContaining({ name: 'AppError', code: 'NSGI_CONTENT_LENGTH_SHORT' }));
    expect(conn.keepAliveRequested).toBe(false);
    expect(conn.shouldReuseConnection()).toBe(false);
  });

  it('SR-20: HEAD gets the head with its length and no body bytes', () => {
    const conn = connect(req`HEAD / HTTP/1.1\nHost: a\n\n`);
    expect(conn.sendHead(ok, prepareHeaders([['Content-Type', 'text/plain']]), 5)).toBe(Framing.None);
    conn.sendData('hello');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: <date>\r\nServer: nsgi\r\nContent-Length: 5\r\n\r\n');
  });

  it('SR-20: HEAD keeps an app Content-Length and sends no Transfer-Encoding when the length is unknown', () => {
    const conn = connect(req`HEAD / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '99']]));
    conn.sendData('ignored');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nContent-Length: 99\r\nDate: <date>\r\nServer: nsgi\r\n\r\n');
    const unknown = connect(req`HEAD / HTTP/1.1\nHost: a\n\n`);
    unknown.sendHead(ok, prepareHeaders([]));
    expect(output(unknown)).toBe('HTTP/1.1 200 OK\r\nDate: <date>\r\nServer: nsgi\r\n\r\n');
  });

  it('SR-20, SR-21: 204 drops an app Content-Length and any body', () => {
    const conn = connect(req`DELETE /x HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(parseStatus('204 No Content'), prepareHeaders([['Content-Length', '5'], ['X-A', 'b']]));
    conn.sendData('hello');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 204 No Content\r\nX-A: b\r\nDate: <date>\r\nServer: nsgi\r\n\r\n');
  });

  it('SR-20: 304 sends no body', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    expect(conn.sendHead(parseStatus('304 Not Modified'), prepareHeaders([]))).toBe(Framing.None);
    conn.sendData('hello');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 304 Not Modified\r\nDate: <date>\r\nServer: nsgi\r\n\r\n');
  });

  it('SRV-3, SRV-4: HTTP/1.0 with Connection: keep-alive and a length is answered with Connection: keep-alive', () => {
    const conn = connect(req`GET / HTTP/1.0\nConnection: keep-alive\n\n`);
    readToEnd(conn);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '2']]));
    conn.sendData('ok');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: <date>\r\nServer: nsgi\r\nConnection: keep-alive\r\n\r\nok');
    expect(conn.shouldReuseConnection()).toBe(true);
  });

  it('SR-19, SRV-2, SRV-3: HTTP/1.0 with keep-alive but no length is close-delimited', () => {
    const conn = connect(req`GET / HTTP/1.0\nConnection: keep-alive\n\n`);
    readToEnd(conn);
    expect(conn.sendHead(ok, prepareHeaders([]))).toBe(Framing.Close);
    conn.sendData('raw body');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nDate: <date>\r\nServer: nsgi\r\nConnection: close\r\n\r\nraw body');
    expect(conn.shouldReuseConnection()).toBe(false);
  });

  it('SRV-3, SRV-4: HTTP/1.0 without keep-alive gets Connection: close even with a length', () => {
    const conn = connect(req`GET / HTTP/1.0\n\n`);
    readToEnd(conn);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '2']]));
    conn.sendData('ok');
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: <date>\r\nServer: nsgi\r\nConnection: close\r\n\r\nok');
    expect(conn.shouldReuseConnection()).toBe(false);
  });

  it('SR-9, SR-10: an app Connection: close is honoured once and hop-by-hop fields are not sent', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    conn.sendHead(ok, prepareHeaders([['Connection', 'close'], ['Transfer-Encoding', 'gzip'], ['Content-Length', '0']]));
    conn.sendEnd();
    expect(output(conn)).toBe('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: <date>\r\nServer: nsgi\r\nConnection: close\r\n\r\n');
    expect(conn.shouldReuseConnection()).toBe(false);
  });
});

describe('100-continue', () => {
  it('IN-6: Expect: 100-continue: sendContinue writes the interim response once', () => {
    const conn = connect(req`PUT / HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 2\n\n`);
    expect(conn.awaitingContinue).toBe(true);
    conn.sendContinue();
    conn.sendContinue();
    expect(output(conn)).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    expect(conn.awaitingContinue).toBe(false);
    conn.receive(Buffer.from('ok'));
    expect(conn.nextEvent().kind).toBe('data');
  });

  it('sendContinue writes nothing without Expect', () => {
    const conn = connect(req`PUT / HTTP/1.1\nHost: a\nContent-Length: 2\n\n`);
    expect(conn.awaitingContinue).toBe(false);
    conn.sendContinue();
    expect(conn.out.size).toBe(0);
  });

  it('sendContinue writes nothing once the final head has gone out', () => {
    const conn = connect(req`PUT / HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 2\n\n`);
    conn.sendHead(parseStatus('413 Content Too Large'), prepareHeaders([['Content-Length', '0']]));
    conn.takeOutput();
    conn.sendContinue();
    expect(conn.out.size).toBe(0);
  });

  it('a new exchange may send its own 100 Continue', () => {
    const conn = connect(
      req`PUT /1 HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 1\n\nxPUT /2 HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 1\n\ny`,
    );
    conn.sendContinue();
    readToEnd(conn);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    conn.sendEnd();
    expect(conn.nextEvent().kind).toBe('paused');
    conn.nextCycle();
    conn.takeOutput();
    expect(conn.nextEvent().kind).toBe('head');
    conn.sendContinue();
    expect(output(conn)).toBe('HTTP/1.1 100 Continue\r\n\r\n');
  });
});

/** rejectNext reads the next event, which must be a ProtocolError, and answers it with rejectRequest. */
function rejectNext(conn: Http1Connection): void {
  let error: unknown;
  try {
    conn.nextEvent();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(ProtocolError);
  conn.rejectRequest(error as ProtocolError);
}

describe('error responses', () => {
  it('SRV-21: sendErrorResponse writes a complete short plain-text response and closes', () => {
    const conn = new Http1Connection();
    conn.sendErrorResponse(400, 'bad things', true);
    const body = 'Bad Request: bad things\n';
    expect(output(conn)).toBe(
      'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n' +
        `Content-Length: ${body.length}\r\nDate: <date>\r\nServer: nsgi\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(conn.statusCode).toBe(400);
    expect(conn.responseState).toBe('done');
    expect(conn.shouldReuseConnection()).toBe(false);
  });

  it('sendErrorResponse without detail or close, to HTTP/1.0 keep-alive, for HEAD', () => {
    const conn = connect(req`HEAD / HTTP/1.0\nConnection: keep-alive\n\n`);
    readToEnd(conn);
    conn.sendErrorResponse(500, '', false);
    expect(output(conn)).toBe(
      'HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n' +
        'Content-Length: 22\r\nDate: <date>\r\nServer: nsgi\r\nConnection: keep-alive\r\n\r\n',
    );
    expect(conn.shouldReuseConnection()).toBe(true);
  });

  it('an unknown status code gets the reason "Error"', () => {
    const conn = new Http1Connection();
    conn.sendErrorResponse(418, 'x', true);
    expect(output(conn)).toMatch(/^HTTP\/1\.1 418 Error\r\n[^]*\r\n\r\nError: x\n$/);
  });

  it('SRV-21: rejectRequest answers a ProtocolError with its status and rules out reuse', () => {
    const conn = new Http1Connection();
    conn.receive(req`GET / HTTP/2.0\nHost: a\n\n`);
    rejectNext(conn);
    expect(output(conn)).toMatch(/^HTTP\/1\.1 505 HTTP Version Not Supported\r\n[^]*Connection: close\r\n\r\nHTTP Version Not Supported: HTTP\/2\.0 is not supported\n$/);
    expect(conn.keepAliveRequested).toBe(false);
  });

  const refusedHeads: Array<[string, Buffer]> = [
    ['400', req`HEAD / HTTP/1.1\nHost: a b\n\n`],
    ['505', req`HEAD / HTTP/2.0\nHost: a\n\n`],
    ['400', req`HEAD * HTTP/1.1\nHost: a\n\n`],
    ['414', req`HEAD /${'a'.repeat(9000)} HTTP/1.1\nHost: a\n\n`],
    ['414', req`HEAD /${'a'.repeat(9000)}`],
    ['400', req`HEAD /a\x01b`],
  ];
  for (const [status, bytes] of refusedHeads) {
    it(`SRV-21: rejectRequest of a HEAD request refused with ${status} sends no body (${bytes.length} bytes)`, () => {
      const conn = new Http1Connection();
      conn.receive(bytes);
      rejectNext(conn);
      const text = output(conn);
      expect(text).toMatch(new RegExp(`^HTTP/1\\.1 ${status} [^]*Content-Length: \\d+\r\n`));
      expect(text.endsWith('\r\n\r\n')).toBe(true);
    });
  }

  it('rejectRequest after the head went out writes nothing more', () => {
    const conn = connect(req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    conn.takeOutput();
    conn.receive(Buffer.from('zz\r\n'));
    expect(() => conn.nextEvent()).toThrow(ProtocolError);
    conn.rejectRequest(new ProtocolError('NSGI_BAD_CHUNK_SIZE', 400, 'x'));
    expect(conn.out.size).toBe(0);
    expect(conn.keepAliveRequested).toBe(false);
  });
});

describe('shouldReuseConnection and exchanges', () => {
  it('not before the request body has been read, even when the response is done', () => {
    const conn = connect(req`POST / HTTP/1.1\nHost: a\nContent-Length: 5\n\nhel`);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    conn.sendEnd();
    expect(conn.shouldReuseConnection()).toBe(false);
    expect(conn.nextEvent().kind).toBe('data');
    expect(conn.nextEvent().kind).toBe('need-data');
    conn.receive(Buffer.from('lo'));
    readToEnd(conn);
    expect(conn.shouldReuseConnection()).toBe(true);
  });

  it('not before the response is done, even when the request is', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    expect(conn.shouldReuseConnection()).toBe(false);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    expect(conn.shouldReuseConnection()).toBe(false);
    conn.sendEnd();
    expect(conn.shouldReuseConnection()).toBe(true);
  });

  it('SRV-3: not when the client asked to close, nor after mustClose or cut', () => {
    const closing = connect(req`GET / HTTP/1.1\nHost: a\nConnection: close\n\n`);
    readToEnd(closing);
    closing.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    closing.sendEnd();
    expect(output(closing)).toContain('Connection: close\r\n');
    expect(closing.shouldReuseConnection()).toBe(false);

    const told = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(told);
    told.mustClose();
    told.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    told.sendEnd();
    expect(output(told)).toContain('Connection: close\r\n');
    expect(told.shouldReuseConnection()).toBe(false);

    const cut = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(cut);
    cut.sendHead(ok, prepareHeaders([]));
    cut.cut();
    expect(cut.responseState).toBe('closed');
    expect(cut.shouldReuseConnection()).toBe(false);
  });

  it('SRV-5: nextCycle resets the exchange and reads the pipelined request', () => {
    const conn = connect(req`GET /1 HTTP/1.1\nHost: a\n\nGET /2 HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    conn.sendHead(ok, prepareHeaders([]));
    conn.sendData('abc');
    conn.sendEnd();
    expect(conn.nextEvent().kind).toBe('paused');
    conn.nextCycle();
    expect(conn.request).toBeNull();
    expect(conn.responseState).toBe('idle');
    expect(conn.bodyBytes).toBe(0);
    expect(conn.statusCode).toBe(0);
    const event = conn.nextEvent();
    expect(event.kind === 'head' && event.head.target).toBe('/2');
    expect(conn.request?.target).toBe('/2');
  });

  it('idle only between exchanges with nothing buffered', () => {
    const conn = new Http1Connection();
    expect(conn.idle).toBe(true);
    conn.receive(Buffer.from('G'));
    expect(conn.idle).toBe(false);
  });
});

describe('illegal moves throw', () => {
  it('sendData before sendHead', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    expect(() => conn.sendData('x')).toThrow(/idle by data/);
    expect(conn.out.size).toBe(0);
  });

  it('sendEnd before sendHead', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    expect(() => conn.sendEnd()).toThrow(/idle by end/);
  });

  it('sendHead twice', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    expect(() => conn.sendHead(ok, prepareHeaders([]))).toThrow(/sending by head/);
  });

  it('sendData after sendEnd', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([['Content-Length', '0']]));
    conn.sendEnd();
    expect(() => conn.sendData('x')).toThrow(/done by data/);
  });

  it('sendErrorResponse after the head went out', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    expect(() => conn.sendErrorResponse(500, '', true)).toThrow(/sending by error/);
  });

  it('nextCycle before the response is done', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    readToEnd(conn);
    expect(() => conn.nextCycle()).toThrow(/idle by next/);
  });

  it('sending after cut', () => {
    const conn = connect(req`GET / HTTP/1.1\nHost: a\n\n`);
    conn.sendHead(ok, prepareHeaders([]));
    conn.cut();
    expect(() => conn.sendData('x')).toThrow(/closed by data/);
    expect(() => conn.sendEnd()).toThrow(/closed by end/);
  });
});
