/**
 * The compression middleware on the real server: negotiation with q-values, the headers it
 * changes, the responses it leaves alone, event streams and flushed chunks arriving one by one
 * (through a raw socket and through `curl -N --compressed`), backpressure to the generator, and
 * the app's iterator closed exactly once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, createGunzip, gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { compress, type CompressFlush } from '../../src/helpers/compress.ts';
import { sse } from '../../src/helpers/sse.ts';
import { staticFiles } from '../../src/helpers/static-files.ts';
import { RawClient, cleanup, curl, finalResponses, header, rawRequest, sleep, startServer, waitUntil, waitUntilSteady } from '../helpers/server.ts';

const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  children.clear();
  await cleanup();
});

const json = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i, name: `item ${i}` })) });

/** jsonApp answers with a JSON document, with Content-Length and a strong ETag. */
const jsonApp: App = (_environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'application/json'], ['Content-Length', String(json.length)], ['ETag', '"v1"']]);
  return [json];
};

/** get sends one GET with extra header lines and returns the parsed response. */
async function get(port: number, headers: string[], target = '/') {
  const lines = [`GET ${target} HTTP/1.1`, 'Host: x', 'Connection: close', ...headers, '', ''].join('\r\n');
  const result = await rawRequest(port, Buffer.from(lines, 'latin1'));
  return finalResponses(result.data, { closed: result.closed })[0]!;
}

/** Gate lets a test release a generator's next chunk only once the client has seen the last. */
class Gate {
  private waiters: Array<() => void> = [];
  private opened = 0;
  open(): void {
    this.opened++;
    this.waiters.shift()?.();
  }
  wait(): Promise<void> {
    if (this.opened > 0) {
      this.opened--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(() => {
      this.opened--;
      resolve();
    }));
  }
}

describe('compress: negotiation and headers', () => {
  it('decodes to the same JSON through curl --compressed, with Content-Encoding and Vary', async () => {
    const { url } = await startServer(compress(jsonApp));
    const result = await curl(['--compressed', '-D', '-', url]);
    const text = result.stdout.toString();
    const split = text.indexOf('\r\n\r\n');
    const head = text.slice(0, split);
    expect(text.slice(split + 4)).toBe(json);
    expect(head).toMatch(/Content-Encoding: (br|gzip)/);
    expect(head).toContain('Vary: Accept-Encoding');
    expect(head).not.toContain('Content-Length');
  });

  it('picks the coding with the highest q-value, identity when asked, and weakens the ETag', async () => {
    const { port } = await startServer(compress(jsonApp));
    const gz = await get(port, ['Accept-Encoding: br;q=0.5, gzip;q=0.9']);
    expect(header(gz, 'content-encoding')).toBe('gzip');
    expect(gunzipSync(gz.body).toString()).toBe(json);
    expect(header(gz, 'etag')).toBe('W/"v1"');
    expect(header(gz, 'vary')).toBe('Accept-Encoding');
    const br = await get(port, ['Accept-Encoding: gzip, br']);
    expect(header(br, 'content-encoding')).toBe('br');
    expect(brotliDecompressSync(br.body).toString()).toBe(json);
    const star = await get(port, ['Accept-Encoding: *']);
    expect(header(star, 'content-encoding')).toBe('br');
    for (const field of ['identity', 'gzip;q=0, br;q=0', 'identity;q=1, gzip;q=0.5', 'gzip;q=2', 'compress']) {
      const plain = await get(port, [`Accept-Encoding: ${field}`]);
      expect(header(plain, 'content-encoding'), field).toBeUndefined();
      expect(plain.body.toString(), field).toBe(json);
      expect(header(plain, 'etag')).toBe('"v1"');
      expect(header(plain, 'vary')).toBe('Accept-Encoding');
    }
    expect(header(await get(port, []), 'content-encoding')).toBeUndefined();
  });

  it('adds Accept-Encoding to an existing Vary once', async () => {
    const app: App = (_e, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain'], ['Vary', 'Origin']]);
      return ['x'.repeat(4000)];
    };
    const { port } = await startServer(compress(app));
    expect(header(await get(port, ['Accept-Encoding: gzip']), 'vary')).toBe('Origin, Accept-Encoding');
  });
});

describe('compress: responses left alone', () => {
  const cases: Array<[string, string[], string[]]> = [
    ['a small body of known size', ['Content-Type: text/plain', 'Content-Length: 5'], []],
    ['Cache-Control: no-transform', ['Content-Type: text/plain', 'Cache-Control: public, no-transform'], []],
    ['an already encoded body', ['Content-Type: text/plain', 'Content-Encoding: gzip'], []],
    ['a type that does not compress', ['Content-Type: image/png'], []],
    ['no Content-Type', [], []],
    ['a request with Range', ['Content-Type: text/plain'], ['Range: bytes=0-10']],
  ];
  for (const [what, responseHeaders, requestHeaders] of cases) {
    it(`passes ${what} through untouched`, async () => {
      const body = what.startsWith('a small') ? 'hello' : 'abc'.repeat(1000);
      const app: App = (_e, startResponse) => {
        startResponse('200 OK', responseHeaders.map((line) => line.split(': ') as [string, string]));
        return [body];
      };
      const { port } = await startServer(compress(app));
      const response = await get(port, ['Accept-Encoding: gzip, br', ...requestHeaders]);
      expect(response.body.toString()).toBe(body);
      expect(header(response, 'content-encoding')).toBe(what.startsWith('an already') ? 'gzip' : undefined);
    });
  }

  it('passes a 206 through untouched', async () => {
    const app: App = (_e, startResponse) => {
      startResponse('206 Partial Content', [['Content-Type', 'text/plain'], ['Content-Range', 'bytes 0-2999/9000']]);
      return ['abc'.repeat(1000)];
    };
    const { port } = await startServer(compress(app));
    expect(header(await get(port, ['Accept-Encoding: gzip']), 'content-encoding')).toBeUndefined();
  });
});

describe('compress: streaming', () => {
  it('sends each event of an event stream as it comes: the next one waits for the client to see the last', async () => {
    const gate = new Gate();
    const app = compress(sse(async function* () {
      for (let i = 1; i <= 3; i++) {
        yield { id: String(i), data: `event ${i} ${'padding '.repeat(20)}` };
        await gate.wait();
      }
    }));
    const { port } = await startServer(app);
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n\n');
    const gunzip = createGunzip();
    let head = Buffer.alloc(0);
    let inBody = false;
    let text = '';
    const arrivals: number[] = [];
    gunzip.on('data', (data: Buffer) => {
      text += data.toString();
      const seen = text.split('\n\n').length - 1;
      while (arrivals.length < seen) {
        arrivals.push(Date.now());
        gate.open(); // only now may the app produce the next event
      }
    });
    client.socket.on('data', (data: Buffer) => {
      if (inBody) return void gunzip.write(dechunk(data));
      head = Buffer.concat([head, data]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      inBody = true;
      expect(head.subarray(0, end).toString()).toContain('Content-Encoding: gzip');
      gunzip.write(dechunk(head.subarray(end + 4)));
    });
    client.socket.resume();
    await waitUntil(() => arrivals.length === 3, 'three events decoded one by one');
    expect(text).toContain('id: 3');
  });

  it('delivers SSE event by event to curl -N --compressed', async () => {
    const gate = new Gate();
    const app = compress(sse(async function* () {
      for (let i = 1; i <= 3; i++) {
        yield { data: `tick ${i}` };
        await gate.wait();
      }
    }));
    const { url } = await startServer(app);
    const child = spawn('/usr/bin/curl', ['-N', '--silent', '--compressed', '--max-time', '10', url]);
    children.add(child);
    let out = '';
    const seen: string[] = [];
    child.stdout.on('data', (data: Buffer) => {
      out += data.toString();
      for (const match of out.matchAll(/data: (tick \d)\n\n/g)) {
        if (!seen.includes(match[1]!)) {
          seen.push(match[1]!);
          gate.open();
        }
      }
    });
    await waitUntil(() => seen.length === 3, 'three ticks through curl');
    expect(seen).toEqual(['tick 1', 'tick 2', 'tick 3']);
  });

  it('flushes a chunk the app marks with compress.flush', async () => {
    const gate = new Gate();
    const app = compress(async function* (environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      const flush = environ['compress.flush'] as CompressFlush;
      flush();
      yield 'first line of the answer\n';
      await gate.wait();
      yield 'second\n';
    });
    const { port } = await startServer(app);
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n\n');
    const gunzip = createGunzip();
    let text = '';
    gunzip.on('data', (data: Buffer) => {
      text += data.toString();
      if (text.includes('first line')) gate.open();
    });
    let head = true;
    client.socket.on('data', (data: Buffer) => {
      if (head) {
        const end = data.indexOf('\r\n\r\n');
        head = false;
        return void gunzip.write(dechunk(data.subarray(end + 4)));
      }
      gunzip.write(dechunk(data));
    });
    client.socket.resume();
    await waitUntil(() => text.includes('second'), 'both lines');
  });

  it('keeps pulling in step with a client that reads nothing, and closes the app body once when it leaves', async () => {
    let pulled = 0;
    let returned = 0;
    const app = compress((_e, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      const chunk = randomBytes(64 * 1024).toString('base64'); // compresses little
      return {
        [Symbol.iterator]() {
          return {
            next: () => (pulled++, { done: false, value: chunk }),
            return: () => (returned++, { done: true, value: undefined }),
          };
        },
      } as Iterable<string>;
    });
    const { port } = await startServer(app);
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n\n');
    await waitUntil(() => pulled > 10, 'the first pulls');
    // The socket's buffers fill and the pulling stops: at most a few MiB sit in buffers.
    const settled = await waitUntilSteady(() => pulled, 'the pull count', 300, 10_000);
    expect(settled * 64 * 1024).toBeLessThan(64 * 1024 * 1024);
    client.destroy();
    await waitUntil(() => returned === 1, 'return() after the client left');
    await sleep(50);
    expect(returned).toBe(1);
  });

  it('compresses what the app sends through write()', async () => {
    const app = compress(async (_e, startResponse) => {
      const write = startResponse('200 OK', [['Content-Type', 'text/plain']]);
      await write('pushed '.repeat(300));
      return ['yielded'];
    });
    const { port } = await startServer(app);
    const response = await get(port, ['Accept-Encoding: gzip']);
    expect(gunzipSync(response.body).toString()).toBe('pushed '.repeat(300) + 'yielded');
  });
});

/**
 * dechunk strips chunked framing from bytes that hold whole chunks only (each flushed output
 * arrives as its own chunk in these tests).
 */
function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    const line = data.indexOf('\r\n', at);
    if (line < 0) break;
    const size = parseInt(data.subarray(at, line).toString(), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(line + 2, line + 2 + size));
    at = line + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

describe('compress: HEAD and conditional requests', () => {
  it('answers HEAD with the GET head (Content-Encoding, no Content-Length) and no body', async () => {
    const { port, errors } = await startServer(compress(jsonApp));
    const result = await rawRequest(port, Buffer.from('HEAD / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n'));
    const [response] = finalResponses(result.data, { noBody: () => true, closed: result.closed });
    expect(header(response!, 'content-encoding')).toBe('gzip');
    expect(header(response!, 'content-length')).toBeUndefined();
    expect(result.text.endsWith('\r\n\r\n')).toBe(true);
    await sleep(50);
    expect(errors).toEqual([]);
  });

  it('lets the weakened ETag of a compressed file come back as a 304 from staticFiles', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nsgi-compress-'));
    try {
      await writeFile(join(dir, 'data.json'), json);
      const { port } = await startServer(compress(staticFiles(dir)));
      const first = await get(port, ['Accept-Encoding: gzip'], '/data.json');
      expect(header(first, 'content-encoding')).toBe('gzip');
      const etag = header(first, 'etag')!;
      expect(etag).toMatch(/^W\//);
      const again = await get(port, ['Accept-Encoding: gzip', `If-None-Match: ${etag}`], '/data.json');
      expect(again.status).toBe(304);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('compress: excInfo', () => {
  it('keeps a body it passed on uncompressed so when the app replaces its head with an error page', async () => {
    const app = compress((_environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'image/png']]);
      return (function* () {
        try {
          throw new Error('failed before the first chunk');
        } catch (err) {
          startResponse('500 Internal Server Error', [['Content-Type', 'text/plain']], err);
          yield 'error page '.repeat(200);
        }
      })();
    });
    const { port } = await startServer(app);
    const response = await get(port, ['Accept-Encoding: gzip']);
    expect(response.status).toBe(500);
    expect(header(response, 'content-encoding')).toBeUndefined();
    expect(response.body.toString()).toBe('error page '.repeat(200));
  });
});
