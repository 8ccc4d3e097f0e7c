/**
 * RequestParser on valid input. Every case is raw bytes and the exact events they must give, and
 * every case is run whole, byte by byte, split at every offset, and followed by a pipelined second
 * request: the events may not depend on how the bytes arrive.
 */
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { RequestParser, type RequestHead } from '../../src/http1/parser.ts';
import {
  PAUSE,
  crlf,
  data,
  end,
  parseAll,
  pieces,
  raw,
  req,
  type CollectedEvent,
  type Split,
} from '../helpers/bytes.ts';

/** head builds an expected head event: a GET / HTTP/1.1 with Host `a`, changed by `fields`. */
function head(fields: Partial<RequestHead>): CollectedEvent {
  return {
    kind: 'head',
    head: {
      method: 'GET',
      target: '/',
      version: 'HTTP/1.1',
      headers: [['Host', 'a']],
      host: 'a',
      contentLength: -1,
      chunked: false,
      keepAlive: true,
      expectContinue: false,
      upgrade: false,
      ...fields,
    },
  };
}

interface ValidCase {
  name: string;
  /** The SPEC rules the case shows, if any, as a title prefix (`SRV-18, SRV-20`). */
  spec?: string;
  bytes: Buffer;
  events: CollectedEvent[];
}

const manyHeaders: Array<[string, string]> = [['Host', 'example.com']];
for (let i = 0; i < 30; i++) manyHeaders.push([`X-Header-${i}`, `value number ${i}`]);

const VALID: ValidCase[] = [
  {
    name: 'simple GET',
    bytes: req`GET / HTTP/1.1\nHost: a\n\n`,
    events: [head({}), end(), PAUSE],
  },
  {
    name: 'GET with many headers, order and case preserved',
    bytes: crlf(`GET /index.html?q=1 HTTP/1.1\n${manyHeaders.map(([n, v]) => `${n}: ${v}\n`).join('')}\n`),
    events: [head({ target: '/index.html?q=1', headers: manyHeaders, host: 'example.com' }), end(), PAUSE],
  },
  {
    name: 'HTTP/1.0 without Connection closes after the response',
    spec: 'SRV-1, SRV-3',
    bytes: req`GET / HTTP/1.0\n\n`,
    events: [head({ version: 'HTTP/1.0', headers: [], host: undefined, keepAlive: false }), end(), PAUSE],
  },
  {
    name: 'HTTP/1.0 with Connection: keep-alive stays open',
    spec: 'SRV-1, SRV-3',
    bytes: req`GET / HTTP/1.0\nHost: a\nConnection: Keep-Alive\n\n`,
    events: [
      head({ version: 'HTTP/1.0', headers: [['Host', 'a'], ['Connection', 'Keep-Alive']], keepAlive: true }),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'HTTP/1.1 with Connection: close',
    spec: 'SRV-3',
    bytes: req`GET / HTTP/1.1\nHost: a\nConnection: close\n\n`,
    events: [head({ headers: [['Host', 'a'], ['Connection', 'close']], keepAlive: false }), end(), PAUSE],
  },
  {
    name: 'POST with a Content-Length body',
    bytes: req`POST /form HTTP/1.1\nHost: a\nContent-Length: 11\n\nhello world`,
    events: [
      head({ method: 'POST', target: '/form', headers: [['Host', 'a'], ['Content-Length', '11']], contentLength: 11 }),
      data('hello world'),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'POST with Content-Length: 0 has no data event',
    bytes: req`POST / HTTP/1.1\nHost: a\nContent-Length: 0\n\n`,
    events: [head({ method: 'POST', headers: [['Host', 'a'], ['Content-Length', '0']], contentLength: 0 }), end(), PAUSE],
  },
  {
    name: 'body bytes that look like CRLF and a request are only data',
    bytes: req`PUT / HTTP/1.1\nHost: a\nContent-Length: 21\n\n${'\r\nGET / HTTP/1.1\r\n\r\n\n'}`,
    events: [
      head({ method: 'PUT', headers: [['Host', 'a'], ['Content-Length', '21']], contentLength: 21 }),
      data('\r\nGET / HTTP/1.1\r\n\r\n\n'),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'chunked body with several chunks, extensions and trailers',
    spec: 'SRV-18',
    bytes: req`POST /up HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5;name=value\nhello\n1 ; a = b ; c="quo\\"ted;x"\n,\nB\n 0123456789\n000\nX-Checksum: abc\nX-Other:  two words \n\n`,
    events: [
      head({ method: 'POST', target: '/up', headers: [['Host', 'a'], ['Transfer-Encoding', 'chunked']], chunked: true }),
      data('hello, 0123456789'),
      end([['X-Checksum', 'abc'], ['X-Other', 'two words']]),
      PAUSE,
    ],
  },
  {
    name: 'chunked body with uppercase hex size and a quoted extension',
    spec: 'SRV-18',
    bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: Chunked\n\n1A;ext="a b"\n${'x'.repeat(26)}\n0\n\n`,
    events: [
      head({ method: 'POST', headers: [['Host', 'a'], ['Transfer-Encoding', 'Chunked']], chunked: true }),
      data('x'.repeat(26)),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'zero-length chunked body',
    bytes: req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n0\n\n`,
    events: [
      head({ method: 'POST', headers: [['Host', 'a'], ['Transfer-Encoding', 'chunked']], chunked: true }),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'empty lines before the request line are ignored',
    spec: 'SRV-20',
    bytes: req`\n\n\nGET / HTTP/1.1\nHost: a\n\n`,
    events: [head({}), end(), PAUSE],
  },
  {
    name: 'absolute-form target',
    bytes: req`GET http://example.com:8080/path?x=1 HTTP/1.1\nHost: example.com:8080\n\n`,
    events: [
      head({
        target: 'http://example.com:8080/path?x=1',
        headers: [['Host', 'example.com:8080']],
        host: 'example.com:8080',
      }),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'OPTIONS * (asterisk-form)',
    bytes: req`OPTIONS * HTTP/1.1\nHost: a\n\n`,
    events: [head({ method: 'OPTIONS', target: '*' }), end(), PAUSE],
  },
  {
    name: 'Expect: 100-continue sets expectContinue',
    bytes: req`PUT /f HTTP/1.1\nHost: a\nExpect: 100-Continue\nContent-Length: 2\n\nok`,
    events: [
      head({
        method: 'PUT',
        target: '/f',
        headers: [['Host', 'a'], ['Expect', '100-Continue'], ['Content-Length', '2']],
        contentLength: 2,
        expectContinue: true,
      }),
      data('ok'),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'Expect is a list: 100-continue among empty members still sets expectContinue',
    bytes: req`PUT /f HTTP/1.1\nHost: a\nExpect: , 100-continue ,\nContent-Length: 2\n\nok`,
    events: [
      head({
        method: 'PUT',
        target: '/f',
        headers: [['Host', 'a'], ['Expect', ', 100-continue ,'], ['Content-Length', '2']],
        contentLength: 2,
        expectContinue: true,
      }),
      data('ok'),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'Expect: 100-continue is ignored in HTTP/1.0',
    bytes: req`PUT / HTTP/1.0\nExpect: 100-continue\nContent-Length: 1\n\nz`,
    events: [
      head({
        method: 'PUT',
        version: 'HTTP/1.0',
        headers: [['Expect', '100-continue'], ['Content-Length', '1']],
        host: undefined,
        contentLength: 1,
        keepAlive: false,
      }),
      data('z'),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'Connection: Upgrade with Upgrade: websocket sets upgrade',
    spec: 'UPG-1',
    bytes: req`GET /ws HTTP/1.1\nHost: a\nConnection: keep-alive, Upgrade\nUpgrade: websocket\n\n`,
    events: [
      head({
        target: '/ws',
        headers: [['Host', 'a'], ['Connection', 'keep-alive, Upgrade'], ['Upgrade', 'websocket']],
        upgrade: true,
      }),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'Upgrade without Connection: upgrade is not an upgrade',
    spec: 'UPG-1',
    bytes: req`GET / HTTP/1.1\nHost: a\nUpgrade: websocket\n\n`,
    events: [head({ headers: [['Host', 'a'], ['Upgrade', 'websocket']] }), end(), PAUSE],
  },
  {
    name: 'OWS around field values is trimmed, inner whitespace kept',
    bytes: req`GET / HTTP/1.1\nHost:a\nX-A: \t spaced \t value\t \nX-Empty:\nX-Blank:   \n\n`,
    events: [
      head({ headers: [['Host', 'a'], ['X-A', 'spaced \t value'], ['X-Empty', ''], ['X-Blank', '']] }),
      end(),
      PAUSE,
    ],
  },
  {
    name: 'obs-text (0x80-0xff) in a field value is accepted as latin-1',
    bytes: req`GET / HTTP/1.1\nHost: a\nX-Name: caf\xe9 \x80\xff\n\n`,
    events: [head({ headers: [['Host', 'a'], ['X-Name', 'caf\xe9 \x80\xff']] }), end(), PAUSE],
  },
  {
    name: 'HTTP/1.2 is read as HTTP/1.1',
    spec: 'SRV-19',
    bytes: req`GET / HTTP/1.2\nHost: a\n\n`,
    events: [head({ version: 'HTTP/1.1' }), end(), PAUSE],
  },
  {
    name: 'methods are case-sensitive tokens',
    spec: 'SRV-7',
    bytes: req`m!#$%&'*+-.^_\`|~9 /p HTTP/1.1\nHost: a\n\n`,
    events: [head({ method: "m!#$%&'*+-.^_`|~9", target: '/p' }), end(), PAUSE],
  },
  {
    name: 'HTTP/1.0 without Host is fine',
    spec: 'SRV-1, SRV-13',
    bytes: req`POST /x HTTP/1.0\nContent-Length: 3\n\nabc`,
    events: [
      head({
        method: 'POST',
        target: '/x',
        version: 'HTTP/1.0',
        headers: [['Content-Length', '3']],
        host: undefined,
        contentLength: 3,
        keepAlive: false,
      }),
      data('abc'),
      end(),
      PAUSE,
    ],
  },
];

/** SECOND is a request pipelined after each case to check it does not disturb the first. */
const SECOND = req`DELETE /second HTTP/1.1\nHost: b\n\n`;
const SECOND_EVENTS: CollectedEvent[] = [
  head({ method: 'DELETE', target: '/second', headers: [['Host', 'b']], host: 'b' }),
  end(),
  PAUSE,
];

function expectEvents(bytes: Buffer, split: Split, events: CollectedEvent[], requests = 1): void {
  const result = parseAll(bytes, { split, requests });
  expect(result.error, `split ${JSON.stringify(split)}`).toBeUndefined();
  expect(result.events, `split ${JSON.stringify(split)}`).toEqual(events);
  expect(result.last).toBe('paused');
}

describe('RequestParser reads valid requests the same however they arrive', () => {
  for (const c of VALID) {
    const ids = c.spec === undefined ? '' : `${c.spec}: `;
    describe(c.name, () => {
      it(`${ids}whole`, () => {
        expectEvents(c.bytes, 'whole', c.events);
      });
      it(`${ids}byte by byte`, () => {
        expectEvents(c.bytes, 'bytes', c.events);
      });
      it(`${ids}split at every offset`, () => {
        for (let at = 0; at <= c.bytes.length; at++) expectEvents(c.bytes, at, c.events);
      });
      it(`${ids}with a pipelined request behind it, whole, byte by byte and split at every offset`, () => {
        const both = Buffer.concat([c.bytes, SECOND]);
        const events = [...c.events, ...SECOND_EVENTS];
        expectEvents(both, 'whole', events, 2);
        expectEvents(both, 'bytes', events, 2);
        for (let at = 0; at <= both.length; at++) expectEvents(both, at, events, 2);
        // Reading only the first request leaves the second buffered, untouched.
        const first = parseAll(both, { requests: 1 });
        expect(first.events).toEqual(c.events);
        expect(first.parser.buffered).toBe(SECOND.length);
      });
    });
  }
});

describe('pipelining', () => {
  it('SRV-5: pipelined requests: paused after end until nextCycle, then the next request from the buffer', () => {
    const parser = new RequestParser();
    parser.feed(
      req`POST /1 HTTP/1.1\nHost: a\nContent-Length: 3\n\nabcGET /2 HTTP/1.1\nHost: a\n\nGET /3 HTTP/1.1\nHost: a\n\n`,
    );
    const first = parser.next();
    expect(first.kind === 'head' && first.head.target).toBe('/1');
    const body = parser.next();
    expect(body.kind === 'data' && Buffer.from(body.data).toString()).toBe('abc');
    expect(parser.next()).toEqual(end());
    // Without nextCycle() the buffered second request is never read.
    expect(parser.next()).toEqual({ kind: 'paused' });
    expect(parser.next()).toEqual({ kind: 'paused' });
    expect(parser.buffered).toBe(req`GET /2 HTTP/1.1\nHost: a\n\nGET /3 HTTP/1.1\nHost: a\n\n`.length);
    parser.nextCycle();
    const second = parser.next();
    expect(second.kind === 'head' && second.head.target).toBe('/2');
    expect(parser.next()).toEqual(end());
    expect(parser.next()).toEqual({ kind: 'paused' });
    parser.nextCycle();
    const third = parser.next();
    expect(third.kind === 'head' && third.head.target).toBe('/3');
    expect(parser.next()).toEqual(end());
    expect(parser.next()).toEqual({ kind: 'paused' });
    parser.nextCycle();
    expect(parser.next()).toEqual({ kind: 'need-data' });
    expect(parser.idle).toBe(true);
  });

  it('nextCycle before the request is complete throws', () => {
    const parser = new RequestParser();
    parser.feed(req`POST / HTTP/1.1\nHost: a\nContent-Length: 5\n\nab`);
    expect(parser.next().kind).toBe('head');
    expect(() => parser.nextCycle()).toThrow(/before the request was complete/);
  });

  it('a pipelined request arriving while paused is read after nextCycle', () => {
    const parser = new RequestParser();
    parser.feed(req`GET /1 HTTP/1.1\nHost: a\n\n`);
    expect(parser.next().kind).toBe('head');
    expect(parser.next().kind).toBe('end');
    expect(parser.next().kind).toBe('paused');
    parser.feed(req`GET /2 HTTP/1.1\n`);
    expect(parser.next().kind).toBe('paused');
    parser.nextCycle();
    expect(parser.next().kind).toBe('need-data');
    parser.feed(req`Host: a\n\n`);
    const second = parser.next();
    expect(second.kind === 'head' && second.head.target).toBe('/2');
  });

  it('UPG-4: takeBuffered hands over the bytes after an upgrade request', () => {
    const parser = new RequestParser();
    parser.feed(req`GET /ws HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: websocket\n\n${'\x81\x05hello'}`);
    const first = parser.next();
    expect(first.kind === 'head' && first.head.upgrade).toBe(true);
    expect(parser.next().kind).toBe('end');
    expect(parser.takeBuffered()).toEqual(raw('\x81\x05hello'));
    expect(parser.buffered).toBe(0);
  });
});

describe('RequestParser state reporting', () => {
  it('idle before any byte, not idle once a partial head arrived, inBody while reading a body', () => {
    const parser = new RequestParser();
    expect(parser.idle).toBe(true);
    parser.feed(raw('GET / HT'));
    expect(parser.next().kind).toBe('need-data');
    expect(parser.idle).toBe(false);
    expect(parser.inBody).toBe(false);
    parser.feed(req`TP/1.1\nHost: a\nContent-Length: 4\n\nab`);
    expect(parser.next().kind).toBe('head');
    expect(parser.inBody).toBe(true);
    expect(parser.next().kind).toBe('data');
    expect(parser.next().kind).toBe('need-data');
    parser.feed(raw('cd'));
    expect(parser.next().kind).toBe('data');
    expect(parser.next().kind).toBe('end');
    expect(parser.inBody).toBe(false);
  });

  it('a Content-Length body is handed out as it arrives, not held until complete', () => {
    const parser = new RequestParser();
    parser.feed(req`POST / HTTP/1.1\nHost: a\nContent-Length: 6\n\nab`);
    expect(parser.next().kind).toBe('head');
    expect(parser.next()).toEqual({ kind: 'data', data: raw('ab') });
    expect(parser.next()).toEqual({ kind: 'need-data' });
    parser.feed(raw('cdefGET'));
    expect(parser.next()).toEqual({ kind: 'data', data: raw('cdef') });
    expect(parser.next().kind).toBe('end');
    expect(parser.buffered).toBe(3);
  });
});

describe('limits that are not exceeded', () => {
  it('SRV-22: a request line of exactly maxRequestLineSize bytes is accepted, however it arrives', () => {
    const limit = 64;
    const prefix = 'GET /';
    const suffix = ' HTTP/1.1';
    const line = prefix + 'a'.repeat(limit - prefix.length - suffix.length) + suffix;
    expect(line.length).toBe(limit);
    const bytes = crlf(`${line}\nHost: a\n\n`);
    const events = [head({ target: line.slice(4, -9) }), end(), PAUSE];
    for (const split of ['whole', 'bytes', ...Array.from({ length: bytes.length + 1 }, (_, i) => i)] as Split[]) {
      const result = parseAll(bytes, { split, limits: { maxRequestLineSize: limit } });
      expect(result.error?.message, `split ${JSON.stringify(split)}`).toBeUndefined();
      expect(result.events).toEqual(events);
    }
  });

  it('SRV-22: a header block of exactly maxHeaderSize bytes is accepted, however it arrives', () => {
    // The header block is the field lines with their CRLFs: "Host: a\r\n" (9) + "X: ...\r\n".
    const limit = 40;
    const filler = 'v'.repeat(limit - 9 - 'X: \r\n'.length);
    const bytes = crlf(`GET / HTTP/1.1\nHost: a\nX: ${filler}\n\n`);
    const events = [head({ headers: [['Host', 'a'], ['X', filler]] }), end(), PAUSE];
    for (const split of ['whole', 'bytes', ...Array.from({ length: bytes.length + 1 }, (_, i) => i)] as Split[]) {
      const result = parseAll(bytes, { split, limits: { maxHeaderSize: limit } });
      expect(result.error?.message, `split ${JSON.stringify(split)}`).toBeUndefined();
      expect(result.events).toEqual(events);
    }
  });

  it('SRV-22: a trailer section of exactly maxHeaderSize bytes is accepted, however it arrives', () => {
    // The head's block is "Host: a\r\n" + "Transfer-Encoding: chunked\r\n" = 37 bytes, under 40;
    // the trailer section is one line "X: <35 bytes>\r\n" = 40 bytes.
    const limit = 40;
    const filler = 't'.repeat(limit - 'X: \r\n'.length);
    const bytes = crlf(`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n0\nX: ${filler}\n\n`);
    const events = [
      head({ method: 'POST', headers: [['Host', 'a'], ['Transfer-Encoding', 'chunked']], chunked: true }),
      end([['X', filler]]),
      PAUSE,
    ];
    for (const split of ['whole', 'bytes', ...Array.from({ length: bytes.length + 1 }, (_, i) => i)] as Split[]) {
      const result = parseAll(bytes, { split, limits: { maxHeaderSize: limit } });
      expect(result.error?.message, `split ${JSON.stringify(split)}`).toBeUndefined();
      expect(result.events).toEqual(events);
    }
  });

  it('SRV-18: a chunk-size line of exactly 4 KiB (the parser limit) is accepted, however it arrives', () => {
    const line = '1;' + 'e'.repeat(4 * 1024 - 2);
    const bytes = Buffer.concat([crlf('POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n'), raw(`${line}\r\nz\r\n0\r\n\r\n`)]);
    const lineStart = bytes.length - `${line}\r\nz\r\n0\r\n\r\n`.length;
    const events = [
      head({ method: 'POST', headers: [['Host', 'a'], ['Transfer-Encoding', 'chunked']], chunked: true }),
      data('z'),
      end(),
      PAUSE,
    ];
    // Split everywhere around the end of the long line, plus whole and byte by byte.
    const splits: Split[] = ['whole', 'bytes'];
    for (let at = lineStart + line.length - 2; at <= lineStart + line.length + 3; at++) splits.push(at);
    for (const split of splits) {
      const result = parseAll(bytes, { split });
      expect(result.error?.message, `split ${JSON.stringify(split)}`).toBeUndefined();
      expect(result.events).toEqual(events);
    }
  });

  it('SRV-22: exactly maxHeaderCount fields are accepted', () => {
    const fields = Array.from({ length: 99 }, (_, i) => `X-${i}: ${i}\n`).join('');
    const result = parseAll(crlf(`GET / HTTP/1.1\nHost: a\n${fields}\n`));
    expect(result.error).toBeUndefined();
    const first = result.events[0];
    expect(first?.kind === 'head' && first.head.headers.length).toBe(100);
  });

  it('SRV-23: a Content-Length equal to maxBodySize is accepted', () => {
    const result = parseAll(req`POST / HTTP/1.1\nHost: a\nContent-Length: 4\n\nabcd`, { limits: { maxBodySize: 4 } });
    expect(result.error).toBeUndefined();
    expect(result.events.slice(1)).toEqual([data('abcd'), end(), PAUSE]);
  });

  it('SRV-23: a chunked body of exactly maxBodySize bytes is accepted', () => {
    const result = parseAll(req`POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n2\nab\n2\ncd\n0\n\n`, {
      split: 'bytes',
      limits: { maxBodySize: 4 },
    });
    expect(result.error).toBeUndefined();
    expect(result.events.slice(1)).toEqual([data('abcd'), end(), PAUSE]);
  });
});

// ---- seeded random property test ----------------------------------------------------------

/** mulberry32 is a tiny seeded PRNG, so a failing case can be replayed from its seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Rng, items: readonly T[]): T => items[int(rng, 0, items.length - 1)]!;
const chars = (rng: Rng, alphabet: string, lo: number, hi: number): string => {
  let s = '';
  for (let n = int(rng, lo, hi); n > 0; n--) s += alphabet[int(rng, 0, alphabet.length - 1)];
  return s;
};

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%?";
const VALUE_CHARS = 'abcdefghijklmnopqrstuvwxyz ABC0123456789\t!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~\x80\xa0\xe9\xff';
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'X-CUSTOM', "M!#'*~"];

interface Generated {
  bytes: Buffer;
  events: CollectedEvent[];
}

/** randomRequest builds a valid request and the events it must give. */
function randomRequest(rng: Rng): Generated {
  const method = pick(rng, METHODS);
  const target = '/' + chars(rng, PATH_CHARS, 0, 40);
  const http10 = rng() < 0.15;
  const headers: Array<[string, string]> = [];
  if (!http10 || rng() < 0.5) headers.push(['Host', pick(rng, ['a', 'example.com', 'x.y:8080', '[::1]:80', ''])]);
  for (let n = int(rng, 0, 20); n > 0; n--) {
    const value = chars(rng, VALUE_CHARS, 0, 30).replace(/^[ \t]+|[ \t]+$/g, '');
    headers.push([`X-${chars(rng, TCHAR, 1, 12)}`, value]);
  }
  const bodyKind = http10 ? pick(rng, ['none', 'length']) : pick(rng, ['none', 'length', 'chunked']);
  const body = Buffer.from(Array.from({ length: int(rng, 0, 300) }, () => int(rng, 0, 255)));
  let encoded = Buffer.alloc(0);
  let trailers: Array<[string, string]> | null = null;
  if (bodyKind === 'length') headers.push(['Content-Length', String(body.length)]);
  if (bodyKind === 'chunked') {
    headers.push(['Transfer-Encoding', 'chunked']);
    const parts: Buffer[] = [];
    for (let at = 0; at < body.length; ) {
      const size = Math.min(int(rng, 1, 64), body.length - at);
      const ext = rng() < 0.3 ? `;${chars(rng, TCHAR, 1, 5)}=${rng() < 0.5 ? chars(rng, TCHAR, 1, 5) : '"q t"'}` : '';
      parts.push(raw(`${size.toString(16)}${ext}\r\n`), body.subarray(at, at + size), raw('\r\n'));
      at += size;
    }
    parts.push(raw('0\r\n'));
    if (rng() < 0.4) {
      trailers = [[`X-T${chars(rng, TCHAR, 1, 6)}`, chars(rng, 'abc xyz', 1, 10).trim()]];
      parts.push(raw(`${trailers[0]![0]}: ${trailers[0]![1]}\r\n`));
    }
    parts.push(raw('\r\n'));
    encoded = Buffer.concat(parts);
  } else if (bodyKind === 'length') {
    encoded = body;
  }
  const version = http10 ? 'HTTP/1.0' : 'HTTP/1.1';
  const headText = `${method} ${target} ${version}\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
  const bytes = Buffer.concat([raw(headText), encoded]);
  const hasBody = bodyKind !== 'none' && (bodyKind === 'chunked' || body.length > 0);
  const events: CollectedEvent[] = [
    head({
      method,
      target,
      version,
      headers,
      host: headers[0]?.[0] === 'Host' ? headers[0][1] : undefined,
      contentLength: bodyKind === 'length' ? body.length : -1,
      chunked: bodyKind === 'chunked',
      keepAlive: !http10,
    }),
    ...(hasBody && body.length > 0 ? [data(body)] : []),
    end(trailers),
    PAUSE,
  ];
  return { bytes, events };
}

function randomSplits(rng: Rng, length: number): number[] {
  return Array.from({ length: int(rng, 1, 6) }, () => int(rng, 0, length));
}

describe('seeded random requests', () => {
  it('300 random valid requests give their expected events whole and split at random points', () => {
    const rng = mulberry32(0x5eed);
    for (let i = 0; i < 300; i++) {
      const { bytes, events } = randomRequest(rng);
      const label = `request #${i}: ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`;
      const whole = parseAll(bytes);
      expect(whole.error?.message, label).toBeUndefined();
      expect(whole.events, label).toEqual(events);
      const splits = randomSplits(rng, bytes.length);
      const split = parseAll(bytes, { split: splits });
      expect(split.error?.message, `${label} split at ${splits.join(',')}`).toBeUndefined();
      expect(split.events, `${label} split at ${splits.join(',')}`).toEqual(events);
    }
  });

  it('two random requests pipelined read the same as each alone', () => {
    const rng = mulberry32(42);
    for (let i = 0; i < 50; i++) {
      const a = randomRequest(rng);
      const b = randomRequest(rng);
      if (!a.events.some((e) => e.kind === 'head' && e.head.keepAlive)) continue;
      const both = Buffer.concat([a.bytes, b.bytes]);
      const result = parseAll(both, { requests: 2, split: randomSplits(rng, both.length) });
      expect(result.error?.message).toBeUndefined();
      expect(result.events).toEqual([...a.events, ...b.events]);
    }
  });

  /** mutate flips, inserts or deletes a few bytes of a valid request. */
  function mutate(rng: Rng, bytes: Buffer): Buffer {
    const out = [...bytes];
    for (let n = int(rng, 1, 5); n > 0; n--) {
      const at = int(rng, 0, out.length);
      const op = int(rng, 0, 2);
      if (op === 0 && at < out.length) out[at] = out[at]! ^ (1 << int(rng, 0, 7));
      else if (op === 1) out.splice(at, 0, pick(rng, [0x0d, 0x0a, 0x20, 0x3a, 0x00, 0x7f, 0xff, int(rng, 0, 255)]));
      else out.splice(at, 1);
    }
    return Buffer.from(out);
  }

  it('500 random byte strings and mutated requests only give events or a ProtocolError, and always stop', () => {
    const rng = mulberry32(0xbad);
    for (let i = 0; i < 500; i++) {
      const bytes =
        i % 2 === 0
          ? Buffer.from(Array.from({ length: int(rng, 0, 200) }, () => int(rng, 0, 255)))
          : mutate(rng, randomRequest(rng).bytes);
      const label = `input #${i}: ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`;
      const results = [parseAll(bytes), parseAll(bytes, { split: 'bytes' }), parseAll(bytes, { split: randomSplits(rng, bytes.length) })];
      for (const r of results) {
        expect(['need-data', 'paused', 'error'], label).toContain(r.last);
        if (r.error !== undefined) {
          expect(r.error, label).toBeInstanceOf(ProtocolError);
          // next() wraps any other exception as NSGI_PARSER_BUG; that must never happen.
          expect(r.error.code, `${label}: ${r.error.message}`).not.toBe('NSGI_PARSER_BUG');
          expect([400, 413, 414, 431, 501, 505], label).toContain(r.error.status);
        }
      }
      const [whole, ...others] = results;
      for (const other of others) {
        expect(other.events, label).toEqual(whole!.events);
        expect(other.last, label).toBe(whole!.last);
        expect(other.error?.status, label).toBe(whole!.error?.status);
      }
    }
  });
});

describe('transient buffers', () => {
  /**
   * feedTransient feeds `bytes` cut at `at` through one reused buffer, as the server feeds reads of
   * its shared read buffer: each piece is fed as transient, its events taken, keepBuffered called,
   * and the buffer overwritten before the next piece. The data events are kept as they came.
   */
  function feedTransient(bytes: Buffer, at: number, requests: number): { events: CollectedEvent[]; rest: Buffer } {
    const parser = new RequestParser();
    const shared = Buffer.alloc(bytes.length);
    const events: CollectedEvent[] = [];
    let paused = 0;
    let rest = Buffer.alloc(0);
    for (const piece of pieces(bytes, at)) {
      piece.copy(shared);
      parser.feed(shared.subarray(0, piece.length), true);
      for (;;) {
        if (paused === requests) {
          rest = Buffer.concat([rest, parser.takeBuffered()]);
          break;
        }
        const event = parser.next();
        if (event.kind === 'need-data') break;
        if (event.kind === 'paused') {
          events.push({ kind: 'paused' });
          if (++paused < requests) parser.nextCycle();
          continue;
        }
        events.push(event.kind === 'data' ? { kind: 'data', data: event.data as Buffer } : event);
      }
      parser.keepBuffered();
      shared.fill(0xee);
    }
    return { events, rest };
  }

  const BODY = req`POST /up HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n6\n world\n0\n\n`;
  const NEXT = req`POST /two HTTP/1.1\nHost: a\nContent-Length: 7\n\nthe end`;
  const AFTER = raw('bytes after the last request');
  const bytes = Buffer.concat([BODY, NEXT, AFTER]);

  it('body data, unparsed bytes and the rest taken keep their bytes when the buffer they came in is reused, split anywhere', () => {
    const expected = parseAll(Buffer.concat([BODY, NEXT]), { requests: 2 }).events;
    for (let at = 0; at <= bytes.length; at++) {
      const { events, rest } = feedTransient(bytes, at, 2);
      const merged: CollectedEvent[] = [];
      for (const event of events) {
        const prev = merged[merged.length - 1];
        if (event.kind === 'data' && prev?.kind === 'data') prev.data = Buffer.concat([prev.data, event.data]);
        else merged.push(event.kind === 'data' ? { kind: 'data', data: event.data } : event);
      }
      expect(merged, `split at ${at}`).toEqual(expected);
      expect(rest.toString('latin1'), `split at ${at}`).toBe(AFTER.toString('latin1'));
    }
  });
});

describe('helpers', () => {
  it('req turns \\n into CRLF in the template and leaves interpolations raw', () => {
    expect(req`A\nB${'c\nd'}\n`).toEqual(raw('A\r\nBc\nd\r\n'));
    expect(pieces(raw('abcdef'), [4, 2])).toEqual([raw('ab'), raw('cd'), raw('ef')]);
  });
});
