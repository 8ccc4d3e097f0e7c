/**
 * Response framing on the real server (RFC 9112 §6): the app's Content-Length honoured and
 * enforced, chunked on HTTP/1.1 and close-delimited on HTTP/1.0 otherwise, HEAD, the statuses that
 * have no body, trailers, and the headers the server adds. Each test speaks hand-made bytes to the
 * server on an ephemeral loopback port and compares the bytes that come back.
 */

import { afterEach, describe, expect, it } from 'vitest';
import type { App, SetTrailers } from '../../protocol/nsgi.ts';
import { validate } from '../../src/index.ts';
import {
  cleanup,
  finalResponses,
  GET,
  header,
  headerCount,
  parseResponses,
  pathApp,
  RawClient,
  rawRequest,
  reqBytes,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

afterEach(cleanup);

describe('response framing', () => {
  it('SR-14, SR-15: honours the app\'s Content-Length exactly and adds no Transfer-Encoding', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', [['Content-Length', '5']]);
      return (function* () {
        yield 'hel';
        yield 'lo';
      })();
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    expect(r?.status).toBe(200);
    expect(headerCount(r!, 'content-length')).toBe(1);
    expect(header(r!, 'content-length')).toBe('5');
    expect(header(r!, 'transfer-encoding')).toBeUndefined();
    expect(r!.body.toString()).toBe('hello');
    expect(res.data.length).toBe(r!.head.length + 5);
  });

  it('SR-19, SRV-24: sends a multi-chunk generator without Content-Length as exact chunked bytes on HTTP/1.1', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return (function* () {
        yield 'abc';
        yield '';
        yield Buffer.from('0123456789abcdefg');
      })();
    });
    const res = await rawRequest(port, GET, { until: (data) => data.includes('0\r\n\r\n') });
    const [r] = parseResponses(res.data);
    expect(header(r!, 'transfer-encoding')).toBe('chunked');
    expect(header(r!, 'content-length')).toBeUndefined();
    expect(res.text.slice(r!.head.length)).toBe('3\r\nabc\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n');
  });

  it('SRV-1, SR-19, SRV-2: delimits a multi-chunk body by closing the connection on HTTP/1.0', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return (function* () {
        yield 'abc';
        yield 'de';
      })();
    });
    const res = await rawRequest(port, 'GET / HTTP/1.0\n\n');
    expect(res.closed).toBe(true);
    const [r] = parseResponses(res.data, { closed: true });
    expect(r?.status).toBe(200);
    expect(header(r!, 'transfer-encoding')).toBeUndefined();
    expect(header(r!, 'content-length')).toBeUndefined();
    expect(header(r!, 'connection')).toBe('close');
    expect(r!.body.toString()).toBe('abcde');
  });

  it('SR-19: computes Content-Length for a single-chunk array body', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return ['héllo'];
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    expect(header(r!, 'content-length')).toBe('6');
    expect(header(r!, 'transfer-encoding')).toBeUndefined();
    expect(r!.body.toString('utf8')).toBe('héllo');
  });

  it('SR-19: sends Content-Length: 0 for an empty body', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return [];
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    expect(header(r!, 'content-length')).toBe('0');
    expect(header(r!, 'transfer-encoding')).toBeUndefined();
    expect(res.data.length).toBe(r!.head.length);
  });

  it('SR-20: answers HEAD with the headers and no body bytes, and keeps the connection usable', async () => {
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`body of ${environ.REQUEST_METHOD}`];
    });
    const client = await RawClient.connect(port);
    client.write('HEAD / HTTP/1.1\nHost: t\n\n');
    await client.waitForText('\r\n\r\n');
    await sleep(100);
    const head = finalResponses(client.data, { noBody: () => true })[0]!;
    expect(head.status).toBe(200);
    expect(header(head, 'content-length')).toBe(String('body of HEAD'.length));
    expect(client.data.length).toBe(head.head.length);

    client.write(GET);
    await client.waitForResponses(2, undefined, { noBody: (i) => i === 0 });
    const [, second] = finalResponses(client.data, { noBody: (i) => i === 0 });
    expect(second?.status).toBe(200);
    expect(second!.body.toString()).toBe('body of GET');
    expect(client.closed).toBe(false);
  });

  it.each(['204 No Content', '304 Not Modified'])('SR-20: sends %s with no body and no Transfer-Encoding', async (status) => {
    const { port } = await startServer((environ, startResponse) => {
      if (environ.PATH_INFO === '/next') {
        startResponse('200 OK', []);
        return ['next'];
      }
      startResponse(status, [['ETag', '"x"']]);
      return (function* () {})();
    });
    const res = await rawRequest(port, `${GET}GET /next HTTP/1.1\nHost: t\n\n`, { until: untilResponses(2) });
    const [first, second] = finalResponses(res.data);
    expect(first?.statusLine).toBe(`HTTP/1.1 ${status}`);
    expect(header(first!, 'transfer-encoding')).toBeUndefined();
    if (status.startsWith('204')) expect(header(first!, 'content-length')).toBeUndefined();
    // The next response starts right after the head: no body bytes in between.
    expect(res.text.slice(first!.head.length, first!.head.length + 12)).toBe('HTTP/1.1 200');
    expect(second!.body.toString()).toBe('next');
  });

  it('SR-12, SRV-25: adds a well-formed, current Date header and Server: nsgi', async () => {
    const { port } = await startServer(pathApp());
    const before = Date.now();
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    const date = header(r!, 'date')!;
    expect(date).toMatch(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(Math.abs(Date.parse(date) - before)).toBeLessThan(5_000);
    expect(header(r!, 'server')).toBe('nsgi');
    expect(headerCount(r!, 'date')).toBe(1);
  });

  it('SR-17: cuts the connection after at most the declared bytes when the body is longer than Content-Length, and logs it', async () => {
    const logs: string[] = [];
    const { port } = await startServer(
      (_env, startResponse) => {
        startResponse('200 OK', [['Content-Length', '5']]);
        return (function* () {
          yield 'hello';
          yield 'world!';
        })();
      },
      { errors: { write: (m) => void logs.push(m) } },
    );
    const res = await rawRequest(port, GET, { timeout: 3000 });
    expect(res.closed).toBe(true);
    const [r] = parseResponses(res.data);
    expect(r?.status).toBe(200);
    expect(res.data.length - r!.head.length).toBeLessThanOrEqual(5);
    expect(res.text).not.toContain('world');
    await waitUntil(() => logs.some((m) => /Content-Length/.test(m)), 'a Content-Length error in the log');
  });

  it('SR-18: cuts the connection when the body is shorter than Content-Length, and logs it', async () => {
    const logs: string[] = [];
    const { port } = await startServer(
      (_env, startResponse) => {
        startResponse('200 OK', [['Content-Length', '10']]);
        return (function* () {
          yield 'hel';
          yield 'lo';
        })();
      },
      { errors: { write: (m) => void logs.push(m) } },
    );
    const res = await rawRequest(port, GET, { timeout: 3000 });
    expect(res.closed).toBe(true);
    const [r] = parseResponses(res.data);
    expect(r?.status).toBe(200);
    expect(r!.complete).toBe(false);
    expect(r!.body.toString()).toBe('hello');
    await waitUntil(() => logs.some((m) => /Content-Length/.test(m)), 'a Content-Length error in the log');
  });

  it('SR-20, SR-21: a 205 sends no content, says Content-Length: 0, and keeps the connection', async () => {
    const { port, errors } = await startServer((_environ, startResponse) => {
      startResponse('205 Reset Content', [['Content-Length', '5']]);
      return ['hello'];
    });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\nGET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(2);
    const responses = parseResponses(client.data);
    for (const r of responses) {
      expect(r.status).toBe(205);
      expect(header(r, 'content-length')).toBe('0');
      expect(r.body.length).toBe(0);
    }
    expect(client.text).not.toContain('hello');
    expect(errors.some((line) => line.includes('205 response discarded'))).toBe(true);
  });

  it('SR-21: a chunk for a 204 is reported when it is the whole body', async () => {
    const { port, errors } = await startServer((_environ, startResponse) => {
      startResponse('204 No Content', []);
      return ['ignored'];
    });
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(result.text).not.toContain('ignored');
    await waitUntil(() => errors.some((line) => line.includes('204 response discarded')), 'the report on nsgi.errors');
  });
  it('SR-13: sends the app\'s own Server field, once, instead of its own', async () => {
    const { port } = await startServer((_environ, startResponse) => {
      startResponse('200 OK', [['Server', 'edge/2'], ['Content-Length', '0']]);
      return [];
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    expect(headerCount(r!, 'server')).toBe(1);
    expect(header(r!, 'server')).toBe('edge/2');
  });

  it('BODY-5: sends a string chunk as UTF-8, a lone surrogate becoming U+FFFD', async () => {
    const { port } = await startServer((_environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
      return (function* () {
        yield 'caf\u00e9 ';
        yield '\ud83d\ude00 ';
        yield 'lone \ud800!';
      })();
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    expect(r!.body).toEqual(Buffer.concat([Buffer.from('caf\xc3\xa9 ', 'latin1'), Buffer.from([0xf0, 0x9f, 0x98, 0x80, 0x20]), Buffer.from('lone \xef\xbf\xbd!', 'latin1')]));
  });

  it('BODY-15: pulls a sync generator without an await between chunks while the socket takes data', async () => {
    // A microtask queued before each yield runs only if the server awaits before the next pull.
    const ranBeforeNextPull: boolean[] = [];
    const { port } = await startServer((_environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return (function* () {
        for (let i = 0; i < 20; i++) {
          let ran = false;
          queueMicrotask(() => {
            ran = true;
          });
          yield 'x';
          ranBeforeNextPull.push(ran);
        }
      })();
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    expect(finalResponses(res.data)[0]!.body.toString()).toBe('x'.repeat(20));
    // The first pull may follow the head's own work; from then on the pulls are back to back.
    expect(ranBeforeNextPull.slice(1)).toEqual(Array(19).fill(false));
  });
});

describe('trailers (nsgi.set_trailers)', () => {
  it('EXT-10, EXT-13: trailers promised after a single chunk are sent after the last chunk, announced by the app\'s Trailer field', async () => {
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Trailer', 'X-Sum']]);
      const setTrailers = environ['nsgi.set_trailers']!;
      return (function* () {
        yield 'hello';
        expect(setTrailers([['X-Sum', '42']])).toBe(true);
      })();
    });
    const client = await RawClient.connect(port);
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\nConnection: close\n\n'));
    await client.waitForClose();
    expect(client.text).toContain('\r\nTrailer: X-Sum\r\n');
    expect(client.text).toContain('Transfer-Encoding: chunked');
    expect(client.text.endsWith('5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n')).toBe(true);
  });

  it('EXT-10: trailers are sent after an empty body, which is then chunked', async () => {
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Trailer', 'X-Sum']]);
      expect(environ['nsgi.set_trailers']!([['X-Sum', '0']])).toBe(true);
      return [];
    });
    const client = await RawClient.connect(port);
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\nConnection: close\n\n'));
    await client.waitForClose();
    const [response] = parseResponses(client.data);
    expect(header(response!, 'content-length')).toBeUndefined();
    expect(client.text.endsWith('\r\n\r\n0\r\nX-Sum: 0\r\n\r\n')).toBe(true);
  });

  it('SR-7, EXT-10: a replacement startResponse refused for a bad header leaves the promised trailers as they were', async () => {
    let refused: unknown;
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Trailer', 'X-Sum']]);
      expect(environ['nsgi.set_trailers']!([['X-Sum', '42']])).toBe(true);
      try {
        startResponse('500 Internal Server Error', [['Bad Name', 'x']], new Error('replaced'));
      } catch (err) {
        refused = err;
      }
      return ['hello'];
    });
    const client = await RawClient.connect(port);
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\nConnection: close\n\n'));
    await client.waitForClose();
    expect(refused).toBeInstanceOf(TypeError);
    expect(client.text.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(client.text.endsWith('5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n')).toBe(true);
  });

  it('EXT-9: trailers cannot be set once the exchange is finished', async () => {
    let kept: SetTrailers | undefined;
    const { url } = await startServer((environ) => {
      kept = environ['nsgi.set_trailers'];
      throw new Error('fails on purpose');
    });
    expect((await fetch(url)).status).toBe(500);
    await sleep(50);
    expect(kept!([['X-Late', '1']])).toBe(false);
  });

  it('EXT-9: nsgi.set_trailers before startResponse returns false and sends nothing', async () => {
    let answer: boolean | undefined;
    const { port } = await startServer((environ, startResponse) => {
      answer = (environ['nsgi.set_trailers'] as SetTrailers)([['X-T', '1']]);
      startResponse('200 OK', []);
      return (async function* () {
        yield 'a';
      })();
    });
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(answer).toBe(false);
    expect(result.text).not.toContain('X-T');
  });
  it('EXT-3: validate(), which leaves the framing alone, passes nsgi.set_trailers down and the trailers arrive', async () => {
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Trailer', 'X-Sum']]);
      const setTrailers = environ['nsgi.set_trailers'];
      return (function* () {
        yield 'hello';
        if (typeof setTrailers === 'function') setTrailers([['X-Sum', '5']]);
      })();
    };
    const { port } = await startServer(validate(app));
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\nConnection: close\n\n');
    expect(res.text.endsWith('5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n')).toBe(true);
  });

  it('EXT-11: a Content-Length trailer is refused with a TypeError, and the framing already sent stands', async () => {
    const refusals: string[] = [];
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      const setTrailers = environ['nsgi.set_trailers']!;
      return (function* () {
        yield 'hello, ';
        try {
          setTrailers([['Content-Length', '2']]);
        } catch (err) {
          refusals.push(`${(err as Error).name}: ${(err as Error).message}`);
        }
        yield 'world';
      })();
    });
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\nGET /next HTTP/1.1\nHost: a\n\n', { until: untilResponses(2) });
    const [first, second] = finalResponses(res.data);
    expect(header(first!, 'transfer-encoding')).toBe('chunked');
    expect(header(first!, 'content-length')).toBeUndefined();
    expect(first!.body.toString()).toBe('hello, world');
    expect(second!.body.toString()).toBe('hello, world');
    expect(refusals).toHaveLength(2);
    expect(refusals[0]).toMatch(/^TypeError: trailer field "Content-Length" is not allowed/);
    expect(res.text).not.toContain('Content-Length: 2');
  });

  it('EXT-14: a caching field an app should not send as a trailer is not refused, and changes nothing of the head', async () => {
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain'], ['Cache-Control', 'max-age=60']]);
      const setTrailers = environ['nsgi.set_trailers']!;
      return (function* () {
        yield 'body';
        expect(setTrailers([['Cache-Control', 'no-store']])).toBe(true);
      })();
    });
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\nConnection: close\n\n');
    const [response] = finalResponses(res.data);
    expect(header(response!, 'cache-control')).toBe('max-age=60');
    expect(res.text).toContain('\r\n0\r\nCache-Control: no-store\r\n\r\n');
  });
});
