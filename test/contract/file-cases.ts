/**
 * Contract cases for file bodies (SPEC §7.3): an app that sends a file through `fileBody`, which
 * uses the server's `nsgi.file_wrapper` where it is offered (the reference server) and a plain
 * iterable elsewhere (node:http, the fetch round trip, in memory). Either way the bytes are the
 * range asked for and the file handle is closed exactly once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { fileBody } from '../../src/helpers/file-body.ts';
import { sleep, until, type Case, type Probe } from './cases.ts';

/** FILE is a 2 MiB file the cases send, written once per test file that imports them. */
const FILE_BYTES = randomBytes(2 * 1024 * 1024);
const FILE_DIR = mkdtempSync(join(tmpdir(), 'nsgi-contract-'));
const FILE = join(FILE_DIR, 'data.bin');
writeFileSync(FILE, FILE_BYTES);
// The suite that imports these cases removes the file when it is done.
afterAll(() => rmSync(FILE_DIR, { recursive: true, force: true }));

/**
 * countingHandle opens FILE and returns a handle whose close() calls are counted in
 * `p.returnCalls`, and whether the server offered the extension in `p.value`.
 */
async function countingHandle(p: Probe): Promise<FileHandle> {
  const handle = await open(FILE, 'r');
  return new Proxy(handle, {
    get(target, key) {
      if (key === 'close') {
        return () => {
          p.returnCalls++;
          return target.close();
        };
      }
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** fileApp answers with `length` bytes of FILE from `offset`, through fileBody and a counted handle. */
function fileApp(p: Probe, offset: number, length: number): App {
  return async (environ, startResponse) => {
    p.environ = environ;
    const handle = await countingHandle(p);
    startResponse('200 OK', [['Content-Type', 'application/octet-stream'], ['Content-Length', String(length)]]);
    return fileBody(environ, handle, { offset, length });
  };
}

/** closedOnce waits for the handle's close, then checks that no second one follows. */
async function closedOnce(p: Probe): Promise<void> {
  await until(() => p.returnCalls >= 1, 'the file to be closed');
  await sleep(50);
  expect(p.returnCalls).toBe(1);
}

/** FILE_CASES are the file body cases, run with the rest of the suite. */
export const FILE_CASES: Case[] = [
  {
    name: 'a file body sends the range asked for and closes its file once',
    spec: ['EXT-15', 'EXT-16', 'EXT-17'],
    app: (p) => fileApp(p, 1000, 1_500_000),
    async run(t, p) {
      const r = await t.send({});
      expect(r.status).toBe(200);
      expect(r.body.equals(FILE_BYTES.subarray(1000, 1_501_000))).toBe(true);
      const wrapper = p.environ!['nsgi.file_wrapper'];
      expect(wrapper === undefined || typeof wrapper === 'function').toBe(true);
      await closedOnce(p);
    },
  },
  {
    name: 'a file body whose client leaves mid-way closes its file once',
    spec: ['EXT-17', 'BODY-16'],
    app: (p) => fileApp(p, 0, FILE_BYTES.length),
    async run(t, p) {
      const x = await t.start({});
      expect(await x.headWithin(2000)).not.toBeNull();
      x.pause();
      x.leave();
      await closedOnce(p);
    },
  },
  {
    name: 'a file body for HEAD is closed without being sent',
    spec: ['EXT-17'],
    app: (p) => fileApp(p, 0, 100),
    async run(t, p) {
      const r = await t.send({ method: 'HEAD' });
      expect(r.status).toBe(200);
      expect(r.body.length).toBe(0);
      await closedOnce(p);
    },
  },
  {
    name: 'file_wrapper refuses a bad range with a RangeError and opens nothing',
    spec: ['EXT-18'],
    app: (p) => (environ, startResponse) => {
      const wrapper = environ['nsgi.file_wrapper'];
      let message = 'not offered';
      if (typeof wrapper === 'function') {
        try {
          wrapper(FILE, { offset: -1 });
        } catch (err) {
          message = `${(err as Error).name}: ${(err as Error).message}`;
        }
      }
      p.value = message;
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [message];
    },
    async run(t) {
      const r = await t.send({});
      expect(r.body.toString()).toMatch(/^(not offered|RangeError: .*offset.*-1)$/);
    },
  },
];
