/**
 * The nsgi contract as the real server carries it out, beyond the cases the contract suite
 * (`cases.ts`) runs against every server: each kind of app error and of body, excInfo swallowed
 * by the app, `write()` after the client left, the iterator's `return()` called exactly once for
 * plain iterators, generators and async generators alike, `nsgi.signal`, `nsgi.input` streaming
 * and draining, and the default `nsgi.errors`. Every test runs the server on an ephemeral
 * loopback port and talks to it with fetch or raw bytes.
 */

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Chunk } from '../../protocol/nsgi.ts';
import {
  cleanup,
  finalResponses,
  GET,
  hashApp,
  parseResponses,
  RawClient,
  rawRequest,
  reqBytes,
  sha256,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';
import { STDERR } from '../../src/errors.ts';

afterEach(cleanup);


describe('app errors, excInfo and kinds of body', () => {
  it.each(['plain app', 'async app', 'sync generator', 'async generator'])('ERR-1, ERR-2, ERR-3: answers 500 and logs when a %s throws after startResponse, before the first chunk', async (kind) => {
    const app: App = (_env, startResponse) => {
      startResponse('200 OK', []);
      if (kind === 'plain app') throw new Error('boom before the body');
      if (kind === 'async app') {
        return sleep(10).then(() => {
          throw new Error('boom before the body');
        });
      }
      if (kind === 'sync generator') {
        return (function* (): Generator<Chunk> {
          throw new Error('boom before the body');
        })();
      }
      return (async function* (): AsyncGenerator<Chunk> {
        await sleep(10);
        throw new Error('boom before the body');
      })();
    };
    const { url, errors } = await startServer(app);
    const res = await fetch(url);
    expect(res.status).toBe(500);
    expect(await res.text()).not.toContain('boom');
    expect(errors.some((m) => m.includes('boom before the body'))).toBe(true);
  });

  it('SR-24: rethrows excInfo to the app when the head has already been sent', async () => {
    let caught: unknown = 'nothing caught';
    const original = new Error('late failure');
    const { url } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return (async function* () {
        yield 'first;';
        try {
          startResponse('500 Internal Server Error', [], original);
        } catch (err) {
          caught = err;
        }
        yield 'after';
      })();
    });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('first;after');
    expect(caught).toBe(original);
  });

  it('SR-5, SR-7: answers 500 for a header value with CRLF and never puts it on the wire', async () => {
    const { port, errors } = await startServer((_env, startResponse) => {
      startResponse('200 OK', [['X-Evil', 'a\r\nX-Injected: 1']]);
      return ['hi'];
    });
    const res = await rawRequest(port, GET, { until: untilResponses(1) });
    const [r] = finalResponses(res.data);
    expect(r?.status).toBe(500);
    expect(res.text).not.toContain('X-Injected');
    expect(res.text).not.toContain('X-Evil');
    expect(errors.length).toBeGreaterThan(0);
  });

  it('APP-3: serves an async app that returns a Promise of a body', async () => {
    const { url } = await startServer(async (_env, startResponse) => {
      await sleep(20);
      startResponse('200 OK', []);
      return ['async ', 'app'];
    });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('async app');
  });

  it('BODY-1: serves an object whose Symbol.asyncIterator is an async generator', async () => {
    const { url } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return {
        async *[Symbol.asyncIterator]() {
          yield 'from ';
          await sleep(5);
          yield Buffer.from('an object');
        },
      };
    });
    const res = await fetch(url);
    expect(await res.text()).toBe('from an object');
  });

  it('BODY-1, BODY-4: serves an array body of strings and bytes', async () => {
    const { url } = await startServer((_env, startResponse) => {
      startResponse('200 OK', []);
      return ['a', Buffer.from('b'), new Uint8Array([0x63]), ''];
    });
    const res = await fetch(url);
    expect(await res.text()).toBe('abc');
  });

  it('an app that returns a function is told it may be a factory, without its source', async () => {
    const { port, errors } = await startServer((() => () => ['never']) as unknown as App);
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(parseResponses(result.data)[0]!.status).toBe(500);
    await waitUntil(() => errors.some((e) => e.includes('factory')), 'the hint on nsgi.errors');
    expect(errors.join('\n')).not.toContain("['never']");
  });
});

describe('write()', () => {
  it('SR-28, ENV-27: a write() after the client half-closed rejects with ClientGoneError, not an app error', async () => {
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

/** Kind is the shape of body used to watch `return()`. */
type Kind = 'iterator' | 'generator' | 'async generator';

/** Watched is a body whose `return()` calls and `finally` runs are counted. */
interface Watched {
  body: Iterable<Chunk> | AsyncIterable<Chunk>;
  returns: number;
  finallies: number;
}

/**
 * watchedBody makes a body of `kind` that yields `chunks` (forever if `chunks` is 'forever') and
 * throws at the end if `throwAtEnd`, counting calls to its iterator's `return()`.
 */
function watchedBody(kind: Kind, chunks: Chunk[] | 'forever', throwAtEnd = false): Watched {
  const watched: Watched = { body: [], returns: 0, finallies: 0 };
  const big = Buffer.alloc(64 * 1024, 0x61);
  const at = (i: number): Chunk | undefined => (chunks === 'forever' ? big : chunks[i]);
  if (kind === 'iterator') {
    let i = 0;
    let closed = false;
    const iterator: Iterator<Chunk> = {
      next() {
        if (closed) return { done: true, value: undefined };
        const chunk = at(i++);
        if (chunk !== undefined) return { done: false, value: chunk };
        if (throwAtEnd) throw new Error('iterator failed');
        return { done: true, value: undefined };
      },
      return() {
        watched.returns++;
        if (!closed) watched.finallies++;
        closed = true;
        return { done: true, value: undefined };
      },
    };
    watched.body = { [Symbol.iterator]: () => iterator };
    return watched;
  }
  if (kind === 'generator') {
    const gen = (function* () {
      try {
        for (let i = 0; ; i++) {
          const chunk = at(i);
          if (chunk === undefined) break;
          yield chunk;
        }
        if (throwAtEnd) throw new Error('generator failed');
      } finally {
        watched.finallies++;
      }
    })();
    watched.body = countReturns(gen, watched);
    return watched;
  }
  const gen = (async function* () {
    try {
      for (let i = 0; ; i++) {
        const chunk = at(i);
        if (chunk === undefined) break;
        yield chunk;
      }
      if (throwAtEnd) throw new Error('async generator failed');
    } finally {
      watched.finallies++;
    }
  })();
  watched.body = countReturns(gen, watched);
  return watched;
}

/** countReturns wraps a generator's `return()` so that each call is counted in `watched`. */
function countReturns<G extends Generator<Chunk> | AsyncGenerator<Chunk>>(gen: G, watched: Watched): G {
  const original = gen.return.bind(gen) as (value: unknown) => unknown;
  (gen as { return: (value: unknown) => unknown }).return = (value) => {
    watched.returns++;
    return original(value);
  };
  return gen;
}

/** watchApp serves `make()`'s body with `status`, keeping the watched bodies. */
function watchApp(make: () => Watched, status = '200 OK'): { app: App; bodies: Watched[] } {
  const bodies: Watched[] = [];
  const app: App = (_env, startResponse) => {
    startResponse(status, []);
    const w = make();
    bodies.push(w);
    return w.body;
  };
  return { app, bodies };
}

/** expectClosedOnce waits for the body's cleanup and checks it happened exactly once. */
async function expectClosedOnce(bodies: Watched[]): Promise<void> {
  expect(bodies).toHaveLength(1);
  const w = bodies[0]!;
  await waitUntil(() => w.returns > 0 && w.finallies > 0, 'the body to be closed', 1000);
  await sleep(50);
  expect(w.returns).toBe(1);
  expect(w.finallies).toBe(1);
}

describe('return() is called exactly once', () => {
  const kinds: Kind[] = ['iterator', 'generator', 'async generator'];

  it.each(kinds)('BODY-16, BODY-17: return() is called once when a %s body completes', async (kind) => {
    const { app, bodies } = watchApp(() => watchedBody(kind, ['a', 'b', 'c']));
    const { url } = await startServer(app);
    const res = await fetch(url);
    expect(await res.text()).toBe('abc');
    await expectClosedOnce(bodies);
  });

  it.each(kinds)('BODY-16, BODY-17: return() is called once when a %s body throws', async (kind) => {
    const { app, bodies } = watchApp(() => watchedBody(kind, ['a', 'b'], true));
    const { port } = await startServer(app);
    const res = await rawRequest(port, GET, { timeout: 3000 });
    expect(res.closed).toBe(true);
    expect(res.text).not.toContain('0\r\n\r\n');
    await expectClosedOnce(bodies);
  });

  it.each(kinds)('BODY-16, BODY-17: return() is called once when the client disconnects in the middle of an endless %s body', async (kind) => {
    const { app, bodies } = watchApp(() => watchedBody(kind, 'forever'));
    const { port } = await startServer(app);
    const client = await RawClient.connect(port);
    client.write(GET);
    await client.waitFor((data) => data.length > 256 * 1024, 'some of the body');
    client.destroy();
    await expectClosedOnce(bodies);
  });

  it.each(kinds)('BODY-16, BODY-19: return() is called once for HEAD with a %s body', async (kind) => {
    const { app, bodies } = watchApp(() => watchedBody(kind, ['a', 'b', 'c']));
    const { port } = await startServer(app);
    const res = await rawRequest(port, 'HEAD / HTTP/1.1\nHost: t\n\n', { until: (d) => d.includes('\r\n\r\n') });
    expect(finalResponses(res.data, { noBody: () => true })[0]?.status).toBe(200);
    await expectClosedOnce(bodies);
  });

  it.each(kinds)('BODY-16, SR-21: return() is called once for a 204 with a %s body', async (kind) => {
    const { app, bodies } = watchApp(() => watchedBody(kind, ['a', 'b', 'c']), '204 No Content');
    const { port } = await startServer(app);
    const res = await rawRequest(port, `${GET}GET /2 HTTP/1.1\nHost: t\n\n`, { until: untilResponses(2) });
    const responses = finalResponses(res.data);
    expect(responses.map((r) => r.status)).toEqual([204, 204]);
    expect(res.text.slice(responses[0]!.head.length, responses[0]!.head.length + 12)).toBe('HTTP/1.1 204');
    await waitUntil(() => bodies.length === 2, 'both requests to be served');
    bodies.pop();
    await expectClosedOnce(bodies);
  });
});

describe('nsgi.signal', () => {
  it('ENV-27, ENV-29: nsgi.signal is not aborted while the client waits, and ends a long poll when the client leaves', async () => {
    let signal: AbortSignal | undefined;
    let ended = false;
    const { port } = await startServer(async (environ, startResponse) => {
      signal = environ['nsgi.signal'];
      await new Promise<void>((resolve) => signal!.addEventListener('abort', () => resolve(), { once: true }));
      ended = true;
      startResponse('200 OK', []);
      return ['never read'];
    });
    const client = await RawClient.connect(port);
    client.write(GET);
    await waitUntil(() => signal !== undefined, 'the app to be called');
    await sleep(200);
    expect(signal!.aborted).toBe(false);
    expect(ended).toBe(false);
    client.destroy();
    await waitUntil(() => ended, 'the long-poll to end', 1000);
    expect(signal!.aborted).toBe(true);
  });

  it('ENV-27: nsgi.signal stays unaborted for a request that completes normally', async () => {
    let signal: AbortSignal | undefined;
    const { url } = await startServer((environ, startResponse) => {
      signal = environ['nsgi.signal'];
      startResponse('200 OK', []);
      return ['ok'];
    });
    const res = await fetch(url);
    expect(await res.text()).toBe('ok');
    expect(signal?.aborted).toBe(false);
  });
});

describe('nsgi.input', () => {
  it('IN-4: streams a Content-Length upload sent in pieces', async () => {
    const { port } = await startServer(hashApp);
    const body = randomBytes(200_000);
    const client = await RawClient.connect(port);
    client.write(`POST / HTTP/1.1\nHost: t\nContent-Length: ${body.length}\n\n`);
    for (let i = 0; i < body.length; i += 50_000) {
      client.write(body.subarray(i, i + 50_000));
      await sleep(10);
    }
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]?.body.toString()).toBe(`${body.length} ${sha256(body)}`);
  });

  it('IN-4: reads a 20 MiB Content-Length body byte for byte', async () => {
    const { url } = await startServer(hashApp);
    const body = randomBytes(20 * 1024 * 1024);
    const res = await fetch(url, { method: 'POST', body });
    expect(await res.text()).toBe(`${body.length} ${sha256(body)}`);
  });

  it('IN-4: reads a 20 MiB chunked body byte for byte', async () => {
    const { url } = await startServer(hashApp);
    const body = randomBytes(20 * 1024 * 1024);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < body.length; i += 1024 * 1024) controller.enqueue(body.subarray(i, i + 1024 * 1024));
        controller.close();
      },
    });
    const res = await fetch(url, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect(await res.text()).toBe(`${body.length} ${sha256(body)}`);
  });

  it('IN-5: leaves every chunk it gave the app as it was, though the app keeps them all until the end', async () => {
    const { port } = await startServer(async (environ, startResponse) => {
      const kept: Uint8Array[] = [];
      for await (const part of environ['nsgi.input']) kept.push(part);
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`${kept.length} ${sha256(Buffer.concat(kept))}`];
    });
    const body = randomBytes(4 * 1024 * 1024);
    const client = await RawClient.connect(port);
    client.write(`POST / HTTP/1.1\nHost: t\nContent-Length: ${body.length}\n\n`);
    for (let i = 0; i < body.length; i += 256 * 1024) {
      client.write(body.subarray(i, i + 256 * 1024));
      await sleep(2);
    }
    await client.waitForResponses(1, 20_000);
    const [count, digest] = finalResponses(client.data)[0]!.body.toString().split(' ');
    expect(Number(count)).toBeGreaterThan(1);
    expect(digest).toBe(sha256(body));
  });

  it('IN-8: drains the unread rest of a body so the next request on the connection is answered', async () => {
    const seen: string[] = [];
    const { port } = await startServer(async (environ, startResponse) => {
      seen.push(environ.PATH_INFO);
      let first = 0;
      for await (const part of environ['nsgi.input']) {
        first = part.length;
        break;
      }
      startResponse('200 OK', []);
      return [`${environ.PATH_INFO}:${first > 0 ? 'read' : 'empty'}`];
    });
    const fake = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n'.repeat(2000);
    const client = await RawClient.connect(port);
    client.write(`POST /post HTTP/1.1\nHost: t\nContent-Length: ${fake.length}\n\n`);
    client.write(Buffer.from(fake.slice(0, 1000), 'latin1'));
    await client.waitForResponses(1);
    client.write(Buffer.concat([Buffer.from(fake.slice(1000), 'latin1'), reqBytes('GET /next HTTP/1.1\nHost: t\n\n')]));
    await client.waitForResponses(2);
    await sleep(100);
    expect(finalResponses(client.data).map((r) => r.body.toString())).toEqual(['/post:read', '/next:empty']);
    expect(seen).toEqual(['/post', '/next']);
  });

  it('IN-1: a read of nsgi.input after the response ended fails rather than ending the body early', async () => {
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
    await sleep(100);
    client.write('world');
    await waitUntil(() => read !== undefined || sawError !== undefined, 'the late read to settle');
    expect(read).toBeUndefined();
    expect((sawError as { code?: string }).code).toBe('NSGI_INPUT_AFTER_RESPONSE');
  });
});

describe('nsgi.errors', () => {
  it('ENV-24: the default nsgi.errors does not throw on a message that is not a string', () => {
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
