/**
 * Regressions found by reviewing the server: each test is one bug that was, named after what it
 * protects, run over a real loopback socket.
 */
import type { AddressInfo } from 'node:net';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, SetTrailers } from '../protocol/nsgi.ts';
import { createNodeServer } from '../src/adapters/node-http.ts';
import { websocketApp } from '../src/websocket.ts';
import { RawClient, cleanup, header, parseResponses, reqBytes, startServer, waitUntil } from './helpers/server.ts';

afterEach(cleanup);

describe('output backpressure across pipelined requests', () => {
  it('stops answering pipelined requests while the client reads nothing', async () => {
    const big = 'x'.repeat(100 * 1024);
    let answered = 0;
    const { port } = await startServer((_environ, startResponse) => {
      answered++;
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [big];
    });
    const client = await RawClient.connect(port, { collect: false });
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\n\n').toString('latin1').repeat(2000));
    await sleepFor(1000);
    // 2,000 answers would be 200 MB; a paused reader must hold that to what the sockets buffer.
    expect(answered).toBeLessThan(200);
    // Reading again lets the rest be answered.
    client.socket.on('data', () => {});
    client.socket.resume();
    await waitUntil(() => answered === 2000, 'every pipelined request answered', 20_000);
    client.destroy();
  });
});

describe('timers and output still on its way', () => {
  it('does not treat a connection as idle while its last response is still being sent', async () => {
    const body = Buffer.alloc(32 * 1024 * 1024, 7);
    const { port } = await startServer(
      (_environ, startResponse) => {
        startResponse('200 OK', [['Content-Length', String(body.length)]]);
        return [body];
      },
      { keepAliveTimeout: 300 },
    );
    const client = await RawClient.connect(port, { collect: false });
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\n\n'));
    await sleepFor(1000); // longer than the keep-alive timeout, reading nothing
    let received = 0;
    client.socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    client.socket.resume();
    await waitUntil(() => received >= body.length, 'the whole response', 10_000);
    expect(received).toBeGreaterThanOrEqual(body.length);
  });

  it('drops a client that reads nothing of a last response after sendTimeout', { timeout: 15_000 }, async () => {
    const body = Buffer.alloc(32 * 1024 * 1024, 7);
    const { port, errors } = await startServer(
      (_environ, startResponse) => {
        startResponse('200 OK', [['Content-Length', String(body.length)]]);
        return [body];
      },
      { sendTimeout: 300 },
    );
    const client = await RawClient.connect(port, { collect: false });
    client.write(reqBytes('GET / HTTP/1.0\n\n'));
    // The client reads nothing, so it cannot see the close; the server's log line says it dropped it.
    await waitUntil(() => errors.some((e) => e.includes('read nothing')), 'the drop to be logged', 8_000);
    client.destroy();
  });
});

describe('trailers promised by nsgi.set_trailers', () => {
  it('are sent when the promise is made after a single chunk', async () => {
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
    expect(client.text).toContain('Transfer-Encoding: chunked');
    expect(client.text.endsWith('5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n')).toBe(true);
  });

  it('are sent after an empty body', async () => {
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

  it('cannot be set from a finished exchange', async () => {
    let kept: SetTrailers | undefined;
    const { url } = await startServer((environ) => {
      kept = environ['nsgi.set_trailers'];
      throw new Error('fails on purpose');
    });
    expect((await fetch(url)).status).toBe(500);
    await sleepFor(50);
    expect(kept!([['X-Late', '1']])).toBe(false);
  });
});

describe('the body timeout', () => {
  it('does not run before the app asks for the body (Expect: 100-continue)', async () => {
    const app: App = async (environ, startResponse) => {
      await sleepFor(600);
      const text = await environ['nsgi.input'].text();
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`got ${text}`];
    };
    const { port } = await startServer(app, { bodyTimeout: 300 });
    const client = await RawClient.connect(port);
    client.write(reqBytes('POST / HTTP/1.1\nHost: x\nContent-Length: 5\nExpect: 100-continue\n\n'));
    await client.waitForText('100 Continue', 5_000);
    client.write('hello');
    await client.waitForText('got hello', 5_000);
    expect(client.text).toContain('HTTP/1.1 200 OK');
  });
});

describe('the node:http adapter', () => {
  /** listen serves `app` from node:http through createNodeServer on an ephemeral port. */
  async function listen(app: App): Promise<{ port: number; close: () => Promise<void> }> {
    const server = createNodeServer(app, { errors: { write: () => {} } });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    return {
      port,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  }

  it('answers the next request after an app stopped reading a large body early', async () => {
    const { port, close } = await listen(async (environ, startResponse) => {
      if (environ.REQUEST_METHOD === 'POST') {
        let seen = 0;
        for await (const part of environ['nsgi.input']) {
          seen += part.length;
          if (seen > 1024) break;
        }
        startResponse('413 Content Too Large', [['Content-Length', '0']]);
        return [];
      }
      startResponse('200 OK', [['Content-Length', '4']]);
      return ['next'];
    });
    try {
      const client = await RawClient.connect(port);
      const body = 'a'.repeat(300_000);
      client.write(
        `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` +
          'GET /next HTTP/1.1\r\nHost: x\r\n\r\n',
      );
      // Either the second request is answered, or the connection is closed: it must not hang.
      await client.waitFor((data) => data.toString('latin1').includes('next') || client.closed, 'an answer or a close', 5_000);
      expect(client.text).toContain('413');
    } finally {
      await close();
    }
  });

  it('closes the connection after a body longer than its Content-Length', async () => {
    const { port, close } = await listen((_environ, startResponse) => {
      startResponse('200 OK', [['Content-Length', '3']]);
      return ['hello'];
    });
    try {
      const client = await RawClient.connect(port);
      client.write(reqBytes('GET / HTTP/1.1\nHost: x\n\n'));
      await client.waitForClose(5_000);
      expect(client.text.endsWith('\r\n\r\nhel')).toBe(true);
    } finally {
      await close();
    }
  });
});

describe('the WebSocket helper', () => {
  it('answers an Upgrade that is not exactly websocket with its own 400, keeping the connection HTTP', async () => {
    const { port } = await startServer(websocketApp(() => {}));
    const client = await RawClient.connect(port);
    const key = Buffer.alloc(16, 1).toString('base64');
    client.write(
      reqBytes(`GET / HTTP/1.1\nHost: x\nConnection: Upgrade\nUpgrade: websocket, foo\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: ${key}\n\n`),
    );
    await client.waitForResponses(1);
    const [response] = parseResponses(client.data);
    expect(response!.status).toBe(400);
    expect(header(response!, 'content-type')).toMatch(/^text\/plain/);
    expect(client.closed).toBe(false);
  });
});
