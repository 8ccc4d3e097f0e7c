/**
 * The server's timeouts, with small values so each test takes well under a second or two: the
 * head deadline (408, and a slowloris trickle or a run of empty lines does not extend it), the
 * idle keep-alive timeout (which never runs while a response is still on its way), a stalled
 * request body (the app's read fails, the client gets 408; the clock starts only when the app
 * reads), a client that reads nothing of a large response (dropped, the generator's finally
 * runs). And the other side of each: a slow but steady reader, a slow but steady uploader and a
 * long poll waiting for its event are never cut.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import {
  cleanup,
  environEcho,
  finalResponses,
  header,
  parseResponses,
  RawClient,
  reqBytes,
  sleep,
  startServer,
  waitUntil,
} from '../helpers/server.ts';
import { killAllClis } from '../helpers/spawn-cli.ts';

afterEach(async () => {
  await cleanup();
  await killAllClis();
});

const okApp: App = (_environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['ok'];
};

/** closedWithin waits for the server to close `client` and returns how long that took from `since`. */
async function closedAfter(client: RawClient, since: number, timeoutMs = 4000): Promise<number> {
  await client.waitForClose(timeoutMs);
  return Date.now() - since;
}

describe('head timeout', () => {
  it('an incomplete head gets 408 and close at the deadline', async () => {
    const { port } = await startServer(okApp, { headersTimeout: 300 });
    const client = await RawClient.connect(port);
    const t0 = Date.now();
    client.write('GET / HTTP/1.1\nHost: a\n');
    const elapsed = await closedAfter(client, t0);
    const [r] = finalResponses(client.data, { closed: true });
    expect(r?.status).toBe(408);
    expect(header(r!, 'connection')).toBe('close');
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
  });

  it('SRV-21: a HEAD request line cut short gets its 408 without a body, as any refused HEAD', async () => {
    const { port } = await startServer(okApp, { headersTimeout: 300 });
    const client = await RawClient.connect(port);
    client.write('HEAD /unfinished');
    await client.waitForClose();
    const [r] = finalResponses(client.data, { closed: true, noBody: () => true });
    expect(r?.status).toBe(408);
    expect(client.text.endsWith('\r\n\r\n')).toBe(true);
    expect(client.data.length).toBe(r!.head.length);
  });

  it('slowloris: a header trickled one byte every 50 ms never completes and gets 408 at the deadline', async () => {
    const { port } = await startServer(okApp, { headersTimeout: 400 });
    const client = await RawClient.connect(port);
    const t0 = Date.now();
    client.write('GET / HTTP/1.1\nHost: a\n');
    const trickle = setInterval(() => {
      if (!client.closed) client.socket.write('a');
    }, 50);
    try {
      const elapsed = await closedAfter(client, t0);
      const [r] = finalResponses(client.data, { closed: true });
      expect(r?.status).toBe(408);
      // The trickle sent a byte every 50 ms; the deadline still came at ~400 ms, not later.
      expect(elapsed).toBeGreaterThanOrEqual(350);
      expect(elapsed).toBeLessThan(1000);
    } finally {
      clearInterval(trickle);
    }
  });

  it('a connection that never sends a byte is closed at the deadline without a response', async () => {
    const { port } = await startServer(okApp, { headersTimeout: 300 });
    const client = await RawClient.connect(port);
    const elapsed = await closedAfter(client, Date.now());
    expect(client.data.length).toBe(0);
    expect(elapsed).toBeLessThan(1500);
  });

  // Bug: Connection.process() arms the head timer for a later request only when
  // `http.buffered > 0`, but the parser consumes every complete line into its own state, so a
  // partial head that ends on a line boundary leaves nothing buffered: no timer, and onData had
  // already disarmed the idle timer. The connection is then held open forever (first request
  // excepted: its head timer is armed when the connection opens).
  it('the head deadline applies to the second request on a keep-alive connection', async () => {
    const { port } = await startServer(okApp, { headersTimeout: 400, keepAliveTimeout: 2000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    await sleep(600); // longer than headersTimeout, shorter than keepAliveTimeout
    expect(client.closed).toBe(false);
    const t0 = Date.now();
    client.write('GET / HTTP/1.1\nHost: a\n');
    const elapsed = await closedAfter(client, t0);
    expect(finalResponses(client.data, { closed: true }).map((r) => r.status)).toEqual([200, 408]);
    expect(elapsed).toBeGreaterThanOrEqual(350);
    expect(elapsed).toBeLessThan(1500);
  });

  it('the head deadline applies to the second request on a keep-alive connection when it stops mid-line', async () => {
    const { port } = await startServer(okApp, { headersTimeout: 400, keepAliveTimeout: 2000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    await sleep(600);
    const t0 = Date.now();
    client.write('GET / HTTP/1.1\nHost: a\nX-Partial: abc');
    const elapsed = await closedAfter(client, t0);
    expect(finalResponses(client.data, { closed: true }).map((r) => r.status)).toEqual([200, 408]);
    expect(elapsed).toBeLessThan(1500);
  });

  it('SRV-20: a head that starts after an empty line gets the whole head timeout, not the idle one', async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 400, headersTimeout: 3_000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    client.write('\r\n');
    await sleep(200);
    client.write('GET /late HTTP/1.1\r\n');
    await sleep(600); // past the idle timeout, well within the head timeout
    client.write('Host: a\r\n\r\n');
    await client.waitForResponses(2);
    expect(parseResponses(client.data).map((r) => r.status)).toEqual([200, 200]);
  });
});

describe('idle keep-alive timeout', () => {
  it('closes an idle keep-alive connection after keepAliveTimeout, sending nothing more', async () => {
    const { port } = await startServer(okApp, { keepAliveTimeout: 300 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    const t0 = Date.now();
    const length = client.data.length;
    const elapsed = await closedAfter(client, t0);
    expect(client.data.length).toBe(length);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
  });

  it('a connection in use is not closed: requests 200 ms apart keep it open past the timeout', async () => {
    const { port } = await startServer(okApp, { keepAliveTimeout: 300 });
    const client = await RawClient.connect(port);
    for (let i = 1; i <= 5; i++) {
      client.write('GET / HTTP/1.1\nHost: a\n\n');
      await client.waitForResponses(i);
      await sleep(200);
    }
    expect(client.closed).toBe(false);
  });

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
    await sleep(1000); // longer than the keep-alive timeout, reading nothing
    let received = 0;
    client.socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    client.socket.resume();
    await waitUntil(() => received >= body.length, 'the whole response', 10_000);
    expect(received).toBeGreaterThanOrEqual(body.length);
  });
});

describe('request body timeout', () => {
  it('a body that stalls makes the app\'s read reject with a 408 error, and the client gets 408', async () => {
    const reads: string[] = [];
    const app: App = async function* (environ, startResponse) {
      try {
        for await (const part of environ['nsgi.input']) reads.push(`data ${part.length}`);
        reads.push('end');
      } catch (err) {
        reads.push(`error ${(err as { code?: string }).code} ${(err as { status?: number }).status}`);
        throw err;
      }
      startResponse('200 OK', []);
      yield 'ok';
    };
    const { port } = await startServer(app, { bodyTimeout: 300 });
    const client = await RawClient.connect(port);
    const t0 = Date.now();
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 10\n\nabc');
    const elapsed = await closedAfter(client, t0);
    const [r] = finalResponses(client.data, { closed: true });
    expect(r?.status).toBe(408);
    expect(reads).toEqual(['data 3', 'error NSGI_BODY_TIMEOUT 408']);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
  });

  it('SRV-29: a slow but steady upload (a byte every 100 ms) is not cut by a 300 ms body timeout', async () => {
    const app: App = async function* (environ, startResponse) {
      let n = 0;
      for await (const part of environ['nsgi.input']) n += part.length;
      startResponse('200 OK', []);
      yield `got ${n}`;
    };
    const { port } = await startServer(app, { bodyTimeout: 300 });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 12\n\n');
    for (let i = 0; i < 12; i++) {
      await sleep(100);
      client.socket.write('x');
    }
    await client.waitForResponses(1);
    const [r] = finalResponses(client.data);
    expect(r?.status).toBe(200);
    expect(r!.body.toString()).toBe('got 12');
  });

  it('does not run before the app asks for the body (Expect: 100-continue)', async () => {
    const app: App = async (environ, startResponse) => {
      await sleep(600);
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

describe('send timeout', () => {
  /** endless yields 64 KiB chunks (up to 1 GiB) and records whether its finally ran. */
  function endless(state: { finallyRan: boolean; sent: number }, limit = 1 << 30): App {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    return (_environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      return (function* () {
        try {
          while (state.sent < limit) {
            state.sent += chunk.length;
            yield chunk;
          }
        } finally {
          state.finallyRan = true;
        }
      })();
    };
  }

  it('a client that reads nothing of a large response is dropped after sendTimeout and the generator\'s finally runs', async () => {
    const state = { finallyRan: false, sent: 0 };
    const { port, errors } = await startServer(endless(state), { sendTimeout: 500 });
    const client = await RawClient.connect(port, { collect: false });
    const t0 = Date.now();
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await waitUntil(() => state.finallyRan, 'the generator\'s finally', 8000);
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(6000);
    expect(errors.join('\n')).toMatch(/dropping 127\.0\.0\.1:\d+: it read nothing for 500 ms/);
    // Bounded: the pump stopped once the socket was full, it did not buffer the whole body.
    expect(state.sent).toBeLessThan(64 * 1024 * 1024);
    await waitUntil(() => client.closed || (client.socket.resume(), false), 'the client to see the close', 4000).catch(() => {});
  }, 15_000);

  it('SRV-29: a slow but steady reader (a burst every 100 ms) is not dropped with sendTimeout 500 ms', async () => {
    const state = { finallyRan: false, sent: 0 };
    const total = 4 * 1024 * 1024;
    const { port, errors } = await startServer(endless(state, total), { sendTimeout: 500 });
    const client = await RawClient.connect(port, { collect: false });
    const socket = client.socket;
    let received = 0;
    let ended = false;
    let budget = 0;
    socket.on('data', (data: Buffer) => {
      received += data.length;
      budget -= data.length;
      if (budget <= 0) socket.pause();
    });
    socket.on('end', () => (ended = true));
    socket.pause();
    const t0 = Date.now();
    client.write('GET / HTTP/1.1\nHost: a\nConnection: close\n\n');
    const reader = setInterval(() => {
      budget = 96 * 1024;
      socket.resume();
    }, 100);
    try {
      await waitUntil(() => ended || socket.destroyed, 'the download to end', 20_000);
    } finally {
      clearInterval(reader);
    }
    const elapsed = Date.now() - t0;
    expect(ended).toBe(true);
    expect(state.finallyRan).toBe(true);
    expect(state.sent).toBe(total);
    // The head and the chunk framing come on top of the 4 MiB.
    expect(received).toBeGreaterThan(total);
    expect(errors.join('\n')).not.toContain('dropping');
    // The reader, not the server, set the pace: the test really waited on drain many times.
    expect(elapsed).toBeGreaterThan(1000);
  }, 30_000);

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

describe('no timeout cuts an app that is just waiting', () => {
  const ALL_500 = { headersTimeout: 500, keepAliveTimeout: 500, bodyTimeout: 500, sendTimeout: 500 };

  it('SRV-29: a long poll that waits 1.5 s for its event gets it', async () => {
    const app: App = async (_environ, startResponse) => {
      await sleep(1500);
      startResponse('200 OK', []);
      return ['event'];
    };
    const { port } = await startServer(app, ALL_500);
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1, 4000);
    expect(finalResponses(client.data)[0]!.body.toString()).toBe('event');
  }, 10_000);

  it('SRV-29: a long poll after reading a request body waits 1.5 s and answers', async () => {
    const app: App = async function* (environ, startResponse) {
      for await (const _ of environ['nsgi.input']);
      await sleep(1500);
      startResponse('200 OK', []);
      yield 'event';
    };
    const { port } = await startServer(app, ALL_500);
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi');
    await client.waitForResponses(1, 4000);
    expect(finalResponses(client.data)[0]!.body.toString()).toBe('event');
  }, 10_000);

  it('SRV-29: an event stream that sends its head, then an event 1.5 s later, is not cut', async () => {
    const app: App = (_environ, startResponse) => {
      const write = startResponse('200 OK', [['Content-Type', 'text/event-stream']]);
      write.flushHead();
      return (async function* () {
        await sleep(1500);
        yield 'data: late\n\n';
      })();
    };
    const { port } = await startServer(app, ALL_500);
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1, 4000);
    expect(finalResponses(client.data)[0]!.body.toString()).toBe('data: late\n\n');
  }, 10_000);
});
