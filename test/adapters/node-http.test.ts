/**
 * The adapters beyond what the contract suite covers: the environ each one builds (checked by
 * validate(), which knows every environ rule), how each carries headers, bodies and signals across,
 * and the choices each documents (100 Continue on node:http, the head timing of fromFetch, the
 * approximations of toFetch). Servers run on 127.0.0.1, port 0.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { createNodeServer, fromFetch, toFetch, toNodeListener, validate } from '../../src/index.ts';
import { ClientGoneError } from '../../src/errors.ts';
import { RawClient, cleanup, finalResponses, startServer, waitUntil } from '../helpers/server.ts';

const nodeServers: http.Server[] = [];

afterEach(async () => {
  for (const s of nodeServers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
  await cleanup();
});

async function listen(server: http.Server): Promise<number> {
  nodeServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** recording keeps the environ of the last request and answers with a short text. */
function recording(): { app: App; last: () => Environ } {
  let environ: Environ | null = null;
  return {
    app: (e, startResponse) => {
      environ = e;
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['ok'];
    },
    last: () => environ!,
  };
}

describe('toNodeListener', () => {
  it('builds an environ that passes validate(), with the request as node:http received it', async () => {
    const r = recording();
    const errors: string[] = [];
    const port = await listen(createNodeServer(validate(r.app), { errors: { write: (m) => void errors.push(m) } }));
    const client = await RawClient.connect(port);
    client.write(`GET /caf%C3%A9?q=%20 HTTP/1.1\nHost: example.test:8080\nX-Mixed: A\nX_Under: u\nCookie: a=1\nCookie: b=2\n\n`);
    await client.waitForResponses(1);
    expect(errors).toEqual([]);
    const e = r.last();
    expect(e.PATH_INFO).toBe('/café');
    expect(e.QUERY_STRING).toBe('q=%20');
    expect(e.REQUEST_URI).toBe('/caf%C3%A9?q=%20');
    expect(e.SERVER_NAME).toBe('example.test');
    expect(e.SERVER_PORT).toBe('8080');
    expect(e.REMOTE_ADDR).toBe('127.0.0.1');
    expect(e.HTTP_COOKIE).toBe('a=1; b=2');
    expect(e.HTTP_X_UNDER).toBeUndefined();
    expect(e['nsgi.headers']).toContainEqual(['X_Under', 'u']);
    expect(e['nsgi.headers']).toContainEqual(['X-Mixed', 'A']);
    expect(e['nsgi.early_hints']).toBeUndefined();
  });

  it('moves a mount path to SCRIPT_NAME', async () => {
    const r = recording();
    const port = await listen(createNodeServer(validate(r.app), { scriptName: '/shop/' }));
    const res = await fetch(`http://127.0.0.1:${port}/shop/cart?id=7`);
    expect(res.status).toBe(200);
    expect([r.last().SCRIPT_NAME, r.last().PATH_INFO]).toEqual(['/shop', '/cart']);
  });

  it('on a server without a checkContinue listener, node:http sends 100 Continue itself, once', async () => {
    const app: App = async (e, startResponse) => {
      const text = await e['nsgi.input'].text();
      startResponse('200 OK', []);
      return [text];
    };
    const port = await listen(http.createServer(toNodeListener(app)));
    const client = await RawClient.connect(port);
    client.write('PUT / HTTP/1.1\nHost: t\nExpect: 100-continue\nContent-Length: 2\n\n');
    await client.waitForText('100 Continue');
    client.write('hi');
    await client.waitForResponses(1);
    expect(client.text.split('100 Continue').length).toBe(2);
    expect(finalResponses(client.data)[0]!.body.toString()).toBe('hi');
  });

  it('mounts in a plain node:http server beside other routes', async () => {
    const nsgi = toNodeListener((e, startResponse) => {
      startResponse('200 OK', []);
      return [`nsgi saw ${e.PATH_INFO}`];
    });
    const port = await listen(
      http.createServer((req, res) => {
        if (req.url?.startsWith('/nsgi/') === true) return nsgi(req, res);
        res.end('plain');
      }),
    );
    expect(await (await fetch(`http://127.0.0.1:${port}/nsgi/x`)).text()).toBe('nsgi saw /nsgi/x');
    expect(await (await fetch(`http://127.0.0.1:${port}/other`)).text()).toBe('plain');
  });

  it('honours write() backpressure from res.write()', async () => {
    let written = 0;
    const app: App = async (_e, startResponse) => {
      const write = startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      const chunk = new Uint8Array(64 * 1024);
      for (let i = 0; i < 4096; i++) {
        await write(chunk);
        written += chunk.length;
      }
      return [];
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await waitUntil(() => written > 0, 'the first write');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const settled = written;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(written).toBe(settled);
    expect(written).toBeLessThan(128 * 1024 * 1024);
  });
});

describe('toNodeListener: pipelined requests, unread bodies and late reads', () => {
  it('a pipelined request whose client leaves gets its signal and its return(), though node:http had not started its response', async () => {
    const closed: string[] = [];
    const aborted: string[] = [];
    const app: App = (environ, startResponse) => {
      const path = environ.PATH_INFO as string;
      environ['nsgi.signal'].addEventListener('abort', () => aborted.push(path));
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return (async function* () {
        try {
          for (;;) {
            yield `${path}\n`;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        } finally {
          closed.push(path);
        }
      })();
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const client = await RawClient.connect(port);
    client.write('GET /1 HTTP/1.1\nHost: t\n\nGET /2 HTTP/1.1\nHost: t\n\n');
    await client.waitForText('/1\n');
    await new Promise((resolve) => setTimeout(resolve, 100));
    client.socket.resetAndDestroy();
    await waitUntil(() => closed.length === 2 && aborted.length === 2, 'both bodies closed and both signals aborted');
    expect(closed.sort()).toEqual(['/1', '/2']);
  });

  it('answering after reading part of a large body does not stall the next request on the connection', async () => {
    const app: App = async (environ, startResponse) => {
      if (environ.REQUEST_METHOD === 'POST') {
        const it = environ['nsgi.input'][Symbol.asyncIterator]();
        await it.next();
      }
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`${environ.PATH_INFO}`];
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const client = await RawClient.connect(port);
    const body = 'x'.repeat(300_000);
    client.write(`POST /a HTTP/1.1\nHost: t\nContent-Length: ${body.length}\n\n`);
    client.write(body);
    client.write('GET /b HTTP/1.1\nHost: t\n\n');
    // Without the fix the second response came only when the keep-alive timeout closed the connection.
    const data = await client.waitFor((d) => finalResponses(d).length === 2 || client.closed, 'two responses, or a close', 2000);
    const responses = finalResponses(data);
    expect(responses[0]?.status).toBe(200);
    if (responses.length === 2) expect(responses[1]!.body.toString()).toBe('/b');
    else expect(responses[0]!.headers.some(([n, v]) => n.toLowerCase() === 'connection' && v === 'close')).toBe(true);
  });

  it('a read of nsgi.input after the response ended rejects instead of ending early (IN-8)', async () => {
    let late: Promise<unknown> | null = null;
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      late = new Promise((resolve) => setTimeout(resolve, 100)).then(() => environ['nsgi.input'].bytes());
      late.catch(() => {});
      return ['x'];
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: '0123456789' });
    expect(await res.text()).toBe('x');
    await waitUntil(() => late !== null, 'the app to run');
    await expect(late!).rejects.toThrow(/response ended/);
  });

  it("a 426's Connection field keeps node:http's choice to close or keep the connection", async () => {
    const app: App = (_environ, startResponse) => {
      startResponse('426 Upgrade Required', [['Upgrade', 'h2c'], ['Content-Length', '0']]);
      return [];
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const cases: Array<[string, string, boolean]> = [
      ['GET / HTTP/1.1\nHost: t\n\n', 'upgrade', false],
      ['GET / HTTP/1.1\nHost: t\nConnection: close\n\n', 'upgrade, close', true],
      ['GET / HTTP/1.0\n\n', 'upgrade, close', true],
      ['GET / HTTP/1.0\nConnection: keep-alive\n\n', 'upgrade, keep-alive', false],
    ];
    for (const [request, connection, closes] of cases) {
      const client = await RawClient.connect(port);
      client.write(request);
      const data = await client.waitForResponses(1);
      const [r] = finalResponses(data);
      expect(r!.headers.filter(([n]) => n.toLowerCase() === 'connection').map(([, v]) => v), request).toEqual([connection]);
      expect(r!.headers.find(([n]) => n.toLowerCase() === 'upgrade')?.[1]).toBe('h2c');
      if (closes) await client.waitForClose();
      else expect(await client.settle(() => client.closed, 200)).toBe(false);
      client.destroy();
    }
  });

  it('an empty reason phrase is sent as given, not replaced', async () => {
    const app: App = (_environ, startResponse) => {
      startResponse('200', [['Content-Type', 'text/plain']]);
      return ['x'];
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    const data = await client.waitForResponses(1);
    expect(data.toString('latin1')).toMatch(/^HTTP\/1\.1 200 \r\n/);
  });
});

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

  it('sends the head at once when the first chunk is not ready, as a fetch server would', async () => {
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

  it('reads the request body only when the handler does: no 100 Continue for a refusal', async () => {
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

  it('aborts request.signal when the client leaves', async () => {
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
  it('logs every error that fails a response while the client is there, whatever its class (ERR-3)', async () => {
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

  it('answers 500 for an error before the head and errors the stream after it', async () => {
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

  it('aborts nsgi.signal with request.signal and closes the iterator when the body is cancelled', async () => {
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

  it('streams the request body into nsgi.input', async () => {
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
