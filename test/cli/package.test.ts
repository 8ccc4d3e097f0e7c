/**
 * nsgi as its users get it: the repository packed with `npm pack` (which builds `dist/`), the
 * tarball installed into a fresh project in a temporary directory, and that project using it the
 * ways a user would: plain `node` on an ES module and on a CommonJS script, `tsc --noEmit` on a
 * strict TypeScript project under four configurations, and the `nsgi` command through `npx`.
 * Nothing here imports the sources; the sources' own tests are everywhere else.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { installPackage, packRepository, runCommand, type PackedPackage } from '../helpers/package.ts';
import { REPO_ROOT } from '../helpers/spawn-cli.ts';

/** SETUP_TIMEOUT_MS bounds packing (a full tsc build) and installing, on a loaded machine. */
const SETUP_TIMEOUT_MS = 150_000;
/** TEST_TIMEOUT_MS bounds one test that starts a few processes. */
const TEST_TIMEOUT_MS = 60_000;
/** TYPECHECK_TIMEOUT_MS bounds type-checking four configurations, each loading all of @types/node. */
const TYPECHECK_TIMEOUT_MS = 120_000;
/** START_TIMEOUT_MS bounds how long a started server may take to print its listening line. */
const START_TIMEOUT_MS = 20_000;

const root = path.join(tmpdir(), `nsgi-package-${randomUUID()}`);
const project = path.join(root, 'project');
let packed: PackedPackage;

/** The files of the consumer project, written after the install. */
const PROJECT_FILES: Record<string, string> = {
  // (a) An ES module run by plain node: the server, a generator body, fetch, and the testing subpath.
  'esm.mjs': `
    import { serve } from 'nsgi';
    import { request } from 'nsgi/testing';
    function* app(environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield 'one ';
      yield 'two ';
      yield environ.PATH_INFO;
    }
    const server = await serve(app, { host: '127.0.0.1', port: 0 });
    const response = await fetch(server.url + '/esm');
    const body = await response.text();
    await server.close();
    const inMemory = await request(app, { path: '/memory' });
    console.log(JSON.stringify({
      resolved: import.meta.resolve('nsgi'),
      status: response.status,
      transferEncoding: response.headers.get('transfer-encoding'),
      body,
      inMemory: inMemory.text(),
    }));
  `,
  // (b) A CommonJS script: require('nsgi') is require(esm), which Node 20.19+ and 22.12+ allow.
  'commonjs.cjs': `
    const { serve } = require('nsgi');
    (async () => {
      const server = await serve(function* (environ, startResponse) {
        startResponse('200 OK', [['Content-Type', 'text/plain']]);
        yield 'required ' + environ.REQUEST_METHOD;
      }, { host: '127.0.0.1', port: 0 });
      const response = await fetch(server.url);
      console.log(JSON.stringify({ status: response.status, body: await response.text() }));
      await server.close();
    })();
  `,
  // (c) TypeScript against the shipped .d.ts: the public API's main parts, ws types included.
  'consumer.ts': `
    import { createNodeServer, fromFetch, serve, sse, testing, validate, websocketApp, type App, type Environ, type WebSocket } from 'nsgi';
    import { request, type TestResponse } from 'nsgi/testing';

    const hello: App = function* (environ: Environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield \`hello \${environ.PATH_INFO}\`;
    };
    const events: App = sse(async function* (environ: Environ) {
      yield { event: 'tick', data: environ.PATH_INFO };
    });
    const echo = websocketApp((ws: WebSocket) => ws.on('message', (data) => ws.send(data)));
    const fetched: App = fromFetch(async (req: Request) => new Response(req.url));
    const server = await serve(validate(hello), { host: '127.0.0.1', port: 0 });
    const url: string = server.url;
    await server.close();
    const response: TestResponse = await request(events, { path: '/' });
    const status: number = (await testing.request(echo)).status;
    createNodeServer(fetched).close();
    export { url, response, status };
  `,
  // A type error against nsgi's types, which the type check must report.
  'wrong.ts': `
    import type { App } from 'nsgi';
    export const app: App = (environ, startResponse) => {
      startResponse(200, [['Content-Type', 'text/plain']]);
      return [environ.PATH_INFO];
    };
  `,
  // (d) An app for the nsgi command, in JavaScript.
  'app.mjs': `
    export default function* app(environ, startResponse) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      yield 'served by npx nsgi: ';
      yield environ.PATH_INFO;
    }
  `,
  // A .js app with a .ts of the same name beside it: a TypeScript loader would resolve to the .ts.
  'twin.js': `
    export default (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['the JavaScript twin'];
    };
  `,
  'twin.ts': `
    export default (environ: unknown, startResponse: (status: string, headers: [string, string][]) => void): string[] => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['the TypeScript twin'];
    };
  `,
  'typed.ts': `
    import type { App } from 'nsgi';
    interface Greeting { readonly text: string }
    const greeting = { text: 'typed' } satisfies Greeting;
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [greeting.text + ' ' + environ.PATH_INFO];
    };
    export default app;
  `,
};

/** TSCONFIGS are the consumer project's TypeScript configurations: both resolutions, with and without DOM. */
const TSCONFIGS: Record<string, { module: string; moduleResolution: string; lib: string[] }> = {
  'tsconfig.nodenext.json': { module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2023'] },
  'tsconfig.nodenext-dom.json': { module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2023', 'DOM', 'DOM.Iterable'] },
  'tsconfig.bundler.json': { module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2023'] },
  'tsconfig.bundler-dom.json': { module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2023', 'DOM', 'DOM.Iterable'] },
};

/** tsconfig renders one strict configuration that checks `files`, the libraries' .d.ts included. */
function tsconfig(options: { module: string; moduleResolution: string; lib: string[] }, files: string[]): string {
  return JSON.stringify({
    compilerOptions: {
      ...options,
      target: 'ES2022',
      strict: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      skipLibCheck: false,
      noEmit: true,
    },
    files,
  });
}

/** tsc runs the repository's TypeScript compiler in the consumer project. */
function tsc(args: string[]): ReturnType<typeof runCommand> {
  return runCommand(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), ...args], project);
}

/** node runs a script of the consumer project with plain node: no loader, no flags. */
function node(script: string): ReturnType<typeof runCommand> {
  return runCommand(process.execPath, [script], project, START_TIMEOUT_MS);
}

beforeAll(async () => {
  await mkdir(root, { recursive: true });
  packed = await packRepository(root);
  await installPackage(packed.tarball, project, { type: 'module' });
  for (const [name, text] of Object.entries(PROJECT_FILES)) await writeFile(path.join(project, name), text);
  for (const [name, options] of Object.entries(TSCONFIGS)) await writeFile(path.join(project, name), tsconfig(options, ['consumer.ts', 'wrong.ts']));
}, SETUP_TIMEOUT_MS);

afterEach(async () => {
  await stopAll();
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('holds the compiled JavaScript, its types and source maps, and no sources, tests, benchmarks or CI', () => {
    const files = packed.files;
    expect(files).toEqual(expect.arrayContaining([
      'package.json',
      'README.md',
      'bin/nsgi.js',
      'protocol/SPEC.md',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/index.js.map',
      'dist/src/testing.js',
      'dist/src/testing.d.ts',
      'dist/src/cli.js',
      'dist/protocol/nsgi.d.ts',
    ]));
    const unwanted = files.filter((f) => /^(src|test|examples|docs|\.ci)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')));
    expect(unwanted).toEqual([]);
  });
});

describe('a JavaScript project', { timeout: TEST_TIMEOUT_MS }, () => {
  it('imports nsgi as compiled JavaScript under plain node, serves a generator body and fetches it', async () => {
    const result = await node('esm.mjs');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      resolved: expect.stringMatching(/\/node_modules\/nsgi\/dist\/src\/index\.js$/),
      status: 200,
      transferEncoding: 'chunked',
      body: 'one two /esm',
      inMemory: 'one two /memory',
    });
  });

  it('requires nsgi from CommonJS where Node loads ES modules through require, and says why not where it cannot', async () => {
    const result = await node('commonjs.cjs');
    const features = process.features as { require_module?: boolean };
    if (features.require_module === true) {
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({ status: 200, body: 'required GET' });
    } else {
      // Node before 20.19 (or 22.12): its own error names the fix, a dynamic import().
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('ERR_REQUIRE_ESM');
    }
  });
});

describe('a strict TypeScript project, skipLibCheck off', { timeout: TYPECHECK_TIMEOUT_MS }, () => {
  it('type-checks against the shipped .d.ts under NodeNext and Bundler resolution, with and without the DOM lib', async () => {
    // One build mode run checks the four configurations, reading the files they share once (about
    // 40% less CPU than four runs); --verbose heads each one's diagnostics with its name. Each also
    // checks wrong.ts, whose one error shows that nsgi's types are really applied.
    const names = Object.keys(TSCONFIGS);
    const result = await tsc(['--build', '--force', '--verbose', '--pretty', 'false', ...names]);
    const sections = result.stdout.split(/^.* - Building project '[^']*?([^'/]+)'\.\.\.$/m).slice(1);
    const reports = names.map((_, i) => ({
      config: sections[2 * i],
      errors: (sections[2 * i + 1] ?? '').split('\n').filter((line) => / error TS/.test(line)),
    }));
    const expected = names.map((config) => ({
      config,
      errors: [expect.stringMatching(/^wrong\.ts\(\d+,\d+\): error TS2345: Argument of type 'number' is not assignable to parameter of type 'string'/)],
    }));
    expect(reports).toEqual(expected);
    expect(result.stderr).toBe('');
  });
});

describe('the nsgi command of the installed package', { timeout: TEST_TIMEOUT_MS }, () => {
  it('npx nsgi app.mjs serves a request and stops on SIGTERM', async () => {
    const server = await start(['npx', '--no', 'nsgi', 'app.mjs', '--port', '0']);
    const response = await fetch(`${server.url}/path`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('served by npx nsgi: /path');
    const ended = await server.stop();
    expect(ended.stderr).toContain('nsgi: received SIGTERM, closing');
  });

  it('loads a .js app with no TypeScript loader: the .ts beside it is not picked instead', async () => {
    const server = await start([process.execPath, 'node_modules/.bin/nsgi', 'twin.js', '--port', '0']);
    expect(await (await fetch(server.url)).text()).toBe('the JavaScript twin');
  });

  it('runs workers from the compiled CLI, each loading the app again', async () => {
    const server = await start([process.execPath, 'node_modules/.bin/nsgi', 'app.mjs', '--workers', '2', '--port', '0']);
    expect(await (await fetch(`${server.url}/workers`)).text()).toBe('served by npx nsgi: /workers');
    const ended = await server.stop();
    expect(ended.stderr).toMatch(/nsgi: 2 workers \(primary \d+\)/);
  });

  it('loads a TypeScript app without a build step', async () => {
    const server = await start([process.execPath, 'node_modules/.bin/nsgi', 'typed.ts', '--port', '0']);
    expect(await (await fetch(`${server.url}/here`)).text()).toBe('typed /here');
  });

  it('without tsx installed, serves a TypeScript app only where Node strips types, and otherwise says what to install', async () => {
    const tsx = path.join(project, 'node_modules/tsx');
    await rename(tsx, `${tsx}.hidden`);
    try {
      const features = process.features as { typescript?: unknown };
      if (typeof features.typescript === 'string') {
        const server = await start([process.execPath, 'node_modules/.bin/nsgi', 'typed.ts', '--port', '0']);
        expect(await (await fetch(`${server.url}/stripped`)).text()).toBe('typed /stripped');
      } else {
        const result = await runCommand(process.execPath, ['node_modules/.bin/nsgi', 'typed.ts', '--port', '0'], project, START_TIMEOUT_MS);
        expect(result).toEqual({
          code: 2,
          stdout: '',
          stderr: expect.stringMatching(/^nsgi: cannot load typed\.ts: TypeScript apps need tsx \(npm install tsx\) or Node\.js 22\.18 or later, .*\n$/),
        });
      }
      // A JavaScript app never needed tsx.
      const server = await start([process.execPath, 'node_modules/.bin/nsgi', 'app.mjs', '--port', '0']);
      expect(await (await fetch(`${server.url}/plain`)).text()).toBe('served by npx nsgi: /plain');
    } finally {
      await rename(`${tsx}.hidden`, tsx);
    }
  });

  it('prints the version this repository declares', async () => {
    const ours = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await runCommand(process.execPath, ['node_modules/.bin/nsgi', '--version'], project);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`nsgi ${ours.version}\n`);
  });
});

/** Started is an installed `nsgi` process that printed its listening line. */
interface Started {
  readonly url: string;
  /** Sends SIGTERM to the process group and resolves with what was printed once all have exited. */
  stop(): Promise<{ stdout: string; stderr: string }>;
}

const running = new Set<ChildProcess>();

/**
 * start runs `command` in the consumer project as the leader of a process group, so that `npx`,
 * the shell it starts and the node process under them are all stopped together, and resolves once
 * `nsgi: listening on URL` is printed.
 */
function start(command: string[]): Promise<Started> {
  const [file, ...args] = command as [string, ...string[]];
  const child = spawn(file, args, { cwd: project, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`no listening line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const fail = (why: string): void => {
      clearTimeout(timer);
      reject(new Error(`${command.join(' ')}: ${why}; stdout: ${JSON.stringify(stdout)}, stderr: ${JSON.stringify(stderr)}`));
    };
    child.on('error', (err) => fail(err.message));
    child.on('close', (code) => fail(`exited with ${code} before listening`));
    child.stdout.on('data', () => {
      const match = /^nsgi: listening on (http:\/\/\S+)\n/m.exec(stdout);
      if (match === null) return;
      clearTimeout(timer);
      resolve({
        url: match[1]!,
        stop: async () => {
          signalGroup(child, 'SIGTERM');
          await exited;
          running.delete(child);
          return { stdout, stderr };
        },
      });
    });
  });
}

/** signalGroup sends `signal` to every process in the group `child` leads, if any are left. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** stopAll kills whatever a test left running and waits until it has exited. */
async function stopAll(): Promise<void> {
  const all = [...running];
  running.clear();
  await Promise.all(all.map((child) => {
    const exited = new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.on('close', () => resolve())));
    signalGroup(child, 'SIGKILL');
    return exited;
  }));
}
