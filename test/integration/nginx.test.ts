/**
 * A real nginx in front of two nsgi instances. Debian's nginx (/usr/sbin/nginx, package
 * nginx-light) runs with its own config in a temporary folder on a free loopback port and
 * load-balances two in-process nsgi servers that trust 127.0.0.1 as a proxy. Through it: a 256
 * MiB streamed download arrives intact (sha256 compared), an event arrives within a second of
 * being produced, a WebSocket round-trips, and the forwarded client address reaches the app. The
 * config is the one docs/DEPLOYMENT.md shows (`deploymentConfig` in test/helpers/nginx.ts).
 *
 * If nginx is missing the suite FAILS (never skips) and says how to install it.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { App } from '../../protocol/nsgi.ts';
import { acceptWebSocket } from '../../src/websocket.ts';
import { deploymentConfig, startNginx, type RunningNginx } from '../helpers/nginx.ts';
import { cleanup, finalResponses, header, sleep, startServer, waitUntil, type Started } from '../helpers/server.ts';

/** BIG is the size of the streamed download: 256 MiB in 1 MiB chunks. */
const BIG_CHUNK = 1024 * 1024;
const BIG_CHUNKS = 256;

/** bigChunk is chunk `i` of the download: a fixed random-looking MiB with `i` stamped on it. */
const BASE = (() => {
  const b = Buffer.alloc(BIG_CHUNK);
  let x = 0x12345678;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
})();
function bigChunk(i: number): Buffer {
  const c = Buffer.from(BASE);
  c.writeUInt32BE(i, 0);
  c.writeUInt32BE(i, BIG_CHUNK - 4);
  return c;
}
const BIG_SHA256 = (() => {
  const h = createHash('sha256');
  for (let i = 0; i < BIG_CHUNKS; i++) h.update(bigChunk(i));
  return h.digest('hex');
})();

/** eventProducedAt records when the /sse app yielded its event. */
let eventProducedAt = 0;

/** app is what both nsgi instances serve; `instance` tells them apart in X-Instance. */
function app(instance: string): App {
  const wsOptions = {};
  return (environ, startResponse) => {
    const path = environ.PATH_INFO;
    const base: Array<[string, string]> = [['X-Instance', instance]];
    if (path === '/big') {
      startResponse('200 OK', [...base, ['Content-Type', 'application/octet-stream']]);
      return (function* () {
        for (let i = 0; i < BIG_CHUNKS; i++) yield bigChunk(i);
      })();
    }
    if (path === '/sse') {
      const write = startResponse('200 OK', [...base, ['Content-Type', 'text/event-stream'], ['Cache-Control', 'no-cache'], ['X-Accel-Buffering', 'no']]);
      write.flushHead();
      return (async function* () {
        await sleep(1000);
        eventProducedAt = Date.now();
        yield 'data: hello\n\n';
        await sleep(200);
      })();
    }
    if (path === '/ws') {
      return acceptWebSocket(environ, startResponse, (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      }, wsOptions);
    }
    if (path === '/whoami') {
      startResponse('200 OK', [...base, ['Content-Type', 'application/json']]);
      return [JSON.stringify({
        REMOTE_ADDR: environ.REMOTE_ADDR,
        scheme: environ['nsgi.url_scheme'],
        HTTP_HOST: environ.HTTP_HOST,
        SERVER_NAME: environ.SERVER_NAME,
        xff: environ.HTTP_X_FORWARDED_FOR ?? null,
      })];
    }
    startResponse('200 OK', [...base, ['Content-Type', 'text/plain']]);
    return [`hello from ${instance}`];
  };
}

let nginx: RunningNginx | undefined;
let port = 0;
const instances: Started[] = [];

beforeAll(async () => {
  for (const name of ['a', 'b']) instances.push(await startServer(app(name), { forwardedAllowIps: ['127.0.0.1'] }));
  nginx = await startNginx((p) => deploymentConfig(p, instances.map((i) => i.port)));
  port = nginx.port;
}, 30_000);

afterAll(async () => {
  await nginx?.stop();
  await cleanup();
}, 20_000);

describe('nginx in front of two nsgi instances', () => {
  it('load-balances across both instances over keep-alive upstream connections', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(res.status).toBe(200);
      seen.add(res.headers.get('x-instance')!);
      expect(await res.text()).toMatch(/^hello from [ab]$/);
    }
    expect([...seen].sort()).toEqual(['a', 'b']);
  });

  it('a 256 MiB streamed download arrives intact (sha256)', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/big`);
    expect(res.status).toBe(200);
    const hash = createHash('sha256');
    let n = 0;
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(part);
      n += part.length;
    }
    expect(n).toBe(BIG_CHUNK * BIG_CHUNKS);
    expect(hash.digest('hex')).toBe(BIG_SHA256);
  }, 120_000);

  it('an event stream: the head arrives at once and the event within a second of being produced', async () => {
    eventProducedAt = 0;
    const t0 = Date.now();
    const res = await fetch(`http://127.0.0.1:${port}/sse`);
    const headAt = Date.now();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    // flushHead() sent the head before the first event existed.
    expect(headAt - t0).toBeLessThan(900);
    const reader = res.body!.getReader();
    const first = await reader.read();
    const arrivedAt = Date.now();
    expect(Buffer.from(first.value!).toString()).toBe('data: hello\n\n');
    expect(eventProducedAt).toBeGreaterThan(0);
    expect(arrivedAt - eventProducedAt).toBeLessThan(1000);
    await reader.cancel();
  }, 10_000);

  it('a WebSocket round-trips through the Upgrade location', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
        setTimeout(() => reject(new Error('WebSocket did not open within 5 s')), 5000);
      });
      const echoed = new Promise<string>((resolve, reject) => {
        ws.once('message', (data) => resolve(data.toString()));
        setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
      });
      ws.send('ping through nginx');
      expect(await echoed).toBe('ping through nginx');
    } finally {
      ws.terminate();
    }
  });

  /**
   * whoami asks /whoami through nginx from `localAddress`, with the request's own X-Forwarded-For
   * if given, and returns what the app saw.
   */
  async function whoami(localAddress: string, xff?: string): Promise<Record<string, string>> {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    try {
      socket.write(`GET /whoami HTTP/1.1\r\nHost: www.example.test\r\n${xff === undefined ? '' : `X-Forwarded-For: ${xff}\r\n`}Connection: close\r\n\r\n`);
      await waitUntil(() => socket.readableEnded || socket.destroyed, 'the response through nginx');
      const [r] = finalResponses(Buffer.concat(chunks), { closed: true });
      expect(r?.status).toBe(200);
      expect(header(r!, 'x-instance')).toMatch(/^[ab]$/);
      return JSON.parse(r!.body.toString()) as Record<string, string>;
    } finally {
      socket.destroy();
    }
  }

  it('the client address nginx saw reaches the app as REMOTE_ADDR (client on 127.0.0.3, not a trusted proxy)', async () => {
    const seen = await whoami('127.0.0.3');
    expect(seen.xff).toBe('127.0.0.3');
    expect(seen.REMOTE_ADDR).toBe('127.0.0.3');
    expect(seen.scheme).toBe('http');
    expect(seen.HTTP_HOST).toBe('www.example.test');
    expect(seen.SERVER_NAME).toBe('www.example.test');
  });

  it('a spoofed X-Forwarded-For from an untrusted client (127.0.0.3) is not believed', async () => {
    const seen = await whoami('127.0.0.3', '203.0.113.9');
    // nginx appended the address it saw; nsgi reads from the right and stops at the first
    // address that is not a trusted proxy: the real client.
    expect(seen.xff).toBe('203.0.113.9, 127.0.0.3');
    expect(seen.REMOTE_ADDR).toBe('127.0.0.3');
  });

  it('from a client on 127.0.0.1, X-Forwarded-For: 203.0.113.9 becomes REMOTE_ADDR, because nginx appends 127.0.0.1 and nsgi trusts it', async () => {
    // What is asserted: nginx turns the client's "203.0.113.9" into "203.0.113.9, 127.0.0.1"
    // (it appends the address it saw, the test client's 127.0.0.1); nsgi believes the field only
    // because its peer (nginx, 127.0.0.1) is in forwardedAllowIps, and it skips the rightmost
    // 127.0.0.1 because that too is a trusted proxy address. On loopback the test client shares
    // the proxy's address; a real client's address is not trusted, as the test above shows.
    const seen = await whoami('127.0.0.1', '203.0.113.9');
    expect(seen.xff).toBe('203.0.113.9, 127.0.0.1');
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
    const plain = await whoami('127.0.0.1');
    expect(plain.xff).toBe('127.0.0.1');
    expect(plain.REMOTE_ADDR).toBe('127.0.0.1');
  });
});
