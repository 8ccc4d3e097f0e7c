/**
 * The `nsgi` command, run for real: `node bin/nsgi.js ... --port 0` in a child process, requested
 * over TCP with fetch, and stopped with a signal. Fixture apps are written to a temporary
 * directory so that the broken ones cannot break the type check.
 */

import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OPTIONS, parseAppTarget, parseCliArgs, version } from '../../src/cli.ts';
import { killAllClis, REPO_ROOT, runCli, startCli } from '../helpers/spawn-cli.ts';
import type { CliResult } from '../helpers/spawn-cli.ts';
import { RawClient, cleanup, finalResponses, sleep, untilResponses } from '../helpers/server.ts';

/** SPAWN_TEST_TIMEOUT_MS bounds a test that starts processes: tsx compiles on each start. */
const SPAWN_TEST_TIMEOUT_MS = 30_000;

/** The fixture directory; named up front so the test table below can mention its paths. */
const dir = path.join(tmpdir(), `nsgi-cli-${randomUUID()}`);

/** fixture returns the path of a fixture file in the temporary directory. */
function fixture(name: string): string {
  return path.join(dir, name);
}

const FIXTURES: Record<string, string> = {
  // Type annotations, an interface and `satisfies`: this only loads if TypeScript is compiled.
  'typed.ts': `
    interface Greeting { readonly text: string }
    type Start = (status: string, headers: Array<[string, string]>) => unknown;
    const greeting = { text: 'typed' } satisfies Greeting;
    export default function app(environ: { PATH_INFO: string }, startResponse: Start): string[] {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [greeting.text + ' ' + environ.PATH_INFO];
    }
    export const other = (environ: { PATH_INFO: string }, startResponse: Start): string[] => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['other ' + environ.PATH_INFO];
    };
    export const notAnApp: string = 'hello';
    export const settings = { debug: true };
    export class Handler {}
  `,
  'plain.mjs': `
    export default (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['mjs ' + environ.REQUEST_METHOD];
    };
  `,
  'common.js': `
    module.exports = function app(environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['commonjs'];
    };
  `,
  'callable.mjs': `
    export default {
      greeting: 'callable object',
      call(environ, startResponse) {
        startResponse('200 OK', [['Content-Type', 'text/plain']]);
        return [this.greeting];
      },
    };
  `,
  'echo.mjs': `
    export default (environ, startResponse) => {
      const body = JSON.stringify({ script: environ.SCRIPT_NAME, path: environ.PATH_INFO });
      startResponse('200 OK', [['Content-Type', 'application/json']]);
      return [body];
    };
  `,
  'slow.mjs': `
    import { setTimeout as sleep } from 'node:timers/promises';
    export default async (environ, startResponse) => {
      await sleep(800);
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['finished after shutdown began'];
    };
  `,
  'throws.ts': `
    const ready: boolean = false;
    if (!ready) throw new Error('boom while loading the module');
    export default () => [];
  `,
  'broken.ts': `
    export default (environ: unknown => {
  `,
  'empty.mjs': `
    export {};
  `,
};

beforeAll(async () => {
  await mkdir(dir);
  await Promise.all(Object.entries(FIXTURES).map(([name, text]) => writeFile(fixture(name), text)));
});

afterEach(async () => {
  await cleanup();
  await killAllClis();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** expectOneLineError checks a failed run: its exit code, and one `nsgi: ` line on stderr, no stack. */
function expectOneLineError(result: CliResult, exitCode: number, ...mentions: string[]): void {
  expect(result.code, `stderr: ${result.stderr}`).toBe(exitCode);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^nsgi: [^\n]+\n$/);
  expect(result.stderr).not.toContain('    at ');
  for (const text of mentions) expect(result.stderr).toContain(text);
}

describe('serving an app', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it('loads a TypeScript module without a build and serves its default export', async () => {
    const { cli, url } = await startCli([fixture('typed.ts'), '--port', '0']);
    const res = await fetch(`${url}/some/path`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('typed /some/path');
    expect(cli.stdout).toMatch(/^nsgi: listening on http:\/\/127\.0\.0\.1:\d+\n$/);
  });

  it('loads an .mjs module', async () => {
    const { url } = await startCli([fixture('plain.mjs'), '--port', '0']);
    const res = await fetch(url, { method: 'POST', body: '' });
    expect(await res.text()).toBe('mjs POST');
  });

  it('loads a CommonJS .js module through its module.exports', async () => {
    const { url } = await startCli([fixture('common.js'), '--port', '0']);
    expect(await (await fetch(url)).text()).toBe('commonjs');
  });

  it('serves the export named after the colon', async () => {
    const { url } = await startCli([`${fixture('typed.ts')}:other`, '--port', '0']);
    expect(await (await fetch(`${url}/x`)).text()).toBe('other /x');
  });

  it('serves the default export when the colon names it explicitly', async () => {
    const { url } = await startCli([`${fixture('typed.ts')}:default`, '--port', '0']);
    expect(await (await fetch(`${url}/y`)).text()).toBe('typed /y');
  });

  it('APP-4: wraps an object with a call method as an app, keeping its this', async () => {
    const { url } = await startCli([fixture('callable.mjs'), '--port', '0']);
    expect(await (await fetch(url)).text()).toBe('callable object');
  });

  it('resolves a relative module path against the working directory', async () => {
    const { url } = await startCli(['examples/hello.ts', '--port', '0'], REPO_ROOT);
    expect(await (await fetch(`${url}/user/1`)).text()).toBe('Request GET /user/1 has been processed\n');
  });

  it('accepts options after the app and in --name=value form', async () => {
    const { url } = await startCli([fixture('plain.mjs'), '--port=0', '--host=127.0.0.1']);
    expect(await (await fetch(url)).text()).toBe('mjs GET');
  });

  it('prints only the listening line to stdout without --access-log', async () => {
    const { cli, url } = await startCli([fixture('plain.mjs'), '--port', '0']);
    await (await fetch(url)).text();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(cli.stdout.split('\n')).toEqual([expect.stringMatching(/^nsgi: listening on /), '']);
  });

  it('prints a combined-log-format line per response with --access-log', async () => {
    const { cli, url } = await startCli(['--access-log', fixture('plain.mjs'), '--port', '0']);
    const res = await fetch(`${url}/logged?x=1`, { headers: { 'User-Agent': 'cli-test/1.0', Referer: 'http://example.test/' } });
    expect(await res.text()).toBe('mjs GET');
    const [line] = await cli.waitForStdout(/^.*"GET \/logged\?x=1 HTTP\/1\.1".*$/m, 5000);
    // host ident user [time] "request" status bytes "referer" "user-agent", then any extra fields.
    expect(line).toMatch(/^127\.0\.0\.1 \S+ \S+ \[[^\]]+\] "GET \/logged\?x=1 HTTP\/1\.1" 200 7 "http:\/\/example\.test\/" "cli-test\/1\.0"( |$)/);
  });

  it('ENV-18: gives the app its mount path as SCRIPT_NAME with --root-path', async () => {
    const { url } = await startCli(['--root-path', '/mnt/', fixture('echo.mjs'), '--port', '0']);
    expect(await (await fetch(`${url}/mnt/x/y`)).json()).toEqual({ script: '/mnt', path: '/x/y' });
  });

  it('answers 413 to a body over --max-body-size', async () => {
    const { url } = await startCli(['--max-body-size', '10', fixture('echo.mjs'), '--port', '0']);
    const res = await fetch(url, { method: 'POST', body: 'x'.repeat(100) });
    expect(res.status).toBe(413);
  });

  it('closes an idle keep-alive connection after --keep-alive-timeout', async () => {
    const { port } = await startCli(['--keep-alive-timeout', '0.3', fixture('plain.mjs'), '--port', '0']);
    const socket = connect(port, '127.0.0.1');
    try {
      let received = '';
      let answeredAt = 0;
      socket.setEncoding('utf8').on('data', (text: string) => {
        received += text;
        if (received.includes('mjs GET')) answeredAt ||= Date.now();
      });
      const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
      const closedAt = await closedWithin(closed, 4000);
      expect(received).toMatch(/^HTTP\/1\.1 200 /);
      expect(closedAt - answeredAt).toBeGreaterThanOrEqual(200);
    } finally {
      socket.destroy();
    }
  });

  it('closes a connection whose head is not complete within --headers-timeout', async () => {
    const { port } = await startCli(['--headers-timeout', '0.3', fixture('plain.mjs'), '--port', '0']);
    const socket = connect(port, '127.0.0.1');
    try {
      const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
      socket.on('data', () => {});
      socket.on('error', () => {});
      const sentAt = Date.now();
      socket.write('GET / HTTP/1.1\r\nHost: loc');
      const closedAt = await closedWithin(closed, 4000);
      expect(closedAt - sentAt).toBeGreaterThanOrEqual(200);
    } finally {
      socket.destroy();
    }
  });
});

/** closedWithin waits for `closed`, failing the test if the server keeps the socket past `ms`. */
async function closedWithin(closed: Promise<number>, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the server kept the connection open for ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([closed, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('--help and --version', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it('--help documents every option and exits 0', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('Usage: nsgi [options] path/to/module.ts[:export]');
    for (const option of OPTIONS) {
      const line = result.stdout.split('\n').find((l) => l.includes(`--${option.name}`));
      expect(line, `--${option.name} is documented`).toBeDefined();
      expect(line).toContain(option.help);
      if (option.value) expect(line).toContain(`--${option.name} ${option.value}`);
    }
    const required = ['--host', '--port', '--access-log', '--root-path', '--keep-alive-timeout', '--headers-timeout', '--max-body-size', '--help', '--version', '-h'];
    for (const name of required) expect(result.stdout).toContain(name);
  });

  it('-h is --help, even beside a bad argument', async () => {
    const result = await runCli(['--bogus', '-h']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('--max-body-size BYTES');
  });

  it('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`nsgi ${version()}\n`);
    expect(version()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('bad input exits 2 with one line on stderr', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  // [scenario, arguments (fixture names resolved), strings the message must contain]
  const cases: Array<[string, () => string[], string[]]> = [
    ['no app argument', () => [], ['missing the app', 'usage']],
    ['two app arguments', () => [fixture('plain.mjs'), fixture('typed.ts')], ['expected one app', 'got 2']],
    ['an unknown option', () => ['--bogus', fixture('plain.mjs')], ['unknown option --bogus']],
    ['an unknown short option', () => ['-x', fixture('plain.mjs')], ['unknown option -x']],
    ['a non-numeric port', () => ['--port', 'http', fixture('plain.mjs')], ['--port', '"http"']],
    ['a port above 65535', () => ['--port', '65536', fixture('plain.mjs')], ['--port', '65536']],
    ['a negative port', () => ['--port', '-1', fixture('plain.mjs')], ['--port', '-1']],
    ['an option missing its value', () => [fixture('plain.mjs'), '--port'], ['--port needs a value']],
    ['a value given to a flag', () => ['--access-log=yes', fixture('plain.mjs')], ['--access-log takes no value']],
    ['a non-numeric timeout', () => ['--keep-alive-timeout', 'soon', fixture('plain.mjs')], ['--keep-alive-timeout', '"soon"']],
    ['a negative headers timeout', () => ['--headers-timeout=-1', fixture('plain.mjs')], ['--headers-timeout', '"-1"']],
    ['a fractional body size', () => ['--max-body-size', '1.5', fixture('plain.mjs')], ['--max-body-size', '"1.5"']],
    ['a root path without a leading slash', () => ['--root-path', 'api', fixture('plain.mjs')], ['--root-path', '"api"']],
    ['a missing module file', () => [fixture('nowhere/missing.ts')], ['no such file', fixture('nowhere/missing.ts')]],
    ['a directory instead of a module', () => [dir], [`${dir} is not a file`]],
    ['a module that throws while loading', () => [fixture('throws.ts')], ['cannot load', 'throws.ts', 'boom while loading the module', 'throws.ts:3:']],
    ['a module with a syntax error', () => [fixture('broken.ts')], ['cannot load', 'broken.ts']],
    ['a missing named export', () => [`${fixture('typed.ts')}:nope`], ['no export named "nope"', 'Handler', 'default', 'notAnApp', 'other']],
    ['a module with no default export', () => [fixture('empty.mjs')], ['empty.mjs has no default export', 'it exports nothing']],
    ['an export that is a string', () => [`${fixture('typed.ts')}:notAnApp`], ['export "notAnApp"', 'is a string, not an app function']],
    ['an export that is a plain object', () => [`${fixture('typed.ts')}:settings`], ['is an object without a call() method, not an app function']],
    ['an export that is a class', () => [`${fixture('typed.ts')}:Handler`], ['is a class, not an app function']],
    ['an export name that is not an identifier', () => [`${fixture('typed.ts')}:1x`], ['"1x" is not an export name']],
  ];

  it.concurrent.each(cases)('%s', async (_scenario, args, mentions) => {
    expectOneLineError(await runCli(args()), 2, ...mentions);
  });
});

describe('listen failure', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it('exits 1 with one line when the port is in use', async () => {
    const taken: NetServer = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const result = await runCli([fixture('plain.mjs'), '--port', String(port)]);
      expectOneLineError(result, 1, `cannot listen on http://127.0.0.1:${port}`, 'already in use');
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

describe('signals', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} closes the server and exits 0`, async () => {
      const { cli, url } = await startCli([fixture('plain.mjs'), '--port', '0']);
      expect((await fetch(url)).status).toBe(200);
      cli.kill(signal);
      const result = await cli.waitForExit(15_000);
      expect(result).toMatchObject({ code: 0, signal: null });
      expect(result.stderr).toContain(`received ${signal}`);
      await expect(fetch(url)).rejects.toThrow();
    });
  }

  it('SIGTERM lets an in-flight response finish before exiting 0', async () => {
    const { cli, url } = await startCli([fixture('slow.mjs'), '--port', '0']);
    const pending = fetch(url).then((res) => res.text());
    // The app sleeps 800 ms; signal while it is working.
    await new Promise((resolve) => setTimeout(resolve, 300));
    cli.kill('SIGTERM');
    expect(await pending).toBe('finished after shutdown began');
    expect((await cli.waitForExit(15_000)).code).toBe(0);
  });
});

describe('parsing, without a process', () => {
  it('applies the defaults and converts seconds to milliseconds', () => {
    expect(parseCliArgs(['app.ts'])).toEqual({
      command: 'serve', target: 'app.ts', host: '127.0.0.1', port: 8000, accessLog: false, rootPath: '',
      workers: 1, forwardedAllowIps: [], gracefulTimeout: 10000,
    });
    expect(
      parseCliArgs(['-w', '3', '--forwarded-allow-ips', '10.0.0.0/8, ::1', '--body-timeout', '7', '--send-timeout=9', '--max-connections', '50', '--graceful-timeout', '1.5', 'a.ts']),
    ).toMatchObject({
      workers: 3, forwardedAllowIps: ['10.0.0.0/8', '::1'], bodyTimeout: 7000, sendTimeout: 9000, maxConnections: 50, gracefulTimeout: 1500,
    });
    expect(() => parseCliArgs(['--workers', '0', 'a.ts'])).toThrow(/--workers must be a whole number of at least 1/);
    expect(() => parseCliArgs(['--forwarded-allow-ips', 'proxy.local', 'a.ts'])).toThrow(/is not an IP address/);
    expect(parseCliArgs(['--keep-alive-timeout', '2.5', '--headers-timeout=0.25', '--max-body-size', '1024', '--', '-odd.ts'])).toMatchObject({
      target: '-odd.ts', keepAliveTimeout: 2500, headersTimeout: 250, maxBodySize: 1024,
    });
  });

  it('splits the export off at the last colon, but not a Windows drive', () => {
    expect(parseAppTarget('examples/demo.ts:app')).toEqual({ file: 'examples/demo.ts', exportName: 'app' });
    expect(parseAppTarget('examples/demo.ts')).toEqual({ file: 'examples/demo.ts', exportName: 'default' });
    expect(parseAppTarget('C:\\apps\\demo.ts')).toEqual({ file: 'C:\\apps\\demo.ts', exportName: 'default' });
    expect(parseAppTarget('C:\\apps\\demo.ts:app')).toEqual({ file: 'C:\\apps\\demo.ts', exportName: 'app' });
  });
});

describe('timeout and limit flags', () => {
  it('--headers-timeout, --keep-alive-timeout, --body-timeout, --send-timeout, --max-connections reach the server', async () => {
    const { port } = await startCli([
      'test/fixtures/app.ts', '--port', '0',
      '--headers-timeout', '0.3', '--keep-alive-timeout', '0.3', '--body-timeout', '0.3',
      '--send-timeout', '0.5', '--max-connections', '2', '--graceful-timeout', '1',
    ]);
    // headers timeout
    const slow = await RawClient.connect(port);
    let t0 = Date.now();
    slow.write('GET / HTTP/1.1\nHost: a\n');
    await slow.waitForClose(3000);
    expect(finalResponses(slow.data, { closed: true })[0]?.status).toBe(408);
    expect(Date.now() - t0).toBeLessThan(2000);
    // keep-alive timeout
    const idle = await RawClient.connect(port);
    idle.write('GET / HTTP/1.1\nHost: a\n\n');
    await idle.waitForResponses(1);
    t0 = Date.now();
    await idle.waitForClose(3000);
    expect(Date.now() - t0).toBeLessThan(2000);
    // body timeout
    const upload = await RawClient.connect(port);
    upload.write('POST /upload HTTP/1.1\nHost: a\nContent-Length: 10\n\nab');
    t0 = Date.now();
    await upload.waitForClose(3000);
    expect(finalResponses(upload.data, { closed: true })[0]?.status).toBe(408);
    expect(Date.now() - t0).toBeLessThan(2000);
    // max connections
    await sleep(100);
    const a = await RawClient.connect(port);
    const b = await RawClient.connect(port);
    a.write('GET / HTTP/1.1\nHost: a\n\n');
    b.write('GET / HTTP/1.1\nHost: a\n\n');
    await a.waitFor(untilResponses(1), 'a response on a');
    await b.waitFor(untilResponses(1), 'a response on b');
    const c = await RawClient.connect(port);
    c.write('GET / HTTP/1.1\nHost: a\n\n');
    await c.waitForClose(3000);
    expect(finalResponses(c.data, { closed: true })[0]?.status).toBe(503);
  }, 30_000);
});
