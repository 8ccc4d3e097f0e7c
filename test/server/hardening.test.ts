/**
 * Hardening of the reference server against clients that try to hold its resources or lie about
 * themselves, each case over raw sockets: a head that stops at a bare CR, trailers that would
 * rewrite the response's framing, a client's forwarding fields beside a trusted proxy's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { RawClient, cleanup, finalResponses, rawRequest, startServer, untilResponses } from '../helpers/server.ts';

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
