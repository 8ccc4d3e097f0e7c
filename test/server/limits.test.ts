/**
 * The server's request limits and its refusals of malformed requests, over raw TCP on an ephemeral
 * loopback port: request line (414), header count and size (431), body size (413), unknown
 * transfer codings (501), other HTTP versions (505), bad request-targets (400), the connection
 * cap (503), and a refusal that still reaches a client busy sending its body.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import net from 'node:net';
import {
  cleanup,
  environEcho,
  finalResponses,
  header,
  parseResponses,
  pathApp,
  RawClient,
  rawRequest,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

afterEach(cleanup);

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

  it('SRV-22: answers a request line over 8 KiB with 414', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const r = await rejected(port, `GET /${'a'.repeat(9000)} HTTP/1.1\nHost: t\n\n`);
    expect(r.status).toBe(414);
    expect(seen).toEqual([]);
  });

  it('SRV-22: accepts a request line just under the limit', async () => {
    const { port } = await startServer(pathApp());
    const res = await rawRequest(port, `GET /${'a'.repeat(8000)} HTTP/1.1\nHost: t\n\n`, { until: untilResponses(1) });
    expect(finalResponses(res.data)[0]?.status).toBe(200);
  });

  it('SRV-22: answers 101 header fields with 431 but accepts 100', async () => {
    const { port } = await startServer(pathApp());
    const fields = (n: number): string => Array.from({ length: n - 1 }, (_, i) => `X-H${i}: v\n`).join('');
    const ok = await rawRequest(port, `GET / HTTP/1.1\nHost: t\n${fields(100)}\n`, { until: untilResponses(1) });
    expect(finalResponses(ok.data)[0]?.status).toBe(200);
    const r = await rejected(port, `GET / HTTP/1.1\nHost: t\n${fields(101)}\n`);
    expect(r.status).toBe(431);
  });

  it('SRV-22: answers a header block over 16 KiB with 431', async () => {
    const { port } = await startServer(pathApp());
    const r = await rejected(port, `GET / HTTP/1.1\nHost: t\nX-A: ${'a'.repeat(9000)}\nX-B: ${'b'.repeat(9000)}\n\n`);
    expect(r.status).toBe(431);
  });

  it('APP-2, IN-10, SRV-23: answers a Content-Length above maxBodySize with 413 without calling the app', async () => {
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

  it('IN-10, SRV-23: fails the app\'s read of a chunked body that grows past maxBodySize with a 413 error, answers 413 and closes', async () => {
    const readErrors: unknown[] = [];
    let reading = false;
    const { port } = await startServer(async (environ, startResponse) => {
      const reader = environ['nsgi.input'][Symbol.asyncIterator]();
      reading = true;
      try {
        while (!(await reader.next()).done);
      } catch (err) {
        readErrors.push(err);
        // A later read fails the same way; it does not end the body as if it were whole.
        readErrors.push(await reader.next().then(() => 'resolved', (again: unknown) => again));
        throw err;
      }
      startResponse('200 OK', []);
      return ['read it all'];
    }, { maxBodySize: 10 });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\n\n6\r\nhello \r\n');
    await waitUntil(() => reading, 'the app to start reading, with 6 of at most 10 bytes sent');
    client.write('6\r\nworld!\r\n0\r\n\r\n');
    await client.waitForClose();
    const [r] = finalResponses(client.data, { closed: true });
    expect(r!.status).toBe(413);
    expect(header(r!, 'connection')).toBe('close');
    expect(readErrors).toHaveLength(2);
    for (const err of readErrors) {
      expect(err).toBeInstanceOf(Error);
      expect((err as { status?: number }).status).toBe(413);
    }
  });

  it('SRV-12: answers CONNECT with 501 without calling the app', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const r = await rejected(port, 'CONNECT example.com:443 HTTP/1.1\nHost: example.com:443\n\n');
    expect(r.status).toBe(501);
    expect(seen).toEqual([]);
  });

  it('SRV-11, SRV-21: answers a malformed request with 400, closes, and ignores what follows', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const r = await rejected(port, `GET / HTTP/1.1\nHost: t\nNo colon here\n\nGET /after HTTP/1.1\nHost: t\n\n`);
    expect(r.status).toBe(400);
    expect(seen).toEqual([]);
  });

  it('SRV-17: answers Transfer-Encoding: gzip, chunked with 501', async () => {
    const { port } = await startServer(pathApp());
    const r = await rejected(port, 'POST / HTTP/1.1\nHost: t\nTransfer-Encoding: gzip, chunked\n\n0\n\n');
    expect(r.status).toBe(501);
  });

  it('SRV-19: answers HTTP/2.0 with 505', async () => {
    const { port } = await startServer(pathApp());
    const r = await rejected(port, 'GET / HTTP/2.0\nHost: t\n\n');
    expect(r.status).toBe(505);
  });

  it('SRV-14: answers Content-Length with Transfer-Encoding with 400 and never answers the smuggled request', async () => {
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

describe('maxConnections', () => {
  it('with maxConnections 5 the 6th connection gets 503 and close while the first 5 still work', async () => {
    const { port } = await startServer(pathApp(), { maxConnections: 5, keepAliveTimeout: 10_000 });
    const five: RawClient[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.connect(port);
      c.write('GET / HTTP/1.1\nHost: a\n\n');
      await c.waitForResponses(1);
      five.push(c);
    }
    const sixth = await RawClient.connect(port);
    sixth.write('GET / HTTP/1.1\nHost: a\n\n');
    await sixth.waitForClose(4000);
    const [r] = finalResponses(sixth.data, { closed: true });
    expect(r?.status).toBe(503);
    expect(header(r!, 'connection')).toBe('close');
    expect(header(r!, 'retry-after')).toBe('1');
    for (const c of five) {
      c.write('GET / HTTP/1.1\nHost: a\n\n');
      await c.waitForResponses(2);
      expect(c.closed).toBe(false);
    }
    // Once one of the five leaves, a new connection is served again.
    five[0]!.destroy();
    await sleep(50);
    const again = await RawClient.connect(port);
    again.write('GET / HTTP/1.1\nHost: a\nConnection: close\n\n');
    await again.waitForClose();
    expect(finalResponses(again.data, { closed: true })[0]?.status).toBe(200);
  });
});

describe('request-targets the server refuses', () => {
  for (const target of [
    'http:///p', // an http URI with an empty host (RFC 9110 §4.2.1)
    'http://:80/p', // a port and no host
    'http://a"b<c>/p', // not a uri-host
    'http://a:xyz/p', // a port that is not digits
    'http://user:pw@example.com/p', // userinfo (RFC 9110 §4.2.4)
    'ftp://example.com/p', // not a scheme an HTTP server serves
    '/a#frag', // no request-target has a fragment (RFC 9112 §3.2)
  ]) {
    it(`SRV-11: answers 400 to ${target} and closes`, async () => {
      const { port } = await startServer(environEcho);
      const result = await rawRequest(port, `GET ${target} HTTP/1.1\nHost: a\n\nGET /smuggled HTTP/1.1\nHost: a\n\n`);
      const responses = parseResponses(result.data);
      expect(responses.map((r) => r.status)).toEqual([400]);
      expect(result.closed).toBe(true);
    });
  }
});

describe('a refusal reaches a client still sending its body', () => {
  // RFC 9112 §9.6: the server must keep reading what the client sends after the refusal, or its
  // kernel resets the connection and the client, which writes its whole body before reading,
  // loses the answer. The head reaches the server alone, so nothing is buffered when it is refused.
  const cases: Array<[string, string]> = [
    ['413', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8388608\r\n\r\n'],
    ['400', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8388608\r\nContent-Length: 8388608\r\n\r\n'],
    ['400', 'POST / HTTP/1.1\r\nHost: a b\r\nContent-Length: 8388608\r\n\r\n'],
    ['400', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n'],
    ['501', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'],
  ];
  for (const [status, head] of cases) {
    it(`SRV-21: ${status} for ${JSON.stringify(head.split('\r\n').slice(1, -2).join(' | '))} reaches a client that reads only after sending 1 MiB`, async () => {
      const { port } = await startServer(() => {
        throw new Error('the app must not be called');
      }, { maxBodySize: 10 });
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.pause();
      socket.on('error', () => {});
      socket.write(head);
      await sleep(50);
      socket.write(Buffer.alloc(1024 * 1024, 0x61));
      await sleep(100);
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.resume();
      await Promise.race([once(socket, 'close'), sleep(4000)]);
      socket.destroy();
      expect(Buffer.concat(chunks).toString('latin1')).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    });
  }
});
