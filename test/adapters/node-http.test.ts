/**
 * The node:http adapter beyond what the contract suite covers: the environ `toNodeListener` builds
 * (checked by validate(), which knows every environ rule), how it carries headers, bodies and
 * signals across, the choices it documents (100 Continue on node:http), pipelined requests,
 * unread bodies and late reads. Servers run on 127.0.0.1, port 0.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { createNodeServer, toNodeListener, validate } from '../../src/index.ts';
import {
  cleanup,
  finalResponses,
  header,
  parseResponses,
  RawClient,
  rawRequest,
  recording,
  reqBytes,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

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

  it('EXT-1: an app that checks nsgi.early_hints before calling it hints on nsgi and still answers on node:http, which offers none', async () => {
    const app: App = (environ, startResponse) => {
      const hints = environ['nsgi.early_hints'];
      const offered = typeof hints === 'function';
      if (offered) hints([['Link', '</a.css>; rel=preload']]);
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [offered ? 'hinted' : 'no hints here'];
    };
    const port = await listen(createNodeServer(app, { errors: { write: () => {} } }));
    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('no hints here');
    const nsgi = await startServer(app);
    const raw = await rawRequest(nsgi.port, 'GET / HTTP/1.1\nHost: a\n\n', { until: untilResponses(1) });
    expect(parseResponses(raw.data).map((r) => r.status)).toEqual([103, 200]);
    expect(finalResponses(raw.data)[0]!.body.toString()).toBe('hinted');
  });

  it.each([
    ['a single-chunk body (a computed Content-Length)', 'GET / HTTP/1.1\nHost: a\n\n', 200, 'sum follows'],
    ['HEAD', 'HEAD / HTTP/1.1\nHost: a\n\n', 200, ''],
    ['HTTP/1.0', 'GET / HTTP/1.0\n\n', 200, 'sum follows'],
  ])('EXT-1, EXT-13: answers an app that announces trailers with a Trailer field, on %s, without the field (set_trailers is not offered)', async (_what, request, status, body) => {
    const errors: string[] = [];
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Trailer', 'X-Sum'], ['Content-Type', 'text/plain']]);
      return (function* () {
        yield 'sum follows';
        environ['nsgi.set_trailers']?.([['X-Sum', '42']]);
      })();
    };
    const port = await listen(createNodeServer(app, { errors: { write: (m) => void errors.push(m) } }));
    const parse = { noBody: () => request.startsWith('HEAD') };
    const raw = await rawRequest(port, request, { until: untilResponses(1, parse) });
    const [r] = finalResponses(raw.data, { ...parse, closed: raw.closed });
    expect(r?.status).toBe(status);
    expect(r!.body.toString()).toBe(body);
    expect(header(r!, 'trailer')).toBeUndefined();
    expect(errors).toEqual([]);
  });

  it('ENV-18, ENV-19: moves a mount path to SCRIPT_NAME', async () => {
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

  it('SR-27: honours write() backpressure from res.write()', async () => {
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

  it('SR-20: a 304 carries no Content-Length the app did not give, as on the nsgi server, even with a stray chunk', async () => {
    const errors: string[] = [];
    const app: App = (environ, startResponse) => {
      startResponse('304 Not Modified', [['ETag', '"v1"']]);
      // RFC 9110 §8.6: a 304's Content-Length would be that of the 200; a length computed from a
      // body that is never sent is not it.
      return environ.PATH_INFO === '/stray' ? ['oops'] : [];
    };
    const port = await listen(createNodeServer(app, { errors: { write: (m) => void errors.push(m) } }));
    const nsgi = await startServer(app);
    for (const target of ['/', '/stray']) {
      for (const p of [port, nsgi.port]) {
        const raw = await rawRequest(p, `GET ${target} HTTP/1.1\nHost: a\nConnection: close\n\n`, { until: untilResponses(1) });
        const [res] = parseResponses(raw.data);
        expect(res!.status).toBe(304);
        expect(header(res!, 'ETag')).toBe('"v1"');
        expect(header(res!, 'Content-Length')).toBeUndefined();
        expect(res!.rawBody.length).toBe(0);
      }
    }
    expect(errors.some((m) => m.includes('SR-21'))).toBe(true);
  });
});

describe('toNodeListener: pipelined requests, unread bodies and late reads', () => {
  it('ENV-27, BODY-16: a pipelined request whose client leaves gets its signal and its return(), though node:http had not started its response', async () => {
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

  it('IN-8: answering after reading part of a large body does not stall the next request on the connection', async () => {
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

  it('IN-8: a read of nsgi.input after the response ended rejects instead of ending early', async () => {
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

  it('IN-8: answers the next request after an app stopped reading a large body early', async () => {
    const port = await listen(createNodeServer(async (environ, startResponse) => {
      if (environ.REQUEST_METHOD === 'POST') {
        let seen = 0;
        for await (const part of environ['nsgi.input']) {
          seen += part.length;
          if (seen > 1024) break;
        }
        startResponse('413 Content Too Large', [['Content-Length', '0']]);
        return [];
      }
      startResponse('200 OK', [['Content-Length', '4']]);
      return ['next'];
    }, { errors: { write: () => {} } }));
    const client = await RawClient.connect(port);
    const body = 'a'.repeat(300_000);
    client.write(
      `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` +
        'GET /next HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    // Either the second request is answered, or the connection is closed: it must not hang.
    await client.waitFor((data) => data.toString('latin1').includes('next') || client.closed, 'an answer or a close', 5_000);
    expect(client.text).toContain('413');
  });

  it('SR-17: closes the connection after a body longer than its Content-Length', async () => {
    const port = await listen(createNodeServer((_environ, startResponse) => {
      startResponse('200 OK', [['Content-Length', '3']]);
      return ['hello'];
    }, { errors: { write: () => {} } }));
    const client = await RawClient.connect(port);
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\n\n'));
    await client.waitForClose(5_000);
    expect(client.text.endsWith('\r\n\r\nhel')).toBe(true);
  });
});
