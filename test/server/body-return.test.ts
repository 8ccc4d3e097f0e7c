/**
 * SPEC §3.4 over real sockets: however a response body ends on the server's side, its iterator's
 * `return()` is called exactly once, and an async generator's `finally` has run by the time
 * `close()` resolves (so that a process exiting after close() does not skip it). One test per way
 * a body can be ended without the app's say: the graceful timeout of `close()` cutting a body that
 * ignores `nsgi.signal`, the send timeout dropping a client that reads nothing, and `close()`
 * ending a body that does honour the signal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { RawClient, cleanup, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

/** Probe counts what happened to one body's iterator. */
interface Probe {
  nexts: number;
  returns: number;
  finallyRan: boolean;
}

/**
 * endlessApp streams 16 KiB chunks from an async generator every `intervalMs` (0: as fast as the
 * socket takes them) until returned (or,
 * with `honourSignal`, until nsgi.signal fires), counting its `return()` calls through a wrapper
 * and noting when its `finally` runs.
 */
function endlessApp(probe: Probe, options: { intervalMs: number; honourSignal?: boolean }): App {
  const chunk = 'x'.repeat(16 * 1024);
  return (environ, startResponse) => {
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    const signal = environ['nsgi.signal'];
    const gen = (async function* () {
      try {
        while (!(options.honourSignal === true && signal.aborted)) {
          yield chunk;
          if (options.intervalMs > 0) await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
        }
      } finally {
        // An await before the finally's end: close() must wait for it, not only call return().
        await new Promise((resolve) => setTimeout(resolve, 50));
        probe.finallyRan = true;
      }
    })();
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          probe.nexts++;
          return gen.next();
        },
        return: () => {
          probe.returns++;
          return gen.return(undefined);
        },
      }),
    };
  };
}

describe('SPEC §3.4: return() exactly once however the server ends a body', () => {
  it('BODY-16, BODY-17: the graceful timeout of close() cuts a body that ignores nsgi.signal', async () => {
    const probe: Probe = { nexts: 0, returns: 0, finallyRan: false };
    const { server, port } = await startServer(endlessApp(probe, { intervalMs: 20 }));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await client.waitForText('xxxx');
    await server.close({ timeout: 200 });
    expect(probe.returns).toBe(1);
    expect(probe.finallyRan).toBe(true);
    await client.waitForClose();
  });

  it('BODY-16, BODY-17: the send timeout drops a client that reads nothing', async () => {
    const probe: Probe = { nexts: 0, returns: 0, finallyRan: false };
    const { port, errors } = await startServer(endlessApp(probe, { intervalMs: 0 }), { sendTimeout: 300 });
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => errors.some((e) => e.includes('it read nothing for 300 ms')), 'the send timeout', 10_000);
    await waitUntil(() => probe.finallyRan, "the generator's finally", 2000);
    expect(probe.returns).toBe(1);
  }, 20_000);

  it('BODY-16, BODY-17: close() ends a body that honours nsgi.signal', async () => {
    const probe: Probe = { nexts: 0, returns: 0, finallyRan: false };
    const { server, port } = await startServer(endlessApp(probe, { intervalMs: 20, honourSignal: true }));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await client.waitForText('xxxx');
    await server.close({ timeout: 5000 });
    expect(probe.returns).toBe(1);
    expect(probe.finallyRan).toBe(true);
    await client.waitForClose();
    expect(client.data.toString('latin1').endsWith('\r\n0\r\n\r\n')).toBe(true);
  });

  it('BODY-16, BODY-17: the client leaving mid-body', async () => {
    const probe: Probe = { nexts: 0, returns: 0, finallyRan: false };
    await startServer(endlessApp(probe, { intervalMs: 20 })).then(async ({ port }) => {
      const client = await RawClient.connect(port);
      client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      await client.waitForText('xxxx');
      client.destroy();
    });
    await waitUntil(() => probe.finallyRan, "the generator's finally", 2000);
    expect(probe.returns).toBe(1);
  });
});

describe('a connection accepted just before close()', () => {
  it('still gets its first request answered, with Connection: close', async () => {
    const { server, port } = await startServer((_environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['hello'];
    });
    const client = await RawClient.connect(port);
    await waitUntil(() => server.netServer.listenerCount('connection') > 0, 'the server', 1000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closed = server.close({ timeout: 5000 });
    client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await client.waitForClose();
    const text = client.data.toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).toMatch(/\r\nConnection: close\r\n/i);
    expect(text.endsWith('hello')).toBe(true);
    await closed;
  });

  it('is closed after a second if it sends nothing', async () => {
    const { server, port } = await startServer((_environ, startResponse) => {
      startResponse('200 OK', []);
      return [];
    });
    const client = await RawClient.connect(port);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const t0 = Date.now();
    await server.close({ timeout: 10_000 });
    await client.waitForClose();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(client.data.length).toBe(0);
  });
});
