/**
 * Listening elsewhere than a TCP host and port: a unix socket (`--uds`, with its mode, a stale
 * socket replaced, a live one or a plain file refused), an inherited descriptor (`--fd`), and
 * systemd socket activation through Debian's `systemd-socket-activate`, alone and with workers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connects, freePort } from '../helpers/processes.ts';
import { curl, waitUntil } from '../helpers/server.ts';
import { BIN_PATH, CliProcess, REPO_ROOT, killAllClis, runCli } from '../helpers/spawn-cli.ts';

const APP = 'test/fixtures/app.ts';
let dir = '';
const children = new Set<ChildProcess>();

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-listen-'));
});

afterEach(async () => {
  await killAllClis();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([...children].map((child) => (child.exitCode !== null || child.signalCode !== null ? null : new Promise((r) => child.once('exit', r)))));
  children.clear();
  rmSync(dir, { recursive: true, force: true });
});

/** startUds runs nsgi on a unix socket and waits for its listening line. */
async function startUds(socket: string, ...args: string[]): Promise<CliProcess> {
  const cli = new CliProcess([APP, '--uds', socket, ...args]);
  try {
    await cli.waitForStdout(new RegExp(`^nsgi: listening on unix:${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
  } catch (err) {
    cli.kill();
    throw err;
  }
  return cli;
}

/** run starts a command with its output collected, killed after the test. */
function run(command: string, args: readonly string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (t: string) => (text += t));
  child.stderr!.setEncoding('utf8').on('data', (t: string) => (text += t));
  return { child, output: () => text };
}

describe('--uds', () => {
  it('serves over a unix socket with the permissions asked for', async () => {
    const socket = path.join(dir, 'nsgi.sock');
    const cli = await startUds(socket, '--uds-mode', '660');
    try {
      expect(statSync(socket).isSocket()).toBe(true);
      expect(statSync(socket).mode & 0o777).toBe(0o660);
      const r = await curl(['-s', '--unix-socket', socket, 'http://localhost/pid']);
      expect(JSON.parse(r.stdout.toString())).toMatchObject({ pid: cli.child.pid });
    } finally {
      cli.kill('SIGTERM');
      await cli.waitForExit(10_000);
    }
  }, 30_000);

  it('replaces a stale socket left by a killed server, and serves with workers', async () => {
    const socket = path.join(dir, 'nsgi.sock');
    // A socket file nobody listens on any more, as a SIGKILLed server leaves behind.
    const { child, output } = run(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`]);
    await waitUntil(() => output().includes('up'), 'the soon-stale server', 10_000);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(statSync(socket).isSocket()).toBe(true);
    const cli = await startUds(socket, '--workers', '2');
    try {
      const r = await curl(['-s', '--unix-socket', socket, 'http://localhost/pid']);
      expect(JSON.parse(r.stdout.toString())).toMatchObject({ multiprocess: true });
    } finally {
      cli.kill('SIGTERM');
      await cli.waitForExit(15_000);
    }
  }, 30_000);

  it('refuses a socket a running server answers on, and a path that is not a socket, exit 1', async () => {
    const socket = path.join(dir, 'live.sock');
    const live = net.createServer((c) => c.destroy());
    await new Promise<void>((resolve) => live.listen(socket, resolve));
    try {
      const inUse = await runCli([APP, '--uds', socket]);
      expect(inUse.code).toBe(1);
      expect(inUse.stderr).toBe(`nsgi: cannot listen on unix:${socket}: ${socket} is in use by a running server\n`);
    } finally {
      await new Promise((resolve) => live.close(resolve));
    }
    const file = path.join(dir, 'plain');
    writeFileSync(file, 'keep me');
    const notSocket = await runCli([APP, '--uds', file]);
    expect(notSocket.code).toBe(1);
    expect(notSocket.stderr).toBe(`nsgi: cannot listen on unix:${file}: ${file} exists and is not a socket; not replacing it\n`);
  }, 30_000);

  it('refuses --uds with --fd, and --uds-mode that is not octal, exit 2', async () => {
    const both = await runCli([APP, '--uds', path.join(dir, 's'), '--fd', '3']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--uds and --fd each name the one socket to listen on; give one/);
    const mode = await runCli([APP, '--uds', path.join(dir, 's'), '--uds-mode', 'rw']);
    expect(mode.code).toBe(2);
    expect(mode.stderr).toMatch(/--uds-mode must be an octal mode such as 660, got "rw"/);
  }, 30_000);
});

describe('inherited sockets', () => {
  it('systemd socket activation: the passed socket is served, not a port of its own', async () => {
    const port = await freePort();
    const { output } = run('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, process.execPath, BIN_PATH, APP]);
    await waitUntil(() => /Listening on 127\.0\.0\.1:\d+ as 3/.test(output()), 'systemd-socket-activate to listen', 10_000);
    // The first connection starts nsgi, which takes fd 3 and answers on it.
    const r = await curl(['-s', '--max-time', '20', `http://127.0.0.1:${port}/`]);
    expect(r.stdout.toString()).toBe('ok');
    expect(output()).toContain('nsgi: serving the socket systemd passed (fd 3)');
    expect(output()).toContain(`nsgi: listening on http://127.0.0.1:${port}`);
  }, 30_000);

  it('systemd socket activation wins over --bind, as over --host and --port', async () => {
    const [port, other] = [await freePort(), await freePort()];
    const { output } = run('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, process.execPath, BIN_PATH, APP, '--bind', `127.0.0.1:${other}`]);
    await waitUntil(() => /Listening on 127\.0\.0\.1:\d+ as 3/.test(output()), 'systemd-socket-activate to listen', 10_000);
    const r = await curl(['-s', '--max-time', '20', `http://127.0.0.1:${port}/`]);
    expect(r.stdout.toString()).toBe('ok');
    expect(output()).toContain(`nsgi: listening on http://127.0.0.1:${port}`);
    expect(await connects({ host: '127.0.0.1', port: other })).toBe(false);
  }, 30_000);

  it('systemd socket activation with --workers 2: every worker accepts on the passed socket', async () => {
    const port = await freePort();
    const { output } = run('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, process.execPath, BIN_PATH, APP, '--workers', '2']);
    await waitUntil(() => /Listening on 127\.0\.0\.1:\d+ as 3/.test(output()), 'systemd-socket-activate to listen', 10_000);
    const first = await curl(['-s', '--max-time', '20', `http://127.0.0.1:${port}/pid`]);
    expect(JSON.parse(first.stdout.toString())).toMatchObject({ multiprocess: true });
    await waitUntil(() => output().includes('2 workers'), 'both workers', 20_000);
    const pids = new Set<number>();
    for (let i = 0; i < 60 && pids.size < 2; i++) {
      const r = await curl(['-s', '--max-time', '5', `http://127.0.0.1:${port}/pid`]);
      pids.add((JSON.parse(r.stdout.toString()) as { pid: number }).pid);
    }
    expect(pids.size).toBe(2);
  }, 60_000);

  it('--fd N accepts on an inherited listening socket', async () => {
    const port = await freePort();
    // systemd-socket-activate opens the socket as fd 3; env drops its variables so that only
    // --fd tells nsgi about it.
    const { output } = run('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, 'env', '-u', 'LISTEN_FDS', '-u', 'LISTEN_PID', '-u', 'LISTEN_FDNAMES', process.execPath, BIN_PATH, APP, '--fd', '3']);
    await waitUntil(() => /Listening on 127\.0\.0\.1:\d+ as 3/.test(output()), 'systemd-socket-activate to listen', 10_000);
    const r = await curl(['-s', '--max-time', '20', `http://127.0.0.1:${port}/`]);
    expect(r.stdout.toString()).toBe('ok');
    expect(output()).not.toContain('systemd passed');
    expect(output()).toContain(`nsgi: listening on http://127.0.0.1:${port}`);
  }, 30_000);
});
