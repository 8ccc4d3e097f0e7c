/**
 * The sans-I/O response side: status and header checks, the framing decision and OutBuffer.
 */
import { describe, expect, it } from 'vitest';
import { OutBuffer } from '../../src/http1/out-buffer.ts';
import {
  Framing,
  bodyAllowedForStatus,
  chooseFraming,
  httpDate,
  parseStatus,
  prepareHeaders,
} from '../../src/http1/writer.ts';

const concat = (parts: Uint8Array[]): string => Buffer.concat(parts).toString('latin1');

describe('parseStatus', () => {
  it.each([
    ['200 OK', 200, 'HTTP/1.1 200 OK\r\n'],
    ['404 Not Found', 404, 'HTTP/1.1 404 Not Found\r\n'],
    ['200', 200, 'HTTP/1.1 200 \r\n'],
    ['599 Custom \xe9', 599, 'HTTP/1.1 599 Custom \xe9\r\n'],
    ['204 ', 204, 'HTTP/1.1 204 \r\n'],
  ])('SR-1, SR-2: accepts %j', (status, code, line) => {
    expect(parseStatus(status)).toEqual({ code, line });
    // A second call (from the cache) gives the same answer.
    expect(parseStatus(status)).toEqual({ code, line });
  });

  it.each([
    '20 OK',
    '200OK',
    '600 X',
    '199 X',
    '100 Continue',
    '099 X',
    '200 OK\r\nX: y',
    '200 OK\n',
    ' 200 OK',
    '2OO OK',
    '',
    '200 \x00',
    '200 caf\u20ac',
  ])('SR-1, SR-2, SR-7: rejects %j with a TypeError quoting it', (status) => {
    expect(() => parseStatus(status)).toThrow(TypeError);
    expect(() => parseStatus(status)).toThrow(JSON.stringify(status));
  });

  it.each([200, null, undefined, { code: 200 }, ['200 OK'], Buffer.from('200 OK')])(
    'SR-1, SR-7: rejects the non-string %j',
    (status) => {
      expect(() => parseStatus(status)).toThrow(/status must be a string/);
    },
  );
});

describe('prepareHeaders', () => {
  it('SR-3, SR-8: encodes valid headers in order, numbers as strings', () => {
    expect(prepareHeaders([['Content-Type', 'text/plain'], ['X-N', 42], ['X-Latin', 'caf\xe9'], ['X-Empty', '']])).toEqual({
      block: 'Content-Type: text/plain\r\nX-N: 42\r\nX-Latin: caf\xe9\r\nX-Empty: \r\n',
      contentLength: -1,
      close: false,
      hasDate: false,
      hasServer: false,
      upgrade: '',
    });
  });

  it('SR-9, SR-11: keeps an Upgrade aside (for a 426) rather than in the block', () => {
    const prepared = prepareHeaders([['Upgrade', 'websocket'], ['Upgrade', 'h2c'], ['X-A', '1']]);
    expect(prepared.block).toBe('X-A: 1\r\n');
    expect(prepared.upgrade).toBe('websocket, h2c');
  });

  it.each(['Bad Name', 'X:Y', '', 'caf\xe9', 'X\r\nY', 'a(b)', 'ta\tb'])('SR-4, SR-7: rejects the header name %j', (name) => {
    expect(() => prepareHeaders([[name, 'v']])).toThrow(TypeError);
    expect(() => prepareHeaders([[name, 'v']])).toThrow(/not a valid token/);
  });

  it.each(['a\rb', 'a\nb', 'a\r\nX-Injected: 1', 'a\x00b', 'a\x7fb', 'a\x01b', 'euro \u20ac', 'emoji \u{1f600}'])(
    'SR-5, SR-7: rejects the header value %j',
    (value) => {
      expect(() => prepareHeaders([['X-Value', value]])).toThrow(TypeError);
      expect(() => prepareHeaders([['X-Value', value]])).toThrow(/X-Value/);
    },
  );

  it.each([
    ['not an array', 'X: y'],
    ['a pair that is a string', ['X: y']],
    ['a pair of three', [['X', 'y', 'z']]],
    ['a non-string value', [['X', null]]],
    ['a non-string name', [[1, 'y']]],
  ])('SR-3, SR-7: rejects %s', (_what, headers) => {
    expect(() => prepareHeaders(headers)).toThrow(TypeError);
  });

  it.each(['Transfer-Encoding', 'transfer-encoding', 'Keep-Alive', 'Upgrade', 'TE', 'Proxy-Connection', 'Connection'])(
    'SR-9: drops the hop-by-hop field %s',
    (name) => {
      const prepared = prepareHeaders([['X-Before', '1'], [name, 'chunked'], ['X-After', '2']]);
      expect(prepared.block).toBe('X-Before: 1\r\nX-After: 2\r\n');
      expect(prepared.close).toBe(false);
    },
  );

  it.each(['close', 'Close', 'keep-alive, close', 'close , foo', '\tCLOSE'])('SR-10: notices Connection: %j and drops the field', (value) => {
    const prepared = prepareHeaders([['connection', value]]);
    expect(prepared.close).toBe(true);
    expect(prepared.block).toBe('');
  });

  it.each(['closed', 'keep-alive', 'notclose'])('SR-10: does not take Connection: %j for close', (value) => {
    expect(prepareHeaders([['Connection', value]]).close).toBe(false);
  });

  it('SR-12, SR-13: notices Date and Server and keeps them', () => {
    const prepared = prepareHeaders([['date', 'Thu, 01 Jan 1970 00:00:00 GMT'], ['SERVER', 'mine']]);
    expect(prepared.hasDate).toBe(true);
    expect(prepared.hasServer).toBe(true);
    expect(prepared.block).toBe('date: Thu, 01 Jan 1970 00:00:00 GMT\r\nSERVER: mine\r\n');
  });

  it('SR-6: notices Content-Length and keeps it once when repeated with the same value', () => {
    expect(prepareHeaders([['Content-Length', '12']])).toMatchObject({ contentLength: 12, block: 'Content-Length: 12\r\n' });
    expect(prepareHeaders([['content-length', 0]])).toMatchObject({ contentLength: 0 });
    expect(prepareHeaders([['Content-Length', '5'], ['content-length', '5']])).toMatchObject({
      contentLength: 5,
      block: 'Content-Length: 5\r\n',
    });
  });

  it.each([[['5', '6']], [['-1']], [['1.5']], [['abc']], [['']], [['1234567890123456']]])(
    'SR-6, SR-7: rejects Content-Length values %j',
    (values) => {
      expect(() => prepareHeaders(values.map((v) => ['Content-Length', v]))).toThrow(TypeError);
    },
  );
});

describe('chooseFraming', () => {
  it.each([
    ['HEAD gets no body', true, 200, 10, true, Framing.None],
    ['HEAD without a length gets no body', true, 200, -1, true, Framing.None],
    ['204 gets no body', false, 204, 5, true, Framing.None],
    ['304 gets no body', false, 304, -1, true, Framing.None],
    ['a known length is used', false, 200, 10, true, Framing.Length],
    ['a zero length is used', false, 200, 0, true, Framing.Length],
    ['a known length is used for HTTP/1.0', false, 200, 10, false, Framing.Length],
    ['an unknown length is chunked for HTTP/1.1', false, 200, -1, true, Framing.Chunked],
    ['an unknown length is close-delimited for HTTP/1.0', false, 500, -1, false, Framing.Close],
  ])('SR-15, SR-19, SR-20: %s', (_name, isHead, code, length, http11, framing) => {
    expect(chooseFraming(isHead, code, length, http11)).toBe(framing);
  });

  it('SR-20: bodyAllowedForStatus excludes 1xx, 204, 205 and 304 only', () => {
    expect([100, 101, 199, 200, 204, 205, 206, 304, 404].map(bodyAllowedForStatus)).toEqual([
      false, false, false, true, false, false, true, false, true,
    ]);
  });
});

describe('small encoders', () => {
  it('SRV-24: OutBuffer.chunkFrame writes the size in lowercase hex with CRLF, after the previous CRLF if asked', () => {
    const frame = (size: number, crlfFirst: boolean): string => {
      const out = new OutBuffer();
      out.chunkFrame(size, crlfFirst);
      return Buffer.concat(out.take()).toString('latin1');
    };
    expect(frame(5, false)).toBe('5\r\n');
    expect(frame(255, true)).toBe('\r\nff\r\n');
    expect(frame(65536, false)).toBe('10000\r\n');
    expect(frame(0xffffffff, false)).toBe('ffffffff\r\n');
    expect(frame(2 ** 33 + 10, true)).toBe('\r\n20000000a\r\n');
  });

  it('SRV-25: httpDate is an IMF-fixdate', () => {
    expect(httpDate()).toMatch(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/);
  });
});

describe('OutBuffer', () => {
  it('latin1, utf8 and bytes come out in the order they went in', () => {
    const out = new OutBuffer();
    out.latin1('HTTP/1.1 200 OK\r\n\xe9');
    out.utf8('h\u00e9\u20ac', Buffer.byteLength('h\u00e9\u20ac'));
    out.bytes(Uint8Array.of(0, 1, 2, 255));
    out.latin1('end');
    expect(out.size).toBe(18 + 6 + 4 + 3);
    const taken = Buffer.concat(out.take());
    expect(taken).toEqual(
      Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n\xe9', 'latin1'), Buffer.from('h\u00e9\u20ac'), Buffer.from([0, 1, 2, 255]), Buffer.from('end')]),
    );
    expect(out.size).toBe(0);
    expect(out.take()).toEqual([]);
  });

  it('a large append is queued by reference, between copied small ones', () => {
    const out = new OutBuffer();
    const big = Buffer.alloc(64 * 1024, 0x61);
    out.latin1('head');
    out.bytes(big);
    out.latin1('tail');
    const parts = out.take();
    expect(parts).toContain(big);
    expect(concat(parts)).toBe('head' + 'a'.repeat(64 * 1024) + 'tail');
  });

  it('small appends are copied: changing the source afterwards does not change the output', () => {
    const out = new OutBuffer();
    const small = Buffer.from('abc');
    out.bytes(small);
    small[0] = 0x7a;
    expect(concat(out.take())).toBe('abc');
  });

  it('two buffers appending in turn each get only their own bytes, in order', () => {
    const a = new OutBuffer();
    const b = new OutBuffer();
    a.latin1('A1');
    b.latin1('B1');
    a.latin1('A2');
    b.utf8('B2', 2);
    a.bytes(Buffer.from('A3'));
    expect(concat(a.take())).toBe('A1A2A3');
    expect(concat(b.take())).toBe('B1B2');
  });

  it('bytes already taken are not overwritten by later appends, even across many slabs', () => {
    const out = new OutBuffer();
    const taken: Array<{ parts: Uint8Array[]; text: string }> = [];
    for (let i = 0; i < 200; i++) {
      const text = `${i}:` + String.fromCharCode(0x41 + (i % 26)).repeat(1000 + (i % 7) * 977);
      out.latin1(text);
      taken.push({ parts: out.take(), text });
    }
    for (const t of taken) expect(concat(t.parts)).toBe(t.text);
  });

  it('with memory of its own, bytes taken are not overwritten until recycle() says they were written', () => {
    const out = new OutBuffer();
    out.latin1('head');
    out.useOwn();
    const taken: Array<{ parts: Uint8Array[]; text: string }> = [];
    // Far more than the buffer's own memory holds, with no recycle(): it must move on, not wrap.
    for (let i = 0; i < 300; i++) {
      const text = `${i}:` + String.fromCharCode(0x61 + (i % 26)).repeat(700 + (i % 5) * 311);
      out.latin1(text);
      out.chunkFrame(i, i % 2 === 0);
      out.bytes(Buffer.from(text));
      taken.push({ parts: out.take(), text: (i === 0 ? 'head' : '') + text + (i % 2 === 0 ? '\r\n' : '') + `${i.toString(16)}\r\n` + text });
    }
    for (const t of taken) expect(concat(t.parts)).toBe(t.text);
  });

  it('recycle() reuses its own memory only when nothing gathered since the last take points into it', () => {
    const out = new OutBuffer();
    out.useOwn();
    out.latin1('first');
    const [first] = out.take();
    out.latin1('waiting');
    out.recycle();
    out.latin1('!');
    expect(concat(out.take())).toBe('waiting!');
    out.recycle();
    out.latin1('again');
    const [again] = out.take();
    expect(again!.buffer).toBe(first!.buffer);
    expect(again!.byteOffset).toBe(first!.byteOffset);
    out.dropOwn();
    out.latin1('slab');
    const [slab] = out.take();
    expect(slab!.buffer).not.toBe(first!.buffer);
    expect(concat([slab!])).toBe('slab');
  });

  it('a large utf8 string is encoded whole', () => {
    const out = new OutBuffer();
    const s = '\u20ac'.repeat(10_000);
    out.utf8(s, Buffer.byteLength(s));
    expect(Buffer.concat(out.take()).toString('utf8')).toBe(s);
  });
});
