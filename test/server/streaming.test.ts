/**
 * Streaming under load, over real loopback sockets: a client that stops reading stops the
 * generator (backpressure), a client that leaves ends it (disconnect), and a 1 GiB body streams
 * with bounded memory.
 */

import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { GET, RawClient, cleanup, finalResponses, header, sha256, sleep, stalledDownload, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

const KIB = 1024;
const MIB = 1024 * KIB;
/** Producer is an app whose endless sync generator yields 64 KiB chunks, counting them. */
interface Producer {
  app: App;
  produced: number;
  finallyRan: boolean;
  signal: AbortSignal | undefined;
}

function endlessProducer(): Producer {
  const chunk = Buffer.alloc(64 * KIB, 0x62);
  const p: Producer = {
    produced: 0,
    finallyRan: false,
    signal: undefined,
    app: (environ, startResponse) => {
      p.signal = environ['nsgi.signal'];
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      return (function* () {
        try {
          for (;;) {
            p.produced++;
            yield chunk;
          }
        } finally {
          p.finallyRan = true;
        }
      })();
    },
  };
  return p;
}

describe('backpressure', () => {
  it('BODY-12: stops pulling the generator while the client reads nothing, and resumes when it reads', async () => {
    const p = endlessProducer();
    const { port } = await startServer(p.app);
    const client = await RawClient.connect(port, { collect: false });
    client.socket.pause();
    client.write(GET);
    await waitUntil(() => p.produced > 0, 'the generator to start');
    await sleep(1000);
    const afterOneSecond = p.produced;
    await sleep(500);
    const later = p.produced;
    expect(later).toBe(afterOneSecond);
    expect(later).toBeLessThan((8 * MIB) / (64 * KIB));

    let received = 0;
    client.socket.on('data', (data: Buffer) => {
      received += data.length;
    });
    client.socket.resume();
    await waitUntil(() => p.produced > later + 32, 'the generator to produce again once the client reads');
    expect(received).toBeGreaterThan(later * 32 * KIB);
    expect(p.finallyRan).toBe(false);

    client.destroy();
    await waitUntil(() => p.finallyRan, "the generator's finally to run", 1000);
  });
});

describe('disconnect', () => {
  it("BODY-16, ENV-27: runs the generator's finally and fires nsgi.signal when fetch aborts mid-stream", async () => {
    let finallyRan = false;
    let signal: AbortSignal | undefined;
    const { url } = await startServer((environ, startResponse) => {
      signal = environ['nsgi.signal'];
      startResponse('200 OK', []);
      return (async function* () {
        try {
          for (let i = 0; ; i++) {
            yield `tick ${i}\n`;
            await sleep(20);
          }
        } finally {
          finallyRan = true;
        }
      })();
    });
    const controller = new AbortController();
    const res = await fetch(url, { signal: controller.signal });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('tick 0');
    expect(signal?.aborted).toBe(false);
    controller.abort();
    await reader.read().catch(() => undefined);
    await waitUntil(() => finallyRan && signal!.aborted, "the generator's finally and nsgi.signal", 1000);
  });

  it("BODY-16, ENV-27: runs the generator's finally and fires nsgi.signal when a raw client is destroyed mid-stream", async () => {
    const p = endlessProducer();
    const { port } = await startServer(p.app);
    const client = await RawClient.connect(port);
    client.write(GET);
    await client.waitFor((data) => data.length > MIB, 'a MiB of the body');
    expect(p.signal?.aborted).toBe(false);
    client.destroy();
    await waitUntil(() => p.finallyRan && p.signal!.aborted, "the generator's finally and nsgi.signal", 1000);
  });
});

describe('a 1 GiB response', () => {
  it('downloads intact over raw TCP while the server RSS grows by less than 200 MiB', { timeout: 60_000 }, async () => {
    const CHUNK = 64 * KIB;
    const TOTAL = 1024 * MIB;
    const chunk = Buffer.alloc(CHUNK);
    for (let i = 0; i < CHUNK; i++) chunk[i] = (i * 7 + (i >> 8)) & 0xff;
    const expectedHash = createHash('sha256');
    for (let sent = 0; sent < TOTAL; sent += CHUNK) expectedHash.update(chunk);
    const expected = expectedHash.digest('hex');

    let finallyRan = false;
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', [['Content-Length', String(TOTAL)], ['Content-Type', 'application/octet-stream']]);
      return (function* () {
        try {
          for (let sent = 0; sent < TOTAL; sent += CHUNK) yield chunk;
        } finally {
          finallyRan = true;
        }
      })();
    });

    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    const socket = net.connect({ port, host: '127.0.0.1' });
    try {
      const result = await new Promise<{ head: string; bytes: number; hash: string }>((resolve, reject) => {
        const hash = createHash('sha256');
        let headBuf = Buffer.alloc(0);
        let head: string | null = null;
        let bytes = 0;
        const timer = setTimeout(() => reject(new Error(`download stalled at ${bytes} bytes`)), 55_000);
        socket.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        socket.on('close', () => {
          clearTimeout(timer);
          reject(new Error(`connection closed after ${bytes} body bytes`));
        });
        socket.on('data', (data: Buffer) => {
          if (head === null) {
            headBuf = Buffer.concat([headBuf, data]);
            const end = headBuf.indexOf('\r\n\r\n');
            if (end === -1) return;
            head = headBuf.toString('latin1', 0, end + 4);
            data = headBuf.subarray(end + 4);
          }
          bytes += data.length;
          hash.update(data);
          if (bytes >= TOTAL) {
            clearTimeout(timer);
            resolve({ head, bytes, hash: hash.digest('hex') });
          }
        });
        socket.write('GET /big HTTP/1.1\r\nHost: t\r\n\r\n');
      });
      const [r] = finalResponses(Buffer.from(result.head, 'latin1'), { noBody: () => true });
      expect(r?.status).toBe(200);
      expect(header(r!, 'content-length')).toBe(String(TOTAL));
      expect(result.bytes).toBe(TOTAL);
      expect(result.hash).toBe(expected);
      expect(peak - baseline).toBeLessThan(200 * MIB);
      await waitUntil(() => finallyRan, "the generator's finally", 1000);
    } finally {
      clearInterval(sampler);
      socket.destroy();
    }
  });
});

/**
 * smallChunks is a body of `total` bytes in chunks of about 1 KiB, every chunk a fresh buffer (or,
 * every fifth one, a string with two-byte characters) whose bytes depend on its index, so that a
 * chunk overwritten by a later one before it was sent cannot go unnoticed.
 */
function smallChunks(total: number): Array<Buffer | string> {
  const chunks: Array<Buffer | string> = [];
  let made = 0;
  for (let i = 0; made < total; i++) {
    let chunk: Buffer | string;
    if (i % 5 === 4) {
      chunk = `${i}:${'é'.repeat(400 + (i % 89))}\n`;
    } else {
      chunk = Buffer.allocUnsafe(900 + (i % 251));
      for (let j = 0; j < chunk.length; j++) chunk[j] = (i * 31 + j * 7) & 0xff;
    }
    chunks.push(chunk);
    made += Buffer.byteLength(chunk);
  }
  return chunks;
}

describe('a large body in small chunks', () => {
  // More than the loopback socket's kernel buffers hold, so that the server's writes stop part
  // way and its output memory is reused only after drain.
  const TOTAL = 12 * MIB;
  const chunks = smallChunks(TOTAL);
  const expected = Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));

  const bodies = {
    'a sync generator': () => chunks.values(),
    'an async generator': async function* () {
      yield* chunks;
    },
  };

  it.each(['a sync generator', 'an async generator', 'write() calls that do not wait for drain'] as const)(
    'arrives intact from %s to a client that stalls, and so does the next response on the connection',
    { timeout: 30_000 },
    async (source) => {
      const { port } = await startServer((_env, startResponse) => {
        const write = startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
        if (source !== 'write() calls that do not wait for drain') return bodies[source]();
        // Everything is pushed at once: the server must keep every byte the socket still holds.
        // A wait for drain still pending when the connection closes ends in ClientGoneError.
        for (const chunk of chunks) write(chunk).catch(() => undefined);
        return [];
      });
      const responses = await stalledDownload(port);
      expect(responses.map((r) => [r.status, r.complete])).toEqual([
        [200, true],
        [200, true],
      ]);
      expect(sha256(responses[0]!.body)).toBe(sha256(expected));
      expect(sha256(responses[1]!.body)).toBe(sha256(expected));
    },
  );
});
