/**
 * Faults: clients that reset mid-upload and mid-download, an app that throws at every stage, and
 * 10,000 connections opened and abandoned. After each: the server still serves a normal request,
 * every body iterator was closed exactly once (its `finally` ran or its `return()` was called),
 * and this process's open file descriptors (`/proc/self/fd`, the server and its clients live in
 * the same process) come back to where they were.
 */
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Body } from '../../protocol/nsgi.ts';
import { RawClient, cleanup, finalResponses, sleep, startServer, untilResponses, waitUntil, type Started } from '../helpers/server.ts';

afterEach(cleanup);

/** openFds counts this process's open file descriptors. */
function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** FD_TOLERANCE allows for descriptors the test runner itself opens or closes meanwhile. */
const FD_TOLERANCE = 3;

/** fdsBackTo polls until the open descriptors are back to `baseline` (within the tolerance). */
async function fdsBackTo(baseline: number, timeoutMs = 8000): Promise<void> {
  await waitUntil(() => openFds() <= baseline + FD_TOLERANCE, `open fds to return to ${baseline} (now ${openFds()})`, timeoutMs);
}

/** Tracked counts body iterators made and closed. */
interface Tracked {
  made: number;
  closed: number;
}

/** withOk serves `/ok` with a normal response and everything else with `app`. */
function withOk(app: App): App {
  return (environ, startResponse) => {
    if (environ.PATH_INFO === '/ok') {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['ok'];
    }
    return app(environ, startResponse);
  };
}

/** servesNormally checks the server answers a plain request on a new connection. */
async function servesNormally(port: number): Promise<void> {
  const client = await RawClient.connect(port);
  try {
    client.write('GET /ok HTTP/1.1\nHost: a\nConnection: close\n\n');
    await client.waitForClose();
    const [r] = finalResponses(client.data, { closed: true });
    expect(r?.status).toBe(200);
    expect(r!.body.toString()).toBe('ok');
  } finally {
    client.destroy();
  }
}

describe('clients that reset', () => {
  it('Node has socket.resetAndDestroy (sends RST rather than FIN)', () => {
    expect(typeof net.Socket.prototype.resetAndDestroy).toBe('function');
  });

  it.each(['reset', 'destroy'] as const)('IN-9: a client that %ss mid-upload: the read rejects, the iterator closes, fds return', async (how) => {
    const tracked: Tracked = { made: 0, closed: 0 };
    const outcome: string[] = [];
    let received = 0;
    const app: App = async function* (environ, startResponse) {
      tracked.made++;
      try {
        for await (const part of environ['nsgi.input']) {
          received += part.length;
          await sleep(1);
        }
        startResponse('200 OK', []);
        yield 'all read';
      } catch (err) {
        outcome.push(`read failed: ${(err as { code?: string }).code}`);
      } finally {
        tracked.closed++;
      }
    };
    const started = await startServer(withOk(app));
    const baseline = openFds();
    const client = await RawClient.connect(started.port);
    client.write(`POST /up HTTP/1.1\nHost: a\nContent-Length: ${64 * 1024 * 1024}\n\n`);
    client.socket.write(Buffer.alloc(1024 * 1024, 0x62));
    await waitUntil(() => received > 256 * 1024, 'the app to read some of the body');
    if (how === 'reset') client.socket.resetAndDestroy();
    else client.socket.destroy();
    await waitUntil(() => tracked.closed === 1, 'the app\'s generator to finish');
    expect(outcome).toEqual(['read failed: NSGI_CLIENT_GONE']);
    expect(tracked).toEqual({ made: 1, closed: 1 });
    await servesNormally(started.port);
    await fdsBackTo(baseline);
  });

  it.each(['reset', 'destroy'] as const)('ENV-27, BODY-16: a client that %ss mid-download: the signal fires, the generator\'s finally runs, fds return', async (how) => {
    const tracked: Tracked = { made: 0, closed: 0 };
    let aborted = false;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      environ['nsgi.signal'].addEventListener('abort', () => (aborted = true));
      tracked.made++;
      return (function* () {
        try {
          for (let i = 0; i < 100_000; i++) yield chunk;
        } finally {
          tracked.closed++;
        }
      })();
    };
    const started = await startServer(withOk(app));
    const baseline = openFds();
    const client = await RawClient.connect(started.port);
    client.write('GET /down HTTP/1.1\nHost: a\n\n');
    await client.waitFor((d) => d.length > 1024 * 1024, 'a megabyte of the body');
    if (how === 'reset') client.socket.resetAndDestroy();
    else client.socket.destroy();
    await waitUntil(() => tracked.closed === 1, 'the generator\'s finally');
    await waitUntil(() => aborted, 'nsgi.signal to fire');
    expect(tracked).toEqual({ made: 1, closed: 1 });
    await servesNormally(started.port);
    await fdsBackTo(baseline);
  });

  it('a client that resets while the app is still waiting for its event: the signal fires at once', async () => {
    let abortedAt = 0;
    const app: App = async (environ, startResponse) => {
      const signal = environ['nsgi.signal'];
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      abortedAt = Date.now();
      startResponse('200 OK', []);
      return ['too late'];
    };
    const started = await startServer(withOk(app));
    const baseline = openFds();
    const client = await RawClient.connect(started.port);
    client.write('GET /poll HTTP/1.1\nHost: a\n\n');
    await sleep(100);
    const t0 = Date.now();
    client.socket.resetAndDestroy();
    await waitUntil(() => abortedAt !== 0, 'the signal');
    expect(abortedAt - t0).toBeLessThan(500);
    await servesNormally(started.port);
    await fdsBackTo(baseline);
  });
});

interface Stage {
  stage: string;
  /** What the client must see: a 500, or a response cut before its terminating chunk. */
  expect: '500' | 'cut' | '200';
  /** The message the errors stream must contain. */
  logged: string;
  app: (tracked: Tracked) => App;
}

/** tracking wraps a generator so its finally counts a close. */
function tracking<T>(tracked: Tracked, gen: () => Generator<T> | AsyncGenerator<T>): Body {
  tracked.made++;
  return gen() as unknown as Body;
}

const boom = (): never => {
  throw new Error('boom');
};

const STAGES: Stage[] = [
  {
    stage: 'throws in the call',
    expect: '500',
    logged: 'Error: boom',
    app: () => () => boom(),
  },
  {
    stage: 'rejects asynchronously',
    expect: '500',
    logged: 'Error: boom',
    app: () => async () => {
      await sleep(5);
      return boom();
    },
  },
  {
    stage: 'calls startResponse twice without excInfo',
    expect: '500',
    logged: 'startResponse called a second time',
    app: () => (_e, startResponse) => {
      startResponse('200 OK', []);
      startResponse('200 OK', []);
      return ['never'];
    },
  },
  {
    stage: 'calls startResponse twice inside its generator',
    expect: '500',
    logged: 'startResponse called a second time',
    app: (t) => (_e, startResponse) =>
      tracking(t, function* () {
        try {
          startResponse('200 OK', []);
          startResponse('201 Created', []);
          yield 'never';
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'yields a chunk before startResponse',
    expect: '500',
    logged: 'before startResponse was called',
    app: (t) => () =>
      tracking(t, function* () {
        try {
          yield 'too soon';
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'yields something that is not a chunk',
    expect: '500',
    logged: 'must be a string or a Uint8Array',
    app: (t) => (_e, startResponse) =>
      tracking(t, function* () {
        try {
          startResponse('200 OK', []);
          yield 42 as unknown as string;
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'returns something that is not iterable',
    expect: '500',
    logged: 'not an iterable of chunks',
    app: () => (_e, startResponse) => {
      startResponse('200 OK', []);
      return 'a string' as unknown as Body;
    },
  },
  {
    stage: 'throws in a sync generator before the first chunk',
    expect: '500',
    logged: 'Error: boom',
    app: (t) => (_e, startResponse) =>
      tracking(t, function* () {
        try {
          startResponse('200 OK', []);
          boom();
          yield 'never';
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'throws in an async generator before the first chunk',
    expect: '500',
    logged: 'Error: boom',
    app: (t) => (_e, startResponse) =>
      tracking(t, async function* () {
        try {
          startResponse('200 OK', []);
          await sleep(5);
          boom();
          yield 'never';
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'throws in a sync generator after the first chunk',
    expect: 'cut',
    logged: 'Error: boom',
    app: (t) => (_e, startResponse) =>
      tracking(t, function* () {
        try {
          startResponse('200 OK', []);
          yield 'first';
          yield 'second';
          boom();
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'throws in an async generator after the first chunk',
    expect: 'cut',
    logged: 'Error: boom',
    app: (t) => (_e, startResponse) =>
      tracking(t, async function* () {
        try {
          startResponse('200 OK', []);
          yield 'first';
          await sleep(5);
          boom();
        } finally {
          t.closed++;
        }
      }),
  },
  {
    stage: 'has a generator whose finally throws after the last chunk',
    expect: 'cut',
    logged: 'Error: boom',
    app: (t) => (_e, startResponse) =>
      tracking(t, function* () {
        try {
          startResponse('200 OK', []);
          yield 'first';
          yield 'second';
        } finally {
          t.closed++;
          // The finally runs inside the last next(), so this is an error while producing the body.
          // eslint-disable-next-line no-unsafe-finally
          boom();
        }
      }),
  },
  {
    stage: 'has a hand-written iterator whose return() throws after a complete body',
    expect: '200',
    logged: 'error while closing the body iterator',
    app: (t) => (_e, startResponse) => {
      startResponse('200 OK', []);
      t.made++;
      let i = 0;
      return {
        [Symbol.iterator]() {
          return {
            next(): IteratorResult<string> {
              return i++ < 2 ? { done: false, value: `chunk ${i}` } : { done: true, value: undefined };
            },
            return(): IteratorResult<string> {
              t.closed++;
              throw new Error('return failed');
            },
          };
        },
      };
    },
  },
  {
    stage: 'has a hand-written iterator whose return() throws, stopped early by an error',
    expect: 'cut',
    logged: 'error while closing the body iterator',
    app: (t) => (_e, startResponse) => {
      startResponse('200 OK', []);
      t.made++;
      let i = 0;
      return {
        [Symbol.iterator]() {
          return {
            next(): IteratorResult<string> {
              if (i++ < 2) return { done: false, value: `chunk ${i}` };
              throw new Error('next failed');
            },
            return(): IteratorResult<string> {
              t.closed++;
              throw new Error('return failed too');
            },
          };
        },
      };
    },
  },
  {
    stage: 'has an async iterator whose return() rejects',
    expect: 'cut',
    logged: 'error while closing the body iterator',
    app: (t) => (_e, startResponse) => {
      startResponse('200 OK', []);
      t.made++;
      let i = 0;
      return {
        [Symbol.asyncIterator]() {
          return {
            async next(): Promise<IteratorResult<string>> {
              if (i++ < 2) return { done: false, value: `chunk ${i}` };
              throw new Error('next failed');
            },
            async return(): Promise<IteratorResult<string>> {
              t.closed++;
              throw new Error('return rejected');
            },
          };
        },
      };
    },
  },
];

describe('an app that throws at every stage', () => {
  it.each(STAGES)('ERR-6: an app that $stage: $expect, logged, iterator closed, server fine, fds back', async ({ app, expect: outcome, logged }) => {
    const tracked: Tracked = { made: 0, closed: 0 };
    const started: Started = await startServer(withOk(app(tracked)));
    const baseline = openFds();
    const client = await RawClient.connect(started.port);
    client.write('GET /fault HTTP/1.1\nHost: a\n\n');
    if (outcome === 'cut') {
      await client.waitForClose();
      const [r] = finalResponses(client.data, { closed: true });
      expect(r?.status).toBe(200);
      // The body is cut: no terminating zero-size chunk, so the client knows it is truncated.
      expect(r!.complete).toBe(false);
      expect(client.text.endsWith('0\r\n\r\n')).toBe(false);
    } else {
      await client.waitFor(untilResponses(1), 'a response');
      const [r] = finalResponses(client.data);
      expect(r?.status).toBe(outcome === '500' ? 500 : 200);
      expect(client.text).not.toContain('never');
    }
    client.destroy();
    await waitUntil(() => started.errors.join('\n').includes(logged), `the log to mention ${logged}`);
    await waitUntil(() => tracked.closed === tracked.made, `every iterator to be closed (${tracked.closed}/${tracked.made})`);
    expect(tracked.closed).toBe(tracked.made);
    await servesNormally(started.port);
    await fdsBackTo(baseline);
  });
});

describe('10,000 connections opened and abandoned', () => {
  it('in batches of 500, half destroyed at once, half after half a head: the server serves and fds return', async () => {
    const started = await startServer(withOk(() => boom()), { headersTimeout: 2000 });
    const baseline = openFds();
    const TOTAL = 10_000;
    const BATCH = 500;
    const t0 = Date.now();
    let connected = 0;
    let failed = 0;
    for (let done = 0; done < TOTAL; done += BATCH) {
      await Promise.all(
        Array.from({ length: BATCH }, (_, i) =>
          new Promise<void>((resolve) => {
            const socket = net.connect({ port: started.port, host: '127.0.0.1' });
            const timer = setTimeout(() => {
              socket.destroy();
              failed++;
              resolve();
            }, 5000);
            socket.on('error', () => {});
            socket.on('close', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.on('connect', () => {
              connected++;
              if (i % 2 === 0) socket.destroy();
              else socket.write('GET /abandoned HTTP/1.1\r\nHo', () => socket.destroy());
            });
          }),
        ),
      );
    }
    const elapsed = Date.now() - t0;
    expect(failed).toBe(0);
    expect(connected).toBe(TOTAL);
    expect(elapsed).toBeLessThan(60_000);
    await servesNormally(started.port);
    await fdsBackTo(baseline, 15_000);
    // Nobody sent a whole head, so the app never ran.
    expect(started.errors.join('\n')).not.toContain('boom');
  }, 90_000);
});
