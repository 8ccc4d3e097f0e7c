/**
 * testing.ts: apps run against in-memory requests, collected whole with `request()` or read chunk
 * by chunk with `open()`, keeping the same contract as the server (lazy head, exc_info, return()).
 */
import { describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { testing, validate } from '../../src/index.ts';
import { app as hello } from '../../examples/hello.ts';
import { app as upload } from '../../examples/upload.ts';

describe('request()', () => {
  it('collects status, headers in order and body, with text() and json()', async () => {
    const app: App = (e, startResponse) => {
      startResponse('201 Created', [['Content-Type', 'application/json'], ['X-B', '2'], ['X-A', '1']]);
      return [JSON.stringify({ path: e.PATH_INFO, q: e.QUERY_STRING })];
    };
    const res = await testing.request(app, { path: '/items?x=1', method: 'POST' });
    expect(res.status).toBe(201);
    expect(res.statusText).toBe('Created');
    expect(res.headerList).toEqual([['Content-Type', 'application/json'], ['X-B', '2'], ['X-A', '1']]);
    expect(res.headers.get('x-a')).toBe('1');
    expect(res.json()).toEqual({ path: '/items', q: 'x=1' });
    expect(res.truncated).toBe(false);
  });

  it('runs the examples', async () => {
    expect((await testing.request(hello, { path: '/user/1' })).text()).toBe('Request GET /user/1 has been processed\n');
    const res = await testing.request(validate(upload), { method: 'PUT', body: 'abc' });
    expect(res.json()).toEqual({ bytes: 3, sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' });
  });

  it('streams an async iterable request body', async () => {
    async function* parts(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('ab');
      yield Buffer.from('cd');
    }
    const res = await testing.request(upload, { method: 'POST', body: parts() });
    expect(res.json<{ bytes: number }>().bytes).toBe(4);
  });

  it('ERR-1, ERR-4: gives a 500 for an error before the head and logs it; marks a cut body truncated', async () => {
    const app: App = (e, startResponse) => {
      startResponse('200 OK', []);
      return (function* () {
        if (e.PATH_INFO === '/early') throw new Error('early failure');
        yield 'part';
        throw new Error('late failure');
      })();
    };
    const early = await testing.request(app, { path: '/early' });
    expect(early.status).toBe(500);
    expect(early.errors.join('\n')).toContain('early failure');
    const late = await testing.request(app, { path: '/late' });
    expect(late.status).toBe(200);
    expect(late.text()).toBe('part');
    expect(late.truncated).toBe(true);
  });

  it('SR-23: keeps exc_info: a replacement before the first chunk', async () => {
    const app: App = (_e, startResponse) => {
      startResponse('200 OK', [['X-Planned', 'yes']]);
      try {
        throw new Error('nope');
      } catch (err) {
        startResponse('503 Service Unavailable', [['Retry-After', '5']], err);
        return ['later'];
      }
    };
    const res = await testing.request(app);
    expect(res.status).toBe(503);
    expect(res.headerList).toEqual([['Retry-After', '5']]);
  });

  it('SR-20: sends no body for HEAD and passes extra environ keys', async () => {
    const app: App = (e, startResponse) => {
      startResponse('200 OK', [['X-User', String(e['auth.user'])]]);
      return ['body'];
    };
    const res = await testing.request(app, { method: 'HEAD', environ: { 'auth.user': 'ada' } });
    expect(res.headers.get('x-user')).toBe('ada');
    expect(res.body.length).toBe(0);
  });
});

describe('open()', () => {
  it('yields chunks as the app produces them, pulling one per read', async () => {
    let pulled = 0;
    const app: App = (_e, startResponse) => {
      startResponse('200 OK', []);
      return (function* () {
        for (let i = 0; i < 100; i++) {
          pulled++;
          yield `${i},`;
        }
      })();
    };
    const res = await testing.open(app);
    expect(pulled).toBeLessThanOrEqual(2);
    expect((await res.read())?.toString()).toBe('0,');
    const seen: string[] = [];
    for await (const chunk of res.chunks()) {
      seen.push(chunk.toString());
      if (seen.length === 3) break;
    }
    expect(seen).toEqual(['1,', '2,', '3,']);
    expect(pulled).toBeLessThan(10);
  });

  it('BODY-16, BODY-17, ENV-27: cancel() closes the app iterator once and aborts nsgi.signal', async () => {
    let closed = 0;
    let aborted = false;
    const app: App = (e, startResponse) => {
      e['nsgi.signal'].addEventListener('abort', () => (aborted = true));
      startResponse('200 OK', []);
      return (async function* () {
        try {
          for (;;) yield 'tick';
        } finally {
          closed++;
        }
      })();
    };
    const res = await testing.open(app);
    await res.read();
    await res.cancel();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closed).toBe(1);
    expect(aborted).toBe(true);
  });

  it('BODY-8: resolves only when the head is known (lazy head)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const app: App = (_e, startResponse) => {
      startResponse('200 OK', []);
      return (async function* () {
        yield '';
        await gate;
        yield 'x';
      })();
    };
    let opened = false;
    const pending = testing.open(app).then((s) => ((opened = true), s));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(opened).toBe(false);
    release();
    expect((await (await pending).read())?.toString()).toBe('x');
  });
});

describe('the path as written', () => {
  it('ENV-20: keeps dot segments, encoded dots and an empty query, as a server would', async () => {
    let seen: Record<string, unknown> = {};
    const app: App = (environ, startResponse) => {
      seen = { path: environ.PATH_INFO, uri: environ.REQUEST_URI, query: environ.QUERY_STRING };
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['ok'];
    };
    await testing.request(app, { path: '/static/../secret/%2e%2e/x?' });
    expect(seen).toEqual({ path: '/static/../secret/../x', uri: '/static/../secret/%2e%2e/x?', query: '' });
    await testing.request(app, { path: '/a/./b/../c//d?q=1' });
    expect(seen).toEqual({ path: '/a/./b/../c//d', uri: '/a/./b/../c//d?q=1', query: 'q=1' });
  });
});

describe('the origin', () => {
  it('stays the Host when the path begins with two slashes or a backslash', async () => {
    let seen: Record<string, unknown> = {};
    const app: App = (environ, startResponse) => {
      seen = { host: environ.HTTP_HOST, name: environ.SERVER_NAME, uri: environ.REQUEST_URI };
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['ok'];
    };
    await testing.request(app, { path: '//evil.example/x' });
    expect(seen).toEqual({ host: 'localhost', name: 'localhost', uri: '//evil.example/x' });
    await testing.request(app, { path: '/\\x' });
    expect(seen).toMatchObject({ host: 'localhost', name: 'localhost' });
  });
});

describe('a read of nsgi.input after the response ended', () => {
  it('IN-8: rejects instead of ending early or giving the whole body, as on the server', async () => {
    let late: Promise<unknown> | null = null;
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      late = new Promise((resolve) => setTimeout(resolve, 20)).then(() => environ['nsgi.input'].bytes());
      late.catch(() => {});
      return ['x'];
    };
    const res = await testing.request(app, { method: 'POST', body: '0123456789' });
    expect(res.text()).toBe('x');
    await expect(late!).rejects.toThrow(/response ended before the request body was read/);
  });

  it('is not refused once the whole body was read before the end', async () => {
    const app: App = async (environ, startResponse) => {
      const body = await environ['nsgi.input'].text();
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [body];
    };
    expect((await testing.request(app, { method: 'POST', body: 'all of it' })).text()).toBe('all of it');
  });
});

describe('an empty request body', () => {
  it('is no body: a read after the response gives 0 bytes, as on the server', async () => {
    let late: Promise<Uint8Array> | null = null;
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      late = new Promise((resolve) => setTimeout(resolve, 20)).then(() => environ['nsgi.input'].bytes());
      return ['x'];
    };
    await testing.request(app, { method: 'POST', body: '' });
    expect((await late!).length).toBe(0);
  });
});
