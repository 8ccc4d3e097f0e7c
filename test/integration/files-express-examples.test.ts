/**
 * The download server (`examples/files.ts`) and the Express example (`examples/express.ts`) on
 * the real server, alone and inside the demo, driven with curl as a user would: a resumed
 * download, a range, a conditional GET, a traversal attempt; Express routes, a JSON body and the
 * nsgi app mounted back inside Express.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { app as demo } from '../../examples/demo.ts';
import { app as expressApp } from '../../examples/express.ts';
import { createFilesApp } from '../../examples/files.ts';
import { fromNodeListener } from '../../src/adapters/node-listener.ts';
import { cleanup, curl, startServer } from '../helpers/server.ts';

let dir: string;
const big = randomBytes(1_000_000);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nsgi-files-example-'));
  await writeFile(join(dir, 'big.bin'), big);
  await writeFile(join(dir, 'notes.txt'), 'notes\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(cleanup);

describe('examples/files.ts', () => {
  it('lists the files, linked below its own mount point, compressed for curl --compressed', async () => {
    const { url } = await startServer(createFilesApp(dir));
    const result = await curl(['--compressed', '-D', '-', `${url}/`]);
    const text = result.stdout.toString();
    expect(text).toMatch(/Content-Encoding: (br|gzip)/);
    expect(text).toContain('<a href="/files/big.bin" download>big.bin</a> (1,000,000 bytes)');
    expect(text).toContain('notes.txt');
  });

  it('resumes an interrupted download with curl -C -', async () => {
    const { url } = await startServer(createFilesApp(dir));
    const out = join(dir, 'partial.out');
    await writeFile(out, big.subarray(0, 400_000));
    const result = await curl(['-C', '-', '-o', out, `${url}/files/big.bin`]);
    expect(result.code).toBe(0);
    expect((await readFile(out)).equals(big)).toBe(true);
  });

  it('answers curl -r 0-99, a matching If-None-Match, and refuses ../ traversal', async () => {
    const { url } = await startServer(createFilesApp(dir));
    const range = await curl(['-r', '0-99', `${url}/files/big.bin`]);
    expect(range.stdout.equals(big.subarray(0, 100))).toBe(true);
    const head = (await curl(['-sI', `${url}/files/notes.txt`])).stdout.toString();
    const etag = /ETag: (\S+)/i.exec(head)![1]!;
    const conditional = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `If-None-Match: ${etag}`, `${url}/files/notes.txt`]);
    expect(conditional.stdout.toString()).toBe('304');
    const traversal = await curl(['--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', `${url}/files/../../../etc/passwd`]);
    expect(traversal.stdout.toString()).toBe('400');
  });
});

describe('examples/express.ts', () => {
  it('serves Express routes, a JSON body, and the nsgi app mounted inside it', async () => {
    const { url } = await startServer(fromNodeListener(expressApp));
    expect(JSON.parse((await curl([`${url}/users/7`])).stdout.toString())).toEqual({ id: '7', via: 'express' });
    const echo = await curl(['-d', '{"hello":"express"}', '-H', 'Content-Type: application/json', `${url}/echo`]);
    expect(JSON.parse(echo.stdout.toString())).toEqual({ received: { hello: 'express' } });
    expect((await curl([`${url}/nsgi/x?y=1`])).stdout.toString()).toBe('nsgi app at /nsgi, asked for "/x" (/nsgi/x?y=1)\n');
  });

  it('streams /countdown line by line to curl -N', async () => {
    const { url } = await startServer(fromNodeListener(expressApp));
    const result = await curl(['-N', `${url}/countdown`]);
    expect(result.stdout.toString()).toBe('5\n4\n3\n2\n1\n0\nliftoff\n');
  });
});

describe('the demo mounts both', () => {
  it('serves /files and /express below their prefixes', async () => {
    const { url } = await startServer(demo);
    expect((await curl(['-o', '/dev/null', '-w', '%{http_code}', `${url}/files/`])).stdout.toString()).toBe('200');
    expect(JSON.parse((await curl([`${url}/express/users/9`])).stdout.toString())).toEqual({ id: '9', via: 'express' });
    expect((await curl([`${url}/express/nsgi/z`])).stdout.toString()).toBe('nsgi app at /express/nsgi, asked for "/z" (/express/nsgi/z)\n');
    const page = (await curl([`${url}/`])).stdout.toString();
    expect(page).toContain('href="/files/"');
    expect(page).toContain('href="/express/"');
  });
});
