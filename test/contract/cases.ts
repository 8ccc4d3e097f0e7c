/**
 * The contract cases: each names the SPEC rules it shows, builds an app around a {@link Probe}
 * (which records what the app saw and what the server did to its iterator), and drives a
 * {@link Target} as a client would. The same list runs against every way of serving an app
 * (`contract.test.ts`). A server that cannot keep a rule gets a `deviation`: a check of what it
 * does instead, with the reason, so the gap is asserted and visible rather than skipped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { App, Chunk, Environ, Write } from '../../protocol/nsgi.ts';
import { WAIT_MS, type Req, type Target, type TargetName } from './targets.ts';
import { H2_TARGET } from './h2-target.ts';

/** Gate is a promise a test opens when it wants the app to go on. */
export class Gate {
  private release!: () => void;
  readonly promise = new Promise<void>((resolve) => (this.release = resolve));
  open(): void {
    this.release();
  }
}

/** Probe is what an app shares with its test. */
export class Probe {
  /** Calls of next() and return() on the body iterator made by the server. */
  nextCalls = 0;
  returnCalls = 0;
  /** Bytes the server has pulled from the body. */
  pulled = 0;
  /** Anything the app wants the test to see. */
  value: unknown = undefined;
  environ: Environ | null = null;
  write: Write | null = null;
  readonly gate = new Gate();
}

/** Deviation is how a server that cannot keep a case's rule behaves instead, and why. */
export interface Deviation {
  /** Why, citing the limit of the server. */
  readonly reason: string;
  /** Asserts what the server does instead. */
  run(t: Target, p: Probe): Promise<void>;
}

/** Case is one behaviour of the contract. */
export interface Case {
  readonly name: string;
  /** The SPEC rule ids the case shows. */
  readonly spec: readonly string[];
  /** Set when the case needs a real connection (why, in a word): it is not run on a target without one. */
  readonly wireOnly?: string;
  /** The rule the app breaks on purpose: under validate() the suite expects it reported instead. */
  readonly violates?: string;
  /** The SHOULD the app breaks on purpose: under validate() the case runs as elsewhere, and a warning names it. */
  readonly warns?: string;
  /** The request that shows the violation under validate(); default GET /. */
  readonly request?: Req;
  /** Set when the reference server is known to break the rule: the test is expected to fail (it.fails). */
  readonly knownBug?: Partial<Record<TargetName, string>>;
  app(p: Probe): App;
  run(t: Target, p: Probe): Promise<void>;
  readonly deviations?: Partial<Record<TargetName, Deviation>>;
}

/** sleep resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** until polls `check` every 5 ms and fails with `what` after WAIT_MS. */
export async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * environAsReceived sends a request with an encoded path, a raw query and repeated headers, and
 * checks the environ the app saw; `mixedName` is how the X-Mixed-Case name reaches `nsgi.headers`.
 */
async function environAsReceived(t: Target, p: Probe, mixedName: string): Promise<void> {
  await t.send({ path: '/caf%C3%A9/a%2Fb?x=%20+1', headers: [['X-Mixed-Case', 'v'], ['Cookie', 'a=1'], ['Cookie', 'b=2']] });
  const e = p.environ!;
  expect(e.PATH_INFO).toBe('/café/a/b');
  expect(e.QUERY_STRING).toBe('x=%20+1');
  expect(e.REQUEST_URI).toBe('/caf%C3%A9/a%2Fb?x=%20+1');
  expect(e.HTTP_X_MIXED_CASE).toBe('v');
  expect(e.HTTP_COOKIE).toBe('a=1; b=2');
  expect(e['nsgi.headers']).toContainEqual([mixedName, 'v']);
  expect(e['nsgi.version']).toEqual([1, 0]);
}

/** countingBody is an async iterator object (not a generator) that records next() and return() calls. */
function countingBody(p: Probe, produce: (n: number) => Promise<Chunk | null>): AsyncIterable<Chunk> {
  return {
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<Chunk>> {
        const n = p.nextCalls++;
        const chunk = await produce(n);
        if (chunk === null) return { done: true, value: undefined };
        p.pulled += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        return { done: false, value: chunk };
      },
      async return(): Promise<IteratorResult<Chunk>> {
        p.returnCalls++;
        return { done: true, value: undefined };
      },
    }),
  };
}

const TEXT: Array<[string, string]> = [['Content-Type', 'text/plain; charset=utf-8']];

/** exactlyOnce waits for the first return() call, then checks that no second one follows. */
async function exactlyOnce(p: Probe): Promise<void> {
  await until(() => p.returnCalls >= 1, 'return() to be called');
  await sleep(50);
  expect(p.returnCalls).toBe(1);
}

/** waitForSignal resolves with the reason when the signal aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener('abort', () => resolve(signal.reason), { once: true });
  });
}

/** recordEnviron is an app that keeps its environ in the probe. */
const recordEnviron = (p: Probe): App => (environ, startResponse) => {
  p.environ = environ;
  startResponse('200 OK', TEXT);
  return ['ok'];
};

/** CASES is the contract suite. */
export const CASES: Case[] = [
  // ---- lazy head ------------------------------------------------------------------------------
  {
    name: 'the head waits for the first non-empty chunk',
    spec: ['BODY-8', 'BODY-6'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield '';
        await p.gate.promise;
        yield 'first';
      })();
    },
    async run(t, p) {
      const x = await t.start({});
      expect(await x.headWithin(150)).toBeNull();
      p.gate.open();
      const r = await x.end();
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('first');
    },
  },
  {
    name: 'a body of only empty chunks sends its head at the end, and no body',
    spec: ['BODY-6', 'BODY-8'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield '';
        yield new Uint8Array(0);
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.complete).toBe(true);
      expect(r.body.length).toBe(0);
    },
  },
  // ---- exc_info ------------------------------------------------------------------------------
  {
    name: 'excInfo before the head replaces the status and headers',
    spec: ['SR-23'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['X-Planned', 'yes']]);
      return (function* () {
        try {
          throw new Error('database down');
        } catch (err) {
          startResponse('500 Internal Server Error', [['Content-Type', 'text/html']], err);
          yield '<h1>Sorry</h1>';
        }
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(500);
      expect(r.header('x-planned')).toBeUndefined();
      expect(r.header('content-type')).toBe('text/html');
      expect(r.body.toString()).toBe('<h1>Sorry</h1>');
    },
  },
  {
    name: 'excInfo after the head is rethrown, itself; the app lets it propagate and the response is cut',
    spec: ['SR-24', 'SR-25', 'ERR-4'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield 'partial';
        const err = new Error('late failure');
        try {
          startResponse('500 Internal Server Error', TEXT, err);
        } catch (again) {
          p.value = again === err;
          throw again;
        }
      })();
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('partial');
      expect(r.complete).toBe(false);
      expect(p.value).toBe(true);
    },
  },
  {
    name: 'a second startResponse without excInfo throws and changes nothing',
    spec: ['SR-22'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      try {
        startResponse('201 Created', TEXT);
        p.value = 'no error';
      } catch (err) {
        p.value = err instanceof Error;
      }
      return ['ok'];
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(p.value).toBe(true);
    },
  },
  // ---- return() exactly once --------------------------------------------------------------------
  {
    name: 'return() is called once when the body is done',
    spec: ['BODY-16', 'BODY-17'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return countingBody(p, async (n) => (n < 2 ? 'ab'[n]! : null));
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('ab');
      await exactlyOnce(p);
    },
  },
  {
    name: 'return() is called once when next() throws',
    spec: ['BODY-16', 'BODY-17', 'ERR-5'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return countingBody(p, async (n) => {
        if (n === 0) return 'a';
        throw new Error('next failed');
      });
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.complete).toBe(false);
      await exactlyOnce(p);
      expect(p.nextCalls).toBe(2);
    },
  },
  {
    name: 'return() is called once when the client goes away, and pulling stops',
    spec: ['BODY-16', 'BODY-17', 'BODY-14'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return countingBody(p, async () => {
        await sleep(2);
        return 'tick\n';
      });
    },
    async run(t, p) {
      const x = await t.start({});
      await x.bodyUntil((b) => b.includes('tick'), 'the first tick');
      x.leave();
      await exactlyOnce(p);
      const calls = p.nextCalls;
      await sleep(50);
      expect(p.nextCalls).toBe(calls);
    },
  },
  {
    name: 'HEAD pulls up to the first non-empty chunk, sends no body and calls return() once',
    spec: ['BODY-19', 'SR-20', 'BODY-16'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['X-Kind', 'head-test']]);
      return countingBody(p, async (n) => (n < 3 ? ['', 'a', 'b'][n]! : null));
    },
    async run(t, p) {
      const r = await t.send({ method: 'HEAD' });
      expect(r.status).toBe(200);
      expect(r.header('x-kind')).toBe('head-test');
      expect(r.body.length).toBe(0);
      await exactlyOnce(p);
      expect(p.nextCalls).toBe(2);
    },
  },
  {
    name: 'an exception from return() is logged and changes nothing',
    spec: ['BODY-18'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      let i = 0;
      return {
        [Symbol.iterator]: () => ({
          next: () => (i++ < 1 ? { done: false, value: 'fine' } : { done: true, value: undefined }),
          return: () => {
            throw new Error('close failed on purpose');
          },
        }),
      } as Iterable<Chunk>;
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('fine');
      expect(r.complete).toBe(true);
      await until(() => t.errors.some((e) => e.includes('close failed on purpose')), 'the return() error in nsgi.errors');
    },
  },
  // ---- backpressure, disconnect ---------------------------------------------------------------
  {
    name: 'a client that stops reading suspends the generator',
    spec: ['BODY-12', 'SR-27'],
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      const chunk = new Uint8Array(64 * 1024);
      return countingBody(p, async (n) => (n < 16 * 1024 ? chunk : null)); // up to 1 GiB
    },
    async run(t, p) {
      const x = await t.start({});
      x.pause();
      await until(() => p.pulled > 0, 'the first chunk');
      // Let the socket buffers fill, then the pulled count must stand still.
      let last = -1;
      const deadline = Date.now() + WAIT_MS;
      while (p.pulled !== last) {
        if (Date.now() > deadline) throw new Error(`the body kept being pulled: ${p.pulled} bytes`);
        last = p.pulled;
        await sleep(150);
      }
      expect(p.pulled).toBeLessThan(64 * 1024 * 1024);
      x.resume();
      await x.bodyUntil((b) => b.length > last, 'more body after resuming');
      x.leave();
      await exactlyOnce(p);
    },
  },
  {
    name: 'nsgi.signal aborts with an Error when the client goes away',
    spec: ['ENV-27', 'ENV-28'],
    app: (p) => (environ, startResponse) => {
      const write = startResponse('200 OK', TEXT);
      write.flushHead();
      return (async function* () {
        p.value = await aborted(environ['nsgi.signal']);
        yield 'never sent';
      })();
    },
    async run(t, p) {
      const x = await t.start({});
      expect(await x.headWithin(WAIT_MS)).not.toBeNull();
      x.leave();
      await until(() => p.value !== undefined, 'nsgi.signal to abort');
      expect(p.value).toBeInstanceOf(Error);
    },
  },
  {
    name: 'a FIN from the client while its response is in progress aborts nsgi.signal',
    spec: ['ENV-27'],
    wireOnly: 'a half-close needs a connection',
    app: (p) => (environ, startResponse) => {
      const write = startResponse('200 OK', TEXT);
      write.flushHead();
      return (async function* () {
        p.value = await aborted(environ['nsgi.signal']);
      })();
    },
    async run(t, p) {
      const x = await t.start({});
      expect(await x.headWithin(WAIT_MS)).not.toBeNull();
      x.halfClose();
      await until(() => p.value !== undefined, 'nsgi.signal to abort after the FIN');
      expect(p.value).toBeInstanceOf(Error);
    },
  },
  {
    name: 'a FIN while the response is in progress closes the body: return() once, even for an iterator parked in next()',
    spec: ['ENV-27', 'BODY-16'],
    wireOnly: 'a half-close needs a connection',
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      // The first chunk, then a next() that never settles: only return() can end this body.
      return countingBody(p, (n) => (n === 0 ? Promise.resolve('first\n') : new Promise<never>(() => {})));
    },
    async run(t, p) {
      const x = await t.start({});
      await x.bodyUntil((b) => b.includes('first'), 'the first chunk');
      x.halfClose();
      await exactlyOnce(p);
      await until(() => x.closed, 'the server to close the connection');
    },
  },
  // ---- request body ---------------------------------------------------------------------------
  {
    name: 'nsgi.input streams a chunked upload in order, for hashing as it arrives',
    spec: ['IN-1', 'IN-4'],
    app: () => async (environ, startResponse) => {
      const hash = createHash('sha256');
      let n = 0;
      for await (const part of environ['nsgi.input']) {
        hash.update(part);
        n += part.length;
      }
      startResponse('200 OK', TEXT);
      return [`${n} ${hash.digest('hex')}`];
    },
    async run(t) {
      const data = randomBytes(1024 * 1024);
      const x = await t.start({ method: 'POST', streamBody: true });
      for (let i = 0; i < data.length; i += 64 * 1024) {
        x.write(data.subarray(i, i + 64 * 1024));
        await sleep(1);
      }
      x.endBody();
      const r = await x.end();
      expect(r.body.toString()).toBe(`${data.length} ${createHash('sha256').update(data).digest('hex')}`);
    },
  },
  {
    name: 'Expect: 100-continue is answered at the first read of nsgi.input, not before',
    spec: ['IN-6', 'IN-7'],
    wireOnly: '100 Continue is a wire response',
    app: (p) => async (environ, startResponse) => {
      await p.gate.promise;
      const body = await environ['nsgi.input'].text();
      startResponse('200 OK', TEXT);
      return [`got ${body}`];
    },
    async run(t, p) {
      const x = await t.start({ method: 'PUT', streamBody: true, headers: [['Expect', '100-continue']] });
      await sleep(150);
      expect(x.raw()).toBe('');
      p.gate.open();
      await until(() => x.raw().startsWith('HTTP/1.1 100 Continue\r\n'), '100 Continue');
      x.write('hello');
      x.endBody();
      const r = await x.end();
      expect(r.body.toString()).toBe('got hello');
      expect(x.raw().split('100 Continue').length).toBe(2);
    },
  },
  // ---- write() and flushHead() ----------------------------------------------------------------
  {
    name: 'write() chunks go out in order before the returned body; write() after the end rejects',
    spec: ['SR-26', 'SR-27', 'SR-28'],
    app: (p) => async (_env, startResponse) => {
      const write = startResponse('200 OK', TEXT);
      p.write = write;
      await write('a');
      await write(Buffer.from('b'));
      return ['c'];
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('abc');
      await expect(p.write!('late')).rejects.toBeInstanceOf(Error);
    },
  },
  {
    name: "a write() from the body's return() after its end rejects; the response is whole without it",
    spec: ['SR-28', 'BODY-16'],
    app: (p) => (_env, startResponse) => {
      const write = startResponse('200 OK', TEXT);
      let i = 0;
      return {
        [Symbol.iterator]: () => ({
          next: (): IteratorResult<Chunk> => (i < 2 ? { done: false, value: `x${++i}` } : { done: true, value: undefined }),
          return: (): IteratorResult<Chunk> => {
            p.returnCalls++;
            const late = write('late');
            late.catch(() => {});
            p.value = late;
            return { done: true, value: undefined };
          },
        }),
      };
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('x1x2');
      expect(r.complete).toBe(true);
      await until(() => p.returnCalls === 1, 'return() to be called');
      await expect(p.value as Promise<void>).rejects.toThrow(/after the response ended/);
    },
  },
  {
    name: 'flushHead() sends the head at once; the body is then chunked',
    spec: ['SR-31', 'SR-32'],
    app: (p) => (_env, startResponse) => {
      const write = startResponse('200 OK', TEXT);
      write.flushHead();
      write.flushHead();
      return (async function* () {
        await p.gate.promise;
        yield 'late';
      })();
    },
    async run(t, p) {
      const x = await t.start({});
      const head = await x.headWithin(WAIT_MS);
      expect(head?.status).toBe(200);
      if (t.wire) expect(head?.header('transfer-encoding')).toBe('chunked');
      p.gate.open();
      const r = await x.end();
      expect(r.body.toString()).toBe('late');
      expect(r.complete).toBe(true);
    },
  },
  // ---- errors -------------------------------------------------------------------------------
  {
    name: 'an app that throws before the head gets a 500 without the message; the error is logged',
    spec: ['ERR-1', 'ERR-2', 'ERR-3'],
    app: () => () => {
      throw new Error('secret-detail-42');
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(500);
      expect(r.header('content-type')).toMatch(/^text\/plain/);
      expect(r.body.toString()).not.toContain('secret-detail-42');
      await until(() => t.errors.some((e) => e.includes('secret-detail-42') && e.includes('    at ')), 'the error and its stack in nsgi.errors');
    },
  },
  {
    name: 'a generator that fails before its first chunk gets a 500',
    spec: ['ERR-1', 'BODY-8'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield '';
        throw new Error('failed before the first chunk');
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(500);
    },
  },
  {
    name: 'a failure after the head cuts a chunked body without its last chunk',
    spec: ['ERR-4'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield 'partial';
        await sleep(5);
        throw new Error('failed mid-body');
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('partial');
      expect(r.complete).toBe(false);
      if (t.wire) expect(r.framing).toBe('chunked');
    },
  },
  {
    name: 'a failure after the head sends fewer bytes than the Content-Length',
    spec: ['ERR-4', 'SR-15'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Content-Length', '20']]);
      return (async function* () {
        yield 'partial';
        await sleep(5);
        throw new Error('failed mid-body');
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('partial');
      expect(r.complete).toBe(false);
    },
  },
  {
    name: 'a chunk that is not a string or Uint8Array is an app error: 500',
    spec: ['BODY-4', 'ERR-1'],
    violates: 'BODY-4',
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return [42 as unknown as string];
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(500);
    },
  },
  {
    name: 'write() of a chunk that is not a string or Uint8Array rejects with a TypeError; the response goes on',
    spec: ['SR-29'],
    violates: 'BODY-4',
    app: (p) => (_env, startResponse) => {
      const write = startResponse('200 OK', TEXT);
      return (async function* () {
        p.value = await write(42 as unknown as string).then(() => 'resolved', (err: unknown) => err);
        yield 'still here';
      })();
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('still here');
      expect(p.value).toBeInstanceOf(TypeError);
    },
  },
  {
    name: 'an iterator method that returns no iterator is an app error: 500, and the server carries on',
    spec: ['BODY-1', 'ERR-1'],
    violates: 'BODY-1',
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return { [Symbol.asyncIterator]: () => undefined } as unknown as Iterable<string>;
    },
    async run(t) {
      expect((await t.send({})).status).toBe(500);
      expect((await t.send({})).status).toBe(500);
    },
  },
  {
    name: 'a thenable whose then() throws is a rejection: 500, and the server carries on',
    spec: ['APP-3', 'ERR-1'],
    app: () => () =>
      ({
        then() {
          throw new Error('then() threw');
        },
      }) as unknown as Promise<string[]>,
    async run(t) {
      expect((await t.send({})).status).toBe(500);
      expect((await t.send({})).status).toBe(500);
    },
  },
  {
    name: 'a sync generator that overruns its Content-Length through write() is still closed once',
    spec: ['BODY-16', 'SR-17'],
    violates: 'SR-16',
    app: (p) => (_env, startResponse) =>
      (function* () {
        const write = startResponse('200 OK', [['Content-Length', '3']]);
        try {
          yield '';
          write('abcdef').catch(() => {});
          yield 'x';
        } finally {
          p.returnCalls++;
        }
      })(),
    async run(t, p) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('abc');
      await exactlyOnce(p);
    },
  },
  {
    name: 'a 204 head sent through write() ends the pulling: the body is closed without a next()',
    spec: ['SR-21', 'BODY-16'],
    app: (p) => (_env, startResponse) => {
      const write = startResponse('204 No Content', []);
      write('dropped').catch(() => {});
      return countingBody(p, async () => 'never pulled');
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(204);
      await exactlyOnce(p);
      expect(p.nextCalls).toBe(0);
    },
  },
  {
    name: 'write() past the Content-Length rejects; only the declared bytes are sent',
    spec: ['SR-17'],
    violates: 'SR-16',
    app: (p) => (_env, startResponse) => {
      const write = startResponse('200 OK', [['Content-Length', '3']]);
      return (async function* () {
        p.value = await write('abcdef').then(() => 'resolved', (err: unknown) => err);
      })();
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('abc');
      await until(() => p.value !== undefined, 'the write() to settle');
      expect(p.value).toBeInstanceOf(Error);
    },
  },
  {
    name: 'a whole body of one chunk for a 204 is discarded and reported',
    spec: ['SR-21'],
    app: () => (_env, startResponse) => {
      startResponse('204 No Content', []);
      return ['hello'];
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(204);
      expect(r.body.length).toBe(0);
      await until(() => t.errors.some((e) => e.includes('204')), 'the discarded chunk reported');
    },
  },
  {
    name: 'a thenable that calls back twice gives one response, its body closed once',
    spec: ['APP-3', 'BODY-17'],
    app: (p) => (_env, startResponse) =>
      ({
        then(onFulfilled: (body: AsyncIterable<Chunk>) => void) {
          startResponse('200 OK', TEXT);
          onFulfilled(countingBody(p, async (n) => (n === 0 ? 'once' : null)));
          onFulfilled(countingBody(p, async (n) => (n === 0 ? 'twice' : null)));
        },
      }) as unknown as Promise<string[]>,
    async run(t, p) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('once');
      await exactlyOnce(p);
    },
  },
  {
    name: 'a chunk before startResponse is an app error: 500',
    spec: ['BODY-9', 'BODY-11'],
    violates: 'BODY-9',
    app: () => () => ['too early'],
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(500);
    },
  },
  {
    name: 'a body that is not iterable is an app error: 500',
    spec: ['BODY-1', 'BODY-3', 'ERR-1'],
    violates: 'BODY-3',
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return 'not wrapped in an array' as unknown as string[];
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(500);
    },
  },
  // ---- framing ------------------------------------------------------------------------------
  {
    name: 'a Content-Length from the app frames the body',
    spec: ['SR-15'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Content-Length', '5']]);
      return (async function* () {
        yield 'hel';
        yield 'lo';
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.header('content-length')).toBe('5');
      expect(r.body.toString()).toBe('hello');
      expect(r.complete).toBe(true);
      if (t.wire) expect(r.framing).toBe('length');
    },
  },
  {
    name: 'a body longer than its Content-Length is cut to the declared bytes and logged',
    spec: ['SR-17', 'BODY-16'],
    violates: 'SR-16',
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Content-Length', '3']]);
      return countingBody(p, async (n) => (n === 0 ? 'abcdef' : null));
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('abc');
      await exactlyOnce(p);
      await until(() => t.errors.length > 0, 'the error in nsgi.errors');
    },
  },
  {
    name: 'a body shorter than its Content-Length is truncated and logged',
    spec: ['SR-18'],
    violates: 'SR-16',
    app: () => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Content-Length', '10']]);
      return (async function* () {
        yield 'abc';
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('abc');
      expect(r.complete).toBe(false);
      await until(() => t.errors.length > 0, 'the error in nsgi.errors');
    },
  },
  {
    name: 'an empty body against a Content-Length above 0 fails before the head: 500, logged',
    spec: ['SR-18', 'ERR-1', 'BODY-16'],
    violates: 'SR-16',
    app: (p) => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Content-Length', '10']]);
      return countingBody(p, async () => null);
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(500);
      expect(r.complete).toBe(true);
      await exactlyOnce(p);
      await until(() => t.errors.some((e) => e.includes('Content-Length')), 'the error in nsgi.errors');
    },
  },
  {
    name: 'without a Content-Length an HTTP/1.1 body is chunked',
    spec: ['SR-19', 'SRV-24'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield 'a';
        await sleep(1);
        yield 'b';
        yield 'c';
      })();
    },
    async run(t) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('abc');
      expect(r.complete).toBe(true);
      if (t.wire) expect(r.framing).toBe('chunked');
    },
  },
  {
    name: 'without a Content-Length an HTTP/1.0 body is delimited by closing',
    spec: ['SR-19', 'SRV-2'],
    wireOnly: 'HTTP versions exist only on the wire',
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return (async function* () {
        yield 'a';
        await sleep(1);
        yield 'b';
      })();
    },
    async run(t) {
      const x = await t.start({ http10: true });
      const r = await x.end();
      expect(r.framing).toBe('close');
      expect(r.body.toString()).toBe('ab');
      await until(() => x.closed, 'the server to close the connection');
    },
  },
  {
    name: 'a 204 response has no body; a chunk is discarded and reported, and return() called',
    spec: ['SR-20', 'SR-21'],
    app: (p) => (_env, startResponse) => {
      startResponse('204 No Content', [['X-Kind', 'empty']]);
      return countingBody(p, async (n) => (n < 3 ? 'oops' : null));
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(204);
      expect(r.body.length).toBe(0);
      expect(r.header('x-kind')).toBe('empty');
      await exactlyOnce(p);
      expect(p.nextCalls).toBe(1);
      await until(() => t.errors.some((e) => e.includes('204')), 'the discarded chunk reported');
    },
  },
  {
    name: 'a 205 response has no content and no nonzero Content-Length; a chunk is discarded and reported',
    spec: ['SR-20', 'SR-21'],
    app: (p) => (_env, startResponse) => {
      startResponse('205 Reset Content', [['Content-Length', '4']]);
      return countingBody(p, async (n) => (n < 3 ? 'oops' : null));
    },
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(205);
      expect(r.body.length).toBe(0);
      expect(r.header('content-length') ?? '0').toBe('0');
      await exactlyOnce(p);
      await until(() => t.errors.some((e) => e.includes('205')), 'the discarded chunk reported');
    },
  },
  {
    name: 'a body with both iterator methods is iterated asynchronously',
    spec: ['BODY-2'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', TEXT);
      return {
        *[Symbol.iterator]() {
          yield 'sync';
        },
        async *[Symbol.asyncIterator]() {
          yield 'async';
        },
      };
    },
    async run(t) {
      const r = await t.send({});
      expect(r.body.toString()).toBe('async');
    },
  },
  // ---- headers ------------------------------------------------------------------------------
  {
    name: 'repeated response fields stay separate field lines, in order',
    spec: ['SR-8'],
    app: () => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Set-Cookie', 'a=1'], ['X-Multi', 'one'], ['Set-Cookie', 'b=2'], ['X-Multi', 'two']]);
      return ['ok'];
    },
    async run(t) {
      const r = await t.send({});
      const lines = r.headers.filter(([n]) => /^(set-cookie|x-multi)$/i.test(n)).map(([n, v]) => `${n.toLowerCase()}: ${v}`);
      expect(lines).toEqual(['set-cookie: a=1', 'x-multi: one', 'set-cookie: b=2', 'x-multi: two']);
    },
    deviations: {
      'fetch round trip (fromFetch(toFetch(app)) on nsgi)': {
        reason: 'a fetch Headers object joins repeated fields with ", " and sorts names; only Set-Cookie stays separate',
        async run(t) {
          const r = await t.send({});
          expect(r.headers.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)).toEqual(['a=1', 'b=2']);
          expect(r.header('x-multi')).toBe('one, two');
        },
      },
      [H2_TARGET]: {
        reason: "node:http2's compatibility API takes a head as an object (Node 20): each repeated field stays separate lines in order, but lines are grouped by name",
        async run(t) {
          const r = await t.send({});
          const lines = r.headers.filter(([n]) => /^(set-cookie|x-multi)$/.test(n)).map(([n, v]) => `${n}: ${v}`);
          expect(lines.filter((l) => l.startsWith('set-cookie'))).toEqual(['set-cookie: a=1', 'set-cookie: b=2']);
          expect(lines.filter((l) => l.startsWith('x-multi'))).toEqual(['x-multi: one', 'x-multi: two']);
        },
      },
    },
  },
  {
    name: 'hop-by-hop fields from the app are not sent; Connection: close is honoured',
    spec: ['SR-9', 'SR-10'],
    warns: 'SR-11',
    wireOnly: 'connections exist only on the wire',
    app: () => (_env, startResponse) => {
      startResponse('200 OK', [...TEXT, ['Keep-Alive', 'timeout=99'], ['Upgrade', 'nonsense'], ['Connection', 'close'], ['Content-Length', '2']]);
      return ['ok'];
    },
    async run(t) {
      const x = await t.start({});
      const r = await x.end();
      expect(r.body.toString()).toBe('ok');
      expect(r.header('keep-alive')).toBeUndefined();
      expect(r.header('upgrade')).toBeUndefined();
      expect(r.header('connection')).toBe('close');
      await until(() => x.closed, 'the server to close the connection');
    },
  },
  {
    name: "a 426 carries the app's Upgrade, with the upgrade connection option",
    spec: ['SR-9', 'SR-11'],
    app: () => (_env, startResponse) => {
      startResponse('426 Upgrade Required', [...TEXT, ['Upgrade', 'websocket'], ['Content-Length', '2']]);
      return ['no'];
    },
    async run(t) {
      const r = await t.send({});
      expect(r.status).toBe(426);
      expect(r.header('upgrade')).toBe('websocket');
      // In memory there is no connection to carry the option.
      if (t.wire) expect(r.header('connection')?.toLowerCase()).toMatch(/(^|, *)upgrade($|,)/);
      expect(r.body.toString()).toBe('no');
    },
    deviations: {
      [H2_TARGET]: {
        reason: 'HTTP/2 forbids Upgrade and Connection in a response (RFC 9113 §8.2.2): the 426 goes without them',
        async run(t) {
          const r = await t.send({});
          expect(r.status).toBe(426);
          expect(r.header('upgrade')).toBeUndefined();
          expect(r.header('connection')).toBeUndefined();
          expect(r.body.toString()).toBe('no');
        },
      },
    },
  },
  // ---- environ ------------------------------------------------------------------------------
  {
    name: 'the environ carries the target, decoded path, raw query and headers as received',
    spec: ['ENV-4', 'ENV-5', 'ENV-9', 'ENV-11', 'ENV-13', 'ENV-23'],
    app: recordEnviron,
    run: (t, p) => environAsReceived(t, p, 'X-Mixed-Case'),
    deviations: {
      'fetch round trip (fromFetch(toFetch(app)) on nsgi)': {
        reason: 'a fetch Request keeps headers in a Headers object: names lower-cased and sorted, repeated fields joined',
        async run(t, p) {
          await t.send({ path: '/caf%C3%A9/a%2Fb?x=%20+1', headers: [['X-Mixed-Case', 'v'], ['Cookie', 'a=1'], ['Cookie', 'b=2']] });
          const e = p.environ!;
          expect(e.PATH_INFO).toBe('/café/a/b');
          expect(e.QUERY_STRING).toBe('x=%20+1');
          expect(e.HTTP_COOKIE).toBe('a=1; b=2');
          expect(e['nsgi.headers']).toContainEqual(['x-mixed-case', 'v']);
        },
      },
      [H2_TARGET]: {
        reason: 'HTTP/2 field names are lower-case on the wire (RFC 9113 §8.2.1), so nsgi.headers has them so',
        run: (t, p) => environAsReceived(t, p, 'x-mixed-case'),
      },
      'testing.ts (toFetch, in memory)': {
        reason: 'testing.ts builds a fetch Request: header names lower-cased and sorted, repeated fields joined',
        async run(t, p) {
          await t.send({ path: '/caf%C3%A9/a%2Fb?x=%20+1', headers: [['X-Mixed-Case', 'v'], ['Cookie', 'a=1'], ['Cookie', 'b=2']] });
          const e = p.environ!;
          expect(e.PATH_INFO).toBe('/café/a/b');
          expect(e.REQUEST_URI).toBe('/caf%C3%A9/a%2Fb?x=%20+1');
          expect(e.HTTP_COOKIE).toBe('a=1; b=2');
          expect(e['nsgi.headers']).toContainEqual(['x-mixed-case', 'v']);
        },
      },
    },
  },
  {
    name: 'dot-segments and repeated slashes stay in PATH_INFO',
    spec: ['ENV-20'],
    app: recordEnviron,
    async run(t, p) {
      await t.send({ path: '/a/./b/../c//d' });
      expect(p.environ!.PATH_INFO).toBe('/a/./b/../c//d');
      expect(p.environ!.REQUEST_URI).toBe('/a/./b/../c//d');
    },
    deviations: {
      'fetch round trip (fromFetch(toFetch(app)) on nsgi)': {
        reason: 'the WHATWG URL of a fetch Request removes dot-segments (repeated slashes stay)',
        async run(t, p) {
          await t.send({ path: '/a/./b/../c//d' });
          expect(p.environ!.PATH_INFO).toBe('/a/c//d');
        },
      },
    },
  },
];
