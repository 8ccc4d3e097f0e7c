/**
 * The reference server's TLS listener speaking HTTP/2: ALPN offers `h2` and `http/1.1` on one
 * port, h2 connections are served by node:http2 through the node adapter, HTTP/1.1 ones stay on
 * the driver. Certificates are made by openssl in a temp dir; clients are node:http2, node:https
 * and curl `--http2`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import crypto from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { makeCert, type Cert } from '../helpers/certs.ts';
import { cleanup, curl, hashApp, sha256, sleep, startServer, waitUntil } from '../helpers/server.ts';

let dir = '';
let cert: Cert;
let renewed: Cert;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-h2-'));
  cert = makeCert(dir, 'server');
  renewed = makeCert(dir, 'renewed');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sessions = new Set<http2.ClientHttp2Session>();
afterEach(async () => {
  for (const s of sessions) s.destroy();
  sessions.clear();
  await cleanup();
});

/** connect opens an h2 session trusting `ca`, closed after the test. */
async function connect(port: number, ca: string = cert.cert): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca });
  sessions.add(session);
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.on('error', () => {});
  return session;
}

interface H2Response {
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** request sends one request on `session` and resolves with the response head and body. */
function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Uint8Array): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let head: http2.IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    stream.on('response', (h) => (head = h));
    stream.on('data', (b: Buffer) => parts.push(b));
    stream.on('end', () => resolve({ headers: head, body: Buffer.concat(parts) }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

const environApp: App = (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'application/json']]);
  const keys = ['REQUEST_METHOD', 'PATH_INFO', 'QUERY_STRING', 'REQUEST_URI', 'SERVER_PROTOCOL', 'SERVER_NAME', 'SERVER_PORT', 'HTTP_HOST', 'HTTP_X_TEST', 'nsgi.url_scheme'];
  const out: Record<string, unknown> = Object.fromEntries(keys.map((k) => [k, environ[k]]));
  out.names = environ['nsgi.headers'].map(([name]) => name);
  return [JSON.stringify(out)];
};

const tlsOptions = (): { tls: { cert: string; key: string } } => ({ tls: { cert: cert.cert, key: cert.key } });

describe('HTTP/2 over TLS', () => {
  it('ENV-8: serves h2 by ALPN, pseudo-headers making the environ, SERVER_PROTOCOL HTTP/2', async () => {
    const { port } = await startServer(environApp, tlsOptions());
    const session = await connect(port);
    expect((session.socket as tls.TLSSocket).alpnProtocol).toBe('h2');
    const r = await request(session, { ':method': 'POST', ':path': '/a%20b?x=1', 'x-test': 'yes' }, Buffer.from('hi'));
    expect(r.headers[':status']).toBe(200);
    const environ = JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
    expect(environ).toMatchObject({
      REQUEST_METHOD: 'POST',
      PATH_INFO: '/a b',
      QUERY_STRING: 'x=1',
      REQUEST_URI: '/a%20b?x=1',
      SERVER_PROTOCOL: 'HTTP/2',
      SERVER_NAME: '127.0.0.1',
      SERVER_PORT: String(port),
      HTTP_HOST: `127.0.0.1:${port}`,
      HTTP_X_TEST: 'yes',
      'nsgi.url_scheme': 'https',
    });
    // Pseudo-headers are the request line, not header fields.
    expect((environ.names as string[]).some((n) => n.startsWith(':'))).toBe(false);
  });

  it('keeps HTTP/1.1 clients on the same port, on the HTTP/1.1 driver', async () => {
    const { port } = await startServer(environApp, tlsOptions());
    const plain = await new Promise<{ alpn: unknown; text: string }>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port, path: '/one', ca: cert.cert, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (t: string) => (text += t));
        res.on('end', () => resolve({ alpn: (res.socket as tls.TLSSocket).alpnProtocol, text }));
      }).on('error', reject);
    });
    expect(plain.alpn).toBe(false);
    expect(JSON.parse(plain.text)).toMatchObject({ SERVER_PROTOCOL: 'HTTP/1.1', PATH_INFO: '/one' });
    const socket = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, ALPNProtocols: ['h2', 'http/1.1'], servername: 'localhost' });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    expect(socket.alpnProtocol).toBe('h2');
    socket.destroy();
    const h1 = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, ALPNProtocols: ['http/1.1'], servername: 'localhost' });
    await new Promise<void>((resolve, reject) => h1.once('secureConnect', resolve).once('error', reject));
    expect(h1.alpnProtocol).toBe('http/1.1');
    const reply = await new Promise<string>((resolve) => {
      let text = '';
      h1.setEncoding('utf8').on('data', (t: string) => (text += t)).on('end', () => resolve(text));
      h1.end('GET /h1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    });
    // The driver's own head: its Server field, its framing.
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(reply).toContain('"SERVER_PROTOCOL":"HTTP/1.1"');
  });

  it('offers only http/1.1 with http2: false', async () => {
    const { port } = await startServer(environApp, { ...tlsOptions(), http2: false });
    const socket = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, ALPNProtocols: ['h2', 'http/1.1'], servername: 'localhost' });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    expect(socket.alpnProtocol).toBe('http/1.1');
    socket.destroy();
  });

  it('drops connection-specific response fields (RFC 9113 §8.2.2) and keeps the session for the next stream', async () => {
    const app: App = (_environ, startResponse) => {
      startResponse('201 Made', [['Connection', 'close'], ['Keep-Alive', 'timeout=5'], ['X-Kept', 'a'], ['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']]);
      return ['made'];
    };
    const { port } = await startServer(app, tlsOptions());
    const session = await connect(port);
    for (let i = 0; i < 2; i++) {
      const r = await request(session, { ':path': '/' });
      expect(r.headers[':status']).toBe(201);
      expect(r.headers.connection).toBeUndefined();
      expect(r.headers['keep-alive']).toBeUndefined();
      expect(r.headers['x-kept']).toBe('a');
      expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2']);
      expect(r.headers['content-length']).toBe('4');
      expect(r.body.toString()).toBe('made');
    }
    expect(session.closed).toBe(false);
  });

  it('IN-4: reads request bodies with and without a length, hash-checked', async () => {
    const { port } = await startServer(hashApp, tlsOptions());
    const session = await connect(port);
    const data = crypto.randomBytes(3 * 1024 * 1024 + 17);
    const [withLength, without] = await Promise.all([
      request(session, { ':method': 'POST', ':path': '/', 'content-length': String(data.length) }, data),
      request(session, { ':method': 'POST', ':path': '/' }, data),
    ]);
    expect(withLength.body.toString()).toBe(`${data.length} ${sha256(data)}`);
    expect(without.body.toString()).toBe(`${data.length} ${sha256(data)}`);
  });

  it('refuses a body over maxBodySize: 413 for a declared length, a reset stream and a failed read for an undeclared one', async () => {
    const reads: string[] = [];
    const app: App = async function* (environ: Environ, startResponse) {
      let n = 0;
      try {
        for await (const part of environ['nsgi.input']) n += part.length;
        reads.push(`read ${n}`);
      } catch (err) {
        reads.push(`${(err as { status?: number }).status} after ${n}`);
        throw err;
      }
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield String(n);
    };
    const { port } = await startServer(app, { ...tlsOptions(), maxBodySize: 1024, errors: { write: () => {} } });
    const session = await connect(port);
    const declared = await request(session, { ':method': 'POST', ':path': '/', 'content-length': '2048' }, Buffer.alloc(2048));
    expect(declared.headers[':status']).toBe(413);
    expect(declared.body.toString()).toBe('Content-Length 2048 exceeds the limit of 1024 bytes\n');
    expect(reads).toEqual([]);
    const undeclared = session.request({ ':method': 'POST', ':path': '/' });
    undeclared.on('error', () => {});
    undeclared.resume();
    undeclared.end(Buffer.alloc(4096));
    await new Promise((resolve) => undeclared.once('close', resolve));
    expect(undeclared.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    await waitUntil(() => reads.length === 1, 'the app to see its read fail');
    expect(reads[0]).toMatch(/^413 after \d+$/);
    const small = await request(session, { ':method': 'POST', ':path': '/' }, Buffer.alloc(1000));
    expect(small.body.toString()).toBe('1000');
  });

  it('BODY-12: pulls no more of a body than the stream can take while the client does not read', async () => {
    let pulled = 0;
    const CHUNK = 64 * 1024;
    const CHUNKS = 200;
    const app: App = function* (_environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      for (let i = 0; i < CHUNKS; i++) {
        pulled++;
        yield new Uint8Array(CHUNK);
      }
    };
    const { port } = await startServer(app, tlsOptions());
    const session = await connect(port);
    const stream = session.request({ ':path': '/' });
    stream.pause();
    await new Promise((resolve) => stream.once('response', resolve));
    const stuck = await (async () => {
      let last = -1;
      while (pulled !== last) {
        last = pulled;
        await sleep(200);
      }
      return pulled;
    })();
    expect(stuck).toBeLessThan(CHUNKS / 2);
    let received = 0;
    stream.on('data', (b: Buffer) => (received += b.length));
    stream.resume();
    await new Promise((resolve) => stream.once('end', resolve));
    expect(received).toBe(CHUNK * CHUNKS);
    expect(pulled).toBe(CHUNKS);
  });

  it('ENV-27: a client resetting its stream fires nsgi.signal and closes the body once', async () => {
    let returns = 0;
    let aborted: unknown = null;
    const app: App = async function* (environ: Environ, startResponse) {
      if (environ.PATH_INFO === '/again') {
        startResponse('204 No Content', []);
        return;
      }
      environ['nsgi.signal'].addEventListener('abort', () => (aborted = environ['nsgi.signal'].reason));
      startResponse('200 OK', [['Content-Type', 'text/event-stream']]);
      try {
        for (;;) {
          yield 'data: tick\n\n';
          await sleep(20);
        }
      } finally {
        returns++;
      }
    };
    const { port } = await startServer(app, tlsOptions());
    const session = await connect(port);
    const stream = session.request({ ':path': '/events' });
    await new Promise((resolve) => stream.once('data', resolve));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await waitUntil(() => returns > 0 && aborted !== null, 'the body closed');
    await sleep(100);
    expect(returns).toBe(1);
    expect(aborted).toBeInstanceOf(Error);
    // The session carries on.
    expect((await request(session, { ':path': '/again' })).headers[':status']).toBe(204);
  });

  it('serves many streams at once on one connection', async () => {
    const release: Array<() => void> = [];
    const app: App = async function* (environ: Environ, startResponse) {
      await new Promise<void>((resolve) => release.push(resolve));
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield environ.PATH_INFO;
    };
    const { port } = await startServer(app, tlsOptions());
    const session = await connect(port);
    const all = Array.from({ length: 20 }, (_, i) => request(session, { ':path': `/${i}` }));
    await waitUntil(() => release.length === 20, 'twenty requests in the app at once');
    for (const r of release) r();
    const bodies = (await Promise.all(all)).map((r) => r.body.toString());
    expect(bodies).toEqual(Array.from({ length: 20 }, (_, i) => `/${i}`));
  });

  it('ERR-4: an app failing mid-body resets the stream, so the client sees it incomplete', async () => {
    const app: App = function* (_environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield 'part';
      throw new Error('boom');
    };
    const errors: string[] = [];
    const { port } = await startServer(app, { ...tlsOptions(), errors: { write: (t: string) => void errors.push(t) } });
    const session = await connect(port);
    const err = await request(session, { ':path': '/' }).then(() => null, (e: unknown) => e);
    expect((err as { code?: string } | null)?.code).toBe('ERR_HTTP2_STREAM_ERROR');
    expect(errors.join('')).toContain('boom');
  });

  it('sends GOAWAY to a session idle past the keep-alive timeout, and never times a quiet open stream', async () => {
    let release: (() => void) | null = null;
    const app: App = async function* (environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      if (environ.PATH_INFO === '/wait') await new Promise<void>((resolve) => (release = resolve));
      yield 'done';
    };
    const started = await startServer(app, { ...tlsOptions(), keepAliveTimeout: 300 });
    // A session that opens no stream is let go after the timeout, as an idle HTTP/1.1 connection is.
    const idle = await connect(started.port);
    const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
    let idleGoaway = false;
    idle.on('goaway', () => (idleGoaway = true));
    await idleClosed;
    expect(idleGoaway).toBe(true);
    // A stream waiting three timeouts for its event keeps its session; once it ends, the timer runs again.
    const busy = await connect(started.port);
    let busyGoaway = false;
    busy.on('goaway', () => (busyGoaway = true));
    const pending = request(busy, { ':path': '/wait' });
    await waitUntil(() => release !== null, 'the app waiting');
    await sleep(900);
    expect(busyGoaway).toBe(false);
    release!();
    expect((await pending).body.toString()).toBe('done');
    await new Promise<void>((resolve) => busy.once('close', () => resolve()));
    expect(busyGoaway).toBe(true);
  });

  it('close() sends GOAWAY, fires nsgi.signal, lets open streams finish and then resolves', async () => {
    let returns = 0;
    const app: App = async function* (environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/event-stream']]);
      const signal = environ['nsgi.signal'];
      try {
        yield 'data: open\n\n';
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
        yield `data: closing ${(signal.reason as Error).name}\n\n`;
      } finally {
        returns++;
      }
    };
    const started = await startServer(app, tlsOptions());
    const session = await connect(started.port);
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    const pending = request(session, { ':path': '/' });
    await waitUntil(() => started.server.netServer.listening && returns === 0, 'the stream open');
    await sleep(100);
    await started.server.close({ timeout: 5000 });
    const r = await pending;
    expect(goaway).toBe(true);
    expect(r.body.toString()).toBe('data: open\n\ndata: closing ServerClosingError\n\n');
    expect(returns).toBe(1);
  });

  it('close() ends a stream still open at the graceful timeout, calling return() once', async () => {
    let returns = 0;
    const app: App = async function* (_environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/event-stream']]);
      try {
        for (;;) {
          yield 'data: tick\n\n';
          await sleep(50);
        }
      } finally {
        returns++;
      }
    };
    const started = await startServer(app, tlsOptions());
    const session = await connect(started.port);
    const stream = session.request({ ':path': '/' });
    stream.on('error', () => {});
    stream.resume();
    await new Promise((resolve) => stream.once('data', resolve));
    await started.server.close({ timeout: 300 });
    await waitUntil(() => returns > 0, 'the body closed');
    expect(returns).toBe(1);
    expect(stream.destroyed || stream.closed).toBe(true);
  });

  it('new certificates from reloadTls() apply to the h2 connections that follow', async () => {
    const started = await startServer(environApp, tlsOptions());
    const first = await connect(started.port);
    const before = (first.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
    started.server.reloadTls({ cert: renewed.cert, key: renewed.key });
    const second = await connect(started.port, renewed.cert);
    const after = (second.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
    expect(after).not.toBe(before);
    expect((await request(second, { ':path': '/' })).headers[':status']).toBe(200);
    expect((await request(first, { ':path': '/' })).headers[':status']).toBe(200);
  });

  it('writes an access log line per h2 response, protocol HTTP/2', async () => {
    const lines: string[] = [];
    const { port } = await startServer(environApp, { ...tlsOptions(), accessLog: (line) => void lines.push(line) });
    const session = await connect(port);
    const r = await request(session, { ':path': '/logged?a=1', 'user-agent': 'h2-test' });
    await waitUntil(() => lines.length === 1, 'the access log line');
    expect(lines[0]).toMatch(new RegExp(`^127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "GET /logged\\?a=1 HTTP/2" 200 ${r.body.length} "-" "h2-test" \\d+ms$`));
  });

  it('answers curl --http2', async () => {
    const { port } = await startServer(environApp, tlsOptions());
    const r = await curl(['--http2', '--cacert', cert.certfile, '-w', '\n%{http_version}', `https://localhost:${port}/curl?q=1`]);
    expect(r.stderr).toBe('');
    const [json, version] = r.stdout.toString('utf8').split('\n');
    expect(version).toBe('2');
    expect(JSON.parse(json!)).toMatchObject({ SERVER_PROTOCOL: 'HTTP/2', PATH_INFO: '/curl', QUERY_STRING: 'q=1', HTTP_HOST: `localhost:${port}` });
    const h1 = await curl(['--http1.1', '--cacert', cert.certfile, '-w', '\n%{http_version}', `https://localhost:${port}/curl`]);
    expect(h1.stdout.toString('utf8').split('\n')[1]).toBe('1.1');
  });
});
