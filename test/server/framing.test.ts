/**
 * The server's HTTP/1.1 behaviour over the wire: response framing, keep-alive, pipelining, request
 * limits, HEAD, `Expect: 100-continue`, and the headers the server adds. Each test runs the real
 * server on an ephemeral loopback port and speaks hand-made bytes to it (or curl, where curl's own
 * behaviour is the point), then compares the bytes that come back.
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import {
  RawClient,
  cleanup,
  curl,
  finalResponses,
  hashApp,
  header,
  headerCount,
  parseResponses,
  rawRequest,
  reqBytes,
  sha256,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

afterEach(cleanup);

const GET = 'GET / HTTP/1.1\nHost: t\n\n';

/** pathApp answers every request with its path as a plain-text body, and records the paths. */
function pathApp(seen: string[] = []): App {
  return (environ, startResponse) => {
    seen.push(environ.PATH_INFO);
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return [environ.PATH_INFO];
  };
}


describe('response framing', () => {
  it('honours the app\'s Content-Length exactly and adds no Transfer-Encoding', async () => {
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

  it('sends a multi-chunk generator without Content-Length as exact chunked bytes on HTTP/1.1', async () => {
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

  it('delimits a multi-chunk body by closing the connection on HTTP/1.0', async () => {
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

  it('computes Content-Length for a single-chunk array body', async () => {
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

  it('sends Content-Length: 0 for an empty body', async () => {
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

  it('answers HEAD with the headers and no body bytes, and keeps the connection usable', async () => {
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

  it.each(['204 No Content', '304 Not Modified'])('sends %s with no body and no Transfer-Encoding', async (status) => {
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

  it('adds a well-formed, current Date header and Server: nsgi', async () => {
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

  it('cuts the connection after at most the declared bytes when the body is longer than Content-Length, and logs it', async () => {
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

  it('cuts the connection when the body is shorter than Content-Length, and logs it', async () => {
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
});

describe('keep-alive', () => {
  it('answers two requests one after the other on one socket', async () => {
    const ports: string[] = [];
    const { port } = await startServer((environ, startResponse) => {
      ports.push(environ.REMOTE_PORT);
      startResponse('200 OK', []);
      return [environ.PATH_INFO];
    });
    const client = await RawClient.connect(port);
    client.write('GET /one HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(1);
    client.write('GET /two HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(2);
    const bodies = finalResponses(client.data).map((r) => r.body.toString());
    expect(bodies).toEqual(['/one', '/two']);
    expect(ports).toHaveLength(2);
    expect(ports[0]).toBe(ports[1]);
    expect(client.closed).toBe(false);
  });

  it('closes after answering an HTTP/1.1 request with Connection: close', async () => {
    const { port } = await startServer(pathApp());
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: t\nConnection: close\n\n');
    expect(res.closed).toBe(true);
    const [r] = finalResponses(res.data);
    expect(r?.status).toBe(200);
    expect(header(r!, 'connection')).toBe('close');
  });

  it('closes after an HTTP/1.0 request without keep-alive', async () => {
    const { port } = await startServer(pathApp());
    const res = await rawRequest(port, 'GET / HTTP/1.0\n\n');
    expect(res.closed).toBe(true);
    const [r] = finalResponses(res.data, { closed: true });
    expect(r?.status).toBe(200);
    expect(r!.body.toString()).toBe('/');
    expect(header(r!, 'connection')).not.toBe('keep-alive');
  });

  it('keeps an HTTP/1.0 connection with Connection: keep-alive open and says so', async () => {
    const { port } = await startServer(pathApp());
    const client = await RawClient.connect(port);
    client.write('GET /a HTTP/1.0\nConnection: keep-alive\n\n');
    await client.waitForResponses(1);
    const [first] = finalResponses(client.data);
    expect(header(first!, 'connection')).toBe('keep-alive');
    expect(header(first!, 'content-length')).toBe('2');
    client.write('GET /b HTTP/1.0\nConnection: keep-alive\n\n');
    await client.waitForResponses(2);
    expect(finalResponses(client.data).map((r) => r.body.toString())).toEqual(['/a', '/b']);
    expect(client.closed).toBe(false);
  });

  it('closes after the response when the app sends Connection: close', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', [['Connection', 'close']]);
      return ['bye'];
    });
    const client = await RawClient.connect(port);
    client.write(GET);
    await client.waitForClose();
    const [r] = finalResponses(client.data);
    expect(r?.body.toString()).toBe('bye');
    expect(header(r!, 'connection')).toBe('close');
  });
});

describe('pipelining', () => {
  it('answers three requests sent in one write in order', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const res = await rawRequest(port, 'GET /1 HTTP/1.1\nHost: t\n\nGET /2 HTTP/1.1\nHost: t\n\nGET /3 HTTP/1.1\nHost: t\n\n', {
      until: untilResponses(3),
    });
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual(['/1', '/2', '/3']);
    expect(seen).toEqual(['/1', '/2', '/3']);
  });

  it('keeps the order when the first response is slow and the later ones fast', async () => {
    const { port } = await startServer(async (environ, startResponse) => {
      if (environ.PATH_INFO === '/slow') await sleep(300);
      startResponse('200 OK', []);
      return (async function* () {
        yield environ.PATH_INFO;
        yield '!';
      })();
    });
    const res = await rawRequest(
      port,
      'GET /slow HTTP/1.1\nHost: t\n\nGET /fast1 HTTP/1.1\nHost: t\n\nGET /fast2 HTTP/1.1\nHost: t\n\n',
      { until: untilResponses(3) },
    );
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual(['/slow!', '/fast1!', '/fast2!']);
  });

  it('does not take a POST body that looks like a request for the next request', async () => {
    const seen: string[] = [];
    const { port } = await startServer(async (environ, startResponse) => {
      seen.push(`${environ.REQUEST_METHOD} ${environ.PATH_INFO}`);
      const body = await environ['nsgi.input'].text();
      startResponse('200 OK', []);
      return [`${environ.PATH_INFO}:${body.length}`];
    });
    const inner = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n';
    const bytes = Buffer.concat([
      reqBytes(`POST /post HTTP/1.1\nHost: t\nContent-Length: ${inner.length}\n\n`),
      Buffer.from(inner, 'latin1'),
      reqBytes('GET /next HTTP/1.1\nHost: t\n\n'),
    ]);
    const res = await rawRequest(port, bytes, { until: untilResponses(2) });
    await sleep(100);
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual([`/post:${inner.length}`, '/next:0']);
    expect(seen).toEqual(['POST /post', 'GET /next']);
  });

  it('drains an unread POST body so that the pipelined request after it is answered', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const inner = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n';
    const bytes = Buffer.concat([
      reqBytes(`POST /post HTTP/1.1\nHost: t\nContent-Length: ${inner.length}\n\n`),
      Buffer.from(inner, 'latin1'),
      reqBytes('GET /next HTTP/1.1\nHost: t\n\n'),
    ]);
    const res = await rawRequest(port, bytes, { until: untilResponses(2) });
    await sleep(100);
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual(['/post', '/next']);
    expect(seen).toEqual(['/post', '/next']);
  });
});

describe('request limits and malformed requests', () => {
  /** rejected sends `bytes`, expects exactly one response and a close, and returns it. */
  async function rejected(port: number, bytes: string | Buffer): Promise<ReturnType<typeof finalResponses>[number]> {
    const res = await rawRequest(port, bytes);
    expect(res.closed).toBe(true);
    const responses = finalResponses(res.data);
    expect(responses).toHaveLength(1);
    expect(header(responses[0]!, 'connection')).toBe('close');
    return responses[0]!;
  }

  it('answers a request line over 8 KiB with 414', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const r = await rejected(port, `GET /${'a'.repeat(9000)} HTTP/1.1\nHost: t\n\n`);
    expect(r.status).toBe(414);
    expect(seen).toEqual([]);
  });

  it('accepts a request line just under the limit', async () => {
    const { port } = await startServer(pathApp());
    const res = await rawRequest(port, `GET /${'a'.repeat(8000)} HTTP/1.1\nHost: t\n\n`, { until: untilResponses(1) });
    expect(finalResponses(res.data)[0]?.status).toBe(200);
  });

  it('answers 101 header fields with 431 but accepts 100', async () => {
    const { port } = await startServer(pathApp());
    const fields = (n: number): string => Array.from({ length: n - 1 }, (_, i) => `X-H${i}: v\n`).join('');
    const ok = await rawRequest(port, `GET / HTTP/1.1\nHost: t\n${fields(100)}\n`, { until: untilResponses(1) });
    expect(finalResponses(ok.data)[0]?.status).toBe(200);
    const r = await rejected(port, `GET / HTTP/1.1\nHost: t\n${fields(101)}\n`);
    expect(r.status).toBe(431);
  });

  it('answers a header block over 16 KiB with 431', async () => {
    const { port } = await startServer(pathApp());
    const r = await rejected(port, `GET / HTTP/1.1\nHost: t\nX-A: ${'a'.repeat(9000)}\nX-B: ${'b'.repeat(9000)}\n\n`);
    expect(r.status).toBe(431);
  });

  it('answers a Content-Length above maxBodySize with 413 without calling the app', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen), { maxBodySize: 1000 });
    const ok = await rawRequest(port, [`POST /ok HTTP/1.1\nHost: t\nContent-Length: 1000\n\n`, 'x'.repeat(1000)], {
      until: untilResponses(1),
    });
    expect(finalResponses(ok.data)[0]?.status).toBe(200);
    const r = await rejected(port, `POST /big HTTP/1.1\nHost: t\nContent-Length: 1001\n\n${'x'.repeat(1001)}`);
    expect(r.status).toBe(413);
    expect(seen).toEqual(['/ok']);
  });

  it('answers a malformed request with 400, closes, and ignores what follows', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const r = await rejected(port, `GET / HTTP/1.1\nHost: t\nNo colon here\n\nGET /after HTTP/1.1\nHost: t\n\n`);
    expect(r.status).toBe(400);
    expect(seen).toEqual([]);
  });

  it('answers Transfer-Encoding: gzip, chunked with 501', async () => {
    const { port } = await startServer(pathApp());
    const r = await rejected(port, 'POST / HTTP/1.1\nHost: t\nTransfer-Encoding: gzip, chunked\n\n0\n\n');
    expect(r.status).toBe(501);
  });

  it('answers HTTP/2.0 with 505', async () => {
    const { port } = await startServer(pathApp());
    const r = await rejected(port, 'GET / HTTP/2.0\nHost: t\n\n');
    expect(r.status).toBe(505);
  });

  it('answers Content-Length with Transfer-Encoding with 400 and never answers the smuggled request', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const r = await rejected(
      port,
      'POST / HTTP/1.1\nHost: t\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\n\nGET /smuggled HTTP/1.1\nHost: t\n\n',
    );
    expect(r.status).toBe(400);
    expect(seen).toEqual([]);
  });
});

describe('Expect: 100-continue', () => {
  it('sends 100 Continue only when the app first reads nsgi.input', async () => {
    let called = false;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const { port } = await startServer(async (environ, startResponse) => {
      called = true;
      await gate;
      const body = await environ['nsgi.input'].text();
      startResponse('200 OK', []);
      return [`got ${body}`];
    });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: t\nContent-Length: 5\nExpect: 100-continue\n\n');
    await waitUntil(() => called, 'the app to be called');
    await sleep(150);
    expect(client.data.length).toBe(0);
    openGate();
    await client.waitForText('\r\n\r\n');
    expect(client.text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    client.write('hello');
    await client.waitForResponses(1);
    const responses = parseResponses(client.data);
    expect(responses.map((r) => r.status)).toEqual([100, 200]);
    expect(responses[1]!.body.toString()).toBe('got hello');
  });

  it('sends no 100 Continue to an app that answers without reading, and never parses the body as a request', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const inner = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n';
    const client = await RawClient.connect(port);
    client.write(`POST /upload HTTP/1.1\nHost: t\nContent-Length: ${inner.length}\nExpect: 100-continue\n\n`);
    await client.waitForResponses(1);
    client.write(inner);
    await client.settle(() => false, 500);
    expect(client.text).not.toContain('100 Continue');
    const responses = finalResponses(client.data, { closed: client.closed });
    expect(responses.map((r) => r.body.toString())).toEqual(['/upload']);
    expect(seen).toEqual(['/upload']);
  });

  it.each([
    ['Expect: 100-continue and a body not sent yet', 'Content-Length: 100\nExpect: 100-continue\n\n'],
    ['a 1 MiB body of which 1 KiB was sent', `Content-Length: ${1024 * 1024}\n\n${'x'.repeat(1024)}`],
  ])('announces Connection: close when it answers an unread request with %s and then closes', async (_what, rest) => {
    // RFC 9110 §10.1.1: a server that answers before reading the whole request content SHOULD
    // say whether it will close or read and discard the rest.
    const { port } = await startServer(pathApp());
    const client = await RawClient.connect(port);
    client.write(`POST /upload HTTP/1.1\nHost: t\n${rest}`);
    await client.waitForResponses(1);
    await client.settle(() => false, 500);
    const [r] = finalResponses(client.data);
    expect(r?.status).toBe(200);
    if (client.closed) expect(header(r!, 'connection')).toBe('close');
    else expect(header(r!, 'connection')).toBeUndefined();
  });

  it('works with curl -H "Expect: 100-continue" --data-binary @file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nsgi-expect-'));
    try {
      const data = randomBytes(300 * 1024);
      const file = path.join(dir, 'upload.bin');
      await writeFile(file, data);
      const { url } = await startServer(hashApp);
      const result = await curl(['-v', '--expect100-timeout', '10', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `${url}/`]);
      expect(result.code).toBe(0);
      expect(result.stderr).toMatch(/< HTTP\/1\.1 100 Continue/);
      expect(result.stdout.toString()).toBe(`${data.length} ${sha256(data)}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
