/**
 * FileReader and fileBody in memory: the range read, the handle owned and closed by the body,
 * argument checks, reused read buffers, and the choice between the server's `nsgi.file_wrapper`
 * and the plain reader; then a large file through the reference server, byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Body, Environ, FileWrapper } from '../../protocol/nsgi.ts';
import { FILE_READ_SIZE, FileReader, fileBody } from '../../src/helpers/file-body.ts';
import { cleanup, sha256, stalledDownload, startServer } from '../helpers/server.ts';

let dir: string;
let path: string;
const data = randomBytes(3 * FILE_READ_SIZE + 123);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nsgi-file-body-'));
  path = join(dir, 'data.bin');
  await writeFile(path, data);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** collect reads a body whole. */
async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of body) parts.push(part);
  return Buffer.concat(parts);
}

describe('FileReader', () => {
  it('EXT-15: reads the range asked for, in chunks of at most FILE_READ_SIZE, each a fresh buffer', async () => {
    const reader = new FileReader(path, { offset: 100, length: 2 * FILE_READ_SIZE + 7 });
    const chunks: Uint8Array[] = [];
    for await (const chunk of reader) chunks.push(chunk);
    expect(chunks.map((c) => c.length)).toEqual([FILE_READ_SIZE, FILE_READ_SIZE, 7]);
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(3);
    expect(Buffer.concat(chunks).equals(data.subarray(100, 100 + 2 * FILE_READ_SIZE + 7))).toBe(true);
  });

  it('EXT-19: owns a handle handed to it, and closes it when the body ends', async () => {
    const handle = await open(path, 'r');
    expect((await collect(new FileReader(handle, { offset: data.length - 10 }))).equals(data.subarray(-10))).toBe(true);
    expect(handle.fd).toBe(-1);
  });

  it('EXT-17: closes its handle at return() before the first pull, once', async () => {
    const handle = await open(path, 'r');
    let closes = 0;
    const close = handle.close.bind(handle);
    handle.close = () => (closes++, close());
    const reader = new FileReader(handle);
    await reader.return();
    await reader.return();
    expect(closes).toBe(1);
    expect(await reader.next()).toEqual({ done: true, value: undefined });
  });

  it.each(['its first look at the file', 'a read'])('EXT-17: return() during %s closes the handle once, after it; the pull ends the body', async (phase) => {
    const handle = await open(path, 'r');
    let closes = 0;
    const close = handle.close.bind(handle);
    handle.close = () => (closes++, close());
    const reader = new FileReader(handle);
    if (phase === 'a read') expect((await reader.next()).done).toBe(false);
    const pulling = reader.next();
    const returning = reader.return();
    expect(await pulling).toEqual({ done: true, value: undefined });
    expect(await returning).toEqual({ done: true, value: undefined });
    expect(closes).toBe(1);
    expect(handle.fd).toBe(-1);
  });

  it('EXT-17: return() while a path is being opened leaves no file open', async () => {
    const openFiles = (): number => readdirSync('/proc/self/fd').length;
    const before = openFiles();
    const reader = new FileReader(path);
    const pulling = reader.next();
    const returning = reader.return();
    expect(await pulling).toEqual({ done: true, value: undefined });
    await returning;
    expect(openFiles()).toBe(before);
  });

  it('EXT-15: fails, and closes the file, when the file is shorter than the range', async () => {
    const handle = await open(path, 'r');
    const reader = new FileReader(handle, { offset: data.length - 5, length: 50 });
    await expect(collect(reader)).rejects.toThrow(/ended 45 bytes before the end of its body/);
    expect(handle.fd).toBe(-1);
  });

  it('reads into the buffer of its previous chunk only while the consumer says it is done with every chunk', async () => {
    let consumerDone = false;
    const reader = new FileReader(path, { offset: 5 });
    reader.reuseBuffers(() => consumerDone);
    const held: Uint8Array[] = [];
    const copies: Buffer[] = [];
    for (;;) {
      const r = await reader.next();
      if (r.done === true) break;
      held.push(r.value);
      copies.push(Buffer.from(r.value));
      // The first chunk is still held when the second is read; after that, each is let go
      // before the next pull.
      consumerDone = held.length >= 2;
    }
    expect(Buffer.concat(copies).equals(data.subarray(5))).toBe(true);
    expect(held.length).toBe(4);
    // The first chunk was held when the second was read: a new buffer, and the first intact.
    expect(held[1]!.buffer).not.toBe(held[0]!.buffer);
    expect(Buffer.from(held[0]!).equals(copies[0]!)).toBe(true);
    // From then on each read went into the buffer of the one before.
    expect(held[2]!.buffer).toBe(held[1]!.buffer);
    expect(held[3]!.buffer).toBe(held[2]!.buffer);
  });

  it('EXT-18: refuses a bad offset, length or file at once', () => {
    expect(() => new FileReader(path, { offset: -1 })).toThrow(RangeError);
    expect(() => new FileReader(path, { length: 1.5 })).toThrow(/length must be a whole number/);
    expect(() => new FileReader(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('fileBody', () => {
  it("uses the server's nsgi.file_wrapper when offered, and the plain reader otherwise", async () => {
    const calls: unknown[] = [];
    const wrapper: FileWrapper = (file, options) => {
      calls.push([file, options]);
      return ['from the wrapper'];
    };
    const offered = { 'nsgi.file_wrapper': wrapper } as unknown as Environ;
    expect(fileBody(offered, path, { length: 3 })).toEqual(['from the wrapper']);
    expect(calls).toEqual([[path, { length: 3 }]]);
    const plain = fileBody({} as Environ, path, { length: 3 });
    expect(plain).toBeInstanceOf(FileReader);
    expect((await collect(plain as FileReader)).equals(data.subarray(0, 3))).toBe(true);
  });
});

describe('a file body on the reference server', () => {
  const BIG = 12 * 1024 * 1024 + 17;
  let big: Buffer;
  let bigPath: string;

  beforeAll(async () => {
    big = randomBytes(BIG);
    bigPath = join(dir, 'big.bin');
    await writeFile(bigPath, big);
  });
  afterEach(cleanup);

  /** served runs an app that answers with `body(environ)` for the whole big file, counting reuseBuffers calls. */
  async function served(body: (environ: Environ) => Body): Promise<{ port: number; told: () => number }> {
    let told = 0;
    const { port } = await startServer((environ, startResponse) => {
      startResponse('200 OK', [['Content-Length', String(BIG)]]);
      const b = body(environ);
      if (b instanceof FileReader) {
        const reuse = b.reuseBuffers.bind(b);
        b.reuseBuffers = (done) => {
          told++;
          reuse(done);
        };
      }
      return b;
    });
    return { port, told: () => told };
  }

  /** download fetches the big file twice on one connection, stalling then sipping, and returns the bodies. */
  async function download(port: number): Promise<Buffer[]> {
    const responses = await stalledDownload(port);
    expect(responses.map((r) => [r.status, r.complete])).toEqual([
      [200, true],
      [200, true],
    ]);
    return responses.map((r) => r.body);
  }

  it('EXT-15: arrives intact through nsgi.file_wrapper, whose reader reuses its buffers, to a client that stalls and reads in sips', { timeout: 30_000 }, async () => {
    const { port, told } = await served((environ) => fileBody(environ, bigPath));
    const bodies = await download(port);
    expect(told()).toBe(2);
    for (const b of bodies) expect(sha256(b)).toBe(sha256(big));
  });

  it('EXT-16: a reader behind a middleware keeps fresh buffers, and its bytes arrive intact', { timeout: 30_000 }, async () => {
    const { port, told } = await served((environ) => {
      const inner = fileBody(environ, bigPath) as AsyncIterable<Uint8Array>;
      return (async function* () {
        yield* inner;
      })();
    });
    const bodies = await download(port);
    expect(told()).toBe(0);
    for (const b of bodies) expect(sha256(b)).toBe(sha256(big));
  });
});
