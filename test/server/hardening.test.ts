/**
 * Hardening of the reference server against clients that try to hold its resources or lie about
 * themselves, each case over raw sockets: a head that stops at a bare CR, trailers that would
 * rewrite the response's framing, a client's forwarding fields beside a trusted proxy's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { CHUNK_COST, INPUT_HIGH_WATER_MARK, type RequestInput } from '../../src/body.ts';
import { SERVER_DEFAULTS } from '../../src/server.ts';
import { websocketApp } from '../../src/websocket.ts';
import { RawClient, cleanup, finalResponses, rawRequest, sleep, startServer, untilResponses, waitUntil } from '../helpers/server.ts';
import { wsHandshake } from '../helpers/ws-frames.ts';

afterEach(cleanup);

const hello: App = (_environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain'], ['Content-Length', '3']]);
  return ['hi\n'];
};

describe('a CR not followed by LF', () => {
  // The head deadline is far away: an answer within the wait below can only be the parser's.
  const options = { headersTimeout: 30_000 };

  it.each([
    ['in a field value', 'GET / HTTP/1.1\r\nHost: a\r\nX-Note: one\rtwo'],
    ['in a field name', 'GET / HTTP/1.1\r\nHost: a\r\nX-No\rte: one'],
    ['after the version on the request line', 'GET / HTTP/1.1\rHost: a'],
    ['in the trailer section of a chunked body', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r2'],
  ])('%s gets its 400 at once, without waiting for a line end', async (_name, bytes) => {
    const { port } = await startServer(async (environ, startResponse) => {
      for await (const _ of environ['nsgi.input']);
      return hello(environ, startResponse);
    }, options);
    const res = await rawRequest(port, Buffer.from(bytes, 'latin1'), { timeout: 3000 });
    expect(res.closed).toBe(true);
    expect(res.text).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('a CR that is the last byte received waits for its LF', async () => {
    const { port } = await startServer(hello, options);
    const res = await rawRequest(port, ['GET / HTTP/1.1\r', '\nHost: a\r', '\nConnection: close\r\n\r\n'].map((s) => Buffer.from(s, 'latin1')));
    expect(finalResponses(res.data)[0]?.status).toBe(200);
  });
});

describe('trailers that would frame, route or authenticate the response', () => {
  it.each(['Content-Length', 'transfer-encoding', 'Trailer', 'Host', 'Authorization', 'Set-Cookie', 'Content-Type'])(
    'EXT-11: set_trailers refuses %s with a TypeError naming it, and the field is never sent',
    async (name) => {
      let thrown: unknown;
      const { port, errors } = await startServer((environ, startResponse) => {
        startResponse('200 OK', [['Content-Type', 'text/plain'], ['Trailer', 'X-Sum']]);
        return (function* () {
          yield 'part one\n';
          try {
            environ['nsgi.set_trailers']!([[name, '999']]);
          } catch (err) {
            thrown = err;
            throw err;
          }
          yield 'part two\n';
        })();
      });
      const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { timeout: 3000 });
      expect(thrown).toBeInstanceOf(TypeError);
      expect((thrown as Error).message).toContain(JSON.stringify(name));
      // The head was sent: the error cuts the body without its last chunk, and no trailer leaves.
      expect(res.closed).toBe(true);
      expect(res.text).toContain('part one');
      expect(res.text).not.toContain('0\r\n');
      expect(res.text).not.toContain('999');
      expect(errors.join('\n')).toContain(name);
    },
  );

  it('an allowed trailer is still sent', async () => {
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain'], ['Trailer', 'X-Sum']]);
      return (function* () {
        yield 'body\n';
        expect(environ['nsgi.set_trailers']!([['X-Sum', '42']])).toBe(true);
      })();
    });
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\nConnection: close\n\n', { timeout: 3000 });
    expect(res.text).toContain('\r\n0\r\nX-Sum: 42\r\n\r\n');
  });
});

describe('a trusted proxy speaking Forwarded, with a client-supplied X-Forwarded-For', () => {
  const seenApp: App = (environ, startResponse) => {
    startResponse('200 OK', [['Content-Type', 'application/json']]);
    return [JSON.stringify({ addr: environ.REMOTE_ADDR, scheme: environ['nsgi.url_scheme'] })];
  };

  async function through(fields: string, options: Parameters<typeof startServer>[1]): Promise<{ addr: string; scheme: string }> {
    const { port } = await startServer(seenApp, options);
    const res = await rawRequest(port, `GET / HTTP/1.1\nHost: a\n${fields}Connection: close\n\n`, { until: untilResponses(1) });
    return JSON.parse(finalResponses(res.data)[0]!.body.toString()) as { addr: string; scheme: string };
  }

  it('SRV-26: the proxy\'s Forwarded decides REMOTE_ADDR and the scheme, not the client\'s X-Forwarded-For', async () => {
    const seen = await through('Forwarded: for=10.1.1.1;proto=https\nX-Forwarded-For: 6.6.6.6\n', { forwardedAllowIps: ['127.0.0.1'] });
    expect(seen).toEqual({ addr: '10.1.1.1', scheme: 'https' });
  });

  it('SRV-26: forwardedHeaders "x-forwarded" ignores a client\'s Forwarded passed through an X-Forwarded proxy', async () => {
    const seen = await through('X-Forwarded-For: 198.51.100.7\nForwarded: for=6.6.6.6;proto=https\n', {
      forwardedAllowIps: ['127.0.0.1'],
      forwardedHeaders: 'x-forwarded',
    });
    expect(seen).toEqual({ addr: '198.51.100.7', scheme: 'http' });
  });

  it('SRV-26: forwardedHeaders "forwarded" ignores X-Forwarded-* even when no Forwarded came', async () => {
    const seen = await through('X-Forwarded-For: 6.6.6.6\nX-Forwarded-Proto: https\n', {
      forwardedAllowIps: ['127.0.0.1'],
      forwardedHeaders: 'forwarded',
    });
    expect(seen).toEqual({ addr: '127.0.0.1', scheme: 'http' });
  });

  it('an unknown forwardedHeaders value is refused by serve() with a message naming it', async () => {
    await expect(startServer(seenApp, { forwardedAllowIps: ['127.0.0.1'], forwardedHeaders: 'both' as never })).rejects.toThrow(/forwardedHeaders.*"both"/);
  });
});

describe('an early answer that says close', () => {
  it('SRV-12: CONNECT with a body that never comes gets its 501 and is closed after a bounded linger', { timeout: 15_000 }, async () => {
    const { port } = await startServer(hello, { headersTimeout: 30_000, bodyTimeout: 30_000 });
    const started = Date.now();
    const res = await rawRequest(port, 'CONNECT x:443 HTTP/1.1\nHost: x:443\nContent-Length: 1\n\n', { timeout: 8000 });
    expect(res.text).toMatch(/^HTTP\/1\.1 501 /);
    expect(res.text).toContain('Connection: close');
    expect(res.closed).toBe(true);
    // The linger, not a timeout of the request: well under the 30 s deadlines configured.
    expect(Date.now() - started).toBeLessThan(8000);
  });
});

describe('connections held by early answers', () => {
  it('SRV-21: silent CONNECTs with bodies do not hold maxConnections: a normal request is served once they linger out', { timeout: 15_000 }, async () => {
    const { port } = await startServer(hello, { maxConnections: 5, headersTimeout: 30_000, bodyTimeout: 30_000 });
    const held = await Promise.all(Array.from({ length: 5 }, () => RawClient.connect(port)));
    for (const client of held) client.write('CONNECT x:443 HTTP/1.1\nHost: x:443\nContent-Length: 1\n\n');
    for (const client of held) await client.waitForClose(6000);
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\nConnection: close\n\n', { until: untilResponses(1) });
    expect(finalResponses(res.data)[0]?.status).toBe(200);
  });
});

describe('deadlines that trickling cannot stretch', () => {
  /** readAll reads the whole body and answers with its length. */
  const readAll: App = async (environ, startResponse) => {
    const body = await environ['nsgi.input'].bytes();
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return [`${body.length}\n`];
  };

  it('the default head deadline is short enough that holding every connection costs real effort', () => {
    // The arithmetic beside the default: maxConnections / headersTimeout new connections a second.
    expect(SERVER_DEFAULTS.headersTimeout).toBeLessThanOrEqual(10_000);
    expect(SERVER_DEFAULTS.maxConnections / (SERVER_DEFAULTS.headersTimeout / 1000)).toBeGreaterThanOrEqual(1_000);
  });

  it('a head trickled a byte every 100 ms gets its 408 at the head deadline, not later', { timeout: 10_000 }, async () => {
    const { port } = await startServer(hello, { headersTimeout: 800 });
    const client = await RawClient.connect(port);
    const head = 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'a'.repeat(200);
    const started = Date.now();
    for (let i = 0; i < head.length && !client.closed; i++) {
      client.write(Buffer.from(head[i]!, 'latin1'));
      await sleep(100);
    }
    expect(client.closed).toBe(true);
    expect(client.text).toMatch(/^HTTP\/1\.1 408 /);
    // 800 ms and the linger, far less than the 20 s the trickle would have taken.
    expect(Date.now() - started).toBeLessThan(6000);
  });

  it('a body trickled a byte every 250 ms fails with 408 once under minBodyRate after the grace period', { timeout: 10_000 }, async () => {
    const { port, errors } = await startServer(readAll, { bodyTimeout: 30_000, minBodyRate: 100, minBodyRateGrace: 500 });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 1000\n\n');
    for (let i = 0; i < 40 && !client.closed; i++) {
      client.write(Buffer.from('x'));
      await sleep(250);
    }
    expect(client.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(client.closed).toBe(true);
    expect(errors.join('\n') + client.text).toMatch(/under the minimum of 100/);
  });

  it('a body sent steadily above minBodyRate is not cut', { timeout: 10_000 }, async () => {
    const { port } = await startServer(readAll, { minBodyRate: 100, minBodyRateGrace: 300 });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 3000\nConnection: close\n\n');
    // 200 bytes every 100 ms: 2,000 bytes/s, for 1.5 s.
    for (let i = 0; i < 15; i++) {
      client.write(Buffer.alloc(200, 0x61));
      await sleep(100);
    }
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]?.status).toBe(200);
    expect(finalResponses(client.data)[0]?.body.toString()).toBe('3000\n');
  });

  it('SRV-29: a long poll waiting past every deadline for its event is not cut', { timeout: 10_000 }, async () => {
    const poll: App = async (environ, startResponse) => {
      await environ['nsgi.input'].bytes();
      await sleep(2000);
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['event\n'];
    };
    const { port } = await startServer(poll, { headersTimeout: 300, bodyTimeout: 300, minBodyRate: 1000, minBodyRateGrace: 200 });
    const res = await rawRequest(port, ['GET /poll HTTP/1.1\nHost: a\n\n', 'POST /poll HTTP/1.1\nHost: a\nContent-Length: 5\nConnection: close\n\nhello'], { until: untilResponses(2), timeout: 8000 });
    expect(finalResponses(res.data).map((r) => [r.status, r.body.toString()])).toEqual([[200, 'event\n'], [200, 'event\n']]);
  });
});

describe('upgraded connections', () => {
  it('the send timeout still drops an upgraded WebSocket peer that reads nothing', { timeout: 10_000 }, async () => {
    let closed = false;
    const { port, errors } = await startServer(
      websocketApp((ws) => {
        const message = Buffer.alloc(1024 * 1024, 1);
        for (let i = 0; i < 64; i++) ws.send(message);
        ws.on('close', () => {
          closed = true;
        });
      }, { sendStallMs: 0, maxBufferedBytes: Infinity }),
      { sendTimeout: 500 },
    );
    const client = await RawClient.connect(port, { collect: false });
    client.write(wsHandshake());
    await waitUntil(() => closed, 'the server to drop the upgraded socket', 5000);
    expect(errors.join('\n')).toMatch(/dropping upgraded .* read nothing for 500 ms/);
  });
});

describe('a request body in tiny chunks that the app has not read yet', () => {
  /** oneByteChunks is `n` chunks of one byte each, as chunked coding frames them. */
  const oneByteChunks = (n: number): Buffer => Buffer.from('1\r\nx\r\n'.repeat(n), 'latin1');

  it('IN-4: is bounded by its memory cost, counted in objects, not by its payload bytes', { timeout: 15_000 }, async () => {
    const inputs: RequestInput[] = [];
    const { port } = await startServer((environ, startResponse) => {
      // A long poll that has not read its body yet.
      inputs.push(environ['nsgi.input'] as RequestInput);
      return new Promise((resolve) => {
        environ['nsgi.signal'].addEventListener('abort', () => {
          startResponse('200 OK', []);
          resolve([]);
        });
      });
    });
    const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.connect(port)));
    for (const client of clients) {
      client.socket.on('error', () => {});
      client.write('POST /poll HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n');
      // 1 MiB of one-byte chunks: 6 MiB on the wire, far past any bound the server keeps.
      for (let i = 0; i < 16; i++) client.socket.write(oneByteChunks(65536));
    }
    await waitUntil(() => inputs.length === 10 && inputs.every((input) => input.bufferedCost >= INPUT_HIGH_WATER_MARK), 'every input to fill', 10_000);
    await sleep(200);
    for (const input of inputs) {
      // Counted objects: a handful of shared buffers, not one object per byte (65,536 before).
      expect(input.bufferedPieces).toBeLessThanOrEqual(8);
      expect(input.bufferedCost).toBeLessThanOrEqual(INPUT_HIGH_WATER_MARK + 16 * 1024 + CHUNK_COST);
    }
  });

  it('ENV-27: a client that leaves while its input is full is noticed: nsgi.signal fires', { timeout: 15_000 }, async () => {
    let aborted = false;
    let input: unknown;
    const { port } = await startServer((environ, startResponse) => {
      input = environ['nsgi.input'];
      return new Promise((resolve) => {
        environ['nsgi.signal'].addEventListener('abort', () => {
          aborted = true;
          startResponse('200 OK', []);
          resolve([]);
        });
      });
    });
    const client = await RawClient.connect(port);
    client.socket.on('error', () => {});
    // 80 KiB of one-byte chunks, more than the input takes, then the client's FIN.
    client.write('POST /poll HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n');
    client.socket.write(oneByteChunks(80 * 1024));
    await waitUntil(() => input !== undefined, 'the app to be called');
    await sleep(500);
    client.socket.end();
    await waitUntil(() => aborted, 'nsgi.signal to fire after the client left', 5000);
  });
});
