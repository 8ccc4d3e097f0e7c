/**
 * One Express 5 app, run on node:http and on nsgi's server through fromNodeListener, must behave
 * the same: JSON bodies, routers and params, express.static with ranges, res.sendFile, a streamed
 * response to a slow reader with bounded memory, and cleanup when the client leaves.
 */
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fromNodeListener } from '../../src/adapters/node-listener.ts';
import { mount } from '../../src/helpers/mount.ts';
import { RawClient, cleanup, curl, sleep, startServer, waitUntil, waitUntilSteady } from '../helpers/server.ts';

let dir: string;
const file = randomBytes(200_000);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nsgi-express-'));
  await writeFile(join(dir, 'data.bin'), file);
  await writeFile(join(dir, 'page.html'), '<p>static</p>\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Counters the app keeps, read by the tests. */
interface Counters {
  produced: number;
  closed: number;
}

/** buildApp is the Express app both servers run. */
function buildApp(counters: Counters): express.Express {
  const app = express();
  app.use(express.json());
  app.post('/echo', (req, res) => {
    res.json({ got: req.body, ip: typeof req.ip });
  });
  const users = express.Router();
  users.get('/:id', (req, res) => {
    res.type('text').send(`user ${req.params.id} at ${req.baseUrl}${req.path} q=${String(req.query.q)}`);
  });
  app.use('/users', users);
  app.use('/static', express.static(dir));
  app.get('/download', (_req, res) => {
    res.sendFile(join(dir, 'data.bin'));
  });
  app.get('/stream', async (_req, res) => {
    res.type('application/octet-stream');
    const chunk = Buffer.alloc(64 * 1024, 7);
    for (let i = 0; i < 1000 && !res.destroyed; i++) {
      counters.produced++;
      if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    }
    res.end();
  });
  app.get('/forever', (req, res) => {
    res.type('text').write('started\n');
    const timer = setInterval(() => res.write('tick\n'), 20);
    req.on('close', () => {
      clearInterval(timer);
      counters.closed++;
    });
  });
  return app;
}

/** Target starts the Express app on one server and gives its base URL and port. */
type Target = (counters: Counters) => Promise<{ url: string; port: number }>;

const nodeServers = new Set<http.Server>();
const targets: Array<[string, Target]> = [
  [
    'node:http',
    async (counters) => {
      const server = http.createServer(buildApp(counters));
      nodeServers.add(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      return { url: `http://127.0.0.1:${port}`, port };
    },
  ],
  ['nsgi', (counters) => startServer(fromNodeListener(buildApp(counters)))],
];

afterEach(async () => {
  for (const server of nodeServers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  nodeServers.clear();
  await cleanup();
});

describe.each(targets)('the same Express app on %s', (_name, start) => {
  it('parses a JSON body and answers JSON', async () => {
    const { url } = await start({ produced: 0, closed: 0 });
    const response = await fetch(`${url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: [1, 2] }) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ got: { a: [1, 2] }, ip: 'string' });
  });

  it('routes through a router with params and a query', async () => {
    const { url } = await start({ produced: 0, closed: 0 });
    const response = await fetch(`${url}/users/42?q=x`);
    expect(await response.text()).toBe('user 42 at /users/42 q=x');
    expect((await fetch(`${url}/nowhere`)).status).toBe(404);
  });

  it('serves express.static with curl -r ranges and conditional GETs', async () => {
    const { url } = await start({ produced: 0, closed: 0 });
    const result = await curl(['-D', '-', '-r', '0-99', `${url}/static/data.bin`]);
    const text = result.stdout.toString('latin1');
    expect(text).toMatch(/^HTTP\/1.1 206 /);
    expect(text).toContain('Content-Range: bytes 0-99/200000');
    expect(result.stdout.subarray(result.stdout.indexOf('\r\n\r\n') + 4).equals(file.subarray(0, 100))).toBe(true);
    const first = await fetch(`${url}/static/page.html`);
    expect(await first.text()).toBe('<p>static</p>\n');
    const etag = first.headers.get('etag')!;
    const conditional = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `If-None-Match: ${etag}`, `${url}/static/page.html`]);
    expect(conditional.stdout.toString()).toBe('304');
    const head = await fetch(`${url}/static/data.bin`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe('200000');
  });

  it('sends a file with res.sendFile', async () => {
    const { url } = await start({ produced: 0, closed: 0 });
    const result = await curl([`${url}/download`]);
    expect(result.stdout.equals(file)).toBe(true);
  });

  it('stops producing while a slow reader reads nothing, then delivers everything', async () => {
    const counters = { produced: 0, closed: 0 };
    const { port } = await start(counters);
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET /stream HTTP/1.1\nHost: x\nConnection: close\n\n');
    await waitUntil(() => counters.produced > 5, 'the first chunks');
    const stalled = await waitUntilSteady(() => counters.produced, 'the produced count', 300, 10_000);
    expect(stalled).toBeLessThan(400); // far less than the 1000 chunks (64 MB) there are
    let received = 0;
    client.socket.on('data', (data: Buffer) => void (received += data.length));
    client.socket.resume();
    await waitUntil(() => client.closed, 'the whole stream', 15_000);
    expect(counters.produced).toBe(1000);
    expect(received).toBeGreaterThan(1000 * 64 * 1024);
  });

  it('tells the app when the client leaves (req close), so it can clean up', async () => {
    const counters = { produced: 0, closed: 0 };
    const { port } = await start(counters);
    const client = await RawClient.connect(port);
    client.write('GET /forever HTTP/1.1\nHost: x\n\n');
    await waitUntil(() => client.text.includes('tick'), 'the first tick');
    expect(counters.closed).toBe(0);
    client.destroy();
    await waitUntil(() => counters.closed === 1, 'the close event');
  });
});

describe('an Express app mounted inside nsgi', () => {
  it('routes below its mount, with the target as received in req.originalUrl', async () => {
    const ex = express();
    ex.get('/users/:id', (req, res) => void res.json({ id: req.params.id, url: req.url, original: req.originalUrl }));
    const { url } = await startServer(mount({ '/ex': fromNodeListener(ex) }), { scriptName: '/root' });
    const response = await fetch(`${url}/root/ex/users/a%2Fb?q=1`);
    expect(await response.json()).toEqual({ id: 'a/b', url: '/users/a%2Fb?q=1', original: '/root/ex/users/a%2Fb?q=1' });
    const missing = await fetch(`${url}/root/ex`);
    expect(missing.status).toBe(404);
  });
});

describe('fromNodeListener: what node:http offers beyond the body', () => {
  it('answers Expect: 100-continue when the listener reads, and drops its own writeContinue()', async () => {
    const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.writeContinue();
      let n = 0;
      req.on('data', (chunk: Buffer) => void (n += chunk.length));
      req.on('end', () => res.end(`read ${n}`));
    };
    const { url } = await startServer(fromNodeListener(listener));
    const result = await curl(['-sS', '-i', '-H', 'Expect: 100-continue', '--expect100-timeout', '30', '--data-binary', 'x'.repeat(5000), url]);
    const text = result.stdout.toString();
    expect(text.match(/HTTP\/1.1 100 Continue/g)).toHaveLength(1);
    expect(text).toMatch(/HTTP\/1.1 200 OK[\s\S]*\r\n\r\nread 5000$/);
  });

  it('answers HEAD with the head GET would have, without a body', async () => {
    const listener = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.setHeader('Content-Length', '5');
      res.end('hello');
    };
    const { port } = await startServer(fromNodeListener(listener));
    const client = await RawClient.connect(port);
    client.write('HEAD / HTTP/1.1\nHost: x\nConnection: close\n\n');
    await waitUntil(() => client.closed, 'the response');
    expect(client.text).toMatch(/^HTTP\/1.1 200 OK\r\n/);
    expect(client.text).toContain('Content-Length: 5');
    expect(client.text.endsWith('\r\n\r\n')).toBe(true);
  });
});

describe('fromNodeListener: a failing listener', () => {
  it('turns an async listener that rejects before responding into a 500, with the error logged', async () => {
    const listener = async (): Promise<void> => {
      await sleep(5);
      throw new Error('listener broke on purpose');
    };
    const { url, errors } = await startServer(fromNodeListener(listener));
    const response = await fetch(url);
    expect(response.status).toBe(500);
    expect(errors.join('\n')).toContain('listener broke on purpose');
  });

  it('cuts the response when the listener destroys it midway', async () => {
    const listener = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.write('partial ');
      setTimeout(() => res.destroy(), 10);
    };
    const { port } = await startServer(fromNodeListener(listener));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: x\n\n');
    await waitUntil(() => client.closed, 'the cut');
    expect(client.text).toContain('partial ');
    expect(client.text).not.toContain('\r\n0\r\n\r\n');
  });
});
