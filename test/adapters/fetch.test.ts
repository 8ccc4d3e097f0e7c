/**
 * The fetch adapters beyond what the contract suite covers: `fromFetch` serving a fetch-style
 * handler on the real server (head timing, bodies and the signal carried across), and `toFetch`
 * turning an nsgi app into a fetch handler (the environ it builds, checked by validate(), and the
 * approximations it documents). Servers run on 127.0.0.1, port 0.
 */
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { fromFetch, toFetch, validate } from '../../src/index.ts';
import { ClientGoneError } from '../../src/errors.ts';
import { RawClient, cleanup, finalResponses, recording, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

describe('fromFetch', () => {
  it('builds the Request URL from Host and REQUEST_URI, with the headers as received', async () => {
    let seen: Request | null = null;
    const { port } = await startServer(
      validate(
        fromFetch((req) => {
          seen = req;
          return new Response('ok');
        }),
      ),
    );
    const client = await RawClient.connect(port);
    client.write('GET /a%20b/../c?x=1 HTTP/1.1\nHost: api.test:81\nX-One: 1\nConnection: keep-alive\n\n');
    await client.waitForResponses(1);
    const req = seen! as Request;
    expect(req.url).toBe('http://api.test:81/c?x=1');
    expect(req.method).toBe('GET');
    expect(req.headers.get('x-one')).toBe('1');
    expect(req.headers.get('connection')).toBeNull();
  });

  it('sends a small body with a computed Content-Length and keeps several Set-Cookie fields', async () => {
    const headers = new Headers([['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['content-type', 'text/plain']]);
    const { port } = await startServer(validate(fromFetch(() => new Response('hello', { status: 202, headers }))));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(1);
    const res = finalResponses(client.data)[0]!;
    expect(res.statusLine).toBe('HTTP/1.1 202 Accepted');
    expect(res.headers.filter(([n]) => n === 'set-cookie').map(([, v]) => v)).toEqual(['a=1', 'b=2']);
    expect(res.headers).toContainEqual(['Content-Length', '5']);
    expect(res.body.toString()).toBe('hello');
  });

  it('SR-31: sends the head at once when the first chunk is not ready, as a fetch server would', async () => {
    let push: ((s: string) => void) | null = null;
    const { port } = await startServer(
      fromFetch(
        () =>
          new Response(
            new ReadableStream<Uint8Array>({
              start(controller) {
                push = (s) => controller.enqueue(new TextEncoder().encode(s));
              },
            }),
          ),
      ),
    );
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitForText('\r\n\r\n');
    expect(client.text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    push!('later');
    await client.waitForText('later');
  });

  it('IN-7: reads the request body only when the handler does: no 100 Continue for a refusal', async () => {
    const { port } = await startServer(fromFetch(() => new Response('no', { status: 401 })));
    const client = await RawClient.connect(port);
    client.write('PUT / HTTP/1.1\nHost: t\nExpect: 100-continue\nContent-Length: 5\n\n');
    await client.waitForResponses(1);
    expect(client.text).not.toContain('100 Continue');
    expect(finalResponses(client.data)[0]!.status).toBe(401);
  });

  it('answers 501 for a method a fetch Request cannot carry', async () => {
    const { port } = await startServer(fromFetch(() => new Response('never')));
    const client = await RawClient.connect(port);
    client.write('TRACE / HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]!.status).toBe(501);
  });

  it('serves a `get` with a body as a Request would have it, a GET without one, and not as a 500', async () => {
    const { port, errors } = await startServer(fromFetch((req) => new Response(`${req.method} ${req.body === null ? 'no body' : 'a body'}`)));
    const client = await RawClient.connect(port);
    client.write('get /a HTTP/1.1\nHost: t\nContent-Length: 5\n\nhellohead /b HTTP/1.1\nHost: t\nContent-Length: 2\n\nhiPOST /c HTTP/1.1\nHost: t\nContent-Length: 2\n\nhi');
    await client.waitForResponses(3);
    const responses = finalResponses(client.data);
    expect(responses.map((r) => `${r.status} ${r.body.toString()}`)).toEqual(['200 GET no body', '200 HEAD no body', '200 POST a body']);
    expect(errors).toEqual([]);
  });

  it.each(['a:99999', 'a%00b', '999.1.1.1'])('answers 400, not a 500, to a Host %j the server takes and a fetch URL cannot hold', async (host) => {
    let called = false;
    const { port, errors } = await startServer(
      fromFetch(() => {
        called = true;
        return new Response('never');
      }),
    );
    const client = await RawClient.connect(port);
    client.write(`GET /p HTTP/1.1\nHost: ${host}\n\n`);
    await client.waitForResponses(1);
    const [r] = finalResponses(client.data);
    expect(r!.status).toBe(400);
    expect(r!.body.toString()).toContain(`http://${host}/p`);
    expect(called).toBe(false);
    expect(errors).toEqual([]);
  });

  it('ENV-7: names the server itself in the URL of a request whose Host is only a port', async () => {
    let url = '';
    const { port } = await startServer(fromFetch((req) => new Response((url = req.url))));
    const client = await RawClient.connect(port);
    client.write('GET /p HTTP/1.1\nHost: :8080\n\n');
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]!.status).toBe(200);
    expect(url).toBe(`http://127.0.0.1:${port}/p`);
  });

  it('ENV-27: aborts request.signal when the client leaves', async () => {
    let aborted = false;
    const { port } = await startServer(
      fromFetch(async (req) => {
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
        aborted = true;
        return new Response('late');
      }),
    );
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.destroy();
    await waitUntil(() => aborted, 'request.signal to abort');
  });
});

describe('toFetch', () => {
  it('leaves no listener on the request signal once the response is complete, so a long-lived request does not hold its exchange', async () => {
    const app: App = async function* (environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield 'a';
      yield 'b';
    };
    const request = new Request('http://t/');
    const res = await toFetch(app, { errors: { write: (m) => expect.fail(m) } })(request);
    expect(await res.text()).toBe('ab');
    expect(getEventListeners(request.signal, 'abort')).toHaveLength(0);
    const refused = new Request('http://t/');
    const failed = await toFetch(() => {
      throw new Error('refused before the head');
    }, { errors: { write: () => {} } })(refused);
    expect(failed.status).toBe(500);
    expect(getEventListeners(refused.signal, 'abort')).toHaveLength(0);
  });

  it('SR-20: a 304 carries no Content-Length the app did not give, even with a stray chunk', async () => {
    const errors: string[] = [];
    const app: App = (environ, startResponse) => {
      startResponse('304 Not Modified', [['ETag', '"v1"']]);
      return environ.PATH_INFO === '/stray' ? ['oops'] : [];
    };
    const handler = toFetch(app, { errors: { write: (m) => void errors.push(m) } });
    for (const url of ['http://t/', 'http://t/stray']) {
      const res = await handler(new Request(url));
      expect(res.status).toBe(304);
      expect(res.headers.get('etag')).toBe('"v1"');
      expect(res.headers.get('content-length')).toBeNull();
      expect(res.body).toBeNull();
    }
    expect(errors.some((m) => m.includes('SR-21'))).toBe(true);
  });

  it.each([
    ['malformed', 'Transfer-Encoding: chunked\n\n5\r\nhello\r\nzz\r\n', 400],
    ['over maxBodySize', 'Transfer-Encoding: chunked\n\n5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n', 413],
  ])('IN-10: a body found %s while the app reads it gets its own status through fromFetch(toFetch(app)), as on the server', async (_what, rest, status) => {
    const app: App = async (environ, startResponse) => {
      await environ['nsgi.input'].bytes();
      startResponse('200 OK', []);
      return ['read'];
    };
    const { port } = await startServer(fromFetch(toFetch(app, { errors: { write: () => {} } })), { maxBodySize: 10 });
    const client = await RawClient.connect(port);
    client.write(`POST / HTTP/1.1\nHost: t\n${rest}`);
    await client.waitForClose();
    expect(finalResponses(client.data, { closed: true })[0]!.status).toBe(status);
  });

  it('ERR-3: logs every error that fails a response while the client is there, whatever its class', async () => {
    const errors: string[] = [];
    const app: App = () => {
      throw new ClientGoneError('thrown by the app, though the client is still there');
    };
    const res = await toFetch(app, { errors: { write: (m) => void errors.push(m) } })(new Request('http://t/'));
    expect(res.status).toBe(500);
    expect(errors.join('\n')).toContain('thrown by the app, though the client is still there');
  });

  it('builds an environ that passes validate(), with the documented approximations', async () => {
    const r = recording();
    const handler = toFetch(validate(r.app), { remoteAddress: '10.0.0.9', errors: { write: (m) => expect.fail(m) } });
    const res = await handler(new Request('https://shop.test/caf%C3%A9?q=1', { headers: { 'X-Mixed': 'A' } }));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');
    const e = r.last();
    expect(e['nsgi.url_scheme']).toBe('https');
    expect(e.SERVER_NAME).toBe('shop.test');
    expect(e.SERVER_PORT).toBe('443');
    expect(e.REMOTE_ADDR).toBe('10.0.0.9');
    expect(e.PATH_INFO).toBe('/café');
    expect(e['nsgi.headers']).toContainEqual(['host', 'shop.test']);
    expect(e['nsgi.headers']).toContainEqual(['x-mixed', 'A']);
  });

  it('resolves the Response only when the head is known', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const handler = toFetch((_e, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return (async function* () {
        await gate;
        yield 'now';
      })();
    });
    let resolved = false;
    const pending = handler(new Request('http://x/')).then((r) => {
      resolved = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(resolved).toBe(false);
    release();
    expect(await (await pending).text()).toBe('now');
  });

  it('ERR-1, ERR-4: answers 500 for an error before the head and errors the stream after it', async () => {
    const handler = toFetch(
      (e, startResponse) => {
        startResponse('200 OK', []);
        return (async function* () {
          if (e.PATH_INFO === '/early') throw new Error('early');
          yield 'partial';
          throw new Error('late');
        })();
      },
      { errors: { write: () => {} } },
    );
    expect((await handler(new Request('http://x/early'))).status).toBe(500);
    const late = await handler(new Request('http://x/late'));
    expect(late.status).toBe(200);
    const reader = late.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('partial');
    await expect(reader.read()).rejects.toThrow('late');
  });

  it('ENV-27, BODY-16: aborts nsgi.signal with request.signal and closes the iterator when the body is cancelled', async () => {
    let reason: unknown;
    let closed = 0;
    const handler = toFetch((e, startResponse) => {
      e['nsgi.signal'].addEventListener('abort', () => (reason = e['nsgi.signal'].reason));
      startResponse('200 OK', []);
      return (async function* () {
        try {
          for (;;) {
            yield 'x';
            await new Promise((resolve) => setTimeout(resolve, 1));
          }
        } finally {
          closed++;
        }
      })();
    });
    const res = await handler(new Request('http://x/'));
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    await waitUntil(() => closed === 1, 'return() to run the finally');
    expect(reason).toBeInstanceOf(Error);

    const controller = new AbortController();
    const res2 = await handler(new Request('http://x/', { signal: controller.signal }));
    controller.abort(new Error('caller gave up'));
    await waitUntil(() => closed === 2, 'return() after request.signal aborted');
    await expect(res2.text()).rejects.toThrow();
  });

  it('IN-4: streams the request body into nsgi.input', async () => {
    const handler = toFetch(async (e, startResponse) => {
      const parts: number[] = [];
      for await (const part of e['nsgi.input']) parts.push(part.length);
      startResponse('200 OK', []);
      return [parts.reduce((a, b) => a + b, 0).toString()];
    });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new Uint8Array(1000));
        controller.close();
      },
    });
    const res = await handler(new Request('http://x/', { method: 'POST', body, duplex: 'half' } as RequestInit));
    expect(await res.text()).toBe('10000');
  });
});
