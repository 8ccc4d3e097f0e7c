/**
 * sendFile and staticFiles on the real server, over raw TCP and curl: validators and conditional
 * requests (304, 412 in RFC 9110 §13.2.2's order), ranges (206, multipart/byteranges, 416,
 * If-Range, `curl -C -` resume), HEAD, media types, precompressed siblings, index files, and
 * every traversal attempt refused without the file being served.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { staticFiles } from '../../src/helpers/static-files.ts';
import { RawClient, cleanup, curl, finalResponses, header, rawRequest, startServer } from '../helpers/server.ts';

let dir: string;
let root: string;
const big = randomBytes(300_000);
const secret = 'the secret outside the root\n';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nsgi-static-'));
  root = join(dir, 'public');
  await mkdir(join(root, 'docs'), { recursive: true });
  await mkdir(join(root, 'empty'));
  await writeFile(join(dir, 'secret.txt'), secret);
  await writeFile(join(root, 'big.bin'), big);
  await writeFile(join(root, 'hello.txt'), 'hello, files\n');
  await writeFile(join(root, 'app.js'), 'console.log(1);\n'.repeat(100));
  await writeFile(join(root, 'app.js.br'), brotliCompressSync(Buffer.from('console.log(1);\n'.repeat(100))));
  await writeFile(join(root, 'app.js.gz'), gzipSync(Buffer.from('console.log(1);\n'.repeat(100))));
  await writeFile(join(root, 'docs', 'index.html'), '<h1>docs</h1>\n');
  await writeFile(join(root, '.env'), 'TOKEN=1\n');
  await symlink(join(dir, 'secret.txt'), join(root, 'escape.txt'));
  await symlink(dir, join(root, 'up'));
  await symlink(join(root, 'hello.txt'), join(root, 'alias.txt'));
  await writeFile(join(root, 'style.css'), 'body { color: red }\n');
  await symlink(join(dir, 'secret.txt'), join(root, 'style.css.br'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

afterEach(cleanup);

/** get sends one request with extra header lines and returns the parsed response. */
async function get(port: number, target: string, headers: string[] = [], method = 'GET') {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: x', 'Connection: close', ...headers, '', ''].join('\r\n');
  const result = await rawRequest(port, Buffer.from(lines, 'latin1'));
  const [response] = finalResponses(result.data, { noBody: () => method === 'HEAD', closed: result.closed });
  if (response === undefined) throw new Error(`no response to ${target}: ${JSON.stringify(result.text)}`);
  return response;
}

describe('staticFiles: whole files', () => {
  it('serves a file with its type, length, validators and Accept-Ranges', async () => {
    const { port } = await startServer(staticFiles(root));
    const response = await get(port, '/hello.txt');
    expect(response.status).toBe(200);
    expect(response.body.toString()).toBe('hello, files\n');
    expect(header(response, 'content-type')).toBe('text/plain; charset=utf-8');
    expect(header(response, 'content-length')).toBe('13');
    expect(header(response, 'accept-ranges')).toBe('bytes');
    expect(header(response, 'etag')).toMatch(/^"[0-9a-f]+-d"$/);
    expect(new Date(header(response, 'last-modified')!).getTime()).toBeGreaterThan(0);
  });

  it('answers HEAD with the GET head and no body', async () => {
    const { port } = await startServer(staticFiles(root));
    const response = await get(port, '/big.bin', [], 'HEAD');
    expect(response.status).toBe(200);
    expect(header(response, 'content-length')).toBe(String(big.length));
    expect(response.body.length).toBe(0);
  });

  it('sends a large file byte for byte through curl', async () => {
    const { url } = await startServer(staticFiles(root));
    const result = await curl([`${url}/big.bin`]);
    expect(result.code).toBe(0);
    expect(result.stdout.equals(big)).toBe(true);
  });

  it('serves a directory through its index file, and redirects it without the slash', async () => {
    const { port } = await startServer(staticFiles(root));
    const index = await get(port, '/docs/');
    expect(index.status).toBe(200);
    expect(index.body.toString()).toBe('<h1>docs</h1>\n');
    expect(header(index, 'content-type')).toBe('text/html; charset=utf-8');
    const redirect = await get(port, '/docs?x=1');
    expect(redirect.status).toBe(301);
    expect(header(redirect, 'location')).toBe('/docs/?x=1');
    expect((await get(port, '/empty/')).status).toBe(404);
    expect((await get(port, '/hello.txt/')).status).toBe(404);
  });

  it('refuses methods other than GET and HEAD with 405 and Allow', async () => {
    const { port } = await startServer(staticFiles(root));
    const response = await get(port, '/hello.txt', ['Content-Length: 0'], 'POST');
    expect(response.status).toBe(405);
    expect(header(response, 'allow')).toBe('GET, HEAD');
  });

  it('serves a symbolic link that stays inside the root', async () => {
    const { port } = await startServer(staticFiles(root));
    expect((await get(port, '/alias.txt')).body.toString()).toBe('hello, files\n');
  });
});

describe('staticFiles: conditional requests (RFC 9110 §13.2.2)', () => {
  it('answers a matching If-None-Match with 304 and the validators, through curl', async () => {
    const { port, url } = await startServer(staticFiles(root, { cacheControl: 'max-age=60' }));
    const etag = header(await get(port, '/hello.txt'), 'etag')!;
    const result = await curl(['-i', '-H', `If-None-Match: "other", ${etag}`, `${url}/hello.txt`]);
    const text = result.stdout.toString();
    expect(text).toMatch(/^HTTP\/1.1 304 /);
    expect(text).toContain(`ETag: ${etag}`);
    expect(text).toContain('Cache-Control: max-age=60');
    expect(text).not.toContain('hello, files');
    // A weak form of the same tag matches too (weak comparison).
    expect((await get(port, '/hello.txt', [`If-None-Match: W/${etag}`])).status).toBe(304);
    expect((await get(port, '/hello.txt', ['If-None-Match: "nope"'])).status).toBe(200);
  });

  it('answers If-Modified-Since with 304 when not modified since, and ignores an invalid date', async () => {
    const { port } = await startServer(staticFiles(root));
    const lastModified = header(await get(port, '/hello.txt'), 'last-modified')!;
    expect((await get(port, '/hello.txt', [`If-Modified-Since: ${lastModified}`])).status).toBe(304);
    expect((await get(port, '/hello.txt', ['If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT'])).status).toBe(200);
    expect((await get(port, '/hello.txt', ['If-Modified-Since: yesterday'])).status).toBe(200);
  });

  it('lets If-None-Match override If-Modified-Since', async () => {
    const { port } = await startServer(staticFiles(root));
    const lastModified = header(await get(port, '/hello.txt'), 'last-modified')!;
    const response = await get(port, '/hello.txt', ['If-None-Match: "changed"', `If-Modified-Since: ${lastModified}`]);
    expect(response.status).toBe(200);
  });

  it('answers a failing If-Match or If-Unmodified-Since with 412, If-Match first', async () => {
    const { port } = await startServer(staticFiles(root));
    const first = await get(port, '/hello.txt');
    const etag = header(first, 'etag')!;
    expect((await get(port, '/hello.txt', ['If-Match: "other"'])).status).toBe(412);
    expect((await get(port, '/hello.txt', [`If-Match: ${etag}`])).status).toBe(200);
    expect((await get(port, '/hello.txt', ['If-Match: *'])).status).toBe(200);
    // If-Match uses the strong comparison: a weak tag never matches.
    expect((await get(port, '/hello.txt', [`If-Match: W/${etag}`])).status).toBe(412);
    expect((await get(port, '/hello.txt', ['If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT'])).status).toBe(412);
    // With If-Match present and true, If-Unmodified-Since is not evaluated.
    expect((await get(port, '/hello.txt', [`If-Match: ${etag}`, 'If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT'])).status).toBe(200);
  });
});

describe('staticFiles: ranges (RFC 9110 §14)', () => {
  it('sends one range with curl -r 0-99 as a 206 with Content-Range', async () => {
    const { url } = await startServer(staticFiles(root));
    const result = await curl(['-D', '-', '-r', '0-99', `${url}/big.bin`]);
    const text = result.stdout.toString('latin1');
    expect(text).toMatch(/^HTTP\/1.1 206 /);
    expect(text).toContain(`Content-Range: bytes 0-99/${big.length}`);
    expect(text).toContain('Content-Length: 100');
    expect(result.stdout.subarray(result.stdout.indexOf('\r\n\r\n') + 4).equals(big.subarray(0, 100))).toBe(true);
  });

  it('sends suffix and open ranges, clamping the end to the file', async () => {
    const { port } = await startServer(staticFiles(root));
    const suffix = await get(port, '/big.bin', ['Range: bytes=-10']);
    expect(suffix.status).toBe(206);
    expect(suffix.body.equals(big.subarray(big.length - 10))).toBe(true);
    const open = await get(port, '/big.bin', ['Range: bytes=299990-']);
    expect(header(open, 'content-range')).toBe(`bytes 299990-299999/${big.length}`);
    const clamped = await get(port, '/big.bin', ['Range: bytes=299995-400000']);
    expect(clamped.body.equals(big.subarray(299_995))).toBe(true);
  });

  it('sends several ranges as multipart/byteranges, merging overlaps', async () => {
    const { port } = await startServer(staticFiles(root));
    const response = await get(port, '/big.bin', ['Range: bytes=0-9, 100-109, 105-119']);
    expect(response.status).toBe(206);
    const type = header(response, 'content-type')!;
    const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(type)![1]!;
    expect(Number(header(response, 'content-length'))).toBe(response.body.length);
    const parts = response.body.toString('latin1').split(`--${boundary}`);
    expect(parts).toHaveLength(4); // leading empty, two parts, closing `--`
    expect(parts[3]).toBe('--\r\n');
    const part = (text: string) => {
      const split = text.indexOf('\r\n\r\n');
      return { head: text.slice(0, split), body: Buffer.from(text.slice(split + 4).replace(/\r\n$/, ''), 'latin1') };
    };
    const a = part(parts[1]!);
    expect(a.head).toContain(`Content-Range: bytes 0-9/${big.length}`);
    expect(a.head).toContain('Content-Type: application/octet-stream');
    expect(a.body.equals(big.subarray(0, 10))).toBe(true);
    const b = part(parts[2]!);
    expect(b.head).toContain(`Content-Range: bytes 100-119/${big.length}`);
    expect(b.body.equals(big.subarray(100, 120))).toBe(true);
  });

  it('answers an unsatisfiable range with 416 and bytes */size', async () => {
    const { port } = await startServer(staticFiles(root));
    const response = await get(port, '/hello.txt', ['Range: bytes=100-200']);
    expect(response.status).toBe(416);
    expect(header(response, 'content-range')).toBe('bytes */13');
  });

  it('ignores a malformed range, another unit, and a range on HEAD', async () => {
    const { port } = await startServer(staticFiles(root));
    expect((await get(port, '/hello.txt', ['Range: bytes=5-1'])).status).toBe(200);
    expect((await get(port, '/hello.txt', ['Range: items=0-1'])).status).toBe(200);
    expect((await get(port, '/hello.txt', ['Range: bytes=x-1'])).status).toBe(200);
    expect((await get(port, '/hello.txt', ['Range: bytes=0-1'], 'HEAD')).status).toBe(200);
  });

  it('applies a range under a matching If-Range and sends the whole file otherwise', async () => {
    const { port } = await startServer(staticFiles(root));
    const first = await get(port, '/hello.txt');
    const etag = header(first, 'etag')!;
    const lastModified = header(first, 'last-modified')!;
    expect((await get(port, '/hello.txt', ['Range: bytes=0-4', `If-Range: ${etag}`])).body.toString()).toBe('hello');
    expect((await get(port, '/hello.txt', ['Range: bytes=0-4', `If-Range: ${lastModified}`])).status).toBe(206);
    const stale = await get(port, '/hello.txt', ['Range: bytes=0-4', 'If-Range: "old"']);
    expect(stale.status).toBe(200);
    expect(stale.body.toString()).toBe('hello, files\n');
    expect((await get(port, '/hello.txt', ['Range: bytes=0-4', `If-Range: W/${etag}`])).status).toBe(200);
  });

  it('resumes a partial download with curl -C -', async () => {
    const { url } = await startServer(staticFiles(root));
    const out = join(dir, 'download.bin');
    await writeFile(out, big.subarray(0, 123_456));
    const result = await curl(['-C', '-', '-o', out, `${url}/big.bin`]);
    expect(result.code).toBe(0);
    expect((await readFile(out)).equals(big)).toBe(true);
  });
});

describe('staticFiles: precompressed siblings', () => {
  it('serves FILE.br or FILE.gz by Accept-Encoding, each with its own ETag, always with Vary', async () => {
    const { port } = await startServer(staticFiles(root));
    const br = await get(port, '/app.js', ['Accept-Encoding: gzip, br']);
    expect(header(br, 'content-encoding')).toBe('br');
    expect(header(br, 'content-type')).toBe('text/javascript; charset=utf-8');
    expect(header(br, 'vary')).toBe('Accept-Encoding');
    const gz = await get(port, '/app.js', ['Accept-Encoding: gzip, br;q=0.5']);
    expect(header(gz, 'content-encoding')).toBe('gzip');
    const identity = await get(port, '/app.js');
    expect(header(identity, 'content-encoding')).toBeUndefined();
    expect(header(identity, 'vary')).toBe('Accept-Encoding');
    expect(identity.body.toString()).toBe('console.log(1);\n'.repeat(100));
    expect(new Set([header(br, 'etag'), header(gz, 'etag'), header(identity, 'etag')]).size).toBe(3);
  });

  it('decodes to the original through curl --compressed', async () => {
    const { url } = await startServer(staticFiles(root));
    const result = await curl(['--compressed', `${url}/app.js`]);
    expect(result.stdout.toString()).toBe('console.log(1);\n'.repeat(100));
  });
});

describe('staticFiles: paths that must not be served', () => {
  const attempts: Array<[string, number]> = [
    ['/../secret.txt', 400],
    ['/docs/../../secret.txt', 400],
    ['/%2e%2e/secret.txt', 400],
    ['/%2E%2E%2Fsecret.txt', 400],
    ['/docs%2F..%2F..%2Fsecret.txt', 400],
    ['/..%5Csecret.txt', 400],
    ['/hello.txt%00.png', 400],
    ['/./hello.txt', 400],
    ['/escape.txt', 404],
    ['/up/secret.txt', 404],
    ['/.env', 404],
    ['/missing.txt', 404],
  ];
  for (const [target, status] of attempts) {
    it(`answers ${target} with ${status}, never the file`, async () => {
      const { port } = await startServer(staticFiles(root));
      const response = await get(port, target);
      expect(response.status).toBe(status);
      expect(response.body.toString()).not.toContain('secret');
      expect(response.body.toString()).not.toContain('TOKEN');
    });
  }

  it('never serves a precompressed sibling that is a symbolic link', async () => {
    const { port } = await startServer(staticFiles(root));
    const response = await get(port, '/style.css', ['Accept-Encoding: br']);
    expect(response.status).toBe(200);
    expect(header(response, 'content-encoding')).toBeUndefined();
    expect(response.body.toString()).toBe('body { color: red }\n');
  });

  it('refuses traversal sent by curl with --path-as-is', async () => {
    const { url } = await startServer(staticFiles(root));
    const result = await curl(['--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', `${url}/../../secret.txt`]);
    expect(result.stdout.toString()).toBe('400');
  });
});

describe('file bodies close their file exactly once', () => {
  /** openFiles counts this process's open descriptors that point into the test directory. */
  async function openFiles(): Promise<number> {
    let n = 0;
    for (const fd of await readdir('/proc/self/fd')) {
      const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
      if (target.startsWith(dir)) n++;
    }
    return n;
  }

  it('closes the file when the client leaves mid-download, and after each kind of response', async () => {
    const { port } = await startServer(staticFiles(root));
    expect(await openFiles()).toBe(0);
    // A client that asks for the big file and leaves after its first bytes.
    const client = await RawClient.connect(port, { collect: false });
    client.write('GET /big.bin HTTP/1.1\nHost: x\n\n');
    await new Promise<void>((resolve) => client.socket.once('readable', () => resolve()));
    client.socket.read(1);
    client.destroy();
    await get(port, '/big.bin', ['Range: bytes=0-1,5-6']);
    await get(port, '/big.bin', ['Range: bytes=999999-']);
    await get(port, '/big.bin', [], 'HEAD');
    await get(port, '/app.js', ['Accept-Encoding: br']);
    await get(port, '/hello.txt', ['If-None-Match: *']);
    const deadline = Date.now() + 2000;
    while ((await openFiles()) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await openFiles()).toBe(0);
  });
});
