/**
 * Graceful shutdown with real signals sent to a real `nsgi` process. The app is
 * test/fixtures/app.ts: `/slow` takes ~1.5 s and ignores nsgi.signal, `/stream` is an event stream
 * that ends cleanly when nsgi.signal fires, `/ignore` runs 30 s and ignores the signal.
 *
 * On SIGTERM or SIGINT the server must: stop accepting, close idle keep-alive connections at once,
 * fire nsgi.signal so long streams end with a complete body, let the in-flight slow response
 * finish, and exit 0. With --graceful-timeout 1, a response that ignores the signal is cut after
 * about a second and the exit is still 0. In process, `server.close()` treats a request whose
 * head is still arriving as one that came after the close.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, finalResponses, GET, RawClient, sleep, startServer, waitUntil } from '../helpers/server.ts';
import { killAllClis, startCli, type RunningCli } from '../helpers/spawn-cli.ts';

afterEach(async () => {
  await cleanup();
  await killAllClis();
});

const APP = 'test/fixtures/app.ts';

/** refused tells whether a new connection to `port` is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 2000);
    socket.on('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED');
    });
  });
}

describe.each(['SIGTERM', 'SIGINT'] as const)('%s to a running nsgi', (signal) => {
  it('SRV-27, SRV-28: stops accepting, closes idle connections at once, ends the stream cleanly, finishes the slow response, exits 0', async () => {
    const { cli, port }: RunningCli = await startCli([APP, '--port', '0']);

    const idle = await RawClient.connect(port);
    idle.write('GET / HTTP/1.1\nHost: a\n\n');
    await idle.waitForResponses(1);

    const slow = await RawClient.connect(port);
    slow.write('GET /slow HTTP/1.1\nHost: a\n\n');
    await slow.waitForText('slow 0');

    const stream = await RawClient.connect(port);
    stream.write('GET /stream HTTP/1.1\nHost: a\n\n');
    await stream.waitForText('data: 1');

    const t0 = Date.now();
    cli.child.kill(signal);

    await idle.waitForClose(1000);
    const idleClosedAfter = Date.now() - t0;
    expect(idleClosedAfter).toBeLessThan(1000);
    expect(finalResponses(idle.data)).toHaveLength(1);

    await stream.waitForClose(2000);
    const [s] = finalResponses(stream.data, { closed: true });
    expect(s!.complete).toBe(true);
    expect(stream.text.endsWith('0\r\n\r\n')).toBe(true);
    expect(s!.body.toString()).toContain('event: bye\ndata: NSGI_SERVER_CLOSING\n\n');

    expect(await refused(port)).toBe(true);

    await slow.waitForClose(4000);
    const [r] = finalResponses(slow.data, { closed: true });
    expect(r!.complete).toBe(true);
    expect(r!.body.toString()).toBe(`${Array.from({ length: 10 }, (_, i) => `slow ${i}\n`).join('')}done\n`);

    const result = await cli.waitForExit(5000);
    expect(result.code).toBe(0);
    expect(result.signal).toBeNull();
    expect(result.stderr).toContain(`received ${signal}`);
    expect(Date.now() - t0).toBeLessThan(5000);
  }, 30_000);
});

describe('--graceful-timeout', () => {
  it('SRV-27: --graceful-timeout 1 cuts a response that ignores the signal after ~1 s and still exits 0', async () => {
    const { cli, port } = await startCli([APP, '--port', '0', '--graceful-timeout', '1']);
    const client = await RawClient.connect(port);
    client.write('GET /ignore HTTP/1.1\nHost: a\n\n');
    await client.waitForText('tick 1');
    const t0 = Date.now();
    cli.child.kill('SIGTERM');
    await client.waitForClose(4000);
    const cutAfter = Date.now() - t0;
    const [r] = finalResponses(client.data, { closed: true });
    expect(r!.complete).toBe(false);
    expect(cutAfter).toBeGreaterThanOrEqual(900);
    expect(cutAfter).toBeLessThan(2500);
    const result = await cli.waitForExit(4000);
    expect(result.code).toBe(0);
  }, 30_000);

  it('a process with nothing in flight exits at once', async () => {
    const { cli } = await startCli([APP, '--port', '0']);
    const t0 = Date.now();
    cli.child.kill('SIGTERM');
    const result = await cli.waitForExit(4000);
    expect(result.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(1500);
  }, 30_000);
});

describe('server.close()', () => {
  it('SRV-27: waits for an in-flight response to finish before resolving', async () => {
    let finishedAt = 0;
    const { server, url, port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return (async function* () {
        yield 'first;';
        await sleep(500);
        yield 'last';
        finishedAt = Date.now();
      })();
    });
    const res = await fetch(url);
    let closedAt = 0;
    const closing = server.close({ timeout: 5000 }).then(() => {
      closedAt = Date.now();
    });
    await sleep(50);
    expect(closedAt).toBe(0);
    expect(await refused(port)).toBe(true);
    expect(await res.text()).toBe('first;last');
    await closing;
    expect(finishedAt).toBeGreaterThan(0);
    expect(closedAt).toBeGreaterThanOrEqual(finishedAt);
  });

  it('SRV-27: closes idle keep-alive connections at once', async () => {
    const { server, port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return ['ok'];
    }, { keepAliveTimeout: 30_000 });
    const client = await RawClient.connect(port);
    client.write(GET);
    await client.waitForResponses(1);
    expect(client.closed).toBe(false);
    const t0 = Date.now();
    let closed = false;
    const closing = server.close({ timeout: 20_000 }).then(() => {
      closed = true;
    });
    await client.waitForClose(1000);
    await waitUntil(() => closed, "close() to resolve", 5000);
    await closing;
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('SRV-28: a request whose head arrives after close() began sees nsgi.signal already aborted with NSGI_SERVER_CLOSING, and is answered with Connection: close', async () => {
    let reason: unknown = null;
    const { port, server } = await startServer((environ, startResponse) => {
      const signal = environ['nsgi.signal'];
      reason = signal.aborted ? signal.reason : 'not aborted';
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['bye'];
    });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\r\nHo');
    await sleep(50);
    const closed = server.close({ timeout: 3000 });
    await sleep(50);
    client.write('st: a\r\n\r\n');
    const data = await client.waitForResponses(1);
    expect((reason as { code?: string }).code).toBe('NSGI_SERVER_CLOSING');
    expect(data.toString('latin1')).toMatch(/\r\nConnection: close\r\n/);
    await closed;
  });
});
