/**
 * Regressions found by reviewing the server: each test is one bug that was, named after what it
 * protects, run over a real loopback socket.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, SetTrailers } from '../protocol/nsgi.ts';
import { createNodeServer } from '../src/adapters/node-http.ts';
import { STDERR } from '../src/errors.ts';
import { sseResponse } from '../src/helpers/sse.ts';
import { websocketApp } from '../src/websocket.ts';
import { RawClient, cleanup, header, parseResponses, rawRequest, reqBytes, startServer, waitUntil } from './helpers/server.ts';

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

// ---- found by probing the server from outside, as a conformance suite would ----------------------

/** environEcho answers with the environ keys a test asks about, as JSON. */
const environEcho: App = (environ, startResponse) => {
  const picked = Object.fromEntries(
    ['SERVER_NAME', 'SERVER_PORT', 'HTTP_HOST', 'PATH_INFO'].map((key) => [key, environ[key] ?? null]),
  );
  const body = JSON.stringify(picked);
  startResponse('200 OK', [['Content-Type', 'application/json'], ['Content-Length', String(body.length)]]);
  return [body];
};

describe('empty lines after a keep-alive response', () => {
  it('closes a connection that sends only a CRLF after its response, at the idle timeout', async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 300, headersTimeout: 5_000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    await sleepFor(100);
    client.write('\r\n');
    await client.waitForClose(3_000);
  });

  it('closes a connection whose POST body is followed by a stray CRLF in the same write', async () => {
    const { port } = await startServer(
      async (environ, startResponse) => {
        await environ['nsgi.input'].bytes();
        startResponse('200 OK', [['Content-Length', '2']]);
        return ['ok'];
      },
      { keepAliveTimeout: 300, headersTimeout: 5_000 },
    );
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc\n');
    await client.waitForResponses(1);
    await client.waitForClose(3_000);
  });

  it('does not let a trickle of empty lines push the deadline back', { timeout: 10_000 }, async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 400, headersTimeout: 5_000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    const started = Date.now();
    for (let i = 0; i < 20 && !client.closed; i++) {
      client.write('\r\n');
      await sleepFor(100);
    }
    expect(client.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('still serves a request that follows the empty lines', async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 2_000 });
    const client = await RawClient.connect(port);
    client.write('GET /one HTTP/1.1\nHost: a\n\n\n\nGET /two HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(2);
    expect(parseResponses(client.data).map((r) => JSON.parse(r.body.toString()).PATH_INFO)).toEqual(['/one', '/two']);
  });
});

describe('request-targets a server must refuse', () => {
  for (const target of [
    'http:///p', // an http URI with an empty host (RFC 9110 §4.2.1)
    'http://:80/p', // a port and no host
    'http://a"b<c>/p', // not a uri-host
    'http://a:xyz/p', // a port that is not digits
    'http://user:pw@example.com/p', // userinfo (RFC 9110 §4.2.4)
    'ftp://example.com/p', // not a scheme an HTTP server serves
    '/a#frag', // no request-target has a fragment (RFC 9112 §3.2)
  ]) {
    it(`answers 400 to ${target} and closes`, async () => {
      const { port } = await startServer(environEcho);
      const result = await rawRequest(port, `GET ${target} HTTP/1.1\nHost: a\n\nGET /smuggled HTTP/1.1\nHost: a\n\n`);
      const responses = parseResponses(result.data);
      expect(responses.map((r) => r.status)).toEqual([400]);
      expect(result.closed).toBe(true);
    });
  }
});

describe('the environ of an absolute-form target', () => {
  it('takes SERVER_NAME and SERVER_PORT from the target, and leaves HTTP_HOST as received', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET http://example.com:8080/p HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toEqual({
      SERVER_NAME: 'example.com', SERVER_PORT: '8080', HTTP_HOST: 'a', PATH_INFO: '/p',
    });
  });

  it('gives an https target without a port the port 443', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET HTTPS://example.com/p HTTP/1.1\nHost: example.com\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: 'example.com', SERVER_PORT: '443' });
  });

  it('adds no HTTP_HOST to an HTTP/1.0 request that had no Host field', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET http://example.com:81/x HTTP/1.0\n\n');
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: 'example.com', SERVER_PORT: '81', HTTP_HOST: null });
  });
});

describe('a Host with a port and no host', () => {
  it('uses the listening address and port (ENV-7)', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: :80\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: '127.0.0.1', SERVER_PORT: String(port) });
  });
});

describe('205 Reset Content', () => {
  it('sends no content, says Content-Length: 0, and keeps the connection', async () => {
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
});

describe('a body chunk for a response that has no body', () => {
  it('is reported when it is the whole body of a 204', async () => {
    const { port, errors } = await startServer((_environ, startResponse) => {
      startResponse('204 No Content', []);
      return ['ignored'];
    });
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(result.text).not.toContain('ignored');
    await waitUntil(() => errors.some((line) => line.includes('204 response discarded')), 'the report on nsgi.errors');
  });
});

describe('found by probing the contract from outside', () => {
  it('nsgi.set_trailers before startResponse returns false and sends nothing (EXT-9)', async () => {
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

  it('a read of nsgi.input after the response ended fails rather than ending the body early (IN-1)', async () => {
    let read: unknown;
    let sawError: unknown;
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Content-Length', '2']]);
      // Answer at once; read the body afterwards.
      setTimeout(() => {
        environ['nsgi.input'].text().then(
          (text) => (read = text),
          (err: unknown) => (sawError = err),
        );
      }, 50);
      return ['ok'];
    });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 10\n\nhello');
    await client.waitForResponses(1);
    await sleepFor(100);
    client.write('world');
    await waitUntil(() => read !== undefined || sawError !== undefined, 'the late read to settle');
    expect(read).toBeUndefined();
    expect((sawError as { code?: string }).code).toBe('NSGI_INPUT_AFTER_RESPONSE');
  });

  it('the default nsgi.errors does not throw on a message that is not a string (ENV-24)', () => {
    const original = process.stderr.write;
    const written: string[] = [];
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      STDERR.write(42 as unknown as string);
      STDERR.write(undefined as unknown as string);
    } finally {
      process.stderr.write = original;
    }
    expect(written).toEqual(['42\n', 'undefined\n']);
  });
});

describe('found by reviewing the fixes above', () => {
  it('a head that starts after an empty line gets the whole head timeout, not the idle one', async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 400, headersTimeout: 3_000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    client.write('\r\n');
    await sleepFor(200);
    client.write('GET /late HTTP/1.1\r\n');
    await sleepFor(600); // past the idle timeout, well within the head timeout
    client.write('Host: a\r\n\r\n');
    await client.waitForResponses(2);
    expect(parseResponses(client.data).map((r) => r.status)).toEqual([200, 200]);
  });

  it('a write() after the client half-closed rejects with ClientGoneError, not an app error', async () => {
    let late: unknown;
    const { port } = await startServer((environ, startResponse) => {
      const write = startResponse('200 OK', []);
      write.flushHead();
      return (async function* () {
        await new Promise<void>((resolve) => environ['nsgi.signal'].addEventListener('abort', () => resolve(), { once: true }));
        late = await write('too late').then(() => 'resolved', (err: unknown) => err);
      })();
    });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForText('\r\n\r\n');
    client.socket.end();
    await waitUntil(() => late !== undefined, 'the late write() to settle');
    expect((late as { code?: string }).code).toBe('NSGI_CLIENT_GONE');
  });
});

describe('found by probing the CLI and the helpers', () => {
  it('HEAD on an event stream sends no Content-Length (RFC 9110 §8.6)', async () => {
    const { port } = await startServer((environ, startResponse) =>
      sseResponse(environ, startResponse, (async function* () {})()),
    );
    const result = await rawRequest(port, 'HEAD /events HTTP/1.1\nHost: a\n\n', {
      until: (d) => d.includes('\r\n\r\n'),
    });
    expect(result.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(result.text.toLowerCase()).not.toContain('content-length');
    expect(result.text.toLowerCase()).not.toContain('transfer-encoding');
  });

  it('an app that returns a function is told it may be a factory, without its source', async () => {
    const { port, errors } = await startServer((() => () => ['never']) as unknown as App);
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(parseResponses(result.data)[0]!.status).toBe(500);
    await waitUntil(() => errors.some((e) => e.includes('factory')), 'the hint on nsgi.errors');
    expect(errors.join('\n')).not.toContain("['never']");
  });
});

describe('a request refused at the end of its head, while the client is still sending its body', () => {
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
    it(`${status} for ${JSON.stringify(head.split('\r\n').slice(1, -2).join(' | '))} reaches a client that reads only after sending 1 MiB`, async () => {
      const { port } = await startServer(() => {
        throw new Error('the app must not be called');
      }, { maxBodySize: 10 });
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.pause();
      socket.on('error', () => {});
      socket.write(head);
      await sleepFor(50);
      socket.write(Buffer.alloc(1024 * 1024, 0x61));
      await sleepFor(100);
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.resume();
      await Promise.race([once(socket, 'close'), sleepFor(4000)]);
      socket.destroy();
      expect(Buffer.concat(chunks).toString('latin1')).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    });
  }
});

describe('a request whose head finishes arriving after close() began', () => {
  it('sees nsgi.signal already aborted with NSGI_SERVER_CLOSING, and is answered with Connection: close', async () => {
    let reason: unknown = null;
    const { port, server } = await startServer((environ, startResponse) => {
      const signal = environ['nsgi.signal'];
      reason = signal.aborted ? signal.reason : 'not aborted';
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['bye'];
    });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\r\nHo');
    await sleepFor(50);
    const closed = server.close({ timeout: 3000 });
    await sleepFor(50);
    client.write('st: a\r\n\r\n');
    const data = await client.waitForResponses(1);
    expect((reason as { code?: string }).code).toBe('NSGI_SERVER_CLOSING');
    expect(data.toString('latin1')).toMatch(/\r\nConnection: close\r\n/);
    await closed;
  });
});
