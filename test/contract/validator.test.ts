/**
 * The validator: one failing test per rule it checks, each asserting the rule id in the error, and
 * a clean pass for every example app served through validate() by the real server.
 *
 * App-side rules are shown with real apps. Server-side rules need a server that breaks them, so
 * those tests drive the validated app with {@link drive}, a deliberately small server made of
 * plain function calls whose faults each test chooses; no socket is involved in either case.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Body, Chunk, Environ, HeaderList, Input, StartResponse, Write } from '../../protocol/nsgi.ts';
import { testing, validate, ValidationError } from '../../src/index.ts';
import { app as clock } from '../../examples/clock.ts';
import { app as demo } from '../../examples/demo.ts';
import { app as errorsApp } from '../../examples/errors.ts';
import { app as hello } from '../../examples/hello.ts';
import { app as streamApp } from '../../examples/stream.ts';
import { app as upload } from '../../examples/upload.ts';
import { RawClient, cleanup, finalResponses, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

// ---- a small server whose faults the tests choose ----------------------------------------------

/** inputOf is an nsgi.input over fixed chunks that keeps IN-2. */
function inputOf(chunks: unknown[] = []): Input {
  let iterated = false;
  const input: Input = {
    [Symbol.asyncIterator]() {
      if (iterated) throw new TypeError('iterated twice');
      iterated = true;
      let i = 0;
      return {
        next: async () => (i < chunks.length ? { done: false, value: chunks[i++] as Uint8Array } : { done: true, value: undefined }),
        return: async () => ({ done: true, value: undefined }),
      };
    },
    async bytes() {
      return Buffer.alloc(0);
    },
    async text() {
      return '';
    },
  };
  return input;
}

/** environ is a valid environ for `GET /`, with `patch` applied (a key set to DELETE is removed). */
function environ(patch: Record<string, unknown> = {}, errors: string[] = []): Environ {
  const e: Environ = {
    REQUEST_METHOD: 'GET',
    SCRIPT_NAME: '',
    PATH_INFO: '/',
    QUERY_STRING: '',
    REQUEST_URI: '/',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '80',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
    REMOTE_PORT: '50000',
    HTTP_HOST: 'localhost',
    'nsgi.version': [1, 0],
    'nsgi.url_scheme': 'http',
    'nsgi.input': inputOf(),
    'nsgi.errors': { write: (m) => void errors.push(m) },
    'nsgi.signal': new AbortController().signal,
    'nsgi.headers': [['Host', 'localhost']],
    'nsgi.multithread': false,
    'nsgi.multiprocess': false,
    'nsgi.run_once': false,
  };
  for (const [k, v] of Object.entries(patch)) {
    if (v === DELETE) delete e[k];
    else e[k] = v;
  }
  return e;
}

const DELETE = Symbol('delete');

/** A minimal correct startResponse: records the call; with excInfo after `sent`, rethrows it. */
function recorder(): { startResponse: StartResponse; sent: () => void; calls: number } {
  let headSent = false;
  const state = {
    calls: 0,
    sent: () => void (headSent = true),
    startResponse: ((status: string, headers: HeaderList, excInfo?: unknown): Write => {
      if (excInfo !== undefined && headSent) throw excInfo;
      state.calls++;
      const write = (async () => {}) as unknown as Write;
      write.flushHead = () => void (headSent = true);
      return write;
    }) as StartResponse,
  };
  return state;
}

/** drive serves one request like a correct server: call, pull every chunk, close. It returns what it collected. */
async function drive(app: App, env: Environ = environ()): Promise<string> {
  const r = recorder();
  const body = await app(env, r.startResponse);
  const out: string[] = [];
  const asyncFn = (body as AsyncIterable<Chunk>)[Symbol.asyncIterator];
  const it = (typeof asyncFn === 'function' ? asyncFn.call(body) : (body as Iterable<Chunk>)[Symbol.iterator]()) as AsyncIterator<Chunk>;
  try {
    for (;;) {
      const step = await it.next();
      if (step.done) break;
      if (step.value.length > 0) r.sent();
      out.push(typeof step.value === 'string' ? step.value : Buffer.from(step.value).toString());
    }
  } finally {
    await it.return?.();
  }
  return out.join('');
}

/** rejectsWith asserts that `p` rejects with a ValidationError for rule `id`. */
async function rejectsWith(id: string, p: Promise<unknown> | (() => unknown)): Promise<ValidationError> {
  let error: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    error = err;
  }
  expect(error, `expected a ValidationError for ${id}`).toBeInstanceOf(ValidationError);
  const v = error as ValidationError;
  expect(v.message).toContain(`[${id}]`);
  expect(v.rule).toBe(id);
  expect(v.message).toMatch(/\(SPEC §\d+(\.\d+)?\)/);
  return v;
}

const ok: App = (_env, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['ok'];
};

const okWith = (status: string, headers: HeaderList, body: Body = ['ok']): App => (_env, startResponse) => {
  startResponse(status, headers);
  return body;
};

describe('ValidationError', () => {
  it('names the rule and its section, quotes the value and suggests the fix', async () => {
    const v = await rejectsWith('SR-5', drive(validate(okWith('200 OK', [['X-Note', 'a\r\nb']]))));
    expect(v.message).toBe(
      '[SR-5] (SPEC §4.2) value of header "X-Note" contains CR, LF, NUL, another control character or a character above U+00FF: "a\\r\\nb"; remove line breaks and encode non-latin-1 text (RFC 8187 for filenames)',
    );
    expect(v.section).toBe('4.2');
    expect(v.party).toBe('app');
  });

  it('passes a valid app through unchanged', async () => {
    expect(await drive(validate(ok))).toBe('ok');
  });
});

describe('the environ (server side)', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['ENV-1', { REQUEST_METHOD: 42 }],
    ['ENV-2', { CONTENT_TYPE: undefined }],
    ['ENV-4', { REQUEST_URI: '/?a=1', QUERY_STRING: 'a=2' }],
    ['ENV-5', { REQUEST_URI: '/a b' }],
    ['ENV-6', { CONTENT_LENGTH: '5' }],
    ['ENV-7', { SERVER_NAME: 'elsewhere' }],
    ['ENV-8', { SERVER_PROTOCOL: 'HTTP/3' }],
    ['ENV-9', { 'nsgi.headers': [['Host', 'localhost'], ['Accept', '*/*']] }],
    ['ENV-10', { HTTP_CONTENT_TYPE: 'text/plain', CONTENT_TYPE: 'text/plain', 'nsgi.headers': [['Host', 'localhost'], ['Content-Type', 'text/plain']] }],
    ['ENV-11', { HTTP_ACCEPT: 'a', 'nsgi.headers': [['Host', 'localhost'], ['Accept', 'a'], ['Accept', 'b']] }],
    ['ENV-12', { HTTP_X_USER: 'root', 'nsgi.headers': [['Host', 'localhost'], ['X_User', 'root']] }],
    ['ENV-13', { REQUEST_URI: '/caf%C3%A9', PATH_INFO: '/caf%C3%A9' }],
    ['ENV-15', { REQUEST_URI: '/caf%C3%A9', PATH_INFO: '/caf\u00c3\u00a9' }],
    ['ENV-16', { REQUEST_URI: '*', REQUEST_METHOD: 'OPTIONS', PATH_INFO: '/' }],
    ['ENV-18', { PATH_INFO: 'a', REQUEST_URI: '/a' }],
    ['ENV-19', { SCRIPT_NAME: '/app/', PATH_INFO: 'x', REQUEST_URI: '/app/x' }],
    ['ENV-20', { REQUEST_URI: '/a/../b', PATH_INFO: '/b' }],
    ['ENV-21', { 'nsgi.version': [1, 1] }],
    ['ENV-22', { 'nsgi.url_scheme': 'ftp' }],
    ['ENV-23', { 'nsgi.headers': [['Host', ' localhost']] }],
    ['ENV-26', { 'nsgi.mine': 1 }],
    ['EXT-2', { 'nsgi.early_hints': true }],
  ];
  for (const [id, patch] of cases) {
    it(`${id}: reports ${JSON.stringify(patch).slice(0, 90)}`, async () => {
      const v = await rejectsWith(id, () => validate(ok)(environ(patch), recorder().startResponse));
      expect(v.party).toBe('server');
    });
  }

  it('ENV-1: reports a missing required key', async () => {
    await rejectsWith('ENV-1', () => validate(ok)(environ({ REMOTE_ADDR: DELETE }), recorder().startResponse));
  });

  it('ENV-28: reports a signal aborted with a reason that is not an Error, through nsgi.errors', async () => {
    const errors: string[] = [];
    const controller = new AbortController();
    const app = validate((_env, startResponse) => {
      startResponse('200 OK', []);
      return ['x'];
    });
    app(environ({ 'nsgi.signal': controller.signal }, errors), recorder().startResponse);
    controller.abort('just a string');
    expect(errors.join('\n')).toContain('[ENV-28]');
  });

  it('BODY-16: reports a server that leaves the iterator open after the client left', async () => {
    const errors: string[] = [];
    const controller = new AbortController();
    const app = validate(okWith('200 OK', [], ['a', 'b']), { closeTimeout: 20 });
    const body = (await app(environ({ 'nsgi.signal': controller.signal }, errors), recorder().startResponse)) as Iterable<Chunk>;
    body[Symbol.iterator]().next();
    controller.abort(new Error('client gone'));
    await waitUntil(() => errors.some((e) => e.includes('[BODY-16]')), 'a BODY-16 report', 1000);
  });
});

describe('the app and its body (app side)', () => {
  it('APP-1: refuses an app that is not a function', () => {
    expect(() => validate({ call: ok } as unknown as App)).toThrow(/\[APP-1\]/);
  });

  it('APP-1: reports an app that returns nothing', async () => {
    await rejectsWith('APP-1', drive(validate((() => undefined) as unknown as App)));
  });

  it('BODY-1: reports a body that is not iterable', async () => {
    await rejectsWith('BODY-1', drive(validate(okWith('200 OK', [], { chunks: ['a'] } as unknown as Body))));
  });

  it('BODY-3: reports a string returned as the body itself', async () => {
    await rejectsWith('BODY-3', drive(validate(okWith('200 OK', [], 'hello' as unknown as Body))));
  });

  it('BODY-4: reports a chunk that is a number', async () => {
    await rejectsWith('BODY-4', drive(validate(okWith('200 OK', [], [42 as unknown as Chunk]))));
  });

  it('BODY-4: reports a write() of an ArrayBuffer', async () => {
    const app: App = async (_env, startResponse) => {
      const write = startResponse('200 OK', []);
      await write(new ArrayBuffer(4) as unknown as Chunk);
      return [];
    };
    await rejectsWith('BODY-4', drive(validate(app)));
  });

  it('BODY-7: reports a chunk changed after it was yielded', async () => {
    const app: App = (_env, startResponse) => {
      startResponse('200 OK', []);
      return (function* () {
        const buf = Buffer.from('aaaa');
        yield buf;
        buf.fill(0x62);
        yield buf;
      })();
    };
    await rejectsWith('BODY-7', drive(validate(app)));
  });

  it('BODY-9: reports a chunk before startResponse', async () => {
    await rejectsWith('BODY-9', drive(validate(() => ['early'])));
  });

  it('BODY-10: reports a body that ends without startResponse', async () => {
    await rejectsWith('BODY-10', drive(validate(() => [])));
  });

  it('SR-1: reports a malformed status', async () => {
    await rejectsWith('SR-1', drive(validate(okWith('200OK', []))));
  });

  it('SR-2: reports a status outside 200-599', async () => {
    await rejectsWith('SR-2', drive(validate(okWith('101 Switching Protocols', []))));
  });

  it('SR-3: reports a header value that is a number', async () => {
    await rejectsWith('SR-3', drive(validate(okWith('200 OK', [['Content-Length', 2 as unknown as string]]))));
  });

  it('SR-4: reports a header name that is not a token', async () => {
    await rejectsWith('SR-4', drive(validate(okWith('200 OK', [['X Bad', 'v']]))));
  });

  it('SR-5: reports a header value above U+00FF', async () => {
    await rejectsWith('SR-5', drive(validate(okWith('200 OK', [['X-Name', 'Łódź']]))));
  });

  it('SR-6: reports two different Content-Length values', async () => {
    await rejectsWith('SR-6', drive(validate(okWith('200 OK', [['Content-Length', '2'], ['Content-Length', '3']]))));
  });

  it('SR-11: warns of a hop-by-hop field, once, and lets the response through (a SHOULD)', async () => {
    const errors: string[] = [];
    const headers: Array<[string, string]> = [['Keep-Alive', 'timeout=5'], ['Connection', 'Keep-Alive, Close']];
    expect(await drive(validate(okWith('200 OK', headers)), environ({}, errors))).toBe('ok');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^nsgi validator warning: \[SR-11\] \(SPEC §4\.2\) .*Keep-Alive/);
  });

  it('SR-14: reports Transfer-Encoding from the app', async () => {
    await rejectsWith('SR-14', drive(validate(okWith('200 OK', [['Transfer-Encoding', 'chunked']]))));
  });

  it('SR-16: reports a body longer than its Content-Length', async () => {
    await rejectsWith('SR-16', drive(validate(okWith('200 OK', [['Content-Length', '1']], ['ab']))));
  });

  it('SR-16: reports a body shorter than its Content-Length', async () => {
    await rejectsWith('SR-16', drive(validate(okWith('200 OK', [['Content-Length', '5']], ['ab']))));
  });

  it('SR-22: reports a second startResponse without excInfo', async () => {
    const app: App = (_env, startResponse) => {
      startResponse('200 OK', []);
      startResponse('404 Not Found', []);
      return [];
    };
    await rejectsWith('SR-22', drive(validate(app)));
  });

  it('SR-30: warns of a write() not awaited before the next, and passes the write on (a SHOULD)', async () => {
    const app: App = (_env, startResponse) => {
      const write = startResponse('200 OK', []);
      void write('a');
      void write('b');
      void write('c');
      return [];
    };
    const written: string[] = [];
    const slowWrite = (((chunk: string) => {
      written.push(chunk);
      return new Promise<void>(() => {});
    }) as unknown) as Write;
    slowWrite.flushHead = () => {};
    const errors: string[] = [];
    await validate(app)(environ({}, errors), () => slowWrite);
    expect(written).toEqual(['a', 'b', 'c']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^nsgi validator warning: \[SR-30\]/);
  });

  it('IN-3: reports a second read of nsgi.input while one is pending', async () => {
    const slowInput: Input = {
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Uint8Array>>(() => {}) }),
      bytes: async () => Buffer.alloc(0),
      text: async () => '',
    };
    const app: App = async (env) => {
      const it = env['nsgi.input'][Symbol.asyncIterator]();
      void it.next();
      await it.next();
      return [];
    };
    await rejectsWith('IN-3', drive(validate(app), environ({ 'nsgi.input': slowInput })));
  });

  it('EXT-12: reports set_trailers called after the body ended', async () => {
    const env = environ({ 'nsgi.set_trailers': () => true });
    let setTrailers: ((t: HeaderList) => boolean) | undefined;
    const app: App = (e, startResponse) => {
      setTrailers = e['nsgi.set_trailers'];
      startResponse('200 OK', []);
      return ['x'];
    };
    await drive(validate(app), env);
    await rejectsWith('EXT-12', () => setTrailers!([['Digest', 'x']]));
  });
});

describe('what the server does with the app (server side)', () => {
  it('BODY-2: reports a server that iterates a two-way body synchronously', async () => {
    const app = validate(okWith('200 OK', [], { *[Symbol.iterator]() { yield 'a'; }, async *[Symbol.asyncIterator]() { yield 'a'; } } as unknown as Body));
    const body = (await app(environ(), recorder().startResponse)) as Iterable<Chunk>;
    await rejectsWith('BODY-2', () => body[Symbol.iterator]());
  });

  it('BODY-13: reports next() called before the previous one settled', async () => {
    const app = validate(okWith('200 OK', [], (async function* () { yield 'a'; yield 'b'; })()));
    const it = ((await app(environ(), recorder().startResponse)) as AsyncIterable<Chunk>)[Symbol.asyncIterator]();
    const first = it.next();
    await rejectsWith('BODY-13', it.next());
    await first;
  });

  it('BODY-14: reports next() after the iterator returned done', async () => {
    const app = validate(okWith('200 OK', [], ['a']));
    const it = ((await app(environ(), recorder().startResponse)) as Iterable<Chunk>)[Symbol.iterator]();
    it.next();
    it.next();
    await rejectsWith('BODY-14', () => it.next());
  });

  it('BODY-17: reports return() called twice', async () => {
    const app = validate(okWith('200 OK', [], ['a']));
    const it = ((await app(environ(), recorder().startResponse)) as Iterable<Chunk>)[Symbol.iterator]();
    it.next();
    it.return!();
    await rejectsWith('BODY-17', () => it.return!());
  });

  it('BODY-19: reports a HEAD request pulled past its first non-empty chunk', async () => {
    const app = validate(okWith('200 OK', [], (async function* () { yield 'a'; yield 'b'; })()));
    const it = ((await app(environ({ REQUEST_METHOD: 'HEAD' }), recorder().startResponse)) as AsyncIterable<Chunk>)[Symbol.asyncIterator]();
    await it.next();
    await rejectsWith('BODY-19', it.next());
  });

  it('SR-23: reports excInfo rethrown although no head was sent', async () => {
    const app: App = (_env, startResponse) => {
      startResponse('200 OK', []);
      startResponse('500 Internal Server Error', [], new Error('caught'));
      return [];
    };
    const alwaysRethrows: StartResponse = (_s, _h, excInfo) => {
      if (excInfo !== undefined) throw excInfo;
      return recorder().startResponse('200 OK', []);
    };
    await rejectsWith('SR-23', () => validate(app)(environ(), alwaysRethrows));
  });

  it('SR-24: reports excInfo accepted after the head was sent', async () => {
    const app: App = (_env, startResponse) => {
      const write = startResponse('200 OK', []);
      write.flushHead();
      startResponse('500 Internal Server Error', [], new Error('late'));
      return [];
    };
    const neverRethrows: StartResponse = () => {
      const write = (async () => {}) as unknown as Write;
      write.flushHead = () => {};
      return write;
    };
    await rejectsWith('SR-24', () => validate(app)(environ(), neverRethrows));
  });

  it('SR-28: reports a write() after the body ended that resolves, through nsgi.errors', async () => {
    const errors: string[] = [];
    let write: Write | undefined;
    const app: App = (_env, startResponse) => {
      write = startResponse('200 OK', []);
      return ['a'];
    };
    await drive(validate(app), environ({}, errors));
    await write!('late');
    await waitUntil(() => errors.some((e) => e.includes('[SR-28]')), 'an SR-28 report', 1000);
  });

  it('IN-1: reports an input chunk that is not a Uint8Array', async () => {
    const app: App = async (env, startResponse) => {
      await env['nsgi.input'].bytes();
      startResponse('200 OK', []);
      return [];
    };
    await rejectsWith('IN-1', drive(validate(app), environ({ 'nsgi.input': inputOf(['text']) })));
  });

  it('IN-2: reports an input that can be iterated twice', async () => {
    const twice: Input = {
      [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }),
      bytes: async () => Buffer.alloc(0),
      text: async () => '',
    };
    const app: App = (env) => {
      env['nsgi.input'][Symbol.asyncIterator]();
      env['nsgi.input'][Symbol.asyncIterator]();
      return [];
    };
    await rejectsWith('IN-2', () => validate(app)(environ({ 'nsgi.input': twice }), recorder().startResponse));
  });

  it('EXT-6: reports early hints that throw after the head was sent', async () => {
    const app: App = (env, startResponse) => {
      startResponse('200 OK', []).flushHead();
      env['nsgi.early_hints']!([['Link', '</a.css>; rel=preload']]);
      return [];
    };
    const hints = (): void => {
      throw new Error('too late');
    };
    await rejectsWith('EXT-6', () => validate(app)(environ({ 'nsgi.early_hints': hints }), recorder().startResponse));
  });

  it('EXT-7: reports early hints that accept a bad field', async () => {
    const app: App = (env) => {
      env['nsgi.early_hints']!([['Link', 'a\nb']]);
      return [];
    };
    await rejectsWith('EXT-7', () => validate(app)(environ({ 'nsgi.early_hints': () => {} }), recorder().startResponse));
  });

  it('EXT-9: reports set_trailers returning true for a response with a Content-Length', async () => {
    const app: App = (env, startResponse) => {
      startResponse('200 OK', [['Content-Length', '1']]);
      env['nsgi.set_trailers']!([['Digest', 'x']]);
      return ['a'];
    };
    await rejectsWith('EXT-9', () => validate(app)(environ({ 'nsgi.set_trailers': () => true }), recorder().startResponse));
  });

  it('EXT-11: reports set_trailers that accept a bad field', async () => {
    const app: App = (env, startResponse) => {
      startResponse('200 OK', []);
      env['nsgi.set_trailers']!([['Bad Name', 'x']]);
      return ['a'];
    };
    await rejectsWith('EXT-11', () => validate(app)(environ({ 'nsgi.set_trailers': () => false }), recorder().startResponse));
  });
});

describe('the validator keeps the contract itself', () => {
  it('ENV-25: adds no key of its own to the environ it passes down', async () => {
    const given = environ();
    let seen: Environ | null = null;
    const app: App = (e, startResponse) => {
      seen = e;
      startResponse('200 OK', []);
      return [];
    };
    await drive(validate(app), given);
    expect(Object.keys(seen!).filter((key) => !(key in given))).toEqual([]);
  });

  it('BODY-20: keeps a sync body sync and lazy, and forwards return() once', async () => {
    let pulled = 0;
    let closed = 0;
    const inner: Iterable<Chunk> = {
      [Symbol.iterator]: () => ({
        next: () => (pulled++ < 3 ? { done: false, value: 'x' } : { done: true, value: undefined }),
        return: () => {
          closed++;
          return { done: true, value: undefined };
        },
      }),
    };
    const body = (await validate(okWith('200 OK', [], inner))(environ(), recorder().startResponse)) as Iterable<Chunk>;
    expect(typeof (body as Partial<AsyncIterable<Chunk>>)[Symbol.asyncIterator]).toBe('undefined');
    expect(pulled).toBe(0);
    const it = body[Symbol.iterator]();
    expect(it.next()).toEqual({ done: false, value: 'x' });
    it.return!();
    expect(closed).toBe(1);
  });

  it('passes excInfo through: a replacement before the head, a rethrow after it (errors example, over TCP)', async () => {
    const { url, errors } = await startServer(validate(errorsApp));
    const early = await fetch(`${url}/`);
    expect(early.status).toBe(500);
    await early.text();
    const late = await fetch(`${url}/late`);
    expect(late.status).toBe(200);
    await expect(late.text()).rejects.toThrow();
    expect(errors.filter((e) => e.includes('ValidationError'))).toEqual([]);
  });

  it('reports a violation through testing.ts as a 500 whose log names the rule', async () => {
    const res = await testing.request(validate(okWith('200 OK', [['Transfer-Encoding', 'chunked']])));
    expect(res.status).toBe(500);
    expect(res.errors.join('\n')).toContain('[SR-14] (SPEC §4.3)');
  });

  it('ENV-7: accepts a Host of only a port, for which the server names itself, over TCP', async () => {
    const { port, errors } = await startServer(validate(okWith('200 OK', [['Content-Type', 'text/plain']])));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: :80\n\n');
    const data = await client.waitForResponses(1);
    expect(data.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    expect(errors.filter((e) => e.includes('validator'))).toEqual([]);
  });
});

describe('every example passes the validator on the real server', () => {
  const clean = (errors: string[]): string[] => errors.filter((e) => e.includes('ValidationError') || e.includes('nsgi validator'));

  it('hello', async () => {
    const { url, errors } = await startServer(validate(hello));
    const res = await fetch(`${url}/user/1`);
    expect(await res.text()).toBe('Request GET /user/1 has been processed\n');
    expect(clean(errors)).toEqual([]);
  });

  it('stream', async () => {
    const { url, errors } = await startServer(validate(streamApp));
    const res = await fetch(`${url}/?mb=2`);
    expect((await res.arrayBuffer()).byteLength).toBe(2 * 1024 * 1024);
    expect((await fetch(`${url}/?mb=x`)).status).toBe(400);
    expect(clean(errors)).toEqual([]);
  });

  it('stream, with a client that leaves early', async () => {
    const { port, errors } = await startServer(validate(streamApp));
    const client = await RawClient.connect(port);
    client.write('GET /?mb=64 HTTP/1.1\nHost: t\n\n');
    await client.waitFor((d) => d.length > 256 * 1024, '256 KiB of body');
    client.destroy();
    await waitUntil(() => errors.some((e) => e.startsWith('stream: stopped early')), 'the generator to be closed');
    expect(clean(errors)).toEqual([]);
  });

  it('clock', async () => {
    const { url, errors } = await startServer(validate(clock));
    const res = await fetch(`${url}/?n=1`);
    expect(await res.text()).toMatch(/^\d{4}-\d\d-\d\dT.*Z\n$/);
    expect((await fetch(`${url}/?n=zero`)).status).toBe(400);
    expect(clean(errors)).toEqual([]);
  });

  it('upload', async () => {
    const { url, errors } = await startServer(validate(upload));
    const data = randomBytes(300 * 1024);
    const res = await fetch(url, { method: 'POST', body: data });
    expect(await res.json()).toEqual({ bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    expect((await fetch(url)).status).toBe(200);
    expect((await fetch(url, { method: 'DELETE' })).status).toBe(405);
    expect(clean(errors)).toEqual([]);
  });

  it('errors', async () => {
    const { url, errors } = await startServer(validate(errorsApp));
    expect((await fetch(`${url}/`)).status).toBe(500);
    const late = await fetch(`${url}/late`);
    await expect(late.text()).rejects.toThrow();
    expect(clean(errors)).toEqual([]);
  });

  it('demo, every mounted example and the index', async () => {
    const { url, port, errors } = await startServer(validate(demo));
    expect((await fetch(`${url}/`)).status).toBe(200);
    expect(await (await fetch(`${url}/hello/user/1`)).text()).toBe('Request GET /user/1 has been processed\n');
    expect((await (await fetch(`${url}/stream?mb=1`)).arrayBuffer()).byteLength).toBe(1024 * 1024);
    expect((await fetch(`${url}/clock?n=0`)).status).toBe(200);
    expect((await fetch(`${url}/upload`, { method: 'POST', body: 'abc' })).status).toBe(200);
    expect((await fetch(`${url}/errors`)).status).toBe(500);
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    const head = await RawClient.connect(port);
    head.write('HEAD /hello/user/1 HTTP/1.1\nHost: t\n\n');
    await head.waitFor((d) => finalResponses(d, { noBody: () => true }).length === 1, 'the HEAD response');
    expect(clean(errors)).toEqual([]);
  });
});
