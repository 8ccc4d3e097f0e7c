/**
 * `--bind` (`-b`) given several times, and `NSGI_BIND`: one server (each worker, with workers)
 * listening on TCP over IPv4 and IPv6 and on a unix socket at once, one line naming every address,
 * a bad or busy address refused by name with nothing left listening, and a shutdown that closes
 * every listener. Loopback and a temp dir only.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseCliArgs, type ServeCommand } from '../../src/cli/options.ts';
import { connects, freePort } from '../helpers/processes.ts';
import { curl } from '../helpers/server.ts';
import { CliProcess, killAllClis, runCli, trackCli } from '../helpers/spawn-cli.ts';

const APP = 'test/fixtures/app.ts';
let dir = '';
let ipv6 = false;

beforeAll(async () => {
  const probe = net.createServer();
  ipv6 = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
});

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-bind-'));
});

afterEach(async () => {
  await killAllClis();
  rmSync(dir, { recursive: true, force: true });
});

/** pidAt asks the fixture app at `url` (through `unix` when given) for its pid and multiprocess flag. */
async function pidAt(url: string, unix?: string): Promise<{ pid: number; multiprocess: boolean }> {
  const r = await curl(['-s', '--max-time', '5', ...(unix === undefined ? [] : ['--unix-socket', unix]), `${url}/pid`]);
  return JSON.parse(r.stdout.toString()) as { pid: number; multiprocess: boolean };
}

/** addresses is a set of loopback addresses to bind: 127.0.0.1, ::1 when the machine has it, a unix socket. */
async function addresses(): Promise<{ args: string[]; line: string; v4: number; v6: number; socket: string }> {
  const v4 = await freePort();
  const v6 = ipv6 ? await freePort() : 0;
  const socket = path.join(dir, 'nsgi.sock');
  const args = ['-b', `127.0.0.1:${v4}`, ...(ipv6 ? ['--bind', `[::1]:${v6}`] : []), `--bind=unix:${socket}`];
  const line = [`http://127.0.0.1:${v4}`, ...(ipv6 ? [`http://[::1]:${v6}`] : []), `unix:${socket}`].join(', ');
  return { args, line, v4, v6, socket };
}

/** startBound runs nsgi with `args` and waits for `line` as its listening line. */
async function startBound(args: readonly string[], line: string): Promise<CliProcess> {
  const cli = trackCli(new CliProcess([APP, ...args]));
  await cli.waitForStdout(new RegExp(`^nsgi: listening on ${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
  return cli;
}

describe('--bind', () => {
  for (const workers of [1, 2]) {
    it(`serves on every address at once, names them in one line, and closes them all on SIGTERM (workers: ${workers})`, async () => {
      const { args, line, v4, v6, socket } = await addresses();
      const cli = await startBound([...args, ...(workers > 1 ? ['--workers', String(workers)] : [])], line);
      const seen = [await pidAt(`http://127.0.0.1:${v4}`), await pidAt('http://localhost', socket)];
      if (ipv6) seen.push(await pidAt(`http://[::1]:${v6}`));
      for (const s of seen) expect(s.multiprocess).toBe(workers > 1);
      if (workers === 1) for (const s of seen) expect(s.pid).toBe(cli.child.pid);
      cli.kill('SIGTERM');
      const result = await cli.waitForExit(15_000);
      expect(result.code).toBe(0);
      expect(await connects({ host: '127.0.0.1', port: v4 })).toBe(false);
      if (ipv6) expect(await connects({ host: '::1', port: v6 })).toBe(false);
      expect(await connects({ path: socket })).toBe(false);
    }, 40_000);
  }

  for (const workers of [1, 2]) {
    it(`refuses a busy address by name, exits 1 and leaves none of the others listening (workers: ${workers})`, async () => {
      const free = await freePort();
      const busy = net.createServer();
      await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
      const taken = (busy.address() as net.AddressInfo).port;
      const socket = path.join(dir, 'other.sock');
      try {
        const r = await runCli([APP, '-b', `127.0.0.1:${free}`, '-b', `unix:${socket}`, '-b', `127.0.0.1:${taken}`, ...(workers > 1 ? ['-w', String(workers)] : [])], 30_000);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${taken}: the address is already in use`);
        expect(r.stdout).not.toContain('listening on');
        expect(await connects({ host: '127.0.0.1', port: free })).toBe(false);
        expect(await connects({ path: socket })).toBe(false);
      } finally {
        await new Promise((resolve) => busy.close(resolve));
      }
    }, 40_000);
  }

  it('refuses a malformed address with exit 2, naming it', async () => {
    const cases: Array<[string, string]> = [['[::1:8000', 'without closing it'], ['::1:8000', 'in brackets'], ['127.0.0.1:http', 'from 0 to 65535'], ['unix:', 'socket path'], ['fd://x', 'whole number']];
    for (const [bad, why] of cases) {
      const r = await runCli([APP, '--bind', bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(JSON.stringify(bad));
      expect(r.stderr).toContain(why);
    }
  }, 60_000);
});

describe('--bind with the other address options', () => {
  const parse = (argv: string[], env: Record<string, string> = {}): ServeCommand => parseCliArgs([...argv, 'app.ts'], env) as ServeCommand;

  it('reads every --bind, a host alone taking the default port', () => {
    expect(parse(['-b', '127.0.0.1:9000', '--bind', '[::1]:9001', '-b', 'unix:/tmp/a.sock', '-b', 'fd://3', '-b', 'localhost']).binds).toEqual([
      { host: '127.0.0.1', port: 9000 }, { host: '::1', port: 9001 }, { path: '/tmp/a.sock' }, { fd: 3 }, { host: 'localhost', port: 8000 },
    ]);
  });

  it('reads NSGI_BIND, separated by commas or spaces', () => {
    expect(parse([], { NSGI_BIND: '127.0.0.1:9000, [::1]:9001 unix:/tmp/a.sock' }).binds).toEqual([
      { host: '127.0.0.1', port: 9000 }, { host: '::1', port: 9001 }, { path: '/tmp/a.sock' },
    ]);
    expect(() => parse([], { NSGI_BIND: '127.0.0.1:x' })).toThrow(/NSGI_BIND \(environment\) "127\.0\.0\.1:x"/);
  });

  it('refuses --bind with --host, --port, --uds or --fd on the command line', () => {
    for (const other of [['--host', '::1'], ['--port', '9000'], ['--uds', '/tmp/a.sock'], ['--fd', '3']]) {
      expect(() => parse(['-b', '127.0.0.1:9000', ...other])).toThrow(`--bind and ${other[0]} both say where to listen`);
    }
  });

  it('lets the command line win over the environment either way', () => {
    const bound = parse(['-b', '127.0.0.1:9000'], { PORT: '5000', HOST: '0.0.0.0', NSGI_BIND: 'unix:/tmp/x.sock' });
    expect(bound.binds).toEqual([{ host: '127.0.0.1', port: 9000 }]);
    const plain = parse(['--port', '9000'], { NSGI_BIND: '127.0.0.1:7000' });
    expect(plain.binds).toBeUndefined();
    expect(plain.port).toBe(9000);
  });

  it('takes --uds-mode for unix: addresses, and still refuses it without one', () => {
    expect(parse(['-b', 'unix:/tmp/a.sock', '--uds-mode', '660']).udsMode).toBe(0o660);
    expect(() => parse(['-b', '127.0.0.1:9000', '--uds-mode', '660'])).toThrow(/--uds-mode needs --uds or a --bind unix:PATH/);
  });

  it('leaves no socket file behind after a clean shutdown', async () => {
    const socket = path.join(dir, 'gone.sock');
    const port = await freePort();
    const cli = await startBound(['-b', `unix:${socket}`, '-b', `127.0.0.1:${port}`], `unix:${socket}, http://127.0.0.1:${port}`);
    expect(existsSync(socket)).toBe(true);
    cli.kill('SIGTERM');
    expect((await cli.waitForExit(15_000)).code).toBe(0);
    expect(existsSync(socket)).toBe(false);
  }, 30_000);
});
