/**
 * The HTTP/1.1 driver's deadlines and proxy trust on the h2 connections of the TLS listener: a
 * header block left unfinished ends its session (GOAWAY naming the last stream served), a body
 * trickled under the minimum rate or a response the client takes none of resets its stream, and
 * a quiet stream is never cut. Clients are node:http2 sessions, and a raw h2 client over TLS for
 * the header block that node:http2 would never leave unfinished.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { makeCert, type Cert } from '../helpers/certs.ts';
import { cleanup, sleep, startServer, waitUntil } from '../helpers/server.ts';

let dir = '';
let cert: Cert;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-h2d-'));
  cert = makeCert(dir, 'server');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const closers: Array<() => void> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await cleanup();
});

const tlsOptions = (): { tls: { cert: string; key: string } } => ({ tls: { cert: cert.cert, key: cert.key } });

/** connect opens an h2 session to 127.0.0.1 with `settings`, destroyed after the test. */
async function connect(port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: cert.cert, settings });
  closers.push(() => session.destroy());
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.on('error', () => {});
  return session;
}

/** get sends a bodiless request and resolves with its status and body. */
function get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': '/', ...headers });
    let status = 0;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (s: string) => (body += s));
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
  });
}

/** closed resolves with the reset code a client stream ended with (0 when it ended cleanly). */
function closed(stream: http2.ClientHttp2Stream): Promise<number> {
  stream.on('error', () => {});
  return new Promise((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0)));
}

/** Watched is what an app saw of its own end: signal reasons, return() calls, a failed read. */
interface Watched {
  readonly aborts: unknown[];
  returns: number;
  readError: { code?: string; status?: number } | null;
}

function watched(): Watched {
  return { aborts: [], returns: 0, readError: null };
}

/** readingApp reads the whole body (recording a failed read), then answers with its length; GET / answers `ok`. */
function readingApp(w: Watched): App {
  return async function* (environ: Environ, startResponse) {
    if (environ.REQUEST_METHOD === 'GET') {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield 'ok';
      return;
    }
    environ['nsgi.signal'].addEventListener('abort', () => w.aborts.push(environ['nsgi.signal'].reason));
    try {
      let n = 0;
      try {
        for await (const part of environ['nsgi.input']) n += part.length;
      } catch (err) {
        w.readError = err as Watched['readError'];
        throw err;
      }
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield String(n);
    } finally {
      w.returns++;
    }
  };
}

describe('HTTP/2 deadlines', () => {
  it('resets a stream whose body trickles under minBodyRate (CANCEL, read fails with 408, signal and return() once); the session goes on', async () => {
    const w = watched();
    const { port } = await startServer(readingApp(w), { ...tlsOptions(), minBodyRate: 1000, minBodyRateGrace: 300, bodyTimeout: 60_000, errors: { write: () => {} } });
    const session = await connect(port);
    const stream = session.request({ ':method': 'POST', ':path': '/' }, { endStream: false });
    stream.resume();
    const code = closed(stream);
    const trickle = setInterval(() => {
      if (!stream.closed) stream.write('x');
    }, 50);
    closers.push(() => clearInterval(trickle));
    expect(await code).toBe(http2.constants.NGHTTP2_CANCEL);
    clearInterval(trickle);
    await waitUntil(() => w.returns === 1, 'the body to be closed');
    expect(w.readError?.code).toBe('NSGI_BODY_TOO_SLOW');
    expect(w.readError?.status).toBe(408);
    expect(w.aborts).toHaveLength(1);
    await sleep(100);
    expect(w.returns).toBe(1);
    expect(await get(session, {})).toEqual({ status: 200, body: 'ok' });
  });

  it('resets a stream whose client takes none of the response for sendTimeout; its other streams are still answered', async () => {
    const aborts: unknown[] = [];
    let returns = 0;
    let pulled = 0;
    const app: App = async function* (environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      if (environ.PATH_INFO !== '/big') return;
      environ['nsgi.signal'].addEventListener('abort', () => aborts.push(environ['nsgi.signal'].reason));
      try {
        for (pulled = 0; pulled < 1000; pulled++) yield new Uint8Array(64 * 1024);
      } finally {
        returns++;
      }
    };
    const { port } = await startServer(app, { ...tlsOptions(), sendTimeout: 300 });
    // A window of 0 (RFC 9113 §6.9.2): the server may send no DATA at all until the client opens it.
    const session = await connect(port, { initialWindowSize: 0 });
    const big = session.request({ ':path': '/big' });
    const code = closed(big);
    expect(await code).toBe(http2.constants.NGHTTP2_CANCEL);
    await waitUntil(() => returns === 1, 'the body to be closed');
    expect(aborts).toHaveLength(1);
    expect(pulled).toBeLessThan(10);
    // A response with no DATA to send needs no window: the session still serves it.
    const empty = session.request({ ':path': '/empty' });
    const status = await new Promise((resolve) => empty.once('response', (h) => resolve(h[':status'])));
    expect(status).toBe(200);
    await sleep(100);
    expect(returns).toBe(1);
  });

  it('SRV-29: never cuts a quiet stream: a long poll answers after several head and send timeouts', async () => {
    const app: App = async function* (_environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      await sleep(1000);
      yield 'late';
    };
    const { port } = await startServer(app, { ...tlsOptions(), headersTimeout: 200, sendTimeout: 200, minBodyRate: 1000, minBodyRateGrace: 100 });
    const session = await connect(port);
    expect(await get(session, {})).toEqual({ status: 200, body: 'late' });
  });

  it('ends a session whose client leaves a header block unfinished: GOAWAY naming the last stream served, which still completes', async () => {
    const app: App = async function* (_environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      await sleep(800);
      yield 'served';
    };
    const { port, errors } = await startServer(app, { ...tlsOptions(), headersTimeout: 300, keepAliveTimeout: 30_000 });
    const frames: Array<{ type: number; flags: number; id: number; payload: Buffer }> = [];
    const socket = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, ALPNProtocols: ['h2'], servername: 'localhost' });
    closers.push(() => socket.destroy());
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    expect(socket.alpnProtocol).toBe('h2');
    let buffered = Buffer.alloc(0);
    let ended = false;
    const started = Date.now();
    let goawayAt = 0;
    socket.on('data', (data: Buffer) => {
      buffered = Buffer.concat([buffered, data]);
      while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
        const length = buffered.readUIntBE(0, 3);
        const frame = { type: buffered[3]!, flags: buffered[4]!, id: buffered.readUInt32BE(5) & 0x7fffffff, payload: buffered.subarray(9, 9 + length) };
        if (frame.type === 7 && goawayAt === 0) goawayAt = Date.now();
        frames.push(frame);
        buffered = buffered.subarray(9 + length);
      }
    });
    socket.on('close', () => (ended = true));
    socket.on('error', () => {});
    // HPACK (RFC 7541 Appendix A): GET, https, /, then :authority as a literal.
    const block = Buffer.from([0x82, 0x87, 0x84, 0x41, 9, ...Buffer.from('localhost')]);
    socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    socket.write(frame(4, 0, 0, Buffer.alloc(0)));
    socket.write(frame(1, 0x4 | 0x1, 1, block));
    await sleep(50);
    // Stream 3's HEADERS without END_HEADERS, and never a CONTINUATION.
    socket.write(frame(1, 0x1, 3, block.subarray(0, 2)));
    await waitUntil(() => ended, 'the session to end', 5000);
    const goaway = frames.find((f) => f.type === 7);
    expect(goaway).toBeDefined();
    expect(goaway!.payload.readUInt32BE(0) & 0x7fffffff).toBe(1);
    expect(goaway!.payload.readUInt32BE(4)).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(goawayAt - started).toBeGreaterThanOrEqual(300);
    const data = frames.filter((f) => f.id === 1 && f.type === 0);
    expect(data.at(-1)!.flags & 0x1).toBe(1);
    expect(Buffer.concat(data.map((f) => f.payload)).toString()).toBe('served');
    expect(errors.join('')).toMatch(/header block unfinished after 300 ms/);
  });
});

describe('HTTP/2 proxy trust', () => {
  const proxied = { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'example.org' };
  const app: App = (environ, startResponse) => {
    startResponse('200 OK', [['Content-Type', 'application/json']]);
    return [JSON.stringify([environ.REMOTE_ADDR, environ['nsgi.url_scheme'], environ.HTTP_HOST])];
  };

  it('SRV-26: takes REMOTE_ADDR, scheme and host from X-Forwarded-* of a trusted peer', async () => {
    const { port } = await startServer(app, { ...tlsOptions(), forwardedAllowIps: ['127.0.0.1'] });
    const session = await connect(port);
    const r = await get(session, proxied);
    expect(JSON.parse(r.body)).toEqual(['203.0.113.7', 'http', 'example.org']);
    const forwarded = await get(session, { forwarded: 'for=198.51.100.2;proto=https;host=h.example' });
    expect(JSON.parse(forwarded.body)).toEqual(['198.51.100.2', 'https', 'h.example']);
  });

  it('SRV-26: ignores them from a peer not trusted', async () => {
    const { port } = await startServer(app, { ...tlsOptions(), forwardedAllowIps: ['10.0.0.1'] });
    const session = await connect(port);
    const r = await get(session, proxied);
    expect(JSON.parse(r.body)).toEqual(['127.0.0.1', 'https', `127.0.0.1:${port}`]);
  });
});

/** frame is one h2 frame (RFC 9113 §4.1). */
function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}
