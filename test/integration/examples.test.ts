/**
 * Every example, served by the real server on an ephemeral port and requested over TCP with fetch
 * (and with curl where curl's own behaviour is the point: `Expect: 100-continue`, a truncated
 * body). Each server's `nsgi.errors` lines are captured, so the tests can see the generators'
 * `finally` blocks run.
 */

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { serve } from '../../src/index.ts';
import { app as clock } from '../../examples/clock.ts';
import { app as demo } from '../../examples/demo.ts';
import { app as errorsApp } from '../../examples/errors.ts';
import { app as hello } from '../../examples/hello.ts';
import { app as stream } from '../../examples/stream.ts';
import { app as upload } from '../../examples/upload.ts';

type Server = Awaited<ReturnType<typeof serve>>;

const MIB = 1024 * 1024;
const servers: Server[] = [];

/** Served is one example on its own server, with the lines it wrote to `nsgi.errors`. */
interface Served {
  readonly url: string;
  readonly errors: string[];
}

/** start serves `app` on an ephemeral port; afterAll closes it. */
async function start(app: App): Promise<Served> {
  const errors: string[] = [];
  const server = await serve(app, { port: 0, errors: { write: (message) => void errors.push(message) } });
  servers.push(server);
  return { url: `http://127.0.0.1:${server.port}`, errors };
}

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close({ timeout: 2000 })));
});

/** sha256 hashes bytes to hex. */
function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** expectedStreamHash hashes `mb` MiB of the bytes 0, 1, ..., 255 repeated, as stream.ts documents. */
function expectedStreamHash(mb: number): string {
  const block = Buffer.alloc(MIB);
  for (let i = 0; i < block.length; i++) block[i] = i % 256;
  const hash = createHash('sha256');
  for (let i = 0; i < mb; i++) hash.update(block);
  return hash.digest('hex');
}

/** readAll reads a response body chunk by chunk into a running hash, never holding it whole. */
async function hashBody(res: Response): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hash.update(value);
    bytes += value.byteLength;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** waitFor polls `check` every 20 ms until it returns a value, or fails after `ms`. */
async function waitFor<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** curl runs curl with `args` and resolves with its exit code and output; it never rejects. */
function curl(args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', args, { timeout: timeoutMs, maxBuffer: 16 * MIB }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'nsgi-examples-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('hello', () => {
  it('answers the seed article\'s line from the method and PATH_INFO', async () => {
    const { url } = await start(hello);
    const res = await fetch(`${url}/user/1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await res.text()).toBe('Request GET /user/1 has been processed\n');
    expect(await (await fetch(`${url}/orders/7`, { method: 'DELETE' })).text()).toBe('Request DELETE /orders/7 has been processed\n');
  });
});

describe('stream', () => {
  let served: Served;
  beforeAll(async () => {
    served = await start(stream);
  });

  it('sends 64 MiB by default with a Content-Length, every byte in place', async () => {
    const res = await fetch(served.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(64 * MIB));
    expect(res.headers.get('transfer-encoding')).toBeNull();
    expect(await hashBody(res)).toEqual({ bytes: 64 * MIB, sha256: expectedStreamHash(64) });
  });

  it('sends ?mb=N MiB, an empty body for 0, and caps N at 4096', async () => {
    const three = await fetch(`${served.url}/?mb=3`);
    expect(await hashBody(three)).toEqual({ bytes: 3 * MIB, sha256: expectedStreamHash(3) });

    const none = await fetch(`${served.url}/?mb=0`);
    expect(none.headers.get('content-length')).toBe('0');
    expect(await none.text()).toBe('');

    const capped = await fetch(`${served.url}/?mb=100000`);
    expect(capped.headers.get('content-length')).toBe(String(4096 * MIB));
    await capped.body?.cancel();
  });

  it('answers 400 to a size that is not a whole number', async () => {
    const res = await fetch(`${served.url}/?mb=lots`);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('"lots"');
  });

  it('is pulled only as fast as the client reads, and cleaned up when it leaves', async () => {
    const res = await fetch(`${served.url}/?mb=1024`);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let read = 0;
    while (read < MIB) read += ((await reader.read()).value as Uint8Array).byteLength;
    // A server that pushed instead of pulling would race through the whole GiB meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await reader.cancel();
    const finished = (): RegExpExecArray | undefined => {
      for (const line of served.errors) {
        const match = /^stream: stopped early, ([\d.]+) of 1024 MiB pulled$/.exec(line);
        if (match) return match;
      }
      return undefined;
    };
    const pulled = Number((await waitFor(finished, 5000, 'the generator\'s finally'))[1]);
    // What the socket buffers and fetch's stream hold, a few MiB; far from 1024.
    expect(pulled).toBeGreaterThanOrEqual(1);
    expect(pulled).toBeLessThan(64);
  });
});

describe('clock', () => {
  let served: Served;
  beforeAll(async () => {
    served = await start(clock);
  });

  it('sends the head at once and then one line a second', async () => {
    const startedAt = Date.now();
    const res = await fetch(`${served.url}/?n=3`);
    const headAt = Date.now();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');

    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const arrivals: number[] = [];
    let text = '';
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      arrivals.push(Date.now());
      text += decoder.decode(value, { stream: true });
    }
    // The head did not wait for the first tick, which comes a second later.
    expect(headAt - startedAt).toBeLessThan(700);
    expect((arrivals[0] as number) - headAt).toBeGreaterThanOrEqual(700);

    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(3);
    const times = lines.map((line) => Date.parse(line));
    for (const time of times) expect(time).not.toBeNaN();
    expect((times[2] as number) - (times[0] as number)).toBeGreaterThanOrEqual(1500);
    await waitFor(() => served.errors.find((l) => l === 'clock: 3 of 3 ticks sent'), 2000, 'the clock\'s finally');
  });

  it('ENV-29: stops waiting as soon as the client leaves, through nsgi.signal', async () => {
    const controller = new AbortController();
    const res = await fetch(`${served.url}/?n=60`, { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toMatch(/^\d{4}-\d\d-\d\dT/);
    const leftAt = Date.now();
    controller.abort();
    await waitFor(() => served.errors.find((l) => l.startsWith('clock: 1 of 60 ticks sent, stopped: the client closed')), 3000, 'the clock to stop');
    // Well before the next tick was due: the abort, not the next write, ended the wait.
    expect(Date.now() - leftAt).toBeLessThan(800);
  });
});

describe('upload', () => {
  let served: Served;
  let file: string;
  let data: Buffer;
  beforeAll(async () => {
    served = await start(upload);
    data = randomBytes(5 * MIB + 123);
    file = path.join(tmp, 'upload.bin');
    await writeFile(file, data);
  });

  it('shows a usage hint on GET', async () => {
    const res = await fetch(served.url);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(`curl -T some-file ${served.url}/`);
  });

  it('hashes a POSTed body of a few MiB', async () => {
    const res = await fetch(served.url, { method: 'POST', body: data });
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ bytes: data.length, sha256: sha256(data) });
  });

  it('APP-5: hashes two uploads that arrive interleaved, each on its own, sharing no state between them', async () => {
    const a = randomBytes(2 * MIB);
    const b = randomBytes(2 * MIB + 7);
    /** interleaved sends `body` in 64 KiB parts, yielding to the other upload between parts. */
    const interleaved = (body: Buffer): ReadableStream<Uint8Array> => {
      let at = 0;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (at >= body.length) return controller.close();
          controller.enqueue(body.subarray(at, at + 64 * 1024));
          at += 64 * 1024;
          await new Promise((resolve) => setTimeout(resolve, 1));
        },
      });
    };
    const post = (body: Buffer): Promise<unknown> =>
      fetch(served.url, { method: 'POST', body: interleaved(body), duplex: 'half' } as RequestInit).then((res) => res.json());
    const [ra, rb] = await Promise.all([post(a), post(b)]);
    expect(ra).toEqual({ bytes: a.length, sha256: sha256(a) });
    expect(rb).toEqual({ bytes: b.length, sha256: sha256(b) });
  });

  it('hashes a chunked body streamed by the client', async () => {
    const parts = [data.subarray(0, 1000), data.subarray(1000, 3 * MIB), data.subarray(3 * MIB)];
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const part = parts.shift();
        if (part === undefined) controller.close();
        else controller.enqueue(part);
      },
    });
    const res = await fetch(served.url, { method: 'PUT', body, duplex: 'half' });
    expect(await res.json()).toEqual({ bytes: data.length, sha256: sha256(data) });
  });

  it('answers curl -T with Expect: 100-continue, sending 100 when the app reads', async () => {
    // --expect100-timeout 30: if the server never sent 100 Continue, curl would wait 30 s first.
    const startedAt = Date.now();
    const result = await curl(['-sS', '-T', file, '-H', 'Expect: 100-continue', '--expect100-timeout', '30', '-w', '%{http_code}', `${served.url}/`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // The JSON ends with a newline, then -w appends the status code.
    const [json, status] = result.stdout.split('\n');
    expect(status).toBe('200');
    expect(JSON.parse(json as string)).toEqual({ bytes: data.length, sha256: sha256(data) });
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  });

  it('hashes curl --data-binary @file', async () => {
    const result = await curl(['-sS', '--data-binary', `@${file}`, `${served.url}/`]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ bytes: data.length, sha256: sha256(data) });
  });

  it('answers 405 with Allow to other methods', async () => {
    const res = await fetch(served.url, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, POST, PUT');
  });
});

describe('errors', () => {
  let served: Served;
  beforeAll(async () => {
    served = await start(errorsApp);
  });

  it('turns a failure before the first chunk into a 500 page through excInfo', async () => {
    const res = await fetch(`${served.url}/`);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const page = await res.text();
    expect(page).toContain('<h1>500 Internal Server Error</h1>');
    expect(page).toContain('the database is unreachable');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(page)));
    expect(served.errors.some((l) => l.startsWith('errors example: Error: the report for / could not be built'))).toBe(true);
  });

  it('cuts the body short when the failure comes after the first chunk (fetch)', async () => {
    const res = await fetch(`${served.url}/late`);
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
  });

  it('cuts the body short when the failure comes after the first chunk (curl)', async () => {
    const result = await curl(['-sS', `${served.url}/late`]);
    // 18: CURLE_PARTIAL_FILE, the chunked body ended without its last chunk.
    expect(result.code).toBe(18);
    expect(result.stdout).toBe('This line is sent. The next one fails, after the head has left.\n');
  });
});

describe('demo', () => {
  let served: Served;
  beforeAll(async () => {
    served = await start(demo);
  });

  it('serves an index page linking every example', async () => {
    const res = await fetch(`${served.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const page = await res.text();
    for (const href of ['/hello/user/1', '/stream?mb=16', '/clock?n=10', '/upload', '/errors', '/errors/late']) {
      expect(page).toContain(`href="${href}"`);
    }
  });

  it('routes /hello/... with the prefix moved to SCRIPT_NAME', async () => {
    expect(await (await fetch(`${served.url}/hello/user/1`)).text()).toBe('Request GET /user/1 has been processed\n');
    expect(await (await fetch(`${served.url}/hello`)).text()).toBe('Request GET  has been processed\n');
  });

  it('routes /stream', async () => {
    expect(await hashBody(await fetch(`${served.url}/stream?mb=2`))).toEqual({ bytes: 2 * MIB, sha256: expectedStreamHash(2) });
  });

  it('routes /clock', async () => {
    expect(await (await fetch(`${served.url}/clock?n=1`)).text()).toMatch(/^\d{4}-\d\d-\d\dT[^\n]+Z\n$/);
  });

  it('routes /upload, whose hint uses its mount path', async () => {
    const data = randomBytes(300_000);
    const res = await fetch(`${served.url}/upload`, { method: 'POST', body: data });
    expect(await res.json()).toEqual({ bytes: data.length, sha256: sha256(data) });
    expect(await (await fetch(`${served.url}/upload`)).text()).toContain(`curl -T some-file ${served.url}/upload\n`);
  });

  it('routes /errors and /errors/late', async () => {
    const page = await fetch(`${served.url}/errors`);
    expect(page.status).toBe(500);
    expect(await page.text()).toContain('500 Internal Server Error');
    const late = await fetch(`${served.url}/errors/late`);
    await expect(late.text()).rejects.toThrow();
  });

  it('answers 404 to anything else, including a prefix that is not a whole segment', async () => {
    for (const target of ['/nope', '/hellox', '/streaming', '/index.html']) {
      const res = await fetch(`${served.url}${target}`);
      expect(res.status, target).toBe(404);
      expect(await res.text()).toBe(`Not Found: ${target}\n`);
    }
  });
});
