/**
 * The validator's checks of `nsgi.file_wrapper` (SPEC §7.3): a wrapper that returns no body, or
 * that accepts a bad range, is named; the reference server's wrapper passes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { App, Environ, FileWrapper } from '../../protocol/nsgi.ts';
import { validate } from '../../src/index.ts';
import { fileBody } from '../../src/helpers/file-body.ts';
import { cleanup, startServer } from '../helpers/server.ts';

let dir: string;
let path: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nsgi-validator-file-'));
  path = join(dir, 'data.txt');
  await writeFile(path, 'file body through the validator\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(cleanup);

/** useWrapper calls the wrapper with `options` and reports what happened as the response. */
function useWrapper(options: Record<string, unknown>): App {
  return (environ, startResponse) => {
    const wrapper = environ['nsgi.file_wrapper'] as FileWrapper;
    try {
      const body = wrapper(path, options);
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return body;
    } catch (err) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`threw ${(err as Error).name}: ${(err as Error).message}`];
    }
  };
}

/** withWrapper is middleware standing in for a server that offers `wrapper`. */
function withWrapper(wrapper: FileWrapper, app: App): App {
  const validated = validate(app);
  return (environ: Environ, startResponse) => validated({ ...environ, 'nsgi.file_wrapper': wrapper }, startResponse);
}

describe('validate() and nsgi.file_wrapper', () => {
  it('EXT-16: names a wrapper that returns something other than a body', async () => {
    const { url } = await startServer(withWrapper((() => 42) as unknown as FileWrapper, useWrapper({})));
    const text = await (await fetch(url)).text();
    expect(text).toMatch(/^threw ValidationError: \[EXT-16\] \(SPEC §7\.3\) nsgi\.file_wrapper returned number 42; it must return a body/);
  });

  it('EXT-18: names a wrapper that accepts a negative offset', async () => {
    const { url } = await startServer(withWrapper(() => ['anything'], useWrapper({ offset: -1 })));
    expect(await (await fetch(url)).text()).toMatch(/^threw ValidationError: \[EXT-18\] .*accepted the offset number -1; it must throw a RangeError/);
  });

  it("passes the reference server's wrapper, which sends the file and refuses a bad length", async () => {
    const fine = await startServer(validate((environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return fileBody(environ, path);
    }));
    expect(await (await fetch(fine.url)).text()).toBe('file body through the validator\n');
    const bad = await startServer(validate(useWrapper({ length: 1.5 })));
    expect(await (await fetch(bad.url)).text()).toMatch(/^threw RangeError: a file body's length/);
    expect([...fine.errors, ...bad.errors].filter((e) => e.includes('ValidationError'))).toEqual([]);
  });
});
